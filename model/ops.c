#include "model/ops.h"

#include <cblas.h>
#include <math.h>

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
