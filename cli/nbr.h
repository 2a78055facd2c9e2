/*
 * nbr.h - the glue between the model and a knowledge base: the retrieval
 * callback (model/infer.h's rtr_retrieve_fn) that generation, evaluation and
 * `retro ask` use, and loading a model with its tokenizer.
 */
#ifndef RTR_CLI_NBR_H
#define RTR_CLI_NBR_H

#include <stdint.h>
#include <stdio.h>

#include "lib/bpe.h"
#include "model/infer.h"
#include "model/retro.h"
#include "retriever/retriever.h"

/* Scores (cosine similarity, 1 - distance / 2) lie in [-1, 1]. */
#define CLI_NO_MIN_SCORE (-2.0f)

/* `retro train --align`: neighbours re-cut to line up with their query chunk
 * (rtr_retriever_align) where they share a run of at least this many tokens
 * with it, an eighth of a chunk (the leakage filter's first alpha). Models
 * record the run length as metadata "align" (0 or absent: the paper's
 * neighbours), and evaluation and generation retrieve for them the same way. */
#define CLI_ALIGN_MIN_RUN 8

typedef struct cli_nbr {
    rtr_kb *kb;
    rtr_retriever *r;
    int K;                     /* neighbours the model reads per chunk */
    const uint64_t *exclude;   /* sorted document ids never returned */
    size_t n_exclude;
    uint64_t exclude_doc;      /* one more (0: none), e.g. the evaluated document */
    float min_score;           /* neighbours scoring below it are withheld (CLI_NO_MIN_SCORE: none) */
    uint32_t align;            /* cli_nbr_retrieve: aligned neighbours of this minimum run (0: the paper's) */
    FILE *show;                /* print each retrieval's sources here (NULL: quiet) */
    const rtr_tokenizer *tok;  /* for showing text */
} cli_nbr;

/* Opens kb_dir and its retriever for a model of k neighbours. Refuses a
 * knowledge base whose tokenizer is not the model's (model_tok_hash). */
int cli_nbr_open(cli_nbr *n, const char *kb_dir, const char *model_tok_hash, int k);
void cli_nbr_close(cli_nbr *n);

/* rtr_retrieve_fn over a cli_nbr: nbr (n, K, 2*64) neighbour tokens, -1
 * where a neighbour is missing or withheld (below min_score). */
int cli_nbr_retrieve(void *ctx, const int32_t *chunks, int n, int64_t first, int32_t *nbr);
/* The same, with each neighbour's score in score (n, K; NAN where missing;
 * may be NULL); nbr (may be NULL) gets the paper's neighbours, aligned (may be
 * NULL) the same neighbours aligned with minimum run align_run (>= 1). */
int cli_nbr_retrieve_scored(cli_nbr *c, const int32_t *chunks, int n, int64_t first, int32_t *nbr, float *score,
                            int32_t *aligned, uint32_t align_run);

/* Parses a --min-score value (a score in [-1, 1]) into *out; -1 if it is not one. */
int cli_parse_min_score(const char *s, float *out);

/* Loads the model in checkpoint dir (model.safetensors) for batches of
 * max_B, and its tokenizer (dir/tokenizer.rtok, else tok_path); checks that
 * the tokenizer's hash is the one the model records. *tok_hash gets it
 * (owned by the tokenizer's caller: a fresh string); *align (if align is not
 * NULL) the alignment the model was trained with (see CLI_ALIGN_MIN_RUN). */
int cli_load_model(const char *dir, const char *tok_path, int max_B, int T, rtr_model **m, rtr_tokenizer **tok,
                   char **tok_hash, uint32_t *align);

/* The alignment recorded in checkpoint metadata value v (NULL: none) of file;
 * RTR_E_CORRUPT unless it is 0..64. */
int cli_align_meta(const char *v, const char *file, uint32_t *align);

#endif
