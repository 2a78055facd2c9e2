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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY   /* XXH64_state_t on the stack */
#include <xxhash.h>

#include "lib/alloc.h"
#include "lib/io.h"
#include "index/faiss_ext.h"
#include "index/sq4.h"
#include "lib/simd.h"
#include "lib/status.h"
#include "lib/topk.h"

#define FLAT_MAX ((uint64_t)64 * 1024)
#define TRAIN_PER_LIST 40   /* FAISS asks for 30..256 per list and warns below 39 */
#define MAX_SHARD_FILE ((size_t)64 << 30)
#define SQ4_MIN ((size_t)64 * 1024)   /* flat shards from this size are scanned through 4-bit codes */

/* A flat shard searched from its files, never loaded: its 4-bit codes and ids mapped from its .sq4
 * file (sq4.h), its exact vectors read from its FAISS file where a re-ranking needs them. */
typedef struct mapped_shard {
    const int64_t *ids;   /* (n) into the codes' map */
    int fd;               /* the FAISS file (owned), or -1: the shard is loaded */
    uint64_t xb_off;      /* byte offset of vector 0 in it */
    uint32_t searches;    /* searched so far (up to COPY_AFTER): its codes go into memory then */
    pthread_t copier;     /* the thread copying them, joined by rtr_vindex_free */
    int copying;          /* 1 once copier was started */
} mapped_shard;

/* A process that searches a mapped shard this often will search it more: a thread of its own copies
 * the codes into memory (rtr_sq4_to_memory), where scans run about a fifth faster than over the
 * file's map, while searches go on over the map; one that searches once (a `retro search`) never
 * pays for the copy. */
#define COPY_AFTER 8

static void *copy_codes(void *sq) {
    rtr_sq4_to_memory(sq);   /* out of memory: the shard stays mapped */
    return NULL;
}

struct rtr_vindex {
    uint32_t n_shards, dim, nprobe, nlist;   /* nlist 0: not an inverted file */
    char factory[96];
    FaissIndex **shards;   /* per shard: loaded, or NULL when mapped */
    mapped_shard *mapped;  /* per shard, or NULL when every shard is loaded */
    int rerank;            /* candidates re-ranked exactly after a 4-bit scan; -1: RTR_VINDEX_RERANK from SQ4_MIN */
    rtr_sq4 **sq;          /* per shard: its 4-bit codes (built when first searched, or mapped) */
    uint64_t *gen, *sq_gen;   /* per shard: changes made; the change the codes were built at */
    int read_only;         /* inverted lists mapped from their files (FAISS's OnDiskInvertedLists) */
    rtr_faiss_codes *codes;    /* every shard's batch codes (rtr_vindex_batch_prepare), or NULL */
    uint64_t *codes_gen;       /* per shard: the change they were made at */
    uint32_t batch_nprobe;     /* lists a batch search of the codes probes; 0: rtr_vindex_batch_nprobe's default */
};

static int is_mapped(const rtr_vindex *v, uint32_t s) { return v->mapped && v->mapped[s].fd >= 0; }

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

/* Spaces of at most LOW_DIM dimensions (the hash vectors' principal
 * components, embed_pca.h) are scanned at a fixed share of their lists
 * instead, 1/LOW_DIM_SHARE: on 4.17 M kernel chunks projected to 32
 * components, probing 1/16 of the lists finds 0.95 of the 10 nearest, 1/32
 * finds 0.88 (docs/benchmarks.md), and a vector of 32 floats costs an eighth
 * of a 256-dimensional one to compare. */
#define LOW_DIM 64
#define LOW_DIM_SHARE 16

