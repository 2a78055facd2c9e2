/* bench_util.h - small helpers shared by the benchmark programs (header-only). */
#ifndef RTR_BENCH_UTIL_H
#define RTR_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>

#include "lib/status.h"

static inline void bench_die(const char *prog, const char *what) {
    fprintf(stderr, "%s: %s: %s\n", prog, what, rtr_errdetail());
    exit(1);
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The p-quantile of v[0..n) (sorts v). */
static inline double bench_pct(double *v, size_t n, double p) {
    qsort(v, n, sizeof *v, bench_cmp_double);
    return v[(size_t)(p * (double)(n - 1) + 0.5)];
}

#endif
