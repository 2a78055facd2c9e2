/* test_lexical.c - the lexical index (index/lexical.c): words as documented, BM25 scores equal to a naive
 * computation over every chunk, blocks of postings spanning many chunks, an incremental build equal to one
 * from scratch, a cleared index rebuilt the same, deleted chunks left to the caller, and a corrupt block
 * refused with an error by the search and found by the check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "index/ingest.h"
#include "index/lexical.h"
#include "lib/alloc.h"
#include "lib/status.h"
#include "testutil.h"

static rtr_tokenizer *g_tok;

static int setup_tok(void **state) {
    (void)state;
    return rtr_tokenizer_load(RETRO_SOURCE_DIR "/datasets/tokenizer.rtok", &g_tok) ? -1 : 0;
}

static int teardown_tok(void **state) {
    (void)state;
    rtr_tokenizer_free(g_tok);
    return 0;
}

typedef struct words {
    char w[64][RTR_LEX_MAX_WORD + 1];
    int n;
} words;

static void keep(void *ctx, const char *w, size_t len) {
    words *x = ctx;
    if (x->n < 64) {
        memcpy(x->w[x->n], w, len);
        x->w[x->n++][len] = 0;
    }
}

static void test_words(void **state) {
    (void)state;
    words x = {0};
    /* a pilcrow, typographic quotes, a guillemet, an invalid byte and CJK punctuation split words */
    const char *t = "Hello, WORLD! snake_case x86-64 caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac  e=mc2. Capsules\xc2\xb6 "
                    "\xe2\x80\x9cquoted\xe2\x80\x9d it\xe2\x80\x99s \xc2\xbbnext ab\xff" "cd \xe6\x97\xa5\xe3\x80\x82\xe6\x9c\xac";
    rtr_lex_words(t, strlen(t), keep, &x);
    /* and a run of words that punctuation joins without a space is also one term, after its words */
    const char *want[] = {"hello", "world", "snake_case", "x86", "64", "x86 64", "caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac",
                          "e", "mc2", "e mc2", "capsules", "quoted", "it", "s", "it s", "next", "ab", "cd",
                          "\xe6\x97\xa5", "\xe6\x9c\xac", "\xe6\x97\xa5 \xe6\x9c\xac"};
    assert_int_equal(x.n, 22);
    for (int i = 0; i < 22; i++) assert_string_equal(x.w[i], want[i]);
    x.n = 0;
    const char *dotted = "see os.path.join() and Python 2.3's; "
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    rtr_lex_words(dotted, strlen(dotted), keep, &x);
    const char *want2[] = {"see", "os", "path", "join", "os path join", "and", "python", "2", "3", "s", "2 3 s",
                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"};
    assert_int_equal(x.n, 13);   /* the last run's compound would be 77 bytes: left out */
    for (int i = 0; i < 13; i++) assert_string_equal(x.w[i], want2[i]);
    char lng[100];
    memset(lng, 'a', sizeof lng);
    x.n = 0;
    rtr_lex_words(lng, sizeof lng, keep, &x);
    assert_int_equal(x.n, 1);
    assert_int_equal(strlen(x.w[0]), RTR_LEX_MAX_WORD);   /* cut, still one word */
}

/* --- a knowledge base, and BM25 computed naively over its chunks --------------------------- */
static rtr_kb *new_kb(void) {
    char *parent = tu_tmpdir("lex");
    char *dir = rtr_path_join(parent, "kb");
    rtr_kb *kb;
    assert_int_equal(rtr_kb_open(dir, RTR_KB_WRITE | RTR_KB_CREATE, g_tok, NULL, &kb), RTR_OK);
    free(parent);
    rtr_free(dir);
    return kb;
}

static const char *const VOCAB[] = {"harbour", "ferry", "lighthouse", "keeper", "granite", "glacier", "oboe",
                                    "symphony", "the", "of", "and", "a", "storm", "lantern", "anchor", "copper"};

/* Ingests n (<= 64) texts named names[i] (made with rtr_malloc, freed here). */
static void ingest_texts(rtr_kb *kb, char **texts, const size_t *lens, char (*names)[32], int n) {
    rtr_mem_file f[64];
    for (int i = 0; i < n; i++) f[i] = (rtr_mem_file){names[i], (const uint8_t *)texts[i], lens[i], 0};
    rtr_ingest_opts o = {0};
    rtr_ingest_report rep;
    assert_int_equal(rtr_ingest_memory(kb, f, (size_t)n, &o, &rep), RTR_OK);
    rtr_ingest_report_free(&rep);
    for (int i = 0; i < n; i++) rtr_free(texts[i]);
}

