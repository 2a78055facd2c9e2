/* build.c - `retro index build`: embed new chunks, add them to the FAISS shards, drop deleted ones (see build.h). */
#define _GNU_SOURCE
#include "index/build.h"

#include <dirent.h>
#include <inttypes.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/embed_hash.h"
#include "index/embed_pca.h"
#include "index/lexical.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/crash.h"
#include "lib/io.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "lib/threads.h"

#define EMBED_BATCH 4096

/* --- embedding chunks ---------------------------------------------------------------------- */
typedef struct chunk_batch {
    size_t n;
    int64_t ids[EMBED_BATCH];
    uint32_t shard[EMBED_BATCH];
    rtr_buf text;                  /* all texts, concatenated */
    size_t off[EMBED_BATCH + 1];
    rtr_text texts[EMBED_BATCH];
} chunk_batch;

/* Fills b with up to max chunks with id > *after (decoded to text). *after
 * advances; b->n == 0 at the end. */
static int next_batch(rtr_store_txn *t, const rtr_tokenizer *tok, uint64_t *after, uint64_t last, size_t max,
                      uint32_t shards, chunk_batch *b) {
    b->n = 0;
    b->text.len = 0;
    int rc;
    rtr_chunk c;
    while (b->n < max && (rc = rtr_store_next_chunk(t, *after, &c)) == RTR_OK && c.id <= last) {
        *after = c.id;
        b->off[b->n] = b->text.len;
        if ((rc = rtr_tokenizer_decode(tok, c.tokens, c.n_tokens, &b->text))) return rc;
        b->ids[b->n] = (int64_t)c.id;
        b->shard[b->n] = (uint32_t)(c.doc_id % shards);
        b->n++;
    }
    if (b->n < max && rc != RTR_E_NOTFOUND && rc != RTR_OK) return rc;
    b->off[b->n] = b->text.len;
    for (size_t i = 0; i < b->n; i++)
        b->texts[i] = (rtr_text){(const char *)b->text.data + b->off[i], b->off[i + 1] - b->off[i]};
    return RTR_OK;
}

static int embed_batch(rtr_embedder *e, const chunk_batch *b, float *out, int threads) {
    return rtr_embedder_embed_threads(e, b->texts, b->n, out, threads, 64);
}

/* --- the build ------------------------------------------------------------------------------- */
static int count_df(rtr_store_txn *t, const rtr_tokenizer *tok, uint64_t last, rtr_hash_df *df, chunk_batch *b) {
    int rc = RTR_OK;
    uint64_t after = 0;
    while (!rc) {
        if ((rc = next_batch(t, tok, &after, last, EMBED_BATCH, 1, b)) || b->n == 0) break;
        for (size_t i = 0; i < b->n && !rc; i++) rc = rtr_hash_df_add(df, b->texts[i].data, b->texts[i].len);
    }
    return rc;
}

/* Runs fn over a read transaction of kb's store with a batch of its own; fn gets the last chunk id. */
typedef int (*with_chunks_fn)(rtr_store_txn *t, const rtr_tokenizer *tok, const rtr_store_stats *st, chunk_batch *b,
                              void *ctx);
static int with_chunks(rtr_kb *kb, with_chunks_fn fn, void *ctx) {
    chunk_batch *b = rtr_calloc(1, sizeof *b);
    rtr_store_txn *t = NULL;
    int rc = b ? rtr_store_read_begin(rtr_kb_store(kb), &t) : RTR_E_NOMEM;
    if (!rc) {
        rtr_store_stats st;
        rtr_store_get_stats(t, &st);
        rc = fn(t, rtr_kb_tokenizer(kb), &st, b, ctx);
    }
    rtr_store_txn_end(t);
    if (b) rtr_buf_free(&b->text);
    rtr_free(b);
    return rc;
}

static int count_df_fn(rtr_store_txn *t, const rtr_tokenizer *tok, const rtr_store_stats *st, chunk_batch *b, void *ctx) {
    return count_df(t, tok, st->next_chunk_id - 1, ctx, b);
}

