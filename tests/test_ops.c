/* test_ops.c - model operations: forward against naive references, backward
 * against central finite differences, and the accumulate (+=) contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <omp.h>
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

/* The kernels' working memory comes from the caller (ops.h): per-thread
 * scratch for the two backward passes that need it, for nthr threads (0:
 * every OpenMP thread), and rotary tables. */
static void rmsnorm_bwd(int nthr, float *dx, float *dg, const float *dout, const float *x, const float *g,
                        const float *rstd, int N, int C) {
    size_t bytes = rtr_rmsnorm_backward_scratch(C) * (size_t)(nthr ? nthr : omp_get_max_threads());
    void *scratch = malloc(bytes);
    rtr_rmsnorm_backward(dx, dg, scratch, bytes, dout, x, g, rstd, N, C);
    free(scratch);
}
static void attention_bwd(int nthr, float *dq, float *dk, float *dv, const float *dout, const float *att,
                          const float *q, const float *k, const float *v, int B, int Tq, int Tk, int NH, int hs) {
    size_t bytes = rtr_attention_backward_scratch(Tq, Tk) * (size_t)(nthr ? nthr : omp_get_max_threads());
    void *scratch = malloc(bytes);
    rtr_attention_backward(dq, dk, dv, scratch, bytes, dout, att, q, k, v, B, Tq, Tk, NH, hs);
    free(scratch);
}
/* positions p0 .. p0 + npos - 1; free with rope_tab_free */
static rtr_rope_table rope_tab(int hs, int p0, int npos) {
    float *cs = malloc(sizeof(float) * (rtr_rope_table_floats(hs, npos) + 1));
    return rtr_rope_table_fill(cs, hs, p0, npos);
}
static void rope_tab_free(rtr_rope_table *t) { free((void *)t->cs); }

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
    rmsnorm_bwd(0, dx, dg, r.R, r.x, r.gain, r.rstd, r.N, r.C);
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
    attention_bwd(0, dq, dk, dv, a.R, a.att, a.q, a.k, a.v, a.B, a.Tq, a.Tk, a.NH, a.hs);
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
typedef struct rp { float *x, *out, *R; int pos0; rtr_rope_table tab; } rp;
static double rp_loss(void *vp) {
    rp *r = vp;
    rtr_rope_forward(r->out, r->x, &r->tab, 1, 3, 2, 8, r->pos0);
    return dotd(r->out, r->R, 3 * 2 * 8);
}

static void test_rope(void **state) {
    (void)state;
    rp r = {randv(48), malloc(48 * sizeof(float)), randv(48), 5, rope_tab(8, 0, 32)};
    float *dx = calloc(48, sizeof(float));
    rp_loss(&r);
    rtr_rope_backward(dx, r.R, &r.tab, 1, 3, 2, 8, r.pos0);
    double g[48];
    numgrad(rp_loss, &r, r.x, 48, g, 1e-2f);
    assert_close(dx, g, 48, 1e-3, "rope dx");
    /* rotation keeps norms, and <rope(a, m), rope(b, n)> depends on m - n only */
    float a[8], b[8], ra[8], rb[8];
    for (int i = 0; i < 8; i++) { a[i] = frand(); b[i] = frand(); }
    double dots[2];
    for (int s = 0; s < 2; s++) {
        rtr_rope_forward(ra, a, &r.tab, 1, 1, 1, 8, 10 + 7 * s);
        rtr_rope_forward(rb, b, &r.tab, 1, 1, 1, 8, 3 + 7 * s);
        double d = 0, na = 0, nr = 0;
        for (int i = 0; i < 8; i++) { d += (double)ra[i] * rb[i]; na += (double)a[i] * a[i]; nr += (double)ra[i] * ra[i]; }
        assert_true(fabs(na - nr) < 1e-5);
        dots[s] = d;
    }
    assert_true(fabs(dots[0] - dots[1]) < 1e-5);
    rope_tab_free(&r.tab);
    free(r.x); free(r.out); free(r.R); free(dx);
}

/* ------------------------------------------------------------------ larger shapes
 * The sizes above run on one thread; these go through the parallel, blocked
 * and vectorised paths (row and column splits of the products, query blocks
 * of causal attention, vector tails), against double-precision references. */

/* C (M, N) = op(A) op(B) in double, row-major, for the references below */
static void gemm_ref(double *Cm, const float *A, int lda, int ta, const float *B, int ldb, int tb, int M, int N,
                     int K) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
            Cm[i * N + j] = s;
        }
}

