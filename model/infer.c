/* infer.c - incremental decoding with live retrieval (see infer.h). */
#include "model/infer.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/blas.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "model/ops.h"
#include "model/retro_int.h"

/* Rows through the decoder, one a token (n of them: a session's own 1, or a batch's). */
#define RTR_MAX_ROWS 1024   /* sessions a batch decodes together */

typedef struct rows {
    float *x;                   /* (n, C) the residual stream */
    float *a;                   /* (n, C) a normalised copy of x (the input of each sub-layer) */
    float *q, *k, *v;           /* (n, C) the query (self-attention, then CCA), rotated; the new key and value */
    float *y;                   /* (n, C) an attention's output, before its projection */
    float *o;                   /* (n, C) a sub-layer's output, added to x */
    float *h, *hg;              /* (n, F) the MLP's hidden rows before and after GELU */
    float *logits;              /* (n, V) */
    float *rstd;                /* (n) rtr_rmsnorm_forward's rstd output (not needed here) */
} rows;

/* The size table of rows for n tokens, for one allocation. */
#define ROWS_TABLE(r, n, c)                                                                                        \
    {&(r)->x, (n) * (size_t)(c)->C}, {&(r)->a, (n) * (size_t)(c)->C}, {&(r)->q, (n) * (size_t)(c)->C},            \
        {&(r)->k, (n) * (size_t)(c)->C}, {&(r)->v, (n) * (size_t)(c)->C}, {&(r)->y, (n) * (size_t)(c)->C},         \
        {&(r)->o, (n) * (size_t)(c)->C}, {&(r)->h, (n) * (size_t)(c)->F}, {&(r)->hg, (n) * (size_t)(c)->F},        \
        {&(r)->logits, (n) * (size_t)(c)->V}, {&(r)->rstd, (n)}

typedef struct size_entry {
    float **p;
    size_t n;
} size_entry;

/* One zeroed allocation for the table's arrays (each rounded up to 16 floats). */
static float *alloc_table(size_entry *tab, size_t n) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += (tab[i].n + 15) & ~(size_t)15;
    float *mem = rtr_calloc(total, sizeof(float)), *p = mem;
    for (size_t i = 0; mem && i < n; i++) {
        *tab[i].p = p;
        p += (tab[i].n + 15) & ~(size_t)15;
    }
    return mem;
}

struct rtr_session {
    rtr_model *m;
    const rtr_model_config *c;
    int T, pos;                 /* window capacity and the next position in it */
    int64_t total;              /* tokens fed since the start */
    int64_t win0;               /* stream index of the window's first token (a multiple of m) */
    float *mem;                 /* one allocation for the caches and the row buffers below */
    float *kc, *vc;             /* (L, T, C): rotated keys and values */
    float *ctx;                 /* (T, C): the first CCA layer's normalised rows */
    float *ck, *cv;             /* (n_cca, K*R, C): the current chunk's CCA keys (rotated) and values */
    float *E;                   /* (K*R, EC): the current chunk's encoded neighbours */
    rows r;                     /* one token's row through the decoder */
    float *att;                 /* (NH, max(T, K*R)) attention probabilities */
    int32_t *tok;               /* (T) the window's tokens */
    int32_t *nbr;               /* (T/m, K, R) neighbours of the window's chunks */
    uint8_t *has_nbr;           /* (T/m) */
    uint8_t *cmask;             /* (K*R) */
    int cur;                    /* the CCA keys hold a chunk's neighbours */
    int cur_p;                  /* ... of the chunk completed at this window position */
    int cca_slot[RTR_MODEL_MAX_LAYERS];   /* index of each CCA layer in ck/cv, -1 if none */
    rtr_retrieve_fn retrieve;
    rtr_retrieve_many_fn retrieve_many;
    void *rctx;
    rtr_session_times times;
};

