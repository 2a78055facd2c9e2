/* test_parts.c - a knowledge base of partitions in one process (index/parts.h, retriever/multi.h):
 * files spread by their paths' hash, ids that name their partition, a build trained once whose
 * vector search equals the one of a plain knowledge base of the same files, incremental adds and
 * builds, trained state shared by every partition, hits packed for other ranks and refused when
 * corrupt. The same under mpirun: tests/e2e/mpi.sh. */
#define _GNU_SOURCE
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <xxhash.h>

#include "index/build.h"
#include "index/ingest.h"
#include "index/parts.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/split.h"
#include "lib/status.h"
#include "include/retro.h"
#include "retriever/dataset.h"
#include "retriever/multi.h"
#include "testutil.h"

#define P 3

static char *g_dir, *g_plain, *g_split, *g_corpus;
static rtr_tokenizer *g_tok;

static int setup(void **state) {
    (void)state;
    if (rtr_tokenizer_load(RETRO_SOURCE_DIR "/datasets/tokenizer.rtok", &g_tok)) return -1;
    g_dir = tu_tmpdir("parts");
    g_plain = rtr_path_join(g_dir, "plain");
    g_split = rtr_path_join(g_dir, "split");
    g_corpus = RETRO_SOURCE_DIR "/datasets/sotu";
    return g_dir && g_plain && g_split ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    rtr_rmtree(g_dir);
    free(g_dir);
    rtr_free(g_plain);
    rtr_free(g_split);
    rtr_tokenizer_free(g_tok);
    return 0;
}

static void add(const char *dir, uint32_t count, const char *path, rtr_ingest_report *rep) {
    rtr_parts *ps = NULL;
    int rc = rtr_parts_open(dir, RTR_KB_WRITE | RTR_KB_CREATE, count, g_tok, rtr_comm_world(), &ps);
    if (rc) fprintf(stderr, "%s\n", rtr_errdetail());
    assert_int_equal(rc, RTR_OK);
    const char *paths[] = {path};
    rtr_ingest_opts io = {.threads = 2};
    rc = rtr_parts_ingest(ps, paths, 1, &io, rep);
    if (rc) fprintf(stderr, "%s\n", rtr_errdetail());
    assert_int_equal(rc, RTR_OK);
    rtr_parts_close(ps);
}

static void build(const char *dir, const rtr_build_opts *o, rtr_build_report *rep) {
    rtr_parts *ps = NULL;
    assert_int_equal(rtr_parts_open(dir, RTR_KB_WRITE, 0, NULL, rtr_comm_world(), &ps), RTR_OK);
    int rc = rtr_parts_build(ps, o, rep);
    if (rc) fprintf(stderr, "%s\n", rtr_errdetail());
    assert_int_equal(rc, RTR_OK);
    rtr_parts_close(ps);
}

static void search(const char *dir, const char *q, int mode, uint32_t k, rtr_hits *hits) {
    rtr_parts *ps = NULL;
    rtr_multi *m = NULL;
    assert_int_equal(rtr_parts_open(dir, 0, 0, NULL, rtr_comm_world(), &ps), RTR_OK);
    assert_int_equal(rtr_multi_open(ps, NULL, &m), RTR_OK);
    rtr_search_opts so = {.mode = mode};
    int rc = rtr_multi_search(m, q, strlen(q), k, &so, hits);
    if (rc) fprintf(stderr, "%s\n", rtr_errdetail());
    assert_int_equal(rc, RTR_OK);
    rtr_multi_close(m);
    rtr_parts_close(ps);
}

