/*
 * store.h - the chunk store: documents, their text and their 64-token chunks
 * in an LMDB environment (a knowledge base's store/ directory).
 *
 * Tutorial:
 *
 *     rtr_store *s;
 *     rtr_store_open("kb/store", RTR_STORE_READONLY, NULL, &s);
 *     rtr_store_txn *t;
 *     rtr_store_read_begin(s, &t);           // a consistent snapshot
 *     rtr_chunk c;
 *     if (rtr_store_get_chunk(t, 42, &c) == RTR_OK) ... c.tokens, c.doc_id ...
 *     rtr_store_txn_end(t);
 *     rtr_store_close(s);
 *
 * Writes go through rtr_store_write(), which runs a callback inside one write
 * transaction and commits it: all of the callback's changes land or none do.
 * When the map is full the transaction is aborted, the map doubled and the
 * callback run again, so a callback must only write through its txn.
 * Readers (other threads or processes) keep working while a writer writes.
 *
 * Threads: any number of threads may hold read transactions of one store
 * while one writes. A transaction ends on the thread that began it. The map
 * (address space, not memory: RTR_STORE_DEFAULT_MAP) is resized only with
 * every other transaction of the process ended: a resize waits for open
 * transactions to end and holds new ones back meanwhile, so a thread must not
 * wait for another thread's write while it holds a transaction.
 *
 * Invariants:
 *   - document and chunk ids come from counters stored in the same
 *     transactions as the records, start at 1 and are never reused;
 *   - a document's chunks have consecutive ids first_chunk .. first_chunk +
 *     n_chunks - 1, in text order; the continuation of chunk c is chunk c+1
 *     if that chunk belongs to the same document;
 *   - counters (documents, chunks, tokens, bytes) equal the sums over the
 *     records.
 * The on-disk layout is documented in docs/formats.md ("Chunk store").
 */
#ifndef RTR_STORE_H
#define RTR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/bpe.h"
#include "lib/buf.h"

#define RTR_CHUNK_TOKENS 64
#define RTR_STORE_SCHEMA 1

typedef struct rtr_store rtr_store;
typedef struct rtr_store_txn rtr_store_txn;

enum { RTR_STORE_READONLY = 1 };

/* The map a store opens with: 64 GiB of address space on 64-bit systems
 * (a billion-token store fits), less where address space is limited
 * (ulimit -v: the open retries with halves, down to what the file needs). */
#define RTR_STORE_DEFAULT_MAP (sizeof(size_t) >= 8 ? (size_t)64 << 30 : (size_t)1 << 30)

typedef struct rtr_store_opts {
    size_t initial_map_size;   /* bytes; 0 = RTR_STORE_DEFAULT_MAP. Grows by doubling. */
} rtr_store_opts;

/* Opens (creating if needed, unless READONLY) the store in directory dir.
 * A directory that holds no LMDB or an LMDB without retro's schema fails with
 * RTR_E_CORRUPT, as does a data.mdb shorter than its meta page says (checked
 * before any page is touched); one written by a newer schema with
 * RTR_E_VERSION; RTR_E_NOTFOUND for READONLY without a data.mdb;
 * RTR_E_INVALID if dir is not a directory; RTR_E_LMDB, RTR_E_IO, RTR_E_FULL,
 * RTR_E_NOMEM otherwise. */
int rtr_store_open(const char *dir, unsigned flags, const rtr_store_opts *o, rtr_store **out);
void rtr_store_close(rtr_store *s);   /* NULL-safe; no transaction may be open */
const char *rtr_store_dir(const rtr_store *s);

typedef struct rtr_store_stats {
    uint32_t schema;
    uint64_t n_docs, n_chunks, n_tokens, n_bytes;   /* bytes of stored text */
    uint64_t n_files, n_skipped;
    uint64_t next_doc_id, next_chunk_id;
    uint64_t map_size, data_size;                   /* LMDB map and used pages, bytes */
} rtr_store_stats;

enum { RTR_CHUNK_LAST = 1, RTR_CHUNK_SHORT = 2 };

typedef struct rtr_chunk {
    uint64_t id;
    uint64_t doc_id;
    uint32_t seq;                  /* index of the chunk within its document */
    uint32_t n_tokens;             /* 1..64; < 64 only for a document's last chunk */
    uint32_t flags;                /* RTR_CHUNK_LAST, RTR_CHUNK_SHORT */
    uint64_t byte_start, byte_end; /* span in the document's stored text */
    uint32_t tokens[RTR_CHUNK_TOKENS];
} rtr_chunk;