int rtr_build_count_df(rtr_kb *kb, rtr_hash_df *df) { return with_chunks(kb, count_df_fn, df); }

/* An evenly spread sample of m chunk ids among the chunks with id <= last. */
static int sample_train(rtr_store_txn *t, const rtr_tokenizer *tok, uint64_t n_chunks, uint64_t last, uint64_t m,
                        rtr_embedder *e, int threads, chunk_batch *b, float **out, size_t *n_out) {
    float *x = rtr_malloc((size_t)m * e->dim * sizeof *x);
    if (!x) return RTR_E_NOMEM;
    size_t got = 0;
    uint64_t after = 0, seen = 0;
    int rc = RTR_OK;
    /* take chunk number floor(i * n / m) for i = 0..m-1 */
    while (!rc && got < m) {
        b->n = 0;
        b->text.len = 0;
        rtr_chunk c;
        while (b->n < EMBED_BATCH && got + b->n < m && (rc = rtr_store_next_chunk(t, after, &c)) == RTR_OK && c.id <= last) {
            after = c.id;
            uint64_t want = (uint64_t)((double)(got + b->n) * (double)n_chunks / (double)m);
            if (seen++ < want) continue;
            b->off[b->n] = b->text.len;
            if ((rc = rtr_tokenizer_decode(tok, c.tokens, c.n_tokens, &b->text))) break;
            b->n++;
        }
        if (rc == RTR_E_NOTFOUND) rc = RTR_OK;
        if (rc || b->n == 0) break;
        b->off[b->n] = b->text.len;
        for (size_t i = 0; i < b->n; i++)
            b->texts[i] = (rtr_text){(const char *)b->text.data + b->off[i], b->off[i + 1] - b->off[i]};
        if ((rc = embed_batch(e, b, x + got * e->dim, threads))) break;
        got += b->n;
    }
    if (rc) { rtr_free(x); return rc; }
    *out = x;
    *n_out = got;
    return RTR_OK;
}

/* Ids of chunks <= upto that are gone from the store. */
static int deleted_ids(rtr_store_txn *t, uint64_t upto, int64_t **ids, size_t *n) {
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    uint64_t expect = 1, after = 0;
    rtr_chunk c;
    int rc;
    for (;;) {
        rc = rtr_store_next_chunk(t, after, &c);
        uint64_t next = rc == RTR_OK && c.id <= upto ? c.id : upto + 1;
        for (uint64_t id = expect; id < next; id++) {
            if (RTR_GROW(*ids, &cap, *n + 1)) return RTR_E_NOMEM;
            (*ids)[(*n)++] = (int64_t)id;
        }
        if (rc != RTR_OK || c.id > upto) break;
        expect = c.id + 1;
        after = c.id;
    }
    return rc == RTR_OK || rc == RTR_E_NOTFOUND ? RTR_OK : rc;
}

/* Deletes index/ files not named in keep (old generations, leftovers). */
/* A file's manifest entry: {"file": NAME, "xxh64": HEX, "bytes": N}. */
static json_t *file_json(const rtr_vindex_file *f) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)f->xxh64);
    return json_pack("{s:s, s:s, s:I}", "file", f->name, "xxh64", hex, "bytes", (json_int_t)f->bytes);
}

static void remove_stale_files(const char *dir, const json_t *shards, char *const *keep_names, size_t n_keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int keep = 0;
        for (size_t k = 0; k < n_keep; k++) keep |= keep_names[k] && !strcmp(e->d_name, keep_names[k]);
        size_t i;
        json_t *s;
        json_array_foreach(shards, i, s) {
            const char *codes = json_string_value(json_object_get(json_object_get(s, "codes"), "file"));
            if (!strcmp(json_string_value(json_object_get(s, "file")), e->d_name) || (codes && !strcmp(codes, e->d_name)))
                keep = 1;
        }
        if (keep) continue;
        char *p = rtr_path_join(dir, e->d_name);
        if (p) unlink(p);
        rtr_free(p);
    }
    closedir(d);
}

