/* test_vindex.c - the sharded FAISS index: exact search equals brute force
 * (one shard and several), IVF recall, plans, save/load with checksums,
 * corrupt files, removal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "index/embed.h"
#include "index/vindex.h"
#include "lib/alloc.h"
#include "lib/status.h"
#include "testutil.h"

static uint64_t g_seed = 12345;
static float frand(void) {
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_seed >> 40) & 0xFFFFFF) / (float)0x1000000 - 0.5f;
}

/* Clustered unit vectors: n points around c centres. */
static float *clustered(size_t n, uint32_t d, size_t c) {
    float *cent = malloc(c * d * sizeof *cent), *x = malloc(n * d * sizeof *x);
    for (size_t i = 0; i < c * d; i++) cent[i] = frand();
    for (size_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < d; j++) x[i * d + j] = cent[(i % c) * d + j] + 0.15f * frand();
    rtr_l2_normalize(x, n, d);
    free(cent);
    return x;
}

/* Brute-force top-k (ties broken by the smaller id, as the merge does not
 * promise; the test data has no ties). */
static void brute(const float *x, const int64_t *ids, size_t n, uint32_t d, const float *q, uint32_t k, int64_t *out,
                  float *od) {
    for (uint32_t r = 0; r < k; r++) {
        out[r] = -1;
        od[r] = INFINITY;
    }
    for (size_t i = 0; i < n; i++) {
        float s = 0;
        for (uint32_t j = 0; j < d; j++) {
            float t = q[j] - x[i * d + j];
            s += t * t;
        }
        for (uint32_t r = 0; r < k; r++)
            if (s < od[r]) {
                for (uint32_t m = k - 1; m > r; m--) { od[m] = od[m - 1]; out[m] = out[m - 1]; }
                od[r] = s;
                out[r] = ids[i];
                break;
            }
    }
}

static void test_exact_equals_brute_force_sharded(void **state) {
    (void)state;
    const uint32_t d = 32, k = 10;
    const size_t n = 3000, nq = 50;
    float *x = clustered(n, d, 40), *q = clustered(nq, d, 40);
    int64_t *ids = malloc(n * sizeof *ids);
    uint32_t *shard = malloc(n * sizeof *shard);
    for (size_t i = 0; i < n; i++) {
        ids[i] = (int64_t)(1000 + 7 * i);   /* ids are not positions */
        shard[i] = (uint32_t)(i % 3);
    }
    for (uint32_t S = 1; S <= 3; S += 2) {
        rtr_vindex_plan p;
        assert_int_equal(rtr_vindex_plan_auto(n, d, 0, 1, &p), RTR_OK);
        assert_string_equal(p.factory, "IDMap,Flat");
        rtr_vindex *v;
        assert_int_equal(rtr_vindex_create(&p, d, S, NULL, 0, &v), RTR_OK);
        if (S == 1) for (size_t i = 0; i < n; i++) shard[i] = 0;
        else for (size_t i = 0; i < n; i++) shard[i] = (uint32_t)(i % 3);
        assert_int_equal(rtr_vindex_add(v, n, x, ids, shard), RTR_OK);
        assert_int_equal(rtr_vindex_ntotal(v), n);
        float *dist = malloc(nq * k * sizeof *dist), bd[10];
        int64_t *got = malloc(nq * k * sizeof *got), want[10];
        /* all 50 queries at once (FAISS's BLAS path), in batches of 5 and one by one
         * (retro's own scan of flat shards) */
        const size_t batch[] = {nq, 5, 1};
        for (int bi = 0; bi < 3; bi++) {
            for (size_t lo = 0; lo < nq; lo += batch[bi])
                assert_int_equal(rtr_vindex_search(v, batch[bi], q + lo * d, k, dist + lo * k, got + lo * k), RTR_OK);
            for (size_t i = 0; i < nq; i++) {
                brute(x, ids, n, d, q + i * d, k, want, bd);
                for (uint32_t r = 0; r < k; r++) {
                    assert_int_equal(got[i * k + r], want[r]);
                    assert_float_equal(dist[i * k + r], bd[r], 1e-4);
                }
            }
        }
        /* more results than vectors: the rest are empty */
        uint32_t big = 5000;
        float *bdist = malloc(big * sizeof *bdist);
        int64_t *bids = malloc(big * sizeof *bids);
        assert_int_equal(rtr_vindex_search(v, 1, q, big, bdist, bids), RTR_OK);
        for (uint32_t r = 0; r < big; r++) assert_true(r < n ? bids[r] >= 1000 : bids[r] == -1);
        for (uint32_t r = 1; r < n; r++) assert_true(bdist[r - 1] <= bdist[r]);
        free(bdist);
        free(bids);
        free(dist);
        free(got);
        rtr_vindex_free(v);
    }
    free(x);
    free(q);
    free(ids);
    free(shard);
}

