/* vindex.c - the vector index: FAISS shards through the C API, planning, training, merged search, files (see vindex.h). */
#define _GNU_SOURCE   /* fopencookie */
#include "index/vindex.h"

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/utils/distances_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/clone_index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY   /* XXH64_state_t on the stack */
#include <xxhash.h>

#include "lib/alloc.h"
#include "lib/io.h"
#include "index/sq4.h"
#include "lib/simd.h"
#include "lib/status.h"
#include "lib/topk.h"

#define FLAT_MAX ((uint64_t)64 * 1024)
#define TRAIN_PER_LIST 40   /* FAISS asks for 30..256 per list and warns below 39 */
#define MAX_SHARD_FILE ((size_t)64 << 30)
#define SQ4_MIN ((size_t)64 * 1024)   /* flat shards from this size are scanned through 4-bit codes */

struct rtr_vindex {
    uint32_t n_shards, dim, nprobe, nlist;   /* nlist 0: not an inverted file */
    char factory[96];
    FaissIndex **shards;
    int rerank;            /* candidates re-ranked exactly after a 4-bit scan; -1: RTR_VINDEX_RERANK from SQ4_MIN */
    rtr_sq4 **sq;          /* per shard: its 4-bit codes (built when first searched) */
    uint64_t *gen, *sq_gen;   /* per shard: changes made; the change the codes were built at */
};

static int faiss_err(const char *what) {
    const char *e = faiss_get_last_error();
    /* FAISS messages span lines; keep the first */
    char line[400];
    snprintf(line, sizeof line, "%s", e ? e : "unknown error");
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    return rtr_seterr(RTR_E_FAISS, "%s: %s", what, line);
}

/* The list count of an inverted-file factory string ("IVF4096,Flat" -> 4096); 0 otherwise. */
static uint32_t factory_nlist(const char *factory) {
    const char *ivf = strstr(factory, "IVF");
    return ivf ? (uint32_t)strtoul(ivf + 3, NULL, 10) : 0;
}

/* --- plans --------------------------------------------------------------------------- */
static uint32_t pow2_near(double x) {
    uint32_t p = 1;
    while (p < x && p < (1u << 30)) p <<= 1;
    return (p - x > x - p / 2.0) ? p / 2 : p;
}

/* Probes per query from a scan budget: a query compares against the nlist
 * centroids of each shard and then scans nprobe lists of about
 * n / (nlist * shards) vectors each; about SCAN_BUDGET vectors per shard
 * keep a single query under 10 ms at p99 at 1M vectors on this project's
 * 2-core benchmark machine with Debian's (baseline x86-64) FAISS build.
 * Smaller collections get more probes for the same time. */
#define SCAN_BUDGET 6144

static uint32_t default_nprobe(uint64_t n, uint32_t nlist, uint32_t shards) {
    double per_list = (double)n / ((double)nlist * (shards ? shards : 1));
    double np = SCAN_BUDGET > nlist ? (double)(SCAN_BUDGET - nlist) / (per_list > 1 ? per_list : 1) : 0;
    uint32_t lo = 8, hi = nlist / 4 > 8 ? nlist / 4 : 8;
    uint32_t v = np < lo ? lo : np > hi ? hi : (uint32_t)np;
    return v > nlist ? nlist : v;
}

/* Flat shards from SQ4_MIN vectors are searched through 4-bit codes of
 * dim/2 bytes per vector (sq4.h); up to FLAT_SCAN_BYTES of codes per shard,
 * a single query scans them in about 3 ms on the benchmark machine. */
#define FLAT_SCAN_BYTES ((uint64_t)96 << 20)

