/* Unit tests of group normalization and the ResNets built on it ("resnetN-gn"): the layer against
 * a direct computation and finite differences (input, gamma, beta), its groups, its threads, the
 * residual block and the whole resnet8-gn in training and inference, an image's output
 * independent of its batch, the step with the pseudo-negatives as a batch of their own the same
 * as the mixed one, and a model file that carries the architecture. And the ResNet without
 * normalization ("resnetN-fixup"): its layout, its Fixup initialization, its gradients against
 * finite differences on both convolution paths, and its model file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "groupnorm.h"
#include "layers.h"
#include "losses.h"
#include "net.h"
#include "optim.h"
#include "runtime.h"
#include "snapshot.h"
#include "train.h"
#include "util.h"

#include "fixup_perturb.h"
#include "gradcheck.h"
#include "netgrad.h"

/* ---- the layer ---- */

static void test_the_groups_are_the_largest_divisor_of_the_channels_up_to_8(void **state) {
    (void)state;
    const int c[] = {1, 2, 6, 7, 8, 9, 12, 16, 24, 32, 64, 100, 256}, g[] = {1, 2, 6, 7, 8, 3, 6, 8, 8, 8, 8, 5, 8};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        assert_int_equal(icn_groupnorm_groups(c[i]), g[i]);
        assert_int_equal(icn_groupnorm_stats_size(3, c[i]), 2 * 3 * (size_t)g[i]);
    }
    assert_true(ICN_GN_EPS == ICN_BN_EPS); /* batch norm's eps */
}

/* Wu & He Eq. 1 and 2 computed directly, in double, one (image, group) at a time. */
static void groupnorm_direct(double *out, const float *x, const float *gb, int n, int hw, int c) {
    const int G = icn_groupnorm_groups(c), cg = c / G;
    for (int b = 0; b < n; b++)
        for (int g = 0; g < G; g++) {
            double mu = 0, var = 0;
            for (int p = 0; p < hw; p++)
                for (int k = g * cg; k < (g + 1) * cg; k++) mu += x[((size_t)b * hw + p) * c + k];
            mu /= (double)hw * cg;
            for (int p = 0; p < hw; p++)
                for (int k = g * cg; k < (g + 1) * cg; k++) {
                    double d = x[((size_t)b * hw + p) * c + k] - mu;
                    var += d * d;
                }
            var /= (double)hw * cg;
            for (int p = 0; p < hw; p++)
                for (int k = g * cg; k < (g + 1) * cg; k++) {
                    size_t i = ((size_t)b * hw + p) * c + k;
                    out[i] = gb[k] * (x[i] - mu) / sqrt(var + 1e-5) + gb[c + k];
                }
        }
}

static void test_group_norm_is_wu_and_he_s_per_image_and_group_normalization(void **state) {
    (void)state;
    enum { N = 3, HW = 5, C = 24 }; /* 8 groups of 3 channels */
    float *x = randn(N * HW * C, 2), *gb = randn(2 * C, 0.5f), *out = xmalloc(N * HW * C * 4),
          *stats = xmalloc(icn_groupnorm_stats_size(N, C) * 4);
    for (int i = 0; i < N * HW * C; i++) x[i] += (float)(i % C) - 10.0f + 100.0f * (float)(i / (HW * C)); /* means */
    double *expect = xmalloc(N * HW * C * sizeof(double));
    groupnorm_direct(expect, x, gb, N, HW, C);
    icn_groupnorm_forward(out, stats, x, gb, N, HW, C, 0);
    for (int i = 0; i < N * HW * C; i++) assert_float_equal(out[i], expect[i], 2e-5 * (1 + fabs(expect[i])));
    /* ReLU fused, and in place */
    icn_groupnorm_forward(x, stats, x, gb, N, HW, C, 1);
    for (int i = 0; i < N * HW * C; i++) assert_float_equal(x[i], expect[i] > 0 ? expect[i] : 0, 2e-5 * (1 + fabs(expect[i])));
    free(x), free(gb), free(out), free(stats), free(expect);
}

typedef struct {
    int n, hw, c;
    float *in, *gb, *stats, *out, *r;
} gn_case;

static double gn_objective(void *p) {
    gn_case *c = p;
    icn_groupnorm_forward(c->out, c->stats, c->in, c->gb, c->n, c->hw, c->c, 0);
    return dot(c->out, c->r, (size_t)c->n * c->hw * c->c);
}

