/* test_embed_http.c - the http embedder against tests/embed/fake_embed_server.js
 * (node, on 127.0.0.1): vectors, batching, row order, empty and non-UTF-8
 * texts, API key, retries and backoff, timeouts, refused connections, bad
 * responses of every kind, describe(), making an embedder from its description
 * (rtr_embedder_from_desc), and allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "index/embed.h"
#include "lib/alloc.h"
#include "lib/status.h"
#include "lib/utf8.h"

#define FAKE_DIM 8

static pid_t g_pid = -1;
static int g_stdin = -1;     /* the server's stdin: closing it stops the server */
static int g_port;           /* 0 = no server (node missing): tests skip */
static char g_url[64];

/* --- the fake server ------------------------------------------------------------ */
static int start_server(void **state) {
    (void)state;
    alarm(120);   /* a hung server or client fails the run instead of stalling ctest */
    int in[2], outp[2];
    if (pipe(in) || pipe(outp)) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(outp[1], 1);
        close(in[0]); close(in[1]); close(outp[0]); close(outp[1]);
        execlp("node", "node", RETRO_SOURCE_DIR "/tests/embed/fake_embed_server.js", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(outp[1]);
    g_pid = pid;
    g_stdin = in[1];
    FILE *f = fdopen(outp[0], "r");
    char line[64];
    if (f && fgets(line, sizeof line, f) && sscanf(line, "PORT %d", &g_port) == 1 && g_port > 0) {
        snprintf(g_url, sizeof g_url, "http://127.0.0.1:%d", g_port);
    } else {
        g_port = 0;
        fprintf(stderr, "test_embed_http: could not start node %s/tests/embed/fake_embed_server.js; "
                        "skipping\n", RETRO_SOURCE_DIR);
    }
    if (f) fclose(f);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int stop_server(void **state) {
    (void)state;
    if (g_stdin >= 0) close(g_stdin);
    if (g_pid > 0) {
        kill(g_pid, SIGTERM);
        waitpid(g_pid, NULL, 0);
    }
    curl_global_cleanup();
    return 0;
}

static size_t collect(char *p, size_t size, size_t n, void *ud) {
    rtr_buf *b = ud;
    return rtr_buf_append(b, p, size * n) ? 0 : size * n;
}

/* GET /stats (or POST /reset) on the fake server; returns parsed JSON. */
static json_t *server_call(const char *path, int post) {
    char url[128];
    snprintf(url, sizeof url, "%s%s", g_url, path);
    rtr_buf b = {0};
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (post) curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    json_t *j = json_loadb((const char *)b.data, b.len, 0, NULL);
    assert_non_null(j);
    rtr_buf_free(&b);
    return j;
}

static void server_reset(void) { json_decref(server_call("/reset", 1)); }

static long stat_int(const char *key) {
    json_t *s = server_call("/stats", 0);
    long v = (long)json_integer_value(json_object_get(s, key));
    json_decref(s);
    return v;
}

/* --- expected vectors -------------------------------------------------------------- */
/* The server's fakeEmbed of the bytes it received, L2-normalised. */
static void fake_embed(const uint8_t *s, size_t len, uint32_t dim, float *v) {
    for (uint32_t j = 0; j < dim; j++) {
        uint32_t h = 2166136261u ^ ((j + 1u) * 0x9e3779b1u);
        for (size_t i = 0; i < len; i++) h = (h ^ s[i]) * 16777619u;
        h ^= h >> 15;
        v[j] = (float)(((double)(h % 1001) - 500.0) / 4.0);
    }
    rtr_l2_normalize(v, 1, dim);
}

/* Expected row for a text as the client sends it (invalid UTF-8 repaired). */
static void expect_row(const rtr_text *t, float *v) {
    if (t->len == 0) {
        memset(v, 0, FAKE_DIM * sizeof *v);
        return;
    }
    rtr_buf r = {0};
    assert_true(rtr_utf8_repair((const uint8_t *)t->data, t->len, &r) >= 0);
    fake_embed(r.data, r.len, FAKE_DIM, v);
    rtr_buf_free(&r);
}

static void check_rows(const rtr_text *texts, size_t n, const float *out) {
    for (size_t i = 0; i < n; i++) {
        float want[FAKE_DIM];
        expect_row(&texts[i], want);
        double ss = 0;
        for (int j = 0; j < FAKE_DIM; j++) {
            if (fabsf(out[i * FAKE_DIM + j] - want[j]) > 1e-6f)
                fail_msg("row %zu [%d]: got %g want %g", i, j, out[i * FAKE_DIM + j], want[j]);
            ss += (double)out[i * FAKE_DIM + j] * out[i * FAKE_DIM + j];
        }
        if (texts[i].len) assert_true(fabs(ss - 1.0) < 1e-5);
        else assert_true(ss == 0.0);
    }
}

#define SKIP_WITHOUT_SERVER() do { if (!g_port) skip(); } while (0)

static rtr_http_embedder_opts opts_for(const char *model) {
    rtr_http_embedder_opts o = {.url = g_url, .model = model, .dim = FAKE_DIM, .backoff_ms = 10,
                                .timeout_ms = 5000};
    return o;
}

static rtr_embedder *make(const rtr_http_embedder_opts *o) {
    rtr_embedder *e = NULL;
    int rc = rtr_http_embedder_new(o, &e);
    if (rc) fail_msg("rtr_http_embedder_new: %s", rtr_errdetail());
    return e;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define T(s) {s, sizeof s - 1}

static const rtr_text k_texts[] = {
    T("the quick brown fox"), T("jumps over"), T("the lazy dog"), T("x"),
    T("chunk five, with \"quotes\" and \\ backslashes"),
};
#define N_TEXTS (sizeof k_texts / sizeof k_texts[0])

/* --- tests ------------------------------------------------------------------------- */
static void test_basic(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    server_reset();
    rtr_http_embedder_opts o = opts_for("m1");
    rtr_embedder *e = make(&o);
    assert_int_equal(e->dim, FAKE_DIM);
    assert_int_equal(e->max_batch, 64);
    float out[N_TEXTS * FAKE_DIM];
    assert_int_equal(rtr_embedder_embed(e, k_texts, N_TEXTS, out), RTR_OK);
    check_rows(k_texts, N_TEXTS, out);
    json_t *s = server_call("/stats", 0);
    assert_int_equal(json_integer_value(json_object_get(s, "requests")), 1);
    assert_string_equal(json_string_value(json_object_get(s, "model")), "m1");
    assert_string_equal(json_string_value(json_object_get(s, "content_type")), "application/json");
    assert_true(json_is_null(json_object_get(s, "auth")));
    json_decref(s);
    rtr_embedder_free(e);
}

static void test_learn_dim_then_mismatch(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    server_reset();
    rtr_http_embedder_opts o = opts_for("grow-dim");
    o.dim = 0;
    rtr_embedder *e = make(&o);
    assert_int_equal(e->dim, 0);
    float out[N_TEXTS * FAKE_DIM];
    /* Unknown dimension: the caller cannot size out, so out must be NULL. */
    assert_int_equal(rtr_embedder_embed(e, k_texts, 1, out), RTR_E_INVALID);
    assert_non_null(strstr(rtr_errdetail(), "dimension not known"));
    assert_int_equal(stat_int("requests"), 0);
    assert_int_equal(rtr_embedder_embed(e, k_texts, 1, NULL), RTR_OK);   /* first response: 8 */
    assert_int_equal(e->dim, FAKE_DIM);
    /* The server now answers with 12 values: refused, dimension kept. */
    int rc = rtr_embedder_embed(e, k_texts, N_TEXTS, out);
    assert_int_equal(rc, RTR_E_NET);
    assert_non_null(strstr(rtr_errdetail(), "12 values, expected 8"));
    assert_non_null(strstr(rtr_errdetail(), "learnt from the first response"));
    assert_int_equal(e->dim, FAKE_DIM);
    rtr_embedder_free(e);

    /* A normal server: the probe learns 8 and later calls fill out. */
    o.model = NULL;
    e = make(&o);
    assert_int_equal(rtr_embedder_embed(e, k_texts + 2, 1, NULL), RTR_OK);
    assert_int_equal(e->dim, FAKE_DIM);
    assert_int_equal(rtr_embedder_embed(e, k_texts, N_TEXTS, out), RTR_OK);
    check_rows(k_texts, N_TEXTS, out);
    json_t *s = server_call("/stats", 0);
    assert_false(json_is_true(json_object_get(s, "model_present")));   /* model NULL: omitted */
    json_decref(s);
    rtr_buf d = {0};
    assert_int_equal(rtr_embedder_describe(e, &d), RTR_OK);
    json_t *j = json_loadb((const char *)d.data, d.len, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "dim")), FAKE_DIM);
    assert_true(json_is_null(json_object_get(j, "model")));
    json_decref(j);
    rtr_buf_free(&d);
    rtr_embedder_free(e);
}

static void test_batching(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    server_reset();
    enum { N = 150 };
    static char bufs[N][32];
    rtr_text texts[N];
    for (int i = 0; i < N; i++) {
        int len = snprintf(bufs[i], sizeof bufs[i], "text number %d", i);
        texts[i] = (rtr_text){bufs[i], (size_t)len};
    }
    rtr_http_embedder_opts o = opts_for("shuffled");   /* also checks placement by "index" */
    rtr_embedder *e = make(&o);
    float *out = calloc((size_t)N * FAKE_DIM, sizeof *out);
    assert_int_equal(rtr_embedder_embed(e, texts, N, out), RTR_OK);
    check_rows(texts, N, out);
    json_t *s = server_call("/stats", 0);
    assert_int_equal(json_integer_value(json_object_get(s, "requests")), 3);
    json_t *sizes = json_object_get(s, "sizes");
    assert_int_equal(json_array_size(sizes), 3);
    assert_int_equal(json_integer_value(json_array_get(sizes, 0)), 64);
    assert_int_equal(json_integer_value(json_array_get(sizes, 1)), 64);
    assert_int_equal(json_integer_value(json_array_get(sizes, 2)), 22);
    json_decref(s);
    rtr_embedder_free(e);

    /* batch 7, positional rows (no "index" fields) */
    server_reset();
    o = opts_for("noindex");
    o.batch = 7;
    e = make(&o);
    assert_int_equal(e->max_batch, 7);
    memset(out, 0, (size_t)N * FAKE_DIM * sizeof *out);
    assert_int_equal(rtr_embedder_embed(e, texts, 20, out), RTR_OK);
    check_rows(texts, 20, out);
    assert_int_equal(stat_int("requests"), 3);
    rtr_embedder_free(e);
    free(out);
}

static void test_empty_and_binary_texts(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    server_reset();
    static const char nul_ctl[] = "a\0b\x01\x1f\x7f\t\n\r\"\\/";
    const rtr_text texts[] = {
        T(""),
        T("\xff\xfe not UTF-8 \xc3"),                  /* invalid bytes -> U+FFFD */
        T(""),
        T(nul_ctl),                                   /* NUL and controls: \u00XX */
        T("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),   /* valid multibyte */
        T("\xed\xa0\x80 surrogate, \xc0\xaf overlong"),
        {NULL, 0},
    };
    const size_t n = sizeof texts / sizeof texts[0];
    rtr_http_embedder_opts o = opts_for("m");
    rtr_embedder *e = make(&o);
    float out[7 * FAKE_DIM];
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) out[i] = 42.0f;
    assert_int_equal(rtr_embedder_embed(e, texts, n, out), RTR_OK);
    check_rows(texts, n, out);
    /* One text checked by hand: "\xff" arrives as U+FFFD. */
    float want[FAKE_DIM];
    fake_embed((const uint8_t *)"\xef\xbf\xbd", 3, FAKE_DIM, want);
    const rtr_text ff = T("\xff");
    float got[FAKE_DIM];
    assert_int_equal(rtr_embedder_embed(e, &ff, 1, got), RTR_OK);
    for (int j = 0; j < FAKE_DIM; j++) assert_true(fabsf(got[j] - want[j]) < 1e-6f);
    json_t *s = server_call("/stats", 0);
    assert_int_equal(json_integer_value(json_object_get(s, "requests")), 2);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(s, "sizes"), 0)), 4);
    assert_int_equal(json_integer_value(json_object_get(s, "empty_inputs")), 0);   /* never sent */
    json_decref(s);
    /* Only empty texts: zero rows, no request. */
    server_reset();
    const rtr_text empties[2] = {T(""), {NULL, 0}};
    float z[2 * FAKE_DIM];
    for (int i = 0; i < 2 * FAKE_DIM; i++) z[i] = 1.0f;
    assert_int_equal(rtr_embedder_embed(e, empties, 2, z), RTR_OK);
    for (int i = 0; i < 2 * FAKE_DIM; i++) assert_true(z[i] == 0.0f);
    assert_int_equal(stat_int("requests"), 0);
    rtr_embedder_free(e);
}

