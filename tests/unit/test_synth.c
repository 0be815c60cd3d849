/* Synthesis: the target logit goes up, samples stay in range, stop rules hold, runs repeat. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "runtime.h"
#include "synth.h"

enum { H = 12, W = 12, K = 3, N = 6 };

static icn_net net;

static int setup(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    icn_runtime_init(1);
    if (icn_net_build(&net, "c4-c8", H, W, 1, K, err, sizeof err)) return -1;
    icn_net_init(&net, 3);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    icn_net_free(&net);
    return 0;
}

/* mean logit of class k over n images */
static double mean_logit(icn_synth *s, const float *x, int n, int k) {
    const float *z = icn_forward(&net, s->work, x, n);
    double m = 0;
    for (int i = 0; i < n; i++) m += z[i * K + k];
    return m / n;
}

static void run(icn_synth_opts *o, int k, uint64_t seed, float *x, icn_provenance *prov, int *reached) {
    icn_synth *s = icn_synth_new(&net, N);
    *reached = icn_synthesize(s, &net, k, N, o, seed, 0, x, prov, 7, 42);
    icn_synth_free(s);
}

static void test_synthesis_raises_the_class_logit_and_stays_in_range(void **state) {
    (void)state;
    icn_synth_opts o;
    icn_synth_opts_default(&o);
    o.stop = ICN_STOP_FIXED;
    o.max_steps = 30;
    float x[N * H * W], noise[N * H * W];
    icn_provenance prov[N];
    int reached;
    run(&o, 1, 5, x, prov, &reached);
    icn_synth_opts raw = o;
    raw.noise_only = 1;
    run(&raw, 1, 5, noise, prov, &reached); /* the same starting points */
    icn_synth *s = icn_synth_new(&net, N);
    double before = mean_logit(s, noise, N, 1), after = mean_logit(s, x, N, 1);
    icn_synth_free(s);
    print_message("logit before %.4f after %.4f\n", before, after);
    assert_true(after > before + 0.3);
    for (int i = 0; i < N * H * W; i++) assert_true(x[i] >= -1.0f && x[i] <= 1.0f);
    run(&o, 1, 5, x, prov, &reached);
    for (int i = 0; i < N; i++) {
        assert_int_equal(prov[i].steps, 30); /* option 3: always max_steps */
        assert_int_equal(prov[i].generation, 7);
        assert_int_equal(prov[i].producer, 42);
    }
}

static void test_the_threshold_stop_rule_stops_at_the_threshold(void **state) {
    (void)state;
    icn_synth_opts o;
    icn_synth_opts_default(&o);
    o.threshold = 0.5;
    o.max_steps = 200;
    o.lr = 0.05;
    float x[N * H * W];
    icn_provenance prov[N];
    int reached;
    run(&o, 2, 9, x, prov, &reached);
    int counted = 0;
    for (int i = 0; i < N; i++) {
        if (prov[i].reached) assert_true(prov[i].logit > 0.5f);
        else assert_int_equal(prov[i].steps, 200);
        counted += prov[i].reached;
    }
    assert_int_equal(counted, reached);
    assert_true(reached > 0);
    /* the final logit recorded is the logit of the image returned */
    icn_synth *s = icn_synth_new(&net, N);
    const float *z = icn_forward(&net, s->work, x, N);
    for (int i = 0; i < N; i++) assert_float_equal(z[i * K + 2], prov[i].logit, 1e-4);
    icn_synth_free(s);
}

static void test_noise_only_gives_the_reference_distribution(void **state) {
    (void)state;
    icn_synth_opts o;
    icn_synth_opts_default(&o);
    o.noise_only = 1;
    float x[N * H * W];
    icn_provenance prov[N];
    int reached;
    run(&o, 0, 11, x, prov, &reached);
    double m = 0, v = 0;
    for (int i = 0; i < N * H * W; i++) m += x[i];
    m /= N * H * W;
    for (int i = 0; i < N * H * W; i++) v += (x[i] - m) * (x[i] - m);
    v /= N * H * W;
    assert_true(fabs(m) < 0.05);
    assert_true(fabs(sqrt(v) - 0.3) < 0.03); /* N(0, 0.3^2), barely clamped */
    for (int i = 0; i < N; i++) assert_int_equal(prov[i].steps, 0);
}

