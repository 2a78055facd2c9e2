/*
 * progress.h - a one-line progress bar with rate and ETA on stderr.
 *
 * Drawn only when enabled and stderr is a terminal; redrawn at most 10 times
 * a second, so calling rtr_progress_update in a hot loop is cheap.
 *
 *     rtr_progress p;
 *     rtr_progress_init(&p, "ingest", total_bytes, "B", !quiet);
 *     ... rtr_progress_update(&p, done_bytes, "1.2M tok");
 *     rtr_progress_finish(&p);
 */
#ifndef RTR_PROGRESS_H
#define RTR_PROGRESS_H

#include <stdint.h>

typedef struct rtr_progress {
    const char *label;
    const char *unit;      /* "B" formats as bytes (kB, MB), else a plain count */
    uint64_t total;        /* 0 = unknown: no bar, no ETA */
    uint64_t done;
    double t0, last_draw;
    int enabled;           /* enabled and stderr is a tty */
    int drawn;
} rtr_progress;

void rtr_progress_init(rtr_progress *p, const char *label, uint64_t total, const char *unit,
                       int enabled);
/* extra: optional short text shown after the rate (may be NULL). */
void rtr_progress_update(rtr_progress *p, uint64_t done, const char *extra);
void rtr_progress_finish(rtr_progress *p);

/* Monotonic clock in seconds. */
double rtr_now(void);

/* Formats n with a unit prefix ("12.3 M"); returns buf. */
const char *rtr_fmt_si(double n, char *buf, int size);

#endif
