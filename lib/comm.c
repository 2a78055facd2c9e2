/* comm.c - a job of one, or the ranks of an Open MPI job (see comm.h). Built without Open MPI,
 * c->mpi is never set and every collective returns at its first line. */
#include "lib/comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/status.h"
#include "lib/threads.h"

#ifdef RETRO_HAVE_MPI
#include <mpi.h>
#endif

struct rtr_comm {
    int rank, size;
    int mpi;              /* MPI_Init was called */
    int serialized;       /* MPI may be called from any thread, one at a time */
    uint64_t calls, sent;   /* collectives, and the payload bytes this rank gave them (rtr_comm_stats) */
};

static rtr_comm world = {0, 1, 0, 0, 0, 0};

int rtr_comm_any_thread(const rtr_comm *c) { return !c->mpi || c->serialized; }

void rtr_comm_stats(const rtr_comm *c, uint64_t *calls, uint64_t *sent) {
    *calls = c->calls;
    *sent = c->sent;
}

#ifdef RETRO_HAVE_MPI
/* A collective in which this rank gives n bytes (a root's broadcast counts once per other rank). */
static void count(rtr_comm *c, uint64_t n) {
    c->calls++;
    c->sent += n;
}
#endif

rtr_comm *rtr_comm_world(void) { return &world; }
int rtr_comm_rank(const rtr_comm *c) { return c->rank; }
int rtr_comm_size(const rtr_comm *c) { return c->size; }

#ifdef RETRO_HAVE_MPI
int rtr_comm_have_mpi(void) { return 1; }

static int mpi_err(int e, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(e, s, &n) != MPI_SUCCESS) snprintf(s, sizeof s, "error %d", e);
    return rtr_seterr(RTR_E_NET, "%s: %s", what, s);
}
#define MPI_CALL(call, what) (((e_ = (call)) != MPI_SUCCESS) ? mpi_err(e_, what) : RTR_OK)

/* Started by a launcher: Open MPI's mpirun, or a PMI (srun, hydra) that MPI_Init reads. */
static int launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") || getenv("PMI_SIZE");
}

int rtr_comm_init(int *argc, char ***argv) {
    if (world.mpi || !launched()) return RTR_OK;
    int provided = 0, e_, rc = MPI_CALL(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "MPI_Init");
    if (rc) return rc;
    world.mpi = 1;
    world.serialized = provided >= MPI_THREAD_SERIALIZED;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (!(rc = MPI_CALL(MPI_Comm_rank(MPI_COMM_WORLD, &world.rank), "MPI_Comm_rank")))
        rc = MPI_CALL(MPI_Comm_size(MPI_COMM_WORLD, &world.size), "MPI_Comm_size");
    /* the ranks on this machine share its cores, unless the user said how many threads to use */
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!rc && local && !getenv("OMP_NUM_THREADS")) rtr_threads_share(atoi(local));
    return rc;
}

void rtr_comm_finalize(int failed) {
    if (!world.mpi) return;
    const char *stats = getenv("RETRO_COMM_STATS");
    if (stats && *stats)   /* the benchmarks' figures (tests/bench/run_mpi.sh) */
        fprintf(stderr, "comm: rank %d: %llu collectives, %llu payload bytes sent\n", world.rank,
                (unsigned long long)world.calls, (unsigned long long)world.sent);
    if (failed && world.size > 1) MPI_Abort(MPI_COMM_WORLD, failed);
    MPI_Finalize();
    world.mpi = 0;
}
#else
int rtr_comm_have_mpi(void) { return 0; }
int rtr_comm_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return RTR_OK;
}
void rtr_comm_finalize(int failed) { (void)failed; }
#endif

static int fits(size_t n, const char *what) {
    return n <= INT_MAX ? RTR_OK : rtr_seterr(RTR_E_INVALID, "%s: %zu bytes is more than one MPI message carries", what, n);
}

