/* corpus.c - finding documents: the walker, file reading, the binary check, HTML/JSON extraction (see corpus.h). */
#define _GNU_SOURCE
#include "index/corpus.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/io.h"
#include "lib/status.h"
#include "lib/utf8.h"

#define DEFAULT_MAX_FILE ((uint64_t)1 << 30)

const char *rtr_skip_reason_name(uint32_t r) {
    static const char *names[RTR_SKIP_REASON_COUNT] = {
        "none", "binary", "invalid UTF-8", "unreadable", "empty", "too large", "vanished",
        "bad records", "not a regular file", "bad format", "symlink loop"};
    return r < RTR_SKIP_REASON_COUNT ? names[r] : "unknown";
}

int rtr_format_parse(const char *name) {
    static const char *names[] = {"auto", "text", "html", "jsonl", "json"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

int rtr_format_from_path(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');
    if (!dot) return RTR_FMT_AUTO;
    static const struct { const char *ext; int fmt; } tab[] = {
        {".txt", RTR_FMT_TEXT},   {".text", RTR_FMT_TEXT}, {".md", RTR_FMT_TEXT},
        {".markdown", RTR_FMT_TEXT}, {".rst", RTR_FMT_TEXT}, {".html", RTR_FMT_HTML},
        {".htm", RTR_FMT_HTML},   {".xhtml", RTR_FMT_HTML}, {".jsonl", RTR_FMT_JSONL},
        {".ndjson", RTR_FMT_JSONL}, {".json", RTR_FMT_JSON},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcasecmp(dot, tab[i].ext)) return tab[i].fmt;
    return RTR_FMT_AUTO;
}

/* --- skip list ------------------------------------------------------------- */
int rtr_skip_list_add(rtr_skip_list *l, const char *path, uint32_t reason, const char *detail) {
    int rc = RTR_GROW(l->items, &l->cap, l->n + 1);
    if (rc) return rc;
    rtr_skip *s = &l->items[l->n];
    s->path = rtr_strdup(path);
    s->detail = detail ? rtr_strdup(detail) : NULL;
    s->reason = reason;
    if (!s->path || (detail && !s->detail)) {
        rtr_free(s->path);
        rtr_free(s->detail);
        return RTR_E_NOMEM;
    }
    l->n++;
    return RTR_OK;
}

void rtr_skip_list_free(rtr_skip_list *l) {
    for (size_t i = 0; i < l->n; i++) {
        rtr_free(l->items[i].path);
        rtr_free(l->items[i].detail);
    }
    rtr_free(l->items);
    memset(l, 0, sizeof *l);
}

/* --- walking ------------------------------------------------------------------ */
typedef struct dirset {   /* (dev, ino) of directories already walked */
    uint64_t *keys;       /* pairs */
    size_t n, cap;        /* cap in pairs, power of two */
} dirset;

static int dirset_insert(dirset *s, dev_t dev, ino_t ino) {   /* 1 new, 0 seen, <0 error */
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint64_t *k = rtr_calloc(cap * 2, sizeof *k);
        if (!k) return RTR_E_NOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->keys[2 * i] && !s->keys[2 * i + 1]) continue;
            size_t h = (size_t)((s->keys[2 * i] * 0x9E3779B97F4A7C15ULL) ^ s->keys[2 * i + 1]) & (cap - 1);
            while (k[2 * h] || k[2 * h + 1]) h = (h + 1) & (cap - 1);
            k[2 * h] = s->keys[2 * i];
            k[2 * h + 1] = s->keys[2 * i + 1];
        }
        rtr_free(s->keys);
        s->keys = k;
        s->cap = cap;
    }
    uint64_t a = (uint64_t)dev + 1, b = (uint64_t)ino; /* +1: (0,0) marks empty */
    size_t h = (size_t)((a * 0x9E3779B97F4A7C15ULL) ^ b) & (s->cap - 1);
    while (s->keys[2 * h] || s->keys[2 * h + 1]) {
        if (s->keys[2 * h] == a && s->keys[2 * h + 1] == b) return 0;
        h = (h + 1) & (s->cap - 1);
    }
    s->keys[2 * h] = a;
    s->keys[2 * h + 1] = b;
    s->n++;
    return 1;
}

typedef struct walker {
    const rtr_corpus_opts *o;
    rtr_corpus_list *out;
    dirset dirs;
    int depth;
} walker;

