/*
 * lexical.h - the lexical index: BM25 over the chunks' words, beside the
 * vectors. `retro index build` brings it up to the store's last chunk (as it
 * does the vectors), in batches committed with the store's transactions: a
 * build killed at any point resumes where the last batch ended, and a search
 * sees exactly the batches committed.
 *
 * Words: maximal runs of ASCII letters, digits and '_' (lowercased) and of
 * the other scripts' characters outside the Unicode blocks of punctuation,
 * symbols and spaces (UTF-8; an invalid byte separates), cut at 64 bytes
 * (whole characters); a term is the XXH3-64 hash of its word. A chunk's length is
 * its number of words (at most 255 are counted).
 *
 * Records (the store's auxiliary tables, big-endian keys so that a term's
 * blocks are adjacent and in chunk order):
 *   lex_meta      "state" -> indexed_upto u64 (the last chunk id seen),
 *                 chunks u64 (indexed), words u64 (their total length),
 *                 version u64 (RTR_LEX_VERSION)
 *   lex_terms     term u64 -> df u64, first u64 and last u64 chunk id of the
 *                 term's last block, postings u32 in it, the highest count
 *                 u8 and the shortest length u8 among all its postings
 *   lex_postings  term u64, last chunk id u64 -> a block of at most 128
 *                 postings: LEB128 last - first (its first chunk id), the
 *                 highest count u8 and the shortest chunk length u8 in the
 *                 block, then each posting: the LEB128 gap from the previous
 *                 chunk id (the first from first, so 0), then the term's
 *                 count in the chunk (u8, at most 255). Keyed by the last id,
 *                 a seek to (term, id) lands on the one block that may hold
 *                 id; the header bounds every score in the block unread.
 *   lex_norms     chunk id / 4096 u64 -> 4096 lengths (u8), 0 for no chunk
 *
 * A search scores documents at a time (MaxScore with block bounds; Turtle and
 * Flood, 1995; Ding and Suel, 2011): a term whose best possible weight
 * cannot lift a chunk into the top depth is only looked up for the chunks
 * that the others find, and a block whose bound cannot is skipped unread.
 * The result is the exhaustive one.
 *
 * Chunks deleted after they were indexed stay in the postings (and in N and
 * df) and are dropped by the search when it reads the store.
 */
#ifndef RTR_LEXICAL_H
#define RTR_LEXICAL_H

#include <stddef.h>
#include <stdint.h>

#include "index/kb.h"

#define RTR_LEX_MAX_WORD 64
#define RTR_LEX_VERSION 3   /* of the word splitter and the records (2: block bounds; 3: compounds): an index made with another is rebuilt by the next build */
#define RTR_LEX_BLOCK 128

/* Calls fn for each word of text (lowercased ASCII, len <= RTR_LEX_MAX_WORD), and after the words of a
 * run that punctuation joins without a space ("os.path", "2.3", "what's", "foo::bar()"), for the run
 * as one term, its words joined by single spaces ("os path"), when it fits: a query's "2.3" then finds
 * Python 2.3 before the chunks that merely hold a 2 and a 3, as a phrase would (FTS5 quotes each word of
 * a query so). */
typedef void (*rtr_lex_word_fn)(void *ctx, const char *word, size_t len);
void rtr_lex_words(const char *text, size_t len, rtr_lex_word_fn fn, void *ctx);
uint64_t rtr_lex_term(const char *word, size_t len);

typedef struct rtr_lex_state {
    uint64_t indexed_upto, chunks, words;
    uint64_t version;    /* RTR_LEX_VERSION it was made with (0: before there was one) */
} rtr_lex_state;

/* The index's state in txn t; RTR_E_NOTFOUND before the first build. */
int rtr_lex_state_get(rtr_store_txn *t, rtr_lex_state *out);

typedef struct rtr_lex_report {
    uint64_t indexed;    /* chunks indexed by this call */
    uint64_t chunks;     /* chunks in the index now */
    double seconds;
} rtr_lex_report;

/* Indexes the chunks added since the last call (all of them the first
 * time). progress: a bar on stderr when it is a terminal. RTR_E_INVALID if
 * the store cannot hold the tables (opened read-only), and the store's
 * errors. */
int rtr_lex_build(rtr_kb *kb, int progress, rtr_lex_report *rep);

/* Empties the index (a rebuild from scratch follows with rtr_lex_build). */
int rtr_lex_clear(rtr_kb *kb);

typedef struct rtr_lex_hit {
    uint64_t chunk_id;
    float score;         /* BM25 (k1 = 1.2, b = 0.75) */
} rtr_lex_hit;

/* The n <= depth best chunks for the words of query (len bytes), best
 * first, read in txn t: *hits (rtr_free) holds *n. Chunks deleted since
 * they were indexed may be among them. No words or no index: *n = 0. */
int rtr_lex_search(rtr_store_txn *t, const char *query, size_t len, uint32_t depth, rtr_lex_hit **hits, size_t *n);

/* A query read once and asked several things (hybrid search): its words looked up in txn t, which
 * must outlive it. No index or no words: a query of no terms, whose answers are empty. */
typedef struct rtr_lex_query rtr_lex_query;
int rtr_lex_query_new(rtr_store_txn *t, const char *text, size_t len, rtr_lex_query **out);
void rtr_lex_query_free(rtr_lex_query *q);   /* NULL-safe */

