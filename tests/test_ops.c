/* test_ops.c - model operations: forward against naive references, backward
 * against central finite differences, and the accumulate (+=) contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/ops.h"

static uint64_t g_s = 7;
static float frand(void) {
    g_s = g_s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_s >> 40) & 0xFFFFFF) / (float)0x1000000 * 2.0f - 1.0f;
}
static float *randv(int n) {
    float *v = malloc((size_t)n * sizeof *v);
    for (int i = 0; i < n; i++) v[i] = frand();
    return v;
}

/* |a - b| <= tol * max(1, |a|, |b|) for every element; prints the worst. */
static void assert_close(const float *a, const double *b, int n, double tol, const char *what) {
    double worst = 0;
    int at = 0;
    for (int i = 0; i < n; i++) {
        double scale = fmax(1.0, fmax(fabs(a[i]), fabs(b[i])));
        double e = fabs(a[i] - b[i]) / scale;
        if (e > worst) { worst = e; at = i; }
    }
    if (worst > tol) fail_msg("%s: element %d: %g vs %g (rel err %g > %g)", what, at, a[at], b[at], worst, tol);
}

/* The scalar loss used for gradient checks: L = sum_i out_i * R_i (double). */
static double dotd(const float *out, const float *R, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)out[i] * R[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);
/* Central differences of loss with respect to p[0..n), in double. */
static void numgrad(loss_fn f, void *ctx, float *p, int n, double *g, float eps) {
    for (int i = 0; i < n; i++) {
        float keep = p[i];
        p[i] = keep + eps;
        double up = f(ctx);
        p[i] = keep - eps;
        double down = f(ctx);
        p[i] = keep;
        g[i] = (up - down) / (2.0 * (double)eps);
    }
}

/* ------------------------------------------------------------------ matmul */
typedef struct mm { int N, C, OC; float *inp, *w, *b, *out, *R; } mm;
static double mm_loss(void *v) {
    mm *m = v;
    rtr_matmul_forward(m->out, m->inp, m->w, m->b, m->N, m->C, m->OC);
    return dotd(m->out, m->R, m->N * m->OC);
}

static void test_matmul(void **state) {
    (void)state;
    mm m = {7, 13, 5, NULL, NULL, NULL, NULL, NULL};
    m.inp = randv(m.N * m.C);
    m.w = randv(m.OC * m.C);
    m.b = randv(m.OC);
    m.out = malloc(sizeof(float) * m.N * m.OC);
    m.R = randv(m.N * m.OC);
    rtr_matmul_forward(m.out, m.inp, m.w, m.b, m.N, m.C, m.OC);
    double *ref = malloc(sizeof(double) * m.N * m.OC);
    for (int n = 0; n < m.N; n++)
        for (int o = 0; o < m.OC; o++) {
            double s = m.b[o];
            for (int c = 0; c < m.C; c++) s += (double)m.inp[n * m.C + c] * m.w[o * m.C + c];
            ref[n * m.OC + o] = s;
        }
    assert_close(m.out, ref, m.N * m.OC, 1e-5, "matmul forward");
    float *dinp = calloc((size_t)m.N * m.C, sizeof(float)), *dw = calloc((size_t)m.OC * m.C, sizeof(float)),
          *db = calloc((size_t)m.OC, sizeof(float));
    rtr_matmul_backward(dinp, dw, db, m.R, m.inp, m.w, m.N, m.C, m.OC);
    double *g = malloc(sizeof(double) * m.OC * m.C * 2);
    numgrad(mm_loss, &m, m.inp, m.N * m.C, g, 1e-2f);
    assert_close(dinp, g, m.N * m.C, 1e-3, "matmul dinp");
    numgrad(mm_loss, &m, m.w, m.OC * m.C, g, 1e-2f);
    assert_close(dw, g, m.OC * m.C, 1e-3, "matmul dw");
    numgrad(mm_loss, &m, m.b, m.OC, g, 1e-2f);
    assert_close(db, g, m.OC, 1e-3, "matmul db");
    /* accumulation: a second call doubles the gradients; NULL skips */
    for (int i = 0; i < m.OC; i++) g[i] = 2.0 * db[i];
    rtr_matmul_backward(NULL, NULL, db, m.R, m.inp, m.w, m.N, m.C, m.OC);
    assert_close(db, g, m.OC, 1e-6, "matmul db accumulates");
    free(m.inp); free(m.w); free(m.b); free(m.out); free(m.R); free(ref); free(dinp); free(dw); free(db); free(g);
}

