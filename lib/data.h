/* data.h: a data set in memory: the paper's splits, seeded class-filtered subsets, relabelling,
 * and the one mapping of 8-bit pixels to floats. Pixels of every data set are scaled to [-1, 1]
 * (x/127.5 - 1): the paper's reference distribution N(0, 0.3^2) lives in that space. Which files
 * a data set has and how they are read is datasets.h's business. */
#ifndef ICN_DATA_H
#define ICN_DATA_H
#include "batch.h"

/* The paper's split of the 60,000 training images: train = first 55,000, val = last 5,000.
 * extra and train+extra are SVHN's (datasets.h). */
typedef enum { ICN_SPLIT_TRAIN, ICN_SPLIT_VAL, ICN_SPLIT_TEST, ICN_SPLIT_ALL, ICN_SPLIT_EXTRA,
               ICN_SPLIT_TRAIN_EXTRA } icn_split;
int icn_split_parse(const char *s, icn_split *out);
const char *icn_split_name(icn_split s);
/* The images a split keeps of a file of n: val = the last n/12 (the paper's last 5,000 of
 * 60,000), train = the n - n/12 before them, test, all, extra and train+extra = the whole file.
 * (Which FILE a split reads, the training or the t10k file, is datasets.h's business.) */
void icn_split_range(icn_split s, int32_t n, int32_t *start, int32_t *count);
/* Keep only that range, in place; an empty result is an error. */
int icn_split_apply(icn_batch *b, icn_split s, char *err, size_t errlen);

/* Keep only samples whose label is in `classes` (a bitmask over labels 0..31; 0 = all),
 * then, if limit > 0, a random subset of `limit` drawn with `seed` (order preserved).
 * In place. Labels outside 0..31 (pseudo-negatives) never match a non-zero mask; a mask
 * needs labels; a limit at or above the count keeps everything. */
int icn_batch_select(icn_batch *b, uint32_t classes, int64_t limit, uint64_t seed, char *err, size_t errlen);

/* Map the labels kept by a class mask to 0..k-1 in increasing order (7 -> 0 for "--classes 7",
 * 3 -> 0 and 7 -> 1 for "--classes 3,7"), e.g. for a binary problem (Eq. 5). Labels outside
 * the mask, and pseudo-negatives, are left alone. */
void icn_batch_relabel(icn_batch *b, uint32_t classes);

/* The one mapping of 8-bit pixels to floats, for every data set: x/127.5 - 1, so 0 (black) is
 * ICN_PIXEL_MIN = -1 and 255 is 1, exactly. One image of h x w pixels stored as c planes
 * (plane k at src + k*plane, pixel (row, col) at row*row_stride + col*col_stride in it) becomes
 * channels-last dst[(row*w + col)*c + k]. */
#define ICN_PIXEL_MIN (-1.0f)
void icn_pixels_from_u8(float *dst, const uint8_t *src, int h, int w, int c, size_t plane, size_t row_stride,
                        size_t col_stride);

#endif