static void test_api_key(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    server_reset();
    rtr_http_embedder_opts o = opts_for("auth");
    o.api_key = "sekrit-key";
    rtr_embedder *e = make(&o);
    float out[N_TEXTS * FAKE_DIM];
    assert_int_equal(rtr_embedder_embed(e, k_texts, N_TEXTS, out), RTR_OK);
    check_rows(k_texts, N_TEXTS, out);
    json_t *s = server_call("/stats", 0);
    assert_string_equal(json_string_value(json_object_get(s, "auth")), "Bearer sekrit-key");
    json_decref(s);
    rtr_buf d = {0};
    assert_int_equal(rtr_embedder_describe(e, &d), RTR_OK);
    assert_int_equal(rtr_buf_terminate(&d), RTR_OK);
    assert_null(strstr((const char *)d.data, "sekrit"));
    rtr_buf_free(&d);
    rtr_embedder_free(e);

    /* Without the key: 401, not retried, and the message carries the status. */
    server_reset();
    o.api_key = NULL;
    e = make(&o);
    assert_int_equal(rtr_embedder_embed(e, k_texts, N_TEXTS, out), RTR_E_NET);
    assert_non_null(strstr(rtr_errdetail(), "HTTP 401"));
    assert_non_null(strstr(rtr_errdetail(), "invalid api key"));
    assert_int_equal(stat_int("requests"), 1);
    rtr_embedder_free(e);

    /* A key with a line break would inject headers. */
    o.api_key = "abc\r\nX-Evil: 1";
    rtr_embedder *bad = NULL;
    assert_int_equal(rtr_http_embedder_new(&o, &bad), RTR_E_INVALID);
    assert_null(bad);
}

