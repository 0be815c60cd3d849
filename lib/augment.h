/* augment.h: data augmentation of training images, the standard one for CIFAR-10 and SVHN:
 * pad each image by ICN_AUGMENT_PAD pixels on every side, take a random crop of the original
 * size, and flip it left to right with probability 1/2.
 *
 * The padding is "zero" padding on the [0, 1] scale, that is black: ICN_PIXEL_MIN = -1 in the
 * [-1, 1] scale every data set is loaded in (data.h), not 0, which would be mid-grey.
 *
 * The draws of a mini-batch come from an RNG seeded with (seed, step) alone, like the batch
 * sampler's (train.h): a run is reproducible, and a resumed run augments its remaining steps
 * exactly as an uninterrupted one would. Works in place; allocates nothing. */
#ifndef ICN_AUGMENT_H
#define ICN_AUGMENT_H
#include <stdint.h>

#define ICN_AUGMENT_PAD 4

/* Crop and flip the n images x [n, h, w, c] of training step `step` in place. Image i is
 * shifted by (dy, dx), each uniform in [-pad, pad] (the crop at offset (pad + dy, pad + dx) of
 * the padded image: output (r, col) = input (r + dy, col + dx), ICN_PIXEL_MIN outside), then,
 * when `flip` is set, mirrored with probability 1/2. pad 0 without flip leaves x untouched, so
 * a trainer calls this whether augmentation is on or not. */
void icn_augment_batch(float *x, int n, int h, int w, int c, int pad, int flip, uint64_t seed, int64_t step);

/* One image, with given draws: the transform icn_augment_batch applies. */
void icn_augment_image(float *img, int h, int w, int c, int dy, int dx, int flip);

#endif
