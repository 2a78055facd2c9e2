/* test_api.c - the public API's documents (include/retro.h): texts added from memory, listed, read back,
 * replaced and deleted by id; and one knowledge base handle shared by a writer thread and three readers:
 * searches go on while a writer holds the writer lock, and see each build once it commits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "lib/alloc.h"
#include "lib/io.h"
#include "testutil.h"

static const char *const TOPICS[] = {"harbour ferries leave the north pier twice a day",
                                     "the lighthouse keeper polishes the great lens every evening",
                                     "glaciers carve deep valleys into the granite mountains",
                                     "the orchestra tunes to the oboe before the symphony begins"};

static retro_kb *new_kb(char **dir_out) {
    char *parent = tu_tmpdir("api");
    char *dir = rtr_path_join(parent, "kb");
    free(parent);
    retro_kb *kb;
    assert_int_equal(retro_kb_open(dir, RETRO_KB_WRITE | RETRO_KB_CREATE, NULL, &kb), RETRO_OK);
    *dir_out = dir;
    return kb;
}

/* a few hundred words on one topic, so that a document fills several chunks */
static char *topic_text(int t, int words) {
    size_t cap = (size_t)words * 16 + 64, n = 0;
    char *s = malloc(cap);
    for (int i = 0; n + 80 < cap && i < words / 8; i++) n += (size_t)snprintf(s + n, cap - n, "%s. ", TOPICS[t]);
    return s;
}

static void test_texts_list_get_replace_delete(void **state) {
    (void)state;
    char *dir;
    retro_kb *kb = new_kb(&dir);
    char *a = topic_text(0, 400), *b = topic_text(1, 400);
    retro_text docs[] = {{"notes/harbour.txt", a, strlen(a)}, {"notes/lighthouse.md", b, strlen(b)}};
    retro_add_report rep;
    uint64_t ids2[2];
    assert_int_equal(retro_kb_add_texts(kb, docs, 2, ids2, &rep), RETRO_OK);
    assert_int_equal(rep.files_new, 2);
    assert_int_equal(rep.docs_added, 2);
    assert_true(rep.chunks_added >= 4);

    /* the same texts again: nothing changes */
    assert_int_equal(retro_kb_add_texts(kb, docs, 2, ids2, &rep), RETRO_OK);
    assert_int_equal(rep.files_unchanged, 2);
    assert_int_equal(rep.docs_added, 0);

    /* bad names, refused before anything is written */
    retro_text bad[] = {{"/etc/passwd", "x", 1}, {"", "x", 1}, {"a\xff", "x", 1}};
    for (int i = 0; i < 3; i++) assert_int_equal(retro_kb_add_texts(kb, &bad[i], 1, NULL, NULL), RETRO_E_INVALID);
    retro_text twice[] = {{"same", "x", 1}, {"same", "y", 1}};
    assert_int_equal(retro_kb_add_texts(kb, twice, 2, NULL, NULL), RETRO_E_INVALID);

    retro_doc_info *list;
    size_t n;
    assert_int_equal(retro_kb_docs(kb, 0, 10, &list, &n), RETRO_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].path, "notes/harbour.txt");
    assert_string_equal(list[1].path, "notes/lighthouse.md");
    assert_true(list[0].id < list[1].id);
    assert_int_equal(list[0].bytes, strlen(a));
    assert_true(list[0].chunks >= 2 && list[0].tokens > 64);
    uint64_t first = list[0].id, second = list[1].id;
    assert_int_equal(ids2[0], first);
    assert_int_equal(ids2[1], second);
    retro_docs_free(list, n);
    /* paging: one at a time, after the last id seen */
    assert_int_equal(retro_kb_docs(kb, first, 1, &list, &n), RETRO_OK);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, second);
    retro_docs_free(list, n);
    assert_int_equal(retro_kb_docs(kb, second, 5, &list, &n), RETRO_OK);
    assert_int_equal(n, 0);
    retro_docs_free(list, n);
    assert_int_equal(retro_kb_docs(kb, 0, 0, &list, &n), RETRO_E_INVALID);

    retro_doc_info *d;
    char *text;
    size_t len;
    assert_int_equal(retro_kb_doc_get(kb, second, &d, &text, &len), RETRO_OK);
    assert_string_equal(d->path, "notes/lighthouse.md");
    assert_int_equal(len, strlen(b));
    assert_memory_equal(text, b, len);
    assert_int_equal(text[len], '\0');
    retro_docs_free(d, 1);
    retro_free(text);
    assert_int_equal(retro_kb_doc_get(kb, second + 100, &d, NULL, NULL), RETRO_E_NOTFOUND);

    /* a name posted again with new text replaces its document */
    char *c = topic_text(2, 200);
    retro_text again = {"notes/harbour.txt", c, strlen(c)};
    assert_int_equal(retro_kb_add_texts(kb, &again, 1, NULL, &rep), RETRO_OK);
    assert_int_equal(rep.files_changed, 1);
    assert_int_equal(rep.docs_removed, 1);
    assert_int_equal(rep.docs_added, 1);
    assert_int_equal(retro_kb_doc_get(kb, first, &d, NULL, NULL), RETRO_E_NOTFOUND);
    assert_int_equal(retro_kb_docs(kb, 0, 10, &list, &n), RETRO_OK);
    assert_int_equal(n, 2);
    uint64_t replaced = list[1].id;
    assert_string_equal(list[1].path, "notes/harbour.txt");
    retro_docs_free(list, n);

    /* deleting by id: an unknown id deletes nothing */
    uint64_t ids[] = {second, 999999};
    uint64_t removed = 7;
    assert_int_equal(retro_kb_remove_docs(kb, ids, 2, &removed), RETRO_E_NOTFOUND);
    assert_int_equal(removed, 0);
    assert_int_equal(retro_kb_remove_docs(kb, ids, 1, &removed), RETRO_OK);
    assert_int_equal(removed, 1);
    retro_kb_stats st;
    assert_int_equal(retro_kb_stats_get(kb, &st), RETRO_OK);
    assert_int_equal(st.documents, 1);
    assert_int_equal(retro_kb_docs(kb, 0, 10, &list, &n), RETRO_OK);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, replaced);
    retro_docs_free(list, n);

    /* what survives a reopen */
    retro_kb_close(kb);
    assert_int_equal(retro_kb_open(dir, 0, NULL, &kb), RETRO_OK);
    assert_int_equal(retro_kb_stats_get(kb, &st), RETRO_OK);
    assert_int_equal(st.documents, 1);
    retro_kb_close(kb);
    free(a);
    free(b);
    free(c);
    free(dir);
}

