/* Finite-difference gradient checks for every layer and loss, for weight and input
 * gradients, and the optimizers (the convolutions' own: test_conv.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "layers.h"
#include "losses.h"
#include "net.h"
#include "optim.h"
#include "runtime.h"
#include "util.h"

#include "gradcheck.h"

/* Small products (the MNIST net's linear layer in synthesis: 100 x 10 x 2048) are split by rows on
 * icn's pool, OpenBLAS single-threaded: the same values as one thread computes. */
static void test_small_products_split_across_threads_give_one_thread_s_values(void **state) {
    (void)state;
    int n = 100, in_dim = 2048, out_dim = 10;
    size_t in_n = (size_t)n * in_dim, out_n = (size_t)n * out_dim, w_n = (size_t)out_dim * in_dim;
    float *in = randn(in_n, 1), *w = randn(w_n, 0.05f), *b = randn(out_dim, 0.1f), *dout = randn(out_n, 1);
    float *o1 = xmalloc(out_n * 4), *o2 = xmalloc(out_n * 4), *di1 = xmalloc(in_n * 4), *di2 = xmalloc(in_n * 4);
    float *dw1 = xcalloc(w_n, 4), *dw2 = xcalloc(w_n, 4), *db1 = xcalloc(out_dim, 4), *db2 = xcalloc(out_dim, 4);
    icn_runtime_init(1);
    icn_linear_forward(o1, in, w, b, n, in_dim, out_dim);
    icn_linear_backward(di1, dw1, db1, dout, in, w, n, in_dim, out_dim, NULL);
    icn_runtime_init(2);
    assert_false(icn_gemm_is_thin(n, out_dim, in_dim)); /* not thin: small */
    icn_linear_forward(o2, in, w, b, n, in_dim, out_dim);
    icn_linear_backward(di2, dw2, db2, dout, in, w, n, in_dim, out_dim, NULL);
    icn_runtime_init(1);
    for (size_t i = 0; i < out_n; i++) assert_true(fabsf(o1[i] - o2[i]) <= 1e-5f * (1 + fabsf(o1[i])));
    for (size_t i = 0; i < in_n; i++) assert_true(fabsf(di1[i] - di2[i]) <= 1e-5f * (1 + fabsf(di1[i])));
    for (size_t i = 0; i < w_n; i++) assert_true(fabsf(dw1[i] - dw2[i]) <= 1e-5f * (1 + fabsf(dw1[i])));
    for (int i = 0; i < out_dim; i++) assert_true(fabsf(db1[i] - db2[i]) <= 1e-5f * (1 + fabsf(db1[i])));
    free(in), free(w), free(b), free(dout), free(o1), free(o2), free(di1), free(di2);
    free(dw1), free(dw2), free(db1), free(db2);
}

/* ---- linear ---- */

typedef struct { int n, in_dim, out_dim; float *in, *w, *b, *out, *r; } linear_case;

static double linear_objective(void *p) {
    linear_case *c = p;
    icn_linear_forward(c->out, c->in, c->w, c->b, c->n, c->in_dim, c->out_dim);
    return dot(c->out, c->r, (size_t)c->n * c->out_dim);
}

static void test_the_linear_layer_s_gradients_match_finite_differences(void **state) {
    (void)state;
    linear_case c = {.n = 4, .in_dim = 7, .out_dim = 3};
    c.in = randn(28, 1), c.w = randn(21, 0.5f), c.b = randn(3, 0.1f), c.r = randn(12, 1), c.out = xmalloc(12 * 4);
    float *din = xmalloc(28 * 4), *dw = xcalloc(21, 4), *db = xcalloc(3, 4);
    icn_linear_forward(c.out, c.in, c.w, c.b, 4, 7, 3);
    for (int i = 0; i < 4; i++) /* forward against the definition */
        for (int o = 0; o < 3; o++) {
            double acc = c.b[o];
            for (int j = 0; j < 7; j++) acc += (double)c.in[i * 7 + j] * c.w[o * 7 + j];
            assert_true(fabs(acc - c.out[i * 3 + o]) < 1e-5);
        }
    icn_linear_backward(din, dw, db, c.r, c.in, c.w, 4, 7, 3, NULL);
    check_grad("linear dinput", c.in, din, 28, linear_objective, &c, 0.5f, 2e-3);
    check_grad("linear dweight", c.w, dw, 21, linear_objective, &c, 0.5f, 2e-3);
    check_grad("linear dbias", c.b, db, 3, linear_objective, &c, 0.5f, 2e-3);
    free(c.in), free(c.w), free(c.b), free(c.r), free(c.out), free(din), free(dw), free(db);
}

