/* Unit tests of train.h: one training step's gradient norm, clipping and the divergence check;
 * evaluation's per-image predictions; keeping the model of lowest validation error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures.h"
#include "snapshot.h"
#include "eval.h"
#include "train.h"
#include "trainer.h"
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
    icn_step_result r = icn_train_step(&net, w, &opt, x, y, NULL, N, 0, ICN_BN_MIXED, &o, 1.0f, dlogits);
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

/* A net of the test's shape, initialised with seed, and random images labelled with its own
 * predictions: it makes no error on them. */
static void net_and_its_data(icn_net *net, uint64_t seed, icn_batch *data) {
    char err[256];
    assert_int_equal(icn_net_build(net, "c4-c6", H, W, C, K, err, sizeof err), 0);
    icn_net_init(net, seed);
    icn_rng rng;
    icn_rng_seed(&rng, 9);
    icn_batch_alloc(data, 40, H, W, C, 1);
    for (int i = 0; i < 40 * H * W * C; i++) data->x[i] = (float)icn_rng_gauss(&rng);
    for (int i = 0; i < 40; i++) data->y[i] = 0;
    icn_work *w = icn_work_new(net, 8);
    icn_eval_result r;
    assert_int_equal(icn_evaluate(net, w, data, &r, err, sizeof err), 0);
    memcpy(data->y, r.pred, 40 * sizeof *data->y);
    icn_eval_result_free(&r);
    icn_work_free(w);
}

/* --keep-best: a point is kept only when strictly better than every earlier one; a resumed
 * run takes the kept model's error as the best so far; a kept model of another run, or
 * validation data the net cannot take, is an error before any training. */
static void test_val_track_keeps_best(void **state) {
    (void)state;
    char err[256];
    icn_net good, other;
    icn_batch val = {0}, unused = {0};
    net_and_its_data(&good, 3, &val);
    net_and_its_data(&other, 4, &unused);
    icn_work *w = icn_work_new(&good, 8);
    icn_eval_result r;
    assert_int_equal(icn_evaluate(&other, w, &val, &r, err, sizeof err), 0);
    assert_true(r.wrong > 0); /* another net disagrees somewhere */
    icn_eval_result_free(&r);

    icn_train_opts o;
    icn_train_opts_default(&o);
    o.val = &val, o.keep_best = tmp_path("best.model"), o.quiet = 1;
    icn_model_meta meta = {.total_steps = 100, .seed = 7, .train_images = 50};
    icn_val_track t;
    o.val = NULL; /* no validation data: every point is nothing */
    assert_int_equal(icn_val_track_begin(&t, &o, &good, w, &meta, err, sizeof err), 0);
    assert_int_equal(icn_val_track_point(&t, &o, &good, w, &meta, 0, err, sizeof err), 0);
    assert_int_equal(access(o.keep_best, F_OK), -1);
    o.val = &val;
    assert_int_equal(icn_val_track_begin(&t, &o, &good, w, &meta, err, sizeof err), 0);
    assert_true(isinf(t.best));
    meta.step = 10;
    assert_int_equal(icn_val_track_point(&t, &o, &other, w, &meta, -1, err, sizeof err), 0);
    double first = t.best;
    assert_true(first > 0 && t.best_step == 10);
    meta.step = 20;
    assert_int_equal(icn_val_track_point(&t, &o, &good, w, &meta, -1, err, sizeof err), 0);
    assert_true(t.best == 0 && t.best_step == 20);
    meta.step = 30; /* equal and worse points keep the step-20 model */
    assert_int_equal(icn_val_track_point(&t, &o, &good, w, &meta, -1, err, sizeof err), 0);
    assert_int_equal(icn_val_track_point(&t, &o, &other, w, &meta, -1, err, sizeof err), 0);
    assert_true(t.best == 0 && t.best_step == 20);
    icn_net kept;
    icn_model_meta km;
    assert_int_equal(icn_model_load(o.keep_best, &kept, &km, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(km.step, 20);
    assert_memory_equal(kept.params, good.params, good.n_params * sizeof(float));
    icn_net_free(&kept);

    meta.step = 40; /* resuming: the kept model's error is the best so far */
    icn_val_track again;
    assert_int_equal(icn_val_track_begin(&again, &o, &other, w, &meta, err, sizeof err), 0);
    assert_true(again.best == 0 && again.best_step == 20);
    meta.seed = 8;
    assert_int_equal(icn_val_track_begin(&again, &o, &other, w, &meta, err, sizeof err), -1);
    assert_non_null(strstr(err, "another run"));
    val.y[5] = K; /* not a class of the net */
    assert_int_equal(icn_val_track_begin(&again, &o, &other, w, &meta, err, sizeof err), -1);
    assert_non_null(strstr(err, "validation data"));

    icn_work_free(w);
    icn_batch_free(&val);
    icn_batch_free(&unused);
    icn_net_free(&good);
    icn_net_free(&other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_norm_and_clipping),
        cmocka_unit_test(test_divergence_check),
        cmocka_unit_test(test_evaluate_predictions),
        cmocka_unit_test(test_val_track_keeps_best),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
