/* test_train.c - checkpoints and the training loop:
 *   - a checkpoint round-trips, and an independent safetensors reader
 *     (tests/tools/safetensors_read.py) sees the same tensors;
 *   - truncated, bit-flipped, reshaped, incomplete and newer checkpoints get
 *     a one-line error naming the file, never a crash;
 *   - a run interrupted and resumed from its checkpoint ends bit for bit
 *     where the uninterrupted run ends;
 *   - the data order visits every sequence once per epoch;
 *   - bits per byte and the learning-rate schedule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/safetensors.h"
#include "lib/status.h"
#include "model/ckpt.h"
#include "model/retro.h"
#include "model/train.h"
#include "testutil.h"

static void small_config(rtr_model_config *c, int cca) {
    rtr_model_config_default(c, 40);
    c->C = 16;
    c->L = 2;
    c->NH = 2;
    c->T = 16;
    c->m = 4;
    c->K = 2;
    c->EC = 8;
    c->n_cca = cca ? -1 : 0;
    assert_int_equal(rtr_model_config_finish(c), RTR_OK);
}

/* A synthetic source: sequence i of a split is a deterministic function of
 * (split, i); after stop_after training fetches it raises *stop. */
typedef struct synth {
    rtr_model_config cfg;
    int64_t fetched, stop_after;
    volatile int *stop;
} synth;

static int synth_get(void *ctx, int split, int64_t i, int32_t *idx, int32_t *tg, int32_t *nbr, double *bytes) {
    synth *s = ctx;
    const rtr_model_config *c = &s->cfg;
    uint64_t h = (uint64_t)(split * 1000003 + i) * 0x9E3779B97F4A7C15ull + 1;
    for (int t = 0; t < c->T; t++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        /* a learnable pattern: mostly t + i, sometimes noise */
        idx[t] = (h >> 60) ? (int32_t)((t + i) % c->V) : (int32_t)((h >> 33) % c->V);
    }
    for (int t = 0; t < c->T; t++) tg[t] = t + 1 < c->T ? idx[t + 1] : -1;
    if (nbr) {
        size_t n = (size_t)(c->T / c->m) * c->K * c->R;
        for (size_t j = 0; j < n; j++) nbr[j] = (int32_t)((j + (size_t)i) % c->V);
    }
    *bytes = 2.0 * (c->T - 1);   /* two bytes per counted target */
    if (split == RTR_SPLIT_TRAIN && ++s->fetched == s->stop_after && s->stop) *s->stop = 1;
    return RTR_OK;
}

static rtr_model *new_model(const rtr_model_config *c, int B) {
    rtr_model *m;
    assert_int_equal(rtr_model_new(c, B, &m), RTR_OK);
    rtr_model_init(m, 42);
    return m;
}