/* The partition of a path is its XXH3-64 mod the count, whatever the job; spread evenly. */
static void test_part_of_path(void **state) {
    (void)state;
    uint32_t seen[7] = {0};
    char path[64];
    for (int i = 0; i < 7000; i++) {
        snprintf(path, sizeof path, "/data/docs/file-%05d.txt", i);
        uint32_t p = rtr_part_of_path(path, 7);
        assert_int_equal(p, (uint32_t)(XXH3_64bits(path, strlen(path)) % 7));
        seen[p]++;
    }
    for (int p = 0; p < 7; p++) assert_in_range(seen[p], 850, 1150);
    assert_int_equal(rtr_part_of_path(path, 1), 0);
    assert_int_equal(rtr_part_id(5, 42) >> RTR_PART_SHIFT, 5);
    assert_int_equal(rtr_part_local(rtr_part_id(5, 42)), 42);
    assert_int_equal(rtr_part_of_id(rtr_part_id(4095, RTR_PART_LOCAL_MASK)), 4095);
}

/* Files go to their path's partition, whole; a second add changes nothing; the plain knowledge base
 * holds the same documents and chunks. */
static void test_add(void **state) {
    (void)state;
    rtr_ingest_report a, b, c;
    add(g_plain, 1, g_corpus, &a);
    add(g_split, P, g_corpus, &b);
    assert_true(b.files > 10);
    assert_int_equal(a.files, b.files);
    assert_int_equal(a.docs_added, b.docs_added);
    assert_int_equal(a.chunks_added, b.chunks_added);
    assert_int_equal(a.tokens_added, b.tokens_added);
    rtr_ingest_report_free(&a);
    rtr_ingest_report_free(&b);
    add(g_split, P, g_corpus, &c);
    assert_int_equal(c.files_unchanged, c.files);
    assert_int_equal(c.chunks_added, 0);
    rtr_ingest_report_free(&c);

    rtr_parts *ps = NULL;
    assert_int_equal(rtr_parts_open(g_split, 0, 0, NULL, rtr_comm_world(), &ps), RTR_OK);
    assert_int_equal(rtr_parts_count(ps), P);
    assert_true(rtr_parts_split(ps));
    uint64_t files = 0;
    for (uint32_t p = 0; p < P; p++) {
        rtr_store_txn *t;
        assert_int_equal(rtr_store_read_begin(rtr_kb_store(rtr_parts_kb(ps, p)), &t), RTR_OK);
        uint8_t key[16], prev[16];
        int have = 0, n = 0;
        rtr_file_rec f;
        while (rtr_store_next_file(t, have ? prev : NULL, key, &f) == RTR_OK) {
            memcpy(prev, key, 16);
            have = 1;
            char *path = strndup(f.path, f.path_len);
            assert_int_equal(rtr_part_of_path(path, P), p);   /* each file in its own partition only */
            free(path);
            n++;
        }
        assert_true(n > 0);
        files += (uint64_t)n;
        rtr_store_txn_end(t);
    }
    assert_int_equal(files, 63);
    rtr_parts_close(ps);

    /* a count that is not the recorded one, and the whole knowledge base opened as one partition */
    assert_int_equal(rtr_parts_open(g_split, 0, 2, NULL, rtr_comm_world(), &ps), RTR_E_MISMATCH);
    assert_non_null(strstr(rtr_errdetail(), "3 partitions"));
    rtr_kb *kb = NULL;
    assert_int_equal(rtr_kb_open(g_split, 0, NULL, NULL, &kb), RTR_E_INVALID);
    assert_non_null(strstr(rtr_errdetail(), "part-0000"));
}

static int same_hits(const rtr_hits *a, const rtr_hits *b, float tol) {
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++) {
        const rtr_hit *x = &a->items[i], *y = &b->items[i];
        if (strcmp(x->path, y->path) || x->byte_start != y->byte_start || x->byte_end != y->byte_end ||
            fabsf(x->score - y->score) > tol || strcmp(x->text, y->text)) {
            fprintf(stderr, "hit %zu: %s %llu %.6f | %s %llu %.6f\n", i, x->path, (unsigned long long)x->byte_start,
                    x->score, y->path, (unsigned long long)y->byte_start, y->score);
            return 0;
        }
    }
    return 1;
}

static const char *queries[] = {"tax relief for working families", "the state of our union is strong",
                                "nuclear weapons and arms control with the soviet union",
                                "we must balance the budget and cut the deficit", "health insurance for every american"};

