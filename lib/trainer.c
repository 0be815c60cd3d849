/* trainer.c: the one training loop (trainer.h). */
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "util.h"

int icn_trainer_init(icn_trainer *t, icn_net *net, const icn_batch *data, const icn_train_opts *o, int pn_batch,
                     char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    if (icn_check_labels(data, net->classes, "training data", err, errlen) ||
        icn_check_images(net, data, "training data", err, errlen))
        return -1;
    t->net = net, t->data = data, t->o = o, t->pn_batch = pn_batch;
    t->meta = (icn_model_meta){.head = o->head, .total_steps = o->steps, .seed = (int64_t)o->seed,
                               .train_images = data->n};
    icn_train_settings(o, t->meta.settings, sizeof t->meta.settings);
    icn_optim_sgd(&t->opt, net->n_trainable, (float)o->momentum, (float)o->weight_decay);
    const int n = o->batch + pn_batch, K = net->classes;
    t->work = icn_work_new(net, n);
    icn_sampler_init(&t->sampler, data->n, o->seed);
    t->idx = xmalloc((size_t)n * sizeof(int32_t)), t->y = xmalloc((size_t)n * sizeof(int32_t));
    t->x = xmalloc((size_t)n * icn_batch_dim(data) * sizeof(float));
    t->weight = xmalloc((size_t)n * sizeof(float)), t->dlogits = xmalloc((size_t)n * K * sizeof(float));
    return 0;
}

int icn_trainer_begin(icn_trainer *t, const char *label, char *err, size_t errlen) {
    int resumed = icn_train_resume(t->o, t->net, &t->opt, &t->meta, err, errlen);
    if (resumed < 0 || icn_val_track_begin(&t->val, t->o, t->net, t->work, &t->meta, err, errlen)) return -1;
    const int B = t->o->batch;
    icn_progress_begin(&t->progress, label, "img", t->meta.step * B, t->o->steps * B, t->o->quiet);
    t->progress_open = 1;
    t->t0 = icn_now();
    return resumed;
}

/* The records of the newest generation in pn, for --pn-recent. */
static void find_recent(icn_trainer *t) {
    t->n_recent = 0;
    if (!(t->pn_recent > 0) || !t->pn->prov) return;
    int32_t newest = INT32_MIN;
    for (int64_t i = 0; i < t->pn->n; i++)
        if (t->pn->prov[i].generation > newest) newest = t->pn->prov[i].generation;
    for (int64_t i = 0; i < t->pn->n; i++) {
        if (t->pn->prov[i].generation != newest) continue;
        if (t->n_recent == t->cap_recent) {
            t->cap_recent = t->cap_recent ? 2 * t->cap_recent : 256;
            t->recent = xrealloc(t->recent, (size_t)t->cap_recent * sizeof(int32_t));
        }
        t->recent[t->n_recent++] = (int32_t)i;
    }
}

/* The step's batch: B real images in the sampler's order, augmented, then (with pseudo-negatives)
 * P of them: the first round(pn_recent P) from the newest generation, the others drawn uniformly
 * from all so far, seeded by (seed, step). */
static void gather_step(icn_trainer *t, int64_t step, int B, int P) {
    icn_sampler_batch(&t->sampler, step, B, t->idx);
    icn_gather(t->data, t->idx, B, t->x, t->y);
    icn_train_augment(t->o, t->data, t->x, B, step); /* the real images only */
    if (!P) return;
    icn_rng rng;
    icn_rng_seed(&rng, t->o->seed * 0x2545f4914f6cdd1dULL + (uint64_t)step);
    const int R = t->n_recent ? (int)lround(t->pn_recent * P) : 0;
    for (int i = 0; i < P; i++)
        t->idx[B + i] = i < R ? t->recent[icn_rng_below(&rng, (uint32_t)t->n_recent)]
                              : (int32_t)icn_rng_below(&rng, (uint32_t)t->pn->n);
    icn_gather(t->pn, t->idx + B, P, t->x + (size_t)B * icn_batch_dim(t->data), t->y + B);
}

