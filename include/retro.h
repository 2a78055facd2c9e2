/*
 * retro.h - retro's C API: knowledge bases over your documents, search with
 * sources, RETRO language models that read their neighbours, generation with
 * live retrieval, and bits-per-byte evaluation with retrieval on and off.
 *
 * Tutorial (error handling shortened; every call returns RETRO_OK or a
 * negative RETRO_E_* status, and retro_errdetail() says what went wrong):
 *
 *     #include <retro.h>
 *
 *     retro_kb *kb;
 *     retro_kb_open("notes.kb", RETRO_KB_WRITE | RETRO_KB_CREATE, NULL, &kb);
 *     const char *paths[] = {"/home/me/notes"};
 *     retro_kb_add(kb, paths, 1, NULL);          // tokenize, chunk, store (LMDB)
 *     retro_kb_build(kb, NULL);                  // embed new chunks into the vector index
 *
 *     retro_search_opts so = {.k = 5};
 *     retro_results hits;
 *     if (retro_search(kb, "what did we decide", 18, &so, &hits) != RETRO_OK)
 *         fprintf(stderr, "%s\n", retro_errdetail());
 *     for (size_t i = 0; i < hits.n; i++)
 *         printf("%s bytes %llu-%llu: %s\n", hits.items[i].path, ...);
 *     retro_results_free(&hits);
 *
 *     retro_model *m;
 *     retro_model_load("rtr", NULL, &m);         // a checkpoint from `retro train`
 *     retro_gen_opts go;
 *     retro_gen_opts_default(&go);
 *     go.kb = kb;                                // retrieve every 64 tokens
 *     go.on_text = print_piece;                  // streamed as it is made
 *     retro_gen_result res;
 *     retro_generate(m, "The meeting", 11, &go, &res);
 *     retro_gen_result_free(&res);
 *     retro_model_free(m);
 *     retro_kb_close(kb);
 *
 * Link with `pkg-config --cflags --libs retrolm` (libretrolm.a or .so).
 *
 * Ownership: handles are opaque and freed by their *_free / *_close call
 * (NULL-safe). Results (retro_results, retro_gen_result, retro_answer,
 * retro_eval_result) are filled by the call, owned by the caller and freed
 * with their *_free call; strings in them stay valid until then. Strings the
 * library passes to a callback are valid during the call only.
 *
 * Threads: a model handle is used by one thread at a time. A knowledge
 * base handle may be shared by threads: its writers (add, add_texts,
 * remove, remove_docs, build) run one at a time; its readers (search,
 * embed, stats, docs, doc_get, and the retrievals of generations and
 * answers) may be called from any number of threads at once, beside a
 * writer and without waiting for it (they take turns only inside the
 * vector index and the embedder, a search at a time). Evaluation and
 * training read it without those turns: keep them from overlapping other
 * readers of the same handle. A search started before a build commits
 * finishes on the old index; the calls after it see the new one. Readers in
 * other processes keep working while one process writes a knowledge base;
 * only one process may hold it open for writing (RETRO_E_BUSY).
 */
#ifndef RETRO_H
#define RETRO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RETRO_VERSION_MAJOR 0
#define RETRO_VERSION_MINOR 1
#define RETRO_VERSION_PATCH 0

/* --- status ------------------------------------------------------------------ */
enum retro_status {
    RETRO_OK = 0,
    RETRO_E_NOMEM = -1,        /* an allocation failed */
    RETRO_E_IO = -2,           /* read/write/open failed */
    RETRO_E_CORRUPT = -3,      /* a file is truncated or its contents are invalid */
    RETRO_E_INVALID = -4,      /* bad argument or bad input */
    RETRO_E_NOTFOUND = -5,     /* no such knowledge base, model, document or file */
    RETRO_E_EXISTS = -6,       /* something is already there */
    RETRO_E_MISMATCH = -7,     /* tokenizer or embedder differs from the one recorded */
    RETRO_E_LMDB = -8,         /* the chunk store (LMDB) failed */
    RETRO_E_FAISS = -9,        /* the vector index (FAISS) failed */
    RETRO_E_NET = -10,         /* a network call (an embeddings server) failed */
    RETRO_E_VERSION = -11,     /* a file written by a newer version */
    RETRO_E_BUSY = -12,        /* another process writes this knowledge base */
    RETRO_E_FULL = -13,        /* disk full (the last batch was rolled back) */
    RETRO_E_INTERRUPTED = -14  /* stopped by a signal or a callback */
};

