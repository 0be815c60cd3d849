#include "groupnorm.h"

#include <math.h>

#include "parallel.h"

int icn_groupnorm_groups(int c) {
    int g = c < ICN_GN_GROUPS ? c : ICN_GN_GROUPS;
    while (g > 1 && c % g) g--;
    return g < 1 ? 1 : g;
}

size_t icn_groupnorm_stats_size(int n, int c) { return 2 * (size_t)n * icn_groupnorm_groups(c); }

typedef struct {
    float *out;             /* forward: out; backward: din (NULL: skip) */
    float *stats;           /* forward: [N, 2G], per image its groups' means then their 1/sigma */
    const float *saved;     /* backward: the forward's stats */
    const float *in, *dout, *gb;
    double *sums;           /* backward: per image [2C]: sum dout, sum dout (x - mu) per channel */
    long hw;
    int c, g, relu;
} gn_job;

enum {
    GN_LANES = 16,      /* channels at once: one AVX-512 register per per-channel quantity */
    GN_BLOCK_PIXELS = 64 /* pixels summed in float (vectorised) before they join the double sums */
};

/* Per channel k of [c0, c0 + w), over the image's hw pixels of row length C: in double,
 * s1[k] += sum (y - y0[k]) and s2[k] += sum (y - y0[k]) (x - x0[k]), summed in float a block
 * of pixels at a time. The forward takes y = x, x0 = y0 = its group's first value; the backward
 * y = dout, y0 = 0, x0 = its group's mean. */
static void gn_sums_lanes(const float *x, const float *y, const float *x0, const float *y0, long hw, int C, int c0,
                          int w, double *s1, double *s2) {
    for (long p0 = 0; p0 < hw; p0 += GN_BLOCK_PIXELS) {
        const long p1 = p0 + GN_BLOCK_PIXELS < hw ? p0 + GN_BLOCK_PIXELS : hw;
        float a1[GN_LANES] = {0}, a2[GN_LANES] = {0};
        for (long p = p0; p < p1; p++) {
            const float *restrict xp = x + (size_t)p * C + c0, *restrict yp = y + (size_t)p * C + c0;
            for (int k = 0; k < w; k++) {
                float dy = yp[k] - y0[k];
                a1[k] += dy;
                a2[k] += dy * (xp[k] - x0[k]);
            }
        }
        for (int k = 0; k < w; k++) s1[k] += a1[k], s2[k] += a2[k];
    }
}

/* Over the image's pixels, per channel k of [c0, c0 + w):
 * out = p[k] (y - y0[k]) + q[k] (x - x0[k]) + t[k], then max(0, out) with relu (out may be y).
 * Differences before products: x - mu is exact where x is near mu. */
static void gn_apply_lanes(float *out, const float *y, const float *y0, const float *p, const float *x,
                           const float *x0, const float *q, const float *t, long hw, int C, int c0, int w, int relu) {
    for (long i = 0; i < hw; i++) {
        const float *xp = x + (size_t)i * C + c0, *yp = y + (size_t)i * C + c0;
        float *o = out + (size_t)i * C + c0;
        for (int k = 0; k < w; k++) o[k] = p[k] * (yp[k] - y0[k]) + q[k] * (xp[k] - x0[k]) + t[k];
        if (relu)
            for (int k = 0; k < w; k++) o[k] = o[k] > 0 ? o[k] : 0.0f;
    }
}

/* Forward of images [lo, hi) [hw, C] each: per group, the sums of x - x0 and (x - x0)^2 in
 * double about the group's first value x0 (no cancellation when |mu| >> sigma), then
 * y = gamma/sigma (x - mu) + beta (Wu & He Eq. 1 and 2, then the per-channel affine map). */
static void gn_forward_images(void *ctx, long lo, long hi, int thread) {
    (void)thread;
    const gn_job *j = ctx;
    const int C = j->c, G = j->g, cg = C / G;
    const float *gamma = j->gb, *beta = j->gb + C;
    const float zero[GN_LANES] = {0};
    for (long b = lo; b < hi; b++) {
        const float *x = j->in + (size_t)b * j->hw * C;
        float *y = j->out + (size_t)b * j->hw * C, *mean = j->stats + (size_t)b * 2 * G, *invstd = mean + G;
        double s1[ICN_GN_GROUPS] = {0}, s2[ICN_GN_GROUPS] = {0};
        for (int c0 = 0; c0 < C; c0 += GN_LANES) {
            const int w = C - c0 < GN_LANES ? C - c0 : GN_LANES;
            float x0[GN_LANES];
            double d1[GN_LANES] = {0}, d2[GN_LANES] = {0};
            for (int k = 0; k < w; k++) x0[k] = x[(c0 + k) / cg * cg];
            gn_sums_lanes(x, x, x0, x0, j->hw, C, c0, w, d1, d2);
            for (int k = 0; k < w; k++) s1[(c0 + k) / cg] += d1[k], s2[(c0 + k) / cg] += d2[k];
        }
        const double m = (double)j->hw * cg; /* values per group */
        for (int g = 0; g < G; g++) {
            double d = s1[g] / m, var = s2[g] / m - d * d; /* biased variance, Wu & He Eq. 2 */
            if (var < 0) var = 0;
            mean[g] = (float)(x[g * cg] + d);
            invstd[g] = (float)(1.0 / sqrt(var + ICN_GN_EPS));
        }
        for (int c0 = 0; c0 < C; c0 += GN_LANES) {
            const int w = C - c0 < GN_LANES ? C - c0 : GN_LANES;
            float mu[GN_LANES], p[GN_LANES];
            for (int k = 0; k < w; k++) mu[k] = mean[(c0 + k) / cg], p[k] = gamma[c0 + k] * invstd[(c0 + k) / cg];
            gn_apply_lanes(y, x, mu, p, x, mu, zero, beta + c0, j->hw, C, c0, w, j->relu);
        }
    }
}

