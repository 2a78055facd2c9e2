/*
 * embed_http.c - the "http" embedder: an OpenAI-compatible /v1/embeddings
 * client over libcurl (JSON parsed with jansson).
 *
 * Works with the shapes served by llama.cpp's server, text-embeddings-inference
 * and ollama's OpenAI endpoint:
 *
 *   POST {url}/v1/embeddings
 *   Content-Type: application/json
 *   Authorization: Bearer KEY                      (only if opts.api_key is set)
 *   {"input": ["t1", "t2", ...], "model": "M"}     ("model" omitted if NULL)
 *
 *   200 {"data": [{"index": 0, "embedding": [0.1, ...]}, ...], ...}
 *
 * Rows are placed by their "index" field when present (servers may reorder),
 * else by position, then L2-normalised.
 *
 * Behaviour, with the limits:
 * - Batching: embed() splits its texts into requests of at most opts.batch
 *   (default 64) texts.
 * - Empty texts are never sent: their rows are zero (embed.h: "|row| = 1, or 0
 *   if empty"); OpenAI and TEI refuse empty inputs, and a call whose texts are
 *   all empty makes no request at all.
 * - Texts may hold any bytes: invalid UTF-8 is replaced by U+FFFD (WHATWG
 *   rules, lib/utf8.h) and the result JSON-escaped (NUL and controls as \u00XX).
 * - Each request has opts.timeout_ms (default 30 s) for the whole transfer and
 *   min(timeout, 10 s) to connect. HTTP 429, 5xx, refused/reset connections
 *   and timeouts are retried up to opts.retries times (default 4; UINT32_MAX
 *   means none) after opts.backoff_ms (default 250 ms) doubled per retry, each
 *   delay capped at 30 s; a Retry-After header (seconds or HTTP date) replaces
 *   the delay, capped at 10 s. Worst case, one request takes about
 *   (retries + 1) * timeout plus the delays. Other statuses (4xx, 3xx: no
 *   redirects are followed) fail at once with the status and a body excerpt.
 * - Response bodies over 256 MiB are refused before parsing.
 * - Dimension: opts.dim if set, else learnt from the first successful response
 *   and fixed from then on; every row of every later response must match it.
 *   Values must be finite numbers within float range.
 * - Every failure of the server or the network is RTR_E_NET with a one-line
 *   detail that starts with the endpoint URL (user:password@ removed).
 *
 * Dimension not yet known (opts.dim == 0 and no response yet): the caller
 * cannot size `out`, so embed() then requires out == NULL: the texts are
 * embedded, checked and discarded, and e->dim is set (a "probe"; use at least
 * one non-empty text). embed() with out != NULL and e->dim == 0 is refused with
 * RTR_E_INVALID. embed(out == NULL) with a known dimension is a health check.
 *
 * On failure, rows of out may be partly written. One easy handle per embedder
 * (connections are reused): one thread at a time per embedder.
 */
#include "index/embed.h"

#include <curl/curl.h>
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/status.h"
#include "lib/utf8.h"

#define HTTP_DEFAULT_BATCH 64u
#define HTTP_DEFAULT_TIMEOUT_MS 30000u
#define HTTP_DEFAULT_RETRIES 4u
#define HTTP_DEFAULT_BACKOFF_MS 250u
#define HTTP_MAX_CONNECT_MS 10000u
#define HTTP_MAX_BACKOFF_MS 30000u
#define HTTP_MAX_RETRY_AFTER_MS 10000u
#define HTTP_MAX_BODY ((size_t)256 << 20)       /* response bytes */
#define HTTP_MAX_DIM (1u << 20)                 /* values per embedding */
#define HTTP_MAX_BATCH 65536u                   /* texts per request */
#define HTTP_KEEP_BUF ((size_t)8 << 20)         /* scratch kept between calls */
#define HTTP_EXCERPT 160                        /* body bytes quoted in errors */