/* Static text for a status code; never NULL. */
const char *retro_strerror(int status);
/* The last failure on this thread, one line naming the file and the reason
 * ("" if none); valid until the next failing call on this thread. */
const char *retro_errdetail(void);
/* "0.1.0" */
const char *retro_version(void);
/* The tokenizer new knowledge bases get: $RETRO_DEFAULT_TOKENIZER, else the
 * installed (PREFIX/share/retro) or bundled datasets/tokenizer.rtok. */
const char *retro_default_tokenizer(void);

/* --- knowledge bases ---------------------------------------------------------- */
typedef struct retro_kb retro_kb;

enum { RETRO_KB_WRITE = 1, RETRO_KB_CREATE = 2 };

/* Opens the knowledge base in directory dir; with RETRO_KB_CREATE a missing
 * or empty dir becomes a new one, chunked with tokenizer (a .rtok file; NULL:
 * retro's bundled tokenizer). RETRO_KB_WRITE takes the writer lock.
 * Returns RETRO_E_NOTFOUND (no knowledge base, or the tokenizer file),
 * RETRO_E_INVALID (dir is something else), RETRO_E_BUSY (another writer),
 * RETRO_E_CORRUPT, RETRO_E_VERSION, RETRO_E_LMDB, RETRO_E_IO, RETRO_E_NOMEM.
 * A knowledge base of partitions (`retro index add --partitions`, docs/scale.md)
 * opens without flags only: retro_search (in a process of its own, not under
 * mpirun) and retro_train read every partition; the other calls on it return
 * RETRO_E_INVALID naming its partitions. */
int retro_kb_open(const char *dir, unsigned flags, const char *tokenizer, retro_kb **out);
void retro_kb_close(retro_kb *kb);

typedef struct retro_add_report {
    uint64_t files;                            /* candidate files found */
    uint64_t files_new, files_changed, files_unchanged, files_skipped;
    uint64_t docs_added, docs_removed;
    uint64_t chunks_added, tokens_added;
    double seconds;
} retro_add_report;

/* Adds (or updates) the documents in files and folders paths[0..n): plain
 * text, Markdown, reStructuredText, HTML, .jsonl and .json; unchanged files
 * are skipped, changed ones replaced. Crash-safe: a rerun finishes the work.
 * rep may be NULL. Needs RETRO_KB_WRITE. Returns RETRO_E_INVALID (not opened
 * for writing), RETRO_E_FULL, RETRO_E_LMDB, RETRO_E_IO, RETRO_E_NOMEM. */
int retro_kb_add(retro_kb *kb, const char *const *paths, size_t n, retro_add_report *rep);

/* A document given as text rather than a file. */
typedef struct retro_text {
    const char *name;   /* recorded as its path: 1..4096 bytes of UTF-8, not starting with '/';
                         * the extension picks the format (.html, .jsonl, .json; else text) */
    const char *text;
    size_t len;
} retro_text;

/* Adds documents from memory, at most 4096 a call, in one transaction, as
 * retro_kb_add adds files: a name added before is replaced by its new text
 * (the same text is left as it is). ids (may be NULL) gets, for each text,
 * the id of its first document (0 if it was skipped: empty, binary). rep may
 * be NULL. Needs RETRO_KB_WRITE. RETRO_E_INVALID (a bad or repeated name),
 * RETRO_E_FULL, RETRO_E_LMDB, RETRO_E_NOMEM. */
int retro_kb_add_texts(retro_kb *kb, const retro_text *docs, size_t n, uint64_t *ids, retro_add_report *rep);

/* Deletes every document from paths[0..n) (files, folders, or names recorded
 * for standard input). *docs_removed (may be NULL) counts them.
 * RETRO_E_NOTFOUND if a path matches nothing (then nothing is deleted),
 * RETRO_E_INVALID, RETRO_E_LMDB, RETRO_E_NOMEM. */
int retro_kb_remove(retro_kb *kb, const char *const *paths, size_t n, uint64_t *docs_removed);

/* Deletes the documents ids[0..n) with their sources: every document read
 * from the same file or name goes too (a .jsonl file's other records).
 * RETRO_E_NOTFOUND if an id is not a document (then nothing is deleted),
 * RETRO_E_LMDB, RETRO_E_NOMEM. */
