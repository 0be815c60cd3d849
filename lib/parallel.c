#include "parallel.h"

#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>

#include "util.h"

static struct {
    pthread_mutex_t lock;
    pthread_cond_t start, done;
    int size;            /* threads including the caller */
    int workers;         /* started worker threads (size - 1) */
    long generation;     /* bumped per job, so a worker runs each job once */
    int pending;         /* workers still running the current job */
    icn_range_fn fn;
    void *ctx;
    long n;
    int parts;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .start = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER, .size = 1};

static void run_part(int part) {
    long lo = pool.n * part / pool.parts, hi = pool.n * (part + 1) / pool.parts;
    if (hi > lo) pool.fn(pool.ctx, lo, hi, part);
}

static void *worker_main(void *arg) {
    int id = (int)(long)arg;
    long seen = 0;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.start, &pool.lock);
        seen = pool.generation;
        if (id >= pool.parts) continue; /* this job uses fewer threads */
        pthread_mutex_unlock(&pool.lock);
        run_part(id);
        pthread_mutex_lock(&pool.lock);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

/* Start or resize the pool to `threads` (including the caller). */
static void workers_resize(int threads) {
    pthread_mutex_lock(&pool.lock);
    while (pool.workers < threads - 1) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker_main, (void *)(long)(pool.workers + 1)) != 0) break;
        pthread_detach(t);
        pool.workers++;
    }
    pool.size = threads < pool.workers + 1 ? threads : pool.workers + 1;
    pthread_mutex_unlock(&pool.lock);
}

void icn_parallel_for(long n, long min_per_thread, icn_range_fn fn, void *ctx) {
    long parts = pool.size;
    if (min_per_thread > 0 && n / min_per_thread < parts) parts = n / min_per_thread;
    if (parts <= 1) {
        if (n > 0) fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    pool.fn = fn, pool.ctx = ctx, pool.n = n, pool.parts = (int)parts;
    pool.pending = (int)parts - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.lock);
    run_part(0);
    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
}

void *icn_partials_get(icn_partials *p, size_t bytes) {
    if (bytes > p->bytes) {
        p->buf = xrealloc(p->buf, bytes);
        p->bytes = bytes;
    }
    return p->buf;
}

void icn_partials_free(icn_partials *p) {
    free(p->buf);
    p->buf = NULL;
    p->bytes = 0;
}

static int g_threads = 1;

void icn_parallel_start(int threads) {
    g_threads = threads;
    workers_resize(threads);
}

int icn_threads(void) { return g_threads; }

/* One part per thread (icn_parallel_for: part i runs on worker i, part 0 on the caller). */
static void nice_part(void *ctx, long lo, long hi, int thread) {
    (void)lo, (void)hi, (void)thread;
    int *arg = ctx; /* [0] the increment, [1] the errno of a thread refused */
    pid_t tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int now = getpriority(PRIO_PROCESS, (id_t)tid);
    if ((now == -1 && errno) || setpriority(PRIO_PROCESS, (id_t)tid, now + arg[0]))
        __atomic_store_n(&arg[1], errno, __ATOMIC_RELAXED);
}

int icn_threads_nice(int increment) {
    int arg[2] = {increment, 0};
    icn_parallel_for(pool.size, 1, nice_part, arg);
    if (arg[1]) errno = arg[1];
    return arg[1] ? -1 : 0;
}
