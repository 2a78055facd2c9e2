/* test_api.c - the public API's documents (include/retro.h): texts added from memory, listed, read back,
 * replaced and deleted by id; one knowledge base handle shared by a writer thread and three readers:
 * searches go on while a writer holds the writer lock, and see each build once it commits; and the
 * retriever a model is trained with, recorded in it and used for its neighbours. */
#include <limits.h>
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
#include "index/lexical.h"
#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"
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

/* --- models and their retriever ---------------------------------------------------------------------- */
/* A tiny run on kb into dir (a resume keeps the run's shape); its status. */
static int tiny_train(retro_kb *kb, const char *dir, int retriever, int resume, int64_t steps) {
    retro_train_opts o;
    retro_train_opts_default(&o);
    o.out_dir = dir;
    o.retriever = retriever;
    o.resume = resume;
    o.steps = steps;
    o.progress = 0;
    if (!resume) {
        o.context = 128;
        o.width = 32;
        o.layers = 2;
        o.heads = 2;
        o.batch = 2;
        o.eval_seqs = 2;
        o.val_frac = 0.3;
    }
    retro_train_result res;
    return retro_train(kb, &o, &res);
}

static int model_retriever(const char *dir) {
    retro_model *m;
    assert_int_equal(retro_model_load(dir, NULL, &m), RETRO_OK);
    retro_model_info mi;
    retro_model_get_info(m, &mi);
    retro_model_free(m);
    return mi.retriever;
}

typedef struct seen {
    int64_t ids[64];
    uint32_t k;
    int calls;
} seen;

static void on_retrieval(void *ctx, int64_t chunk, const retro_neighbour *nb, uint32_t k) {
    seen *s = ctx;
    if (chunk != 0) return;
    s->calls++;
    s->k = k;
    for (uint32_t j = 0; j < k && j < 64; j++) s->ids[j] = nb[j].chunk_id;
}

/* A generation's neighbours for its prompt's first chunk are those of the model's retriever. */
static void check_live_retriever(retro_kb *kb, const char *model, int mode, const char *prompt) {
    retro_model *m;
    assert_int_equal(retro_model_load(model, NULL, &m), RETRO_OK);
    seen s = {0};
    retro_gen_opts go;
    retro_gen_opts_default(&go);
    go.kb = kb;
    go.max_tokens = 1;
    go.on_retrieval = on_retrieval;
    go.ctx = &s;
    retro_gen_result res;
    assert_int_equal(retro_generate(m, prompt, strlen(prompt), &go, &res), RETRO_OK);
    retro_gen_result_free(&res);
    assert_int_equal(s.calls, 1);
    int32_t *tk;
    size_t n;
    assert_int_equal(retro_tokenize(m, prompt, strlen(prompt), &tk, &n), RETRO_OK);
    assert_true(n >= 64);
    rtr_api_held *h;
    assert_int_equal(rtr_api_acquire(kb, &h), RTR_OK);
    int64_t want[64];
    rtr_nbr_opts no = {.k = s.k, .mode = mode};
    assert_int_equal(rtr_retriever_neighbours(h->r, tk, 1, &no, &(rtr_nbrs){.ids = want}), RTR_OK);
    rtr_api_release(kb, h);
    for (uint32_t j = 0; j < s.k; j++) assert_int_equal(s.ids[j], want[j]);
    retro_free(tk);
    retro_model_free(m);
}

/* 1 if the mode's neighbours for the first 64 tokens of text (kb's tokens) are not the vector's. */
static int first_chunk_neighbours_differ(retro_kb *kb, const char *text, int mode) {
    rtr_encoder *enc;
    rtr_u32vec tk = {0};
    assert_int_equal(rtr_encoder_new(rtr_kb_tokenizer(kb->kb), &enc), RTR_OK);
    assert_int_equal(rtr_encoder_encode(enc, (const uint8_t *)text, strlen(text), &tk), RTR_OK);
    assert_true(tk.len >= 64);
    rtr_api_held *h;
    assert_int_equal(rtr_api_acquire(kb, &h), RTR_OK);
    int64_t a[2], b[2];
    rtr_nbr_opts va = {.k = 2, .mode = RTR_SEARCH_VECTOR}, vb = {.k = 2, .mode = mode};
    assert_int_equal(rtr_retriever_neighbours(h->r, (const int32_t *)tk.data, 1, &va, &(rtr_nbrs){.ids = a}), RTR_OK);
    assert_int_equal(rtr_retriever_neighbours(h->r, (const int32_t *)tk.data, 1, &vb, &(rtr_nbrs){.ids = b}), RTR_OK);
    rtr_api_release(kb, h);
    rtr_u32vec_free(&tk);
    rtr_encoder_free(enc);
    return a[0] != b[0] || a[1] != b[1];
}

