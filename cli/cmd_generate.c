/* cmd_generate.c - `retro generate MODEL "prompt"`: text from a model, with
 * its neighbours retrieved from a knowledge base every 64 tokens. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/gen.h"
#include "cli/nbr.h"
#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "model/retro.h"

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

int cmd_generate(int argc, char **argv) {
    enum { O_KB = 256, O_NORET, O_SHOW, O_TEMP, O_TOPK, O_TOPP, O_SEED, O_STOP, O_TOK, O_THREADS, O_JSON, O_MINSC };
    static const struct option opts[] = {
        {"kb", 1, 0, O_KB},         {"no-retrieval", 0, 0, O_NORET}, {"show-neighbours", 0, 0, O_SHOW},
        {"max-tokens", 1, 0, 'n'},  {"temperature", 1, 0, O_TEMP},   {"top-k", 1, 0, O_TOPK},
        {"top-p", 1, 0, O_TOPP},    {"seed", 1, 0, O_SEED},          {"stop", 1, 0, O_STOP},
        {"tokenizer", 1, 0, O_TOK}, {"threads", 1, 0, O_THREADS},    {"json", 0, 0, O_JSON},
        {"min-score", 1, 0, O_MINSC}, {"help", 0, 0, 'h'},          {0, 0, 0, 0}};
    cli_gen_opts go;
    cli_gen_opts_default(&go);
    const char *kb = NULL, *tokp = NULL;
    int noret = 0, show = 0, json = 0, threads = 0, c;
    float min_score = CLI_NO_MIN_SCORE;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hn:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(generate_usage, stdout); return CLI_OK;
        case O_KB: kb = optarg; break;
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
            if (go.n_stop == CLI_GEN_MAX_STOP) return cli_usage_error("generate", "at most %d --stop", CLI_GEN_MAX_STOP);
            if (!*optarg) return cli_usage_error("generate", "empty --stop");
            go.stop[go.n_stop++] = optarg;
            break;
        case O_TOK: tokp = optarg; break;
        case O_THREADS: threads = atoi(optarg); if (threads < 1) return cli_usage_error("generate", "bad --threads"); break;
        case O_JSON: json = 1; break;
        case O_MINSC:
            if (cli_parse_min_score(optarg, &min_score))
                return cli_usage_error("generate", "--min-score must be a score in [-1, 1]");
            break;
        default: return cli_usage_error("generate", "bad option");
        }
    }
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
    rtr_model *m = NULL;
    rtr_tokenizer *tok = NULL;
    char *hash = NULL;
    cli_nbr nb = {0};
    rtr_session *s = NULL;
    cli_gen_result res = {0};
    uint32_t align = 0;
    if ((rc = cli_load_model(dir, tokp, 1, 0, &m, &tok, &hash, &align))) goto done;
    int retro = rtr_model_cfg(m)->n_cca > 0 && !noret;
    if (retro && !kb) {
        rc = rtr_seterr(RTR_E_INVALID, "%s is a RETRO model: give --kb KB to retrieve from, or --no-retrieval", dir);
        goto done;
    }
    if (retro && (rc = cli_nbr_open(&nb, kb, hash, rtr_model_cfg(m)->K))) goto done;
    nb.show = show ? stderr : NULL;
    nb.min_score = min_score;
    nb.align = align;
    if ((rc = rtr_session_new(m, &s))) goto done;
    if (retro) rtr_session_set_retrieval(s, cli_nbr_retrieve, &nb);
    go.stream = json ? NULL : stdout;
    rc = cli_generate(s, tok, prompt, plen, &go, &res);
    if (rc) goto done;
    rtr_session_times t;
    rtr_session_times_get(s, &t);
    if (json) {
        printf("{\"text\":");
        cli_json_string(stdout, res.text, res.len);
        printf(",\"prompt_tokens\":%d,\"tokens\":%d,\"stopped\":\"%s\",\"tokens_per_s\":%.2f,\"retrieval\":%s,"
               "\"chunks_retrieved\":%" PRId64 ",\"retrieval_s\":%.4f,\"encode_s\":%.4f,\"total_s\":%.4f}\n",
               res.prompt_tokens, res.tokens, res.stopped, res.tokens_per_s, retro ? "true" : "false", t.retrievals,
               t.retrieve, t.encode, t.total);
    } else {
        putchar('\n');
        fprintf(stderr, "generate: %d tokens at %.1f tokens/s (prompt %d tokens); %" PRId64
                        " chunks retrieved in %.3f s, encoded in %.3f s\n",
                res.tokens, res.tokens_per_s, res.prompt_tokens, t.retrievals, t.retrieve, t.encode);
    }
done:
    cli_gen_result_free(&res);
    rtr_session_free(s);
    cli_nbr_close(&nb);
    rtr_model_free(m);
    rtr_tokenizer_free(tok);
    free(hash);
    rtr_free(owned);
    return rc ? cli_fail(rc) : CLI_OK;
}
