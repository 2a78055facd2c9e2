/* check.c - a knowledge base checked whole: store, manifest, vector files and vectors (see check.h). */
#include "index/check.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/vectors.h"
#include "lib/alloc.h"
#include "lib/sort.h"
#include "lib/status.h"

#define SAMPLE 256   /* chunks embedded again to find their own vectors */

typedef struct ck {
    rtr_check_fn report;
    void *ctx;
    rtr_kb_check_report *rep;
} ck;

#define problem(c, ...) rtr_check_problem((c)->report, (c)->ctx, &(c)->rep->problems, __VA_ARGS__)

static void count_store_problem(void *ctx, const char *msg) {
    ck *c = ctx;
    if (c->report) c->report(c->ctx, msg);
}

/* Every vector id against the chunks: at or below the watermark, once, live or stale. */
static int check_ids(ck *c, rtr_kb *kb, rtr_kb_vectors *v, rtr_vindex *vx, rtr_store_txn *t) {
    uint64_t upto = rtr_kb_vectors_indexed_upto(v);
    int64_t *all = NULL;
    size_t n_all = 0;
    int rc = RTR_OK;
    for (uint32_t s = 0; s < rtr_vindex_shards(vx) && !rc; s++) {
        int64_t *ids;
        size_t n;
        if ((rc = rtr_vindex_ids(vx, s, &ids, &n))) {
            if (rc == RTR_E_INVALID || rc == RTR_E_CORRUPT) {
                problem(c, "%s: %s", rtr_kb_dir(kb), rtr_errdetail());
                rc = RTR_OK;
            }
            break;
        }
        size_t cap = n_all;
        if (!(rc = rtr_grow(&all, &cap, n_all + n, sizeof *all))) {
            memcpy(all + n_all, ids, n * sizeof *ids);
            n_all += n;
        }
        rtr_free(ids);
    }
    if (!rc) qsort(all, n_all, sizeof *all, rtr_cmp_u64);   /* ids are positive: the same order */
    for (size_t i = 0; !rc && i < n_all; i++) {
        if (all[i] <= 0 || (uint64_t)all[i] > upto) {
            problem(c, "vector id %" PRId64 " is not a chunk id at or below the index's watermark %" PRIu64, all[i], upto);
            continue;
        }
        if (i && all[i] == all[i - 1]) problem(c, "chunk %" PRId64 " has two vectors", all[i]);
        rtr_chunk ch;
        int x = rtr_store_get_chunk(t, (uint64_t)all[i], &ch);
        if (x == RTR_E_NOTFOUND) c->rep->stale++;
        else if (x && x != RTR_E_CORRUPT) rc = x;
    }
    /* every live chunk at or below the watermark has a vector */
    rtr_chunk ch;
    uint64_t after = 0;
    while (!rc) {
        int x = rtr_store_next_chunk(t, after, &ch);
        if (x == RTR_E_NOTFOUND) break;
        if (x == RTR_E_CORRUPT) {   /* the store check reports it */
            after++;
            continue;
        }
        if (x) {
            rc = x;
            break;
        }
        after = ch.id;
        if (ch.id > upto) {
            c->rep->unindexed++;
            continue;
        }
        int64_t key = (int64_t)ch.id;
        if (!bsearch(&key, all, n_all, sizeof *all, rtr_cmp_u64)) problem(c, "chunk %" PRIu64 " has no vector", ch.id);
    }
    rtr_free(all);
    return rc;
}

/* A sample of indexed chunks, embedded again, must find their own vectors
 * (or one at the same distance: a chunk with the same text). */