static void check_matmul(int N, int C, int OC) {
    float *inp = randv(N * C), *w = randv(OC * C), *dout = randv(N * OC);
    float *out = randv(N * OC), *dinp = randv(N * C), *dw = randv(OC * C);
    float *out0 = malloc(sizeof(float) * N * OC), *dinp0 = malloc(sizeof(float) * N * C),
          *dw0 = malloc(sizeof(float) * OC * C);
    memcpy(out0, out, sizeof(float) * N * OC);
    memcpy(dinp0, dinp, sizeof(float) * N * C);
    memcpy(dw0, dw, sizeof(float) * OC * C);
    int big = N * OC > N * C ? N * OC : N * C;
    double *ref = malloc(sizeof(double) * (big > OC * C ? big : OC * C));
    /* out += inp w^T, then out = inp w^T */
    rtr_matmul_forward_acc(out, inp, w, N, C, OC);
    gemm_ref(ref, inp, C, 0, w, C, 1, N, OC, C);
    for (int i = 0; i < N * OC; i++) ref[i] += out0[i];
    assert_close(out, ref, N * OC, 1e-5, "matmul forward_acc");
    rtr_matmul_forward(out, inp, w, NULL, N, C, OC);
    for (int i = 0; i < N * OC; i++) ref[i] -= out0[i];
    assert_close(out, ref, N * OC, 1e-5, "matmul forward (large)");
    /* dinp += dout w; dw += dout^T inp */
    rtr_matmul_backward(dinp, dw, NULL, dout, inp, w, N, C, OC);
    gemm_ref(ref, dout, OC, 0, w, C, 0, N, C, OC);
    for (int i = 0; i < N * C; i++) ref[i] += dinp0[i];
    assert_close(dinp, ref, N * C, 1e-5, "matmul dinp (large)");
    gemm_ref(ref, dout, OC, 1, inp, C, 0, OC, C, N);
    for (int i = 0; i < OC * C; i++) ref[i] += dw0[i];
    assert_close(dw, ref, OC * C, 1e-5, "matmul dw (large)");
    free(inp); free(w); free(dout); free(out); free(dinp); free(dw); free(out0); free(dinp0); free(dw0); free(ref);
}

static void test_matmul_large(void **state) {
    (void)state;
    check_matmul(300, 64, 100);   /* rows split everywhere (dw: the rows of dout^T) */
    check_matmul(40, 600, 64);    /* columns split: dinp, dw */
    check_matmul(40, 64, 700);    /* columns split: forward (rows of w) */
    check_matmul(3, 5, 7);        /* tiny: one call */
    check_matmul(1, 192, 768);    /* one row: the matrix-vector path (forward, dinp) */
    check_matmul(1, 301, 7);      /* ... with a tail after the 8-wide sums */
    check_matmul(8, 192, 512);    /* a few rows (streams decoded together): four at a time, columns in parallel */
    check_matmul(7, 29, 11);      /* ... four and three, with a tail */
    check_matmul(16, 64, 9);      /* ... the most rows that path takes */
    check_matmul(17, 64, 9);      /* ... one more: BLAS */
}

