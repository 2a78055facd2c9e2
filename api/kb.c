/* kb.c - the public API's knowledge bases and search (include/retro.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_int.h"
#include "index/build.h"
#include "index/ingest.h"
#include "index/parts.h"
#include "retriever/multi.h"
#include "lib/alloc.h"
#include "lib/status.h"

#ifndef RETRO_SOURCE_DIR
#define RETRO_SOURCE_DIR "."
#endif

const char *retro_strerror(int status) { return rtr_strerror(status); }
const char *retro_errdetail(void) { return rtr_errdetail(); }
const char *retro_version(void) { return RETRO_VERSION; }

const char *retro_default_tokenizer(void) {
    const char *env = getenv("RETRO_DEFAULT_TOKENIZER");
    if (env && *env) return env;
#ifdef RETRO_DATA_DIR
    if (access(RETRO_DATA_DIR "/tokenizer.rtok", R_OK) == 0) return RETRO_DATA_DIR "/tokenizer.rtok";
#endif
    return RETRO_SOURCE_DIR "/datasets/tokenizer.rtok";
}

int retro_kb_open(const char *dir, unsigned flags, const char *tokenizer, retro_kb **out) {
    *out = NULL;
    retro_kb *k = rtr_calloc(1, sizeof *k);
    if (!k) return RTR_E_NOMEM;
    pthread_mutex_init(&k->wmu, NULL);
    pthread_mutex_init(&k->rmu, NULL);
    pthread_mutex_init(&k->smu, NULL);
    rtr_tokenizer *tok = NULL;
    int rc = RTR_OK;
    unsigned f = (flags & RETRO_KB_WRITE ? RTR_KB_WRITE : 0) | (flags & RETRO_KB_CREATE ? RTR_KB_CREATE : 0);
    if (f & RTR_KB_CREATE) rc = rtr_tokenizer_load(tokenizer ? tokenizer : retro_default_tokenizer(), &tok);
    if (!rc) rc = rtr_kb_open(dir, f, tok, NULL, &k->kb);
    /* a knowledge base of partitions, to read: on every rank of the job (lib/comm.h) */
    uint32_t parts = 0;
    if (rc == RTR_E_INVALID && !f && rtr_parts_probe(dir, &parts) == RTR_OK && parts > 1)
        rc = rtr_parts_open(dir, 0, 0, NULL, rtr_comm_world(), &k->ps);
    /* several ranks: each its partitions' retrievers now, all together (a collective) */
    if (!rc && k->ps && rtr_comm_size(rtr_comm_world()) > 1) rc = rtr_multi_open(k->ps, NULL, &k->multi);
    rtr_tokenizer_free(tok);
    if (rc) {
        pthread_mutex_destroy(&k->wmu);
        pthread_mutex_destroy(&k->rmu);
        pthread_mutex_destroy(&k->smu);
        rtr_free(k);
        return rc;
    }
    *out = k;
    return RTR_OK;
}

void retro_kb_close(retro_kb *kb) {
    if (!kb) return;
    if (kb->cur) {
        RTR_ASSERT(kb->cur->refs == 1);   /* no call may still be running */
        rtr_retriever_close(kb->cur->r);
        rtr_free(kb->cur);
    }
    rtr_kb_close(kb->kb);
    rtr_multi_close(kb->multi);
    rtr_parts_close(kb->ps);
    pthread_mutex_destroy(&kb->wmu);
    pthread_mutex_destroy(&kb->rmu);
    pthread_mutex_destroy(&kb->smu);
    rtr_free(kb);
}

int rtr_api_plain(const retro_kb *kb, const char *what) {
    if (kb->kb) return RTR_OK;
    return rtr_seterr(RTR_E_INVALID, "%s: a knowledge base of %u partitions: %s reads one of them only for now "
                      "(%s/part-0000); retro index add, index build, search and train read them all",
                      rtr_parts_dir(kb->ps), rtr_parts_count(kb->ps), what, rtr_parts_dir(kb->ps));
}

