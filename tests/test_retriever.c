/* test_retriever.c - the query path on the bundled corpus: perturbed-chunk
 * recovery, deleted and excluded documents, batch neighbours with
 * continuations, incremental builds, bad queries. */
#define _GNU_SOURCE   /* realpath */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "index/build.h"
#include "index/embed_hash.h"
#include "index/embed_pca.h"
#include "index/lexical.h"
#include "index/ingest.h"
#include "lib/alloc.h"
#include "lib/status.h"
#include "index/vindex.h"
#include "retriever/live.h"
#include "retriever/retriever.h"
#include "testutil.h"

static char *g_parent, *g_kbdir, *g_extra;
static rtr_kb *g_kb;

static int setup(void **state) {
    (void)state;
    rtr_tokenizer *tok;
    const char *p = getenv("RETRO_TEST_TOKENIZER");
    if (rtr_tokenizer_load(p ? p : RETRO_SOURCE_DIR "/datasets/tokenizer.rtok", &tok)) return -1;
    g_parent = tu_tmpdir("retr");
    g_kbdir = rtr_path_join(g_parent, "kb");
    g_extra = rtr_path_join(g_parent, "extra");
    rtr_mkdirs(g_extra);
    int rc = rtr_kb_open(g_kbdir, RTR_KB_WRITE | RTR_KB_CREATE, tok, NULL, &g_kb);
    rtr_tokenizer_free(tok);
    if (rc) return -1;
    const char *paths[] = {RETRO_SOURCE_DIR "/datasets/sotu"};
    rtr_ingest_opts io = {0};
    rtr_ingest_report rep;
    rc = rtr_ingest(g_kb, paths, 1, &io, &rep);
    rtr_ingest_report_free(&rep);
    if (rc) return -1;
    rtr_build_opts bo = {0};
    rtr_build_report br;
    if (rtr_index_build(g_kb, &bo, &br)) {
        fprintf(stderr, "build: %s\n", rtr_errdetail());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    rtr_kb_close(g_kb);
    rtr_rmtree(g_parent);
    free(g_parent);
    rtr_free(g_kbdir);
    rtr_free(g_extra);
    return 0;
}

static uint64_t g_rng = 0x1234;
static uint32_t rnd(uint32_t n) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng % n);
}

/* Text of chunk id with a fifth of its words (chosen at random) dropped. */
static int perturbed_chunk_text(rtr_store_txn *t, uint64_t id, rtr_buf *out) {
    rtr_chunk c;
    if (rtr_store_get_chunk(t, id, &c)) return -1;
    rtr_buf text = {0};
    rtr_tokenizer_decode(rtr_kb_tokenizer(g_kb), c.tokens, c.n_tokens, &text);
    rtr_buf_terminate(&text);
    char *words[256];
    int n = 0;
    for (char *w = strtok((char *)text.data, " \n\t"); w && n < 256; w = strtok(NULL, " \n\t")) words[n++] = w;
    int drop = n / 5;
    char keep[256];
    memset(keep, 1, sizeof keep);
    for (int i = 0; i < drop;) {
        int j = (int)rnd((uint32_t)n);
        if (keep[j]) { keep[j] = 0; i++; }
    }
    out->len = 0;
    for (int i = 0; i < n; i++)
        if (keep[i]) rtr_buf_printf(out, "%s ", words[i]);
    rtr_buf_free(&text);
    return n >= 20 ? 0 : -1;   /* only chunks with enough words to perturb */
}

static void test_perturbed_chunk_recovery(void **state) {
    (void)state;
    rtr_retriever *r;
    assert_int_equal(rtr_retriever_open(g_kb, NULL, &r), RTR_OK);
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(g_kb), &t), RTR_OK);
    rtr_store_stats st;
    rtr_store_get_stats(t, &st);
    rtr_buf q = {0};
    int trials = 0, found = 0;
    while (trials < 300) {
        uint64_t id = 1 + rnd((uint32_t)(st.next_chunk_id - 1));
        if (perturbed_chunk_text(t, id, &q)) continue;
        rtr_hits hits;
        assert_int_equal(rtr_retriever_search(r, (const char *)q.data, q.len, 1, NULL, &hits), RTR_OK);
        assert_int_equal(hits.n, 1);
        found += hits.items[0].chunk_id == id;
        trials++;
        rtr_hits_free(&hits);
    }
    print_message("perturbed-chunk recovery at rank 1: %d/%d\n", found, trials);
    assert_true(found >= trials * 95 / 100);
    rtr_buf_free(&q);
    rtr_store_txn_end(t);
    rtr_retriever_close(r);
}

static void test_hits_carry_sources(void **state) {
    (void)state;
    rtr_retriever *r;
    assert_int_equal(rtr_retriever_open(g_kb, NULL, &r), RTR_OK);
    rtr_hits hits;
    rtr_search_opts so = {.continuation = 1};
    const char *qtext = "the price of oil and our dependence on foreign energy";
    assert_int_equal(rtr_retriever_search(r, qtext, strlen(qtext), 5, &so, &hits), RTR_OK);
    assert_int_equal(hits.n, 5);
    assert_int_equal(hits.query_chunks, 1);
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(g_kb), &t), RTR_OK);
    for (size_t i = 0; i < hits.n; i++) {
        rtr_hit *h = &hits.items[i];
        if (i) assert_true(h->distance >= hits.items[i - 1].distance);
        assert_true(h->score <= 1.0f && h->score > 0.0f);
        /* the text is exactly the document's span */
        rtr_buf text = {0};
        assert_int_equal(rtr_store_get_text(t, h->doc_id, &text), RTR_OK);
        assert_int_equal(strlen(h->text), h->byte_end - h->byte_start);
        assert_memory_equal(h->text, text.data + h->byte_start, h->byte_end - h->byte_start);
        /* the continuation starts where the chunk ends */
        if (h->continuation) assert_memory_equal(h->continuation, text.data + h->byte_end, strlen(h->continuation));
        assert_non_null(strstr(h->path, "/datasets/sotu/"));
        rtr_buf_free(&text);
    }
    rtr_store_txn_end(t);
    rtr_hits_free(&hits);
    /* bad queries */
    assert_int_equal(rtr_retriever_search(r, "", 0, 5, NULL, &hits), RTR_E_INVALID);
    assert_non_null(strstr(rtr_errdetail(), "empty query"));
    assert_int_equal(rtr_retriever_search(r, "x", 1, 0, NULL, &hits), RTR_E_INVALID);
    /* a query of several chunks is searched chunk by chunk */
    rtr_buf longq = {0};
    for (int i = 0; i < 60; i++) rtr_buf_printf(&longq, "war and peace and taxes %d ", i);
    assert_int_equal(rtr_retriever_search(r, (const char *)longq.data, longq.len, 3, NULL, &hits), RTR_OK);
    assert_true(hits.query_chunks > 1);
    assert_int_equal(hits.n, 3);
    rtr_hits_free(&hits);
    rtr_buf_free(&longq);
    rtr_retriever_close(r);
}

