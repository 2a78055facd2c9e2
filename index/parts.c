/* parts.c - a knowledge base of partitions: create, open, add to and build on the ranks of a job (see parts.h). */
#define _GNU_SOURCE
#include "index/parts.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "index/embed_hash.h"
#include "index/embed_pca.h"
#include "index/vectors.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/io.h"
#include "lib/progress.h"
#include "lib/status.h"

#define MANIFEST_MAX (1 << 20)

struct rtr_parts {
    char *dir;
    uint32_t count;
    int split;
    unsigned flags;
    rtr_comm *comm;
    rtr_kb **kbs;          /* (count) NULL where another rank works on the partition */
    rtr_tokenizer *tok;
    json_t *manifest;      /* the top manifest (a knowledge base of partitions) */
    int lock_fd;
};

uint32_t rtr_part_of_path(const char *path, uint32_t count) {
    return count > 1 ? (uint32_t)(XXH3_64bits(path, strlen(path)) % count) : 0;
}

uint32_t rtr_parts_count(const rtr_parts *ps) { return ps->count; }
int rtr_parts_split(const rtr_parts *ps) { return ps->split; }
const char *rtr_parts_dir(const rtr_parts *ps) { return ps->dir; }
rtr_comm *rtr_parts_comm(rtr_parts *ps) { return ps->comm; }
const rtr_tokenizer *rtr_parts_tokenizer(rtr_parts *ps) { return ps->tok; }
rtr_kb *rtr_parts_kb(rtr_parts *ps, uint32_t p) {
    RTR_ASSERT(p < ps->count);
    return ps->kbs[p];
}

int rtr_parts_check_tokenizer(const rtr_parts *ps, const rtr_tokenizer *tok) {
    char a[33], b[33];
    rtr_tokenizer_hash(tok, a);
    rtr_tokenizer_hash(ps->tok, b);
    if (strcmp(a, b) != 0)
        return rtr_seterr(RTR_E_MISMATCH,
                          "%s: built with tokenizer %s, but tokenizer %s was given; "
                          "use the knowledge base's own (%s/tokenizer.rtok)", ps->dir, b, a, ps->dir);
    return RTR_OK;
}

static int mine(const rtr_parts *ps, uint32_t p) {   /* the rank that works on partition p is this one */
    return (int)(p % (uint32_t)rtr_comm_size(ps->comm)) == rtr_comm_rank(ps->comm);
}

/* "DIR/part-NNNN" (fresh) */
static char *part_dir(const char *dir, uint32_t p) {
    char name[32];
    snprintf(name, sizeof name, "part-%04u", p);
    return rtr_path_join(dir, name);
}

/* --- creating -------------------------------------------------------------------------------- */
/* Writes a knowledge base of count partitions in a temporary sibling of dir and renames it into place. */
static int create_split(const char *dir, uint32_t count, const rtr_tokenizer *tok) {
    char tmp[PATH_MAX], hash[33];
    int rc = rtr_kb_create_tmp(dir, tok, tmp, sizeof tmp);
    if (rc) return rc;
    rtr_tokenizer_hash(tok, hash);
    json_t *m = rtr_kb_manifest_new(hash, rtr_tokenizer_vocab_size(tok)), *dirs = json_array();
    if (!m || !dirs) rc = RTR_E_NOMEM;
    for (uint32_t p = 0; p < count && !rc; p++) {
        char *pd = part_dir(tmp, p);
        rtr_kb *kb = NULL;
        rc = pd ? rtr_kb_open(pd, RTR_KB_CREATE | RTR_KB_WRITE, tok, NULL, &kb) : RTR_E_NOMEM;
        /* the partition says what it is: a reader that opens it alone knows its ids' partition */
        if (!rc) rc = rtr_kb_manifest_set(kb, "partition", json_pack("{s:i, s:i}", "index", (int)p, "count", (int)count));
        rtr_kb_close(kb);
        char name[32];
        snprintf(name, sizeof name, "part-%04u", p);
        json_array_append_new(dirs, json_string(name));
        rtr_free(pd);
    }
    if (!rc) {
        json_object_set_new(m, "version", json_integer(RTR_KB_VERSION_MAX));
        json_object_set_new(m, "partitions", json_pack("{s:i, s:O}", "count", (int)count, "dirs", dirs));
        rc = rtr_kb_manifest_write(tmp, m);
    }
    json_decref(m);
    json_decref(dirs);
    if (rc) {
        rtr_rmtree(tmp);
        return rc;
    }
    return rtr_kb_create_commit(tmp, dir);
}

