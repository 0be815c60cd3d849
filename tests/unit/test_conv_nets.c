/* The fast path against the reference through whole networks: every built-in architecture and a
 * spread of stacks (and resnet8-gn, group normalization, and resnet8-fixup, none: its zero-initialised
 * parameters moved off zero first), work spaces made for batches of 1, 2, 7, 8, 9, 33 and 64 and run on that
 * batch and on smaller ones, on 1 and 2 threads. Synthesis (its input gradient, and a real run of
 * icn_synthesize whose last pass holds one sample) and a training step's parameter gradients
 * agree within a tolerance. Every split of a batch into chunks is met here: a thread's share of
 * n images is cut into chunks of 2^j, so these batch sizes and thread counts give chunks of every
 * size from 1 to 32. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "net.h"
#include "runtime.h"
#include "synth.h"
#include "util.h"

enum { CLASSES = 10 };

static icn_rng rng;

#include "fixup_perturb.h"

static float *randn(size_t n, float scale) {
    float *a = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = (float)(icn_rng_gauss(&rng) * scale);
    return a;
}

typedef struct {
    const char *arch;
    int h, w, c;
} arch_case;

static const arch_case archs[] = {
    {"mnist", 28, 28, 1},    {"resnet8", 28, 28, 1}, {"resnet20", 16, 16, 3},    {"c8", 28, 28, 1},
    {"c16-c32", 28, 28, 1}, {"c32-c64", 28, 28, 1}, {"c8-c16-c32", 28, 28, 1}, {"c64-c128", 20, 20, 3},
    {"resnet8-gn", 28, 28, 1}, {"resnet8-fixup", 28, 28, 1},
};
static const int batches[] = {1, 2, 7, 8, 9, 33, 64};

/* |a - b| / |b| in the 2-norm. The two paths round differently, so a unit whose pre-activation is
 * within rounding of 0 can take the other side of its (Leaky)ReLU on one of them, and the
 * gradients behind it differ there: isolated (most comparisons agree to 1e-5, the worst seen
 * here to 8e-3), so the bound is on the norm of the whole and 2e-2 for gradients. A chunk of
 * images computed wrongly or not at all moves the norm by 1/sqrt(n) or more (0.125 at n = 64). */
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 1e-24;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / den);
}

static void agree(const char *what, const arch_case *a, int max_batch, int n, const float *fast, const float *ref,
                  size_t count, double tol) {
    double e = rel_err(fast, ref, count);
    if (getenv("SHOW")) print_message("%s %s b%d/%d t%d: %.3g\n", what, a->arch, n, max_batch, icn_threads(), e);
    if (!(e < tol))
        fail_msg("%s, %s on %dx%dx%d, batch %d of %d, %d threads: relative error %.3g", what, a->arch, a->h, a->w, a->c,
                 n, max_batch, icn_threads(), e);
}

static icn_work *work_on(icn_conv_path p, const icn_net *net, int max_batch) {
    icn_conv_use_path(p);
    icn_work *w = icn_work_new(net, max_batch);
    icn_conv_use_path(ICN_CONV_FAST);
    return w;
}

/* Synthesis's input gradient (inference mode) and a training step's gradients for a batch of n. */
static void compare_passes(const arch_case *a, const icn_net *net, icn_work *wf, icn_work *wr, int max_batch, int n) {
    const size_t d = icn_net_input_size(net), lg = (size_t)n * CLASSES;
    float *x = randn((size_t)n * d, 0.5f), *dlogits = randn(lg, 1), *dxf = xmalloc((size_t)n * d * 4);
    float *dxr = xmalloc((size_t)n * d * 4), *zf = xmalloc(lg * 4);
    for (int training = 0; training <= 1; training++) {
        wf->training = wr->training = training;
        memcpy(zf, icn_forward(net, wf, x, n), lg * 4);
        const float *zr = icn_forward(net, wr, x, n);
        agree(training ? "training logits" : "logits", a, max_batch, n, zf, zr, lg, 1e-4);
        icn_backward(net, wf, dlogits, training, training ? NULL : dxf);
        icn_backward(net, wr, dlogits, training, training ? NULL : dxr);
        if (training) agree("a training step's gradient", a, max_batch, n, wf->grad, wr->grad, net->n_trainable, 2e-2);
        else agree("synthesis's input gradient", a, max_batch, n, dxf, dxr, (size_t)n * d, 2e-2);
    }
    free(x), free(dlogits), free(dxf), free(dxr), free(zf);
}

