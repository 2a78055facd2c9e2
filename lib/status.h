/*
 * status.h - status codes and error text for the whole engine.
 *
 * Every library call that can fail because of the world (I/O, a corrupt file,
 * memory, LMDB, FAISS, the network) returns an int: RTR_OK (0) or a negative
 * RTR_E_* code. rtr_strerror() names the code; rtr_errdetail() returns the
 * thread-local detail of the most recent failure on this thread, for example
 * "kb/tokenizer.rtok: truncated: merge table needs 4096 bytes, 12 left".
 *
 * Library code sets the detail with rtr_seterr() at the place that knows the
 * file and the reason, and passes the code up unchanged. Only cli/ turns a code
 * into a message and an exit status.
 *
 *     int rc = rtr_tokenizer_load(path, &tok);
 *     if (rc < 0) fprintf(stderr, "retro: %s\n", rtr_errdetail());
 *
 * Bugs (violated invariants) are caught by RTR_ASSERT, which stays on in
 * release builds.
 */
#ifndef RTR_STATUS_H
#define RTR_STATUS_H

#include <stdarg.h>

enum {
    RTR_OK = 0,
    RTR_E_NOMEM = -1,       /* an allocation failed */
    RTR_E_IO = -2,          /* read/write/open failed (errno in the detail) */
    RTR_E_CORRUPT = -3,     /* a file is truncated or its contents are invalid */
    RTR_E_INVALID = -4,     /* bad argument or bad user input */
    RTR_E_NOTFOUND = -5,    /* no such document/chunk/file/key */
    RTR_E_EXISTS = -6,      /* something is already there */
    RTR_E_MISMATCH = -7,    /* tokenizer/embedder/config differs from the one recorded */
    RTR_E_LMDB = -8,        /* an LMDB call failed */
    RTR_E_FAISS = -9,       /* a FAISS call failed */
    RTR_E_NET = -10,        /* a network call failed */
    RTR_E_VERSION = -11,    /* a file written by a newer version */
    RTR_E_BUSY = -12,       /* another process holds the lock */
    RTR_E_FULL = -13,       /* disk full or quota exceeded */
    RTR_E_INTERRUPTED = -14 /* stopped by a signal or a callback */
};

/* Static text for a status code; never NULL. */
const char *rtr_strerror(int status);

/* Detail of the last failure on this thread ("" if none). Valid until the next
 * rtr_seterr() on this thread. Falls back to rtr_strerror(code) when a
 * failure was recorded without detail. */
const char *rtr_errdetail(void);

/* The code recorded with the last detail on this thread (RTR_OK if none). */
int rtr_errcode(void);

/* Records status and a printf-style detail for this thread; returns status so
 * that callers can write `return rtr_seterr(RTR_E_IO, "%s: %s", p, strerror(errno));`. */
int rtr_seterr(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefixes the current detail with "prefix: " (used to add a file name that
 * the inner layer did not know). Returns status. */
int rtr_errprefix(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clears this thread's detail. */
void rtr_clearerr(void);

/* Maps an errno value to an RTR_E_* code (ENOMEM -> NOMEM, ENOSPC/EDQUOT -> FULL, ...). */
int rtr_status_from_errno(int err);

/* Assertion that stays on in release builds. */
void rtr_assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));
#define RTR_ASSERT(e) ((e) ? (void)0 : rtr_assert_fail(#e, __FILE__, __LINE__))

#endif