/* ---- LeakyReLU ---- */

typedef struct { size_t n; float *in, *out, *r; } lrelu_case;

static double lrelu_objective(void *p) {
    lrelu_case *c = p;
    icn_lrelu_forward(c->out, c->in, c->n);
    return dot(c->out, c->r, c->n);
}

static void test_leaky_relu_s_gradient_matches_finite_differences(void **state) {
    (void)state;
    lrelu_case c = {.n = 50};
    c.in = randn(50, 1), c.r = randn(50, 1), c.out = xmalloc(50 * 4);
    for (size_t i = 0; i < 50; i++) /* keep away from the kink, where differences are meaningless */
        if (fabsf(c.in[i]) < 0.05f) c.in[i] = c.in[i] < 0 ? -0.05f : 0.05f;
    icn_lrelu_forward(c.out, c.in, 50);
    for (size_t i = 0; i < 50; i++) assert_float_equal(c.out[i], c.in[i] > 0 ? c.in[i] : 0.2f * c.in[i], 1e-7);
    float *d = xmalloc(50 * 4);
    memcpy(d, c.r, 50 * 4);
    icn_lrelu_backward(d, c.out, 50);
    check_grad("lrelu dinput", c.in, d, 50, lrelu_objective, &c, 1e-2f, 1e-3);
    /* in place forward, as the network uses it */
    float *x = xmalloc(50 * 4);
    memcpy(x, c.in, 50 * 4);
    icn_lrelu_forward(c.out, c.in, 50);
    icn_lrelu_forward(x, x, 50);
    assert_memory_equal(x, c.out, 50 * 4);
    free(c.in), free(c.r), free(c.out), free(d), free(x);
}

/* ---- losses ---- */

typedef struct { icn_head head; int n, k; float *z, *w, *dz; int32_t *y; double smoothing; } loss_case;

static double loss_objective(void *p) {
    loss_case *c = p;
    return icn_loss(c->head, c->z, c->y, c->w, c->n, c->k, c->smoothing, c->dz);
}

static void run_loss_case(icn_head head, double smoothing, int weighted) {
    enum { N = 6, K = 4 };
    loss_case c = {.head = head, .n = N, .k = K, .smoothing = smoothing};
    int32_t y[N] = {0, 3, -1, 2, -4, 1}; /* real classes and pseudo-negatives of classes 0 and 3 */
    float w[N] = {1, 0.5f, 2, 1, 0.25f, 3};
    c.y = y, c.w = weighted ? w : NULL, c.z = randn(N * K, 2), c.dz = xmalloc(N * K * 4);
    float *analytic = xmalloc(N * K * 4);
    icn_loss(head, c.z, y, c.w, N, K, smoothing, analytic);
    check_grad(head == ICN_HEAD_OVA ? "ova dlogits" : "softmax dlogits", c.z, analytic, N * K, loss_objective, &c,
               1e-2f, 1e-3);
    /* pseudo-negatives touch only their own class's logit */
    for (int k = 0; k < K; k++)
        if (k != 0) assert_float_equal(analytic[2 * K + k], 0, 0);
    free(c.z), free(c.dz), free(analytic);
}

