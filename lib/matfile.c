/* matfile.c: MATLAB level-5 MAT-files, read as a stream of variables (see matfile.h).
 *
 * The bytes of a top-level element come either straight from the file or through zlib
 * (miCOMPRESSED); get() hides which, and bounds every read by the element's declared size.
 * That size was checked against the file (or against what its compressed bytes can inflate
 * to) when the element's tag was read, so no count taken from the file is trusted before it
 * has been compared with something real.
 *
 * Why not Debian's libmatio (1.5.23; measured 2026-12-07 with the same API over matio's
 * Mat_VarReadNext, AMD EPYC family 0x19 model 0x01, 2 cores, load average 10 to 14;
 * docs/RESULTS.md "The JSON and MAT-file readers"):
 *   - it allocates by the dimensions before checking the bytes present: a 264-byte file whose
 *     X declares 32x32x3x2^24 made it ask mmap for 51.5 GB, a 200-byte one whose y declares
 *     1x2^30 doubles for 8.6 GB, and it returned that y as 2^30 elements from 8 bytes of data;
 *     this reader asks for nothing beyond its 64 KiB buffers and refuses both in one line;
 *   - tests/fuzz/fuzz_svhn.c stopped on it after 365 executions: a 640-byte input made it
 *     malloc 0xdf205400000000 bytes (ASan: allocation-size-too-big); with such mallocs allowed
 *     to fail, 3,181 executions in 60 s and 1.1 GB peak RSS, against 154,503 and 361 MB here;
 *   - of the 21 lying files of tests/unit/test_matfile.c it accepted 7 that this reader
 *     refuses: a header whose text is not MATLAB's (harmless), a real part smaller than its
 *     dimensions (plain and compressed), compressed elements that inflate to more or fewer
 *     bytes than declared or have bytes after their stream, and a zlib stream cut short (the
 *     missing elements read as 0); a file cut inside its variable came back as that variable
 *     with uninitialised elements (valgrind), the error only at the next call;
 *   - it reads a whole variable into memory (SVHN's extra X is 1.6 GB of uint8) where this
 *     reader streams it; it reports errors through a global log callback, and cannot tell a
 *     clean end of file from an error it did not log; and it depends on HDF5 (libhdf5-103-1,
 *     3.9 MB; libmatio-dev on libhdf5-dev and its curl, SSL and Fortran packages) for the
 *     -v7.3 files icn does not read. */
#include "matfile.h"

#include "fileio.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

typedef unsigned long long ull;

#define HEADER_BYTES 128
/* deflate cannot do better than about 1032:1, so c compressed bytes inflate to at most this */
#define MAX_INFLATE(c) ((c) * 1032ull + 1024)

struct icn_mat {
    char *path;
    FILE *f;
    ull size; /* bytes in the file */
    int swap; /* the file's byte order is not the host's */
    /* the current top-level element */
    int open, compressed;
    ull offset, end;  /* where its tag starts, and where the next element's tag starts */
    ull left, declared; /* bytes of its miMATRIX content not yet consumed, and all of them */
    z_stream z;
    ull zin_left;     /* compressed bytes not yet taken from the file */
    ull inflated, expect; /* bytes inflated so far, and how many the element declares */
    int z_ended;      /* inflate() said Z_STREAM_END */
    /* the current variable's real part */
    char name[64];
    int readable, type;
    size_t elsize;
    ull data_left;         /* elements */
    uint8_t small[4];      /* a real part in the small-element form */
    size_t small_n, small_at;
    uint8_t zin[1 << 15], buf[1 << 15]; /* the struct stays under 128 KiB: no mmap per open */
};

