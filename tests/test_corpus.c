/* test_corpus.c - walking paths, reading files, the binary check and extracting documents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/stat.h>

#include "index/corpus.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/status.h"
#include "lib/utf8.h"
#include "testutil.h"

typedef struct collected {
    char texts[8][256];
    char ids[8][32];
    char titles[8][64];
    int n;
} collected;

static int collect(void *ctx, const rtr_extracted *d) {
    collected *c = ctx;
    if (c->n >= 8) return RTR_OK;
    snprintf(c->texts[c->n], sizeof c->texts[0], "%.*s", (int)d->len, (const char *)d->text);
    snprintf(c->ids[c->n], sizeof c->ids[0], "%s", d->ext_id ? d->ext_id : "");
    snprintf(c->titles[c->n], sizeof c->titles[0], "%s", d->title ? d->title : "");
    c->n++;
    return RTR_OK;
}

static int extract(const char *s, size_t len, int fmt, const rtr_corpus_opts *o, collected *c, char **detail,
                   uint64_t *bad) {
    memset(c, 0, sizeof *c);
    return rtr_corpus_extract((const uint8_t *)s, len, fmt, o, collect, c, detail, bad);
}

static void test_html_to_text(void **state) {
    (void)state;
    const char *html =
        "<!DOCTYPE html><html><head><title>The &amp; Title</title><style>p{color:red}</style>"
        "<script>var x = '<p>not text</p>';</script></head><body>"
        "<h1>Heading</h1><p>First   para&nbsp;with <b>bold</b> and &#233;&#x20AC; &unknown; x&lt;y</p>"
        "<!-- a comment <p>hidden</p> --><div>Second</div><br>tail a < b</body></html>";
    rtr_buf out = {0};
    char *title = NULL;
    assert_int_equal(rtr_html_to_text((const uint8_t *)html, strlen(html), &out, &title), RTR_OK);
    rtr_buf_terminate(&out);
    assert_string_equal(title, "The & Title");
    assert_string_equal((char *)out.data,
                        "Heading\n\nFirst para\xC2\xA0with bold and \xC3\xA9\xE2\x82\xAC &unknown; x<y\n\nSecond\n\n"
                        "tail a < b");
    assert_null(strstr((char *)out.data, "not text"));
    assert_null(strstr((char *)out.data, "hidden"));
    assert_null(strstr((char *)out.data, "color"));
    rtr_free(title);
    rtr_buf_free(&out);
}

static void test_utf8(void **state) {
    (void)state;
    const uint8_t ok[] = "plain \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";
    assert_int_equal(rtr_utf8_valid_prefix(ok, sizeof ok - 1), sizeof ok - 1);
    /* overlong, surrogate, truncated, stray continuation, > U+10FFFF */
    const uint8_t bad[] = "a\xC0\xAF" "b\xED\xA0\x80" "c\xE2\x82" "d\x80" "e\xF4\x90\x80\x80";
    assert_int_equal(rtr_utf8_valid_prefix(bad, sizeof bad - 1), 1);
    rtr_buf out = {0};
    long n = rtr_utf8_repair(bad, sizeof bad - 1, &out);
    assert_true(n >= 5);
    assert_int_equal(rtr_utf8_valid_prefix(out.data, out.len), out.len);
    rtr_buf_terminate(&out);
    assert_non_null(strstr((char *)out.data, "b"));
    assert_non_null(strstr((char *)out.data, "e\xEF\xBF\xBD"));
    rtr_buf_free(&out);
}