static void test_the_softmax_loss_gradient_matches_finite_differences(void **state) { (void)state; run_loss_case(ICN_HEAD_SOFTMAX, 0, 0); }
static void test_the_weighted_smoothed_softmax_gradient_matches_finite_differences(void **state) { (void)state; run_loss_case(ICN_HEAD_SOFTMAX, 0.1, 1); }
static void test_the_one_vs_all_loss_gradient_matches_finite_differences(void **state) { (void)state; run_loss_case(ICN_HEAD_OVA, 0, 1); }

static void test_the_losses_have_their_hand_computed_values(void **state) {
    (void)state;
    float z[3] = {1, 2, 3}, dz[3];
    int32_t y = 2, neg = -2;
    double lse = log(exp(1) + exp(2) + exp(3));
    assert_float_equal(icn_loss_softmax(z, &y, NULL, 1, 3, 0, dz), lse - 3, 1e-6);
    assert_float_equal(icn_loss_softmax(z, &neg, NULL, 1, 3, 0, dz), log1p(exp(2.0)), 1e-6); /* Eq. 9 */
    assert_float_equal(icn_loss_ova(z, &y, NULL, 1, 3, dz),
                       log1p(exp(1.0)) + log1p(exp(2.0)) + log1p(exp(3.0)) - 3, 1e-6);
    assert_float_equal(icn_softplus(1000), 1000, 1e-9); /* no overflow */
    assert_float_equal(icn_softplus(-1000), 0, 1e-9);
}

/* ---- the whole network: composition of the layers above ---- */

typedef struct { icn_net *net; icn_work *w; float *x; int32_t *y; int n; float *dz; } net_case;

static double net_objective(void *p) {
    net_case *c = p;
    const float *z = icn_forward(c->net, c->w, c->x, c->n);
    return icn_loss_softmax(z, c->y, NULL, c->n, c->net->classes, 0, c->dz);
}

static void test_a_stack_s_gradients_match_finite_differences(void **state) {
    (void)state;
    icn_net net;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_net_build(&net, "c4-c6", 11, 9, 2, 5, err, sizeof err), 0);
    icn_net_init(&net, 7);
    net_case c = {.net = &net, .n = 3};
    c.w = icn_work_new(&net, 4);
    c.x = randn(3 * 11 * 9 * 2, 1);
    int32_t y[3] = {1, -3, 4};
    c.y = y;
    c.dz = xmalloc(3 * 5 * 4);
    float *dz = xmalloc(3 * 5 * 4), *dx = xmalloc(3 * 11 * 9 * 2 * 4), *grad = xmalloc(net.n_params * 4);
    net_objective(&c);
    memcpy(dz, c.dz, 3 * 5 * 4);
    icn_backward(&net, c.w, dz, 1, dx);
    memcpy(grad, c.w->grad, net.n_params * 4);
    check_grad("network dparams", net.params, grad, net.n_params, net_objective, &c, 1e-3f, 2e-2);
    check_grad("network dinput", c.x, dx, 3 * 11 * 9 * 2, net_objective, &c, 1e-2f, 2e-2);
    icn_work_free(c.w);
    icn_net_free(&net);
    free(c.x), free(c.dz), free(dz), free(dx), free(grad);
}

static void test_the_mnist_architecture_has_the_paper_s_shapes(void **state) {
    (void)state;
    icn_net net;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_net_build(&net, "mnist", 28, 28, 1, 10, err, sizeof err), 0);
    assert_int_equal(net.n_layers, 5);
    int channels[4] = {64, 128, 256, 512}, sizes[4] = {14, 7, 4, 2};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(net.layer[i].conv.oc, channels[i]);
        assert_int_equal(net.layer[i].conv.oh, sizes[i]);
        assert_int_equal(net.layer[i].conv.k, 5);
        assert_int_equal(net.layer[i].conv.stride, 2);
        assert_true(net.layer[i].leaky);
    }
    assert_int_equal(net.layer[4].in_size, 2 * 2 * 512);
    /* 64*25+64 + 128*1600+128 + 256*3200+256 + 512*6400+512 + 10*2048+10 */
    assert_int_equal(net.n_params, 1664 + 204928 + 819456 + 3277312 + 20490);
    icn_net_free(&net);
    assert_int_equal(icn_net_build(&net, "c8-x9", 28, 28, 1, 10, err, sizeof err), -1);
    assert_non_null(strstr(err, "c8-x9"));
    assert_int_equal(icn_net_build(&net, "mnist", 28, 28, 1, 0, err, sizeof err), -1);
}

