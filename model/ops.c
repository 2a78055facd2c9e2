/* ops.c - the network's kernels, forward and backward, each beside a naive reference in tests/test_ops.c (see ops.h). */
#include "model/ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "lib/blas.h"
#include "lib/dot.h"
#include "lib/simd.h"
#include "lib/status.h"

/* --- matrix products ------------------------------------------------------------------
 * The products run on OpenMP's threads: each thread makes a single-threaded
 * sgemm call on its share of the output, and OpenBLAS is asked for one thread
 * meanwhile (lib/blas.h says why). */

/* below this many multiply-adds a product is one plain BLAS call */
#define MM_PAR_WORK (1 << 20)

/* --- per-thread scratch (see ops.h) ---------------------------------------------------- */
static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* The threads a kernel may run on with slices of `slice` bytes of scratch:
 * as many as fit, at most OpenMP's count. Thread t uses bytes
 * [t * slice, (t + 1) * slice). */
static int scratch_threads(const void *scratch, size_t scratch_bytes, size_t slice) {
    RTR_ASSERT(scratch != NULL && slice > 0 && scratch_bytes >= slice);
    RTR_ASSERT((uintptr_t)scratch % sizeof(double) == 0);
    size_t fit = scratch_bytes / slice;
    int nt = omp_get_max_threads();
    return fit < (size_t)nt ? (int)fit : nt;
}

static void put(float *c, float beta, float x) { *c = beta == 0 ? x : beta * *c + x; }

/* C (M, N) = A (M, K) B^T + beta C for a few rows (M <= SMALL_M), B (N, K): blocks of 8 columns of C,
 * in parallel for a large B; every four rows of A with each column in turn (rtr_dot4rows: the column's
 * row of B read once for the four), the rest a row against the block's 8 columns (rtr_dot1x8; the last
 * columns one at a time). Blocks of 4 rows x 2 columns decoded 8 streams on two threads about 10%
 * slower (docs/benchmarks.md, "Few-row products and decoding attention, measured"). */
#define SMALL_M 16
static void matrows(const float *A, int lda, int M, const float *B, int ldb, int N, int K, float beta, float *Cm,
                    int ldc) {
    int nb = (N + 7) / 8;
#pragma omp parallel for if ((int64_t)N * K > (1 << 17) && !omp_in_parallel())
    for (int jb = 0; jb < nb; jb++) {
        int j0 = jb * 8, jn = N - j0 < 8 ? N - j0 : 8;
        float d[8];
        int m = 0;
        for (; m + 4 <= M; m += 4)
            for (int j = j0; j < j0 + jn; j++) {
                rtr_dot4rows(A + (int64_t)m * lda, lda, B + (int64_t)j * ldb, K, d);
                for (int r = 0; r < 4; r++) put(Cm + (int64_t)(m + r) * ldc + j, beta, d[r]);
            }
        for (; m < M; m++) {
            const float *a = A + (int64_t)m * lda;
            float *c = Cm + (int64_t)m * ldc + j0;
            if (jn == 8) {
                rtr_dot1x8(a, B + (int64_t)j0 * ldb, ldb, K, d);
                for (int j = 0; j < 8; j++) put(c + j, beta, d[j]);
            } else {
                for (int j = 0; j < jn; j++) put(c + j, beta, rtr_dot(a, B + (int64_t)(j0 + j) * ldb, K));
            }
        }
    }
}

/* c (N) = a (K) B + beta c, B (K, N): one row (decoding a single token), where a BLAS call costs
 * more in set-up than in arithmetic (B (N, K): matrows). */
static void matvec(const float *a, const float *B, int ldb, int N, int K, float beta, float *c) {
    if (beta == 0)
        for (int j = 0; j < N; j++) c[j] = 0;
    else if (beta != 1)
        for (int j = 0; j < N; j++) c[j] *= beta;
    for (int k = 0; k < K; k++) {
        const float *row = B + (int64_t)k * ldb;
        float ak = a[k];
        for (int j = 0; j < N; j++) c[j] += ak * row[j];
    }
}

/* C (M, N) = alpha op(A) op(B) + beta C, row-major, as cblas_sgemm, with the
 * rows (or, when there are more columns, the columns) of C split between the
 * OpenMP threads. */
