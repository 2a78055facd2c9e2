/* vectors.c - a knowledge base's vectors: the embedder and vector index its manifest names (see vectors.h). */
#include "index/vectors.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"

struct rtr_kb_vectors {
    rtr_embedder *embedder;
    rtr_vectors_section sec;   /* the shards to load (sec.embedder_desc: the embedder's canonical JSON) */
    rtr_vindex_files *files;   /* the shards, open since rtr_kb_vectors_open */
    pthread_mutex_t lock;      /* guards loading loaded and mapped */
    rtr_vindex *loaded;        /* NULL until first asked for (rtr_kb_vectors_vindex) */
    rtr_vindex *mapped;        /* likewise (rtr_kb_vectors_search_index) */
};

void rtr_kb_vectors_close(rtr_kb_vectors *v) {
    if (!v) return;
    rtr_embedder_free(v->embedder);
    rtr_vindex_free(v->loaded);
    rtr_vindex_free(v->mapped);
    rtr_vectors_section_free(&v->sec);
    rtr_vindex_files_close(v->files);
    pthread_mutex_destroy(&v->lock);
    rtr_free(v);
}

void rtr_vectors_section_free(rtr_vectors_section *x) {
    rtr_vindex_file_names_free(x->shards, (uint32_t)x->n_shards);
    rtr_vindex_file_names_free(x->codes, (uint32_t)x->n_shards);
    rtr_free(x->shards);
    rtr_free(x->codes);
    rtr_free(x->embedder_desc);
    memset(x, 0, sizeof *x);
}

/* {"file": NAME, "xxh64": HEX, "bytes": N} (bytes absent before sizes were recorded: 0, not checked). */
static int parse_file(json_t *o, const char *where, size_t i, rtr_vindex_file *out) {
    const char *file = NULL, *sum = NULL;
    json_int_t bytes = 0;
    if (json_unpack(o, "{s:s, s:s, s?I}", "file", &file, "xxh64", &sum, "bytes", &bytes) || strchr(file, '/') ||
        !*file || strlen(sum) != 16 || strspn(sum, "0123456789abcdefABCDEF") != 16 || bytes < 0)
        return rtr_seterr(RTR_E_CORRUPT, "%s: bad shard entry %zu", where, i);
    if (!(out->name = rtr_strdup(file))) return RTR_E_NOMEM;
    out->xxh64 = strtoull(sum, NULL, 16);
    out->bytes = (uint64_t)bytes;
    return RTR_OK;
}

int rtr_vectors_section_parse(const json_t *ix, const char *where, rtr_vectors_section *out) {
    memset(out, 0, sizeof *out);
    json_t *emb = NULL, *files = NULL;
    const char *factory = NULL;
    json_int_t nprobe = 0, upto = 0, trained = 0, version = 0, dim = 0;
    if (json_unpack((json_t *)ix, "{s:I, s:o, s:s, s:I, s:o, s:I, s:I, s?I}", "version", &version, "embedder", &emb,
                    "factory", &factory, "nprobe", &nprobe, "shards", &files, "indexed_upto", &upto, "trained_on",
                    &trained, "dim", &dim) ||
        !json_is_object(emb) || !json_is_array(files) || nprobe < 0 || nprobe > UINT32_MAX || upto < 0 || trained < 0 ||
        dim < 0 || dim > 65536 || strlen(factory) >= sizeof out->factory)
        return rtr_seterr(RTR_E_CORRUPT, "%s: bad \"index\" section", where);
    if (version > 1)
        return rtr_seterr(RTR_E_VERSION, "%s: index version %lld is newer than this retro supports (1)", where,
                          (long long)version);
    size_t n = json_array_size(files);
    if (n == 0 || n > 1024) return rtr_seterr(RTR_E_CORRUPT, "%s: bad shard count", where);
    snprintf(out->factory, sizeof out->factory, "%s", factory);
    out->nprobe = (uint32_t)nprobe;
    out->dim = (uint32_t)dim;
    out->indexed_upto = (uint64_t)upto;
    out->trained_on = (uint64_t)trained;
    out->shards = rtr_calloc(n, sizeof *out->shards);
    out->codes = rtr_calloc(n, sizeof *out->codes);
    int rc = out->shards && out->codes ? RTR_OK : RTR_E_NOMEM;
    out->n_shards = rc ? 0 : n;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *entry = json_array_get(files, i), *codes = NULL;
        if ((rc = parse_file(entry, where, i, &out->shards[i]))) break;
        if (json_unpack(entry, "{s?o}", "codes", &codes) || (codes && !json_is_object(codes)))
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: bad shard entry %zu", where, i);
        else if (codes) rc = parse_file(codes, where, i, &out->codes[i]);
    }
    if (!rc && !(out->embedder_desc = json_dumps(emb, JSON_COMPACT | JSON_SORT_KEYS))) rc = RTR_E_NOMEM;
    if (rc) rtr_vectors_section_free(out);
    return rc;
}

