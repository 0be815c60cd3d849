#include "synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void icn_synth_opts_default(icn_synth_opts *o) {
    memset(o, 0, sizeof *o);
    o->sigma = 0.3;
    o->lr = 0.02;
    o->max_steps = 100;
    o->stop = ICN_STOP_THRESHOLD;
    o->threshold = 2.0;
    o->adam = 1;
    o->lo = -1.0f;
    o->hi = 1.0f;
}

int icn_synth_parse_method(const char *s, icn_synth_opts *o) {
    if (!strcmp(s, "sgd")) o->langevin = 0;
    else if (!strcmp(s, "langevin")) o->langevin = 1;
    else return -1;
    return 0;
}

icn_synth *icn_synth_new(const icn_net *net, int batch) {
    icn_synth *s = xcalloc(1, sizeof *s);
    size_t d = icn_net_input_size(net);
    s->batch = batch;
    s->work = icn_work_new(net, batch);
    icn_optim_adam(&s->adam, (size_t)batch * d, 0.5f, 0.999f, 1e-8f);
    s->x = xmalloc((size_t)batch * d * sizeof(float));
    s->dx = xmalloc((size_t)batch * d * sizeof(float));
    s->dlogits = xmalloc((size_t)batch * net->classes * sizeof(float));
    s->active = xmalloc((size_t)batch);
    return s;
}

void icn_synth_free(icn_synth *s) {
    if (!s) return;
    icn_work_free(s->work);
    icn_optim_free(&s->adam);
    free(s->x), free(s->dx), free(s->dlogits), free(s->active);
    free(s);
}

uint64_t icn_synth_seed(uint64_t seed, int64_t generation, int k, int64_t index, uint32_t producer) {
    uint64_t h = seed;
    uint64_t parts[4] = {(uint64_t)generation, (uint64_t)k, (uint64_t)index, producer};
    for (int i = 0; i < 4; i++) h = (h ^ parts[i]) * 0x100000001b3ULL + 0x9e3779b97f4a7c15ULL;
    return h;
}

static void clamp(float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
}

static int met_stop_rule(const float *z, int classes, int k, const icn_synth_opts *o) {
    switch (o->stop) {
    case ICN_STOP_POSITIVE: return o->head == ICN_HEAD_OVA ? z[k] > 0 : icn_argmax(z, classes) == k;
    case ICN_STOP_THRESHOLD: return z[k] > o->threshold;
    default: return 0;
    }
}

/* Annealed step size of SGD-Langevin: from lr down to lr/10, linearly over max_steps. */
static double step_size(const icn_synth_opts *o, int step) {
    if (!o->langevin || o->max_steps <= 1) return o->lr;
    return o->lr * (1.0 - 0.9 * step / (o->max_steps - 1.0));
}

int icn_synthesize(icn_synth *s, const icn_net *net, int k, int n, const icn_synth_opts *o, icn_rng *rng,
                   float *x_out, icn_provenance *prov, int32_t generation, uint32_t producer) {
    const size_t d = icn_net_input_size(net);
    const int K = net->classes;
    for (size_t i = 0; i < (size_t)n * d; i++) s->x[i] = (float)(o->sigma * icn_rng_gauss(rng));
    clamp(s->x, (size_t)n * d, o->lo, o->hi);
    memset(s->active, 1, (size_t)n);
    s->adam.n = (size_t)s->batch * d;
    icn_optim_reset(&s->adam);
    s->adam.n = (size_t)n * d; /* the optimizer sees only the n images in use */
    for (int i = 0; i < n; i++)
        prov[i] = (icn_provenance){.generation = generation, .producer = producer, .steps = 0};
    int reached = 0, still_active = n;
    for (int step = 0;; step++) {
        const float *z = icn_forward(net, s->work, s->x, n);
        for (int i = 0; i < n; i++) {
            if (!s->active[i]) continue;
            const float *zi = z + (size_t)i * K;
            prov[i].logit = zi[k];
            prov[i].steps = step;
            if (met_stop_rule(zi, K, k, o)) {
                prov[i].reached = 1, s->active[i] = 0, reached++, still_active--;
            } else if (o->stop == ICN_STOP_FIXED && step == o->max_steps) {
                /* option 3 counts a sample that ends classified positive */
                prov[i].reached = o->head == ICN_HEAD_OVA ? zi[k] > 0 : icn_argmax(zi, K) == k;
                reached += prov[i].reached;
            }
        }
        if (o->noise_only || still_active == 0 || step == o->max_steps) break;
        /* ascend z_k: descend -z_k, only for the samples still moving */
        memset(s->dlogits, 0, (size_t)n * K * sizeof(float));
        for (int i = 0; i < n; i++)
            if (s->active[i]) s->dlogits[(size_t)i * K + k] = -1.0f;
        icn_backward(net, s->work, s->dlogits, 0, s->dx);
        double lr = step_size(o, step);
        if (o->adam) icn_optim_step_masked(&s->adam, s->x, s->dx, (float)lr, s->active, d);
        else
            for (int i = 0; i < n; i++)
                if (s->active[i])
                    for (size_t j = i * d; j < (i + 1) * d; j++) s->x[j] += (float)lr * -s->dx[j];
        for (int i = 0; i < n; i++) {
            if (!s->active[i]) continue;
            float *xi = s->x + (size_t)i * d;
            if (o->langevin) /* Langevin: noise with variance equal to the annealed step size */
                for (size_t j = 0; j < d; j++) xi[j] += (float)(sqrt(lr) * icn_rng_gauss(rng));
            clamp(xi, d, o->lo, o->hi);
        }
    }
    memcpy(x_out, s->x, (size_t)n * d * sizeof(float));
    return reached;
}