static void test_plans(void **state) {
    (void)state;
    rtr_vindex_plan p;
    assert_int_equal(rtr_vindex_plan_auto(1000000, 256, 0, 1, &p), RTR_OK);
    assert_string_equal(p.factory, "IVF4096,Flat");
    assert_int_equal(p.nprobe, 8);    /* (6144 - 4096) * 4096 / 1M */
    /* two shards: the 4-bit codes (128 MB) fit two shards' scan budget */
    assert_int_equal(rtr_vindex_plan_auto(1000000, 256, 0, 2, &p), RTR_OK);
    assert_string_equal(p.factory, "IDMap,Flat");
    assert_int_equal(rtr_vindex_plan_auto(138529, 256, 0, 1, &p), RTR_OK);
    assert_string_equal(p.factory, "IDMap,Flat");
    /* ... unless the budget cannot hold full vectors and codes */
    assert_int_equal(rtr_vindex_plan_auto(1000000, 256, 1100ull << 20, 2, &p), RTR_OK);
    assert_string_equal(p.factory, "IVF4096,Flat");
    assert_int_equal(p.nprobe, 16);   /* two shards: twice the lists in the same time */
    assert_int_equal(rtr_vindex_plan_auto(138529, 256, 150ull << 20, 1, &p), RTR_OK);
    assert_string_equal(p.factory, "IVF1024,Flat");
    assert_int_equal(p.nprobe, 37);   /* a smaller collection: more probes */
    assert_true(p.train_n >= 30ull * p.nlist && p.train_n <= 256ull * p.nlist);
    /* a budget too small for full vectors: 8-bit codes, then PQ */
    assert_int_equal(rtr_vindex_plan_auto(1000000, 256, 500ull << 20, 1, &p), RTR_OK);
    assert_string_equal(p.factory, "IVF4096,SQ8");
    assert_int_equal(rtr_vindex_plan_auto(1000000, 256, 60ull << 20, 1, &p), RTR_OK);
    assert_string_equal(p.factory, "IVF4096,PQ32");
    assert_int_equal(rtr_vindex_plan_auto(1000000, 256, 1 << 20, 1, &p), RTR_E_INVALID);
    /* a projected space (at most 64 dimensions): a sixteenth of the lists, whatever the size */
    assert_int_equal(rtr_vindex_plan_auto(16488524, 32, 0, 2, &p), RTR_OK);
    assert_string_equal(p.factory, "IVF16384,Flat");
    assert_int_equal(p.nprobe, 1024);
    assert_int_equal(rtr_vindex_plan_factory("IVF64,Flat", 72000, 64, 1, &p), RTR_OK);
    assert_int_equal(p.nprobe, 8);
    assert_int_equal(rtr_vindex_plan_auto(12000000, 32, 0, 2, &p), RTR_OK);   /* 4-bit codes of 16 bytes fit */
    assert_string_equal(p.factory, "IDMap,Flat");
    assert_int_equal(rtr_vindex_plan_factory("Flat", 10, 8, 1, &p), RTR_OK);
    assert_string_equal(p.factory, "IDMap,Flat");
    assert_int_equal(rtr_vindex_plan_factory("IVF64,Flat", 100000, 8, 1, &p), RTR_OK);
    assert_int_equal(p.nlist, 64);
    assert_int_equal(p.train_n, 64 * 40);
}

/* How many of the k results got (nq x k) of each query are among its brute-force k nearest. */
static size_t count_hits(const int64_t *got, const float *x, const int64_t *ids, size_t n, uint32_t d, const float *q,
                         size_t nq, uint32_t k) {
    float bd[16];
    int64_t want[16];
    assert_true(k <= 16);
    size_t hit = 0;
    for (size_t i = 0; i < nq; i++) {
        brute(x, ids, n, d, q + i * d, k, want, bd);
        for (uint32_t a = 0; a < k; a++)
            for (uint32_t b = 0; b < k; b++) hit += got[i * k + a] == want[b];
    }
    return hit;
}

/* The same for v's search of the queries. */
static size_t search_hits(const rtr_vindex *v, const float *x, const int64_t *ids, size_t n, uint32_t d, const float *q,
                          size_t nq, uint32_t k) {
    float *dist = malloc(nq * k * sizeof *dist);
    int64_t *got = malloc(nq * k * sizeof *got);
    assert_int_equal(rtr_vindex_search(v, nq, q, k, dist, got), RTR_OK);
    size_t hit = count_hits(got, x, ids, n, d, q, nq, k);
    free(dist);
    free(got);
    return hit;
}

/* Recall@k of v against brute force over perturbed copies of stored vectors. */
static double sq4_recall(const rtr_vindex *v, const float *x, const int64_t *ids, size_t n, uint32_t d,
                         const float *q, size_t nq, uint32_t k) {
    return (double)search_hits(v, x, ids, n, d, q, nq, k) / (double)(nq * k);
}

/* Flat shards searched through their 4-bit codes: with every vector re-ranked
 * the result is exact; with 128 candidates recall stays high, with only k it
 * drops (the re-ranking is real); codes follow adds and removals. Dimensions:
 * whole 64-blocks and half blocks (the AVX2 kernel in native builds), even, and odd. */
