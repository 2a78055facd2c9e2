/*
 * sort.h - compare functions for qsort and bsearch, written once.
 *
 *     qsort(ids, n, sizeof *ids, rtr_cmp_u64);
 *     uint64_t *hit = bsearch(&id, ids, n, sizeof *ids, rtr_cmp_u64);
 */
#ifndef RTR_SORT_H
#define RTR_SORT_H

/* Orders two uint64_t (a and b point to them) ascending: -1, 0 or 1.
 * No subtraction, so no overflow for any pair of values. */
int rtr_cmp_u64(const void *a, const void *b);

#endif