typedef struct http_embedder {
    CURL *curl;                 /* owned easy handle; keeps the connection */
    struct curl_slist *headers; /* owned; holds the API key if any */
    char *base;                 /* normalised base URL, userinfo removed (described) */
    char *endpoint;             /* base (with userinfo) + "/v1/embeddings" */
    char *shown;                /* endpoint without userinfo, for messages */
    char *model;                /* NULL = omitted */
    uint32_t batch, timeout_ms, retries, backoff_ms;
    int dim_from_opts;          /* e->dim came from opts.dim */
    size_t *pos;                /* (batch) text index of each input of a request */
    uint8_t *seen;              /* (batch) which inputs a response has covered */
    rtr_buf body;               /* request JSON */
    rtr_buf resp;               /* response body */
    rtr_buf scratch;            /* UTF-8 repair */
    int resp_nomem, resp_toobig;
    char errbuf[CURL_ERROR_SIZE];
} http_embedder;

/* --- libcurl global state ----------------------------------------------------- */
static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc;

static void curl_init_once(void) { g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* --- small helpers ----------------------------------------------------------- */
static void sleep_ms(uint32_t ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Appends s[0..len) as a JSON string literal. Invalid UTF-8 is repaired to
 * U+FFFD first (through `scratch`); '"', '\\' and bytes < 0x20 are escaped. */
static int json_put_str(rtr_buf *b, rtr_buf *scratch, const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s;
    if (rtr_utf8_valid_prefix(p, len) != len) {
        scratch->len = 0;
        long r = rtr_utf8_repair(p, len, scratch);
        if (r < 0) return (int)r;
        p = scratch->data;
        len = scratch->len;
    }
    int rc = rtr_buf_reserve(b, len + 2);
    if (rc) return rc;
    b->data[b->len++] = '"';
    size_t run = 0;   /* start of the pending run of bytes that need no escape */
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if ((rc = rtr_buf_append(b, p + run, i - run))) return rc;
        run = i + 1;
        switch (c) {
        case '"': rc = rtr_buf_append(b, "\\\"", 2); break;
        case '\\': rc = rtr_buf_append(b, "\\\\", 2); break;
        case '\n': rc = rtr_buf_append(b, "\\n", 2); break;
        case '\r': rc = rtr_buf_append(b, "\\r", 2); break;
        case '\t': rc = rtr_buf_append(b, "\\t", 2); break;
        default: rc = rtr_buf_printf(b, "\\u%04x", (unsigned)c); break;
        }
        if (rc) return rc;
    }
    if ((rc = rtr_buf_append(b, p + run, len - run))) return rc;
    return rtr_buf_putc(b, '"');
}

/* A printable one-line excerpt of the response body into dst (for errors):
 * controls become spaces, at most HTTP_EXCERPT bytes, cut at a UTF-8 boundary. */
static void body_excerpt(const rtr_buf *r, char *dst, size_t cap) {
    RTR_ASSERT(cap > HTTP_EXCERPT + 4);
    if (r->len == 0) {
        snprintf(dst, cap, "(empty body)");
        return;
    }
    size_t n = r->len < HTTP_EXCERPT ? r->len : HTTP_EXCERPT;
    if (n < r->len)
        while (n > 0 && (r->data[n] & 0xC0) == 0x80) n--;   /* do not split a sequence */
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = r->data[i];
        dst[o++] = (char)(c < 0x20 || c == 0x7f ? ' ' : c);
    }
    if (n < r->len) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

/* Copies url[0..len) without any "user:password@" in its authority. */
static char *strip_userinfo(const char *url, size_t len) {
    const char *sep = strstr(url, "://");
    RTR_ASSERT(sep && (size_t)(sep - url) < len);
    size_t a = (size_t)(sep - url) + 3, end = a, at = 0;
    while (end < len && url[end] != '/' && url[end] != '?' && url[end] != '#') {
        if (url[end] == '@') at = end + 1;
        end++;
    }
    char *out = rtr_malloc(len + 1);
    if (!out) return NULL;
    memcpy(out, url, a);
    size_t rest = at ? at : a;
    memcpy(out + a, url + rest, len - rest);
    out[a + len - rest] = '\0';
    return out;
}

static int ends_with(const char *s, size_t len, const char *suf) {
    size_t n = strlen(suf);
    return len >= n && memcmp(s + len - n, suf, n) == 0;
}

/* --- curl plumbing ------------------------------------------------------------ */
static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
    http_embedder *h = ud;
    size_t n = size * nmemb;
    if (n > HTTP_MAX_BODY - h->resp.len) {
        h->resp_toobig = 1;
        return 0;            /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (rtr_buf_append(&h->resp, ptr, n)) {
        h->resp_nomem = 1;
        return 0;
    }
    return n;
}

static int curl_retryable(CURLcode cc) {
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

/* POSTs h->body to the endpoint, retrying as the file comment says. On RTR_OK,
 * h->resp holds a 2xx response body. */
static int http_post(http_embedder *h) {
    char why[CURL_ERROR_SIZE + HTTP_EXCERPT + 64];
    for (uint32_t attempt = 0;; attempt++) {
        h->resp.len = 0;
        h->resp_nomem = h->resp_toobig = 0;
        h->errbuf[0] = '\0';
        CURLcode cc = curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)h->body.len);
        if (cc == CURLE_OK) cc = curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, (const char *)h->body.data);
        if (cc != CURLE_OK)
            return rtr_seterr(RTR_E_NET, "%s: curl_easy_setopt: %s", h->shown, curl_easy_strerror(cc));
        cc = curl_easy_perform(h->curl);

        int retryable = 0;
        long delay_ms = -1;
        if (h->resp_nomem) return rtr_seterr(RTR_E_NOMEM, "%s: out of memory reading the response", h->shown);
        if (h->resp_toobig || cc == CURLE_FILESIZE_EXCEEDED)
            return rtr_seterr(RTR_E_NET, "%s: response body larger than %zu MiB", h->shown,
                              HTTP_MAX_BODY >> 20);
        if (cc == CURLE_OK) {
            long status = 0;
            curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
            if (status >= 200 && status < 300) return RTR_OK;
            char ex[HTTP_EXCERPT + 8];
            body_excerpt(&h->resp, ex, sizeof ex);
            snprintf(why, sizeof why, "HTTP %ld: %s", status, ex);
            retryable = status == 429 || (status >= 500 && status <= 599);
#if LIBCURL_VERSION_NUM >= 0x074200
            curl_off_t ra = 0;
            if (retryable && curl_easy_getinfo(h->curl, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
                delay_ms = ra >= HTTP_MAX_RETRY_AFTER_MS / 1000 ? (long)HTTP_MAX_RETRY_AFTER_MS : (long)ra * 1000;
#endif
        } else {
            const char *detail = h->errbuf[0] ? h->errbuf : curl_easy_strerror(cc);
            if (cc == CURLE_COULDNT_CONNECT)
                snprintf(why, sizeof why, "cannot connect (%s)", detail);
            else if (cc == CURLE_OPERATION_TIMEDOUT)
                snprintf(why, sizeof why, "timed out after %u ms (%s)", h->timeout_ms, detail);
            else
                snprintf(why, sizeof why, "%s", detail);
            retryable = curl_retryable(cc);
        }
        if (!retryable || attempt >= h->retries) {
            if (attempt == 0) return rtr_seterr(RTR_E_NET, "%s: %s", h->shown, why);
            return rtr_seterr(RTR_E_NET, "%s: %s (gave up after %u attempts)", h->shown, why, attempt + 1);
        }
        if (delay_ms < 0) {
            uint64_t d = h->backoff_ms;
            for (uint32_t k = 0; k < attempt && d < HTTP_MAX_BACKOFF_MS; k++) d *= 2;
            delay_ms = (long)(d < HTTP_MAX_BACKOFF_MS ? d : HTTP_MAX_BACKOFF_MS);
        }
        sleep_ms((uint32_t)delay_ms);
    }
}

/* --- request and response ----------------------------------------------------- */
/* Builds {"input": [texts[pos[0]], ...], "model": M} into h->body. */
static int build_body(http_embedder *h, const rtr_text *texts, size_t m) {
    rtr_buf *b = &h->body;
    b->len = 0;
    int rc = rtr_buf_append(b, "{\"input\":[", 10);
    for (size_t k = 0; k < m && !rc; k++) {
        const rtr_text *t = &texts[h->pos[k]];
        if (k) rc = rtr_buf_putc(b, ',');
        if (!rc) rc = json_put_str(b, &h->scratch, t->data, t->len);
    }
    if (!rc) rc = rtr_buf_putc(b, ']');
    if (!rc && h->model) {
        rc = rtr_buf_append(b, ",\"model\":", 9);
        if (!rc) rc = json_put_str(b, &h->scratch, h->model, strlen(h->model));
    }
    if (!rc) rc = rtr_buf_putc(b, '}');
    return rc;
}

/* Message for "why the row must have *dim values". */
static const char *dim_source(const http_embedder *h, uint32_t known_dim) {
    if (h->dim_from_opts) return "as set in the options";
    return known_dim ? "as learnt from the first response" : "as data[0] has";
}

/* Parses h->resp for a request of m inputs (h->pos). Checks every row; writes
 * row k to out + pos[k] * dim when out is set. *dim is the expected dimension
 * (0 = take it from this response) and receives the dimension found. */
static int parse_response(http_embedder *h, size_t m, float *out, uint32_t *dim_io) {
    const uint32_t known = *dim_io;
    uint32_t dim = known;
    int rc = RTR_OK;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)h->resp.data, h->resp.len, 0, &jerr);
    if (!root)
        return rtr_seterr(RTR_E_NET, "%s: bad JSON in response: %s (line %d, column %d)", h->shown,
                          jerr.text, jerr.line, jerr.column);
    json_t *data = json_is_object(root) ? json_object_get(root, "data") : NULL;
    if (!json_is_array(data)) {
        char ex[HTTP_EXCERPT + 8];
        body_excerpt(&h->resp, ex, sizeof ex);
        rc = rtr_seterr(RTR_E_NET, "%s: response has no \"data\" array: %s", h->shown, ex);
        goto done;
    }
    size_t count = json_array_size(data);
    if (count != m) {
        rc = rtr_seterr(RTR_E_NET, "%s: response has %zu embeddings for %zu inputs", h->shown, count, m);
        goto done;
    }
    memset(h->seen, 0, m);
    for (size_t k = 0; k < count; k++) {
        json_t *item = json_array_get(data, k);
        if (!json_is_object(item)) {
            rc = rtr_seterr(RTR_E_NET, "%s: data[%zu] is not an object", h->shown, k);
            goto done;
        }
        size_t idx = k;
        json_t *jidx = json_object_get(item, "index");
        if (jidx && !json_is_null(jidx)) {
            json_int_t v = json_is_integer(jidx) ? json_integer_value(jidx) : -1;
            if (v < 0 || (uint64_t)v >= m) {
                rc = rtr_seterr(RTR_E_NET, "%s: data[%zu].index is not an integer in [0, %zu)", h->shown, k, m);
                goto done;
            }
            idx = (size_t)v;
        }
        if (h->seen[idx]) {
            rc = rtr_seterr(RTR_E_NET, "%s: data[%zu]: input %zu has two embeddings", h->shown, k, idx);
            goto done;
        }
        h->seen[idx] = 1;
        json_t *emb = json_object_get(item, "embedding");
        if (!json_is_array(emb)) {
            rc = rtr_seterr(RTR_E_NET, "%s: data[%zu].embedding is %s; expected an array of numbers",
                            h->shown, k, !emb ? "missing" : json_is_string(emb) ? "a string" : "not an array");
            goto done;
        }
        size_t d = json_array_size(emb);
        if (d == 0 || d > HTTP_MAX_DIM) {
            rc = rtr_seterr(RTR_E_NET, "%s: data[%zu].embedding has %zu values (want 1 to %u)", h->shown,
                            k, d, HTTP_MAX_DIM);
            goto done;
        }
        if (dim == 0) {
            dim = (uint32_t)d;
        } else if (d != dim) {
            rc = rtr_seterr(RTR_E_NET, "%s: data[%zu].embedding has %zu values, expected %u (%s)", h->shown,
                            k, d, dim, dim_source(h, known));
            goto done;
        }
        float *row = out ? out + h->pos[idx] * (size_t)dim : NULL;   /* (dim) */
        for (size_t j = 0; j < d; j++) {
            json_t *jv = json_array_get(emb, j);
            if (!json_is_number(jv)) {
                rc = rtr_seterr(RTR_E_NET, "%s: data[%zu].embedding[%zu] is not a number", h->shown, k, j);
                goto done;
            }
            double x = json_number_value(jv);
            if (!isfinite(x) || fabs(x) > FLT_MAX) {   /* check before the cast: overflow is UB */
                rc = rtr_seterr(RTR_E_NET, "%s: data[%zu].embedding[%zu] = %g is not a finite float", h->shown,
                                k, j, x);
                goto done;
            }
            if (row) row[j] = (float)x;
        }
    }
    *dim_io = dim;
