/*
 * vindex.h - the vector index: N FAISS shards (official C API) whose ids are
 * chunk ids, with one plan (index type and search parameters) for all.
 *
 * rtr_vindex_plan_auto chooses the index type from the number of vectors,
 * their dimension and a memory budget: exact search ("IDMap,Flat", searched
 * through 4-bit codes from 64 Ki vectors a shard) while the codes fit, then
 * inverted files ("IVFn,Flat", "IVFn,SQ8", "IVFn,PQm") with nprobe from a
 * scan budget; docs/architecture.md ("Choosing the index type") gives the
 * rules and why, docs/benchmarks.md the measurements.
 * A FAISS factory string may be given instead; "IDMap," is prefixed when the
 * index type cannot take ids itself.
 *
 * Files: each shard is a plain FAISS index file that FAISS itself reads
 * (faiss.read_index in Python). Files are written under new names and never
 * overwritten; the manifest names the current ones with their size and
 * XXH64: the size is checked when the files are opened, the checksum before
 * FAISS parses a file (streamed, no copy of it in memory).
 * A flat shard scanned through 4-bit codes has them saved beside it
 * (gN-SSS.sq4, sq4.h), with its ids: a search maps them and reads from the
 * shard's file only the vectors it re-ranks; an inverted file of full
 * vectors ("IVFn,Flat") is read with its lists mapped (FAISS's
 * OnDiskInvertedLists, once its layout is walked and found to stay inside
 * the file). Opening a knowledge base for a query so costs the same at any
 * size (docs/benchmarks.md); `retro index check` verifies what a search
 * does not.
 */
#ifndef RTR_VINDEX_H
#define RTR_VINDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct rtr_vindex rtr_vindex;

typedef struct rtr_vindex_plan {
    char factory[96];        /* FAISS factory string */
    uint32_t nlist;          /* 0 for flat */
    uint32_t nprobe;         /* 0 for flat */
    uint64_t train_n;        /* vectors to train on (0: no training) */
    char why[160];           /* human-readable reason */
} rtr_vindex_plan;

/* shards: how many shards the vectors will be spread over (for nprobe). */
int rtr_vindex_plan_auto(uint64_t n, uint32_t dim, uint64_t mem_budget, uint32_t shards, rtr_vindex_plan *out);
int rtr_vindex_plan_factory(const char *factory, uint64_t n, uint32_t dim, uint32_t shards, rtr_vindex_plan *out);

/* Creates n_shards empty shards of the plan, training them on train[0..n_train)
 * (n_train x dim) when the plan needs it. */
int rtr_vindex_create(const rtr_vindex_plan *p, uint32_t dim, uint32_t n_shards, const float *train, size_t n_train,
                      rtr_vindex **out);
/* n_shards empty shards, each a copy of proto's first (empty, trained: its quantizer) with its
 * factory and nprobe: what the partitions of a knowledge base build on (index/parts.h).
 * RTR_E_INVALID if proto holds vectors; RTR_E_FAISS, RTR_E_NOMEM. */
int rtr_vindex_create_like(const rtr_vindex *proto, uint32_t n_shards, rtr_vindex **out);
void rtr_vindex_free(rtr_vindex *v);   /* NULL-safe */

uint32_t rtr_vindex_shards(const rtr_vindex *v);
uint32_t rtr_vindex_dim(const rtr_vindex *v);
uint64_t rtr_vindex_ntotal(const rtr_vindex *v);
const char *rtr_vindex_factory(const rtr_vindex *v);
uint32_t rtr_vindex_nprobe(const rtr_vindex *v);
uint32_t rtr_vindex_nlist(const rtr_vindex *v);   /* 0 unless an inverted file */
int rtr_vindex_set_nprobe(rtr_vindex *v, uint32_t nprobe);
/* The pages of every shard's mapped lists and codes mapped into the process (lib/io.h,
 * rtr_map_populate), so that searches touch none for the first time; the bytes. Searches may run
 * meanwhile. */
