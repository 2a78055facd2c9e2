/* test_store.c - the LMDB chunk store: records, ids, deletes, map growth
 * (here and by another process), snapshots, corrupt and truncated stores and
 * allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lmdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "index/store.h"
#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"
#include "lib/utf8.h"
#include "testutil.h"

typedef struct doc_spec {
    const char *path, *title, *ext_id;
    size_t n_tokens;
    uint32_t seed;
} doc_spec;

typedef struct add_ctx {
    const doc_spec *docs;
    size_t n;
    uint64_t ids[64];
} add_ctx;

/* Text of n_tokens "tokens", each 3 bytes: "aXX" (deterministic per seed). */
static void make_doc(const doc_spec *s, rtr_buf *text, uint32_t *tokens, uint64_t *ends) {
    text->len = 0;
    for (size_t i = 0; i < s->n_tokens; i++) {
        tokens[i] = (s->seed * 131 + (uint32_t)i) % 50000;
        rtr_buf_printf(text, "%c%02u", 'a' + (int)(i % 26), (unsigned)(tokens[i] % 100));
        if ((i + 1) % RTR_CHUNK_TOKENS == 0 || i + 1 == s->n_tokens) ends[i / RTR_CHUNK_TOKENS] = text->len;
    }
}

static int add_fn(rtr_store_txn *t, void *vctx) {
    add_ctx *c = vctx;
    static uint32_t tokens[4096];
    static uint64_t ends[64];
    int rc = RTR_OK;
    for (size_t i = 0; i < c->n && !rc; i++) {
        rtr_buf text = {0}, z = {0};
        make_doc(&c->docs[i], &text, tokens, ends);
        rtr_doc_in in = {.path = c->docs[i].path, .title = c->docs[i].title, .ext_id = c->docs[i].ext_id,
                         .mtime_ns = 1234, .n_bytes = text.len, .tokens = tokens,
                         .n_tokens = c->docs[i].n_tokens, .chunk_ends = ends};
        rtr_hash128(text.data, text.len, in.content_hash);
        rc = rtr_store_compress_text(text.data, text.len, &z);
        in.ztext = z.data;
        in.ztext_len = z.len;
        if (!rc) rc = rtr_store_add_doc(t, &in, &c->ids[i]);
        rtr_buf_free(&text);
        rtr_buf_free(&z);
    }
    return rc;
}

static int del_fn(rtr_store_txn *t, void *vctx) { return rtr_store_delete_doc(t, *(uint64_t *)vctx); }