/* attention in double: out, P and, for a given dout, dq, dk, dv */
typedef struct atref { double *out, *P, *dq, *dk, *dv; } atref;
static void attention_ref_full(const at *a, const float *dout, atref *r) {
    int C = a->NH * a->hs, Tq = a->Tq, Tk = a->Tk, hs = a->hs;
    double sc = 1.0 / sqrt((double)hs), *dP = malloc(sizeof(double) * Tk);
    memset(r->dq, 0, sizeof(double) * a->B * Tq * C);
    memset(r->dk, 0, sizeof(double) * a->B * Tk * C);
    memset(r->dv, 0, sizeof(double) * a->B * Tk * C);
    for (int b = 0; b < a->B; b++)
        for (int h = 0; h < a->NH; h++)
            for (int i = 0; i < Tq; i++) {
                double *P = r->P + (((size_t)b * a->NH + h) * Tq + i) * Tk, mx = -INFINITY, z = 0;
                const float *qi = a->q + ((size_t)b * Tq + i) * C + h * hs;
                for (int j = 0; j < Tk; j++) {
                    int seen = (!a->causal || j <= i) && (!a->mask || a->mask[b * Tk + j]);
                    P[j] = -INFINITY;
                    if (!seen) continue;
                    double s = 0;
                    for (int d = 0; d < hs; d++) s += (double)qi[d] * a->k[((size_t)b * Tk + j) * C + h * hs + d];
                    P[j] = s * sc;
                    mx = fmax(mx, P[j]);
                }
                for (int j = 0; j < Tk; j++) {
                    P[j] = P[j] == -INFINITY ? 0 : exp(P[j] - mx);
                    z += P[j];
                }
                double *o = r->out + ((size_t)b * Tq + i) * C + h * hs, dot = 0;
                const float *go = dout + ((size_t)b * Tq + i) * C + h * hs;
                for (int d = 0; d < hs; d++) o[d] = 0;
                for (int j = 0; j < Tk; j++) {
                    if (z > 0) P[j] /= z;
                    const float *vj = a->v + ((size_t)b * Tk + j) * C + h * hs;
                    dP[j] = 0;
                    for (int d = 0; d < hs; d++) {
                        o[d] += P[j] * vj[d];
                        dP[j] += (double)go[d] * vj[d];
                        r->dv[((size_t)b * Tk + j) * C + h * hs + d] += P[j] * go[d];
                    }
                    dot += P[j] * dP[j];
                }
                for (int j = 0; j < Tk; j++) {
                    double ds = P[j] * (dP[j] - dot) * sc;
                    for (int d = 0; d < hs; d++) {
                        size_t qd = ((size_t)b * Tq + i) * C + h * hs + d, kd = ((size_t)b * Tk + j) * C + h * hs + d;
                        r->dq[qd] += ds * a->k[kd];
                        r->dk[kd] += ds * qi[d];
                    }
                }
            }
    free(dP);
}

/* mask kinds: 0 none, 1 per-batch patterns (everything missing, a missing
 * tail, scattered holes, the first key missing) */
static void check_attention_large(int B, int Tq, int Tk, int NH, int hs, int causal, int masked) {
    at a = {B, Tq, Tk, NH, hs, causal, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    int C = NH * hs, nq = B * Tq * C, nk = B * Tk * C, na = B * NH * Tq * Tk;
    a.q = randv(nq);
    a.k = randv(nk);
    a.v = randv(nk);
    for (int i = 0; i < nq; i++) a.q[i] *= 3.0f;   /* peakier softmax */
    float *dout = randv(nq);
    a.out = malloc(sizeof(float) * nq);
    a.att = malloc(sizeof(float) * na);
    uint8_t *mask = malloc((size_t)B * Tk);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < Tk; j++) {
            int kind = b % 4;
            mask[b * Tk + j] = kind == 0 ? 0 : kind == 1 ? j < Tk / 2 : kind == 2 ? (j % 3 != 1) : j != 0;
        }
    if (masked) a.mask = mask;
    for (int i = 0; i < na; i++) a.att[i] = 123.0f;   /* every element is written */
    rtr_attention_forward(a.out, a.att, a.q, a.k, a.v, a.mask, B, Tq, Tk, NH, hs, causal);
    atref r = {malloc(sizeof(double) * nq), malloc(sizeof(double) * na), malloc(sizeof(double) * nq),
               malloc(sizeof(double) * nk), malloc(sizeof(double) * nk)};
    attention_ref_full(&a, dout, &r);
    assert_close(a.out, r.out, nq, 1e-5, "attention forward (large)");
    assert_close(a.att, r.P, na, 1e-5, "attention probabilities (large)");
    for (int i = 0; i < na; i++)   /* what is not seen is exactly 0 */
        if (r.P[i] == 0) assert_float_equal(a.att[i], 0.0f, 0.0f);
    /* backward accumulates onto what is there */
    float *dq = randv(nq), *dk = randv(nk), *dv = randv(nk);
    float *dq0 = malloc(sizeof(float) * nq), *dk0 = malloc(sizeof(float) * nk), *dv0 = malloc(sizeof(float) * nk);
    memcpy(dq0, dq, sizeof(float) * nq);
    memcpy(dk0, dk, sizeof(float) * nk);
    memcpy(dv0, dv, sizeof(float) * nk);
    attention_bwd(0, dq, dk, dv, dout, a.att, a.q, a.k, a.v, B, Tq, Tk, NH, hs);
    for (int i = 0; i < nq; i++) r.dq[i] += dq0[i];
    for (int i = 0; i < nk; i++) {
        r.dk[i] += dk0[i];
        r.dv[i] += dv0[i];
    }
    assert_close(dq, r.dq, nq, 1e-4, "attention dq (large)");
    assert_close(dk, r.dk, nk, 1e-4, "attention dk (large)");
    assert_close(dv, r.dv, nk, 1e-4, "attention dv (large)");
    /* one gradient at a time gives the same; dv alone needs no scratch */
    float *g1 = calloc((size_t)nk, sizeof(float));
    rtr_attention_backward(NULL, NULL, g1, NULL, 0, dout, a.att, a.q, a.k, a.v, B, Tq, Tk, NH, hs);
    for (int i = 0; i < nk; i++) r.dv[i] -= dv0[i];
    assert_close(g1, r.dv, nk, 1e-4, "attention dv alone");
    memset(g1, 0, sizeof(float) * nk);
    attention_bwd(0, NULL, g1, NULL, dout, a.att, a.q, a.k, a.v, B, Tq, Tk, NH, hs);
    for (int i = 0; i < nk; i++) r.dk[i] -= dk0[i];
    assert_close(g1, r.dk, nk, 1e-4, "attention dk alone");
    free(g1);
    g1 = calloc((size_t)nq, sizeof(float));
    attention_bwd(1, g1, NULL, NULL, dout, a.att, a.q, a.k, a.v, B, Tq, Tk, NH, hs);   /* scratch for one thread */
    for (int i = 0; i < nq; i++) r.dq[i] -= dq0[i];
    assert_close(g1, r.dq, nq, 1e-4, "attention dq alone");
    free(g1);
    free(a.q); free(a.k); free(a.v); free(dout); free(a.out); free(a.att); free(mask);
    free(r.out); free(r.P); free(r.dq); free(r.dk); free(r.dv);
    free(dq); free(dk); free(dv); free(dq0); free(dk0); free(dv0);
}