int retro_kb_remove_docs(retro_kb *kb, const uint64_t *ids, size_t n, uint64_t *docs_removed);

typedef struct retro_doc_info {
    uint64_t id;
    const char *path;          /* its file, or the name it was added under */
    const char *title;         /* "" if none */
    const char *record;        /* the record's id within a .jsonl/.json file; "" if none */
    uint64_t bytes, tokens;
    uint64_t first_chunk;
    uint32_t chunks;
    int64_t mtime_ns;          /* the file's modification time, or when the text was added */
} retro_doc_info;

/* Up to limit (1..10000) documents with ids above after, in id order: *docs
 * (*n entries) is the caller's, freed with retro_docs_free. *n < limit:
 * there are no more. RETRO_E_INVALID, RETRO_E_LMDB, RETRO_E_NOMEM. */
int retro_kb_docs(retro_kb *kb, uint64_t after, size_t limit, retro_doc_info **docs, size_t *n);
/* Document id (*doc, freed with retro_docs_free(*doc, 1)), and its text when
 * text is not NULL (*text, *len bytes and a NUL: retro_free).
 * RETRO_E_NOTFOUND, RETRO_E_CORRUPT, RETRO_E_LMDB, RETRO_E_NOMEM. */
int retro_kb_doc_get(retro_kb *kb, uint64_t id, retro_doc_info **doc, char **text, size_t *len);
/* Frees docs[0..n), their strings and the array (NULL-safe). */
void retro_docs_free(retro_doc_info *docs, size_t n);

typedef struct retro_build_report {
    uint64_t embedded;     /* chunks embedded this call */
    uint64_t vectors;      /* vectors in the index now */
    char factory[96];      /* the FAISS index type */
    double seconds;
} retro_build_report;

/* Embeds the chunks added since the last build into the vector index (the
 * first build chooses the embedder and index type). rep may be NULL. Needs
 * RETRO_KB_WRITE. RETRO_E_INVALID (no chunks), RETRO_E_FAISS, RETRO_E_IO,
 * RETRO_E_FULL, RETRO_E_NOMEM. */
int retro_kb_build(retro_kb *kb, retro_build_report *rep);

typedef struct retro_kb_stats {
    uint64_t documents, chunks, tokens, bytes;   /* bytes of stored text */
    uint64_t files, skipped;                     /* source files, and those skipped */
    uint64_t vectors;                            /* indexed (0 before the first build) */
} retro_kb_stats;

/* RETRO_E_LMDB, RETRO_E_CORRUPT. */
int retro_kb_stats_get(retro_kb *kb, retro_kb_stats *out);

/* Maps what searches read (the vector index's mapped lists, the store's file) into the process ahead
 * of them, so that the first searches of each part of a large knowledge base do not each take the
 * page faults of a first touch (at a billion tokens, hybrid search's median 5.2 -> 4.2 ms and p99
 * 38 -> 29 ms in a fresh process; docs/benchmarks.md). For a process that will search a while (a
 * server): call it once, from a thread of its own if searches should not wait: they run meanwhile,
 * except while the index's lists are mapped (a fraction of a second when they are in the page
 * cache). Pages not in the page cache are read from disk; a knowledge base larger than half of
 * memory is left as it is. *bytes (may be NULL): what was mapped.
 * The knowledge base's search errors (no index built yet: RETRO_E_NOTFOUND). */
int retro_kb_warm(retro_kb *kb, uint64_t *bytes);

/* A job of several ranks (started by mpirun, lib/comm.h) searching a knowledge base of partitions:
 * rank 0 calls retro_search (from any thread, one search at a time), every other rank calls
 * retro_kb_follow, which takes part in each of those searches with its own partitions until rank 0
 * calls retro_kb_release; then it returns RETRO_OK. A plain knowledge base's followers return at
 * once (rank 0 searches it alone). retro_kb_release on another rank, or outside such a job: RETRO_OK,
 * nothing done. RETRO_E_INVALID from retro_kb_follow on rank 0. */
int retro_kb_follow(retro_kb *kb);
int retro_kb_release(retro_kb *kb);

