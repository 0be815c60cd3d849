/* memlimit.h: is this process running under an address-space limit (ulimit -v, RLIMIT_AS)?
 *
 * OpenBLAS 0.3.21 maps a 128 MiB work buffer for a thread's first product and, when that mmap
 * fails, retries forever in blas_memory_alloc without a word: a program under
 * `ulimit -v 600000` spun at 77% CPU for minutes instead of failing (issue 16, finding 8).
 * So under a finite RLIMIT_AS every product must be computed by gemm.c's plain loops
 * (icn_gemm_set_plain; runtime.h does that) and OpenBLAS maps nothing: a shortage is then an
 * ordinary failed allocation, one line from xmalloc. OpenBLAS's own server threads, started
 * before main, map a buffer each and may be retrying already; exit() would wait for them forever,
 * so under a limit exit skips the library destructors. This file calls nothing of icn's. */
#ifndef ICN_MEMLIMIT_H
#define ICN_MEMLIMIT_H
#include <stddef.h>

/* 0: no limit. 1: a limit (and from now on exit skips the library destructors, once the
 * program's own exit handlers, registered later, have run). -1 with err: the limit leaves less
 * than 16 MB after loading the program. */
int icn_memlimit_check(char *err, size_t errlen);

#endif
