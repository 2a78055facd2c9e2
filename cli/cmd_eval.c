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
#include "lib/comm.h"
#include "lib/status.h"
#include "lib/threads.h"

static const char eval_usage[] =
    "usage: retro eval --model DIR [--model DIR ...] --kb KB (--split val | FILE...) [options]\n"
    "\n"
    "Bits per byte (and perplexity) of each model on held-out text: the validation\n"
    "documents of KB (as retro train splits them) or text files. A RETRO model is\n"
    "evaluated with retrieval on and off. Text is read in windows of the model's\n"
    "context sliding by --stride tokens; every token after a document's first is\n"
    "scored once. Neighbours never come from the evaluated document; with --split,\n"
    "never from any validation document (KB then holds the training documents only).\n"
    "Under `mpirun -np N`, the documents are shared among the ranks and the sums\n"
    "gathered; rank 0 prints.\n"
    "With --min-score, a RETRO model reads only the neighbours whose score (cosine\n"
    "similarity) reaches it, one run per value: a chunk with none is predicted from\n"
    "its context alone (a RETRO-fitted model then gives its baseline's prediction).\n"
    "A RETRO model's neighbours are found as it was trained: by its retriever\n"
    "(vector, lexical or hybrid; retro train --retriever) and aligned if it was;\n"
    "RETRO models with different retrievers are evaluated separately.\n"
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

#define MAX_MODELS 8
#define MAX_SCORES 8
#define LEAK_K 10

/* "on", "off", "-" (no retrieval path), or "on>=S" with a minimum score; "aligned" / "al" for aligned
 * neighbours; the retriever's name for "on" when it is not vector ("lexical", "al-hybrid>=S"). */
static const char *retrieval_label(const retro_model_info *mi, const retro_eval_run *r, char *buf, size_t cap) {
    if (!mi->retrieval) return "-";
    if (!r->retrieval) return "off";
    const char *by = r->retriever > RETRO_SEARCH_VECTOR ? retro_search_mode_name(r->retriever) : NULL;
    if (!by) {
        if (isinf(r->min_score)) return r->aligned ? "aligned" : "on";
        snprintf(buf, cap, "%s>=%.3g", r->aligned ? "al" : "on", r->min_score);
    } else {
        snprintf(buf, cap, "%s%s", r->aligned ? "al-" : "", by);
        if (!isinf(r->min_score)) snprintf(buf + strlen(buf), cap - strlen(buf), ">=%.3g", r->min_score);
    }
    return buf;
}

static void print_json(const retro_eval_result *e, const char *const *paths) {
    printf("{\"documents\":%" PRId64 ",\"chunks\":%" PRId64 ",\"runs\":[", e->documents, e->chunks);
    for (int i = 0; i < e->n_runs; i++) {
        const retro_eval_run *r = &e->runs[i];
        printf("%s{\"model\":", i ? "," : "");
        cli_json_string(stdout, paths[r->model], strlen(paths[r->model]));
        printf(",\"retrieval\":%s,\"aligned\":%s,\"retriever\":", r->retrieval ? "true" : "false",
               r->retrieval && r->aligned ? "true" : "false");
        const char *by = r->retrieval ? retro_search_mode_name(r->retriever) : NULL;
        if (by) printf("\"%s\"", by);
        else printf("null");
        printf(",\"min_score\":");
        if (r->retrieval && !isinf(r->min_score)) printf("%.6g", r->min_score);
        else printf("null");
        printf(",\"neighbours_read\":");
        if (isfinite(r->read)) printf("%.6f", r->read);
        else printf("null");
        printf(",\"tokens\":%" PRId64 ",\"bytes\":%.0f,\"loss\":%.6f,\"perplexity\":%.4f,\"bpb\":%.6f,\"leakage\":[",
               r->tokens, r->bytes, r->loss, r->perplexity, r->bpb);
        for (int a = 0; a < RETRO_EVAL_N_ALPHA; a++) {
            printf("%s{\"alpha\":%.3f,\"chunks\":%" PRId64 ",\"bpb\":", a ? "," : "", e->alpha[a], e->alpha_chunks[a]);
            if (isfinite(r->leak_bpb[a])) printf("%.6f}", r->leak_bpb[a]);
            else printf("null}");
        }
        printf("]}");
    }
    printf("]}\n");
}

