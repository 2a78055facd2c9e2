/* crash.h - crash injection for the kill-and-resume tests (tests/e2e/index_crash.sh,
 * tests/e2e/build_resume.sh). */
#ifndef RTR_CRASH_H
#define RTR_CRASH_H

/* With RETRO_TEST_CRASH set to "NAME:N", the Nth call with that name kills the
 * process with SIGKILL, no clean-up of any kind; any other call returns. With
 * RETRO_TEST_CRASH_RANK=R too, only rank R of an mpirun job (tests/e2e/mpi.sh). */
void rtr_crash_point(const char *name);

#endif