static void test_excluded_never_returned_and_neighbours(void **state) {
    (void)state;
    rtr_retriever *r;
    assert_int_equal(rtr_retriever_open(g_kb, NULL, &r), RTR_OK);
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(g_kb), &t), RTR_OK);
    /* the chunks of document 5 as queries, excluding document 5 itself */
    rtr_doc d;
    assert_int_equal(rtr_store_get_doc(t, 5, &d), RTR_OK);
    size_t n = d.n_chunks < 40 ? d.n_chunks : 40;
    const uint32_t k = 4;
    int32_t *q = malloc(n * 64 * sizeof *q), *tok = malloc(n * k * 128 * sizeof *tok);
    uint64_t *self = malloc(n * sizeof *self);
    int64_t *ids = malloc(n * k * sizeof *ids);
    float *dist = malloc(n * k * sizeof *dist);
    for (size_t i = 0; i < n; i++) {
        rtr_chunk c;
        assert_int_equal(rtr_store_get_chunk(t, d.first_chunk + i, &c), RTR_OK);
        for (int j = 0; j < 64; j++) q[i * 64 + j] = j < (int)c.n_tokens ? (int32_t)c.tokens[j] : -1;
        self[i] = 5;
    }
    uint64_t also[] = {7, 9};   /* and two more documents for everyone */
    rtr_nbr_opts no = {.k = k, .self_doc = self, .exclude = also, .n_exclude = 2};
    assert_int_equal(rtr_retriever_neighbours(r, q, n, &no, &(rtr_nbrs){.ids = ids, .dist = dist, .tokens = tok}),
                     RTR_OK);
    for (size_t i = 0; i < n * k; i++) {
        assert_true(ids[i] > 0);
        rtr_chunk c, nx;
        assert_int_equal(rtr_store_get_chunk(t, (uint64_t)ids[i], &c), RTR_OK);
        assert_true(c.doc_id != 5 && c.doc_id != 7 && c.doc_id != 9);
        /* neighbour = chunk tokens, then its continuation, then padding */
        const int32_t *nb = tok + i * 128;
        assert_memory_equal(nb, c.tokens, c.n_tokens * sizeof *nb);
        if (c.n_tokens < 64) assert_int_equal(nb[c.n_tokens], -1);
        if (!(c.flags & RTR_CHUNK_LAST)) {
            assert_int_equal(rtr_store_get_chunk(t, (uint64_t)ids[i] + 1, &nx), RTR_OK);
            assert_memory_equal(nb + 64, nx.tokens, nx.n_tokens * sizeof *nb);
        } else {
            assert_int_equal(nb[64], -1);
        }
        if (i % k) assert_true(dist[i] >= dist[i - 1]);
    }
    /* without exclusion the chunk finds itself first */
    assert_int_equal(rtr_retriever_neighbours(r, q, n, &(rtr_nbr_opts){.k = 1}, &(rtr_nbrs){.ids = ids, .dist = dist}),
                     RTR_OK);
    size_t self_hits = 0;
    for (size_t i = 0; i < n; i++) self_hits += ids[i] == (int64_t)(d.first_chunk + i);
    assert_true(self_hits >= n * 9 / 10);
    rtr_store_txn_end(t);
    free(q); free(tok); free(self); free(ids); free(dist);
    rtr_retriever_close(r);
}

static void test_deep_search_when_most_is_excluded(void **state) {
    (void)state;
    rtr_retriever *r;
    assert_int_equal(rtr_retriever_open(g_kb, NULL, &r), RTR_OK);
    /* exclude every document but number 40: the hits must come from it alone,
     * found by searching several times deeper */
    uint64_t ex[80];
    size_t n = 0;
    for (uint64_t d = 1; d <= 63; d++)
        if (d != 40) ex[n++] = d;
    rtr_search_opts so = {.exclude_docs = ex, .n_exclude = n};
    const char *qtext = "the economy and jobs";
    rtr_hits hits;
    assert_int_equal(rtr_retriever_search(r, qtext, strlen(qtext), 5, &so, &hits), RTR_OK);
    assert_int_equal(hits.n, 5);
    for (size_t i = 0; i < hits.n; i++) assert_int_equal(hits.items[i].doc_id, 40);
    rtr_hits_free(&hits);
    rtr_retriever_close(r);
}

static void test_deleted_never_returned_incremental_and_compact(void **state) {
    (void)state;
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(g_kb), &t), RTR_OK);
    rtr_doc d;
    assert_int_equal(rtr_store_get_doc(t, 3, &d), RTR_OK);
    char *path = rtr_strndup(d.path, d.path_len);
    rtr_chunk c;
    assert_int_equal(rtr_store_get_chunk(t, d.first_chunk + 1, &c), RTR_OK);
    rtr_buf q = {0};
    rtr_tokenizer_decode(rtr_kb_tokenizer(g_kb), c.tokens, c.n_tokens, &q);
    rtr_store_txn_end(t);
    const char *paths[] = {path};
    uint64_t files, docs;
    assert_int_equal(rtr_kb_remove(g_kb, paths, 1, &files, &docs), RTR_OK);
    rtr_retriever *r;
    assert_int_equal(rtr_retriever_open(g_kb, NULL, &r), RTR_OK);
    rtr_hits hits;
    assert_int_equal(rtr_retriever_search(r, (const char *)q.data, q.len, 20, NULL, &hits), RTR_OK);
    assert_int_equal(hits.n, 20);
    for (size_t i = 0; i < hits.n; i++) assert_true(hits.items[i].doc_id != 3);
    rtr_hits_free(&hits);
    rtr_retriever_close(r);

    /* add a document, build again: searchable without retraining */
    tu_write_str(g_extra, "new.txt", "Zanzibar quokkas juggle marmalade under the xylophone moon every Tuesday.");
    const char *add[] = {g_extra};
    rtr_ingest_opts io = {0};
    rtr_ingest_report rep;
    assert_int_equal(rtr_ingest(g_kb, add, 1, &io, &rep), RTR_OK);
    rtr_ingest_report_free(&rep);
    json_int_t gen0 = json_integer_value(json_object_get(rtr_kb_manifest_get(g_kb, "index"), "generation"));
    rtr_build_opts bo = {.compact = 1};
    rtr_build_report br;
    assert_int_equal(rtr_index_build(g_kb, &bo, &br), RTR_OK);
    assert_false(br.created);
    assert_int_equal(br.embedded, 1);
    assert_int_equal(br.removed, d.n_chunks);   /* the deleted document's vectors */
    assert_int_equal(br.vectors, br.live_chunks);
    assert_int_equal(json_integer_value(json_object_get(rtr_kb_manifest_get(g_kb, "index"), "generation")), gen0 + 1);
    char old[64];
    snprintf(old, sizeof old, "%s/index/g%lld-000.faiss", g_kbdir, (long long)gen0);
    assert_false(rtr_path_exists(old));   /* the previous generation is gone */
    /* nothing new: no new files, the same generation */
    rtr_build_opts again = {0};
    assert_int_equal(rtr_index_build(g_kb, &again, &br), RTR_OK);
    assert_int_equal(br.embedded, 0);
    assert_int_equal(json_integer_value(json_object_get(rtr_kb_manifest_get(g_kb, "index"), "generation")), gen0 + 1);
    assert_int_equal(rtr_retriever_open(g_kb, NULL, &r), RTR_OK);
    const char *qq = "quokkas juggle marmalade";
    assert_int_equal(rtr_retriever_search(r, qq, strlen(qq), 1, NULL, &hits), RTR_OK);
    assert_non_null(strstr(hits.items[0].path, "new.txt"));
    rtr_hits_free(&hits);
    /* a different embedder is refused */
    rtr_embedder *e;
    rtr_hash_embedder_opts ho = {.dim = 128};
    assert_int_equal(rtr_hash_embedder_new(&ho, &e), RTR_OK);
    assert_int_equal(rtr_kb_vectors_check_embedder(g_kb, rtr_retriever_vectors(r), e), RTR_E_MISMATCH);
    rtr_build_opts bo2 = {.embedder = e};
    assert_int_equal(rtr_index_build(g_kb, &bo2, &br), RTR_E_MISMATCH);
    rtr_embedder_free(e);
    rtr_retriever_close(r);
    rtr_buf_free(&q);
    rtr_free(path);
}

