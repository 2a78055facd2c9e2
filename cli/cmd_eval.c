/* cmd_eval.c - `retro eval`: bits per byte and perplexity on held-out text,
 * with retrieval on and off, for one or more models, and the RETRO paper's
 * leakage filter (bpb over the chunks whose overlap with their nearest
 * neighbours is at most alpha). */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/dataset.h"
#include "cli/gen.h"
#include "cli/nbr.h"
#include "index/kb.h"
#include "index/store.h"
#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"
#include "model/retro.h"

static const char eval_usage[] =
    "usage: retro eval --model DIR [--model DIR ...] --kb KB (--split val | FILE...) [options]\n"
    "\n"
    "Bits per byte (and perplexity) of each model on held-out text: the validation\n"
    "documents of KB (as retro train splits them) or text files. A RETRO model is\n"
    "evaluated with retrieval on and off. Text is read in windows of the model's\n"
    "context sliding by --stride tokens; every token after a document's first is\n"
    "scored once. Neighbours never come from the evaluated document; with --split,\n"
    "never from any validation document (KB then holds the training documents only).\n"
    "With --min-score, a RETRO model reads only the neighbours whose score (cosine\n"
    "similarity) reaches it, one run per value: a chunk with none is predicted from\n"
    "its context alone (a RETRO-fitted model then gives its baseline's prediction).\n"
    "\n"
    "The leakage filter (the RETRO paper, section 4): for every evaluated 64-token\n"
    "chunk, its 10 nearest neighbours in KB, s the longest token sequence the chunk\n"
    "shares with one of them (its chunk and continuation), overlap = s/64; bpb over\n"
    "the chunks with overlap <= alpha, for alpha = 0, 12.5%, 25%, 50%, 100%.\n"
    "\n"
    "options:\n"
    "  --model DIR           a checkpoint directory (repeatable)\n"
    "  --kb KB               knowledge base for neighbours (and for --split val)\n"
    "  --split val|train     evaluate KB's validation (or training) documents\n"
    "  --val-frac X          the validation share retro train used (default 0.05)\n"
    "  --stride S            window stride, a multiple of 64 (default: half the context)\n"
    "  --min-score S         withhold neighbours scoring below S, in [-1, 1]\n"
    "                        (repeatable: one run per value)\n"
    "  --leak                let neighbours come from the evaluated document itself\n"
    "                        (the leakage case that shows the mechanism)\n"
    "  --exclude-doc ID      never retrieve from document ID (repeatable)\n"
    "  --max-docs N          evaluate at most N documents\n"
    "  --threads N           threads (default: all cores)\n"
    "  --json                one JSON object instead of the tables\n";

#define CH RTR_CHUNK_TOKENS          /* chunk */
#define NL (2 * RTR_CHUNK_TOKENS)    /* neighbour length */
#define MAX_MODELS 8
#define MAX_SCORES 8
#define LEAK_K 10
#define N_ALPHA 5
#define EVAL_BATCH 8   /* windows per forward pass */
static const double ALPHA[N_ALPHA] = {0, 0.125, 0.25, 0.5, 1.0};

/* One evaluated run: a model with retrieval on or off. */
typedef struct run {
    int model, retrieval;
    float min_score;            /* CLI_NO_MIN_SCORE: every neighbour is read */
    double nats, bytes;
    int64_t tokens, nbr_read, nbr_all;   /* neighbours read, of those retrieved for the model */
    double a_nats[N_ALPHA], a_bytes[N_ALPHA];
} run;

