/* train.c - the public API's training runs: a baseline, a RETRO model or a RETRO-fitted baseline on a
 * knowledge base's documents, with the run's settings recorded so that a resume continues it exactly
 * (include/retro.h). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"
#include "model/train.h"
#include "index/parts.h"
#include "retriever/dataset.h"
#include "retriever/multi.h"

static const char *const MODE_NAMES[] = {"retro", "baseline", "fit"};

void retro_train_opts_default(retro_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->mode = RETRO_TRAIN_RETRO;
    o->steps = o->warmup = o->seed = o->eval_every = o->eval_seqs = o->save_every = RETRO_UNSET;
    o->batch = o->self_anneal = o->self_shift = o->align = o->n_cca = RETRO_UNSET;
    o->lr = o->weight_decay = o->clip = o->val_frac = o->self_neighbours = RETRO_UNSET;
    o->progress = 1;
}

/* The settings a training checkpoint records, so that a resume continues the
 * same run: metadata keys, in this order. */
enum { S_SEED, S_BATCH, S_STEPS, S_LR, S_WARMUP, S_WD, S_CLIP, S_VAL, S_SELF, S_ANNEAL, S_EVAL, S_EVALSEQ, S_SAVE,
       S_SHIFT, S_ALIGN, N_SETTINGS };
static const char *const SETTING_KEYS[N_SETTINGS] = {"seed",     "batch",           "steps",       "lr",
                                                     "warmup",   "weight_decay",    "clip",        "val_frac",
                                                     "self_neighbours", "self_anneal", "eval_every", "eval_seqs",
                                                     "save_every", "self_shift", "align"};

typedef struct run {
    rtr_train_opts to;
    double val_frac;
    rtr_dataset_opts dopt;
    uint8_t given[N_SETTINGS];   /* set by the caller: a resume keeps it */
} run;

/* The defaults, then what the caller set. */
static void run_settings(const retro_train_opts *o, run *r) {
    rtr_train_opts *to = &r->to;
    to->B = 4;
    to->steps = 1000;
    to->lr = 1e-3f;
    to->seed = 1;
    to->eval_every = 100;
    to->eval_seqs = 64;
    to->save_every = 200;
    rtr_adamw_default(&to->hp);
    r->val_frac = 0.05;
#define SET(i, cond, stmt) if (cond) { stmt; r->given[i] = 1; }
    SET(S_SEED, o->seed >= 0, to->seed = (uint64_t)o->seed)
    SET(S_BATCH, o->batch >= 0, to->B = o->batch)
    SET(S_STEPS, o->steps >= 0, to->steps = o->steps)
    SET(S_LR, o->lr >= 0, to->lr = (float)o->lr)
    SET(S_WARMUP, o->warmup >= 0, to->warmup = o->warmup)
    SET(S_WD, o->weight_decay >= 0, to->hp.weight_decay = (float)o->weight_decay)
    SET(S_CLIP, o->clip >= 0, to->hp.clip = (float)o->clip)
    SET(S_VAL, o->val_frac >= 0, r->val_frac = o->val_frac)
    SET(S_SELF, o->self_neighbours >= 0, r->dopt.self_rate = o->self_neighbours)
    SET(S_ANNEAL, o->self_anneal >= 0, r->dopt.self_anneal = o->self_anneal)
    SET(S_EVAL, o->eval_every >= 0, to->eval_every = o->eval_every)
    SET(S_EVALSEQ, o->eval_seqs >= 0, to->eval_seqs = o->eval_seqs)
    SET(S_SAVE, o->save_every >= 0, to->save_every = o->save_every)
    SET(S_SHIFT, o->self_shift >= 0, r->dopt.self_shift = o->self_shift)
    SET(S_ALIGN, o->align >= 0, r->dopt.align = (uint32_t)o->align)
#undef SET
    if (!r->given[S_WARMUP]) to->warmup = to->steps / 20;
}

