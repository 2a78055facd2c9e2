/* ingest.c - adding documents to a knowledge base: parallel read and tokenize, batched LMDB writes (see ingest.h). */
#define _GNU_SOURCE
#include "index/ingest.h"

#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "index/parts.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/io.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "lib/threads.h"
#include "lib/utf8.h"

#define DEFAULT_BATCH ((uint64_t)4 << 20)

int rtr_chunk_ends(const rtr_tokenizer *tok, const uint32_t *ids, size_t n, uint64_t **ends) {
    size_t nc = (n + RTR_CHUNK_TOKENS - 1) / RTR_CHUNK_TOKENS;
    uint64_t *e = rtr_calloc(nc ? nc : 1, sizeof *e);
    if (!e) return RTR_E_NOMEM;
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        if (!rtr_tokenizer_token(tok, ids[i], &len)) {
            rtr_free(e);
            return rtr_seterr(RTR_E_INVALID, "token id %u out of range", ids[i]);
        }
        off += len;
        if ((i + 1) % RTR_CHUNK_TOKENS == 0 || i + 1 == n) e[i / RTR_CHUNK_TOKENS] = off;
    }
    *ends = e;
    return RTR_OK;
}

/* --- per-file work ------------------------------------------------------------ */
enum { FR_UNCHANGED = 1, FR_SKIP, FR_CHANGED, FR_ERROR };

typedef struct new_doc {
    char *title, *ext_id;
    uint8_t hash[16];
    uint64_t n_bytes;
    rtr_buf z;
    rtr_u32vec tokens;
    uint64_t *ends;
} new_doc;

typedef struct old_doc {
    uint64_t id;
    uint8_t hash[16];
    char *ext_id;
    int kept;
} old_doc;

typedef struct file_result {
    int status;
    const char *path;         /* recorded path (borrowed) */
    uint32_t skip_reason;
    char *detail;
    int known;                /* a file record existed */
    uint32_t known_docs;      /* ... with this many documents */
    uint8_t hash[16];
    uint64_t size;
    int64_t mtime_ns;
    new_doc *docs;
    size_t n_docs, cap_docs;
    old_doc *old;
    size_t n_old;
    uint64_t bad_records;
    int err;                  /* negative status for FR_ERROR */
    char errmsg[512];
} file_result;

typedef struct worker_ctx {
    rtr_kb *kb;
    rtr_encoder *enc;
    file_result *fr;
    const rtr_ingest_opts *o;
} worker_ctx;

static void free_result(file_result *fr) {
    for (size_t i = 0; i < fr->n_docs; i++) {
        new_doc *d = &fr->docs[i];
        rtr_free(d->title);
        rtr_free(d->ext_id);
        rtr_buf_free(&d->z);
        rtr_u32vec_free(&d->tokens);
        rtr_free(d->ends);
    }
    rtr_free(fr->docs);
    for (size_t i = 0; i < fr->n_old; i++) rtr_free(fr->old[i].ext_id);
    rtr_free(fr->old);
    rtr_free(fr->detail);
    memset(fr, 0, sizeof *fr);
}

