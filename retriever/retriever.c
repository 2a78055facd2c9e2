/* retriever.c - the query path: text search with sources, and neighbours for the model. */
#include "retriever/retriever.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/embed_pca.h"
#include "index/lexical.h"
#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/sort.h"
#include "lib/status.h"
#include "lib/threads.h"

#define MAX_K 4096

struct rtr_retriever {
    rtr_kb *kb;
    rtr_kb_vectors *vec;
    rtr_embedder *embedder;   /* vec's */
    uint32_t dim;             /* its vectors' */
    pthread_mutex_t lock;     /* guards vindex */
    rtr_vindex *vindex;       /* vec's, NULL until the first vector search loads it (vector_index) */
    uint32_t nprobe;          /* to set on vindex when loaded (0: as recorded) */
    int rerank;               /* likewise (0: automatic, < 0 exact) */
    int32_t batch_nprobe;     /* likewise for batch lookups (0: the index's default, < 0: none) */
    int threads;
    int default_mode;         /* what RTR_SEARCH_DEFAULT means when the lexical index exists */
};

/* The vector index, loaded by the first call (from any thread) with the options it was opened with. */
static int vector_index(rtr_retriever *r, rtr_vindex **out) {
    int rc = RTR_OK;
    pthread_mutex_lock(&r->lock);
    if (!r->vindex) {
        rtr_vindex *vx;
        rc = rtr_kb_vectors_search_index(r->vec, &vx);
        if (!rc && r->nprobe) rc = rtr_vindex_set_nprobe(vx, r->nprobe);
        if (!rc && r->rerank) rc = rtr_vindex_set_rerank(vx, r->rerank < 0 ? 0 : r->rerank);
        if (!rc && r->batch_nprobe > 0) rc = rtr_vindex_set_batch_nprobe(vx, (uint32_t)r->batch_nprobe);
        if (!rc) r->vindex = vx;
    }
    *out = r->vindex;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int rtr_retriever_open(rtr_kb *kb, const rtr_retriever_opts *o, rtr_retriever **out) {
    *out = NULL;
    rtr_retriever *r = rtr_calloc(1, sizeof *r);
    if (!r) return RTR_E_NOMEM;
    if (pthread_mutex_init(&r->lock, NULL)) {
        rtr_free(r);
        return rtr_seterr(RTR_E_NOMEM, "mutex");
    }
    r->kb = kb;
    r->threads = o && o->threads > 0 ? o->threads : rtr_cores();
    r->default_mode = RTR_SEARCH_VECTOR;
    json_t *sm = rtr_kb_manifest_copy(kb, "search");   /* retro index build --search-mode */
    const char *m = json_string_value(json_object_get(sm, "mode"));
    if (m) r->default_mode = !strcmp(m, "lexical") ? RTR_SEARCH_LEXICAL : !strcmp(m, "hybrid") ? RTR_SEARCH_HYBRID : RTR_SEARCH_VECTOR;
    json_decref(sm);
    r->nprobe = o ? o->nprobe : 0;
    r->rerank = o ? o->rerank : 0;
    r->batch_nprobe = o ? o->batch_nprobe : 0;
    int rc = rtr_kb_vectors_open(kb, &r->vec);   /* the shards wait for the first vector search */
    if (!rc) {
        r->embedder = rtr_kb_vectors_embedder(r->vec);
        r->dim = rtr_kb_vectors_dim(r->vec);
    }
    rtr_vindex *vx;
    if (!rc && !r->dim && !(rc = vector_index(r, &vx))) r->dim = rtr_vindex_dim(vx);   /* recorded nowhere else */
    if (rc) {
        rtr_retriever_close(r);
        return rc;
    }
    *out = r;
    return RTR_OK;
}

void rtr_retriever_close(rtr_retriever *r) {
    if (!r) return;
    rtr_kb_vectors_close(r->vec);
    pthread_mutex_destroy(&r->lock);
    rtr_free(r);
}

const rtr_kb_vectors *rtr_retriever_vectors(const rtr_retriever *r) { return r->vec; }

int rtr_retriever_vindex(rtr_retriever *r, rtr_vindex **out) { return vector_index(r, out); }

rtr_kb *rtr_retriever_kb(rtr_retriever *r) { return r->kb; }

int rtr_retriever_warm(rtr_retriever *r, pthread_mutex_t *search_mu, uint64_t *bytes) {
    uint64_t vb = 0, sb = 0;
    if (bytes) *bytes = 0;
    uint64_t size = rtr_path_bytes(rtr_kb_dir(r->kb));   /* the store and the index, nearly all of it */
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psz > 0 && size > (uint64_t)pages * (uint64_t)psz / 2) return RTR_OK;   /* would crowd out the rest */
    rtr_vindex *vx;
    if (search_mu) pthread_mutex_lock(search_mu);
    int rc = vector_index(r, &vx);
    if (!rc) vb = rtr_vindex_warm(vx);
    if (search_mu) pthread_mutex_unlock(search_mu);
    if (!rc) rc = rtr_store_warm(rtr_kb_store(r->kb), &sb);
    if (bytes) *bytes = vb + sb;
    return rc;
}

/* The documents a query's results never come from. */
typedef struct doc_filter {
    uint64_t self, other;     /* two documents (0: none) */
    const uint64_t *ex;       /* and these, sorted */
    size_t n_ex;
} doc_filter;

static int excluded(uint64_t doc, const doc_filter *f) {
    if (doc == f->self || doc == f->other) return 1;
    return f->n_ex && bsearch(&doc, f->ex, f->n_ex, sizeof *f->ex, rtr_cmp_u64) != NULL;
}

/* 1 if the lexical index in t holds chunks. */
static int has_lexical(rtr_store_txn *t) {
    rtr_lex_state ls;
    return rtr_lex_state_get(t, &ls) == RTR_OK && ls.chunks > 0;
}

/* The error for a lexical or hybrid ranking without the lexical index; what (may be NULL) says who wanted it. */
static int no_lexical(const rtr_retriever *r, const char *what) {
    return rtr_seterr(RTR_E_NOTFOUND, "%s: no lexical index yet%s%s; run 'retro index build %s'", rtr_kb_dir(r->kb),
                      what ? " for " : "", what ? what : "", rtr_kb_dir(r->kb));
}

/* How deep each side ranks for k results: hybrid goes deeper than k, so that what both sides find comes up. */
static uint32_t side_depth(int mode, uint32_t k) { return mode == RTR_SEARCH_HYBRID && k < 50 ? 50 : k; }
uint32_t rtr_retriever_side_depth(int mode, uint32_t k) { return side_depth(mode, k); }

int rtr_retriever_default_mode(const rtr_retriever *r) { return r->default_mode; }