static int check_settings(const run *r) {
    const rtr_train_opts *to = &r->to;
    if (to->B < 1 || to->B > 4096) return rtr_seterr(RTR_E_INVALID, "train: batch must be 1..4096");
    if (to->steps < 1) return rtr_seterr(RTR_E_INVALID, "train: steps must be positive");
    if (!(to->lr > 0 && to->lr < 10)) return rtr_seterr(RTR_E_INVALID, "train: bad learning rate");
    if (!(r->val_frac >= 0 && r->val_frac < 1)) return rtr_seterr(RTR_E_INVALID, "train: val_frac must be in [0, 1)");
    if (!(r->dopt.self_rate >= 0 && r->dopt.self_rate <= 1))
        return rtr_seterr(RTR_E_INVALID, "train: self_neighbours must be in [0, 1]");
    if (r->dopt.self_shift < 0 || r->dopt.self_shift > 64 || r->dopt.align > 64)
        return rtr_seterr(RTR_E_INVALID, "train: self_shift and align must be 0..64");
    return RTR_OK;
}

static void settings_meta(const run *r, char sv[][40], const char **kv) {
    const rtr_train_opts *o = &r->to;
    snprintf(sv[S_SEED], 40, "%" PRIu64, o->seed);
    snprintf(sv[S_BATCH], 40, "%d", o->B);
    snprintf(sv[S_STEPS], 40, "%" PRId64, o->steps);
    snprintf(sv[S_LR], 40, "%.9g", o->lr);
    snprintf(sv[S_WARMUP], 40, "%" PRId64, o->warmup);
    snprintf(sv[S_WD], 40, "%.9g", o->hp.weight_decay);
    snprintf(sv[S_CLIP], 40, "%.9g", o->hp.clip);
    snprintf(sv[S_VAL], 40, "%.17g", r->val_frac);
    snprintf(sv[S_SELF], 40, "%.17g", r->dopt.self_rate);
    snprintf(sv[S_ANNEAL], 40, "%d", r->dopt.self_anneal);
    snprintf(sv[S_SHIFT], 40, "%d", r->dopt.self_shift);
    snprintf(sv[S_ALIGN], 40, "%u", r->dopt.align);
    snprintf(sv[S_EVAL], 40, "%" PRId64, o->eval_every);
    snprintf(sv[S_EVALSEQ], 40, "%" PRId64, o->eval_seqs);
    snprintf(sv[S_SAVE], 40, "%" PRId64, o->save_every);
    for (int i = 0; i < N_SETTINGS; i++) {
        kv[2 * i] = SETTING_KEYS[i];
        kv[2 * i + 1] = sv[i];
    }
}

/* Reads the recorded settings of file's checkpoint, except those the caller gave. */
static int resume_settings(const rtr_safetensors *st, const char *file, run *r) {
    rtr_train_opts *o = &r->to;
    rtr_dataset_opts *d = &r->dopt;
    for (int i = 0; i < N_SETTINGS; i++) {
        const char *v = rtr_st_meta(st, SETTING_KEYS[i]);
        if (!v || r->given[i]) continue;
        char *end;
        double x = strtod(v, &end);
        if (*end || end == v || !(x >= 0) || x > 1e15)
            return rtr_seterr(RTR_E_CORRUPT, "%s: bad %s \"%s\"", file, SETTING_KEYS[i], v);
        switch (i) {
        case S_SEED: o->seed = strtoull(v, NULL, 10); break;
        case S_BATCH:
            if (x < 1 || x > 4096) return rtr_seterr(RTR_E_CORRUPT, "%s: bad batch %s", file, v);
            o->B = (int)x;
            break;
        case S_STEPS: o->steps = (int64_t)x; break;
        case S_LR: o->lr = (float)x; break;
        case S_WARMUP: o->warmup = (int64_t)x; break;
        case S_WD: o->hp.weight_decay = (float)x; break;
        case S_CLIP: o->hp.clip = (float)x; break;
        case S_VAL:
            if (x >= 1) return rtr_seterr(RTR_E_CORRUPT, "%s: bad val_frac %s", file, v);
            r->val_frac = x;
            break;
        case S_SELF:
            if (x > 1) return rtr_seterr(RTR_E_CORRUPT, "%s: bad self_neighbours %s", file, v);
            d->self_rate = x;
            break;
        case S_ANNEAL:
            if (x > 1) return rtr_seterr(RTR_E_CORRUPT, "%s: bad self_anneal %s", file, v);
            d->self_anneal = (int)x;
            break;
        case S_SHIFT:
            if (x > 64) return rtr_seterr(RTR_E_CORRUPT, "%s: bad self_shift %s", file, v);
            d->self_shift = (int)x;
            break;
        case S_ALIGN:
            if (rtr_ckpt_align_meta(v, file, &d->align) < 0) return RTR_E_CORRUPT;
            break;
        case S_EVAL: o->eval_every = (int64_t)x; break;
        case S_EVALSEQ: o->eval_seqs = (int64_t)x; break;
        case S_SAVE: o->save_every = (int64_t)x; break;
        }
    }
    return RTR_OK;
}

