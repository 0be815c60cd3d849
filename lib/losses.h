/* losses.h: the classification heads, with pseudo-negatives.
 *
 * Labels: y >= 0 is a real sample of class y; y = -(k+1) is a pseudo-negative of class k
 * (a synthesized sample the classifier must learn is NOT class k). Both losses are the
 * weighted mean (1/n) sum_i weight_i * loss_i (weight NULL = all 1), and write dlogits, the
 * gradient of that mean. Callers put the paper's alpha into the weights of pseudo-negatives. */
#ifndef ICN_LOSSES_H
#define ICN_LOSSES_H
#include <stdint.h>

typedef enum { ICN_HEAD_SOFTMAX, ICN_HEAD_OVA } icn_head;
int icn_head_parse(const char *s, icn_head *out);
const char *icn_head_name(icn_head h);

/* Softmax cross-entropy (Eq. 9). Real sample: -sum_k t_k log softmax(z)_k with
 * t = (1 - smoothing) onehot(y) + smoothing / K (label smoothing; 0 = plain).
 * Pseudo-negative of class k: log(1 + exp(z_k)). */
double icn_loss_softmax(const float *logits, const int32_t *y, const float *weight, int n, int classes,
                        double smoothing, float *dlogits);

/* One-vs-all: K binary classifiers (Eq. 5 for each class). Real sample of class y:
 * sum_k [log(1 + exp(z_k)) - [k == y] z_k]. Pseudo-negative of class k: log(1 + exp(z_k)). */
double icn_loss_ova(const float *logits, const int32_t *y, const float *weight, int n, int classes, float *dlogits);

double icn_loss(icn_head head, const float *logits, const int32_t *y, const float *weight, int n, int classes,
                double smoothing, float *dlogits);

/* Index of the largest logit (prediction under either head). */
int icn_argmax(const float *logits, int classes);
double icn_softplus(double z);
double icn_sigmoid(double z);

#endif
