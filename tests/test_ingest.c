/* test_ingest.c - ingest into a knowledge base: formats, skips, incremental
 * updates, removal, pruning, determinism and failure injection. Every stored
 * chunk's tokens must decode to exactly its byte span of the document text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "index/ingest.h"
#include "lib/alloc.h"
#include "lib/status.h"
#include "testutil.h"

static rtr_tokenizer *g_tok;

static int setup_tok(void **state) {
    (void)state;
    const char *p = getenv("RETRO_TEST_TOKENIZER");
    if (rtr_tokenizer_load(p ? p : RETRO_SOURCE_DIR "/datasets/tokenizer.rtok", &g_tok)) {
        fprintf(stderr, "cannot load the default tokenizer: %s\n", rtr_errdetail());
        return -1;
    }
    return 0;
}

static int teardown_tok(void **state) {
    (void)state;
    rtr_tokenizer_free(g_tok);
    return 0;
}

/* A corpus with one file of every kind. */
static char *make_corpus(void) {
    char *dir = tu_tmpdir("corpus");
    char sub[512];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    rtr_mkdirs(sub);
    rtr_buf big = {0};
    for (int i = 0; i < 300; i++)
        rtr_buf_printf(&big, "Sentence %d of a long plain text, with words that repeat and some that don't. ", i);
    tu_write(dir, "a.txt", big.data, big.len);
    rtr_buf_free(&big);
    tu_write_str(dir, "b.md", "# Notes\n\nA short *markdown* file about retrieval.\n");
    tu_write_str(dir, "sub/c.html", "<html><head><title>C page</title></head><body><p>Hello &amp; welcome"
                                     "</p><script>ignored()</script></body></html>");
    tu_write_str(dir, "sub/d.jsonl", "{\"id\":\"r1\",\"text\":\"record one\"}\n"
                                      "{\"id\":\"r2\",\"text\":\"record two\",\"title\":\"Two\"}\n"
                                      "{\"id\":\"r3\",\"text\":\"record three\"}\n"
                                      "{\"id\":\"r4\",\"text\":\"trunc");
    tu_write(dir, "bin.dat", "\x7f" "ELF\x02\x01\x01\0\0\0\0", 12);
    tu_write_str(dir, "latin1.txt", "na\xEFve caf\xE9");
    tu_write_str(dir, "empty.txt", "");
    return dir;
}

typedef struct kbenv {
    char *corpus, *kbdir;
    rtr_kb *kb;
} kbenv;

static void kb_new(kbenv *e) {
    e->corpus = make_corpus();
    char *parent = tu_tmpdir("kb");
    e->kbdir = rtr_path_join(parent, "kb");
    free(parent);
    assert_int_equal(rtr_kb_open(e->kbdir, RTR_KB_WRITE | RTR_KB_CREATE, g_tok, NULL, &e->kb), RTR_OK);
}

static void kb_free(kbenv *e) {
    rtr_kb_close(e->kb);
    rtr_rmtree(e->corpus);
    char *slash = strrchr(e->kbdir, '/');
    *slash = '\0';
    rtr_rmtree(e->kbdir);
    free(e->corpus);
    rtr_free(e->kbdir);
}

static int ingest(kbenv *e, const char *path, rtr_ingest_opts *o, rtr_ingest_report *rep) {
    rtr_ingest_opts dflt = {0};
    const char *paths[] = {path ? path : e->corpus};
    return rtr_ingest(e->kb, paths, 1, o ? o : &dflt, rep);
}

