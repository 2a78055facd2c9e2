/* serve_req.c - retro serve's request bodies and paths, parsed and checked (see serve_req.h). */
#define _GNU_SOURCE
#include "cli/serve_req.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/status.h"

static int bad(const char *msg) { return rtr_seterr(RTR_E_INVALID, "%s", msg); }

int serve_parse_search(const json_t *req, serve_search *out) {
    memset(out, 0, sizeof *out);
    const char *q = NULL;
    json_int_t k = 5;
    int cont = 0;
    json_t *ex = NULL;
    const char *mode = NULL;
    if (!json_is_object(req) ||
        json_unpack((json_t *)req, "{s:s, s?I, s?b, s?o, s?s}", "query", &q, "k", &k, "continuation", &cont, "exclude_docs",
                    &ex, "mode", &mode) ||
        k < 1 || k > 4096 || (ex && !json_is_array(ex)) || json_array_size(ex) > SERVE_MAX_EXCLUDE)
        return bad("expected {\"query\": string, \"k\": 1..4096, \"mode\": \"vector\"|\"lexical\"|\"hybrid\", "
                   "\"continuation\": bool, \"exclude_docs\": [at most 256 ids]}");
    out->mode = !mode ? RETRO_SEARCH_DEFAULT : !strcmp(mode, "vector") ? RETRO_SEARCH_VECTOR
              : !strcmp(mode, "lexical") ? RETRO_SEARCH_LEXICAL : !strcmp(mode, "hybrid") ? RETRO_SEARCH_HYBRID : -1;
    if (out->mode < 0) return bad("mode must be vector, lexical or hybrid");
    for (size_t i = 0; i < json_array_size(ex); i++) {
        json_t *v = json_array_get(ex, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0) return bad("exclude_docs: document ids are integers >= 0");
        out->exclude[out->n_exclude++] = (uint64_t)json_integer_value(v);
    }
    out->query = q;
    out->len = json_string_length(json_object_get(req, "query"));
    out->k = (uint32_t)k;
    out->continuation = cont;
    return RTR_OK;
}

char *serve_chat_prompt(const json_t *messages) {
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        bad("messages must be a non-empty array of {\"role\": system|user|assistant, \"content\": string}");
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) {
        rtr_seterr(RTR_E_NOMEM, "chat prompt");
        return NULL;
    }
    int ok = 1;
    for (size_t i = 0; i < json_array_size(messages) && ok; i++) {
        const char *role = NULL, *content = NULL;
        ok = !json_unpack(json_array_get(messages, i), "{s:s, s:s}", "role", &role, "content", &content);
        if (!ok) break;
        if (!strcmp(role, "system")) fprintf(f, "%s\n\n", content);
        else if (!strcmp(role, "user")) fprintf(f, "User: %s\n", content);
        else if (!strcmp(role, "assistant")) fprintf(f, "Assistant: %s\n", content);
        else ok = 0;
    }
    fputs("Assistant:", f);
    fclose(f);
    if (!ok) {
        free(buf);
        bad("messages must be a non-empty array of {\"role\": system|user|assistant, \"content\": string}");
        return NULL;
    }
    return buf;
}

void serve_completion_free(serve_completion *c) {
    if (!c) return;
    free(c->prompt);
    for (int i = 0; i < c->n_stop; i++) free(c->stop[i]);
    memset(c, 0, sizeof *c);
}

static int add_stop(serve_completion *c, const char *s) {
    if (!*s || c->n_stop >= SERVE_MAX_STOP) return RTR_OK;
    if (!(c->stop[c->n_stop] = strdup(s))) return rtr_seterr(RTR_E_NOMEM, "stop");
    c->n_stop++;
    return RTR_OK;
}

