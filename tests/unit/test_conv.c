/* The convolution module (conv.h). The reference, against a direct convolution and by finite
 * differences; its two memory plans against each other; thin products split across threads
 * without changing them. The fast path (oneDNN, and the matrix-product kind) against the
 * reference on several shapes (stride 1 and 2, padding, 1x1, 3x3, 5x5, with and without bias,
 * 1 to 32 input channels), in all three directions and both accumulating modes, at every batch
 * size a split can produce, on 1 and 2 threads; then finite differences through the fast path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "gemm.h"
#include "runtime.h"
#include "util.h"

#include "gradcheck.h"

typedef struct {
    int bias, chunked;
} plan;

/* An engine on path p, whatever ICN_CONV says. */
static icn_conv *engine(const icn_conv_shape *s, icn_conv_path p, plan o, int max_batch) {
    const icn_conv_opts opts = {.bias = o.bias, .chunked = o.chunked, .type = ICN_CONV_F32};
    icn_conv_use_path(p);
    icn_conv *c = icn_conv_new(s, &opts, max_batch);
    icn_conv_use_path(ICN_CONV_FAST);
    return c;
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 1e-12;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / den;
}

static void agree(const char *what, const icn_conv_shape *s, int n, const float *a, const float *b, size_t count,
                  double tol) {
    double e = rel_err(a, b, count);
    if (!(e < tol))
        fail_msg("%s %dx%dx%d -> %d k%d s%d p%d, batch %d, %d threads: relative error %.3g", what, s->h, s->w, s->c,
                 s->oc, s->k, s->stride, s->pad, n, icn_threads(), e);
}

/* ---- the reference ---- */

static void direct_conv(float *out, const float *in, const float *w, const float *b, const icn_conv_shape *s, int n) {
    for (int bi = 0; bi < n; bi++)
        for (int oh = 0; oh < s->oh; oh++)
            for (int ow = 0; ow < s->ow; ow++)
                for (int oc = 0; oc < s->oc; oc++) {
                    double acc = b[oc];
                    for (int kh = 0; kh < s->k; kh++)
                        for (int kw = 0; kw < s->k; kw++)
                            for (int c = 0; c < s->c; c++) {
                                int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || iw < 0 || ih >= s->h || iw >= s->w) continue;
                                acc += (double)in[((bi * s->h + ih) * s->w + iw) * s->c + c] *
                                       w[((oc * s->k + kh) * s->k + kw) * s->c + c];
                            }
                    out[((bi * s->oh + oh) * s->ow + ow) * s->oc + oc] = (float)acc;
                }
}

typedef struct {
    icn_conv *conv;
    icn_conv_shape s;
    int n;
    float *in, *w, *b, *out, *r;
} fd_case;

static double objective(void *p) { /* sum(out * r) */
    fd_case *c = p;
    icn_conv_forward(c->conv, c->out, c->in, c->w, c->b, c->n, 0.0f);
    return dot(c->out, c->r, (size_t)c->n * c->s.oh * c->s.ow * c->s.oc);
}

/* The engine's gradients against central differences (a convolution is linear in each argument:
 * differences are exact up to rounding, so a big h is fine). */
static void check_by_differences(const char *what, icn_conv *conv, icn_conv_shape s, int n) {
    fd_case c = {.conv = conv, .s = s, .n = n};
    size_t in = (size_t)n * s.h * s.w * s.c, out = (size_t)n * s.oh * s.ow * s.oc, nw = (size_t)s.oc * icn_conv_kdim(&s);
    c.in = randn(in, 1), c.w = randn(nw, 0.3f), c.b = randn((size_t)s.oc, 1), c.r = randn(out, 1);
    c.out = xmalloc(out * 4);
    float *din = xmalloc(in * 4), *dw = xcalloc(nw, 4), *db = xcalloc((size_t)s.oc, 4), *ref = xmalloc(out * 4);
    objective(&c); /* the backward follows its forward */
    direct_conv(ref, c.in, c.w, c.b, &s, n);
    agree(what, &s, n, c.out, ref, out, 1e-5);
    icn_conv_backward(conv, din, 0, dw, db, c.r, c.in, c.w, n);
    char name[96];
    snprintf(name, sizeof name, "%s dinput", what);
    check_grad(name, c.in, din, in, objective, &c, 0.5f, 2e-3);
    snprintf(name, sizeof name, "%s dweight", what);
    check_grad(name, c.w, dw, nw, objective, &c, 0.5f, 2e-3);
    snprintf(name, sizeof name, "%s dbias", what);
    check_grad(name, c.b, db, (size_t)s.oc, objective, &c, 0.5f, 2e-3);
    free(c.in), free(c.w), free(c.b), free(c.r), free(c.out), free(din), free(dw), free(db), free(ref);
}