/* ------------------------------------------------------------------ rmsnorm */
typedef struct rn { int N, C; float *x, *gain, *out, *rstd, *R; } rn;
static double rn_loss(void *v) {
    rn *r = v;
    rtr_rmsnorm_forward(r->out, r->rstd, r->x, r->gain, r->N, r->C);
    return dotd(r->out, r->R, r->N * r->C);
}

static void test_rmsnorm(void **state) {
    (void)state;
    rn r = {6, 11, NULL, NULL, NULL, NULL, NULL};
    r.x = randv(r.N * r.C);
    r.gain = randv(r.C);
    r.out = malloc(sizeof(float) * r.N * r.C);
    r.rstd = malloc(sizeof(float) * r.N);
    r.R = randv(r.N * r.C);
    rtr_rmsnorm_forward(r.out, r.rstd, r.x, r.gain, r.N, r.C);
    double *ref = malloc(sizeof(double) * r.N * r.C);
    for (int n = 0; n < r.N; n++) {
        double ss = 0;
        for (int c = 0; c < r.C; c++) ss += (double)r.x[n * r.C + c] * r.x[n * r.C + c];
        double s = 1.0 / sqrt(ss / r.C + 1e-5);
        for (int c = 0; c < r.C; c++) ref[n * r.C + c] = r.x[n * r.C + c] * s * r.gain[c];
    }
    assert_close(r.out, ref, r.N * r.C, 1e-5, "rmsnorm forward");
    float *dx = calloc((size_t)r.N * r.C, sizeof(float)), *dg = calloc((size_t)r.C, sizeof(float));
    rtr_rmsnorm_backward(dx, dg, r.R, r.x, r.gain, r.rstd, r.N, r.C);
    double *g = malloc(sizeof(double) * r.N * r.C);
    numgrad(rn_loss, &r, r.x, r.N * r.C, g, 1e-3f);
    assert_close(dx, g, r.N * r.C, 2e-3, "rmsnorm dx");
    numgrad(rn_loss, &r, r.gain, r.C, g, 1e-3f);
    assert_close(dg, g, r.C, 2e-3, "rmsnorm dgain");
    free(r.x); free(r.gain); free(r.out); free(r.rstd); free(r.R); free(ref); free(dx); free(dg); free(g);
}

/* ------------------------------------------------------------------ gelu */
typedef struct ge { int N; float *x, *out, *R; } ge;
static double ge_loss(void *v) {
    ge *e = v;
    rtr_gelu_forward(e->out, e->x, e->N);
    return dotd(e->out, e->R, e->N);
}

static void test_gelu(void **state) {
    (void)state;
    ge e = {64, NULL, NULL, NULL};
    e.x = randv(e.N);
    for (int i = 0; i < e.N; i++) e.x[i] *= 4.0f;   /* cover the tails */
    e.out = malloc(sizeof(float) * e.N);
    e.R = randv(e.N);
    rtr_gelu_forward(e.out, e.x, e.N);
    double *ref = malloc(sizeof(double) * e.N);
    for (int i = 0; i < e.N; i++) {
        double v = e.x[i];
        ref[i] = 0.5 * v * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
    }
    assert_close(e.out, ref, e.N, 1e-5, "gelu forward");
    float *dx = calloc((size_t)e.N, sizeof(float));
    rtr_gelu_backward(dx, e.x, e.R, e.N);
    double *g = malloc(sizeof(double) * e.N);
    numgrad(ge_loss, &e, e.x, e.N, g, 1e-3f);
    assert_close(dx, g, e.N, 2e-3, "gelu dx");
    free(e.x); free(e.out); free(e.R); free(ref); free(dx); free(g);
}

