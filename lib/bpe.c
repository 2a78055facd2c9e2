/*
 * bpe.c - byte-level BPE: .rtok files, GPT-2 files, the pre-tokenizer,
 * encoding (word cache, short and long merge paths), decoding, training.
 *
 * Layout of this file:
 *   1. small helpers (little-endian access, hashing of pairs)
 *   2. the tokenizer: validation and indexes shared by every loader
 *   3. .rtok parse / serialize / save
 *   4. GPT-2 encoder.json + vocab.bpe
 *   5. the pre-tokenizer scanner
 *   6. encoding: word cache, short merge, long merge, decode
 *   7. training
 */
#include "lib/bpe.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <xxhash.h>

#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"
#include "lib/unicode_tab.h"

/* ---------------------------------------------------------------------------
 * 1. Helpers
 * ------------------------------------------------------------------------- */

#define RTOK_MAGIC "RTRTOK\0\1"
#define RTOK_VERSION 1u
#define RTOK_KIND_GPT2 1u
#define RTOK_MAX_VOCAB (1u << 24)
#define RTOK_MAX_SPECIAL 16u
#define RTOK_MAX_TOKEN 256u       /* bytes of a non-special token */
#define RTOK_MAX_SPECIAL_LEN 64u  /* bytes of a special token */
#define RTOK_HEADER 1056u         /* fixed part: 32 + 256*4 */
/* Largest file a valid header can describe (V = 2^24, every token 256 bytes). */
#define RTOK_MAX_FILE ((uint64_t)RTOK_HEADER + (uint64_t)RTOK_MAX_VOCAB * (4 + 256 + 8) + 64 + 8)