typedef struct rtr_doc {
    uint64_t id;
    uint64_t first_chunk;
    uint32_t n_chunks;
    uint8_t content_hash[16];   /* XXH3-128 of the stored text */
    uint8_t file_key[16];       /* XXH3-128 of the source file path */
    uint64_t n_bytes, n_tokens;
    int64_t mtime_ns;           /* source file mtime */
    /* Not NUL-terminated; point into the LMDB map: valid until the txn ends. */
    const char *path; uint32_t path_len;      /* source file path */
    const char *title; uint32_t title_len;    /* may be empty */
    const char *ext_id; uint32_t ext_id_len;  /* record id within a .jsonl/.json file */
} rtr_doc;

typedef struct rtr_file_rec {
    uint8_t content_hash[16];   /* XXH3-128 of the file's bytes */
    uint64_t size;
    int64_t mtime_ns;
    uint32_t n_docs;
    const char *path; uint32_t path_len;      /* into the map */
} rtr_file_rec;

typedef struct rtr_skip_rec {
    uint32_t reason;            /* RTR_SKIP_* (index/corpus.h) */
    const char *path; uint32_t path_len;
    const char *detail; uint32_t detail_len;
} rtr_skip_rec;

/* --- reading ------------------------------------------------------------ */
/* A read snapshot. RTR_E_LMDB (too many readers, say), RTR_E_CORRUPT
 * (counters), RTR_E_NOMEM; RTR_E_BUSY if another process grew the map while
 * this thread holds another transaction of s (end it and retry). */
int rtr_store_read_begin(rtr_store *s, rtr_store_txn **out);

/* The pages of the store's file mapped into the process (lib/io.h, rtr_map_populate_file), within a
 * read transaction (a writer that grows the map waits), so that the searches that follow touch no page
 * for the first time. The bytes mapped in *bytes. */
int rtr_store_warm(rtr_store *s, uint64_t *bytes);
void rtr_store_txn_end(rtr_store_txn *t);   /* ends a read txn; NULL-safe */

int rtr_store_get_stats(rtr_store_txn *t, rtr_store_stats *out);
/* RTR_E_NOTFOUND if the chunk does not exist (never did, or was deleted). */
int rtr_store_get_chunk(rtr_store_txn *t, uint64_t chunk_id, rtr_chunk *out);
int rtr_store_get_doc(rtr_store_txn *t, uint64_t doc_id, rtr_doc *out);
/* Appends the document's stored text (decompressed) to out. */
int rtr_store_get_text(rtr_store_txn *t, uint64_t doc_id, rtr_buf *out);
/* The first chunk / document with id > after; RTR_E_NOTFOUND at the end. */
int rtr_store_next_chunk(rtr_store_txn *t, uint64_t after, rtr_chunk *out);
int rtr_store_next_doc(rtr_store_txn *t, uint64_t after, rtr_doc *out);
/* The file record of path; RTR_E_NOTFOUND if none. */
int rtr_store_get_file(rtr_store_txn *t, const char *path, rtr_file_rec *out);
/* Document ids that came from file path, ascending, appended to ids (u64). */
int rtr_store_file_docs(rtr_store_txn *t, const char *path, uint64_t **ids, size_t *n);
/* Iterates the file records / skip records: pass the previous record's key
 * (16 bytes) or NULL for the first; key_out receives this record's key. */
int rtr_store_next_file(rtr_store_txn *t, const uint8_t *after, uint8_t key_out[16],
                        rtr_file_rec *out);
int rtr_store_next_skip(rtr_store_txn *t, const uint8_t *after, uint8_t key_out[16],
                        rtr_skip_rec *out);

/* --- writing ------------------------------------------------------------ */
typedef int (*rtr_store_write_fn)(rtr_store_txn *t, void *ctx);
/* Runs fn in a write transaction and commits. fn's error aborts and is
 * returned. A full map is grown and fn run again (see the top comment). */
int rtr_store_write(rtr_store *s, rtr_store_write_fn fn, void *ctx);

typedef struct rtr_doc_in {
    const char *path;            /* source file path (NUL-terminated) */
    const char *title;           /* NULL or "" if none */
    const char *ext_id;          /* NULL or "" for whole-file documents */
    uint8_t content_hash[16];
    int64_t mtime_ns;
    uint64_t n_bytes;            /* stored text length */
    const void *ztext;           /* text compressed by rtr_store_compress_text */
    size_t ztext_len;
    const uint32_t *tokens;
    size_t n_tokens;
    const uint64_t *chunk_ends;  /* byte end of each chunk, ceil(n_tokens/64) entries */
} rtr_doc_in;

