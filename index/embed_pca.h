/*
 * embed_pca.h - a learned projection of another embedder's vectors: the
 * `pca` embedder, and the principal component analysis that makes it.
 *
 * Why: hash vectors of text (256 dimensions) are nearly orthogonal, so an
 * inverted file's partitions lose their far neighbours and past the exact
 * range (a few million chunks on one machine) search has to scan most of
 * the collection for a good recall. Projected onto their first principal
 * components (the latent semantic analysis of the hashed word counts), the
 * same texts lie in a space that clusters: on 4.17 M kernel chunks an
 * inverted file over 32 components finds 0.87 of the 10 nearest at 3% of
 * the vectors scanned, against 0.56 in the raw space (docs/benchmarks.md,
 * tests/bench/proj_recall.py). `retro index build` makes one when its plan
 * turns to inverted files (index/build.h); the projection is trained once on
 * a sample, like a quantizer, and recorded with the knowledge base.
 *
 * The embedder: inner embedding x (din), then y = W (x - mean) (dout), then
 * L2-normalised. Its description: {"kind":"pca","dim":dout,"pca":"<XXH64 of
 * the file's contents, 16 hex digits>","inner":{the inner embedder's}}; the
 * projection lives in KB/index/pca-<pca>.bin.
 *
 * Projection file, little-endian:
 *   OFFSET  SIZE           DESCRIPTION
 *   0       8              magic "RTRPCA\0\1"
 *   8       4              din (2..4096)
 *   12      4              dout (1..din)
 *   16      8              samples it was fitted on (>= 2)
 *   24      4*din          mean (finite floats)
 *   ..      4*dout*din     W, row-major: row i is component i (unit length,
 *                          in order of decreasing variance; finite floats)
 *   ..      4*dout         the variance along each component (>= 0, not increasing)
 *   ..      8              XXH64 (seed 0) of every byte before it
 */
#ifndef RTR_EMBED_PCA_H
#define RTR_EMBED_PCA_H

#include <stddef.h>
#include <stdint.h>

#include "index/embed.h"

#define RTR_PCA_MAX_DIM 4096

typedef struct rtr_pca {
    uint32_t din, dout;
    uint64_t n;          /* samples fitted on */
    float *mean;         /* din, owned */
    float *w;            /* dout x din, owned */
    float *var;          /* dout, owned */
} rtr_pca;

/* Fits the first dout principal components of x (n x din, n >= 2): the
 * covariance in double precision, then its eigenvectors by cyclic Jacobi
 * rotations. Each component's sign is fixed (its largest entry positive), so
 * the same sample gives the same file on every machine. */
int rtr_pca_fit(const float *x, size_t n, uint32_t din, uint32_t dout, rtr_pca *out);
/* y (n x dout) = W (x - mean) for n rows of x (n x din); not normalised. */
void rtr_pca_apply(const rtr_pca *p, const float *x, size_t n, float *y);
void rtr_pca_free(rtr_pca *p);

/* The file's bytes (fresh buffer) and their XXH64, which names the file. */
int rtr_pca_serialize(const rtr_pca *p, uint8_t **out, size_t *len);
uint64_t rtr_pca_checksum(const rtr_pca *p);
int rtr_pca_save(const rtr_pca *p, const char *path);   /* atomic */
/* RTR_E_CORRUPT (naming path) for anything but a well-formed file. */
int rtr_pca_parse(const uint8_t *data, size_t len, const char *path, rtr_pca *out);
int rtr_pca_load(const char *path, rtr_pca *out);
/* "pca-<16 hex digits>.bin" (fresh string). */
char *rtr_pca_filename(uint64_t checksum);

/* The embedder: inner's vectors projected by p (copied). owns_inner: inner is
 * freed with the embedder. p->din must be inner's dimension. */
int rtr_pca_embedder_new(rtr_embedder *inner, int owns_inner, const rtr_pca *p, rtr_embedder **out);
/* 1 when e is a pca embedder. */
int rtr_embedder_is_pca(const rtr_embedder *e);
/* The embedder whose vectors e projects (owned by e); NULL when e is not a pca embedder. */
rtr_embedder *rtr_pca_embedder_inner(const rtr_embedder *e);
/* The pca embedder a description names (see rtr_embedder_from_desc). */
int rtr_pca_embedder_from_desc(const char *kb_dir, const char *desc_json, rtr_embedder **out);

#endif
