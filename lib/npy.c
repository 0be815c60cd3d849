/* npy.c: NumPy .npy files in and out (npy.h).
 *
 * The header is parsed by hand, not evaluated: a small recursive-descent reader of exactly the
 * dict literal numpy.save writes, e.g.
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (500, 28, 28, 1), }
 * padded with spaces and ended by '\n'. Strings may use ' or " (numpy's own reader is
 * Python's literal_eval), without escapes. Every size is checked before anything is allocated:
 * the array's bytes are read only once the header's count times item size is known to be
 * exactly what the file holds. */
#include "npy.h"

#include "data.h"
#include "bytes.h"
#include "fileio.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef unsigned long long ull;

static const uint8_t npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

#define NPY_MAX_SIDE 4096
#define NPY_MAX_CHANNELS 4
#define NPY_MAX_N 100000000 /* images or labels in one file */

/* ---- header ---------------------------------------------------------------------------- */

typedef struct {
    const char *p, *end;
    char *err;
    size_t errlen;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++;
}

static int expect(cursor *c, char ch, const char *where) {
    skip_ws(c);
    if (c->p >= c->end || *c->p != ch)
        return icn_errf(c->err, c->errlen, "header: expected '%c' %s", ch, where);
    c->p++;
    return 0;
}

/* A quoted string without escapes into out. */
static int parse_string(cursor *c, char *out, size_t outlen, const char *what) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return icn_errf(c->err, c->errlen, "header: expected a quoted string as %s", what);
    char q = *c->p++;
    size_t k = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\') return icn_errf(c->err, c->errlen, "header: escapes in %s are not supported", what);
        if (k + 1 >= outlen) return icn_errf(c->err, c->errlen, "header: %s is too long", what);
        out[k++] = *c->p++;
    }
    if (c->p >= c->end) return icn_errf(c->err, c->errlen, "header: unterminated string in %s", what);
    c->p++;
    out[k] = 0;
    return 0;
}

static int parse_descr(cursor *c, icn_npy_header *h) {
    skip_ws(c);
    if (c->p < c->end && *c->p == '[')
        return icn_errf(c->err, c->errlen, "unsupported dtype: a structured array (expected uint8, <i4, <i8 or <f4)");
    char d[32];
    if (parse_string(c, d, sizeof d, "'descr'")) return -1;
    static const struct { const char *s; icn_npy_dtype t; size_t size; } known[] = {
        {"|u1", ICN_NPY_U8, 1}, {"<u1", ICN_NPY_U8, 1}, {"u1", ICN_NPY_U8, 1},
        {"<i4", ICN_NPY_I32, 4}, {"<i8", ICN_NPY_I64, 8}, {"<f4", ICN_NPY_F32, 4},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(d, known[i].s) == 0) {
            h->dtype = known[i].t;
            h->itemsize = known[i].size;
            return 0;
        }
    return icn_errf(c->err, c->errlen, "unsupported dtype '%s' (expected |u1, <i4, <i8 or <f4)", d);
}

static int parse_bool(cursor *c, int *out) {
    skip_ws(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && memcmp(c->p, "True", 4) == 0) { *out = 1; c->p += 4; return 0; }
    if (left >= 5 && memcmp(c->p, "False", 5) == 0) { *out = 0; c->p += 5; return 0; }
    return icn_errf(c->err, c->errlen, "header: 'fortran_order' must be True or False");
}

