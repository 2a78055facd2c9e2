/* threads.c - the engine's thread count (see threads.h). */
#include "lib/threads.h"

#include <omp.h>

void openblas_set_num_threads(int n);   /* OpenBLAS; not in every cblas.h */

void rtr_set_threads(int n) {
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

static int g_sharing = 1;   /* processes of the job on this machine */

void rtr_threads_share(int processes) {
    g_sharing = processes > 1 ? processes : 1;
    rtr_set_threads(rtr_cores());
}

int rtr_cores(void) {
    int n = omp_get_num_procs() / g_sharing;
    return n > 1 ? n : 1;
}
