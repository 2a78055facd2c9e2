/* sq4.c - 4-bit scalar-quantized scans of flat vectors (see sq4.h). */
#include "index/sq4.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/simd.h"
#include "lib/status.h"
#include "lib/topk.h"

#define BLOCK 64        /* dimensions per 32-byte load */
#define STEP_SIGMA 0.335 /* the least-error uniform 16-level step for a unit Gaussian */

struct rtr_sq4 {
    size_t n;
    uint32_t dim, cb;     /* dimensions; code bytes per vector, (dim + 1) / 2 */
    uint8_t *codes;       /* n x cb */
    float *norm2;         /* n: exact squared norms */
    float *mean, *step;   /* dim */
};

static uint32_t padded(uint32_t dim) { return (dim + BLOCK - 1) / BLOCK * BLOCK; }

/* The position of dimension d in a reordered weight array: per block of 64,
 * the 32 low-nibble dimensions (even) first, then the 32 high-nibble ones. */
static size_t wpos(uint32_t d) { return (size_t)d / BLOCK * BLOCK + (d % 2) * (BLOCK / 2) + (d % BLOCK) / 2; }

rtr_sq4 *rtr_sq4_build(const float *xb, size_t n, uint32_t dim) {
    rtr_sq4 *s = rtr_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n = n;
    s->dim = dim;
    s->cb = (dim + 1) / 2;
    s->codes = rtr_calloc(n * s->cb + 1, 1);
    s->norm2 = rtr_malloc((n + 1) * sizeof *s->norm2);
    s->mean = rtr_calloc(dim, sizeof *s->mean);
    s->step = rtr_calloc(dim, sizeof *s->step);
    double *sum = rtr_calloc(dim, sizeof *sum), *sq = rtr_calloc(dim, sizeof *sq);
    if (!s->codes || !s->norm2 || !s->mean || !s->step || !sum || !sq) {
        rtr_free(sum);
        rtr_free(sq);
        rtr_sq4_free(s);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const float *x = xb + i * dim;
        for (uint32_t d = 0; d < dim; d++) {
            sum[d] += x[d];
            sq[d] += (double)x[d] * x[d];
        }
    }
    for (uint32_t d = 0; d < dim; d++) {
        double m = n ? sum[d] / (double)n : 0, var = n ? sq[d] / (double)n - m * m : 0;
        s->mean[d] = (float)m;
        s->step[d] = var > 0 ? (float)(STEP_SIGMA * sqrt(var)) : 1e-20f;
    }
    rtr_free(sum);
    rtr_free(sq);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        const float *x = xb + i * dim;
        uint8_t *c = s->codes + i * s->cb;
        float nn = 0;
        for (uint32_t d = 0; d < dim; d++) {
            /* level c covers [mean + (c - 8) step, mean + (c - 7) step) */
            float t = floorf((x[d] - s->mean[d]) / s->step[d] + 8.0f);
            uint8_t v = (uint8_t)(t < 0 ? 0 : t > 15 ? 15 : t);
            c[d / 2] |= (uint8_t)(d % 2 ? v << 4 : v);
            nn += x[d] * x[d];
        }
        s->norm2[i] = nn;
    }
    return s;
}

void rtr_sq4_free(rtr_sq4 *s) {
    if (!s) return;
    rtr_free(s->codes);
    rtr_free(s->norm2);
    rtr_free(s->mean);
    rtr_free(s->step);
    rtr_free(s);
}

size_t rtr_sq4_n(const rtr_sq4 *s) { return s->n; }

int rtr_sq4_query_init(const rtr_sq4 *s, const float *q, rtr_sq4_query *out) {
    memset(out, 0, sizeof *out);
    uint32_t pd = padded(s->dim);
    out->w = rtr_calloc(pd, 1);
    float *w = rtr_malloc(s->dim * sizeof *w);
    if (!out->w || !w) {
        rtr_free(w);
        rtr_sq4_query_free(out);
        return rtr_seterr(RTR_E_NOMEM, "search: out of memory");
    }
    /* q.x~ = sum_d q_d (mean_d - 7.5 step_d) + sum_d (q_d step_d) c_d */
    double off = 0;
    float mx = 0;
    for (uint32_t d = 0; d < s->dim; d++) {
        off += (double)q[d] * (s->mean[d] - 7.5 * s->step[d]);
        w[d] = q[d] * s->step[d];
        mx = fabsf(w[d]) > mx ? fabsf(w[d]) : mx;
    }
    out->scale = mx > 0 ? 127.0f / mx : 1.0f;
    out->offset = (float)off;
    for (uint32_t d = 0; d < s->dim; d++) out->w[wpos(d)] = (int8_t)lrintf(w[d] * out->scale);
    rtr_free(w);
    return RTR_OK;
}

void rtr_sq4_query_free(rtr_sq4_query *qq) {
    rtr_free(qq->w);
    qq->w = NULL;
}

/* dot(w, codes of one vector), portable */
static int32_t dot_scalar(const rtr_sq4 *s, const int8_t *w, const uint8_t *c) {
    int32_t acc = 0;
    for (uint32_t j = 0; j < s->cb; j++) {
        size_t b = (size_t)j / (BLOCK / 2) * BLOCK + j % (BLOCK / 2);
        acc += (int32_t)(c[j] & 15) * w[b] + (int32_t)(c[j] >> 4) * w[b + BLOCK / 2];
    }
    return acc;
}

#ifdef RTR_SIMD
/* The same over whole blocks: per block, 16-bit pair sums of code x weight
 * (at most 2 * 15 * 127 per lane and load), widened to 32 bits every 4
 * blocks before they could overflow. */
static int32_t dot_avx2(const int8_t *w, const uint8_t *c, uint32_t nblk) {
    const __m256i lo4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    __m256i acc = _mm256_setzero_si256(), a16 = _mm256_setzero_si256();
    for (uint32_t b = 0; b < nblk; b++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(c + (size_t)b * 32));
        __m256i lo = _mm256_and_si256(v, lo4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
        a16 = _mm256_add_epi16(a16, _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(w + b * 64))));
        a16 = _mm256_add_epi16(a16, _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(w + b * 64 + 32))));
        if ((b & 3) == 3 || b + 1 == nblk) {
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a16, ones));
            a16 = _mm256_setzero_si256();
        }
    }
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
    return _mm_cvtsi128_si32(t);
}
#endif

void rtr_sq4_scan(const rtr_sq4 *s, const rtr_sq4_query *qq, size_t lo, size_t hi, uint32_t r, float *d,
                  int64_t *pos) {
    float a = -2.0f * qq->offset, b = -2.0f / qq->scale;
#ifdef RTR_SIMD
    if (s->dim % BLOCK == 0) {
        uint32_t nblk = s->dim / BLOCK;
        for (size_t i = lo; i < hi; i++) {
            float e = s->norm2[i] + a + b * (float)dot_avx2(qq->w, s->codes + i * s->cb, nblk);
            if (e < d[r - 1]) rtr_topk_put(d, pos, r, e, (int64_t)i);
        }
        return;
    }
#endif
    for (size_t i = lo; i < hi; i++) {
        float e = s->norm2[i] + a + b * (float)dot_scalar(s, qq->w, s->codes + i * s->cb);
        if (e < d[r - 1]) rtr_topk_put(d, pos, r, e, (int64_t)i);
    }
}
