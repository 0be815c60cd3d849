#include "gemm.h"

#include <cblas.h>
#include <string.h>

#include "parallel.h"

/* Below these sizes a product is "thin": OpenBLAS's threads cost more than they give. */
#define THIN_K 64
#define THIN_N 32
#define MIN_ROWS_PER_THREAD 256
/* Below SMALL_MNK multiply-adds a product is "small": OpenBLAS would wake its threads for well under
 * a millisecond of work, and a woken OpenBLAS thread then spins in sched_yield for tens of
 * milliseconds, taking a core from icn's own threads (the MNIST net's linear layer: 15% of a
 * 2-thread synthesis, docs/RESULTS.md). Small products are split by rows on icn's pool, or run on
 * the calling thread, with OpenBLAS single-threaded either way. */
#define SMALL_MNK (8L << 20)
#define MIN_SMALL_ROWS 16

int icn_gemm_is_thin(int m, int n, int k) {
    return icn_threads() > 1 && (k < THIN_K || n < THIN_N) && m >= 2 * MIN_ROWS_PER_THREAD;
}

static int gemm_is_small(int m, int n, int k) { return (long)m * n * k < SMALL_MNK; }

static int plain_gemm;

void icn_gemm_set_plain(int on) { plain_gemm = on; }

void icn_gemm_set_threads(int n) { openblas_set_num_threads(n); }

void icn_gemm_bias_rows(float *out, const float *bias, long rows, int cols, float beta) {
    for (long r = 0; r < rows; r++) {
        float *row = out + (size_t)r * cols;
        if (beta == 0.0f) memcpy(row, bias, (size_t)cols * sizeof(float));
        else
            for (int j = 0; j < cols; j++) row[j] += bias[j];
    }
}

void icn_gemm_sum_rows(float *acc, const float *x, long rows, int cols) {
    for (long r = 0; r < rows; r++) {
        const float *row = x + (size_t)r * cols;
        for (int j = 0; j < cols; j++) acc[j] += row[j];
    }
}

/* C = alpha op(A) op(B) + beta C, row-major, in loops: no buffer, no thread of OpenBLAS's. */
static void sgemm_plain(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++) {
        float *ci = c + (size_t)i * ldc;
        if (trans_b) { /* C[i][j] = alpha * dot(row i of op(A), row j of B) + beta C[i][j] */
            for (int j = 0; j < n; j++) {
                const float *bj = b + (size_t)j * ldb;
                float s = 0.0f;
                if (!trans_a)
                    for (int p = 0; p < k; p++) s += a[(size_t)i * lda + p] * bj[p];
                else
                    for (int p = 0; p < k; p++) s += a[(size_t)p * lda + i] * bj[p];
                ci[j] = alpha * s + (beta == 0.0f ? 0.0f : beta * ci[j]);
            }
            continue;
        }
        if (beta == 0.0f) memset(ci, 0, (size_t)n * sizeof(float));
        else if (beta != 1.0f)
            for (int j = 0; j < n; j++) ci[j] *= beta;
        for (int p = 0; p < k; p++) { /* C[i][:] += alpha op(A)[i][p] B[p][:] */
            float aip = alpha * (trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]);
            const float *bp = b + (size_t)p * ldb;
            for (int j = 0; j < n; j++) ci[j] += aip * bp[j];
        }
    }
}

void icn_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
               int ldb, float beta, float *c, int ldc) {
    if (plain_gemm) {
        sgemm_plain(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
}

typedef struct {
    int trans_a, trans_b, n, k, lda, ldb, ldc;
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemm_job;

/* Rows [lo, hi) of C come from rows of op(A): rows of A, or columns when A is transposed. */
static void gemm_rows(void *p, long lo, long hi, int thread) {
    (void)thread;
    const gemm_job *j = p;
    const float *a_part = j->trans_a ? j->a + lo : j->a + (size_t)lo * j->lda;
    icn_sgemm(j->trans_a, j->trans_b, (int)(hi - lo), j->n, j->k, j->alpha, a_part, j->lda, j->b, j->ldb, j->beta,
          j->c + (size_t)lo * j->ldc, j->ldc);
}

/* Run single-threaded OpenBLAS calls side by side, then give OpenBLAS its threads back. */
void icn_gemm_parallel_for(long n, long min_per_thread, icn_range_fn fn, void *ctx) {
    openblas_set_num_threads(1);
    icn_parallel_for(n, min_per_thread, fn, ctx);
    openblas_set_num_threads(icn_threads());
}

void icn_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc) {
    int thin = icn_gemm_is_thin(m, n, k);
    if (!thin && !(icn_threads() > 1 && gemm_is_small(m, n, k))) {
        icn_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    gemm_job job = {trans_a, trans_b, n, k, lda, ldb, ldc, alpha, beta, a, b, c};
    icn_gemm_parallel_for(m, thin ? MIN_ROWS_PER_THREAD : MIN_SMALL_ROWS, gemm_rows, &job);
}

typedef struct {
    int m, n, lda, ldb, ldc;
    const float *a, *b;
    float *c, *partial;
} reduce_job;

static void reduce_partial(void *p, long lo, long hi, int thread) {
    const reduce_job *j = p;
    icn_sgemm(1, 0, j->m, j->n, (int)(hi - lo), 1.0f, j->a + (size_t)lo * j->lda, j->lda, j->b + (size_t)lo * j->ldb,
          j->ldb, 0.0f, j->partial + (size_t)thread * j->m * j->n, j->n);
}

void icn_gemm_tn_acc(int m, int n, int r, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                     icn_partials *partials) {
    int nt = icn_threads();
    if (!(nt > 1 && (m < THIN_N || n < THIN_K) && r >= 2 * MIN_ROWS_PER_THREAD)) {
        if (nt > 1 && gemm_is_small(m, n, r)) { /* one product, OpenBLAS single-threaded */
            openblas_set_num_threads(1);
            icn_sgemm(1, 0, m, n, r, 1.0f, a, lda, b, ldb, 1.0f, c, ldc);
            openblas_set_num_threads(nt);
        } else {
            icn_sgemm(1, 0, m, n, r, 1.0f, a, lda, b, ldb, 1.0f, c, ldc);
        }
        return;
    }
    size_t need = (size_t)nt * m * n;
    icn_partials own = {0};
    float *partial_buf = icn_partials_get(partials ? partials : &own, need * sizeof(float));
    /* Threads that get no range leave their slot untouched: zero it so the sum is right. */
    memset(partial_buf, 0, need * sizeof(float));
    reduce_job job = {m, n, lda, ldb, ldc, a, b, c, partial_buf};
    icn_gemm_parallel_for(r, MIN_ROWS_PER_THREAD, reduce_partial, &job);
    for (int t = 0; t < nt; t++)
        for (int i = 0; i < m; i++) {
            const float *src = partial_buf + (size_t)t * m * n + (size_t)i * n;
            float *dst = c + (size_t)i * ldc;
            for (int j = 0; j < n; j++) dst[j] += src[j];
        }
    icn_partials_free(&own);
}
