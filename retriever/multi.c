/* multi.c - searching every partition of a knowledge base on the ranks of a job (see multi.h). */
#include "retriever/multi.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/le.h"
#include "lib/status.h"

#define MAX_EXCLUDE 65536

struct rtr_multi {
    rtr_parts *ps;
    rtr_retriever **rs;   /* (count) NULL where another rank's */
};

int rtr_multi_open(rtr_parts *ps, const rtr_retriever_opts *o, rtr_multi **out) {
    *out = NULL;
    uint32_t P = rtr_parts_count(ps);
    rtr_multi *m = rtr_calloc(1, sizeof *m);
    int rc = m && (m->rs = rtr_calloc(P, sizeof *m->rs)) ? RTR_OK : RTR_E_NOMEM;
    if (m) m->ps = ps;
    for (uint32_t p = 0; p < P && !rc; p++)
        if (rtr_parts_kb(ps, p)) rc = rtr_retriever_open(rtr_parts_kb(ps, p), o, &m->rs[p]);
    rc = rtr_comm_agree(rtr_parts_comm(ps), rc);
    if (rc) {
        rtr_multi_close(m);
        return rc;
    }
    *out = m;
    return RTR_OK;
}

rtr_parts *rtr_multi_parts(rtr_multi *m) { return m->ps; }

void rtr_multi_close(rtr_multi *m) {
    if (!m) return;
    for (uint32_t p = 0; m->rs && p < rtr_parts_count(m->ps); p++) rtr_retriever_close(m->rs[p]);
    rtr_free(m->rs);
    rtr_free(m);
}

/* --- hits as bytes -------------------------------------------------------------------------------
 * u32 query_chunks, u32 query_tokens, u32 n, then n hits: u64 chunk_id, doc_id, byte_start, byte_end;
 * f32 distance, score, vector_score, lexical_score; u32 query_chunk, seq, found_by, vector_rank,
 * lexical_rank; four strings path, title, text, continuation, each u32 length (0xffffffff: NULL) and
 * its bytes. Little-endian. */
#define HIT_FIXED (4 * 8 + 4 * 4 + 5 * 4)
#define NO_STR 0xffffffffu

static int put_u32(rtr_buf *b, uint32_t v) {
    uint8_t x[4];
    rtr_put_le32(x, v);
    return rtr_buf_append(b, x, 4);
}

static int put_str(rtr_buf *b, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n >= NO_STR) return rtr_seterr(RTR_E_INVALID, "a hit's text of %zu bytes", n);
    int rc = put_u32(b, s ? (uint32_t)n : NO_STR);
    return rc || !n ? rc : rtr_buf_append(b, s, n);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int rtr_hits_pack(const rtr_hits *h, rtr_buf *out) {
    if (h->n > UINT32_MAX) return rtr_seterr(RTR_E_INVALID, "%zu hits", h->n);
    int rc = put_u32(out, h->query_chunks);
    if (!rc) rc = put_u32(out, h->query_tokens);
    if (!rc) rc = put_u32(out, (uint32_t)h->n);
    for (size_t i = 0; i < h->n && !rc; i++) {
        const rtr_hit *x = &h->items[i];
        uint8_t f[HIT_FIXED], *p = f;
        uint64_t u64[4] = {x->chunk_id, x->doc_id, x->byte_start, x->byte_end};
        uint32_t u32[9] = {f32_bits(x->distance), f32_bits(x->score),  f32_bits(x->vector_score),
                           f32_bits(x->lexical_score), x->query_chunk, x->seq, x->found_by, x->vector_rank,
                           x->lexical_rank};
        for (int j = 0; j < 4; j++, p += 8) rtr_put_le64(p, u64[j]);
        for (int j = 0; j < 9; j++, p += 4) rtr_put_le32(p, u32[j]);
        rc = rtr_buf_append(out, f, sizeof f);
        if (!rc) rc = put_str(out, x->path ? x->path : "");   /* a candidate without its chunk: empty */
        if (!rc) rc = put_str(out, x->title ? x->title : "");
        if (!rc) rc = put_str(out, x->text ? x->text : "");
        if (!rc) rc = put_str(out, x->continuation);
    }
    return rc;
}

/* A string at *at of data (len): a fresh copy, or NULL for NO_STR (allowed where null_ok). */
static int get_str(const uint8_t *data, size_t len, size_t *at, int null_ok, const char *what, char **out) {
    *out = NULL;
    if (len - *at < 4) return rtr_seterr(RTR_E_CORRUPT, "%s: truncated hit", what);
    uint32_t n = rtr_get_le32(data + *at);
    *at += 4;
    if (n == NO_STR) return null_ok ? RTR_OK : rtr_seterr(RTR_E_CORRUPT, "%s: a hit without text", what);
    if (len - *at < n) return rtr_seterr(RTR_E_CORRUPT, "%s: a hit's string of %u bytes, %zu left", what, n, len - *at);
    if (!(*out = rtr_strndup((const char *)data + *at, n))) return RTR_E_NOMEM;
    *at += n;
    return RTR_OK;
}