int rtr_comm_barrier(rtr_comm *c) {
    if (!c->mpi) return RTR_OK;
#ifdef RETRO_HAVE_MPI
    int e_;
    count(c, 0);
    return MPI_CALL(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#else
    return RTR_OK;
#endif
}

enum { SUM_U32, SUM_U64, SUM_F32, SUM_F64 };

/* Sums n values of elem bytes (type SUM_*) over the ranks, in place, in pieces that one MPI call
 * carries (a model's gradients may pass INT_MAX). */
static int sum(rtr_comm *c, void *v, size_t n, size_t elem, int type) {
    if (!c->mpi || n == 0) return RTR_OK;
    int rc = RTR_OK;
#ifdef RETRO_HAVE_MPI
    static const MPI_Datatype types[] = {MPI_UINT32_T, MPI_UINT64_T, MPI_FLOAT, MPI_DOUBLE};
    int e_;
    size_t piece = (size_t)INT_MAX / elem;
    count(c, n * elem);
    for (size_t at = 0; at < n && !rc; at += piece) {
        size_t k = n - at < piece ? n - at : piece;
        rc = MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, (uint8_t *)v + at * elem, (int)k, types[type], MPI_SUM, MPI_COMM_WORLD),
                      "MPI_Allreduce");
    }
#else
    (void)v, (void)elem, (void)type;
#endif
    return rc;
}

int rtr_comm_sum_u64(rtr_comm *c, uint64_t *v, size_t n) { return sum(c, v, n, sizeof *v, SUM_U64); }
int rtr_comm_sum_u32(rtr_comm *c, uint32_t *v, size_t n) { return sum(c, v, n, sizeof *v, SUM_U32); }
int rtr_comm_sum_f32(rtr_comm *c, float *v, size_t n) { return sum(c, v, n, sizeof *v, SUM_F32); }
int rtr_comm_sum_f64(rtr_comm *c, double *v, size_t n) { return sum(c, v, n, sizeof *v, SUM_F64); }

int rtr_comm_allgather_ranges(rtr_comm *c, void *buf, size_t elem, const size_t *offs) {
    if (!c->mpi) return RTR_OK;
    int rc = RTR_OK;
#ifdef RETRO_HAVE_MPI
    int *counts = rtr_malloc((size_t)c->size * sizeof *counts), *displs = rtr_malloc((size_t)c->size * sizeof *displs);
    if (!counts || !displs) rc = RTR_E_NOMEM;
    for (int r = 0; r < c->size && !rc; r++) {
        if (offs[r + 1] > INT_MAX || offs[r + 1] < offs[r])
            rc = rtr_seterr(RTR_E_INVALID, "allgather: %zu elements", offs[r + 1]);
        else counts[r] = (int)(offs[r + 1] - offs[r]), displs[r] = (int)offs[r];
    }
    rc = rtr_comm_agree(c, rc);
    MPI_Datatype t;
    int e_;
    if (!rc) count(c, (offs[c->rank + 1] - offs[c->rank]) * elem);
    if (!rc) rc = MPI_CALL(MPI_Type_contiguous((int)elem, MPI_BYTE, &t), "MPI_Type_contiguous");
    if (!rc) {
        if (!(rc = MPI_CALL(MPI_Type_commit(&t), "MPI_Type_commit")))
            rc = MPI_CALL(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, t, MPI_COMM_WORLD),
                          "MPI_Allgatherv");
        MPI_Type_free(&t);
    }
    rtr_free(counts);
    rtr_free(displs);
#else
    (void)buf, (void)elem, (void)offs;
#endif
    return rc;
}