int rtr_retriever_mode_ready(rtr_retriever *r, int mode, const char *what) {
    if (mode < RTR_SEARCH_DEFAULT || mode > RTR_SEARCH_HYBRID)
        return rtr_seterr(RTR_E_INVALID, "retriever %d is not vector, lexical or hybrid", mode);
    if (mode == RTR_SEARCH_DEFAULT || mode == RTR_SEARCH_VECTOR) return RTR_OK;
    rtr_store_txn *t = NULL;
    int rc = rtr_store_read_begin(rtr_kb_store(r->kb), &t);
    if (!rc && !has_lexical(t)) rc = no_lexical(r, what);
    rtr_store_txn_end(t);
    return rc;
}

/* Embeds n chunk texts with e (in parallel when it allows). */
static int embed_texts(rtr_retriever *r, rtr_embedder *e, const rtr_text *texts, size_t n, float *out) {
    return rtr_embedder_embed_threads(e, texts, n, out, r->threads, 32);
}

/* The texts of n token runs (run i: tok[i], len[i] tokens) into text (emptied first) and texts (n,
 * pointing into text), and their embeddings q (n x e->dim) by e. */
static int decode_embed(rtr_retriever *r, rtr_embedder *e, const uint32_t *const *tok, const uint32_t *len, size_t n,
                        rtr_buf *text, rtr_text *texts, float *q) {
    const rtr_tokenizer *tk = rtr_kb_tokenizer(r->kb);
    text->len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t at = text->len;
        int rc = rtr_tokenizer_decode(tk, tok[i], len[i], text);
        if (rc) return rc;
        texts[i].len = text->len - at;
    }
    for (size_t i = 0, at = 0; i < n; at += texts[i++].len) texts[i].data = (const char *)text->data + at;
    return embed_texts(r, e, texts, n, q);
}

/* The embedder that hybrid search measures its candidates with: the full space that a projection (pca)
 * was fitted on, where neighbours are told apart better than in the index's few components; the
 * knowledge base's embedder otherwise. */
static rtr_embedder *full_embedder(const rtr_retriever *r) {
    rtr_embedder *inner = rtr_pca_embedder_inner(r->embedder);
    return inner ? inner : r->embedder;
}

/* The k nearest live, non-excluded chunks of each of nq query vectors.
 * Results: ids/dist nq x k (-1 / inf when fewer), in ascending distance.
 * Queries whose first results are deleted or excluded are searched again,
 * 4 times deeper each round, up to MAX_DEPTH results (or the whole index);
 * past that they keep the hits found. A round holds at most ROUND_RESULTS
 * results in memory, so deep rounds go a few queries at a time. */
#define MAX_DEPTH 65536
#define ROUND_RESULTS ((size_t)1 << 22)

/* kept (nq x k, may be NULL) receives each accepted hit's chunk record, so
 * that callers need not read it again. how: SEARCH_PLAIN, SEARCH_BATCH (the batch codes) or SEARCH_FEW
 * (fewer lists: hybrid's candidates, vindex.h). */
enum { SEARCH_PLAIN, SEARCH_BATCH, SEARCH_FEW };
static int search_filtered(rtr_retriever *r, rtr_store_txn *t, int how, size_t nq, const float *q, uint32_t k,
                           const uint64_t *self_doc, uint64_t exclude_doc, const uint64_t *ex, size_t n_ex,
                           int64_t *ids, float *dist, rtr_chunk *kept) {
    for (size_t i = 0; i < nq * k; i++) {
        ids[i] = -1;
        dist[i] = INFINITY;
    }
    rtr_vindex *vx;
    int rc = vector_index(r, &vx);
    if (rc) return rc;
    uint64_t total = rtr_vindex_ntotal(vx);
    uint32_t dim = r->dim;
    size_t *todo = rtr_malloc((nq ? nq : 1) * sizeof *todo);
    float *qq = rtr_malloc((nq ? nq : 1) * dim * sizeof *qq);
    if (!todo || !qq) rc = RTR_E_NOMEM;
    size_t n_todo = nq;
    for (size_t i = 0; !rc && i < nq; i++) todo[i] = i;
    uint64_t kk = (uint64_t)k * 2 + 16;
    float *sd = NULL;
    int64_t *si = NULL;
    while (!rc && n_todo) {
        if (kk > total) kk = total;
        if (kk == 0) break;
        size_t group = ROUND_RESULTS / kk ? ROUND_RESULTS / kk : 1, still = 0;
        for (size_t g0 = 0; g0 < n_todo && !rc; g0 += group) {
            size_t gn = n_todo - g0 < group ? n_todo - g0 : group;
            for (size_t j = 0; j < gn; j++) memcpy(qq + j * dim, q + todo[g0 + j] * dim, dim * sizeof *qq);
            rtr_free(sd);
            rtr_free(si);
            sd = rtr_malloc(gn * kk * sizeof *sd);
            si = rtr_malloc(gn * kk * sizeof *si);
            if (!sd || !si) { rc = RTR_E_NOMEM; break; }
            if ((rc = (how == SEARCH_BATCH ? rtr_vindex_search_batch : how == SEARCH_FEW ? rtr_vindex_search_few
                                                                                        : rtr_vindex_search)(
                     vx, gn, qq, (uint32_t)kk, sd, si)))
                break;
            for (size_t j = 0; j < gn && !rc; j++) {
                size_t qi = todo[g0 + j];
                uint32_t have = 0;   /* rescan from the top: results are a superset */
                for (uint64_t m = 0; m < kk && have < k; m++) {
                    int64_t id = si[j * kk + m];
                    if (id < 0) break;
                    rtr_chunk c;
                    int x = rtr_store_get_chunk(t, (uint64_t)id, &c);
                    if (x == RTR_E_NOTFOUND) continue;   /* deleted since it was indexed */
                    if (x) { rc = x; break; }
                    doc_filter f = {self_doc ? self_doc[qi] : 0, exclude_doc, ex, n_ex};
                    if (excluded(c.doc_id, &f)) continue;
                    ids[qi * k + have] = id;
                    dist[qi * k + have] = sd[j * kk + m];
                    if (kept) kept[qi * k + have] = c;
                    have++;
                }
                if (have < k && kk < total && kk < MAX_DEPTH) todo[still++] = qi;   /* todo[still] <= todo[g0+j] */
            }
        }
        n_todo = still;
        kk *= 4;
        if (kk > MAX_DEPTH) kk = MAX_DEPTH;
    }
    rtr_free(sd);
    rtr_free(si);
    rtr_free(todo);
    rtr_free(qq);
    return rc;
}

/* --- text search ------------------------------------------------------------------------------ */
void rtr_hit_clear(rtr_hit *x) {
    rtr_free(x->path);
    rtr_free(x->title);
    rtr_free(x->text);
    rtr_free(x->continuation);
    x->path = x->title = x->text = x->continuation = NULL;
}

