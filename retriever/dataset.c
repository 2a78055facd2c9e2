/* dataset.c - training sequences and their precomputed neighbours from a knowledge base (see dataset.h). */
#include "retriever/dataset.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/kb.h"
#include "index/parts.h"
#include "index/store.h"
#include "lib/alloc.h"
#include "lib/progress.h"
#include "lib/rng.h"
#include "lib/sort.h"
#include "lib/split.h"
#include "lib/status.h"

#define QUERY_BATCH 4096

typedef struct split {
    int64_t n_chunks, n_docs, n_tokens;
    int32_t *tok;      /* (n_chunks, RTR_CHUNK_TOKENS); -1 past a short chunk's end */
    int32_t *next;     /* (n_chunks): the token after the chunk (first of the next chunk, or end-of-document) */
    uint64_t *doc;     /* (n_chunks) */
    int32_t *nbr;      /* (n_chunks, K, RTR_NBR_TOKENS) or NULL */
    size_t cap_tok, cap_next, cap_doc;   /* capacities of tok, next, doc (elements) */
} split;

struct rtr_dataset {
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
};

/* Room for one more chunk in s. */
static int grow(split *s) {
    size_t n = (size_t)s->n_chunks + 1;
    if (RTR_GROW(s->tok, &s->cap_tok, n * RTR_CHUNK_TOKENS) || RTR_GROW(s->next, &s->cap_next, n) ||
        RTR_GROW(s->doc, &s->cap_doc, n))
        return rtr_seterr(RTR_E_NOMEM, "dataset: out of memory at %zu chunks", n);
    return RTR_OK;
}

/* kb's documents (partition part of a knowledge base of partitions: their ids made the knowledge
 * base's, index/parts.h) appended to the splits. */
static int load_chunks(rtr_dataset *ds, rtr_kb *kb, uint32_t part, double val_frac) {
    rtr_store_txn *t = NULL;
    int rc = rtr_store_read_begin(rtr_kb_store(kb), &t);
    if (rc) return rc;
    rtr_doc d;
    uint64_t after = 0;
    while (!rc && (rc = rtr_store_next_doc(t, after, &d)) == RTR_OK) {
        after = d.id;
        split *s = &ds->sp[rtr_split_is_val(d.content_hash, val_frac)];
        s->n_docs++;
        for (uint32_t c = 0; !rc && c < d.n_chunks; c++) {
            rtr_chunk ch;
            if ((rc = rtr_store_get_chunk(t, d.first_chunk + c, &ch)) < 0) break;
            if (ch.doc_id != d.id || ch.seq != c) {
                rc = rtr_seterr(RTR_E_CORRUPT, "%s: chunk %" PRIu64 " does not belong to document %" PRIu64,
                                rtr_kb_dir(kb), ch.id, d.id);
                break;
            }
            if ((rc = grow(s)) < 0) break;
            int32_t *tk = s->tok + (size_t)s->n_chunks * RTR_CHUNK_TOKENS;
            for (int i = 0; i < RTR_CHUNK_TOKENS; i++) tk[i] = i < (int)ch.n_tokens ? (int32_t)ch.tokens[i] : -1;
            for (int i = 0; i < (int)ch.n_tokens; i++)
                if (tk[i] >= ds->V) rc = rtr_seterr(RTR_E_CORRUPT, "%s: token %d of chunk %" PRIu64
                                                    " outside the vocabulary", rtr_kb_dir(kb), tk[i], ch.id);
            s->next[s->n_chunks] = ds->eod;
            if (c > 0) s->next[s->n_chunks - 1] = tk[0];
            s->doc[s->n_chunks] = rtr_part_id(part, d.id);
            s->n_chunks++;
            s->n_tokens += ch.n_tokens;
        }
    }
    if (rc == RTR_E_NOTFOUND) rc = RTR_OK;
    rtr_store_txn_end(t);
    return rc;
}

