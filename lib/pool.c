/* pool.c: the durable pseudo-negative store (lib/pool.h has the file format).
 *
 * The file is append-only. The index in memory is one 64-bit offset per record; the counts
 * are small sorted arrays. Appends are one write() (and one fsync with the default policy);
 * a write that fails is cut back off, so the file only ever grows by whole records, except
 * for the torn tail a crash may leave, which the next open for writing removes. */
#include "pool.h"

#include "bytes.h"
#include "util.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

typedef unsigned long long ull;

typedef struct {
    icn_pool_tally *v;
    size_t n, cap;
} tally_set;

struct icn_pool {
    char *path;
    int fd, writable;
    icn_fsync_policy fsync;
    uint64_t *off; /* off[i]: byte offset of record i; off[count]: end of the last record */
    int64_t count;
    size_t cap;
    int have_shape;
    int32_t h, w, c;
    tally_set cls, gen, prod;
    char note[2 * ICN_ERRLEN];
    uint8_t *buf; /* scratch for reading */
    size_t bufcap;
};

/* ---------------------------------------------------------------- small helpers */

int icn_fsync_parse(const char *s, icn_fsync_policy *out) {
    if (strcmp(s, "batch") == 0) *out = ICN_FSYNC_BATCH;
    else if (strcmp(s, "always") == 0) *out = ICN_FSYNC_ALWAYS;
    else if (strcmp(s, "none") == 0) *out = ICN_FSYNC_NONE;
    else return -1;
    return 0;
}

const char *icn_fsync_name(icn_fsync_policy f) {
    return f == ICN_FSYNC_ALWAYS ? "always" : f == ICN_FSYNC_NONE ? "none" : "batch";
}

static size_t record_limit(void) {
    size_t m = icn_max_frame();
    return m < UINT32_MAX ? m : UINT32_MAX;
}

static void tally_add(tally_set *t, int64_t key, int64_t by) {
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->v[mid].key < key) lo = mid + 1;
        else hi = mid;
    }
    if (lo < t->n && t->v[lo].key == key) {
        t->v[lo].count += by;
        return;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->v = xrealloc(t->v, t->cap * sizeof *t->v);
    }
    memmove(t->v + lo + 1, t->v + lo, (t->n - lo) * sizeof *t->v);
    t->v[lo] = (icn_pool_tally){key, by};
    t->n++;
}

static void count_record(icn_pool *p, int32_t y, const icn_provenance *pv) {
    tally_add(&p->cls, -(int64_t)y - 1, 1);
    tally_add(&p->gen, pv->generation, 1);
    tally_add(&p->prod, pv->producer, 1);
}

static void push_offset(icn_pool *p, uint64_t end) {
    if ((size_t)p->count + 2 > p->cap) {
        p->cap = p->cap ? 2 * p->cap : 1024;
        p->off = xrealloc(p->off, p->cap * sizeof *p->off);
    }
    p->off[++p->count] = end;
}

static uint8_t *scratch(icn_pool *p, size_t n) {
    if (n > p->bufcap) {
        p->bufcap = n;
        p->buf = xrealloc(p->buf, n);
    }
    return p->buf;
}

/* pread exactly n bytes; 1 if the file ended first. */
static int pread_all(int fd, void *dst, size_t n, uint64_t at, char *err, size_t errlen) {
    uint8_t *d = dst;
    while (n) {
        ssize_t k = pread(fd, d, n, (off_t)at);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return icn_errf(err, errlen, "read error at byte %llu: %s", (ull)at, strerror(errno));
        if (k == 0) return 1;
        d += k, n -= (size_t)k, at += (uint64_t)k;
    }
    return 0;
}

static int pwrite_all(int fd, const void *src, size_t n, uint64_t at, char *err, size_t errlen) {
    const uint8_t *s = src;
    while (n) {
        ssize_t k = pwrite(fd, s, n, (off_t)at);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return icn_errf(err, errlen, "write error at byte %llu: %s", (ull)at, k < 0 ? strerror(errno) : "wrote nothing");
        s += k, n -= (size_t)k, at += (uint64_t)k;
    }
    return 0;
}

