/* wire.c: the icn wire format (man/icn-wire.5): a checked msgpack walker, a frame reader
 * for byte streams, map accessors and the "batch" message.
 *
 * Every byte that arrives is untrusted. msgpack-c's generic unpacker allocates from
 * declared sizes, so nothing reaches it before icn_msgpack_check() has proved that every
 * declared length and count fits the bytes actually present and the frame limit. */
#include "wire.h"

#include "bytes.h"
#include "fileio.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef unsigned long long ull;

size_t icn_max_frame(void) {
    const char *s = getenv("ICN_MAX_FRAME");
    if (!s || !*s) return ICN_MAX_FRAME_DEFAULT;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    /* A malformed limit is a configuration error: refusing it beats silently using another. */
    if (errno || end == s || *end || *s == '-' || v < 64 || v > ((ull)1 << 40))
        icn_die(2, "ICN_MAX_FRAME: '%s' is not a byte count in [64, %llu]", s, (ull)1 << 40);
    return (size_t)v;
}

/* ---------------------------------------------------------------- the msgpack walker */

enum { K_SCALAR, K_BLOB, K_ARRAY, K_MAP, K_NEVER };

/* What a type byte announces: for K_SCALAR `len` is the payload size; for K_BLOB, K_ARRAY and
 * K_MAP `len` is the size or count itself when it lives in the type byte (lensz == 0). */
typedef struct {
    int kind;
    int lensz; /* bytes of big-endian length/count after the type byte */
    uint64_t len;
    int extra; /* ext: the type byte before the data */
    const char *what;
} head_t;

static head_t classify(uint8_t b) {
    if (b <= 0x7f || b >= 0xe0) return (head_t){K_SCALAR, 0, 0, 0, "fixint"};
    if (b <= 0x8f) return (head_t){K_MAP, 0, b & 0x0fu, 0, "map"};
    if (b <= 0x9f) return (head_t){K_ARRAY, 0, b & 0x0fu, 0, "array"};
    if (b <= 0xbf) return (head_t){K_BLOB, 0, b & 0x1fu, 0, "str"};
    static const head_t tail[32] = {
        {K_SCALAR, 0, 0, 0, "nil"},     {K_NEVER, 0, 0, 0, "0xc1"},     /* c0 c1 */
        {K_SCALAR, 0, 0, 0, "bool"},    {K_SCALAR, 0, 0, 0, "bool"},    /* c2 c3 */
        {K_BLOB, 1, 0, 0, "bin"},       {K_BLOB, 2, 0, 0, "bin"},       /* c4 c5 */
        {K_BLOB, 4, 0, 0, "bin"},       {K_BLOB, 1, 0, 1, "ext"},       /* c6 c7 */
        {K_BLOB, 2, 0, 1, "ext"},       {K_BLOB, 4, 0, 1, "ext"},       /* c8 c9 */
        {K_SCALAR, 0, 4, 0, "float32"}, {K_SCALAR, 0, 8, 0, "float64"}, /* ca cb */
        {K_SCALAR, 0, 1, 0, "uint8"},   {K_SCALAR, 0, 2, 0, "uint16"},  /* cc cd */
        {K_SCALAR, 0, 4, 0, "uint32"},  {K_SCALAR, 0, 8, 0, "uint64"},  /* ce cf */
        {K_SCALAR, 0, 1, 0, "int8"},    {K_SCALAR, 0, 2, 0, "int16"},   /* d0 d1 */
        {K_SCALAR, 0, 4, 0, "int32"},   {K_SCALAR, 0, 8, 0, "int64"},   /* d2 d3 */
        {K_SCALAR, 0, 2, 0, "fixext"},  {K_SCALAR, 0, 3, 0, "fixext"},  /* d4 d5 */
        {K_SCALAR, 0, 5, 0, "fixext"},  {K_SCALAR, 0, 9, 0, "fixext"},  /* d6 d7 */
        {K_SCALAR, 0, 17, 0, "fixext"}, {K_BLOB, 1, 0, 0, "str"},       /* d8 d9 */
        {K_BLOB, 2, 0, 0, "str"},       {K_BLOB, 4, 0, 0, "str"},       /* da db */
        {K_ARRAY, 2, 0, 0, "array"},    {K_ARRAY, 4, 0, 0, "array"},    /* dc dd */
        {K_MAP, 2, 0, 0, "map"},        {K_MAP, 4, 0, 0, "map"},        /* de df */
    };
    return tail[b - 0xc0];
}