/* --- search ------------------------------------------------------------------- */
/* A chunk of a document, with where it came from. */
typedef struct retro_source {
    uint64_t chunk_id, doc_id;
    uint32_t seq;                     /* the chunk's number within its document */
    uint32_t query_chunk;             /* search: which 64-token chunk of the query found it */
    const char *path;                 /* the source file (or the name given for standard input) */
    const char *title;                /* "" if none */
    uint64_t byte_start, byte_end;    /* the chunk's span in the document's text */
    float distance;                   /* squared L2 between unit vectors (vector side; NAN if it did not find it) */
    float score;                      /* what the ranking used: the cosine similarity 1 - distance / 2
                                       * (vector), BM25 (lexical) or the fused score (hybrid) */
    const char *text;                 /* the chunk's text */
    const char *continuation;         /* the next chunk's text; NULL if none or not asked for */
    unsigned found_by;                /* RETRO_FOUND_VECTOR | RETRO_FOUND_LEXICAL: which side found it */
    uint32_t vector_rank, lexical_rank;   /* 1 = best on that side; 0: that side did not find it (hybrid:
                                           * the rank among all the candidates by that side's score, 0
                                           * where it is 0) */
    float vector_score, lexical_score;    /* cosine similarity, BM25; NAN where not found (hybrid: both
                                           * for every result, the vector score in the embedder's full
                                           * space, before any projection; docs/search.md) */
} retro_source;

enum { RETRO_FOUND_VECTOR = 1, RETRO_FOUND_LEXICAL = 2 };

typedef struct retro_results {
    retro_source *items;              /* best first */
    size_t n;
    uint32_t query_chunks, query_tokens;   /* search: what the query was cut into */
} retro_results;

/* Which side finds the results: the vector index (the embedder's neighbours), the lexical index (BM25
 * over the chunks' words), or both, every candidate scored by both sides and fused by reciprocal rank
 * (docs/search.md). */
enum { RETRO_SEARCH_DEFAULT = 0, RETRO_SEARCH_VECTOR, RETRO_SEARCH_LEXICAL, RETRO_SEARCH_HYBRID };

/* "vector", "lexical" or "hybrid" for RETRO_SEARCH_VECTOR, _LEXICAL, _HYBRID; NULL for another value. */
const char *retro_search_mode_name(int mode);
/* The RETRO_SEARCH_* that name names ("vector", "lexical", "hybrid"); -1 for another name or NULL. */
int retro_search_mode_parse(const char *name);

typedef struct retro_search_opts {
    uint32_t k;                       /* results, 1..4096 (0: 10) */
    int mode;                         /* RETRO_SEARCH_*; DEFAULT: the knowledge base's retriever setting */
    int continuation;                 /* fetch each result's continuation */
    const uint64_t *exclude_docs;     /* documents never returned */
    size_t n_exclude;
    uint32_t nprobe;                  /* inverted-file indexes: lists visited (0: as built) */
    int rerank;                       /* exact indexes of 64 Ki vectors or more: candidates of the
                                       * 4-bit scan re-ranked exactly (0: as built; < 0: exact search) */
} retro_search_opts;

/* The chunks nearest to query (len bytes), best first; a long query is cut
 * into 64-token chunks whose results are merged. o may be NULL.
 * RETRO_E_NOTFOUND (no index: build it first), RETRO_E_INVALID (empty
 * query, k out of range), RETRO_E_NET (an embeddings server), RETRO_E_LMDB,
 * RETRO_E_FAISS, RETRO_E_NOMEM. */
int retro_search(retro_kb *kb, const char *query, size_t len, const retro_search_opts *o, retro_results *out);
void retro_results_free(retro_results *r);

/* The knowledge base's embedder on n texts: *vectors (n x *dim floats, each row
 * unit length or zero for an empty text) is the caller's, freed with
 * retro_free. RETRO_E_NOTFOUND (no index yet: the embedder is chosen by the
 * first build), RETRO_E_INVALID (n is 0 or over 2048), RETRO_E_NET (an
 * embeddings server), RETRO_E_NOMEM. */
int retro_kb_embed(retro_kb *kb, const char *const *texts, const size_t *lens, size_t n, float **vectors,
                   uint32_t *dim);

/* --- models ------------------------------------------------------------------- */
typedef struct retro_model retro_model;

typedef struct retro_model_opts {
    int max_batch;            /* sequences per forward pass (0: 8, what evaluation uses) */
    const char *tokenizer;    /* a .rtok file if the model directory has none */
} retro_model_opts;

/* Loads the checkpoint directory dir written by `retro train`. o may be NULL.
 * RETRO_E_NOTFOUND (no model, no tokenizer), RETRO_E_CORRUPT,
 * RETRO_E_VERSION, RETRO_E_MISMATCH (tokenizer), RETRO_E_NOMEM. */
