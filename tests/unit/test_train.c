/* Unit tests of train.h: one training step's gradient norm, clipping and the divergence check;
 * evaluation's per-image predictions; keeping the model of lowest validation error; the batch
 * sampler (any step alone, each epoch a permutation); a training run that learns and saves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures.h"
#include "train_fixtures.h"
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

static void test_a_step_reports_its_gradient_norm_and_clips_it(void **state) {
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

static void test_a_diverging_step_is_caught(void **state) {
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
static void test_evaluation_s_predictions_are_each_image_s_argmax(void **state) {
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
static void test_keep_best_keeps_only_a_strictly_better_model(void **state) {
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

/* ------------------------------------------------------------ sampler */

static void test_the_sampler_gives_any_step_s_batch_alone(void **state) {
    (void)state;
    const int64_t n = 37;
    const int B = 5, steps = 40; /* 200 positions: five epochs and a bit, batches straddle epochs */
    icn_sampler fwd, rev;
    icn_sampler_init(&fwd, n, 42);
    icn_sampler_init(&rev, n, 42);
    int32_t a[steps][B], b[steps][B];
    for (int s = 0; s < steps; s++) icn_sampler_batch(&fwd, s, B, a[s]);
    for (int s = steps - 1; s >= 0; s--) icn_sampler_batch(&rev, s, B, b[s]);
    assert_memory_equal(a, b, sizeof a);
    /* a fresh sampler asked for one step alone (what a resumed run does) */
    icn_rng rng;
    icn_rng_seed(&rng, 7);
    for (int t = 0; t < 20; t++) {
        int s = (int)icn_rng_below(&rng, steps);
        icn_sampler one;
        icn_sampler_init(&one, n, 42);
        int32_t c[B];
        icn_sampler_batch(&one, s, B, c);
        assert_memory_equal(c, a[s], sizeof c);
        /* jumping around on one sampler gives the same too */
        icn_sampler_batch(&rev, s, B, c);
        assert_memory_equal(c, a[s], sizeof c);
        icn_sampler_free(&one);
    }
    /* another seed, another order */
    icn_sampler other;
    icn_sampler_init(&other, n, 43);
    int32_t d[B];
    int differ = 0;
    for (int s = 0; s < 8; s++) {
        icn_sampler_batch(&other, s, B, d);
        differ |= memcmp(d, a[s], sizeof d) != 0;
    }
    assert_true(differ);
    icn_sampler_free(&other);
    icn_sampler_free(&fwd);
    icn_sampler_free(&rev);
}

static void test_each_epoch_of_the_sampler_is_a_fresh_permutation(void **state) {
    (void)state;
    const int64_t n = 37;
    const int B = 5, steps = 40;
    icn_sampler s;
    icn_sampler_init(&s, n, 9);
    int32_t *all = xmalloc((size_t)steps * B * sizeof(int32_t));
    for (int k = 0; k < steps; k++) icn_sampler_batch(&s, k, B, all + (size_t)k * B);
    int64_t epochs = (int64_t)steps * B / n;
    assert_true(epochs >= 5);
    int identical_epochs = 0;
    for (int64_t e = 0; e < epochs; e++) {
        int seen[37] = {0};
        for (int64_t i = 0; i < n; i++) {
            int32_t v = all[e * n + i];
            assert_true(v >= 0 && v < n);
            seen[v]++;
        }
        for (int64_t i = 0; i < n; i++) assert_int_equal(seen[i], 1);
        if (e > 0) identical_epochs += !memcmp(all + e * n, all + (e - 1) * n, (size_t)n * sizeof(int32_t));
    }
    assert_int_equal(identical_epochs, 0); /* each epoch is reshuffled */
    /* the first epoch is not the identity (the data is shuffled at all) */
    int identity = 1;
    for (int64_t i = 0; i < n; i++) identity &= all[i] == i;
    assert_false(identity);
    free(all);
    icn_sampler_free(&s);
    /* a batch larger than the data set wraps over several epochs and stays in range */
    icn_sampler tiny;
    icn_sampler_init(&tiny, 3, 1);
    int32_t big[10];
    icn_sampler_batch(&tiny, 2, 10, big);
    for (int i = 0; i < 10; i++) assert_true(big[i] >= 0 && big[i] < 3);
    icn_sampler_free(&tiny);
}

/* ------------------------------------------------------------ training */

static void test_training_learns_an_easy_problem_and_saves_the_model(void **state) {
    (void)state;
    icn_batch data;
    make_data(&data, 48, 1);
    icn_net net;
    make_net(&net, 17);
    icn_train_opts o;
    opts_for(&o, tmp_path("learn.icn"), NULL);
    o.steps = 60;
    train_ok(&net, &data, &o);
    icn_work *w = icn_work_new(&net, 16);
    icn_eval_result r;
    char err[ICN_ERRLEN] = "";
    if (icn_evaluate(&net, w, &data, &r, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(r.n, 48);
    assert_true(r.wrong <= 4); /* an easy problem: a trained net gets (nearly) all right */
    int64_t sum = 0;
    for (int i = 0; i < TCLASSES * TCLASSES; i++) sum += r.confusion[i];
    assert_int_equal(sum, 48);
    icn_eval_result_free(&r);
    icn_work_free(w);
    /* the output model is the trained net, with the run's metadata and no optimizer state */
    icn_net loaded;
    icn_model_meta meta;
    icn_optim opt;
    icn_optim_sgd(&opt, net.n_params, 0.9f, 0);
    int has = -1;
    if (icn_model_load(o.out, &loaded, &meta, &opt, &has, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(has, 0);
    assert_net_equal(&net, &loaded);
    assert_true(meta.step == 60 && meta.total_steps == 60 && meta.seed == 17 && meta.train_images == 48);
    assert_int_equal(meta.head, ICN_HEAD_SOFTMAX);
    icn_optim_free(&opt);
    icn_net_free(&loaded);
    icn_net_free(&net);

    /* a label outside the classes, or images of the wrong shape, are refused */
    make_net(&net, 17);
    data.y[5] = TCLASSES;
    assert_int_not_equal(icn_train_classifier(&net, &data, &o, err, sizeof err), 0);
    assert_non_null(strstr(err, "label"));
    icn_net_free(&net);
    icn_batch_free(&data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_step_reports_its_gradient_norm_and_clips_it),
        cmocka_unit_test(test_a_diverging_step_is_caught),
        cmocka_unit_test(test_evaluation_s_predictions_are_each_image_s_argmax),
        cmocka_unit_test(test_keep_best_keeps_only_a_strictly_better_model),
        cmocka_unit_test(test_the_sampler_gives_any_step_s_batch_alone),
        cmocka_unit_test(test_each_epoch_of_the_sampler_is_a_fresh_permutation),
        cmocka_unit_test(test_training_learns_an_easy_problem_and_saves_the_model),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
