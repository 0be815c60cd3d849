/* Unit tests of the residual network: finite-difference gradient checks of batchnorm (training
 * and inference), ReLU, global average pooling, the residual block (identity and projection
 * shortcut) and the whole resnet8; running statistics against hand-computed PyTorch values;
 * the optimizer and evaluation leave them alone; the architecture; snapshots carry them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "losses.h"
#include "net.h"
#include "snapshot.h"
#include "eval.h"
#include "train.h"
#include "parallel.h"
#include "runtime.h"
#include "util.h"

#include "gradcheck.h"
#include "netgrad.h"


/* ---- batchnorm ---- */

typedef struct {
    long rows;
    int c, training;
    float *in, *gb, *running, *stats, *out, *r;
} bn_case;

static double bn_objective(void *p) {
    bn_case *c = p;
    icn_batchnorm_forward(c->out, c->stats, c->in, c->gb, c->running, c->rows, c->c, c->training, 0, NULL);
    return dot(c->out, c->r, (size_t)c->rows * c->c);
}

static void run_bn_case(int training) {
    enum { R = 18, C = 3 }; /* N*H*W = 2*3*3 pixels */
    bn_case c = {.rows = R, .c = C, .training = training};
    c.in = randn(R * C, 2), c.r = randn(R * C, 1), c.gb = randn(2 * C, 0.5f), c.running = xmalloc(2 * C * 4);
    c.stats = xmalloc(ICN_BN_STATS * C * 4), c.out = xmalloc(R * C * 4);
    for (int k = 0; k < C; k++) {
        c.gb[k] += 1.0f;                            /* gamma near 1 */
        for (int r = 0; r < R; r++) c.in[r * C + k] += (float)k - 1; /* channels with different means */
        c.running[k] = 0.3f * (float)k - 0.2f, c.running[C + k] = 0.5f + 0.4f * (float)k;
    }
    float running0[2 * C];
    memcpy(running0, c.running, sizeof running0);
    float *din = xmalloc(R * C * 4), *dgb = xcalloc(2 * C, 4), *inplace = xmalloc(R * C * 4);
    bn_objective(&c);
    if (!training) assert_memory_equal(c.running, running0, sizeof running0); /* inference leaves them */
    icn_batchnorm_backward(din, dgb, c.stats, c.r, c.in, c.gb, R, C, training, NULL);
    /* in place (din == dout), as the residual block uses it, and without parameter gradients */
    memcpy(inplace, c.r, R * C * 4);
    bn_objective(&c);
    icn_batchnorm_backward(inplace, NULL, c.stats, inplace, c.in, c.gb, R, C, training, NULL);
    for (int i = 0; i < R * C; i++) assert_float_equal(inplace[i], din[i], 1e-6);
    const char *mode = training ? "training" : "inference";
    char what[64];
    snprintf(what, sizeof what, "batchnorm %s dinput", mode);
    check_grad(what, c.in, din, R * C, bn_objective, &c, 1e-2f, 2e-3);
    snprintf(what, sizeof what, "batchnorm %s dgamma,dbeta", mode);
    check_grad(what, c.gb, dgb, 2 * C, bn_objective, &c, 1e-2f, 2e-3);
    free(c.in), free(c.r), free(c.gb), free(c.running), free(c.stats), free(c.out), free(din), free(dgb), free(inplace);
}

static void test_batchnorm_s_training_gradients_match_finite_differences(void **state) { (void)state; run_bn_case(1); }
static void test_batchnorm_s_inference_gradients_match_finite_differences(void **state) { (void)state; run_bn_case(0); }