static uint32_t default_nprobe(uint64_t n, uint32_t dim, uint32_t nlist, uint32_t shards) {
    if (dim <= LOW_DIM) return nlist / LOW_DIM_SHARE > 8 ? nlist / LOW_DIM_SHARE : nlist < 8 ? nlist : 8;
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
    p->nprobe = default_nprobe(n, dim, nlist, shards);
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
    memset(p, 0, sizeof *p);
    if (strlen(factory) + 7 >= sizeof p->factory) return rtr_seterr(RTR_E_INVALID, "factory string too long");
    int ivf = strstr(factory, "IVF") != NULL;
    int takes_ids = ivf || !strncmp(factory, "IDMap", 5);
    snprintf(p->factory, sizeof p->factory, "%s%s", takes_ids ? "" : "IDMap,", factory);
    if (ivf) {
        p->nlist = factory_nlist(factory);
        if (!p->nlist) return rtr_seterr(RTR_E_INVALID, "factory '%s': IVF needs a list count", factory);
        p->nprobe = default_nprobe(n, dim, p->nlist, shards);
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
    if (v->mapped) return rtr_seterr(RTR_E_INVALID, "%s: no such parameter of a flat index", name);
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
    v->codes_gen = rtr_calloc(n_shards, sizeof *v->codes_gen);
    if (!v->shards || !v->sq || !v->gen || !v->sq_gen || !v->codes_gen) {
        rtr_free(v->shards);
        rtr_free(v->sq);
        rtr_free(v->gen);
        rtr_free(v->sq_gen);
        rtr_free(v->codes_gen);
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

int rtr_vindex_create_like(const rtr_vindex *proto, uint32_t n_shards, rtr_vindex **out) {
    *out = NULL;
    if (n_shards == 0 || n_shards > 1024) return rtr_seterr(RTR_E_INVALID, "shards must be 1..1024");
    RTR_ASSERT(!proto->mapped && proto->n_shards > 0);
    if (faiss_Index_ntotal(proto->shards[0]) != 0)
        return rtr_seterr(RTR_E_INVALID, "the index to copy holds %lld vectors; an empty one is copied",
                          (long long)faiss_Index_ntotal(proto->shards[0]));
    rtr_vindex *v = alloc_vindex(n_shards, proto->dim, proto->factory, proto->nprobe);
    if (!v) return RTR_E_NOMEM;
    for (uint32_t s = 0; s < n_shards; s++)
        if (faiss_clone_index(proto->shards[0], &v->shards[s])) {
            rtr_vindex_free(v);
            return faiss_err("clone index");
        }
    *out = v;
    return RTR_OK;
}

void rtr_vindex_free(rtr_vindex *v) {
    if (!v) return;
    for (uint32_t s = 0; s < v->n_shards; s++) {
        if (v->shards[s]) faiss_Index_free(v->shards[s]);
        if (is_mapped(v, s) && v->mapped[s].copying) pthread_join(v->mapped[s].copier, NULL);
        rtr_sq4_free(v->sq[s]);
        if (is_mapped(v, s)) close(v->mapped[s].fd);
    }
    rtr_faiss_codes_free(v->codes);
    rtr_free(v->codes_gen);
    rtr_free(v->mapped);
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

uint64_t rtr_vindex_warm(rtr_vindex *v) {
    uint64_t bytes = 0;
    for (uint32_t s = 0; s < v->n_shards; s++) {
        const void *p;
        size_t n;
        if (v->shards && v->shards[s] && rtr_faiss_mapped_range(v->shards[s], &p, &n)) {
            rtr_map_populate(p, n);
            bytes += n;
        }
        if (v->sq && v->sq[s]) bytes += rtr_sq4_warm(v->sq[s]);
    }
    return bytes;
}
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
    for (uint32_t s = 0; s < v->n_shards; s++)
        n += is_mapped(v, s) ? rtr_sq4_n(v->sq[s]) : (uint64_t)faiss_Index_ntotal(v->shards[s]);
    return n;
}

int rtr_vindex_set_nprobe(rtr_vindex *v, uint32_t nprobe) {
    if (!v->nlist) return nprobe ? rtr_seterr(RTR_E_INVALID, "nprobe applies to IVF indexes only") : RTR_OK;
    for (uint32_t s = 0; s < v->n_shards; s++) {
        int rc = set_nprobe_one(v->shards[s], nprobe);
        if (rc) return rc;
    }
    v->nprobe = nprobe;
    if (v->codes) rtr_faiss_codes_set_nprobe(v->codes, rtr_vindex_batch_nprobe(v));
    return RTR_OK;
}

/* --- add / search / remove --------------------------------------------------------------- */
int rtr_vindex_add(rtr_vindex *v, size_t n, const float *x, const int64_t *ids, const uint32_t *shard) {
    RTR_ASSERT(!v->mapped && !v->read_only);   /* a mapped index is for searching */
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
float rtr_l2sq(const float *a, const float *b, uint32_t n) {
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
float rtr_l2sq(const float *a, const float *b, uint32_t n) {
    float s = 0;
    for (uint32_t i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return s;
}
#endif

/* Where a flat shard's exact vectors are: in memory (FAISS's array), or in its file. */
typedef struct vec_src {
    const float *xb;   /* n x dim, or NULL: read from fd */
    int fd;
    uint64_t off;      /* byte offset of vector 0 in fd's file */
} vec_src;

#define READ_BLOCK 256   /* vectors an exact scan of a file reads at once */

/* Vectors [at, at + m) of src: where they lie in memory, or read into buf
 * (m x dim). NULL when the read fails. */
static const float *src_vectors(const vec_src *src, size_t at, size_t m, uint32_t dim, float *buf) {
    if (src->xb) return src->xb + at * dim;
    size_t len = m * dim * sizeof *buf, got = 0;
    while (got < len) {
        ssize_t r = pread(src->fd, (char *)buf + got, len - got, (off_t)(src->off + at * dim * sizeof *buf + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return NULL;
        got += (size_t)r;
    }
    return buf;
}

/* Exact search of one query over vectors [lo, hi) into d, l (k each); buf
 * holds READ_BLOCK vectors. 0, or -1 when a read fails. */
static int exact_range(const vec_src *src, const idx_t *ids, size_t lo, size_t hi, uint32_t dim, const float *q,
                       uint32_t k, float *d, idx_t *l, float *buf) {
    for (size_t b = lo; b < hi; b += READ_BLOCK) {
        size_t m = hi - b < READ_BLOCK ? hi - b : READ_BLOCK;
        const float *x = src_vectors(src, b, m, dim, buf);
        if (!x) return -1;
        for (size_t j = 0; j < m; j++) rtr_topk_put(d, l, k, rtr_l2sq(q, x + j * dim, dim), ids[b + j]);
    }
    return 0;
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
static int flat_search(const vec_src *src, const idx_t *ids, size_t n, uint32_t dim, const rtr_sq4 *sq, uint32_t rr,
                       size_t nq, const float *q, uint32_t k, float *dist, idx_t *lab) {
    int nt = omp_in_parallel() || n < 4096 ? 1 : omp_get_max_threads();
    uint32_t per = sq ? (rr > k ? rr : k) : k;   /* list length per thread */
    float *td = rtr_malloc((size_t)nt * per * sizeof *td);
    idx_t *tl = rtr_malloc((size_t)nt * per * sizeof *tl);
    /* read buffers: a block per thread for an exact scan of a file, one vector for a re-ranking */
    size_t per_buf = src->xb ? 0 : sq ? dim : (size_t)READ_BLOCK * dim;
    float *tb = per_buf ? rtr_malloc((size_t)nt * per_buf * sizeof *tb) : NULL;
    if (!td || !tl || (per_buf && !tb)) {
        rtr_free(td);
        rtr_free(tl);
        rtr_free(tb);
        return rtr_seterr(RTR_E_NOMEM, "search: out of memory");
    }
    int rc = RTR_OK, failed = 0;
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
            else if (exact_range(src, ids, lo, hi, dim, qi, k, md, ml, tb ? tb + (size_t)me * per_buf : NULL)) {
#pragma omp atomic write
                failed = 1;
            }
        }
        rtr_sq4_query_free(&qq);
        /* merge the threads' lists in thread (= position) order; candidates
         * of the 4-bit scan are positions, re-ranked by their exact distance */
        topk_clear(d, l, k);
        for (size_t j = 0; j < (size_t)nt * per && !failed; j++) {
            if (tl[j] < 0) continue;
            if (!sq) {
                rtr_topk_put(d, l, k, td[j], tl[j]);
                continue;
            }
            const float *x = src_vectors(src, (size_t)tl[j], 1, dim, tb);
            if (x) rtr_topk_put(d, l, k, rtr_l2sq(qi, x, dim), ids[tl[j]]);
            else failed = 1;
        }
        if (failed) rc = rtr_seterr(RTR_E_IO, "search: cannot read a shard's vectors");
    }
    rtr_free(td);
    rtr_free(tl);
    rtr_free(tb);
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

/* A failure that faiss_ext.h tells in why. */
static int codes_err(const char *what, const char *why) {
    return rtr_seterr(strcmp(why, "out of memory") ? RTR_E_FAISS : RTR_E_NOMEM, "%s: %s", what, why);
}

/* One shard's search: k results per query, ascending; nprobe: lists to probe (0: the index's). RTR_E_FAISS
 * from FAISS. */
static int shard_search(const rtr_vindex *v, uint32_t s, size_t nq, const float *q, uint32_t k, uint32_t nprobe,
                        float *dist, idx_t *lab) {
    const float *xb;
    const idx_t *ids;
    size_t n;
    uint32_t rr = v->rerank > 0 ? (uint32_t)v->rerank : RTR_VINDEX_RERANK;
    if (is_mapped(v, s)) {   /* its codes, unless an exact search is asked for */
        mapped_shard *m = &v->mapped[s];
        if (__atomic_load_n(&m->searches, __ATOMIC_RELAXED) < COPY_AFTER &&
            __atomic_add_fetch(&m->searches, 1, __ATOMIC_RELAXED) == COPY_AFTER)   /* one caller only */
            m->copying = pthread_create(&m->copier, NULL, copy_codes, v->sq[s]) == 0;
        vec_src src = {NULL, m->fd, m->xb_off};
        return flat_search(&src, m->ids, rtr_sq4_n(v->sq[s]), v->dim, v->rerank == 0 ? NULL : v->sq[s], rr, nq, q, k,
                           dist, lab);
    }
    if (flat_arrays(v->shards[s], v->dim, &xb, &ids, &n)) {
        const rtr_sq4 *sq = shard_sq4(v, s, xb, n);
        vec_src src = {xb, -1, 0};
        if (sq || (int)nq < faiss_get_distance_compute_blas_threshold())
            return flat_search(&src, ids, n, v->dim, sq, rr, nq, q, k, dist, lab);
    }
    if (nprobe && nprobe != v->nprobe) {   /* another number of lists for this search (an inverted file) */
        char why[256];
        int r = rtr_faiss_search_lists(v->shards[s], nq, q, k, nprobe, dist, (int64_t *)lab, why, sizeof why);
        if (r <= 0) return r ? codes_err("search", why) : RTR_OK;
    }
    return faiss_Index_search(v->shards[s], (idx_t)nq, q, k, dist, lab) ? faiss_err("search") : RTR_OK;
}

/* 1 when the batch codes are current: made, and no shard changed since. */
static int codes_current(const rtr_vindex *v) {
    if (!v->codes) return 0;
    for (uint32_t s = 0; s < v->n_shards; s++)
        if (v->codes_gen[s] != v->gen[s]) return 0;
    return 1;
}

/* Every shard searched (batch: through its codes), the results merged. */
static int search_shards(const rtr_vindex *v, int batch, uint32_t nprobe, size_t nq, const float *q, uint32_t k,
                         float *dist, int64_t *ids) {
    if (k == 0 || nq == 0) return RTR_OK;
    if (batch && codes_current(v)) {   /* all shards at once */
        char why[256];
        if (rtr_faiss_codes_search(v->codes, nq, q, RTR_VINDEX_BATCH_RERANK, k, dist, ids, why, sizeof why))
            return codes_err("batch search", why);
        return RTR_OK;
    }
    uint32_t S = v->n_shards;
    if (S == 1) return shard_search(v, 0, nq, q, k, nprobe, dist, (idx_t *)ids);
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
        int r = shard_search(v, s, nq, q, k, nprobe, sd + (size_t)s * nq * k, si + (size_t)s * nq * k);
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

int rtr_vindex_search(const rtr_vindex *v, size_t nq, const float *q, uint32_t k, float *dist, int64_t *ids) {
    return search_shards(v, 0, 0, nq, q, k, dist, ids);
}

int rtr_vindex_search_batch(const rtr_vindex *v, size_t nq, const float *q, uint32_t k, float *dist, int64_t *ids) {
    return search_shards(v, 1, 0, nq, q, k, dist, ids);
}

uint32_t rtr_vindex_few_nprobe(const rtr_vindex *v) {
    if (!v->nlist) return 0;
    uint32_t floor = v->nprobe < 16 ? v->nprobe : 16;
    return v->nprobe / 32 > floor ? v->nprobe / 32 : floor ? floor : 1;
}

int rtr_vindex_search_few(const rtr_vindex *v, size_t nq, const float *q, uint32_t k, float *dist, int64_t *ids) {
    return search_shards(v, 0, rtr_vindex_few_nprobe(v), nq, q, k, dist, ids);
}

uint32_t rtr_vindex_batch_nprobe(const rtr_vindex *v) {
    if (!v->nlist) return 0;
    if (v->batch_nprobe) return v->batch_nprobe;
    uint32_t floor = v->nprobe < 64 ? v->nprobe : 64;   /* a small nprobe is cheap through the codes */
    return v->nprobe / 4 > floor ? v->nprobe / 4 : floor ? floor : 1;
}

int rtr_vindex_set_batch_nprobe(rtr_vindex *v, uint32_t nprobe) {
    if (!v->nlist) return nprobe ? rtr_seterr(RTR_E_INVALID, "nprobe applies to IVF indexes only") : RTR_OK;
    if (nprobe > v->nlist) return rtr_seterr(RTR_E_INVALID, "batch nprobe %u is more than the %u lists", nprobe, v->nlist);
    v->batch_nprobe = nprobe;
    if (v->codes) rtr_faiss_codes_set_nprobe(v->codes, rtr_vindex_batch_nprobe(v));
    return RTR_OK;
}

uint64_t rtr_vindex_batch_bytes(const rtr_vindex *v) { return codes_current(v) ? rtr_faiss_codes_bytes(v->codes) : 0; }

int rtr_vindex_batch_prepare(rtr_vindex *v) {
    if (!codes_current(v)) {
        rtr_faiss_codes_free(v->codes);
        v->codes = NULL;
        for (uint32_t s = 0; s < v->n_shards; s++)
            if (!v->shards[s]) goto done;   /* mapped flat shards: scanned through 4-bit codes already */
        char why[256];
        int made = rtr_faiss_codes_build(v->shards, v->n_shards, &v->codes, why, sizeof why);
        if (made < 0)
            return codes_err("batch codes", why);
        if (made) {
            memcpy(v->codes_gen, v->gen, v->n_shards * sizeof *v->gen);
            rtr_faiss_codes_set_nprobe(v->codes, rtr_vindex_batch_nprobe(v));
        }
    }
done:
    return RTR_OK;
}

int rtr_vindex_remove(rtr_vindex *v, const int64_t *ids, size_t n, uint64_t *removed) {
    RTR_ASSERT(!v->mapped && !v->read_only);
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
 * FAISS writes a shard (and sq4 its codes) through a stdio stream whose
 * every byte also goes through XXH64: the checksum costs no second pass
 * over the file. Reading verifies the checksum first (load_shard). */
typedef struct hashed_fd {
    int fd;
    XXH64_state_t st;
    uint64_t bytes;
    int err;   /* errno of a failed write */
} hashed_fd;

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

/* A write stream over fd hashing what passes; fclose does not close fd. */
static FILE *hashed_open(hashed_fd *h, int fd) {
    memset(h, 0, sizeof *h);
    h->fd = fd;
    XXH64_reset(&h->st, 0);
    cookie_io_functions_t io = {0};
    io.write = hashed_write;
    return fopencookie(h, "w", io);
}

/* XXH64 of the whole file fd (path for errors) into *sum, read from its start. RTR_E_IO. */
static int fd_xxh64(int fd, const char *path, uint64_t *sum) {
    XXH64_state_t st;
    XXH64_reset(&st, 0);
    uint8_t buf[1 << 16];
    for (off_t at = 0;;) {
        ssize_t r = pread(fd, buf, sizeof buf, at);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return rtr_seterr(RTR_E_IO, "%s: read failed: %s", path, strerror(errno));
        if (r == 0) break;
        XXH64_update(&st, buf, (size_t)r);
        at += r;
    }
    *sum = XXH64_digest(&st);
    return RTR_OK;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rtr_seterr(RTR_E_IO, "%s: cannot open to sync", path);
    int r = fsync(fd);
    close(fd);
    return r ? rtr_seterr(RTR_E_IO, "%s: fsync failed", path) : RTR_OK;
}

/* Writes one file of the index to dir/name (through name.tmp, synced, renamed) with write(ctx, f);
 * out gets its name, checksum and size. */
static int save_file(const char *dir, const char *name, int (*write)(const void *ctx, FILE *f), const void *ctx,
                     rtr_vindex_file *out) {
    char tmp[200];
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    char *tpath = rtr_path_join(dir, tmp), *path = rtr_path_join(dir, name);
    int fd = -1, rc = tpath && path ? RTR_OK : RTR_E_NOMEM;
    if (!rc && (fd = open(tpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        rc = rtr_seterr(RTR_E_IO, "%s: cannot create: %s", tpath, strerror(errno));
    hashed_fd h;
    FILE *f = rc ? NULL : hashed_open(&h, fd);
    if (!rc && !f) rc = rtr_seterr(RTR_E_NOMEM, "%s: stream", tpath);
    if (!rc && (rc = write(ctx, f))) rc = rtr_errprefix(rc, "%s", tpath);
    int unflushed = f && fclose(f);   /* the stream's last bytes reach the file here */
    if (f && h.err)   /* the cause behind whatever the writer made of it: a full disk, ... */
        rc = rtr_seterr(rtr_status_from_errno(h.err), "%s: write failed: %s", tpath, strerror(h.err));
    else if (!rc && unflushed) rc = rtr_seterr(RTR_E_IO, "%s: write failed", tpath);
    if (!rc && fsync(fd)) rc = rtr_seterr(RTR_E_IO, "%s: fsync failed", tpath);
    if (fd >= 0 && close(fd) && !rc) rc = rtr_seterr(RTR_E_IO, "%s: close failed", tpath);
    if (!rc && rename(tpath, path) != 0) rc = rtr_seterr(RTR_E_IO, "%s: rename failed", path);
    if (rc && fd >= 0) unlink(tpath);
    if (!rc) {
        out->xxh64 = XXH64_digest(&h.st);
        out->bytes = h.bytes;
        if (!(out->name = rtr_strdup(name))) rc = RTR_E_NOMEM;
    }
    rtr_free(tpath);
    rtr_free(path);
    return rc;
}

static int write_faiss(const void *ix, FILE *f) {
    return faiss_write_index((const FaissIndex *)ix, f) ? faiss_err("write") : RTR_OK;
}

typedef struct codes_ctx {
    const rtr_sq4 *sq;
    const idx_t *ids;
} codes_ctx;

static int write_codes(const void *ctx, FILE *f) {
    const codes_ctx *c = ctx;
    return rtr_sq4_write(c->sq, c->ids, f);
}

void rtr_vindex_file_names_free(rtr_vindex_file *files, uint32_t n) {
    for (uint32_t s = 0; files && s < n; s++) {
        rtr_free(files[s].name);
        files[s].name = NULL;
    }
}

int rtr_vindex_save(const rtr_vindex *v, const char *dir, const char *prefix, rtr_vindex_file *shards,
                    rtr_vindex_file *codes) {
    RTR_ASSERT(!v->mapped && !v->read_only);
    memset(shards, 0, v->n_shards * sizeof *shards);
    if (codes) memset(codes, 0, v->n_shards * sizeof *codes);
    int rc = rtr_mkdirs(dir);
    for (uint32_t s = 0; s < v->n_shards && !rc; s++) {
        char name[128];
        snprintf(name, sizeof name, "%s-%03u.faiss", prefix, s);
        rc = save_file(dir, name, write_faiss, v->shards[s], &shards[s]);
        /* a shard that searches go through 4-bit codes has them saved beside it, for searches to map */
        const float *xb;
        const idx_t *ids;
        size_t n;
        if (rc || !codes || !flat_arrays(v->shards[s], v->dim, &xb, &ids, &n)) continue;
        const rtr_sq4 *sq = shard_sq4(v, s, xb, n);
        if (!sq) continue;
        snprintf(name, sizeof name, "%s-%03u.sq4", prefix, s);
        rc = save_file(dir, name, write_codes, &(codes_ctx){sq, ids}, &codes[s]);
    }
    if (!rc) rc = fsync_path(dir);
    if (rc) {
        rtr_vindex_file_names_free(shards, v->n_shards);
        if (codes) rtr_vindex_file_names_free(codes, v->n_shards);
    }
    return rc;
}

/* --- shard files, opened now and read or mapped later ------------------------------------- */
/* One shard's files, open. */
typedef struct shard_files {
    int fd;               /* the FAISS file: readable even once a newer build has unlinked it */
    int code_fd;          /* its 4-bit codes, or -1 */
    uint64_t sum;         /* the FAISS file's XXH64 */
    uint64_t code_len;
    char *path, *code_path;   /* for errors; code_path NULL where there are no codes */
} shard_files;

struct rtr_vindex_files {
    uint32_t n;
    shard_files *sh;      /* (n) */
};

void rtr_vindex_files_close(rtr_vindex_files *f) {
    if (!f) return;
    for (uint32_t s = 0; s < f->n; s++) {
        if (f->sh[s].fd >= 0) close(f->sh[s].fd);
        if (f->sh[s].code_fd >= 0) close(f->sh[s].code_fd);
        rtr_free(f->sh[s].path);
        rtr_free(f->sh[s].code_path);
    }
    rtr_free(f->sh);
    rtr_free(f);
}

/* Opens dir/file->name into *fd, its size checked against the recorded one (0: not recorded). */
static int open_checked(const char *dir, const rtr_vindex_file *file, const char *what, char **path, int *fd,
                        uint64_t *len) {
    struct stat sb;
    if (!(*path = rtr_path_join(dir, file->name))) return RTR_E_NOMEM;
    if ((*fd = open(*path, O_RDONLY | O_CLOEXEC)) < 0)
        return errno == ENOENT ? rtr_seterr(RTR_E_CORRUPT, "%s: %s file missing", *path, what)
                               : rtr_seterr(RTR_E_IO, "%s: cannot open: %s", *path, strerror(errno));
    if (fstat(*fd, &sb)) return rtr_seterr(RTR_E_IO, "%s: cannot stat: %s", *path, strerror(errno));
    if ((uint64_t)sb.st_size > MAX_SHARD_FILE || (file->bytes && (uint64_t)sb.st_size != file->bytes))
        return rtr_seterr(RTR_E_CORRUPT, "%s: %lld bytes where the manifest records %llu: the %s file is truncated or replaced",
                          *path, (long long)sb.st_size, (unsigned long long)file->bytes, what);
    *len = (uint64_t)sb.st_size;
    return RTR_OK;
}

int rtr_vindex_files_open(const char *dir, uint32_t n_shards, const rtr_vindex_file *shards,
                          const rtr_vindex_file *codes, rtr_vindex_files **out) {
    *out = NULL;
    if (n_shards == 0 || n_shards > 1024) return rtr_seterr(RTR_E_CORRUPT, "%s: bad shard count %u", dir, n_shards);
    rtr_vindex_files *f = rtr_calloc(1, sizeof *f);
    if (!f || !(f->sh = rtr_calloc(n_shards, sizeof *f->sh))) {
        rtr_free(f);
        return RTR_E_NOMEM;
    }
    f->n = n_shards;
    for (uint32_t s = 0; s < n_shards; s++) f->sh[s].fd = f->sh[s].code_fd = -1;
    int rc = RTR_OK;
    for (uint32_t s = 0; s < n_shards && !rc; s++) {
        shard_files *h = &f->sh[s];
        uint64_t len;
        h->sum = shards[s].xxh64;
        rc = open_checked(dir, &shards[s], "index", &h->path, &h->fd, &len);
        if (!rc && codes && codes[s].name) rc = open_checked(dir, &codes[s], "codes", &h->code_path, &h->code_fd, &h->code_len);
    }
    if (rc) rtr_vindex_files_close(f);
    else *out = f;
    return rc;
}

/* FAISS reads h's file from its start through a stream of its own (fclose closes the dup'ed fd; a
 * mapping FAISS makes outlives it). */
static int read_faiss(const shard_files *h, int io_flags, FaissIndex **out) {
    int fd = dup(h->fd);
    FILE *fp = fd < 0 || lseek(fd, 0, SEEK_SET) != 0 ? NULL : fdopen(fd, "rb");
    if (!fp) {
        if (fd >= 0) close(fd);
        return rtr_seterr(RTR_E_IO, "%s: cannot read: %s", h->path, strerror(errno));
    }
    int rc = faiss_read_index(fp, io_flags, out) ? rtr_errprefix(faiss_err("read"), "%s", h->path) : RTR_OK;
    fclose(fp);
    return rc;
}

/* Reads shard s once its checksum is verified: FAISS never parses a damaged file (its reader, which
 * throws part way through one, is not exception-safe and would leak what it had built). */
static int load_shard(const rtr_vindex_files *f, uint32_t s, FaissIndex **out) {
    *out = NULL;
    const shard_files *h = &f->sh[s];
    uint64_t sum;
    int rc = fd_xxh64(h->fd, h->path, &sum);
    if (rc) return rc;
    if (sum != h->sum) return rtr_seterr(RTR_E_CORRUPT, "%s: checksum mismatch: the index file is corrupt or truncated", h->path);
    return read_faiss(h, 0, out);
}

/* The layout FAISS writes an IDMap over a flat L2 index in (index_write.cpp): "IxMp", a header, "IxF2",
 * a header, the vectors as a size_t count of floats and the floats, the ids as a size_t count and
 * int64s. A header: d (int32), ntotal (int64), two int64s, is_trained (1 byte), metric (int32). */
#define HDR 33
/* faiss/index_io.h's IO_FLAG_MMAP (IO_FLAG_SKIP_IVF_DATA | "do" << 16): lists mapped through
 * OnDiskInvertedLists. The C API's FAISS_IO_FLAG_MMAP (1) is not it in FAISS 1.7.3. */
#define IO_FLAG_MMAP (8 | 0x646f0000)
#define XB_OFF (4 + HDR + 4 + HDR + 8)

static int flat_header_ok(const uint8_t *h, uint32_t dim, uint64_t n) {
    int32_t d;
    int64_t nt;
    int32_t metric;
    for (int part = 0; part < 2; part++) {
        const uint8_t *p = h + part * (4 + HDR);
        if (memcmp(p, part ? "IxF2" : "IxMp", 4)) return 0;
        memcpy(&d, p + 4, 4);
        memcpy(&nt, p + 8, 8);
        memcpy(&metric, p + 4 + 29, 4);
        if (d != (int32_t)dim || nt != (int64_t)n || p[4 + 28] != 1 || metric != METRIC_L2) return 0;
    }
    uint64_t floats;
    memcpy(&floats, h + XB_OFF - 8, 8);
    return floats == n * dim;
}

/* Shard s mapped: its codes (of v->dim dimensions, or for shard 0 of theirs), and its FAISS file's
 * layout checked so that a read of vector i < n stays in the file and the ids that follow the vectors
 * are the codes'. */
static int map_shard(const rtr_vindex_files *f, uint32_t s, rtr_vindex *v) {
    const int64_t *ids;
    rtr_sq4 *sq;
    int rc = rtr_sq4_map(f->sh[s].code_fd, f->sh[s].code_len, f->sh[s].code_path, s ? v->dim : 0, &sq, &ids);
    if (rc) return rc;
    uint32_t dim = rtr_sq4_dim(sq);
    uint64_t n = rtr_sq4_n(sq), ids_off = XB_OFF + n * dim * 4ull, n_ids = 0;
    uint8_t h[XB_OFF];
    struct stat sb;
    if (pread(f->sh[s].fd, h, sizeof h, 0) != (ssize_t)sizeof h || pread(f->sh[s].fd, &n_ids, 8, (off_t)ids_off) != 8 ||
        fstat(f->sh[s].fd, &sb))
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: too short for its %llu vectors", f->sh[s].path, (unsigned long long)n);
    else if (!flat_header_ok(h, dim, n) || n_ids != n || (uint64_t)sb.st_size != ids_off + 8 + n * 8)
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: not the flat index of %llu vectors of dimension %u that %s describes",
                        f->sh[s].path, (unsigned long long)n, dim, f->sh[s].code_path);
    int fd = rc ? -1 : dup(f->sh[s].fd);   /* its own: f may be closed first */
    if (!rc && fd < 0) rc = rtr_seterr(RTR_E_IO, "%s: %s", f->sh[s].path, strerror(errno));
    if (rc) {
        rtr_sq4_free(sq);
        return rc;
    }
    v->sq[s] = sq;
    v->mapped[s] = (mapped_shard){.ids = ids, .fd = fd, .xb_off = XB_OFF};
    return RTR_OK;
}

/* An inverted file of full vectors ("IVFn,Flat") as FAISS writes it (index_write.cpp): "IwFl", a
 * header (HDR), nlist and nprobe (size_t), its quantizer ("IxF2", a header, the centroids as a size_t
 * count of floats and the floats), a direct map (a type byte, a size_t count of int64s), then "ilar",
 * nlist, code_size (size_t), "full" and the list sizes or "sprs" and (list, size) pairs (a size_t
 * count of size_ts), then each list's codes and ids. FAISS maps the lists of such a file without
 * checking that they stay inside it: ivf_flat_layout walks the whole layout first, so that a
 * mapped search never reads past the file, whatever bytes it holds. 1: consistent (*dim set); 0:
 * another kind of index (read whole instead); RTR_E_CORRUPT. */
static int ivf_flat_layout(int fd, const char *path, uint32_t *dim) {
    struct stat sb;
    uint8_t h[4 + HDR + 16 + 4 + HDR + 8];
    if (fstat(fd, &sb) || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h, "IwFl", 4)) return 0;
    uint64_t size = (uint64_t)sb.st_size, off = sizeof h;
    int32_t d, qd, metric, qmetric;
    int64_t nt, qnt;
    uint64_t nlist, floats, u[3];
    memcpy(&d, h + 4, 4);
    memcpy(&nt, h + 8, 8);
    memcpy(&metric, h + 4 + 29, 4);
    memcpy(&nlist, h + 4 + HDR, 8);
    memcpy(&qd, h + 4 + HDR + 16 + 4, 4);
    memcpy(&qnt, h + 4 + HDR + 16 + 8, 8);
    memcpy(&qmetric, h + 4 + HDR + 16 + 4 + 29, 4);
    memcpy(&floats, h + sizeof h - 8, 8);
#define BAD(why) rtr_seterr(RTR_E_CORRUPT, "%s: not a consistent inverted file (%s)", path, why)
    if (d < 1 || d > 65536 || metric != METRIC_L2 || h[4 + 28] != 1 || nt < 0) return BAD("header");
    uint64_t code = 4ull * (uint64_t)d, n = (uint64_t)nt;
    if (n > size / (code + 8) || nlist < 1 || nlist > (1u << 20) || memcmp(h + 4 + HDR + 16, "IxF2", 4) || qd != d ||
        qnt != (int64_t)nlist || qmetric != METRIC_L2 || h[4 + HDR + 16 + 4 + 28] != 1 || floats != nlist * (uint64_t)d ||
        floats > size / 4)
        return BAD("quantizer");
    off += floats * 4;
    uint8_t dm[9];   /* the direct map: none kept */
    uint64_t dm_n;
    if (pread(fd, dm, 9, (off_t)off) != 9 || (memcpy(&dm_n, dm + 1, 8), dm[0] != 0 || dm_n != 0)) return BAD("direct map");
    off += 9;
    uint8_t il[4 + 16 + 4 + 8];
    if (pread(fd, il, sizeof il, (off_t)off) != (ssize_t)sizeof il || memcmp(il, "ilar", 4)) return BAD("lists");
    memcpy(u, il + 4, 16);
    int full = !memcmp(il + 20, "full", 4);
    memcpy(&u[2], il + 24, 8);
    if (u[0] != nlist || u[1] != code || (!full && memcmp(il + 20, "sprs", 4)) ||
        (full ? u[2] != nlist : u[2] % 2 || u[2] > 2 * nlist))
        return BAD("list sizes");
    off += sizeof il;
    uint64_t m = u[2], *v = m ? rtr_malloc(m * 8) : NULL, sum = 0, prev = 0;
    int ok = !m || v;
    if (ok && m) ok = pread(fd, v, m * 8, (off_t)off) == (ssize_t)(m * 8);
    for (uint64_t i = 0; ok && i < m; i++) {
        if (!full && i % 2 == 0) {   /* sparse: a list number, increasing, below nlist ... */
            ok = v[i] < nlist && (i == 0 || v[i] > prev);
            prev = v[i];
            continue;
        }
        ok = (full || v[i] > 0) && v[i] <= n - sum;   /* ... then its size, never 0 */
        sum += v[i];
    }
    rtr_free(v);
    off += m * 8;
    if (!ok || sum != n || off + n * (code + 8) != size) return BAD("lists do not fill the file");
#undef BAD
    *dim = (uint32_t)d;
    return 1;
}

/* Shard s, an inverted file of full vectors, read with its lists mapped (checked first, not
 * checksummed: `retro index check` does that). */
static int map_ivf_shard(const rtr_vindex_files *f, uint32_t s, FaissIndex **out) {
    *out = NULL;
    int rc = read_faiss(&f->sh[s], IO_FLAG_MMAP, out);
    if (!rc) rtr_faiss_mapped_no_prefetch(*out);   /* index/faiss_ext.h */
    return rc;
}

/* The index of f's shards, each loaded, or mapped (map and shard s has codes). */
static int files_open_index(const rtr_vindex_files *f, uint32_t nprobe, const char *factory, int map,
                            rtr_vindex **out) {
    *out = NULL;
    rtr_vindex *v = alloc_vindex(f->n, 0, factory, nprobe);
    if (!v) return RTR_E_NOMEM;
    int rc = RTR_OK, any = 0;
    for (uint32_t s = 0; s < f->n && map; s++) any |= f->sh[s].code_fd >= 0;
    if (any && !(v->mapped = rtr_malloc(f->n * sizeof *v->mapped))) rc = RTR_E_NOMEM;
    for (uint32_t s = 0; v->mapped && s < f->n; s++) v->mapped[s].fd = -1;
    /* the dimension is shard 0's (a mapped one's, its codes'); the others must have it */
    for (uint32_t s = 0; s < f->n && !rc; s++) {
        uint32_t d;
        if (v->mapped && f->sh[s].code_fd >= 0) {
            if ((rc = map_shard(f, s, v))) break;
            d = rtr_sq4_dim(v->sq[s]);
        } else {
            uint32_t ivf_dim = 0;
            int layout = map ? ivf_flat_layout(f->sh[s].fd, f->sh[s].path, &ivf_dim) : 0;
            if (layout < 0) rc = layout;
            else if (layout == 1 && !(rc = map_ivf_shard(f, s, &v->shards[s]))) v->read_only = 1;
            else if (layout == 0) rc = load_shard(f, s, &v->shards[s]);
            if (rc) break;
            d = (uint32_t)faiss_Index_d(v->shards[s]);
            if (!rc && v->nlist) rc = set_nprobe_one(v->shards[s], nprobe);
        }
        if (s == 0) v->dim = d;
        else if (!rc && d != v->dim) rc = rtr_seterr(RTR_E_CORRUPT, "%s: dimension %u, shard 0 has %u", f->sh[s].path, d, v->dim);
    }
    if (rc) {
        rtr_vindex_free(v);
        return rc;
    }
    *out = v;
    return RTR_OK;
}

int rtr_vindex_files_load(const rtr_vindex_files *f, uint32_t nprobe, const char *factory, rtr_vindex **out) {
    return files_open_index(f, nprobe, factory, 0, out);
}

int rtr_vindex_files_map(const rtr_vindex_files *f, uint32_t nprobe, const char *factory, rtr_vindex **out) {
    return files_open_index(f, nprobe, factory, 1, out);
}

int rtr_vindex_files_codes_sum(const rtr_vindex_files *f, uint32_t s, uint64_t *sum) {
    *sum = 0;
    RTR_ASSERT(s < f->n);
    return f->sh[s].code_fd < 0 ? RTR_OK : fd_xxh64(f->sh[s].code_fd, f->sh[s].code_path, sum);
}

int rtr_vindex_ids(const rtr_vindex *v, uint32_t shard, int64_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    RTR_ASSERT(shard < v->n_shards);
    if (is_mapped(v, shard)) {
        size_t n_ids = rtr_sq4_n(v->sq[shard]);
        int64_t *copy = rtr_malloc((n_ids ? n_ids : 1) * sizeof *copy);
        if (!copy) return RTR_E_NOMEM;
        memcpy(copy, v->mapped[shard].ids, n_ids * sizeof *copy);
        *ids = copy;
        *n = n_ids;
        return RTR_OK;
    }
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