/* ------------------------------------------------------------------ cross-entropy */
typedef struct ce { int N, V; float *logits; int32_t *t; } ce;
static double ce_loss(void *v) {
    ce *c = v;
    return rtr_crossentropy(NULL, c->logits, c->t, c->N, c->V);
}

static void test_crossentropy(void **state) {
    (void)state;
    ce c = {5, 9, NULL, NULL};
    c.logits = randv(c.N * c.V);
    int32_t t[5] = {3, -1, 0, 8, 4};
    c.t = t;
    float *d = malloc(sizeof(float) * c.N * c.V);
    float loss = rtr_crossentropy(d, c.logits, t, c.N, c.V);
    double ref = 0;
    for (int n = 0; n < c.N; n++) {
        if (t[n] < 0) continue;
        double z = 0;
        for (int v = 0; v < c.V; v++) z += exp(c.logits[n * c.V + v]);
        ref += log(z) - c.logits[n * c.V + t[n]];
    }
    assert_float_equal(loss, ref / 4, 1e-5);
    for (int v = 0; v < c.V; v++) assert_float_equal(d[1 * c.V + v], 0.0f, 0.0f);   /* ignored row */
    double *g = malloc(sizeof(double) * c.N * c.V);
    numgrad(ce_loss, &c, c.logits, c.N * c.V, g, 1e-2f);
    assert_close(d, g, c.N * c.V, 1e-3, "crossentropy dlogits");
    /* uniform logits: log V; no counted rows: 0 */
    float flat[9] = {0};
    int32_t one = 2, none = -1;
    assert_float_equal(rtr_crossentropy(NULL, flat, &one, 1, 9), logf(9.0f), 1e-6);
    assert_float_equal(rtr_crossentropy(NULL, flat, &none, 1, 9), 0.0f, 0.0f);
    /* large logits stay finite */
    float big[9] = {1000, -1000, 500};
    assert_false(isnan(rtr_crossentropy(NULL, big, &one, 1, 9)));
    free(c.logits); free(d); free(g);
}


/* ------------------------------------------------------------------ attention */
typedef struct at { int B, Tq, Tk, NH, hs, causal; float *q, *k, *v, *out, *att, *R; uint8_t *mask; } at;
static double at_loss(void *vp) {
    at *a = vp;
    rtr_attention_forward(a->out, a->att, a->q, a->k, a->v, a->mask, a->B, a->Tq, a->Tk, a->NH, a->hs, a->causal);
    return dotd(a->out, a->R, a->B * a->Tq * a->NH * a->hs);
}

/* independent reference: per (b, h, i), softmax in double over the visible keys */
static void attention_ref(const at *a, double *ref) {
    int C = a->NH * a->hs;
    for (int b = 0; b < a->B; b++)
        for (int h = 0; h < a->NH; h++)
            for (int i = 0; i < a->Tq; i++) {
                double w[64], z = 0, mx = -1e300;
                for (int j = 0; j < a->Tk; j++) {
                    int seen = (!a->causal || j <= i) && (!a->mask || a->mask[b * a->Tk + j]);
                    w[j] = -1e300;
                    if (!seen) continue;
                    double s = 0;
                    for (int d = 0; d < a->hs; d++)
                        s += (double)a->q[(b * a->Tq + i) * C + h * a->hs + d] * a->k[(b * a->Tk + j) * C + h * a->hs + d];
                    w[j] = s / sqrt((double)a->hs);
                    mx = fmax(mx, w[j]);
                }
                for (int j = 0; j < a->Tk; j++) { w[j] = w[j] == -1e300 ? 0 : exp(w[j] - mx); z += w[j]; }
                for (int d = 0; d < a->hs; d++) {
                    double o = 0;
                    for (int j = 0; j < a->Tk && z > 0; j++) o += w[j] / z * a->v[(b * a->Tk + j) * C + h * a->hs + d];
                    ref[(b * a->Tq + i) * C + h * a->hs + d] = o;
                }
            }
}