uint64_t rtr_vindex_warm(rtr_vindex *v);
/* Sets a FAISS search parameter ("nprobe", "efSearch", ...) on every shard,
 * or retro's "rerank" (rtr_vindex_set_rerank). */
int rtr_vindex_set_param(rtr_vindex *v, const char *name, double value);

/* Exact (IDMap over Flat L2) shards of SQ4_MIN (64 Ki) vectors or more are
 * searched through a 4-bit copy of their vectors (index/sq4.h): the rerank
 * best candidates of each query by approximate distance are re-ranked by the
 * exact one. rerank: 0 = always exact; > 0 = this many candidates, for
 * shards of every size; -1 (the default) = RTR_VINDEX_RERANK from SQ4_MIN. */
#define RTR_VINDEX_RERANK 128
#define RTR_VINDEX_MAX_RERANK 4096
/* The squared L2 distance of two n-float vectors (AVX2 where built for it), as exact search measures it. */
float rtr_l2sq(const float *a, const float *b, uint32_t n);
int rtr_vindex_set_rerank(rtr_vindex *v, int rerank);
int rtr_vindex_rerank(const rtr_vindex *v);

/* Adds n vectors x (n x dim) with ids to shards shard[i] (< n_shards). */
int rtr_vindex_add(rtr_vindex *v, size_t n, const float *x, const int64_t *ids, const uint32_t *shard);

/* Searches every shard (in parallel) for the k nearest (squared L2) of each
 * of nq queries and merges: dist and ids are nq x k, ascending distance;
 * missing results have id -1 and distance +inf. */
int rtr_vindex_search(const rtr_vindex *v, size_t nq, const float *q, uint32_t k, float *dist, int64_t *ids);

/* Batch search, for the neighbour lookups of training and evaluation (many
 * queries at once): an inverted file of full vectors ("IVFn,Flat") scans
 * every probed vector with a call of its own, a few hundred queries a second
 * at 16 M vectors on two cores. rtr_vindex_batch_prepare makes each such
 * shard's 4-bit fast-scan codes in one index (index/faiss_ext.h; 24 bytes a vector at 32
 * dimensions, in memory, about 7 s for 16 M vectors) when every shard is
 * one, with the same centroids (as retro makes them); rtr_vindex_batch_bytes
 * says how much memory current codes hold (0: none). rtr_vindex_search_batch then answers as rtr_vindex_search
 * does, the candidates found through the codes in batch_nprobe lists (unless
 * set, nprobe / 4 but at least nprobe or 64, whichever is smaller) and the
 * RTR_VINDEX_BATCH_RERANK best re-ranked by the exact distance; a shard without current codes (none made, or changed since) is
 * searched as rtr_vindex_search searches it. Figures: docs/benchmarks.md,
 * "Batch neighbour lookup at a billion tokens". */
#define RTR_VINDEX_BATCH_RERANK 64
int rtr_vindex_batch_prepare(rtr_vindex *v);
uint64_t rtr_vindex_batch_bytes(const rtr_vindex *v);
int rtr_vindex_search_batch(const rtr_vindex *v, size_t nq, const float *q, uint32_t k, float *dist, int64_t *ids);
/* As rtr_vindex_search, probing rtr_vindex_few_nprobe(v) lists of an inverted file: nprobe / 32, at
 * least 16 (or nprobe when smaller). For a search whose candidates another side completes and every
 * one of which is measured again (hybrid search): at a billion tokens its recovery was the same at 16
 * to 1,024 lists on two samples of queries, and 1,024 cost three times the time (docs/benchmarks.md,
 * "candidates scored from their text"). 0 for other indexes (which search as rtr_vindex_search). */
uint32_t rtr_vindex_few_nprobe(const rtr_vindex *v);
int rtr_vindex_search_few(const rtr_vindex *v, size_t nq, const float *q, uint32_t k, float *dist, int64_t *ids);
uint32_t rtr_vindex_batch_nprobe(const rtr_vindex *v);   /* 0 unless an inverted file */
int rtr_vindex_set_batch_nprobe(rtr_vindex *v, uint32_t nprobe);   /* 0: the default; RTR_E_INVALID past nlist */