/* --- round trip and the independent reader --------------------------------------------- */
static void test_roundtrip_and_independent_reader(void **state) {
    (void)state;
    rtr_model_config c;
    small_config(&c, 1);
    rtr_model *m = new_model(&c, 2);
    assert_int_equal(rtr_model_alloc_train(m), RTR_OK);
    for (size_t i = 0; i < rtr_model_nparams(m); i++) {
        rtr_model_adam_m(m)[i] = (float)i * 1e-3f;
        rtr_model_adam_v(m)[i] = (float)i * 1e-6f;
    }
    *rtr_model_adam_step(m) = 17;
    char *dir = tu_tmpdir("ckpt");
    const char *kv[] = {"tokenizer", "abc123", "mode", "retro"};
    rtr_ckpt_meta meta = {kv, 2};
    assert_int_equal(rtr_ckpt_save(m, dir, &meta, 1), RTR_OK);

    rtr_model *a, *b;
    rtr_safetensors *st;
    assert_int_equal(rtr_ckpt_load(dir, 3, 0, 0, &a, &st), RTR_OK);
    assert_memory_equal(rtr_model_cfg(a), &c, sizeof c);
    assert_memory_equal(rtr_model_params(a), rtr_model_params(m), rtr_model_nparams(m) * sizeof(float));
    assert_string_equal(rtr_st_meta(st, "tokenizer"), "abc123");
    assert_null(rtr_model_adam_m(a));
    rtr_st_free(st);
    assert_int_equal(rtr_ckpt_load(dir, 1, 32, 1, &b, NULL), RTR_OK);   /* longer context, with optimizer */
    assert_int_equal(rtr_model_cfg(b)->T, 32);
    assert_int_equal(*rtr_model_adam_step(b), 17);
    assert_memory_equal(rtr_model_adam_v(b), rtr_model_adam_v(m), rtr_model_nparams(m) * sizeof(float));
    rtr_model_free(b);

    /* config.json says the same */
    char *p = rtr_path_join(dir, "config.json");
    uint8_t *txt;
    size_t len;
    assert_int_equal(rtr_read_file(p, 1 << 16, &txt, &len), RTR_OK);
    rtr_model_config c2;
    assert_int_equal(rtr_model_config_from_json((char *)txt, p, &c2), RTR_OK);
    assert_memory_equal(&c2, &c, sizeof c);
    rtr_free(txt);
    free(p);

    /* the independent reader: every tensor with its shape, sum and first values */
    if (system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) fail_msg("python3-numpy missing: run scripts/setup.sh");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/tools/safetensors_read.py %s/model.safetensors",
             RETRO_SOURCE_DIR, dir);
    FILE *pp = popen(cmd, "r");
    assert_non_null(pp);
    char line[8192];
    int seen = 0;
    while (fgets(line, sizeof line, pp)) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        const char *name = json_string_value(json_object_get(o, "name"));
        if (!name) {
            json_decref(o);
            continue;
        }
        const rtr_model_param *q = rtr_model_find(a, name);
        if (!q) fail_msg("the reader found tensor %s that the model does not have", name);
        assert_string_equal(json_string_value(json_object_get(o, "dtype")), "F32");
        json_t *shape = json_object_get(o, "shape");
        assert_int_equal(json_array_size(shape), q->ndim);
        for (int d = 0; d < q->ndim; d++) assert_int_equal(json_integer_value(json_array_get(shape, d)), q->shape[d]);
        const float *w = rtr_model_params(a) + q->off;
        double sum = 0;
        for (size_t j = 0; j < q->n; j++) sum += w[j];
        double rsum = json_real_value(json_object_get(o, "sum"));
        if (fabs(rsum - sum) > 1e-9 * fmax(1.0, fabs(sum))) fail_msg("%s: sum %.9g vs %.9g", name, rsum, sum);
        json_t *first = json_object_get(o, "first");
        for (size_t j = 0; j < json_array_size(first); j++)
            assert_true(json_real_value(json_array_get(first, j)) == (double)w[j]);
        seen++;
        json_decref(o);
    }
    assert_int_equal(pclose(pp), 0);
    assert_int_equal(seen, rtr_model_ntensors(a));
    rtr_model_free(a);
    rtr_model_free(m);
    rtr_rmtree(dir);
    free(dir);
}

/* --- bad checkpoints ------------------------------------------------------------------- */
static void expect_refused(const char *path, int with_train, const char *what) {
    rtr_model *m = (rtr_model *)1;
    int rc = rtr_ckpt_load(path, 1, 0, with_train, &m, NULL);
    if (rc >= 0) fail_msg("%s: accepted", what);
    assert_null(m);
    const char *e = rtr_errdetail();
    assert_null(strchr(e, '\n'));
    if (!strstr(e, path) && !strstr(e, "safetensors")) fail_msg("%s: error does not name the file: %s", what, e);
}