static void run_gn_case(int c_channels) {
    enum { N = 3, HW = 6 };
    const int C = c_channels;
    const size_t count = (size_t)N * HW * C;
    gn_case c = {.n = N, .hw = HW, .c = C};
    c.in = randn(count, 2), c.r = randn(count, 1), c.gb = randn(2 * C, 0.5f);
    c.stats = xmalloc(icn_groupnorm_stats_size(N, C) * 4), c.out = xmalloc(count * 4);
    for (int k = 0; k < C; k++) {
        c.gb[k] += 1.0f; /* gamma near 1 */
        for (int r = 0; r < N * HW; r++) c.in[r * C + k] += 0.5f * (float)k - 1; /* channels with different means */
    }
    float *din = xmalloc(count * 4), *dgb = xcalloc(2 * C, 4), *inplace = xmalloc(count * 4), *dgb2 = xcalloc(2 * C, 4);
    gn_objective(&c);
    icn_groupnorm_backward(din, dgb, c.stats, c.r, c.in, c.gb, N, HW, C, NULL);
    /* in place (din == dout), as the residual block uses it; the parameter gradients alone */
    memcpy(inplace, c.r, count * 4);
    icn_groupnorm_backward(inplace, NULL, c.stats, inplace, c.in, c.gb, N, HW, C, NULL);
    for (size_t i = 0; i < count; i++) assert_float_equal(inplace[i], din[i], 1e-6);
    icn_groupnorm_backward(NULL, dgb2, c.stats, c.r, c.in, c.gb, N, HW, C, NULL);
    assert_memory_equal(dgb2, dgb, 2 * C * 4);
    char what[64];
    snprintf(what, sizeof what, "group norm, %d channels, dinput", C);
    check_grad(what, c.in, din, count, gn_objective, &c, 1e-2f, 2e-3);
    snprintf(what, sizeof what, "group norm, %d channels, dgamma,dbeta", C);
    check_grad(what, c.gb, dgb, 2 * C, gn_objective, &c, 1e-2f, 2e-3);
    free(c.in), free(c.r), free(c.gb), free(c.stats), free(c.out), free(din), free(dgb), free(inplace), free(dgb2);
}

static void test_group_norm_s_input_gamma_and_beta_gradients_match_finite_differences(void **state) {
    (void)state;
    run_gn_case(16); /* 8 groups of 2 */
    run_gn_case(24); /* 8 groups of 3 */
    run_gn_case(5);  /* 5 groups of 1 */
}

/* Split by image: one thread and two give the same bits, gradients of gamma and beta included. */
static void test_group_norm_gives_the_same_bits_on_one_and_two_threads(void **state) {
    (void)state;
    enum { N = 40, HW = 49, C = 32 }; /* enough work for two threads */
    const size_t count = (size_t)N * HW * C;
    float *in = randn(count, 1), *dout = randn(count, 1), *gb = randn(2 * C, 1);
    float *out[2], *din[2], *dgb[2], *stats = xmalloc(icn_groupnorm_stats_size(N, C) * 4);
    for (int t = 0; t < 2; t++) {
        icn_runtime_init(t + 1);
        out[t] = xmalloc(count * 4), din[t] = xmalloc(count * 4), dgb[t] = xcalloc(2 * C, 4);
        icn_groupnorm_forward(out[t], stats, in, gb, N, HW, C, 1);
        icn_groupnorm_backward(din[t], dgb[t], stats, dout, in, gb, N, HW, C, NULL);
    }
    icn_runtime_init(1);
    assert_memory_equal(out[0], out[1], count * 4);
    assert_memory_equal(din[0], din[1], count * 4);
    assert_memory_equal(dgb[0], dgb[1], 2 * C * 4);
    free(in), free(dout), free(gb), free(stats);
    for (int t = 0; t < 2; t++) free(out[t]), free(din[t]), free(dgb[t]);
}

/* ---- the residual block ---- */

typedef struct {
    icn_block_shape s;
    icn_block_buffers buf;
    int n, training;
    float *in, *p, *out, *r;
} block_case;

static double block_objective(void *ctx) {
    block_case *c = ctx;
    icn_block_forward(c->out, &c->buf, c->in, c->p, NULL, &c->s, c->n, c->training);
    return dot(c->out, c->r, (size_t)c->n * c->s.oh * c->s.ow * c->s.oc);
}

