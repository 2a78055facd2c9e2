/* lexical.c - BM25 over the chunks' words, kept in the store's auxiliary tables (see lexical.h). */
#include "index/lexical.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/progress.h"
#include "lib/status.h"

#define BATCH_CHUNKS 8192
#define NORM_PAGE 4096
#define K1 1.2
#define B 0.75

/* --- words ------------------------------------------------------------------------ */
/* The code point of the UTF-8 sequence at s (n > 0 bytes left) and its length; 0 if it is not one. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char c = s[0];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || len > n) return 0;
    uint32_t v = len == 1 ? c : c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

/* Word characters: ASCII letters, digits and '_', and the letters and digits of other scripts. The blocks
 * of punctuation, symbols and spaces are not: a pilcrow, a typographic quote or a guillemet after a word
 * (Sphinx puts a pilcrow after every heading) splits it off as ASCII punctuation does. */
static int word_cp(uint32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (c <= 0xBF) return c == 0xAA || c == 0xB5 || c == 0xBA;   /* Latin-1 punctuation and symbols; ª µ º */
    if (c == 0xD7 || c == 0xF7) return 0;                          /* × ÷ */
    if (c >= 0x2000 && c <= 0x2BFF) return 0;   /* punctuation, currency, letterlike, arrows, maths, shapes */
    if ((c >= 0x2E00 && c <= 0x2E7F) || (c >= 0x3000 && c <= 0x303F) || (c >= 0xFE10 && c <= 0xFE6F)) return 0;
    if ((c >= 0xFF00 && c <= 0xFF0F) || (c >= 0xFF1A && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF40) ||
        (c >= 0xFF5B && c <= 0xFF65) || c == 0xFEFF)
        return 0;                               /* fullwidth punctuation; the byte-order mark */
    if (c >= 0x1F000 && c <= 0x1FAFF) return 0; /* emoji and pictographs */
    return 1;
}

/* Spaces: what ends a run of words joined by punctuation (a compound). */
static int space_cp(uint32_t c) {
    return c <= 0x20 || c == 0x7F || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200B) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

void rtr_lex_words(const char *text, size_t len, rtr_lex_word_fn fn, void *ctx) {
    const unsigned char *t = (const unsigned char *)text;
    char w[RTR_LEX_MAX_WORD], cpd[RTR_LEX_MAX_WORD];
    size_t n = 0, cn = 0, parts = 0;
    int in = 0, fits = 1;
    for (size_t i = 0; i <= len;) {
        uint32_t cp = ' ';
        size_t l = i < len ? utf8_next(t + i, len - i, &cp) : 1;
        if (!l) {   /* not UTF-8: a separator */
            cp = ' ';
            l = 1;
        }
        if (i < len && word_cp(cp)) {
            if (!in) n = 0;
            in = 1;
            if (n + l <= sizeof w) {   /* whole characters only; a longer word is cut */
                for (size_t k = 0; k < l; k++) w[n + k] = (char)(cp < 0x80 && cp >= 'A' && cp <= 'Z' ? cp + 32 : t[i + k]);
                n += l;
            }
        } else {
            if (in) {
                fn(ctx, w, n);
                in = 0;
                /* the compound of this run: its words joined by single spaces */
                if (parts && cn < sizeof cpd) cpd[cn++] = ' ';
                if (cn + n <= sizeof cpd) memcpy(cpd + cn, w, n);
                else fits = 0;
                cn += n;
                parts++;
            }
            if (i >= len || space_cp(cp)) {   /* "os.path", "2.3", "what's": their words, then the run as one term */
                if (parts >= 2 && fits) fn(ctx, cpd, cn);
                cn = parts = 0;
                fits = 1;
            }
        }
        i += l;
    }
}

uint64_t rtr_lex_term(const char *word, size_t len) { return XXH3_64bits(word, len); }

/* --- records ------------------------------------------------------------------------ */
static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
static uint64_t get_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}
static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++, v >>= 8) p[i] = (uint8_t)v;
}
static uint64_t get_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

typedef struct term_rec {
    uint64_t df, first, last;   /* postings; the first and last chunk of the last block */
    uint32_t count;             /* postings in the last block */
    uint8_t max_tf, min_len;    /* over all the term's postings */
} term_rec;
#define TERM_REC 30

static int get_term(rtr_store_txn *t, uint64_t term, term_rec *r) {
    uint8_t k[8];
    put_be64(k, term);
    const void *v;
    size_t n;
    int rc = rtr_store_aux_get(t, RTR_AUX_LEX_TERMS, k, 8, &v, &n);
    if (rc) return rc;
    if (n != TERM_REC) return rtr_seterr(RTR_E_CORRUPT, "lexical index: a term record of %zu bytes", n);
    const uint8_t *p = v;
    *r = (term_rec){get_le64(p), get_le64(p + 8), get_le64(p + 16),
                    (uint32_t)p[24] | (uint32_t)p[25] << 8 | (uint32_t)p[26] << 16 | (uint32_t)p[27] << 24, p[28], p[29]};
    if (r->count == 0 || r->count > RTR_LEX_BLOCK || r->last < r->first || r->df < r->count || !r->max_tf || !r->min_len)
        return rtr_seterr(RTR_E_CORRUPT, "lexical index: a term record out of bounds");
    return RTR_OK;
}

static int put_term(rtr_store_txn *t, uint64_t term, const term_rec *r) {
    uint8_t k[8], v[TERM_REC];
    put_be64(k, term);
    put_le64(v, r->df);
    put_le64(v + 8, r->first);
    put_le64(v + 16, r->last);
    for (int i = 0; i < 4; i++) v[24 + i] = (uint8_t)(r->count >> (8 * i));
    v[28] = r->max_tf;
    v[29] = r->min_len;
    return rtr_store_aux_put(t, RTR_AUX_LEX_TERMS, k, 8, v, TERM_REC);
}

int rtr_lex_state_get(rtr_store_txn *t, rtr_lex_state *out) {
    memset(out, 0, sizeof *out);
    const void *v;
    size_t n;
    int rc = rtr_store_aux_get(t, RTR_AUX_LEX_META, "state", 5, &v, &n);
    if (rc) return rc;
    if (n != 24 && n != 32) return rtr_seterr(RTR_E_CORRUPT, "lexical index: a state record of %zu bytes", n);
    *out = (rtr_lex_state){get_le64(v), get_le64((const uint8_t *)v + 8), get_le64((const uint8_t *)v + 16),
                           n == 32 ? get_le64((const uint8_t *)v + 24) : 0};
    if (out->chunks > out->indexed_upto || out->words > 255 * out->chunks)
        return rtr_seterr(RTR_E_CORRUPT, "lexical index: its state is out of bounds");
    return RTR_OK;
}

static int put_state(rtr_store_txn *t, const rtr_lex_state *s) {
    uint8_t v[32];
    put_le64(v, s->indexed_upto);
    put_le64(v + 8, s->chunks);
    put_le64(v + 16, s->words);
    put_le64(v + 24, RTR_LEX_VERSION);
    return rtr_store_aux_put(t, RTR_AUX_LEX_META, "state", 5, v, 32);
}

