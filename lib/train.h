/* train.h: supervised training of a classifier (the baseline), its building blocks
 * (reproducible batch sampling, one SGD step) that the introspective trainer reuses,
 * and evaluation (error rate and confusion matrix). */
#ifndef ICN_TRAIN_H
#define ICN_TRAIN_H
#include <stdint.h>

#include "losses.h"
#include "net.h"
#include "optim.h"
#include "progress.h"
#include "snapshot.h"
#include "batch.h"

#define ICN_MAX_MILESTONES 8

typedef struct {
    icn_head head;
    double smoothing;         /* label smoothing (softmax head) */
    double clip_grad;         /* > 0: scale the gradient down to this L2 norm when longer */
    int batch;
    int64_t steps;
    double lr, momentum, weight_decay;
    double milestones[ICN_MAX_MILESTONES]; /* lr decays at these fractions of steps */
    int n_milestones;
    double decay_factor;
    uint64_t seed;
    int augment;              /* pad-and-crop and flip the real images of each step (augment.h) */
    const char *out;          /* final model */
    const char *checkpoint;   /* written every checkpoint_every steps and at the end */
    int64_t checkpoint_every;
    int resume;               /* continue from checkpoint if it exists */
    int new_settings;         /* resume even when the checkpoint was trained with other settings */
    const icn_batch *val;     /* optional: error reported every eval_every steps and at the end */
    int64_t eval_every;
    const char *keep_best;    /* with val: where the model with the lowest validation error goes */
    icn_metrics *metrics;
    int quiet;
} icn_train_opts;

void icn_train_opts_default(icn_train_opts *o);

/* Batch number k of a run takes positions [k*B, (k+1)*B) of the concatenation of
 * per-epoch permutations, each seeded by (seed, epoch). A run's position in its data is
 * therefore its step count alone, which makes resuming exact. */
typedef struct {
    int64_t n, epoch;
    uint64_t seed;
    int32_t *perm;
} icn_sampler;
void icn_sampler_init(icn_sampler *s, int64_t n, uint64_t seed);
void icn_sampler_batch(icn_sampler *s, int64_t step, int batch, int32_t *idx);
void icn_sampler_free(icn_sampler *s);

/* When o->augment: augment the n real images x (of data's shape) of step `step`, drawn from
 * (o->seed, step) (augment.h); otherwise nothing. */
void icn_train_augment(const icn_train_opts *o, const icn_batch *data, float *x, int n, int64_t step);

/* One step: forward, loss (o's head and smoothing), backward, gradient clipping (o->clip_grad),
 * optimizer. dlogits [n, classes] is scratch. */
typedef struct {
    double loss;
    double grad_norm; /* L2 norm of the loss gradient before any clipping */
    int clipped;      /* 1 if o->clip_grad scaled it down */
} icn_step_result;
icn_step_result icn_train_step(icn_net *net, icn_work *w, icn_optim *opt, const float *x, const int32_t *y,
                               const float *weight, int n, const icn_train_opts *o, float lr, float *dlogits);
/* The one-line error for a loss that is NaN, infinite or past 1e30, else 0. */
int icn_check_diverged(int64_t step, icn_step_result r, char *err, size_t errlen);

/* o's settings that shape training, as "batch=64 lr=0.025 momentum=0.9 ..." into out (at
 * least ICN_SETTINGS_LEN bytes); a checkpoint records them (icn_model_meta.settings). */
void icn_train_settings(const icn_train_opts *o, char *out, size_t outlen);

/* The step size at `step` under o's schedule. */
float icn_train_lr(const icn_train_opts *o, int64_t step);
/* If o->resume and o->checkpoint exists: load it into net (same architecture required), opt and
 * meta, after checking it belongs to this run (meta's total_steps, train_images, seed, head, and
 * settings when the checkpoint has them).
 * Returns 1 if resumed, 0 if not, -1 with err. */
int icn_train_resume(const icn_train_opts *o, icn_net *net, icn_optim *opt, icn_model_meta *meta, char *err,
                     size_t errlen);

/* Write a trained model (no optimizer state) to path. Pool positions depend on timing, so
 * they are left out: a seeded run with one synthesizer gives the same file every time. */
int icn_train_save_model(const char *path, const icn_net *net, const icn_model_meta *meta, char *err, size_t errlen);

/* Validation during training. Each evaluation point reports the error on o->val (a metrics
 * "eval" event and a line on stderr); with o->keep_best, a model that beats every earlier point
 * is written there, so a run can be stopped on validation error (the paper's protocol) while
 * it trains to the end. */
typedef struct {
    double best;       /* lowest validation error so far; INFINITY before the first point */
    int64_t best_step;
} icn_val_track;
/* Check o->val against net (so that no evaluation fails late) and start tracking. When
 * resuming (meta->step > 0) and o->keep_best holds a model of this run (which may be from
 * after the checkpoint, when the run was killed between the two), its error is the best so
 * far; a model of another run there is an error. */
int icn_val_track_begin(icn_val_track *t, const icn_train_opts *o, const icn_net *net, icn_work *w,
                        const icn_model_meta *meta, char *err, size_t errlen);
/* An evaluation point at meta->step (round >= 0: the introspective trainer's round); nothing
 * without o->val. */
int icn_val_track_point(icn_val_track *t, const icn_train_opts *o, const icn_net *net, icn_work *w,
                        const icn_model_meta *meta, int64_t round, char *err, size_t errlen);
/* Whether the point after steps_done steps is an evaluation point: every o->eval_every steps
 * and after the last (o->steps), with o->val. */
int icn_val_due(const icn_train_opts *o, int64_t steps_done);

/* Train net (already built and initialised) on data. Labels must lie in [0, classes). */
int icn_train_classifier(icn_net *net, const icn_batch *data, const icn_train_opts *o, char *err, size_t errlen);

typedef struct {
    int64_t n, wrong;
    int classes;
    int64_t *confusion; /* [true class][predicted class] */
    int32_t *pred;      /* [n] the predicted class of each image, in stream order */
} icn_eval_result;

/* Error of net on a labelled batch; labels must lie in [0, classes). */
int icn_evaluate(const icn_net *net, icn_work *w, const icn_batch *data, icn_eval_result *r, char *err, size_t errlen);
void icn_eval_result_free(icn_eval_result *r);
/* Check that data's images have the shape net takes ("WHAT: images are ..., the model takes ..."). */
int icn_check_images(const icn_net *net, const icn_batch *data, const char *what, char *err, size_t errlen);
/* Check that every label of data is a real class in [0, classes). */
int icn_check_labels(const icn_batch *data, int classes, const char *what, char *err, size_t errlen);

#endif
