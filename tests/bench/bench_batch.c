/*
 * bench_batch.c - decoding several generations together (continuous batching, the server's
 * --parallel slots) against one alone, in process, through the public API: the measure
 * of `retro serve` without the HTTP client sharing the cores.
 *
 *   bench_batch MODEL KB [TOKENS] [STREAMS] [RUNS]
 *
 * Greedy decoding of TOKENS tokens (default 256, the end token never sampled) from one prompt:
 * first a batch with a single generation, then STREAMS (default 8) generations decoded together;
 * median of RUNS (default 3) of each. Prints one JSON line: the tokens per second of one
 * stream, of STREAMS together (in all), their ratio, and the shares of the time (of the last run
 * of each) that retrieving neighbours and encoding them took (the generations' own times summed:
 * encodings of streams decoded together run on several threads, so theirs can pass the wall
 * time's share). The prompts' prefill is not timed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "include/retro.h"

static const char PROMPT[] =
    "Mr. Speaker, Mr. Vice President, Members of the Congress, my fellow Americans: tonight I want to talk "
    "about the economy, about jobs and about the future of our children, about taxes and the budget, and "
    "about our place in the world.";

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Tokens per second of `streams` generations of n tokens decoded together (prefill untimed); share[0]
 * and share[1] get the parts of the time their retrievals and their neighbour encodings took. */
static double run(retro_model *m, retro_kb *kb, int streams, int n, double *share) {
    retro_batch *b;
    if (retro_batch_new(m, streams, &b)) bench_die("bench_batch", "batch");
    retro_gen_opts o;
    retro_gen_opts_default(&o);
    o.temperature = 0;
    o.max_tokens = n;
    o.ignore_end = 1;
    o.kb = kb;
    int slot[256];
    for (int i = 0; i < streams; i++)
        if (retro_batch_add(b, PROMPT, strlen(PROMPT), &o, &slot[i])) bench_die("bench_batch", "add");
    long tokens = 0;
    int running = streams;
    double t0 = now();
    while (running > 0) {
        tokens += running;
        if (retro_batch_step(b, &running)) bench_die("bench_batch", "step");
    }
    double s = now() - t0, ret = 0, enc = 0;
    for (int i = 0; i < streams; i++) {
        retro_gen_result r;
        if (retro_batch_take(b, slot[i], &r)) bench_die("bench_batch", "take");
        ret += r.retrieval_s;
        enc += r.encode_s;
        retro_gen_result_free(&r);
    }
    share[0] = ret / s;
    share[1] = enc / s;
    retro_batch_free(b);
    return (double)tokens / s;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_batch MODEL KB [TOKENS] [STREAMS] [RUNS]\n");
        return 2;
    }
    int n = argc > 3 ? atoi(argv[3]) : 256, streams = argc > 4 ? atoi(argv[4]) : 8, runs = argc > 5 ? atoi(argv[5]) : 3;
    if (n < 1 || streams < 1 || streams > 256 || runs < 1 || runs > 99) bench_die("bench_batch", "arguments");
    retro_model *m;
    retro_kb *kb;
    if (retro_model_load(argv[1], NULL, &m)) bench_die("bench_batch", argv[1]);
    if (retro_kb_open(argv[2], 0, NULL, &kb)) bench_die("bench_batch", argv[2]);
    double one[99], many[99], share1[2] = {0}, sharen[2] = {0};
    for (int r = 0; r < runs; r++) {   /* alternated, so that a drift of the machine's speed hits both */
        one[r] = run(m, kb, 1, n, share1);
        many[r] = run(m, kb, streams, n, sharen);
    }
    qsort(one, (size_t)runs, sizeof *one, cmp_double);
    qsort(many, (size_t)runs, sizeof *many, cmp_double);
    double a = one[runs / 2], b = many[runs / 2];
    printf("{\"tokens\":%d,\"streams\":%d,\"one_tps\":%.1f,\"together_tps\":%.1f,\"ratio\":%.3f,"
           "\"retrieval_share_one\":%.3f,\"retrieval_share_together\":%.3f,"
           "\"encode_share_one\":%.3f,\"encode_share_together\":%.3f}\n",
           n, streams, a, b, b / a, share1[0], sharen[0], share1[1], sharen[1]);
    retro_kb_close(kb);
    retro_model_free(m);
    return 0;
}
