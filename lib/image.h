/* image.h: PNG pictures of images, for people who would rather look than read. */
#ifndef ICN_IMAGE_H
#define ICN_IMAGE_H
#include <stddef.h>

/* Write a grid of rows x cols cells, each an h x w x c image (c = 1 gray or 3 RGB) in
 * [-1, 1], scaled `zoom` times, with a 2-pixel gap. cells[i] may be NULL (left blank).
 * Written atomically. */
int icn_png_grid(const char *path, const float *const *cells, int rows, int cols, int h, int w, int c, int zoom,
                 char *err, size_t errlen);

#endif