/* A group-norm block, or a Fixup block (norm ICN_NORM_NONE) whose scalars are checked on their
 * own too, relative to their own size (the whole's scale would hide a multiplier's gradient that is
 * a tenth off), stepped by 1e-4 (a bias moves every unit after it: 1e-3 crosses ReLU kinks). */
static void run_block_case_norm(int h, int w, int ch, int oc, int stride, int training, icn_norm norm) {
    block_case c = {.n = 3, .training = training};
    icn_block_shape_init_norm(&c.s, h, w, ch, oc, stride, norm);
    assert_int_equal(c.s.n_state, 0); /* no running statistics */
    size_t in_n = (size_t)c.n * h * w * ch, out_n = (size_t)c.n * c.s.oh * c.s.ow * oc;
    icn_block_buffers_new(&c.buf, &c.s, c.n, NULL);
    c.in = randn(in_n, 1), c.r = randn(out_n, 1), c.p = randn(c.s.n_params, 0.3f), c.out = xmalloc(out_n * 4);
    if (norm == ICN_NORM_GROUP) {
        for (int k = 0; k < ch; k++) c.p[c.s.gb1 + k] += 1.0f;
        for (int k = 0; k < oc; k++) c.p[c.s.gb2 + k] += 1.0f;
    } else {
        c.p[c.s.fx + 3] += 1.0f; /* the multiplier */
    }
    float *din = xmalloc(in_n * 4), *dp = xcalloc(c.s.n_params, 4), *tmp = xmalloc(out_n * 4);
    block_objective(&c);
    icn_block_backward(din, dp, tmp, c.r, c.in, &c.buf, c.p, &c.s, c.n, training);
    const char *kind = norm == ICN_NORM_GROUP ? "group-norm" : "fixup";
    char what[96];
    snprintf(what, sizeof what, "%s block %s %s dinput", kind, c.s.proj.k ? "projection" : "identity",
             training ? "training" : "inference");
    check_grad(what, c.in, din, in_n, block_objective, &c, 1e-3f, 2e-2);
    snprintf(what, sizeof what, "%s block %s %s dparams", kind, c.s.proj.k ? "projection" : "identity",
             training ? "training" : "inference");
    check_grad(what, c.p, dp, c.s.n_params, block_objective, &c, 1e-3f, 2e-2);
    if (norm == ICN_NORM_NONE) {
        snprintf(what, sizeof what, "fixup block %s %s dscalars", c.s.proj.k ? "projection" : "identity",
                 training ? "training" : "inference");
        check_grad(what, c.p + c.s.fx, dp + c.s.fx, ICN_FIXUP_SCALARS, block_objective, &c, 1e-4f, 2e-2);
        snprintf(what, sizeof what, "fixup block %s dconv2", c.s.proj.k ? "projection" : "identity");
        check_grad(what, c.p + c.s.w2, dp + c.s.w2, c.s.wp - c.s.w2, block_objective, &c, 1e-3f, 2e-2);
    }
    icn_block_buffers_free(&c.buf);
    free(c.in), free(c.r), free(c.p), free(c.out), free(din), free(dp), free(tmp);
}

static void run_block_case(int h, int w, int ch, int oc, int stride, int training) {
    run_block_case_norm(h, w, ch, oc, stride, training, ICN_NORM_GROUP);
}

static void test_a_group_norm_block_has_exact_gradients_with_either_shortcut(void **state) {
    (void)state;
    run_block_case(5, 4, 4, 4, 1, 1); /* identity: 4 groups of 1 */
    run_block_case(5, 4, 4, 4, 1, 0);
    run_block_case(5, 6, 4, 16, 2, 1); /* projection, odd height 5 -> 3: 16 channels in 8 groups of 2 */
    run_block_case(5, 6, 4, 16, 2, 0);
}

/* ---- the whole network ---- */

/* gamma and beta away from 1 and 0, so every term matters. */
static void perturb_norms(icn_net *net) {
    for (int i = 0; i < net->n_layers; i++) {
        const icn_layer *l = &net->layer[i];
        float *p = net->params + l->w_off;
        if (l->kind == ICN_LAYER_BLOCK) {
            for (int k = 0; k < 2 * l->block.c; k++) p[l->block.gb1 + k] += 0.2f * (float)icn_rng_gauss(&rng);
            for (int k = 0; k < 2 * l->block.oc; k++) p[l->block.gb2 + k] += 0.2f * (float)icn_rng_gauss(&rng);
        }
        if (l->kind == ICN_LAYER_GN)
            for (int k = 0; k < 2 * l->io.c; k++) p[k] += 0.2f * (float)icn_rng_gauss(&rng);
    }
}

