#include "model/ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "lib/status.h"

void rtr_matmul_forward(float *out, const float *inp, const float *w, const float *b, int N, int C, int OC) {
    /* out = inp @ w^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, 0.0f, out, OC);
    if (!b) return;
#pragma omp parallel for if (N * OC > 65536)
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) out[(int64_t)n * OC + o] += b[o];
}

void rtr_matmul_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int N,
                         int C, int OC) {
    /* dinp += dout (N, OC) @ w (OC, C) */
    if (dinp) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
    /* dw += dout^T (OC, N) @ inp (N, C) */
    if (dw) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (db) {
#pragma omp parallel for if (N * OC > 65536)
        for (int o = 0; o < OC; o++) {
            float s = 0;
            for (int n = 0; n < N; n++) s += dout[(int64_t)n * OC + o];
            db[o] += s;
        }
    }
}

#define RMS_EPS 1e-5f

void rtr_rmsnorm_forward(float *out, float *rstd, const float *x, const float *g, int N, int C) {
#pragma omp parallel for if (N * C > 65536)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (int64_t)n * C;
        float *o = out + (int64_t)n * C;
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)xr[i] * xr[i];
        float r = 1.0f / sqrtf((float)(ss / C) + RMS_EPS);
        for (int i = 0; i < C; i++) o[i] = xr[i] * r * g[i];
        rstd[n] = r;
    }
}

/* y_i = x_i r g_i, r = (mean(x^2) + eps)^-1/2, dr/dx_j = -r^3 x_j / C:
 * dx_j = r g_j dy_j - (r^3 / C) x_j sum_i dy_i g_i x_i */
void rtr_rmsnorm_backward(float *dx, float *dg, const float *dout, const float *x, const float *g, const float *rstd,
                          int N, int C) {
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

#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */

void rtr_gelu_forward(float *out, const float *x, int N) {
#pragma omp parallel for if (N > 65536)
    for (int i = 0; i < N; i++) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + tanhf(GELU_K * (v + 0.044715f * v * v * v)));
    }
}

void rtr_gelu_backward(float *dx, const float *x, const float *dout, int N) {
#pragma omp parallel for if (N > 65536)
    for (int i = 0; i < N; i++) {
        float v = x[i], u = GELU_K * (v + 0.044715f * v * v * v);
        float t = tanhf(u), sech2 = 1.0f - t * t;
        float d = 0.5f * (1.0f + t) + 0.5f * v * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] += d * dout[i];
    }
}

float rtr_crossentropy(float *dlogits, const float *logits, const int32_t *targets, int N, int V) {
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
static void rope(float *out, const float *x, int B, int T, int NH, int hs, int pos0, float dir, int acc) {
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

void rtr_rope_forward(float *out, const float *x, int B, int T, int NH, int hs, int pos0) {
    rope(out, x, B, T, NH, hs, pos0, 1.0f, 0);
}

void rtr_rope_backward(float *dx, const float *dout, int B, int T, int NH, int hs, int pos0) {
    rope(dx, dout, B, T, NH, hs, pos0, -1.0f, 1);
}

/* --- attention ------------------------------------------------------------------------- */
void rtr_attention_forward(float *out, float *att, const float *q, const float *k, const float *v, const uint8_t *kmask,
                           int B, int Tq, int Tk, int NH, int hs, int causal) {
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

void rtr_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
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