static void test_attention_large(void **state) {
    (void)state;
    check_attention_large(2, 150, 150, 2, 8, 1, 0);   /* causal, 3 query blocks, the last partial */
    check_attention_large(4, 130, 130, 2, 6, 1, 1);   /* causal and kmask; head size with a vector tail */
    check_attention_large(5, 70, 93, 3, 8, 0, 1);     /* cross, Tq != Tk, masks of every kind */
    check_attention_large(3, 17, 37, 1, 16, 0, 0);    /* one head, Tk not a multiple of 8 */
    check_attention_large(1, 9, 9, 1, 4, 1, 1);       /* tiny: the serial path */
    check_attention_large(3, 1, 200, 4, 12, 0, 1);    /* one query (decoding), masked keys: the dot-product path */
    check_attention_large(2, 1, 77, 2, 48, 0, 0);     /* one query, a head of 48 */
    check_attention_large(2, 1, 1, 2, 8, 1, 0);       /* one causal query */
}

/* rope in double */
static void rope_ref(double *out, const float *x, int B, int T, int NH, int hs, int pos0, int dir) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < hs / 2; i++) {
                    size_t o = (((size_t)b * T + t) * NH + h) * hs + 2 * i;
                    double ang = (double)(pos0 + t) * pow(10000.0, -2.0 * i / hs), c = cos(ang), s = dir * sin(ang);
                    out[o] = x[o] * c - x[o + 1] * s;
                    out[o + 1] = x[o] * s + x[o + 1] * c;
                }
}

