#include "compare.h"

#include <math.h>

double icn_mcnemar_exact(int64_t only_a, int64_t only_b) {
    int64_t n = only_a + only_b, k = only_a < only_b ? only_a : only_b;
    if (n == 0) return 1.0;
    /* 2 * P(X <= k), X ~ Binomial(n, 1/2), summed in log space so n in the thousands is fine */
    double log_half_n = (double)n * log(0.5), tail = 0;
    for (int64_t i = 0; i <= k; i++)
        tail += exp(lgamma((double)n + 1) - lgamma((double)i + 1) - lgamma((double)(n - i) + 1) + log_half_n);
    double p = 2 * tail;
    return p > 1 ? 1 : p;
}

void icn_paired_add(icn_paired_result *r, const int32_t *truth, const int32_t *pred_a, const int32_t *pred_b,
                    int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        int a_wrong = pred_a[i] != truth[i], b_wrong = pred_b[i] != truth[i];
        r->wrong_a += a_wrong;
        r->wrong_b += b_wrong;
        r->only_a_wrong += a_wrong && !b_wrong;
        r->only_b_wrong += b_wrong && !a_wrong;
        r->both_wrong += a_wrong && b_wrong;
        r->disagree += pred_a[i] != pred_b[i];
    }
    r->n += n;
    r->p_value = icn_mcnemar_exact(r->only_a_wrong, r->only_b_wrong);
}