/* Checks every chunk against its document's text; returns a dump string. */
static char *verify_and_dump(rtr_kb *kb) {
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
    rtr_buf dump = {0}, text = {0}, dec = {0};
    rtr_doc d;
    uint64_t id = 0, total_chunks = 0, total_tokens = 0;
    while (rtr_store_next_doc(t, id, &d) == RTR_OK) {
        id = d.id;
        rtr_buf_printf(&dump, "doc %" PRIu64 " %.*s [%.*s] %" PRIu64 " tok, %u chunks from %" PRIu64 "\n", d.id,
                       (int)d.path_len, d.path, (int)d.ext_id_len, d.ext_id, d.n_tokens, d.n_chunks, d.first_chunk);
        text.len = 0;
        assert_int_equal(rtr_store_get_text(t, d.id, &text), RTR_OK);
        assert_int_equal(text.len, d.n_bytes);
        uint64_t ntok = 0, pos = 0, first = d.first_chunk, nch = d.n_chunks;
        for (uint64_t c = first; c < first + nch; c++) {
            rtr_chunk ch;
            assert_int_equal(rtr_store_get_chunk(t, c, &ch), RTR_OK);
            assert_int_equal(ch.doc_id, d.id);
            assert_int_equal(ch.byte_start, pos);
            dec.len = 0;
            assert_int_equal(rtr_tokenizer_decode(rtr_kb_tokenizer(kb), ch.tokens, ch.n_tokens, &dec), RTR_OK);
            assert_int_equal(dec.len, ch.byte_end - ch.byte_start);
            assert_memory_equal(dec.data, text.data + ch.byte_start, dec.len);
            assert_true(ch.n_tokens == RTR_CHUNK_TOKENS || c == first + nch - 1);
            pos = ch.byte_end;
            ntok += ch.n_tokens;
            rtr_buf_printf(&dump, " chunk %" PRIu64 " %" PRIu64 "-%" PRIu64 "\n", c, ch.byte_start, ch.byte_end);
        }
        assert_int_equal(pos, text.len);
        assert_int_equal(ntok, d.n_tokens);
        total_chunks += nch;
        total_tokens += ntok;
    }
    rtr_store_stats st;
    rtr_store_get_stats(t, &st);
    assert_int_equal(st.n_chunks, total_chunks);
    assert_int_equal(st.n_tokens, total_tokens);
    rtr_store_txn_end(t);
    rtr_buf_free(&text);
    rtr_buf_free(&dec);
    rtr_buf_terminate(&dump);
    return (char *)dump.data;
}

static uint32_t skip_reason_of(const rtr_ingest_report *r, const char *suffix) {
    for (size_t i = 0; i < r->skips.n; i++) {
        size_t a = strlen(r->skips.items[i].path), b = strlen(suffix);
        if (a >= b && !strcmp(r->skips.items[i].path + a - b, suffix)) return r->skips.items[i].reason;
    }
    return 0;
}

static void test_ingest_formats_and_skips(void **state) {
    (void)state;
    kbenv e;
    kb_new(&e);
    rtr_ingest_report rep;
    assert_int_equal(ingest(&e, NULL, NULL, &rep), RTR_OK);
    assert_int_equal(rep.files, 7);
    assert_int_equal(rep.files_new, 5);         /* a b c d latin1 */
    assert_int_equal(rep.files_skipped, 2);     /* bin.dat, empty.txt */
    assert_int_equal(skip_reason_of(&rep, "bin.dat"), RTR_SKIP_BINARY);
    assert_int_equal(skip_reason_of(&rep, "empty.txt"), RTR_SKIP_EMPTY);
    assert_int_equal(skip_reason_of(&rep, "d.jsonl"), RTR_SKIP_BAD_RECORD);
    assert_int_equal(rep.bad_records, 1);
    assert_int_equal(rep.docs_added, 4 + 3);    /* a b c latin1 + three records */
    char *dump = verify_and_dump(e.kb);
    assert_non_null(strstr(dump, "[r2]"));
    free(dump);
    rtr_ingest_report_free(&rep);

    /* the HTML document's text has no markup; the record's title is kept */
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(e.kb), &t), RTR_OK);
    rtr_doc d;
    uint64_t id = 0;
    int seen_html = 0, seen_title = 0;
    rtr_buf text = {0};
    while (rtr_store_next_doc(t, id, &d) == RTR_OK) {
        id = d.id;
        if (d.title_len == 6 && !memcmp(d.title, "C page", 6)) {
            text.len = 0;
            rtr_store_get_text(t, d.id, &text);
            rtr_buf_terminate(&text);
            assert_string_equal((char *)text.data, "Hello & welcome");
            seen_html = 1;
        }
        if (d.title_len == 3 && !memcmp(d.title, "Two", 3)) seen_title = 1;
    }
    assert_true(seen_html && seen_title);
    rtr_buf_free(&text);
    rtr_store_txn_end(t);

    /* skip policy for invalid UTF-8 */
    rtr_ingest_opts o = {.corpus.utf8_policy = RTR_UTF8_SKIP};
    tu_write_str(e.corpus, "latin1.txt", "na\xEFve caf\xE9 changed");
    assert_int_equal(ingest(&e, NULL, &o, &rep), RTR_OK);
    assert_int_equal(skip_reason_of(&rep, "latin1.txt"), RTR_SKIP_INVALID_UTF8);
    assert_int_equal(rep.docs_removed, 1);      /* its old document went */
    rtr_ingest_report_free(&rep);
    kb_free(&e);
}

