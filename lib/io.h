/*
 * io.h - checked file I/O.
 *
 * rtr_read_file reads a whole file, refusing files larger than a limit before
 * allocating. rtr_write_file_atomic writes a temporary file beside the target,
 * fsyncs it, renames it over the target and fsyncs the directory, so a crash
 * leaves either the old or the new file, never a mix.
 * Every failure records "PATH: reason" in the thread's error detail.
 */
#ifndef RTR_IO_H
#define RTR_IO_H

#include <stddef.h>
#include <stdint.h>

/* Reads `path` into a fresh buffer (NUL-terminated, NUL not counted in *len).
 * Files over max_size bytes fail with RTR_E_INVALID ("too large").
 * *out is owned by the caller (rtr_free). */
int rtr_read_file(const char *path, size_t max_size, uint8_t **out, size_t *len);

/* Reads a whole stream (standard input, a pipe) the same way: one of more
 * than max_size bytes fails with RTR_E_INVALID ("too large"). */
int rtr_read_fd(int fd, const char *name, size_t max_size, uint8_t **out, size_t *len);

/* Writes len bytes atomically to path (tmp file + fsync + rename + dir fsync). */
int rtr_write_file_atomic(const char *path, const void *data, size_t len);

/* mkdir -p with mode 0755. Existing directories are fine. */
int rtr_mkdirs(const char *path);

/* Joins a directory and a name into a fresh string (caller frees). */
char *rtr_path_join(const char *dir, const char *name);

/* 1 if path exists (any type), 0 if not. */
int rtr_path_exists(const char *path);

/* Removes a directory tree (rm -rf); missing is fine. */
int rtr_rmtree(const char *path);

#endif
