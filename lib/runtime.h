/* runtime.h: the process's compute runtime, set once, in this one place: the thread budget, icn's
 * thread pool (parallel.h), OpenBLAS's thread count (gemm.h) and, under an address-space limit
 * (memlimit.h), plain products instead of OpenBLAS's. */
#ifndef ICN_RUNTIME_H
#define ICN_RUNTIME_H

/* The budget is `requested`, else ICN_THREADS, else the number of online cores (a synthesizer
 * that shares a machine with others passes --threads 1). It sizes icn's pool and OpenBLAS's
 * threads (which gemm.c narrows around thin products). Exits 1 with one line when an
 * address-space limit leaves too little to run. */
void icn_runtime_init(int requested); /* 0 = ICN_THREADS or all cores */

#endif