static void sgemm_par(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                      int ldb, float beta, float *Cm, int ldc) {
    enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    if (M <= 0 || N <= 0) return;
    if (M <= SMALL_M && !ta && tb && alpha == 1.0f) {   /* a few rows, one among them */
        matrows(A, lda, M, B, ldb, N, K, beta, Cm, ldc);
        return;
    }
    if (M == 1 && !ta && alpha == 1.0f) {
        matvec(A, B, ldb, N, K, beta, Cm);
        return;
    }
    int nt = omp_get_max_threads();
    if (nt <= 1 || omp_in_parallel()) {   /* one thread asked for: BLAS's own threads too */
        int saved = nt <= 1 ? rtr_blas_single_begin() : 0;
        cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, Cm, ldc);
        rtr_blas_single_end(saved);
        return;
    }
    int saved = rtr_blas_single_begin();
    if ((int64_t)M * N * K < MM_PAR_WORK) {   /* small: on this thread alone */
        cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, Cm, ldc);
        rtr_blas_single_end(saved);
        return;
    }
    int byrow = M >= N, len = byrow ? M : N;
    /* one piece per thread, in multiples of 16 rows/columns (finer pieces measured slower) */
    int piece = ((len + nt - 1) / nt + 15) / 16 * 16, np = (len + piece - 1) / piece;
#pragma omp parallel for schedule(static, 1) num_threads(np < nt ? np : nt)
    for (int p = 0; p < np; p++) {
        int o = p * piece, n = len - o < piece ? len - o : piece;
        if (byrow)
            cblas_sgemm(CblasRowMajor, TA, TB, n, N, K, alpha, ta ? A + o : A + (int64_t)o * lda, lda, B, ldb, beta,
                        Cm + (int64_t)o * ldc, ldc);
        else
            cblas_sgemm(CblasRowMajor, TA, TB, M, n, K, alpha, A, lda, tb ? B + (int64_t)o * ldb : B + o, ldb, beta,
                        Cm + o, ldc);
    }
    rtr_blas_single_end(saved);
}

void rtr_matmul_forward(float *out, const float *inp, const float *w, const float *b, int N, int C, int OC) {
    /* out = inp @ w^T */
    sgemm_par(0, 1, N, OC, C, 1.0f, inp, C, w, C, 0.0f, out, OC);
    if (!b) return;
#pragma omp parallel for if ((int64_t)N * OC > 65536)
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) out[(int64_t)n * OC + o] += b[o];
}

void rtr_matmul_forward_acc(float *out, const float *inp, const float *w, int N, int C, int OC) {
    sgemm_par(0, 1, N, OC, C, 1.0f, inp, C, w, C, 1.0f, out, OC);
}

void rtr_matmul_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int N,
                         int C, int OC) {
    /* dinp += dout (N, OC) @ w (OC, C) */
    if (dinp) sgemm_par(0, 0, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
    /* dw += dout^T (OC, N) @ inp (N, C) */
    if (dw) sgemm_par(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (db) {
#pragma omp parallel for if ((int64_t)N * OC > 65536)
        for (int o = 0; o < OC; o++) {
            float s = 0;
            for (int n = 0; n < N; n++) s += dout[(int64_t)n * OC + o];
            db[o] += s;
        }
    }
}

/* --- vector helpers ----------------------------------------------------------------------
 * With AVX2 and FMA (the -march=native build on x86-64) the loops that call exp
 * or tanh use 8-wide versions of them below; otherwise plain libm. exp8 is the
 * Cephes expf polynomial (about 1 ulp on the range softmax uses, x <= 0; 0 below
 * log(FLT_MIN), NaN in gives NaN out); tanh8 is Cephes tanhf (an odd polynomial
 * below |x| 0.625, 1 - 2 / (exp(2|x|) + 1) above; relative error about 2e-7). */
#ifdef RTR_SIMD
static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.3365447505531f), hi = _mm256_set1_ps(88.3762626647949f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));   /* NaN (the second operand) passes through */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

static inline __m256 tanh8(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 a = _mm256_andnot_ps(sign, x);
    /* |x| >= 0.625: 1 - 2 / (exp(2|x|) + 1), |x| capped at 10, where it is 1 in float (as
     * from 9.01 on; not at 9, which would leave 1 - t^2 = 1.2e-7 instead of 0) */
    __m256 ac = _mm256_min_ps(_mm256_set1_ps(10.0f), a);
    __m256 e = exp8(_mm256_add_ps(ac, ac));
    __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
    /* |x| < 0.625: x + x^3 P(x^2) */
    __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}

/* lanes [0, n) of 8 set (n in 0..8), for masked loads and stores of a tail */
static inline __m256i tailmask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/* --- RMSNorm ---------------------------------------------------------------------------- */
#define RMS_EPS 1e-5f