typedef struct {
    const uint8_t *p;
    uint64_t n, max;
    uint64_t pos;     /* next unread byte */
    uint64_t pending; /* items owed by open containers, not yet started: each needs >= 1 byte */
    uint64_t todo[ICN_MAX_DEPTH + 1];
    int depth;        /* open containers */
    uint64_t need;    /* when incomplete: a lower bound on the whole object's size */
    uint64_t objects; /* items started so far (ICN_MAX_OBJECTS) */
    char note[160];   /* when incomplete: the first declaration that outran the bytes */
    char *err;
    size_t errlen;
} walker;

static void note_short(walker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_short(walker *w, const char *fmt, ...) {
    if (w->note[0]) return; /* the first shortfall is the informative one */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->note, sizeof w->note, fmt, ap);
    va_end(ap);
}

/* The current item needs `size` bytes from w->pos (plus one per pending item after it). */
static int take(walker *w, uint64_t size, const char *what) {
    uint64_t end = w->pos + size;
    if (end + w->pending > w->max)
        return icn_errf(w->err, w->errlen, "%s at offset %llu ends past the frame limit %llu", what,
                        (ull)w->pos, (ull)w->max);
    if (end > w->n) {
        w->need = end + w->pending;
        note_short(w, "%s at offset %llu needs %llu bytes but only %llu are present", what, (ull)w->pos,
                   (ull)size, (ull)(w->n - w->pos));
        return 1;
    }
    w->pos = end;
    return 0;
}

static uint64_t load_be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

static int open_container(walker *w, const head_t *h, uint64_t count, uint64_t hdr) {
    if (w->depth >= ICN_MAX_DEPTH)
        return icn_errf(w->err, w->errlen, "nesting deeper than %d levels at offset %llu", ICN_MAX_DEPTH,
                        (ull)w->pos);
    uint64_t items = h->kind == K_MAP ? 2 * count : count;
    const char *unit = h->kind == K_MAP ? "pairs" : "elements";
    uint64_t least = w->pos + hdr + w->pending + items; /* every item is at least one byte */
    if (least > w->max)
        return icn_errf(w->err, w->errlen, "%s of %llu %s needs at least %llu bytes, over the frame limit %llu",
                        h->what, (ull)count, unit, (ull)least, (ull)w->max);
    if (least > w->n)
        note_short(w, "%s of %llu %s declared but only %llu bytes present", h->what, (ull)count, unit,
                   (ull)w->n);
    w->pos += hdr;
    w->pending += items;
    w->todo[++w->depth] = items;
    return 0;
}

/* One item at w->pos: scalars and blobs are skipped, containers are opened. */
static int walk_item(walker *w) {
    if (w->pos >= w->n) {
        w->need = w->pos + 1 + w->pending;
        note_short(w, "message ends at offset %llu before its next item", (ull)w->pos);
        return 1;
    }
    if (++w->objects > ICN_MAX_OBJECTS) /* msgpack-c would spend ~24 bytes on each */
        return icn_errf(w->err, w->errlen, "more than %d msgpack objects (at offset %llu): no message needs so many",
                        ICN_MAX_OBJECTS, (ull)w->pos);
    head_t h = classify(w->p[w->pos]);
    if (h.kind == K_NEVER)
        return icn_errf(w->err, w->errlen, "byte 0xc1 (never used in msgpack) at offset %llu", (ull)w->pos);
    if (h.kind == K_SCALAR) return take(w, 1 + h.len, h.what);
    uint64_t hdr = 1 + (uint64_t)h.lensz;
    if (w->pos + hdr > w->n) return take(w, hdr, h.what); /* reports the cut header */
    uint64_t v = h.lensz ? load_be(w->p + w->pos + 1, h.lensz) : h.len;
    if (h.kind != K_BLOB) return open_container(w, &h, v, hdr);
    if (v > w->max)
        return icn_errf(w->err, w->errlen, "%s length %llu exceeds frame limit %llu", h.what, (ull)v, (ull)w->max);
    return take(w, hdr + (uint64_t)h.extra + v, h.what);
}

