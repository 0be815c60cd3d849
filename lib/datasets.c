/* datasets.c: the named data sets on disk: where they live, which files a split reads, and the
 * readers of their formats: MNIST-style IDX files (plain or gzip), CIFAR-10 records, SVHN's
 * MAT-files.
 *
 * IDX files are untrusted like everything else: the header's counts are checked against the bytes
 * that are really there (inflated, for gzip, no further than the header declares) before anything
 * is allocated for them (a 16-byte file may declare 10 million images).
 * Both readers append to one batch whose memory grows with the images actually read, never
 * past what the file can hold: a CIFAR file's record count comes from its size, and SVHN's X
 * is read an image at a time from a stream whose size matfile.c has bounded. */
#include "datasets.h"

#include "matfile.h"
#include "fileio.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef unsigned long long ull;

/* ---------------------------------------------------------------- IDX files (mnist, fashion) */

#define IDX_IMAGES 0x00000803u
#define IDX_LABELS 0x00000801u
#define IDX_MAX_N 10000000u
#define IDX_MAX_SIDE 4096u

/* Read up to len bytes; returns the count read (short only at end of data) or -1 with err. */
static int64_t gz_read_full(gzFile f, const char *path, void *buf, size_t len, char *err, size_t errlen) {
    size_t got = 0;
    while (got < len) {
        size_t want = len - got < (1u << 30) ? len - got : (1u << 30); /* gzread takes an unsigned int */
        int k = gzread(f, (uint8_t *)buf + got, (unsigned)want);
        if (k < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            size_t pl = strlen(path); /* zlib prefixes its message with the path: don't repeat it */
            if (strncmp(msg, path, pl) == 0 && strncmp(msg + pl, ": ", 2) == 0) msg += pl + 2;
            return icn_errf(err, errlen, "%s: %s", path, zerr == Z_ERRNO ? strerror(errno) : msg);
        }
        if (k == 0) break;
        got += (size_t)k;
    }
    return (int64_t)got;
}

typedef struct {
    const char *path;
    gzFile f;
    uint32_t magic, n, rows, cols; /* rows = cols = 1 for labels */
    size_t hlen;                   /* header bytes: 16 (images) or 8 (labels) */
} idx_file;

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int idx_open(idx_file *x, const char *path, uint32_t magic, char *err, size_t errlen) {
    memset(x, 0, sizeof *x);
    x->path = path;
    int fd = icn_open_regular(path, err, errlen); /* a FIFO or device is refused before reading */
    if (fd < 0) return -1;
    errno = 0;
    x->f = gzdopen(fd, "rb");
    if (!x->f) {
        close(fd);
        return icn_errf(err, errlen, "%s: %s", path, errno ? strerror(errno) : "cannot open");
    }
    uint8_t h[16];
    size_t hlen = magic == IDX_IMAGES ? 16 : 8;
    int64_t got = gz_read_full(x->f, path, h, hlen, err, errlen);
    if (got < 0) return -1;
    if ((size_t)got < 4 || be32(h) != magic)
        return icn_errf(err, errlen, "%s: not an IDX %s file (magic 0x%08x, expected 0x%08x)", path,
                        magic == IDX_IMAGES ? "image" : "label", (size_t)got >= 4 ? be32(h) : 0u, magic);
    if ((size_t)got < hlen) return icn_errf(err, errlen, "%s: truncated: header of %lld of %zu bytes", path, (long long)got, hlen);
    x->magic = magic;
    x->hlen = hlen;
    x->n = be32(h + 4);
    x->rows = hlen == 16 ? be32(h + 8) : 1;
    x->cols = hlen == 16 ? be32(h + 12) : 1;
    if (x->n < 1 || x->n > IDX_MAX_N)
        return icn_errf(err, errlen, "%s: header declares %u items, expected 1 to %u", path, x->n, IDX_MAX_N);
    if (x->rows < 1 || x->rows > IDX_MAX_SIDE || x->cols < 1 || x->cols > IDX_MAX_SIDE)
        return icn_errf(err, errlen, "%s: header declares images of %ux%u, expected sides of 1 to %u", path, x->rows,
                        x->cols, IDX_MAX_SIDE);
    return 0;
}

static void idx_close(idx_file *x) {
    if (x->f) gzclose(x->f);
    x->f = NULL;
}