static int check_sample(ck *c, const rtr_kb *kb, rtr_kb_vectors *v, rtr_vindex *vx, rtr_store_txn *t,
                        uint64_t upto) {
    rtr_embedder *e = rtr_kb_vectors_embedder(v);
    uint32_t dim = rtr_vindex_dim(vx), k = 4;
    uint64_t ids[SAMPLE];
    rtr_text texts[SAMPLE];
    size_t off[SAMPLE + 1], n = 0;
    rtr_buf text = {0};
    int rc = RTR_OK;
    uint64_t step = upto / SAMPLE + 1;
    for (uint64_t id = 1; id <= upto && n < SAMPLE && !rc; id += step) {
        rtr_chunk ch;
        int x = rtr_store_next_chunk(t, id - 1, &ch);
        if (x == RTR_E_NOTFOUND || (!x && ch.id > upto)) break;
        if (x == RTR_E_CORRUPT) continue;
        if (x) {
            rc = x;
            break;
        }
        if (n && ch.id == ids[n - 1]) continue;
        off[n] = text.len;
        if ((rc = rtr_tokenizer_decode(rtr_kb_tokenizer((rtr_kb *)kb), ch.tokens, ch.n_tokens, &text))) break;
        ids[n++] = ch.id;
    }
    off[n] = text.len;
    for (size_t i = 0; i < n; i++) texts[i] = (rtr_text){(const char *)text.data + off[i], off[i + 1] - off[i]};
    float *q = rc || !n ? NULL : rtr_malloc(n * dim * sizeof *q), *dist = q ? rtr_malloc(n * k * sizeof *dist) : NULL;
    int64_t *hit = dist ? rtr_malloc(n * k * sizeof *hit) : NULL;
    if (!rc && n && !hit) rc = RTR_E_NOMEM;
    if (!rc && n) rc = rtr_embedder_embed(e, texts, n, q);
    if (!rc && n) rc = rtr_vindex_search(vx, n, q, k, dist, hit);
    for (size_t i = 0; !rc && i < n; i++) {
        c->rep->sampled++;
        int found = 0;
        for (uint32_t j = 0; j < k && !found; j++)
            found = hit[i * k + j] == (int64_t)ids[i];
        /* a duplicate text may rank first: accept a first result as close as the chunk's own */
        if (!found && hit[i * k] >= 0 && dist[i * k] <= 1e-4f) found = 1;
        c->rep->found += found;
    }
    rtr_free(q);
    rtr_free(dist);
    rtr_free(hit);
    rtr_buf_free(&text);
    return rc;
}

int rtr_kb_check(rtr_kb *kb, rtr_check_fn report, void *ctx, rtr_kb_check_report *out) {
    memset(out, 0, sizeof *out);
    ck c = {report, ctx, out};
    int rc = rtr_store_check(rtr_kb_store(kb), rtr_kb_tokenizer(kb), count_store_problem, &c, &out->store);
    out->problems += out->store.problems;
    if (rc) return rc;
    rtr_store_txn *lt = NULL;
    if (!(rc = rtr_store_read_begin(rtr_kb_store(kb), &lt))) {
        rc = rtr_lex_check(lt, count_store_problem, &c, &out->lexical);
        rtr_store_txn_end(lt);
        out->problems += out->lexical.problems;
    }
    if (rc) return rc;
    if (!rtr_kb_manifest_get(kb, "index")) return RTR_OK;
    out->indexed = 1;
    rtr_kb_vectors *v = NULL;
    rtr_vindex *vx = NULL;
    int x = rtr_kb_vectors_open(kb, &v);   /* the embedder */
    if (!x) x = rtr_kb_vectors_vindex(v, &vx);   /* shard sizes and checksums, FAISS's own checks */
    if (x == RTR_E_NOMEM) {
        rtr_kb_vectors_close(v);
        return x;
    }
    if (x) {
        problem(&c, "%s", rtr_errdetail());
        rtr_kb_vectors_close(v);
        return RTR_OK;
    }
    out->vectors = rtr_vindex_ntotal(vx);
    json_t *nv = json_object_get(rtr_kb_manifest_get(kb, "index"), "vectors");
    if (json_is_integer(nv) && (uint64_t)json_integer_value(nv) != out->vectors)
        problem(&c, "the manifest records %lld vectors, the shards hold %llu", (long long)json_integer_value(nv),
                (unsigned long long)out->vectors);
    rtr_store_txn *t = NULL;
    rc = rtr_store_read_begin(rtr_kb_store(kb), &t);
    if (!rc) rc = check_ids(&c, kb, v, vx, t);
    rtr_vindex *sx = NULL;   /* what searches use: the codes mapped, where the shards have them */
    if (!rc) {
        x = rtr_kb_vectors_verify_codes(v);
        if (!x) x = rtr_kb_vectors_search_index(v, &sx);
        if (x == RTR_E_NOMEM) rc = x;
        else if (x) problem(&c, "%s", rtr_errdetail());
    }
    if (!rc) rc = check_sample(&c, kb, v, sx ? sx : vx, t, rtr_kb_vectors_indexed_upto(v));
    if (!rc && out->sampled && out->found * 10 < out->sampled * 9)
        problem(&c, "only %llu of %llu chunks embedded again find their own vector: the vectors are not these chunks'",
                (unsigned long long)out->found, (unsigned long long)out->sampled);
    rtr_store_txn_end(t);
    rtr_kb_vectors_close(v);
    return rc;
}