static void test_no_index_and_corrupt_index(void **state) {
    (void)state;
    char *dir = rtr_path_join(g_parent, "bare");
    rtr_kb *kb;
    assert_int_equal(rtr_kb_open(dir, RTR_KB_WRITE | RTR_KB_CREATE, rtr_kb_tokenizer(g_kb), NULL, &kb), RTR_OK);
    rtr_retriever *r;
    assert_int_equal(rtr_retriever_open(kb, NULL, &r), RTR_E_NOTFOUND);
    assert_non_null(strstr(rtr_errdetail(), "retro index build"));
    rtr_build_opts bo = {0};
    rtr_build_report br;
    assert_int_equal(rtr_index_build(kb, &bo, &br), RTR_E_INVALID);   /* nothing to index */
    rtr_kb_close(kb);
    /* a shard file truncated behind retro's back */
    const char *file = json_string_value(json_object_get(
        json_array_get(json_object_get(rtr_kb_manifest_get(g_kb, "index"), "shards"), 0), "file"));
    char *idx = rtr_path_join(g_kbdir, "index"), *p = rtr_path_join(idx, file);
    uint8_t *buf;
    size_t len;
    assert_int_equal(rtr_read_file(p, 1u << 30, &buf, &len), RTR_OK);
    tu_write(idx, file, buf, len - 100);
    assert_int_equal(rtr_retriever_open(g_kb, NULL, &r), RTR_E_CORRUPT);   /* its size is checked at open */
    assert_non_null(strstr(rtr_errdetail(), file));
    /* a flipped byte: the open is cheap and does not read it; the first vector search does, and says so */
    buf[len / 2] ^= 0x10;
    tu_write(idx, file, buf, len);
    assert_int_equal(rtr_retriever_open(g_kb, NULL, &r), RTR_OK);
    rtr_hits h;
    assert_int_equal(rtr_retriever_search(r, "taxes", 5, 3, &(rtr_search_opts){.mode = RTR_SEARCH_VECTOR}, &h),
                     RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), "checksum mismatch"));
    assert_non_null(strstr(rtr_errdetail(), file));
    /* the file mended in place (the same inode, which r holds open): a failed load is tried again */
    buf[len / 2] ^= 0x10;
    tu_write(idx, file, buf, len);
    assert_int_equal(rtr_retriever_search(r, "taxes", 5, 3, &(rtr_search_opts){.mode = RTR_SEARCH_VECTOR}, &h), RTR_OK);
    assert_true(h.n == 3);
    rtr_hits_free(&h);
    rtr_retriever_close(r);
    rtr_free(buf);
    rtr_free(p);
    rtr_free(idx);
    rtr_free(dir);
}


/* Ingests the file or directory path into kb. */
static void ingest_path(rtr_kb *kb, const char *path) {
    const char *paths[] = {path};
    rtr_ingest_opts io = {0};
    rtr_ingest_report rep;
    assert_int_equal(rtr_ingest(kb, paths, 1, &io, &rep), RTR_OK);
    rtr_ingest_report_free(&rep);
}

/* A knowledge base g_parent/name over the folder g_parent/name-docs (*docs, rtr_free): a.txt (a 1961
 * speech), c.txt (a 1960 one) and, with a preface, b.txt: the preface, then a.txt's text. Ingested, not
 * built. */
static rtr_kb *speeches_kb(const char *name, const char *preface, char **docs) {
    char sub[64];
    snprintf(sub, sizeof sub, "%s-docs", name);
    char *dir = rtr_path_join(g_parent, name);
    *docs = rtr_path_join(g_parent, sub);
    rtr_mkdirs(*docs);
    uint8_t *a, *c;
    size_t na, nc;
    assert_int_equal(rtr_read_file(RETRO_SOURCE_DIR "/datasets/sotu/1961_john_f_kennedy_d.txt", 1 << 24, &a, &na),
                     RTR_OK);
    assert_int_equal(rtr_read_file(RETRO_SOURCE_DIR "/datasets/sotu/1960_dwight_d_eisenhower_r.txt", 1 << 24, &c, &nc),
                     RTR_OK);
    tu_write(*docs, "a.txt", a, na);
    tu_write(*docs, "c.txt", c, nc);
    if (preface) {
        char *b = malloc(strlen(preface) + na);
        memcpy(b, preface, strlen(preface));
        memcpy(b + strlen(preface), a, na);
        tu_write(*docs, "b.txt", b, strlen(preface) + na);
        free(b);
    }
    rtr_kb *kb;
    assert_int_equal(rtr_kb_open(dir, RTR_KB_WRITE | RTR_KB_CREATE, rtr_kb_tokenizer(g_kb), NULL, &kb), RTR_OK);
    ingest_path(kb, *docs);
    rtr_free(a);
    rtr_free(c);
    rtr_free(dir);
    return kb;
}

/* Aligned neighbours: B is A with a short preface, so B's chunks hold A's
 * text at another offset; re-cut, A's chunk finds in B its own tokens and its
 * true continuation at the aligned positions. A neighbour that shares no run
 * of min_run tokens stays the paper's. */