static void test_retry_503_once(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    server_reset();
    rtr_http_embedder_opts o = opts_for("fail-once-503");
    rtr_embedder *e = make(&o);
    float out[N_TEXTS * FAKE_DIM];
    assert_int_equal(rtr_embedder_embed(e, k_texts, N_TEXTS, out), RTR_OK);
    check_rows(k_texts, N_TEXTS, out);
    assert_int_equal(stat_int("requests"), 2);
    rtr_embedder_free(e);
}

static void test_always_500(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    server_reset();
    rtr_http_embedder_opts o = opts_for("always-500");
    o.retries = 2;
    rtr_embedder *e = make(&o);
    float out[N_TEXTS * FAKE_DIM];
    assert_int_equal(rtr_embedder_embed(e, k_texts, N_TEXTS, out), RTR_E_NET);
    assert_int_equal(rtr_errcode(), RTR_E_NET);
    assert_non_null(strstr(rtr_errdetail(), "HTTP 500: internal server error"));
    assert_non_null(strstr(rtr_errdetail(), "after 3 attempts"));
    assert_non_null(strstr(rtr_errdetail(), g_url));
    assert_int_equal(stat_int("requests"), 3);
    rtr_embedder_free(e);

    /* retries = UINT32_MAX: no retry at all */
    server_reset();
    o.retries = UINT32_MAX;
    e = make(&o);
    assert_int_equal(rtr_embedder_embed(e, k_texts, N_TEXTS, out), RTR_E_NET);
    assert_int_equal(stat_int("requests"), 1);
    rtr_embedder_free(e);
}

