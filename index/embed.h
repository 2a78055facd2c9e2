/*
 * embed.h - embedders: text -> L2-normalised float vectors.
 *
 * An embedder turns chunk texts into fixed-size vectors for the FAISS
 * indexes. Implementations plug in through rtr_embedder_ops, one "kind" each:
 *   hash   (index/embed_hash.c) lexical, TF-IDF-weighted hashed unigrams and
 *          bigrams through a fixed signed random projection; no weights needed
 *   http   (index/embed_http.c) an OpenAI-compatible /v1/embeddings server
 *   later: a frozen transformer encoder (safetensors weights, in index/ on
 *          lib/: index/ never includes model/), a third kind: its constructor
 *          and a branch in rtr_embedder_from_desc.
 *
 *     rtr_embedder *e;
 *     rtr_hash_embedder_new(&opts, &e);
 *     float *v = rtr_malloc(n * e->dim * sizeof(float));
 *     rtr_embedder_embed(e, texts, n, v);   // row i = texts[i], |row| = 1 (or 0 if empty)
 *     rtr_embedder_free(e);
 *
 * A knowledge base records rtr_embedder_describe() in its manifest; a query
 * with an embedder whose description differs is refused (RTR_E_MISMATCH).
 * Secrets (API keys) are never part of the description.
 *
 * Thread safety: embed() may be called from one thread at a time per
 * embedder unless the implementation says otherwise.
 */
#ifndef RTR_EMBED_H
#define RTR_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

typedef struct rtr_text {
    const char *data;   /* UTF-8 (any bytes are accepted) */
    size_t len;
} rtr_text;

typedef struct rtr_embedder rtr_embedder;

typedef struct rtr_embedder_ops {
    /* Embeds n texts into out (n x dim, row-major), rows L2-normalised.
     * While dim is 0 (not yet known), out must be NULL: the call only
     * learns dim (see the http embedder). */
    int (*embed)(rtr_embedder *e, const rtr_text *texts, size_t n, float *out);
    /* Appends the JSON object describing kind and settings (no secrets). */
    int (*describe)(const rtr_embedder *e, rtr_buf *json);
    void (*destroy)(rtr_embedder *e);
} rtr_embedder_ops;

struct rtr_embedder {
    const rtr_embedder_ops *ops;
    uint32_t dim;            /* vector size; 0 until known (http: after the first call) */
    uint32_t max_batch;      /* texts per embed() call the implementation prefers */
    int thread_safe;         /* embed() may run on several threads at once */
    void *impl;
};

int rtr_embedder_embed(rtr_embedder *e, const rtr_text *texts, size_t n, float *out);
/* The same split between up to threads OpenMP threads when e is thread-safe and n is at least
 * min_n (else on this thread), OpenBLAS held at one thread meanwhile (a projection's product runs
 * on each, lib/blas.h). Not from inside a parallel region. */
int rtr_embedder_embed_threads(rtr_embedder *e, const rtr_text *texts, size_t n, float *out, int threads, size_t min_n);
int rtr_embedder_describe(const rtr_embedder *e, rtr_buf *json);
/* The description as compact JSON with sorted keys, the form a manifest
 * records and compares; a fresh string (free()), NULL when out of memory. */
char *rtr_embedder_canonical(const rtr_embedder *e);
void rtr_embedder_free(rtr_embedder *e);   /* NULL-safe */

/* --- creating embedders from a recorded description ---------------------------- */
/* Makes the embedder that a description (JSON, as rtr_embedder_describe wrote
 * it) names, for the knowledge base in kb_dir (where it keeps its files). The
 * "kind" field chooses, from a fixed list: "hash" (rtr_hash_embedder_from_desc)
 * and "http" (rtr_http_embedder_from_desc); a new embedder adds its kind there.
 * Returns RTR_OK, RTR_E_CORRUPT (no kind, or a bad description), RTR_E_INVALID
 * (a kind this build does not have), or what the kind's constructor returns. */
int rtr_embedder_from_desc(const char *kb_dir, const char *desc_json, rtr_embedder **out);

/* "<prefix>-<sum as 16 hex digits>.bin" (fresh string): the files in KB/index/ that an
 * embedder's description names by their checksum. */
char *rtr_embedder_file_name(const char *prefix, uint64_t sum);
/* The same file's path: KB_DIR/index/<name> (fresh string; NULL when out of memory). */
char *rtr_embedder_file_path(const char *kb_dir, const char *prefix, uint64_t sum);

/* L2-normalises each of n rows of dim floats in place (zero rows stay zero). */
void rtr_l2_normalize(float *v, size_t n, uint32_t dim);

/* --- http: OpenAI-compatible /v1/embeddings client (libcurl) ------------------ */
typedef struct rtr_http_embedder_opts {
    const char *url;          /* base URL, e.g. http://127.0.0.1:8080 (POSTs to URL/v1/embeddings) */
    const char *model;        /* "model" field of the request (may be NULL) */
    const char *api_key;      /* sent as "Authorization: Bearer KEY" if set; never recorded */
    uint32_t dim;             /* expected dimension; 0 = take it from the first response */
    uint32_t batch;           /* texts per request (default 64) */
    uint32_t timeout_ms;      /* per request (default 30000) */
    uint32_t retries;         /* retries on 429, 5xx and connection failures (default 4) */
    uint32_t backoff_ms;      /* first retry delay, doubled each retry (default 250) */
} rtr_http_embedder_opts;

int rtr_http_embedder_new(const rtr_http_embedder_opts *o, rtr_embedder **out);
/* Reads a /v1/embeddings response body for m inputs (m <= the batch) as an
 * http embedder e does after a request (for tests and fuzzing: nothing is
 * sent): out (m x *dim, may be NULL) gets the rows; *dim is the expected
 * dimension (0: any, then set). RTR_E_NET naming the endpoint for a body that
 * is not a valid response, RTR_E_NOMEM. */
int rtr_http_embedder_parse(rtr_embedder *e, const uint8_t *body, size_t len, size_t m, float *out, uint32_t *dim);
/* The http embedder a description {"kind":"http","url":...,"model":...,"dim":N}
 * names; the API key comes from $RETRO_EMBED_API_KEY (never recorded).
 * RTR_E_CORRUPT for a bad description. */
int rtr_http_embedder_from_desc(const char *kb_dir, const char *desc_json, rtr_embedder **out);

#endif
