#include "gemm.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "util.h"

/* Below these sizes a product is "thin": OpenBLAS's threads cost more than they give. */
#define THIN_K 64
#define THIN_N 32
#define MIN_ROWS_PER_THREAD 256

int icn_gemm_is_thin(int m, int n, int k) {
    return icn_threads() > 1 && (k < THIN_K || n < THIN_N) && m >= 2 * MIN_ROWS_PER_THREAD;
}

static void sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Run `nt` single-threaded OpenBLAS calls side by side, then give OpenBLAS its threads back. */
#define SPLIT_BEGIN(nt) openblas_set_num_threads(1); _Pragma("omp parallel num_threads(nt)") {
#define SPLIT_END } openblas_set_num_threads(icn_threads());

void icn_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc) {
    if (!icn_gemm_is_thin(m, n, k)) {
        sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    int nt = icn_threads();
    SPLIT_BEGIN(nt)
        int t = omp_get_thread_num(), parts = omp_get_num_threads();
        int lo = (int)((long)m * t / parts), hi = (int)((long)m * (t + 1) / parts);
        /* Rows of C come from rows of op(A): row i of A, or column i when A is transposed. */
        const float *a_part = trans_a ? a + lo : a + (size_t)lo * lda;
        if (hi > lo) sgemm(trans_a, trans_b, hi - lo, n, k, alpha, a_part, lda, b, ldb, beta, c + (size_t)lo * ldc, ldc);
    SPLIT_END
}

/* Per-thread partial sums for split reductions; grown once, never in steady state. */
static float *partial_buf;
static size_t partial_cap;

void icn_gemm_tn_acc(int m, int n, int r, const float *a, int lda, const float *b, int ldb, float *c, int ldc) {
    int nt = icn_threads();
    if (!(nt > 1 && (m < THIN_N || n < THIN_K) && r >= 2 * MIN_ROWS_PER_THREAD)) {
        sgemm(1, 0, m, n, r, 1.0f, a, lda, b, ldb, 1.0f, c, ldc);
        return;
    }
    size_t need = (size_t)nt * m * n;
    if (need > partial_cap) {
        partial_buf = xrealloc(partial_buf, need * sizeof(float));
        partial_cap = need;
    }
    float *partial = partial_buf;
    SPLIT_BEGIN(nt)
        int t = omp_get_thread_num(), parts = omp_get_num_threads();
        int lo = (int)((long)r * t / parts), hi = (int)((long)r * (t + 1) / parts);
        float *mine = partial + (size_t)t * m * n;
        sgemm(1, 0, m, n, hi - lo, 1.0f, a + (size_t)lo * lda, lda, b + (size_t)lo * ldb, ldb, 0.0f, mine, n);
        #pragma omp barrier
        /* Sum the partials into C, each thread taking a slice of C's rows. */
        int r0 = m * t / parts, r1 = m * (t + 1) / parts;
        for (int i = r0; i < r1; i++)
            for (int p = 0; p < parts; p++) {
                const float *src = partial + (size_t)p * m * n + (size_t)i * n;
                float *dst = c + (size_t)i * ldc;
                for (int j = 0; j < n; j++) dst[j] += src[j];
            }
    SPLIT_END
}
