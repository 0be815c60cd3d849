/* net.h: a network = a named architecture + one contiguous parameter buffer.
 *
 * Architectures are written as a spec string. "mnist" is the paper's MNIST net:
 * 4 convolutions 5x5 stride 2 (padding 2, so 28 -> 14 -> 7 -> 4 -> 2) with 64/128/256/512
 * channels, LeakyReLU(0.2) after each, no pooling, flattened into a linear layer with one
 * output per class. A custom stack is "c8-c16" (the same 5x5 stride-2 blocks with 8 and 16
 * channels): small nets for tests and quick runs.
 *
 * "resnet32" is the pre-activation residual network of He et al. ("Identity Mappings in Deep
 * Residual Networks", the paper's reference [13]) for 32x32 images: a 3x3 convolution to 16
 * channels, 3 stages of 5 residual blocks (layers.h: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a
 * shortcut) with 16, 32 and 64 channels, the first block of stages 2 and 3 with stride 2 and a
 * 1x1 projection shortcut, then BN-ReLU, global average pooling and a linear layer. "resnetN"
 * for any N = 6n+2 has n blocks per stage ("resnet8": one). Any input size works (28x28 MNIST
 * becomes 28, 14, 7 across the stages). Its convolutions have no bias; ReLU, not LeakyReLU.
 * "resnetN-gn" is the same network with group normalization (groupnorm.h: 8 groups, per image)
 * in place of every batch normalization: a ResNet without batch statistics, whose output for an
 * image does not depend on the rest of its batch, with no running statistics (no state), and
 * the same in training and inference (so the training modes below change nothing for it).
 * "resnetN-fixup" has no normalization at all, initialized as Fixup (Zhang, Dauphin, Ma, "Fixup
 * Initialization: Residual Learning Without Normalization", ICLR 2019): ReLU after the stem,
 * blocks x + scale conv2(ReLU(conv1(x + b1a) + b1b) + b2a) + b2b (layers.h, ICN_NORM_NONE) with
 * conv1 He-normal times L^(-1/2) (L blocks), conv2 zero, ReLU before the pooling, and the linear
 * layer zero; no state, the same in training and inference.
 *
 * All parameters live in one float buffer (a snapshot is one copy), carved per layer into
 * weight and bias by offsets. The trainable ones come first, [0, n_trainable), and gradients
 * use that layout; after them, [n_trainable, n_params), is state that training updates but the
 * optimizer never touches: the batchnorm running means and variances. */
#ifndef ICN_NET_H
#define ICN_NET_H
#include <stddef.h>
#include <stdint.h>

#include "layers.h"

#define ICN_MAX_LAYERS 64
#define ICN_MAX_CONV_BLOCKS 15 /* blocks of a "cA-cB-..." stack */
#define ICN_ARCH_LEN 64

typedef enum { ICN_LAYER_CONV, ICN_LAYER_LINEAR, ICN_LAYER_BLOCK, ICN_LAYER_BN, ICN_LAYER_GN, ICN_LAYER_POOL } icn_layer_kind;

/* Every layer's shape per image: input h x w x c, output oh x ow x oc. A linear layer is
 * 1 x 1 x (in features) -> 1 x 1 x (out features). */
typedef struct {
    int h, w, c;
    int oh, ow, oc;
} icn_layer_shape;

typedef struct {
    icn_layer_kind kind;
    icn_layer_shape io;    /* every layer */
    icn_conv_shape conv;   /* conv only: kernel, stride and padding as well */
    icn_block_shape block; /* block: its shape and parameter layout */
    int leaky;             /* LeakyReLU after this layer */
    int relu;              /* ReLU after this layer (fused into batch and group norm's) */
    int bias;              /* conv, linear: has a bias */
    size_t w_off, b_off;   /* offsets into params: weight, bias; block: its parameters; batchnorm and group
                            * norm: gamma, beta */
    size_t s_off;          /* block, batchnorm: offset of the running statistics */
    size_t in_size, out_size; /* per image */
} icn_layer;

typedef struct {
    char arch[ICN_ARCH_LEN];
    int in_h, in_w, in_c, classes;
    int n_layers;
    icn_layer layer[ICN_MAX_LAYERS];
    size_t n_params;    /* all of params: what a snapshot carries */
    size_t n_trainable; /* params[0, n_trainable): what the optimizer, clipping and weight decay see */
    float *params;
} icn_net;

/* Build the layer list for `arch` on inputs h x w x c with `classes` outputs, and allocate
 * (zeroed) parameters. -1 with err on an unknown or impossible architecture. */
int icn_net_build(icn_net *net, const char *arch, int h, int w, int c, int classes, char *err, size_t errlen);
/* icn_net_build without allocating params (left NULL): the layout and n_params only, so that a
 * parameter count declared by an untrusted file is checked against its bytes before any
 * allocation. icn_net_build is icn_net_plan plus the allocation. */
int icn_net_plan(icn_net *net, const char *arch, int h, int w, int c, int classes, char *err, size_t errlen);
/* PyTorch's default initialisation: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in));
 * batchnorm gamma 1, beta 0, running mean 0, running variance 1. */
void icn_net_init(icn_net *net, uint64_t seed);
void icn_net_free(icn_net *net);
size_t icn_net_input_size(const icn_net *net); /* h*w*c */

/* Per-batch scratch, allocated once for up to max_batch images: no allocation in the hot loop. */
typedef struct {
    int max_batch, n, n_layers;
    /* 0 (the default): inference, batchnorm uses the running statistics: evaluation, prediction,
     * synthesis, FGSM. 1: training, batchnorm uses the batch's statistics and forward updates the
     * running ones; icn_train_step sets it for its forward and backward. 2: training on the
     * batch's statistics without touching the running ones (the pseudo-negatives' pass of a step
     * whose batch norm sees them as a batch of their own, train.h). */
    int training;
    const float *input;   /* the x of the last forward */
    float **act;          /* act[i]: output of layer i (after its LeakyReLU), [n, out_size] */
    icn_conv **conv;      /* conv[i]: conv layer i's engine (conv.h) */
    float **stats;        /* stats[i]: batchnorm or group norm layer i's statistics */
    icn_block_buffers *block; /* block[i]: what block layer i keeps for backward */
    icn_partials partials; /* per-thread sums of weight gradients and batchnorm statistics, and the
                            * convolutions' per-call scratch: shared by all layers */
    float *dact_a, *dact_b; /* ping-pong gradient buffers, sized for the largest activation */
    float *dtmp;          /* scratch of the same size, inside a block's backward */
    float *grad;          /* [n_trainable], same layout as params */
    float *grad_acc;      /* [n_trainable]: a split step's first pass (train.h); allocated on first use */
} icn_work;

icn_work *icn_work_new(const icn_net *net, int max_batch);
void icn_work_free(icn_work *w);

/* x [n, h, w, c] -> logits [n, classes] (a pointer into w; valid until the next forward). */
const float *icn_forward(const icn_net *net, icn_work *w, const float *x, int n);
/* Back-propagate dlogits [n, classes] through the last forward, in the mode of that forward.
 * If param_grads, w->grad is zeroed and filled; if dx is non-NULL it receives d/dx [n, h, w, c]. */
void icn_backward(const icn_net *net, icn_work *w, const float *dlogits, int param_grads, float *dx);

/* Logits for a whole data set in batches of w->max_batch; out [n, classes]. */
void icn_predict(const icn_net *net, icn_work *w, const float *x, int n, float *out);

#endif
