/*
 * bench_ops.c - speed of the model's operations (model/ops.c).
 *
 *   bench_ops [REPS [SECTIONS]]
 *
 * SECTIONS: which of the parts below to run, as digits (default 1234; the
 * block's share of peak needs part 1).
 * Prints, each figure the median of REPS runs (default 7) after a warm-up:
 *  1. cblas_sgemm GFLOP/s on the matrix shapes of a training step of width 256
 *     (2048 rows), on 1 and on 2 OpenBLAS threads: the machine's
 *     single-precision matmul peak that the training step is measured against;
 *  2. attention forward and backward, the naive loops that model/ops.c had
 *     before (kept below, verbatim, as old_*) against the current
 *     implementation, with the largest difference between the two;
 *  3. RoPE, RMSNorm, GELU, cross-entropy: before and after likewise;
 *  4. one decoder block (RMSNorm, q/k/v, RoPE, causal attention, projection,
 *     RMSNorm, MLP with GELU) forward and backward through the ops, as a
 *     share of the measured sgemm peak.
 * Thread counts: OMP_NUM_THREADS and OPENBLAS_NUM_THREADS (default: all cores).
 * The ops' scratch and rotary tables are made once, outside the timings, as
 * the model makes them once.
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/ops.h"
#include "tests/bench/bench_util.h"

int openblas_get_num_threads(void);
void openblas_set_num_threads(int n);

/* ================= the implementation before (model/ops.c), for reference ================= */
#define OLD_RMS_EPS 1e-5f

static void old_rmsnorm_forward(float *out, float *rstd, const float *x, const float *g, int N, int C) {
#pragma omp parallel for if (N * C > 65536)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (int64_t)n * C;
        float *o = out + (int64_t)n * C;
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)xr[i] * xr[i];
        float r = 1.0f / sqrtf((float)(ss / C) + OLD_RMS_EPS);
        for (int i = 0; i < C; i++) o[i] = xr[i] * r * g[i];
        rstd[n] = r;
    }
}

/* y_i = x_i r g_i, r = (mean(x^2) + eps)^-1/2, dr/dx_j = -r^3 x_j / C:
 * dx_j = r g_j dy_j - (r^3 / C) x_j sum_i dy_i g_i x_i */
static void old_rmsnorm_backward(float *dx, float *dg, const float *dout, const float *x, const float *g,
                                 const float *rstd, int N, int C) {
#pragma omp parallel for if (N * C > 65536)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (int64_t)n * C, *dy = dout + (int64_t)n * C;
        float r = rstd[n];
        double dot = 0;
        for (int i = 0; i < C; i++) dot += (double)dy[i] * g[i] * xr[i];
        float k = (float)(dot * r * r * r / C);
        if (dx)
            for (int i = 0; i < C; i++) dx[(int64_t)n * C + i] += r * g[i] * dy[i] - k * xr[i];
    }
    if (dg) {
        /* over rows, per column: a separate loop so threads do not race on dg */
#pragma omp parallel for if (N * C > 65536)
        for (int i = 0; i < C; i++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += (double)dout[(int64_t)n * C + i] * x[(int64_t)n * C + i] * rstd[n];
            dg[i] += (float)s;
        }
    }
}

#define OLD_GELU_K 0.7978845608028654f   /* sqrt(2/pi) */

static void old_gelu_forward(float *out, const float *x, int N) {
#pragma omp parallel for if (N > 65536)
    for (int i = 0; i < N; i++) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + tanhf(OLD_GELU_K * (v + 0.044715f * v * v * v)));
    }
}

static void old_gelu_backward(float *dx, const float *x, const float *dout, int N) {
#pragma omp parallel for if (N > 65536)
    for (int i = 0; i < N; i++) {
        float v = x[i], u = OLD_GELU_K * (v + 0.044715f * v * v * v);
        float t = tanhf(u), sech2 = 1.0f - t * t;
        float d = 0.5f * (1.0f + t) + 0.5f * v * sech2 * OLD_GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] += d * dout[i];
    }
}

static float old_crossentropy(float *dlogits, const float *logits, const int32_t *targets, int N, int V) {
    int counted = 0;
    for (int n = 0; n < N; n++) counted += targets[n] >= 0 && targets[n] < V;
    double loss = 0;
#pragma omp parallel for reduction(+ : loss) if ((int64_t)N * V > 65536)
    for (int n = 0; n < N; n++) {
        const float *l = logits + (int64_t)n * V;
        float *d = dlogits ? dlogits + (int64_t)n * V : NULL;
        int t = targets[n];
        if (t < 0 || t >= V) {
            if (d)
                for (int v = 0; v < V; v++) d[v] = 0;
            continue;
        }
        float mx = l[0];
        for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        double z = 0;
        for (int v = 0; v < V; v++) z += exp((double)(l[v] - mx));
        loss += log(z) - (double)(l[t] - mx);
        if (d) {
            float inv = 1.0f / (float)counted;
            for (int v = 0; v < V; v++) d[v] = (float)(exp((double)(l[v] - mx)) / z) * inv;
            d[t] -= inv;
        }
    }
    return counted ? (float)(loss / counted) : 0.0f;
}

