/* test_datasets.c: CIFAR-10 records and SVHN MAT-files, written here in the real formats
 * (matwrite.h), read into batches: every pixel lands at its NHWC place with x/127.5 - 1, labels
 * come out 0..9, and each kind of broken file is refused with one line naming it. Also which
 * files a named data set's split reads, and the error when they are absent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <zlib.h>

#include "datasets.h"
#include "fixtures.h"
#include "child.h"
#include "matfile.h"
#include "matwrite.h"
#include "util.h"

#define IMG 3072

/* The byte of image i at (row, col, channel k): distinct enough to catch any transposition. */
static uint8_t pixel(int i, int row, int col, int k) { return (uint8_t)(i * 37 + row * 7 + col * 3 + k * 101); }

static float scaled(uint8_t v) { return (float)v / 127.5f - 1.0f; }

/* n CIFAR images (planes: k*1024 + row*32 + col) with labels (first + i) % 10. */
static void cifar_file(const char *name, int first, int n, size_t cut) {
    uint8_t *planes = malloc((size_t)n * IMG), *labels = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        labels[i] = (uint8_t)((first + i) % 10);
        for (int k = 0; k < 3; k++)
            for (int r = 0; r < 32; r++)
                for (int c = 0; c < 32; c++) planes[(size_t)i * IMG + k * 1024 + r * 32 + c] = pixel(first + i, r, c, k);
    }
    assert_int_equal(cifar_write(tmp_path(name), labels, planes, n, cut), 0);
    free(planes);
    free(labels);
}

/* n SVHN images in MATLAB's column-major 32x32x3xN, labels 1..10 ((first + i) % 10, 0 as 10). */
static void svhn_arrays(int first, int n, uint8_t **x, double **y) {
    *x = malloc((size_t)n * IMG);
    *y = malloc((size_t)n * sizeof(double));
    for (int i = 0; i < n; i++) {
        int digit = (first + i) % 10;
        (*y)[i] = digit == 0 ? 10 : digit;
        for (int k = 0; k < 3; k++)
            for (int c = 0; c < 32; c++)
                for (int r = 0; r < 32; r++) (*x)[(size_t)i * IMG + k * 1024 + c * 32 + r] = pixel(first + i, r, c, k);
    }
}

static void svhn_file(const char *name, int first, int n, int y_uint8, int y_first, mat_opts o) {
    uint8_t *x;
    double *y;
    svhn_arrays(first, n, &x, &y);
    mat_buf b;
    mat_header(&b, 0);
    mat_svhn(&b, x, y, n, y_uint8, y_first, o);
    assert_int_equal(mb_write(&b, tmp_path(name), SIZE_MAX), 0);
    free(b.p);
    free(x);
    free(y);
}

/* Images first..first+n-1 at b's positions at..: exact pixels in NHWC, labels 0..9. */
static void check_images(const icn_batch *b, int at, int first, int n) {
    assert_int_equal(b->h, 32);
    assert_int_equal(b->w, 32);
    assert_int_equal(b->c, 3);
    for (int i = 0; i < n; i++) {
        assert_int_equal(b->y[at + i], (first + i) % 10);
        const float *img = b->x + (size_t)(at + i) * IMG;
        for (int r = 0; r < 32; r++)
            for (int c = 0; c < 32; c++)
                for (int k = 0; k < 3; k++)
                    if (img[(r * 32 + c) * 3 + k] != scaled(pixel(first + i, r, c, k)))
                        fail_msg("image %d (r %d, c %d, k %d): %g", i, r, c, k, img[(r * 32 + c) * 3 + k]);
    }
}

static int load_err(int svhn, const char *name, char *err) {
    const char *path = tmp_path(name);
    icn_batch b;
    int rc = (svhn ? icn_svhn_load : icn_cifar10_load)(&path, 1, &b, err, ICN_ERRLEN);
    if (rc == 0) {
        icn_batch_free(&b);
        return 0;
    }
    assert_null(b.x);
    assert_null(strchr(err, '\n'));
    assert_non_null(strstr(err, name));
    return rc;
}

/* ------------------------------------------------------------ CIFAR-10 */

