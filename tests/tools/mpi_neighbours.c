/* mpi_neighbours.c - the neighbours over partitions (retriever/multi.h) of a fixed set of query chunks,
 * shared among the ranks of a job, for tests/e2e/mpi.sh to compare with one process's:
 *
 *     [mpirun -np R] mpi_neighbours KB N K OUT    # queries: chunk 1 + 97 i of partition i mod P, i < N
 *
 * Rank r asks for the queries i with i mod R = r (each its own documents excluded) and writes one line
 * per neighbour to OUT.r: query, rank among its k, id, distance, and an XXH3 of its 128 tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "index/parts.h"
#include "lib/comm.h"
#include "lib/status.h"
#include "retriever/multi.h"

static int die(const char *what) {
    fprintf(stderr, "mpi_neighbours: %s: %s\n", what, rtr_errdetail());
    rtr_comm_finalize(1);
    return 1;
}

int main(int argc, char **argv) {
    if (rtr_comm_init(&argc, &argv)) return die("mpi");
    if (argc != 5) {
        fprintf(stderr, "usage: mpi_neighbours KB N K OUT\n");
        return 2;
    }
    rtr_comm *c = rtr_comm_world();
    int rank = rtr_comm_rank(c), size = rtr_comm_size(c), N = atoi(argv[2]), K = atoi(argv[3]);
    rtr_parts *ps;
    rtr_multi *m;
    if (rtr_parts_open(argv[1], 0, 0, NULL, c, &ps) || rtr_multi_open(ps, NULL, &m)) return die(argv[1]);
    /* the queries: read from the partitions' own stores by every rank (the directory is shared) */
    uint32_t P = rtr_parts_count(ps);
    int32_t *q = malloc((size_t)N * RTR_CHUNK_TOKENS * sizeof *q);
    uint64_t *self = malloc((size_t)N * sizeof *self);
    int *mine = malloc((size_t)N * sizeof *mine), n = 0;
    for (int i = 0; i < N; i++) {
        if (i % size != rank) continue;
        uint32_t p = (uint32_t)i % P;
        char dir[4096];
        if (rtr_parts_split(ps)) snprintf(dir, sizeof dir, "%s/part-%04u", argv[1], p);
        else snprintf(dir, sizeof dir, "%s", argv[1]);
        rtr_kb *kb;
        rtr_store_txn *t;
        rtr_chunk ch;
        if (rtr_kb_open(dir, 0, NULL, NULL, &kb) || rtr_store_read_begin(rtr_kb_store(kb), &t) ||
            rtr_store_get_chunk(t, (uint64_t)(1 + 97 * (i / (int)P)), &ch))
            return die(dir);
        for (int j = 0; j < RTR_CHUNK_TOKENS; j++) q[n * RTR_CHUNK_TOKENS + j] = j < (int)ch.n_tokens ? (int32_t)ch.tokens[j] : -1;
        self[n] = rtr_part_id(p, ch.doc_id);
        mine[n++] = i;
        rtr_store_txn_end(t);
        rtr_kb_close(kb);
    }
    int64_t *ids = malloc(((size_t)n * K + 1) * sizeof *ids);
    float *dist = malloc(((size_t)n * K + 1) * sizeof *dist);
    int32_t *tok = malloc(((size_t)n * K * RTR_NBR_TOKENS + 1) * sizeof *tok);
    rtr_nbr_opts o = {.k = (uint32_t)K, .self_doc = self};
    rtr_nbrs out = {ids, dist, tok, NULL, NULL};
    if (rtr_multi_neighbours(m, q, (size_t)n, &o, &out)) return die("neighbours");
    char path[4096];
    snprintf(path, sizeof path, "%s.%d", argv[4], rank);
    FILE *f = fopen(path, "w");
    for (int i = 0; f && i < n; i++)
        for (int j = 0; j < K; j++) {
            size_t x = (size_t)i * K + j;
            fprintf(f, "%d %d %lld %.6f %016llx\n", mine[i], j, (long long)ids[x], dist[x],
                    (unsigned long long)XXH3_64bits(tok + x * RTR_NBR_TOKENS, RTR_NBR_TOKENS * sizeof *tok));
        }
    if (!f || fclose(f)) return die(path);
    rtr_multi_close(m);
    rtr_parts_close(ps);
    free(q), free(self), free(mine), free(ids), free(dist), free(tok);
    rtr_comm_finalize(0);
    return 0;
}