void icn_groupnorm_forward(float *out, float *stats, const float *in, const float *gb, int n, long hw, int c, int relu) {
    gn_job job = {.out = out, .stats = stats, .in = in, .gb = gb, .hw = hw, .c = c, .g = icn_groupnorm_groups(c),
                  .relu = relu};
    icn_parallel_for(n, ICN_PARALLEL_MIN_WORK / (hw * c) + 1, gn_forward_images, &job);
}

/* Backward of images [lo, hi): per channel, a = sum dout and b = sum dout (x - mu) over the
 * image's pixels (in double), which are the image's share of dbeta and dgamma / (1/sigma);
 * per group, A = sum gamma a = sum dxhat and B = sum gamma b = sigma sum dxhat xhat; then
 *   din = gamma/sigma dout - A / (M sigma) - (x - mu) B / (M sigma^3)
 * (M values per group), written after the sums, so din may be dout. */
static void gn_backward_images(void *ctx, long lo, long hi, int thread) {
    (void)thread;
    const gn_job *j = ctx;
    const int C = j->c, G = j->g, cg = C / G;
    const float *gamma = j->gb;
    const float zero[GN_LANES] = {0};
    for (long b = lo; b < hi; b++) {
        const float *x = j->in + (size_t)b * j->hw * C, *dy = j->dout + (size_t)b * j->hw * C;
        const float *mean = j->saved + (size_t)b * 2 * G, *invstd = mean + G;
        double *sa = j->sums + (size_t)b * 2 * C, *sb = sa + C;
        for (int k = 0; k < C; k++) sa[k] = sb[k] = 0;
        for (int c0 = 0; c0 < C; c0 += GN_LANES) {
            const int w = C - c0 < GN_LANES ? C - c0 : GN_LANES;
            float mu[GN_LANES];
            for (int k = 0; k < w; k++) mu[k] = mean[(c0 + k) / cg];
            gn_sums_lanes(x, dy, mu, zero, j->hw, C, c0, w, sa + c0, sb + c0);
        }
        if (!j->out) continue;
        float q[ICN_GN_GROUPS], t[ICN_GN_GROUPS];
        const double m = (double)j->hw * cg;
        for (int g = 0; g < G; g++) {
            double A = 0, B = 0, s = invstd[g];
            for (int k = g * cg; k < (g + 1) * cg; k++) A += gamma[k] * sa[k], B += gamma[k] * sb[k];
            t[g] = (float)(-A * s / m);
            q[g] = (float)(-B * s * s * s / m);
        }
        float *dx = j->out + (size_t)b * j->hw * C;
        for (int c0 = 0; c0 < C; c0 += GN_LANES) {
            const int w = C - c0 < GN_LANES ? C - c0 : GN_LANES;
            float mu[GN_LANES], pc[GN_LANES], qc[GN_LANES], tc[GN_LANES];
            for (int k = 0; k < w; k++) {
                const int g = (c0 + k) / cg;
                mu[k] = mean[g], pc[k] = gamma[c0 + k] * invstd[g], qc[k] = q[g], tc[k] = t[g];
            }
            gn_apply_lanes(dx, dy, zero, pc, x, mu, qc, tc, j->hw, C, c0, w, 0);
        }
    }
}

void icn_groupnorm_backward(float *din, float *dgb, const float *stats, const float *dout, const float *in,
                            const float *gb, int n, long hw, int c, icn_partials *partials) {
    if (!din && !dgb) return;
    icn_partials own = {0};
    double *sums = icn_partials_get(partials ? partials : &own, (size_t)n * 2 * c * sizeof(double));
    const int G = icn_groupnorm_groups(c);
    gn_job job = {.out = din, .saved = stats, .in = in, .dout = dout, .gb = gb, .sums = sums, .hw = hw,
                  .c = c, .g = G};
    icn_parallel_for(n, ICN_PARALLEL_MIN_WORK / (hw * c) + 1, gn_backward_images, &job);
    if (dgb) /* in image order: the same bits on any number of threads */
        for (int k = 0; k < c; k++) {
            double dgamma = 0, dbeta = 0;
            for (int b = 0; b < n; b++) {
                const double *sa = sums + (size_t)b * 2 * c, *sb = sa + c;
                dgamma += sb[k] * stats[(size_t)b * 2 * G + G + k / (c / G)]; /* sum dout xhat */
                dbeta += sa[k];                                               /* sum dout */
            }
            dgb[k] += (float)dgamma;
            dgb[c + k] += (float)dbeta;
        }
    icn_partials_free(&own);
}