typedef struct ev {
    rtr_model *models[MAX_MODELS];
    const char *paths[MAX_MODELS];
    uint32_t align[MAX_MODELS];   /* each model's neighbour alignment (cli/nbr.h; 0: the paper's) */
    uint32_t align_run;           /* the one that the aligning models share (0: none aligns) */
    int n_models;
    run runs[(MAX_SCORES + 1) * MAX_MODELS];
    int n_runs;
    const rtr_tokenizer *tok;
    float *tok_bytes;
    int64_t a_chunks[N_ALPHA], chunks;
    int leak;
    cli_nbr nb;
} ev;

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Longest common substring of token arrays a (na) and b (nb); -1 tokens never match. */
static int lcs(const int32_t *a, int na, const int32_t *b, int nb) {
    int prev[NL + 1] = {0}, cur[NL + 1] = {0}, best = 0;
    for (int i = 1; i <= na; i++) {
        for (int j = 1; j <= nb; j++) {
            cur[j] = a[i - 1] >= 0 && a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : 0;
            if (cur[j] > best) best = cur[j];
        }
        memcpy(prev, cur, sizeof prev);
    }
    return best;
}

/* Per-position losses over the scored targets of one window batch. */
static double token_nats(const float *lg, int V, int32_t target) {
    float mx = lg[0];
    for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
    double z = 0;
    for (int v = 0; v < V; v++) z += exp((double)(lg[v] - mx));
    return log(z) - (double)(lg[target] - mx);
}

/* Evaluates one document x (n tokens) whose chunks have neighbours nbr
 * (n_chunks, kk, NL), the same aligned in nbr_al (NULL if no model aligns),
 * with scores sc (n_chunks, kk) and overlaps ov (n_chunks). */
static int eval_doc(ev *e, const int32_t *x, int64_t n, const int32_t *nbr_paper, const int32_t *nbr_al,
                    const float *sc, int kk, const double *ov, int stride) {
    int64_t nch = (n + CH - 1) / CH;
    double *cn = rtr_calloc((size_t)nch, sizeof *cn), *cb = rtr_calloc((size_t)nch, sizeof *cb);
    int rc = cn && cb ? RTR_OK : rtr_seterr(RTR_E_NOMEM, "eval: out of memory");
    for (int ri = 0; !rc && ri < e->n_runs; ri++) {
        run *r = &e->runs[ri];
        rtr_model *m = e->models[r->model];
        const int32_t *nbr = e->align[r->model] ? nbr_al : nbr_paper;
        const rtr_model_config *c = rtr_model_cfg(m);
        int T = c->T, Lc = T / CH, S = stride > 0 ? stride : (T / 2 / CH) * CH;
        if (S < CH) S = CH;
        if (S > T) S = T;
        memset(cn, 0, (size_t)nch * sizeof *cn);
        memset(cb, 0, (size_t)nch * sizeof *cb);
        for (int64_t u = 0; r->retrieval && u < nch; u++)
            for (int k = 0; k < c->K && k < kk; k++) {
                float s = sc[(size_t)u * kk + k];
                r->nbr_all += !isnan(s);
                r->nbr_read += !isnan(s) && s >= r->min_score;
            }
        /* the windows: w covers inputs [w, w+T) and scores targets w+1+j for j >= from */
        int64_t nw = 0, *ws = rtr_malloc((size_t)(n / S + 2) * sizeof *ws);
        for (int64_t w = 0; ws && w + 1 < n; w += S) {
            ws[nw++] = w;
            if (w + T >= n) break;
        }
        int B = EVAL_BATCH;
        int32_t *in = rtr_malloc((size_t)B * T * sizeof *in), *tg = rtr_malloc((size_t)B * T * sizeof *tg);
        size_t per = (size_t)Lc * c->K * NL;
        int32_t *wn = rtr_malloc((size_t)B * per * sizeof *wn + 4);
        if (!ws || !in || !tg || !wn) rc = rtr_seterr(RTR_E_NOMEM, "eval: out of memory");
        for (int64_t w0 = 0; !rc && w0 < nw; w0 += B) {
            int nb = (int)(nw - w0 < B ? nw - w0 : B);
            for (int b = 0; b < nb; b++) {
                int64_t w = ws[w0 + b];
                int from = w == 0 ? 0 : T - S;
                int32_t *ib = in + (size_t)b * T, *tb = tg + (size_t)b * T;
                for (int j = 0; j < T; j++) {
                    int64_t p = w + j;
                    ib[j] = p < n ? x[p] : (int32_t)rtr_tokenizer_eod(e->tok);
                    tb[j] = j >= from && p + 1 < n ? x[p + 1] : -1;
                }
                if (r->retrieval)
                    for (int u = 0; u < Lc; u++) {
                        int64_t cu = w / CH + u;
                        for (int k = 0; k < c->K; k++) {
                            int read = cu < nch && k < kk && sc[(size_t)cu * kk + k] >= r->min_score;
                            for (int t = 0; t < NL; t++)
                                wn[b * per + ((size_t)u * c->K + k) * NL + t] =
                                    read ? nbr[((size_t)cu * kk + k) * NL + t] : -1;
                        }
                    }
            }
            if ((rc = rtr_model_forward(m, in, NULL, r->retrieval ? wn : NULL, nb, T, NULL))) break;
            const float *lg = rtr_model_logits(m);
            for (int b = 0; b < nb; b++)
                for (int j = 0; j < T; j++) {
                    int32_t t = tg[(size_t)b * T + j];
                    if (t < 0) continue;
                    int64_t p = ws[w0 + b] + j + 1;   /* the scored token's position */
                    cn[p / CH] += token_nats(lg + ((size_t)b * T + j) * c->V, c->V, t);
                    cb[p / CH] += e->tok_bytes[t];
                    r->tokens++;
                }
        }
        rtr_free(ws);
        rtr_free(in);
        rtr_free(tg);
        rtr_free(wn);
        for (int64_t u = 0; !rc && u < nch; u++) {
            r->nats += cn[u];
            r->bytes += cb[u];
            for (int a = 0; ov && a < N_ALPHA; a++)
                if (ov[u] <= ALPHA[a] + 1e-9) {
                    r->a_nats[a] += cn[u];
                    r->a_bytes[a] += cb[u];
                }
        }
    }
    rtr_free(cn);
    rtr_free(cb);
    return rc;
}

