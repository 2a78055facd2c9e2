/* main.c - the `retro` command: dispatches to one file per subcommand. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "include/retro.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/comm.h"
#include "lib/status.h"
#include "lib/utf8.h"

static const char usage[] =
    "usage: retro <command> [options]\n"
    "\n"
    "commands:\n"
    "  index add KB PATH...     ingest documents into a knowledge base (chunk store)\n"
    "  index rm KB PATH...      delete documents and their chunks\n"
    "  index info KB            statistics of a knowledge base\n"
    "  index dump KB            documents and chunks as JSON lines\n"
    "  index show KB [ID...]    chunks with their sources and text\n"
    "  index build KB           embed chunks into the FAISS index (sharded)\n"
    "  search KB QUERY          the chunks nearest to QUERY, with sources\n"
    "  embed KB TEXT...         the vectors the knowledge base's embedder gives texts\n"
    "  train KB -o DIR          train a baseline or RETRO model on the documents of KB\n"
    "  generate MODEL PROMPT    continue PROMPT, retrieving from --kb every 64 tokens\n"
    "  eval --model DIR ...     bits per byte with and without retrieval, leakage filter\n"
    "  ask MODEL --kb KB Q      answer question Q from the knowledge base, with sources\n"
    "  serve --kb KB            an HTTP server: search, completions, metrics\n"
    "  tokenizer train|encode|decode|info\n"
    "                           train a BPE tokenizer, or encode/decode stdin\n"
    "\n"
    "Run 'retro <command> --help' for a command's options.\n";

int cli_fail(int status) {
    if (rtr_comm_rank(rtr_comm_world()) != 0) return CLI_FAIL;   /* rank 0 speaks for the job */
    const char *d = rtr_errdetail();
    fprintf(stderr, "retro: %s\n", d && *d ? d : rtr_strerror(status));
    return CLI_FAIL;
}

int cli_solo(const char *cmd) {
    if (rtr_comm_size(rtr_comm_world()) == 1) return CLI_OK;
    return cli_usage_error(cmd, "runs as one process; under mpirun only `retro index add`, `retro index build`, "
                                "`retro search`, `retro serve`, `retro train` and `retro eval` run on several ranks");
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    if (rtr_comm_rank(rtr_comm_world()) != 0) return CLI_USAGE;
    va_list ap;
    fprintf(stderr, "retro %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'retro %s --help'.\n", cmd);
    return CLI_USAGE;
}

int cli_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

int cli_load_tokenizer(const char *file, const char *gpt2_dir, rtr_tokenizer **out) {
    if (file && gpt2_dir)
        return rtr_seterr(RTR_E_INVALID, "--tokenizer and --gpt2 cannot be used together");
    if (gpt2_dir) return rtr_tokenizer_load_gpt2(gpt2_dir, out);
    return rtr_tokenizer_load(file ? file : retro_default_tokenizer(), out);
}

json_t *cli_json_text(const char *s, size_t n) {
    rtr_buf fixed = {0};
    json_t *j = rtr_utf8_repair((const uint8_t *)s, n, &fixed) >= 0
                    ? json_stringn(fixed.data ? (const char *)fixed.data : "", fixed.len)
                    : NULL;
    rtr_buf_free(&fixed);
    return j;
}

void cli_json_string(FILE *f, const char *s, size_t n) {
    json_t *j = cli_json_text(s, n);
    json_dumpf(j ? j : json_string(""), f, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
    json_decref(j);
}

int cli_parse_min_score(const char *s, float *out) {
    char *end;
    float v = strtof(s, &end);
    if (end == s || *end || !(v >= -1 && v <= 1)) return -1;
    *out = v;
    return 0;
}

/* Fault injection for the tests (tests/e2e/alloc_faults.sh): RETRO_TEST_ALLOC_FAIL=N
 * makes the Nth allocation through lib/alloc and every one after it fail;
 * RETRO_TEST_ALLOC_COUNT=1 prints how many allocations the command made. */
static void print_alloc_count(void) { fprintf(stderr, "retro: %ld allocations\n", rtr_alloc_count()); }

static void test_hooks(void) {
    const char *n = getenv("RETRO_TEST_ALLOC_FAIL");
    if (n && *n) rtr_alloc_fail_at(atol(n));
    const char *c = getenv("RETRO_TEST_ALLOC_COUNT");
    if (c && *c == '1') {
        rtr_alloc_fail_at(0);
        atexit(print_alloc_count);
    }
}

/* Debian's OpenBLAS (its pthreads build) starts a thread per core as it is loaded, and each one spins
 * on sched_yield for about a tenth of a second before it sleeps: a `retro search` over 1.15 M chunks, which
 * never calls BLAS, took 49 ms with the pool and 36 ms without it on 2 cores (docs/benchmarks.md).
 * Commands that do not compute with the model stop the pool; OpenBLAS starts it again should BLAS be
 * called after all (as when FAISS trains an inverted file). Weak: other BLAS builds have no such pool. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

static void no_blas_threads(void) {
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}

int main(int argc, char **argv) {
    test_hooks();
    if (argc >= 2 && (!strcmp(argv[1], "index") || !strcmp(argv[1], "search") || !strcmp(argv[1], "embed") ||
                      !strcmp(argv[1], "tokenizer")))
        no_blas_threads();
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("retro %s%s\n", RETRO_VERSION, rtr_comm_have_mpi() ? " (with Open MPI)" : "");
        return CLI_OK;
    }
    int (*cmd)(int, char **) = !strcmp(argv[1], "index")       ? cmd_index
                               : !strcmp(argv[1], "tokenizer") ? cmd_tokenizer
                               : !strcmp(argv[1], "search")    ? cmd_search
                               : !strcmp(argv[1], "embed")     ? cmd_embed
                               : !strcmp(argv[1], "train")     ? cmd_train
                               : !strcmp(argv[1], "generate")  ? cmd_generate
                               : !strcmp(argv[1], "eval")      ? cmd_eval
                               : !strcmp(argv[1], "ask")       ? cmd_ask
                               : !strcmp(argv[1], "serve")     ? cmd_serve
                                                               : NULL;
    if (cmd) {
        /* under mpirun: every rank runs the command; those that work in parallel say so (cli_mpi) */
        if (rtr_comm_init(&argc, &argv)) return cli_fail(RTR_E_NET);
        int parallel = cmd == cmd_search || cmd == cmd_train || cmd == cmd_eval || cmd == cmd_serve || (cmd == cmd_index && argc > 2 && (!strcmp(argv[2], "add") ||
                                                                             !strcmp(argv[2], "build")));
        int rc = parallel ? CLI_OK : cli_solo(argv[1]);
        if (rc == CLI_OK) rc = cmd(argc - 1, argv + 1);
        rtr_comm_finalize(rc == CLI_OK ? 0 : rc);
        return rc;
    }
    fprintf(stderr, "retro: unknown command '%s'\n\n%s", argv[1], usage);
    return CLI_USAGE;
}
