/* memlimit.h: running under an address-space limit (ulimit -v, RLIMIT_AS).
 *
 * OpenBLAS 0.3.21 maps a 128 MiB work buffer for a thread's first product and, when that mmap
 * fails, retries forever in blas_memory_alloc without a word: a program under
 * `ulimit -v 600000` spun at 77% CPU for minutes instead of failing (issue 16, finding 8).
 * So under a finite RLIMIT_AS (icn_threads_init calls icn_memlimit_threads first) every
 * product is computed by gemm.c's plain loops (icn_gemm_set_plain) and OpenBLAS maps nothing:
 * a shortage is then an ordinary failed allocation, one line from xmalloc. OpenBLAS's own
 * server threads, started before main, map a buffer each and may be retrying already; exit()
 * would wait for them forever, so under a limit exit skips the library destructors. */
#ifndef ICN_MEMLIMIT_H
#define ICN_MEMLIMIT_H

/* `threads`, after switching to plain products when RLIMIT_AS is finite. Exits with status 1
 * and one line when the limit leaves less than 16 MB after loading. */
int icn_memlimit_threads(int threads);

#endif