#define EOD_TEXT "<|endoftext|>"
#define NO_RANK UINT32_MAX

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static void wr64(uint8_t *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ---------------------------------------------------------------------------
 * 2. The tokenizer
 * ------------------------------------------------------------------------- */

/* One entry of the pair index: (left << 32 | right) -> merge rank, result. */
typedef struct pair_slot {
    uint64_t key;        /* PAIR_EMPTY when free */
    uint32_t rank;
    uint32_t result;
} pair_slot;
#define PAIR_EMPTY UINT64_MAX

struct rtr_tokenizer {
    uint32_t n_vocab, n_merges, n_special;
    uint32_t byte_to_id[256];
    uint32_t special[RTOK_MAX_SPECIAL];
    uint32_t *tok_off;   /* (V+1,) token i is tok_bytes[tok_off[i] .. tok_off[i+1]) */
    uint8_t *tok_bytes;  /* (tok_off[V],) */
    uint32_t *merges;    /* (M, 2) left, right in priority order */
    uint32_t *result;    /* (M,) token made by merge j */
    pair_slot *pairs;    /* (pair_mask+1,) open addressing, linear probing */
    size_t pair_mask;
    char hash[33];
};

static inline uint32_t tok_len(const rtr_tokenizer *t, uint32_t id) {
    return t->tok_off[id + 1] - t->tok_off[id];
}

/* Merge rank of the adjacent pair (a, b), or NO_RANK. The hot lookup. */
static inline uint32_t pair_rank(const rtr_tokenizer *t, uint32_t a, uint32_t b) {
    uint64_t key = (uint64_t)a << 32 | b;
    size_t i = (size_t)mix64(key) & t->pair_mask;
    for (;;) {
        const pair_slot *s = &t->pairs[i];
        if (s->key == key) return s->rank;
        if (s->key == PAIR_EMPTY) return NO_RANK;
        i = (i + 1) & t->pair_mask;
    }
}

static bool is_special(const rtr_tokenizer *t, uint32_t id) {
    for (uint32_t i = 0; i < t->n_special; i++)
        if (t->special[i] == id) return true;
    return false;
}

/* A set of token ids keyed by their bytes (open addressing, grows). Used to
 * check uniqueness, to find merge results and, in training, to reuse tokens.
 * It reads the bytes through a (off, bytes) view that may move (realloc), so
 * it stores ids only. */
typedef struct bmap {
    uint32_t *slot;   /* (mask+1,) id + 1, 0 = empty */
    size_t mask, n;
} bmap;

typedef struct bview {
    const uint32_t *off;
    const uint8_t *bytes;
} bview;

static uint64_t bytes_hash(const void *p, size_t n) { return XXH3_64bits(p, n); }

static int bmap_init(bmap *m, size_t expect) {
    size_t cap = pow2_at_least(expect * 2 + 1);
    m->slot = rtr_calloc(cap, sizeof *m->slot);
    if (!m->slot) return RTR_E_NOMEM;
    m->mask = cap - 1;
    m->n = 0;
    return RTR_OK;
}

static void bmap_free(bmap *m) {
    rtr_free(m->slot);
    m->slot = NULL;
}

/* Id of the token with bytes p[0..n), or UINT32_MAX. */
static uint32_t bmap_find(const bmap *m, bview v, const uint8_t *p, size_t n) {
    size_t i = (size_t)bytes_hash(p, n) & m->mask;
    for (;;) {
        uint32_t s = m->slot[i];
        if (s == 0) return UINT32_MAX;
        uint32_t id = s - 1;
        if (v.off[id + 1] - v.off[id] == n && memcmp(v.bytes + v.off[id], p, n) == 0) return id;
        i = (i + 1) & m->mask;
    }
}

static int bmap_grow(bmap *m, bview v) {
    size_t cap = (m->mask + 1) * 2;
    uint32_t *ns = rtr_calloc(cap, sizeof *ns);
    if (!ns) return RTR_E_NOMEM;
    for (size_t i = 0; i <= m->mask; i++) {
        uint32_t s = m->slot[i];
        if (!s) continue;
        uint32_t id = s - 1;
        size_t j = (size_t)bytes_hash(v.bytes + v.off[id], v.off[id + 1] - v.off[id]) & (cap - 1);
        while (ns[j]) j = (j + 1) & (cap - 1);
        ns[j] = s;
    }
    rtr_free(m->slot);
    m->slot = ns;
    m->mask = cap - 1;
    return RTR_OK;
}

/* Adds id (whose bytes must not be in the map yet). */
static int bmap_add(bmap *m, bview v, uint32_t id) {
    if ((m->n + 1) * 2 > m->mask + 1) {
        int rc = bmap_grow(m, v);
        if (rc) return rc;
    }
    const uint8_t *p = v.bytes + v.off[id];
    size_t i = (size_t)bytes_hash(p, v.off[id + 1] - v.off[id]) & m->mask;
    while (m->slot[i]) i = (i + 1) & m->mask;
    m->slot[i] = id + 1;
    m->n++;
    return RTR_OK;
}

void rtr_tokenizer_free(rtr_tokenizer *t) {
    if (!t) return;
    rtr_free(t->tok_off);
    rtr_free(t->tok_bytes);
    rtr_free(t->merges);
    rtr_free(t->result);
    rtr_free(t->pairs);
    rtr_free(t);
}

static int corrupt(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int corrupt(const char *name, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rtr_seterr(RTR_E_CORRUPT, "%s: corrupt tokenizer: %s", name, msg);
}

/*
 * Finishes a tokenizer whose counts, byte_to_id, special, tok_off, tok_bytes
 * and merges are filled in (token lengths already checked to be in range):
 * checks everything else the format promises, fills result[] and the pair
 * index, and computes the hash. Errors are RTR_E_CORRUPT naming `name`, or
 * RTR_E_NOMEM. On failure t is left for the caller to free.
 */
static int tok_finish(rtr_tokenizer *t, const char *name) {
    const uint32_t V = t->n_vocab, M = t->n_merges;
    bview view = {t->tok_off, t->tok_bytes};
    bmap bm = {0};
    int rc;

    if (t->n_special < 1 || t->n_special > RTOK_MAX_SPECIAL)
        return corrupt(name, "%u special tokens (need 1..%u)", t->n_special, RTOK_MAX_SPECIAL);
    for (uint32_t i = 0; i < t->n_special; i++) {
        uint32_t s = t->special[i];
        if (s >= V) return corrupt(name, "special token %u: id %u >= vocab size %u", i, s, V);
        for (uint32_t j = 0; j < i; j++)
            if (t->special[j] == s) return corrupt(name, "special token id %u listed twice", s);
        if (tok_len(t, s) > RTOK_MAX_SPECIAL_LEN)
            return corrupt(name, "special token %u is %u bytes (max %u)", s, tok_len(t, s),
                           RTOK_MAX_SPECIAL_LEN);
    }
    for (uint32_t i = 0; i < V; i++)
        if (tok_len(t, i) > RTOK_MAX_TOKEN || tok_len(t, i) == 0)
            return corrupt(name, "token %u is %u bytes (need 1..%u)", i, tok_len(t, i), RTOK_MAX_TOKEN);
    for (int b = 0; b < 256; b++) {
        uint32_t id = t->byte_to_id[b];
        if (id >= V) return corrupt(name, "byte 0x%02x maps to id %u >= vocab size %u", b, id, V);
        if (is_special(t, id)) return corrupt(name, "byte 0x%02x maps to special token %u", b, id);
        if (tok_len(t, id) != 1 || t->tok_bytes[t->tok_off[id]] != b)
            return corrupt(name, "byte 0x%02x maps to token %u, which is not that byte", b, id);
    }

    if ((rc = bmap_init(&bm, V)) != RTR_OK) goto fail;
    for (uint32_t i = 0; i < V; i++) {
        if (is_special(t, i)) continue;
        uint32_t dup = bmap_find(&bm, view, t->tok_bytes + t->tok_off[i], tok_len(t, i));
        if (dup != UINT32_MAX) {
            rc = corrupt(name, "tokens %u and %u have the same bytes", dup, i);
            goto fail;
        }
        if ((rc = bmap_add(&bm, view, i)) != RTR_OK) goto fail;
    }

    size_t cap = pow2_at_least((size_t)M * 2 + 1);
    t->pairs = rtr_malloc(cap * sizeof *t->pairs);
    t->result = rtr_malloc((M ? M : 1) * sizeof *t->result);
    if (!t->pairs || !t->result) {
        rc = RTR_E_NOMEM;
        goto fail;
    }
    for (size_t i = 0; i < cap; i++) t->pairs[i].key = PAIR_EMPTY;
    t->pair_mask = cap - 1;
    for (uint32_t j = 0; j < M; j++) {
        uint32_t a = t->merges[2 * j], b = t->merges[2 * j + 1];
        if (a >= V || b >= V) {
            rc = corrupt(name, "merge %u: token id %u >= vocab size %u", j, a >= V ? a : b, V);
            goto fail;
        }
        if (is_special(t, a) || is_special(t, b)) {
            rc = corrupt(name, "merge %u uses a special token", j);
            goto fail;
        }
        uint8_t cat[2 * RTOK_MAX_TOKEN];
        uint32_t la = tok_len(t, a), lb = tok_len(t, b);
        memcpy(cat, t->tok_bytes + t->tok_off[a], la);
        memcpy(cat + la, t->tok_bytes + t->tok_off[b], lb);
        uint32_t c = la + lb <= RTOK_MAX_TOKEN ? bmap_find(&bm, view, cat, la + lb) : UINT32_MAX;
        if (c == UINT32_MAX) {
            rc = corrupt(name, "merge %u: tokens %u + %u do not form a token", j, a, b);
            goto fail;
        }
        t->result[j] = c;
        uint64_t key = (uint64_t)a << 32 | b;
        size_t i = (size_t)mix64(key) & t->pair_mask;
        while (t->pairs[i].key != PAIR_EMPTY) {
            if (t->pairs[i].key == key) {
                rc = corrupt(name, "merge %u: pair %u + %u already listed as merge %u", j, a, b,
                             t->pairs[i].rank);
                goto fail;
            }
            i = (i + 1) & t->pair_mask;
        }
        t->pairs[i] = (pair_slot){key, j, c};
    }
    bmap_free(&bm);

    rtr_buf ser = {0};
    if ((rc = rtr_tokenizer_serialize(t, &ser)) != RTR_OK) return rc;
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits(ser.data, ser.len));
    rtr_buf_free(&ser);
    for (int i = 0; i < 16; i++) snprintf(t->hash + 2 * i, 3, "%02x", canon.digest[i]);
    return RTR_OK;
fail:
    bmap_free(&bm);
    return rc;
}

uint32_t rtr_tokenizer_vocab_size(const rtr_tokenizer *t) { return t->n_vocab; }
uint32_t rtr_tokenizer_eod(const rtr_tokenizer *t) { return t->special[0]; }
uint32_t rtr_tokenizer_n_merges(const rtr_tokenizer *t) { return t->n_merges; }
uint32_t rtr_tokenizer_n_special(const rtr_tokenizer *t) { return t->n_special; }

uint32_t rtr_tokenizer_special(const rtr_tokenizer *t, uint32_t i) {
    RTR_ASSERT(i < t->n_special);
    return t->special[i];
}

const uint8_t *rtr_tokenizer_token(const rtr_tokenizer *t, uint32_t id, size_t *len) {
    if (id >= t->n_vocab) return NULL;
    *len = tok_len(t, id);
    return t->tok_bytes + t->tok_off[id];
}

float *rtr_tokenizer_byte_lengths(const rtr_tokenizer *t) {
    float *len = rtr_malloc((size_t)t->n_vocab * sizeof *len);
    if (!len) {
        rtr_seterr(RTR_E_NOMEM, "tokenizer: out of memory");
        return NULL;
    }
    for (uint32_t v = 0; v < t->n_vocab; v++) len[v] = v == t->special[0] ? 0.0f : (float)tok_len(t, v);
    return len;
}

int rtr_tokenizer_merge(const rtr_tokenizer *t, uint32_t j, uint32_t *left, uint32_t *right,
                        uint32_t *result) {
    if (j >= t->n_merges)
        return rtr_seterr(RTR_E_INVALID, "merge %u out of range (%u merges)", j, t->n_merges);
    if (left) *left = t->merges[2 * j];
    if (right) *right = t->merges[2 * j + 1];
    if (result) *result = t->result[j];
    return RTR_OK;
}

void rtr_tokenizer_hash(const rtr_tokenizer *t, char hex[33]) { memcpy(hex, t->hash, 33); }

/* ---------------------------------------------------------------------------
 * 3. .rtok files
 * ------------------------------------------------------------------------- */

int rtr_tokenizer_serialize(const rtr_tokenizer *t, rtr_buf *out) {
    const uint32_t V = t->n_vocab, M = t->n_merges, S = t->n_special;
    size_t size = (size_t)RTOK_HEADER + (size_t)V * 4 + t->tok_off[V] + (size_t)M * 8 +
                  (size_t)S * 4 + 8;
    size_t start = out->len;
    int rc = rtr_buf_reserve(out, size);
    if (rc) return rc;
    uint8_t *p = out->data + start;
    memcpy(p, RTOK_MAGIC, 8);
    wr32(p + 8, RTOK_VERSION);
    wr32(p + 12, V);
    wr32(p + 16, M);
    wr32(p + 20, S);
    wr32(p + 24, RTOK_KIND_GPT2);
    wr32(p + 28, 0);
    uint8_t *q = p + 32;
    for (int b = 0; b < 256; b++, q += 4) wr32(q, t->byte_to_id[b]);
    for (uint32_t i = 0; i < V; i++, q += 4) wr32(q, tok_len(t, i));
    memcpy(q, t->tok_bytes, t->tok_off[V]);
    q += t->tok_off[V];
    for (uint32_t j = 0; j < 2 * M; j++, q += 4) wr32(q, t->merges[j]);
    for (uint32_t i = 0; i < S; i++, q += 4) wr32(q, t->special[i]);
    wr64(q, XXH64(p, (size_t)(q - p), 0));
    q += 8;
    RTR_ASSERT((size_t)(q - p) == size);
    out->len += size;
    return RTR_OK;
}

int rtr_tokenizer_save(const rtr_tokenizer *t, const char *path) {
    rtr_buf b = {0};
    int rc = rtr_tokenizer_serialize(t, &b);
    if (rc == RTR_OK) rc = rtr_write_file_atomic(path, b.data, b.len);
    rtr_buf_free(&b);
    return rc;
}

/*
 * Parses a .rtok image. Every count is checked against the bytes present
 * (and the checksum verified) before anything is allocated from it, so a
 * hostile header cannot make us allocate more than ~the file's size.
 */
int rtr_tokenizer_parse(const uint8_t *data, size_t len, const char *name, rtr_tokenizer **out) {
    *out = NULL;
    if (len < RTOK_HEADER + 8)
        return corrupt(name, "truncated: %zu bytes, the header alone needs %u", len, RTOK_HEADER + 8);
    if (memcmp(data, RTOK_MAGIC, 8) != 0) return corrupt(name, "bad magic (not a .rtok file)");
    uint32_t version = rd32(data + 8), V = rd32(data + 12), M = rd32(data + 16), S = rd32(data + 20);
    uint32_t kind = rd32(data + 24), reserved = rd32(data + 28);
    if (version > RTOK_VERSION)
        return rtr_seterr(RTR_E_VERSION, "%s: tokenizer format version %u is newer than this retro (%u)",
                          name, version, RTOK_VERSION);
    if (version != RTOK_VERSION) return corrupt(name, "bad format version %u", version);
    if (V < 1 || V > RTOK_MAX_VOCAB) return corrupt(name, "vocab size %u out of range (1..2^24)", V);
    if (M >= V) return corrupt(name, "%u merges for vocab size %u (need fewer)", M, V);
    if (S < 1 || S > RTOK_MAX_SPECIAL) return corrupt(name, "%u special tokens (need 1..%u)", S, RTOK_MAX_SPECIAL);
    if (kind != RTOK_KIND_GPT2) return corrupt(name, "unknown pre-tokenizer kind %u", kind);
    if (reserved != 0) return corrupt(name, "reserved header field is %u, not 0", reserved);

    uint64_t lens_end = (uint64_t)RTOK_HEADER + (uint64_t)V * 4;
    if (len < lens_end)
        return corrupt(name, "truncated: %zu bytes, the token length table ends at %llu", len,
                       (unsigned long long)lens_end);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < V; i++) {
        uint32_t l = rd32(data + RTOK_HEADER + (size_t)i * 4);
        if (l < 1 || l > RTOK_MAX_TOKEN)
            return corrupt(name, "token %u has length %u (need 1..%u)", i, l, RTOK_MAX_TOKEN);
        sum += l;
    }
    uint64_t need = lens_end + sum + (uint64_t)M * 8 + (uint64_t)S * 4 + 8;
    if (need != len)
        return corrupt(name, "%s: header describes %llu bytes, file has %zu",
                       need > len ? "truncated" : "trailing bytes", (unsigned long long)need, len);
    uint64_t want = rd64(data + len - 8), got = XXH64(data, len - 8, 0);
    if (want != got)
        return corrupt(name, "checksum mismatch (stored %016llx, computed %016llx)",
                       (unsigned long long)want, (unsigned long long)got);

    /* The counts are now backed by bytes that are really there. */
    rtr_tokenizer *t = rtr_calloc(1, sizeof *t);
    if (!t) return RTR_E_NOMEM;
    int rc;
    t->n_vocab = V;
    t->n_merges = M;
    t->n_special = S;
    for (int b = 0; b < 256; b++) t->byte_to_id[b] = rd32(data + 32 + b * 4);
    t->tok_off = rtr_malloc(((size_t)V + 1) * sizeof *t->tok_off);
    t->tok_bytes = rtr_malloc((size_t)sum);
    t->merges = rtr_malloc(((size_t)M * 2 + 1) * sizeof *t->merges);
    if (!t->tok_off || !t->tok_bytes || !t->merges) {
        rc = RTR_E_NOMEM;
        goto fail;
    }
    t->tok_off[0] = 0;
    for (uint32_t i = 0; i < V; i++)
        t->tok_off[i + 1] = t->tok_off[i] + rd32(data + RTOK_HEADER + (size_t)i * 4);
    const uint8_t *p = data + lens_end;
    memcpy(t->tok_bytes, p, (size_t)sum);
    p += sum;
    for (uint32_t j = 0; j < 2 * M; j++, p += 4) t->merges[j] = rd32(p);
    for (uint32_t i = 0; i < S; i++, p += 4) t->special[i] = rd32(p);
    if ((rc = tok_finish(t, name)) != RTR_OK) goto fail;
    *out = t;
    return RTR_OK;
fail:
    rtr_tokenizer_free(t);
    return rc;
}