/* Neighbours (k each) of every chunk of x, their scores and the chunks' overlaps. */
static int neighbours(ev *e, const int32_t *x, int64_t n, uint64_t self, int kk, int32_t **nbr_out,
                      int32_t **al_out, float **sc_out, double **ov_out) {
    int64_t nch = (n + CH - 1) / CH;
    int32_t *chunks = rtr_malloc((size_t)nch * CH * sizeof *chunks);
    int32_t *nbr = rtr_malloc((size_t)nch * kk * NL * sizeof *nbr);
    int32_t *al = e->align_run ? rtr_malloc((size_t)nch * kk * NL * sizeof *al) : NULL;
    float *sc = rtr_malloc((size_t)nch * kk * sizeof *sc);
    double *ov = rtr_malloc((size_t)nch * sizeof *ov);
    int rc = chunks && nbr && sc && ov && (al || !e->align_run) ? RTR_OK
                                                                : rtr_seterr(RTR_E_NOMEM, "eval: out of memory");
    for (int64_t i = 0; !rc && i < nch * CH; i++) chunks[i] = i < n ? x[i] : 0;
    e->nb.K = kk;
    e->nb.exclude_doc = e->leak ? 0 : self;
    /* a short last chunk is searched with its padding: a small, honest cost */
    for (int64_t lo = 0; !rc && lo < nch; lo += 1024) {
        int cnt = (int)(nch - lo < 1024 ? nch - lo : 1024);
        rc = cli_nbr_retrieve_scored(&e->nb, chunks + lo * CH, cnt, lo, nbr + (size_t)lo * kk * NL,
                                     sc + (size_t)lo * kk, al ? al + (size_t)lo * kk * NL : NULL, e->align_run);
    }
    for (int64_t u = 0; !rc && u < nch; u++) {
        int len = (int)(n - u * CH < CH ? n - u * CH : CH), best = 0;
        for (int k = 0; k < kk; k++) {
            int s = lcs(x + u * CH, len, nbr + ((size_t)u * kk + k) * NL, NL);
            if (s > best) best = s;
        }
        ov[u] = (double)best / CH;
        e->chunks++;
        for (int a = 0; a < N_ALPHA; a++) e->a_chunks[a] += ov[u] <= ALPHA[a] + 1e-9;
    }
    rtr_free(chunks);
    if (rc) {
        rtr_free(nbr);
        rtr_free(al);
        rtr_free(sc);
        rtr_free(ov);
        return rc;
    }
    *nbr_out = nbr;
    *al_out = al;
    *sc_out = sc;
    *ov_out = ov;
    return RTR_OK;
}