int rtr_vindex_plan_auto(uint64_t n, uint32_t dim, uint64_t mem_budget, uint32_t shards, rtr_vindex_plan *p) {
    memset(p, 0, sizeof *p);
    if (!mem_budget) mem_budget = (uint64_t)4 << 30;
    if (!shards) shards = 1;
    uint64_t codes = n * ((dim + 1) / 2), flat_mem = n * (4ull * dim + 8) + codes + 4 * n;
    if (n < FLAT_MAX) {
        snprintf(p->factory, sizeof p->factory, "IDMap,Flat");
        snprintf(p->why, sizeof p->why, "%llu vectors: exact search", (unsigned long long)n);
        return RTR_OK;
    }
    if (codes <= FLAT_SCAN_BYTES * shards && flat_mem <= mem_budget) {
        snprintf(p->factory, sizeof p->factory, "IDMap,Flat");
        snprintf(p->why, sizeof p->why,
                 "%llu vectors: full scan of 4-bit codes, the best %d re-ranked exactly (%.1f GB)",
                 (unsigned long long)n, RTR_VINDEX_RERANK, (double)flat_mem / 1e9);
        return RTR_OK;
    }
    uint32_t nlist = pow2_near(4.0 * sqrt((double)n));
    if (nlist < 64) nlist = 64;
    if (nlist > 65536) nlist = 65536;
    p->nlist = nlist;
    p->nprobe = default_nprobe(n, nlist, shards);
    p->train_n = (uint64_t)nlist * TRAIN_PER_LIST < n ? (uint64_t)nlist * TRAIN_PER_LIST : n;
    uint64_t flat = n * (4ull * dim + 8), sq8 = n * ((uint64_t)dim + 8);
    if (flat <= mem_budget) {
        snprintf(p->factory, sizeof p->factory, "IVF%u,Flat", nlist);
        snprintf(p->why, sizeof p->why, "%llu vectors: inverted file, %u lists, full vectors (%.1f GB)",
                 (unsigned long long)n, nlist, (double)flat / 1e9);
    } else if (sq8 <= mem_budget) {
        snprintf(p->factory, sizeof p->factory, "IVF%u,SQ8", nlist);
        snprintf(p->why, sizeof p->why, "%llu vectors: inverted file, %u lists, 8-bit codes to fit %.1f GB",
                 (unsigned long long)n, nlist, (double)mem_budget / 1e9);
    } else {
        uint32_t m = 0;
        const uint32_t cand[] = {64, 32, 16, 8};
        for (int i = 0; i < 4 && !m; i++)
            if (dim % cand[i] == 0 && n * (cand[i] + 8ull) <= mem_budget) m = cand[i];
        if (!m) return rtr_seterr(RTR_E_INVALID, "%llu vectors do not fit a memory budget of %llu bytes even as 8-byte codes",
                                  (unsigned long long)n, (unsigned long long)mem_budget);
        snprintf(p->factory, sizeof p->factory, "IVF%u,PQ%u", nlist, m);
        snprintf(p->why, sizeof p->why, "%llu vectors: inverted file, %u lists, %u-byte PQ codes to fit %.1f GB",
                 (unsigned long long)n, nlist, m, (double)mem_budget / 1e9);
    }
    return RTR_OK;
}

int rtr_vindex_plan_factory(const char *factory, uint64_t n, uint32_t dim, uint32_t shards, rtr_vindex_plan *p) {
    (void)dim;
    memset(p, 0, sizeof *p);
    if (strlen(factory) + 7 >= sizeof p->factory) return rtr_seterr(RTR_E_INVALID, "factory string too long");
    int ivf = strstr(factory, "IVF") != NULL;
    int takes_ids = ivf || !strncmp(factory, "IDMap", 5);
    snprintf(p->factory, sizeof p->factory, "%s%s", takes_ids ? "" : "IDMap,", factory);
    if (ivf) {
        p->nlist = factory_nlist(factory);
        if (!p->nlist) return rtr_seterr(RTR_E_INVALID, "factory '%s': IVF needs a list count", factory);
        p->nprobe = default_nprobe(n, p->nlist, shards);
        p->train_n = (uint64_t)p->nlist * TRAIN_PER_LIST < n ? (uint64_t)p->nlist * TRAIN_PER_LIST : n;
    } else if (strstr(factory, "PQ") || strstr(factory, "SQ") || strstr(factory, "LSH")) {
        p->train_n = n < 65536 ? n : 65536;
    }
    snprintf(p->why, sizeof p->why, "factory string given");
    return RTR_OK;
}

/* --- life cycle ------------------------------------------------------------------------ */
static int set_param_one(FaissIndex *ix, const char *name, double value) {
    FaissParameterSpace *ps;
    if (faiss_ParameterSpace_new(&ps)) return faiss_err("parameter space");
    int rc = faiss_ParameterSpace_set_index_parameter(ps, ix, name, value) ? faiss_err(name) : RTR_OK;
    faiss_ParameterSpace_free(ps);
    return rc;
}

static int set_nprobe_one(FaissIndex *ix, uint32_t nprobe) {
    return nprobe ? set_param_one(ix, "nprobe", (double)nprobe) : RTR_OK;
}

int rtr_vindex_set_param(rtr_vindex *v, const char *name, double value) {
    if (!strcmp(name, "rerank")) return rtr_vindex_set_rerank(v, value < 0 ? -1 : value > 1e6 ? -2 : (int)value);
    for (uint32_t s = 0; s < v->n_shards; s++) {
        int rc = set_param_one(v->shards[s], name, value);
        if (rc) return rc;
    }
    return RTR_OK;
}

