/* test_embed_pca.c - principal components against known directions and a naive
 * covariance (C w = lambda w, orthonormal rows), the projection against a
 * naive loop, the file's round trip and its corruptions, and the `pca`
 * embedder made and re-made from its description. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>
#include <xxhash.h>

#include "index/embed.h"
#include "index/embed_hash.h"
#include "index/embed_pca.h"
#include "lib/alloc.h"
#include "lib/le.h"
#include "lib/status.h"
#include "testutil.h"

static uint64_t g_seed = 987;
static double urand(void) {   /* uniform in (0, 1) */
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((double)(g_seed >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }

/* The sample covariance, naively, in double. */
static double *naive_cov(const float *x, size_t n, uint32_t d) {
    double *mean = calloc(d, sizeof *mean), *c = calloc((size_t)d * d, sizeof *c);
    for (size_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < d; j++) mean[j] += x[i * d + j] / (double)n;
    for (size_t i = 0; i < n; i++)
        for (uint32_t a = 0; a < d; a++)
            for (uint32_t b = 0; b < d; b++) c[a * d + b] += (x[i * d + a] - mean[a]) * (x[i * d + b] - mean[b]) / (double)(n - 1);
    free(mean);
    return c;
}

/* Every component: unit length, orthogonal to the others, an eigenvector of
 * the naive covariance with its variance as eigenvalue. */
static void check_eigen(const rtr_pca *p, const float *x, size_t n) {
    uint32_t d = p->din;
    double *c = naive_cov(x, n, d);
    double top = p->var[0];
    for (uint32_t k = 0; k < p->dout; k++) {
        const float *w = p->w + (size_t)k * d;
        for (uint32_t l = 0; l <= k; l++) {
            double dot = 0;
            for (uint32_t j = 0; j < d; j++) dot += (double)w[j] * p->w[(size_t)l * d + j];
            assert_true(fabs(dot - (k == l)) < 1e-5);
        }
        double err = 0;
        for (uint32_t a = 0; a < d; a++) {
            double cw = 0;
            for (uint32_t b = 0; b < d; b++) cw += c[a * d + b] * w[b];
            err = fmax(err, fabs(cw - p->var[k] * w[a]));
        }
        assert_true(err < 1e-4 * top);
        if (k) assert_true(p->var[k] <= p->var[k - 1]);
    }
    free(c);
}

static void test_known_directions(void **state) {
    (void)state;
    enum { N = 4000, D = 16 };
    /* three orthonormal directions (Gram-Schmidt of random vectors) with variances 9, 4 and 1, noise 0.01 */
    double u[3][D];
    for (int k = 0; k < 3; k++) {
        for (int j = 0; j < D; j++) u[k][j] = nrand();
        for (int l = 0; l < k; l++) {
            double dot = 0;
            for (int j = 0; j < D; j++) dot += u[k][j] * u[l][j];
            for (int j = 0; j < D; j++) u[k][j] -= dot * u[l][j];
        }
        double ss = 0;
        for (int j = 0; j < D; j++) ss += u[k][j] * u[k][j];
        for (int j = 0; j < D; j++) u[k][j] /= sqrt(ss);
    }
    float *x = malloc((size_t)N * D * sizeof *x);
    const double sd[3] = {3, 2, 1};
    for (size_t i = 0; i < N; i++) {
        double z[3] = {sd[0] * nrand(), sd[1] * nrand(), sd[2] * nrand()};
        for (int j = 0; j < D; j++) x[i * D + j] = (float)(5.0 + z[0] * u[0][j] + z[1] * u[1][j] + z[2] * u[2][j] + 0.1 * nrand());
    }
    rtr_pca p;
    assert_int_equal(rtr_pca_fit(x, N, D, 3, &p), RTR_OK);
    for (int k = 0; k < 3; k++) {
        double dot = 0;
        for (int j = 0; j < D; j++) dot += p.w[k * D + j] * u[k][j];
        assert_true(fabs(dot) > 0.999);                         /* the right direction, in order */
        assert_true(fabs(p.var[k] - sd[k] * sd[k]) < 0.12 * sd[k] * sd[k]);   /* sampling error ~ 2 sqrt(2/N) */
        double big = 0;                                         /* the sign: largest entry positive */
        for (int j = 0; j < D; j++)
            if (fabs(p.w[k * D + j]) > fabs(big)) big = p.w[k * D + j];
        assert_true(big > 0);
    }
    for (int j = 0; j < D; j++) assert_true(fabs(p.mean[j] - 5.0) < 0.2);
    check_eigen(&p, x, N);
    rtr_pca_free(&p);
    free(x);
}

static void test_full_rank_and_apply(void **state) {
    (void)state;
    enum { N = 700, D = 24 };
    float *x = malloc((size_t)N * D * sizeof *x);
    for (size_t i = 0; i < N; i++)   /* correlated: each coordinate mixes the previous one */
        for (int j = 0; j < D; j++) x[i * D + j] = (float)(nrand() * (1 + j % 5) + (j ? 0.5 * x[i * D + j - 1] : 0));
    rtr_pca p;
    assert_int_equal(rtr_pca_fit(x, N, D, D, &p), RTR_OK);
    check_eigen(&p, x, N);
    /* the projection against a naive loop */
    float y[5 * D];
    rtr_pca_apply(&p, x, 5, y);
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < D; k++) {
            double s = 0;
            for (int j = 0; j < D; j++) s += (double)p.w[k * D + j] * (x[i * D + j] - p.mean[j]);
            assert_true(fabs(s - y[i * D + k]) < 1e-4 * (1 + fabs(s)));
        }
    /* all components kept: the projection is a rotation, distances between centred points are kept */
    double a = 0, b = 0;
    for (int j = 0; j < D; j++) a += (double)(x[j] - x[D + j]) * (x[j] - x[D + j]);
    for (int k = 0; k < D; k++) b += (double)(y[k] - y[D + k]) * (y[k] - y[D + k]);
    assert_true(fabs(a - b) < 1e-3 * a);
    rtr_pca_free(&p);
    free(x);
}