int rtr_hits_unpack(const uint8_t *data, size_t len, const char *what, rtr_hits *h, size_t *used) {
    if (len < 12) return rtr_seterr(RTR_E_CORRUPT, "%s: %zu bytes, not hits", what, len);
    h->query_chunks = rtr_get_le32(data);
    h->query_tokens = rtr_get_le32(data + 4);
    uint32_t n = rtr_get_le32(data + 8);
    size_t at = 12;
    /* each hit takes at least its fixed part and four lengths */
    if (n > (len - at) / (HIT_FIXED + 16)) return rtr_seterr(RTR_E_CORRUPT, "%s: %u hits in %zu bytes", what, n, len);
    rtr_hit *items = rtr_realloc(h->items, (h->n + n + 1) * sizeof *items);
    if (!items) return RTR_E_NOMEM;
    h->items = items;
    int rc = RTR_OK;
    for (uint32_t i = 0; i < n && !rc; i++) {
        rtr_hit *x = &h->items[h->n];
        memset(x, 0, sizeof *x);
        if (len - at < HIT_FIXED) { rc = rtr_seterr(RTR_E_CORRUPT, "%s: truncated hit", what); break; }
        const uint8_t *p = data + at;
        x->chunk_id = rtr_get_le64(p), x->doc_id = rtr_get_le64(p + 8);
        x->byte_start = rtr_get_le64(p + 16), x->byte_end = rtr_get_le64(p + 24);
        p += 32;
        x->distance = bits_f32(rtr_get_le32(p)), x->score = bits_f32(rtr_get_le32(p + 4));
        x->vector_score = bits_f32(rtr_get_le32(p + 8)), x->lexical_score = bits_f32(rtr_get_le32(p + 12));
        x->query_chunk = rtr_get_le32(p + 16), x->seq = rtr_get_le32(p + 20), x->found_by = rtr_get_le32(p + 24);
        x->vector_rank = rtr_get_le32(p + 28), x->lexical_rank = rtr_get_le32(p + 32);
        at += HIT_FIXED;
        h->n++;   /* from here the hit is h's: its strings are freed with h */
        if (!(rc = get_str(data, len, &at, 0, what, &x->path)) && !(rc = get_str(data, len, &at, 0, what, &x->title)) &&
            !(rc = get_str(data, len, &at, 0, what, &x->text)))
            rc = get_str(data, len, &at, 1, what, &x->continuation);
    }
    if (!rc && !used && at != len) rc = rtr_seterr(RTR_E_CORRUPT, "%s: %zu bytes after the hits", what, len - at);
    if (used) *used = at;
    return rc;
}

/* --- the search ---------------------------------------------------------------------------------- */
static int cmp_by_score(const void *a, const void *b) {
    const rtr_hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->chunk_id < y->chunk_id ? -1 : x->chunk_id > y->chunk_id;
}

/* Partition p's hits with the knowledge base's ids. */
static void globalize(rtr_hits *h, uint32_t p) {
    for (size_t i = 0; i < h->n; i++) {
        h->items[i].chunk_id = rtr_part_id(p, h->items[i].chunk_id);
        h->items[i].doc_id = rtr_part_id(p, h->items[i].doc_id);
    }
}

/* Moves src's hits to the end of dst (src's items emptied; its query counts copied). */
static int take_hits(rtr_hits *dst, rtr_hits *src) {
    rtr_hit *items = rtr_realloc(dst->items, (dst->n + src->n + 1) * sizeof *items);
    if (!items) return RTR_E_NOMEM;
    memcpy(items + dst->n, src->items, src->n * sizeof *items);
    dst->items = items;
    dst->n += src->n;
    dst->query_chunks = src->query_chunks, dst->query_tokens = src->query_tokens;
    src->n = 0;
    return RTR_OK;
}

/* The best k of all (n hits of every partition) in mode, ranks on a side renumbered over them all. */
static int merge(rtr_hits *all, int mode, uint32_t k) {
    int rc = RTR_OK;
    if (mode == RTR_SEARCH_HYBRID) {
        /* as one index would: each side's best depth of what it found over every partition (the scores
         * compare: one embedder, BM25 of the summed statistics), each scored by both sides, fused */
        if (!(rc = rtr_hits_keep_sides(all, rtr_retriever_side_depth(mode, k)))) rc = rtr_hits_fuse(all->items, all->n);
    } else {
        qsort(all->items, all->n, sizeof *all->items, cmp_by_score);
        for (size_t i = 0; i < all->n; i++) {
            if (mode == RTR_SEARCH_LEXICAL) all->items[i].lexical_rank = (uint32_t)i + 1;
            else all->items[i].vector_rank = (uint32_t)i + 1;
        }
    }
    for (size_t i = k; i < all->n; i++) rtr_hit_clear(&all->items[i]);   /* what falls past k */
    if (all->n > k) all->n = k;
    return rc;
}

