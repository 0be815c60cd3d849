#include "conv_ref.h"

#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "util.h"

#define CHUNK_FLOATS 65536 /* the chunked plan's piece of col: 256 KB */

struct icn_conv_ref {
    icn_conv_shape s;
    int chunked, slots, max_batch;
    float *col;            /* whole plan: the last forward's im2col [max_batch * OH * OW, K] */
    icn_partials *scratch; /* the caller's, or own */
    icn_partials own;
};

icn_conv_ref *icn_conv_ref_new(const icn_conv_shape *s, int chunked, int keep_col, int max_batch,
                               icn_partials *scratch) {
    icn_conv_ref *r = xcalloc(1, sizeof *r);
    r->s = *s, r->chunked = chunked, r->max_batch = max_batch;
    r->slots = icn_threads();
    r->scratch = scratch ? scratch : &r->own;
    if (!chunked && keep_col) r->col = xmalloc((size_t)max_batch * s->oh * s->ow * icn_conv_kdim(s) * sizeof(float));
    return r;
}

void icn_conv_ref_free(icn_conv_ref *r) {
    if (!r) return;
    free(r->col);
    icn_partials_free(&r->own);
    free(r);
}

/* ---- the whole plan ---- */

typedef struct { float *col; const float *in; const icn_conv_shape *s; int accumulate; } conv_job;

static void im2col_rows(void *p, long lo, long hi, int thread) {
    (void)thread;
    const conv_job *j = p;
    icn_im2col_range(j->col + (size_t)lo * icn_conv_kdim(j->s), j->in, j->s, lo, hi);
}

static void im2col(float *col, const float *in, const icn_conv_shape *s, int n) {
    conv_job job = {col, in, s, 0};
    icn_parallel_for((long)n * s->oh * s->ow, ICN_PARALLEL_MIN_WORK / (long)icn_conv_kdim(s) + 1, im2col_rows, &job);
}

/* col2im onto zeros (or, accumulating, onto what in holds). Parallel over images, so no two
 * threads write the same pixel. */
static void col2im_images(void *p, long lo, long hi, int thread) {
    (void)thread;
    const conv_job *j = p;
    const icn_conv_shape *s = j->s;
    const size_t img = (size_t)s->h * s->w * s->c, rows = (size_t)s->oh * s->ow;
    float *in = (float *)j->in;
    if (!j->accumulate) memset(in + lo * img, 0, (size_t)(hi - lo) * img * sizeof(float));
    icn_col2im_range(in, j->col + lo * rows * icn_conv_kdim(s), s, lo * (long)rows, hi * (long)rows);
}

static void col2im(float *in, const float *col, const icn_conv_shape *s, int n, int accumulate) {
    conv_job job = {(float *)col, in, s, accumulate};
    long per_image = (long)s->oh * s->ow * (long)icn_conv_kdim(s);
    icn_parallel_for(n, ICN_PARALLEL_MIN_WORK / per_image + 1, col2im_images, &job);
}

static void whole_forward(icn_conv_ref *r, float *out, const float *in, const float *weight, const float *bias, int n,
                          float beta) {
    const icn_conv_shape *s = &r->s;
    const int K = (int)icn_conv_kdim(s), M = n * s->oh * s->ow;
    if (!r->col) icn_die(3, "internal: a reference convolution made without its forward was asked for one");
    im2col(r->col, in, s, n);
    if (bias) icn_gemm_bias_rows(out, bias, M, s->oc, beta);
    /* out[M, OC] = col[M, K] . weight[OC, K]^T (+ bias) (+ out) */
    icn_gemm(0, 1, M, s->oc, K, 1.0f, r->col, K, weight, K, bias || beta != 0.0f ? 1.0f : 0.0f, out, s->oc);
}

static void whole_backward(icn_conv_ref *r, float *din, int accumulate, float *dweight, float *dbias,
                           const float *dout, const float *weight, int n) {
    const icn_conv_shape *s = &r->s;
    const int K = (int)icn_conv_kdim(s), M = n * s->oh * s->ow;
    if (dweight) icn_gemm_tn_acc(s->oc, K, M, dout, s->oc, r->col, K, dweight, K, r->scratch); /* dW += dout^T col */
    if (dbias) icn_gemm_sum_rows(dbias, dout, M, s->oc);
    if (din) { /* the scratch's partial sums above are spent: it holds dcol now */
        float *dcol = icn_partials_get(r->scratch, (size_t)M * K * sizeof(float));
        icn_gemm(0, 0, M, K, s->oc, 1.0f, dout, s->oc, weight, K, 0.0f, dcol, K); /* dcol = dout W */
        col2im(din, dcol, s, n, accumulate);
    }
}

