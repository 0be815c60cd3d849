/* augment.c: random crops of padded images and horizontal flips, in place (augment.h).
 *
 * The shift is done without a copy: output row r reads input row r + dy, so rows are visited
 * top-down when dy >= 0 (each reads a row not yet overwritten) and bottom-up otherwise; within
 * a row memmove takes care of the overlap. */
#include "augment.h"

#include "data.h"
#include "util.h"

#include <string.h>

static void fill(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = ICN_PIXEL_MIN;
}

void icn_augment_image(float *img, int h, int w, int c, int dy, int dx, int flip) {
    size_t row = (size_t)w * c;
    if (dy || dx) {
        int adx = dx < 0 ? -dx : dx;
        for (int k = 0; k < h; k++) {
            int r = dy >= 0 ? k : h - 1 - k, src = r + dy;
            float *out = img + (size_t)r * row;
            if (src < 0 || src >= h || adx >= w) {
                fill(out, row);
                continue;
            }
            const float *in = img + (size_t)src * row;
            size_t keep = (size_t)(w - adx) * c, edge = (size_t)adx * c;
            if (dx >= 0) { /* output col reads col + dx: the right edge is padding */
                memmove(out, in + edge, keep * sizeof(float));
                fill(out + keep, edge);
            } else {
                memmove(out + edge, in, keep * sizeof(float));
                fill(out, edge);
            }
        }
    }
    if (flip)
        for (int r = 0; r < h; r++) {
            float *a = img + (size_t)r * row, *b = a + (size_t)(w - 1) * c;
            for (; a < b; a += c, b -= c)
                for (int k = 0; k < c; k++) {
                    float t = a[k]; a[k] = b[k]; b[k] = t;
                }
        }
}

void icn_augment_batch(float *x, int n, int h, int w, int c, int pad, int flip, uint64_t seed, int64_t step) {
    if (pad <= 0 && !flip) return;
    icn_rng rng;
    icn_rng_seed(&rng, seed * 0xd1342543de82ef95ULL + (uint64_t)step); /* not the sampler's stream */
    size_t d = (size_t)h * w * c;
    for (int i = 0; i < n; i++) {
        int dy = pad > 0 ? (int)icn_rng_below(&rng, (uint32_t)(2 * pad + 1)) - pad : 0;
        int dx = pad > 0 ? (int)icn_rng_below(&rng, (uint32_t)(2 * pad + 1)) - pad : 0;
        int mirror = flip && icn_rng_u64(&rng) >> 63;
        icn_augment_image(x + i * d, h, w, c, dy, dx, mirror);
    }
}
