/* test_sample.c - next-token choice: greedy is the argmax; sampling follows
 * the softmax at the temperature (chi-square over many draws); top-k and
 * top-p keep exactly the tokens they should; a seed repeats its sequence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/sample.h"

enum { V = 6 };
static const float LOGITS[V] = {1.0f, 3.0f, 2.0f, -1.0f, 2.5f, 0.0f};

static void probs(float temp, double *p) {
    double z = 0;
    for (int v = 0; v < V; v++) z += p[v] = exp(LOGITS[v] / temp);
    for (int v = 0; v < V; v++) p[v] /= z;
}

static void test_greedy_and_seed(void **state) {
    (void)state;
    rtr_sampler s, t;
    rtr_sampler_init(&s, 0, 0, 1, 1);
    for (int i = 0; i < 10; i++) assert_int_equal(rtr_sample(&s, LOGITS, V, NULL), 1);
    rtr_sampler_init(&s, 1, 0, 1, 42);
    rtr_sampler_init(&t, 1, 0, 1, 42);
    int differ = 0;
    rtr_sampler u;
    rtr_sampler_init(&u, 1, 0, 1, 43);
    for (int i = 0; i < 200; i++) {
        int32_t a = rtr_sample(&s, LOGITS, V, NULL);
        assert_int_equal(a, rtr_sample(&t, LOGITS, V, NULL));
        differ += a != rtr_sample(&u, LOGITS, V, NULL);
    }
    assert_true(differ > 20);   /* another seed, another sequence */
}

static void test_distribution(void **state) {
    (void)state;
    const float temps[] = {1.0f, 0.5f, 2.0f};
    for (int ti = 0; ti < 3; ti++) {
        double p[V], chi = 0;
        probs(temps[ti], p);
        int count[V] = {0}, n = 60000;
        rtr_sampler s;
        rtr_sampler_init(&s, temps[ti], 0, 1, 7 + ti);
        for (int i = 0; i < n; i++) count[rtr_sample(&s, LOGITS, V, NULL)]++;
        for (int v = 0; v < V; v++) chi += (count[v] - n * p[v]) * (count[v] - n * p[v]) / (n * p[v]);
        /* 5 degrees of freedom: P(chi2 > 25) < 1.4e-4 */
        if (chi > 25) fail_msg("temperature %.1f: chi-square %.1f", temps[ti], chi);
    }
}

static void test_top_k_top_p(void **state) {
    (void)state;
    rtr_sampler s;
    int seen[V];
    /* top-k 2: only tokens 1 and 4 */
    memset(seen, 0, sizeof seen);
    rtr_sampler_init(&s, 1, 2, 1, 3);
    for (int i = 0; i < 5000; i++) seen[rtr_sample(&s, LOGITS, V, NULL)]++;
    for (int v = 0; v < V; v++) assert_true((v == 1 || v == 4) ? seen[v] > 0 : seen[v] == 0);
    /* top-p: probabilities at T=1 sorted: 1 (.43), 4 (.26), 2 (.16), ... ;
     * p = 0.6 keeps {1, 4}; p = 0.75 keeps {1, 4, 2} */
    double p[V];
    probs(1, p);
    assert_true(p[1] + p[4] > 0.6 && p[1] < 0.6 && p[1] + p[4] < 0.75 && p[1] + p[4] + p[2] > 0.75);
    const float tops[] = {0.6f, 0.75f};
    for (int k = 0; k < 2; k++) {
        memset(seen, 0, sizeof seen);
        rtr_sampler_init(&s, 1, 0, tops[k], 5);
        for (int i = 0; i < 5000; i++) seen[rtr_sample(&s, LOGITS, V, NULL)]++;
        for (int v = 0; v < V; v++) {
            int kept = v == 1 || v == 4 || (k == 1 && v == 2);
            assert_true(kept ? seen[v] > 0 : seen[v] == 0);
        }
    }
}

/* A large vocabulary (where only a prefix of the candidates is sorted), with
 * tied logits: every draw is in the set a full sort keeps (ties: the lower id
 * first), for top-k, top-p alone (kept sets below and above the first sorted
 * prefix of 64) and both. */
enum { BIG = 5000 };
static float g_big[BIG];

static int naive_cmp(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    if (g_big[x] != g_big[y]) return g_big[x] > g_big[y] ? -1 : 1;
    return x < y ? -1 : 1;
}

/* kept[v] = 1 for the tokens a full sort keeps */
static void naive_kept(int top_k, float top_p, uint8_t *kept) {
    static int order[BIG];
    for (int v = 0; v < BIG; v++) order[v] = v;
    qsort(order, BIG, sizeof *order, naive_cmp);
    int n = top_k > 0 && top_k < BIG ? top_k : BIG;
    double tot = 0, acc = 0, mx = g_big[order[0]];
    for (int i = 0; i < n; i++) tot += exp(g_big[order[i]] - mx);
    int cut = n;
    for (int i = 0; top_p < 1 && i < n; i++) {
        acc += exp(g_big[order[i]] - mx);
        if (acc >= top_p * tot) {
            cut = i + 1;
            break;
        }
    }
    memset(kept, 0, BIG);
    for (int i = 0; i < cut; i++) kept[order[i]] = 1;
}

static void test_large_vocabulary(void **state) {
    (void)state;
    uint64_t x = 99;
    for (int v = 0; v < BIG; v++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        g_big[v] = (float)((x >> 33) % 300) * 0.01f;   /* 300 distinct values: many ties */
    }
    static uint8_t kept[BIG];
    static uint8_t seen[BIG];
    const struct { int k; float p; } cases[] = {{40, 1.0f}, {1, 1.0f}, {0, 0.003f}, {0, 0.5f}, {300, 0.9f}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        naive_kept(cases[ci].k, cases[ci].p, kept);
        int n_kept = 0, n_seen = 0;
        for (int v = 0; v < BIG; v++) n_kept += kept[v];
        memset(seen, 0, sizeof seen);
        rtr_sampler s;
        rtr_sampler_init(&s, 1, cases[ci].k, cases[ci].p, 11 + ci);
        for (int i = 0; i < 4000; i++) {
            int32_t t = rtr_sample(&s, g_big, BIG, NULL);
            assert_true(t >= 0 && t < BIG);
            if (!kept[t]) fail_msg("top-k %d top-p %.3f: drew %d, which a full sort drops", cases[ci].k, cases[ci].p, t);
            n_seen += !seen[t];
            seen[t] = 1;
        }
        /* the kept sets are near-uniform: draws reach most of the small ones */
        if (n_kept <= 300) assert_true(n_seen >= n_kept * 9 / 10);
        else assert_true(n_seen > 1000);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_and_seed),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_top_k_top_p),
        cmocka_unit_test(test_large_vocabulary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
