/* test_data.c: IDX loading (plain and gzip), header checks, splits, seeded subsets, and where
 * data sets are looked for. Fixtures are generated here, in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets.h"
#include "util.h"

#define N_IMG 24
#define ROWS 3
#define COLS 2

static char tmpdir[64];
static char made[32][160]; /* every file and directory created, removed in reverse order */
static int nmade;

static const char *path_of(const char *name) {
    static char buf[4][160];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 160, "%s/%s", tmpdir, name);
    return p;
}

static void remember(const char *path) {
    for (int i = 0; i < nmade; i++)
        if (strcmp(made[i], path) == 0) return;
    assert_true(nmade < 32);
    snprintf(made[nmade++], sizeof made[0], "%s", path);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* Write bytes to name (gzip-compressed when gz); returns the full path. */
static const char *write_bytes(const char *name, const uint8_t *p, size_t n, int gz) {
    const char *path = path_of(name);
    remember(path);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        if (n) assert_int_equal(gzwrite(f, p, (unsigned)n), (int)n);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(p, 1, n, f), n);
        fclose(f);
    }
    return path;
}

/* An IDX image file of n images rows x cols (pixel i of image k = (k*7 + i*50) % 256, and
 * image 0 holds 0 and 255), with `cut` bytes removed from the end and `extra` added. */
static const char *write_images(const char *name, uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols,
                                size_t actual_n, long cut, size_t extra, int gz) {
    size_t len = 16 + actual_n * rows * cols + extra;
    uint8_t *b = xcalloc(len, 1);
    put_be32(b, magic); put_be32(b + 4, n); put_be32(b + 8, rows); put_be32(b + 12, cols);
    for (size_t i = 0; i < actual_n * rows * cols; i++) b[16 + i] = (uint8_t)((i / (rows * cols)) * 7 + (i % (rows * cols)) * 50);
    if (actual_n) { b[16] = 0; b[17] = 255; }
    const char *p = write_bytes(name, b, len - (size_t)cut, gz);
    free(b);
    return p;
}

static const char *write_labels(const char *name, uint32_t magic, uint32_t n, size_t actual_n, long cut, int gz) {
    size_t len = 8 + actual_n;
    uint8_t *b = xcalloc(len + 16, 1); /* a negative cut appends zeros */
    put_be32(b, magic); put_be32(b + 4, n);
    for (size_t i = 0; i < actual_n; i++) b[8 + i] = (uint8_t)(i % 10);
    const char *p = write_bytes(name, b, len - (size_t)cut, gz);
    free(b);
    return p;
}

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/icn-test-data-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    for (int i = nmade - 1; i >= 0; i--) remove(made[i]);
    return rmdir(tmpdir);
}

static int load_err(const char *images, const char *labels, char *err) {
    icn_batch b;
    int rc = icn_idx_load(images, labels, &b, err, ICN_ERRLEN);
    if (rc == 0) icn_batch_free(&b);
    else {
        assert_null(b.x); /* nothing half-built is handed out */
        assert_null(strchr(err, '\n'));
    }
    return rc;
}

/* ------------------------------------------------------------ IDX */

static void check_loaded(const icn_batch *b) {
    assert_int_equal(b->n, N_IMG);
    assert_int_equal(b->h, ROWS);
    assert_int_equal(b->w, COLS);
    assert_int_equal(b->c, 1);
    assert_non_null(b->y);
    assert_null(b->prov);
    assert_true(b->x[0] == -1.0f); /* 0 -> -1 */
    assert_true(b->x[1] == 1.0f);  /* 255 -> 1 */
    for (int i = 0; i < N_IMG; i++) assert_int_equal(b->y[i], i % 10);
    size_t d = ROWS * COLS;
    for (size_t i = 2; i < N_IMG * d; i++) {
        uint8_t raw = (uint8_t)((i / d) * 7 + (i % d) * 50);
        assert_true(b->x[i] == (float)raw / 127.5f - 1.0f);
        assert_true(b->x[i] >= -1.0f && b->x[i] <= 1.0f);
    }
}

