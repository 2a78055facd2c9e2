/* kb.c - the public API's knowledge bases and search (include/retro.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_int.h"
#include "index/build.h"
#include "index/ingest.h"
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
    rtr_tokenizer *tok = NULL;
    int rc = RTR_OK;
    unsigned f = (flags & RETRO_KB_WRITE ? RTR_KB_WRITE : 0) | (flags & RETRO_KB_CREATE ? RTR_KB_CREATE : 0);
    if (f & RTR_KB_CREATE) rc = rtr_tokenizer_load(tokenizer ? tokenizer : retro_default_tokenizer(), &tok);
    if (!rc) rc = rtr_kb_open(dir, f, tok, NULL, &k->kb);
    rtr_tokenizer_free(tok);
    if (rc) {
        rtr_free(k);
        return rc;
    }
    *out = k;
    return RTR_OK;
}

void retro_kb_close(retro_kb *kb) {
    if (!kb) return;
    rtr_retriever_close(kb->r);
    rtr_kb_close(kb->kb);
    rtr_free(kb);
}

int rtr_api_retriever(retro_kb *kb, rtr_retriever **out) {
    int rc = kb->r ? RTR_OK : rtr_retriever_open(kb->kb, NULL, &kb->r);
    *out = kb->r;
    return rc;
}

/* The index changes under a writer: the next search opens it anew. */
static void index_changed(retro_kb *kb) {
    rtr_retriever_close(kb->r);
    kb->r = NULL;
}

int retro_kb_add(retro_kb *kb, const char *const *paths, size_t n, retro_add_report *rep) {
    rtr_ingest_opts o = {0};
    rtr_ingest_report r;
    int rc = rtr_ingest(kb->kb, paths, n, &o, &r);
    if (!rc && rep) {
        *rep = (retro_add_report){r.files, r.files_new, r.files_changed, r.files_unchanged, r.files_skipped,
                                  r.docs_added, r.docs_removed, r.chunks_added, r.tokens_added, r.seconds};
    }
    rtr_ingest_report_free(&r);
    return rc;
}

int retro_kb_remove(retro_kb *kb, const char *const *paths, size_t n, uint64_t *docs_removed) {
    uint64_t files = 0, docs = 0;
    int rc = rtr_kb_remove(kb->kb, paths, n, &files, &docs);
    if (docs_removed) *docs_removed = docs;
    return rc;
}

int retro_kb_build(retro_kb *kb, retro_build_report *rep) {
    rtr_build_opts o = {0};
    rtr_build_report r;
    memset(&r, 0, sizeof r);
    int rc = rtr_index_build(kb->kb, &o, &r);
    index_changed(kb);
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
    memset(out, 0, sizeof *out);
    rtr_store_txn *t;
    int rc = rtr_store_read_begin(rtr_kb_store(kb->kb), &t);
    if (rc) return rc;
    rtr_store_stats st;
    rc = rtr_store_get_stats(t, &st);
    rtr_store_txn_end(t);
    if (rc) return rc;
    *out = (retro_kb_stats){st.n_docs, st.n_chunks, st.n_tokens, st.n_bytes, st.n_files, st.n_skipped, 0};
    json_t *ix = rtr_kb_manifest_get(kb->kb, "index");
    json_t *v = ix ? json_object_get(ix, "vectors") : NULL;
    if (json_is_integer(v)) out->vectors = (uint64_t)json_integer_value(v);
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

int retro_search(retro_kb *kb, const char *query, size_t len, const retro_search_opts *o, retro_results *out) {
    memset(out, 0, sizeof *out);
    retro_search_opts none = {0};
    if (!o) o = &none;
    rtr_retriever *r;
    int rc = rtr_api_retriever(kb, &r);
    if (rc) return rc;
    if (o->nprobe && (rc = rtr_vindex_set_nprobe(rtr_kb_vectors_vindex(rtr_retriever_vectors(r)), o->nprobe))) return rc;
    if (o->rerank && (rc = rtr_vindex_set_rerank(rtr_kb_vectors_vindex(rtr_retriever_vectors(r)), o->rerank < 0 ? 0 : o->rerank)))
        return rc;
    rtr_search_opts so = {o->exclude_docs, o->n_exclude, o->continuation};
    rtr_hits h;
    if ((rc = rtr_retriever_search(r, query, len, o->k ? o->k : 10, &so, &h))) return rc;
    out->query_chunks = h.query_chunks;
    out->query_tokens = h.query_tokens;
    if (h.n && !(out->items = rtr_calloc(h.n, sizeof *out->items))) {
        rtr_hits_free(&h);
        return RTR_E_NOMEM;
    }
    for (size_t i = 0; i < h.n; i++) {   /* the strings move to the results */
        rtr_hit *x = &h.items[i];
        out->items[i] = (retro_source){x->chunk_id, x->doc_id, x->seq, x->query_chunk, x->path, x->title,
                                       x->byte_start, x->byte_end, x->distance, x->score, x->text, x->continuation};
        x->path = x->title = x->text = x->continuation = NULL;
    }
    out->n = h.n;
    rtr_hits_free(&h);
    return RTR_OK;
}

int retro_kb_embed(retro_kb *kb, const char *const *texts, const size_t *lens, size_t n, float **vectors,
                   uint32_t *dim) {
    *vectors = NULL;
    *dim = 0;
    if (n == 0 || n > 2048) return rtr_seterr(RTR_E_INVALID, "embeddings: 1 to 2048 inputs");
    rtr_retriever *r;
    int rc = rtr_api_retriever(kb, &r);
    if (rc) return rc;
    rtr_embedder *e = rtr_kb_vectors_embedder(rtr_retriever_vectors(r));
    rtr_text *t = rtr_calloc(n, sizeof *t);
    float *v = t && e->dim ? rtr_malloc(n * e->dim * sizeof *v) : NULL;
    rc = t && v ? RTR_OK : RTR_E_NOMEM;
    for (size_t i = 0; !rc && i < n; i++) t[i] = (rtr_text){texts[i], lens ? lens[i] : strlen(texts[i])};
    if (!rc) rc = rtr_embedder_embed(e, t, n, v);
    rtr_free(t);
    if (rc) {
        rtr_free(v);
        return rc;
    }
    *vectors = v;
    *dim = e->dim;
    return RTR_OK;
}