static size_t put_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    do {
        p[n++] = (uint8_t)((v & 127) | (v >= 128 ? 128 : 0));
        v >>= 7;
    } while (v);
    return n;
}

/* The varint at p (< end) into *v; bytes read, 0 if malformed. */
static size_t get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (size_t i = 0; i < 10 && p + i < end; i++) {
        x |= (uint64_t)(p[i] & 127) << (7 * i);
        if (!(p[i] & 128)) {
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

long rtr_lex_block_head(const uint8_t *p, size_t n, uint64_t last, uint64_t upto, rtr_lex_block *hd) {
    uint64_t span;
    size_t e = get_varint(p, p + n, &span);
    if (!e || e + 2 > n || last > upto || span > last || p[e] == 0 || p[e + 1] == 0) return -1;
    *hd = (rtr_lex_block){last - span, last, p[e], p[e + 1]};
    return (long)(e + 2);
}

/* The block's postings into id[] and tf[] (RTR_LEX_BLOCK each): their number, or -1 (see rtr_lex_block_decode). */
static long block_postings(const uint8_t *p, size_t n, uint64_t last, uint64_t upto, uint64_t *id, uint8_t *tf,
                           rtr_lex_block *hd) {
    long off = rtr_lex_block_head(p, n, last, upto, hd);
    if (off < 0) return -1;
    const uint8_t *q = p + off, *end = p + n;
    uint64_t at = hd->first;
    long count = 0;
    uint8_t top = 0;
    while (q < end) {
        uint64_t gap = *q & 127;
        size_t e = 1;
        if (*q & 128 && !(e = get_varint(q, end, &gap))) return -1;
        /* a gap, then a count: the first gap 0 (the block's first chunk), the others > 0, none past last */
        if (q + e >= end || (count == 0) != (gap == 0) || gap > last - at || q[e] == 0 || count == RTR_LEX_BLOCK)
            return -1;
        at += gap;
        if (q[e] > top) top = q[e];
        id[count] = at;
        tf[count++] = q[e];
        q += e + 1;
    }
    if (count == 0 || at != last || top != hd->max_tf) return -1;
    return count;
}

long rtr_lex_block_decode(const uint8_t *p, size_t n, uint64_t last, uint64_t upto, rtr_lex_posting_fn fn, void *ctx,
                          rtr_lex_block *out) {
    uint64_t id[RTR_LEX_BLOCK];
    uint8_t tf[RTR_LEX_BLOCK];
    rtr_lex_block hd;
    long count = block_postings(p, n, last, upto, id, tf, &hd);
    for (long i = 0; i < count && fn; i++)
        if (fn(ctx, id[i], tf[i])) return -2;
    if (count >= 0 && out) *out = hd;
    return count;
}

/* --- building ------------------------------------------------------------------------ */
typedef struct posting {
    uint64_t term, chunk;
    uint8_t tf, len;       /* the word's count in the chunk, the chunk's length */
} posting;

typedef struct chunk_len {
    uint64_t id;
    uint8_t len;           /* words, at most 255 */
} chunk_len;

typedef struct batch {
    posting *p;
    size_t n, cap;
    chunk_len *chunk;      /* the batch's chunks, ascending */
    size_t nc, capc;
    uint64_t last;         /* the last chunk id read */
    uint64_t words;
} batch;

typedef struct chunk_words {
    uint64_t *terms;
    size_t n, cap;
    int rc;
} chunk_words;

static void collect(void *ctx, const char *w, size_t len) {
    chunk_words *c = ctx;
    if (c->rc || (c->rc = RTR_GROW(c->terms, &c->cap, c->n + 1))) return;
    c->terms[c->n++] = rtr_lex_term(w, len);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_posting(const void *a, const void *b) {
    const posting *x = a, *y = b;
    if (x->term != y->term) return x->term < y->term ? -1 : 1;
    return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

/* Adds one chunk's postings (its words' terms, counted) to b. */
static int add_chunk(batch *b, chunk_words *cw, uint64_t id, const char *text, size_t len) {
    cw->n = 0;
    cw->rc = RTR_OK;
    rtr_lex_words(text, len, collect, cw);
    if (cw->rc) return cw->rc;
    int rc = RTR_GROW(b->chunk, &b->capc, b->nc + 1);
    if (rc) return rc;
    uint8_t dl = (uint8_t)(cw->n > 255 ? 255 : cw->n);
    b->chunk[b->nc++] = (chunk_len){id, dl};
    b->words += dl;
    if (cw->n) qsort(cw->terms, cw->n, sizeof *cw->terms, cmp_u64);
    for (size_t i = 0; i < cw->n;) {
        size_t j = i;
        while (j < cw->n && cw->terms[j] == cw->terms[i]) j++;
        if ((rc = RTR_GROW(b->p, &b->cap, b->n + 1))) return rc;
        b->p[b->n++] = (posting){cw->terms[i], id, (uint8_t)(j - i > 255 ? 255 : j - i), dl};
        i = j;
    }
    return RTR_OK;
}

/* A block being written: room for its header before the postings. */
#define HEAD_ROOM 12
typedef struct block_out {
    rtr_buf b;              /* HEAD_ROOM bytes, then the postings */
    uint8_t max_tf, min_len;
} block_out;

/* Stores the block of term's postings first..last. */
static int put_block(rtr_store_txn *t, uint8_t key[16], block_out *o, uint64_t first, uint64_t last) {
    uint8_t head[HEAD_ROOM];
    size_t h = put_varint(head, last - first);
    head[h++] = o->max_tf;
    head[h++] = o->min_len;
    memcpy(o->b.data + HEAD_ROOM - h, head, h);
    put_be64(key + 8, last);
    return rtr_store_aux_put(t, RTR_AUX_LEX_POSTINGS, key, 16, o->b.data + HEAD_ROOM - h, o->b.len - HEAD_ROOM + h);
}

static int block_reset(block_out *o) {
    o->b.len = 0;
    o->max_tf = 0;
    o->min_len = 255;
    static const uint8_t room[HEAD_ROOM];
    return rtr_buf_append(&o->b, room, HEAD_ROOM);
}

/* One term's postings (p[0..n), ascending chunks) appended to its blocks. */
static int write_term(rtr_store_txn *t, const posting *p, size_t n, block_out *o) {
    term_rec tr;
    int rc = get_term(t, p[0].term, &tr);
    int have = rc == RTR_OK;
    if (rc && rc != RTR_E_NOTFOUND) return rc;
    uint8_t key[16];
    put_be64(key, p[0].term);
    if ((rc = block_reset(o))) return rc;
    if (have && tr.count < RTR_LEX_BLOCK) {   /* the last block has room: go on from it, under a new key */
        put_be64(key + 8, tr.last);
        const void *v;
        size_t vn;
        rtr_lex_block hd;
        if ((rc = rtr_store_aux_get(t, RTR_AUX_LEX_POSTINGS, key, 16, &v, &vn)))
            return rc == RTR_E_NOTFOUND ? rtr_seterr(RTR_E_CORRUPT, "lexical index: a term's last block is missing") : rc;
        long off = rtr_lex_block_head(v, vn, tr.last, UINT64_MAX, &hd);
        if (off < 0 || hd.first != tr.first) return rtr_seterr(RTR_E_CORRUPT, "lexical index: a malformed block of postings");
        o->max_tf = hd.max_tf;
        o->min_len = hd.min_len;
        if ((rc = rtr_buf_append(&o->b, (const uint8_t *)v + off, vn - (size_t)off))) return rc;
        if ((rc = rtr_store_aux_del(t, RTR_AUX_LEX_POSTINGS, key, 16))) return rc;
    } else if (have) {
        tr.count = 0;   /* full: the next block starts with p[0] */
        tr.first = tr.last = p[0].chunk;
    } else {
        tr = (term_rec){0, p[0].chunk, p[0].chunk, 0, 0, 255};
    }
    for (size_t i = 0; i < n; i++) {
        if (tr.count == RTR_LEX_BLOCK) {   /* full: store it, start the next */
            if ((rc = put_block(t, key, o, tr.first, tr.last)) || (rc = block_reset(o))) return rc;
            tr.first = tr.last = p[i].chunk;
            tr.count = 0;
        }
        uint8_t enc[11];
        size_t e = put_varint(enc, tr.count ? p[i].chunk - tr.last : 0);
        enc[e++] = p[i].tf;
        if ((rc = rtr_buf_append(&o->b, enc, e))) return rc;
        if (p[i].tf > o->max_tf) o->max_tf = p[i].tf;
        if (p[i].len < o->min_len) o->min_len = p[i].len;
        if (p[i].tf > tr.max_tf) tr.max_tf = p[i].tf;
        if (p[i].len < tr.min_len) tr.min_len = p[i].len;
        tr.last = p[i].chunk;
        tr.count++;
        tr.df++;
    }
    if ((rc = put_block(t, key, o, tr.first, tr.last))) return rc;
    return put_term(t, p[0].term, &tr);
}

/* The store write of one batch (re-runnable: everything it changes it reads from t first). */
static int write_batch(rtr_store_txn *t, void *ctx) {
    batch *b = ctx;
    rtr_lex_state st;
    int rc = rtr_lex_state_get(t, &st);
    if (rc == RTR_E_NOTFOUND) rc = RTR_OK;
    if (rc) return rc;
    block_out blk = {0};
    for (size_t i = 0; i < b->n && !rc;) {
        size_t j = i;
        while (j < b->n && b->p[j].term == b->p[i].term) j++;
        rc = write_term(t, b->p + i, j - i, &blk);
        i = j;
    }
    rtr_buf_free(&blk.b);
    uint8_t page[NORM_PAGE];
    for (size_t i = 0; i < b->nc && !rc;) {   /* the lengths, a page at a time */
        uint64_t pg = b->chunk[i].id / NORM_PAGE;
        uint8_t key[8];
        put_be64(key, pg);
        const void *v;
        size_t vn;
        rc = rtr_store_aux_get(t, RTR_AUX_LEX_NORMS, key, 8, &v, &vn);
        if (rc == RTR_OK && vn != NORM_PAGE) rc = rtr_seterr(RTR_E_CORRUPT, "lexical index: a length page of %zu bytes", vn);
        if (rc == RTR_OK) memcpy(page, v, NORM_PAGE);
        else if (rc == RTR_E_NOTFOUND) {
            memset(page, 0, NORM_PAGE);
            rc = RTR_OK;
        }
        for (; !rc && i < b->nc && b->chunk[i].id / NORM_PAGE == pg; i++) page[b->chunk[i].id % NORM_PAGE] = b->chunk[i].len;
        if (!rc) rc = rtr_store_aux_put(t, RTR_AUX_LEX_NORMS, key, 8, page, NORM_PAGE);
    }
    st.indexed_upto = b->last;
    st.chunks += b->nc;
    st.words += b->words;
    if (!rc) rc = put_state(t, &st);
    return rc;
}

int rtr_lex_build(rtr_kb *kb, int progress, rtr_lex_report *rep) {
    memset(rep, 0, sizeof *rep);
    double t0 = rtr_now();
    rtr_store *s = rtr_kb_store(kb);
    const rtr_tokenizer *tok = rtr_kb_tokenizer(kb);
    batch b = {0};
    chunk_words cw = {0};
    rtr_buf text = {0};
    rtr_store_txn *t = NULL;
    int rc = rtr_store_read_begin(s, &t);
    rtr_lex_state st;
    rtr_store_stats ss;
    int had = 0;
    if (!rc && !(rc = rtr_lex_state_get(t, &st))) had = 1;
    if (rc == RTR_E_NOTFOUND) rc = RTR_OK;
    if (!rc) rc = rtr_store_get_stats(t, &ss);
    rtr_store_txn_end(t);
    if (rc) return rc;
    if (had && st.version != RTR_LEX_VERSION) {   /* made with other words: from scratch */
        if ((rc = rtr_lex_clear(kb))) return rc;
        memset(&st, 0, sizeof st);
    }
    uint64_t after = st.indexed_upto, last = ss.next_chunk_id - 1;
    rtr_progress prog;
    rtr_progress_init(&prog, "lexical", last > after ? last - after : 0, " chunks", progress);
    uint64_t start = after;
    while (!rc && after < last) {
        b.n = b.nc = 0;
        b.words = 0;
        if ((rc = rtr_store_read_begin(s, &t))) break;
        rtr_chunk c;
        while (b.nc < BATCH_CHUNKS && (rc = rtr_store_next_chunk(t, after, &c)) == RTR_OK && c.id <= last) {
            text.len = 0;
            if ((rc = rtr_tokenizer_decode(tok, c.tokens, c.n_tokens, &text))) break;
            if ((rc = add_chunk(&b, &cw, c.id, (const char *)text.data, text.len))) break;
            after = c.id;
        }
        rtr_store_txn_end(t);
        if (rc == RTR_E_NOTFOUND || (rc == RTR_OK && b.nc < BATCH_CHUNKS)) {   /* the end of the chunks */
            rc = RTR_OK;
            after = last;
        }
        if (rc) break;
        b.last = after;
        if (b.n) qsort(b.p, b.n, sizeof *b.p, cmp_posting);
        if ((rc = rtr_store_write(s, write_batch, &b))) break;
        rep->indexed += b.nc;
        rtr_progress_update(&prog, after - start, NULL);
    }
    rtr_progress_finish(&prog);
    rtr_free(b.p);
    rtr_free(b.chunk);
    rtr_free(cw.terms);
    rtr_buf_free(&text);
    if (!rc && !(rc = rtr_store_read_begin(s, &t))) {
        if (!(rc = rtr_lex_state_get(t, &st))) rep->chunks = st.chunks;
        if (rc == RTR_E_NOTFOUND) rc = RTR_OK;
        rtr_store_txn_end(t);
    }
    rep->seconds = rtr_now() - t0;
    return rc;
}

static int clear_fn(rtr_store_txn *t, void *ctx) {
    (void)ctx;
    int rc = RTR_OK;
    for (int i = RTR_AUX_LEX_META; i <= RTR_AUX_LEX_NORMS && !rc; i++) rc = rtr_store_aux_clear(t, i);
    return rc;
}

int rtr_lex_clear(rtr_kb *kb) { return rtr_store_write(rtr_kb_store(kb), clear_fn, NULL); }

/* --- searching -------------------------------------------------------------------------- */
typedef struct query_words {
    uint64_t *terms;
    size_t n, cap;
    int rc;
} query_words;

static void collect_q(void *ctx, const char *w, size_t len) {
    query_words *q = ctx;
    if (q->rc || (q->rc = RTR_GROW(q->terms, &q->cap, q->n + 1))) return;
    q->terms[q->n++] = rtr_lex_term(w, len);
}

/* The chunk lengths, a page at a time (pages stay valid until the txn ends). */
typedef struct norms {
    rtr_store_txn *t;
    uint64_t page;
    const uint8_t *p;
} norms;

static int norm_of(norms *nm, uint64_t id, uint8_t *len) {
    if (!nm->p || id / NORM_PAGE != nm->page) {
        uint8_t key[8];
        put_be64(key, id / NORM_PAGE);
        const void *v;
        size_t vn;
        int rc = rtr_store_aux_get(nm->t, RTR_AUX_LEX_NORMS, key, 8, &v, &vn);
        if (rc == RTR_E_NOTFOUND) return rtr_seterr(RTR_E_CORRUPT, "lexical index: no lengths for chunk %llu", (unsigned long long)id);
        if (rc) return rc;
        if (vn != NORM_PAGE) return rtr_seterr(RTR_E_CORRUPT, "lexical index: a length page of %zu bytes", vn);
        nm->page = id / NORM_PAGE;
        nm->p = v;
    }
    *len = nm->p[id % NORM_PAGE];
    if (*len == 0) return rtr_seterr(RTR_E_CORRUPT, "lexical index: no length for chunk %llu", (unsigned long long)id);
    return RTR_OK;
}

/* One query term's postings, a block at a time. A cursor is on one block:
 * shallow (its header read: every posting of it lies in first..last) or
 * decoded (at posting pos). done: past the term's last block. */
typedef struct lcur {
    double w;                  /* qtf x idf */
    double ub;                 /* its weight's bound in any chunk */
    size_t order;              /* among the query's distinct terms, in term order */
    uint64_t df;
    int forced;                /* essential whatever the bounds (RTR_LEX_RARE): sorted after the others */
    uint8_t key[16];
    rtr_aux_cursor *cur;
    rtr_lex_block blk;
    double bub;                /* the weight's bound in the block */
    const uint8_t *raw;
    size_t raw_n;
    int decoded, done;
    uint64_t doc;              /* the chunk it is on; shallow, the block's first; done, UINT64_MAX */
    uint32_t n, pos;
    uint64_t id[RTR_LEX_BLOCK];
    uint8_t tf[RTR_LEX_BLOCK];
} lcur;

typedef struct lsearch {
    const rtr_lex_state *st;
    double avg;
    norms nm;
} lsearch;

/* A term's weight in a chunk: the BM25 term (k1 = 1.2, b = 0.75), as a float: every score is summed from these. */
static float weight(const lsearch *ls, double w, uint32_t tf, uint32_t dl) {
    return (float)(w * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / ls->avg)));
}

static int take_block(lcur *c, const lsearch *ls, int rc, const void *k, size_t kn, const void *v, size_t vn) {
    c->decoded = 0;
    if (rc == RTR_E_NOTFOUND || (!rc && (kn != 16 || memcmp(k, c->key, 8)))) {   /* past the term's blocks */
        c->done = 1;
        c->doc = UINT64_MAX;
        return RTR_OK;
    }
    if (rc) return rc;
    c->raw = v;
    c->raw_n = vn;
    if (rtr_lex_block_head(v, vn, get_be64((const uint8_t *)k + 8), ls->st->indexed_upto, &c->blk) < 0)
        return rtr_seterr(RTR_E_CORRUPT, "lexical index: a malformed block of postings");
    c->bub = weight(ls, c->w, c->blk.max_tf, c->blk.min_len);
    c->doc = c->blk.first;
    return RTR_OK;
}

/* Onto the block that may hold chunk id (the first whose last is >= id), shallow. */
static int cur_block_at(lcur *c, const lsearch *ls, uint64_t id) {
    const void *k, *v;
    size_t kn, vn;
    put_be64(c->key + 8, id);
    int rc = rtr_store_aux_cursor_seek(c->cur, c->key, 16, &k, &kn, &v, &vn);
    return take_block(c, ls, rc, k, kn, v, vn);
}

static int cur_block_next(lcur *c, const lsearch *ls) {
    const void *k = NULL, *v = NULL;
    size_t kn = 0, vn = 0;
    int rc = rtr_store_aux_cursor_next(c->cur, &k, &kn, &v, &vn);
    return take_block(c, ls, rc, k, kn, v, vn);
}

static int cur_decode(lcur *c, const lsearch *ls) {
    c->pos = 0;
    rtr_lex_block hd;
    long n = block_postings(c->raw, c->raw_n, c->blk.last, ls->st->indexed_upto, c->id, c->tf, &hd);
    if (n < 0) return rtr_seterr(RTR_E_CORRUPT, "lexical index: a malformed block of postings");
    c->n = (uint32_t)n;
    c->decoded = 1;
    c->doc = c->id[0];
    return RTR_OK;
}

/* Onto its first posting at or after chunk id, decoded. */
static int cur_seek(lcur *c, const lsearch *ls, uint64_t id) {
    int rc;
    if (c->done) return RTR_OK;
    if (id > c->blk.last && ((rc = cur_block_at(c, ls, id)) || c->done)) return rc;
    if (!c->decoded && (rc = cur_decode(c, ls))) return rc;
    while (c->id[c->pos] < id) c->pos++;   /* ends: the block's last is >= id */
    c->doc = c->id[c->pos];
    return RTR_OK;
}

/* Min-heap of hits by score (then chunk id, higher first out). */
static int worse(const rtr_lex_hit *a, const rtr_lex_hit *b) {
    return a->score < b->score || (a->score == b->score && a->chunk_id > b->chunk_id);
}

static void sift_down(rtr_lex_hit *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(&h[l], &h[m])) m = l;
        if (r < n && worse(&h[r], &h[m])) m = r;
        if (m == i) return;
        rtr_lex_hit x = h[i];
        h[i] = h[m];
        h[m] = x;
        i = m;
    }
}

