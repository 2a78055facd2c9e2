/* status.c - status codes, their text and the thread-local error detail (see status.h). */
#include "status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DETAIL_MAX 1024

static _Thread_local char tl_detail[DETAIL_MAX];
static _Thread_local int tl_code;

const char *rtr_strerror(int status) {
    switch (status) {
    case RTR_OK: return "success";
    case RTR_E_NOMEM: return "out of memory";
    case RTR_E_IO: return "input/output error";
    case RTR_E_CORRUPT: return "corrupt or truncated file";
    case RTR_E_INVALID: return "invalid argument";
    case RTR_E_NOTFOUND: return "not found";
    case RTR_E_EXISTS: return "already exists";
    case RTR_E_MISMATCH: return "mismatch with the recorded configuration";
    case RTR_E_LMDB: return "LMDB error";
    case RTR_E_FAISS: return "FAISS error";
    case RTR_E_NET: return "network error";
    case RTR_E_VERSION: return "written by a newer version";
    case RTR_E_BUSY: return "resource busy";
    case RTR_E_FULL: return "no space left";
    case RTR_E_INTERRUPTED: return "interrupted";
    default: return "unknown error";
    }
}

const char *rtr_errdetail(void) {
    if (tl_detail[0] == '\0' && tl_code != RTR_OK) return rtr_strerror(tl_code);
    return tl_detail;
}

int rtr_errcode(void) { return tl_code; }

int rtr_seterr(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_detail, sizeof tl_detail, fmt, ap);
    va_end(ap);
    tl_code = status;
    return status;
}

int rtr_errprefix(int status, const char *fmt, ...) {
    char prefix[512], old[DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%s", rtr_errdetail());
    /* Truncation of an over-long detail is fine. */
    size_t pl = strlen(prefix), ol = strlen(old);
    if (pl > DETAIL_MAX - 3) pl = DETAIL_MAX - 3;
    if (ol > DETAIL_MAX - 3 - pl) ol = DETAIL_MAX - 3 - pl;
    memcpy(tl_detail, prefix, pl);
    memcpy(tl_detail + pl, ": ", 2);
    memcpy(tl_detail + pl + 2, old, ol);
    tl_detail[pl + 2 + ol] = '\0';
    tl_code = status;
    return status;
}

void rtr_clearerr(void) {
    tl_detail[0] = '\0';
    tl_code = RTR_OK;
}

int rtr_status_from_errno(int err) {
    switch (err) {
    case ENOMEM: return RTR_E_NOMEM;
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return RTR_E_FULL;
    case ENOENT: return RTR_E_NOTFOUND;
    case EEXIST: return RTR_E_EXISTS;
    case EINTR: return RTR_E_INTERRUPTED;
    case EINVAL: return RTR_E_INVALID;
    default: return RTR_E_IO;
    }
}

void rtr_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "retro: assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}
