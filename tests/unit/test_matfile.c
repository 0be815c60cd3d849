/* test_matfile.c: the level-5 MAT-file reader on files written here (matwrite.h): plain and
 * compressed elements, both byte orders, the small-element form, every numeric data type, and
 * each way a file can lie about its sizes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixtures.h"
#include "matfile.h"
#include "matwrite.h"
#include "util.h"

static const mat_opts PLAIN = {0}, ZIP = {.compress = 1};

static const char *save(mat_buf *b, const char *name, size_t len) {
    const char *path = tmp_path(name);
    assert_int_equal(mb_write(b, path, len), 0);
    free(b->p);
    b->p = NULL;
    return path;
}

/* Open path and walk all its variables; returns the first error (or 0), err filled. */
static int walk(const char *path, char *err) {
    err[0] = 0;
    icn_mat *m = icn_mat_open(path, err, ICN_ERRLEN);
    if (!m) return -1;
    icn_mat_var v;
    int rc;
    while ((rc = icn_mat_next(m, &v, err, ICN_ERRLEN)) == 1) {
        if (v.mx_class < ICN_MX_DOUBLE || v.mx_class > ICN_MX_UINT64) continue;
        double *d = malloc((v.numel ? v.numel : 1) * sizeof(double));
        rc = icn_mat_read_f64(m, d, v.numel, err, ICN_ERRLEN);
        free(d);
        if (rc) break;
    }
    icn_mat_close(m);
    return rc;
}

/* A walk must fail with one line that names the file and contains `want`. */
static void expect_error(const char *path, const char *want) {
    char err[ICN_ERRLEN];
    assert_int_equal(walk(path, err), -1);
    if (!strstr(err, want) || !strstr(err, path) || strchr(err, '\n'))
        fail_msg("error '%s' lacks '%s' or the path", err, want);
}

/* ------------------------------------------------------------ reading */

static void write_mixed(mat_buf *b, int big, mat_opts o) {
    mat_header(b, big);
    int32_t d23[2] = {2, 3}, d1[2] = {1, 1}, d5[3] = {5, 1, 1};
    double dv[6] = {1.5, -2, 1e300, 0, 7, -0.25};
    int16_t iv[5] = {-32768, 32767, 0, 1, -1};
    float sv[1] = {3.25f};
    uint8_t cv[4] = {'a', 0, 'b', 0};
    mat_var(b, "doubles", ICN_MX_DOUBLE, d23, 2, ICN_MI_DOUBLE, 8, dv, 6, o);
    mat_var(b, "shorts", ICN_MX_INT16, d5, 3, ICN_MI_INT16, 2, iv, 5, o);
    mat_var(b, "s", ICN_MX_SINGLE, d1, 2, ICN_MI_SINGLE, 4, sv, 1, o); /* small form: 4 bytes */
    int32_t dc[2] = {1, 2};
    mat_var(b, "text", 4 /* mxCHAR */, dc, 2, ICN_MI_UINT16, 2, cv, 2, o); /* skipped: not numeric */
    uint8_t u[3] = {0, 200, 255};
    int32_t d3[2] = {3, 1};
    mat_var(b, "a_rather_long_variable_name", ICN_MX_DOUBLE, d3, 2, ICN_MI_UINT8, 1, u, 3, o); /* double as miUINT8 */
}