static int make_plan(const rtr_build_opts *o, uint64_t n, uint32_t dim, uint32_t shards, rtr_vindex_plan *plan) {
    return o->factory ? rtr_vindex_plan_factory(o->factory, n, dim, shards, plan)
                      : rtr_vindex_plan_auto(n, dim, o->mem_budget, shards, plan);
}

/* The most components, of 128, 64 and 32 (below the embedder's dimension), whose
 * vectors are still searched exactly; 32 past them all (see build.h). */
static int auto_projection(const rtr_build_opts *o, uint64_t n, uint32_t dim, uint32_t shards, uint32_t *out) {
    static const uint32_t cand[] = {128, 64, 32};
    *out = 0;
    for (size_t i = 0; i < sizeof cand / sizeof *cand; i++) {
        if (cand[i] >= dim) continue;
        rtr_vindex_plan p;
        int rc = make_plan(o, n, cand[i], shards, &p);
        if (rc) return rc;
        *out = cand[i];
        if (!strcmp(p.factory, "IDMap,Flat")) break;
    }
    return RTR_OK;
}

#define PCA_SAMPLE 100000   /* chunks the projection is fitted on (at most) */

int rtr_build_project(const float *x, size_t n, rtr_embedder *e, int owns, uint32_t proj, const char *dir,
                      float **train, rtr_embedder **pe) {
    float *y = NULL;
    rtr_pca pca = {0};
    char *name = NULL, *path = NULL;
    *train = NULL;
    *pe = NULL;
    if (proj >= e->dim) return rtr_seterr(RTR_E_INVALID, "--project %u: the embedder has %u dimensions", proj, e->dim);
    int rc = n < 2 ? rtr_seterr(RTR_E_INVALID, "a projection needs at least 2 chunks") : RTR_OK;
    if (!rc) rc = rtr_pca_fit(x, n, e->dim, proj, &pca);
    if (!rc && (!(name = rtr_pca_filename(rtr_pca_checksum(&pca))) || !(path = rtr_path_join(dir, name)))) rc = RTR_E_NOMEM;
    if (!rc) rc = rtr_pca_save(&pca, path);
    if (!rc && !(y = rtr_malloc(n * proj * sizeof *y))) rc = RTR_E_NOMEM;
    if (!rc) {
        rtr_pca_apply(&pca, x, n, y);
        rtr_l2_normalize(y, n, proj);
        rc = rtr_pca_embedder_new(e, owns, &pca, pe);
    }
    rtr_pca_free(&pca);
    rtr_free(name);
    rtr_free(path);
    if (rc) {
        rtr_free(y);
        return rc;
    }
    *train = y;
    return RTR_OK;
}

uint64_t rtr_build_sample_size(const rtr_vindex_plan *plan, uint32_t proj, uint64_t n_chunks) {
    uint64_t m = proj && plan->train_n < PCA_SAMPLE ? PCA_SAMPLE : plan->train_n;
    return m > n_chunks ? n_chunks : m;
}

/* Samples rtr_build_sample_size chunks evenly with e and makes the projection (rtr_build_project). */
static int project(rtr_store_txn *t, const rtr_tokenizer *tok, uint64_t n_chunks, uint64_t last, rtr_embedder *e,
                   int owns, uint32_t proj, const rtr_vindex_plan *plan, const char *dir, int threads, chunk_batch *b,
                   float **train, size_t *n_train, rtr_embedder **pe) {
    float *x = NULL;
    if (proj >= e->dim) return rtr_seterr(RTR_E_INVALID, "--project %u: the embedder has %u dimensions", proj, e->dim);
    int rc = sample_train(t, tok, n_chunks, last, rtr_build_sample_size(plan, proj, n_chunks), e, threads, b, &x, n_train);
    if (!rc) rc = rtr_build_project(x, *n_train, e, owns, proj, dir, train, pe);
    rtr_free(x);
    return rc;
}

typedef struct sample_ctx {
    uint64_t m;
    rtr_embedder *e;
    int threads;
    float *x;
    size_t n;
} sample_ctx;

