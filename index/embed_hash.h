/*
 * embed_hash.h - the `hash` embedder: lexical vectors that need no weights.
 *
 * A text's features are its words (maximal runs of ASCII letters/digits or
 * non-ASCII letters; ASCII lower-cased) and its word bigrams. Each feature f
 * gets weight (1 + ln tf_f) * idf_f, where idf_f = ln((1 + N) / (1 + df_f)) + 1
 * from document frequencies counted over the knowledge base's chunks in 2^bits
 * hashed buckets (idf = 1 without statistics). The sparse weighted feature
 * vector goes through a fixed signed random projection: feature f adds
 * weight * s_f to the output, where s_f in {-1,+1}^dim is generated from the
 * feature's 64-bit hash. The result is L2-normalised. Same text, same options,
 * same statistics: the same vector on every run and machine.
 *
 * The statistics are frozen when an index is first built (like a trained
 * quantizer): later additions are embedded with the same idf, so old and new
 * vectors agree; `retro index build --retrain` recounts and re-embeds.
 *
 * Its description records the XXH64 of the statistics ("idf") and their
 * count ("idf_n"); the statistics live in KB/index/hash-df-<idf>.bin.
 *
 * Statistics file, little-endian:
 *   OFFSET  SIZE        DESCRIPTION
 *   0       8           magic "RTRHDF\0\1"
 *   8       4           bits (10..24)
 *   12      4           reserved (0)
 *   16      8           N: number of texts counted
 *   24      4*2^bits    df per bucket (each <= N)
 *   ..      8           XXH64 (seed 0) of every byte before it
 */
#ifndef RTR_EMBED_HASH_H
#define RTR_EMBED_HASH_H

#include <stdint.h>

#include "index/embed.h"

#define RTR_HASH_DEFAULT_DIM 256
#define RTR_HASH_DEFAULT_BITS 20
#define RTR_HASH_DEFAULT_SEED 0x7265747230ULL   /* "retr0" */

typedef struct rtr_hash_df {
    uint32_t bits;
    uint64_t n;          /* texts counted */
    uint32_t *df;        /* 2^bits counts, owned */
} rtr_hash_df;

int rtr_hash_df_init(rtr_hash_df *d, uint32_t bits);
/* Counts the features of one text (each distinct feature once). */
int rtr_hash_df_add(rtr_hash_df *d, const char *text, size_t len);
int rtr_hash_df_save(const rtr_hash_df *d, const char *path);   /* atomic */
int rtr_hash_df_load(const char *path, rtr_hash_df *d);
/* The same from a file's contents (path names it in errors). RTR_E_CORRUPT, RTR_E_NOMEM. */
int rtr_hash_df_parse(const uint8_t *data, size_t len, const char *path, rtr_hash_df *d);
void rtr_hash_df_free(rtr_hash_df *d);
/* Identifies a table: XXH64 over bits, n and the counts. */
uint64_t rtr_hash_df_checksum(const rtr_hash_df *d);
/* "hash-df-<16 hex digits>.bin" (fresh string): the file name of a table. */
char *rtr_hash_df_filename(uint64_t checksum);

typedef struct rtr_hash_embedder_opts {
    uint32_t dim;               /* multiple of 64; default 256 */
    uint64_t seed;              /* seeds the projection; default RTR_HASH_DEFAULT_SEED */
    const rtr_hash_df *df;      /* copied; NULL = idf 1 everywhere */
} rtr_hash_embedder_opts;

/* Thread safety: embed() may be called from several threads at once. */
int rtr_hash_embedder_new(const rtr_hash_embedder_opts *o, rtr_embedder **out);
/* The hash embedder a description {"kind":"hash","dim":..,"seed":..,"idf":..,
 * "idf_n":..} names, with its statistics from KB/index/hash-df-SUM.bin (see
 * rtr_embedder_from_desc). RTR_E_CORRUPT for a bad description or statistics
 * that do not match it. */
int rtr_hash_embedder_from_desc(const char *kb_dir, const char *desc_json, rtr_embedder **out);

#endif