static rtr_vindex *alloc_vindex(uint32_t n_shards, uint32_t dim, const char *factory, uint32_t nprobe) {
    rtr_vindex *v = rtr_calloc(1, sizeof *v);
    if (!v) return NULL;
    v->shards = rtr_calloc(n_shards, sizeof *v->shards);
    v->sq = rtr_calloc(n_shards, sizeof *v->sq);
    v->gen = rtr_calloc(n_shards, sizeof *v->gen);
    v->sq_gen = rtr_calloc(n_shards, sizeof *v->sq_gen);
    if (!v->shards || !v->sq || !v->gen || !v->sq_gen) {
        rtr_free(v->shards);
        rtr_free(v->sq);
        rtr_free(v->gen);
        rtr_free(v->sq_gen);
        rtr_free(v);
        return NULL;
    }
    v->rerank = -1;
    v->n_shards = n_shards;
    v->dim = dim;
    v->nprobe = nprobe;
    v->nlist = factory_nlist(factory);
    snprintf(v->factory, sizeof v->factory, "%s", factory);
    return v;
}

int rtr_vindex_create(const rtr_vindex_plan *p, uint32_t dim, uint32_t n_shards, const float *train, size_t n_train,
                      rtr_vindex **out) {
    *out = NULL;
    if (n_shards == 0 || n_shards > 1024) return rtr_seterr(RTR_E_INVALID, "shards must be 1..1024");
    rtr_vindex *v = alloc_vindex(n_shards, dim, p->factory, p->nprobe);
    if (!v) return RTR_E_NOMEM;
    int rc = RTR_OK;
    FaissIndex *proto = NULL;
    if (faiss_index_factory(&proto, (int)dim, p->factory, METRIC_L2)) {
        rc = rtr_errprefix(faiss_err("index factory"), "'%s'", p->factory);
        goto fail;
    }
    if (!faiss_Index_is_trained(proto)) {
        if (n_train == 0) { rc = rtr_seterr(RTR_E_INVALID, "index '%s' needs training vectors", p->factory); goto fail; }
        if (p->nlist && n_train < p->nlist) {
            rc = rtr_seterr(RTR_E_INVALID, "index '%s' needs at least %u training vectors, %zu given", p->factory,
                            p->nlist, n_train);
            goto fail;
        }
        if (faiss_Index_train(proto, (idx_t)n_train, train)) { rc = faiss_err("train"); goto fail; }
    }
    if ((rc = set_nprobe_one(proto, p->nprobe))) goto fail;
    v->shards[0] = proto;
    proto = NULL;
    for (uint32_t s = 1; s < n_shards; s++)
        if (faiss_clone_index(v->shards[0], &v->shards[s])) { rc = faiss_err("clone index"); goto fail; }
    *out = v;
    return RTR_OK;
fail:
    if (proto) faiss_Index_free(proto);
    rtr_vindex_free(v);
    return rc;
}

void rtr_vindex_free(rtr_vindex *v) {
    if (!v) return;
    for (uint32_t s = 0; s < v->n_shards; s++) {
        if (v->shards[s]) faiss_Index_free(v->shards[s]);
        rtr_sq4_free(v->sq[s]);
    }
    rtr_free(v->shards);
    rtr_free(v->sq);
    rtr_free(v->gen);
    rtr_free(v->sq_gen);
    rtr_free(v);
}

uint32_t rtr_vindex_shards(const rtr_vindex *v) { return v->n_shards; }
uint32_t rtr_vindex_dim(const rtr_vindex *v) { return v->dim; }
const char *rtr_vindex_factory(const rtr_vindex *v) { return v->factory; }
uint32_t rtr_vindex_nprobe(const rtr_vindex *v) { return v->nprobe; }
uint32_t rtr_vindex_nlist(const rtr_vindex *v) { return v->nlist; }

int rtr_vindex_set_rerank(rtr_vindex *v, int rerank) {
    if (rerank < -1 || rerank > RTR_VINDEX_MAX_RERANK)
        return rtr_seterr(RTR_E_INVALID, "rerank must be 0 (exact) to %d, or -1 (automatic)", RTR_VINDEX_MAX_RERANK);
    v->rerank = rerank;
    return RTR_OK;
}

int rtr_vindex_rerank(const rtr_vindex *v) { return v->rerank; }

uint64_t rtr_vindex_ntotal(const rtr_vindex *v) {
    uint64_t n = 0;
    for (uint32_t s = 0; s < v->n_shards; s++) n += (uint64_t)faiss_Index_ntotal(v->shards[s]);
    return n;
}

int rtr_vindex_set_nprobe(rtr_vindex *v, uint32_t nprobe) {
    if (!v->nlist) return nprobe ? rtr_seterr(RTR_E_INVALID, "nprobe applies to IVF indexes only") : RTR_OK;
    for (uint32_t s = 0; s < v->n_shards; s++) {
        int rc = set_nprobe_one(v->shards[s], nprobe);
        if (rc) return rc;
    }
    v->nprobe = nprobe;
    return RTR_OK;
}

