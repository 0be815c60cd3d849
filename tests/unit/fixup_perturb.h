/* fixup_perturb.h: moves a "resnetN-fixup" net's zero-initialised parameters (its residual
 * branches' last convolutions, the linear layer, the scalar biases) and the multipliers off their
 * initial values, so that every gradient through them is nonzero and every term is checked.
 * Shared by the tests that compare its gradients. Include after net.h and util.h. */
#ifndef ICN_TEST_FIXUP_PERTURB_H
#define ICN_TEST_FIXUP_PERTURB_H
#include <math.h>

static void fixup_perturb(icn_net *net, icn_rng *r) {
    for (int i = 0; i < net->n_layers; i++) {
        const icn_layer *l = &net->layer[i];
        float *p = net->params + l->w_off;
        const icn_block_shape *b = &l->block;
        if (l->kind == ICN_LAYER_BLOCK && b->norm == ICN_NORM_NONE) {
            const double sd = 1.0 / sqrt((double)icn_conv_kdim(&b->conv2));
            for (size_t k = b->w2; k < b->wp; k++) p[k] = (float)(icn_rng_gauss(r) * sd);
            for (size_t k = b->fx; k < b->fx + ICN_FIXUP_SCALARS; k++) p[k] += (float)(0.2 * icn_rng_gauss(r));
            p[b->fx + 3] += 0.5f; /* the multiplier well away from 1 */
        }
        if (l->kind == ICN_LAYER_LINEAR) {
            const double sd = 1.0 / sqrt((double)l->in_size);
            for (size_t k = 0; k < l->in_size * l->out_size; k++) p[k] = (float)(icn_rng_gauss(r) * sd);
            for (size_t k = 0; k < l->out_size; k++) net->params[l->b_off + k] = (float)(0.1 * icn_rng_gauss(r));
        }
    }
}

#endif