int rtr_session_new(rtr_model *m, rtr_session **out) {
    *out = NULL;
    const rtr_model_config *c = rtr_model_cfg(m);
    rtr_session *s = rtr_calloc(1, sizeof *s);
    if (!s) return rtr_seterr(RTR_E_NOMEM, "session: out of memory");
    s->m = m;
    s->c = c;
    s->T = c->T;
    size_t C = (size_t)c->C, T = (size_t)c->T, KR = (size_t)c->K * c->R, nc = (size_t)c->n_cca;
    size_t attn = T > KR ? T : KR, L = (size_t)c->L;
    size_entry tab[] = {{&s->kc, L * T * C}, {&s->vc, L * T * C}, {&s->ctx, T * C}, {&s->ck, nc * KR * C},
                        {&s->cv, nc * KR * C}, {&s->E, KR * (size_t)c->EC}, {&s->att, (size_t)c->NH * attn},
                        ROWS_TABLE(&s->r, 1, c)};
    s->mem = alloc_table(tab, sizeof tab / sizeof tab[0]);
    s->tok = rtr_calloc(T, sizeof *s->tok);
    s->nbr = rtr_calloc((T / c->m) * KR + 1, sizeof *s->nbr);
    s->has_nbr = rtr_calloc(T / c->m, 1);
    s->cmask = rtr_calloc(KR + 1, 1);
    if (!s->mem || !s->tok || !s->nbr || !s->has_nbr || !s->cmask) {
        rtr_session_free(s);
        return rtr_seterr(RTR_E_NOMEM, "session: out of memory for a context of %d", c->T);
    }
    for (int l = 0; l < RTR_MODEL_MAX_LAYERS; l++) s->cca_slot[l] = -1;
    for (int i = 0; i < c->n_cca; i++) s->cca_slot[c->cca[i] - 1] = i;
    *out = s;
    return RTR_OK;
}

void rtr_session_free(rtr_session *s) {
    if (!s) return;
    rtr_free(s->mem);
    rtr_free(s->tok);
    rtr_free(s->nbr);
    rtr_free(s->has_nbr);
    rtr_free(s->cmask);
    rtr_free(s);
}

void rtr_session_reset(rtr_session *s) {
    s->pos = 0;
    s->total = 0;
    s->win0 = 0;
    s->cur = 0;
    memset(s->has_nbr, 0, (size_t)(s->T / s->c->m));
}

void rtr_session_set_retrieval(rtr_session *s, rtr_retrieve_fn fn, void *ctx) {
    s->retrieve = fn;
    s->rctx = ctx;
}

void rtr_session_set_retrieval_many(rtr_session *s, rtr_retrieve_many_fn many) { s->retrieve_many = many; }

int64_t rtr_session_tokens(const rtr_session *s) { return s->total; }
void rtr_session_times_get(const rtr_session *s, rtr_session_times *t) { *t = s->times; }

/* Chunks completed in n sessions ss[i] at their window positions with neighbours nbr[i] (K, R):
 * encoded together (as many at a time as the model's batch holds), then projected for every CCA
 * layer of each session. */
