#include "image.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "util.h"

static unsigned char to_byte(float v) {
    float x = (v + 1.0f) * 127.5f;
    return (unsigned char)(x < 0 ? 0 : x > 255 ? 255 : x + 0.5f);
}

int icn_png_grid(const char *path, const float *const *cells, int rows, int cols, int h, int w, int c, int zoom,
                 char *err, size_t errlen) {
    if (rows < 1 || cols < 1 || (c != 1 && c != 3) || zoom < 1)
        return icn_errf(err, errlen, "%s: nothing to draw (grid %dx%d, %d channels)", path, rows, cols, c);
    const int gap = 2, cw = w * zoom, ch = h * zoom;
    const int W = cols * (cw + gap) + gap, H = rows * (ch + gap) + gap;
    unsigned char *pix = xmalloc((size_t)W * H * 3);
    memset(pix, 64, (size_t)W * H * 3); /* dark gray gaps and blank cells */
    for (int r = 0; r < rows; r++)
        for (int q = 0; q < cols; q++) {
            const float *img = cells[(size_t)r * cols + q];
            if (!img) continue;
            for (int y = 0; y < ch; y++)
                for (int x = 0; x < cw; x++) {
                    const float *px = img + ((size_t)(y / zoom) * w + x / zoom) * c;
                    unsigned char *dst = pix + (((size_t)(gap + r * (ch + gap) + y)) * W + gap + q * (cw + gap) + x) * 3;
                    for (int k = 0; k < 3; k++) dst[k] = to_byte(px[c == 3 ? k : 0]);
                }
        }
    icn_out o;
    if (icn_out_open(&o, path, err, errlen)) {
        free(pix);
        return -1;
    }
    int fd = dup(o.fd); /* the stream owns a copy; o keeps its own for commit */
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f && fd >= 0) close(fd);
    png_structp png = f ? png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL) : NULL;
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = -1;
    if (!info) {
        icn_errf(err, errlen, "%s: cannot write PNG", path);
    } else if (setjmp(png_jmpbuf(png))) {
        icn_errf(err, errlen, "%s: PNG encoding failed", path);
    } else {
        png_init_io(png, f);
        png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int y = 0; y < H; y++) png_write_row(png, pix + (size_t)y * W * 3);
        png_write_end(png, NULL);
        rc = 0;
    }
    if (png) png_destroy_write_struct(&png, info ? &info : NULL);
    if (f && fclose(f) != 0 && rc == 0) rc = icn_errf(err, errlen, "%s: write failed", path);
    if (rc == 0) rc = icn_out_commit(&o, err, errlen);
    else icn_out_abort(&o);
    free(pix);
    return rc;
}
