/* bench_conv: each convolution of a net through the fast path and through the im2col + OpenBLAS
 * reference (conv.h), interleaved rep by rep in one process so that both see the
 * same load: GFLOP/s of the forward, backward-data and backward-weights, and their ratio.
 *
 * usage: bench_conv ARCH H W C BATCH [REPS]   (ARCH: mnist, resnet32, ...) */
#include <stdio.h>
#include <stdlib.h>

#include "conv.h"
#include "net.h"
#include "parallel.h"
#include "runtime.h"
#include "util.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp);
    return t[n / 2];
}

static void fill(float *x, size_t n, icn_rng *r) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(icn_rng_uniform(r) - 0.5);
}

/* One shape: times[path][direction] medians over reps. */
static void bench(const icn_conv_shape *s, int n, int reps, double *flop_total, double secs[2]) {
    const size_t in = (size_t)n * s->h * s->w * s->c, out = (size_t)n * s->oh * s->ow * s->oc;
    const size_t nw = (size_t)s->oc * icn_conv_kdim(s);
    float *x = xmalloc(in * 4), *dx = xmalloc(in * 4), *y = xmalloc(out * 4), *dy = xmalloc(out * 4);
    float *w = xmalloc(nw * 4), *dw = xcalloc(nw, 4), *b = xcalloc((size_t)s->oc, 4), *db = xcalloc((size_t)s->oc, 4);
    icn_rng r;
    icn_rng_seed(&r, 1);
    fill(x, in, &r), fill(w, nw, &r), fill(dy, out, &r);
    const icn_conv_opts opts = {.bias = 1, .type = ICN_CONV_F32};
    icn_conv_use_path(ICN_CONV_FAST);
    icn_conv *eng[2] = {icn_conv_new(s, &opts, n), NULL};
    icn_conv_use_path(ICN_CONV_REFERENCE);
    eng[1] = icn_conv_new(s, &opts, n);
    icn_conv_use_path(ICN_CONV_FAST);
    double t[2][3][64];
    if (reps > 64) reps = 64;
    for (int rep = -1; rep < reps; rep++)
        for (int path = 0; path < 2; path++) {
            double t0 = icn_now();
            icn_conv_forward(eng[path], y, x, w, b, n, 0.0f);
            double t1 = icn_now();
            icn_conv_backward(eng[path], dx, 0, NULL, NULL, dy, x, w, n);
            double t2 = icn_now();
            icn_conv_backward(eng[path], NULL, 0, dw, db, dy, x, w, n);
            double t3 = icn_now();
            if (rep >= 0) t[path][0][rep] = t1 - t0, t[path][1][rep] = t2 - t1, t[path][2][rep] = t3 - t2;
        }
    const double flop = 2.0 * (double)out * icn_conv_kdim(s);
    printf("%3dx%-3d %4d->%-4d k%d s%d  ", s->h, s->w, s->c, s->oc, s->k, s->stride);
    for (int d = 0; d < 3; d++) {
        double ref = median(t[1][d], reps), fast = median(t[0][d], reps);
        printf(" %7.1f %7.1f %5.2fx |", flop / fast / 1e9, flop / ref / 1e9, ref / fast);
        secs[0] += fast, secs[1] += ref;
    }
    printf(" %s\n", icn_conv_describe(eng[0]));
    *flop_total += 3 * flop;
    icn_conv_free(eng[0]), icn_conv_free(eng[1]);
    free(x), free(dx), free(y), free(dy), free(w), free(dw), free(b), free(db);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: bench_conv ARCH H W C BATCH [REPS]\n");
        return 2;
    }
    icn_runtime_init(0);
    icn_net net;
    char err[ICN_ERRLEN];
    if (icn_net_build(&net, argv[1], atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), 10, err, sizeof err))
        icn_die(1, "%s", err);
    int n = atoi(argv[5]), reps = argc > 6 ? atoi(argv[6]) : 5;
    printf("%s, batch %d, %d threads, median of %d interleaved reps; GFLOP/s oneDNN, reference, speed-up\n", argv[1], n,
           icn_threads(), reps);
    printf("shape                      forward                 | backward-data           | backward-weights        | oneDNN kernels\n");
    double flop = 0, secs[2] = {0, 0};
    for (int i = 0; i < net.n_layers; i++) {
        const icn_layer *l = &net.layer[i];
        if (l->kind == ICN_LAYER_CONV) bench(&l->conv, n, reps, &flop, secs);
        if (l->kind != ICN_LAYER_BLOCK) continue;
        /* one block per distinct shape is enough: the others repeat it */
        if (i > 0 && net.layer[i - 1].kind == ICN_LAYER_BLOCK && !l->block.proj.k &&
            net.layer[i - 1].block.oc == l->block.oc && !net.layer[i - 1].block.proj.k)
            continue;
        bench(&l->block.conv1, n, reps, &flop, secs);
        if (l->block.proj.k) {
            bench(&l->block.conv2, n, reps, &flop, secs);
            bench(&l->block.proj, n, reps, &flop, secs);
        }
    }
    printf("all shapes above: %.1f GFLOP/s oneDNN, %.1f GFLOP/s reference (%.2fx)\n", flop / secs[0] / 1e9,
           flop / secs[1] / 1e9, secs[1] / secs[0]);
    icn_net_free(&net);
    return 0;
}
