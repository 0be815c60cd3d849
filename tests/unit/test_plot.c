/* test_plot.c: the strict JSON reader (lib/json.c, on jansson) and the results behind icn-eval plot
 * (lib/plot.c): reading JSON-lines results, refusing malformed or out-of-range lines with an
 * error naming file and line, means and standard deviations over seeds, and the generated
 * gnuplot script (quoting: nothing from the input may become a gnuplot command). Running
 * gnuplot itself is tested end to end (tests/e2e/pipelines.bats). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures.h"
#include "json.h"
#include "plot.h"
#include "util.h"

static int parse(const char *text, icn_json_member **m, int *n, char *err) {
    return icn_json_parse_object(text, strlen(text), m, n, err, ICN_ERRLEN);
}

static void test_a_json_object_s_members_parse_with_their_types(void **state) {
    (void)state;
    icn_json_member *m;
    int n;
    char err[ICN_ERRLEN];
    assert_int_equal(parse(" {\"a\": -1.5e2, \"s\": \"x\\u00e9\\n\\\"\\ud83d\\ude00\", \"t\": true, \"z\": null,"
                           " \"arr\": [1, {\"k\": [false]}], \"o\": {}}\n",
                           &m, &n, err),
                     0);
    assert_int_equal(n, 6);
    assert_int_equal(m[0].type, ICN_JSON_NUMBER);
    assert_true(m[0].number == -150.0);
    assert_string_equal(m[1].string, "x\xc3\xa9\n\"\xf0\x9f\x98\x80");
    assert_int_equal(icn_json_find(m, n, "t")->type, ICN_JSON_TRUE);
    assert_int_equal(icn_json_find(m, n, "z")->type, ICN_JSON_NULL);
    assert_int_equal(icn_json_find(m, n, "arr")->type, ICN_JSON_ARRAY);
    assert_int_equal(icn_json_find(m, n, "o")->type, ICN_JSON_OBJECT);
    assert_null(icn_json_find(m, n, "missing"));
    icn_json_free(m, n);
    assert_int_equal(parse("{}", &m, &n, err), 0);
    assert_int_equal(n, 0);
    icn_json_free(m, n);
    /* members come back in input order, not sorted */
    assert_int_equal(parse("{\"z\": 1, \"b\": 2, \"m\": 3}", &m, &n, err), 0);
    assert_string_equal(m[0].key, "z");
    assert_string_equal(m[1].key, "b");
    assert_string_equal(m[2].key, "m");
    icn_json_free(m, n);
}

static void test_malformed_json_is_refused(void **state) {
    (void)state;
    static const char *bad[] = {
        "",                       "[1]",           "{\"a\":1",           "{\"a\":1} x",     "{\"a\" 1}",
        "{a:1}",                  "{\"a\":01}",    "{\"a\":1.}",          "{\"a\":.5}",      "{\"a\":1e}",
        "{\"a\":+1}",             "{\"a\":tru}",   "{\"a\":\"\\x\"}",    "{\"a\":\"\\u12\"}", "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\u0000\"}",    "{\"a\":\"\t\"}", "{\"a\":1,\"a\":2}", "{\"a\":[1,]}",   "{\"a\":1,}",
        "{\"a\":\"unterminated}", "{\"a\":[}",     "{\"a\":nan}",
        /* Python's spellings of the values that are not numbers, and numbers beyond a double */
        "{\"e\": NaN}", "{\"e\": -Infinity}", "{\"e\": 1e400}", "{\"n\": 123456789012345678901234567890}",
        /* a key given twice inside a nested object, and bytes that are not UTF-8 */
        "{\"a\":{\"k\":1,\"k\":2}}", "{\"a\":[{\"k\":1,\"k\":2}]}", "{\"a\":\"\xff\xfe\"}", "{\"a\xc3\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        icn_json_member *m = (icn_json_member *)1;
        int n = -1;
        char err[ICN_ERRLEN] = "";
        if (parse(bad[i], &m, &n, err) != -1) fail_msg("accepted: %s", bad[i]);
        assert_null(m);
        assert_int_equal(n, 0);
        assert_memory_equal(err, "column ", 7);
    }
    /* nesting is bounded (no stack overflow on hostile input): jansson stops at 2,048 levels */
    char deep[6100];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "{\"a\":");
    for (int i = 0; i < 3000; i++) deep[k++] = '[';
    for (int i = 0; i < 3000; i++) deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = 0;
    icn_json_member *m;
    int n;
    char err[ICN_ERRLEN];
    assert_int_equal(parse(deep, &m, &n, err), -1);
    assert_non_null(strstr(err, "maximum parsing depth"));
}

