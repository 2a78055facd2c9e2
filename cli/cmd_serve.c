/* cmd_serve.c - `retro serve`: an HTTP server (libmicrohttpd, JSON by jansson) over the public API:
 * health, models, search with sources, completions with live retrieval (streamed as server-sent
 * events), and Prometheus metrics. Engine calls are serialized; the server binds 127.0.0.1 unless told. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "index/parts.h"
#include "lib/comm.h"
#include "cli/serve_page.h"
#include "cli/serve_req.h"
#include "lib/buf.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "lib/threads.h"

static const char serve_usage[] =
    "usage: retro serve --kb KB [--model DIR] [options]\n"
    "\n"
    "Serves knowledge base KB (and the model in DIR) over HTTP, in OpenAI's shapes where\n"
    "one exists (docs/server.md):\n"
    "  GET  /                    the search page: search, ask, documents (in the binary)\n"
    "  GET  /health              200 when ready, 503 while loading\n"
    "  GET  /v1/models           the model\n"
    "  POST /v1/search           {\"query\", \"k\", \"continuation\", \"exclude_docs\"}: chunks with sources\n"
    "  POST /v1/completions      {\"prompt\", \"max_tokens\", \"temperature\", \"top_p\", \"top_k\", \"seed\",\n"
    "                            \"stop\", \"stream\"}; a RETRO model retrieves from KB, and the\n"
    "                            \"retro\" field lists each retrieval's sources\n"
    "  POST /v1/chat/completions {\"messages\": [{\"role\", \"content\"}], ...}: the same, as a chat\n"
    "  POST /v1/embeddings       {\"input\": string or [strings], \"encoding_format\": float|base64}:\n"
    "                            the knowledge base's embedder\n"
    "  POST /v1/ask              {\"question\", \"passages\", \"quotes\", \"max_tokens\"}: what the sources say\n"
    "                            (quotes with byte spans), then the model's or the --reader's answer\n"
    "  POST /v1/documents        {\"name\", \"text\"} or {\"documents\": [...]}, or files as multipart/form-data:\n"
    "                            added (or replaced) and indexed; searches see them at once\n"
    "  GET  /v1/documents        the documents, ?after=ID&limit=N (1..1000, default 100)\n"
    "  GET  /v1/documents/ID     one document with its text; DELETE removes it (and its source)\n"
    "  GET  /metrics             Prometheus text: requests, errors, latency, tokens\n"
    "\n"
    "options:\n"
    "  --kb KB               the knowledge base (required)\n"
    "  --model DIR           a checkpoint from retro train (completions need one)\n"
    "  --host ADDR           address to bind (default 127.0.0.1)\n"
    "  --port N              port (default 8080)\n"
    "  --api-key KEY         require 'Authorization: Bearer KEY' (not for /health)\n"
    "  --cors ORIGIN         allow browser requests from ORIGIN\n"
    "  --max-body N          largest request body in bytes (default 1 MiB)\n"
    "  --read-only           open KB without the writer lock: no POST or DELETE of documents\n"
    "  --threads N           threads for the engine (default: all cores)\n"
    "  --parallel N          generation slots, decoded together in one batched step (default 4)\n"
    "  --queue N             completions that may wait for a slot; more get 429 (default 64)\n"
    "  --reader URL          /v1/ask's answers from this OpenAI-compatible server (passages and\n"
    "                        question sent to its /v1/chat/completions; key from $RETRO_READER_KEY)\n"
    "  --reader-model NAME   the model asked of the reader (default: the first it lists)\n";

enum { EP_HEALTH, EP_MODELS, EP_SEARCH, EP_COMPLETIONS, EP_CHAT, EP_EMBEDDINGS, EP_ASK, EP_DOCUMENTS, EP_METRICS, EP_OTHER, N_EP };
static const char *const EP_NAME[N_EP] = {"health", "models", "search", "completions", "chat", "embeddings", "ask",
                                          "documents", "metrics", "other"};
#define N_BUCKETS 12
static const double BUCKET[N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

typedef struct server {
    retro_kb *kb;
    retro_model *model;
    const char *model_name;
    const char *api_key;
    const char *cors;
    size_t max_body;
    int writable;             /* documents may be added and deleted (not --read-only) */
    const char *reader;       /* --reader URL: /v1/ask's answers come from that server */
    const char *reader_model;
    pthread_mutex_t engine;   /* the model: one prefill, batched step or local answer at a time */
    int parallel, queue_max;  /* generation slots; completions that may wait for one */
    retro_batch *batch;       /* the slots, decoded together by the scheduler */
    pthread_t scheduler;
    pthread_t warmer;      /* retro_kb_warm at start, joined at the end */
    int warming;
    pthread_mutex_t q_mu;     /* the queue, and each completion's done flag */
    pthread_cond_t work_cv, done_cv;
    struct completion *queue;
    int queued, stopping;
    atomic_int busy;          /* slots generating */
    atomic_long rejected;     /* completions refused with 429 */
    atomic_int ready;
    atomic_long requests[N_EP], errors[N_EP], buckets[N_EP][N_BUCKETS + 1], tokens, retrievals;
    _Atomic double seconds[N_EP];
    atomic_long next_id;
} server;

#define MAX_UPLOADS 64

typedef struct upload_file {      /* one file of a multipart/form-data body */
    char *name;
    char *data;
    size_t len;
} upload_file;

typedef struct request {
    char *body;
    size_t len;
    int too_big;
    double t0;
    struct MHD_PostProcessor *pp;   /* multipart uploads to /v1/documents */
    upload_file up[MAX_UPLOADS];
    size_t n_up;
    size_t up_bytes;
    char *up_name;                   /* a "name" field: the name of the one file */
    int up_bad;                      /* too many files, out of memory */
} request;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void observe(server *s, int ep, double secs, int error) {
    atomic_fetch_add(&s->requests[ep], 1);
    if (error) atomic_fetch_add(&s->errors[ep], 1);
    int b = 0;
    while (b < N_BUCKETS && secs > BUCKET[b]) b++;
    atomic_fetch_add(&s->buckets[ep][b], 1);
    double old = atomic_load(&s->seconds[ep]);
    while (!atomic_compare_exchange_weak(&s->seconds[ep], &old, old + secs)) {}
}

static void add_headers(server *s, struct MHD_Response *r, const char *type) {
    MHD_add_response_header(r, "Content-Type", type);
    if (s->cors) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", s->cors);
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
    }
}

static enum MHD_Result send_text(server *s, struct MHD_Connection *c, unsigned code, const char *type, char *text) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    add_headers(s, r, type);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* Sends j (reference stolen) as the body. */
static enum MHD_Result send_json(server *s, struct MHD_Connection *c, unsigned code, json_t *j) {
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(j);
    if (!text) return MHD_NO;
    return send_text(s, c, code, "application/json", text);
}