/* n documents of pseudo-random words from VOCAB (the common ones often), named d<first + i>.txt */
static void add_docs(rtr_kb *kb, int first, int n) {
    char *texts[64], names[64][32];
    size_t lens[64];
    uint64_t x = 12345 + (uint64_t)first;
    for (int i = 0; i < n; i++) {
        int nw = 20 + (int)(x % 300);
        texts[i] = rtr_malloc((size_t)nw * 12 + 1);
        lens[i] = 0;
        for (int w = 0; w < nw; w++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            int v = (int)((x >> 33) % 16), common = (int)((x >> 40) % 3);
            lens[i] += (size_t)sprintf(texts[i] + lens[i], "%s ", VOCAB[common ? 8 + (v % 4) : v]);
        }
        snprintf(names[i], sizeof names[i], "d%03d.txt", first + i);
    }
    ingest_texts(kb, texts, lens, names, n);
}

/* BM25 of every chunk for query, straight from the definition; scores[id] (ids <= max_id). */
static void naive_bm25(rtr_kb *kb, const char *query, double *scores, uint64_t max_id) {
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    words q = {0};
    rtr_lex_words(query, strlen(query), keep, &q);
    static words cw[4096];
    static uint64_t cid[4096];
    int nc = 0;
    double total = 0;
    rtr_chunk c;
    uint64_t after = 0;
    rtr_buf text = {0};
    while (rtr_store_next_chunk(t, after, &c) == RTR_OK) {
        text.len = 0;
        assert_int_equal(rtr_tokenizer_decode(g_tok, c.tokens, c.n_tokens, &text), RTR_OK);
        memset(&cw[nc], 0, sizeof cw[nc]);
        rtr_lex_words((const char *)text.data, text.len, keep, &cw[nc]);
        total += cw[nc].n;
        cid[nc++] = c.id;
        after = c.id;
    }
    rtr_buf_free(&text);
    rtr_store_txn_end(t);
    double avg = total / nc;
    for (uint64_t i = 0; i <= max_id; i++) scores[i] = 0;
    for (int a = 0; a < q.n; a++) {
        int df = 0;
        for (int d = 0; d < nc; d++)
            for (int w = 0; w < cw[d].n; w++)
                if (!strcmp(cw[d].w[w], q.w[a])) {
                    df++;
                    break;
                }
        double idf = log(1 + (nc - df + 0.5) / (df + 0.5));
        for (int d = 0; d < nc; d++) {
            int tf = 0;
            for (int w = 0; w < cw[d].n; w++) tf += !strcmp(cw[d].w[w], q.w[a]);
            if (tf) scores[cid[d]] += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * cw[d].n / avg));
        }
    }
}

static void check_query(rtr_kb *kb, const char *query) {
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    rtr_lex_hit *h;
    size_t n;
    assert_int_equal(rtr_lex_search(t, query, strlen(query), 4096, &h, &n), RTR_OK);
    rtr_lex_state st;
    assert_int_equal(rtr_lex_state_get(t, &st), RTR_OK);
    rtr_store_txn_end(t);
    static double want[8192];
    assert_true(st.indexed_upto < 8192);
    naive_bm25(kb, query, want, st.indexed_upto);
    size_t expect = 0;
    for (uint64_t i = 0; i <= st.indexed_upto; i++) expect += want[i] > 0;
    assert_int_equal(n, expect);   /* every chunk holding a query word, none other */
    for (size_t i = 0; i < n; i++) {
        double w = want[h[i].chunk_id];
        if (fabs(h[i].score - w) > 1e-4 * fmax(1, w))
            fail_msg("'%s': chunk %llu: index %.6f, naive %.6f", query, (unsigned long long)h[i].chunk_id, h[i].score, w);
        if (i) assert_true(h[i].score <= h[i - 1].score);
    }
    rtr_free(h);
}