done:
    json_decref(root);
    return rc;
}

int rtr_http_embedder_parse(rtr_embedder *e, const uint8_t *body, size_t len, size_t m, float *out, uint32_t *dim) {
    http_embedder *h = e->impl;
    if (m == 0 || m > h->batch) return rtr_seterr(RTR_E_INVALID, "%s: 1 to %u inputs per response", h->shown, h->batch);
    for (size_t k = 0; k < m; k++) h->pos[k] = k;
    h->resp.len = 0;
    int rc = rtr_buf_append(&h->resp, body, len);
    if (!rc) rc = parse_response(h, m, out, dim);
    h->resp.len = 0;
    return rc;
}

/* --- ops ------------------------------------------------------------------------ */
static int http_embed(rtr_embedder *e, const rtr_text *texts, size_t n, float *out) {
    http_embedder *h = e->impl;
    if (out && e->dim == 0)
        return rtr_seterr(RTR_E_INVALID,
                          "%s: embedding dimension not known yet (set it in the options, or call embed "
                          "with out = NULL first to learn it)", h->shown);
    int rc = RTR_OK;
    size_t i = 0;
    while (i < n && !rc) {
        size_t m = 0;
        for (; i < n && m < h->batch; i++) {
            RTR_ASSERT(texts[i].data || texts[i].len == 0);
            if (texts[i].len == 0) {
                if (out) memset(out + i * (size_t)e->dim, 0, (size_t)e->dim * sizeof(float));
                continue;
            }
            h->pos[m++] = i;
        }
        if (m == 0) break;
        uint32_t dim = e->dim;
        rc = build_body(h, texts, m);
        if (!rc) rc = http_post(h);
        if (!rc) rc = parse_response(h, m, out, &dim);
        if (rc) break;
        RTR_ASSERT(dim != 0 && (e->dim == 0 || e->dim == dim));
        e->dim = dim;
        if (out)
            for (size_t k = 0; k < m; k++) rtr_l2_normalize(out + h->pos[k] * (size_t)dim, 1, dim);
    }
    /* Do not hold on to the memory of one unusually large call. */
    rtr_buf *bufs[3] = {&h->body, &h->resp, &h->scratch};
    for (int k = 0; k < 3; k++)
        if (bufs[k]->cap > HTTP_KEEP_BUF) rtr_buf_free(bufs[k]);
    return rc;
}

