/* synth.h: synthesis of pseudo-negatives (the paper's Algorithm 1, synthesis step).
 *
 * Start from the reference distribution N(0, sigma^2) and ascend the target class's logit
 * through the network's input gradient, with the step rules and stop options of the
 * paper's Table 2. Samples are clamped to the data range after every step. */
#ifndef ICN_SYNTH_H
#define ICN_SYNTH_H
#include <stdint.h>

#include "losses.h"
#include "net.h"
#include "optim.h"
#include "util.h"
#include "batch.h"

typedef enum {
    ICN_STOP_POSITIVE = 1,  /* option 1: stop once classified as the target class */
    ICN_STOP_THRESHOLD = 2, /* option 2: stop once the target logit exceeds a threshold */
    ICN_STOP_FIXED = 3      /* option 3: always take max_steps */
} icn_stop_rule;

typedef struct {
    double sigma;      /* reference distribution N(0, sigma^2); 0.3 */
    double lr;         /* step size; 0.02 */
    int max_steps;     /* cap on steps; 100 */
    icn_stop_rule stop;
    double threshold;  /* option 2: logit threshold; 2 */
    int adam;          /* 1: Adam (beta1 = 0.5, as the paper) ; 0: plain SGD on the gradient */
    int langevin;      /* SGD-Langevin: add N(0, lr_t) noise, lr_t annealed linearly to lr/10 */
    int noise_only;    /* ICN-noise ablation: the raw reference samples, no ascent */
    float lo, hi;      /* data range; [-1, 1] */
    icn_head head;     /* what "classified positive" means (option 1) */
} icn_synth_opts;

void icn_synth_opts_default(icn_synth_opts *o);
/* Parse the update method, "sgd" or "langevin", into o->langevin; -1 on any other name. */
int icn_synth_parse_method(const char *s, icn_synth_opts *o);

/* One slot of the batch: the sample it holds and that sample's own state. */
typedef struct {
    int64_t sample; /* index into the call's outputs */
    int steps;      /* ascent steps taken (its Adam step count) */
    icn_rng rng;    /* its noise: the start and Langevin's, from its own seed */
} icn_synth_slot;

typedef struct {
    int batch;
    icn_work *work;
    icn_optim adam;       /* moments for batch images: slot i owns [i d, (i+1) d) */
    float *x, *dx, *dlogits;
    icn_synth_slot *slot; /* [batch]; slots [0, active) are in use */
    int64_t passes, rows; /* forward passes run and images in them, since icn_synth_new */
    /* Checked after every forward and every backward pass when set (twice a step, so that a
     * snapshot waits at most half a step to be seen): nonzero abandons the call (online
     * synthesis: a new snapshot has arrived, so the samples in flight are of an old
     * generation). */
    int (*interrupt)(void *ctx);
    void *interrupt_ctx;
} icn_synth;

icn_synth *icn_synth_new(const icn_net *net, int batch);
void icn_synth_free(icn_synth *s);

/* Synthesize n pseudo-negatives of class k (n may exceed the batch). Every forward pass works
 * on up to `batch` samples that are still moving: a sample that met the stop rule (or used its
 * max_steps) is written out at once and its slot takes the next fresh sample, so the batch
 * stays full until the last batch-worth drains. Sample j (0 <= j < n) is the number
 * first_index + j of (seed, generation, k, producer): its noise comes from its own seed
 * icn_synth_seed(seed, generation, k, first_index + j, producer) and its Adam state is its
 * own, so it does not depend on which samples share its passes, nor on the batch size.
 * Writes images to x_out [n, h, w, c] and provenance (steps used, final logit, whether the
 * stop rule was met, generation and producer). Returns the number that met the stop rule, or
 * -1 when s->interrupt stopped it (x_out and prov are then incomplete). */
int icn_synthesize(icn_synth *s, const icn_net *net, int k, int64_t n, const icn_synth_opts *o, uint64_t seed,
                   int64_t first_index, float *x_out, icn_provenance *prov, int32_t generation, uint32_t producer);

/* The seed of one sample: a hash of what identifies it, so runs are reproducible whatever the
 * order and grouping in which samples are made. */
uint64_t icn_synth_seed(uint64_t seed, int64_t generation, int k, int64_t index, uint32_t producer);

#endif