static int add_file(walker *w, const char *path, const struct stat *st, int format) {
    rtr_corpus_list *l = w->out;
    int rc = RTR_GROW(l->files, &l->cap, l->n + 1);
    if (rc) return rc;
    rtr_corpus_file *f = &l->files[l->n];
    if (!(f->path = rtr_strdup(path))) return RTR_E_NOMEM;
    f->size = st ? (uint64_t)st->st_size : 0;
    f->mtime_ns = st ? (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec : 0;
    f->format = format != RTR_FMT_AUTO ? format : rtr_format_from_path(path);
    l->n++;
    return RTR_OK;
}

static int walk(walker *w, const char *path);

static int walk_dir(walker *w, const char *dir, const struct stat *st) {
    int fresh = dirset_insert(&w->dirs, st->st_dev, st->st_ino);
    if (fresh < 0) return fresh;
    if (fresh == 0) return RTR_OK;   /* reached again through a link: already walked */
    if (w->depth > 256) return rtr_skip_list_add(&w->out->skips, dir, RTR_SKIP_LOOP, "directory nesting deeper than 256");
    DIR *d = opendir(dir);
    if (!d) return rtr_skip_list_add(&w->out->skips, dir, RTR_SKIP_UNREADABLE, strerror(errno));
    int rc = RTR_OK;
    struct dirent *e;
    w->depth++;
    while (rc == RTR_OK && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (e->d_name[0] == '.' && !w->o->include_hidden) continue;
        char child[PATH_MAX];
        if ((size_t)snprintf(child, sizeof child, "%s/%s", dir, e->d_name) >= sizeof child) {
            rc = rtr_skip_list_add(&w->out->skips, e->d_name, RTR_SKIP_UNREADABLE, "path too long");
            continue;
        }
        rc = walk(w, child);
    }
    w->depth--;
    closedir(d);
    return rc;
}

/* path is canonical (absolute, no symlinks in its directories). */
static int walk(walker *w, const char *path) {
    struct stat lst, st;
    if (lstat(path, &lst) != 0)
        return rtr_skip_list_add(&w->out->skips, path, errno == ENOENT ? RTR_SKIP_VANISHED : RTR_SKIP_UNREADABLE,
                                 strerror(errno));
    if (S_ISLNK(lst.st_mode)) {
        char real[PATH_MAX];
        if (!realpath(path, real)) {
            int e = errno;
            return rtr_skip_list_add(&w->out->skips, path, e == ELOOP ? RTR_SKIP_LOOP : RTR_SKIP_UNREADABLE,
                                     e == ENOENT ? "broken symbolic link" : strerror(e));
        }
        if (stat(real, &st) != 0) return rtr_skip_list_add(&w->out->skips, path, RTR_SKIP_UNREADABLE, strerror(errno));
        if (S_ISDIR(st.st_mode)) return walk_dir(w, real, &st);
        if (!S_ISREG(st.st_mode)) return rtr_skip_list_add(&w->out->skips, path, RTR_SKIP_NOT_REGULAR, NULL);
        return add_file(w, real, &st, w->o->format);
    }
    if (S_ISDIR(lst.st_mode)) return walk_dir(w, path, &lst);
    if (!S_ISREG(lst.st_mode)) return rtr_skip_list_add(&w->out->skips, path, RTR_SKIP_NOT_REGULAR, NULL);
    return add_file(w, path, &lst, w->o->format);
}

static int cmp_files(const void *a, const void *b) {
    return strcmp(((const rtr_corpus_file *)a)->path, ((const rtr_corpus_file *)b)->path);
}

int rtr_corpus_walk(const char *const *paths, size_t n, const rtr_corpus_opts *o, rtr_corpus_list *out) {
    memset(out, 0, sizeof *out);
    rtr_corpus_opts dflt = {0};
    if (!o) o = &dflt;
    walker w = {.o = o, .out = out};
    int rc = RTR_OK;
    if (n && !(out->roots = rtr_calloc(n, sizeof *out->roots))) return RTR_E_NOMEM;
    for (size_t i = 0; i < n && rc == RTR_OK; i++) {
        if (!strcmp(paths[i], "-")) {
            rc = add_file(&w, "-", NULL, o->format);
            continue;
        }
        char real[PATH_MAX];
        if (!realpath(paths[i], real)) {
            rc = rtr_seterr(rtr_status_from_errno(errno), "%s: %s", paths[i], strerror(errno));
            break;
        }
        struct stat st;
        if (stat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (!(out->roots[out->n_roots] = rtr_strdup(real))) { rc = RTR_E_NOMEM; break; }
            out->n_roots++;
        }
        rc = walk(&w, real);
    }
    rtr_free(w.dirs.keys);
    if (rc) {
        rtr_corpus_list_free(out);
        return rc;
    }
    /* sort and drop duplicates (a file named twice or reached by two links) */
    if (out->n > 1) qsort(out->files, out->n, sizeof *out->files, cmp_files);
    size_t k = 0;
    for (size_t i = 0; i < out->n; i++) {
        if (k > 0 && !strcmp(out->files[k - 1].path, out->files[i].path)) {
            rtr_free(out->files[i].path);
            continue;
        }
        out->files[k++] = out->files[i];
    }
    out->n = k;
    return RTR_OK;
}

void rtr_corpus_list_free(rtr_corpus_list *l) {
    for (size_t i = 0; i < l->n; i++) rtr_free(l->files[i].path);
    rtr_free(l->files);
    for (size_t i = 0; i < l->n_roots; i++) rtr_free(l->roots[i]);
    rtr_free(l->roots);
    rtr_skip_list_free(&l->skips);
    memset(l, 0, sizeof *l);
}

/* --- reading ------------------------------------------------------------------ */
static char *dupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int read_skip(rtr_corpus_data *out, uint32_t reason, char *detail) {
    out->detail = detail;
    return (int)reason;
}

int rtr_corpus_read(const char *path, const rtr_corpus_opts *o, rtr_corpus_data *out) {
    memset(out, 0, sizeof *out);
    uint64_t max = o && o->max_file_size ? o->max_file_size : DEFAULT_MAX_FILE;
    int rc;
    if (!strcmp(path, "-")) {
        rc = rtr_read_fd(0, "standard input", max, &out->data, &out->len);
    } else {
        struct stat st;
        if (stat(path, &st) != 0) {
            uint32_t why = errno == ENOENT ? RTR_SKIP_VANISHED : RTR_SKIP_UNREADABLE;
            return read_skip(out, why, dupf("%s", strerror(errno)));
        }
        out->size = (uint64_t)st.st_size;
        out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        if (out->size > max)
            return read_skip(out, RTR_SKIP_TOO_LARGE, dupf("%llu bytes, limit %llu", (unsigned long long)out->size,
                                                           (unsigned long long)max));
        rc = rtr_read_file(path, max, &out->data, &out->len);
    }
    if (rc == RTR_OK || rc == RTR_E_NOMEM) return rc;
    uint32_t why = rc == RTR_E_NOTFOUND ? RTR_SKIP_VANISHED : rc == RTR_E_INVALID ? RTR_SKIP_TOO_LARGE : RTR_SKIP_UNREADABLE;
    return read_skip(out, why, rtr_strdup(rtr_errdetail()));
}

/* --- sniffing ---------------------------------------------------------------- */
int rtr_looks_binary(const uint8_t *d, size_t len) {
    size_t n = len < 8192 ? len : 8192, ctrl = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = d[i];
        if (c == 0) return 1;
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v' && c != 0x1b) ctrl++;
    }
    return n > 0 && ctrl * 10 > n;   /* over 10% control codes */
}

