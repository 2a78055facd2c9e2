/* bench_search.c - searches through the public API in one process: the rate and latency that
 * `retro serve`'s /v1/search is compared with (tests/bench/run_serve.sh).
 *
 *     bench_search KB QUERIES N [K]    # N searches cycling over the lines of QUERIES, k = K (default 5)
 *
 * Prints one JSON line: queries, seconds, qps, p50_ms, p99_ms. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "include/retro.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s KB QUERIES N [K]\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[3]), k = argc > 4 ? atoi(argv[4]) : 5;
    if (n < 1) bench_die(argv[0], "N must be positive");
    size_t nq;
    char **q = bench_read_lines(argv[0], argv[2], &nq);
    retro_kb *kb;
    if (retro_kb_open(argv[1], 0, NULL, &kb)) bench_die(argv[0], argv[1]);
    retro_search_opts so = {.k = (uint32_t)k};
    retro_results r;
    if (retro_search(kb, q[0], strlen(q[0]), &so, &r)) bench_die(argv[0], "search");   /* opens the index */
    retro_results_free(&r);
    double *lat = malloc((size_t)n * sizeof *lat), t0 = now();
    for (int i = 0; i < n; i++) {
        double t = now();
        if (retro_search(kb, q[i % nq], strlen(q[i % nq]), &so, &r)) bench_die(argv[0], "search");
        retro_results_free(&r);
        lat[i] = now() - t;
    }
    double el = now() - t0;
    printf("{\"queries\": %d, \"seconds\": %.3f, \"qps\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f}\n", n, el, n / el,
           1e3 * bench_pct(lat, (size_t)n, 0.5), 1e3 * bench_pct(lat, (size_t)n, 0.99));
    retro_kb_close(kb);
    for (size_t i = 0; i < nq; i++) free(q[i]);
    free(q);
    free(lat);
    return 0;
}