static void test_add_get_and_continuation(void **state) {
    (void)state;
    char *dir = tu_tmpdir("store");
    rtr_store *s;
    assert_int_equal(rtr_store_open(dir, 0, NULL, &s), RTR_OK);
    doc_spec docs[] = {{"/a.txt", "A", NULL, 150, 1}, {"/b.jsonl", NULL, "7", 64, 2}, {"/c.txt", NULL, NULL, 5, 3}};
    add_ctx c = {docs, 3, {0}};
    assert_int_equal(rtr_store_write(s, add_fn, &c), RTR_OK);
    assert_int_equal(c.ids[0], 1);
    assert_int_equal(c.ids[2], 3);

    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(s, &t), RTR_OK);
    rtr_store_stats st;
    rtr_store_get_stats(t, &st);
    assert_int_equal(st.n_docs, 3);
    assert_int_equal(st.n_chunks, 3 + 1 + 1);
    assert_int_equal(st.n_tokens, 150 + 64 + 5);
    assert_int_equal(st.next_chunk_id, 6);

    /* doc 1: chunks 1..3, the last one short, spans contiguous, tokens exact */
    rtr_doc d;
    assert_int_equal(rtr_store_get_doc(t, 1, &d), RTR_OK);
    assert_int_equal(d.first_chunk, 1);
    assert_int_equal(d.n_chunks, 3);
    assert_int_equal(d.n_tokens, 150);
    assert_memory_equal(d.path, "/a.txt", 6);
    assert_int_equal(d.title_len, 1);
    rtr_buf text = {0};
    assert_int_equal(rtr_store_get_text(t, 1, &text), RTR_OK);
    assert_int_equal(text.len, 150 * 3);
    assert_int_equal(d.n_bytes, text.len);
    uint64_t prev_end = 0;
    for (uint64_t id = 1; id <= 3; id++) {
        rtr_chunk ch;
        assert_int_equal(rtr_store_get_chunk(t, id, &ch), RTR_OK);
        assert_int_equal(ch.doc_id, 1);
        assert_int_equal(ch.seq, id - 1);
        assert_int_equal(ch.byte_start, prev_end);
        assert_int_equal(ch.byte_end - ch.byte_start, (uint64_t)ch.n_tokens * 3);
        for (uint32_t i = 0; i < ch.n_tokens; i++)
            assert_int_equal(ch.tokens[i], (1 * 131 + (id - 1) * 64 + i) % 50000);
        assert_int_equal((ch.flags & RTR_CHUNK_LAST) != 0, id == 3);
        assert_int_equal((ch.flags & RTR_CHUNK_SHORT) != 0, id == 3);
        prev_end = ch.byte_end;
        /* continuation = next id, same document */
        rtr_chunk next;
        if (id < 3) {
            assert_int_equal(rtr_store_get_chunk(t, id + 1, &next), RTR_OK);
            assert_int_equal(next.doc_id, ch.doc_id);
        }
    }
    assert_int_equal(prev_end, text.len);
    /* a full 64-token document is one chunk, last but not short */
    rtr_chunk ch;
    assert_int_equal(rtr_store_get_chunk(t, 4, &ch), RTR_OK);
    assert_int_equal(ch.flags, RTR_CHUNK_LAST);
    assert_int_equal(rtr_store_get_doc(t, 2, &d), RTR_OK);
    assert_int_equal(d.ext_id_len, 1);
    assert_int_equal(rtr_store_get_chunk(t, 99, &ch), RTR_E_NOTFOUND);
    /* file_docs links */
    uint64_t *ids;
    size_t n;
    assert_int_equal(rtr_store_file_docs(t, "/b.jsonl", &ids, &n), RTR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 2);
    rtr_free(ids);
    rtr_store_txn_end(t);
    rtr_buf_free(&text);
    rtr_store_close(s);

    /* reopen read-only: everything is still there */
    assert_int_equal(rtr_store_open(dir, RTR_STORE_READONLY, NULL, &s), RTR_OK);
    assert_int_equal(rtr_store_read_begin(s, &t), RTR_OK);
    rtr_store_get_stats(t, &st);
    assert_int_equal(st.n_docs, 3);
    rtr_store_txn_end(t);
    rtr_store_close(s);
    rtr_rmtree(dir);
    free(dir);
}

static void test_delete_and_ids_never_reused(void **state) {
    (void)state;
    char *dir = tu_tmpdir("store");
    rtr_store *s;
    assert_int_equal(rtr_store_open(dir, 0, NULL, &s), RTR_OK);
    doc_spec docs[] = {{"/a.txt", NULL, NULL, 130, 1}, {"/b.txt", NULL, NULL, 10, 2}};
    add_ctx c = {docs, 2, {0}};
    assert_int_equal(rtr_store_write(s, add_fn, &c), RTR_OK);
    uint64_t victim = 2;   /* the last document: its ids are the highest */
    assert_int_equal(rtr_store_write(s, del_fn, &victim), RTR_OK);
    /* deleting again fails and changes nothing */
    assert_int_equal(rtr_store_write(s, del_fn, &victim), RTR_E_NOTFOUND);
    add_ctx c2 = {docs + 1, 1, {0}};
    assert_int_equal(rtr_store_write(s, add_fn, &c2), RTR_OK);
    assert_int_equal(c2.ids[0], 3);   /* not 2 */
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(s, &t), RTR_OK);
    rtr_chunk ch;
    assert_int_equal(rtr_store_get_chunk(t, 4, &ch), RTR_E_NOTFOUND);   /* b's old chunk */
    assert_int_equal(rtr_store_get_chunk(t, 5, &ch), RTR_OK);           /* b's new chunk */
    assert_int_equal(ch.doc_id, 3);
    rtr_store_stats st;
    rtr_store_get_stats(t, &st);
    assert_int_equal(st.n_docs, 2);
    assert_int_equal(st.n_chunks, 4);
    assert_int_equal(st.n_tokens, 140);
    rtr_buf text = {0};
    assert_int_equal(rtr_store_get_text(t, 2, &text), RTR_E_NOTFOUND);
    uint64_t *ids;
    size_t n;
    assert_int_equal(rtr_store_file_docs(t, "/b.txt", &ids, &n), RTR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 3);
    rtr_free(ids);
    rtr_store_txn_end(t);
    rtr_store_close(s);
    rtr_rmtree(dir);
    free(dir);
}

