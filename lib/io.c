/* io.c - checked file I/O: whole-file reads under a limit, atomic replace, directories (see io.h). */
#define _GNU_SOURCE
#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "buf.h"
#include "status.h"

static int io_err(const char *what, const char *path) {
    int e = errno;
    return rtr_seterr(rtr_status_from_errno(e) == RTR_E_NOTFOUND ? RTR_E_NOTFOUND
                                                                  : rtr_status_from_errno(e),
                      "%s: %s: %s", path, what, strerror(e));
}

int rtr_read_fd(int fd, const char *name, size_t max_size, uint8_t **out, size_t *len) {
    rtr_buf b = {0};
    int rc;
    for (;;) {
        /* below the limit read into the buffer; at it, read one byte aside
         * to tell the end of the stream from a stream over the limit */
        uint8_t probe, *dst = &probe;
        size_t room = 1;
        if (b.len < max_size) {
            size_t left = max_size - b.len;
            if ((rc = rtr_buf_reserve(&b, left < 65536 ? left : 65536)) != RTR_OK) goto fail;
            room = b.cap - b.len < left ? b.cap - b.len : left;
            dst = b.data + b.len;
        }
        ssize_t r = read(fd, dst, room);
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = io_err("read", name);
            goto fail;
        }
        if (r == 0) break;
        if (dst == &probe) {
            rc = rtr_seterr(RTR_E_INVALID, "%s: too large (over %zu bytes)", name, max_size);
            goto fail;
        }
        b.len += (size_t)r;
    }
    if ((rc = rtr_buf_terminate(&b)) != RTR_OK) goto fail;
    *out = b.data;
    *len = b.len;
    return RTR_OK;
fail:
    rtr_buf_free(&b);
    return rc;
}

int rtr_read_file(const char *path, size_t max_size, uint8_t **out, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return io_err("open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rc = io_err("stat", path);
        close(fd);
        return rc;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return rtr_seterr(RTR_E_INVALID, "%s: is a directory", path);
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max_size) {
        close(fd);
        return rtr_seterr(RTR_E_INVALID, "%s: too large (%lld bytes, limit %zu)", path,
                          (long long)st.st_size, max_size);
    }
    int rc;
    if (S_ISREG(st.st_mode)) {
        /* Size known: one allocation. The file may change under us; read
         * until EOF but never past the size we allocated for. */
        size_t size = (size_t)st.st_size, n = 0;
        uint8_t *buf = rtr_malloc(size + 1);
        if (!buf) {
            close(fd);
            return RTR_E_NOMEM;
        }
        while (n < size) {
            ssize_t r = read(fd, buf + n, size - n);
            if (r < 0) {
                if (errno == EINTR) continue;
                rc = io_err("read", path);
                rtr_free(buf);
                close(fd);
                return rc;
            }
            if (r == 0) break; /* truncated while reading: take what is there */
            n += (size_t)r;
        }
        buf[n] = '\0';
        *out = buf;
        *len = n;
        rc = RTR_OK;
    } else {
        rc = rtr_read_fd(fd, path, max_size, out, len);
    }
    close(fd);
    return rc;
}

static int fsync_dir_of(const char *path) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) dir[1] = '\0';
    else if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return io_err("open directory", dir);
    int rc = RTR_OK;
    if (fsync(fd) != 0 && errno != EINVAL) rc = io_err("fsync directory", dir);
    close(fd);
    return rc;
}

int rtr_write_file_atomic(const char *path, const void *data, size_t len) {
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return rtr_seterr(RTR_E_INVALID, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return io_err("create", tmp);
    const uint8_t *p = data;
    size_t left = len;
    int rc = RTR_OK;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            rc = io_err("write", tmp);
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        rc = io_err("fsync", tmp);
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = io_err("close", tmp);
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = io_err("rename", path);
        goto fail;
    }
    return fsync_dir_of(path);
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    return rc;
}

int rtr_mkdirs(const char *path) {
    char buf[PATH_MAX];
    if ((size_t)snprintf(buf, sizeof buf, "%s", path) >= sizeof buf)
        return rtr_seterr(RTR_E_INVALID, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return io_err("mkdir", buf);
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return io_err("mkdir", buf);
    struct stat st;
    if (stat(buf, &st) != 0) return io_err("stat", buf);
    if (!S_ISDIR(st.st_mode)) return rtr_seterr(RTR_E_EXISTS, "%s: exists and is not a directory", buf);
    return RTR_OK;
}

char *rtr_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *s = rtr_malloc(a + (size_t)slash + b + 1);
    if (!s) return NULL;
    memcpy(s, dir, a);
    if (slash) s[a] = '/';
    memcpy(s + a + slash, name, b + 1);
    return s;
}

int rtr_path_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

int rtr_rmtree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? RTR_OK : io_err("stat", path);
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return io_err("opendir", path);
        struct dirent *e;
        int rc = RTR_OK;
        while (rc == RTR_OK && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *child = rtr_path_join(path, e->d_name);
            if (!child) {
                rc = RTR_E_NOMEM;
                break;
            }
            rc = rtr_rmtree(child);
            rtr_free(child);
        }
        closedir(d);
        if (rc) return rc;
        if (rmdir(path) != 0) return io_err("rmdir", path);
        return RTR_OK;
    }
    if (unlink(path) != 0) return io_err("unlink", path);
    return RTR_OK;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

void rtr_map_populate(const void *addr, size_t len) {
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;
    if (!addr || !len) return;
    uintptr_t lo = (uintptr_t)addr / page * page, hi = (uintptr_t)addr + len;
    if (madvise((void *)lo, hi - lo, MADV_POPULATE_READ) == 0) return;
    if (errno != EINVAL) return;   /* a range no longer mapped (EFAULT, ENOMEM): nothing to do */
    volatile unsigned char sink = 0;
    for (uintptr_t a = (uintptr_t)addr; a < hi; a += page) sink ^= *(const unsigned char *)a;   /* a byte of each page */
    (void)sink;
}

uint64_t rtr_map_populate_file(const char *path) {
    char real[PATH_MAX], line[PATH_MAX + 128];
    struct stat st;
    if (!realpath(path, real) || stat(real, &st) != 0) return 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 0;
    uint64_t bytes = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        unsigned long long off;
        int name = 0;
        if (sscanf(line, "%lx-%lx %*s %llx %*s %*s %n", &lo, &hi, &off, &name) < 3 || !name) continue;
        char *p = line + name;
        p[strcspn(p, "\n")] = '\0';
        if (strcmp(p, real) || off >= (unsigned long long)st.st_size) continue;
        uint64_t len = hi - lo, left = (uint64_t)st.st_size - off;
        if (len > left) len = left;   /* a map past the file's end: its pages there have nothing to read */
        rtr_map_populate((const void *)lo, (size_t)len);
        bytes += len;
    }
    fclose(f);
    return bytes;
}

uint64_t rtr_path_bytes(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    if (S_ISREG(st.st_mode)) return (uint64_t)st.st_size;
    if (!S_ISDIR(st.st_mode)) return 0;
    DIR *d = opendir(path);
    if (!d) return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *child = rtr_path_join(path, e->d_name);
        if (child) n += rtr_path_bytes(child);
        rtr_free(child);
    }
    closedir(d);
    return n;
}
