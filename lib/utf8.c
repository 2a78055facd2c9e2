/* utf8.c - UTF-8 validation and repair, content hashes (see utf8.h). */
#include "utf8.h"

#include <xxhash.h>

#include "lib/status.h"

/* Length of the valid sequence starting at s[0] (1..4), or 0 if s[0..]
 * does not start a valid sequence; *bad is set to the length of the maximal
 * invalid subsequence in that case (>= 1). */
static size_t seq_len(const uint8_t *s, size_t left, size_t *bad) {
    uint8_t c = s[0];
    *bad = 1;
    if (c < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else return 0;
    for (size_t i = 1; i <= need; i++) {
        if (i >= left) { *bad = i; return 0; }
        uint8_t b = s[i];
        uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) { *bad = i; return 0; }
    }
    return need + 1;
}

size_t rtr_utf8_valid_prefix(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= len) {
            uint64_t w;
            __builtin_memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= len) break;
        size_t bad, n = seq_len(s + i, len - i, &bad);
        if (!n) return i;
        i += n;
    }
    return len;
}

long rtr_utf8_repair(const uint8_t *s, size_t len, rtr_buf *out) {
    long repl = 0;
    size_t i = 0;
    int rc = rtr_buf_reserve(out, len);
    if (rc) return rc;
    while (i < len) {
        size_t ok = rtr_utf8_valid_prefix(s + i, len - i);
        if ((rc = rtr_buf_append(out, s + i, ok))) return rc;
        i += ok;
        if (i >= len) break;
        size_t bad;
        seq_len(s + i, len - i, &bad);
        if ((rc = rtr_buf_append(out, "\xEF\xBF\xBD", 3))) return rc;
        i += bad;
        repl++;
    }
    return repl;
}

int rtr_utf8_put(rtr_buf *out, uint32_t cp) {
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) { b[0] = (uint8_t)cp; n = 1; }
    else if (cp < 0x800) { b[0] = (uint8_t)(0xC0 | (cp >> 6)); b[1] = (uint8_t)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
        b[0] = (uint8_t)(0xE0 | (cp >> 12)); b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F)); n = 3;
    } else if (cp < 0x110000) {
        b[0] = (uint8_t)(0xF0 | (cp >> 18)); b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (uint8_t)(0x80 | (cp & 0x3F)); n = 4;
    } else {
        return rtr_utf8_put(out, 0xFFFD);
    }
    return rtr_buf_append(out, b, n);
}

void rtr_hash128(const void *data, size_t len, uint8_t out[16]) {
    XXH128_hash_t h = XXH3_128bits(data, len);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    for (int i = 0; i < 16; i++) out[i] = c.digest[i];
}

void rtr_hex(const uint8_t *bytes, size_t n, char *hex) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 15];
    }
    hex[2 * n] = '\0';
}
