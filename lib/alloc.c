/* alloc.c - the one allocation path, with the test hook that makes the nth allocation fail (see alloc.h). */
#include "alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

static atomic_long g_fail_at;   /* 0 = never fail */
static atomic_long g_count;

void rtr_alloc_fail_at(long n) {
    atomic_store(&g_count, 0);
    atomic_store(&g_fail_at, n);
}

long rtr_alloc_count(void) { return atomic_load(&g_count); }

static int should_fail(void) {
    long c = atomic_fetch_add(&g_count, 1) + 1;
    long f = atomic_load(&g_fail_at);
    return f > 0 && c >= f;
}

static void *nomem(size_t size) {
    rtr_seterr(RTR_E_NOMEM, "out of memory allocating %zu bytes", size);
    return NULL;
}

void *rtr_malloc(size_t size) {
    if (should_fail()) return nomem(size);
    void *p = malloc(size ? size : 1);
    return p ? p : nomem(size);
}

void *rtr_calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) return nomem(SIZE_MAX);
    if (should_fail()) return nomem(n * size);
    void *p = calloc(n ? n : 1, size ? size : 1);
    return p ? p : nomem(n * size);
}

void *rtr_realloc(void *p, size_t size) {
    if (should_fail()) return nomem(size);
    void *q = realloc(p, size ? size : 1);
    return q ? q : nomem(size);
}

void *rtr_reallocarray(void *p, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) return nomem(SIZE_MAX);
    return rtr_realloc(p, n * size);
}

char *rtr_strndup(const char *s, size_t n) {
    size_t len = strnlen(s, n);
    char *d = rtr_malloc(len + 1);
    if (!d) return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *rtr_strdup(const char *s) { return rtr_strndup(s, SIZE_MAX); }

void rtr_free(void *p) { free(p); }
