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
    s->slot = xmalloc((size_t)batch * sizeof *s->slot);
    return s;
}

void icn_synth_free(icn_synth *s) {
    if (!s) return;
    icn_work_free(s->work);
    icn_optim_free(&s->adam);
    free(s->x), free(s->dx), free(s->dlogits), free(s->slot);
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

/* Put sample j into slot i: its reference noise, fresh moments, step 0. */
static void start_sample(icn_synth *s, int i, size_t d, int64_t j, const icn_synth_opts *o, uint64_t seed,
                         int64_t first_index, int k, int32_t generation, uint32_t producer) {
    icn_synth_slot *sl = &s->slot[i];
    sl->sample = j, sl->steps = 0;
    icn_rng_seed(&sl->rng, icn_synth_seed(seed, generation, k, first_index + j, producer));
    float *xi = s->x + (size_t)i * d;
    for (size_t t = 0; t < d; t++) xi[t] = (float)(o->sigma * icn_rng_gauss(&sl->rng));
    clamp(xi, d, o->lo, o->hi);
    memset(s->adam.m + (size_t)i * d, 0, d * sizeof(float));
    memset(s->adam.v + (size_t)i * d, 0, d * sizeof(float));
}

/* Move slot `from` into slot `to` (keeps the slots in use contiguous). */
static void move_slot(icn_synth *s, int to, int from, size_t d) {
    s->slot[to] = s->slot[from];
    memcpy(s->x + (size_t)to * d, s->x + (size_t)from * d, d * sizeof(float));
    memcpy(s->adam.m + (size_t)to * d, s->adam.m + (size_t)from * d, d * sizeof(float));
    memcpy(s->adam.v + (size_t)to * d, s->adam.v + (size_t)from * d, d * sizeof(float));
}

int icn_synthesize(icn_synth *s, const icn_net *net, int k, int64_t n, const icn_synth_opts *o, uint64_t seed,
                   int64_t first_index, float *x_out, icn_provenance *prov, int32_t generation, uint32_t producer) {
    const size_t d = icn_net_input_size(net);
    const int K = net->classes;
    int reached = 0, active = 0;
    int64_t next = 0; /* the next sample to start */
    while (active < s->batch && next < n) start_sample(s, active++, d, next++, o, seed, first_index, k, generation, producer);
    while (active > 0) {
        const float *z = icn_forward(net, s->work, s->x, active);
        s->passes++, s->rows += active;
        if (s->interrupt && s->interrupt(s->interrupt_ctx)) return -1;
        /* finished samples leave; the rest get the gradient of -z_k (ascend z_k) */
        memset(s->dlogits, 0, (size_t)active * K * sizeof(float));
        int moving = 0;
        for (int i = 0; i < active; i++) {
            icn_synth_slot *sl = &s->slot[i];
            const float *zi = z + (size_t)i * K;
            icn_provenance *p = &prov[sl->sample];
            *p = (icn_provenance){.generation = generation, .producer = producer, .steps = sl->steps, .logit = zi[k]};
            int finished = 1;
            if (met_stop_rule(zi, K, k, o)) p->reached = 1;
            else if (sl->steps == o->max_steps) /* option 3 counts a sample that ends classified positive */
                p->reached = o->stop == ICN_STOP_FIXED && (o->head == ICN_HEAD_OVA ? zi[k] > 0 : icn_argmax(zi, K) == k);
            else if (!o->noise_only) finished = 0;
            if (finished) {
                reached += p->reached;
                memcpy(x_out + (size_t)sl->sample * d, s->x + (size_t)i * d, d * sizeof(float));
                sl->sample = -1;
            } else {
                s->dlogits[(size_t)i * K + k] = -1.0f, moving++;
            }
        }
        if (moving) {
            icn_backward(net, s->work, s->dlogits, 0, s->dx);
            for (int i = 0; i < active; i++) {
                icn_synth_slot *sl = &s->slot[i];
                if (sl->sample < 0) continue;
                float *xi = s->x + (size_t)i * d;
                const float *gi = s->dx + (size_t)i * d;
                double lr = step_size(o, sl->steps);
                sl->steps++;
                if (o->adam) icn_optim_step_span(&s->adam, s->x, s->dx, (float)lr, (size_t)i * d, (size_t)(i + 1) * d, sl->steps);
                else
                    for (size_t j = 0; j < d; j++) xi[j] += (float)lr * -gi[j];
                if (o->langevin) /* Langevin: noise with variance equal to the annealed step size */
                    for (size_t j = 0; j < d; j++) xi[j] += (float)(sqrt(lr) * icn_rng_gauss(&sl->rng));
                clamp(xi, d, o->lo, o->hi);
            }
        }
        if (s->interrupt && s->interrupt(s->interrupt_ctx)) return -1;
        /* refill: fresh samples take the finished ones' slots; once none is left, the last
         * slots in use move down, so the next pass runs on `active` images that all move */
        for (int i = 0; i < active; i++) {
            if (s->slot[i].sample >= 0) continue;
            if (next < n) start_sample(s, i, d, next++, o, seed, first_index, k, generation, producer);
            else {
                while (active > i + 1 && s->slot[active - 1].sample < 0) active--;
                if (active > i + 1) move_slot(s, i, --active, d);
                else active = i;
            }
        }
    }
    return reached;
}