int rtr_tokenizer_load(const char *path, rtr_tokenizer **out) {
    uint8_t *data;
    size_t len;
    *out = NULL;
    size_t limit = sizeof(size_t) > 4 ? (size_t)RTOK_MAX_FILE : SIZE_MAX - 1;
    int rc = rtr_read_file(path, limit, &data, &len);
    if (rc) return rc;
    rc = rtr_tokenizer_parse(data, len, path, out);
    rtr_free(data);
    return rc;
}

/* ---------------------------------------------------------------------------
 * 4. GPT-2 files
 *
 * encoder.json maps token strings to ids; a token string spells its bytes
 * with GPT-2's bytes_to_unicode() alphabet: the printable bytes 0x21..0x7e,
 * 0xa1..0xac and 0xae..0xff stand for themselves, the other 68 bytes (in
 * increasing order) for U+0100, U+0101, ... vocab.bpe lists the merges, one
 * "left right" pair of token strings per line after a "#version" line.
 * ------------------------------------------------------------------------- */

static bool gpt2_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
}

/* cp -> byte for the 256 code points of the alphabet; -1 elsewhere. */
static void gpt2_alphabet(int16_t cp_to_byte[324]) {
    for (int i = 0; i < 324; i++) cp_to_byte[i] = -1;
    int n = 0;
    for (unsigned b = 0; b < 256; b++) {
        if (gpt2_printable(b)) cp_to_byte[b] = (int16_t)b;
        else cp_to_byte[256 + n++] = (int16_t)b;
    }
    RTR_ASSERT(n == 68);
}

/* Decodes a UTF-8 token string s[0..n) into bytes (appended to out).
 * Returns false if s is not valid UTF-8 over the alphabet. */
static bool gpt2_unspell(const int16_t cp_to_byte[324], const uint8_t *s, size_t n, uint8_t *out,
                         size_t *out_len, size_t out_cap) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        if (s[i] < 0x80) {
            cp = s[i++];
        } else if ((s[i] & 0xe0) == 0xc0 && i + 1 < n && (s[i + 1] & 0xc0) == 0x80) {
            cp = (uint32_t)(s[i] & 0x1f) << 6 | (s[i + 1] & 0x3f);
            if (cp < 0x80) return false;
            i += 2;
        } else {
            return false;   /* the alphabet stops at U+0143: two bytes at most */
        }
        if (cp >= 324 || cp_to_byte[cp] < 0 || k == out_cap) return false;
        out[k++] = (uint8_t)cp_to_byte[cp];
    }
    *out_len = k;
    return true;
}

/* Reads encoder.json, one JSON object of token string -> id (parsed by
 * jansson, which also refuses a string listed twice), into t->tok_off,
 * t->tok_bytes and t->special; ids must be 0..V-1, each once. jansson's own
 * allocations do not go through rtr_malloc (rtr_alloc_fail_at does not reach
 * them); when one fails the load returns RTR_E_NOMEM all the same. */
static int gpt2_parse_encoder(const uint8_t *data, size_t len, const char *path, const int16_t cp_to_byte[324],
                              rtr_tokenizer *t) {
    uint32_t *off_of = NULL, *len_of = NULL;   /* (V): token id -> its bytes in `bytes` */
    rtr_buf bytes = {0};
    int rc;
    json_error_t err;
    json_t *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        rc = json_error_code(&err) == json_error_out_of_memory
                 ? rtr_seterr(RTR_E_NOMEM, "%s: out of memory parsing JSON", path)
                 : rtr_seterr(RTR_E_CORRUPT, "%s: bad JSON at line %d, column %d: %s", path, err.line,
                              err.column, err.text);
        goto done;
    }
    if (!json_is_object(root)) {
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: bad JSON: expected an object of token strings to ids", path);
        goto done;
    }
    size_t n = json_object_size(root);
    if (n > RTOK_MAX_VOCAB) {
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: more than 2^24 tokens", path);
        goto done;
    }
    off_of = rtr_calloc(n ? n : 1, sizeof *off_of);
    len_of = rtr_calloc(n ? n : 1, sizeof *len_of);
    if (!off_of || !len_of) {
        rc = RTR_E_NOMEM;
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        size_t slen = strlen(key);   /* jansson refuses \u0000 in strings */
        int show = (int)(slen > 40 ? 40 : slen);
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id >= (json_int_t)RTOK_MAX_VOCAB) {
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: token \"%.*s\": expected a token id (0..2^24-1)", path, show, key);
            goto done;
        }
        /* a byte spells as one or two UTF-8 bytes: raw never overflows */
        uint8_t raw[2 * RTOK_MAX_TOKEN];
        size_t rlen = 0;
        if (slen > sizeof raw) {
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: token %lld: \"%.*s...\" is longer than %u bytes", path,
                            (long long)id, show, key, RTOK_MAX_TOKEN);
            goto done;
        }
        if (!gpt2_unspell(cp_to_byte, (const uint8_t *)key, slen, raw, &rlen, sizeof raw) || rlen == 0) {
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: token %lld: \"%.*s\" is not a GPT-2 byte string", path,
                            (long long)id, show, key);
            goto done;
        }
        if ((size_t)id >= n || len_of[id]) {
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: token ids are not 0..%zu, each once (id %lld)", path, n - 1,
                            (long long)id);
            goto done;
        }
        off_of[id] = (uint32_t)bytes.len;
        len_of[id] = (uint32_t)rlen;
        if ((rc = rtr_buf_append(&bytes, raw, rlen)) != RTR_OK) goto done;
        if (slen == sizeof EOD_TEXT - 1 && memcmp(key, EOD_TEXT, slen) == 0) {
            t->special[0] = (uint32_t)id;
            t->n_special = 1;
        }
    }
    if (!t->n_special) {
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: no %s token", path, EOD_TEXT);
        goto done;
    }
    /* n distinct ids below n: every id 0..n-1 is there */
    t->n_vocab = (uint32_t)n;
    t->tok_off = rtr_calloc(n + 1, sizeof *t->tok_off);
    t->tok_bytes = rtr_malloc(bytes.len ? bytes.len : 1);
    if (!t->tok_off || !t->tok_bytes) {
        rc = RTR_E_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        t->tok_off[i + 1] = t->tok_off[i] + len_of[i];
        memcpy(t->tok_bytes + t->tok_off[i], bytes.data + off_of[i], len_of[i]);
    }
    rc = RTR_OK;