static void test_sq4_rerank(void **state) {
    (void)state;
    const uint32_t dims[] = {128, 96, 32, 100, 37}, k = 10;
    const size_t n = 4000, nq = 40;
    for (int di = 0; di < 5; di++) {
        uint32_t d = dims[di];
        float *x = malloc((n + nq) * d * sizeof *x), *q = malloc(nq * d * sizeof *q);
        for (size_t i = 0; i < (n + nq) * d; i++) x[i] = frand();
        rtr_l2_normalize(x, n + nq, d);
        for (size_t i = 0; i < nq; i++)   /* a stored vector, perturbed */
            for (uint32_t j = 0; j < d; j++) q[i * d + j] = x[(i * 97) * d + j] + 0.02f * frand();
        rtr_l2_normalize(q, nq, d);
        int64_t *ids = malloc((n + nq) * sizeof *ids);
        uint32_t *shard = malloc((n + nq) * sizeof *shard);
        for (size_t i = 0; i < n + nq; i++) {
            ids[i] = (int64_t)(5 + 3 * i);
            shard[i] = (uint32_t)(i % 2);
        }
        rtr_vindex_plan p;
        assert_int_equal(rtr_vindex_plan_factory("Flat", n, d, 2, &p), RTR_OK);
        rtr_vindex *v;
        assert_int_equal(rtr_vindex_create(&p, d, 2, NULL, 0, &v), RTR_OK);
        assert_int_equal(rtr_vindex_add(v, n, x, ids, shard), RTR_OK);
        assert_int_equal(rtr_vindex_rerank(v), -1);
        assert_int_equal(rtr_vindex_set_rerank(v, RTR_VINDEX_MAX_RERANK + 1), RTR_E_INVALID);
        /* every vector a candidate: exactly brute force, one query at a time and in a batch */
        assert_int_equal(rtr_vindex_set_param(v, "rerank", RTR_VINDEX_MAX_RERANK), RTR_OK);
        float dist[40 * 10], bd[10];
        int64_t got[40 * 10], want[10];
        assert_int_equal(rtr_vindex_search(v, nq, q, k, dist, got), RTR_OK);
        for (size_t i = 0; i < nq; i++) {
            brute(x, ids, n, d, q + i * d, k, want, bd);
            for (uint32_t r = 0; r < k; r++) {
                assert_int_equal(got[i * k + r], want[r]);
                assert_float_equal(dist[i * k + r], bd[r], 1e-4);
            }
        }
        assert_int_equal(rtr_vindex_set_rerank(v, 128), RTR_OK);
        double r128 = sq4_recall(v, x, ids, n, d, q, nq, k);
        assert_int_equal(rtr_vindex_set_rerank(v, (int)k), RTR_OK);
        double r10 = sq4_recall(v, x, ids, n, d, q, nq, k);
        assert_int_equal(rtr_vindex_set_rerank(v, 0), RTR_OK);
        double exact = sq4_recall(v, x, ids, n, d, q, nq, k);
        print_message("dim %u: recall@10 %.3f with 128 candidates, %.3f with 10, %.3f exact\n", d, r128, r10, exact);
        assert_true(exact == 1.0);
        assert_true(r128 >= 0.95);
        assert_true(r10 < r128);
        /* added vectors are found (the codes are rebuilt), removed ones never */
        assert_int_equal(rtr_vindex_set_rerank(v, 128), RTR_OK);
        assert_int_equal(rtr_vindex_add(v, nq, x + n * d, ids + n, shard + n), RTR_OK);
        assert_int_equal(rtr_vindex_search(v, nq, x + n * d, 1, dist, got), RTR_OK);
        for (size_t i = 0; i < nq; i++) assert_int_equal(got[i], ids[n + i]);
        uint64_t removed;
        assert_int_equal(rtr_vindex_remove(v, ids + n, nq, &removed), RTR_OK);
        assert_int_equal(removed, nq);
        assert_int_equal(rtr_vindex_search(v, nq, x + n * d, k, dist, got), RTR_OK);
        for (size_t i = 0; i < nq * k; i++) assert_true(got[i] >= 0 && got[i] < ids[n]);
        rtr_vindex_free(v);
        free(x);
        free(q);
        free(ids);
        free(shard);
    }
}

