/*
 * retriever.h - the query path: text or chunks in, nearest chunks out.
 *
 *     rtr_retriever *r;
 *     rtr_retriever_open(kb, NULL, &r);            // loads embedder + shards
 *     rtr_hits hits;
 *     rtr_retriever_search(r, "tax policy", 10, 10, NULL, &hits);
 *     for (size_t i = 0; i < hits.n; i++) ... hits.items[i].path, .byte_start, .score, .text
 *     rtr_hits_free(&hits);
 *     rtr_retriever_close(r);
 *
 * A query is tokenized with the knowledge base's tokenizer and cut into
 * 64-token chunks; each chunk is embedded and searched in every shard; the
 * hits are merged into one ranking (a chunk found by several query chunks
 * keeps its best distance). Chunks of deleted documents (still in the shards
 * until `retro index build --compact`) and of excluded documents are dropped;
 * the search goes deeper until k hits remain or the index is exhausted.
 *
 * Distances are squared L2 between unit vectors: score = 1 - distance / 2 is
 * the cosine similarity, 1 for identical vectors.
 */
#ifndef RTR_RETRIEVER_H
#define RTR_RETRIEVER_H

#include <stddef.h>
#include <stdint.h>

#include "index/build.h"
#include "index/kb.h"

typedef struct rtr_retriever rtr_retriever;

typedef struct rtr_retriever_opts {
    uint32_t nprobe;   /* 0 = as recorded */
    int rerank;        /* flat indexes: candidates of the 4-bit scan re-ranked exactly
                        * (vindex.h); 0 = automatic, < 0 = exact search */
    int threads;       /* 0 = one per core */
} rtr_retriever_opts;

int rtr_retriever_open(rtr_kb *kb, const rtr_retriever_opts *o, rtr_retriever **out);
void rtr_retriever_close(rtr_retriever *r);   /* NULL-safe; kb stays open */
const rtr_kb_index *rtr_retriever_index(const rtr_retriever *r);

typedef struct rtr_hit {
    uint64_t chunk_id, doc_id;
    float distance, score;
    uint32_t query_chunk;           /* which chunk of the query found it best */
    uint64_t byte_start, byte_end;  /* span in the document's text */
    uint32_t seq;                   /* chunk number within its document */
    char *path, *title;             /* fresh strings; title may be "" */
    char *text;                     /* the chunk's text */
    char *continuation;             /* the next chunk's text, or NULL */
} rtr_hit;

typedef struct rtr_hits {
    rtr_hit *items;
    size_t n;
    uint32_t query_chunks;          /* chunks the query was cut into */
    uint32_t query_tokens;
} rtr_hits;

typedef struct rtr_search_opts {
    const uint64_t *exclude_docs;   /* document ids never returned */
    size_t n_exclude;
    int continuation;               /* fetch each hit's continuation */
} rtr_search_opts;

/* k results (fewer if the knowledge base has fewer chunks). An empty query
 * (no tokens) fails with RTR_E_INVALID. */
int rtr_retriever_search(rtr_retriever *r, const char *query, size_t len, uint32_t k, const rtr_search_opts *so,
                         rtr_hits *out);
void rtr_hits_free(rtr_hits *h);

/* Batch neighbours for training and evaluation (the paper's retrieval).
 * chunks: n x 64 token ids (query chunk i has n_tokens[i] valid tokens, or 64
 * if n_tokens is NULL). exclude_doc[i] (if exclude_doc) is a document id never
 * returned for query i (0 = none); exclude (if n_exclude) a sorted list of
 * document ids never returned for any query.
 * Out: ids (n x k; -1 = no neighbour), dist (n x k, may be NULL), and tokens
 * (n x k x 2*64, may be NULL): each neighbour's chunk then its continuation,
 * padded with pad where the chunk is short or the continuation missing. */
int rtr_retriever_neighbours(rtr_retriever *r, const uint32_t *chunks, const uint32_t *n_tokens, size_t n,
                             uint32_t k, const uint64_t *exclude_doc, const uint64_t *exclude, size_t n_exclude,
                             int64_t *ids, float *dist, uint32_t *tokens, uint32_t pad);

/* Neighbours re-cut to line up with their query chunks (`retro train
 * --align`; DEVIATION from the paper, whose neighbour is always a stored chunk
 * and the chunk after it). A near-duplicate in another document (a licence, a
 * template, a quotation) holds the query's text at another offset from its
 * chunk boundaries, so the token that continues the query sits up to half a
 * chunk away from the one aligned with it. For every neighbour ids[i] of
 * query chunk i / k, tokens (n x k x 2*64, as rtr_retriever_neighbours fills
 * them) becomes the 128 tokens of the neighbour's document from d tokens
 * after the neighbour chunk's start, pad outside the document: d in [-63, 63]
 * is the shift at which the query chunk and the document share their longest
 * run of equal tokens (ties: the run nearer the chunk's end, then the smaller
 * |d|), kept at 0 unless that run is at least min_run tokens (>= 1) and longer
 * than the longest run at d = 0. A neighbour with ids[i] < 0 is left as is.
 * shifts (n x k, may be NULL) receives every d. */
int rtr_retriever_align(rtr_retriever *r, const uint32_t *chunks, const uint32_t *n_tokens, size_t n, uint32_t k,
                        const int64_t *ids, uint32_t min_run, uint32_t *tokens, uint32_t pad, int32_t *shifts);

#endif