static void test_resnet8_gn_is_resnet8_with_group_norm_and_no_state(void **state) {
    (void)state;
    icn_net bn, gn;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_net_build(&bn, "resnet8", 28, 28, 1, 10, err, sizeof err), 0);
    assert_int_equal(icn_net_build(&gn, "resnet8-gn", 28, 28, 1, 10, err, sizeof err), 0);
    assert_string_equal(gn.arch, "resnet8-gn");
    assert_int_equal(gn.n_layers, bn.n_layers);
    assert_int_equal(gn.n_trainable, bn.n_trainable); /* the same gamma and beta */
    assert_int_equal(gn.n_params, gn.n_trainable);    /* and no running statistics */
    assert_true(bn.n_params > bn.n_trainable);
    for (int i = 0; i < gn.n_layers; i++) {
        assert_int_equal(gn.layer[i].kind, bn.layer[i].kind == ICN_LAYER_BN ? ICN_LAYER_GN : bn.layer[i].kind);
        assert_int_equal(gn.layer[i].w_off, bn.layer[i].w_off);
        assert_int_equal(gn.layer[i].block.norm == ICN_NORM_GROUP, bn.layer[i].kind == ICN_LAYER_BLOCK);
    }
    icn_net_init(&gn, 3);
    for (int i = 0; i < gn.n_layers; i++) { /* gamma 1, beta 0 */
        const icn_layer *l = &gn.layer[i];
        const float *p = gn.params + l->w_off;
        if (l->kind == ICN_LAYER_GN)
            for (int k = 0; k < l->io.c; k++) assert_true(p[k] == 1.0f && p[l->io.c + k] == 0.0f);
        if (l->kind == ICN_LAYER_BLOCK)
            for (int k = 0; k < l->block.oc; k++) assert_true(p[l->block.gb2 + k] == 1.0f && p[l->block.gb2 + l->block.oc + k] == 0.0f);
    }
    icn_net_free(&bn), icn_net_free(&gn);
    const char *bad[] = {"resnet8-gn4", "resnet8-GN", "resnet8-", "resnet-gn", "resnet10-gn", "resnet8gn", "resnet+8-gn"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(icn_net_build(&gn, bad[i], 28, 28, 1, 10, err, sizeof err), -1);
        assert_non_null(strstr(err, bad[i]));
    }
}

static void test_resnet8_gn_s_training_gradients_match_finite_differences(void **state) {
    (void)state;
    check_net_gradients("resnet8-gn", 1, perturb_norms);
}
static void test_resnet8_gn_s_inference_gradients_match_finite_differences(void **state) {
    (void)state;
    check_net_gradients("resnet8-gn", 0, perturb_norms);
}

/* An image's logits alone and inside a batch of 6, in training mode and in inference: the same
 * (to sgemm's rounding, which depends on a row's place in the batch); training and inference the
 * same bits. resnet8 with batch norm, in training, is not: the check can fail. */
static void test_an_image_s_output_does_not_depend_on_the_rest_of_its_batch(void **state) {
    (void)state;
    enum { N = 6, H = 12, W = 12, C = 1, K = 5 };
    char err[ICN_ERRLEN];
    float *x = randn(N * H * W * C, 1), alone[N][K], batch[2][N * K];
    for (int arch = 0; arch < 2; arch++) {
        icn_net net;
        assert_int_equal(icn_net_build(&net, arch ? "resnet8" : "resnet8-gn", H, W, C, K, err, sizeof err), 0);
        icn_net_init(&net, 5);
        perturb_norms(&net);
        icn_work *w = icn_work_new(&net, N);
        w->training = 1;
        for (int i = 0; i < N; i++) memcpy(alone[i], icn_forward(&net, w, x + (size_t)i * H * W * C, 1), K * 4);
        memcpy(batch[0], icn_forward(&net, w, x, N), N * K * 4);
        w->training = 0;
        memcpy(batch[1], icn_forward(&net, w, x, N), N * K * 4);
        double worst = 0;
        for (int i = 0; i < N; i++)
            for (int k = 0; k < K; k++) worst = fmax(worst, fabs(alone[i][k] - batch[0][i * K + k]) / (1 + fabs(alone[i][k])));
        if (arch == 0) {
            if (worst > 1e-5) fail_msg("resnet8-gn: an image's logits alone and in a batch differ by %g", worst);
            assert_memory_equal(batch[0], batch[1], N * K * 4);
        } else {
            assert_true(worst > 1e-2); /* batch statistics: the rest of the batch matters */
        }
        icn_work_free(w);
        icn_net_free(&net);
    }
    free(x);
}