static void test_bad_checkpoints(void **state) {
    (void)state;
    rtr_model_config c;
    small_config(&c, 1);
    rtr_model *m = new_model(&c, 1);
    assert_int_equal(rtr_model_alloc_train(m), RTR_OK);
    char *dir = tu_tmpdir("ckpt");
    assert_int_equal(rtr_ckpt_save(m, dir, NULL, 0), RTR_OK);
    char *file = rtr_path_join(dir, "model.safetensors"), *bad = rtr_path_join(dir, "bad.safetensors");
    uint8_t *buf;
    size_t len;
    assert_int_equal(rtr_read_file(file, 1 << 24, &buf, &len), RTR_OK);
    /* truncated anywhere */
    for (size_t cut = 0; cut < len; cut += cut < 4096 ? 97 : 4099) {
        assert_int_equal(rtr_write_file_atomic(bad, buf, cut), RTR_OK);
        expect_refused(bad, 0, "truncated");
    }
    /* a model checkpoint is not a training checkpoint */
    expect_refused(dir, 1, "no optimizer state");
    /* a newer version, a different shape, a missing tensor: rewrite with the writer */
    rtr_safetensors *st;
    assert_int_equal(rtr_st_load(file, &st), RTR_OK);
    for (int variant = 0; variant < 4; variant++) {
        rtr_st_writer *w;
        assert_int_equal(rtr_st_writer_new(&w), RTR_OK);
        rtr_st_writer_meta(w, "format", variant == 3 ? "something-else" : "retro-model");
        rtr_st_writer_meta(w, "version", variant == 0 ? "2" : "1");
        rtr_st_writer_meta(w, "config", rtr_st_meta(st, "config"));
        for (size_t i = 0; i < rtr_st_count(st); i++) {
            const rtr_st_tensor *t = rtr_st_get(st, i);
            int64_t shape[2] = {t->shape[0], t->shape[1]};
            if (variant == 2 && !strcmp(t->name, "ln_f")) continue;   /* missing */
            if (variant == 1 && !strcmp(t->name, "wte")) {            /* transposed */
                shape[0] = t->shape[1];
                shape[1] = t->shape[0];
            }
            assert_int_equal(rtr_st_writer_add(w, t->name, t->dtype, t->ndim, shape, t->data), RTR_OK);
        }
        assert_int_equal(rtr_st_writer_save(w, bad), RTR_OK);
        rtr_st_writer_free(w);
        expect_refused(bad, 0, variant == 0 ? "newer" : variant == 1 ? "shape" : variant == 2 ? "missing" : "format");
        if (variant == 0) assert_int_equal(rtr_errcode(), RTR_E_VERSION);
    }
    /* a configuration far larger than its tensors: refused from the counts, before
     * anything is allocated for it (found by tests/fuzz/fuzz_safetensors) */
    rtr_model_config big = *rtr_model_cfg(m);
    big.C = 16384;
    big.F = 65536;
    char *bj = rtr_model_config_to_json(&big);
    assert_non_null(bj);
    rtr_st_writer *w;
    assert_int_equal(rtr_st_writer_new(&w), RTR_OK);
    rtr_st_writer_meta(w, "format", "retro-model");
    rtr_st_writer_meta(w, "version", "1");
    rtr_st_writer_meta(w, "config", bj);
    for (size_t i = 0; i < rtr_st_count(st); i++) {
        const rtr_st_tensor *t = rtr_st_get(st, i);
        assert_int_equal(rtr_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), RTR_OK);
    }
    assert_int_equal(rtr_st_writer_save(w, bad), RTR_OK);
    rtr_st_writer_free(w);
    free(bj);
    rtr_model *huge = NULL;
    assert_int_equal(rtr_ckpt_load(bad, 1, 0, 0, &huge, NULL), RTR_E_CORRUPT);
    assert_null(huge);
    assert_non_null(strstr(rtr_errdetail(), "the configuration needs"));
    rtr_st_free(st);
    /* flipped bytes in the header: refused or harmless, never a crash */
    uint64_t hl;
    memcpy(&hl, buf, 8);
    for (size_t i = 8; i < 8 + hl; i += 7) {
        buf[i] ^= 0x5A;
        assert_int_equal(rtr_write_file_atomic(bad, buf, len), RTR_OK);
        rtr_model *x = NULL;
        if (rtr_ckpt_load(bad, 1, 0, 0, &x, NULL) == RTR_OK) rtr_model_free(x);
        else assert_null(strchr(rtr_errdetail(), '\n'));
        buf[i] ^= 0x5A;
    }
    rtr_free(buf);
    free(file);
    free(bad);
    rtr_model_free(m);
    rtr_rmtree(dir);
    free(dir);
}

/* --- exact resumption ------------------------------------------------------------------ */
static void train_opts(rtr_train_opts *o, const char *dir) {
    memset(o, 0, sizeof *o);
    o->B = 2;
    o->steps = 8;
    o->lr = 3e-3f;
    o->warmup = 2;
    rtr_adamw_default(&o->hp);
    o->seed = 9;
    o->retrieval = 1;
    o->eval_every = 4;
    o->out_dir = dir;
}

/* at_step's calls: the steps, in order */
static int64_t g_at[64];
static int g_nat;
static void record_step(void *ctx, int64_t step, int64_t steps) {
    (void)ctx;
    assert_int_equal(steps, 8);
    if (g_nat < 64) g_at[g_nat++] = step;
}

