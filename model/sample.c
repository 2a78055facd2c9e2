/* sample.c - next-token choice (see sample.h). */
#include "model/sample.h"

#include <math.h>
#include <stdlib.h>

#include "lib/alloc.h"
#include "lib/rng.h"

void rtr_sampler_init(rtr_sampler *s, float temperature, int top_k, float top_p, uint64_t seed) {
    s->temperature = temperature;
    s->top_k = top_k;
    s->top_p = top_p;
    s->state = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
}

static double next_uniform(rtr_sampler *s) { return rtr_unit53(rtr_splitmix64(&s->state)); }

typedef struct cand {
    float p;
    int32_t id;
} cand;

static int by_prob(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;   /* ties: the lower id first (deterministic) */
}

/* 1 if a comes before b in by_prob's order (a strict total order: ids differ) */
static int before(const cand *a, const cand *b) { return a->p > b->p || (a->p == b->p && a->id < b->id); }

static void swap_cand(cand *a, cand *b) {
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Reorders c[0, n) so that its first k (0 < k < n) are the k first in
 * by_prob's order, in no particular order: quickselect, expected O(n). */
static void select_first(cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;   /* median of three as the pivot, moved to hi */
        if (before(&c[mid], &c[lo])) swap_cand(&c[mid], &c[lo]);
        if (before(&c[hi], &c[lo])) swap_cand(&c[hi], &c[lo]);
        if (before(&c[mid], &c[hi])) swap_cand(&c[mid], &c[hi]);
        cand pv = c[hi];
        int st = lo;
        for (int i = lo; i < hi; i++)
            if (before(&c[i], &pv)) swap_cand(&c[i], &c[st++]);
        swap_cand(&c[st], &c[hi]);   /* the pivot is st-th */
        if (st == k - 1 || st == k) return;
        if (st < k) lo = st + 1;
        else hi = st - 1;
    }
}

/* c[0, k) sorted in by_prob's order, k of n, the rest after them */
static void sort_first(cand *c, int n, int k) {
    if (k < n) select_first(c, n, k);
    qsort(c, (size_t)k, sizeof *c, by_prob);
}

int32_t rtr_sample(rtr_sampler *s, const float *logits, int V, void *scratch) {
    int32_t best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    if (s->temperature <= 0) return best;
    cand *c = scratch ? scratch : rtr_malloc((size_t)V * sizeof *c);
    if (!c) return -1;
    double z = 0, mx = logits[best];
    for (int v = 0; v < V; v++) {
        c[v].id = v;
        c[v].p = (float)exp((logits[v] - mx) / s->temperature);
        z += c[v].p;
    }
    int n = V;
    if ((s->top_k > 0 && s->top_k < V) || s->top_p < 1) {
        /* only the candidates that can be kept are sorted: the top k, or (top-p
         * alone) a doubling prefix until it holds the mass top-p asks for */
        if (s->top_k > 0 && s->top_k < n) {
            n = s->top_k;
            sort_first(c, V, n);
        } else {
            int sorted = 0;
            for (int want = 64; !sorted; want *= 2) {
                int k = want < V ? want : V;
                sort_first(c, V, k);
                double tot = 0, mass = 0;   /* summed as the cut below sums them */
                for (int i = 0; i < V; i++) {
                    tot += c[i].p;
                    if (i == k - 1) mass = tot;
                }
                sorted = k == V || mass >= s->top_p * tot;
            }
        }
        if (s->top_p < 1) {
            double acc = 0, tot = 0;
            for (int i = 0; i < n; i++) tot += c[i].p;
            for (int i = 0; i < n; i++) {
                acc += c[i].p;
                if (acc >= s->top_p * tot) {
                    n = i + 1;
                    break;
                }
            }
        }
        z = 0;
        for (int i = 0; i < n; i++) z += c[i].p;
    }
    double r = next_uniform(s) * z, acc = 0;
    int32_t out = c[n - 1].id;
    for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc) {
            out = c[i].id;
            break;
        }
    }
    if (!scratch) rtr_free(c);
    return out;
}
