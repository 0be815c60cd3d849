#include "losses.h"

#include <math.h>
#include <string.h>

int icn_head_parse(const char *s, icn_head *out) {
    if (!strcmp(s, "softmax")) *out = ICN_HEAD_SOFTMAX;
    else if (!strcmp(s, "ova")) *out = ICN_HEAD_OVA;
    else return -1;
    return 0;
}

const char *icn_head_name(icn_head h) { return h == ICN_HEAD_OVA ? "ova" : "softmax"; }

double icn_softplus(double z) { return (z > 0 ? z : 0) + log1p(exp(-fabs(z))); }
double icn_sigmoid(double z) { return z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z)); }

int icn_argmax(const float *logits, int classes) {
    int best = 0;
    for (int k = 1; k < classes; k++)
        if (logits[k] > logits[best]) best = k;
    return best;
}

static int pseudo_negative_class(int32_t y) { return -(y + 1); }

double icn_loss_softmax(const float *logits, const int32_t *y, const float *weight, int n, int classes,
                        double smoothing, float *dlogits) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * classes;
        float *dz = dlogits + (size_t)i * classes;
        double scale = (weight ? weight[i] : 1.0) / n;
        memset(dz, 0, (size_t)classes * sizeof(float));
        if (y[i] < 0) { /* Eq. 9, pseudo-negative term */
            int k = pseudo_negative_class(y[i]);
            total += scale * icn_softplus(z[k]);
            dz[k] = (float)(scale * icn_sigmoid(z[k]));
            continue;
        }
        double zmax = z[icn_argmax(z, classes)], sum = 0;
        for (int k = 0; k < classes; k++) sum += exp((double)z[k] - zmax);
        double log_sum = log(sum) + zmax, loss = 0;
        for (int k = 0; k < classes; k++) {
            double target = smoothing / classes + (k == y[i] ? 1.0 - smoothing : 0.0);
            double log_p = (double)z[k] - log_sum;
            loss -= target * log_p;
            dz[k] = (float)(scale * (exp(log_p) - target));
        }
        total += scale * loss;
    }
    return total;
}

double icn_loss_ova(const float *logits, const int32_t *y, const float *weight, int n, int classes, float *dlogits) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * classes;
        float *dz = dlogits + (size_t)i * classes;
        double scale = (weight ? weight[i] : 1.0) / n;
        memset(dz, 0, (size_t)classes * sizeof(float));
        if (y[i] < 0) { /* the binary classifier of class k sees a negative */
            int k = pseudo_negative_class(y[i]);
            total += scale * icn_softplus(z[k]);
            dz[k] = (float)(scale * icn_sigmoid(z[k]));
            continue;
        }
        for (int k = 0; k < classes; k++) { /* Eq. 5, one binary problem per class */
            double target = k == y[i];
            total += scale * (icn_softplus(z[k]) - target * z[k]);
            dz[k] = (float)(scale * (icn_sigmoid(z[k]) - target));
        }
    }
    return total;
}

double icn_loss(icn_head head, const float *logits, const int32_t *y, const float *weight, int n, int classes,
                double smoothing, float *dlogits) {
    return head == ICN_HEAD_OVA ? icn_loss_ova(logits, y, weight, n, classes, dlogits)
                                : icn_loss_softmax(logits, y, weight, n, classes, smoothing, dlogits);
}
