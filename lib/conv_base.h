/* conv_base.h: what every convolution path shares (conv.h is the API; this is beneath it and
 * beneath its paths, conv_ref.h, conv_gemm.h and conv_dnnl.h): the shape and its arithmetic, the
 * im2col matrix and its adjoint, and the sum of per-thread partial gradients.
 *
 * Tensors are channels-last (NHWC): in [N,H,W,C] -> out [N,OH,OW,OC]; the weights [OC, K] with
 * K = k*k*C in (kh, kw, c) order (oneDNN's "ohwi"). */
#ifndef ICN_CONV_BASE_H
#define ICN_CONV_BASE_H
#include <stddef.h>

/* The data type the products are computed in (tensors are float in and out whatever it is). */
typedef enum { ICN_CONV_F32 } icn_conv_type;

typedef struct {
    int h, w, c;    /* input */
    int oh, ow, oc; /* output */
    int k, stride, pad;
} icn_conv_shape;

/* Output size of a convolution along one axis: (in + 2 pad - k) / stride + 1. */
static inline int icn_conv_out(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }
/* The reduction of one output pixel: K = k*k*C. */
static inline size_t icn_conv_kdim(const icn_conv_shape *s) { return (size_t)s->k * s->k * s->c; }
/* The shape of a k x k convolution of an h x w x c input to oc channels (the output size derived). */
static inline icn_conv_shape icn_conv_shape_of(int h, int w, int c, int oc, int k, int stride, int pad) {
    icn_conv_shape s = {.h = h, .w = w, .c = c, .oc = oc, .k = k, .stride = stride, .pad = pad};
    s.oh = icn_conv_out(h, k, stride, pad);
    s.ow = icn_conv_out(w, k, stride, pad);
    return s;
}

/* Rows [r0, r1) of the im2col matrix [N*OH*OW, K] of in into col (row r0 first), and its adjoint,
 * which ADDS rows [r0, r1) of col onto in. Row r = (n, oh, ow) holds the k x k x C input patch
 * in (kh, kw, c) order; the padding reads 0. */
void icn_im2col_range(float *col, const float *in, const icn_conv_shape *s, long r0, long r1);
void icn_col2im_range(float *in, const float *col, const icn_conv_shape *s, long r0, long r1);

/* acc[i] += x[i], i < count, in order: how a chunk's or a thread's partial result joins the whole. */
void icn_conv_sum_into(float *acc, const float *x, size_t count);

/* The weight and bias gradients of a batch split across icn's threads (parallel.h): thread 0
 * adds into the caller's, each other thread into its own sums, which join the caller's after the
 * threads do, in thread order. An engine of the fast path keeps one. */
enum { ICN_CONV_MAX_THREADS = 256 };
typedef struct {
    size_t n_weights;
    int oc;
    long call; /* the call under way; a thread's sums belong to the call they were zeroed in */
    struct { float *dw, *db; long call; } slot[ICN_CONV_MAX_THREADS];
} icn_conv_sums;
void icn_conv_sums_init(icn_conv_sums *g, size_t n_weights, int oc);
void icn_conv_sums_free(icn_conv_sums *g);
/* A call begins: where its weight gradient goes, dweight or (NULL: a bias gradient alone) a
 * zeroed scratch. */
float *icn_conv_sums_begin(icn_conv_sums *g, float *dweight);
/* Inside the threads: thread's targets, *dw and *db as the caller passed them for thread 0. */
void icn_conv_sums_targets(icn_conv_sums *g, int thread, float **dw, float **db);
/* After the threads: the others' sums into dw and db (NULL: skip). */
void icn_conv_sums_end(icn_conv_sums *g, float *dw, float *db);

#endif
