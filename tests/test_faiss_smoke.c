/* test_faiss_smoke.c - the FAISS C API that scripts/setup.sh builds links and
 * works: an exact (Flat, L2) index returns what a brute-force search returns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <float.h>
#include <stdlib.h>

enum { D = 16, N = 500, Q = 20, K = 5 };

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) & 0xFFFFFF) / (float)0x1000000 - 0.5f;
}

static void test_flat_matches_brute_force(void **state) {
    (void)state;
    static float xb[N * D], xq[Q * D], dist[Q * K];
    static idx_t labels[Q * K];
    uint64_t seed = 42;
    for (int i = 0; i < N * D; i++) xb[i] = frand(&seed);
    for (int i = 0; i < Q * D; i++) xq[i] = frand(&seed);

    FaissIndex *index = NULL;
    assert_int_equal(faiss_index_factory(&index, D, "Flat", METRIC_L2), 0);
    assert_non_null(index);
    assert_int_equal(faiss_Index_add(index, N, xb), 0);
    assert_int_equal(faiss_Index_ntotal(index), N);
    assert_int_equal(faiss_Index_search(index, Q, xq, K, dist, labels), 0);

    for (int q = 0; q < Q; q++) {
        /* brute force top-K by repeated selection */
        float best[K];
        int64_t bid[K];
        for (int k = 0; k < K; k++) {
            best[k] = FLT_MAX;
            bid[k] = -1;
        }
        for (int i = 0; i < N; i++) {
            float d = 0;
            for (int j = 0; j < D; j++) {
                float t = xq[q * D + j] - xb[i * D + j];
                d += t * t;
            }
            for (int k = 0; k < K; k++) {
                if (d < best[k]) {
                    for (int m = K - 1; m > k; m--) {
                        best[m] = best[m - 1];
                        bid[m] = bid[m - 1];
                    }
                    best[k] = d;
                    bid[k] = i;
                    break;
                }
            }
        }
        for (int k = 0; k < K; k++) {
            assert_int_equal(labels[q * K + k], bid[k]);
            assert_float_equal(dist[q * K + k], best[k], 1e-4);
        }
    }
    faiss_Index_free(index);
}

static void test_bad_factory_string_reports_error(void **state) {
    (void)state;
    FaissIndex *index = NULL;
    assert_int_not_equal(faiss_index_factory(&index, D, "NoSuchIndex", METRIC_L2), 0);
    assert_non_null(faiss_get_last_error());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat_matches_brute_force),
        cmocka_unit_test(test_bad_factory_string_reports_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