/* An OpenAI-shaped error body. */
static enum MHD_Result send_error(server *s, struct MHD_Connection *c, unsigned code, const char *type,
                                  const char *msg) {
    return send_json(s, c, code, json_pack("{s:{s:s, s:s, s:i}}", "error", "message", msg, "type", type, "code",
                                           (int)code));
}

/* Constant-time comparison of the Authorization header with "Bearer KEY". */
/* 429: the queue is full; try again in a second. */
static enum MHD_Result send_busy(server *s, struct MHD_Connection *c) {
    json_t *j = json_pack("{s:{s:s, s:s, s:i}}", "error", "message", "the queue of completions is full; retry later",
                          "type", "rate_limit_error", "code", 429);
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct MHD_Response *r = MHD_create_response_from_buffer(t ? strlen(t) : 0, t, MHD_RESPMEM_MUST_FREE);
    add_headers(s, r, "application/json");
    MHD_add_response_header(r, "Retry-After", "1");
    enum MHD_Result ret = MHD_queue_response(c, 429, r);
    MHD_destroy_response(r);
    return ret;
}

static int authorized(server *s, struct MHD_Connection *c) {
    if (!s->api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    char want[512];
    snprintf(want, sizeof want, "Bearer %s", s->api_key);
    size_t n = strlen(want), m = h ? strlen(h) : 0;
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(want[i] ^ (i < m ? h[i] : 0));
    return diff == 0;
}

/* --- search ------------------------------------------------------------------------ */
static json_t *source_json(const retro_source *h) {
    json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:I, s:I, s:f, s:f, s:s}", "chunk_id", (json_int_t)h->chunk_id, "doc_id",
                          (json_int_t)h->doc_id, "path", h->path, "title", h->title, "byte_start",
                          (json_int_t)h->byte_start, "byte_end", (json_int_t)h->byte_end, "score", (double)h->score,
                          "distance", isnan(h->distance) ? 0.0 : (double)h->distance, "text", h->text);
    if (o && h->continuation) json_object_set_new(o, "continuation", json_string(h->continuation));
    if (o) {
        unsigned f = h->found_by;
        json_object_set_new(o, "found_by", json_string(f == (RETRO_FOUND_VECTOR | RETRO_FOUND_LEXICAL) ? "both"
                                                       : f == RETRO_FOUND_LEXICAL ? "lexical" : "vector"));
        if (h->vector_rank)
            json_object_set_new(o, "vector", json_pack("{s:i, s:f}", "rank", (int)h->vector_rank, "score", (double)h->vector_score));
        if (h->lexical_rank)
            json_object_set_new(o, "lexical", json_pack("{s:i, s:f}", "rank", (int)h->lexical_rank, "score", (double)h->lexical_score));
        if (isnan(h->distance)) json_object_set_new(o, "distance", json_null());
    }
    return o;
}