/* --- rotary positions ---------------------------------------------------------------- */
static void old_rope(float *out, const float *x, int B, int T, int NH, int hs, int pos0, float dir, int acc) {
#pragma omp parallel for collapse(2) if ((int64_t)B * T * NH * hs > 65536)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            double pos = pos0 + t;
            for (int h = 0; h < NH; h++) {
                int64_t base = (((int64_t)b * T + t) * NH + h) * hs;
                for (int i = 0; i < hs / 2; i++) {
                    double ang = pos * pow(10000.0, -2.0 * i / hs);
                    float c = (float)cos(ang), s = dir * (float)sin(ang);
                    float x0 = x[base + 2 * i], x1 = x[base + 2 * i + 1];
                    float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
                    if (acc) {
                        out[base + 2 * i] += y0;
                        out[base + 2 * i + 1] += y1;
                    } else {
                        out[base + 2 * i] = y0;
                        out[base + 2 * i + 1] = y1;
                    }
                }
            }
        }
}

static void old_rope_forward(float *out, const float *x, int B, int T, int NH, int hs, int pos0) {
    old_rope(out, x, B, T, NH, hs, pos0, 1.0f, 0);
}

static void old_rope_backward(float *dx, const float *dout, int B, int T, int NH, int hs, int pos0) {
    old_rope(dx, dout, B, T, NH, hs, pos0, -1.0f, 1);
}

/* --- attention ------------------------------------------------------------------------- */
static void old_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                                  const uint8_t *kmask, int B, int Tq, int Tk, int NH, int hs, int causal) {
    int C = NH * hs;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < Tq; i++) {
                const float *qi = q + ((int64_t)b * Tq + i) * C + h * hs;
                float *a = att + (((int64_t)b * NH + h) * Tq + i) * Tk;
                float *o = out + ((int64_t)b * Tq + i) * C + h * hs;
                float mx = -INFINITY;
                for (int j = 0; j < Tk; j++) {
                    int seen = (!causal || j <= i) && (!kmask || kmask[(int64_t)b * Tk + j]);
                    if (!seen) {
                        a[j] = -INFINITY;
                        continue;
                    }
                    const float *kj = k + ((int64_t)b * Tk + j) * C + h * hs;
                    float s = 0;
                    for (int d = 0; d < hs; d++) s += qi[d] * kj[d];
                    a[j] = s * scale;
                    if (a[j] > mx) mx = a[j];
                }
                for (int d = 0; d < hs; d++) o[d] = 0;
                if (mx == -INFINITY) {   /* nothing to see */
                    for (int j = 0; j < Tk; j++) a[j] = 0;
                    continue;
                }
                float z = 0;
                for (int j = 0; j < Tk; j++) {
                    a[j] = a[j] == -INFINITY ? 0.0f : expf(a[j] - mx);
                    z += a[j];
                }
                for (int j = 0; j < Tk; j++) {
                    a[j] /= z;
                    if (a[j] == 0) continue;
                    const float *vj = v + ((int64_t)b * Tk + j) * C + h * hs;
                    for (int d = 0; d < hs; d++) o[d] += a[j] * vj[d];
                }
            }
}

