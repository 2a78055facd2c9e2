/* reader.c - an OpenAI-compatible server as the reader of retrieved passages (reader.h). */
#include "retriever/reader.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/alloc.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "lib/utf8.h"

#define READER_DEFAULT_TIMEOUT_MS 120000u
#define READER_MAX_CONNECT_MS 10000u
#define READER_MODELS_TIMEOUT_MS 10000u
#define READER_EXCERPT 200          /* bytes of a server's text quoted in an error */
#define READER_MAX_URL 4096

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc;

static void curl_init_once(void) { g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

void rtr_reader_reply_free(rtr_reader_reply *r) {
    if (!r) return;
    rtr_free(r->text);
    rtr_free(r->model);
    memset(r, 0, sizeof *r);
    r->prompt_tokens = r->completion_tokens = -1;
}

/* --- text ------------------------------------------------------------------------- */
/* s[0..len) as one printable line into dst (cap bytes): controls become
 * spaces, at most READER_EXCERPT bytes cut at a UTF-8 boundary, "..." if cut. */
static void one_line(const char *s, size_t len, char *dst, size_t cap) {
    RTR_ASSERT(cap > READER_EXCERPT + 4);
    size_t n = len < READER_EXCERPT ? len : READER_EXCERPT;
    if (n < len)
        while (n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80) n--;   /* do not split a sequence */
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        dst[o++] = (char)(c < 0x20 || c == 0x7f ? ' ' : c);
    }
    if (n < len) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

/* A JSON string of s[0..len), invalid UTF-8 replaced by U+FFFD first. NULL: out of memory. */
static json_t *json_text(const char *s, size_t len, rtr_buf *scratch) {
    const uint8_t *p = (const uint8_t *)s;
    if (rtr_utf8_valid_prefix(p, len) != len) {
        scratch->len = 0;
        if (rtr_utf8_repair(p, len, scratch) < 0) return NULL;
        p = scratch->data;
        len = scratch->len;
    }
    return json_stringn((const char *)p, len);
}

/* --- the request ------------------------------------------------------------------------ */
/* The user's text (reader.h): the numbered passages, then the question. */
static int user_text(const char *question, const rtr_reader_passage *p, size_t np, rtr_buf *b) {
    int rc = rtr_buf_append(b, "Passages:\n\n", 11);
    for (size_t i = 0; i < np && !rc; i++) {
        rc = rtr_buf_printf(b, "[%zu] ", i + 1);
        if (!rc) rc = rtr_buf_append(b, p[i].text, strlen(p[i].text));
        if (!rc && p[i].continuation) rc = rtr_buf_append(b, p[i].continuation, strlen(p[i].continuation));
        /* one blank line between passages, however the text ends */
        while (!rc && b->len > 0 && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == ' ' ||
                                     b->data[b->len - 1] == '\t' || b->data[b->len - 1] == '\r'))
            b->len--;
        if (!rc) rc = rtr_buf_append(b, "\n\n", 2);
    }
    if (!rc) rc = rtr_buf_printf(b, "Question: %s", question);
    return rc;
}

