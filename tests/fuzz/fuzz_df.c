/* fuzz_df.c - the hash embedder's document-frequency file (index/embed_hash.c). Its last 8 bytes are an
 * XXH64 of the rest; the harness rewrites them half of the time so that the fuzzer gets past it. */
#include <string.h>

#include "fuzz_util.h"
#include "index/embed_hash.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *b = malloc(size ? size : 1);
    if (!b) return 0;
    memcpy(b, data, size);
    if (size >= 16 && (data[0] & 1)) fuzz_reseal_xxh64(b, size);
    rtr_hash_df d;
    int rc = rtr_hash_df_parse(b, size, "fuzz.df", &d);
    if (rc) {
        FUZZ_FAILED_WELL(rc);
    } else {
        for (size_t i = 0; i < ((size_t)1 << d.bits); i++) FUZZ_CHECK(d.df[i] <= d.n);
        rtr_hash_df_free(&d);
    }
    free(b);
    return 0;
}