static void test_resume_is_exact(void **state) {
    (void)state;
    rtr_model_config c;
    small_config(&c, 1);
    synth s = {c, 0, 0, NULL};
    rtr_train_source src = {&s, 10, 3, synth_get, record_step};
    rtr_train_opts o;
    rtr_train_result r1, r2;

    /* uninterrupted */
    rtr_model *a = new_model(&c, 2);
    train_opts(&o, NULL);
    g_nat = 0;
    assert_int_equal(rtr_train(a, &src, &o, &r1), RTR_OK);
    assert_int_equal(r1.steps, 8);
    assert_int_equal(g_nat, 8);   /* told every step before its batch */
    for (int i = 0; i < 8; i++) assert_int_equal(g_at[i], i);
    assert_true(isfinite(r1.val_loss) && isfinite(r1.val_bpb));

    /* interrupted after 3 steps (its 7th fetch is the 4th step's), saved, resumed */
    char *dir = tu_tmpdir("resume");
    volatile int stop = 0;
    synth s2 = {c, 0, 7, &stop};
    rtr_train_source src2 = {&s2, 10, 3, synth_get, record_step};
    rtr_model *b = new_model(&c, 2);
    train_opts(&o, dir);
    o.stop = &stop;
    assert_int_equal(rtr_train(b, &src2, &o, &r2), RTR_E_INTERRUPTED);
    assert_int_equal(r2.steps, 4);
    rtr_model_free(b);
    assert_int_equal(rtr_ckpt_load(dir, 2, 0, 1, &b, NULL), RTR_OK);
    assert_int_equal(*rtr_model_adam_step(b), 4);
    stop = 0;
    s2.stop = NULL;
    g_nat = 0;
    assert_int_equal(rtr_train(b, &src2, &o, &r2), RTR_OK);
    assert_int_equal(r2.steps, 8);
    assert_int_equal(g_nat, 4);   /* resumed: steps 4 to 7 */
    for (int i = 0; i < 4; i++) assert_int_equal(g_at[i], 4 + i);
    assert_memory_equal(rtr_model_params(b), rtr_model_params(a), rtr_model_nparams(a) * sizeof(float));
    assert_memory_equal(rtr_model_adam_m(b), rtr_model_adam_m(a), rtr_model_nparams(a) * sizeof(float));
    assert_true(r2.val_loss == r1.val_loss);
    /* and it learned something */
    assert_true(r1.val_loss < log(c.V));
    rtr_model_free(a);
    rtr_model_free(b);
    rtr_rmtree(dir);
    free(dir);
}

/* --- data order, bits per byte, schedule ----------------------------------------------- */
static void test_order_bpb_schedule(void **state) {
    (void)state;
    rtr_train_source src = {NULL, 37, 0, NULL, NULL};
    int B = 4;
    /* each epoch of 37 sequences visits each exactly once */
    for (int epoch = 0; epoch < 3; epoch++) {
        int seen[37] = {0};
        for (int64_t pos = epoch * 37; pos < (epoch + 1) * 37; pos++) {
            int64_t i = rtr_train_sequence(&src, 5, B, pos / B, (int)(pos % B));
            assert_true(i >= 0 && i < 37);
            seen[i]++;
        }
        for (int i = 0; i < 37; i++) assert_int_equal(seen[i], 1);
    }
    /* different seeds, different orders */
    int same = 0;
    for (int b = 0; b < 4; b++) same += rtr_train_sequence(&src, 5, B, 0, b) == rtr_train_sequence(&src, 6, B, 0, b);
    assert_true(same < 4);

    /* bpb = nats / ln 2 / bytes */
    rtr_model_config c;
    small_config(&c, 0);
    synth s = {c, 0, 0, NULL};
    rtr_train_source ss = {&s, 4, 5, synth_get, NULL};
    rtr_model *m = new_model(&c, 2);
    double loss, bpb;
    assert_int_equal(rtr_evaluate(m, &ss, RTR_SPLIT_VAL, 0, 2, 0, &loss, &bpb), RTR_OK);
    assert_true(fabs(bpb - loss / log(2.0) / 2.0) < 1e-9);   /* two bytes per target */
    /* by hand over the 5 sequences */
    int32_t idx[16], tg[16];
    double by, nats = 0;
    for (int i = 0; i < 5; i++) {
        float l;
        synth_get(&s, RTR_SPLIT_VAL, i, idx, tg, NULL, &by);
        assert_int_equal(rtr_model_forward(m, idx, tg, NULL, 1, 16, &l), RTR_OK);
        nats += l;
    }
    assert_true(fabs(loss - nats / 5) < 1e-5);
    rtr_model_free(m);

    assert_true(fabsf(rtr_lr_schedule(1.0f, 0, 10, 100) - 0.1f) < 1e-6f);
    assert_true(fabsf(rtr_lr_schedule(1.0f, 9, 10, 100) - 1.0f) < 1e-6f);
    assert_true(fabsf(rtr_lr_schedule(1.0f, 10, 10, 100) - 1.0f) < 1e-6f);
    assert_true(fabsf(rtr_lr_schedule(1.0f, 55, 10, 100) - 0.55f) < 1e-6f);   /* halfway: (1 + 0.1) / 2 */
    assert_true(fabsf(rtr_lr_schedule(1.0f, 100, 10, 100) - 0.1f) < 1e-6f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_independent_reader),
        cmocka_unit_test(test_bad_checkpoints),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_order_bpb_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
