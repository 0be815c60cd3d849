/* data.c: MNIST-style IDX files into batches, the train/val/test split, seeded subsets.
 *
 * IDX files are untrusted like everything else: the header's counts are checked against
 * the bytes that are really there (inflated, for gzip, no further than the header declares)
 * before anything is allocated for them (a 16-byte file may declare 10 million images). */
#include "data.h"

#include "fileio.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef unsigned long long ull;

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

void icn_pixels_from_u8(float *dst, const uint8_t *src, int h, int w, int c, size_t plane, size_t row_stride,
                        size_t col_stride) {
    for (int r = 0; r < h; r++)
        for (int col = 0; col < w; col++)
            for (int k = 0; k < c; k++) /* x/127.5 - 1: 0 -> -1 and 255 -> 1 exactly */
                *dst++ = (float)src[(size_t)k * plane + (size_t)r * row_stride + (size_t)col * col_stride] / 127.5f - 1.0f;
}

/* ---------------------------------------------------------------- splits */

static const char *const split_names[] = {"train", "val", "test", "all", "extra", "train+extra"};
#define N_SPLITS (int)(sizeof split_names / sizeof split_names[0])

int icn_split_parse(const char *s, icn_split *out) {
    for (int i = 0; i < N_SPLITS; i++)
        if (strcmp(s, split_names[i]) == 0) {
            *out = (icn_split)i;
            return 0;
        }
    return -1;
}

const char *icn_split_name(icn_split s) { return (unsigned)s < (unsigned)N_SPLITS ? split_names[s] : "?"; }

void icn_split_range(icn_split s, int32_t n, int32_t *start, int32_t *count) {
    /* val is the last n/12 images: exactly the paper's last 5,000 of MNIST's 60,000, and the
     * same proportion on any other file. */
    int32_t val = n / 12;
    *start = s == ICN_SPLIT_VAL ? n - val : 0;
    *count = s == ICN_SPLIT_TRAIN ? n - val : s == ICN_SPLIT_VAL ? val : n;
}

/* Keep images idx[0..k) (ascending) in that order, in place. */
static void keep_indices(icn_batch *b, const int32_t *idx, int32_t k) {
    size_t d = icn_batch_dim(b);
    for (int32_t j = 0; j < k; j++) {
        size_t i = (size_t)idx[j];
        if (i == (size_t)j) continue;
        memcpy(b->x + (size_t)j * d, b->x + i * d, d * sizeof(float)); /* i > j: no overlap */
        if (b->y) b->y[j] = b->y[i];
        if (b->prov) b->prov[j] = b->prov[i];
    }
    b->n = k;
    b->x = xrealloc(b->x, (size_t)k * d * sizeof(float));
    if (b->y) b->y = xrealloc(b->y, (size_t)k * sizeof(int32_t));
    if (b->prov) b->prov = xrealloc(b->prov, (size_t)k * sizeof(icn_provenance));
}

int icn_split_apply(icn_batch *b, icn_split s, char *err, size_t errlen) {
    int32_t start, count;
    icn_split_range(s, b->n, &start, &count);
    if (count < 1) return icn_errf(err, errlen, "split %s of %d images is empty", icn_split_name(s), b->n);
    if (start == 0 && count == b->n) return 0;
    int32_t *idx = xmalloc((size_t)count * sizeof(int32_t));
    for (int32_t i = 0; i < count; i++) idx[i] = start + i;
    keep_indices(b, idx, count);
    free(idx);
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int icn_batch_select(icn_batch *b, uint32_t classes, int64_t limit, uint64_t seed, char *err, size_t errlen) {
    if (limit < 0) return icn_errf(err, errlen, "select: limit %lld is negative", (long long)limit);
    if (classes && !b->y) return icn_errf(err, errlen, "select: a class filter needs labels, and the batch has none");
    int32_t *idx = xmalloc((size_t)(b->n > 0 ? b->n : 1) * sizeof(int32_t));
    int32_t k = 0;
    for (int32_t i = 0; i < b->n; i++)
        if (!classes || (b->y[i] >= 0 && b->y[i] < 32 && (classes >> b->y[i] & 1u))) idx[k++] = i;
    if (limit > 0 && limit < k) {
        /* Partial Fisher-Yates: the first `limit` slots become a uniform random subset; sorting
         * them keeps the original order, so the same (limit, seed) on the same data is the same
         * stream, byte for byte. */
        icn_rng rng;
        icn_rng_seed(&rng, seed);
        for (int32_t i = 0; i < (int32_t)limit; i++) {
            int32_t j = i + (int32_t)icn_rng_below(&rng, (uint32_t)(k - i));
            int32_t t = idx[i]; idx[i] = idx[j]; idx[j] = t;
        }
        k = (int32_t)limit;
        qsort(idx, (size_t)k, sizeof *idx, cmp_i32);
    }
    if (k != b->n) keep_indices(b, idx, k);
    free(idx);
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

void icn_batch_relabel(icn_batch *b, uint32_t classes) {
    if (!b->y || !classes) return;
    for (int64_t i = 0; i < b->n; i++) {
        int32_t y = b->y[i];
        if (y < 0 || y > 31 || !(classes >> y & 1)) continue;
        b->y[i] = __builtin_popcount(classes & ((1u << y) - 1)); /* kept classes below y */
    }
}
