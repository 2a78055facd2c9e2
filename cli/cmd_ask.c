/* cmd_ask.c - `retro ask MODEL --kb KB "question"`: an answer generated from
 * the best chunks of a knowledge base, with the sources it was given. */
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
#include "lib/buf.h"
#include "lib/status.h"
#include "model/retro.h"

static const char ask_usage[] =
    "usage: retro ask MODEL --kb KB QUESTION [options]\n"
    "\n"
    "Searches KB for the chunks nearest to QUESTION, puts them (with their\n"
    "continuations) before the question in the prompt, and lets the model in MODEL\n"
    "write the answer; a RETRO model also retrieves from KB while it writes. Prints\n"
    "the answer, then the sources it was given: path, byte span, score and text.\n"
    "\n"
    "options:\n"
    "  --kb KB               the knowledge base (required)\n"
    "  -k N                  passages to put in the prompt (default 3)\n"
    "  -n, --max-tokens N    longest answer in tokens (default 64)\n"
    "  --temperature X       0 = greedy (default 0)\n"
    "  --seed N              sampling seed (default 1)\n"
    "  --no-retrieval        no retrieval while generating (the passages stay)\n"
    "  --min-score S         while generating, withhold neighbours scoring below S\n"
    "  --threads N           threads (default: all cores)\n"
    "  --json                one JSON object: question, answer, sources\n";

