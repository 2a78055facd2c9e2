/* cmd_ask.c - `retro ask MODEL --kb KB "question"`: an answer generated from
 * the best chunks of a knowledge base, with the sources it was given; with
 * --reader URL another server (OpenAI's API) writes the answer from them. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/status.h"
#include "lib/threads.h"

static const char ask_usage[] =
    "usage: retro ask MODEL --kb KB QUESTION [options]\n"
    "       retro ask [MODEL] --kb KB --reader URL QUESTION [options]\n"
    "\n"
    "Searches KB for the chunks nearest to QUESTION and answers with what they say:\n"
    "the sentences that best answer the question, quoted with their source (path and\n"
    "byte span). Then the passages (each chunk with its continuation) go before the\n"
    "question in the prompt of the model in MODEL, and what it writes from them is\n"
    "printed apart, labelled as the model's (a RETRO model also retrieves from KB\n"
    "while it writes). Last, the sources: path, byte span, score and text.\n"
    "\n"
    "With --reader URL, the passages, numbered, and the question go to the OpenAI-\n"
    "compatible server at URL (llama.cpp's server, ollama, another `retro serve`)\n"
    "instead, and its answer is printed, labelled as the reader's, with retro's\n"
    "sources; MODEL is then not needed (nor loaded). The bearer key for URL, if it\n"
    "needs one, is read from $RETRO_READER_KEY.\n"
    "\n"
    "options:\n"
    "  --kb KB               the knowledge base (required)\n"
    "  -k N                  passages to retrieve; as many as fit go in the prompt (default 3)\n"
    "  --quotes N            sentences to quote from them (default 2)\n"
    "  -n, --max-tokens N    longest answer in tokens (default 64)\n"
    "  --temperature X       0 = greedy (default 0)\n"
    "  --seed N              sampling seed (default 1)\n"
    "  --no-retrieval        no retrieval while generating (the passages stay)\n"
    "  --min-score S         while generating, withhold neighbours scoring below S\n"
    "  --threads N           threads (default: all cores)\n"
    "  --reader URL          the server that writes the answer (its base URL, e.g.\n"
    "                        http://127.0.0.1:8080); -n and --temperature go to it\n"
    "  --reader-model NAME   the model asked of it (default: the first URL/v1/models lists)\n"
    "  --reader-chat         ask with POST URL/v1/chat/completions (the default)\n"
    "  --reader-completions  ask with POST URL/v1/completions and a prompt\n"
    "  --json                one JSON object: question, answer (the best quote), quotes,\n"
    "                        generated (the model's or the reader's text), generated_by\n"
    "                        (\"model\" or the reader's URL), sources\n";

/* text as indented lines, white space around it removed. */
static void print_block(const char *text, size_t len) {
    while (len > 0 && (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r')) text++, len--;
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\n' || text[len - 1] == '\t' || text[len - 1] == '\r'))
        len--;
    fputs("  ", stdout);
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\r') continue;
        putchar(text[i]);
        if (text[i] == '\n') fputs("  ", stdout);
    }
    putchar('\n');
}

int cmd_ask(int argc, char **argv) {
    enum { O_KB = 256, O_TEMP, O_SEED, O_NORET, O_THREADS, O_JSON, O_MINSC, O_QUOTES, O_READER, O_RMODEL, O_RCHAT,
           O_RCOMPL };
    static const struct option opts[] = {{"kb", 1, 0, O_KB},          {"max-tokens", 1, 0, 'n'},
                                         {"temperature", 1, 0, O_TEMP}, {"seed", 1, 0, O_SEED},
                                         {"no-retrieval", 0, 0, O_NORET}, {"threads", 1, 0, O_THREADS},
                                         {"json", 0, 0, O_JSON},        {"min-score", 1, 0, O_MINSC},
                                         {"quotes", 1, 0, O_QUOTES},    {"reader", 1, 0, O_READER},
                                         {"reader-model", 1, 0, O_RMODEL}, {"reader-chat", 0, 0, O_RCHAT},
                                         {"reader-completions", 0, 0, O_RCOMPL},
                                         {"help", 0, 0, 'h'},           {0, 0, 0, 0}};
    const char *kb_dir = NULL;
    int json = 0, c;
    retro_ask_opts ao;
    retro_ask_opts_default(&ao);
    optind = 1;
    while ((c = getopt_long(argc, argv, "hk:n:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(ask_usage, stdout); return CLI_OK;
        case O_KB: kb_dir = optarg; break;
        case 'k': {
            int k = atoi(optarg);
            if (k < 1 || k > 32) return cli_usage_error("ask", "-k must be 1..32");
            ao.passages = (uint32_t)k;
            break;
        }
        case 'n':
            ao.gen.max_tokens = atoi(optarg);
            if (ao.gen.max_tokens < 1 || ao.gen.max_tokens > 100000) return cli_usage_error("ask", "bad --max-tokens");
            break;
        case O_TEMP:
            ao.gen.temperature = strtof(optarg, NULL);
            if (!(ao.gen.temperature >= 0 && ao.gen.temperature <= 100)) return cli_usage_error("ask", "bad --temperature");
            break;
        case O_SEED: ao.gen.seed = strtoull(optarg, NULL, 10); break;
        case O_NORET: ao.no_retrieval = 1; break;
        case O_THREADS: rtr_set_threads(atoi(optarg) > 0 ? atoi(optarg) : 1); break;
        case O_JSON: json = 1; break;
        case O_QUOTES: {
            int q = atoi(optarg);
            if (q < 1 || q > 16) return cli_usage_error("ask", "--quotes must be 1..16");
            ao.quotes = (uint32_t)q;
            break;
        }
        case O_READER:
            if (!*optarg) return cli_usage_error("ask", "--reader needs a URL");
            ao.reader_url = optarg;
            break;
        case O_RMODEL:
            if (!*optarg) return cli_usage_error("ask", "--reader-model needs a name");
            ao.reader_model = optarg;
            break;
        case O_RCHAT: ao.reader_completions = 0; break;
        case O_RCOMPL: ao.reader_completions = 1; break;
        case O_MINSC:
            if (cli_parse_min_score(optarg, &ao.gen.min_score))
                return cli_usage_error("ask", "--min-score must be a score in [-1, 1]");
            break;
        default: return cli_usage_error("ask", "bad option");
        }
    }
    const int reader = ao.reader_url != NULL;
    if (argc - optind != 2 && !(reader && argc - optind == 1))
        return cli_usage_error("ask", reader ? "expected [MODEL] QUESTION" : "expected MODEL and QUESTION");
    if (!kb_dir) return cli_usage_error("ask", "--kb KB is required");
    if (!reader && ao.reader_model) return cli_usage_error("ask", "--reader-model needs --reader URL");
    const char *dir = argc - optind == 2 ? argv[optind] : NULL, *question = argv[argc - 1];
    if (!*question) return cli_usage_error("ask", "the question is empty");
    retro_model *m = NULL;
    retro_kb *kb = NULL;
    retro_answer ans = {0};
    retro_model_opts mo = {1, NULL};
    int rc = reader ? 0 : retro_model_load(dir, &mo, &m);   /* a reader writes the answer: no model needed */
    if (!rc) rc = retro_kb_open(kb_dir, 0, NULL, &kb);
    if (!rc) rc = retro_ask(m, kb, question, &ao, &ans);
    if (rc) goto done;
    if (json) {
        printf("{\"question\":");
        cli_json_string(stdout, question, strlen(question));
        printf(",\"answer\":");   /* what the sources say: the best quote */
        const char *best = ans.n_quotes ? ans.quotes[0].text : "";
        cli_json_string(stdout, best, strlen(best));
        printf(",\"quotes\":[");
        for (size_t i = 0; i < ans.n_quotes; i++) {
            const retro_quote *q = &ans.quotes[i];
            printf("%s{\"text\":", i ? "," : "");
            cli_json_string(stdout, q->text, strlen(q->text));
            printf(",\"source\":%zu,\"path\":", q->source + 1);
            cli_json_string(stdout, q->path, strlen(q->path));
            printf(",\"byte_start\":%" PRIu64 ",\"byte_end\":%" PRIu64 ",\"score\":%.4f}", q->byte_start,
                   q->byte_end, q->score);
        }
        printf("],\"generated\":");
        cli_json_string(stdout, ans.gen.text, ans.gen.len);
        printf(",\"generated_by\":");
        cli_json_string(stdout, ans.generated_by, strlen(ans.generated_by));
        printf(",\"tokens\":%d,\"tokens_per_s\":%.1f,\"sources\":[", ans.gen.tokens, ans.gen.tokens_per_s);
        for (size_t i = 0; i < ans.sources.n; i++) {
            const retro_source *h = &ans.sources.items[i];
            printf("%s{\"rank\":%zu,\"score\":%.4f,\"in_prompt\":%s,\"chunk_id\":%" PRIu64 ",\"doc_id\":%" PRIu64
                   ",\"path\":", i ? "," : "", i + 1, h->score, i < ans.in_prompt ? "true" : "false", h->chunk_id,
                   h->doc_id);
            cli_json_string(stdout, h->path, strlen(h->path));
            printf(",\"byte_start\":%" PRIu64 ",\"byte_end\":%" PRIu64 ",\"text\":", h->byte_start, h->byte_end);
            cli_json_string(stdout, h->text, strlen(h->text));
            printf("}");
        }
        printf("]}\n");
    } else {
        printf("What the sources say:\n");
        for (size_t i = 0; i < ans.n_quotes; i++) {
            const retro_quote *q = &ans.quotes[i];
            printf("  \"");
            for (const char *p = q->text; *p; p++) putchar(*p == '\n' || *p == '\t' ? ' ' : *p);
            printf("\"\n     (source %zu: %s, bytes %" PRIu64 "-%" PRIu64 ")\n", q->source + 1, q->path, q->byte_start,
                   q->byte_end);
        }
        if (!ans.n_quotes) printf("  (no sentence of the sources shares a content word with the question)\n");
        if (reader) {
            printf("\nWhat the reader at %s writes from them:\n", ans.generated_by);
            print_block(ans.gen.text, ans.gen.len);
        } else {
            retro_model_info mi;
            retro_model_get_info(m, &mi);
            printf("\nWhat the model writes from %s (%s, %zu parameters; a small model writes fluent nonsense: "
                   "trust the quotes):\n  %s\n",
                   ans.in_prompt == ans.sources.n ? "them" : "the first that fit its context", dir, mi.params,
                   ans.gen.text);
            printf("(for a fluent answer from a bigger model: --reader URL, any OpenAI-compatible server)\n");
        }
        printf("\nSources:\n");
        for (size_t i = 0; i < ans.sources.n; i++) {
            const retro_source *h = &ans.sources.items[i];
            char ex[121];
            size_t j = 0;
            for (const char *p = h->text; *p && j < 117; p++) ex[j++] = *p == '\n' || *p == '\t' ? ' ' : *p;
            while (j > 0 && ((unsigned char)ex[j - 1] & 0xC0) == 0x80) j--;   /* whole UTF-8 sequences */
            if (j > 0 && ((unsigned char)ex[j - 1] & 0xC0) == 0xC0) j--;
            ex[j] = 0;
            printf("  %zu. %s  bytes %" PRIu64 "-%" PRIu64 "  score %.3f%s\n     \"%s...\"\n", i + 1, h->path,
                   h->byte_start, h->byte_end, h->score, i < ans.in_prompt ? "" : "  (not in the prompt)", ex);
        }
    }
done:
    retro_answer_free(&ans);
    retro_kb_close(kb);
    retro_model_free(m);
    return rc ? cli_fail(rc) : CLI_OK;
}
