/*
 * parts.h - a knowledge base of P partitions, each a knowledge base of its own (kb.h), worked on by
 * the ranks of a job (lib/comm.h): one process, or an Open MPI job started by mpirun.
 *
 *     rtr_parts *ps;
 *     rtr_parts_open("big.kb", RTR_KB_WRITE | RTR_KB_CREATE, 4, tok, rtr_comm_world(), &ps);
 *     rtr_parts_ingest(ps, paths, n, &opts, &rep);   // each file into the partition its path hashes to
 *     rtr_parts_build(ps, &bopts, &brep);            // trained once on a sample of every partition
 *     rtr_parts_close(ps);
 *
 * Layout (docs/formats.md, "Partitions"):
 *   KB/manifest.json   version 2, with "partitions": {"count": P, "dirs": ["part-0000", ...]}
 *   KB/tokenizer.rtok  the tokenizer of every partition
 *   KB/lock            taken by rank 0 of a job that writes
 *   KB/index/          what a build trains once for all partitions (the manifest's "trained" section)
 *   KB/part-NNNN/      partition NNNN: a complete knowledge base (manifest, tokenizer, store, index)
 * A knowledge base of one partition is the plain one of kb.h, opened unchanged (P = 1).
 *
 * Partition p is worked on by rank p mod ranks, so a job of any size opens any knowledge base; the
 * directory must be one that every rank sees (on one machine, or a shared filesystem).
 *
 * Ids: a partition's store numbers its documents and chunks from 1, as every store does; across the
 * knowledge base, document and chunk ids are the store's with the partition in the bits from 40 up
 * (partition 0's ids are its store's, so a plain knowledge base's ids are unchanged). A partition
 * holds at most 2^40 - 1 chunks.
 */
#ifndef RTR_PARTS_H
#define RTR_PARTS_H

#include <stdint.h>

#include "index/build.h"
#include "index/ingest.h"
#include "index/kb.h"
#include "lib/comm.h"

#define RTR_PART_SHIFT 40
#define RTR_PART_LOCAL_MASK ((UINT64_C(1) << RTR_PART_SHIFT) - 1)
#define RTR_PARTS_MAX 4096

static inline uint64_t rtr_part_id(uint32_t part, uint64_t local) {
    return (uint64_t)part << RTR_PART_SHIFT | local;
}
static inline uint32_t rtr_part_of_id(uint64_t id) { return (uint32_t)(id >> RTR_PART_SHIFT); }
static inline uint64_t rtr_part_local(uint64_t id) { return id & RTR_PART_LOCAL_MASK; }

/* The partition of count that a document source named path belongs to: XXH3-64 of the path, mod count
 * (stable across runs, machines and job sizes). */
uint32_t rtr_part_of_path(const char *path, uint32_t count);

typedef struct rtr_parts rtr_parts;

/* The partitions dir's manifest names (1: a plain knowledge base) into *count, without opening
 * anything else. rtr_kb_open's errors for a directory that is not a knowledge base. */
int rtr_parts_probe(const char *dir, uint32_t *count);

/* Opens (RTR_KB_CREATE: creates, on rank 0, with tok and count partitions; count 0 = one per rank)
 * the knowledge base in dir and, on each rank, the partitions it works on; flags as rtr_kb_open's
 * (RTR_KB_WRITE locks each partition opened, and KB/lock on rank 0). count > 0 for one that exists
 * must be its count (RTR_E_MISMATCH). A collective: every rank gets the same status (rtr_comm_agree).
 * Errors: rtr_kb_open's, RTR_E_CORRUPT for a bad "partitions" section, naming the manifest. */
int rtr_parts_open(const char *dir, unsigned flags, uint32_t count, const rtr_tokenizer *tok, rtr_comm *c,
                   rtr_parts **out);
void rtr_parts_close(rtr_parts *ps);   /* NULL-safe */

uint32_t rtr_parts_count(const rtr_parts *ps);
int rtr_parts_split(const rtr_parts *ps);           /* 1: partitions under a top directory; 0: a plain one */
const char *rtr_parts_dir(const rtr_parts *ps);
rtr_comm *rtr_parts_comm(rtr_parts *ps);
/* Partition p opened by this rank, NULL if another rank works on it (p < count). Owned by ps. */
rtr_kb *rtr_parts_kb(rtr_parts *ps, uint32_t p);
/* Partition p opened read-only on its own (*out: the caller's, rtr_kb_close), whichever rank works on
 * it: what every rank reads of every partition (a training set). */
int rtr_parts_open_one(const rtr_parts *ps, uint32_t p, rtr_kb **out);
/* The tokenizer of every partition (owned by ps; on every rank). */
const rtr_tokenizer *rtr_parts_tokenizer(rtr_parts *ps);
/* RTR_E_MISMATCH (both hashes in the detail) if tok is not the knowledge base's tokenizer. */
int rtr_parts_check_tokenizer(const rtr_parts *ps, const rtr_tokenizer *tok);

/* rtr_ingest into each partition this rank works on, of the files that belong to it; the reports
 * summed over partitions and ranks (on every rank; skips: this rank's). A collective. */
int rtr_parts_ingest(rtr_parts *ps, const char *const *paths, size_t n, const rtr_ingest_opts *o,
                     rtr_ingest_report *rep);

/* rtr_index_build for every partition. A knowledge base of one partition is built as kb.h's is.
 * Several: the first build (or --retrain) trains once what the partitions share (the hash
 * embedder's statistics: document frequencies summed over every partition; a projection and an
 * inverted file's quantizer: fitted on rank 0 on an evenly spread sample of every partition's chunks,
 * gathered) and records it under KB/index/ (the manifest's "trained" section); each partition is then
 * built with it, so that the vectors of every partition are in one space and their distances compare.
 * Later builds add each partition's new chunks with what it recorded. The report is summed over
 * partitions (its plan: the trained one). A collective. */
int rtr_parts_build(rtr_parts *ps, const rtr_build_opts *o, rtr_build_report *rep);

#endif
