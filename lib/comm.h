/*
 * comm.h - the processes of one job: this one alone, or the ranks of an Open MPI job.
 *
 *     rtr_comm *c = rtr_comm_world();       // after rtr_comm_init in main
 *     if (rtr_comm_rank(c) == 0) ...         // rank 0 reads the query, prints the results
 *     rtr_comm_bcast(c, &len, sizeof len, 0);
 *     rc = rtr_comm_agree(c, rc);            // every rank learns the first failure
 *
 * retro never starts processes or speaks its own protocol between them: a job
 * of several ranks is started by mpirun (or a cluster's srun) and every
 * collective below is one MPI call on MPI_COMM_WORLD. Built without Open MPI
 * (cmake -DRETRO_MPI=OFF), or run without mpirun, the job is one rank and
 * every collective is a copy or nothing.
 *
 * Collectives are called by every rank in the same order with the same sizes
 * (where a size is an argument); they return RTR_OK or RTR_E_NET (the MPI
 * call failed; its error string in the detail). A rank that dies ends the job:
 * mpirun kills the others.
 */
#ifndef RTR_COMM_H
#define RTR_COMM_H

#include <stddef.h>
#include <stdint.h>

typedef struct rtr_comm rtr_comm;

/* Joins the MPI job when the process was started by mpirun or srun and retro
 * was built with Open MPI (MPI_Init_thread, MPI_THREAD_SERIALIZED: any thread
 * may make the calls below, one at a time); otherwise a job of one. Call once,
 * from main, before any other thread starts. */
int rtr_comm_init(int *argc, char ***argv);
/* Leaves the job (MPI_Finalize); failed: the job is aborted with that exit
 * status instead (MPI_Abort), so that no rank waits on one that gave up. */
void rtr_comm_finalize(int failed);
/* The job this process belongs to; a job of one before rtr_comm_init. */
rtr_comm *rtr_comm_world(void);
int rtr_comm_rank(const rtr_comm *c);
/* 1 if threads other than main may call the collectives (one at a time): MPI gave MPI_THREAD_SERIALIZED,
 * or there is no MPI. */
int rtr_comm_any_thread(const rtr_comm *c);
int rtr_comm_size(const rtr_comm *c);
/* The collectives this rank has taken part in, and the payload bytes it gave them (its share of a
 * sum or gather, a root's broadcast once per other rank; not what the network carried, which
 * depends on MPI's algorithms). With RETRO_COMM_STATS set, rtr_comm_finalize prints them. */
void rtr_comm_stats(const rtr_comm *c, uint64_t *calls, uint64_t *sent);
/* 1 if retro was built with Open MPI. */
int rtr_comm_have_mpi(void);

int rtr_comm_barrier(rtr_comm *c);
/* Sums v (n values, any n: sent in pieces below INT_MAX) over the ranks; every rank gets the sums. */
int rtr_comm_sum_u64(rtr_comm *c, uint64_t *v, size_t n);
int rtr_comm_sum_u32(rtr_comm *c, uint32_t *v, size_t n);
int rtr_comm_sum_f32(rtr_comm *c, float *v, size_t n);
int rtr_comm_sum_f64(rtr_comm *c, double *v, size_t n);
/* buf: elements of elem bytes; rank r's are [offs[r], offs[r + 1]) (offs: size + 1 entries), filled by
 * it; afterwards every rank has them all (MPI_Allgatherv in place). */
int rtr_comm_allgather_ranges(rtr_comm *c, void *buf, size_t elem, const size_t *offs);
/* The share of n things that rank r of size takes: [lo, hi), contiguous, in rank order, sizes differing
 * by at most one. */
static inline void rtr_comm_share(uint64_t n, int r, int size, uint64_t *lo, uint64_t *hi) {
    *lo = n * (uint64_t)r / (uint64_t)size;
    *hi = n * (uint64_t)(r + 1) / (uint64_t)size;
}
/* len bytes of buf from root to every rank. */
int rtr_comm_bcast(rtr_comm *c, void *buf, size_t len, int root);
/* A buffer of any length from root: *len and *buf (rtr_malloc'd, the
 * caller's, on every rank but root, whose buffer is sent as is). */
int rtr_comm_bcast_bytes(rtr_comm *c, uint8_t **buf, size_t *len, int root);
/* Every rank's len bytes to root, in rank order: on root *all (rtr_malloc'd,
 * the caller's) holds them and lens[r] (size entries, the caller's) each
 * rank's count; elsewhere *all is NULL and lens untouched (may be NULL). */
int rtr_comm_gather_bytes(rtr_comm *c, const void *buf, size_t len, int root, uint8_t **all, size_t *lens);

/* rtr_comm_gather_bytes between agreements (rtr_comm_agree): every rank passes the status it has so
 * far, and nothing is gathered where a rank failed; *lens (size entries, the caller's) is allocated
 * on every rank. Every rank returns the same status. */
int rtr_comm_gather_agreed(rtr_comm *c, int status, const void *buf, size_t len, int root, uint8_t **all,
                           size_t **lens);

/* Every rank passes its status; every rank gets the status of the lowest
 * rank that failed (RTR_OK if none), with that rank's detail prefixed by
 * "rank R: " (in a job of several) as this thread's detail. */
int rtr_comm_agree(rtr_comm *c, int status);

#endif