int retro_model_load(const char *dir, const retro_model_opts *o, retro_model **out);
void retro_model_free(retro_model *m);

typedef struct retro_model_info {
    int retrieval;            /* 1: a RETRO model (chunked cross-attention); 0: a baseline */
    int context;              /* tokens */
    int vocab, layers, width, neighbours;
    uint32_t align;           /* 0: the paper's neighbours; else aligned at runs of this length */
    size_t params;
    const char *tokenizer;    /* the tokenizer's hash; valid while m lives */
    int retriever;            /* RETRO_SEARCH_VECTOR (the paper's), _LEXICAL or _HYBRID: where the
                               * model's neighbours come from, as it was trained */
} retro_model_info;

void retro_model_get_info(const retro_model *m, retro_model_info *out);

/* Token ids of text with the model's tokenizer: *tokens (*n of them) is the
 * caller's, freed with retro_free. RETRO_E_NOMEM. */
int retro_tokenize(const retro_model *m, const char *text, size_t len, int32_t **tokens, size_t *n);
/* The text of tokens[0..n) (ids outside the vocabulary: RETRO_E_INVALID):
 * *text (NUL-terminated, *len bytes) is the caller's, freed with retro_free. */
int retro_detokenize(const retro_model *m, const int32_t *tokens, size_t n, char **text, size_t *len);
/* Frees what retro_tokenize and retro_detokenize return (NULL-safe). */
void retro_free(void *p);

/* --- generation ----------------------------------------------------------------- */
/* Receives generated text as soon as it is final (valid UTF-8, len >= 1).
 * A non-zero return stops the generation (stopped = "cancel"). */
typedef int (*retro_text_fn)(void *ctx, const char *text, size_t len);

/* One neighbour of a live retrieval. */
typedef struct retro_neighbour {
    int64_t chunk_id;                 /* -1: none */
    uint64_t doc_id;
    const char *path;                 /* path_len bytes, not NUL-terminated */
    uint32_t path_len;
    uint64_t byte_start, byte_end;
    float distance, score;
    int withheld;                     /* below min_score: not given to the model */
    const int32_t *tokens;            /* (128) the chunk and its continuation, -1 padded */
} retro_neighbour;

/* Called after each retrieval for a completed 64-token chunk (chunk is its
 * index in the token stream) with its k neighbours. */
typedef void (*retro_retrieval_fn)(void *ctx, int64_t chunk, const retro_neighbour *nbrs, uint32_t k);

typedef struct retro_gen_opts {
    int max_tokens;                   /* default 128 */
    float temperature;                /* 0: greedy; default 0.8 */
    int top_k;                        /* 0: all; default 40 */
    float top_p;                      /* default 0.95 */
    uint64_t seed;                    /* default 1 */
    const char *const *stop;          /* the text ends before the first of these (at most 16) */
    int n_stop;
    retro_kb *kb;                     /* a RETRO model retrieves from it; NULL: no retrieval */
    float min_score;                  /* withhold neighbours scoring below it (-INFINITY: none, the default) */
    retro_text_fn on_text;            /* may be NULL */
    retro_retrieval_fn on_retrieval;  /* may be NULL */
    void *ctx;                        /* passed to both callbacks */
    const volatile int *cancel;       /* stop when it becomes non-zero; may be NULL */
    int ignore_end;                   /* never sample the end-of-document token (runs to max_tokens or a stop) */
    int logprobs;                     /* 0: none; 1..20: each token's log probability and that many likeliest */
} retro_gen_opts;

/* A generated token's log probability (natural log, of the model's distribution before temperature and
 * truncation), and the likeliest tokens at its place with theirs, best first. */
typedef struct retro_token_logprob {
    int32_t token;
    float logprob;
    uint64_t offset;                  /* where its bytes start in the generated text */
    int n_top;
    int32_t top[20];
    float top_logprob[20];
} retro_token_logprob;

void retro_gen_opts_default(retro_gen_opts *o);

typedef struct retro_gen_result {
    char *text;                       /* the generated text, without the stop sequence */
    size_t len;
    int prompt_tokens, tokens;
    const char *stopped;              /* "length", "stop", "end" (end of document) or "cancel" */
    int retrieval;                    /* neighbours were retrieved */
    int64_t chunks_retrieved;
    double tokens_per_s;              /* after the prompt */
    double retrieval_s, encode_s, total_s;
    retro_token_logprob *logprobs;    /* with opts.logprobs: the tokens that start inside text */
    size_t n_logprobs;
} retro_gen_result;

