/* The oneDNN convolutions (fastconv.h) against the im2col + OpenBLAS reference (layers.h), on
 * several shapes (stride 1 and 2, padding, 1x1, 3x3, 5x5, with and without bias, 1 and 16 input
 * channels, batches that split into uneven chunks across threads), in all three directions and
 * both accumulating modes; then finite differences through the fast path itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fastconv.h"
#include "parallel.h"
#include "util.h"

#include "gradcheck.h"

static icn_conv_shape make_shape(int h, int w, int c, int oc, int k, int stride, int pad) {
    icn_conv_shape s = {.h = h, .w = w, .c = c, .oc = oc, .k = k, .stride = stride, .pad = pad};
    s.oh = icn_conv_out(h, k, stride, pad);
    s.ow = icn_conv_out(w, k, stride, pad);
    return s;
}

/* max |a - b| / max |b|: 1e-4 is the agreement required */
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 1e-12;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / den;
}

static void agree(const char *what, const icn_conv_shape *s, const float *a, const float *b, size_t n) {
    double e = rel_err(a, b, n);
    if (!(e < 1e-4))
        fail_msg("%s %dx%dx%d -> %d k%d s%d p%d: relative error %.3g", what, s->h, s->w, s->c, s->oc, s->k, s->stride,
                 s->pad, e);
}

static void compare(icn_conv_shape s, int n, int bias) {
    const size_t in = (size_t)n * s.h * s.w * s.c, out = (size_t)n * s.oh * s.ow * s.oc;
    const size_t nw = (size_t)s.oc * icn_conv_kdim(&s), col = (size_t)n * s.oh * s.ow * icn_conv_kdim(&s);
    icn_fastconv *f = icn_fastconv_new(&s, bias, n);
    assert_non_null(f);
    print_message("%dx%dx%d -> %d k%d s%d p%d, batch %d: %s\n", s.h, s.w, s.c, s.oc, s.k, s.stride, s.pad, n,
                  icn_fastconv_describe(f));
    float *x = randn(in, 1), *w = randn(nw, 0.3f), *b = bias ? randn((size_t)s.oc, 1) : NULL, *dy = randn(out, 1);
    float *y0 = randn(out, 1), *y1 = xmalloc(out * 4), *y2 = xmalloc(out * 4), *c = xmalloc(col * 4);
    float *dc = xmalloc(col * 4), *dx0 = randn(in, 1), *dx1 = xmalloc(in * 4), *dx2 = xmalloc(in * 4);
    float *dw0 = randn(nw, 1), *dw1 = xmalloc(nw * 4), *dw2 = xmalloc(nw * 4);
    float *db0 = randn((size_t)s.oc, 1), *db1 = xmalloc((size_t)s.oc * 4), *db2 = xmalloc((size_t)s.oc * 4);
    /* forward, and forward adding into what out holds */
    icn_conv2d_forward(y1, c, x, w, b, &s, n);
    icn_fastconv_forward(f, y2, x, w, b, n, 0.0f);
    agree("forward", &s, y2, y1, out);
    for (size_t i = 0; i < out; i++) y1[i] += y0[i];
    memcpy(y2, y0, out * 4);
    icn_fastconv_forward(f, y2, x, w, b, n, 1.0f);
    agree("forward += out", &s, y2, y1, out);
    /* backward: gradients accumulate onto what is there */
    memcpy(dw1, dw0, nw * 4), memcpy(dw2, dw0, nw * 4), memcpy(db1, db0, (size_t)s.oc * 4), memcpy(db2, db0, (size_t)s.oc * 4);
    icn_conv2d_backward(dx1, dw1, bias ? db1 : NULL, dc, dy, c, w, &s, n, NULL);
    icn_fastconv_backward(f, dx2, 0, dw2, bias ? db2 : NULL, dy, x, w, n);
    agree("backward-data", &s, dx2, dx1, in);
    agree("backward-weights", &s, dw2, dw1, nw);
    if (bias) agree("backward-bias", &s, db2, db1, (size_t)s.oc);
    for (size_t i = 0; i < in; i++) dx1[i] += dx0[i];
    memcpy(dx2, dx0, in * 4);
    icn_fastconv_backward(f, dx2, 1, NULL, NULL, dy, x, w, n);
    agree("backward-data += din", &s, dx2, dx1, in);
    /* a second call reuses everything made by the first and gives the same */
    memcpy(dw2, dw0, nw * 4);
    icn_fastconv_backward(f, NULL, 0, dw2, NULL, dy, x, w, n);
    icn_fastconv_backward(f, NULL, 0, dw2, NULL, dy, x, w, n);
    for (size_t i = 0; i < nw; i++) dw1[i] += dw1[i] - dw0[i];
    agree("backward-weights twice", &s, dw2, dw1, nw);
    icn_fastconv_free(f);
    free(x), free(w), free(b), free(dy), free(y0), free(y1), free(y2), free(c), free(dc), free(dx0), free(dx1), free(dx2);
    free(dw0), free(dw1), free(dw2), free(db0), free(db1), free(db2);
}

