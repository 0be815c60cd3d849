#include "layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "gemm.h"
#include "groupnorm.h"
#include "parallel.h"
#include "util.h"

/* Elementwise work is memory-bound: one pass, split across the threads (one core does not
 * use the memory bandwidth two do). Each element's arithmetic is the same whichever thread
 * does it. */
typedef enum { EW_LRELU, EW_LRELU_BACK, EW_RELU, EW_RELU_BACK, EW_ADD, EW_AFFINE, EW_RELU_AFFINE } ew_op;
typedef struct {
    ew_op op;
    float *out;      /* out, or dinout */
    const float *in; /* in, the forward's out, or the addend */
    float s, t;      /* affine: out = s in + t; relu affine: out = s ReLU(in) + t */
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
    case EW_AFFINE: for (long i = lo; i < hi; i++) o[i] = j->s * x[i] + j->t; break;
    case EW_RELU_AFFINE: for (long i = lo; i < hi; i++) o[i] = j->s * (x[i] > 0 ? x[i] : 0.0f) + j->t; break;
    }
}

static void elementwise_st(ew_op op, float *out, const float *in, float s, float t, size_t count) {
    ew_job j = {op, out, in, s, t};
    icn_parallel_for((long)count, ICN_PARALLEL_MIN_WORK, ew_range, &j);
}

static void elementwise(ew_op op, float *out, const float *in, size_t count) {
    elementwise_st(op, out, in, 1, 0, count);
}

void icn_lrelu_forward(float *out, const float *in, size_t count) { elementwise(EW_LRELU, out, in, count); }
void icn_lrelu_backward(float *dinout, const float *out, size_t count) { elementwise(EW_LRELU_BACK, dinout, out, count); }

void icn_linear_forward(float *out, const float *in, const float *weight, const float *bias, int n, int in_dim,
                    int out_dim) {
    icn_gemm_bias_rows(out, bias, n, out_dim, 0.0f);
    icn_gemm(0, 1, n, out_dim, in_dim, 1.0f, in, in_dim, weight, in_dim, 1.0f, out, out_dim);
}

void icn_linear_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in,
                         const float *weight, int n, int in_dim, int out_dim, icn_partials *partials) {
    if (dweight) icn_gemm_tn_acc(out_dim, in_dim, n, dout, out_dim, in, in_dim, dweight, in_dim, partials);
    if (dbias) icn_gemm_sum_rows(dbias, dout, n, out_dim);
    if (din) icn_gemm(0, 0, n, in_dim, out_dim, 1.0f, dout, out_dim, weight, in_dim, 0.0f, din, in_dim);
}

void icn_relu_forward(float *out, const float *in, size_t count) { elementwise(EW_RELU, out, in, count); }
void icn_relu_backward(float *dinout, const float *out, size_t count) { elementwise(EW_RELU_BACK, dinout, out, count); }

