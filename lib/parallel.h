/* parallel.h: the thread budget and a small pool of worker threads that sleep (never spin)
 * between jobs.
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

/* The thread budget, set once, deliberately: `requested`, else ICN_THREADS, else the number of
 * online cores. It sizes this pool and OpenBLAS's threads (the one OpenBLAS thread setting outside
 * gemm.c, which narrows it around thin products). A synthesizer that shares a machine with others
 * passes --threads 1. */
void icn_threads_init(int requested); /* 0 = ICN_THREADS or all cores */
int icn_threads(void);

#endif