/* The ids of shard's vectors, in the index's order: *ids (*n of them) is the
 * caller's. RTR_E_INVALID for an index type that keeps none, RTR_E_CORRUPT,
 * RTR_E_NOMEM. */
int rtr_vindex_ids(const rtr_vindex *v, uint32_t shard, int64_t **ids, size_t *n);

/* Removes ids (present or not) from every shard; *removed counts them. */
int rtr_vindex_remove(rtr_vindex *v, const int64_t *ids, size_t n, uint64_t *removed);

/* A file of the index that the manifest names: its name in the index
 * directory, its XXH64 and its size. */
typedef struct rtr_vindex_file {
    char *name;              /* or NULL: no such file */
    uint64_t xxh64, bytes;
} rtr_vindex_file;
void rtr_vindex_file_names_free(rtr_vindex_file *files, uint32_t n);   /* frees the names */

/* Writes shard files dir/PREFIX-SSS.faiss (PREFIX e.g. "g7"), described in
 * shards[s] (names fresh: rtr_vindex_file_names_free), and, where codes is not
 * NULL, the 4-bit codes of every flat shard whose searches scan them
 * (sq4.h) as dir/PREFIX-SSS.sq4 in codes[s] (name NULL for other shards).
 * Each file is synced and renamed into place, then dir synced. RTR_E_IO,
 * RTR_E_FULL, RTR_E_FAISS, RTR_E_NOMEM. */
int rtr_vindex_save(const rtr_vindex *v, const char *dir, const char *prefix, rtr_vindex_file *shards,
                    rtr_vindex_file *codes);

/* The files of n_shards shards (codes may be NULL, or an entry's name
 * NULL: none), opened and checked against their recorded sizes (0: not
 * recorded), to be read or mapped later: the files stay readable through
 * this handle when a newer build replaces them. RTR_E_CORRUPT naming the
 * file (missing, wrong size), RTR_E_IO, RTR_E_NOMEM. */
typedef struct rtr_vindex_files rtr_vindex_files;
int rtr_vindex_files_open(const char *dir, uint32_t n_shards, const rtr_vindex_file *shards,
                          const rtr_vindex_file *codes, rtr_vindex_files **out);
void rtr_vindex_files_close(rtr_vindex_files *f);   /* NULL-safe */
/* Reads the shards with the plan's nprobe (f may be read again after a
 * failure, not from two threads at once), each once its checksum is
 * verified. An index to build on.
 * RTR_E_CORRUPT naming the file (checksum mismatch, shards of different
 * dimensions), RTR_E_FAISS (the file matches its checksum but FAISS refuses
 * it), RTR_E_IO, RTR_E_NOMEM. */
int rtr_vindex_files_load(const rtr_vindex_files *f, uint32_t nprobe, const char *factory, rtr_vindex **out);
/* An index to search: shards with codes are mapped (their codes and ids
 * from the .sq4 file, exact vectors read from the FAISS file as a search
 * needs them), inverted files of full vectors read with their lists mapped
 * (nothing of either is checksummed: `retro index check` does that), the
 * others read as by rtr_vindex_files_load. A mapped index can be searched,
 * listed and tuned (rerank, 0 included), not added to, removed from or
 * saved. Errors as rtr_vindex_files_load, and RTR_E_CORRUPT for a FAISS
 * file or codes whose layout does not match (sq4.h). */
int rtr_vindex_files_map(const rtr_vindex_files *f, uint32_t nprobe, const char *factory, rtr_vindex **out);
/* XXH64 of code file s (0 when shard s has none) into *sum. RTR_E_IO. */
int rtr_vindex_files_codes_sum(const rtr_vindex_files *f, uint32_t s, uint64_t *sum);

#endif
