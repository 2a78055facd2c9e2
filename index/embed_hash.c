/* embed_hash.c - the `hash` embedder: document-frequency tables and hashed-feature projection (see embed_hash.h). */
#include "index/embed_hash.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/le.h"
#include "lib/rng.h"
#include "lib/status.h"

#define DF_MAGIC "RTRHDF\0\1"
#define DF_HEADER 24

/* --- features ------------------------------------------------------------------- */
/* Decodes one code point at s[i]; returns its length (invalid bytes: 1, cp 0xFFFD). */
static size_t next_cp(const uint8_t *s, size_t len, size_t i, uint32_t *cp) {
    uint8_t c = s[i];
    if (c < 0x80) { *cp = c; return 1; }
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (n == 0 || i + n > len) { *cp = 0xFFFD; return 1; }
    uint32_t v = c & (0x3F >> (n - 1));
    for (size_t k = 1; k < n; k++) {
        if ((s[i + k] & 0xC0) != 0x80) { *cp = 0xFFFD; return 1; }
        v = (v << 6) | (s[i + k] & 0x3F);
    }
    *cp = v;
    return n;
}

static int is_word_cp(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
    if (cp < 0xC0) return 0;                                   /* Latin-1 punctuation, NBSP */
    if (cp == 0xD7 || cp == 0xF7) return 0;                    /* multiplication, division */
    if (cp >= 0x2000 && cp <= 0x2BFF) return 0;                /* punctuation, symbols, arrows */
    if (cp >= 0x3000 && cp <= 0x303F) return 0;                /* CJK punctuation */
    if (cp >= 0xFE30 && cp <= 0xFE4F) return 0;
    if (cp >= 0xFF00 && cp <= 0xFF0F) return 0;
    if (cp == 0xFFFD || cp == 0xFEFF) return 0;
    return 1;
}

typedef void (*feature_fn)(void *ctx, uint64_t h);

/* Calls fn for every unigram and bigram hash of text. */
static void for_each_feature(const char *text, size_t len, uint64_t seed, feature_fn fn, void *ctx) {
    const uint8_t *s = (const uint8_t *)text;
    uint8_t word[256];
    size_t i = 0;
    uint64_t prev = 0;
    int have_prev = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = next_cp(s, len, i, &cp);
        if (!is_word_cp(cp)) { i += n; continue; }
        size_t wl = 0;
        while (i < len) {
            n = next_cp(s, len, i, &cp);
            if (!is_word_cp(cp)) break;
            for (size_t k = 0; k < n && wl < sizeof word; k++) {
                uint8_t b = s[i + k];
                word[wl++] = (b >= 'A' && b <= 'Z') ? (uint8_t)(b | 0x20) : b;
            }
            i += n;
        }
        uint64_t h = XXH3_64bits_withSeed(word, wl, seed);
        fn(ctx, h);
        if (have_prev) {
            uint64_t pair[2] = {prev, h};
            fn(ctx, XXH3_64bits_withSeed(pair, sizeof pair, seed ^ 0x9E3779B97F4A7C15ULL));
        }
        prev = h;
        have_prev = 1;
    }
}

/* A small open-addressing counter of feature hashes (per call). */
typedef struct counter {
    uint64_t keys[1024];
    uint32_t counts[1024];
    size_t n;
    int overflow;
} counter;

static void count_feature(void *ctx, uint64_t h) {
    counter *c = ctx;
    uint64_t key = h | 1;   /* 0 marks empty */
    size_t mask = 1023, p = (size_t)(h >> 7) & mask;
    while (c->keys[p] && c->keys[p] != key) p = (p + 1) & mask;
    if (!c->keys[p]) {
        if (c->n >= 700) { c->overflow = 1; return; }   /* keep the load low; rest dropped */
        c->keys[p] = key;
        c->n++;
    }
    c->counts[p]++;
}

/* --- document frequencies ----------------------------------------------------------- */
int rtr_hash_df_init(rtr_hash_df *d, uint32_t bits) {
    memset(d, 0, sizeof *d);
    if (bits < 10 || bits > 24) return rtr_seterr(RTR_E_INVALID, "hash statistics: bits must be 10..24");
    d->bits = bits;
    d->df = rtr_calloc((size_t)1 << bits, sizeof *d->df);
    return d->df ? RTR_OK : RTR_E_NOMEM;
}

typedef struct df_ctx {
    rtr_hash_df *d;
    counter c;
} df_ctx;

int rtr_hash_df_add(rtr_hash_df *d, const char *text, size_t len) {
    counter *c = rtr_calloc(1, sizeof *c);
    if (!c) return RTR_E_NOMEM;
    for_each_feature(text, len, RTR_HASH_DEFAULT_SEED, count_feature, c);
    for (size_t p = 0; p < 1024; p++)
        if (c->keys[p]) {
            uint32_t *slot = &d->df[c->keys[p] >> (64 - d->bits)];
            if (*slot < UINT32_MAX) (*slot)++;
        }
    d->n++;
    rtr_free(c);
    return RTR_OK;
}