/* ---- the chunked plan ---- */

static long chunk_rows(const icn_conv_shape *s) {
    long rows = CHUNK_FLOATS / (long)icn_conv_kdim(s);
    return rows > 0 ? rows : 1;
}

/* A slot: a chunk of col, then a partial weight gradient. */
static size_t slot_floats(const icn_conv_shape *s) {
    const size_t K = icn_conv_kdim(s);
    return (size_t)chunk_rows(s) * K + (size_t)s->oc * K;
}

typedef struct {
    const icn_conv_shape *s;
    float *buf; /* slots * slot_floats(s) */
    int slots, n, accumulate;
    float beta;
    float *out, *din, *dweight; /* forward: out; backward: din and/or dweight */
    const float *in, *weight, *dout, *bias;
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
        float *col = j->buf + (size_t)t * slot_floats(s), *dw = col + (size_t)rows * K;
        const long b0 = j->n * t / j->slots, b1 = j->n * (t + 1) / j->slots;
        if (j->dweight) memset(dw, 0, (size_t)OC * K * sizeof(float));
        if (j->din && !j->accumulate) memset(j->din + b0 * img, 0, (size_t)(b1 - b0) * img * sizeof(float));
        for (long r = b0 * per_image; r < b1 * per_image; r += rows) {
            const int m = (int)(b1 * per_image - r < rows ? b1 * per_image - r : rows);
            if (j->out) { /* out = col W^T (+ bias) + beta out */
                float beta = j->beta;
                icn_im2col_range(col, j->in, s, r, r + m);
                if (j->bias) icn_gemm_bias_rows(j->out + (size_t)r * OC, j->bias, m, OC, beta), beta = 1.0f;
                icn_sgemm(0, 1, m, OC, K, 1.0f, col, K, j->weight, K, beta, j->out + (size_t)r * OC, OC);
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

static float *slots_of(icn_conv_ref *r) {
    return icn_partials_get(r->scratch, (size_t)r->slots * slot_floats(&r->s) * sizeof(float));
}

static void chunked_forward(icn_conv_ref *r, float *out, const float *in, const float *weight, const float *bias, int n,
                            float beta) {
    chunk_job job = {.s = &r->s, .buf = slots_of(r), .slots = r->slots, .n = n, .beta = beta, .out = out, .in = in,
                     .weight = weight, .bias = bias};
    icn_gemm_parallel_for(r->slots, 1, chunk_slots, &job);
}

static void chunked_backward(icn_conv_ref *r, float *din, int accumulate, float *dweight, float *dbias,
                             const float *dout, const float *in, const float *weight, int n) {
    const icn_conv_shape *s = &r->s;
    if (din || dweight) {
        chunk_job job = {.s = s, .buf = slots_of(r), .slots = r->slots, .n = n, .accumulate = accumulate, .din = din,
                         .dweight = dweight, .in = in, .weight = weight, .dout = dout};
        icn_gemm_parallel_for(r->slots, 1, chunk_slots, &job);
        if (dweight) {
            const size_t K = icn_conv_kdim(s), w = (size_t)s->oc * K, dw_at = (size_t)chunk_rows(s) * K;
            for (int t = 0; t < r->slots; t++) /* the slots' partial sums, in slot order */
                for (size_t i = 0; i < w; i++) dweight[i] += job.buf[(size_t)t * slot_floats(s) + dw_at + i];
        }
    }
    if (dbias) icn_gemm_sum_rows(dbias, dout, (long)n * s->oh * s->ow, s->oc);
}

void icn_conv_ref_forward(icn_conv_ref *r, float *out, const float *in, const float *weight, const float *bias, int n,
                          float beta) {
    if (n > r->max_batch) icn_die(3, "internal: batch of %d exceeds the convolution's %d", n, r->max_batch);
    if (r->chunked) chunked_forward(r, out, in, weight, bias, n, beta);
    else whole_forward(r, out, in, weight, bias, n, beta);
}

void icn_conv_ref_backward(icn_conv_ref *r, float *din, int accumulate, float *dweight, float *dbias,
                           const float *dout, const float *in, const float *weight, int n) {
    if (n > r->max_batch) icn_die(3, "internal: batch of %d exceeds the convolution's %d", n, r->max_batch);
    if (r->chunked) chunked_backward(r, din, accumulate, dweight, dbias, dout, in, weight, n);
    else whole_backward(r, din, accumulate, dweight, dbias, dout, weight, n);
}
