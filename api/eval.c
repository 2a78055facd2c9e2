/* eval.c - the public API's evaluation: bits per byte of models on held-out documents, with retrieval on
 * and off, and the leakage filter (include/retro.h). */
#define _GNU_SOURCE
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "index/parts.h"
#include "lib/alloc.h"
#include "lib/comm.h"
#include "lib/io.h"
#include "lib/sort.h"
#include "lib/split.h"
#include "lib/status.h"
#include "model/eval.h"
#include "retriever/dataset.h"

#define MAX_MODELS 8
#define EVAL_BATCH 8   /* windows per forward pass */

typedef struct run_acc {
    rtr_eval_counts c;
    double a_nats[RTR_EVAL_N_ALPHA], a_bytes[RTR_EVAL_N_ALPHA];
} run_acc;

typedef struct ev {
    retro_model *const *models;
    int n_models;
    retro_eval_result *res;
    run_acc acc[RETRO_EVAL_MAX_RUNS];
    const rtr_tokenizer *tok;
    float *tok_bytes;
    rtr_live live;
    int leak, stride, kk;
    int lead;          /* the first RETRO model: its retriever finds every model's neighbours */
    rtr_kb **src;      /* (n_src) the stores the documents come from: the knowledge base, or each partition */
    rtr_kb **opened;   /* (n_src) those opened here (another rank's partitions), closed at the end */
    uint32_t n_src;
} ev;

/* Neighbours (kk each) of every chunk of x, their scores and the chunks' overlaps. */
static int neighbours(ev *e, const int32_t *x, int64_t n, uint64_t self, int32_t **nbr_out, int32_t **al_out,
                      float **sc_out, double **ov_out) {
    int kk = e->kk;
    uint32_t align = e->res->align_run;
    int64_t nch = (n + RTR_CHUNK_TOKENS - 1) / RTR_CHUNK_TOKENS;
    int32_t *chunks = rtr_malloc((size_t)nch * RTR_CHUNK_TOKENS * sizeof *chunks);
    int32_t *nbr = rtr_malloc((size_t)nch * kk * RTR_NBR_TOKENS * sizeof *nbr);
    int32_t *al = align ? rtr_malloc((size_t)nch * kk * RTR_NBR_TOKENS * sizeof *al) : NULL;
    float *sc = rtr_malloc((size_t)nch * kk * sizeof *sc);
    double *ov = rtr_malloc((size_t)nch * sizeof *ov);
    int rc = chunks && nbr && sc && ov && (al || !align) ? RTR_OK : rtr_seterr(RTR_E_NOMEM, "eval: out of memory");
    /* a short last chunk is searched with its padding: a small, honest cost */
    for (int64_t i = 0; !rc && i < nch * RTR_CHUNK_TOKENS; i++) chunks[i] = i < n ? x[i] : 0;
    e->live.k = (uint32_t)kk;
    e->live.exclude_doc = e->leak ? 0 : self;
    for (int64_t lo = 0; !rc && lo < nch; lo += 1024) {
        int cnt = (int)(nch - lo < 1024 ? nch - lo : 1024);
        rc = rtr_live_retrieve_scored(&e->live, chunks + lo * RTR_CHUNK_TOKENS, cnt, lo, nbr + (size_t)lo * kk * RTR_NBR_TOKENS,
                                      sc + (size_t)lo * kk, al ? al + (size_t)lo * kk * RTR_NBR_TOKENS : NULL, align);
    }
    if (!rc) {
        rtr_eval_overlap(x, n, RTR_CHUNK_TOKENS, nbr, kk, RTR_NBR_TOKENS, ov);
        e->res->chunks += nch;
        for (int64_t u = 0; u < nch; u++)
            for (int a = 0; a < RTR_EVAL_N_ALPHA; a++) e->res->alpha_chunks[a] += ov[u] <= rtr_eval_alpha[a] + 1e-9;
    }
    rtr_free(chunks);
    if (rc) {
        rtr_free(nbr);
        rtr_free(al);
        rtr_free(sc);
        rtr_free(ov);
        return rc;
    }
    *nbr_out = nbr;
    *al_out = al;
    *sc_out = sc;
    *ov_out = ov;
    return RTR_OK;
}