/* Per-thread partial sums (in double) give the same result as one thread's, to rounding. */
static void test_batchnorm_gives_the_same_on_one_and_two_threads(void **state) {
    (void)state;
    enum { R = 20000, C = 4 }; /* enough rows for two threads */
    float *in = randn(R * C, 1), *dout = randn(R * C, 1), gb[2 * C] = {1, 2, 0.5f, 1, 0, 0.1f, 0, -1};
    float *out[2], *din[2], dgb[2][2 * C], running[2][2 * C], stats[ICN_BN_STATS * C];
    for (int t = 0; t < 2; t++) {
        icn_runtime_init(t + 1);
        out[t] = xmalloc(R * C * 4), din[t] = xmalloc(R * C * 4);
        for (int k = 0; k < C; k++) running[t][k] = 0, running[t][C + k] = 1;
        memset(dgb[t], 0, sizeof dgb[t]);
        icn_batchnorm_forward(out[t], stats, in, gb, running[t], R, C, 1, 0, NULL);
        icn_batchnorm_backward(din[t], dgb[t], stats, dout, in, gb, R, C, 1, NULL);
    }
    icn_runtime_init(1);
    for (int i = 0; i < R * C; i++) {
        assert_float_equal(out[1][i], out[0][i], 1e-5);
        assert_float_equal(din[1][i], din[0][i], 1e-5);
    }
    for (int k = 0; k < 2 * C; k++) {
        assert_float_equal(dgb[1][k], dgb[0][k], 1e-2);
        assert_float_equal(running[1][k], running[0][k], 1e-6);
    }
    free(in), free(dout), free(out[0]), free(out[1]), free(din[0]), free(din[1]);
}

/* A mean far from 0 against a small spread: the batch variance must not cancel away. */
/* BN with relu fused gives, bit for bit, BN then icn_relu_forward; ReLU's and LeakyReLU's
 * passes split across 2 threads give what one thread gives. */
static void test_batchnorm_with_relu_fused_equals_the_two_apart(void **state) {
    (void)state;
    enum { R = 20000, C = 16 };
    float *in = randn(R * C, 3), gb[2 * C], running[2][2 * C], stats[ICN_BN_STATS * C];
    for (int k = 0; k < C; k++) gb[k] = 0.5f + 0.1f * k, gb[C + k] = 0.2f * (k % 3) - 0.2f;
    float *fused = xmalloc(R * C * 4), *apart = xmalloc(R * C * 4);
    for (int t = 0; t < 2; t++) {
        icn_runtime_init(t + 1);
        for (int k = 0; k < C; k++) running[0][k] = running[1][k] = 0, running[0][C + k] = running[1][C + k] = 1;
        icn_batchnorm_forward(fused, stats, in, gb, running[0], R, C, 1, 1, NULL);
        icn_batchnorm_forward(apart, stats, in, gb, running[1], R, C, 1, 0, NULL);
        icn_relu_forward(apart, apart, (size_t)R * C);
        assert_memory_equal(fused, apart, (size_t)R * C * 4);
        assert_memory_equal(running[0], running[1], sizeof running[0]);
    }
    float *d1 = randn(R * C, 4), *d2 = xmalloc(R * C * 4), *l1 = xmalloc(R * C * 4), *l2 = xmalloc(R * C * 4);
    memcpy(d2, d1, (size_t)R * C * 4);
    icn_runtime_init(1);
    icn_relu_backward(d1, fused, (size_t)R * C);
    icn_lrelu_forward(l1, in, (size_t)R * C);
    icn_runtime_init(2);
    icn_relu_backward(d2, fused, (size_t)R * C);
    icn_lrelu_forward(l2, in, (size_t)R * C);
    icn_runtime_init(1);
    assert_memory_equal(d1, d2, (size_t)R * C * 4);
    assert_memory_equal(l1, l2, (size_t)R * C * 4);
    free(in), free(fused), free(apart), free(d1), free(d2), free(l1), free(l2);
}

