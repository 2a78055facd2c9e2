/*
 * bench_tokenizer.c - encode throughput of the BPE tokenizer, one thread.
 *
 *   bench_tokenizer [--gpt2 DIR] [--tokenizer FILE] [--runs N] [--long MB] CORPUS_DIR
 *
 * Reads every *.txt file of CORPUS_DIR (name order) into memory, then for
 * each tokenizer given runs N times (default 5): a fresh encoder (empty word
 * cache) encodes every file as one document. Prints MB/s of each run (MB =
 * 10^6 bytes of input) and the median, plus a line
 *   RESULT name=<gpt2|rtok> median_mbps=<x> tokens=<n> bytes=<n>
 * for tests/bench/run_tokenizer.sh. --long MB also times one piece of MB
 * megabytes of 'a' and one of random letters (the O(n log n) merge path) and
 * reports the peak resident size.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "lib/alloc.h"
#include "lib/bpe.h"
#include "lib/io.h"
#include "lib/status.h"

typedef struct doc {
    uint8_t *data;
    size_t len;
} doc;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const char *what) {
    fprintf(stderr, "bench_tokenizer: %s: %s\n", what, rtr_errdetail());
    exit(1);
}

static size_t load_corpus(const char *dir, doc **out) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "bench_tokenizer: cannot open %s\n", dir);
        exit(1);
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".txt") != 0) continue;
        names = realloc(names, (n + 1) * sizeof *names);
        names[n++] = rtr_path_join(dir, e->d_name);
    }
    closedir(d);
    if (!n) {
        fprintf(stderr, "bench_tokenizer: no .txt files in %s\n", dir);
        exit(1);
    }
    qsort(names, n, sizeof *names, cmp_str);
    doc *docs = calloc(n, sizeof *docs);
    for (size_t i = 0; i < n; i++) {
        if (rtr_read_file(names[i], (size_t)1 << 30, &docs[i].data, &docs[i].len) != RTR_OK) die(names[i]);
        rtr_free(names[i]);
    }
    free(names);
    *out = docs;
    return n;
}

static void bench(const char *name, const rtr_tokenizer *t, const doc *docs, size_t n_docs, int runs) {
    size_t bytes = 0, tokens = 0;
    for (size_t i = 0; i < n_docs; i++) bytes += docs[i].len;
    double *mbps = calloc((size_t)runs, sizeof *mbps);
    rtr_u32vec ids = {0};
    printf("%s: %zu files, %.2f MB, %d runs\n", name, n_docs, (double)bytes / 1e6, runs);
    for (int r = 0; r < runs; r++) {
        rtr_encoder *e;
        tokens = 0;
        double t0 = now();
        if (rtr_encoder_new(t, &e) != RTR_OK) die("encoder");
        for (size_t i = 0; i < n_docs; i++) {
            ids.len = 0;
            if (rtr_encoder_encode(e, docs[i].data, docs[i].len, &ids) != RTR_OK) die("encode");
            tokens += ids.len;
        }
        rtr_encoder_free(e);
        double dt = now() - t0;
        mbps[r] = (double)bytes / 1e6 / dt;
        printf("  run %d: %.3f s, %.2f MB/s, %zu tokens\n", r + 1, dt, mbps[r], tokens);
    }
    qsort(mbps, (size_t)runs, sizeof *mbps, cmp_dbl);
    double med = runs % 2 ? mbps[runs / 2] : (mbps[runs / 2 - 1] + mbps[runs / 2]) / 2;
    printf("  median: %.2f MB/s\n", med);
    printf("RESULT name=%s median_mbps=%.2f tokens=%zu bytes=%zu\n", name, med, tokens, bytes);
    rtr_u32vec_free(&ids);
    free(mbps);
}

static void bench_long(const char *name, const rtr_tokenizer *t, size_t mb) {
    size_t n = mb * 1000000;
    uint8_t *buf = malloc(n);
    uint64_t x = 88172645463325252ull;
    for (int kind = 0; kind < 2; kind++) {
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = kind ? (uint8_t)('a' + x % 26) : 'a';
        }
        rtr_encoder *e;
        rtr_u32vec ids = {0};
        if (rtr_encoder_new(t, &e) != RTR_OK) die("encoder");
        double t0 = now();
        if (rtr_encoder_encode(e, buf, n, &ids) != RTR_OK) die("encode long piece");
        double dt = now() - t0;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("%s: one %zu MB piece of %s: %.2f s, %zu tokens, peak RSS %.0f MB\n", name, mb,
               kind ? "random letters" : "'a'", dt, ids.len, (double)ru.ru_maxrss / 1024);
        rtr_u32vec_free(&ids);
        rtr_encoder_free(e);
    }
    free(buf);
}

int main(int argc, char **argv) {
    const char *gpt2 = NULL, *rtok = NULL, *corpus = NULL;
    int runs = 5;
    size_t long_mb = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--gpt2") && i + 1 < argc) gpt2 = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) rtok = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--long") && i + 1 < argc) long_mb = (size_t)atol(argv[++i]);
        else if (argv[i][0] != '-' && !corpus) corpus = argv[i];
        else {
            fprintf(stderr, "usage: bench_tokenizer [--gpt2 DIR] [--tokenizer FILE] [--runs N] [--long MB] CORPUS_DIR\n");
            return 2;
        }
    }
    if (runs < 1 || (!corpus && !long_mb)) {
        fprintf(stderr, "usage: bench_tokenizer [--gpt2 DIR] [--tokenizer FILE] [--runs N] [--long MB] CORPUS_DIR\n");
        return 2;
    }
    doc *docs = NULL;
    size_t n_docs = corpus ? load_corpus(corpus, &docs) : 0;
    const char *names[2] = {"gpt2", "rtok"};
    for (int k = 0; k < 2; k++) {
        const char *src = k ? rtok : gpt2;
        if (!src) continue;
        rtr_tokenizer *t;
        int rc = k ? rtr_tokenizer_load(src, &t) : rtr_tokenizer_load_gpt2(src, &t);
        if (rc) die(src);
        if (n_docs) bench(names[k], t, docs, n_docs, runs);
        if (long_mb) bench_long(names[k], t, long_mb);
        rtr_tokenizer_free(t);
    }
    for (size_t i = 0; i < n_docs; i++) rtr_free(docs[i].data);
    free(docs);
    return 0;
}