static int same_ext(const char *a, const char *b) {
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* emit callback: keep a stored identical document, or tokenize a new one */
static int on_doc(void *vctx, const rtr_extracted *x) {
    worker_ctx *w = vctx;
    file_result *fr = w->fr;
    uint8_t hash[16];
    rtr_hash128(x->text, x->len, hash);
    for (size_t i = 0; i < fr->n_old; i++) {
        old_doc *od = &fr->old[i];
        if (!od->kept && !memcmp(od->hash, hash, 16) && same_ext(od->ext_id, x->ext_id)) {
            od->kept = 1;
            return RTR_OK;
        }
    }
    int rc = RTR_GROW(fr->docs, &fr->cap_docs, fr->n_docs + 1);
    if (rc) return rc;
    new_doc *d = &fr->docs[fr->n_docs++];
    memset(d, 0, sizeof *d);
    memcpy(d->hash, hash, 16);
    d->n_bytes = x->len;
    if (x->title && !(d->title = rtr_strdup(x->title))) return RTR_E_NOMEM;
    if (x->ext_id && !(d->ext_id = rtr_strdup(x->ext_id))) return RTR_E_NOMEM;
    rc = rtr_encoder_encode(w->enc, x->text, x->len, &d->tokens);
    if (!rc) rc = rtr_chunk_ends(rtr_kb_tokenizer(w->kb), d->tokens.data, d->tokens.len, &d->ends);
    if (!rc && d->tokens.len) RTR_ASSERT(d->ends[(d->tokens.len - 1) / RTR_CHUNK_TOKENS] == x->len);
    if (!rc) rc = rtr_store_compress_text(x->text, x->len, &d->z);
    return rc;
}

static int load_old_docs(rtr_store_txn *t, file_result *fr) {
    uint64_t *ids;
    size_t n;
    int rc = rtr_store_file_docs(t, fr->path, &ids, &n);
    if (rc) return rc;
    if (n && !(fr->old = rtr_calloc(n, sizeof *fr->old))) { rtr_free(ids); return RTR_E_NOMEM; }
    for (size_t i = 0; i < n && !rc; i++) {
        rtr_doc d;
        if ((rc = rtr_store_get_doc(t, ids[i], &d))) break;
        old_doc *od = &fr->old[fr->n_old++];
        od->id = ids[i];
        memcpy(od->hash, d.content_hash, 16);
        if (d.ext_id_len && !(od->ext_id = rtr_strndup(d.ext_id, d.ext_id_len))) rc = RTR_E_NOMEM;
    }
    rtr_free(ids);
    return rc;
}

static void set_skip(file_result *fr, uint32_t reason, const char *detail) {
    fr->status = FR_SKIP;
    fr->skip_reason = reason;
    rtr_free(fr->detail);
    fr->detail = detail ? rtr_strdup(detail) : NULL;
}

/* Decides what becomes of one source's bytes (data, len; NULL after a skip
 * already set in fr): unchanged, a skip, or new documents. data stays the
 * caller's. */
static void process_bytes(rtr_kb *kb, rtr_encoder *enc, const uint8_t *data, size_t len, int format,
                          const rtr_ingest_opts *o, file_result *fr) {
    int rc;
    if (data) {
        fr->size = len;
        rtr_hash128(data, len, fr->hash);
    }
    rtr_store_txn *t = NULL;
    if ((rc = rtr_store_read_begin(rtr_kb_store(kb), &t))) goto fail;
    rtr_file_rec rec;
    rc = rtr_store_get_file(t, fr->path, &rec);
    if (rc && rc != RTR_E_NOTFOUND) { rtr_store_txn_end(t); goto fail; }
    fr->known = rc == RTR_OK;
    fr->known_docs = fr->known ? rec.n_docs : 0;
    if (fr->status == FR_SKIP || !data) {   /* a skip decided before reading */
        rtr_store_txn_end(t);
        return;
    }
    if (fr->known && !memcmp(rec.content_hash, fr->hash, 16)) {
        fr->status = FR_UNCHANGED;
        rtr_store_txn_end(t);
        return;
    }
    rc = fr->known ? load_old_docs(t, fr) : RTR_OK;
    rtr_store_txn_end(t);
    if (rc) goto fail;

    worker_ctx w = {kb, enc, fr, o};
    char *detail = NULL;
    rc = rtr_corpus_extract(data, len, format, &o->corpus, on_doc, &w, &detail, &fr->bad_records);
    if (rc < 0) { rtr_free(detail); goto fail; }
    if (rc > 0) {
        set_skip(fr, (uint32_t)rc, detail);
        rtr_free(detail);
        return;
    }
    fr->status = FR_CHANGED;
    fr->detail = detail;   /* bad-record description, if any */
    return;
fail:
    fr->status = FR_ERROR;
    fr->err = rc;
    snprintf(fr->errmsg, sizeof fr->errmsg, "%s", rtr_errdetail());
}

static void process_file(rtr_kb *kb, rtr_encoder *enc, const rtr_corpus_file *f, const char *rec_path,
                         const rtr_ingest_opts *o, file_result *fr) {
    fr->path = rec_path;
    if (o->before_read) o->before_read(f->path, o->hook_ctx);
    rtr_corpus_data in;
    int rc = rtr_corpus_read(f->path, &o->corpus, &in);
    fr->size = in.size;
    fr->mtime_ns = in.mtime_ns;
    if (rc < 0) {
        fr->status = FR_ERROR;
        fr->err = rc;
        snprintf(fr->errmsg, sizeof fr->errmsg, "%s", rtr_errdetail());
        return;
    }
    if (rc > 0) {
        set_skip(fr, (uint32_t)rc, in.detail);
        rtr_free(in.detail);
    }
    process_bytes(kb, enc, in.data, in.len, f->format, o, fr);
    rtr_free(in.data);
}

/* --- writing a batch (re-runnable: see rtr_store_write) ------------------------ */
typedef struct batch {
    file_result *res;
    size_t n;
} batch;

static int keeps_docs_on_skip(uint32_t reason) { return reason == RTR_SKIP_UNREADABLE; }

static int write_batch(rtr_store_txn *t, void *vctx) {
    batch *b = vctx;
    int rc = RTR_OK;
    for (size_t i = 0; i < b->n && !rc; i++) {
        file_result *fr = &b->res[i];
        if (fr->status == FR_UNCHANGED) continue;
        if (fr->status == FR_SKIP) {
            if (fr->known && !keeps_docs_on_skip(fr->skip_reason)) rc = rtr_store_delete_file(t, fr->path);
            if (!rc && fr->skip_reason == RTR_SKIP_EMPTY)   /* remember its hash: unchanged next time */
                rc = rtr_store_put_file(t, fr->path, fr->hash, fr->size, fr->mtime_ns, 0);
            if (!rc) rc = fr->skip_reason == RTR_SKIP_VANISHED ? rtr_store_delete_skip(t, fr->path)
                                                               : rtr_store_put_skip(t, fr->path, fr->skip_reason, fr->detail);
            continue;
        }
        RTR_ASSERT(fr->status == FR_CHANGED);
        uint32_t n_docs = 0;
        for (size_t k = 0; k < fr->n_old && !rc; k++) {
            if (fr->old[k].kept) n_docs++;
            else rc = rtr_store_delete_doc(t, fr->old[k].id);
        }
        for (size_t k = 0; k < fr->n_docs && !rc; k++) {
            new_doc *d = &fr->docs[k];
            rtr_doc_in in = {
                .path = fr->path, .title = d->title, .ext_id = d->ext_id, .mtime_ns = fr->mtime_ns,
                .n_bytes = d->n_bytes, .ztext = d->z.data, .ztext_len = d->z.len,
                .tokens = d->tokens.data, .n_tokens = d->tokens.len, .chunk_ends = d->ends,
            };
            memcpy(in.content_hash, d->hash, 16);
            rc = rtr_store_add_doc(t, &in, NULL);
            n_docs++;
        }
        if (!rc) rc = rtr_store_put_file(t, fr->path, fr->hash, fr->size, fr->mtime_ns, n_docs);
        if (!rc) rc = fr->bad_records ? rtr_store_put_skip(t, fr->path, RTR_SKIP_BAD_RECORD, fr->detail)
                                      : rtr_store_delete_skip(t, fr->path);
    }
    return rc;
}

static int account(rtr_ingest_report *rep, const file_result *fr) {
    switch (fr->status) {
    case FR_UNCHANGED: rep->files_unchanged++; return RTR_OK;
    case FR_SKIP:
        rep->files_skipped++;
        if (fr->known && !keeps_docs_on_skip(fr->skip_reason)) rep->docs_removed += fr->known_docs;
        return rtr_skip_list_add(&rep->skips, fr->path, fr->skip_reason, fr->detail);
    default: break;
    }
    if (fr->known) rep->files_changed++;
    else rep->files_new++;
    for (size_t k = 0; k < fr->n_old; k++) {
        if (fr->old[k].kept) rep->docs_kept++;
        else rep->docs_removed++;
    }
    for (size_t k = 0; k < fr->n_docs; k++) {
        rep->docs_added++;
        rep->tokens_added += fr->docs[k].tokens.len;
        rep->chunks_added += (fr->docs[k].tokens.len + RTR_CHUNK_TOKENS - 1) / RTR_CHUNK_TOKENS;
    }
    rep->bad_records += fr->bad_records;
    if (fr->bad_records) return rtr_skip_list_add(&rep->skips, fr->path, RTR_SKIP_BAD_RECORD, fr->detail);
    return RTR_OK;
}

/* --- pruning -------------------------------------------------------------------- */
typedef struct prune_ctx {
    const rtr_corpus_list *list;
    uint64_t files, docs;
} prune_ctx;

static int under_root(const rtr_corpus_list *l, const char *path, size_t len) {
    for (size_t i = 0; i < l->n_roots; i++) {
        size_t rl = strlen(l->roots[i]);
        if (len > rl && !strncmp(path, l->roots[i], rl) && (path[rl] == '/' || l->roots[i][rl - 1] == '/')) return 1;
    }
    return 0;
}

static int prune_fn(rtr_store_txn *t, void *vctx) {
    prune_ctx *p = vctx;
    p->files = p->docs = 0;
    uint8_t key[16], prev[16];
    int have_prev = 0, rc;
    rtr_file_rec f;
    char path[PATH_MAX];
    while ((rc = rtr_store_next_file(t, have_prev ? prev : NULL, key, &f)) == RTR_OK) {
        memcpy(prev, key, 16);
        have_prev = 1;
        if (f.path_len >= sizeof path || !under_root(p->list, f.path, f.path_len)) continue;
        memcpy(path, f.path, f.path_len);
        path[f.path_len] = '\0';
        struct stat st;
        if (lstat(path, &st) == 0 || errno != ENOENT) continue;
        p->files++;
        p->docs += f.n_docs;
        if ((rc = rtr_store_delete_file(t, path)) || (rc = rtr_store_delete_skip(t, path))) return rc;
    }
    return rc == RTR_E_NOTFOUND ? RTR_OK : rc;
}

/* --- the run ---------------------------------------------------------------------- */
/* Batch k is written by a writer thread while batch k+1 is read and
 * tokenized; batches are committed strictly in order. */
typedef struct writer {
    rtr_store *store;
    pthread_t th;
    int busy;
    batch b;
    int rc;
    char err[512];
} writer;

static void *writer_main(void *arg) {
    writer *w = arg;
    w->rc = rtr_store_write(w->store, write_batch, &w->b);
    if (w->rc) snprintf(w->err, sizeof w->err, "%s", rtr_errdetail());
    return NULL;
}

static int writer_start(writer *w, file_result *res, size_t n) {
    w->b = (batch){res, n};
    w->rc = RTR_OK;
    if (pthread_create(&w->th, NULL, writer_main, w) != 0) {
        writer_main(w);   /* no thread to be had: write in this one */
        w->busy = 2;
        return RTR_OK;
    }
    w->busy = 1;
    return RTR_OK;
}

/* Waits for the batch in flight, accounts for it and frees it. */
static int writer_finish(writer *w, rtr_ingest_report *rep, int rc) {
    if (!w->busy) return rc;
    if (w->busy == 1) pthread_join(w->th, NULL);
    w->busy = 0;
    if (!rc && w->rc) rc = rtr_seterr(w->rc, "%s", w->err);
    for (size_t i = 0; i < w->b.n; i++) {
        if (!rc) rc = account(rep, &w->b.res[i]);
        rep->bytes_read += w->b.res[i].status == FR_SKIP ? 0 : w->b.res[i].size;
        free_result(&w->b.res[i]);
    }
    rtr_free(w->b.res);
    w->b = (batch){NULL, 0};
    return rc;
}

/* Keeps the files and skips of l whose recorded path (standard input's: stdin_name) belongs to
 * partition part of count. */
static void keep_partition(rtr_corpus_list *l, uint32_t part, uint32_t count, const char *stdin_name) {
    size_t m = 0;
    for (size_t i = 0; i < l->n; i++) {
        const char *path = strcmp(l->files[i].path, "-") ? l->files[i].path : stdin_name;
        if (rtr_part_of_path(path, count) == part) l->files[m++] = l->files[i];
        else rtr_free(l->files[i].path);
    }
    l->n = m;
    m = 0;
    for (size_t i = 0; i < l->skips.n; i++) {
        if (rtr_part_of_path(l->skips.items[i].path, count) == part) {
            l->skips.items[m++] = l->skips.items[i];
        } else {
            rtr_free(l->skips.items[i].path);
            rtr_free(l->skips.items[i].detail);
        }
    }
    l->skips.n = m;
}

int rtr_ingest(rtr_kb *kb, const char *const *paths, size_t n, const rtr_ingest_opts *o,
               rtr_ingest_report *rep) {
    memset(rep, 0, sizeof *rep);
    double t0 = rtr_now();
    rtr_corpus_list list;
    int rc = rtr_corpus_walk(paths, n, &o->corpus, &list);
    if (rc) return rc;
    const char *stdin_name = o->stdin_name && *o->stdin_name ? o->stdin_name : "stdin";
    if (o->part_count > 1) keep_partition(&list, o->part, o->part_count, stdin_name);
    for (size_t i = 0; i < list.skips.n && !rc; i++)
        rc = rtr_skip_list_add(&rep->skips, list.skips.items[i].path, list.skips.items[i].reason,
                               list.skips.items[i].detail);
    rep->files = list.n;
    rep->files_skipped = list.skips.n;

    int threads = o->threads > 0 ? o->threads : rtr_cores();
    rtr_encoder **enc = rtr_calloc((size_t)threads, sizeof *enc);
    if (!enc) rc = RTR_E_NOMEM;
    for (int i = 0; i < threads && !rc; i++) rc = rtr_encoder_new(rtr_kb_tokenizer(kb), &enc[i]);

    uint64_t total = 0, done = 0, max_batch = o->batch_bytes ? o->batch_bytes : DEFAULT_BATCH;
    for (size_t i = 0; i < list.n; i++) total += list.files[i].size;
    rtr_progress prog;
    rtr_progress_init(&prog, "ingest", total, "B", o->progress);
    writer w = {.store = rtr_kb_store(kb)};

    size_t start = 0;
    while (!rc && start < list.n) {
        /* a batch: files up to about max_batch bytes, at most 4096 files */
        size_t end = start;
        uint64_t bytes = 0;
        while (end < list.n && end - start < 4096 && (end == start || bytes + list.files[end].size <= max_batch))
            bytes += list.files[end++].size;
        size_t nb = end - start;
        file_result *res = rtr_calloc(nb, sizeof *res);
        if (!res) { rc = RTR_E_NOMEM; break; }
        int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (size_t i = 0; i < nb; i++) {
            if (failed) continue;
            const rtr_corpus_file *f = &list.files[start + i];
            process_file(kb, enc[omp_get_thread_num()], f, strcmp(f->path, "-") ? f->path : stdin_name, o,
                         &res[i]);
            if (res[i].status == FR_ERROR) failed = 1;
#pragma omp critical(ingest_progress)
            {
                done += f->size;
                rtr_progress_update(&prog, done, NULL);
            }
        }
        for (size_t i = 0; i < nb && !rc; i++)
            if (res[i].status == FR_ERROR) rc = rtr_seterr(res[i].err, "%s", res[i].errmsg);
        rc = writer_finish(&w, rep, rc);   /* the previous batch is committed first */
        if (rc) {
            for (size_t i = 0; i < nb; i++) free_result(&res[i]);
            rtr_free(res);
            break;
        }
        writer_start(&w, res, nb);
        start = end;
    }
    rc = writer_finish(&w, rep, rc);
    rtr_progress_finish(&prog);
    if (!rc && o->prune && list.n_roots) {
        prune_ctx p = {&list, 0, 0};
        rc = rtr_store_write(rtr_kb_store(kb), prune_fn, &p);
        rep->files_pruned = p.files;
        rep->docs_removed += p.docs;
    }
    for (int i = 0; i < threads && enc; i++) rtr_encoder_free(enc[i]);
    rtr_free(enc);
    rtr_corpus_list_free(&list);
    rep->seconds = rtr_now() - t0;
    return rc;
}

int rtr_ingest_memory(rtr_kb *kb, const rtr_mem_file *files, size_t n, const rtr_ingest_opts *o,
                      rtr_ingest_report *rep) {
    memset(rep, 0, sizeof *rep);
    double t0 = rtr_now();
    if (n == 0) return RTR_OK;
    uint64_t max = o->corpus.max_file_size ? o->corpus.max_file_size : (uint64_t)1 << 30;
    for (size_t i = 0; i < n; i++) {
        const char *nm = files[i].name;
        size_t nl = nm ? strlen(nm) : 0;
        if (nl == 0 || nl > 4096 || nm[0] == '/' || rtr_utf8_valid_prefix((const uint8_t *)nm, nl) != nl)
            return rtr_seterr(RTR_E_INVALID, "document name %zu: 1 to 4096 bytes of UTF-8, not starting with '/'", i);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(files[j].name, nm)) return rtr_seterr(RTR_E_INVALID, "document name '%s' given twice", nm);
    }
    rtr_encoder *enc = NULL;
    file_result *res = rtr_calloc(n, sizeof *res);
    int rc = res ? rtr_encoder_new(rtr_kb_tokenizer(kb), &enc) : RTR_E_NOMEM;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    for (size_t i = 0; i < n && !rc; i++) {
        const rtr_mem_file *f = &files[i];
        file_result *fr = &res[i];
        fr->path = f->name;
        fr->mtime_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        fr->size = f->len;
        if (f->len > max) set_skip(fr, RTR_SKIP_TOO_LARGE, "larger than the size limit");
        int fmt = f->format ? f->format : o->corpus.format ? o->corpus.format : rtr_format_from_path(f->name);
        process_bytes(kb, enc, fr->status == FR_SKIP ? NULL : f->data, f->len, fmt, o, fr);
        if (fr->status == FR_ERROR) rc = rtr_seterr(fr->err, "%s", fr->errmsg);
    }
    rep->files = n;
    if (!rc) {
        batch b = {res, n};
        rc = rtr_store_write(rtr_kb_store(kb), write_batch, &b);
    }
    for (size_t i = 0; i < n && res; i++) {
        if (!rc) rc = account(rep, &res[i]);
        if (res[i].status != FR_SKIP) rep->bytes_read += res[i].size;
        free_result(&res[i]);
    }
    rtr_free(res);
    rtr_encoder_free(enc);
    rep->seconds = rtr_now() - t0;
    return rc;
}