static void test_an_idx_file_loads_the_same_plain_and_gzipped(void **state) {
    (void)state;
    for (int gz = 0; gz < 2; gz++) {
        const char *im = write_images(gz ? "im.gz" : "im", 0x803, N_IMG, ROWS, COLS, N_IMG, 0, 0, gz);
        char imcopy[160];
        snprintf(imcopy, sizeof imcopy, "%s", im);
        const char *lb = write_labels(gz ? "lb.gz" : "lb", 0x801, N_IMG, N_IMG, 0, gz);
        icn_batch b;
        char err[ICN_ERRLEN] = "";
        if (icn_idx_load(imcopy, lb, &b, err, sizeof err)) fail_msg("gz=%d: %s", gz, err);
        check_loaded(&b);
        icn_batch_free(&b);
    }
}

static void test_a_truncated_idx_file_is_refused(void **state) {
    (void)state;
    char err[ICN_ERRLEN] = "", im[160];
    const char *lb = write_labels("lb", 0x801, N_IMG, N_IMG, 0, 0);
    for (int gz = 0; gz < 2; gz++) {
        snprintf(im, sizeof im, "%s", write_images(gz ? "im.gz" : "im", 0x803, N_IMG, ROWS, COLS, N_IMG, 10, 0, gz));
        assert_int_equal(load_err(im, lb, err), -1);
        char want[320];
        snprintf(want, sizeof want, "%s: truncated: header declares 24 images of 3x2 (144 bytes) but only 134 present", im);
        assert_string_equal(err, want);
    }
    /* A 16-byte file that claims 10 million 4096x4096 images: refused, cheaply. */
    snprintf(im, sizeof im, "%s", write_images("im", 0x803, 10000000, 4096, 4096, 0, 0, 0, 0));
    const char *lb2 = write_labels("lb2", 0x801, 10000000, 0, 0, 0);
    assert_int_equal(load_err(im, lb2, err), -1);
    assert_non_null(strstr(err, "truncated"));
    /* Labels cut short. */
    snprintf(im, sizeof im, "%s", write_images("im", 0x803, N_IMG, ROWS, COLS, N_IMG, 0, 0, 0));
    lb = write_labels("lb", 0x801, N_IMG, N_IMG, 3, 0);
    assert_int_equal(load_err(im, lb, err), -1);
    assert_non_null(strstr(err, "declares 24 labels but only 21 present"));
    /* Header itself cut. */
    const char *tiny = write_bytes("tiny", (const uint8_t *)"\0\0\x08\x03\0\0", 6, 0);
    lb = write_labels("lb", 0x801, N_IMG, N_IMG, 0, 0);
    assert_int_equal(load_err(tiny, lb, err), -1);
    assert_non_null(strstr(err, "truncated"));
    const char *empty = write_bytes("empty", (const uint8_t *)"", 0, 0);
    assert_int_equal(load_err(empty, lb, err), -1);
    assert_non_null(strstr(err, "empty"));
}

static void test_an_idx_header_that_lies_is_refused(void **state) {
    (void)state;
    char err[ICN_ERRLEN] = "", im[160], lb[160];
    snprintf(im, sizeof im, "%s", write_images("im", 0x803, N_IMG, ROWS, COLS, N_IMG, 0, 0, 0));
    snprintf(lb, sizeof lb, "%s", write_labels("lb", 0x801, N_IMG, N_IMG, 0, 0));
    /* Files swapped: wrong magic. */
    assert_int_equal(load_err(lb, im, err), -1);
    assert_non_null(strstr(err, "magic 0x00000801"));
    assert_int_equal(load_err(im, im, err), -1);
    assert_non_null(strstr(err, "not an IDX label file"));
    /* idx3 of int32 (0x0c) instead of uint8. */
    const char *wrong = write_images("wrong", 0xc03, N_IMG, ROWS, COLS, N_IMG, 0, 0, 0);
    assert_int_equal(load_err(wrong, lb, err), -1);
    assert_non_null(strstr(err, "magic"));
    /* Count mismatch. */
    const char *lb5 = write_labels("lb5", 0x801, 5, 5, 0, 0);
    assert_int_equal(load_err(im, lb5, err), -1);
    assert_non_null(strstr(err, "24 images but"));
    assert_non_null(strstr(err, "has 5 labels"));
    /* Zero and oversized dimensions. */
    const char *z = write_images("zero", 0x803, N_IMG, 0, COLS, 0, 0, 0, 0);
    assert_int_equal(load_err(z, lb, err), -1);
    assert_non_null(strstr(err, "0x2"));
    const char *big = write_images("big", 0x803, N_IMG, 5000, 2, 0, 0, 0, 0);
    assert_int_equal(load_err(big, lb, err), -1);
    assert_non_null(strstr(err, "5000x2"));
    const char *many = write_images("many", 0x803, 10000001, 1, 1, 0, 0, 0, 0);
    assert_int_equal(load_err(many, lb, err), -1);
    assert_non_null(strstr(err, "10000001"));
    /* Missing file. */
    assert_int_equal(load_err(path_of("absent"), lb, err), -1);
    assert_non_null(strstr(err, "absent"));
    /* Not gzip and not IDX: garbage. */
    const char *junk = write_bytes("junk.gz", (const uint8_t *)"\x1f\x8b\x08\x00garbage-garbage", 19, 0);
    assert_int_equal(load_err(junk, lb, err), -1);
}