/* The second phase of a hybrid search: rank 0 broadcasts the ids of its best k (hits, found without
 * their chunks), each rank reads those of its partitions (rtr_retriever_fill) and sends them back. A
 * collective. */
static int fetch_chunks(rtr_multi *m, rtr_hits *hits, int cont) {
    rtr_comm *c = rtr_parts_comm(m->ps);
    int rank0 = rtr_comm_rank(c) == 0;
    uint64_t n = rank0 ? hits->n : 0;
    int rc = rtr_comm_bcast(c, &n, sizeof n, 0);
    uint64_t *ids = rc ? NULL : rtr_calloc(n + 1, sizeof *ids);
    if (!rc && !ids) rc = RTR_E_NOMEM;
    for (size_t i = 0; rank0 && !rc && i < n; i++) ids[i] = hits->items[i].chunk_id;
    rc = rtr_comm_agree(c, rc);
    if (!rc) rc = rtr_comm_bcast(c, ids, n * sizeof *ids, 0);
    /* this rank's: read where they live */
    rtr_hits mine = {0};
    mine.items = rc ? NULL : rtr_calloc(n + 1, sizeof *mine.items);
    if (!rc && !mine.items) rc = RTR_E_NOMEM;
    for (uint32_t p = 0; p < rtr_parts_count(m->ps) && !rc; p++) {
        if (!m->rs[p]) continue;
        size_t from = mine.n;
        for (size_t i = 0; i < n; i++)
            if (rtr_part_of_id(ids[i]) == p) mine.items[mine.n++].chunk_id = rtr_part_local(ids[i]);
        if ((rc = rtr_retriever_fill(m->rs[p], mine.items + from, mine.n - from, cont))) break;
        globalize(&(rtr_hits){mine.items + from, mine.n - from, 0, 0}, p);
    }
    rtr_buf b = {0};
    if (!rc) rc = rtr_hits_pack(&mine, &b);
    rtr_hits_free(&mine);
    uint8_t *all;
    size_t *lens;
    rc = rtr_comm_gather_agreed(c, rc, b.data, b.len, 0, &all, &lens);
    if (!rc && rank0) {   /* each chunk's fields into its hit (the ranking's fields stay) */
        rtr_hits got = {0};
        size_t at = 0, total = 0;
        for (int r = 0; r < rtr_comm_size(c); r++) total += lens[r];
        while (!rc && at < total) {
            size_t used = 0;
            rc = rtr_hits_unpack(all + at, total - at, "a rank's chunks", &got, &used);
            at += used;
        }
        for (size_t i = 0; !rc && i < hits->n; i++) {
            rtr_hit *h = &hits->items[i], *g = NULL;
            for (size_t j = 0; j < got.n && !g; j++)
                if (got.items[j].chunk_id == h->chunk_id) g = &got.items[j];
            if (!g) {
                rc = rtr_seterr(RTR_E_NOTFOUND, "chunk %llu: no rank read it", (unsigned long long)h->chunk_id);
                break;
            }
            h->doc_id = g->doc_id, h->byte_start = g->byte_start, h->byte_end = g->byte_end, h->seq = g->seq;
            rtr_hit_clear(h);
            h->path = g->path, h->title = g->title, h->text = g->text, h->continuation = g->continuation;
            g->path = g->title = g->text = g->continuation = NULL;
        }
        rtr_hits_free(&got);
    }
    rtr_free(all);
    rtr_free(lens);
    rtr_free(ids);
    rtr_buf_free(&b);
    return rtr_comm_agree(c, rc);
}

/* BM25's statistics of every partition for the query q (a collective): each rank's partitions' counts,
 * summed over the ranks. A partition without a lexical index adds nothing (its search says so). */
