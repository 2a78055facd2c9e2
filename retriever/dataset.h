/*
 * dataset.h - training and validation sequences from a knowledge base, with
 * their precomputed neighbours: the data source behind `retro train`.
 *
 * Documents are split by content hash (lib/split.h). Each split is the
 * sequence of its documents' 64-token chunks in document order; sequence i is
 * chunks [i*Lc, (i+1)*Lc) (Lc = T/64), so every model chunk is a store chunk.
 * Inputs are the chunk tokens (a document's short last chunk is padded with
 * the end-of-document token, whose targets do not count); the target of a
 * document's last token is the end-of-document token.
 *
 * Neighbours (K > 0): for every chunk, the K nearest chunks with their
 * continuations (retriever.h), never from the chunk's own document (the
 * paper's rule) nor from a validation document, found by the retriever
 * (vector, lexical or hybrid: rtr_retriever_neighbours); aligned when align > 0.
 * The self-neighbour curriculum (self_rate, self_anneal, self_shift; a
 * DEVIATION from the paper, off by default) is described in docs/model.md.
 *
 * The source fills model/train.h's rtr_train_source through rtr_dataset_get
 * and rtr_dataset_at_step (ctx = the dataset); retriever/ never includes
 * model/, so the caller wires them.
 */
#ifndef RTR_DATASET_H
#define RTR_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "index/kb.h"
#include "lib/comm.h"
#include "retriever/multi.h"
#include "retriever/retriever.h"

typedef struct rtr_dataset rtr_dataset;

typedef struct rtr_dataset_opts {
    int T;              /* context, a multiple of 64 */
    int K;              /* neighbours per chunk; 0: no retrieval */
    double val_frac;    /* share of documents held out */
    double self_rate;   /* share of training chunks whose last neighbour is their own text */
    int self_anneal;    /* 1: that share falls linearly from self_rate at step 0 to 0 at the last step */
    int self_shift;     /* 0..64: the self-neighbour starts up to this many tokens before or after the chunk */
    uint32_t align;     /* > 0: neighbours aligned at runs of at least this many tokens (0: the paper's) */
    int retriever;      /* RTR_SEARCH_*: where the neighbours come from (DEFAULT: vector, the paper's) */
    uint64_t seed;      /* which chunks get a self-neighbour, and its shift */
    int progress;       /* progress bar for the neighbour precompute */
    rtr_comm *comm;     /* the ranks that share the precompute (each a contiguous share of the chunks,
                           then gathered by all: lib/comm.h); NULL: this process alone */
} rtr_dataset_opts;

/* Builds the dataset from kb (and retriever r when o->K > 0). RTR_E_INVALID
 * (context not a multiple of 64, no training documents), RTR_E_CORRUPT
 * (chunks that disagree with their documents, tokens outside the
 * vocabulary), RTR_E_NOMEM, and the retriever's errors. */
int rtr_dataset_build(rtr_kb *kb, rtr_retriever *r, const rtr_dataset_opts *o, rtr_dataset **out);
/* The same over the partitions of a knowledge base (index/parts.h): every partition's documents, in
 * partition order, read by every rank (they share the directory), with the knowledge base's ids;
 * neighbours from every partition through m (rtr_multi_neighbours: vector neighbours; o->comm must be
 * the parts' job when m searches on several ranks). A collective. */
int rtr_dataset_build_parts(rtr_parts *ps, rtr_multi *m, const rtr_dataset_opts *o, rtr_dataset **out);
void rtr_dataset_free(rtr_dataset *d);   /* NULL-safe */

/* Sequences, chunks, documents and tokens of a split (RTR_SPLIT_TRAIN / _VAL). */
int64_t rtr_dataset_sequences(const rtr_dataset *d, int split);
void rtr_dataset_counts(const rtr_dataset *d, int split, int64_t *chunks, int64_t *docs, int64_t *tokens);

/* rtr_train_source.get: sequence i of split as T inputs idx, T targets (-1:
 * not counted), the neighbours of its T/64 chunks (nbr: (T/64, K, 128) or
 * NULL) and the UTF-8 bytes its counted targets stand for. */
int rtr_dataset_get(void *d, int split, int64_t i, int32_t *idx, int32_t *targets, int32_t *nbr, double *bytes);
/* rtr_train_source.at_step: the step (of steps) the next training batch is for. */
void rtr_dataset_at_step(void *d, int64_t step, int64_t steps);

/* The ids of kb's validation documents for val_frac, ascending (*ids is the
 * caller's to free; NULL when n is 0). RTR_E_NOMEM, store errors. */
int rtr_dataset_val_docs(rtr_kb *kb, double val_frac, uint64_t **ids, size_t *n);
/* The same over every partition of ps (the knowledge base's ids, ascending). */
int rtr_dataset_val_docs_parts(rtr_parts *ps, double val_frac, uint64_t **ids, size_t *n);

#endif