void rtr_ingest_report_free(rtr_ingest_report *r) { rtr_skip_list_free(&r->skips); }

/* --- removal ----------------------------------------------------------------------- */
typedef struct remove_ctx {
    char **paths;      /* canonical candidates, one per argument */
    char **raw;
    size_t n;
    int dry;           /* only count matches */
    size_t *matches;   /* per argument */
    uint64_t files, docs;
} remove_ctx;

static int path_matches(const char *cand, const char *p, size_t len) {
    size_t cl = strlen(cand);
    if (len == cl && !memcmp(p, cand, len)) return 1;
    return len > cl && !memcmp(p, cand, cl) && (p[cl] == '/' || (cl && cand[cl - 1] == '/'));
}

static int remove_fn(rtr_store_txn *t, void *vctx) {
    remove_ctx *r = vctx;
    r->files = r->docs = 0;
    for (size_t i = 0; i < r->n; i++) r->matches[i] = 0;
    uint8_t key[16], prev[16];
    int have_prev = 0, rc;
    rtr_file_rec f;
    /* collect first: deleting while iterating would move the cursor's ground */
    char **hits = NULL;
    size_t nh = 0, ch = 0;
    while ((rc = rtr_store_next_file(t, have_prev ? prev : NULL, key, &f)) == RTR_OK) {
        memcpy(prev, key, 16);
        have_prev = 1;
        int hit = 0;
        for (size_t i = 0; i < r->n; i++)
            if (path_matches(r->paths[i], f.path, f.path_len) || path_matches(r->raw[i], f.path, f.path_len)) {
                r->matches[i]++;
                hit = 1;
            }
        if (!hit) continue;
        r->files++;
        r->docs += f.n_docs;
        if (r->dry) continue;
        if ((rc = RTR_GROW(hits, &ch, nh + 1))) break;
        if (!(hits[nh] = rtr_strndup(f.path, f.path_len))) { rc = RTR_E_NOMEM; break; }
        nh++;
    }
    if (rc == RTR_E_NOTFOUND) rc = RTR_OK;
    for (size_t i = 0; i < nh && !rc; i++) {
        rc = rtr_store_delete_file(t, hits[i]);
        if (!rc) rc = rtr_store_delete_skip(t, hits[i]);
    }
    for (size_t i = 0; i < nh; i++) rtr_free(hits[i]);
    rtr_free(hits);
    return rc;
}