/* 0: complete (span set), 1: valid prefix (need, note set), -1: invalid (err set). */
static int walk(walker *w, size_t *span) {
    w->todo[0] = 1;
    w->pending = 1;
    for (;;) {
        while (w->todo[w->depth] == 0) {
            if (w->depth == 0) {
                *span = (size_t)w->pos;
                return 0;
            }
            w->depth--;
        }
        w->todo[w->depth]--;
        w->pending--;
        int r = walk_item(w);
        if (r) return r;
    }
}

static void walker_init(walker *w, const uint8_t *p, size_t n, size_t max, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    w->p = p;
    w->n = n;
    w->max = max;
    w->err = err;
    w->errlen = errlen;
}

int icn_msgpack_check(const uint8_t *p, size_t n, size_t max_frame, size_t *span, char *err, size_t errlen) {
    char e[ICN_ERRLEN] = "";
    walker w;
    walker_init(&w, p, n, max_frame, e, sizeof e);
    int r = walk(&w, span);
    if (r < 0) icn_errf(err, errlen, "frame: %s", e);
    if (r == 1) icn_errf(err, errlen, "frame: %s", w.note); /* for callers that know no more will come */
    return r;
}

/* With its article, for messages: "is an array, expected a map". */
static const char *type_name(msgpack_object_type t) {
    switch (t) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "a bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "an integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return "a float";
    case MSGPACK_OBJECT_STR: return "a string";
    case MSGPACK_OBJECT_ARRAY: return "an array";
    case MSGPACK_OBJECT_MAP: return "a map";
    case MSGPACK_OBJECT_BIN: return "a bin";
    case MSGPACK_OBJECT_EXT: return "an ext";
    }
    return "of unknown type";
}

