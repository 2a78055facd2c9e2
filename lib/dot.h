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
 * would copy all of B into its own layout at every call, which costs more than the products:
 * rtr_dot4rows, 4 rows of A with one row of B (read once for the four); rtr_dot1x8, one row of A with
 * 8 rows of B (a read once for the eight), their sums reduced together into out[0..7]. */
#ifdef RTR_SIMD
static inline void rtr_dot4rows(const float *A, int lda, const float *b, int n, float *out) {
    const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * (int64_t)lda, *a3 = A + 3 * (int64_t)lda;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 bv = _mm256_loadu_ps(b + i);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + i), bv, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + i), bv, s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a2 + i), bv, s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a3 + i), bv, s3);
    }
    out[0] = rtr_hsum8(s0);
    out[1] = rtr_hsum8(s1);
    out[2] = rtr_hsum8(s2);
    out[3] = rtr_hsum8(s3);
    for (; i < n; i++)
        for (int r = 0; r < 4; r++) out[r] += A[r * (int64_t)lda + i] * b[i];
}

static inline void rtr_dot1x8(const float *a, const float *B, int ldb, int n, float *out) {
    const float *b0 = B, *b1 = B + ldb, *b2 = B + 2 * (int64_t)ldb, *b3 = B + 3 * (int64_t)ldb, *b4 = B + 4 * (int64_t)ldb,
                *b5 = B + 5 * (int64_t)ldb, *b6 = B + 6 * (int64_t)ldb, *b7 = B + 7 * (int64_t)ldb;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {   /* eight named sums: an array of them is kept in memory by some compilers */
        __m256 x = _mm256_loadu_ps(a + i);
        s0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b0 + i), s0);
        s1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b1 + i), s1);
        s2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b2 + i), s2);
        s3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b3 + i), s3);
        s4 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b4 + i), s4);
        s5 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b5 + i), s5);
        s6 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b6 + i), s6);
        s7 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b7 + i), s7);
    }
    _mm256_storeu_ps(out, rtr_hsum8x8(s0, s1, s2, s3, s4, s5, s6, s7));
    for (; i < n; i++)
        for (int c = 0; c < 8; c++) out[c] += a[i] * B[c * (int64_t)ldb + i];
}
#else
static inline void rtr_dot4rows(const float *A, int lda, const float *b, int n, float *out) {
    for (int r = 0; r < 4; r++) out[r] = rtr_dot(A + r * (int64_t)lda, b, n);
}

static inline void rtr_dot1x8(const float *a, const float *B, int ldb, int n, float *out) {
    for (int c = 0; c < 8; c++) out[c] = rtr_dot(a, B + c * (int64_t)ldb, n);
}
#endif

#endif
