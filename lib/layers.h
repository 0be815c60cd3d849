/* layers.h: forward and backward passes of each layer type, on channels-last (NHWC) tensors.
 *
 * Each layer is a pair x_forward / x_backward with its shapes in the comment. Backward
 * functions compute the gradient with respect to the input (needed by synthesis, which
 * ascends the input) and, when the parameter-gradient pointers are non-NULL, with respect
 * to the weights; parameter gradients are ACCUMULATED (+=) so callers zero them once per step.
 *
 * Convolutions are conv.h's (the residual block's engines are made here). Products that are too
 * thin to profit from OpenBLAS threads (a 10-way linear layer) are split across threads by
 * icn_gemm (gemm.h) instead. */
#ifndef ICN_LAYERS_H
#define ICN_LAYERS_H
#include <stddef.h>

#include "conv.h"
#include "groupnorm.h"
#include "parallel.h"

#define ICN_LRELU_SLOPE 0.2f

/* LeakyReLU with slope ICN_LRELU_SLOPE, in place is fine: out may equal in.
 * Backward uses the output (its sign is the input's), so it works after an in-place forward:
 * dinout [count] is scaled in place. Split across the threads (parallel.h), as ReLU's: call
 * them from the caller's thread, not from inside another icn_parallel_for job. */
void icn_lrelu_forward(float *out, const float *in, size_t count);
void icn_lrelu_backward(float *dinout, const float *out, size_t count);

/* ReLU (the residual network's; the MNIST net keeps LeakyReLU), in place like LeakyReLU. */
void icn_relu_forward(float *out, const float *in, size_t count);
void icn_relu_backward(float *dinout, const float *out, size_t count);

/* Batch normalization per channel, exactly PyTorch's BatchNorm2d: in [R, C] -> out [R, C] with
 * R = N*H*W (channels last, so rows are pixels). gb = [gamma C | beta C] (trainable), running =
 * [mean C | var C] (state). stats [ICN_BN_STATS * C]: the forward's mean and 1/sqrt(var + eps),
 * then per-channel coefficients that both passes use as scratch.
 *   training:  y = gamma (x - mu_B) / sqrt(sigma2_B + eps) + beta with the batch's mean and biased
 *              variance (Ioffe & Szegedy 2015, Alg. 1); running <- (1 - momentum) running +
 *              momentum * batch, with the UNBIASED variance sigma2_B * R / (R - 1).
 *              training 2: the same with the batch's statistics, running is not touched.
 *   inference: the same map with the running mean and variance; running is not touched.
 * partials: the per-thread sums of the statistics (parallel.h; NULL: its own). */
#define ICN_BN_EPS 1e-5f
#define ICN_BN_MOMENTUM 0.1f
#define ICN_BN_STATS 6
/* relu: out = max(0, out) in the same pass (what icn_relu_forward would do after it). */
void icn_batchnorm_forward(float *out, float *stats, const float *in, const float *gb, float *running, long rows, int c,
                           int training, int relu, icn_partials *partials);
/* dout [R, C] -> din [R, C] (may equal dout; NULL: skip), dgb [2C] += (NULL: skip); in and stats
 * as the forward left them. training: the full gradient through the batch statistics,
 * din = gamma/sigma (dout - mean(dout) - xhat mean(dout xhat)) (Ioffe & Szegedy, Sec. 3);
 * inference: the per-channel affine map din = gamma/sigma dout. */
void icn_batchnorm_backward(float *din, float *dgb, float *stats, const float *dout, const float *in, const float *gb,
                            long rows, int c, int training, icn_partials *partials);

/* Global average pooling: in [N, HW, C] -> out [N, C]; dout [N, C] -> din [N, HW, C]. */
void icn_avgpool_forward(float *out, const float *in, int n, int hw, int c);
void icn_avgpool_backward(float *din, const float *dout, int n, int hw, int c);

/* Pre-activation residual block (He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual
 * Networks", Fig. 4(e), the paper's reference [13]), in [N,H,W,C] -> out [N,OH,OW,OC]:
 *   a = ReLU(BN1(x));  out = conv2(ReLU(BN2(conv1(a)))) + shortcut
 * conv1 is 3x3 with stride s, conv2 3x3 stride 1, both padding 1 and without bias (BN's beta is
 * the bias). shortcut = x when the shape is kept; when it changes (s = 2 or C != OC), a 1x1
 * stride-s projection convolution of the pre-activated input a (option B of He et al. 2015,
 * applied after the shared pre-activation as in the authors' pre-activation code).
 * ICN_NORM_GROUP: BN1 and BN2 are group normalizations instead (groupnorm.h: per image, no
 * state), the same gamma and beta layout; training and inference are then the same map.
 * ICN_NORM_NONE: the Fixup block (Zhang, Dauphin, Ma, ICLR 2019, Sec. 3 "Fixup initialization",
 * rule 3: scalar biases before each convolution and activation, a scalar multiplier after the
 * branch), with no normalization and no pre-activation ReLU (the stream gets its ReLU after the
 * stem, net.h), five scalars beside the convolutions:
 *   a = x + bias1a;  out = scale * conv2(ReLU(conv1(a) + bias1b) + bias2a) + bias2b + shortcut
 * shortcut = x, or the projection of a (as the Fixup authors' code). No state; training and
 * inference are the same map. */