static void test_batchnorm_keeps_its_precision_when_the_mean_dwarfs_the_spread(void **state) {
    (void)state;
    enum { R = 5000 };
    float *x = randn(R, 0.01f), *out = xmalloc(R * 4), gb[2] = {1, 0}, running[2] = {0, 1}, stats[ICN_BN_STATS];
    double mean = 0, var = 0;
    for (int i = 0; i < R; i++) x[i] += 1000.0f, mean += x[i];
    mean /= R;
    for (int i = 0; i < R; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= R;
    icn_batchnorm_forward(out, stats, x, gb, running, R, 1, 1, 0, NULL);
    double m = 0, v = 0;
    for (int i = 0; i < R; i++) m += out[i], v += (double)out[i] * out[i];
    m /= R, v = v / R - m * m;
    /* mu is a float: 1000 is stored to 6e-5, which is 6e-3 after 1/sigma = 100 (PyTorch: 0.018) */
    if (fabs(m) > 1e-2) fail_msg("mean %g", m);
    if (fabs(v - var / (var + 1e-5)) > 2e-3) fail_msg("m %g v %g expected %g var %g", m, v, var / (var + 1e-5), var);
    assert_float_equal(running[1], 0.9 + 0.1 * var * R / (R - 1), 1e-6);
    free(x), free(out);
}

/* torch.nn.BatchNorm2d(2) on one 2x2 image, channel 0 = [1, 2, 3, 4], channel 1 = [0, 0, 1, -1]:
 * batch means 2.5 and 0, biased variances 1.25 and 0.5, unbiased 5/3 and 2/3. */
static void test_batchnorm_s_running_statistics_are_pytorch_s(void **state) {
    (void)state;
    float x[8] = {1, 0, 2, 0, 3, 1, 4, -1}, gb[4] = {1, 1, 0, 0}, running[4] = {0, 0, 1, 1}, out[8],
          stats[ICN_BN_STATS * 2];
    icn_batchnorm_forward(out, stats, x, gb, running, 4, 2, 1, 0, NULL);
    const double s0 = 1 / sqrt(1.25 + 1e-5), s1 = 1 / sqrt(0.5 + 1e-5);
    const double expect[8] = {-1.5 * s0, 0, -0.5 * s0, 0, 0.5 * s0, s1, 1.5 * s0, -s1};
    for (int i = 0; i < 8; i++) assert_float_equal(out[i], expect[i], 1e-6);
    /* mean: 0.9 * 0 + 0.1 * mu; var: 0.9 * 1 + 0.1 * unbiased */
    assert_float_equal(running[0], 0.25, 1e-7);
    assert_float_equal(running[1], 0.0, 1e-7);
    assert_float_equal(running[2], 0.9 + 0.1 * 5.0 / 3.0, 1e-6);   /* PyTorch: 1.0667 */
    assert_float_equal(running[3], 0.9 + 0.1 * 2.0 / 3.0, 1e-6);   /* 0.9667 */
    /* a second batch, 2x + 1: channel 0 = [3, 5, 7, 9] (mean 6, unbiased var 20/3) */
    for (int i = 0; i < 8; i++) x[i] = 2 * x[i] + 1;
    icn_batchnorm_forward(out, stats, x, gb, running, 4, 2, 1, 0, NULL);
    assert_float_equal(running[0], 0.9 * 0.25 + 0.1 * 6, 1e-6);    /* PyTorch: 0.8250 */
    assert_float_equal(running[1], 0.1, 1e-6);
    assert_float_equal(running[2], 0.9 * (0.9 + 0.5 / 3.0) + 0.1 * 20.0 / 3.0, 1e-5); /* 1.6267 */
    assert_float_equal(running[3], 0.9 * (0.9 + 0.2 / 3.0) + 0.1 * 8.0 / 3.0, 1e-5); /* 1.1367 */
    /* inference uses them: channel 0 of x = 3 is (3 - 0.825) / sqrt(1.6267 + eps) */
    icn_batchnorm_forward(out, stats, x, gb, running, 4, 2, 0, 0, NULL);
    assert_float_equal(out[0], (3 - running[0]) / sqrt(running[2] + 1e-5), 1e-6);
}

/* ---- ReLU, pooling ---- */

typedef struct { int n, hw, c, relu; float *in, *out, *r; } elem_case;

static double elem_objective(void *p) {
    elem_case *c = p;
    if (c->relu) {
        icn_relu_forward(c->out, c->in, (size_t)c->n);
        return dot(c->out, c->r, (size_t)c->n);
    }
    icn_avgpool_forward(c->out, c->in, c->n, c->hw, c->c);
    return dot(c->out, c->r, (size_t)c->n * c->c);
}

static void test_relu_s_gradient_matches_finite_differences(void **state) {
    (void)state;
    elem_case c = {.n = 50, .relu = 1};
    c.in = randn(50, 1), c.r = randn(50, 1), c.out = xmalloc(50 * 4);
    for (int i = 0; i < 50; i++) /* away from the kink */
        if (fabsf(c.in[i]) < 0.05f) c.in[i] = c.in[i] < 0 ? -0.05f : 0.05f;
    elem_objective(&c);
    for (int i = 0; i < 50; i++) assert_float_equal(c.out[i], c.in[i] > 0 ? c.in[i] : 0, 0);
    float *d = xmalloc(50 * 4);
    memcpy(d, c.r, 50 * 4);
    icn_relu_backward(d, c.out, 50);
    check_grad("relu dinput", c.in, d, 50, elem_objective, &c, 1e-2f, 1e-3);
    free(c.in), free(c.r), free(c.out), free(d);
}

static void test_average_pooling_s_gradient_matches_finite_differences(void **state) {
    (void)state;
    elem_case c = {.n = 3, .hw = 6, .c = 4};
    c.in = randn(3 * 6 * 4, 1), c.r = randn(3 * 4, 1), c.out = xmalloc(3 * 4 * 4);
    elem_objective(&c);
    for (int b = 0; b < 3; b++)
        for (int k = 0; k < 4; k++) {
            double s = 0;
            for (int p = 0; p < 6; p++) s += c.in[(b * 6 + p) * 4 + k];
            assert_float_equal(c.out[b * 4 + k], s / 6, 1e-6);
        }
    float *din = xmalloc(3 * 6 * 4 * 4);
    icn_avgpool_backward(din, c.r, 3, 6, 4);
    check_grad("avgpool dinput", c.in, din, 3 * 6 * 4, elem_objective, &c, 0.5f, 1e-3);
    free(c.in), free(c.r), free(c.out), free(din);
}

/* ---- the residual block ---- */

typedef struct {
    icn_block_shape s;
    icn_block_buffers buf;
    int n, training;
    float *in, *p, *state, *out, *r;
} block_case;

static double block_objective(void *ctx) {
    block_case *c = ctx;
    icn_block_forward(c->out, &c->buf, c->in, c->p, c->state, &c->s, c->n, c->training);
    return dot(c->out, c->r, (size_t)c->n * c->s.oh * c->s.ow * c->s.oc);
}

static void run_block_case(int h, int w, int ch, int oc, int stride, int training) {
    block_case c = {.n = 3, .training = training};
    icn_block_shape_init(&c.s, h, w, ch, oc, stride);
    assert_int_equal(c.s.proj.k != 0, stride != 1 || ch != oc);
    size_t in_n = (size_t)c.n * h * w * ch, out_n = (size_t)c.n * c.s.oh * c.s.ow * oc;
    icn_block_buffers_new(&c.buf, &c.s, c.n, NULL);
    c.in = randn(in_n, 1), c.r = randn(out_n, 1), c.p = randn(c.s.n_params, 0.3f), c.out = xmalloc(out_n * 4);
    c.state = xmalloc(c.s.n_state * 4);
    for (size_t k = 0; k < c.s.n_state; k++) c.state[k] = 0.5f + 0.1f * (float)(k % 5); /* means, variances > 0 */
    for (int k = 0; k < ch; k++) c.p[c.s.gb1 + k] += 1.0f;
    for (int k = 0; k < oc; k++) c.p[c.s.gb2 + k] += 1.0f;
    float *din = xmalloc(in_n * 4), *dp = xcalloc(c.s.n_params, 4), *tmp = xmalloc(out_n * 4);
    float *r_copy = xmalloc(out_n * 4);
    memcpy(r_copy, c.r, out_n * 4);
    block_objective(&c);
    icn_block_backward(din, dp, tmp, c.r, c.in, &c.buf, c.p, &c.s, c.n, training);
    assert_memory_equal(c.r, r_copy, out_n * 4); /* dout is not modified */
    char what[96];
    snprintf(what, sizeof what, "block %s %s dinput", stride != 1 || ch != oc ? "projection" : "identity",
             training ? "training" : "inference");
    check_grad(what, c.in, din, in_n, block_objective, &c, 1e-3f, 2e-2);
    snprintf(what, sizeof what, "block %s %s dparams", stride != 1 || ch != oc ? "projection" : "identity",
             training ? "training" : "inference");
    check_grad(what, c.p, dp, c.s.n_params, block_objective, &c, 1e-3f, 2e-2);
    icn_block_buffers_free(&c.buf);
    free(c.in), free(c.r), free(c.p), free(c.out), free(c.state), free(din), free(dp), free(tmp), free(r_copy);
}

static void test_a_block_with_an_identity_shortcut_has_exact_gradients(void **state) {
    (void)state;
    run_block_case(5, 4, 3, 3, 1, 1);
    run_block_case(5, 4, 3, 3, 1, 0);
}

static void test_a_block_with_a_projection_shortcut_has_exact_gradients(void **state) {
    (void)state;
    run_block_case(5, 6, 2, 4, 2, 1); /* odd height: 5 -> 3 */
    run_block_case(5, 6, 2, 4, 2, 0);
}

/* ---- the whole network ---- */

/* Batchnorm scales and running statistics away from 1 and 0, so every term matters. */
static void perturb_batchnorm(icn_net *net) {
    for (size_t i = net->n_trainable; i < net->n_params; i++) net->params[i] = 0.5f + 0.5f * (float)icn_rng_uniform(&rng);
    for (int i = 0; i < net->n_layers; i++) {
        const icn_layer *l = &net->layer[i];
        float *p = net->params + l->w_off;
        if (l->kind == ICN_LAYER_BLOCK)
            for (int k = 0; k < 2 * l->block.c; k++) p[l->block.gb1 + k] += 0.2f * (float)icn_rng_gauss(&rng);
        if (l->kind == ICN_LAYER_BN)
            for (int k = 0; k < 2 * l->io.c; k++) p[k] += 0.2f * (float)icn_rng_gauss(&rng);
    }
}

static void test_resnet8_s_training_gradients_match_finite_differences(void **state) {
    (void)state;
    check_net_gradients("resnet8", 1, perturb_batchnorm);
}
static void test_resnet8_s_inference_gradients_match_finite_differences(void **state) {
    (void)state;
    check_net_gradients("resnet8", 0, perturb_batchnorm);
}

static void test_the_resnet_architectures_have_he_et_al_s_shapes(void **state) {
    (void)state;
    icn_net net;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_net_build(&net, "resnet32", 32, 32, 3, 10, err, sizeof err), 0);
    assert_int_equal(net.n_layers, 1 + 15 + 3);
    /* PyTorch's count for the same network (tests/bench/torch_bench.py): parameters and buffers */
    assert_int_equal(net.n_trainable, 466714);
    assert_int_equal(net.n_params - net.n_trainable, 2272);
    for (int i = 1; i <= 15; i++) {
        const icn_layer *l = &net.layer[i];
        int stage = (i - 1) / 5, first = (i - 1) % 5 == 0;
        assert_int_equal(l->kind, ICN_LAYER_BLOCK);
        assert_int_equal(l->block.oc, 16 << stage);
        assert_int_equal(l->block.oh, 32 >> stage);
        assert_int_equal(l->block.conv1.stride, stage > 0 && first ? 2 : 1);
        assert_int_equal(l->block.proj.k != 0, stage > 0 && first);
        assert_true(l->s_off >= net.n_trainable && l->w_off + l->block.n_params <= net.n_trainable);
    }
    assert_int_equal(net.layer[0].kind, ICN_LAYER_CONV);
    assert_false(net.layer[0].bias);
    assert_int_equal(net.layer[16].kind, ICN_LAYER_BN);
    assert_true(net.layer[16].relu);
    assert_int_equal(net.layer[17].kind, ICN_LAYER_POOL);
    assert_int_equal(net.layer[18].in_size, 64);
    icn_net_free(&net);
    /* any input: MNIST is 28 -> 14 -> 7 */
    assert_int_equal(icn_net_build(&net, "resnet8", 28, 28, 1, 10, err, sizeof err), 0);
    assert_int_equal(net.n_layers, 1 + 3 + 3);
    assert_int_equal(net.layer[3].io.oh, 7);
    icn_net_free(&net);
    const char *bad[] = {"resnet", "resnet10", "resnet2", "resnet8x", "resnet-4", "resnet1202"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(icn_net_build(&net, bad[i], 32, 32, 3, 10, err, sizeof err), -1);
        assert_non_null(strstr(err, bad[i]));
    }
}