static void test_ivf_recall_and_bad_factory(void **state) {
    (void)state;
    const uint32_t d = 32, k = 10;
    const size_t n = 20000, nq = 100;
    float *x = clustered(n, d, 200), *q = clustered(nq, d, 200);
    int64_t *ids = malloc(n * sizeof *ids);
    uint32_t *shard = calloc(n, sizeof *shard);
    for (size_t i = 0; i < n; i++) ids[i] = (int64_t)i + 1;
    rtr_vindex_plan p;
    assert_int_equal(rtr_vindex_plan_factory("IVF128,Flat", n, d, 1, &p), RTR_OK);
    rtr_vindex *v;
    assert_int_equal(rtr_vindex_create(&p, d, 1, x, p.train_n, &v), RTR_OK);
    assert_int_equal(rtr_vindex_add(v, n, x, ids, shard), RTR_OK);
    assert_int_equal(rtr_vindex_set_nprobe(v, 32), RTR_OK);
    size_t hit = search_hits(v, x, ids, n, d, q, nq, k);
    double recall = (double)hit / (double)(nq * k);
    print_message("recall@10 %.3f\n", recall);
    assert_true(recall >= 0.95);
    /* nprobe 1 must do worse: the parameter reaches FAISS */
    assert_int_equal(rtr_vindex_set_nprobe(v, 1), RTR_OK);
    assert_true(search_hits(v, x, ids, n, d, q, nq, k) < hit);
    /* a search of few lists: nprobe / 32, at least 16 (or nprobe), exactly the search with that nprobe */
    float *d1 = malloc(nq * k * sizeof *d1), *d2 = malloc(nq * k * sizeof *d2);
    int64_t *i1 = malloc(nq * k * sizeof *i1), *i2 = malloc(nq * k * sizeof *i2);
    static const uint32_t probes[][2] = {{128, 16}, {8, 8}, {1, 1}, {32, 16}};
    for (size_t c = 0; c < 4; c++) {
        assert_int_equal(rtr_vindex_set_nprobe(v, probes[c][0]), RTR_OK);
        assert_int_equal(rtr_vindex_few_nprobe(v), probes[c][1]);
        assert_int_equal(rtr_vindex_search_few(v, nq, q, k, d1, i1), RTR_OK);
        assert_int_equal(rtr_vindex_search(v, nq, q, k, d2, i2), RTR_OK);
        size_t same = 0;
        for (size_t i = 0; i < nq * k; i++) same += i1[i] == i2[i];
        assert_int_equal(rtr_vindex_set_nprobe(v, probes[c][1]), RTR_OK);
        assert_int_equal(rtr_vindex_search(v, nq, q, k, d2, i2), RTR_OK);
        assert_memory_equal(i1, i2, nq * k * sizeof *i1);
        assert_memory_equal(d1, d2, nq * k * sizeof *d1);
        if (probes[c][0] == 128) assert_true(same < nq * k);   /* 16 lists of 128 find other neighbours than all */
    }
    free(d1); free(d2); free(i1); free(i2);
    rtr_vindex_free(v);
    /* untrained IVF without vectors, and nonsense */
    assert_int_equal(rtr_vindex_create(&p, d, 1, NULL, 0, &v), RTR_E_INVALID);
    rtr_vindex_plan bad = {.factory = "NoSuchThing"};
    assert_int_equal(rtr_vindex_create(&bad, d, 1, NULL, 0, &v), RTR_E_FAISS);
    assert_non_null(strstr(rtr_errdetail(), "NoSuchThing"));
    free(x); free(q); free(ids); free(shard);
}

/* The index in dir's files, loaded (or mapped) as a knowledge base opens them. */
static int open_files(const char *dir, const rtr_vindex_file *files, const rtr_vindex_file *codes, uint32_t n, int map,
                      rtr_vindex **out) {
    rtr_vindex_files *f;
    *out = NULL;
    int rc = rtr_vindex_files_open(dir, n, files, codes, &f);
    if (!rc) rc = map ? rtr_vindex_files_map(f, 0, "IDMap,Flat", out) : rtr_vindex_files_load(f, 0, "IDMap,Flat", out);
    rtr_vindex_files_close(f);   /* the index keeps what it needs */
    return rc;
}

static int load(const char *dir, const rtr_vindex_file *files, rtr_vindex **out) {
    return open_files(dir, files, NULL, 2, 0, out);
}

/* A shard large enough to be scanned through 4-bit codes has them saved beside it; the index mapped
 * from the files (codes and ids mapped, exact vectors read from the FAISS file) searches exactly as
 * the loaded one, approximate and exact; codes that do not match the shard are refused. */
