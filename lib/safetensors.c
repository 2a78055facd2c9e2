/* safetensors.c - reading (validated) and writing safetensors files (see safetensors.h). */
#include "lib/safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/io.h"
#include "lib/status.h"

#define MAX_HEADER ((uint64_t)100 << 20)
#define MAX_FILE ((size_t)1 << 40)

static const struct { const char *name; size_t size; } dtypes[RTR_ST_DTYPES] = {
    {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8}, {"I32", 4}, {"U8", 1},
};

const char *rtr_st_dtype_name(int d) { return d >= 0 && d < RTR_ST_DTYPES ? dtypes[d].name : "?"; }

struct rtr_safetensors {
    uint8_t *buf;            /* the whole file */
    rtr_st_tensor *t;
    size_t n;
    json_t *meta;            /* object of strings, or NULL */
    json_t *header;          /* keeps the names alive */
};

static int cmp_offset(const void *a, const void *b) {
    const rtr_st_tensor *x = a, *y = b;
    const uint8_t *p = x->data, *q = y->data;
    return p < q ? -1 : p > q;
}

static int parse_owned(uint8_t *buf, size_t len, const char *name, rtr_safetensors **out) {
    *out = NULL;
    rtr_safetensors *st = rtr_calloc(1, sizeof *st);
    if (!st) { rtr_free(buf); return RTR_E_NOMEM; }
    st->buf = buf;
    int rc = RTR_OK;
    uint64_t hlen = 0;
    for (int i = 7; len >= 8 && i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (len < 8) rc = rtr_seterr(RTR_E_CORRUPT, "%s: truncated: %zu bytes, no header length", name, len);
    else if (hlen < 2 || hlen > MAX_HEADER) rc = rtr_seterr(RTR_E_CORRUPT, "%s: bad header length %llu", name, (unsigned long long)hlen);
    else if (hlen > len - 8) rc = rtr_seterr(RTR_E_CORRUPT, "%s: truncated: header of %llu bytes, file has %zu", name, (unsigned long long)hlen, len);
    if (rc) goto fail;
    json_error_t err;
    st->header = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &err);
    if (!st->header || !json_is_object(st->header)) {
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: header is not a JSON object: %s", name, st->header ? "" : err.text);
        goto fail;
    }
    const uint8_t *data = buf + 8 + hlen;
    uint64_t dlen = len - 8 - hlen;
    size_t cap = json_object_size(st->header);
    if (cap && !(st->t = rtr_calloc(cap, sizeof *st->t))) { rc = RTR_E_NOMEM; goto fail; }
    const char *key;
    json_t *v;
    json_object_foreach(st->header, key, v) {
        if (!strcmp(key, "__metadata__")) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(v)) { rc = rtr_seterr(RTR_E_CORRUPT, "%s: __metadata__ is not an object", name); goto fail; }
            json_object_foreach(v, mk, mv) if (!json_is_string(mv)) {
                rc = rtr_seterr(RTR_E_CORRUPT, "%s: metadata '%s' is not a string", name, mk);
                goto fail;
            }
            st->meta = v;
            continue;
        }
        rtr_st_tensor *t = &st->t[st->n];
        json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"), *off = json_object_get(v, "data_offsets");
        if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(sh) || !json_is_array(off) || json_array_size(off) != 2) {
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: tensor '%s': needs dtype, shape and data_offsets", name, key);
            goto fail;
        }
        t->name = key;
        t->dtype = -1;
        for (int d = 0; d < RTR_ST_DTYPES; d++)
            if (!strcmp(json_string_value(dt), dtypes[d].name)) t->dtype = d;
        if (t->dtype < 0) { rc = rtr_seterr(RTR_E_CORRUPT, "%s: tensor '%s': unknown dtype '%s'", name, key, json_string_value(dt)); goto fail; }
        if (json_array_size(sh) > RTR_ST_MAX_DIMS) { rc = rtr_seterr(RTR_E_CORRUPT, "%s: tensor '%s': more than %d dimensions", name, key, RTR_ST_MAX_DIMS); goto fail; }
        t->ndim = (int)json_array_size(sh);
        uint64_t count = 1;
        for (int i = 0; i < t->ndim; i++) {
            json_t *d = json_array_get(sh, (size_t)i);
            if (!json_is_integer(d) || json_integer_value(d) < 0) { rc = rtr_seterr(RTR_E_CORRUPT, "%s: tensor '%s': bad shape", name, key); goto fail; }
            t->shape[i] = json_integer_value(d);
            if (t->shape[i] && count > UINT64_MAX / (uint64_t)t->shape[i]) { rc = rtr_seterr(RTR_E_CORRUPT, "%s: tensor '%s': shape overflows", name, key); goto fail; }
            count *= (uint64_t)t->shape[i];
        }
        json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
        if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 || json_integer_value(e) < json_integer_value(b) ||
            (uint64_t)json_integer_value(e) > dlen) {
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: tensor '%s': data_offsets outside the %llu data bytes", name, key, (unsigned long long)dlen);
            goto fail;
        }
        uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(e);
        if (count > UINT64_MAX / dtypes[t->dtype].size || count * dtypes[t->dtype].size != end - begin) {
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: tensor '%s': %llu bytes for its shape and dtype, offsets give %llu", name, key,
                            (unsigned long long)(count * dtypes[t->dtype].size), (unsigned long long)(end - begin));
            goto fail;
        }
        t->nbytes = end - begin;
        t->data = data + begin;
        st->n++;
    }
    /* the tensors tile the data exactly */
    rtr_st_tensor *sorted = st->n ? rtr_malloc(st->n * sizeof *sorted) : NULL;
    if (st->n && !sorted) { rc = RTR_E_NOMEM; goto fail; }
    if (st->n) memcpy(sorted, st->t, st->n * sizeof *sorted);
    if (st->n) qsort(sorted, st->n, sizeof *sorted, cmp_offset);
    const uint8_t *at = data;
    for (size_t i = 0; i < st->n && !rc; i++) {
        if ((const uint8_t *)sorted[i].data != at)
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: tensor '%s' does not start where the previous one ends (gap or overlap)", name, sorted[i].name);
        at = (const uint8_t *)sorted[i].data + sorted[i].nbytes;
    }
    if (!rc && at != data + dlen) rc = rtr_seterr(RTR_E_CORRUPT, "%s: %llu bytes after the last tensor", name, (unsigned long long)(data + dlen - at));
    rtr_free(sorted);
    if (rc) goto fail;
    *out = st;
    return RTR_OK;
