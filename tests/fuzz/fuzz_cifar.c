/* fuzz_cifar: a CIFAR-10 binary file (records of 1 label byte and 3,072 pixel bytes) through
 * icn_cifar10_load; when its first byte is odd, also twice, as two files of one load (appending). */
#include "fuzz.h"
#include "datasets.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_file f;
    char err[ICN_ERRLEN];
    const char *path = fuzz_file_put(&f, data, size);
    const char *paths[2] = {path, path};
    for (int n = 1; n <= (size && (data[0] & 1) ? 2 : 1); n++) {
        icn_batch b;
        if (icn_cifar10_load(paths, n, &b, err, sizeof err) == 0) icn_batch_free(&b);
    }
    return 0;
}
