/*
 * cmd_tokenizer.c - `retro tokenizer train|encode|decode|info`.
 *
 *   retro tokenizer train [--vocab-size N] -o OUT.rtok PATH...
 *   retro tokenizer encode [--tokenizer FILE | --gpt2 DIR] [--json]  < text
 *   retro tokenizer decode [--tokenizer FILE | --gpt2 DIR]           < ids
 *   retro tokenizer info   [--tokenizer FILE | --gpt2 DIR] [--json]
 *
 * Exit status: 0 ok, 1 failure (message "retro: <detail>"), 2 usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "index/corpus.h"
#include "lib/alloc.h"
#include "lib/bpe.h"
#include "lib/buf.h"
#include "lib/io.h"
#include "lib/status.h"

#define STDIN_LIMIT ((size_t)4 << 30)   /* encode/decode read at most 4 GiB */

static const char usage_main[] =
    "usage: retro tokenizer <command> [options]\n"
    "\n"
    "commands:\n"
    "  train    learn a byte-level BPE tokenizer from text files\n"
    "  encode   read text on stdin, write token ids\n"
    "  decode   read token ids on stdin, write the text\n"
    "  info     vocabulary size, merges, special tokens and hash of a tokenizer\n"
    "\n"
    "Without --tokenizer or --gpt2, encode/decode/info use the default tokenizer\n"
    "(datasets/tokenizer.rtok, or $RETRO_DEFAULT_TOKENIZER).\n"
    "Run 'retro tokenizer <command> --help' for a command's options.\n";

static const char usage_train[] =
    "usage: retro tokenizer train [--vocab-size N] -o OUT.rtok PATH...\n"
    "\n"
    "Learns a byte-level BPE tokenizer (GPT-2 pre-tokenizer, 256 byte tokens,\n"
    "merges, and the end-of-document token <|endoftext|>) from the text files\n"
    "given. Directories are walked as 'retro index add' walks them: recursively,\n"
    "following symbolic links, skipping names that start with '.', files over\n"
    "1 GiB and files that look binary (a NUL byte, or over 10% control codes,\n"
    "in the first 8 KiB); '-' reads standard input. Each file is one document,\n"
    "its bytes taken as they are.\n"
    "\n"
    "options:\n"
    "  --vocab-size N   tokens in the result, 257..16777216 (default 4096)\n"
    "  -o, --output F   where to write the .rtok file (required)\n"
    "  -h, --help       this help\n";

static const char usage_encode[] =
    "usage: retro tokenizer encode [--tokenizer FILE | --gpt2 DIR] [--json]\n"
    "\n"
    "Reads text from standard input and writes its token ids on one line,\n"
    "separated by spaces (or as a JSON array with --json). Special tokens are\n"
    "never produced: \"<|endoftext|>\" in the text is encoded as text.\n"
    "\n"
    "options:\n"
    "  --tokenizer FILE  a .rtok tokenizer (default: retro's own)\n"
    "  --gpt2 DIR        GPT-2's DIR/encoder.json and DIR/vocab.bpe\n"
    "  --json            write a JSON array\n"
    "  -h, --help        this help\n";

static const char usage_decode[] =
    "usage: retro tokenizer decode [--tokenizer FILE | --gpt2 DIR]\n"
    "\n"
    "Reads token ids from standard input (separated by white space, or one\n"
    "JSON array) and writes the bytes they stand for to standard output.\n"
    "\n"
    "options:\n"
    "  --tokenizer FILE  a .rtok tokenizer (default: retro's own)\n"
    "  --gpt2 DIR        GPT-2's DIR/encoder.json and DIR/vocab.bpe\n"
    "  -h, --help        this help\n";

static const char usage_info[] =
    "usage: retro tokenizer info [--tokenizer FILE | --gpt2 DIR] [--json]\n"
    "\n"
    "Prints the vocabulary size, number of merges, special tokens and the hash\n"
    "(hex XXH3-128 of the .rtok serialization) of a tokenizer.\n"
    "\n"
    "options:\n"
    "  --tokenizer FILE  a .rtok tokenizer (default: retro's own)\n"
    "  --gpt2 DIR        GPT-2's DIR/encoder.json and DIR/vocab.bpe\n"
    "  --json            write one JSON object\n"
    "  -h, --help        this help\n";

