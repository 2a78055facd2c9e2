/* fuzz_reader.c - responses of an OpenAI-compatible server to a reader (retriever/reader.c): the first
 * byte picks chat (bit 0 clear) or completions, a 2xx or an error status (bit 1), and whether the rest is
 * also read as a /v1/models list (bit 2). Nothing is sent. */
#include <string.h>

#include "fuzz_util.h"
#include "lib/alloc.h"
#include "retriever/reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int completions = data[0] & 1;
    long status = data[0] & 2 ? 400 + data[0] % 100 : 200;
    rtr_reader_reply r;
    int rc = rtr_reader_parse("http://127.0.0.1:9/v1/x", completions, status, data + 1, size - 1, &r);
    if (rc) {
        FUZZ_FAILED_WELL(rc);
        FUZZ_CHECK(r.text == NULL && strchr(rtr_errdetail(), '\n') == NULL);
    } else {
        FUZZ_CHECK(status == 200 && r.text && strlen(r.text) == r.len);
    }
    rtr_reader_reply_free(&r);
    if (data[0] & 4) {
        char *id = NULL;
        rc = rtr_reader_parse_models(data + 1, size - 1, &id);
        if (rc) FUZZ_FAILED_WELL(rc);
        else FUZZ_CHECK(id && id[0]);
        rtr_free(id);
    }
    return 0;
}
