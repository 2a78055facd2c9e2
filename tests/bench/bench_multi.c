/* bench_multi.c - searches over the partitions of a knowledge base by the ranks of a job, in one
 * job (no process start per query): what `retro search` under mpirun costs per query once running
 * (tests/bench/run_mpi.sh).
 *
 *     mpirun -np R bench_multi KB QUERIES N [K] [MODE]   # N searches cycling over QUERIES' lines
 *
 * Rank 0 prints one JSON line: ranks, queries, qps, p50_ms, p99_ms, and the payload bytes that the
 * ranks gave the collectives per query (lib/comm.h, rtr_comm_stats: rank 0's broadcast and the
 * others' hits). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "lib/comm.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "retriever/multi.h"

int main(int argc, char **argv) {
    if (rtr_comm_init(&argc, &argv)) bench_die(argv[0], "mpi");
    rtr_comm *c = rtr_comm_world();
    if (argc < 4) {
        fprintf(stderr, "usage: %s KB QUERIES N [K] [vector|lexical|hybrid]\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[3]), k = argc > 4 ? atoi(argv[4]) : 5;
    int mode = argc > 5 ? (!strcmp(argv[5], "lexical") ? RTR_SEARCH_LEXICAL
                           : !strcmp(argv[5], "hybrid") ? RTR_SEARCH_HYBRID : RTR_SEARCH_VECTOR)
                        : RTR_SEARCH_DEFAULT;
    if (n < 1) bench_die(argv[0], "N must be positive");
    size_t nq;
    char **q = bench_read_lines(argv[0], argv[2], &nq);
    rtr_parts *ps;
    rtr_multi *m;
    if (rtr_parts_open(argv[1], 0, 0, NULL, c, &ps) || rtr_multi_open(ps, NULL, &m)) bench_die(argv[0], "search");
    rtr_search_opts so = {.mode = mode};
    rtr_hits h;
    if (rtr_multi_search(m, q[0], strlen(q[0]), (uint32_t)k, &so, &h)) bench_die(argv[0], "search");   /* loads */
    rtr_hits_free(&h);
    uint64_t calls0, sent0, calls1, sent1;
    rtr_comm_stats(c, &calls0, &sent0);
    double *lat = malloc((size_t)n * sizeof *lat), t0 = rtr_now();
    for (int i = 0; i < n; i++) {
        double t = rtr_now();
        if (rtr_multi_search(m, q[i % nq], strlen(q[i % nq]), (uint32_t)k, &so, &h)) bench_die(argv[0], "search");
        rtr_hits_free(&h);
        lat[i] = rtr_now() - t;
    }
    double el = rtr_now() - t0;
    rtr_comm_stats(c, &calls1, &sent1);
    uint64_t v[2] = {calls1 - calls0, sent1 - sent0};
    if (rtr_comm_sum_u64(c, v, 2)) bench_die(argv[0], "search");
    if (rtr_comm_rank(c) == 0)
        printf("{\"ranks\": %d, \"partitions\": %u, \"queries\": %d, \"qps\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
               "\"collectives_per_query\": %.1f, \"payload_bytes_per_query\": %.0f}\n",
               rtr_comm_size(c), rtr_parts_count(ps), n, n / el, 1e3 * bench_pct(lat, (size_t)n, 0.5),
               1e3 * bench_pct(lat, (size_t)n, 0.99), (double)v[0] / n / rtr_comm_size(c), (double)v[1] / n);
    rtr_multi_close(m);
    rtr_parts_close(ps);
    for (size_t i = 0; i < nq; i++) free(q[i]);
    free(q);
    free(lat);
    rtr_comm_finalize(0);
    return 0;
}