/* The requested configuration of a new model (0: the default). */
static void model_config(const retro_train_opts *o, int V, rtr_model_config *cfg) {
    rtr_model_config_default(cfg, V);
    if (o->context) cfg->T = o->context;
    if (o->width) cfg->C = o->width;
    if (o->layers) cfg->L = o->layers;
    if (o->heads) cfg->NH = o->heads;
    if (o->mlp) cfg->F = o->mlp;
    if (o->neighbours) cfg->K = o->neighbours;
    if (o->enc_layers) cfg->EL = o->enc_layers;
    if (o->enc_width) cfg->EC = o->enc_width;
    if (o->enc_heads) cfg->ENH = o->enc_heads;
    if (o->n_cca >= 0) {
        cfg->n_cca = o->n_cca < RTR_MODEL_MAX_LAYERS ? o->n_cca : RTR_MODEL_MAX_LAYERS;
        memcpy(cfg->cca, o->cca, (size_t)cfg->n_cca * sizeof *cfg->cca);
    }
    if (o->mode == RETRO_TRAIN_BASELINE) cfg->n_cca = 0;
}

/* RETRO-fitting: the baseline's decoder with the requested retrieval path. */
static int fit_config(const rtr_model *base, const char *from, const retro_train_opts *o, rtr_model_config *cfg) {
    const rtr_model_config *bc = rtr_model_cfg(base);
    if (bc->n_cca)
        return rtr_seterr(RTR_E_INVALID, "%s: already has cross-attention; RETRO-fitting starts from a baseline", from);
    rtr_model_config fc = *cfg;
    *cfg = *bc;
    cfg->K = fc.K;
    cfg->EL = fc.EL;
    cfg->EC = fc.EC;
    cfg->ENH = fc.ENH;
    cfg->EF = 0;
    cfg->R = 0;
    cfg->n_cca = o->n_cca >= 0 ? fc.n_cca : -1;
    memcpy(cfg->cca, fc.cca, sizeof cfg->cca);
    return RTR_OK;
}

