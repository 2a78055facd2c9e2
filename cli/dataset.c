/* dataset.c - sequences and neighbours from a knowledge base (see dataset.h). */
#include "cli/dataset.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/kb.h"
#include "index/store.h"
#include "lib/alloc.h"
#include "lib/progress.h"
#include "lib/rng.h"
#include "lib/status.h"

#define M RTR_CHUNK_TOKENS
#define R (2 * RTR_CHUNK_TOKENS)
#define QUERY_BATCH 4096

typedef struct split {
    int64_t n_chunks, n_docs, n_tokens;
    int32_t *tok;      /* (n_chunks, M); -1 past a short chunk's end */
    int32_t *next;     /* (n_chunks): the token after the chunk (first of the next chunk, or end-of-document) */
    uint64_t *doc;     /* (n_chunks) */
    int32_t *nbr;      /* (n_chunks, K, R) or NULL */
} split;

struct cli_dataset {
    int T, K, Lc;
    double self_rate;
    int self_anneal;
    int self_shift;
    uint32_t align;
    double rate_now;    /* the share at the current step */
    uint64_t seed;
    int32_t eod;
    split sp[2];
    float *tok_bytes;  /* (V): UTF-8 bytes of each token */
    int V;
    rtr_train_source src;
};

static int grow(split *s, int64_t *cap) {
    if (s->n_chunks < *cap) return RTR_OK;
    int64_t nc = *cap ? *cap * 2 : 4096;
    int32_t *tok = rtr_realloc(s->tok, (size_t)nc * M * sizeof *tok);
    if (tok) s->tok = tok;
    int32_t *next = rtr_realloc(s->next, (size_t)nc * sizeof *next);
    if (next) s->next = next;
    uint64_t *doc = rtr_realloc(s->doc, (size_t)nc * sizeof *doc);
    if (doc) s->doc = doc;
    if (!tok || !next || !doc) return rtr_seterr(RTR_E_NOMEM, "dataset: out of memory at %" PRId64 " chunks", nc);
    *cap = nc;
    return RTR_OK;
}

int cli_dataset_is_val(const rtr_doc *d, double frac) {
    uint64_t h;
    memcpy(&h, d->content_hash, 8);
    h = (h ^ (h >> 31)) * 0x94D049BB133111EBull;   /* spread every bit into the low ones */
    h ^= h >> 29;
    return (double)(h % 1000000) < frac * 1e6;
}