static int sync_fd(int fd) {
    int r;
    while ((r = fdatasync(fd)) != 0 && errno == EINTR) {
    }
    return r;
}

static void sync_dir(const char *path) {
    char *d = strdup(path);
    if (!d) return;
    int dfd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(d);
}

/* ---------------------------------------------------------------- records */

/* Checks one image of a batch against the pool: what every stored record must be. */
static int check_image(const icn_batch *b, int32_t i, char *err, size_t errlen) {
    if (!b->y) return icn_errf(err, errlen, "no labels: a pool stores labelled pseudo-negatives");
    if (b->y[i] >= 0)
        return icn_errf(err, errlen, "image %d has label %d: a pool stores only pseudo-negatives (labels < 0)", i,
                        b->y[i]);
    if (!b->prov) return icn_errf(err, errlen, "no provenance ('prov'): a pool records where each image came from");
    const icn_provenance *v = &b->prov[i];
    if (!isfinite(v->logit)) return icn_errf(err, errlen, "image %d: provenance logit is not finite", i);
    if (v->reached > 1) return icn_errf(err, errlen, "image %d: provenance 'reached' is %u, not 0 or 1", i, v->reached);
    size_t d = icn_batch_dim(b);
    const float *x = b->x + (size_t)i * d;
    for (size_t j = 0; j < d; j++)
        if (!isfinite(x[j])) return icn_errf(err, errlen, "image %d: pixel %zu is not finite", i, j);
    return 0;
}

static int check_shape(const icn_pool *p, const icn_batch *b, char *err, size_t errlen) {
    if (b->h < 1 || b->w < 1 || b->c < 1)
        return icn_errf(err, errlen, "shape %dx%dx%d: every dimension must be >= 1", b->h, b->w, b->c);
    if (p->have_shape && (b->h != p->h || b->w != p->w || b->c != p->c))
        return icn_errf(err, errlen, "shape %dx%dx%d does not match the pool's %dx%dx%d", b->h, b->w, b->c, p->h, p->w,
                        p->c);
    return 0;
}

/* Decode a payload that passed its CRC into one image (a 1-image batch). */
static int decode_payload(const icn_pool *p, const uint8_t *pl, size_t len, msgpack_unpacked *u, icn_batch *one,
                          char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    memset(one, 0, sizeof *one);
    if (icn_frame_unpack(pl, len, u, e, sizeof e)) return icn_errf(err, errlen, "payload: %s", e);
    if (icn_batch_decode(&u->data, one, e, sizeof e)) return icn_errf(err, errlen, "payload: %s", e);
    if (one->n != 1) snprintf(e, sizeof e, "it holds %d images, not 1", one->n);
    if (one->n != 1 || check_shape(p, one, e, sizeof e) || check_image(one, 0, e, sizeof e)) {
        icn_batch_free(one);
        return icn_errf(err, errlen, "payload: %s", e);
    }
    return 0;
}

/* ---------------------------------------------------------------- opening */

static void pool_free(icn_pool *p) {
    if (!p) return;
    if (p->fd >= 0) close(p->fd);
    free(p->path);
    free(p->off);
    free(p->cls.v);
    free(p->gen.v);
    free(p->prod.v);
    free(p->buf);
    free(p);
}

static int all_zero_from(icn_pool *p, uint64_t at, uint64_t size) {
    uint8_t blk[65536];
    char e[ICN_ERRLEN];
    while (at < size) {
        size_t n = size - at < sizeof blk ? (size_t)(size - at) : sizeof blk;
        if (pread_all(p->fd, blk, n, at, e, sizeof e)) return 0;
        for (size_t i = 0; i < n; i++)
            if (blk[i]) return 0;
        at += n;
    }
    return 1;
}