/* Where the neighbours come from: one knowledge base's retriever, or every partition's (multi.h, a
 * collective that every rank calls as often as the others). */
typedef struct nbr_source {
    rtr_retriever *r;
    rtr_multi *m;
} nbr_source;

static int source_neighbours(const nbr_source *src, const int32_t *chunks, size_t n, const rtr_nbr_opts *o,
                             const rtr_nbrs *out) {
    return src->m ? rtr_multi_neighbours(src->m, chunks, n, o, out) : rtr_retriever_neighbours(src->r, chunks, n, o, out);
}

/* ex (n_ex, ascending): the validation documents, never neighbours. */
static int find_neighbours(rtr_dataset *ds, const nbr_source *src, const uint64_t *ex, size_t n_ex, int retriever,
                           int progress, rtr_comm *comm) {
    int rc = RTR_OK;    int64_t *ids = rc ? NULL : rtr_malloc((size_t)QUERY_BATCH * ds->K * sizeof *ids);
    if (!rc && !ids) rc = rtr_seterr(RTR_E_NOMEM, "dataset: out of memory for neighbours");
    int rank = comm ? rtr_comm_rank(comm) : 0, size = comm ? rtr_comm_size(comm) : 1;
    size_t *offs = rtr_calloc((size_t)size + 1, sizeof *offs);
    if (!rc && !offs) rc = RTR_E_NOMEM;
    uint64_t mine[2][2];   /* this rank's share of each split's chunks */
    for (int sp = 0; sp < 2; sp++) rtr_comm_share((uint64_t)ds->sp[sp].n_chunks, rank, size, &mine[sp][0], &mine[sp][1]);
    rtr_progress pr;
    rtr_progress_init(&pr, "neighbours", mine[0][1] - mine[0][0] + mine[1][1] - mine[1][0], "chunks", progress);
    uint64_t done = 0;
    for (int sp = 0; sp < 2; sp++) {   /* no early exit: every rank reaches the gathers */
        split *s = &ds->sp[sp];
        if (!rc && !(s->nbr = rtr_malloc(((size_t)s->n_chunks * ds->K * RTR_NBR_TOKENS + 1) * sizeof *s->nbr)))
            rc = rtr_seterr(RTR_E_NOMEM, "dataset: out of memory for the neighbours of %" PRId64 " chunks",
                            s->n_chunks);
        rtr_nbr_opts no = {.k = (uint32_t)ds->K, .exclude = ex, .n_exclude = n_ex, .align = ds->align,
                           .mode = retriever};
        /* as many calls on every rank (the partitions' search is a collective): the largest share's */
        uint64_t most = ((uint64_t)s->n_chunks + (uint64_t)size - 1) / (uint64_t)size;
        for (uint64_t b = 0; !rc && b * QUERY_BATCH < (src->m ? most : mine[sp][1] - mine[sp][0]); b++) {
            int64_t lo = (int64_t)(mine[sp][0] + b * QUERY_BATCH);
            size_t n = lo < (int64_t)mine[sp][1] ? (size_t)((int64_t)mine[sp][1] - lo < QUERY_BATCH ? (int64_t)mine[sp][1] - lo : QUERY_BATCH) : 0;
            if (!n) lo = (int64_t)mine[sp][1];   /* a call for no queries: its share is done */
            int32_t *dst = s->nbr + (size_t)lo * ds->K * RTR_NBR_TOKENS;
            rtr_nbrs out = {.ids = ids, .tokens = ds->align ? NULL : dst, .aligned = ds->align ? dst : NULL};
            no.self_doc = s->doc + lo;
            rc = source_neighbours(src, s->tok + (size_t)lo * RTR_CHUNK_TOKENS, n, &no, &out);
            done += n;
            rtr_progress_update(&pr, done, NULL);
        }
        if (size > 1) {   /* every rank's share to every rank */
            rc = rtr_comm_agree(comm, rc);
            for (int q = 0; q <= size && !rc; q++) {
                uint64_t a, b;
                rtr_comm_share((uint64_t)s->n_chunks, q < size ? q : size - 1, size, &a, &b);
                offs[q] = q < size ? a : b;
            }
            if (!rc) rc = rtr_comm_allgather_ranges(comm, s->nbr, (size_t)ds->K * RTR_NBR_TOKENS * sizeof *s->nbr, offs);
        }
    }
    rtr_progress_finish(&pr);
    rtr_free(offs);
    rtr_free(ids);
    return rc;
}