/* Map keys in a total order, to find duplicates by sorting. -2: a key type we refuse. */
static int key_cmp(const msgpack_object *a, const msgpack_object *b) {
    if (a->type != b->type) return a->type < b->type ? -1 : 1;
    switch (a->type) {
    case MSGPACK_OBJECT_NIL: return 0;
    case MSGPACK_OBJECT_BOOLEAN: return (a->via.boolean > b->via.boolean) - (a->via.boolean < b->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return (a->via.u64 > b->via.u64) - (a->via.u64 < b->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return (a->via.i64 > b->via.i64) - (a->via.i64 < b->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return memcmp(&a->via.f64, &b->via.f64, sizeof(double));
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN: {
        uint32_t la = a->via.str.size, lb = b->via.str.size, l = la < lb ? la : lb; /* str, bin: one layout */
        int c = l ? memcmp(a->via.str.ptr, b->via.str.ptr, l) : 0; /* an empty one's ptr may be NULL */
        return c ? c : (la > lb) - (la < lb);
    }
    default: return -2;
    }
}

static int key_qsort_cmp(const void *x, const void *y) {
    int c = key_cmp(*(const msgpack_object *const *)x, *(const msgpack_object *const *)y);
    return c == -2 ? 0 : c;
}

static void key_name(const msgpack_object *k, char *s, size_t len) {
    if (k->type == MSGPACK_OBJECT_STR) {
        size_t n = 0;
        for (uint32_t i = 0; i < k->via.str.size && n + 1 < len && i < 40; i++) {
            unsigned char ch = (unsigned char)k->via.str.ptr[i];
            s[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
        }
        s[n] = 0;
    } else if (k->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        snprintf(s, len, "%llu", (ull)k->via.u64);
    } else if (k->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        snprintf(s, len, "%lld", (long long)k->via.i64);
    } else {
        snprintf(s, len, "(%s)", type_name(k->type));
    }
}

/* Every map in o: no key twice, no container or ext as a key. Depth is bounded by the walker. */
static int check_keys(const msgpack_object *o, char *err, size_t errlen) {
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (check_keys(&o->via.array.ptr[i], err, errlen)) return -1;
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_MAP) return 0;
    uint32_t n = o->via.map.size;
    const msgpack_object *small[16], **keys = n <= 16 ? small : xmalloc(n * sizeof *keys);
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        keys[i] = &o->via.map.ptr[i].key;
        if (key_cmp(keys[i], keys[i]) == -2)
            rc = icn_errf(err, errlen, "frame: a map key is %s; keys are strings or numbers", type_name(keys[i]->type));
    }
    if (rc == 0) qsort(keys, n, sizeof *keys, key_qsort_cmp);
    for (uint32_t i = 1; i < n && rc == 0; i++)
        if (key_cmp(keys[i - 1], keys[i]) == 0) {
            char name[48];
            key_name(keys[i], name, sizeof name);
            rc = icn_errf(err, errlen, "frame: duplicate key '%s' in a map", name);
        }
    if (keys != small) free(keys);
    for (uint32_t i = 0; i < n && rc == 0; i++)
        if (check_keys(&o->via.map.ptr[i].val, err, errlen)) rc = -1;
    return rc;
}

int icn_frame_unpack(const uint8_t *p, size_t n, msgpack_unpacked *out, char *err, size_t errlen) {
    size_t span = 0;
    /* A frame handed over whole (a ZeroMQ message, a file) gets no more bytes: incomplete is invalid. */
    if (icn_msgpack_check(p, n, icn_max_frame(), &span, err, errlen) != 0) return -1;
    if (span != n)
        return icn_errf(err, errlen, "frame: %zu trailing bytes after a %zu-byte message", n - span, span);
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(out, (const char *)p, n, &off);
    if ((ur != MSGPACK_UNPACK_SUCCESS && ur != MSGPACK_UNPACK_EXTRA_BYTES) || off != n)
        return icn_errf(err, errlen, "frame: msgpack-c could not unpack the %zu-byte message (code %d)", n, (int)ur);
    if (out->data.type != MSGPACK_OBJECT_MAP)
        return icn_errf(err, errlen, "frame: message is %s, not a map", type_name(out->data.type));
    return check_keys(&out->data, err, errlen);
}

/* ---------------------------------------------------------------- reading streams */

struct icn_reader {
    int fd, own;
    char *name;
    uint8_t *buf;
    size_t cap, start, end; /* unread bytes: buf[start, end) */
    size_t last;            /* size of the frame handed out last; consumed on the next call */
    uint64_t base;          /* stream offset of buf[0] */
    size_t max;
    int eof;
};

icn_reader *icn_reader_fdopen(int fd, const char *name) {
    icn_reader *r = xcalloc(1, sizeof *r);
    r->fd = fd;
    r->name = strdup(name ? name : "-");
    if (!r->name) icn_die(3, "out of memory");
    r->max = icn_max_frame();
    return r;
}

icn_reader *icn_reader_open(const char *path, char *err, size_t errlen) {
    if (strcmp(path, "-") == 0) return icn_reader_fdopen(0, "stdin");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        icn_errf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    icn_reader *r = icn_reader_fdopen(fd, path);
    r->own = 1;
    return r;
}

const char *icn_reader_name(const icn_reader *r) { return r->name; }

uint64_t icn_reader_offset(const icn_reader *r) { return r->base + r->start; }

void icn_reader_close(icn_reader *r) {
    if (!r) return;
    if (r->own) close(r->fd);
    free(r->buf);
    free(r->name);
    free(r);
}

/* Read whatever is available. The buffer doubles only when full, so memory follows the bytes
 * that actually arrived, never a size some header claims. */
static int reader_fill(icn_reader *r, char *err, size_t errlen) {
    if (r->end == r->cap && r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->base += r->start;
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end == r->cap) {
        if (r->cap >= r->max)
            return icn_errf(err, errlen, "%s: frame at byte %llu is larger than the frame limit %zu", r->name,
                            (ull)icn_reader_offset(r), r->max);
        size_t cap = r->cap ? r->cap * 2 : 65536;
        r->cap = cap < r->max ? cap : r->max;
        r->buf = xrealloc(r->buf, r->cap);
    }
    for (;;) {
        ssize_t k = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return icn_errf(err, errlen, "%s: read error: %s", r->name, strerror(errno));
        if (k == 0) r->eof = 1;
        r->end += (size_t)k;
        return 0;
    }
}

int icn_reader_next(icn_reader *r, const uint8_t **frame, size_t *len, char *err, size_t errlen) {
    r->start += r->last;
    r->last = 0;
    uint64_t need = 1; /* walking again is pointless until this many bytes are here */
    for (;;) {
        size_t have = r->end - r->start;
        if (have >= need) {
            char e[ICN_ERRLEN] = "";
            walker w;
            walker_init(&w, r->buf + r->start, have, r->max, e, sizeof e);
            size_t span = 0;
            int c = walk(&w, &span);
            if (c < 0)
                return icn_errf(err, errlen, "%s: frame at byte %llu: %s", r->name, (ull)icn_reader_offset(r), e);
            if (c == 0) {
                *frame = r->buf + r->start;
                *len = r->last = span;
                return 1;
            }
            need = w.need;
        }
        if (r->eof) {
            if (have == 0) return 0;
            return icn_errf(err, errlen, "%s: truncated frame at byte %llu (need %llu more bytes)", r->name,
                            (ull)icn_reader_offset(r), (ull)(need - have));
        }
        if (reader_fill(r, err, errlen) < 0) return -1;
    }
}

/* ---------------------------------------------------------------- map access */

const msgpack_object *icn_map_get(const msgpack_object *map, const char *key) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) { /* unique: icn_frame_unpack refuses duplicates */
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl && memcmp(k->via.str.ptr, key, kl) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static const msgpack_object *need_key(const msgpack_object *map, const char *key, msgpack_object_type t,
                                      char *err, size_t errlen) {
    const msgpack_object *v = icn_map_get(map, key);
    if (!v) {
        icn_errf(err, errlen, "key '%s' missing", key);
        return NULL;
    }
    if (v->type != t) {
        icn_errf(err, errlen, "key '%s' is %s, expected %s", key, type_name(v->type), type_name(t));
        return NULL;
    }
    return v;
}

int icn_map_str(const msgpack_object *map, const char *key, char *out, size_t outlen, char *err, size_t errlen) {
    const msgpack_object *v = need_key(map, key, MSGPACK_OBJECT_STR, err, errlen);
    if (!v) return -1;
    size_t n = v->via.str.size;
    if (n >= outlen) return icn_errf(err, errlen, "key '%s': string of %zu bytes is too long", key, n);
    if (memchr(v->via.str.ptr, 0, n)) return icn_errf(err, errlen, "key '%s': string holds a NUL byte", key);
    memcpy(out, v->via.str.ptr, n);
    out[n] = 0;
    return 0;
}

int icn_map_i64(const msgpack_object *map, const char *key, int64_t lo, int64_t hi, int64_t *out, char *err,
                size_t errlen) {
    const msgpack_object *v = icn_map_get(map, key);
    if (!v) return icn_errf(err, errlen, "key '%s' missing", key);
    int64_t x;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (v->via.u64 > (uint64_t)INT64_MAX || (int64_t)v->via.u64 > hi)
            return icn_errf(err, errlen, "key '%s': %" PRIu64 " is out of range [%" PRId64 ", %" PRId64 "]", key,
                            v->via.u64, lo, hi);
        x = (int64_t)v->via.u64;
    } else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        x = v->via.i64;
    } else {
        return icn_errf(err, errlen, "key '%s' is %s, expected an integer", key, type_name(v->type));
    }
    if (x < lo || x > hi)
        return icn_errf(err, errlen, "key '%s': %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]", key, x, lo,
                        hi);
    *out = x;
    return 0;
}

