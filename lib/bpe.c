/* STUB (to be replaced by the real implementation): a byte tokenizer with no
 * merges, so that the rest of the engine builds and runs. */
#include "lib/bpe.h"

#include <string.h>

#include "lib/alloc.h"
#include "lib/status.h"

struct rtr_tokenizer { uint8_t bytes[257]; };
struct rtr_encoder { const rtr_tokenizer *t; };

static int make(rtr_tokenizer **out) {
    rtr_tokenizer *t = rtr_calloc(1, sizeof *t);
    if (!t) return RTR_E_NOMEM;
    for (int i = 0; i < 256; i++) t->bytes[i] = (uint8_t)i;
    *out = t;
    return RTR_OK;
}
int rtr_tokenizer_load(const char *path, rtr_tokenizer **out) { (void)path; return make(out); }
int rtr_tokenizer_parse(const uint8_t *d, size_t l, const char *n, rtr_tokenizer **out) {
    (void)d; (void)l; (void)n; return make(out);
}
int rtr_tokenizer_load_gpt2(const char *dir, rtr_tokenizer **out) {
    (void)out; return rtr_seterr(RTR_E_INVALID, "%s: gpt2 not supported by the stub", dir);
}
int rtr_tokenizer_serialize(const rtr_tokenizer *t, rtr_buf *out) { (void)t; return rtr_buf_append(out, "STUB", 4); }
int rtr_tokenizer_save(const rtr_tokenizer *t, const char *path) { (void)t; (void)path; return RTR_OK; }
void rtr_tokenizer_free(rtr_tokenizer *t) { rtr_free(t); }
uint32_t rtr_tokenizer_vocab_size(const rtr_tokenizer *t) { (void)t; return 257; }
uint32_t rtr_tokenizer_eod(const rtr_tokenizer *t) { (void)t; return 256; }
const uint8_t *rtr_tokenizer_token(const rtr_tokenizer *t, uint32_t id, size_t *len) {
    if (id > 255) return NULL;
    *len = 1;
    return &t->bytes[id];
}
void rtr_tokenizer_hash(const rtr_tokenizer *t, char hex[33]) { (void)t; memset(hex, '0', 32); hex[32] = 0; }
int rtr_encoder_new(const rtr_tokenizer *t, rtr_encoder **out) {
    rtr_encoder *e = rtr_calloc(1, sizeof *e);
    if (!e) return RTR_E_NOMEM;
    e->t = t;
    *out = e;
    return RTR_OK;
}
int rtr_encoder_encode(rtr_encoder *e, const uint8_t *text, size_t len, rtr_u32vec *out) {
    (void)e;
    int rc = rtr_u32vec_reserve(out, len);
    if (rc) return rc;
    for (size_t i = 0; i < len; i++) out->data[out->len++] = text[i];
    return RTR_OK;
}
void rtr_encoder_free(rtr_encoder *e) { rtr_free(e); }
int rtr_tokenizer_decode(const rtr_tokenizer *t, const uint32_t *ids, size_t n, rtr_buf *out) {
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const uint8_t *b = rtr_tokenizer_token(t, ids[i], &l);
        if (!b) return rtr_seterr(RTR_E_INVALID, "token id %u out of range", ids[i]);
        int rc = rtr_buf_append(out, b, l);
        if (rc) return rc;
    }
    return RTR_OK;
}
int rtr_bpe_trainer_new(rtr_bpe_trainer **out) { (void)out; return rtr_seterr(RTR_E_INVALID, "stub"); }
int rtr_bpe_trainer_feed(rtr_bpe_trainer *tr, const uint8_t *t, size_t l) { (void)tr; (void)t; (void)l; return RTR_E_INVALID; }
int rtr_bpe_trainer_finish(rtr_bpe_trainer *tr, uint32_t v, rtr_tokenizer **out) { (void)tr; (void)v; (void)out; return RTR_E_INVALID; }
void rtr_bpe_trainer_free(rtr_bpe_trainer *tr) { (void)tr; }
