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
    pthread_mutex_t lock;      /* guards loading vindex */
    rtr_vindex *vindex;        /* NULL until first asked for */
};

void rtr_kb_vectors_close(rtr_kb_vectors *v) {
    if (!v) return;
    rtr_embedder_free(v->embedder);
    rtr_vindex_free(v->vindex);
    rtr_vectors_section_free(&v->sec);
    rtr_vindex_files_close(v->files);
    pthread_mutex_destroy(&v->lock);
    rtr_free(v);
}

void rtr_vectors_section_free(rtr_vectors_section *x) {
    for (size_t i = 0; i < x->n_shards && x->names; i++) rtr_free(x->names[i]);
    rtr_free(x->names);
    rtr_free(x->sums);
    rtr_free(x->bytes);
    rtr_free(x->embedder_desc);
    memset(x, 0, sizeof *x);
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
    out->names = rtr_calloc(n, sizeof *out->names);
    out->sums = rtr_calloc(n, sizeof *out->sums);
    out->bytes = rtr_calloc(n, sizeof *out->bytes);
    int rc = out->names && out->sums && out->bytes ? RTR_OK : RTR_E_NOMEM;
    out->n_shards = rc ? 0 : n;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *file = NULL, *sum = NULL;
        json_int_t bytes = 0;   /* absent before sizes were recorded: not checked */
        if (json_unpack(json_array_get(files, i), "{s:s, s:s, s?I}", "file", &file, "xxh64", &sum, "bytes", &bytes) ||
            strchr(file, '/') || !*file || strlen(sum) != 16 || strspn(sum, "0123456789abcdefABCDEF") != 16 || bytes < 0)
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: bad shard entry %zu", where, i);
        else if (!(out->names[i] = rtr_strdup(file))) rc = RTR_E_NOMEM;
        else {
            out->sums[i] = strtoull(sum, NULL, 16);
            out->bytes[i] = (uint64_t)bytes;
        }
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
        rc = rtr_vindex_files_open(dir, (uint32_t)out->sec.n_shards, out->sec.names, out->sec.sums, out->sec.bytes,
                                   &out->files);
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

int rtr_kb_vectors_vindex(rtr_kb_vectors *v, rtr_vindex **out) {
    int rc = RTR_OK;
    pthread_mutex_lock(&v->lock);
    if (!v->vindex) {
        const rtr_vectors_section *x = &v->sec;
        rtr_vindex *vx = NULL;
        rc = rtr_vindex_files_load(v->files, x->nprobe, x->factory, &vx);
        uint32_t d = vx ? rtr_vindex_dim(vx) : 0;
        if (!rc && ((v->embedder->dim && v->embedder->dim != d) || (x->dim && x->dim != d)))
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: the shards hold vectors of dimension %u, the manifest records %u",
                            x->names[0], d, x->dim ? x->dim : v->embedder->dim);
        if (rc) rtr_vindex_free(vx);
        else v->vindex = vx;
    }
    *out = v->vindex;
    pthread_mutex_unlock(&v->lock);
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
