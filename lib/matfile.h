/* matfile.h: a small, strict reader of MATLAB level-5 MAT-files (what `save -v7` and scipy's
 * savemat write; not the HDF5-based -v7.3), enough for numeric arrays such as SVHN's X and y.
 *
 * A file is a 128-byte header (text, version 0x0100, endianness indicator "IM" or "MI") and
 * data elements, each an 8-byte tag (type, byte count) or the 4-byte small-element form, padded
 * to 8 bytes. A top-level element is a miMATRIX (array flags, dimensions, name, real part) or a
 * miCOMPRESSED one: a zlib stream that inflates to a miMATRIX element.
 *
 * The file is untrusted. Every declared byte count is checked against the bytes the file still
 * holds (for a miMATRIX inside miCOMPRESSED, against what a zlib stream of that many bytes can
 * inflate to at most) before anything is read or allocated, and a compressed element must
 * inflate to exactly its declared size. The reader streams: it never holds a whole variable, so
 * callers read a real part piece by piece and decide what to allocate. Either byte order. */
#ifndef ICN_MATFILE_H
#define ICN_MATFILE_H
#include <stddef.h>
#include <stdint.h>

#define ICN_MAT_MAX_DIMS 32

/* Array classes (the low byte of the array flags) and data types (of the stored real part). */
enum { ICN_MX_DOUBLE = 6, ICN_MX_SINGLE = 7, ICN_MX_INT8 = 8, ICN_MX_UINT8 = 9, ICN_MX_INT16 = 10,
       ICN_MX_UINT16 = 11, ICN_MX_INT32 = 12, ICN_MX_UINT32 = 13, ICN_MX_INT64 = 14, ICN_MX_UINT64 = 15 };
enum { ICN_MI_INT8 = 1, ICN_MI_UINT8 = 2, ICN_MI_INT16 = 3, ICN_MI_UINT16 = 4, ICN_MI_INT32 = 5,
       ICN_MI_UINT32 = 6, ICN_MI_SINGLE = 7, ICN_MI_DOUBLE = 9, ICN_MI_INT64 = 12, ICN_MI_UINT64 = 13,
       ICN_MI_MATRIX = 14, ICN_MI_COMPRESSED = 15 };

/* A variable, as icn_mat_next finds it. For numeric classes the real part is next to read. */
typedef struct {
    char name[64];
    int mx_class;  /* ICN_MX_*; other classes (cell, struct, char, sparse...) have no readable data */
    int complex;   /* has an imaginary part (never read) */
    int ndims;
    int64_t dims[ICN_MAT_MAX_DIMS];
    uint64_t numel; /* product of dims */
    int type;       /* ICN_MI_* of the stored real part (MATLAB may store a double array as miUINT8) */
} icn_mat_var;

typedef struct icn_mat icn_mat;

/* Open and check the header. Errors name the file ("PATH: not a MAT-file ..."). */
icn_mat *icn_mat_open(const char *path, char *err, size_t errlen);
/* Advance to the next variable, skipping what is left of the current one (a compressed one is
 * inflated to its end, so a stream that inflates to more or less than declared is an error).
 * 1: *v describes it; 0: the file ended cleanly; -1: error. */
int icn_mat_next(icn_mat *m, icn_mat_var *v, char *err, size_t errlen);
/* The next `count` elements of the current numeric variable's real part, in order (MATLAB's
 * column-major), converted to double. An error when fewer are left. */
int icn_mat_read_f64(icn_mat *m, double *dst, size_t count, char *err, size_t errlen);
/* The same as raw bytes, for a real part stored as miUINT8 or miINT8 (an error otherwise). */
int icn_mat_read_u8(icn_mat *m, uint8_t *dst, size_t count, char *err, size_t errlen);
const char *icn_mat_path(const icn_mat *m);
void icn_mat_close(icn_mat *m);

#endif
