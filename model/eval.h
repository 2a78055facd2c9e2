/*
 * eval.h - evaluation of a model on documents: windowed bits per byte with or
 * without neighbours, and the RETRO paper's leakage filter (section 4: the
 * overlap of every evaluated chunk with its nearest neighbours, as the
 * longest token run they share). rtr_evaluate (model/train.h) is the
 * validation during training; this is evaluation of whole documents.
 *
 * A document of n tokens is read in windows of the model's context T sliding
 * by a stride S: window w covers inputs [w, w + T) and scores the targets
 * after its first T - S inputs (all of them in the first window), so every
 * token after the document's first is scored exactly once.
 */
#ifndef RTR_EVAL_H
#define RTR_EVAL_H

#include <stdint.h>

#include "model/retro.h"

/* The leakage filter's thresholds: bpb over the chunks whose overlap is <= alpha. */
#define RTR_EVAL_N_ALPHA 5
extern const double rtr_eval_alpha[RTR_EVAL_N_ALPHA];   /* 0, 12.5%, 25%, 50%, 100% */
/* Neighbours the leakage filter compares each chunk with (the paper's 10). */
#define RTR_EVAL_LEAK_K 10

/* Longest common run of token arrays a (na) and b (nb <= 256); tokens < 0 never match. */
int rtr_eval_lcs(const int32_t *a, int na, const int32_t *b, int nb);

/* Overlap of each chunk u of x (n tokens, chunks of m) with its kk neighbours
 * nbr (nch, kk, R): ov[u] = the longest run the chunk shares with one of
 * them, divided by m. nch = ceil(n / m). */
void rtr_eval_overlap(const int32_t *x, int64_t n, int m, const int32_t *nbr, int kk, int R, double *ov);

/* Natural-log loss of target under logits (V): logsumexp - logit[target]. */
double rtr_eval_token_nats(const float *logits, int V, int32_t target);

typedef struct rtr_eval_counts {
    double nats, bytes;           /* summed over the scored tokens */
    int64_t tokens;
    int64_t nbr_read, nbr_all;    /* neighbours given to the model, of those retrieved */
} rtr_eval_counts;

/* Scores document x (n >= 2 tokens) with m in windows of stride S (a
 * multiple of the chunk; 0: half the context), B windows (<= the model's
 * max_B) per forward pass. nbr (nch, kk, R) holds every chunk's neighbours
 * and scores (nch, kk) their scores (NaN: none); the model reads the first K
 * of each chunk's, withholding those scoring below min_score (-INFINITY:
 * none); nbr NULL turns retrieval off. tok_bytes (V) are the tokens' UTF-8
 * lengths, eod pads the last window. chunk_nats and chunk_bytes (nch,
 * overwritten) get the loss and bytes of the tokens each chunk holds; acc is
 * added to. RTR_E_NOMEM, RTR_E_INVALID (tokens outside the vocabulary). */
int rtr_eval_document(rtr_model *m, const int32_t *x, int64_t n, const int32_t *nbr, const float *scores, int kk,
                      float min_score, int stride, int B, const float *tok_bytes, int32_t eod, double *chunk_nats,
                      double *chunk_bytes, rtr_eval_counts *acc);

#endif