/* 40 documents of 4000 tokens written with a 64 KiB map: it grows several times. */
static doc_spec g_docs40[40];
static char g_paths40[40][16];
static add_ctx docs40(void) {
    for (int i = 0; i < 40; i++) {
        snprintf(g_paths40[i], sizeof g_paths40[i], "/d%02d", i);
        g_docs40[i] = (doc_spec){g_paths40[i], NULL, NULL, 4000, (uint32_t)i};
    }
    return (add_ctx){g_docs40, 40, {0}};
}

static void test_map_grows_when_full(void **state) {
    (void)state;
    char *dir = tu_tmpdir("store");
    rtr_store *s;
    rtr_store_opts o = {.initial_map_size = 64 * 1024};   /* far too small */
    assert_int_equal(rtr_store_open(dir, 0, &o, &s), RTR_OK);
    add_ctx c = docs40();
    assert_int_equal(rtr_store_write(s, add_fn, &c), RTR_OK);
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(s, &t), RTR_OK);
    rtr_store_stats st;
    rtr_store_get_stats(t, &st);
    assert_int_equal(st.n_docs, 40);   /* exactly once, though the batch ran several times */
    assert_int_equal(st.n_tokens, 40 * 4000);
    assert_true(st.map_size > 64 * 1024);
    rtr_store_txn_end(t);
    rtr_store_close(s);
    rtr_rmtree(dir);
    free(dir);
}

/* The resident kilobytes of this process's map of the file whose path ends in name (smaps' Rss: the
 * pages mapped into it, not the page cache's), summed over its maps. */
static long mapped_kb(const char *name) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[4200];
    long kb = 0, v;
    int in = 0;
    size_t nl = strlen(name);
    while (fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\n");
        line[n] = '\0';
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3)   /* a map's first line: its range, ..., its path */
            in = n >= nl && !strcmp(line + n - nl, name);
        else if (in && sscanf(line, "Rss: %ld kB", &v) == 1)
            kb += v;
    }
    fclose(f);
    return kb;
}

/* rtr_store_warm maps the store's file into the process: its map's resident pages go from the few a
 * transaction touched to the whole file (a map larger than the file, past whose end nothing may be
 * read, as LMDB's is). */
static void test_warm_maps_the_file(void **state) {
    (void)state;
    char *dir = tu_tmpdir("store");
    rtr_store *s;
    assert_int_equal(rtr_store_open(dir, 0, NULL, &s), RTR_OK);
    add_ctx c = docs40();
    assert_int_equal(rtr_store_write(s, add_fn, &c), RTR_OK);
    rtr_store_close(s);
    assert_int_equal(rtr_store_open(dir, RTR_STORE_READONLY, NULL, &s), RTR_OK);
    char *data = rtr_path_join(dir, "data.mdb");
    struct stat st;
    assert_int_equal(stat(data, &st), 0);
    long before = mapped_kb("/data.mdb");
    uint64_t bytes;
    assert_int_equal(rtr_store_warm(s, &bytes), RTR_OK);
    long after = mapped_kb("/data.mdb");
    print_message("data.mdb %lld bytes; mapped %ld kB before, %ld kB after warming %llu bytes\n", (long long)st.st_size,
                  before, after, (unsigned long long)bytes);
    assert_true(bytes == (uint64_t)st.st_size);
    assert_true(after * 1024 >= (long)(st.st_size * 9 / 10));
    assert_true(after > before + 256);
    rtr_store_close(s);
    free(data);
    rtr_rmtree(dir);
    free(dir);
}

/* Another process grows the map past what this one mapped: a reader adopts
 * the new size at its next transaction (with no other transaction of the
 * store open on its thread; with one open it is told to end it first). */