static void test_bm25_against_naive(void **state) {
    (void)state;
    rtr_kb *kb = new_kb();
    add_docs(kb, 0, 40);
    rtr_lex_report rep;
    assert_int_equal(rtr_lex_build(kb, 0, &rep), RTR_OK);
    assert_true(rep.indexed > RTR_LEX_BLOCK);   /* "the" spans several blocks */
    assert_int_equal(rep.indexed, rep.chunks);
    check_query(kb, "lighthouse keeper");
    check_query(kb, "the harbour of the storm");   /* a common word, twice */
    check_query(kb, "OBOE, Symphony!");
    check_query(kb, "nothing matches xyzzy");
    /* depth cuts the list, best first */
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    rtr_lex_hit *all, *top;
    size_t na, nt;
    assert_int_equal(rtr_lex_search(t, "the granite glacier", 19, 4096, &all, &na), RTR_OK);
    assert_int_equal(rtr_lex_search(t, "the granite glacier", 19, 5, &top, &nt), RTR_OK);
    assert_int_equal(nt, 5);
    for (size_t i = 0; i < 5; i++) assert_int_equal(top[i].chunk_id, all[i].chunk_id);
    rtr_free(all);
    rtr_free(top);
    rtr_store_txn_end(t);
    rtr_kb_close(kb);
}

/* n documents over a vocabulary of 400 words drawn by a Zipf-like law (w0 most often), of 3 to 400
 * words each, so that counts and chunk lengths vary from block to block. */
static void add_zipf_docs(rtr_kb *kb, int n, uint64_t seed) {
    for (int first = 0; first < n; first += 64) {
        int m = n - first < 64 ? n - first : 64;
        char *texts[64], names[64][32];
        size_t lens[64];
        for (int i = 0; i < m; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            int nw = 3 + (int)((seed >> 33) % 400);
            texts[i] = rtr_malloc((size_t)nw * 8 + 1);
            lens[i] = 0;
            for (int w = 0; w < nw; w++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                double u = (double)((seed >> 11) & ((1ull << 53) - 1)) / (double)(1ull << 53);
                int v = (int)(400 * u * u * u);   /* small ids far more often */
                lens[i] += (size_t)sprintf(texts[i] + lens[i], "w%d ", v);
            }
            snprintf(names[i], sizeof names[i], "z%04d.txt", first + i);
        }
        ingest_texts(kb, texts, lens, names, m);
    }
}

/* The top depth of n queries (the first half of 1 to 4 words, then up to 30), pruned, against the
 * whole ranking (a depth past the chunks: nothing pruned): the same chunks, order and scores. */
static size_t check_topk(rtr_kb *kb, uint32_t whole, int n, uint64_t x) {
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    static const uint32_t depths[] = {1, 2, 5, 10, 40};
    size_t compared = 0;
    for (int qi = 0; qi < n; qi++) {
        char q[512];
        size_t len = 0;
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int nw = 1 + (int)((x >> 33) % (qi < n / 2 ? 4 : 30));
        for (int w = 0; w < nw; w++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            int common = (int)((x >> 20) & 1);
            len += (size_t)sprintf(q + len, "w%d ", common ? (int)((x >> 33) % 12) : (int)((x >> 33) % 400));
        }
        rtr_lex_hit *all, *top;
        size_t na, nt;
        assert_int_equal(rtr_lex_search(t, q, len, whole, &all, &na), RTR_OK);
        for (size_t di = 0; di < sizeof depths / sizeof *depths; di++) {
            assert_int_equal(rtr_lex_search(t, q, len, depths[di], &top, &nt), RTR_OK);
            assert_int_equal(nt, na < depths[di] ? na : depths[di]);
            for (size_t i = 0; i < nt; i++) {
                if (top[i].chunk_id != all[i].chunk_id || top[i].score != all[i].score)
                    fail_msg("'%s' depth %u, rank %zu: chunk %llu (%.7f), the whole ranking's %llu (%.7f)", q, depths[di],
                             i, (unsigned long long)top[i].chunk_id, top[i].score, (unsigned long long)all[i].chunk_id,
                             all[i].score);
            }
            compared += nt;
            rtr_free(top);
        }
        rtr_free(all);
    }
    rtr_store_txn_end(t);
    return compared;
}

/* The top depth, pruned (MaxScore, block bounds), is exactly the head of the whole ranking: the same
 * chunks in the same order with the same scores, for queries short and long, common words and rare;
 * in one window of chunk lengths, and over several (from the second on, a block of an essential
 * word is passed over undecoded when its bound cannot reach the top: the short queries of common
 * words, whose postings fill many blocks). */
