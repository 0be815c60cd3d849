/* conv.h: convolution, the whole API: the shape and its arithmetic (conv_base.h, included here),
 * and one engine per convolution (new, forward, backward, free) that runs it on one of two paths.
 * This file is the one place that picks the path; beneath it, and never calling each other:
 *   - the reference, im2col + OpenBLAS (conv_ref.h), checked by finite differences;
 *   - the fast path: oneDNN's direct convolutions (conv_dnnl.h), and icn's AVX-512 product for
 *     the convolutions that are matrix products in disguise (conv_gemm.h), both checked against
 *     the reference (tests/unit/test_conv.c).
 * Tensors are channels-last: in [N,H,W,C] -> out [N,OH,OW,OC], weight [OC, K] with K = k*k*C in
 * (kh, kw, c) order, bias [OC]. Parameter gradients ACCUMULATE (+=): callers zero them once per step.
 *
 * Which path, per layer and direction, is a fixed rule (a measurement at setup would make runs
 * depend on the machine's load, and the two paths round differently):
 *   - ICN_CONV=reference in the environment: the reference everywhere (ICN_CONV=fast or unset:
 *     the fast path where it applies; anything else is a usage error);
 *   - fewer than ICN_CONV_MIN_PIXELS output pixels per image: the matrix-product kind (conv_gemm.h);
 *   - else oneDNN where it has a real (JIT) implementation for the forward and the weight gradient
 *     at every chunk size a batch can split into (conv_dnnl.h), else the reference;
 *   - the input gradient stays on the reference when the input has fewer than 8 channels (the
 *     first layer: MNIST's 1 channel, CIFAR's 3): oneDNN's kernel reaches 5-8 GFLOP/s there, the
 *     reference several times that; only synthesis asks for that gradient.
 *
 * A data type other than f32 (ICN_CONV_F32, conv_base.h) is the oneDNN path's alone: the
 * reference and the matrix-product kind compute in f32. */
#ifndef ICN_CONV_H
#define ICN_CONV_H

#include "conv_base.h"
#include "parallel.h"

#define ICN_CONV_MIN_PIXELS 16

typedef enum { ICN_CONV_FAST, ICN_CONV_REFERENCE } icn_conv_path;

typedef struct {
    int bias;              /* the convolution has a bias */
    int chunked;           /* the reference's memory plan: chunk by chunk (the residual blocks), else the
                            * whole im2col of the batch, kept from forward to backward (conv_ref.h) */
    icn_conv_type type;    /* what the products compute in (ICN_CONV_F32) */
    icn_partials *scratch; /* per-call scratch the caller shares with its other layers (NULL: own) */
} icn_conv_opts;

typedef struct icn_conv icn_conv;

/* The engine for one convolution shape, for batches of up to max_batch, on the path of the rules
 * above (icn_conv_path_in_use). */
icn_conv *icn_conv_new(const icn_conv_shape *s, const icn_conv_opts *o, int max_batch);
void icn_conv_free(icn_conv *c);

/* out [N,OH,OW,OC] = conv(in) (+ bias) + beta * out, beta 0 or 1. */
void icn_conv_forward(icn_conv *c, float *out, const float *in, const float *weight, const float *bias, int n,
                      float beta);
/* dout [N,OH,OW,OC] -> din [N,H,W,C] = (accumulate: +=) the input gradient (NULL: skip),
 * dweight [OC, K] += and dbias [OC] += (NULL: skip). in is the input of the forward just run,
 * whose state (an im2col) the backward may read. dout is not modified. */
void icn_conv_backward(icn_conv *c, float *din, int accumulate, float *dweight, float *dbias, const float *dout,
                       const float *in, const float *weight, int n);

/* What the engine runs, for logs and benchmarks: "brgconv:avx512_core / jit:avx512_core /
 * reference" (forward / backward-data / backward-weights), "im2col + AVX-512 sgemm (4 output
 * pixels)", or "reference". */
const char *icn_conv_describe(const icn_conv *c);

/* The path for engines made from now on: ICN_CONV (read once; exits 2 on an unknown value),
 * unless icn_conv_use_path chose one (the tests and benchmarks that compare the two). */
icn_conv_path icn_conv_path_in_use(void);
void icn_conv_use_path(icn_conv_path p);

#endif