/* Is a document named name the first hit for query? */
static int first_is(retro_kb *kb, const char *query, const char *name) {
    retro_search_opts so = {.k = 3};
    retro_results r;
    if (retro_search(kb, query, strlen(query), &so, &r)) return 0;
    int ok = r.n > 0 && !strcmp(r.items[0].path, name);
    retro_results_free(&r);
    return ok;
}

typedef struct writer_arg {
    retro_kb *kb;
    int rounds;
    int rc;
} writer_arg;

static void *writer_main(void *p) {
    writer_arg *w = p;
    for (int i = 0; i < w->rounds && !w->rc; i++) {
        char name[32], *t = topic_text(i % 4, 160);
        snprintf(name, sizeof name, "round%02d.txt", i);
        retro_text d = {name, t, strlen(t)};
        w->rc = retro_kb_add_texts(w->kb, &d, 1, NULL, NULL);
        if (!w->rc) w->rc = retro_kb_build(w->kb, NULL);
        free(t);
    }
    return NULL;
}

typedef struct reader_arg {
    retro_kb *kb;
    int found;
} reader_arg;

static void *reader_main(void *p) {   /* another thread searching the same handle */
    reader_arg *r = p;
    for (int i = 0; i < 30; i++) r->found += first_is(r->kb, "the oboe and the symphony", "orchestra.txt");
    return NULL;
}

static void test_readers_beside_a_writer(void **state) {
    (void)state;
    char *dir;
    retro_kb *kb = new_kb(&dir);
    char *t = topic_text(3, 300);
    retro_text d = {"orchestra.txt", t, strlen(t)};
    assert_int_equal(retro_kb_add_texts(kb, &d, 1, NULL, NULL), RETRO_OK);
    assert_int_equal(retro_kb_build(kb, NULL), RETRO_OK);
    assert_true(first_is(kb, "the oboe and the symphony", "orchestra.txt"));

    /* a writer holding the writer lock does not stop a search */
    pthread_mutex_lock(&kb->wmu);
    assert_true(first_is(kb, "the oboe and the symphony", "orchestra.txt"));
    pthread_mutex_unlock(&kb->wmu);

    /* a writer adds and builds in rounds while this thread and two others search */
    writer_arg w = {kb, 6, 0};
    pthread_t th, rt[2];
    reader_arg ra[2] = {{kb, 0}, {kb, 0}};
    assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&rt[i], NULL, reader_main, &ra[i]), 0);
    int searches = 0;
    for (int i = 0; i < 40; i++, searches++) assert_true(first_is(kb, "oboe symphony orchestra tunes", "orchestra.txt") ||
                                                         first_is(kb, "oboe symphony orchestra tunes", "round03.txt"));
    pthread_join(th, NULL);
    for (int i = 0; i < 2; i++) {
        pthread_join(rt[i], NULL);
        assert_int_equal(ra[i].found, 30);
    }
    assert_int_equal(w.rc, RETRO_OK);
    assert_int_equal(searches, 40);
    /* every round's build is seen by the searches after it */
    retro_kb_stats st;
    assert_int_equal(retro_kb_stats_get(kb, &st), RETRO_OK);
    assert_int_equal(st.documents, 7);
    assert_int_equal(st.vectors, st.chunks);
    assert_true(first_is(kb, "glaciers carve deep valleys into the granite mountains", "round02.txt") ||
                first_is(kb, "glaciers carve deep valleys into the granite mountains", "round04.txt"));
    retro_kb_close(kb);
    free(t);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_texts_list_get_replace_delete),
        cmocka_unit_test(test_readers_beside_a_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
