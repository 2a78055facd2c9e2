/*
 * bench_ann.c - retrieval quality and speed on a built knowledge base.
 *
 *   bench_ann KB [QUERIES]
 *
 * Queries: QUERIES (default 1000) chunks of the knowledge base, drawn with a
 * fixed seed, each with a fifth of its words dropped. Ground truth: an exact
 * (flat) index over the same vectors, made by re-embedding every chunk.
 * Prints: recall@10 of the knowledge base's index at its default nprobe and
 * at others; latency p50/p99 of single queries and of batches of 32 (raw
 * FAISS search); the whole query path (tokenize, embed, search, filter,
 * fetch from LMDB) against the raw search of the same vector; embedding
 * throughput of the embedder on 1 and 2 threads. BENCH_ANN_SLOWEST=N also
 * prints each mode's N slowest queries.
 */
#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/build.h"
#include "lib/alloc.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "tests/bench/bench_util.h"
#include "retriever/retriever.h"

#define K 10

static uint64_t rng = 0x5eed;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* Whether chunk id is chunk src or an exact copy of it (the same tokens). */
static int is_source(rtr_store_txn *t, uint64_t id, int64_t src) {
    if (id == (uint64_t)src) return 1;
    rtr_chunk a, b;
    return !rtr_store_get_chunk(t, id, &a) && !rtr_store_get_chunk(t, (uint64_t)src, &b) && a.n_tokens == b.n_tokens &&
           !memcmp(a.tokens, b.tokens, a.n_tokens * sizeof *a.tokens);
}

/* Rank-1 recovery of the perturbed chunks in each search mode (BENCH_ANN_MODES, default "vector lexical
 * hybrid"): the first hit is the chunk the query was cut from or an exact copy of it (the same tokens);
 * with each mode's latency (ms) of the whole query path. */