static int http_describe(const rtr_embedder *e, rtr_buf *json) {
    const http_embedder *h = e->impl;
    rtr_buf scratch = {0};
    int rc = rtr_buf_append(json, "{\"kind\":\"http\",\"url\":", 21);
    if (!rc) rc = json_put_str(json, &scratch, h->base, strlen(h->base));
    if (!rc) rc = rtr_buf_append(json, ",\"model\":", 9);
    if (!rc) rc = h->model ? json_put_str(json, &scratch, h->model, strlen(h->model))
                           : rtr_buf_append(json, "null", 4);
    if (!rc) rc = rtr_buf_printf(json, ",\"dim\":%u}", e->dim);
    rtr_buf_free(&scratch);
    return rc;
}

static void http_destroy(rtr_embedder *e) {
    http_embedder *h = e->impl;
    if (h) {
        if (h->curl) curl_easy_cleanup(h->curl);
        curl_slist_free_all(h->headers);
        rtr_free(h->base);
        rtr_free(h->endpoint);
        rtr_free(h->shown);
        rtr_free(h->model);
        rtr_free(h->pos);
        rtr_free(h->seen);
        rtr_buf_free(&h->body);
        rtr_buf_free(&h->resp);
        rtr_buf_free(&h->scratch);
        rtr_free(h);
    }
    rtr_free(e);
}