/* Every run over one document. */
static int eval_doc(ev *e, const int32_t *x, int64_t n, const int32_t *nbr, const int32_t *al, const float *sc,
                    const double *ov) {
    int64_t nch = (n + RTR_CHUNK_TOKENS - 1) / RTR_CHUNK_TOKENS;
    double *cn = rtr_malloc((size_t)nch * sizeof *cn), *cb = rtr_malloc((size_t)nch * sizeof *cb);
    int rc = cn && cb ? RTR_OK : rtr_seterr(RTR_E_NOMEM, "eval: out of memory");
    for (int ri = 0; !rc && ri < e->res->n_runs; ri++) {
        retro_eval_run *r = &e->res->runs[ri];
        retro_model *m = e->models[r->model];
        const int32_t *nb = !r->retrieval ? NULL : m->lm.align ? al : nbr;
        int B = m->max_B < EVAL_BATCH ? m->max_B : EVAL_BATCH;
        run_acc *a = &e->acc[ri];
        rc = rtr_eval_document(m->lm.model, x, n, nb, sc, e->kk, r->min_score, e->stride, B, e->tok_bytes,
                               (int32_t)rtr_tokenizer_eod(e->tok), cn, cb, &a->c);
        for (int64_t u = 0; !rc && u < nch; u++)
            for (int k = 0; k < RTR_EVAL_N_ALPHA; k++)
                if (ov[u] <= rtr_eval_alpha[k] + 1e-9) {
                    a->a_nats[k] += cn[u];
                    a->a_bytes[k] += cb[u];
                }
    }
    rtr_free(cn);
    rtr_free(cb);
    return rc;
}

/* The models, their runs and the alignment and retriever they share. */
static int plan_runs(ev *e, const retro_eval_opts *o) {
    retro_eval_result *res = e->res;
    e->kk = RTR_EVAL_LEAK_K;
    e->lead = -1;
    for (int i = 0; i < e->n_models; i++) {
        const retro_model *m = e->models[i];
        const rtr_model_config *c = rtr_model_cfg(m->lm.model);
        if (i && strcmp(m->lm.tok_hash, e->models[0]->lm.tok_hash))
            return rtr_seterr(RTR_E_MISMATCH, "model %d and model 1 use different tokenizers", i + 1);
        int lr = e->lead >= 0 ? e->models[e->lead]->lm.retriever : 0;
        if (c->n_cca && lr && m->lm.retriever != lr)
            return rtr_seterr(RTR_E_MISMATCH, "model %d reads %s neighbours, model %d %s ones: "
                              "evaluate them separately", i + 1, rtr_ckpt_retriever_name(m->lm.retriever), e->lead + 1,
                              rtr_ckpt_retriever_name(lr));
        if (c->n_cca && e->lead < 0) e->lead = i;
        if (m->lm.align && res->align_run && m->lm.align != res->align_run)
            return rtr_seterr(RTR_E_MISMATCH, "model %d aligns neighbours at runs of %u tokens, another model at %u: "
                              "evaluate them separately", i + 1, m->lm.align, res->align_run);
        if (m->lm.align && c->n_cca) res->align_run = m->lm.align;
        if (c->n_cca && (c->m != RTR_CHUNK_TOKENS || c->R != RTR_NBR_TOKENS))
            return rtr_seterr(RTR_E_INVALID, "model %d: retrieval needs chunks of %d tokens", i + 1, RTR_CHUNK_TOKENS);
        if (c->K > e->kk) e->kk = c->K;
        int ns = o->n_min_scores > 0 ? o->n_min_scores : 1;
        for (int j = 0; c->n_cca && j < ns; j++)
            res->runs[res->n_runs++] = (retro_eval_run){.model = i, .retrieval = 1, .aligned = m->lm.align != 0,
                                                        .retriever = m->lm.retriever,
                                                        .min_score = o->n_min_scores ? o->min_scores[j] : -INFINITY};
        res->runs[res->n_runs++] = (retro_eval_run){.model = i, .retrieval = 0, .min_score = -INFINITY};
    }
    return RTR_OK;
}