static void test_aligned_neighbours(void **state) {
    (void)state;
    char *docs;
    rtr_kb *kb = speeches_kb("align", "A copy, kept for the record.\n\n", &docs);
    rtr_build_opts bo = {0};
    rtr_build_report br;
    assert_int_equal(rtr_index_build(kb, &bo, &br), RTR_OK);
    rtr_retriever *r;
    assert_int_equal(rtr_retriever_open(kb, NULL, &r), RTR_OK);
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    uint64_t ida = 0, idb = 0, idc = 0, *dids;
    size_t nd;
    const char *names[] = {"a.txt", "b.txt", "c.txt"};
    uint64_t *outs[] = {&ida, &idb, &idc};
    for (int i = 0; i < 3; i++) {
        char *p = rtr_path_join(docs, names[i]), real[PATH_MAX];
        assert_non_null(realpath(p, real));
        assert_int_equal(rtr_store_file_docs(t, real, &dids, &nd), RTR_OK);
        assert_int_equal(nd, 1);
        *outs[i] = dids[0];
        rtr_free(dids);
        rtr_free(p);
    }
    rtr_doc da, dc;
    assert_int_equal(rtr_store_get_doc(t, ida, &da), RTR_OK);
    assert_int_equal(rtr_store_get_doc(t, idc, &dc), RTR_OK);
    /* queries: chunks 1 .. 20 of A, neighbours never from A */
    enum { N = 20, K = 2 };
    assert_true(da.n_chunks > N + 2);
    int32_t q[N * 64], tok[N * K * 128], paper[N * K * 128];
    uint64_t self[N];
    int64_t ids[N * K];
    int32_t shifts[N * K];
    for (int i = 0; i < N; i++) {
        rtr_chunk ch;
        assert_int_equal(rtr_store_get_chunk(t, da.first_chunk + 1 + (uint64_t)i, &ch), RTR_OK);
        assert_int_equal(ch.n_tokens, 64);
        memcpy(q + i * 64, ch.tokens, sizeof ch.tokens);
        self[i] = ida;
    }
    /* the paper's neighbours and the aligned ones from one call, from every retriever */
    for (int mode = RTR_SEARCH_VECTOR; mode <= RTR_SEARCH_HYBRID; mode++) {
        rtr_nbr_opts no = {.k = K, .self_doc = self, .align = 8, .mode = mode};
        rtr_nbrs out = {.ids = ids, .tokens = paper, .aligned = tok, .shifts = shifts};
        assert_int_equal(rtr_retriever_neighbours(r, q, N, &no, &out), RTR_OK);
        int in_b = 0, exact = 0;
        for (int i = 0; i < N; i++) {
            rtr_chunk nb;
            assert_int_equal(rtr_store_get_chunk(t, (uint64_t)ids[i * K], &nb), RTR_OK);
            if (nb.doc_id != idb) continue;
            in_b++;
            assert_true(shifts[i * K] != 0);
            assert_true(shifts[i * K] > -64 && shifts[i * K] < 64);
            /* the aligned neighbour: this chunk of A, then A's next chunk */
            rtr_chunk next;
            assert_int_equal(rtr_store_get_chunk(t, da.first_chunk + 2 + (uint64_t)i, &next), RTR_OK);
            const int32_t *al = tok + i * K * 128;
            exact += !memcmp(al, q + i * 64, 64 * sizeof *al) &&
                     !memcmp(al + 64, next.tokens, next.n_tokens * sizeof *al);
            /* and it is B's text d tokens on from the paper's neighbour */
            int d = shifts[i * K];
            const int32_t *pp = paper + i * K * 128;
            for (int j = 0; j < 128; j++)
                if (j + d >= 0 && j + d < 128 && pp[j + d] != -1) assert_int_equal(al[j], pp[j + d]);
        }
        print_message("retriever %d: %d/%d first neighbours in B, %d aligned exactly\n", mode, in_b, N, exact);
        assert_true(in_b >= N * 9 / 10);
        assert_true(exact >= in_b * 9 / 10);
    }
    /* a neighbour from C shares no long run with A: it stays as retrieved */
    int64_t cid[N * K];
    for (int i = 0; i < N * K; i++) cid[i] = (int64_t)(dc.first_chunk + 3);
    rtr_chunk c3, c4;
    assert_int_equal(rtr_store_get_chunk(t, dc.first_chunk + 3, &c3), RTR_OK);
    assert_int_equal(rtr_store_get_chunk(t, dc.first_chunk + 4, &c4), RTR_OK);
    assert_int_equal(rtr_retriever_align(r, q, N, K, cid, 8, tok, shifts), RTR_OK);
    int kept = 0;
    for (int i = 0; i < N * K; i++)
        kept += shifts[i] == 0 && !memcmp(tok + i * 128, c3.tokens, sizeof c3.tokens) &&
                !memcmp(tok + i * 128 + 64, c4.tokens, sizeof c4.tokens);
    assert_true(kept >= N * K * 9 / 10);
    assert_int_equal(rtr_retriever_align(r, q, N, K, cid, 0, tok, NULL), RTR_E_INVALID);
    rtr_store_txn_end(t);
    rtr_retriever_close(r);
    rtr_kb_close(kb);
    rtr_free(docs);
}

/* --- neighbours from every retriever --------------------------------------------------------- */
static const int MODES[] = {RTR_SEARCH_VECTOR, RTR_SEARCH_LEXICAL, RTR_SEARCH_HYBRID};
static const char *const MODE_NAME[] = {"default", "vector", "lexical", "hybrid"};

/* q (64) = chunk id's tokens, -1 padded. */
static void chunk_query(rtr_store_txn *t, uint64_t id, int32_t *q) {
    rtr_chunk c;
    assert_int_equal(rtr_store_get_chunk(t, id, &c), RTR_OK);
    for (int j = 0; j < 64; j++) q[j] = j < (int)c.n_tokens ? (int32_t)c.tokens[j] : -1;
}

/* The document read from dir/name. */
static uint64_t doc_of(rtr_store_txn *t, const char *dir, const char *name) {
    char *p = rtr_path_join(dir, name), real[PATH_MAX];
    assert_non_null(realpath(p, real));
    uint64_t *ids, id;
    size_t n;
    assert_int_equal(rtr_store_file_docs(t, real, &ids, &n), RTR_OK);
    assert_int_equal(n, 1);
    id = ids[0];
    rtr_free(ids);
    rtr_free(p);
    return id;
}

/* The squared L2 distance between the knowledge base's embeddings of the texts of two token runs. */
static float embedding_distance(rtr_retriever *r, const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
    rtr_embedder *e = rtr_kb_vectors_embedder(rtr_retriever_vectors(r));
    rtr_buf ta = {0}, tb = {0};
    assert_int_equal(rtr_tokenizer_decode(rtr_kb_tokenizer(rtr_retriever_kb(r)), a, na, &ta), RTR_OK);
    assert_int_equal(rtr_tokenizer_decode(rtr_kb_tokenizer(rtr_retriever_kb(r)), b, nb, &tb), RTR_OK);
    rtr_text texts[2] = {{(const char *)ta.data, ta.len}, {(const char *)tb.data, tb.len}};
    float *v = malloc(2 * e->dim * sizeof *v), d = 0;
    assert_int_equal(rtr_embedder_embed(e, texts, 2, v), RTR_OK);
    for (uint32_t i = 0; i < e->dim; i++) d += (v[i] - v[e->dim + i]) * (v[i] - v[e->dim + i]);
    free(v);
    rtr_buf_free(&ta);
    rtr_buf_free(&tb);
    return d;
}