static int lexical_stats(rtr_multi *m, const char *q, size_t qlen, rtr_lex_stats *s) {
    int rc = RTR_OK;
    rtr_store_txn *t = NULL;
    for (uint32_t p = 0; p < rtr_parts_count(m->ps) && !rc; p++) {
        if (!m->rs[p]) continue;
        if (!(rc = rtr_store_read_begin(rtr_kb_store(rtr_parts_kb(m->ps, p)), &t))) rc = rtr_lex_stats_add(t, q, qlen, s);
        rtr_store_txn_end(t);
        t = NULL;
    }
    if (!rc && !s->terms) rc = rtr_lex_stats_add(NULL, q, qlen, s);   /* a rank without partitions: the terms */
    rc = rtr_comm_agree(rtr_parts_comm(m->ps), rc);
    uint64_t *v = rc ? NULL : rtr_malloc((s->n + 2) * sizeof *v);
    if (!rc && !v) rc = RTR_E_NOMEM;
    rc = rtr_comm_agree(rtr_parts_comm(m->ps), rc);
    if (rc) {
        rtr_free(v);
        return rc;
    }
    v[0] = s->chunks, v[1] = s->words;
    memcpy(v + 2, s->df, s->n * sizeof *v);
    rc = rtr_comm_sum_u64(rtr_parts_comm(m->ps), v, s->n + 2);
    s->chunks = v[0], s->words = v[1];
    memcpy(s->df, v + 2, s->n * sizeof *v);
    rtr_free(v);
    return rc;
}

/* What rank 0 broadcasts: u32 op, u32 k, i32 mode, u32 continuation, u32 n_exclude, n_exclude u64
 * document ids, then the query's bytes. */
enum { OP_SEARCH = 1, OP_QUIT = 2 };   /* what rank 0 asks of a round */
#define REQ_HEAD 20

static int pack_request(uint32_t op, const char *query, size_t len, uint32_t k, int mode, const rtr_search_opts *so,
                        rtr_buf *b) {
    int rc = put_u32(b, op);
    if (!rc) rc = put_u32(b, k);
    if (!rc) rc = put_u32(b, (uint32_t)mode);
    if (!rc) rc = put_u32(b, (uint32_t)so->continuation);
    if (!rc) rc = put_u32(b, (uint32_t)so->n_exclude);
    for (size_t i = 0; i < so->n_exclude && !rc; i++) {
        uint8_t x[8];
        rtr_put_le64(x, so->exclude_docs[i]);
        rc = rtr_buf_append(b, x, 8);
    }
    if (!rc) rc = rtr_buf_append(b, query, len);
    return rc;
}

/* One round of rank 0's: a search (op OP_SEARCH: the arguments read on rank 0), or the followers let
 * go (OP_QUIT: *quit set on every rank). */
