/*
 * faiss_ext.h - reaching past FAISS's C API, where it stops short.
 *
 * An inverted file read with its lists mapped (IO_FLAG_MMAP: FAISS's
 * OnDiskInvertedLists) starts up to 32 threads at every search to read the
 * lists it is about to scan ahead of it ("prefetch"), and the C API has no
 * setting for it. For lists in the page cache the threads cost more than
 * the search (a search of nprobe lists of a few hundred vectors each takes
 * a fraction of a millisecond), and on a two-core machine they take turns
 * with it; retro turns them off.
 *
 * Batch codes: an inverted file of full vectors ("IVFn,Flat") scans each
 * probed vector with a function call of its own (32 floats); a batch of
 * neighbour lookups at 16 M vectors so runs at a few hundred queries a
 * second. rtr_faiss_codes is a companion of such shards (clones of one
 * trained index, so with one set of centroids): FAISS's 4-bit fast-scan
 * product codes (IndexIVFPQFastScan, one code a dimension up to 64
 * dimensions) of all their vectors in one index with the same lists and
 * centroids, so that a query is assigned to its lists once for all shards;
 * its candidates are re-ranked by the exact distance to the shard's own
 * vector (a code's id is its list and its place there, shard after shard).
 * Nothing is stored: the codes are made from the lists in seconds
 * (docs/benchmarks.md, "Batch neighbour lookup at a billion tokens").
 */
#ifndef RTR_FAISS_EXT_H
#define RTR_FAISS_EXT_H

#include <stddef.h>
#include <stdint.h>

#include <faiss/c_api/Index_c.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when index is an inverted file with mapped lists, whose prefetching is now
 * off; 0 for any other index, left as it is. */
int rtr_faiss_mapped_no_prefetch(FaissIndex *index);

/* The memory that index's mapped lists live in (its file's map): 1 and *addr, *len when it is an
 * inverted file with mapped lists; 0 otherwise. */
int rtr_faiss_mapped_range(FaissIndex *index, const void **addr, size_t *len);

/* index searched as faiss_Index_search does, probing nprobe lists instead of its own number: 0; 1
 * (nothing done) when index is not an inverted file; -1 with why on a FAISS error. */
int rtr_faiss_search_lists(FaissIndex *index, size_t nq, const float *q, uint32_t k, size_t nprobe, float *dist,
                           int64_t *ids, char *why, size_t n_why);

typedef struct rtr_faiss_codes rtr_faiss_codes;

/* Fast-scan codes of the n shards' vectors when they are L2 inverted files
 * of full vectors with the same centroids, holding at least 2 vectors a list
 * on average: 1 and *out; 0 and *out NULL otherwise; -1 on failure, with
 * FAISS's message (or "out of memory") in why. The shards must outlive the
 * codes and not change while they are searched. */
int rtr_faiss_codes_build(FaissIndex **shards, uint32_t n, rtr_faiss_codes **out, char *why, size_t n_why);
void rtr_faiss_codes_free(rtr_faiss_codes *c);   /* NULL-safe */
size_t rtr_faiss_codes_bytes(const rtr_faiss_codes *c);   /* the codes' and their ids' memory */

/* Lists a search of the codes probes (1..nlist; built with 1). Not while a search runs. */
void rtr_faiss_codes_set_nprobe(rtr_faiss_codes *c, uint32_t nprobe);

/* The k nearest (squared L2, ascending; id -1 and +inf past the end) of nq
 * queries: the rerank (>= k) best by code in the probed lists, re-ranked by
 * the exact distance. 0, or -1 with the failure in why. Thread-safe; not
 * from inside an OpenMP parallel region (it holds OpenBLAS at one thread). */
int rtr_faiss_codes_search(const rtr_faiss_codes *c, size_t nq, const float *q, uint32_t rerank, uint32_t k,
                           float *dist, int64_t *ids, char *why, size_t n_why);

#ifdef __cplusplus
}
#endif

#endif
