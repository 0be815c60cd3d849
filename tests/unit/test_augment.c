/* test_augment.c: pad-and-crop and flip (augment.h): each output pixel is the input pixel the
 * draws say, or black padding; the draws stay in range, use every offset and both flips; the
 * same (seed, step) gives the same batch whatever came before; off means untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "data.h"
#include "train.h"

/* Image i: every value distinct and >= 0, so padding (-1) and moves are unmistakable. */
static void tagged(float *x, int n, int h, int w, int c) {
    for (size_t i = 0; i < (size_t)n * h * w * c; i++) x[i] = (float)i;
}

/* What output (r, col, k) must be for draws (dy, dx, flip) of image in. */
static float expected(const float *in, int h, int w, int c, int dy, int dx, int flip, int r, int col, int k) {
    int cc = flip ? w - 1 - col : col; /* the crop is mirrored after it is taken */
    int sr = r + dy, sc = cc + dx;
    if (sr < 0 || sr >= h || sc < 0 || sc >= w) return ICN_PIXEL_MIN;
    return in[((size_t)sr * w + sc) * c + k];
}

static int matches(const float *out, const float *in, int h, int w, int c, int dy, int dx, int flip) {
    for (int r = 0; r < h; r++)
        for (int col = 0; col < w; col++)
            for (int k = 0; k < c; k++)
                if (out[((size_t)r * w + col) * c + k] != expected(in, h, w, c, dy, dx, flip, r, col, k)) return 0;
    return 1;
}

static void test_a_flip_and_a_shift_move_every_pixel_where_they_say(void **state) {
    (void)state;
    const int shapes[3][3] = {{32, 32, 3}, {7, 5, 1}, {4, 9, 2}};
    for (int s = 0; s < 3; s++) {
        int h = shapes[s][0], w = shapes[s][1], c = shapes[s][2];
        size_t d = (size_t)h * w * c;
        float *in = malloc(d * sizeof(float)), *x = malloc(d * sizeof(float));
        tagged(in, 1, h, w, c);
        for (int dy = -5; dy <= 5; dy++)
            for (int dx = -5; dx <= 5; dx++)
                for (int flip = 0; flip < 2; flip++) {
                    memcpy(x, in, d * sizeof(float));
                    icn_augment_image(x, h, w, c, dy, dx, flip);
                    if (!matches(x, in, h, w, c, dy, dx, flip))
                        fail_msg("%dx%dx%d, dy %d dx %d flip %d: wrong pixels", h, w, c, dy, dx, flip);
                }
        free(in);
        free(x);
    }
    /* by hand, 1x3 gray: shift right by one (the crop starts one to the left), then flip */
    float row[3] = {10, 20, 30};
    icn_augment_image(row, 1, 3, 1, 0, -1, 0);
    assert_true(row[0] == -1 && row[1] == 10 && row[2] == 20); /* black is -1, not 0 */
    icn_augment_image(row, 1, 3, 1, 0, 0, 1);
    assert_true(row[0] == 20 && row[1] == 10 && row[2] == -1);
    /* a shift past the image leaves only padding */
    float tiny[4] = {1, 2, 3, 4};
    icn_augment_image(tiny, 2, 2, 1, 0, 3, 0);
    for (int i = 0; i < 4; i++) assert_true(tiny[i] == ICN_PIXEL_MIN);
}

/* Recover each image's draws from the output: exactly one (dy, dx, flip) in range fits. */
static void draws_of(const float *out, const float *in, int n, int h, int w, int c, int pad, int *dy, int *dx,
                     int *flip) {
    size_t d = (size_t)h * w * c;
    for (int i = 0; i < n; i++) {
        int found = 0;
        for (int a = -pad; a <= pad; a++)
            for (int b = -pad; b <= pad; b++)
                for (int f = 0; f < 2; f++)
                    if (matches(out + i * d, in + i * d, h, w, c, a, b, f)) {
                        found++;
                        dy[i] = a, dx[i] = b, flip[i] = f;
                    }
        if (found != 1) fail_msg("image %d: %d transforms with offsets within %d fit", i, found, pad);
    }
}