/* ---- training: running statistics move with the forward, not with the optimizer ---- */

static void test_the_optimizer_and_evaluation_leave_the_running_statistics_alone(void **state) {
    (void)state;
    enum { N = 8, H = 8, W = 8, C = 1, K = 3 };
    icn_net net, copy;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_net_build(&net, "resnet8", H, W, C, K, err, sizeof err), 0);
    assert_int_equal(icn_net_build(&copy, "resnet8", H, W, C, K, err, sizeof err), 0);
    icn_net_init(&net, 3);
    memcpy(copy.params, net.params, net.n_params * 4);
    const size_t n_state = net.n_params - net.n_trainable;
    float *x = randn(N * H * W * C, 1), dlogits[N * K], *state0 = xmalloc(n_state * 4), *logits = xmalloc(N * K * 4);
    int32_t y[N] = {0, 1, 2, 0, 1, 2, 0, 1};
    icn_train_opts o;
    icn_train_opts_default(&o);
    o.clip_grad = 1e-3; /* clipping, weight decay and momentum all in play */
    icn_optim opt;
    icn_optim_sgd(&opt, net.n_trainable, 0.9f, 0.1f);
    icn_work *w = icn_work_new(&net, N), *wc = icn_work_new(&copy, N);
    for (int step = 0; step < 3; step++) {
        /* the copy runs the same training-mode forward with the same weights, and no optimizer */
        memcpy(copy.params, net.params, net.n_trainable * 4);
        wc->training = 1;
        icn_forward(&copy, wc, x, N);
        wc->training = 0;
        icn_train_step(&net, w, &opt, x, y, NULL, N, 0, ICN_BN_MIXED, &o, 0.1f, dlogits);
        assert_int_equal(w->training, 0); /* the step's mode ends with the step */
        assert_memory_equal(net.params + net.n_trainable, copy.params + net.n_trainable, n_state * 4);
    }
    assert_memory_not_equal(net.params, copy.params, net.n_trainable * 4); /* the step did train */
    /* ...and the statistics moved from their initial 0 and 1 */
    float ones = 0;
    for (size_t i = net.n_trainable; i < net.n_params; i++) ones += net.params[i];
    assert_true(fabsf(ones - (float)n_state / 2) > 1e-3f);
    /* evaluation and prediction run in inference mode: they leave the statistics alone */
    memcpy(state0, net.params + net.n_trainable, n_state * 4);
    icn_predict(&net, w, x, N, logits);
    icn_batch data = {.n = N, .h = H, .w = W, .c = C, .x = x, .y = y};
    icn_eval_result r;
    assert_int_equal(icn_evaluate(&net, w, &data, &r, err, sizeof err), 0);
    icn_eval_result_free(&r);
    assert_memory_equal(net.params + net.n_trainable, state0, n_state * 4);
    icn_optim_free(&opt);
    icn_work_free(w), icn_work_free(wc);
    icn_net_free(&net), icn_net_free(&copy);
    free(x), free(state0), free(logits);
}