static void test_rope_large(void **state) {
    (void)state;
    /* growing T and pos0, negative positions, head sizes without a vector tail
     * and with; tables that start at 0 and at pos0 */
    struct { int B, T, NH, hs, pos0; } cs[] = {{2, 40, 3, 64, 0},   {2, 300, 3, 64, 0}, {1, 5, 2, 64, 1000},
                                               {2, 77, 4, 6, 0},    {1, 9, 1, 10, 3},   {1, 33, 2, 12, 0},
                                               {3, 21, 2, 14, 5},   {2, 50, 3, 64, 7},  {1, 8, 2, 8, -5},
                                               {4, 128, 2, 32, 0}};
    for (size_t c = 0; c < sizeof cs / sizeof *cs; c++) {
        int B = cs[c].B, T = cs[c].T, NH = cs[c].NH, hs = cs[c].hs, pos0 = cs[c].pos0, n = B * T * NH * hs;
        float *x = randv(n), *out = malloc(sizeof(float) * n), *dx = randv(n), *dx0 = malloc(sizeof(float) * n);
        memcpy(dx0, dx, sizeof(float) * n);
        double *ref = malloc(sizeof(double) * n);
        int p0 = pos0 < 0 ? pos0 : 0;
        rtr_rope_table tab = rope_tab(hs, p0, pos0 + T - p0), own = rope_tab(hs, pos0, T);
        rtr_rope_forward(out, x, &tab, B, T, NH, hs, pos0);
        rope_ref(ref, x, B, T, NH, hs, pos0, 1);
        assert_close(out, ref, n, 1e-5, "rope forward (large)");
        float *out2 = malloc(sizeof(float) * n);   /* a table of just these positions: the same rotation */
        rtr_rope_forward(out2, x, &own, B, T, NH, hs, pos0);
        for (int i = 0; i < n; i++) assert_float_equal(out2[i], out[i], 0.0f);
        rtr_rope_forward(x, x, &tab, B, T, NH, hs, pos0);   /* in place */
        for (int i = 0; i < n; i++) assert_float_equal(x[i], out[i], 0.0f);
        rtr_rope_backward(dx, out, &tab, B, T, NH, hs, pos0);   /* += the inverse: back to x */
        rope_ref(ref, out, B, T, NH, hs, pos0, -1);
        for (int i = 0; i < n; i++) ref[i] += dx0[i];
        assert_close(dx, ref, n, 1e-5, "rope backward (large)");
        rope_tab_free(&tab);
        rope_tab_free(&own);
        free(x); free(out); free(out2); free(dx); free(dx0); free(ref);
    }
}

static void test_elementwise_large(void **state) {
    (void)state;
    /* GELU: parallel blocks and a vector tail, over the tails of tanh */
    int N = 100003;
    float *x = randv(N), *out = malloc(sizeof(float) * N), *go = randv(N), *dx = randv(N);
    float *dx0 = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) x[i] *= 12.0f;
    x[0] = 0;
    x[1] = 1e-20f;
    x[2] = -0.6249f;
    x[3] = 0.6251f;
    memcpy(dx0, dx, sizeof(float) * N);
    double *ref = malloc(sizeof(double) * N);
    rtr_gelu_forward(out, x, N);
    double K = sqrt(2 / 3.14159265358979323846);
    for (int i = 0; i < N; i++) {
        double v = x[i];
        ref[i] = 0.5 * v * (1 + tanh(K * (v + 0.044715 * v * v * v)));
    }
    assert_close(out, ref, N, 1e-6, "gelu forward (large)");
    rtr_gelu_backward(dx, x, go, N);
    for (int i = 0; i < N; i++) {
        double v = x[i], t = tanh(K * (v + 0.044715 * v * v * v));
        ref[i] = dx0[i] + go[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * K * (1 + 3 * 0.044715 * v * v));
    }
    assert_close(dx, ref, N, 1e-5, "gelu backward (large)");
    free(x); free(out); free(go); free(dx); free(dx0); free(ref);

    /* RMSNorm: parallel rows, C with a vector tail, dg summed over threads */
    int R = 700, C = 131;
    x = randv(R * C);
    float *g = randv(C), *rstd = malloc(sizeof(float) * R), *dy = randv(R * C), *dg = randv(C);
    float *dg0 = malloc(sizeof(float) * C);
    out = malloc(sizeof(float) * R * C);
    dx = randv(R * C);
    dx0 = malloc(sizeof(float) * R * C);
    memcpy(dx0, dx, sizeof(float) * R * C);
    memcpy(dg0, dg, sizeof(float) * C);
    ref = malloc(sizeof(double) * R * C);
    double *rr = malloc(sizeof(double) * R), *gref = calloc((size_t)C, sizeof(double));
    rtr_rmsnorm_forward(out, rstd, x, g, R, C);
    for (int n = 0; n < R; n++) {
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)x[n * C + i] * x[n * C + i];
        rr[n] = 1 / sqrt(ss / C + 1e-5);
        for (int i = 0; i < C; i++) ref[n * C + i] = x[n * C + i] * rr[n] * g[i];
    }
    assert_close(out, ref, R * C, 1e-5, "rmsnorm forward (large)");
    rmsnorm_bwd(0, dx, dg, dy, x, g, rstd, R, C);
    for (int n = 0; n < R; n++) {
        double dot = 0, r = rr[n];
        for (int i = 0; i < C; i++) dot += (double)dy[n * C + i] * g[i] * x[n * C + i];
        for (int i = 0; i < C; i++) {
            ref[n * C + i] = dx0[n * C + i] + r * g[i] * dy[n * C + i] - r * r * r / C * dot * x[n * C + i];
            gref[i] += (double)dy[n * C + i] * x[n * C + i] * r;
        }
    }
    for (int i = 0; i < C; i++) gref[i] += dg0[i];
    assert_close(dx, ref, R * C, 1e-5, "rmsnorm dx (large)");
    assert_close(dg, gref, C, 1e-5, "rmsnorm dg (large)");
    /* dx or dg alone; dg with scratch for one thread; dx alone needs none */
    memcpy(dg, dg0, sizeof(float) * C);
    rmsnorm_bwd(1, NULL, dg, dy, x, g, rstd, R, C);
    assert_close(dg, gref, C, 1e-5, "rmsnorm dg alone");
    memcpy(dx, dx0, sizeof(float) * R * C);
    rtr_rmsnorm_backward(dx, NULL, NULL, 0, dy, x, g, rstd, R, C);
    assert_close(dx, ref, R * C, 1e-5, "rmsnorm dx alone");
    free(x); free(g); free(rstd); free(dy); free(dg); free(dg0); free(out); free(dx); free(dx0); free(ref); free(rr);
    free(gref);

    /* cross-entropy: parallel rows, V with a vector tail */
    int NR = 41, V = 3001;
    float *l = randv(NR * V), *d = malloc(sizeof(float) * NR * V);
    for (int i = 0; i < NR * V; i++) l[i] *= 8.0f;
    int32_t *t = malloc(sizeof(int32_t) * NR);
    int counted = 0;
    for (int n = 0; n < NR; n++) {
        t[n] = n % 7 == 3 ? -1 : n % 11 == 5 ? V : (n * 977) % V;
        counted += t[n] >= 0 && t[n] < V;
    }
    ref = malloc(sizeof(double) * NR * V);
    double loss = 0;
    for (int n = 0; n < NR; n++) {
        double mx = -INFINITY, z = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, l[n * V + v]);
        for (int v = 0; v < V; v++) z += exp(l[n * V + v] - mx);
        int ok = t[n] >= 0 && t[n] < V;
        if (ok) loss += log(z) - (l[n * V + t[n]] - mx);
        for (int v = 0; v < V; v++) ref[n * V + v] = ok ? (exp(l[n * V + v] - mx) / z - (v == t[n])) / counted : 0;
    }
    float got = rtr_crossentropy(d, l, t, NR, V);
    assert_float_equal(got, loss / counted, 1e-5 * fmax(1, loss / counted));
    assert_close(d, ref, NR * V, 1e-6, "crossentropy dlogits (large)");
    assert_float_equal(rtr_crossentropy(NULL, l, t, NR, V), got, 0.0f);
    free(l); free(d); free(t); free(ref);
}

