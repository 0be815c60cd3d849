/* adversarial.h: the fast gradient sign method (Goodfellow et al.), for the paper's two-way
 * robustness experiment: examples made against model A, tested on A and on B. */
#ifndef ICN_ADVERSARIAL_H
#define ICN_ADVERSARIAL_H
#include "losses.h"
#include "net.h"
#include "batch.h"

typedef struct {
    int64_t tested;       /* test images */
    int64_t correct;      /* of those, classified correctly by the source model */
    int64_t fool_source;  /* adversarial examples (from the correct ones) that fool the source */
    int64_t fool_both;    /* of those, how many also fool the other model */
} icn_fgsm_result;

/* x' = clamp(x + eps * sign(d loss_A(x, y) / dx), lo, hi) for each image that A classifies
 * correctly, eps in the data's own scale (the [-1, 1] pixels: twice the [0, 1] eps).
 * Counts how many x' fool A, and how many of those fool B too. Labels must be real classes
 * of both models, and the two models must take the same input shape. */
int icn_fgsm(const icn_net *a, icn_head head_a, const icn_net *b, const icn_batch *data, double eps, float lo, float hi,
             icn_fgsm_result *out, char *err, size_t errlen);

#endif