/* Continues prompt (len bytes; empty: a new document). A RETRO model with
 * o->kb retrieves the neighbours of every completed 64-token chunk (those of
 * the prompt in one batch) with the retriever and alignment it was trained
 * with; its tokenizer must be the knowledge base's.
 * RETRO_E_INVALID (a RETRO model without kb is allowed: no retrieval; bad
 * options), RETRO_E_MISMATCH (tokenizers), RETRO_E_NOTFOUND (no index, or
 * no lexical index for a model whose retriever is lexical or hybrid),
 * RETRO_E_NOMEM, and the search's errors. o may be NULL. */
int retro_generate(retro_model *m, const char *prompt, size_t len, const retro_gen_opts *o, retro_gen_result *out);
void retro_gen_result_free(retro_gen_result *r);

/* --- generations decoded together (a server's slots) --------------------------- */
/* Up to `slots` generations of one model decoded together: each step feeds
 * one token to every running generation in one pass of the decoder, whose
 * matrix products take all their rows at once (continuous batching: a
 * generation joins or leaves between steps). Each gives retro_generate's
 * text for the same options (to rounding; alone in the batch, exactly). */
typedef struct retro_batch retro_batch;
/* 1..256 slots. RETRO_E_INVALID, RETRO_E_NOMEM. */
int retro_batch_new(retro_model *m, int slots, retro_batch **out);
void retro_batch_free(retro_batch *b);   /* NULL-safe; ends what still runs */
/* Starts a generation in a free slot (*slot): tokenizes the prompt, feeds it
 * (with its retrieval) and samples the first token, so a prompt costs the
 * caller's thread its prefill. o and what it points to must stay valid until
 * the slot's result is taken; callbacks run in the thread that calls
 * retro_batch_add and retro_batch_step. RETRO_E_BUSY (every slot taken), and
 * retro_generate's statuses. */
int retro_batch_add(retro_batch *b, const char *prompt, size_t len, const retro_gen_opts *o, int *slot);
/* One token for every running generation. A generation that ends (length,
 * stop, end, cancel, or a failed retrieval) waits in its slot for
 * retro_batch_take. *running (may be NULL) counts those still running.
 * Returns RETRO_OK. */
int retro_batch_step(retro_batch *b, int *running);
/* Takes slot's result once its generation has ended, freeing the slot:
 * RETRO_OK and *out (retro_gen_result_free), or the status the generation
 * failed with. RETRO_E_BUSY while it runs, RETRO_E_INVALID for an empty slot. */
int retro_batch_take(retro_batch *b, int slot, retro_gen_result *out);
/* Generations running now. */
int retro_batch_active(const retro_batch *b);

/* --- answers with sources --------------------------------------------------------- */
typedef struct retro_ask_opts {
    uint32_t passages;                /* chunks retrieved and, as many as fit, put in the prompt (0: 3) */
    uint32_t quotes;                  /* sentences quoted from them (0: 2) */
    int no_retrieval;                 /* a RETRO model does not retrieve while it writes (the passages stay) */
    retro_gen_opts gen;               /* default greedy, 64 tokens; gen.kb is ignored (kb is used) */
    const char *reader_url;           /* an OpenAI-compatible server (its base URL) that writes the answer
                                       * from the passages instead of the model; NULL: the model */
    const char *reader_model;         /* the "model" asked of it; NULL: the first its /v1/models lists */
    int reader_completions;           /* 1: its /v1/completions with a prompt; 0: /v1/chat/completions */
} retro_ask_opts;

void retro_ask_opts_default(retro_ask_opts *o);

/* A sentence of a source that answers the question, quoted as it stands. */
typedef struct retro_quote {
    const char *text;                 /* the sentence (NUL-terminated) */
    size_t source;                    /* index into retro_answer.sources */
    const char *path;                 /* its document's source path (the source's) */
    uint64_t byte_start, byte_end;    /* its span in the document */
    double score;                     /* the question's rare words it holds count most */
} retro_quote;

