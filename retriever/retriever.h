/*
 * retriever.h - the query path: text or chunks in, nearest chunks out.
 *
 *     rtr_retriever *r;
 *     rtr_retriever_open(kb, NULL, &r);            // loads the embedder; the shards at the first vector search
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

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "index/kb.h"
#include "index/lexical.h"
#include "index/vectors.h"

typedef struct rtr_retriever rtr_retriever;

typedef struct rtr_retriever_opts {
    uint32_t nprobe;   /* 0 = as recorded */
    int rerank;        /* flat indexes: candidates of the 4-bit scan re-ranked exactly
                        * (vindex.h); 0 = automatic, < 0 = exact search */
    int threads;       /* 0 = one per core */
    int32_t batch_nprobe;   /* neighbour lookups of RTR_NBR_BATCH chunks or more: lists probed through the
                             * batch codes (index/vindex.h); 0 = the index's default, < 0 = never through
                             * batch codes (each lookup searched as a single query is) */
} rtr_retriever_opts;

int rtr_retriever_open(rtr_kb *kb, const rtr_retriever_opts *o, rtr_retriever **out);
void rtr_retriever_close(rtr_retriever *r);   /* NULL-safe; kb stays open */
const rtr_kb_vectors *rtr_retriever_vectors(const rtr_retriever *r);   /* what it searches */
/* Its vector index, loaded by the first vector search or by this call (from any thread), with the
 * options r was opened with; owned by r. Errors of rtr_kb_vectors_vindex. */
int rtr_retriever_vindex(rtr_retriever *r, rtr_vindex **out);
rtr_kb *rtr_retriever_kb(rtr_retriever *r);   /* the knowledge base it was opened on */
/* What searches read mapped into the process before they read it: the vector index's mapped lists
 * and codes (loading the index, as rtr_retriever_vindex) and the store's file (chunks, lexical index),
 * with rtr_vindex_warm and rtr_store_warm. A query of a knowledge base of a billion tokens touches
 * hundreds of pages for the first time, each a fault of several microseconds in a virtual machine,
 * until the process has served long enough: a server calls this once at start, from a thread of its
 * own, while searches go on (docs/benchmarks.md, "Hybrid search's tail"). search_mu (may be NULL): the
 * lock that the caller's searches hold, held here while the index is warmed (the store is warmed
 * outside it). *bytes (may be NULL): what was mapped. Pages not in the page cache are read from disk. */
int rtr_retriever_warm(rtr_retriever *r, pthread_mutex_t *search_mu, uint64_t *bytes);
/* The knowledge base's search mode when it was opened (`retro index build --search-mode`, recorded in
 * the manifest): RTR_SEARCH_VECTOR (also when none is recorded), _LEXICAL or _HYBRID. */
int rtr_retriever_default_mode(const rtr_retriever *r);
/* RTR_OK if r can rank in mode (RTR_SEARCH_*; DEFAULT and VECTOR always can); RTR_E_NOTFOUND, one line
 * telling the user to run `retro index build KB`, for lexical or hybrid before the lexical index is
 * built (what, which may be NULL, names who wants it: "the model's lexical neighbours"); RTR_E_INVALID
 * for another mode; store errors. */
int rtr_retriever_mode_ready(rtr_retriever *r, int mode, const char *what);

typedef struct rtr_hit {
    uint64_t chunk_id, doc_id;
    float distance, score;
    uint32_t query_chunk;           /* which chunk of the query found it best */
    uint64_t byte_start, byte_end;  /* span in the document's text */
    uint32_t seq;                   /* chunk number within its document */
    char *path, *title;             /* fresh strings; title may be "" */
    char *text;                     /* the chunk's text */
    char *continuation;             /* the next chunk's text, or NULL */
    unsigned found_by;              /* RTR_FOUND_VECTOR | RTR_FOUND_LEXICAL: which side found it */
    uint32_t vector_rank, lexical_rank;   /* 1-based on each side; 0: not found there (hybrid: the rank
                                           * among all candidates by that side's score; 0 where it is 0) */
    float vector_score, lexical_score;    /* cosine similarity, BM25; NAN where not found (hybrid: both,
                                           * every candidate scored by each side, the vector score in
                                           * the full space of a projected embedder) */
} rtr_hit;

