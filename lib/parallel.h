/* parallel.h: a small pool of worker threads that sleep (never spin) between jobs.
 *
 * Why not OpenMP: libgomp's workers spin after each parallel region and steal the cores
 * OpenBLAS's threads need for the next sgemm; on 2 cores that cost a third of the
 * throughput. These workers block on a condition variable instead. */
#ifndef ICN_PARALLEL_H
#define ICN_PARALLEL_H

/* fn is called on contiguous ranges [lo, hi) covering [0, n), one per thread, with the
 * thread's index (0 = the caller). Runs inline when n < 2 * min_per_thread or with one thread. */
typedef void (*icn_range_fn)(void *ctx, long lo, long hi, int thread);
void icn_parallel_for(long n, long min_per_thread, icn_range_fn fn, void *ctx);

/* Start or resize the pool to `threads` (including the caller). Called by icn_threads_init. */
void icn_pool_resize(int threads);

#endif