void rtr_rmsnorm_forward(float *out, float *rstd, const float *x, const float *g, int N, int C) {
#pragma omp parallel for schedule(static) if ((int64_t)N * C > 65536)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (int64_t)n * C;
        float *o = out + (int64_t)n * C;
        float ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < C; i++) ss += xr[i] * xr[i];
        float r = 1.0f / sqrtf(ss / (float)C + RMS_EPS);
#pragma omp simd
        for (int i = 0; i < C; i++) o[i] = xr[i] * r * g[i];
        rstd[n] = r;
    }
}

size_t rtr_rmsnorm_backward_scratch(int C) { return round64((size_t)(C > 0 ? C : 1) * sizeof(double)); }

/* y_i = x_i r g_i, r = (mean(x^2) + eps)^-1/2, dr/dx_j = -r^3 x_j / C:
 * dx_j = r g_j dy_j - (r^3 / C) x_j sum_i dy_i g_i x_i
 * dg_i = sum_n dy_ni x_ni r_n: each thread sums its own (static) block of rows
 * in double into its slice of the scratch, then the partial sums are added in
 * thread order (deterministic for a given thread count). */
void rtr_rmsnorm_backward(float *dx, float *dg, void *scratch, size_t scratch_bytes, const float *dout,
                          const float *x, const float *g, const float *rstd, int N, int C) {
    size_t slice = rtr_rmsnorm_backward_scratch(C);
    int nthr = dg ? scratch_threads(scratch, scratch_bytes, slice) : omp_get_max_threads();
#pragma omp parallel if ((int64_t)N * C > 65536) num_threads(nthr)
    {
        int nt = omp_get_num_threads(), tid = omp_get_thread_num();
        double *pd = dg ? (double *)((char *)scratch + (size_t)tid * slice) : NULL;
        if (pd) memset(pd, 0, (size_t)C * sizeof *pd);   /* read by the others only after the loop's barrier */
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (int64_t)n * C, *dy = dout + (int64_t)n * C;
            float r = rstd[n];
            if (dx) {
                float dot = 0;
#pragma omp simd reduction(+ : dot)
                for (int i = 0; i < C; i++) dot += dy[i] * g[i] * xr[i];
                float k = dot * r * r * r / (float)C;
                float *d = dx + (int64_t)n * C;
#pragma omp simd
                for (int i = 0; i < C; i++) d[i] += r * g[i] * dy[i] - k * xr[i];
            }
            if (pd) {
#pragma omp simd
                for (int i = 0; i < C; i++) pd[i] += (double)(dy[i] * xr[i]) * r;
            }
        }
        if (dg) {
#pragma omp for schedule(static)
            for (int i = 0; i < C; i++) {
                double s = 0;
                for (int t = 0; t < nt; t++) s += ((const double *)((const char *)scratch + (size_t)t * slice))[i];
                dg[i] += (float)s;
            }
        }
    }
}

/* --- GELU ------------------------------------------------------------------------------- */
#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
#define GELU_C 0.044715f
#define ELT_BLOCK 4096               /* elements per OpenMP work item */

static void gelu_fwd_span(float *out, const float *x, int64_t n) {
    int64_t i = 0;
#ifdef RTR_SIMD
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), kk = _mm256_set1_ps(GELU_K),
                 cc = _mm256_set1_ps(GELU_C);
    for (; i < n; i += 8) {
        int rem = n - i < 8 ? (int)(n - i) : 8;
        __m256i m = tailmask(rem);
        __m256 v = rem == 8 ? _mm256_loadu_ps(x + i) : _mm256_maskload_ps(x + i, m);
        __m256 u = _mm256_mul_ps(kk, _mm256_fmadd_ps(_mm256_mul_ps(cc, v), _mm256_mul_ps(v, v), v));
        __m256 y = _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, tanh8(u)));
        if (rem == 8) _mm256_storeu_ps(out + i, y);
        else _mm256_maskstore_ps(out + i, m, y);
    }
#endif
    for (; i < n; i++) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + tanhf(GELU_K * (v + GELU_C * v * v * v)));
    }
}

