/* ckpt.c - checkpoints: saving, loading, and a model with its tokenizer and retrieval settings. */
#include "model/ckpt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"

#define CKPT_FORMAT "retro-model"
#define CKPT_VERSION 1

static int add_group(rtr_st_writer *w, rtr_model *m, const char *prefix, const float *base) {
    char nm[64];
    for (int i = 0; i < rtr_model_ntensors(m); i++) {
        const rtr_model_param *p = rtr_model_tensor(m, i);
        snprintf(nm, sizeof nm, "%s%s", prefix, p->name);
        int rc = rtr_st_writer_add(w, nm, RTR_ST_F32, p->ndim, p->shape, base + p->off);
        if (rc < 0) return rc;
    }
    return RTR_OK;
}

static int write_file(rtr_model *m, const char *path, const char *cfg, const rtr_ckpt_meta *meta, int with_train) {
    rtr_st_writer *w = NULL;
    int rc = rtr_st_writer_new(&w);
    char ver[16], step[32];
    snprintf(ver, sizeof ver, "%d", CKPT_VERSION);
    snprintf(step, sizeof step, "%" PRId64, *rtr_model_adam_step(m));
    if (!rc) rc = rtr_st_writer_meta(w, "format", CKPT_FORMAT);
    if (!rc) rc = rtr_st_writer_meta(w, "version", ver);
    if (!rc) rc = rtr_st_writer_meta(w, "config", cfg);
    for (int i = 0; meta && !rc && i < meta->n; i++) rc = rtr_st_writer_meta(w, meta->kv[2 * i], meta->kv[2 * i + 1]);
    if (!rc) rc = add_group(w, m, "", rtr_model_params(m));
    if (!rc && with_train) {
        rc = rtr_st_writer_meta(w, "adam_step", step);
        if (!rc) rc = add_group(w, m, "adam_m.", rtr_model_adam_m(m));
        if (!rc) rc = add_group(w, m, "adam_v.", rtr_model_adam_v(m));
    }
    if (!rc) rc = rtr_st_writer_save(w, path);
    rtr_st_writer_free(w);
    return rc;
}

int rtr_ckpt_save(rtr_model *m, const char *dir, const rtr_ckpt_meta *meta, int with_train) {
    if (with_train && (!rtr_model_adam_m(m) || !rtr_model_adam_v(m)))
        return rtr_seterr(RTR_E_INVALID, "%s: a training checkpoint needs the optimizer state", dir);
    int rc = rtr_mkdirs(dir);
    if (rc < 0) return rc;
    char *cfg = rtr_model_config_to_json(rtr_model_cfg(m));
    char *ptrain = rtr_path_join(dir, "train.safetensors"), *pmodel = rtr_path_join(dir, "model.safetensors");
    char *pcfg = rtr_path_join(dir, "config.json");
    if (!cfg || !ptrain || !pmodel || !pcfg) rc = rtr_seterr(RTR_E_NOMEM, "%s: out of memory", dir);
    /* the training file last: a resume reads it, so after a crash between the
     * files it is never newer than the model file, and resuming redoes the steps */
    if (!rc) rc = write_file(m, pmodel, cfg, meta, 0);
    if (!rc) {
        size_t n = strlen(cfg);
        cfg[n] = '\n';   /* the file ends in a newline (the NUL is not written) */
        rc = rtr_write_file_atomic(pcfg, cfg, n + 1);
        cfg[n] = 0;
    }
    if (!rc && with_train) rc = write_file(m, ptrain, cfg, meta, 1);
    free(cfg);
    free(ptrain);
    free(pmodel);
    free(pcfg);
    return rc;
}

/* Copies tensor prefix+NAME of st into base for every parameter, checking
 * dtype and shape. */
static int take_group(rtr_model *m, const rtr_safetensors *st, const char *path, const char *prefix, float *base) {
    char nm[64];
    for (int i = 0; i < rtr_model_ntensors(m); i++) {
        const rtr_model_param *p = rtr_model_tensor(m, i);
        snprintf(nm, sizeof nm, "%s%s", prefix, p->name);
        const rtr_st_tensor *t = rtr_st_find(st, nm);
        if (!t) return rtr_seterr(RTR_E_CORRUPT, "%s: tensor %s missing", path, nm);
        if (t->dtype != RTR_ST_F32)
            return rtr_seterr(RTR_E_CORRUPT, "%s: tensor %s is %s, expected F32", path, nm,
                              rtr_st_dtype_name(t->dtype));
        if (t->ndim != p->ndim || t->shape[0] != p->shape[0] || (p->ndim == 2 && t->shape[1] != p->shape[1]))
            return rtr_seterr(RTR_E_CORRUPT, "%s: tensor %s has the wrong shape for the configuration", path, nm);
        memcpy(base + p->off, t->data, p->n * sizeof(float));
    }
    return RTR_OK;
}