static int multi_round(rtr_multi *m, uint32_t op, const char *query, size_t len, uint32_t k, const rtr_search_opts *so,
                       rtr_hits *out, int *quit) {
    memset(out, 0, sizeof *out);
    *quit = 0;
    rtr_comm *c = rtr_parts_comm(m->ps);
    int rank0 = rtr_comm_rank(c) == 0;
    rtr_search_opts none = {0};
    if (!so) so = &none;
    if (!rtr_parts_split(m->ps))   /* one partition, on rank 0 */
        return rtr_comm_agree(c, rank0 ? rtr_retriever_search(m->rs[0], query, len, k, so, out) : RTR_OK);
    int rc = RTR_OK;
    rtr_buf req = {0}, mine_buf = {0};
    if (rank0) {
        int mode = so->mode ? so->mode : rtr_retriever_default_mode(m->rs[0]);   /* rank 0 has partition 0 */
        if (so->n_exclude > MAX_EXCLUDE) rc = rtr_seterr(RTR_E_INVALID, "search: at most %d excluded documents", MAX_EXCLUDE);
        if (!rc) rc = pack_request(op, query, len, k, mode, so, &req);
    }
    rc = rtr_comm_agree(c, rc);
    uint8_t *rq = req.data;
    size_t rq_len = req.len;
    if (!rc) rc = rtr_comm_bcast_bytes(c, &rq, &rq_len, 0);
    rc = rtr_comm_agree(c, rc);
    /* the request as every rank has it */
    uint32_t rk = 0, n_ex = 0;
    int mode = 0, cont = 0;
    uint64_t *ex = NULL;
    size_t n_local = 0;
    if (!rc) {
        RTR_ASSERT(rq_len >= REQ_HEAD);
        *quit = rtr_get_le32(rq) == OP_QUIT;
        rk = rtr_get_le32(rq + 4), mode = (int)rtr_get_le32(rq + 8), cont = (int)rtr_get_le32(rq + 12);
        n_ex = rtr_get_le32(rq + 16);
        RTR_ASSERT(n_ex <= MAX_EXCLUDE && rq_len >= REQ_HEAD + (size_t)n_ex * 8);
        if (!(ex = rtr_malloc(((size_t)n_ex + 1) * sizeof *ex))) rc = RTR_E_NOMEM;
    }
    if (*quit) {   /* nothing more: every rank returns */
        rtr_free(ex);
        if (!rank0) rtr_free(rq);
        rtr_buf_free(&req);
        return RTR_OK;
    }
    const char *q = rc ? NULL : (const char *)rq + REQ_HEAD + (size_t)n_ex * 8;
    size_t qlen = rc ? 0 : rq_len - REQ_HEAD - (size_t)n_ex * 8;
    rtr_lex_stats stats = {0};
    rtr_hits local = {0};   /* this rank's partitions' hits */
    if (!rc && mode != RTR_SEARCH_VECTOR) rc = lexical_stats(m, q, qlen, &stats);
    for (uint32_t p = 0; p < rtr_parts_count(m->ps) && !rc; p++) {
        if (!m->rs[p]) continue;
        n_local = 0;   /* the excluded documents of this partition, as its store numbers them */
        for (uint32_t i = 0; i < n_ex; i++) {
            uint64_t id = rtr_get_le64(rq + REQ_HEAD + (size_t)i * 8);
            if (rtr_part_of_id(id) == p) ex[n_local++] = rtr_part_local(id);
        }
        /* hybrid: every candidate of the partition, ids and scores, fused at rank 0 over all of them */
        rtr_search_opts po = {ex, n_local, cont, mode, mode != RTR_SEARCH_VECTOR ? &stats : NULL, mode == RTR_SEARCH_HYBRID};
        rtr_hits h;
        if (!(rc = rtr_retriever_search(m->rs[p], q, qlen, rk, &po, &h))) {
            globalize(&h, p);
            rc = take_hits(&local, &h);
        }
        rtr_hits_free(&h);
    }
    /* the best k of this rank's partitions are what it sends (the same best k at rank 0: scores order
     * vector and lexical hits wholly); hybrid sends every candidate without its text, fused at rank 0
     * over every partition, and the chunks of the best k are then read from their owners */
    if (!rc && mode != RTR_SEARCH_HYBRID) rc = merge(&local, mode, rk);
    if (!rc && mode == RTR_SEARCH_HYBRID) rc = rtr_hits_keep_sides(&local, rtr_retriever_side_depth(mode, rk));
    if (!rc && local.query_chunks) rc = rtr_hits_pack(&local, &mine_buf);
    rtr_hits_free(&local);
    /* rank 0 merges every rank's hits */
    uint8_t *all;
    size_t *lens;
    rc = rtr_comm_gather_agreed(c, rc, mine_buf.data, mine_buf.len, 0, &all, &lens);
    if (!rc && rank0) {
        size_t at = 0;
        for (int r = 0; r < rtr_comm_size(c) && !rc; r++) {
            /* a rank's buffer: its hits packed (none from a rank without partitions) */
            for (size_t end = at + lens[r]; at < end && !rc;) {
                size_t used = 0;
                rc = rtr_hits_unpack(all + at, end - at, "a rank's hits", out, &used);
                at += used;
            }
        }
        if (!rc) rc = merge(out, mode, rk);
    }
    rc = rtr_comm_agree(c, rc);
    if (!rc && mode == RTR_SEARCH_HYBRID) rc = fetch_chunks(m, out, cont);
    if (rc) rtr_hits_free(out);
    rtr_free(all);
    rtr_free(lens);
    rtr_free(ex);
    rtr_lex_stats_free(&stats);
    if (!rank0) rtr_free(rq);
    rtr_buf_free(&req);
    rtr_buf_free(&mine_buf);
    return rtr_comm_agree(c, rc);
}

int rtr_multi_search(rtr_multi *m, const char *query, size_t len, uint32_t k, const rtr_search_opts *so,
                     rtr_hits *out) {
    int quit;
    return multi_round(m, OP_SEARCH, query, len, k, so, out, &quit);
}

int rtr_multi_follow(rtr_multi *m) {
    rtr_comm *c = rtr_parts_comm(m->ps);
    if (rtr_comm_rank(c) == 0) return rtr_seterr(RTR_E_INVALID, "rank 0 leads the searches; the other ranks follow");
    if (!rtr_parts_split(m->ps)) return RTR_OK;   /* rank 0 searches the one partition alone */
    for (;;) {
        rtr_hits h;
        int quit, rc = multi_round(m, OP_SEARCH, NULL, 0, 0, NULL, &h, &quit);
        rtr_hits_free(&h);
        if (quit) return RTR_OK;
        if (rc == RTR_E_NET) return rc;   /* the job is broken; a search's own failure is rank 0's to report */
    }
}

int rtr_multi_release(rtr_multi *m) {
    rtr_comm *c = rtr_parts_comm(m->ps);
    if (rtr_comm_rank(c) != 0 || !rtr_parts_split(m->ps)) return RTR_OK;
    rtr_hits h;
    int quit;
    return multi_round(m, OP_QUIT, "", 0, 1, NULL, &h, &quit);
}

