/* fuzz_gpt2.c - GPT-2's encoder.json and vocab.bpe (lib/bpe.c). The input is both files: a 4-byte
 * little-endian length of encoder.json, encoder.json, then vocab.bpe. */
#include <string.h>

#include "fuzz_util.h"
#include "lib/bpe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    size_t n = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
    if (n > size - 4) n = size - 4;
    const uint8_t *enc = data + 4, *bpe = enc + n;
    rtr_tokenizer *t = NULL;
    int rc = rtr_tokenizer_parse_gpt2(enc, n, "encoder.json", bpe, size - 4 - n, "vocab.bpe", &t);
    if (rc) {
        FUZZ_FAILED_WELL(rc);
        return 0;
    }
    static const char sample[] = "a GPT-2 tokenizer that loads encodes this";
    rtr_encoder *e = NULL;
    rtr_u32vec ids = {0};
    rtr_buf back = {0};
    if (!rtr_encoder_new(t, &e) && !rtr_encoder_encode(e, (const uint8_t *)sample, sizeof sample - 1, &ids) &&
        !rtr_tokenizer_decode(t, ids.data, ids.len, &back))
        FUZZ_CHECK(back.len == sizeof sample - 1 && !memcmp(back.data, sample, back.len));
    rtr_buf_free(&back);
    rtr_u32vec_free(&ids);
    rtr_encoder_free(e);
    rtr_tokenizer_free(t);
    return 0;
}
