/* memlimit.c: see memlimit.h. */
#include "memlimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/resource.h>


/* The address space mapped now, in bytes (/proc/self/statm: pages of VmSize). */
static unsigned long long mapped_bytes(void) {
    unsigned long long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu", &pages) != 1) pages = 0;
        fclose(f);
    }
    return pages * 4096ull;
}

/* exit() runs OpenBLAS's destructor, which joins its server threads; one whose buffer could not
 * be mapped at start is still retrying, so the join never returns. Under a limit, exit skips
 * the library destructors once the program's own exit handlers (registered later) have run. */
static void exit_now(int status, void *arg) {
    (void)arg;
    fflush(NULL);
    _exit(status);
}

int icn_memlimit_check(char *err, size_t errlen) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
    on_exit(exit_now, NULL);
    unsigned long long limit = rl.rlim_cur, used = mapped_bytes(), need = 16ull << 20;
    if (used + need > limit) {
        snprintf(err, errlen,
                 "the address-space limit (ulimit -v) of %llu MB leaves %llu MB after loading the program: raise the limit",
                 limit >> 20, limit > used ? (limit - used) >> 20 : 0);
        return -1;
    }
    return 1;
}
