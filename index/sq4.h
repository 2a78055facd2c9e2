/*
 * sq4.h - a 4-bit copy of a flat shard's vectors for fast approximate scans.
 *
 * Exact search over a large flat shard reads every float of every vector:
 * 1 GB per query at 1 M vectors of 256 dimensions, about 35 ms at this
 * project's benchmark machine's memory bandwidth. Lexical (hash) embeddings
 * are nearly orthogonal, so an inverted file cannot skip most of them
 * without losing their farther neighbours (docs/benchmarks.md). Instead the
 * search scans a copy eight times smaller, 4 bits per coordinate, for the R
 * best candidates by approximate distance, and re-ranks those by the exact
 * distance over the full vectors (vindex.c).
 *
 * Quantizer: per dimension d, 16 levels mean_d + (c - 7.5) * step_d with
 * step_d = 0.335 sigma_d, the uniform 16-level quantizer of least error for
 * a Gaussian coordinate (coordinates of unit random-projection vectors are
 * close to Gaussian); values beyond the extreme levels are clipped. Codes
 * are packed two per byte: byte b holds dimension 2b in its low nibble and
 * 2b+1 in its high one.
 *
 * Approximate distance of x to a query q: |x|^2 - 2 q.x~ with |x|^2 exact
 * and x~ the decoded vector (|q|^2 is the same for every x and left out).
 * The query's weights q_d * step_d are rounded to 8 bits, so the scan is an
 * integer dot product (AVX2: vpmaddubsw over 64 dimensions per load).
 */
#ifndef RTR_SQ4_H
#define RTR_SQ4_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct rtr_sq4 rtr_sq4;

/* Encodes xb (n x dim). NULL when out of memory. */
rtr_sq4 *rtr_sq4_build(const float *xb, size_t n, uint32_t dim);
void rtr_sq4_free(rtr_sq4 *s);   /* NULL-safe; unmaps a mapped one */
size_t rtr_sq4_n(const rtr_sq4 *s);
uint32_t rtr_sq4_dim(const rtr_sq4 *s);

/*
 * File (KB/index/gN-SSS.sq4, beside the shard it was made from, so that a
 * search maps it instead of reading the shard), little-endian, every array
 * aligned to its element:
 *
 *   offset        size      field
 *   0             8         magic "RTRSQ4\0\1"
 *   8             4         dim D (1..65536)
 *   12            4         code bytes per vector, (D + 1) / 2
 *   16            8         n vectors (<= 2^34)
 *   24            8         reserved (0)
 *   32            4 D       mean (per dimension)
 *   32 + 4 D      4 D       step
 *   A             8 n       ids, in the shard's order (A = 32 + 8 D rounded up to 64)
 *   A + 8 n       4 n       exact squared norms
 *   C             n (D+1)/2 codes (C = A + 12 n rounded up to 64)
 *
 * The file is exactly C + n (D + 1) / 2 bytes long. Its checksum is the
 * manifest's, verified by `retro index check`, not by a search: a map
 * checks the header and the length, so no offset can leave the file.
 */
/* Writes s with the shard's ids (n) to f. RTR_E_IO. */
int rtr_sq4_write(const rtr_sq4 *s, const int64_t *ids, FILE *f);
/* Maps the file fd (len bytes, path for errors; fd may be closed after)
 * read-only: *out scans from the map, *ids points into it (valid until
 * rtr_sq4_free). dim: the vectors' dimension, checked (0: the file's). RTR_E_CORRUPT naming
 * path (magic, counts, length), RTR_E_IO, RTR_E_NOMEM. */
int rtr_sq4_map(int fd, uint64_t len, const char *path, uint32_t dim, rtr_sq4 **out, const int64_t **ids);
/* Copies a mapped s's codes and norms into memory, which scans read faster than the file's map (at
 * 1.15 M vectors, p99 10 ms against 15-21; docs/benchmarks.md): what searches many queries on one map
 * does after a few. Scans may run meanwhile, from other threads (not two of these calls at once). No-op
 * for codes built in memory or copied already. RTR_E_NOMEM (s stays mapped). */
int rtr_sq4_to_memory(rtr_sq4 *s);
/* A mapped s's pages mapped into the process (lib/io.h, rtr_map_populate): the bytes, 0 if not mapped. */
uint64_t rtr_sq4_warm(const rtr_sq4 *s);

/* The query's integer weights and offset, made once per query. */
typedef struct rtr_sq4_query {
    int8_t *w;          /* dim weights, reordered for the scan */
    float scale;        /* approximate q.x~ = offset + dot(w, codes) / scale */
    float offset;
} rtr_sq4_query;

int rtr_sq4_query_init(const rtr_sq4 *s, const float *q, rtr_sq4_query *out);   /* RTR_E_NOMEM */
void rtr_sq4_query_free(rtr_sq4_query *qq);

/* Scans vectors [lo, hi) and keeps the r best by approximate distance in d
 * and pos (ascending; FLT_MAX and -1 where empty), given as r-long arrays
 * that may already hold candidates. */
void rtr_sq4_scan(const rtr_sq4 *s, const rtr_sq4_query *qq, size_t lo, size_t hi, uint32_t r, float *d,
                  int64_t *pos);

#endif