static void test_429_retry_after(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    server_reset();
    rtr_http_embedder_opts o = opts_for("429-retry-after");
    rtr_embedder *e = make(&o);
    float out[N_TEXTS * FAKE_DIM];
    double t0 = now_s();
    assert_int_equal(rtr_embedder_embed(e, k_texts, N_TEXTS, out), RTR_OK);
    double dt = now_s() - t0;
    check_rows(k_texts, N_TEXTS, out);
    assert_int_equal(stat_int("requests"), 2);
    if (dt < 0.9 || dt > 5.0) fail_msg("Retry-After: 1 not honoured: waited %.3f s", dt);
    rtr_embedder_free(e);
}

static void test_400_not_retried(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    server_reset();
    rtr_http_embedder_opts o = opts_for("400");
    rtr_embedder *e = make(&o);
    float out[N_TEXTS * FAKE_DIM];
    assert_int_equal(rtr_embedder_embed(e, k_texts, N_TEXTS, out), RTR_E_NET);
    assert_non_null(strstr(rtr_errdetail(), "HTTP 400"));
    assert_non_null(strstr(rtr_errdetail(), "input is too long"));
    assert_null(strchr(rtr_errdetail(), '\n'));
    assert_int_equal(stat_int("requests"), 1);
    rtr_embedder_free(e);
}

