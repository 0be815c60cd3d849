#include "runtime.h"

#include <stdlib.h>
#include <unistd.h>

#include "gemm.h"
#include "memlimit.h"
#include "parallel.h"
#include "util.h"

void icn_runtime_init(int requested) {
    int n = requested;
    if (n <= 0) {
        const char *env = getenv("ICN_THREADS");
        if (env && *env) n = (int)icn_parse_long("ICN_THREADS", env, 1, 1024);
    }
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    char err[256];
    int limited = icn_memlimit_check(err, sizeof err);
    if (limited < 0) icn_die(1, "%s", err);
    if (limited) icn_gemm_set_plain(1); /* OpenBLAS spins forever when it cannot map its buffer */
    icn_gemm_set_threads(n);
    icn_parallel_start(n);
}