enum { RTR_FOUND_VECTOR = 1, RTR_FOUND_LEXICAL = 2 };

typedef struct rtr_hits {
    rtr_hit *items;
    size_t n;
    uint32_t query_chunks;          /* chunks the query was cut into */
    uint32_t query_tokens;
} rtr_hits;

enum { RTR_SEARCH_DEFAULT = 0, RTR_SEARCH_VECTOR, RTR_SEARCH_LEXICAL, RTR_SEARCH_HYBRID };   /* = RETRO_SEARCH_* */

typedef struct rtr_search_opts {
    const uint64_t *exclude_docs;   /* document ids never returned */
    size_t n_exclude;
    int continuation;               /* fetch each hit's continuation */
    int mode;                       /* RTR_SEARCH_* */
    const rtr_lex_stats *lex_stats; /* BM25's statistics of all the partitions searched (made from this
                                     * query's text; retriever/multi.h); NULL: this knowledge base's */
    int candidates;                 /* hybrid: every candidate, ranked (each scored by both sides, found_by
                                     * the sides that found it among their best max(k, 50)), not only the
                                     * best k, and only their ids and scores: rtr_retriever_fill reads the
                                     * rest (a search over partitions fuses them all: retriever/multi.h) */
} rtr_search_opts;

/* k results (fewer if the knowledge base has fewer chunks). An empty query
 * (no tokens) fails with RTR_E_INVALID. */
int rtr_retriever_search(rtr_retriever *r, const char *query, size_t len, uint32_t k, const rtr_search_opts *so,
                         rtr_hits *out);
void rtr_hits_free(rtr_hits *h);
void rtr_hit_clear(rtr_hit *x);   /* frees a hit's strings (NULL after) */
/* Each of n hits' chunk fields (document id, byte span, seq, path, title, text, and the continuation
 * when asked) read for its chunk_id, in one read transaction. RTR_E_NOTFOUND for a chunk that is gone. */
int rtr_retriever_fill(rtr_retriever *r, rtr_hit *h, size_t n, int continuation);
/* The candidates' depth of a hybrid search for k results (each side's best this many). */
uint32_t rtr_retriever_side_depth(int mode, uint32_t k);
/* Hybrid search's fusion of m candidates each scored by both sides (vector_score, lexical_score): each
 * side ranks them all (vector_rank, lexical_rank; 0 where the score is not above 0), score becomes the
 * sum of 1 / (60 + rank) over the sides, and all is sorted best first (ties: the sum of the two sides'
 * scores each scaled to 0..1 over the candidates, then the chunk id). RTR_E_NOMEM. */
int rtr_hits_fuse(rtr_hit *all, size_t m);
/* Of all's candidates (found_by: the sides that found them), those among each side's best depth by
 * that side's score of the ones it found, found_by then the sides that keep them; the others dropped
 * (rtr_hit_clear). What hybrid search over partitions fuses (retriever/multi.h): kept over each
 * rank's partitions, then over every rank's. RTR_E_NOMEM. */
int rtr_hits_keep_sides(rtr_hits *all, uint32_t depth);

/* --- neighbours for the model ------------------------------------------------------ */
/* Neighbour tokens: a neighbour is its chunk then the chunk's continuation
 * (RTR_NBR_TOKENS = 2 * 64), -1 where the chunk is short or the
 * continuation missing. */
#define RTR_NBR_TOKENS (2 * RTR_CHUNK_TOKENS)

typedef struct rtr_nbr_opts {
    uint32_t k;                 /* neighbours per query chunk, 1..4096 */
    const uint64_t *self_doc;   /* (n) or NULL: query i's document, never returned for it (0: none) */
    uint64_t exclude_doc;       /* a document never returned for any query (0: none) */
    const uint64_t *exclude;    /* sorted document ids never returned (n_exclude of them) */
    size_t n_exclude;
    uint32_t align;             /* > 0: fill aligned (below) at runs of at least this many tokens */
    int mode;                   /* RTR_SEARCH_*: where neighbours come from (DEFAULT: vector, the paper's) */
} rtr_nbr_opts;

