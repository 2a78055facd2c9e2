/*
 * test_bpe.c - the byte-level BPE tokenizer: pre-tokenizer pieces, Unicode
 * table, encode/decode round trip on random bytes, the optimized merge paths
 * against a naive reference, training, .rtok save/load, corrupt files, and
 * allocation failures.
 *
 * GPT-2 parts run when $RETRO_CACHE (or the configured cache dir) holds
 * gpt2/{encoder.json,vocab.bpe}; tests/e2e/tokenizer_gpt2.sh is the full
 * comparison with the reference encoders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "lib/alloc.h"
#include "lib/bpe.h"
#include "lib/io.h"
#include "lib/sort.h"
#include "lib/status.h"
#include "lib/unicode_tab.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}
static size_t rndn(size_t n) { return (size_t)(rnd() % n); }

static const char *cache_dir(void) {
    const char *c = getenv("RETRO_CACHE");
    return c && *c ? c : RETRO_CACHE_DIR;
}

/* GPT-2 tokenizer from the cache, or NULL (tests using it then skip). */
static rtr_tokenizer *gpt2_or_null(void) {
    char dir[4096], probe[4200];
    snprintf(dir, sizeof dir, "%s/gpt2", cache_dir());
    snprintf(probe, sizeof probe, "%s/vocab.bpe", dir);
    if (access(probe, R_OK) != 0) return NULL;
    rtr_tokenizer *t = NULL;
    int rc = rtr_tokenizer_load_gpt2(dir, &t);
    if (rc) fail_msg("loading GPT-2 from %s: %s", dir, rtr_errdetail());
    return t;
}

/* A tokenizer trained on one bundled State of the Union address. */
static rtr_tokenizer *small_tokenizer(uint32_t vocab) {
    uint8_t *text;
    size_t len;
    int rc = rtr_read_file(RETRO_SOURCE_DIR "/datasets/sotu/1961_john_f_kennedy_d.txt", 1 << 24, &text, &len);
    assert_int_equal(rc, RTR_OK);
    rtr_bpe_trainer *tr;
    assert_int_equal(rtr_bpe_trainer_new(&tr), RTR_OK);
    assert_int_equal(rtr_bpe_trainer_feed(tr, text, len), RTR_OK);
    rtr_tokenizer *t;
    assert_int_equal(rtr_bpe_trainer_finish(tr, vocab, &t), RTR_OK);
    rtr_bpe_trainer_free(tr);
    rtr_free(text);
    assert_int_equal(rtr_tokenizer_vocab_size(t), vocab);
    return t;
}

static void encode(const rtr_tokenizer *t, const void *text, size_t len, rtr_u32vec *ids) {
    rtr_encoder *e;
    assert_int_equal(rtr_encoder_new(t, &e), RTR_OK);
    ids->len = 0;
    assert_int_equal(rtr_encoder_encode(e, text, len, ids), RTR_OK);
    rtr_encoder_free(e);
}

static size_t put_utf8(uint8_t *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xc0 | cp >> 6); o[1] = (uint8_t)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xe0 | cp >> 12); o[1] = (uint8_t)(0x80 | (cp >> 6 & 63)); o[2] = (uint8_t)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (uint8_t)(0xf0 | cp >> 18); o[1] = (uint8_t)(0x80 | (cp >> 12 & 63));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 63)); o[3] = (uint8_t)(0x80 | (cp & 63));
    return 4;
}

/* Random text: mode 0 any bytes, 1 varied UTF-8, 2 ASCII words, 3 letters only. */
static size_t random_text(uint8_t *buf, size_t cap, int mode) {
    static const uint32_t cps[] = {' ', ' ', ' ', '\n', '\t', '\r', 0xa0, 0x3000, 0x2028, 0xfeff, 0x85, '\'',
                                   's', 't', 'e', 'a', 'Z', '1', '7', '.', ',', '!', 0xe9, 0x301, 0x3a9, 0x416,
                                   0x634, 0x5e9, 0x915, 0x93f, 0x4e2d, 0x306e, 0xd55c, 0xe01, 0x1f600, 0x1f3fd,
                                   0x663, 0x967, 0xbd, 0xb2, 0x216b, 0x200d, 0x10ffff, 0xfffd};
    size_t n = 0;
    while (n + 8 < cap && rndn(cap) != 0) {
        switch (mode) {
        case 0: buf[n++] = (uint8_t)rnd(); break;
        case 1: n += put_utf8(buf + n, cps[rndn(sizeof cps / sizeof *cps)]); break;
        case 2: buf[n++] = (uint8_t)(rndn(5) == 0 ? ' ' : rndn(20) == 0 ? '\'' : 'a' + rndn(4)); break;
        default: buf[n++] = (uint8_t)('a' + rndn(3)); break;
        }
    }
    return n;
}

static void check_roundtrip(const rtr_tokenizer *t, rtr_encoder *e, const uint8_t *text, size_t len) {
    rtr_u32vec ids = {0};
    rtr_buf back = {0};
    assert_int_equal(rtr_encoder_encode(e, text, len, &ids), RTR_OK);
    assert_true(ids.len <= len);
    for (size_t i = 0; i < ids.len; i++) {
        assert_true(ids.data[i] < rtr_tokenizer_vocab_size(t));
        assert_int_not_equal(ids.data[i], rtr_tokenizer_eod(t));
    }
    assert_int_equal(rtr_tokenizer_decode(t, ids.data, ids.len, &back), RTR_OK);
    assert_int_equal(back.len, len);
    if (len) assert_memory_equal(back.data, text, len);
    rtr_u32vec_free(&ids);
    rtr_buf_free(&back);
}

/* ---- naive reference BPE -------------------------------------------------
 * The merge loop of the original GPT-2 encoder: find the adjacent pair with
 * the lowest merge rank, replace every occurrence left to right, repeat.
 * Ranks by binary search over sorted keys; results by binary search over the
 * tokens sorted by bytes. Independent of the library's hash tables. */

typedef struct naive {
    const rtr_tokenizer *t;
    uint64_t *keys;     /* (M,) sorted (left << 32 | right) */
    uint32_t *rank;     /* (M,) merge index of keys[i] */
    uint32_t *result;   /* (M,) by merge index */
    uint32_t byte_id[256];
} naive;