/* What is never retrieved: the caller's documents and, when evaluating kb's
 * documents (unless leak), every validation document. Sorted. */
static int exclusions(retro_kb *kb, const retro_eval_opts *o, double val_frac, uint64_t **ex, size_t *n_ex) {
    uint64_t *val = NULL;
    size_t nv = 0;
    int rc = o->split == RETRO_EVAL_FILES || o->leak ? RTR_OK
             : kb->kb ? rtr_dataset_val_docs(kb->kb, val_frac, &val, &nv)
                      : rtr_dataset_val_docs_parts(kb->ps, val_frac, &val, &nv);
    *n_ex = 0;
    *ex = rc ? NULL : rtr_malloc((o->n_exclude + nv + 1) * sizeof **ex);
    if (!rc && !*ex) rc = RTR_E_NOMEM;
    if (!rc) {
        if (o->n_exclude) memcpy(*ex, o->exclude_docs, o->n_exclude * sizeof **ex);
        if (nv) memcpy(*ex + o->n_exclude, val, nv * sizeof **ex);
        *n_ex = o->n_exclude + nv;
        qsort(*ex, *n_ex, sizeof **ex, rtr_cmp_u64);
    }
    rtr_free(val);
    return rc;
}

/* The next document to evaluate: its tokens x (n), and its id in kb (self, 0 if none; a knowledge base
 * of partitions': partition after partition, ids with their partition). 0: no more. */
static int next_doc(ev *e, const retro_eval_opts *o, double val_frac, rtr_encoder *enc, int64_t di,
                    uint64_t *after, int32_t **x, int64_t *n, uint64_t *self) {
    *x = NULL;
    *n = 0;
    *self = 0;
    rtr_store_txn *t = NULL;
    int rc;
    for (uint32_t p = rtr_part_of_id(*after); o->split != RETRO_EVAL_FILES && p < e->n_src; p++) {
        if ((rc = rtr_store_read_begin(rtr_kb_store(e->src[p]), &t))) return rc;
        rtr_doc d;
        int found = 0;
        uint64_t local = rtr_part_of_id(*after) == p ? rtr_part_local(*after) : 0;
        while (rtr_store_next_doc(t, local, &d) == RTR_OK) {
            local = d.id;
            *after = rtr_part_id(p, d.id);
            if (rtr_split_is_val(d.content_hash, val_frac) == (o->split == RETRO_EVAL_VAL)) {
                found = 1;
                break;
            }
        }
        if (found) {
            *self = rtr_part_id(p, d.id);
            if (!(*x = rtr_malloc((d.n_tokens + 1) * sizeof **x))) rc = rtr_seterr(RTR_E_NOMEM, "eval: out of memory");
            for (uint32_t ci = 0; !rc && ci < d.n_chunks; ci++) {
                rtr_chunk ch;
                if ((rc = rtr_store_get_chunk(t, d.first_chunk + ci, &ch))) break;
                for (uint32_t j = 0; j < ch.n_tokens && *n < (int64_t)d.n_tokens; j++) (*x)[(*n)++] = (int32_t)ch.tokens[j];
            }
        }
        rtr_store_txn_end(t);
        if (rc || found) return rc ? rc : 1;
    }
    if (o->split != RETRO_EVAL_FILES) return 0;
    if (di >= (int64_t)o->n_files) return 0;
    const char *path = o->files[di];
    uint8_t *data;
    size_t len;
    rtr_u32vec ids = {0};
    if ((rc = rtr_read_file(path, (size_t)1 << 30, &data, &len))) return rc;
    rc = rtr_encoder_encode(enc, data, len, &ids);
    rtr_free(data);
    *x = (int32_t *)ids.data;
    *n = (int64_t)ids.len;
    /* the same file in the knowledge base is the evaluated document (in the partition its path names) */
    char real[PATH_MAX];
    uint32_t fp = 0;
    if (!rc && realpath(path, real) && !rtr_store_read_begin(rtr_kb_store(e->src[fp = rtr_part_of_path(real, e->n_src)]), &t)) {
        uint64_t *dids = NULL;
        size_t nd = 0;
        if (!rtr_store_file_docs(t, real, &dids, &nd) && nd) *self = rtr_part_id(fp, dids[0]);
        rtr_free(dids);
        rtr_store_txn_end(t);
    }
    return rc ? rc : 1;
}