int icn_map_f64(const msgpack_object *map, const char *key, double *out, char *err, size_t errlen) {
    const msgpack_object *v = icn_map_get(map, key);
    if (!v) return icn_errf(err, errlen, "key '%s' missing", key);
    double x;
    switch (v->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: x = v->via.f64; break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: x = (double)v->via.u64; break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: x = (double)v->via.i64; break;
    default: return icn_errf(err, errlen, "key '%s' is %s, expected a number", key, type_name(v->type));
    }
    /* No field of the protocol is meaningfully NaN or infinite; letting one in poisons training. */
    if (!isfinite(x)) return icn_errf(err, errlen, "key '%s' is not a finite number", key);
    *out = x;
    return 0;
}

int icn_map_bin(const msgpack_object *map, const char *key, size_t expect_len, const uint8_t **out, char *err,
                size_t errlen) {
    const msgpack_object *v = need_key(map, key, MSGPACK_OBJECT_BIN, err, errlen);
    if (!v) return -1;
    if (v->via.bin.size != expect_len)
        return icn_errf(err, errlen, "key '%s': bin of %u bytes, expected %zu", key, (unsigned)v->via.bin.size,
                        expect_len);
    *out = (const uint8_t *)v->via.bin.ptr;
    return 0;
}

int icn_map_kind_is(const msgpack_object *map, const char *kind) {
    const msgpack_object *v = icn_map_get(map, "kind");
    size_t n = strlen(kind);
    return v && v->type == MSGPACK_OBJECT_STR && v->via.str.size == n && memcmp(v->via.str.ptr, kind, n) == 0;
}