/* A tuple of non-negative integers: (), (n,), (a, b, ...) with an optional trailing comma. */
static int parse_shape(cursor *c, icn_npy_header *h) {
    if (expect(c, '(', "to open 'shape' (a tuple)")) return -1;
    h->ndim = 0;
    int commas = 0;
    for (;;) {
        skip_ws(c);
        if (c->p < c->end && *c->p == ')') { c->p++; break; }
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return icn_errf(c->err, c->errlen, "header: 'shape' must be a tuple of non-negative integers");
        if (h->ndim == ICN_NPY_MAX_DIM)
            return icn_errf(c->err, c->errlen, "header: 'shape' has more than %d dimensions", ICN_NPY_MAX_DIM);
        uint64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            v = v * 10 + (uint64_t)(*c->p++ - '0');
            if (v > ((uint64_t)1 << 40)) return icn_errf(c->err, c->errlen, "header: a dimension of 'shape' is too large");
        }
        h->shape[h->ndim++] = (int64_t)v;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') { c->p++; commas++; continue; }
        if (c->p < c->end && *c->p == ')') { c->p++; break; }
        return icn_errf(c->err, c->errlen, "header: expected ',' or ')' in 'shape'");
    }
    if (h->ndim == 1 && commas == 0) /* (5) is the integer 5 in Python, not a tuple */
        return icn_errf(c->err, c->errlen, "header: 'shape' (%lld) is not a tuple (a 1-tuple is written (%lld,))",
                        (long long)h->shape[0], (long long)h->shape[0]);
    return 0;
}

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p) { return le16(p) | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

int icn_npy_parse_header(const uint8_t *p, size_t n, uint64_t file_size, icn_npy_header *h, char *err,
                         size_t errlen) {
    memset(h, 0, sizeof *h);
    if (n > file_size) n = (size_t)file_size;
    if (n < 6 || memcmp(p, npy_magic, 6) != 0) return icn_errf(err, errlen, "not a .npy file (wrong magic)");
    if (n < 10) return icn_errf(err, errlen, "truncated: %zu bytes, not even a version and header length", n);
    h->major = p[6];
    h->minor = p[7];
    if (h->major < 1 || h->major > 3 || h->minor != 0)
        return icn_errf(err, errlen, "unsupported format version %d.%d (expected 1.0, 2.0 or 3.0)", h->major, h->minor);
    size_t pre = h->major == 1 ? 10 : 12;
    if (n < pre) return icn_errf(err, errlen, "truncated: %zu bytes, not even a header length", n);
    uint32_t hl = h->major == 1 ? le16(p + 8) : le32(p + 8);
    if (hl > ICN_NPY_MAX_HEADER)
        return icn_errf(err, errlen, "header length %u is above the limit of %d bytes", hl, ICN_NPY_MAX_HEADER);
    if (pre + hl > file_size)
        return icn_errf(err, errlen, "truncated: the header declares %u bytes but only %llu follow the preamble", hl,
                        (ull)(file_size - pre));
    if (pre + hl > n) return icn_errf(err, errlen, "header of %u bytes not given whole (internal)", hl);
    const char *s = (const char *)p + pre;
    if (hl == 0 || s[hl - 1] != '\n') return icn_errf(err, errlen, "header: does not end with a newline");
    for (uint32_t i = 0; i + 1 < hl; i++)
        if ((uint8_t)s[i] < 0x20 || (uint8_t)s[i] > 0x7e)
            if (s[i] != '\t') return icn_errf(err, errlen, "header: byte 0x%02x at offset %zu is not printable ASCII",
                                              (uint8_t)s[i], pre + i);
    cursor c = {s, s + hl - 1, err, errlen};
    if (expect(&c, '{', "at the start of the header dict")) return -1;
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
    for (;;) {
        skip_ws(&c);
        if (c.p < c.end && *c.p == '}') { c.p++; break; }
        char key[32];
        if (parse_string(&c, key, sizeof key, "a key")) return -1;
        if (expect(&c, ':', "after a key")) return -1;
        int *seen = strcmp(key, "descr") == 0           ? &seen_descr
                    : strcmp(key, "fortran_order") == 0 ? &seen_fortran
                    : strcmp(key, "shape") == 0         ? &seen_shape
                                                        : NULL;
        if (!seen) return icn_errf(err, errlen, "header: unexpected key '%s' (only descr, fortran_order, shape)", key);
        if (*seen) return icn_errf(err, errlen, "header: duplicate key '%s'", key);
        *seen = 1;
        int rc = seen == &seen_descr ? parse_descr(&c, h) : seen == &seen_fortran ? parse_bool(&c, &h->fortran_order)
                                                                                  : parse_shape(&c, h);
        if (rc) return -1;
        skip_ws(&c);
        if (c.p < c.end && *c.p == ',') { c.p++; continue; }
        if (c.p < c.end && *c.p == '}') { c.p++; break; }
        return icn_errf(err, errlen, "header: expected ',' or '}' after the value of '%s'", key);
    }
    skip_ws(&c);
    if (c.p != c.end) return icn_errf(err, errlen, "header: unexpected text after the dict");
    if (!seen_descr || !seen_fortran || !seen_shape)
        return icn_errf(err, errlen, "header: missing key '%s'",
                        !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
    uint64_t count = 1;
    for (int i = 0; i < h->ndim; i++) {
        if (h->shape[i] != 0 && count > UINT64_MAX / 16 / (uint64_t)h->shape[i])
            return icn_errf(err, errlen, "shape: the element count overflows");
        count *= (uint64_t)h->shape[i];
    }
    h->count = count;
    h->data_offset = pre + hl;
    uint64_t want = count * h->itemsize, have = file_size - h->data_offset;
    if (want != have) {
        char dims[128];
        int k = 0;
        for (int i = 0; i < h->ndim && k < (int)sizeof dims - 24; i++)
            k += snprintf(dims + k, sizeof dims - (size_t)k, "%s%lld", i ? ", " : "", (long long)h->shape[i]);
        dims[k] = 0;
        return icn_errf(err, errlen, "shape (%s) of %zu-byte items needs %llu data bytes but the file has %llu%s", dims,
                        h->itemsize, (ull)want, (ull)have, want > have ? " (truncated?)" : " (trailing bytes)");
    }
    return 0;
}

/* ---- files in ---------------------------------------------------------------------------- */

/* Open path (a regular file only), parse its header, and read its data bytes: *data holds
 * h->count * h->itemsize bytes, allocated only after the header matched the file's size. */
static int npy_read(const char *path, icn_npy_header *h, uint8_t **data, char *err, size_t errlen) {
    *data = NULL;
    int fd = icn_open_regular(path, err, errlen); /* a FIFO, device or directory is refused unread */
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return icn_errf(err, errlen, "%s: %s", path, strerror(errno));
    }
    uint64_t size = (uint64_t)st.st_size;
    uint8_t head[12 + ICN_NPY_MAX_HEADER];
    size_t want = size < sizeof head ? (size_t)size : sizeof head, got = 0;
    while (got < want) {
        ssize_t k = pread(fd, head + got, want - got, (off_t)got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            close(fd);
            return icn_errf(err, errlen, "%s: %s", path, k < 0 ? strerror(errno) : "file shrank while being read");
        }
        got += (size_t)k;
    }
    char e[ICN_ERRLEN];
    if (icn_npy_parse_header(head, got, size, h, e, sizeof e)) {
        close(fd);
        return icn_errf(err, errlen, "%s: %s", path, e);
    }
    if (h->fortran_order) {
        close(fd);
        return icn_errf(err, errlen, "%s: Fortran order is not supported (save with numpy.ascontiguousarray)", path);
    }
    size_t len = (size_t)(h->count * h->itemsize), off = 0;
    uint8_t *buf = xmalloc(len ? len : 1);
    while (off < len) {
        ssize_t k = pread(fd, buf + off, len - off, (off_t)(h->data_offset + off));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            free(buf);
            close(fd);
            return icn_errf(err, errlen, "%s: %s", path, k < 0 ? strerror(errno) : "file shrank while being read");
        }
        off += (size_t)k;
    }
    close(fd);
    *data = buf;
    return 0;
}