/* ---- a step whose batch norm sees two batches (train.h, split) ---- */

/* The split step's loss: (m/n) of each part's weighted mean, the first part normalized by its own
 * statistics (training mode 2: the running statistics stay as they are while it is probed), the
 * second by its own (mode 2, --bn-pseudo separate) or by the running statistics (mode 0, frozen). */
typedef struct { icn_net *net; icn_work *w; float *x; int32_t *y; float *weight; int n, split, second; float *dz; } split_case;

static double split_objective(void *p) {
    split_case *c = p;
    const size_t d = icn_net_input_size(c->net);
    double loss = 0;
    c->w->training = 2;
    for (int part = 0; part < 2; part++) {
        int from = part ? c->split : 0, m = part ? c->n - c->split : c->split;
        c->w->training = part ? c->second : 2;
        const float *z = icn_forward(c->net, c->w, c->x + from * d, m);
        loss += (double)m / c->n * icn_loss_softmax(z, c->y + from, c->weight + from, m, c->net->classes, 0, c->dz);
    }
    c->w->training = 0;
    return loss;
}

static void check_split_step(icn_bn_pseudo mode) {
    enum { N = 7, S = 4, H = 6, W = 5, C = 1, K = 3 };
    icn_net net, real_only;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_net_build(&net, "resnet8", H, W, C, K, err, sizeof err), 0);
    assert_int_equal(icn_net_build(&real_only, "resnet8", H, W, C, K, err, sizeof err), 0);
    icn_net_init(&net, 11);
    perturb_batchnorm(&net);
    memcpy(real_only.params, net.params, net.n_params * 4);
    float *x = randn(N * H * W * C, 1), dlogits[N * K], weight[N], *theta = xmalloc(net.n_params * 4);
    for (int i = S * H * W * C; i < N * H * W * C; i++) x[i] = 3 * x[i] + 1; /* pseudo-negatives: other statistics */
    int32_t y[N] = {0, 2, 1, 0, -1, -3, -2}; /* 4 real images, then 3 pseudo-negatives of classes 0, 2, 1 */
    for (int i = 0; i < N; i++) weight[i] = i < S ? (float)N / S : 0.5f * N / (N - S); /* as the trainer's, alpha 0.5 */
    memcpy(theta, net.params, net.n_params * 4);
    icn_train_opts o;
    icn_train_opts_default(&o);
    icn_optim opt;
    icn_optim_sgd(&opt, net.n_trainable, 0, 0);
    icn_work *w = icn_work_new(&net, N), *wr = icn_work_new(&real_only, N);
    split_case c = {.net = &net, .w = w, .x = x, .y = y, .weight = weight, .n = N, .split = S,
                    .second = mode == ICN_BN_FROZEN ? 0 : 2, .dz = xmalloc(N * K * 4)};
    const double expected = split_objective(&c);
    icn_step_result r = icn_train_step(&net, w, &opt, x, y, weight, N, S, mode, &o, 0.0f, dlogits); /* lr 0: no move */
    assert_int_equal(w->training, 0);
    assert_true(fabs(r.loss - expected) < 1e-5 * fmax(1, fabs(expected)));
    assert_memory_equal(net.params, theta, net.n_trainable * 4);
    /* the running statistics moved as a training forward of the real images alone moves them */
    wr->training = 1;
    icn_forward(&real_only, wr, x, S);
    for (size_t i = net.n_trainable; i < net.n_params; i++)
        assert_true(fabsf(net.params[i] - real_only.params[i]) <= 1e-6f * fmaxf(1, fabsf(real_only.params[i])));
    assert_memory_not_equal(net.params + net.n_trainable, theta + net.n_trainable, (net.n_params - net.n_trainable) * 4);
    /* the gradient is the split objective's, by finite differences (running statistics restored first) */
    float *grad = xmalloc(net.n_trainable * 4);
    memcpy(grad, w->grad, net.n_trainable * 4);
    memcpy(net.params, theta, net.n_params * 4);
    check_grad("resnet8 split step dparams", net.params, grad, net.n_trainable, split_objective, &c, 1e-3f, 2e-2);
    /* one batch (split 0) is another objective: the same images give another gradient */
    icn_train_step(&net, w, &opt, x, y, weight, N, 0, ICN_BN_MIXED, &o, 0.0f, dlogits);
    assert_memory_not_equal(w->grad, grad, net.n_trainable * 4);
    icn_optim_free(&opt);
    icn_work_free(w), icn_work_free(wr);
    icn_net_free(&net), icn_net_free(&real_only);
    free(x), free(theta), free(grad), free(c.dz);
}