void rtr_hits_free(rtr_hits *h) {
    for (size_t i = 0; i < h->n; i++) rtr_hit_clear(&h->items[i]);
    rtr_free(h->items);
    memset(h, 0, sizeof *h);
}

static char *decode_str(const rtr_tokenizer *tok, const uint32_t *ids, size_t n) {
    rtr_buf b = {0};
    if (rtr_tokenizer_decode(tok, ids, n, &b) || rtr_buf_terminate(&b)) {
        rtr_buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

/* By chunk id, then distance, then query chunk: the first of each id is its best. */
static int cmp_hit_id(const void *a, const void *b) {
    const rtr_hit *x = a, *y = b;
    if (x->chunk_id != y->chunk_id) return x->chunk_id < y->chunk_id ? -1 : 1;
    if (x->distance != y->distance) return x->distance < y->distance ? -1 : 1;
    return x->query_chunk < y->query_chunk ? -1 : x->query_chunk > y->query_chunk;
}

/* By score (higher first), then distance (none: last), then chunk id. */
static int cmp_hit_score(const void *a, const void *b) {
    const rtr_hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    float dx = isnan(x->distance) ? INFINITY : x->distance, dy = isnan(y->distance) ? INFINITY : y->distance;
    if (dx != dy) return dx < dy ? -1 : 1;
    return x->chunk_id < y->chunk_id ? -1 : x->chunk_id > y->chunk_id;
}

/* The merge of a multi-chunk query: the k results of each of nq query chunks
 * (ids, dist: nq x k; id -1 = none) become one list in which every chunk
 * appears once, scored by its similarity averaged over the query chunks,
 * each weighted by qw (nq weights summing to 1; NULL: equal), best first
 * (so a chunk matching much of the query beats one matching a single line
 * of it perfectly; with one query chunk the score is the cosine
 * similarity), with its best distance and the query chunk of that. *out
 * (*n entries) is the caller's. */
static int merge_query_chunks(const int64_t *ids, const float *dist, size_t nq, uint32_t k, const float *qw,
                              rtr_hit **out, size_t *n) {
    *n = 0;
    rtr_hit *all = *out = rtr_calloc(nq * k + 1, sizeof *all);
    if (!all) return RTR_E_NOMEM;
    size_t na = 0;
    for (size_t i = 0; i < nq * k; i++)
        if (ids[i] >= 0)
            all[na++] = (rtr_hit){.chunk_id = (uint64_t)ids[i], .distance = dist[i], .query_chunk = (uint32_t)(i / k)};
    qsort(all, na, sizeof *all, cmp_hit_id);
    size_t u = 0;
    for (size_t i = 0; i < na; i++) {
        float sim = 1.0f - all[i].distance / 2.0f;
        sim = sim > 0 ? sim * (qw ? qw[all[i].query_chunk] : 1.0f / (float)nq) : 0;
        if (u == 0 || all[u - 1].chunk_id != all[i].chunk_id) {
            all[u] = all[i];   /* the first of an id has its best distance */
            all[u++].score = sim;
        } else {
            all[u - 1].score += sim;
        }
    }
    qsort(all, u, sizeof *all, cmp_hit_score);
    *n = u;
    return RTR_OK;
}

static int fill_hit(rtr_store_txn *t, const rtr_tokenizer *tok, uint64_t id, float d, uint32_t qc, int cont, rtr_hit *h) {
    rtr_chunk c;
    rtr_doc doc;
    int rc = rtr_store_get_chunk(t, id, &c);
    if (!rc) rc = rtr_store_get_doc(t, c.doc_id, &doc);
    if (rc) return rc;
    h->chunk_id = id;
    h->doc_id = c.doc_id;
    h->distance = d;
    h->query_chunk = qc;
    h->byte_start = c.byte_start;
    h->byte_end = c.byte_end;
    h->seq = c.seq;
    h->path = rtr_strndup(doc.path, doc.path_len);
    h->title = rtr_strndup(doc.title, doc.title_len);
    h->text = decode_str(tok, c.tokens, c.n_tokens);
    if (!h->path || !h->title || !h->text) return RTR_E_NOMEM;
    if (cont && !(c.flags & RTR_CHUNK_LAST)) {
        rtr_chunk next;
        if (rtr_store_get_chunk(t, id + 1, &next) == RTR_OK && next.doc_id == c.doc_id &&
            !(h->continuation = decode_str(tok, next.tokens, next.n_tokens)))
            return RTR_E_NOMEM;
    }
    return RTR_OK;
}

int rtr_retriever_fill(rtr_retriever *r, rtr_hit *h, size_t n, int continuation) {
    rtr_store_txn *t = NULL;
    int rc = rtr_store_read_begin(rtr_kb_store(r->kb), &t);
    for (size_t i = 0; i < n && !rc; i++)
        rc = fill_hit(t, rtr_kb_tokenizer(r->kb), h[i].chunk_id, h[i].distance, h[i].query_chunk, continuation, &h[i]);
    rtr_store_txn_end(t);
    return rc;
}

/* The lexical side: the depth best live chunks outside f for the query lq (BM25, found as how says:
 * RTR_LEX_EXACT or _RARE), best first, as hits with chunk_id and score; deeper rounds when deleted or
 * excluded chunks are dropped. */
static int lexical_ranked(rtr_store_txn *t, rtr_lex_query *lq, int how, uint32_t depth, const doc_filter *f,
                          rtr_hit **out, size_t *n) {
    *out = NULL;
    *n = 0;
    rtr_hit *res = rtr_calloc(depth + 1, sizeof *res);
    if (!res) return RTR_E_NOMEM;
    int rc = RTR_OK;
    size_t have = 0;
    for (uint32_t deep = depth + depth / 4 + 8;; deep = deep >= MAX_DEPTH / 4 ? MAX_DEPTH : deep * 4) {
        rtr_lex_hit *h;
        size_t nh;
        if ((rc = rtr_lex_query_top(lq, deep, how, &h, &nh))) break;
        have = 0;
        for (size_t i = 0; i < nh && have < depth && !rc; i++) {
            rtr_chunk c;
            int x = rtr_store_get_chunk(t, h[i].chunk_id, &c);
            if (x == RTR_E_NOTFOUND) continue;   /* deleted since it was indexed */
            if (x) { rc = x; break; }
            if (excluded(c.doc_id, f)) continue;
            res[have++] = (rtr_hit){.chunk_id = h[i].chunk_id, .score = h[i].score, .distance = NAN};
        }
        rtr_free(h);
        if (rc || have == depth || nh < deep || deep >= MAX_DEPTH) break;
    }
    if (rc) {
        rtr_free(res);
        return rc;
    }
    *out = res;
    *n = have;
    return RTR_OK;
}

/* What a ranking needs of the query beyond its hits: the retriever, the txn, the query's words (lq;
 * lexical and hybrid), its chunks' weights (qw; NULL: equal) and, for hybrid, their embeddings by
 * full_embedder (qf: nq x its dim). */
typedef struct query_ctx {
    rtr_retriever *r;
    rtr_store_txn *t;
    rtr_lex_query *lq;
    const float *qf, *qw;
    size_t nq;
} query_ctx;

/* The vector score of each of n chunks ids, as merge_query_chunks sums it (the weighted similarities
 * above 0 of the query's chunks), in full_embedder's space: their texts embedded and measured against
 * every query chunk. lex (n, may be NULL): each NAN there becomes the chunk's BM25 score for the query,
 * from the same text (lexical.h, rtr_lex_query_score_text). */
static int vector_scores(const query_ctx *qc, const uint64_t *ids, size_t n, float *out, float *lex) {
    rtr_embedder *e = full_embedder(qc->r);
    uint32_t dim = e->dim;
    const uint32_t **run = rtr_malloc((n + 1) * sizeof *run);
    uint32_t *len = rtr_malloc((n + 1) * sizeof *len);
    rtr_text *texts = rtr_malloc((n + 1) * sizeof *texts);
    float *v = rtr_malloc((n + 1) * dim * sizeof *v);
    rtr_chunk *c = rtr_malloc((n + 1) * sizeof *c);
    rtr_buf text = {0};
    int rc = run && len && texts && v && c ? RTR_OK : RTR_E_NOMEM;
    for (size_t i = 0; i < n && !rc; i++)
        if (!(rc = rtr_store_get_chunk(qc->t, ids[i], &c[i]))) run[i] = c[i].tokens, len[i] = c[i].n_tokens;
    if (!rc && n) rc = decode_embed(qc->r, e, run, len, n, &text, texts, v);
    for (size_t i = 0; i < n && !rc; i++) {
        float s = 0;
        for (size_t j = 0; j < qc->nq; j++) {
            float sim = 1.0f - rtr_l2sq(qc->qf + j * dim, v + i * dim, dim) / 2.0f;
            if (sim > 0) s += sim * (qc->qw ? qc->qw[j] : 1.0f / (float)qc->nq);
        }
        out[i] = s;
        if (lex && isnan(lex[i]))
            rc = rtr_lex_query_score_text(qc->lq, ids[i], texts[i].data, texts[i].len, &lex[i]);
    }
    rtr_free(c);
    rtr_buf_free(&text);
    rtr_free(run);
    rtr_free(len);
    rtr_free(texts);
    rtr_free(v);
    return rc;
}

static int cmp_by_vector(const void *a, const void *b) {
    const rtr_hit *x = *(const rtr_hit *const *)a, *y = *(const rtr_hit *const *)b;
    if (x->vector_score != y->vector_score) return x->vector_score > y->vector_score ? -1 : 1;
    return x->chunk_id < y->chunk_id ? -1 : x->chunk_id > y->chunk_id;
}

static int cmp_by_lexical(const void *a, const void *b) {
    const rtr_hit *x = *(const rtr_hit *const *)a, *y = *(const rtr_hit *const *)b;
    if (x->lexical_score != y->lexical_score) return x->lexical_score > y->lexical_score ? -1 : 1;
    return x->chunk_id < y->chunk_id ? -1 : x->chunk_id > y->chunk_id;
}

/* A candidate in the fused order: its score, then (a tie is common: ranks 1 and 2 against 2 and 1)
 * comb, the sum of the two sides' scores each scaled to 0..1 over the candidates (min-max CombSUM;
 * Lee, SIGIR 1997), then the chunk id. */
typedef struct fused {
    float score, comb;
    uint64_t chunk_id;
    size_t at;
} fused;

static int cmp_fused(const void *a, const void *b) {
    const fused *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->comb != y->comb) return x->comb > y->comb ? -1 : 1;
    return x->chunk_id < y->chunk_id ? -1 : x->chunk_id > y->chunk_id;
}

/* Sorts the m candidates all into the fused order (f: m entries of room). */
static void fused_order(rtr_hit *all, size_t m, fused *f, rtr_hit *tmp) {
    float lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (size_t i = 0; i < m; i++) {
        float s[2] = {all[i].vector_score, all[i].lexical_score};
        for (int k = 0; k < 2; k++) {
            if (s[k] < lo[k]) lo[k] = s[k];
            if (s[k] > hi[k]) hi[k] = s[k];
        }
    }
    for (size_t i = 0; i < m; i++) {
        float s[2] = {all[i].vector_score, all[i].lexical_score}, comb = 0;
        for (int k = 0; k < 2; k++)
            if (hi[k] > lo[k]) comb += (s[k] - lo[k]) / (hi[k] - lo[k]);
        f[i] = (fused){all[i].score, comb, all[i].chunk_id, i};
    }
    qsort(f, m, sizeof *f, cmp_fused);
    for (size_t i = 0; i < m; i++) tmp[i] = all[f[i].at];
    memcpy(all, tmp, m * sizeof *all);
}

#define RRF_K 60.0f
int rtr_hits_fuse(rtr_hit *all, size_t m) {
    rtr_hit **by = rtr_malloc((m + 1) * sizeof *by);
    fused *f = rtr_malloc((m + 1) * sizeof *f);
    rtr_hit *tmp = rtr_malloc((m + 1) * sizeof *tmp);
    int rc = by && f && tmp ? RTR_OK : RTR_E_NOMEM;
    for (int side = 0; side < 2 && !rc; side++) {
        for (size_t i = 0; i < m; i++) by[i] = &all[i];
        qsort(by, m, sizeof *by, side ? cmp_by_lexical : cmp_by_vector);
        for (size_t i = 0; i < m; i++) {
            float s = side ? by[i]->lexical_score : by[i]->vector_score;
            uint32_t *rank = side ? &by[i]->lexical_rank : &by[i]->vector_rank;
            *rank = s > 0 ? (uint32_t)i + 1 : 0;
            if (!side) by[i]->score = 0;
            if (*rank) by[i]->score += 1.0f / (RRF_K + (float)*rank);
        }
    }
    if (!rc) fused_order(all, m, f, tmp);
    rtr_free(by);
    rtr_free(f);
    rtr_free(tmp);
    return rc;
}

int rtr_hits_keep_sides(rtr_hits *all, uint32_t depth) {
    size_t n = all->n;
    rtr_hit **by = rtr_malloc((n + 1) * sizeof *by);
    unsigned *keep = rtr_calloc(n + 1, sizeof *keep);
    int rc = by && keep ? RTR_OK : RTR_E_NOMEM;
    for (int side = 0; side < 2 && !rc; side++) {
        unsigned flag = side ? RTR_FOUND_LEXICAL : RTR_FOUND_VECTOR;
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (all->items[i].found_by & flag) by[m++] = &all->items[i];
        qsort(by, m, sizeof *by, side ? cmp_by_lexical : cmp_by_vector);
        for (size_t i = 0; i < m && i < depth; i++) keep[by[i] - all->items] |= flag;
    }
    size_t w = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (!keep[i]) {
            rtr_hit_clear(&all->items[i]);
            continue;
        }
        all->items[w] = all->items[i];
        all->items[w++].found_by = keep[i];
    }
    if (!rc) all->n = w;
    rtr_free(by);
    rtr_free(keep);
    return rc;
}