static void test_mapped_equals_loaded(void **state) {
    (void)state;
    const uint32_t d = 64, k = 10;
    const size_t n = 70000, nq = 30;
    float *x = clustered(n, d, 700), *q = clustered(nq, d, 700);
    int64_t *ids = malloc(n * sizeof *ids);
    uint32_t *shard = malloc(n * sizeof *shard);
    for (size_t i = 0; i < n; i++) {
        ids[i] = (int64_t)(3 * i + 7);
        shard[i] = i < 1000 ? 1 : 0;   /* shard 1 small: loaded even in a mapped index */
    }
    rtr_vindex_plan p;
    assert_int_equal(rtr_vindex_plan_factory("IDMap,Flat", n, d, 2, &p), RTR_OK);
    rtr_vindex *v, *w, *m;
    assert_int_equal(rtr_vindex_create(&p, d, 2, NULL, 0, &v), RTR_OK);
    assert_int_equal(rtr_vindex_add(v, n, x, ids, shard), RTR_OK);
    char *dir = tu_tmpdir("vindex_map");
    rtr_vindex_file files[2], codes[2];
    assert_int_equal(rtr_vindex_save(v, dir, "g4", files, codes), RTR_OK);
    assert_string_equal(codes[0].name, "g4-000.sq4");
    assert_null(codes[1].name);
    assert_int_equal(open_files(dir, files, codes, 2, 0, &w), RTR_OK);
    assert_int_equal(open_files(dir, files, codes, 2, 1, &m), RTR_OK);
    assert_int_equal(rtr_vindex_ntotal(m), n);
    assert_int_equal(rtr_vindex_dim(m), d);
    int64_t *li, *mi;
    size_t ln, mn;
    assert_int_equal(rtr_vindex_ids(w, 0, &li, &ln), RTR_OK);
    assert_int_equal(rtr_vindex_ids(m, 0, &mi, &mn), RTR_OK);
    assert_int_equal(ln, mn);
    assert_memory_equal(li, mi, ln * sizeof *li);
    rtr_free(li);
    rtr_free(mi);
    float dw[30 * 10], dm[30 * 10], bd[10];
    int64_t iw[30 * 10], im[30 * 10], want[10];
    /* the default scan of codes, then an exact search; then the codes again, by then copied into memory
     * by a thread of the index's own (after a few searches) while the searches went on over the map */
    for (int round = 0; round < 3; round++) {
        int rerank = round == 1 ? 0 : -1;
        for (int i = 0; round == 2 && i < 12; i++) assert_int_equal(rtr_vindex_search(m, 1, q + i * d, k, dm, im), RTR_OK);
        assert_int_equal(rtr_vindex_set_rerank(w, rerank), RTR_OK);
        assert_int_equal(rtr_vindex_set_rerank(m, rerank), RTR_OK);
        assert_int_equal(rtr_vindex_search(w, nq, q, k, dw, iw), RTR_OK);
        assert_int_equal(rtr_vindex_search(m, nq, q, k, dm, im), RTR_OK);
        assert_memory_equal(iw, im, sizeof iw);
        for (size_t i = 0; i < nq * k; i++) assert_float_equal(dw[i], dm[i], 1e-6);
        for (size_t i = 0; round == 1 && i < nq; i++) {   /* exact: the brute force's */
            brute(x, ids, n, d, q + i * d, k, want, bd);
            for (uint32_t r = 0; r < k; r++) assert_float_equal(dm[i * k + r], bd[r], 1e-4);
        }
    }
    rtr_vindex_free(m);
    /* codes that are not this shard's: another length, another dimension */
    char *cp = rtr_path_join(dir, codes[0].name);
    uint8_t *buf;
    size_t len;
    assert_int_equal(rtr_read_file(cp, (size_t)1 << 30, &buf, &len), RTR_OK);
    rtr_vindex_file unsized[2] = {{codes[0].name, codes[0].xxh64, 0}, {NULL, 0, 0}};
    tu_write(dir, codes[0].name, buf, len - 1);
    assert_int_equal(open_files(dir, files, unsized, 2, 1, &m), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), codes[0].name));
    buf[8] ^= 1;   /* dimension 65 */
    tu_write(dir, codes[0].name, buf, len);
    assert_int_equal(open_files(dir, files, unsized, 2, 1, &m), RTR_E_CORRUPT);
    buf[8] ^= 1;
    buf[16] ^= 1;   /* one vector fewer: the length and the FAISS file disagree */
    tu_write(dir, codes[0].name, buf, len);
    assert_int_equal(open_files(dir, files, unsized, 2, 1, &m), RTR_E_CORRUPT);
    rtr_free(buf);
    rtr_free(cp);
    rtr_vindex_free(w);
    rtr_vindex_free(v);
    rtr_vindex_file_names_free(files, 2);
    rtr_vindex_file_names_free(codes, 2);
    rtr_rmtree(dir);
    free(dir); free(x); free(q); free(ids); free(shard);
}

static int open_ivf(const char *dir, const rtr_vindex_file *files, int map, const char *factory, rtr_vindex **out) {
    rtr_vindex_files *f;
    *out = NULL;
    int rc = rtr_vindex_files_open(dir, 2, files, NULL, &f);
    if (!rc) rc = map ? rtr_vindex_files_map(f, 4, factory, out) : rtr_vindex_files_load(f, 4, factory, out);
    rtr_vindex_files_close(f);
    return rc;
}

/* Inverted files of full vectors are searched with their lists mapped from the files (FAISS's
 * OnDiskInvertedLists), with the results of the loaded index; the layout is walked first, so that any
 * byte of the header, the quantizer or the list table changed, or the file cut short, gets an error
 * or a search that stays inside the file (the sanitizer build checks it), never a read past its end.
 * Full and sparse list tables (most lists empty). */