done:
    json_decref(root);
    rtr_free(off_of);
    rtr_free(len_of);
    rtr_buf_free(&bytes);
    return rc;
}

/* Parses vocab.bpe into t->merges (tokens must be loaded). */
static int gpt2_parse_merges(const uint8_t *data, size_t len, const char *path, const int16_t cp_to_byte[324],
                             rtr_tokenizer *t) {
    bmap bm = {0};
    rtr_u32vec mv = {0};
    bview view = {t->tok_off, t->tok_bytes};
    int rc;
    if ((rc = bmap_init(&bm, t->n_vocab)) != RTR_OK) goto done;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        if (i == t->special[0]) continue;
        if (bmap_find(&bm, view, t->tok_bytes + t->tok_off[i], tok_len(t, i)) != UINT32_MAX) {
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: two tokens have the bytes of token %u", path, i);
            goto done;
        }
        if ((rc = bmap_add(&bm, view, i)) != RTR_OK) goto done;
    }
    size_t line_no = 0;
    for (const uint8_t *p = data, *end = data + len; p < end;) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *le = nl ? nl : end;
        line_no++;
        const uint8_t *ls = p;
        p = nl ? nl + 1 : end;
        if (le > ls && le[-1] == '\r') le--;
        if (le == ls) continue;
        if (line_no == 1 && le - ls >= 8 && memcmp(ls, "#version", 8) == 0) continue;
        const uint8_t *sp = memchr(ls, ' ', (size_t)(le - ls));
        if (!sp || sp == ls || sp + 1 == le || memchr(sp + 1, ' ', (size_t)(le - sp - 1))) {
            rc = rtr_seterr(RTR_E_CORRUPT, "%s:%zu: expected two tokens separated by a space", path, line_no);
            goto done;
        }
        uint32_t ids[2];
        const uint8_t *fs[2] = {ls, sp + 1}, *fe[2] = {sp, le};
        for (int k = 0; k < 2; k++) {
            uint8_t raw[RTOK_MAX_TOKEN];
            size_t rlen;
            if (!gpt2_unspell(cp_to_byte, fs[k], (size_t)(fe[k] - fs[k]), raw, &rlen, sizeof raw) ||
                (ids[k] = bmap_find(&bm, view, raw, rlen)) == UINT32_MAX) {
                rc = rtr_seterr(RTR_E_CORRUPT, "%s:%zu: \"%.*s\" is not a token of encoder.json", path,
                                line_no, (int)(fe[k] - fs[k] > 40 ? 40 : fe[k] - fs[k]),
                                (const char *)fs[k]);
                goto done;
            }
        }
        if ((rc = rtr_u32vec_push(&mv, ids[0])) != RTR_OK || (rc = rtr_u32vec_push(&mv, ids[1])) != RTR_OK)
            goto done;
    }
    if (mv.len / 2 >= t->n_vocab) {
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: %zu merges for %u tokens", path, mv.len / 2, t->n_vocab);
        goto done;
    }
    t->n_merges = (uint32_t)(mv.len / 2);
    t->merges = mv.data ? mv.data : rtr_malloc(4);
    mv.data = NULL;
    if (!t->merges) rc = RTR_E_NOMEM;
done:
    bmap_free(&bm);
    rtr_u32vec_free(&mv);
    return rc;
}

int rtr_tokenizer_parse_gpt2(const uint8_t *enc, size_t enc_len, const char *enc_name, const uint8_t *bpe,
                             size_t bpe_len, const char *bpe_name, rtr_tokenizer **out) {
    *out = NULL;
    int16_t cp_to_byte[324];
    gpt2_alphabet(cp_to_byte);
    rtr_tokenizer *t = rtr_calloc(1, sizeof *t);
    int rc = RTR_E_NOMEM;
    if (!t) goto fail;
    if ((rc = gpt2_parse_encoder(enc, enc_len, enc_name, cp_to_byte, t)) != RTR_OK) goto fail;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        if (tok_len(t, i) > RTOK_MAX_TOKEN) {
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: token %u is longer than %u bytes", enc_name, i, RTOK_MAX_TOKEN);
            goto fail;
        }
        if (tok_len(t, i) == 1 && i != t->special[0]) t->byte_to_id[t->tok_bytes[t->tok_off[i]]] = i + 1;
    }
    for (int b = 0; b < 256; b++) {
        if (!t->byte_to_id[b]) {
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: no token for byte 0x%02x", enc_name, b);
            goto fail;
        }
        t->byte_to_id[b]--;
    }
    if ((rc = gpt2_parse_merges(bpe, bpe_len, bpe_name, cp_to_byte, t)) != RTR_OK) goto fail;
    if ((rc = tok_finish(t, bpe_name)) != RTR_OK) goto fail;
    *out = t;
    return RTR_OK;
fail:
    rtr_tokenizer_free(t);
    return rc;
}

int rtr_tokenizer_load_gpt2(const char *dir, rtr_tokenizer **out) {
    *out = NULL;
    char *enc_path = rtr_path_join(dir, "encoder.json");
    char *bpe_path = rtr_path_join(dir, "vocab.bpe");
    uint8_t *enc = NULL, *bpe = NULL;
    size_t enc_len = 0, bpe_len = 0;
    int rc = enc_path && bpe_path ? RTR_OK : RTR_E_NOMEM;
    if (!rc) rc = rtr_read_file(enc_path, (size_t)64 << 20, &enc, &enc_len);
    if (!rc) rc = rtr_read_file(bpe_path, (size_t)64 << 20, &bpe, &bpe_len);
    if (!rc) rc = rtr_tokenizer_parse_gpt2(enc, enc_len, enc_path, bpe, bpe_len, bpe_path, out);
    rtr_free(enc);
    rtr_free(bpe);
    rtr_free(enc_path);
    rtr_free(bpe_path);
    return rc;
}

/* ---------------------------------------------------------------------------
 * 5. The pre-tokenizer
 *
 * A hand-written scanner equivalent to the JavaScript regex (flags gu)
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * At each position the alternatives are tried in order:
 *  - an apostrophe followed by s, t, m, d, re, ve or ll (lower case) is a piece;
 *  - U+0020 followed by a letter / number / other code point, or such a code
 *    point itself, starts a run of that one class (the classes are disjoint,
 *    so "[^\s\p{L}\p{N}]" is exactly the class "other");
 *  - whitespace: the maximal run; if text follows it and the run has more
 *    than one code point, \s+(?!\S) backtracks to all but the last one (which
 *    then starts the next piece: a U+0020 joins the following word, anything
 *    else is a piece by itself through the final \s+).
 * Bytes that are not valid UTF-8 are one-byte code points of class other.
 * ------------------------------------------------------------------------- */

/* Class of the code point at s[0..n) (n >= 1); returns its length in bytes. */
static inline size_t cp_class(const uint8_t *s, size_t n, int *cls) {
    uint8_t c = s[0];
    if (c < 0x80) {
        *cls = rtr_uc_stage2[c];   /* block 0 of the table covers U+0000..U+00FF */
        return 1;
    }
    uint32_t cp;
    size_t l;
    if (c >= 0xc2 && c <= 0xdf) {
        if (n < 2 || (s[1] & 0xc0) != 0x80) goto bad;
        cp = (uint32_t)(c & 0x1f) << 6 | (s[1] & 0x3f);
        l = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) goto bad;
        cp = (uint32_t)(c & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
        if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)) goto bad;
        l = 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80) goto bad;
        cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 | (uint32_t)(s[2] & 0x3f) << 6 |
             (s[3] & 0x3f);
        if (cp < 0x10000 || cp > 0x10ffff) goto bad;
        l = 4;
    } else {
        goto bad;
    }
    *cls = rtr_uc_class(cp);
    return l;