static void test_topk_is_exhaustive(void **state) {
    (void)state;
    rtr_kb *kb = new_kb();
    add_zipf_docs(kb, 300, 99);
    rtr_lex_report rep;
    assert_int_equal(rtr_lex_build(kb, 0, &rep), RTR_OK);
    assert_true(rep.chunks > 4 * RTR_LEX_BLOCK && rep.chunks < 4096);
    assert_true(check_topk(kb, 4096, 60, 7) > 1000);
    add_zipf_docs(kb, 2400, 1234);   /* past three windows of 4096 chunks */
    assert_int_equal(rtr_lex_build(kb, 0, &rep), RTR_OK);
    print_message("%llu chunks\n", (unsigned long long)rep.chunks);
    assert_true(rep.chunks > 3 * 4096);
    assert_true(check_topk(kb, (uint32_t)rep.chunks + 1, 40, 11) > 800);
    rtr_kb_close(kb);
}

/* Three documents without a word (their chunks have no length in the index). */
static void add_texts_without_words(rtr_kb *kb) {
    char *texts[3], names[3][32];
    size_t lens[3];
    for (int i = 0; i < 3; i++) {
        texts[i] = rtr_malloc(64);
        lens[i] = (size_t)sprintf(texts[i], "--- %.*s ---\n", i + 1, "***");
        snprintf(names[i], sizeof names[i], "empty%d.txt", i);
    }
    ingest_texts(kb, texts, lens, names, 3);
}

/* Distinct words of a query (at most 64), each with its document frequency: the length of its own
 * exhaustive ranking. */
typedef struct qword {
    char w[16];
    size_t df;
} qword;

static int cmp_qword_df(const void *a, const void *b) {
    const qword *x = a, *y = b;
    return (x->df > y->df) - (x->df < y->df);
}

/* A prepared query answers as the one-call search does: rtr_lex_query_score gives every chunk (in any
 * order, wordless and unindexed ones 0) its exhaustive score; RTR_LEX_EXACT is rtr_lex_search; and
 * RTR_LEX_RARE is exactly the exhaustive ranking less the chunks that hold none of the query's rarest
 * words (the rarest, then the next while their postings stay within RTR_LEX_RARE_POSTINGS, up to a
 * quarter of the words), computed here from each word's own ranking; a query of fewer than
 * RTR_LEX_RARE_MIN words ranks as EXACT; and a chunk's own words find it first in both. */