static void check_attention(int causal, int masked) {
    at a = {2, 5, causal ? 5 : 7, 2, 4, causal, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    int C = a.NH * a.hs;
    a.q = randv(a.B * a.Tq * C);
    a.k = randv(a.B * a.Tk * C);
    a.v = randv(a.B * a.Tk * C);
    a.R = randv(a.B * a.Tq * C);
    a.out = malloc(sizeof(float) * a.B * a.Tq * C);
    a.att = malloc(sizeof(float) * a.B * a.NH * a.Tq * a.Tk);
    uint8_t mask[2 * 7] = {1, 0, 1, 1, 0, 1, 1, /* batch 1: every key missing */ 0, 0, 0, 0, 0, 0, 0};
    if (masked) a.mask = mask;
    rtr_attention_forward(a.out, a.att, a.q, a.k, a.v, a.mask, a.B, a.Tq, a.Tk, a.NH, a.hs, a.causal);
    double *ref = malloc(sizeof(double) * a.B * a.Tq * C);
    attention_ref(&a, ref);
    assert_close(a.out, ref, a.B * a.Tq * C, 1e-5, "attention forward");
    if (masked)   /* a query that sees nothing outputs zeros */
        for (int i = a.Tq * C; i < 2 * a.Tq * C; i++) assert_float_equal(a.out[i], 0.0f, 0.0f);
    float *dq = calloc((size_t)a.B * a.Tq * C, sizeof(float)), *dk = calloc((size_t)a.B * a.Tk * C, sizeof(float)),
          *dv = calloc((size_t)a.B * a.Tk * C, sizeof(float));
    rtr_attention_backward(dq, dk, dv, a.R, a.att, a.q, a.k, a.v, a.B, a.Tq, a.Tk, a.NH, a.hs);
    double *g = malloc(sizeof(double) * a.B * a.Tk * C);
    numgrad(at_loss, &a, a.q, a.B * a.Tq * C, g, 1e-2f);
    assert_close(dq, g, a.B * a.Tq * C, 2e-3, "attention dq");
    numgrad(at_loss, &a, a.k, a.B * a.Tk * C, g, 1e-2f);
    assert_close(dk, g, a.B * a.Tk * C, 2e-3, "attention dk");
    numgrad(at_loss, &a, a.v, a.B * a.Tk * C, g, 1e-2f);
    assert_close(dv, g, a.B * a.Tk * C, 2e-3, "attention dv");
    free(a.q); free(a.k); free(a.v); free(a.R); free(a.out); free(a.att); free(ref); free(dq); free(dk); free(dv); free(g);
}

static void test_attention_causal(void **state) { (void)state; check_attention(1, 0); }
static void test_attention_masked_cross(void **state) { (void)state; check_attention(0, 1); }

/* ------------------------------------------------------------------ rope */
typedef struct rp { float *x, *out, *R; int pos0; } rp;
static double rp_loss(void *vp) {
    rp *r = vp;
    rtr_rope_forward(r->out, r->x, 1, 3, 2, 8, r->pos0);
    return dotd(r->out, r->R, 3 * 2 * 8);
}

static void test_rope(void **state) {
    (void)state;
    rp r = {randv(48), malloc(48 * sizeof(float)), randv(48), 5};
    float *dx = calloc(48, sizeof(float));
    rp_loss(&r);
    rtr_rope_backward(dx, r.R, 1, 3, 2, 8, r.pos0);
    double g[48];
    numgrad(rp_loss, &r, r.x, 48, g, 1e-2f);
    assert_close(dx, g, 48, 1e-3, "rope dx");
    /* rotation keeps norms, and <rope(a, m), rope(b, n)> depends on m - n only */
    float a[8], b[8], ra[8], rb[8];
    for (int i = 0; i < 8; i++) { a[i] = frand(); b[i] = frand(); }
    double dots[2];
    for (int s = 0; s < 2; s++) {
        rtr_rope_forward(ra, a, 1, 1, 1, 8, 10 + 7 * s);
        rtr_rope_forward(rb, b, 1, 1, 1, 8, 3 + 7 * s);
        double d = 0, na = 0, nr = 0;
        for (int i = 0; i < 8; i++) { d += (double)ra[i] * rb[i]; na += (double)a[i] * a[i]; nr += (double)ra[i] * ra[i]; }
        assert_true(fabs(na - nr) < 1e-5);
        dots[s] = d;
    }
    assert_true(fabs(dots[0] - dots[1]) < 1e-5);
    free(r.x); free(r.out); free(r.R); free(dx);
}

/* ------------------------------------------------------------------ CCA shift */
static void test_cca_shift_positions_and_adjoint(void **state) {
    (void)state;
    enum { B = 2, m = 4, L = 3, T = L * m, C = 3 };
    float h[B * T * C], dst[B * L * m * C];
    uint8_t mask[B * L * m];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) h[(b * T + t) * C + c] = (float)(b * 10000 + t * 100 + c);
    rtr_cca_gather(dst, mask, h, B, T, C, m);
    int seen[B][T];
    memset(seen, 0, sizeof seen);
    for (int b = 0; b < B; b++)
        for (int u = 0; u < L; u++)
            for (int i = 0; i < m; i++) {
                int row = (b * L + u) * m + i, pos = u * m + m - 1 + i;
                if (pos < T) {
                    assert_int_equal(mask[row], 1);
                    assert_float_equal(dst[row * C + 2], (float)(b * 10000 + pos * 100 + 2), 0.0f);
                    seen[b][pos]++;
                } else {
                    assert_int_equal(mask[row], 0);
                    assert_float_equal(dst[row * C], 0.0f, 0.0f);
                }
            }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) assert_int_equal(seen[b][t], t >= m - 1 ? 1 : 0);   /* first m-1: nothing */
    /* scatter is gather's adjoint: <gather(x), y> == <x, scatter(y)> */
    float *x = randv(B * T * C), *y = randv(B * L * m * C), *gx = malloc(sizeof(float) * B * L * m * C),
          *sy = calloc(B * T * C, sizeof(float));
    rtr_cca_gather(gx, NULL, x, B, T, C, m);
    rtr_cca_scatter(sy, y, B, T, C, m);
    double lhs = 0, rhs = 0;
    for (int i = 0; i < B * L * m * C; i++) lhs += (double)gx[i] * y[i];
    for (int i = 0; i < B * T * C; i++) rhs += (double)x[i] * sy[i];
    assert_true(fabs(lhs - rhs) < 1e-4);
    free(x); free(y); free(gx); free(sy);
}