static const char *write_text(const char *name, const char *text) {
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_results_summarize_into_means_and_spreads_per_method_and_size(void **state) {
    (void)state;
    const char *path = write_text("r.jsonl",
                                  "{\"images\":2000,\"seed\":1,\"method\":\"icn\",\"error\":0.04,\"clip_grad\":0}\n"
                                  "{\"images\":500,\"seed\":1,\"method\":\"baseline\",\"error\":0.10}\n"
                                  "\n"
                                  "{\"images\":500,\"seed\":2,\"method\":\"baseline\",\"error\":0.12}\n"
                                  "{\"images\":2000,\"seed\":2,\"method\":\"icn\",\"error\":0.06}\r\n"
                                  "{\"images\":500,\"seed\":3,\"method\":\"baseline\",\"error\":0.14}");
    icn_results r = {0};
    char err[ICN_ERRLEN];
    assert_int_equal(icn_results_read(&r, path, err, sizeof err), 0);
    assert_int_equal(r.n, 5);
    assert_int_equal(r.runs[4].line, 6);
    icn_curve_point *p;
    size_t n;
    assert_int_equal(icn_results_summarize(&r, &p, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    /* methods in order of first appearance */
    assert_string_equal(p[0].method, "icn");
    assert_int_equal(p[0].images, 2000);
    assert_int_equal(p[0].seeds, 2);
    assert_true(fabs(p[0].mean - 0.05) < 1e-12);
    assert_true(fabs(p[0].sd - sqrt(0.0002)) < 1e-12);
    assert_string_equal(p[1].method, "baseline");
    assert_int_equal(p[1].seeds, 3);
    assert_true(fabs(p[1].mean - 0.12) < 1e-12 && fabs(p[1].sd - 0.02) < 1e-12);
    free(p);
    icn_results_free(&r);
}

/* The first error of reading `text` as results. */
static const char *read_error(const char *text) {
    static char err[ICN_ERRLEN];
    const char *path = write_text("bad.jsonl", text);
    icn_results r = {0};
    err[0] = 0;
    int rc = icn_results_read(&r, path, err, sizeof err);
    if (rc == 0) {
        icn_curve_point *p = NULL;
        size_t n;
        rc = icn_results_summarize(&r, &p, &n, err, sizeof err);
        free(p);
    }
    icn_results_free(&r);
    assert_int_equal(rc, -1);
    assert_null(strchr(err, '\n'));
    const char *base = strstr(err, "bad.jsonl:");
    assert_non_null(base);
    return base;
}

static void test_a_bad_results_line_is_refused_naming_file_and_line(void **state) {
    (void)state;
    const char *ok = "{\"images\":500,\"seed\":1,\"method\":\"icn\",\"error\":0.1}\n";
    char text[512];
    snprintf(text, sizeof text, "%s{\"images\":500,\"seed\":2,\"method\":\"icn\",\"error\":NaN}\n", ok);
    assert_string_equal(read_error(text), "bad.jsonl:2: not a JSON object: column 50: invalid token near 'NaN'");
    assert_string_equal(read_error("{\"images\":500,\"seed\":1,\"method\":\"icn\",\"error\":1e400}"),
                        "bad.jsonl:1: not a JSON object: column 52: real number overflow near '1e400'");
    assert_string_equal(read_error("{\"images\":500,\"seed\":1,\"method\":\"icn\",\"error\":1.01}"),
                        "bad.jsonl:1: error is 1.01, not a number in [0, 1]");
    assert_string_equal(read_error("{\"images\":500,\"seed\":1,\"method\":\"icn\",\"error\":null}"),
                        "bad.jsonl:1: error is null, not a number in [0, 1]");
    assert_string_equal(read_error("{\"images\":500,\"seed\":1,\"method\":\"icn\"}"), "bad.jsonl:1: no \"error\"");
    assert_string_equal(read_error("{\"images\":-5,\"seed\":1,\"method\":\"icn\",\"error\":0.1}"),
                        "bad.jsonl:1: images is -5, not a whole number from 1 to 1000000000");
    assert_string_equal(read_error("{\"images\":5,\"seed\":1.5,\"method\":\"icn\",\"error\":0.1}"),
                        "bad.jsonl:1: seed is 1.5, not a whole number from -9007199254740991 to 9007199254740991");
    assert_non_null(strstr(read_error("{\"images\":5,\"seed\":1,\"method\":\"a'b\",\"error\":0.1}"), ":1: method must be"));
    assert_non_null(strstr(read_error("{\"images\":5,\"seed\":1,\"method\":7,\"error\":0.1}"), ":1: method must be"));
    assert_string_equal(read_error("{\"images\":500,\"seed\":1,\"method\":\"icn\",\"error\":0.1"),
                        "bad.jsonl:1: not a JSON object: column 50: '}' expected near end of file");
    snprintf(text, sizeof text, "%s\n%s", ok, ok);
    const char *dup = read_error(text);
    assert_memory_equal(dup, "bad.jsonl:3: a second result for method icn, 500 images, seed 1 (the first: ", 75);
    assert_non_null(strstr(dup, "/bad.jsonl:1)"));
    /* a line too long to be a result is refused without reading it all into memory */
    size_t big = (1 << 20) + 10;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[big] = 0;
    assert_non_null(strstr(read_error(huge), ":1: line longer than"));
    free(huge);
}

static void test_the_gnuplot_script_quotes_titles_and_paths(void **state) {
    (void)state;
    icn_curve_point p[3] = {{"baseline", 500, 2, 0.1, 0.01}, {"baseline", 2000, 2, 0.05, 0.0}, {"icn", 500, 1, 0.09, 0}};
    icn_plot_opts o = {"it's `rm -rf x` @macro", 640, 480};
    char *s, err[ICN_ERRLEN];
    assert_int_equal(icn_plot_script(&s, p, 3, &o, "out'`x`.png", err, sizeof err), 0);
    assert_non_null(strstr(s, "set terminal pngcairo size 640,480"));
    assert_non_null(strstr(s, "set output 'out''`x`.png'\n"));
    assert_non_null(strstr(s, "set title 'it''s `rm -rf x` @macro'\n"));
    assert_non_null(strstr(s, "set logscale x\n"));
    assert_non_null(strstr(s, "set xtics ('500' 500, '2,000' 2000)\n"));
    assert_non_null(strstr(s, "500 10.000000 1.000000 2\n2000 5.000000 0.000000 2\nEOD\n"));
    assert_non_null(strstr(s, "title 'baseline (2 seeds)'"));
    assert_non_null(strstr(s, "title 'ICN (1 seed)'"));
    free(s);
    o.title = "two\nlines";
    assert_int_equal(icn_plot_script(&s, p, 3, &o, "out.png", err, sizeof err), -1);
    assert_string_equal(err, "--title: contains a control character");
    o.title = NULL;
    assert_int_equal(icn_plot_script(&s, p, 3, &o, "a\rb.png", err, sizeof err), -1);
    assert_string_equal(err, "--out: contains a control character");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_json_object_s_members_parse_with_their_types),
        cmocka_unit_test(test_malformed_json_is_refused),
        cmocka_unit_test(test_results_summarize_into_means_and_spreads_per_method_and_size),
        cmocka_unit_test(test_a_bad_results_line_is_refused_naming_file_and_line),
        cmocka_unit_test(test_the_gnuplot_script_quotes_titles_and_paths),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