char *rtr_ckpt_file(const char *path, int with_train) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return rtr_path_join(path, with_train ? "train.safetensors" : "model.safetensors");
    return strdup(path);
}

int rtr_ckpt_from_st(const rtr_safetensors *st, const char *file, int max_B, int T_override, int with_train,
                     rtr_model **out) {
    *out = NULL;
    rtr_model *m = NULL;
    int rc;
    const char *fmt = rtr_st_meta(st, "format"), *ver = rtr_st_meta(st, "version"), *cfgs = rtr_st_meta(st, "config");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) || !ver || !cfgs)
        return rtr_seterr(RTR_E_CORRUPT, "%s: not a retro model (no format, version or config metadata)", file);
    long v = strtol(ver, NULL, 10);
    if (v < 1 || v > CKPT_VERSION)
        return rtr_seterr(RTR_E_VERSION, "%s: checkpoint version %s; this retro reads version %d", file, ver,
                          CKPT_VERSION);
    rtr_model_config cfg;
    if ((rc = rtr_model_config_from_json(cfgs, file, &cfg)) < 0) return rc;
    if (T_override > 0) {
        if (T_override % cfg.m || T_override > 65536)
            return rtr_seterr(RTR_E_INVALID, "context %d is not a multiple of the chunk size %d", T_override, cfg.m);
        cfg.T = T_override;
    }
    /* the file's tensors must hold what the configuration needs before anything is allocated for it */
    size_t need, have = 0;
    if ((rc = rtr_model_config_nparams(&cfg, &need)) < 0) return rc;
    for (size_t i = 0; i < rtr_st_count(st); i++) have += rtr_st_get(st, i)->nbytes / sizeof(float);
    if (have != need && !(with_train && have == 3 * need) && !(!with_train && have == 3 * need))
        return rtr_seterr(RTR_E_CORRUPT, "%s: its tensors hold %zu values, the configuration needs %zu%s", file, have,
                          need, with_train ? " (three times that with the optimizer state)" : "");
    if (with_train && have == need)
        return rtr_seterr(RTR_E_CORRUPT, "%s: has no optimizer state to resume from", file);
    if ((rc = rtr_model_new(&cfg, max_B, &m)) < 0) return rc;
    size_t want = (size_t)rtr_model_ntensors(m) * (with_train ? 3 : 1);
    if (rtr_st_count(st) != want) {
        if (with_train && rtr_st_count(st) == want / 3)
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: has no optimizer state to resume from", file);
        else
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: %zu tensors, the configuration has %zu", file, rtr_st_count(st), want);
        goto fail;
    }
    if ((rc = take_group(m, st, file, "", rtr_model_params(m))) < 0) goto fail;
    if (with_train) {
        const char *step = rtr_st_meta(st, "adam_step");
        char *end = NULL;
        long long s = step ? strtoll(step, &end, 10) : -1;
        if (!step || *end || s < 0) {
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: bad or missing adam_step", file);
            goto fail;
        }
        if ((rc = rtr_model_alloc_train(m)) < 0) goto fail;
        if ((rc = take_group(m, st, file, "adam_m.", rtr_model_adam_m(m))) < 0) goto fail;
        if ((rc = take_group(m, st, file, "adam_v.", rtr_model_adam_v(m))) < 0) goto fail;
        *rtr_model_adam_step(m) = s;
    }
    *out = m;
    return RTR_OK;
fail:
    rtr_model_free(m);
    return rc;
}

int rtr_ckpt_load(const char *path, int max_B, int T_override, int with_train, rtr_model **out,
                  rtr_safetensors **st_out) {
    *out = NULL;
    if (st_out) *st_out = NULL;
    char *file = rtr_ckpt_file(path, with_train);
    if (!file) return rtr_seterr(RTR_E_NOMEM, "%s: out of memory", path);
    rtr_safetensors *st = NULL;
    int rc = rtr_st_load(file, &st);
    if (rc >= 0) rc = rtr_ckpt_from_st(st, file, max_B, T_override, with_train, out);
    if (rc >= 0 && st_out) {
        *st_out = st;
        st = NULL;
    }
    rtr_st_free(st);
    free(file);
    return rc;
}