static enum MHD_Result do_search(server *s, struct MHD_Connection *c, json_t *req, int *err) {
    *err = 1;
    serve_search q;
    if (serve_parse_search(req, &q)) return send_error(s, c, 400, "invalid_request_error", rtr_errdetail());
    retro_search_opts so = {.k = q.k, .mode = q.mode, .continuation = q.continuation, .exclude_docs = q.exclude,
                            .n_exclude = q.n_exclude};
    retro_results res;
    int rc = retro_search(s->kb, q.query, q.len, &so, &res);
    if (rc) return send_error(s, c, rc == RETRO_E_INVALID ? 400 : 500, rc == RETRO_E_INVALID ? "invalid_request_error" : "server_error", retro_errdetail());
    json_t *data = json_array();
    for (size_t i = 0; i < res.n; i++) json_array_append_new(data, source_json(&res.items[i]));
    retro_results_free(&res);
    *err = 0;
    return send_json(s, c, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* --- embeddings ----------------------------------------------------------------------- */
/* Standard base64 of n bytes (a fresh string). */
static char *base64(const uint8_t *p, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(4 * ((n + 2) / 3) + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *q++ = A[v >> 18];
        *q++ = A[(v >> 12) & 63];
        *q++ = i + 1 < n ? A[(v >> 6) & 63] : '=';
        *q++ = i + 2 < n ? A[v & 63] : '=';
    }
    *q = 0;
    return o;
}

static enum MHD_Result do_embeddings(server *s, struct MHD_Connection *c, json_t *req, int *err) {
    *err = 1;
    serve_embed in;
    if (serve_parse_embeddings(req, &in))
        return send_error(s, c, rtr_errcode() == RTR_E_NOMEM ? 500 : 400, "invalid_request_error", rtr_errdetail());
    size_t n = in.n;
    int b64 = in.base64;
    float *v = NULL;
    uint32_t dim = 0;
    int rc = retro_kb_embed(s->kb, in.texts, in.lens, n, &v, &dim);
    serve_embed_free(&in);
    if (rc) return send_error(s, c, rc == RETRO_E_NOTFOUND ? 404 : 500, "server_error", retro_errdetail());
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *e;
        if (b64) {   /* float32, little-endian, as OpenAI's */
            char *b = base64((const uint8_t *)(v + i * dim), dim * sizeof(float));
            e = json_string(b ? b : "");
            free(b);
        } else {
            e = json_array();
            for (uint32_t j = 0; j < dim; j++) json_array_append_new(e, json_real(v[i * dim + j]));
        }
        json_array_append_new(data, json_pack("{s:s, s:I, s:o}", "object", "embedding", "index", (json_int_t)i,
                                              "embedding", e));
    }
    retro_free(v);
    *err = 0;
    return send_json(s, c, 200, json_pack("{s:s, s:o, s:s}", "object", "list", "data", data, "model", "retro-kb"));
}

/* --- completions ---------------------------------------------------------------------- */
typedef struct completion {
    server *s;
    serve_completion req;
    retro_gen_opts go;
    const char *stops[SERVE_MAX_STOP];
    int stream;
    int chat;                 /* /v1/chat/completions: messages in, a message out */
    int sent_role;            /* chat stream: the first chunk carries the role */
    int fd[2];                /* stream: the scheduler -> the response */
    volatile int cancel;      /* set by the response when the client is gone */
    json_t *retrievals;       /* the sources of each retrieval */
    char id[32];
    long created;
    struct completion *next;  /* the queue */
    int done;                 /* the scheduler is finished with it (under s->q_mu) */
    int rc;                   /* how it ended, with res or err */
    retro_gen_result res;
    char err[512];
} completion;

static void comp_free(completion *cp) {
    if (!cp) return;
    serve_completion_free(&cp->req);
    retro_gen_result_free(&cp->res);
    json_decref(cp->retrievals);
    free(cp);
}

static void on_retrieval(void *ctx, int64_t chunk, const retro_neighbour *nb, uint32_t k) {
    completion *cp = ctx;
    atomic_fetch_add(&cp->s->retrievals, 1);
    json_t *src = json_array();
    for (uint32_t i = 0; i < k; i++) {
        if (nb[i].chunk_id < 0) continue;
        json_array_append_new(src, json_pack("{s:I, s:s%, s:I, s:I, s:f, s:b}", "chunk_id", (json_int_t)nb[i].chunk_id,
                                             "path", nb[i].path, (size_t)nb[i].path_len, "byte_start",
                                             (json_int_t)nb[i].byte_start, "byte_end", (json_int_t)nb[i].byte_end,
                                             "score", (double)nb[i].score, "withheld", nb[i].withheld));
    }
    json_array_append_new(cp->retrievals, json_pack("{s:I, s:o}", "chunk", (json_int_t)chunk, "sources", src));
}

/* Writes all of buf to fd; -1 when the reader is gone. */
static int write_all(int fd, const char *buf, size_t n) {
    while (n) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_event(completion *cp, json_t *j) {
    char *t = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(j);
    if (!t) return -1;
    int rc = write_all(cp->fd[1], "data: ", 6) || write_all(cp->fd[1], t, strlen(t)) || write_all(cp->fd[1], "\n\n", 2);
    free(t);
    return rc;
}

/* A response or stream event around one choice (reference stolen). */
static json_t *envelope(const completion *cp, int chunk, json_t *choice) {
    const char *object = cp->chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    return json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", cp->id, "object", object, "created",
                     (json_int_t)cp->created, "model", cp->s->model_name, "choices", choice);
}

/* One choice: text (len bytes) and finish (NULL: not finished). */
static json_t *choice(completion *cp, int chunk, const char *text, size_t len, const char *finish) {
    json_t *fin = finish ? json_string(finish) : json_null();
    if (!cp->chat) return json_pack("{s:s%, s:i, s:n, s:o}", "text", text, len, "index", 0, "logprobs", "finish_reason", fin);
    if (!chunk) return json_pack("{s:i, s:{s:s, s:s%}, s:o}", "index", 0, "message", "role", "assistant", "content", text,
                                 len, "finish_reason", fin);
    json_t *delta = json_pack("{s:s%}", "content", text, len);
    if (!cp->sent_role) {
        json_object_set_new(delta, "role", json_string("assistant"));
        cp->sent_role = 1;
    }
    return json_pack("{s:i, s:o, s:o}", "index", 0, "delta", delta, "finish_reason", fin);
}

/* A token's text as a JSON string (invalid UTF-8, a piece of a character, repaired), and its bytes. */
static json_t *token_text(server *s, int32_t tok, json_t **bytes) {
    char *t = NULL;
    size_t n = 0;
    if (retro_detokenize(s->model, &tok, 1, &t, &n)) return json_string("");
    json_t *j = cli_json_text(t, n);
    if (bytes) {
        *bytes = json_array();
        for (size_t i = 0; i < n; i++) json_array_append_new(*bytes, json_integer((unsigned char)t[i]));
    }
    retro_free(t);
    return j ? j : json_string("");
}

/* The logprobs of a finished completion in OpenAI's shapes: completions' tokens, token_logprobs,
 * top_logprobs and text_offset; chat's content list. */
static json_t *logprobs_json(completion *cp, const retro_gen_result *res) {
    server *s = cp->s;
    if (!cp->req.logprobs) return json_null();
    int ntop = cp->req.top_logprobs;
    if (cp->chat) {
        json_t *content = json_array();
        for (size_t i = 0; i < res->n_logprobs; i++) {
            const retro_token_logprob *l = &res->logprobs[i];
            json_t *bytes, *tops = json_array(), *tt = token_text(s, l->token, &bytes);
            for (int k = 0; k < l->n_top && k < ntop; k++) {
                json_t *tb, *tx = token_text(s, l->top[k], &tb);
                json_array_append_new(tops, json_pack("{s:o, s:f, s:o}", "token", tx, "logprob", (double)l->top_logprob[k], "bytes", tb));
            }
            json_array_append_new(content, json_pack("{s:o, s:f, s:o, s:o}", "token", tt, "logprob", (double)l->logprob,
                                                     "bytes", bytes, "top_logprobs", tops));
        }
        return json_pack("{s:o}", "content", content);
    }
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (size_t i = 0; i < res->n_logprobs; i++) {
        const retro_token_logprob *l = &res->logprobs[i];
        json_array_append_new(tokens, token_text(s, l->token, NULL));
        json_array_append_new(lps, json_real(l->logprob));
        json_array_append_new(offs, json_integer((json_int_t)l->offset));
        json_t *top = json_object();
        for (int k = 0; k < l->n_top && k < ntop; k++) {
            json_t *tx = token_text(s, l->top[k], NULL);
            json_object_set_new(top, json_string_value(tx), json_real(l->top_logprob[k]));
            json_decref(tx);
        }
        json_array_append_new(tops, top);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops, "text_offset", offs);
}

static int on_text(void *ctx, const char *text, size_t len) {
    completion *cp = ctx;
    if (!cp->stream) return 0;
    if (send_event(cp, envelope(cp, 1, choice(cp, 1, text, len, NULL)))) cp->cancel = 1;   /* the client is gone: stop */
    return cp->cancel;
}

static const char *finish_reason(const char *stopped) { return !strcmp(stopped, "length") ? "length" : "stop"; }

/* ch with its "logprobs" (reference stolen and returned). */
static json_t *with_logprobs(json_t *ch, completion *cp, const retro_gen_result *res) {
    json_object_set_new(ch, "logprobs", logprobs_json(cp, res));
    return ch;
}

/* The scheduler is done with cp (rc: how it ended, res its result): a stream
 * gets its last event and [DONE]; the waiting request is woken. */
static void complete(server *s, completion *cp, int rc, retro_gen_result *res) {
    cp->rc = rc;
    if (rc) snprintf(cp->err, sizeof cp->err, "%s", retro_errdetail());
    else {
        cp->res = *res;
        atomic_fetch_add(&s->tokens, res->tokens);
    }
    if (cp->stream) {
        json_t *last = rc ? json_pack("{s:{s:s, s:s}}", "error", "message", cp->err, "type", "server_error")
                          : envelope(cp, 1, with_logprobs(choice(cp, 1, "", 0, finish_reason(res->stopped)), cp, res));
        if (!rc) json_object_set_new(last, "retro", json_pack("{s:O}", "retrievals", cp->retrievals));
        if (!send_event(cp, last)) write_all(cp->fd[1], "data: [DONE]\n\n", 14);
        close(cp->fd[1]);
        cp->fd[1] = -1;
    }
    pthread_mutex_lock(&s->q_mu);
    cp->done = 1;
    pthread_cond_broadcast(&s->done_cv);
    pthread_mutex_unlock(&s->q_mu);
}

/* Queues a completion for the scheduler; 0, or -1 when the queue is full. */
static int enqueue(server *s, completion *cp) {
    cp->go.on_text = on_text;
    cp->go.on_retrieval = on_retrieval;
    cp->go.ctx = cp;
    cp->go.cancel = &cp->cancel;
    pthread_mutex_lock(&s->q_mu);
    if (s->queued >= s->queue_max) {
        pthread_mutex_unlock(&s->q_mu);
        return -1;
    }
    completion **tail = &s->queue;
    while (*tail) tail = &(*tail)->next;
    *tail = cp;
    s->queued++;
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->q_mu);
    return 0;
}

