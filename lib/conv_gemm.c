#include "conv_gemm.h"

#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "parallel.h"
#include "sgemm.h"
#include "util.h"

/* icn's own AVX-512 product (sgemm.h), inside each of icn's threads, not dnnl_sgemm: oneDNN 2.6's
 * sgemm corrupted the heap on this Zen 5 machine (glibc "corrupted size vs. prev_size", freed
 * inside dnnl_sgemm, in the backward pass of a synthesizer: 3 of 8 synthesizers aborted in 4 runs
 * of 2, none with ICN_CONV=reference, which multiplies the same matrices with OpenBLAS, nor with
 * oneDNN held to AVX2; docs/RESULTS.md, "Heap abort"); and not OpenBLAS, held to AVX2 here. */
#define SGEMM(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) \
    icn_sgemm_avx512((ta) == 'T', (tb) == 'T', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

enum { PIECE_ROWS = 128 }; /* rows of the input gradient's col made at once, per thread */

struct icn_conv_gemm {
    icn_conv_shape s;
    int max_batch;
    float *col; /* the im2col of the last forward's input [max_batch * OH * OW, K] */
    size_t in_size;
    float *dcol[ICN_CONV_MAX_THREADS]; /* each thread's rows of the input gradient's col */
    icn_conv_sums sums;
};

icn_conv_gemm *icn_conv_gemm_new(const icn_conv_shape *s, int max_batch) {
    icn_conv_gemm *g = xcalloc(1, sizeof *g);
    g->s = *s, g->max_batch = max_batch;
    g->in_size = (size_t)s->h * s->w * s->c;
    icn_conv_sums_init(&g->sums, (size_t)s->oc * icn_conv_kdim(s), s->oc);
    g->col = xmalloc((size_t)max_batch * s->oh * s->ow * icn_conv_kdim(s) * sizeof(float));
    return g;
}

void icn_conv_gemm_free(icn_conv_gemm *g) {
    if (!g) return;
    for (int i = 0; i < ICN_CONV_MAX_THREADS; i++) free(g->dcol[i]);
    icn_conv_sums_free(&g->sums);
    free(g->col);
    free(g);
}

typedef struct {
    icn_conv_gemm *g;
    float *out, *din, *dweight, *dbias;
    const float *in, *dout, *weight, *bias;
    float beta;
    int accumulate;
} job;

/* A thread's images [lo, hi) as im2col rows [r0, r0 + rows) of K columns. */
typedef struct { long P, r0, rows, K; } rows_t;
static rows_t rows_of(const icn_conv_shape *s, long lo, long hi) {
    const long P = (long)s->oh * s->ow;
    return (rows_t){P, lo * P, (hi - lo) * P, (long)icn_conv_kdim(s)};
}

static void forward_range(void *ctx, long lo, long hi, int thread) {
    (void)thread;
    job *j = ctx;
    icn_conv_gemm *g = j->g;
    const icn_conv_shape *s = &g->s;
    const rows_t r = rows_of(s, lo, hi);
    float *col = g->col + r.r0 * r.K, *out = j->out + r.r0 * s->oc;
    icn_im2col_range(col, j->in, s, r.r0, r.r0 + r.rows);
    float beta = j->beta;
    if (j->bias) { /* out = bias (+ out), then += col W^T */
        icn_gemm_bias_rows(out, j->bias, r.rows, s->oc, beta);
        beta = 1.0f;
    }
    SGEMM('N', 'T', r.rows, s->oc, r.K, 1.0f, col, r.K, j->weight, r.K, beta, out, s->oc);
}

/* Both gradients of a thread's images: dW += dout^T col (from the forward's col), then
 * din = (or +=) col2im(dout W), a piece of rows at a time. */
static void backward_range(void *ctx, long lo, long hi, int thread) {
    job *j = ctx;
    icn_conv_gemm *g = j->g;
    const icn_conv_shape *s = &g->s;
    const rows_t r = rows_of(s, lo, hi);
    if (j->dweight) {
        float *dw = j->dweight, *db = j->dbias;
        icn_conv_sums_targets(&g->sums, thread, &dw, &db);
        const float *dout = j->dout + r.r0 * s->oc;
        SGEMM('T', 'N', s->oc, r.K, r.rows, 1.0f, dout, s->oc, g->col + r.r0 * r.K, r.K, 1.0f, dw, r.K);
        if (db) icn_gemm_sum_rows(db, dout, r.rows, s->oc);
    }
    if (!j->din) return;
    const long piece = PIECE_ROWS > r.P ? PIECE_ROWS / r.P * r.P : r.P; /* whole images at a time */
    if (!g->dcol[thread]) g->dcol[thread] = xmalloc((size_t)piece * r.K * sizeof(float));
    float *dcol = g->dcol[thread];
    if (!j->accumulate) memset(j->din + lo * g->in_size, 0, (size_t)(hi - lo) * g->in_size * sizeof(float));
    for (long q = r.r0; q < r.r0 + r.rows; q += piece) {
        long m = r.r0 + r.rows - q < piece ? r.r0 + r.rows - q : piece;
        SGEMM('N', 'N', m, r.K, s->oc, 1.0f, j->dout + q * s->oc, s->oc, j->weight, r.K, 0.0f, dcol, r.K);
        icn_col2im_range(j->din, dcol, s, q, q + m);
    }
}

static void check_batch(const icn_conv_gemm *g, int n) {
    if (n > g->max_batch) icn_die(3, "internal: batch of %d exceeds the convolution's %d", n, g->max_batch);
    if (icn_threads() > ICN_CONV_MAX_THREADS)
        icn_die(3, "internal: the convolutions support %d threads", ICN_CONV_MAX_THREADS);
}

void icn_conv_gemm_forward(icn_conv_gemm *g, float *out, const float *in, const float *weight, const float *bias, int n,
                           float beta) {
    check_batch(g, n);
    job j = {.g = g, .out = out, .in = in, .weight = weight, .bias = bias, .beta = beta};
    icn_gemm_parallel_for(n, 1, forward_range, &j);
}

void icn_conv_gemm_backward(icn_conv_gemm *g, float *din, int accumulate, float *dweight, float *dbias,
                            const float *dout, const float *weight, int n) {
    check_batch(g, n);
    if (dweight || dbias) {
        float *dw = icn_conv_sums_begin(&g->sums, dweight);
        job j = {.g = g, .dweight = dw, .dbias = dbias, .din = din, .accumulate = accumulate, .dout = dout,
                 .weight = weight};
        icn_gemm_parallel_for(n, 1, backward_range, &j); /* the input gradient in the same pass */
        icn_conv_sums_end(&g->sums, dw, dbias);
        return;
    }
    if (!din) return;
    job j = {.g = g, .din = din, .dout = dout, .weight = weight, .accumulate = accumulate};
    icn_gemm_parallel_for(n, 1, backward_range, &j);
}
