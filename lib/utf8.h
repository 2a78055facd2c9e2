/*
 * utf8.h - UTF-8 validation and repair, and content hashes.
 */
#ifndef RTR_UTF8_H
#define RTR_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Returns the byte offset of the first invalid UTF-8 sequence in s[0..len),
 * or len if all of it is valid (overlongs, surrogates and code points above
 * U+10FFFF are invalid). */
size_t rtr_utf8_valid_prefix(const uint8_t *s, size_t len);

/* Appends s to out with every maximal invalid subsequence replaced by U+FFFD
 * (as the WHATWG decoder does). Returns the number of replacements made, or
 * a negative status. */
long rtr_utf8_repair(const uint8_t *s, size_t len, rtr_buf *out);

/* Appends the UTF-8 encoding of code point cp (< 0x110000, not a surrogate). */
int rtr_utf8_put(rtr_buf *out, uint32_t cp);

/* 128-bit content hash (XXH3-128) of data, as 16 bytes (big-endian hi, lo). */
void rtr_hash128(const void *data, size_t len, uint8_t out[16]);
/* Lower-case hex of n bytes into hex (2n+1 chars incl. NUL). */
void rtr_hex(const uint8_t *bytes, size_t n, char *hex);

#endif
