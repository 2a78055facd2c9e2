/* live.c - retrieval for a model's sessions and evaluation, with a report of the sources (see live.h). */
#include "retriever/live.h"

#include <math.h>
#include <string.h>

#include "index/kb.h"
#include "index/store.h"
#include "lib/alloc.h"
#include "lib/status.h"
#include "retriever/multi.h"


/* Looks up each neighbour's source and hands the list to l->report. */
/* A read transaction of the store that holds neighbour id (of partition p under a multi), begun once
 * per report among ts (nts of them, partitions tps): the hits' strings point into them until the
 * report is made. NULL where this process does not hold the partition. */
static rtr_store_txn *txn_for(const rtr_live *l, uint32_t p, rtr_store_txn **ts, uint32_t *tps, int *nts) {
    for (int i = 0; i < *nts; i++)
        if (tps[i] == p) return ts[i];
    rtr_kb *kb = l->m ? rtr_parts_kb(rtr_multi_parts(l->m), p) : rtr_retriever_kb(l->r);
    rtr_store_txn *t = NULL;
    if (!kb || rtr_store_read_begin(rtr_kb_store(kb), &t)) return NULL;   /* another rank's: not read here */
    ts[*nts] = t, tps[(*nts)++] = p;
    return t;
}

/* Looks up each neighbour's source and hands the list to l->report. */
static void report(rtr_live *l, int64_t chunk, const int64_t *ids, const float *dist, const int32_t *tok) {
    rtr_live_hit hits[64];
    rtr_store_txn *ts[64];
    uint32_t tps[64], k = l->k < 64 ? l->k : 64;
    int nts = 0;
    memset(hits, 0, sizeof hits);
    for (uint32_t j = 0; j < k; j++) {
        rtr_live_hit *h = &hits[j];
        h->chunk_id = -1;
        h->tokens = tok + (size_t)j * RTR_NBR_TOKENS;
        if (ids[j] < 0) continue;
        uint32_t p = l->m ? rtr_part_of_id((uint64_t)ids[j]) : 0;
        uint64_t local = l->m ? rtr_part_local((uint64_t)ids[j]) : (uint64_t)ids[j];
        rtr_store_txn *t = txn_for(l, p, ts, tps, &nts);
        rtr_chunk c;
        rtr_doc d;
        if (!t || rtr_store_get_chunk(t, local, &c) || rtr_store_get_doc(t, c.doc_id, &d)) continue;
        h->chunk_id = ids[j];
        h->doc_id = l->m ? rtr_part_id(p, c.doc_id) : c.doc_id;
        h->distance = dist[j];
        h->score = 1 - dist[j] / 2;
        h->withheld = h->score < l->min_score;
        h->path = d.path;
        h->path_len = d.path_len;
        h->byte_start = c.byte_start;
        h->byte_end = c.byte_end;
    }
    l->report(l->report_ctx, chunk, hits, k);
    for (int i = 0; i < nts; i++) rtr_store_txn_end(ts[i]);
}

/* Neighbours scoring below min_score become -1 throughout. */
static void withhold(int32_t *tok, const float *s, size_t nk, float min_score) {
    for (size_t i = 0; i < nk; i++)
        if (s[i] < min_score)
            for (int t = 0; t < RTR_NBR_TOKENS; t++) tok[i * RTR_NBR_TOKENS + t] = -1;
}

/* The neighbours of n chunks, chunk i for live ls[i] (index first[i] in its stream): lives that
 * agree on everything but exclude_doc (the retriever, k, mode, exclusion list, threshold), which
 * rtr_live_retrieve_many checks, in one rtr_retriever_neighbours call. */