static void wait_done(server *s, completion *cp) {
    pthread_mutex_lock(&s->q_mu);
    while (!cp->done) pthread_cond_wait(&s->done_cv, &s->q_mu);
    pthread_mutex_unlock(&s->q_mu);
}

/* Maps the knowledge base's index and store into the process while the first requests are served
 * (retro_kb_warm: the faults of a first touch otherwise fall on the first searches of each part). */
static void *warm_main(void *arg) {
    server *s = arg;
    uint64_t bytes = 0;
    double t0 = rtr_now();
    if (retro_kb_warm(s->kb, &bytes) == RETRO_OK && bytes)
        fprintf(stderr, "serve: %.2f GB of the knowledge base mapped in %.1f s\n", (double)bytes / 1e9, rtr_now() - t0);
    return NULL;
}

/* The scheduler: admits queued completions into free slots (each prompt fed
 * on admission), then decodes one token for every running one in a single
 * batched step, and hands each finished one back. Searches take the engine
 * between steps. */
static void *scheduler_main(void *arg) {
    server *s = arg;
    completion **slot = calloc((size_t)s->parallel, sizeof *slot);
    if (!slot) abort();
    for (;;) {
        pthread_mutex_lock(&s->q_mu);
        int running = retro_batch_active(s->batch);
        while (!s->stopping && !s->queue && running == 0) pthread_cond_wait(&s->work_cv, &s->q_mu);
        if (s->stopping && !s->queue && running == 0) {
            pthread_mutex_unlock(&s->q_mu);
            break;
        }
        completion *admit = NULL;
        if (s->queue && running < s->parallel) {
            admit = s->queue;
            s->queue = admit->next;
            s->queued--;
        }
        pthread_mutex_unlock(&s->q_mu);
        if (admit) {
            int k = -1, rc;
            retro_gen_result none = {0};
            if (admit->cancel) rc = rtr_seterr(RETRO_E_INTERRUPTED, "the client left before its turn");
            else {
                pthread_mutex_lock(&s->engine);
                rc = retro_batch_add(s->batch, admit->req.prompt, strlen(admit->req.prompt), &admit->go, &k);
                pthread_mutex_unlock(&s->engine);
            }
            if (rc) complete(s, admit, rc, &none);
            else slot[k] = admit;
            atomic_store(&s->busy, retro_batch_active(s->batch));
        } else {
            pthread_mutex_lock(&s->engine);
            retro_batch_step(s->batch, NULL);
            pthread_mutex_unlock(&s->engine);
        }
        for (int k = 0; k < s->parallel; k++) {   /* the ended ones go back to their requests */
            if (!slot[k]) continue;
            retro_gen_result res;
            int rc = retro_batch_take(s->batch, k, &res);
            if (rc == RETRO_E_BUSY) continue;
            completion *cp = slot[k];
            slot[k] = NULL;
            complete(s, cp, rc, &res);
        }
        atomic_store(&s->busy, retro_batch_active(s->batch));
    }
    free(slot);
    return NULL;
}

/* The stream's next bytes. A second without any (waiting for a slot, or a long prefill) sends an SSE
 * comment: clients ignore it, and a client that has left is found out by the failed send. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    completion *cp = cls;
    struct pollfd pf = {cp->fd[0], POLLIN, 0};
    int r;
    do r = poll(&pf, 1, 1000); while (r < 0 && errno == EINTR);
    static const char beat[] = ": waiting\n\n";
    if (r == 0 && max >= sizeof beat - 1) {
        memcpy(buf, beat, sizeof beat - 1);
        return (ssize_t)(sizeof beat - 1);
    }
    ssize_t n;
    do n = read(cp->fd[0], buf, max); while (n < 0 && errno == EINTR);
    if (n == 0) return MHD_CONTENT_READER_END_OF_STREAM;
    return n < 0 ? MHD_CONTENT_READER_END_WITH_ERROR : n;
}

static void stream_done(void *cls) {
    completion *cp = cls;
    cp->cancel = 1;   /* a client that disconnects cancels its generation */
    close(cp->fd[0]);               /* the writer sees EPIPE and stops */
    wait_done(cp->s, cp);
    comp_free(cp);
}

static enum MHD_Result do_completions(server *s, struct MHD_Connection *c, json_t *req, int chat, int *err) {
    *err = 1;
    if (!s->model) return send_error(s, c, 400, "invalid_request_error", "no model: start retro serve with --model DIR");
    completion *cp = calloc(1, sizeof *cp);
    if (!cp) return send_error(s, c, 500, "server_error", "out of memory");
    if (serve_parse_completion(req, chat, &cp->req)) {
        comp_free(cp);
        return send_error(s, c, rtr_errcode() == RTR_E_NOMEM ? 500 : 400, "invalid_request_error", rtr_errdetail());
    }
    int stream = cp->req.stream;
    cp->s = s;
    cp->chat = chat;
    cp->stream = stream;
    cp->fd[0] = cp->fd[1] = -1;
    cp->retrievals = json_array();
    cp->created = (long)time(NULL);
    snprintf(cp->id, sizeof cp->id, "%s-%ld", chat ? "chatcmpl" : "cmpl", atomic_fetch_add(&s->next_id, 1));
    retro_gen_opts_default(&cp->go);
    cp->go.max_tokens = cp->req.max_tokens;
    cp->go.temperature = cp->req.temperature;
    cp->go.top_p = cp->req.top_p;
    cp->go.top_k = cp->req.top_k;
    cp->go.seed = cp->req.seed;
    cp->go.ignore_end = cp->req.ignore_eos;
    cp->go.logprobs = cp->req.logprobs ? (cp->req.top_logprobs > 0 ? cp->req.top_logprobs : 1) : 0;
    cp->go.kb = s->kb;
    for (int i = 0; i < cp->req.n_stop; i++) cp->stops[i] = cp->req.stop[i];
    cp->go.stop = cp->stops;
    cp->go.n_stop = cp->req.n_stop;
    if (stream && pipe(cp->fd) != 0) {
        comp_free(cp);
        return send_error(s, c, 500, "server_error", "cannot make a pipe");
    }
    if (enqueue(s, cp)) {
        comp_free(cp);
        atomic_fetch_add(&s->rejected, 1);
        return send_busy(s, c);
    }
    if (stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, cp, stream_done);
        add_headers(s, r, "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        *err = 0;
        return ret;
    }
    wait_done(s, cp);
    if (cp->rc) {
        enum MHD_Result ret = send_error(s, c, 500, "server_error", cp->err);
        comp_free(cp);
        return ret;
    }
    retro_gen_result *res = &cp->res;
    json_t *out = envelope(cp, 0, with_logprobs(choice(cp, 0, res->text, res->len, finish_reason(res->stopped)), cp, res));
    json_object_set_new(out, "usage", json_pack("{s:i, s:i, s:i}", "prompt_tokens", res->prompt_tokens,
                                                "completion_tokens", res->tokens, "total_tokens",
                                                res->prompt_tokens + res->tokens));
    json_object_set_new(out, "retro", json_pack("{s:O}", "retrievals", cp->retrievals));
    comp_free(cp);
    *err = 0;
    return send_json(s, c, 200, out);
}