/* A knowledge base of two speeches, a.txt and c.txt, and dup.txt holding exactly the text of a.txt's
 * chunk 5; built without the lexical index first: lexical and hybrid neighbours are refused with the
 * command that makes it, vector ones are not; then with it. Lexical neighbours of a.txt's chunk 5
 * (never from a.txt) start with dup.txt's chunk in every mode that reads words; each neighbour's
 * distance is that of the two texts embedded. */
static void test_neighbours_by_retriever(void **state) {
    (void)state;
    char *docs;
    rtr_kb *kb = speeches_kb("modes", NULL, &docs);
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    uint64_t ida = doc_of(t, docs, "a.txt");
    rtr_doc da;
    assert_int_equal(rtr_store_get_doc(t, ida, &da), RTR_OK);
    int32_t q[64];
    chunk_query(t, da.first_chunk + 5, q);
    rtr_buf dup = {0};
    assert_int_equal(rtr_tokenizer_decode(rtr_kb_tokenizer(kb), (const uint32_t *)q, 64, &dup), RTR_OK);
    rtr_store_txn_end(t);
    tu_write(docs, "dup.txt", dup.data, dup.len);
    ingest_path(kb, docs);
    rtr_build_opts bo = {.no_lexical = 1};
    rtr_build_report br;
    assert_int_equal(rtr_index_build(kb, &bo, &br), RTR_OK);

    enum { K = 3 };
    uint64_t self = ida;
    int64_t ids[K];
    float dist[K];
    rtr_retriever *r;
    assert_int_equal(rtr_retriever_open(kb, NULL, &r), RTR_OK);
    for (int mi = 1; mi < 3; mi++) {   /* no lexical index yet */
        rtr_nbr_opts no = {.k = K, .self_doc = &self, .mode = MODES[mi]};
        assert_int_equal(rtr_retriever_neighbours(r, q, 1, &no, &(rtr_nbrs){.ids = ids, .dist = dist}), RTR_E_NOTFOUND);
        assert_non_null(strstr(rtr_errdetail(), "retro index build"));
        assert_null(strchr(rtr_errdetail(), '\n'));
        assert_int_equal(rtr_retriever_mode_ready(r, MODES[mi], "the model's neighbours"), RTR_E_NOTFOUND);
        assert_non_null(strstr(rtr_errdetail(), "the model's neighbours"));
    }
    assert_int_equal(rtr_retriever_mode_ready(r, RTR_SEARCH_VECTOR, NULL), RTR_OK);
    assert_int_equal(rtr_retriever_mode_ready(r, 7, NULL), RTR_E_INVALID);
    rtr_nbr_opts bad = {.k = K, .mode = 7};
    assert_int_equal(rtr_retriever_neighbours(r, q, 1, &bad, &(rtr_nbrs){.ids = ids}), RTR_E_INVALID);
    rtr_nbr_opts vec = {.k = K, .self_doc = &self, .mode = RTR_SEARCH_VECTOR};
    assert_int_equal(rtr_retriever_neighbours(r, q, 1, &vec, &(rtr_nbrs){.ids = ids, .dist = dist}), RTR_OK);
    rtr_retriever_close(r);
    bo.no_lexical = 0;
    assert_int_equal(rtr_index_build(kb, &bo, &br), RTR_OK);
    assert_true(br.lexical_chunks > 0);

    assert_int_equal(rtr_retriever_open(kb, NULL, &r), RTR_OK);
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    uint64_t iddup = doc_of(t, docs, "dup.txt");
    for (int mi = 1; mi < 3; mi++) {
        rtr_nbr_opts no = {.k = K, .self_doc = &self, .mode = MODES[mi]};
        int32_t tok[K * 128];
        assert_int_equal(rtr_retriever_neighbours(r, q, 1, &no, &(rtr_nbrs){.ids = ids, .dist = dist, .tokens = tok}),
                         RTR_OK);
        rtr_chunk nb;
        assert_int_equal(rtr_store_get_chunk(t, (uint64_t)ids[0], &nb), RTR_OK);
        print_message("%s: first neighbour from document %llu (dup.txt is %llu), distance %.4f\n", MODE_NAME[MODES[mi]],
                      (unsigned long long)nb.doc_id, (unsigned long long)iddup, dist[0]);
        assert_int_equal(nb.doc_id, iddup);
        for (int j = 0; j < K; j++) {
            assert_true(ids[j] >= 0);
            assert_int_equal(rtr_store_get_chunk(t, (uint64_t)ids[j], &nb), RTR_OK);
            assert_true(nb.doc_id != ida);
            assert_memory_equal(tok + j * 128, nb.tokens, nb.n_tokens * sizeof *tok);   /* the paper's neighbour */
            float want = embedding_distance(r, (const uint32_t *)q, 64, nb.tokens, nb.n_tokens);
            assert_float_equal(dist[j], want, 1e-4);
        }
        assert_true(dist[0] < 1e-3);   /* the same text */
    }
    rtr_store_txn_end(t);
    rtr_retriever_close(r);
    rtr_kb_close(kb);
    rtr_buf_free(&dup);
    rtr_free(docs);
}

/* In every mode: a document's own chunks, other excluded documents and a deleted document's chunks
 * (still in the lexical postings until a compaction) are never neighbours; without the filters the
 * chunks find themselves. And the first k of a hybrid (and lexical) search for a chunk's text are
 * its hybrid (lexical) neighbours, in the same order. */
