/* test_dataset.c - the training source of `retro train` (retriever/dataset.c) on a
 * few bundled addresses: sequences are the store's chunks in document order,
 * and the self-neighbour curriculum puts the chunk's own document text, aligned
 * or shifted by at most --self-shift tokens, in the last neighbour slot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "index/build.h"
#include "index/ingest.h"
#include "lib/alloc.h"
#include "lib/status.h"
#include "model/train.h"
#include "retriever/dataset.h"
#include "retriever/retriever.h"
#include "testutil.h"

#define M RTR_CHUNK_TOKENS
#define R (2 * M)
#define CTX 256
#define LC (CTX / M)
#define NK 2

static char *g_parent;
static rtr_kb *g_kb;
static rtr_retriever *g_r;
/* The training text as the dataset must see it: every document's tokens in
 * document order, and for every chunk its document's [begin, end) in g_tok
 * and its own start. */
static int32_t *g_tok;
static int64_t *g_cbeg, *g_dbeg, *g_dend, g_nchunks;

static int setup(void **state) {
    (void)state;
    rtr_tokenizer *tok;
    if (rtr_tokenizer_load(RETRO_SOURCE_DIR "/datasets/tokenizer.rtok", &tok)) return -1;
    g_parent = tu_tmpdir("dataset");
    char *docs = rtr_path_join(g_parent, "docs"), *kbdir = rtr_path_join(g_parent, "kb");
    rtr_mkdirs(docs);
    const char *names[] = {"1961_john_f_kennedy_d.txt", "1960_dwight_d_eisenhower_r.txt"};
    for (int i = 0; i < 2; i++) {
        char src[512];
        snprintf(src, sizeof src, RETRO_SOURCE_DIR "/datasets/sotu/%s", names[i]);
        uint8_t *text;
        size_t len;
        if (rtr_read_file(src, 1 << 24, &text, &len)) return -1;
        tu_write(docs, names[i], text, len);
        rtr_free(text);
    }
    int rc = rtr_kb_open(kbdir, RTR_KB_WRITE | RTR_KB_CREATE, tok, NULL, &g_kb);
    rtr_tokenizer_free(tok);
    const char *paths[] = {docs};
    rtr_ingest_opts io = {0};
    rtr_ingest_report rep;
    if (!rc) rc = rtr_ingest(g_kb, paths, 1, &io, &rep);
    if (!rc) rtr_ingest_report_free(&rep);
    rtr_build_opts bo = {0};
    rtr_build_report br;
    if (!rc) rc = rtr_index_build(g_kb, &bo, &br);
    if (!rc) rc = rtr_retriever_open(g_kb, NULL, &g_r);
    rtr_free(docs);
    rtr_free(kbdir);
    if (rc) return -1;

    /* the reference stream, read from the store on its own */
    rtr_store_txn *t;
    if (rtr_store_read_begin(rtr_kb_store(g_kb), &t)) return -1;
    size_t cap = 1 << 20;
    g_tok = malloc(cap * sizeof *g_tok);
    g_cbeg = malloc(65536 * sizeof *g_cbeg);
    g_dbeg = malloc(65536 * sizeof *g_dbeg);
    g_dend = malloc(65536 * sizeof *g_dend);
    int64_t n = 0;
    rtr_doc d;
    uint64_t after = 0;
    while (rtr_store_next_doc(t, after, &d) == RTR_OK) {
        after = d.id;
        int64_t first = g_nchunks, begin = n;
        for (uint32_t c = 0; c < d.n_chunks; c++) {
            rtr_chunk ch;
            if (rtr_store_get_chunk(t, d.first_chunk + c, &ch) || g_nchunks == 65536) return -1;
            g_cbeg[g_nchunks++] = n;
            for (uint32_t j = 0; j < ch.n_tokens && (size_t)n < cap; j++) g_tok[n++] = (int32_t)ch.tokens[j];
        }
        for (int64_t c = first; c < g_nchunks; c++) {
            g_dbeg[c] = begin;
            g_dend[c] = n;
        }
    }
    rtr_store_txn_end(t);
    return g_nchunks > 8 * LC ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    rtr_retriever_close(g_r);
    rtr_kb_close(g_kb);
    rtr_rmtree(g_parent);
    free(g_parent);
    free(g_tok);
    free(g_cbeg);
    free(g_dbeg);
    free(g_dend);
    return 0;
}

/* The training source over ds, as retro train wires it. */
static const rtr_train_source *source(rtr_dataset *ds) {
    static rtr_train_source src;
    src = (rtr_train_source){ds, rtr_dataset_sequences(ds, RTR_SPLIT_TRAIN), rtr_dataset_sequences(ds, RTR_SPLIT_VAL),
                             rtr_dataset_get, rtr_dataset_at_step};
    return &src;
}