/* Every malformed response: RTR_E_NET, a telling one-line message, no retry. */
static void test_bad_responses(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    static const struct { const char *model; uint32_t dim; const char *want; } cases[] = {
        {"bad-json", FAKE_DIM, "bad JSON in response"},
        {"wrong-count", FAKE_DIM, "4 embeddings for 5 inputs"},
        {"wrong-dim", FAKE_DIM, "7 values, expected 8 (as set in the options)"},
        {"wrong-dim", 0, NULL},   /* learns 7 from this response: fine */
        {"ragged-dim", 0, "9 values, expected 8 (as data[0] has)"},
        {"nonnum", FAKE_DIM, "data[0].embedding[3] is not a number"},
        {"bigval", FAKE_DIM, "is not a finite float"},
        {"no-data", FAKE_DIM, "no \"data\" array"},
        {"no-embedding", FAKE_DIM, "data[0].embedding is missing"},
        {"base64", FAKE_DIM, "data[0].embedding is a string"},
        {"dup-index", FAKE_DIM, "has two embeddings"},
        {"bad-index", FAKE_DIM, "data[0].index is not an integer in [0, 5)"},
        {"huge", FAKE_DIM, "larger than 256 MiB"},
    };
    float out[N_TEXTS * FAKE_DIM];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        server_reset();
        rtr_http_embedder_opts o = opts_for(cases[c].model);
        o.dim = cases[c].dim;
        rtr_embedder *e = make(&o);
        int rc = rtr_embedder_embed(e, k_texts, N_TEXTS, o.dim ? out : NULL);
        if (!cases[c].want) {
            assert_int_equal(rc, RTR_OK);
            assert_int_equal(e->dim, FAKE_DIM - 1);
        } else {
            if (rc != RTR_E_NET) fail_msg("%s: rc %d (%s)", cases[c].model, rc, rtr_errdetail());
            if (!strstr(rtr_errdetail(), cases[c].want))
                fail_msg("%s: detail \"%s\" lacks \"%s\"", cases[c].model, rtr_errdetail(), cases[c].want);
            assert_non_null(strstr(rtr_errdetail(), "/v1/embeddings: "));
            assert_null(strchr(rtr_errdetail(), '\n'));
            assert_int_equal(e->dim, cases[c].dim);   /* nothing learnt from a bad response */
            assert_int_equal(stat_int("requests"), 1);
        }
        rtr_embedder_free(e);
    }
}