static int load_chunks(cli_dataset *ds, rtr_kb *kb, double val_frac) {
    rtr_store_txn *t = NULL;
    int rc = rtr_store_read_begin(rtr_kb_store(kb), &t);
    if (rc) return rc;
    int64_t cap[2] = {0, 0};
    rtr_doc d;
    uint64_t after = 0;
    while (!rc && (rc = rtr_store_next_doc(t, after, &d)) == RTR_OK) {
        after = d.id;
        split *s = &ds->sp[cli_dataset_is_val(&d, val_frac)];
        s->n_docs++;
        for (uint32_t c = 0; !rc && c < d.n_chunks; c++) {
            rtr_chunk ch;
            if ((rc = rtr_store_get_chunk(t, d.first_chunk + c, &ch)) < 0) break;
            if (ch.doc_id != d.id || ch.seq != c) {
                rc = rtr_seterr(RTR_E_CORRUPT, "%s: chunk %" PRIu64 " does not belong to document %" PRIu64,
                                rtr_kb_dir(kb), ch.id, d.id);
                break;
            }
            if ((rc = grow(s, &cap[s - ds->sp])) < 0) break;
            int32_t *tk = s->tok + (size_t)s->n_chunks * M;
            for (int i = 0; i < M; i++) tk[i] = i < (int)ch.n_tokens ? (int32_t)ch.tokens[i] : -1;
            for (int i = 0; i < (int)ch.n_tokens; i++)
                if (tk[i] >= ds->V) rc = rtr_seterr(RTR_E_CORRUPT, "%s: token %d of chunk %" PRIu64
                                                    " outside the vocabulary", rtr_kb_dir(kb), tk[i], ch.id);
            s->next[s->n_chunks] = ds->eod;
            if (c > 0) s->next[s->n_chunks - 1] = tk[0];
            s->doc[s->n_chunks] = d.id;
            s->n_chunks++;
            s->n_tokens += ch.n_tokens;
        }
    }
    if (rc == RTR_E_NOTFOUND) rc = RTR_OK;
    rtr_store_txn_end(t);
    return rc;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int find_neighbours(cli_dataset *ds, rtr_retriever *r, int progress) {
    int rc = RTR_OK;
    /* validation documents are never neighbours */
    split *v = &ds->sp[RTR_SPLIT_VAL];
    size_t n_ex = 0;
    uint64_t *ex = rtr_malloc((v->n_chunks + 1) * sizeof *ex);
    uint32_t *q = rtr_malloc((size_t)QUERY_BATCH * M * sizeof *q), *nt = rtr_malloc(QUERY_BATCH * sizeof *nt);
    uint32_t *tok = rtr_malloc((size_t)QUERY_BATCH * ds->K * R * sizeof *tok);
    int64_t *ids = rtr_malloc((size_t)QUERY_BATCH * ds->K * sizeof *ids);
    if (!ex || !q || !nt || !tok || !ids) rc = rtr_seterr(RTR_E_NOMEM, "dataset: out of memory for neighbours");
    for (int64_t i = 0; !rc && i < v->n_chunks; i++)
        if (!n_ex || ex[n_ex - 1] != v->doc[i]) ex[n_ex++] = v->doc[i];
    if (!rc) qsort(ex, n_ex, sizeof *ex, cmp_u64);
    rtr_progress pr;
    rtr_progress_init(&pr, "neighbours", (uint64_t)(ds->sp[0].n_chunks + v->n_chunks), "chunks", progress);
    uint64_t done = 0;
    for (int sp = 0; sp < 2 && !rc; sp++) {
        split *s = &ds->sp[sp];
        s->nbr = rtr_malloc(((size_t)s->n_chunks * ds->K * R + 1) * sizeof *s->nbr);
        if (!s->nbr) {
            rc = rtr_seterr(RTR_E_NOMEM, "dataset: out of memory for the neighbours of %" PRId64 " chunks",
                            s->n_chunks);
            break;
        }
        for (int64_t lo = 0; !rc && lo < s->n_chunks; lo += QUERY_BATCH) {
            size_t n = (size_t)(s->n_chunks - lo < QUERY_BATCH ? s->n_chunks - lo : QUERY_BATCH);
            for (size_t i = 0; i < n; i++) {
                const int32_t *tk = s->tok + (size_t)(lo + i) * M;
                nt[i] = 0;
                for (int j = 0; j < M; j++) {
                    q[i * M + j] = tk[j] >= 0 ? (uint32_t)tk[j] : 0;
                    nt[i] += tk[j] >= 0;
                }
            }
            rc = rtr_retriever_neighbours(r, q, nt, n, (uint32_t)ds->K, s->doc + lo, ex, n_ex, ids, NULL, tok,
                                          UINT32_MAX);
            if (!rc && ds->align)
                rc = rtr_retriever_align(r, q, nt, n, (uint32_t)ds->K, ids, ds->align, tok, UINT32_MAX, NULL);
            size_t nn = n * ds->K * R;
            int32_t *dst = s->nbr + (size_t)lo * ds->K * R;
            for (size_t i = 0; !rc && i < nn; i++) dst[i] = tok[i] == UINT32_MAX ? -1 : (int32_t)tok[i];
            done += n;
            rtr_progress_update(&pr, done, NULL);
        }
    }
    rtr_progress_finish(&pr);
    rtr_free(ex);
    rtr_free(q);
    rtr_free(nt);
    rtr_free(tok);
    rtr_free(ids);
    return rc;
}

/* 1 for the training chunks that get their own text as a neighbour. */
static int self_pick(const cli_dataset *ds, int64_t c) {
    uint64_t z = rtr_mix64((uint64_t)c * 0x9E3779B97F4A7C15ull ^ (ds->seed + 0x632BE59BD9B4E019ull));
    return rtr_unit53(z) < ds->rate_now;
}

/* The self-neighbour's offset from the chunk's start: uniform in [-S, S]. */
static int self_delta(const cli_dataset *ds, int64_t c) {
    if (!ds->self_shift) return 0;
    uint64_t z = rtr_mix64((uint64_t)c * 0xD1B54A32D192ED03ull ^ (ds->seed + 0x8CB92BA72F3D8DD7ull));
    return (int)(z % (uint64_t)(2 * ds->self_shift + 1)) - ds->self_shift;
}

/* nb (R) = chunk c's own document from delta tokens after the chunk's start;
 * -1 outside the document. Chunks of a document are consecutive in the split
 * and only its last one is short, so offsets map onto (chunk, token). */
static void self_neighbour(const split *s, int64_t c, int delta, int32_t *nb) {
    for (int t = 0; t < R; t++) {
        int64_t p = (int64_t)delta + t, cc = c + (p >= 0 ? p / M : -((-p + M - 1) / M));
        int j = (int)(p - (cc - c) * M);
        nb[t] = cc >= 0 && cc < s->n_chunks && s->doc[cc] == s->doc[c] ? s->tok[(size_t)cc * M + j] : -1;
    }
}

static void at_step(void *ctx, int64_t step, int64_t steps) {
    cli_dataset *ds = ctx;
    ds->rate_now = ds->self_anneal && steps > 0 ? ds->self_rate * (1.0 - (double)step / (double)steps) : ds->self_rate;
}

/* Sequence i of a split: chunks [i*Lc, (i+1)*Lc); chunks past the split's
 * end are padding (targets -1). */
static int get_seq(void *ctx, int sp, int64_t i, int32_t *idx, int32_t *targets, int32_t *nbr, double *bytes) {
    cli_dataset *ds = ctx;
    const split *s = &ds->sp[sp];
    double by = 0;
    size_t nb = (size_t)ds->K * R;
    for (int u = 0; u < ds->Lc; u++) {
        int64_t c = i * ds->Lc + u;
        int32_t *in = idx + u * M, *tg = targets + u * M;
        if (c >= s->n_chunks) {
            for (int j = 0; j < M; j++) {
                in[j] = ds->eod;
                tg[j] = -1;
            }
            if (nbr)
                for (size_t j = 0; j < nb; j++) nbr[u * nb + j] = -1;
            continue;
        }
        const int32_t *tk = s->tok + (size_t)c * M;
        for (int j = 0; j < M; j++) {
            in[j] = tk[j] >= 0 ? tk[j] : ds->eod;
            tg[j] = tk[j] < 0 ? -1 : j + 1 < M && tk[j + 1] >= 0 ? tk[j + 1] : s->next[c];
            if (tg[j] >= 0) by += ds->tok_bytes[tg[j]];
        }
        if (nbr) {
            memcpy(nbr + u * nb, s->nbr + (size_t)c * nb, nb * sizeof *nbr);
            if (sp == RTR_SPLIT_TRAIN && ds->rate_now > 0 && self_pick(ds, c))
                self_neighbour(s, c, self_delta(ds, c), nbr + u * nb + (size_t)(ds->K - 1) * R);
        }
    }
    *bytes = by;
    return RTR_OK;
}

int cli_dataset_build(rtr_kb *kb, rtr_retriever *r, const cli_dataset_opts *o, cli_dataset **out) {
    *out = NULL;
    if (o->T < M || o->T % M)
        return rtr_seterr(RTR_E_INVALID, "the context (%d) must be a multiple of the chunk size %d", o->T, M);
    cli_dataset *ds = rtr_calloc(1, sizeof *ds);
    if (!ds) return rtr_seterr(RTR_E_NOMEM, "dataset: out of memory");
    const rtr_tokenizer *tk = rtr_kb_tokenizer(kb);
    ds->T = o->T;
    ds->Lc = o->T / M;
    ds->K = o->K;
    ds->self_rate = ds->rate_now = o->self_rate;
    ds->self_anneal = o->self_anneal;
    ds->self_shift = o->self_shift;
    ds->align = o->align;
    ds->seed = o->seed;
    ds->V = (int)rtr_tokenizer_vocab_size(tk);
    ds->eod = (int32_t)rtr_tokenizer_eod(tk);
    ds->tok_bytes = rtr_tokenizer_byte_lengths(tk);
    int rc = ds->tok_bytes ? RTR_OK : RTR_E_NOMEM;
    if (!rc) rc = load_chunks(ds, kb, o->val_frac);
    if (!rc && ds->sp[0].n_chunks == 0)
        rc = rtr_seterr(RTR_E_INVALID, "%s: no training documents (%" PRId64 " in the validation split)",
                        rtr_kb_dir(kb), ds->sp[1].n_docs);
    if (!rc && o->K > 0) rc = find_neighbours(ds, r, o->progress);
    if (rc) {
        cli_dataset_free(ds);
        return rc;
    }
    ds->src.ctx = ds;
    ds->src.n_train = (ds->sp[0].n_chunks + ds->Lc - 1) / ds->Lc;
    ds->src.n_val = (ds->sp[1].n_chunks + ds->Lc - 1) / ds->Lc;
    ds->src.get = get_seq;
    ds->src.at_step = at_step;
    *out = ds;
    return RTR_OK;
}

void cli_dataset_free(cli_dataset *d) {
    if (!d) return;
    for (int i = 0; i < 2; i++) {
        rtr_free(d->sp[i].tok);
        rtr_free(d->sp[i].next);
        rtr_free(d->sp[i].doc);
        rtr_free(d->sp[i].nbr);
    }
    rtr_free(d->tok_bytes);
    rtr_free(d);
}

const rtr_train_source *cli_dataset_source(const cli_dataset *d) { return &d->src; }

void cli_dataset_counts(const cli_dataset *d, int sp, int64_t *chunks, int64_t *docs, int64_t *tokens) {
    *chunks = d->sp[sp].n_chunks;
    *docs = d->sp[sp].n_docs;
    *tokens = d->sp[sp].n_tokens;
}
