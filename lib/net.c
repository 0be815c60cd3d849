#include "net.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "groupnorm.h"
#include "util.h"

static const struct { const char *name, *spec; } named_archs[] = {
    {"mnist", "c64-c128-c256-c512"}, /* the paper's MNIST net */
};

static const char *arch_spec(const char *arch) {
    for (size_t i = 0; i < sizeof named_archs / sizeof named_archs[0]; i++)
        if (!strcmp(arch, named_archs[i].name)) return named_archs[i].spec;
    return arch;
}

static size_t add_params(icn_net *net, icn_layer *l, size_t n_weights, size_t n_bias) {
    l->w_off = net->n_params;
    l->b_off = net->n_params + n_weights;
    net->n_params += n_weights + n_bias;
    return net->n_params;
}

/* A layer's shape from its input h x w x c and output oh x ow x oc. */
static void set_io(icn_layer *l, int h, int w, int c, int oh, int ow, int oc) {
    l->io = (icn_layer_shape){h, w, c, oh, ow, oc};
    l->in_size = (size_t)h * w * c;
    l->out_size = (size_t)oh * ow * oc;
}

/* "c64-c128-...": 5x5 stride-2 convolutions with bias and LeakyReLU. */
static int build_stack(icn_net *net, const char *arch, int *h, int *w, int *c, size_t *n_state, char *err,
                       size_t errlen) {
    (void)n_state; /* no state */
    const char *p = arch_spec(arch);
    while (*p) {
        char *end;
        long ch = (*p == 'c') ? strtol(p + 1, &end, 10) : 0;
        if (*p != 'c' || end == p + 1 || ch < 1 || ch > 8192 || (*end && *end != '-'))
            return icn_errf(err, errlen, "architecture '%s': expected 'mnist', 'resnetN' or blocks like c64-c128", arch);
        if (net->n_layers >= ICN_MAX_CONV_BLOCKS) return icn_errf(err, errlen, "architecture '%s': too many layers", arch);
        icn_layer *l = &net->layer[net->n_layers++];
        l->kind = ICN_LAYER_CONV;
        l->leaky = 1;
        l->bias = 1;
        icn_conv_shape *s = &l->conv;
        *s = icn_conv_shape_of(*h, *w, *c, (int)ch, 5, 2, 2);
        if (s->oh < 1 || s->ow < 1) return icn_errf(err, errlen, "architecture '%s': input %dx%d too small", arch, net->in_h, net->in_w);
        add_params(net, l, (size_t)s->oc * icn_conv_kdim(s), (size_t)s->oc);
        set_io(l, *h, *w, *c, s->oh, s->ow, s->oc);
        *h = s->oh, *w = s->ow, *c = s->oc;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* Running statistics go after all trainable parameters: offsets counted from 0 here, moved
 * past n_trainable once every layer is in. */
static void add_state(icn_layer *l, size_t n, size_t *n_state) {
    l->s_off = *n_state;
    *n_state += n;
}

/* "resnetN", N = 6n + 2: the pre-activation ResNet of net.h with n blocks per stage; "resnetN-gn":
 * with group normalization; "resnetN-fixup": without normalization (Fixup). */
static int build_resnet(icn_net *net, const char *arch, int *h, int *w, int *c, size_t *n_state, char *err,
                        size_t errlen) {
    char *end;
    long depth = strtol(arch + 6, &end, 10);
    const icn_norm norm = !*end ? ICN_NORM_BATCH : !strcmp(end, "-gn") ? ICN_NORM_GROUP : ICN_NORM_NONE;
    if (end == arch + 6 || !isdigit((unsigned char)arch[6]) || (*end && strcmp(end, "-gn") && strcmp(end, "-fixup")) ||
        depth < 8 || (depth - 2) % 6)
        return icn_errf(err, errlen,
                        "architecture '%s': resnetN needs N = 6n+2 with n >= 1 (resnet8, resnet20, resnet32, ...), "
                        "then -gn for group normalization or -fixup for none",
                        arch);
    int blocks = (int)((depth - 2) / 6);
    if (3 * blocks + 4 > ICN_MAX_LAYERS) return icn_errf(err, errlen, "architecture '%s': too many layers", arch);
    icn_layer *l = &net->layer[net->n_layers++]; /* stem: 3x3 convolution to 16 channels */
    l->kind = ICN_LAYER_CONV;
    l->relu = norm == ICN_NORM_NONE; /* Fixup: the stream starts with ReLU(stem) */
    l->conv = icn_conv_shape_of(*h, *w, *c, 16, 3, 1, 1);
    add_params(net, l, (size_t)16 * icn_conv_kdim(&l->conv), 0);
    set_io(l, *h, *w, *c, *h, *w, 16);
    *c = 16;
    for (int stage = 0; stage < 3; stage++)
        for (int b = 0; b < blocks; b++) {
            l = &net->layer[net->n_layers++];
            l->kind = ICN_LAYER_BLOCK;
            icn_block_shape_init_norm(&l->block, *h, *w, *c, 16 << stage, stage > 0 && b == 0 ? 2 : 1, norm);
            add_params(net, l, l->block.n_params, 0);
            add_state(l, l->block.n_state, n_state);
            set_io(l, *h, *w, *c, l->block.oh, l->block.ow, l->block.oc);
            *h = l->block.oh, *w = l->block.ow, *c = l->block.oc;
        }
    if (norm == ICN_NORM_NONE) { /* Fixup: ReLU before the pooling, on the last block */
        l->relu = 1;
    } else { /* BN-ReLU (GN-ReLU) before the pooling */
        l = &net->layer[net->n_layers++];
        l->kind = norm == ICN_NORM_GROUP ? ICN_LAYER_GN : ICN_LAYER_BN;
        l->relu = 1;
        add_params(net, l, 2 * (size_t)*c, 0);
        if (norm == ICN_NORM_BATCH) add_state(l, 2 * (size_t)*c, n_state);
        set_io(l, *h, *w, *c, *h, *w, *c);
    }
    l = &net->layer[net->n_layers++];
    l->kind = ICN_LAYER_POOL;
    set_io(l, *h, *w, *c, 1, 1, *c);
    *h = *w = 1;
    return 0;
}

int icn_net_plan(icn_net *net, const char *arch, int h, int w, int c, int classes, char *err, size_t errlen) {
    memset(net, 0, sizeof *net);
    if (strlen(arch) >= ICN_ARCH_LEN) return icn_errf(err, errlen, "architecture name '%.20s...' is too long", arch);
    if (h < 1 || w < 1 || c < 1 || h > 4096 || w > 4096 || c > 4096)
        return icn_errf(err, errlen, "input shape %dx%dx%d is out of range", h, w, c);
    if (classes < 1 || classes > 100000) return icn_errf(err, errlen, "class count %d is out of range", classes);
    snprintf(net->arch, sizeof net->arch, "%s", arch);
    net->in_h = h, net->in_w = w, net->in_c = c, net->classes = classes;
    size_t n_state = 0;
    int resnet = !strncmp(arch, "resnet", 6);
    if ((resnet ? build_resnet : build_stack)(net, arch, &h, &w, &c, &n_state, err, errlen)) return -1;
    icn_layer *l = &net->layer[net->n_layers++];
    l->kind = ICN_LAYER_LINEAR;
    l->bias = 1;
    set_io(l, 1, 1, (int)((size_t)h * w * c), 1, 1, classes); /* flatten is a view: in features = h*w*c */
    l->in_size = (size_t)h * w * c;
    add_params(net, l, l->in_size * classes, (size_t)classes);
    net->n_trainable = net->n_params;
    net->n_params += n_state;
    for (int i = 0; i < net->n_layers; i++)
        if (net->layer[i].kind == ICN_LAYER_BLOCK || net->layer[i].kind == ICN_LAYER_BN) net->layer[i].s_off += net->n_trainable;
    return 0;
}

int icn_net_build(icn_net *net, const char *arch, int h, int w, int c, int classes, char *err, size_t errlen) {
    if (icn_net_plan(net, arch, h, w, c, classes, err, errlen)) return -1;
    net->params = xcalloc(net->n_params, sizeof(float));
    return 0;
}

static void init_uniform(float *x, size_t n, size_t fan_in, icn_rng *rng) {
    float bound = 1.0f / sqrtf((float)fan_in);
    for (size_t j = 0; j < n; j++) x[j] = (float)((2.0 * icn_rng_uniform(rng) - 1.0) * bound);
}

/* gamma 1, beta 0; running (batch norm's; NULL: group norm's, none) mean 0, variance 1. */
static void init_norm(float *gb, float *running, int c) {
    for (int k = 0; k < c; k++) gb[k] = 1.0f, gb[c + k] = 0.0f;
    if (running)
        for (int k = 0; k < c; k++) running[k] = 0.0f, running[c + k] = 1.0f;
}

/* He et al. 2015's normal initialization, N(0, 2 / fan) (fan: the output channels times the
 * kernel's area, as the Fixup authors' code), times gain. */
static void init_he_normal(float *x, size_t n, size_t fan, double gain, icn_rng *rng) {
    const double sd = sqrt(2.0 / (double)fan) * gain;
    for (size_t j = 0; j < n; j++) x[j] = (float)(icn_rng_gauss(rng) * sd);
}

/* Fixup's block (Zhang et al. 2019, Sec. 3, rules 2 and 3, m = 2 layers a branch, L branches):
 * conv1 He-normal scaled by L^(-1/(2m-2)) = L^(-1/2), conv2 zero, the scalar biases 0 and the
 * multiplier 1; the projection as the batch-norm block's. */
static void init_fixup_block(float *p, const icn_block_shape *b, int branches, icn_rng *rng) {
    init_he_normal(p + b->w1, b->gb2 - b->w1, (size_t)b->oc * b->conv1.k * b->conv1.k, pow(branches, -0.5), rng);
    memset(p + b->w2, 0, (b->wp - b->w2) * sizeof(float));
    if (b->proj.k) init_uniform(p + b->wp, b->fx - b->wp, icn_conv_kdim(&b->proj), rng);
    memset(p + b->fx, 0, ICN_FIXUP_SCALARS * sizeof(float));
    p[b->fx + 3] = 1.0f; /* scale */
}

void icn_net_init(icn_net *net, uint64_t seed) {
    icn_rng rng;
    icn_rng_seed(&rng, seed);
    int fixup = 0; /* L, the Fixup blocks (residual branches) */
    for (int i = 0; i < net->n_layers; i++)
        fixup += net->layer[i].kind == ICN_LAYER_BLOCK && net->layer[i].block.norm == ICN_NORM_NONE;
    for (int i = 0; i < net->n_layers; i++) {
        const icn_layer *l = &net->layer[i];
        float *p = net->params + l->w_off, *state = net->params + l->s_off;
        const icn_block_shape *b = &l->block;
        const size_t run = l->b_off + (l->bias ? (size_t)l->io.oc : 0) - l->w_off; /* conv, linear: weight and bias */
        switch (l->kind) {
        case ICN_LAYER_CONV: init_uniform(p, run, icn_conv_kdim(&l->conv), &rng); break;
        case ICN_LAYER_LINEAR: /* Fixup: zero (its rule 1) */
            if (fixup)
                memset(p, 0, run * sizeof(float));
            else
                init_uniform(p, run, l->in_size, &rng);
            break;
        case ICN_LAYER_BLOCK:
            if (b->norm == ICN_NORM_NONE) {
                init_fixup_block(p, b, fixup, &rng);
                break;
            }
            init_norm(p + b->gb1, b->norm == ICN_NORM_BATCH ? state : NULL, b->c);
            init_uniform(p + b->w1, b->gb2 - b->w1, icn_conv_kdim(&b->conv1), &rng);
            init_norm(p + b->gb2, b->norm == ICN_NORM_BATCH ? state + 2 * b->c : NULL, b->oc);
            init_uniform(p + b->w2, b->wp - b->w2, icn_conv_kdim(&b->conv2), &rng);
            if (b->proj.k) init_uniform(p + b->wp, b->fx - b->wp, icn_conv_kdim(&b->proj), &rng);
            break;
        case ICN_LAYER_BN: init_norm(p, state, l->io.c); break;
        case ICN_LAYER_GN: init_norm(p, NULL, l->io.c); break;
        case ICN_LAYER_POOL: break;
        }
    }
}

void icn_net_free(icn_net *net) {
    free(net->params);
    net->params = NULL;
}

size_t icn_net_input_size(const icn_net *net) { return (size_t)net->in_h * net->in_w * net->in_c; }

icn_work *icn_work_new(const icn_net *net, int max_batch) {
    icn_work *w = xcalloc(1, sizeof *w);
    w->max_batch = max_batch;
    w->n_layers = net->n_layers;
    w->act = xcalloc((size_t)net->n_layers, sizeof *w->act);
    w->conv = xcalloc((size_t)net->n_layers, sizeof *w->conv);
    w->stats = xcalloc((size_t)net->n_layers, sizeof *w->stats);
    w->block = xcalloc((size_t)net->n_layers, sizeof *w->block);
    size_t max_act = icn_net_input_size(net);
    for (int i = 0; i < net->n_layers; i++) {
        const icn_layer *l = &net->layer[i];
        w->act[i] = xmalloc((size_t)max_batch * l->out_size * sizeof(float));
        if (l->out_size > max_act) max_act = l->out_size;
        if (l->kind == ICN_LAYER_CONV) {
            const icn_conv_opts opts = {.bias = l->bias, .type = ICN_CONV_F32, .scratch = &w->partials};
            w->conv[i] = icn_conv_new(&l->conv, &opts, max_batch);
        }
        if (l->kind == ICN_LAYER_BN) w->stats[i] = xmalloc(ICN_BN_STATS * (size_t)l->io.c * sizeof(float));
        if (l->kind == ICN_LAYER_GN) w->stats[i] = xmalloc(icn_groupnorm_stats_size(max_batch, l->io.c) * sizeof(float));
        if (l->kind == ICN_LAYER_BLOCK) icn_block_buffers_new(&w->block[i], &l->block, max_batch, &w->partials);
    }
    w->dact_a = xmalloc((size_t)max_batch * max_act * sizeof(float));
    w->dact_b = xmalloc((size_t)max_batch * max_act * sizeof(float));
    w->dtmp = xmalloc((size_t)max_batch * max_act * sizeof(float));
    w->grad = xcalloc(net->n_trainable, sizeof(float));
    return w;
}

void icn_work_free(icn_work *w) {
    if (!w) return;
    for (int i = 0; i < w->n_layers; i++) {
        free(w->act[i]);
        icn_conv_free(w->conv[i]);
        free(w->stats[i]);
        icn_block_buffers_free(&w->block[i]);
    }
    free(w->act);
    free(w->conv);
    free(w->stats);
    free(w->block);
    icn_partials_free(&w->partials);
    free(w->dact_a);
    free(w->dact_b);
    free(w->dtmp);
    free(w->grad);
    free(w->grad_acc);
    free(w);
}

const float *icn_forward(const icn_net *net, icn_work *w, const float *x, int n) {
    if (n > w->max_batch) icn_die(3, "internal: batch of %d exceeds workspace of %d", n, w->max_batch);
    w->input = x;
    w->n = n;
    const float *in = x;
    for (int i = 0; i < net->n_layers; i++) {
        const icn_layer *l = &net->layer[i];
        const float *wt = net->params + l->w_off, *b = l->bias ? net->params + l->b_off : NULL;
        float *state = net->params + l->s_off; /* running statistics: updated in training mode */
        float *out = w->act[i];
        const long pixels = (long)n * l->io.h * l->io.w;
        switch (l->kind) {
        case ICN_LAYER_CONV: icn_conv_forward(w->conv[i], out, in, wt, b, n, 0.0f); break;
        case ICN_LAYER_LINEAR: icn_linear_forward(out, in, wt, b, n, (int)l->in_size, (int)l->out_size); break;
        case ICN_LAYER_BLOCK: icn_block_forward(out, &w->block[i], in, wt, state, &l->block, n, w->training); break;
        case ICN_LAYER_BN:
            icn_batchnorm_forward(out, w->stats[i], in, wt, state, pixels, l->io.c, w->training, l->relu, &w->partials);
            break;
        case ICN_LAYER_GN: icn_groupnorm_forward(out, w->stats[i], in, wt, n, (long)l->io.h * l->io.w, l->io.c, l->relu); break;
        case ICN_LAYER_POOL: icn_avgpool_forward(out, in, n, l->io.h * l->io.w, l->io.c); break;
        }
        if (l->leaky) icn_lrelu_forward(out, out, (size_t)n * l->out_size);
        if (l->relu && l->kind != ICN_LAYER_BN && l->kind != ICN_LAYER_GN) /* BN's and GN's: fused */
            icn_relu_forward(out, out, (size_t)n * l->out_size);
        in = out;
    }
    return w->act[net->n_layers - 1];
}

void icn_backward(const icn_net *net, icn_work *w, const float *dlogits, int param_grads, float *dx) {
    const int n = w->n, last = net->n_layers - 1;
    if (param_grads) memset(w->grad, 0, net->n_trainable * sizeof(float));
    float *dout = w->dact_a, *din = w->dact_b;
    memcpy(dout, dlogits, (size_t)n * net->classes * sizeof(float));
    for (int i = last; i >= 0; i--) {
        const icn_layer *l = &net->layer[i];
        const float *wt = net->params + l->w_off;
        float *dw = param_grads ? w->grad + l->w_off : NULL, *db = param_grads && l->bias ? w->grad + l->b_off : NULL;
        const float *in = i > 0 ? w->act[i - 1] : w->input;
        /* The first layer's input gradient is only wanted when synthesis asks for dx. */
        float *din_target = i > 0 ? din : dx;
        const long pixels = (long)n * l->io.h * l->io.w;
        if (l->leaky) icn_lrelu_backward(dout, w->act[i], (size_t)n * l->out_size);
        if (l->relu) icn_relu_backward(dout, w->act[i], (size_t)n * l->out_size);
        switch (l->kind) {
        case ICN_LAYER_CONV: icn_conv_backward(w->conv[i], din_target, 0, dw, db, dout, in, wt, n); break;
        case ICN_LAYER_LINEAR:
            icn_linear_backward(din_target, dw, db, dout, in, wt, n, (int)l->in_size, (int)l->out_size, &w->partials);
            break;
        case ICN_LAYER_BLOCK: /* never the first layer, so din_target is set */
            icn_block_backward(din_target, dw, w->dtmp, dout, in, &w->block[i], wt, &l->block, n, w->training);
            break;
        case ICN_LAYER_BN:
            icn_batchnorm_backward(din_target, dw, w->stats[i], dout, in, wt, pixels, l->io.c, w->training,
                                   &w->partials);
            break;
        case ICN_LAYER_GN:
            icn_groupnorm_backward(din_target, dw, w->stats[i], dout, in, wt, n, (long)l->io.h * l->io.w, l->io.c,
                                   &w->partials);
            break;
        case ICN_LAYER_POOL:
            if (din_target) icn_avgpool_backward(din_target, dout, n, l->io.h * l->io.w, l->io.c);
            break;
        }
        float *t = dout; dout = din; din = t;
    }
}

void icn_predict(const icn_net *net, icn_work *w, const float *x, int n, float *out) {
    size_t d = icn_net_input_size(net);
    for (int i = 0; i < n; i += w->max_batch) {
        int m = n - i < w->max_batch ? n - i : w->max_batch;
        const float *logits = icn_forward(net, w, x + (size_t)i * d, m);
        memcpy(out + (size_t)i * net->classes, logits, (size_t)m * net->classes * sizeof(float));
    }
}