static void gelu_bwd_span(float *dx, const float *x, const float *dout, int64_t n) {
    int64_t i = 0;
#ifdef RTR_SIMD
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), kk = _mm256_set1_ps(GELU_K),
                 cc = _mm256_set1_ps(GELU_C), c3 = _mm256_set1_ps(3.0f * GELU_C);
    for (; i < n; i += 8) {
        int rem = n - i < 8 ? (int)(n - i) : 8;
        __m256i m = tailmask(rem);
        __m256 v, go, acc;
        if (rem == 8) {
            v = _mm256_loadu_ps(x + i);
            go = _mm256_loadu_ps(dout + i);
            acc = _mm256_loadu_ps(dx + i);
        } else {
            v = _mm256_maskload_ps(x + i, m);
            go = _mm256_maskload_ps(dout + i, m);
            acc = _mm256_maskload_ps(dx + i, m);
        }
        __m256 v2 = _mm256_mul_ps(v, v);
        __m256 u = _mm256_mul_ps(kk, _mm256_fmadd_ps(_mm256_mul_ps(cc, v), v2, v));
        __m256 t = tanh8(u);
        __m256 sech2 = _mm256_fnmadd_ps(t, t, one);
        /* 0.5 (1 + t) + 0.5 v sech2 K (1 + 3 c v^2) */
        __m256 d = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_mul_ps(sech2, kk)),
                                 _mm256_fmadd_ps(c3, v2, one));
        d = _mm256_fmadd_ps(half, _mm256_add_ps(one, t), d);
        acc = _mm256_fmadd_ps(d, go, acc);
        if (rem == 8) _mm256_storeu_ps(dx + i, acc);
        else _mm256_maskstore_ps(dx + i, m, acc);
    }
#endif
    for (; i < n; i++) {
        float v = x[i], u = GELU_K * (v + GELU_C * v * v * v);
        float t = tanhf(u), sech2 = 1.0f - t * t;
        float d = 0.5f * (1.0f + t) + 0.5f * v * sech2 * GELU_K * (1.0f + 3.0f * GELU_C * v * v);
        dx[i] += d * dout[i];
    }
}

void rtr_gelu_forward(float *out, const float *x, int N) {
    int64_t nb = ((int64_t)N + ELT_BLOCK - 1) / ELT_BLOCK;
#pragma omp parallel for schedule(static) if (N > 65536)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * ELT_BLOCK, n = N - i0 < ELT_BLOCK ? N - i0 : ELT_BLOCK;
        gelu_fwd_span(out + i0, x + i0, n);
    }
}

void rtr_gelu_backward(float *dx, const float *x, const float *dout, int N) {
    int64_t nb = ((int64_t)N + ELT_BLOCK - 1) / ELT_BLOCK;
#pragma omp parallel for schedule(static) if (N > 65536)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * ELT_BLOCK, n = N - i0 < ELT_BLOCK ? N - i0 : ELT_BLOCK;
        gelu_bwd_span(dx + i0, x + i0, dout + i0, n);
    }
}

/* --- softmax cross-entropy --------------------------------------------------------------- */
/* max of l[0..n), n >= 1 */
static float row_max(const float *l, int n) {
    int v = 0;
    float mx = l[0];
#ifdef RTR_SIMD
    if (n >= 8) {
        __m256 m = _mm256_loadu_ps(l);
        for (v = 8; v + 8 <= n; v += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(l + v));
        mx = hmax8(m);
    }
#endif
    for (; v < n; v++) mx = l[v] > mx ? l[v] : mx;
    return mx;
}

/* sum of exp(l[v] - mx) over v < n, in double; e (if not NULL) gets the terms */
static double row_expsum(float *e, const float *l, float mx, int n) {
    int v = 0;
    double z = 0;
#ifdef RTR_SIMD
    __m256d z0 = _mm256_setzero_pd(), z1 = _mm256_setzero_pd();
    __m256 m = _mm256_set1_ps(mx);
    for (; v + 8 <= n; v += 8) {
        __m256 t = exp8(_mm256_sub_ps(_mm256_loadu_ps(l + v), m));
        if (e) _mm256_storeu_ps(e + v, t);
        z0 = _mm256_add_pd(z0, _mm256_cvtps_pd(_mm256_castps256_ps128(t)));
        z1 = _mm256_add_pd(z1, _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1)));
    }
    double zz[4];
    _mm256_storeu_pd(zz, _mm256_add_pd(z0, z1));
    z = (zz[0] + zz[1]) + (zz[2] + zz[3]);
#endif
    for (; v < n; v++) {
        float t = expf(l[v] - mx);
        if (e) e[v] = t;
        z += t;
    }
    return z;
}

float rtr_crossentropy(float *dlogits, const float *logits, const int32_t *targets, int N, int V) {
    int counted = 0;
    for (int n = 0; n < N; n++) counted += targets[n] >= 0 && targets[n] < V;
    double loss = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss) if ((int64_t)N * V > 65536)
    for (int n = 0; n < N; n++) {
        const float *l = logits + (int64_t)n * V;
        float *d = dlogits ? dlogits + (int64_t)n * V : NULL;
        int t = targets[n];
        if (t < 0 || t >= V) {
            if (d) memset(d, 0, (size_t)V * sizeof *d);
            continue;
        }
        float mx = row_max(l, V);
        double z = row_expsum(d, l, mx, V);
        loss += log(z) - (double)(l[t] - mx);
        if (d) {
            float inv = 1.0f / (float)counted, f = (float)((double)inv / z);
#pragma omp simd
            for (int v = 0; v < V; v++) d[v] *= f;
            d[t] -= inv;
        }
    }
    return counted ? (float)(loss / counted) : 0.0f;
}