/* Absolute, lexically normalised form of p (for paths that no longer exist). */
static char *canonical(const char *p) {
    char real[PATH_MAX];
    if (realpath(p, real)) return rtr_strdup(real);
    char buf[PATH_MAX * 2];
    if (p[0] == '/') snprintf(buf, sizeof buf, "%s", p);
    else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return rtr_strdup(p);
        snprintf(buf, sizeof buf, "%s/%s", cwd, p);
    }
    /* resolve "." and ".." components */
    char out[PATH_MAX * 2];
    size_t ol = 0;
    for (char *tok = strtok(buf, "/"); tok; tok = strtok(NULL, "/")) {
        if (!strcmp(tok, ".")) continue;
        if (!strcmp(tok, "..")) {
            while (ol > 0 && out[ol - 1] != '/') ol--;
            if (ol > 0) ol--;
            continue;
        }
        out[ol++] = '/';
        size_t tl = strlen(tok);
        memcpy(out + ol, tok, tl);
        ol += tl;
    }
    if (ol == 0) out[ol++] = '/';
    out[ol] = '\0';
    return rtr_strdup(out);
}

int rtr_kb_remove(rtr_kb *kb, const char *const *paths, size_t n, uint64_t *files_removed,
                  uint64_t *docs_removed) {
    remove_ctx r = {0};
    r.n = n;
    r.paths = rtr_calloc(n ? n : 1, sizeof *r.paths);
    r.matches = rtr_calloc(n ? n : 1, sizeof *r.matches);
    int rc = r.paths && r.matches ? RTR_OK : RTR_E_NOMEM;
    r.raw = (char **)paths;
    for (size_t i = 0; i < n && !rc; i++)
        if (!(r.paths[i] = canonical(paths[i]))) rc = RTR_E_NOMEM;
    if (!rc) {   /* dry run in a read txn: every argument must match something */
        rtr_store_txn *t;
        r.dry = 1;
        if (!(rc = rtr_store_read_begin(rtr_kb_store(kb), &t))) {
            rc = remove_fn(t, &r);
            rtr_store_txn_end(t);
        }
        for (size_t i = 0; i < n && !rc; i++)
            if (r.matches[i] == 0)
                rc = rtr_seterr(RTR_E_NOTFOUND, "%s: no documents from this path in %s", paths[i], rtr_kb_dir(kb));
    }
    if (!rc) {
        r.dry = 0;
        rc = rtr_store_write(rtr_kb_store(kb), remove_fn, &r);
    }
    if (files_removed) *files_removed = rc ? 0 : r.files;
    if (docs_removed) *docs_removed = rc ? 0 : r.docs;
    for (size_t i = 0; i < n && r.paths; i++) rtr_free(r.paths[i]);
    rtr_free(r.paths);
    rtr_free(r.matches);
    return rc;
}

