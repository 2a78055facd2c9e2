/* fuzz_rtok.c - the .rtok tokenizer file (lib/bpe.c): a file that loads encodes and decodes losslessly. */
#include <string.h>

#include "fuzz_util.h"
#include "lib/bpe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rtr_tokenizer *t = NULL;
    int rc = rtr_tokenizer_parse(data, size, "fuzz.rtok", &t);
    if (rc) {
        FUZZ_FAILED_WELL(rc);
        FUZZ_CHECK(t == NULL);
        return 0;
    }
    static const char sample[] = "Hello, world! It's 2026 -- \xc3\xa9t\xc3\xa9 \xf0\x9f\x99\x82\n\tend";
    rtr_encoder *enc = NULL;
    rtr_u32vec ids = {0};
    rtr_buf back = {0};
    if (!rtr_encoder_new(t, &enc) && !rtr_encoder_encode(enc, (const uint8_t *)sample, sizeof sample - 1, &ids)) {
        for (size_t i = 0; i < ids.len; i++) FUZZ_CHECK(ids.data[i] < rtr_tokenizer_vocab_size(t));
        if (!rtr_tokenizer_decode(t, ids.data, ids.len, &back)) {
            FUZZ_CHECK(back.len == sizeof sample - 1);
            FUZZ_CHECK(!memcmp(back.data, sample, back.len));
        }
    }
    rtr_buf ser = {0};   /* what loads serializes and loads again */
    if (!rtr_tokenizer_serialize(t, &ser)) {
        rtr_tokenizer *t2 = NULL;
        FUZZ_CHECK(rtr_tokenizer_parse(ser.data, ser.len, "again.rtok", &t2) == RTR_OK);
        FUZZ_CHECK(rtr_tokenizer_vocab_size(t2) == rtr_tokenizer_vocab_size(t));
        rtr_tokenizer_free(t2);
    }
    rtr_buf_free(&ser);
    rtr_buf_free(&back);
    rtr_u32vec_free(&ids);
    rtr_encoder_free(enc);
    rtr_tokenizer_free(t);
    return 0;
}