void icn_avgpool_forward(float *out, const float *in, int n, int hw, int c) {
    memset(out, 0, (size_t)n * c * sizeof(float));
    for (int b = 0; b < n; b++) icn_gemm_sum_rows(out + (size_t)b * c, in + (size_t)b * hw * c, hw, c);
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
    icn_parallel_for(rows, ICN_PARALLEL_MIN_WORK / c + 1, bn_sums_rows, &job);
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
    icn_parallel_for(rows, ICN_PARALLEL_MIN_WORK / c + 1, bn_apply_rows, &job);
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

void icn_block_shape_init(icn_block_shape *b, int h, int w, int c, int oc, int stride) {
    icn_block_shape_init_norm(b, h, w, c, oc, stride, 0);
}

void icn_block_shape_init_norm(icn_block_shape *b, int h, int w, int c, int oc, int stride, icn_norm norm) {
    memset(b, 0, sizeof *b);
    b->norm = norm;
    b->conv1 = icn_conv_shape_of(h, w, c, oc, 3, stride, 1);
    b->h = h, b->w = w, b->c = c, b->oh = b->conv1.oh, b->ow = b->conv1.ow, b->oc = oc;
    b->conv2 = icn_conv_shape_of(b->oh, b->ow, oc, oc, 3, 1, 1);
    if (stride != 1 || c != oc) b->proj = icn_conv_shape_of(h, w, c, oc, 1, stride, 0);
    const int fixup = norm == ICN_NORM_NONE;
    b->gb1 = 0;
    b->w1 = b->gb1 + (fixup ? 0 : 2 * (size_t)c);
    b->gb2 = b->w1 + (size_t)oc * icn_conv_kdim(&b->conv1);
    b->w2 = b->gb2 + (fixup ? 0 : 2 * (size_t)oc);
    b->wp = b->w2 + (size_t)oc * icn_conv_kdim(&b->conv2);
    b->fx = b->wp + (b->proj.k ? (size_t)oc * c : 0);
    b->n_params = b->fx + (fixup ? ICN_FIXUP_SCALARS : 0);
    b->n_state = norm == ICN_NORM_BATCH ? 2 * (size_t)c + 2 * (size_t)oc : 0;
}

/* The block's two normalizations: batch norm (running statistics in state), group norm, or none. */
static size_t norm_stats_size(const icn_block_shape *b, int n, int c) {
    switch (b->norm) {
    case ICN_NORM_BATCH: return ICN_BN_STATS * (size_t)c;
    case ICN_NORM_GROUP: return icn_groupnorm_stats_size(n, c);
    case ICN_NORM_NONE: break;
    }
    return 0;
}

static void norm_forward(const icn_block_shape *s, float *out, float *stats, const float *in, const float *gb,
                         float *running, int n, long hw, int c, int training, icn_partials *partials) {
    if (s->norm == ICN_NORM_GROUP)
        icn_groupnorm_forward(out, stats, in, gb, n, hw, c, 1);
    else
        icn_batchnorm_forward(out, stats, in, gb, running, n * hw, c, training, 1, partials);
}

static void norm_backward(const icn_block_shape *s, float *din, float *dgb, float *stats, const float *dout,
                          const float *in, const float *gb, int n, long hw, int c, int training, icn_partials *partials) {
    if (s->norm == ICN_NORM_GROUP)
        icn_groupnorm_backward(din, dgb, stats, dout, in, gb, n, hw, c, partials);
    else
        icn_batchnorm_backward(din, dgb, stats, dout, in, gb, n * hw, c, training, partials);
}

void icn_block_buffers_new(icn_block_buffers *buf, const icn_block_shape *b, int max_batch, icn_partials *partials) {
    const size_t n = (size_t)max_batch, in = (size_t)b->h * b->w * b->c, out = (size_t)b->oh * b->ow * b->oc;
    const size_t st1 = norm_stats_size(b, max_batch, b->c), st2 = norm_stats_size(b, max_batch, b->oc);
    const size_t dw2 = b->norm == ICN_NORM_NONE ? b->wp - b->w2 : 0;
    float *p = xmalloc((n * in + 2 * n * out + st1 + st2 + dw2) * sizeof(float));
    buf->a = p, p += n * in;
    buf->h = p, p += n * out;
    buf->b = p, p += n * out;
    buf->stats1 = p, p += st1;
    buf->stats2 = p, p += st2;
    buf->dw2 = dw2 ? p : NULL;
    buf->partials = partials;
    const icn_conv_shape *convs[3] = {&b->conv1, &b->conv2, &b->proj};
    const icn_conv_opts opts = {.chunked = 1, .type = ICN_CONV_F32, .scratch = partials};
    for (int i = 0; i < 3; i++) buf->conv[i] = convs[i]->k ? icn_conv_new(convs[i], &opts, max_batch) : NULL;
}

void icn_block_buffers_free(icn_block_buffers *buf) {
    free(buf->a);
    for (int i = 0; i < 3; i++) icn_conv_free(buf->conv[i]);
    memset(buf, 0, sizeof *buf);
}

static double sum(const float *x, size_t count) {
    double t = 0;
    for (size_t i = 0; i < count; i++) t += x[i];
    return t;
}

/* The Fixup block (layers.h), in [N,H,W,C] -> out [N,OH,OW,OC]; f = p + s->fx, its scalars. */
static void fixup_forward(float *out, const icn_block_buffers *buf, const float *in, const float *p,
                          const icn_block_shape *s, int n) {
    const float *f = p + s->fx;
    const size_t in_count = (size_t)n * s->h * s->w * s->c, out_count = (size_t)n * s->oh * s->ow * s->oc;
    elementwise_st(EW_AFFINE, buf->a, in, 1, f[0], in_count);                /* a = x + bias1a */
    icn_conv_forward(buf->conv[0], buf->h, buf->a, p + s->w1, NULL, n, 0.0f);
    elementwise_st(EW_AFFINE, buf->h, buf->h, 1, f[1], out_count);           /* h = conv1(a) + bias1b */
    elementwise_st(EW_RELU_AFFINE, buf->b, buf->h, 1, f[2], out_count);      /* b = ReLU(h) + bias2a */
    icn_conv_forward(buf->conv[1], out, buf->b, p + s->w2, NULL, n, 0.0f);
    elementwise_st(EW_AFFINE, out, out, f[3], f[4], out_count);              /* scale conv2(b) + bias2b */
    if (s->proj.k)
        icn_conv_forward(buf->conv[2], out, buf->a, p + s->wp, NULL, n, 1.0f); /* + W_s a */
    else
        elementwise(EW_ADD, out, in, out_count); /* + x */
}

/* dout [N,OH,OW,OC] -> din [N,H,W,C], dp += (NULL: skip); tmp [N,OH,OW,OC] scratch. With
 * c2 = conv2(b): d scale = <dout, c2> = <W2, G>, G the weight gradient conv2's backward gives for
 * dout (c2 is linear in W2), and dW2 = scale G; d bias = the sum of the gradient where it is added. */
static void fixup_backward(float *din, float *dp, float *tmp, const float *dout, const icn_block_buffers *buf,
                           const float *p, const icn_block_shape *s, int n) {
    const float *f = p + s->fx;
    const size_t in_count = (size_t)n * s->h * s->w * s->c, out_count = (size_t)n * s->oh * s->ow * s->oc;
    const size_t nw2 = s->wp - s->w2;
    float *df = dp ? dp + s->fx : NULL;
    if (dp) memset(buf->dw2, 0, nw2 * sizeof(float));
    icn_conv_backward(buf->conv[1], tmp, 0, dp ? buf->dw2 : NULL, NULL, dout, buf->b, p + s->w2, n);
    if (dp) {
        double g = 0;
        for (size_t k = 0; k < nw2; k++) g += (double)p[s->w2 + k] * buf->dw2[k], dp[s->w2 + k] += f[3] * buf->dw2[k];
        df[3] += (float)g;
        df[4] += (float)sum(dout, out_count);
    }
    elementwise_st(EW_AFFINE, tmp, tmp, f[3], 0, out_count); /* d b = scale W2^T dout */
    if (df) df[2] += (float)sum(tmp, out_count);
    icn_relu_backward(tmp, buf->h, out_count); /* d h: ReLU(h) > 0 where h > 0 */
    if (df) df[1] += (float)sum(tmp, out_count);
    icn_conv_backward(buf->conv[0], din, 0, dp ? dp + s->w1 : NULL, NULL, tmp, buf->a, p + s->w1, n);
    if (s->proj.k) icn_conv_backward(buf->conv[2], din, 1, dp ? dp + s->wp : NULL, NULL, dout, buf->a, p + s->wp, n);
    if (df) df[0] += (float)sum(din, in_count); /* everything that reached a */
    if (!s->proj.k) elementwise(EW_ADD, din, dout, in_count);
}

void icn_block_forward(float *out, const icn_block_buffers *buf, const float *in, const float *p, float *state,
                   const icn_block_shape *s, int n, int training) {
    if (s->norm == ICN_NORM_NONE) {
        fixup_forward(out, buf, in, p, s, n);
        return;
    }
    const long hw_in = (long)s->h * s->w, hw_out = (long)s->oh * s->ow, rows_out = n * hw_out;
    norm_forward(s, buf->a, buf->stats1, in, p + s->gb1, state, n, hw_in, s->c, training, buf->partials);
    icn_conv_forward(buf->conv[0], buf->h, buf->a, p + s->w1, NULL, n, 0.0f);
    norm_forward(s, buf->b, buf->stats2, buf->h, p + s->gb2, s->norm == ICN_NORM_BATCH ? state + 2 * s->c : NULL, n,
                 hw_out, s->oc, training, buf->partials);
    icn_conv_forward(buf->conv[1], out, buf->b, p + s->w2, NULL, n, 0.0f);
    if (s->proj.k) /* out += W_s a (He et al. Eq. 2) */
        icn_conv_forward(buf->conv[2], out, buf->a, p + s->wp, NULL, n, 1.0f);
    else
        elementwise(EW_ADD, out, in, (size_t)rows_out * s->oc); /* out += x */
}

void icn_block_backward(float *din, float *dp, float *tmp, const float *dout, const float *in, const icn_block_buffers *buf,
                    const float *p, const icn_block_shape *s, int n, int training) {
    if (s->norm == ICN_NORM_NONE) {
        fixup_backward(din, dp, tmp, dout, buf, p, s, n);
        return;
    }
    const long hw_in = (long)s->h * s->w, hw_out = (long)s->oh * s->ow, rows_in = n * hw_in, rows_out = n * hw_out;
#define DP(off) (dp ? dp + (off) : NULL)
    /* the residual branch, from its end: tmp = d b, then d h */
    icn_conv_backward(buf->conv[1], tmp, 0, DP(s->w2), NULL, dout, buf->b, p + s->w2, n);
    icn_relu_backward(tmp, buf->b, (size_t)rows_out * s->oc);
    norm_backward(s, tmp, DP(s->gb2), buf->stats2, tmp, buf->h, p + s->gb2, n, hw_out, s->oc, training, buf->partials);
    /* din = d a: conv1's, plus the projection's when the shortcut starts from a */
    icn_conv_backward(buf->conv[0], din, 0, DP(s->w1), NULL, tmp, buf->a, p + s->w1, n);
    if (s->proj.k) icn_conv_backward(buf->conv[2], din, 1, DP(s->wp), NULL, dout, buf->a, p + s->wp, n);
    icn_relu_backward(din, buf->a, (size_t)rows_in * s->c);
    norm_backward(s, din, DP(s->gb1), buf->stats1, din, in, p + s->gb1, n, hw_in, s->c, training, buf->partials);
    if (!s->proj.k) elementwise(EW_ADD, din, dout, (size_t)rows_in * s->c); /* the identity shortcut's gradient */
#undef DP
}