static void test_timeout(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    server_reset();
    rtr_http_embedder_opts o = opts_for("slow");
    o.timeout_ms = 300;
    o.retries = 1;
    rtr_embedder *e = make(&o);
    float out[N_TEXTS * FAKE_DIM];
    double t0 = now_s();
    assert_int_equal(rtr_embedder_embed(e, k_texts, N_TEXTS, out), RTR_E_NET);
    double dt = now_s() - t0;
    assert_non_null(strstr(rtr_errdetail(), "timed out after 300 ms"));
    assert_non_null(strstr(rtr_errdetail(), "after 2 attempts"));
    if (dt < 0.55 || dt > 3.0) fail_msg("two 300 ms attempts took %.3f s", dt);
    assert_int_equal(stat_int("requests"), 2);
    rtr_embedder_free(e);
}

static void test_refused(void **state) {
    (void)state;
    /* A socket bound but not listening: connections to it are refused. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    char url[64], want[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
    snprintf(want, sizeof want, "http://127.0.0.1:%d/v1/embeddings: cannot connect", ntohs(a.sin_port));
    rtr_http_embedder_opts o = {.url = url, .dim = FAKE_DIM, .retries = 2, .backoff_ms = 10};
    rtr_embedder *e = make(&o);
    float out[N_TEXTS * FAKE_DIM];
    double t0 = now_s();
    assert_int_equal(rtr_embedder_embed(e, k_texts, N_TEXTS, out), RTR_E_NET);
    double dt = now_s() - t0;
    if (!strstr(rtr_errdetail(), want)) fail_msg("detail \"%s\" lacks \"%s\"", rtr_errdetail(), want);
    assert_non_null(strstr(rtr_errdetail(), "after 3 attempts"));
    if (dt > 2.0) fail_msg("refused connection took %.3f s", dt);
    rtr_embedder_free(e);
    close(fd);
}

static void test_describe_and_urls(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    /* ".../v1/" and user:password@ in the URL: described without either. */
    char url[128];
    snprintf(url, sizeof url, "http://alice:pa55word@127.0.0.1:%d/v1/", g_port);
    rtr_http_embedder_opts o = opts_for("nomic \"embed\"");
    o.url = url;
    rtr_embedder *e = make(&o);
    float out[N_TEXTS * FAKE_DIM];
    assert_int_equal(rtr_embedder_embed(e, k_texts, N_TEXTS, out), RTR_OK);
    check_rows(k_texts, N_TEXTS, out);
    rtr_buf d = {0};
    assert_int_equal(rtr_embedder_describe(e, &d), RTR_OK);
    json_error_t jerr;
    json_t *j = json_loadb((const char *)d.data, d.len, 0, &jerr);
    if (!j) fail_msg("describe() is not JSON: %s", jerr.text);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "http");
    assert_string_equal(json_string_value(json_object_get(j, "url")), g_url);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "nomic \"embed\"");
    assert_int_equal(json_integer_value(json_object_get(j, "dim")), FAKE_DIM);
    assert_int_equal(json_object_size(j), 4);
    json_decref(j);
    rtr_buf_free(&d);
    rtr_embedder_free(e);

    /* The same endpoint spelled three ways describes the same. */
    const char *spellings[] = {"%s", "%s/v1/embeddings", "%s//"};
    rtr_buf first = {0};
    for (int i = 0; i < 3; i++) {
        snprintf(url, sizeof url, spellings[i], g_url);
        o = opts_for("m");
        o.url = url;
        e = make(&o);
        rtr_buf b = {0};
        assert_int_equal(rtr_embedder_describe(e, &b), RTR_OK);
        if (i == 0) first = b;
        else {
            assert_int_equal(b.len, first.len);
            assert_memory_equal(b.data, first.data, b.len);
            rtr_buf_free(&b);
        }
        rtr_embedder_free(e);
    }
    rtr_buf_free(&first);
}

static void test_bad_options(void **state) {
    (void)state;
    static const char *bad[] = {"", "ftp://127.0.0.1/", "127.0.0.1:8080", "http://", "http:///v1",
                                "http://host name/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rtr_http_embedder_opts o = {.url = bad[i]};
        rtr_embedder *e = (rtr_embedder *)&o;
        assert_int_equal(rtr_http_embedder_new(&o, &e), RTR_E_INVALID);
        assert_null(e);
    }
    rtr_http_embedder_opts o = {.url = NULL};
    rtr_embedder *e = NULL;
    assert_int_equal(rtr_http_embedder_new(&o, &e), RTR_E_INVALID);
    o = (rtr_http_embedder_opts){.url = "http://127.0.0.1:1", .batch = 1u << 30};
    assert_int_equal(rtr_http_embedder_new(&o, &e), RTR_E_INVALID);
    rtr_embedder_free(NULL);
}