/* With no batch statistics, a step that normalizes the pseudo-negatives as a batch of their own
 * (--bn-pseudo separate: split) is the mixed step, to rounding. With batch norm it is not: the
 * check can fail. */
static double split_against_mixed(const char *arch) {
    enum { N = 6, H = 8, W = 8, C = 1, K = 3, SPLIT = 4 };
    char err[ICN_ERRLEN];
    icn_net net[2];
    float *x = randn(N * H * W * C, 1), dlogits[N * K], weight[N] = {1, 1, 1, 1, 0.5f, 0.5f}, *p0 = NULL;
    int32_t y[N] = {0, 1, 2, 0, -2, -3};
    icn_train_opts o;
    icn_train_opts_default(&o);
    for (int s = 0; s < 2; s++) {
        assert_int_equal(icn_net_build(&net[s], arch, H, W, C, K, err, sizeof err), 0);
        icn_net_init(&net[s], 9);
        perturb_norms(&net[s]);
        if (!p0) p0 = xmalloc(net[s].n_params * 4), memcpy(p0, net[s].params, net[s].n_params * 4);
        memcpy(net[s].params, p0, net[s].n_params * 4);
        icn_optim opt;
        icn_optim_sgd(&opt, net[s].n_trainable, 0.9f, 0.0f);
        icn_work *w = icn_work_new(&net[s], N);
        for (int step = 0; step < 2; step++) icn_train_step(&net[s], w, &opt, x, y, weight, N, s ? SPLIT : 0, ICN_BN_SEPARATE, &o, 0.1f, dlogits);
        icn_work_free(w);
        icn_optim_free(&opt);
    }
    assert_memory_not_equal(net[0].params, p0, net[0].n_trainable * 4); /* the steps did train */
    double worst = 0;
    for (size_t i = 0; i < net[0].n_trainable; i++)
        worst = fmax(worst, fabs(net[0].params[i] - net[1].params[i]) / (1e-2 + fabs(net[0].params[i] - p0[i])));
    icn_net_free(&net[0]), icn_net_free(&net[1]);
    free(x), free(p0);
    return worst;
}

static void test_a_split_step_is_the_mixed_step_without_batch_statistics(void **state) {
    (void)state;
    double gn = split_against_mixed("resnet8-gn"), bn = split_against_mixed("resnet8");
    if (gn > 1e-3) fail_msg("resnet8-gn: split and mixed steps differ by %g of the update", gn);
    if (bn < 1e-2) fail_msg("resnet8: split and mixed steps agree to %g of the update", bn);
}

/* ---- the model file ---- */

/* arch, initialized and perturbed, through a model file and back: the same architecture and
 * parameters; returns the net read back (the caller frees it). */
static icn_net model_round_trip(const char *arch, void (*perturb)(icn_net *)) {
    icn_net net, back;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_net_build(&net, arch, 28, 28, 1, 10, err, sizeof err), 0);
    icn_net_init(&net, 11);
    perturb(&net);
    icn_model_meta meta = {.head = ICN_HEAD_SOFTMAX, .step = 3}, meta2;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_model_pack(&sb, &net, &meta, NULL);
    int has_optim = 1;
    if (icn_model_decode((const uint8_t *)sb.data, sb.size, &back, &meta2, NULL, &has_optim, err, sizeof err))
        fail_msg("%s", err);
    assert_string_equal(back.arch, arch);
    assert_int_equal(back.n_params, net.n_params);
    assert_memory_equal(back.params, net.params, net.n_params * 4);
    msgpack_sbuffer_destroy(&sb);
    icn_net_free(&net);
    return back;
}

static void test_a_model_file_of_resnet8_gn_loads_back_as_resnet8_gn(void **state) {
    (void)state;
    icn_net back = model_round_trip("resnet8-gn", perturb_norms);
    assert_int_equal(back.layer[back.n_layers - 3].kind, ICN_LAYER_GN);
    icn_net_free(&back);
}

/* ---- the ResNet without normalization (Fixup) ---- */