static void test_incremental_updates(void **state) {
    (void)state;
    kbenv e;
    kb_new(&e);
    rtr_ingest_report rep;
    assert_int_equal(ingest(&e, NULL, NULL, &rep), RTR_OK);
    rtr_ingest_report_free(&rep);
    char *before = verify_and_dump(e.kb);

    /* again: nothing changes, not even the id counters */
    assert_int_equal(ingest(&e, NULL, NULL, &rep), RTR_OK);
    assert_int_equal(rep.files_unchanged, 6);   /* empty.txt too: its hash is recorded */
    assert_int_equal(rep.docs_added, 0);
    rtr_ingest_report_free(&rep);
    char *again = verify_and_dump(e.kb);
    assert_string_equal(before, again);
    free(again);

    rtr_store_txn *t;
    rtr_store_stats st0, st1;
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(e.kb), &t), RTR_OK);
    rtr_store_get_stats(t, &st0);
    rtr_store_txn_end(t);

    /* change b.md and one record of d.jsonl */
    tu_write_str(e.corpus, "b.md", "# Notes\n\nRewritten.\n");
    tu_write_str(e.corpus, "sub/d.jsonl", "{\"id\":\"r1\",\"text\":\"record one\"}\n"
                                           "{\"id\":\"r2\",\"text\":\"record two, edited\",\"title\":\"Two\"}\n"
                                           "{\"id\":\"r3\",\"text\":\"record three\"}\n");
    assert_int_equal(ingest(&e, NULL, NULL, &rep), RTR_OK);
    assert_int_equal(rep.files_changed, 2);
    assert_int_equal(rep.docs_added, 2);       /* b.md and r2 */
    assert_int_equal(rep.docs_removed, 2);
    assert_int_equal(rep.docs_kept, 2);        /* r1 and r3 untouched */
    assert_int_equal(skip_reason_of(&rep, "d.jsonl"), 0);   /* the bad line is gone */
    rtr_ingest_report_free(&rep);
    char *after = verify_and_dump(e.kb);
    assert_string_not_equal(before, after);
    assert_int_equal(rtr_store_read_begin(rtr_kb_store(e.kb), &t), RTR_OK);
    rtr_store_get_stats(t, &st1);
    assert_int_equal(st1.n_docs, st0.n_docs);
    assert_true(st1.next_chunk_id > st0.next_chunk_id);   /* new ids, never reused */
    /* the old chunks of b.md are gone */
    for (uint64_t c = 1; c < st0.next_chunk_id; c++) {
        rtr_chunk ch;
        int rc = rtr_store_get_chunk(t, c, &ch);
        if (rc == RTR_OK) {
            rtr_doc d;
            assert_int_equal(rtr_store_get_doc(t, ch.doc_id, &d), RTR_OK);
            assert_false(d.path_len >= 4 && !memcmp(d.path + d.path_len - 4, "b.md", 4));
        }
    }
    rtr_store_txn_end(t);
    free(before);
    free(after);
    kb_free(&e);
}