/* ---------------------------------------------------------------- the batch codec */

void icn_pack_str(msgpack_packer *pk, const char *s) { msgpack_pack_str_with_body(pk, s, strlen(s)); }

enum { F_X, F_Y, F_GEN, F_STEPS, F_LOGIT, F_REACHED, F_PRODUCER };

/* Element i of a field as little-endian bytes; returns its width. */
static size_t field_bytes(const icn_batch *b, int f, size_t i, uint8_t *d) {
    uint32_t u;
    switch (f) {
    case F_X: icn_le_store_f32(d, &b->x[i], 1); return 4;
    case F_Y: icn_le_store_u32(d, (uint32_t)b->y[i]); return 4;
    case F_GEN: icn_le_store_u32(d, (uint32_t)b->prov[i].generation); return 4;
    case F_STEPS: icn_le_store_u32(d, (uint32_t)b->prov[i].steps); return 4;
    case F_LOGIT: memcpy(&u, &b->prov[i].logit, 4); icn_le_store_u32(d, u); return 4;
    case F_REACHED: d[0] = b->prov[i].reached; return 1;
    default: icn_le_store_u32(d, b->prov[i].producer); return 4;
    }
}

/* A bin of `count` elements converted in small pieces: no copy of the whole field is made. */
static void pack_field(msgpack_packer *pk, const char *key, const icn_batch *b, int f, size_t count) {
    uint8_t tmp[4096];
    size_t width = f == F_REACHED ? 1 : 4;
    icn_pack_str(pk, key);
    msgpack_pack_bin(pk, count * width);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (f == F_X) { /* the bulk of every frame: straight from memory */
        msgpack_pack_bin_body(pk, b->x, count * 4);
        return;
    }
#endif
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        used += field_bytes(b, f, i, tmp + used);
        if (used + 4 > sizeof tmp || i + 1 == count) {
            msgpack_pack_bin_body(pk, tmp, used);
            used = 0;
        }
    }
}

void icn_batch_pack(msgpack_packer *pk, const icn_batch *b) {
    size_t n = (size_t)b->n;
    msgpack_pack_map(pk, 3 + (b->y != NULL) + (b->prov != NULL));
    icn_pack_str(pk, "kind");
    icn_pack_str(pk, "batch");
    icn_pack_str(pk, "shape");
    msgpack_pack_array(pk, 4);
    msgpack_pack_int32(pk, b->n);
    msgpack_pack_int32(pk, b->h);
    msgpack_pack_int32(pk, b->w);
    msgpack_pack_int32(pk, b->c);
    pack_field(pk, "x", b, F_X, n * icn_batch_dim(b));
    if (b->y) pack_field(pk, "y", b, F_Y, n);
    if (!b->prov) return;
    icn_pack_str(pk, "prov");
    msgpack_pack_map(pk, 5);
    pack_field(pk, "generation", b, F_GEN, n);
    pack_field(pk, "steps", b, F_STEPS, n);
    pack_field(pk, "logit", b, F_LOGIT, n);
    pack_field(pk, "reached", b, F_REACHED, n);
    pack_field(pk, "producer", b, F_PRODUCER, n);
}

#define ICN_MAX_DIM (1 << 24)

static int decode_shape(const msgpack_object *map, int32_t dims[4], size_t *pixels, char *err, size_t errlen) {
    const msgpack_object *s = need_key(map, "shape", MSGPACK_OBJECT_ARRAY, err, errlen);
    if (!s) return -1;
    if (s->via.array.size != 4)
        return icn_errf(err, errlen, "key 'shape' has %u entries, expected 4 [n, h, w, c]", (unsigned)s->via.array.size);
    uint64_t total = 1, limit = icn_max_frame() / 4;
    for (int i = 0; i < 4; i++) {
        const msgpack_object *d = &s->via.array.ptr[i];
        if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 < 1 || d->via.u64 > ICN_MAX_DIM)
            return icn_errf(err, errlen, "key 'shape': entry %d must be an integer in [1, %d]", i, ICN_MAX_DIM);
        dims[i] = (int32_t)d->via.u64;
        total *= d->via.u64; /* each factor <= 2^24 and total <= limit before it: no overflow */
        if (total > limit)
            return icn_errf(err, errlen, "key 'shape': %llu or more floats exceed the frame limit %zu", (ull)total,
                            icn_max_frame());
    }
    *pixels = (size_t)total;
    return 0;
}

