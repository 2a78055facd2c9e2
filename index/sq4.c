/* sq4.c - 4-bit scalar-quantized scans of flat vectors (see sq4.h). */
#include "index/sq4.h"

#include <float.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/le.h"
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
    void *map;            /* the file the arrays point into, or NULL when they are allocated */
    size_t map_len;
    uint8_t *own_codes;   /* mapped, then copied into memory (rtr_sq4_to_memory): the copies, else NULL */
    float *own_norm2;
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
    if (s->map) {
        munmap(s->map, s->map_len);
        rtr_free(s->own_codes);
        rtr_free(s->own_norm2);
    } else {
        rtr_free(s->codes);
        rtr_free(s->norm2);
        rtr_free(s->mean);
        rtr_free(s->step);
    }
    rtr_free(s);
}

size_t rtr_sq4_n(const rtr_sq4 *s) { return s->n; }
uint32_t rtr_sq4_dim(const rtr_sq4 *s) { return s->dim; }

/* --- files --------------------------------------------------------------------------------- */
#define FILE_MAGIC "RTRSQ4\0\1"
#define HEADER 32
#define MAX_N ((uint64_t)1 << 34)

static uint64_t align64(uint64_t x) { return (x + 63) & ~(uint64_t)63; }

/* Offsets of the arrays (file format in sq4.h); the file's length in *end. */
static void layout(uint32_t dim, uint64_t n, uint64_t *ids, uint64_t *norms, uint64_t *codes, uint64_t *end) {
    *ids = align64(HEADER + 8ull * dim);
    *norms = *ids + 8 * n;
    *codes = align64(*norms + 4 * n);
    *end = *codes + n * ((dim + 1ull) / 2);
}


static int pad_to(FILE *f, uint64_t *at, uint64_t to) {
    static const uint8_t zero[64];
    size_t k = (size_t)(to - *at);
    *at = to;
    return k && fwrite(zero, 1, k, f) != k;
}

uint64_t rtr_sq4_warm(const rtr_sq4 *s) {
    if (!s->map) return 0;
    rtr_map_populate(s->map, s->map_len);
    return s->map_len;
}

int rtr_sq4_to_memory(rtr_sq4 *s) {
    if (!s->map || s->own_codes) return RTR_OK;
    uint8_t *c = rtr_malloc(s->n * s->cb + 1);
    float *nn = rtr_malloc((s->n + 1) * sizeof *nn);
    if (!c || !nn) {
        rtr_free(c);
        rtr_free(nn);
        return rtr_seterr(RTR_E_NOMEM, "4-bit codes: out of memory");
    }
    memcpy(c, s->codes, s->n * s->cb);
    memcpy(nn, s->norm2, s->n * sizeof *nn);
    s->own_codes = c;
    s->own_norm2 = nn;
    /* scans running meanwhile read either array, the same bytes; the map stays until rtr_sq4_free */
    __atomic_store_n(&s->codes, c, __ATOMIC_RELEASE);
    __atomic_store_n(&s->norm2, nn, __ATOMIC_RELEASE);
    return RTR_OK;
}

int rtr_sq4_write(const rtr_sq4 *s, const int64_t *ids, FILE *f) {
    /* the arrays are written as they lie in memory: little-endian machines only (static check below) */
    uint64_t o_ids, o_norms, o_codes, end, at = HEADER + 8ull * s->dim;
    layout(s->dim, s->n, &o_ids, &o_norms, &o_codes, &end);
    uint8_t h[HEADER] = {0};
    memcpy(h, FILE_MAGIC, 8);
    rtr_put_le32(h + 8, s->dim);
    rtr_put_le32(h + 12, s->cb);
    rtr_put_le64(h + 16, s->n);
    int bad = fwrite(h, 1, HEADER, f) != HEADER || fwrite(s->mean, 4, s->dim, f) != s->dim ||
              fwrite(s->step, 4, s->dim, f) != s->dim || pad_to(f, &at, o_ids) ||
              (s->n && fwrite(ids, 8, s->n, f) != s->n) || (s->n && fwrite(s->norm2, 4, s->n, f) != s->n);
    at = o_norms + 4 * s->n;
    bad = bad || pad_to(f, &at, o_codes) || (s->n && fwrite(s->codes, s->cb, s->n, f) != s->n);
    return bad ? rtr_seterr(RTR_E_IO, "4-bit codes: write failed") : RTR_OK;
}

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the 4-bit code files are little-endian");

