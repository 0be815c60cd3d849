/* compare.h: are two classifiers' test errors really different? McNemar's exact test on
 * the images where exactly one of the two is wrong, for one pair of models or pooled over
 * several pairs (one per seed) on the same test set. */
#ifndef ICN_COMPARE_H
#define ICN_COMPARE_H
#include <stdint.h>

typedef struct {
    int64_t n;            /* test images (summed over pairs when pooled) */
    int64_t wrong_a;      /* images A gets wrong */
    int64_t wrong_b;      /* images B gets wrong */
    int64_t only_a_wrong; /* A wrong, B right */
    int64_t only_b_wrong; /* B wrong, A right */
    int64_t both_wrong;
    int64_t disagree;     /* images where A and B predict different classes */
    double p_value;       /* two-sided exact McNemar p of the two discordant counts */
} icn_paired_result;

/* Two-sided exact McNemar p-value: under "A and B are equally good", each of the
 * only_a + only_b discordant images is A's mistake with probability 1/2. */
double icn_mcnemar_exact(int64_t only_a, int64_t only_b);

/* Tally one pair of prediction vectors against the labels into r (which it adds to, so
 * several pairs pool) and recompute r->p_value from the totals. */
void icn_paired_add(icn_paired_result *r, const int32_t *truth, const int32_t *pred_a, const int32_t *pred_b,
                    int64_t n);

#endif