static void test_the_reference_is_a_direct_convolution_with_exact_gradients(void **state) {
    (void)state;
    const icn_conv_shape shapes[3] = {icn_conv_shape_of(9, 9, 2, 3, 5, 2, 2), /* 5x5 stride 2 pad 2, as the MNIST net's */
                                      icn_conv_shape_of(6, 7, 3, 4, 3, 1, 0), /* stride 1, no padding */
                                      icn_conv_shape_of(5, 8, 1, 2, 3, 1, 1)}; /* padding 1, rectangular */
    for (int k = 0; k < 3; k++)
        for (int chunked = 0; chunked < 2; chunked++) {
            icn_conv *c = engine(&shapes[k], ICN_CONV_REFERENCE, (plan){1, chunked}, 3);
            assert_string_equal(icn_conv_describe(c), "reference");
            check_by_differences(chunked ? "reference, chunked" : "reference, whole", c, shapes[k], 3);
            icn_conv_free(c);
        }
}

/* The whole plan's products split across threads when thin (K = 25): the same values. */
static void test_the_reference_splits_thin_products_across_threads_without_changing_them(void **state) {
    (void)state;
    const icn_conv_shape s = icn_conv_shape_of(28, 28, 1, 16, 5, 2, 2);
    const int n = 16;
    const size_t in_n = (size_t)n * 28 * 28, out_n = (size_t)n * s.oh * s.ow * s.oc, K = icn_conv_kdim(&s);
    float *in = randn(in_n, 1), *w = randn(s.oc * K, 0.2f), *b = randn(s.oc, 0.1f), *dout = randn(out_n, 1);
    float *o[2], *dw[2], *di[2];
    for (int t = 0; t < 2; t++) {
        icn_runtime_init(t + 1);
        assert_int_equal(icn_gemm_is_thin(n * 196, 16, 25), t == 1);
        o[t] = xmalloc(out_n * 4), dw[t] = xcalloc(s.oc * K, 4), di[t] = xmalloc(in_n * 4);
        icn_conv *c = engine(&s, ICN_CONV_REFERENCE, (plan){1, 0}, n);
        icn_conv_forward(c, o[t], in, w, b, n, 0.0f);
        icn_conv_backward(c, di[t], 0, dw[t], NULL, dout, in, w, n);
        icn_conv_free(c);
    }
    icn_runtime_init(2);
    for (size_t i = 0; i < out_n; i++) assert_true(fabsf(o[0][i] - o[1][i]) <= 1e-5f * (1 + fabsf(o[0][i])));
    for (size_t i = 0; i < s.oc * K; i++) assert_true(fabsf(dw[0][i] - dw[1][i]) <= 1e-3f * (1 + fabsf(dw[0][i])));
    for (size_t i = 0; i < in_n; i++) assert_true(fabsf(di[0][i] - di[1][i]) <= 1e-4f * (1 + fabsf(di[0][i])));
    free(in), free(w), free(b), free(dout);
    for (int t = 0; t < 2; t++) free(o[t]), free(dw[t]), free(di[t]);
}

/* ---- one engine against another, in every direction and mode ---- */

/* a (the engine under test) against r (the reference) on a batch of n: the forward, the forward
 * that adds into out, the gradients that accumulate, the input gradient that accumulates, and a
 * second weight gradient that reuses what the first made. */
