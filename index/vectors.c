/* vectors.c - a knowledge base's vectors: the embedder and vector index its manifest names (see vectors.h). */
#include "index/vectors.h"

#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"

struct rtr_kb_vectors {
    rtr_embedder *embedder;
    rtr_vindex *vindex;
    uint64_t indexed_upto;   /* chunk ids <= this are indexed (or deleted) */
    uint64_t trained_on;
    char *embedder_desc;     /* canonical JSON */
};

void rtr_kb_vectors_close(rtr_kb_vectors *v) {
    if (!v) return;
    rtr_embedder_free(v->embedder);
    rtr_vindex_free(v->vindex);
    rtr_free(v->embedder_desc);
    rtr_free(v);
}

void rtr_vectors_section_free(rtr_vectors_section *x) {
    for (size_t i = 0; i < x->n_shards && x->names; i++) rtr_free(x->names[i]);
    rtr_free(x->names);
    rtr_free(x->sums);
    rtr_free(x->embedder_desc);
    memset(x, 0, sizeof *x);
}

int rtr_vectors_section_parse(const json_t *ix, const char *where, rtr_vectors_section *out) {
    memset(out, 0, sizeof *out);
    json_t *emb = NULL, *files = NULL;
    const char *factory = NULL;
    json_int_t nprobe = 0, upto = 0, trained = 0, version = 0;
    if (json_unpack((json_t *)ix, "{s:I, s:o, s:s, s:I, s:o, s:I, s:I}", "version", &version, "embedder", &emb,
                    "factory", &factory, "nprobe", &nprobe, "shards", &files, "indexed_upto", &upto, "trained_on",
                    &trained) ||
        !json_is_object(emb) || !json_is_array(files) || nprobe < 0 || nprobe > UINT32_MAX || upto < 0 || trained < 0 ||
        strlen(factory) >= sizeof out->factory)
        return rtr_seterr(RTR_E_CORRUPT, "%s: bad \"index\" section", where);
    if (version > 1)
        return rtr_seterr(RTR_E_VERSION, "%s: index version %lld is newer than this retro supports (1)", where,
                          (long long)version);
    size_t n = json_array_size(files);
    if (n == 0 || n > 1024) return rtr_seterr(RTR_E_CORRUPT, "%s: bad shard count", where);
    snprintf(out->factory, sizeof out->factory, "%s", factory);
    out->nprobe = (uint32_t)nprobe;
    out->indexed_upto = (uint64_t)upto;
    out->trained_on = (uint64_t)trained;
    out->names = rtr_calloc(n, sizeof *out->names);
    out->sums = rtr_calloc(n, sizeof *out->sums);
    int rc = out->names && out->sums ? RTR_OK : RTR_E_NOMEM;
    out->n_shards = rc ? 0 : n;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *file = NULL, *sum = NULL;
        if (json_unpack(json_array_get(files, i), "{s:s, s:s}", "file", &file, "xxh64", &sum) || strchr(file, '/') ||
            !*file || strlen(sum) != 16 || strspn(sum, "0123456789abcdefABCDEF") != 16)
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: bad shard entry %zu", where, i);
        else if (!(out->names[i] = rtr_strdup(file))) rc = RTR_E_NOMEM;
        else out->sums[i] = strtoull(sum, NULL, 16);
    }
    if (!rc && !(out->embedder_desc = json_dumps(emb, JSON_COMPACT | JSON_SORT_KEYS))) rc = RTR_E_NOMEM;
    if (rc) rtr_vectors_section_free(out);
    return rc;
}

int rtr_kb_vectors_open(rtr_kb *kb, rtr_kb_vectors **vout) {
    *vout = NULL;
    json_t *ix = rtr_kb_manifest_copy(kb, "index");
    if (!ix) return rtr_seterr(RTR_E_NOTFOUND, "%s: has no index yet; run 'retro index build %s'", rtr_kb_dir(kb), rtr_kb_dir(kb));
    char *where = rtr_path_join(rtr_kb_dir(kb), "manifest.json");
    char *dir = rtr_path_join(rtr_kb_dir(kb), "index");
    rtr_kb_vectors *out = rtr_calloc(1, sizeof *out);
    rtr_vectors_section sec = {0};
    int rc = where && dir && out ? RTR_OK : RTR_E_NOMEM;
    if (!rc) rc = rtr_vectors_section_parse(ix, where, &sec);
    if (!rc) rc = rtr_vindex_load(dir, (uint32_t)sec.n_shards, sec.names, sec.sums, sec.nprobe, sec.factory, &out->vindex);
    if (!rc) {
        out->embedder_desc = sec.embedder_desc;
        sec.embedder_desc = NULL;
        rc = rtr_embedder_from_desc(rtr_kb_dir(kb), out->embedder_desc, &out->embedder);
    }
    if (!rc && out->embedder->dim && out->embedder->dim != rtr_vindex_dim(out->vindex))
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: embedder dimension %u but the index has %u", rtr_kb_dir(kb),
                        out->embedder->dim, rtr_vindex_dim(out->vindex));
    if (!rc) {
        out->indexed_upto = sec.indexed_upto;
        out->trained_on = sec.trained_on;
    }
    rtr_vectors_section_free(&sec);
    json_decref(ix);
    rtr_free(where);
    rtr_free(dir);
    if (rc) rtr_kb_vectors_close(out);
    else *vout = out;
    return rc;
}

int rtr_kb_vectors_check_embedder(const rtr_kb *kb, const rtr_kb_vectors *x, const rtr_embedder *e) {
    char *d = rtr_embedder_canonical(e);
    if (!d) return rtr_seterr(RTR_E_NOMEM, "embedder description");
    int same = !strcmp(d, x->embedder_desc);
    int rc = same ? RTR_OK
                  : rtr_seterr(RTR_E_MISMATCH, "%s: indexed with embedder %s, not %s (use --retrain to re-embed)",
                               rtr_kb_dir(kb), x->embedder_desc, d);
    free(d);
    return rc;
}

rtr_embedder *rtr_kb_vectors_embedder(const rtr_kb_vectors *v) { return v->embedder; }
rtr_vindex *rtr_kb_vectors_vindex(const rtr_kb_vectors *v) { return v->vindex; }
uint64_t rtr_kb_vectors_indexed_upto(const rtr_kb_vectors *v) { return v->indexed_upto; }
uint64_t rtr_kb_vectors_trained_on(const rtr_kb_vectors *v) { return v->trained_on; }