static void test_neighbours_filters_in_every_mode(void **state) {
    (void)state;
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(g_kb), &t), RTR_OK);
    rtr_doc d, gone;
    assert_int_equal(rtr_store_get_doc(t, 5, &d), RTR_OK);
    assert_int_equal(rtr_store_get_doc(t, 12, &gone), RTR_OK);
    char *gone_path = rtr_strndup(gone.path, gone.path_len);
    enum { N = 12, K = 4 };
    assert_true(d.n_chunks >= N && gone.n_chunks >= N);
    int32_t q[2 * N * 64];   /* N chunks of document 5, then N of document 12 */
    uint64_t self[2 * N];
    for (int i = 0; i < N; i++) {
        chunk_query(t, d.first_chunk + (uint64_t)i, q + i * 64);
        chunk_query(t, gone.first_chunk + (uint64_t)i, q + (N + i) * 64);
        self[i] = 5;
        self[N + i] = 0;
    }
    rtr_store_txn_end(t);
    rtr_retriever *r;
    assert_int_equal(rtr_retriever_open(g_kb, NULL, &r), RTR_OK);
    int64_t ids[2 * N * K];
    float dist[2 * N * K];
    /* before the deletion every mode finds a chunk itself */
    for (int mi = 0; mi < 3; mi++) {
        rtr_nbr_opts no = {.k = 1, .mode = MODES[mi]};
        assert_int_equal(rtr_retriever_neighbours(r, q, 2 * N, &no, &(rtr_nbrs){.ids = ids}), RTR_OK);
        int found = 0;
        for (int i = 0; i < N; i++)
            found += (ids[i] == (int64_t)(d.first_chunk + (uint64_t)i)) +
                     (ids[N + i] == (int64_t)(gone.first_chunk + (uint64_t)i));
        print_message("%s: %d/%d chunks are their own first neighbour\n", MODE_NAME[MODES[mi]], found, 2 * N);
        assert_true(found >= 2 * N * 9 / 10);
    }
    const char *rm[] = {gone_path};
    uint64_t files, docs;
    assert_int_equal(rtr_kb_remove(g_kb, rm, 1, &files, &docs), RTR_OK);
    assert_int_equal(docs, 1);
    uint64_t also[] = {7, 9};
    for (int mi = 0; mi < 3; mi++) {
        rtr_nbr_opts no = {.k = K, .self_doc = self, .exclude_doc = 11, .exclude = also, .n_exclude = 2,
                           .mode = MODES[mi]};
        assert_int_equal(rtr_retriever_neighbours(r, q, 2 * N, &no, &(rtr_nbrs){.ids = ids, .dist = dist}), RTR_OK);
        assert_int_equal(rtr_store_read_begin(rtr_kb_store(g_kb), &t), RTR_OK);
        for (int i = 0; i < 2 * N * K; i++) {
            assert_true(ids[i] > 0);
            assert_true(isfinite(dist[i]));
            rtr_chunk c;
            assert_int_equal(rtr_store_get_chunk(t, (uint64_t)ids[i], &c), RTR_OK);   /* not deleted */
            assert_true(c.doc_id != 7 && c.doc_id != 9 && c.doc_id != 11 && c.doc_id != gone.id);
            if (i < N * K) assert_true(c.doc_id != 5);
            if (MODES[mi] == RTR_SEARCH_VECTOR && i % K) assert_true(dist[i] >= dist[i - 1]);
        }
        rtr_store_txn_end(t);
    }
    /* hybrid and lexical neighbours are the top of the search's ranking in that mode */
    for (int mi = 1; mi < 3; mi++) {
        assert_int_equal(rtr_store_read_begin(rtr_kb_store(g_kb), &t), RTR_OK);
        rtr_encoder *enc;
        assert_int_equal(rtr_encoder_new(rtr_kb_tokenizer(g_kb), &enc), RTR_OK);
        int compared = 0;
        for (int i = 0; i < N; i++) {
            rtr_chunk c;
            assert_int_equal(rtr_store_get_chunk(t, d.first_chunk + (uint64_t)i, &c), RTR_OK);
            rtr_buf text = {0};
            rtr_u32vec tk = {0};
            assert_int_equal(rtr_tokenizer_decode(rtr_kb_tokenizer(g_kb), c.tokens, c.n_tokens / 2, &text), RTR_OK);
            assert_int_equal(rtr_encoder_encode(enc, text.data, text.len, &tk), RTR_OK);
            int32_t qq[64];
            for (int j = 0; j < 64; j++) qq[j] = j < (int)tk.len ? (int32_t)tk.data[j] : -1;
            uint64_t s5 = 5;
            rtr_nbr_opts no = {.k = K, .self_doc = &s5, .exclude = also, .n_exclude = 2, .mode = MODES[mi]};
            assert_int_equal(rtr_retriever_neighbours(r, qq, 1, &no, &(rtr_nbrs){.ids = ids}), RTR_OK);
            uint64_t ex[] = {9, 5, 7};
            rtr_search_opts so = {.exclude_docs = ex, .n_exclude = 3, .mode = MODES[mi]};
            rtr_hits hits;
            assert_int_equal(rtr_retriever_search(r, (const char *)text.data, text.len, K, &so, &hits), RTR_OK);
            assert_int_equal(hits.query_chunks, 1);
            assert_int_equal(hits.n, K);
            for (int j = 0; j < K; j++) assert_int_equal(ids[j], (int64_t)hits.items[j].chunk_id);
            if (MODES[mi] == RTR_SEARCH_HYBRID)
                for (int j = 0; j < K; j++) assert_true(hits.items[j].found_by != 0);
            compared++;
            rtr_hits_free(&hits);
            rtr_buf_free(&text);
            rtr_u32vec_free(&tk);
        }
        assert_int_equal(compared, N);
        rtr_encoder_free(enc);
        rtr_store_txn_end(t);
    }
    rtr_retriever_close(r);
    rtr_free(gone_path);
}

/* Every hybrid hit carries both sides' scores for the whole query, whichever side found it: its BM25
 * score as the exhaustive lexical search gives it, and its vector score measured in the embedder's full
 * space (the hash space under a projection); each side's rank orders those scores, and the fused score
 * is the sum of 1 / (60 + rank) over the sides that rank it. On g_kb and on the same speeches under a
 * 32-component projection. */
