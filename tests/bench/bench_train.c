/*
 * bench_train.c - training throughput of the RETRO model (forward, backward,
 * AdamW) on random tokens and neighbours, the model FLOPs it achieves, and
 * its memory against the estimate.
 *
 *   bench_train [--threads N] [--steps S] [--warmup W] [--baseline]
 *               [--V 4096 --C 256 --L 6 --NH 4 --T 512 --B 4 --K 2 --EC 128 --cca 3,6]
 *
 * Prints one JSON line: the median step time, tokens/s, model GFLOP/s (the
 * FLOPs rtr_model_train_flops counts: matrix products and attention, 2 per
 * multiply-add, backward twice forward), parameters, and memory: peak RSS
 * against parameters + gradients + AdamW moments + activations + scratch.
 * The same options run tests/tools/retro_ref.py bench (PyTorch) on the same
 * architecture; tests/bench/run_train.sh runs both.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_util.h"
#include "lib/progress.h"
#include "model/retro.h"

int main(int argc, char **argv) {
    rtr_model_config c;
    rtr_model_config_default(&c, 4096);
    int threads = 2, steps = 10, warm = 2, B = 4, baseline = 0;
    const char *cca = "3,6";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
        int used = 1;
        if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--warmup")) warm = atoi(v);
        else if (!strcmp(a, "--V")) c.V = atoi(v);
        else if (!strcmp(a, "--C")) c.C = atoi(v);
        else if (!strcmp(a, "--L")) c.L = atoi(v);
        else if (!strcmp(a, "--NH")) c.NH = atoi(v);
        else if (!strcmp(a, "--T")) c.T = atoi(v);
        else if (!strcmp(a, "--B")) B = atoi(v);
        else if (!strcmp(a, "--K")) c.K = atoi(v);
        else if (!strcmp(a, "--EC")) c.EC = atoi(v);
        else if (!strcmp(a, "--cca")) cca = v;
        else if (!strcmp(a, "--baseline")) baseline = 1, used = 0;
        else {
            fprintf(stderr, "bench_train: unknown option %s\n", a);
            return 2;
        }
        i += used;
    }
    c.n_cca = 0;
    if (!baseline)
        for (const char *p = cca; *p;) {
            c.cca[c.n_cca++] = atoi(p);
            p = strchr(p, ',');
            if (!p) break;
            p++;
        }
    if (rtr_model_config_finish(&c) < 0) bench_die("bench_train", "config");
    rtr_set_threads(threads);
    rtr_model *m;
    if (rtr_model_new(&c, B, &m) < 0) bench_die("bench_train", "model");
    rtr_model_init(m, 1);
    size_t N = (size_t)B * c.T, NE = (size_t)B * (c.T / c.m) * c.K * c.R;
    int32_t *idx = malloc(N * 4), *tg = malloc(N * 4), *nbr = malloc(NE * 4);
    uint64_t s = 7;
    for (size_t i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        idx[i] = (int32_t)((s >> 33) % (uint64_t)c.V);
        tg[i] = (int32_t)((s >> 13) % (uint64_t)c.V);
    }
    for (size_t i = 0; i < NE; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        nbr[i] = (int32_t)((s >> 33) % (uint64_t)c.V);
    }
    rtr_adamw hp;
    rtr_adamw_default(&hp);
    double *t = malloc((size_t)steps * sizeof *t);
    float loss = 0;
    for (int i = 0; i < warm + steps; i++) {
        double t0 = rtr_now();
        if (rtr_model_forward(m, idx, tg, baseline ? NULL : nbr, B, c.T, &loss) < 0 || rtr_model_zero_grad(m) < 0 ||
            rtr_model_backward(m) < 0)
            bench_die("bench_train", "step");
        rtr_model_adamw(m, &hp, 1e-4f);
        if (i >= warm) t[i - warm] = rtr_now() - t0;
    }
    double med = bench_pct(t, (size_t)steps, 0.5);
    double flops = rtr_model_train_flops(&c, B, c.T, !baseline);
    size_t P = rtr_model_nparams(m);
    /* the estimate: four float buffers of the parameters (weights, gradients,
     * two moments), the activations, the backward scratch */
    double est = 4.0 * P * 4 + (double)rtr_model_act_bytes(m) + (double)rtr_model_scratch_bytes(m);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\":\"retro\",\"threads\":%d,\"steps\":%d,\"baseline\":%d,\"step_ms_median\":%.1f,"
           "\"tokens_per_s\":%.1f,\"gflops\":%.2f,\"model_gflop_per_step\":%.3f,\"params\":%zu,"
           "\"peak_rss_mb\":%.1f,\"estimate_mb\":%.1f,\"activations_mb\":%.1f,\"loss\":%.4f}\n",
           threads, steps, baseline, med * 1e3, (double)N / med, flops / med * 1e-9, flops * 1e-9, P,
           ru.ru_maxrss / 1024.0, est / 1048576.0, rtr_model_act_bytes(m) / 1048576.0, loss);
    free(t);
    free(idx);
    free(tg);
    free(nbr);
    rtr_model_free(m);
    return 0;
}