static void test_remove_and_prune(void **state) {
    (void)state;
    kbenv e;
    kb_new(&e);
    rtr_ingest_report rep;
    assert_int_equal(ingest(&e, NULL, NULL, &rep), RTR_OK);
    rtr_ingest_report_free(&rep);

    /* a path that matches nothing: error, nothing removed */
    char *sub = rtr_path_join(e.corpus, "sub"), *nosuch = rtr_path_join(e.corpus, "nosuch.txt");
    const char *bad[] = {sub, nosuch};
    uint64_t files, docs;
    assert_int_equal(rtr_kb_remove(e.kb, bad, 2, &files, &docs), RTR_E_NOTFOUND);
    assert_non_null(strstr(rtr_errdetail(), "nosuch.txt"));
    const char *good[] = {sub};
    assert_int_equal(rtr_kb_remove(e.kb, good, 1, &files, &docs), RTR_OK);
    assert_int_equal(files, 2);     /* c.html, d.jsonl */
    assert_int_equal(docs, 1 + 3);
    char *dump = verify_and_dump(e.kb);
    assert_null(strstr(dump, "/sub/"));
    free(dump);

    /* a deleted file stays without --prune and goes with it */
    char *a = rtr_path_join(e.corpus, "a.txt");
    unlink(a);
    assert_int_equal(ingest(&e, NULL, NULL, &rep), RTR_OK);
    assert_int_equal(rep.files_pruned, 0);
    rtr_ingest_report_free(&rep);
    dump = verify_and_dump(e.kb);
    assert_non_null(strstr(dump, "/a.txt"));
    free(dump);
    rtr_ingest_opts o = {.prune = 1};
    assert_int_equal(ingest(&e, NULL, &o, &rep), RTR_OK);
    assert_int_equal(rep.files_pruned, 1);
    rtr_ingest_report_free(&rep);
    dump = verify_and_dump(e.kb);
    assert_null(strstr(dump, "/a.txt"));
    free(dump);
    rtr_free(a);
    rtr_free(sub);
    rtr_free(nosuch);
    kb_free(&e);
}

static void delete_before_read(const char *path, void *ctx) {
    if (strstr(path, (const char *)ctx)) unlink(path);
}

static void test_file_deleted_while_reading(void **state) {
    (void)state;
    kbenv e;
    kb_new(&e);
    rtr_ingest_report rep;
    rtr_ingest_opts o = {.before_read = delete_before_read, .hook_ctx = (void *)"b.md"};
    assert_int_equal(ingest(&e, NULL, &o, &rep), RTR_OK);
    assert_int_equal(skip_reason_of(&rep, "b.md"), RTR_SKIP_VANISHED);
    assert_int_equal(rep.files_new, 4);
    rtr_ingest_report_free(&rep);
    free(verify_and_dump(e.kb));
    kb_free(&e);
}

static void test_threads_give_identical_stores(void **state) {
    (void)state;
    char *dumps[2];
    for (int k = 0; k < 2; k++) {
        kbenv e;
        kb_new(&e);
        rtr_ingest_report rep;
        rtr_ingest_opts o = {.threads = k + 1, .batch_bytes = 200};   /* many small batches */
        assert_int_equal(ingest(&e, NULL, &o, &rep), RTR_OK);
        rtr_ingest_report_free(&rep);
        dumps[k] = verify_and_dump(e.kb);
        /* paths differ between the two corpora: compare from the ids on */
        kb_free(&e);
    }
    /* strip the temp dir names: compare the structure */
    for (int k = 0; k < 2; k++)
        for (char *p = dumps[k]; (p = strstr(p, "/tmp/retro-test-corpus-")); p += 23) memset(p + 23, 'X', 6);
    assert_string_equal(dumps[0], dumps[1]);
    free(dumps[0]);
    free(dumps[1]);
}