/* --- add / search / remove --------------------------------------------------------------- */
int rtr_vindex_add(rtr_vindex *v, size_t n, const float *x, const int64_t *ids, const uint32_t *shard) {
    if (n == 0) return RTR_OK;
    for (uint32_t s = 0; s < v->n_shards; s++) v->gen[s]++;
    if (v->n_shards == 1) {
        return faiss_Index_add_with_ids(v->shards[0], (idx_t)n, x, (const idx_t *)ids) ? faiss_err("add") : RTR_OK;
    }
    float *gx = rtr_malloc(n * v->dim * sizeof *gx);
    idx_t *gid = rtr_malloc(n * sizeof *gid);
    int rc = gx && gid ? RTR_OK : RTR_E_NOMEM;
    for (uint32_t s = 0; s < v->n_shards && !rc; s++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            RTR_ASSERT(shard[i] < v->n_shards);
            if (shard[i] != s) continue;
            memcpy(gx + m * v->dim, x + i * v->dim, v->dim * sizeof *gx);
            gid[m++] = ids[i];
        }
        if (m && faiss_Index_add_with_ids(v->shards[s], (idx_t)m, gx, gid)) rc = faiss_err("add");
    }
    rtr_free(gx);
    rtr_free(gid);
    return rc;
}

/* --- small batches on exact shards -------------------------------------------------------
 * Debian's libfaiss is built for baseline x86-64. Below FAISS's
 * distance_compute_blas_threshold (20 queries) its exact search runs the
 * scalar reference distance kernel: about 16 ms for one query over 41 K
 * vectors of 256 dimensions on the benchmark machine, a search per chunk
 * that generation cannot hide. So for such small batches a shard that is an
 * IDMap over a flat L2 index is scanned here, over FAISS's own vectors and
 * ids (faiss_IndexFlat_xb, faiss_IndexIDMap_id_map): the same exact squared L2
 * distances, vectorised and split over the threads. Larger batches (training
 * and evaluation neighbours) keep FAISS's BLAS path; every other index type
 * is searched by FAISS. */
static int flat_arrays(FaissIndex *ix, uint32_t dim, const float **xb, const idx_t **ids, size_t *n) {
    FaissIndexIDMap *m = faiss_IndexIDMap_cast(ix);
    FaissIndex *sub = m ? faiss_IndexIDMap_sub_index(m) : NULL;
    FaissIndexFlat *f = sub ? faiss_IndexFlat_cast(sub) : NULL;
    if (!f || faiss_Index_metric_type(sub) != METRIC_L2) return 0;
    float *x;
    idx_t *id;
    size_t nx, nid, nt = (size_t)faiss_Index_ntotal(sub);
    faiss_IndexFlat_xb(f, &x, &nx);
    faiss_IndexIDMap_id_map(m, &id, &nid);
    if (nx != nt * dim || nid != nt) return 0;
    *xb = x;
    *ids = id;
    *n = nt;
    return 1;
}

