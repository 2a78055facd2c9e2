/* fuzz_util.h - what the libFuzzer harnesses share (header-only). Each harness
 * feeds one parser arbitrary bytes; a crash, a sanitizer report, a leak or a
 * broken invariant (FUZZ_CHECK) is a finding. Statuses are fine: bad input is
 * supposed to get one. */
#ifndef RTR_FUZZ_UTIL_H
#define RTR_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <xxhash.h>

#include "lib/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of a successful parse; aborts (a finding) when it does not hold. */
#define FUZZ_CHECK(e)                                                                   \
    do {                                                                                \
        if (!(e)) {                                                                     \
            fprintf(stderr, "fuzz: check failed: %s (%s:%d)\n", #e, __FILE__, __LINE__); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* A failure must say what went wrong. */
#define FUZZ_FAILED_WELL(rc) FUZZ_CHECK((rc) < 0 && rtr_errdetail()[0] != '\0')

/* Rewrites the XXH64 (seed 0) that ends a file of size bytes (>= 16), so that a harness gets past
 * the checksum to the parser behind it. */
static inline void fuzz_reseal_xxh64(uint8_t *b, size_t size) {
    uint64_t h = XXH64(b, size - 8, 0);
    for (int i = 0; i < 8; i++) b[size - 8 + i] = (uint8_t)(h >> (8 * i));
}

#endif