/* rtr_embedder_from_desc: the fixed dispatch on "kind". An http description
 * makes the embedder it describes (no request needed); other kinds fail. */
static void test_from_desc(void **state) {
    (void)state;
    rtr_http_embedder_opts o = {.url = "http://127.0.0.1:1", .model = "m", .dim = 8};
    rtr_embedder *e = NULL, *f = NULL;
    assert_int_equal(rtr_http_embedder_new(&o, &e), RTR_OK);
    rtr_buf d = {0}, d2 = {0};
    assert_int_equal(rtr_embedder_describe(e, &d), RTR_OK);
    assert_int_equal(rtr_buf_terminate(&d), RTR_OK);
    assert_int_equal(rtr_embedder_from_desc("/kb", (const char *)d.data, &f), RTR_OK);
    assert_int_equal(f->dim, 8);
    assert_int_equal(rtr_embedder_describe(f, &d2), RTR_OK);
    assert_int_equal(d2.len, d.len);
    assert_memory_equal(d2.data, d.data, d.len);
    rtr_embedder_free(f);
    rtr_embedder_free(e);
    rtr_buf_free(&d);
    rtr_buf_free(&d2);
    static const struct { const char *desc; int rc; const char *what; } bad[] = {
        {"{\"kind\":\"transformer\",\"dim\":768}", RTR_E_INVALID, "'transformer'"},
        {"{\"dim\":8}", RTR_E_CORRUPT, "without a kind"},
        {"not json", RTR_E_CORRUPT, "without a kind"},
        {"{\"kind\":\"http\",\"dim\":8}", RTR_E_CORRUPT, "bad http embedder description"},
        {"{\"kind\":\"hash\",\"dim\":256}", RTR_E_CORRUPT, "bad hash embedder description"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = NULL;
        assert_int_equal(rtr_embedder_from_desc("/kb", bad[i].desc, &f), bad[i].rc);
        assert_null(f);
        if (!strstr(rtr_errdetail(), "/kb") || !strstr(rtr_errdetail(), bad[i].what))
            fail_msg("%s: \"%s\" (want \"%s\")", bad[i].desc, rtr_errdetail(), bad[i].what);
    }
}

/* Every allocation of new() and embed() failing in turn: RTR_E_NOMEM, no leak. */
static void test_alloc_failures(void **state) {
    (void)state;
    SKIP_WITHOUT_SERVER();
    const rtr_text texts[] = {T("valid"), T("in\xff" "valid"), T(""), T("third")};
    rtr_http_embedder_opts o = opts_for("m");
    o.api_key = "k";
    o.batch = 2;
    float out[4 * FAKE_DIM];
    long n;
    for (n = 1; n < 1000; n++) {
        rtr_alloc_fail_at(n);
        rtr_embedder *e = NULL;
        int rc = rtr_http_embedder_new(&o, &e);
        if (rc == RTR_OK) rc = rtr_embedder_embed(e, texts, 4, out);
        rtr_alloc_fail_at(0);
        if (rc == RTR_OK) {
            check_rows(texts, 4, out);
            rtr_embedder_free(e);
            break;
        }
        if (rc != RTR_E_NOMEM) fail_msg("allocation %ld failing: rc %d (%s)", n, rc, rtr_errdetail());
        rtr_embedder_free(e);
    }
    assert_true(n > 5 && n < 1000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_learn_dim_then_mismatch),
        cmocka_unit_test(test_batching),
        cmocka_unit_test(test_empty_and_binary_texts),
        cmocka_unit_test(test_api_key),
        cmocka_unit_test(test_retry_503_once),
        cmocka_unit_test(test_always_500),
        cmocka_unit_test(test_429_retry_after),
        cmocka_unit_test(test_400_not_retried),
        cmocka_unit_test(test_bad_responses),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_describe_and_urls),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_from_desc),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