static void test_binary_and_policies(void **state) {
    (void)state;
    collected c;
    char *detail = NULL;
    uint64_t bad;
    const char bin[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    assert_int_equal(extract(bin, sizeof bin - 1, RTR_FMT_AUTO, NULL, &c, &detail, &bad), RTR_SKIP_BINARY);
    rtr_free(detail);
    assert_int_equal(extract("", 0, RTR_FMT_TEXT, NULL, &c, &detail, &bad), RTR_SKIP_EMPTY);
    rtr_free(detail);
    assert_int_equal(extract(" \n\t ", 4, RTR_FMT_TEXT, NULL, &c, &detail, &bad), RTR_SKIP_EMPTY);
    rtr_free(detail);
    const char latin1[] = "caf\xE9 au lait";
    rtr_corpus_opts skip = {.utf8_policy = RTR_UTF8_SKIP};
    assert_int_equal(extract(latin1, sizeof latin1 - 1, RTR_FMT_TEXT, &skip, &c, &detail, &bad), RTR_SKIP_INVALID_UTF8);
    assert_non_null(strstr(detail, "byte 3"));
    rtr_free(detail);
    assert_int_equal(extract(latin1, sizeof latin1 - 1, RTR_FMT_TEXT, NULL, &c, &detail, &bad), RTR_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.texts[0], "caf\xEF\xBF\xBD au lait");
    rtr_free(detail);
}

static void test_jsonl_records_and_truncated_line(void **state) {
    (void)state;
    const char *jl = "{\"id\": \"a\", \"text\": \"first doc\", \"title\": \"T1\"}\n"
                     "\n"
                     "{\"id\": 7, \"text\": \"second\"}\n"
                     "{\"text\": \"no id\"}\n"
                     "{\"body\": \"wrong field\"}\n"
                     "[1, 2]\n"
                     "{\"id\": \"z\", \"text\": \"trunc";
    collected c;
    char *detail = NULL;
    uint64_t bad = 0;
    assert_int_equal(extract(jl, strlen(jl), RTR_FMT_JSONL, NULL, &c, &detail, &bad), RTR_OK);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.texts[0], "first doc");
    assert_string_equal(c.ids[0], "a");
    assert_string_equal(c.titles[0], "T1");
    assert_string_equal(c.ids[1], "7");
    assert_string_equal(c.ids[2], "line:4");
    assert_int_equal(bad, 3);
    assert_non_null(strstr(detail, "line 5"));
    rtr_free(detail);
    /* a configurable text field */
    rtr_corpus_opts o = {.text_field = "body"};
    assert_int_equal(extract(jl, strlen(jl), RTR_FMT_JSONL, &o, &c, &detail, &bad), RTR_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.texts[0], "wrong field");
    rtr_free(detail);
}

static void test_json_file(void **state) {
    (void)state;
    collected c;
    char *detail = NULL;
    uint64_t bad;
    const char *arr = "[{\"text\": \"one\"}, {\"text\": \"two\", \"id\": \"b\"}, 5]";
    assert_int_equal(extract(arr, strlen(arr), RTR_FMT_JSON, NULL, &c, &detail, &bad), RTR_OK);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.ids[0], "item:0");
    assert_string_equal(c.ids[1], "b");
    assert_int_equal(bad, 1);
    rtr_free(detail);
    const char *obj = "{\"title\": \"X\", \"text\": \"whole\"}";
    assert_int_equal(extract(obj, strlen(obj), RTR_FMT_JSON, NULL, &c, &detail, &bad), RTR_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.ids[0], "");
    assert_string_equal(c.titles[0], "X");
    const char *broken = "{\"text\": ";
    assert_int_equal(extract(broken, strlen(broken), RTR_FMT_JSON, NULL, &c, &detail, &bad), RTR_SKIP_BAD_FORMAT);
    rtr_free(detail);
}

static int has_file(const rtr_corpus_list *l, const char *suffix) {
    for (size_t i = 0; i < l->n; i++) {
        size_t a = strlen(l->files[i].path), b = strlen(suffix);
        if (a >= b && !strcmp(l->files[i].path + a - b, suffix)) return 1;
    }
    return 0;
}