/* --- answers with sources ------------------------------------------------------------- */
static enum MHD_Result do_ask(server *s, struct MHD_Connection *c, json_t *req, int *err) {
    *err = 1;
    serve_ask a;
    if (serve_parse_ask(req, &a)) return send_error(s, c, 400, "invalid_request_error", rtr_errdetail());
    if (!s->model && !s->reader)
        return send_error(s, c, 400, "invalid_request_error", "no model: start retro serve with --model DIR or --reader URL");
    retro_ask_opts o;
    retro_ask_opts_default(&o);
    o.passages = a.passages;
    o.quotes = a.quotes;
    o.gen.max_tokens = a.max_tokens;
    o.gen.temperature = a.temperature;
    o.reader_url = s->reader;
    o.reader_model = s->reader_model;
    retro_answer ans;
    int rc;
    if (s->reader) {   /* the knowledge base, then the network: neither needs the model */
        rc = retro_ask(NULL, s->kb, a.question, &o, &ans);
    } else {
        pthread_mutex_lock(&s->engine);
        rc = retro_ask(s->model, s->kb, a.question, &o, &ans);
        pthread_mutex_unlock(&s->engine);
    }
    if (rc) {
        int client = rc == RETRO_E_INVALID;
        return send_error(s, c, client ? 400 : rc == RETRO_E_NET ? 502 : 500, client ? "invalid_request_error" : "server_error",
                          retro_errdetail());
    }
    json_t *quotes = json_array(), *sources = json_array();
    for (size_t i = 0; i < ans.n_quotes; i++) {
        const retro_quote *q = &ans.quotes[i];
        json_array_append_new(quotes, json_pack("{s:s, s:I, s:s, s:I, s:I, s:f}", "text", q->text, "source",
                                                (json_int_t)q->source + 1, "path", q->path, "byte_start",
                                                (json_int_t)q->byte_start, "byte_end", (json_int_t)q->byte_end, "score",
                                                q->score));
    }
    for (size_t i = 0; i < ans.sources.n; i++) {
        json_t *h = source_json(&ans.sources.items[i]);
        json_object_set_new(h, "rank", json_integer((json_int_t)i + 1));
        json_object_set_new(h, "in_prompt", json_boolean(i < ans.in_prompt));
        json_array_append_new(sources, h);
    }
    json_t *out = json_pack("{s:s, s:s, s:o, s:s%, s:s, s:i, s:o}", "question", a.question, "answer",
                            ans.n_quotes ? ans.quotes[0].text : "", "quotes", quotes, "generated", ans.gen.text,
                            ans.gen.len, "generated_by", ans.generated_by, "tokens", ans.gen.tokens, "sources", sources);
    retro_answer_free(&ans);
    *err = 0;
    return send_json(s, c, 200, out);
}

/* --- documents -------------------------------------------------------------------------- */
static json_t *doc_json(const retro_doc_info *d) {
    return json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "id", (json_int_t)d->id, "name", d->path, "title",
                     d->title, "record", d->record, "bytes", (json_int_t)d->bytes, "tokens", (json_int_t)d->tokens,
                     "chunks", (json_int_t)d->chunks, "first_chunk", (json_int_t)d->first_chunk, "modified_ns",
                     (json_int_t)d->mtime_ns);
}

/* Adds the documents, updates the index and answers with what became of each. No engine lock: the
 * searches go on while this writes (the library lets readers run beside its one writer). */
static enum MHD_Result add_documents(server *s, struct MHD_Connection *c, const retro_text *docs, size_t n, int *err) {
    *err = 1;
    uint64_t *ids = calloc(n, sizeof *ids);
    if (!ids) return send_error(s, c, 500, "server_error", "out of memory");
    retro_add_report rep;
    retro_build_report brep = {0};
    int rc = retro_kb_add_texts(s->kb, docs, n, ids, &rep);
    if (!rc && (rep.chunks_added || rep.docs_removed)) rc = retro_kb_build(s->kb, &brep);
    if (rc) {
        free(ids);
        int client = rc == RETRO_E_INVALID;
        return send_error(s, c, client ? 400 : rc == RETRO_E_FULL ? 507 : 500,
                          client ? "invalid_request_error" : "server_error", retro_errdetail());
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        retro_doc_info *d = NULL;
        json_t *o = ids[i] && !retro_kb_doc_get(s->kb, ids[i], &d, NULL, NULL) ? doc_json(d)
                  : json_pack("{s:n, s:s, s:s}", "id", "name", docs[i].name, "skipped", "no text (empty or binary)");
        retro_docs_free(d, d ? 1 : 0);
        json_array_append_new(data, o);
    }
    free(ids);
    *err = 0;
    return send_json(s, c, 200, json_pack("{s:s, s:o, s:{s:I, s:I, s:I, s:I}, s:{s:I, s:I}}", "object", "list", "data",
                                          data, "added", "new", (json_int_t)rep.files_new, "changed",
                                          (json_int_t)rep.files_changed, "unchanged", (json_int_t)rep.files_unchanged,
                                          "chunks", (json_int_t)rep.chunks_added, "index", "embedded",
                                          (json_int_t)brep.embedded, "vectors", (json_int_t)brep.vectors));
}