typedef struct retro_answer {
    retro_quote *quotes;              /* what the sources say, best first (may be none) */
    size_t n_quotes;
    retro_gen_result gen;             /* what the model generates from the passages */
    retro_results sources;            /* the passages found, best first */
    size_t in_prompt;                 /* the first in_prompt of them were given to the model */
    const char *generated_by;         /* who wrote gen.text: "model", or the reader's URL (no user:password@) */
} retro_answer;

/* Searches kb for question; quotes the passages' sentences that best answer
 * it (retriever/quote.h: the question's content words they hold, rare ones
 * counting most); then puts the passages (each chunk and its continuation,
 * cut last first to fit the context) before the question in the prompt and
 * generates from them (a RETRO model also retrieves while it writes). The
 * quotes are what the sources say; the generation is the model's, and a
 * small model's may be fluent nonsense. Errors as retro_search and
 * retro_generate. o may be NULL.
 * With o->reader_url, all the passages, numbered, and the question go to
 * that server instead (retriever/reader.h: POST /v1/chat/completions, or
 * /v1/completions; gen.max_tokens and gen.temperature; the bearer key of
 * $RETRO_READER_KEY if set; 120 s) and gen.text is its answer as it wrote it
 * (gen.tokens from its usage, 0 if none); m may then be NULL. RETRO_E_NET,
 * one line naming the URL, when the server cannot be reached, answers a
 * status outside 2xx (with its error.message) or a malformed response. */
int retro_ask(retro_model *m, retro_kb *kb, const char *question, const retro_ask_opts *o, retro_answer *out);
void retro_answer_free(retro_answer *a);

/* --- training ------------------------------------------------------------------------ */
enum { RETRO_TRAIN_RETRO = 0, RETRO_TRAIN_BASELINE = 1, RETRO_TRAIN_FIT = 2 };
#define RETRO_UNSET (-1)

typedef struct retro_train_plan {
    const char *mode;                 /* "retro", "baseline" or "fit" */
    size_t params;
    int decoder_frozen;               /* RETRO-fitting: only the retrieval path is trained */
    int64_t documents[2], tokens[2];  /* training, validation */
    double val_frac;
    const char *retriever;            /* "vector", "lexical" or "hybrid"; NULL: no retrieval */
} retro_train_plan;

typedef struct retro_train_opts {
    const char *out_dir;              /* checkpoint directory (created): model.safetensors, config.json,
                                       * train.safetensors, tokenizer.rtok, log.jsonl */
    int mode;                         /* RETRO_TRAIN_*; a resumed run keeps the mode it recorded */
    const char *from;                 /* RETRO_TRAIN_FIT: the baseline checkpoint directory */
    int resume;                       /* continue the training checkpoint in out_dir exactly */
    /* The run. RETRO_UNSET: the default, or with resume what the run recorded. */
    int64_t steps;                    /* optimizer steps (1000) */
    int batch;                        /* sequences per step (4) */
    double lr;                        /* peak learning rate (1e-3) */
    int64_t warmup;                   /* warm-up steps (steps / 20) */
    double weight_decay;              /* (0.1) */
    double clip;                      /* gradient norm clip, 0: none (1.0) */
    int64_t seed;                     /* initialisation and data order, >= 0 (1) */
    double val_frac;                  /* share of documents held out (0.05) */
    int64_t eval_every, eval_seqs;    /* steps between validations (100), sequences per validation, 0: all (64) */
    int64_t save_every;               /* steps between checkpoints (200) */
    double self_neighbours;           /* the self-neighbour curriculum's share (0; docs/model.md) */
    int self_anneal, self_shift;      /* (0, 0) */
    int align;                        /* aligned neighbours at runs of this length, 0: the paper's (0) */
    int retriever;                    /* RETRO_SEARCH_*: where the neighbours come from, recorded in the
                                       * model; DEFAULT: the knowledge base's search mode (`retro index
                                       * build --search-mode`), with resume what the run recorded */
    /* A new model (0: the default; docs/model.md). */
    int context, width, layers, heads, mlp, neighbours, enc_layers, enc_width, enc_heads;
    int n_cca;                        /* RETRO_UNSET: the paper's pattern scaled to the depth; else cca[0..n_cca) */
    int cca[64];                      /* 1-based decoder layers with cross-attention */
    int progress;                     /* progress bars on a terminal */
    const volatile int *stop;         /* when it becomes non-zero: checkpoint and return RETRO_E_INTERRUPTED */
    void (*on_start)(void *ctx, const retro_train_plan *plan);   /* before the first step; may be NULL */
    void *ctx;
} retro_train_opts;