static void test_map_grown_by_another_process(void **state) {
    (void)state;
    char *dir = tu_tmpdir("store");
    rtr_store *s, *r;
    rtr_store_opts o = {.initial_map_size = 64 * 1024};
    assert_int_equal(rtr_store_open(dir, 0, &o, &s), RTR_OK);
    rtr_store_close(s);
    assert_int_equal(rtr_store_open(dir, RTR_STORE_READONLY, &o, &r), RTR_OK);
    rtr_store_txn *t1, *t2;
    assert_int_equal(rtr_store_read_begin(r, &t1), RTR_OK);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {   /* a second process: its own environment */
        rtr_store *w;
        add_ctx c = docs40();
        int ok = rtr_store_open(dir, 0, &o, &w) == RTR_OK && rtr_store_write(w, add_fn, &c) == RTR_OK;
        rtr_store_close(w);
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(rtr_store_read_begin(r, &t2), RTR_E_BUSY);   /* t1 holds the map */
    assert_non_null(strstr(rtr_errdetail(), dir));
    rtr_store_txn_end(t1);
    assert_int_equal(rtr_store_read_begin(r, &t2), RTR_OK);
    rtr_store_stats st;
    rtr_store_get_stats(t2, &st);
    assert_int_equal(st.n_docs, 40);
    assert_true(st.map_size > 4 * 64 * 1024);
    rtr_chunk ch;
    assert_int_equal(rtr_store_get_chunk(t2, st.next_chunk_id - 1, &ch), RTR_OK);   /* the last page */
    rtr_store_txn_end(t2);
    rtr_store_close(r);
    rtr_rmtree(dir);
    free(dir);
}

/* A data.mdb cut short is refused at open with the file named, never a
 * SIGBUS at the first read past its end. */
static void test_truncated_store_is_refused(void **state) {
    (void)state;
    char *dir = tu_tmpdir("store");
    rtr_store *s = NULL;
    assert_int_equal(rtr_store_open(dir, 0, NULL, &s), RTR_OK);
    add_ctx c = docs40();
    assert_int_equal(rtr_store_write(s, add_fn, &c), RTR_OK);
    rtr_store_close(s);
    char *file = rtr_path_join(dir, "data.mdb");
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    off_t cuts[] = {st.st_size / 2, st.st_size - 4096, 3 * 4096};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(truncate(file, cuts[i]), 0);
        for (int ro = 0; ro < 2; ro++) {
            s = NULL;
            assert_int_equal(rtr_store_open(dir, ro ? RTR_STORE_READONLY : 0, NULL, &s), RTR_E_CORRUPT);
            assert_null(s);
            assert_non_null(strstr(rtr_errdetail(), "data.mdb: truncated"));
        }
    }
    free(file);
    rtr_rmtree(dir);
    free(dir);
}

/* rtr_store_check: a healthy store has no problems; records changed behind
 * its back (raw LMDB puts) are each reported. */
typedef struct seen { int n; char first[512]; int counters, chunk; } seen;
static void on_problem(void *ctx, const char *msg) {
    seen *s = ctx;
    if (!s->n++) snprintf(s->first, sizeof s->first, "%s", msg);
    s->counters |= strstr(msg, "counters") != NULL;
    s->chunk |= strstr(msg, "corrupt chunk record 3") != NULL;
}

static void raw_put(const char *dir, const char *db, const void *key, size_t kl, const void *val, size_t vl) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, (size_t)1 << 30);
    assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
    MDB_val k = {kl, (void *)key}, v = {vl, (void *)val};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_check_finds_damage(void **state) {
    (void)state;
    char *dir = tu_tmpdir("store");
    rtr_store *s;
    assert_int_equal(rtr_store_open(dir, 0, NULL, &s), RTR_OK);
    doc_spec docs[] = {{"/a", "t", NULL, 200, 1}, {"/b", NULL, NULL, 64, 2}};
    add_ctx c = {docs, 2, {0}};
    assert_int_equal(rtr_store_write(s, add_fn, &c), RTR_OK);
    rtr_store_check_report r;
    seen sn = {0};
    assert_int_equal(rtr_store_check(s, NULL, on_problem, &sn, &r), RTR_OK);
    assert_int_equal(r.problems, 0);
    assert_int_equal(r.docs, 2);
    assert_int_equal(r.chunks, 5);   /* 4 + 1 */
    assert_int_equal(r.texts, 2);
    assert_int_equal(r.links, 2);
    rtr_store_close(s);
    /* a chunk record cut short, and counters one document too many */
    uint8_t key[8] = {0, 0, 0, 0, 0, 0, 0, 3}, junk[20] = {0};
    raw_put(dir, "chunks", key, 8, junk, sizeof junk);
    assert_int_equal(rtr_store_open(dir, RTR_STORE_READONLY, NULL, &s), RTR_OK);
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(s, &t), RTR_OK);
    rtr_store_stats st;
    rtr_store_get_stats(t, &st);
    rtr_store_txn_end(t);
    rtr_store_close(s);
    uint8_t cnt[48];
    uint64_t v[6] = {st.next_doc_id, st.next_chunk_id, st.n_docs + 1, st.n_chunks, st.n_tokens, st.n_bytes};
    for (int i = 0; i < 6; i++)
        for (int b = 0; b < 8; b++) cnt[8 * i + b] = (uint8_t)(v[i] >> (8 * b));
    raw_put(dir, "meta", "counters", 8, cnt, sizeof cnt);
    assert_int_equal(rtr_store_open(dir, RTR_STORE_READONLY, NULL, &s), RTR_OK);
    memset(&sn, 0, sizeof sn);
    assert_int_equal(rtr_store_check(s, NULL, on_problem, &sn, &r), RTR_OK);
    assert_true(r.problems >= 2);
    assert_int_equal(sn.n, (int)r.problems);
    assert_true(sn.chunk);
    assert_true(sn.counters);
    rtr_store_close(s);
    rtr_rmtree(dir);
    free(dir);
}

