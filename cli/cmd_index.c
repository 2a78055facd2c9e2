/* cmd_index.c - `retro index add|rm|info|dump|show`: the knowledge base's chunk store. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "index/build.h"
#include "index/check.h"
#include "index/embed_hash.h"
#include "index/ingest.h"
#include "index/parts.h"
#include "index/kb.h"
#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "lib/utf8.h"

static const char index_usage[] =
    "usage: retro index <verb> KB [options]\n"
    "\n"
    "verbs:\n"
    "  add KB PATH...    ingest files, directories (recursively) or '-' (stdin)\n"
    "  rm KB PATH...     delete the documents of files or directories\n"
    "  info KB           statistics: documents, chunks, tokens, tokenizer, skipped files\n"
    "  dump KB           every document and chunk as JSON lines (for programs and diffs)\n"
    "  show KB [ID...]   chunks with their sources and text (default: the first 3)\n"
    "  build KB          embed new chunks and add them to the FAISS index\n"
    "  check KB          walk everything and report what is wrong\n"
    "\n"
    "Run 'retro index <verb> --help' for its options.\n";

static const char add_usage[] =
    "usage: retro index add KB PATH... [options]\n"
    "\n"
    "Adds documents to knowledge base KB (a directory; created if missing). Files are\n"
    "read as .txt/.md/.rst (plain text), .html/.htm (text without markup),\n"
    ".jsonl (one document per line) or .json (an object or an array of objects);\n"
    "other files are taken as plain text if they look like text. Unchanged files are\n"
    "skipped, changed ones replaced. Safe to interrupt: run it again to finish.\n"
    "\n"
    "A KB of several partitions (--partitions, or one per rank under mpirun) puts\n"
    "each file in the partition its path hashes to; under `mpirun -np N`, each rank\n"
    "adds to the partitions it works on (partition p: rank p mod N).\n"
    "\n"
    "options:\n"
    "  --partitions P        partitions of a new KB (default: 1, or one per mpirun rank)\n"
    "  --tokenizer FILE      tokenizer for a new KB (default: retro's bundled one)\n"
    "  --gpt2 DIR            use GPT-2's vocab.bpe + encoder.json from DIR for a new KB\n"
    "  --prune               delete documents whose files are gone from the given dirs\n"
    "  --threads N           worker threads (default: one per core)\n"
    "  --format F            force the format: text, html, jsonl, json (default: by extension)\n"
    "  --text-field NAME     JSON field with the text (default: text)\n"
    "  --id-field NAME       JSON field with a record id (default: id)\n"
    "  --title-field NAME    JSON field with a title (default: title)\n"
    "  --invalid-utf8 P      replace (default: bad bytes become U+FFFD) or skip (the file)\n"
    "  --max-file-size N     skip files larger than N bytes (default: 1 GiB; k/M/G suffixes)\n"
    "  --hidden              also read hidden files and directories (.name)\n"
    "  --name NAME           the path recorded for standard input (default: stdin)\n"
    "  --batch-size N        commit about every N input bytes (default: 16M)\n"
    "  --quiet               no progress bar\n"
    "  --json                print the summary as JSON\n";

static int parse_size(const char *s, uint64_t *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    switch (*end) {
    case 'k': case 'K': v *= 1024; end++; break;
    case 'm': case 'M': v *= 1024 * 1024; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end) return -1;
    *out = (uint64_t)v;
    return 0;
}

static const char *fmt_count(uint64_t n, char *buf, size_t size) {
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%" PRIu64, n), o = 0;
    for (int i = 0; i < len && (size_t)o + 2 < size; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
    return buf;
}

/* Opens a KB for the verbs that only read it. */
static int open_ro(const char *dir, rtr_kb **kb) { return rtr_kb_open(dir, 0, NULL, NULL, kb); }