typedef enum { ICN_NORM_BATCH, ICN_NORM_GROUP, ICN_NORM_NONE } icn_norm;
#define ICN_FIXUP_SCALARS 5 /* bias1a, bias1b, bias2a, scale, bias2b */
typedef struct {
    int h, w, c, oh, ow, oc;
    icn_norm norm;
    icn_conv_shape conv1, conv2, proj; /* proj.k == 0: identity shortcut */
    /* Trainable parameters, one run of n_params floats, at these offsets: BN1 gamma and beta
     * (2C), conv1 weight, BN2 gamma and beta (2 OC), conv2 weight, projection weight (OC x C),
     * Fixup's scalars (ICN_FIXUP_SCALARS, in that order). With ICN_NORM_NONE the gamma and beta
     * runs are empty (gb1 == w1, gb2 == w2); otherwise the scalars' run is empty (fx == n_params).
     * State, n_state floats: BN1 running mean and var (2C), then BN2's (2 OC); none otherwise. */
    size_t gb1, w1, gb2, w2, wp, fx, n_params, n_state;
} icn_block_shape;
void icn_block_shape_init(icn_block_shape *b, int h, int w, int c, int oc, int stride);
/* The same with the given normalization (icn_block_shape_init is ICN_NORM_BATCH). */
void icn_block_shape_init_norm(icn_block_shape *b, int h, int w, int c, int oc, int stride, icn_norm norm);

/* What a block's forward keeps for its backward, for a batch of N. */
typedef struct {
    float *a;               /* ReLU(BN1(x)) [N,H,W,C]; Fixup: x + bias1a */
    float *h, *b;           /* conv1's output and ReLU(BN2(h)) [N,OH,OW,OC]; Fixup: conv1(a) + bias1b
                             * and ReLU(h) + bias2a */
    float *stats1, *stats2; /* batchnorm stats [ICN_BN_STATS * C], [ICN_BN_STATS * OC]; group norm's
                             * [icn_groupnorm_stats_size(N, C)], [.. (N, OC)]; Fixup: none */
    float *dw2;             /* Fixup: conv2's weight gradient before the multiplier [OC * 9 OC] (its
                             * inner product with the weight is d scale); NULL otherwise */
    icn_conv *conv[3];      /* conv1, conv2, projection (NULL: identity shortcut); the reference's
                             * memory plan is chunk by chunk (conv.h) */
    icn_partials *partials; /* batchnorm's per-thread sums and the convolutions' scratch, shared by
                             * all blocks (NULL: their own) */
} icn_block_buffers;
/* Allocate them for max_batch images (one allocation, and the convolutions' engines; partials
 * are the caller's). */
void icn_block_buffers_new(icn_block_buffers *buf, const icn_block_shape *b, int max_batch, icn_partials *partials);
void icn_block_buffers_free(icn_block_buffers *buf);

/* p: the block's trainable parameters; state: its running statistics (updated in training; unused
 * without batch norm, and training makes no difference then). */
void icn_block_forward(float *out, const icn_block_buffers *buf, const float *in, const float *p, float *state,
                   const icn_block_shape *s, int n, int training);
/* dout [N,OH,OW,OC] -> din [N,H,W,C] (required), dp += (NULL: skip). tmp [N*OH*OW*OC] is scratch;
 * dout is not modified. */
void icn_block_backward(float *din, float *dp, float *tmp, const float *dout, const float *in, const icn_block_buffers *buf,
                    const float *p, const icn_block_shape *s, int n, int training);

/* linear: in [N, I] -> out [N, O]; weight [O, I], bias [O]. Flatten is a view: an NHWC
 * activation [N,H,W,C] is already the row-major matrix [N, H*W*C]. */
void icn_linear_forward(float *out, const float *in, const float *weight, const float *bias, int n, int in_dim,
                    int out_dim);
void icn_linear_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in,
                         const float *weight, int n, int in_dim, int out_dim, icn_partials *partials);

#endif
