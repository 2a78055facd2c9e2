/*
 * blas.h - OpenBLAS's own threads held at one while OpenMP's threads each
 * make BLAS calls of their own.
 *
 * OpenBLAS built on pthreads keeps its own worker threads, which spin for a
 * while after each threaded call; so do OpenMP's after each parallel region.
 * On a machine with few cores the two pools fight for them whenever BLAS calls
 * are made from OpenMP's threads (the model's products, FAISS's searches),
 * which costs more than the calls themselves.
 *
 *     int saved = rtr_blas_single_begin();
 *     ... a parallel region whose threads call cblas_sgemm ...
 *     rtr_blas_single_end(saved);
 *
 * Call both outside any parallel region. (The OpenMP build of OpenBLAS runs
 * calls made inside a parallel region on one thread by itself; its
 * openblas_set_num_threads would change OpenMP's thread count, so begin
 * leaves it alone.)
 */
#ifndef RTR_BLAS_H
#define RTR_BLAS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the thread count for rtr_blas_single_end to restore, or 0 when nothing was changed. */
int rtr_blas_single_begin(void);
void rtr_blas_single_end(int saved);

#ifdef __cplusplus
}
#endif

#endif