static void print_tables(const retro_eval_result *e, const char *const *paths, const retro_model_info *mi) {
    printf("%" PRId64 " documents, %" PRId64 " chunks\n\n", e->documents, e->chunks);
    printf("%-32s %-10s %6s %10s %12s %8s %10s %8s\n", "model", "retrieval", "read", "tokens", "bytes", "loss",
           "perplexity", "bpb");
    for (int i = 0; i < e->n_runs; i++) {
        const retro_eval_run *r = &e->runs[i];
        char lb[32], rd[16] = "-";
        if (isfinite(r->read)) snprintf(rd, sizeof rd, "%.1f%%", 100.0 * r->read);
        printf("%-32s %-10s %6s %10" PRId64 " %12.0f %8.4f %10.2f %8.4f\n", paths[r->model],
               retrieval_label(&mi[r->model], r, lb, sizeof lb), rd, r->tokens, r->bytes, r->loss, r->perplexity, r->bpb);
    }
    printf("(read: the share of the retrieved neighbours the model was given)\n");
    int by = 0;
    for (int i = 0; i < e->n_runs; i++)
        if (e->runs[i].retrieval && e->runs[i].retriever > RETRO_SEARCH_VECTOR) by = e->runs[i].retriever;
    if (by)
        printf("(%s: neighbours found by %s, as the model was trained; they are also the leakage filter's)\n",
               retro_search_mode_name(by),
               by == RETRO_SEARCH_LEXICAL ? "BM25 over the chunks' words"
                                          : "the vector and lexical indexes fused by reciprocal rank");
    if (e->align_run)
        printf("(aligned: each neighbour re-cut to line up with its chunk where they share %u or more tokens in a "
               "row, as the model was trained)\n", e->align_run);
    printf("\nleakage filter: bpb over the chunks whose overlap with their %d nearest neighbours is <= alpha\n", LEAK_K);
    printf("%-8s %8s", "alpha", "chunks");
    for (int i = 0; i < e->n_runs; i++) printf("  run %-4d", i + 1);
    printf("\n");
    for (int a = 0; a < RETRO_EVAL_N_ALPHA; a++) {
        printf("%-7.1f%% %8" PRId64, e->alpha[a] * 100, e->alpha_chunks[a]);
        for (int i = 0; i < e->n_runs; i++) {
            if (isfinite(e->runs[i].leak_bpb[a])) printf("  %8.4f", e->runs[i].leak_bpb[a]);
            else printf("  %8s", "-");
        }
        printf("\n");
    }
    printf("(run N is the Nth row of the first table)\n");
}

static void on_document(void *ctx, int64_t docs) {
    (void)ctx;
    fprintf(stderr, "\reval: %" PRId64 " documents", docs);
}