static int held_open(retro_kb *kb, rtr_api_held **out) {
    rtr_api_held *h = rtr_calloc(1, sizeof *h);
    int rc = h ? rtr_retriever_open(kb->kb, NULL, &h->r) : RTR_E_NOMEM;
    if (rc) {
        rtr_free(h);
        return rc;
    }
    h->refs = 1;
    *out = h;
    return RTR_OK;
}

static void held_unref(rtr_api_held *h) {   /* under rmu */
    if (h && --h->refs == 0) {
        rtr_retriever_close(h->r);
        rtr_free(h);
    }
}

int rtr_api_acquire(retro_kb *kb, rtr_api_held **out) {
    *out = NULL;
    int plain = rtr_api_plain(kb, "retrieval through the library");
    if (plain) return plain;
    pthread_mutex_lock(&kb->rmu);
    if (!kb->cur) {   /* the first user opens it: not while a build switches the files */
        pthread_mutex_unlock(&kb->rmu);
        pthread_mutex_lock(&kb->wmu);
        rtr_api_held *h = NULL;
        int rc = kb->cur ? RTR_OK : held_open(kb, &h);
        pthread_mutex_lock(&kb->rmu);
        if (h) kb->cur = h;
        pthread_mutex_unlock(&kb->wmu);
        if (rc) {
            pthread_mutex_unlock(&kb->rmu);
            return rc;
        }
    }
    kb->cur->refs++;
    *out = kb->cur;
    pthread_mutex_unlock(&kb->rmu);
    return RTR_OK;
}

void rtr_api_release(retro_kb *kb, rtr_api_held *h) {
    if (!h) return;
    pthread_mutex_lock(&kb->rmu);
    held_unref(h);
    pthread_mutex_unlock(&kb->rmu);
}

/* After a build (under wmu): the retriever of the new index replaces the old
 * one for the calls to come; calls in flight finish on the old. */
static int index_changed(retro_kb *kb) {
    rtr_api_held *h = NULL;
    int rc = kb->cur ? held_open(kb, &h) : RTR_OK;   /* none open: the next call opens it */
    pthread_mutex_lock(&kb->rmu);
    held_unref(kb->cur);
    kb->cur = h;
    pthread_mutex_unlock(&kb->rmu);
    return rc;
}

static void add_report(const rtr_ingest_report *r, retro_add_report *rep) {
    if (rep)
        *rep = (retro_add_report){r->files, r->files_new, r->files_changed, r->files_unchanged, r->files_skipped,
                                  r->docs_added, r->docs_removed, r->chunks_added, r->tokens_added, r->seconds};
}

int retro_kb_add(retro_kb *kb, const char *const *paths, size_t n, retro_add_report *rep) {
    int plain_ = rtr_api_plain(kb, "adding files through the library");
    if (plain_) return plain_;
    rtr_ingest_opts o = {0};
    rtr_ingest_report r;
    pthread_mutex_lock(&kb->wmu);
    int rc = rtr_ingest(kb->kb, paths, n, &o, &r);
    pthread_mutex_unlock(&kb->wmu);
    if (!rc) add_report(&r, rep);
    rtr_ingest_report_free(&r);
    return rc;
}

