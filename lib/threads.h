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

#endif