int cmd_eval(int argc, char **argv) {
    enum { O_MODEL = 256, O_KB, O_SPLIT, O_VAL, O_STRIDE, O_LEAK, O_EXCL, O_MAXDOCS, O_THREADS, O_JSON, O_MINSC };
    static const struct option opts[] = {
        {"model", 1, 0, O_MODEL},     {"kb", 1, 0, O_KB},           {"split", 1, 0, O_SPLIT},
        {"val-frac", 1, 0, O_VAL},    {"stride", 1, 0, O_STRIDE},   {"leak", 0, 0, O_LEAK},
        {"exclude-doc", 1, 0, O_EXCL}, {"max-docs", 1, 0, O_MAXDOCS}, {"threads", 1, 0, O_THREADS},
        {"json", 0, 0, O_JSON},       {"min-score", 1, 0, O_MINSC}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    const char *paths[MAX_MODELS];
    int n_models = 0;
    const char *kb_dir = NULL, *split = NULL;
    int json = 0, c;
    uint64_t excl[256];
    float scores[MAX_SCORES];
    retro_eval_opts eo = {.val_frac = 0.05, .exclude_docs = excl, .min_scores = scores};
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(eval_usage, stdout); return CLI_OK;
        case O_MODEL:
            if (n_models == MAX_MODELS) return cli_usage_error("eval", "at most %d models", MAX_MODELS);
            paths[n_models++] = optarg;
            break;
        case O_KB: kb_dir = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_VAL: eo.val_frac = strtod(optarg, NULL); break;
        case O_STRIDE:
            eo.stride = atoi(optarg);
            if (eo.stride < 64 || eo.stride % 64) return cli_usage_error("eval", "--stride must be a multiple of %d", 64);
            break;
        case O_LEAK: eo.leak = 1; break;
        case O_EXCL:
            if (eo.n_exclude == 256) return cli_usage_error("eval", "at most 256 --exclude-doc");
            excl[eo.n_exclude++] = strtoull(optarg, NULL, 10);
            break;
        case O_MAXDOCS: eo.max_docs = atol(optarg); break;
        case O_THREADS: rtr_set_threads(atoi(optarg)); break;
        case O_JSON: json = 1; break;
        case O_MINSC:
            if (eo.n_min_scores == MAX_SCORES) return cli_usage_error("eval", "at most %d --min-score", MAX_SCORES);
            if (cli_parse_min_score(optarg, &scores[eo.n_min_scores++]))
                return cli_usage_error("eval", "--min-score must be a score in [-1, 1]");
            break;
        default: return cli_usage_error("eval", "bad option");
        }
    }
    if (!n_models) return cli_usage_error("eval", "--model DIR is required");
    if (!kb_dir) return cli_usage_error("eval", "--kb KB is required (neighbours and the leakage filter)");
    if (split && strcmp(split, "val") && strcmp(split, "train"))
        return cli_usage_error("eval", "--split must be val or train");
    if (!split && optind == argc) return cli_usage_error("eval", "give --split val or FILEs");
    if (split && optind < argc) return cli_usage_error("eval", "give --split val or FILEs, not both");
    eo.split = !split ? RETRO_EVAL_FILES : !strcmp(split, "val") ? RETRO_EVAL_VAL : RETRO_EVAL_TRAIN;
    eo.files = (const char *const *)argv + optind;
    eo.n_files = split ? 0 : (size_t)(argc - optind);
    if (!json && isatty(2)) eo.on_document = on_document;
    retro_model *models[MAX_MODELS] = {0};
    retro_model_info info[MAX_MODELS];
    retro_kb *kb = NULL;
    retro_eval_result *res = calloc(1, sizeof *res);
    int rc = res ? RTR_OK : RTR_E_NOMEM;
    for (int i = 0; !rc && i < n_models; i++) {
        if (!(rc = retro_model_load(paths[i], NULL, &models[i]))) retro_model_get_info(models[i], &info[i]);
        else break;
    }
    if (!rc) rc = retro_kb_open(kb_dir, 0, NULL, &kb);
    if (!rc) rc = retro_eval(models, n_models, kb, &eo, res);
    int rank0 = rtr_comm_rank(rtr_comm_world()) == 0;   /* under mpirun, rank 0 reports */
    if (eo.on_document && rank0) fprintf(stderr, "\n");
    if (!rc && rank0) {
        if (json) print_json(res, paths);
        else print_tables(res, paths, info);
    }
    for (int i = 0; i < n_models; i++) retro_model_free(models[i]);
    retro_kb_close(kb);
    free(res);
    return rc ? cli_fail(rc) : CLI_OK;
}