/* --- rotary positions ---------------------------------------------------------------- */
/* The tables are the caller's (ops.h), so that a call costs no cos/sin. A
 * position gets the same (cos, sin) whatever the start p0 of its table. */
size_t rtr_rope_table_floats(int hs, int npos) { return (size_t)(npos > 0 ? npos : 0) * (size_t)(hs > 0 ? hs : 0); }

rtr_rope_table rtr_rope_table_fill(float *cs, int hs, int p0, int npos) {
    RTR_ASSERT(hs >= 2 && hs % 2 == 0 && npos >= 0 && (int64_t)p0 + npos <= INT32_MAX);
    RTR_ASSERT(cs != NULL || npos == 0);
#pragma omp parallel for schedule(static) if ((int64_t)npos * hs > 16384)
    for (int p = 0; p < npos; p++)
        for (int i = 0; i < hs / 2; i++) {
            double ang = (double)(p0 + p) * pow(10000.0, -2.0 * i / hs);
            cs[(int64_t)p * hs + 2 * i] = (float)cos(ang);
            cs[(int64_t)p * hs + 2 * i + 1] = (float)sin(ang);
        }
    return (rtr_rope_table){cs, hs, p0, npos};
}

/* out[0..hs) (=|+=) the rotation of x[0..hs) by the (cos, sin) pairs cs; dir -1 rotates back.
 * Same float operations (and rounding) as y0 = x0 c - x1 s, y1 = x0 s + x1 c. */
static inline void rope_head(float *out, const float *x, const float *cs, int hs, float dir, int acc) {
    int i = 0;
#ifdef RTR_SIMD
    const __m256 sgn = _mm256_set1_ps(dir < 0 ? -0.0f : 0.0f);
    for (; i + 8 <= hs; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), t = _mm256_loadu_ps(cs + i);
        __m256 c = _mm256_moveldup_ps(t), s = _mm256_xor_ps(_mm256_movehdup_ps(t), sgn);
        __m256 sw = _mm256_permute_ps(v, 0xB1);   /* (x1, x0) */
        __m256 y = _mm256_addsub_ps(_mm256_mul_ps(v, c), _mm256_mul_ps(sw, s));
        if (acc) y = _mm256_add_ps(_mm256_loadu_ps(out + i), y);
        _mm256_storeu_ps(out + i, y);
    }
#endif
    for (; i < hs; i += 2) {
        float c = cs[i], s = dir * cs[i + 1];
        float x0 = x[i], x1 = x[i + 1];
        float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
        if (acc) {
            out[i] += y0;
            out[i + 1] += y1;
        } else {
            out[i] = y0;
            out[i + 1] = y1;
        }
    }
}

static void rope(float *out, const float *x, const rtr_rope_table *rt, int B, int T, int NH, int hs, int pos0,
                 float dir, int acc) {
    if (B <= 0 || T <= 0 || NH <= 0 || hs <= 0) return;
    RTR_ASSERT(rt != NULL && rt->hs == hs && pos0 >= rt->p0 && (int64_t)pos0 - rt->p0 + T <= rt->npos);
    const float *tab = rt->cs + (int64_t)(pos0 - rt->p0) * hs;   /* (T, hs): positions pos0 .. pos0 + T - 1 */
#pragma omp parallel for collapse(2) schedule(static) if ((int64_t)B * T * NH * hs > 65536)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *cs = tab + (int64_t)t * hs;
            for (int h = 0; h < NH; h++) {
                int64_t base = (((int64_t)b * T + t) * NH + h) * hs;
                rope_head(out + base, x + base, cs, hs, dir, acc);
            }
        }
}

void rtr_rope_forward(float *out, const float *x, const rtr_rope_table *tab, int B, int T, int NH, int hs, int pos0) {
    rope(out, x, tab, B, T, NH, hs, pos0, 1.0f, 0);
}

void rtr_rope_backward(float *dx, const float *dout, const rtr_rope_table *tab, int B, int T, int NH, int hs,
                       int pos0) {
    rope(dx, dout, tab, B, T, NH, hs, pos0, -1.0f, 1);
}