static void test_reader_sees_snapshot_while_writer_adds(void **state) {
    (void)state;
    char *dir = tu_tmpdir("store");
    rtr_store *s;
    assert_int_equal(rtr_store_open(dir, 0, NULL, &s), RTR_OK);
    doc_spec docs[] = {{"/a", NULL, NULL, 64, 1}, {"/b", NULL, NULL, 64, 2}};
    add_ctx c = {docs, 1, {0}};
    assert_int_equal(rtr_store_write(s, add_fn, &c), RTR_OK);
    rtr_store *r;
    assert_int_equal(rtr_store_open(dir, RTR_STORE_READONLY, NULL, &r), RTR_OK);
    rtr_store_txn *t;
    assert_int_equal(rtr_store_read_begin(r, &t), RTR_OK);
    add_ctx c2 = {docs + 1, 1, {0}};
    assert_int_equal(rtr_store_write(s, add_fn, &c2), RTR_OK);
    rtr_store_stats st;
    rtr_store_get_stats(t, &st);
    assert_int_equal(st.n_docs, 1);   /* the old snapshot */
    rtr_chunk ch;
    assert_int_equal(rtr_store_get_chunk(t, 2, &ch), RTR_E_NOTFOUND);
    rtr_store_txn_end(t);
    assert_int_equal(rtr_store_read_begin(r, &t), RTR_OK);
    rtr_store_get_stats(t, &st);
    assert_int_equal(st.n_docs, 2);   /* a new one sees the write */
    rtr_store_txn_end(t);
    rtr_store_close(r);
    rtr_store_close(s);
    rtr_rmtree(dir);
    free(dir);
}

static void test_not_a_store(void **state) {
    (void)state;
    char *dir = tu_tmpdir("store");
    rtr_store *s = NULL;
    /* read-only open of an empty directory */
    assert_int_equal(rtr_store_open(dir, RTR_STORE_READONLY, NULL, &s), RTR_E_NOTFOUND);
    assert_null(s);
    /* garbage data.mdb */
    char junk[8192];
    memset(junk, 'x', sizeof junk);
    tu_write(dir, "data.mdb", junk, sizeof junk);
    assert_int_equal(rtr_store_open(dir, 0, NULL, &s), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), dir));
    /* a file where the directory should be */
    char *file = rtr_path_join(dir, "data.mdb");
    assert_int_equal(rtr_store_open(file, 0, NULL, &s), RTR_E_INVALID);
    free(file);
    rtr_rmtree(dir);
    free(dir);
}

static void test_allocation_failures_leave_store_intact(void **state) {
    (void)state;
    char *dir = tu_tmpdir("store");
    rtr_store *s;
    assert_int_equal(rtr_store_open(dir, 0, NULL, &s), RTR_OK);
    doc_spec docs[] = {{"/a", "t", "x", 200, 1}};
    int failures = 0;
    for (long k = 1; k < 200; k++) {
        add_ctx c = {docs, 1, {0}};
        rtr_alloc_fail_at(k);
        int rc = rtr_store_write(s, add_fn, &c);
        rtr_alloc_fail_at(0);
        if (rc == RTR_OK) break;
        assert_int_equal(rc, RTR_E_NOMEM);
        failures++;
        rtr_store_txn *t;
        assert_int_equal(rtr_store_read_begin(s, &t), RTR_OK);
        rtr_store_stats st;
        rtr_store_get_stats(t, &st);
        assert_int_equal(st.n_docs, 0);    /* rolled back */
        assert_int_equal(st.next_doc_id, 1);
        rtr_store_txn_end(t);
    }
    assert_true(failures > 0);
    rtr_store_close(s);
    rtr_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_get_and_continuation),
        cmocka_unit_test(test_delete_and_ids_never_reused),
        cmocka_unit_test(test_map_grows_when_full),
        cmocka_unit_test(test_warm_maps_the_file),
        cmocka_unit_test(test_map_grown_by_another_process),
        cmocka_unit_test(test_truncated_store_is_refused),
        cmocka_unit_test(test_check_finds_damage),
        cmocka_unit_test(test_reader_sees_snapshot_while_writer_adds),
        cmocka_unit_test(test_not_a_store),
        cmocka_unit_test(test_allocation_failures_leave_store_intact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
