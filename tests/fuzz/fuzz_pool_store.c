/* fuzz_pool_store: a pool store file (pool.h). Opened read-only, as dump and stats do (the
 * scan that verifies every record and builds the index), every record read back and counted;
 * then opened for writing, which cuts a torn tail, and opened again. First icn_pool_check and
 * icn_pool_repair (into a temporary new store, read back) on the bytes as they came. */
#include "fuzz.h"
#include "pool.h"
#include "util.h"

#include <stdio.h>
#include <unistd.h>

static void read_all(const char *path, int mode) {
    char err[2 * ICN_ERRLEN];
    icn_pool *p;
    if (icn_pool_open(path, mode, NULL, &p, err, sizeof err)) return;
    int64_t total = icn_pool_count(p);
    for (int64_t i = 0; i < total; i += 7) {
        icn_batch b;
        if (icn_pool_read(p, i, 7, &b, err, sizeof err)) break;
        icn_batch_free(&b);
    }
    icn_pool_counts c;
    icn_pool_stats(p, &c);
    icn_pool_counts_free(&c);
    icn_pool_close(p, err, sizeof err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_file f;
    fuzz_env();
    const char *path = fuzz_file_put(&f, data, size);
    icn_pool_report r; /* check and repair walk past damage, resynchronizing */
    char err[2 * ICN_ERRLEN], out[96];
    icn_pool_check(path, NULL, NULL, &r, err, sizeof err);
    snprintf(out, sizeof out, "%s.repaired", path);
    unlink(out);
    if (icn_pool_repair(path, out, NULL, NULL, &r, err, sizeof err) == 0) read_all(out, ICN_POOL_READ);
    unlink(out);
    read_all(path, ICN_POOL_READ);
    read_all(path, ICN_POOL_WRITE);
    read_all(path, ICN_POOL_READ);
    return 0;
}