static int cmp_hit_desc(const void *a, const void *b) {
    const rtr_lex_hit *x = a, *y = b;
    return worse(x, y) ? 1 : worse(y, x) ? -1 : 0;
}

static int cmp_cur_ub(const void *a, const void *b) {
    const lcur *x = *(lcur *const *)a, *y = *(lcur *const *)b;
    if (x->forced != y->forced) return x->forced - y->forced;
    if (x->ub != y->ub) return x->ub < y->ub ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Offers a chunk to the heap h of m (< depth: room) best; *theta: the least score once it is full. */
static void offer(rtr_lex_hit *h, size_t *m, uint32_t depth, rtr_lex_hit x, double *theta) {
    if (*m < depth) {
        h[(*m)++] = x;
        if (*m == depth)
            for (size_t k = *m / 2; k-- > 0;) sift_down(h, *m, k);
    } else if (worse(&h[0], &x)) {
        h[0] = x;
        sift_down(h, *m, 0);
    }
    if (*m == depth) *theta = h[0].score;
}

/* A query term: its weight, its bound in any chunk and its document frequency. */
typedef struct qterm {
    uint64_t term, df;
    double w, ub;
    size_t order;
} qterm;

struct rtr_lex_query {
    rtr_store_txn *t;
    rtr_lex_state st;
    lsearch ls;
    qterm *q;     /* the distinct words that the index holds, in term order */
    size_t n;
    lcur *cs;     /* n cursors and pointers to them, reopened by each call */
    lcur **c;
    /* scoring a chunk from its own text (lexical.h, rtr_lex_query_texts): */
    const rtr_tokenizer *tok;   /* the store's chunks read and decoded with it; NULL: not asked for */
    uint32_t *tf, words;        /* each term's count in the chunk (n), the chunk's words */
    rtr_buf text;
};

static void count_term(void *ctx, const char *w, size_t len) {
    rtr_lex_query *lq = ctx;
    lq->words++;
    uint64_t term = rtr_lex_term(w, len);
    size_t lo = 0, hi = lq->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (lq->q[mid].term < term) lo = mid + 1;
        else hi = mid;
    }
    if (lo < lq->n && lq->q[lo].term == term) lq->tf[lo]++;
}

