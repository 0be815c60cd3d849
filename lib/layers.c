#include "layers.h"

#include <string.h>

#include "gemm.h"
#include "parallel.h"

/* Below this many floats of work, a parallel loop is not worth waking a thread. */
#define PAR_MIN_WORK 32768L

int icn_conv_out(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

/* col row r = (n, oh, ow) holds the k x k x C input patch in (kh, kw, c) order; padding is 0.
 * Channels last makes each (kh, kw) a contiguous run of C floats. */
typedef struct { float *col; const float *in; const icn_conv_shape *s; int n; } conv_job;

static void im2col_rows(void *p, long lo, long hi, int thread) {
    (void)thread;
    const conv_job *j = p;
    const icn_conv_shape *s = j->s;
    const float *in = j->in;
    const size_t K = icn_conv_kdim(s), C = (size_t)s->c;
    for (long r = lo; r < hi; r++) {
        int ow = (int)(r % s->ow), oh = (int)(r / s->ow % s->oh), b = (int)(r / ((long)s->ow * s->oh));
        float *dst = j->col + (size_t)r * K;
        for (int kh = 0; kh < s->k; kh++) {
            int ih = oh * s->stride - s->pad + kh;
            for (int kw = 0; kw < s->k; kw++, dst += C) {
                int iw = ow * s->stride - s->pad + kw;
                if (ih < 0 || ih >= s->h || iw < 0 || iw >= s->w)
                    memset(dst, 0, C * sizeof(float));
                else
                    memcpy(dst, in + (((size_t)b * s->h + ih) * s->w + iw) * C, C * sizeof(float));
            }
        }
    }
}

static void im2col(float *col, const float *in, const icn_conv_shape *s, int n) {
    conv_job job = {col, in, s, n};
    icn_parallel_for((long)n * s->oh * s->ow, PAR_MIN_WORK / (long)icn_conv_kdim(s) + 1, im2col_rows, &job);
}

/* The adjoint of im2col: scatter-add each patch back. Parallel over images, so no two
 * threads write the same input pixel. */
static void col2im_images(void *p, long lo, long hi, int thread) {
    (void)thread;
    const conv_job *j = p;
    const icn_conv_shape *s = j->s;
    const float *col = j->col;
    float *in = (float *)j->in;
    const size_t K = icn_conv_kdim(s), C = (size_t)s->c, img = (size_t)s->h * s->w * C;
    memset(in + lo * img, 0, (size_t)(hi - lo) * img * sizeof(float));
    for (long b = lo; b < hi; b++) {
        for (int oh = 0; oh < s->oh; oh++)
            for (int ow = 0; ow < s->ow; ow++) {
                const float *src = col + (((size_t)b * s->oh + oh) * s->ow + ow) * K;
                for (int kh = 0; kh < s->k; kh++) {
                    int ih = oh * s->stride - s->pad + kh;
                    for (int kw = 0; kw < s->k; kw++, src += C) {
                        int iw = ow * s->stride - s->pad + kw;
                        if (ih < 0 || ih >= s->h || iw < 0 || iw >= s->w) continue;
                        float *dst = in + b * img + ((size_t)ih * s->w + iw) * C;
                        for (size_t c = 0; c < C; c++) dst[c] += src[c];
                    }
                }
            }
    }
}

static void col2im(float *in, const float *col, const icn_conv_shape *s, int n) {
    conv_job job = {(float *)col, in, s, n};
    long per_image = (long)s->oh * s->ow * (long)icn_conv_kdim(s);
    icn_parallel_for(n, PAR_MIN_WORK / per_image + 1, col2im_images, &job);
}

/* Rows of out start as the bias, so one sgemm with beta = 1 adds the product. */
static void fill_rows_with_bias(float *out, const float *bias, long rows, int cols) {
    for (long r = 0; r < rows; r++) memcpy(out + (size_t)r * cols, bias, (size_t)cols * sizeof(float));
}

static void sum_rows_into(float *acc, const float *x, long rows, int cols) {
    for (long r = 0; r < rows; r++) {
        const float *row = x + (size_t)r * cols;
        for (int j = 0; j < cols; j++) acc[j] += row[j];
    }
}

void conv2d_forward(float *out, float *col, const float *in, const float *weight, const float *bias,
                    const icn_conv_shape *s, int n) {
    const int K = (int)icn_conv_kdim(s), M = n * s->oh * s->ow;
    im2col(col, in, s, n);
    fill_rows_with_bias(out, bias, M, s->oc);
    /* out[M, OC] = col[M, K] . weight[OC, K]^T + bias */
    icn_gemm(0, 1, M, s->oc, K, 1.0f, col, K, weight, K, 1.0f, out, s->oc);
}

void conv2d_backward(float *din, float *dweight, float *dbias, float *dcol, const float *dout,
                     const float *col, const float *weight, const icn_conv_shape *s, int n) {
    const int K = (int)icn_conv_kdim(s), M = n * s->oh * s->ow;
    if (dweight) icn_gemm_tn_acc(s->oc, K, M, dout, s->oc, col, K, dweight, K); /* dW += dout^T col */
    if (dbias) sum_rows_into(dbias, dout, M, s->oc);
    if (din) {
        icn_gemm(0, 0, M, K, s->oc, 1.0f, dout, s->oc, weight, K, 0.0f, dcol, K); /* dcol = dout W */
        col2im(din, dcol, s, n);
    }
}

/* Elementwise work is memory-bound and cheap: one pass, no threads. */
void lrelu_forward(float *out, const float *in, size_t count) {
    for (size_t i = 0; i < count; i++) out[i] = in[i] > 0 ? in[i] : ICN_LRELU_SLOPE * in[i];
}

void lrelu_backward(float *dinout, const float *out, size_t count) {
    for (size_t i = 0; i < count; i++) dinout[i] = out[i] > 0 ? dinout[i] : ICN_LRELU_SLOPE * dinout[i];
}

void linear_forward(float *out, const float *in, const float *weight, const float *bias, int n, int in_dim,
                    int out_dim) {
    fill_rows_with_bias(out, bias, n, out_dim);
    icn_gemm(0, 1, n, out_dim, in_dim, 1.0f, in, in_dim, weight, in_dim, 1.0f, out, out_dim);
}

void linear_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in,
                     const float *weight, int n, int in_dim, int out_dim) {
    if (dweight) icn_gemm_tn_acc(out_dim, in_dim, n, dout, out_dim, in, in_dim, dweight, in_dim);
    if (dbias) sum_rows_into(dbias, dout, n, out_dim);
    if (din) icn_gemm(0, 0, n, in_dim, out_dim, 1.0f, dout, out_dim, weight, in_dim, 0.0f, din, in_dim);
}
