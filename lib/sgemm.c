/* sgemm.c: the AVX-512 matrix product (sgemm.h). */
#include "sgemm.h"

#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "util.h"

#ifdef __AVX512F__
#include <immintrin.h>

enum { MR = 8, NR = 32, KC = 256 };

/* The calling thread's packing buffers, grown on demand, kept for its next product. */
static _Thread_local float *pack_a, *pack_b;
static _Thread_local size_t cap_a, cap_b;

static float *grow(float **buf, size_t *cap, size_t floats) {
    if (floats > *cap) {
        free(*buf);
        *buf = NULL;
        if (posix_memalign((void **)buf, 64, floats * sizeof(float)))
            icn_die(1, "out of memory (%zu bytes for a matrix product's packing)", floats * sizeof(float));
        *cap = floats;
    }
    return *buf;
}

/* r[i][j] -> r[j][i], a 16 x 16 block in registers. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    for (int i = 0; i < 16; i += 4) {
        r[i + 0] = _mm512_shuffle_ps(t[i + 0], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i + 0], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
        t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    }
}

/* op(A) rows [0, m), reduction [k0, k0 + kc) -> panels of MR rows: ap[p][k][MR], zero-padded. */
static void pack_rows(float *ap, const float *a, int lda, int ta, int m, int k0, int kc) {
    for (int p = 0; p * MR < m; p++, ap += (size_t)kc * MR) {
        const int i0 = p * MR, mr = m - i0 < MR ? m - i0 : MR;
        if (mr < MR) memset(ap, 0, (size_t)kc * MR * sizeof(float));
        if (ta) /* op(A)[i][k] = A[k][i]: row k of A holds the panel's row k */
            for (int k = 0; k < kc; k++) memcpy(ap + (size_t)k * MR, a + (size_t)(k0 + k) * lda + i0, (size_t)mr * sizeof(float));
        else { /* blocks of 16 of the reduction transposed in registers (rows 8-15 zero), the rest one by one */
            const int kb = mr == MR ? kc / 16 * 16 : 0;
            for (int k = 0; k < kb; k += 16) {
                __m512 r[16];
                for (int i = 0; i < MR; i++) r[i] = _mm512_loadu_ps(a + (size_t)(i0 + i) * lda + k0 + k);
                for (int i = MR; i < 16; i++) r[i] = _mm512_setzero_ps();
                transpose16(r);
                for (int t = 0; t < 16; t++) _mm256_store_ps(ap + (size_t)(k + t) * MR, _mm512_castps512_ps256(r[t]));
            }
            for (int k = kb; k < kc; k++)
                for (int i = 0; i < mr; i++) ap[(size_t)k * MR + i] = a[(size_t)(i0 + i) * lda + k0 + k];
        }
    }
}

/* op(B) = B^T, columns [0, n), reduction [k0, k0 + kc) -> panels of NR columns: bp[p][k][NR],
 * each column of a panel a row of B: 16 x 16 blocks transposed in registers, the rest one by one. */
static void pack_cols(float *bp, const float *b, int ldb, int n, int k0, int kc) {
    for (int p = 0; p * NR < n; p++, bp += (size_t)kc * NR) {
        const int j0 = p * NR, nr = n - j0 < NR ? n - j0 : NR;
        if (nr < NR) memset(bp, 0, (size_t)kc * NR * sizeof(float));
        const int jb = nr / 16 * 16, kb = kc / 16 * 16;
        for (int j = 0; j < jb; j += 16)
            for (int k = 0; k < kb; k += 16) {
                __m512 r[16];
                for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(b + (size_t)(j0 + j + i) * ldb + k0 + k);
                transpose16(r);
                for (int i = 0; i < 16; i++) _mm512_store_ps(bp + (size_t)(k + i) * NR + j, r[i]);
            }
        for (int j = 0; j < nr; j++) { /* what the blocks left: the last columns, the last rows */
            const float *src = b + (size_t)(j0 + j) * ldb + k0;
            for (int k = j < jb ? kb : 0; k < kc; k++) bp[(size_t)k * NR + j] = src[k];
        }
    }
}

/* C[mr, nr] = alpha * ap B + beta * C (beta 0: C not read), over kc, where row k of B's panel
 * starts at bp + k * bstride: a packed panel (bstride NR, padded with zeros) or op(B) itself
 * when it is row-major (bstride ldb, the columns past nr masked off). */
static void kernel(int kc, const float *restrict ap, const float *restrict bp, long bstride, float *c, int ldc, int mr,
                   int nr, float alpha, float beta) {
    const __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    __m512 acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++, ap += MR, bp += bstride) {
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, bp), b1 = _mm512_maskz_loadu_ps(m1, bp + 16);
        for (int i = 0; i < MR; i++) {
            const __m512 a = _mm512_set1_ps(ap[i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < mr; i++) {
        float *ci = c + (size_t)i * ldc;
        __m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
        }
        _mm512_mask_storeu_ps(ci, m0, r0);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
}

void icn_sgemm_avx512(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* C = beta * C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta != 0.0f ? beta * c[(size_t)i * ldc + j] : 0.0f;
        return;
    }
    const int pm = (m + MR - 1) / MR, pn = (n + NR - 1) / NR;
    const int kc_max = k < KC ? k : KC;
    float *ap = grow(&pack_a, &cap_a, (size_t)pm * MR * kc_max);
    /* a row-major op(B) is read where it is; only a transposed one is packed */
    float *bp = trans_b ? grow(&pack_b, &cap_b, (size_t)pn * NR * kc_max) : NULL;
    for (int k0 = 0; k0 < k; k0 += KC) {
        const int kc = k - k0 < KC ? k - k0 : KC;
        pack_rows(ap, a, lda, trans_a, m, k0, kc);
        if (trans_b) pack_cols(bp, b, ldb, n, k0, kc);
        const float be = k0 == 0 ? beta : 1.0f;
        for (int q = 0; q < pn; q++) { /* a panel of B stays in cache over all of A's */
            const float *bq = trans_b ? bp + (size_t)q * kc * NR : b + (size_t)k0 * ldb + q * NR;
            const long bstride = trans_b ? NR : ldb;
            for (int p = 0; p < pm; p++) {
                const int mr = m - p * MR < MR ? m - p * MR : MR, nr = n - q * NR < NR ? n - q * NR : NR;
                kernel(kc, ap + (size_t)p * kc * MR, bq, bstride, c + (size_t)p * MR * ldc + q * NR, ldc, mr, nr,
                       alpha, be);
            }
        }
    }
}

#else

void icn_sgemm_avx512(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc) {
    icn_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

#endif
