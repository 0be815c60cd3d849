/* test_crash.c: crash testing in SQLite's spirit. A fault injector compiled only into this test
 * (the Makefile links it with -Wl,--wrap for write, pwrite, fsync, fdatasync, rename, ftruncate
 * and link, so libicn.a's calls come here) fails the Nth of those calls along a short run, for
 * EVERY N, in one of three ways:
 *   fail   the call returns -1 (ENOSPC for writes, EIO otherwise) and the program goes on;
 *   crash  the process dies at that call (a write writes half its bytes first);
 *   power  a crash that also loses every byte written since the file's last fsync.
 * Each run is a forked child; after it, the parent reopens what it left and checks that it
 * holds exactly what was acknowledged before the fault (plus, after a crash, the batch or file
 * in flight, whole or not at all), and, for the pool, that resending everything stores each
 * batch exactly once. The number of fault points tried and what each showed is printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net.h"
#include "pool.h"
#include "snapshot.h"
#include "util.h"
#include "wire.h"

#include "fixtures.h"

/* ------------------------------------------------------------ the injector */

enum { M_NONE, M_FAIL, M_CRASH, M_POWER };
static const char *mode_name[] = {"none", "fail", "crash", "power"};

static int g_mode;       /* what the N-th call does */
static long g_fail_at;   /* N (1-based); 0: never */
static long g_calls;     /* calls seen while armed */
static int g_armed;
static const char *g_hit; /* which call took the fault */
static char *g_hit_out;   /* where to say so at once (shared with the parent), or NULL */

#define MAX_FD 1024
static off_t g_durable[MAX_FD]; /* power: the size a file had at its last fsync */
static char g_tracked[MAX_FD];

ssize_t __real_write(int fd, const void *b, size_t n);
ssize_t __real_pwrite(int fd, const void *b, size_t n, off_t at);
int __real_fsync(int fd);
int __real_fdatasync(int fd);
int __real_rename(const char *a, const char *b);
int __real_ftruncate(int fd, off_t len);
int __real_link(const char *a, const char *b);

