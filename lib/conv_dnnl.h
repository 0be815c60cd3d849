/* conv_dnnl.h: convolutions on oneDNN (Debian's libdnnl 2.6), beneath conv.h (which picks the
 * path and holds the rules of when this one applies), with the same tensors as the reference:
 * in [N,H,W,C] -> out [N,OH,OW,OC], weight [OC, kh, kw, C] (oneDNN's "ohwi"), bias [OC].
 *
 * Threads: this Debian oneDNN runs on OpenMP, whose workers spin after each parallel region and
 * starve OpenBLAS's threads and icn's pool. So oneDNN never gets more than one thread: icn's
 * pool (parallel.h) splits the batch and each thread runs the primitives on its share, in chunks
 * of 2^j images, up to the largest class that a thread's share of a full batch holds (at most
 * 128), with its own stream and scratchpad. Weight and bias gradients are summed per thread, then
 * added: parameter gradients ACCUMULATE (+=).
 *
 * Every chunk size that a split of a batch can produce has its primitive descriptor from the
 * start: the engine is made for all of them or not at all, so no batch can meet a chunk that has
 * none (the primitives themselves, their JIT code, are made on first use). oneDNN picks the
 * weights' layout per primitive; the largest chunk's choice is tried first for every other chunk
 * (one reordered copy serves them all), and a chunk size that has no JIT implementation in it
 * gets the layout oneDNN picks for it, with a reordered copy of its own.
 *
 * Only real implementations count (a JIT: jit:, brgconv:), never oneDNN's "ref:" fallback; direct,
 * not Winograd: oneDNN 2.6's Winograd needs its blocked layout (not NHWC) and rounds differently
 * (F(4x4, 3x3) transforms), outside the 1e-4 agreement with the reference. */
#ifndef ICN_CONV_DNNL_H
#define ICN_CONV_DNNL_H

#include "conv_base.h"

typedef struct icn_conv_dnnl icn_conv_dnnl;

/* The directions an engine is made for. */
enum { ICN_DNNL_FORWARD = 1, ICN_DNNL_BACKWARD_DATA = 2, ICN_DNNL_BACKWARD_WEIGHTS = 4 };

/* The engine for one convolution shape (with a bias if `bias`) and data type, for batches of up
 * to max_batch in `directions`, or NULL where oneDNN has no JIT implementation for one of them at
 * some chunk size. */
icn_conv_dnnl *icn_conv_dnnl_new(const icn_conv_shape *s, int bias, int max_batch, icn_conv_type type, int directions);
void icn_conv_dnnl_free(icn_conv_dnnl *f);

/* out [N,OH,OW,OC] = conv(in) (+ bias) + beta * out, beta 0 or 1. */
void icn_conv_dnnl_forward(icn_conv_dnnl *f, float *out, const float *in, const float *weight, const float *bias, int n,
                           float beta);
/* din [N,H,W,C] = (accumulate: +=) the input gradient. */
void icn_conv_dnnl_backward_data(icn_conv_dnnl *f, float *din, int accumulate, const float *dout, const float *weight,
                                 int n);
/* dweight [OC, K] += and dbias [OC] += (NULL: skip) from the input of the forward and dout. */
void icn_conv_dnnl_backward_weights(icn_conv_dnnl *f, float *dweight, float *dbias, const float *dout, const float *in,
                                    int n);

/* The implementation oneDNN runs for one direction (ICN_DNNL_*) at the largest chunk, such as
 * "brgconv:avx512_core" or "jit:avx2"; "-" where the engine was not made for that direction. */
const char *icn_conv_dnnl_impl(const icn_conv_dnnl *f, int direction);

#endif
