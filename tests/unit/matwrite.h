/* matwrite.h: writes small MATLAB level-5 MAT-files and CIFAR-10 records, for the unit tests
 * and the e2e generator (tests/e2e/gen_datasets.c): a header, then numeric variables, each a
 * plain miMATRIX or one inside miCOMPRESSED, in either byte order, following the MAT-file format
 * document (tags of 8 bytes, the 4-byte small form for data of up to 4 bytes, 8-byte padding).
 * Hooks let a test break a file on purpose. Aborts on a failed allocation or write. */
#ifndef ICN_TEST_MATWRITE_H
#define ICN_TEST_MATWRITE_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int big; /* big-endian file */
} mat_buf;

/* Ways to break a variable on purpose. */
typedef struct {
    int compress;       /* wrap in miCOMPRESSED */
    long declare_delta; /* add to the miMATRIX tag's byte count (inside the compressed stream, if any) */
    long data_delta;    /* add to the real part's tag byte count */
    int trailing_zlib;  /* bytes of garbage after the zlib stream, inside the miCOMPRESSED element */
    int extra_bytes;    /* zero bytes after the real part that the miMATRIX's byte count leaves out */
} mat_opts;

static inline void mb_put(mat_buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

/* n bytes of an element of elsize bytes, in the file's byte order. */
static inline void mb_elem(mat_buf *b, const void *p, size_t elsize) {
    uint8_t q[8];
    for (size_t i = 0; i < elsize; i++) q[i] = ((const uint8_t *)p)[b->big ? elsize - 1 - i : i];
    mb_put(b, q, elsize);
}

static inline void mb_u32(mat_buf *b, uint32_t v) { mb_elem(b, &v, 4); }

static inline void mb_pad8(mat_buf *b) {
    static const uint8_t zero[8];
    if (b->n % 8) mb_put(b, zero, 8 - b->n % 8);
}

static inline void mb_tag(mat_buf *b, uint32_t type, uint32_t nbytes) {
    mb_u32(b, type);
    mb_u32(b, nbytes);
}

static inline void mat_header(mat_buf *b, int big) {
    memset(b, 0, sizeof *b);
    b->big = big;
    uint8_t h[128];
    memset(h, ' ', 116);
    const char *text = "MATLAB 5.0 MAT-file, Platform: icn tests, Created on: never";
    memcpy(h, text, strlen(text));
    memset(h + 116, 0, 8);
    h[124] = big ? 0x01 : 0x00; /* version 0x0100 in the file's order */
    h[125] = big ? 0x00 : 0x01;
    h[126] = big ? 'M' : 'I';
    h[127] = big ? 'I' : 'M';
    mb_put(b, h, 128);
}

/* A sub-element of type `type`, count elements of elsize bytes: small form when it fits in 4. */
static inline void mb_sub(mat_buf *b, uint32_t type, const void *data, size_t count, size_t elsize, long delta) {
    size_t n = count * elsize;
    if (n <= 4 && delta == 0) {
        mb_u32(b, (uint32_t)n << 16 | type);
        size_t start = b->n;
        for (size_t i = 0; i < count; i++) mb_elem(b, (const uint8_t *)data + i * elsize, elsize);
        static const uint8_t zero[4];
        mb_put(b, zero, 4 - (b->n - start));
        return;
    }
    mb_tag(b, type, (uint32_t)((long)n + delta));
    for (size_t i = 0; i < count; i++) mb_elem(b, (const uint8_t *)data + i * elsize, elsize);
    mb_pad8(b);
}

/* A variable: class mx_class, dims, name, real part of count elements stored as data type
 * `type` (elsize bytes each, given in host order). */
static inline void mat_var(mat_buf *b, const char *name, int mx_class, const int32_t *dims, int ndims, uint32_t type,
                    size_t elsize, const void *data, size_t count, mat_opts o) {
    mat_buf e = {0};
    e.big = b->big;
    mb_tag(&e, 14, 0); /* miMATRIX; byte count patched below */
    uint32_t flags[2] = {(uint32_t)mx_class, 0};
    mb_sub(&e, 6, flags, 2, 4, 0);
    mb_sub(&e, 5, dims, (size_t)ndims, 4, 0);
    mb_sub(&e, 1, name, strlen(name), 1, 0);
    mb_sub(&e, type, data, count, elsize, o.data_delta);
    uint32_t nbytes = (uint32_t)((long)(e.n - 8) + o.declare_delta);
    for (int i = 0; i < o.extra_bytes; i++) mb_put(&e, "", 1);
    mat_buf t = {0};
    t.big = b->big;
    mb_u32(&t, nbytes);
    memcpy(e.p + 4, t.p, 4);
    free(t.p);
    if (!o.compress) {
        mb_put(b, e.p, e.n);
    } else {
        uLongf clen = compressBound(e.n);
        uint8_t *z = malloc(clen + (size_t)o.trailing_zlib);
        if (!z || compress2(z, &clen, e.p, e.n, 6) != Z_OK) abort();
        for (int i = 0; i < o.trailing_zlib; i++) z[clen + (size_t)i] = (uint8_t)(0x5a + i);
        mb_tag(b, 15, (uint32_t)(clen + (uLongf)o.trailing_zlib));
        mb_put(b, z, clen + (size_t)o.trailing_zlib);
        free(z);
    }
    free(e.p);
}

/* SVHN's layout: X 32x32x3xn uint8 (pixel of image i, row r, column c, channel k at
 * r + 32c + 1024k + 3072i), y n x 1 as double or uint8, written X first unless y_first. */
static inline void mat_svhn(mat_buf *b, const uint8_t *x, const double *y, int32_t n, int y_uint8, int y_first,
                     mat_opts o) {
    int32_t xd[4] = {32, 32, 3, n}, yd[2] = {n, 1};
    for (int pass = 0; pass < 2; pass++) {
        if (pass == (y_first ? 1 : 0)) {
            mat_var(b, "X", 9, xd, 4, 2, 1, x, (size_t)n * 3072, o);
        } else if (y_uint8) {
            uint8_t *y8 = malloc((size_t)n);
            if (!y8) abort();
            for (int32_t i = 0; i < n; i++) y8[i] = (uint8_t)y[i];
            mat_var(b, "y", 9, yd, 2, 2, 1, y8, (size_t)n, o);
            free(y8);
        } else {
            mat_var(b, "y", 6, yd, 2, 9, 8, y, (size_t)n, o);
        }
    }
}

/* A CIFAR-10 binary file of n records: labels[i], then image i's 3,072 bytes as CIFAR stores
 * them (planes of red, green, blue, each 32x32 row-major), less `cut` bytes at the end. */
static inline int cifar_write(const char *path, const uint8_t *labels, const uint8_t *planes, int n, size_t cut) {
    mat_buf b = {0};
    for (int i = 0; i < n; i++) {
        mb_put(&b, labels + i, 1);
        mb_put(&b, planes + (size_t)i * 3072, 3072);
    }
    FILE *f = fopen(path, "wb");
    size_t len = b.n > cut ? b.n - cut : 0;
    int ok = f && fwrite(b.p, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = 0;
    free(b.p);
    return ok ? 0 : -1;
}

/* The first len bytes of b (all of them when len is larger) to path. */
static inline int mb_write(const mat_buf *b, const char *path, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = len < b->n ? len : b->n;
    int ok = fwrite(b->p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

#endif