int serve_parse_completion(const json_t *req, int chat, serve_completion *out) {
    memset(out, 0, sizeof *out);
    if (!json_is_object(req)) return bad("the body must be a JSON object");
    char *chat_text = NULL;
    if (chat && !(chat_text = serve_chat_prompt(json_object_get(req, "messages")))) return rtr_errcode();
    const char *prompt = chat_text ? chat_text : "";
    json_t *stop = NULL;
    json_int_t max_tokens = 16, top_k = 40, seed = 1;
    double temperature = 1.0, top_p = 1.0;
    int stream = 0, ignore_eos = 0;
    int rc = RTR_OK;
    if (json_unpack((json_t *)req, "{s?I, s?F, s?F, s?I, s?I, s?o, s?b, s?b}", "max_tokens", &max_tokens, "temperature",
                    &temperature, "top_p", &top_p, "top_k", &top_k, "seed", &seed, "stop", &stop, "stream", &stream,
                    "ignore_eos", &ignore_eos) ||
        (!chat && json_unpack((json_t *)req, "{s?s}", "prompt", &prompt)))
        rc = bad("bad request: prompt must be a string, the sampling settings numbers, stream a boolean");
    else if (max_tokens < 1 || max_tokens > 100000 || !(temperature >= 0 && temperature <= 100) ||
             !(top_p > 0 && top_p <= 1) || top_k < 0 || top_k > 1000000 || seed < 0)
        rc = bad("max_tokens must be 1..100000, temperature 0..100, top_p in (0, 1], top_k 0..1000000, seed >= 0");
    else if (stop && !json_is_string(stop) && !json_is_array(stop))
        rc = bad("stop must be a string or an array of strings");
    if (!rc && !(out->prompt = strdup(prompt))) rc = rtr_seterr(RTR_E_NOMEM, "prompt");
    free(chat_text);
    if (!rc && json_is_string(stop)) rc = add_stop(out, json_string_value(stop));
    for (size_t i = 0; !rc && json_is_array(stop) && i < json_array_size(stop); i++) {
        json_t *s = json_array_get(stop, i);
        if (!json_is_string(s)) rc = bad("stop must be a string or an array of strings");
        else rc = add_stop(out, json_string_value(s));
    }
    if (!rc && chat) rc = add_stop(out, "\nUser:");   /* the turn ends where the next would begin */
    json_t *lp = json_object_get(req, "logprobs"), *top = json_object_get(req, "top_logprobs");
    if (!rc && !chat && lp && !json_is_null(lp)) {   /* completions: the number of alternatives */
        if (!json_is_integer(lp) || json_integer_value(lp) < 0 || json_integer_value(lp) > 5)
            rc = bad("logprobs must be 0..5 (alternatives per token)");
        else out->logprobs = 1, out->top_logprobs = (int)json_integer_value(lp);
    }
    if (!rc && chat && ((lp && !json_is_boolean(lp) && !json_is_null(lp)) ||
                        (top && (!json_is_integer(top) || json_integer_value(top) < 0 || json_integer_value(top) > 20))))
        rc = bad("logprobs must be a boolean and top_logprobs 0..20");
    else if (!rc && chat && json_is_true(lp)) out->logprobs = 1, out->top_logprobs = top ? (int)json_integer_value(top) : 0;
    if (rc) {
        serve_completion_free(out);
        return rc;
    }
    out->max_tokens = (int)max_tokens;
    out->temperature = (float)temperature;
    out->top_p = (float)top_p;
    out->top_k = (int)top_k;
    out->seed = (uint64_t)seed;
    out->stream = stream;
    out->ignore_eos = ignore_eos;
    return RTR_OK;
}

void serve_embed_free(serve_embed *e) {
    if (!e) return;
    free(e->texts);
    free(e->lens);
    memset(e, 0, sizeof *e);
}

int serve_parse_embeddings(const json_t *req, serve_embed *out) {
    memset(out, 0, sizeof *out);
    json_t *in = json_object_get(req, "input");
    json_t *fmtj = json_object_get(req, "encoding_format");
    const char *fmt = json_string_value(fmtj);
    if ((fmtj && !fmt) || (fmt && strcmp(fmt, "float") && strcmp(fmt, "base64")))
        return bad("encoding_format must be float or base64");
    size_t n = json_is_string(in) ? 1 : json_is_array(in) ? json_array_size(in) : 0;
    if (n == 0 || n > 2048) return bad("input must be a string or an array of 1 to 2048 strings");
    out->texts = calloc(n, sizeof *out->texts);
    out->lens = calloc(n, sizeof *out->lens);
    if (!out->texts || !out->lens) {
        serve_embed_free(out);
        return rtr_seterr(RTR_E_NOMEM, "embeddings");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_is_string(in) ? in : json_array_get(in, i);
        if (!json_is_string(t)) {
            serve_embed_free(out);
            return bad("input must be a string or an array of strings");
        }
        out->texts[i] = json_string_value(t);
        out->lens[i] = json_string_length(t);
    }
    out->n = n;
    out->base64 = fmt && !strcmp(fmt, "base64");
    return RTR_OK;
}

