/* generate.c - the generation loop with sampling, stop sequences and streaming (see generate.h). */
#define _GNU_SOURCE
#include "model/generate.h"

#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "lib/utf8.h"
#include "model/sample.h"

void rtr_gen_opts_default(rtr_gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_tokens = 128;
    o->temperature = 0.8f;
    o->top_k = 40;
    o->top_p = 0.95f;
    o->seed = 1;
}

void rtr_gen_result_free(rtr_gen_result *r) {
    if (!r) return;
    rtr_free(r->text);
    memset(r, 0, sizeof *r);
}

/* The earliest stop sequence in text, or -1. */
static long find_stop(const rtr_buf *text, const rtr_gen_opts *o) {
    long best = -1;
    for (int i = 0; i < o->n_stop; i++) {
        const char *hit = memmem(text->data, text->len, o->stop[i], strlen(o->stop[i]));
        if (hit && (best < 0 || hit - (const char *)text->data < best)) best = hit - (const char *)text->data;
    }
    return best;
}

/* Sends text[sent, end) repaired to valid UTF-8, where end leaves out the
 * last hold bytes (a stop sequence may still claim them) and, unless final,
 * a trailing sequence that is not complete yet. *sent advances to end;
 * returns the callback's value (non-zero: cancel) or a status. */
static int stream_out(const rtr_gen_opts *o, const rtr_buf *text, size_t *sent, size_t hold, int final) {
    size_t end = text->len > hold ? text->len - hold : 0;
    if (end <= *sent) return 0;
    for (size_t k = 1; !final && k <= 3 && k <= end - *sent; k++) {
        uint8_t b = text->data[end - k];
        if ((b & 0xC0) == 0x80) continue;   /* a continuation byte: look further back */
        size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
        if (k < need) end -= k;
        break;
    }
    if (end <= *sent) return 0;
    rtr_buf fixed = {0};
    long x = rtr_utf8_repair(text->data + *sent, end - *sent, &fixed);
    int rc = x < 0 ? (int)x : 0;
    if (!rc && fixed.len) rc = o->on_text(o->ctx, (const char *)fixed.data, fixed.len) ? 1 : 0;
    rtr_buf_free(&fixed);
    *sent = end;
    return rc;
}

int rtr_generate(rtr_session *s, const rtr_tokenizer *tok, const char *prompt, size_t plen, const rtr_gen_opts *o,
                 rtr_gen_result *res) {
    memset(res, 0, sizeof *res);
    if (o->n_stop < 0 || o->n_stop > RTR_GEN_MAX_STOP)
        return rtr_seterr(RTR_E_INVALID, "generate: at most %d stop sequences", RTR_GEN_MAX_STOP);
    rtr_encoder *enc = NULL;
    rtr_u32vec ids = {0};
    rtr_buf text = {0};
    uint32_t V = rtr_tokenizer_vocab_size(tok), eod = rtr_tokenizer_eod(tok);
    void *scratch = rtr_malloc((size_t)V * 8);
    int rc = scratch ? RTR_OK : rtr_seterr(RTR_E_NOMEM, "generate: out of memory");
    if (!rc) rc = rtr_encoder_new(tok, &enc);
    if (!rc) rc = rtr_encoder_encode(enc, (const uint8_t *)prompt, plen, &ids);
    if (!rc && ids.len == 0) rc = rtr_u32vec_push(&ids, eod);   /* an empty prompt starts a document */
    const float *logits = NULL;
    if (!rc) rc = rtr_session_feed(s, (const int32_t *)ids.data, (int)ids.len, &logits);
    res->prompt_tokens = (int)ids.len;
    size_t hold = 0, sent = 0;
    for (int i = 0; i < o->n_stop; i++)
        if (strlen(o->stop[i]) > hold) hold = strlen(o->stop[i]);
    hold = hold ? hold - 1 : 0;
    rtr_sampler sm;
    rtr_sampler_init(&sm, o->temperature, o->top_k, o->top_p, o->seed);
    res->stopped = "length";
    double t0 = rtr_now();
    for (int i = 0; !rc && i < o->max_tokens; i++) {
        if (o->cancel && *o->cancel) {
            res->stopped = "cancel";
            break;
        }
        int32_t t = rtr_sample(&sm, logits, (int)V, scratch);
        if (t == (int32_t)eod) {
            res->stopped = "end";
            break;
        }
        res->tokens++;
        size_t len;
        const uint8_t *b = rtr_tokenizer_token(tok, (uint32_t)t, &len);
        if ((rc = rtr_buf_append(&text, b, len))) break;
        long at = find_stop(&text, o);
        if (at >= 0) {
            text.len = (size_t)at;
            res->stopped = "stop";
            break;
        }
        if (o->on_text) {
            int x = stream_out(o, &text, &sent, hold, 0);
            if (x > 0) {
                res->stopped = "cancel";
                break;
            }
            if ((rc = x)) break;
        }
        if (i + 1 < o->max_tokens) rc = rtr_session_feed(s, &t, 1, &logits);
    }
    double el = rtr_now() - t0;
    res->tokens_per_s = el > 0 ? res->tokens / el : 0;
    if (!rc && o->on_text && strcmp(res->stopped, "cancel")) {
        int x = stream_out(o, &text, &sent, 0, 1);
        if (x < 0) rc = x;
    }
    if (!rc) {
        rtr_buf fixed = {0};
        long x = rtr_utf8_repair(text.data, text.len, &fixed);
        rc = x < 0 ? (int)x : rtr_buf_terminate(&fixed);
        res->text = (char *)fixed.data;
        res->len = fixed.len;
        if (!rc && !res->text && !(res->text = rtr_strdup(""))) rc = RTR_E_NOMEM;
    }
    if (rc) rtr_gen_result_free(res);
    rtr_encoder_free(enc);
    rtr_u32vec_free(&ids);
    rtr_buf_free(&text);
    rtr_free(scratch);
    return rc;
}
