/* cmd_search.c - `retro search KB "query"`: the most relevant chunks, with sources. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/alloc.h"
#include "lib/comm.h"
#include "lib/io.h"
#include "lib/status.h"
#include "retriever/multi.h"
#include "retriever/retriever.h"

static const char search_usage[] =
    "usage: retro search KB QUERY [options]\n"
    "\n"
    "Prints the chunks of knowledge base KB that best match QUERY ('-' reads it from\n"
    "standard input), best first, with their source file, byte span, score and the\n"
    "side that found them: vector (cosine similarity: 1 is identical), lexical (BM25)\n"
    "or both (hybrid: the fused score). A query longer than one chunk (64 tokens) is\n"
    "embedded chunk by chunk, each result scored by its similarity summed over them.\n"
    "A KB of partitions is searched in each (under `mpirun -np N`, each rank searches\n"
    "its own) and the results merged on rank 0, which prints them.\n"
    "\n"
    "options:\n"
    "  -k N                  number of results (default 5)\n"
    "  --mode M              vector (the embedder's neighbours), lexical (BM25 over the\n"
    "                        chunks' words), or hybrid (both, fused by reciprocal rank);\n"
    "                        default: the knowledge base's setting\n"
    "  --continuation        also print each result's continuation (the next chunk)\n"
    "  --exclude-doc ID      never return document ID (repeatable)\n"
    "  --nprobe N            IVF lists to search (default: as built)\n"
    "  --rerank N            a flat index of 64 Ki chunks or more is scanned through\n"
    "                        4-bit codes and its N best re-ranked exactly (default 128;\n"
    "                        0: exact search)\n"
    "  --json                one JSON object per result, one per line\n";

static const char *found_by(unsigned f) {
    return f == (RTR_FOUND_VECTOR | RTR_FOUND_LEXICAL) ? "both" : f == RTR_FOUND_LEXICAL ? "lexical" : "vector";
}

static void print_indented(const char *s) {
    fputs("    ", stdout);
    for (; *s; s++) {
        putchar(*s);
        if (*s == '\n' && s[1]) fputs("    ", stdout);
    }
    putchar('\n');
}

int cmd_search(int argc, char **argv) {
    enum { O_CONT = 256, O_EXCL, O_NPROBE, O_JSON, O_RERANK, O_MODE };
    static const struct option opts[] = {{"continuation", 0, 0, O_CONT}, {"exclude-doc", 1, 0, O_EXCL},
                                         {"nprobe", 1, 0, O_NPROBE},     {"json", 0, 0, O_JSON},
                                         {"rerank", 1, 0, O_RERANK},     {"mode", 1, 0, O_MODE},
                                         {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    long k = 5;
    int json = 0, cont = 0, c, mode = RTR_SEARCH_DEFAULT;
    uint64_t excl[256];
    size_t n_excl = 0;
    rtr_retriever_opts ro = {0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "hk:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(search_usage, stdout); return CLI_OK;
        case 'k':
            k = atol(optarg);
            if (k < 1 || k > 4096) return cli_usage_error("search", "-k must be 1..4096");
            break;
        case O_CONT: cont = 1; break;
        case O_EXCL:
            if (n_excl == 256) return cli_usage_error("search", "at most 256 --exclude-doc");
            excl[n_excl++] = strtoull(optarg, NULL, 10);
            break;
        case O_NPROBE:
            ro.nprobe = (uint32_t)atol(optarg);
            if (!ro.nprobe) return cli_usage_error("search", "--nprobe must be positive");
            break;
        case O_RERANK: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 0 || v > RTR_VINDEX_MAX_RERANK)
                return cli_usage_error("search", "--rerank must be 0..%d", RTR_VINDEX_MAX_RERANK);
            ro.rerank = v ? (int)v : -1;
            break;
        }
        case O_JSON: json = 1; break;
        case O_MODE:
            mode = !strcmp(optarg, "vector") ? RTR_SEARCH_VECTOR : !strcmp(optarg, "lexical") ? RTR_SEARCH_LEXICAL
                 : !strcmp(optarg, "hybrid") ? RTR_SEARCH_HYBRID : -1;
            if (mode < 0) return cli_usage_error("search", "--mode must be vector, lexical or hybrid");
            break;
        default: return cli_usage_error("search", "bad option");
        }
    }
    if (argc - optind != 2) return cli_usage_error("search", "expected KB and QUERY");
    const char *dir = argv[optind];
    char *query = argv[optind + 1];
    uint8_t *owned = NULL;
    size_t qlen = strlen(query);
    int rc = RTR_OK, rank0 = rtr_comm_rank(rtr_comm_world()) == 0;
    if (!strcmp(query, "-") && rank0) {   /* under mpirun, rank 0 reads the query and broadcasts it */
        rc = rtr_read_fd(0, "standard input", 1 << 20, &owned, &qlen);
        query = (char *)owned;
    }
    rc = rtr_comm_agree(rtr_comm_world(), rc);
    rtr_parts *ps = NULL;
    rtr_multi *m = NULL;
    rtr_hits hits = {0};
    if (!rc) rc = rtr_parts_open(dir, 0, 0, NULL, rtr_comm_world(), &ps);
    if (!rc) rc = rtr_multi_open(ps, &ro, &m);
    rtr_search_opts so = {.exclude_docs = excl, .n_exclude = n_excl, .continuation = cont, .mode = mode};
    if (!rc) rc = rtr_multi_search(m, query, qlen, (uint32_t)k, &so, &hits);
    rtr_multi_close(m);
    rtr_parts_close(ps);
    rtr_free(owned);
    if (rc) return cli_fail(rc);
    if (!rank0) return CLI_OK;   /* rank 0 prints the job's results */
    if (!json && hits.query_chunks > 1)
        fprintf(stderr, "note: the query is %u tokens, searched as %u chunks of 64; results merged\n",
                hits.query_tokens, hits.query_chunks);
    for (size_t i = 0; i < hits.n; i++) {
        rtr_hit *h = &hits.items[i];
        if (json) {
            json_t *j = json_pack("{s:i, s:f, s:f, s:I, s:I, s:i, s:s, s:s, s:I, s:I, s:i, s:s}", "rank", (int)i + 1,
                                  "score", (double)h->score, "distance", isnan(h->distance) ? 0.0 : (double)h->distance, "chunk_id",
                                  (json_int_t)h->chunk_id, "doc_id", (json_int_t)h->doc_id, "seq", (int)h->seq, "path",
                                  h->path, "title", h->title, "byte_start", (json_int_t)h->byte_start, "byte_end",
                                  (json_int_t)h->byte_end, "query_chunk", (int)h->query_chunk, "text", h->text);
            if (cont) json_object_set_new(j, "continuation", h->continuation ? json_string(h->continuation) : json_null());
            if (isnan(h->distance)) json_object_set_new(j, "distance", json_null());   /* the vector side did not find it */
            json_object_set_new(j, "found_by", json_string(found_by(h->found_by)));
            if (h->vector_rank) json_object_set_new(j, "vector", json_pack("{s:i, s:f}", "rank", (int)h->vector_rank, "score", (double)h->vector_score));
            if (h->lexical_rank) json_object_set_new(j, "lexical", json_pack("{s:i, s:f}", "rank", (int)h->lexical_rank, "score", (double)h->lexical_score));
            json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
            putchar('\n');
            json_decref(j);
        } else {
            printf("%zu. score %.3f  %s  bytes %" PRIu64 "-%" PRIu64 "  (chunk %" PRIu64 "; %s", i + 1, h->score, h->path,
                   h->byte_start, h->byte_end, h->chunk_id, found_by(h->found_by));
            if (h->vector_rank) printf(", vector #%u %.3f", h->vector_rank, h->vector_score);
            if (h->lexical_rank) printf(", lexical #%u %.2f", h->lexical_rank, h->lexical_score);
            printf(")\n");
            print_indented(h->text);
            if (cont) {
                printf("    -- continuation --\n");
                print_indented(h->continuation ? h->continuation : "(end of document)");
            }
            putchar('\n');
        }
    }
    rtr_hits_free(&hits);
    return CLI_OK;
}
