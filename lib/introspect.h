/* introspect.h: the introspective trainer, the paper's Algorithm 1 (reclassification-by-
 * synthesis) with synthesis done by other processes.
 *
 * Synchronous (default): train initial_steps on the real data; then for round t = 1..rounds,
 * publish snapshot C^t (generation t), wait until the pool holds per_class new
 * pseudo-negatives of every class from generation t, and train round_steps on the real data
 * plus ALL pseudo-negatives so far (each step: a batch of real images and a batch of
 * pseudo-negatives, the latter weighted by alpha: Eq. 9 for softmax, Eq. 5 per class for
 * one-vs-all). With one synthesizer and a seed, a run is reproducible bit for bit.
 * Asynchronous: never wait; each round takes whatever the pool has gained.
 *
 * The trainer is the baseline's (trainer.h) with this run's pseudo-negatives as its source: the
 * baseline with the same options (train->steps = initial_steps + rounds * round_steps, the same
 * seed) sees the same real batches in the same order by construction. */
#ifndef ICN_INTROSPECT_H
#define ICN_INTROSPECT_H
#include "progress.h"
#include "snapshot.h"
#include "train.h"

/* The gradient-norm clip icn-classify train --introspective uses unless told otherwise: without
 * it, SGD with stop option 3 diverged in 1 to 2 of 6 seeds of the quick table-2 run (docs/RESULTS.md,
 * "Why the clipping"). Plain training keeps 0 (off). */
#define ICN_INTROSPECT_CLIP_GRAD 10.0

typedef struct {
    int64_t initial_steps; /* 800 */
    int rounds;            /* 6 */
    int64_t round_steps;   /* 200 */
    int per_class;         /* pseudo-negatives per class per round (sync); 20 */
    double alpha;          /* weight of the pseudo-negative term; 0.5 */
    int pn_batch;          /* pseudo-negatives per step; 16 */
    double pn_recent;      /* share of them from the newest generation (trainer.h); 0 */
    icn_bn_pseudo bn_pseudo; /* how batch norm sees the pseudo-negatives (train.h); ICN_BN_MIXED */
    int async;
    const char *publish;   /* PUB endpoint for snapshots (bound) */
    const char *snapshot_requests; /* ROUTER endpoint for snapshot requests (bound; NULL: lib/publisher.h's default) */
    const char *pool;      /* the pool's request endpoint (connected) */
    double wait_timeout;   /* seconds to wait for a round's pseudo-negatives; 600 */
    int prefetch;          /* read the pool from a thread while training (prefetch.h); 1 */
} icn_introspect_opts;

void icn_introspect_opts_default(icn_introspect_opts *o);
int64_t icn_introspect_total_steps(const icn_introspect_opts *o);
/* Train net on data with the trainer's options `train` (train->steps must be
 * icn_introspect_total_steps(o)) and the round schedule o. */
int icn_train_introspective(icn_net *net, const icn_batch *data, const icn_train_opts *train,
                            const icn_introspect_opts *o, char *err, size_t errlen);

#endif