static void test_ivf_mapped(void **state) {
    (void)state;
    const uint32_t d = 16, k = 5;
    const char *factories[] = {"IVF32,Flat", "IVF256,Flat"};
    const size_t sizes[] = {3000, 300};
    for (int fi = 0; fi < 2; fi++) {
        size_t n = sizes[fi], nq = 20;
        float *x = clustered(n, d, 40), *q = clustered(nq, d, 40);
        int64_t *ids = malloc(n * sizeof *ids);
        uint32_t *shard = malloc(n * sizeof *shard);
        for (size_t i = 0; i < n; i++) { ids[i] = (int64_t)(2 * i + 1); shard[i] = (uint32_t)(i % 2); }
        rtr_vindex_plan p;
        assert_int_equal(rtr_vindex_plan_factory(factories[fi], n, d, 2, &p), RTR_OK);
        rtr_vindex *v, *w, *m;
        assert_int_equal(rtr_vindex_create(&p, d, 2, x, n, &v), RTR_OK);
        assert_int_equal(rtr_vindex_add(v, fi ? 40 : n, x, ids, shard), RTR_OK);   /* the second: most lists empty */
        char *dir = tu_tmpdir("vindex_ivfmap");
        rtr_vindex_file files[2];
        assert_int_equal(rtr_vindex_save(v, dir, "g2", files, NULL), RTR_OK);
        assert_int_equal(open_ivf(dir, files, 0, factories[fi], &w), RTR_OK);
        assert_int_equal(open_ivf(dir, files, 1, factories[fi], &m), RTR_OK);
        assert_int_equal(rtr_vindex_ntotal(m), rtr_vindex_ntotal(w));
        assert_int_equal(rtr_vindex_nprobe(m), 4);
        float dw[20 * 5], dm[20 * 5];
        int64_t iw[20 * 5], im[20 * 5];
        assert_int_equal(rtr_vindex_search(w, nq, q, k, dw, iw), RTR_OK);
        assert_int_equal(rtr_vindex_search(m, nq, q, k, dm, im), RTR_OK);
        assert_memory_equal(iw, im, sizeof iw);
        assert_memory_equal(dw, dm, sizeof dw);
        assert_int_equal(rtr_vindex_set_nprobe(m, 32), RTR_OK);   /* tuned like a loaded one */
        assert_int_equal(rtr_vindex_search(m, nq, q, k, dm, im), RTR_OK);
        rtr_vindex_free(m);
        /* every byte up to the lists' data and a little into it, changed; the file cut at many points */
        char *path = rtr_path_join(dir, files[0].name);
        uint8_t *buf;
        size_t len;
        assert_int_equal(rtr_read_file(path, (size_t)1 << 30, &buf, &len), RTR_OK);
        rtr_vindex_file unsized[2] = {{files[0].name, files[0].xxh64, 0}, files[1]};
        /* the regions: headers (98 bytes), centroids, direct map and list table, then the lists' data */
        size_t nlist = fi ? 256 : 32, cents = 98, table = cents + nlist * d * 4 + 9, count;
        memcpy(&count, buf + table + 24, 8);
        size_t data = table + 32 + count * 8;
        assert_true(data < len);
        int refused = 0, searched = 0;
        for (size_t i = 0; i < data + 64; i += i >= cents && i < table ? 37 : 1) {
            buf[i] ^= (uint8_t)(i % 2 ? 0x01 : 0x80);
            tu_write(dir, files[0].name, buf, len);
            int rc = open_ivf(dir, unsized, 1, factories[fi], &m);
            if (rc == RTR_OK) {
                rtr_vindex_search(m, 2, q, k, dm, im);   /* it may fail; it must not read past the file */
                rtr_vindex_free(m);
                searched++;
            } else {
                assert_int_equal(rc, RTR_E_CORRUPT);   /* refused before FAISS reads it (its reader leaks on a throw) */
                refused++;
            }
            buf[i] ^= (uint8_t)(i % 2 ? 0x01 : 0x80);
        }
        for (size_t cut = 1; cut < len; cut += len / 97 + 1) {
            tu_write(dir, files[0].name, buf, cut);
            assert_int_equal(open_ivf(dir, unsized, 1, factories[fi], &m), RTR_E_CORRUPT);
        }
        print_message("%s: %d changed files refused, %d searched\n", factories[fi], refused, searched);
        assert_true(refused > 0);
        rtr_free(buf);
        rtr_free(path);
        rtr_vindex_free(w);
        rtr_vindex_free(v);
        rtr_vindex_file_names_free(files, 2);
        rtr_rmtree(dir);
        free(dir); free(x); free(q); free(ids); free(shard);
    }
}