/* One sum of a reduction over the ranks: put into *p (get 0) or taken back from it (get 1). */
static void sum_f(double **p, double *x, int get) {
    if (get) *x = **p;
    else **p = *x;
    ++*p;
}
static void sum_i(double **p, int64_t *x, int get) {   /* counts: exact in a double below 2^53 */
    if (get) *x = (int64_t)**p;
    else **p = (double)*x;
    ++*p;
}

/* Under mpirun: every rank's sums (each run's counts, the overlaps' chunks) summed over the ranks. */
static int reduce_ranks(ev *e, rtr_comm *comm) {
    size_t n = (size_t)e->res->n_runs * (5 + 2 * RTR_EVAL_N_ALPHA) + 1 + RTR_EVAL_N_ALPHA;
    double *v = rtr_calloc(n, sizeof *v);
    int rc = rtr_comm_agree(comm, v ? RTR_OK : RTR_E_NOMEM);
    for (int get = 0; get < 2 && !rc; get++) {
        double *p = v;
        for (int i = 0; i < e->res->n_runs; i++) {
            run_acc *a = &e->acc[i];
            sum_f(&p, &a->c.nats, get), sum_f(&p, &a->c.bytes, get);
            sum_i(&p, &a->c.tokens, get), sum_i(&p, &a->c.nbr_read, get), sum_i(&p, &a->c.nbr_all, get);
            for (int k = 0; k < RTR_EVAL_N_ALPHA; k++) sum_f(&p, &a->a_nats[k], get), sum_f(&p, &a->a_bytes[k], get);
        }
        sum_i(&p, &e->res->chunks, get);
        for (int k = 0; k < RTR_EVAL_N_ALPHA; k++) sum_i(&p, &e->res->alpha_chunks[k], get);
        if (!get) rc = rtr_comm_sum_f64(comm, v, n);
    }
    rtr_free(v);
    return rc;
}