/* ---------------------------------------------------------------- add */
static int index_add(int argc, char **argv) {
    enum { O_TOK = 256, O_GPT2, O_PRUNE, O_THREADS, O_FORMAT, O_TF, O_IF, O_TIF, O_UTF8, O_MAX, O_HIDDEN,
           O_NAME, O_QUIET, O_JSON, O_BATCH, O_PARTS };
    static const struct option opts[] = {
        {"tokenizer", 1, 0, O_TOK}, {"gpt2", 1, 0, O_GPT2}, {"prune", 0, 0, O_PRUNE},
        {"threads", 1, 0, O_THREADS}, {"format", 1, 0, O_FORMAT}, {"text-field", 1, 0, O_TF},
        {"id-field", 1, 0, O_IF}, {"title-field", 1, 0, O_TIF}, {"invalid-utf8", 1, 0, O_UTF8},
        {"max-file-size", 1, 0, O_MAX}, {"hidden", 0, 0, O_HIDDEN}, {"name", 1, 0, O_NAME},
        {"quiet", 0, 0, O_QUIET}, {"json", 0, 0, O_JSON}, {"batch-size", 1, 0, O_BATCH},
        {"partitions", 1, 0, O_PARTS}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    rtr_ingest_opts o = {0};
    long parts = 0;
    o.progress = 1;
    const char *tokfile = NULL, *gpt2 = NULL;
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(add_usage, stdout); return CLI_OK;
        case O_TOK: tokfile = optarg; break;
        case O_GPT2: gpt2 = optarg; break;
        case O_PRUNE: o.prune = 1; break;
        case O_THREADS:
            o.threads = atoi(optarg);
            if (o.threads < 1 || o.threads > 256) return cli_usage_error("index add", "--threads must be 1..256");
            break;
        case O_FORMAT:
            if ((o.corpus.format = rtr_format_parse(optarg)) < 0)
                return cli_usage_error("index add", "unknown format '%s'", optarg);
            break;
        case O_TF: o.corpus.text_field = optarg; break;
        case O_IF: o.corpus.id_field = optarg; break;
        case O_TIF: o.corpus.title_field = optarg; break;
        case O_UTF8:
            if (!strcmp(optarg, "replace")) o.corpus.utf8_policy = RTR_UTF8_REPLACE;
            else if (!strcmp(optarg, "skip")) o.corpus.utf8_policy = RTR_UTF8_SKIP;
            else return cli_usage_error("index add", "--invalid-utf8 takes replace or skip");
            break;
        case O_MAX:
            if (parse_size(optarg, &o.corpus.max_file_size) || o.corpus.max_file_size == 0)
                return cli_usage_error("index add", "bad size '%s'", optarg);
            break;
        case O_HIDDEN: o.corpus.include_hidden = 1; break;
        case O_NAME: o.stdin_name = optarg; break;
        case O_QUIET: o.progress = 0; break;
        case O_BATCH:
            if (parse_size(optarg, &o.batch_bytes) || o.batch_bytes == 0)
                return cli_usage_error("index add", "bad size '%s'", optarg);
            break;
        case O_JSON: json = 1; break;
        case O_PARTS:
            parts = atol(optarg);
            if (parts < 1 || parts > RTR_PARTS_MAX)
                return cli_usage_error("index add", "--partitions must be 1..%d", RTR_PARTS_MAX);
            break;
        default: return cli_usage_error("index add", "bad option");
        }
    }
    if (argc - optind < 2) return cli_usage_error("index add", "expected KB and at least one PATH");
    const char *dir = argv[optind];
    rtr_tokenizer *tok = NULL;
    rtr_parts *ps = NULL;
    int rc = RTR_OK;
    /* A tokenizer is loaded only when one is named or the KB is new. */
    char *mpath = rtr_path_join(dir, "manifest.json");
    int is_new = mpath && !rtr_path_exists(mpath);
    rtr_free(mpath);
    if (tokfile || gpt2 || is_new) rc = cli_load_tokenizer(tokfile, gpt2, &tok);
    rc = rtr_comm_agree(rtr_comm_world(), rc);
    if (!rc) rc = rtr_parts_open(dir, RTR_KB_WRITE | RTR_KB_CREATE, (uint32_t)parts, tok, rtr_comm_world(), &ps);
    if (!rc && tok) rc = rtr_parts_check_tokenizer(ps, tok);
    rtr_tokenizer_free(tok);
    if (rc) {
        rtr_parts_close(ps);
        return cli_fail(rc);
    }
    rtr_ingest_report rep;
    rc = rtr_parts_ingest(ps, (const char *const *)argv + optind + 1, (size_t)(argc - optind - 1), &o, &rep);
    rtr_parts_close(ps);
    if (rc) {
        rtr_ingest_report_free(&rep);
        return cli_fail(rc);
    }
    if (rtr_comm_rank(rtr_comm_world()) != 0) {   /* rank 0 reports for the job */
        rtr_ingest_report_free(&rep);
        return CLI_OK;
    }
    double mbs = rep.seconds > 0 ? (double)rep.bytes_read / 1e6 / rep.seconds : 0;
    double tps = rep.seconds > 0 ? (double)rep.tokens_added / rep.seconds : 0;
    if (json) {
        json_t *skips = json_array();
        for (size_t i = 0; i < rep.skips.n; i++)
            json_array_append_new(skips, json_pack("{s:s, s:s, s:s?}", "path", rep.skips.items[i].path, "reason",
                                                   rtr_skip_reason_name(rep.skips.items[i].reason), "detail",
                                                   rep.skips.items[i].detail));
        json_t *j = json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:o}", "kb", dir,
            "files", (json_int_t)rep.files, "files_new", (json_int_t)rep.files_new, "files_changed",
            (json_int_t)rep.files_changed, "files_unchanged", (json_int_t)rep.files_unchanged, "files_skipped",
            (json_int_t)rep.files_skipped, "files_pruned", (json_int_t)rep.files_pruned, "docs_added",
            (json_int_t)rep.docs_added, "docs_removed", (json_int_t)rep.docs_removed, "docs_kept",
            (json_int_t)rep.docs_kept, "chunks_added", (json_int_t)rep.chunks_added, "tokens_added",
            (json_int_t)rep.tokens_added, "bytes_read", (json_int_t)rep.bytes_read, "bad_records",
            (json_int_t)rep.bad_records, "seconds", rep.seconds, "mb_per_s", mbs, "tokens_per_s", tps, "skipped",
            skips);
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(j);
    } else {
        char a[32], b[32], s1[32];
        printf("%s: %" PRIu64 " files: %" PRIu64 " new, %" PRIu64 " changed, %" PRIu64 " unchanged, %" PRIu64
               " skipped%s",
               dir, rep.files, rep.files_new, rep.files_changed, rep.files_unchanged, rep.files_skipped,
               o.prune ? "" : "\n");
        if (o.prune) printf(", %" PRIu64 " pruned\n", rep.files_pruned);
        printf("  documents: %" PRIu64 " added, %" PRIu64 " removed, %" PRIu64 " kept\n", rep.docs_added,
               rep.docs_removed, rep.docs_kept);
        printf("  %s chunks, %s tokens from %sB in %.2f s (%.1f MB/s, %.2f M tokens/s)\n",
               fmt_count(rep.chunks_added, a, sizeof a), fmt_count(rep.tokens_added, b, sizeof b),
               rtr_fmt_si((double)rep.bytes_read, s1, sizeof s1), rep.seconds, mbs, tps / 1e6);
        if (rep.skips.n) {
            printf("skipped:\n");
            for (size_t i = 0; i < rep.skips.n; i++)
                printf("  %-14s %s%s%s\n", rtr_skip_reason_name(rep.skips.items[i].reason), rep.skips.items[i].path,
                       rep.skips.items[i].detail ? ": " : "",
                       rep.skips.items[i].detail ? rep.skips.items[i].detail : "");
        }
    }
    rtr_ingest_report_free(&rep);
    return CLI_OK;
}