int rtr_reader_request(const rtr_reader_opts *o, const char *model, const char *question, const rtr_reader_passage *p,
                       size_t np, rtr_buf *body) {
    RTR_ASSERT(o && model && question && (p || np == 0) && body);
    rtr_buf user = {0}, scratch = {0};
    json_t *req = json_object(), *content = NULL;
    int rc = req ? user_text(question, p, np, &user) : RTR_E_NOMEM;
    if (!rc && o->completions) {   /* one prompt: the instruction, the user's text, the cue */
        rtr_buf prompt = {0};
        rc = rtr_buf_append(&prompt, RTR_READER_SYSTEM "\n\n", strlen(RTR_READER_SYSTEM) + 2);
        if (!rc) rc = rtr_buf_append(&prompt, user.data, user.len);
        if (!rc) rc = rtr_buf_append(&prompt, "\nAnswer:", 8);
        if (!rc && (!(content = json_text((const char *)prompt.data, prompt.len, &scratch)) ||
                    json_object_set_new(req, "prompt", content)))
            rc = RTR_E_NOMEM;
        rtr_buf_free(&prompt);
    } else if (!rc) {
        json_t *msgs = json_array(), *sys = json_object(), *usr = json_object();
        content = json_text((const char *)user.data, user.len, &scratch);
        if (!msgs || !sys || !usr || !content || json_object_set_new(sys, "role", json_string("system")) ||
            json_object_set_new(sys, "content", json_string(RTR_READER_SYSTEM)) ||
            json_object_set_new(usr, "role", json_string("user")) || json_object_set(usr, "content", content) ||
            json_array_append(msgs, sys) || json_array_append(msgs, usr) || json_object_set(req, "messages", msgs))
            rc = RTR_E_NOMEM;
        json_decref(content);
        json_decref(msgs);
        json_decref(sys);
        json_decref(usr);
    }
    json_t *jm = NULL;
    char temp[32];   /* the float's shortest decimal: 0.7, not 0.699999988 */
    snprintf(temp, sizeof temp, "%.6g", (double)o->temperature);
    if (!rc && (!(jm = json_text(model, strlen(model), &scratch)) || json_object_set_new(req, "model", jm) ||
                json_object_set_new(req, "max_tokens", json_integer(o->max_tokens)) ||
                json_object_set_new(req, "temperature", json_real(strtod(temp, NULL))) ||
                json_object_set_new(req, "stream", json_false())))
        rc = RTR_E_NOMEM;
    char *s = rc ? NULL : json_dumps(req, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (!rc && !s) rc = RTR_E_NOMEM;
    if (!rc) rc = rtr_buf_append(body, s, strlen(s));
    if (rc == RTR_E_NOMEM) rtr_seterr(rc, "reader: out of memory building the request");
    free(s);   /* jansson's allocator */
    json_decref(req);
    rtr_buf_free(&user);
    rtr_buf_free(&scratch);
    return rc;
}

/* --- the response ----------------------------------------------------------------------- */
static int64_t usage_count(json_t *usage, const char *key) {
    json_t *v = json_is_object(usage) ? json_object_get(usage, key) : NULL;
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v) : -1;
}

/* The error of a non-2xx response: error.message (or error as a string) if
 * the body is JSON that has one, else an excerpt of the body. */
static int status_error(const char *endpoint, long status, const uint8_t *body, size_t len) {
    char ex[READER_EXCERPT + 8];
    json_t *root = len ? json_loadb((const char *)body, len, 0, NULL) : NULL;
    json_t *err = json_is_object(root) ? json_object_get(root, "error") : NULL;
    json_t *msg = json_is_object(err) ? json_object_get(err, "message") : err;
    if (json_is_string(msg) && json_string_length(msg) > 0)
        one_line(json_string_value(msg), json_string_length(msg), ex, sizeof ex);
    else if (len)
        one_line((const char *)body, len, ex, sizeof ex);
    else
        snprintf(ex, sizeof ex, "(empty body)");
    json_decref(root);
    return rtr_seterr(RTR_E_NET, "reader %s: HTTP %ld: %s", endpoint, status, ex);
}

int rtr_reader_parse(const char *endpoint, int completions, long status, const uint8_t *body, size_t len,
                     rtr_reader_reply *out) {
    RTR_ASSERT(endpoint && (body || len == 0) && out);
    memset(out, 0, sizeof *out);
    out->prompt_tokens = out->completion_tokens = -1;
    if (status < 200 || status > 299) return status_error(endpoint, status, body, len);
    if (len > RTR_READER_MAX_BODY)
        return rtr_seterr(RTR_E_NET, "reader %s: response body larger than %zu MiB", endpoint,
                          RTR_READER_MAX_BODY >> 20);
    int rc = RTR_OK;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)body, len, 0, &jerr);
    if (!root) {   /* jansson's text quotes the input, which may hold line breaks */
        char why[READER_EXCERPT + 8];
        one_line(jerr.text, strlen(jerr.text), why, sizeof why);
        return rtr_seterr(RTR_E_NET, "reader %s: bad JSON in the response: %s (line %d, column %d)", endpoint, why,
                          jerr.line, jerr.column);
    }
    const char *what = completions ? "choices[0].text" : "choices[0].message.content";
    json_t *choices = json_is_object(root) ? json_object_get(root, "choices") : NULL;
    json_t *c0 = json_is_array(choices) ? json_array_get(choices, 0) : NULL;
    json_t *msg = NULL, *text = NULL;
    if (!json_is_object(root)) {
        rc = rtr_seterr(RTR_E_NET, "reader %s: the response is not a JSON object", endpoint);
    } else if (!json_is_array(choices)) {
        json_t *err = json_object_get(root, "error");   /* an error sent with a 2xx status */
        json_t *m = json_is_object(err) ? json_object_get(err, "message") : err;
        char ex[READER_EXCERPT + 8];
        if (json_is_string(m)) one_line(json_string_value(m), json_string_length(m), ex, sizeof ex);
        rc = json_is_string(m) ? rtr_seterr(RTR_E_NET, "reader %s: error: %s", endpoint, ex)
                               : rtr_seterr(RTR_E_NET, "reader %s: the response has no \"choices\" array", endpoint);
    } else if (!c0) {
        rc = rtr_seterr(RTR_E_NET, "reader %s: the response's \"choices\" array is empty", endpoint);
    } else if (!json_is_object(c0)) {
        rc = rtr_seterr(RTR_E_NET, "reader %s: choices[0] is not an object", endpoint);
    } else if (!completions && !json_is_object(msg = json_object_get(c0, "message"))) {
        rc = rtr_seterr(RTR_E_NET, "reader %s: choices[0].message is %s", endpoint,
                        msg ? "not an object" : "missing");
    } else if (!json_is_string(text = completions ? json_object_get(c0, "text") : json_object_get(msg, "content"))) {
        rc = rtr_seterr(RTR_E_NET, "reader %s: %s is %s; expected a string", endpoint, what,
                        !text ? "missing" : json_is_null(text) ? "null" : "not a string");
    }
    if (rc) goto done;
    size_t n = json_string_length(text);
    if (!(out->text = rtr_strndup(json_string_value(text), n))) {
        rc = rtr_seterr(RTR_E_NOMEM, "reader %s: out of memory for the answer", endpoint);
        goto done;
    }
    out->len = n;
    json_t *model = json_object_get(root, "model");
    if (json_is_string(model) && !(out->model = rtr_strdup(json_string_value(model)))) {
        rc = rtr_seterr(RTR_E_NOMEM, "reader %s: out of memory for the answer", endpoint);
        goto done;
    }
    json_t *usage = json_object_get(root, "usage");
    out->prompt_tokens = usage_count(usage, "prompt_tokens");
    out->completion_tokens = usage_count(usage, "completion_tokens");
    json_t *fin = json_object_get(c0, "finish_reason");
    out->length = json_is_string(fin) && !strcmp(json_string_value(fin), "length");
