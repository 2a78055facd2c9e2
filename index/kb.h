/*
 * kb.h - a knowledge base on disk: a directory holding
 *   manifest.json    what the knowledge base is (format in docs/formats.md)
 *   tokenizer.rtok   a copy of the tokenizer its chunks were made with
 *   store/           the LMDB chunk store (index/store.h)
 *   lock             taken (flock) by the one process that may write
 *
 * A knowledge base is created whole or not at all: the files are written in
 * a temporary directory beside it that is renamed into place. Anything that
 * reads its tokens must use its tokenizer: rtr_kb_check_tokenizer refuses a
 * different one.
 */
#ifndef RTR_KB_H
#define RTR_KB_H

#include <jansson.h>

#include "index/store.h"
#include "lib/bpe.h"

#define RTR_KB_VERSION 1       /* a knowledge base's manifest */
#define RTR_KB_VERSION_MAX 2   /* a knowledge base of partitions' (index/parts.h), which rtr_kb_open refuses */

typedef struct rtr_kb rtr_kb;

enum { RTR_KB_WRITE = 1, RTR_KB_CREATE = 2 };

/* Opens the knowledge base in dir. With RTR_KB_CREATE, a missing (or empty)
 * dir is created with tokenizer `tok` (required then; copied, not kept).
 * With RTR_KB_WRITE the writer lock is taken (RTR_E_BUSY if another process
 * holds it). A directory that is not a knowledge base fails with
 * RTR_E_INVALID naming it. */
int rtr_kb_open(const char *dir, unsigned flags, const rtr_tokenizer *tok, const rtr_store_opts *so,
                rtr_kb **out);
void rtr_kb_close(rtr_kb *kb);   /* NULL-safe */

rtr_store *rtr_kb_store(rtr_kb *kb);
const rtr_tokenizer *rtr_kb_tokenizer(rtr_kb *kb);   /* owned by kb */
const char *rtr_kb_dir(const rtr_kb *kb);
const char *rtr_kb_tokenizer_hash(const rtr_kb *kb);
const char *rtr_kb_created(const rtr_kb *kb);         /* ISO 8601 UTC */
/* A top-level section of the manifest ("index", ...): borrowed, valid until
 * the next rtr_kb_manifest_set or rtr_kb_close; NULL if absent. */
json_t *rtr_kb_manifest_get(rtr_kb *kb, const char *key);
/* A deep copy of a section (the caller's, json_decref; NULL if absent),
 * safe while another thread of the process calls rtr_kb_manifest_set. */
json_t *rtr_kb_manifest_copy(rtr_kb *kb, const char *key);
/* Replaces (value != NULL, reference stolen) or removes a top-level section
 * and rewrites manifest.json atomically. Needs RTR_KB_WRITE. */
int rtr_kb_manifest_set(rtr_kb *kb, const char *key, json_t *value);
/* A manifest.json's contents, checked (format, version, chunk size,
 * tokenizer hash; version 2 with a "partitions" section, 1 without): json is
 * the caller's (json_decref). RTR_E_CORRUPT or RTR_E_VERSION naming path. */
typedef struct rtr_kb_manifest {
    json_t *json;
    char tok_hash[33];
    char created[32];
} rtr_kb_manifest;
int rtr_kb_manifest_parse(const uint8_t *data, size_t len, const char *path, rtr_kb_manifest *out);

/* Creating a knowledge base (or one of partitions, index/parts.h) whole or not at all: a fresh
 * directory "DIR.creating.PID" (into tmp, cap bytes) holding tok as tokenizer.rtok; the caller fills
 * it, then rtr_kb_create_commit renames it to dir (on failure it is removed). */
int rtr_kb_create_tmp(const char *dir, const rtr_tokenizer *tok, char *tmp, size_t cap);
int rtr_kb_create_commit(const char *tmp, const char *dir);
/* A new manifest's common fields (format, version 1, created now, chunk size, tokenizer); the caller's. */
json_t *rtr_kb_manifest_new(const char *tok_hash, uint32_t vocab);
/* Writes m as dir/manifest.json atomically. */
int rtr_kb_manifest_write(const char *dir, const json_t *m);

/* RTR_E_MISMATCH (with both hashes in the detail) if tok differs. */
int rtr_kb_check_tokenizer(const rtr_kb *kb, const rtr_tokenizer *tok);

#endif