static void test_every_kind_of_variable_reads_in_both_byte_orders_plain_and_compressed(void **state) {
    (void)state;
    char err[ICN_ERRLEN] = "";
    for (int big = 0; big < 2; big++)
        for (int z = 0; z < 2; z++) {
            mat_buf b;
            write_mixed(&b, big, z ? ZIP : PLAIN);
            char name[64];
            snprintf(name, sizeof name, "mixed-%d-%d.mat", big, z);
            const char *path = save(&b, name, SIZE_MAX);
            icn_mat *m = icn_mat_open(path, err, sizeof err);
            if (!m) fail_msg("%s", err);
            icn_mat_var v;
            double d[8];
            assert_int_equal(icn_mat_next(m, &v, err, sizeof err), 1);
            assert_string_equal(v.name, "doubles");
            assert_int_equal(v.mx_class, ICN_MX_DOUBLE);
            assert_int_equal(v.ndims, 2);
            assert_int_equal(v.dims[0], 2);
            assert_int_equal(v.dims[1], 3);
            assert_int_equal(v.numel, 6);
            assert_int_equal(v.type, ICN_MI_DOUBLE);
            assert_int_equal(icn_mat_read_f64(m, d, 2, err, sizeof err), 0); /* in pieces */
            assert_int_equal(icn_mat_read_f64(m, d + 2, 4, err, sizeof err), 0);
            assert_true(d[0] == 1.5 && d[1] == -2 && d[2] == 1e300 && d[3] == 0 && d[4] == 7 && d[5] == -0.25);
            assert_int_equal(icn_mat_read_f64(m, d, 1, err, sizeof err), -1); /* no more */
            assert_non_null(strstr(err, "'doubles' has 0 elements left"));
            assert_int_equal(icn_mat_next(m, &v, err, sizeof err), 1);
            assert_string_equal(v.name, "shorts");
            assert_int_equal(v.ndims, 3);
            assert_int_equal(v.mx_class, ICN_MX_INT16);
            assert_int_equal(icn_mat_read_f64(m, d, 5, err, sizeof err), 0);
            assert_true(d[0] == -32768 && d[1] == 32767 && d[2] == 0 && d[3] == 1 && d[4] == -1);
            assert_int_equal(icn_mat_next(m, &v, err, sizeof err), 1);
            assert_string_equal(v.name, "s");
            assert_int_equal(icn_mat_read_f64(m, d, 1, err, sizeof err), 0);
            assert_true(d[0] == 3.25);
            uint8_t raw[4];
            assert_int_equal(icn_mat_next(m, &v, err, sizeof err), 1);
            assert_string_equal(v.name, "text");
            assert_int_equal(v.mx_class, 4);
            assert_int_equal(icn_mat_read_f64(m, d, 1, err, sizeof err), -1); /* not numeric: nothing to read */
            /* the skipped variable's data is passed over, the next one is whole */
            assert_int_equal(icn_mat_next(m, &v, err, sizeof err), 1);
            assert_string_equal(v.name, "a_rather_long_variable_name");
            assert_int_equal(v.mx_class, ICN_MX_DOUBLE);
            assert_int_equal(v.type, ICN_MI_UINT8);
            assert_int_equal(icn_mat_read_u8(m, raw, 3, err, sizeof err), 0);
            assert_int_equal(raw[0], 0);
            assert_int_equal(raw[1], 200);
            assert_int_equal(raw[2], 255);
            assert_int_equal(icn_mat_next(m, &v, err, sizeof err), 0);
            icn_mat_close(m);
        }
}

static void test_unread_variables_are_skipped(void **state) {
    (void)state;
    char err[ICN_ERRLEN] = "";
    for (int z = 0; z < 2; z++) {
        mat_buf b;
        write_mixed(&b, 0, z ? ZIP : PLAIN);
        const char *path = save(&b, "skip.mat", SIZE_MAX);
        icn_mat *m = icn_mat_open(path, err, sizeof err);
        assert_non_null(m);
        icn_mat_var v;
        int n = 0, rc;
        while ((rc = icn_mat_next(m, &v, err, sizeof err)) == 1) n++;
        assert_int_equal(rc, 0);
        assert_int_equal(n, 5);
        icn_mat_close(m);
    }
    /* read_u8 of a double stored as double is refused */
    mat_buf b;
    write_mixed(&b, 0, PLAIN);
    const char *path = save(&b, "u8.mat", SIZE_MAX);
    icn_mat *m = icn_mat_open(path, err, sizeof err);
    icn_mat_var v;
    uint8_t raw[6];
    assert_int_equal(icn_mat_next(m, &v, err, sizeof err), 1);
    assert_int_equal(icn_mat_read_u8(m, raw, 6, err, sizeof err), -1);
    assert_non_null(strstr(err, "not miUINT8"));
    icn_mat_close(m);
}

/* ------------------------------------------------------------ bad headers */