static void test_bad_arguments(void **state) {
    (void)state;
    float x[8] = {0};
    rtr_pca p;
    assert_int_equal(rtr_pca_fit(x, 1, 4, 2, &p), RTR_E_INVALID);   /* one sample */
    assert_int_equal(rtr_pca_fit(x, 2, 4, 5, &p), RTR_E_INVALID);   /* more components than dimensions */
    assert_int_equal(rtr_pca_fit(x, 2, 4, 0, &p), RTR_E_INVALID);
}

static rtr_pca small_pca(void) {
    enum { N = 200, D = 6 };
    float x[N * D];
    for (int i = 0; i < N * D; i++) x[i] = (float)(nrand() * (1 + i % D));
    rtr_pca p;
    assert_int_equal(rtr_pca_fit(x, N, D, 3, &p), RTR_OK);
    return p;
}

/* Rewrites the checksum after a change, so that the change itself is what the parser meets. */
static void reseal(uint8_t *b, size_t len) { rtr_put_le64(b + len - 8, XXH64(b, len - 8, 0)); }

static void test_file(void **state) {
    (void)state;
    rtr_pca p = small_pca();
    uint8_t *b;
    size_t len;
    assert_int_equal(rtr_pca_serialize(&p, &b, &len), RTR_OK);
    assert_int_equal(len, 24 + 4 * (6 + 18 + 3) + 8);
    rtr_pca q;
    assert_int_equal(rtr_pca_parse(b, len, "t.bin", &q), RTR_OK);
    assert_int_equal(q.din, 6);
    assert_int_equal(q.dout, 3);
    assert_int_equal(q.n, 200);
    assert_memory_equal(q.w, p.w, 18 * sizeof(float));
    assert_memory_equal(q.mean, p.mean, 6 * sizeof(float));
    assert_memory_equal(q.var, p.var, 3 * sizeof(float));
    assert_int_equal(rtr_pca_checksum(&q), XXH64(b, len, 0));
    rtr_pca_free(&q);
    /* every single flipped byte, every truncation */
    for (size_t i = 0; i < len; i++) {
        b[i] ^= 0x40;
        assert_int_equal(rtr_pca_parse(b, len, "t.bin", &q), RTR_E_CORRUPT);
        b[i] ^= 0x40;
    }
    for (size_t l = 0; l < len; l++) assert_int_equal(rtr_pca_parse(b, l, "t.bin", &q), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), "t.bin"));
    /* well sealed but wrong inside */
    uint8_t *c = malloc(len);
    memcpy(c, b, len);
    rtr_put_le32(c + 12, 7);   /* dout above din */
    reseal(c, len);
    assert_int_equal(rtr_pca_parse(c, len, "t.bin", &q), RTR_E_CORRUPT);
    memcpy(c, b, len);
    rtr_put_le32(c + 24 + 4 * 6, 0x3fc00000);   /* a component's first entry 1.5: not unit length */
    reseal(c, len);
    assert_int_equal(rtr_pca_parse(c, len, "t.bin", &q), RTR_E_CORRUPT);
    memcpy(c, b, len);
    rtr_put_le32(c + 24, 0x7fc00000);   /* a NaN in the mean */
    reseal(c, len);
    assert_int_equal(rtr_pca_parse(c, len, "t.bin", &q), RTR_E_CORRUPT);
    memcpy(c, b, len);
    rtr_put_le32(c + 24 + 4 * (6 + 18 + 2), 0x4f000000);   /* the last variance above the one before */
    reseal(c, len);
    assert_int_equal(rtr_pca_parse(c, len, "t.bin", &q), RTR_E_CORRUPT);
    free(c);
    rtr_free(b);
    rtr_pca_free(&p);
}