static const char *dtype_name(icn_npy_dtype t) {
    return t == ICN_NPY_U8 ? "uint8" : t == ICN_NPY_I32 ? "int32" : t == ICN_NPY_I64 ? "int64" : "float32";
}

int icn_npy_load_images(const char *path, int nchw, icn_batch *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    icn_npy_header h;
    uint8_t *raw;
    if (npy_read(path, &h, &raw, err, errlen)) return -1;
    int rc = -1;
    int64_t n = h.shape[0], H, W, C;
    if (h.dtype != ICN_NPY_U8 && h.dtype != ICN_NPY_F32) {
        icn_errf(err, errlen, "%s: images of dtype %s (expected uint8 or float32)", path, dtype_name(h.dtype));
        goto done;
    }
    if (h.ndim == 3) H = h.shape[1], W = h.shape[2], C = 1;
    else if (h.ndim == 4 && !nchw) H = h.shape[1], W = h.shape[2], C = h.shape[3];
    else if (h.ndim == 4) C = h.shape[1], H = h.shape[2], W = h.shape[3];
    else {
        icn_errf(err, errlen, "%s: images of %d dimensions (expected (n, h, w) or (n, %s))", path, h.ndim,
                 nchw ? "c, h, w" : "h, w, c");
        goto done;
    }
    if (n < 1 || n > NPY_MAX_N || H < 1 || H > NPY_MAX_SIDE || W < 1 || W > NPY_MAX_SIDE || C < 1 ||
        C > NPY_MAX_CHANNELS) {
        icn_errf(err, errlen,
                 "%s: %lld images of %lldx%lld with %lld channels (expected 1 to %d images, sides 1 to %d, 1 to %d "
                 "channels%s)",
                 path, (long long)n, (long long)H, (long long)W, (long long)C, NPY_MAX_N, NPY_MAX_SIDE, NPY_MAX_CHANNELS,
                 h.ndim == 4 && !nchw && h.shape[1] <= NPY_MAX_CHANNELS ? "; channels first? try --nchw" : "");
        goto done;
    }
    icn_batch_alloc(out, (int32_t)n, (int32_t)H, (int32_t)W, (int32_t)C, 0);
    size_t img = (size_t)(H * W * C), plane = nchw ? (size_t)(H * W) : 1;
    size_t row = nchw ? (size_t)W : (size_t)(W * C), col = nchw ? 1 : (size_t)C;
    for (int64_t i = 0; i < n; i++) {
        float *dst = out->x + (size_t)i * img;
        if (h.dtype == ICN_NPY_U8) {
            icn_pixels_from_u8(dst, raw + (size_t)i * img, (int)H, (int)W, (int)C, plane, row, col);
            continue;
        }
        const uint8_t *src = raw + (size_t)i * img * 4;
        for (int64_t r = 0; r < H; r++)
            for (int64_t q = 0; q < W; q++)
                for (int64_t k = 0; k < C; k++) {
                    size_t at = (size_t)k * plane + (size_t)r * row + (size_t)q * col;
                    float v;
                    icn_le_load_f32(&v, src + at * 4, 1);
                    if (!isfinite(v) || v < -1.0f || v > 1.0f) {
                        icn_errf(err, errlen, "%s: image %lld, pixel (%lld, %lld, channel %lld) is %g: float32 "
                                 "pixels must be finite and in [-1, 1] (scale them, or save uint8)",
                                 path, (long long)i, (long long)r, (long long)q, (long long)k, (double)v);
                        icn_batch_free(out);
                        goto done;
                    }
                    dst[((size_t)r * (size_t)W + (size_t)q) * (size_t)C + (size_t)k] = v;
                }
    }
    rc = 0;
done:
    free(raw);
    return rc;
}

