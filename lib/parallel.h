/* parallel.h: the thread budget and a small pool of worker threads that sleep (never spin)
 * between jobs.
 *
 * Why not OpenMP: libgomp's workers spin after each parallel region and steal the cores
 * OpenBLAS's threads need for the next sgemm; on 2 cores that cost a third of the
 * throughput. These workers block on a condition variable instead. */
#ifndef ICN_PARALLEL_H
#define ICN_PARALLEL_H
#include <stddef.h>

/* fn is called on contiguous ranges [lo, hi) covering [0, n), one per thread, with the
 * thread's index (0 = the caller). Runs inline when n < 2 * min_per_thread or with one thread. */
typedef void (*icn_range_fn)(void *ctx, long lo, long hi, int thread);
void icn_parallel_for(long n, long min_per_thread, icn_range_fn fn, void *ctx);

/* Per-thread partial sums of a reduction split across threads (icn_gemm_tn_acc, batchnorm's
 * sums): a buffer that grows on demand, never in steady state, owned by the work struct whose
 * layers use it (icn_work in net.h). A function that takes one accepts NULL: a buffer of its own
 * for that call. */
typedef struct {
    void *buf;
    size_t bytes;
} icn_partials;
void *icn_partials_get(icn_partials *p, size_t bytes); /* at least `bytes`, contents undefined */
void icn_partials_free(icn_partials *p);

/* The thread budget, set once, deliberately: `requested`, else ICN_THREADS, else the number of
 * online cores. It sizes this pool and OpenBLAS's threads (the one OpenBLAS thread setting outside
 * gemm.c, which narrows it around thin products). A synthesizer that shares a machine with others
 * passes --threads 1. */
void icn_threads_init(int requested); /* 0 = ICN_THREADS or all cores */
int icn_threads(void);
/* Make the caller's thread and this pool's workers `increment` nicer (Linux: niceness is per
 * thread), leaving every other thread as it is: threads started before, such as ZeroMQ's I/O
 * thread and a snapshot receiver (inbox.h), keep their priority over this compute. 0, or -1
 * with errno when the system refused for some thread. */
int icn_threads_nice(int increment);

#endif
