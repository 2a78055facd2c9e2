/*
 * split.h - the training / validation split of a knowledge base's documents,
 * defined once for training, evaluation and the exclusion of validation
 * documents from retrieval.
 *
 * A document is in the validation split when the first 8 bytes of its
 * content hash (XXH3-128 of its text, so stable across re-ingestion), mixed,
 * modulo 1e6, fall below val_frac * 1e6.
 */
#ifndef RTR_SPLIT_H
#define RTR_SPLIT_H

#include <stdint.h>
#include <string.h>

enum { RTR_SPLIT_TRAIN = 0, RTR_SPLIT_VAL = 1 };

/* 1 if a document with this content hash is in the validation split. */
static inline int rtr_split_is_val(const uint8_t content_hash[16], double val_frac) {
    uint64_t h;
    memcpy(&h, content_hash, 8);
    h = (h ^ (h >> 31)) * 0x94D049BB133111EBull;   /* spread every bit into the low ones */
    h ^= h >> 29;
    return (double)(h % 1000000) < val_frac * 1e6;
}

#endif