/* --- attention ------------------------------------------------------------------------- */
/* Per (batch, head), with the head's rows of q, k, v strided by C = NH*hs:
 *   S = scale q k^T into att, masked softmax by rows in place, out = P v;
 * backward: dv += P^T dout, dP = dout v^T, dS = P (dP - rowsum(P dP)) scale,
 *   dq += dS k, dk += dS^T q.
 * Queries go in blocks of ATT_QB rows; a block only touches the keys up to its
 * last visible one (causal: the block's last query; kmask: the last key kept),
 * so the masked upper triangle costs nothing. (b, h) pairs run in parallel with
 * single-threaded sgemm calls inside. */
#define ATT_QB 64

/* Softmax over s[0..n) in place, keys with keep[j] == 0 (keep may be NULL)
 * left out (probability 0). Returns 0, with s zeroed, if no key is kept. A NaN
 * among the kept scores makes the whole row NaN. */
static int softmax_row(float *s, const uint8_t *keep, int n) {
    float mx = -INFINITY, z = 0;
    int j = 0;
#ifdef RTR_SIMD
    const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    __m256 vm = ninf, vnan = zero;
    for (; j < n; j += 8) {
        int rem = n - j < 8 ? n - j : 8;
        __m256i m = tailmask(rem);
        __m256 v = rem == 8 ? _mm256_loadu_ps(s + j) : _mm256_maskload_ps(s + j, m);
        __m256 live = _mm256_castsi256_ps(m);
        if (keep) {   /* the 8 mask bytes (the tail's through a copy: no read past n) widened to lanes */
            __m128i kb;
            if (rem == 8) {
                kb = _mm_loadl_epi64((const __m128i *)(keep + j));
            } else {
                uint8_t t8[16] = {0};
                memcpy(t8, keep + j, (size_t)rem);
                kb = _mm_loadu_si128((const __m128i *)t8);
            }
            __m256i dropped = _mm256_cmpeq_epi32(_mm256_cvtepu8_epi32(kb), _mm256_setzero_si256());
            live = _mm256_andnot_ps(_mm256_castsi256_ps(dropped), live);
            v = _mm256_blendv_ps(ninf, v, live);
            if (rem == 8) _mm256_storeu_ps(s + j, v);
            else _mm256_maskstore_ps(s + j, m, v);
        } else if (rem < 8) {
            v = _mm256_blendv_ps(ninf, v, live);
        }
        vm = _mm256_max_ps(v, vm);   /* NaN (the first operand) left out here... */
        vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    mx = hmax8(vm);
    if (!_mm256_testz_ps(vnan, vnan)) mx = NAN;   /* ...and let through here */
    if (mx == -INFINITY) {
        memset(s, 0, (size_t)n * sizeof *s);
        return 0;
    }
    __m256 vmx = _mm256_set1_ps(mx), vz = zero;
    for (j = 0; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmx));
        _mm256_storeu_ps(s + j, e);
        vz = _mm256_add_ps(vz, e);
    }
    if (j < n) {
        __m256i m = tailmask(n - j);
        __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(s + j, m), vmx));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
        _mm256_maskstore_ps(s + j, m, e);
        vz = _mm256_add_ps(vz, e);
    }
    z = rtr_hsum8(vz);
#else
    int nan = 0;
    for (j = 0; j < n; j++) {
        if (keep && keep[j] == 0) s[j] = -INFINITY;
        if (s[j] > mx) mx = s[j];
        nan |= s[j] != s[j];
    }
    if (nan) mx = NAN;
    if (mx == -INFINITY) {
        memset(s, 0, (size_t)n * sizeof *s);
        return 0;
    }
    for (j = 0; j < n; j++) {
        s[j] = s[j] == -INFINITY ? 0.0f : expf(s[j] - mx);
        z += s[j];
    }
#endif
    float r = 1.0f / z;
#pragma omp simd
    for (j = 0; j < n; j++) s[j] *= r;
    return 1;
}

/* one (batch, head): q, out (Tq rows), k, v (Tk rows) at stride C; att (Tq, Tk);
 * km (Tk) or NULL */