/* Reciprocal rank fusion (Cormack et al., 2009) of the candidates that either side found (v: the
 * vector side's nv, l: the lexical side's nl), each scored by both sides: its BM25 score for the whole
 * query and its vector score in full_embedder's space (every candidate embedded again: a projection's
 * few components find candidates but rank them poorly). Each side ranks them all, and score = the sum
 * of 1 / (60 + rank) over the sides where it scores above 0 (ties: cmp_fused); found_by says which side
 * found it, distance is the vector side's (NAN where it did not find it). */
static int fuse(const query_ctx *qc, const rtr_hit *v, size_t nv, const rtr_hit *l, size_t nl, rtr_hit **out,
                size_t *n) {
    rtr_hit *all = rtr_calloc(nv + nl + 1, sizeof *all);
    uint64_t *ids = rtr_malloc((nv + nl + 1) * sizeof *ids);
    float *sc = rtr_malloc((nv + nl + 1) * sizeof *sc);
    float *lx = rtr_malloc((nv + nl + 1) * sizeof *lx);
    int rc = all && ids && sc && lx ? RTR_OK : RTR_E_NOMEM;
    size_t m = 0;
    for (size_t i = 0; i < nv && !rc; i++) {
        all[m] = v[i];
        all[m].found_by = RTR_FOUND_VECTOR;
        all[m].vector_score = v[i].score;
        all[m++].lexical_score = NAN;
    }
    for (size_t i = 0; i < nl && !rc; i++) {
        size_t j = 0;
        while (j < nv && all[j].chunk_id != l[i].chunk_id) j++;
        if (j == nv) {
            all[m] = l[i];
            all[m].vector_score = NAN;
            all[m].distance = NAN;
            j = m++;
        }
        all[j].found_by |= RTR_FOUND_LEXICAL;
        all[j].lexical_score = l[i].score;
    }
    for (size_t i = 0; i < m && !rc; i++) ids[i] = all[i].chunk_id, lx[i] = all[i].lexical_score;
    if (!rc && m) rc = vector_scores(qc, ids, m, sc, lx);   /* every one's vector score; BM25 where missing */
    for (size_t i = 0; i < m && !rc; i++) all[i].vector_score = sc[i], all[i].lexical_score = lx[i];
    if (!rc) rc = rtr_hits_fuse(all, m);
    rtr_free(ids);
    rtr_free(sc);
    rtr_free(lx);
    if (rc) {
        rtr_free(all);
        return rc;
    }
    *out = all;
    *n = m;
    return RTR_OK;
}