/* --- HTML ---------------------------------------------------------------------- */
static int is_alnum(uint8_t c) { return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9'); }

/* 1 if the tag name p[0..n) is exactly `name` (case-insensitive). */
static int tag_is(const uint8_t *p, size_t n, const char *name) {
    size_t l = strlen(name);
    return n == l && strncasecmp((const char *)p, name, l) == 0;
}

static const uint8_t *find_ci(const uint8_t *p, const uint8_t *end, const char *needle) {
    size_t l = strlen(needle);
    for (; p + l <= end; p++)
        if (!strncasecmp((const char *)p, needle, l)) return p;
    return NULL;
}

static int is_block_tag(const uint8_t *name, size_t n) {
    static const char *blocks[] = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
                                   "tr", "table", "section", "article", "header", "footer", "pre",
                                   "blockquote", "hr", "dt", "dd", "title", "nav", "aside", "main",
                                   "figure", "figcaption", "td", "th", "body", "html", "head"};
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
        if (tag_is(name, n, blocks[i])) return 1;
    return 0;
}

/* Decodes the entity at p (after '&'); returns bytes consumed after '&' or 0. */
static size_t decode_entity(const uint8_t *p, const uint8_t *end, rtr_buf *out) {
    static const struct { const char *name; uint32_t cp; } ents[] = {
        {"amp", '&'},   {"lt", '<'},       {"gt", '>'},       {"quot", '"'},     {"apos", '\''},
        {"nbsp", 0xA0}, {"mdash", 0x2014}, {"ndash", 0x2013}, {"hellip", 0x2026}, {"rsquo", 0x2019},
        {"lsquo", 0x2018}, {"ldquo", 0x201C}, {"rdquo", 0x201D}, {"copy", 0xA9}, {"reg", 0xAE},
        {"eacute", 0xE9}, {"egrave", 0xE8}, {"uuml", 0xFC}, {"ouml", 0xF6}, {"auml", 0xE4}, {"szlig", 0xDF},
    };
    const uint8_t *semi = p;
    while (semi < end && semi - p < 12 && *semi != ';') semi++;
    if (semi >= end || *semi != ';' || semi == p) return 0;
    size_t n = (size_t)(semi - p);
    uint32_t cp = 0;
    if (p[0] == '#') {
        int hex = n > 1 && (p[1] == 'x' || p[1] == 'X');
        size_t i = hex ? 2 : 1;
        if (i >= n) return 0;
        for (; i < n; i++) {
            uint8_t c = p[i];
            int v = c >= '0' && c <= '9' ? c - '0' : hex && (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
            if (v < 0 || cp > 0x10FFFF) return 0;
            cp = cp * (hex ? 16 : 10) + (uint32_t)v;
        }
        if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    } else {
        size_t i;
        for (i = 0; i < sizeof ents / sizeof ents[0]; i++)
            if (strlen(ents[i].name) == n && !memcmp(ents[i].name, p, n)) break;
        if (i == sizeof ents / sizeof ents[0]) return 0;
        cp = ents[i].cp;
    }
    if (rtr_utf8_put(out, cp)) return 0;
    return n + 1;
}

int rtr_html_to_text(const uint8_t *html, size_t len, rtr_buf *out, char **title) {
    const uint8_t *p = html, *end = html + len;
    rtr_buf tbuf = {0};
    int in_title = 0, rc = RTR_OK;
    int pending_space = 0, newlines = 2;   /* suppress leading whitespace */
    *title = NULL;
    while (p < end && rc == RTR_OK) {
        if (*p == '<') {
            if (end - p >= 4 && !memcmp(p, "<!--", 4)) {
                const uint8_t *q = find_ci(p + 4, end, "-->");
                p = q ? q + 3 : end;
                continue;
            }
            const uint8_t *q = p + 1;
            int closing = q < end && *q == '/';
            if (closing) q++;
            const uint8_t *name = q;
            while (q < end && (is_alnum(*q) || *q == '!' || *q == '?')) q++;
            size_t nl = (size_t)(q - name);
            if (nl == 0) goto text;   /* a lone '<' is text */
            const uint8_t *gt = memchr(q, '>', (size_t)(end - q));
            if (!gt) { p = end; break; }
            if (!closing && (tag_is(name, nl, "script") || tag_is(name, nl, "style"))) {
                const uint8_t *close = find_ci(gt + 1, end, tag_is(name, nl, "script") ? "</script" : "</style");
                p = close ? close : end;
                continue;
            }
            if (tag_is(name, nl, "title")) in_title = !closing;
            if (is_block_tag(name, nl)) {
                if (newlines < 2 && out->len > 0) { rc = rtr_buf_putc(out, '\n'); newlines++; }
                pending_space = 0;
            }
            p = gt + 1;
            continue;
        }
    text:;
        rtr_buf *dst = in_title ? &tbuf : out;
        uint8_t c = *p;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
            if (!in_title && newlines == 0) pending_space = 1;
            if (in_title && tbuf.len) pending_space = 1;
            p++;
            continue;
        }
        if (pending_space) {
            if ((rc = rtr_buf_putc(dst, ' '))) break;
            pending_space = 0;
        }
        if (c == '&') {
            size_t used = decode_entity(p + 1, end, dst);
            if (used) { p += 1 + used; if (!in_title) newlines = 0; continue; }
        }
        rc = rtr_buf_putc(dst, c);
        if (!in_title) newlines = 0;
        p++;
    }
    while (rc == RTR_OK && out->len && (out->data[out->len - 1] == '\n' || out->data[out->len - 1] == ' ')) out->len--;
    if (rc == RTR_OK && tbuf.len) {
        if (!(*title = rtr_strndup((const char *)tbuf.data, tbuf.len))) rc = RTR_E_NOMEM;
    }
    rtr_buf_free(&tbuf);
    return rc;
}