static void track(int fd) { /* a file's bytes before our first write to it count as durable */
    struct stat st;
    if (fd < 0 || fd >= MAX_FD || g_tracked[fd] || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    g_tracked[fd] = 1;
    g_durable[fd] = st.st_size;
}

static void synced(int fd) {
    struct stat st;
    if (fd >= 0 && fd < MAX_FD && g_tracked[fd] && fstat(fd, &st) == 0) g_durable[fd] = st.st_size;
}

static void die_now(void) {
    if (g_mode == M_POWER) /* what the disk never got is gone (a prefix model: the file falls back) */
        for (int fd = 0; fd < MAX_FD; fd++)
            if (g_tracked[fd]) __real_ftruncate(fd, g_durable[fd]);
    _exit(99);
}

/* 1 when this call takes the fault. */
static int fault(const char *what) {
    if (!g_armed) return 0;
    if (++g_calls != g_fail_at) return 0;
    g_hit = what;
    if (g_hit_out) snprintf(g_hit_out, 16, "%s", what);
    return 1;
}

ssize_t __wrap_write(int fd, const void *b, size_t n) {
    track(fd);
    if (fault("write")) {
        if (g_mode == M_FAIL) return errno = ENOSPC, -1;
        if (n > 1) __real_write(fd, b, n / 2);
        die_now();
    }
    return __real_write(fd, b, n);
}

ssize_t __wrap_pwrite(int fd, const void *b, size_t n, off_t at) {
    track(fd);
    if (fault("pwrite")) {
        if (g_mode == M_FAIL) return errno = ENOSPC, -1;
        if (n > 1) __real_pwrite(fd, b, n / 2, at);
        die_now();
    }
    return __real_pwrite(fd, b, n, at);
}

#define WRAP_FD_CALL(name)                                           \
    int __wrap_##name(int fd) {                                      \
        if (fault(#name)) {                                          \
            if (g_mode == M_FAIL) return errno = EIO, -1;            \
            die_now();                                               \
        }                                                            \
        int r = __real_##name(fd);                                   \
        if (r == 0) synced(fd);                                      \
        return r;                                                    \
    }
WRAP_FD_CALL(fsync)
WRAP_FD_CALL(fdatasync)

int __wrap_ftruncate(int fd, off_t len) {
    track(fd);
    if (fault("ftruncate")) {
        if (g_mode == M_FAIL) return errno = EIO, -1;
        die_now();
    }
    return __real_ftruncate(fd, len);
}

int __wrap_rename(const char *a, const char *b) {
    if (fault("rename")) {
        if (g_mode == M_FAIL) return errno = EIO, -1;
        die_now();
    }
    return __real_rename(a, b);
}

int __wrap_link(const char *a, const char *b) {
    if (fault("link")) {
        if (g_mode == M_FAIL) return errno = EIO, -1;
        die_now();
    }
    return __real_link(a, b);
}

static void arm(int mode, long at) {
    g_mode = mode, g_fail_at = at, g_calls = 0, g_hit = NULL, g_armed = 1;
    memset(g_tracked, 0, sizeof g_tracked);
}

/* What a child tells its parent, in shared memory (no system call to fault). */
#define MAX_STEPS 8
typedef struct {
    int acked[MAX_STEPS + 1]; /* step s answered as done (stored or duplicate) */
    int rc[MAX_STEPS + 1];
    int inflight;             /* the step whose call had not returned (0: none) */
    long calls;               /* calls seen (a fault-free run: how many points there are) */
    char hit[16];
    int swallowed;            /* a fault was injected, yet every step reported success */
    int broken_refused;       /* after a failed append, the next one failed too */
} report;

static report *shared_report(void) {
    void *m = mmap(NULL, sizeof(report), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    return m;
}

/* Run fn(ctx, r) in a child under the fault (mode, at). */
static void in_child(void (*fn)(void *, report *), void *ctx, report *r, int mode, long at) {
    memset(r, 0, sizeof *r);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        g_hit_out = r->hit;
        arm(mode, at);
        fn(ctx, r);
        g_armed = 0;
        r->calls = g_calls;
        if (g_hit) snprintf(r->hit, sizeof r->hit, "%s", g_hit);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (mode == M_NONE) assert_int_equal(WEXITSTATUS(st), 0);
}

/* A tally of outcomes, printed at the end of a sweep. */
typedef struct {
    char what[64][96];
    int count[64], n;
} outcomes;

static void outcome(outcomes *o, const char *fmt, ...) {
    char s[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, sizeof s, fmt, ap);
    va_end(ap);
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->what[i], s)) {
            o->count[i]++;
            return;
        }
    if (o->n < 64) snprintf(o->what[o->n], sizeof o->what[0], "%s", s), o->count[o->n++] = 1;
}

static void print_outcomes(const char *title, const outcomes *o) {
    printf("%s\n", title);
    for (int i = 0; i < o->n; i++) printf("    %4d  %s\n", o->count[i], o->what[i]);
}

/* ------------------------------------------------------------ the pool's append */

static const icn_pool_contract K = {4, 3, 1, 10, -1.0f, 1.0f, 0};
#define NB 4
static const int32_t batch_n[NB + 1] = {0, 1, 3, 2, 5};
static const uint64_t PRODUCER = 0x5eed5eed5eedull;

/* Batch s of the run: deterministic images, class s, generation s. */
static void make_batch(icn_batch *b, int s) {
    icn_batch_alloc(b, batch_n[s], K.h, K.w, K.c, 1);
    size_t d = icn_batch_dim(b);
    for (size_t i = 0; i < (size_t)b->n * d; i++) b->x[i] = (float)((int)(i * 7 + (size_t)s * 13) % 41) / 20.0f - 1.0f;
    b->prov = xcalloc((size_t)b->n, sizeof *b->prov);
    for (int32_t i = 0; i < b->n; i++) {
        b->y[i] = -s - 1;
        b->prov[i] = (icn_provenance){s, i, 0.5f, 1, 7};
    }
}