int retro_eval(retro_model *const *models, int n, retro_kb *kb, const retro_eval_opts *o, retro_eval_result *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || n > MAX_MODELS) return rtr_seterr(RTR_E_INVALID, "eval: 1 to %d models", MAX_MODELS);
    if (o->n_min_scores < 0 || o->n_min_scores > 8) return rtr_seterr(RTR_E_INVALID, "eval: at most 8 minimum scores");
    if (o->stride && (o->stride < RTR_CHUNK_TOKENS || o->stride % RTR_CHUNK_TOKENS))
        return rtr_seterr(RTR_E_INVALID, "eval: the stride must be a multiple of %d", RTR_CHUNK_TOKENS);
    ev *e = rtr_calloc(1, sizeof *e);
    if (!e) return RTR_E_NOMEM;
    e->models = models;
    e->n_models = n;
    e->res = out;
    e->leak = o->leak;
    e->stride = o->stride;
    e->tok = models[0]->lm.tok;
    double val_frac = o->val_frac > 0 ? o->val_frac : 0.05;
    uint64_t *ex = NULL;
    size_t n_ex = 0;
    rtr_encoder *enc = NULL;
    int rc = plan_runs(e, o);
    rtr_api_held *held = NULL;
    if (!rc) rc = rtr_api_live(models[e->lead >= 0 ? e->lead : 0], kb, &e->live, &held);
    if (!rc && !(e->tok_bytes = rtr_tokenizer_byte_lengths(e->tok))) rc = RTR_E_NOMEM;
    /* the documents' stores: every partition's, on every rank (they share the directory) */
    e->n_src = kb->ps ? rtr_parts_count(kb->ps) : 1;
    e->src = rtr_calloc(e->n_src, sizeof *e->src);
    e->opened = rtr_calloc(e->n_src, sizeof *e->opened);
    if (!rc && (!e->src || !e->opened)) rc = RTR_E_NOMEM;
    for (uint32_t p = 0; !rc && p < e->n_src; p++) {
        e->src[p] = kb->ps ? rtr_parts_kb(kb->ps, p) : kb->kb;
        if (!e->src[p] && !(rc = rtr_parts_open_one(kb->ps, p, &e->opened[p]))) e->src[p] = e->opened[p];
    }
    if (!rc) rc = exclusions(kb, o, val_frac, &ex, &n_ex);
    e->live.exclude = ex;
    e->live.n_exclude = n_ex;
    if (!rc) rc = rtr_encoder_new(e->tok, &enc);
    uint64_t after = 0;
    int64_t max_docs = o->max_docs > 0 ? o->max_docs : INT64_MAX;
    /* under mpirun (lib/comm.h): every rank walks the documents; the n-th is scored by rank n mod ranks */
    rtr_comm *comm = rtr_comm_world();
    int rank = rtr_comm_rank(comm), size = rtr_comm_size(comm);
    for (int64_t di = 0; !rc && out->documents < max_docs; di++) {
        int32_t *x;
        int64_t len;
        uint64_t self;
        int more = next_doc(e, o, val_frac, enc, di, &after, &x, &len, &self);
        if (more <= 0) {
            rc = more;
            rtr_free(x);
            break;
        }
        if (len >= 2) {
            int32_t *nbr = NULL, *al = NULL;
            float *sc = NULL;
            double *ov = NULL;
            if (out->documents % size == rank) {
                rc = neighbours(e, x, len, self, &nbr, &al, &sc, &ov);
                if (!rc) rc = eval_doc(e, x, len, nbr, al, sc, ov);
            } else if (e->live.m) {   /* over partitions: each of the owner's retrievals is every rank's */
                e->live.k = (uint32_t)e->kk;   /* as neighbours() asks */
                int64_t nch = (len + RTR_CHUNK_TOKENS - 1) / RTR_CHUNK_TOKENS;
                for (int64_t lo = 0; !rc && lo < nch; lo += 1024) rc = rtr_live_follow(&e->live, e->res->align_run);
            }
            rtr_free(nbr);
            rtr_free(al);
            rtr_free(sc);
            rtr_free(ov);
            out->documents++;
            if (o->on_document && rank == 0) o->on_document(o->ctx, out->documents);
        }
        rtr_free(x);
    }
    if (size > 1 && !(rc = rtr_comm_agree(comm, rc))) rc = reduce_ranks(e, comm);
    if (!rc && out->documents == 0) rc = rtr_seterr(RTR_E_INVALID, "eval: no documents to evaluate");
    for (int a = 0; a < RTR_EVAL_N_ALPHA; a++) out->alpha[a] = rtr_eval_alpha[a];
    for (int i = 0; !rc && i < out->n_runs; i++) {
        retro_eval_run *r = &out->runs[i];
        const run_acc *a = &e->acc[i];
        r->tokens = a->c.tokens;
        r->bytes = a->c.bytes;
        r->loss = a->c.nats / (double)a->c.tokens;
        r->perplexity = exp(r->loss);
        r->bpb = a->c.nats / log(2.0) / a->c.bytes;
        r->read = r->retrieval && a->c.nbr_all ? (double)a->c.nbr_read / (double)a->c.nbr_all : NAN;
        for (int k = 0; k < RTR_EVAL_N_ALPHA; k++)
            r->leak_bpb[k] = a->a_bytes[k] > 0 ? a->a_nats[k] / log(2.0) / a->a_bytes[k] : NAN;
    }
    rtr_encoder_free(enc);
    rtr_api_release(kb, held);
    for (uint32_t p = 0; e->opened && p < e->n_src; p++) rtr_kb_close(e->opened[p]);
    rtr_free(e->opened);
    rtr_free(e->src);
    rtr_free(e->tok_bytes);
    rtr_free(ex);
    rtr_free(e);
    return rc;
}