static void test_bytes_after_an_idx_file_s_items_are_refused(void **state) {
    (void)state;
    char err[ICN_ERRLEN] = "", im[160];
    const char *lb = write_labels("lb", 0x801, N_IMG, N_IMG, 0, 0);
    snprintf(im, sizeof im, "%s", write_images("im", 0x803, N_IMG, ROWS, COLS, N_IMG, 0, 5, 0));
    assert_int_equal(load_err(im, lb, err), -1);
    assert_non_null(strstr(err, "5 trailing bytes"));
    snprintf(im, sizeof im, "%s", write_images("im.gz", 0x803, N_IMG, ROWS, COLS, N_IMG, 0, 1, 1));
    assert_int_equal(load_err(im, lb, err), -1);
    assert_non_null(strstr(err, "1 trailing bytes"));
    snprintf(im, sizeof im, "%s", write_images("im", 0x803, N_IMG, ROWS, COLS, N_IMG, 0, 0, 0));
    lb = write_labels("lb", 0x801, N_IMG, N_IMG, -2, 0); /* two bytes more than declared */
    assert_int_equal(load_err(im, lb, err), -1);
    assert_non_null(strstr(err, "2 trailing bytes"));
}

/* ------------------------------------------------------------ splits */

static void test_every_split_name_parses_and_others_are_refused(void **state) {
    (void)state;
    icn_split s;
    assert_int_equal(icn_split_parse("train", &s), 0);
    assert_int_equal(s, ICN_SPLIT_TRAIN);
    assert_int_equal(icn_split_parse("val", &s), 0);
    assert_int_equal(s, ICN_SPLIT_VAL);
    assert_int_equal(icn_split_parse("test", &s), 0);
    assert_int_equal(s, ICN_SPLIT_TEST);
    assert_int_equal(icn_split_parse("all", &s), 0);
    assert_int_equal(s, ICN_SPLIT_ALL);
    assert_int_equal(icn_split_parse("Train", &s), -1);
    assert_int_equal(icn_split_parse("", &s), -1);
    assert_string_equal(icn_split_name(ICN_SPLIT_VAL), "val");
}

static void test_the_splits_are_the_paper_s_ranges(void **state) {
    (void)state;
    int32_t start, count;
    /* The paper's split of MNIST's 60,000. */
    icn_split_range(ICN_SPLIT_TRAIN, 60000, &start, &count);
    assert_int_equal(start, 0);
    assert_int_equal(count, 55000);
    icn_split_range(ICN_SPLIT_VAL, 60000, &start, &count);
    assert_int_equal(start, 55000);
    assert_int_equal(count, 5000);
    icn_split_range(ICN_SPLIT_ALL, 60000, &start, &count);
    assert_int_equal(count, 60000);
    icn_split_range(ICN_SPLIT_TEST, 10000, &start, &count);
    assert_int_equal(start, 0);
    assert_int_equal(count, 10000);
    /* Other sizes: val is the last n/12. */
    icn_split_range(ICN_SPLIT_VAL, 24, &start, &count);
    assert_int_equal(start, 22);
    assert_int_equal(count, 2);
    icn_split_range(ICN_SPLIT_TRAIN, 11, &start, &count);
    assert_int_equal(count, 11);
}

