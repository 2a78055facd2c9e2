/*
 * buf.h - growable arrays: rtr_grow (the one growth routine: any element
 * type, any struct layout), and on it a byte buffer (rtr_buf) and a u32
 * vector (rtr_u32vec), the small dynamic arrays every module needs.
 *
 *     rtr_skip *items = NULL;          // any T *, with a count and a capacity
 *     size_t n = 0, cap = 0;
 *     if ((rc = RTR_GROW(items, &cap, n + 1))) return rc;   // room for one more
 *     items[n++] = x;
 *
 * Growth goes through rtr_reallocarray (so rtr_alloc_fail_at reaches it) and
 * may fail with RTR_E_NOMEM; on failure the array keeps its old contents and
 * capacity, still owned by the caller.
 */
#ifndef RTR_BUF_H
#define RTR_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Makes an array hold at least `need` elements of `elem` bytes.
 *   arrp  the address of the caller's array pointer (a T **, passed as
 *         void *); the pointer is NULL or came from rtr_malloc & co.
 *   cap   its capacity in elements (0 when the pointer is NULL).
 * If need <= *cap nothing happens. Otherwise the array is reallocated to the
 * first of 16, 32, 64, ... (or of 2 * *cap, 4 * *cap, ... when *cap > 0) that
 * is >= need, and the pointer and *cap are updated; the first *cap elements
 * are kept, the new ones are uninitialised.
 * Returns RTR_OK, or RTR_E_NOMEM (element count times size would overflow,
 * or the allocation failed) with the pointer and *cap unchanged.
 * Limits: elem > 0. Pointers into the array are invalid after a growth. */
int rtr_grow(void *arrp, size_t *cap, size_t need, size_t elem);

/* rtr_grow for a typed array pointer `arr` (an lvalue of type T *). */
#define RTR_GROW(arr, cap, need) rtr_grow(&(arr), (cap), (need), sizeof *(arr))

typedef struct rtr_buf {
    uint8_t *data;   /* owned; NULL when cap == 0 */
    size_t len;
    size_t cap;
} rtr_buf;

typedef struct rtr_u32vec {
    uint32_t *data;  /* owned */
    size_t len;
    size_t cap;
} rtr_u32vec;

/* Makes room for `extra` more bytes. Returns RTR_OK or RTR_E_NOMEM. */
int rtr_buf_reserve(rtr_buf *b, size_t extra);
int rtr_buf_append(rtr_buf *b, const void *p, size_t n);
int rtr_buf_putc(rtr_buf *b, uint8_t c);
int rtr_buf_printf(rtr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a NUL without counting it in len (so data is a C string). */
int rtr_buf_terminate(rtr_buf *b);
void rtr_buf_free(rtr_buf *b);

int rtr_u32vec_reserve(rtr_u32vec *v, size_t extra);
int rtr_u32vec_push(rtr_u32vec *v, uint32_t x);
void rtr_u32vec_free(rtr_u32vec *v);

#endif
