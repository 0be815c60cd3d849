#include "groupnorm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* Forward of images [lo, hi) [hw, C] each: per group, the sums of x - x0 and (x - x0)^2 in
 * double about the group's first value x0 (no cancellation when |mu| >> sigma), then
 * y = gamma/sigma (x - mu) + beta (Wu & He Eq. 1 and 2, then the per-channel affine map). */
static void gn_forward_images(void *ctx, long lo, long hi, int thread) {
    (void)thread;
    const gn_job *j = ctx;
    const int C = j->c, G = j->g, cg = C / G;
    const float *gamma = j->gb, *beta = j->gb + C;
    double s1[ICN_GN_GROUPS], s2[ICN_GN_GROUPS];
    float x0[ICN_GN_GROUPS];
    for (long b = lo; b < hi; b++) {
        const float *x = j->in + (size_t)b * j->hw * C;
        float *y = j->out + (size_t)b * j->hw * C, *mean = j->stats + (size_t)b * 2 * G, *invstd = mean + G;
        for (int g = 0; g < G; g++) s1[g] = s2[g] = 0, x0[g] = x[g * cg];
        for (long p = 0; p < j->hw; p++) {
            const float *xp = x + (size_t)p * C;
            for (int g = 0; g < G; g++) {
                float a1 = 0, a2 = 0; /* one pixel's cg values in float, then into the double sums */
                for (int k = 0; k < cg; k++) {
                    float d = xp[g * cg + k] - x0[g];
                    a1 += d, a2 += d * d;
                }
                s1[g] += a1, s2[g] += a2;
            }
        }
        const double m = (double)j->hw * cg; /* values per group */
        for (int g = 0; g < G; g++) {
            double d = s1[g] / m, var = s2[g] / m - d * d; /* biased variance, Wu & He Eq. 2 */
            if (var < 0) var = 0;
            mean[g] = (float)(x0[g] + d);
            invstd[g] = (float)(1.0 / sqrt(var + ICN_GN_EPS));
        }
        for (long p = 0; p < j->hw; p++) {
            const float *xp = x + (size_t)p * C;
            float *yp = y + (size_t)p * C;
            for (int g = 0; g < G; g++)
                for (int k = g * cg; k < (g + 1) * cg; k++) {
                    float v = gamma[k] * invstd[g] * (xp[k] - mean[g]) + beta[k];
                    yp[k] = j->relu && v < 0 ? 0.0f : v;
                }
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
    for (long b = lo; b < hi; b++) {
        const float *x = j->in + (size_t)b * j->hw * C, *dy = j->dout + (size_t)b * j->hw * C;
        const float *mean = j->saved + (size_t)b * 2 * G, *invstd = mean + G;
        double *sa = j->sums + (size_t)b * 2 * C, *sb = sa + C;
        for (int k = 0; k < C; k++) sa[k] = sb[k] = 0;
        for (long p = 0; p < j->hw; p++) {
            const float *xp = x + (size_t)p * C, *dp = dy + (size_t)p * C;
            for (int g = 0; g < G; g++)
                for (int k = g * cg; k < (g + 1) * cg; k++) {
                    sa[k] += dp[k];
                    sb[k] += (double)dp[k] * (xp[k] - mean[g]);
                }
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
        for (long p = 0; p < j->hw; p++) {
            const float *xp = x + (size_t)p * C, *dp = dy + (size_t)p * C;
            float *o = dx + (size_t)p * C;
            for (int g = 0; g < G; g++)
                for (int k = g * cg; k < (g + 1) * cg; k++) o[k] = gamma[k] * invstd[g] * dp[k] + q[g] * (xp[k] - mean[g]) + t[g];
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
