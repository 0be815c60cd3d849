/* gen_datasets: small CIFAR-10 and SVHN files in the real formats, for the Bats tests.
 *   gen_datasets cifar DIR N: data_batch_1.bin .. data_batch_5.bin and test_batch.bin, N records each
 *   gen_datasets svhn DIR N:  train_32x32.mat (N images, compressed, y double, as the real file),
 *                             test_32x32.mat (N, uncompressed, y uint8), extra_32x32.mat (2N, compressed)
 * Image g (counted across the files in that order) has label g % 10 (SVHN stores 0 as 10) and
 * pixel (row, col, channel k) = (g*37 + row*7 + col*3 + k*101) % 256. DIR is made if need be. */
#include "../unit/matwrite.h"

#include <errno.h>
#include <sys/stat.h>

static uint8_t pixel(int g, int r, int c, int k) { return (uint8_t)(g * 37 + r * 7 + c * 3 + k * 101); }

static int die(const char *what) {
    fprintf(stderr, "gen_datasets: %s\n", what);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) return die("usage: gen_datasets cifar|svhn DIR N");
    int n = atoi(argv[3]), g = 0;
    char path[4096];
    if (n < 1 || n > 100000) return die("N must be 1 to 100000");
    if (mkdir(argv[2], 0755) != 0 && errno != EEXIST) return die(argv[2]);
    if (strcmp(argv[1], "cifar") && strcmp(argv[1], "svhn")) return die("the first argument is cifar or svhn");
    uint8_t *x = malloc((size_t)2 * n * 3072), *lab = malloc((size_t)2 * n);
    double *y = malloc((size_t)2 * n * sizeof(double));
    const char *failed = !x || !lab || !y ? "out of memory" : NULL;
    if (failed) {
    } else if (strcmp(argv[1], "cifar") == 0) {
        for (int f = 1; f <= 6; f++) {
            for (int i = 0; i < n; i++, g++) {
                lab[i] = (uint8_t)(g % 10);
                for (int k = 0; k < 3; k++)
                    for (int r = 0; r < 32; r++)
                        for (int c = 0; c < 32; c++) x[(size_t)i * 3072 + k * 1024 + r * 32 + c] = pixel(g, r, c, k);
            }
            if (f <= 5) snprintf(path, sizeof path, "%s/data_batch_%d.bin", argv[2], f);
            else snprintf(path, sizeof path, "%s/test_batch.bin", argv[2]);
            if (cifar_write(path, lab, x, n, 0)) {
                failed = path;
                break;
            }
        }
    } else {
        const char *names[3] = {"train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"};
        for (int f = 0; f < 3; f++) {
            int m = f == 2 ? 2 * n : n;
            for (int i = 0; i < m; i++, g++) {
                y[i] = g % 10 == 0 ? 10 : g % 10;
                for (int k = 0; k < 3; k++)
                    for (int c = 0; c < 32; c++)
                        for (int r = 0; r < 32; r++) x[(size_t)i * 3072 + k * 1024 + c * 32 + r] = pixel(g, r, c, k);
            }
            mat_buf b;
            mat_header(&b, 0);
            mat_svhn(&b, x, y, m, f != 0, 0, (mat_opts){.compress = f != 1});
            snprintf(path, sizeof path, "%s/%s", argv[2], names[f]);
            int bad = mb_write(&b, path, SIZE_MAX);
            free(b.p);
            if (bad) {
                failed = path;
                break;
            }
        }
    }
    free(x), free(lab), free(y);
    return failed ? die(failed) : 0;
}