static int finite_or_err(const float *v, size_t n, size_t per, const char *what, char *err, size_t errlen) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return icn_errf(err, errlen, "key '%s': value %zu (image %zu) is %s", what, i, i / per,
                            isnan(v[i]) ? "NaN" : "infinite");
    return 0;
}

static int decode_prov(const msgpack_object *map, icn_batch *b, char *err, size_t errlen) {
    const msgpack_object *pm = icn_map_get(map, "prov");
    if (!pm || pm->type == MSGPACK_OBJECT_NIL) return 0;
    if (pm->type != MSGPACK_OBJECT_MAP)
        return icn_errf(err, errlen, "key 'prov' is %s, expected a map", type_name(pm->type));
    size_t n = (size_t)b->n;
    const uint8_t *gen, *steps, *logit, *reached, *producer;
    char e[ICN_ERRLEN];
    if (icn_map_bin(pm, "generation", n * 4, &gen, e, sizeof e) || icn_map_bin(pm, "steps", n * 4, &steps, e, sizeof e) ||
        icn_map_bin(pm, "logit", n * 4, &logit, e, sizeof e) || icn_map_bin(pm, "reached", n, &reached, e, sizeof e) ||
        icn_map_bin(pm, "producer", n * 4, &producer, e, sizeof e))
        return icn_errf(err, errlen, "prov: %s", e);
    b->prov = xmalloc(n * sizeof(icn_provenance));
    for (size_t i = 0; i < n; i++) {
        icn_provenance *p = &b->prov[i];
        uint32_t u = icn_le_load_u32(logit + 4 * i);
        p->generation = (int32_t)icn_le_load_u32(gen + 4 * i);
        p->steps = (int32_t)icn_le_load_u32(steps + 4 * i);
        memcpy(&p->logit, &u, 4);
        p->reached = reached[i];
        p->producer = icn_le_load_u32(producer + 4 * i);
        if (!isfinite(p->logit)) return icn_errf(err, errlen, "prov: key 'logit': value %zu is not finite", i);
        if (p->reached > 1) return icn_errf(err, errlen, "prov: key 'reached': value %zu is %u, not 0 or 1", i, p->reached);
    }
    return 0;
}

static int decode_fields(const msgpack_object *map, icn_batch *out, char *err, size_t errlen) {
    char kind[64];
    if (icn_map_str(map, "kind", kind, sizeof kind, err, errlen)) return -1;
    if (strcmp(kind, "batch") != 0) return icn_errf(err, errlen, "frame kind is '%s', not 'batch'", kind);
    int32_t d[4] = {0};
    size_t pixels = 0;
    if (decode_shape(map, d, &pixels, err, errlen)) return -1;
    const uint8_t *x, *y = NULL;
    if (icn_map_bin(map, "x", pixels * 4, &x, err, errlen)) return -1;
    const msgpack_object *yo = icn_map_get(map, "y");
    if (yo && yo->type != MSGPACK_OBJECT_NIL && icn_map_bin(map, "y", (size_t)d[0] * 4, &y, err, errlen)) return -1;
    icn_batch_alloc(out, d[0], d[1], d[2], d[3], y != NULL);
    icn_le_load_f32(out->x, x, pixels);
    if (finite_or_err(out->x, pixels, icn_batch_dim(out), "x", err, errlen)) return -1;
    for (int32_t i = 0; y && i < d[0]; i++) out->y[i] = (int32_t)icn_le_load_u32(y + 4 * (size_t)i);
    return decode_prov(map, out, err, errlen);
}

int icn_batch_decode(const msgpack_object *map, icn_batch *out, char *err, size_t errlen) {
    char e[ICN_ERRLEN] = "";
    memset(out, 0, sizeof *out);
    if (map->type != MSGPACK_OBJECT_MAP) return icn_errf(err, errlen, "batch: message is %s, not a map", type_name(map->type));
    if (decode_fields(map, out, e, sizeof e) == 0) return 0;
    icn_batch_free(out);
    return icn_errf(err, errlen, "batch: %s", e);
}

void icn_frame_kind(const msgpack_object *map, char *kind, size_t len) {
    char e[ICN_ERRLEN];
    if (icn_map_str(map, "kind", kind, len, e, sizeof e)) snprintf(kind, len, "(none)");
}

