/* conv_gemm.h: the fast path's convolutions that are matrix products in disguise, beneath conv.h
 * (which picks the path): fewer than ICN_CONV_MIN_PIXELS output pixels per image (the MNIST
 * net's last: 4x4x256 -> 2x2x512, K = 6400), where oneDNN's direct kernels run at half the
 * reference's speed (forward) or a third (weights). Here each of icn's threads takes whole
 * images: im2col of its rows, then icn's own AVX-512 product (sgemm.h) in place of OpenBLAS;
 * the forward's im2col is kept for the weight gradient. Weight and bias gradients are summed per
 * thread, then added in thread order: parameter gradients ACCUMULATE (+=), as everywhere. */
#ifndef ICN_CONV_GEMM_H
#define ICN_CONV_GEMM_H

#include "conv_base.h"

typedef struct icn_conv_gemm icn_conv_gemm;

icn_conv_gemm *icn_conv_gemm_new(const icn_conv_shape *s, int max_batch);
void icn_conv_gemm_free(icn_conv_gemm *g);
/* out [N,OH,OW,OC] = conv(in) (+ bias) + beta * out, beta 0 or 1. */
void icn_conv_gemm_forward(icn_conv_gemm *g, float *out, const float *in, const float *weight, const float *bias, int n,
                           float beta);
/* din = (accumulate: +=) the input gradient (NULL: skip), dweight += and dbias += (NULL: skip),
 * from the im2col of the forward just run. */
void icn_conv_gemm_backward(icn_conv_gemm *g, float *din, int accumulate, float *dweight, float *dbias,
                            const float *dout, const float *weight, int n);

#endif