static void load_chunks(rtr_session *const *ss, const int32_t *const *nbr, int n) {
    rtr_model *m = ss[0]->m;
    const rtr_model_config *c = ss[0]->c;
    int KR = c->K * c->R, group = m->max_B;
    const int32_t *slots[RTR_MAX_ROWS];
    const float *ctx[RTR_MAX_ROWS];
    float *E[RTR_MAX_ROWS];
    for (int lo = 0; lo < n; lo += group) {
        int g = n - lo < group ? n - lo : group;
        double t0 = rtr_now();
        for (int i = 0; i < g; i++) {
            rtr_session *s = ss[lo + i];
            int u = s->pos / c->m;
            int32_t *slot = s->nbr + (size_t)u * KR;
            if (slot != nbr[lo + i]) memcpy(slot, nbr[lo + i], (size_t)KR * sizeof *slot);
            s->has_nbr[u] = 1;
            slots[i] = slot;
            ctx[i] = s->ctx + (size_t)u * c->m * c->C;
            E[i] = s->E;
        }
        if (rtr_model_encode_chunks(m, g, slots, ctx, E)) {   /* out of memory: one at a time */
            for (int i = 0; i < g; i++) rtr_model_encode_chunks(m, 1, slots + i, ctx + i, E + i);
        }
        double each = (rtr_now() - t0) / g;
        for (int i = 0; i < g; i++) {
            rtr_session *s = ss[lo + i];
            t0 = rtr_now();
            for (int k = 0; k < KR; k++) s->cmask[k] = slots[i][k] >= 0;
            for (int l = 0; l < c->L; l++) {
                int j = s->cca_slot[l];
                if (j < 0) continue;
                const float *wkv = PW(m, m->dec[l].xkv);
                float *ck = s->ck + (size_t)j * KR * c->C, *cv = s->cv + (size_t)j * KR * c->C;
                rtr_matmul_forward(ck, s->E, wkv, PW(m, m->dec[l].xkb), KR, c->EC, c->C);
                rtr_matmul_forward(cv, s->E, wkv + (size_t)c->C * c->EC, NULL, KR, c->EC, c->C);
                /* token j of a neighbour: position j */
                rtr_rope_forward(ck, ck, &m->rope_dec, c->K, c->R, c->NH, c->C / c->NH, 0);
            }
            s->cur = 1;
            s->cur_p = s->pos;
            s->times.encode += each + (rtr_now() - t0);
        }
    }
}

static void add_to(float *x, const float *y, int n) {
    for (int i = 0; i < n; i++) x[i] += y[i];
}

/* Runs the decoder on n tokens, t[i] at window position ss[i]->pos of
 * session ss[i] (sessions of one model, each once), their rows together in
 * r. nbr[i]: the neighbours of the chunk t[i] completes (NULL if none or
 * retrieval is off). With want_logits, fills r->logits. With n = 1 this is
 * exactly the one-token step: the same operations in the same order. */
