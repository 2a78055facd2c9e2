/*
 * safetensors.h - reading and writing safetensors files (the format PyTorch
 * and most model hubs use for weights), with every field validated.
 *
 *     rtr_st_writer *w; rtr_st_writer_new(&w);
 *     int64_t shape[2] = {4, 8};
 *     rtr_st_writer_add(w, "wte", RTR_ST_F32, 2, shape, data);   // data copied
 *     rtr_st_writer_meta(w, "step", "100");
 *     rtr_st_writer_save(w, "ckpt.safetensors");                 // atomic
 *     rtr_st_writer_free(w);
 *
 *     rtr_safetensors *st; rtr_st_load("ckpt.safetensors", &st);
 *     const rtr_st_tensor *t = rtr_st_find(st, "wte");            // t->data, t->shape
 *     rtr_st_free(st);
 *
 * File format:
 *   OFFSET  SIZE  DESCRIPTION
 *   0       8     N: header length, u64 little-endian (1 .. 100 MiB)
 *   8       N     header: a JSON object, UTF-8, may end in spaces; each key is
 *                 a tensor name -> {"dtype": "F32", "shape": [d0, ...],
 *                 "data_offsets": [begin, end]}, and the optional key
 *                 "__metadata__" -> {string: string}
 *   8+N     ..    data: the tensors' bytes, little-endian, at their offsets
 *                 (relative to 8+N), covering the data exactly: no gaps, no
 *                 overlaps, nothing after the last tensor
 * Checked on load, before anything is allocated from it: N against the file
 * length; JSON validity, no duplicate keys; dtypes known; at most 8
 * dimensions, each >= 0; the product of the shape times the dtype's size
 * equals end - begin without overflow; offsets inside the data and tiling it.
 * A failure is RTR_E_CORRUPT with "PATH: reason".
 */
#ifndef RTR_SAFETENSORS_H
#define RTR_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum rtr_st_dtype { RTR_ST_F32, RTR_ST_F16, RTR_ST_BF16, RTR_ST_F64, RTR_ST_I64, RTR_ST_I32, RTR_ST_U8, RTR_ST_DTYPES };

#define RTR_ST_MAX_DIMS 8

typedef struct rtr_st_tensor {
    const char *name;            /* NUL-terminated; owned by the file object */
    int dtype;
    int ndim;
    int64_t shape[RTR_ST_MAX_DIMS];
    uint64_t nbytes;
    const void *data;            /* inside the loaded buffer; 8-byte alignment not promised */
} rtr_st_tensor;

typedef struct rtr_safetensors rtr_safetensors;

const char *rtr_st_dtype_name(int dtype);

int rtr_st_load(const char *path, rtr_safetensors **out);
/* Parses a file already in memory (data is copied). name is used in errors. */
int rtr_st_parse(const void *data, size_t len, const char *name, rtr_safetensors **out);
void rtr_st_free(rtr_safetensors *st);   /* NULL-safe */
size_t rtr_st_count(const rtr_safetensors *st);
const rtr_st_tensor *rtr_st_get(const rtr_safetensors *st, size_t i);   /* in file order */
const rtr_st_tensor *rtr_st_find(const rtr_safetensors *st, const char *name);
/* A metadata value, or NULL. */
const char *rtr_st_meta(const rtr_safetensors *st, const char *key);

typedef struct rtr_st_writer rtr_st_writer;
int rtr_st_writer_new(rtr_st_writer **out);
/* Adds a tensor (its bytes are copied). Names must be unique, not "__metadata__". */
int rtr_st_writer_add(rtr_st_writer *w, const char *name, int dtype, int ndim, const int64_t *shape, const void *data);
int rtr_st_writer_meta(rtr_st_writer *w, const char *key, const char *value);
int rtr_st_writer_save(const rtr_st_writer *w, const char *path);   /* atomic replace */
void rtr_st_writer_free(rtr_st_writer *w);

#endif
