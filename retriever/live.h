/*
 * live.h - retrieval for a model while it reads or writes text: the callback
 * that model/infer.h's sessions call for every completed chunk (the same
 * signature as rtr_retrieve_fn; retriever/ never includes model/), with the
 * exclusions, score threshold and alignment a model and its caller ask for,
 * and a report of each retrieval's sources.
 *
 *     rtr_live lv = {.r = retriever, .k = K, .min_score = -INFINITY, .align = model_align,
 *                    .mode = model_retriever};
 *     rtr_session_set_retrieval(session, rtr_live_retrieve, &lv);
 */
#ifndef RTR_LIVE_H
#define RTR_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "retriever/retriever.h"

/* One neighbour of a retrieval, as reported to rtr_live.report. */
typedef struct rtr_live_hit {
    int64_t chunk_id;             /* -1: no neighbour */
    uint64_t doc_id;
    float distance, score;        /* score = 1 - distance / 2 (cosine similarity, whatever the mode) */
    int withheld;                 /* scored below min_score: the model was not given it */
    const char *path;             /* the document's source path (path_len bytes); valid during the call */
    uint32_t path_len;
    uint64_t byte_start, byte_end;
    const int32_t *tokens;        /* (RTR_NBR_TOKENS) what the model was given (-1 padded) */
} rtr_live_hit;

/* Called once per retrieved chunk: chunk is its index in the token stream. */
typedef void (*rtr_live_report_fn)(void *ctx, int64_t chunk, const rtr_live_hit *hits, uint32_t k);

struct rtr_multi;

typedef struct rtr_live {
    rtr_retriever *r;
    struct rtr_multi *m;          /* instead of r: neighbours from every partition (retriever/multi.h; vector,
                                   * a collective under mpirun: see rtr_live_follow) */
    uint32_t k;                   /* neighbours the model reads per chunk */
    const uint64_t *exclude;      /* sorted document ids never returned */
    size_t n_exclude;
    uint64_t exclude_doc;         /* one more (0: none), e.g. the evaluated document */
    float min_score;              /* neighbours scoring below it are withheld (-INFINITY: none) */
    uint32_t align;               /* aligned neighbours of this minimum run (0: the paper's) */
    int mode;                     /* RTR_SEARCH_*: where the neighbours come from (DEFAULT: vector) */
    rtr_live_report_fn report;    /* NULL: no report */
    void *report_ctx;
} rtr_live;

/* rtr_retrieve_fn over an rtr_live (ctx): nbr (n, k, RTR_NBR_TOKENS) gets the
 * neighbours of n complete chunks (n, 64), -1 where a neighbour is missing or
 * withheld. first is chunks[0]'s index in the stream (for the report). */
int rtr_live_retrieve(void *ctx, const int32_t *chunks, int n, int64_t first, int32_t *nbr);

/* The same for n sessions at once (model/infer.h's rtr_retrieve_many_fn):
 * ctx[i] is session i's rtr_live, chunks (n, 64) the chunk it completes,
 * first[i] that chunk's index in its stream, nbr (n, k, RTR_NBR_TOKENS).
 * Lives that differ only in exclude_doc are retrieved in one search (each
 * chunk's own document excluded for it); otherwise one call each. */
int rtr_live_retrieve_many(void *const *ctx, const int32_t *chunks, int n, const int64_t *first, int32_t *nbr);

/* The same for evaluation: score (n, k; NaN where missing; may be NULL),
 * nbr (may be NULL) the paper's neighbours, aligned (may be NULL) the same
 * neighbours aligned at runs of align_run (>= 1); min_score is applied to
 * both. */
int rtr_live_retrieve_scored(rtr_live *l, const int32_t *chunks, int n, int64_t first, int32_t *nbr, float *score,
                             int32_t *aligned, uint32_t align_run);

/* Under mpirun with m set: a rank that retrieves nothing this time takes part in another rank's
 * retrieval over the partitions (rtr_multi_neighbours for no chunks, l's options, align_run as the
 * other's call). */
int rtr_live_follow(rtr_live *l, uint32_t align_run);

#endif