/* Neighbours of chunk u may only affect positions from u*m + m - 1 on (the
 * last token of chunk u, which completed it) up to the end of chunk u + 1. */
static void test_cca_causality(void **state) {
    (void)state;
    enum { m = 4, L = 4, T = L * m, NH = 2, hs = 4, C = NH * hs, NK = 6 };   /* NK neighbour tokens per chunk */
    float *hq = randv(T * C), *E = randv(L * NK * C), E0[L * NK * C];
    memcpy(E0, E, sizeof E0);
    float q[L * m * C], att[L * NH * m * NK], res[L * m * C], base[T * C], out[T * C];
    uint8_t rows[L * m];
    rtr_cca_gather(q, rows, hq, 1, T, C, m);
    memset(base, 0, sizeof base);   /* the output with the neighbours unchanged */
    rtr_attention_forward(res, att, q, E, E, NULL, L, m, NK, NH, hs, 0);
    rtr_cca_scatter(base, res, 1, T, C, m);
    for (int u = 0; u < L; u++) {
        for (int i = 0; i < NK * C; i++) E[u * NK * C + i] += 0.5f;   /* change chunk u's neighbours */
        memset(out, 0, sizeof out);
        rtr_attention_forward(res, att, q, E, E, NULL, L, m, NK, NH, hs, 0);
        rtr_cca_scatter(out, res, 1, T, C, m);
        for (int t = 0; t < T; t++) {
            int moved = 0;
            for (int c = 0; c < C; c++) moved |= out[t * C + c] != base[t * C + c];
            int may = t >= u * m + m - 1 && t < (u + 1) * m + m - 1;
            if (may) assert_true(moved);
            else assert_false(moved);
        }
        memcpy(E, E0, sizeof E0);   /* and back, bit for bit */
    }
    free(hq);
    free(E);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_crossentropy),
        cmocka_unit_test(test_attention_causal),
        cmocka_unit_test(test_attention_masked_cross),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_cca_shift_positions_and_adjoint),
        cmocka_unit_test(test_cca_causality),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