/* Exact vector search over partitions trained once gives the plain knowledge base's hits: the same
 * chunks with the same scores (the hash embedder's statistics summed over the partitions); lexical
 * search too (BM25's statistics summed over the partitions for each query), and hybrid search (every
 * partition's candidates fused at once). */
static void test_build_and_search(void **state) {
    (void)state;
    rtr_build_opts bo = {.threads = 2};
    rtr_build_report a, b;
    build(g_plain, &bo, &a);
    build(g_split, &bo, &b);
    assert_int_equal(b.vectors, a.vectors);
    assert_int_equal(b.embedded, a.embedded);
    assert_int_equal(b.shards, P);
    assert_string_equal(b.factory, "IDMap,Flat");
    for (size_t i = 0; i < sizeof queries / sizeof *queries; i++) {
        rtr_hits x, y;
        search(g_plain, queries[i], RTR_SEARCH_VECTOR, 10, &x);
        search(g_split, queries[i], RTR_SEARCH_VECTOR, 10, &y);
        assert_int_equal(y.n, 10);
        assert_true(same_hits(&x, &y, 1e-5f));
        for (size_t j = 0; j < y.n; j++) {   /* an id names its partition: the one of its file's path */
            assert_int_equal(rtr_part_of_id(y.items[j].chunk_id), rtr_part_of_path(y.items[j].path, P));
            assert_int_equal(rtr_part_of_id(y.items[j].doc_id), rtr_part_of_id(y.items[j].chunk_id));
            assert_int_equal(y.items[j].vector_rank, j + 1);
        }
        rtr_hits_free(&x);
        rtr_hits_free(&y);
        /* lexical: BM25 with the statistics of every partition summed, the plain knowledge base's scores */
        search(g_plain, queries[i], RTR_SEARCH_LEXICAL, 10, &x);
        search(g_split, queries[i], RTR_SEARCH_LEXICAL, 10, &y);
        assert_int_equal(y.n, 10);
        assert_true(same_hits(&x, &y, 1e-5f));
        rtr_hits_free(&x);
        rtr_hits_free(&y);
        /* hybrid: every partition's candidates pooled, each side's best kept, fused as one index fuses
         * them, the chunks read from their partitions: the plain knowledge base's best five in its
         * order, and nine of its ten (the rarest words that pick lexical candidates are each
         * partition's, so a side may find a candidate fewer and a fused score move by a rank's
         * 1 / (60 + r) step: two near-equal hits past the fifth swapped in one build, not another) */
        search(g_plain, queries[i], RTR_SEARCH_HYBRID, 10, &x);
        search(g_split, queries[i], RTR_SEARCH_HYBRID, 10, &y);
        assert_int_equal(y.n, 10);
        x.n = y.n = 5;
        assert_true(same_hits(&x, &y, 1e-3f));
        x.n = y.n = 10;
        int common = 0;
        for (size_t u = 0; u < 10; u++)
            for (size_t v = 0; v < 10; v++)
                common += !strcmp(x.items[u].path, y.items[v].path) && x.items[u].byte_start == y.items[v].byte_start;
        assert_true(common >= 9);
        rtr_hits_free(&x);
        rtr_hits_free(&y);
        /* lexical and hybrid: every partition searched, ranked best first */
        for (int mode = RTR_SEARCH_LEXICAL; mode <= RTR_SEARCH_HYBRID; mode++) {
            search(g_split, queries[i], mode, 10, &y);
            assert_int_equal(y.n, 10);
            uint32_t parts_seen = 0;
            for (size_t j = 0; j < y.n; j++) {
                if (j) assert_true(y.items[j].score <= y.items[j - 1].score);
                parts_seen |= 1u << rtr_part_of_id(y.items[j].chunk_id);
            }
            assert_true(parts_seen != 0);
            rtr_hits_free(&y);
        }
    }
}

static uint64_t file_sum(const char *dir, const char *name) {
    char *p = rtr_path_join(dir, name);
    uint8_t *d;
    size_t n;
    assert_int_equal(rtr_read_file(p, (size_t)1 << 30, &d, &n), RTR_OK);
    uint64_t h = XXH3_64bits(d, n);
    rtr_free(d);
    rtr_free(p);
    return h;
}