done:
    json_decref(root);
    return rc;
}

int rtr_reader_parse_models(const uint8_t *body, size_t len, char **id) {
    RTR_ASSERT((body || len == 0) && id);
    *id = NULL;
    json_t *root = json_loadb((const char *)body, len, 0, NULL);
    json_t *data = json_is_object(root) ? json_object_get(root, "data") : NULL;
    json_t *d0 = json_is_array(data) ? json_array_get(data, 0) : NULL;
    json_t *jid = json_is_object(d0) ? json_object_get(d0, "id") : NULL;
    int rc = RTR_OK;
    if (!json_is_string(jid) || json_string_length(jid) == 0)
        rc = rtr_seterr(RTR_E_NET, "reader: the model list has no data[0].id");
    else if (!(*id = rtr_strdup(json_string_value(jid))))
        rc = RTR_E_NOMEM;
    json_decref(root);
    return rc;
}

/* --- HTTP ---------------------------------------------------------------------------------- */
typedef struct reader_call {
    CURL *curl;
    struct curl_slist *headers;
    char *base;                 /* the URL's base as given (userinfo kept), without /v1... */
    char *shown_base;           /* base without userinfo, for messages */
    rtr_buf resp;
    int resp_nomem, resp_toobig;
    char errbuf[CURL_ERROR_SIZE];
} reader_call;

static int ends_with(const char *s, size_t len, const char *suf) {
    size_t n = strlen(suf);
    return len >= n && strncasecmp(s + len - n, suf, n) == 0;
}