static void step_rows_on(rtr_session *const *ss, const int32_t *t, const int32_t *const *nbr, int n, const rows *r,
                         int want_logits) {
    rtr_model *m = ss[0]->m;
    const rtr_model_config *c = ss[0]->c;
    int C = c->C, hs = C / c->NH, KR = c->K * c->R;
    size_t TC = (size_t)ss[0]->T * C;
    for (int i = 0; i < n; i++) {
        ss[i]->tok[ss[i]->pos] = t[i];
        memcpy(r->x + (size_t)i * C, PW(m, m->wte) + (size_t)t[i] * C, (size_t)C * sizeof(float));
    }
    for (int l = 0; l < c->L; l++) {
        const blk_ix *ix = &m->dec[l];
        const float *wqkv = PW(m, ix->qkv);
        rtr_rmsnorm_forward(r->a, r->rstd, r->x, PW(m, ix->ln1), n, C);
        rtr_matmul_forward(r->q, r->a, wqkv, NULL, n, C, C);
        rtr_matmul_forward(r->k, r->a, wqkv + (size_t)C * C, NULL, n, C, C);
        rtr_matmul_forward(r->v, r->a, wqkv + 2 * (size_t)C * C, NULL, n, C, C);
        /* each row against its own session's cache; rows in parallel (each attention then runs on one
         * thread: OpenMP does not nest), for one row the attention's own threads */
#pragma omp parallel for if (n > 1) schedule(static)
        for (int i = 0; i < n; i++) {
            rtr_session *s = ss[i];
            int p = s->pos;
            float *kc = s->kc + l * TC, *vc = s->vc + l * TC, *q = r->q + (size_t)i * C;
            rtr_rope_forward(q, q, &m->rope_dec, 1, 1, c->NH, hs, p);
            rtr_rope_forward(kc + (size_t)p * C, r->k + (size_t)i * C, &m->rope_dec, 1, 1, c->NH, hs, p);
            memcpy(vc + (size_t)p * C, r->v + (size_t)i * C, (size_t)C * sizeof(float));
            rtr_attention_forward(r->y + (size_t)i * C, s->att, q, kc, vc, NULL, 1, 1, p + 1, c->NH, hs, 0);
        }
        rtr_matmul_forward(r->o, r->y, PW(m, ix->proj), NULL, n, C, C);
        add_to(r->x, r->o, n * C);
        int j = ss[0]->cca_slot[l];
        if (j >= 0) {
            rtr_rmsnorm_forward(r->a, r->rstd, r->x, PW(m, ix->xln), n, C);
            int any = 0, ne = 0;
            rtr_session *enc[RTR_MAX_ROWS];
            const int32_t *enb[RTR_MAX_ROWS];
            for (int i = 0; i < n && l == c->cca[0] - 1; i++) {
                rtr_session *s = ss[i];
                int p = s->pos;
                memcpy(s->ctx + (size_t)p * C, r->a + (size_t)i * C, (size_t)C * sizeof(float));
                if (p % c->m != c->m - 1) continue;
                if (!nbr[i]) {
                    s->cur = 0;   /* no neighbours: the CCA adds nothing */
                    continue;
                }
                enc[ne] = s;
                enb[ne++] = nbr[i];
            }
            if (ne) load_chunks(enc, enb, ne);
            for (int i = 0; i < n; i++) any |= ss[i]->cur;
            if (any) {
                rtr_matmul_forward(r->q, r->a, PW(m, ix->xq), PW(m, ix->xqb), n, C, C);
#pragma omp parallel for if (n > 1) schedule(static)
                for (int i = 0; i < n; i++) {
                    rtr_session *s = ss[i];
                    float *q = r->q + (size_t)i * C, *y = r->y + (size_t)i * C;
                    if (!s->cur) {
                        memset(y, 0, (size_t)C * sizeof(float));
                        continue;
                    }
                    /* query i of the span (position cur_p + i) sits at rotary position m + i */
                    rtr_rope_forward(q, q, &m->rope_dec, 1, 1, c->NH, hs, c->m + s->pos - s->cur_p);
                    rtr_attention_forward(y, s->att, q, s->ck + (size_t)j * KR * C, s->cv + (size_t)j * KR * C,
                                          s->cmask, 1, 1, KR, c->NH, hs, 0);
                }
                rtr_matmul_forward(r->o, r->y, PW(m, ix->xproj), NULL, n, C, C);
                for (int i = 0; i < n; i++)
                    if (ss[i]->cur) add_to(r->x + (size_t)i * C, r->o + (size_t)i * C, C);
            }
        }
        rtr_rmsnorm_forward(r->a, r->rstd, r->x, PW(m, ix->ln2), n, C);
        rtr_matmul_forward(r->h, r->a, PW(m, ix->fc), NULL, n, C, c->F);
        rtr_gelu_forward(r->hg, r->h, n * c->F);
        rtr_matmul_forward(r->o, r->hg, PW(m, ix->fcp), NULL, n, c->F, C);
        add_to(r->x, r->o, n * C);
    }
    for (int i = 0; i < n; i++) ss[i]->pos++;
    if (want_logits) {
        rtr_rmsnorm_forward(r->a, r->rstd, r->x, PW(m, m->lnf), n, C);
        rtr_matmul_forward(r->logits, r->a, PW(m, m->wte), NULL, n, C, c->V);
    }
}

/* The rows from row lo of r (c's sizes). */
static rows rows_from(const rows *r, int lo, const rtr_model_config *c) {
    size_t C = (size_t)c->C, F = (size_t)c->F, V = (size_t)c->V, i = (size_t)lo;
    return (rows){r->x + i * C, r->a + i * C, r->q + i * C, r->k + i * C, r->v + i * C, r->y + i * C,
                  r->o + i * C, r->h + i * F, r->hg + i * F, r->logits + i * V, r->rstd + i};
}