static void test_a_mat_file_with_a_bad_header_is_refused(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    mat_buf b;
    write_mixed(&b, 0, PLAIN);
    size_t n = b.n;
    uint8_t *copy = malloc(n);
    memcpy(copy, b.p, n);
    free(b.p);
    mat_buf w = {.p = copy, .n = n, .cap = n};
    assert_int_equal(mb_write(&w, tmp_path("short.mat"), 100), 0);
    expect_error(tmp_path("short.mat"), "truncated: 100 bytes, less than a MAT-file's 128-byte header");
    copy[126] = 'X';
    assert_int_equal(mb_write(&w, tmp_path("endian.mat"), SIZE_MAX), 0);
    expect_error(tmp_path("endian.mat"), "endianness indicator is 0x584d");
    copy[126] = 'I';
    copy[125] = 0x02; /* version 0x0200: MATLAB 7.3 */
    assert_int_equal(mb_write(&w, tmp_path("v73.mat"), SIZE_MAX), 0);
    expect_error(tmp_path("v73.mat"), "MATLAB 7.3 (HDF5)");
    copy[125] = 0x01;
    copy[124] = 0x01; /* 0x0101 */
    assert_int_equal(mb_write(&w, tmp_path("version.mat"), SIZE_MAX), 0);
    expect_error(tmp_path("version.mat"), "version 0x0101, expected 0x0100");
    copy[124] = 0x00;
    memcpy(copy, "MATLAB 4.0", 10);
    assert_int_equal(mb_write(&w, tmp_path("text.mat"), SIZE_MAX), 0);
    expect_error(tmp_path("text.mat"), "not a level-5 MAT-file");
    memcpy(copy, "MATLAB 5.0", 10);
    assert_int_equal(mb_write(&w, tmp_path("fine.mat"), SIZE_MAX), 0);
    assert_int_equal(walk(tmp_path("fine.mat"), err), 0);
    free(copy);
    assert_null(icn_mat_open(tmp_path("absent.mat"), err, sizeof err));
    assert_non_null(strstr(err, "No such file"));
}

/* ------------------------------------------------------------ lying sizes */