typedef struct remove_ids_ctx {
    const uint64_t *ids;
    size_t n;
    uint64_t files, docs;
} remove_ids_ctx;

static int remove_ids_fn(rtr_store_txn *t, void *vctx) {
    remove_ids_ctx *r = vctx;
    r->files = r->docs = 0;
    int rc = RTR_OK;
    for (size_t i = 0; i < r->n && !rc; i++) {
        rtr_doc d;
        if ((rc = rtr_store_get_doc(t, r->ids[i], &d)) == RTR_E_NOTFOUND) {
            rc = RTR_OK;   /* the source of an earlier id took it along */
            continue;
        }
        char *path = rc ? NULL : rtr_strndup(d.path, d.path_len);
        if (!rc && !path) rc = RTR_E_NOMEM;
        rtr_file_rec f;
        if (!rc && !(rc = rtr_store_get_file(t, path, &f))) {
            r->files++;
            r->docs += f.n_docs;
        }
        if (!rc) rc = rtr_store_delete_file(t, path);
        if (!rc) rc = rtr_store_delete_skip(t, path);
        rtr_free(path);
    }
    return rc;
}

int rtr_kb_remove_docs(rtr_kb *kb, const uint64_t *ids, size_t n, uint64_t *files_removed, uint64_t *docs_removed) {
    rtr_store_txn *t;
    int rc = rtr_store_read_begin(rtr_kb_store(kb), &t);
    for (size_t i = 0; i < n && !rc; i++) {
        rtr_doc d;
        if ((rc = rtr_store_get_doc(t, ids[i], &d)) == RTR_E_NOTFOUND)
            rc = rtr_seterr(RTR_E_NOTFOUND, "%s: no document %llu", rtr_kb_dir(kb), (unsigned long long)ids[i]);
    }
    rtr_store_txn_end(t);
    remove_ids_ctx r = {ids, n, 0, 0};
    if (!rc) rc = rtr_store_write(rtr_kb_store(kb), remove_ids_fn, &r);
    if (files_removed) *files_removed = rc ? 0 : r.files;
    if (docs_removed) *docs_removed = rc ? 0 : r.docs;
    return rc;
}