bad:
    *cls = RTR_UC_OTHER;
    return 1;
}

/* End of the run of class `cls` that continues at s[j]. */
static inline size_t run_end(const uint8_t *s, size_t n, size_t j, int cls) {
    while (j < n) {
        if (s[j] < 0x80) {
            if (rtr_uc_stage2[s[j]] != cls) break;
            j++;
        } else {
            int c2;
            size_t l = cp_class(s + j, n - j, &c2);
            if (c2 != cls) break;
            j += l;
        }
    }
    return j;
}

static inline size_t piece_end(const uint8_t *s, size_t n, size_t i) {
    uint8_t c = s[i];
    int cls;
    if (c == '\'' && i + 1 < n) {
        uint8_t d = s[i + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
        if (i + 2 < n) {
            uint8_t e = s[i + 2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) return i + 3;
        }
    }
    if (c == ' ' && i + 1 < n) {
        size_t l = cp_class(s + i + 1, n - i - 1, &cls);
        if (cls != RTR_UC_SPACE) return run_end(s, n, i + 1 + l, cls);
    }
    size_t l = cp_class(s + i, n - i, &cls);
    if (cls != RTR_UC_SPACE) return run_end(s, n, i + l, cls);
    size_t last = i, j = i + l;
    while (j < n) {
        int c2;
        l = cp_class(s + j, n - j, &c2);
        if (c2 != RTR_UC_SPACE) break;
        last = j;
        j += l;
    }
    if (j == n) return n;       /* \s+(?!\S) takes the run up to the end */
    if (last > i) return last;  /* backtrack: all but the last whitespace */
    return j;                   /* one whitespace before text: \s+ */
}

size_t rtr_bpe_piece_end(const uint8_t *text, size_t len, size_t pos) {
    RTR_ASSERT(pos < len);
    return piece_end(text, len, pos);
}

/* ---------------------------------------------------------------------------
 * 6. Encoding
 * ------------------------------------------------------------------------- */

#define SHORT_MAX 128          /* pieces up to this many bytes: O(n^2) array merge */
#define CACHE_KEY_MAX 64       /* pieces up to this many bytes are cached */
#define CACHE_SLOTS 65536      /* power of two */
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_ARENA (1u << 20) /* bytes of keys, and ids, before a reset */
#define LONG_BLOCK 32          /* positions per leaf of the long-path tree */

typedef struct cache_slot {
    uint32_t tag;       /* high half of the key's hash */
    uint32_t key_off;   /* into keys */
    uint32_t ids_off;   /* into ids */
    uint16_t key_len;   /* 0 = empty */
    uint16_t n_ids;
} cache_slot;

struct rtr_encoder {
    const rtr_tokenizer *t;
    cache_slot *slots;    /* (CACHE_SLOTS,) */
    uint8_t *keys;        /* (CACHE_ARENA,) */
    uint32_t *ids;        /* (CACHE_ARENA / 4,) */
    size_t n_entries, keys_len, ids_len;
    uint32_t sym[SHORT_MAX];    /* short-path scratch: symbols */
    uint32_t rank[SHORT_MAX];   /* rank of (sym[i], sym[i+1]) */
};

int rtr_encoder_new(const rtr_tokenizer *t, rtr_encoder **out) {
    *out = NULL;
    rtr_encoder *e = rtr_calloc(1, sizeof *e);
    if (!e) return RTR_E_NOMEM;
    e->t = t;
    e->slots = rtr_calloc(CACHE_SLOTS, sizeof *e->slots);
    e->keys = rtr_malloc(CACHE_ARENA);
    e->ids = rtr_malloc(CACHE_ARENA);
    if (!e->slots || !e->keys || !e->ids) {
        rtr_encoder_free(e);
        return RTR_E_NOMEM;
    }
    *out = e;
    return RTR_OK;
}

void rtr_encoder_free(rtr_encoder *e) {
    if (!e) return;
    rtr_free(e->slots);
    rtr_free(e->keys);
    rtr_free(e->ids);
    rtr_free(e);
}

static inline int push_ids(rtr_u32vec *out, const uint32_t *ids, size_t n) {
    if (out->cap - out->len < n) {
        int rc = rtr_u32vec_reserve(out, n);
        if (rc) return rc;
    }
    memcpy(out->data + out->len, ids, n * sizeof *ids);
    out->len += n;
    return RTR_OK;
}

/* Merges p[0..n) (2 <= n <= SHORT_MAX) into e->sym; returns the count.
 * Each step merges the leftmost pair of lowest rank: O(n^2), tiny n. */
static size_t merge_short(rtr_encoder *e, const uint8_t *p, size_t n) {
    const rtr_tokenizer *t = e->t;
    uint32_t *sym = e->sym, *rank = e->rank;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_to_id[p[i]];
    for (size_t i = 0; i + 1 < n; i++) rank[i] = pair_rank(t, sym[i], sym[i + 1]);
    size_t m = n;
    while (m > 1) {
        uint32_t best = NO_RANK;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rank[i] < best) {
                best = rank[i];
                bi = i;
            }
        if (best == NO_RANK) break;
        sym[bi] = t->result[best];
        memmove(sym + bi + 1, sym + bi + 2, (m - bi - 2) * sizeof *sym);
        if (bi + 3 < m) memmove(rank + bi + 1, rank + bi + 2, (m - bi - 3) * sizeof *rank);
        m--;
        if (bi + 1 < m) rank[bi] = pair_rank(t, sym[bi], sym[bi + 1]);
        if (bi > 0) rank[bi - 1] = pair_rank(t, sym[bi - 1], sym[bi]);
    }
    return m;
}

/* Min (rank << 40 | position) over one block of rank[]; UINT64_MAX if none. */
static inline uint64_t block_min(const uint32_t *rank, size_t n, size_t b) {
    size_t lo = b * LONG_BLOCK, hi = lo + LONG_BLOCK < n ? lo + LONG_BLOCK : n;
    uint32_t best = NO_RANK;
    size_t bi = 0;
    for (size_t i = lo; i < hi; i++)
        if (rank[i] < best) {
            best = rank[i];
            bi = i;
        }
    return best == NO_RANK ? UINT64_MAX : (uint64_t)best << 40 | bi;
}

static inline void tree_update(uint64_t *tree, size_t P, const uint32_t *rank, size_t n, size_t b) {
    size_t i = P + b;
    tree[i] = block_min(rank, n, b);
    for (i >>= 1; i >= 1; i >>= 1) {
        uint64_t l = tree[2 * i], r = tree[2 * i + 1], v = l < r ? l : r;
        if (tree[i] == v) break;
        tree[i] = v;
    }
}

/*
 * Merges a long piece p[0..n) and appends its ids to out. O(n log n):
 * the symbols form an implicit linked list over byte positions: sym[s] is
 * the id of the symbol starting at s and also stored at its last byte, so the
 * next symbol starts at s + len(sym[s]) and the previous one at
 * s - len(sym[s-1]). rank[s] is the rank of the pair starting at symbol s
 * (NO_RANK if none or if s is not a symbol start). A tournament tree over
 * blocks of LONG_BLOCK positions yields the leftmost lowest-rank pair, which
 * is exactly the merge order of the reference (lowest rank first; equal
 * ranks are the same pair, merged left to right).
 * Memory: 8 bytes per byte of the piece, plus 0.5 to 1 for the tree.
 */