static void count_word(void *ctx, const char *w, size_t len) {
    (void)w, (void)len;
    ++*(size_t *)ctx;
}

/* The weight of each of nq query chunks (texts) in a merge: its share of the query's words (lexical.h),
 * so that a chunk without content (a line of '=' under a title, a table border), whose embedding is the
 * same as every such line's, weighs nothing beside the text it underlines; equal when no chunk has a
 * word. */
static void query_chunk_weights(const rtr_text *texts, size_t nq, float *qw) {
    size_t total = 0;
    for (size_t c = 0; c < nq; c++) {
        size_t words = 0;
        rtr_lex_words(texts[c].data, texts[c].len, count_word, &words);
        qw[c] = (float)words;
        total += words;
    }
    for (size_t c = 0; c < nq; c++) qw[c] = total ? qw[c] / (float)total : 1.0f / (float)nq;
}

/* One query's ranking in mode (vector, lexical or hybrid), best first: the vector side merged from the
 * results of its nq query chunks (ids, dist: nq x depth, as search_filtered gives them; unread for
 * lexical), the lexical side for the query's text (qc->lq) outside f, exhaustive for lexical and the
 * rarest words' candidates for hybrid (RTR_LEX_RARE), the two fused for hybrid; each hit says which
 * side found it and its rank and score there. *out (*n entries) is the caller's. */
static int rank_query(const query_ctx *qc, int mode, const int64_t *ids, const float *dist, uint32_t depth,
                      const doc_filter *f, rtr_hit **out, size_t *n) {
    *out = NULL;
    *n = 0;
    rtr_hit *vec = NULL, *lex = NULL;
    size_t nv = 0, nl = 0;
    int rc = RTR_OK;
    if (mode != RTR_SEARCH_LEXICAL) {   /* the vector side */
        rc = merge_query_chunks(ids, dist, qc->nq, depth, qc->qw, &vec, &nv);
        if (nv > depth) nv = depth;
        for (size_t i = 0; i < nv; i++) {
            vec[i].found_by = RTR_FOUND_VECTOR;
            vec[i].vector_rank = (uint32_t)i + 1;
            vec[i].vector_score = vec[i].score;
            vec[i].lexical_score = NAN;
        }
    }
    if (!rc && mode != RTR_SEARCH_VECTOR) {   /* the lexical side */
        rc = lexical_ranked(qc->t, qc->lq, mode == RTR_SEARCH_HYBRID ? RTR_LEX_RARE : RTR_LEX_EXACT, depth, f, &lex, &nl);
        for (size_t i = 0; i < nl; i++) {
            lex[i].found_by = RTR_FOUND_LEXICAL;
            lex[i].lexical_rank = (uint32_t)i + 1;
            lex[i].lexical_score = lex[i].score;
            lex[i].vector_score = NAN;
        }
    }
    if (!rc) {
        if (mode == RTR_SEARCH_HYBRID) rc = fuse(qc, vec, nv, lex, nl, out, n);
        else if (mode == RTR_SEARCH_LEXICAL) *out = lex, *n = nl, lex = NULL;
        else *out = vec, *n = nv, vec = NULL;
    }
    rtr_free(vec);
    rtr_free(lex);
    return rc;
}

