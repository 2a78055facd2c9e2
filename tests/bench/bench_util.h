/* bench_util.h - small helpers shared by the benchmark programs (header-only). */
#ifndef RTR_BENCH_UTIL_H
#define RTR_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The non-empty lines of a file (without their newlines, at most 4095 bytes each): *n of them, the
 * caller's (free each, then the array); dies when the file cannot be read or holds none. */
static inline char **bench_read_lines(const char *prog, const char *path, size_t *n) {
    FILE *f = fopen(path, "r");
    if (!f) bench_die(prog, path);
    char **q = NULL, line[4096];
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!*line) continue;
        q = realloc(q, (*n + 1) * sizeof *q);
        if (!q || !(q[*n] = strdup(line))) bench_die(prog, "out of memory");
        ++*n;
    }
    fclose(f);
    if (!*n) bench_die(prog, "no lines");
    return q;
}

#endif