static void test_prepared_query_rare_and_scores(void **state) {
    (void)state;
    rtr_kb *kb = new_kb();
    add_zipf_docs(kb, 300, 5);
    add_texts_without_words(kb);
    rtr_lex_report rep;
    assert_int_equal(rtr_lex_build(kb, 0, &rep), RTR_OK);
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    rtr_lex_state st;
    assert_int_equal(rtr_lex_state_get(t, &st), RTR_OK);
    uint64_t x = 11;
    size_t rare_checked = 0, restricted = 0, text_scored = 0;
    for (int qi = 0; qi < 80; qi++) {
        char q[1024];
        size_t len = 0;
        qword qw[64];
        size_t nw = 0;
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int n = 1 + (int)((x >> 33) % 40);
        for (int w = 0; w < n; w++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            int v = (int)((x >> 33) % ((x >> 20) & 1 ? 20 : 400));
            len += (size_t)sprintf(q + len, "w%d ", v);
            char word[16];
            snprintf(word, sizeof word, "w%d", v);
            size_t k = 0;
            while (k < nw && strcmp(qw[k].w, word)) k++;
            if (k == nw) snprintf(qw[nw++].w, sizeof qw[0].w, "%s", word);
        }
        rtr_lex_hit *all, *one;
        size_t na, no;
        assert_int_equal(rtr_lex_search(t, q, len, 8192, &all, &na), RTR_OK);
        rtr_lex_query *lq;
        assert_int_equal(rtr_lex_query_new(t, q, len, &lq), RTR_OK);
        /* scores of every chunk id (and some past the index), in descending id order */
        size_t nid = st.indexed_upto + 3;
        uint64_t *ids = rtr_malloc(nid * sizeof *ids);
        float *sc = rtr_malloc(nid * sizeof *sc);
        for (size_t i = 0; i < nid; i++) ids[i] = nid - i;
        assert_int_equal(rtr_lex_query_score(lq, ids, nid, sc), RTR_OK);
        size_t nonzero = 0;
        for (size_t i = 0; i < nid; i++) nonzero += sc[i] > 0;
        assert_int_equal(nonzero, na);
        for (size_t i = 0; i < na; i++) assert_true(sc[nid - all[i].chunk_id] == all[i].score);
        /* the same scores from the chunks' own text */
        rtr_lex_query *lt;
        assert_int_equal(rtr_lex_query_new(t, q, len, &lt), RTR_OK);
        assert_int_equal(rtr_lex_query_texts(lt, g_tok), RTR_OK);
        for (size_t i = 0; i < nid; i++) {
            rtr_chunk c;
            if (rtr_store_get_chunk(t, ids[i], &c) != RTR_OK) continue;
            rtr_buf text = {0};
            float f;
            assert_int_equal(rtr_tokenizer_decode(g_tok, c.tokens, c.n_tokens, &text), RTR_OK);
            assert_int_equal(rtr_lex_query_score_text(lt, ids[i], (const char *)text.data, text.len, &f), RTR_OK);
            if (f != sc[i]) fail_msg("'%s': chunk %llu scores %.7f from its text, %.7f from the postings", q,
                                     (unsigned long long)ids[i], f, sc[i]);
            text_scored++;
            rtr_buf_free(&text);
        }
        /* EXACT is the one-call search */
        assert_int_equal(rtr_lex_query_top(lq, 10, RTR_LEX_EXACT, &one, &no), RTR_OK);
        assert_int_equal(no, na < 10 ? na : 10);
        for (size_t i = 0; i < no; i++) assert_true(one[i].chunk_id == all[i].chunk_id && one[i].score == all[i].score);
        rtr_free(one);
        /* RARE: the words' frequencies, the rare ones, the chunks that hold one */
        for (size_t k = 0; k < nw; k++) {
            rtr_lex_hit *h;
            assert_int_equal(rtr_lex_search(t, qw[k].w, strlen(qw[k].w), 8192, &h, &qw[k].df), RTR_OK);
            rtr_free(h);
        }
        size_t present = 0;
        for (size_t k = 0; k < nw; k++) present += qw[k].df > 0;
        qsort(qw, nw, sizeof *qw, cmp_qword_df);
        memmove(qw, qw + (nw - present), present * sizeof *qw);   /* the words the index holds, rarest first */
        size_t most = present / 4 < RTR_LEX_RARE_TERMS ? present / 4 : RTR_LEX_RARE_TERMS, nr = 0, postings = 0;
        while (nr < most && (!nr || postings + qw[nr].df <= RTR_LEX_RARE_POSTINGS)) postings += qw[nr++].df;
        if (present >= RTR_LEX_RARE_MIN && nr < present && qw[nr - 1].df == qw[nr].df) {   /* a tie: which is rarer is not ours to say */
            rtr_free(all), rtr_free(ids), rtr_free(sc), rtr_lex_query_free(lq), rtr_lex_query_free(lt);
            continue;
        }
        uint8_t *holds = rtr_calloc(nid + 1, 1);
        for (size_t k = 0; k < (present >= RTR_LEX_RARE_MIN ? nr : present); k++) {
            rtr_lex_hit *h;
            size_t nh;
            assert_int_equal(rtr_lex_search(t, qw[k].w, strlen(qw[k].w), 8192, &h, &nh), RTR_OK);
            for (size_t i = 0; i < nh; i++) holds[h[i].chunk_id] = 1;
            rtr_free(h);
        }
        static const uint32_t depths[] = {1, 5, 20};
        for (size_t di = 0; di < 3; di++) {
            assert_int_equal(rtr_lex_query_top(lq, depths[di], RTR_LEX_RARE, &one, &no), RTR_OK);
            size_t j = 0;
            for (size_t i = 0; i < na && j < depths[di]; i++) {
                if (!holds[all[i].chunk_id]) continue;
                assert_true(j < no);
                if (one[j].chunk_id != all[i].chunk_id || one[j].score != all[i].score)
                    fail_msg("'%s' depth %u: rare rank %zu is chunk %llu (%.6f), expected %llu (%.6f)", q, depths[di], j,
                             (unsigned long long)one[j].chunk_id, one[j].score, (unsigned long long)all[i].chunk_id,
                             all[i].score);
                j++;
            }
            assert_int_equal(no, j);
            rare_checked += no;
            rtr_lex_hit *tx;   /* scored from text: the same ranking */
            size_t ntx;
            assert_int_equal(rtr_lex_query_top(lt, depths[di], RTR_LEX_RARE, &tx, &ntx), RTR_OK);
            assert_int_equal(ntx, no);
            for (size_t i = 0; i < no; i++) assert_true(tx[i].chunk_id == one[i].chunk_id && tx[i].score == one[i].score);
            rtr_free(tx);
            rtr_free(one);
        }
        size_t held = 0;
        for (size_t i = 0; i < na; i++) held += holds[all[i].chunk_id];
        restricted += held < na;
        rtr_free(holds);
        rtr_free(all);
        rtr_free(ids);
        rtr_free(sc);
        rtr_lex_query_free(lq);
        rtr_lex_query_free(lt);
    }
    print_message("RARE: %zu hits compared, %zu queries restricted to part of the ranking, %zu chunks scored from text\n",
                  rare_checked, restricted, text_scored);
    assert_true(text_scored > 1000);
    assert_true(rare_checked > 500);
    assert_true(restricted > 10);   /* the restriction happened, not only queries that every chunk answers */
    /* a chunk's own words (of a long chunk) find it first, in both ways */
    int own = 0, first = 0;
    for (uint64_t id = 1; id <= st.indexed_upto && own < 20; id += 7) {
        rtr_chunk c;
        if (rtr_store_get_chunk(t, id, &c) || c.n_tokens < 48) continue;
        rtr_buf text = {0};
        assert_int_equal(rtr_tokenizer_decode(g_tok, c.tokens, c.n_tokens, &text), RTR_OK);
        rtr_lex_query *lq;
        rtr_lex_hit *e, *r;
        size_t ne, nr;
        assert_int_equal(rtr_lex_query_new(t, (const char *)text.data, text.len, &lq), RTR_OK);
        assert_int_equal(rtr_lex_query_top(lq, 3, RTR_LEX_EXACT, &e, &ne), RTR_OK);
        assert_int_equal(rtr_lex_query_top(lq, 3, RTR_LEX_RARE, &r, &nr), RTR_OK);
        assert_true(ne > 0 && nr > 0);
        if (e[0].chunk_id == id) {   /* it holds every word of the query: it competes in RARE */
            assert_true(r[0].chunk_id == id && e[0].score == r[0].score);
            first++;
        }
        rtr_free(e);
        rtr_free(r);
        rtr_lex_query_free(lq);
        rtr_buf_free(&text);
        own++;
    }
    assert_int_equal(own, 20);
    assert_true(first >= 15);
    /* no words, no index: empty answers */
    rtr_lex_query *lq;
    rtr_lex_hit *h;
    size_t nh;
    assert_int_equal(rtr_lex_query_new(t, "!!! ---", 7, &lq), RTR_OK);
    assert_int_equal(rtr_lex_query_top(lq, 5, RTR_LEX_RARE, &h, &nh), RTR_OK);
    assert_int_equal(nh, 0);
    rtr_lex_query_free(lq);
    rtr_store_txn_end(t);
    rtr_kb_close(kb);
}