int serve_parse_ask(const json_t *req, serve_ask *out) {
    memset(out, 0, sizeof *out);
    const char *q = NULL;
    json_int_t passages = 3, quotes = 2, max_tokens = 64;
    double temperature = 0;
    if (!json_is_object(req) ||
        json_unpack((json_t *)req, "{s:s, s?I, s?I, s?I, s?F}", "question", &q, "passages", &passages, "quotes", &quotes,
                    "max_tokens", &max_tokens, "temperature", &temperature) ||
        !*q || strlen(q) != json_string_length(json_object_get(req, "question")) || passages < 1 || passages > 16 ||
        quotes < 0 || quotes > 16 || max_tokens < 1 || max_tokens > 4096 || !(temperature >= 0 && temperature <= 100))
        return bad("expected {\"question\": a non-empty string, \"passages\": 1..16, \"quotes\": 0..16, \"max_tokens\": "
                   "1..4096, \"temperature\": 0..100}");
    *out = (serve_ask){q, (uint32_t)passages, (uint32_t)quotes, (int)max_tokens, (float)temperature};
    return RTR_OK;
}

void serve_docs_free(serve_docs *d) {
    if (!d) return;
    free(d->docs);
    memset(d, 0, sizeof *d);
}

int serve_parse_documents(const json_t *req, serve_docs *out) {
    memset(out, 0, sizeof *out);
    static const char usage[] = "expected {\"name\": string, \"text\": string} or {\"documents\": [{\"name\", \"text\"}, "
                                "...]} (1 to 4096 documents)";
    if (!json_is_object(req)) return bad(usage);
    json_t *list = json_object_get(req, "documents");
    size_t n = list ? json_array_size(list) : 1;
    if ((list && !json_is_array(list)) || n == 0 || n > SERVE_MAX_DOCS) return bad(usage);
    if (!(out->docs = calloc(n, sizeof *out->docs))) return rtr_seterr(RTR_E_NOMEM, "documents");
    for (size_t i = 0; i < n; i++) {
        json_t *d = list ? json_array_get(list, i) : (json_t *)req;
        json_t *name = json_object_get(d, "name"), *text = json_object_get(d, "text");
        if (!json_is_string(name) || !json_is_string(text) || json_string_length(name) == 0 ||
            strlen(json_string_value(name)) != json_string_length(name)) {
            serve_docs_free(out);
            return bad(usage);
        }
        out->docs[i] = (retro_text){json_string_value(name), json_string_value(text), json_string_length(text)};
    }
    out->n = n;
    return RTR_OK;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *v) {
    if (!s || *s < '0' || *s > '9' || strlen(s) > 19) return -1;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end || x > max) return -1;
    *v = x;
    return 0;
}

int serve_parse_doc_id(const char *path, uint64_t *id) {
    static const char prefix[] = "/v1/documents/";
    if (strncmp(path, prefix, sizeof prefix - 1) || parse_u64(path + sizeof prefix - 1, INT64_MAX, id) || *id == 0)
        return bad("expected /v1/documents/ID with a document id");
    return RTR_OK;
}

int serve_parse_page(const char *after, const char *limit, uint64_t *after_out, size_t *limit_out) {
    uint64_t a = 0, l = 100;
    if ((after && parse_u64(after, INT64_MAX, &a)) || (limit && (parse_u64(limit, 1000, &l) || l == 0)))
        return bad("after must be a document id and limit 1..1000");
    *after_out = a;
    *limit_out = (size_t)l;
    return RTR_OK;
}