int rtr_retriever_search(rtr_retriever *r, const char *query, size_t len, uint32_t k, const rtr_search_opts *so,
                         rtr_hits *out) {
    memset(out, 0, sizeof *out);
    if (k == 0 || k > MAX_K) return rtr_seterr(RTR_E_INVALID, "k must be 1..%d", MAX_K);
    const rtr_tokenizer *tok = rtr_kb_tokenizer(r->kb);
    rtr_search_opts none = {0};
    if (!so) so = &none;
    if (so->mode < RTR_SEARCH_DEFAULT || so->mode > RTR_SEARCH_HYBRID)
        return rtr_seterr(RTR_E_INVALID, "search: mode %d is not vector, lexical or hybrid", so->mode);
    rtr_encoder *enc = NULL;
    rtr_u32vec ids = {0};
    rtr_buf text = {0};
    rtr_text *texts = NULL;
    const uint32_t **run = NULL;
    uint32_t *run_len = NULL;
    float *q = NULL, *dist = NULL, *qw = NULL;
    int64_t *hid = NULL;
    uint64_t *ex = NULL;
    rtr_store_txn *t = NULL;
    rtr_hit *ranked = NULL;
    size_t nr = 0;
    int rc = rtr_store_read_begin(rtr_kb_store(r->kb), &t);
    int has_lex = !rc && has_lexical(t);
    int mode = so->mode == RTR_SEARCH_DEFAULT ? (has_lex ? r->default_mode : RTR_SEARCH_VECTOR) : so->mode;
    if (!rc && mode != RTR_SEARCH_VECTOR && !has_lex) rc = no_lexical(r, NULL);
    uint32_t depth = side_depth(mode, k);
    if (!rc) rc = rtr_encoder_new(tok, &enc);
    if (!rc) rc = rtr_encoder_encode(enc, (const uint8_t *)query, len, &ids);
    size_t nq = (ids.len + RTR_CHUNK_TOKENS - 1) / RTR_CHUNK_TOKENS;
    if (!rc && nq == 0) rc = rtr_seterr(RTR_E_INVALID, "empty query");
    if (!rc && so->n_exclude) {
        if (!(ex = rtr_malloc(so->n_exclude * sizeof *ex))) rc = RTR_E_NOMEM;
        else {
            memcpy(ex, so->exclude_docs, so->n_exclude * sizeof *ex);
            qsort(ex, so->n_exclude, sizeof *ex, rtr_cmp_u64);
        }
    }
    if (!rc && mode != RTR_SEARCH_LEXICAL) {   /* the vector side's results for each query chunk */
        uint32_t dim = r->dim;
        texts = rtr_calloc(nq, sizeof *texts);
        run = rtr_malloc(nq * sizeof *run);
        run_len = rtr_malloc(nq * sizeof *run_len);
        q = rtr_malloc(nq * dim * sizeof *q);
        dist = rtr_malloc(nq * depth * sizeof *dist);
        hid = rtr_malloc(nq * depth * sizeof *hid);
        qw = rtr_malloc(nq * sizeof *qw);
        if (!texts || !run || !run_len || !q || !dist || !hid || !qw) rc = RTR_E_NOMEM;
        for (size_t c = 0; c < nq && !rc; c++) {   /* each query chunk's exact text */
            size_t lo = c * RTR_CHUNK_TOKENS;
            run[c] = ids.data + lo;
            run_len[c] = (uint32_t)(ids.len - lo < RTR_CHUNK_TOKENS ? ids.len - lo : RTR_CHUNK_TOKENS);
        }
        if (!rc) rc = decode_embed(r, r->embedder, run, run_len, nq, &text, texts, q);
        if (!rc) query_chunk_weights(texts, nq, qw);
        if (!rc)
            rc = search_filtered(r, t, mode == RTR_SEARCH_HYBRID ? SEARCH_FEW : SEARCH_PLAIN, nq, q, depth, NULL, 0, ex,
                                 so->n_exclude, hid, dist, NULL);
    }
    doc_filter f = {0, 0, ex, so->n_exclude};
    rtr_lex_query *lq = NULL;
    if (!rc && mode != RTR_SEARCH_VECTOR) rc = rtr_lex_query_new_with(t, query, len, so->lex_stats, &lq);
    if (!rc && mode == RTR_SEARCH_HYBRID) rc = rtr_lex_query_texts(lq, tok);   /* candidates scored from their text */
    float *qf = NULL;   /* hybrid: the query chunks in the full space */
    if (!rc && mode == RTR_SEARCH_HYBRID && full_embedder(r) != r->embedder) {
        if (!(qf = rtr_malloc(nq * full_embedder(r)->dim * sizeof *qf))) rc = RTR_E_NOMEM;
        else rc = embed_texts(r, full_embedder(r), texts, nq, qf);
    }
    query_ctx qc = {r, t, lq, qf ? qf : q, qw, nq};
    if (!rc) rc = rank_query(&qc, mode, hid, dist, depth, &f, &ranked, &nr);
    rtr_lex_query_free(lq);
    rtr_free(qf);
    int all = so->candidates && mode == RTR_SEARCH_HYBRID;   /* every candidate, ids and scores */
    size_t n = all || nr < k ? nr : k;
    if (!rc && n && !(out->items = rtr_calloc(n, sizeof *out->items))) rc = RTR_E_NOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        rtr_hit *h = &out->items[i];
        *h = ranked[i];   /* the ranking's fields; the chunk's follow */
        if (!all) rc = fill_hit(t, tok, ranked[i].chunk_id, ranked[i].distance, ranked[i].query_chunk, so->continuation, h);
        out->n = i + 1;
    }
    out->query_chunks = (uint32_t)nq;
    out->query_tokens = (uint32_t)ids.len;
    if (rc) rtr_hits_free(out);
    rtr_store_txn_end(t);
    rtr_encoder_free(enc);
    rtr_u32vec_free(&ids);
    rtr_buf_free(&text);
    rtr_free(texts);
    rtr_free(run);
    rtr_free(run_len);
    rtr_free(q);
    rtr_free(dist);
    rtr_free(hid);
    rtr_free(qw);
    rtr_free(ex);
    rtr_free(ranked);
    return rc;
}

/* --- neighbours for the model ------------------------------------------------------ */
#define WIN (4 * RTR_CHUNK_TOKENS)   /* the chunk before the neighbour, the neighbour, and the two after it */

/* Tokens of a query chunk: those before its first -1, at most RTR_CHUNK_TOKENS. */
static uint32_t query_len(const int32_t *q) {
    uint32_t n = 0;
    while (n < RTR_CHUNK_TOKENS && q[n] >= 0) n++;
    return n;
}

/* w (WIN): chunks c0-1 .. c0+2 of c0's document, -1 where there is none;
 * c0 has been read. Reads the continuation c0+1 always, c0-1 and c0+2 only
 * when wide (alignment). */
