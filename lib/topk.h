/*
 * topk.h - the k smallest scores seen so far, kept sorted by insertion: for
 * the short lists (k up to a few hundred) of nearest-neighbour scans, where
 * almost every candidate is rejected by the first comparison. Header-only.
 */
#ifndef RTR_TOPK_H
#define RTR_TOPK_H

#include <stdint.h>

/* d, l: the k best so far, ascending (FLT_MAX and -1 where empty). Ties keep
 * the earlier entry first. */
static inline void rtr_topk_put(float *d, int64_t *l, uint32_t k, float s, int64_t id) {
    if (!(s < d[k - 1])) return;
    uint32_t r = k - 1;
    for (; r > 0 && s < d[r - 1]; r--) {
        d[r] = d[r - 1];
        l[r] = l[r - 1];
    }
    d[r] = s;
    l[r] = id;
}

#endif
