/* embed.c - the embedder interface: dispatch on a recorded "kind", L2 normalisation (see embed.h). */
#include "index/embed.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "index/embed_hash.h"
#include "index/embed_pca.h"
#include "lib/alloc.h"
#include "lib/blas.h"
#include "lib/io.h"
#include "lib/status.h"

int rtr_embedder_from_desc(const char *kb_dir, const char *desc, rtr_embedder **out) {
    json_error_t err;
    json_t *j = json_loads(desc, 0, &err);
    const char *kind = json_string_value(json_object_get(j, "kind"));
    int rc;
    if (!kind)
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: embedder description without a kind", kb_dir);
    else if (!strcmp(kind, "hash"))
        rc = rtr_hash_embedder_from_desc(kb_dir, desc, out);
    else if (!strcmp(kind, "pca"))
        rc = rtr_pca_embedder_from_desc(kb_dir, desc, out);
    else if (!strcmp(kind, "http"))
        rc = rtr_http_embedder_from_desc(kb_dir, desc, out);
    else   /* a new kind of embedder: a branch above */
        rc = rtr_seterr(RTR_E_INVALID, "%s: built with embedder '%s', which this retro does not have", kb_dir, kind);
    json_decref(j);
    return rc;
}

int rtr_embedder_embed(rtr_embedder *e, const rtr_text *texts, size_t n, float *out) {
    if (n == 0) return RTR_OK;
    return e->ops->embed(e, texts, n, out);
}

int rtr_embedder_embed_threads(rtr_embedder *e, const rtr_text *texts, size_t n, float *out, int threads, size_t min_n) {
    if (!e->thread_safe || threads <= 1 || n < min_n) return rtr_embedder_embed(e, texts, n, out);
    int rc = RTR_OK, saved = rtr_blas_single_begin();
#pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), me = omp_get_thread_num();
        size_t lo = n * (size_t)me / (size_t)nt, hi = n * (size_t)(me + 1) / (size_t)nt;
        int x = rtr_embedder_embed(e, texts + lo, hi - lo, out + lo * e->dim);
        if (x) {
#pragma omp critical(rtr_embed_err)
            rc = x;
        }
    }
    rtr_blas_single_end(saved);
    return rc;
}

int rtr_embedder_describe(const rtr_embedder *e, rtr_buf *json) { return e->ops->describe(e, json); }

void rtr_embedder_free(rtr_embedder *e) {
    if (e) e->ops->destroy(e);
}

char *rtr_embedder_file_name(const char *prefix, uint64_t sum) {
    char name[96];
    snprintf(name, sizeof name, "%.60s-%016llx.bin", prefix, (unsigned long long)sum);
    return rtr_strdup(name);
}

char *rtr_embedder_file_path(const char *kb_dir, const char *prefix, uint64_t sum) {
    char *name = rtr_embedder_file_name(prefix, sum), *sub = rtr_path_join(kb_dir, "index");
    char *path = name && sub ? rtr_path_join(sub, name) : NULL;
    rtr_free(name);
    rtr_free(sub);
    return path;
}

void rtr_l2_normalize(float *v, size_t n, uint32_t dim) {
    for (size_t i = 0; i < n; i++) {
        float *r = v + i * dim;
        double ss = 0;
        for (uint32_t j = 0; j < dim; j++) ss += (double)r[j] * r[j];
        if (ss <= 0) continue;
        float inv = (float)(1.0 / sqrt(ss));
        for (uint32_t j = 0; j < dim; j++) r[j] *= inv;
    }
}

char *rtr_embedder_canonical(const rtr_embedder *e) {
    rtr_buf b = {0};
    if (rtr_embedder_describe(e, &b) || rtr_buf_terminate(&b)) {
        rtr_buf_free(&b);
        return NULL;
    }
    json_error_t err;
    json_t *j = json_loads((const char *)b.data, 0, &err);
    rtr_buf_free(&b);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    return s;
}