/* A step of one token runs on the calling thread alone: its products and per-head attention are too
 * small for a team (measured: one thread decodes as fast as two on an idle machine, and two collapse
 * to a few percent of that when another process shares the cores, their barriers spinning against
 * it). Rows of several streams are split between the threads, each taking its share of the rows
 * through the whole step on its own (its products single-threaded): the products of a share still
 * read each weight once for all its rows, and the threads meet once a step instead of at every
 * product and attention (docs/benchmarks.md, "retro serve under load"). Except in a step that
 * encodes neighbours (a chunk completes, once in m steps): the encoder works in the model's own
 * scratch, one chunk at a time, with the threads on its products. */
static void step_rows(rtr_session *const *ss, const int32_t *t, const int32_t *const *nbr, int n, const rows *r,
                      int want_logits) {
    int nt = omp_get_max_threads(), encodes = 0;
    for (int i = 0; i < n; i++) encodes |= nbr[i] && ss[i]->c->n_cca && ss[i]->pos % ss[i]->c->m == ss[i]->c->m - 1;
    if (n > 1 && nt > 1 && !omp_in_parallel() && !encodes) {
        int groups = n < nt ? n : nt, saved = rtr_blas_single_begin();
#pragma omp parallel num_threads(groups)
        {
            int g = omp_get_thread_num(), G = omp_get_num_threads(), lo = n * g / G, hi = n * (g + 1) / G;
            rows share = rows_from(r, lo, ss[0]->c);
            if (hi > lo) step_rows_on(ss + lo, t + lo, nbr + lo, hi - lo, &share, want_logits);
        }
        rtr_blas_single_end(saved);
        return;
    }
    int alone = n == 1 && !omp_in_parallel();
    if (alone) omp_set_num_threads(1);
    step_rows_on(ss, t, nbr, n, r, want_logits);
    if (alone) omp_set_num_threads(nt);
}

static void step(rtr_session *s, int32_t t, const int32_t *nbr, int want_logits) {
    step_rows(&s, &t, &nbr, 1, &s->r, want_logits);
}

/* The window is full: keep its last half (whole chunks) and recompute. */
static void shift(rtr_session *s) {
    const rtr_model_config *c = s->c;
    int keep = (s->T / 2 / c->m) * c->m, drop = s->T - keep, KR = c->K * c->R;
    int nch = s->T / c->m, dch = drop / c->m;
    memmove(s->tok, s->tok + drop, (size_t)keep * sizeof *s->tok);
    memmove(s->nbr, s->nbr + (size_t)dch * KR, (size_t)(nch - dch) * KR * sizeof *s->nbr);
    memmove(s->has_nbr, s->has_nbr + dch, (size_t)(nch - dch));
    memset(s->has_nbr + (nch - dch), 0, (size_t)dch);
    s->win0 += drop;
    s->pos = 0;
    s->cur = 0;
    for (int p = 0; p < keep; p++) {
        int u = p / c->m, done = p % c->m == c->m - 1;
        const int32_t *nb = done && s->has_nbr[u] && s->retrieve ? s->nbr + (size_t)u * KR : NULL;
        step(s, s->tok[p], nb, 0);
    }
}