/* NaN goes in, NaN comes out (the trainer checks for it) */
static void test_nan_propagates(void **state) {
    (void)state;
    float x[19], y[19];
    for (int i = 0; i < 19; i++) x[i] = 0.1f * i;
    x[5] = NAN;
    x[17] = NAN;   /* in the vector tail */
    rtr_gelu_forward(y, x, 19);
    assert_true(isnan(y[5]) && isnan(y[17]) && !isnan(y[4]));
    float l[2 * 19];
    for (int i = 0; i < 2 * 19; i++) l[i] = 0.3f * (i % 7);
    int32_t t[2] = {1, 2};
    l[19 + 10] = NAN;
    assert_true(isnan(rtr_crossentropy(NULL, l, t, 2, 19)));
    float q[4 * 8], k[12 * 8], v[12 * 8], out[4 * 8], att[4 * 12];
    for (int i = 0; i < 4 * 8; i++) q[i] = 0.01f * i;
    for (int i = 0; i < 12 * 8; i++) k[i] = v[i] = 0.02f * i;
    q[2 * 8 + 3] = NAN;   /* query 2 */
    rtr_attention_forward(out, att, q, k, v, NULL, 1, 4, 12, 1, 8, 0);
    assert_true(isnan(out[2 * 8]) && !isnan(out[1 * 8]));
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
        cmocka_unit_test(test_matmul_large),
        cmocka_unit_test(test_attention_large),
        cmocka_unit_test(test_rope_large),
        cmocka_unit_test(test_elementwise_large),
        cmocka_unit_test(test_nan_propagates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