int rtr_dataset_val_docs(rtr_kb *kb, double val_frac, uint64_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    rtr_store_txn *t = NULL;
    int rc = rtr_store_read_begin(rtr_kb_store(kb), &t);
    rtr_doc d;
    uint64_t after = 0;
    size_t cap = 0;
    while (!rc && (rc = rtr_store_next_doc(t, after, &d)) == RTR_OK) {
        after = d.id;
        if (!rtr_split_is_val(d.content_hash, val_frac)) continue;
        if ((rc = RTR_GROW(*ids, &cap, *n + 1))) break;
        (*ids)[(*n)++] = d.id;
    }
    if (rc == RTR_E_NOTFOUND) rc = RTR_OK;
    rtr_store_txn_end(t);
    if (rc) {
        rtr_free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;   /* ascending: documents are visited in id order */
}

/* 1 for the training chunks that get their own text as a neighbour. */
static int self_pick(const rtr_dataset *ds, int64_t c) {
    uint64_t z = rtr_mix64((uint64_t)c * 0x9E3779B97F4A7C15ull ^ (ds->seed + 0x632BE59BD9B4E019ull));
    return rtr_unit53(z) < ds->rate_now;
}

/* The self-neighbour's offset from the chunk's start: uniform in [-S, S]. */
static int self_delta(const rtr_dataset *ds, int64_t c) {
    if (!ds->self_shift) return 0;
    uint64_t z = rtr_mix64((uint64_t)c * 0xD1B54A32D192ED03ull ^ (ds->seed + 0x8CB92BA72F3D8DD7ull));
    return (int)(z % (uint64_t)(2 * ds->self_shift + 1)) - ds->self_shift;
}

/* nb (RTR_NBR_TOKENS) = chunk c's own document from delta tokens after the chunk's start;
 * -1 outside the document. Chunks of a document are consecutive in the split
 * and only its last one is short, so offsets map onto (chunk, token). */
static void self_neighbour(const split *s, int64_t c, int delta, int32_t *nb) {
    for (int t = 0; t < RTR_NBR_TOKENS; t++) {
        int64_t p = (int64_t)delta + t, cc = c + (p >= 0 ? p / RTR_CHUNK_TOKENS : -((-p + RTR_CHUNK_TOKENS - 1) / RTR_CHUNK_TOKENS));
        int j = (int)(p - (cc - c) * RTR_CHUNK_TOKENS);
        nb[t] = cc >= 0 && cc < s->n_chunks && s->doc[cc] == s->doc[c] ? s->tok[(size_t)cc * RTR_CHUNK_TOKENS + j] : -1;
    }
}

void rtr_dataset_at_step(void *ctx, int64_t step, int64_t steps) {
    rtr_dataset *ds = ctx;
    ds->rate_now = ds->self_anneal && steps > 0 ? ds->self_rate * (1.0 - (double)step / (double)steps) : ds->self_rate;
}

/* Sequence i of a split: chunks [i*Lc, (i+1)*Lc); chunks past the split's
 * end are padding (targets -1). */
int rtr_dataset_get(void *ctx, int sp, int64_t i, int32_t *idx, int32_t *targets, int32_t *nbr, double *bytes) {
    rtr_dataset *ds = ctx;
    const split *s = &ds->sp[sp];
    double by = 0;
    size_t nb = (size_t)ds->K * RTR_NBR_TOKENS;
    for (int u = 0; u < ds->Lc; u++) {
        int64_t c = i * ds->Lc + u;
        int32_t *in = idx + u * RTR_CHUNK_TOKENS, *tg = targets + u * RTR_CHUNK_TOKENS;
        if (c >= s->n_chunks) {
            for (int j = 0; j < RTR_CHUNK_TOKENS; j++) {
                in[j] = ds->eod;
                tg[j] = -1;
            }
            if (nbr)
                for (size_t j = 0; j < nb; j++) nbr[u * nb + j] = -1;
            continue;
        }
        const int32_t *tk = s->tok + (size_t)c * RTR_CHUNK_TOKENS;
        for (int j = 0; j < RTR_CHUNK_TOKENS; j++) {
            in[j] = tk[j] >= 0 ? tk[j] : ds->eod;
            tg[j] = tk[j] < 0 ? -1 : j + 1 < RTR_CHUNK_TOKENS && tk[j + 1] >= 0 ? tk[j + 1] : s->next[c];
            if (tg[j] >= 0) by += ds->tok_bytes[tg[j]];
        }
        if (nbr) {
            memcpy(nbr + u * nb, s->nbr + (size_t)c * nb, nb * sizeof *nbr);
            if (sp == RTR_SPLIT_TRAIN && ds->rate_now > 0 && self_pick(ds, c))
                self_neighbour(s, c, self_delta(ds, c), nbr + u * nb + (size_t)(ds->K - 1) * RTR_NBR_TOKENS);
        }
    }
    *bytes = by;
    return RTR_OK;
}

static int dataset_new(const rtr_tokenizer *tk, const rtr_dataset_opts *o, rtr_dataset **out) {
    *out = NULL;
    if (o->T < RTR_CHUNK_TOKENS || o->T % RTR_CHUNK_TOKENS)
        return rtr_seterr(RTR_E_INVALID, "the context (%d) must be a multiple of the chunk size %d", o->T, RTR_CHUNK_TOKENS);
    rtr_dataset *ds = rtr_calloc(1, sizeof *ds);
    if (!ds) return rtr_seterr(RTR_E_NOMEM, "dataset: out of memory");
    ds->T = o->T;
    ds->Lc = o->T / RTR_CHUNK_TOKENS;
    ds->K = o->K;
    ds->self_rate = ds->rate_now = o->self_rate;
    ds->self_anneal = o->self_anneal;
    ds->self_shift = o->self_shift;
    ds->align = o->align;
    ds->seed = o->seed;
    ds->V = (int)rtr_tokenizer_vocab_size(tk);
    ds->eod = (int32_t)rtr_tokenizer_eod(tk);
    if (!(ds->tok_bytes = rtr_tokenizer_byte_lengths(tk))) {
        rtr_free(ds);
        return RTR_E_NOMEM;
    }
    *out = ds;
    return RTR_OK;
}

/* The chunks loaded: no training documents is an error; then the neighbours, validation documents
 * (ex, n_ex) excluded. */
static int dataset_finish(rtr_dataset *ds, const char *dir, const nbr_source *src, const uint64_t *ex, size_t n_ex,
                          const rtr_dataset_opts *o) {
    if (ds->sp[0].n_chunks == 0)
        return rtr_seterr(RTR_E_INVALID, "%s: no training documents (%" PRId64 " in the validation split)", dir,
                          ds->sp[1].n_docs);
    return o->K > 0 ? find_neighbours(ds, src, ex, n_ex, o->retriever, o->progress, o->comm) : RTR_OK;
}

int rtr_dataset_build(rtr_kb *kb, rtr_retriever *r, const rtr_dataset_opts *o, rtr_dataset **out) {
    rtr_dataset *ds;
    uint64_t *ex = NULL;
    size_t n_ex = 0;
    int rc = dataset_new(rtr_kb_tokenizer(kb), o, &ds);
    if (rc) return rc;
    nbr_source src = {r, NULL};
    if (!(rc = load_chunks(ds, kb, 0, o->val_frac)) && o->K > 0) rc = rtr_dataset_val_docs(kb, o->val_frac, &ex, &n_ex);
    if (!rc) rc = dataset_finish(ds, rtr_kb_dir(kb), &src, ex, n_ex, o);
    rtr_free(ex);
    if (rc) {
        rtr_dataset_free(ds);
        return rc;
    }
    *out = ds;
    return RTR_OK;
}

/* Appends partition p's validation documents (the knowledge base's ids, ascending after those of the
 * partitions before it) to *ex. */
static int add_val_docs(rtr_kb *kb, uint32_t p, double val_frac, uint64_t **ex, size_t *n_ex, size_t *cap) {
    uint64_t *v = NULL;
    size_t nv = 0;
    int rc = rtr_dataset_val_docs(kb, val_frac, &v, &nv);
    for (size_t i = 0; i < nv && !rc; i++) {
        if ((rc = RTR_GROW(*ex, cap, *n_ex + 1))) break;
        (*ex)[(*n_ex)++] = rtr_part_id(p, v[i]);
    }
    rtr_free(v);
    return rc;
}

int rtr_dataset_val_docs_parts(rtr_parts *ps, double val_frac, uint64_t **ids, size_t *n) {
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    int rc = RTR_OK;
    for (uint32_t p = 0; p < rtr_parts_count(ps) && !rc; p++) {
        rtr_kb *kb = rtr_parts_kb(ps, p), *opened = NULL;
        if (!kb) rc = rtr_parts_open_one(ps, p, &opened), kb = opened;
        if (!rc) rc = add_val_docs(kb, p, val_frac, ids, n, &cap);
        rtr_kb_close(opened);
    }
    if (rc) {
        rtr_free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

int rtr_dataset_build_parts(rtr_parts *ps, rtr_multi *m, const rtr_dataset_opts *o, rtr_dataset **out) {
    rtr_dataset *ds;
    uint64_t *ex = NULL;
    size_t n_ex = 0, cap = 0;
    int rc = dataset_new(rtr_parts_tokenizer(ps), o, &ds);
    if (rc) return rc;
    /* every partition's documents, in partition order, read by every rank (from the directory they share) */
    for (uint32_t p = 0; p < rtr_parts_count(ps) && !rc; p++) {
        rtr_kb *kb = rtr_parts_kb(ps, p), *opened = NULL;
        if (!kb) rc = rtr_parts_open_one(ps, p, &opened), kb = opened;
        if (!rc) rc = load_chunks(ds, kb, p, o->val_frac);
        if (!rc && o->K > 0) rc = add_val_docs(kb, p, o->val_frac, &ex, &n_ex, &cap);
        rtr_kb_close(opened);
    }
    nbr_source src = {NULL, m};
    rc = rtr_comm_agree(o->comm ? o->comm : rtr_parts_comm(ps), rc);
    if (!rc) rc = dataset_finish(ds, rtr_parts_dir(ps), &src, ex, n_ex, o);
    rtr_free(ex);
    if (rc) {
        rtr_dataset_free(ds);
        return rc;
    }
    *out = ds;
    return RTR_OK;
}

void rtr_dataset_free(rtr_dataset *d) {
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

int64_t rtr_dataset_sequences(const rtr_dataset *d, int sp) { return (d->sp[sp].n_chunks + d->Lc - 1) / d->Lc; }

void rtr_dataset_counts(const rtr_dataset *d, int sp, int64_t *chunks, int64_t *docs, int64_t *tokens) {
    *chunks = d->sp[sp].n_chunks;
    *docs = d->sp[sp].n_docs;
    *tokens = d->sp[sp].n_tokens;
}
