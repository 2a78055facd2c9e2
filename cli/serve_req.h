/*
 * serve_req.h - the bodies and paths of retro serve's requests, parsed and
 * checked: what the server (cli/cmd_serve.c) and its fuzz harness
 * (tests/fuzz/fuzz_serve.c) share. Nothing here calls the engine or HTTP.
 * Every parser returns RTR_OK, or RTR_E_INVALID with a one-line message
 * (rtr_errdetail) that the server answers with 400; strings it hands back
 * are borrowed from the request's JSON unless said otherwise.
 */
#ifndef RTR_SERVE_REQ_H
#define RTR_SERVE_REQ_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "include/retro.h"

#define SERVE_MAX_EXCLUDE 256
#define SERVE_MAX_STOP 16
#define SERVE_MAX_DOCS 4096

/* POST /v1/search: {"query", "k", "mode", "continuation", "exclude_docs"} */
typedef struct serve_search {
    const char *query;
    size_t len;
    uint32_t k;                               /* 1..4096, default 5 */
    int mode;                                 /* RETRO_SEARCH_*: "mode": "vector", "lexical" or "hybrid" */
    int continuation;
    uint64_t exclude[SERVE_MAX_EXCLUDE];
    size_t n_exclude;
} serve_search;
int serve_parse_search(const json_t *req, serve_search *out);

/* POST /v1/completions and /v1/chat/completions (chat: "messages" turned
 * into a prompt by serve_chat_prompt, and "\nUser:" added to the stops). */
typedef struct serve_completion {
    char *prompt;                             /* owned */
    int max_tokens;                           /* 1..100000, default 16 */
    float temperature, top_p;                 /* 0..100 (default 1), (0, 1] (default 1) */
    int top_k;                                /* >= 0, default 40 */
    uint64_t seed;                            /* default 1 */
    char *stop[SERVE_MAX_STOP];               /* owned, non-empty */
    int n_stop;
    int stream;
    int ignore_eos;                           /* as llama.cpp's server: never end the document */
    int logprobs;                             /* report each token's log probability */
    int top_logprobs;                         /* ... and this many alternatives: completions "logprobs": 0..5,
                                               * chat "logprobs": true with "top_logprobs": 0..20 */
} serve_completion;
int serve_parse_completion(const json_t *req, int chat, serve_completion *out);
void serve_completion_free(serve_completion *c);   /* the strings; NULL-safe */

/* The chat template (docs/server.md): a system message, a blank line, then
 * "User: ..." and "Assistant: ..." lines, ending "Assistant:". A fresh
 * string (free), or NULL with RTR_E_INVALID set. */
char *serve_chat_prompt(const json_t *messages);

/* POST /v1/embeddings: {"input": string or [strings], "encoding_format"} */
typedef struct serve_embed {
    const char **texts;                       /* owned array, borrowed strings */
    size_t *lens;                             /* owned */
    size_t n;                                 /* 1..2048 */
    int base64;
} serve_embed;
int serve_parse_embeddings(const json_t *req, serve_embed *out);
void serve_embed_free(serve_embed *e);

/* POST /v1/ask: {"question", "passages" (1..16, default 3), "quotes" (0..16, default 2), "max_tokens"
 * (1..4096, default 64), "temperature" (0..100, default 0)} */
typedef struct serve_ask {
    const char *question;
    uint32_t passages, quotes;
    int max_tokens;
    float temperature;
} serve_ask;
int serve_parse_ask(const json_t *req, serve_ask *out);

/* POST /v1/documents: {"name", "text"}, or {"documents": [{"name", "text"}, ...]} */
typedef struct serve_docs {
    retro_text *docs;                         /* owned array, borrowed strings */
    size_t n;                                 /* 1..SERVE_MAX_DOCS */
} serve_docs;
int serve_parse_documents(const json_t *req, serve_docs *out);
void serve_docs_free(serve_docs *d);

/* The id in a path "/v1/documents/ID": decimal, 1..2^63-1, nothing after it. */
int serve_parse_doc_id(const char *path, uint64_t *id);
/* GET /v1/documents?after=ID&limit=N: either may be NULL (after 0, limit 100; limit 1..1000). */
int serve_parse_page(const char *after, const char *limit, uint64_t *after_out, size_t *limit_out);

#endif