/* Options shared by the subcommands. */
typedef struct opts {
    const char *tokenizer, *gpt2, *output;
    uint32_t vocab_size;
    bool json;
    char **paths;   /* positional arguments */
    int n_paths;
} opts;

enum { OPT_TOK = 1, OPT_JSON = 2, OPT_TRAIN = 4 };

/* Takes the value of option `name` at argv[*i] ("--x V" or "--x=V"). */
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=') return argv[*i] + n + 1;
    if (strcmp(argv[*i], name) != 0) return NULL;
    if (*i + 1 >= argc) return "";
    return argv[++*i];
}

static bool opt_is(const char *arg, const char *name) {
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

/* Parses argv[2..] of subcommand `cmd`. Returns -1 when fine, else an exit
 * status (0 after --help, 2 on a usage error). */
static int parse_opts(int argc, char **argv, const char *cmd, const char *usage, int allowed, opts *o) {
    char where[64];
    snprintf(where, sizeof where, "tokenizer %s", cmd);
    memset(o, 0, sizeof *o);
    o->vocab_size = 4096;
    o->paths = rtr_calloc((size_t)argc, sizeof *o->paths);
    if (!o->paths) return cli_fail(RTR_E_NOMEM);
    bool dashdash = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        if (dashdash || a[0] != '-' || strcmp(a, "-") == 0) {
            o->paths[o->n_paths++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            dashdash = true;
        } else if (cli_is_help(a)) {
            fputs(usage, stdout);
            return CLI_OK;
        } else if ((allowed & OPT_TOK) && opt_is(a, "--tokenizer")) {
            v = opt_value(argc, argv, &i, "--tokenizer");
            if (!*v) return cli_usage_error(where, "--tokenizer needs a file");
            o->tokenizer = v;
        } else if ((allowed & OPT_TOK) && opt_is(a, "--gpt2")) {
            v = opt_value(argc, argv, &i, "--gpt2");
            if (!*v) return cli_usage_error(where, "--gpt2 needs a directory");
            o->gpt2 = v;
        } else if ((allowed & OPT_JSON) && strcmp(a, "--json") == 0) {
            o->json = true;
        } else if ((allowed & OPT_TRAIN) && (opt_is(a, "--output") || strcmp(a, "-o") == 0)) {
            v = strcmp(a, "-o") == 0 ? (i + 1 < argc ? argv[++i] : "") : opt_value(argc, argv, &i, "--output");
            if (!*v) return cli_usage_error(where, "-o needs a file name");
            o->output = v;
        } else if ((allowed & OPT_TRAIN) && opt_is(a, "--vocab-size")) {
            v = opt_value(argc, argv, &i, "--vocab-size");
            char *end;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (!*v || *end || errno || v[0] == '-' || n < 257 || n > (1u << 24))
                return cli_usage_error(where, "--vocab-size must be a number from 257 to 16777216, not '%s'", v);
            o->vocab_size = (uint32_t)n;
        } else {
            return cli_usage_error(where, "unknown option '%s'", a);
        }
    }
    if ((allowed & OPT_TOK) && o->tokenizer && o->gpt2)
        return cli_usage_error(where, "--tokenizer and --gpt2 cannot be used together");
    return -1;
}

/* Writes all of b to stdout; RTR_E_IO on failure. */
static int write_stdout(const void *p, size_t n) {
    if (n && fwrite(p, 1, n, stdout) != n)
        return rtr_seterr(RTR_E_IO, "standard output: write failed: %s", strerror(errno));
    if (fflush(stdout) != 0) return rtr_seterr(RTR_E_IO, "standard output: write failed: %s", strerror(errno));
    return RTR_OK;
}

/* ---- encode ------------------------------------------------------------ */

static int cmd_encode(int argc, char **argv) {
    opts o;
    int st = parse_opts(argc, argv, "encode", usage_encode, OPT_TOK | OPT_JSON, &o);
    rtr_tokenizer *tok = NULL;
    rtr_encoder *enc = NULL;
    uint8_t *text = NULL;
    size_t len;
    rtr_u32vec ids = {0};
    rtr_buf out = {0};
    int rc;
    if (st >= 0) goto done;
    if (o.n_paths) {
        st = cli_usage_error("tokenizer encode", "unexpected argument '%s' (text is read from stdin)", o.paths[0]);
        goto done;
    }
    if ((rc = cli_load_tokenizer(o.tokenizer, o.gpt2, &tok)) != RTR_OK ||
        (rc = rtr_read_fd(0, "standard input", STDIN_LIMIT, &text, &len)) != RTR_OK ||
        (rc = rtr_encoder_new(tok, &enc)) != RTR_OK ||
        (rc = rtr_encoder_encode(enc, text, len, &ids)) != RTR_OK ||
        (rc = rtr_buf_reserve(&out, ids.len * 8 + 4)) != RTR_OK) {
        st = cli_fail(rc);
        goto done;
    }
    if (o.json) out.data[out.len++] = '[';
    for (size_t i = 0; i < ids.len; i++) {
        char num[16];
        int k = 0;
        uint32_t v = ids.data[i];
        do num[k++] = (char)('0' + v % 10); while ((v /= 10) != 0);
        if ((rc = rtr_buf_reserve(&out, 16)) != RTR_OK) {
            st = cli_fail(rc);
            goto done;
        }
        if (i) out.data[out.len++] = o.json ? ',' : ' ';
        while (k) out.data[out.len++] = (uint8_t)num[--k];
    }
    if ((rc = rtr_buf_append(&out, o.json ? "]\n" : "\n", o.json ? 2 : 1)) != RTR_OK ||
        (rc = write_stdout(out.data, out.len)) != RTR_OK) {
        st = cli_fail(rc);
        goto done;
    }
    st = CLI_OK;
done:
    rtr_free(o.paths);
    rtr_buf_free(&out);
    rtr_u32vec_free(&ids);
    rtr_free(text);
    rtr_encoder_free(enc);
    rtr_tokenizer_free(tok);
    return st;
}

/* ---- decode ------------------------------------------------------------ */

static bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Parses whitespace-separated ids or one JSON array of ids. */
static int parse_ids(const uint8_t *s, size_t n, rtr_u32vec *ids) {
    size_t i = 0;
    while (i < n && is_ws(s[i])) i++;
    bool json = i < n && s[i] == '[';
    if (json) i++;
    bool need_sep = false, closed = false;
    for (;;) {
        while (i < n && is_ws(s[i])) i++;
        if (i == n) break;
        if (json && s[i] == ']') {
            if (!need_sep && ids->len)
                return rtr_seterr(RTR_E_INVALID, "standard input: bad JSON array: ',' before ']' at byte %zu", i);
            i++;
            closed = true;
            break;
        }
        if (json && need_sep) {
            if (s[i] != ',')
                return rtr_seterr(RTR_E_INVALID, "standard input: bad JSON array: expected ',' or ']' at byte %zu", i);
            i++;
            need_sep = false;
            continue;
        }
        size_t start = i;
        uint64_t v = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && v <= UINT32_MAX) v = v * 10 + (uint64_t)(s[i++] - '0');
        bool ended = i == n || is_ws(s[i]) || (json && (s[i] == ',' || s[i] == ']'));
        if (i == start || v > UINT32_MAX || !ended) {
            size_t e = start;
            while (e < n && !is_ws(s[e]) && e - start < 20) e++;
            return rtr_seterr(RTR_E_INVALID, "standard input: bad token id '%.*s' at byte %zu", (int)(e - start),
                              (const char *)s + start, start);
        }
        int rc = rtr_u32vec_push(ids, (uint32_t)v);
        if (rc) return rc;
        need_sep = json;
    }
    if (json && !closed) return rtr_seterr(RTR_E_INVALID, "standard input: JSON array not closed with ']'");
    while (i < n && is_ws(s[i])) i++;
    if (i != n) return rtr_seterr(RTR_E_INVALID, "standard input: unexpected data after the JSON array at byte %zu", i);
    return RTR_OK;
}

