#include "layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fastconv.h"
#include "gemm.h"
#include "parallel.h"
#include "util.h"

/* Below this many floats of work, a parallel loop is not worth waking a thread. */
#define PAR_MIN_WORK 32768L

int icn_conv_out(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

/* col row r = (n, oh, ow) holds the k x k x C input patch in (kh, kw, c) order; padding is 0.
 * Channels last makes each kernel row (kh, kw0..kw1) of in-range taps one contiguous run of
 * (kw1 - kw0) * C floats, in the input as in col. */
typedef struct { float *col; const float *in; const icn_conv_shape *s; int n; } conv_job;

/* The taps [*k0, *k1) of a k-wide kernel at output position o that fall inside an input of
 * size `in` (the others read the zero padding). */
static void tap_span(int o, int in, const icn_conv_shape *s, int *k0, int *k1) {
    int first = o * s->stride - s->pad; /* input position of tap 0 */
    *k0 = first < 0 ? -first : 0;
    *k1 = in - first < s->k ? in - first : s->k;
    if (*k1 < *k0) *k1 = *k0;
}

/* Where im2col row r reads: image b, output position (oh, ow), in-range taps [kh0, kh1) x
 * [kw0, kw1), and the input column iw0 of tap kw0. */
typedef struct { int b, oh, ow, kh0, kh1, kw0, kw1, iw0; } col_row;
static col_row col_row_at(const icn_conv_shape *s, long r) {
    col_row g = {.ow = (int)(r % s->ow), .oh = (int)(r / s->ow % s->oh), .b = (int)(r / ((long)s->ow * s->oh))};
    tap_span(g.oh, s->h, s, &g.kh0, &g.kh1);
    tap_span(g.ow, s->w, s, &g.kw0, &g.kw1);
    g.iw0 = g.ow * s->stride - s->pad + g.kw0;
    return g;
}
/* The input offset of tap row kh of g (its first in-range tap). */
static size_t col_row_input(const icn_conv_shape *s, const col_row *g, int kh) {
    const int ih = g->oh * s->stride - s->pad + kh;
    return (((size_t)g->b * s->h + ih) * s->w + g->iw0) * (size_t)s->c;
}

void icn_im2col_range(float *col, const float *in, const icn_conv_shape *s, long r0, long r1) {
    const size_t K = icn_conv_kdim(s), C = (size_t)s->c;
    for (long r = r0; r < r1; r++) {
        const col_row g = col_row_at(s, r);
        float *dst = col + (size_t)(r - r0) * K;
        if (g.kh0 > 0 || g.kh1 < s->k || g.kw0 > 0 || g.kw1 < s->k) memset(dst, 0, K * sizeof(float)); /* a border */
        for (int kh = g.kh0; kh < g.kh1; kh++)
            memcpy(dst + ((size_t)kh * s->k + g.kw0) * C, in + col_row_input(s, &g, kh),
                   (size_t)(g.kw1 - g.kw0) * C * sizeof(float));
    }
}

static void im2col_rows(void *p, long lo, long hi, int thread) {
    (void)thread;
    const conv_job *j = p;
    icn_im2col_range(j->col + (size_t)lo * icn_conv_kdim(j->s), j->in, j->s, lo, hi);
}

static void im2col(float *col, const float *in, const icn_conv_shape *s, int n) {
    conv_job job = {col, in, s, n};
    icn_parallel_for((long)n * s->oh * s->ow, PAR_MIN_WORK / (long)icn_conv_kdim(s) + 1, im2col_rows, &job);
}

void icn_col2im_range(float *in, const float *col, const icn_conv_shape *s, long r0, long r1) {
    const size_t K = icn_conv_kdim(s), C = (size_t)s->c;
    for (long r = r0; r < r1; r++) {
        const col_row g = col_row_at(s, r);
        const float *src = col + (size_t)(r - r0) * K;
        const size_t run = (size_t)(g.kw1 - g.kw0) * C;
        for (int kh = g.kh0; kh < g.kh1; kh++) {
            const float *from = src + ((size_t)kh * s->k + g.kw0) * C;
            float *to = in + col_row_input(s, &g, kh);
            for (size_t c = 0; c < run; c++) to[c] += from[c];
        }
    }
}

/* col2im onto zeros. Parallel over images, so no two threads write the same pixel. */
static void col2im_images(void *p, long lo, long hi, int thread) {
    (void)thread;
    const conv_job *j = p;
    const icn_conv_shape *s = j->s;
    const size_t img = (size_t)s->h * s->w * s->c, rows = (size_t)s->oh * s->ow;
    float *in = (float *)j->in;
    memset(in + lo * img, 0, (size_t)(hi - lo) * img * sizeof(float));
    icn_col2im_range(in, j->col + lo * rows * icn_conv_kdim(s), s, lo * (long)rows, hi * (long)rows);
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

void icn_conv2d_forward(float *out, float *col, const float *in, const float *weight, const float *bias,
                    const icn_conv_shape *s, int n) {
    const int K = (int)icn_conv_kdim(s), M = n * s->oh * s->ow;
    im2col(col, in, s, n);
    if (bias) fill_rows_with_bias(out, bias, M, s->oc);
    /* out[M, OC] = col[M, K] . weight[OC, K]^T (+ bias) */
    icn_gemm(0, 1, M, s->oc, K, 1.0f, col, K, weight, K, bias ? 1.0f : 0.0f, out, s->oc);
}

void icn_conv2d_backward(float *din, float *dweight, float *dbias, float *dcol, const float *dout, const float *col,
                         const float *weight, const icn_conv_shape *s, int n, icn_partials *partials) {
    const int K = (int)icn_conv_kdim(s), M = n * s->oh * s->ow;
    if (dweight) icn_gemm_tn_acc(s->oc, K, M, dout, s->oc, col, K, dweight, K, partials); /* dW += dout^T col */
    if (dbias) sum_rows_into(dbias, dout, M, s->oc);
    if (din) {
        icn_gemm(0, 0, M, K, s->oc, 1.0f, dout, s->oc, weight, K, 0.0f, dcol, K); /* dcol = dout W */
        col2im(din, dcol, s, n);
    }
}

/* ---- convolution chunk by chunk ---- */

#define CHUNK_FLOATS 65536 /* a chunk of col: 256 KB */

static long chunk_rows(const icn_conv_shape *s) {
    long rows = CHUNK_FLOATS / (long)icn_conv_kdim(s);
    return rows > 0 ? rows : 1;
}

size_t icn_conv_scratch_floats(const icn_conv_shape *s) {
    const size_t K = icn_conv_kdim(s);
    return (size_t)chunk_rows(s) * K + (size_t)s->oc * K;
}

void icn_conv_scratch_new(icn_conv_scratch *cs, size_t slot_floats) {
    cs->slots = icn_threads();
    cs->slot_floats = slot_floats;
    cs->buf = xmalloc((size_t)cs->slots * slot_floats * sizeof(float));
}

void icn_conv_scratch_free(icn_conv_scratch *cs) {
    free(cs->buf);
    cs->buf = NULL;
}

typedef struct {
    const icn_conv_shape *s;
    const icn_conv_scratch *cs;
    int n, accumulate;
    float beta;
    float *out, *din, *dweight; /* forward: out; backward: din and/or dweight */
    const float *in, *weight, *dout;
} chunk_job;

/* Slot t takes images [n t / slots, n (t + 1) / slots), in chunks of rows. */
static void chunk_slots(void *p, long lo, long hi, int thread) {
    (void)thread;
    const chunk_job *j = p;
    const icn_conv_shape *s = j->s;
    const int K = (int)icn_conv_kdim(s), OC = s->oc;
    const long per_image = (long)s->oh * s->ow, rows = chunk_rows(s);
    const size_t img = (size_t)s->h * s->w * s->c;
    for (long t = lo; t < hi; t++) {
        float *col = j->cs->buf + (size_t)t * j->cs->slot_floats, *dw = col + (size_t)rows * K;
        const long b0 = j->n * t / j->cs->slots, b1 = j->n * (t + 1) / j->cs->slots;
        if (j->dweight) memset(dw, 0, (size_t)OC * K * sizeof(float));
        if (j->din && !j->accumulate) memset(j->din + b0 * img, 0, (size_t)(b1 - b0) * img * sizeof(float));
        for (long r = b0 * per_image; r < b1 * per_image; r += rows) {
            const int m = (int)(b1 * per_image - r < rows ? b1 * per_image - r : rows);
            if (j->out) { /* out = col W^T + beta out */
                icn_im2col_range(col, j->in, s, r, r + m);
                icn_sgemm(0, 1, m, OC, K, 1.0f, col, K, j->weight, K, j->beta, j->out + (size_t)r * OC, OC);
                continue;
            }
            if (j->dweight) { /* dW += dout^T col */
                icn_im2col_range(col, j->in, s, r, r + m);
                icn_sgemm(1, 0, OC, K, m, 1.0f, j->dout + (size_t)r * OC, OC, col, K, 1.0f, dw, K);
            }
            if (j->din) { /* din += col2im(dout W) */
                icn_sgemm(0, 0, m, K, OC, 1.0f, j->dout + (size_t)r * OC, OC, j->weight, K, 0.0f, col, K);
                icn_col2im_range(j->din, col, s, r, r + m);
            }
        }
    }
}

void icn_conv2d_chunked_forward(float *out, const float *in, const float *weight, const icn_conv_shape *s, int n, float beta,
                            const icn_conv_scratch *cs) {
    chunk_job job = {.s = s, .cs = cs, .n = n, .beta = beta, .out = out, .in = in, .weight = weight};
    icn_gemm_parallel_for(cs->slots, 1, chunk_slots, &job);
}

void icn_conv2d_chunked_backward(float *din, int accumulate, float *dweight, const float *dout, const float *in,
                             const float *weight, const icn_conv_shape *s, int n, const icn_conv_scratch *cs) {
    chunk_job job = {.s = s, .cs = cs, .n = n, .accumulate = accumulate, .din = din, .dweight = dweight, .in = in,
                     .weight = weight, .dout = dout};
    icn_gemm_parallel_for(cs->slots, 1, chunk_slots, &job);
    if (!dweight) return;
    const size_t K = icn_conv_kdim(s), w = (size_t)s->oc * K, dw_at = (size_t)chunk_rows(s) * K;
    for (int t = 0; t < cs->slots; t++) /* the slots' partial sums, in slot order */
        for (size_t i = 0; i < w; i++) dweight[i] += cs->buf[(size_t)t * cs->slot_floats + dw_at + i];
}

/* Elementwise work is memory-bound: one pass, split across the threads (one core does not
 * use the memory bandwidth two do). Each element's arithmetic is the same whichever thread
 * does it. */
typedef enum { EW_LRELU, EW_LRELU_BACK, EW_RELU, EW_RELU_BACK, EW_ADD } ew_op;
typedef struct {
    ew_op op;
    float *out;      /* out, or dinout */
    const float *in; /* in, the forward's out, or the addend */
} ew_job;

static void ew_range(void *ctx, long lo, long hi, int thread) {
    (void)thread;
    const ew_job *j = ctx;
    float *restrict o = j->out;
    const float *x = j->in;
    switch (j->op) {
    case EW_LRELU: for (long i = lo; i < hi; i++) o[i] = x[i] > 0 ? x[i] : ICN_LRELU_SLOPE * x[i]; break;
    case EW_LRELU_BACK: for (long i = lo; i < hi; i++) o[i] = x[i] > 0 ? o[i] : ICN_LRELU_SLOPE * o[i]; break;
    case EW_RELU: for (long i = lo; i < hi; i++) o[i] = x[i] > 0 ? x[i] : 0.0f; break;
    case EW_RELU_BACK: for (long i = lo; i < hi; i++) o[i] = x[i] > 0 ? o[i] : 0.0f; break;
    case EW_ADD: for (long i = lo; i < hi; i++) o[i] += x[i]; break;
    }
}

static void elementwise(ew_op op, float *out, const float *in, size_t count) {
    ew_job j = {op, out, in};
    icn_parallel_for((long)count, PAR_MIN_WORK, ew_range, &j);
}

void icn_lrelu_forward(float *out, const float *in, size_t count) { elementwise(EW_LRELU, out, in, count); }
void icn_lrelu_backward(float *dinout, const float *out, size_t count) { elementwise(EW_LRELU_BACK, dinout, out, count); }

void icn_linear_forward(float *out, const float *in, const float *weight, const float *bias, int n, int in_dim,
                    int out_dim) {
    fill_rows_with_bias(out, bias, n, out_dim);
    icn_gemm(0, 1, n, out_dim, in_dim, 1.0f, in, in_dim, weight, in_dim, 1.0f, out, out_dim);
}

void icn_linear_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in,
                         const float *weight, int n, int in_dim, int out_dim, icn_partials *partials) {
    if (dweight) icn_gemm_tn_acc(out_dim, in_dim, n, dout, out_dim, in, in_dim, dweight, in_dim, partials);
    if (dbias) sum_rows_into(dbias, dout, n, out_dim);
    if (din) icn_gemm(0, 0, n, in_dim, out_dim, 1.0f, dout, out_dim, weight, in_dim, 0.0f, din, in_dim);
}

void icn_relu_forward(float *out, const float *in, size_t count) { elementwise(EW_RELU, out, in, count); }
void icn_relu_backward(float *dinout, const float *out, size_t count) { elementwise(EW_RELU_BACK, dinout, out, count); }

void icn_residual_add(float *acc, const float *x, size_t count) {
    for (size_t i = 0; i < count; i++) acc[i] += x[i];
}

void icn_avgpool_forward(float *out, const float *in, int n, int hw, int c) {
    memset(out, 0, (size_t)n * c * sizeof(float));
    for (int b = 0; b < n; b++) sum_rows_into(out + (size_t)b * c, in + (size_t)b * hw * c, hw, c);
    const float scale = 1.0f / (float)hw;
    for (size_t i = 0; i < (size_t)n * c; i++) out[i] *= scale;
}

void icn_avgpool_backward(float *din, const float *dout, int n, int hw, int c) {
    const float scale = 1.0f / (float)hw;
    for (int b = 0; b < n; b++)
        for (int p = 0; p < hw; p++)
            for (int j = 0; j < c; j++) din[((size_t)b * hw + p) * c + j] = dout[(size_t)b * c + j] * scale;
}

/* ---- batch normalization ---- */

#define BN_BLOCK_ROWS 64 /* rows summed in float (vectorised) before they join the double sums */

typedef struct {
    float *out;
    double *partial;              /* sums: per thread [2C] in double */
    const float *x, *y, *x0, *y0; /* sums: y - y0 and (y - y0) (x - x0) */
    const float *p, *q, *t;       /* apply: out = p (y - y0) + q (x - x0) + t, per channel */
    long rows;
    int c, relu;                  /* apply: then out = max(0, out) */
} bn_job;

enum { BN_LANES = 16 }; /* channels summed at once: one AVX-512 register per sum */

/* Rows [r0, r1) of channels [c0, c0 + w), w <= BN_LANES, summed in float in registers, then
 * added to the double sums. Each channel is summed over the rows in order, as one loop over
 * all channels would: the same bits, without a store and a load of every partial sum per row. */
static inline void bn_sums_lanes(const bn_job *j, long r0, long r1, int c0, int w, double *s1, double *s2) {
    const int C = j->c;
    float a1[BN_LANES] = {0}, a2[BN_LANES] = {0}, x0[BN_LANES] = {0}, y0[BN_LANES] = {0};
    for (int k = 0; k < w; k++) x0[k] = j->x0[c0 + k], y0[k] = j->y0[c0 + k];
    for (long r = r0; r < r1; r++) {
        const float *restrict x = j->x + (size_t)r * C + c0, *restrict y = j->y + (size_t)r * C + c0;
        for (int k = 0; k < w; k++) {
            float dy = y[k] - y0[k];
            a1[k] += dy;
            a2[k] += dy * (x[k] - x0[k]);
        }
    }
    for (int k = 0; k < w; k++) s1[c0 + k] += a1[k], s2[c0 + k] += a2[k];
}

static void bn_sums_rows(void *ctx, long lo, long hi, int thread) {
    const bn_job *j = ctx;
    const int C = j->c;
    double *s1 = j->partial + (size_t)thread * 2 * C, *s2 = s1 + C;
    for (long r0 = lo; r0 < hi; r0 += BN_BLOCK_ROWS) {
        const long r1 = r0 + BN_BLOCK_ROWS < hi ? r0 + BN_BLOCK_ROWS : hi;
        int c0 = 0;
        for (; c0 + BN_LANES <= C; c0 += BN_LANES) bn_sums_lanes(j, r0, r1, c0, BN_LANES, s1, s2);
        if (c0 < C) bn_sums_lanes(j, r0, r1, c0, C - c0, s1, s2);
    }
}

/* Per channel, over all rows: [sum (y - y0) (C) | sum (y - y0) (x - x0) (C)], in partials (per
 * thread: [2C] doubles, then [2C] floats), valid until their next use. The forward takes y = x
 * and x0 = y0 = the first pixel: sums about a point near the mean do not cancel when
 * |mu| >> sigma. The backward takes y = dout, y0 = 0, x0 = mu_B: the sums behind dbeta and dgamma. */
static const double *bn_sums(icn_partials *partials, const float *x, const float *y, const float *x0, const float *y0,
                             long rows, int c) {
    const int threads = icn_threads();
    size_t need = (size_t)threads * 2 * c;
    double *bn_partial = icn_partials_get(partials, need * sizeof(double));
    memset(bn_partial, 0, need * sizeof(double)); /* threads that get no rows leave theirs at 0 */
    bn_job job = {.partial = bn_partial, .x = x, .y = y, .x0 = x0, .y0 = y0, .rows = rows, .c = c};
    icn_parallel_for(rows, PAR_MIN_WORK / c + 1, bn_sums_rows, &job);
    for (int t = 1; t < threads; t++)
        for (int k = 0; k < 2 * c; k++) bn_partial[k] += bn_partial[(size_t)t * 2 * c + k];
    return bn_partial;
}

static void bn_apply_rows(void *ctx, long lo, long hi, int thread) {
    (void)thread;
    const bn_job *j = ctx;
    const int C = j->c;
    for (long r = lo; r < hi; r++) {
        const float *x = j->x + (size_t)r * C, *y = j->y + (size_t)r * C;
        float *out = j->out + (size_t)r * C;
        for (int c = 0; c < C; c++) out[c] = j->p[c] * (y[c] - j->y0[c]) + j->q[c] * (x[c] - j->x0[c]) + j->t[c];
        if (j->relu)
            for (int c = 0; c < C; c++) out[c] = out[c] > 0 ? out[c] : 0.0f;
    }
}

/* out = p (y - y0) + q (x - x0) + t per channel, over all rows (out may equal y), then
 * max(0, out) with relu. Differences before products: x - mu is exact where x is near mu,
 * p x - p mu would not be. */
static void bn_apply(float *out, const float *y, const float *y0, const float *p, const float *x, const float *x0,
                     const float *q, const float *t, long rows, int c, int relu) {
    bn_job job = {.out = out, .x = x, .y = y, .x0 = x0, .y0 = y0, .p = p, .q = q, .t = t, .rows = rows, .c = c,
                  .relu = relu};
    icn_parallel_for(rows, PAR_MIN_WORK / c + 1, bn_apply_rows, &job);
}

/* stats: mean, 1/sigma, then the apply coefficients p, q, t and a row of zeros. */
typedef struct { float *mean, *invstd, *p, *q, *t, *zero; } bn_stats;

static bn_stats bn_stats_of(float *stats, int c) {
    bn_stats b = {stats, stats + c, stats + 2 * c, stats + 3 * c, stats + 4 * c, stats + 5 * c};
    memset(b.zero, 0, (size_t)c * sizeof(float));
    return b;
}

void icn_batchnorm_forward(float *out, float *stats, const float *in, const float *gb, float *running, long rows, int c,
                           int training, int relu, icn_partials *partials) {
    icn_partials own = {0};
    const bn_stats st = bn_stats_of(stats, c);
    const float *gamma = gb, *beta = gb + c;
    float *run_mean = running, *run_var = running + c;
    if (training) {
        /* about the first pixel */
        const double *sum = bn_sums(partials ? partials : &own, in, in, in, in, rows, c), *sumsq = sum + c;
        const double unbias = rows > 1 ? (double)rows / (double)(rows - 1) : 1.0;
        for (int k = 0; k < c; k++) {
            double d = sum[k] / (double)rows, mu = in[k] + d, var = sumsq[k] / (double)rows - d * d;
            if (var < 0) var = 0;
            st.mean[k] = (float)mu;
            st.invstd[k] = (float)(1.0 / sqrt(var + ICN_BN_EPS));
            if (training != 2) { /* 2: batch statistics, running ones left alone (net.h) */
                run_mean[k] = (1 - ICN_BN_MOMENTUM) * run_mean[k] + ICN_BN_MOMENTUM * (float)mu;
                run_var[k] = (1 - ICN_BN_MOMENTUM) * run_var[k] + ICN_BN_MOMENTUM * (float)(var * unbias);
            }
        }
    } else {
        for (int k = 0; k < c; k++) {
            st.mean[k] = run_mean[k];
            st.invstd[k] = 1.0f / sqrtf(run_var[k] + ICN_BN_EPS);
        }
    }
    /* y = gamma / sigma (x - mu) + beta */
    for (int k = 0; k < c; k++) st.p[k] = gamma[k] * st.invstd[k];
    bn_apply(out, in, st.mean, st.p, in, st.mean, st.zero, beta, rows, c, relu);
    icn_partials_free(&own);
}

void icn_batchnorm_backward(float *din, float *dgb, float *stats, const float *dout, const float *in, const float *gb,
                            long rows, int c, int training, icn_partials *partials) {
    const bn_stats st = bn_stats_of(stats, c);
    const float *gamma = gb;
    if (!dgb && !din) return;
    icn_partials own = {0};
    const double *sum = NULL, *sum_xc = NULL; /* sum dout, sum dout (x - mu) */
    if (dgb || training) {
        sum = bn_sums(partials ? partials : &own, in, dout, st.mean, st.zero, rows, c);
        sum_xc = sum + c;
    }
    if (dgb)
        for (int k = 0; k < c; k++) {
            dgb[k] += (float)(sum_xc[k] * st.invstd[k]); /* dgamma = sum dout xhat */
            dgb[c + k] += (float)sum[k];                  /* dbeta = sum dout */
        }
    if (!din) {
        icn_partials_free(&own);
        return;
    }
    /* din = gamma/sigma (dout - sum/R - xhat sum(dout xhat)/R) = p dout + q (x - mu) + t */
    for (int k = 0; k < c; k++) {
        st.p[k] = gamma[k] * st.invstd[k];
        st.q[k] = training ? (float)(-st.p[k] * st.invstd[k] * st.invstd[k] * sum_xc[k] / (double)rows) : 0.0f;
        st.t[k] = training ? (float)(-st.p[k] * sum[k] / (double)rows) : 0.0f;
    }
    bn_apply(din, dout, st.zero, st.p, in, st.mean, st.q, st.t, rows, c, 0);
    icn_partials_free(&own);
}

/* ---- pre-activation residual block ---- */

static icn_conv_shape conv_shape(int h, int w, int c, int oc, int k, int stride, int pad) {
    icn_conv_shape s = {.h = h, .w = w, .c = c, .oc = oc, .k = k, .stride = stride, .pad = pad};
    s.oh = icn_conv_out(h, k, stride, pad);
    s.ow = icn_conv_out(w, k, stride, pad);
    return s;
}

void icn_block_shape_init(icn_block_shape *b, int h, int w, int c, int oc, int stride) {
    memset(b, 0, sizeof *b);
    b->conv1 = conv_shape(h, w, c, oc, 3, stride, 1);
    b->h = h, b->w = w, b->c = c, b->oh = b->conv1.oh, b->ow = b->conv1.ow, b->oc = oc;
    b->conv2 = conv_shape(b->oh, b->ow, oc, oc, 3, 1, 1);
    if (stride != 1 || c != oc) b->proj = conv_shape(h, w, c, oc, 1, stride, 0);
    b->gb1 = 0;
    b->w1 = b->gb1 + 2 * (size_t)c;
    b->gb2 = b->w1 + (size_t)oc * icn_conv_kdim(&b->conv1);
    b->w2 = b->gb2 + 2 * (size_t)oc;
    b->wp = b->w2 + (size_t)oc * icn_conv_kdim(&b->conv2);
    b->n_params = b->wp + (b->proj.k ? (size_t)oc * c : 0);
    b->n_state = 2 * (size_t)c + 2 * (size_t)oc;
}

void icn_block_buffers_new(icn_block_buffers *buf, const icn_block_shape *b, int max_batch,
                           const icn_conv_scratch *scratch, icn_partials *partials) {
    const size_t n = (size_t)max_batch, in = (size_t)b->h * b->w * b->c, out = (size_t)b->oh * b->ow * b->oc;
    float *p = xmalloc((n * in + 2 * n * out + ICN_BN_STATS * (size_t)(b->c + b->oc)) * sizeof(float));
    buf->a = p, p += n * in;
    buf->h = p, p += n * out;
    buf->b = p, p += n * out;
    buf->stats1 = p, p += ICN_BN_STATS * (size_t)b->c;
    buf->stats2 = p;
    buf->scratch = scratch;
    buf->partials = partials;
    const icn_conv_shape *convs[3] = {&b->conv1, &b->conv2, &b->proj};
    for (int i = 0; i < 3; i++) buf->fast[i] = convs[i]->k ? icn_fastconv_new(convs[i], 0, max_batch) : NULL;
}

/* A block's convolution `which` (0 conv1, 1 conv2, 2 projection): oneDNN where it applies. */
static void block_conv_forward(const icn_block_buffers *buf, int which, float *out, const float *in, const float *w,
                               const icn_conv_shape *s, int n, float beta) {
    if (buf->fast[which]) icn_fastconv_forward(buf->fast[which], out, in, w, NULL, n, beta);
    else icn_conv2d_chunked_forward(out, in, w, s, n, beta, buf->scratch);
}
static void block_conv_backward(const icn_block_buffers *buf, int which, float *din, int accumulate, float *dw,
                                const float *dout, const float *in, const float *w, const icn_conv_shape *s, int n) {
    if (buf->fast[which]) icn_fastconv_backward(buf->fast[which], din, accumulate, dw, NULL, dout, in, w, n);
    else icn_conv2d_chunked_backward(din, accumulate, dw, dout, in, w, s, n, buf->scratch);
}

size_t icn_block_scratch_floats(const icn_block_shape *b) {
    size_t need = icn_conv_scratch_floats(&b->conv1), need2 = icn_conv_scratch_floats(&b->conv2);
    size_t needp = b->proj.k ? icn_conv_scratch_floats(&b->proj) : 0;
    if (need2 > need) need = need2;
    return needp > need ? needp : need;
}

void icn_block_buffers_free(icn_block_buffers *buf) {
    free(buf->a);
    for (int i = 0; i < 3; i++) icn_fastconv_free(buf->fast[i]);
    memset(buf, 0, sizeof *buf);
}

void icn_block_forward(float *out, const icn_block_buffers *buf, const float *in, const float *p, float *state,
                   const icn_block_shape *s, int n, int training) {
    const long rows_in = (long)n * s->h * s->w, rows_out = (long)n * s->oh * s->ow;
    icn_batchnorm_forward(buf->a, buf->stats1, in, p + s->gb1, state, rows_in, s->c, training, 1, buf->partials);
    block_conv_forward(buf, 0, buf->h, buf->a, p + s->w1, &s->conv1, n, 0.0f);
    icn_batchnorm_forward(buf->b, buf->stats2, buf->h, p + s->gb2, state + 2 * s->c, rows_out, s->oc, training, 1,
                          buf->partials);
    block_conv_forward(buf, 1, out, buf->b, p + s->w2, &s->conv2, n, 0.0f);
    if (s->proj.k) /* out += W_s a (He et al. Eq. 2) */
        block_conv_forward(buf, 2, out, buf->a, p + s->wp, &s->proj, n, 1.0f);
    else
        elementwise(EW_ADD, out, in, (size_t)rows_out * s->oc); /* out += x */
}

void icn_block_backward(float *din, float *dp, float *tmp, const float *dout, const float *in, const icn_block_buffers *buf,
                    const float *p, const icn_block_shape *s, int n, int training) {
    const long rows_in = (long)n * s->h * s->w, rows_out = (long)n * s->oh * s->ow;
#define DP(off) (dp ? dp + (off) : NULL)
    /* the residual branch, from its end: tmp = d b, then d h */
    block_conv_backward(buf, 1, tmp, 0, DP(s->w2), dout, buf->b, p + s->w2, &s->conv2, n);
    icn_relu_backward(tmp, buf->b, (size_t)rows_out * s->oc);
    icn_batchnorm_backward(tmp, DP(s->gb2), buf->stats2, tmp, buf->h, p + s->gb2, rows_out, s->oc, training,
                           buf->partials);
    /* din = d a: conv1's, plus the projection's when the shortcut starts from a */
    block_conv_backward(buf, 0, din, 0, DP(s->w1), tmp, buf->a, p + s->w1, &s->conv1, n);
    if (s->proj.k) block_conv_backward(buf, 2, din, 1, DP(s->wp), dout, buf->a, p + s->wp, &s->proj, n);
    icn_relu_backward(din, buf->a, (size_t)rows_in * s->c);
    icn_batchnorm_backward(din, DP(s->gb1), buf->stats1, din, in, p + s->gb1, rows_in, s->c, training, buf->partials);
    if (!s->proj.k) elementwise(EW_ADD, din, dout, (size_t)rows_in * s->c); /* the identity shortcut's gradient */
#undef DP
}