static void test_a_step_with_separate_statistics_has_the_gradient_of_its_objective(void **state) {
    (void)state;
    check_split_step(ICN_BN_SEPARATE);
}

/* --bn-pseudo frozen: the pseudo-negatives normalized by the running statistics */
static void test_a_step_with_frozen_statistics_has_the_gradient_of_its_objective(void **state) {
    (void)state;
    check_split_step(ICN_BN_FROZEN);
}

/* frozen and separate are two objectives: the same step gives two gradients */
static void test_frozen_and_separate_statistics_give_different_gradients(void **state) {
    (void)state;
    enum { N = 6, S = 4, H = 6, W = 5, C = 1, K = 3 };
    icn_net net;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_net_build(&net, "resnet8", H, W, C, K, err, sizeof err), 0);
    icn_net_init(&net, 5);
    perturb_batchnorm(&net);
    float *x = randn(N * H * W * C, 2), dlogits[N * K], weight[N], *theta = xmalloc(net.n_params * 4);
    int32_t y[N] = {0, 2, 1, 0, -1, -3};
    for (int i = 0; i < N; i++) weight[i] = 1;
    memcpy(theta, net.params, net.n_params * 4);
    icn_train_opts o;
    icn_train_opts_default(&o);
    icn_optim opt;
    icn_optim_sgd(&opt, net.n_trainable, 0, 0);
    icn_work *w = icn_work_new(&net, N);
    icn_train_step(&net, w, &opt, x, y, weight, N, S, ICN_BN_SEPARATE, &o, 0.0f, dlogits);
    float *separate = xmalloc(net.n_trainable * 4);
    memcpy(separate, w->grad, net.n_trainable * 4);
    memcpy(net.params, theta, net.n_params * 4);
    icn_train_step(&net, w, &opt, x, y, weight, N, S, ICN_BN_FROZEN, &o, 0.0f, dlogits);
    assert_memory_not_equal(w->grad, separate, net.n_trainable * 4);
    icn_optim_free(&opt);
    icn_work_free(w);
    icn_net_free(&net);
    free(x), free(theta), free(separate);
}