int cmd_ask(int argc, char **argv) {
    enum { O_KB = 256, O_TEMP, O_SEED, O_NORET, O_THREADS, O_JSON, O_MINSC };
    static const struct option opts[] = {{"kb", 1, 0, O_KB},          {"max-tokens", 1, 0, 'n'},
                                         {"temperature", 1, 0, O_TEMP}, {"seed", 1, 0, O_SEED},
                                         {"no-retrieval", 0, 0, O_NORET}, {"threads", 1, 0, O_THREADS},
                                         {"json", 0, 0, O_JSON},        {"min-score", 1, 0, O_MINSC},
                                         {"help", 0, 0, 'h'},           {0, 0, 0, 0}};
    const char *kb = NULL;
    int k = 3, json = 0, noret = 0, c;
    float min_score = CLI_NO_MIN_SCORE;
    cli_gen_opts go;
    cli_gen_opts_default(&go);
    go.max_tokens = 64;
    go.temperature = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hk:n:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(ask_usage, stdout); return CLI_OK;
        case O_KB: kb = optarg; break;
        case 'k':
            k = atoi(optarg);
            if (k < 1 || k > 32) return cli_usage_error("ask", "-k must be 1..32");
            break;
        case 'n':
            go.max_tokens = atoi(optarg);
            if (go.max_tokens < 1 || go.max_tokens > 100000) return cli_usage_error("ask", "bad --max-tokens");
            break;
        case O_TEMP:
            go.temperature = strtof(optarg, NULL);
            if (!(go.temperature >= 0 && go.temperature <= 100)) return cli_usage_error("ask", "bad --temperature");
            break;
        case O_SEED: go.seed = strtoull(optarg, NULL, 10); break;
        case O_NORET: noret = 1; break;
        case O_THREADS: rtr_set_threads(atoi(optarg) > 0 ? atoi(optarg) : 1); break;
        case O_JSON: json = 1; break;
        case O_MINSC:
            if (cli_parse_min_score(optarg, &min_score))
                return cli_usage_error("ask", "--min-score must be a score in [-1, 1]");
            break;
        default: return cli_usage_error("ask", "bad option");
        }
    }
    if (argc - optind != 2) return cli_usage_error("ask", "expected MODEL and QUESTION");
    if (!kb) return cli_usage_error("ask", "--kb KB is required");
    const char *dir = argv[optind], *question = argv[optind + 1];
    if (!*question) return cli_usage_error("ask", "the question is empty");
    go.stop[go.n_stop++] = "\nQuestion:";
    go.stop[go.n_stop++] = "\n\n";
    rtr_model *m = NULL;
    rtr_tokenizer *tok = NULL;
    char *hash = NULL;
    cli_nbr nb = {0};
    rtr_session *s = NULL;
    rtr_hits hits = {0};
    rtr_buf prompt = {0};
    cli_gen_result res = {0};
    uint32_t align = 0;
    int rc = cli_load_model(dir, NULL, 1, 0, &m, &tok, &hash, &align);
    if (!rc) rc = cli_nbr_open(&nb, kb, hash, rtr_model_cfg(m)->K);
    nb.min_score = min_score;
    nb.align = align;
    rtr_search_opts so = {NULL, 0, 1};
    if (!rc) rc = rtr_retriever_search(nb.r, question, strlen(question), (uint32_t)k, &so, &hits);
    if (rc) goto done;
    /* the prompt: passages (each chunk and its continuation), the question, the cue;
     * the passages are cut, last first, so that prompt and answer fit the context */
    rtr_encoder *enc = NULL;
    size_t budget = (size_t)(rtr_model_cfg(m)->T - go.max_tokens);
    size_t n_used = hits.n;
    if ((rc = rtr_encoder_new(tok, &enc))) goto done;
    for (;;) {
        prompt.len = 0;
        for (size_t i = 0; i < n_used; i++) {
            rtr_hit *h = &hits.items[i];
            rtr_buf_printf(&prompt, "%s%s\n", h->text, h->continuation ? h->continuation : "");
        }
        rtr_buf_printf(&prompt, "Question: %s\nAnswer:", question);
        rtr_u32vec ids = {0};
        rc = rtr_encoder_encode(enc, prompt.data, prompt.len, &ids);
        size_t n = ids.len;
        rtr_u32vec_free(&ids);
        if (rc || n <= budget || n_used == 0) break;
        n_used--;
    }
    rtr_encoder_free(enc);
    if (rc) goto done;
    if ((rc = rtr_session_new(m, &s))) goto done;
    if (rtr_model_cfg(m)->n_cca && !noret) rtr_session_set_retrieval(s, cli_nbr_retrieve, &nb);
    go.stream = NULL;
    if ((rc = cli_generate(s, tok, (const char *)prompt.data, prompt.len, &go, &res))) goto done;
    const char *ans = res.text;
    while (*ans == ' ') ans++;
    if (json) {
        printf("{\"question\":");
        cli_json_string(stdout, question, strlen(question));
        printf(",\"answer\":");
        cli_json_string(stdout, ans, strlen(ans));
        printf(",\"tokens\":%d,\"tokens_per_s\":%.1f,\"sources\":[", res.tokens, res.tokens_per_s);
        for (size_t i = 0; i < n_used; i++) {
            rtr_hit *h = &hits.items[i];
            printf("%s{\"rank\":%zu,\"score\":%.4f,\"chunk_id\":%" PRIu64 ",\"doc_id\":%" PRIu64 ",\"path\":", i ? "," : "",
                   i + 1, h->score, h->chunk_id, h->doc_id);
            cli_json_string(stdout, h->path, strlen(h->path));
            printf(",\"byte_start\":%" PRIu64 ",\"byte_end\":%" PRIu64 ",\"text\":", h->byte_start, h->byte_end);
            cli_json_string(stdout, h->text, strlen(h->text));
            printf("}");
        }
        printf("]}\n");
    } else {
        printf("%s\n\nSources:\n", ans);
        for (size_t i = 0; i < n_used; i++) {
            rtr_hit *h = &hits.items[i];
            char ex[121];
            size_t j = 0;
            for (const char *p = h->text; *p && j < 117; p++) ex[j++] = *p == '\n' || *p == '\t' ? ' ' : *p;
            while (j > 0 && ((unsigned char)ex[j - 1] & 0xC0) == 0x80) j--;   /* whole UTF-8 sequences */
            if (j > 0 && ((unsigned char)ex[j - 1] & 0xC0) == 0xC0) j--;
            ex[j] = 0;
            printf("  %zu. %s  bytes %" PRIu64 "-%" PRIu64 "  score %.3f\n     \"%s...\"\n", i + 1, h->path,
                   h->byte_start, h->byte_end, h->score, ex);
        }
    }
done:
    cli_gen_result_free(&res);
    rtr_buf_free(&prompt);
    rtr_hits_free(&hits);
    rtr_session_free(s);
    cli_nbr_close(&nb);
    rtr_model_free(m);
    rtr_tokenizer_free(tok);
    free(hash);
    return rc ? cli_fail(rc) : CLI_OK;
}