/* ---- optimizers ---- */

static void test_sgd_with_momentum_takes_the_textbook_steps(void **state) {
    (void)state;
    icn_optim o;
    icn_optim_sgd(&o, 1, 0.9f, 0.1f);
    float x = 1, g = 2;
    icn_optim_step(&o, &x, &g, 0.5f); /* v = 2 + 0.1 = 2.1; x = 1 - 1.05 */
    assert_float_equal(x, -0.05f, 1e-6);
    icn_optim_step(&o, &x, &g, 0.5f); /* v = 0.9*2.1 + 2 - 0.005 = 3.885 */
    assert_float_equal(x, -0.05f - 0.5f * 3.885f, 1e-5);
    icn_optim_free(&o);
}

static void test_adam_takes_the_textbook_steps_and_converges(void **state) {
    (void)state;
    icn_optim o;
    icn_optim_adam(&o, 2, 0.5f, 0.999f, 1e-8f);
    float x[2] = {3, -2}, g[2];
    g[0] = 1, g[1] = -4;
    icn_optim_step(&o, x, g, 0.1f); /* first Adam step moves each coordinate by lr * sign(g) */
    assert_float_equal(x[0], 2.9f, 1e-5);
    assert_float_equal(x[1], -1.9f, 1e-5);
    for (int t = 0; t < 2000; t++) { /* minimise x^2 */
        g[0] = 2 * x[0], g[1] = 2 * x[1];
        icn_optim_step(&o, x, g, 0.01f);
    }
    assert_true(fabsf(x[0]) < 0.05f && fabsf(x[1]) < 0.05f);
    icn_optim_free(&o);
}

static void test_the_learning_rate_schedule_decays_where_told(void **state) {
    (void)state;
    double ms[1] = {0.75};
    assert_float_equal(icn_lr_at(0.025, 0, 2000, ms, 1, 0.1), 0.025, 1e-12);
    assert_float_equal(icn_lr_at(0.025, 1499, 2000, ms, 1, 0.1), 0.025, 1e-12);
    assert_float_equal(icn_lr_at(0.025, 1500, 2000, ms, 1, 0.1), 0.0025, 1e-12);
}

int main(void) {
    icn_rng_seed(&rng, 12345);
    icn_runtime_init(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_products_split_across_threads_give_one_thread_s_values),
        cmocka_unit_test(test_the_linear_layer_s_gradients_match_finite_differences),
        cmocka_unit_test(test_leaky_relu_s_gradient_matches_finite_differences),
        cmocka_unit_test(test_the_softmax_loss_gradient_matches_finite_differences),
        cmocka_unit_test(test_the_weighted_smoothed_softmax_gradient_matches_finite_differences),
        cmocka_unit_test(test_the_one_vs_all_loss_gradient_matches_finite_differences),
        cmocka_unit_test(test_the_losses_have_their_hand_computed_values),
        cmocka_unit_test(test_a_stack_s_gradients_match_finite_differences),
        cmocka_unit_test(test_the_mnist_architecture_has_the_paper_s_shapes),
        cmocka_unit_test(test_sgd_with_momentum_takes_the_textbook_steps),
        cmocka_unit_test(test_adam_takes_the_textbook_steps_and_converges),
        cmocka_unit_test(test_the_learning_rate_schedule_decays_where_told),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