/* One query's neighbours as (distance, the neighbour's 128 tokens hashed), sorted: what two searches
 * that break ties between equal distances differently still agree on. */
typedef struct nb_key {
    float d;
    uint64_t h;
} nb_key;
static int cmp_nb(const void *a, const void *b) {
    const nb_key *x = a, *y = b;
    if (x->d != y->d) return x->d < y->d ? -1 : 1;
    return x->h < y->h ? -1 : x->h > y->h;
}

/* Neighbours for the model over partitions (rtr_multi_neighbours): the chunks' vector neighbours
 * over all three partitions are the plain knowledge base's (same distances, same tokens), never from
 * the query's own document, and their ids name the partitions they came from. */
static void test_neighbours(void **state) {
    (void)state;
    enum { NQ = 40, K = 4 };
    rtr_parts *pp = NULL, *ps = NULL;
    rtr_multi *mp = NULL, *ms = NULL;
    assert_int_equal(rtr_parts_open(g_plain, 0, 0, NULL, rtr_comm_world(), &pp), RTR_OK);
    assert_int_equal(rtr_parts_open(g_split, 0, 0, NULL, rtr_comm_world(), &ps), RTR_OK);
    assert_int_equal(rtr_multi_open(pp, NULL, &mp), RTR_OK);
    assert_int_equal(rtr_multi_open(ps, NULL, &ms), RTR_OK);
    /* queries: chunks of the plain store, each with its document; the same document in the split one */
    int32_t q[NQ * RTR_CHUNK_TOKENS];
    uint64_t self_plain[NQ], self_split[NQ];
    char *paths[NQ];
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(rtr_parts_kb(pp, 0)), &t), RTR_OK);
    for (int i = 0; i < NQ; i++) {
        rtr_chunk c;
        assert_int_equal(rtr_store_get_chunk(t, (uint64_t)(1 + i * 173), &c), RTR_OK);
        for (int j = 0; j < RTR_CHUNK_TOKENS; j++) q[i * RTR_CHUNK_TOKENS + j] = j < (int)c.n_tokens ? (int32_t)c.tokens[j] : -1;
        self_plain[i] = c.doc_id;
        rtr_doc d;
        assert_int_equal(rtr_store_get_doc(t, c.doc_id, &d), RTR_OK);
        paths[i] = strndup(d.path, d.path_len);
    }
    rtr_store_txn_end(t);
    for (int i = 0; i < NQ; i++) {   /* the split knowledge base's id of the same document: its file's one */
        uint32_t p = rtr_part_of_path(paths[i], P);
        rtr_store_txn *pt;
        assert_int_equal(rtr_store_read_begin(rtr_kb_store(rtr_parts_kb(ps, p)), &pt), RTR_OK);
        uint64_t *ids = NULL;
        size_t nd = 0;
        assert_int_equal(rtr_store_file_docs(pt, paths[i], &ids, &nd), RTR_OK);
        assert_int_equal(nd, 1);
        self_split[i] = rtr_part_id(p, ids[0]);
        rtr_free(ids);
        rtr_store_txn_end(pt);
    }
    int64_t ida[NQ * K], idb[NQ * K];
    float da[NQ * K], db[NQ * K];
    static int32_t ta[NQ * K * RTR_NBR_TOKENS], tb[NQ * K * RTR_NBR_TOKENS];
    rtr_nbr_opts oa = {.k = K, .self_doc = self_plain}, ob = {.k = K, .self_doc = self_split};
    rtr_nbrs na = {ida, da, ta, NULL, NULL}, nb = {idb, db, tb, NULL, NULL};
    assert_int_equal(rtr_multi_neighbours(mp, q, NQ, &oa, &na), RTR_OK);
    assert_int_equal(rtr_multi_neighbours(ms, q, NQ, &ob, &nb), RTR_OK);
    for (int i = 0; i < NQ; i++) {
        nb_key ka[K], kb[K];
        for (int j = 0; j < K; j++) {
            int x = i * K + j;
            assert_true(idb[x] >= 0);
            assert_true(j == 0 || db[x] >= db[x - 1]);
            ka[j] = (nb_key){da[x], XXH3_64bits(ta + (size_t)x * RTR_NBR_TOKENS, RTR_NBR_TOKENS * 4)};
            kb[j] = (nb_key){db[x], XXH3_64bits(tb + (size_t)x * RTR_NBR_TOKENS, RTR_NBR_TOKENS * 4)};
            rtr_chunk c;   /* the neighbour is in the partition its id names, and not the query's document */
            rtr_store_txn *pt;
            assert_int_equal(rtr_store_read_begin(rtr_kb_store(rtr_parts_kb(ps, rtr_part_of_id((uint64_t)idb[x]))), &pt), RTR_OK);
            assert_int_equal(rtr_store_get_chunk(pt, rtr_part_local((uint64_t)idb[x]), &c), RTR_OK);
            assert_int_equal(c.tokens[0], (uint32_t)tb[(size_t)x * RTR_NBR_TOKENS]);
            assert_true(rtr_part_id(rtr_part_of_id((uint64_t)idb[x]), c.doc_id) != self_split[i]);
            rtr_store_txn_end(pt);
        }
        qsort(ka, K, sizeof *ka, cmp_nb);
        qsort(kb, K, sizeof *kb, cmp_nb);
        for (int j = 0; j < K; j++) {
            assert_float_equal(ka[j].d, kb[j].d, 1e-5);
            if (j + 1 < K && fabsf(ka[j + 1].d - ka[j].d) > 1e-5f && (j == 0 || fabsf(ka[j].d - ka[j - 1].d) > 1e-5f))
                assert_true(ka[j].h == kb[j].h);   /* a distance no other neighbour shares: the same chunk's tokens */
        }
        free(paths[i]);
    }
    /* lexical neighbours are not merged across partitions (yet): a clear refusal */
    rtr_nbr_opts ol = {.k = K, .mode = RTR_SEARCH_LEXICAL};
    assert_int_equal(rtr_multi_neighbours(ms, q, NQ, &ol, &nb), RTR_E_INVALID);
    assert_non_null(strstr(rtr_errdetail(), "partitions"));
    rtr_multi_close(mp);
    rtr_multi_close(ms);
    rtr_parts_close(pp);
    rtr_parts_close(ps);
}