/* --- neighbours over partitions ------------------------------------------------------------------ */
/* One query's candidates, kept best first by (distance, id): the arrays of x at query i. */
static rtr_nbrs view_at(const rtr_nbrs *x, size_t i, uint32_t k) {
    size_t at = i * k;
    return (rtr_nbrs){x->ids + at, x->dist + at, x->tokens ? x->tokens + at * RTR_NBR_TOKENS : NULL,
                      x->aligned ? x->aligned + at * RTR_NBR_TOKENS : NULL, x->shifts ? x->shifts + at : NULL};
}

static int nbr_before(int64_t ia, float da, int64_t ib, float db) {
    if (ib < 0) return ia >= 0;
    if (ia < 0) return 0;
    if (da != db) return da < db;
    return ia < ib;
}

/* Merges candidate j of src into dst (both k long, best first): inserted where it belongs, the last
 * dropped. */
static void nbr_insert(rtr_nbrs *dst, const rtr_nbrs *src, uint32_t j, uint32_t k) {
    if (src->ids[j] < 0) return;
    uint32_t at = k;
    while (at > 0 && nbr_before(src->ids[j], src->dist[j], dst->ids[at - 1], dst->dist[at - 1])) at--;
    if (at == k) return;
    for (uint32_t i = k - 1; i > at; i--) {
        dst->ids[i] = dst->ids[i - 1], dst->dist[i] = dst->dist[i - 1];
        if (dst->tokens) memcpy(dst->tokens + (size_t)i * RTR_NBR_TOKENS, dst->tokens + (size_t)(i - 1) * RTR_NBR_TOKENS, RTR_NBR_TOKENS * 4);
        if (dst->aligned) memcpy(dst->aligned + (size_t)i * RTR_NBR_TOKENS, dst->aligned + (size_t)(i - 1) * RTR_NBR_TOKENS, RTR_NBR_TOKENS * 4);
        if (dst->shifts) dst->shifts[i] = dst->shifts[i - 1];
    }
    dst->ids[at] = src->ids[j], dst->dist[at] = src->dist[j];
    if (dst->tokens) memcpy(dst->tokens + (size_t)at * RTR_NBR_TOKENS, src->tokens + (size_t)j * RTR_NBR_TOKENS, RTR_NBR_TOKENS * 4);
    if (dst->aligned) memcpy(dst->aligned + (size_t)at * RTR_NBR_TOKENS, src->aligned + (size_t)j * RTR_NBR_TOKENS, RTR_NBR_TOKENS * 4);
    if (dst->shifts) dst->shifts[at] = src->shifts[j];
}

/* Arrays for n queries of k, with the fields that want asks for (dist always). */
static int nbr_alloc(rtr_nbrs *b, size_t n, uint32_t k, const rtr_nbrs *want) {
    size_t nk = n * k + 1;
    memset(b, 0, sizeof *b);
    b->ids = rtr_malloc(nk * sizeof *b->ids);
    b->dist = rtr_malloc(nk * sizeof *b->dist);
    if (want->tokens) b->tokens = rtr_malloc(nk * RTR_NBR_TOKENS * sizeof *b->tokens);
    if (want->aligned) b->aligned = rtr_malloc(nk * RTR_NBR_TOKENS * sizeof *b->aligned);
    if (want->shifts) b->shifts = rtr_malloc(nk * sizeof *b->shifts);
    if (!b->ids || !b->dist || (want->tokens && !b->tokens) || (want->aligned && !b->aligned) ||
        (want->shifts && !b->shifts))
        return RTR_E_NOMEM;
    for (size_t i = 0; i < n * k; i++) b->ids[i] = -1, b->dist[i] = INFINITY;   /* none yet, as the retriever */
    for (size_t i = 0; b->tokens && i < n * k * RTR_NBR_TOKENS; i++) b->tokens[i] = -1;   /* fills a missing one */
    for (size_t i = 0; b->aligned && i < n * k * RTR_NBR_TOKENS; i++) b->aligned[i] = -1;
    if (b->shifts) memset(b->shifts, 0, n * k * sizeof *b->shifts);
    return RTR_OK;
}

static void nbr_free(rtr_nbrs *b) {
    rtr_free(b->ids);
    rtr_free(b->dist);
    rtr_free(b->tokens);
    rtr_free(b->aligned);
    rtr_free(b->shifts);
}

/* Bytes of one query's k candidates in a gather: ids, distances, then what is asked for. */
static size_t nbr_bytes(uint32_t k, const rtr_nbrs *want) {
    return (size_t)k * (8 + 4 + (want->tokens ? RTR_NBR_TOKENS * 4 : 0) + (want->aligned ? RTR_NBR_TOKENS * 4 : 0) +
                        (want->shifts ? 4 : 0));
}