static void old_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                                   const float *k, const float *v, int B, int Tq, int Tk, int NH, int hs) {
    RTR_ASSERT(Tk <= RTR_ATT_MAX_KEYS);
    int C = NH * hs;
    float scale = 1.0f / sqrtf((float)hs);
    /* each (b, h) writes its own columns of dq, dk, dv: no races */
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float datt[RTR_ATT_MAX_KEYS];
            for (int i = 0; i < Tq; i++) {
                const float *a = att + (((int64_t)b * NH + h) * Tq + i) * Tk;
                const float *go = dout + ((int64_t)b * Tq + i) * C + h * hs;
                const float *qi = q + ((int64_t)b * Tq + i) * C + h * hs;
                float dot = 0;
                for (int j = 0; j < Tk; j++) {
                    datt[j] = 0;
                    if (a[j] == 0) continue;
                    const float *vj = v + ((int64_t)b * Tk + j) * C + h * hs;
                    float s = 0;
                    for (int d = 0; d < hs; d++) s += go[d] * vj[d];
                    datt[j] = s;
                    dot += a[j] * s;
                    if (dv) {
                        float *dvj = dv + ((int64_t)b * Tk + j) * C + h * hs;
                        for (int d = 0; d < hs; d++) dvj[d] += a[j] * go[d];
                    }
                }
                for (int j = 0; j < Tk; j++) {
                    if (a[j] == 0) continue;
                    float dpre = a[j] * (datt[j] - dot) * scale;
                    const float *kj = k + ((int64_t)b * Tk + j) * C + h * hs;
                    if (dq) {
                        float *dqi = dq + ((int64_t)b * Tq + i) * C + h * hs;
                        for (int d = 0; d < hs; d++) dqi[d] += dpre * kj[d];
                    }
                    if (dk) {
                        float *dkj = dk + ((int64_t)b * Tk + j) * C + h * hs;
                        for (int d = 0; d < hs; d++) dkj[d] += dpre * qi[d];
                    }
                }
            }
        }
}

/* ======================================= the benchmark ======================================= */
static int REPS = 7;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef void (*run_fn)(void *ctx);
/* median seconds of reps runs of f after one warm-up run */
static double timeit(run_fn f, void *ctx, int reps) {
    double *t = malloc((size_t)reps * sizeof *t);
    f(ctx);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        f(ctx);
        t[r] = now() - t0;
    }
    double m = bench_pct(t, (size_t)reps, 0.5);
    free(t);
    return m;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) & 0xFFFFFF) / (float)0x1000000 * 2.0f - 1.0f;
}
static float *randv(size_t n, float scale) {
    float *v = malloc(n * sizeof *v);
    if (!v) {
        fprintf(stderr, "bench_ops: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) v[i] = scale * frand();
    return v;
}
static float *zerov(size_t n) {
    float *v = calloc(n, sizeof *v);
    if (!v) {
        fprintf(stderr, "bench_ops: out of memory\n");
        exit(1);
    }
    return v;
}
/* per-thread scratch of slice bytes for every OpenMP thread: *bytes gets its size */
static void *scratchv(size_t slice, size_t *bytes) {
    *bytes = slice * (size_t)omp_get_max_threads();
    return zerov((*bytes + sizeof(float) - 1) / sizeof(float));
}
/* a rotary table for positions 0 .. npos - 1 (free its cs) */
static rtr_rope_table rope_tabv(int hs, int npos) {
    return rtr_rope_table_fill(zerov(rtr_rope_table_floats(hs, npos)), hs, 0, npos);
}
/* max |a - b| / max(1, |b|) */
static double maxdiff(const float *a, const float *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i]));
        if (!(d <= w)) w = d;   /* NaN counts as worst */
    }
    return w;
}

/* ------------------------------------------------------------------------------- sgemm */
typedef struct gm {
    int M, N, K, ta, tb;
    float *A, *B, *Cm;
} gm;
static void gm_run(void *p) {
    gm *g = p;
    int lda = g->ta ? g->M : g->K, ldb = g->tb ? g->K : g->N;
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, g->M, g->N, g->K,
                1.0f, g->A, lda, g->B, ldb, 0.0f, g->Cm, g->N);
}

/* the same product through model/ops.c (OpenMP threads, single-threaded BLAS calls) */
static void gm_ops(void *p) {
    gm *g = p;
    if (!g->ta && g->tb) rtr_matmul_forward(g->Cm, g->A, g->B, NULL, g->M, g->K, g->N);            /* x W^T */
    else if (!g->ta) rtr_matmul_backward(g->Cm, NULL, NULL, g->A, NULL, g->B, g->M, g->N, g->K);   /* dy W */
    else rtr_matmul_backward(NULL, g->Cm, NULL, g->A, g->B, NULL, g->K, g->N, g->M);              /* dy^T x */
}

static double peak1 = 0, peak2 = 0, peakops = 0;