static void test_a_split_applied_to_a_file_keeps_its_range(void **state) {
    (void)state;
    char err[ICN_ERRLEN] = "", im[160];
    snprintf(im, sizeof im, "%s", write_images("im", 0x803, N_IMG, ROWS, COLS, N_IMG, 0, 0, 0));
    const char *lb = write_labels("lb", 0x801, N_IMG, N_IMG, 0, 0);
    icn_batch all, b;
    assert_int_equal(icn_idx_load(im, lb, &all, err, sizeof err), 0);
    size_t d = icn_batch_dim(&all);
    assert_int_equal(icn_idx_load(im, lb, &b, err, sizeof err), 0);
    assert_int_equal(icn_split_apply(&b, ICN_SPLIT_VAL, err, sizeof err), 0);
    assert_int_equal(b.n, 2);
    assert_memory_equal(b.x, all.x + 22 * d, 2 * d * sizeof(float));
    assert_int_equal(b.y[0], 22 % 10);
    icn_batch_free(&b);
    assert_int_equal(icn_idx_load(im, lb, &b, err, sizeof err), 0);
    assert_int_equal(icn_split_apply(&b, ICN_SPLIT_TRAIN, err, sizeof err), 0);
    assert_int_equal(b.n, 22);
    assert_memory_equal(b.x, all.x, 22 * d * sizeof(float));
    /* Too few images for a validation split: an error, not an empty stream. */
    icn_batch_free(&b);
    icn_batch_alloc(&b, 5, 1, 1, 1, 1);
    assert_int_equal(icn_split_apply(&b, ICN_SPLIT_VAL, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty"));
    icn_batch_free(&b);
    icn_batch_free(&all);
}

/* ------------------------------------------------------------ selection */

static void indexed_batch(icn_batch *b, int32_t n) {
    icn_batch_alloc(b, n, 1, 1, 2, 1);
    for (int32_t i = 0; i < n; i++) {
        b->x[2 * i] = (float)i; /* the image remembers its original index */
        b->x[2 * i + 1] = -(float)i;
        b->y[i] = i % 10;
    }
}

static void test_a_seeded_subset_is_the_same_for_the_same_seed(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    icn_batch a, b, c;
    indexed_batch(&a, 1000);
    indexed_batch(&b, 1000);
    indexed_batch(&c, 1000);
    assert_int_equal(icn_batch_select(&a, 0, 50, 42, err, sizeof err), 0);
    assert_int_equal(icn_batch_select(&b, 0, 50, 42, err, sizeof err), 0);
    assert_int_equal(icn_batch_select(&c, 0, 50, 43, err, sizeof err), 0);
    assert_int_equal(a.n, 50);
    assert_memory_equal(a.x, b.x, 100 * sizeof(float));
    assert_memory_equal(a.y, b.y, 50 * sizeof(int32_t));
    assert_true(memcmp(a.x, c.x, 100 * sizeof(float)) != 0);
    for (int i = 0; i < 50; i++) {
        assert_true(a.x[2 * i + 1] == -a.x[2 * i]); /* images moved whole */
        assert_int_equal(a.y[i], (int32_t)a.x[2 * i] % 10); /* with their labels */
        if (i) assert_true(a.x[2 * i] > a.x[2 * (i - 1)]); /* original order kept */
    }
    icn_batch_free(&a);
    icn_batch_free(&b);
    icn_batch_free(&c);
    /* A limit at or above the count keeps everything, untouched. */
    indexed_batch(&a, 10);
    assert_int_equal(icn_batch_select(&a, 0, 10, 1, err, sizeof err), 0);
    assert_int_equal(a.n, 10);
    assert_int_equal(icn_batch_select(&a, 0, 99, 1, err, sizeof err), 0);
    assert_int_equal(a.n, 10);
    assert_int_equal(icn_batch_select(&a, 0, -1, 1, err, sizeof err), -1);
    icn_batch_free(&a);
}

static void test_a_class_filter_keeps_only_its_labels(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    icn_batch a;
    indexed_batch(&a, 100);
    a.y[3] = -(3 + 1); /* a pseudo-negative of class 3: never matches a class filter */
    uint32_t mask = 1u << 0 | 1u << 3 | 1u << 7;
    assert_int_equal(icn_batch_select(&a, mask, 0, 0, err, sizeof err), 0);
    assert_int_equal(a.n, 29); /* 10 + 10 + 10, less the pseudo-negative */
    for (int i = 0; i < a.n; i++) {
        assert_true(a.y[i] == 0 || a.y[i] == 3 || a.y[i] == 7);
        if (i) assert_true(a.x[2 * i] > a.x[2 * (i - 1)]);
    }
    /* Class filter, then the subset. */
    assert_int_equal(icn_batch_select(&a, 1u << 7, 4, 9, err, sizeof err), 0);
    assert_int_equal(a.n, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(a.y[i], 7);
    /* Nothing matches: an empty batch, not an error. */
    assert_int_equal(icn_batch_select(&a, 1u << 31, 0, 0, err, sizeof err), 0);
    assert_int_equal(a.n, 0);
    icn_batch_free(&a);
    /* A class filter needs labels. */
    icn_batch_alloc(&a, 3, 1, 1, 1, 0);
    assert_int_equal(icn_batch_select(&a, 1, 0, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "labels"));
    icn_batch_free(&a);
}

/* ------------------------------------------------------------ where data lives */

static void test_the_data_directory_follows_icn_data_then_xdg_then_home(void **state) {
    (void)state;
    char *d;
    setenv("ICN_DATA", "/x/data", 1);
    setenv("XDG_CACHE_HOME", "/x/cache", 1);
    setenv("HOME", "/x/home", 1);
    d = icn_data_dir();
    assert_string_equal(d, "/x/data");
    free(d);
    setenv("ICN_DATA", "", 1); /* empty counts as unset */
    d = icn_data_dir();
    assert_string_equal(d, "/x/cache/icn");
    free(d);
    unsetenv("ICN_DATA");
    unsetenv("XDG_CACHE_HOME");
    d = icn_data_dir();
    assert_string_equal(d, "/x/home/.cache/icn");
    free(d);
}

static void test_a_data_set_s_files_are_found_or_named_when_missing(void **state) {
    (void)state;
    char err[ICN_ERRLEN] = "";
    char *im, *lb;
    setenv("ICN_DATA", tmpdir, 1);
    assert_int_equal(icn_dataset_files("mnist", ICN_SPLIT_TRAIN, &im, &lb, err, sizeof err), -1);
    assert_non_null(strstr(err, "run: icn-load --fetch mnist"));
    assert_null(im);
    const char *dir = path_of("mnist");
    assert_int_equal(mkdir(dir, 0755), 0);
    remember(dir);
    write_images("mnist/train-images-idx3-ubyte.gz", 0x803, N_IMG, ROWS, COLS, N_IMG, 0, 0, 1);
    write_labels("mnist/train-labels-idx1-ubyte", 0x801, N_IMG, N_IMG, 0, 0);
    if (icn_dataset_files("mnist", ICN_SPLIT_VAL, &im, &lb, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(im, path_of("mnist/train-images-idx3-ubyte.gz"));
    assert_string_equal(lb, path_of("mnist/train-labels-idx1-ubyte"));
    icn_batch b;
    assert_int_equal(icn_idx_load(im, lb, &b, err, sizeof err), 0);
    check_loaded(&b);
    icn_batch_free(&b);
    free(im);
    free(lb);
    /* The test split reads the t10k files, which are not there. */
    assert_int_equal(icn_dataset_files("mnist", ICN_SPLIT_TEST, &im, &lb, err, sizeof err), -1);
    assert_non_null(strstr(err, "t10k-images-idx3-ubyte"));
    assert_int_equal(icn_dataset_files("fashion", ICN_SPLIT_ALL, &im, &lb, err, sizeof err), -1);
    assert_non_null(strstr(err, "fashion-mnist"));
    assert_non_null(strstr(err, "--fetch fashion"));
    assert_int_equal(icn_dataset_files("cifar", ICN_SPLIT_ALL, &im, &lb, err, sizeof err), -1);
    unsetenv("ICN_DATA");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_idx_file_loads_the_same_plain_and_gzipped),
        cmocka_unit_test(test_a_truncated_idx_file_is_refused),
        cmocka_unit_test(test_an_idx_header_that_lies_is_refused),
        cmocka_unit_test(test_bytes_after_an_idx_file_s_items_are_refused),
        cmocka_unit_test(test_every_split_name_parses_and_others_are_refused),
        cmocka_unit_test(test_the_splits_are_the_paper_s_ranges),
        cmocka_unit_test(test_a_split_applied_to_a_file_keeps_its_range),
        cmocka_unit_test(test_a_seeded_subset_is_the_same_for_the_same_seed),
        cmocka_unit_test(test_a_class_filter_keeps_only_its_labels),
        cmocka_unit_test(test_the_data_directory_follows_icn_data_then_xdg_then_home),
        cmocka_unit_test(test_a_data_set_s_files_are_found_or_named_when_missing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