/* ---- snapshots: the architecture decides the layout, the state travels with the weights ---- */

static void test_a_snapshot_carries_the_running_statistics(void **state) {
    (void)state;
    enum { N = 2, H = 9, W = 7, C = 3, K = 5 };
    icn_net net, back;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_net_build(&net, "resnet14", H, W, C, K, err, sizeof err), 0);
    icn_net_init(&net, 11);
    perturb_batchnorm(&net);
    icn_optim opt, restored;
    icn_optim_sgd(&opt, net.n_trainable, 0.9f, 0);
    icn_optim_sgd(&restored, net.n_trainable, 0.9f, 0);
    for (size_t i = 0; i < opt.n; i++) opt.m[i] = (float)i;
    icn_model_meta meta = {.head = ICN_HEAD_SOFTMAX, .step = 3}, meta2;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_model_pack(&sb, &net, &meta, &opt);
    int has_optim = 0;
    assert_int_equal(icn_model_decode((const uint8_t *)sb.data, sb.size, &back, &meta2, &restored, &has_optim, err,
                                      sizeof err), 0);
    assert_true(has_optim);
    assert_int_equal(back.n_params, net.n_params);
    assert_int_equal(back.n_trainable, net.n_trainable);
    assert_memory_equal(back.params, net.params, net.n_params * 4);
    assert_memory_equal(restored.m, opt.m, opt.n * 4);
    /* the same logits in inference mode, which reads the running statistics */
    float *x = randn(N * H * W * C, 1), za[N * K];
    icn_work *wa = icn_work_new(&net, N), *wb = icn_work_new(&back, N);
    memcpy(za, icn_forward(&net, wa, x, N), sizeof za);
    assert_memory_equal(icn_forward(&back, wb, x, N), za, sizeof za);
    icn_net_free(&back);
    /* optimizer state sized for all parameters (state included) is not this model's */
    icn_optim wrong;
    icn_optim_sgd(&wrong, net.n_params, 0.9f, 0);
    assert_int_equal(icn_model_decode((const uint8_t *)sb.data, sb.size, &back, &meta2, &wrong, &has_optim, err,
                                      sizeof err), -1);
    assert_non_null(strstr(err, "optimizer state"));
    msgpack_sbuffer_destroy(&sb);
    icn_optim_free(&opt), icn_optim_free(&restored), icn_optim_free(&wrong);
    icn_work_free(wa), icn_work_free(wb);
    icn_net_free(&net);
    free(x);
}