static int idx_short(const idx_file *x, ull present, char *err, size_t errlen) {
    ull want = (ull)x->n * x->rows * x->cols;
    if (x->magic == IDX_LABELS)
        return icn_errf(err, errlen, "%s: truncated: header declares %u labels but only %llu present", x->path, x->n, present);
    return icn_errf(err, errlen, "%s: truncated: header declares %u images of %ux%u (%llu bytes) but only %llu present",
                    x->path, x->n, x->rows, x->cols, want, present);
}

#define IDX_MAX_TRAILING_COUNT ((ull)1 << 26)

/* The data after the header, counted by reading (for gzip: inflating) at most what the header
 * declares plus one byte with a fixed buffer, then back to where the data starts. So what a
 * header declares is held against what the file really holds before anything is allocated for
 * it, and inflation never runs far past the declared size: a gzip bomb costs 64 KiB, not GBs. */
static int idx_check_size(idx_file *x, char *err, size_t errlen) {
    ull want = (ull)x->n * x->rows * x->cols, have = 0, extra = 0;
    uint8_t buf[65536];
    for (;;) {
        ull left = want + 1 - have;
        size_t k = left < sizeof buf ? (size_t)left : sizeof buf;
        int64_t got = gz_read_full(x->f, x->path, buf, k, err, errlen);
        if (got < 0) return -1;
        have += (ull)got;
        if ((size_t)got < k || have > want) break;
    }
    if (have < want) return idx_short(x, have, err, errlen);
    if (have > want) { /* say how many extra bytes, counting a bounded number of them */
        extra = 1;
        for (int64_t got = 1; got > 0 && extra <= IDX_MAX_TRAILING_COUNT; extra += (ull)got)
            if ((got = gz_read_full(x->f, x->path, buf, sizeof buf, err, errlen)) < 0) return -1;
        if (extra > IDX_MAX_TRAILING_COUNT)
            return icn_errf(err, errlen, "%s: more than %llu trailing bytes after the %u items its header declares",
                            x->path, IDX_MAX_TRAILING_COUNT, x->n);
        return icn_errf(err, errlen, "%s: %llu trailing bytes after the %u items its header declares", x->path, extra,
                        x->n);
    }
    if (gzseek(x->f, (z_off_t)x->hlen, SEEK_SET) != (z_off_t)x->hlen)
        return icn_errf(err, errlen, "%s: cannot go back to the start of its data", x->path);
    return 0;
}

/* Pixels as floats in [-1, 1], into one array of the size checked by idx_check_size. */
static int idx_read_images(idx_file *x, float **out, char *err, size_t errlen) {
    size_t img = (size_t)x->rows * x->cols, block = img < (1u << 20) ? (1u << 20) / img : 1;
    if (block > x->n) block = x->n;
    uint8_t *raw = xmalloc(block * img);
    float *px = xmalloc((size_t)x->n * img * sizeof(float));
    size_t done = 0;
    int rc = 0;
    while (rc == 0 && done < x->n) {
        size_t want = x->n - done < block ? x->n - done : block;
        int64_t got = gz_read_full(x->f, x->path, raw, want * img, err, errlen);
        if (got < 0) { rc = -1; break; }
        if ((size_t)got < want * img) { rc = idx_short(x, (ull)done * img + (ull)got, err, errlen); break; }
        for (size_t i = 0; i < want; i++)
            icn_pixels_from_u8(px + (done + i) * img, raw + i * img, (int)x->rows, (int)x->cols, 1, img, x->cols, 1);
        done += want;
    }
    free(raw);
    if (rc) free(px);
    else *out = px;
    return rc;
}

static int idx_read_labels(idx_file *x, int32_t **out, char *err, size_t errlen) {
    uint8_t *raw = xmalloc(x->n); /* the size was checked by idx_check_size */
    int64_t got = gz_read_full(x->f, x->path, raw, x->n, err, errlen);
    int rc = got < 0 ? -1 : (size_t)got < x->n ? idx_short(x, (ull)got, err, errlen) : 0;
    if (rc == 0) {
        *out = xmalloc((size_t)x->n * sizeof(int32_t));
        for (uint32_t i = 0; i < x->n; i++) (*out)[i] = raw[i];
    }
    free(raw);
    return rc;
}