/* Rank 0's part of opening: a missing (or empty) dir is created with count partitions. */
static int create_if_missing(const char *dir, unsigned flags, uint32_t count, const rtr_tokenizer *tok) {
    char *mp = rtr_path_join(dir, "manifest.json");
    if (!mp) return RTR_E_NOMEM;
    int has = rtr_path_exists(mp);
    rtr_free(mp);
    if (has || !(flags & RTR_KB_CREATE)) return RTR_OK;   /* opening says what is wrong, if anything */
    RTR_ASSERT(tok != NULL);
    rtr_kb *kb = NULL;
    if (count == 1) {   /* today's knowledge base */
        int rc = rtr_kb_open(dir, RTR_KB_CREATE, tok, NULL, &kb);
        rtr_kb_close(kb);
        return rc;
    }
    struct stat st;
    if (stat(dir, &st) == 0) {   /* as rtr_kb_open: an empty directory is taken, anything else refused */
        if (!S_ISDIR(st.st_mode)) return rtr_seterr(RTR_E_INVALID, "%s: not a directory", dir);
        if (rmdir(dir) != 0)
            return rtr_seterr(RTR_E_INVALID, "%s: not a retro knowledge base (no manifest.json) and not empty; "
                              "refusing to write into it", dir);
    }
    return create_split(dir, count, tok);
}

/* --- opening ---------------------------------------------------------------------------------- */
/* Reads dir's manifest and, for a knowledge base of partitions, checks its "partitions" section. */
static int read_top(rtr_parts *ps) {
    char *mp = rtr_path_join(ps->dir, "manifest.json");
    uint8_t *data = NULL;
    size_t len;
    int rc = mp ? rtr_read_file(mp, MANIFEST_MAX, &data, &len) : RTR_E_NOMEM;
    if (rc == RTR_E_NOTFOUND) {
        struct stat st;
        rc = stat(ps->dir, &st) != 0 ? rtr_seterr(RTR_E_NOTFOUND, "%s: no such knowledge base", ps->dir)
                                     : rtr_seterr(RTR_E_INVALID, "%s: not a retro knowledge base (no manifest.json)", ps->dir);
    }
    rtr_kb_manifest mf;
    if (!rc) rc = rtr_kb_manifest_parse(data, len, mp, &mf);
    if (!rc) ps->manifest = mf.json;
    json_t *parts = rc ? NULL : json_object_get(ps->manifest, "partitions");
    ps->count = 1;
    if (parts) {
        json_t *dirs = json_object_get(parts, "dirs");
        json_int_t n = json_integer_value(json_object_get(parts, "count"));
        if (n < 1 || n > RTR_PARTS_MAX || !json_is_array(dirs) || json_array_size(dirs) != (size_t)n)
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: \"partitions\" must name 1..%d directories", mp, RTR_PARTS_MAX);
        for (json_int_t p = 0; p < n && !rc; p++) {   /* the names are fixed: nothing outside dir is opened */
            char name[32];
            snprintf(name, sizeof name, "part-%04u", (unsigned)p);
            const char *d = json_string_value(json_array_get(dirs, (size_t)p));
            if (!d || strcmp(d, name)) rc = rtr_seterr(RTR_E_CORRUPT, "%s: partition %lld must be \"%s\"", mp, (long long)p, name);
        }
        if (!rc) ps->count = (uint32_t)n, ps->split = 1;
    }
    rtr_free(data);
    rtr_free(mp);
    return rc;
}

/* This rank's partitions, opened with flags; a knowledge base of partitions also loads its tokenizer
 * (checked against the manifest and each partition's). */
