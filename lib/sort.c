/* sort.c - compare functions for qsort and bsearch (see sort.h). */
#include "sort.h"

#include <stdint.h>

int rtr_cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}