static void test_embedder(void **state) {
    (void)state;
    const char *texts[] = {"the quick brown fox", "jumps over the lazy dog", "a lazy dog sleeps", "brown foxes run",
                           "memory barriers and the cpu cache", "the page cache holds file pages",
                           "locks and memory ordering", "foxes and dogs", "cache lines and false sharing",
                           "the dog barks at the fox"};
    enum { T = 10, D = 64, K = 4 };
    rtr_text tx[T];
    for (int i = 0; i < T; i++) tx[i] = (rtr_text){texts[i], strlen(texts[i])};
    rtr_hash_embedder_opts ho = {D, 0, NULL};
    rtr_embedder *inner, *e;
    assert_int_equal(rtr_hash_embedder_new(&ho, &inner), RTR_OK);
    float x[T * D], y[T * K], z[T * K];
    assert_int_equal(rtr_embedder_embed(inner, tx, T, x), RTR_OK);
    rtr_pca p;
    assert_int_equal(rtr_pca_fit(x, T, D, K, &p), RTR_OK);
    assert_int_equal(rtr_pca_embedder_new(inner, 1, &p, &e), RTR_OK);
    assert_int_equal(e->dim, K);
    assert_int_equal(rtr_embedder_embed(e, tx, T, y), RTR_OK);
    for (int i = 0; i < T; i++) {   /* normalised projection of the inner vector */
        double v[K], ss = 0;
        for (int k = 0; k < K; k++) {
            v[k] = 0;
            for (int j = 0; j < D; j++) v[k] += (double)p.w[k * D + j] * (x[i * D + j] - p.mean[j]);
            ss += v[k] * v[k];
        }
        for (int k = 0; k < K; k++) assert_true(fabs(v[k] / sqrt(ss) - y[i * K + k]) < 1e-5);
    }
    /* from its description, with the file in KB/index */
    char *dir = tu_tmpdir("pca"), *desc = rtr_embedder_canonical(e);
    assert_non_null(strstr(desc, "\"kind\":\"pca\""));
    rtr_embedder *again;
    assert_int_equal(rtr_embedder_from_desc(dir, desc, &again), RTR_E_NOTFOUND);   /* no file yet */
    char *sub = rtr_path_join(dir, "index");
    assert_int_equal(rtr_mkdirs(sub), RTR_OK);
    char *name = rtr_pca_filename(rtr_pca_checksum(&p)), *path = rtr_path_join(sub, name);
    assert_int_equal(rtr_pca_save(&p, path), RTR_OK);
    assert_int_equal(rtr_embedder_from_desc(dir, desc, &again), RTR_OK);
    char *desc2 = rtr_embedder_canonical(again);
    assert_string_equal(desc, desc2);
    assert_int_equal(rtr_embedder_embed(again, tx, T, z), RTR_OK);
    assert_memory_equal(y, z, sizeof y);
    rtr_embedder_free(again);
    /* a file that is not the one the description names */
    rtr_pca other = small_pca();
    char *bad = strdup(desc);
    char *dimp = strstr(bad, "\"dim\":4,\"inner\"");
    assert_non_null(dimp);
    dimp[6] = '5';
    assert_int_equal(rtr_embedder_from_desc(dir, bad, &again), RTR_E_CORRUPT);   /* 4 components, 5 said */
    free(bad);
    rtr_pca_free(&other);
    free(desc2);
    free(desc);
    rtr_free(name);
    rtr_free(path);
    rtr_free(sub);
    rtr_rmtree(dir);
    free(dir);
    rtr_embedder_free(e);
    rtr_pca_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_directions), cmocka_unit_test(test_full_rank_and_apply),
        cmocka_unit_test(test_bad_arguments), cmocka_unit_test(test_file), cmocka_unit_test(test_embedder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