static void bench_sgemm(void) {
    struct {
        const char *what;
        int M, N, K, ta, tb;
    } shapes[] = {
        {"x W^T: 2048x256 @ 256x768 (qkv)", 2048, 768, 256, 0, 1},
        {"x W^T: 2048x256 @ 256x1024 (fc)", 2048, 1024, 256, 0, 1},
        {"x W^T: 2048x1024 @ 1024x256 (fcp)", 2048, 256, 1024, 0, 1},
        {"x W^T: 2048x256 @ 256x4096 (logits)", 2048, 4096, 256, 0, 1},
        {"dy W: 2048x1024 @ 1024x256", 2048, 256, 1024, 0, 0},
        {"dy^T x: 1024x2048 @ 2048x256 (dW)", 1024, 256, 2048, 1, 0},
        {"dy^T x: 4096x2048 @ 2048x256 (dW)", 4096, 256, 2048, 1, 0},
    };
    int saved = openblas_get_num_threads();
    printf("\n1. cblas_sgemm, single precision (GFLOP/s = 2MNK / time)\n");
    printf("   %-38s %10s %10s %8s %10s\n", "shape", "1 thread", "2 threads", "speedup", "ops.c, 2");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        gm g = {shapes[s].M, shapes[s].N, shapes[s].K, shapes[s].ta, shapes[s].tb, NULL, NULL, NULL};
        g.A = randv((size_t)g.M * g.K, 1);
        g.B = randv((size_t)g.K * g.N, 1);
        g.Cm = zerov((size_t)g.M * g.N);
        double fl = 2.0 * g.M * g.N * g.K, r[2];
        for (int t = 0; t < 2; t++) {
            openblas_set_num_threads(t + 1);
            r[t] = fl / timeit(gm_run, &g, REPS * 3) * 1e-9;
        }
        openblas_set_num_threads(saved);
        double ro = fl / timeit(gm_ops, &g, REPS * 3) * 1e-9;
        if (r[0] > peak1) peak1 = r[0];
        if (r[1] > peak2) peak2 = r[1];
        if (ro > peakops) peakops = ro;
        printf("   %-38s %10.1f %10.1f %7.2fx %10.1f\n", shapes[s].what, r[0], r[1], r[1] / r[0], ro);
        free(g.A);
        free(g.B);
        free(g.Cm);
    }
    openblas_set_num_threads(saved);
    printf("   peak (best shape): %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on 2 threads; %.1f through ops.c\n", peak1,
           peak2, peakops);
    printf("   (ops.c, 2: rtr_matmul_forward/backward, the rows split between %d OpenMP threads)\n",
           omp_get_max_threads());
}

/* --------------------------------------------------------------------------- attention */
typedef struct att {
    int B, Tq, Tk, NH, hs, causal;
    float *q, *k, *v, *dout, *out, *att, *dq, *dk, *dv;
    uint8_t *mask;
    void *scratch;   /* rtr_attention_backward's */
    size_t scratch_bytes;
} att;
static void att_new_f(void *p) {
    att *a = p;
    rtr_attention_forward(a->out, a->att, a->q, a->k, a->v, a->mask, a->B, a->Tq, a->Tk, a->NH, a->hs, a->causal);
}
static void att_old_f(void *p) {
    att *a = p;
    old_attention_forward(a->out, a->att, a->q, a->k, a->v, a->mask, a->B, a->Tq, a->Tk, a->NH, a->hs, a->causal);
}
static void att_new_b(void *p) {
    att *a = p;
    rtr_attention_backward(a->dq, a->dk, a->dv, a->scratch, a->scratch_bytes, a->dout, a->att, a->q, a->k, a->v, a->B,
                           a->Tq, a->Tk, a->NH, a->hs);
}
static void att_old_b(void *p) {
    att *a = p;
    old_attention_backward(a->dq, a->dk, a->dv, a->dout, a->att, a->q, a->k, a->v, a->B, a->Tq, a->Tk, a->NH, a->hs);
}