int icn_npy_load_labels(const char *path, int32_t n, int32_t **y, char *err, size_t errlen) {
    *y = NULL;
    icn_npy_header h;
    uint8_t *raw;
    if (npy_read(path, &h, &raw, err, errlen)) return -1;
    int rc = -1;
    if (h.dtype == ICN_NPY_F32) {
        icn_errf(err, errlen, "%s: labels of dtype float32 (expected uint8, int32 or int64)", path);
        goto done;
    }
    if (h.ndim != 1) {
        icn_errf(err, errlen, "%s: labels of %d dimensions (expected shape (n,))", path, h.ndim);
        goto done;
    }
    if (h.shape[0] != n) {
        icn_errf(err, errlen, "%s: %lld labels for %d images", path, (long long)h.shape[0], n);
        goto done;
    }
    int32_t *out = xmalloc((size_t)n * sizeof *out + 1);
    for (int32_t i = 0; i < n; i++) {
        int64_t v;
        if (h.dtype == ICN_NPY_U8) v = raw[i];
        else if (h.dtype == ICN_NPY_I32) v = (int32_t)le32(raw + (size_t)i * 4);
        else v = (int64_t)((uint64_t)le32(raw + (size_t)i * 8) | (uint64_t)le32(raw + (size_t)i * 8 + 4) << 32);
        if (v < 0 || v > ICN_NPY_MAX_LABEL) {
            icn_errf(err, errlen, "%s: label %d is %lld (expected 0 to %d)", path, i, (long long)v, ICN_NPY_MAX_LABEL);
            free(out);
            goto done;
        }
        out[i] = (int32_t)v;
    }
    *y = out;
    rc = 0;
done:
    free(raw);
    return rc;
}

int icn_npy_load(const char *images, const char *labels, int nchw, icn_batch *out, char *err, size_t errlen) {
    if (icn_npy_load_images(images, nchw, out, err, errlen)) return -1;
    if (icn_npy_load_labels(labels, out->n, &out->y, err, errlen)) {
        icn_batch_free(out);
        return -1;
    }
    return 0;
}

