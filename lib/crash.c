/* crash.c - crash injection for the kill-and-resume tests (see crash.h). */
#include "lib/crash.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

void rtr_crash_point(const char *name) {
    static long count;
    const char *e = getenv("RETRO_TEST_CRASH");
    size_t n = strlen(name);
    if (!e || strncmp(e, name, n) != 0 || e[n] != ':') return;
    /* under mpirun: only the rank named, if one is */
    const char *want = getenv("RETRO_TEST_CRASH_RANK"), *rank = getenv("OMPI_COMM_WORLD_RANK");
    if (want && (!rank || strcmp(want, rank) != 0)) return;
    if (++count == atol(e + n + 1)) raise(SIGKILL);
}