/* Training records the retriever (the knowledge base's search mode unless one is given; a resume keeps
 * the run's); models load it (absent: vector; a bad one is a one-line error naming the file); generation
 * and evaluation retrieve with it; models with different retrievers are not evaluated together; a
 * lexical model without the lexical index is told to build it. */
static void test_models_record_their_retriever(void **state) {
    (void)state;
    char *dir;
    retro_kb *kb = new_kb(&dir);
    const char *speeches[] = {"1960_dwight_d_eisenhower_r", "1961_dwight_d_eisenhower_r", "1961_john_f_kennedy_d",
                              "1963_john_f_kennedy_d", "1964_lyndon_b_johnson_d", "1965_lyndon_b_johnson_d",
                              "1966_lyndon_b_johnson_d", "1967_lyndon_b_johnson_d"};
    for (int i = 0; i < 8; i++) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/datasets/sotu/%s.txt", RETRO_SOURCE_DIR, speeches[i]);
        const char *one[] = {p};
        assert_int_equal(retro_kb_add(kb, one, 1, NULL), RETRO_OK);
    }
    /* the knowledge base's search mode, as `retro index build --search-mode hybrid` records it */
    assert_int_equal(rtr_kb_manifest_set(kb->kb, "search", json_pack("{s:s}", "mode", "hybrid")), RTR_OK);
    assert_int_equal(retro_kb_build(kb, NULL), RETRO_OK);
    char *models = tu_tmpdir("apim");
    char *mdef = rtr_path_join(models, "def"), *mlex = rtr_path_join(models, "lex");
    char *mvec = rtr_path_join(models, "vec");
    assert_int_equal(tiny_train(kb, mdef, RETRO_SEARCH_DEFAULT, 0, 2), RETRO_OK);
    assert_int_equal(model_retriever(mdef), RETRO_SEARCH_HYBRID);
    assert_int_equal(tiny_train(kb, mlex, RETRO_SEARCH_LEXICAL, 0, 2), RETRO_OK);
    assert_int_equal(model_retriever(mlex), RETRO_SEARCH_LEXICAL);
    assert_int_equal(tiny_train(kb, mlex, RETRO_SEARCH_DEFAULT, 1, 3), RETRO_OK);   /* not the KB's hybrid */
    assert_int_equal(model_retriever(mlex), RETRO_SEARCH_LEXICAL);
    rtr_safetensors *st;
    char *tf = rtr_path_join(mlex, "train.safetensors");
    assert_int_equal(rtr_st_load(tf, &st), RTR_OK);
    assert_string_equal(rtr_st_meta(st, "retriever"), "lexical");
    rtr_st_free(st);
    assert_int_equal(tiny_train(kb, mvec, RETRO_SEARCH_VECTOR, 0, 2), RETRO_OK);
    assert_int_equal(model_retriever(mvec), RETRO_SEARCH_VECTOR);
    assert_int_equal(tiny_train(kb, mvec, 9, 0, 2), RETRO_E_INVALID);
    assert_string_equal(retro_search_mode_name(RETRO_SEARCH_LEXICAL), "lexical");
    assert_int_equal(retro_search_mode_parse("hybrid"), RETRO_SEARCH_HYBRID);
    assert_int_equal(retro_search_mode_parse("bm25"), -1);
    assert_null(retro_search_mode_name(RETRO_SEARCH_DEFAULT));

    /* the same weights with no retriever recorded (an older model), and with a bad one */
    rtr_model *raw;
    assert_int_equal(rtr_ckpt_load(mvec, 1, 0, 0, &raw, NULL), RTR_OK);
    char *mold = rtr_path_join(models, "old"), *mbad = rtr_path_join(models, "bad");
    const char *bad_kv[] = {"retriever", "bm25"};
    assert_int_equal(rtr_ckpt_save(raw, mold, NULL, 0), RTR_OK);
    assert_int_equal(rtr_ckpt_save(raw, mbad, &(rtr_ckpt_meta){bad_kv, 1}, 0), RTR_OK);
    rtr_model_free(raw);
    char *tok_old = rtr_path_join(mold, "tokenizer.rtok"), *tok_bad = rtr_path_join(mbad, "tokenizer.rtok");
    assert_int_equal(rtr_tokenizer_save(rtr_kb_tokenizer(kb->kb), tok_old), RTR_OK);
    assert_int_equal(rtr_tokenizer_save(rtr_kb_tokenizer(kb->kb), tok_bad), RTR_OK);
    assert_int_equal(model_retriever(mold), RETRO_SEARCH_VECTOR);
    retro_model *m;
    assert_int_equal(retro_model_load(mbad, NULL, &m), RETRO_E_CORRUPT);
    char *bad_file = rtr_path_join(mbad, "model.safetensors");
    assert_non_null(strstr(retro_errdetail(), bad_file));
    assert_non_null(strstr(retro_errdetail(), "retriever \"bm25\""));
    assert_null(strchr(retro_errdetail(), '\n'));

    /* live retrieval reads with the model's retriever (the retrievers disagree on this prompt) */
    uint8_t *speech;
    size_t slen;
    assert_int_equal(rtr_read_file(RETRO_SOURCE_DIR "/datasets/sotu/1962_john_f_kennedy_d.txt", 1 << 24, &speech,
                                   &slen), RTR_OK);
    char *prompt = rtr_strndup((const char *)speech + 2000, 600);
    rtr_free(speech);
    int differ = 0;
    for (int mode = RTR_SEARCH_LEXICAL; mode <= RTR_SEARCH_HYBRID; mode++)
        differ += first_chunk_neighbours_differ(kb, prompt, mode);
    assert_int_equal(differ, 2);
    check_live_retriever(kb, mlex, RTR_SEARCH_LEXICAL, prompt);
    check_live_retriever(kb, mdef, RTR_SEARCH_HYBRID, prompt);
    check_live_retriever(kb, mvec, RTR_SEARCH_VECTOR, prompt);

    /* evaluation: runs say their retriever; two retrievers at once are refused */
    retro_model *lex, *vec;
    assert_int_equal(retro_model_load(mlex, NULL, &lex), RETRO_OK);
    assert_int_equal(retro_model_load(mvec, NULL, &vec), RETRO_OK);
    retro_eval_opts eo = {.split = RETRO_EVAL_VAL, .val_frac = 0.3, .max_docs = 1};
    retro_eval_result *er = calloc(1, sizeof *er);
    retro_model *both[] = {lex, vec};
    assert_int_equal(retro_eval(both, 2, kb, &eo, er), RETRO_E_MISMATCH);
    assert_non_null(strstr(retro_errdetail(), "evaluate them separately"));
    assert_int_equal(retro_eval(&lex, 1, kb, &eo, er), RETRO_OK);
    assert_int_equal(er->n_runs, 2);
    assert_true(er->runs[0].retrieval);
    assert_int_equal(er->runs[0].retriever, RETRO_SEARCH_LEXICAL);
    assert_false(er->runs[1].retrieval);

    /* without the lexical index: a one-line error saying how to make it; vector models go on */
    assert_int_equal(rtr_lex_clear(kb->kb), RTR_OK);
    retro_gen_opts go;
    retro_gen_opts_default(&go);
    go.kb = kb;
    go.max_tokens = 2;
    retro_gen_result res;
    assert_int_equal(retro_generate(lex, "harbour", 7, &go, &res), RETRO_E_NOTFOUND);
    assert_non_null(strstr(retro_errdetail(), "retro index build"));
    assert_non_null(strstr(retro_errdetail(), "lexical"));
    assert_null(strchr(retro_errdetail(), '\n'));
    assert_int_equal(retro_eval(&lex, 1, kb, &eo, er), RETRO_E_NOTFOUND);
    assert_non_null(strstr(retro_errdetail(), "retro index build"));
    assert_int_equal(retro_generate(vec, "harbour", 7, &go, &res), RETRO_OK);
    retro_gen_result_free(&res);
    char *mnew = rtr_path_join(models, "new");
    assert_int_equal(tiny_train(kb, mnew, RETRO_SEARCH_LEXICAL, 0, 1), RETRO_E_NOTFOUND);
    assert_non_null(strstr(retro_errdetail(), "retro index build"));

    free(er);
    retro_model_free(lex);
    retro_model_free(vec);
    retro_kb_close(kb);
    rtr_rmtree(models);
    rtr_free(prompt);
    rtr_free(mnew);
    rtr_free(bad_file);
    rtr_free(tok_old);
    rtr_free(tok_bad);
    rtr_free(mold);
    rtr_free(mbad);
    rtr_free(tf);
    rtr_free(mdef);
    rtr_free(mlex);
    rtr_free(mvec);
    free(models);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_texts_list_get_replace_delete),
        cmocka_unit_test(test_readers_beside_a_writer),
        cmocka_unit_test(test_models_record_their_retriever),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
