/* layers.h: forward and backward passes of each layer type, on channels-last (NHWC) tensors.
 *
 * Each layer is a pair x_forward / x_backward with its shapes in the comment. Backward
 * functions compute the gradient with respect to the input (needed by synthesis, which
 * ascends the input) and, when the parameter-gradient pointers are non-NULL, with respect
 * to the weights; parameter gradients are ACCUMULATED (+=) so callers zero them once per step.
 *
 * Convolution is im2col + one sgemm over the whole mini-batch. Products that are too thin
 * to profit from OpenBLAS threads (the first convolution's K = 25, a 10-way linear layer)
 * are split across threads by icn_gemm (gemm.h) instead. */
#ifndef ICN_LAYERS_H
#define ICN_LAYERS_H
#include <stddef.h>

#define ICN_LRELU_SLOPE 0.2f

typedef struct {
    int h, w, c;    /* input */
    int oh, ow, oc; /* output */
    int k, stride, pad;
} icn_conv_shape;

/* Output size of a convolution along one axis. */
int icn_conv_out(int in, int k, int stride, int pad);
static inline size_t icn_conv_kdim(const icn_conv_shape *s) { return (size_t)s->k * s->k * s->c; }

/* conv2d: in [N,H,W,C] -> out [N,OH,OW,OC]. weight [OC, K] with K = k*k*C in (kh, kw, c)
 * order, bias [OC]. col [N*OH*OW, K] is filled by the forward pass and read by backward. */
void conv2d_forward(float *out, float *col, const float *in, const float *weight, const float *bias,
                    const icn_conv_shape *s, int n);
/* dout [N,OH,OW,OC] -> din [N,H,W,C] (NULL: skip), dweight [OC,K] and dbias [OC] (NULL: skip).
 * dcol [N*OH*OW, K] is scratch. dout is not modified. */
void conv2d_backward(float *din, float *dweight, float *dbias, float *dcol, const float *dout,
                     const float *col, const float *weight, const icn_conv_shape *s, int n);

/* LeakyReLU with slope ICN_LRELU_SLOPE, in place is fine: out may equal in.
 * Backward uses the output (its sign is the input's), so it works after an in-place forward:
 * dinout [count] is scaled in place. */
void lrelu_forward(float *out, const float *in, size_t count);
void lrelu_backward(float *dinout, const float *out, size_t count);

/* linear: in [N, I] -> out [N, O]; weight [O, I], bias [O]. Flatten is a view: an NHWC
 * activation [N,H,W,C] is already the row-major matrix [N, H*W*C]. */
void linear_forward(float *out, const float *in, const float *weight, const float *bias, int n, int in_dim,
                    int out_dim);
void linear_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in,
                     const float *weight, int n, int in_dim, int out_dim);

#endif
