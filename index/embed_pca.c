/* embed_pca.c - principal components of a sample, their file, and the `pca` embedder (see embed_pca.h). */
#include "index/embed_pca.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "lib/alloc.h"
#include "lib/dot.h"
#include "lib/io.h"
#include "lib/le.h"
#include "lib/status.h"

#define PCA_MAGIC "RTRPCA\0\1"
#define PCA_HEADER 24

void rtr_pca_free(rtr_pca *p) {
    rtr_free(p->mean);
    rtr_free(p->w);
    rtr_free(p->var);
    memset(p, 0, sizeof *p);
}

static int pca_alloc(rtr_pca *p, uint32_t din, uint32_t dout) {
    memset(p, 0, sizeof *p);
    p->din = din;
    p->dout = dout;
    p->mean = rtr_malloc((size_t)din * sizeof *p->mean);
    p->w = rtr_malloc((size_t)dout * din * sizeof *p->w);
    p->var = rtr_malloc((size_t)dout * sizeof *p->var);
    if (p->mean && p->w && p->var) return RTR_OK;
    rtr_pca_free(p);
    return RTR_E_NOMEM;
}

/* Eigenvalues (into d) and eigenvectors (columns of v) of the symmetric n x n
 * matrix a (row-major, destroyed) by cyclic Jacobi rotations (Golub and Van
 * Loan, 8.5): each rotation zeroes one off-diagonal pair; sweeps go on until
 * what is left off the diagonal is negligible against the diagonal. */
static void jacobi_eigen(double *a, uint32_t n, double *d, double *v) {
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < n; j++) v[(size_t)i * n + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (uint32_t i = 0; i < n; i++) {
            diag += a[(size_t)i * n + i] * a[(size_t)i * n + i];
            for (uint32_t j = i + 1; j < n; j++) off += a[(size_t)i * n + j] * a[(size_t)i * n + j];
        }
        if (off <= 1e-30 * diag || off == 0) break;
        for (uint32_t p = 0; p < n; p++)
            for (uint32_t q = p + 1; q < n; q++) {
                double apq = a[(size_t)p * n + q];
                if (fabs(apq) < 1e-300) continue;
                double app = a[(size_t)p * n + p], aqq = a[(size_t)q * n + q];
                double theta = (aqq - app) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (uint32_t k = 0; k < n; k++) {   /* A <- A J (columns p and q) */
                    double akp = a[(size_t)k * n + p], akq = a[(size_t)k * n + q];
                    a[(size_t)k * n + p] = c * akp - s * akq;
                    a[(size_t)k * n + q] = s * akp + c * akq;
                }
                for (uint32_t k = 0; k < n; k++) {   /* A <- J^T A (rows p and q) */
                    double apk = a[(size_t)p * n + k], aqk = a[(size_t)q * n + k];
                    a[(size_t)p * n + k] = c * apk - s * aqk;
                    a[(size_t)q * n + k] = s * apk + c * aqk;
                }
                a[(size_t)p * n + q] = a[(size_t)q * n + p] = 0;
                for (uint32_t k = 0; k < n; k++) {   /* V <- V J */
                    double vkp = v[(size_t)k * n + p], vkq = v[(size_t)k * n + q];
                    v[(size_t)k * n + p] = c * vkp - s * vkq;
                    v[(size_t)k * n + q] = s * vkp + c * vkq;
                }
            }
    }
    for (uint32_t i = 0; i < n; i++) d[i] = a[(size_t)i * n + i];
}