/* The BM25 score of a chunk whose text is text, as the postings give it: its length is its words (at
 * most 255), each query term's count in it (at most 255) weighted as the postings' are, summed in the
 * terms' order in double. */
static double text_score(rtr_lex_query *lq, const char *text, size_t len) {
    memset(lq->tf, 0, lq->n * sizeof *lq->tf);
    lq->words = 0;
    rtr_lex_words(text, len, count_term, lq);
    uint32_t dl = lq->words > 255 ? 255 : lq->words;
    double s = 0;
    for (size_t i = 0; i < lq->n && dl; i++)
        if (lq->tf[i]) s += weight(&lq->ls, lq->q[i].w, lq->tf[i] > 255 ? 255 : lq->tf[i], dl);
    return s;
}

/* Chunk id's score from its text in the store; *live = 0 (and no score) if it was deleted. */
static int chunk_score(rtr_lex_query *lq, uint64_t id, double *s, int *live) {
    rtr_chunk c;
    int rc = rtr_store_get_chunk(lq->t, id, &c);
    *live = rc == RTR_OK;
    if (rc == RTR_E_NOTFOUND) return RTR_OK;
    lq->text.len = 0;
    if (!rc) rc = rtr_tokenizer_decode(lq->tok, c.tokens, c.n_tokens, &lq->text);
    if (!rc) *s = text_score(lq, (const char *)lq->text.data, lq->text.len);
    return rc;
}