int main(void) {
    icn_rng_seed(&rng, 4242);
    icn_runtime_init(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batchnorm_s_training_gradients_match_finite_differences),
        cmocka_unit_test(test_batchnorm_s_inference_gradients_match_finite_differences),
        cmocka_unit_test(test_batchnorm_gives_the_same_on_one_and_two_threads),
        cmocka_unit_test(test_batchnorm_with_relu_fused_equals_the_two_apart),
        cmocka_unit_test(test_batchnorm_keeps_its_precision_when_the_mean_dwarfs_the_spread),
        cmocka_unit_test(test_batchnorm_s_running_statistics_are_pytorch_s),
        cmocka_unit_test(test_relu_s_gradient_matches_finite_differences),
        cmocka_unit_test(test_average_pooling_s_gradient_matches_finite_differences),
        cmocka_unit_test(test_a_block_with_an_identity_shortcut_has_exact_gradients),
        cmocka_unit_test(test_a_block_with_a_projection_shortcut_has_exact_gradients),
        cmocka_unit_test(test_resnet8_s_training_gradients_match_finite_differences),
        cmocka_unit_test(test_resnet8_s_inference_gradients_match_finite_differences),
        cmocka_unit_test(test_the_resnet_architectures_have_he_et_al_s_shapes),
        cmocka_unit_test(test_the_optimizer_and_evaluation_leave_the_running_statistics_alone),
        cmocka_unit_test(test_a_step_with_separate_statistics_has_the_gradient_of_its_objective),
        cmocka_unit_test(test_a_step_with_frozen_statistics_has_the_gradient_of_its_objective),
        cmocka_unit_test(test_frozen_and_separate_statistics_give_different_gradients),
        cmocka_unit_test(test_a_snapshot_carries_the_running_statistics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