int rtr_pca_fit(const float *x, size_t n, uint32_t din, uint32_t dout, rtr_pca *out) {
    memset(out, 0, sizeof *out);
    if (n < 2 || din < 2 || din > RTR_PCA_MAX_DIM || dout < 1 || dout > din)
        return rtr_seterr(RTR_E_INVALID, "pca: %zu samples of %u dimensions to %u components", n, din, dout);
    enum { BLOCK = 1024 };
    double *mean = rtr_calloc(din, sizeof *mean), *cov = rtr_calloc((size_t)din * din, sizeof *cov);
    double *blk = rtr_malloc((size_t)BLOCK * din * sizeof *blk), *vecs = rtr_malloc((size_t)din * din * sizeof *vecs);
    double *eig = rtr_malloc(din * sizeof *eig);
    uint32_t *order = rtr_malloc(din * sizeof *order);
    int rc = mean && cov && blk && vecs && eig && order ? pca_alloc(out, din, dout) : RTR_E_NOMEM;
    if (!rc) {
        for (size_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < din; j++) mean[j] += x[i * din + j];
        for (uint32_t j = 0; j < din; j++) mean[j] /= (double)n;
        /* cov = sum over rows of (x - mean)(x - mean)^T / (n - 1), upper triangle, a block of rows at a time */
        for (size_t r0 = 0; r0 < n; r0 += BLOCK) {
            size_t m = n - r0 < BLOCK ? n - r0 : BLOCK;
            for (size_t i = 0; i < m; i++)
                for (uint32_t j = 0; j < din; j++) blk[i * din + j] = x[(r0 + i) * din + j] - mean[j];
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)din, (int)m, 1.0, blk, (int)din, 1.0, cov, (int)din);
        }
        for (uint32_t i = 0; i < din; i++)
            for (uint32_t j = i; j < din; j++) cov[(size_t)j * din + i] = cov[(size_t)i * din + j] /= (double)(n - 1);
        jacobi_eigen(cov, din, eig, vecs);
        for (uint32_t i = 0; i < din; i++) order[i] = i;
        for (uint32_t i = 1; i < din; i++) {   /* decreasing eigenvalue; ties by index */
            uint32_t o = order[i], k = i;
            for (; k > 0 && eig[order[k - 1]] < eig[o]; k--) order[k] = order[k - 1];
            order[k] = o;
        }
        for (uint32_t c = 0; c < dout; c++) {
            uint32_t col = order[c];
            uint32_t big = 0;
            for (uint32_t j = 1; j < din; j++)
                if (fabs(vecs[(size_t)j * din + col]) > fabs(vecs[(size_t)big * din + col])) big = j;
            double sign = vecs[(size_t)big * din + col] < 0 ? -1 : 1;
            for (uint32_t j = 0; j < din; j++) out->w[(size_t)c * din + j] = (float)(sign * vecs[(size_t)j * din + col]);
            out->var[c] = (float)(eig[col] > 0 ? eig[col] : 0);
        }
        for (uint32_t j = 0; j < din; j++) out->mean[j] = (float)mean[j];
        out->n = n;
    }
    rtr_free(mean);
    rtr_free(cov);
    rtr_free(blk);
    rtr_free(vecs);
    rtr_free(eig);
    rtr_free(order);
    return rc;
}

void rtr_pca_apply(const rtr_pca *p, const float *x, size_t n, float *y) {
    if (n == 0) return;
    /* y = x W^T - (W mean)^T for every row, each row by the same dot products whatever n is (lib/dot.h):
     * a BLAS product's last bits depend on how many rows it takes, and a build resumed from a
     * checkpoint embeds other batches than one never stopped, yet must write the same shards */
    int din = (int)p->din, dout = (int)p->dout;
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * p->din;
        float *yi = y + i * p->dout;
        int c = 0;
        for (; c + 8 <= dout; c += 8) rtr_dot1x8(xi, p->w + (size_t)c * p->din, din, din, yi + c);
        for (; c < dout; c++) yi[c] = rtr_dot(xi, p->w + (size_t)c * p->din, din);
    }
    for (uint32_t c = 0; c < p->dout; c++) {
        double b = 0;
        for (uint32_t j = 0; j < p->din; j++) b += (double)p->w[(size_t)c * p->din + j] * p->mean[j];
        for (size_t i = 0; i < n; i++) y[i * p->dout + c] -= (float)b;
    }
}

/* --- the file ------------------------------------------------------------------------------ */
static size_t file_size(uint32_t din, uint32_t dout) {
    return PCA_HEADER + 4 * ((size_t)din + (size_t)dout * din + dout) + 8;
}

static void put_floats(uint8_t *b, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        rtr_put_le32(b + 4 * i, u);
    }
}

int rtr_pca_serialize(const rtr_pca *p, uint8_t **out, size_t *len) {
    size_t size = file_size(p->din, p->dout);
    uint8_t *b = rtr_malloc(size);
    if (!b) return RTR_E_NOMEM;
    memcpy(b, PCA_MAGIC, 8);
    rtr_put_le32(b + 8, p->din);
    rtr_put_le32(b + 12, p->dout);
    rtr_put_le64(b + 16, p->n);
    uint8_t *q = b + PCA_HEADER;
    put_floats(q, p->mean, p->din);
    q += 4 * (size_t)p->din;
    put_floats(q, p->w, (size_t)p->dout * p->din);
    q += 4 * (size_t)p->dout * p->din;
    put_floats(q, p->var, p->dout);
    rtr_put_le64(b + size - 8, XXH64(b, size - 8, 0));
    *out = b;
    *len = size;
    return RTR_OK;
}

