/*
 * alloc.h - the one allocation path of the engine.
 *
 * All library allocation goes through these functions so that tests can make
 * the nth allocation fail (rtr_alloc_fail_at) and check that every caller
 * cleans up and returns RTR_E_NOMEM. Sizes are checked for overflow.
 * On failure they return NULL and record RTR_E_NOMEM with the size in the
 * thread's error detail.
 */
#ifndef RTR_ALLOC_H
#define RTR_ALLOC_H

#include <stddef.h>

void *rtr_malloc(size_t size);
void *rtr_calloc(size_t n, size_t size);          /* n*size checked for overflow */
void *rtr_realloc(void *p, size_t size);
void *rtr_reallocarray(void *p, size_t n, size_t size);
char *rtr_strdup(const char *s);
char *rtr_strndup(const char *s, size_t n);
void rtr_free(void *p);                            /* NULL-safe */

/* Test hook: the nth allocation from now (1-based) and all after it fail
 * until reset with n = 0. Counts across threads. */
void rtr_alloc_fail_at(long n);
/* Number of allocations made since the last rtr_alloc_fail_at() call. */
long rtr_alloc_count(void);

#endif