static int sample_fn(rtr_store_txn *t, const rtr_tokenizer *tok, const rtr_store_stats *st, chunk_batch *b, void *ctx) {
    sample_ctx *s = ctx;
    uint64_t m = s->m < st->n_chunks ? s->m : st->n_chunks;
    return sample_train(t, tok, st->n_chunks, st->next_chunk_id - 1, m, s->e, s->threads, b, &s->x, &s->n);
}

int rtr_build_sample(rtr_kb *kb, uint64_t m, rtr_embedder *e, int threads, float **out, size_t *n) {
    sample_ctx s = {m, e, threads > 0 ? threads : rtr_cores(), NULL, 0};
    *out = NULL;
    *n = 0;
    int rc = with_chunks(kb, sample_fn, &s);
    if (!rc) *out = s.x, *n = s.n;
    return rc;
}

uint32_t rtr_build_default_shards(uint64_t n_chunks) {
    int cores = omp_get_num_procs();
    return n_chunks >= 262144 && cores > 1 ? (uint32_t)(cores < 8 ? cores : 8) : 1;
}

int rtr_build_plan(const rtr_build_opts *o, uint64_t n, uint32_t dim, uint32_t shards, uint32_t *proj,
                   rtr_vindex_plan *plan) {
    *proj = 0;
    int rc = make_plan(o, n, dim, shards, plan);
    if (!rc && o->project > 0) *proj = (uint32_t)o->project;
    else if (!rc && o->project == 0 && !o->embedder && !o->factory && strcmp(plan->factory, "IDMap,Flat"))
        rc = auto_projection(o, n, dim, shards, proj);
    if (!rc && *proj) rc = make_plan(o, n, *proj, shards, plan);
    if (!rc && o->nprobe && plan->nlist) plan->nprobe = o->nprobe;
    return rc;
}

int rtr_build_save_index(const rtr_vindex *vx, const rtr_embedder *embedder, const char *dir, const char *prefix,
                         long long gen, uint64_t upto, uint64_t trained_on, json_t **section) {
    *section = NULL;
    uint32_t S = rtr_vindex_shards(vx);
    rtr_vindex_file *files = rtr_calloc(S, sizeof *files), *codes = rtr_calloc(S, sizeof *codes);
    char *desc = NULL;
    json_t *emb = NULL;
    int rc = files && codes ? RTR_OK : RTR_E_NOMEM;
    if (!rc) rc = rtr_vindex_save(vx, dir, prefix, files, codes);
    if (!rc) rtr_crash_point("checkpoint-files");   /* lib/crash.h: the kill-and-resume test */
    json_error_t err;
    if (!rc && (!(desc = rtr_embedder_canonical(embedder)) || !(emb = json_loads(desc, 0, &err)))) rc = RTR_E_NOMEM;
    if (!rc) {
        json_t *shards_json = json_array();
        for (uint32_t s = 0; s < S; s++) {
            json_t *entry = file_json(&files[s]);
            if (codes[s].name) json_object_set_new(entry, "codes", file_json(&codes[s]));
            json_array_append_new(shards_json, entry);
        }
        *section = json_pack("{s:i, s:I, s:o, s:s, s:s, s:i, s:i, s:i, s:o, s:I, s:I, s:I}", "version", 1,
                             "generation", (json_int_t)gen, "embedder", emb, "metric", "L2",
                             "factory", rtr_vindex_factory(vx), "dim", (int)rtr_vindex_dim(vx),
                             "nlist", (int)rtr_vindex_nlist(vx),
                             "nprobe", (int)rtr_vindex_nprobe(vx), "shards", shards_json,
                             "indexed_upto", (json_int_t)upto, "trained_on", (json_int_t)trained_on,
                             "vectors", (json_int_t)rtr_vindex_ntotal(vx));
        emb = NULL;
        if (!*section) rc = rtr_seterr(RTR_E_NOMEM, "manifest");
    }
    json_decref(emb);
    if (files) rtr_vindex_file_names_free(files, S);
    if (codes) rtr_vindex_file_names_free(codes, S);
    rtr_free(files);
    rtr_free(codes);
    free(desc);
    return rc;
}