/* Scores of a fixed query over every chunk, as the index gives them. */
static size_t snapshot(rtr_kb *kb, rtr_lex_hit **h) {
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    size_t n;
    const char *q = "the lantern anchor copper storm";
    assert_int_equal(rtr_lex_search(t, q, strlen(q), 4096, h, &n), RTR_OK);
    rtr_store_txn_end(t);
    return n;
}

static void test_incremental_and_rebuild(void **state) {
    (void)state;
    rtr_kb *a = new_kb(), *b = new_kb();
    rtr_lex_report rep;
    /* a: in three steps, b: at once */
    add_docs(a, 0, 10);
    assert_int_equal(rtr_lex_build(a, 0, &rep), RTR_OK);
    add_docs(a, 10, 15);
    assert_int_equal(rtr_lex_build(a, 0, &rep), RTR_OK);
    assert_int_equal(rtr_lex_build(a, 0, &rep), RTR_OK);
    assert_int_equal(rep.indexed, 0);   /* nothing new */
    add_docs(a, 25, 15);
    assert_int_equal(rtr_lex_build(a, 0, &rep), RTR_OK);
    add_docs(b, 0, 10);
    add_docs(b, 10, 15);
    add_docs(b, 25, 15);
    assert_int_equal(rtr_lex_build(b, 0, &rep), RTR_OK);
    rtr_lex_hit *ha, *hb;
    size_t na = snapshot(a, &ha), nb = snapshot(b, &hb);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_int_equal(ha[i].chunk_id, hb[i].chunk_id);
        assert_true(fabsf(ha[i].score - hb[i].score) < 1e-5f);
    }
    /* cleared and rebuilt: the same */
    assert_int_equal(rtr_lex_clear(a), RTR_OK);
    rtr_free(ha);
    assert_int_equal(snapshot(a, &ha), 0);
    rtr_free(ha);
    assert_int_equal(rtr_lex_build(a, 0, &rep), RTR_OK);
    assert_int_equal(snapshot(a, &ha), nb);
    for (size_t i = 0; i < nb; i++) assert_true(ha[i].chunk_id == hb[i].chunk_id && fabsf(ha[i].score - hb[i].score) < 1e-5f);
    /* a deleted document's chunks stay in the postings: the caller drops them */
    const char *gone[] = {"d003.txt"};
    uint64_t files, docs;
    assert_int_equal(rtr_kb_remove(a, gone, 1, &files, &docs), RTR_OK);
    rtr_free(ha);
    assert_int_equal(snapshot(a, &ha), nb);
    rtr_free(ha);
    rtr_free(hb);
    rtr_kb_close(a);
    rtr_kb_close(b);
}

