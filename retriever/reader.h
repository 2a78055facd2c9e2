/*
 * reader.h - a reader: any OpenAI-compatible server (llama.cpp's server,
 * ollama, another `retro serve`) that writes the answer to a question from
 * the passages retrieval found, in place of the local model (`retro ask
 * --reader URL`). One request over libcurl, JSON through jansson.
 *
 *     rtr_reader_opts o = {.url = "http://127.0.0.1:8080", .max_tokens = 64};
 *     rtr_reader_passage p[] = {{chunk_text, continuation_text}};
 *     rtr_reader_reply r;
 *     if (rtr_reader_ask(&o, "Who keeps the lighthouse?", p, 1, &r) == RTR_OK) puts(r.text);
 *     rtr_reader_reply_free(&r);
 *
 * The request (the text is the same for both endpoints):
 *
 *   POST {url}/v1/chat/completions                       (default)
 *   {"model": M, "messages": [{"role": "system", "content": RTR_READER_SYSTEM},
 *                             {"role": "user", "content": USER}],
 *    "max_tokens": N, "temperature": T, "stream": false}
 *   POST {url}/v1/completions                            (o.completions)
 *   {"model": M, "prompt": RTR_READER_SYSTEM "\n\n" USER "\nAnswer:", ...}
 *
 *   USER = "Passages:\n\n[1] TEXT1\n\n[2] TEXT2\n\nQuestion: QUESTION"
 *
 * where TEXTi is passage i's text and continuation, white space at its end
 * removed.
 *
 * M is o.model, else the first "id" that GET {url}/v1/models lists, else
 * "default". "Authorization: Bearer KEY" goes with both when o.api_key is set.
 * The answer is choices[0].message.content (chat) or choices[0].text
 * (completions), exactly as the server wrote it.
 *
 * Limits: o.timeout_ms (default 120 s) for the whole request, at most 10 s to
 * connect and 10 s for the model list; no retries, no redirects; response
 * bodies over RTR_READER_MAX_BODY are refused. Invalid UTF-8 in the passages
 * or the question is replaced by U+FFFD before it is sent.
 *
 * Errors: every failure of the server or the network is RTR_E_NET with a
 * one-line detail that starts with "reader " and the endpoint URL
 * (user:password@ removed): cannot connect, timed out, HTTP status (with the
 * server's error.message when its body is JSON that has one), or what is
 * wrong with the response. RTR_E_INVALID for bad options, RTR_E_NOMEM.
 */
#ifndef RTR_READER_H
#define RTR_READER_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define RTR_READER_MAX_BODY ((size_t)4 << 20)   /* response bytes */
#define RTR_READER_SYSTEM                                                                           \
    "Answer the question using only the numbered passages. Cite the passages you use by number, " \
    "like [1]. If the passages do not hold the answer, say so."

/* A retrieved passage: a chunk's text and, after it, its continuation. */
typedef struct rtr_reader_passage {
    const char *text;         /* NUL-terminated */
    const char *continuation; /* NUL-terminated; NULL: none */
} rtr_reader_passage;

typedef struct rtr_reader_opts {
    const char *url;          /* the server's base, http(s)://host[:port][/prefix]; a trailing /v1,
                               * /v1/chat/completions or /v1/completions is accepted */
    const char *model;        /* "model" of the request; NULL: as the file comment says */
    int completions;          /* 1: POST /v1/completions with a prompt; 0: /v1/chat/completions */
    const char *api_key;      /* NULL: no Authorization header; never recorded */
    int max_tokens;           /* 1..100000 */
    float temperature;        /* 0 (greedy) .. 100 */
    uint32_t timeout_ms;      /* the whole request; 0: 120000 */
} rtr_reader_opts;

typedef struct rtr_reader_reply {
    char *text;               /* the answer, NUL-terminated (owned) */
    size_t len;
    char *model;              /* the response's "model" if it is a string, else NULL (owned) */
    int64_t prompt_tokens;    /* usage.prompt_tokens; -1 if the response has none */
    int64_t completion_tokens;/* usage.completion_tokens; -1 if none */
    int length;               /* finish_reason was "length": cut at max_tokens */
    double seconds;           /* rtr_reader_ask: the requests' wall time */
} rtr_reader_reply;

/* Sends question and the np passages to the
 * reader o describes and fills *out (zeroed first; rtr_reader_reply_free it,
 * also after a failure). Returns RTR_OK, RTR_E_NET, RTR_E_INVALID,
 * RTR_E_NOMEM. Blocks up to about o->timeout_ms + 20 s. Thread-safe (one
 * connection a call). */
int rtr_reader_ask(const rtr_reader_opts *o, const char *question, const rtr_reader_passage *p, size_t np,
                   rtr_reader_reply *out);

/* The JSON body rtr_reader_ask sends, for model, appended to *body.
 * RTR_E_NOMEM. */
int rtr_reader_request(const rtr_reader_opts *o, const char *model, const char *question, const rtr_reader_passage *p,
                       size_t np, rtr_buf *body);

/* Reads a response as rtr_reader_ask does (for tests and fuzzing: nothing is
 * sent): status is its HTTP status, body[0..len) its body, endpoint names it in
 * errors, completions picks choices[0].text over choices[0].message.content.
 * Fills *out (zeroed first; rtr_reader_reply_free it, also after a failure).
 * RTR_E_NET (a status outside 2xx, or a body that is not a valid response),
 * RTR_E_NOMEM. */
int rtr_reader_parse(const char *endpoint, int completions, long status, const uint8_t *body, size_t len,
                     rtr_reader_reply *out);

/* The first data[].id of a GET /v1/models body into *id (owned, rtr_free).
 * RTR_E_NET if there is none, RTR_E_NOMEM. */
int rtr_reader_parse_models(const uint8_t *body, size_t len, char **id);

/* A copy of url without "user:password@" (for labels and messages; owned,
 * rtr_free); NULL: out of memory. url need not be valid. */
char *rtr_reader_url_shown(const char *url);

void rtr_reader_reply_free(rtr_reader_reply *r);   /* NULL-safe */

#endif