/* The top depth chunks: MaxScore (Turtle and Flood, 1995) over windows of NORM_PAGE chunks, as
 * Lucene's bulk scorer does it. The cursors are sorted by bound; once the heap is full, the terms
 * 0..ne-1, whose bounds together cannot lift a chunk to the heap's least score, are non-essential:
 * within a window, the essential terms' postings are summed straight into an array, and each chunk
 * they found is then looked up in the non-essential terms, strongest first, until what it has plus
 * the bounds of what is left (a block's bound once its block is known) cannot enter. A window no
 * essential term reaches is never read. Scores are sums of float weights in double (exact for the
 * weights' range, whatever the order), rounded to float. ne0 > 0: the cursors not forced (sorted
 * first, by bound) are non-essential from the start whatever the heap holds, so that only chunks
 * holding a forced term are found, each scored with every term (RTR_LEX_RARE); the bounds stay true
 * bounds of the terms before each, whatever the order. fw (may be NULL): a chunk found whose score
 * the non-essential terms might still lift into the heap is scored from its own text, not from their
 * postings (a deleted chunk is then dropped). */
static int ranked(lsearch *ls, lcur **c, size_t nc, uint32_t depth, size_t ne0, rtr_lex_query *fw, rtr_lex_hit *h,
                  size_t *nh) {
    double *prefix = rtr_malloc(nc * sizeof *prefix), *acc = rtr_malloc(NORM_PAGE * sizeof *acc);
    uint64_t bits[NORM_PAGE / 64] = {0};
    int rc = prefix && acc ? RTR_OK : RTR_E_NOMEM;
    qsort(c, nc, sizeof *c, cmp_cur_ub);
    for (size_t i = 0; i < nc && !rc; i++) prefix[i] = c[i]->ub + (i ? prefix[i - 1] : 0);
    /* bounds are exact sums, scores rounded: a margin keeps every pruning on the safe side */
    double slack = 1 + 1e-6;
    size_t m = 0, ne = ne0;
    double theta = 0;
    while (!rc) {
        uint64_t d = UINT64_MAX;
        for (size_t i = ne; i < nc; i++)
            if (c[i]->doc < d) d = c[i]->doc;
        if (d == UINT64_MAX) break;   /* no essential term left: nothing else can enter */
        uint64_t base = d / NORM_PAGE * NORM_PAGE, end = base + NORM_PAGE - 1;
        uint8_t dl0;
        if ((rc = norm_of(&ls->nm, d, &dl0))) break;
        const uint8_t *len = ls->nm.p;
        for (size_t i = ne; i < nc && !rc; i++) {   /* the essential terms' postings in the window */
            lcur *x = c[i];
            while (!rc && x->doc <= end) {
                /* a block none of whose chunks can enter, whatever the other words add, is passed
                 * over undecoded (its chunks, found through other words, score less without it and
                 * still cannot enter: the bar only rises) */
                if (!x->decoded && m == depth && (x->bub + prefix[nc - 1] - x->ub) * slack < theta) {
                    rc = cur_block_next(x, ls);
                    continue;
                }
                if (!x->decoded && (rc = cur_decode(x, ls))) break;
                for (; x->pos < x->n && x->id[x->pos] <= end; x->pos++) {
                    size_t o = (size_t)(x->id[x->pos] - base);
                    if (!len[o]) {
                        rc = rtr_seterr(RTR_E_CORRUPT, "lexical index: no length for chunk %llu",
                                        (unsigned long long)x->id[x->pos]);
                        break;
                    }
                    double f = weight(ls, x->w, x->tf[x->pos], len[o]);
                    if (bits[o / 64] >> (o % 64) & 1) acc[o] += f;
                    else {
                        bits[o / 64] |= 1ull << (o % 64);
                        acc[o] = f;
                    }
                }
                if (rc) break;
                if (x->pos < x->n) x->doc = x->id[x->pos];
                else rc = cur_block_next(x, ls);
            }
        }
        size_t nw = ne;   /* this window's split, whatever the heap does meanwhile */
        for (size_t wi = 0; wi < NORM_PAGE / 64; wi++) {   /* the chunks found, in order */
            while (bits[wi]) {
                size_t o = wi * 64 + (size_t)__builtin_ctzll(bits[wi]);
                bits[wi] &= bits[wi] - 1;
                if (rc) continue;
                double s = acc[o];
                int full = m == depth;
                if (full && (s + (nw ? prefix[nw - 1] : 0)) * slack < theta) continue;
                uint64_t id = base + o;
                int pruned = 0;
                if (fw && nw) {   /* the whole score from the chunk's own words */
                    int live = 0;
                    if (!(rc = chunk_score(fw, id, &s, &live)) && live) offer(h, &m, depth, (rtr_lex_hit){id, (float)s}, &theta);
                    continue;
                }
                for (size_t i = nw; i-- > 0 && !rc;) {   /* the non-essential terms, strongest first */
                    if (full && (s + prefix[i]) * slack < theta) {
                        pruned = 1;
                        break;
                    }
                    lcur *x = c[i];
                    if (x->done || (id > x->blk.last && ((rc = cur_block_at(x, ls, id)) || x->done))) continue;
                    if (x->blk.first > id) continue;   /* in no block: not in the chunk */
                    if (full && (s + x->bub + (i ? prefix[i - 1] : 0)) * slack < theta) {
                        pruned = 1;
                        break;
                    }
                    if ((rc = cur_seek(x, ls, id)) || x->done) continue;
                    if (x->doc == id) s += weight(ls, x->w, x->tf[x->pos], len[o]);
                }
                if (!rc && !pruned) offer(h, &m, depth, (rtr_lex_hit){id, (float)s}, &theta);
            }
        }
        while (m == depth && ne < nc && prefix[ne] * slack < theta) ne++;
    }
    rtr_free(prefix);
    rtr_free(acc);
    *nh = m;
    return rc;
}