static void test_save_load_corrupt_and_remove(void **state) {
    (void)state;
    const uint32_t d = 16;
    const size_t n = 500;
    float *x = clustered(n, d, 10);
    int64_t *ids = malloc(n * sizeof *ids);
    uint32_t *shard = malloc(n * sizeof *shard);
    for (size_t i = 0; i < n; i++) { ids[i] = (int64_t)i + 1; shard[i] = (uint32_t)(i % 2); }
    rtr_vindex_plan p;
    rtr_vindex_plan_auto(n, d, 0, 1, &p);
    rtr_vindex *v, *w;
    assert_int_equal(rtr_vindex_create(&p, d, 2, NULL, 0, &v), RTR_OK);
    assert_int_equal(rtr_vindex_add(v, n, x, ids, shard), RTR_OK);
    char *dir = tu_tmpdir("vindex");
    rtr_vindex_file files[2], codes[2];
    assert_int_equal(rtr_vindex_save(v, dir, "g1", files, codes), RTR_OK);
    assert_string_equal(files[1].name, "g1-001.faiss");
    assert_null(codes[0].name);   /* a shard this small is searched exactly: no codes */
    assert_int_equal(load(dir, files, &w), RTR_OK);
    assert_int_equal(rtr_vindex_ntotal(w), n);
    float d1[5], d2[5];
    int64_t i1[5], i2[5];
    assert_int_equal(rtr_vindex_search(v, 1, x + 7 * d, 5, d1, i1), RTR_OK);
    assert_int_equal(rtr_vindex_search(w, 1, x + 7 * d, 5, d2, i2), RTR_OK);
    assert_memory_equal(i1, i2, sizeof i1);
    assert_int_equal(i1[0], 8);
    rtr_vindex_free(w);
    /* a truncated file and a flipped byte are refused */
    char *path = rtr_path_join(dir, files[0].name);
    uint8_t *buf;
    size_t len;
    assert_int_equal(rtr_read_file(path, 1 << 30, &buf, &len), RTR_OK);
    tu_write(dir, files[0].name, buf, len / 2);
    assert_int_equal(load(dir, files, &w), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), files[0].name));
    assert_non_null(strstr(rtr_errdetail(), "truncated"));
    /* without a recorded size, the checksum refuses it before FAISS parses it */
    rtr_vindex_file unsized[2] = {{files[0].name, files[0].xxh64, 0}, {files[1].name, files[1].xxh64, 0}};
    assert_int_equal(load(dir, unsized, &w), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), "checksum mismatch"));
    /* a flipped byte keeps the size: the checksum refuses it */
    buf[len / 3] ^= 0x40;
    tu_write(dir, files[0].name, buf, len);
    assert_int_equal(load(dir, files, &w), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), "checksum mismatch"));
    assert_null(w);
    unlink(path);
    assert_int_equal(load(dir, files, &w), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), "missing"));
    rtr_free(buf);
    rtr_free(path);
    /* removal */
    int64_t gone[] = {8, 9, 99999};
    uint64_t removed;
    assert_int_equal(rtr_vindex_remove(v, gone, 3, &removed), RTR_OK);
    assert_int_equal(removed, 2);
    assert_int_equal(rtr_vindex_search(v, 1, x + 7 * d, 5, d1, i1), RTR_OK);
    for (int i = 0; i < 5; i++) assert_true(i1[i] != 8 && i1[i] != 9);
    rtr_vindex_free(v);
    rtr_vindex_file_names_free(files, 2);
    rtr_vindex_file_names_free(codes, 2);
    rtr_rmtree(dir);
    free(dir); free(x); free(ids); free(shard);
}

/* Batch search through fast-scan codes (rtr_vindex_batch_prepare): before the codes it answers as
 * rtr_vindex_search does; with them, every distance it gives is the exact distance of the vector it
 * names (re-ranked), ascending, and recall stays near the plain search's, falling with the lists
 * probed (the parameter reaches the codes); a mapped index makes the same codes; a change to a shard
 * sends batch searches back to the plain search until the codes are made again; flat indexes have none. */