static const rtr_tokenizer *cmp_tok;
static int cmp_tokens(const void *a, const void *b) {
    size_t la, lb;
    const uint8_t *pa = rtr_tokenizer_token(cmp_tok, *(const uint32_t *)a, &la);
    const uint8_t *pb = rtr_tokenizer_token(cmp_tok, *(const uint32_t *)b, &lb);
    int c = memcmp(pa, pb, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

static void naive_init(naive *nv, const rtr_tokenizer *t) {
    uint32_t V = rtr_tokenizer_vocab_size(t), M = rtr_tokenizer_n_merges(t);
    nv->t = t;
    uint32_t *sorted = malloc(V * sizeof *sorted);
    uint32_t nsorted = 0;
    for (uint32_t i = 0; i < V; i++) {
        int special = 0;
        for (uint32_t s = 0; s < rtr_tokenizer_n_special(t); s++) special |= rtr_tokenizer_special(t, s) == i;
        if (special) continue;
        sorted[nsorted++] = i;
        size_t l;
        const uint8_t *b = rtr_tokenizer_token(t, i, &l);
        if (l == 1) nv->byte_id[b[0]] = i;
    }
    cmp_tok = t;
    qsort(sorted, nsorted, sizeof *sorted, cmp_tokens);
    uint64_t *pairs = malloc((M + 1) * sizeof *pairs);
    nv->keys = malloc((M + 1) * sizeof *nv->keys);
    nv->rank = malloc((M + 1) * sizeof *nv->rank);
    nv->result = malloc((M + 1) * sizeof *nv->result);
    for (uint32_t j = 0; j < M; j++) {
        uint32_t a, b;
        assert_int_equal(rtr_tokenizer_merge(t, j, &a, &b, NULL), RTR_OK);
        nv->keys[j] = (uint64_t)a << 32 | b;
        /* result: the token whose bytes are a||b */
        uint8_t cat[512];
        size_t la, lb;
        const uint8_t *pa = rtr_tokenizer_token(t, a, &la), *pb = rtr_tokenizer_token(t, b, &lb);
        memcpy(cat, pa, la);
        memcpy(cat + la, pb, lb);
        size_t lo = 0, hi = nsorted;
        nv->result[j] = UINT32_MAX;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2, lm;
            const uint8_t *pm = rtr_tokenizer_token(t, sorted[mid], &lm);
            int c = memcmp(pm, cat, lm < la + lb ? lm : la + lb);
            if (!c) c = (lm > la + lb) - (lm < la + lb);
            if (c == 0) { nv->result[j] = sorted[mid]; break; }
            if (c < 0) lo = mid + 1; else hi = mid;
        }
        assert_int_not_equal(nv->result[j], UINT32_MAX);
    }
    /* keys sorted, ranks found by a second search over the unsorted copy */
    memcpy(pairs, nv->keys, M * sizeof *pairs);
    qsort(nv->keys, M, sizeof *nv->keys, rtr_cmp_u64);
    for (uint32_t j = 0; j < M; j++) {
        uint64_t *k = bsearch(&pairs[j], nv->keys, M, sizeof *nv->keys, rtr_cmp_u64);
        nv->rank[k - nv->keys] = j;
    }
    free(pairs);
    free(sorted);
}

static void naive_free(naive *nv) {
    free(nv->keys);
    free(nv->rank);
    free(nv->result);
}

static uint32_t naive_rank(const naive *nv, uint32_t a, uint32_t b) {
    uint64_t key = (uint64_t)a << 32 | b;
    uint64_t *k = bsearch(&key, nv->keys, rtr_tokenizer_n_merges(nv->t), sizeof key, rtr_cmp_u64);
    return k ? nv->rank[k - nv->keys] : UINT32_MAX;
}

/* Appends the naive merge of one piece to out. */
static void naive_piece(const naive *nv, const uint8_t *p, size_t n, rtr_u32vec *out) {
    uint32_t *w = malloc((n + 1) * sizeof *w), *nw = malloc((n + 1) * sizeof *nw);
    size_t m = n;
    for (size_t i = 0; i < n; i++) w[i] = nv->byte_id[p[i]];
    while (m > 1) {
        uint32_t best = UINT32_MAX;
        for (size_t i = 0; i + 1 < m; i++) {
            uint32_t r = naive_rank(nv, w[i], w[i + 1]);
            if (r < best) best = r;
        }
        if (best == UINT32_MAX) break;
        uint32_t a, b;
        rtr_tokenizer_merge(nv->t, best, &a, &b, NULL);
        size_t k = 0;
        for (size_t i = 0; i < m;) {
            if (i + 1 < m && w[i] == a && w[i + 1] == b) {
                nw[k++] = nv->result[best];
                i += 2;
            } else {
                nw[k++] = w[i++];
            }
        }
        memcpy(w, nw, k * sizeof *w);
        m = k;
    }
    for (size_t i = 0; i < m; i++) assert_int_equal(rtr_u32vec_push(out, w[i]), RTR_OK);
    free(w);
    free(nw);
}

static void naive_encode(const naive *nv, const uint8_t *text, size_t len, rtr_u32vec *out) {
    for (size_t i = 0; i < len;) {
        size_t j = rtr_bpe_piece_end(text, len, i);
        assert_true(j > i && j <= len);
        naive_piece(nv, text + i, j - i, out);
        i = j;
    }
}

static void assert_same_ids(const rtr_u32vec *a, const rtr_u32vec *b) {
    assert_int_equal(a->len, b->len);
    for (size_t i = 0; i < a->len; i++)
        if (a->data[i] != b->data[i]) fail_msg("ids differ at %zu: %u vs %u", i, a->data[i], b->data[i]);
}

/* ---- pre-tokenizer and Unicode table ------------------------------------ */

static void test_unicode_table(void **state) {
    (void)state;
    assert_int_equal(rtr_uc_stage1[0], 0);   /* the scanner's ASCII fast path relies on it */
    for (uint32_t c = 0; c < 128; c++) {
        int want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ? RTR_UC_LETTER
                   : c >= '0' && c <= '9'                           ? RTR_UC_NUMBER
                   : c == ' ' || (c >= 9 && c <= 13)                ? RTR_UC_SPACE
                                                                    : RTR_UC_OTHER;
        assert_int_equal(rtr_uc_class(c), want);
    }
    const struct { uint32_t cp; int cls; } cases[] = {
        {0xa0, RTR_UC_SPACE},   {0xfeff, RTR_UC_SPACE},   {0x3000, RTR_UC_SPACE},  {0x2028, RTR_UC_SPACE},
        {0x1680, RTR_UC_SPACE}, {0x85, RTR_UC_OTHER},     {0x180e, RTR_UC_OTHER},  {0x1c, RTR_UC_OTHER},
        {0x200b, RTR_UC_OTHER}, {0xe9, RTR_UC_LETTER},    {0x4e2d, RTR_UC_LETTER}, {0xd55c, RTR_UC_LETTER},
        {0x301, RTR_UC_OTHER},  {0x93f, RTR_UC_OTHER},    {0x660, RTR_UC_NUMBER},  {0xbd, RTR_UC_NUMBER},
        {0x216b, RTR_UC_NUMBER}, {0xb2, RTR_UC_NUMBER},   {0x1f600, RTR_UC_OTHER}, {0x10ffff, RTR_UC_OTHER},
        {0xd800, RTR_UC_OTHER}, {0x110000, RTR_UC_OTHER}, {0x20000, RTR_UC_LETTER}, {0xaa, RTR_UC_LETTER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (rtr_uc_class(cases[i].cp) != cases[i].cls)
            fail_msg("U+%04X: class %d, want %d", cases[i].cp, rtr_uc_class(cases[i].cp), cases[i].cls);
}

/* Splits text into pieces joined by '|' for comparison. */
static void pieces_of(const char *text, size_t len, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        size_t j = rtr_bpe_piece_end((const uint8_t *)text, len, i);
        if (i) out[k++] = '|';
        memcpy(out + k, text + i, j - i);
        k += j - i;
        i = j;
    }
    out[k] = 0;
}

static void test_pieces(void **state) {
    (void)state;
    static const char *const cases[][2] = {
        {"Hello world", "Hello| world"},
        {"Hello  world", "Hello| | world"},
        {"a \n b", "a| \n| b"},
        {"a\n\nb", "a|\n|\n|b"},
        {"a\n b", "a|\n| b"},
        {"x   ", "x|   "},
        {"   x", "  | x"},
        {"it's we're they've I'm you'll he'd can't", "it|'s| we|'re| they|'ve| I|'m| you|'ll| he|'d| can|'t"},
        {"IT'S 'sam ''s", "IT|'|S| '|sam| ''|s"},
        {"abc123def 45", "abc|123|def| 45"},
        {"hi!!! ?? (x)", "hi|!!!| ??| (|x|)"},
        {"a\t\tb", "a|\t|\t|b"},                       /* a tab is not " ?" */
        {"\xc2\xa0word", "\xc2\xa0|word"},
        {"a \xc2\xa0" "b", "a| |\xc2\xa0|b"},
        {"e\xcc\x81t\xc3\xa9", "e|\xcc\x81|t\xc3\xa9"},     /* a combining mark is "other" */
        {"a\xff\xfe b", "a|\xff\xfe| b"},               /* invalid bytes are "other" */
        {" \xff", " \xff"},
        {"ab\xe4\xb8" "c", "ab|\xe4\xb8|c"},
        {"\xc0\xaf\xed\xa0\x80x", "\xc0\xaf\xed\xa0\x80|x"}, /* overlong, surrogate */
        {"\xe4\xb8\xad\xe6\x96\x87 ok", "\xe4\xb8\xad\xe6\x96\x87| ok"},
        {"<|endoftext|>", "<||endoftext||>"},
    };
    char got[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pieces_of(cases[i][0], strlen(cases[i][0]), got);
        if (strcmp(got, cases[i][1]) != 0) fail_msg("case %zu: got \"%s\", want \"%s\"", i, got, cases[i][1]);
    }
}

/* ---- round trip ---------------------------------------------------------- */

static void roundtrip_with(const rtr_tokenizer *t) {
    rtr_encoder *e;
    assert_int_equal(rtr_encoder_new(t, &e), RTR_OK);
    size_t cap = 4096;
    uint8_t *buf = malloc(cap);
    for (int iter = 0; iter < 600; iter++) {
        size_t n = random_text(buf, cap, iter % 4);
        check_roundtrip(t, e, buf, n);
    }
    check_roundtrip(t, e, (const uint8_t *)"", 0);
    /* every byte value alone and every two-byte string starting with 0xc0..0xff */
    for (int b = 0; b < 256; b++) {
        uint8_t one = (uint8_t)b;
        check_roundtrip(t, e, &one, 1);
    }
    for (int a = 0xc0; a < 256; a++)
        for (int b = 0; b < 256; b += 7) {
            uint8_t two[3] = {(uint8_t)a, (uint8_t)b, 'x'};
            check_roundtrip(t, e, two, 3);
        }
    free(buf);
    rtr_encoder_free(e);
}

static void test_roundtrip_random(void **state) {
    (void)state;
    rtr_tokenizer *t = small_tokenizer(1000);
    roundtrip_with(t);
    rtr_tokenizer_free(t);
    rtr_tokenizer *g = gpt2_or_null();
    if (g) {
        roundtrip_with(g);
        rtr_tokenizer_free(g);
    }
}

static void test_specials_not_emitted(void **state) {
    (void)state;
    rtr_tokenizer *t = small_tokenizer(600);
    uint32_t eod = rtr_tokenizer_eod(t);
    assert_int_equal(eod, 599);
    size_t l;
    const uint8_t *b = rtr_tokenizer_token(t, eod, &l);
    assert_int_equal(l, 13);
    assert_memory_equal(b, "<|endoftext|>", 13);
    rtr_u32vec ids = {0};
    encode(t, "x<|endoftext|>y", 15, &ids);
    for (size_t i = 0; i < ids.len; i++) assert_int_not_equal(ids.data[i], eod);
    /* the special decodes to its text; ids out of range are refused */
    rtr_buf out = {0};
    uint32_t seq[2] = {'a', eod};
    assert_int_equal(rtr_tokenizer_decode(t, seq, 2, &out), RTR_OK);
    assert_int_equal(out.len, 14);
    assert_memory_equal(out.data, "a<|endoftext|>", 14);
    uint32_t bad[2] = {1, 600};
    size_t before = out.len;
    assert_int_equal(rtr_tokenizer_decode(t, bad, 2, &out), RTR_E_INVALID);
    assert_int_equal(out.len, before);
    assert_non_null(strstr(rtr_errdetail(), "600"));
    assert_null(rtr_tokenizer_token(t, 600, &l));
    /* no ids into an empty buffer (found by tests/fuzz/fuzz_encode: NULL + 0 was computed) */
    rtr_buf empty = {0};
    assert_int_equal(rtr_tokenizer_decode(t, NULL, 0, &empty), RTR_OK);
    assert_int_equal(empty.len, 0);
    rtr_buf_free(&out);
    rtr_u32vec_free(&ids);
    rtr_tokenizer_free(t);
}

/* ---- optimized vs naive -------------------------------------------------- */

static void compare_naive(const rtr_tokenizer *t, int iters, size_t max_len, int modes) {
    naive nv;
    naive_init(&nv, t);
    rtr_encoder *e;
    assert_int_equal(rtr_encoder_new(t, &e), RTR_OK);
    uint8_t *buf = malloc(max_len + 16);
    rtr_u32vec got = {0}, want = {0};
    for (int it = 0; it < iters; it++) {
        int mode = modes == 1 ? 3 : (int)rndn(4);
        size_t n = random_text(buf, max_len, mode);
        got.len = want.len = 0;
        assert_int_equal(rtr_encoder_encode(e, buf, n, &got), RTR_OK);
        naive_encode(&nv, buf, n, &want);
        assert_same_ids(&got, &want);
    }
    rtr_u32vec_free(&got);
    rtr_u32vec_free(&want);
    free(buf);
    rtr_encoder_free(e);
    naive_free(&nv);
}

static void test_naive_small_vocab(void **state) {
    (void)state;
    /* a tokenizer trained on random a/b/c text merges long runs of letters */
    rtr_bpe_trainer *tr;
    assert_int_equal(rtr_bpe_trainer_new(&tr), RTR_OK);
    uint8_t *buf = malloc(200000);
    for (int d = 0; d < 20; d++) {
        size_t n = 0;
        while (n < 10000) {
            size_t w = 1 + rndn(12);
            for (size_t i = 0; i < w; i++) buf[n++] = (uint8_t)('a' + rndn(3));
            buf[n++] = ' ';
        }
        assert_int_equal(rtr_bpe_trainer_feed(tr, buf, n), RTR_OK);
    }
    rtr_tokenizer *t;
    assert_int_equal(rtr_bpe_trainer_finish(tr, 700, &t), RTR_OK);
    rtr_bpe_trainer_free(tr);
    free(buf);
    compare_naive(t, 300, 600, 4);    /* mixed texts, short path */
    compare_naive(t, 40, 5000, 1);    /* single long pieces: long path, block edges */
    rtr_tokenizer_free(t);

    t = small_tokenizer(1500);
    compare_naive(t, 200, 2000, 4);
    rtr_tokenizer_free(t);
}

static void test_naive_gpt2(void **state) {
    (void)state;
    rtr_tokenizer *g = gpt2_or_null();
    if (!g) {
        print_message("GPT-2 files not in %s/gpt2: skipped (run datasets/fetch.sh)\n", cache_dir());
        skip();
    }
    compare_naive(g, 150, 800, 4);
    compare_naive(g, 10, 3000, 1);
    /* known ids */
    rtr_u32vec ids = {0};
    encode(g, "Hello world", 11, &ids);
    assert_int_equal(ids.len, 2);
    assert_int_equal(ids.data[0], 15496);
    assert_int_equal(ids.data[1], 995);
    assert_int_equal(rtr_tokenizer_eod(g), 50256);
    assert_int_equal(rtr_tokenizer_vocab_size(g), 50257);
    assert_int_equal(rtr_tokenizer_n_merges(g), 50000);
    rtr_u32vec_free(&ids);
    rtr_tokenizer_free(g);
}

/* A long piece (a run of one class) takes the O(n log n) path. */
static void test_long_pieces(void **state) {
    (void)state;
    rtr_tokenizer *t = small_tokenizer(1000);
    size_t n = 2000000;
    uint8_t *buf = malloc(n);
    memset(buf, 'a', n);
    rtr_encoder *e;
    assert_int_equal(rtr_encoder_new(t, &e), RTR_OK);
    check_roundtrip(t, e, buf, n);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)('a' + rndn(26));
    check_roundtrip(t, e, buf, n);
    /* the same piece encodes the same in a longer text (cache, paths) */
    rtr_u32vec a = {0}, b = {0};
    assert_int_equal(rtr_encoder_encode(e, buf, 5000, &a), RTR_OK);
    assert_int_equal(rtr_encoder_encode(e, buf, 5000, &b), RTR_OK);
    assert_same_ids(&a, &b);
    rtr_u32vec_free(&a);
    rtr_u32vec_free(&b);
    free(buf);
    rtr_encoder_free(e);
    rtr_tokenizer_free(t);
}

/* More distinct pieces than the word cache holds: resets keep results right. */
static void test_cache_overflow(void **state) {
    (void)state;
    rtr_tokenizer *t = small_tokenizer(800);
    naive nv;
    naive_init(&nv, t);
    size_t cap = 900000, n = 0;
    uint8_t *buf = malloc(cap);
    while (n + 20 < cap) {
        buf[n++] = ' ';
        size_t w = 4 + rndn(10);
        for (size_t i = 0; i < w; i++) buf[n++] = (uint8_t)('a' + rndn(26));
    }
    rtr_u32vec got = {0}, want = {0};
    encode(t, buf, n, &got);
    naive_encode(&nv, buf, n, &want);
    assert_same_ids(&got, &want);
    rtr_u32vec_free(&got);
    rtr_u32vec_free(&want);
    naive_free(&nv);
    free(buf);
    rtr_tokenizer_free(t);
}

/* ---- training ------------------------------------------------------------ */

static rtr_tokenizer *train_text(const char *text, uint32_t vocab) {
    rtr_bpe_trainer *tr;
    assert_int_equal(rtr_bpe_trainer_new(&tr), RTR_OK);
    assert_int_equal(rtr_bpe_trainer_feed(tr, (const uint8_t *)text, strlen(text)), RTR_OK);
    rtr_tokenizer *t = NULL;
    assert_int_equal(rtr_bpe_trainer_finish(tr, vocab, &t), RTR_OK);
    rtr_bpe_trainer_free(tr);
    return t;
}

static void assert_merge(const rtr_tokenizer *t, uint32_t j, const char *left, const char *right, uint32_t id) {
    uint32_t a, b, c;
    assert_int_equal(rtr_tokenizer_merge(t, j, &a, &b, &c), RTR_OK);
    size_t la, lb;
    const uint8_t *pa = rtr_tokenizer_token(t, a, &la), *pb = rtr_tokenizer_token(t, b, &lb);
    if (la != strlen(left) || memcmp(pa, left, la) || lb != strlen(right) || memcmp(pb, right, lb))
        fail_msg("merge %u is \"%.*s\" + \"%.*s\", want \"%s\" + \"%s\"", j, (int)la, (const char *)pa, (int)lb,
                 (const char *)pb, left, right);
    assert_int_equal(c, id);
}

static void test_train_tiny(void **state) {
    (void)state;
    /* pieces: "ab" x1, " ab" x2, " abc" x1. Pair counts: (a,b) 4, (' ',a) 3,
     * (b,c) 1. After a+b: (' ',ab) 3, (ab,c) 1. After ' '+ab: (' ab',c) 1. */
    rtr_tokenizer *t = train_text("ab ab ab abc", 1000);
    assert_int_equal(rtr_tokenizer_n_merges(t), 3);
    assert_int_equal(rtr_tokenizer_vocab_size(t), 260);   /* ran out of pairs */
    assert_merge(t, 0, "a", "b", 256);
    assert_merge(t, 1, " ", "ab", 257);
    assert_merge(t, 2, " ab", "c", 258);
    assert_int_equal(rtr_tokenizer_eod(t), 259);
    rtr_u32vec ids = {0};
    encode(t, "ab abc abd", 10, &ids);
    assert_int_equal(ids.len, 4);
    assert_int_equal(ids.data[0], 256);
    assert_int_equal(ids.data[1], 258);
    assert_int_equal(ids.data[2], 257);
    assert_int_equal(ids.data[3], 'd');
    rtr_u32vec_free(&ids);
    rtr_tokenizer_free(t);

    /* Ties (all counts 1) go to the smaller left bytes, then right bytes:
     * (' ',z) < (' z',w)... ' ' (0x20) sorts before 'x'. */
    t = train_text("xy zw", 300);
    assert_int_equal(rtr_tokenizer_n_merges(t), 3);
    assert_merge(t, 0, " ", "z", 256);
    assert_merge(t, 1, " z", "w", 257);
    assert_merge(t, 2, "x", "y", 258);
    rtr_tokenizer_free(t);

    /* The vocab size stops training: 256 + 1 merge + EOD. */
    t = train_text("ab ab ab abc", 258);
    assert_int_equal(rtr_tokenizer_vocab_size(t), 258);
    assert_int_equal(rtr_tokenizer_n_merges(t), 1);
    rtr_tokenizer_free(t);

    /* "aaaa" x1: (a,a) merges left to right, then (aa,aa). */
    t = train_text("aaaa", 300);
    assert_int_equal(rtr_tokenizer_n_merges(t), 2);
    assert_merge(t, 0, "a", "a", 256);
    assert_merge(t, 1, "aa", "aa", 257);
    rtr_tokenizer_free(t);

    /* vocab sizes out of range */
    rtr_bpe_trainer *tr;
    assert_int_equal(rtr_bpe_trainer_new(&tr), RTR_OK);
    rtr_tokenizer *none = NULL;
    assert_int_equal(rtr_bpe_trainer_finish(tr, 256, &none), RTR_E_INVALID);
    assert_null(none);
    rtr_bpe_trainer_free(tr);
}

/* Same input, same tokenizer: order of feeding does not matter either. */
static void test_train_deterministic(void **state) {
    (void)state;
    const char *docs[] = {"the cat sat on the mat", "a cat and a hat", "that is that, isn't it?"};
    char h1[33], h2[33];
    for (int order = 0; order < 2; order++) {
        rtr_bpe_trainer *tr;
        assert_int_equal(rtr_bpe_trainer_new(&tr), RTR_OK);
        for (int i = 0; i < 3; i++) {
            const char *d = docs[order ? 2 - i : i];
            assert_int_equal(rtr_bpe_trainer_feed(tr, (const uint8_t *)d, strlen(d)), RTR_OK);
        }
        rtr_tokenizer *t;
        assert_int_equal(rtr_bpe_trainer_finish(tr, 320, &t), RTR_OK);
        rtr_tokenizer_hash(t, order ? h2 : h1);
        rtr_bpe_trainer_free(tr);
        rtr_tokenizer_free(t);
    }
    assert_string_equal(h1, h2);
}

/* ---- .rtok files --------------------------------------------------------- */

static void test_save_load(void **state) {
    (void)state;
    rtr_tokenizer *t = small_tokenizer(900), *u = NULL;
    rtr_buf a = {0}, b = {0};
    assert_int_equal(rtr_tokenizer_serialize(t, &a), RTR_OK);
    assert_int_equal(rtr_tokenizer_parse(a.data, a.len, "mem", &u), RTR_OK);
    assert_int_equal(rtr_tokenizer_serialize(u, &b), RTR_OK);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    char h1[33], h2[33], h3[33];
    rtr_tokenizer_hash(t, h1);
    rtr_tokenizer_hash(u, h2);
    assert_string_equal(h1, h2);
    assert_int_equal(strlen(h1), 32);
    /* the hash is XXH3-128 of the serialized bytes */
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(a.data, a.len));
    for (int i = 0; i < 16; i++) snprintf(h3 + 2 * i, 3, "%02x", c.digest[i]);
    assert_string_equal(h1, h3);

    char dir[] = "/tmp/test_bpe_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = rtr_path_join(dir, "t.rtok");
    rtr_tokenizer *v = NULL;
    assert_int_equal(rtr_tokenizer_save(t, path), RTR_OK);
    assert_int_equal(rtr_tokenizer_load(path, &v), RTR_OK);
    rtr_tokenizer_hash(v, h3);
    assert_string_equal(h1, h3);
    const char *text = "Let us never negotiate out of fear. But let us never fear to negotiate.";
    rtr_u32vec i1 = {0}, i2 = {0};
    encode(t, text, strlen(text), &i1);
    encode(v, text, strlen(text), &i2);
    assert_same_ids(&i1, &i2);
    assert_true(i1.len < strlen(text) / 2);
    /* a missing file names itself */
    rtr_tokenizer *w = NULL;
    assert_int_not_equal(rtr_tokenizer_load("/nonexistent/x.rtok", &w), RTR_OK);
    assert_non_null(strstr(rtr_errdetail(), "/nonexistent/x.rtok"));
    rtr_u32vec_free(&i1);
    rtr_u32vec_free(&i2);
    rtr_tokenizer_free(v);
    assert_int_equal(rtr_rmtree(dir), RTR_OK);
    rtr_free(path);
    rtr_buf_free(&a);
    rtr_buf_free(&b);
    rtr_tokenizer_free(t);
    rtr_tokenizer_free(u);
}

