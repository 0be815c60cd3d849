/* sgemm.h: a single-threaded AVX-512 matrix product, the fast path's (conv_gemm.h) for the
 * convolutions that are matrix products in disguise (the MNIST net's last: K = 6400).
 *
 * Why our own: OpenBLAS 0.3.21 is held to its AVX2 kernels here (its AVX-512 ones crash on
 * Zen 5), and oneDNN 2.6's sgemm corrupted the heap on this machine (docs/RESULTS.md, "Heap
 * abort"). This is the textbook blocked product, nothing clever: for each block of KC of the
 * reduction, op(A) is packed into panels of 8 rows, op(B) is read where it is when row-major
 * (a transposed one is packed into panels of 32 columns), and an 8 x 32 micro-kernel (16 zmm
 * accumulators, the A element broadcast from memory) runs over every pair of panels; the edges
 * are zero-padded in the panels and masked at the loads and stores.
 * Its packing buffers are the calling thread's, grown on demand and kept.
 *
 * Row-major, as gemm.h: C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C, beta 0 meaning C is
 * not read. Without AVX-512 at build time it is icn_sgemm (OpenBLAS). It sums in another order
 * than OpenBLAS: the unit tests hold it to the reference at 1e-4 relative (test_sgemm,
 * test_conv). */
#ifndef ICN_SGEMM_H
#define ICN_SGEMM_H

void icn_sgemm_avx512(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc);

#endif