static enum MHD_Result do_documents(server *s, struct MHD_Connection *c, const char *url, const char *method,
                                    request *rq, int *err) {
    *err = 1;
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST"), del = !strcmp(method, "DELETE");
    int one = strcmp(url, "/v1/documents") != 0;
    if (!(one ? get || del : get || post)) return send_error(s, c, 405, "invalid_request_error", "method not allowed");
    if ((post || del) && !s->writable)
        return send_error(s, c, 403, "permission_error", "this server was started with --read-only");
    uint64_t id = 0;
    if (one && serve_parse_doc_id(url, &id)) return send_error(s, c, 404, "invalid_request_error", rtr_errdetail());
    if (post && rq->pp) {   /* multipart/form-data: each file a document, named by its filename */
        if (rq->up_bad || rq->n_up == 0)
            return send_error(s, c, 400, "invalid_request_error",
                              rq->up_bad ? "at most 64 files a request" : "no file in the form (curl -F file=@PATH)");
        if (rq->up_name && rq->n_up == 1) {
            free(rq->up[0].name);
            rq->up[0].name = rq->up_name;
            rq->up_name = NULL;
        }
        retro_text docs[MAX_UPLOADS];
        for (size_t i = 0; i < rq->n_up; i++) docs[i] = (retro_text){rq->up[i].name, rq->up[i].data, rq->up[i].len};
        return add_documents(s, c, docs, rq->n_up, err);
    }
    if (post) {
        json_error_t je;
        json_t *req = rq->body ? json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, &je) : NULL;
        serve_docs d;
        enum MHD_Result ret;
        if (serve_parse_documents(req, &d)) ret = send_error(s, c, 400, "invalid_request_error", rtr_errdetail());
        else ret = add_documents(s, c, d.docs, d.n, err);
        serve_docs_free(&d);
        json_decref(req);
        return ret;
    }
    if (del) {
        uint64_t removed = 0;
        int rc = retro_kb_remove_docs(s->kb, &id, 1, &removed);
        if (rc) return send_error(s, c, rc == RETRO_E_NOTFOUND ? 404 : 500, "invalid_request_error", retro_errdetail());
        *err = 0;
        return send_json(s, c, 200, json_pack("{s:I, s:s, s:b, s:I}", "id", (json_int_t)id, "object", "document",
                                              "deleted", 1, "documents_removed", (json_int_t)removed));
    }
    int rc;
    json_t *out = NULL;
    if (one) {
        retro_doc_info *d;
        char *text;
        size_t len;
        if (!(rc = retro_kb_doc_get(s->kb, id, &d, &text, &len))) {
            out = doc_json(d);
            json_object_set_new(out, "text", json_stringn(text, len));
            retro_docs_free(d, 1);
            retro_free(text);
        }
    } else {
        uint64_t after;
        size_t limit;
        if (serve_parse_page(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after"),
                             MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit"), &after, &limit)) {
            return send_error(s, c, 400, "invalid_request_error", rtr_errdetail());
        }
        retro_doc_info *d;
        size_t n;
        if (!(rc = retro_kb_docs(s->kb, after, limit + 1, &d, &n))) {   /* one more: is there a next page? */
            json_t *data = json_array();
            for (size_t i = 0; i < n && i < limit; i++) json_array_append_new(data, doc_json(&d[i]));
            out = json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", n > limit);
            if (n) json_object_set_new(out, "last_id", json_integer((json_int_t)d[n > limit ? limit - 1 : n - 1].id));
            retro_docs_free(d, n);
        }
    }
    if (rc) return send_error(s, c, rc == RETRO_E_NOTFOUND ? 404 : 500, rc == RETRO_E_NOTFOUND ? "invalid_request_error" : "server_error", retro_errdetail());
    *err = 0;
    return send_json(s, c, 200, out);
}

/* The multipart iterator: a file field's bytes, piece by piece; a "name" field. */
static enum MHD_Result on_post(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *type, const char *enc, const char *data, uint64_t off, size_t size) {
    (void)kind, (void)type, (void)enc;
    request *rq = cls;
    if (!filename) {
        if (strcmp(key, "name")) return MHD_YES;   /* other fields are ignored */
        size_t have = rq->up_name ? strlen(rq->up_name) : 0;
        char *n = realloc(rq->up_name, have + size + 1);
        if (!n || have + size > 4096) return rq->up_bad = 1, MHD_NO;
        memcpy(n + have, data, size);
        n[have + size] = 0;
        rq->up_name = n;
        return MHD_YES;
    }
    if (off == 0 && (rq->n_up == 0 || strcmp(rq->up[rq->n_up - 1].name, filename) || rq->up[rq->n_up - 1].len)) {
        if (rq->n_up == MAX_UPLOADS || !(rq->up[rq->n_up].name = strdup(filename))) return rq->up_bad = 1, MHD_NO;
        rq->n_up++;
    }
    if (rq->n_up == 0) return MHD_YES;
    upload_file *u = &rq->up[rq->n_up - 1];
    char *d = realloc(u->data, u->len + size + 1);
    if (!d) return rq->up_bad = 1, MHD_NO;
    memcpy(d + u->len, data, size);
    u->len += size;
    d[u->len] = 0;
    u->data = d;
    return MHD_YES;
}

/* --- metrics -------------------------------------------------------------------------- */
static enum MHD_Result do_metrics(server *s, struct MHD_Connection *c) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return MHD_NO;
    fprintf(f, "# HELP retro_requests_total HTTP requests by endpoint.\n# TYPE retro_requests_total counter\n");
    for (int e = 0; e < N_EP; e++) fprintf(f, "retro_requests_total{endpoint=\"%s\"} %ld\n", EP_NAME[e], atomic_load(&s->requests[e]));
    fprintf(f, "# HELP retro_errors_total HTTP requests answered with an error.\n# TYPE retro_errors_total counter\n");
    for (int e = 0; e < N_EP; e++) fprintf(f, "retro_errors_total{endpoint=\"%s\"} %ld\n", EP_NAME[e], atomic_load(&s->errors[e]));
    fprintf(f, "# HELP retro_request_seconds Request latency.\n# TYPE retro_request_seconds histogram\n");
    for (int e = 0; e < N_EP; e++) {
        long cum = 0;
        for (int b = 0; b <= N_BUCKETS; b++) {
            cum += atomic_load(&s->buckets[e][b]);
            if (b < N_BUCKETS) fprintf(f, "retro_request_seconds_bucket{endpoint=\"%s\",le=\"%g\"} %ld\n", EP_NAME[e], BUCKET[b], cum);
            else fprintf(f, "retro_request_seconds_bucket{endpoint=\"%s\",le=\"+Inf\"} %ld\n", EP_NAME[e], cum);
        }
        fprintf(f, "retro_request_seconds_sum{endpoint=\"%s\"} %.6f\nretro_request_seconds_count{endpoint=\"%s\"} %ld\n",
                EP_NAME[e], atomic_load(&s->seconds[e]), EP_NAME[e], cum);
    }
    fprintf(f, "# HELP retro_tokens_generated_total Tokens generated.\n# TYPE retro_tokens_generated_total counter\n"
               "retro_tokens_generated_total %ld\n", atomic_load(&s->tokens));
    fprintf(f, "# HELP retro_retrievals_total Chunks retrieved for during generation.\n# TYPE retro_retrievals_total counter\n"
               "retro_retrievals_total %ld\n", atomic_load(&s->retrievals));
    pthread_mutex_lock(&s->q_mu);
    int queued = s->queued;
    pthread_mutex_unlock(&s->q_mu);
    fprintf(f, "# HELP retro_queue_depth Completions waiting for a generation slot.\n# TYPE retro_queue_depth gauge\n"
               "retro_queue_depth %d\n# HELP retro_slots_busy Generation slots decoding.\n# TYPE retro_slots_busy gauge\n"
               "retro_slots_busy %d\n# HELP retro_slots Generation slots (--parallel).\n# TYPE retro_slots gauge\n"
               "retro_slots %d\n# HELP retro_rejected_total Completions refused with 429 (queue full).\n"
               "# TYPE retro_rejected_total counter\nretro_rejected_total %ld\n",
            queued, atomic_load(&s->busy), s->model ? s->parallel : 0, atomic_load(&s->rejected));
    retro_kb_stats st;
    int rc = retro_kb_stats_get(s->kb, &st);
    if (!rc)
        fprintf(f, "# HELP retro_documents Documents in the knowledge base.\n# TYPE retro_documents gauge\nretro_documents %" PRIu64
                   "\n# HELP retro_chunks Chunks in the knowledge base.\n# TYPE retro_chunks gauge\nretro_chunks %" PRIu64 "\n",
                st.documents, st.chunks);
    fclose(f);
    return send_text(s, c, 200, "text/plain; version=0.0.4", buf);
}