static int open_parts(rtr_parts *ps, unsigned flags) {
    if (!(ps->kbs = rtr_calloc(ps->count, sizeof *ps->kbs))) return RTR_E_NOMEM;
    int rc = RTR_OK;
    char *tp = rtr_path_join(ps->dir, "tokenizer.rtok");
    if (!tp) return RTR_E_NOMEM;
    if (!(rc = rtr_tokenizer_load(tp, &ps->tok))) {
        char h[33];
        rtr_tokenizer_hash(ps->tok, h);
        const char *want = json_string_value(json_object_get(json_object_get(ps->manifest, "tokenizer"), "hash"));
        if (!want || strcmp(h, want))
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: tokenizer hash %s does not match the manifest's %s", tp, h, want ? want : "");
    }
    rtr_free(tp);
    for (uint32_t p = 0; p < ps->count && !rc; p++) {
        if (!mine(ps, p)) continue;
        char *d = ps->split ? part_dir(ps->dir, p) : rtr_strdup(ps->dir);
        rc = d ? rtr_kb_open(d, flags & RTR_KB_WRITE, NULL, NULL, &ps->kbs[p]) : RTR_E_NOMEM;
        if (!rc && ps->split) rc = rtr_kb_check_tokenizer(ps->kbs[p], ps->tok);
        rtr_free(d);
    }
    if (!rc && ps->split && (flags & RTR_KB_WRITE) && rtr_comm_rank(ps->comm) == 0) {
        char *lp = rtr_path_join(ps->dir, "lock");
        if (!lp) return RTR_E_NOMEM;
        ps->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (ps->lock_fd < 0) rc = rtr_seterr(rtr_status_from_errno(errno), "%s: %s", lp, strerror(errno));
        else if (flock(ps->lock_fd, LOCK_EX | LOCK_NB) != 0)
            rc = rtr_seterr(RTR_E_BUSY, "%s: another retro process is writing to this knowledge base", ps->dir);
        rtr_free(lp);
    }
    return rc;
}

int rtr_parts_probe(const char *dir, uint32_t *count) {
    rtr_parts probe = {.dir = (char *)dir};
    int rc = read_top(&probe);
    *count = rc ? 0 : probe.count;
    json_decref(probe.manifest);
    return rc;
}

int rtr_parts_open(const char *dir, unsigned flags, uint32_t count, const rtr_tokenizer *tok, rtr_comm *c,
                   rtr_parts **out) {
    *out = NULL;
    if (count > RTR_PARTS_MAX) return rtr_seterr(RTR_E_INVALID, "partitions must be 1..%d", RTR_PARTS_MAX);
    rtr_parts *ps = rtr_calloc(1, sizeof *ps);
    int rc = ps && (ps->dir = rtr_strdup(dir)) ? RTR_OK : RTR_E_NOMEM;
    if (ps) ps->comm = c, ps->lock_fd = -1, ps->flags = flags;
    uint32_t want = count ? count : (uint32_t)rtr_comm_size(c);
    if (!rc && rtr_comm_rank(c) == 0) rc = create_if_missing(dir, flags, want, tok);
    rc = rtr_comm_agree(c, rc);
    if (!rc) rc = read_top(ps);
    if (!rc && count && count != ps->count)
        rc = rtr_seterr(RTR_E_MISMATCH, "%s: a knowledge base of %u partition%s; %u were asked for", dir, ps->count,
                        ps->count == 1 ? "" : "s", count);
    if (!rc) rc = open_parts(ps, flags);
    rc = rtr_comm_agree(c, rc);
    if (rc) {
        rtr_parts_close(ps);
        return rc;
    }
    *out = ps;
    return RTR_OK;
}

int rtr_parts_open_one(const rtr_parts *ps, uint32_t p, rtr_kb **out) {
    RTR_ASSERT(p < ps->count);
    char *d = ps->split ? part_dir(ps->dir, p) : rtr_strdup(ps->dir);
    int rc = d ? rtr_kb_open(d, 0, NULL, NULL, out) : RTR_E_NOMEM;
    rtr_free(d);
    return rc;
}

void rtr_parts_close(rtr_parts *ps) {
    if (!ps) return;
    for (uint32_t p = 0; ps->kbs && p < ps->count; p++) rtr_kb_close(ps->kbs[p]);
    rtr_free(ps->kbs);
    rtr_tokenizer_free(ps->tok);
    json_decref(ps->manifest);
    if (ps->lock_fd >= 0) close(ps->lock_fd);
    rtr_free(ps->dir);
    rtr_free(ps);
}

