/*
 * infer.h - incremental (KV-cached) decoding with live retrieval.
 *
 *     rtr_session *s;
 *     rtr_session_new(model, &s);
 *     rtr_session_set_retrieval(s, my_retrieve, ctx);   // or leave it off
 *     const float *logits;
 *     rtr_session_feed(s, prompt, n, &logits);           // logits of the last token
 *     for (;;) { int32_t t = sample(logits); rtr_session_feed(s, &t, 1, &logits); }
 *
 * Each fed token runs the decoder on one row against the cached keys and
 * values of the earlier ones. Whenever a 64-token chunk completes (its last
 * token is fed), its neighbours are retrieved, encoded once (cross-attending
 * to the chunk's decoder rows, as in training), and projected to the keys and
 * values of every CCA layer; that token and the next m-1 attend to them (the
 * paper's causal shift). The chunks that complete within one feed call (a
 * prompt) are retrieved in ONE callback call. The logits equal those of a
 * full forward pass over the same tokens with the same neighbours
 * (tests/test_infer.c).
 *
 * When the context (the model's T) is full, the session keeps the last half
 * of it (a whole number of chunks) and recomputes its caches from there, with
 * the neighbours it already had.
 */
#ifndef RTR_INFER_H
#define RTR_INFER_H

#include <stdint.h>

#include "model/retro.h"

/* Fills nbr (n, K, R) with the neighbours of n complete chunks (n, m) of
 * token ids: each neighbour's chunk and continuation, -1 where missing.
 * first_chunk is the index of chunks[0] in the session's token stream. */
typedef int (*rtr_retrieve_fn)(void *ctx, const int32_t *chunks, int n, int64_t first_chunk, int32_t *nbr);

/* The same for n sessions at once (rtr_batch_feed): ctx[i] is session i's
 * retrieval context, chunks (n, m) the chunk it completes, first[i] that
 * chunk's index in its stream, nbr (n, K, R). */
typedef int (*rtr_retrieve_many_fn)(void *const *ctx, const int32_t *chunks, int n, const int64_t *first,
                                    int32_t *nbr);

typedef struct rtr_session rtr_session;

/* A session over m (which it borrows: m must outlive it, and m's training
 * activations are used as scratch). */
int rtr_session_new(rtr_model *m, rtr_session **out);
void rtr_session_free(rtr_session *s);   /* NULL-safe */
/* Forgets every token. */
void rtr_session_reset(rtr_session *s);
/* Retrieval on (fn) or off (NULL: the CCA layers are skipped, which equals
 * all neighbours missing). Takes effect for chunks completed from now on. */
void rtr_session_set_retrieval(rtr_session *s, rtr_retrieve_fn fn, void *ctx);
/* With many (NULL: none), the sessions of a batch step that complete a chunk
 * and have the same many function (and retrieval on) are retrieved in one
 * call to it, with their contexts, instead of one fn call each. */
void rtr_session_set_retrieval_many(rtr_session *s, rtr_retrieve_many_fn many);
/* Feeds n >= 1 tokens; *logits (if not NULL) gets the logits (V) after the
 * last one, valid until the next call. RTR_E_INVALID for tokens outside the
 * vocabulary or neighbour tokens outside it. */
int rtr_session_feed(rtr_session *s, const int32_t *tokens, int n, const float **logits);
/* Tokens fed since the start (not reduced by context shifts). */
int64_t rtr_session_tokens(const rtr_session *s);

/* Time spent so far (seconds): in the retrieval callback, in encoding
 * neighbours, and in total inside rtr_session_feed. */
typedef struct rtr_session_times {
    double retrieve, encode, total;
    int64_t retrievals;   /* chunks retrieved */
} rtr_session_times;
void rtr_session_times_get(const rtr_session *s, rtr_session_times *t);

/* Decoding several sessions of one model together (continuous batching):
 * one call feeds one token to each, and the decoder's matrix products take
 * all their rows at once, which is where a small model spends its time. */
typedef struct rtr_batch rtr_batch;
int rtr_batch_new(rtr_model *m, int max_sessions, rtr_batch **out);   /* 1..1024 */
void rtr_batch_free(rtr_batch *b);                                    /* NULL-safe */
/* Feeds tokens[i] to ss[i] for i < n (distinct sessions of b's model), as
 * rtr_session_feed(ss[i], &tokens[i], 1, ...) would, retrieval included;
 * logits[i] (if logits is not NULL) gets session i's logits, valid until
 * the next call on b. The logits equal the one-session feed's to rounding
 * (the products' sums run in another order); with n = 1, exactly. */
int rtr_batch_feed(rtr_batch *b, rtr_session *const *ss, const int32_t *tokens, int n, const float **logits);

#endif