int icn_idx_load(const char *images_path, const char *labels_path, icn_batch *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    idx_file im, lb;
    memset(&lb, 0, sizeof lb);
    int rc = idx_open(&im, images_path, IDX_IMAGES, err, errlen);
    if (rc == 0) rc = idx_open(&lb, labels_path, IDX_LABELS, err, errlen);
    if (rc == 0 && im.n != lb.n)
        rc = icn_errf(err, errlen, "%s: %u images but %s has %u labels", images_path, im.n, labels_path, lb.n);
    float *x = NULL;
    int32_t *y = NULL;
    if (rc == 0) rc = idx_check_size(&lb, err, errlen); /* both before allocating for either */
    if (rc == 0) rc = idx_check_size(&im, err, errlen);
    if (rc == 0) rc = idx_read_labels(&lb, &y, err, errlen);
    if (rc == 0) rc = idx_read_images(&im, &x, err, errlen);
    idx_close(&im);
    idx_close(&lb);
    if (rc) {
        free(y);
        return -1;
    }
    *out = (icn_batch){(int32_t)im.n, (int32_t)im.rows, (int32_t)im.cols, 1, x, y, NULL};
    return 0;
}

/* ---------------------------------------------------------------- where data lives */

char *icn_path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = xmalloc(n);
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

char *icn_data_dir(void) {
    const char *d = getenv("ICN_DATA");
    if (d && *d) {
        char *s = xmalloc(strlen(d) + 1);
        return strcpy(s, d);
    }
    d = getenv("XDG_CACHE_HOME");
    if (d && *d) return icn_path_join(d, "icn");
    d = getenv("HOME");
    if (!d || !*d) {
        struct passwd *pw = getpwuid(getuid());
        d = pw && pw->pw_dir ? pw->pw_dir : "/tmp";
    }
    return icn_path_join(d, ".cache/icn");
}

/* PATH if it exists, else PATH.gz if that does; NULL when neither. */
static char *existing(const char *dir, const char *name) {
    char *p = icn_path_join(dir, name);
    struct stat st;
    if (stat(p, &st) == 0) return p;
    size_t n = strlen(p) + 4;
    p = xrealloc(p, n);
    strcat(p, ".gz");
    if (stat(p, &st) == 0) return p;
    free(p);
    return NULL;
}

int icn_dataset_files(const char *name, icn_split s, char **images, char **labels, char *err, size_t errlen) {
    *images = *labels = NULL;
    const char *sub = strcmp(name, "mnist") == 0 ? "mnist" : strcmp(name, "fashion") == 0 ? "fashion-mnist" : NULL;
    if (!sub) return icn_errf(err, errlen, "unknown data set '%s' (expected mnist or fashion)", name);
    char *root = icn_data_dir(), *dir = icn_path_join(root, sub);
    free(root);
    const char *set = s == ICN_SPLIT_TEST ? "t10k" : "train";
    char iname[64], lname[64];
    snprintf(iname, sizeof iname, "%s-images-idx3-ubyte", set);
    snprintf(lname, sizeof lname, "%s-labels-idx1-ubyte", set);
    *images = existing(dir, iname);
    *labels = existing(dir, lname);
    int rc = 0;
    if (!*images || !*labels) {
        rc = icn_errf(err, errlen, "%s: no %s[.gz] in %s; run: icn-load --fetch %s", name, !*images ? iname : lname, dir, name);
        free(*images);
        free(*labels);
        *images = *labels = NULL;
    }
    free(dir);
    return rc;
}

/* ---------------------------------------------------------------- CIFAR-10 and SVHN */

#define SIDE 32
#define CHANNELS 3
#define PLANE (SIDE * SIDE)
#define IMG (PLANE * CHANNELS)
#define CIFAR_RECORD (1 + IMG)
#define CIFAR_BLOCK 1024 /* records read at a time */

/* Room for `need` images in b (x and y), doubling, never past `upper`. */
static void reserve(icn_batch *b, size_t *cap, size_t need, size_t upper) {
    if (need <= *cap) return;
    size_t c = *cap * 2;
    if (c < need) c = need;
    if (c > upper) c = upper;
    b->x = xrealloc(b->x, c * IMG * sizeof(float));
    b->y = xrealloc(b->y, c * sizeof(int32_t));
    *cap = c;
}