static void att_fwd_head(float *out, float *att, const float *q, const float *k, const float *v, const uint8_t *km,
                         int Tq, int Tk, int C, int hs, int causal, float scale) {
    int kend = Tk;
    const uint8_t *kp = NULL;   /* the mask, when some key up to kend is dropped */
    if (km) {
        while (kend > 0 && !km[kend - 1]) kend--;
        if (kend > 0 && memchr(km, 0, (size_t)kend)) kp = km;
    }
    if (Tq == 1) {   /* one query (decoding): dot products and a weighted sum, no BLAS set-up */
        int n = causal && kend > 1 ? 1 : kend;
        int j = 0;
        for (; j + 8 <= n; j += 8) {   /* eight keys at a time: q read once for them, their sums reduced together */
            rtr_dot1x8(q, k + (int64_t)j * C, C, hs, att + j);
            for (int x = 0; x < 8; x++) att[j + x] *= scale;
        }
        for (; j < n; j++) att[j] = scale * rtr_dot(q, k + (int64_t)j * C, hs);
        if (n > 0 && !softmax_row(att, kp, n)) n = 0;
        if (n < Tk) memset(att + n, 0, (size_t)(Tk - n) * sizeof *att);
        memset(out, 0, (size_t)hs * sizeof *out);
        for (j = 0; j < n; j++) {
            float p = att[j];
            if (p == 0) continue;
            const float *vj = v + (int64_t)j * C;
#pragma omp simd
            for (int d = 0; d < hs; d++) out[d] += p * vj[d];
        }
        return;
    }
    int qb = causal ? ATT_QB : Tq;
    for (int i0 = 0; i0 < Tq; i0 += qb) {
        int i1 = Tq - i0 < qb ? Tq : i0 + qb, M = i1 - i0;
        int n = causal && i1 < kend ? i1 : kend;   /* keys this block may see */
        float *S = att + (int64_t)i0 * Tk;
        if (n > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, n, hs, scale, q + (int64_t)i0 * C, C, k, C, 0.0f,
                        S, Tk);
        for (int i = i0; i < i1; i++) {
            float *a = att + (int64_t)i * Tk;
            int lim = causal && i + 1 < n ? i + 1 : n;
            if (lim > 0 && !softmax_row(a, kp, lim)) lim = 0;
            if (lim < Tk) memset(a + lim, 0, (size_t)(Tk - lim) * sizeof *a);
        }
        if (n > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, hs, n, 1.0f, S, Tk, v, C, 0.0f,
                        out + (int64_t)i0 * C, C);
        else
            for (int i = i0; i < i1; i++) memset(out + (int64_t)i * C, 0, (size_t)hs * sizeof *out);
    }
}

/* below this many multiply-adds (or with one (b, h) pair) the attention runs on the calling thread */
#define ATT_PAR_WORK (1 << 18)

void rtr_attention_forward(float *out, float *att, const float *q, const float *k, const float *v, const uint8_t *kmask,
                           int B, int Tq, int Tk, int NH, int hs, int causal) {
    if (B <= 0 || NH <= 0 || Tq <= 0) return;
    int C = NH * hs, npair = B * NH;
    float scale = 1.0f / sqrtf((float)hs);
    int par = npair > 1 && (int64_t)npair * Tq * Tk * hs > ATT_PAR_WORK && omp_get_max_threads() > 1 &&
              !omp_in_parallel();
    int saved = par ? rtr_blas_single_begin() : 0;
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int p = 0; p < npair; p++) {
        int b = p / NH, h = p % NH;
        att_fwd_head(out + (int64_t)b * Tq * C + h * hs, att + (int64_t)p * Tq * Tk, q + (int64_t)b * Tq * C + h * hs,
                     k + (int64_t)b * Tk * C + h * hs, v + (int64_t)b * Tk * C + h * hs,
                     kmask ? kmask + (int64_t)b * Tk : NULL, Tq, Tk, C, hs, causal, scale);
    }
    rtr_blas_single_end(saved);
}

/* one (batch, head) of the backward pass; ds: scratch of min(Tq, ATT_QB) * Tk floats */
static void att_bwd_head(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                         const float *k, const float *v, float *ds, int Tq, int Tk, int C, int hs, float scale) {
    for (int i0 = 0; i0 < Tq; i0 += ATT_QB) {
        int i1 = Tq - i0 < ATT_QB ? Tq : i0 + ATT_QB, M = i1 - i0;
        const float *P = att + (int64_t)i0 * Tk;
        /* the block's keys: up to its last nonzero probability (the rest contribute nothing) */
        int n = 0;
        for (int r = M - 1; r >= 0 && n < Tk; r--) {   /* last row first: causal rows see more keys */
            const float *p = P + (int64_t)r * Tk;
            int j = Tk;
#ifdef RTR_SIMD
            while (j - 8 >= n &&
                   _mm256_testz_ps(_mm256_cmp_ps(_mm256_loadu_ps(p + j - 8), _mm256_setzero_ps(), _CMP_NEQ_UQ),
                                   _mm256_castsi256_ps(_mm256_set1_epi32(-1))))
                j -= 8;
#endif
            while (j > n && p[j - 1] == 0) j--;
            if (j > n) n = j;
        }
        if (n == 0) continue;
        const float *go = dout + (int64_t)i0 * C;
        if (dv) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hs, M, 1.0f, P, Tk, go, C, 1.0f, dv, C);
        if (!dq && !dk) continue;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, n, hs, 1.0f, go, C, v, C, 0.0f, ds, n);
        for (int r = 0; r < M; r++) {
            const float *p = P + (int64_t)r * Tk;
            float *d = ds + (int64_t)r * n, dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int j = 0; j < n; j++) dot += p[j] * d[j];