static int read_frames(icn_reader *r, icn_batch *out, char *err, size_t errlen) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const uint8_t *p;
    size_t len;
    int k = 0, rc = 0;
    char e[ICN_ERRLEN];
    for (long frame = 0; rc == 0 && (k = icn_reader_next(r, &p, &len, err, errlen)) == 1; frame++) {
        ull off = (ull)icn_reader_offset(r);
        icn_batch b;
        char kind[64];
        if (icn_frame_unpack(p, len, &u, e, sizeof e)) {
            const char *m = strncmp(e, "frame: ", 7) == 0 ? e + 7 : e; /* we say which frame */
            rc = icn_errf(err, errlen, "%s: frame %ld at byte %llu: %s", icn_reader_name(r), frame, off, m);
        } else if (!icn_map_kind_is(&u.data, "batch")) {
            icn_frame_kind(&u.data, kind, sizeof kind);
            rc = icn_errf(err, errlen, "%s: frame %ld at byte %llu is of kind '%s', not a 'batch' of images",
                          icn_reader_name(r), frame, off, kind);
        } else if (icn_batch_decode(&u.data, &b, e, sizeof e)) {
            rc = icn_errf(err, errlen, "%s: frame %ld at byte %llu: %s", icn_reader_name(r), frame, off, e);
        } else if (out->n == 0) { /* the first frame: take it over rather than copy it */
            icn_batch_free(out);
            *out = b;
        } else {
            if (icn_batch_append(out, &b, e, sizeof e))
                rc = icn_errf(err, errlen, "%s: frame %ld at byte %llu: %s", icn_reader_name(r), frame, off, e);
            icn_batch_free(&b);
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc ? rc : (k < 0 ? -1 : 0);
}

int icn_batch_read_all(const char *path, icn_batch *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    icn_reader *r = icn_reader_open(path, err, errlen);
    if (!r) return -1;
    int rc = read_frames(r, out, err, errlen);
    icn_reader_close(r);
    if (rc) icn_batch_free(out);
    return rc;
}

void icn_outbuf_reserve(icn_outbuf *o, size_t more) {
    if (o->n + more <= o->cap) return;
    size_t cap = o->cap ? o->cap : 65536;
    while (cap < o->n + more) cap *= 2;
    o->p = xrealloc(o->p, cap);
    o->cap = cap;
}

int icn_outbuf_write(void *data, const char *buf, size_t len) {
    icn_outbuf *o = data;
    icn_outbuf_reserve(o, len);
    memcpy(o->p + o->n, buf, len);
    o->n += len;
    return 0;
}

/* Images per frame: `chunk`, but never so many that a frame would pass the reader's limit. */
static size_t frame_images(const icn_batch *b, int32_t chunk) {
    size_t max = icn_max_frame(), per = icn_batch_dim(b) * 4 + 64;
    size_t room = max > 8192 ? max - 4096 : max / 2; /* leave room for the keys and headers */
    size_t k = chunk > 0 ? (size_t)chunk : (size_t)b->n;
    if (k > room / per) k = room / per;
    return k ? k : 1;
}

int icn_batch_write(int fd, const icn_batch *b, int32_t chunk, char *err, size_t errlen) {
    icn_outbuf o = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &o, icn_outbuf_write);
    size_t n = b->n > 0 ? (size_t)b->n : 0, k = frame_images(b, chunk), d = icn_batch_dim(b);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += k) {
        size_t m = n - i < k ? n - i : k;
        icn_batch v = {(int32_t)m, b->h, b->w, b->c, b->x + i * d, b->y ? b->y + i : NULL,
                       b->prov ? b->prov + i : NULL};
        o.n = 0;
        icn_batch_pack(&pk, &v);
        rc = icn_write_all(fd, o.p, o.n, err, errlen);
    }
    free(o.p);
    return rc;
}

int icn_batch_write_file(const char *path, const icn_batch *b, int32_t chunk, char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    icn_out o;
    if (icn_out_open(&o, path, err, errlen)) return -1;
    if (icn_batch_write(o.fd, b, chunk, e, sizeof e)) {
        icn_errf(err, errlen, "%s: %s", o.target, e);
        icn_out_abort(&o);
        return -1;
    }
    return icn_out_commit(&o, err, errlen);
}

const char *icn_frame_error_detail(const char *err) { return strncmp(err, "frame: ", 7) == 0 ? err + 7 : err; }