typedef struct {
    const char *path;
    icn_fsync_policy fsync;
} pool_run;

static void pool_child(void *ctx, report *r) {
    const pool_run *run = ctx;
    char err[2 * ICN_ERRLEN];
    icn_pool *p;
    r->inflight = -1; /* creating the store */
    if (icn_pool_open(run->path, ICN_POOL_CREATE, &K, &p, err, sizeof err)) return;
    r->inflight = 0;
    icn_pool_set_fsync(p, run->fsync);
    for (int s = 1; s <= NB; s++) {
        icn_batch b;
        make_batch(&b, s);
        icn_pool_origin o = {"local", PRODUCER, (uint64_t)s};
        r->inflight = s;
        int rc = icn_pool_append_batch(p, &b, &o, err, sizeof err);
        r->inflight = 0;
        r->rc[s] = rc;
        icn_batch_free(&b);
        if (rc == 0 || rc == 1) {
            r->acked[s] = 1;
            continue;
        }
        if (rc == -2 && s < NB) { /* the caller must stop; a pool that failed refuses to go on */
            icn_batch c;
            make_batch(&c, s + 1);
            icn_pool_origin next = {"local", PRODUCER, (uint64_t)s + 1};
            r->broken_refused = icn_pool_append_batch(p, &c, &next, err, sizeof err) == -2;
            icn_batch_free(&c);
        } else r->broken_refused = 1;
        break;
    }
    int closed = icn_pool_close(p, err, sizeof err) == 0, all = 1;
    for (int s = 1; s <= NB; s++) all &= r->acked[s];
    r->swallowed = all && closed && g_hit != NULL;
}

/* The store holds exactly batches `in` (in order) and takes the rest once. */
static void check_pool(const char *path, const int *in, const char *ctx) {
    char err[2 * ICN_ERRLEN];
    icn_pool *p = NULL;
    if (icn_pool_open(path, ICN_POOL_CREATE, &K, &p, err, sizeof err)) fail_msg("%s: reopening: %s", ctx, err);
    int64_t want = 0;
    for (int s = 1; s <= NB; s++) want += in[s] ? batch_n[s] : 0;
    if (icn_pool_count(p) != want) fail_msg("%s: %lld records, expected %lld", ctx, (long long)icn_pool_count(p), (long long)want);
    icn_batch got;
    assert_int_equal(icn_pool_read(p, 0, 100, &got, err, sizeof err), 0);
    int at = 0;
    for (int s = 1; s <= NB; s++) {
        if (!in[s]) continue;
        icn_batch b;
        make_batch(&b, s);
        size_t d = icn_batch_dim(&b);
        for (int32_t i = 0; i < b.n; i++, at++) {
            if (memcmp(b.x + i * d, got.x + (size_t)at * d, d * sizeof(float)) || got.y[at] != b.y[i])
                fail_msg("%s: record %d is not image %d of batch %d", ctx, at, i, s);
        }
        icn_batch_free(&b);
    }
    icn_batch_free(&got);
    /* resend everything, in order: what is there is a duplicate, the rest goes in once */
    for (int s = 1; s <= NB; s++) {
        icn_batch b;
        make_batch(&b, s);
        icn_pool_origin o = {"local", PRODUCER, (uint64_t)s};
        int rc = icn_pool_append_batch(p, &b, &o, err, sizeof err);
        if (rc != (in[s] ? 1 : 0)) fail_msg("%s: resending batch %d: %d (%s)", ctx, s, rc, err);
        icn_batch_free(&b);
    }
    assert_int_equal(icn_pool_count(p), 1 + 3 + 2 + 5);
    assert_int_equal(icn_pool_close(p, err, sizeof err), 0);
}