static int host_little(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static void swap_bytes(uint8_t *p, size_t elsize, size_t n) {
    for (size_t i = 0; i < n; i++, p += elsize)
        for (size_t a = 0, b = elsize - 1; a < b; a++, b--) {
            uint8_t t = p[a]; p[a] = p[b]; p[b] = t;
        }
}

static uint32_t rd32(const icn_mat *m, const uint8_t *p) {
    uint8_t q[4] = {p[0], p[1], p[2], p[3]};
    if (m->swap) swap_bytes(q, 4, 1);
    uint32_t v;
    memcpy(&v, q, 4);
    return v;
}

static size_t type_size(int type) {
    switch (type) {
    case ICN_MI_INT8: case ICN_MI_UINT8: return 1;
    case ICN_MI_INT16: case ICN_MI_UINT16: return 2;
    case ICN_MI_INT32: case ICN_MI_UINT32: case ICN_MI_SINGLE: return 4;
    case ICN_MI_DOUBLE: case ICN_MI_INT64: case ICN_MI_UINT64: return 8;
    default: return 0;
    }
}

static ull pad8(ull n) { return (n + 7) & ~7ull; }

const char *icn_mat_path(const icn_mat *m) { return m->path; }

/* ---------------------------------------------------------------- the element's bytes */

static int file_read(icn_mat *m, void *dst, size_t n, char *err, size_t errlen) {
    if (fread(dst, 1, n, m->f) == n) return 0;
    if (ferror(m->f)) return icn_errf(err, errlen, "%s: %s", m->path, strerror(errno));
    return icn_errf(err, errlen, "%s: truncated: ends inside the element at offset %llu", m->path, m->offset);
}

/* Inflate n bytes into dst (NULL: discard them). 0: done; 1: the stream ended first (no error
 * written); -1: error (cut short, corrupt). */
static int inflate_some(icn_mat *m, uint8_t *dst, size_t n, char *err, size_t errlen) {
    while (n > 0) {
        if (m->z_ended) return 1;
        if (m->z.avail_in == 0 && m->zin_left > 0) {
            size_t k = m->zin_left < sizeof m->zin ? (size_t)m->zin_left : sizeof m->zin;
            if (file_read(m, m->zin, k, err, errlen)) return -1;
            m->z.next_in = m->zin;
            m->z.avail_in = (uInt)k;
            m->zin_left -= k;
        }
        size_t want = n < sizeof m->buf ? n : sizeof m->buf;
        m->z.next_out = dst ? dst : m->buf;
        m->z.avail_out = (uInt)want;
        int zr = inflate(&m->z, Z_NO_FLUSH);
        size_t got = want - m->z.avail_out;
        m->inflated += got;
        if (dst) dst += got;
        n -= got;
        if (zr == Z_STREAM_END) m->z_ended = 1;
        else if (zr != Z_OK && zr != Z_BUF_ERROR)
            return icn_errf(err, errlen, "%s: compressed element at offset %llu: zlib: %s", m->path, m->offset,
                            m->z.msg ? m->z.msg : "inflate failed");
        else if (got == 0 && m->z.avail_in == 0 && m->zin_left == 0)
            return icn_errf(err, errlen, "%s: compressed element at offset %llu: zlib stream cut short after %llu "
                            "inflated bytes", m->path, m->offset, m->inflated);
    }
    return 0;
}

/* n inflated bytes, which the element declares: a stream that ends before is an error. */
static int zget(icn_mat *m, uint8_t *dst, size_t n, char *err, size_t errlen) {
    int r = inflate_some(m, dst, n, err, errlen);
    if (r == 1)
        return icn_errf(err, errlen, "%s: compressed element at offset %llu inflates to %llu bytes, but declares %llu",
                        m->path, m->offset, m->inflated, m->expect);
    return r;
}

/* The next n bytes of the current miMATRIX (into dst, or skipped when dst is NULL). */
static int get(icn_mat *m, void *dst, size_t n, const char *what, char *err, size_t errlen) {
    if (n > m->left)
        return icn_errf(err, errlen, "%s: %s needs %zu bytes but the miMATRIX element at offset %llu has only %llu "
                        "left of the %llu it declares", m->path, what, n, m->offset, m->left, m->declared);
    if (m->compressed) {
        if (zget(m, dst, n, err, errlen)) return -1;
    } else if (dst) {
        if (file_read(m, dst, n, err, errlen)) return -1;
    } else if (fseeko(m->f, (off_t)n, SEEK_CUR) != 0) {
        return icn_errf(err, errlen, "%s: %s", m->path, strerror(errno));
    }
    m->left -= n;
    return 0;
}

/* A sub-element's tag: full (8 bytes) or small (4 bytes, with up to 4 bytes of data after it,
 * which land in small[]). */
static int get_tag(icn_mat *m, int *type, ull *nbytes, uint8_t small[4], int *is_small, const char *what, char *err,
                   size_t errlen) {
    uint8_t t[8];
    if (get(m, t, 8, what, err, errlen)) return -1;
    uint32_t w = rd32(m, t);
    *is_small = (w >> 16) != 0;
    if (*is_small) {
        *type = (int)(w & 0xffff);
        *nbytes = w >> 16;
        if (*nbytes > 4)
            return icn_errf(err, errlen, "%s: %s at offset %llu: small element declares %llu bytes (at most 4)",
                            m->path, what, m->offset, *nbytes);
        memcpy(small, t + 4, 4);
    } else {
        *type = (int)w;
        *nbytes = rd32(m, t + 4);
    }
    return 0;
}

/* A whole small sub-element (flags, dimensions, name) into dst[cap]; returns its byte count. */
static int64_t get_sub(icn_mat *m, int want_type, void *dst, size_t cap, const char *what, char *err, size_t errlen) {
    int type, small;
    ull n;
    uint8_t s[4];
    if (get_tag(m, &type, &n, s, &small, what, err, errlen)) return -1;
    if (type != want_type)
        return icn_errf(err, errlen, "%s: %s of the miMATRIX at offset %llu has data type %d, expected %d", m->path,
                        what, m->offset, type, want_type);
    if (n > cap)
        return icn_errf(err, errlen, "%s: %s of the miMATRIX at offset %llu declares %llu bytes, at most %zu", m->path,
                        what, m->offset, n, cap);
    if (small) memcpy(dst, s, (size_t)n);
    else if (get(m, dst, (size_t)n, what, err, errlen) || get(m, NULL, (size_t)(pad8(n) - n), what, err, errlen))
        return -1;
    return (int64_t)n;
}

/* ---------------------------------------------------------------- elements */

/* Leave the current element: a compressed one is inflated to its end and must end there. */
static int finish(icn_mat *m, char *err, size_t errlen) {
    if (!m->open) return 0;
    m->open = 0;
    m->readable = 0;
    int rc = 0;
    if (m->compressed) {
        uint8_t extra;
        rc = get(m, NULL, (size_t)m->left, "the rest", err, errlen);
        int more = rc ? -1 : inflate_some(m, &extra, 1, err, errlen); /* 1: ended where declared */
        if (more == 0)
            rc = icn_errf(err, errlen, "%s: compressed element at offset %llu inflates to more than the %llu bytes it "
                          "declares", m->path, m->offset, m->expect);
        else if (more < 0)
            rc = -1;
        else if (m->z.avail_in + m->zin_left > 0)
            rc = icn_errf(err, errlen, "%s: compressed element at offset %llu: %llu bytes after the end of its zlib "
                          "stream", m->path, m->offset, (ull)m->z.avail_in + m->zin_left);
        inflateEnd(&m->z);
    }
    if (rc == 0 && fseeko(m->f, (off_t)m->end, SEEK_SET) != 0)
        rc = icn_errf(err, errlen, "%s: %s", m->path, strerror(errno));
    return rc;
}

/* The tag of the next top-level element; sets up the bytes of its miMATRIX. 0: none left. */
static int start_element(icn_mat *m, char *err, size_t errlen) {
    off_t pos = ftello(m->f);
    if (pos < 0) return icn_errf(err, errlen, "%s: %s", m->path, strerror(errno));
    ull at = (ull)pos;
    if (at == m->size) return 0;
    m->offset = at;
    if (m->size - at < 8)
        return icn_errf(err, errlen, "%s: truncated: %llu bytes after the last element, too few for a tag", m->path,
                        m->size - at);
    uint8_t t[8];
    if (file_read(m, t, 8, err, errlen)) return -1;
    uint32_t type = rd32(m, t), nbytes = rd32(m, t + 4);
    ull remain = m->size - at - 8;
    if (type >> 16)
        return icn_errf(err, errlen, "%s: element at offset %llu is in the small form, which a top-level element "
                        "cannot be", m->path, at);
    if (type != ICN_MI_MATRIX && type != ICN_MI_COMPRESSED)
        return icn_errf(err, errlen, "%s: element at offset %llu has data type %u, expected miMATRIX (14) or "
                        "miCOMPRESSED (15)", m->path, at, type);
    if (nbytes > remain)
        return icn_errf(err, errlen, "%s: truncated: element at offset %llu declares %u bytes but only %llu remain",
                        m->path, at, nbytes, remain);
    m->open = 1;
    m->compressed = type == ICN_MI_COMPRESSED;
    if (!m->compressed) {
        m->left = m->declared = nbytes;
        m->end = at + 8 + pad8(nbytes) < m->size ? at + 8 + pad8(nbytes) : m->size;
        return 1;
    }
    m->end = at + 8 + nbytes;
    memset(&m->z, 0, sizeof m->z);
    if (inflateInit(&m->z) != Z_OK) {
        m->open = 0;
        return icn_errf(err, errlen, "%s: zlib: cannot initialise", m->path);
    }
    m->zin_left = nbytes;
    m->z_ended = 0;
    m->inflated = 0;
    m->expect = 8; /* the inflated bytes are one element: its tag first */
    uint8_t it[8];
    if (zget(m, it, 8, err, errlen)) return -1;
    uint32_t itype = rd32(m, it), inbytes = rd32(m, it + 4);
    if (itype != ICN_MI_MATRIX)
        return icn_errf(err, errlen, "%s: compressed element at offset %llu holds data type %u, expected miMATRIX "
                        "(14)", m->path, at, itype);
    if (8 + (ull)inbytes > MAX_INFLATE((ull)nbytes))
        return icn_errf(err, errlen, "%s: compressed element at offset %llu declares %u inflated bytes, more than "
                        "%u compressed bytes can hold", m->path, at, inbytes, nbytes);
    m->left = m->declared = inbytes;
    m->expect = 8 + (ull)inbytes;
    return 1;
}

int icn_mat_next(icn_mat *m, icn_mat_var *v, char *err, size_t errlen) {
    memset(v, 0, sizeof *v);
    if (finish(m, err, errlen)) return -1;
    int rc = start_element(m, err, errlen);
    if (rc <= 0) return rc;
    /* array flags: class in the low byte, complex 0x800 */
    uint8_t fl[8];
    int64_t nf = get_sub(m, ICN_MI_UINT32, fl, 8, "array flags", err, errlen);
    if (nf < 0) return -1;
    if (nf != 8)
        return icn_errf(err, errlen, "%s: miMATRIX at offset %llu: %lld bytes of array flags, expected 8", m->path,
                        m->offset, (long long)nf);
    uint32_t flags = rd32(m, fl);
    v->mx_class = (int)(flags & 0xff);
    v->complex = (flags & 0x800) != 0;
    /* dimensions */
    uint8_t d[4 * ICN_MAT_MAX_DIMS];
    int64_t nd = get_sub(m, ICN_MI_INT32, d, sizeof d, "dimensions", err, errlen);
    if (nd < 0) return -1;
    if (nd % 4 || nd < 8)
        return icn_errf(err, errlen, "%s: miMATRIX at offset %llu: %lld bytes of dimensions, expected 2 or more "
                        "int32", m->path, m->offset, (long long)nd);
    v->ndims = (int)(nd / 4);
    ull numel = 1;
    for (int i = 0; i < v->ndims; i++) {
        int32_t dim = (int32_t)rd32(m, d + 4 * i);
        if (dim < 0)
            return icn_errf(err, errlen, "%s: miMATRIX at offset %llu: dimension %d is %d", m->path, m->offset, i + 1,
                            dim);
        v->dims[i] = dim;
        numel = numel > (1ull << 62) / ((ull)dim + 1) ? 1ull << 62 : numel * (ull)dim; /* saturates: checked below */
    }
    v->numel = numel;
    /* name */
    int64_t nl = get_sub(m, ICN_MI_INT8, v->name, sizeof v->name - 1, "array name", err, errlen);
    if (nl < 0) return -1;
    v->name[nl] = 0;
    if (strlen(v->name) != (size_t)nl)
        return icn_errf(err, errlen, "%s: miMATRIX at offset %llu: array name holds a NUL byte", m->path, m->offset);
    snprintf(m->name, sizeof m->name, "%s", v->name);
    if (v->mx_class < ICN_MX_DOUBLE || v->mx_class > ICN_MX_UINT64) return 1; /* cell, struct, char...: not read */
    /* real part */
    int small;
    ull nbytes;
    char what[96];
    snprintf(what, sizeof what, "the real part of '%s'", v->name);
    if (get_tag(m, &v->type, &nbytes, m->small, &small, what, err, errlen)) return -1;
    m->elsize = type_size(v->type);
    if (!m->elsize)
        return icn_errf(err, errlen, "%s: %s has data type %d, not a numeric type", m->path, what, v->type);
    if (numel > nbytes / m->elsize || numel * m->elsize != nbytes)
        return icn_errf(err, errlen, "%s: '%s' is %llu elements by its dimensions but its real part holds %llu bytes "
                        "of %zu-byte elements", m->path, v->name, numel, nbytes, m->elsize);
    if (!small && nbytes > m->left)
        return icn_errf(err, errlen, "%s: truncated: %s declares %llu bytes but the miMATRIX element at offset %llu "
                        "has only %llu left", m->path, what, nbytes, m->offset, m->left);
    m->small_n = small ? (size_t)nbytes : 0;
    m->small_at = 0;
    m->type = v->type;
    m->data_left = numel;
    m->readable = 1;
    return 1;
}

/* The next count elements of the real part, as raw bytes in host order. */
static int read_elems(icn_mat *m, uint8_t *dst, size_t count, char *err, size_t errlen) {
    if (!m->readable) return icn_errf(err, errlen, "%s: no numeric variable to read", m->path);
    if (count > m->data_left)
        return icn_errf(err, errlen, "%s: '%s' has %llu elements left, not %zu", m->path, m->name, m->data_left, count);
    size_t n = count * m->elsize;
    if (m->small_n) {
        memcpy(dst, m->small + m->small_at, n);
        m->small_at += n;
    } else if (get(m, dst, n, "a real part", err, errlen)) {
        return -1;
    }
    m->data_left -= count;
    if (m->swap) swap_bytes(dst, m->elsize, count);
    return 0;
}

int icn_mat_read_u8(icn_mat *m, uint8_t *dst, size_t count, char *err, size_t errlen) {
    if (m->readable && m->type != ICN_MI_UINT8)
        return icn_errf(err, errlen, "%s: '%s' is stored as data type %d, not miUINT8", m->path, m->name, m->type);
    return read_elems(m, dst, count, err, errlen);
}

int icn_mat_read_f64(icn_mat *m, double *dst, size_t count, char *err, size_t errlen) {
    while (count > 0) {
        size_t k = m->elsize && count > sizeof m->buf / m->elsize ? sizeof m->buf / m->elsize : count;
        uint8_t *p = m->buf;
        if (read_elems(m, p, k, err, errlen)) return -1;
        for (size_t i = 0; i < k; i++, p += m->elsize) {
            double x;
            switch (m->type) {
            case ICN_MI_INT8: { int8_t v; memcpy(&v, p, 1); x = v; break; }
            case ICN_MI_UINT8: x = *p; break;
            case ICN_MI_INT16: { int16_t v; memcpy(&v, p, 2); x = v; break; }
            case ICN_MI_UINT16: { uint16_t v; memcpy(&v, p, 2); x = v; break; }
            case ICN_MI_INT32: { int32_t v; memcpy(&v, p, 4); x = v; break; }
            case ICN_MI_UINT32: { uint32_t v; memcpy(&v, p, 4); x = v; break; }
            case ICN_MI_SINGLE: { float v; memcpy(&v, p, 4); x = v; break; }
            case ICN_MI_DOUBLE: memcpy(&x, p, 8); break;
            case ICN_MI_INT64: { int64_t v; memcpy(&v, p, 8); x = (double)v; break; }
            default: { uint64_t v; memcpy(&v, p, 8); x = (double)v; break; }
            }
            dst[i] = x;
        }
        dst += k;
        count -= k;
    }
    return 0;
}

/* ---------------------------------------------------------------- the file */

icn_mat *icn_mat_open(const char *path, char *err, size_t errlen) {
    FILE *f = icn_fopen_regular(path, err, errlen); /* a FIFO or device is refused before reading */
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        icn_errf(err, errlen, "%s: not a regular file", path);
        return NULL;
    }
    icn_mat *m = xcalloc(1, sizeof *m);
    m->path = xmalloc(strlen(path) + 1);
    strcpy(m->path, path);
    m->f = f;
    m->size = (ull)st.st_size;
    uint8_t h[HEADER_BYTES];
    const char *magic = "MATLAB 5.0 MAT-file";
    if (m->size < HEADER_BYTES) {
        icn_errf(err, errlen, "%s: truncated: %llu bytes, less than a MAT-file's 128-byte header", path, m->size);
    } else if (file_read(m, h, HEADER_BYTES, err, errlen) == 0) {
        uint16_t version = (uint16_t)(h[124] | h[125] << 8);
        if (h[126] == 'M' && h[127] == 'I') version = (uint16_t)(h[124] << 8 | h[125]);
        if (!(h[126] == 'I' && h[127] == 'M') && !(h[126] == 'M' && h[127] == 'I'))
            icn_errf(err, errlen, "%s: not a level-5 MAT-file: endianness indicator is 0x%02x%02x, not 'IM' or 'MI'",
                     path, h[126], h[127]);
        else if (version == 0x0200)
            icn_errf(err, errlen, "%s: a MATLAB 7.3 (HDF5) MAT-file, which this reader does not read: save it with "
                     "-v7", path);
        else if (version != 0x0100)
            icn_errf(err, errlen, "%s: MAT-file version 0x%04x, expected 0x0100 (level 5)", path, version);
        else if (memcmp(h, magic, strlen(magic)) != 0)
            icn_errf(err, errlen, "%s: not a level-5 MAT-file: its text does not begin with '%s'", path, magic);
        else {
            m->swap = (h[126] == 'I') != host_little();
            return m;
        }
    }
    icn_mat_close(m);
    return NULL;
}

void icn_mat_close(icn_mat *m) {
    if (!m) return;
    if (m->open && m->compressed) inflateEnd(&m->z);
    if (m->f) fclose(m->f);
    free(m->path);
    free(m);
}
