/* checkpoint.h: what lets a run stop and go on: resuming from a checkpoint, writing checkpoints
 * and the final model, and tracking the validation error (with --keep-best, the best model). */
#ifndef ICN_CHECKPOINT_H
#define ICN_CHECKPOINT_H
#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "optim.h"
#include "snapshot.h"
#include "train.h"

/* Write the checkpoint (model and optimizer state) to o->checkpoint; nothing without one. */
int icn_checkpoint_save(const icn_train_opts *o, const icn_net *net, const icn_model_meta *meta, const icn_optim *opt,
                        char *err, size_t errlen);
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

#endif