fail:
    rtr_st_free(st);
    return rc;
}

int rtr_st_parse(const void *data, size_t len, const char *name, rtr_safetensors **out) {
    uint8_t *copy = rtr_malloc(len ? len : 1);
    if (!copy) return RTR_E_NOMEM;
    if (len) memcpy(copy, data, len);
    return parse_owned(copy, len, name, out);
}

int rtr_st_load(const char *path, rtr_safetensors **out) {
    uint8_t *buf;
    size_t len;
    int rc = rtr_read_file(path, MAX_FILE, &buf, &len);
    return rc ? rc : parse_owned(buf, len, path, out);
}

void rtr_st_free(rtr_safetensors *st) {
    if (!st) return;
    json_decref(st->header);
    rtr_free(st->t);
    rtr_free(st->buf);
    rtr_free(st);
}

size_t rtr_st_count(const rtr_safetensors *st) { return st->n; }
const rtr_st_tensor *rtr_st_get(const rtr_safetensors *st, size_t i) { return i < st->n ? &st->t[i] : NULL; }

const rtr_st_tensor *rtr_st_find(const rtr_safetensors *st, const char *name) {
    for (size_t i = 0; i < st->n; i++)
        if (!strcmp(st->t[i].name, name)) return &st->t[i];
    return NULL;
}