#ifdef RTR_SIMD
static float l2sq(const float *a, const float *b, uint32_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 t1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        s0 = _mm256_fmadd_ps(t0, t0, s0);
        s1 = _mm256_fmadd_ps(t1, t1, s1);
    }
    float s = rtr_hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return s;
}
#else
static float l2sq(const float *a, const float *b, uint32_t n) {
    float s = 0;
    for (uint32_t i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return s;
}
#endif

/* Exact search of one query over vectors [lo, hi) of xb into d, l (k each). */
static void exact_range(const float *xb, const idx_t *ids, size_t lo, size_t hi, uint32_t dim, const float *q,
                        uint32_t k, float *d, idx_t *l) {
    for (size_t j = lo; j < hi; j++) rtr_topk_put(d, l, k, l2sq(q, xb + j * dim, dim), ids[j]);
}

static void topk_clear(float *d, idx_t *l, size_t k) {
    for (size_t r = 0; r < k; r++) {
        d[r] = FLT_MAX;
        l[r] = -1;
    }
}

/* Each query's k nearest: exact, or (sq not NULL) the rr best of a 4-bit
 * scan re-ranked by exact distance. The vectors are split over the threads
 * unless already in a parallel region. */
static int flat_search(const float *xb, const idx_t *ids, size_t n, uint32_t dim, const rtr_sq4 *sq, uint32_t rr,
                       size_t nq, const float *q, uint32_t k, float *dist, idx_t *lab) {
    int nt = omp_in_parallel() || n < 4096 ? 1 : omp_get_max_threads();
    uint32_t per = sq ? (rr > k ? rr : k) : k;   /* list length per thread */
    float *td = rtr_malloc((size_t)nt * per * sizeof *td);
    idx_t *tl = rtr_malloc((size_t)nt * per * sizeof *tl);
    if (!td || !tl) {
        rtr_free(td);
        rtr_free(tl);
        return rtr_seterr(RTR_E_NOMEM, "search: out of memory");
    }
    int rc = RTR_OK;
    for (size_t i = 0; i < nq && !rc; i++) {
        const float *qi = q + i * dim;
        float *d = dist + i * k;
        idx_t *l = lab + i * k;
        rtr_sq4_query qq = {0};
        if (sq && (rc = rtr_sq4_query_init(sq, qi, &qq))) break;
#pragma omp parallel num_threads(nt)
        {
            int me = omp_get_thread_num();
            float *md = td + (size_t)me * per;
            idx_t *ml = tl + (size_t)me * per;
            topk_clear(md, ml, per);
            size_t lo = n * (size_t)me / (size_t)nt, hi = n * (size_t)(me + 1) / (size_t)nt;
            if (sq) rtr_sq4_scan(sq, &qq, lo, hi, per, md, ml);
            else exact_range(xb, ids, lo, hi, dim, qi, k, md, ml);
        }
        rtr_sq4_query_free(&qq);
        /* merge the threads' lists in thread (= position) order; candidates
         * of the 4-bit scan are positions, re-ranked by their exact distance */
        topk_clear(d, l, k);
        for (size_t j = 0; j < (size_t)nt * per; j++) {
            if (tl[j] < 0) continue;
            if (sq) rtr_topk_put(d, l, k, l2sq(qi, xb + (size_t)tl[j] * dim, dim), ids[tl[j]]);
            else rtr_topk_put(d, l, k, td[j], tl[j]);
        }
    }
    rtr_free(td);
    rtr_free(tl);
    return rc;
}

/* Shard s's 4-bit codes when its search goes through them (else NULL), built
 * on first use after a change. */
static const rtr_sq4 *shard_sq4(const rtr_vindex *v, uint32_t s, const float *xb, size_t n) {
    if (v->rerank == 0 || (v->rerank < 0 && n < SQ4_MIN)) return NULL;
    const rtr_sq4 *sq = NULL;
#pragma omp critical(rtr_vindex_sq4)
    {
        if (!v->sq[s] || v->sq_gen[s] != v->gen[s] || rtr_sq4_n(v->sq[s]) != n) {
            rtr_sq4_free(v->sq[s]);
            v->sq[s] = rtr_sq4_build(xb, n, v->dim);   /* NULL (no memory): exact search */
            v->sq_gen[s] = v->gen[s];
        }
        sq = v->sq[s];
    }
    return sq;
}

/* One shard's search: k results per query, ascending. RTR_E_FAISS from FAISS. */
static int shard_search(const rtr_vindex *v, uint32_t s, size_t nq, const float *q, uint32_t k, float *dist,
                        idx_t *lab) {
    const float *xb;
    const idx_t *ids;
    size_t n;
    if (flat_arrays(v->shards[s], v->dim, &xb, &ids, &n)) {
        const rtr_sq4 *sq = shard_sq4(v, s, xb, n);
        uint32_t rr = v->rerank > 0 ? (uint32_t)v->rerank : RTR_VINDEX_RERANK;
        if (sq || (int)nq < faiss_get_distance_compute_blas_threshold())
            return flat_search(xb, ids, n, v->dim, sq, rr, nq, q, k, dist, lab);
    }
    return faiss_Index_search(v->shards[s], (idx_t)nq, q, k, dist, lab) ? faiss_err("search") : RTR_OK;
}

int rtr_vindex_search(const rtr_vindex *v, size_t nq, const float *q, uint32_t k, float *dist, int64_t *ids) {
    if (k == 0 || nq == 0) return RTR_OK;
    uint32_t S = v->n_shards;
    if (S == 1) return shard_search(v, 0, nq, q, k, dist, (idx_t *)ids);
    float *sd = rtr_malloc((size_t)S * nq * k * sizeof *sd);
    idx_t *si = rtr_malloc((size_t)S * nq * k * sizeof *si);
    if (!sd || !si) {
        rtr_free(sd);
        rtr_free(si);
        return RTR_E_NOMEM;
    }
    int rc = RTR_OK;
    char why[256] = "";   /* errors are per thread: the first shard's failure, told on this one */
#pragma omp parallel for schedule(static) if (nq * S > 1)
    for (uint32_t s = 0; s < S; s++) {
        int r = shard_search(v, s, nq, q, k, sd + (size_t)s * nq * k, si + (size_t)s * nq * k);
        if (r) {
#pragma omp critical(rtr_vindex_err)
            if (!rc) {
                rc = r;
                snprintf(why, sizeof why, "%s", rtr_errdetail());
            }
        }
    }
    if (rc) rtr_seterr(rc, "%s", why);
    /* merge: each shard's list is sorted; take the k smallest */
    for (size_t i = 0; i < nq && !rc; i++) {
        uint32_t pos[1024] = {0};
        for (uint32_t r = 0; r < k; r++) {
            int best = -1;
            float bd = INFINITY;
            for (uint32_t s = 0; s < S; s++) {
                if (pos[s] >= k) continue;
                size_t at = ((size_t)s * nq + i) * k + pos[s];
                if (si[at] < 0) continue;
                if (best < 0 || sd[at] < bd) { best = (int)s; bd = sd[at]; }
            }
            if (best < 0) {
                dist[i * k + r] = INFINITY;
                ids[i * k + r] = -1;
                continue;
            }
            size_t at = ((size_t)best * nq + i) * k + pos[best]++;
            dist[i * k + r] = sd[at];
            ids[i * k + r] = si[at];
        }
    }
    rtr_free(sd);
    rtr_free(si);
    return rc;
}

int rtr_vindex_remove(rtr_vindex *v, const int64_t *ids, size_t n, uint64_t *removed) {
    *removed = 0;
    if (n == 0) return RTR_OK;
    FaissIDSelectorBatch *sel;
    if (faiss_IDSelectorBatch_new(&sel, n, (const idx_t *)ids)) return faiss_err("id selector");
    int rc = RTR_OK;
    for (uint32_t s = 0; s < v->n_shards && !rc; s++) {
        size_t nr = 0;
        v->gen[s]++;
        if (faiss_Index_remove_ids(v->shards[s], (const FaissIDSelector *)sel, &nr)) rc = faiss_err("remove ids");
        *removed += nr;
    }
    faiss_IDSelector_free((FaissIDSelector *)sel);
    return rc;
}

/* --- files --------------------------------------------------------------------------------
 * FAISS reads and writes a shard through a stdio stream whose every byte
 * also goes through XXH64: the checksum costs no second pass over the file
 * (nor a copy of it in memory), on writing as on reading. */
typedef struct hashed_fd {
    int fd;
    XXH64_state_t st;
    uint64_t bytes;
    int err;   /* errno of a failed read or write */
} hashed_fd;

static ssize_t hashed_read(void *c, char *buf, size_t n) {
    hashed_fd *h = c;
    ssize_t r;
    do r = read(h->fd, buf, n);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        h->err = errno;
        return -1;
    }
    XXH64_update(&h->st, buf, (size_t)r);
    h->bytes += (uint64_t)r;
    return r;
}