uint64_t rtr_pca_checksum(const rtr_pca *p) {
    uint8_t *b;
    size_t len;
    if (rtr_pca_serialize(p, &b, &len)) return 0;
    uint64_t h = XXH64(b, len, 0);
    rtr_free(b);
    return h;
}

int rtr_pca_save(const rtr_pca *p, const char *path) {
    uint8_t *b;
    size_t len;
    int rc = rtr_pca_serialize(p, &b, &len);
    if (rc) return rc;
    rc = rtr_write_file_atomic(path, b, len);
    rtr_free(b);
    return rc;
}

static int get_floats(const uint8_t *b, float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = rtr_get_le32(b + 4 * i);
        memcpy(&v[i], &u, 4);
        if (!isfinite(v[i])) return 0;
    }
    return 1;
}

int rtr_pca_parse(const uint8_t *b, size_t len, const char *path, rtr_pca *out) {
    memset(out, 0, sizeof *out);
    if (len < PCA_HEADER + 8 || memcmp(b, PCA_MAGIC, 8) != 0)
        return rtr_seterr(RTR_E_CORRUPT, "%s: not a projection file", path);
    uint32_t din = rtr_get_le32(b + 8), dout = rtr_get_le32(b + 12);
    uint64_t n = rtr_get_le64(b + 16);
    if (din < 2 || din > RTR_PCA_MAX_DIM || dout < 1 || dout > din || n < 2)
        return rtr_seterr(RTR_E_CORRUPT, "%s: bad dimensions (%u to %u, %llu samples)", path, din, dout,
                          (unsigned long long)n);
    if (len != file_size(din, dout)) return rtr_seterr(RTR_E_CORRUPT, "%s: truncated or bad size (%zu bytes)", path, len);
    if (XXH64(b, len - 8, 0) != rtr_get_le64(b + len - 8)) return rtr_seterr(RTR_E_CORRUPT, "%s: checksum mismatch", path);
    int rc = pca_alloc(out, din, dout);
    if (rc) return rc;
    out->n = n;
    const uint8_t *q = b + PCA_HEADER;
    int ok = get_floats(q, out->mean, din);
    q += 4 * (size_t)din;
    ok = ok && get_floats(q, out->w, (size_t)dout * din);
    q += 4 * (size_t)dout * din;
    ok = ok && get_floats(q, out->var, dout);
    for (uint32_t c = 0; ok && c < dout; c++) {
        double ss = 0;
        for (uint32_t j = 0; j < din; j++) ss += (double)out->w[(size_t)c * din + j] * out->w[(size_t)c * din + j];
        ok = fabs(ss - 1) < 1e-3 && out->var[c] >= 0 && (c == 0 || out->var[c] <= out->var[c - 1]);
    }
    if (!ok) {
        rtr_pca_free(out);
        return rtr_seterr(RTR_E_CORRUPT, "%s: components not unit length, variances out of order or values not finite",
                          path);
    }
    return RTR_OK;
}

int rtr_pca_load(const char *path, rtr_pca *out) {
    memset(out, 0, sizeof *out);
    uint8_t *b;
    size_t len;
    int rc = rtr_read_file(path, file_size(RTR_PCA_MAX_DIM, RTR_PCA_MAX_DIM), &b, &len);
    if (rc) return rc;
    rc = rtr_pca_parse(b, len, path, out);
    rtr_free(b);
    return rc;
}

char *rtr_pca_filename(uint64_t checksum) { return rtr_embedder_file_name("pca", checksum); }

/* --- the embedder -------------------------------------------------------------------------- */
typedef struct pca_impl {
    rtr_embedder *inner;
    int owns_inner;
    rtr_pca pca;
    uint64_t sum;       /* rtr_pca_checksum */
} pca_impl;

static int pca_embed(rtr_embedder *e, const rtr_text *texts, size_t n, float *out) {
    pca_impl *p = e->impl;
    uint32_t din = p->pca.din;
    size_t step = p->inner->max_batch ? p->inner->max_batch : 256;
    float *x = rtr_malloc((n < step ? n : step) * din * sizeof *x);
    if (!x) return RTR_E_NOMEM;
    int rc = RTR_OK;
    for (size_t i = 0; !rc && i < n; i += step) {
        size_t m = n - i < step ? n - i : step;
        if (!(rc = rtr_embedder_embed(p->inner, texts + i, m, x))) rtr_pca_apply(&p->pca, x, m, out + i * e->dim);
    }
    rtr_free(x);
    if (!rc) rtr_l2_normalize(out, n, e->dim);
    return rc;
}

