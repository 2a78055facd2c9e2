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

/* The bytes of the file at path, or of the files in the directory at path and below it; 0 if none. */
uint64_t rtr_path_bytes(const char *path);

/* Maps the pages of [addr, addr + len) (a read-only file mapping) into the process, as a read of each
 * would, without the fault each read takes (a few microseconds apiece in a virtual machine; a query of
 * a large knowledge base touches hundreds): MADV_POPULATE_READ, or a read of every page where the kernel
 * lacks it (before Linux 5.14). Pages not in the page cache are read from the file. */
void rtr_map_populate(const void *addr, size_t len);

/* rtr_map_populate over each of the process's maps of the file at path (as /proc/self/maps names it),
 * up to the file's end; the bytes. 0 where /proc is not mounted. */
uint64_t rtr_map_populate_file(const char *path);

#endif
