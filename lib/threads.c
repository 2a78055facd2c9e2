/* threads.c - the engine's thread count (see threads.h). */
#include "lib/threads.h"

#include <omp.h>

void openblas_set_num_threads(int n);   /* OpenBLAS; not in every cblas.h */

void rtr_set_threads(int n) {
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}
