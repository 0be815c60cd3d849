/* util.h: checked allocation, fatal errors, time, RNG and flag parsing.
 * Every other file in lib/ uses these; nothing here knows about networks. */
#ifndef ICN_UTIL_H
#define ICN_UTIL_H
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* Allocation that reports file and line on failure (llm.c's mallocCheck habit). */
void *icn_malloc_check(size_t size, const char *file, int line);
void *icn_calloc_check(size_t n, size_t size, const char *file, int line);
void *icn_realloc_check(void *p, size_t size, const char *file, int line);
#define xmalloc(sz) icn_malloc_check((sz), __FILE__, __LINE__)
#define xcalloc(n, sz) icn_calloc_check((n), (sz), __FILE__, __LINE__)
#define xrealloc(p, sz) icn_realloc_check((p), (sz), __FILE__, __LINE__)
/* strdup that dies the same way on failure: the library's and the programs' one copy of a string. */
char *icn_strdup_check(const char *s, const char *file, int line);
#define xstrdup(s) icn_strdup_check((s), __FILE__, __LINE__)

/* The program name used as the prefix of every message ("icn-load: ..."). */
extern const char *icn_progname;
/* From now on, large buffers this process frees stay in its heap for the next one of their
 * size (up to 32 MB each, glibc's limit; up to 256 MB kept) instead of going back to the system
 * at once. A snapshot (17 MB for the MNIST net) is packed, sent, received and decoded every
 * round, and a fresh buffer faults in each of its pages again: on a virtual machine each fault
 * is a trap to the hypervisor. The snapshot channel's ends (publisher.h, inbox.h) call it. */
void icn_keep_freed_memory(void);
void icn_set_progname(const char *argv0);

/* One-line error "prog: message" on stderr, then exit(code). */
void icn_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
void icn_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "prog: message\n" on f: what icn_die and icn_warn print. */
void icn_vmessage(FILE *f, const char *fmt, va_list ap);
/* Fill an error buffer the way every lib function reports errors (returns -1). */
int icn_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define ICN_ERRLEN 256

double icn_now(void);       /* monotonic seconds, for durations */
double icn_wallclock(void); /* seconds since the epoch, for events compared across processes */
/* *at = ms milliseconds from now on CLOCK_REALTIME, the clock of pthread_cond_timedwait. */
void icn_deadline_in(struct timespec *at, int ms);
/* Start fn(arg) on a thread that blocks every signal, so that signals go to the caller's thread
 * (which owns a program's stop flag); 0, or pthread_create's error number. */
int icn_thread_start_quiet(pthread_t *thread, void *(*fn)(void *), void *arg);

/* Deterministic RNG (xoshiro256**, seeded by splitmix64) so a seed means the same run everywhere. */
typedef struct { uint64_t s[4]; int have_gauss; double gauss; } icn_rng;
void icn_rng_seed(icn_rng *r, uint64_t seed);
uint64_t icn_rng_u64(icn_rng *r);
double icn_rng_uniform(icn_rng *r);          /* [0, 1) */
uint32_t icn_rng_below(icn_rng *r, uint32_t n); /* [0, n), unbiased */
double icn_rng_gauss(icn_rng *r);            /* N(0, 1) */
void icn_rng_shuffle(icn_rng *r, int32_t *a, size_t n);

/* getopt_long with icn's conventions: -h/--help (an option returning 'h') prints usage to
 * stdout and exits 0; an unknown option or a missing value is one line on stderr naming it
 * ("prog: [context: ]unknown option '--x' (see --help)") and exit 2. Returns the next option
 * or -1. `context` (a subcommand name) may be NULL. */
struct option;
int icn_getopt(int argc, char **argv, const struct option *longs, const char *usage, const char *context);

/* The one usage-error style: "prog: [context: ]message (see --help)" on stderr, then exit 2.
 * `context` (a subcommand name) may be NULL. */
void icn_usage_error(const char *context, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* After icn_getopt's loop: an operand left over is a usage error, one line on stderr
 * ("prog: [context: ]unexpected argument 'x' (see --help)") and exit 2. */
void icn_no_operands(int argc, char **argv, const char *context);

/* A program's subcommands, one dispatch table style for every program that has them.
 * icn_dispatch runs the command named by argv[1] with (argc - 1, argv + 1), so the command's
 * argv[0] is its own name, and returns what it returns. No command: the usage on stderr, exit 2.
 * "-h", "--help" or "help": the usage on stdout, exit 0. An unknown name: one line listing the
 * table ("prog: unknown command 'x' (a, b or c; see --help)"), exit 2. */
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
} icn_command;
int icn_dispatch(int argc, char **argv, const icn_command *cmds, int n_cmds, const char *usage);

/* Parse helpers for flags: exit with a message naming the flag on bad input. */
long icn_parse_long(const char *flag, const char *s, long lo, long hi);
double icn_parse_double(const char *flag, const char *s, double lo, double hi);
/* The one class-list grammar (--classes of icn-load and icn-synthesize): labels 0..31 in
 * decimal, separated by single commas, at least one, e.g. "0,1,7"; returns the set as a bit
 * mask (bit k for label k). Anything else exits 2 with "FLAG: 'S' is not a list of labels 0..31". */
uint32_t icn_parse_classes(const char *flag, const char *s);

/* Write s as a JSON string literal (quotes and escapes included). */
void icn_fput_json_string(FILE *f, const char *s);

/* Writing files atomically and reading untrusted ones: fileio.h. */

#endif