static void bench_attention_case(const char *what, int B, int Tq, int Tk, int NH, int hs, int causal, int masked) {
    int C = NH * hs;
    size_t nq = (size_t)B * Tq * C, nk = (size_t)B * Tk * C, na = (size_t)B * NH * Tq * Tk;
    att a = {B, Tq, Tk, NH, hs, causal, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0};
    a.scratch = scratchv(rtr_attention_backward_scratch(Tq, Tk), &a.scratch_bytes);
    a.q = randv(nq, 1);
    a.k = randv(nk, 1);
    a.v = randv(nk, 1);
    a.dout = randv(nq, 1);
    a.out = zerov(nq);
    a.att = zerov(na);
    a.dq = zerov(nq);
    a.dk = zerov(nk);
    a.dv = zerov(nk);
    if (masked) {   /* like missing neighbours: some sequences lose their second half, one loses all */
        a.mask = malloc((size_t)B * Tk);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < Tk; j++) a.mask[b * Tk + j] = b % 16 == 5 ? 0 : b % 4 == 1 ? j < Tk / 2 : 1;
    }
    /* results of both, then times */
    float *o_out = zerov(nq), *o_att = zerov(na), *o_dq = zerov(nq), *o_dk = zerov(nk), *o_dv = zerov(nk);
    att o = a;
    o.out = o_out;
    o.att = o_att;
    o.dq = o_dq;
    o.dk = o_dk;
    o.dv = o_dv;
    att_old_f(&o);
    att_old_b(&o);
    att_new_f(&a);
    att_new_b(&a);
    double dmax = fmax(fmax(maxdiff(a.out, o.out, nq), maxdiff(a.att, o.att, na)),
                       fmax(maxdiff(a.dq, o.dq, nq), fmax(maxdiff(a.dk, o.dk, nk), maxdiff(a.dv, o.dv, nk))));
    int reps_old = REPS < 3 ? REPS : 3;
    double of = timeit(att_old_f, &o, reps_old), ob = timeit(att_old_b, &o, reps_old);
    double nf = timeit(att_new_f, &a, REPS), nb = timeit(att_new_b, &a, REPS);
    /* multiply-adds actually needed: the visible (b, h, i, j) pairs times hs, 2 products forward, 4 backward */
    double pairs = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Tq; i++) {
            int n = 0;
            for (int j = 0; j < Tk; j++) n += (!causal || j <= i) && (!a.mask || a.mask[b * Tk + j]);
            pairs += n;
        }
    pairs *= NH;
    double ff = 2.0 * 2 * pairs * hs, fb = 2.0 * 4 * pairs * hs;
    printf("   %-44s fwd %8.2f -> %7.2f ms (%5.1fx, %5.1f GFLOP/s)  bwd %8.2f -> %7.2f ms (%5.1fx, %5.1f GFLOP/s)  "
           "max diff %.1e\n",
           what, of * 1e3, nf * 1e3, of / nf, ff / nf * 1e-9, ob * 1e3, nb * 1e3, ob / nb, fb / nb * 1e-9, dmax);
    free(a.q); free(a.k); free(a.v); free(a.dout); free(a.out); free(a.att); free(a.dq); free(a.dk); free(a.dv);
    free(a.mask); free(a.scratch); free(o_out); free(o_att); free(o_dq); free(o_dk); free(o_dv);
}

static void bench_attention(void) {
    printf("\n2. attention (before: the naive loops -> now; GFLOP/s over the visible pairs only)\n");
    bench_attention_case("self, causal: B=4 T=512 NH=4 hs=64", 4, 512, 512, 4, 64, 1, 0);
    bench_attention_case("cross, kmask: B=32 Tq=64 Tk=256 NH=4 hs=64", 32, 64, 256, 4, 64, 0, 1);
    bench_attention_case("encoder, kmask: B=64 T=128 NH=2 hs=64", 64, 128, 128, 2, 64, 0, 1);
}

/* -------------------------------------------------------------------- elementwise ops */
typedef struct el {
    int N, C, B, T, NH, hs;
    float *x, *g, *dout, *out, *rstd, *dx, *dg;
    int32_t *tg;
    int old;
    rtr_rope_table rope;   /* head size hs, positions 0 .. T - 1 */
    void *scratch;         /* rtr_rmsnorm_backward's */
    size_t scratch_bytes;
} el;
static void rope_f(void *p) {
    el *e = p;
    if (e->old) old_rope_forward(e->out, e->x, e->B, e->T, e->NH, e->hs, 0);
    else rtr_rope_forward(e->out, e->x, &e->rope, e->B, e->T, e->NH, e->hs, 0);
}
static void rope_b(void *p) {
    el *e = p;
    if (e->old) old_rope_backward(e->dx, e->dout, e->B, e->T, e->NH, e->hs, 0);
    else rtr_rope_backward(e->dx, e->dout, &e->rope, e->B, e->T, e->NH, e->hs, 0);
}
static void rms_f(void *p) {
    el *e = p;
    if (e->old) old_rmsnorm_forward(e->out, e->rstd, e->x, e->g, e->N, e->C);
    else rtr_rmsnorm_forward(e->out, e->rstd, e->x, e->g, e->N, e->C);
}
static void rms_b(void *p) {
    el *e = p;
    if (e->old) old_rmsnorm_backward(e->dx, e->dg, e->dout, e->x, e->g, e->rstd, e->N, e->C);
    else rtr_rmsnorm_backward(e->dx, e->dg, e->scratch, e->scratch_bytes, e->dout, e->x, e->g, e->rstd, e->N, e->C);
}
static void gelu_f(void *p) {
    el *e = p;
    if (e->old) old_gelu_forward(e->out, e->x, e->N * e->C);
    else rtr_gelu_forward(e->out, e->x, e->N * e->C);
}
static void gelu_b(void *p) {
    el *e = p;
    if (e->old) old_gelu_backward(e->dx, e->x, e->dout, e->N * e->C);
    else rtr_gelu_backward(e->dx, e->x, e->dout, e->N * e->C);
}
static void ce_fb(void *p) {
    el *e = p;
    if (e->old) old_crossentropy(e->dx, e->x, e->tg, e->N, e->C);
    else rtr_crossentropy(e->dx, e->x, e->tg, e->N, e->C);
}