/* --- adding ----------------------------------------------------------------------------------- */
#define N_COUNTERS 13
static void report_counters(rtr_ingest_report *r, uint64_t **v) {
    uint64_t *f[N_COUNTERS] = {&r->files,        &r->files_new,   &r->files_changed, &r->files_unchanged,
                               &r->files_skipped, &r->files_pruned, &r->docs_added,   &r->docs_removed,
                               &r->docs_kept,     &r->chunks_added, &r->tokens_added, &r->bytes_read,
                               &r->bad_records};
    memcpy(v, f, sizeof f);
}

static int cmp_skip(const void *a, const void *b) {
    return strcmp(((const rtr_skip *)a)->path, ((const rtr_skip *)b)->path);
}

/* Every rank's skips to rank 0, appended there in rank order (the others keep theirs): each as its
 * reason, then its path and detail NUL-terminated (an empty detail: none). A collective. */
static int gather_skips(rtr_comm *c, rtr_skip_list *l) {
    rtr_buf b = {0};
    int rc = RTR_OK;
    for (size_t i = 0; i < l->n && !rc && rtr_comm_rank(c) != 0; i++) {
        const rtr_skip *k = &l->items[i];
        uint32_t reason = k->reason;
        if (!(rc = rtr_buf_append(&b, &reason, sizeof reason)) && !(rc = rtr_buf_append(&b, k->path, strlen(k->path) + 1)))
            rc = rtr_buf_append(&b, k->detail ? k->detail : "", strlen(k->detail ? k->detail : "") + 1);
    }
    uint8_t *all;
    size_t *lens;
    rc = rtr_comm_gather_agreed(c, rc, b.data, b.len, 0, &all, &lens);
    size_t total = 0;
    for (int r = 0; !rc && rtr_comm_rank(c) == 0 && r < rtr_comm_size(c); r++) total += lens[r];
    for (size_t at = 0; !rc && at < total;) {   /* rank 0 reads what this code wrote on the others */
        uint32_t reason;
        RTR_ASSERT(total - at > sizeof reason);
        memcpy(&reason, all + at, sizeof reason);
        const char *path = (const char *)all + at + sizeof reason, *detail = path + strlen(path) + 1;
        at = (size_t)((const uint8_t *)detail - all) + strlen(detail) + 1;
        RTR_ASSERT(at <= total);
        rc = rtr_skip_list_add(l, path, reason, *detail ? detail : NULL);
    }
    rtr_free(all);
    rtr_free(lens);
    rtr_buf_free(&b);
    return rc;
}

int rtr_parts_ingest(rtr_parts *ps, const char *const *paths, size_t n, const rtr_ingest_opts *o,
                     rtr_ingest_report *rep) {
    memset(rep, 0, sizeof *rep);
    double t0 = rtr_now();
    int rc = RTR_OK;
    uint64_t *sum[N_COUNTERS], *one[N_COUNTERS], v[N_COUNTERS];
    report_counters(rep, sum);
    for (uint32_t p = 0; p < ps->count && !rc; p++) {
        if (!ps->kbs[p]) continue;
        rtr_ingest_opts po = *o;
        if (ps->split) po.part = p, po.part_count = ps->count;
        po.progress = o->progress && rtr_comm_rank(ps->comm) == 0;
        rtr_ingest_report r;
        rc = rtr_ingest(ps->kbs[p], paths, n, &po, &r);
        report_counters(&r, one);
        for (int i = 0; i < N_COUNTERS; i++) *sum[i] += *one[i];
        for (size_t i = 0; i < r.skips.n && !rc; i++)
            rc = rtr_skip_list_add(&rep->skips, r.skips.items[i].path, r.skips.items[i].reason, r.skips.items[i].detail);
        rtr_ingest_report_free(&r);
    }
    rc = rtr_comm_agree(ps->comm, rc);
    for (int i = 0; i < N_COUNTERS; i++) v[i] = *sum[i];
    if (!rc) rc = rtr_comm_sum_u64(ps->comm, v, N_COUNTERS);
    for (int i = 0; i < N_COUNTERS; i++) *sum[i] = v[i];
    if (!rc && rtr_comm_size(ps->comm) > 1) rc = gather_skips(ps->comm, &rep->skips);
    if (ps->split && rep->skips.n) qsort(rep->skips.items, rep->skips.n, sizeof *rep->skips.items, cmp_skip);   /* path order */
    rep->seconds = rtr_now() - t0;
    return rc;
}

