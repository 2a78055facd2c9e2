/*
 * bench_ann_synth.c - ANN quality and speed at 1M vectors: a knowledge base's
 * real chunk embeddings, plus clustered synthetic vectors up to N.
 *
 *   bench_ann_synth KB [N] [QUERIES]
 *
 * Synthetic vectors: clusters of about 100 points around real chunk vectors
 * (x = c + 0.75 g, g ~ N(0, I/d), normalised: cosine about 0.8 to the centre).
 * Queries: half are real chunks with a fifth of their words dropped, half
 * fresh points of the synthetic clusters. Ground truth: exact search.
 * The index is the one rtr_vindex_plan_auto picks for N vectors on two shards
 * (the default from 256 Ki chunks on two cores), at its default settings;
 * then a table of its search parameter (nprobe for an inverted file, the
 * re-ranked candidates of a flat one), for shard counts 1 and 2.
 */
#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/build.h"
#include "lib/alloc.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "tests/bench/bench_util.h"

#define K 10

static uint64_t rng = 0xC0FFEE;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float gauss(void) {   /* Box-Muller */
    double u = ((double)(next() >> 11) + 0.5) / 9007199254740992.0, v = (double)(next() >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static void synth(const float *c, uint32_t d, float *x) {
    for (uint32_t j = 0; j < d; j++) x[j] = c[j] + 0.75f * gauss() / sqrtf((float)d);
    rtr_l2_normalize(x, 1, d);
}

static double recall(const int64_t *got, const int64_t *truth, size_t nq) {
    size_t hit = 0;
    for (size_t i = 0; i < nq; i++)
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++) hit += got[i * K + a] == truth[i * K + b];
    return (double)hit / (double)(nq * K);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_ann_synth KB [N] [QUERIES]\n");
        return 2;
    }
    size_t N = argc > 2 ? (size_t)atol(argv[2]) : 1000000, nq = argc > 3 ? (size_t)atol(argv[3]) : 1000;
    rtr_kb *kb;
    rtr_kb_vectors *ix;
    if (rtr_kb_open(argv[1], 0, NULL, NULL, &kb) || rtr_kb_vectors_open(kb, &ix)) bench_die("bench_ann_synth", "open");
    rtr_embedder *e = rtr_kb_vectors_embedder(ix);
    uint32_t d = e->dim;
    const rtr_tokenizer *tok = rtr_kb_tokenizer(kb);
    rtr_store_txn *t;
    if (rtr_store_read_begin(rtr_kb_store(kb), &t)) bench_die("bench_ann_synth", "txn");
    rtr_store_stats st;
    rtr_store_get_stats(t, &st);
    size_t nr = st.n_chunks < N ? st.n_chunks : N;
    float *x = malloc(N * d * sizeof *x);
    int64_t *ids = malloc(N * sizeof *ids);
    /* real vectors */
    rtr_buf text = {0};
    enum { B = 4096 };
    size_t off[B + 1];
    rtr_text tx[B];
    uint64_t after = 0;
    size_t n = 0;
    char **qtext = calloc(nq / 2, sizeof *qtext);
    size_t *qlen = calloc(nq / 2, sizeof *qlen), nqt = 0;
    while (n < nr) {
        size_t m = 0;
        text.len = 0;
        rtr_chunk c;
        while (m < B && n + m < nr && rtr_store_next_chunk(t, after, &c) == RTR_OK) {
            after = c.id;
            off[m] = text.len;
            rtr_tokenizer_decode(tok, c.tokens, c.n_tokens, &text);
            ids[n + m] = (int64_t)(n + m);
            m++;
        }
        if (!m) break;
        off[m] = text.len;
        for (size_t i = 0; i < m; i++) tx[i] = (rtr_text){(const char *)text.data + off[i], off[i + 1] - off[i]};
#pragma omp parallel
        {
            int nt = omp_get_num_threads(), me = omp_get_thread_num();
            size_t lo = m * (size_t)me / (size_t)nt, hi = m * (size_t)(me + 1) / (size_t)nt;
            rtr_embedder_embed(e, tx + lo, hi - lo, x + (n + lo) * d);
        }
        /* every so often, a perturbed copy of a chunk becomes a query */
        for (size_t i = 0; i < m && nqt < nq / 2; i += 97) {
            rtr_buf o = {0};
            char *copy = strndup(tx[i].data, tx[i].len);
            int w = 0;
            for (char *s = strtok(copy, " "); s; s = strtok(NULL, " "))
                if (next() % 5) rtr_buf_printf(&o, "%s%s", w++ ? " " : "", s);
            free(copy);
            if (w < 10) { rtr_buf_free(&o); continue; }
            qtext[nqt] = (char *)o.data;
            qlen[nqt++] = o.len;
        }
        n += m;
    }
    nr = n;
    /* synthetic clusters around real vectors */
    size_t centres = (N - nr) / 100 + 1;
    for (size_t i = nr; i < N; i++) {
        size_t c = (next() % centres) * (nr / centres);
        synth(x + c * d, d, x + i * d);
        ids[i] = (int64_t)i;
    }
    /* queries */
    float *q = malloc(nq * d * sizeof *q);
    rtr_text *qt = malloc(nqt * sizeof *qt);
    for (size_t i = 0; i < nqt; i++) qt[i] = (rtr_text){qtext[i], qlen[i]};
    if (rtr_embedder_embed(e, qt, nqt, q)) bench_die("bench_ann_synth", "embed queries");
    for (size_t i = nqt; i < nq; i++) synth(x + ((next() % centres) * (nr / centres)) * d, d, q + i * d);
    printf("%zu vectors (%zu real chunk embeddings, %zu synthetic in %zu clusters), dim %u; %zu queries (%zu real)\n",
           N, nr, N - nr, centres, d, nq, nqt);

    uint32_t *shard = malloc(N * sizeof *shard);
    int64_t *truth = malloc(nq * K * sizeof *truth), *got = malloc(nq * K * sizeof *got);
    float *dist = malloc(nq * K * sizeof *dist);
    double *lat = malloc(nq * sizeof *lat);
    {
        rtr_vindex_plan p;
        rtr_vindex_plan_factory("Flat", N, d, 1, &p);
        rtr_vindex *ex;
        memset(shard, 0, N * sizeof *shard);
        if (rtr_vindex_create(&p, d, 1, NULL, 0, &ex) || rtr_vindex_add(ex, N, x, ids, shard) ||
            rtr_vindex_set_rerank(ex, 0))
            bench_die("bench_ann_synth", "exact");
        double t0 = rtr_now();
        if (rtr_vindex_search(ex, nq, q, K, dist, truth)) bench_die("bench_ann_synth", "exact search");
        printf("exact search: %.1f ms per query in a batch of %zu\n", (rtr_now() - t0) * 1e3 / (double)nq, nq);
        rtr_vindex_free(ex);
    }
    rtr_vindex_plan plan;
    if (rtr_vindex_plan_auto(N, d, 0, 2, &plan)) bench_die("bench_ann_synth", "plan");
    printf("automatic choice: %s, nprobe %u (%s)\n", plan.factory, plan.nprobe, plan.why);
    /* the search parameter and its values, the default first */
    int ivf = plan.nlist > 0;
    const char *pname = ivf ? "nprobe" : "rerank";
    uint32_t ivals[] = {plan.nprobe, 8, 16, 32, 64, 128, 256}, fvals[] = {RTR_VINDEX_RERANK, 16, 32, 64, 256, 512};
    uint32_t *vals = ivf ? ivals : fvals;
    size_t nvals = ivf ? sizeof ivals / sizeof *ivals : sizeof fvals / sizeof *fvals;
    float *tr = malloc(plan.train_n * d * sizeof *tr);
    for (uint64_t i = 0; i < plan.train_n; i++) memcpy(tr + i * d, x + (size_t)(i * N / plan.train_n) * d, d * sizeof *tr);
    for (uint32_t S = 1; S <= 2; S++) {
        rtr_vindex *v;
        double t0 = rtr_now();
        if (rtr_vindex_create(&plan, d, S, tr, plan.train_n, &v)) bench_die("bench_ann_synth", "create");
        double ttrain = rtr_now() - t0;
        for (size_t i = 0; i < N; i++) shard[i] = (uint32_t)(i % S);
        t0 = rtr_now();
        if (rtr_vindex_add(v, N, x, ids, shard)) bench_die("bench_ann_synth", "add");
        printf("\n%u shard%s: trained on %" PRIu64 " in %.1f s, added in %.1f s\n", S, S > 1 ? "s" : "", plan.train_n,
               ttrain, rtr_now() - t0);
        printf("%-8s %-10s %-14s %-14s %-12s %-12s\n", pname, "recall@10", "recall (real)", "recall (synth)",
               "single p50", "single p99");
        for (size_t pi = 0; pi < nvals; pi++) {
            if (pi && vals[pi] == vals[0]) continue;
            if (rtr_vindex_set_param(v, pname, vals[pi])) bench_die("bench_ann_synth", "parameter");
            /* warm-up: the flat shards' 4-bit codes are built by the first search */
            if (rtr_vindex_search(v, 1, q, K, dist, got) || rtr_vindex_search(v, nq, q, K, dist, got))
                bench_die("bench_ann_synth", "search");
            double r_all = recall(got, truth, nq), r_real = recall(got, truth, nqt),
                   r_syn = recall(got + nqt * K, truth + nqt * K, nq - nqt);
            for (size_t i = 0; i < nq; i++) {
                double s0 = rtr_now();
                rtr_vindex_search(v, 1, q + i * d, K, dist, got);
                lat[i] = (rtr_now() - s0) * 1e3;
            }
            double p50 = bench_pct(lat, nq, 0.5), p99 = bench_pct(lat, nq, 0.99);
            printf("%-8u %-10.4f %-14.4f %-14.4f %-12.3f %-12.3f%s\n", vals[pi], r_all, r_real, r_syn, p50, p99,
                   pi == 0 ? "  (default)" : "");
        }
        rtr_vindex_set_param(v, pname, vals[0]);
        size_t nb = nq / 32;
        for (size_t b = 0; b < nb; b++) {
            double s0 = rtr_now();
            rtr_vindex_search(v, 32, q + b * 32 * d, K, dist, got);
            lat[b] = (rtr_now() - s0) * 1e3;
        }
        double b50 = bench_pct(lat, nb, 0.5), b99 = bench_pct(lat, nb, 0.99);
        printf("batches of 32 at the default %s: p50", pname);
        printf(" %.2f ms, p99 %.2f ms per batch (%.3f ms per query)\n", b50, b99,
               b50 / 32);
        rtr_vindex_free(v);
    }
    rtr_store_txn_end(t);
    rtr_kb_vectors_close(ix);
    rtr_kb_close(kb);
    return 0;
}