static int too_many(const char *path, const icn_batch *b, ull more, char *err, size_t errlen) {
    if ((ull)b->n + more <= INT32_MAX) return 0;
    return icn_errf(err, errlen, "%s: %llu more images would make more than %d in one batch", path, more, INT32_MAX);
}

/* ---------------------------------------------------------------- CIFAR-10 */

static int cifar_file(const char *path, icn_batch *b, size_t *cap, char *err, size_t errlen) {
    FILE *f = icn_fopen_regular(path, err, errlen); /* a FIFO or device is refused before reading */
    if (!f) return -1;
    struct stat st;
    int rc = 0;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) rc = icn_errf(err, errlen, "%s: not a regular file", path);
    ull size = rc ? 0 : (ull)st.st_size, n = size / CIFAR_RECORD, part = size % CIFAR_RECORD;
    if (rc == 0 && size == 0) rc = icn_errf(err, errlen, "%s: empty: no CIFAR-10 records", path);
    if (rc == 0 && part)
        rc = icn_errf(err, errlen, "%s: truncated: record %llu has %llu of its %d bytes (a record is 1 label byte and "
                      "3,072 pixel bytes)", path, n + 1, part, CIFAR_RECORD);
    if (rc == 0) rc = too_many(path, b, n, err, errlen);
    uint8_t *rec = rc ? NULL : xmalloc((size_t)(n < CIFAR_BLOCK ? n : CIFAR_BLOCK) * CIFAR_RECORD);
    if (rc == 0) reserve(b, cap, (size_t)(b->n + n), (size_t)(b->n + n));
    for (ull i = 0; rc == 0 && i < n; i += CIFAR_BLOCK) {
        size_t k = n - i < CIFAR_BLOCK ? (size_t)(n - i) : CIFAR_BLOCK;
        if (fread(rec, CIFAR_RECORD, k, f) != k) {
            rc = icn_errf(err, errlen, "%s: %s", path, ferror(f) ? strerror(errno) : "shorter than when it was opened");
            break;
        }
        for (size_t j = 0; j < k; j++) {
            const uint8_t *r = rec + j * CIFAR_RECORD;
            if (r[0] > 9) {
                rc = icn_errf(err, errlen, "%s: record %llu has label %u, expected 0..9", path, i + j + 1, r[0]);
                break;
            }
            /* planes of red, green, blue, each row-major */
            icn_pixels_from_u8(b->x + (size_t)b->n * IMG, r + 1, SIDE, SIDE, CHANNELS, PLANE, SIDE, 1);
            b->y[b->n++] = r[0];
        }
    }
    free(rec);
    fclose(f);
    return rc;
}

/* ---------------------------------------------------------------- SVHN */

static void dims_str(const icn_mat_var *v, char *s, size_t len) {
    size_t k = 0;
    for (int i = 0; i < v->ndims && k < len; i++)
        k += (size_t)snprintf(s + k, len - k, "%s%lld", i ? "x" : "", (long long)v->dims[i]);
}

/* X and y must agree, whichever comes first in the file. */
static int mismatch(const char *path, int64_t nx, int64_t ny, char *err, size_t errlen) {
    if (nx < 0 || ny < 0 || nx == ny) return 0;
    return icn_errf(err, errlen, "%s: X holds %lld images but y %lld labels", path, (long long)nx, (long long)ny);
}

/* X: 32x32x3xN uint8, column-major: pixel (row, col) of channel k of image i is element
 * row + 32*col + 1024*k + 3072*i. Written to images base.. of b. */
static int svhn_images(icn_mat *m, const icn_mat_var *v, icn_batch *b, size_t *cap, int64_t ny, int64_t *nx,
                       char *err, size_t errlen) {
    const char *path = icn_mat_path(m);
    char shape[96] = "";
    dims_str(v, shape, sizeof shape);
    if (v->mx_class != ICN_MX_UINT8 || v->complex || v->type != ICN_MI_UINT8)
        return icn_errf(err, errlen, "%s: X is not a real uint8 array stored as miUINT8 (class %d, data type %d)", path,
                        v->mx_class, v->type);
    int shaped = v->dims[0] == SIDE && v->dims[1] == SIDE && v->dims[2] == CHANNELS;
    if (!(v->ndims == 4 && shaped) && !(v->ndims == 3 && shaped)) /* MATLAB drops a trailing 1 */
        return icn_errf(err, errlen, "%s: X is %s, expected 32x32x3xN", path, shape);
    int64_t n = v->ndims == 4 ? v->dims[3] : 1;
    if (n < 1) return icn_errf(err, errlen, "%s: X holds no images (%s)", path, shape);
    if (mismatch(path, n, ny, err, errlen)) return -1;
    if (too_many(path, b, (ull)n, err, errlen)) return -1;
    uint8_t raw[IMG];
    size_t base = (size_t)b->n;
    for (int64_t i = 0; i < n; i++) {
        reserve(b, cap, base + (size_t)i + 1, base + (size_t)n);
        if (icn_mat_read_u8(m, raw, IMG, err, errlen)) return -1;
        icn_pixels_from_u8(b->x + (base + (size_t)i) * IMG, raw, SIDE, SIDE, CHANNELS, PLANE, 1, SIDE);
    }
    *nx = n;
    return 0;
}

