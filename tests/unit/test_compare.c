/* Unit tests of compare.h: McNemar's exact test against values from Python's exact binomial
 * sums (math.comb), and the paired tally for one pair and pooled over two. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "compare.h"

/* cmocka 1.1.5 (Debian 12) has no assert_double_equal */
#define assert_close(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

static void test_mcnemar_s_exact_test_has_its_hand_computed_values(void **state) {
    (void)state;
    /* p = min(1, 2 * sum_{i <= min(a,b)} C(a+b, i) / 2^(a+b)) */
    assert_close(icn_mcnemar_exact(0, 0), 1.0, 0);
    assert_close(icn_mcnemar_exact(0, 5), 0.0625, 1e-12);
    assert_close(icn_mcnemar_exact(1, 9), 0.021484375, 1e-12);
    assert_close(icn_mcnemar_exact(10, 14), 0.5412561893463135, 1e-10);
    assert_close(icn_mcnemar_exact(30, 26), 0.6888797607233396, 1e-10);
    assert_close(icn_mcnemar_exact(120, 80), 0.0056851559967503055, 1e-12);
    assert_close(icn_mcnemar_exact(3, 3), 1.0, 0);
    /* two-sided: the order of the two counts does not matter */
    assert_close(icn_mcnemar_exact(80, 120), icn_mcnemar_exact(120, 80), 0);
    /* thousands of discordant images neither overflow nor underflow to nonsense */
    double p = icn_mcnemar_exact(2600, 2400);
    assert_true(p > 0.004 && p < 0.006); /* normal approximation: 2 * Phi(-199.5 / sqrt(5000)) = 0.0048 */
    assert_true(icn_mcnemar_exact(0, 5000) == 0.0 || icn_mcnemar_exact(0, 5000) < 1e-300);
}

static void expect_counts(const icn_paired_result *r, int64_t n, int64_t wrong_a, int64_t wrong_b, int64_t only_a,
                          int64_t only_b, int64_t both) {
    assert_int_equal(r->n, n);
    assert_int_equal(r->wrong_a, wrong_a);
    assert_int_equal(r->wrong_b, wrong_b);
    assert_int_equal(r->only_a_wrong, only_a);
    assert_int_equal(r->only_b_wrong, only_b);
    assert_int_equal(r->both_wrong, both);
}

static void test_paired_counts_add_up_and_pool_across_seeds(void **state) {
    (void)state;
    const int32_t truth[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    const int32_t a[8] = {0, 1, 2, 0, 1, 1, 2, 3};  /* wrong on 3, 4 */
    const int32_t b[8] = {0, 2, 2, 1, 1, 1, 0, 3};  /* wrong on 1, 3, 4, 6 */
    icn_paired_result r = {0};
    icn_paired_add(&r, truth, a, b, 8);
    expect_counts(&r, 8, 2, 4, 0, 2, 2);
    assert_int_equal(r.disagree, 3); /* 3 is wrong in both but differently (0 vs 1) */
    assert_close(r.p_value, 0.5, 1e-12);
    /* pooling a second, mirrored pair adds the counts and tests the totals */
    icn_paired_add(&r, truth, b, a, 8);
    expect_counts(&r, 16, 6, 6, 2, 2, 4);
    assert_close(r.p_value, 1.0, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mcnemar_s_exact_test_has_its_hand_computed_values),
        cmocka_unit_test(test_paired_counts_add_up_and_pool_across_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