const char *rtr_st_meta(const rtr_safetensors *st, const char *key) {
    return st->meta ? json_string_value(json_object_get(st->meta, key)) : NULL;
}

/* --- writing ---------------------------------------------------------------------- */
struct rtr_st_writer {
    json_t *header;   /* name -> entry, in add order */
    json_t *meta;
    rtr_buf data;
};

int rtr_st_writer_new(rtr_st_writer **out) {
    rtr_st_writer *w = rtr_calloc(1, sizeof *w);
    if (!w) return RTR_E_NOMEM;
    w->header = json_object();
    w->meta = json_object();
    if (!w->header || !w->meta) {
        rtr_st_writer_free(w);
        return rtr_seterr(RTR_E_NOMEM, "safetensors header");
    }
    *out = w;
    return RTR_OK;
}

int rtr_st_writer_add(rtr_st_writer *w, const char *name, int dtype, int ndim, const int64_t *shape, const void *data) {
    if (dtype < 0 || dtype >= RTR_ST_DTYPES || ndim < 0 || ndim > RTR_ST_MAX_DIMS || !strcmp(name, "__metadata__"))
        return rtr_seterr(RTR_E_INVALID, "safetensors: bad tensor '%s'", name);
    if (json_object_get(w->header, name)) return rtr_seterr(RTR_E_INVALID, "safetensors: duplicate tensor '%s'", name);
    uint64_t count = 1;
    json_t *sh = json_array();
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) { json_decref(sh); return rtr_seterr(RTR_E_INVALID, "safetensors: negative dimension in '%s'", name); }
        count *= (uint64_t)shape[i];
        json_array_append_new(sh, json_integer(shape[i]));
    }
    uint64_t nbytes = count * dtypes[dtype].size, begin = w->data.len;
    int rc = rtr_buf_append(&w->data, data, nbytes);
    if (rc) { json_decref(sh); return rc; }
    json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtypes[dtype].name, "shape", sh, "data_offsets",
                          (json_int_t)begin, (json_int_t)(begin + nbytes));
    if (!e || json_object_set_new(w->header, name, e)) return rtr_seterr(RTR_E_NOMEM, "safetensors header");
    return RTR_OK;
}

int rtr_st_writer_meta(rtr_st_writer *w, const char *key, const char *value) {
    return json_object_set_new(w->meta, key, json_string(value)) ? rtr_seterr(RTR_E_INVALID, "safetensors: bad metadata") : RTR_OK;
}

int rtr_st_writer_save(const rtr_st_writer *w, const char *path) {
    json_t *h = json_deep_copy(w->header);
    if (!h) return rtr_seterr(RTR_E_NOMEM, "safetensors header");
    if (json_object_size(w->meta)) json_object_set(h, "__metadata__", w->meta);
    char *text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!text) return rtr_seterr(RTR_E_NOMEM, "safetensors header");
    size_t tl = strlen(text), hl = (tl + 7) & ~(size_t)7;   /* pad with spaces to 8 bytes */
    rtr_buf out = {0};
    int rc = rtr_buf_reserve(&out, 8 + hl + w->data.len);
    if (!rc) {
        for (int i = 0; i < 8; i++) out.data[i] = (uint8_t)((uint64_t)hl >> (8 * i));
        memcpy(out.data + 8, text, tl);
        memset(out.data + 8 + tl, ' ', hl - tl);
        if (w->data.len) memcpy(out.data + 8 + hl, w->data.data, w->data.len);
        out.len = 8 + hl + w->data.len;
        rc = rtr_write_file_atomic(path, out.data, out.len);
    }
    free(text);
    rtr_buf_free(&out);
    return rc;
}

void rtr_st_writer_free(rtr_st_writer *w) {
    if (!w) return;
    json_decref(w->header);
    json_decref(w->meta);
    rtr_buf_free(&w->data);
    rtr_free(w);
}