static void test_truncated_or_lying_tags_are_refused(void **state) {
    (void)state;
    int32_t d[2] = {10, 1};
    double v[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    for (int z = 0; z < 2; z++) {
        mat_opts o = {.compress = z};
        mat_buf b;
        mat_header(&b, 0);
        mat_var(&b, "y", ICN_MX_DOUBLE, d, 2, ICN_MI_DOUBLE, 8, v, 10, o);
        size_t full = b.n;
        uint8_t *keep = malloc(full);
        memcpy(keep, b.p, full);
        save(&b, "cut.mat", full - 9); /* the element's last bytes missing */
        expect_error(tmp_path("cut.mat"), "declares");
        expect_error(tmp_path("cut.mat"), "but only");
        mat_buf k = {.p = keep, .n = full, .cap = full};
        assert_int_equal(mb_write(&k, tmp_path("tail.mat"), 128 + 5), 0); /* 5 bytes: not even a tag */
        expect_error(tmp_path("tail.mat"), "too few for a tag");
        /* a top-level tag that claims a gigabyte */
        keep[132] = 0; keep[133] = 0; keep[134] = 0; keep[135] = 0x40;
        assert_int_equal(mb_write(&k, tmp_path("huge.mat"), SIZE_MAX), 0);
        expect_error(tmp_path("huge.mat"), "declares 1073741824 bytes but only");
        free(keep);
    }
    /* the miMATRIX declares fewer bytes than its parts need (plain: checked against the element) */
    mat_buf b;
    mat_header(&b, 0);
    mat_var(&b, "y", ICN_MX_DOUBLE, d, 2, ICN_MI_DOUBLE, 8, v, 10, (mat_opts){.declare_delta = -16});
    save(&b, "inner.mat", SIZE_MAX);
    expect_error(tmp_path("inner.mat"), "real part of 'y' declares 80 bytes but the miMATRIX element at offset 128 has "
                                        "only 64 left");
    /* a real part whose size disagrees with the dimensions */
    for (int z = 0; z < 2; z++) {
        mat_header(&b, 0);
        mat_var(&b, "y", ICN_MX_DOUBLE, d, 2, ICN_MI_DOUBLE, 8, v, 10, (mat_opts){.compress = z, .data_delta = -8});
        save(&b, "dims.mat", SIZE_MAX);
        expect_error(tmp_path("dims.mat"), "'y' is 10 elements by its dimensions but its real part holds 72 bytes");
    }
    /* a top-level element of another type */
    mat_header(&b, 0);
    mb_tag(&b, ICN_MI_DOUBLE, 8);
    double one = 1;
    mb_put(&b, &one, 8);
    save(&b, "type.mat", SIZE_MAX);
    expect_error(tmp_path("type.mat"), "data type 9, expected miMATRIX (14) or miCOMPRESSED (15)");
}

static void test_a_compressed_element_that_lies_about_its_size_is_refused(void **state) {
    (void)state;
    int32_t d[2] = {300, 1};
    double v[300];
    for (int i = 0; i < 300; i++) v[i] = i % 10 + 1;
    mat_buf b;
    /* the inflated element declares more than the stream holds */
    mat_header(&b, 0);
    mat_var(&b, "y", ICN_MX_DOUBLE, d, 2, ICN_MI_DOUBLE, 8, v, 300, (mat_opts){.compress = 1, .declare_delta = 8});
    save(&b, "more.mat", SIZE_MAX);
    expect_error(tmp_path("more.mat"), "inflates to 2456 bytes, but declares 2464");
    /* ... or fewer */
    mat_header(&b, 0);
    mat_var(&b, "y", ICN_MX_DOUBLE, d, 2, ICN_MI_DOUBLE, 8, v, 300, (mat_opts){.compress = 1, .extra_bytes = 8});
    save(&b, "fewer.mat", SIZE_MAX);
    expect_error(tmp_path("fewer.mat"), "inflates to more than the 2456 bytes it declares");
    /* bytes after the end of the zlib stream */
    mat_header(&b, 0);
    mat_var(&b, "y", ICN_MX_DOUBLE, d, 2, ICN_MI_DOUBLE, 8, v, 300, (mat_opts){.compress = 1, .trailing_zlib = 3});
    save(&b, "after.mat", SIZE_MAX);
    expect_error(tmp_path("after.mat"), "3 bytes after the end of its zlib stream");
    /* a corrupt stream */
    mat_header(&b, 0);
    mat_var(&b, "y", ICN_MX_DOUBLE, d, 2, ICN_MI_DOUBLE, 8, v, 300, ZIP);
    b.p[136 + 20] ^= 0xff;
    b.p[136 + 21] ^= 0x55;
    save(&b, "corrupt.mat", SIZE_MAX);
    expect_error(tmp_path("corrupt.mat"), "compressed element at offset 128");
    /* a stream cut short whose element says so (byte count lowered to match the file) */
    mat_header(&b, 0);
    mat_var(&b, "y", ICN_MX_DOUBLE, d, 2, ICN_MI_DOUBLE, 8, v, 300, ZIP);
    uint32_t clen;
    memcpy(&clen, b.p + 132, 4);
    clen -= 10;
    memcpy(b.p + 132, &clen, 4);
    save(&b, "short.mat", b.n - 10);
    expect_error(tmp_path("short.mat"), "zlib stream cut short after");
    /* a claim no zlib stream of that size can back: refused before anything is read */
    mat_header(&b, 0);
    mat_buf e = {0};
    mb_tag(&e, ICN_MI_MATRIX, 0xfffffff0u);
    uLongf zl = compressBound(8);
    uint8_t z[64];
    assert_int_equal(compress2(z, &zl, e.p, 8, 6), Z_OK);
    free(e.p);
    mb_tag(&b, ICN_MI_COMPRESSED, (uint32_t)zl);
    mb_put(&b, z, zl);
    save(&b, "bomb.mat", SIZE_MAX);
    expect_error(tmp_path("bomb.mat"), "declares 4294967280 inflated bytes, more than");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_of_variable_reads_in_both_byte_orders_plain_and_compressed),
        cmocka_unit_test(test_unread_variables_are_skipped),
        cmocka_unit_test(test_a_mat_file_with_a_bad_header_is_refused),
        cmocka_unit_test(test_truncated_or_lying_tags_are_refused),
        cmocka_unit_test(test_a_compressed_element_that_lies_about_its_size_is_refused),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