static const rtr_embedder_ops http_ops = {
    .embed = http_embed,
    .describe = http_describe,
    .destroy = http_destroy,
};

/* --- construction ---------------------------------------------------------------- */
/* Sets h->base, h->endpoint and h->shown from the user's URL. */
static int set_urls(http_embedder *h, const char *url) {
    size_t len = strlen(url);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
            return rtr_seterr(RTR_E_INVALID, "embedder URL must not contain spaces or control characters");
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return rtr_seterr(RTR_E_INVALID, "embedder URL must start with http:// or https://: %.200s", url);
    /* Accept ".../v1/embeddings" and ".../v1" as well as the base. */
    while (len > 0 && url[len - 1] == '/') len--;
    if (ends_with(url, len, "/v1/embeddings")) len -= strlen("/v1/embeddings");
    else if (ends_with(url, len, "/v1")) len -= strlen("/v1");
    while (len > 0 && url[len - 1] == '/') len--;
    if (len <= strlen("http://") || url[len - 1] == ':' || url[len - 1] == '/')
        return rtr_seterr(RTR_E_INVALID, "embedder URL has no host: %.200s", url);

    rtr_buf b = {0};
    int rc = rtr_buf_append(&b, url, len);
    if (!rc) rc = rtr_buf_append(&b, "/v1/embeddings", strlen("/v1/embeddings") + 1);
    if (rc) goto fail;
    h->endpoint = (char *)b.data;   /* NUL-terminated above */
    b = (rtr_buf){0};
    h->base = strip_userinfo(url, len);
    h->shown = strip_userinfo(h->endpoint, strlen(h->endpoint));
    if (!h->base || !h->shown) rc = RTR_E_NOMEM;
fail:
    rtr_buf_free(&b);
    return rc;
}