/* Cursors on the n terms q (q->cs, pointers in q->c), each on its first block; a term without postings
 * gets none. *nc: how many; close_cursors ends them. */
static int open_cursors(rtr_lex_query *lq, const qterm *q, size_t n, size_t *nc) {
    *nc = 0;
    for (size_t i = 0; i < n; i++) {
        lcur *cu = &lq->cs[*nc];
        memset(cu, 0, sizeof *cu);
        cu->w = q[i].w;
        cu->ub = q[i].ub;
        cu->order = q[i].order;
        cu->df = q[i].df;
        put_be64(cu->key, q[i].term);
        int rc = rtr_store_aux_cursor_open(lq->t, RTR_AUX_LEX_POSTINGS, &cu->cur);
        if (!rc) rc = cur_block_at(cu, &lq->ls, 0);
        if (!rc && !cu->done) {
            lq->c[(*nc)++] = cu;
            continue;
        }
        rtr_store_aux_cursor_close(cu->cur);
        if (rc) return rc;
    }
    return RTR_OK;
}

static void close_cursors(lcur **c, size_t nc) {
    for (size_t i = 0; i < nc; i++) rtr_store_aux_cursor_close(c[i]->cur);
}

/* The distinct terms of text, ascending (w->n of them), and how often text holds each (*counts,
 * rtr_malloc'd, the caller's; counts NULL: not asked for). */
static int query_terms(const char *text, size_t len, query_words *w, uint32_t **counts) {
    rtr_lex_words(text, len, collect_q, w);
    if (w->rc) return w->rc;
    if (w->n) qsort(w->terms, w->n, sizeof *w->terms, cmp_u64);
    if (counts && !(*counts = rtr_malloc((w->n + 1) * sizeof **counts))) return RTR_E_NOMEM;
    size_t m = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (!i || w->terms[i] != w->terms[i - 1]) {
            w->terms[m++] = w->terms[i];
            if (counts) (*counts)[m - 1] = 0;
        }
        if (counts) (*counts)[m - 1]++;
    }
    w->n = m;
    return RTR_OK;
}

/* The index's state in t, checked: *have 0 when there is none (or it is empty). */
static int usable_state(rtr_store_txn *t, rtr_lex_state *st, int *have) {
    int rc = rtr_lex_state_get(t, st);
    *have = 0;
    if (rc == RTR_E_NOTFOUND || (!rc && st->chunks == 0)) return RTR_OK;
    if (!rc && st->version != RTR_LEX_VERSION)
        rc = rtr_seterr(RTR_E_VERSION, "the lexical index was made with another version of retro (%llu, not %d): "
                        "run 'retro index build'", (unsigned long long)st->version, RTR_LEX_VERSION);
    *have = !rc;
    return rc;
}

int rtr_lex_stats_add(rtr_store_txn *t, const char *text, size_t len, rtr_lex_stats *s) {
    if (!s->terms) {
        query_words w = {0};
        int rc = query_terms(text, len, &w, NULL);
        if (!rc && !(s->df = rtr_calloc(w.n + 1, sizeof *s->df))) rc = RTR_E_NOMEM;
        if (rc) {
            rtr_free(w.terms);
            return rc;
        }
        s->terms = w.terms ? w.terms : rtr_calloc(1, sizeof *s->terms);
        s->n = w.n;
        if (!s->terms) return RTR_E_NOMEM;
    }
    if (!t) return RTR_OK;
    rtr_lex_state st;
    int have, rc = usable_state(t, &st, &have);
    if (rc || !have) return rc;
    s->chunks += st.chunks;
    s->words += st.words;
    for (size_t i = 0; i < s->n; i++) {
        term_rec tr;
        int x = get_term(t, s->terms[i], &tr);
        if (x && x != RTR_E_NOTFOUND) return x;
        if (!x) s->df[i] += tr.df;
    }
    return RTR_OK;
}

void rtr_lex_stats_free(rtr_lex_stats *s) {
    rtr_free(s->terms);
    rtr_free(s->df);
    memset(s, 0, sizeof *s);
}

int rtr_lex_query_new(rtr_store_txn *t, const char *text, size_t len, rtr_lex_query **out) {
    return rtr_lex_query_new_with(t, text, len, NULL, out);
}

