/* progress.c - progress bars with rate and ETA on a terminal (see progress.h). */
#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double rtr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *rtr_fmt_si(double n, char *buf, int size) {
    const char *pre[] = {"", "k", "M", "G", "T"};
    int i = 0;
    while (n >= 1000.0 && i < 4) {
        n /= 1000.0;
        i++;
    }
    snprintf(buf, (size_t)size, i ? "%.1f %s" : "%.0f %s", n, pre[i]);
    return buf;
}

void rtr_progress_init(rtr_progress *p, const char *label, uint64_t total, const char *unit,
                       int enabled) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit ? unit : "";
    p->total = total;
    p->enabled = enabled && isatty(STDERR_FILENO);
    p->t0 = rtr_now();
}

static void draw(rtr_progress *p, const char *extra) {
    double now = rtr_now(), el = now - p->t0;
    double rate = el > 0 ? (double)p->done / el : 0;
    char rbuf[32], line[256];
    int n = 0;
    rtr_fmt_si(rate, rbuf, sizeof rbuf);
    if (p->total) {
        double frac = (double)p->done / (double)p->total;
        if (frac > 1) frac = 1;
        int w = 24, fill = (int)(frac * w);
        char bar[32];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[w] = '\0';
        double eta = rate > 0 ? (double)(p->total - (p->done < p->total ? p->done : p->total)) / rate : 0;
        n = snprintf(line, sizeof line, "\r%s [%s] %3.0f%% %s%s/s", p->label, bar, frac * 100, rbuf,
                     p->unit);
        if (extra && n < (int)sizeof line)
            n += snprintf(line + n, sizeof line - (size_t)n, " %s", extra);
        if (n < (int)sizeof line)
            snprintf(line + n, sizeof line - (size_t)n, " ETA %d:%02d ", (int)eta / 60, (int)eta % 60);
    } else {
        n = snprintf(line, sizeof line, "\r%s %s%s/s", p->label, rbuf, p->unit);
        if (extra && n < (int)sizeof line) snprintf(line + n, sizeof line - (size_t)n, " %s ", extra);
    }
    fputs(line, stderr);
    fflush(stderr);
    p->drawn = 1;
    p->last_draw = now;
}

void rtr_progress_update(rtr_progress *p, uint64_t done, const char *extra) {
    p->done = done;
    if (!p->enabled) return;
    if (rtr_now() - p->last_draw < 0.1) return;
    draw(p, extra);
}

void rtr_progress_finish(rtr_progress *p) {
    if (!p->enabled || !p->drawn) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
}