/* The end of the file from byte `at` is an unfinished append: cut it off, or, read-only, ignore it. */
static int torn_tail(icn_pool *p, uint64_t at, uint64_t size, const char *why, char *err, size_t errlen) {
    ull cut = (ull)(size - at);
    if (p->writable) {
        if (ftruncate(p->fd, (off_t)at) != 0 || sync_fd(p->fd) != 0)
            return icn_errf(err, errlen, "%s: cannot cut off the torn record %" PRId64 " at byte %llu: %s", p->path,
                            p->count, (ull)at, strerror(errno));
        snprintf(p->note, sizeof p->note,
                 "%s: torn record %" PRId64 " at byte %llu (%s): cut off %llu bytes; the %" PRId64
                 " complete record%s before it %s intact",
                 p->path, p->count, (ull)at, why, cut, p->count, p->count == 1 ? "" : "s", p->count == 1 ? "is" : "are");
    } else {
        snprintf(p->note, sizeof p->note,
                 "%s: torn record %" PRId64 " at byte %llu (%s): ignored %llu bytes (opening the pool for writing "
                 "cuts them off); the %" PRId64 " complete record%s before it %s intact",
                 p->path, p->count, (ull)at, why, cut, p->count, p->count == 1 ? "" : "s", p->count == 1 ? "is" : "are");
    }
    return 0;
}

static int damaged(const icn_pool *p, uint64_t at, const char *why, char *err, size_t errlen) {
    return icn_errf(err, errlen,
                    "%s: record %" PRId64 " at byte %llu is damaged (%s); refusing to use the pool (the %" PRId64
                    " record%s before it %s intact)",
                    p->path, p->count, (ull)at, why, p->count, p->count == 1 ? "" : "s", p->count == 1 ? "is" : "are");
}

/* A record whose length runs past the end of the file. An append cut short leaves the
 * beginning of one payload: a valid but incomplete msgpack message (or zeros, from some file
 * systems). A damaged length field in an earlier record instead runs over complete messages
 * and records; cutting there would throw good records away, so that is damage. */
static int short_payload(icn_pool *p, uint64_t at, uint64_t size, uint32_t len, char *err, size_t errlen) {
    char why[ICN_ERRLEN], e[ICN_ERRLEN];
    size_t have = (size_t)(size - at - ICN_POOL_RECORD_HEADER), span = 0;
    uint8_t *pl = scratch(p, have ? have : 1);
    int r = pread_all(p->fd, pl, have, at + ICN_POOL_RECORD_HEADER, e, sizeof e);
    if (r) return icn_errf(err, errlen, "%s: %s", p->path, r < 0 ? e : "file shrank while being read");
    snprintf(why, sizeof why, "short payload: %zu of %u bytes", have, len);
    if (have == 0 || all_zero_from(p, at + ICN_POOL_RECORD_HEADER, size)) return torn_tail(p, at, size, why, err, errlen);
    int c = icn_msgpack_check(pl, have, icn_max_frame(), &span, e, sizeof e);
    if (c == 1) return torn_tail(p, at, size, why, err, errlen);
    if (c == 0)
        snprintf(why, sizeof why, "its length says %u bytes but its payload is a complete %zu-byte message followed by %zu more bytes",
                 len, span, have - span);
    else snprintf(why, sizeof why, "its length says %u bytes, past the end of the file, and its payload is not msgpack", len);
    return damaged(p, at, why, err, errlen);
}

