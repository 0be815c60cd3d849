/* conv_ref.h: the reference convolution, im2col + matrix product (gemm.h, OpenBLAS), beneath
 * conv.h, which is the API and picks the path. Two memory plans, with the same arithmetic per
 * product but not the same blocking, so each keeps the bits it always had:
 *   whole:   the forward writes the whole im2col [N*OH*OW, K] of the batch and keeps it for the
 *            weight gradient; one product per direction, threaded by icn_gemm (the plain stacks);
 *   chunked: each thread takes whole images and walks their im2col rows in chunks that stay in
 *            cache (at 32x32, batch 128, 16 channels the whole col is 75 MB, written, then read
 *            and packed, in each direction); backward recomputes each chunk (the residual blocks).
 * Both take the per-call scratch (the whole plan's input-gradient col, the chunked plan's slots)
 * from an icn_partials (parallel.h) that the caller may share with other layers. */
#ifndef ICN_CONV_REF_H
#define ICN_CONV_REF_H

#include "conv_base.h"
#include "parallel.h"

typedef struct icn_conv_ref icn_conv_ref;

/* keep_col: the whole plan's forward keeps its im2col for backward (a whole-plan engine that only
 * computes input gradients, beside a faster forward, needs none). scratch: NULL for its own. */
icn_conv_ref *icn_conv_ref_new(const icn_conv_shape *s, int chunked, int keep_col, int max_batch,
                               icn_partials *scratch);
void icn_conv_ref_free(icn_conv_ref *r);
/* out [N,OH,OW,OC] = conv(in) (+ bias) + beta * out, beta 0 or 1. */
void icn_conv_ref_forward(icn_conv_ref *r, float *out, const float *in, const float *weight, const float *bias, int n,
                          float beta);
/* din [N,H,W,C] = (accumulate: +=) the input gradient (NULL: skip), dweight [OC,K] += and dbias
 * [OC] += (NULL: skip). The whole plan's weight gradient reads the last forward's im2col. */
void icn_conv_ref_backward(icn_conv_ref *r, float *din, int accumulate, float *dweight, float *dbias,
                           const float *dout, const float *in, const float *weight, int n);

#endif