int retro_kb_add_texts(retro_kb *kb, const retro_text *docs, size_t n, uint64_t *ids, retro_add_report *rep) {
    int plain_ = rtr_api_plain(kb, "adding texts");
    if (plain_) return plain_;
    if (n > 4096) return rtr_seterr(RTR_E_INVALID, "add: at most 4096 texts a call");
    rtr_mem_file *f = rtr_calloc(n ? n : 1, sizeof *f);
    if (!f) return RTR_E_NOMEM;
    for (size_t i = 0; i < n; i++) f[i] = (rtr_mem_file){docs[i].name, (const uint8_t *)docs[i].text, docs[i].len, 0};
    rtr_ingest_opts o = {0};
    rtr_ingest_report r;
    pthread_mutex_lock(&kb->wmu);
    int rc = rtr_ingest_memory(kb->kb, f, n, &o, &r);
    pthread_mutex_unlock(&kb->wmu);
    rtr_store_txn *t = NULL;
    if (!rc && ids) rc = rtr_store_read_begin(rtr_kb_store(kb->kb), &t);
    for (size_t i = 0; !rc && ids && i < n; i++) {   /* each name's first document */
        uint64_t *d = NULL;
        size_t nd = 0;
        rc = rtr_store_file_docs(t, docs[i].name, &d, &nd);
        if (rc == RTR_E_NOTFOUND) rc = RTR_OK;
        ids[i] = 0;
        for (size_t j = 0; j < nd; j++)
            if (!ids[i] || d[j] < ids[i]) ids[i] = d[j];
        rtr_free(d);
    }
    rtr_store_txn_end(t);
    if (!rc) add_report(&r, rep);
    rtr_ingest_report_free(&r);
    rtr_free(f);
    return rc;
}

int retro_kb_remove(retro_kb *kb, const char *const *paths, size_t n, uint64_t *docs_removed) {
    int plain_ = rtr_api_plain(kb, "removing files");
    if (plain_) return plain_;
    uint64_t files = 0, docs = 0;
    pthread_mutex_lock(&kb->wmu);
    int rc = rtr_kb_remove(kb->kb, paths, n, &files, &docs);
    pthread_mutex_unlock(&kb->wmu);
    if (docs_removed) *docs_removed = docs;
    return rc;
}

int retro_kb_remove_docs(retro_kb *kb, const uint64_t *ids, size_t n, uint64_t *docs_removed) {
    int plain_ = rtr_api_plain(kb, "removing documents");
    if (plain_) return plain_;
    uint64_t files = 0, docs = 0;
    pthread_mutex_lock(&kb->wmu);
    int rc = rtr_kb_remove_docs(kb->kb, ids, n, &files, &docs);
    pthread_mutex_unlock(&kb->wmu);
    if (docs_removed) *docs_removed = docs;
    return rc;
}

int retro_kb_build(retro_kb *kb, retro_build_report *rep) {
    int plain_ = rtr_api_plain(kb, "building through the library");
    if (plain_) return plain_;
    rtr_build_opts o = {0};
    rtr_build_report r;
    memset(&r, 0, sizeof r);
    pthread_mutex_lock(&kb->wmu);
    int rc = rtr_index_build(kb->kb, &o, &r);
    int rc2 = index_changed(kb);
    pthread_mutex_unlock(&kb->wmu);
    if (!rc) rc = rc2;
    if (!rc && rep) {
        memset(rep, 0, sizeof *rep);
        rep->embedded = r.embedded;
        rep->vectors = r.vectors;
        snprintf(rep->factory, sizeof rep->factory, "%s", r.factory);
        rep->seconds = r.seconds;
    }
    return rc;
}

int retro_kb_stats_get(retro_kb *kb, retro_kb_stats *out) {
    int plain_ = rtr_api_plain(kb, "statistics");
    if (plain_) return plain_;
    memset(out, 0, sizeof *out);
    rtr_store_txn *t;
    int rc = rtr_store_read_begin(rtr_kb_store(kb->kb), &t);
    if (rc) return rc;
    rtr_store_stats st;
    rc = rtr_store_get_stats(t, &st);
    rtr_store_txn_end(t);
    if (rc) return rc;
    *out = (retro_kb_stats){st.n_docs, st.n_chunks, st.n_tokens, st.n_bytes, st.n_files, st.n_skipped, 0};
    json_t *ix = rtr_kb_manifest_copy(kb->kb, "index");
    json_t *v = ix ? json_object_get(ix, "vectors") : NULL;
    if (json_is_integer(v)) out->vectors = (uint64_t)json_integer_value(v);
    json_decref(ix);
    return RTR_OK;
}

