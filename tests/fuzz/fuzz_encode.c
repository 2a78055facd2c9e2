/* fuzz_encode.c - the byte-level BPE encoder (lib/bpe.c) on arbitrary bytes with the bundled tokenizer:
 * every id in the vocabulary, and decoding gives back exactly the input. */
#include <string.h>

#include "fuzz_util.h"
#include "lib/bpe.h"

static rtr_tokenizer *g_tok;
static rtr_encoder *g_enc;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) {
        const char *p = getenv("RETRO_FUZZ_TOKENIZER");
        if (rtr_tokenizer_load(p ? p : RETRO_SOURCE_DIR "/datasets/tokenizer.rtok", &g_tok) ||
            rtr_encoder_new(g_tok, &g_enc)) {
            fprintf(stderr, "fuzz_encode: %s\n", rtr_errdetail());
            abort();
        }
    }
    rtr_u32vec ids = {0};
    rtr_buf back = {0};
    FUZZ_CHECK(rtr_encoder_encode(g_enc, data, size, &ids) == RTR_OK);
    for (size_t i = 0; i < ids.len; i++) FUZZ_CHECK(ids.data[i] < rtr_tokenizer_vocab_size(g_tok));
    FUZZ_CHECK(rtr_tokenizer_decode(g_tok, ids.data, ids.len, &back) == RTR_OK);
    FUZZ_CHECK(back.len == size && (size == 0 || !memcmp(back.data, data, size)));
    rtr_buf_free(&back);
    rtr_u32vec_free(&ids);
    return 0;
}