static int cmd_decode(int argc, char **argv) {
    opts o;
    int st = parse_opts(argc, argv, "decode", usage_decode, OPT_TOK, &o);
    rtr_tokenizer *tok = NULL;
    uint8_t *text = NULL;
    size_t len;
    rtr_u32vec ids = {0};
    rtr_buf out = {0};
    int rc;
    if (st >= 0) goto done;
    if (o.n_paths) {
        st = cli_usage_error("tokenizer decode", "unexpected argument '%s' (ids are read from stdin)", o.paths[0]);
        goto done;
    }
    if ((rc = cli_load_tokenizer(o.tokenizer, o.gpt2, &tok)) != RTR_OK ||
        (rc = rtr_read_fd(0, "standard input", STDIN_LIMIT, &text, &len)) != RTR_OK ||
        (rc = parse_ids(text, len, &ids)) != RTR_OK ||
        (rc = rtr_tokenizer_decode(tok, ids.data, ids.len, &out)) != RTR_OK ||
        (rc = write_stdout(out.data, out.len)) != RTR_OK) {
        st = cli_fail(rc);
        goto done;
    }
    st = CLI_OK;
done:
    rtr_free(o.paths);
    rtr_buf_free(&out);
    rtr_u32vec_free(&ids);
    rtr_free(text);
    rtr_tokenizer_free(tok);
    return st;
}