/* Adds a document and its chunks with fresh ids. *doc_id receives its id. */
int rtr_store_add_doc(rtr_store_txn *t, const rtr_doc_in *d, uint64_t *doc_id);
/* Deletes a document, its text, its chunks and its file link. */
int rtr_store_delete_doc(rtr_store_txn *t, uint64_t doc_id);
/* Records (replaces) the file record of path. */
int rtr_store_put_file(rtr_store_txn *t, const char *path, const uint8_t hash[16], uint64_t size,
                       int64_t mtime_ns, uint32_t n_docs);
/* Deletes the file record of path and every document from it. */
int rtr_store_delete_file(rtr_store_txn *t, const char *path);
int rtr_store_put_skip(rtr_store_txn *t, const char *path, uint32_t reason, const char *detail);
int rtr_store_delete_skip(rtr_store_txn *t, const char *path);   /* missing is fine */

/* Text compression used for rtr_doc_in.ztext (zstd). Appends to out. */
int rtr_store_compress_text(const uint8_t *text, size_t len, rtr_buf *out);

/* --- checking ------------------------------------------------------------ */
#define RTR_CHECK_MAX_REPORTS 100   /* problems reported one by one; the rest are counted */
typedef void (*rtr_check_fn)(void *ctx, const char *problem);
/* Counts a problem in *problems and, for the first RTR_CHECK_MAX_REPORTS,
 * hands report (may be NULL) its line. */
void rtr_check_problem(rtr_check_fn report, void *ctx, uint64_t *problems, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

typedef struct rtr_store_check_report {
    uint64_t docs, chunks, texts, files, links, skipped;   /* records walked */
    uint64_t problems;
} rtr_store_check_report;

/* Walks every record of the store in one read transaction and checks it:
 * key sizes, each record's fields and bounds, ids below the counters, every
 * document's chunks (its own, numbered, their spans meeting from 0 to its
 * length, only the last short), its text (decompressed to its length) and
 * its file link, no text or link without a document, and the counters
 * against the sums. With tok, every chunk's tokens must decode to its span
 * of the text. report (may be NULL) gets a line per problem (the first
 * RTR_CHECK_MAX_REPORTS). Returns RTR_OK when the walk finished, whatever it
 * found (out->problems); RTR_E_LMDB, RTR_E_NOMEM when it could not. */
int rtr_store_check(rtr_store *s, const rtr_tokenizer *tok, rtr_check_fn report, void *ctx,
                    rtr_store_check_report *out);

/* 16-byte key of a path (XXH3-128). */
void rtr_store_path_key(const char *path, uint8_t key[16]);

/* --- auxiliary tables ---------------------------------------------------------
 * The indexes built over the chunks (index/lexical.c) keep their records in
 * the store's own environment, so that they commit and roll back with the
 * store's transactions (rtr_store_write). Keys and values are raw bytes;
 * what a read returns points into the map, valid until the transaction
 * ends. A store opened read-only that an older version wrote has none:
 * reads answer RTR_E_NOTFOUND. */
enum { RTR_AUX_LEX_META, RTR_AUX_LEX_TERMS, RTR_AUX_LEX_POSTINGS, RTR_AUX_LEX_NORMS, RTR_AUX_COUNT };
int rtr_store_aux_get(rtr_store_txn *t, int table, const void *key, size_t klen, const void **val, size_t *vlen);
int rtr_store_aux_put(rtr_store_txn *t, int table, const void *key, size_t klen, const void *val, size_t vlen);
/* The first record with a key >= key (byte order); RTR_E_NOTFOUND past the end. */
int rtr_store_aux_seek(rtr_store_txn *t, int table, const void *key, size_t klen, const void **kout, size_t *kolen,
                       const void **val, size_t *vlen);
int rtr_store_aux_del(rtr_store_txn *t, int table, const void *key, size_t klen);   /* RTR_E_NOTFOUND if absent */
int rtr_store_aux_clear(rtr_store_txn *t, int table);   /* empties the table */

/* A cursor over one table, for readers that walk or skip through many
 * records in one transaction (it ends with it: close it first). seek: the
 * first record with a key >= key; next: the record after the last one
 * returned. Both RTR_E_NOTFOUND past the end. */
typedef struct rtr_aux_cursor rtr_aux_cursor;
int rtr_store_aux_cursor_open(rtr_store_txn *t, int table, rtr_aux_cursor **out);
int rtr_store_aux_cursor_seek(rtr_aux_cursor *c, const void *key, size_t klen, const void **kout, size_t *kolen,
                              const void **val, size_t *vlen);
int rtr_store_aux_cursor_next(rtr_aux_cursor *c, const void **kout, size_t *kolen, const void **val, size_t *vlen);
void rtr_store_aux_cursor_close(rtr_aux_cursor *c);

#endif