static int read_window(rtr_store_txn *t, const rtr_chunk *c0, int wide, int32_t *w) {
    for (int i = 0; i < WIN; i++) w[i] = -1;
    for (int j = wide ? -1 : 0; j <= (wide ? 2 : 1); j++) {
        rtr_chunk c;
        const rtr_chunk *cp = j == 0 ? c0 : &c;
        if (j < 0 && c0->seq == 0) continue;
        if (j != 0) {
            int rc = rtr_store_get_chunk(t, c0->id + (uint64_t)(int64_t)j, &c);
            if (rc == RTR_E_NOTFOUND) continue;
            if (rc) return rc;
        }
        if (cp->doc_id != c0->doc_id || cp->seq != c0->seq + (uint32_t)j) continue;
        for (uint32_t i = 0; i < cp->n_tokens; i++) w[(j + 1) * RTR_CHUNK_TOKENS + (int)i] = (int32_t)cp->tokens[i];
        if (j >= 0 && (cp->flags & RTR_CHUNK_LAST)) break;
    }
    return RTR_OK;
}

/* The shift of the longest run of q (nq) equal to w[RTR_CHUNK_TOKENS + d + j] (see rtr_retriever_neighbours). */
static int best_shift(const int32_t *q, uint32_t nq, const int32_t *w, uint32_t min_run) {
    int best_d = 0, best_len = 0, best_end = 0, at0 = 0;
    for (int d = -(RTR_CHUNK_TOKENS - 1); d < RTR_CHUNK_TOKENS; d++) {
        int run = 0;
        for (int j = 0; j < (int)nq; j++) {
            int32_t x = w[RTR_CHUNK_TOKENS + d + j];
            run = x >= 0 && x == q[j] ? run + 1 : 0;
            if (!run) continue;
            if (d == 0 && run > at0) at0 = run;
            if (run > best_len || (run == best_len && (j > best_end || (j == best_end && abs(d) < abs(best_d))))) {
                best_len = run;
                best_end = j;
                best_d = d;
            }
        }
    }
    return best_len >= (int)min_run && best_len > at0 ? best_d : 0;
}

/* Fills neighbour i's outputs from its chunk record c. */
static int put_neighbour(rtr_store_txn *t, const rtr_chunk *c, const int32_t *q, uint32_t nq, uint32_t align,
                         const rtr_nbrs *out, size_t i) {
    int32_t w[WIN];
    int rc = read_window(t, c, align > 0, w);
    if (rc) return rc;
    if (out->tokens) memcpy(out->tokens + i * RTR_NBR_TOKENS, w + RTR_CHUNK_TOKENS, RTR_NBR_TOKENS * sizeof *w);
    if (!align) return RTR_OK;
    int d = best_shift(q, nq, w, align);
    if (out->aligned) memcpy(out->aligned + i * RTR_NBR_TOKENS, w + RTR_CHUNK_TOKENS + d, RTR_NBR_TOKENS * sizeof *w);
    if (out->shifts) out->shifts[i] = d;
    return RTR_OK;
}

/* Lexical or hybrid neighbours of m query chunks (texts qt, embeddings q: m x dim): each query's
 * ranking as a search ranks a chunk of text (rank_query; hybrid's vector side searched for all m at
 * once), outside its filter (self_doc[i] may be NULL, o's exclusions), its top k kept (ids, kept:
 * m x k, -1 past the end). dist (m x k) is the squared L2 distance between the query's embedding and
 * its neighbour's text embedded, as the vector side measures it; +inf where none. */
static int ranked_neighbours(rtr_retriever *r, rtr_store_txn *t, int mode, int batch, size_t m, uint32_t k, const float *q,
                             const rtr_text *qt, const uint64_t *self_doc, const rtr_nbr_opts *o, int64_t *ids,
                             float *dist, rtr_chunk *kept) {
    uint32_t depth = side_depth(mode, k), dim = r->dim;
    size_t mk = m * k, np = 0;
    const uint32_t **run = rtr_malloc(mk * sizeof *run);
    uint32_t *len = rtr_malloc(mk * sizeof *len);
    size_t *pair = rtr_malloc(mk * sizeof *pair);   /* which (query, neighbour) each embedded text is */
    rtr_text *texts = rtr_malloc(mk * sizeof *texts);
    float *v = rtr_malloc(mk * dim * sizeof *v);
    int64_t *vid = mode == RTR_SEARCH_HYBRID ? rtr_malloc(m * depth * sizeof *vid) : NULL;
    float *vd = mode == RTR_SEARCH_HYBRID ? rtr_malloc(m * depth * sizeof *vd) : NULL;
    rtr_buf text = {0};
    int rc = run && len && pair && texts && v && (mode != RTR_SEARCH_HYBRID || (vid && vd)) ? RTR_OK : RTR_E_NOMEM;
    float *qf = NULL;   /* hybrid: the queries in the full space */
    if (!rc && vid)
        rc = search_filtered(r, t, batch ? SEARCH_BATCH : SEARCH_FEW, m, q, depth, self_doc, o->exclude_doc, o->exclude,
                             o->n_exclude, vid, vd, NULL);
    if (!rc && vid && full_embedder(r) != r->embedder) {
        if (!(qf = rtr_malloc(m * full_embedder(r)->dim * sizeof *qf))) rc = RTR_E_NOMEM;
        else rc = embed_texts(r, full_embedder(r), qt, m, qf);
    }
    for (size_t i = 0; i < m && !rc; i++) {
        doc_filter f = {self_doc ? self_doc[i] : 0, o->exclude_doc, o->exclude, o->n_exclude};
        rtr_hit *h;
        size_t nh;
        rtr_lex_query *lq;
        h = NULL;
        nh = 0;
        if ((rc = rtr_lex_query_new(t, qt[i].data, qt[i].len, &lq))) break;
        if (mode == RTR_SEARCH_HYBRID && (rc = rtr_lex_query_texts(lq, rtr_kb_tokenizer(r->kb)))) {
            rtr_lex_query_free(lq);
            break;
        }
        query_ctx qc = {r, t, lq, qf ? qf + i * full_embedder(r)->dim : q + i * dim, NULL, 1};
        rc = rank_query(&qc, mode, vid ? vid + i * depth : NULL, vd ? vd + i * depth : NULL, depth, &f, &h, &nh);
        rtr_lex_query_free(lq);
        for (uint32_t j = 0; j < k && !rc; j++) {
            size_t at = i * k + j;
            ids[at] = -1;
            dist[at] = INFINITY;
            if (j >= nh || (rc = rtr_store_get_chunk(t, h[j].chunk_id, &kept[at]))) continue;
            ids[at] = (int64_t)h[j].chunk_id;
            run[np] = kept[at].tokens;
            len[np] = kept[at].n_tokens;
            pair[np++] = at;
        }
        rtr_free(h);
    }
    if (!rc && np) rc = decode_embed(r, r->embedder, run, len, np, &text, texts, v);
    for (size_t p = 0; !rc && p < np; p++) dist[pair[p]] = rtr_l2sq(q + pair[p] / k * dim, v + p * dim, dim);
    rtr_buf_free(&text);
    rtr_free(run);
    rtr_free(len);
    rtr_free(pair);
    rtr_free(texts);
    rtr_free(v);
    rtr_free(vid);
    rtr_free(vd);
    rtr_free(qf);
    return rc;
}