static int scan(icn_pool *p, uint64_t size, char *err, size_t errlen) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    uint64_t at = ICN_POOL_HEADER_LEN;
    size_t limit = record_limit();
    char why[ICN_ERRLEN], e[ICN_ERRLEN];
    int rc = 0;
    p->off[0] = at;
    while (rc == 0 && at < size) {
        uint64_t rem = size - at;
        uint8_t hd[ICN_POOL_RECORD_HEADER];
        if (rem < sizeof hd) {
            snprintf(why, sizeof why, "short record header: %llu of %d bytes", (ull)rem, ICN_POOL_RECORD_HEADER);
            rc = torn_tail(p, at, size, why, err, errlen);
            break;
        }
        if (pread_all(p->fd, hd, sizeof hd, at, e, sizeof e)) {
            rc = icn_errf(err, errlen, "%s: %s", p->path, e);
            break;
        }
        uint32_t magic = icn_le_load_u32(hd), len = icn_le_load_u32(hd + 4), crc = icn_le_load_u32(hd + 8);
        if (magic != ICN_POOL_RECORD_MAGIC) {
            if (all_zero_from(p, at, size)) {
                rc = torn_tail(p, at, size, "zero-filled tail", err, errlen);
                break;
            }
            snprintf(why, sizeof why, "bad record magic 0x%08x, expected 0x%08x", magic, ICN_POOL_RECORD_MAGIC);
            rc = damaged(p, at, why, err, errlen);
            break;
        }
        if (len == 0 || len > limit) {
            snprintf(why, sizeof why, "record length %u is outside [1, %zu]", len, limit);
            rc = damaged(p, at, why, err, errlen);
            break;
        }
        if (rem - sizeof hd < len) {
            rc = short_payload(p, at, size, len, err, errlen);
            break;
        }
        uint8_t *pl = scratch(p, len);
        int r = pread_all(p->fd, pl, len, at + sizeof hd, e, sizeof e);
        if (r) {
            rc = icn_errf(err, errlen, "%s: %s", p->path, r < 0 ? e : "file shrank while being read");
            break;
        }
        uint64_t end = at + sizeof hd + len;
        uint32_t got = icn_crc32(0, pl, len);
        if (got != crc) {
            snprintf(why, sizeof why, "CRC-32 of the payload is 0x%08x, the record says 0x%08x", got, crc);
            rc = end == size ? torn_tail(p, at, size, why, err, errlen) : damaged(p, at, why, err, errlen);
            break;
        }
        icn_batch one;
        if (decode_payload(p, pl, len, &u, &one, why, sizeof why)) {
            rc = damaged(p, at, why, err, errlen);
            break;
        }
        if (!p->have_shape) p->have_shape = 1, p->h = one.h, p->w = one.w, p->c = one.c;
        count_record(p, one.y[0], &one.prov[0]);
        icn_batch_free(&one);
        push_offset(p, end);
        at = end;
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* A new or empty file gets its header (and a missing file a directory entry made durable). */
static int write_header(icn_pool *p, char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    if (ftruncate(p->fd, 0) != 0 || fsync(p->fd) != 0)
        return icn_errf(err, errlen, "%s: cannot write the pool header: %s", p->path, strerror(errno));
    if (pwrite_all(p->fd, ICN_POOL_HEADER, ICN_POOL_HEADER_LEN, 0, e, sizeof e))
        return icn_errf(err, errlen, "%s: cannot write the pool header: %s", p->path, e);
    if (fsync(p->fd) != 0) return icn_errf(err, errlen, "%s: cannot write the pool header: %s", p->path, strerror(errno));
    sync_dir(p->path);
    return 0;
}

int icn_pool_open(const char *path, int mode, icn_pool **out, char *err, size_t errlen) {
    *out = NULL;
    icn_pool *p = xcalloc(1, sizeof *p);
    p->path = strdup(path);
    if (!p->path) icn_die(3, "out of memory");
    p->writable = (mode & ICN_POOL_WRITE) != 0;
    int create = mode == ICN_POOL_CREATE;
    p->fd = open(path, (p->writable ? O_RDWR : O_RDONLY) | (create ? O_CREAT : 0) | O_CLOEXEC, 0644);
    if (p->fd < 0) {
        icn_errf(err, errlen, "%s: %s", path, strerror(errno));
        pool_free(p);
        return -1;
    }
    int rc = 0;
    struct stat st;
    if (fstat(p->fd, &st) != 0) rc = icn_errf(err, errlen, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) rc = icn_errf(err, errlen, "%s: not a regular file", path);
    else if (p->writable && flock(p->fd, LOCK_EX | LOCK_NB) != 0)
        rc = icn_errf(err, errlen, "%s: %s", path,
                      errno == EWOULDBLOCK ? "in use by another process (it holds the pool's lock)" : strerror(errno));
    if (rc) {
        pool_free(p);
        return -1;
    }
    p->cap = 1024;
    p->off = xmalloc(p->cap * sizeof *p->off);
    p->off[0] = ICN_POOL_HEADER_LEN;
    uint64_t size = (uint64_t)st.st_size;
    uint8_t hd[ICN_POOL_HEADER_LEN] = {0};
    size_t have = size < sizeof hd ? (size_t)size : sizeof hd;
    char e[ICN_ERRLEN];
    if (pread_all(p->fd, hd, have, 0, e, sizeof e) < 0) rc = icn_errf(err, errlen, "%s: %s", path, e);
    else if (memcmp(hd, ICN_POOL_HEADER, have) != 0)
        rc = icn_errf(err, errlen, "%s: not an icn pool (the file does not start with \"%s\")", path, ICN_POOL_HEADER);
    else if (have < sizeof hd && !(p->writable && (create || have > 0)))
        rc = icn_errf(err, errlen, "%s: not an icn pool (%s)", path,
                      have ? "its header is cut short" : "empty file; 'icn-pool serve' creates pools");
    else if (have < sizeof hd) { /* new, or created by a crash before its header was complete */
        if (have) snprintf(p->note, sizeof p->note, "%s: the header was cut short (%zu of %d bytes): rewritten", path, have,
                           ICN_POOL_HEADER_LEN);
        rc = write_header(p, err, errlen);
    } else {
        rc = scan(p, size, err, errlen);
    }
    if (rc) {
        pool_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

const char *icn_pool_note(const icn_pool *p) { return p->note; }
const char *icn_pool_path(const icn_pool *p) { return p->path; }
void icn_pool_set_fsync(icn_pool *p, icn_fsync_policy f) { p->fsync = f; }
int64_t icn_pool_count(const icn_pool *p) { return p->count; }

int icn_pool_shape(const icn_pool *p, int32_t *h, int32_t *w, int32_t *c) {
    if (!p->have_shape) return 0;
    *h = p->h, *w = p->w, *c = p->c;
    return 1;
}

/* ---------------------------------------------------------------- appending */

int icn_pool_append(icn_pool *p, const icn_batch *b, char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    if (!p->writable) return icn_errf(err, errlen, "%s: opened read-only", p->path);
    if (b->n < 1) return icn_errf(err, errlen, "batch of %d images: nothing to store", b->n);
    if (check_shape(p, b, e, sizeof e)) return icn_errf(err, errlen, "%s", e);
    for (int32_t i = 0; i < b->n; i++)
        if (check_image(b, i, e, sizeof e)) return icn_errf(err, errlen, "%s", e);

    /* Every record, header and payload, into one buffer: one write for the whole batch. */
    size_t d = icn_batch_dim(b), limit = record_limit();
    size_t *ends = xmalloc((size_t)b->n * sizeof *ends);
    icn_outbuf o = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &o, icn_outbuf_write);
    int rc = 0;
    for (int32_t i = 0; i < b->n && rc == 0; i++) {
        size_t start = o.n;
        icn_outbuf_reserve(&o, ICN_POOL_RECORD_HEADER);
        o.n += ICN_POOL_RECORD_HEADER;
        icn_batch one = {1, b->h, b->w, b->c, b->x + (size_t)i * d, b->y + i, b->prov + i};
        icn_batch_pack(&pk, &one);
        size_t len = o.n - start - ICN_POOL_RECORD_HEADER;
        if (len > limit) {
            rc = icn_errf(err, errlen, "image %d: its record of %zu bytes exceeds the limit %zu", i, len, limit);
            break;
        }
        uint8_t *hd = o.p + start;
        icn_le_store_u32(hd, ICN_POOL_RECORD_MAGIC);
        icn_le_store_u32(hd + 4, (uint32_t)len);
        icn_le_store_u32(hd + 8, icn_crc32(0, hd + ICN_POOL_RECORD_HEADER, len));
        ends[i] = o.n;
    }
    uint64_t base = p->off[p->count];
    e[0] = 0;
    if (rc == 0) {
        if (p->fsync == ICN_FSYNC_ALWAYS) {
            size_t from = 0;
            for (int32_t i = 0; i < b->n && rc == 0; i++) {
                if (pwrite_all(p->fd, o.p + from, ends[i] - from, base + from, e, sizeof e) || sync_fd(p->fd) != 0)
                    rc = icn_errf(err, errlen, "%s: %s", p->path, e[0] ? e : strerror(errno));
                from = ends[i];
            }
        } else {
            if (pwrite_all(p->fd, o.p, o.n, base, e, sizeof e) || (p->fsync == ICN_FSYNC_BATCH && sync_fd(p->fd) != 0))
                rc = icn_errf(err, errlen, "%s: %s", p->path, e[0] ? e : strerror(errno));
        }
        if (rc) { /* leave the file as it was: nothing of a failed append is kept */
            rc = -2;
            if (ftruncate(p->fd, (off_t)base) != 0) {
                char more[ICN_ERRLEN];
                snprintf(more, sizeof more, "%s", err);
                icn_errf(err, errlen, "%s; and cutting the partial append off failed: %s", more, strerror(errno));
            }
        }
    }
    if (rc == 0) {
        if (!p->have_shape) p->have_shape = 1, p->h = b->h, p->w = b->w, p->c = b->c;
        for (int32_t i = 0; i < b->n; i++) {
            count_record(p, b->y[i], &b->prov[i]);
            push_offset(p, base + ends[i]);
        }
    }
    free(ends);
    free(o.p);
    return rc;
}

/* ---------------------------------------------------------------- reading */

#define READ_SPAN ((uint64_t)4 << 20) /* read up to this many bytes of records at once */

int icn_pool_read(icn_pool *p, int64_t offset, int64_t max, icn_batch *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (offset < 0 || max < 0)
        return icn_errf(err, errlen, "%s: read of %" PRId64 " records at offset %" PRId64 ": both must be >= 0", p->path,
                        max, offset);
    if (offset >= p->count || max == 0) return 0;
    int64_t m = p->count - offset < max ? p->count - offset : max;
    icn_batch_alloc(out, (int32_t)(m > INT32_MAX ? INT32_MAX : m), p->h, p->w, p->c, 1);
    m = out->n;
    out->prov = xmalloc((size_t)m * sizeof *out->prov);
    size_t d = icn_batch_dim(out);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    char e[ICN_ERRLEN], why[ICN_ERRLEN];
    int rc = 0;
    for (int64_t i = offset; i < offset + m && rc == 0;) {
        int64_t j = i + 1; /* records [i, j) in one read */
        while (j < offset + m && p->off[j + 1] - p->off[i] <= READ_SPAN) j++;
        uint64_t span = p->off[j] - p->off[i];
        uint8_t *buf = scratch(p, (size_t)span);
        int r = pread_all(p->fd, buf, (size_t)span, p->off[i], e, sizeof e);
        if (r) {
            rc = icn_errf(err, errlen, "%s: records %" PRId64 "..%" PRId64 ": %s", p->path, i, j - 1,
                          r < 0 ? e : "the file is shorter than when it was opened");
            break;
        }
        for (int64_t k = i; k < j && rc == 0; k++) {
            const uint8_t *hd = buf + (p->off[k] - p->off[i]);
            size_t len = (size_t)(p->off[k + 1] - p->off[k]) - ICN_POOL_RECORD_HEADER;
            const uint8_t *pl = hd + ICN_POOL_RECORD_HEADER;
            icn_batch one;
            why[0] = 0;
            if (icn_le_load_u32(hd) != ICN_POOL_RECORD_MAGIC || icn_le_load_u32(hd + 4) != len)
                snprintf(why, sizeof why, "record header changed since the pool was opened");
            else if (icn_crc32(0, pl, len) != icn_le_load_u32(hd + 8))
                snprintf(why, sizeof why, "CRC-32 mismatch (changed on disk since the pool was opened)");
            else if (decode_payload(p, pl, len, &u, &one, why, sizeof why) == 0) {
                size_t at = (size_t)(k - offset);
                memcpy(out->x + at * d, one.x, d * sizeof(float));
                out->y[at] = one.y[0];
                out->prov[at] = one.prov[0];
                icn_batch_free(&one);
            }
            if (why[0])
                rc = icn_errf(err, errlen, "%s: record %" PRId64 " at byte %llu is damaged (%s)", p->path, k,
                              (ull)p->off[k], why);
        }
        i = j;
    }
    msgpack_unpacked_destroy(&u);
    if (rc) icn_batch_free(out);
    return rc;
}

/* ---------------------------------------------------------------- counts */

static void copy_tallies(const tally_set *t, icn_pool_tally **v, size_t *n) {
    *n = t->n;
    *v = xmalloc((t->n ? t->n : 1) * sizeof **v);
    if (t->n) memcpy(*v, t->v, t->n * sizeof **v);
}

void icn_pool_stats(const icn_pool *p, icn_pool_counts *out) {
    out->total = p->count;
    copy_tallies(&p->cls, &out->per_class, &out->n_class);
    copy_tallies(&p->gen, &out->per_generation, &out->n_generation);
    copy_tallies(&p->prod, &out->per_producer, &out->n_producer);
}

void icn_pool_counts_free(icn_pool_counts *c) {
    if (!c) return;
    free(c->per_class);
    free(c->per_generation);
    free(c->per_producer);
    memset(c, 0, sizeof *c);
}

int icn_pool_sync(icn_pool *p, char *err, size_t errlen) {
    if (p->writable && sync_fd(p->fd) != 0) return icn_errf(err, errlen, "%s: fsync: %s", p->path, strerror(errno));
    return 0;
}

int icn_pool_close(icn_pool *p, char *err, size_t errlen) {
    if (!p) return 0;
    int rc = icn_pool_sync(p, err, errlen);
    if (close(p->fd) != 0 && rc == 0) rc = icn_errf(err, errlen, "%s: close: %s", p->path, strerror(errno));
    p->fd = -1;
    pool_free(p);
    return rc;
}

/* ---------------------------------------------------------------- the stats message */

static void pack_tallies(msgpack_packer *pk, const char *key, const icn_pool_tally *v, size_t n) {
    icn_pack_str(pk, key);
    msgpack_pack_map(pk, n);
    for (size_t i = 0; i < n; i++) msgpack_pack_int64(pk, v[i].key), msgpack_pack_int64(pk, v[i].count);
}

void icn_pack_pool_stats(msgpack_sbuffer *sb, const icn_pool_counts *c, int64_t rejected) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "stats");
    icn_pack_str(&pk, "total"), msgpack_pack_int64(&pk, c->total);
    icn_pack_str(&pk, "rejected"), msgpack_pack_int64(&pk, rejected);
    pack_tallies(&pk, "per_class", c->per_class, c->n_class);
    pack_tallies(&pk, "per_generation", c->per_generation, c->n_generation);
    pack_tallies(&pk, "per_producer", c->per_producer, c->n_producer);
}