static void nbr_put(const rtr_nbrs *v, uint32_t k, rtr_buf *b) {   /* b has room (rtr_buf_reserve) */
    rtr_buf_append(b, v->ids, (size_t)k * 8);
    rtr_buf_append(b, v->dist, (size_t)k * 4);
    if (v->tokens) rtr_buf_append(b, v->tokens, (size_t)k * RTR_NBR_TOKENS * 4);
    if (v->aligned) rtr_buf_append(b, v->aligned, (size_t)k * RTR_NBR_TOKENS * 4);
    if (v->shifts) rtr_buf_append(b, v->shifts, (size_t)k * 4);
}

static rtr_nbrs nbr_get(uint8_t *p, uint32_t k, const rtr_nbrs *want) {   /* a view into gathered bytes */
    rtr_nbrs v = {(int64_t *)(void *)p, (float *)(void *)(p + (size_t)k * 8), NULL, NULL, NULL};
    p += (size_t)k * 12;
    if (want->tokens) v.tokens = (int32_t *)(void *)p, p += (size_t)k * RTR_NBR_TOKENS * 4;
    if (want->aligned) v.aligned = (int32_t *)(void *)p, p += (size_t)k * RTR_NBR_TOKENS * 4;
    if (want->shifts) v.shifts = (int32_t *)(void *)p;
    return v;
}

/* This rank's partitions' best k for each of the N queries q (self: their documents), in best. */
static int local_neighbours(rtr_multi *m, const int32_t *q, const uint64_t *self, size_t N, const rtr_nbr_opts *o,
                            const rtr_nbrs *want, rtr_nbrs *best) {
    uint32_t k = o->k;
    rtr_nbrs part = {0};
    uint64_t *pself = rtr_malloc((N + 1) * sizeof *pself), *pex = rtr_malloc((o->n_exclude + 1) * sizeof *pex);
    int rc = pself && pex ? nbr_alloc(&part, N, k, want) : RTR_E_NOMEM;
    for (uint32_t p = 0; p < rtr_parts_count(m->ps) && !rc; p++) {
        if (!m->rs[p]) continue;
        /* the documents named, as partition p's store numbers them (0: another partition's, or none) */
        for (size_t i = 0; i < N; i++) pself[i] = self && rtr_part_of_id(self[i]) == p ? rtr_part_local(self[i]) : 0;
        size_t nex = 0;
        for (size_t i = 0; i < o->n_exclude; i++)
            if (rtr_part_of_id(o->exclude[i]) == p) pex[nex++] = rtr_part_local(o->exclude[i]);
        rtr_nbr_opts po = *o;
        po.self_doc = self ? pself : NULL;
        po.exclude_doc = o->exclude_doc && rtr_part_of_id(o->exclude_doc) == p ? rtr_part_local(o->exclude_doc) : 0;
        po.exclude = pex, po.n_exclude = nex;
        if ((rc = rtr_retriever_neighbours(m->rs[p], q, N, &po, &part))) break;
        for (size_t i = 0; i < N; i++) {
            rtr_nbrs dst = view_at(best, i, k), src = view_at(&part, i, k);
            for (uint32_t j = 0; j < k; j++) {
                if (src.ids[j] >= 0) src.ids[j] = (int64_t)rtr_part_id(p, (uint64_t)src.ids[j]);
                nbr_insert(&dst, &src, j, k);
            }
        }
    }
    nbr_free(&part);
    rtr_free(pself);
    rtr_free(pex);
    return rc;
}