static int set_headers(http_embedder *h, const char *api_key) {
    static const char *fixed[] = {"Content-Type: application/json", "Accept: application/json",
                                  "Expect:"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        struct curl_slist *l = curl_slist_append(h->headers, fixed[i]);
        if (!l) return rtr_seterr(RTR_E_NOMEM, "%s: out of memory building headers", h->shown);
        h->headers = l;
    }
    if (!api_key) return RTR_OK;
    rtr_buf b = {0};
    int rc = rtr_buf_printf(&b, "Authorization: Bearer %s", api_key);
    if (!rc) {
        struct curl_slist *l = curl_slist_append(h->headers, (const char *)b.data);
        if (l) h->headers = l;
        else rc = rtr_seterr(RTR_E_NOMEM, "%s: out of memory building headers", h->shown);
    }
    if (b.data) memset(b.data, 0, b.cap);   /* do not leave the key in freed memory */
    rtr_buf_free(&b);
    return rc;
}

static int setup_curl(http_embedder *h) {
    h->curl = curl_easy_init();
    if (!h->curl) return rtr_seterr(RTR_E_NET, "%s: curl_easy_init failed", h->shown);
    CURL *c = h->curl;
    long connect_ms = h->timeout_ms < HTTP_MAX_CONNECT_MS ? (long)h->timeout_ms : (long)HTTP_MAX_CONNECT_MS;
    CURLcode cc = curl_easy_setopt(c, CURLOPT_URL, h->endpoint);
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->headers);
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_POST, 1L);
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_WRITEDATA, (void *)h);
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)h->timeout_ms);
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)HTTP_MAX_BODY);
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_USERAGENT, "retro-embedder/1");
#if LIBCURL_VERSION_NUM >= 0x075500
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    if (!cc) cc = curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (cc) return rtr_seterr(RTR_E_NET, "%s: curl_easy_setopt: %s", h->shown, curl_easy_strerror(cc));
    /* Compressed responses are welcome; a build without zlib simply ignores this. */
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    return RTR_OK;
}

