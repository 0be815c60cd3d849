#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "util.h"

void icn_train_opts_default(icn_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->head = ICN_HEAD_SOFTMAX;
    o->batch = 64;
    o->steps = 2000;
    o->lr = 0.025;
    o->momentum = 0.9;
    o->milestones[0] = 0.75;
    o->n_milestones = 1;
    o->decay_factor = 0.1;
    o->seed = 1;
    o->checkpoint_every = 1000;
    o->eval_every = 0;
}

void icn_sampler_init(icn_sampler *s, int64_t n, uint64_t seed) {
    s->n = n;
    s->seed = seed;
    s->epoch = -1;
    s->perm = xmalloc((size_t)n * sizeof(int32_t));
}

static void sampler_epoch(icn_sampler *s, int64_t epoch) {
    if (s->epoch == epoch) return;
    icn_rng rng;
    icn_rng_seed(&rng, s->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)epoch);
    for (int64_t i = 0; i < s->n; i++) s->perm[i] = (int32_t)i;
    icn_rng_shuffle(&rng, s->perm, (size_t)s->n);
    s->epoch = epoch;
}

void icn_sampler_batch(icn_sampler *s, int64_t step, int batch, int32_t *idx) {
    for (int i = 0; i < batch; i++) {
        int64_t pos = step * batch + i;
        sampler_epoch(s, pos / s->n);
        idx[i] = s->perm[pos % s->n];
    }
}

void icn_sampler_free(icn_sampler *s) {
    free(s->perm);
    s->perm = NULL;
}

void icn_train_augment(const icn_train_opts *o, const icn_batch *data, float *x, int n, int64_t step) {
    icn_augment_batch(x, n, data->h, data->w, data->c, o->augment ? ICN_AUGMENT_PAD : 0, o->augment, o->seed, step);
}

/* One forward-backward over rows [from, from + m) of a step of n: its share m/n of the step's
 * loss, (1/n) sum weight_i loss_i, and that share's gradient in w->grad. */
static double pass(icn_net *net, icn_work *w, const float *x, const int32_t *y, const float *weight, int from,
                   int m, int n, const icn_train_opts *o, float *dlogits) {
    const int K = net->classes;
    const float *logits = icn_forward(net, w, x + (size_t)from * icn_net_input_size(net), m);
    double loss = icn_loss(o->head, logits, y + from, weight ? weight + from : NULL, m, K, o->smoothing, dlogits);
    if (m != n) {
        const float share = (float)m / (float)n;
        for (size_t i = 0; i < (size_t)m * K; i++) dlogits[i] *= share;
        loss *= share;
    }
    icn_backward(net, w, dlogits, 1, NULL);
    return loss;
}

int icn_bn_pseudo_parse(const char *s, icn_bn_pseudo *out) {
    for (int m = ICN_BN_MIXED; m <= ICN_BN_FROZEN; m++)
        if (!strcmp(s, icn_bn_pseudo_name((icn_bn_pseudo)m))) return *out = (icn_bn_pseudo)m, 0;
    return -1;
}

const char *icn_bn_pseudo_name(icn_bn_pseudo m) {
    return m == ICN_BN_SEPARATE ? "separate" : m == ICN_BN_FROZEN ? "frozen" : "mixed";
}

icn_step_result icn_train_step(icn_net *net, icn_work *w, icn_optim *opt, const float *x, const int32_t *y,
                               const float *weight, int n, int split, icn_bn_pseudo bn, const icn_train_opts *o,
                               float lr, float *dlogits) {
    icn_step_result r;
    if (bn == ICN_BN_MIXED || split <= 0 || split >= n) {
        w->training = 1; /* batchnorm on the batch's statistics, running statistics updated */
        r.loss = pass(net, w, x, y, weight, 0, n, n, o, dlogits);
    } else {
        /* The real images by their statistics, which update the running ones (training mode 1);
         * the pseudo-negatives by theirs, the running ones untouched (mode 2), or frozen: by the
         * running statistics as the step found them (mode 0), so they go first. */
        const int frozen = bn == ICN_BN_FROZEN;
        if (!w->grad_acc) w->grad_acc = xmalloc(net->n_trainable * sizeof(float));
        w->training = frozen ? 0 : 1;
        r.loss = frozen ? pass(net, w, x, y, weight, split, n - split, n, o, dlogits)
                        : pass(net, w, x, y, weight, 0, split, n, o, dlogits);
        memcpy(w->grad_acc, w->grad, net->n_trainable * sizeof(float));
        w->training = frozen ? 1 : 2;
        r.loss += frozen ? pass(net, w, x, y, weight, 0, split, n, o, dlogits)
                         : pass(net, w, x, y, weight, split, n - split, n, o, dlogits);
        for (size_t i = 0; i < net->n_trainable; i++) w->grad[i] += w->grad_acc[i];
    }
    w->training = 0;
    /* gradients, clipping and the optimizer cover the trainable parameters only, never the state */
    double sq = 0;
    for (size_t i = 0; i < net->n_trainable; i++) sq += (double)w->grad[i] * w->grad[i];
    r.grad_norm = sqrt(sq);
    r.clipped = o->clip_grad > 0 && r.grad_norm > o->clip_grad;
    if (r.clipped) {
        float scale = (float)(o->clip_grad / r.grad_norm);
        for (size_t i = 0; i < net->n_trainable; i++) w->grad[i] *= scale;
    }
    icn_optim_step(opt, net->params, w->grad, lr);
    return r;
}

int icn_check_diverged(int64_t step, icn_step_result r, char *err, size_t errlen) {
    if (r.loss == r.loss && r.loss <= 1e30) return 0;
    return icn_errf(err, errlen, "step %lld: loss is %g (gradient norm %g): training diverged (try a smaller --lr "
                    "or --clip-grad; --resume --new-settings continues from the last checkpoint)", (long long)step, r.loss, r.grad_norm);
}

float icn_train_lr(const icn_train_opts *o, int64_t step) {
    return (float)icn_lr_at(o->lr, step, o->steps, o->milestones, o->n_milestones, o->decay_factor);
}

void icn_train_settings(const icn_train_opts *o, char *out, size_t outlen) {
    char decay_at[ICN_MAX_MILESTONES * 12 + 1] = "none";
    for (int i = 0, at = 0; i < o->n_milestones; i++)
        at += snprintf(decay_at + at, sizeof decay_at - (size_t)at, "%s%g", i ? "," : "", o->milestones[i]);
    snprintf(out, outlen,
             "batch=%d lr=%g momentum=%g weight_decay=%g decay_at=%s decay_factor=%g label_smoothing=%g clip_grad=%g "
             "augment=%d",
             o->batch, o->lr, o->momentum, o->weight_decay, decay_at, o->decay_factor, o->smoothing, o->clip_grad,
             o->augment);
}