static void compare_engines(icn_conv *a, icn_conv *r, const icn_conv_shape *sp, int n, int bias, double tol) {
    const icn_conv_shape s = *sp;
    const size_t in = (size_t)n * s.h * s.w * s.c, out = (size_t)n * s.oh * s.ow * s.oc, nw = (size_t)s.oc * icn_conv_kdim(&s);
    float *x = randn(in, 1), *w = randn(nw, 0.3f), *b = bias ? randn((size_t)s.oc, 1) : NULL, *dy = randn(out, 1);
    float *y0 = randn(out, 1), *y1 = xmalloc(out * 4), *y2 = xmalloc(out * 4);
    float *dx0 = randn(in, 1), *dx1 = xmalloc(in * 4), *dx2 = xmalloc(in * 4);
    float *dw0 = randn(nw, 1), *dw1 = xmalloc(nw * 4), *dw2 = xmalloc(nw * 4);
    float *db0 = randn((size_t)s.oc, 1), *db1 = xmalloc((size_t)s.oc * 4), *db2 = xmalloc((size_t)s.oc * 4);
    icn_conv_forward(r, y1, x, w, b, n, 0.0f);
    icn_conv_forward(a, y2, x, w, b, n, 0.0f);
    agree("forward", &s, n, y2, y1, out, tol);
    for (size_t i = 0; i < out; i++) y1[i] += y0[i];
    memcpy(y2, y0, out * 4);
    icn_conv_forward(a, y2, x, w, b, n, 1.0f);
    agree("forward += out", &s, n, y2, y1, out, tol);
    icn_conv_forward(r, y1, x, w, b, n, 0.0f); /* the backward follows its forward */
    icn_conv_forward(a, y2, x, w, b, n, 0.0f);
    memcpy(dw1, dw0, nw * 4), memcpy(dw2, dw0, nw * 4), memcpy(db1, db0, (size_t)s.oc * 4), memcpy(db2, db0, (size_t)s.oc * 4);
    icn_conv_backward(r, dx1, 0, dw1, bias ? db1 : NULL, dy, x, w, n);
    icn_conv_backward(a, dx2, 0, dw2, bias ? db2 : NULL, dy, x, w, n);
    agree("backward-data", &s, n, dx2, dx1, in, tol);
    agree("backward-weights", &s, n, dw2, dw1, nw, tol);
    if (bias) agree("backward-bias", &s, n, db2, db1, (size_t)s.oc, tol);
    for (size_t i = 0; i < in; i++) dx1[i] += dx0[i];
    memcpy(dx2, dx0, in * 4);
    icn_conv_backward(a, dx2, 1, NULL, NULL, dy, x, w, n);
    agree("backward-data += din", &s, n, dx2, dx1, in, tol);
    memcpy(dw2, dw0, nw * 4);
    icn_conv_backward(a, NULL, 0, dw2, NULL, dy, x, w, n);
    icn_conv_backward(a, NULL, 0, dw2, NULL, dy, x, w, n);
    for (size_t i = 0; i < nw; i++) dw1[i] += dw1[i] - dw0[i];
    agree("backward-weights twice", &s, n, dw2, dw1, nw, tol);
    free(x), free(w), free(b), free(dy), free(y0), free(y1), free(y2), free(dx0), free(dx1), free(dx2);
    free(dw0), free(dw1), free(dw2), free(db0), free(db1), free(db2);
}

/* The fast engine for shape s (which must take the fast path: describe says which) against the
 * reference, for a batch of n made for max_batch. */
static void compare_fast(icn_conv_shape s, int n, int max_batch, int bias, const char *expect) {
    icn_conv *f = engine(&s, ICN_CONV_FAST, (plan){bias, 0}, max_batch);
    icn_conv *r = engine(&s, ICN_CONV_REFERENCE, (plan){bias, 0}, max_batch);
    print_message("%dx%dx%d -> %d k%d s%d p%d, batch %d of %d: %s\n", s.h, s.w, s.c, s.oc, s.k, s.stride, s.pad, n,
                  max_batch, icn_conv_describe(f));
    if (!strstr(icn_conv_describe(f), expect)) fail_msg("expected %s, got %s", expect, icn_conv_describe(f));
    compare_engines(f, r, &s, n, bias, 1e-4);
    icn_conv_free(f), icn_conv_free(r);
}

static void test_the_chunked_reference_matches_the_whole_one(void **state) {
    (void)state;
    for (int threads = 1; threads <= 2; threads++)
        for (int stride = 1; stride <= 2; stride++) {
            icn_runtime_init(threads);
            /* several chunks per image at stride 1, chunks that straddle images at stride 2 */
            const icn_conv_shape s = icn_conv_shape_of(26, 23, 16, 8, 3, stride, 1);
            assert_true(stride > 1 || (size_t)s.oh * s.ow * icn_conv_kdim(&s) > 65536);
            icn_conv *c = engine(&s, ICN_CONV_REFERENCE, (plan){0, 1}, 3), *r = engine(&s, ICN_CONV_REFERENCE, (plan){0, 0}, 3);
            compare_engines(c, r, &s, 3, 0, 1e-4);
            icn_conv_free(c), icn_conv_free(r);
        }
    icn_runtime_init(2);
}

static void test_the_fast_path_matches_the_reference_on_every_kind_of_shape(void **state) {
    (void)state;
    compare_fast(icn_conv_shape_of(28, 28, 1, 16, 5, 2, 2), 7, 7, 1, " / reference / "); /* the MNIST net's first */
    compare_fast(icn_conv_shape_of(14, 14, 16, 32, 5, 2, 2), 9, 9, 1, "/");  /* 5x5 stride 2 on 16 channels */
    compare_fast(icn_conv_shape_of(12, 12, 16, 16, 3, 1, 1), 5, 5, 0, "/");  /* 3x3 stride 1 pad 1: a residual block's */
    compare_fast(icn_conv_shape_of(16, 16, 16, 32, 3, 2, 1), 6, 6, 0, "/");  /* 3x3 stride 2 */
    compare_fast(icn_conv_shape_of(16, 16, 16, 32, 1, 2, 0), 3, 3, 0, "/");  /* 1x1 stride 2: the projection */
    compare_fast(icn_conv_shape_of(8, 9, 24, 8, 1, 1, 0), 4, 4, 1, "/");     /* 1x1 stride 1, rectangular */
    compare_fast(icn_conv_shape_of(10, 10, 8, 12, 3, 1, 0), 11, 11, 1, "/"); /* no padding */
    compare_fast(icn_conv_shape_of(32, 32, 3, 16, 3, 1, 1), 2, 2, 0, " / reference / "); /* the ResNet stem: 3 channels */
}