/* --- extraction ------------------------------------------------------------------ */
static int only_space(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v') return 0;
    return 1;
}

static char *dupf(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return rtr_strdup(buf);
}

/* One JSON object -> a document. Returns RTR_OK, a negative status, or 1 for
 * a bad record (described in *why). */
static int emit_json_record(json_t *obj, const rtr_corpus_opts *o, const char *fallback_id,
                            rtr_extract_fn emit, void *ctx, char **why) {
    const char *tf = o->text_field ? o->text_field : "text";
    const char *idf = o->id_field ? o->id_field : "id";
    const char *tif = o->title_field ? o->title_field : "title";
    if (!json_is_object(obj)) { *why = dupf("not a JSON object"); return 1; }
    json_t *text = json_object_get(obj, tf);
    if (!json_is_string(text)) { *why = dupf("no string field '%s'", tf); return 1; }
    char idbuf[64];
    const char *ext_id = fallback_id;
    json_t *id = json_object_get(obj, idf);
    if (json_is_string(id)) ext_id = json_string_value(id);
    else if (json_is_integer(id)) { snprintf(idbuf, sizeof idbuf, "%lld", (long long)json_integer_value(id)); ext_id = idbuf; }
    json_t *title = json_object_get(obj, tif);
    rtr_extracted d = {(const uint8_t *)json_string_value(text), json_string_length(text),
                       json_is_string(title) ? json_string_value(title) : NULL, ext_id};
    if (d.len == 0 || only_space(d.text, d.len)) { *why = dupf("empty '%s' field", tf); return 1; }
    return emit(ctx, &d);
}