#define ROUND_PAIRS 16384   /* (query, neighbour) pairs a round of rtr_retriever_neighbours holds */

/* The vector index's batch codes, made (or remade after a change) by the first batch lookup. */
static int batch_codes(rtr_retriever *r) {
    rtr_vindex *vx;
    int rc = vector_index(r, &vx);
    if (rc) return rc;
    pthread_mutex_lock(&r->lock);
    rc = rtr_vindex_batch_prepare(vx);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int rtr_retriever_neighbours(rtr_retriever *r, const int32_t *chunks, size_t n, const rtr_nbr_opts *o,
                             const rtr_nbrs *out) {
    uint32_t k = o->k;
    if (k == 0 || k > MAX_K) return rtr_seterr(RTR_E_INVALID, "k must be 1..%d", MAX_K);
    if (o->mode < RTR_SEARCH_DEFAULT || o->mode > RTR_SEARCH_HYBRID)
        return rtr_seterr(RTR_E_INVALID, "neighbours: retriever %d is not vector, lexical or hybrid", o->mode);
    int mode = o->mode == RTR_SEARCH_DEFAULT ? RTR_SEARCH_VECTOR : o->mode;
    if (!o->align && (out->aligned || out->shifts))
        return rtr_seterr(RTR_E_INVALID, "aligned neighbours need a minimum run (align > 0)");
    for (size_t i = 1; i < o->n_exclude; i++)
        if (o->exclude[i - 1] > o->exclude[i]) return rtr_seterr(RTR_E_INVALID, "exclude list must be sorted");
    if (n == 0) return RTR_OK;
    uint32_t dim = r->dim;
    size_t B = n < 4096 ? n : 4096;   /* queries per round (buffers sized for no more) */
    if (B * k > ROUND_PAIRS) B = ROUND_PAIRS / k ? ROUND_PAIRS / k : 1;
    rtr_text *texts = rtr_calloc(B, sizeof *texts);
    const uint32_t **run = rtr_malloc(B * sizeof *run);
    uint32_t *nt = rtr_malloc(B * sizeof *nt);
    float *q = rtr_malloc(B * dim * sizeof *q), *d = out->dist ? NULL : rtr_malloc(B * k * sizeof *d);
    rtr_chunk *kept = rtr_malloc(B * k * sizeof *kept);
    rtr_buf text = {0};
    rtr_store_txn *t = NULL;
    int rc = texts && run && nt && q && kept && (out->dist || d) ? RTR_OK : RTR_E_NOMEM;
    if (!rc) rc = rtr_store_read_begin(rtr_kb_store(r->kb), &t);
    if (!rc && mode != RTR_SEARCH_VECTOR && !has_lexical(t))
        rc = no_lexical(r, mode == RTR_SEARCH_LEXICAL ? "lexical neighbours" : "hybrid neighbours");
    int batch = n >= RTR_NBR_BATCH && r->batch_nprobe >= 0 && mode != RTR_SEARCH_LEXICAL;
    if (!rc && batch) rc = batch_codes(r);
    for (size_t lo = 0; lo < n && !rc; lo += B) {
        size_t m = n - lo < B ? n - lo : B;
        for (size_t i = 0; i < m && !rc; i++) {
            const int32_t *qc = chunks + (lo + i) * RTR_CHUNK_TOKENS;
            nt[i] = query_len(qc);
            run[i] = (const uint32_t *)qc;   /* the tokens before the first -1 */
            if (nt[i] == 0) rc = rtr_seterr(RTR_E_INVALID, "query chunk %zu has no tokens", lo + i);
        }
        if (rc || (rc = decode_embed(r, r->embedder, run, nt, m, &text, texts, q))) break;
        int64_t *ids = out->ids + lo * k;
        float *dist = out->dist ? out->dist + lo * k : d;
        const uint64_t *self = o->self_doc ? o->self_doc + lo : NULL;
        if (mode == RTR_SEARCH_VECTOR)
            rc = search_filtered(r, t, batch ? SEARCH_BATCH : SEARCH_PLAIN, m, q, k, self, o->exclude_doc, o->exclude,
                                 o->n_exclude, ids, dist, kept);
        else
            rc = ranked_neighbours(r, t, mode, batch, m, k, q, texts, self, o, ids, dist, kept);
        if (rc) break;
        if (!out->tokens && !out->aligned && !out->shifts) continue;
        for (size_t i = 0; i < m * k && !rc; i++) {
            size_t at = lo * k + i;
            if (ids[i] < 0) {
                if (out->tokens) for (int j = 0; j < RTR_NBR_TOKENS; j++) out->tokens[at * RTR_NBR_TOKENS + j] = -1;
                if (out->aligned) for (int j = 0; j < RTR_NBR_TOKENS; j++) out->aligned[at * RTR_NBR_TOKENS + j] = -1;
                if (out->shifts) out->shifts[at] = 0;
                continue;
            }
            rc = put_neighbour(t, &kept[i], chunks + (lo + i / k) * RTR_CHUNK_TOKENS, nt[i / k], o->align, out, at);
        }
    }
    rtr_store_txn_end(t);
    rtr_buf_free(&text);
    rtr_free(texts);
    rtr_free(run);
    rtr_free(nt);
    rtr_free(q);
    rtr_free(d);
    rtr_free(kept);
    return rc;
}

int rtr_retriever_align(rtr_retriever *r, const int32_t *chunks, size_t n, uint32_t k, const int64_t *ids,
                        uint32_t min_run, int32_t *tokens, int32_t *shifts) {
    if (min_run < 1) return rtr_seterr(RTR_E_INVALID, "alignment: min_run must be at least 1");
    rtr_store_txn *t = NULL;
    int rc = rtr_store_read_begin(rtr_kb_store(r->kb), &t);
    rtr_nbrs out = {.aligned = tokens, .shifts = shifts};
    for (size_t i = 0; !rc && i < n * k; i++) {
        if (shifts) shifts[i] = 0;
        if (ids[i] < 0) continue;
        rtr_chunk c;
        if ((rc = rtr_store_get_chunk(t, (uint64_t)ids[i], &c))) break;
        rc = put_neighbour(t, &c, chunks + i / k * RTR_CHUNK_TOKENS, query_len(chunks + i / k * RTR_CHUNK_TOKENS), min_run, &out, i);
    }
    rtr_store_txn_end(t);
    return rc;
}
