/* trainer.h: the one training loop. A trainer runs steps until a given step: each step a batch
 * of real images (icn_sampler: the same batches in the same order for every run of a seed),
 * augmented, then one SGD step, with the divergence check, metrics, validation, checkpoints and
 * progress. The baseline is a trainer without pseudo-negatives (icn_train_classifier). The
 * introspective trainer (introspect.h) gives it a source of pseudo-negatives and runs it round
 * by round; the real batches are the baseline's by construction.
 *
 *   icn_trainer_init     check the data, build the optimizer, work space and sampler
 *   icn_trainer_begin    resume from o->checkpoint when asked, start validation tracking
 *   icn_trainer_run      steps [meta.step, until)
 *   icn_trainer_finish   the last checkpoint and the model o->out
 *   icn_trainer_free */
#ifndef ICN_TRAINER_H
#define ICN_TRAINER_H
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "checkpoint.h"
#include "net.h"
#include "optim.h"
#include "progress.h"
#include "snapshot.h"
#include "train.h"

typedef struct {
    icn_net *net;
    const icn_batch *data;   /* the real images */
    const icn_train_opts *o; /* the run's options; o->steps is its last step */
    icn_model_meta meta;     /* where the run is: step, round, generation, pool offsets, settings */
    icn_optim opt;
    icn_work *work;
    icn_sampler sampler;
    icn_val_track val;
    icn_progress progress;
    int progress_open;       /* begun and not yet ended (icn_trainer_finish, or _free after a failure) */
    /* The source of pseudo-negatives (NULL: none, the baseline). Once it holds any, each step
     * adds pn_batch of them drawn uniformly, seeded by (o->seed, step), to the real batch, with
     * the loss mean over real + alpha * mean over pseudo-negatives (Eq. 9 softmax, Eq. 5 one-vs-
     * all). The owner may grow it between icn_trainer_run calls. Metrics and validation then
     * name meta.round. */
    const icn_batch *pn;
    int pn_batch;
    double alpha;
    /* the share of each step's pseudo-negatives drawn from the newest generation in pn (its
     * records found at the start of each icn_trainer_run), the rest from all; 0: all uniformly */
    double pn_recent;
    int32_t *recent, n_recent, cap_recent;
    icn_bn_pseudo bn_pseudo; /* how batch norm sees a step's pseudo-negatives (train.h, icn_train_step) */
    int32_t *idx, *y;
    float *x, *weight, *dlogits;
    double loss;     /* running average, for the progress line */
    int64_t clipped; /* steps of this process whose gradient was clipped */
    double t0;
    char status[64];
} icn_trainer;

/* Check data (labels in [0, classes), net's image shape) and set t up for the options o (kept by
 * pointer, never copied) with up to pn_batch pseudo-negatives per step; meta.settings is
 * icn_train_settings(o), which a caller may extend before icn_trainer_begin. */
int icn_trainer_init(icn_trainer *t, icn_net *net, const icn_batch *data, const icn_train_opts *o, int pn_batch,
                     char *err, size_t errlen);
/* Resume (icn_train_resume), start validation tracking and the progress line `label`.
 * 1 if resumed, 0 if not, -1 with err. */
int icn_trainer_begin(icn_trainer *t, const char *label, char *err, size_t errlen);
/* Train steps [meta.step, until). */
int icn_trainer_run(icn_trainer *t, int64_t until, char *err, size_t errlen);
/* End the progress line; write the checkpoint (o->checkpoint) and the model (o->out). */
int icn_trainer_finish(icn_trainer *t, char *err, size_t errlen);
void icn_trainer_free(icn_trainer *t); /* ends the progress line if still open */

/* The baseline: train net (already built and initialised) on data for o->steps. Labels must lie
 * in [0, classes). */
int icn_train_classifier(icn_net *net, const icn_batch *data, const icn_train_opts *o, char *err, size_t errlen);

#endif
