/* test_npy.c: the .npy header parser against well-formed and hostile headers, and what
 * icn_npy_encode writes parsing back to what it was given. Everything in memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"
#include "util.h"

/* A file of `version` with header text `dict` (a '\n' is appended) followed by data_len bytes;
 * returns its length. */
static size_t make(uint8_t *buf, int version, const char *dict, size_t data_len) {
    size_t pre = version == 1 ? 10 : 12, hl = strlen(dict) + 1;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (uint8_t)version;
    buf[7] = 0;
    buf[8] = (uint8_t)hl;
    buf[9] = (uint8_t)(hl >> 8);
    if (version > 1) buf[10] = buf[11] = 0;
    memcpy(buf + pre, dict, hl - 1);
    buf[pre + hl - 1] = '\n';
    memset(buf + pre + hl, 0, data_len);
    return pre + hl + data_len;
}

static uint8_t file[4096];

static int parse(size_t len, icn_npy_header *h, char *err) {
    return icn_npy_parse_header(file, len, len, h, err, ICN_ERRLEN);
}

static void test_every_header_numpy_writes_is_read(void **state) {
    (void)state;
    icn_npy_header h;
    char err[ICN_ERRLEN];
    size_t len = make(file, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2), }", 12);
    assert_int_equal(parse(len, &h, err), 0);
    assert_int_equal(h.dtype, ICN_NPY_U8);
    assert_int_equal(h.ndim, 3);
    assert_int_equal(h.shape[0], 3);
    assert_int_equal(h.count, 12);
    assert_int_equal(h.fortran_order, 0);
    assert_int_equal(h.data_offset, len - 12);
    /* version 2 and 3, double quotes, other key order, no trailing comma, a 1-tuple */
    len = make(file, 2, "{\"shape\": (5,), \"fortran_order\": True, \"descr\": \"<i8\"}", 40);
    assert_int_equal(parse(len, &h, err), 0);
    assert_int_equal(h.dtype, ICN_NPY_I64);
    assert_int_equal(h.ndim, 1);
    assert_int_equal(h.fortran_order, 1);
    len = make(file, 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}   ", 24);
    assert_int_equal(parse(len, &h, err), 0);
    assert_int_equal(h.dtype, ICN_NPY_F32);
    assert_int_equal(h.major, 3);
    /* a scalar and an empty array */
    len = make(file, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': ()}", 4);
    assert_int_equal(parse(len, &h, err), 0);
    assert_int_equal(h.ndim, 0);
    assert_int_equal(h.count, 1);
    len = make(file, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (0,)}", 0);
    assert_int_equal(parse(len, &h, err), 0);
    assert_int_equal(h.count, 0);
}

/* Each hostile header is refused with a message containing `want`. */
static void refused(size_t len, const char *want) {
    icn_npy_header h;
    char err[ICN_ERRLEN] = "";
    assert_int_equal(parse(len, &h, err), -1);
    if (!strstr(err, want)) fail_msg("error '%s' does not say '%s'", err, want);
}

static void test_a_bad_npy_header_is_refused_naming_the_problem(void **state) {
    (void)state;
    const char *ok = "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }";
    size_t len = make(file, 1, ok, 4);
    file[1] = 'n';
    refused(len, "wrong magic");
    refused(5, "wrong magic");
    len = make(file, 1, ok, 4);
    refused(9, "truncated");
    file[6] = 4;
    refused(len, "version 4.0");
    file[6] = 1, file[7] = 1;
    refused(len, "version 1.1");
    file[7] = 0;
    /* the header length runs past the end of the file */
    refused(len - 50, "header declares");
    file[8] = 0xff, file[9] = 0xff;
    refused(len, "header declares");
    /* shape against the bytes present: short and long */
    refused(make(file, 1, ok, 3), "needs 4 data bytes but the file has 3");
    refused(make(file, 1, ok, 5), "trailing bytes");
    refused(make(file, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000, 1000000000)}", 4),
            "overflows");
    refused(make(file, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4,)}", 32), "unsupported dtype '<f8'");
    refused(make(file, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4,)}", 16), "unsupported dtype '>f4'");
    refused(make(file, 1, "{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (4,)}", 16), "structured");
    refused(make(file, 1, "{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (4,)}", 4),
            "duplicate key 'descr'");
    refused(make(file, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), 'x': 1}", 4), "unexpected key 'x'");
    refused(make(file, 1, "{'descr': '|u1', 'shape': (4,)}", 4), "missing key 'fortran_order'");
    refused(make(file, 1, "{'descr': '|u1', 'fortran_order': 0, 'shape': (4,)}", 4), "True or False");
    refused(make(file, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4)}", 4), "not a tuple");
    refused(make(file, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (-4,)}", 4), "non-negative");
    refused(make(file, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': [4]}", 4), "expected '('");
    refused(make(file, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4,)} x", 4), "after the dict");
    refused(make(file, 1, "{'descr': '|u\\1', 'fortran_order': False, 'shape': (4,)}", 4), "escapes");
    refused(make(file, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", 1), "dimensions");
    len = make(file, 1, ok, 4);
    file[len - 5] = ' '; /* the newline that ends the header */
    refused(len, "newline");
    len = make(file, 1, ok, 4);
    file[15] = 0x01;
    refused(len, "printable");
}

static void test_an_encoded_array_reads_back_the_same(void **state) {
    (void)state;
    float data[6] = {-1, -0.5f, 0, 0.25f, 0.5f, 1};
    uint8_t *bytes;
    size_t len;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_npy_encode("'<f4'", "(2, 3)", data, sizeof data, &bytes, &len, err, sizeof err), 0);
    icn_npy_header h;
    assert_int_equal(icn_npy_parse_header(bytes, len, len, &h, err, sizeof err), 0);
    assert_int_equal(h.data_offset % 64, 0); /* numpy's alignment */
    assert_int_equal(h.ndim, 2);
    assert_int_equal(h.shape[1], 3);
    assert_memory_equal(bytes + h.data_offset, data, sizeof data);
    free(bytes);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_header_numpy_writes_is_read),
        cmocka_unit_test(test_a_bad_npy_header_is_refused_naming_the_problem),
        cmocka_unit_test(test_an_encoded_array_reads_back_the_same),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
