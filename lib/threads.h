/*
 * threads.h - how many threads the engine computes on.
 *
 * The model's loops run on OpenMP's threads and its matrix products on
 * OpenBLAS (model/ops.c splits a product between OpenMP threads that each
 * make single-threaded BLAS calls, and asks OpenBLAS for one thread while it
 * does). rtr_set_threads sets both counts at once, for the whole process.
 *
 *     rtr_set_threads(4);   // before building or running a model
 */
#ifndef RTR_THREADS_H
#define RTR_THREADS_H

/* OpenMP's thread count for later parallel regions of the calling thread
 * (omp_set_num_threads) and OpenBLAS's thread count (process-wide); n < 1
 * counts as 1. Not to be called from inside a parallel region. */
void rtr_set_threads(int n);

/* The cores this process computes on by default: the machine's (omp_get_num_procs), divided among the
 * processes of a job that share it (rtr_threads_share), at least 1. */
int rtr_cores(void);
/* processes of one job run on this machine (the ranks that mpirun placed here: lib/comm.c calls it
 * unless OMP_NUM_THREADS is set): each computes on its share of the cores, so that OpenMP threads
 * waiting for work do not take the cores of another rank's (docs/scale.md). */
void rtr_threads_share(int processes);

#endif