int rtr_http_embedder_new(const rtr_http_embedder_opts *o, rtr_embedder **out) {
    RTR_ASSERT(o && out);
    *out = NULL;
    if (!o->url || !o->url[0]) return rtr_seterr(RTR_E_INVALID, "http embedder: no URL given");
    if (o->api_key && strpbrk(o->api_key, "\r\n"))
        return rtr_seterr(RTR_E_INVALID, "http embedder: API key contains a line break");
    if (o->dim > HTTP_MAX_DIM)
        return rtr_seterr(RTR_E_INVALID, "http embedder: dimension %u is above %u", o->dim, HTTP_MAX_DIM);
    if (o->batch > HTTP_MAX_BATCH)
        return rtr_seterr(RTR_E_INVALID, "http embedder: batch %u is above %u", o->batch, HTTP_MAX_BATCH);
    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_init_rc != CURLE_OK)
        return rtr_seterr(RTR_E_NET, "curl_global_init: %s", curl_easy_strerror(g_curl_init_rc));

    rtr_embedder *e = rtr_calloc(1, sizeof *e);
    http_embedder *h = rtr_calloc(1, sizeof *h);
    int rc = RTR_OK;
    if (!e || !h) {
        rtr_free(e);
        rtr_free(h);
        return RTR_E_NOMEM;
    }
    e->ops = &http_ops;
    e->impl = h;
    h->batch = o->batch ? o->batch : HTTP_DEFAULT_BATCH;
    h->timeout_ms = o->timeout_ms ? o->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;
    h->retries = o->retries == UINT32_MAX ? 0 : o->retries ? o->retries : HTTP_DEFAULT_RETRIES;
    h->backoff_ms = o->backoff_ms ? o->backoff_ms : HTTP_DEFAULT_BACKOFF_MS;
    h->dim_from_opts = o->dim != 0;
    e->dim = o->dim;
    e->max_batch = h->batch;

    if ((rc = set_urls(h, o->url))) goto fail;
    if (o->model && !(h->model = rtr_strdup(o->model))) { rc = RTR_E_NOMEM; goto fail; }
    h->pos = rtr_calloc(h->batch, sizeof *h->pos);
    h->seen = rtr_calloc(h->batch, 1);
    if (!h->pos || !h->seen) { rc = RTR_E_NOMEM; goto fail; }
    if ((rc = set_headers(h, o->api_key))) goto fail;
    if ((rc = setup_curl(h))) goto fail;
    *out = e;
    return RTR_OK;
fail:
    http_destroy(e);
    return rc;
}