/* Rewrites the trailing checksum so that deeper checks are reached. */
static void reseal(uint8_t *d, size_t n) {
    uint64_t h = XXH64(d, n - 8, 0);
    for (int i = 0; i < 8; i++) d[n - 8 + i] = (uint8_t)(h >> (8 * i));
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int parse_copy(const rtr_buf *src, void (*edit)(uint8_t *, size_t, void *), void *ctx, int seal) {
    uint8_t *d = malloc(src->len);
    memcpy(d, src->data, src->len);
    edit(d, src->len, ctx);
    if (seal) reseal(d, src->len);
    rtr_tokenizer *t = (rtr_tokenizer *)(uintptr_t)1;
    int rc = rtr_tokenizer_parse(d, src->len, "bad.rtok", &t);
    if (rc) {
        assert_null(t);
        assert_non_null(strstr(rtr_errdetail(), "bad.rtok"));
        assert_null(strchr(rtr_errdetail(), '\n'));
    }
    rtr_tokenizer_free(rc ? NULL : t);
    free(d);
    return rc;
}

typedef struct edit32 { size_t off; uint32_t val; } edit32;
static void do_edit32(uint8_t *d, size_t n, void *ctx) {
    edit32 *e = ctx;
    assert_true(e->off + 4 <= n);
    put32(d + e->off, e->val);
}
static void do_flip(uint8_t *d, size_t n, void *ctx) {
    size_t off = *(size_t *)ctx;
    assert_true(off < n);
    d[off] ^= (uint8_t)(1 + rndn(255));
}

static void test_corrupt(void **state) {
    (void)state;
    rtr_tokenizer *t = small_tokenizer(400);
    rtr_buf s = {0};
    assert_int_equal(rtr_tokenizer_serialize(t, &s), RTR_OK);
    const uint32_t V = 400, M = rtr_tokenizer_n_merges(t);
    rtr_tokenizer *u = NULL;

    /* truncated at every length, and one byte too long */
    for (size_t n = 0; n < s.len; n++) {
        assert_int_equal(rtr_tokenizer_parse(s.data, n, "bad.rtok", &u), RTR_E_CORRUPT);
        assert_null(u);
        assert_non_null(strstr(rtr_errdetail(), "bad.rtok"));
    }
    uint8_t *longer = calloc(1, s.len + 1);
    memcpy(longer, s.data, s.len);
    assert_int_equal(rtr_tokenizer_parse(longer, s.len + 1, "bad.rtok", &u), RTR_E_CORRUPT);
    free(longer);

    /* any flipped byte: the checksum catches it */
    for (size_t off = 0; off < s.len; off++)
        assert_true(parse_copy(&s, do_flip, &off, 0) < 0);
    /* flipped bytes with a fixed-up checksum: refused or still valid, never a crash */
    for (int i = 0; i < 3000; i++) {
        size_t off = rndn(s.len - 8);
        int rc = parse_copy(&s, do_flip, &off, 1);
        assert_true(rc == RTR_OK || rc == RTR_E_CORRUPT || rc == RTR_E_VERSION);
    }

    size_t lens = 1056, bytes = lens + 4 * V, sum = 0;
    for (uint32_t i = 0; i < V; i++) sum += get32(s.data + lens + 4 * i);
    size_t merges = bytes + sum, specials = merges + 8 * (size_t)M;
    struct { edit32 e; int want; const char *what; } cases[] = {
        {{12, 0xffffffffu}, RTR_E_CORRUPT, "huge vocab"},
        {{12, 1u << 24}, RTR_E_CORRUPT, "vocab 2^24 (count not backed by bytes)"},
        {{12, (1u << 24) + 1}, RTR_E_CORRUPT, "vocab over 2^24"},
        {{12, 0}, RTR_E_CORRUPT, "vocab 0"},
        {{16, V}, RTR_E_CORRUPT, "merges == vocab"},
        {{16, 0xffffffffu}, RTR_E_CORRUPT, "huge merges"},
        {{20, 0}, RTR_E_CORRUPT, "no specials"},
        {{20, 17}, RTR_E_CORRUPT, "17 specials"},
        {{24, 2}, RTR_E_CORRUPT, "unknown pre-tokenizer"},
        {{28, 1}, RTR_E_CORRUPT, "reserved"},
        {{8, 2}, RTR_E_VERSION, "newer version"},
        {{8, 0}, RTR_E_CORRUPT, "version 0"},
        {{32 + 4 * 'a', V}, RTR_E_CORRUPT, "byte id out of range"},
        {{32 + 4 * 'a', get32(s.data + 32 + 4 * 'b')}, RTR_E_CORRUPT, "byte maps to another byte"},
        {{32 + 4 * 'a', V - 1}, RTR_E_CORRUPT, "byte maps to the special"},
        {{lens, 0}, RTR_E_CORRUPT, "token length 0"},
        {{lens, 257}, RTR_E_CORRUPT, "token length 257"},
        {{lens + 4 * 300, get32(s.data + lens + 4 * 300) + 1}, RTR_E_CORRUPT, "lengths do not sum to the size"},
        {{merges, V}, RTR_E_CORRUPT, "merge id out of range"},
        {{merges, V - 1}, RTR_E_CORRUPT, "merge uses the special"},
        {{merges + 4, get32(s.data + 32)}, RTR_E_CORRUPT, "merge result is not a token (x + NUL)"},
        {{specials, V}, RTR_E_CORRUPT, "special id out of range"},
        {{specials, 'q'}, RTR_E_CORRUPT, "special is the token of a byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = parse_copy(&s, do_edit32, &cases[i].e, 1);
        if (rc != cases[i].want) fail_msg("%s: got %d (%s), want %d", cases[i].what, rc, rtr_errdetail(), cases[i].want);
    }
    /* the same pair twice: copy merge 0 over merge 1 */
    {
        uint8_t *d = malloc(s.len);
        memcpy(d, s.data, s.len);
        memcpy(d + merges + 8, d + merges, 8);
        reseal(d, s.len);
        assert_int_equal(rtr_tokenizer_parse(d, s.len, "bad.rtok", &u), RTR_E_CORRUPT);
        assert_non_null(strstr(rtr_errdetail(), "already listed"));
        free(d);
    }
    /* two tokens with the same bytes: make token 300 a copy of token 'a' */
    {
        uint8_t *d = malloc(s.len);
        memcpy(d, s.data, s.len);
        /* give the second two-byte token the bytes of the first */
        size_t off = bytes;
        size_t first2 = 0, second2 = 0;
        uint32_t n2 = 0;
        for (uint32_t i = 0; i < V; i++) {
            uint32_t l = get32(d + lens + 4 * i);
            if (l == 2 && n2 < 2) {
                if (n2 == 0) first2 = off; else second2 = off;
                n2++;
            }
            off += l;
        }
        assert_int_equal(n2, 2);
        memcpy(d + second2, d + first2, 2);
        reseal(d, s.len);
        assert_int_equal(rtr_tokenizer_parse(d, s.len, "bad.rtok", &u), RTR_E_CORRUPT);
        free(d);
    }
    rtr_buf_free(&s);
    rtr_tokenizer_free(t);
}

/* A corrupt file on disk: one line naming the file. */
static void test_corrupt_file(void **state) {
    (void)state;
    char dir[] = "/tmp/test_bpe_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = rtr_path_join(dir, "broken.rtok");
    assert_int_equal(rtr_write_file_atomic(path, "RTRTOK\0\1garbage", 15), RTR_OK);
    rtr_tokenizer *t = NULL;
    assert_int_equal(rtr_tokenizer_load(path, &t), RTR_E_CORRUPT);
    assert_null(t);
    assert_non_null(strstr(rtr_errdetail(), path));
    assert_non_null(strstr(rtr_errdetail(), "truncated"));
    assert_int_equal(rtr_rmtree(dir), RTR_OK);
    rtr_free(path);
}

/* rtr_cmp_u64 (lib/sort.h), which the naive reference sorts and searches
 * with: the order holds across the whole range, where a subtraction would wrap. */
static void test_cmp_u64(void **state) {
    (void)state;
    uint64_t v[] = {UINT64_MAX, 0, (uint64_t)1 << 63, 5, ((uint64_t)1 << 63) - 1, 5};
    qsort(v, 6, sizeof *v, rtr_cmp_u64);
    uint64_t want[] = {0, 5, 5, ((uint64_t)1 << 63) - 1, (uint64_t)1 << 63, UINT64_MAX};
    assert_memory_equal(v, want, sizeof v);
    uint64_t key = (uint64_t)1 << 63;
    assert_ptr_equal(bsearch(&key, v, 6, sizeof *v, rtr_cmp_u64), &v[4]);
    key = 6;
    assert_null(bsearch(&key, v, 6, sizeof *v, rtr_cmp_u64));
}

/* ---- allocation failures --------------------------------------------------- */

static void test_alloc_failures(void **state) {
    (void)state;
    rtr_tokenizer *t = small_tokenizer(500);
    rtr_buf s = {0};
    assert_int_equal(rtr_tokenizer_serialize(t, &s), RTR_OK);

    /* parse */
    int ok = 0;
    for (long n = 1; n < 1000 && !ok; n++) {
        rtr_tokenizer *u = NULL;
        rtr_alloc_fail_at(n);
        int rc = rtr_tokenizer_parse(s.data, s.len, "mem", &u);
        rtr_alloc_fail_at(0);
        if (rc == RTR_OK) {
            ok = 1;
            rtr_tokenizer_free(u);
        } else {
            assert_int_equal(rc, RTR_E_NOMEM);
            assert_null(u);
        }
    }
    assert_true(ok);

    /* encoder_new + encode of text with short and long pieces */
    size_t n = 20000;
    uint8_t *text = malloc(n);
    for (size_t i = 0; i < n; i++) text[i] = (uint8_t)(i > 15000 ? 'a' + rndn(3) : rndn(6) ? 'a' + rndn(26) : ' ');
    rtr_u32vec want = {0};
    encode(t, text, n, &want);
    ok = 0;
    for (long k = 1; k < 1000 && !ok; k++) {
        rtr_encoder *e = NULL;
        rtr_u32vec ids = {0};
        rtr_alloc_fail_at(k);
        int rc = rtr_encoder_new(t, &e);
        if (rc == RTR_OK) {
            rc = rtr_encoder_encode(e, text, n, &ids);
            if (rc) assert_int_equal(ids.len, 0);
        }
        rtr_alloc_fail_at(0);
        if (rc == RTR_OK) {
            ok = 1;
            assert_same_ids(&ids, &want);
        } else {
            assert_int_equal(rc, RTR_E_NOMEM);
        }
        rtr_u32vec_free(&ids);
        rtr_encoder_free(e);
    }
    assert_true(ok);

    /* training */
    ok = 0;
    for (long k = 1; k < 5000 && !ok; k++) {
        rtr_bpe_trainer *tr = NULL;
        rtr_tokenizer *u = NULL;
        rtr_alloc_fail_at(k);
        int rc = rtr_bpe_trainer_new(&tr);
        if (!rc) rc = rtr_bpe_trainer_feed(tr, text, 16000);
        if (!rc) rc = rtr_bpe_trainer_finish(tr, 600, &u);
        rtr_alloc_fail_at(0);
        if (rc == RTR_OK) ok = 1;
        else assert_int_equal(rc, RTR_E_NOMEM);
        rtr_tokenizer_free(u);
        rtr_bpe_trainer_free(tr);
    }
    assert_true(ok);

    /* GPT-2 files */
    char dir[4096], probe[4200];
    snprintf(dir, sizeof dir, "%s/gpt2", cache_dir());
    snprintf(probe, sizeof probe, "%s/vocab.bpe", dir);
    if (access(probe, R_OK) == 0) {
        ok = 0;
        for (long k = 1; k < 1000 && !ok; k++) {
            rtr_tokenizer *g = NULL;
            rtr_alloc_fail_at(k);
            int rc = rtr_tokenizer_load_gpt2(dir, &g);
            rtr_alloc_fail_at(0);
            if (rc == RTR_OK) ok = 1;
            else assert_int_equal(rc, RTR_E_NOMEM);
            rtr_tokenizer_free(g);
        }
        assert_true(ok);
    }
    rtr_u32vec_free(&want);
    free(text);
    rtr_buf_free(&s);
    rtr_tokenizer_free(t);
}

/* Writes json as dir/encoder.json and checks the load fails with one line
 * naming the file and containing `what`. */
static void expect_bad_encoder(const char *dir, const char *enc, const char *json, const char *what) {
    rtr_tokenizer *t = NULL;
    assert_int_equal(rtr_write_file_atomic(enc, json, strlen(json)), RTR_OK);
    int rc = rtr_tokenizer_load_gpt2(dir, &t);
    if (rc != RTR_E_CORRUPT || !strstr(rtr_errdetail(), "encoder.json") || !strstr(rtr_errdetail(), what) ||
        strchr(rtr_errdetail(), '\n'))
        fail_msg("encoder.json %.60s...: status %d, \"%s\" (want \"%s\")", json, rc, rtr_errdetail(), what);
    assert_null(t);
}

/* GPT-2 files that are wrong in small ways: a clear error naming the file. */
static void test_gpt2_bad_files(void **state) {
    (void)state;
    char dir[] = "/tmp/test_bpe_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *enc = rtr_path_join(dir, "encoder.json"), *bpe = rtr_path_join(dir, "vocab.bpe");
    /* a tiny but valid vocabulary: the 256 byte tokens, "Ġt" and <|endoftext|> */
    rtr_buf j = {0};
    rtr_buf_printf(&j, "{");
    int n = 0;
    for (unsigned b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        uint32_t cp = printable ? b : 256 + (uint32_t)n++;
        char u[8];
        if (cp == '"' || cp == '\\') snprintf(u, sizeof u, "\\%c", (char)cp);
        else {
            uint8_t tmp[4];
            size_t l = put_utf8(tmp, cp);
            memcpy(u, tmp, l);
            u[l] = 0;
        }
        rtr_buf_printf(&j, "%s\"%s\": %u", b ? ", " : "", u, b);
    }
    rtr_buf_printf(&j, ", \"\\u0120t\": 256, \"<|endoftext|>\": 257}");
    assert_int_equal(rtr_write_file_atomic(enc, j.data, j.len), RTR_OK);
    assert_int_equal(rtr_write_file_atomic(bpe, "#version: 0.2\n\xc4\xa0 t\n", 19), RTR_OK);
    rtr_tokenizer *t = NULL;
    assert_int_equal(rtr_tokenizer_load_gpt2(dir, &t), RTR_OK);
    assert_int_equal(rtr_tokenizer_vocab_size(t), 258);
    rtr_u32vec ids = {0};
    encode(t, " t", 2, &ids);
    assert_int_equal(ids.len, 1);
    assert_int_equal(ids.data[0], 256);
    rtr_u32vec_free(&ids);
    rtr_tokenizer_free(t);

    /* a merge naming an unknown token */
    assert_int_equal(rtr_write_file_atomic(bpe, "#version: 0.2\n\xc4\xa0 tx\n", 20), RTR_OK);
    assert_int_equal(rtr_tokenizer_load_gpt2(dir, &t), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), "vocab.bpe:2"));
    /* a merge whose result is not in the vocabulary */
    assert_int_equal(rtr_write_file_atomic(bpe, "#version: 0.2\nt t\n", 18), RTR_OK);
    assert_int_equal(rtr_tokenizer_load_gpt2(dir, &t), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), "vocab.bpe"));
    /* broken JSON */
    assert_int_equal(rtr_write_file_atomic(enc, "{\"a\": 0,", 8), RTR_OK);
    assert_int_equal(rtr_tokenizer_load_gpt2(dir, &t), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), "encoder.json"));
    /* encoder.json wrong in each way the loader checks (the valid text, edited) */
    rtr_buf_terminate(&j);
    const char *good_end = ", \"<|endoftext|>\": 257}";
    char *end = strstr((char *)j.data, good_end);
    assert_non_null(end);
    size_t head = (size_t)(end - (char *)j.data);
    static const struct { const char *tail, *what; } bad[] = {
        {", \"<|endoftext|>\": 258}", "token ids are not 0..257, each once (id 258)"},
        {", \"<|endoftext|>\": 0}", "each once (id 0)"},
        {", \"<|endoftext|>\": 16777216}", "expected a token id"},
        {", \"<|endoftext|>\": -1}", "expected a token id"},
        {", \"<|endoftext|>\": 257.0}", "expected a token id"},
        {", \"<|endoftext|>\": \"257\"}", "expected a token id"},
        {", \"a\": 257}", "duplicate"},
        {", \"\\u00ad\": 257}", "is not a GPT-2 byte string"},
        {", \"\\u0120a\": 257}", "no <|endoftext|> token"},
        {", \"<|endoftext|>\": 257} {}", "bad JSON"},
        {", \"<|endoftext|>\": 257", "bad JSON"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        rtr_buf e = {0};
        rtr_buf_printf(&e, "%.*s%s", (int)head, (const char *)j.data, bad[k].tail);
        expect_bad_encoder(dir, enc, (const char *)e.data, bad[k].what);
        rtr_buf_free(&e);
    }
    expect_bad_encoder(dir, enc, "[0, 1]", "expected an object");
    expect_bad_encoder(dir, enc, "{}", "no <|endoftext|> token");
    rtr_buf tl = {0};   /* a token string longer than any token */
    rtr_buf_printf(&tl, "{\"");
    for (int k = 0; k < 600; k++) rtr_buf_putc(&tl, 'a');
    rtr_buf_printf(&tl, "\": 0}");
    expect_bad_encoder(dir, enc, (const char *)tl.data, "longer than 256 bytes");
    rtr_buf_free(&tl);
    /* missing files */
    assert_int_equal(rtr_rmtree(dir), RTR_OK);
    assert_int_not_equal(rtr_tokenizer_load_gpt2(dir, &t), RTR_OK);
    assert_non_null(strstr(rtr_errdetail(), "encoder.json"));
    assert_null(t);
    rtr_buf_free(&j);
    rtr_free(enc);
    rtr_free(bpe);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unicode_table),
        cmocka_unit_test(test_pieces),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_specials_not_emitted),
        cmocka_unit_test(test_naive_small_vocab),
        cmocka_unit_test(test_naive_gpt2),
        cmocka_unit_test(test_long_pieces),
        cmocka_unit_test(test_cache_overflow),
        cmocka_unit_test(test_train_tiny),
        cmocka_unit_test(test_train_deterministic),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_corrupt_file),
        cmocka_unit_test(test_cmp_u64),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_gpt2_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
