/*
 * vectors.h - a knowledge base's vectors: the embedder and the vector index
 * (FAISS shards, index/vindex.h) that the manifest's "index" section names,
 * with the chunk id they are built up to. The retriever searches them;
 * `retro index build` (index/build.h) writes them.
 */
#ifndef RTR_VECTORS_H
#define RTR_VECTORS_H

#include <stdint.h>

#include "index/embed.h"
#include "index/kb.h"
#include "index/vindex.h"

typedef struct rtr_kb_vectors rtr_kb_vectors;

/* Reads kb's manifest "index" section and loads the embedder; the shards
 * are loaded by the first rtr_kb_vectors_vindex, so that what never
 * searches vectors (a lexical search) never reads them. RTR_E_NOTFOUND
 * (with a hint to run `retro index build`) if the knowledge base has no
 * index yet; RTR_E_CORRUPT, RTR_E_VERSION, RTR_E_NOMEM. */
int rtr_kb_vectors_open(rtr_kb *kb, rtr_kb_vectors **out);
void rtr_kb_vectors_close(rtr_kb_vectors *v);   /* NULL-safe */

/* Owned by v, valid until rtr_kb_vectors_close. */
rtr_embedder *rtr_kb_vectors_embedder(const rtr_kb_vectors *v);
/* The vector index loaded (checksums verified, vindex.h), to build on or
 * check, made by the first call, from any thread; a failed load is tried
 * again by the next call. *out is owned by v. RTR_E_CORRUPT naming the
 * file, RTR_E_FAISS, RTR_E_IO, RTR_E_NOMEM. */
int rtr_kb_vectors_vindex(rtr_kb_vectors *v, rtr_vindex **out);
/* The vector index to search: shards with 4-bit codes mapped, not read
 * (rtr_vindex_files_map), the rest loaded; otherwise as above. */
int rtr_kb_vectors_search_index(rtr_kb_vectors *v, rtr_vindex **out);
/* What `retro index check` asks of the 4-bit code files that searches map
 * unverified: each one's checksum as the manifest records it, and the ids
 * of the shard it was made from, in its order (loads the index). RTR_OK,
 * RTR_E_CORRUPT naming the file, RTR_E_IO, RTR_E_NOMEM, load errors. */
int rtr_kb_vectors_verify_codes(rtr_kb_vectors *v);
/* The vectors' dimension as the embedder or the manifest know it; 0 while
 * neither does (an http embedder's first build). */
uint32_t rtr_kb_vectors_dim(const rtr_kb_vectors *v);
uint64_t rtr_kb_vectors_indexed_upto(const rtr_kb_vectors *v);   /* chunk ids <= this are indexed (or deleted) */
uint64_t rtr_kb_vectors_trained_on(const rtr_kb_vectors *v);     /* chunks when the quantizer was trained */

/* The manifest's "index" section, checked but not loaded (where names it in
 * errors). RTR_E_CORRUPT, RTR_E_VERSION, RTR_E_NOMEM. */
typedef struct rtr_vectors_section {
    char factory[96];
    uint32_t nprobe;
    uint32_t dim;            /* 0: not recorded */
    uint64_t indexed_upto, trained_on;
    size_t n_shards;
    rtr_vindex_file *shards; /* (n_shards) the FAISS files in KB/index/ */
    rtr_vindex_file *codes;  /* (n_shards) their 4-bit codes (name NULL: none) */
    char *embedder_desc;     /* canonical JSON */
} rtr_vectors_section;
int rtr_vectors_section_parse(const json_t *ix, const char *where, rtr_vectors_section *out);
void rtr_vectors_section_free(rtr_vectors_section *x);

/* RTR_E_MISMATCH unless e describes itself exactly as recorded. */
int rtr_kb_vectors_check_embedder(const rtr_kb *kb, const rtr_kb_vectors *v, const rtr_embedder *e);

#endif