int retro_kb_warm(retro_kb *kb, uint64_t *bytes) {
    int plain_ = rtr_api_plain(kb, "warming");
    if (plain_) return plain_;
    if (bytes) *bytes = 0;
    rtr_api_held *held;
    int rc = rtr_api_acquire(kb, &held);
    if (rc) return rc;
    rc = rtr_retriever_warm(held->r, &kb->smu, bytes);
    rtr_api_release(kb, held);
    return rc;
}

int rtr_api_live_retrieve(void *ctx, const int32_t *chunks, int n, int64_t first, int32_t *nbr) {
    rtr_api_live_ctx *c = ctx;
    pthread_mutex_lock(&c->kb->smu);
    int rc = rtr_live_retrieve(c->lv, chunks, n, first, nbr);
    pthread_mutex_unlock(&c->kb->smu);
    return rc;
}

int rtr_api_live_retrieve_many(void *const *ctx, const int32_t *chunks, int n, const int64_t *first, int32_t *nbr) {
    rtr_api_live_ctx *const *c = (rtr_api_live_ctx *const *)ctx;
    int shared = n > 0;
    for (int i = 1; i < n && shared; i++) shared = c[i]->kb == c[0]->kb;
    void **lv = shared ? rtr_malloc((size_t)n * sizeof *lv) : NULL;
    if (!lv) {   /* one at a time */
        int rc = RTR_OK;
        for (int i = 0; i < n && !rc; i++)
            rc = rtr_api_live_retrieve(c[i], chunks + (size_t)i * RTR_CHUNK_TOKENS, 1, first[i],
                                       nbr + (size_t)i * c[i]->lv->k * RTR_NBR_TOKENS);
        return rc;
    }
    for (int i = 0; i < n; i++) lv[i] = c[i]->lv;
    pthread_mutex_lock(&c[0]->kb->smu);
    int rc = rtr_live_retrieve_many(lv, chunks, n, first, nbr);
    pthread_mutex_unlock(&c[0]->kb->smu);
    rtr_free(lv);
    return rc;
}

/* --- documents ------------------------------------------------------------------ */
void retro_docs_free(retro_doc_info *docs, size_t n) {
    for (size_t i = 0; docs && i < n; i++) {
        rtr_free((char *)docs[i].path);
        rtr_free((char *)docs[i].title);
        rtr_free((char *)docs[i].record);
    }
    rtr_free(docs);
}

static char *dupn(const char *p, uint32_t n) { return n ? rtr_strndup(p, n) : rtr_strdup(""); }

static int doc_info(const rtr_doc *d, retro_doc_info *o) {
    *o = (retro_doc_info){d->id, dupn(d->path, d->path_len), dupn(d->title, d->title_len),
                          dupn(d->ext_id, d->ext_id_len), d->n_bytes, d->n_tokens, d->first_chunk,
                          d->n_chunks, d->mtime_ns};
    return o->path && o->title && o->record ? RTR_OK : RTR_E_NOMEM;
}

int retro_kb_docs(retro_kb *kb, uint64_t after, size_t limit, retro_doc_info **docs, size_t *n) {
    int plain_ = rtr_api_plain(kb, "listing documents");
    if (plain_) return plain_;
    *docs = NULL;
    *n = 0;
    if (limit < 1 || limit > 10000) return rtr_seterr(RTR_E_INVALID, "documents: a page of 1 to 10000");
    rtr_store_txn *t;
    int rc = rtr_store_read_begin(rtr_kb_store(kb->kb), &t);
    if (rc) return rc;
    retro_doc_info *out = NULL;
    size_t cap = 0, m = 0;
    rtr_doc d;
    while (m < limit && (rc = rtr_store_next_doc(t, after, &d)) == RTR_OK) {
        if ((rc = RTR_GROW(out, &cap, m + 1))) break;
        rc = doc_info(&d, &out[m++]);
        if (rc) break;
        after = d.id;
    }
    rtr_store_txn_end(t);
    if (rc == RTR_E_NOTFOUND) rc = RTR_OK;
    if (rc) {
        retro_docs_free(out, m);
        return rc;
    }
    *docs = out;
    *n = m;
    return RTR_OK;
}