int rtr_kb_vectors_open(rtr_kb *kb, rtr_kb_vectors **vout) {
    *vout = NULL;
    json_t *ix = rtr_kb_manifest_copy(kb, "index");
    if (!ix) return rtr_seterr(RTR_E_NOTFOUND, "%s: has no index yet; run 'retro index build %s'", rtr_kb_dir(kb), rtr_kb_dir(kb));
    rtr_kb_vectors *out = rtr_calloc(1, sizeof *out);
    if (out && pthread_mutex_init(&out->lock, NULL)) {
        rtr_free(out);
        out = NULL;
    }
    if (!out) {
        json_decref(ix);
        return RTR_E_NOMEM;
    }
    char *where = rtr_path_join(rtr_kb_dir(kb), "manifest.json"), *dir = rtr_path_join(rtr_kb_dir(kb), "index");
    int rc = where && dir ? RTR_OK : RTR_E_NOMEM;
    if (!rc) rc = rtr_vectors_section_parse(ix, where, &out->sec);
    if (!rc)   /* opened now: a build that replaces them later does not pull them from under a reader */
        rc = rtr_vindex_files_open(dir, (uint32_t)out->sec.n_shards, out->sec.shards, out->sec.codes, &out->files);
    if (!rc) rc = rtr_embedder_from_desc(rtr_kb_dir(kb), out->sec.embedder_desc, &out->embedder);
    if (!rc && out->embedder->dim && out->sec.dim && out->embedder->dim != out->sec.dim)
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: embedder dimension %u but the index has %u", where, out->embedder->dim,
                        out->sec.dim);
    json_decref(ix);
    rtr_free(where);
    rtr_free(dir);
    if (rc) rtr_kb_vectors_close(out);
    else *vout = out;
    return rc;
}

/* *slot, made by the first call: loaded (map 0) or mapped. */
static int vectors_index(rtr_kb_vectors *v, int map, rtr_vindex **slot, rtr_vindex **out) {
    int rc = RTR_OK;
    pthread_mutex_lock(&v->lock);
    if (!*slot) {
        const rtr_vectors_section *x = &v->sec;
        rtr_vindex *vx = NULL;
        rc = map ? rtr_vindex_files_map(v->files, x->nprobe, x->factory, &vx)
                 : rtr_vindex_files_load(v->files, x->nprobe, x->factory, &vx);
        uint32_t d = vx ? rtr_vindex_dim(vx) : 0;
        if (!rc && ((v->embedder->dim && v->embedder->dim != d) || (x->dim && x->dim != d)))
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: the shards hold vectors of dimension %u, the manifest records %u",
                            x->shards[0].name, d, x->dim ? x->dim : v->embedder->dim);
        if (rc) rtr_vindex_free(vx);
        else *slot = vx;
    }
    *out = *slot;
    pthread_mutex_unlock(&v->lock);
    return rc;
}

int rtr_kb_vectors_vindex(rtr_kb_vectors *v, rtr_vindex **out) { return vectors_index(v, 0, &v->loaded, out); }

int rtr_kb_vectors_search_index(rtr_kb_vectors *v, rtr_vindex **out) { return vectors_index(v, 1, &v->mapped, out); }

int rtr_kb_vectors_verify_codes(rtr_kb_vectors *v) {
    const rtr_vectors_section *x = &v->sec;
    int rc = RTR_OK, any = 0;
    for (uint32_t s = 0; s < x->n_shards && !rc; s++) {
        uint64_t sum;
        if (!x->codes[s].name) continue;
        any = 1;
        if (!(rc = rtr_vindex_files_codes_sum(v->files, s, &sum)) && sum != x->codes[s].xxh64)
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: checksum mismatch: the codes file is corrupt", x->codes[s].name);
    }
    rtr_vindex *loaded, *mapped;
    if (rc || !any || (rc = rtr_kb_vectors_vindex(v, &loaded)) || (rc = rtr_kb_vectors_search_index(v, &mapped))) return rc;
    for (uint32_t s = 0; s < x->n_shards && !rc; s++) {   /* the codes list the shard's ids, in its order */
        int64_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        if (x->codes[s].name && !(rc = rtr_vindex_ids(loaded, s, &a, &na)) && !(rc = rtr_vindex_ids(mapped, s, &b, &nb)) &&
            (na != nb || memcmp(a, b, na * sizeof *a)))
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: its ids are not those of %s", x->codes[s].name, x->shards[s].name);
        rtr_free(a);
        rtr_free(b);
    }
    return rc;
}

uint32_t rtr_kb_vectors_dim(const rtr_kb_vectors *v) { return v->embedder->dim ? v->embedder->dim : v->sec.dim; }

int rtr_kb_vectors_check_embedder(const rtr_kb *kb, const rtr_kb_vectors *x, const rtr_embedder *e) {
    char *d = rtr_embedder_canonical(e);
    if (!d) return rtr_seterr(RTR_E_NOMEM, "embedder description");
    int same = !strcmp(d, x->sec.embedder_desc);
    int rc = same ? RTR_OK
                  : rtr_seterr(RTR_E_MISMATCH, "%s: indexed with embedder %s, not %s (use --retrain to re-embed)",
                               rtr_kb_dir(kb), x->sec.embedder_desc, d);
    free(d);
    return rc;
}

rtr_embedder *rtr_kb_vectors_embedder(const rtr_kb_vectors *v) { return v->embedder; }
uint64_t rtr_kb_vectors_indexed_upto(const rtr_kb_vectors *v) { return v->sec.indexed_upto; }
uint64_t rtr_kb_vectors_trained_on(const rtr_kb_vectors *v) { return v->sec.trained_on; }