#pragma omp simd
            for (int j = 0; j < n; j++) d[j] = p[j] * (d[j] - dot) * scale;
        }
        if (dq)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, hs, n, 1.0f, ds, n, k, C, 1.0f,
                        dq + (int64_t)i0 * C, C);
        if (dk)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hs, M, 1.0f, ds, n, q + (int64_t)i0 * C, C, 1.0f,
                        dk, C);
    }
}

size_t rtr_attention_backward_scratch(int Tq, int Tk) {
    int qb = Tq < ATT_QB ? Tq : ATT_QB;
    return round64((size_t)(qb > 0 ? qb : 1) * (size_t)(Tk > 0 ? Tk : 1) * sizeof(float));
}

void rtr_attention_backward(float *dq, float *dk, float *dv, void *scratch, size_t scratch_bytes, const float *dout,
                            const float *att, const float *q, const float *k, const float *v, int B, int Tq, int Tk,
                            int NH, int hs) {
    RTR_ASSERT(Tk <= RTR_ATT_MAX_KEYS);
    if (B <= 0 || NH <= 0 || Tq <= 0 || Tk <= 0 || (!dq && !dk && !dv)) return;
    int C = NH * hs, npair = B * NH;
    float scale = 1.0f / sqrtf((float)hs);
    size_t slice = rtr_attention_backward_scratch(Tq, Tk);   /* ds of a query block, per thread */
    int need = dq || dk, nthr = need ? scratch_threads(scratch, scratch_bytes, slice) : omp_get_max_threads();
    int par = npair > 1 && (int64_t)npair * Tq * Tk * hs > ATT_PAR_WORK && nthr > 1 && !omp_in_parallel();
    int saved = par ? rtr_blas_single_begin() : 0;
    /* each (b, h) writes its own columns of dq, dk, dv: no races */
#pragma omp parallel if (par) num_threads(nthr)
    {
        float *ds = need ? (float *)((char *)scratch + (size_t)omp_get_thread_num() * slice) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int p = 0; p < npair; p++) {
            int b = p / NH, h = p % NH;
            int64_t qo = (int64_t)b * Tq * C + h * hs, ko = (int64_t)b * Tk * C + h * hs;
            att_bwd_head(dq ? dq + qo : NULL, dk ? dk + ko : NULL, dv ? dv + ko : NULL, dout + qo,
                         att + (int64_t)p * Tq * Tk, q + qo, k + ko, v + ko, ds, Tq, Tk, C, hs, scale);
        }
    }
    rtr_blas_single_end(saved);
}

/* --- chunked cross-attention: the causal shift ---------------------------------------- */
void rtr_cca_gather(float *dst, uint8_t *rowmask, const float *h, int B, int T, int C, int m) {
    RTR_ASSERT(T % m == 0);
    int L = T / m;
#pragma omp parallel for collapse(2) if ((int64_t)B * T * C > 65536)
    for (int b = 0; b < B; b++)
        for (int u = 0; u < L; u++)
            for (int i = 0; i < m; i++) {
                int pos = u * m + m - 1 + i;
                float *d = dst + (((int64_t)b * L + u) * m + i) * C;
                int real = pos < T;
                if (rowmask) rowmask[((int64_t)b * L + u) * m + i] = (uint8_t)real;
                if (real) memcpy(d, h + ((int64_t)b * T + pos) * C, (size_t)C * sizeof *d);
                else memset(d, 0, (size_t)C * sizeof *d);
            }
}

void rtr_cca_scatter(float *out, const float *src, int B, int T, int C, int m) {
    RTR_ASSERT(T % m == 0);
    int L = T / m;
#pragma omp parallel for collapse(2) if ((int64_t)B * T * C > 65536)
    for (int b = 0; b < B; b++)
        for (int u = 0; u < L; u++)
            for (int i = 0; i < m; i++) {
                int pos = u * m + m - 1 + i;
                if (pos >= T) continue;
                const float *s = src + (((int64_t)b * L + u) * m + i) * C;
                float *o = out + ((int64_t)b * T + pos) * C;
                for (int c = 0; c < C; c++) o[c] += s[c];
            }
}
