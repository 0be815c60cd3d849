/* train.h: the building blocks of training: the options of a run, reproducible batch sampling,
 * the learning-rate schedule, augmentation of a step's real images, and one SGD step. The loop
 * that runs them is trainer.h's. */
#ifndef ICN_TRAIN_H
#define ICN_TRAIN_H
#include <stdint.h>

#include "batch.h"
#include "losses.h"
#include "net.h"
#include "optim.h"
#include "progress.h"

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
 * optimizer. dlogits [n, classes] is scratch. The loss is (1/n) sum_i weight_i loss_i (weight
 * NULL: all 1). With ICN the rows [split, n) are the step's pseudo-negatives and `bn` says how
 * batch norm sees them: ICN_BN_MIXED (or split 0): the n images as one batch. Otherwise two
 * forward-backward passes whose gradients add up to the gradient of the same loss: rows
 * [0, split) normalized by their own statistics, which alone update the running ones, and rows
 * [split, n) by their own batch's statistics (ICN_BN_SEPARATE) or by the running statistics
 * (ICN_BN_FROZEN: as evaluation and synthesis see an image). */
typedef enum { ICN_BN_MIXED, ICN_BN_SEPARATE, ICN_BN_FROZEN } icn_bn_pseudo;
/* "mixed", "separate", "frozen" <-> the mode; parse returns -1 for any other word. */
int icn_bn_pseudo_parse(const char *s, icn_bn_pseudo *out);
const char *icn_bn_pseudo_name(icn_bn_pseudo m);
typedef struct {
    double loss;
    double grad_norm; /* L2 norm of the loss gradient before any clipping */
    int clipped;      /* 1 if o->clip_grad scaled it down */
} icn_step_result;
icn_step_result icn_train_step(icn_net *net, icn_work *w, icn_optim *opt, const float *x, const int32_t *y,
                               const float *weight, int n, int split, icn_bn_pseudo bn, const icn_train_opts *o,
                               float lr, float *dlogits);
/* The one-line error for a loss that is NaN, infinite or past 1e30, else 0. */
int icn_check_diverged(int64_t step, icn_step_result r, char *err, size_t errlen);

/* o's settings that shape training, as "batch=64 lr=0.025 momentum=0.9 ..." into out (at
 * least ICN_SETTINGS_LEN bytes); a checkpoint records them (icn_model_meta.settings). */
void icn_train_settings(const icn_train_opts *o, char *out, size_t outlen);

/* The step size at `step` under o's schedule. */
float icn_train_lr(const icn_train_opts *o, int64_t step);

#endif
