/* test_model.c - the whole RETRO network:
 *   - against the PyTorch reference (tests/tools/retro_ref.py): logits, loss,
 *     every parameter's gradient, 10 AdamW steps, 10 RETRO-fitting steps;
 *   - finite differences of the loss through the whole model;
 *   - retrieval off (or every neighbour missing) gives exactly the logits of
 *     the baseline decoder;
 *   - causality: tokens after t and neighbours of chunks not complete by t
 *     do not move the logits up to t, and earlier ones do;
 *   - configuration checks and round trip;
 *   - every allocation of new, forward, zero_grad, backward and AdamW failing
 *     in turn gives RTR_E_NOMEM and nothing leaked, and the run then succeeds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/safetensors.h"
#include "lib/status.h"
#include "model/retro.h"
#include "model/retro_int.h"   /* the CCA attention weights, for test_cca_init */

static uint64_t g_s = 11;
static uint32_t urand(void) {
    g_s = g_s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(g_s >> 33);
}

/* The fixture's configuration (tests/tools/retro_ref.py fixture). */
static void tiny_config(rtr_model_config *c) {
    rtr_model_config_default(c, 48);
    c->C = 16;
    c->L = 4;
    c->NH = 2;
    c->F = 64;
    c->T = 16;
    c->m = 4;
    c->K = 2;
    c->R = 8;
    c->EL = 2;
    c->EC = 8;
    c->ENH = 2;
    c->EF = 32;
    c->n_cca = -1;   /* default pattern: 2 and 4 */
}

static rtr_model *tiny_model(int n_cca, int B, uint64_t seed) {
    rtr_model_config c;
    tiny_config(&c);
    if (n_cca == 0) c.n_cca = 0;
    assert_int_equal(rtr_model_config_finish(&c), RTR_OK);
    rtr_model *m;
    assert_int_equal(rtr_model_new(&c, B, &m), RTR_OK);
    rtr_model_init(m, seed);
    return m;
}

static void rand_tokens(int32_t *t, size_t n, int V) {
    for (size_t i = 0; i < n; i++) t[i] = (int32_t)(urand() % (uint32_t)V);
}

/* --- against the PyTorch fixture ------------------------------------------------------ */
static const rtr_st_tensor *need(const rtr_safetensors *st, const char *name) {
    const rtr_st_tensor *t = rtr_st_find(st, name);
    if (!t) fail_msg("fixture lacks %s", name);
    return t;
}