int rtr_ckpt_align_meta(const char *v, const char *file, uint32_t *align) {
    *align = 0;
    if (!v) return RTR_OK;
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < 0 || x > 64) return rtr_seterr(RTR_E_CORRUPT, "%s: bad align \"%s\"", file, v);
    *align = (uint32_t)x;
    return RTR_OK;
}

static const char *const RETRIEVER_NAMES[] = {NULL, "vector", "lexical", "hybrid"};

const char *rtr_ckpt_retriever_name(int retriever) {
    return retriever >= RTR_RETRIEVER_VECTOR && retriever <= RTR_RETRIEVER_HYBRID ? RETRIEVER_NAMES[retriever] : NULL;
}

int rtr_ckpt_retriever_parse(const char *name) {
    for (int i = RTR_RETRIEVER_VECTOR; name && i <= RTR_RETRIEVER_HYBRID; i++)
        if (!strcmp(name, RETRIEVER_NAMES[i])) return i;
    return -1;
}

int rtr_ckpt_retriever_meta(const char *v, const char *file, int *retriever) {
    *retriever = v ? rtr_ckpt_retriever_parse(v) : RTR_RETRIEVER_VECTOR;
    if (*retriever > 0) return RTR_OK;
    *retriever = RTR_RETRIEVER_VECTOR;
    size_t n = 0;   /* the value as far as it prints on one line, at most 40 bytes */
    while (n < 40 && (unsigned char)v[n] >= 0x20) n++;
    return rtr_seterr(RTR_E_CORRUPT, "%s: bad retriever \"%.*s\"%s (vector, lexical or hybrid)", file, (int)n, v,
                      v[n] ? "..." : "");
}

void rtr_loaded_model_free(rtr_loaded_model *lm) {
    if (!lm) return;
    rtr_model_free(lm->model);
    rtr_tokenizer_free(lm->tok);
    memset(lm, 0, sizeof *lm);
}

int rtr_ckpt_load_model(const char *dir, const char *tok_path, int max_B, int T, rtr_loaded_model *out) {
    memset(out, 0, sizeof *out);
    if (!rtr_path_exists(dir))
        return rtr_seterr(RTR_E_NOTFOUND, "%s: no such model (a checkpoint directory written by retro train)", dir);
    rtr_safetensors *st = NULL;
    char *own = rtr_path_join(dir, "tokenizer.rtok"), *file = rtr_ckpt_file(dir, 0);
    int rc = own && file ? rtr_ckpt_load(dir, max_B, T, 0, &out->model, &st) : RTR_E_NOMEM;
    if (!rc) {
        const char *p = tok_path ? tok_path : rtr_path_exists(own) ? own : NULL;
        if (!p) rc = rtr_seterr(RTR_E_NOTFOUND, "%s: no tokenizer.rtok beside the model (give --tokenizer)", dir);
        else rc = rtr_tokenizer_load(p, &out->tok);
    }
    if (!rc) {
        rtr_tokenizer_hash(out->tok, out->tok_hash);
        const char *want = rtr_st_meta(st, "tokenizer");
        if (want && strcmp(want, out->tok_hash))
            rc = rtr_seterr(RTR_E_MISMATCH, "%s: the model was trained with tokenizer %s, not %s", dir, want,
                            out->tok_hash);
        else if ((int)rtr_tokenizer_vocab_size(out->tok) != rtr_model_cfg(out->model)->V)
            rc = rtr_seterr(RTR_E_MISMATCH, "%s: the tokenizer's %u tokens are not the model's %d", dir,
                            rtr_tokenizer_vocab_size(out->tok), rtr_model_cfg(out->model)->V);
    }
    if (!rc) rc = rtr_ckpt_align_meta(rtr_st_meta(st, "align"), file, &out->align);
    if (!rc) rc = rtr_ckpt_retriever_meta(rtr_st_meta(st, "retriever"), file, &out->retriever);
    if (rc) rtr_loaded_model_free(out);
    rtr_st_free(st);
    rtr_free(own);
    rtr_free(file);
    return rc;
}

int rtr_model_copy_tensors(rtr_model *dst, rtr_model *src, const char *from) {
    for (int i = 0; i < rtr_model_ntensors(src); i++) {
        const rtr_model_param *p = rtr_model_tensor(src, i), *q = rtr_model_find(dst, p->name);
        if (!q || q->n != p->n)
            return rtr_seterr(RTR_E_MISMATCH, "%s: tensor %s does not fit the RETRO model", from, p->name);
        memcpy(rtr_model_params(dst) + q->off, rtr_model_params(src) + p->off, p->n * sizeof(float));
    }
    return RTR_OK;
}