/* The training set over partitions: the plain knowledge base's documents, chunks and tokens in each
 * split, and every training chunk's neighbours from every partition (never its own document). */
static void test_dataset(void **state) {
    (void)state;
    rtr_parts *pp = NULL, *ps = NULL;
    rtr_multi *ms = NULL;
    rtr_retriever *rp = NULL;
    assert_int_equal(rtr_parts_open(g_plain, 0, 0, NULL, rtr_comm_world(), &pp), RTR_OK);
    assert_int_equal(rtr_parts_open(g_split, 0, 0, NULL, rtr_comm_world(), &ps), RTR_OK);
    assert_int_equal(rtr_retriever_open(rtr_parts_kb(pp, 0), NULL, &rp), RTR_OK);
    assert_int_equal(rtr_multi_open(ps, NULL, &ms), RTR_OK);
    rtr_dataset_opts o = {.T = 128, .K = 2, .val_frac = 0.1, .seed = 1};
    rtr_dataset *a = NULL, *b = NULL;
    assert_int_equal(rtr_dataset_build(rtr_parts_kb(pp, 0), rp, &o, &a), RTR_OK);
    assert_int_equal(rtr_dataset_build_parts(ps, ms, &o, &b), RTR_OK);
    for (int sp = 0; sp < 2; sp++) {
        int64_t ca, da, ta, cb, db, tb;
        rtr_dataset_counts(a, sp, &ca, &da, &ta);
        rtr_dataset_counts(b, sp, &cb, &db, &tb);
        assert_true(ca > 0);
        assert_int_equal(ca, cb);
        assert_int_equal(da, db);
        assert_int_equal(ta, tb);
        assert_int_equal(rtr_dataset_sequences(a, sp), rtr_dataset_sequences(b, sp));
    }
    int32_t idx[128], tg[128], nbr[2 * 2 * RTR_NBR_TOKENS];
    double bytes;
    int found = 0;
    for (int64_t i = 0; i < rtr_dataset_sequences(b, RTR_SPLIT_TRAIN); i += 7) {
        assert_int_equal(rtr_dataset_get(b, RTR_SPLIT_TRAIN, i, idx, tg, nbr, &bytes), RTR_OK);
        found += nbr[0] >= 0;
    }
    assert_true(found > 0);
    rtr_dataset_free(a);
    rtr_dataset_free(b);
    rtr_retriever_close(rp);
    rtr_multi_close(ms);
    rtr_parts_close(pp);
    rtr_parts_close(ps);
    /* the library opens the whole to read; what does not read partitions says so */
    retro_kb *k = NULL;
    assert_int_equal(retro_kb_open(g_split, 0, NULL, &k), RETRO_OK);
    retro_results res;
    retro_search_opts so = {.k = 3, .mode = RETRO_SEARCH_VECTOR};
    assert_int_equal(retro_search(k, queries[2], strlen(queries[2]), &so, &res), RETRO_OK);   /* every partition */
    rtr_hits h;
    search(g_split, queries[2], RTR_SEARCH_VECTOR, 3, &h);
    assert_int_equal(res.n, 3);
    for (size_t i = 0; i < 3; i++) assert_int_equal(res.items[i].chunk_id, h.items[i].chunk_id);
    rtr_hits_free(&h);
    retro_results_free(&res);
    retro_kb_stats st;
    assert_int_equal(retro_kb_stats_get(k, &st), RETRO_E_INVALID);
    assert_non_null(strstr(retro_errdetail(), "3 partitions"));
    retro_kb_close(k);
}