static void check_hybrid_hits(rtr_kb *kb, const char *what) {
    rtr_retriever *r;
    assert_int_equal(rtr_retriever_open(kb, NULL, &r), RTR_OK);
    rtr_embedder *e = rtr_kb_vectors_embedder(rtr_retriever_vectors(r));
    rtr_embedder *full = rtr_pca_embedder_inner(e) ? rtr_pca_embedder_inner(e) : e;
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    rtr_store_stats st;
    assert_int_equal(rtr_store_get_stats(t, &st), RTR_OK);
    size_t checked = 0, both = 0, lexical_only = 0;
    for (int qi = 0; qi < 12; qi++) {
        char q[1024];
        size_t len = 0;
        if (qi < 2) {
            len = (size_t)snprintf(q, sizeof q, "%s", qi ? "the federal budget deficit" : "our armed forces abroad");
        } else {   /* 30 words of a chunk, every fifth dropped */
            rtr_chunk c;
            assert_int_equal(rtr_store_get_chunk(t, 1 + (uint64_t)qi * st.n_chunks / 13, &c), RTR_OK);
            rtr_buf text = {0};
            assert_int_equal(rtr_tokenizer_decode(rtr_kb_tokenizer(kb), c.tokens, c.n_tokens, &text), RTR_OK);
            rtr_buf_terminate(&text);
            int w = 0;
            for (char *tok = strtok((char *)text.data, " \n"); tok && w < 30; tok = strtok(NULL, " \n"), w++)
                if (w % 5 != 4) len += (size_t)snprintf(q + len, sizeof q - len, "%s ", tok);
            rtr_buf_free(&text);
        }
        rtr_search_opts so = {.mode = RTR_SEARCH_HYBRID};
        rtr_hits h;
        assert_int_equal(rtr_retriever_search(r, q, len, 10, &so, &h), RTR_OK);
        assert_int_equal(h.query_chunks, 1);
        assert_int_equal(h.n, 10);
        rtr_lex_hit *all;
        size_t na;
        assert_int_equal(rtr_lex_search(t, q, len, 100000, &all, &na), RTR_OK);
        float *v = malloc(2 * full->dim * sizeof *v);
        for (size_t i = 0; i < h.n; i++) {
            const rtr_hit *x = &h.items[i];
            float bm25 = 0;
            for (size_t j = 0; j < na; j++)
                if (all[j].chunk_id == x->chunk_id) bm25 = all[j].score;
            assert_true(x->lexical_score == bm25);
            rtr_text texts[2] = {{q, len}, {x->text, strlen(x->text)}};
            assert_int_equal(rtr_embedder_embed(full, texts, 2, v), RTR_OK);
            float dot = 0;
            for (uint32_t d = 0; d < full->dim; d++) dot += v[d] * v[full->dim + d];
            assert_float_equal(x->vector_score, dot > 0 ? dot : 0, 1e-4);
            float want = (x->vector_rank ? 1.0f / (60.0f + (float)x->vector_rank) : 0) +
                         (x->lexical_rank ? 1.0f / (60.0f + (float)x->lexical_rank) : 0);
            assert_float_equal(x->score, want, 1e-6);
            assert_true(x->found_by != 0);
            assert_true((x->vector_rank == 0) == (x->vector_score <= 0));
            assert_true((x->lexical_rank == 0) == (x->lexical_score <= 0));
            for (size_t j = 0; j < i; j++) {
                const rtr_hit *y = &h.items[j];
                assert_true(y->score >= x->score);
                if (x->vector_rank && y->vector_rank)
                    assert_true((x->vector_rank < y->vector_rank) == (x->vector_score > y->vector_score ||
                                (x->vector_score == y->vector_score && x->chunk_id < y->chunk_id)));
                if (x->lexical_rank && y->lexical_rank)
                    assert_true((x->lexical_rank < y->lexical_rank) == (x->lexical_score > y->lexical_score ||
                                (x->lexical_score == y->lexical_score && x->chunk_id < y->chunk_id)));
            }
            both += x->found_by == (RTR_FOUND_VECTOR | RTR_FOUND_LEXICAL);
            lexical_only += x->found_by == RTR_FOUND_LEXICAL;
            checked++;
        }
        free(v);
        rtr_free(all);
        rtr_hits_free(&h);
    }
    print_message("%s: %zu hybrid hits checked, %zu found by both sides, %zu by the words alone\n", what, checked,
                  both, lexical_only);
    assert_int_equal(checked, 120);
    assert_true(both > 0);
    rtr_store_txn_end(t);
    rtr_retriever_close(r);
}

static void test_hybrid_scores_both_sides(void **state) {
    (void)state;
    check_hybrid_hits(g_kb, "hash vectors");
    char *dir = rtr_path_join(g_parent, "projected");
    rtr_kb *kb;
    assert_int_equal(rtr_kb_open(dir, RTR_KB_WRITE | RTR_KB_CREATE, rtr_kb_tokenizer(g_kb), NULL, &kb), RTR_OK);
    ingest_path(kb, RETRO_SOURCE_DIR "/datasets/sotu");
    rtr_build_opts bo = {.project = 32};
    rtr_build_report br;
    assert_int_equal(rtr_index_build(kb, &bo, &br), RTR_OK);
    assert_int_equal(br.dim, 32);
    check_hybrid_hits(kb, "32 components");
    rtr_kb_close(kb);
    rtr_free(dir);
}

/* Lookups of RTR_NBR_BATCH chunks or more search an inverted file through its batch codes: their
 * neighbours are never from the query's own document, come in ascending distance, each distance that
 * of the two texts embedded, and mostly agree with the single-query search's; fewer chunks search as
 * single queries do, with the same answers as a retriever told never to use the codes. */
static void test_batch_neighbours(void **state) {
    (void)state;
    char *dir = rtr_path_join(g_parent, "ivf");
    rtr_kb *kb;
    assert_int_equal(rtr_kb_open(dir, RTR_KB_WRITE | RTR_KB_CREATE, rtr_kb_tokenizer(g_kb), NULL, &kb), RTR_OK);
    ingest_path(kb, RETRO_SOURCE_DIR "/datasets/sotu");
    rtr_build_opts bo = {.project = 32, .factory = "IVF64,Flat", .shards = 2, .nprobe = 16, .no_lexical = 1};
    rtr_build_report br;
    assert_int_equal(rtr_index_build(kb, &bo, &br), RTR_OK);
    rtr_retriever *r, *plain;
    assert_int_equal(rtr_retriever_open(kb, NULL, &r), RTR_OK);
    assert_int_equal(rtr_retriever_open(kb, &(rtr_retriever_opts){.batch_nprobe = -1}, &plain), RTR_OK);
    enum { N = RTR_NBR_BATCH + 200, K = 4 };
    int32_t *q = malloc((size_t)N * RTR_CHUNK_TOKENS * sizeof *q);
    uint64_t *self = malloc(N * sizeof *self), after = 0;
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    rtr_store_stats st;
    assert_int_equal(rtr_store_get_stats(t, &st), RTR_OK);
    uint64_t stride = st.n_chunks / N;
    assert_true(stride >= 1);
    rtr_chunk c;
    for (size_t i = 0; i < N; i++) {   /* chunks spread over the speeches */
        for (uint64_t skip = 0; skip < stride; skip++) {
            assert_int_equal(rtr_store_next_chunk(t, after, &c), RTR_OK);
            after = c.id;
        }
        chunk_query(t, c.id, q + i * RTR_CHUNK_TOKENS);
        self[i] = c.doc_id;
    }
    int64_t *ib = malloc(N * K * sizeof *ib), *ip = malloc(N * K * sizeof *ip);
    float *db = malloc(N * K * sizeof *db), *dp = malloc(N * K * sizeof *dp);
    rtr_nbr_opts no = {.k = K, .self_doc = self};
    assert_int_equal(rtr_retriever_neighbours(r, q, N, &no, &(rtr_nbrs){.ids = ib, .dist = db}), RTR_OK);
    assert_int_equal(rtr_retriever_neighbours(plain, q, N, &no, &(rtr_nbrs){.ids = ip, .dist = dp}), RTR_OK);
    size_t agree = 0;
    for (size_t i = 0; i < N; i++)
        for (int a = 0; a < K; a++) {
            int64_t id = ib[i * K + a];
            assert_true(id >= 0);
            rtr_chunk n;
            assert_int_equal(rtr_store_get_chunk(t, (uint64_t)id, &n), RTR_OK);
            assert_true(n.doc_id != self[i]);
            if (a) assert_true(db[i * K + a - 1] <= db[i * K + a]);
            if (i % 50 == 0) {   /* the distance of the two texts embedded */
                uint32_t nq = 0;
                while (nq < RTR_CHUNK_TOKENS && q[i * RTR_CHUNK_TOKENS + nq] >= 0) nq++;
                float e = embedding_distance(r, (const uint32_t *)q + i * RTR_CHUNK_TOKENS, nq, n.tokens, n.n_tokens);
                assert_float_equal(db[i * K + a], e, 2e-3);
            }
            for (int b = 0; b < K; b++) agree += id == ip[i * K + b];
        }
    print_message("batch neighbours: %.3f of the single-query search's\n", (double)agree / (double)(N * K));
    assert_true(agree >= (size_t)N * K * 8 / 10);
    rtr_vindex *vx;
    assert_int_equal(rtr_retriever_vindex(r, &vx), RTR_OK);
    assert_true(rtr_vindex_batch_bytes(vx) > 0);   /* the codes were made and searched */
    assert_int_equal(rtr_retriever_vindex(plain, &vx), RTR_OK);
    assert_int_equal(rtr_vindex_batch_bytes(vx), 0);
    /* a small call searches as single queries do */
    assert_int_equal(rtr_retriever_neighbours(r, q, 100, &no, &(rtr_nbrs){.ids = ib, .dist = db}), RTR_OK);
    assert_memory_equal(ib, ip, 100 * K * sizeof *ib);
    rtr_store_txn_end(t);
    rtr_retriever_close(r);
    rtr_retriever_close(plain);
    rtr_kb_close(kb);
    free(q); free(self); free(ib); free(ip); free(db); free(dp);
    rtr_free(dir);
}