int rtr_lex_query_new_with(rtr_store_txn *t, const char *text, size_t len, const rtr_lex_stats *stats,
                           rtr_lex_query **out) {
    *out = NULL;
    rtr_lex_query *lq = rtr_calloc(1, sizeof *lq);
    if (!lq) return RTR_E_NOMEM;
    lq->t = t;
    int have, rc = usable_state(t, &lq->st, &have);
    if (!rc && !have) {   /* no index: a query without terms */
        *out = lq;
        return RTR_OK;
    }
    query_words w = {0};
    uint32_t *qtf = NULL;   /* each term's count in the query: its weight's factor */
    if (!rc) rc = query_terms(text, len, &w, &qtf);
    if (w.n && (!(lq->q = rtr_calloc(w.n, sizeof *lq->q)) || !(lq->cs = rtr_calloc(w.n, sizeof *lq->cs)) ||
                !(lq->c = rtr_calloc(w.n, sizeof *lq->c)) || !(lq->tf = rtr_calloc(w.n, sizeof *lq->tf))))
        rc = RTR_E_NOMEM;
    /* BM25's statistics: this index's, or those given for all the indexes searched together */
    double N = (double)(stats ? stats->chunks : lq->st.chunks), words = (double)(stats ? stats->words : lq->st.words);
    double avg = words / (N > 0 ? N : 1);
    lq->ls = (lsearch){&lq->st, avg > 0 ? avg : 1, {t, 0, NULL}};
    for (size_t i = 0; i < w.n && !rc; i++) {
        term_rec tr;
        int x = get_term(t, w.terms[i], &tr);
        if (x && x != RTR_E_NOTFOUND) rc = x;
        if (x) continue;
        uint64_t gdf = tr.df;
        if (stats) {   /* the term's frequency over all of them (a term of text: stats holds it) */
            const uint64_t *at = bsearch(&w.terms[i], stats->terms, stats->n, sizeof *stats->terms, cmp_u64);
            RTR_ASSERT(at != NULL);
            gdf = stats->df[at - stats->terms];
        }
        double df = (double)gdf > N ? N : (double)gdf;
        qterm *e = &lq->q[lq->n++];
        e->term = w.terms[i];
        e->df = tr.df;   /* this index's postings: what reading them costs */
        e->w = (double)qtf[i] * log(1.0 + (N - df + 0.5) / (df + 0.5));
        e->ub = weight(&lq->ls, e->w, tr.max_tf, tr.min_len);
        e->order = i;
    }
    rtr_free(qtf);
    rtr_free(w.terms);
    if (rc) {
        rtr_lex_query_free(lq);
        return rc;
    }
    *out = lq;
    return RTR_OK;
}

int rtr_lex_query_texts(rtr_lex_query *lq, const rtr_tokenizer *tok) {
    lq->tok = tok;
    return RTR_OK;
}

int rtr_lex_query_score_text(rtr_lex_query *lq, uint64_t id, const char *text, size_t len, float *score) {
    *score = lq->n && id <= lq->st.indexed_upto ? (float)text_score(lq, text, len) : 0;
    return RTR_OK;
}

void rtr_lex_query_free(rtr_lex_query *lq) {
    if (!lq) return;
    rtr_free(lq->tf);
    rtr_buf_free(&lq->text);
    rtr_free(lq->q);
    rtr_free(lq->cs);
    rtr_free(lq->c);
    rtr_free(lq);
}