static void recovery(rtr_retriever *r, rtr_store_txn *t, char **qtext, const size_t *qlen, const int64_t *qsrc,
                     size_t nq, double *lat, char **wtext, const size_t *wlen, size_t nw) {
    const char *mode_name[] = {"", "vector", "lexical", "hybrid"};
    const char *modes = getenv("BENCH_ANN_MODES");
    /* BENCH_ANN_HITS=FILE: each query's hits as JSON lines, to study the fusion: per hit whether it is the
     * source (or a copy), its vector and lexical scores (-1: none) and ranks */
    FILE *hf = getenv("BENCH_ANN_HITS") ? fopen(getenv("BENCH_ANN_HITS"), "w") : NULL;
    for (int mode = RTR_SEARCH_VECTOR; mode <= RTR_SEARCH_HYBRID; mode++) {
        if (modes && !strstr(modes, mode_name[mode])) continue;
        if (rtr_retriever_mode_ready(r, mode, NULL)) continue;
        rtr_search_opts so = {.mode = mode};
        size_t hit1 = 0;
        for (size_t i = 0; i < nw; i++) {
            rtr_hits h;
            if (rtr_retriever_search(r, wtext[i], wlen[i], K, &so, &h)) bench_die("bench_ann", "warm-up search");
            rtr_hits_free(&h);
        }
        for (size_t i = 0; i < nq; i++) {
            rtr_hits h;
            double t0 = rtr_now();
            if (rtr_retriever_search(r, qtext[i], qlen[i], K, &so, &h)) bench_die("bench_ann", "search mode");
            lat[i] = (rtr_now() - t0) * 1e3;
            hit1 += h.n && is_source(t, h.items[0].chunk_id, qsrc[i]);
            if (hf) {
                fprintf(hf, "{\"mode\":\"%s\",\"q\":%zu,\"hits\":[", mode_name[mode], i);
                for (size_t j = 0; j < h.n; j++) {
                    const rtr_hit *x = &h.items[j];
                    fprintf(hf, "%s[%d,%.6g,%.6g,%u,%u]", j ? "," : "", is_source(t, x->chunk_id, qsrc[i]),
                            isnan(x->vector_score) ? -1.0 : (double)x->vector_score,
                            isnan(x->lexical_score) ? -1.0 : (double)x->lexical_score, x->vector_rank, x->lexical_rank);
                }
                fprintf(hf, "]}\n");
            }
            rtr_hits_free(&h);
        }

        /* BENCH_ANN_SLOWEST=N: the N slowest queries, to study the tail (their number, time and words) */
        size_t slow = getenv("BENCH_ANN_SLOWEST") ? (size_t)atol(getenv("BENCH_ANN_SLOWEST")) : 0;
        double *by_query = slow ? malloc(nq * sizeof *by_query) : NULL;   /* bench_pct sorts lat */
        if (by_query) memcpy(by_query, lat, nq * sizeof *lat);
        printf("%-7s mode: rank-1 recovery %.3f; p50 %.3f ms, p99 %.3f ms\n", mode_name[mode], (double)hit1 / (double)nq,
               bench_pct(lat, nq, 0.5), bench_pct(lat, nq, 0.99));
        for (size_t s = 0; by_query && s < slow && s < nq; s++) {
            size_t w = 0;
            for (size_t i = 1; i < nq; i++)
                if (by_query[i] > by_query[w]) w = i;
            printf("  slow #%zu: query %zu, %.2f ms: %.*s\n", s + 1, w, by_query[w], (int)(qlen[w] < 160 ? qlen[w] : 160),
                   qtext[w]);
            by_query[w] = -1;
        }
        free(by_query);
        fflush(stdout);
    }
    if (hf) fclose(hf);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_ann KB [QUERIES]\n");
        return 2;
    }
    size_t nq = argc > 2 ? (size_t)atol(argv[2]) : 1000;
    rtr_kb *kb;
    if (rtr_kb_open(argv[1], 0, NULL, NULL, &kb)) bench_die("bench_ann", "open");
    rtr_retriever *r;
    rtr_retriever_opts ro = {0};
    if (getenv("BENCH_ANN_NPROBE")) ro.nprobe = (uint32_t)atoi(getenv("BENCH_ANN_NPROBE"));   /* instead of the recorded */
    if (rtr_retriever_open(kb, &ro, &r)) bench_die("bench_ann", "retriever");
    const rtr_kb_vectors *ix = rtr_retriever_vectors(r);
    rtr_embedder *e = rtr_kb_vectors_embedder(ix);
    uint32_t dim = e->dim;
    rtr_vindex *ann;
    if (rtr_retriever_vindex(r, &ann)) bench_die("bench_ann", "vector index");
    const rtr_tokenizer *tok = rtr_kb_tokenizer(kb);
    rtr_store_txn *t;
    if (rtr_store_read_begin(rtr_kb_store(kb), &t)) bench_die("bench_ann", "txn");
    rtr_store_stats st;
    rtr_store_get_stats(t, &st);
    printf("knowledge base: %" PRIu64 " chunks; index %s, %u shards, nprobe %u, dim %u; %zu queries; %d threads\n",
           st.n_chunks, rtr_vindex_factory(ann), rtr_vindex_shards(ann), rtr_vindex_nprobe(ann), dim, nq,
           omp_get_max_threads());

    if (getenv("BENCH_ANN_SEED")) rng = 0x5eed ^ strtoull(getenv("BENCH_ANN_SEED"), NULL, 10) * 0x9e3779b97f4a7c15ull;   /* another sample */
    if (!rng) rng = 0x5eed;
    /* queries: perturbed chunks; BENCH_ANN_WARMUP=N more, drawn after them, searched untimed before the
     * recovery table (in each mode), so that its latencies are those of a process that has served a while
     * (the pages of the lists, postings and chunks a query touches first mapped) */
    size_t warm = getenv("BENCH_ANN_WARMUP") ? (size_t)atol(getenv("BENCH_ANN_WARMUP")) : 0;
    char **qtext = calloc(nq + warm, sizeof *qtext);
    size_t *qlen = calloc(nq + warm, sizeof *qlen);
    int64_t *qsrc = calloc(nq + warm, sizeof *qsrc);
    for (size_t i = 0; i < nq + warm;) {
        rtr_chunk c;
        uint64_t cid = 1 + rnd((uint32_t)(st.next_chunk_id - 1));
        if (rtr_store_get_chunk(t, cid, &c)) continue;
        qsrc[i] = (int64_t)cid;
        rtr_buf b = {0}, o = {0};
        rtr_tokenizer_decode(tok, c.tokens, c.n_tokens, &b);
        rtr_buf_terminate(&b);
        int w = 0;
        for (char *s = strtok((char *)b.data, " "); s; s = strtok(NULL, " "))
            if (rnd(5) != 0) { rtr_buf_printf(&o, "%s%s", w++ ? " " : "", s); }
        rtr_buf_free(&b);
        if (w < 10) { rtr_buf_free(&o); continue; }
        rtr_buf_terminate(&o);
        qtext[i] = (char *)o.data;
        qlen[i] = o.len;
        i++;
    }
    char **wtext = qtext + nq;   /* the warm-up queries */
    size_t *wlen = qlen + nq;
    const char *texts = getenv("BENCH_ANN_TEXTS");
    if (texts) {   /* the queries as JSON lines (id: the chunk each was cut from), for tests/bench/fts5_recovery.py */
        FILE *f = fopen(texts, "w");
        if (!f) bench_die("bench_ann", texts);
        for (size_t i = 0; i < nq; i++) {
            fprintf(f, "{\"id\":%" PRId64 ",\"query\":\"", qsrc[i]);
            for (const unsigned char *c = (const unsigned char *)qtext[i]; *c; c++) {
                if (*c == '"' || *c == '\\') fprintf(f, "\\%c", *c);
                else if (*c < 0x20) fprintf(f, "\\u%04x", *c);
                else fputc(*c, f);
            }
            fprintf(f, "\"}\n");
        }
        if (fclose(f)) bench_die("bench_ann", texts);
    }
    if (getenv("BENCH_ANN_ONLY")) {   /* BENCH_ANN_ONLY=I,J,...: those queries alone, each BENCH_ANN_REPEAT times (a profile of the tail) */
        size_t rep = getenv("BENCH_ANN_REPEAT") ? (size_t)atol(getenv("BENCH_ANN_REPEAT")) : 1, m = 0;
        char **ot = calloc(nq * (rep ? rep : 1), sizeof *ot);
        size_t *ol = calloc(nq * (rep ? rep : 1), sizeof *ol);
        int64_t *os = calloc(nq * (rep ? rep : 1), sizeof *os);
        for (const char *p = getenv("BENCH_ANN_ONLY"); *p;) {
            char *end;
            size_t i = (size_t)strtoul(p, &end, 10);
            if (end == p) break;
            for (size_t k = 0; k < rep && i < nq; k++) ot[m] = qtext[i], ol[m] = qlen[i], os[m++] = qsrc[i];
            p = *end ? end + 1 : end;
        }
        nq = m;
        qtext = ot, qlen = ol, qsrc = os;
    }
    if (getenv("BENCH_ANN_WARM")) {   /* what a server does at start: its maps warmed (rtr_retriever_warm) */
        uint64_t bytes;
        double t0 = rtr_now();
        if (rtr_retriever_warm(r, NULL, &bytes)) bench_die("bench_ann", "warm");
        printf("warmed: %.2f GB mapped in %.2f s\n", (double)bytes / 1e9, rtr_now() - t0);
    }
    if (getenv("BENCH_ANN_RECOVERY_ONLY")) {   /* the recovery table alone: no exact index */
        double *lat = malloc(nq * sizeof *lat);
        recovery(r, t, qtext, qlen, qsrc, nq, lat, wtext, wlen, warm);
        return 0;
    }
    float *qv = malloc(nq * dim * sizeof *qv);
    rtr_text *qt = malloc(nq * sizeof *qt);
    for (size_t i = 0; i < nq; i++) qt[i] = (rtr_text){qtext[i], qlen[i]};
    if (rtr_embedder_embed(e, qt, nq, qv)) bench_die("bench_ann", "embed queries");
    const char *dump = getenv("BENCH_ANN_QUERIES");
    if (dump) {   /* the queries for an offline study (tests/bench/proj_recall.py), then stop */
        FILE *f = fopen(dump, "wb");
        uint32_t hdr[2] = {(uint32_t)nq, dim};
        if (!f || fwrite(hdr, sizeof hdr, 1, f) != 1 || fwrite(qv, sizeof *qv * dim, nq, f) != nq ||
            fwrite(qsrc, sizeof *qsrc, nq, f) != nq || fclose(f))
            bench_die("bench_ann", dump);
        printf("wrote %zu queries (%u floats each, then their chunk ids) to %s\n", nq, dim, dump);
        return 0;
    }

    /* embedding throughput, and the exact index from every chunk */
    rtr_vindex_plan flat;
    rtr_vindex_plan_factory("Flat", st.n_chunks, dim, 1, &flat);
    rtr_vindex *exact;
    if (rtr_vindex_create(&flat, dim, 1, NULL, 0, &exact) || rtr_vindex_set_rerank(exact, 0))
        bench_die("bench_ann", "exact index");
    enum { B = 8192 };
    float *all = malloc((size_t)st.n_chunks * dim * sizeof *all);
    int64_t *all_ids = malloc((size_t)st.n_chunks * sizeof *all_ids);
    size_t n_all = 0;
    float *vec = malloc((size_t)B * dim * sizeof *vec);
    int64_t *ids = malloc(B * sizeof *ids);
    uint32_t *sh = calloc(B, sizeof *sh);
    rtr_buf text = {0};
    size_t off[B + 1];
    rtr_text tx[B];
    uint64_t after = 0;
    double embed_s[3] = {0};
    size_t embed_n[3] = {0};
    for (;;) {
        size_t n = 0;
        text.len = 0;
        rtr_chunk c;
        while (n < B && rtr_store_next_chunk(t, after, &c) == RTR_OK) {
            after = c.id;
            off[n] = text.len;
            rtr_tokenizer_decode(tok, c.tokens, c.n_tokens, &text);
            ids[n++] = (int64_t)c.id;
        }
        if (!n) break;
        off[n] = text.len;
        for (size_t i = 0; i < n; i++) tx[i] = (rtr_text){(const char *)text.data + off[i], off[i + 1] - off[i]};
        int th = embed_n[1] < 100000 ? 1 : 2;   /* the first 100k chunks on one thread, the rest on two */
        double t0 = rtr_now();
#pragma omp parallel num_threads(th)
        {
            int nt = omp_get_num_threads(), me = omp_get_thread_num();
            size_t lo = n * (size_t)me / (size_t)nt, hi = n * (size_t)(me + 1) / (size_t)nt;
            rtr_embedder_embed(e, tx + lo, hi - lo, vec + lo * dim);
        }
        embed_s[th] += rtr_now() - t0;
        embed_n[th] += n;
        if (rtr_vindex_add(exact, n, vec, ids, sh)) bench_die("bench_ann", "add exact");
        if (n_all + n <= st.n_chunks) {
            memcpy(all + n_all * dim, vec, n * dim * sizeof *vec);
            memcpy(all_ids + n_all, ids, n * sizeof *ids);
            n_all += n;
        }
    }
    printf("hash embedder: %.0f chunks/s on 1 thread, %.0f chunks/s on 2 threads\n",
           (double)embed_n[1] / embed_s[1], embed_n[2] ? (double)embed_n[2] / embed_s[2] : 0.0);

    int64_t *truth = malloc(nq * K * sizeof *truth), *got = malloc(nq * K * sizeof *got);
    float *dist = malloc(nq * K * sizeof *dist);
    double t0 = rtr_now();
    if (rtr_vindex_search(exact, nq, qv, K, dist, truth)) bench_die("bench_ann", "exact search");
    printf("exact search: %.1f ms per query (batch of %zu)\n", (rtr_now() - t0) * 1e3 / (double)nq, nq);
    rtr_vindex_free(exact);

    /* recall at the default search parameter and around it: nprobe for an
     * inverted file, re-ranked candidates for a flat index (-1: automatic) */
    uint32_t np0 = rtr_vindex_nprobe(ann);
    int rr0 = rtr_vindex_rerank(ann);
    const char *pname = np0 ? "nprobe" : "rerank";
    int probes[] = {(int)np0, 16, 32, 64, 128, 256, 512}, reranks[] = {rr0, 0, 16, 32, 64, 256, 512};
    int *pvals = np0 ? probes : reranks;
    printf("\n%-8s %-10s %-10s %-12s\n", pname, "recall@10", "recall@1", "ms/query (batch)");
    for (size_t p = 0; p < sizeof probes / sizeof *probes; p++) {
        if (p && pvals[p] == pvals[0]) continue;
        if (rtr_vindex_set_param(ann, pname, pvals[p])) bench_die("bench_ann", "parameter");
        rtr_vindex_search(ann, 1, qv, K, dist, got);   /* warm-up: builds a flat index's 4-bit codes */
        t0 = rtr_now();
        if (rtr_vindex_search(ann, nq, qv, K, dist, got)) bench_die("bench_ann", "search");
        double ms = (rtr_now() - t0) * 1e3 / (double)nq;
        size_t hit = 0, top1 = 0;
        for (size_t i = 0; i < nq; i++) {
            top1 += got[i * K] == truth[i * K];
            for (int a = 0; a < K; a++)
                for (int b = 0; b < K; b++) hit += got[i * K + a] == truth[i * K + b];
        }
        printf("%-8d %-10.4f %-10.4f %-12.3f%s\n", pvals[p], (double)hit / (double)(nq * K),
               (double)top1 / (double)nq, ms, p == 0 ? "  (default)" : "");
    }
    rtr_vindex_set_param(ann, pname, pvals[0]);

    /* latency: single queries and batches of 32 (raw FAISS search) */
    double *lat = malloc(nq * sizeof *lat);
    for (size_t i = 0; i < nq; i++) {
        t0 = rtr_now();
        rtr_vindex_search(ann, 1, qv + i * dim, K, dist, got);
        lat[i] = (rtr_now() - t0) * 1e3;
    }
    double raw_p50 = bench_pct(lat, nq, 0.5), raw_p99 = bench_pct(lat, nq, 0.99);
    printf("\nsingle query (raw search): p50 %.3f ms, p99 %.3f ms\n", raw_p50, raw_p99);
    size_t nb = nq / 32;
    for (size_t b = 0; b < nb; b++) {
        t0 = rtr_now();
        rtr_vindex_search(ann, 32, qv + b * 32 * dim, K, dist, got);
        lat[b] = (rtr_now() - t0) * 1e3;
    }
    double b50 = bench_pct(lat, nb, 0.5), b99 = bench_pct(lat, nb, 0.99);
    printf("batch of 32 (raw search): p50 %.3f ms, p99 %.3f ms per batch (%.3f ms per query at p50)\n", b50, b99,
           b50 / 32);

    /* the whole query path against the raw search of the same vector */
    double *full = malloc(nq * sizeof *full), *raw = malloc(nq * sizeof *raw);
    for (size_t i = 0; i < nq; i++) {
        rtr_hits h;
        t0 = rtr_now();
        if (rtr_retriever_search(r, qtext[i], qlen[i], K, NULL, &h)) bench_die("bench_ann", "query path");
        full[i] = (rtr_now() - t0) * 1e3;
        rtr_hits_free(&h);
        t0 = rtr_now();
        rtr_vindex_search(ann, 1, qv + i * dim, K, dist, got);
        raw[i] = (rtr_now() - t0) * 1e3;
    }
    double f50 = bench_pct(full, nq, 0.5), r50 = bench_pct(raw, nq, 0.5), f99 = bench_pct(full, nq, 0.99);
    printf("query path (text -> %d hits with sources): p50 %.3f ms, p99 %.3f ms; raw search p50 %.3f ms; "
           "overhead %.1f%%\n", K, f50, f99, r50, 100.0 * (f50 - r50) / r50);

    recovery(r, t, qtext, qlen, qsrc, nq, full, wtext, wlen, warm);

    /* other index types on the same vectors: bench_ann KB Q FACTORY:PARAM=v1,v2,... */
    for (int a = 3; a < argc; a++) {
        char spec[256], *colon;
        snprintf(spec, sizeof spec, "%s", argv[a]);
        const char *param = NULL;
        char *vals = NULL;
        if ((colon = strrchr(spec, ':'))) {
            *colon = '\0';
            param = colon + 1;
            char *eq = strchr(colon + 1, '=');
            if (eq) { *eq = '\0'; vals = eq + 1; }
        }
        rtr_vindex_plan p;
        if (rtr_vindex_plan_factory(spec, n_all, dim, 1, &p)) bench_die("bench_ann", "plan");
        rtr_vindex *alt;
        t0 = rtr_now();
        /* training sample: evenly spread */
        float *tr = NULL;
        if (p.train_n) {
            tr = malloc(p.train_n * dim * sizeof *tr);
            for (uint64_t i = 0; i < p.train_n; i++)
                memcpy(tr + i * dim, all + (size_t)(i * n_all / p.train_n) * dim, dim * sizeof *tr);
        }
        if (rtr_vindex_create(&p, dim, 1, tr, p.train_n, &alt)) bench_die("bench_ann", "create alternative");
        free(tr);
        double t_train = rtr_now() - t0;
        uint32_t *zero = calloc(n_all, sizeof *zero);
        t0 = rtr_now();
        if (rtr_vindex_add(alt, n_all, all, all_ids, zero)) bench_die("bench_ann", "add alternative");
        printf("\n%s: trained in %.1f s, added %zu vectors in %.1f s\n", p.factory, t_train, n_all, rtr_now() - t0);
        free(zero);
        printf("%-10s %-10s %-12s %-10s %-10s\n", param ? param : "-", "recall@10", "ms/q batch", "p50 ms", "p99 ms");
        for (char *v = vals ? strtok(vals, ",") : NULL, *dummy = NULL; (v || !dummy); v = vals ? strtok(NULL, ",") : NULL) {
            dummy = (char *)1;
            if (v && rtr_vindex_set_param(alt, param, atof(v))) bench_die("bench_ann", "param");
            t0 = rtr_now();
            rtr_vindex_search(alt, nq, qv, K, dist, got);
            double ms = (rtr_now() - t0) * 1e3 / (double)nq;
            size_t hit = 0;
            for (size_t i = 0; i < nq; i++)
                for (int x = 0; x < K; x++)
                    for (int y = 0; y < K; y++) hit += got[i * K + x] == truth[i * K + y];
            for (size_t i = 0; i < nq; i++) {
                double s0 = rtr_now();
                rtr_vindex_search(alt, 1, qv + i * dim, K, dist, got);
                lat[i] = (rtr_now() - s0) * 1e3;
            }
            double p50 = bench_pct(lat, nq, 0.5), p99 = bench_pct(lat, nq, 0.99);
            printf("%-10s %-10.4f %-12.3f %-10.3f %-10.3f\n", v ? v : "-", (double)hit / (double)(nq * K), ms, p50, p99);
            if (!v) break;
        }
        rtr_vindex_free(alt);
    }
    free(all);
    free(all_ids);
    rtr_store_txn_end(t);
    rtr_retriever_close(r);
    rtr_kb_close(kb);
    return 0;
}
