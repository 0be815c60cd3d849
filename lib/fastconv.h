/* fastconv.h: convolutions on oneDNN (Debian's libdnnl 2.6), the fast path beside layers.h's
 * im2col + OpenBLAS reference, with the same tensors: in [N,H,W,C] -> out [N,OH,OW,OC], weight
 * [OC, kh, kw, C] (oneDNN's "ohwi"), bias [OC].
 *
 * Everything is made once per shape: the primitives (forward, forward that adds into out,
 * backward-data, backward-weights), their memory objects, the reordered weights and each
 * thread's scratchpad. oneDNN's convolutions want the weights in their own blocked layout, so
 * each call reorders them (a weight-sized copy); activations stay channels-last (NHWC), the
 * layout of the rest of icn, so nothing else is converted.
 *
 * Threads: this Debian oneDNN runs on OpenMP, whose workers spin after each parallel region and
 * starve OpenBLAS's threads and icn's pool. So oneDNN never gets more than one thread: icn's
 * pool (parallel.h) splits the batch and each thread runs the primitives on its share, in
 * chunks of 2^j images (a primitive is made per chunk size, at most 8 per direction, on first
 * use), with its own stream and scratchpad. Weight and bias gradients are summed per thread,
 * then added: parameter gradients ACCUMULATE (+=), as in layers.h.
 *
 * Which path, per layer and direction, is a fixed rule (a measurement at setup would make runs
 * depend on the machine's load, and the two paths round differently):
 *   - ICN_CONV=reference in the environment: the reference everywhere (ICN_CONV=fast or unset:
 *     this path where it applies; anything else is a usage error).
 *   - the fast path applies where oneDNN has a real implementation for the forward and
 *     backward-weights (not its "ref:" fallback): a JIT (jit: or brgconv:) direct convolution;
 *   - a convolution with fewer than ICN_FASTCONV_MIN_PIXELS output pixels per image is a matrix
 *     product in disguise (the MNIST net's last: 4x4x256 -> 2x2x512, K = 6400), and oneDNN's
 *     direct kernels run it at half the reference's speed (forward) or a third (weights): there
 *     the fast path is the reference's im2col with icn's own AVX-512 product (sgemm.h; not
 *     dnnl_sgemm, which corrupted the heap here) in place of OpenBLAS, each thread on its images;
 *   - backward-data stays on the reference when the input has fewer than 8 channels (the first
 *     layer: MNIST's 1 channel, CIFAR's 3): oneDNN's kernel reaches 5-8 GFLOP/s there, the
 *     reference several times that; only synthesis asks for that gradient;
 *   - direct, not Winograd: oneDNN 2.6's Winograd needs its blocked layout (not NHWC) and
 *     rounds differently (F(4x4, 3x3) transforms), outside the 1e-4 agreement with the reference. */
#ifndef ICN_FASTCONV_H
#define ICN_FASTCONV_H

#include "layers.h"

#define ICN_FASTCONV_MIN_PIXELS 16

typedef struct icn_fastconv icn_fastconv;

/* The engine for one convolution shape (with a bias if `bias`), for batches of up to max_batch,
 * or NULL where the reference applies (ICN_CONV=reference, or no JIT implementation). */
icn_fastconv *icn_fastconv_new(const icn_conv_shape *s, int bias, int max_batch);
void icn_fastconv_free(icn_fastconv *f);

/* out [N,OH,OW,OC] = conv(in) (+ bias) + beta * out, beta 0 or 1. */
void icn_fastconv_forward(icn_fastconv *f, float *out, const float *in, const float *weight, const float *bias, int n,
                          float beta);
/* dout [N,OH,OW,OC] -> din [N,H,W,C] = (accumulate: +=) the input gradient (NULL: skip),
 * dweight [OC, K] += and dbias [OC] += (NULL: skip). in is the input of the forward just run
 * (the matrix-product kind keeps that forward's im2col for the weight gradient). */
void icn_fastconv_backward(icn_fastconv *f, float *din, int accumulate, float *dweight, float *dbias,
                           const float *dout, const float *in, const float *weight, int n);

/* What the engine runs, for logs and benchmarks: "brgconv:avx512_core / jit:avx512_core /
 * reference" (forward / backward-data / backward-weights). */
const char *icn_fastconv_describe(const icn_fastconv *f);

/* 1 if ICN_CONV=reference (read once; exits 2 on an unknown value). */
int icn_fastconv_reference_only(void);

#endif