static void test_resnet8_fixup_is_resnet8_without_normalization_or_state(void **state) {
    (void)state;
    icn_net bn, fx;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_net_build(&bn, "resnet8", 28, 28, 1, 10, err, sizeof err), 0);
    assert_int_equal(icn_net_build(&fx, "resnet8-fixup", 28, 28, 1, 10, err, sizeof err), 0);
    assert_string_equal(fx.arch, "resnet8-fixup");
    assert_int_equal(fx.n_layers, bn.n_layers - 1); /* no BN-ReLU before the pooling */
    assert_int_equal(fx.n_params, fx.n_trainable);  /* no state */
    size_t norm_params = 2 * 64; /* the last BN's gamma and beta */
    for (int i = 0; i < fx.n_layers - 2; i++) {
        const icn_layer *l = &fx.layer[i], *b = &bn.layer[i];
        assert_int_equal(l->kind, b->kind);
        assert_int_equal(l->relu, i == 0 || i == fx.n_layers - 3); /* after the stem and the last block */
        if (l->kind != ICN_LAYER_BLOCK) continue;
        assert_int_equal(l->block.norm, ICN_NORM_NONE);
        assert_int_equal(l->block.n_state, 0);
        assert_int_equal(l->block.gb1, l->block.w1); /* no gamma and beta */
        assert_int_equal(l->block.gb2, l->block.w2);
        assert_int_equal(l->block.n_params, l->block.fx + ICN_FIXUP_SCALARS);
        assert_int_equal(l->block.wp - l->block.w2, b->block.wp - b->block.w2); /* the same convolutions */
        norm_params += 2 * (size_t)(b->block.c + b->block.oc);
    }
    assert_int_equal(fx.layer[fx.n_layers - 2].kind, ICN_LAYER_POOL);
    assert_int_equal(fx.n_trainable, bn.n_trainable - norm_params + 3 * ICN_FIXUP_SCALARS);
    icn_net_free(&bn), icn_net_free(&fx);
    const char *bad[] = {"resnet20-fixupx", "resnet8-Fixup", "resnet8fixup", "resnet8-fixup-gn", "resnet10-fixup",
                         "resnet8-gn-fixup", "resnet-fixup"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(icn_net_build(&fx, bad[i], 28, 28, 1, 10, err, sizeof err), -1);
        assert_non_null(strstr(err, bad[i]));
        assert_non_null(strstr(err, "-fixup"));
    }
}

/* Zhang et al. 2019, Sec. 3: the linear layer and each branch's last convolution zero, the scalar
 * biases 0 and multipliers 1, each branch's first convolution N(0, 2 / fan_out) times L^(-1/2)
 * (L = 9 blocks in resnet20); so every block starts as its shortcut. */
static void test_resnet20_fixup_starts_as_fixup_says(void **state) {
    (void)state;
    icn_net net;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_net_build(&net, "resnet20-fixup", 28, 28, 1, 10, err, sizeof err), 0);
    icn_net_init(&net, 4);
    int blocks = 0;
    for (int i = 0; i < net.n_layers; i++) {
        const icn_layer *l = &net.layer[i];
        const float *p = net.params + l->w_off;
        if (l->kind == ICN_LAYER_LINEAR)
            for (size_t k = 0; k < l->in_size * l->out_size + l->out_size; k++) assert_true(p[k] == 0.0f);
        if (l->kind != ICN_LAYER_BLOCK) continue;
        const icn_block_shape *b = &l->block;
        blocks++;
        for (size_t k = b->w2; k < b->wp; k++) assert_true(p[k] == 0.0f);
        const float scalars[ICN_FIXUP_SCALARS] = {0, 0, 0, 1, 0};
        assert_memory_equal(p + b->fx, scalars, sizeof scalars);
        double s2 = 0, m = 0;
        const size_t n = b->gb2 - b->w1;
        for (size_t k = b->w1; k < b->gb2; k++) s2 += (double)p[k] * p[k], m += p[k];
        const double want = sqrt(2.0 / (9.0 * b->oc)) / 3.0, sd = sqrt(s2 / (double)n); /* L = 9 */
        if (fabs(sd / want - 1) > 6 / sqrt(2.0 * (double)n) || fabs(m / (double)n) > 6 * want / sqrt((double)n))
            fail_msg("block %d: conv1's weights have mean %g and deviation %g, want 0 and %g", i, m / (double)n, sd, want);
    }
    assert_int_equal(blocks, 9);
    /* the blocks are their shortcuts: an identity block's output is its input, the logits 0 */
    enum { N = 3 };
    float *x = randn(N * 28 * 28, 1);
    icn_work *w = icn_work_new(&net, N);
    const float *z = icn_forward(&net, w, x, N);
    for (int k = 0; k < N * 10; k++) assert_true(z[k] == 0.0f);
    for (int i = 1; i <= 3; i++) /* stage 1's blocks (identity shortcuts) */
        assert_memory_equal(w->act[i], w->act[i - 1], N * net.layer[i].out_size * sizeof(float));
    icn_work_free(w);
    icn_net_free(&net);
    free(x);
}