/* ---------------------------------------------------------------- rm */
static int index_rm(int argc, char **argv) {
    if (argc >= 2 && cli_is_help(argv[1])) {
        puts("usage: retro index rm KB PATH...\n\n"
             "Deletes every document that came from PATH (a file, or a directory: all files\n"
             "under it, or the --name given to standard input) with all its chunks. Nothing is\n"
             "deleted if any PATH matches no document.");
        return CLI_OK;
    }
    if (argc < 3) return cli_usage_error("index rm", "expected KB and at least one PATH");
    rtr_kb *kb;
    int rc = rtr_kb_open(argv[1], RTR_KB_WRITE, NULL, NULL, &kb);
    if (rc) return cli_fail(rc);
    uint64_t files, docs;
    rc = rtr_kb_remove(kb, (const char *const *)argv + 2, (size_t)(argc - 2), &files, &docs);
    rtr_kb_close(kb);
    if (rc) return cli_fail(rc);
    printf("%s: removed %" PRIu64 " files, %" PRIu64 " documents\n", argv[1], files, docs);
    return CLI_OK;
}

/* Parses "VERB KB [FLAG]" (and --help, which prints help). Returns -1 to go on,
 * or the exit code to return. */
static int parse_kb_flags(int argc, char **argv, const char *cmd, const char *help, const char *const *flags,
                          const char **dir, int *flag_set) {
    *dir = NULL;
    size_t nf = 0;
    while (flags[nf]) flag_set[nf++] = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            puts(help);
            return CLI_OK;
        }
        size_t f = 0;
        while (f < nf && strcmp(argv[i], flags[f])) f++;
        if (f < nf) flag_set[f] = 1;
        else if (!*dir) *dir = argv[i];
        else return cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
    }
    return *dir ? -1 : cli_usage_error(cmd, "expected KB");
}

static int parse_kb_flag(int argc, char **argv, const char *cmd, const char *help, const char *flag, const char **dir,
                         int *flag_set) {
    const char *flags[] = {flag, NULL};
    return parse_kb_flags(argc, argv, cmd, help, flags, dir, flag_set);
}

/* ---------------------------------------------------------------- info */
static int index_info(int argc, char **argv) {
    int json;
    const char *dir;
    int done = parse_kb_flag(argc, argv, "index info",
                             "usage: retro index info KB [--json]\n\n"
                             "Prints documents, chunks, tokens, bytes, files, the tokenizer, the schema\n"
                             "version and the skipped files of knowledge base KB.",
                             "--json", &dir, &json);
    if (done >= 0) return done;
    rtr_kb *kb;
    int rc = open_ro(dir, &kb);
    if (rc) return cli_fail(rc);
    rtr_store_txn *t;
    if ((rc = rtr_store_read_begin(rtr_kb_store(kb), &t))) {
        rtr_kb_close(kb);
        return cli_fail(rc);
    }
    rtr_store_stats st;
    rtr_store_get_stats(t, &st);
    uint32_t vocab = rtr_tokenizer_vocab_size(rtr_kb_tokenizer(kb));
    json_t *skips = json_array();
    uint8_t key[16], prev[16];
    rtr_skip_rec sr;
    int have = 0;
    while ((rc = rtr_store_next_skip(t, have ? prev : NULL, key, &sr)) == RTR_OK) {
        memcpy(prev, key, 16);
        have = 1;
        json_array_append_new(skips, json_pack("{s:s%, s:s, s:s%}", "path", sr.path, (size_t)sr.path_len, "reason",
                                               rtr_skip_reason_name(sr.reason), "detail", sr.detail,
                                               (size_t)sr.detail_len));
    }
    rtr_store_txn_end(t);
    if (rc != RTR_E_NOTFOUND) {
        json_decref(skips);
        rtr_kb_close(kb);
        return cli_fail(rc);
    }
    if (json) {
        json_t *j = json_pack("{s:s, s:i, s:s, s:I, s:I, s:I, s:I, s:I, s:i, s:{s:s, s:I}, s:I, s:I, s:o}", "kb", dir,
                              "schema_version", (int)st.schema, "created", rtr_kb_created(kb), "documents",
                              (json_int_t)st.n_docs, "chunks", (json_int_t)st.n_chunks, "tokens",
                              (json_int_t)st.n_tokens, "bytes", (json_int_t)st.n_bytes, "files",
                              (json_int_t)st.n_files, "chunk_tokens", RTR_CHUNK_TOKENS, "tokenizer", "hash",
                              rtr_kb_tokenizer_hash(kb), "vocab_size", (json_int_t)vocab, "store_bytes",
                              (json_int_t)st.data_size, "next_chunk_id", (json_int_t)st.next_chunk_id, "skipped",
                              skips);
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(j);
    } else {
        char a[32], b[32], s[32];
        printf("knowledge base  %s (created %s)\n", dir, rtr_kb_created(kb));
        printf("schema version  %u\n", st.schema);
        printf("documents       %s from %" PRIu64 " files\n", fmt_count(st.n_docs, a, sizeof a), st.n_files);
        printf("chunks          %s (%d tokens each, the last of a document may be shorter)\n",
               fmt_count(st.n_chunks, a, sizeof a), RTR_CHUNK_TOKENS);
        printf("tokens          %s\n", fmt_count(st.n_tokens, a, sizeof a));
        printf("text bytes      %s (%sB)\n", fmt_count(st.n_bytes, b, sizeof b), rtr_fmt_si((double)st.n_bytes, s, sizeof s));
        printf("tokenizer       %s (vocabulary %u)\n", rtr_kb_tokenizer_hash(kb), vocab);
        printf("store size      %sB\n", rtr_fmt_si((double)st.data_size, s, sizeof s));
        printf("skipped files   %zu\n", json_array_size(skips));
        size_t i;
        json_t *v;
        json_array_foreach(skips, i, v) {
            const char *det = json_string_value(json_object_get(v, "detail"));
            printf("  %-14s %s%s%s\n", json_string_value(json_object_get(v, "reason")),
                   json_string_value(json_object_get(v, "path")), det && *det ? ": " : "", det && *det ? det : "");
        }
        json_decref(skips);
    }
    rtr_kb_close(kb);
    return CLI_OK;
}