static int retrieve_lives(rtr_live *const *ls, const int32_t *chunks, int n, const int64_t *first, int32_t *nbr,
                          float *score, int32_t *aligned, uint32_t align_run) {
    rtr_live *l = ls[0];
    size_t nk = (size_t)n * l->k;
    int64_t *ids = rtr_malloc(nk * sizeof *ids);
    float *dist = rtr_malloc(nk * sizeof *dist), *s = rtr_malloc(nk * sizeof *s);
    int32_t *paper = nbr ? nbr : rtr_malloc(nk * RTR_NBR_TOKENS * sizeof *paper);
    int same = 1;   /* one document excluded for all */
    for (int i = 1; i < n; i++) same &= ls[i]->exclude_doc == l->exclude_doc;
    uint64_t *self = same ? NULL : rtr_malloc((size_t)n * sizeof *self);
    int rc = ids && dist && s && paper && (same || self) ? RTR_OK : rtr_seterr(RTR_E_NOMEM, "retrieval: out of memory");
    for (int i = 0; self && i < n; i++) self[i] = ls[i]->exclude_doc;
    rtr_nbr_opts o = {.k = l->k, .exclude_doc = same ? l->exclude_doc : 0, .self_doc = self, .exclude = l->exclude,
                      .n_exclude = l->n_exclude, .align = aligned ? align_run : 0, .mode = l->mode};
    rtr_nbrs out = {.ids = ids, .dist = dist, .tokens = paper, .aligned = aligned};
    if (!rc) rc = l->m ? rtr_multi_neighbours(l->m, chunks, (size_t)n, &o, &out)
                       : rtr_retriever_neighbours(l->r, chunks, (size_t)n, &o, &out);
    for (size_t i = 0; !rc && i < nk; i++) {
        s[i] = ids[i] < 0 ? NAN : 1 - dist[i] / 2;
        if (score) score[i] = s[i];
    }
    if (!rc) withhold(paper, s, nk, l->min_score);
    if (!rc && aligned) withhold(aligned, s, nk, l->min_score);
    for (int i = 0; !rc && i < n; i++)
        if (ls[i]->report)
            report(ls[i], first[i], ids + (size_t)i * l->k, dist + (size_t)i * l->k,
                   paper + (size_t)i * l->k * RTR_NBR_TOKENS);
    rtr_free(ids);
    rtr_free(dist);
    rtr_free(s);
    rtr_free(self);
    if (paper != nbr) rtr_free(paper);
    return rc;
}

int rtr_live_follow(rtr_live *l, uint32_t align_run) {
    int64_t id;
    float d;
    int32_t t[RTR_NBR_TOKENS];
    rtr_nbr_opts o = {.k = l->k, .exclude = l->exclude, .n_exclude = l->n_exclude, .align = align_run, .mode = l->mode};
    rtr_nbrs out = {.ids = &id, .dist = &d, .tokens = t, .aligned = align_run ? t : NULL};
    return l->m ? rtr_multi_neighbours(l->m, NULL, 0, &o, &out) : RTR_OK;
}

int rtr_live_retrieve(void *ctx, const int32_t *chunks, int n, int64_t first, int32_t *nbr) {
    rtr_live *l = ctx;
    return rtr_live_retrieve_scored(l, chunks, n, first, l->align ? NULL : nbr, NULL, l->align ? nbr : NULL, l->align);
}

int rtr_live_retrieve_scored(rtr_live *l, const int32_t *chunks, int n, int64_t first, int32_t *nbr, float *score,
                             int32_t *aligned, uint32_t align_run) {
    if (n <= 0) return RTR_OK;
    rtr_live **ls = rtr_malloc((size_t)n * sizeof *ls);
    int64_t *at = rtr_malloc((size_t)n * sizeof *at);
    if (!ls || !at) {
        rtr_free(ls);
        rtr_free(at);
        return rtr_seterr(RTR_E_NOMEM, "retrieval: out of memory");
    }
    for (int i = 0; i < n; i++) {
        ls[i] = l;
        at[i] = first + i;
    }
    int rc = retrieve_lives(ls, chunks, n, at, nbr, score, aligned, align_run);
    rtr_free(ls);
    rtr_free(at);
    return rc;
}

/* 1 when b retrieves as a does, but for the one document each excludes. */
static int alike(const rtr_live *a, const rtr_live *b) {
    return a->r == b->r && a->m == b->m && a->k == b->k && a->mode == b->mode && a->align == b->align &&
           a->n_exclude == b->n_exclude && (a->exclude == b->exclude || a->n_exclude == 0 ||
           !memcmp(a->exclude, b->exclude, a->n_exclude * sizeof *a->exclude)) &&
           (a->min_score == b->min_score || (isnan(a->min_score) && isnan(b->min_score)));
}

int rtr_live_retrieve_many(void *const *ctx, const int32_t *chunks, int n, const int64_t *first, int32_t *nbr) {
    rtr_live *const *ls = (rtr_live *const *)ctx;
    int together = n > 0;
    for (int i = 1; i < n && together; i++) together = alike(ls[0], ls[i]);
    if (together) return retrieve_lives(ls, chunks, n, first, ls[0]->align ? NULL : nbr, NULL, ls[0]->align ? nbr : NULL,
                                        ls[0]->align);
    int rc = RTR_OK;
    for (int i = 0; i < n && !rc; i++)
        rc = rtr_live_retrieve(ls[i], chunks + (size_t)i * RTR_CHUNK_TOKENS, 1, first[i],
                               nbr + (size_t)i * ls[i]->k * RTR_NBR_TOKENS);
    return rc;
}
