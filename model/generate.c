/* generate.c - the generation loop with sampling, stop sequences and streaming (see generate.h). */
#define _GNU_SOURCE
#include "model/generate.h"

#include <math.h>
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
    rtr_free(r->lp);
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

struct rtr_gen {
    rtr_session *s;
    const rtr_tokenizer *tok;
    rtr_gen_opts o;
    rtr_encoder *enc;
    rtr_buf text;
    void *scratch;
    float *masked;            /* ignore_end: the logits without the end-of-document token */
    const float *logits;      /* the prompt's, until the first rtr_gen_next */
    rtr_sampler sm;
    uint32_t V, eod;
    size_t hold, sent;
    int prompt_tokens, tokens, done;
    const char *stopped;
    double t0;
    rtr_token_lp *lp;         /* o.logprobs: one per generated token */
    size_t n_lp, cap_lp;
};

void rtr_gen_free(rtr_gen *g) {
    if (!g) return;
    rtr_encoder_free(g->enc);
    rtr_buf_free(&g->text);
    rtr_free(g->scratch);
    rtr_free(g->masked);
    rtr_free(g->lp);
    rtr_free(g);
}

rtr_session *rtr_gen_session(rtr_gen *g) { return g->s; }

int rtr_gen_begin(rtr_session *s, const rtr_tokenizer *tok, const char *prompt, size_t plen, const rtr_gen_opts *o,
                  rtr_gen **out) {
    *out = NULL;
    if (o->n_stop < 0 || o->n_stop > RTR_GEN_MAX_STOP)
        return rtr_seterr(RTR_E_INVALID, "generate: at most %d stop sequences", RTR_GEN_MAX_STOP);
    if (o->logprobs < 0 || o->logprobs > RTR_GEN_MAX_LOGPROBS)
        return rtr_seterr(RTR_E_INVALID, "generate: logprobs must be 0..%d", RTR_GEN_MAX_LOGPROBS);
    rtr_gen *g = rtr_calloc(1, sizeof *g);
    if (!g) return rtr_seterr(RTR_E_NOMEM, "generate: out of memory");
    g->s = s;
    g->tok = tok;
    g->o = *o;
    g->V = rtr_tokenizer_vocab_size(tok);
    g->eod = rtr_tokenizer_eod(tok);
    g->stopped = "length";
    rtr_u32vec ids = {0};
    int rc = (g->scratch = rtr_malloc((size_t)g->V * 8)) ? RTR_OK : rtr_seterr(RTR_E_NOMEM, "generate: out of memory");
    if (!rc && o->ignore_end && !(g->masked = rtr_malloc((size_t)g->V * sizeof *g->masked)))
        rc = rtr_seterr(RTR_E_NOMEM, "generate: out of memory");
    if (!rc) rc = rtr_encoder_new(tok, &g->enc);
    if (!rc) rc = rtr_encoder_encode(g->enc, (const uint8_t *)prompt, plen, &ids);
    if (!rc && ids.len == 0) rc = rtr_u32vec_push(&ids, g->eod);   /* an empty prompt starts a document */
    if (!rc) rc = rtr_session_feed(s, (const int32_t *)ids.data, (int)ids.len, &g->logits);
    g->prompt_tokens = (int)ids.len;
    rtr_u32vec_free(&ids);
    if (rc) {
        rtr_gen_free(g);
        return rc;
    }
    for (int i = 0; i < o->n_stop; i++)
        if (strlen(o->stop[i]) > g->hold) g->hold = strlen(o->stop[i]);
    g->hold = g->hold ? g->hold - 1 : 0;
    rtr_sampler_init(&g->sm, o->temperature, o->top_k, o->top_p, o->seed);
    g->t0 = rtr_now();
    *out = g;
    return RTR_OK;
}

/* Token t's log probability under logits, and the n most likely tokens' (best first). */
static void token_lp(const float *logits, uint32_t V, int32_t t, int n, rtr_token_lp *out) {
    float mx = -INFINITY;
    for (uint32_t v = 0; v < V; v++)
        if (logits[v] > mx) mx = logits[v];
    double sum = 0;
    for (uint32_t v = 0; v < V; v++) sum += exp((double)(logits[v] - mx));
    float lse = mx + (float)log(sum);
    out->token = t;
    out->logprob = logits[t] - lse;
    out->n_top = 0;
    for (uint32_t v = 0; v < V; v++) {   /* insertion into the n best so far */
        int k = out->n_top < n ? out->n_top++ : n;
        while (k > 0 && logits[v] > out->top_lp[k - 1]) {
            if (k < n) {
                out->top[k] = out->top[k - 1];
                out->top_lp[k] = out->top_lp[k - 1];
            }
            k--;
        }
        if (k < n) {
            out->top[k] = (int32_t)v;
            out->top_lp[k] = logits[v];
        }
    }
    for (int k = 0; k < out->n_top; k++) out->top_lp[k] -= lse;
}