/* y: N x 1 (or 1 x N), double or uint8, 1..10 with 10 for the digit 0. Into *labels (0..9). */
static int svhn_labels(icn_mat *m, const icn_mat_var *v, int64_t nx, int32_t **labels, int64_t *ny, char *err,
                       size_t errlen) {
    const char *path = icn_mat_path(m);
    char shape[96] = "";
    dims_str(v, shape, sizeof shape);
    if ((v->mx_class != ICN_MX_DOUBLE && v->mx_class != ICN_MX_UINT8) || v->complex)
        return icn_errf(err, errlen, "%s: y is not a real double or uint8 array (class %d)", path, v->mx_class);
    if (v->ndims != 2 || (v->dims[0] != 1 && v->dims[1] != 1))
        return icn_errf(err, errlen, "%s: y is %s, expected Nx1", path, shape);
    int64_t n = (int64_t)v->numel;
    if (n < 1) return icn_errf(err, errlen, "%s: y holds no labels (%s)", path, shape);
    if (mismatch(path, nx, n, err, errlen)) return -1;
    double chunk[4096];
    for (int64_t done = 0; done < n;) {
        size_t k = n - done < 4096 ? (size_t)(n - done) : 4096;
        if (icn_mat_read_f64(m, chunk, k, err, errlen)) return -1;
        *labels = xrealloc(*labels, (size_t)(done + (int64_t)k) * sizeof(int32_t));
        for (size_t j = 0; j < k; j++, done++) {
            double y = chunk[j];
            if (!(y >= 1 && y <= 10) || y != floor(y))
                return icn_errf(err, errlen, "%s: y(%lld) is %g, expected a label 1..10", path, (long long)done + 1, y);
            (*labels)[done] = y == 10 ? 0 : (int32_t)y; /* SVHN's 10 is the digit 0 */
        }
    }
    *ny = n;
    return 0;
}

static int svhn_file(const char *path, icn_batch *b, size_t *cap, char *err, size_t errlen) {
    icn_mat *m = icn_mat_open(path, err, errlen);
    if (!m) return -1;
    int64_t nx = -1, ny = -1;
    int32_t *labels = NULL;
    icn_mat_var v;
    int rc;
    while ((rc = icn_mat_next(m, &v, err, errlen)) == 1) {
        int is_x = strcmp(v.name, "X") == 0, is_y = strcmp(v.name, "y") == 0;
        rc = 0; /* other variables are passed over */
        if ((is_x && nx >= 0) || (is_y && ny >= 0))
            rc = icn_errf(err, errlen, "%s: two variables named %s", path, v.name);
        else if (is_x) rc = svhn_images(m, &v, b, cap, ny, &nx, err, errlen);
        else if (is_y) rc = svhn_labels(m, &v, nx, &labels, &ny, err, errlen);
        if (rc) break;
    }
    if (rc == 0 && nx < 0) rc = icn_errf(err, errlen, "%s: no variable X (the images)", path);
    if (rc == 0 && ny < 0) rc = icn_errf(err, errlen, "%s: no variable y (the labels)", path);
    if (rc == 0) {
        memcpy(b->y + b->n, labels, (size_t)nx * sizeof(int32_t));
        b->n += (int32_t)nx;
    }
    free(labels);
    icn_mat_close(m);
    return rc;
}

/* ---------------------------------------------------------------- loading */

typedef int (*file_reader)(const char *path, icn_batch *b, size_t *cap, char *err, size_t errlen);