int rtr_hash_df_save(const rtr_hash_df *d, const char *path) {
    size_t nb = (size_t)1 << d->bits, len = DF_HEADER + 4 * nb + 8;
    uint8_t *b = rtr_malloc(len);
    if (!b) return RTR_E_NOMEM;
    memcpy(b, DF_MAGIC, 8);
    rtr_put_le32(b + 8, d->bits);
    rtr_put_le32(b + 12, 0);
    rtr_put_le64(b + 16, d->n);
    for (size_t i = 0; i < nb; i++) rtr_put_le32(b + DF_HEADER + 4 * i, d->df[i]);
    rtr_put_le64(b + len - 8, XXH64(b, len - 8, 0));
    int rc = rtr_write_file_atomic(path, b, len);
    rtr_free(b);
    return rc;
}

int rtr_hash_df_parse(const uint8_t *b, size_t len, const char *path, rtr_hash_df *d) {
    memset(d, 0, sizeof *d);
    int rc = RTR_OK;
    uint32_t bits = len >= DF_HEADER ? rtr_get_le32(b + 8) : 0;
    if (len < DF_HEADER + 8 || memcmp(b, DF_MAGIC, 8) != 0) rc = rtr_seterr(RTR_E_CORRUPT, "%s: not a hash statistics file", path);
    else if (bits < 10 || bits > 24 || len != DF_HEADER + 4 * ((size_t)1 << bits) + 8)
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: truncated or bad size (%zu bytes)", path, len);
    else if (XXH64(b, len - 8, 0) != rtr_get_le64(b + len - 8)) rc = rtr_seterr(RTR_E_CORRUPT, "%s: checksum mismatch", path);
    if (!rc && !(rc = rtr_hash_df_init(d, bits))) {
        d->n = rtr_get_le64(b + 16);
        for (size_t i = 0; i < ((size_t)1 << bits); i++) {
            d->df[i] = rtr_get_le32(b + DF_HEADER + 4 * i);
            if (d->df[i] > d->n) { rc = rtr_seterr(RTR_E_CORRUPT, "%s: count above N", path); break; }
        }
        if (rc) rtr_hash_df_free(d);
    }
    return rc;
}

int rtr_hash_df_load(const char *path, rtr_hash_df *d) {
    memset(d, 0, sizeof *d);
    uint8_t *b;
    size_t len;
    int rc = rtr_read_file(path, DF_HEADER + 4 * ((size_t)1 << 24) + 8, &b, &len);
    if (rc) return rc;
    rc = rtr_hash_df_parse(b, len, path, d);
    rtr_free(b);
    return rc;
}

uint64_t rtr_hash_df_checksum(const rtr_hash_df *d) {
    XXH64_state_t *st = XXH64_createState();
    if (!st) return 0;
    XXH64_reset(st, 0);
    XXH64_update(st, &d->bits, sizeof d->bits);
    XXH64_update(st, &d->n, sizeof d->n);
    XXH64_update(st, d->df, ((size_t)1 << d->bits) * sizeof *d->df);
    uint64_t h = XXH64_digest(st);
    XXH64_freeState(st);
    return h;
}

char *rtr_hash_df_filename(uint64_t checksum) { return rtr_embedder_file_name("hash-df", checksum); }

int rtr_hash_embedder_from_desc(const char *kb_dir, const char *desc, rtr_embedder **out) {
    json_error_t err;
    json_t *j = json_loads(desc, 0, &err);
    json_int_t dim = 0, n = 0;
    json_t *seedj = NULL;
    const char *idf = NULL;
    int rc = RTR_OK;
    if (!j || json_unpack(j, "{s:I, s:o, s:s, s:I}", "dim", &dim, "seed", &seedj, "idf", &idf, "idf_n", &n) ||
        !json_is_integer(seedj))
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: bad hash embedder description", kb_dir);
    rtr_hash_df df = {0};
    if (!rc && strcmp(idf, "0000000000000000") != 0) {
        char *path = rtr_embedder_file_path(kb_dir, "hash-df", strtoull(idf, NULL, 16));
        rc = path ? rtr_hash_df_load(path, &df) : RTR_E_NOMEM;
        if (!rc && rtr_hash_df_checksum(&df) != strtoull(idf, NULL, 16))
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: statistics do not match the manifest", path);
        rtr_free(path);
    }
    if (!rc) {
        rtr_hash_embedder_opts o = {(uint32_t)dim, (uint64_t)json_integer_value(seedj), df.bits ? &df : NULL};
        rc = rtr_hash_embedder_new(&o, out);
    }
    rtr_hash_df_free(&df);
    json_decref(j);
    return rc;
}

void rtr_hash_df_free(rtr_hash_df *d) {
    rtr_free(d->df);
    memset(d, 0, sizeof *d);
}

/* --- the embedder ----------------------------------------------------------------------- */
typedef struct hash_impl {
    uint64_t seed;
    uint64_t df_sum;        /* XXH64 of the df table (0 without statistics) */
    rtr_hash_df df;         /* bits == 0: no statistics */
    float *idf;             /* 2^bits, precomputed */
} hash_impl;