static int merge_long(const rtr_tokenizer *t, const uint8_t *p, size_t n, rtr_u32vec *out) {
    RTR_ASSERT(n >= 2 && n < ((uint64_t)1 << 40));
    size_t nb = (n + LONG_BLOCK - 1) / LONG_BLOCK, P = 1;
    while (P < nb) P <<= 1;
    uint32_t *sym = rtr_malloc(n * sizeof *sym);
    uint32_t *rank = rtr_malloc(n * sizeof *rank);
    uint64_t *tree = rtr_calloc(2 * P, sizeof *tree);
    int rc = RTR_E_NOMEM;
    if (!sym || !rank || !tree) goto done;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_to_id[p[i]];
    for (size_t i = 0; i + 1 < n; i++) rank[i] = pair_rank(t, sym[i], sym[i + 1]);
    rank[n - 1] = NO_RANK;
    for (size_t b = 0; b < P; b++) tree[P + b] = b < nb ? block_min(rank, n, b) : UINT64_MAX;
    for (size_t i = P - 1; i >= 1; i--) tree[i] = tree[2 * i] < tree[2 * i + 1] ? tree[2 * i] : tree[2 * i + 1];

    while (tree[1] != UINT64_MAX) {
        uint32_t r = (uint32_t)(tree[1] >> 40);
        size_t s = (size_t)(tree[1] & (((uint64_t)1 << 40) - 1));
        uint32_t a = sym[s];
        size_t q = s + tok_len(t, a);
        uint32_t c = t->result[r];
        size_t last = q + tok_len(t, sym[q]) - 1;
        sym[s] = c;
        sym[last] = c;
        rank[q] = NO_RANK;
        rank[s] = last + 1 < n ? pair_rank(t, c, sym[last + 1]) : NO_RANK;
        size_t bs = s / LONG_BLOCK, bq = q / LONG_BLOCK;
        if (s > 0) {
            uint32_t prev = sym[s - 1];
            size_t ps = s - tok_len(t, prev);
            rank[ps] = pair_rank(t, prev, c);
            size_t bp = ps / LONG_BLOCK;
            if (bp != bs && bp != bq) tree_update(tree, P, rank, n, bp);
        }
        tree_update(tree, P, rank, n, bs);
        if (bq != bs) tree_update(tree, P, rank, n, bq);
    }
    size_t count = 0;
    for (size_t i = 0; i < n; i += tok_len(t, sym[i])) count++;
    if ((rc = rtr_u32vec_reserve(out, count)) != RTR_OK) goto done;
    for (size_t i = 0; i < n; i += tok_len(t, sym[i])) out->data[out->len++] = sym[i];
    rc = RTR_OK;
done:
    rtr_free(sym);
    rtr_free(rank);
    rtr_free(tree);
    return rc;
}

static void cache_reset(rtr_encoder *e) {
    memset(e->slots, 0, CACHE_SLOTS * sizeof *e->slots);
    e->n_entries = e->keys_len = e->ids_len = 0;
}

static inline int encode_piece(rtr_encoder *e, const uint8_t *p, size_t n, rtr_u32vec *out) {
    const rtr_tokenizer *t = e->t;
    if (n == 1) {
        if (out->len == out->cap) {
            int rc = rtr_u32vec_reserve(out, 1);
            if (rc) return rc;
        }
        out->data[out->len++] = t->byte_to_id[p[0]];
        return RTR_OK;
    }
    if (n > SHORT_MAX) return merge_long(t, p, n, out);
    if (n > CACHE_KEY_MAX) return push_ids(out, e->sym, merge_short(e, p, n));

    uint64_t h = bytes_hash(p, n);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = (size_t)h & (CACHE_SLOTS - 1);
    for (;;) {
        cache_slot *sl = &e->slots[i];
        if (sl->key_len == 0) break;
        if (sl->tag == tag && sl->key_len == n && memcmp(e->keys + sl->key_off, p, n) == 0)
            return push_ids(out, e->ids + sl->ids_off, sl->n_ids);
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
    size_t m = merge_short(e, p, n);
    int rc = push_ids(out, e->sym, m);
    if (rc) return rc;
    if (e->n_entries >= CACHE_MAX_ENTRIES || e->keys_len + n > CACHE_ARENA ||
        (e->ids_len + m) * 4 > CACHE_ARENA) {
        cache_reset(e);
        i = (size_t)h & (CACHE_SLOTS - 1);
    }
    while (e->slots[i].key_len) i = (i + 1) & (CACHE_SLOTS - 1);
    e->slots[i] = (cache_slot){tag, (uint32_t)e->keys_len, (uint32_t)e->ids_len, (uint16_t)n, (uint16_t)m};
    memcpy(e->keys + e->keys_len, p, n);
    memcpy(e->ids + e->ids_len, e->sym, m * sizeof *e->sym);
    e->keys_len += n;
    e->ids_len += m;
    e->n_entries++;
    return RTR_OK;
}

int rtr_encoder_encode(rtr_encoder *e, const uint8_t *text, size_t len, rtr_u32vec *out) {
    size_t start = out->len;
    for (size_t i = 0; i < len;) {
        size_t j = piece_end(text, len, i);
        int rc = encode_piece(e, text + i, j - i, out);
        if (rc) {
            out->len = start;
            return rc;
        }
        i = j;
    }
    return RTR_OK;
}

int rtr_tokenizer_decode(const rtr_tokenizer *t, const uint32_t *ids, size_t n, rtr_buf *out) {
    size_t start = out->len, total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= t->n_vocab)
            return rtr_seterr(RTR_E_INVALID, "token id %u at position %zu is out of range (vocab size %u)",
                              ids[i], i, t->n_vocab);
        total += tok_len(t, ids[i]);
    }
    if (total == 0) return RTR_OK;   /* out->data may be NULL: no pointer arithmetic on it */
    int rc = rtr_buf_reserve(out, total);
    if (rc) return rc;
    uint8_t *o = out->data + start;
    for (size_t i = 0; i < n; i++) {
        uint32_t l = tok_len(t, ids[i]);
        memcpy(o, t->tok_bytes + t->tok_off[ids[i]], l);
        o += l;
    }
    out->len += total;
    return RTR_OK;
}

/* ---------------------------------------------------------------------------
 * 7. Training
 *
 * feed() counts pre-tokenizer pieces ("words"). finish() runs classic BPE
 * training incrementally:
 *   - pairs[]: every adjacent symbol pair seen, with its weighted count and a
 *     linked list of the words it (may) occur in (occ[]; stale entries are
 *     harmless, duplicates are skipped with a per-step stamp);
 *   - a max-heap of (count, pair) with lazy invalidation: an entry is used
 *     only if its count still equals the pair's count; every pair whose count
 *     changes gets a fresh entry at the end of the step;
 *   - merging pair (a, b) -> c rewrites only the words on its list, and
 *     updates the counts of the neighbouring pairs by the word's count.
 * Ties: larger count first, then smaller left bytes, then smaller right
 * bytes (memcmp order, a prefix before its extensions).
 * ------------------------------------------------------------------------- */

typedef struct tr_piece {
    uint64_t hash;
    uint64_t off;      /* into arena */
    uint64_t len;      /* 0 = empty slot */
    uint64_t count;
} tr_piece;

struct rtr_bpe_trainer {
    tr_piece *pieces;  /* (mask+1,) open addressing */
    size_t mask, n;
    rtr_buf arena;
    rtr_bpe_progress_fn progress;
    void *progress_ctx;
    bool finished;
};

int rtr_bpe_trainer_new(rtr_bpe_trainer **out) {
    *out = NULL;
    rtr_bpe_trainer *tr = rtr_calloc(1, sizeof *tr);
    if (!tr) return RTR_E_NOMEM;
    tr->pieces = rtr_calloc(1024, sizeof *tr->pieces);
    if (!tr->pieces) {
        rtr_free(tr);
        return RTR_E_NOMEM;
    }
    tr->mask = 1023;
    *out = tr;
    return RTR_OK;
}

void rtr_bpe_trainer_set_progress(rtr_bpe_trainer *tr, rtr_bpe_progress_fn fn, void *ctx) {
    tr->progress = fn;
    tr->progress_ctx = ctx;
}

void rtr_bpe_trainer_free(rtr_bpe_trainer *tr) {
    if (!tr) return;
    rtr_free(tr->pieces);
    rtr_buf_free(&tr->arena);
    rtr_free(tr);
}

static int tr_grow(rtr_bpe_trainer *tr) {
    size_t cap = (tr->mask + 1) * 2;
    tr_piece *np = rtr_calloc(cap, sizeof *np);
    if (!np) return RTR_E_NOMEM;
    for (size_t i = 0; i <= tr->mask; i++) {
        if (!tr->pieces[i].len) continue;
        size_t j = (size_t)tr->pieces[i].hash & (cap - 1);
        while (np[j].len) j = (j + 1) & (cap - 1);
        np[j] = tr->pieces[i];
    }
    rtr_free(tr->pieces);
    tr->pieces = np;
    tr->mask = cap - 1;
    return RTR_OK;
}