/* BM25's statistics over several lexical indexes searched as one (the partitions of a knowledge base,
 * index/parts.h): their chunks and words, and each of a query's distinct terms' document frequency,
 * summed. A query made with them (rtr_lex_query_new_with) scores every chunk as one index of all
 * their chunks would. */
typedef struct rtr_lex_stats {
    uint64_t chunks, words;
    size_t n;
    uint64_t *terms;   /* (n) the query's distinct terms, ascending */
    uint64_t *df;      /* (n) */
} rtr_lex_stats;
/* Adds the index in t to s (zeroed before the first call, which takes the terms of text; later calls
 * must pass the same text). No index, or t NULL: nothing added (the terms taken). */
int rtr_lex_stats_add(rtr_store_txn *t, const char *text, size_t len, rtr_lex_stats *s);
void rtr_lex_stats_free(rtr_lex_stats *s);
/* rtr_lex_query_new with the statistics of several indexes (made from the same text; NULL: t's own). */
int rtr_lex_query_new_with(rtr_store_txn *t, const char *text, size_t len, const rtr_lex_stats *stats,
                           rtr_lex_query **out);

/* How rtr_lex_query_top finds its chunks:
 *   RTR_LEX_EXACT  every chunk holding a query word is a candidate: the BM25 top depth (rtr_lex_search).
 *   RTR_LEX_RARE   a query of at least RTR_LEX_RARE_MIN distinct words (a passage, a chunk): only the
 *                  chunks holding one of its rarest words are candidates (the rarest, then the next
 *                  while their postings together stay within RTR_LEX_RARE_POSTINGS, up to a quarter of
 *                  the words and RTR_LEX_RARE_TERMS), each scored with every word: exactly the
 *                  BM25 top depth of those chunks, with their whole-query scores. The common words'
 *                  postings are only looked up for those chunks, never scanned, so the cost does not
 *                  grow with them; a chunk holding all the query's words (its source, when the query
 *                  was cut from a chunk) always competes, and where EXACT ranks such a chunk first
 *                  RARE does too. A chunk holding none of the rare words is never found: this is for
 *                  candidates that another side (the vectors) completes. A shorter query: EXACT. */
enum { RTR_LEX_EXACT = 0, RTR_LEX_RARE = 1 };
#define RTR_LEX_RARE_MIN 4
#define RTR_LEX_RARE_TERMS 8
#define RTR_LEX_RARE_POSTINGS 1024   /* 4096 found the same at 1 B tokens, slower (docs/search.md) */
int rtr_lex_query_top(rtr_lex_query *q, uint32_t depth, int how, rtr_lex_hit **hits, size_t *n);

/* The BM25 score of each of n chunks for the whole query (0: none of its words, or not indexed), as
 * rtr_lex_search would score it; ids in any order. */
int rtr_lex_query_score(rtr_lex_query *q, const uint64_t *ids, size_t n, float *scores);

/* Scores from the chunks' own text: the same BM25 scores as the postings give (their words counted as the
 * index counted them), without reading the common words' postings, which at a billion tokens cost a block
 * sought and decoded for each candidate and word (docs/search.md). After rtr_lex_query_texts (tok: the
 * knowledge base's tokenizer), RTR_LEX_RARE scores each chunk that its rarest words find, and that the
 * other words might still lift into the top depth, from its text read from the store (a chunk deleted
 * since it was indexed is then left out). rtr_lex_query_score_text: chunk id's score from its text
 * (the decoded tokens of the chunk, which the caller has read; 0 past the index). */
int rtr_lex_query_texts(rtr_lex_query *q, const rtr_tokenizer *tok);
int rtr_lex_query_score_text(rtr_lex_query *q, uint64_t id, const char *text, size_t len, float *score);

/* A block's header: its first and last chunk ids, the highest count and
 * the shortest chunk length among its postings. */
typedef struct rtr_lex_block {
    uint64_t first, last;
    uint8_t max_tf, min_len;
} rtr_lex_block;

/* Reads the header of the block p (n bytes) whose key names chunk last, in
 * an index of chunks up to upto: the offset of its postings, or -1 if it is
 * malformed (first past last, last past upto, a count or length of 0). */
long rtr_lex_block_head(const uint8_t *p, size_t n, uint64_t last, uint64_t upto, rtr_lex_block *hd);

/* Decodes that block: fn(ctx, id, count) for each posting (fn may be NULL;
 * non-zero stops it), *hd (may be NULL) its header. Returns the postings
 * (1..RTR_LEX_BLOCK); -1 if the block is malformed (its header, a gap that
 * never ends, a missing count, a count of 0, ids not strictly increasing
 * from first or not ending at last, a highest count that is not the
 * postings', more than RTR_LEX_BLOCK); -2 if fn stopped it. */
typedef int (*rtr_lex_posting_fn)(void *ctx, uint64_t id, uint32_t count);
long rtr_lex_block_decode(const uint8_t *p, size_t n, uint64_t last, uint64_t upto, rtr_lex_posting_fn fn, void *ctx,
                          rtr_lex_block *hd);

/* Walks the whole index (the state, every term's record against its blocks,
 * every block's postings, the length pages); report (may be NULL) gets one
 * line per problem. RTR_OK when the walk ran, whatever it found. */
typedef struct rtr_lex_check_report {
    int present;
    uint64_t chunks, terms, blocks, postings, problems;
} rtr_lex_check_report;
int rtr_lex_check(rtr_store_txn *t, rtr_check_fn report, void *ctx, rtr_lex_check_report *out);

#endif