static rtr_dataset *build(double self_rate, int self_shift) {
    rtr_dataset_opts o = {.T = CTX, .K = NK, .self_rate = self_rate, .self_shift = self_shift, .seed = 7};
    rtr_dataset *ds = NULL;
    int rc = rtr_dataset_build(g_kb, g_r, &o, &ds);
    if (rc) fprintf(stderr, "dataset: %s\n", rtr_errdetail());
    assert_int_equal(rc, RTR_OK);
    return ds;
}

/* 1 if nb is chunk c's document read from delta tokens after the chunk's start. */
static int is_shifted_self(const int32_t *nb, int64_t c, int delta) {
    for (int t = 0; t < R; t++) {
        int64_t p = g_cbeg[c] + delta + t;
        int32_t want = p >= g_dbeg[c] && p < g_dend[c] ? g_tok[p] : -1;
        if (nb[t] != want) return 0;
    }
    return 1;
}

/* Every sequence's tokens are the store's, and with self_rate 0 no neighbour
 * is the chunk's own text (neighbours never come from its own document). */
static void test_sequences_and_honest_neighbours(void **state) {
    (void)state;
    rtr_dataset *ds = build(0, 0);
    const rtr_train_source *src = source(ds);
    int32_t idx[CTX], tg[CTX], nbr[LC * NK * R];
    double bytes;
    int64_t seen = 0;
    for (int64_t i = 0; i < src->n_train; i++) {
        assert_int_equal(src->get(src->ctx, RTR_SPLIT_TRAIN, i, idx, tg, nbr, &bytes), RTR_OK);
        for (int u = 0; u < LC && i * LC + u < g_nchunks; u++) {
            int64_t c = i * LC + u;
            int64_t len = (c + 1 < g_nchunks && g_dbeg[c + 1] == g_dbeg[c] ? g_cbeg[c + 1] : g_dend[c]) - g_cbeg[c];
            for (int j = 0; j < len; j++) assert_int_equal(idx[u * M + j], g_tok[g_cbeg[c] + j]);
            for (int k = 0; k < NK; k++) assert_false(is_shifted_self(nbr + (u * NK + k) * R, c, 0));
            seen++;
        }
    }
    assert_int_equal(seen, g_nchunks);
    rtr_dataset_free(ds);
}

/* Returns in counts[d + S] how often each shift d was drawn, and checks that
 * every training chunk's last neighbour is its own text at one of them. */
static void shifts_drawn(int S, int64_t *counts) {
    rtr_dataset *ds = build(1.0, S);
    const rtr_train_source *src = source(ds);
    int32_t idx[CTX], tg[CTX], nbr[LC * NK * R];
    double bytes;
    for (int64_t i = 0; i < src->n_train; i++) {
        assert_int_equal(src->get(src->ctx, RTR_SPLIT_TRAIN, i, idx, tg, nbr, &bytes), RTR_OK);
        for (int u = 0; u < LC && i * LC + u < g_nchunks; u++) {
            int64_t c = i * LC + u;
            const int32_t *last = nbr + (u * NK + NK - 1) * R;
            int found = S + 1;
            for (int d = -S; d <= S && found > S; d++)
                if (is_shifted_self(last, c, d)) found = d;
            if (found > S) fail_msg("chunk %lld: the last neighbour is not its own text within %d tokens",
                                    (long long)c, S);
            counts[found + S]++;
        }
    }
    rtr_dataset_free(ds);
}

static void test_self_neighbours_aligned(void **state) {
    (void)state;
    int64_t counts[1] = {0};
    shifts_drawn(0, counts);
    assert_int_equal(counts[0], g_nchunks);
}

/* Shifted: every offset in [-S, S] turns up, none far above its share. */
static void test_self_neighbours_shifted(void **state) {
    (void)state;
    enum { S = 8 };
    int64_t counts[2 * S + 1] = {0};
    shifts_drawn(S, counts);
    double expect = (double)g_nchunks / (2 * S + 1);
    for (int d = 0; d <= 2 * S; d++) {
        if (counts[d] == 0 || counts[d] > expect * 3)
            fail_msg("shift %d drawn %lld times of %lld (expected about %.0f)", d - S, (long long)counts[d],
                     (long long)g_nchunks, expect);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequences_and_honest_neighbours),
        cmocka_unit_test(test_self_neighbours_aligned),
        cmocka_unit_test(test_self_neighbours_shifted),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