static void note_bad(char **detail, uint64_t *bad, const char *where, char *why) {
    if (*bad == 0 && !*detail) *detail = dupf("%s: %s", where, why ? why : "bad record");
    (*bad)++;
    rtr_free(why);
}

int rtr_corpus_extract(const uint8_t *data, size_t len, int format, const rtr_corpus_opts *o,
                       rtr_extract_fn emit, void *ctx, char **detail, uint64_t *bad_records) {
    rtr_corpus_opts dflt = {0};
    if (!o) o = &dflt;
    *detail = NULL;
    *bad_records = 0;
    if (format == RTR_FMT_AUTO || format == RTR_FMT_TEXT || format == RTR_FMT_HTML) {
        if (rtr_looks_binary(data, len)) {
            *detail = dupf("contains NUL bytes or control codes");
            return RTR_SKIP_BINARY;
        }
    }
    /* UTF-8 policy applies to every format before parsing. */
    rtr_buf fixed = {0};
    size_t bad_at = rtr_utf8_valid_prefix(data, len);
    if (bad_at < len) {
        if (o->utf8_policy == RTR_UTF8_SKIP) {
            *detail = dupf("invalid UTF-8 at byte %zu", bad_at);
            return RTR_SKIP_INVALID_UTF8;
        }
        long n = rtr_utf8_repair(data, len, &fixed);
        if (n < 0) { rtr_buf_free(&fixed); return (int)n; }
        data = fixed.data;
        len = fixed.len;
    }
    int rc = RTR_OK;
    uint64_t emitted = 0;
    if (format == RTR_FMT_AUTO || format == RTR_FMT_TEXT) {
        if (len && !only_space(data, len)) {
            rtr_extracted d = {data, len, NULL, NULL};
            rc = emit(ctx, &d);
            emitted++;
        }
    } else if (format == RTR_FMT_HTML) {
        rtr_buf text = {0};
        char *title = NULL;
        rc = rtr_html_to_text(data, len, &text, &title);
        if (!rc && text.len) {
            rtr_extracted d = {text.data, text.len, title, NULL};
            rc = emit(ctx, &d);
            emitted++;
        }
        rtr_free(title);
        rtr_buf_free(&text);
    } else if (format == RTR_FMT_JSONL) {
        size_t line = 0, i = 0;
        while (i < len && rc >= 0) {
            const uint8_t *nl = memchr(data + i, '\n', len - i);
            size_t e = nl ? (size_t)(nl - data) : len;
            line++;
            if (!only_space(data + i, e - i)) {
                json_error_t err;
                json_t *obj = json_loadb((const char *)data + i, e - i, JSON_DECODE_ANY, &err);
                char where[32], fallback[40];
                snprintf(where, sizeof where, "line %zu", line);
                snprintf(fallback, sizeof fallback, "line:%zu", line);
                if (!obj) {
                    note_bad(detail, bad_records, where, dupf("invalid JSON: %s", err.text));
                } else {
                    char *why = NULL;
                    int r = emit_json_record(obj, o, fallback, emit, ctx, &why);
                    if (r == 1) note_bad(detail, bad_records, where, why);
                    else if (r < 0) rc = r;
                    else emitted++;
                    json_decref(obj);
                }
            }
            i = e + 1;
        }
    } else if (format == RTR_FMT_JSON) {
        json_error_t err;
        json_t *root = json_loadb((const char *)data, len, JSON_DECODE_ANY, &err);
        if (!root) {
            *detail = dupf("invalid JSON at line %d: %s", err.line, err.text);
            rtr_buf_free(&fixed);
            return RTR_SKIP_BAD_FORMAT;
        }
        if (json_is_array(root)) {
            for (size_t k = 0; k < json_array_size(root) && rc >= 0; k++) {
                char where[32], fallback[40], *why = NULL;
                snprintf(where, sizeof where, "item %zu", k);
                snprintf(fallback, sizeof fallback, "item:%zu", k);
                int r = emit_json_record(json_array_get(root, k), o, fallback, emit, ctx, &why);
                if (r == 1) note_bad(detail, bad_records, where, why);
                else if (r < 0) rc = r;
                else emitted++;
            }
        } else {
            char *why = NULL;
            int r = emit_json_record(root, o, NULL, emit, ctx, &why);
            if (r == 1) {
                *detail = why;
                rc = RTR_SKIP_BAD_FORMAT;
            } else if (r < 0) {
                rc = r;
            } else {
                emitted++;
            }
        }
        json_decref(root);
    }
    rtr_buf_free(&fixed);
    if (rc == RTR_OK && emitted == 0 && *bad_records == 0) {
        *detail = dupf("no text");
        return RTR_SKIP_EMPTY;
    }
    return rc;
}