/* Reports of rtr_live retrievals: the chunk and the neighbours' ids, in call order. */
static int64_t g_rep[64][9];
static int g_nrep;
static void record_report(void *ctx, int64_t chunk, const rtr_live_hit *hits, uint32_t k) {
    (void)ctx;
    assert_true(g_nrep < 64 && k <= 8);
    g_rep[g_nrep][0] = chunk;
    for (uint32_t j = 0; j < k; j++) g_rep[g_nrep][1 + j] = hits[j].chunk_id;
    g_nrep++;
}

/* Several sessions' chunks retrieved at once (rtr_live_retrieve_many): lives that differ only in the
 * document they exclude get, in one search, what each gets alone, with the same reports (each its own
 * document excluded: its own chunk's document is never a neighbour); lives that differ otherwise are
 * retrieved one by one, with the same answers too. */
static void test_live_retrieve_many(void **state) {
    (void)state;
    rtr_retriever *r;
    assert_int_equal(rtr_retriever_open(g_kb, NULL, &r), RTR_OK);
    enum { N = 4, K = 3 };
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(g_kb), &t), RTR_OK);
    int32_t q[N * RTR_CHUNK_TOKENS];
    uint64_t doc[N], after = 0;
    for (int i = 0; i < N; i++) {   /* chunks of four different documents */
        rtr_chunk c;
        do {
            assert_int_equal(rtr_store_next_chunk(t, after, &c), RTR_OK);
            after = c.id;
        } while (i && c.doc_id == doc[i - 1]);
        chunk_query(t, c.id, q + i * RTR_CHUNK_TOKENS);
        doc[i] = c.doc_id;
        after += 400;   /* further on */
    }
    rtr_live lv[N];
    void *ctx[N];
    int64_t first[N];
    for (int i = 0; i < N; i++) {
        lv[i] = (rtr_live){.r = r, .k = K, .exclude_doc = doc[i], .min_score = -INFINITY, .report = record_report};
        ctx[i] = &lv[i];
        first[i] = 10 * i + 3;
    }
    for (int round = 0; round < 2; round++) {   /* alike, then one of them asking for fewer neighbours */
        if (round) lv[2].k = K - 1;
        int32_t *one = calloc((size_t)N * K * RTR_NBR_TOKENS, sizeof *one);
        int32_t *many = calloc((size_t)N * K * RTR_NBR_TOKENS, sizeof *many);
        int64_t rep_one[N][9];
        size_t at = 0;
        g_nrep = 0;
        for (int i = 0; i < N; i++) {
            assert_int_equal(rtr_live_retrieve(&lv[i], q + i * RTR_CHUNK_TOKENS, 1, first[i], one + at), RTR_OK);
            at += (size_t)lv[i].k * RTR_NBR_TOKENS;
        }
        assert_int_equal(g_nrep, N);
        memcpy(rep_one, g_rep, sizeof rep_one);
        g_nrep = 0;
        if (round == 0) {
            assert_int_equal(rtr_live_retrieve_many(ctx, q, N, first, many), RTR_OK);
        } else {   /* the layout rtr_batch_feed hands over: k of the model for every row */
            for (int i = 0; i < N; i++)
                assert_int_equal(rtr_live_retrieve_many(ctx + i, q + i * RTR_CHUNK_TOKENS, 1, first + i,
                                                         many + (size_t)i * K * RTR_NBR_TOKENS), RTR_OK);
            at = 0;
            for (int i = 0; i < N; i++) {   /* compare row by row */
                assert_memory_equal(one + at, many + (size_t)i * K * RTR_NBR_TOKENS,
                                    (size_t)lv[i].k * RTR_NBR_TOKENS * sizeof *one);
                at += (size_t)lv[i].k * RTR_NBR_TOKENS;
            }
        }
        assert_int_equal(g_nrep, N);
        for (int i = 0; i < N; i++) {
            assert_int_equal(g_rep[i][0], first[i]);
            for (uint32_t j = 0; j < lv[i].k; j++) {
                assert_int_equal(g_rep[i][1 + j], rep_one[i][1 + j]);
                rtr_chunk c;
                assert_int_equal(rtr_store_get_chunk(t, (uint64_t)g_rep[i][1 + j], &c), RTR_OK);
                assert_true(c.doc_id != doc[i]);
            }
        }
        if (round == 0) assert_memory_equal(one, many, (size_t)N * K * RTR_NBR_TOKENS * sizeof *one);
        free(one);
        free(many);
    }
    rtr_store_txn_end(t);
    rtr_retriever_close(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_perturbed_chunk_recovery),
        cmocka_unit_test(test_hits_carry_sources),
        cmocka_unit_test(test_excluded_never_returned_and_neighbours),
        cmocka_unit_test(test_deep_search_when_most_is_excluded),
        cmocka_unit_test(test_deleted_never_returned_incremental_and_compact),
        cmocka_unit_test(test_no_index_and_corrupt_index),
        cmocka_unit_test(test_aligned_neighbours),
        cmocka_unit_test(test_neighbours_by_retriever),
        cmocka_unit_test(test_neighbours_filters_in_every_mode),
        cmocka_unit_test(test_hybrid_scores_both_sides),
        cmocka_unit_test(test_batch_neighbours),
        cmocka_unit_test(test_live_retrieve_many),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
