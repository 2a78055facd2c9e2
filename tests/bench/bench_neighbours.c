/*
 * bench_neighbours.c - precomputing training neighbours: for every chunk of a
 * knowledge base (or the first LIMIT), its k nearest chunks from other
 * documents with their continuations, through rtr_retriever_neighbours, the
 * call training uses.
 *
 *   bench_neighbours KB [K] [LIMIT]
 *
 * An inverted file is searched through its batch codes (index/vindex.h),
 * made before the timing starts (their time is printed). Environment:
 * BENCH_NBR_NPROBE=N lists probed through them (default: the index's);
 * BENCH_NBR_NOBATCH=1 searches as single queries are, at the index's
 * nprobe (the way before the codes); BENCH_NBR_TRUTH=Q compares the
 * neighbours of the first Q chunks with an exhaustive search (every list
 * probed) of the same vectors: recall@K.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/vindex.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "retriever/retriever.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_neighbours KB [K] [LIMIT]\n");
        return 2;
    }
    uint32_t k = argc > 2 ? (uint32_t)atoi(argv[2]) : 2;
    size_t limit = argc > 3 ? (size_t)atol(argv[3]) : SIZE_MAX;
    rtr_kb *kb;
    rtr_retriever *r;
    rtr_retriever_opts ro = {.batch_nprobe = getenv("BENCH_NBR_NOBATCH") ? -1 : 0};
    if (getenv("BENCH_NBR_NPROBE") && !getenv("BENCH_NBR_NOBATCH")) ro.batch_nprobe = atoi(getenv("BENCH_NBR_NPROBE"));
    if (rtr_kb_open(argv[1], 0, NULL, NULL, &kb) || rtr_retriever_open(kb, &ro, &r)) {
        fprintf(stderr, "bench_neighbours: %s\n", rtr_errdetail());
        return 1;
    }
    rtr_store_txn *t;
    rtr_store_read_begin(rtr_kb_store(kb), &t);
    rtr_store_stats st;
    rtr_store_get_stats(t, &st);
    size_t n = st.n_chunks < limit ? st.n_chunks : limit;
    int32_t *q = malloc(n * 64 * sizeof *q), *tok = malloc((size_t)16384 * k * 128 * sizeof *tok);
    uint64_t *self = malloc(n * sizeof *self), after = 0, tokens = 0;
    int64_t *ids = malloc(n * k * sizeof *ids);
    rtr_chunk c;
    for (size_t i = 0; i < n && rtr_store_next_chunk(t, after, &c) == RTR_OK; i++) {
        after = c.id;
        for (int j = 0; j < 64; j++) q[i * 64 + j] = j < (int)c.n_tokens ? (int32_t)c.tokens[j] : -1;
        self[i] = c.doc_id;
        tokens += c.n_tokens;
    }
    rtr_store_txn_end(t);
    rtr_vindex *vx;
    if (rtr_retriever_vindex(r, &vx)) {
        fprintf(stderr, "bench_neighbours: %s\n", rtr_errdetail());
        return 1;
    }
    double t0 = rtr_now();
    if (ro.batch_nprobe >= 0 && rtr_vindex_batch_prepare(vx)) {
        fprintf(stderr, "bench_neighbours: %s\n", rtr_errdetail());
        return 1;
    }
    uint64_t bytes = rtr_vindex_batch_bytes(vx);
    if (bytes)
        printf("batch codes: %.1f s, %.0f MB, %u lists probed, %d re-ranked\n", rtr_now() - t0, (double)bytes / 1e6,
               rtr_vindex_batch_nprobe(vx), RTR_VINDEX_BATCH_RERANK);
    else
        printf("no batch codes: each lookup searched as a single query is\n");
    printf("%zu chunks (%" PRIu64 " tokens); index %s, nprobe %u; k = %u, own document excluded\n", n, tokens,
           rtr_vindex_factory(vx), rtr_vindex_nprobe(vx), k);
    t0 = rtr_now();
    for (size_t lo = 0; lo < n; lo += 16384) {
        size_t m = n - lo < 16384 ? n - lo : 16384;
        rtr_nbr_opts no = {.k = k, .self_doc = self + lo};
        if (rtr_retriever_neighbours(r, q + lo * 64, m, &no, &(rtr_nbrs){.ids = ids + lo * k, .tokens = tok})) {
            fprintf(stderr, "bench_neighbours: %s\n", rtr_errdetail());
            return 1;
        }
    }
    double s = rtr_now() - t0;
    size_t missing = 0;
    for (size_t i = 0; i < n * k; i++) missing += ids[i] < 0;
    printf("%.1f s: %.0f chunks/s, %.2f M tokens/s; %zu of %zu neighbours missing\n", s, (double)n / s,
           (double)tokens / s / 1e6, missing, n * k);
    size_t nt = getenv("BENCH_NBR_TRUTH") ? (size_t)atol(getenv("BENCH_NBR_TRUTH")) : 0;
    if (nt > n) nt = n;
    if (nt && rtr_vindex_nlist(vx)) {   /* every list probed: an exact search, in calls too small for the codes */
        int64_t *truth = malloc(nt * k * sizeof *truth);
        rtr_vindex_set_nprobe(vx, rtr_vindex_nlist(vx));
        t0 = rtr_now();
        for (size_t lo = 0; lo < nt; lo += RTR_NBR_BATCH - 1) {
            size_t m = nt - lo < RTR_NBR_BATCH - 1 ? nt - lo : RTR_NBR_BATCH - 1;
            rtr_nbr_opts no = {.k = k, .self_doc = self + lo};
            if (rtr_retriever_neighbours(r, q + lo * 64, m, &no, &(rtr_nbrs){.ids = truth + lo * k})) {
                fprintf(stderr, "bench_neighbours: %s\n", rtr_errdetail());
                return 1;
            }
        }
        size_t hit = 0, want = 0;
        for (size_t i = 0; i < nt; i++)
            for (uint32_t a = 0; a < k; a++) {
                if (truth[i * k + a] < 0) continue;
                want++;
                for (uint32_t b = 0; b < k; b++) hit += ids[i * k + b] == truth[i * k + a];
            }
        printf("recall@%u against an exhaustive search of the first %zu: %.4f (exhaustive: %.1f s)\n", k, nt,
               want ? (double)hit / (double)want : 0.0, rtr_now() - t0);
        free(truth);
    }
    rtr_retriever_close(r);
    rtr_kb_close(kb);
    return 0;
}
