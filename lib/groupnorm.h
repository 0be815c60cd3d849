/* groupnorm.h: group normalization (Wu & He 2018, "Group Normalization", Eq. 1-3 and Sec. 3.1), the
 * normalization of the residual networks without batch statistics ("resnetN-gn", net.h).
 *
 * On channels-last tensors in [N, HW, C]: the C channels are split into G groups of C/G
 * consecutive channels, and each image's group is normalized by its own mean and biased
 * variance over its HW * C/G values, then scaled and shifted per channel:
 *   y[n,p,c] = gamma[c] (x[n,p,c] - mu[n,g]) / sqrt(sigma2[n,g] + eps) + beta[c],  g = c / (C/G)
 * No statistic is shared between images and nothing is kept across calls: training and
 * inference are the same map, an image's output does not depend on the rest of its batch, and
 * there is no running state (so batch norm's modes for pseudo-negatives change nothing here).
 *
 * Groups: G = the largest divisor of C that is at most ICN_GN_GROUPS = 8. The ResNets' 16, 32
 * and 64 channels get 8 groups of 2, 4 and 8 channels. Wu & He's default is 32 groups, which 16
 * channels cannot have; their Table 3 (ResNet-50 on ImageNet) has 24.4% top-1 error with 8 groups
 * against 24.1% with 32, and 28.4% with one channel per group (instance normalization). eps is
 * batch norm's (1e-5, PyTorch's).
 *
 * Split across the threads by image (parallel.h): each image's sums are its own and are added
 * in image order, so the result does not depend on the number of threads. */
#ifndef ICN_GROUPNORM_H
#define ICN_GROUPNORM_H
#include <stddef.h>

#include "parallel.h"

#define ICN_GN_GROUPS 8
#define ICN_GN_EPS 1e-5f

/* G for C channels (the rule above). */
int icn_groupnorm_groups(int c);
/* Floats of the stats a forward leaves for its backward, for n images of C channels: per image,
 * its G groups' means, then their 1/sqrt(sigma2 + eps): [N, 2G]. */
size_t icn_groupnorm_stats_size(int n, int c);

/* in [N, HW, C] -> out [N, HW, C] (may equal in); gb = [gamma C | beta C]; stats [N, 2G] is
 * written (per image, the groups' means, then their 1/sigma). relu: out = max(0, out) in the same pass. */
void icn_groupnorm_forward(float *out, float *stats, const float *in, const float *gb, int n, long hw, int c, int relu);
/* dout [N, HW, C] -> din [N, HW, C] (may equal dout; NULL: skip), dgb [2C] += (NULL: skip); in
 * and stats as the forward left them (the forward's output before any ReLU is what dout is of):
 *   dxhat = gamma dout,  din = 1/sigma (dxhat - mean_g(dxhat) - xhat mean_g(dxhat xhat))
 *   dgamma = sum dout xhat,  dbeta = sum dout  (sums over images and pixels)
 * partials: the per-image sums (parallel.h; NULL: its own). */
void icn_groupnorm_backward(float *din, float *dgb, const float *stats, const float *dout, const float *in,
                            const float *gb, int n, long hw, int c, icn_partials *partials);

#endif
