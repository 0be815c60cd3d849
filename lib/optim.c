#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static void optim_alloc(icn_optim *o, size_t n, int moments) {
    o->n = n;
    o->t = 0;
    o->m = xcalloc(n, sizeof(float));
    o->v = moments > 1 ? xcalloc(n, sizeof(float)) : NULL;
}

void icn_optim_sgd(icn_optim *o, size_t n, float momentum, float weight_decay) {
    memset(o, 0, sizeof *o);
    o->kind = ICN_OPT_SGD;
    o->momentum = momentum;
    o->weight_decay = weight_decay;
    optim_alloc(o, n, 1);
}

void icn_optim_adam(icn_optim *o, size_t n, float beta1, float beta2, float eps) {
    memset(o, 0, sizeof *o);
    o->kind = ICN_OPT_ADAM;
    o->beta1 = beta1, o->beta2 = beta2, o->eps = eps;
    optim_alloc(o, n, 2);
}

void icn_optim_reset(icn_optim *o) {
    o->t = 0;
    memset(o->m, 0, o->n * sizeof(float));
    if (o->v) memset(o->v, 0, o->n * sizeof(float));
}

void icn_optim_free(icn_optim *o) {
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}

void icn_optim_step_span(icn_optim *o, float *x, const float *grad, float lr, size_t lo, size_t hi, int64_t t) {
    if (o->kind == ICN_OPT_SGD) { /* PyTorch's form: v = mu v + (g + wd x); x -= lr v */
        const float mu = o->momentum, wd = o->weight_decay;
        float *v = o->m;
        for (size_t i = lo; i < hi; i++) {
            float g = grad[i] + wd * x[i];
            v[i] = mu * v[i] + g;
            x[i] -= lr * v[i];
        }
        return;
    }
    const float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    const float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
    const float step = lr / c1, root_c2 = sqrtf(c2);
    float *m = o->m, *v = o->v;
    for (size_t i = lo; i < hi; i++) {
        m[i] = b1 * m[i] + (1 - b1) * grad[i];
        v[i] = b2 * v[i] + (1 - b2) * grad[i] * grad[i];
        x[i] -= step * m[i] / (sqrtf(v[i]) / root_c2 + eps);
    }
}

void icn_optim_step(icn_optim *o, float *x, const float *grad, float lr) {
    o->t++;
    icn_optim_step_span(o, x, grad, lr, 0, o->n, o->t);
}

double icn_lr_at(double lr, int64_t step, int64_t total, const double *milestones, int n_milestones, double factor) {
    for (int i = 0; i < n_milestones; i++)
        if ((double)step >= milestones[i] * (double)total) lr *= factor;
    return lr;
}
