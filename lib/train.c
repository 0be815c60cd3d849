#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "augment.h"
#include "snapshot.h"
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

icn_step_result icn_train_step(icn_net *net, icn_work *w, icn_optim *opt, const float *x, const int32_t *y,
                               const float *weight, int n, const icn_train_opts *o, float lr, float *dlogits) {
    icn_step_result r;
    w->training = 1; /* batchnorm on the batch's statistics, running statistics updated */
    const float *logits = icn_forward(net, w, x, n);
    r.loss = icn_loss(o->head, logits, y, weight, n, net->classes, o->smoothing, dlogits);
    icn_backward(net, w, dlogits, 1, NULL);
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

int icn_check_labels(const icn_batch *data, int classes, const char *what, char *err, size_t errlen) {
    if (!data->y) return icn_errf(err, errlen, "%s: the tensor stream has no labels", what);
    for (int64_t i = 0; i < data->n; i++)
        if (data->y[i] < 0 || data->y[i] >= classes)
            return icn_errf(err, errlen, "%s: image %lld has label %d, outside the model's classes [0, %d)", what,
                            (long long)i, data->y[i], classes);
    return 0;
}

int icn_check_images(const icn_net *net, const icn_batch *data, const char *what, char *err, size_t errlen) {
    if (data->h == net->in_h && data->w == net->in_w && data->c == net->in_c) return 0;
    return icn_errf(err, errlen, "%s: images are %dx%dx%d, the model takes %dx%dx%d", what, data->h, data->w, data->c,
                    net->in_h, net->in_w, net->in_c);
}

int icn_evaluate(const icn_net *net, icn_work *w, const icn_batch *data, icn_eval_result *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    if (icn_check_labels(data, net->classes, "evaluation data", err, errlen)) return -1;
    if (icn_check_images(net, data, "evaluation data", err, errlen)) return -1;
    r->classes = net->classes;
    r->confusion = xcalloc((size_t)net->classes * net->classes, sizeof(int64_t));
    r->pred = xmalloc((size_t)data->n * sizeof *r->pred + 1); /* + 1: no malloc(0) for an empty batch */
    size_t d = icn_batch_dim(data);
    for (int64_t i = 0; i < data->n; i += w->max_batch) {
        int m = (int)(data->n - i < w->max_batch ? data->n - i : w->max_batch);
        const float *logits = icn_forward(net, w, data->x + (size_t)i * d, m);
        for (int j = 0; j < m; j++) {
            int pred = icn_argmax(logits + (size_t)j * net->classes, net->classes), truth = data->y[i + j];
            r->confusion[(size_t)truth * net->classes + pred]++;
            r->pred[i + j] = pred;
            r->wrong += pred != truth;
        }
    }
    r->n = data->n;
    return 0;
}

void icn_eval_result_free(icn_eval_result *r) {
    free(r->confusion);
    free(r->pred);
    r->confusion = NULL;
    r->pred = NULL;
}

static int save_checkpoint(const icn_train_opts *o, const icn_net *net, const icn_model_meta *meta,
                           const icn_optim *opt, char *err, size_t errlen) {
    return o->checkpoint ? icn_model_save(o->checkpoint, net, meta, opt, err, errlen) : 0;
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

/* The first "name=value" of `ours` that `theirs` does not hold, for naming a mismatch. */
static void first_difference(const char *ours, const char *theirs, char *out, size_t outlen) {
    char copy[ICN_SETTINGS_LEN];
    snprintf(copy, sizeof copy, "%s", ours);
    for (char *save, *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        size_t n = strlen(tok);
        const char *p = theirs;
        int found = 0;
        while (!found && (p = strstr(p, tok))) {
            found = (p == theirs || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0);
            p += n;
        }
        if (!found) {
            snprintf(out, outlen, "%s", tok);
            return;
        }
    }
    snprintf(out, outlen, "(a setting it lacks)");
}

int icn_train_resume(const icn_train_opts *o, icn_net *net, icn_optim *opt, icn_model_meta *meta, char *err,
                     size_t errlen) {
    if (!o->resume || !o->checkpoint || access(o->checkpoint, F_OK) != 0) return 0;
    icn_net loaded;
    icn_model_meta m;
    int has_optim = 0;
    if (icn_model_load(o->checkpoint, &loaded, &m, opt, &has_optim, err, errlen)) return -1;
    if (strcmp(loaded.arch, net->arch) || loaded.n_params != net->n_params || m.head != o->head ||
        m.total_steps != meta->total_steps || m.train_images != meta->train_images || m.seed != meta->seed) {
        icn_net_free(&loaded);
        return icn_errf(err, errlen,
                        "%s: checkpoint is of another run (arch %s, %lld steps, %lld images, seed %lld); "
                        "remove it or drop --resume",
                        o->checkpoint, loaded.arch, (long long)m.total_steps,
                        (long long)m.train_images, (long long)m.seed);
    }
    if (!has_optim) {
        icn_net_free(&loaded);
        return icn_errf(err, errlen, "%s: holds no optimizer state, so it is not a checkpoint", o->checkpoint);
    }
    if (m.settings[0] && meta->settings[0] && strcmp(m.settings, meta->settings)) {
        char ours[ICN_SETTINGS_LEN], theirs[ICN_SETTINGS_LEN];
        first_difference(meta->settings, m.settings, ours, sizeof ours);
        first_difference(m.settings, meta->settings, theirs, sizeof theirs);
        if (!o->new_settings) {
            icn_net_free(&loaded);
            return icn_errf(err, errlen, "%s: checkpoint was trained with %s, this run asks for %s; resume with its "
                            "settings, add --new-settings to change them, or remove it", o->checkpoint, theirs, ours);
        }
        icn_warn("%s: resuming with %s (the checkpoint had %s)", o->checkpoint, ours, theirs);
    }
    memcpy(net->params, loaded.params, net->n_params * sizeof(float));
    icn_net_free(&loaded);
    if (meta->settings[0]) memcpy(m.settings, meta->settings, sizeof m.settings); /* later checkpoints: ours */
    *meta = m;
    if (!o->quiet) icn_warn("resuming from %s at step %lld", o->checkpoint, (long long)m.step);
    return 1;
}

int icn_val_due(const icn_train_opts *o, int64_t steps_done) {
    return o->val && ((o->eval_every > 0 && steps_done % o->eval_every == 0) || steps_done == o->steps);
}

int icn_train_save_model(const char *path, const icn_net *net, const icn_model_meta *meta, char *err, size_t errlen) {
    icn_model_meta m = *meta;
    m.pool_offset = m.pool_start = 0; /* where the run stood in its pool: a checkpoint's business */
    m.pool_uuid[0] = 0;
    return icn_model_save(path, net, &m, NULL, err, errlen);
}

int icn_val_track_begin(icn_val_track *t, const icn_train_opts *o, const icn_net *net, icn_work *w,
                        const icn_model_meta *meta, char *err, size_t errlen) {
    t->best = INFINITY;
    t->best_step = -1;
    if (!o->val) return 0;
    if (icn_check_labels(o->val, net->classes, "validation data", err, errlen) ||
        icn_check_images(net, o->val, "validation data", err, errlen))
        return -1;
    if (!o->keep_best || meta->step == 0 || access(o->keep_best, F_OK) != 0) return 0;
    icn_net kept;
    icn_model_meta m;
    if (icn_model_load(o->keep_best, &kept, &m, NULL, NULL, err, errlen)) return -1;
    int ours = !strcmp(kept.arch, net->arch) && kept.n_params == net->n_params && m.seed == meta->seed &&
               m.total_steps == meta->total_steps && m.train_images == meta->train_images;
    icn_eval_result r = {0};
    int rc = ours ? icn_evaluate(&kept, w, o->val, &r, err, errlen)
                  : icn_errf(err, errlen, "%s: --keep-best holds a model of another run (seed %lld, step %lld of %lld); "
                             "remove it or name another file", o->keep_best, (long long)m.seed, (long long)m.step,
                             (long long)m.total_steps);
    if (rc == 0) {
        t->best = (double)r.wrong / (double)r.n;
        t->best_step = m.step;
        if (!o->quiet) icn_warn("%s: best so far, validation error %.2f%% at step %lld", o->keep_best, 100 * t->best,
                                (long long)m.step);
    }
    icn_eval_result_free(&r);
    icn_net_free(&kept);
    return rc;
}

int icn_val_track_point(icn_val_track *t, const icn_train_opts *o, const icn_net *net, icn_work *w,
                        const icn_model_meta *meta, int64_t round, char *err, size_t errlen) {
    if (!o->val) return 0;
    icn_eval_result r;
    if (icn_evaluate(net, w, o->val, &r, err, errlen)) return -1;
    double error = (double)r.wrong / (double)r.n;
    icn_eval_result_free(&r);
    int kept = o->keep_best && error < t->best;
    if (kept) {
        if (icn_train_save_model(o->keep_best, net, meta, err, errlen)) return -1;
        t->best = error;
        t->best_step = meta->step;
    }
    char at_round[32] = "";
    if (round >= 0) snprintf(at_round, sizeof at_round, ",\"round\":%lld", (long long)round);
    icn_metrics_printf(o->metrics, "{\"event\":\"eval\",\"step\":%lld%s,\"val_error\":%.6f,\"kept\":%s}",
                       (long long)meta->step, at_round, error, kept ? "true" : "false");
    if (!o->quiet)
        icn_warn("step %lld: validation error %.2f%%%s", (long long)meta->step, 100 * error,
                 kept ? " (best so far, kept)" : "");
    return 0;
}

int icn_train_classifier(icn_net *net, const icn_batch *data, const icn_train_opts *o, char *err, size_t errlen) {
    if (icn_check_labels(data, net->classes, "training data", err, errlen)) return -1;
    if (icn_check_images(net, data, "training data", err, errlen)) return -1;
    icn_model_meta meta = {.head = o->head, .total_steps = o->steps, .seed = (int64_t)o->seed, .train_images = data->n};
    icn_train_settings(o, meta.settings, sizeof meta.settings);
    icn_optim opt;
    icn_optim_sgd(&opt, net->n_trainable, (float)o->momentum, (float)o->weight_decay);
    if (icn_train_resume(o, net, &opt, &meta, err, errlen) < 0) {
        icn_optim_free(&opt);
        return -1;
    }
    const int B = o->batch;
    icn_work *w = icn_work_new(net, B);
    icn_val_track track;
    if (icn_val_track_begin(&track, o, net, w, &meta, err, errlen)) {
        icn_work_free(w);
        icn_optim_free(&opt);
        return -1;
    }
    icn_sampler sampler;
    icn_sampler_init(&sampler, data->n, o->seed);
    int32_t *idx = xmalloc((size_t)B * sizeof(int32_t)), *y = xmalloc((size_t)B * sizeof(int32_t));
    float *x = xmalloc((size_t)B * icn_batch_dim(data) * sizeof(float));
    float *dlogits = xmalloc((size_t)B * net->classes * sizeof(float));
    icn_progress prog;
    icn_progress_begin(&prog, "train", "img", meta.step * B, o->steps * B, o->quiet);
    double loss_avg = 0, t0 = icn_now();
    int64_t clipped = 0; /* steps of this process whose gradient was clipped */
    int rc = 0;
    char status[64] = "";
    for (int64_t step = meta.step; step < o->steps; step++) {
        float lr = icn_train_lr(o, step);
        icn_sampler_batch(&sampler, step, B, idx);
        icn_gather(data, idx, B, x, y);
        icn_train_augment(o, data, x, B, step);
        icn_step_result res = icn_train_step(net, w, &opt, x, y, NULL, B, o, lr, dlogits);
        if (icn_check_diverged(step, res, err, errlen)) { rc = -1; break; }
        double loss = res.loss;
        clipped += res.clipped;
        loss_avg = step == meta.step ? loss : 0.98 * loss_avg + 0.02 * loss;
        meta.step = step + 1;
        if (o->metrics && (meta.step % 10 == 0 || meta.step == o->steps))
            icn_metrics_printf(o->metrics,
                               "{\"event\":\"step\",\"step\":%lld,\"loss\":%.6f,\"grad_norm\":%.4g,\"clipped\":%lld,\"lr\":%g,"
                               "\"time\":%.3f}",
                               (long long)meta.step, loss, res.grad_norm, (long long)clipped, lr, icn_now() - t0);
        if (icn_val_due(o, meta.step) && icn_val_track_point(&track, o, net, w, &meta, -1, err, errlen)) {
            rc = -1;
            break;
        }
        if (o->checkpoint_every > 0 && meta.step % o->checkpoint_every == 0 && meta.step < o->steps &&
            save_checkpoint(o, net, &meta, &opt, err, errlen)) { rc = -1; break; }
        snprintf(status, sizeof status, "loss %.4f", loss_avg);
        icn_progress_update(&prog, meta.step * B, status);
    }
    icn_progress_end(&prog, meta.step * B, status);
    if (rc == 0 && save_checkpoint(o, net, &meta, &opt, err, errlen)) rc = -1;
    if (rc == 0 && o->out && icn_train_save_model(o->out, net, &meta, err, errlen)) rc = -1;
    free(idx), free(y), free(x), free(dlogits);
    icn_sampler_free(&sampler);
    icn_work_free(w);
    icn_optim_free(&opt);
    return rc;
}
