/* test_sgemm.c: the matrix products. The AVX-512 product (lib/sgemm.c) against the reference
 * (OpenBLAS, icn_sgemm) at 1e-4 relative: every transpose, sizes off the 8 x 32 tile and past the 256
 * block of the reduction, leading dimensions wider than the matrix, alpha and beta (beta 0
 * must not read C: it starts as NaN there); and gemm.c's plain products against OpenBLAS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "sgemm.h"
#include "util.h"

static void fill(float *x, size_t n, icn_rng *r) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(2 * icn_rng_uniform(r) - 1);
}

static void check(int ta, int tb, int m, int n, int k, float alpha, float beta) {
    icn_rng r;
    icn_rng_seed(&r, (uint64_t)(m * 131 + n * 17 + k + ta * 7 + tb * 3));
    const int pad = 3; /* leading dimensions wider than the rows */
    const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    const size_t sa = (size_t)(ta ? k : m) * lda, sb = (size_t)(tb ? n : k) * ldb, sc = (size_t)m * ldc;
    float *a = xmalloc(sa * sizeof(float)), *b = xmalloc(sb * sizeof(float));
    float *c0 = xmalloc(sc * sizeof(float)), *c1 = xmalloc(sc * sizeof(float));
    fill(a, sa, &r), fill(b, sb, &r), fill(c0, sc, &r);
    if (beta == 0.0f)
        for (size_t i = 0; i < sc; i++) c0[i] = NAN;
    memcpy(c1, c0, sc * sizeof(float));
    icn_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc);
    icn_sgemm_avx512(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc);
    double scale = sqrt((double)k) + 1; /* |sum of k products of [-1, 1]| grows like sqrt(k) */
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) {
            float want = c0[(size_t)i * ldc + j], got = c1[(size_t)i * ldc + j];
            if (j >= n) { /* past the matrix: untouched */
                if (!(isnan(want) && isnan(got))) assert_true(want == got);
                continue;
            }
            assert_false(isnan(got));
            if (fabs(got - want) > 1e-4 * scale * (fabs(alpha) + fabs(beta))) {
                print_error("ta %d tb %d m %d n %d k %d: C[%d][%d] = %g, reference %g\n", ta, tb, m, n, k, i, j, got, want);
                fail();
            }
        }
    free(a), free(b), free(c0), free(c1);
}

static void test_the_avx512_product_matches_openblas_for_every_transpose_and_edge(void **state) {
    (void)state;
    const int shapes[][3] = {{1, 1, 1}, {8, 32, 256}, {7, 33, 257}, {40, 512, 600}, {9, 17, 5}, {100, 10, 513}, {3, 70, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                check(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f);
                check(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 1.0f);
                check(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], -0.5f, 2.0f);
            }
}

/* The MNIST net's last convolution, as the fast path multiplies it: forward (N T), the
 * input's gradient (N N) and the weights' (T N), K = 6400. */
static void test_the_avx512_product_matches_openblas_on_the_mnist_net_s_last_convolution(void **state) {
    (void)state;
    check(0, 1, 40, 512, 6400, 1.0f, 1.0f);
    check(0, 0, 40, 6400, 512, 1.0f, 0.0f);
    check(1, 0, 512, 6400, 40, 1.0f, 1.0f);
}

static void test_a_product_without_a_reduction_only_scales_c(void **state) {
    (void)state;
    float c[6] = {1, 2, 3, 4, 5, 6}, a[1] = {0}, b[1] = {0};
    icn_sgemm_avx512(0, 0, 2, 3, 0, 1.0f, a, 1, b, 3, 2.0f, c, 3);
    for (int i = 0; i < 6; i++) assert_true(c[i] == 2.0f * (float)(i + 1));
    icn_sgemm_avx512(0, 0, 2, 3, 0, 1.0f, a, 1, b, 3, 0.0f, c, 3);
    for (int i = 0; i < 6; i++) assert_true(c[i] == 0.0f);
}

/* The plain products used under an address-space limit (issue 16, finding 8) against OpenBLAS's,
 * every transpose. */
static void test_the_plain_products_under_an_address_space_limit_match_openblas(void **state) {
    (void)state;
    icn_rng r;
    icn_rng_seed(&r, 8);
    enum { M = 37, N = 29, K = 41 };
    float a[M * K], b[K * N], c0[M * N], c1[M * N];
    for (int i = 0; i < M * K; i++) a[i] = (float)icn_rng_gauss(&r);
    for (int i = 0; i < K * N; i++) b[i] = (float)icn_rng_gauss(&r);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int bi = 0; bi < 3; bi++) {
                float beta = bi == 0 ? 0.0f : bi == 1 ? 1.0f : -0.5f;
                for (int i = 0; i < M * N; i++) c0[i] = c1[i] = (float)icn_rng_gauss(&r);
                int lda = ta ? M : K, ldb = tb ? K : N;
                icn_gemm_set_plain(0);
                icn_sgemm(ta, tb, M, N, K, 0.75f, a, lda, b, ldb, beta, c0, N);
                icn_gemm_set_plain(1);
                icn_sgemm(ta, tb, M, N, K, 0.75f, a, lda, b, ldb, beta, c1, N);
                icn_gemm_set_plain(0);
                for (int i = 0; i < M * N; i++)
                    if (fabsf(c0[i] - c1[i]) > 1e-4f * (1.0f + fabsf(c0[i])))
                        fail_msg("trans %d%d beta %g: element %d is %g, OpenBLAS says %g", ta, tb, beta, i, c1[i], c0[i]);
            }
}

int main(void) {
    icn_set_progname("test_sgemm");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_avx512_product_matches_openblas_for_every_transpose_and_edge),
        cmocka_unit_test(test_the_avx512_product_matches_openblas_on_the_mnist_net_s_last_convolution),
        cmocka_unit_test(test_a_product_without_a_reduction_only_scales_c),
        cmocka_unit_test(test_the_plain_products_under_an_address_space_limit_match_openblas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