int retro_kb_doc_get(retro_kb *kb, uint64_t id, retro_doc_info **doc, char **text, size_t *len) {
    int plain_ = rtr_api_plain(kb, "reading a document");
    if (plain_) return plain_;
    *doc = NULL;
    if (text) *text = NULL;
    if (len) *len = 0;
    rtr_store_txn *t;
    int rc = rtr_store_read_begin(rtr_kb_store(kb->kb), &t);
    if (rc) return rc;
    rtr_doc d;
    retro_doc_info *o = rtr_calloc(1, sizeof *o);
    rc = o ? rtr_store_get_doc(t, id, &d) : RTR_E_NOMEM;
    if (rc == RTR_E_NOTFOUND) rc = rtr_seterr(RTR_E_NOTFOUND, "%s: no document %llu", rtr_kb_dir(kb->kb), (unsigned long long)id);
    if (!rc) rc = doc_info(&d, o);
    rtr_buf b = {0};
    if (!rc && text) rc = rtr_store_get_text(t, id, &b);
    rtr_store_txn_end(t);
    if (!rc && text) rc = rtr_buf_terminate(&b);
    if (rc) {
        rtr_buf_free(&b);
        retro_docs_free(o, o ? 1 : 0);
        return rc;
    }
    if (text) {
        *text = (char *)b.data;
        if (len) *len = b.len;
    }
    *doc = o;
    return RTR_OK;
}

/* --- search ------------------------------------------------------------------- */
void rtr_api_source_free(retro_source *s) {
    rtr_free((char *)s->path);
    rtr_free((char *)s->title);
    rtr_free((char *)s->text);
    rtr_free((char *)s->continuation);
    memset(s, 0, sizeof *s);
}

void retro_results_free(retro_results *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) rtr_api_source_free(&r->items[i]);
    rtr_free(r->items);
    memset(r, 0, sizeof *r);
}

/* Hits as results: the strings move to them. */
static int hits_to_results(rtr_hits *h, retro_results *out) {
    out->query_chunks = h->query_chunks;
    out->query_tokens = h->query_tokens;
    if (h->n && !(out->items = rtr_calloc(h->n, sizeof *out->items))) return RTR_E_NOMEM;
    for (size_t i = 0; i < h->n; i++) {
        rtr_hit *x = &h->items[i];
        out->items[i] = (retro_source){x->chunk_id, x->doc_id, x->seq, x->query_chunk, x->path, x->title,
                                       x->byte_start, x->byte_end, x->distance, x->score, x->text, x->continuation,
                                       x->found_by, x->vector_rank, x->lexical_rank, x->vector_score, x->lexical_score};
        x->path = x->title = x->text = x->continuation = NULL;
    }
    out->n = h->n;
    return RTR_OK;
}

static int search_held(rtr_retriever *r, const char *query, size_t len, const retro_search_opts *o, retro_results *out) {
    int rc;
    rtr_vindex *vx = NULL;
    if ((o->nprobe || o->rerank) && (rc = rtr_retriever_vindex(r, &vx))) return rc;
    if (o->nprobe && (rc = rtr_vindex_set_nprobe(vx, o->nprobe))) return rc;
    if (o->rerank && (rc = rtr_vindex_set_rerank(vx, o->rerank < 0 ? 0 : o->rerank))) return rc;
    rtr_search_opts so = {.exclude_docs = o->exclude_docs, .n_exclude = o->n_exclude, .continuation = o->continuation, .mode = o->mode};
    rtr_hits h;
    if ((rc = rtr_retriever_search(r, query, len, o->k ? o->k : 10, &so, &h))) return rc;
    rc = hits_to_results(&h, out);
    rtr_hits_free(&h);
    return rc;
}

int retro_kb_follow(retro_kb *kb) {
    if (!kb->ps || !kb->multi) return rtr_comm_rank(rtr_comm_world()) == 0 ? rtr_seterr(RTR_E_INVALID, "rank 0 leads") : RTR_OK;
    return rtr_multi_follow(kb->multi);
}

