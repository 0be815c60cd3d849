/* parallel.h: a small pool of worker threads that sleep (never spin) between jobs, and the
 * per-thread buffers of the sums split across them. How many threads it has is decided once, in
 * one place (runtime.h).
 *
 * Why not OpenMP: libgomp's workers spin after each parallel region and steal the cores
 * OpenBLAS's threads need for the next sgemm; on 2 cores that cost a third of the
 * throughput. These workers block on a condition variable instead. */
#ifndef ICN_PARALLEL_H
#define ICN_PARALLEL_H
#include <stddef.h>

/* Below this many floats of work, a parallel loop is not worth waking a thread. */
#define ICN_PARALLEL_MIN_WORK 32768L

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

/* Start (or resize) the pool to `threads`, the caller included: the thread budget that every
 * split of work uses (runtime.h decides it). */
void icn_parallel_start(int threads);
int icn_threads(void); /* the budget: 1 until icn_parallel_start */
/* Make the caller's thread and this pool's workers `increment` nicer (Linux: niceness is per
 * thread), leaving every other thread as it is: threads started before, such as ZeroMQ's I/O
 * thread and a snapshot receiver (inbox.h), keep their priority over this compute. 0, or -1
 * with errno when the system refused for some thread. */
int icn_threads_nice(int increment);

#endif
