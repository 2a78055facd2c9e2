/*
 * generate.h - the generation loop: tokenize the prompt, feed it to a session
 * (model/infer.h, with or without live retrieval), sample, and stream the
 * text through a callback: never splitting a UTF-8 sequence, holding back what
 * could still become a stop sequence.
 *
 *     rtr_gen_opts o;
 *     rtr_gen_opts_default(&o);
 *     o.on_text = print_piece;                 // optional
 *     rtr_gen_result res;
 *     rtr_generate(session, tok, "Once", 4, &o, &res);
 *     ... res.text ...
 *     rtr_gen_result_free(&res);
 */
#ifndef RTR_GENERATE_H
#define RTR_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/bpe.h"
#include "model/infer.h"

#define RTR_GEN_MAX_STOP 16

/* Receives each piece of generated text as soon as it is final (valid UTF-8,
 * len >= 1); a non-zero return stops the generation (stopped = "cancel"). */
typedef int (*rtr_text_fn)(void *ctx, const char *text, size_t len);

typedef struct rtr_gen_opts {
    int max_tokens;
    float temperature;            /* 0: greedy */
    int top_k;                    /* 0: all */
    float top_p;                  /* 1: all */
    uint64_t seed;
    const char *stop[RTR_GEN_MAX_STOP];   /* the text ends before the first of these */
    int n_stop;
    rtr_text_fn on_text;          /* NULL: not streamed */
    void *ctx;
    const volatile int *cancel;   /* when it becomes non-zero: stop (stopped = "cancel"); may be NULL */
    int ignore_end;               /* the end-of-document token is never sampled */
    int logprobs;                 /* 0: none; 1..RTR_GEN_MAX_LOGPROBS: each token's log probability and
                                   * that many most likely alternatives (rtr_gen_result.lp) */
} rtr_gen_opts;

#define RTR_GEN_MAX_LOGPROBS 20

/* One generated token's log probability (natural log, of the model's distribution before
 * temperature and truncation) and its most likely alternatives, best first. */
typedef struct rtr_token_lp {
    int32_t token;
    float logprob;
    uint64_t offset;              /* where its bytes start in the generated text */
    int n_top;
    int32_t top[RTR_GEN_MAX_LOGPROBS];
    float top_lp[RTR_GEN_MAX_LOGPROBS];
} rtr_token_lp;

void rtr_gen_opts_default(rtr_gen_opts *o);   /* 128 tokens, 0.8, top-k 40, top-p 0.95, seed 1 */

typedef struct rtr_gen_result {
    char *text;          /* the generated text (valid UTF-8, without the stop sequence); caller frees */
    size_t len;
    int prompt_tokens, tokens;
    const char *stopped; /* "length", "stop", "end" (end-of-document token) or "cancel" */
    double tokens_per_s; /* generated tokens per second, after the prompt */
    rtr_token_lp *lp;    /* with o->logprobs: one per token whose bytes start inside text (caller frees) */
    size_t n_lp;
} rtr_gen_result;

/* Continues prompt (plen bytes; empty: a new document) in session s, whose
 * model uses tokenizer tok. RTR_E_INVALID (too many stop sequences, tokens
 * outside the vocabulary), RTR_E_NOMEM, and what the session's retrieval
 * returns. On failure res holds nothing. */
int rtr_generate(rtr_session *s, const rtr_tokenizer *tok, const char *prompt, size_t plen, const rtr_gen_opts *o,
                 rtr_gen_result *res);
void rtr_gen_result_free(rtr_gen_result *r);   /* NULL-safe */

/* The same loop a step at a time, for decoding several generations together
 * (rtr_batch_feed): rtr_gen_begin feeds the prompt; rtr_gen_next samples
 * from logits (NULL: the prompt's), streams, and returns 1 with the token to
 * feed next, 0 when the generation has ended, or a status; rtr_gen_finish
 * gives the result and frees g (rtr_gen_free frees it without one). o is
 * copied; its strings and callbacks must outlive g.
 *
 *     rtr_gen_begin(s, tok, prompt, n, &o, &g);
 *     const float *lg = NULL;
 *     while (rtr_gen_next(g, lg, &t) == 1) rtr_session_feed(s, &t, 1, &lg);
 *     rtr_gen_finish(g, &res);
 */
typedef struct rtr_gen rtr_gen;
int rtr_gen_begin(rtr_session *s, const rtr_tokenizer *tok, const char *prompt, size_t plen, const rtr_gen_opts *o,
                  rtr_gen **out);
int rtr_gen_next(rtr_gen *g, const float *logits, int32_t *next);
int rtr_gen_finish(rtr_gen *g, rtr_gen_result *res);
void rtr_gen_free(rtr_gen *g);   /* NULL-safe */
rtr_session *rtr_gen_session(rtr_gen *g);

#endif
