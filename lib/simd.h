/*
 * simd.h - what retro's hand-vectorised loops share: RTR_SIMD is defined
 * when the build targets AVX2 and FMA (the -march=native build on x86-64),
 * with <immintrin.h> and the helpers below; otherwise those loops take their
 * portable versions. Header-only.
 */
#ifndef RTR_SIMD_H
#define RTR_SIMD_H

#if defined(__AVX2__) && defined(__FMA__)
#define RTR_SIMD 1
#include <immintrin.h>

/* the sum of the 8 lanes */
static inline float rtr_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* the sums of the 8 lanes of each of v0..v7, in that order, in one vector */
static inline __m256 rtr_hsum8x8(__m256 v0, __m256 v1, __m256 v2, __m256 v3, __m256 v4, __m256 v5, __m256 v6,
                                 __m256 v7) {
    __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v0, v1), _mm256_hadd_ps(v2, v3));   /* per 128-bit half: v0..v3 */
    __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v4, v5), _mm256_hadd_ps(v6, v7));
    return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}
#endif

#endif