int rtr_session_feed(rtr_session *s, const int32_t *tokens, int n, const float **logits) {
    const rtr_model_config *c = s->c;
    if (n < 1) return rtr_seterr(RTR_E_INVALID, "session: nothing to feed");
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->V)
            return rtr_seterr(RTR_E_INVALID, "session: token %d outside the vocabulary of %d", tokens[i], c->V);
    double t0 = rtr_now();
    int KR = c->K * c->R, mm = c->m;
    /* the chunks that complete in this call, retrieved as one batch */
    int64_t first = s->total / mm;              /* the first stream chunk that can complete */
    int64_t end = (s->total + n) / mm;          /* chunks [first, end) complete */
    int nc = c->n_cca && s->retrieve && end > first ? (int)(end - first) : 0;
    int32_t *chunks = NULL, *nbr = NULL;
    int rc = RTR_OK;
    if (nc) {
        chunks = rtr_malloc((size_t)nc * mm * sizeof *chunks);
        nbr = rtr_malloc((size_t)nc * KR * sizeof *nbr);
        if (!chunks || !nbr) rc = rtr_seterr(RTR_E_NOMEM, "session: out of memory");
        for (int u = 0; !rc && u < nc; u++)
            for (int i = 0; i < mm; i++) {
                int64_t t = (first + u) * mm + i;   /* stream index */
                chunks[(size_t)u * mm + i] = t < s->total ? s->tok[t - s->win0] : tokens[t - s->total];
            }
        if (!rc) {
            double tr = rtr_now();
            rc = s->retrieve(s->rctx, chunks, nc, first, nbr);
            s->times.retrieve += rtr_now() - tr;
            s->times.retrievals += nc;
        }
        for (size_t i = 0; !rc && i < (size_t)nc * KR; i++)
            if (nbr[i] < -1 || nbr[i] >= c->V)
                rc = rtr_seterr(RTR_E_INVALID, "session: neighbour token %d outside the vocabulary", nbr[i]);
    }
    for (int i = 0; !rc && i < n; i++) {
        if (s->pos == s->T) shift(s);
        int64_t t = s->total;
        const int32_t *nb = NULL;
        if (nc && t % mm == mm - 1) nb = nbr + (size_t)(t / mm - first) * KR;
        step(s, tokens[i], nb, i == n - 1);
        s->total++;
    }
    rtr_free(chunks);
    rtr_free(nbr);
    s->times.total += rtr_now() - t0;
    if (rc) return rc;
    if (logits) *logits = s->r.logits;
    return RTR_OK;
}

/* --- batches ---------------------------------------------------------------------- */
struct rtr_batch {
    rtr_model *m;
    int max_b;
    float *mem;
    rows r;
    int32_t *chunk;             /* (max_b, m) the chunks completing in a step */
    int32_t *nbr;               /* (max_b, K, R) their neighbours */
    void **rctx;                /* (max_b) their sessions' retrieval contexts */
    int64_t *first;             /* (max_b) their indexes in their streams */
    int *who;                   /* (max_b) their sessions' rows */
};

int rtr_batch_new(rtr_model *m, int max_b, rtr_batch **out) {
    *out = NULL;
    if (max_b < 1 || max_b > RTR_MAX_ROWS) return rtr_seterr(RTR_E_INVALID, "batch: 1 to %d sessions", RTR_MAX_ROWS);
    const rtr_model_config *c = rtr_model_cfg(m);
    rtr_batch *b = rtr_calloc(1, sizeof *b);
    if (!b) return rtr_seterr(RTR_E_NOMEM, "batch: out of memory");
    b->m = m;
    b->max_b = max_b;
    size_entry tab[] = {ROWS_TABLE(&b->r, (size_t)max_b, c)};
    b->mem = alloc_table(tab, sizeof tab / sizeof tab[0]);
    b->chunk = rtr_calloc((size_t)max_b * c->m, sizeof *b->chunk);
    b->nbr = rtr_calloc((size_t)max_b * c->K * c->R + 1, sizeof *b->nbr);
    b->rctx = rtr_calloc((size_t)max_b, sizeof *b->rctx);
    b->first = rtr_calloc((size_t)max_b, sizeof *b->first);
    b->who = rtr_calloc((size_t)max_b, sizeof *b->who);
    if (!b->mem || !b->chunk || !b->nbr || !b->rctx || !b->first || !b->who) {
        rtr_batch_free(b);
        return rtr_seterr(RTR_E_NOMEM, "batch: out of memory for %d sessions", max_b);
    }
    *out = b;
    return RTR_OK;
}

