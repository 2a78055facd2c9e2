/* testutil.h - small helpers shared by the cmocka tests (header-only). */
#ifndef RTR_TESTUTIL_H
#define RTR_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/io.h"

/* A fresh temporary directory (caller frees the string and removes the tree). */
static inline char *tu_tmpdir(const char *tag) {
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "/tmp/retro-test-%s-XXXXXX", tag);
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static inline void tu_write(const char *dir, const char *name, const void *data, size_t len) {
    char *p = rtr_path_join(dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) { perror(p); abort(); }
    if (len && fwrite(data, 1, len, f) != len) abort();
    fclose(f);
    free(p);
}

static inline void tu_write_str(const char *dir, const char *name, const char *s) {
    tu_write(dir, name, s, strlen(s));
}

#endif