/* "on", "off", "-" (no retrieval path), or "on>=S" with a minimum score. */
static const char *retrieval_label(const ev *e, const run *r, char *buf, size_t cap) {
    if (!rtr_model_cfg(e->models[r->model])->n_cca) return "-";
    if (!r->retrieval) return "off";
    int al = e->align[r->model] != 0;
    if (r->min_score == CLI_NO_MIN_SCORE) return al ? "aligned" : "on";
    snprintf(buf, cap, "%s>=%.3g", al ? "al" : "on", r->min_score);
    return buf;
}

static void print_results(ev *e, int json, int64_t docs) {
    if (json) {
        printf("{\"documents\":%" PRId64 ",\"chunks\":%" PRId64 ",\"runs\":[", docs, e->chunks);
        for (int i = 0; i < e->n_runs; i++) {
            run *r = &e->runs[i];
            double bpb = r->nats / log(2.0) / r->bytes, ppl = exp(r->nats / (double)r->tokens);
            printf("%s{\"model\":", i ? "," : "");
            cli_json_string(stdout, e->paths[r->model], strlen(e->paths[r->model]));
            printf(",\"retrieval\":%s,\"aligned\":%s,\"min_score\":", r->retrieval ? "true" : "false",
                   r->retrieval && e->align[r->model] ? "true" : "false");
            if (r->retrieval && r->min_score != CLI_NO_MIN_SCORE) printf("%.6g", r->min_score);
            else printf("null");
            printf(",\"neighbours_read\":");
            if (r->retrieval && r->nbr_all) printf("%.6f", (double)r->nbr_read / (double)r->nbr_all);
            else printf("null");
            printf(",\"tokens\":%" PRId64 ",\"bytes\":%.0f,\"loss\":%.6f,\"perplexity\":%.4f,\"bpb\":%.6f,\"leakage\":[",
                   r->tokens, r->bytes, r->nats / (double)r->tokens, ppl, bpb);
            for (int a = 0; a < N_ALPHA; a++) {
                double ab = r->a_bytes[a] > 0 ? r->a_nats[a] / log(2.0) / r->a_bytes[a] : NAN;
                printf("%s{\"alpha\":%.3f,\"chunks\":%" PRId64 ",\"bpb\":", a ? "," : "", ALPHA[a], e->a_chunks[a]);
                if (isfinite(ab)) printf("%.6f}", ab);
                else printf("null}");
            }
            printf("]}");
        }
        printf("]}\n");
        return;
    }
    printf("%" PRId64 " documents, %" PRId64 " chunks\n\n", docs, e->chunks);
    printf("%-32s %-10s %6s %10s %12s %8s %10s %8s\n", "model", "retrieval", "read", "tokens", "bytes", "loss",
           "perplexity", "bpb");
    for (int i = 0; i < e->n_runs; i++) {
        run *r = &e->runs[i];
        char lb[32], rd[16] = "-";
        if (r->retrieval && r->nbr_all) snprintf(rd, sizeof rd, "%.1f%%", 100.0 * (double)r->nbr_read / (double)r->nbr_all);
        printf("%-32s %-10s %6s %10" PRId64 " %12.0f %8.4f %10.2f %8.4f\n", e->paths[r->model],
               retrieval_label(e, r, lb, sizeof lb), rd, r->tokens, r->bytes, r->nats / (double)r->tokens,
               exp(r->nats / (double)r->tokens), r->nats / log(2.0) / r->bytes);
    }
    printf("(read: the share of the retrieved neighbours the model was given)\n");
    if (e->align_run)
        printf("(aligned: each neighbour re-cut to line up with its chunk where they share %u or more tokens in a "
               "row, as the model was trained)\n", e->align_run);
    printf("\nleakage filter: bpb over the chunks whose overlap with their %d nearest neighbours is <= alpha\n",
           LEAK_K);
    printf("%-8s %8s", "alpha", "chunks");
    for (int i = 0; i < e->n_runs; i++) printf("  run %-4d", i + 1);
    printf("\n");
    for (int a = 0; a < N_ALPHA; a++) {
        printf("%-7.1f%% %8" PRId64, ALPHA[a] * 100, e->a_chunks[a]);
        for (int i = 0; i < e->n_runs; i++) {
            run *r = &e->runs[i];
            if (r->a_bytes[a] > 0) printf("  %8.4f", r->a_nats[a] / log(2.0) / r->a_bytes[a]);
            else printf("  %8s", "-");
        }
        printf("\n");
    }
    printf("(run N is the Nth row of the first table)\n");
}