/* max |a - b| / max(scale, max |b|) over n floats; fails above tol. */
static void assert_near(const float *a, const float *b, size_t n, double tol, const char *what) {
    double mx = 0, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(b[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (e > worst) {
            worst = e;
            at = i;
        }
    }
    double rel = worst / fmax(mx, 1e-6);
    if (rel > tol) fail_msg("%s: element %zu: retro %.8g, torch %.8g (error %.3g of max %.3g > %.3g)", what, at,
                            a[at], b[at], rel, mx, tol);
}

static void load_fixture_params(rtr_model *m, const rtr_safetensors *st, const char *prefix) {
    char nm[64];
    for (int i = 0; i < rtr_model_ntensors(m); i++) {
        const rtr_model_param *p = rtr_model_tensor(m, i);
        snprintf(nm, sizeof nm, "%s%s", prefix, p->name);
        const rtr_st_tensor *t = need(st, nm);
        assert_int_equal(t->dtype, RTR_ST_F32);
        assert_int_equal(t->nbytes, p->n * sizeof(float));
        memcpy(rtr_model_params(m) + p->off, t->data, t->nbytes);
    }
}

static void test_against_pytorch(void **state) {
    (void)state;
    rtr_safetensors *st;
    int rc = rtr_st_load(RETRO_SOURCE_DIR "/tests/fixtures/retro_tiny.safetensors", &st);
    if (rc < 0) fail_msg("%s", rtr_errdetail());
    rtr_model_config c;
    const char *cfgjson = rtr_st_meta(st, "config");
    assert_non_null(cfgjson);
    assert_int_equal(rtr_model_config_from_json(cfgjson, "fixture", &c), RTR_OK);
    rtr_model_config t;
    tiny_config(&t);
    assert_int_equal(rtr_model_config_finish(&t), RTR_OK);
    assert_memory_equal(&c, &t, sizeof c);   /* the fixture is the configuration this test knows */
    int B = 2;
    rtr_model *m;
    assert_int_equal(rtr_model_new(&c, B, &m), RTR_OK);
    load_fixture_params(m, st, "param.");
    const int32_t *idx = need(st, "idx")->data, *tg = need(st, "targets")->data, *nbr = need(st, "nbr")->data;
    size_t N = (size_t)B * c.T;

    float loss;
    assert_int_equal(rtr_model_forward(m, idx, tg, nbr, B, c.T, &loss), RTR_OK);
    assert_near(rtr_model_logits(m), need(st, "logits")->data, N * c.V, 2e-5, "logits");
    float want = *(const float *)need(st, "loss")->data;
    if (fabsf(loss - want) > 2e-5f * want) fail_msg("loss: retro %.8f, torch %.8f", loss, want);
    assert_int_equal(rtr_model_zero_grad(m), RTR_OK);
    assert_int_equal(rtr_model_backward(m), RTR_OK);
    char nm[64];
    for (int i = 0; i < rtr_model_ntensors(m); i++) {
        const rtr_model_param *p = rtr_model_tensor(m, i);
        snprintf(nm, sizeof nm, "grad.%s", p->name);
        assert_near(rtr_model_grads(m) + p->off, need(st, nm)->data, p->n, 1e-4, nm);
    }

    /* 10 AdamW steps on the same batch, then 10 RETRO-fitting steps */
    rtr_adamw hp;
    rtr_adamw_default(&hp);
    for (int fit = 0; fit < 2; fit++) {
        rtr_model *mm;
        assert_int_equal(rtr_model_new(&c, B, &mm), RTR_OK);
        load_fixture_params(mm, st, "param.");
        rtr_model_freeze_decoder(mm, fit);
        const float *losses = need(st, fit ? "losses_fit" : "losses")->data;
        if (fit) {   /* the retrieval path's gradients are the same when the rest is frozen */
            assert_int_equal(rtr_model_forward(mm, idx, tg, nbr, B, c.T, &loss), RTR_OK);
            assert_int_equal(rtr_model_zero_grad(mm), RTR_OK);
            assert_int_equal(rtr_model_backward(mm), RTR_OK);
            for (int i = 0; i < rtr_model_ntensors(mm); i++) {
                const rtr_model_param *p = rtr_model_tensor(mm, i);
                snprintf(nm, sizeof nm, "grad.%s", p->name);
                if (p->retrieval) assert_near(rtr_model_grads(mm) + p->off, need(st, nm)->data, p->n, 1e-4, nm);
                else
                    for (size_t j = 0; j < p->n; j++) assert_true(rtr_model_grads(mm)[p->off + j] == 0.0f);
            }
        }
        for (int s = 0; s < 10; s++) {
            assert_int_equal(rtr_model_forward(mm, idx, tg, nbr, B, c.T, &loss), RTR_OK);
            if (fabs(loss - losses[s]) > 1e-5 * losses[s])
                fail_msg("%s step %d: loss retro %.8f, torch %.8f", fit ? "RETRO-fit" : "AdamW", s, loss, losses[s]);
            assert_int_equal(rtr_model_zero_grad(mm), RTR_OK);
            assert_int_equal(rtr_model_backward(mm), RTR_OK);
            assert_true(rtr_model_adamw(mm, &hp, 1e-2f) >= 0);
        }
        for (int i = 0; !fit && i < rtr_model_ntensors(mm); i++) {
            const rtr_model_param *p = rtr_model_tensor(mm, i);
            snprintf(nm, sizeof nm, "param_after.%s", p->name);
            assert_near(rtr_model_params(mm) + p->off, need(st, nm)->data, p->n, 2e-3, nm);
        }
        if (fit)   /* the decoder did not move */
            for (int i = 0; i < rtr_model_ntensors(mm); i++) {
                const rtr_model_param *p = rtr_model_tensor(mm, i);
                snprintf(nm, sizeof nm, "param.%s", p->name);
                if (!p->retrieval)
                    assert_memory_equal(rtr_model_params(mm) + p->off, need(st, nm)->data, p->n * sizeof(float));
            }
        rtr_model_free(mm);
    }
    rtr_model_free(m);
    rtr_st_free(st);
}

/* --- finite differences through the whole model ---------------------------------------- */
static void test_finite_differences(void **state) {
    (void)state;
    int B = 2;
    rtr_model *m = tiny_model(-1, B, 5);
    const rtr_model_config *c = rtr_model_cfg(m);
    /* larger weights than the initialisation, so that every path matters */
    float *w = rtr_model_params(m);
    for (size_t i = 0; i < rtr_model_nparams(m); i++) w[i] *= 3.0f;
    size_t N = (size_t)B * c->T, NE = (size_t)B * (c->T / c->m) * c->K * c->R;
    int32_t *idx = malloc(N * 4), *tg = malloc(N * 4), *nbr = malloc(NE * 4);
    rand_tokens(idx, N, c->V);
    rand_tokens(tg, N, c->V);
    rand_tokens(nbr, NE, c->V);
    for (int r = 0; r < c->R; r++) nbr[r] = -1;            /* a missing neighbour */
    for (int r = c->R - 3; r < c->R; r++) nbr[c->R + r] = -1; /* a short one */
    float loss;
    assert_int_equal(rtr_model_forward(m, idx, tg, nbr, B, c->T, &loss), RTR_OK);
    assert_int_equal(rtr_model_zero_grad(m), RTR_OK);
    assert_int_equal(rtr_model_backward(m), RTR_OK);
    float *g = rtr_model_grads(m);
    int checked = 0;
    for (int i = 0; i < rtr_model_ntensors(m); i++) {
        const rtr_model_param *p = rtr_model_tensor(m, i);
        /* the entry with the largest gradient, and two random ones */
        size_t at[3] = {0, urand() % p->n, urand() % p->n};
        for (size_t j = 0; j < p->n; j++)
            if (fabsf(g[p->off + j]) > fabsf(g[p->off + at[0]])) at[0] = j;
        for (int k = 0; k < 3; k++) {
            size_t j = p->off + at[k];
            float keep = w[j], h = 2e-3f * fmaxf(1.0f, fabsf(keep));
            float lp, lm;
            w[j] = keep + h;
            rtr_model_forward(m, idx, tg, nbr, B, c->T, &lp);
            w[j] = keep - h;
            rtr_model_forward(m, idx, tg, nbr, B, c->T, &lm);
            w[j] = keep;
            double fd = ((double)lp - lm) / (2.0 * h);
            double tol = 2e-3 + 0.05 * fabs(fd);
            if (fabs(fd - g[j]) > tol)
                fail_msg("%s[%zu]: backward %.6g, finite difference %.6g", p->name, at[k], g[j], fd);
            checked++;
        }
    }
    assert_true(checked >= 3 * 40);
    free(idx);
    free(tg);
    free(nbr);
    rtr_model_free(m);
}

/* --- retrieval off is the baseline, exactly -------------------------------------------- */
static void test_retrieval_off_is_baseline(void **state) {
    (void)state;
    int B = 2;
    rtr_model *retro = tiny_model(-1, B, 3), *base = tiny_model(0, B, 99);
    const rtr_model_config *c = rtr_model_cfg(retro);
    /* the baseline gets the RETRO model's decoder weights, by name */
    for (int i = 0; i < rtr_model_ntensors(base); i++) {
        const rtr_model_param *p = rtr_model_tensor(base, i), *q = rtr_model_find(retro, p->name);
        assert_non_null(q);
        assert_int_equal(q->retrieval, 0);
        memcpy(rtr_model_params(base) + p->off, rtr_model_params(retro) + q->off, p->n * sizeof(float));
    }
    size_t N = (size_t)B * c->T, NE = (size_t)B * (c->T / c->m) * c->K * c->R, NV = N * c->V;
    int32_t *idx = malloc(N * 4), *nbr = malloc(NE * 4);
    float *want = malloc(NV * 4);
    rand_tokens(idx, N, c->V);
    assert_int_equal(rtr_model_forward(base, idx, NULL, NULL, B, c->T, NULL), RTR_OK);
    memcpy(want, rtr_model_logits(base), NV * 4);
    assert_int_equal(rtr_model_forward(retro, idx, NULL, NULL, B, c->T, NULL), RTR_OK);
    assert_memory_equal(rtr_model_logits(retro), want, NV * 4);
    for (size_t i = 0; i < NE; i++) nbr[i] = -1;
    assert_int_equal(rtr_model_forward(retro, idx, NULL, nbr, B, c->T, NULL), RTR_OK);
    assert_memory_equal(rtr_model_logits(retro), want, NV * 4);
    /* and real neighbours do change them */
    rand_tokens(nbr, NE, c->V);
    assert_int_equal(rtr_model_forward(retro, idx, NULL, nbr, B, c->T, NULL), RTR_OK);
    assert_true(memcmp(rtr_model_logits(retro), want, NV * 4) != 0);
    free(idx);
    free(nbr);
    free(want);
    rtr_model_free(retro);
    rtr_model_free(base);
}

/* --- causality --------------------------------------------------------------------------- */
static void test_causality(void **state) {
    (void)state;
    int B = 1;
    rtr_model *m = tiny_model(-1, B, 8);
    const rtr_model_config *c = rtr_model_cfg(m);
    float *w = rtr_model_params(m);
    for (size_t i = 0; i < rtr_model_nparams(m); i++) w[i] *= 8.0f;   /* make every path loud */
    int T = c->T, Lc = T / c->m, KR = c->K * c->R, V = c->V;
    int32_t *idx = malloc(T * 4), *idx2 = malloc(T * 4), *nbr = malloc(Lc * KR * 4), *nbr2 = malloc(Lc * KR * 4);
    float *ref = malloc((size_t)T * V * 4);
    rand_tokens(idx, T, V);
    rand_tokens(nbr, Lc * KR, V);
    assert_int_equal(rtr_model_forward(m, idx, NULL, nbr, B, T, NULL), RTR_OK);
    memcpy(ref, rtr_model_logits(m), (size_t)T * V * 4);
    for (int t = 0; t < T - 1; t++) {
        /* change every token after t, and the neighbours of every chunk not
         * complete by t (chunk u is complete at u*m + m - 1) */
        memcpy(idx2, idx, T * 4);
        memcpy(nbr2, nbr, Lc * KR * 4);
        for (int i = t + 1; i < T; i++) idx2[i] = (idx[i] + 1 + (int32_t)(urand() % (V - 1))) % V;
        for (int u = 0; u < Lc; u++)
            if (u * c->m + c->m - 1 > t)
                for (int j = 0; j < KR; j++) nbr2[u * KR + j] = (nbr[u * KR + j] + 1) % V;
        assert_int_equal(rtr_model_forward(m, idx2, NULL, nbr2, B, T, NULL), RTR_OK);
        const float *lg = rtr_model_logits(m);
        for (int i = 0; i <= t; i++)
            for (int v = 0; v < V; v++)
                if (fabsf(lg[i * V + v] - ref[i * V + v]) > 1e-6f * fmaxf(1.0f, fabsf(ref[i * V + v])))
                    fail_msg("t=%d: logit %d at position %d moved from %g to %g", t, v, i, ref[i * V + v],
                             lg[i * V + v]);
        /* the change is visible right after t (so the test can fail) */
        int moved = 0;
        for (int v = 0; v < V; v++) moved |= lg[(t + 1) * V + v] != ref[(t + 1) * V + v];
        assert_true(moved);
    }
    /* the neighbours of chunk u are read from position u*m + m - 1 on */
    for (int u = 0; u < Lc; u++) {
        memcpy(nbr2, nbr, Lc * KR * 4);
        for (int j = 0; j < KR; j++) nbr2[u * KR + j] = (nbr[u * KR + j] + 1) % V;
        assert_int_equal(rtr_model_forward(m, idx, NULL, nbr2, B, T, NULL), RTR_OK);
        const float *lg = rtr_model_logits(m);
        int first = u * c->m + c->m - 1;
        assert_memory_equal(lg, ref, (size_t)first * V * 4);
        int moved = 0;
        for (int v = 0; v < V; v++) moved |= lg[first * V + v] != ref[first * V + v];
        assert_true(moved);
    }
    free(idx);
    free(idx2);
    free(nbr);
    free(nbr2);
    free(ref);
    rtr_model_free(m);
}

/* --- configuration ---------------------------------------------------------------------- */
/* --- the CCA's initial positional preference ---------------------------------------------- */
/* At initialisation (docs/model.md), every CCA head of a model with the
 * paper's chunk and neighbour lengths puts its largest weight, in every
 * neighbour, on the continuation token aligned with the query's next token
 * (relative distance 0), and most of its weight on those tokens, whatever
 * the tokens. With the biases at zero it would not. */
static void test_cca_init(void **state) {
    (void)state;
    rtr_model_config c;
    rtr_model_config_default(&c, 64);
    c.C = 128;
    c.L = 2;
    c.NH = 4;   /* heads of 32 */
    c.F = 256;
    c.T = 128;
    c.EL = 1;
    c.EC = 64;
    c.ENH = 2;
    c.EF = 128;
    c.n_cca = 1;
    c.cca[0] = 2;
    assert_int_equal(rtr_model_config_finish(&c), RTR_OK);
    assert_int_equal(c.m, 64);
    assert_int_equal(c.R, 128);
    rtr_model *m;
    assert_int_equal(rtr_model_new(&c, 1, &m), RTR_OK);
    int Lc = c.T / c.m, KR = c.K * c.R;
    size_t NE = (size_t)Lc * KR;
    int32_t idx[128], *nbr = malloc(NE * sizeof *nbr);
    for (int zeroed = 0; zeroed < 2; zeroed++) {
        rtr_model_init(m, 5);
        if (zeroed)
            for (int i = 0; i < rtr_model_ntensors(m); i++) {
                const rtr_model_param *p = rtr_model_tensor(m, i);
                if (strstr(p->name, ".cca_qb") || strstr(p->name, ".cca_kb"))
                    memset(rtr_model_params(m) + p->off, 0, p->n * sizeof(float));
            }
        rand_tokens(idx, (size_t)c.T, c.V);
        rand_tokens(nbr, NE, c.V);
        assert_int_equal(rtr_model_forward(m, idx, NULL, nbr, 1, c.T, NULL), RTR_OK);
        const float *att = m->dl[1].xa.att;   /* (Lc, NH, m, K*R) */
        int aligned = 0, rows = 0;
        double mass = 0;
        for (int u = 0; u < Lc; u++)
            for (int h = 0; h < c.NH; h++)
                for (int i = 0; i < c.m; i++) {
                    const float *a = att + (((size_t)u * c.NH + h) * c.m + i) * KR;
                    for (int k = 0; k < c.K; k++) {
                        const float *an = a + k * c.R;
                        int best = 0;
                        for (int r = 1; r < c.R; r++)
                            if (an[r] > an[best]) best = r;
                        aligned += best == c.m + i;
                        mass += an[c.m + i];
                    }
                    rows++;
                }
        if (!zeroed) {
            assert_int_equal(aligned, rows * c.K);
            assert_true(mass / rows > 0.5);
        } else {
            assert_true(aligned < rows * c.K / 10);
        }
    }
    free(nbr);
    rtr_model_free(m);
}

static void test_config(void **state) {
    (void)state;
    rtr_model_config c, d;
    rtr_model_config_default(&c, 4096);
    assert_int_equal(rtr_model_config_finish(&c), RTR_OK);
    assert_int_equal(c.n_cca, 2);   /* the example: 6 layers, CCA at 3 and 6 */
    assert_int_equal(c.cca[0], 3);
    assert_int_equal(c.cca[1], 6);
    assert_int_equal(c.F, 1024);
    assert_int_equal(c.R, 128);
    assert_int_equal(c.EC, 128);
    rtr_model_config_default(&d, 4096);
    d.L = 32;
    assert_int_equal(rtr_model_config_finish(&d), RTR_OK);
    assert_int_equal(d.n_cca, 9);   /* the paper: 6, 9, ..., 30 */
    assert_int_equal(d.cca[0], 6);
    assert_int_equal(d.cca[8], 30);
    char *js = rtr_model_config_to_json(&c);
    assert_non_null(js);
    assert_int_equal(rtr_model_config_from_json(js, "cfg", &d), RTR_OK);
    assert_memory_equal(&c, &d, sizeof c);
    free(js);
    const char *bad[] = {"[]", "{\"V\":10}", "not json",
                         "{\"V\":48,\"C\":16,\"L\":4,\"NH\":3,\"F\":64,\"T\":16,\"m\":4,\"K\":2,\"R\":8,\"EL\":2,"
                         "\"EC\":8,\"ENH\":2,\"EF\":32,\"cca\":[2,4]}",
                         "{\"V\":48,\"C\":16,\"L\":4,\"NH\":2,\"F\":64,\"T\":18,\"m\":4,\"K\":2,\"R\":8,\"EL\":2,"
                         "\"EC\":8,\"ENH\":2,\"EF\":32,\"cca\":[2,4]}",
                         "{\"V\":48,\"C\":16,\"L\":4,\"NH\":2,\"F\":64,\"T\":16,\"m\":4,\"K\":2,\"R\":8,\"EL\":2,"
                         "\"EC\":8,\"ENH\":2,\"EF\":32,\"cca\":[4,2]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = rtr_model_config_from_json(bad[i], "bad.json", &d);
        assert_true(rc < 0);
        assert_non_null(strstr(rtr_errdetail(), "bad.json"));
    }
    /* bad inputs to forward */
    rtr_model *m = tiny_model(-1, 1, 1);
    int32_t idx[16] = {0};
    idx[3] = 48;
    assert_int_equal(rtr_model_forward(m, idx, NULL, NULL, 1, 16, NULL), RTR_E_INVALID);
    idx[3] = 0;
    assert_int_equal(rtr_model_forward(m, idx, NULL, NULL, 2, 16, NULL), RTR_E_INVALID);
    assert_int_equal(rtr_model_forward(m, idx, NULL, NULL, 1, 6, NULL), RTR_E_INVALID);
    assert_int_equal(rtr_model_forward(m, idx, NULL, NULL, 1, 8, NULL), RTR_OK);
    assert_int_equal(rtr_model_backward(m), RTR_E_INVALID);   /* no targets */
    rtr_model_free(m);
}

/* --- allocation failures ----------------------------------------------------------------- */
/* One training step of the tiny RETRO model; a status, never a crash. */
static int one_step(int32_t *idx, int32_t *tg, int32_t *nbr) {
    rtr_model_config c;
    tiny_config(&c);
    int rc = rtr_model_config_finish(&c);
    rtr_model *m = NULL;
    if (!rc) rc = rtr_model_new(&c, 2, &m);
    if (!rc) rtr_model_init(m, 5);
    float loss;
    if (!rc) rc = rtr_model_forward(m, idx, tg, nbr, 2, c.T, &loss);
    if (!rc) rc = rtr_model_zero_grad(m);
    if (!rc) rc = rtr_model_backward(m);
    rtr_adamw hp;
    rtr_adamw_default(&hp);
    if (!rc) {
        float g = rtr_model_adamw(m, &hp, 1e-3f);
        if (g < 0) rc = (int)g;
    }
    rtr_model_free(m);
    return rc;
}

static void test_allocation_failures(void **state) {
    (void)state;
    rtr_model_config c;
    tiny_config(&c);
    assert_int_equal(rtr_model_config_finish(&c), RTR_OK);
    size_t N = (size_t)2 * c.T, NE = (size_t)2 * (c.T / c.m) * c.K * c.R;
    int32_t *idx = malloc(N * 4), *tg = malloc(N * 4), *nbr = malloc(NE * 4);
    rand_tokens(idx, N, c.V);
    rand_tokens(tg, N, c.V);
    rand_tokens(nbr, NE, c.V);
    int failures = 0;
    for (long k = 1; k < 400; k++) {
        rtr_alloc_fail_at(k);
        int rc = one_step(idx, tg, nbr);
        rtr_alloc_fail_at(0);
        if (rc == RTR_OK) break;
        assert_int_equal(rc, RTR_E_NOMEM);
        failures++;
    }
    assert_true(failures > 0);   /* the sweep reached allocations and ended in a successful step */
    assert_int_equal(one_step(idx, tg, nbr), RTR_OK);
    free(idx);
    free(tg);
    free(nbr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_retrieval_off_is_baseline),
        cmocka_unit_test(test_causality),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_against_pytorch),
        cmocka_unit_test(test_cca_init),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