/* ---------------------------------------------------------------- dump / show */
static json_t *doc_json(const rtr_doc *d) {
    char hash[33];
    rtr_hex(d->content_hash, 16, hash);
    return json_pack("{s:s, s:I, s:s%, s:s%, s:s%, s:I, s:I, s:I, s:I, s:s, s:I}", "type", "doc", "id",
                     (json_int_t)d->id, "path", d->path, (size_t)d->path_len, "title", d->title,
                     (size_t)d->title_len, "ext_id", d->ext_id, (size_t)d->ext_id_len, "bytes",
                     (json_int_t)d->n_bytes, "tokens", (json_int_t)d->n_tokens, "first_chunk",
                     (json_int_t)d->first_chunk, "chunks", (json_int_t)d->n_chunks, "hash", hash, "mtime_ns",
                     (json_int_t)d->mtime_ns);
}

static json_t *chunk_json(const rtr_chunk *c, int with_tokens) {
    json_t *j = json_pack("{s:s, s:I, s:I, s:i, s:I, s:I, s:i, s:b}", "type", "chunk", "id", (json_int_t)c->id,
                          "doc", (json_int_t)c->doc_id, "seq", (int)c->seq, "start", (json_int_t)c->byte_start,
                          "end", (json_int_t)c->byte_end, "n_tokens", (int)c->n_tokens, "last",
                          (c->flags & RTR_CHUNK_LAST) != 0);
    if (with_tokens) {
        json_t *a = json_array();
        for (uint32_t i = 0; i < c->n_tokens; i++) json_array_append_new(a, json_integer(c->tokens[i]));
        json_object_set_new(j, "tokens", a);
    }
    return j;
}

static int index_dump(int argc, char **argv) {
    int set[2];
    const char *dir, *flags[] = {"--no-tokens", "--text", NULL};
    int done = parse_kb_flags(argc, argv, "index dump",
                              "usage: retro index dump KB [--no-tokens] [--text]\n\n"
                              "Writes every document, then every chunk (with its token ids), as JSON lines\n"
                              "in id order. Two knowledge bases with the same content dump the same.\n"
                              "--text adds each chunk's text, its tokens decoded (bytes that are not UTF-8,\n"
                              "a character cut at a chunk's edge, become U+FFFD): what the lexical index\n"
                              "reads, for another search engine to index the same chunks.",
                              flags, &dir, set);
    if (done >= 0) return done;
    int tokens = !set[0], with_text = set[1];
    rtr_buf raw = {0};
    rtr_kb *kb;
    int rc = open_ro(dir, &kb);
    if (rc) return cli_fail(rc);
    rtr_store_txn *t;
    if (!(rc = rtr_store_read_begin(rtr_kb_store(kb), &t))) {
        rtr_doc d;
        uint64_t id = 0;
        while ((rc = rtr_store_next_doc(t, id, &d)) == RTR_OK) {
            id = d.id;
            json_t *j = doc_json(&d);
            json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
            putchar('\n');
            json_decref(j);
        }
        rtr_chunk c;
        id = 0;
        if (rc == RTR_E_NOTFOUND) {
            while ((rc = rtr_store_next_chunk(t, id, &c)) == RTR_OK) {
                id = c.id;
                json_t *j = chunk_json(&c, tokens);
                if (with_text) {
                    raw.len = 0;
                    json_t *text = NULL;
                    if ((rc = rtr_tokenizer_decode(rtr_kb_tokenizer(kb), c.tokens, c.n_tokens, &raw)) ||
                        !(text = cli_json_text((const char *)raw.data, raw.len))) {
                        json_decref(j);
                        rc = rc ? rc : RTR_E_NOMEM;
                        break;
                    }
                    json_object_set_new(j, "text", text);
                }
                json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
                putchar('\n');
                json_decref(j);
            }
        }
        if (rc == RTR_E_NOTFOUND) rc = RTR_OK;
        rtr_store_txn_end(t);
    }
    rtr_buf_free(&raw);
    rtr_kb_close(kb);
    return rc ? cli_fail(rc) : CLI_OK;
}