/* --- building --------------------------------------------------------------------------------- */
/* Replaces a section of the top manifest (rank 0, which holds KB/lock). */
static int top_set(rtr_parts *ps, const char *key, json_t *value) {
    RTR_ASSERT(ps->lock_fd >= 0);
    json_object_set_new(ps->manifest, key, value);
    return rtr_kb_manifest_write(ps->dir, ps->manifest);
}

/* The files an embedder's description names under KB/index/ (a projection's, the hash statistics):
 * fresh names in out[0..2) (NULL where none). */
/* Copies the trained embedder's files from KB/index/ into partition kb's index/ (its manifest names
 * them there). */
static int copy_embedder_files(const char *from_dir, rtr_kb *kb, const json_t *emb) {
    char *names[2];
    rtr_build_embedder_files(emb, names);
    char *to_dir = rtr_path_join(rtr_kb_dir(kb), "index");
    int rc = to_dir ? rtr_mkdirs(to_dir) : RTR_E_NOMEM;
    for (int i = 0; i < 2 && !rc; i++) {
        if (!names[i]) continue;
        char *src = rtr_path_join(from_dir, names[i]), *dst = rtr_path_join(to_dir, names[i]);
        uint8_t *data = NULL;
        size_t len;
        rc = src && dst ? RTR_OK : RTR_E_NOMEM;
        if (!rc && !rtr_path_exists(dst) && !(rc = rtr_read_file(src, (size_t)1 << 34, &data, &len)))
            rc = rtr_write_file_atomic(dst, data, len);
        rtr_free(data);
        rtr_free(src);
        rtr_free(dst);
    }
    rtr_free(names[0]);
    rtr_free(names[1]);
    rtr_free(to_dir);
    return rc;
}

/* Chunks of every partition (store counts; summed over the ranks). */
static int count_chunks(rtr_parts *ps, uint64_t *n) {
    int rc = RTR_OK;
    for (uint32_t p = 0; p < ps->count && !rc; p++) {
        n[p] = 0;
        if (!ps->kbs[p]) continue;
        rtr_store_txn *t;
        if (!(rc = rtr_store_read_begin(rtr_kb_store(ps->kbs[p]), &t))) {
            rtr_store_stats st;
            rtr_store_get_stats(t, &st);
            n[p] = st.n_chunks;
            rtr_store_txn_end(t);
        }
    }
    rc = rtr_comm_agree(ps->comm, rc);
    return rc ? rc : rtr_comm_sum_u64(ps->comm, n, ps->count);
}

/* The embedder of a first build: the caller's, or the hash embedder with the document frequencies of
 * every partition's chunks (saved in KB/index/ by rank 0). A collective. */
static int shared_embedder(rtr_parts *ps, const rtr_build_opts *o, const char *index_dir, rtr_embedder **own) {
    *own = NULL;
    if (o->embedder) return RTR_OK;
    rtr_hash_df df = {0};
    int rc = rtr_hash_df_init(&df, RTR_HASH_DEFAULT_BITS);
    for (uint32_t p = 0; p < ps->count && !rc; p++)
        if (ps->kbs[p]) rc = rtr_build_count_df(ps->kbs[p], &df);
    rc = rtr_comm_agree(ps->comm, rc);
    if (!rc) rc = rtr_comm_sum_u32(ps->comm, df.df, (size_t)1 << df.bits);
    if (!rc) rc = rtr_comm_sum_u64(ps->comm, &df.n, 1);
    if (!rc && rtr_comm_rank(ps->comm) == 0) {
        char *name = rtr_hash_df_filename(rtr_hash_df_checksum(&df));
        char *path = name ? rtr_path_join(index_dir, name) : NULL;
        rc = path ? rtr_hash_df_save(&df, path) : RTR_E_NOMEM;
        rtr_free(name);
        rtr_free(path);
    }
    rc = rtr_comm_agree(ps->comm, rc);
    rtr_hash_embedder_opts ho = {o->hash_dim, 0, &df};
    if (!rc) rc = rtr_hash_embedder_new(&ho, own);
    rtr_hash_df_free(&df);
    return rc;
}

/* An evenly spread sample of m of all n_all chunks (n[p] in partition p), embedded with e, gathered
 * on rank 0 in partition order (*x: *got x e->dim there, NULL elsewhere). Partition p gives
 * floor(m * C(p+1) / n_all) - floor(m * C(p) / n_all) of its chunks, C(p) the chunks before it. */