/* icn_synthesize on both paths: 2 full batches then one sample alone, plain gradient steps (Adam's
 * first step is the gradient's sign, which would magnify differences in near-zero gradients).
 * What is compared is the samples' movement from their start (the same noise on both paths). */
static void compare_synthesis(const arch_case *a, const icn_net *net, int batch) {
    icn_synth_opts o;
    icn_synth_opts_default(&o);
    o.stop = ICN_STOP_FIXED, o.adam = 0;
    const int64_t count = 2 * (int64_t)batch + 1;
    const size_t d = icn_net_input_size(net), all = (size_t)count * d;
    float *x[3];
    icn_provenance *prov = xcalloc((size_t)count, sizeof *prov);
    for (int p = 0; p < 3; p++) { /* fast, reference, and the start */
        icn_conv_use_path(p == 1 ? ICN_CONV_REFERENCE : ICN_CONV_FAST);
        icn_synth *s = icn_synth_new(net, batch);
        icn_conv_use_path(ICN_CONV_FAST);
        o.max_steps = p == 2 ? 0 : 3;
        x[p] = xmalloc(all * 4);
        assert_true(icn_synthesize(s, net, 3, count, &o, 7, 0, x[p], prov, 1, 1) >= 0);
        icn_synth_free(s);
    }
    for (size_t i = 0; i < all; i++) x[0][i] -= x[2][i], x[1][i] -= x[2][i];
    agree("synthesized samples' movement", a, batch, (int)count, x[0], x[1], all, 2e-2);
    free(x[0]), free(x[1]), free(x[2]), free(prov);
}

static void run_arch(const arch_case *a) {
    char err[ICN_ERRLEN];
    icn_net net;
    for (int threads = 1; threads <= 2; threads++) {
        icn_runtime_init(threads);
        if (icn_net_build(&net, a->arch, a->h, a->w, a->c, CLASSES, err, sizeof err)) fail_msg("%s", err);
        icn_net_init(&net, 5);
        if (strstr(a->arch, "-fixup")) fixup_perturb(&net, &rng); /* else its gradients start mostly 0 */
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
            const int max_batch = batches[b];
            icn_work *wf = work_on(ICN_CONV_FAST, &net, max_batch), *wr = work_on(ICN_CONV_REFERENCE, &net, max_batch);
            int last = 0;
            for (int n = max_batch; n >= 1; n = n > 2 ? (n + 1) / 2 - (n == max_batch ? 0 : 1) : n - 1)
                if (n != last) compare_passes(a, &net, wf, wr, max_batch, n), last = n;
            icn_work_free(wf), icn_work_free(wr);
            if (max_batch == 7 || max_batch == 9) compare_synthesis(a, &net, max_batch);
        }
        icn_net_free(&net);
    }
}

static void test_the_paper_s_mnist_net_agrees_on_both_paths(void **state) { (void)state; run_arch(&archs[0]); }
static void test_resnet8_agrees_on_both_paths(void **state) { (void)state; run_arch(&archs[1]); }
static void test_resnet20_agrees_on_both_paths(void **state) { (void)state; run_arch(&archs[2]); }
static void test_stacks_of_blocks_agree_on_both_paths(void **state) {
    (void)state;
    for (size_t i = 3; i < 8; i++) run_arch(&archs[i]);
}
static void test_resnet8_gn_agrees_on_both_paths(void **state) { (void)state; run_arch(&archs[8]); }
static void test_resnet8_fixup_agrees_on_both_paths(void **state) { (void)state; run_arch(&archs[9]); }

int main(void) {
    icn_rng_seed(&rng, 24);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_paper_s_mnist_net_agrees_on_both_paths),
        cmocka_unit_test(test_resnet8_agrees_on_both_paths),
        cmocka_unit_test(test_resnet20_agrees_on_both_paths),
        cmocka_unit_test(test_stacks_of_blocks_agree_on_both_paths),
        cmocka_unit_test(test_resnet8_gn_agrees_on_both_paths),
        cmocka_unit_test(test_resnet8_fixup_agrees_on_both_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