/* v[k] += bit k of bits ? w : -w, for k < 64: the sign is flipped by XOR-ing
 * the float's sign bit, which vectorizes. */
static void add_signed(float *restrict v, uint64_t bits, float w) {
    uint32_t wb;
    memcpy(&wb, &w, 4);
    uint32_t neg[64];
    for (int k = 0; k < 64; k++) neg[k] = wb ^ ((uint32_t)(~bits >> k & 1) << 31);
    float add[64];
    memcpy(add, neg, sizeof add);
    for (int k = 0; k < 64; k++) v[k] += add[k];
}

static int hash_embed(rtr_embedder *e, const rtr_text *texts, size_t n, float *out) {
    hash_impl *h = e->impl;
    uint32_t dim = e->dim;
    counter *c = rtr_malloc(sizeof *c);
    if (!c) return RTR_E_NOMEM;
    for (size_t t = 0; t < n; t++) {
        float *v = out + t * dim;
        memset(v, 0, dim * sizeof *v);
        memset(c, 0, sizeof *c);
        for_each_feature(texts[t].data, texts[t].len, RTR_HASH_DEFAULT_SEED, count_feature, c);
        /* A text without words gets one fixed feature rather than a zero
         * vector, which would sit at distance 1 from every query. */
        if (c->n == 0) count_feature(c, XXH3_64bits_withSeed("\0no words", 9, RTR_HASH_DEFAULT_SEED));
        for (size_t p = 0; p < 1024; p++) {
            if (!c->keys[p]) continue;
            uint64_t key = c->keys[p];
            float w = 1.0f + logf((float)c->counts[p]);
            if (h->idf) w *= h->idf[key >> (64 - h->df.bits)];
            uint64_t state = key ^ (h->seed * 0xD6E8FEB86659FD93ULL);   /* the projection's seed */
            for (uint32_t j = 0; j < dim; j += 64) add_signed(v + j, rtr_splitmix64(&state), w);
        }
    }
    rtr_free(c);
    rtr_l2_normalize(out, n, dim);
    return RTR_OK;
}

static int hash_describe(const rtr_embedder *e, rtr_buf *json) {
    const hash_impl *h = e->impl;
    return rtr_buf_printf(json, "{\"kind\":\"hash\",\"dim\":%u,\"seed\":%llu,\"idf\":\"%016llx\",\"idf_n\":%llu}",
                          e->dim, (unsigned long long)h->seed, (unsigned long long)h->df_sum,
                          (unsigned long long)h->df.n);
}

static void hash_destroy(rtr_embedder *e) {
    hash_impl *h = e->impl;
    rtr_hash_df_free(&h->df);
    rtr_free(h->idf);
    rtr_free(h);
    rtr_free(e);
}

static const rtr_embedder_ops hash_ops = {hash_embed, hash_describe, hash_destroy};

int rtr_hash_embedder_new(const rtr_hash_embedder_opts *o, rtr_embedder **out) {
    uint32_t dim = o && o->dim ? o->dim : RTR_HASH_DEFAULT_DIM;
    if (dim % 64 || dim > 4096) return rtr_seterr(RTR_E_INVALID, "hash embedder: dim must be a multiple of 64, at most 4096");
    rtr_embedder *e = rtr_calloc(1, sizeof *e);
    hash_impl *h = rtr_calloc(1, sizeof *h);
    int rc = e && h ? RTR_OK : RTR_E_NOMEM;
    if (!rc && o && o->df && o->df->bits) {
        size_t nb = (size_t)1 << o->df->bits;
        if (!(rc = rtr_hash_df_init(&h->df, o->df->bits))) {
            h->df.n = o->df->n;
            memcpy(h->df.df, o->df->df, nb * sizeof *h->df.df);
            /* idf depends on the bucket's count alone: the small counts, most buckets', are worked out
             * once each (a million logf calls were a third of a search process's start) */
            enum { MEMO = 4096 };
            float *memo = rtr_malloc(MEMO * sizeof *memo);
            if (!(h->idf = rtr_malloc(nb * sizeof *h->idf)) || !memo) rc = RTR_E_NOMEM;
            for (uint32_t d = 0; !rc && d < MEMO; d++) memo[d] = NAN;
            for (size_t i = 0; !rc && i < nb; i++) {
                uint32_t d = h->df.df[i];
                float *m = d < MEMO ? &memo[d] : NULL;
                if (m && !isnan(*m)) {
                    h->idf[i] = *m;
                    continue;
                }
                h->idf[i] = logf((1.0f + (float)h->df.n) / (1.0f + (float)d)) + 1.0f;
                if (m) *m = h->idf[i];
            }
            rtr_free(memo);
            h->df_sum = rtr_hash_df_checksum(&h->df);
        }
    }
    if (rc) {
        if (h) rtr_hash_df_free(&h->df);
        rtr_free(h);
        rtr_free(e);
        return rc;
    }
    h->seed = o && o->seed ? o->seed : RTR_HASH_DEFAULT_SEED;
    e->ops = &hash_ops;
    e->dim = dim;
    e->max_batch = 1024;
    e->thread_safe = 1;
    e->impl = h;
    *out = e;
    return RTR_OK;
}