static ssize_t hashed_write(void *c, const char *buf, size_t n) {
    hashed_fd *h = c;
    size_t done = 0;
    while (done < n) {
        ssize_t r = write(h->fd, buf + done, n - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            h->err = r < 0 ? errno : EIO;
            return done ? (ssize_t)done : -1;
        }
        XXH64_update(&h->st, buf + done, (size_t)r);
        done += (size_t)r;
    }
    h->bytes += n;
    return (ssize_t)n;
}

/* A stream over fd ("r" or "w") hashing what passes; fclose does not close fd. */
static FILE *hashed_open(hashed_fd *h, int fd, const char *mode) {
    memset(h, 0, sizeof *h);
    h->fd = fd;
    XXH64_reset(&h->st, 0);
    cookie_io_functions_t io = {0};
    if (*mode == 'r') io.read = hashed_read;
    else io.write = hashed_write;
    return fopencookie(h, mode, io);
}

/* Hashes what is left of h's file after a failed parse, so that the error
 * can say whether the file is damaged. */
static void hashed_drain(hashed_fd *h) {
    char buf[1 << 16];
    while (hashed_read(h, buf, sizeof buf) > 0) {}
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rtr_seterr(RTR_E_IO, "%s: cannot open to sync", path);
    int r = fsync(fd);
    close(fd);
    return r ? rtr_seterr(RTR_E_IO, "%s: fsync failed", path) : RTR_OK;
}