void rtr_build_embedder_files(const json_t *emb, char *names[2]) {
    const char *pca = json_string_value(json_object_get(emb, "pca"));
    if (pca) emb = json_object_get(emb, "inner");
    const char *idf = json_string_value(json_object_get(emb, "idf"));
    names[0] = idf && strcmp(idf, "0000000000000000") ? rtr_hash_df_filename(strtoull(idf, NULL, 16)) : NULL;
    names[1] = pca ? rtr_pca_filename(strtoull(pca, NULL, 16)) : NULL;
}

void rtr_build_remove_stale(const char *dir, const json_t *section) {
    char *keep[2];
    rtr_build_embedder_files(json_object_get(section, "embedder"), keep);
    remove_stale_files(dir, json_object_get(section, "shards"), keep, 2);
    rtr_free(keep[0]);
    rtr_free(keep[1]);
}

/* Saves the shards under a new generation's names, switches the manifest's
 * "index" section to them (every chunk up to upto indexed), then deletes the
 * files no longer named. */
static int save_generation(rtr_kb *kb, const rtr_vindex *vx, const rtr_embedder *embedder, const char *dir,
                           uint64_t upto, uint64_t trained_on) {
    json_t *old = rtr_kb_manifest_get(kb, "index");
    json_int_t gen = old ? json_integer_value(json_object_get(old, "generation")) + 1 : 1;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "g%lld", (long long)gen);
    json_t *section = NULL;
    int rc = rtr_build_save_index(vx, embedder, dir, prefix, gen, upto, trained_on, &section);
    if (!rc) rc = rtr_kb_manifest_set(kb, "index", section);
    if (!rc) rtr_crash_point("checkpoint");
    if (!rc) rtr_build_remove_stale(dir, rtr_kb_manifest_get(kb, "index"));
    return rc;
}

