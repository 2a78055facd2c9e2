/*
 * buf.h - a growable byte buffer (and a u32 vector), the small dynamic arrays
 * every module needs. Growth goes through rtr_realloc and may fail with
 * RTR_E_NOMEM; on failure the buffer keeps its old contents.
 */
#ifndef RTR_BUF_H
#define RTR_BUF_H

#include <stddef.h>
#include <stdint.h>

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