static void test_batch_codes(void **state) {
    (void)state;
    const uint32_t d = 32, k = 10;
    const size_t n = 24000, nq = 200;
    float *x = clustered(n + 2000, d, 300), *q = clustered(nq, d, 300);
    int64_t *ids = malloc((n + 2000) * sizeof *ids);
    uint32_t *shard = malloc((n + 2000) * sizeof *shard);
    for (size_t i = 0; i < n + 2000; i++) { ids[i] = (int64_t)i + 1; shard[i] = (uint32_t)(i % 2); }
    rtr_vindex_plan p;
    assert_int_equal(rtr_vindex_plan_factory("IVF256,Flat", n, d, 2, &p), RTR_OK);
    rtr_vindex *v;
    assert_int_equal(rtr_vindex_create(&p, d, 2, x, n, &v), RTR_OK);
    assert_int_equal(rtr_vindex_add(v, n, x, ids, shard), RTR_OK);
    assert_int_equal(rtr_vindex_set_nprobe(v, 64), RTR_OK);
    float *da = malloc(nq * k * sizeof *da), *db = malloc(nq * k * sizeof *db), bd[10];
    int64_t *ia = malloc(nq * k * sizeof *ia), *ib = malloc(nq * k * sizeof *ib), want[10];
    assert_int_equal(rtr_vindex_search(v, nq, q, k, da, ia), RTR_OK);
    assert_int_equal(rtr_vindex_search_batch(v, nq, q, k, db, ib), RTR_OK);   /* no codes yet */
    assert_memory_equal(ia, ib, nq * k * sizeof *ia);
    assert_int_equal(rtr_vindex_batch_bytes(v), 0);
    assert_int_equal(rtr_vindex_batch_prepare(v), RTR_OK);
    assert_int_equal(rtr_vindex_batch_bytes(v), n * (16 + 8));   /* 32 4-bit codes and an id a vector */
    assert_int_equal(rtr_vindex_batch_nprobe(v), 64);   /* nprobe / 4, at least nprobe or 64 (the 64 nearest
                                                         * lists: selected through a threshold, faiss_ext.cpp) */
    size_t hit_plain = count_hits(ia, x, ids, n, d, q, nq, k), hit_batch = 0;
    assert_int_equal(rtr_vindex_search_batch(v, nq, q, k, db, ib), RTR_OK);
    for (size_t i = 0; i < nq; i++) {
        brute(x, ids, n, d, q + i * d, k, want, bd);
        for (uint32_t a = 0; a < k; a++) {
            int64_t id = ib[i * k + a];
            assert_true(id >= 1 && id <= (int64_t)n);
            float e = 0;
            for (uint32_t j = 0; j < d; j++) {
                float t = q[i * d + j] - x[(size_t)(id - 1) * d + j];
                e += t * t;
            }
            assert_float_equal(db[i * k + a], e, 1e-5);   /* re-ranked: the exact distance */
            if (a) assert_true(db[i * k + a - 1] <= db[i * k + a]);
            for (uint32_t b = 0; b < a; b++) assert_true(ib[i * k + b] != id);
            for (uint32_t b = 0; b < k; b++) hit_batch += id == want[b];
        }
    }
    print_message("recall@10: plain %.3f, batch codes %.3f\n", (double)hit_plain / (double)(nq * k),
                  (double)hit_batch / (double)(nq * k));
    assert_true(hit_batch >= nq * k * 9 / 10);
    assert_true(hit_batch + nq * k / 20 >= hit_plain);
    assert_int_equal(rtr_vindex_set_batch_nprobe(v, 1), RTR_OK);
    assert_int_equal(rtr_vindex_batch_nprobe(v), 1);
    assert_int_equal(rtr_vindex_search_batch(v, nq, q, k, db, ib), RTR_OK);
    assert_true(count_hits(ib, x, ids, n, d, q, nq, k) < hit_batch);
    assert_int_equal(rtr_vindex_set_batch_nprobe(v, 257), RTR_E_INVALID);   /* past the 256 lists */
    assert_int_equal(rtr_vindex_set_batch_nprobe(v, 0), RTR_OK);
    assert_int_equal(rtr_vindex_search_batch(v, nq, q, k, db, ib), RTR_OK);
    /* the index mapped from its files makes the same codes */
    char *dir = tu_tmpdir("vindex_batch");
    rtr_vindex_file files[2];
    assert_int_equal(rtr_vindex_save(v, dir, "g1", files, NULL), RTR_OK);
    rtr_vindex *m;
    assert_int_equal(open_ivf(dir, files, 1, "IVF256,Flat", &m), RTR_OK);
    assert_int_equal(rtr_vindex_set_nprobe(m, 64), RTR_OK);
    assert_int_equal(rtr_vindex_batch_prepare(m), RTR_OK);
    assert_int_equal(rtr_vindex_search_batch(m, nq, q, k, da, ia), RTR_OK);
    assert_memory_equal(ia, ib, nq * k * sizeof *ia);
    assert_memory_equal(da, db, nq * k * sizeof *da);
    rtr_vindex_free(m);
    /* a change: batch searches are plain ones until the codes are made again */
    assert_int_equal(rtr_vindex_add(v, 2000, x + n * d, ids + n, shard + n), RTR_OK);
    assert_int_equal(rtr_vindex_batch_bytes(v), 0);
    assert_int_equal(rtr_vindex_search(v, nq, q, k, da, ia), RTR_OK);
    assert_int_equal(rtr_vindex_search_batch(v, nq, q, k, db, ib), RTR_OK);
    assert_memory_equal(ia, ib, nq * k * sizeof *ia);
    assert_int_equal(rtr_vindex_batch_prepare(v), RTR_OK);
    assert_int_equal(rtr_vindex_batch_bytes(v), (n + 2000) * (16 + 8));
    rtr_vindex_free(v);
    /* a flat index has no batch codes */
    assert_int_equal(rtr_vindex_plan_factory("Flat", n, d, 1, &p), RTR_OK);
    assert_int_equal(rtr_vindex_create(&p, d, 1, NULL, 0, &v), RTR_OK);
    assert_int_equal(rtr_vindex_add(v, 3000, x, ids, (uint32_t[3000]){0}), RTR_OK);
    assert_int_equal(rtr_vindex_batch_prepare(v), RTR_OK);
    assert_int_equal(rtr_vindex_batch_bytes(v), 0);
    assert_int_equal(rtr_vindex_batch_nprobe(v), 0);
    assert_int_equal(rtr_vindex_search(v, nq, q, k, da, ia), RTR_OK);
    assert_int_equal(rtr_vindex_search_batch(v, nq, q, k, db, ib), RTR_OK);
    assert_memory_equal(ia, ib, nq * k * sizeof *ia);
    rtr_vindex_free(v);
    rtr_vindex_file_names_free(files, 2);
    rtr_rmtree(dir);
    free(dir); free(x); free(q); free(ids); free(shard); free(da); free(db); free(ia); free(ib);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_equals_brute_force_sharded),
        cmocka_unit_test(test_plans),
        cmocka_unit_test(test_ivf_recall_and_bad_factory),
        cmocka_unit_test(test_sq4_rerank),
        cmocka_unit_test(test_ivf_mapped),
        cmocka_unit_test(test_save_load_corrupt_and_remove),
        cmocka_unit_test(test_mapped_equals_loaded),
        cmocka_unit_test(test_batch_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
