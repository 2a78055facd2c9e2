/* cmd_generate.c - `retro generate MODEL "prompt"`: text from a model, with
 * its neighbours retrieved from a knowledge base every 64 tokens. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"
#include "lib/threads.h"

static const char generate_usage[] =
    "usage: retro generate MODEL [PROMPT] [options]\n"
    "\n"
    "Continues PROMPT ('-' or nothing: standard input) with the model in checkpoint\n"
    "directory MODEL (from retro train), streaming tokens to standard output. A RETRO\n"
    "model retrieves the neighbours of every 64-token chunk from --kb as soon as the\n"
    "chunk is complete (the prompt's chunks in one batch) and the following tokens\n"
    "attend to them.\n"
    "\n"
    "options:\n"
    "  --kb KB               knowledge base to retrieve from (needed by a RETRO model)\n"
    "  --no-retrieval        generate without neighbours\n"
    "  --show-neighbours     print each retrieval's sources on standard error\n"
    "  --min-score S         withhold neighbours scoring below S (cosine, in [-1, 1])\n"
    "  -n, --max-tokens N    tokens to generate (default 128)\n"
    "  --temperature X       0 = greedy (default 0.8)\n"
    "  --top-k N             sample from the N most likely tokens, 0 = all (default 40)\n"
    "  --top-p X             ... and from the smallest set reaching probability X (default 0.95)\n"
    "  --seed N              sampling seed (default 1)\n"
    "  --stop TEXT           stop when TEXT is generated (repeatable; it is not printed)\n"
    "  --tokenizer FILE      tokenizer, if MODEL has no tokenizer.rtok\n"
    "  --threads N           threads (default: all cores)\n"
    "  --json                print one JSON object at the end instead of streaming\n";

/* Streams generated text to standard output. */
static int print_text(void *ctx, const char *text, size_t len) {
    (void)ctx;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* --show-neighbours: one line per neighbour, its source and the start of its text (ctx: the model). */
static void show_neighbours(void *ctx, int64_t chunk, const retro_neighbour *nb, uint32_t k) {
    fprintf(stderr, "[retrieval for chunk %" PRId64 "]\n", chunk);
    for (uint32_t j = 0; j < k; j++) {
        const retro_neighbour *h = &nb[j];
        if (h->chunk_id >= 0 && h->withheld) {
            fprintf(stderr, "  %u. (withheld: score %.3f below --min-score)\n", j + 1, h->score);
            continue;
        }
        if (h->chunk_id < 0) {
            fprintf(stderr, "  %u. (none)\n", j + 1);
            continue;
        }
        char *text = NULL;
        size_t tl = 0, len = 0;
        while (len < 24 && h->tokens[len] >= 0) len++;
        if (retro_detokenize(ctx, h->tokens, len, &text, &tl)) tl = 0;
        for (size_t i = 0; i < tl; i++)
            if (text[i] == '\n' || text[i] == '\r' || text[i] == '\t') text[i] = ' ';
        fprintf(stderr, "  %u. %.*s bytes %" PRIu64 "-%" PRIu64 " (chunk %" PRId64 ", distance %.3f): \"%.*s...\"\n",
                j + 1, (int)h->path_len, h->path, h->byte_start, h->byte_end, h->chunk_id, h->distance, (int)tl,
                text ? text : "");
        retro_free(text);
    }
}

int cmd_generate(int argc, char **argv) {
    enum { O_KB = 256, O_NORET, O_SHOW, O_TEMP, O_TOPK, O_TOPP, O_SEED, O_STOP, O_TOK, O_THREADS, O_JSON, O_MINSC };
    static const struct option opts[] = {
        {"kb", 1, 0, O_KB},         {"no-retrieval", 0, 0, O_NORET}, {"show-neighbours", 0, 0, O_SHOW},
        {"max-tokens", 1, 0, 'n'},  {"temperature", 1, 0, O_TEMP},   {"top-k", 1, 0, O_TOPK},
        {"top-p", 1, 0, O_TOPP},    {"seed", 1, 0, O_SEED},          {"stop", 1, 0, O_STOP},
        {"tokenizer", 1, 0, O_TOK}, {"threads", 1, 0, O_THREADS},    {"json", 0, 0, O_JSON},
        {"min-score", 1, 0, O_MINSC}, {"help", 0, 0, 'h'},          {0, 0, 0, 0}};
    retro_gen_opts go;
    retro_gen_opts_default(&go);
    const char *stops[CLI_MAX_STOP];
    const char *kb_dir = NULL, *tokp = NULL;
    int noret = 0, show = 0, json = 0, threads = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hn:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(generate_usage, stdout); return CLI_OK;
        case O_KB: kb_dir = optarg; break;
        case O_NORET: noret = 1; break;
        case O_SHOW: show = 1; break;
        case 'n':
            go.max_tokens = atoi(optarg);
            if (go.max_tokens < 1 || go.max_tokens > 1000000) return cli_usage_error("generate", "bad --max-tokens");
            break;
        case O_TEMP:
            go.temperature = strtof(optarg, NULL);
            if (!(go.temperature >= 0 && go.temperature <= 100)) return cli_usage_error("generate", "bad --temperature");
            break;
        case O_TOPK: go.top_k = atoi(optarg); if (go.top_k < 0) return cli_usage_error("generate", "bad --top-k"); break;
        case O_TOPP:
            go.top_p = strtof(optarg, NULL);
            if (!(go.top_p > 0 && go.top_p <= 1)) return cli_usage_error("generate", "--top-p must be in (0, 1]");
            break;
        case O_SEED: go.seed = strtoull(optarg, NULL, 10); break;
        case O_STOP:
            if (go.n_stop == CLI_MAX_STOP) return cli_usage_error("generate", "at most %d --stop", CLI_MAX_STOP);
            if (!*optarg) return cli_usage_error("generate", "empty --stop");
            stops[go.n_stop++] = optarg;
            break;
        case O_TOK: tokp = optarg; break;
        case O_THREADS: threads = atoi(optarg); if (threads < 1) return cli_usage_error("generate", "bad --threads"); break;
        case O_JSON: json = 1; break;
        case O_MINSC:
            if (cli_parse_min_score(optarg, &go.min_score))
                return cli_usage_error("generate", "--min-score must be a score in [-1, 1]");
            break;
        default: return cli_usage_error("generate", "bad option");
        }
    }
    go.stop = stops;
    if (argc - optind < 1 || argc - optind > 2) return cli_usage_error("generate", "expected MODEL [PROMPT]");
    if (threads) rtr_set_threads(threads);
    const char *dir = argv[optind];
    char *prompt = argc - optind == 2 ? argv[optind + 1] : "-";
    uint8_t *owned = NULL;
    size_t plen = strlen(prompt);
    int rc = RTR_OK;
    if (!strcmp(prompt, "-")) {
        if ((rc = rtr_read_fd(0, "standard input", 1 << 24, &owned, &plen))) return cli_fail(rc);
        prompt = (char *)owned;
    }
    retro_model *m = NULL;
    retro_kb *kb = NULL;
    retro_gen_result res = {0};
    retro_model_info info;
    retro_model_opts mo = {1, tokp};
    if ((rc = retro_model_load(dir, &mo, &m))) goto done;
    retro_model_get_info(m, &info);
    int retro = info.retrieval && !noret;
    if (retro && !kb_dir) {
        rc = rtr_seterr(RTR_E_INVALID, "%s is a RETRO model: give --kb KB to retrieve from, or --no-retrieval", dir);
        goto done;
    }
    if (retro && (rc = retro_kb_open(kb_dir, 0, NULL, &kb))) goto done;
    go.kb = kb;
    go.on_text = json ? NULL : print_text;
    if (show) {
        go.on_retrieval = show_neighbours;
        go.ctx = m;
    }
    if ((rc = retro_generate(m, prompt, plen, &go, &res))) goto done;
    if (json) {
        printf("{\"text\":");
        cli_json_string(stdout, res.text, res.len);
        printf(",\"prompt_tokens\":%d,\"tokens\":%d,\"stopped\":\"%s\",\"tokens_per_s\":%.2f,\"retrieval\":%s,"
               "\"chunks_retrieved\":%" PRId64 ",\"retrieval_s\":%.4f,\"encode_s\":%.4f,\"total_s\":%.4f}\n",
               res.prompt_tokens, res.tokens, res.stopped, res.tokens_per_s, res.retrieval ? "true" : "false",
               res.chunks_retrieved, res.retrieval_s, res.encode_s, res.total_s);
    } else {
        putchar('\n');
        fprintf(stderr, "generate: %d tokens at %.1f tokens/s (prompt %d tokens); %" PRId64
                        " chunks retrieved in %.3f s, encoded in %.3f s\n",
                res.tokens, res.tokens_per_s, res.prompt_tokens, res.chunks_retrieved, res.retrieval_s, res.encode_s);
    }
done:
    retro_gen_result_free(&res);
    retro_kb_close(kb);
    retro_model_free(m);
    rtr_free(owned);
    return rc ? cli_fail(rc) : CLI_OK;
}