int rtr_bpe_trainer_feed(rtr_bpe_trainer *tr, const uint8_t *text, size_t len) {
    RTR_ASSERT(!tr->finished);
    for (size_t i = 0; i < len;) {
        size_t j = piece_end(text, len, i), n = j - i;
        const uint8_t *p = text + i;
        i = j;
        if (n < 2) continue;   /* a single byte has no pair to learn from */
        uint64_t h = bytes_hash(p, n);
        size_t k = (size_t)h & tr->mask;
        for (;;) {
            tr_piece *s = &tr->pieces[k];
            if (!s->len) break;
            if (s->hash == h && s->len == n && memcmp(tr->arena.data + s->off, p, n) == 0) break;
            k = (k + 1) & tr->mask;
        }
        if (tr->pieces[k].len) {
            tr->pieces[k].count++;
            continue;
        }
        if ((tr->n + 1) * 2 > tr->mask + 1) {
            int rc = tr_grow(tr);
            if (rc) return rc;
            k = (size_t)h & tr->mask;
            while (tr->pieces[k].len) k = (k + 1) & tr->mask;
        }
        uint64_t off = tr->arena.len;
        int rc = rtr_buf_append(&tr->arena, p, n);
        if (rc) return rc;
        tr->pieces[k] = (tr_piece){h, off, n, 1};
        tr->n++;
    }
    return RTR_OK;
}

typedef struct tr_pair {
    uint32_t a, b;
    int64_t count;
    uint32_t head;       /* first occ index + 1, 0 = none */
    uint32_t last_word;  /* last word appended to the list (dedup) */
    uint32_t stamp;      /* step that last touched it */
} tr_pair;

typedef struct tr_occ {
    uint32_t word;
    uint32_t next;       /* occ index + 1, 0 = end */
} tr_occ;

typedef struct tr_heap_ent {
    int64_t count;
    uint32_t pair;
} tr_heap_ent;

typedef struct train {
    /* words: symbols of every distinct piece, rewritten in place */
    uint32_t *wsym;         /* (sum of piece lengths,) */
    uint64_t *woff;         /* (nw,) */
    uint32_t *wlen;         /* (nw,) current length in symbols */
    int64_t *wcount;        /* (nw,) */
    uint32_t *wstamp;       /* (nw,) step that last rewrote it */
    size_t nw;
    /* tokens */
    rtr_u32vec tok_off;     /* (ntok+1,) */
    rtr_buf tok_bytes;
    bmap tmap;
    /* pairs */
    tr_pair *pairs;
    size_t n_pairs, cap_pairs;
    uint32_t *pmap;         /* (pmask+1,) pair index + 1, 0 = empty */
    size_t pmask;
    tr_occ *occ;
    size_t n_occ, cap_occ;
    tr_heap_ent *heap;
    size_t n_heap, cap_heap;
    rtr_u32vec touched;
    rtr_u32vec merges;      /* (M, 2) */
    uint32_t step;
} train;

static bview tr_view(const train *T) { return (bview){T->tok_off.data, T->tok_bytes.data}; }

/* memcmp order of the bytes of tokens x and y. */
static int tok_cmp(const train *T, uint32_t x, uint32_t y) {
    if (x == y) return 0;
    const uint32_t *off = T->tok_off.data;
    uint32_t lx = off[x + 1] - off[x], ly = off[y + 1] - off[y];
    int c = memcmp(T->tok_bytes.data + off[x], T->tok_bytes.data + off[y], lx < ly ? lx : ly);
    if (c) return c;
    return lx < ly ? -1 : lx > ly;
}

/* true if heap entry u should be merged before v. */
static bool tr_before(const train *T, tr_heap_ent u, tr_heap_ent v) {
    if (u.count != v.count) return u.count > v.count;
    const tr_pair *pu = &T->pairs[u.pair], *pv = &T->pairs[v.pair];
    int c = tok_cmp(T, pu->a, pv->a);
    if (c) return c < 0;
    return tok_cmp(T, pu->b, pv->b) < 0;
}

static int tr_heap_push(train *T, uint32_t pair) {
    const uint32_t *off = T->tok_off.data;
    const tr_pair *pp = &T->pairs[pair];
    if (pp->count <= 0) return RTR_OK;
    if (off[pp->a + 1] - off[pp->a] + off[pp->b + 1] - off[pp->b] > RTOK_MAX_TOKEN) return RTR_OK;
    int rc = RTR_GROW(T->heap, &T->cap_heap, T->n_heap + 1);
    if (rc) return rc;
    tr_heap_ent x = {pp->count, pair};
    size_t i = T->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!tr_before(T, x, T->heap[up])) break;
        T->heap[i] = T->heap[up];
        i = up;
    }
    T->heap[i] = x;
    return RTR_OK;
}

static tr_heap_ent tr_heap_pop(train *T) {
    tr_heap_ent top = T->heap[0], x = T->heap[--T->n_heap];
    size_t i = 0, n = T->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, best = i;
        tr_heap_ent bx = x;
        if (l < n && tr_before(T, T->heap[l], bx)) best = l, bx = T->heap[l];
        if (l + 1 < n && tr_before(T, T->heap[l + 1], bx)) best = l + 1;
        if (best == i) break;
        T->heap[i] = T->heap[best];
        i = best;
    }
    if (n) T->heap[i] = x;
    return top;
}

/* Index of pair (a, b), created with count 0 if new; UINT32_MAX on NOMEM. */
static uint32_t tr_pair_get(train *T, uint32_t a, uint32_t b) {
    uint64_t key = (uint64_t)a << 32 | b;
    size_t i = (size_t)mix64(key) & T->pmask;
    for (;;) {
        uint32_t s = T->pmap[i];
        if (!s) break;
        if (T->pairs[s - 1].a == a && T->pairs[s - 1].b == b) return s - 1;
        i = (i + 1) & T->pmask;
    }
    if (T->n_pairs >= UINT32_MAX - 1) {
        rtr_seterr(RTR_E_NOMEM, "too many distinct pairs");
        return UINT32_MAX;
    }
    if (RTR_GROW(T->pairs, &T->cap_pairs, T->n_pairs + 1)) return UINT32_MAX;
    if ((T->n_pairs + 1) * 2 > T->pmask + 1) {
        size_t cap = (T->pmask + 1) * 2;
        uint32_t *nm = rtr_calloc(cap, sizeof *nm);
        if (!nm) return UINT32_MAX;
        for (size_t k = 0; k < T->n_pairs; k++) {
            size_t j = (size_t)mix64((uint64_t)T->pairs[k].a << 32 | T->pairs[k].b) & (cap - 1);
            while (nm[j]) j = (j + 1) & (cap - 1);
            nm[j] = (uint32_t)k + 1;
        }
        rtr_free(T->pmap);
        T->pmap = nm;
        T->pmask = cap - 1;
        i = (size_t)mix64(key) & T->pmask;
        while (T->pmap[i]) i = (i + 1) & T->pmask;
    }
    uint32_t idx = (uint32_t)T->n_pairs++;
    T->pairs[idx] = (tr_pair){a, b, 0, 0, UINT32_MAX, 0};
    T->pmap[i] = idx + 1;
    return idx;
}

/* Adds delta to pair (a, b) as seen in word w; records the touch. */
static int tr_pair_add(train *T, uint32_t a, uint32_t b, int64_t delta, uint32_t w) {
    uint32_t p = tr_pair_get(T, a, b);
    if (p == UINT32_MAX) return RTR_E_NOMEM;
    tr_pair *pp = &T->pairs[p];
    pp->count += delta;
    RTR_ASSERT(pp->count >= 0);
    if (delta > 0 && pp->last_word != w) {
        if (T->n_occ >= UINT32_MAX - 1) return rtr_seterr(RTR_E_NOMEM, "too many pair occurrences");
        int rc = RTR_GROW(T->occ, &T->cap_occ, T->n_occ + 1);
        if (rc) return rc;
        T->occ[T->n_occ] = (tr_occ){w, pp->head};
        pp->head = (uint32_t)++T->n_occ;
        pp->last_word = w;
    }
    if (T->step && pp->stamp != T->step) {
        pp->stamp = T->step;
        return rtr_u32vec_push(&T->touched, p);
    }
    return RTR_OK;
}

/* Rewrites word w, merging every (a, b) left to right into c. */
static int tr_merge_word(train *T, uint32_t w, uint32_t a, uint32_t b, uint32_t c) {
    uint32_t *s = T->wsym + T->woff[w];
    uint32_t len = T->wlen[w], k = 0;
    int64_t cnt = T->wcount[w];
    int rc;
    for (uint32_t r = 0; r < len;) {
        if (r + 1 < len && s[r] == a && s[r + 1] == b) {
            if (k > 0) {
                if ((rc = tr_pair_add(T, s[k - 1], a, -cnt, w)) != RTR_OK) return rc;
                if ((rc = tr_pair_add(T, s[k - 1], c, cnt, w)) != RTR_OK) return rc;
            }
            if (r + 2 < len) {
                if ((rc = tr_pair_add(T, b, s[r + 2], -cnt, w)) != RTR_OK) return rc;
                if ((rc = tr_pair_add(T, c, s[r + 2], cnt, w)) != RTR_OK) return rc;
            }
            if ((rc = tr_pair_add(T, a, b, -cnt, w)) != RTR_OK) return rc;
            s[k++] = c;
            r += 2;
        } else {
            s[k++] = s[r++];
        }
    }
    T->wlen[w] = k;
    return RTR_OK;
}

