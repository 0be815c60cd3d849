#include "progress.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

void icn_progress_begin(icn_progress *p, const char *label, const char *unit, int64_t start_done, int64_t total, int quiet) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    snprintf(p->unit, sizeof p->unit, "%s", unit);
    p->total = total;
    p->start_done = start_done;
    p->t0 = p->last_print = icn_now();
    p->interval = isatty(2) ? 0.25 : 10.0;
    p->tty = isatty(2);
    p->quiet = quiet;
}

static void format_duration(char *buf, size_t len, double s) {
    if (s < 0 || s > 1e7) { snprintf(buf, len, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

static void print_line(icn_progress *p, int64_t done, const char *extra, int final) {
    double now = icn_now(), elapsed = now - p->t0;
    double rate = elapsed > 0 ? (double)(done - p->start_done) / elapsed : 0;
    char eta[32], took[32];
    format_duration(eta, sizeof eta, rate > 0 ? (double)(p->total - done) / rate : -1);
    format_duration(took, sizeof took, elapsed);
    double frac = p->total > 0 ? (double)done / (double)p->total : 0;
    if (p->tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %lld/%lld %5.1f%% %.1f %s/s %s %s%s%s\033[K", p->label, bar, (long long)done,
                (long long)p->total, 100 * frac, rate, p->unit, final ? "took" : "ETA", final ? took : eta,
                extra ? " " : "", extra ? extra : "");
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s: %s %lld/%lld (%.1f%%) %.1f %s/s %s %s%s%s\n", icn_progname, p->label, (long long)done,
                (long long)p->total, 100 * frac, rate, p->unit, final ? "took" : "ETA", final ? took : eta,
                extra ? " " : "", extra ? extra : "");
    }
    p->last_print = now;
    p->printed = 1;
}

void icn_progress_update(icn_progress *p, int64_t done, const char *extra) {
    if (p->quiet || icn_now() - p->last_print < p->interval) return;
    print_line(p, done, extra, 0);
}

void icn_progress_end(icn_progress *p, int64_t done, const char *extra) {
    if (!p->quiet) print_line(p, done, extra, 1);
}

int icn_metrics_open(icn_metrics *m, const char *path, char *err, size_t errlen) {
    m->f = NULL;
    if (!path) return 0;
    m->f = !strcmp(path, "-") ? stdout : fopen(path, "a");
    if (!m->f) return icn_errf(err, errlen, "--metrics %s: %s", path, strerror(errno));
    return 0;
}

void icn_metrics_printf(icn_metrics *m, const char *fmt, ...) {
    if (!m || !m->f) return;
    va_list ap;
    va_start(ap, fmt);
    flockfile(m->f); /* one whole line at a time: threads write events too (lib/publisher.c) */
    vfprintf(m->f, fmt, ap);
    va_end(ap);
    fputc('\n', m->f);
    fflush(m->f);
    funlockfile(m->f);
}

void icn_metrics_close(icn_metrics *m) {
    if (m->f && m->f != stdout) fclose(m->f);
    m->f = NULL;
}