/* before and after of one op: times and the largest difference of outs[] */
static void bench_el(const char *what, run_fn f, el *e, float **outs, const size_t *lens, int nout) {
    el o = *e;
    float *keep[4], *ref[4];
    for (int i = 0; i < nout; i++) {   /* same inputs (accumulating outputs start from zero in both) */
        keep[i] = outs[i];
        ref[i] = zerov(lens[i]);
    }
    o.old = 1;
    for (int i = 0; i < nout; i++) {
        if (outs[i] == e->out) o.out = ref[i];
        if (outs[i] == e->dx) o.dx = ref[i];
        if (outs[i] == e->dg) o.dg = ref[i];
        if (outs[i] == e->rstd) o.rstd = ref[i];
    }
    e->old = 0;
    for (int i = 0; i < nout; i++) memset(keep[i], 0, lens[i] * sizeof(float));
    f(&o);
    f(e);
    double d = 0;
    for (int i = 0; i < nout; i++) d = fmax(d, maxdiff(keep[i], ref[i], lens[i]));
    double to = timeit(f, &o, REPS), tn = timeit(f, e, REPS);
    printf("   %-44s %9.3f -> %8.3f ms  %6.1fx   max diff %.1e\n", what, to * 1e3, tn * 1e3, to / tn, d);
    for (int i = 0; i < nout; i++) free(ref[i]);
}

static void bench_elementwise(void) {
    printf("\n3. elementwise ops, before -> now\n");
    int N = 2048, C = 256, F = 1024, V = 4096;
    el e = {N, C, 4, 512, 4, 64, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, {NULL, 0, 0, 0}, NULL, 0};
    size_t nC = (size_t)N * C, nF = (size_t)N * F, nV = (size_t)N * V;
    e.x = randv(nV, 3);
    e.g = randv(F, 1);
    e.dout = randv(nV, 1);
    e.out = zerov(nV);
    e.dx = zerov(nV);
    e.dg = zerov(F);
    e.rstd = zerov(N);
    e.tg = malloc(sizeof(int32_t) * N);
    for (int n = 0; n < N; n++) e.tg[n] = n % 17 == 3 ? -1 : (int32_t)(((unsigned)n * 2654435761u) % (unsigned)V);
    e.rope = rope_tabv(e.hs, e.T);
    e.scratch = scratchv(rtr_rmsnorm_backward_scratch(C), &e.scratch_bytes);
    float *o1[] = {e.out}, *o2[] = {e.dx}, *o3[] = {e.out, e.rstd}, *o4[] = {e.dx, e.dg};
    size_t lC[] = {nC}, lF[] = {nF}, lr[] = {nC, (size_t)N}, lg[] = {nC, (size_t)C}, lV[] = {nV};
    bench_el("rope forward (B=4 T=512 NH=4 hs=64)", rope_f, &e, o1, lC, 1);
    bench_el("rope backward", rope_b, &e, o2, lC, 1);
    bench_el("rmsnorm forward (2048, 256)", rms_f, &e, o3, lr, 2);
    rtr_rmsnorm_forward(e.out, e.rstd, e.x, e.g, N, C);
    bench_el("rmsnorm backward (dx, dg)", rms_b, &e, o4, lg, 2);
    e.C = F;
    bench_el("gelu forward (2048, 1024)", gelu_f, &e, o1, lF, 1);
    bench_el("gelu backward", gelu_b, &e, o2, lF, 1);
    e.C = V;
    bench_el("crossentropy + dlogits (2048, 4096)", ce_fb, &e, o2, lV, 1);
    free(e.x); free(e.g); free(e.dout); free(e.out); free(e.dx); free(e.dg); free(e.rstd); free(e.tg);
    free((void *)e.rope.cs); free(e.scratch);
}

/* ----------------------------------------------------------------------- decoder block */
typedef struct blk {
    int B, T, C, NH, F;
    float *x, *y, *g1, *g2, *wqkv, *wproj, *wfc, *wfcp;                     /* input, output, weights */
    float *ln1, *r1, *q, *k, *v, *att, *ya, *res, *ln2, *r2, *h, *hg;       /* activations */
    float *dy, *dx, *dg1, *dg2, *dwqkv, *dwproj, *dwfc, *dwfcp;             /* gradients */
    float *s0, *s1, *s2, *s3, *s4, *s5, *s6, *s7;                           /* scratch */
    rtr_rope_table rope;                                                    /* hs C/NH, positions 0 .. T-1 */
    void *kern;                                                             /* the backward kernels' scratch */
    size_t kern_bytes;
} blk;