static void test_walk_symlink_loops_hidden_and_order(void **state) {
    (void)state;
    char *dir = tu_tmpdir("walk");
    char p[512];
    snprintf(p, sizeof p, "%s/sub/deeper", dir);
    assert_int_equal(rtr_mkdirs(p), RTR_OK);
    tu_write_str(dir, "b.txt", "b");
    tu_write_str(dir, "a.md", "a");
    tu_write_str(dir, "sub/c.html", "<p>c</p>");
    tu_write_str(dir, "sub/deeper/d.jsonl", "{\"text\":\"d\"}");
    tu_write_str(dir, ".hidden.txt", "h");
    char target[512], link[512];
    snprintf(link, sizeof link, "%s/sub/deeper/loop", dir);       /* -> the root: a loop */
    assert_int_equal(symlink(dir, link), 0);
    snprintf(link, sizeof link, "%s/sub/alias.txt", dir);         /* a second name for b.txt */
    snprintf(target, sizeof target, "%s/b.txt", dir);
    assert_int_equal(symlink(target, link), 0);
    snprintf(link, sizeof link, "%s/dangling.txt", dir);
    assert_int_equal(symlink("/nonexistent/retro/x", link), 0);
    snprintf(link, sizeof link, "%s/self", dir);                  /* a link to itself */
    assert_int_equal(symlink(link, link), 0);
    snprintf(p, sizeof p, "%s/fifo", dir);
    assert_int_equal(mkfifo(p, 0644), 0);

    rtr_corpus_list l;
    const char *roots[] = {dir};
    assert_int_equal(rtr_corpus_walk(roots, 1, NULL, &l), RTR_OK);
    assert_int_equal(l.n, 4);   /* a.md b.txt sub/c.html sub/deeper/d.jsonl, each once */
    assert_true(has_file(&l, "/a.md"));
    assert_true(has_file(&l, "/sub/c.html"));
    assert_false(has_file(&l, ".hidden.txt"));
    for (size_t i = 1; i < l.n; i++) assert_true(strcmp(l.files[i - 1].path, l.files[i].path) < 0);
    assert_int_equal(l.files[2].format, RTR_FMT_HTML);
    assert_int_equal(l.files[3].format, RTR_FMT_JSONL);
    int dangling = 0, loop = 0, fifo = 0;
    for (size_t i = 0; i < l.skips.n; i++) {
        if (strstr(l.skips.items[i].path, "dangling")) dangling = l.skips.items[i].reason == RTR_SKIP_UNREADABLE;
        if (strstr(l.skips.items[i].path, "self")) loop = l.skips.items[i].reason == RTR_SKIP_LOOP;
        if (strstr(l.skips.items[i].path, "fifo")) fifo = l.skips.items[i].reason == RTR_SKIP_NOT_REGULAR;
    }
    assert_true(dangling && loop && fifo);
    assert_int_equal(l.n_roots, 1);
    rtr_corpus_list_free(&l);

    rtr_corpus_opts hidden = {.include_hidden = 1};
    assert_int_equal(rtr_corpus_walk(roots, 1, &hidden, &l), RTR_OK);
    assert_true(has_file(&l, ".hidden.txt"));
    rtr_corpus_list_free(&l);

    const char *missing[] = {"/nonexistent/retro/path"};
    assert_int_equal(rtr_corpus_walk(missing, 1, NULL, &l), RTR_E_NOTFOUND);
    assert_non_null(strstr(rtr_errdetail(), "/nonexistent/retro/path"));
    rtr_rmtree(dir);
    free(dir);
}

/* The one text/binary verdict (index add and tokenizer train both use it). */
static void test_looks_binary(void **state) {
    (void)state;
    uint8_t b[10000];
    memset(b, 'a', sizeof b);
    assert_false(rtr_looks_binary(b, sizeof b));
    for (size_t i = 0; i < 1000; i += 5) b[i] = 0x01;   /* 20% control codes in 1000 bytes */
    assert_true(rtr_looks_binary(b, 1000));
    memset(b, 'a', sizeof b);
    for (size_t i = 0; i < 1000; i += 20) b[i] = 0x01;  /* 5%: text */
    assert_false(rtr_looks_binary(b, 1000));
    memset(b, 'a', sizeof b);
    for (size_t i = 0; i < 1000; i += 4) b[i] = i % 8 ? '\t' : 0x1b;   /* tabs and ESC are text */
    assert_false(rtr_looks_binary(b, 1000));
    memset(b, 'a', sizeof b);
    b[9000] = 0;                                        /* a NUL after the 8 KiB looked at */
    assert_false(rtr_looks_binary(b, sizeof b));
    b[100] = 0;
    assert_true(rtr_looks_binary(b, sizeof b));
}