/* Adding documents later: only their chunks are embedded, into their partitions, with the trained
 * state kept (no retraining); every partition records the embedder the knowledge base trained. */
static void test_incremental(void **state) {
    (void)state;
    char *extra = rtr_path_join(g_dir, "extra");
    rtr_mkdirs(extra);
    char name[32], text[2048];
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof name, "note-%02d.txt", i);
        snprintf(text, sizeof text, "Note %d on the partitioned index: the quarterly figures of region %d rose by %d "
                 "percent while the shipping costs of the northern warehouses fell. ", i, i * 7, i + 3);
        tu_write_str(extra, name, text);
    }
    uint64_t trained = file_sum(g_split, "index/trained-000.faiss");
    rtr_ingest_report r;
    add(g_split, 0, extra, &r);
    assert_int_equal(r.files_new, 12);
    uint64_t added = r.chunks_added;
    rtr_ingest_report_free(&r);
    rtr_build_opts bo = {.threads = 2};
    rtr_build_report b;
    build(g_split, &bo, &b);
    assert_false(b.created);
    assert_int_equal(b.embedded, added);
    assert_int_equal(file_sum(g_split, "index/trained-000.faiss"), trained);
    rtr_hits h;
    search(g_split, "the quarterly figures of region 35 rose by 8 percent", RTR_SEARCH_VECTOR, 3, &h);
    assert_true(h.n >= 1);
    assert_non_null(strstr(h.items[0].path, "note-05.txt"));
    rtr_hits_free(&h);
    rtr_free(extra);
}

/* An inverted file with a projection, trained once: every partition holds the trained embedder's
 * description and a copy of its files; a chunk's own text finds it first. */