static int gather_sample(rtr_parts *ps, const uint64_t *n, uint64_t n_all, uint64_t m, rtr_embedder *e, int threads,
                         float **x, size_t *got) {
    *x = NULL;
    *got = 0;
    size_t row = (size_t)e->dim * sizeof(float);
    rtr_buf mine_buf = {0};   /* this rank's partitions: (u32 p, u32 rows, rows x dim floats) each */
    int rc = RTR_OK;
    uint64_t before = 0;
    for (uint32_t p = 0; p < ps->count && !rc; p++) {
        uint64_t lo = (uint64_t)((double)m * (double)before / (double)n_all);
        before += n[p];
        uint64_t hi = (uint64_t)((double)m * (double)before / (double)n_all), mp = hi - lo;
        if (!ps->kbs[p] || mp == 0) continue;
        float *xs = NULL;
        size_t k = 0;
        if (!(rc = rtr_build_sample(ps->kbs[p], mp, e, threads, &xs, &k))) {
            uint32_t head[2] = {p, (uint32_t)k};
            if (!(rc = rtr_buf_append(&mine_buf, head, sizeof head))) rc = rtr_buf_append(&mine_buf, xs, k * row);
        }
        rtr_free(xs);
    }
    uint8_t *all;
    size_t *lens;
    rc = rtr_comm_gather_agreed(ps->comm, rc, mine_buf.data, mine_buf.len, 0, &all, &lens);
    if (!rc && rtr_comm_rank(ps->comm) == 0) {
        /* the ranks' pieces, put in partition order */
        size_t total = 0, ranks = (size_t)rtr_comm_size(ps->comm);
        for (size_t r = 0; r < ranks; r++) total += lens[r];
        size_t *at = rtr_calloc(ps->count, sizeof *at), *rows = rtr_calloc(ps->count, sizeof *rows);
        float *out = rtr_malloc(total + 1);
        if (!at || !rows || !out) rc = RTR_E_NOMEM;
        for (size_t off = 0; !rc && off < total;) {
            uint32_t head[2];
            RTR_ASSERT(off + sizeof head <= total);
            memcpy(head, all + off, sizeof head);
            RTR_ASSERT(head[0] < ps->count && off + sizeof head + head[1] * row <= total);
            at[head[0]] = off + sizeof head;
            rows[head[0]] = head[1];
            off += sizeof head + head[1] * row;
        }
        for (uint32_t p = 0; p < ps->count && !rc; p++) {
            if (rows[p]) memcpy((uint8_t *)out + *got * row, all + at[p], rows[p] * row);
            *got += rows[p];
        }
        rtr_free(at);
        rtr_free(rows);
        if (rc) rtr_free(out);
        else *x = out;
    }
    rtr_free(all);
    rtr_free(lens);
    rtr_buf_free(&mine_buf);
    return rtr_comm_agree(ps->comm, rc);
}

/* A first build's training, once for every partition: the embedder (shared_embedder), the plan for
 * all chunks, a projection and an inverted file's quantizer fitted on rank 0 on a sample of every
 * partition; an empty trained index of one shard saved in KB/index/ and named, with the embedder, by
 * the top manifest's "trained" section (an "index" section's shape). A collective. */