static void blk_fwd(blk *m) {
    size_t N = (size_t)m->B * m->T;
    int C = m->C, hs = C / m->NH;
    rtr_rmsnorm_forward(m->ln1, m->r1, m->x, m->g1, (int)N, C);
    rtr_matmul_forward(m->q, m->ln1, m->wqkv, NULL, (int)N, C, C);
    rtr_matmul_forward(m->k, m->ln1, m->wqkv + (size_t)C * C, NULL, (int)N, C, C);
    rtr_matmul_forward(m->v, m->ln1, m->wqkv + 2 * (size_t)C * C, NULL, (int)N, C, C);
    rtr_rope_forward(m->q, m->q, &m->rope, m->B, m->T, m->NH, hs, 0);
    rtr_rope_forward(m->k, m->k, &m->rope, m->B, m->T, m->NH, hs, 0);
    rtr_attention_forward(m->ya, m->att, m->q, m->k, m->v, NULL, m->B, m->T, m->T, m->NH, hs, 1);
    memcpy(m->res, m->x, N * C * sizeof(float));
    rtr_matmul_forward_acc(m->res, m->ya, m->wproj, (int)N, C, C);
    rtr_rmsnorm_forward(m->ln2, m->r2, m->res, m->g2, (int)N, C);
    rtr_matmul_forward(m->h, m->ln2, m->wfc, NULL, (int)N, C, m->F);
    rtr_gelu_forward(m->hg, m->h, (int)(N * m->F));
    memcpy(m->y, m->res, N * C * sizeof(float));
    rtr_matmul_forward_acc(m->y, m->hg, m->wfcp, (int)N, m->F, C);
}

static void blk_bwd(blk *m) {
    size_t N = (size_t)m->B * m->T, n = N * m->C;
    int C = m->C, hs = C / m->NH, F = m->F;
    float *dres = m->s0, *dhg = m->s1, *dh = m->s2, *dln = m->s3, *dq = m->s4, *dk = m->s5, *dv = m->s6, *dya = m->s7;
    memcpy(dres, m->dy, n * sizeof(float));
    memset(dhg, 0, N * F * sizeof(float));
    rtr_matmul_backward(dhg, m->dwfcp, NULL, m->dy, m->hg, m->wfcp, (int)N, F, C);
    memset(dh, 0, N * F * sizeof(float));
    rtr_gelu_backward(dh, m->h, dhg, (int)(N * F));
    memset(dln, 0, n * sizeof(float));
    rtr_matmul_backward(dln, m->dwfc, NULL, dh, m->ln2, m->wfc, (int)N, C, F);
    rtr_rmsnorm_backward(dres, m->dg2, m->kern, m->kern_bytes, dln, m->res, m->g2, m->r2, (int)N, C);
    memset(dya, 0, n * sizeof(float));
    rtr_matmul_backward(dya, m->dwproj, NULL, dres, m->ya, m->wproj, (int)N, C, C);
    memset(dq, 0, n * sizeof(float));
    memset(dk, 0, n * sizeof(float));
    memset(dv, 0, n * sizeof(float));
    rtr_attention_backward(dq, dk, dv, m->kern, m->kern_bytes, dya, m->att, m->q, m->k, m->v, m->B, m->T, m->T, m->NH,
                           hs);
    float *dq2 = dh, *dk2 = dh + n;   /* dh is free again (F >= 2C) */
    memset(dq2, 0, 2 * n * sizeof(float));
    rtr_rope_backward(dq2, dq, &m->rope, m->B, m->T, m->NH, hs, 0);
    rtr_rope_backward(dk2, dk, &m->rope, m->B, m->T, m->NH, hs, 0);
    memset(dln, 0, n * sizeof(float));
    size_t WW = (size_t)C * C;
    rtr_matmul_backward(dln, m->dwqkv, NULL, dq2, m->ln1, m->wqkv, (int)N, C, C);
    rtr_matmul_backward(dln, m->dwqkv + WW, NULL, dk2, m->ln1, m->wqkv + WW, (int)N, C, C);
    rtr_matmul_backward(dln, m->dwqkv + 2 * WW, NULL, dv, m->ln1, m->wqkv + 2 * WW, (int)N, C, C);
    memcpy(m->dx, dres, n * sizeof(float));
    rtr_rmsnorm_backward(m->dx, m->dg1, m->kern, m->kern_bytes, dln, m->x, m->g1, m->r1, (int)N, C);
}
static void blk_step(void *p) {
    blk_fwd(p);
    blk_bwd(p);
}
static void blk_f(void *p) { blk_fwd(p); }