void retro_train_opts_default(retro_train_opts *o);   /* a RETRO model, every setting RETRO_UNSET */

typedef struct retro_train_result {
    const char *mode;
    int64_t steps;                    /* the step reached */
    size_t params;
    double train_loss;                /* mean over the last 10 steps */
    double val_loss, val_bpb;         /* the last validation (NaN if none) */
    double tokens_per_s;
} retro_train_result;

/* Trains a baseline, a RETRO model or a RETRO-fitted baseline on the
 * documents of kb (a RETRO model needs kb's index: retro_kb_build) and
 * writes checkpoints to o->out_dir. RETRO_E_INVALID (bad settings, no
 * training documents), RETRO_E_NOTFOUND (no checkpoint to resume, no index,
 * no lexical index for a lexical or hybrid retriever),
 * RETRO_E_MISMATCH (tokenizer), RETRO_E_CORRUPT, RETRO_E_IO, RETRO_E_FULL,
 * RETRO_E_NOMEM, RETRO_E_INTERRUPTED (stopped; the checkpoint is saved). */
int retro_train(retro_kb *kb, const retro_train_opts *o, retro_train_result *out);

/* --- evaluation --------------------------------------------------------------------- */
#define RETRO_EVAL_N_ALPHA 5          /* leakage thresholds: 0, 12.5%, 25%, 50%, 100% */
#define RETRO_EVAL_MAX_RUNS 72

enum { RETRO_EVAL_FILES = 0, RETRO_EVAL_VAL = 1, RETRO_EVAL_TRAIN = 2 };

typedef struct retro_eval_opts {
    int split;                        /* RETRO_EVAL_VAL / _TRAIN: kb's documents; _FILES: files */
    const char *const *files;         /* with RETRO_EVAL_FILES */
    size_t n_files;
    double val_frac;                  /* the split retro train used (0: 0.05) */
    int stride;                       /* window stride, a multiple of 64 (0: half the context) */
    int leak;                         /* neighbours may come from the evaluated document */
    const uint64_t *exclude_docs;     /* never retrieved */
    size_t n_exclude;
    int64_t max_docs;                 /* 0: all */
    const float *min_scores;          /* one run per value (n_min_scores 0: one run reading every neighbour) */
    int n_min_scores;
    void (*on_document)(void *ctx, int64_t documents);   /* progress; may be NULL */
    void *ctx;
} retro_eval_opts;

typedef struct retro_eval_run {
    int model;                        /* index into the models given */
    int retrieval, aligned;
    int retriever;                    /* with retrieval: RETRO_SEARCH_VECTOR, _LEXICAL or _HYBRID, the
                                       * model's (0 without) */
    float min_score;                  /* -INFINITY: every neighbour read */
    int64_t tokens;
    double bytes, loss, perplexity, bpb;
    double read;                      /* share of the retrieved neighbours given to the model (NaN: none) */
    double leak_bpb[RETRO_EVAL_N_ALPHA];   /* bpb over the chunks with overlap <= alpha (NaN: none) */
} retro_eval_run;

typedef struct retro_eval_result {
    int64_t documents, chunks;
    double alpha[RETRO_EVAL_N_ALPHA];
    int64_t alpha_chunks[RETRO_EVAL_N_ALPHA];
    uint32_t align_run;               /* the aligning models' minimum run (0: none aligns) */
    int n_runs;                       /* each RETRO model with retrieval on (per min score), then off */
    retro_eval_run runs[RETRO_EVAL_MAX_RUNS];
} retro_eval_result;

/* Bits per byte of models[0..n) (at most 8, sharing one tokenizer, the
 * knowledge base's) on held-out text, with the RETRO paper's leakage filter
 * (the overlap of each chunk with its 10 nearest neighbours in kb). Each
 * RETRO model reads neighbours found by its recorded retriever and aligned
 * as it was trained; the RETRO models evaluated together must share one
 * retriever, which also finds the leakage filter's neighbours.
 * RETRO_E_INVALID (no documents, bad options), RETRO_E_MISMATCH (tokenizers,
 * retrievers, alignments), RETRO_E_NOTFOUND (no lexical index for a lexical
 * or hybrid retriever), and the search's and the files' errors. */
int retro_eval(retro_model *const *models, int n, retro_kb *kb, const retro_eval_opts *o, retro_eval_result *out);

#ifdef __cplusplus
}
#endif

#endif