static int train_shared(rtr_parts *ps, const rtr_build_opts *o, const uint64_t *n, rtr_build_report *rep) {
    uint64_t n_all = 0;
    for (uint32_t p = 0; p < ps->count; p++) n_all += n[p];
    if (n_all == 0) return rtr_seterr(RTR_E_INVALID, "%s: no chunks to index; add documents first", ps->dir);
    char *index_dir = rtr_path_join(ps->dir, "index");
    int rc = index_dir ? RTR_OK : RTR_E_NOMEM;
    if (!rc && rtr_comm_rank(ps->comm) == 0) rc = rtr_mkdirs(index_dir);
    rc = rtr_comm_agree(ps->comm, rc);
    rtr_embedder *own = NULL, *pe = NULL;
    if (!rc) rc = shared_embedder(ps, o, index_dir, &own);
    rtr_embedder *e = own ? own : o->embedder;
    if (!rc && e->dim == 0)
        rc = rtr_seterr(RTR_E_INVALID, "%s: the embedder's dimension is not known yet; build one partition of it first",
                        ps->dir);
    /* the plan, for every chunk over every partition's shards: the same on every rank */
    uint32_t per = o->shards ? o->shards : rtr_build_default_shards(n_all / ps->count), proj = 0;
    rtr_vindex_plan plan;
    if (!rc) rc = rtr_build_plan(o, n_all, e->dim, per * ps->count, &proj, &plan);
    uint64_t m = rc ? 0 : rtr_build_sample_size(&plan, proj, n_all);
    float *x = NULL, *train = NULL;
    size_t got = 0;
    int threads = o->threads > 0 ? o->threads : 0;
    if (!rc && m) rc = gather_sample(ps, n, n_all, m, e, threads, &x, &got);
    rtr_vindex *proto = NULL;
    if (!rc && rtr_comm_rank(ps->comm) == 0) {
        if (proj) {
            rc = rtr_build_project(x, got, e, e == own, proj, index_dir, &train, &pe);
            if (!rc && e == own) own = NULL;   /* pe owns it now */
            if (!rc) e = pe;
        }
        if (!rc) rc = rtr_vindex_create(&plan, e->dim, 1, proj ? train : x, got, &proto);
        json_t *section = NULL;
        if (!rc) rc = rtr_build_save_index(proto, e, index_dir, "trained", 1, 0, n_all, &section);
        if (!rc) {
            json_object_set_new(section, "why", json_string(plan.why));
            json_object_set_new(section, "partitions", json_integer(ps->count));
            rc = top_set(ps, "trained", section);
        }
        if (!rc) snprintf(rep->why, sizeof rep->why, "%s", plan.why);
        if (!rc) rtr_build_remove_stale(index_dir, section);   /* an earlier training's files */
    }
    rtr_vindex_free(proto);
    rtr_embedder_free(pe);
    rtr_embedder_free(own);
    rtr_free(x);
    rtr_free(train);
    rtr_free(index_dir);
    return rtr_comm_agree(ps->comm, rc);
}

/* The trained state recorded in the top manifest (rank 0 may have just written it: read again):
 * its embedder and its empty trained index. */
static int load_trained(rtr_parts *ps, rtr_embedder **e, rtr_vindex **proto, json_t **emb_desc) {
    *e = NULL;
    *proto = NULL;
    *emb_desc = NULL;
    json_decref(ps->manifest);
    ps->manifest = NULL;
    int rc = read_top(ps);
    json_t *tr = rc ? NULL : json_object_get(ps->manifest, "trained");
    char *index_dir = rtr_path_join(ps->dir, "index");
    char where[64];
    snprintf(where, sizeof where, "\"trained\" section");
    rtr_vectors_section sec = {0};
    rtr_vindex_files *files = NULL;
    if (!rc && !index_dir) rc = RTR_E_NOMEM;
    if (!rc && !tr) rc = rtr_seterr(RTR_E_CORRUPT, "%s/manifest.json: no \"trained\" section", ps->dir);
    if (!rc) rc = rtr_vectors_section_parse(tr, where, &sec);
    if (!rc && sec.n_shards != 1) rc = rtr_seterr(RTR_E_CORRUPT, "%s/manifest.json: \"trained\" names %zu shards, not 1", ps->dir, sec.n_shards);
    if (!rc) rc = rtr_embedder_from_desc(ps->dir, sec.embedder_desc, e);
    if (!rc) rc = rtr_vindex_files_open(index_dir, 1, sec.shards, NULL, &files);
    if (!rc) rc = rtr_vindex_files_load(files, sec.nprobe, sec.factory, proto);
    if (!rc) *emb_desc = json_incref(json_object_get(tr, "embedder"));
    rtr_vindex_files_close(files);
    rtr_vectors_section_free(&sec);
    rtr_free(index_dir);
    if (rc) {
        rtr_embedder_free(*e);
        rtr_vindex_free(*proto);
        *e = NULL;
        *proto = NULL;
    }
    return rc;
}