/* Copies url[0..len) without "user:password@" in its authority; NULL: out of memory. */
static char *without_userinfo(const char *url, size_t len) {
    const char *sep = strstr(url, "://");
    RTR_ASSERT(sep && (size_t)(sep - url) < len);
    size_t host = (size_t)(sep - url) + 3, end = host, at = host;
    for (; end < len && url[end] != '/' && url[end] != '?' && url[end] != '#'; end++)
        if (url[end] == '@') at = end + 1;
    rtr_buf b = {0};
    int rc = rtr_buf_append(&b, url, host);
    if (!rc) rc = rtr_buf_append(&b, url + at, len - at);
    if (!rc) rc = rtr_buf_terminate(&b);
    if (rc) {
        rtr_buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

char *rtr_reader_url_shown(const char *url) {
    RTR_ASSERT(url);
    return strstr(url, "://") ? without_userinfo(url, strlen(url)) : rtr_strdup(url);
}

/* Sets c->base and c->shown_base from the user's URL. */
static int set_base(reader_call *c, const char *url) {
    size_t len = strlen(url);
    if (len > READER_MAX_URL) return rtr_seterr(RTR_E_INVALID, "reader URL is longer than %d bytes", READER_MAX_URL);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
            return rtr_seterr(RTR_E_INVALID, "reader URL must not contain spaces or control characters");
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return rtr_seterr(RTR_E_INVALID, "reader URL must start with http:// or https://: %.200s", url);
    static const char *const tails[] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1"};
    while (len > 0 && url[len - 1] == '/') len--;
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++)
        if (ends_with(url, len, tails[i])) {
            len -= strlen(tails[i]);
            break;
        }
    while (len > 0 && url[len - 1] == '/') len--;
    if (len <= strlen("http://") || url[len - 1] == ':' || url[len - 1] == '/' || !strstr(url, "://") ||
        (size_t)(strstr(url, "://") - url) + 3 >= len)
        return rtr_seterr(RTR_E_INVALID, "reader URL has no host: %.200s", url);
    c->base = rtr_strndup(url, len);
    c->shown_base = without_userinfo(url, len);
    return c->base && c->shown_base ? RTR_OK : rtr_seterr(RTR_E_NOMEM, "reader: out of memory");
}

static int set_headers(reader_call *c, const char *api_key) {
    static const char *const fixed[] = {"Content-Type: application/json", "Accept: application/json", "Expect:"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        struct curl_slist *l = curl_slist_append(c->headers, fixed[i]);
        if (!l) return rtr_seterr(RTR_E_NOMEM, "reader: out of memory building headers");
        c->headers = l;
    }
    if (!api_key) return RTR_OK;
    rtr_buf b = {0};
    int rc = rtr_buf_printf(&b, "Authorization: Bearer %s", api_key);
    if (!rc) {
        struct curl_slist *l = curl_slist_append(c->headers, (const char *)b.data);
        if (l) c->headers = l;
        else rc = rtr_seterr(RTR_E_NOMEM, "reader: out of memory building headers");
    }
    if (b.data) memset(b.data, 0, b.cap);   /* do not leave the key in freed memory */
    rtr_buf_free(&b);
    return rc;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
    reader_call *c = ud;
    size_t n = size * nmemb;
    if (n > RTR_READER_MAX_BODY - c->resp.len) {
        c->resp_toobig = 1;
        return 0;   /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (rtr_buf_append(&c->resp, ptr, n)) {
        c->resp_nomem = 1;
        return 0;
    }
    return n;
}

static int setup_curl(reader_call *c) {
    c->curl = curl_easy_init();
    if (!c->curl) return rtr_seterr(RTR_E_NET, "reader %s: curl_easy_init failed", c->shown_base);
    CURL *h = c->curl;
    CURLcode cc = curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    if (!cc) cc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    if (!cc) cc = curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)c);
    if (!cc) cc = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    if (!cc) cc = curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (!cc) cc = curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)RTR_READER_MAX_BODY);
    if (!cc) cc = curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    if (!cc) cc = curl_easy_setopt(h, CURLOPT_USERAGENT, "retro-reader/1");
#if LIBCURL_VERSION_NUM >= 0x075500
    if (!cc) cc = curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    if (!cc) cc = curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (cc) return rtr_seterr(RTR_E_NET, "reader %s: curl_easy_setopt: %s", c->shown_base, curl_easy_strerror(cc));
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");   /* a build without zlib ignores it */
    return RTR_OK;
}

/* One request to base + path (a POST of body, or a GET when body is NULL),
 * within timeout_ms. On RTR_OK, c->resp holds the body and *status the HTTP
 * status, whatever it is; a failure of the transfer is RTR_E_NET naming the endpoint. */