static void test_synthesis_repeats_for_a_seed_and_changes_with_it(void **state) {
    (void)state;
    icn_synth_opts o;
    icn_synth_opts_default(&o);
    o.langevin = 1;
    o.max_steps = 20;
    float a[N * H * W], b[N * H * W], c[N * H * W];
    icn_provenance prov[N];
    int reached;
    run(&o, 0, 1, a, prov, &reached);
    run(&o, 0, 1, b, prov, &reached);
    run(&o, 0, 2, c, prov, &reached);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    assert_true(icn_synth_seed(1, 2, 3, 4, 5) != icn_synth_seed(1, 2, 3, 5, 4));
}

static void test_the_positive_stop_rule_stops_when_the_class_wins(void **state) {
    (void)state;
    icn_synth_opts o;
    icn_synth_opts_default(&o);
    o.stop = ICN_STOP_POSITIVE;
    o.max_steps = 300;
    o.lr = 0.05;
    float x[N * H * W];
    icn_provenance prov[N];
    int reached;
    run(&o, 0, 4, x, prov, &reached);
    icn_synth *s = icn_synth_new(&net, N);
    const float *z = icn_forward(&net, s->work, x, N);
    for (int i = 0; i < N; i++)
        if (prov[i].reached) assert_int_equal(icn_argmax(z + i * K, K), 0);
    icn_synth_free(s);
    assert_true(reached > 0);
}

/* Each sample depends only on (seed, generation, class, index, producer): the same samples come
 * out whatever the batch size (to the last bits of sgemm, whose blocking follows the batch),
 * and a run that starts at index 3 makes samples 3..; the same batch size repeats bit for bit. */
static void test_a_sample_does_not_depend_on_the_batch_it_is_made_in(void **state) {
    (void)state;
    enum { M = 9 };
    icn_synth_opts o;
    icn_synth_opts_default(&o);
    o.langevin = 1;
    o.threshold = 0.3;
    o.max_steps = 40;
    o.lr = 0.05;
    static float x[4][M * H * W];
    icn_provenance p[4][M];
    const int batches[3] = {M, 4, 1};
    for (int b = 0; b < 3; b++) {
        icn_synth *s = icn_synth_new(&net, batches[b]);
        icn_synthesize(s, &net, 1, M, &o, 17, 0, x[b], p[b], 7, 42);
        icn_synth_free(s);
    }
    icn_synth *s = icn_synth_new(&net, 2);
    icn_synthesize(s, &net, 1, M - 3, &o, 17, 3, x[3], p[3], 7, 42);
    icn_synth_free(s);
    int steps_differ = 0;
    for (int i = 0; i < M; i++) steps_differ |= p[0][i].steps != p[0][0].steps;
    assert_true(steps_differ); /* the samples stop at different steps: the refill is exercised */
    double worst = 0;
    for (int b = 1; b < 4; b++) {
        int first = b == 3 ? 3 : 0;
        for (int i = first; i < M; i++) {
            assert_int_equal(p[0][i].steps, p[b][i - first].steps);
            assert_int_equal(p[0][i].reached, p[b][i - first].reached);
            assert_float_equal(p[0][i].logit, p[b][i - first].logit, 1e-4);
        }
        for (int j = first * H * W; j < M * H * W; j++) {
            double e = fabs(x[0][j] - x[b][j - first * H * W]);
            worst = e > worst ? e : worst;
        }
    }
    print_message("largest difference across batch sizes %.2g\n", worst);
    assert_true(worst < 1e-4);
    icn_synth *r = icn_synth_new(&net, 4);
    icn_synthesize(r, &net, 1, M, &o, 17, 0, x[2], p[2], 7, 42);
    icn_synth_free(r);
    assert_memory_equal(x[1], x[2], sizeof x[1]); /* batch 4 again: bit for bit */
    icn_synthesize(s = icn_synth_new(&net, M), &net, 1, M, &o, 18, 0, x[1], p[1], 7, 42);
    icn_synth_free(s);
    assert_memory_not_equal(x[0], x[1], sizeof x[0]); /* another seed, other samples */
}

