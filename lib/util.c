#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *icn_progname = "icn";

void icn_set_progname(const char *argv0) {
    const char *slash = strrchr(argv0, '/');
    icn_progname = slash ? slash + 1 : argv0;
}

void *icn_malloc_check(size_t size, const char *file, int line) {
    void *p = malloc(size ? size : 1);
    if (!p) icn_die(3, "out of memory allocating %zu bytes at %s:%d", size, file, line);
    return p;
}

void *icn_calloc_check(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) icn_die(3, "out of memory allocating %zu x %zu bytes at %s:%d", n, size, file, line);
    return p;
}

void *icn_realloc_check(void *old, size_t size, const char *file, int line) {
    void *p = realloc(old, size ? size : 1);
    if (!p) icn_die(3, "out of memory reallocating %zu bytes at %s:%d", size, file, line);
    return p;
}

char *icn_strdup_check(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *d = icn_malloc_check(n, file, line);
    memcpy(d, s, n);
    return d;
}

void icn_vmessage(FILE *f, const char *fmt, va_list ap) {
    fprintf(f, "%s: ", icn_progname);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
}

void icn_die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    icn_vmessage(stderr, fmt, ap);
    va_end(ap);
    exit(code);
}

void icn_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    icn_vmessage(stderr, fmt, ap);
    va_end(ap);
}

int icn_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

double icn_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double icn_wallclock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void icn_rng_seed(icn_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->have_gauss = 0;
    r->gauss = 0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t icn_rng_u64(icn_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return result;
}

double icn_rng_uniform(icn_rng *r) { return (double)(icn_rng_u64(r) >> 11) * 0x1.0p-53; }

uint32_t icn_rng_below(icn_rng *r, uint32_t n) {
    /* Lemire's method with rejection: no modulo bias. */
    uint64_t m = (uint64_t)(uint32_t)icn_rng_u64(r) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)(uint32_t)icn_rng_u64(r) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

double icn_rng_gauss(icn_rng *r) {
    if (r->have_gauss) { r->have_gauss = 0; return r->gauss; }
    double u1, u2;
    do u1 = icn_rng_uniform(r); while (u1 <= 1e-300);
    u2 = icn_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
    r->gauss = rad * sin(th);
    r->have_gauss = 1;
    return rad * cos(th);
}

void icn_rng_shuffle(icn_rng *r, int32_t *a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = icn_rng_below(r, (uint32_t)i);
        int32_t t = a[i - 1]; a[i - 1] = a[j]; a[j] = t;
    }
}


int icn_getopt(int argc, char **argv, const struct option *longs, const char *usage, const char *context) {
    opterr = 0; /* our own one-line messages */
    int c = getopt_long(argc, argv, ":h", longs, NULL);
    if (c == 'h') {
        fputs(usage, stdout);
        exit(0);
    }
    if (c == ':' || c == '?')
        icn_usage_error(context, "%s '%s'", c == ':' ? "missing value for option" : "unknown option", argv[optind - 1]);
    return c;
}

void icn_usage_error(const char *context, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: %s%s", icn_progname, context ? context : "", context ? ": " : "");
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    exit(2);
}

void icn_no_operands(int argc, char **argv, const char *context) {
    if (optind < argc) icn_usage_error(context, "unexpected argument '%s'", argv[optind]);
}

int icn_dispatch(int argc, char **argv, const icn_command *cmds, int n_cmds, const char *usage) {
    if (argc < 2) {
        fputs(usage, stderr);
        exit(2);
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        fputs(usage, stdout);
        exit(0);
    }
    for (int i = 0; i < n_cmds; i++) {
        if (strcmp(name, cmds[i].name) != 0) continue;
        optind = 1;
        return cmds[i].run(argc - 1, argv + 1);
    }
    char list[256];
    size_t k = 0;
    for (int i = 0; i < n_cmds && k < sizeof list; i++)
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i == 0 ? "" : i == n_cmds - 1 ? " or " : ", ", cmds[i].name);
    icn_die(2, "unknown command '%s' (%s; see --help)", name, list);
}

long icn_parse_long(const char *flag, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) icn_die(2, "%s: '%s' is not an integer", flag, s);
    if (v < lo || v > hi) icn_die(2, "%s: %ld is out of range [%ld, %ld]", flag, v, lo, hi);
    return v;
}

double icn_parse_double(const char *flag, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) icn_die(2, "%s: '%s' is not a finite number", flag, s);
    if (v < lo || v > hi) icn_die(2, "%s: %g is out of range [%g, %g]", flag, v, lo, hi);
    return v;
}

uint32_t icn_parse_classes(const char *flag, const char *s) {
    uint32_t mask = 0;
    for (const char *p = s;; p++) {
        if (!isdigit((unsigned char)*p)) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end - p > 2 || v > 31) break;
        mask |= 1u << v;
        p = end;
        if (!*p) return mask;
        if (*p != ',') break;
    }
    icn_die(2, "%s: '%s' is not a list of labels 0..31", flag, s);
}

void icn_fput_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

void icn_keep_freed_memory(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

void icn_deadline_in(struct timespec *at, int ms) {
    clock_gettime(CLOCK_REALTIME, at);
    at->tv_sec += ms / 1000;
    at->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (at->tv_nsec >= 1000000000L) at->tv_sec++, at->tv_nsec -= 1000000000L;
}

int icn_thread_start_quiet(pthread_t *thread, void *(*fn)(void *), void *arg) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