static long sweep_pool(icn_fsync_policy policy, int mode, outcomes *o) {
    report *r = shared_report();
    pool_run run = {tmp_path("crash.icnpool"), policy};
    unlink(run.path);
    in_child(pool_child, &run, r, M_NONE, 0);
    long total = r->calls;
    assert_true(total > 0);
    for (long n = 1; n <= total; n++) {
        unlink(run.path);
        in_child(pool_child, &run, r, mode, n);
        int in[NB + 1] = {0}, k = 0;
        for (int s = 1; s <= NB; s++) in[s] = r->acked[s], k += r->acked[s];
        for (int s = 1; s <= k; s++)
            if (!in[s]) fail_msg("fsync %s, %s at call %ld: batch %d not acknowledged before %d", icn_fsync_name(policy),
                                 mode_name[mode], n, s, k);
        /* after a crash the batch in flight may be there or not; after a failure it must not be */
        char ctx[128];
        snprintf(ctx, sizeof ctx, "fsync %s, %s at call %ld (%s)", icn_fsync_name(policy), mode_name[mode], n, r->hit);
        int flight = mode == M_FAIL ? 0 : r->inflight;
        if (flight > 0) { /* which? the store says; both are right if whole */
            char err[2 * ICN_ERRLEN];
            icn_pool *p = NULL;
            if (icn_pool_open(run.path, ICN_POOL_READ, NULL, &p, err, sizeof err)) fail_msg("%s: %s", ctx, err);
            int64_t acked_records = 0;
            for (int s = 1; s <= NB; s++) acked_records += in[s] ? batch_n[s] : 0;
            if (icn_pool_count(p) > acked_records) in[flight] = 1;
            icn_pool_close(p, err, sizeof err);
        }
        if (mode == M_FAIL && r->swallowed) fail_msg("%s: the fault was swallowed: every batch reported stored", ctx);
        int failed = 0;
        for (int s = 1; s <= NB; s++) failed |= r->rc[s] == -2;
        if (failed && !r->broken_refused) fail_msg("%s: an append after a failed one was not refused", ctx);
        check_pool(run.path, in, ctx);
        outcome(o, "%-9s -> %d acknowledged, %s", r->hit[0] ? r->hit : "(none)", k,
                r->inflight == -1 ? "store not created"
                : flight > 0      ? (in[flight] ? "batch in flight whole" : "batch in flight absent")
                : r->inflight > 0 ? "failed batch absent"
                : k == NB         ? "close reported the failure"
                                  : "failed batch absent");
    }
    munmap(r, sizeof *r);
    unlink(run.path);
    return total;
}

static void test_a_pool_append_survives_a_fault_at_every_write(void **state) {
    (void)state;
    static const icn_fsync_policy policies[] = {ICN_FSYNC_BATCH, ICN_FSYNC_ALWAYS, ICN_FSYNC_NONE};
    long points = 0, runs = 0;
    for (size_t i = 0; i < 3; i++) {
        for (int mode = M_FAIL; mode <= M_POWER; mode++) {
            if (policies[i] == ICN_FSYNC_NONE && mode == M_POWER) continue; /* none promises nothing then */
            outcomes o = {0};
            long n = sweep_pool(policies[i], mode, &o);
            char title[128];
            snprintf(title, sizeof title, "crash sweep: pool append (create + %d batches), fsync %s, %s: %ld fault points",
                     NB, icn_fsync_name(policies[i]), mode_name[mode], n);
            print_outcomes(title, &o);
            points += n, runs++;
        }
    }
    printf("crash sweep: pool append: %ld fault points in %ld sweeps, every one reopened to exactly what was "
           "acknowledged\n", points, runs);
}

/* ------------------------------------------------------------ the checkpoint's save */

typedef struct {
    const char *path;
    icn_net *net;
} ckpt_run;

