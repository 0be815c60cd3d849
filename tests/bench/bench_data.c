/* bench_data: a tensor stream of random images and labels, for benchmarks on shapes that no
 * data set here has (CIFAR's 32x32x3). usage: bench_data N H W C CLASSES SEED > FILE */
#include <stdio.h>
#include <stdlib.h>

#include "util.h"
#include "wire.h"

int main(int argc, char **argv) {
    icn_set_progname(argv[0]);
    if (argc != 7) icn_die(2, "usage: bench_data N H W C CLASSES SEED > FILE");
    long a[6];
    const char *names[6] = {"N", "H", "W", "C", "CLASSES", "SEED"};
    for (int i = 0; i < 6; i++) a[i] = icn_parse_long(names[i], argv[i + 1], i == 5 ? 0 : 1, 1 << 20);
    icn_batch b;
    icn_batch_alloc(&b, (int32_t)a[0], (int32_t)a[1], (int32_t)a[2], (int32_t)a[3], 1);
    icn_rng rng;
    icn_rng_seed(&rng, (uint64_t)a[5]);
    for (size_t i = 0; i < (size_t)b.n * icn_batch_dim(&b); i++) b.x[i] = (float)(2 * icn_rng_uniform(&rng) - 1);
    for (int32_t i = 0; i < b.n; i++) b.y[i] = (int32_t)icn_rng_below(&rng, (uint32_t)a[4]);
    char err[ICN_ERRLEN];
    if (icn_batch_write_file("-", &b, 0, err, sizeof err)) icn_die(1, "%s", err);
    icn_batch_free(&b);
    return 0;
}
