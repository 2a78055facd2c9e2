/*
 * dot.h - the dot products that retro's few-row matrix products are made of (model/ops.c's matrows,
 * decoding; the projection of hash vectors, index/embed_pca.c): each product computed by the same
 * code in the same order whatever else is computed beside it, so that a row's result does not depend
 * on how many rows a call takes (a BLAS product may block rows differently for another count, which
 * changes the last bits). With AVX2 and FMA (RTR_SIMD) 8-wide; otherwise portable loops. Header-only.
 */
#ifndef RTR_DOT_H
#define RTR_DOT_H

#include <stdint.h>
#include <string.h>

#include "lib/simd.h"

/* dot product of n floats: with AVX2 and FMA, four 8-wide partial sums (one
 * would wait on the adder's latency); otherwise 8 partial sums the compiler
 * can vectorise */
#ifdef RTR_SIMD
static inline float rtr_dot(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = rtr_hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}
#else
static inline float rtr_dot(const float *a, const float *b, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}
#endif

/* The products of a few rows (decoding a few streams together, or one) with the rows of B, where BLAS
 * would copy all of B into its own layout at every call, which costs more than the products. Two
 * blocks: 4 rows of A with 2 rows of B (each row of B read once for four rows of A, each row of A
 * once for two of B: 6 loads for 8 multiply-adds) and 1 row of A with 8 rows of B; each block's sums
 * reduced together, one vector for all of them. out: the block's products, row-major (4 x 2 or 1 x 8). */
#ifdef RTR_SIMD
static inline void rtr_dot4x2(const float *A, int lda, const float *B, int ldb, int n, float *out) {
    const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * (int64_t)lda, *a3 = A + 3 * (int64_t)lda, *b0 = B,
                *b1 = B + ldb;
    __m256 s00 = _mm256_setzero_ps(), s10 = s00, s20 = s00, s30 = s00, s01 = s00, s11 = s00, s21 = s00, s31 = s00;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x0 = _mm256_loadu_ps(b0 + i), x1 = _mm256_loadu_ps(b1 + i), y;
        y = _mm256_loadu_ps(a0 + i);
        s00 = _mm256_fmadd_ps(y, x0, s00);
        s01 = _mm256_fmadd_ps(y, x1, s01);
        y = _mm256_loadu_ps(a1 + i);
        s10 = _mm256_fmadd_ps(y, x0, s10);
        s11 = _mm256_fmadd_ps(y, x1, s11);
        y = _mm256_loadu_ps(a2 + i);
        s20 = _mm256_fmadd_ps(y, x0, s20);
        s21 = _mm256_fmadd_ps(y, x1, s21);
        y = _mm256_loadu_ps(a3 + i);
        s30 = _mm256_fmadd_ps(y, x0, s30);
        s31 = _mm256_fmadd_ps(y, x1, s31);
    }
    float t[8];
    _mm256_storeu_ps(t, rtr_hsum8x8(s00, s01, s10, s11, s20, s21, s30, s31));
    for (; i < n; i++)
        for (int r = 0; r < 4; r++) {
            const float *a = A + r * (int64_t)lda;
            t[2 * r] += a[i] * b0[i];
            t[2 * r + 1] += a[i] * b1[i];
        }
    memcpy(out, t, sizeof t);
}

static inline void rtr_dot1x8(const float *a, const float *B, int ldb, int n, float *out) {
    __m256 s[8];
    for (int c = 0; c < 8; c++) s[c] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(a + i);
        for (int c = 0; c < 8; c++) s[c] = _mm256_fmadd_ps(x, _mm256_loadu_ps(B + c * (int64_t)ldb + i), s[c]);
    }
    _mm256_storeu_ps(out, rtr_hsum8x8(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]));
    for (; i < n; i++)
        for (int c = 0; c < 8; c++) out[c] += a[i] * B[c * (int64_t)ldb + i];
}
#else
static inline void rtr_dot4x2(const float *A, int lda, const float *B, int ldb, int n, float *out) {
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 2; c++) out[2 * r + c] = rtr_dot(A + r * (int64_t)lda, B + c * (int64_t)ldb, n);
}

static inline void rtr_dot1x8(const float *a, const float *B, int ldb, int n, float *out) {
    for (int c = 0; c < 8; c++) out[c] = rtr_dot(a, B + c * (int64_t)ldb, n);
}
#endif

#endif