static int int_of(const msgpack_object *o, int64_t *v) {
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= (uint64_t)INT64_MAX) *v = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) *v = o->via.i64;
    else return -1;
    return 0;
}

static int decode_tallies(const msgpack_object *map, const char *key, icn_pool_tally **v, size_t *n, char *err,
                          size_t errlen) {
    const msgpack_object *m = icn_map_get(map, key);
    if (!m) return icn_errf(err, errlen, "key '%s' missing", key);
    if (m->type != MSGPACK_OBJECT_MAP) return icn_errf(err, errlen, "key '%s' is not a map", key);
    *n = m->via.map.size;
    *v = xmalloc((*n ? *n : 1) * sizeof **v);
    for (size_t i = 0; i < *n; i++) {
        icn_pool_tally *t = &(*v)[i];
        if (int_of(&m->via.map.ptr[i].key, &t->key) || int_of(&m->via.map.ptr[i].val, &t->count) || t->count < 0)
            return icn_errf(err, errlen, "key '%s': entry %zu is not an integer key with a count >= 0", key, i);
    }
    return 0;
}

int icn_decode_pool_stats(const msgpack_object *map, icn_pool_counts *c, int64_t *rejected, char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    memset(c, 0, sizeof *c);
    if (!icn_map_kind_is(map, "stats")) return icn_errf(err, errlen, "stats: reply is not of kind 'stats'");
    if (icn_map_i64(map, "total", 0, INT64_MAX, &c->total, e, sizeof e) ||
        icn_map_i64(map, "rejected", 0, INT64_MAX, rejected, e, sizeof e) ||
        decode_tallies(map, "per_class", &c->per_class, &c->n_class, e, sizeof e) ||
        decode_tallies(map, "per_generation", &c->per_generation, &c->n_generation, e, sizeof e) ||
        decode_tallies(map, "per_producer", &c->per_producer, &c->n_producer, e, sizeof e)) {
        icn_pool_counts_free(c);
        return icn_errf(err, errlen, "stats: %s", e);
    }
    return 0;
}