static int http_do(reader_call *c, const char *path, const rtr_buf *body, uint32_t timeout_ms, long *status) {
    rtr_buf url = {0}, shown = {0};
    int rc = rtr_buf_printf(&url, "%s%s", c->base, path);
    if (!rc) rc = rtr_buf_printf(&shown, "%s%s", c->shown_base, path);
    if (rc) {
        rc = rtr_seterr(RTR_E_NOMEM, "reader: out of memory");
        goto done;
    }
    c->resp.len = 0;
    c->resp_nomem = c->resp_toobig = 0;
    c->errbuf[0] = '\0';
    long connect_ms = timeout_ms < READER_MAX_CONNECT_MS ? (long)timeout_ms : (long)READER_MAX_CONNECT_MS;
    CURLcode cc = curl_easy_setopt(c->curl, CURLOPT_URL, (const char *)url.data);
    if (!cc) cc = curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    if (!cc) cc = curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    if (!cc && body) {
        cc = curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
        if (!cc) cc = curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, (const char *)body->data);
    } else if (!cc) {
        cc = curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    }
    if (cc) {
        rc = rtr_seterr(RTR_E_NET, "reader %s: curl_easy_setopt: %s", (const char *)shown.data, curl_easy_strerror(cc));
        goto done;
    }
    cc = curl_easy_perform(c->curl);
    const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc);
    if (c->resp_nomem)
        rc = rtr_seterr(RTR_E_NOMEM, "reader %s: out of memory reading the response", (const char *)shown.data);
    else if (c->resp_toobig || cc == CURLE_FILESIZE_EXCEEDED)
        rc = rtr_seterr(RTR_E_NET, "reader %s: response body larger than %zu MiB", (const char *)shown.data,
                        RTR_READER_MAX_BODY >> 20);
    else if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST)
        rc = rtr_seterr(RTR_E_NET, "reader %s: cannot connect (%s)", (const char *)shown.data, why);
    else if (cc == CURLE_OPERATION_TIMEDOUT)
        rc = rtr_seterr(RTR_E_NET, "reader %s: timed out after %u ms (%s)", (const char *)shown.data, timeout_ms, why);
    else if (cc != CURLE_OK)
        rc = rtr_seterr(RTR_E_NET, "reader %s: %s", (const char *)shown.data, why);
    else
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
done:
    rtr_buf_free(&url);
    rtr_buf_free(&shown);
    return rc;
}

/* The model to ask for: the first id of GET /v1/models, else "default". */
static char *default_model(reader_call *c, uint32_t timeout_ms) {
    long status = 0;
    char *id = NULL;
    uint32_t t = timeout_ms < READER_MODELS_TIMEOUT_MS ? timeout_ms : READER_MODELS_TIMEOUT_MS;
    if (http_do(c, "/v1/models", NULL, t, &status) == RTR_OK && status >= 200 && status <= 299)
        rtr_reader_parse_models(c->resp.data, c->resp.len, &id);
    rtr_clearerr();   /* a server without the list is asked for "default" */
    return id ? id : rtr_strdup("default");
}

int rtr_reader_ask(const rtr_reader_opts *o, const char *question, const rtr_reader_passage *p, size_t np,
                   rtr_reader_reply *out) {
    RTR_ASSERT(o && question && (p || np == 0) && out);
    memset(out, 0, sizeof *out);
    out->prompt_tokens = out->completion_tokens = -1;
    if (!o->url || !o->url[0]) return rtr_seterr(RTR_E_INVALID, "reader: no URL given");
    if (o->api_key && strpbrk(o->api_key, "\r\n"))
        return rtr_seterr(RTR_E_INVALID, "reader: the API key contains a line break");
    if (o->max_tokens < 1 || o->max_tokens > 100000)
        return rtr_seterr(RTR_E_INVALID, "reader: max_tokens %d is not in 1..100000", o->max_tokens);
    if (!(o->temperature >= 0 && o->temperature <= 100))
        return rtr_seterr(RTR_E_INVALID, "reader: temperature is not in 0..100");
    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_init_rc != CURLE_OK)
        return rtr_seterr(RTR_E_NET, "reader: curl_global_init: %s", curl_easy_strerror(g_curl_init_rc));
    double t0 = rtr_now();
    uint32_t timeout_ms = o->timeout_ms ? o->timeout_ms : READER_DEFAULT_TIMEOUT_MS;
    const char *path = o->completions ? "/v1/completions" : "/v1/chat/completions";
    reader_call c = {0};
    rtr_buf body = {0}, shown = {0};
    char *model = NULL;
    long status = 0;
    int rc = set_base(&c, o->url);
    if (!rc) rc = set_headers(&c, o->api_key);
    if (!rc) rc = setup_curl(&c);
    if (!rc && !(model = o->model ? rtr_strdup(o->model) : default_model(&c, timeout_ms)))
        rc = rtr_seterr(RTR_E_NOMEM, "reader: out of memory");
    if (!rc) rc = rtr_reader_request(o, model, question, p, np, &body);
    if (!rc) rc = http_do(&c, path, &body, timeout_ms, &status);
    if (!rc && rtr_buf_printf(&shown, "%s%s", c.shown_base, path))
        rc = rtr_seterr(RTR_E_NOMEM, "reader: out of memory");
    if (!rc) rc = rtr_reader_parse((const char *)shown.data, o->completions, status, c.resp.data, c.resp.len, out);
    out->seconds = rtr_now() - t0;
    if (c.curl) curl_easy_cleanup(c.curl);
    curl_slist_free_all(c.headers);
    rtr_free(c.base);
    rtr_free(c.shown_base);
    rtr_free(model);
    rtr_buf_free(&c.resp);
    rtr_buf_free(&body);
    rtr_buf_free(&shown);
    return rc;
}
