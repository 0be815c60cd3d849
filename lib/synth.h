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

typedef struct {
    int batch;
    icn_work *work;
    icn_optim adam;
    float *x, *dx, *dlogits;
    uint8_t *active;
} icn_synth;

icn_synth *icn_synth_new(const icn_net *net, int batch);
void icn_synth_free(icn_synth *s);

/* Synthesize n <= batch pseudo-negatives of class k. Writes images to x_out [n, h, w, c]
 * and provenance (steps used, final logit, whether the stop rule was met; generation and
 * producer as given). Returns the number that met the stop rule. */
int icn_synthesize(icn_synth *s, const icn_net *net, int k, int n, const icn_synth_opts *o, icn_rng *rng,
                   float *x_out, icn_provenance *prov, int32_t generation, uint32_t producer);

/* A seed for one batch that depends only on what identifies it, so runs are reproducible
 * whatever the order in which batches are made. */
uint64_t icn_synth_seed(uint64_t seed, int64_t generation, int k, int64_t index, uint32_t producer);

#endif
