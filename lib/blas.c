/* blas.c - OpenBLAS held at one thread around parallel regions that call it (see blas.h). */
#include "lib/blas.h"

int openblas_get_parallel(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int n);

int rtr_blas_single_begin(void) {
    if (openblas_get_parallel() != 1) return 0;   /* 1: pthreads; 2: OpenMP (left alone) */
    int n = openblas_get_num_threads();
    if (n <= 1) return 0;
    openblas_set_num_threads(1);
    return n;
}

void rtr_blas_single_end(int saved) {
    if (saved > 1) openblas_set_num_threads(saved);
}