static int index_show(int argc, char **argv) {
    const char *dir = NULL;
    int json = 0;
    uint64_t ids[256];
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            puts("usage: retro index show KB [CHUNK_ID...] [--json]\n\n"
                 "Prints chunks with their source file, byte span and text (default: the\n"
                 "first 3 chunks).");
            return CLI_OK;
        }
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!dir) dir = argv[i];
        else if (n < 256) {
            char *end;
            ids[n++] = strtoull(argv[i], &end, 10);
            if (*end || !ids[n - 1]) return cli_usage_error("index show", "bad chunk id '%s'", argv[i]);
        }
    }
    if (!dir) return cli_usage_error("index show", "expected KB");
    rtr_kb *kb;
    int rc = open_ro(dir, &kb);
    if (rc) return cli_fail(rc);
    rtr_store_txn *t;
    if ((rc = rtr_store_read_begin(rtr_kb_store(kb), &t))) {
        rtr_kb_close(kb);
        return cli_fail(rc);
    }
    if (n == 0) {   /* the first three chunks */
        rtr_chunk c;
        uint64_t id = 0;
        while (n < 3 && rtr_store_next_chunk(t, id, &c) == RTR_OK) id = ids[n++] = c.id;
    }
    rtr_buf text = {0};
    for (size_t i = 0; i < n && !rc; i++) {
        rtr_chunk c;
        rtr_doc d;
        if ((rc = rtr_store_get_chunk(t, ids[i], &c)) || (rc = rtr_store_get_doc(t, c.doc_id, &d))) break;
        text.len = 0;
        if ((rc = rtr_store_get_text(t, c.doc_id, &text))) break;
        if (c.byte_end > text.len) { rc = rtr_seterr(RTR_E_CORRUPT, "%s: chunk %" PRIu64 " span past its text", dir, c.id); break; }
        const char *span = (const char *)text.data + c.byte_start;
        size_t span_len = (size_t)(c.byte_end - c.byte_start);
        if (json) {
            json_t *j = chunk_json(&c, 1);
            json_object_set_new(j, "path", json_stringn(d.path, d.path_len));
            json_object_set_new(j, "text", json_stringn(span, span_len));
            json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
            putchar('\n');
            json_decref(j);
        } else {
            printf("chunk %" PRIu64 "  %.*s  bytes %" PRIu64 "-%" PRIu64 "  (%u tokens, chunk %u of the document)\n",
                   c.id, (int)d.path_len, d.path, c.byte_start, c.byte_end, c.n_tokens, c.seq + 1);
            printf("  | ");
            for (size_t k = 0; k < span_len; k++) {
                putchar(span[k]);
                if (span[k] == '\n') printf("  | ");
            }
            printf("\n\n");
        }
    }
    rtr_buf_free(&text);
    rtr_store_txn_end(t);
    rtr_kb_close(kb);
    return rc ? cli_fail(rc) : CLI_OK;
}

/* ---------------------------------------------------------------- build */
static const char build_usage[] =
    "usage: retro index build KB [options]\n"
    "\n"
    "Embeds every chunk not yet indexed and adds it to the knowledge base's FAISS\n"
    "shards. The first build fixes the embedder and the index type; later builds add\n"
    "new chunks without retraining.\n"
    "\n"
    "A KB of partitions is trained once for all of them (hash statistics, projection\n"
    "and quantizer from a sample of every partition), then each partition is built\n"
    "with it; under `mpirun -np N`, each rank builds the partitions it works on.\n"
    "\n"
    "options (for a new index, or with --retrain):\n"
    "  --embedder KIND       hash (default: no weights needed) or http\n"
    "  --dim N               hash embedder dimension (default 256, a multiple of 64)\n"
    "  --embed-url URL       http: server base URL (POSTs to URL/v1/embeddings);\n"
    "                        the API key, if any, comes from RETRO_EMBED_API_KEY\n"
    "  --embed-model NAME    http: model name to send\n"
    "  --shards N            spread chunks over N shards by document (default 1; one\n"
    "                        per core from 256Ki chunks on, so queries use every core)\n"
    "  --index-type T        auto (default: from the chunk count and the budget: exact\n"
    "                        Flat, searched through 4-bit codes from 64Ki chunks, while\n"
    "                        they take at most 96 MiB per shard; then IVF) or a FAISS\n"
    "                        factory string, e.g. Flat, IVF1024,Flat, IVF4096,PQ32\n"
    "  --memory-budget N     bytes the index may take (default 4G; k/M/G suffixes)\n"
    "  --project N|auto|off  project the hash vectors onto their first N principal\n"
    "                        components, fitted on a sample (auto: past the chunks\n"
    "                        whose raw vectors are searched exactly, the most of 128,\n"
    "                        64 and 32 that keep the search exact, else 32)\n"
    "options (any build):\n"
    "  --nprobe N            IVF lists searched per query (default: from a scan budget);\n"
    "                        more finds farther neighbours at a higher cost per query\n"
    "  --retrain             re-embed and rebuild everything from scratch\n"
    "  --checkpoint S        save what is embedded every S seconds (default 300; 0:\n"
    "                        never), so that a build killed resumes from there (not\n"
    "                        with --retrain, which keeps the old index until it ends)\n"
    "  --compact             remove vectors of deleted documents from the shards\n"
    "  --search-mode M       what a search without --mode uses from now on: vector,\n"
    "                        lexical or hybrid (recorded in the manifest; default vector)\n"
    "  --threads N           embedding threads (default: one per core)\n"
    "  --quiet               no progress bar\n"
    "  --json                print the summary as JSON\n";