static void test_against_reference(void **state) {
    (void)state;
    compare(make_shape(28, 28, 1, 16, 5, 2, 2), 7, 1);    /* the MNIST net's first: 1 channel, 5x5 stride 2 */
    compare(make_shape(14, 14, 16, 32, 5, 2, 2), 9, 1);   /* 5x5 stride 2 on 16 channels */
    compare(make_shape(12, 12, 16, 16, 3, 1, 1), 5, 0);  /* 3x3 stride 1 pad 1: a residual block's */
    compare(make_shape(16, 16, 16, 32, 3, 2, 1), 6, 0);  /* 3x3 stride 2 */
    compare(make_shape(16, 16, 16, 32, 1, 2, 0), 3, 0);  /* 1x1 stride 2: the projection */
    compare(make_shape(8, 9, 24, 8, 1, 1, 0), 4, 1);     /* 1x1 stride 1, rectangular */
    compare(make_shape(10, 10, 8, 12, 3, 1, 0), 11, 1);  /* no padding */
    compare(make_shape(32, 32, 3, 16, 3, 1, 1), 2, 0);   /* the ResNet stem: 3 channels */
}

/* Fewer than 16 output pixels: im2col + oneDNN's sgemm */
static void test_matrix_product_kind(void **state) {
    (void)state;
    compare(make_shape(4, 4, 32, 64, 5, 2, 2), 9, 1);  /* 2x2 output, as the MNIST net's last */
    compare(make_shape(6, 6, 16, 24, 5, 2, 2), 5, 0);  /* 3x3 output, no bias */
    compare(make_shape(3, 3, 16, 8, 3, 1, 0), 300, 1); /* 1x1 output, more rows than a piece */
    assert_string_equal(icn_fastconv_describe(NULL), "reference");
}

typedef struct {
    icn_fastconv *f;
    icn_conv_shape s;
    float *in, *w, *b, *out, *r;
    int n;
} fd_case;

static double objective(void *p) { /* sum(out * r) */
    fd_case *c = p;
    icn_fastconv_forward(c->f, c->out, c->in, c->w, c->b, c->n, 0.0f);
    return dot(c->out, c->r, (size_t)c->n * c->s.oh * c->s.ow * c->s.oc);
}

static void test_finite_differences(void **state) {
    (void)state;
    const icn_conv_shape shapes[3] = {make_shape(9, 9, 8, 12, 3, 2, 1), make_shape(8, 8, 16, 8, 5, 1, 2),
                                      make_shape(4, 4, 8, 6, 5, 2, 2)};
    for (int k = 0; k < 3; k++) {
        fd_case c = {.s = shapes[k], .n = 3};
        const icn_conv_shape *s = &c.s;
        size_t in = (size_t)c.n * s->h * s->w * s->c, out = (size_t)c.n * s->oh * s->ow * s->oc;
        size_t nw = (size_t)s->oc * icn_conv_kdim(s);
        c.f = icn_fastconv_new(s, 1, c.n);
        assert_non_null(c.f);
        c.in = randn(in, 1), c.w = randn(nw, 0.3f), c.b = randn((size_t)s->oc, 1), c.r = randn(out, 1);
        c.out = xmalloc(out * 4);
        float *din = xmalloc(in * 4), *dw = xcalloc(nw, 4), *db = xcalloc((size_t)s->oc, 4);
        objective(&c); /* the backward follows its forward */
        icn_fastconv_backward(c.f, din, 0, dw, db, c.r, c.in, c.w, c.n);
        /* linear in each argument: differences are exact up to rounding, so a big h is fine */
        check_grad("fast dinput", c.in, din, in, objective, &c, 0.5f, 2e-3);
        check_grad("fast dweight", c.w, dw, nw, objective, &c, 0.5f, 2e-3);
        check_grad("fast dbias", c.b, db, (size_t)s->oc, objective, &c, 0.5f, 2e-3);
        icn_fastconv_free(c.f);
        free(c.in), free(c.w), free(c.b), free(c.r), free(c.out), free(din), free(dw), free(db);
    }
}

int main(void) {
    icn_threads_init(2); /* batches split across two threads, in uneven chunks */
    icn_rng_seed(&rng, 14);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_matrix_product_kind),
        cmocka_unit_test(test_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