static void step_metrics(icn_trainer *t, int64_t until, double loss, icn_step_result res, float lr, int P) {
    const icn_train_opts *o = t->o;
    if (!o->metrics || !(t->meta.step % 10 == 0 || t->meta.step == until)) return;
    if (!t->pn)
        icn_metrics_printf(o->metrics,
                           "{\"event\":\"step\",\"step\":%lld,\"loss\":%.6f,\"grad_norm\":%.4g,\"clipped\":%lld,"
                           "\"lr\":%g,\"time\":%.3f}",
                           (long long)t->meta.step, loss, res.grad_norm, (long long)t->clipped, lr, icn_now() - t->t0);
    else
        icn_metrics_printf(o->metrics,
                           "{\"event\":\"step\",\"step\":%lld,\"round\":%lld,\"loss\":%.6f,\"grad_norm\":%.4g,"
                           "\"clipped\":%lld,\"lr\":%g,\"pn_batch\":%d,\"pn_total\":%lld}",
                           (long long)t->meta.step, (long long)t->meta.round, loss, res.grad_norm,
                           (long long)t->clipped, lr, P, (long long)t->pn->n);
}

int icn_trainer_run(icn_trainer *t, int64_t until, char *err, size_t errlen) {
    const icn_train_opts *o = t->o;
    const int B = o->batch, P = t->pn && t->pn->n > 0 ? t->pn_batch : 0, n = B + P;
    const float *weight = NULL;
    if (t->pn) { /* loss = mean over real + alpha * mean over pseudo-negatives (weights of a mean over n) */
        for (int i = 0; i < n; i++) t->weight[i] = i < B ? (float)n / B : (float)(t->alpha * n / P);
        weight = t->weight;
    }
    const int64_t round = t->pn ? t->meta.round : -1;
    if (P) find_recent(t);
    for (int64_t step = t->meta.step; step < until; step++) {
        gather_step(t, step, B, P);
        float lr = icn_train_lr(o, step);
        icn_step_result res =
            icn_train_step(t->net, t->work, &t->opt, t->x, t->y, weight, n, P ? B : 0, t->bn_pseudo, o, lr, t->dlogits);
        if (icn_check_diverged(step, res, err, errlen)) return -1;
        t->clipped += res.clipped;
        t->loss = step == t->meta.step ? res.loss : 0.98 * t->loss + 0.02 * res.loss;
        t->meta.step = step + 1;
        step_metrics(t, until, res.loss, res, lr, P);
        /* validation at the usual points and at the end of each phase; before the checkpoint,
         * so that a run killed between the two evaluates this step again when resumed */
        if ((icn_val_due(o, t->meta.step) || t->meta.step == until) &&
            icn_val_track_point(&t->val, o, t->net, t->work, &t->meta, round, err, errlen))
            return -1;
        if (o->checkpoint_every > 0 && t->meta.step % o->checkpoint_every == 0 && t->meta.step < o->steps &&
            icn_checkpoint_save(o, t->net, &t->meta, &t->opt, err, errlen))
            return -1;
        if (t->pn) snprintf(t->status, sizeof t->status, "round %lld loss %.4f", (long long)t->meta.round, t->loss);
        else snprintf(t->status, sizeof t->status, "loss %.4f", t->loss);
        icn_progress_update(&t->progress, t->meta.step * B, t->status);
    }
    return 0;
}

static void end_progress(icn_trainer *t) {
    if (t->progress_open) icn_progress_end(&t->progress, t->meta.step * t->o->batch, t->status);
    t->progress_open = 0;
}

int icn_trainer_finish(icn_trainer *t, char *err, size_t errlen) {
    end_progress(t);
    if (icn_checkpoint_save(t->o, t->net, &t->meta, &t->opt, err, errlen)) return -1;
    if (t->o->out && icn_train_save_model(t->o->out, t->net, &t->meta, err, errlen)) return -1;
    return 0;
}

void icn_trainer_free(icn_trainer *t) {
    end_progress(t);
    icn_optim_free(&t->opt);
    icn_work_free(t->work);
    icn_sampler_free(&t->sampler);
    free(t->idx), free(t->y), free(t->x), free(t->weight), free(t->dlogits), free(t->recent);
    memset(t, 0, sizeof *t);
}

int icn_train_classifier(icn_net *net, const icn_batch *data, const icn_train_opts *o, char *err, size_t errlen) {
    icn_trainer t;
    if (icn_trainer_init(&t, net, data, o, 0, err, errlen)) return -1;
    int rc = icn_trainer_begin(&t, "train", err, errlen) < 0 || icn_trainer_run(&t, o->steps, err, errlen) ||
                     icn_trainer_finish(&t, err, errlen)
                 ? -1
                 : 0;
    icn_trainer_free(&t);
    return rc;
}