/* ---- files out --------------------------------------------------------------------------- */

int icn_npy_encode(const char *descr, const char *shape, const void *data, size_t data_len, uint8_t **out,
                   size_t *out_len, char *err, size_t errlen) {
    char dict[512];
    int k = snprintf(dict, sizeof dict, "{'descr': %s, 'fortran_order': False, 'shape': %s, }", descr, shape);
    if (k < 0 || (size_t)k >= sizeof dict - 64) return icn_errf(err, errlen, ".npy header too long");
    size_t hl = (size_t)k + 1, total = 10 + hl;
    size_t pad = (64 - total % 64) % 64; /* numpy pads the preamble and header to a multiple of 64 */
    hl += pad;
    size_t len = 10 + hl + data_len;
    uint8_t *b = xmalloc(len);
    memcpy(b, npy_magic, 6);
    b[6] = 1;
    b[7] = 0;
    b[8] = (uint8_t)(hl & 0xff);
    b[9] = (uint8_t)(hl >> 8);
    memcpy(b + 10, dict, (size_t)k);
    memset(b + 10 + k, ' ', pad);
    b[10 + hl - 1] = '\n';
    if (data_len) memcpy(b + 10 + hl, data, data_len);
    *out = b;
    *out_len = len;
    return 0;
}

static int write_npy(const char *prefix, const char *suffix, const char *descr, const char *shape,
                     const void *data, size_t data_len, char *err, size_t errlen) {
    size_t pl = strlen(prefix) + strlen(suffix) + 1;
    char *path = xmalloc(pl);
    snprintf(path, pl, "%s%s", prefix, suffix);
    uint8_t *bytes;
    size_t len;
    int rc = icn_npy_encode(descr, shape, data, data_len, &bytes, &len, err, errlen);
    if (rc == 0) {
        rc = icn_write_file_atomic(path, bytes, len, err, errlen);
        free(bytes);
    }
    free(path);
    return rc;
}

int icn_npy_write_batch(const char *prefix, const icn_batch *b, char *err, size_t errlen) {
    size_t n = (size_t)b->n, dim = icn_batch_dim(b);
    char shape[96];
    snprintf(shape, sizeof shape, "(%d, %d, %d, %d)", b->n, b->h, b->w, b->c);
    uint8_t *buf = xmalloc(n * dim * 4 + 1);
    icn_le_store_f32(buf, b->x, n * dim);
    int rc = write_npy(prefix, "-images.npy", "'<f4'", shape, buf, n * dim * 4, err, errlen);
    free(buf);
    snprintf(shape, sizeof shape, "(%d,)", b->n);
    if (rc == 0 && b->y) {
        buf = xmalloc(n * 4 + 1);
        for (size_t i = 0; i < n; i++) {
            uint32_t v = (uint32_t)b->y[i];
            for (int k = 0; k < 4; k++) buf[i * 4 + (size_t)k] = (uint8_t)(v >> (8 * k));
        }
        rc = write_npy(prefix, "-labels.npy", "'<i4'", shape, buf, n * 4, err, errlen);
        free(buf);
    }
    if (rc == 0 && b->prov) {
        enum { REC = 17 };
        buf = xmalloc(n * REC + 1);
        for (size_t i = 0; i < n; i++) {
            const icn_provenance *p = &b->prov[i];
            uint8_t *r = buf + i * REC;
            uint32_t f[5] = {(uint32_t)p->generation, (uint32_t)p->steps, 0, p->reached, p->producer};
            icn_le_store_f32(r + 8, &p->logit, 1);
            for (int k = 0; k < 4; k++) {
                r[k] = (uint8_t)(f[0] >> (8 * k));
                r[4 + k] = (uint8_t)(f[1] >> (8 * k));
                r[13 + k] = (uint8_t)(f[4] >> (8 * k));
            }
            r[12] = (uint8_t)f[3];
        }
        rc = write_npy(prefix, "-prov.npy",
                       "[('generation', '<i4'), ('steps', '<i4'), ('logit', '<f4'), ('reached', '|u1'), "
                       "('producer', '<u4')]",
                       shape, buf, n * REC, err, errlen);
        free(buf);
    }
    return rc;
}