int rtr_comm_bcast(rtr_comm *c, void *buf, size_t len, int root) {
    if (!c->mpi || len == 0) return RTR_OK;
    int rc = fits(len, "broadcast");
#ifdef RETRO_HAVE_MPI
    int e_;
    count(c, c->rank == root ? len * (uint64_t)(c->size - 1) : 0);
    if (!rc) rc = MPI_CALL(MPI_Bcast(buf, (int)len, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
#else
    (void)buf, (void)root;
#endif
    return rc;
}

int rtr_comm_bcast_bytes(rtr_comm *c, uint8_t **buf, size_t *len, int root) {
    if (!c->mpi) return RTR_OK;
    uint64_t n = *len;
    int rc = rtr_comm_bcast(c, &n, sizeof n, root);
    if (rc) return rc;
    if (c->rank != root) {
        *len = (size_t)n;
        if (!(*buf = rtr_malloc(n + 1))) return RTR_E_NOMEM;   /* root then waits: the caller aborts the job */
    }
    return rtr_comm_bcast(c, *buf, (size_t)n, root);
}

int rtr_comm_gather_bytes(rtr_comm *c, const void *buf, size_t len, int root, uint8_t **all, size_t *lens) {
    *all = NULL;
    if (!c->mpi) {
        if (!(*all = rtr_malloc(len + 1))) return RTR_E_NOMEM;
        if (len) memcpy(*all, buf, len);
        lens[0] = len;
        return RTR_OK;
    }
    int rc = fits(len, "gather");
#ifdef RETRO_HAVE_MPI
    int n = (int)len, *counts = NULL, *displs = NULL, e_;
    count(c, c->rank == root ? 0 : len);
    if (!rc && c->rank == root) {
        counts = rtr_malloc((size_t)c->size * sizeof *counts);
        displs = rtr_malloc((size_t)c->size * sizeof *displs);
        if (!counts || !displs) rc = RTR_E_NOMEM;
    }
    /* the counts reach root even where it ran out of memory; then every rank learns whether root can take it all */
    int e = MPI_CALL(MPI_Gather(&n, 1, MPI_INT, counts ? counts : &n, 1, MPI_INT, root, MPI_COMM_WORLD), "MPI_Gather");
    if (!rc) rc = e;
    size_t total = 0;
    if (!rc && c->rank == root) {
        for (int r = 0; r < c->size; r++) {
            displs[r] = (int)total;
            total += (size_t)counts[r];
            lens[r] = (size_t)counts[r];
        }
        if (total > INT_MAX) rc = rtr_seterr(RTR_E_INVALID, "gather: %zu bytes in all", total);
        else if (!(*all = rtr_malloc(total + 1))) rc = RTR_E_NOMEM;
    }
    int ok = rc == RTR_OK;
    e = MPI_CALL(MPI_Bcast(&ok, 1, MPI_INT, root, MPI_COMM_WORLD), "MPI_Bcast");
    if (!rc) rc = e;
    if (!rc && !ok) rc = rtr_seterr(RTR_E_NOMEM, "gather: rank %d could not take the data", root);
    if (!rc) rc = MPI_CALL(MPI_Gatherv(buf, n, MPI_BYTE, *all, counts, displs, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Gatherv");
    rtr_free(counts);
    rtr_free(displs);
    if (rc) {
        rtr_free(*all);
        *all = NULL;
    }
#else
    (void)root;
#endif
    return rc;
}

int rtr_comm_gather_agreed(rtr_comm *c, int status, const void *buf, size_t len, int root, uint8_t **all,
                           size_t **lens) {
    *all = NULL;
    *lens = NULL;
    int rc = rtr_comm_agree(c, status);
    if (!rc && !(*lens = rtr_calloc((size_t)c->size, sizeof **lens))) rc = RTR_E_NOMEM;
    rc = rtr_comm_agree(c, rc);
    if (!rc) rc = rtr_comm_agree(c, rtr_comm_gather_bytes(c, buf, len, root, all, *lens));
    if (rc) {
        rtr_free(*lens);
        *lens = NULL;
    }
    return rc;
}

int rtr_comm_agree(rtr_comm *c, int status) {
    if (!c->mpi || c->size == 1) return status;
#ifdef RETRO_HAVE_MPI
    /* the lowest failing rank, then its status and detail from it */
    int mine = status ? c->rank : c->size, first = c->size, e_;
    count(c, sizeof mine);
    int rc = MPI_CALL(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce");
    if (rc || first == c->size) return rc;
    char msg[1024] = "";
    int code = status;
    if (c->rank == first) snprintf(msg, sizeof msg, "%s", rtr_errdetail());
    if (!(rc = MPI_CALL(MPI_Bcast(&code, 1, MPI_INT, first, MPI_COMM_WORLD), "MPI_Bcast")))
        rc = MPI_CALL(MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, MPI_COMM_WORLD), "MPI_Bcast");
    if (rc) return rc;
    msg[sizeof msg - 1] = 0;
    return rtr_seterr(code, "rank %d: %s", first, msg);
#else
    return status;
#endif
}