static void test_cifar10_batches_load_in_their_layout(void **state) {
    (void)state;
    char err[ICN_ERRLEN] = "";
    cifar_file("a.bin", 0, 3, 0);
    cifar_file("b.bin", 3, 12, 0);
    const char *paths[2];
    char pa[256];
    snprintf(pa, sizeof pa, "%s", tmp_path("a.bin"));
    paths[0] = pa;
    paths[1] = tmp_path("b.bin");
    icn_batch b;
    if (icn_cifar10_load(paths, 2, &b, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(b.n, 15);
    check_images(&b, 0, 0, 15);
    /* one pixel by hand: image 1, row 5, column 7, blue is byte 1 + 2*1024 + 5*32 + 7 of record 1 */
    assert_true(b.x[(size_t)1 * IMG + (5 * 32 + 7) * 3 + 2] == scaled(pixel(1, 5, 7, 2)));
    icn_batch_free(&b);
}

static void test_a_broken_cifar10_batch_is_refused(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    cifar_file("cut.bin", 0, 3, 100);
    assert_int_equal(load_err(0, "cut.bin", err), -1);
    assert_non_null(strstr(err, "truncated: record 3 has 2973 of its 3073 bytes"));
    cifar_file("empty.bin", 0, 1, 3073);
    assert_int_equal(load_err(0, "empty.bin", err), -1);
    assert_non_null(strstr(err, "empty"));
    /* a label byte of 10 */
    cifar_file("label.bin", 0, 3, 0);
    FILE *f = fopen(tmp_path("label.bin"), "r+b");
    fseek(f, 3073, SEEK_SET);
    fputc(10, f);
    fclose(f);
    assert_int_equal(load_err(0, "label.bin", err), -1);
    assert_non_null(strstr(err, "record 2 has label 10, expected 0..9"));
    assert_int_equal(load_err(0, "absent.bin", err), -1);
}

/* ------------------------------------------------------------ SVHN */

static void test_svhn_mat_files_load_in_their_layout(void **state) {
    (void)state;
    char err[ICN_ERRLEN] = "";
    /* compressed with double y (as the real files), plain with uint8 y, y before X */
    const mat_opts o[3] = {{.compress = 1}, {0}, {.compress = 1}};
    const int y8[3] = {0, 1, 1}, yfirst[3] = {0, 0, 1};
    for (int t = 0; t < 3; t++) {
        svhn_file("s.mat", 0, 12, y8[t], yfirst[t], o[t]);
        const char *path = tmp_path("s.mat");
        icn_batch b;
        if (icn_svhn_load(&path, 1, &b, err, sizeof err)) fail_msg("case %d: %s", t, err);
        assert_int_equal(b.n, 12);
        check_images(&b, 0, 0, 12);
        assert_int_equal(b.y[0], 0); /* stored as 10 */
        assert_int_equal(b.y[10], 0);
        assert_int_equal(b.y[9], 9);
        /* image 2, row 3, column 30, green: MATLAB element 3 + 32*30 + 1024*1 + 3072*2 */
        assert_true(b.x[(size_t)2 * IMG + (3 * 32 + 30) * 3 + 1] == scaled(pixel(2, 3, 30, 1)));
        icn_batch_free(&b);
    }
    /* a double y stored as miUINT8, the way MATLAB may save it; one image, X of 32x32x3;
     * other variables between X and y */
    uint8_t *x;
    double *y;
    svhn_arrays(5, 1, &x, &y);
    mat_buf m;
    mat_header(&m, 1); /* and big-endian, for once */
    int32_t xd[3] = {32, 32, 3}, yd[2] = {1, 1};
    uint8_t y8v = (uint8_t)y[0];
    mat_var(&m, "X", ICN_MX_UINT8, xd, 3, ICN_MI_UINT8, 1, x, IMG, (mat_opts){.compress = 1});
    /* other variables, numeric or not, are passed over */
    int32_t od[2] = {1, 2};
    double other[2] = {3, 4};
    mat_var(&m, "other", ICN_MX_DOUBLE, od, 2, ICN_MI_DOUBLE, 8, other, 2, (mat_opts){.compress = 1});
    mat_var(&m, "name", 4 /* mxCHAR */, od, 2, ICN_MI_UINT16, 2, "h\0i\0", 2, (mat_opts){0});
    mat_var(&m, "y", ICN_MX_DOUBLE, yd, 2, ICN_MI_UINT8, 1, &y8v, 1, (mat_opts){0});
    assert_int_equal(mb_write(&m, tmp_path("one.mat"), SIZE_MAX), 0);
    free(m.p), free(x), free(y);
    const char *path = tmp_path("one.mat");
    icn_batch b;
    if (icn_svhn_load(&path, 1, &b, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(b.n, 1);
    check_images(&b, 0, 5, 1);
    icn_batch_free(&b);
}

/* One variable replaced: X of the given class/dims, or y of the given values. */
static void svhn_custom(const char *name, int x_class, const int32_t *xd, int xnd, const double *yv, int yn) {
    uint8_t *x;
    double *y;
    int n = xnd == 4 ? xd[3] : 1;
    size_t numel = 1;
    for (int i = 0; i < xnd; i++) numel *= (size_t)xd[i];
    svhn_arrays(0, n, &x, &y); /* enough bytes for any X of n images of at most 3 channels */
    mat_buf m;
    mat_header(&m, 0);
    mat_var(&m, "X", x_class, xd, xnd, x_class == ICN_MX_UINT8 ? ICN_MI_UINT8 : ICN_MI_INT8, 1, x, numel, (mat_opts){0});
    int32_t yd[2] = {yn, 1};
    if (yv) mat_var(&m, "y", ICN_MX_DOUBLE, yd, 2, ICN_MI_DOUBLE, 8, yv, (size_t)yn, (mat_opts){.compress = 1});
    assert_int_equal(mb_write(&m, tmp_path(name), SIZE_MAX), 0);
    free(m.p), free(x), free(y);
}

static void test_a_broken_svhn_mat_file_is_refused(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    int32_t x4[4] = {32, 32, 3, 4}, gray[4] = {32, 32, 1, 4};
    double ok[4] = {1, 2, 10, 3};
    /* X and y disagree */
    svhn_custom("count.mat", ICN_MX_UINT8, x4, 4, ok, 3);
    assert_int_equal(load_err(1, "count.mat", err), -1);
    assert_non_null(strstr(err, "X holds 4 images but y 3 labels"));
    /* labels outside 1..10 */
    const double bad[3][4] = {{1, 2, 0, 3}, {1, 11, 2, 3}, {1, 2, 3, 2.5}};
    const char *want[3] = {"y(3) is 0, expected a label 1..10", "y(2) is 11", "y(4) is 2.5"};
    for (int i = 0; i < 3; i++) {
        svhn_custom("label.mat", ICN_MX_UINT8, x4, 4, bad[i], 4);
        assert_int_equal(load_err(1, "label.mat", err), -1);
        assert_non_null(strstr(err, want[i]));
    }
    /* X of the wrong shape or class */
    svhn_custom("gray.mat", ICN_MX_UINT8, gray, 4, ok, 4);
    assert_int_equal(load_err(1, "gray.mat", err), -1);
    assert_non_null(strstr(err, "X is 32x32x1x4, expected 32x32x3xN"));
    svhn_custom("int8.mat", ICN_MX_INT8, x4, 4, ok, 4);
    assert_int_equal(load_err(1, "int8.mat", err), -1);
    assert_non_null(strstr(err, "X is not a real uint8 array"));
    /* y missing, X missing */
    svhn_custom("noy.mat", ICN_MX_UINT8, x4, 4, NULL, 0);
    assert_int_equal(load_err(1, "noy.mat", err), -1);
    assert_non_null(strstr(err, "no variable y"));
    mat_buf m;
    mat_header(&m, 0);
    int32_t yd[2] = {4, 1};
    mat_var(&m, "y", ICN_MX_DOUBLE, yd, 2, ICN_MI_DOUBLE, 8, ok, 4, (mat_opts){0});
    assert_int_equal(mb_write(&m, tmp_path("nox.mat"), SIZE_MAX), 0);
    free(m.p);
    assert_int_equal(load_err(1, "nox.mat", err), -1);
    assert_non_null(strstr(err, "no variable X"));
    /* truncated: a file cut inside X */
    svhn_file("cut.mat", 0, 4, 0, 0, (mat_opts){.compress = 1});
    struct stat st;
    assert_int_equal(stat(tmp_path("cut.mat"), &st), 0);
    assert_int_equal(truncate(tmp_path("cut.mat"), st.st_size - 50), 0);
    assert_int_equal(load_err(1, "cut.mat", err), -1);
    assert_non_null(strstr(err, "truncated"));
    /* a stream that inflates to less than X's element declares */
    uint8_t *x;
    double *y;
    svhn_arrays(0, 4, &x, &y);
    mat_header(&m, 0);
    mat_var(&m, "X", ICN_MX_UINT8, x4, 4, ICN_MI_UINT8, 1, x, 4 * IMG, (mat_opts){.compress = 1, .declare_delta = 64});
    mat_var(&m, "y", ICN_MX_DOUBLE, yd, 2, ICN_MI_DOUBLE, 8, ok, 4, (mat_opts){0});
    assert_int_equal(mb_write(&m, tmp_path("zip.mat"), SIZE_MAX), 0);
    free(m.p), free(x), free(y);
    assert_int_equal(load_err(1, "zip.mat", err), -1);
    assert_non_null(strstr(err, "inflates to"));
    /* not a MAT-file at all: a CIFAR file */
    cifar_file("cifar.mat", 0, 1, 0);
    assert_int_equal(load_err(1, "cifar.mat", err), -1);
    assert_non_null(strstr(err, "not a level-5 MAT-file"));
}

/* ------------------------------------------------------------ named data sets */

static void test_each_data_set_names_its_files_and_splits(void **state) {
    (void)state;
    char err[ICN_ERRLEN] = "", dir[256];
    snprintf(dir, sizeof dir, "%s", tmpdir);
    icn_batch b;
    /* CIFAR: five training files in order, the test file alone; a missing one says where to get it */
    for (int f = 1; f <= 4; f++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", f);
        cifar_file(name, 3 * (f - 1), 3, 0);
    }
    assert_int_equal(icn_dataset_load("cifar10", dir, ICN_SPLIT_TRAIN, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "cifar10: no data_batch_5.bin in "));
    assert_non_null(strstr(err, ICN_CIFAR10_URL));
    assert_null(strchr(err, '\n'));
    cifar_file("data_batch_5.bin", 12, 3, 0);
    assert_int_equal(icn_dataset_load("cifar10", dir, ICN_SPLIT_TEST, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "no test_batch.bin"));
    cifar_file("test_batch.bin", 100, 2, 0);
    if (icn_dataset_load("cifar10", dir, ICN_SPLIT_ALL, &b, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(b.n, 15);
    check_images(&b, 0, 0, 15);
    icn_batch_free(&b);
    assert_int_equal(icn_dataset_load("cifar10", dir, ICN_SPLIT_TEST, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 2);
    check_images(&b, 0, 100, 2);
    icn_batch_free(&b);
    /* the default directory is the data directory's cifar-10-batches-bin */
    setenv("ICN_DATA", "/nonexistent-icn", 1);
    assert_int_equal(icn_dataset_load("cifar10", NULL, ICN_SPLIT_TEST, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent-icn/cifar-10-batches-bin"));
    assert_int_equal(icn_dataset_load("svhn", NULL, ICN_SPLIT_EXTRA, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "svhn: no extra_32x32.mat in /nonexistent-icn/svhn: get " ICN_SVHN_URL "extra_32x32.mat"));
    unsetenv("ICN_DATA");
    /* SVHN: train, test, extra, and train+extra = train then extra, whole */
    svhn_file("train_32x32.mat", 0, 5, 0, 0, (mat_opts){.compress = 1});
    svhn_file("test_32x32.mat", 50, 2, 1, 0, (mat_opts){0});
    assert_int_equal(icn_dataset_load("svhn", dir, ICN_SPLIT_TRAIN_EXTRA, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "no extra_32x32.mat"));
    svhn_file("extra_32x32.mat", 5, 7, 1, 0, (mat_opts){.compress = 1});
    assert_int_equal(icn_dataset_load("svhn", dir, ICN_SPLIT_TRAIN_EXTRA, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 12);
    check_images(&b, 0, 0, 12);
    icn_batch_free(&b);
    const icn_split splits[4] = {ICN_SPLIT_TRAIN, ICN_SPLIT_VAL, ICN_SPLIT_TEST, ICN_SPLIT_EXTRA};
    const int first[4] = {0, 0, 50, 5}, count[4] = {5, 5, 2, 7};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(icn_dataset_load("svhn", dir, splits[i], &b, err, sizeof err), 0);
        assert_int_equal(b.n, count[i]); /* the range is the caller's (icn_split_apply) */
        check_images(&b, 0, first[i], count[i]);
        icn_batch_free(&b);
    }
    /* splits and directories a data set has not */
    assert_int_equal(icn_dataset_load("cifar10", dir, ICN_SPLIT_EXTRA, &b, err, sizeof err), -1);
    assert_string_equal(err, "cifar10 has no split extra (train, val, test or all)");
    assert_int_equal(icn_dataset_check("mnist", NULL, ICN_SPLIT_TRAIN_EXTRA, err, sizeof err), -1);
    assert_string_equal(err, "mnist has no split train+extra (train, val, test or all)");
    assert_int_equal(icn_dataset_check("mnist", dir, ICN_SPLIT_TEST, err, sizeof err), -1);
    assert_non_null(strstr(err, "data directory"));
    assert_int_equal(icn_dataset_check("cifar100", dir, ICN_SPLIT_TEST, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown data set 'cifar100'"));
    assert_int_equal(icn_dataset_check("svhn", NULL, ICN_SPLIT_TRAIN_EXTRA, err, sizeof err), 0);
    icn_split s;
    assert_int_equal(icn_split_parse("train+extra", &s), 0);
    assert_int_equal(s, ICN_SPLIT_TRAIN_EXTRA);
    assert_string_equal(icn_split_name(ICN_SPLIT_EXTRA), "extra");
    int32_t start, n;
    icn_split_range(ICN_SPLIT_TRAIN_EXTRA, 604388, &start, &n);
    assert_int_equal(start, 0);
    assert_int_equal(n, 604388);
}

/* A gzip bomb behind an IDX header (issue 16, finding 5). */
static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A gzip'd IDX file: header (declaring n items of rows x cols) then `zeros` zero bytes. */
static void write_idx_gz(const char *path, uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols, size_t zeros) {
    gzFile g = gzopen(path, "wb9");
    assert_non_null(g);
    uint8_t h[16];
    be32(h, magic), be32(h + 4, n), be32(h + 8, rows), be32(h + 12, cols);
    assert_true(gzwrite(g, h, magic == 0x803 ? 16 : 8) > 0);
    static uint8_t z[1 << 20];
    for (size_t left = zeros; left;) {
        size_t k = left < sizeof z ? left : sizeof z;
        assert_int_equal(gzwrite(g, z, (unsigned)k), (int)k);
        left -= k;
    }
    assert_int_equal(gzclose(g), Z_OK);
}

static int load_bomb(char *err, size_t errlen) {
    icn_batch b;
    int rc = icn_idx_load(tmp_path("bomb-images.gz"), tmp_path("bomb-labels.gz"), &b, err, errlen);
    if (rc == 0) icn_batch_free(&b);
    return rc;
}

static void test_a_gzip_bomb_behind_an_idx_header_is_refused_in_little_memory(void **state) {
    (void)state;
    /* 10 million images declared, 200 MB of pixels present (~200 KB compressed): a float array
     * grown as they arrived reached 800 MB before the file was found short */
    write_idx_gz(tmp_path("bomb-images.gz"), 0x803, 10000000, 28, 28, (size_t)200 << 20);
    write_idx_gz(tmp_path("bomb-labels.gz"), 0x801, 10000000, 1, 1, 10000000);
    struct stat st;
    assert_int_equal(stat(tmp_path("bomb-images.gz"), &st), 0);
    assert_true(st.st_size < (1 << 20));
    char err[ICN_ERRLEN];
    long peak;
    int rc = in_child(load_bomb, 0, err, sizeof err, &peak);
    if (rc != -1) fail_msg("loading returned %d: %s", rc, err);
    if (!strstr(err, "truncated")) fail_msg("the error does not say the file is short: %s", err);
    if (!UNDER_ASAN && peak > 64) fail_msg("peak memory %ld MB for a %lld-byte gzip file", peak, (long long)st.st_size);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cifar10_batches_load_in_their_layout),
        cmocka_unit_test(test_a_broken_cifar10_batch_is_refused),
        cmocka_unit_test(test_svhn_mat_files_load_in_their_layout),
        cmocka_unit_test(test_a_broken_svhn_mat_file_is_refused),
        cmocka_unit_test(test_each_data_set_names_its_files_and_splits),
        cmocka_unit_test(test_a_gzip_bomb_behind_an_idx_header_is_refused_in_little_memory),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