/* A finished sample leaves the batch at once and a fresh one takes its slot: every image of
 * every pass is a sample still moving (rows = sum of steps + 1), and passes only run short
 * once no fresh sample is left (at most the last samples' steps + 1 such passes). */
static void test_a_finished_sample_s_place_goes_to_a_fresh_one(void **state) {
    (void)state;
    enum { M = 30, B = 5 };
    icn_synth_opts o;
    icn_synth_opts_default(&o);
    o.threshold = 0.5;
    o.max_steps = 20;
    o.lr = 0.05;
    static float x[M * H * W];
    icn_provenance p[M];
    icn_synth *s = icn_synth_new(&net, B);
    int reached = icn_synthesize(s, &net, 2, M, &o, 5, 0, x, p, 7, 42);
    int64_t rows = 0, max_steps = 0, counted = 0;
    for (int i = 0; i < M; i++) {
        rows += p[i].steps + 1;
        if (p[i].steps > max_steps) max_steps = p[i].steps;
        counted += p[i].reached;
        if (p[i].reached) assert_true(p[i].logit > 0.5f);
        else assert_int_equal(p[i].steps, 20);
    }
    print_message("%lld passes, %lld rows, sum of steps + 1 = %lld, reached %d/%d\n", (long long)s->passes,
                  (long long)s->rows, (long long)rows, reached, M);
    assert_int_equal(counted, reached);
    assert_true(reached > 0 && reached < M);
    assert_int_equal(s->rows, rows);
    assert_true(s->passes <= (rows + B - 1) / B + max_steps + 1);
    /* without refill, each batch of B would run for its slowest sample's steps */
    int64_t unrefilled = 0;
    for (int b = 0; b < M; b += B) {
        int worst = 0;
        for (int i = b; i < b + B; i++) worst = p[i].steps > worst ? p[i].steps : worst;
        unrefilled += worst + 1;
    }
    assert_true(s->passes < unrefilled);
    icn_synth_free(s);
}

static int third_pass(void *ctx) { return ++*(int *)ctx >= 3; }

/* The interrupt is asked after every forward and every backward pass; when it says so, the
 * call ends at once with -1: asked for the third time after the second forward pass. */
static void test_an_interrupt_ends_the_call_at_once(void **state) {
    (void)state;
    icn_synth_opts o;
    icn_synth_opts_default(&o);
    o.stop = ICN_STOP_FIXED;
    o.max_steps = 20;
    static float x[N * H * W];
    icn_provenance p[N];
    int asked = 0;
    icn_synth *s = icn_synth_new(&net, N);
    s->interrupt = third_pass, s->interrupt_ctx = &asked;
    assert_int_equal(icn_synthesize(s, &net, 1, N, &o, 3, 0, x, p, 7, 42), -1);
    assert_int_equal(asked, 3);
    assert_int_equal(s->passes, 2);
    s->interrupt = NULL; /* without it, the same call runs to the end */
    assert_true(icn_synthesize(s, &net, 1, N, &o, 3, 0, x, p, 7, 42) >= 0);
    assert_int_equal(s->passes, 2 + 21);
    icn_synth_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synthesis_raises_the_class_logit_and_stays_in_range),
        cmocka_unit_test(test_a_sample_does_not_depend_on_the_batch_it_is_made_in),
        cmocka_unit_test(test_a_finished_sample_s_place_goes_to_a_fresh_one),
        cmocka_unit_test(test_an_interrupt_ends_the_call_at_once),
        cmocka_unit_test(test_the_threshold_stop_rule_stops_at_the_threshold),
        cmocka_unit_test(test_noise_only_gives_the_reference_distribution),
        cmocka_unit_test(test_synthesis_repeats_for_a_seed_and_changes_with_it),
        cmocka_unit_test(test_the_positive_stop_rule_stops_when_the_class_wins),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
