/*
 * corpus.h - finding documents: walking paths and turning files into texts.
 *
 * rtr_corpus_walk expands files and directories (recursively; symbolic links
 * followed, loops and duplicates detected) into a sorted list of candidate
 * files, and lists what it could not use. rtr_corpus_read reads one of them
 * under the size limit, rtr_looks_binary tells text from binary data (the
 * walker, the reader and the check are also what `retro tokenizer train`
 * uses), and rtr_corpus_extract turns one file's bytes into documents:
 *   .txt .md .markdown .rst .text   the whole file is one document
 *   .html .htm .xhtml               text without markup; <title> is the title
 *   .jsonl .ndjson                  one document per line (an object with a
 *                                   text field; optional id and title fields)
 *   .json                           an object, or an array of objects, as above
 *   anything else                   plain text if it looks like text, else
 *                                   skipped as binary
 * Nothing here aborts a run: every problem becomes a skip with a reason.
 */
#ifndef RTR_CORPUS_H
#define RTR_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum rtr_skip_reason {
    RTR_SKIP_NONE = 0,
    RTR_SKIP_BINARY = 1,       /* looks like binary data */
    RTR_SKIP_INVALID_UTF8 = 2, /* invalid UTF-8 and the policy is to skip */
    RTR_SKIP_UNREADABLE = 3,   /* open/read failed (permissions, I/O, broken link) */
    RTR_SKIP_EMPTY = 4,        /* no text in it */
    RTR_SKIP_TOO_LARGE = 5,    /* over the size limit */
    RTR_SKIP_VANISHED = 6,     /* deleted between listing and reading */
    RTR_SKIP_BAD_RECORD = 7,   /* some .jsonl/.json records unusable (rest ingested) */
    RTR_SKIP_NOT_REGULAR = 8,  /* device, socket, FIFO */
    RTR_SKIP_BAD_FORMAT = 9,   /* a .json file that is not valid JSON / has no text */
    RTR_SKIP_LOOP = 10,        /* symbolic link loop */
    RTR_SKIP_REASON_COUNT
};
const char *rtr_skip_reason_name(uint32_t reason);

enum rtr_format { RTR_FMT_AUTO = 0, RTR_FMT_TEXT, RTR_FMT_HTML, RTR_FMT_JSONL, RTR_FMT_JSON };
/* Parses "auto", "text", "html", "jsonl", "json"; -1 if unknown. */
int rtr_format_parse(const char *name);
/* The format implied by a path's extension (RTR_FMT_AUTO if none). */
int rtr_format_from_path(const char *path);

enum { RTR_UTF8_REPLACE = 0, RTR_UTF8_SKIP = 1 };

typedef struct rtr_corpus_opts {
    const char *text_field;     /* default "text" */
    const char *id_field;       /* default "id" */
    const char *title_field;    /* default "title" */
    int utf8_policy;            /* RTR_UTF8_REPLACE (default) or RTR_UTF8_SKIP */
    uint64_t max_file_size;     /* 0 = default (1 GiB) */
    int include_hidden;         /* walk into .dotfiles and .dotdirs */
    int format;                 /* force a format (RTR_FMT_AUTO = by extension) */
} rtr_corpus_opts;

typedef struct rtr_corpus_file {
    char *path;        /* absolute, symlinks resolved; "-" for standard input */
    uint64_t size;
    int64_t mtime_ns;
    int format;
} rtr_corpus_file;

typedef struct rtr_skip {
    char *path;
    uint32_t reason;
    char *detail;      /* may be NULL */
} rtr_skip;

typedef struct rtr_skip_list {
    rtr_skip *items;
    size_t n, cap;
} rtr_skip_list;

int rtr_skip_list_add(rtr_skip_list *l, const char *path, uint32_t reason, const char *detail);
void rtr_skip_list_free(rtr_skip_list *l);

typedef struct rtr_corpus_list {
    rtr_corpus_file *files;   /* sorted by path, no duplicates */
    size_t n, cap;
    char **roots;             /* canonical roots that were directories (for --prune) */
    size_t n_roots;
    rtr_skip_list skips;      /* what the walk itself could not use */
} rtr_corpus_list;

/* Expands paths ("-" = standard input). A path that does not exist is an
 * error (RTR_E_NOTFOUND naming it); problems below a root become skips. */
int rtr_corpus_walk(const char *const *paths, size_t n, const rtr_corpus_opts *o, rtr_corpus_list *out);
void rtr_corpus_list_free(rtr_corpus_list *l);

/* A file's bytes, as rtr_corpus_read found them. */
typedef struct rtr_corpus_data {
    uint8_t *data;      /* owned (rtr_free); a NUL follows the len bytes; NULL after a skip */
    size_t len;
    uint64_t size;      /* size stat reported before reading (0 for "-" or if stat failed) */
    int64_t mtime_ns;   /* modification time stat reported (0 likewise) */
    char *detail;       /* after a skip: why, a fresh string (rtr_free; NULL if none) */
} rtr_corpus_data;

/* Reads a listed file whole, as `retro index add` does: "-" is standard
 * input; a file over o->max_file_size bytes (0 = 1 GiB) is not read.
 * Returns RTR_OK with out->data; a positive RTR_SKIP_VANISHED,
 * RTR_SKIP_UNREADABLE or RTR_SKIP_TOO_LARGE when the file cannot be used
 * (out->detail says why); or RTR_E_NOMEM. Whether the bytes are text is
 * rtr_looks_binary's (and rtr_corpus_extract's) question, not this one's. */
int rtr_corpus_read(const char *path, const rtr_corpus_opts *o, rtr_corpus_data *out);

/* One extracted document. text is valid UTF-8 (after the policy). */
typedef struct rtr_extracted {
    const uint8_t *text;
    size_t len;
    const char *title;    /* NULL if none */
    const char *ext_id;   /* NULL for whole-file documents; "id" or "line:N" */
} rtr_extracted;

typedef int (*rtr_extract_fn)(void *ctx, const rtr_extracted *doc);

/* Extracts documents from a file's bytes, calling emit for each in order.
 * Returns RTR_OK, a negative status (emit's error or out of memory), or a
 * positive RTR_SKIP_* reason when the whole file is unusable (detail in
 * *detail, a fresh string). Record-level problems (bad .jsonl lines) are
 * counted in *bad_records with the first one described in *detail. */
int rtr_corpus_extract(const uint8_t *data, size_t len, int format, const rtr_corpus_opts *o,
                       rtr_extract_fn emit, void *ctx, char **detail, uint64_t *bad_records);

/* The text of every file in paths (files, directories walked as ingest walks
 * them, "-" for standard input), read and judged as ingest reads and judges
 * them, in order: fn gets each file's bytes (valid during the call; a
 * non-zero return stops). A file found in a directory that cannot be used
 * (binary, too large, unreadable) is added to skips; a named one is an error
 * naming it (RTR_E_INVALID). RTR_E_NOMEM, and fn's error. */
typedef int (*rtr_corpus_text_fn)(void *ctx, const char *path, const uint8_t *data, size_t len);
int rtr_corpus_texts(const char *const *paths, size_t n, rtr_corpus_text_fn fn, void *ctx, rtr_skip_list *skips);

/* 1 if data looks binary: a NUL byte, or over 10% control codes (tab, line
 * breaks, form feed, vertical tab and ESC do not count), in its first 8 KiB. */
int rtr_looks_binary(const uint8_t *data, size_t len);

/* Extracts the text of an HTML document into out; *title receives the
 * <title> text (fresh string) or NULL. */
int rtr_html_to_text(const uint8_t *html, size_t len, rtr_buf *out, char **title);

#endif