static int cmp_id_index(const void *a, const void *b) {
    const uint64_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

int rtr_lex_query_score(rtr_lex_query *lq, const uint64_t *ids, size_t n, float *scores) {
    for (size_t i = 0; i < n; i++) scores[i] = 0;
    if (!lq->n || !n) return RTR_OK;
    uint64_t *ord = rtr_malloc(n * 2 * sizeof *ord);   /* (id, index) pairs in id order: every cursor moves forward */
    if (!ord) return RTR_E_NOMEM;
    for (size_t i = 0; i < n; i++) ord[2 * i] = ids[i], ord[2 * i + 1] = i;
    qsort(ord, n, 2 * sizeof *ord, cmp_id_index);
    size_t nc = 0;
    int rc = open_cursors(lq, lq->q, lq->n, &nc);
    for (size_t i = 0; i < n && !rc; i++) {
        uint64_t id = ord[2 * i];
        if (id > lq->st.indexed_upto) continue;   /* not indexed yet */
        size_t found = 0;   /* the cursors on id first: a chunk without a query word (or without words) has no length */
        for (size_t j = 0; j < nc && !rc; j++) {
            lcur *x = lq->c[j];
            if (!(rc = cur_seek(x, &lq->ls, id)) && !x->done && x->doc == id) found++;
        }
        uint8_t dl;
        if (rc || !found || (rc = norm_of(&lq->ls.nm, id, &dl))) continue;
        double s = 0;
        for (size_t j = 0; j < nc; j++) {
            lcur *x = lq->c[j];
            if (!x->done && x->doc == id) s += weight(&lq->ls, x->w, x->tf[x->pos], dl);
        }
        scores[ord[2 * i + 1]] = (float)s;
    }
    close_cursors(lq->c, nc);
    rtr_free(ord);
    return rc;
}

int rtr_lex_query_top(rtr_lex_query *lq, uint32_t depth, int how, rtr_lex_hit **hits, size_t *n) {
    *hits = NULL;
    *n = 0;
    if (!lq->n || !depth) return RTR_OK;
    rtr_lex_hit *h = rtr_malloc(depth * sizeof *h);
    size_t nc = 0, m = 0;
    int rc = h ? open_cursors(lq, lq->q, lq->n, &nc) : RTR_E_NOMEM;
    size_t ne0 = 0;   /* RARE: all but the rarest quarter non-essential */
    uint64_t postings = 0;
    if (!rc && how == RTR_LEX_RARE && nc >= RTR_LEX_RARE_MIN) {
        size_t most = nc / 4 > RTR_LEX_RARE_TERMS ? RTR_LEX_RARE_TERMS : nc / 4, nr = 0;
        while (nr < most) {   /* the least document frequency first (ties: the smaller term hash) */
            lcur *best = NULL;
            for (size_t i = 0; i < nc; i++)
                if (!lq->c[i]->forced && (!best || lq->c[i]->df < best->df ||
                                          (lq->c[i]->df == best->df && lq->c[i]->order < best->order)))
                    best = lq->c[i];
            if (nr && postings + best->df > RTR_LEX_RARE_POSTINGS) break;
            best->forced = 1;
            postings += best->df;
            nr++;
        }
        ne0 = nc - nr;
    }
    /* from text when the rare words name few chunks; when even the rarest is common, the bounds of the
     * other words' blocks prune most of its many chunks unread, and reading each one's text costs more */
    int from_text = ne0 && lq->tok && postings <= RTR_LEX_RARE_POSTINGS;
    if (!rc && nc) rc = ranked(&lq->ls, lq->c, nc, depth, ne0, from_text ? lq : NULL, h, &m);
    close_cursors(lq->c, nc);
    if (!rc && m) qsort(h, m, sizeof *h, cmp_hit_desc);
    if (rc) {
        rtr_free(h);
        return rc;
    }
    *hits = h;
    *n = m;
    return RTR_OK;
}

int rtr_lex_search(rtr_store_txn *t, const char *query, size_t len, uint32_t depth, rtr_lex_hit **hits, size_t *n) {
    *hits = NULL;
    *n = 0;
    rtr_lex_query *lq;
    int rc = rtr_lex_query_new(t, query, len, &lq);
    if (!rc) rc = rtr_lex_query_top(lq, depth, RTR_LEX_EXACT, hits, n);
    rtr_lex_query_free(lq);
    return rc;
}

/* --- checking ------------------------------------------------------------------------------ */
typedef struct lex_ck {
    rtr_check_fn report;
    void *ctx;
    rtr_lex_check_report *rep;
} lex_ck;

#define problem(c, ...) rtr_check_problem((c)->report, (c)->ctx, &(c)->rep->problems, __VA_ARGS__)

/* The shortest length among a block's chunks, against the length pages. */
typedef struct len_ck {
    norms nm;
    uint8_t min;
    int rc;
} len_ck;

static int check_len(void *ctx, uint64_t id, uint32_t count) {
    (void)count;
    len_ck *l = ctx;
    uint8_t dl = 0;
    if ((l->rc = norm_of(&l->nm, id, &dl))) return 1;
    if (dl < l->min) l->min = dl;
    return 0;
}

/* One term's blocks against its record: ids increasing within the indexed range, counts, the bounds in
 * each header and the record, and the last block. */
static int check_term(lex_ck *c, rtr_store_txn *t, uint64_t term, const term_rec *tr, const rtr_lex_state *st) {
    uint8_t key[16];
    put_be64(key, term);
    uint64_t from = 0, prev = 0, postings = 0, last_first = 0, last_id = 0;
    uint32_t last_count = 0;
    uint8_t max_tf = 0, min_len = 255;
    int any = 0, rc;
    for (;;) {
        put_be64(key + 8, from);
        const void *k, *v;
        size_t kn, vn;
        if ((rc = rtr_store_aux_seek(t, RTR_AUX_LEX_POSTINGS, key, 16, &k, &kn, &v, &vn))) break;
        if (kn != 16 || memcmp(k, key, 8)) break;
        uint64_t id = get_be64((const uint8_t *)k + 8);
        rtr_lex_block hd = {id, id, 0, 0};
        len_ck lc = {{t, 0, NULL}, 255, RTR_OK};
        long np = rtr_lex_block_decode(v, vn, id, st->indexed_upto, check_len, &lc, &hd);
        if (np == -2) {
            problem(c, "lexical index: term %016llx: %s", (unsigned long long)term, rtr_errdetail());
            np = 0;
        } else if (np < 0) {
            problem(c, "lexical index: term %016llx: a malformed block ending at chunk %llu", (unsigned long long)term,
                    (unsigned long long)id);
            np = 0;
        } else if (lc.min != hd.min_len) {
            problem(c, "lexical index: term %016llx: the block ending at chunk %llu says its shortest chunk has %u words, "
                       "not %u", (unsigned long long)term, (unsigned long long)id, hd.min_len, lc.min);
        }
        if (any && hd.first <= prev) problem(c, "lexical index: term %016llx: blocks overlap", (unsigned long long)term);
        if (np && hd.max_tf > max_tf) max_tf = hd.max_tf;
        if (np && hd.min_len < min_len) min_len = hd.min_len;
        uint32_t count = (uint32_t)np;
        postings += count;
        c->rep->postings += count;
        c->rep->blocks++;
        last_first = hd.first;
        last_id = id;
        last_count = count;
        prev = id;
        any = 1;
        if (id == UINT64_MAX) break;
        from = id + 1;
    }
    if (rc && rc != RTR_E_NOTFOUND) return rc;
    if (!any) problem(c, "lexical index: term %016llx has no postings", (unsigned long long)term);
    else if (postings != tr->df || last_first != tr->first || last_id != tr->last || last_count != tr->count)
        problem(c, "lexical index: term %016llx: its record (df %llu, last block %llu..%llu of %u) does not match its "
                   "postings (%llu, %llu..%llu of %u)", (unsigned long long)term, (unsigned long long)tr->df,
                (unsigned long long)tr->first, (unsigned long long)tr->last, tr->count, (unsigned long long)postings,
                (unsigned long long)last_first, (unsigned long long)last_id, last_count);
    else if (max_tf != tr->max_tf || min_len != tr->min_len)
        problem(c, "lexical index: term %016llx: its record's bounds (count %u, length %u) are not its blocks' (%u, %u)",
                (unsigned long long)term, tr->max_tf, tr->min_len, max_tf, min_len);
    return RTR_OK;
}

int rtr_lex_check(rtr_store_txn *t, rtr_check_fn report, void *ctx, rtr_lex_check_report *out) {
    memset(out, 0, sizeof *out);
    lex_ck c = {report, ctx, out};
    rtr_lex_state st;
    int rc = rtr_lex_state_get(t, &st);
    if (rc == RTR_E_NOTFOUND) return RTR_OK;
    if (rc == RTR_E_CORRUPT) {
        problem(&c, "%s", rtr_errdetail());
        return RTR_OK;
    }
    if (rc) return rc;
    out->present = 1;
    out->chunks = st.chunks;
    if (st.version != RTR_LEX_VERSION) {
        problem(&c, "lexical index: made by another version of retro (%llu, not %d): 'retro index build' makes it anew",
                (unsigned long long)st.version, RTR_LEX_VERSION);
        return RTR_OK;
    }
    uint8_t key[8] = {0};
    for (;;) {   /* every term, in key order */
        const void *k, *v;
        size_t kn, vn;
        if ((rc = rtr_store_aux_seek(t, RTR_AUX_LEX_TERMS, key, 8, &k, &kn, &v, &vn))) break;
        if (kn != 8) {
            problem(&c, "lexical index: a term key of %zu bytes", kn);
            break;
        }
        uint64_t term = get_be64(k);
        term_rec tr;
        int x = get_term(t, term, &tr);
        if (x == RTR_E_CORRUPT) problem(&c, "%s (term %016llx)", rtr_errdetail(), (unsigned long long)term);
        else if (x) return x;
        else if ((rc = check_term(&c, t, term, &tr, &st))) return rc;
        out->terms++;
        if (term == UINT64_MAX) break;
        put_be64(key, term + 1);
    }
    if (rc && rc != RTR_E_NOTFOUND) return rc;
    uint64_t lengths = 0;   /* the lengths: whole pages, one per chunk indexed */
    put_be64(key, 0);
    for (;;) {
        const void *k, *v;
        size_t kn, vn;
        if ((rc = rtr_store_aux_seek(t, RTR_AUX_LEX_NORMS, key, 8, &k, &kn, &v, &vn))) break;
        uint64_t pg = kn == 8 ? get_be64(k) : 0;
        if (kn != 8 || vn != NORM_PAGE || pg > st.indexed_upto / NORM_PAGE) {
            problem(&c, "lexical index: a length page out of bounds (%zu-byte key, %zu bytes)", kn, vn);
            break;
        }
        for (size_t i = 0; i < NORM_PAGE; i++) lengths += ((const uint8_t *)v)[i] != 0;
        if (pg == UINT64_MAX) break;
        put_be64(key, pg + 1);
    }
    if (rc && rc != RTR_E_NOTFOUND) return rc;
    if (lengths > st.chunks) problem(&c, "lexical index: %llu chunk lengths for %llu chunks indexed", (unsigned long long)lengths, (unsigned long long)st.chunks);
    return RTR_OK;
}