int retro_kb_release(retro_kb *kb) {
    if (!kb->ps || !kb->multi) return RTR_OK;
    pthread_mutex_lock(&kb->smu);   /* after the searches in flight */
    int rc = rtr_multi_release(kb->multi);
    pthread_mutex_unlock(&kb->smu);
    return rc;
}

/* A search of every partition (under smu): in this process, or led by rank 0 of a job whose other
 * ranks follow (retro_kb_follow). */
static int search_parts(retro_kb *kb, const char *query, size_t len, const retro_search_opts *o, retro_results *out) {
    rtr_comm *c = rtr_parts_comm(kb->ps);
    if (rtr_comm_size(c) > 1 && (rtr_comm_rank(c) != 0 || !rtr_comm_any_thread(c)))
        return rtr_seterr(RTR_E_INVALID, "%s: rank 0 of the job searches the partitions, the others follow it (and "
                          "MPI must take calls from any thread: MPI_THREAD_SERIALIZED)", rtr_parts_dir(kb->ps));
    if (o->nprobe || o->rerank)
        return rtr_seterr(RTR_E_INVALID, "%s: nprobe and rerank are each partition's, not set through a search of "
                          "them all", rtr_parts_dir(kb->ps));
    int rc = kb->multi ? RTR_OK : rtr_multi_open(kb->ps, NULL, &kb->multi);
    rtr_search_opts so = {.exclude_docs = o->exclude_docs, .n_exclude = o->n_exclude, .continuation = o->continuation, .mode = o->mode};
    rtr_hits h = {0};
    if (!rc) rc = rtr_multi_search(kb->multi, query, len, o->k ? o->k : 10, &so, &h);
    if (!rc) rc = hits_to_results(&h, out);
    rtr_hits_free(&h);
    return rc;
}

int retro_search(retro_kb *kb, const char *query, size_t len, const retro_search_opts *o, retro_results *out) {
    memset(out, 0, sizeof *out);
    retro_search_opts none = {0};
    if (!o) o = &none;
    int rc;
    if (kb->ps) {
        pthread_mutex_lock(&kb->smu);
        rc = search_parts(kb, query, len, o, out);
        pthread_mutex_unlock(&kb->smu);
        return rc;
    }
    rtr_api_held *held;
    if ((rc = rtr_api_acquire(kb, &held))) return rc;
    pthread_mutex_lock(&kb->smu);
    rc = search_held(held->r, query, len, o, out);
    pthread_mutex_unlock(&kb->smu);
    rtr_api_release(kb, held);
    return rc;
}

int retro_kb_embed(retro_kb *kb, const char *const *texts, const size_t *lens, size_t n, float **vectors,
                   uint32_t *dim) {
    int plain_ = rtr_api_plain(kb, "embedding");
    if (plain_) return plain_;
    *vectors = NULL;
    *dim = 0;
    if (n == 0 || n > 2048) return rtr_seterr(RTR_E_INVALID, "embeddings: 1 to 2048 inputs");
    rtr_api_held *held;
    int rc = rtr_api_acquire(kb, &held);
    if (rc) return rc;
    rtr_embedder *e = rtr_kb_vectors_embedder(rtr_retriever_vectors(held->r));
    rtr_text *t = rtr_calloc(n, sizeof *t);
    float *v = t && e->dim ? rtr_malloc(n * e->dim * sizeof *v) : NULL;
    rc = t && v ? RTR_OK : RTR_E_NOMEM;
    for (size_t i = 0; !rc && i < n; i++) t[i] = (rtr_text){texts[i], lens ? lens[i] : strlen(texts[i])};
    pthread_mutex_lock(&kb->smu);
    if (!rc) rc = rtr_embedder_embed(e, t, n, v);
    pthread_mutex_unlock(&kb->smu);
    rtr_api_release(kb, held);
    rtr_free(t);
    if (rc) {
        rtr_free(v);
        return rc;
    }
    *vectors = v;
    *dim = e->dim;
    return RTR_OK;
}