static int pca_describe(const rtr_embedder *e, rtr_buf *json) {
    const pca_impl *p = e->impl;
    int rc = rtr_buf_printf(json, "{\"kind\":\"pca\",\"dim\":%u,\"pca\":\"%016llx\",\"inner\":", e->dim,
                            (unsigned long long)p->sum);
    if (!rc) rc = rtr_embedder_describe(p->inner, json);
    if (!rc) rc = rtr_buf_printf(json, "}");
    return rc;
}

static void pca_destroy(rtr_embedder *e) {
    pca_impl *p = e->impl;
    if (p->owns_inner) rtr_embedder_free(p->inner);
    rtr_pca_free(&p->pca);
    rtr_free(p);
    rtr_free(e);
}

static const rtr_embedder_ops pca_ops = {pca_embed, pca_describe, pca_destroy};

int rtr_embedder_is_pca(const rtr_embedder *e) { return e->ops == &pca_ops; }

rtr_embedder *rtr_pca_embedder_inner(const rtr_embedder *e) {
    return rtr_embedder_is_pca(e) ? ((const pca_impl *)e->impl)->inner : NULL;
}

int rtr_pca_embedder_new(rtr_embedder *inner, int owns_inner, const rtr_pca *src, rtr_embedder **out) {
    if (inner->dim != src->din)
        return rtr_seterr(RTR_E_INVALID, "pca: a projection of %u dimensions for an embedder of %u", src->din, inner->dim);
    rtr_embedder *e = rtr_calloc(1, sizeof *e);
    pca_impl *p = rtr_calloc(1, sizeof *p);
    int rc = e && p ? pca_alloc(&p->pca, src->din, src->dout) : RTR_E_NOMEM;
    if (rc) {
        rtr_free(p);
        rtr_free(e);
        return rc;
    }
    p->pca.n = src->n;
    memcpy(p->pca.mean, src->mean, (size_t)src->din * sizeof *src->mean);
    memcpy(p->pca.w, src->w, (size_t)src->dout * src->din * sizeof *src->w);
    memcpy(p->pca.var, src->var, (size_t)src->dout * sizeof *src->var);
    p->sum = rtr_pca_checksum(&p->pca);
    p->inner = inner;
    p->owns_inner = owns_inner;
    e->ops = &pca_ops;
    e->dim = src->dout;
    e->max_batch = inner->max_batch;
    e->thread_safe = inner->thread_safe;
    e->impl = p;
    *out = e;
    return RTR_OK;
}

int rtr_pca_embedder_from_desc(const char *kb_dir, const char *desc, rtr_embedder **out) {
    json_error_t err;
    json_t *j = json_loads(desc, 0, &err), *inner_j = NULL;
    json_int_t dim = 0;
    const char *sum = NULL;
    char *inner_desc = NULL, *path = NULL;
    rtr_embedder *inner = NULL;
    rtr_pca pca = {0};
    int rc = RTR_OK;
    if (!j || json_unpack(j, "{s:I, s:s, s:o}", "dim", &dim, "pca", &sum, "inner", &inner_j) || !json_is_object(inner_j) ||
        strlen(sum) != 16 || strspn(sum, "0123456789abcdef") != 16)
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: bad pca embedder description", kb_dir);
    if (!rc && !(inner_desc = json_dumps(inner_j, JSON_COMPACT | JSON_SORT_KEYS))) rc = RTR_E_NOMEM;
    if (!rc) rc = rtr_embedder_from_desc(kb_dir, inner_desc, &inner);
    if (!rc) {
        path = rtr_embedder_file_path(kb_dir, "pca", strtoull(sum, NULL, 16));
        rc = path ? rtr_pca_load(path, &pca) : RTR_E_NOMEM;
    }
    if (!rc && rtr_pca_checksum(&pca) != strtoull(sum, NULL, 16))
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: projection does not match the manifest", path);
    if (!rc && ((json_int_t)pca.dout != dim || pca.din != inner->dim))
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: a projection of %u to %u dimensions where the manifest says %u to %lld", path,
                        pca.din, pca.dout, inner->dim, (long long)dim);
    if (!rc && !(rc = rtr_pca_embedder_new(inner, 1, &pca, out))) inner = NULL;
    rtr_embedder_free(inner);
    rtr_pca_free(&pca);
    rtr_free(path);
    free(inner_desc);
    json_decref(j);
    return rc;
}
