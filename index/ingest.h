/*
 * ingest.h - adding documents to a knowledge base, incrementally and safely.
 *
 * rtr_ingest walks the given paths, and for each file in path order:
 *   - unchanged content (same XXH3-128 of its bytes as recorded): skipped;
 *   - new or changed: its documents are extracted (index/corpus.h), and each
 *     one whose text is already stored from that file is kept; the others
 *     are tokenized, cut into 64-token chunks and stored; documents of the
 *     file that are gone are deleted with their chunks;
 *   - unusable (binary, invalid UTF-8 under the skip policy, empty, too
 *     large, unreadable, vanished): recorded as skipped with its reason.
 * Files are read, tokenized and compressed in parallel; their results are
 * written in path order, one LMDB transaction per batch of files, so that a
 * run killed at any moment and run again ends with exactly the store that an
 * uninterrupted run builds (ids included).
 */
#ifndef RTR_INGEST_H
#define RTR_INGEST_H

#include <stdint.h>

#include "index/corpus.h"
#include "index/kb.h"

typedef struct rtr_ingest_opts {
    rtr_corpus_opts corpus;
    int threads;              /* 0 = one per core */
    int prune;                /* delete documents whose files are gone (under the given dirs) */
    int progress;             /* progress bar on stderr when it is a terminal */
    const char *stdin_name;   /* path recorded for "-" (default "stdin") */
    uint64_t batch_bytes;     /* commit about every this many input bytes (default 16 MiB) */
    uint32_t part_count;      /* > 1: only the files (and the walk's skips) whose recorded path belongs to */
    uint32_t part;            /* partition part of part_count (rtr_part_of_path, index/parts.h) */
    /* test hook: called with each file's path just before it is read */
    void (*before_read)(const char *path, void *ctx);
    void *hook_ctx;
} rtr_ingest_opts;

typedef struct rtr_ingest_report {
    uint64_t files;                               /* candidate files found */
    uint64_t files_new, files_changed, files_unchanged, files_skipped, files_pruned;
    uint64_t docs_added, docs_removed, docs_kept;
    uint64_t chunks_added, tokens_added;
    uint64_t bytes_read;                          /* input bytes read */
    uint64_t bad_records;                         /* unusable .jsonl/.json records */
    double seconds;
    rtr_skip_list skips;                          /* every skip, with its reason */
} rtr_ingest_report;

int rtr_ingest(rtr_kb *kb, const char *const *paths, size_t n, const rtr_ingest_opts *o,
               rtr_ingest_report *rep);
void rtr_ingest_report_free(rtr_ingest_report *r);

/* A source given as bytes instead of a file (the server's uploads). */
typedef struct rtr_mem_file {
    const char *name;       /* recorded as its path: 1..4096 bytes of UTF-8, not starting with '/' */
    const uint8_t *data;
    size_t len;
    int format;             /* RTR_FMT_*; AUTO: by the name's extension, text otherwise */
} rtr_mem_file;

/* Adds sources from memory as rtr_ingest adds files, in one transaction: a
 * name recorded before is replaced by its new bytes (unchanged bytes are
 * kept as they are), so posting a document again updates it. */
int rtr_ingest_memory(rtr_kb *kb, const rtr_mem_file *files, size_t n, const rtr_ingest_opts *o,
                      rtr_ingest_report *rep);

/* Deletes every document that came from the given paths: a file's path, a
 * directory (everything under it), or a name recorded for standard input.
 * Paths that match nothing fail with RTR_E_NOTFOUND before anything is
 * deleted. */
int rtr_kb_remove(rtr_kb *kb, const char *const *paths, size_t n, uint64_t *files_removed,
                  uint64_t *docs_removed);

/* Deletes the sources of the documents with these ids (every document of
 * each source: a .jsonl file's other records go with it). An id that is not
 * a document fails with RTR_E_NOTFOUND before anything is deleted. */
int rtr_kb_remove_docs(rtr_kb *kb, const uint64_t *ids, size_t n, uint64_t *files_removed, uint64_t *docs_removed);

/* Byte end of each 64-token chunk of ids (ceil(n/64) entries appended to
 * ends, owned by the caller), from the tokens' byte lengths. */
int rtr_chunk_ends(const rtr_tokenizer *tok, const uint32_t *ids, size_t n, uint64_t **ends);

#endif