/* --- the text files of paths ---------------------------------------------------- */
/* One file, read and judged as ingest reads and judges it. named: given by the
 * caller (its problems are errors), else found in a directory (a skip). */
static int text_of(const char *path, int named, rtr_corpus_text_fn fn, void *ctx, rtr_skip_list *skips) {
    rtr_corpus_data in;
    int rc = rtr_corpus_read(path, NULL, &in);
    if (rc < 0) return rc;
    if (rc == RTR_OK && strcmp(path, "-") && rtr_looks_binary(in.data, in.len)) {
        rtr_free(in.data);
        rc = RTR_SKIP_BINARY;
        in.detail = rtr_strdup("contains NUL bytes or control codes");
    }
    if (rc > 0) {
        const char *why = in.detail ? in.detail : rtr_skip_reason_name((uint32_t)rc);
        if (!named) rc = rtr_skip_list_add(skips, path, (uint32_t)rc, in.detail);
        else if (rc == RTR_SKIP_BINARY) rc = rtr_seterr(RTR_E_INVALID, "%s: not a text file (%s)", path, why);
        else if (!strncmp(why, path, strlen(path))) rc = rtr_seterr(RTR_E_INVALID, "%s", why);   /* names it */
        else rc = rtr_seterr(RTR_E_INVALID, "%s: %s (%s)", path, rtr_skip_reason_name((uint32_t)rc), why);
        rtr_free(in.detail);
        return rc;
    }
    rc = fn(ctx, path, in.data, in.len);
    rtr_free(in.data);
    return rc;
}

int rtr_corpus_texts(const char *const *paths, size_t n, rtr_corpus_text_fn fn, void *ctx, rtr_skip_list *skips) {
    int rc = RTR_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *p = paths[i];
        struct stat sb;
        if (!strcmp(p, "-")) {
            rc = text_of(p, 1, fn, ctx, skips);
        } else if (stat(p, &sb) != 0) {
            rc = rtr_seterr(rtr_status_from_errno(errno), "%s: %s", p, strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {   /* every file ingest would take: hidden names skipped, links followed */
            rtr_corpus_list l;
            if ((rc = rtr_corpus_walk(&p, 1, NULL, &l))) break;
            for (size_t k = 0; k < l.skips.n && !rc; k++)
                rc = rtr_skip_list_add(skips, l.skips.items[k].path, l.skips.items[k].reason, l.skips.items[k].detail);
            for (size_t k = 0; k < l.n && !rc; k++) rc = text_of(l.files[k].path, 0, fn, ctx, skips);
            rtr_corpus_list_free(&l);
        } else {
            rc = text_of(p, 1, fn, ctx, skips);
        }
    }
    return rc;
}