/* Writes one shard to path (through tmp, synced, renamed). */
static int save_shard(FaissIndex *ix, const char *tpath, const char *path, uint64_t *sum, uint64_t *bytes) {
    int fd = open(tpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return rtr_seterr(RTR_E_IO, "%s: cannot create: %s", tpath, strerror(errno));
    hashed_fd h;
    FILE *f = hashed_open(&h, fd, "w");
    int rc = f ? RTR_OK : rtr_seterr(RTR_E_NOMEM, "%s: stream", tpath);
    if (!rc && faiss_write_index(ix, f)) rc = rtr_errprefix(faiss_err("write"), "%s", tpath);
    int unflushed = f && fclose(f);   /* the stream's last bytes reach the file here */
    if (!rc && (unflushed || h.err)) rc = rtr_seterr(RTR_E_IO, "%s: write failed: %s", tpath, strerror(h.err ? h.err : EIO));
    if (!rc && fsync(fd)) rc = rtr_seterr(RTR_E_IO, "%s: fsync failed", tpath);
    if (close(fd) && !rc) rc = rtr_seterr(RTR_E_IO, "%s: close failed", tpath);
    if (!rc && rename(tpath, path) != 0) rc = rtr_seterr(RTR_E_IO, "%s: rename failed", path);
    if (rc) unlink(tpath);
    *sum = XXH64_digest(&h.st);
    if (bytes) *bytes = h.bytes;
    return rc;
}

int rtr_vindex_save(const rtr_vindex *v, const char *dir, const char *prefix, char **names, uint64_t *sums,
                    uint64_t *bytes) {
    int rc = rtr_mkdirs(dir);
    for (uint32_t s = 0; s < v->n_shards && !rc; s++) {
        char name[128], tmp[160];
        snprintf(name, sizeof name, "%s-%03u.faiss", prefix, s);
        snprintf(tmp, sizeof tmp, "%s.tmp", name);
        char *tpath = rtr_path_join(dir, tmp), *path = rtr_path_join(dir, name);
        if (!tpath || !path) rc = RTR_E_NOMEM;
        else rc = save_shard(v->shards[s], tpath, path, &sums[s], bytes ? &bytes[s] : NULL);
        if (!rc && !(names[s] = rtr_strdup(name))) rc = RTR_E_NOMEM;
        rtr_free(tpath);
        rtr_free(path);
    }
    if (!rc) rc = fsync_path(dir);
    return rc;
}

/* --- shard files, opened now and read later -------------------------------------------------- */
struct rtr_vindex_files {
    uint32_t n;
    int *fd;          /* (n) open shard files: readable even once a newer build has unlinked them */
    char **path;      /* (n) for errors */
    uint64_t *sum;    /* (n) XXH64 */
};

void rtr_vindex_files_close(rtr_vindex_files *f) {
    if (!f) return;
    for (uint32_t s = 0; s < f->n; s++) {
        if (f->fd && f->fd[s] >= 0) close(f->fd[s]);
        if (f->path) rtr_free(f->path[s]);
    }
    rtr_free(f->fd);
    rtr_free(f->path);
    rtr_free(f->sum);
    rtr_free(f);
}

int rtr_vindex_files_open(const char *dir, uint32_t n_shards, char *const *names, const uint64_t *sums,
                          const uint64_t *bytes, rtr_vindex_files **out) {
    *out = NULL;
    if (n_shards == 0 || n_shards > 1024) return rtr_seterr(RTR_E_CORRUPT, "%s: bad shard count %u", dir, n_shards);
    rtr_vindex_files *f = rtr_calloc(1, sizeof *f);
    if (!f) return RTR_E_NOMEM;
    f->fd = rtr_malloc(n_shards * sizeof *f->fd);
    f->path = rtr_calloc(n_shards, sizeof *f->path);
    f->sum = rtr_malloc(n_shards * sizeof *f->sum);
    int rc = f->fd && f->path && f->sum ? RTR_OK : RTR_E_NOMEM;
    if (f->fd) {
        f->n = n_shards;
        for (uint32_t s = 0; s < n_shards; s++) f->fd[s] = -1;
    }
    for (uint32_t s = 0; s < n_shards && !rc; s++) {
        const char *path = f->path[s] = rtr_path_join(dir, names[s]);
        f->sum[s] = sums[s];
        struct stat sb;
        uint64_t want = bytes ? bytes[s] : 0;
        if (!path) rc = RTR_E_NOMEM;
        else if ((f->fd[s] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            rc = errno == ENOENT ? rtr_seterr(RTR_E_CORRUPT, "%s: shard file missing", path)
                                 : rtr_seterr(RTR_E_IO, "%s: cannot open: %s", path, strerror(errno));
        else if (fstat(f->fd[s], &sb)) rc = rtr_seterr(RTR_E_IO, "%s: cannot stat: %s", path, strerror(errno));
        else if ((uint64_t)sb.st_size > MAX_SHARD_FILE || (want && (uint64_t)sb.st_size != want))
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: %lld bytes where the manifest records %llu: the index file is truncated or replaced",
                            path, (long long)sb.st_size, (unsigned long long)want);
    }
    if (rc) rtr_vindex_files_close(f);
    else *out = f;
    return rc;
}

/* Reads shard s, its checksum taken over the bytes as FAISS reads them
 * and then over the rest of the file. */
static int load_shard(const rtr_vindex_files *f, uint32_t s, FaissIndex **out) {
    *out = NULL;
    const char *path = f->path[s];
    if (lseek(f->fd[s], 0, SEEK_SET) != 0) return rtr_seterr(RTR_E_IO, "%s: cannot seek: %s", path, strerror(errno));
    hashed_fd h;
    FILE *fp = hashed_open(&h, f->fd[s], "r");
    if (!fp) return rtr_seterr(RTR_E_NOMEM, "%s: stream", path);
    int rc = faiss_read_index(fp, 0, out) ? rtr_errprefix(faiss_err("read"), "%s", path) : RTR_OK;
    hashed_drain(&h);   /* a parse may stop short of the end: the checksum covers every byte */
    if (h.err) rc = rtr_seterr(RTR_E_IO, "%s: read failed: %s", path, strerror(h.err));
    else if (XXH64_digest(&h.st) != f->sum[s])
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: checksum mismatch: the index file is corrupt or truncated", path);
    fclose(fp);
    if (rc && *out) {
        faiss_Index_free(*out);
        *out = NULL;
    }
    return rc;
}

int rtr_vindex_files_load(const rtr_vindex_files *f, uint32_t nprobe, const char *factory, rtr_vindex **out) {
    *out = NULL;
    rtr_vindex *v = alloc_vindex(f->n, 0, factory, nprobe);
    if (!v) return RTR_E_NOMEM;
    int rc = RTR_OK;
    for (uint32_t s = 0; s < f->n && !rc; s++) {
        if ((rc = load_shard(f, s, &v->shards[s]))) break;
        uint32_t d = (uint32_t)faiss_Index_d(v->shards[s]);
        if (s == 0) v->dim = d;
        else if (d != v->dim) rc = rtr_seterr(RTR_E_CORRUPT, "%s: dimension %u, shard 0 has %u", f->path[s], d, v->dim);
        if (!rc && v->nlist) rc = set_nprobe_one(v->shards[s], nprobe);
    }
    if (rc) {
        rtr_vindex_free(v);
        return rc;
    }
    *out = v;
    return RTR_OK;
}

int rtr_vindex_load(const char *dir, uint32_t n_shards, char *const *names, const uint64_t *sums,
                    const uint64_t *bytes, uint32_t nprobe, const char *factory, rtr_vindex **out) {
    *out = NULL;
    rtr_vindex_files *f;
    int rc = rtr_vindex_files_open(dir, n_shards, names, sums, bytes, &f);
    if (!rc) rc = rtr_vindex_files_load(f, nprobe, factory, out);
    rtr_vindex_files_close(f);
    return rc;
}

int rtr_vindex_ids(const rtr_vindex *v, uint32_t shard, int64_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    RTR_ASSERT(shard < v->n_shards);
    FaissIndex *ix = v->shards[shard];
    size_t total = (size_t)faiss_Index_ntotal(ix);
    int64_t *out = rtr_malloc((total ? total : 1) * sizeof *out);
    if (!out) return RTR_E_NOMEM;
    FaissIndexIDMap *m = faiss_IndexIDMap_cast(ix);
    FaissIndexIVF *ivf = m ? NULL : faiss_IndexIVF_cast(ix);
    if (m) {
        idx_t *id;
        size_t nid;
        faiss_IndexIDMap_id_map(m, &id, &nid);
        if (nid != total) {
            rtr_free(out);
            return rtr_seterr(RTR_E_CORRUPT, "shard %u: %zu ids for %zu vectors", shard, nid, total);
        }
        for (size_t i = 0; i < nid; i++) out[i] = id[i];
    } else if (ivf) {
        size_t got = 0, nlist = faiss_IndexIVF_nlist(ivf);
        for (size_t l = 0; l < nlist; l++) {
            size_t ls = faiss_IndexIVF_get_list_size(ivf, l);
            if (got + ls > total) {
                rtr_free(out);
                return rtr_seterr(RTR_E_CORRUPT, "shard %u: its lists hold more ids than its %zu vectors", shard, total);
            }
            if (ls) faiss_IndexIVF_invlists_get_ids(ivf, l, (idx_t *)out + got);
            got += ls;
        }
        if (got != total) {
            rtr_free(out);
            return rtr_seterr(RTR_E_CORRUPT, "shard %u: its lists hold %zu ids for %zu vectors", shard, got, total);
        }
    } else {
        rtr_free(out);
        return rtr_seterr(RTR_E_INVALID, "shard %u: %s keeps no ids that can be listed", shard, v->factory);
    }
    *ids = out;
    *n = total;
    return RTR_OK;
}
