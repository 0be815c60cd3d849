/* npy.h: NumPy .npy files in and out (the format of numpy.save / numpy.load, versions 1.0,
 * 2.0 and 3.0: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html).
 *
 * A .npy file is untrusted: the magic, the version, the header length against the bytes
 * present, the header's dict literal ('descr', 'fortran_order' and 'shape', each exactly once,
 * no other key) and the data size (the product of the shape times the item size, checked for
 * overflow) against the file's size are all checked before any array is allocated.
 * Only the dtypes icn needs are read: uint8, little-endian int32, int64 and float32. */
#ifndef ICN_NPY_H
#define ICN_NPY_H
#include "batch.h"

#include <stddef.h>
#include <stdint.h>

#define ICN_NPY_MAX_DIM 8
#define ICN_NPY_MAX_HEADER 65536 /* numpy itself refuses headers above 10,000 bytes by default */
#define ICN_NPY_MAX_LABEL 65535  /* labels read from .npy files lie in [0, ICN_NPY_MAX_LABEL] */

typedef enum { ICN_NPY_U8, ICN_NPY_I32, ICN_NPY_I64, ICN_NPY_F32 } icn_npy_dtype;

typedef struct {
    int major, minor;            /* format version: 1.0, 2.0 or 3.0 */
    icn_npy_dtype dtype;
    size_t itemsize;             /* 1, 4 or 8 */
    int fortran_order;           /* parsed, then refused by the loaders */
    int ndim;
    int64_t shape[ICN_NPY_MAX_DIM];
    uint64_t count;              /* product of shape (1 for shape ()) */
    size_t data_offset;          /* where the array's bytes start */
} icn_npy_header;

/* Parse the header at the start of the first n bytes of a file whose total size is file_size
 * (n may be less: only the header must be present). Checks everything the file says about itself,
 * including that count * itemsize is exactly file_size - data_offset. 0, or -1 with a one-line
 * error (without the file name; the loaders prefix it). */
int icn_npy_parse_header(const uint8_t *p, size_t n, uint64_t file_size, icn_npy_header *h, char *err,
                         size_t errlen);

/* Images from a .npy file: shape (n, h, w) [one channel], (n, h, w, c) channels last, or with
 * nchw (n, c, h, w); c in 1..4, h and w in 1..4096, n >= 1. uint8 pixels become x/127.5 - 1
 * (icn_pixels_from_u8); float32 pixels must already be in [-1, 1] and finite. Fortran order is
 * refused. out gets the images without labels. Errors name the file. */
int icn_npy_load_images(const char *path, int nchw, icn_batch *out, char *err, size_t errlen);

/* Labels from a .npy file of shape (n,): uint8, int32 or int64, each in [0, ICN_NPY_MAX_LABEL].
 * *y is allocated (n entries). */
int icn_npy_load_labels(const char *path, int32_t n, int32_t **y, char *err, size_t errlen);

/* Both, the counts checked against each other. */
int icn_npy_load(const char *images, const char *labels, int nchw, icn_batch *out, char *err, size_t errlen);

/* Write b as PREFIX-images.npy (float32 (n, h, w, c), values in [-1, 1]), PREFIX-labels.npy
 * (int32 (n,); a pseudo-negative of class k is -(k+1) as on the wire) when b has labels, and
 * PREFIX-prov.npy (a structured array of (generation <i4, steps <i4, logit <f4, reached u1,
 * producer <u4), 17 bytes a record) when it has provenance. Each file is written atomically;
 * files of the same prefix that b has no data for are left alone. Version 1.0 headers. */
int icn_npy_write_batch(const char *prefix, const icn_batch *b, char *err, size_t errlen);

/* The bytes of a version 1.0 .npy file holding `count` items of raw little-endian data under the
 * header dict `descr` (e.g. "'<f4'") and `shape` (e.g. "(3, 28, 28, 1)"); caller frees *out. */
int icn_npy_encode(const char *descr, const char *shape, const void *data, size_t data_len, uint8_t **out,
                   size_t *out_len, char *err, size_t errlen);

#endif
