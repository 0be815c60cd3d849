/* test_util.c: the programs' shared helpers in lib/util.c: the one --classes grammar, the
 * subcommand dispatch table, the one usage-error style and xstrdup. A helper that exits (a
 * usage error is exit 2) runs in a child process (child.h), its message read back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#include "child.h"

/* ------------------------------------------------------------ in a child, stderr captured */

static const char *g_arg;       /* what the child's case works on */
static char g_said[512];        /* what it wrote on stderr */

/* Run fn in a child with its stderr in a file; returns in_child's code (100 + n: exited n). */
static int exits_with(int (*fn)(char *, size_t)) {
    char path[] = "/tmp/icn-test-util-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(2);
    fflush(stderr);
    assert_int_equal(dup2(fd, 2), 2);
    char err[ICN_ERRLEN];
    long peak;
    int rc = in_child(fn, 0, err, sizeof err, &peak);
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    ssize_t k = pread(fd, g_said, sizeof g_said - 1, 0);
    g_said[k > 0 ? k : 0] = 0;
    close(fd);
    unlink(path);
    return rc;
}

static uint32_t g_mask;
static int parse_classes_case(char *err, size_t errlen) {
    (void)err, (void)errlen;
    g_mask = icn_parse_classes("--classes", g_arg);
    return 0;
}

static void test_a_class_list_is_labels_0_to_31_separated_by_single_commas(void **state) {
    (void)state;
    icn_progname = "prog";
    assert_int_equal(icn_parse_classes("--classes", "0"), 1u);
    assert_int_equal(icn_parse_classes("--classes", "3,7"), 1u << 3 | 1u << 7);
    assert_int_equal(icn_parse_classes("--classes", "31,0,7,7"), 1u << 31 | 1u | 1u << 7);
    assert_int_equal(icn_parse_classes("--classes", "07"), 1u << 7);
    static const char *bad[] = {"", ",", "3,", ",3", "3,,7", " 3", "3 ", "+3", "-1", "32", "100", "3;7", "x",
                                "3,x", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        g_arg = bad[i];
        int rc = exits_with(parse_classes_case);
        if (rc != 102) fail_msg("'%s': %d (102: exit 2)", bad[i], rc);
        char want[128];
        snprintf(want, sizeof want, "prog: --classes: '%s' is not a list of labels 0..31\n", bad[i]);
        assert_string_equal(g_said, want);
    }
}

/* ------------------------------------------------------------ dispatch */

static int g_ran_argc;
static char g_ran_argv0[32];
static int run_a(int argc, char **argv) {
    g_ran_argc = argc;
    snprintf(g_ran_argv0, sizeof g_ran_argv0, "%s", argv[0]);
    return 7;
}
static int run_b(int argc, char **argv) { return run_a(argc, argv) + 1; }
static const icn_command cmds[] = {{"alpha", run_a}, {"beta", run_b}, {"gamma", run_b}};

static int dispatch_case(char *err, size_t errlen) {
    (void)err, (void)errlen;
    char *argv[] = {"prog", (char *)g_arg, "--x", NULL};
    return icn_dispatch(g_arg ? 3 : 1, argv, cmds, 3, "usage: prog COMMAND\n") == 0 ? 0 : -1;
}

static void test_a_dispatch_table_runs_the_named_command_and_refuses_others_listing_the_table(void **state) {
    (void)state;
    icn_progname = "prog";
    char *argv[] = {"prog", "beta", "--x", NULL};
    assert_int_equal(icn_dispatch(3, argv, cmds, 3, "usage\n"), 8);
    assert_int_equal(g_ran_argc, 2);
    assert_string_equal(g_ran_argv0, "beta"); /* the command's argv[0] is its own name */
    g_arg = "delta";
    assert_int_equal(exits_with(dispatch_case), 102);
    assert_string_equal(g_said, "prog: unknown command 'delta' (alpha, beta or gamma; see --help)\n");
    g_arg = NULL; /* no command: the usage on stderr, exit 2 */
    assert_int_equal(exits_with(dispatch_case), 102);
    assert_string_equal(g_said, "usage: prog COMMAND\n");
    g_arg = "--help"; /* on stdout, exit 0 */
    assert_int_equal(exits_with(dispatch_case), 0);
    assert_string_equal(g_said, "");
}

static int usage_error_case(char *err, size_t errlen) {
    (void)err, (void)errlen;
    icn_usage_error(g_arg, "--store FILE is required");
}

static void test_a_usage_error_is_one_line_naming_the_command_and_exits_2(void **state) {
    (void)state;
    icn_progname = "prog";
    g_arg = "serve";
    assert_int_equal(exits_with(usage_error_case), 102);
    assert_string_equal(g_said, "prog: serve: --store FILE is required (see --help)\n");
    g_arg = NULL;
    assert_int_equal(exits_with(usage_error_case), 102);
    assert_string_equal(g_said, "prog: --store FILE is required (see --help)\n");
}

static void test_xstrdup_copies_the_string(void **state) {
    (void)state;
    const char *s = "a string";
    char *d = xstrdup(s);
    assert_ptr_not_equal(d, s);
    assert_string_equal(d, s);
    free(d);
    d = xstrdup("");
    assert_string_equal(d, "");
    free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_class_list_is_labels_0_to_31_separated_by_single_commas),
        cmocka_unit_test(test_a_dispatch_table_runs_the_named_command_and_refuses_others_listing_the_table),
        cmocka_unit_test(test_a_usage_error_is_one_line_naming_the_command_and_exits_2),
        cmocka_unit_test(test_xstrdup_copies_the_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