/* ---- info -------------------------------------------------------------- */

static void json_str(FILE *f, const uint8_t *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static int cmd_info(int argc, char **argv) {
    opts o;
    int st = parse_opts(argc, argv, "info", usage_info, OPT_TOK | OPT_JSON, &o);
    rtr_tokenizer *tok = NULL;
    int rc;
    if (st >= 0) goto done;
    if (o.n_paths) {
        st = cli_usage_error("tokenizer info", "unexpected argument '%s'", o.paths[0]);
        goto done;
    }
    if ((rc = cli_load_tokenizer(o.tokenizer, o.gpt2, &tok)) != RTR_OK) {
        st = cli_fail(rc);
        goto done;
    }
    const char *src = o.gpt2 ? o.gpt2 : o.tokenizer ? o.tokenizer : retro_default_tokenizer();
    char hash[33];
    rtr_tokenizer_hash(tok, hash);
    uint32_t ns = rtr_tokenizer_n_special(tok);
    if (o.json) {
        printf("{\"source\":");
        json_str(stdout, (const uint8_t *)src, strlen(src));
        printf(",\"format\":\"%s\",\"vocab_size\":%u,\"merges\":%u,\"eod\":%u,\"special\":[", o.gpt2 ? "gpt2" : "rtok",
               rtr_tokenizer_vocab_size(tok), rtr_tokenizer_n_merges(tok), rtr_tokenizer_eod(tok));
        for (uint32_t i = 0; i < ns; i++) {
            uint32_t id = rtr_tokenizer_special(tok, i);
            size_t l;
            const uint8_t *b = rtr_tokenizer_token(tok, id, &l);
            printf("%s{\"id\":%u,\"text\":", i ? "," : "", id);
            json_str(stdout, b, l);
            printf("}");
        }
        printf("],\"hash\":\"%s\"}\n", hash);
    } else {
        printf("tokenizer:      %s (%s)\n", src, o.gpt2 ? "GPT-2 files" : ".rtok");
        printf("vocab size:     %u\n", rtr_tokenizer_vocab_size(tok));
        printf("merges:         %u\n", rtr_tokenizer_n_merges(tok));
        printf("special tokens:");
        for (uint32_t i = 0; i < ns; i++) {
            uint32_t id = rtr_tokenizer_special(tok, i);
            size_t l;
            const uint8_t *b = rtr_tokenizer_token(tok, id, &l);
            printf(" %.*s=%u%s", (int)l, (const char *)b, id, i == 0 ? " (end of document)" : "");
        }
        printf("\nhash:           %s\n", hash);
    }
    st = write_stdout(NULL, 0) == RTR_OK ? CLI_OK : cli_fail(RTR_E_IO);
done:
    rtr_free(o.paths);
    rtr_tokenizer_free(tok);
    return st;
}

/* ---- train ------------------------------------------------------------- */

typedef struct train_ctx {
    rtr_bpe_trainer *tr;
    bool tty;
    size_t files;
    uint64_t bytes;
} train_ctx;

static void train_progress(void *ctx, uint64_t done, uint64_t total) {
    (void)ctx;
    fprintf(stderr, "\rtraining: %llu/%llu merges", (unsigned long long)done, (unsigned long long)total);
    if (done == total) fputc('\n', stderr);
}

static int feed_text(void *ctx, const char *path, const uint8_t *p, size_t n) {
    (void)path;
    train_ctx *c = ctx;
    int rc = rtr_bpe_trainer_feed(c->tr, p, n);
    if (rc) return rc;
    c->files++;
    c->bytes += n;
    if (c->tty) fprintf(stderr, "\rreading: %zu files, %.1f MB", c->files, (double)c->bytes / 1e6);
    return RTR_OK;
}

/* One line for the binary files skipped, one for each other skip. */
static void report_skips(const rtr_skip_list *l) {
    size_t binary = 0;
    for (size_t i = 0; i < l->n; i++) {
        const rtr_skip *s = &l->items[i];
        if (s->reason == RTR_SKIP_BINARY) binary++;
        else fprintf(stderr, "retro: skipped %s (%s%s%s)\n", s->path, rtr_skip_reason_name(s->reason),
                     s->detail ? ": " : "", s->detail ? s->detail : "");
    }
    if (binary) fprintf(stderr, "retro: skipped %zu non-text files\n", binary);
}

static int tok_train(int argc, char **argv) {
    opts o;
    int st = parse_opts(argc, argv, "train", usage_train, OPT_TRAIN, &o);
    train_ctx c = {0};
    rtr_tokenizer *tok = NULL;
    int rc;
    if (st >= 0) goto done;
    if (!o.output) {
        st = cli_usage_error("tokenizer train", "missing -o OUT.rtok");
        goto done;
    }
    if (!o.n_paths) {
        st = cli_usage_error("tokenizer train", "no input files (give files, directories or '-')");
        goto done;
    }
    c.tty = isatty(2);
    if ((rc = rtr_bpe_trainer_new(&c.tr)) != RTR_OK) {
        st = cli_fail(rc);
        goto done;
    }
    rtr_skip_list skips = {0};
    rc = rtr_corpus_texts((const char *const *)o.paths, (size_t)o.n_paths, feed_text, &c, &skips);
    if (rc) {
        if (c.tty) fputc('\n', stderr);
        rtr_skip_list_free(&skips);
        st = cli_fail(rc);
        goto done;
    }
    if (c.tty) fputc('\n', stderr);
    report_skips(&skips);
    rtr_skip_list_free(&skips);
    if (c.files == 0) {
        rtr_seterr(RTR_E_INVALID, "no text files found in the given paths");
        st = cli_fail(RTR_E_INVALID);
        goto done;
    }
    if (c.tty) rtr_bpe_trainer_set_progress(c.tr, train_progress, NULL);
    if ((rc = rtr_bpe_trainer_finish(c.tr, o.vocab_size, &tok)) != RTR_OK ||
        (rc = rtr_tokenizer_save(tok, o.output)) != RTR_OK) {
        if (c.tty) fputc('\n', stderr);
        st = cli_fail(rc);
        goto done;
    }
    char hash[33];
    rtr_tokenizer_hash(tok, hash);
    printf("%s: %u tokens (%u merges) from %zu files, %llu bytes%s; hash %s\n", o.output,
           rtr_tokenizer_vocab_size(tok), rtr_tokenizer_n_merges(tok), c.files, (unsigned long long)c.bytes,
           rtr_tokenizer_vocab_size(tok) < o.vocab_size ? " (ran out of pairs)" : "", hash);
    st = write_stdout(NULL, 0) == RTR_OK ? CLI_OK : cli_fail(RTR_E_IO);
done:
    rtr_free(o.paths);
    rtr_bpe_trainer_free(c.tr);
    rtr_tokenizer_free(tok);
    return st;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage_main, stderr);
        return CLI_USAGE;
    }
    if (cli_is_help(argv[1])) {
        fputs(usage_main, stdout);
        return CLI_OK;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "train")) return tok_train(argc, argv);
    if (!strcmp(sub, "encode")) return cmd_encode(argc, argv);
    if (!strcmp(sub, "decode")) return cmd_decode(argc, argv);
    if (!strcmp(sub, "info")) return cmd_info(argc, argv);
    return cli_usage_error("tokenizer", "unknown command '%s' (train, encode, decode, info)", sub);
}