static void test_read(void **state) {
    (void)state;
    char *dir = tu_tmpdir("read");
    tu_write_str(dir, "five.txt", "hello");
    char *path = rtr_path_join(dir, "five.txt"), *missing = rtr_path_join(dir, "missing.txt");
    rtr_corpus_data in;
    assert_int_equal(rtr_corpus_read(path, NULL, &in), RTR_OK);
    assert_int_equal(in.len, 5);
    assert_int_equal(in.size, 5);
    assert_true(in.mtime_ns > 0);
    assert_string_equal((char *)in.data, "hello");
    assert_null(in.detail);
    rtr_free(in.data);
    rtr_corpus_opts five = {.max_file_size = 5}, four = {.max_file_size = 4};
    assert_int_equal(rtr_corpus_read(path, &five, &in), RTR_OK);   /* the limit itself is fine */
    rtr_free(in.data);
    assert_int_equal(rtr_corpus_read(path, &four, &in), RTR_SKIP_TOO_LARGE);
    assert_null(in.data);
    assert_string_equal(in.detail, "5 bytes, limit 4");
    assert_int_equal(in.size, 5);
    rtr_free(in.detail);
    assert_int_equal(rtr_corpus_read(missing, NULL, &in), RTR_SKIP_VANISHED);
    assert_null(in.data);
    assert_non_null(in.detail);
    rtr_free(in.detail);
    rtr_alloc_fail_at(1);
    int rc = rtr_corpus_read(path, NULL, &in);
    rtr_alloc_fail_at(0);
    assert_int_equal(rc, RTR_E_NOMEM);
    assert_null(in.data);
    rtr_rmtree(dir);
    rtr_free(path);
    rtr_free(missing);
    free(dir);
}

/* rtr_grow through one of its users: a failed growth keeps what was there. */
static void test_growth(void **state) {
    (void)state;
    rtr_skip_list l = {0};
    char name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "f%d", i);
        assert_int_equal(rtr_skip_list_add(&l, name, RTR_SKIP_BINARY, NULL), RTR_OK);
    }
    assert_int_equal(l.n, 100);
    assert_int_equal(l.cap, 128);   /* 16, 32, 64, 128 */
    while (l.n < l.cap) assert_int_equal(rtr_skip_list_add(&l, "x", RTR_SKIP_EMPTY, NULL), RTR_OK);
    rtr_skip *before = l.items;
    rtr_alloc_fail_at(1);   /* the growth, the first allocation, fails */
    int rc = rtr_skip_list_add(&l, "one too many", RTR_SKIP_EMPTY, NULL);
    rtr_alloc_fail_at(0);
    assert_int_equal(rc, RTR_E_NOMEM);
    assert_int_equal(l.n, 128);
    assert_int_equal(l.cap, 128);
    assert_ptr_equal(l.items, before);
    assert_string_equal(l.items[99].path, "f99");
    rtr_skip_list_free(&l);

    uint64_t *v = NULL;
    size_t cap = 0;
    assert_int_equal(RTR_GROW(v, &cap, 0), RTR_OK);        /* nothing needed: nothing allocated */
    assert_null(v);
    assert_int_equal(RTR_GROW(v, &cap, 17), RTR_OK);
    assert_int_equal(cap, 32);
    v[16] = 7;
    assert_int_equal(RTR_GROW(v, &cap, SIZE_MAX / 4), RTR_E_NOMEM);   /* bytes would overflow */
    assert_int_equal(cap, 32);
    assert_int_equal(v[16], 7);
    rtr_free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_html_to_text),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_binary_and_policies),
        cmocka_unit_test(test_jsonl_records_and_truncated_line),
        cmocka_unit_test(test_json_file),
        cmocka_unit_test(test_walk_symlink_loops_hidden_and_order),
        cmocka_unit_test(test_looks_binary),
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