/* Readers that keep opening transactions while an ingest grows the map. */
typedef struct reader_loop {
    rtr_store *store;
    atomic_int stop;
    long txns, chunks_read;
    int rc;
} reader_loop;

static void *reader_main(void *arg) {
    reader_loop *r = arg;
    while (!atomic_load(&r->stop) && !r->rc) {
        rtr_store_txn *t;
        if ((r->rc = rtr_store_read_begin(r->store, &t))) break;
        rtr_store_stats st;
        rtr_store_get_stats(t, &st);
        rtr_chunk c;
        for (uint64_t id = st.next_chunk_id > 64 ? st.next_chunk_id - 64 : 1; id < st.next_chunk_id; id++) {
            int rc = rtr_store_get_chunk(t, id, &c);
            if (rc && rc != RTR_E_NOTFOUND) { r->rc = rc; break; }
            r->chunks_read += rc == RTR_OK;
        }
        rtr_store_txn_end(t);
        r->txns++;
    }
    return NULL;
}

/* Many small files into a store whose map starts tiny: the map grows several
 * times while every worker thread and two reader threads hold or open read
 * transactions (LMDB resizes only with no transaction active). A rerun with
 * the same tiny map finds everything unchanged. */
static void test_map_grows_under_load(void **state) {
    (void)state;
    enum { FILES = 2000 };
    char *corpus = tu_tmpdir("many"), name[64];
    uint64_t seed = 7;
    rtr_buf text = {0};
    for (int d = 0; d < 20; d++) {
        snprintf(name, sizeof name, "%s/d%02d", corpus, d);
        rtr_mkdirs(name);
    }
    for (int f = 0; f < FILES; f++) {
        text.len = 0;
        for (int w = 0; w < 220; w++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            rtr_buf_printf(&text, "w%u%c", (unsigned)(seed >> 40) % 5000, w % 17 == 16 ? '\n' : ' ');
        }
        snprintf(name, sizeof name, "d%02d/f%04d.txt", f % 20, f);
        tu_write(corpus, name, text.data, text.len);
    }
    rtr_buf_free(&text);
    char *parent = tu_tmpdir("kb"), *kbdir = rtr_path_join(parent, "kb");
    rtr_store_opts so = {.initial_map_size = 256 << 10};
    for (int run = 0; run < 2; run++) {
        rtr_kb *kb;
        assert_int_equal(rtr_kb_open(kbdir, RTR_KB_WRITE | RTR_KB_CREATE, g_tok, &so, &kb), RTR_OK);
        reader_loop rd[2] = {{.store = rtr_kb_store(kb)}, {.store = rtr_kb_store(kb)}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
        rtr_ingest_opts o = {.threads = 4, .batch_bytes = 32 << 10};
        rtr_ingest_report rep;
        const char *paths[] = {corpus};
        int rc = rtr_ingest(kb, paths, 1, &o, &rep);
        for (int i = 0; i < 2; i++) {
            atomic_store(&rd[i].stop, 1);
            pthread_join(th[i], NULL);
        }
        if (rc) fprintf(stderr, "ingest: %s\n", rtr_errdetail());
        assert_int_equal(rc, RTR_OK);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(rd[i].rc, RTR_OK);
            assert_true(rd[i].txns > 0);
        }
        assert_int_equal(rep.files, FILES);
        assert_int_equal(run == 0 ? rep.files_new : rep.files_unchanged, FILES);
        rtr_ingest_report_free(&rep);
        free(verify_and_dump(kb));
        rtr_store_txn *t;
        assert_int_equal(rtr_store_read_begin(rtr_kb_store(kb), &t), RTR_OK);
        rtr_store_stats st;
        rtr_store_get_stats(t, &st);
        rtr_store_txn_end(t);
        assert_int_equal(st.n_docs, FILES);
        if (run == 0) assert_true(st.map_size >= 16 * so.initial_map_size);   /* grew 4 times or more */
        rtr_kb_close(kb);
    }
    rtr_rmtree(corpus);
    rtr_rmtree(parent);
    free(corpus);
    free(parent);
    rtr_free(kbdir);
}