/* A block of postings damaged under the index: a one-line error, not a crash. */
typedef struct damage {
    int done;
} damage;

static int damage_fn(rtr_store_txn *t, void *ctx) {
    damage *d = ctx;
    uint8_t key[16] = {0};
    uint64_t term = rtr_lex_term("ferry", 5);
    for (int i = 0; i < 8; i++) key[i] = (uint8_t)(term >> (56 - 8 * i));
    const void *k, *v;
    size_t kn, vn;
    int rc = rtr_store_aux_seek(t, RTR_AUX_LEX_POSTINGS, key, 16, &k, &kn, &v, &vn);
    if (rc) return rc;
    uint8_t bad[4] = {0xff, 0xff, 0xff, 0xff};   /* a varint that never ends */
    d->done = 1;
    return rtr_store_aux_put(t, RTR_AUX_LEX_POSTINGS, k, kn, bad, sizeof bad);
}

static void test_corrupt_block(void **state) {
    (void)state;
    rtr_kb *kb = new_kb();
    add_docs(kb, 0, 8);
    rtr_lex_report rep;
    assert_int_equal(rtr_lex_build(kb, 0, &rep), RTR_OK);
    rtr_store_txn *ct;
    rtr_lex_check_report cr;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &ct), RTR_OK);
    assert_int_equal(rtr_lex_check(ct, NULL, NULL, &cr), RTR_OK);
    rtr_store_txn_end(ct);
    assert_true(cr.present && cr.problems == 0 && cr.chunks == rep.chunks && cr.terms >= 16 && cr.postings >= cr.terms);
    damage d = {0};
    assert_int_equal(rtr_store_write(rtr_kb_store(kb), damage_fn, &d), RTR_OK);
    assert_true(d.done);
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    rtr_lex_hit *h;
    size_t n;
    assert_int_equal(rtr_lex_search(t, "ferry", 5, 10, &h, &n), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), "lexical index"));
    assert_int_equal(rtr_lex_check(t, NULL, NULL, &cr), RTR_OK);   /* the walk finds it too */
    assert_true(cr.problems >= 1);
    rtr_store_txn_end(t);
    rtr_kb_close(kb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words),
        cmocka_unit_test(test_bm25_against_naive),
        cmocka_unit_test(test_prepared_query_rare_and_scores),
        cmocka_unit_test(test_topk_is_exhaustive),
        cmocka_unit_test(test_incremental_and_rebuild),
        cmocka_unit_test(test_corrupt_block),
    };
    return cmocka_run_group_tests(tests, setup_tok, teardown_tok);
}