/* --- the request handler ---------------------------------------------------------------- */
static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *s = cls;
    request *rq = *con_cls;
    if (!rq) {   /* the headers: a request state for the body to come */
        if (!(rq = calloc(1, sizeof *rq))) return MHD_NO;
        rq->t0 = now_s();
        *con_cls = rq;
        const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!strcmp(method, "POST") && !strcmp(url, "/v1/documents") && type &&
            !strncasecmp(type, "multipart/form-data", 19))
            rq->pp = MHD_create_post_processor(c, 65536, on_post, rq);
        return MHD_YES;
    }
    if (*upload_size && rq->pp) {   /* a piece of a form: the files go to rq->up */
        rq->up_bytes += *upload_size;
        if (rq->up_bytes > s->max_body) rq->too_big = 1;
        else if (!rq->up_bad && MHD_post_process(rq->pp, upload, *upload_size) != MHD_YES) rq->up_bad = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {   /* a piece of the body */
        if (!rq->too_big && rq->len + *upload_size <= s->max_body) {
            char *b = realloc(rq->body, rq->len + *upload_size + 1);
            if (b) {
                rq->body = b;
                memcpy(b + rq->len, upload, *upload_size);
                rq->len += *upload_size;
                b[rq->len] = 0;
            } else {
                rq->too_big = 1;
            }
        } else {
            rq->too_big = 1;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    int ep = !strcmp(url, "/health") ? EP_HEALTH : !strcmp(url, "/v1/models") ? EP_MODELS
           : !strcmp(url, "/v1/search") ? EP_SEARCH : !strcmp(url, "/v1/completions") ? EP_COMPLETIONS
           : !strcmp(url, "/v1/embeddings") ? EP_EMBEDDINGS : !strcmp(url, "/v1/chat/completions") ? EP_CHAT
           : !strcmp(url, "/v1/ask") ? EP_ASK
           : !strcmp(url, "/metrics") ? EP_METRICS
           : !strcmp(url, "/v1/documents") || !strncmp(url, "/v1/documents/", 14) ? EP_DOCUMENTS : EP_OTHER;
    int err = 1;
    enum MHD_Result ret;
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(method, "OPTIONS") && s->cors) {
        err = 0;
        ret = send_text(s, c, 204, "text/plain", strdup(""));
    } else if (ep == EP_HEALTH && get) {
        int ready = atomic_load(&s->ready);
        err = !ready;
        ret = send_json(s, c, ready ? 200 : 503, json_pack("{s:s}", "status", ready ? "ok" : "loading"));
    } else if (get && (!strcmp(url, "/") || !strcmp(url, "/index.html"))) {   /* the page; open, its requests carry the key */
        struct MHD_Response *r = MHD_create_response_from_buffer(rtr_serve_page_len, (void *)rtr_serve_page,
                                                                 MHD_RESPMEM_PERSISTENT);
        if (r) {
            add_headers(s, r, "text/html; charset=utf-8");
            err = 0;
            ret = MHD_queue_response(c, 200, r);
            MHD_destroy_response(r);
        } else {
            ret = MHD_NO;
        }
    } else if (!authorized(s, c)) {
        ret = send_error(s, c, 401, "authentication_error", "a valid 'Authorization: Bearer KEY' header is required");
    } else if (!atomic_load(&s->ready)) {
        ret = send_error(s, c, 503, "server_error", "loading");
    } else if (rq->too_big) {
        ret = send_error(s, c, 413, "invalid_request_error", "the request body is larger than --max-body");
    } else if (ep == EP_MODELS && get) {
        err = 0;
        ret = send_json(s, c, 200, json_pack("{s:s, s:[{s:s, s:s, s:s}]}", "object", "list", "data", "id",
                                             s->model_name, "object", "model", "owned_by", "retro"));
    } else if (ep == EP_METRICS && get) {
        err = 0;
        ret = do_metrics(s, c);
    } else if (ep == EP_DOCUMENTS) {
        ret = do_documents(s, c, url, method, rq, &err);
    } else if ((ep == EP_SEARCH || ep == EP_COMPLETIONS || ep == EP_CHAT || ep == EP_EMBEDDINGS || ep == EP_ASK) && post) {
        json_error_t je;
        json_t *req = rq->body ? json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, &je) : NULL;
        if (!json_is_object(req)) {
            char msg[300];
            snprintf(msg, sizeof msg, "the body must be a JSON object%s%s", req || !rq->body ? "" : ": ",
                     req || !rq->body ? "" : je.text);
            ret = send_error(s, c, 400, "invalid_request_error", msg);
        } else {
            ret = ep == EP_SEARCH ? do_search(s, c, req, &err) : ep == EP_EMBEDDINGS ? do_embeddings(s, c, req, &err)
                : ep == EP_ASK ? do_ask(s, c, req, &err) : do_completions(s, c, req, ep == EP_CHAT, &err);
        }
        json_decref(req);
    } else if (ep != EP_OTHER) {
        ret = send_error(s, c, 405, "invalid_request_error", "method not allowed");
    } else {
        ret = send_error(s, c, 404, "invalid_request_error", "no such endpoint");
    }
    observe(s, ep, now_s() - rq->t0, err);
    return ret;
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    request *rq = *con_cls;
    if (rq) {
        free(rq->body);
        if (rq->pp) MHD_destroy_post_processor(rq->pp);
        for (size_t i = 0; i < rq->n_up; i++) free(rq->up[i].name), free(rq->up[i].data);
        free(rq->up_name);
    }
    free(rq);
    *con_cls = NULL;
}

static volatile sig_atomic_t g_quit;
static void on_quit(int sig) {
    (void)sig;
    g_quit = 1;
}

