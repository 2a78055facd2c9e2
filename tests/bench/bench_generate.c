/*
 * bench_generate.c - generation speed at batch 1: KV-cached decoding with
 * live retrieval, the same with retrieval off, and decoding that recomputes
 * the whole context for every token (what the public PyTorch and Megatron
 * RETRO implementations do), in one run, on the same prompt and tokens.
 *
 *   bench_generate MODEL KB [TOKENS] [RUNS]
 *
 * Greedy decoding of TOKENS tokens (default 192) after a 64-token prompt,
 * median of RUNS (default 3). Prints tokens/s for each and the share of the
 * cached run's time spent retrieving neighbours (embedding the chunk, the
 * search, fetching the neighbours' tokens) and encoding them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "index/kb.h"
#include "lib/progress.h"
#include "model/ckpt.h"
#include "model/infer.h"
#include "model/retro.h"
#include "retriever/live.h"

static const char PROMPT[] =
    "Mr. Speaker, Mr. Vice President, Members of the Congress, my fellow Americans: tonight I want to talk "
    "about the economy, about jobs and about the future of our children, about taxes and the budget, and "
    "about our place in the world.";

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_generate MODEL KB [TOKENS] [RUNS]\n");
        return 2;
    }
    int n = argc > 3 ? atoi(argv[3]) : 192, runs = argc > 4 ? atoi(argv[4]) : 3;
    rtr_loaded_model lm;
    if (rtr_ckpt_load_model(argv[1], NULL, 1, 0, &lm)) bench_die("bench_generate", argv[1]);
    rtr_model *m = lm.model;
    const rtr_tokenizer *tok = lm.tok;
    const rtr_model_config *c = rtr_model_cfg(m);
    rtr_kb *kb;
    rtr_live nb = {.k = (uint32_t)c->K, .min_score = -INFINITY, .align = lm.align};
    if (rtr_kb_open(argv[2], 0, NULL, NULL, &kb) || rtr_kb_check_tokenizer(kb, tok) ||
        rtr_retriever_open(kb, NULL, &nb.r))
        bench_die("bench_generate", argv[2]);
    rtr_encoder *enc;
    rtr_u32vec ids = {0};
    if (rtr_encoder_new(tok, &enc) || rtr_encoder_encode(enc, (const uint8_t *)PROMPT, strlen(PROMPT), &ids))
        bench_die("bench_generate", "tokenize");
    int np = ids.len < 64 ? (int)ids.len : 64;
    if (np + n > c->T) n = c->T - np;   /* within one window, so the recomputing decoder sees the same context */
    int32_t *seq = malloc((size_t)c->T * sizeof *seq);
    for (int i = 0; i < np; i++) seq[i] = (int32_t)ids.data[i];
    rtr_session *s;
    if (rtr_session_new(m, &s)) bench_die("bench_generate", "session");
    double t_on[16], t_off[16], t_re[16], sh_r[16], sh_e[16];
    int32_t *gen_on = malloc((size_t)n * sizeof *gen_on), *gen_re = malloc((size_t)n * sizeof *gen_re);
    if (runs > 16) runs = 16;
    for (int r = 0; r < runs; r++) {
        for (int mode = 0; mode < 2; mode++) {   /* cached, retrieval on then off */
            rtr_session_reset(s);
            rtr_session_set_retrieval(s, mode == 0 && c->n_cca ? rtr_live_retrieve : NULL, &nb);
            rtr_session_times a, b;
            rtr_session_times_get(s, &a);
            const float *lg;
            double t0 = rtr_now();
            if (rtr_session_feed(s, seq, np, &lg)) bench_die("bench_generate", "feed");
            for (int i = 0; i < n; i++) {
                int32_t best = 0;
                for (int v = 1; v < c->V; v++)
                    if (lg[v] > lg[best]) best = v;
                if (mode == 0) gen_on[i] = best;
                if (i + 1 < n && rtr_session_feed(s, &best, 1, &lg)) bench_die("bench_generate", "feed");
            }
            double el = rtr_now() - t0;
            rtr_session_times_get(s, &b);
            if (mode == 0) {
                t_on[r] = el;
                sh_r[r] = (b.retrieve - a.retrieve) / el;
                sh_e[r] = (b.encode - a.encode) / el;
            } else {
                t_off[r] = el;
            }
        }
        /* recompute the whole context for every token, with retrieval: the
         * neighbours of every complete chunk, retrieved once when it completes */
        int Lc = c->T / c->m, KR = c->K * c->R;
        int32_t *nbr = malloc((size_t)Lc * KR * sizeof *nbr), *ctx = malloc((size_t)c->T * sizeof *ctx);
        for (int i = 0; i < Lc * KR; i++) nbr[i] = -1;
        memcpy(ctx, seq, (size_t)np * sizeof *ctx);
        int len = np, done_chunks = 0;
        double t0 = rtr_now();
        for (int i = 0; i < n; i++) {
            while (c->n_cca && (done_chunks + 1) * c->m <= len) {   /* newly complete chunks */
                if (rtr_live_retrieve(&nb, ctx + done_chunks * c->m, 1, done_chunks, nbr + (size_t)done_chunks * KR))
                    bench_die("bench_generate", "retrieve");
                done_chunks++;
            }
            int Tp = (len + c->m - 1) / c->m * c->m;   /* the forward pass wants whole chunks */
            for (int j = len; j < Tp; j++) ctx[j] = 0;
            if (rtr_model_forward(m, ctx, NULL, c->n_cca ? nbr : NULL, 1, Tp, NULL)) bench_die("bench_generate", "fwd");
            const float *lg = rtr_model_logits(m) + (size_t)(len - 1) * c->V;
            int32_t best = 0;
            for (int v = 1; v < c->V; v++)
                if (lg[v] > lg[best]) best = v;
            gen_re[i] = best;
            ctx[len++] = best;
        }
        t_re[r] = rtr_now() - t0;
        free(nbr);
        free(ctx);
    }
    int same = 0;
    while (same < n && gen_on[same] == gen_re[same]) same++;
    double on = bench_pct(t_on, (size_t)runs, 0.5), off = bench_pct(t_off, (size_t)runs, 0.5);
    double re = bench_pct(t_re, (size_t)runs, 0.5);
    double shr = bench_pct(sh_r, (size_t)runs, 0.5), she = bench_pct(sh_e, (size_t)runs, 0.5);
    printf("model %s: %zu parameters, context %d, %d CCA layers; prompt %d tokens, %d generated, median of %d\n",
           argv[1], rtr_model_nparams(m), c->T, c->n_cca, np, n, runs);
    printf("  KV-cached, retrieval on:   %8.1f tokens/s (retrieval: %.1f%% of the time; encoding the neighbours: "
           "%.1f%%)\n", n / on, 100 * shr, 100 * she);
    printf("  KV-cached, retrieval off:  %8.1f tokens/s (retrieval on costs %.1f%%)\n", n / off,
           100 * (on - off) / on);
    printf("  recompute every token:     %8.1f tokens/s (KV-cached is %.1fx faster)\n", n / re, re / on);
    printf("  the greedy tokens of the cached and the recomputing decoder agree for %d of %d\n", same, n);
    rtr_session_free(s);
    rtr_retriever_close(nb.r);
    rtr_kb_close(kb);
    rtr_encoder_free(enc);
    rtr_u32vec_free(&ids);
    rtr_loaded_model_free(&lm);
    free(seq);
    free(gen_on);
    free(gen_re);
    return 0;
}