static void perturb_fixup(icn_net *net) { fixup_perturb(net, &rng); }

/* Every parameter and the input, the five scalars and conv2 (whose gradient carries the
 * multiplier) also on their own, with either shortcut, on both convolution paths. */
static void test_a_fixup_block_has_exact_gradients_with_either_shortcut_on_both_paths(void **state) {
    (void)state;
    for (int path = 0; path < 2; path++) {
        icn_conv_use_path(path ? ICN_CONV_REFERENCE : ICN_CONV_FAST);
        run_block_case_norm(5, 4, 4, 4, 1, 1, ICN_NORM_NONE); /* identity */
        run_block_case_norm(5, 6, 4, 16, 2, 1, ICN_NORM_NONE); /* projection, odd height 5 -> 3 */
        run_block_case_norm(5, 6, 4, 16, 2, 0, ICN_NORM_NONE);
    }
    icn_conv_use_path(ICN_CONV_FAST);
}

/* Every parameter (the scalar biases and multipliers too, moved off their initial values) and the
 * input, in training and in inference, on the reference convolutions and on the fast ones. */
static void test_resnet8_fixup_s_gradients_match_finite_differences_on_both_paths(void **state) {
    (void)state;
    for (int path = 0; path < 2; path++) {
        icn_conv_use_path(path ? ICN_CONV_REFERENCE : ICN_CONV_FAST);
        check_net_gradients("resnet8-fixup", 1, perturb_fixup);
        check_net_gradients("resnet8-fixup", 0, perturb_fixup);
    }
    icn_conv_use_path(ICN_CONV_FAST);
}

static void test_a_model_file_of_resnet8_fixup_loads_back_as_resnet8_fixup(void **state) {
    (void)state;
    icn_net back = model_round_trip("resnet8-fixup", perturb_fixup);
    assert_int_equal(back.layer[back.n_layers - 3].block.norm, ICN_NORM_NONE);
    icn_net_free(&back);
}

int main(void) {
    icn_rng_seed(&rng, 2018);
    icn_runtime_init(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_groups_are_the_largest_divisor_of_the_channels_up_to_8),
        cmocka_unit_test(test_group_norm_is_wu_and_he_s_per_image_and_group_normalization),
        cmocka_unit_test(test_group_norm_s_input_gamma_and_beta_gradients_match_finite_differences),
        cmocka_unit_test(test_group_norm_gives_the_same_bits_on_one_and_two_threads),
        cmocka_unit_test(test_a_group_norm_block_has_exact_gradients_with_either_shortcut),
        cmocka_unit_test(test_resnet8_gn_is_resnet8_with_group_norm_and_no_state),
        cmocka_unit_test(test_resnet8_gn_s_training_gradients_match_finite_differences),
        cmocka_unit_test(test_resnet8_gn_s_inference_gradients_match_finite_differences),
        cmocka_unit_test(test_an_image_s_output_does_not_depend_on_the_rest_of_its_batch),
        cmocka_unit_test(test_a_split_step_is_the_mixed_step_without_batch_statistics),
        cmocka_unit_test(test_a_model_file_of_resnet8_gn_loads_back_as_resnet8_gn),
        cmocka_unit_test(test_resnet8_fixup_is_resnet8_without_normalization_or_state),
        cmocka_unit_test(test_resnet20_fixup_starts_as_fixup_says),
        cmocka_unit_test(test_a_fixup_block_has_exact_gradients_with_either_shortcut_on_both_paths),
        cmocka_unit_test(test_resnet8_fixup_s_gradients_match_finite_differences_on_both_paths),
        cmocka_unit_test(test_a_model_file_of_resnet8_fixup_loads_back_as_resnet8_fixup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
