/* bench_peak: the machine's measured FMA peak (single precision), for `make bench` to set the
 * GFLOP/s icn reaches against: a loop of independent AVX-512 FMAs (12 accumulators, enough to
 * cover two FMA pipes of latency 4) on 1 and on 2 threads, and the same with AVX2 (the width
 * OpenBLAS is pinned to here). The rate is per second of each thread's own CPU time, so a machine
 * shared with other work still shows what its cores can do; times the thread count, that is the
 * peak. With ARCH H W C, also the floating-point work of one training
 * image of that net (forward + backward-data + backward-weights of every convolution and of the
 * linear layer: 3 x 2 x MACs).
 *
 * usage: bench_peak [ARCH H W C] */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "net.h"
#include "util.h"

enum { ITERS = 1 << 24 };

__attribute__((target("avx512f"))) static double fma512(void) {
    __m512 a[12], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < ITERS; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    float out[16], s = 0;
    for (int i = 1; i < 12; i++) a[0] = _mm512_add_ps(a[0], a[i]);
    _mm512_storeu_ps(out, a[0]);
    for (int i = 0; i < 16; i++) s += out[i];
    return s; /* keeps the loop alive */
}

__attribute__((target("avx2,fma"))) static double fma256(void) {
    __m256 a[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < ITERS; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    float out[8], s = 0;
    for (int i = 1; i < 12; i++) a[0] = _mm256_add_ps(a[0], a[i]);
    _mm256_storeu_ps(out, a[0]);
    for (int i = 0; i < 8; i++) s += out[i];
    return s;
}

static int wide;
static volatile double sink;
static void *worker(void *arg) {
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    sink = wide ? fma512() : fma256();
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    *(double *)arg = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    return NULL;
}

/* GFLOP per CPU-second of one thread, times `threads`, with `threads` threads running at once */
static double peak(int threads, int avx512) {
    pthread_t t[64];
    double cpu[64], sum = 0;
    wide = avx512;
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, &cpu[i]);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < threads; i++) sum += (double)ITERS * 12 * (avx512 ? 16 : 8) * 2 / cpu[i] / 1e9;
    return sum;
}

int main(int argc, char **argv) {
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f");
    for (int threads = 1; threads <= 2; threads++) {
        double best512 = 0, best256 = 0; /* the best of 3: the peak is what the machine can do */
        for (int r = 0; r < 3; r++) {
            double g = has512 ? peak(threads, 1) : 0, h = peak(threads, 0);
            best512 = g > best512 ? g : best512, best256 = h > best256 ? h : best256;
        }
        printf("fma_peak threads %d avx512 %.1f avx2 %.1f\n", threads, best512, best256);
    }
    if (argc == 5) {
        icn_net net;
        char err[ICN_ERRLEN];
        if (icn_net_build(&net, argv[1], atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), 10, err, sizeof err))
            icn_die(1, "%s", err);
        double macs = 0;
        for (int i = 0; i < net.n_layers; i++) {
            const icn_layer *l = &net.layer[i];
            const icn_block_shape *b = &l->block;
            if (l->kind == ICN_LAYER_CONV || l->kind == ICN_LAYER_LINEAR)
                macs += (double)l->out_size * icn_conv_kdim(&l->conv);
            if (l->kind == ICN_LAYER_BLOCK) {
                macs += (double)b->oh * b->ow * b->oc * (icn_conv_kdim(&b->conv1) + icn_conv_kdim(&b->conv2));
                if (b->proj.k) macs += (double)b->oh * b->ow * b->oc * icn_conv_kdim(&b->proj);
            }
        }
        printf("train_flop_per_image %s %.6g\n", argv[1], 3 * 2 * macs);
        icn_net_free(&net);
    }
    return 0;
}
