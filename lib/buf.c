/* buf.c - growable arrays: rtr_grow, the byte buffer and the u32 vector (see buf.h). */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "status.h"

int rtr_grow(void *arrp, size_t *cap, size_t need, size_t elem) {
    RTR_ASSERT(elem > 0);
    if (need <= *cap) return RTR_OK;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / elem)
            return rtr_seterr(RTR_E_NOMEM, "array too large (%zu elements of %zu bytes)", need, elem);
        ncap *= 2;
    }
    /* arrp is a T **: copy the pointer in and out rather than access a T *
     * through a void ** */
    void *old;
    memcpy(&old, arrp, sizeof old);
    void *p = rtr_reallocarray(old, ncap, elem);
    if (!p) return RTR_E_NOMEM;
    memcpy(arrp, &p, sizeof p);
    *cap = ncap;
    return RTR_OK;
}

int rtr_buf_reserve(rtr_buf *b, size_t extra) {
    if (extra > SIZE_MAX - b->len - 1) return rtr_seterr(RTR_E_NOMEM, "buffer too large");
    return RTR_GROW(b->data, &b->cap, b->len + extra);
}

int rtr_buf_append(rtr_buf *b, const void *p, size_t n) {
    int rc = rtr_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return RTR_OK;
}

int rtr_buf_putc(rtr_buf *b, uint8_t c) { return rtr_buf_append(b, &c, 1); }

int rtr_buf_printf(rtr_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return rtr_seterr(RTR_E_INVALID, "bad format");
    int rc = rtr_buf_reserve(b, (size_t)n + 1);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return RTR_OK;
}

int rtr_buf_terminate(rtr_buf *b) {
    int rc = rtr_buf_reserve(b, 1);
    if (rc) return rc;
    b->data[b->len] = '\0';
    return RTR_OK;
}

void rtr_buf_free(rtr_buf *b) {
    rtr_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int rtr_u32vec_reserve(rtr_u32vec *v, size_t extra) {
    if (extra > SIZE_MAX / 4 - v->len) return rtr_seterr(RTR_E_NOMEM, "vector too large");
    return RTR_GROW(v->data, &v->cap, v->len + extra);
}

int rtr_u32vec_push(rtr_u32vec *v, uint32_t x) {
    int rc = rtr_u32vec_reserve(v, 1);
    if (rc) return rc;
    v->data[v->len++] = x;
    return RTR_OK;
}

void rtr_u32vec_free(rtr_u32vec *v) {
    rtr_free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}
