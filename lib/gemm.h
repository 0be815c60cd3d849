/* gemm.h: the one place that calls cblas_sgemm, and decides how to thread it.
 *
 * Row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C. Big products go to OpenBLAS
 * with all its threads. Thin products (small K or small N: a first convolution with K = 25,
 * a 10-way linear layer) run slower on 2 OpenBLAS threads than on 1, so icn_gemm splits
 * the rows of C across threads, each calling single-threaded OpenBLAS. A product whose
 * output is small but whose reduction is long (weight gradients) is split along the
 * reduction with per-thread partial sums (icn_gemm_tn_acc). */
#ifndef ICN_GEMM_H
#define ICN_GEMM_H

#include "parallel.h"

void icn_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc);

/* C[M,N] += A^T B where A is [R, M] and B is [R, N] (row-major), R the long reduction; partials
 * holds the per-thread sums when it is split (NULL: a buffer of its own). */
void icn_gemm_tn_acc(int m, int n, int r, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                     icn_partials *partials);

/* For work already split across threads: icn_gemm_parallel_for runs fn like icn_parallel_for
 * (parallel.h) with OpenBLAS single-threaded inside, and fn calls icn_sgemm, one plain product. */
void icn_gemm_parallel_for(long n, long min_per_thread, icn_range_fn fn, void *ctx);
void icn_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
               int ldb, float beta, float *c, int ldc);

/* The bias of a product: rows [rows, cols] of out = bias (beta 0) or out + bias (beta 1), so that a
 * product with beta 1 adds onto them; and its gradient: acc[cols] += the sum of x's rows, in order. */
void icn_gemm_bias_rows(float *out, const float *bias, long rows, int cols, float beta);
void icn_gemm_sum_rows(float *acc, const float *x, long rows, int cols);

/* Per-call policy, exposed for the benchmark: 1 if icn_gemm would split this shape. */
int icn_gemm_is_thin(int m, int n, int k);
/* 1: icn_sgemm computes with plain loops and never calls OpenBLAS (set under an address-space
 * limit, memlimit.h: OpenBLAS spins forever when it cannot map its work buffer). 0: OpenBLAS. */
void icn_gemm_set_plain(int on);
/* OpenBLAS's thread count outside the narrowed products: the thread budget (runtime.h). */
void icn_gemm_set_threads(int n);

#endif