int cmd_serve(int argc, char **argv) {
    enum { O_KB = 256, O_MODEL, O_HOST, O_PORT, O_KEY, O_CORS, O_BODY, O_THREADS, O_RO, O_PAR, O_QUEUE, O_READER, O_RMODEL };
    static const struct option opts[] = {{"kb", 1, 0, O_KB},       {"model", 1, 0, O_MODEL}, {"host", 1, 0, O_HOST},
                                         {"port", 1, 0, O_PORT},   {"api-key", 1, 0, O_KEY}, {"cors", 1, 0, O_CORS},
                                         {"max-body", 1, 0, O_BODY}, {"threads", 1, 0, O_THREADS}, {"read-only", 0, 0, O_RO}, {"parallel", 1, 0, O_PAR}, {"queue", 1, 0, O_QUEUE}, {"reader", 1, 0, O_READER}, {"reader-model", 1, 0, O_RMODEL},
                                         {"help", 0, 0, 'h'},      {0, 0, 0, 0}};
    const char *kb_dir = NULL, *model_dir = NULL, *host = "127.0.0.1";
    long port = 8080;
    server *s = calloc(1, sizeof *s);
    if (!s) return cli_fail(RTR_E_NOMEM);
    s->max_body = 1 << 20;
    s->writable = 1;
    s->parallel = 4;
    s->queue_max = 64;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(serve_usage, stdout); free(s); return CLI_OK;
        case O_KB: kb_dir = optarg; break;
        case O_MODEL: model_dir = optarg; break;
        case O_HOST: host = optarg; break;
        case O_PORT:
            port = atol(optarg);
            if (port < 1 || port > 65535) { free(s); return cli_usage_error("serve", "--port must be 1..65535"); }
            break;
        case O_KEY: s->api_key = optarg; break;
        case O_CORS: s->cors = optarg; break;
        case O_BODY: {
            long b = atol(optarg);
            if (b < 64) { free(s); return cli_usage_error("serve", "--max-body must be at least 64"); }
            s->max_body = (size_t)b;
            break;
        }
        case O_THREADS: rtr_set_threads(atoi(optarg) > 0 ? atoi(optarg) : 1); break;
        case O_RO: s->writable = 0; break;
        case O_READER: s->reader = optarg; break;
        case O_RMODEL: s->reader_model = optarg; break;
        case O_PAR:
            s->parallel = atoi(optarg);
            if (s->parallel < 1 || s->parallel > 256) { free(s); return cli_usage_error("serve", "--parallel must be 1..256"); }
            break;
        case O_QUEUE:
            s->queue_max = atoi(optarg);
            if (s->queue_max < 0 || s->queue_max > 100000) { free(s); return cli_usage_error("serve", "--queue must be 0..100000"); }
            break;
        default: free(s); return cli_usage_error("serve", "bad option");
        }
    }
    if (optind != argc) { free(s); return cli_usage_error("serve", "unexpected argument '%s'", argv[optind]); }
    if (!kb_dir) { free(s); return cli_usage_error("serve", "--kb KB is required"); }
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) { free(s); return cli_usage_error("serve", "--host must be an IPv4 address"); }
    pthread_mutex_init(&s->engine, NULL);
    pthread_mutex_init(&s->q_mu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    const char *slash = model_dir ? strrchr(model_dir, '/') : NULL;
    s->model_name = model_dir ? (slash && slash[1] ? slash + 1 : model_dir) : "none";
    signal(SIGPIPE, SIG_IGN);
    /* A thread a connection: glibc would give each its own malloc arena (up to 8 a core), and the memory
     * each frees stays with it, so resident memory would climb with the connections (tests/bench/
     * soak_serve.sh: 37 MB in ten minutes of posting documents). One arena: resident memory stays flat after
     * the first builds (27 MB at start, 59.5 MB after 150 documents, 60.0 MB after 150 more), and the engine is
     * serialized anyway. */
    mallopt(M_ARENA_MAX, 1);
    uint32_t parts = 1;
    if (rtr_comm_size(rtr_comm_world()) > 1 && model_dir && rtr_parts_probe(kb_dir, &parts) == RTR_OK && parts > 1) {
        free(s);
        return cli_usage_error("serve", "under mpirun, a knowledge base of partitions is served for search only: "
                                        "completions and answers retrieve from it in one process (drop --model)");
    }
    if (rtr_comm_rank(rtr_comm_world()) != 0) {
        /* under mpirun: this rank's partitions answer rank 0's searches until rank 0 stops (it stops the
         * job: the signals are its) */
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        retro_kb *kb = NULL;
        int rc = retro_kb_open(kb_dir, 0, NULL, &kb);
        if (!rc) rc = retro_kb_follow(kb);
        retro_kb_close(kb);
        free(s);
        return rc ? cli_fail(rc) : CLI_OK;
    }
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
                                            (uint16_t)port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, &addr,
                                            MHD_OPTION_NOTIFY_COMPLETED, request_done, s,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "retro: cannot listen on %s:%ld: %s\n", host, port, strerror(errno));
        free(s);
        return CLI_FAIL;
    }
    fprintf(stderr, "serve: listening on http://%s:%ld (loading)\n", host, port);
    int rc = retro_kb_open(kb_dir, s->writable ? RETRO_KB_WRITE : 0, NULL, &s->kb);
    if (rc == RETRO_E_BUSY)
        rc = rtr_seterr(rc, "%s: another process holds its writer lock; stop it, or serve with --read-only", kb_dir);
    retro_model_opts mo = {1, NULL};
    if (!rc && model_dir) rc = retro_model_load(model_dir, &mo, &s->model);
    if (!rc && s->model) rc = retro_batch_new(s->model, s->parallel, &s->batch);
    if (!rc && s->model && pthread_create(&s->scheduler, NULL, scheduler_main, s) != 0)
        rc = rtr_seterr(RETRO_E_NOMEM, "serve: cannot start the scheduler thread");
    if (rc) {
        MHD_stop_daemon(d);
        retro_batch_free(s->batch);
        retro_model_free(s->model);
        retro_kb_close(s->kb);
        free(s);
        return cli_fail(rc);
    }
    atomic_store(&s->ready, 1);
    fprintf(stderr, "serve: ready\n");
    s->warming = pthread_create(&s->warmer, NULL, warm_main, s) == 0;   /* without it, searches fault their pages in */
    struct sigaction sa = {0};
    sa.sa_handler = on_quit;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!g_quit) pause();
    fprintf(stderr, "serve: stopping\n");
    MHD_stop_daemon(d);   /* waits for the connections' threads: in-flight requests finish */
    if (s->batch) {
        pthread_mutex_lock(&s->q_mu);
        s->stopping = 1;
        pthread_cond_signal(&s->work_cv);
        pthread_mutex_unlock(&s->q_mu);
        pthread_join(s->scheduler, NULL);
    }
    if (s->warming) pthread_join(s->warmer, NULL);
    retro_kb_release(s->kb);   /* under mpirun: the other ranks return */
    retro_batch_free(s->batch);
    retro_model_free(s->model);
    retro_kb_close(s->kb);
    pthread_mutex_destroy(&s->engine);
    free(s);
    return CLI_OK;
}