int rtr_sq4_map(int fd, uint64_t len, const char *path, uint32_t dim, rtr_sq4 **out, const int64_t **ids) {
    *out = NULL;
    *ids = NULL;
    if (len < HEADER) return rtr_seterr(RTR_E_CORRUPT, "%s: %llu bytes is too short for 4-bit codes", path, (unsigned long long)len);
    void *m = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return rtr_seterr(RTR_E_IO, "%s: cannot map", path);
    uint8_t *p = m;
    uint32_t d = rtr_get_le32(p + 8), cb = rtr_get_le32(p + 12);
    uint64_t n = rtr_get_le64(p + 16), o_ids = 0, o_norms = 0, o_codes = 0, end = 0;
    int rc = RTR_OK;
    if (memcmp(p, FILE_MAGIC, 8)) rc = rtr_seterr(RTR_E_CORRUPT, "%s: not a file of 4-bit codes", path);
    else if ((dim && d != dim) || cb != (d + 1) / 2 || d == 0 || d > 65536 || n > MAX_N)
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: bad header (dimension %u, %u code bytes, %llu vectors; the index has dimension %u)",
                        path, d, cb, (unsigned long long)n, dim);
    else if ((layout(d, n, &o_ids, &o_norms, &o_codes, &end), end != len))
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: %llu bytes where %llu vectors take %llu", path, (unsigned long long)len,
                        (unsigned long long)n, (unsigned long long)end);
    rtr_sq4 *s = rc ? NULL : rtr_calloc(1, sizeof *s);
    if (!rc && !s) rc = RTR_E_NOMEM;
    if (rc) {
        munmap(m, (size_t)len);
        return rc;
    }
    /* no readahead advice: the pages are in the page cache or read by the first scan */
    s->n = (size_t)n;
    s->dim = d;
    s->cb = cb;
    s->mean = (float *)(void *)(p + HEADER);   /* PROT_READ: nothing writes through these */
    s->step = s->mean + d;
    s->norm2 = (float *)(void *)(p + o_norms);
    s->codes = p + o_codes;
    s->map = m;
    s->map_len = (size_t)len;
    *ids = (const int64_t *)(const void *)(p + o_ids);
    *out = s;
    return RTR_OK;
}

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
/* The same over nblk whole blocks and, if half, a last half block of 32
 * dimensions (16 code bytes, weights at the block's offsets 0 and 32): per
 * block, 16-bit pair sums of code x weight (at most 2 * 15 * 127 per lane and
 * load), widened to 32 bits every 4 blocks before they could overflow. */
static int32_t dot_avx2(const int8_t *w, const uint8_t *c, uint32_t nblk, int half) {
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
    if (half) {
        const __m128i lo4h = _mm_set1_epi8(15);
        __m128i v = _mm_loadu_si128((const __m128i *)(c + (size_t)nblk * 32));
        __m128i lo = _mm_and_si128(v, lo4h), hi = _mm_and_si128(_mm_srli_epi16(v, 4), lo4h);
        __m128i s16 = _mm_add_epi16(_mm_maddubs_epi16(lo, _mm_loadu_si128((const __m128i *)(w + nblk * 64))),
                                    _mm_maddubs_epi16(hi, _mm_loadu_si128((const __m128i *)(w + nblk * 64 + 32))));
        t = _mm_add_epi32(t, _mm_madd_epi16(s16, _mm_set1_epi16(1)));
    }
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
    return _mm_cvtsi128_si32(t);
}
#endif

void rtr_sq4_scan(const rtr_sq4 *s, const rtr_sq4_query *qq, size_t lo, size_t hi, uint32_t r, float *d,
                  int64_t *pos) {
    float a = -2.0f * qq->offset, b = -2.0f / qq->scale;
    const uint8_t *codes = __atomic_load_n(&s->codes, __ATOMIC_ACQUIRE);   /* rtr_sq4_to_memory may swap them */
    const float *norm2 = __atomic_load_n(&s->norm2, __ATOMIC_ACQUIRE);
#ifdef RTR_SIMD
    if (s->dim % (BLOCK / 2) == 0) {   /* whole blocks of 64 dimensions, and perhaps half of one */
        uint32_t nblk = s->dim / BLOCK;
        int half = s->dim % BLOCK != 0;
        for (size_t i = lo; i < hi; i++) {
            float e = norm2[i] + a + b * (float)dot_avx2(qq->w, codes + i * s->cb, nblk, half);
            if (e < d[r - 1]) rtr_topk_put(d, pos, r, e, (int64_t)i);
        }
        return;
    }
#endif
    for (size_t i = lo; i < hi; i++) {
        float e = norm2[i] + a + b * (float)dot_scalar(s, qq->w, codes + i * s->cb);
        if (e < d[r - 1]) rtr_topk_put(d, pos, r, e, (int64_t)i);
    }
}