/* Fewer than 16 output pixels: im2col + icn's AVX-512 product */
static void test_the_matrix_product_kind_matches_the_reference(void **state) {
    (void)state;
    compare_fast(icn_conv_shape_of(4, 4, 32, 64, 5, 2, 2), 9, 9, 1, "im2col");  /* 2x2 output, as the MNIST net's last */
    compare_fast(icn_conv_shape_of(6, 6, 16, 24, 5, 2, 2), 5, 5, 0, "im2col");  /* 3x3 output, no bias */
    compare_fast(icn_conv_shape_of(3, 3, 16, 8, 3, 1, 0), 300, 300, 1, "im2col"); /* 1x1 output, more rows than a piece */
}

/* An engine made for a batch of max_batch runs every smaller batch too, on 1 and 2 threads: each
 * thread's share splits into chunks of 2^j images down to 1, and every chunk size has its
 * primitive (a synthesizer's batch shrinks to 1 as its samples finish). */
static void test_every_batch_size_up_to_the_engines_runs_on_the_fast_path(void **state) {
    (void)state;
    const icn_conv_shape shapes[4] = {icn_conv_shape_of(28, 28, 1, 32, 5, 2, 2),  /* c32-c64's first */
                                      icn_conv_shape_of(14, 14, 32, 64, 5, 2, 2), /* and its second */
                                      icn_conv_shape_of(14, 14, 16, 16, 3, 1, 1), /* a residual block's */
                                      icn_conv_shape_of(14, 14, 16, 32, 1, 2, 0)};/* a projection */
    const int sizes[] = {1, 2, 7, 8, 9, 33, 64};
    for (int threads = 1; threads <= 2; threads++) {
        icn_runtime_init(threads);
        for (int k = 0; k < 4; k++)
            for (size_t m = 0; m < sizeof sizes / sizeof sizes[0]; m++) {
                const int max_batch = sizes[m];
                icn_conv *f = engine(&shapes[k], ICN_CONV_FAST, (plan){1, 0}, max_batch);
                icn_conv *r = engine(&shapes[k], ICN_CONV_REFERENCE, (plan){1, 0}, max_batch);
                if (!strcmp(icn_conv_describe(f), "reference")) fail_msg("no fast path for shape %d", k);
                for (int n = max_batch; n >= 1; n = n > 9 ? n / 3 : n - 1) compare_engines(f, r, &shapes[k], n, 1, 1e-4);
                icn_conv_free(f), icn_conv_free(r);
            }
    }
    icn_runtime_init(2);
}

static void test_the_fast_path_has_exact_gradients_of_its_own(void **state) {
    (void)state;
    const icn_conv_shape shapes[3] = {icn_conv_shape_of(9, 9, 8, 12, 3, 2, 1), icn_conv_shape_of(8, 8, 16, 8, 5, 1, 2),
                                      icn_conv_shape_of(4, 4, 8, 6, 5, 2, 2)};
    for (int k = 0; k < 3; k++) {
        icn_conv *f = engine(&shapes[k], ICN_CONV_FAST, (plan){1, 0}, 3);
        assert_string_not_equal(icn_conv_describe(f), "reference");
        check_by_differences("fast", f, shapes[k], 3);
        icn_conv_free(f);
    }
}

int main(void) {
    icn_runtime_init(2); /* batches split across two threads, in uneven chunks */
    icn_rng_seed(&rng, 14);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_reference_is_a_direct_convolution_with_exact_gradients),
        cmocka_unit_test(test_the_reference_splits_thin_products_across_threads_without_changing_them),
        cmocka_unit_test(test_the_chunked_reference_matches_the_whole_one),
        cmocka_unit_test(test_the_fast_path_matches_the_reference_on_every_kind_of_shape),
        cmocka_unit_test(test_the_matrix_product_kind_matches_the_reference),
        cmocka_unit_test(test_every_batch_size_up_to_the_engines_runs_on_the_fast_path),
        cmocka_unit_test(test_the_fast_path_has_exact_gradients_of_its_own),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
