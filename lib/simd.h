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
#endif

#endif
