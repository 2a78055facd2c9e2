/*
 * dataset.h - training and validation sequences from a knowledge base, with
 * their precomputed neighbours: the rtr_train_source behind `retro train`.
 *
 * Documents are split by content hash (stable across re-ingestion): a
 * document is in the validation split when the first 8 bytes of its XXH3
 * hash, mixed, modulo 1e6, fall below val_frac * 1e6. Each split is the sequence of
 * its documents' 64-token chunks in document order; training sequence i is
 * chunks [i*Lc, (i+1)*Lc) (Lc = T/64), so every model chunk is a store chunk.
 * Inputs are the chunk tokens (a document's short last chunk is padded with
 * the end-of-document token, whose targets do not count); the target of a
 * document's last token is the end-of-document token.
 *
 * Neighbours (retrieval modes): for every chunk, the K nearest chunks of the
 * knowledge base with their continuations, never from the chunk's own
 * document (the paper's rule) and never from a validation document (so
 * validation text is never seen through retrieval either). With align > 0
 * every neighbour is re-cut to line up with its chunk (rtr_retriever_align).
 *
 * self_rate > 0 (`retro train --self-neighbours P`; DEVIATION from the paper,
 * off by default): for that share of training chunks, drawn from (seed,
 * chunk), the last neighbour slot holds the chunk itself and its true
 * continuation instead of a retrieved neighbour. It is a curriculum that
 * teaches the cross-attention to read a neighbour that carries the answer,
 * which other documents of a small corpus rarely do; validation sequences
 * never get it. With self_anneal the share at step s of S is
 * self_rate * (1 - s / S): the last steps see honest neighbours only, so the
 * model learns when not to trust a neighbour as well.
 *
 * self_shift S > 0 (`--self-shift S`): the self-neighbour is the chunk's own
 * document read from d tokens after the chunk's start (d drawn from (seed,
 * chunk), uniform in [-S, S]; tokens outside the document are -1), so the
 * answer sits d positions away from the aligned one. A near-duplicate that
 * retrieval finds in another document (a licence, a template) is the same
 * text cut at another offset, up to half a chunk away; aligned self-neighbours
 * teach only the fixed-offset copy, shifted ones teach finding the matching
 * text and reading on from there.
 */
#ifndef RTR_CLI_DATASET_H
#define RTR_CLI_DATASET_H

#include <stdint.h>

#include "index/store.h"
#include "model/train.h"
#include "retriever/retriever.h"

typedef struct cli_dataset cli_dataset;

typedef struct cli_dataset_opts {
    int T;              /* context, a multiple of 64 */
    int K;              /* neighbours per chunk; 0: no retrieval */
    double val_frac;    /* share of documents held out */
    double self_rate;   /* share of training chunks whose last neighbour is their own text (see below) */
    int self_anneal;    /* 1: that share falls linearly from self_rate at step 0 to 0 at the last step */
    int self_shift;     /* 0..64: the self-neighbour starts up to this many tokens before or after the chunk */
    uint32_t align;     /* > 0: neighbours aligned with their chunk at runs of at least this many tokens
                         * (rtr_retriever_align; 0: the paper's) */
    uint64_t seed;      /* which chunks those are */
    int progress;
} cli_dataset_opts;

/* Builds the dataset from kb (and retriever r when o->K > 0). */
int cli_dataset_build(rtr_kb *kb, rtr_retriever *r, const cli_dataset_opts *o, cli_dataset **out);
void cli_dataset_free(cli_dataset *d);   /* NULL-safe */
/* The training source; valid while d lives. */
const rtr_train_source *cli_dataset_source(const cli_dataset *d);
/* Chunks, documents and tokens of a split. */
void cli_dataset_counts(const cli_dataset *d, int split, int64_t *chunks, int64_t *docs, int64_t *tokens);

/* 1 if document d falls in the validation split for val_frac. */
int cli_dataset_is_val(const rtr_doc *d, double val_frac);

#endif