static void ckpt_child(void *ctx, report *r) {
    const ckpt_run *run = ctx;
    char err[2 * ICN_ERRLEN];
    for (int s = 1; s <= 2; s++) {
        icn_model_meta m = {.step = s, .total_steps = 10, .seed = 1};
        r->inflight = s;
        int rc = icn_model_save(run->path, run->net, &m, NULL, err, sizeof err);
        r->inflight = 0;
        r->rc[s] = rc;
        if (rc) break;
        r->acked[s] = 1;
    }
    r->swallowed = r->acked[1] && r->acked[2] && g_hit != NULL;
}

/* 0: no file; else the step of the model the checkpoint file holds. */
static int ckpt_state(const char *path, const char *ctx) {
    if (access(path, F_OK) != 0) return 0;
    icn_net net;
    icn_model_meta m;
    int has;
    char err[2 * ICN_ERRLEN];
    if (icn_model_load(path, &net, &m, NULL, &has, err, sizeof err)) fail_msg("%s: the checkpoint does not load: %s", ctx, err);
    icn_net_free(&net);
    return (int)m.step;
}

static void test_a_checkpoint_save_survives_a_fault_at_every_write(void **state) {
    (void)state;
    icn_net net;
    char err[ICN_ERRLEN];
    if (icn_net_build(&net, "c4", 6, 6, 1, 3, err, sizeof err)) fail_msg("%s", err);
    icn_net_init(&net, 1);
    ckpt_run run = {tmp_path("crash.ckpt"), &net};
    report *r = shared_report();
    long points = 0, swallowed = 0;
    unlink(run.path);
    in_child(ckpt_child, &run, r, M_NONE, 0);
    long total = r->calls;
    assert_true(total > 0);
    for (int mode = M_FAIL; mode <= M_CRASH; mode++) {
        outcomes o = {0};
        for (long n = 1; n <= total; n++) {
            unlink(run.path);
            in_child(ckpt_child, &run, r, mode, n);
            char ctx[128];
            snprintf(ctx, sizeof ctx, "checkpoint save, %s at call %ld (%s)", mode_name[mode], n, r->hit);
            int got = ckpt_state(run.path, ctx), last = r->acked[2] ? 2 : r->acked[1] ? 1 : 0;
            int failed = r->rc[1] ? 1 : r->rc[2] ? 2 : 0;
            /* a failed fsync of the directory comes after the rename: the failed save is then in
             * place, whole, though reported as failed (nothing can take a rename back) */
            int flight = mode == M_FAIL ? (strcmp(r->hit, "fsync") == 0 ? failed : 0) : r->inflight;
            /* exactly the last acknowledged save, or, after a crash or a failed directory fsync,
             * the one in flight */
            if (got != last && !(flight > 0 && got == flight))
                fail_msg("%s: the file holds save %d; acknowledged %d, in flight %d", ctx, got, last, r->inflight);
            if (mode == M_FAIL && r->swallowed) swallowed++;
            outcome(&o, "%-9s -> %d acknowledged, the file holds %s%s", r->hit[0] ? r->hit : "(none)", last,
                    got ? (got == 1 ? "save 1" : "save 2") : "nothing",
                    mode == M_FAIL && r->swallowed ? " (fault swallowed: save said done)" : "");
        }
        char title[128];
        snprintf(title, sizeof title, "crash sweep: checkpoint save (2 saves), %s: %ld fault points", mode_name[mode], total);
        print_outcomes(title, &o);
        points += total;
    }
    printf("crash sweep: checkpoint save: %ld fault points, every one left the last acknowledged save or the one in "
           "flight, whole; %ld injected failures were not reported by the save\n", points, swallowed);
    assert_int_equal(swallowed, 0); /* every injected failure is reported by the save */
    munmap(r, sizeof *r);
    unlink(run.path);
    icn_net_free(&net);
}

int main(void) {
    icn_set_progname("test_crash");
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_pool_append_survives_a_fault_at_every_write),
        cmocka_unit_test(test_a_checkpoint_save_survives_a_fault_at_every_write),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