int retro_train(retro_kb *k, const retro_train_opts *o, retro_train_result *out) {
    memset(out, 0, sizeof *out);
    if (!o->out_dir) return rtr_seterr(RTR_E_INVALID, "train: no output directory");
    if (o->mode < RETRO_TRAIN_RETRO || o->mode > RETRO_TRAIN_FIT) return rtr_seterr(RTR_E_INVALID, "train: bad mode");
    if (o->mode == RETRO_TRAIN_FIT && !o->from && !o->resume)
        return rtr_seterr(RTR_E_INVALID, "train: RETRO-fitting needs a baseline (from)");
    if (o->mode != RETRO_TRAIN_BASELINE && o->n_cca == 0)
        return rtr_seterr(RTR_E_INVALID, "train: a model without cross-attention is a baseline");
    if (o->retriever < RETRO_SEARCH_DEFAULT || o->retriever > RETRO_SEARCH_HYBRID)
        return rtr_seterr(RTR_E_INVALID, "train: retriever %d is not vector, lexical or hybrid", o->retriever);
    /* a knowledge base, or one of partitions (index/parts.h): its tokenizer, hash and directory */
    rtr_kb *kb = k->kb;
    const char *kb_dir = kb ? rtr_kb_dir(kb) : rtr_parts_dir(k->ps);
    char kb_hash[33];
    if (kb) snprintf(kb_hash, sizeof kb_hash, "%s", rtr_kb_tokenizer_hash(kb));
    else rtr_tokenizer_hash(rtr_parts_tokenizer(k->ps), kb_hash);
    rtr_multi *multi = NULL;   /* the partitions' retrievers */
    run *r = rtr_calloc(1, sizeof *r);
    if (!r) return RTR_E_NOMEM;
    run_settings(o, r);
    int mode = o->mode, retriever = o->retriever;
    rtr_api_held *held = NULL;
    rtr_dataset *ds = NULL;
    rtr_model *m = NULL, *base = NULL;
    rtr_safetensors *st = NULL;
    FILE *log = NULL;
    char *path = NULL;
    const rtr_tokenizer *tok = kb ? rtr_kb_tokenizer(kb) : rtr_parts_tokenizer(k->ps);
    rtr_model_config cfg;
    model_config(o, (int)rtr_tokenizer_vocab_size(tok), &cfg);
    int rc = RTR_OK;

    /* the model: resumed, fitted from a baseline, or new */
    if (o->resume) {
        path = rtr_ckpt_file(o->out_dir, 1);
        if (!path) rc = RTR_E_NOMEM;
        else if (!rtr_path_exists(path)) rc = rtr_seterr(RTR_E_NOTFOUND, "%s: no training checkpoint to resume", path);
        if (!rc) rc = rtr_st_load(path, &st);
        if (!rc) rc = resume_settings(st, path, r);
        if (!rc && !retriever) rc = rtr_ckpt_retriever_meta(rtr_st_meta(st, "retriever"), path, &retriever);
        if (!rc) rc = rtr_ckpt_from_st(st, path, r->to.B, 0, 1, &m);
        if (rc) goto done;
        const char *mm = rtr_st_meta(st, "mode"), *th = rtr_st_meta(st, "tokenizer");
        if (th && strcmp(th, kb_hash)) {
            rc = rtr_seterr(RTR_E_MISMATCH, "%s: trained with tokenizer %s, %s has %s", o->out_dir, th, kb_dir, kb_hash);
            goto done;
        }
        if (mm) mode = !strcmp(mm, "baseline") ? RETRO_TRAIN_BASELINE : !strcmp(mm, "fit") ? RETRO_TRAIN_FIT
                                                                                              : RETRO_TRAIN_RETRO;
        cfg = *rtr_model_cfg(m);
    } else if (mode == RETRO_TRAIN_FIT) {
        if ((rc = rtr_ckpt_load(o->from, 1, 0, 0, &base, &st)) || (rc = fit_config(base, o->from, o, &cfg))) goto done;
    }
    if ((rc = check_settings(r))) goto done;
    if (cfg.V != (int)rtr_tokenizer_vocab_size(tok)) {
        rc = rtr_seterr(RTR_E_MISMATCH, "the model's vocabulary (%d) is not the tokenizer's of %s (%u)", cfg.V,
                        kb_dir, rtr_tokenizer_vocab_size(tok));
        goto done;
    }
    if (!o->resume) {
        if ((rc = rtr_model_config_finish(&cfg)) || (rc = rtr_model_new(&cfg, r->to.B, &m))) goto done;
        rtr_model_init(m, r->to.seed);
        if (base && (rc = rtr_model_copy_tensors(m, base, o->from))) goto done;
    }
    if (cfg.n_cca && (cfg.m != RTR_CHUNK_TOKENS || cfg.R != RTR_NBR_TOKENS)) {
        rc = rtr_seterr(RTR_E_INVALID, "retrieval needs chunks of %d tokens and neighbours of %d", RTR_CHUNK_TOKENS,
                        RTR_NBR_TOKENS);
        goto done;
    }
    rtr_model_freeze_decoder(m, mode == RETRO_TRAIN_FIT);
    r->to.retrieval = mode != RETRO_TRAIN_BASELINE;

    /* the data */
    if (kb && r->to.retrieval && (rc = rtr_api_acquire(k, &held))) goto done;
    rtr_multi *use = k->multi;   /* the knowledge base's own (under mpirun), or one for this run */
    if (!kb && r->to.retrieval && !use && (rc = rtr_multi_open(k->ps, NULL, &multi))) goto done;
    if (!use) use = multi;
    if (held && !retriever) retriever = rtr_retriever_default_mode(held->r);   /* the knowledge base's setting */
    if (use && !retriever) retriever = RTR_SEARCH_VECTOR;   /* over partitions: the vector neighbours */
    r->dopt.retriever = retriever;
    r->dopt.T = cfg.T;
    r->dopt.K = r->to.retrieval ? cfg.K : 0;
    r->dopt.val_frac = r->val_frac;
    r->dopt.seed = r->to.seed;
    /* under mpirun (lib/comm.h): data parallel; every rank reads the same knowledge base, shares the
     * neighbours' precompute and a step's batch; rank 0 writes the output directory */
    rtr_comm *comm = rtr_comm_world();
    int rank0 = rtr_comm_rank(comm) == 0;
    r->dopt.progress = o->progress && rank0;
    r->dopt.comm = comm;
    rc = kb ? rtr_dataset_build(kb, held ? held->r : NULL, &r->dopt, &ds) : rtr_dataset_build_parts(k->ps, use, &r->dopt, &ds);
    if (rc) goto done;
    rtr_train_source src = {ds, rtr_dataset_sequences(ds, RTR_SPLIT_TRAIN), rtr_dataset_sequences(ds, RTR_SPLIT_VAL),
                            rtr_dataset_get, rtr_dataset_at_step};
    const char *rname = r->to.retrieval ? rtr_ckpt_retriever_name(retriever) : NULL;
    retro_train_plan plan = {MODE_NAMES[mode], rtr_model_nparams(m), mode == RETRO_TRAIN_FIT, {0, 0}, {0, 0},
                             r->val_frac, rname};
    for (int s = 0; s < 2; s++) {
        int64_t ch;
        rtr_dataset_counts(ds, s, &ch, &plan.documents[s], &plan.tokens[s]);
    }
    if (o->on_start && rank0) o->on_start(o->ctx, &plan);

    /* the output directory: tokenizer, log, checkpoints */
    if (rank0 && !(rc = rtr_mkdirs(o->out_dir))) {
        rtr_free(path);
        path = rtr_path_join(o->out_dir, "tokenizer.rtok");
        rc = path ? rtr_tokenizer_save(tok, path) : RTR_E_NOMEM;
        rtr_free(path);
        path = rc ? NULL : rtr_path_join(o->out_dir, "log.jsonl");
        log = path ? fopen(path, o->resume ? "a" : "w") : NULL;
        if (!rc && !log) rc = rtr_seterr(RTR_E_IO, "%s: cannot open the log", path ? path : o->out_dir);
    }
    if ((rc = rtr_comm_agree(comm, rc))) goto done;
    char sv[N_SETTINGS][40];
    /* the retriever (model/ckpt.h) is the model's, not only the run's: evaluation and generation read it */
    const char *kv[2 * (N_SETTINGS + 3)] = {"tokenizer", kb_hash, "mode", MODE_NAMES[mode]};
    settings_meta(r, sv, kv + 4);
    kv[2 * (N_SETTINGS + 2)] = "retriever";
    kv[2 * (N_SETTINGS + 2) + 1] = rname;
    rtr_ckpt_meta meta = {kv, N_SETTINGS + 2 + (rname != NULL)};
    r->to.out_dir = o->out_dir;
    r->to.meta = &meta;
    r->to.progress = o->progress;
    r->to.log = log;
    r->to.stop = (volatile int *)o->stop;
    r->to.comm = comm;
    rtr_train_result res;
    if ((rc = rtr_train(m, &src, &r->to, &res))) goto done;
    *out = (retro_train_result){MODE_NAMES[mode], res.steps, rtr_model_nparams(m), res.train_loss, res.val_loss,
                                res.val_bpb, res.tokens_per_s};
done:
    if (log) fclose(log);
    rtr_free(path);
    rtr_st_free(st);
    rtr_model_free(m);
    rtr_model_free(base);
    rtr_dataset_free(ds);
    rtr_api_release(k, held);
    rtr_multi_close(multi);
    rtr_free(r);
    return rc;
}
