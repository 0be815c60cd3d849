/* Unit tests of train.h: one training step's gradient norm, clipping and the divergence check;
 * evaluation's per-image predictions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"
#include "util.h"

enum { N = 6, H = 8, W = 8, C = 1, K = 3 };

/* One SGD step (no momentum, lr 1) from the same initial net with clip_grad = clip; returns the
 * step's result and the parameter change in delta [n_params]. */
static icn_step_result step_with_clip(double clip, float *delta, size_t *n_params) {
    char err[256];
    icn_net net;
    assert_int_equal(icn_net_build(&net, "c4-c6", H, W, C, K, err, sizeof err), 0);
    icn_net_init(&net, 7);
    float *before = xmalloc(net.n_params * sizeof(float));
    memcpy(before, net.params, net.n_params * sizeof(float));
    icn_work *w = icn_work_new(&net, N);
    icn_optim opt;
    icn_optim_sgd(&opt, net.n_params, 0, 0);
    icn_train_opts o;
    icn_train_opts_default(&o);
    o.clip_grad = clip;
    icn_rng rng;
    icn_rng_seed(&rng, 3);
    float x[N * H * W * C], dlogits[N * K];
    int32_t y[N];
    for (int i = 0; i < N * H * W * C; i++) x[i] = 3.0f * (float)icn_rng_gauss(&rng);
    for (int i = 0; i < N; i++) y[i] = i % K;
    icn_step_result r = icn_train_step(&net, w, &opt, x, y, NULL, N, &o, 1.0f, dlogits);
    for (size_t i = 0; i < net.n_params; i++) delta[i] = before[i] - net.params[i];
    *n_params = net.n_params;
    free(before);
    icn_optim_free(&opt);
    icn_work_free(w);
    icn_net_free(&net);
    return r;
}

static double norm(const float *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)v[i] * v[i];
    return sqrt(s);
}

static void test_grad_norm_and_clipping(void **state) {
    (void)state;
    float *full = xmalloc(4096 * 64 * sizeof(float)), *clipped = xmalloc(4096 * 64 * sizeof(float));
    size_t n;
    icn_step_result a = step_with_clip(0, full, &n);
    assert_int_equal(a.clipped, 0);
    assert_true(n <= 4096 * 64);
    /* with lr 1 and plain SGD the parameter change is the gradient itself */
    assert_true(a.grad_norm > 0);
    assert_true(fabs(norm(full, n) - a.grad_norm) < 1e-4 * a.grad_norm);
    /* a clip above the norm changes nothing */
    assert_int_equal(step_with_clip(a.grad_norm * 2, clipped, &n).clipped, 0);
    assert_memory_equal(full, clipped, n * sizeof(float));
    /* a clip below it scales the step to the clip's length, same direction */
    double clip = a.grad_norm / 4;
    icn_step_result b = step_with_clip(clip, clipped, &n);
    assert_true(fabs(b.grad_norm - a.grad_norm) < 1e-9 * a.grad_norm); /* reported before clipping */
    assert_int_equal(b.clipped, 1);
    assert_true(fabs(norm(clipped, n) - clip) < 1e-4 * clip);
    for (size_t i = 0; i < n; i++) assert_true(fabs(clipped[i] - full[i] / 4) <= 1e-6 + 1e-4 * fabs(full[i]));
    free(full);
    free(clipped);
}

static void test_divergence_check(void **state) {
    (void)state;
    char err[256] = "";
    assert_int_equal(icn_check_diverged(5, (icn_step_result){2.3, 1.0, 0}, err, sizeof err), 0);
    assert_int_equal(icn_check_diverged(5, (icn_step_result){NAN, 1.0, 0}, err, sizeof err), -1);
    assert_non_null(strstr(err, "step 5"));
    assert_int_equal(icn_check_diverged(9, (icn_step_result){1e31, 4e20, 0}, err, sizeof err), -1);
    assert_non_null(strstr(err, "diverged"));
    assert_int_equal(icn_check_diverged(9, (icn_step_result){INFINITY, 0, 0}, err, sizeof err), -1);
}

/* icn_evaluate's per-image predictions, over batches that do not divide the data, are the
 * argmax of each image's logits and agree with its confusion matrix. */
static void test_evaluate_predictions(void **state) {
    (void)state;
    enum { M = 21 };
    char err[256];
    icn_net net;
    assert_int_equal(icn_net_build(&net, "c4-c6", H, W, C, K, err, sizeof err), 0);
    icn_net_init(&net, 11);
    icn_rng rng;
    icn_rng_seed(&rng, 5);
    icn_batch data = {0};
    icn_batch_alloc(&data, M, H, W, C, 1);
    for (int i = 0; i < M * H * W * C; i++) data.x[i] = (float)icn_rng_gauss(&rng);
    for (int i = 0; i < M; i++) data.y[i] = i % K;
    icn_work *w = icn_work_new(&net, 8), *one = icn_work_new(&net, 1);
    icn_eval_result r;
    assert_int_equal(icn_evaluate(&net, w, &data, &r, err, sizeof err), 0);
    int64_t wrong = 0;
    for (int i = 0; i < M; i++) {
        const float *z = icn_forward(&net, one, data.x + (size_t)i * H * W * C, 1);
        assert_int_equal(r.pred[i], icn_argmax(z, K));
        assert_true(r.confusion[(size_t)data.y[i] * K + r.pred[i]] > 0);
        wrong += r.pred[i] != data.y[i];
    }
    assert_int_equal(wrong, r.wrong);
    icn_eval_result_free(&r);
    assert_null(r.pred);
    icn_work_free(w);
    icn_work_free(one);
    icn_batch_free(&data);
    icn_net_free(&net);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_norm_and_clipping),
        cmocka_unit_test(test_divergence_check),
        cmocka_unit_test(test_evaluate_predictions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