/* An explicit hash embedder (of hash_dim, 0: any) on an existing index must be the recorded one. */
static int check_hash_embedder(rtr_kb *kb, const char *dir, uint32_t hash_dim) {
    json_t *ix = rtr_kb_manifest_get(kb, "index");
    if (!ix) return RTR_OK;
    json_t *rec = json_object_get(ix, "embedder");
    const char *kind = json_string_value(json_object_get(rec, "kind"));
    if (kind && !strcmp(kind, "pca")) {   /* a projection of the hash embedder's vectors is still that embedder */
        rec = json_object_get(rec, "inner");
        kind = json_string_value(json_object_get(rec, "kind"));
    }
    json_int_t dim = json_integer_value(json_object_get(rec, "dim"));
    if (!kind || strcmp(kind, "hash") || (hash_dim && dim != hash_dim))
        return rtr_seterr(RTR_E_MISMATCH, "%s: indexed with embedder %s %lld; use --retrain to change it", dir,
                          kind ? kind : "?", (long long)dim);
    return RTR_OK;
}

static int index_build(int argc, char **argv) {
    enum { O_EMB = 256, O_DIM, O_URL, O_MODEL, O_SHARDS, O_TYPE, O_BUDGET, O_NPROBE, O_RETRAIN, O_COMPACT, O_THREADS,
           O_QUIET, O_JSON, O_SMODE, O_PROJECT, O_CHECKPOINT };
    static const struct option opts[] = {
        {"embedder", 1, 0, O_EMB}, {"dim", 1, 0, O_DIM}, {"embed-url", 1, 0, O_URL}, {"embed-model", 1, 0, O_MODEL},
        {"shards", 1, 0, O_SHARDS}, {"index-type", 1, 0, O_TYPE}, {"memory-budget", 1, 0, O_BUDGET},
        {"nprobe", 1, 0, O_NPROBE}, {"retrain", 0, 0, O_RETRAIN}, {"compact", 0, 0, O_COMPACT},
        {"threads", 1, 0, O_THREADS}, {"quiet", 0, 0, O_QUIET}, {"json", 0, 0, O_JSON}, {"search-mode", 1, 0, O_SMODE},
        {"project", 1, 0, O_PROJECT}, {"checkpoint", 1, 0, O_CHECKPOINT}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    rtr_build_opts o = {.progress = 1};
    const char *smode = NULL;
    const char *emb = NULL, *url = NULL, *model = NULL, *type = NULL;
    int json = 0, c;
    long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(build_usage, stdout); return CLI_OK;
        case O_EMB: emb = optarg; break;
        case O_DIM:
            v = atol(optarg);
            if (v <= 0 || v > 4096 || v % 64) return cli_usage_error("index build", "--dim must be a multiple of 64, at most 4096");
            o.hash_dim = (uint32_t)v;
            break;
        case O_URL: url = optarg; break;
        case O_MODEL: model = optarg; break;
        case O_SHARDS:
            v = atol(optarg);
            if (v < 1 || v > 1024) return cli_usage_error("index build", "--shards must be 1..1024");
            o.shards = (uint32_t)v;
            break;
        case O_TYPE: type = optarg; break;
        case O_BUDGET:
            if (parse_size(optarg, &o.mem_budget) || !o.mem_budget) return cli_usage_error("index build", "bad size '%s'", optarg);
            break;
        case O_NPROBE:
            v = atol(optarg);
            if (v < 1 || v > 65536) return cli_usage_error("index build", "--nprobe must be 1..65536");
            o.nprobe = (uint32_t)v;
            break;
        case O_RETRAIN: o.retrain = 1; break;
        case O_COMPACT: o.compact = 1; break;
        case O_THREADS:
            v = atol(optarg);
            if (v < 1 || v > 256) return cli_usage_error("index build", "--threads must be 1..256");
            o.threads = (int)v;
            break;
        case O_QUIET: o.progress = 0; break;
        case O_JSON: json = 1; break;
        case O_PROJECT:
            if (!strcmp(optarg, "auto")) o.project = 0;
            else if (!strcmp(optarg, "off")) o.project = -1;
            else if ((v = atol(optarg)) >= 1 && v <= 4096) o.project = (int)v;
            else return cli_usage_error("index build", "--project must be auto, off or 1..4096");
            break;
        case O_CHECKPOINT: {
            char *end;
            double sec = strtod(optarg, &end);
            if (*end || !(sec >= 0 && sec <= 1e7)) return cli_usage_error("index build", "--checkpoint must be seconds, 0 for never");
            o.checkpoint_s = sec > 0 ? sec : -1;
            break;
        }
        case O_SMODE:
            if (strcmp(optarg, "vector") && strcmp(optarg, "lexical") && strcmp(optarg, "hybrid"))
                return cli_usage_error("index build", "--search-mode must be vector, lexical or hybrid");
            smode = optarg;
            break;
        default: return cli_usage_error("index build", "bad option");
        }
    }
    if (argc - optind != 1) return cli_usage_error("index build", "expected KB");
    if (emb && strcmp(emb, "hash") && strcmp(emb, "http")) return cli_usage_error("index build", "unknown embedder '%s'", emb);
    if (emb && !strcmp(emb, "http") && !url) return cli_usage_error("index build", "--embedder http needs --embed-url");
    if (url && emb && strcmp(emb, "http")) return cli_usage_error("index build", "--embed-url is for --embedder http");
    if (type && strcmp(type, "auto")) o.factory = type;
    rtr_embedder *e = NULL;
    int rc = RTR_OK;
    if (url) {
        rtr_http_embedder_opts ho = {.url = url, .model = model, .api_key = getenv("RETRO_EMBED_API_KEY")};
        rc = rtr_http_embedder_new(&ho, &e);
    }
    rtr_parts *ps = NULL;
    rc = rtr_comm_agree(rtr_comm_world(), rc);
    if (!rc) rc = rtr_parts_open(argv[optind], RTR_KB_WRITE, 0, NULL, rtr_comm_world(), &ps);
    /* an explicit hash embedder on an existing index must be the recorded one */
    for (uint32_t p = 0; ps && p < rtr_parts_count(ps) && !rc && emb && !strcmp(emb, "hash") && !o.retrain; p++)
        if (rtr_parts_kb(ps, p)) rc = check_hash_embedder(rtr_parts_kb(ps, p), argv[optind], o.hash_dim);
    if (ps) rc = rtr_comm_agree(rtr_comm_world(), rc);
    rtr_build_report rep;
    o.embedder = e;
    if (!rc) rc = rtr_parts_build(ps, &o, &rep);
    for (uint32_t p = 0; ps && p < rtr_parts_count(ps) && !rc && smode; p++)
        if (rtr_parts_kb(ps, p)) rc = rtr_kb_manifest_set(rtr_parts_kb(ps, p), "search", json_pack("{s:s}", "mode", smode));
    if (ps) rc = rtr_comm_agree(rtr_comm_world(), rc);
    rtr_parts_close(ps);
    rtr_embedder_free(e);
    if (rc) return cli_fail(rc);
    if (rtr_comm_rank(rtr_comm_world()) != 0) return CLI_OK;   /* rank 0 reports for the job */
    double rate = rep.embed_seconds > 0 ? (double)rep.embedded / rep.embed_seconds : 0;
    if (json) {
        json_t *j = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:s, s:s, s:i, s:i, s:i, s:I, s:b, s:f, s:f}", "kb",
                              argv[optind], "created", rep.created, "embedded", (json_int_t)rep.embedded, "removed",
                              (json_int_t)rep.removed, "vectors", (json_int_t)rep.vectors, "live_chunks",
                              (json_int_t)rep.live_chunks, "factory", rep.factory, "why", rep.why, "shards",
                              (int)rep.shards, "dim", (int)rep.dim, "nprobe", (int)rep.nprobe, "trained_on",
                              (json_int_t)rep.trained_on, "drifted", rep.drifted, "seconds", rep.seconds,
                              "chunks_per_s", rate);
        json_object_set_new(j, "checkpoints", json_integer(rep.checkpoints));
        json_object_set_new(j, "lexical", json_pack("{s:I, s:I, s:f}", "indexed", (json_int_t)rep.lexical_indexed,
                                                     "chunks", (json_int_t)rep.lexical_chunks, "seconds",
                                                     rep.lexical_seconds));
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(j);
    } else {
        char a[32], b[32];
        printf("%s: %s %s chunks in %.2f s (%.0f chunks/s embedding); %s vectors in %u shard%s\n", argv[optind],
               rep.created ? "indexed" : "added", fmt_count(rep.embedded, a, sizeof a), rep.seconds, rate,
               fmt_count(rep.vectors, b, sizeof b), rep.shards, rep.shards == 1 ? "" : "s");
        printf("  index %s, dim %u%s%s%s", rep.factory, rep.dim, rep.nprobe ? ", nprobe " : "", "", "");
        if (rep.nprobe) printf("%u", rep.nprobe);
        printf("%s%s%s\n", rep.why[0] ? " (" : "", rep.why, rep.why[0] ? ")" : "");
        printf("  lexical index (BM25): %s chunks, %s added in %.2f s\n", fmt_count(rep.lexical_chunks, a, sizeof a),
               fmt_count(rep.lexical_indexed, b, sizeof b), rep.lexical_seconds);
        if (rep.checkpoints) printf("  %u checkpoint%s saved on the way\n", rep.checkpoints, rep.checkpoints == 1 ? "" : "s");
        if (rep.removed) printf("  compacted: removed %s vectors of deleted documents\n", fmt_count(rep.removed, a, sizeof a));
        if (rep.vectors > rep.live_chunks && !rep.removed)
            printf("  %s vectors belong to deleted documents (never returned; --compact removes them)\n",
                   fmt_count(rep.vectors - rep.live_chunks, a, sizeof a));
        if (rep.drifted)
            printf("  note: %s chunks now, the quantizer was trained with %s: consider --retrain\n",
                   fmt_count(rep.live_chunks, a, sizeof a), fmt_count(rep.trained_on, b, sizeof b));
    }
    return CLI_OK;
}

