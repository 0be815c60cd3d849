/* gradcheck.h: finite-difference gradient checks, shared by the unit tests of layers and networks.
 * Include after cmocka.h and util.h. rng is the test program's generator (seed it in main). */
#ifndef ICN_TEST_GRADCHECK_H
#define ICN_TEST_GRADCHECK_H
#include <math.h>
#include <stddef.h>

static icn_rng rng;

static float *randn(size_t n, float scale) {
    float *a = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = (float)(icn_rng_gauss(&rng) * scale);
    return a;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Compare an analytic gradient with central differences of a scalar objective.
 * The bound is relative to the gradient's scale, tight enough that a wrong index fails.
 * A ReLU kink within +-h makes the central difference meaningless: there the two one-sided
 * differences disagree, and the analytic gradient must match the one on its own side. Such
 * points may be at most a tenth of those checked. */
typedef double (*objective_fn)(void *ctx);

/* The scale errors are relative to: the largest analytic component (at least 1e-3). */
static double grad_scale(const float *analytic, size_t n) {
    double scale = 1e-3;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(analytic[i]));
    return scale;
}

/* The same relative to a given scale (a part of a gradient checked against the whole's). */
static void check_grad_at_scale(const char *what, float *x, const float *analytic, size_t n, objective_fn f,
                                void *ctx, float h, double tol, double scale) {
    const double center = f(ctx);
    size_t stride = n > 400 ? n / 400 : 1, checked = 0, kinks = 0; /* sample big tensors, always including the ends */
    for (size_t i = 0; i < n; i += (i + stride < n || i == n - 1) ? stride : (n - 1 - i)) {
        float saved = x[i];
        x[i] = saved + h;
        double up = f(ctx);
        x[i] = saved - h;
        double down = f(ctx);
        x[i] = saved;
        double numeric = (up - down) / (2.0 * h), err = fabs(numeric - analytic[i]) / scale;
        double right = (up - center) / h, left = (center - down) / h;
        checked++;
        if (err > tol && fabs(right - left) / scale > tol &&
            fmin(fabs(right - analytic[i]), fabs(left - analytic[i])) / scale <= tol)
            kinks++;
        else if (err > tol)
            fail_msg("%s: element %zu analytic %.6g numeric %.6g (rel err %.3g)", what, i, analytic[i], numeric, err);
        if (i == n - 1) break;
    }
    if (kinks * 10 > checked) fail_msg("%s: %zu of %zu points at a kink: choose a smaller h", what, kinks, checked);
}

static void check_grad(const char *what, float *x, const float *analytic, size_t n, objective_fn f, void *ctx,
                       float h, double tol) {
    check_grad_at_scale(what, x, analytic, n, f, ctx, h, tol, grad_scale(analytic, n));
}

#endif