static void test_each_image_of_a_batch_draws_its_own_flip_and_shift(void **state) {
    (void)state;
    enum { N = 400, H = 8, W = 8, C = 3 };
    size_t d = H * W * C;
    float *in = malloc(N * d * sizeof(float)), *x = malloc(N * d * sizeof(float));
    tagged(in, N, H, W, C);
    memcpy(x, in, N * d * sizeof(float));
    icn_augment_batch(x, N, H, W, C, ICN_AUGMENT_PAD, 1, 7, 123);
    int dy[N], dx[N], flip[N], seen_y[9] = {0}, seen_x[9] = {0}, flips = 0;
    draws_of(x, in, N, H, W, C, ICN_AUGMENT_PAD, dy, dx, flip);
    for (int i = 0; i < N; i++) {
        seen_y[dy[i] + 4]++;
        seen_x[dx[i] + 4]++;
        flips += flip[i];
    }
    for (int a = 0; a < 9; a++) /* each about N/9 */
        if (seen_y[a] < N / 9 / 2 || seen_x[a] < N / 9 / 2)
            fail_msg("offset %d drawn %d times as dy, %d as dx, in %d images", a - 4, seen_y[a], seen_x[a], N);
    assert_true(flips > N / 2 - 60 && flips < N / 2 + 60);
    /* the same (seed, step) again, on its own: the same images */
    float *y = malloc(N * d * sizeof(float));
    memcpy(y, in, N * d * sizeof(float));
    icn_augment_batch(y, N, H, W, C, ICN_AUGMENT_PAD, 1, 7, 123);
    assert_memory_equal(x, y, N * d * sizeof(float));
    /* another step or another seed: other draws */
    memcpy(y, in, N * d * sizeof(float));
    icn_augment_batch(y, N, H, W, C, ICN_AUGMENT_PAD, 1, 7, 124);
    assert_true(memcmp(x, y, N * d * sizeof(float)) != 0);
    memcpy(y, in, N * d * sizeof(float));
    icn_augment_batch(y, N, H, W, C, ICN_AUGMENT_PAD, 1, 8, 123);
    assert_true(memcmp(x, y, N * d * sizeof(float)) != 0);
    /* the first images of a smaller batch get the same draws: image i's depend on (seed, step, i) */
    memcpy(y, in, 5 * d * sizeof(float));
    icn_augment_batch(y, 5, H, W, C, ICN_AUGMENT_PAD, 1, 7, 123);
    assert_memory_equal(x, y, 5 * d * sizeof(float));
    /* flips only, and crops only */
    memcpy(y, in, N * d * sizeof(float));
    icn_augment_batch(y, N, H, W, C, 0, 1, 7, 123);
    draws_of(y, in, N, H, W, C, 0, dy, dx, flip);
    memcpy(y, in, N * d * sizeof(float));
    icn_augment_batch(y, N, H, W, C, 2, 0, 7, 123);
    draws_of(y, in, N, H, W, C, 2, dy, dx, flip);
    for (int i = 0; i < N; i++) assert_int_equal(flip[i], 0);
    /* off: untouched */
    memcpy(y, in, N * d * sizeof(float));
    icn_augment_batch(y, N, H, W, C, 0, 0, 7, 123);
    assert_memory_equal(y, in, N * d * sizeof(float));
    free(in), free(x), free(y);
}

static void test_the_trainer_augments_only_when_asked_and_as_augment_batch_does(void **state) {
    (void)state;
    enum { N = 16, D = 32 * 32 * 3 };
    icn_batch data = {.n = N, .h = 32, .w = 32, .c = 3};
    float *in = malloc(N * D * sizeof(float)), *x = malloc(N * D * sizeof(float)), *y = malloc(N * D * sizeof(float));
    tagged(in, N, 32, 32, 3);
    icn_train_opts o;
    icn_train_opts_default(&o);
    o.seed = 5;
    memcpy(x, in, N * D * sizeof(float));
    icn_train_augment(&o, &data, x, N, 9); /* off by default */
    assert_memory_equal(x, in, N * D * sizeof(float));
    o.augment = 1;
    icn_train_augment(&o, &data, x, N, 9);
    memcpy(y, in, N * D * sizeof(float));
    icn_augment_batch(y, N, 32, 32, 3, 4, 1, 5, 9);
    assert_memory_equal(x, y, N * D * sizeof(float));
    assert_true(memcmp(x, in, N * D * sizeof(float)) != 0);
    free(in), free(x), free(y);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_flip_and_a_shift_move_every_pixel_where_they_say),
        cmocka_unit_test(test_each_image_of_a_batch_draws_its_own_flip_and_shift),
        cmocka_unit_test(test_the_trainer_augments_only_when_asked_and_as_augment_batch_does),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
