/* progress.h: progress on stderr for long work, and JSON-lines metrics on request.
 * On a terminal: one redrawn bar with rate and ETA. Otherwise: a plain line every
 * `interval` seconds (default 10), so logs stay readable. */
#ifndef ICN_PROGRESS_H
#define ICN_PROGRESS_H
#include <stdint.h>
#include <stdio.h>

typedef struct {
    char label[32], unit[16];
    int64_t total, start_done;
    double t0, last_print, interval;
    int tty, quiet, printed;
} icn_progress;

void icn_progress_begin(icn_progress *p, const char *label, const char *unit, int64_t start_done, int64_t total, int quiet);
/* extra: a short status such as "loss 0.123" (may be NULL). */
void icn_progress_update(icn_progress *p, int64_t done, const char *extra);
void icn_progress_end(icn_progress *p, int64_t done, const char *extra);

/* JSON-lines metrics: each record one line, flushed at once so a killed run keeps them. */
typedef struct { FILE *f; } icn_metrics;
int icn_metrics_open(icn_metrics *m, const char *path, char *err, size_t errlen); /* NULL path: disabled */
void icn_metrics_printf(icn_metrics *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void icn_metrics_close(icn_metrics *m);

#endif