/* Caller-allocated outputs of rtr_retriever_neighbours; any but ids may be NULL. */
typedef struct rtr_nbrs {
    int64_t *ids;       /* (n, k) chunk ids, best first (vector: ascending distance); -1 = no neighbour */
    float *dist;        /* (n, k) squared L2 distance of the embeddings; +inf where missing */
    int32_t *tokens;    /* (n, k, RTR_NBR_TOKENS) the paper's neighbours */
    int32_t *aligned;   /* (n, k, RTR_NBR_TOKENS) the same neighbours aligned (needs align > 0) */
    int32_t *shifts;    /* (n, k) the alignment shift d of each (needs align > 0) */
} rtr_nbrs;

/* The k nearest chunks of each of n query chunks (n x 64 token ids; a short
 * chunk ends at its first -1) for training, evaluation and generation, in one
 * read transaction that reads each record once. Deleted and excluded chunks
 * are skipped (the search goes deeper). RTR_E_INVALID for k out of range, an
 * unsorted exclude list, a query chunk without tokens, a bad mode, or
 * aligned/shifts without align; RTR_E_NOTFOUND (lexical, hybrid) before the
 * lexical index is built; RTR_E_NOMEM; store and FAISS errors.
 *
 * The mode (DEVIATION from the paper, whose neighbours are always the nearest
 * embeddings; `retro train --retriever`): vector takes the k nearest in the
 * vector index. Lexical and hybrid rank each query chunk's text as
 * rtr_retriever_search ranks a one-chunk query in that mode (BM25; hybrid:
 * both sides' candidates, each scored by both, fused by reciprocal rank;
 * docs/search.md) with the same exclusions, and
 * keep the top k in that order; their dist is the squared L2 distance
 * between the query chunk's embedding and the neighbour's text embedded by
 * the knowledge base's embedder, so that a score (1 - dist / 2) means what
 * it means for vector neighbours.
 *
 * Aligned neighbours (`retro train --align`; DEVIATION from the paper, whose
 * neighbour is always a stored chunk and the chunk after it): a near-duplicate
 * in another document (a licence, a template, a quotation) holds the query's
 * text at another offset from its chunk boundaries, so the token that
 * continues the query sits up to half a chunk away from the one aligned with
 * it. The aligned neighbour is the 128 tokens of the neighbour's document from
 * d tokens after the neighbour chunk's start (-1 outside the document): d in
 * [-63, 63] is the shift at which the query chunk and the document share
 * their longest run of equal tokens (ties: the run nearer the chunk's end,
 * then the smaller |d|), kept at 0 unless that run is at least align tokens
 * and longer than the longest run at d = 0. */
int rtr_retriever_neighbours(rtr_retriever *r, const int32_t *chunks, size_t n, const rtr_nbr_opts *o,
                             const rtr_nbrs *out);
/* A call of at least this many query chunks (training's and evaluation's) searches an inverted
 * file of full vectors through its batch codes (rtr_vindex_search_batch), made by the first such
 * call: at a billion tokens about 36 times the chunks a second of a search at the default nprobe,
 * recall@2 0.89 (docs/benchmarks.md). Smaller calls (generation's) search as single queries do. */
#define RTR_NBR_BATCH 1024

/* The alignment above for given neighbours: for each ids[i] (>= 0) of query
 * chunk i / k, tokens[i] (RTR_NBR_TOKENS) becomes its aligned neighbour and
 * shifts[i] (may be NULL) its d; ids[i] < 0 is left as is. RTR_E_INVALID if
 * min_run is 0. */
int rtr_retriever_align(rtr_retriever *r, const int32_t *chunks, size_t n, uint32_t k, const int64_t *ids,
                        uint32_t min_run, int32_t *tokens, int32_t *shifts);

#endif