static void train_free(train *T) {
    rtr_free(T->wsym);
    rtr_free(T->woff);
    rtr_free(T->wlen);
    rtr_free(T->wcount);
    rtr_free(T->wstamp);
    rtr_u32vec_free(&T->tok_off);
    rtr_buf_free(&T->tok_bytes);
    bmap_free(&T->tmap);
    rtr_free(T->pairs);
    rtr_free(T->pmap);
    rtr_free(T->occ);
    rtr_free(T->heap);
    rtr_u32vec_free(&T->touched);
    rtr_u32vec_free(&T->merges);
}

int rtr_bpe_trainer_finish(rtr_bpe_trainer *tr, uint32_t vocab_size, rtr_tokenizer **out) {
    *out = NULL;
    RTR_ASSERT(!tr->finished);
    if (vocab_size < 257 || vocab_size > RTOK_MAX_VOCAB)
        return rtr_seterr(RTR_E_INVALID, "vocab size %u out of range (257..%u)", vocab_size, RTOK_MAX_VOCAB);
    tr->finished = true;
    train T = {0};
    rtr_tokenizer *t = NULL;
    int rc = RTR_E_NOMEM;
    const uint32_t target = vocab_size - 1;   /* tokens before the special */

    /* Words. */
    T.nw = tr->n;
    if (T.nw > UINT32_MAX - 1) {
        rc = rtr_seterr(RTR_E_INVALID, "too many distinct pieces (%zu)", T.nw);
        goto fail;
    }
    T.wsym = rtr_malloc((tr->arena.len ? tr->arena.len : 1) * sizeof *T.wsym);
    T.woff = rtr_malloc((T.nw ? T.nw : 1) * sizeof *T.woff);
    T.wlen = rtr_malloc((T.nw ? T.nw : 1) * sizeof *T.wlen);
    T.wcount = rtr_malloc((T.nw ? T.nw : 1) * sizeof *T.wcount);
    T.wstamp = rtr_calloc(T.nw ? T.nw : 1, sizeof *T.wstamp);
    T.pmap = rtr_calloc(1024, sizeof *T.pmap);
    if (!T.wsym || !T.woff || !T.wlen || !T.wcount || !T.wstamp || !T.pmap) goto fail;
    T.pmask = 1023;
    {
        size_t w = 0;
        for (size_t i = 0; i <= tr->mask; i++) {
            const tr_piece *pc = &tr->pieces[i];
            if (!pc->len) continue;
            if (pc->len > UINT32_MAX) {
                rc = rtr_seterr(RTR_E_INVALID, "a piece of %llu bytes is too long to train on",
                                (unsigned long long)pc->len);
                goto fail;
            }
            T.woff[w] = pc->off;
            T.wlen[w] = (uint32_t)pc->len;
            T.wcount[w] = (int64_t)pc->count;
            for (uint64_t k = 0; k < pc->len; k++) T.wsym[pc->off + k] = tr->arena.data[pc->off + k];
            w++;
        }
        RTR_ASSERT(w == T.nw);
    }

    /* Tokens: the 256 bytes. */
    if ((rc = rtr_u32vec_reserve(&T.tok_off, 257)) != RTR_OK) goto fail;
    if ((rc = rtr_buf_reserve(&T.tok_bytes, 256)) != RTR_OK) goto fail;
    T.tok_off.data[T.tok_off.len++] = 0;
    for (uint32_t b = 0; b < 256; b++) {
        T.tok_bytes.data[T.tok_bytes.len++] = (uint8_t)b;
        T.tok_off.data[T.tok_off.len++] = b + 1;
    }
    if ((rc = bmap_init(&T.tmap, 4096)) != RTR_OK) goto fail;
    for (uint32_t b = 0; b < 256; b++)
        if ((rc = bmap_add(&T.tmap, tr_view(&T), b)) != RTR_OK) goto fail;

    /* Initial pair counts. */
    for (uint32_t w = 0; w < T.nw; w++) {
        const uint32_t *s = T.wsym + T.woff[w];
        for (uint32_t i = 0; i + 1 < T.wlen[w]; i++)
            if ((rc = tr_pair_add(&T, s[i], s[i + 1], T.wcount[w], w)) != RTR_OK) goto fail;
    }
    for (uint32_t p = 0; p < T.n_pairs; p++)
        if ((rc = tr_heap_push(&T, p)) != RTR_OK) goto fail;

    uint32_t ntok = 256;
    const uint64_t total = target - 256;
    while (ntok < target && T.merges.len / 2 < ntok) {
        tr_heap_ent top = {0, 0};
        bool found = false;
        while (T.n_heap) {
            top = tr_heap_pop(&T);
            if (top.count == T.pairs[top.pair].count && top.count > 0) {
                found = true;
                break;
            }
        }
        if (!found) break;
        uint32_t a = T.pairs[top.pair].a, b = T.pairs[top.pair].b;
        const uint32_t *off = T.tok_off.data;
        uint32_t la = off[a + 1] - off[a], lb = off[b + 1] - off[b];
        uint8_t cat[2 * RTOK_MAX_TOKEN];
        memcpy(cat, T.tok_bytes.data + off[a], la);
        memcpy(cat + la, T.tok_bytes.data + off[b], lb);
        uint32_t c = bmap_find(&T.tmap, tr_view(&T), cat, la + lb);
        if (c == UINT32_MAX) {
            if ((rc = rtr_buf_append(&T.tok_bytes, cat, la + lb)) != RTR_OK) goto fail;
            if ((rc = rtr_u32vec_push(&T.tok_off, (uint32_t)T.tok_bytes.len)) != RTR_OK) goto fail;
            c = ntok++;
            if ((rc = bmap_add(&T.tmap, tr_view(&T), c)) != RTR_OK) goto fail;
        }
        if ((rc = rtr_u32vec_push(&T.merges, a)) != RTR_OK) goto fail;
        if ((rc = rtr_u32vec_push(&T.merges, b)) != RTR_OK) goto fail;

        T.step++;
        T.touched.len = 0;
        uint32_t pidx = top.pair;
        for (uint32_t o = T.pairs[pidx].head; o;) {
            uint32_t w = T.occ[o - 1].word;
            o = T.occ[o - 1].next;
            if (T.wstamp[w] == T.step) continue;
            T.wstamp[w] = T.step;
            if ((rc = tr_merge_word(&T, w, a, b, c)) != RTR_OK) goto fail;
        }
        RTR_ASSERT(T.pairs[pidx].count == 0);
        for (size_t k = 0; k < T.touched.len; k++)
            if ((rc = tr_heap_push(&T, T.touched.data[k])) != RTR_OK) goto fail;
        if (tr->progress && (ntok % 64 == 0 || ntok == target))
            tr->progress(tr->progress_ctx, ntok - 256, total);
    }

    /* The tokenizer: bytes, merge results, then <|endoftext|>. */
    t = rtr_calloc(1, sizeof *t);
    if (!t) {
        rc = RTR_E_NOMEM;
        goto fail;
    }
    t->n_vocab = ntok + 1;
    t->n_merges = (uint32_t)(T.merges.len / 2);
    t->n_special = 1;
    t->special[0] = ntok;
    for (uint32_t b = 0; b < 256; b++) t->byte_to_id[b] = b;
    if ((rc = rtr_buf_append(&T.tok_bytes, EOD_TEXT, sizeof EOD_TEXT - 1)) != RTR_OK) goto fail;
    if ((rc = rtr_u32vec_push(&T.tok_off, (uint32_t)T.tok_bytes.len)) != RTR_OK) goto fail;
    t->tok_off = T.tok_off.data;
    T.tok_off.data = NULL;
    t->tok_bytes = T.tok_bytes.data;
    T.tok_bytes.data = NULL;
    t->merges = T.merges.data ? T.merges.data : rtr_malloc(4);
    T.merges.data = NULL;
    if (!t->merges) {
        rc = RTR_E_NOMEM;
        goto fail;
    }
    if ((rc = tok_finish(t, "trained tokenizer")) != RTR_OK) goto fail;
    if (tr->progress) tr->progress(tr->progress_ctx, total, total);
    train_free(&T);
    *out = t;
    return RTR_OK;
fail:
    rtr_tokenizer_free(t);
    train_free(&T);
    return rc;
}
