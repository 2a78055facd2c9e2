/*
 * unicode_tab.h - character classes of the GPT-2 pre-tokenizer for every
 * Unicode code point, generated from Node's RegExp engine (the one the npm
 * reference encoders run on) by tests/tokenizer/gen_unicode.js.
 *
 * Classes (RTR_UC_*): OTHER, LETTER (\p{L}), NUMBER (\p{N}), SPACE
 * (JavaScript's \s: WhiteSpace incl. U+FEFF plus LineTerminator). Surrogates
 * and code points >= 0x110000 are OTHER.
 */
#ifndef RTR_UNICODE_TAB_H
#define RTR_UNICODE_TAB_H

#include <stdint.h>

enum { RTR_UC_OTHER = 0, RTR_UC_LETTER = 1, RTR_UC_NUMBER = 2, RTR_UC_SPACE = 3 };

extern const uint16_t rtr_uc_stage1[0x110000 >> 8];   /* (4352,) block index */
extern const uint8_t rtr_uc_stage2[];                  /* (n_blocks * 256,) class */

/* Class of code point cp (any value; out of range gives RTR_UC_OTHER). */
static inline int rtr_uc_class(uint32_t cp) {
    if (cp >= 0x110000) return RTR_UC_OTHER;
    return rtr_uc_stage2[(uint32_t)rtr_uc_stage1[cp >> 8] * 256u + (cp & 255u)];
}

#endif