static void bench_block(void) {
    blk m = {.B = 4, .T = 512, .C = 256, .NH = 4, .F = 1024};
    size_t N = (size_t)m.B * m.T, n = N * m.C, nf = N * m.F, C = (size_t)m.C, F = (size_t)m.F;
    float ws = 1.0f / sqrtf((float)C);
    m.x = randv(n, 1); m.y = zerov(n); m.g1 = randv(C, 1); m.g2 = randv(C, 1);
    m.wqkv = randv(3 * C * C, ws); m.wproj = randv(C * C, ws); m.wfc = randv(F * C, ws); m.wfcp = randv(C * F, ws / 2);
    m.ln1 = zerov(n); m.r1 = zerov(N); m.q = zerov(n); m.k = zerov(n); m.v = zerov(n);
    m.att = zerov((size_t)m.B * m.NH * m.T * m.T); m.ya = zerov(n); m.res = zerov(n); m.ln2 = zerov(n); m.r2 = zerov(N);
    m.h = zerov(nf); m.hg = zerov(nf);
    m.dy = randv(n, 1); m.dx = zerov(n); m.dg1 = zerov(C); m.dg2 = zerov(C);
    m.dwqkv = zerov(3 * C * C); m.dwproj = zerov(C * C); m.dwfc = zerov(F * C); m.dwfcp = zerov(C * F);
    m.s0 = zerov(n); m.s1 = zerov(nf); m.s2 = zerov(nf); m.s3 = zerov(n);
    m.s4 = zerov(n); m.s5 = zerov(n); m.s6 = zerov(n); m.s7 = zerov(n);
    m.rope = rope_tabv(m.C / m.NH, m.T);
    size_t slice = rtr_attention_backward_scratch(m.T, m.T);
    if (rtr_rmsnorm_backward_scratch(m.C) > slice) slice = rtr_rmsnorm_backward_scratch(m.C);
    m.kern = scratchv(slice, &m.kern_bytes);
    /* flops: matmuls 2 N C^2 (3 + 1) + 2 N C F * 2 forward, twice that backward; causal attention
     * 2 * 2 * (B NH T(T+1)/2) hs forward, twice that backward */
    double mm = 2.0 * N * C * C * 4 + 2.0 * N * C * F * 2;
    double at = 2.0 * 2 * ((double)m.B * m.NH * m.T * (m.T + 1) / 2) * (C / m.NH);
    double tf = timeit(blk_f, &m, REPS), ts = timeit(blk_step, &m, REPS);
    double flf = mm + at, fls = 3 * (mm + at);
    printf("\n4. one decoder block (B=4 T=512 C=256 NH=4 F=1024, causal), through the ops\n");
    printf("   forward:            %8.2f ms  %6.1f GFLOP/s  %5.1f%% of the 2-thread sgemm peak\n", tf * 1e3,
           flf / tf * 1e-9, 100 * flf / tf * 1e-9 / peak2);
    printf("   forward + backward: %8.2f ms  %6.1f GFLOP/s  %5.1f%% of the 2-thread sgemm peak\n", ts * 1e3,
           fls / ts * 1e-9, 100 * fls / ts * 1e-9 / peak2);
    printf("   (%.2f GFLOP per forward + backward, %.0f%% of it in the q/k/v, projection and MLP matmuls)\n",
           fls * 1e-9, 100 * mm / (mm + at));
    float *all[] = {m.x, m.y, m.g1, m.g2, m.wqkv, m.wproj, m.wfc, m.wfcp, m.ln1, m.r1, m.q, m.k, m.v, m.att, m.ya,
                    m.res, m.ln2, m.r2, m.h, m.hg, m.dy, m.dx, m.dg1, m.dg2, m.dwqkv, m.dwproj, m.dwfc, m.dwfcp,
                    m.s0, m.s1, m.s2, m.s3, m.s4, m.s5, m.s6, m.s7};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    free((void *)m.rope.cs);
    free(m.kern);
}

int main(int argc, char **argv) {
    if (argc > 1) REPS = atoi(argv[1]) > 0 ? atoi(argv[1]) : REPS;
    const char *parts = argc > 2 ? argv[2] : "1234";
    printf("bench_ops: %d OpenMP threads, %d OpenBLAS threads, median of %d runs\n", omp_get_max_threads(),
           openblas_get_num_threads(), REPS);
    if (strchr(parts, '1')) bench_sgemm();
    if (peak2 <= 0) peak2 = NAN;
    if (strchr(parts, '2')) bench_attention();
    if (strchr(parts, '3')) bench_elementwise();
    if (strchr(parts, '4')) bench_block();
    return 0;
}