void rtr_batch_free(rtr_batch *b) {
    if (!b) return;
    rtr_free(b->mem);
    rtr_free(b->chunk);
    rtr_free(b->nbr);
    rtr_free(b->rctx);
    rtr_free(b->first);
    rtr_free(b->who);
    rtr_free(b);
}

int rtr_batch_feed(rtr_batch *b, rtr_session *const *ss, const int32_t *tokens, int n, const float **logits) {
    if (n < 1 || n > b->max_b) return rtr_seterr(RTR_E_INVALID, "batch: 1 to %d sessions, not %d", b->max_b, n);
    const rtr_model_config *c = rtr_model_cfg(b->m);
    int mm = c->m, KR = c->K * c->R;
    for (int i = 0; i < n; i++) {
        if (ss[i]->m != b->m) return rtr_seterr(RTR_E_INVALID, "batch: a session of another model");
        if (tokens[i] < 0 || tokens[i] >= c->V)
            return rtr_seterr(RTR_E_INVALID, "session: token %d outside the vocabulary of %d", tokens[i], c->V);
        for (int j = 0; j < i; j++)
            if (ss[j] == ss[i]) return rtr_seterr(RTR_E_INVALID, "batch: a session twice");
    }
    double t0 = rtr_now();
    const int32_t *nb[RTR_MAX_ROWS];
    int nr = 0;   /* sessions completing a chunk, which is retrieved first */
    for (int i = 0; i < n; i++) {
        rtr_session *s = ss[i];
        nb[i] = NULL;
        if (s->pos == s->T) shift(s);
        if (!(c->n_cca && s->retrieve && s->total % mm == mm - 1)) continue;
        int64_t first = s->total / mm;
        int32_t *chunk = b->chunk + (size_t)nr * mm;
        for (int k = 0; k < mm - 1; k++) chunk[k] = s->tok[first * mm + k - s->win0];
        chunk[mm - 1] = tokens[i];
        b->who[nr] = i;
        b->first[nr] = first;
        b->rctx[nr++] = s->rctx;
    }
    rtr_retrieve_many_fn many = nr > 1 ? ss[b->who[0]]->retrieve_many : NULL;
    for (int j = 1; j < nr && many; j++)
        if (ss[b->who[j]]->retrieve_many != many) many = NULL;
    int rc = RTR_OK;
    if (many) {   /* in one call */
        double tr = rtr_now();
        rc = many(b->rctx, b->chunk, nr, b->first, b->nbr);
        double el = rtr_now() - tr;
        for (int j = 0; j < nr; j++) ss[b->who[j]]->times.retrieve += el / nr;
    }
    for (int j = 0; j < nr && !rc; j++) {
        rtr_session *s = ss[b->who[j]];
        int32_t *out = b->nbr + (size_t)j * KR;
        if (!many) {
            double tr = rtr_now();
            rc = s->retrieve(s->rctx, b->chunk + (size_t)j * mm, 1, b->first[j], out);
            s->times.retrieve += rtr_now() - tr;
        }
        s->times.retrievals++;
        for (int k = 0; !rc && k < KR; k++)
            if (out[k] < -1 || out[k] >= c->V)
                rc = rtr_seterr(RTR_E_INVALID, "session: neighbour token %d outside the vocabulary", out[k]);
        nb[b->who[j]] = out;
    }
    if (rc) return rc;
    step_rows(ss, tokens, nb, n, &b->r, 1);
    double el = rtr_now() - t0;
    for (int i = 0; i < n; i++) {
        ss[i]->total++;
        ss[i]->times.total += el / n;
        if (logits) logits[i] = b->r.logits + (size_t)i * c->V;
    }
    return RTR_OK;
}
