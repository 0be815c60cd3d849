/* bench_sgemm: the OpenBLAS sgemm rate for the MNIST net's layer shapes at a batch size,
 * and the training rate it implies: how close icn-classify runs to the machine's limit. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "gemm.h"
#include "net.h"
#include "runtime.h"
#include "util.h"

/* Time `reps` products C[m,n] = A[m,k] B[n,k]^T through icn_gemm (split: 1) or one
 * cblas_sgemm on all OpenBLAS threads (split: 0); returns GFLOP/s. */
static double rate(int m, int n, int k, int reps, int split) {
    float *a = xcalloc((size_t)m * k, 4), *b = xcalloc((size_t)n * k, 4), *c = xcalloc((size_t)m * n, 4);
    double t = 0;
    for (int i = -1; i < reps; i++) {
        if (i == 0) t = icn_now();
        if (split) icn_gemm(0, 1, m, n, k, 1, a, k, b, k, 0, c, n);
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, a, k, b, k, 0, c, n);
    }
    t = icn_now() - t;
    free(a), free(b), free(c);
    return 2.0 * m * n * k * reps / t / 1e9;
}

int main(int argc, char **argv) {
    int batch = argc > 1 ? atoi(argv[1]) : 64;
    icn_runtime_init(0);
    icn_net net;
    char err[ICN_ERRLEN];
    if (icn_net_build(&net, "mnist", 28, 28, 1, 10, err, sizeof err)) icn_die(1, "%s", err);
    double seconds = 0, flops = 0;
    printf("layer  M x N x K              GFLOP/s icn_gemm | one sgemm on %d OpenBLAS threads\n", icn_threads());
    for (int i = 0; i < net.n_layers; i++) {
        const icn_layer *l = &net.layer[i];
        int m = batch * l->io.oh * l->io.ow, n = l->io.oc; /* a linear layer is a 1x1 "convolution" */
        int k = l->kind == ICN_LAYER_CONV ? (int)icn_conv_kdim(&l->conv) : (int)l->in_size;
        double g = rate(m, n, k, 20, 1), plain = rate(m, n, k, 20, 0);
        /* forward, weight gradient and input gradient: three products of the same size */
        double f = 3 * 2.0 * m * n * k;
        flops += f, seconds += f / (g * 1e9);
        printf("%5d  %6d x %4d x %5d  %8.1f | %8.1f%s\n", i + 1, m, n, k, g, plain,
               icn_gemm_is_thin(m, n, k) ? "  (thin: split across threads)" : "");
    }
    printf("sgemm bound: %.1f GFLOP per batch -> at most %.0f img/s for training at these rates\n", flops / 1e9,
           batch / seconds);
    icn_net_free(&net);
    return 0;
}