static void test_allocation_failures_lose_nothing(void **state) {
    (void)state;
    kbenv ref;
    kb_new(&ref);
    rtr_ingest_report rep;
    rtr_ingest_opts o = {.threads = 1};
    assert_int_equal(ingest(&ref, NULL, &o, &rep), RTR_OK);
    rtr_ingest_report_free(&rep);
    char *want = verify_and_dump(ref.kb);
    for (char *p = want; (p = strstr(p, "/tmp/retro-test-corpus-")); p += 23) memset(p + 23, 'X', 6);

    kbenv e;
    kb_new(&e);
    int failed = 0;
    for (long k = 1; k < 4000; k += 3) {
        rtr_alloc_fail_at(k);
        int rc = ingest(&e, NULL, &o, &rep);
        rtr_alloc_fail_at(0);
        rtr_ingest_report_free(&rep);
        if (rc == RTR_OK) break;
        assert_int_equal(rc, RTR_E_NOMEM);
        failed++;
    }
    assert_true(failed > 3);
    assert_int_equal(ingest(&e, NULL, &o, &rep), RTR_OK);   /* finish */
    rtr_ingest_report_free(&rep);
    char *got = verify_and_dump(e.kb);
    for (char *p = got; (p = strstr(p, "/tmp/retro-test-corpus-")); p += 23) memset(p + 23, 'X', 6);
    assert_string_equal(want, got);
    free(want);
    free(got);
    kb_free(&ref);
    kb_free(&e);
}

static void test_not_a_knowledge_base(void **state) {
    (void)state;
    char *dir = tu_tmpdir("notkb");
    tu_write_str(dir, "something.txt", "x");
    rtr_kb *kb = NULL;
    assert_int_equal(rtr_kb_open(dir, RTR_KB_WRITE | RTR_KB_CREATE, g_tok, NULL, &kb), RTR_E_INVALID);
    assert_non_null(strstr(rtr_errdetail(), "not a retro knowledge base"));
    assert_int_equal(rtr_kb_open(dir, 0, NULL, NULL, &kb), RTR_E_INVALID);
    /* a manifest that is not JSON */
    tu_write_str(dir, "manifest.json", "{ nope");
    assert_int_equal(rtr_kb_open(dir, 0, NULL, NULL, &kb), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), "manifest.json"));
    /* a manifest from a newer version */
    tu_write_str(dir, "manifest.json", "{\"format\":\"retro-knowledge-base\",\"version\":99,\"chunk_tokens\":64,"
                                        "\"tokenizer\":{\"hash\":\"00000000000000000000000000000000\"}}");
    assert_int_equal(rtr_kb_open(dir, 0, NULL, NULL, &kb), RTR_E_VERSION);
    assert_null(kb);
    rtr_rmtree(dir);
    free(dir);
}

static void test_second_writer_is_refused(void **state) {
    (void)state;
    kbenv e;
    kb_new(&e);
    rtr_kb *other = NULL;
    assert_int_equal(rtr_kb_open(e.kbdir, RTR_KB_WRITE, NULL, NULL, &other), RTR_E_BUSY);
    assert_int_equal(rtr_kb_open(e.kbdir, 0, NULL, NULL, &other), RTR_OK);   /* readers are fine */
    rtr_kb_close(other);
    kb_free(&e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ingest_formats_and_skips),
        cmocka_unit_test(test_incremental_updates),
        cmocka_unit_test(test_remove_and_prune),
        cmocka_unit_test(test_file_deleted_while_reading),
        cmocka_unit_test(test_threads_give_identical_stores),
        cmocka_unit_test(test_map_grows_under_load),
        cmocka_unit_test(test_allocation_failures_lose_nothing),
        cmocka_unit_test(test_not_a_knowledge_base),
        cmocka_unit_test(test_second_writer_is_refused),
    };
    return cmocka_run_group_tests(tests, setup_tok, teardown_tok);
}