/* ---------------------------------------------------------------- check */
static void print_problem(void *ctx, const char *msg) {
    json_t *arr = ctx;
    if (arr) json_array_append_new(arr, json_string(msg));
    else printf("  problem: %s\n", msg);
}

static int index_check(int argc, char **argv) {
    int json;
    const char *dir;
    int done = parse_kb_flag(argc, argv, "index check",
                             "usage: retro index check KB [--json]\n\n"
                             "Walks knowledge base KB and reports what is wrong: the chunk store's records\n"
                             "(sizes, bounds, ids, every document's chunks, spans, text and file link, every\n"
                             "chunk's tokens decoded against its text, the counters), the vector index's files\n"
                             "against their checksums (the shards, and the 4-bit codes that searches map\n"
                             "without reading them whole), and the vectors against the chunks they claim (every\n"
                             "id a chunk at or below the watermark, once; every indexed chunk has one; a sample\n"
                             "of chunks embedded again finds its own). Exit status 1 if anything is wrong.\n"
                             "LMDB has no page checksums: see docs/formats.md for what cannot be caught.",
                             "--json", &dir, &json);
    if (done >= 0) return done;
    rtr_kb *kb;
    int rc = open_ro(dir, &kb);
    if (rc) return cli_fail(rc);
    json_t *arr = json ? json_array() : NULL;
    if (!json) printf("checking %s\n", dir);
    rtr_kb_check_report r;
    rc = rtr_kb_check(kb, print_problem, arr, &r);
    rtr_kb_close(kb);
    if (rc) {
        json_decref(arr);
        return cli_fail(rc);
    }
    const rtr_store_check_report *s = &r.store;
    if (json) {
        json_t *o = json_pack("{s:b, s:I, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:b, s:I, s:I, s:I, s:I, s:I}",
                              "ok", r.problems == 0, "problems", (json_int_t)r.problems, "reported", arr, "store",
                              "documents", (json_int_t)s->docs, "chunks", (json_int_t)s->chunks, "texts",
                              (json_int_t)s->texts, "files", (json_int_t)s->files, "links", (json_int_t)s->links,
                              "skipped", (json_int_t)s->skipped, "indexed", r.indexed, "vectors",
                              (json_int_t)r.vectors, "stale_vectors", (json_int_t)r.stale, "unindexed_chunks",
                              (json_int_t)r.unindexed, "sampled", (json_int_t)r.sampled, "found_own_vector",
                              (json_int_t)r.found);
        const rtr_lex_check_report *l = &r.lexical;
        json_object_set_new(o, "lexical", json_pack("{s:b, s:I, s:I, s:I, s:I}", "present", l->present, "chunks",
                                                     (json_int_t)l->chunks, "terms", (json_int_t)l->terms, "blocks",
                                                     (json_int_t)l->blocks, "postings", (json_int_t)l->postings));
        json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(o);
    } else {
        printf("store: %" PRIu64 " documents, %" PRIu64 " chunks, %" PRIu64 " texts, %" PRIu64 " files, %" PRIu64
               " links, %" PRIu64 " skip records\n", s->docs, s->chunks, s->texts, s->files, s->links, s->skipped);
        if (r.indexed)
            printf("index: %" PRIu64 " vectors (%" PRIu64 " of deleted chunks; %" PRIu64 " chunks not yet indexed); "
                   "%" PRIu64 " of %" PRIu64 " sampled chunks found their own vector\n", r.vectors, r.stale,
                   r.unindexed, r.found, r.sampled);
        else
            printf("index: none yet\n");
        if (r.lexical.present)
            printf("lexical: %" PRIu64 " chunks, %" PRIu64 " terms, %" PRIu64 " postings in %" PRIu64 " blocks\n",
                   r.lexical.chunks, r.lexical.terms, r.lexical.postings, r.lexical.blocks);
        if (r.problems > RTR_CHECK_MAX_REPORTS)
            printf("(%" PRIu64 " more problems not shown)\n", r.problems - RTR_CHECK_MAX_REPORTS);
        printf("%s\n", r.problems ? "PROBLEMS FOUND" : "ok: no problems");
    }
    return r.problems ? CLI_FAIL : CLI_OK;
}

int cmd_index(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(index_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    const char *verb = argv[1];
    if (!strcmp(verb, "add")) return index_add(argc - 1, argv + 1);
    if (!strcmp(verb, "rm")) return index_rm(argc - 1, argv + 1);
    if (!strcmp(verb, "info")) return index_info(argc - 1, argv + 1);
    if (!strcmp(verb, "dump")) return index_dump(argc - 1, argv + 1);
    if (!strcmp(verb, "show")) return index_show(argc - 1, argv + 1);
    if (!strcmp(verb, "build")) return index_build(argc - 1, argv + 1);
    if (!strcmp(verb, "check")) return index_check(argc - 1, argv + 1);
    fprintf(stderr, "retro index: unknown verb '%s'\n\n%s", verb, index_usage);
    return CLI_USAGE;
}