static void test_trained_ivf(void **state) {
    (void)state;
    rtr_build_opts bo = {.threads = 2, .factory = "IVF16,Flat", .project = 32, .nprobe = 16, .retrain = 1};
    rtr_build_report b;
    build(g_split, &bo, &b);
    assert_true(b.created);
    assert_int_equal(b.dim, 32);
    assert_int_equal(b.nlist, 16);
    rtr_parts *ps = NULL;
    assert_int_equal(rtr_parts_open(g_split, 0, 0, NULL, rtr_comm_world(), &ps), RTR_OK);
    char *top = rtr_path_join(g_split, "manifest.json");
    uint8_t *d;
    size_t n;
    assert_int_equal(rtr_read_file(top, 1 << 20, &d, &n), RTR_OK);
    json_t *m = json_loadb((const char *)d, n, 0, NULL), *tr = json_object_get(m, "trained");
    assert_non_null(tr);
    assert_int_equal(json_integer_value(json_object_get(tr, "vectors")), 0);
    for (uint32_t p = 0; p < P; p++) {
        json_t *ix = rtr_kb_manifest_get(rtr_parts_kb(ps, p), "index");
        assert_true(json_equal(json_object_get(ix, "embedder"), json_object_get(tr, "embedder")));
        assert_string_equal(json_string_value(json_object_get(ix, "factory")), "IVF16,Flat");
        assert_true(json_equal(json_object_get(ix, "factory"), json_object_get(tr, "factory")));
    }
    json_decref(m);
    rtr_free(d);
    rtr_free(top);
    rtr_parts_close(ps);
    rtr_hits h;
    search(g_split, queries[3], RTR_SEARCH_VECTOR, 1, &h);
    assert_int_equal(h.n, 1);
    char *own = strdup(h.items[0].text);
    rtr_hits_free(&h);
    search(g_split, own, RTR_SEARCH_VECTOR, 1, &h);
    assert_string_equal(h.items[0].text, own);
    assert_true(h.items[0].score > 0.999f);
    rtr_hits_free(&h);
    free(own);
}

/* Hits survive packing; every truncation and a bad count are refused, never read past the end. */
static void test_pack(void **state) {
    (void)state;
    rtr_hits h;
    search(g_split, queries[0], RTR_SEARCH_HYBRID, 5, &h);
    rtr_buf b = {0};
    assert_int_equal(rtr_hits_pack(&h, &b), RTR_OK);
    assert_int_equal(rtr_hits_pack(&h, &b), RTR_OK);   /* two in a row, as a rank of two partitions sends */
    rtr_hits back = {0};
    size_t used = 0;
    assert_int_equal(rtr_hits_unpack(b.data, b.len, "test", &back, &used), RTR_OK);
    assert_int_equal(used, b.len / 2);
    assert_true(same_hits(&h, &back, 0));
    for (size_t i = 0; i < h.n; i++) {
        assert_int_equal(back.items[i].chunk_id, h.items[i].chunk_id);
        assert_int_equal(back.items[i].found_by, h.items[i].found_by);
        assert_int_equal(back.items[i].lexical_rank, h.items[i].lexical_rank);
        assert_true(back.items[i].vector_score == h.items[i].vector_score);
    }
    rtr_hits_free(&back);
    for (size_t len = 0; len < b.len / 2; len++) {
        rtr_hits t = {0};
        assert_int_equal(rtr_hits_unpack(b.data, len, "test", &t, NULL), RTR_E_CORRUPT);
        rtr_hits_free(&t);
    }
    rtr_hits t = {0};
    assert_int_equal(rtr_hits_unpack(b.data, b.len, "test", &t, NULL), RTR_E_CORRUPT);   /* bytes left over */
    rtr_hits_free(&t);
    b.data[8] = 0xff, b.data[9] = 0xff;   /* a count the bytes cannot hold */
    assert_int_equal(rtr_hits_unpack(b.data, b.len / 2, "test", &t, NULL), RTR_E_CORRUPT);
    rtr_hits_free(&t);
    rtr_buf_free(&b);
    rtr_hits_free(&h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_part_of_path), cmocka_unit_test(test_add),         cmocka_unit_test(test_build_and_search),
        cmocka_unit_test(test_neighbours),   cmocka_unit_test(test_dataset),
        cmocka_unit_test(test_incremental),  cmocka_unit_test(test_trained_ivf), cmocka_unit_test(test_pack),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
