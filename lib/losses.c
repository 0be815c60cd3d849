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

/* A pseudo-negative of class k (label -(k+1)) under either head: log(1 + exp(z_k)), the
 * pseudo-negative term of Eq. 9 and the negative side of class k's binary problem (Eq. 5). */
static double pseudo_negative(const float *z, int32_t y, double scale, float *dz) {
    int k = -(y + 1);
    dz[k] = (float)(scale * icn_sigmoid(z[k]));
    return scale * icn_softplus(z[k]);
}

static double softmax_sample(const float *z, int32_t y, int classes, double smoothing, double scale, float *dz) {
    double zmax = z[icn_argmax(z, classes)], sum = 0;
    for (int k = 0; k < classes; k++) sum += exp((double)z[k] - zmax);
    double log_sum = log(sum) + zmax, loss = 0;
    for (int k = 0; k < classes; k++) {
        double target = smoothing / classes + (k == y ? 1.0 - smoothing : 0.0);
        double log_p = (double)z[k] - log_sum;
        loss -= target * log_p;
        dz[k] = (float)(scale * (exp(log_p) - target));
    }
    return scale * loss;
}

static double ova_sample(const float *z, int32_t y, int classes, double scale, float *dz) {
    double loss = 0;
    for (int k = 0; k < classes; k++) { /* Eq. 5, one binary problem per class */
        double target = k == y;
        loss += icn_softplus(z[k]) - target * z[k];
        dz[k] = (float)(scale * (icn_sigmoid(z[k]) - target));
    }
    return scale * loss;
}

double icn_loss(icn_head head, const float *logits, const int32_t *y, const float *weight, int n, int classes,
                double smoothing, float *dlogits) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * classes;
        float *dz = dlogits + (size_t)i * classes;
        double scale = (weight ? weight[i] : 1.0) / n;
        memset(dz, 0, (size_t)classes * sizeof(float));
        if (y[i] < 0) total += pseudo_negative(z, y[i], scale, dz);
        else if (head == ICN_HEAD_OVA) total += ova_sample(z, y[i], classes, scale, dz);
        else total += softmax_sample(z, y[i], classes, smoothing, scale, dz);
    }
    return total;
}

double icn_loss_softmax(const float *logits, const int32_t *y, const float *weight, int n, int classes,
                        double smoothing, float *dlogits) {
    return icn_loss(ICN_HEAD_SOFTMAX, logits, y, weight, n, classes, smoothing, dlogits);
}

double icn_loss_ova(const float *logits, const int32_t *y, const float *weight, int n, int classes, float *dlogits) {
    return icn_loss(ICN_HEAD_OVA, logits, y, weight, n, classes, 0, dlogits);
}