int cmd_eval(int argc, char **argv) {
    enum { O_MODEL = 256, O_KB, O_SPLIT, O_VAL, O_STRIDE, O_LEAK, O_EXCL, O_MAXDOCS, O_THREADS, O_JSON, O_MINSC };
    static const struct option opts[] = {
        {"model", 1, 0, O_MODEL},     {"kb", 1, 0, O_KB},           {"split", 1, 0, O_SPLIT},
        {"val-frac", 1, 0, O_VAL},    {"stride", 1, 0, O_STRIDE},   {"leak", 0, 0, O_LEAK},
        {"exclude-doc", 1, 0, O_EXCL}, {"max-docs", 1, 0, O_MAXDOCS}, {"threads", 1, 0, O_THREADS},
        {"json", 0, 0, O_JSON},       {"min-score", 1, 0, O_MINSC}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    ev e;
    memset(&e, 0, sizeof e);
    const char *kb = NULL, *split = NULL;
    double val_frac = 0.05;
    int stride = 0, json = 0, c;
    long max_docs = LONG_MAX;
    uint64_t excl[256];
    size_t n_excl = 0;
    float scores[MAX_SCORES];
    int n_scores = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(eval_usage, stdout); return CLI_OK;
        case O_MODEL:
            if (e.n_models == MAX_MODELS) return cli_usage_error("eval", "at most %d models", MAX_MODELS);
            e.paths[e.n_models++] = optarg;
            break;
        case O_KB: kb = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_VAL: val_frac = strtod(optarg, NULL); break;
        case O_STRIDE:
            stride = atoi(optarg);
            if (stride < CH || stride % CH) return cli_usage_error("eval", "--stride must be a multiple of %d", CH);
            break;
        case O_LEAK: e.leak = 1; break;
        case O_EXCL:
            if (n_excl == 256) return cli_usage_error("eval", "at most 256 --exclude-doc");
            excl[n_excl++] = strtoull(optarg, NULL, 10);
            break;
        case O_MAXDOCS: max_docs = atol(optarg); break;
        case O_THREADS: rtr_set_threads(atoi(optarg)); break;
        case O_JSON: json = 1; break;
        case O_MINSC:
            if (n_scores == MAX_SCORES) return cli_usage_error("eval", "at most %d --min-score", MAX_SCORES);
            if (cli_parse_min_score(optarg, &scores[n_scores++]))
                return cli_usage_error("eval", "--min-score must be a score in [-1, 1]");
            break;
        default: return cli_usage_error("eval", "bad option");
        }
    }
    if (!e.n_models) return cli_usage_error("eval", "--model DIR is required");
    if (!kb) return cli_usage_error("eval", "--kb KB is required (neighbours and the leakage filter)");
    if (split && strcmp(split, "val") && strcmp(split, "train"))
        return cli_usage_error("eval", "--split must be val or train");
    if (!split && optind == argc) return cli_usage_error("eval", "give --split val or FILEs");
    if (split && optind < argc) return cli_usage_error("eval", "give --split val or FILEs, not both");
    int want_val = split && !strcmp(split, "val");
    if (!n_scores) scores[n_scores++] = CLI_NO_MIN_SCORE;
    int rc = RTR_OK;
    rtr_tokenizer *toks[MAX_MODELS] = {0};
    char *hashes[MAX_MODELS] = {0};
    uint64_t *ex = NULL;
    size_t n_ex = 0;
    int64_t docs = 0;
    rtr_encoder *enc = NULL;
    for (int i = 0; !rc && i < e.n_models; i++)
        rc = cli_load_model(e.paths[i], NULL, EVAL_BATCH, 0, &e.models[i], &toks[i], &hashes[i], &e.align[i]);
    for (int i = 0; !rc && i < e.n_models; i++) {
        if (i && strcmp(hashes[i], hashes[0]))
            rc = rtr_seterr(RTR_E_MISMATCH, "%s and %s use different tokenizers", e.paths[0], e.paths[i]);
        else if (e.align[i] && e.align_run && e.align[i] != e.align_run)
            rc = rtr_seterr(RTR_E_MISMATCH, "%s aligns neighbours at runs of %u tokens, another model at %u: "
                            "evaluate them separately", e.paths[i], e.align[i], e.align_run);
        else if (e.align[i] && rtr_model_cfg(e.models[i])->n_cca) e.align_run = e.align[i];
    }
    if (!rc) rc = cli_nbr_open(&e.nb, kb, hashes[0], LEAK_K);
    if (rc) goto done;
    e.tok = toks[0];
    e.tok_bytes = rtr_tokenizer_byte_lengths(e.tok);
    if (!e.tok_bytes) {
        rc = RTR_E_NOMEM;
        goto done;
    }
    int kk = LEAK_K;
    for (int i = 0; i < e.n_models; i++) {
        const rtr_model_config *mc = rtr_model_cfg(e.models[i]);
        if (mc->n_cca && (mc->m != CH || mc->R != NL)) {
            rc = rtr_seterr(RTR_E_INVALID, "%s: retrieval needs chunks of %d tokens", e.paths[i], CH);
            goto done;
        }
        if (mc->K > kk) kk = mc->K;
        for (int j = 0; mc->n_cca && j < n_scores; j++)
            e.runs[e.n_runs++] = (run){.model = i, .retrieval = 1, .min_score = scores[j]};
        e.runs[e.n_runs++] = (run){.model = i, .retrieval = 0, .min_score = CLI_NO_MIN_SCORE};
    }
    /* what is never retrieved: --exclude-doc, and with --split val (unless
     * --leak) every validation document */
    rtr_store_txn *t = NULL;
    if ((rc = rtr_store_read_begin(rtr_kb_store(e.nb.kb), &t))) goto done;
    rtr_doc d;
    uint64_t after = 0;
    ex = rtr_malloc((n_excl + 1) * sizeof *ex);
    if (!ex) rc = rtr_seterr(RTR_E_NOMEM, "eval: out of memory");
    for (size_t i = 0; !rc && i < n_excl; i++) ex[n_ex++] = excl[i];
    while (!rc && split && !e.leak && rtr_store_next_doc(t, after, &d) == RTR_OK) {
        after = d.id;
        if (!cli_dataset_is_val(&d, val_frac)) continue;
        uint64_t *g = rtr_realloc(ex, (n_ex + 1) * sizeof *ex);
        if (!g) rc = rtr_seterr(RTR_E_NOMEM, "eval: out of memory");
        else (ex = g)[n_ex++] = d.id;
    }
    rtr_store_txn_end(t);
    if (rc) goto done;
    qsort(ex, n_ex, sizeof *ex, cmp_u64);
    e.nb.exclude = ex;
    e.nb.n_exclude = n_ex;
    if ((rc = rtr_encoder_new(e.tok, &enc))) goto done;

    /* the documents, one at a time */
    int nfiles = split ? 0 : argc - optind;
    after = 0;
    for (int64_t di = 0; !rc && docs < max_docs; di++) {
        int32_t *x = NULL;
        int64_t n = 0;
        uint64_t self = 0;
        if (split) {
            if ((rc = rtr_store_read_begin(rtr_kb_store(e.nb.kb), &t))) break;
            int found = 0;
            while (rtr_store_next_doc(t, after, &d) == RTR_OK) {
                after = d.id;
                if (cli_dataset_is_val(&d, val_frac) == want_val) {
                    found = 1;
                    break;
                }
            }
            if (found) {
                self = d.id;
                x = rtr_malloc((d.n_tokens + 1) * sizeof *x);
                if (!x) rc = rtr_seterr(RTR_E_NOMEM, "eval: out of memory");
                for (uint32_t ci = 0; !rc && ci < d.n_chunks; ci++) {
                    rtr_chunk ch;
                    if ((rc = rtr_store_get_chunk(t, d.first_chunk + ci, &ch))) break;
                    for (uint32_t j = 0; j < ch.n_tokens && n < (int64_t)d.n_tokens; j++) x[n++] = (int32_t)ch.tokens[j];
                }
            }
            rtr_store_txn_end(t);
            if (!found) break;
        } else {
            if (di >= nfiles) break;
            const char *path = argv[optind + di];
            uint8_t *data;
            size_t len;
            rtr_u32vec ids = {0};
            if ((rc = rtr_read_file(path, (size_t)1 << 30, &data, &len))) break;
            rc = rtr_encoder_encode(enc, data, len, &ids);
            rtr_free(data);
            x = (int32_t *)ids.data;
            n = (int64_t)ids.len;
            /* the same file in the knowledge base is the evaluated document */
            char real[PATH_MAX];
            if (!rc && realpath(path, real) && !rtr_store_read_begin(rtr_kb_store(e.nb.kb), &t)) {
                uint64_t *dids = NULL;
                size_t nd = 0;
                if (!rtr_store_file_docs(t, real, &dids, &nd) && nd) self = dids[0];
                rtr_free(dids);
                rtr_store_txn_end(t);
            }
        }
        if (!rc && n >= 2) {
            int32_t *nbr = NULL, *al = NULL;
            float *sc = NULL;
            double *ov = NULL;
            rc = neighbours(&e, x, n, self, kk, &nbr, &al, &sc, &ov);
            if (!rc) rc = eval_doc(&e, x, n, nbr, al, sc, kk, ov, stride);
            rtr_free(nbr);
            rtr_free(al);
            rtr_free(sc);
            rtr_free(ov);
            docs++;
            if (!json && isatty(2)) fprintf(stderr, "\reval: %" PRId64 " documents", docs);
        }
        rtr_free(x);
    }
    if (!json && isatty(2)) fprintf(stderr, "\n");
    if (!rc && docs == 0) rc = rtr_seterr(RTR_E_INVALID, "eval: no documents to evaluate");
    if (!rc) print_results(&e, json, docs);
done:
    rtr_encoder_free(enc);
    for (int i = 0; i < e.n_models; i++) {
        rtr_model_free(e.models[i]);
        rtr_tokenizer_free(toks[i]);
        free(hashes[i]);
    }
    cli_nbr_close(&e.nb);
    rtr_free(e.tok_bytes);
    rtr_free(ex);
    return rc ? cli_fail(rc) : CLI_OK;
}