int rtr_multi_neighbours(rtr_multi *m, const int32_t *chunks, size_t n, const rtr_nbr_opts *o, const rtr_nbrs *out) {
    rtr_comm *c = rtr_parts_comm(m->ps);
    int size = rtr_comm_size(c), rank = rtr_comm_rank(c), rc = RTR_OK;
    uint32_t k = o->k;
    int mode = o->mode == RTR_SEARCH_DEFAULT ? RTR_SEARCH_VECTOR : o->mode;
    if (rtr_parts_split(m->ps) && mode != RTR_SEARCH_VECTOR)
        rc = rtr_seterr(RTR_E_INVALID, "%s: neighbours over partitions are the vector ones; %s neighbours are not merged "
                        "across partitions yet", rtr_parts_dir(m->ps), mode == RTR_SEARCH_LEXICAL ? "lexical" : "hybrid");
    if (!rc && (k == 0 || k > 4096)) rc = rtr_seterr(RTR_E_INVALID, "k must be 1..4096");
    if (!rc && !o->align && (out->aligned || out->shifts))
        rc = rtr_seterr(RTR_E_INVALID, "aligned neighbours need a minimum run (align > 0)");
    /* every rank's queries, in rank order: counts, then the chunks and their documents */
    uint64_t *cnt = rtr_calloc((size_t)size, sizeof *cnt);
    size_t *offs = rtr_calloc((size_t)size + 1, sizeof *offs);
    if (!rc && (!cnt || !offs)) rc = RTR_E_NOMEM;
    if (!rc) cnt[rank] = n;
    rc = rtr_comm_agree(c, rc);
    if (!rc) rc = rtr_comm_sum_u64(c, cnt, (size_t)size);
    size_t N = 0;
    for (int r = 0; !rc && r < size; r++) offs[r] = N, N += (size_t)cnt[r];
    if (offs) offs[size] = N;
    int32_t *q = rc ? NULL : rtr_malloc((N + 1) * RTR_CHUNK_TOKENS * sizeof *q);
    uint64_t *self = rc ? NULL : rtr_calloc(N + 1, sizeof *self);
    if (!rc && (!q || !self)) rc = RTR_E_NOMEM;
    /* each query's own document travels with it: the one document excluded for all of a rank's queries
     * too (another rank's call names another one) */
    int per_query = o->self_doc || o->exclude_doc;
    if (!rc) {
        memcpy(q + offs[rank] * RTR_CHUNK_TOKENS, chunks, n * RTR_CHUNK_TOKENS * sizeof *q);
        for (size_t i = 0; i < n; i++) self[offs[rank] + i] = o->self_doc ? o->self_doc[i] : o->exclude_doc;
    }
    uint64_t anyq = per_query;
    if (!rc) rc = rtr_comm_sum_u64(c, &anyq, 1);   /* some rank's queries name documents: all are sent */
    rc = rtr_comm_agree(c, rc);
    if (!rc) rc = rtr_comm_allgather_ranges(c, q, RTR_CHUNK_TOKENS * sizeof *q, offs);
    if (!rc) rc = rtr_comm_allgather_ranges(c, self, sizeof *self, offs);
    /* this rank's partitions' best for all of them */
    rtr_nbrs best = {0};
    if (!rc) rc = nbr_alloc(&best, N, k, out);
    rtr_nbr_opts g = *o;   /* the options for every rank's queries */
    if (!o->self_doc) g.exclude_doc = 0;   /* folded into self */
    if (!rc) rc = local_neighbours(m, q, anyq ? self : NULL, N, &g, out, &best);
    rc = rtr_comm_agree(c, rc);
    /* each rank's queries' candidates to it, from every rank; it keeps the best k */
    rtr_nbrs mine = {0};
    if (!rc) rc = nbr_alloc(&mine, n, k, out);
    size_t per = nbr_bytes(k, out);
    rtr_buf send = {0};
    for (int owner = 0; owner < size && !rc; owner++) {
        send.len = 0;
        int e = rtr_buf_reserve(&send, (offs[owner + 1] - offs[owner]) * per);
        for (size_t i = offs[owner]; !e && i < offs[owner + 1]; i++) {
            rtr_nbrs v = view_at(&best, i, k);
            nbr_put(&v, k, &send);
        }
        uint8_t *all;
        size_t *lens;
        if ((rc = rtr_comm_gather_agreed(c, e, send.data, send.len, owner, &all, &lens))) break;
        for (int r = 0; owner == rank && r < size; r++) {
            RTR_ASSERT(lens[r] == n * per);
            size_t at = 0;
            for (int s = 0; s < r; s++) at += lens[s];
            for (size_t i = 0; i < n; i++) {
                rtr_nbrs src = nbr_get(all + at + i * per, k, out), dst = view_at(&mine, i, k);
                for (uint32_t j = 0; j < k; j++) nbr_insert(&dst, &src, j, k);
            }
        }
        rtr_free(all);
        rtr_free(lens);
    }
    if (!rc) {   /* into the caller's arrays */
        memcpy(out->ids, mine.ids, n * k * sizeof *out->ids);
        if (out->dist) memcpy(out->dist, mine.dist, n * k * sizeof *out->dist);
        if (out->tokens) memcpy(out->tokens, mine.tokens, n * k * RTR_NBR_TOKENS * sizeof *out->tokens);
        if (out->aligned) memcpy(out->aligned, mine.aligned, n * k * RTR_NBR_TOKENS * sizeof *out->aligned);
        if (out->shifts) memcpy(out->shifts, mine.shifts, n * k * sizeof *out->shifts);
    }
    rtr_buf_free(&send);
    nbr_free(&best);
    nbr_free(&mine);
    rtr_free(q);
    rtr_free(self);
    rtr_free(cnt);
    rtr_free(offs);
    return rc;
}