int rtr_index_build(rtr_kb *kb, const rtr_build_opts *o, rtr_build_report *rep) {
    memset(rep, 0, sizeof *rep);
    double t0 = rtr_now();
    int threads = o->threads > 0 ? o->threads : rtr_cores();
    const rtr_tokenizer *tok = rtr_kb_tokenizer(kb);
    char *dir = rtr_path_join(rtr_kb_dir(kb), "index");
    chunk_batch *b = rtr_calloc(1, sizeof *b);
    float *vec = NULL, *train = NULL;
    rtr_store_txn *t = NULL;
    rtr_kb_vectors *recorded = NULL;   /* the recorded vectors, when they are built on */
    rtr_embedder *embedder = NULL;     /* the embedder in use (recorded's, the caller's or own) */
    rtr_vindex *vx = NULL, *made = NULL;   /* the vector index in use; made: a new one */
    uint64_t upto = 0, trained_on = 0;
    rtr_embedder *own = NULL, *own_wrapper = NULL;   /* own_wrapper: a projection of the caller's embedder */
    rtr_hash_df df = {0};
    char *df_name = NULL;
    int rc = dir && b ? RTR_OK : RTR_E_NOMEM;
    if (!rc) rc = rtr_mkdirs(dir);
    if (!rc) rc = rtr_store_read_begin(rtr_kb_store(kb), &t);
    rtr_store_stats st;
    if (!rc) rtr_store_get_stats(t, &st);
    uint64_t last = rc ? 0 : st.next_chunk_id - 1;
    rep->live_chunks = rc ? 0 : st.n_chunks;

    int have = !rc && rtr_kb_manifest_get(kb, "index") != NULL;
    if (!rc && have && !o->retrain) {
        rc = rtr_kb_vectors_open(kb, &recorded);
        if (!rc) rc = rtr_kb_vectors_vindex(recorded, &vx);
        if (!rc) {
            embedder = rtr_kb_vectors_embedder(recorded);
            upto = rtr_kb_vectors_indexed_upto(recorded);
            trained_on = rtr_kb_vectors_trained_on(recorded);
        }
        if (!rc && o->embedder) rc = rtr_kb_vectors_check_embedder(kb, recorded, o->embedder);
        rtr_vindex_plan asked;   /* the index type given, as a new plan would spell it ("IDMap," prefixed) */
        if (!rc && o->factory &&
            (rtr_vindex_plan_factory(o->factory, st.n_chunks, embedder->dim, 1, &asked) ||
             strcmp(asked.factory, rtr_vindex_factory(vx))))
            rc = rtr_seterr(RTR_E_INVALID, "%s: already indexed as %s; use --retrain to change the index type",
                            rtr_kb_dir(kb), rtr_vindex_factory(vx));
        if (!rc && o->project) {   /* a projection asked for (or refused) must be the recorded one */
            int projected = rtr_embedder_is_pca(embedder);
            if (o->project < 0 ? projected : !projected || embedder->dim != (uint32_t)o->project)
                rc = rtr_seterr(RTR_E_INVALID, "%s: already indexed with %u dimensions%s; use --retrain to change the projection",
                                rtr_kb_dir(kb), embedder->dim, projected ? ", projected" : "");
        }
        if (!rc && o->nprobe) rc = rtr_vindex_set_nprobe(vx, o->nprobe);
    } else if (!rc) {
        /* a new index: fix the embedder, plan, train */
        rep->created = 1;
        if (st.n_chunks == 0 && !o->proto)
            rc = rtr_seterr(RTR_E_INVALID, "%s: no chunks to index; add documents first", rtr_kb_dir(kb));
        RTR_ASSERT(!o->proto || o->embedder);
        rtr_embedder *e = o->embedder;
        if (!rc && !e) {
            if (!(rc = rtr_hash_df_init(&df, RTR_HASH_DEFAULT_BITS)) && !(rc = count_df(t, tok, last, &df, b))) {
                rtr_hash_embedder_opts ho = {o->hash_dim, 0, &df};
                if (!(rc = rtr_hash_embedder_new(&ho, &own))) {
                    df_name = rtr_hash_df_filename(rtr_hash_df_checksum(&df));
                    char *p = df_name ? rtr_path_join(dir, df_name) : NULL;
                    rc = p ? rtr_hash_df_save(&df, p) : RTR_E_NOMEM;
                    rtr_free(p);
                }
            }
            e = own;
        }
        rtr_vindex_plan plan;
        size_t n_train = 0;
        if (!rc && e->dim == 0) {   /* learn the dimension from one chunk */
            /* an embedder that learns its dimension from a first call takes out = NULL */
            if (!(rc = next_batch(t, tok, &(uint64_t){0}, last, 1, 1, b)) && b->n)
                rc = rtr_embedder_embed(e, b->texts, 1, NULL);
            if (!rc && e->dim == 0) rc = rtr_seterr(RTR_E_INVALID, "embedder has no dimension");
        }
        /* default shards: one, or one per core (at most 8) from 256 Ki chunks on,
         * so that a single query searches on every core */
        uint32_t shards = o->shards ? o->shards : rtr_build_default_shards(st.n_chunks);
        uint32_t proj = 0;
        if (!rc && !o->proto) rc = rtr_build_plan(o, st.n_chunks, e->dim, shards, &proj, &plan);
        if (!rc && proj) {   /* fit the projection on a sample, embed with it from now on */
            rtr_embedder *pe = NULL;
            rc = project(t, tok, st.n_chunks, last, e, e == own, proj, &plan, dir, threads, b, &train, &n_train, &pe);
            if (!rc) {
                if (e == own) own = pe;   /* it owns the hash embedder now */
                else own_wrapper = pe;
                e = pe;
            }
        }
        if (o->proto) {   /* trained already (a build of partitions: parts.h) */
            if (!rc) rc = rtr_vindex_create_like(o->proto, shards, &made);
            if (!rc) snprintf(rep->why, sizeof rep->why, "trained once for every partition");
        } else {
            if (!rc && plan.train_n && !train)
                rc = sample_train(t, tok, st.n_chunks, last, plan.train_n, e, threads, b, &train, &n_train);
            if (!rc) rc = rtr_vindex_create(&plan, e->dim, shards, train, n_train, &made);
            if (!rc) snprintf(rep->why, sizeof rep->why, "%s", plan.why);
        }
        embedder = e;
        vx = made;
        upto = 0;
        trained_on = st.n_chunks;
        /* what took a while to make (a projection, a trained quantizer) is kept at once */
        if (!rc && !o->retrain && o->checkpoint_s >= 0 && n_train) {
            if (!(rc = save_generation(kb, vx, embedder, dir, 0, trained_on))) rep->checkpoints++;
        }
    }
    /* embed and add everything above the watermark */
    rtr_progress prog;
    rtr_progress_init(&prog, "embed", last > upto ? last - upto : 0, " chunks", o->progress);
    if (!rc && !(vec = rtr_malloc((size_t)EMBED_BATCH * embedder->dim * sizeof *vec))) rc = RTR_E_NOMEM;
    uint64_t after = upto;
    double period = o->retrain || o->checkpoint_s < 0 ? 0 : o->checkpoint_s > 0 ? o->checkpoint_s : 300, saved = rtr_now();
    while (!rc) {
        if ((rc = next_batch(t, tok, &after, last, EMBED_BATCH, rtr_vindex_shards(vx), b)) || b->n == 0) break;
        double te = rtr_now();
        if ((rc = embed_batch(embedder, b, vec, threads))) break;
        rep->embed_seconds += rtr_now() - te;
        if ((rc = rtr_vindex_add(vx, b->n, vec, b->ids, b->shard))) break;
        rep->embedded += b->n;
        rtr_progress_update(&prog, after - upto, NULL);
        if (period > 0 && after < last && rtr_now() - saved >= period) {   /* a checkpoint: a kill resumes here */
            if ((rc = save_generation(kb, vx, embedder, dir, after, trained_on))) break;
            rep->checkpoints++;
            saved = rtr_now();
        }
    }
    rtr_progress_finish(&prog);
    if (!rc && o->compact) {
        int64_t *ids;
        size_t n;
        if (!(rc = deleted_ids(t, last, &ids, &n))) {
            rc = rtr_vindex_remove(vx, ids, n, &rep->removed);
            rtr_free(ids);
        }
    }
    rtr_store_txn_end(t);
    t = NULL;

    /* nothing changed: keep the files and the manifest as they are */
    int unchanged = !rc && !rep->created && rep->embedded == 0 && rep->removed == 0 && !o->nprobe;
    if (!rc && !unchanged) rc = save_generation(kb, vx, embedder, dir, last, trained_on);
    if (!rc) {   /* the index as it stands now, saved or unchanged */
        rep->vectors = rtr_vindex_ntotal(vx);
        rep->shards = rtr_vindex_shards(vx);
        rep->dim = rtr_vindex_dim(vx);
        rep->nprobe = rtr_vindex_nprobe(vx);
        rep->nlist = rtr_vindex_nlist(vx);
        rep->trained_on = trained_on;
        rep->drifted = rep->nlist && st.n_chunks > 4 * trained_on;
        snprintf(rep->factory, sizeof rep->factory, "%s", rtr_vindex_factory(vx));
    }
    rtr_kb_vectors_close(recorded);
    rtr_vindex_free(made);
    rtr_embedder_free(own_wrapper);
    rtr_embedder_free(own);
    rtr_hash_df_free(&df);
    rtr_free(df_name);
    rtr_free(train);
    rtr_free(vec);
    if (b) rtr_buf_free(&b->text);
    rtr_free(b);
    rtr_store_txn_end(t);
    rtr_free(dir);
    if (!rc && !o->no_lexical) {   /* the words, up to the same chunk */
        rtr_lex_report lr;
        if (o->retrain || o->compact) rc = rtr_lex_clear(kb);
        if (!rc) rc = rtr_lex_build(kb, o->progress, &lr);
        if (!rc) {
            rep->lexical_indexed = lr.indexed;
            rep->lexical_chunks = lr.chunks;
            rep->lexical_seconds = lr.seconds;
        }
    }
    rep->seconds = rtr_now() - t0;
    return rc;
}