/* Ends the generation with reason why (0: ended; a status passes through). */
static int gen_end(rtr_gen *g, const char *why) {
    g->stopped = why;
    g->done = 1;
    return 0;
}

int rtr_gen_next(rtr_gen *g, const float *logits, int32_t *next) {
    const rtr_gen_opts *o = &g->o;
    if (g->done) return 0;
    if (!logits) logits = g->logits;
    if (g->tokens >= o->max_tokens) return gen_end(g, "length");
    if (o->cancel && *o->cancel) return gen_end(g, "cancel");
    const float *raw = logits;
    if (g->masked) {
        memcpy(g->masked, logits, (size_t)g->V * sizeof *g->masked);
        g->masked[g->eod] = -INFINITY;
        logits = g->masked;
    }
    int32_t t = rtr_sample(&g->sm, logits, (int)g->V, g->scratch);
    if (t == (int32_t)g->eod) return gen_end(g, "end");
    g->tokens++;
    size_t len;
    const uint8_t *b = rtr_tokenizer_token(g->tok, (uint32_t)t, &len);
    int rc = RTR_OK;
    if (o->logprobs && !(rc = RTR_GROW(g->lp, &g->cap_lp, g->n_lp + 1))) {
        token_lp(raw, g->V, t, o->logprobs, &g->lp[g->n_lp]);
        g->lp[g->n_lp++].offset = g->text.len;
    }
    if (!rc) rc = rtr_buf_append(&g->text, b, len);
    if (rc) return rc;
    long at = find_stop(&g->text, o);
    if (at >= 0) {
        g->text.len = (size_t)at;
        return gen_end(g, "stop");
    }
    if (o->on_text) {
        int x = stream_out(o, &g->text, &g->sent, g->hold, 0);
        if (x > 0) return gen_end(g, "cancel");
        if (x < 0) return x;
    }
    if (g->tokens >= o->max_tokens) return gen_end(g, "length");
    *next = t;
    return 1;
}

int rtr_gen_finish(rtr_gen *g, rtr_gen_result *res) {
    memset(res, 0, sizeof *res);
    const rtr_gen_opts *o = &g->o;
    double el = rtr_now() - g->t0;
    res->prompt_tokens = g->prompt_tokens;
    res->tokens = g->tokens;
    res->stopped = g->stopped;
    res->tokens_per_s = el > 0 ? g->tokens / el : 0;
    int rc = RTR_OK;
    if (o->on_text && strcmp(g->stopped, "cancel")) {
        int x = stream_out(o, &g->text, &g->sent, 0, 1);
        if (x < 0) rc = x;
    }
    if (!rc) {
        rtr_buf fixed = {0};
        long x = rtr_utf8_repair(g->text.data, g->text.len, &fixed);
        rc = x < 0 ? (int)x : rtr_buf_terminate(&fixed);
        res->text = (char *)fixed.data;
        res->len = fixed.len;
        if (!rc && !res->text && !(res->text = rtr_strdup(""))) rc = RTR_E_NOMEM;
    }
    if (!rc && g->lp) {   /* the tokens that start inside the text (a stop sequence cut the rest) */
        size_t n = 0;
        while (n < g->n_lp && g->lp[n].offset < g->text.len) n++;
        res->lp = g->lp;
        res->n_lp = n;
        g->lp = NULL;
    }
    if (rc) rtr_gen_result_free(res);
    rtr_gen_free(g);
    return rc;
}

int rtr_generate(rtr_session *s, const rtr_tokenizer *tok, const char *prompt, size_t plen, const rtr_gen_opts *o,
                 rtr_gen_result *res) {
    memset(res, 0, sizeof *res);
    rtr_gen *g;
    int rc = rtr_gen_begin(s, tok, prompt, plen, o, &g);
    if (rc) return rc;
    const float *logits = NULL;
    int32_t t;
    while ((rc = rtr_gen_next(g, logits, &t)) == 1)
        if ((rc = rtr_session_feed(s, &t, 1, &logits))) break;
    if (rc < 0) {
        rtr_gen_free(g);
        return rc;
    }
    return rtr_gen_finish(g, res);
}
