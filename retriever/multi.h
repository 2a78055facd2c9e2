/*
 * multi.h - searching a knowledge base of partitions (index/parts.h) on the ranks of a job.
 *
 *     rtr_multi *m;
 *     rtr_multi_open(ps, NULL, &m);                     // a retriever for each partition of this rank
 *     rtr_multi_search(m, "tax policy", 10, 5, NULL, &hits);   // every rank calls it; rank 0 gets the hits
 *     rtr_multi_close(m);
 *
 * Rank 0 takes the query and broadcasts it (with k, the mode and the exclusions); every rank searches
 * its partitions with rtr_retriever_search, k hits each; the hits, with their texts, are gathered on
 * rank 0 and merged: vector and lexical by their score (then the chunk id), hybrid fused again over
 * all the partitions' hits by reciprocal rank of each side's score (rtr_hits_fuse). Hit ids are
 * the knowledge base's (partition in the top bits). The vector scores of every partition compare,
 * since all of them embed with the embedder trained once (parts.h); BM25 scores are each partition's
 * own (its document frequencies, its average length), an approximation of one index's that is the
 * same whichever rank searches a partition. A knowledge base of one partition is searched as
 * retriever.h searches it, on rank 0.
 */
#ifndef RTR_MULTI_H
#define RTR_MULTI_H

#include "index/parts.h"
#include "lib/buf.h"
#include "retriever/retriever.h"

typedef struct rtr_multi rtr_multi;   /* struct rtr_multi: retriever/live.h names it too */

/* A retriever on each partition ps opened on this rank (rtr_retriever_open with o). A collective. */
int rtr_multi_open(rtr_parts *ps, const rtr_retriever_opts *o, rtr_multi **out);
void rtr_multi_close(rtr_multi *m);   /* NULL-safe; ps stays open */
rtr_parts *rtr_multi_parts(rtr_multi *m);   /* the knowledge base it searches */

/* rtr_retriever_search over every partition: a collective; query, k and so are read on rank 0 only
 * (may be NULL elsewhere). *out: the merged hits on rank 0, none elsewhere. Every rank returns the
 * same status. */
int rtr_multi_search(rtr_multi *m, const char *query, size_t len, uint32_t k, const rtr_search_opts *so,
                     rtr_hits *out);

/* A service of searches (retro serve under mpirun): rank 0 calls rtr_multi_search as requests come,
 * from any thread, one at a time; every other rank calls rtr_multi_follow, which takes part in each of
 * those searches (a search's failure is rank 0's to report: the followers go on) until rank 0 calls
 * rtr_multi_release, which lets them return. A plain knowledge base's followers return at once. */
int rtr_multi_follow(rtr_multi *m);
int rtr_multi_release(rtr_multi *m);   /* rank 0; RTR_OK on the others */

/* The k nearest chunks of each of this rank's n query chunks over every partition, as
 * rtr_retriever_neighbours gives them over one (its options and outputs; ids, self_doc, exclude_doc
 * and exclude are the knowledge base's ids; each query's self_doc, or the call's exclude_doc when
 * there is none, goes with it to the other ranks; exclude and, with self_doc, exclude_doc must be the
 * same on every rank). A collective: each rank passes its own queries (n may
 * differ between ranks, 0 too); every rank's queries are searched in every partition (each rank its
 * own partitions, the neighbours and their continuations read and aligned where their documents
 * live), and each query's best k over all partitions, by distance then id, go back to the rank that
 * asked (one gather to each rank in turn). Over several partitions only the vector neighbours (the
 * paper's) are merged: lexical and hybrid ones rank by scores that one partition's call does not
 * return (RTR_E_INVALID). */
int rtr_multi_neighbours(rtr_multi *m, const int32_t *chunks, size_t n, const rtr_nbr_opts *o, const rtr_nbrs *out);

/* Hits as bytes (docs/formats.md, "Hits between ranks") and back: rtr_hits_pack appends h to out;
 * rtr_hits_unpack appends the hits packed at the start of data to h (and sets h's query counts),
 * every length checked against len (RTR_E_CORRUPT, what naming the source); *used: the bytes they
 * took (used NULL: they must take all len). On failure h holds what was read (rtr_hits_free). */
int rtr_hits_pack(const rtr_hits *h, rtr_buf *out);
int rtr_hits_unpack(const uint8_t *data, size_t len, const char *what, rtr_hits *h, size_t *used);

#endif