static int load_files(file_reader read, const char *const *paths, int n_paths, icn_batch *out, char *err,
                      size_t errlen) {
    memset(out, 0, sizeof *out);
    out->h = out->w = SIDE;
    out->c = CHANNELS;
    size_t cap = 0;
    for (int i = 0; i < n_paths; i++)
        if (read(paths[i], out, &cap, err, errlen)) {
            icn_batch_free(out);
            return -1;
        }
    return 0;
}

int icn_cifar10_load(const char *const *paths, int n_paths, icn_batch *out, char *err, size_t errlen) {
    return load_files(cifar_file, paths, n_paths, out, err, errlen);
}

int icn_svhn_load(const char *const *paths, int n_paths, icn_batch *out, char *err, size_t errlen) {
    return load_files(svhn_file, paths, n_paths, out, err, errlen);
}

int icn_dataset_check(const char *name, const char *dir, icn_split s, char *err, size_t errlen) {
    int idx = !strcmp(name, "mnist") || !strcmp(name, "fashion"), svhn = !strcmp(name, "svhn");
    if (!idx && !svhn && strcmp(name, "cifar10"))
        return icn_errf(err, errlen, "unknown data set '%s' (expected mnist, fashion, cifar10 or svhn)", name);
    if (!svhn && (s == ICN_SPLIT_EXTRA || s == ICN_SPLIT_TRAIN_EXTRA))
        return icn_errf(err, errlen, "%s has no split %s (train, val, test or all)", name, icn_split_name(s));
    if (idx && dir)
        return icn_errf(err, errlen, "%s: its files live in the data directory (icn-load --fetch %s); a directory of "
                        "your choice is for cifar10 and svhn", name, name);
    return 0;
}

int icn_dataset_load(const char *name, const char *dir, icn_split s, icn_batch *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (icn_dataset_check(name, dir, s, err, errlen)) return -1;
    int idx = !strcmp(name, "mnist") || !strcmp(name, "fashion"), cifar = !strcmp(name, "cifar10");
    if (idx) {
        char *images, *labels;
        if (icn_dataset_files(name, s, &images, &labels, err, errlen)) return -1;
        int rc = icn_idx_load(images, labels, out, err, errlen);
        free(images), free(labels);
        return rc;
    }
    typedef struct { const char *names[5]; } file_set; /* the files a split reads, in order */
    static const file_set cifar_train = {{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                          "data_batch_4.bin", "data_batch_5.bin"}},
                          cifar_test = {{"test_batch.bin"}}, svhn_train = {{"train_32x32.mat"}},
                          svhn_test = {{"test_32x32.mat"}}, svhn_extra = {{"extra_32x32.mat"}},
                          svhn_both = {{"train_32x32.mat", "extra_32x32.mat"}};
    const file_set *set = cifar ? (s == ICN_SPLIT_TEST ? &cifar_test : &cifar_train)
                          : s == ICN_SPLIT_TEST         ? &svhn_test
                          : s == ICN_SPLIT_EXTRA        ? &svhn_extra
                          : s == ICN_SPLIT_TRAIN_EXTRA  ? &svhn_both
                                                        : &svhn_train;
    const char *const *names = set->names;
    int n = 0;
    while (n < 5 && names[n]) n++;
    char *root = dir ? NULL : icn_data_dir();
    char *d = dir ? strcpy(xmalloc(strlen(dir) + 1), dir)
                  : icn_path_join(root, cifar ? "cifar-10-batches-bin" : "svhn");
    free(root);
    char *paths[5] = {0};
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        paths[i] = icn_path_join(d, names[i]);
        struct stat st;
        if (stat(paths[i], &st) == 0) continue;
        if (errno != ENOENT) rc = icn_errf(err, errlen, "%s: %s", paths[i], strerror(errno));
        else if (cifar)
            rc = icn_errf(err, errlen, "cifar10: no %s in %s: get %s and unpack it there (tar xzf "
                          "cifar-10-binary.tar.gz --strip-components 1 -C %s)", names[i], d, ICN_CIFAR10_URL, d);
        else
            rc = icn_errf(err, errlen, "svhn: no %s in %s: get %s%s into it", names[i], d, ICN_SVHN_URL, names[i]);
    }
    if (rc == 0)
        rc = (cifar ? icn_cifar10_load : icn_svhn_load)((const char *const *)paths, n, out, err, errlen);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(d);
    return rc;
}
