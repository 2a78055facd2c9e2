/* fuzz_lexical.c - the lexical index's readers (index/lexical.c): a block of postings as the store holds it
 * (the first 16 bytes give the key's chunk id, the block's last, and the indexed range; the rest is the
 * block, its header first), and the word splitter on the same bytes as text. */
#include <string.h>

#include "fuzz_util.h"
#include "index/lexical.h"

typedef struct seen {
    uint64_t first, prev, last;
    uint32_t max;
    long n;
} seen;

static int on_posting(void *ctx, uint64_t id, uint32_t count) {
    seen *s = ctx;
    FUZZ_CHECK(s->n == 0 ? id == s->first : id > s->prev);
    FUZZ_CHECK(id <= s->last && count >= 1 && count <= 255);
    if (count > s->max) s->max = count;
    s->prev = id;
    s->n++;
    return 0;
}

static void on_word(void *ctx, const char *w, size_t len) {
    (void)ctx;
    FUZZ_CHECK(len >= 1 && len <= RTR_LEX_MAX_WORD);
    for (size_t i = 0; i < len; i++) FUZZ_CHECK(!((unsigned char)w[i] >= 'A' && (unsigned char)w[i] <= 'Z'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 16) return 0;
    uint64_t last = 0, upto = 0;
    for (int i = 0; i < 8; i++) {
        last |= (uint64_t)data[i] << (8 * i);
        upto |= (uint64_t)data[8 + i] << (8 * i);
    }
    last >>= (data[0] & 7) * 8;   /* small ids too */
    rtr_lex_block hd;
    long off = rtr_lex_block_head(data + 16, size - 16, last, upto, &hd);
    if (off >= 0) FUZZ_CHECK((size_t)off <= size - 16 && hd.first <= hd.last && hd.last == last && last <= upto);
    seen s = {off >= 0 ? hd.first : 0, 0, last, 0, 0};
    long n = rtr_lex_block_decode(data + 16, size - 16, last, upto, on_posting, &s, &hd);
    if (n >= 0) {
        FUZZ_CHECK(off >= 0 && n >= 1 && n <= RTR_LEX_BLOCK && n == s.n && s.prev == last && s.max == hd.max_tf);
    } else {
        FUZZ_CHECK(n == -1);
    }
    rtr_lex_words((const char *)data, size, on_word, NULL);
    return 0;
}