#define N_BUILD_COUNTERS 8
static void build_counters(rtr_build_report *r, uint64_t *v, int add_back) {
    uint64_t *f[N_BUILD_COUNTERS] = {&r->embedded,        &r->removed,        &r->vectors, &r->live_chunks,
                                     &r->lexical_indexed, &r->lexical_chunks, NULL,        NULL};
    uint64_t sh = r->shards, cp = r->checkpoints;
    f[6] = &sh, f[7] = &cp;
    for (int i = 0; i < N_BUILD_COUNTERS; i++) {
        if (add_back) *f[i] = v[i];
        else v[i] += *f[i];
    }
    if (add_back) r->shards = (uint32_t)sh, r->checkpoints = (uint32_t)cp;
}

int rtr_parts_build(rtr_parts *ps, const rtr_build_opts *o, rtr_build_report *rep) {
    memset(rep, 0, sizeof *rep);
    int rc;
    if (!ps->split) {   /* one partition: the build of kb.h's knowledge base, on rank 0 */
        rc = ps->kbs[0] ? rtr_index_build(ps->kbs[0], o, rep) : RTR_OK;
        return rtr_comm_agree(ps->comm, rc);
    }
    double t0 = rtr_now();
    int rank0 = rtr_comm_rank(ps->comm) == 0;
    uint64_t *n = rtr_calloc(ps->count, sizeof *n), v[N_BUILD_COUNTERS] = {0};
    rc = n ? RTR_OK : RTR_E_NOMEM;
    rc = rtr_comm_agree(ps->comm, rc);
    if (!rc) rc = count_chunks(ps, n);
    if (!rc && (o->retrain || !json_object_get(ps->manifest, "trained"))) {
        rc = train_shared(ps, o, n, rep);
        rep->created = 1;
    }
    /* each partition: built on what it recorded, or (new, or --retrain) on the trained state */
    rtr_embedder *e = NULL;
    rtr_vindex *proto = NULL;
    json_t *emb_desc = NULL;
    char *index_dir = rtr_path_join(ps->dir, "index");
    if (!rc && !index_dir) rc = RTR_E_NOMEM;
    for (uint32_t p = 0; p < ps->count && !rc; p++) {
        if (!ps->kbs[p]) continue;
        rtr_build_opts po = *o;
        po.progress = o->progress && rank0;
        if (o->retrain || !rtr_kb_manifest_get(ps->kbs[p], "index")) {
            if (!e) rc = load_trained(ps, &e, &proto, &emb_desc);
            if (!rc) rc = copy_embedder_files(index_dir, ps->kbs[p], emb_desc);
            po.embedder = e, po.proto = proto, po.project = -1, po.factory = NULL;
        } else {
            po.embedder = NULL;
        }
        rtr_build_report r;
        if (!rc) rc = rtr_index_build(ps->kbs[p], &po, &r);
        if (!rc) {
            build_counters(&r, v, 0);
            rep->embed_seconds += r.embed_seconds;
            rep->lexical_seconds += r.lexical_seconds;
            rep->drifted |= r.drifted;
            rep->trained_on += r.trained_on;
            if (!rep->dim) {
                rep->dim = r.dim, rep->nlist = r.nlist, rep->nprobe = r.nprobe;
                snprintf(rep->factory, sizeof rep->factory, "%s", r.factory);
                if (!rep->why[0]) snprintf(rep->why, sizeof rep->why, "%s", r.why);
            }
        }
    }
    rtr_embedder_free(e);
    rtr_vindex_free(proto);
    json_decref(emb_desc);
    rtr_free(index_dir);
    rtr_free(n);
    rc = rtr_comm_agree(ps->comm, rc);
    if (!rc) rc = rtr_comm_sum_u64(ps->comm, v, N_BUILD_COUNTERS);
    if (!rc) build_counters(rep, v, 1);
    /* rank 0 may hold no partition's report (a job larger than the partitions): the plan from the top */
    json_t *tr = json_object_get(ps->manifest, "trained");
    if (!rc && !rep->dim && tr) {
        rep->dim = (uint32_t)json_integer_value(json_object_get(tr, "dim"));
        rep->nlist = (uint32_t)json_integer_value(json_object_get(tr, "nlist"));
        rep->nprobe = (uint32_t)json_integer_value(json_object_get(tr, "nprobe"));
        const char *f = json_string_value(json_object_get(tr, "factory"));
        snprintf(rep->factory, sizeof rep->factory, "%s", f ? f : "");
    }
    rep->seconds = rtr_now() - t0;
    return rc;
}
