/* pool.c: the durable pseudo-negative store (lib/pool.h has the file format).
 *
 * The file is append-only. In memory: one offset and one length per record, small sorted
 * tallies (per class, generation, provenance producer; per (peer, generation) for the quota;
 * per (peer, reason) for refusals), and per (peer, producer) stream the set of seqs stored.
 * An append writes the batch's record frames, forces them to disk, writes the commit marker,
 * forces it; a failure cuts the file back to where it was and marks the pool broken. */
#include "pool.h"

#include "bytes.h"
#include "counts.h"
#include "fileio.h"
#include "util.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

typedef unsigned long long ull;

/* A record on its way into the index: where it is and what it counts as. */
typedef struct {
    uint64_t off;
    uint32_t len; /* payload bytes */
    int32_t y, gen;
    uint32_t prod;
} pending;

struct icn_pool {
    char *path;
    int fd, writable, broken;
    icn_fsync_policy fsync;
    icn_pool_contract k;
    uint8_t uuid[16];
    uint64_t *off; /* off[i]: byte offset of record i's frame */
    uint32_t *len; /* len[i]: its payload length */
    int64_t count;
    size_t cap;
    uint64_t end; /* end of the last commit marker: where the next batch goes */
    icn_tally_set cls, gen, prod;
    icn_tally_set usage;   /* key (peer id << 32 | generation): records stored */
    icn_tally_set rejects; /* key (peer id << 12 | reason id): records refused */
    icn_span_set seqs;     /* the seqs stored, per (peer, producer) */
    int64_t duplicates; /* batches answered as stored before, since opening */
    icn_name_set peers, reasons;
    pending *pend;
    size_t npend, cap_pend;
    uint64_t local_producer, local_seq; /* icn_pool_append's origin */
    char note[4 * ICN_ERRLEN];
    uint8_t *buf; /* scratch for reading */
    size_t bufcap;
};

/* ---------------------------------------------------------------- small helpers */

static size_t record_limit(void) {
    size_t m = icn_max_frame();
    return m < UINT32_MAX - 64 ? m : UINT32_MAX - 64;
}

int icn_pool_has_seq(const icn_pool *p, const char *peer, uint64_t producer, uint64_t seq) {
    int id = icn_name_find(&p->peers, peer, strlen(peer));
    return id >= 0 && icn_span_has(&p->seqs, (uint32_t)id, producer, seq);
}

static void pend_push(icn_pool *p, pending e) {
    if (p->npend == p->cap_pend) {
        p->cap_pend = p->cap_pend ? 2 * p->cap_pend : 64;
        p->pend = xrealloc(p->pend, p->cap_pend * sizeof *p->pend);
    }
    p->pend[p->npend++] = e;
}

/* The pending records join the index under a commit marker from peer (an id in p->peers). */
static void commit_pending(icn_pool *p, size_t peer, uint64_t producer, uint64_t seq) {
    if ((size_t)p->count + p->npend > p->cap) {
        while ((size_t)p->count + p->npend > p->cap) p->cap = p->cap ? 2 * p->cap : 1024;
        p->off = xrealloc(p->off, p->cap * sizeof *p->off);
        p->len = xrealloc(p->len, p->cap * sizeof *p->len);
    }
    for (size_t i = 0; i < p->npend; i++) {
        const pending *e = &p->pend[i];
        p->off[p->count] = e->off, p->len[p->count] = e->len, p->count++;
        icn_tally_add(&p->cls, -(int64_t)e->y - 1, 1);
        icn_tally_add(&p->gen, e->gen, 1);
        icn_tally_add(&p->prod, e->prod, 1);
        icn_tally_add(&p->usage, (int64_t)peer << 32 | (uint32_t)e->gen, 1);
    }
    p->npend = 0;
    icn_span_add(&p->seqs, (uint32_t)peer, producer, seq);
}

static uint8_t *scratch(icn_pool *p, size_t n) {
    if (n > p->bufcap) {
        p->bufcap = n;
        p->buf = xrealloc(p->buf, n);
    }
    return p->buf;
}

/* ---------------------------------------------------------------- contract and identity */

/* ---------------------------------------------------------------- records */

/* The store's own refusal reasons (pool_contract.c has the contract's): the stats' vocabulary. */
#define R_EMPTY "empty"
#define R_QUOTA "quota"
#define R_ORIGIN "origin"

/* Decode a payload that passed its CRC into one image (a 1-image batch) that keeps the contract. */
static int decode_payload(const icn_pool *p, const uint8_t *pl, size_t len, msgpack_unpacked *u, icn_batch *one,
                          char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    memset(one, 0, sizeof *one);
    if (icn_frame_unpack(pl, len, u, e, sizeof e)) return icn_errf(err, errlen, "payload: %s", e);
    if (icn_batch_decode(&u->data, one, e, sizeof e)) return icn_errf(err, errlen, "payload: %s", e);
    if (one->n != 1) snprintf(e, sizeof e, "it holds %d images, not 1", one->n);
    if (one->n != 1 || icn_pool_contract_shape(&p->k, one, e, sizeof e) || icn_pool_contract_image(&p->k, one, 0, e, sizeof e)) {
        icn_batch_free(one);
        return icn_errf(err, errlen, "payload: %s", e);
    }
    return 0;
}

/* ---------------------------------------------------------------- frames */

enum { FR_OK = 0, FR_SHORT, FR_BAD, FR_ROT };

typedef struct {
    uint32_t magic, len;
    uint64_t at, end;
    int complete;      /* not intact, yet no torn write leaves it so (see read_frame) */
    const uint8_t *pl; /* the payload, in p's scratch buffer */
} frame;

static uint32_t max_len_of(uint32_t magic) {
    return magic == ICN_POOL_COMMIT_MAGIC ? ICN_POOL_COMMIT_FIXED + ICN_POOL_PEER_MAX : (uint32_t)record_limit();
}
static uint32_t min_len_of(uint32_t magic) { return magic == ICN_POOL_COMMIT_MAGIC ? ICN_POOL_COMMIT_FIXED + 1 : 1; }

/* The frame at `at` of a file of `size` bytes: FR_OK; FR_SHORT when the file ends inside it; FR_BAD
 * (magic, length, or an end that does not repeat the beginning); FR_ROT (CRC wrong). why says
 * what; -1 with err on a read error. f->complete: the frame was once written whole, since a torn
 * write (a prefix, or whole pages missing as zeros) cannot leave it so: its magic with a nonzero
 * length out of range, or its full length present with a nonzero end that does not match. */
static int read_frame(icn_pool *p, uint64_t at, uint64_t size, frame *f, char *why, size_t wl, char *err,
                      size_t errlen) {
    char e[ICN_ERRLEN];
    uint8_t hd[ICN_POOL_FRAME_HEAD];
    uint64_t rem = size - at;
    f->at = at, f->complete = 0, f->magic = 0;
    if (rem < sizeof hd) {
        snprintf(why, wl, "short frame header: %llu of %d bytes", (ull)rem, ICN_POOL_FRAME_HEAD);
        return FR_SHORT;
    }
    if (icn_read_at(p->fd, hd, sizeof hd, at, e, sizeof e))
        return icn_errf(err, errlen, "%s: %s", p->path, e[0] ? e : "the file shrank while being read");
    f->magic = icn_le_load_u32(hd), f->len = icn_le_load_u32(hd + 4);
    uint32_t crc = icn_le_load_u32(hd + 8);
    if (f->magic != ICN_POOL_RECORD_MAGIC && f->magic != ICN_POOL_COMMIT_MAGIC) {
        snprintf(why, wl, "bad frame magic 0x%08x", f->magic);
        return FR_BAD;
    }
    if (f->len < min_len_of(f->magic) || f->len > max_len_of(f->magic)) {
        snprintf(why, wl, "frame length %u is outside [%u, %u]", f->len, min_len_of(f->magic), max_len_of(f->magic));
        f->complete = f->len != 0;
        return FR_BAD;
    }
    uint64_t total = (uint64_t)ICN_POOL_FRAME_HEAD + f->len + ICN_POOL_FRAME_TAIL;
    if (rem < total) {
        snprintf(why, wl, "short frame: %llu of %llu bytes", (ull)rem, (ull)total);
        return FR_SHORT;
    }
    uint8_t *buf = scratch(p, f->len + ICN_POOL_FRAME_TAIL);
    if (icn_read_at(p->fd, buf, f->len + ICN_POOL_FRAME_TAIL, at + sizeof hd, e, sizeof e))
        return icn_errf(err, errlen, "%s: %s", p->path, e[0] ? e : "the file shrank while being read");
    const uint8_t *tl = buf + f->len;
    f->complete = icn_le_load_u32(tl) != 0 || icn_le_load_u32(tl + 4) != 0;
    if (icn_le_load_u32(tl) != crc || icn_le_load_u32(tl + 4) != f->len) {
        snprintf(why, wl, "the frame's end (CRC 0x%08x, length %u) does not repeat its beginning (0x%08x, %u)",
                 icn_le_load_u32(tl), icn_le_load_u32(tl + 4), crc, f->len);
        return FR_BAD;
    }
    uint32_t got = icn_crc32(0, buf, f->len);
    if (got != crc) {
        snprintf(why, wl, "CRC-32 of the payload is 0x%08x, the frame says 0x%08x", got, crc);
        return FR_ROT;
    }
    f->pl = buf;
    f->end = at + total;
    return FR_OK;
}

typedef struct {
    uint64_t producer, seq, first;
    uint32_t n;
    const char *peer;
    size_t peer_len;
} commit_info;

static int parse_commit(const frame *f, commit_info *c, char *why, size_t wl) {
    const uint8_t *q = f->pl;
    c->producer = icn_le_load_u64(q), c->seq = icn_le_load_u64(q + 8), c->first = icn_le_load_u64(q + 16), c->n = icn_le_load_u32(q + 24);
    c->peer_len = (size_t)q[28] | (size_t)q[29] << 8;
    c->peer = (const char *)q + ICN_POOL_COMMIT_FIXED;
    if (c->peer_len < 1 || ICN_POOL_COMMIT_FIXED + c->peer_len != f->len)
        return snprintf(why, wl, "commit marker: peer length %zu does not fit its %u bytes", c->peer_len, f->len), -1;
    if (c->producer == 0 || c->seq == 0 || c->n == 0)
        return snprintf(why, wl, "commit marker: producer, seq and record count must be nonzero"), -1;
    return 0;
}

static size_t commit_frame(uint8_t *d, const char *peer, size_t peer_len, uint64_t producer, uint64_t seq, uint64_t first,
                           uint32_t n) {
    uint32_t len = (uint32_t)(ICN_POOL_COMMIT_FIXED + peer_len);
    uint8_t *q = d + ICN_POOL_FRAME_HEAD;
    icn_le_store_u64(q, producer), icn_le_store_u64(q + 8, seq), icn_le_store_u64(q + 16, first), icn_le_store_u32(q + 24, n);
    q[28] = (uint8_t)peer_len, q[29] = (uint8_t)(peer_len >> 8);
    memcpy(q + ICN_POOL_COMMIT_FIXED, peer, peer_len);
    uint32_t crc = icn_crc32(0, q, len);
    icn_le_store_u32(d, ICN_POOL_COMMIT_MAGIC), icn_le_store_u32(d + 4, len), icn_le_store_u32(d + 8, crc);
    icn_le_store_u32(q + len, crc), icn_le_store_u32(q + len + 4, len);
    return ICN_POOL_FRAME_HEAD + len + ICN_POOL_FRAME_TAIL;
}

/* The first intact frame (a commit marker only, when commits_only) that starts in (from, size),
 * or `size` when there is none. -1 on a read error. */
static int64_t next_intact(icn_pool *p, uint64_t from, uint64_t size, int commits_only, char *err, size_t errlen) {
    enum { BLK = 65536 };
    uint8_t *blk = xmalloc(BLK);
    char why[ICN_ERRLEN], e[ICN_ERRLEN];
    int64_t found = (int64_t)size;
    for (uint64_t q = from; q + 4 <= size && found == (int64_t)size;) {
        size_t n = size - q < BLK ? (size_t)(size - q) : BLK;
        if (icn_read_at(p->fd, blk, n, q, e, sizeof e)) {
            found = icn_errf(err, errlen, "%s: %s", p->path, e[0] ? e : "the file shrank while being read");
            break;
        }
        for (size_t i = 0; i + 4 <= n; i++) {
            uint32_t m = icn_le_load_u32(blk + i);
            if (m != ICN_POOL_COMMIT_MAGIC && (commits_only || m != ICN_POOL_RECORD_MAGIC)) continue;
            frame f;
            int r = read_frame(p, q + i, size, &f, why, sizeof why, err, errlen);
            if (r < 0) {
                found = -1;
                break;
            }
            if (r == FR_OK) {
                found = (int64_t)(q + i);
                break;
            }
        }
        if (n < BLK) break;
        q += n - 3; /* a magic may straddle the blocks */
    }
    free(blk);
    return found;
}

/* ---------------------------------------------------------------- the walk over a store */

/* How a walk treats what it finds: strict (opening: the first damage is an error) or a survey
 * (check and repair: report every damaged span, resynchronize, go on). */
typedef struct {
    int survey;
    icn_pool_problem_fn problem;
    void *ctx;
    icn_pool_report *rep;
    /* repair: called for each commit marker with the intact records pending before it */
    int (*sink)(void *sctx, icn_pool *src, const commit_info *c, char *err, size_t errlen);
    void *sctx;
} walk_opts;

static const char *s_of(int64_t n) { return n == 1 ? "" : "s"; }

static int damage(icn_pool *p, const walk_opts *w, const frame *f, uint64_t upto, const char *why, char *err,
                  size_t errlen) {
    char what[ICN_ERRLEN];
    if (w->survey) /* after earlier damage a record's index is unknown: its offset names it */
        snprintf(what, sizeof what, "%s at byte %llu", f->magic == ICN_POOL_COMMIT_MAGIC ? "commit marker" : "record",
                 (ull)f->at);
    else if (f->magic == ICN_POOL_COMMIT_MAGIC)
        snprintf(what, sizeof what, "commit marker at byte %llu (after record %" PRId64 ")", (ull)f->at,
                 p->count + (int64_t)p->npend - 1);
    else snprintf(what, sizeof what, "record %" PRId64 " at byte %llu", p->count + (int64_t)p->npend, (ull)f->at);
    if (!w->survey)
        return icn_errf(err, errlen,
                        "%s: %s is damaged (%s); refusing to use the pool ('icn-pool check' lists the damage, "
                        "'icn-pool repair --out NEW' copies the intact records; the %" PRId64 " record%s before it %s intact)",
                        p->path, what, why, p->count, s_of(p->count), p->count == 1 ? "is" : "are");
    char msg[3 * ICN_ERRLEN];
    snprintf(msg, sizeof msg, "%s is damaged (%s): %llu bytes skipped to the next intact frame", what, why,
             (ull)(upto - f->at));
    w->rep->damaged++;
    w->rep->damaged_bytes += upto - f->at;
    if (w->problem) w->problem(w->ctx, f->at, upto - f->at, 0, msg);
    return 0;
}

/* From byte `at` to the end is a torn tail (no intact commit marker follows). */
static int torn(icn_pool *p, const walk_opts *w, uint64_t at, uint64_t size, const char *why, char *err, size_t errlen) {
    ull cut = (ull)(size - at);
    int64_t k = (int64_t)p->npend;
    char what[2 * ICN_ERRLEN];
    if (k) snprintf(what, sizeof what, "an uncommitted batch: %" PRId64 " complete record%s, then %s", k, s_of(k), why);
    else snprintf(what, sizeof what, "%s", why);
    if (w->survey) {
        char msg[3 * ICN_ERRLEN];
        snprintf(msg, sizeof msg, "torn tail at byte %llu (%s): %llu bytes never committed (opening the pool for "
                 "writing cuts them off)", (ull)at, what, cut);
        w->rep->torn_at = at, w->rep->torn_bytes = size - at, w->rep->torn_records = k;
        if (w->problem) w->problem(w->ctx, at, size - at, 1, msg);
        p->npend = 0;
        return 0;
    }
    p->npend = 0;
    if (p->writable) {
        if (ftruncate(p->fd, (off_t)at) != 0 || icn_fdatasync(p->fd) != 0)
            return icn_errf(err, errlen, "%s: cannot cut off the torn tail at byte %llu: %s", p->path, (ull)at,
                            strerror(errno));
        snprintf(p->note, sizeof p->note,
                 "%s: torn tail at byte %llu (%s): cut off %llu bytes; the %" PRId64 " committed record%s before it %s intact",
                 p->path, (ull)at, what, cut, p->count, s_of(p->count), p->count == 1 ? "is" : "are");
    } else {
        snprintf(p->note, sizeof p->note,
                 "%s: torn tail at byte %llu (%s): ignored %llu bytes (opening the pool for writing cuts them off); the "
                 "%" PRId64 " committed record%s before it %s intact",
                 p->path, (ull)at, what, cut, p->count, s_of(p->count), p->count == 1 ? "is" : "are");
    }
    return 0;
}

static int walk(icn_pool *p, uint64_t size, const walk_opts *w, char *err, size_t errlen) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    char why[ICN_ERRLEN];
    uint64_t at = ICN_POOL_HEADER_LEN, batch_start = at, next_first = 0;
    int dirty = 0; /* damage since the last commit marker (survey) */
    int rc = 0;
    p->end = at;
    while (rc == 0 && at < size) {
        frame f;
        int r = read_frame(p, at, size, &f, why, sizeof why, err, errlen);
        if (r < 0) {
            rc = -1;
            break;
        }
        if (r == FR_OK && f.magic == ICN_POOL_RECORD_MAGIC) {
            icn_batch one;
            if (decode_payload(p, f.pl, f.len, &u, &one, why, sizeof why) == 0) {
                pend_push(p, (pending){f.at, f.len, one.y[0], one.prov[0].generation, one.prov[0].producer});
                icn_batch_free(&one);
                at = f.end;
                continue;
            }
            r = FR_ROT; /* intact bytes that are no record: as a bad frame */
        }
        if (r == FR_OK) { /* a commit marker */
            commit_info c;
            int parsed = parse_commit(&f, &c, why, sizeof why) == 0;
            int fits = parsed && c.n == p->npend && c.first == next_first;
            if (parsed && !fits)
                snprintf(why, sizeof why, "it closes %u records from record %llu, but %zu intact records from record %llu "
                         "precede it", c.n, (ull)c.first, p->npend, (ull)next_first);
            if (!fits) {
                if (!w->survey) {
                    rc = damage(p, w, &f, f.end, why, err, errlen);
                    break;
                }
                if (!parsed || !dirty) damage(p, w, &f, f.end, why, err, errlen); /* else explained already */
                if (!parsed) { /* its records wait for the next intact commit marker */
                    dirty = 1;
                    at = f.end;
                    continue;
                }
            }
            if (w->sink && (rc = w->sink(w->sctx, p, &c, err, errlen)) != 0) break;
            if (w->rep) w->rep->batches++;
            commit_pending(p, icn_name_id(&p->peers, c.peer, c.peer_len), c.producer, c.seq);
            next_first = c.first + c.n;
            at = batch_start = p->end = f.end;
            dirty = 0;
            continue;
        }
        /* No intact frame at `at`. Damage when a commit marker was once complete here or an intact
         * one follows (each commit marker is forced to disk before anything after it is written);
         * else the torn tail of an append that never finished. */
        int64_t next = f.magic == ICN_POOL_COMMIT_MAGIC && f.complete ? (int64_t)at
                                                                      : next_intact(p, at + 1, size, 1, err, errlen);
        if (next < 0) {
            rc = -1;
            break;
        }
        if ((uint64_t)next >= size) {
            if (icn_file_is_zero(p->fd, at, size)) snprintf(why, sizeof why, "zero-filled to the end");
            rc = torn(p, w, batch_start, size, why, err, errlen);
            at = size;
            break;
        }
        if (!w->survey) {
            rc = damage(p, w, &f, at, why, err, errlen);
            break;
        }
        int64_t resume = next_intact(p, at + 1, size, 0, err, errlen);
        if (resume < 0) {
            rc = -1;
            break;
        }
        damage(p, w, &f, (uint64_t)resume, why, err, errlen);
        dirty = 1;
        at = (uint64_t)resume;
    }
    if (rc == 0 && p->npend) { /* complete records, but no commit marker */
        snprintf(why, sizeof why, "the end of the file");
        rc = torn(p, w, batch_start, size, why, err, errlen);
    }
    if (rc == 0 && w->rep) w->rep->records = p->count;
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* ---------------------------------------------------------------- opening */

static void pool_free(icn_pool *p) {
    if (!p) return;
    if (p->fd >= 0) close(p->fd);
    free(p->path);
    free(p->off);
    free(p->len);
    free(p->cls.v);
    free(p->gen.v);
    free(p->prod.v);
    free(p->usage.v);
    free(p->rejects.v);
    free(p->seqs.v);
    icn_names_free(&p->peers);
    icn_names_free(&p->reasons);
    free(p->pend);
    free(p->buf);
    free(p);
}

/* A new store (or one whose header a crash cut short): header with a fresh UUID, made durable. */
static int write_header(icn_pool *p, char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    uint8_t hd[ICN_POOL_HEADER_LEN];
    if (icn_uuid_random(p->uuid)) return icn_errf(err, errlen, "%s: getrandom: %s", p->path, strerror(errno));
    icn_pool_header_encode(p->uuid, &p->k, hd);
    if (ftruncate(p->fd, 0) != 0) return icn_errf(err, errlen, "%s: cannot write the pool header: %s", p->path, strerror(errno));
    if (icn_write_at(p->fd, hd, sizeof hd, 0, e, sizeof e))
        return icn_errf(err, errlen, "%s: cannot write the pool header: %s", p->path, e);
    if (icn_fdatasync(p->fd) != 0)
        return icn_errf(err, errlen, "%s: cannot make the pool header durable: %s", p->path, strerror(errno));
    if (icn_fsync_dir_of(p->path, err, errlen)) return -1;
    p->end = ICN_POOL_HEADER_LEN;
    return 0;
}

/* A pool on an open descriptor, not yet read. */
static icn_pool *pool_new(const char *path, int fd, int writable) {
    icn_pool *p = xcalloc(1, sizeof *p);
    p->path = strdup(path);
    if (!p->path) icn_die(3, "out of memory");
    p->fd = fd;
    p->writable = writable;
    p->end = ICN_POOL_HEADER_LEN;
    return p;
}

/* Open path's descriptor: a regular file only (a FIFO would block a plain open). */
static int open_store(const char *path, int flags, int *fd, struct stat *st, char *err, size_t errlen) {
    if ((*fd = icn_open_regular_as(path, flags, 0644, err, errlen)) < 0) return -1;
    if (fstat(*fd, st) == 0) return 0;
    close(*fd), *fd = -1;
    return icn_errf(err, errlen, "%s: %s", path, strerror(errno));
}

/* Read the header of p (size bytes): 0 and the contract; 1 when there is no complete header yet
 * (a new file); -1 with err. */
static int read_header(icn_pool *p, uint64_t size, char *err, size_t errlen) {
    uint8_t hd[ICN_POOL_HEADER_LEN] = {0};
    size_t have = size < sizeof hd ? (size_t)size : sizeof hd;
    char e[ICN_ERRLEN];
    if (icn_read_at(p->fd, hd, have, 0, e, sizeof e) < 0) return icn_errf(err, errlen, "%s: %s", p->path, e);
    if (have < sizeof hd || icn_file_is_zero(p->fd, 0, size)) {
        size_t m = have < 8 ? have : 8;
        if (memcmp(hd, ICN_POOL_MAGIC, m) == 0 || icn_file_is_zero(p->fd, 0, size)) return 1;
        return icn_pool_header_decode(p->path, hd, p->uuid, &p->k, err, errlen); /* names what it is instead */
    }
    return icn_pool_header_decode(p->path, hd, p->uuid, &p->k, err, errlen);
}

int icn_pool_open(const char *path, int mode, const icn_pool_contract *contract, icn_pool **out, char *err,
                  size_t errlen) {
    *out = NULL;
    int writable = (mode & ICN_POOL_WRITE) != 0, create = mode == ICN_POOL_CREATE, fd;
    char e[ICN_ERRLEN];
    if (contract && icn_pool_contract_check(contract, e, sizeof e)) return icn_errf(err, errlen, "%s: %s", path, e);
    struct stat st;
    int created = create && access(path, F_OK) != 0 && errno == ENOENT; /* removed again if opening fails */
    if (open_store(path, (writable ? O_RDWR : O_RDONLY) | (created ? O_CREAT | O_EXCL : 0), &fd, &st, err, errlen)) return -1;
    icn_pool *p = pool_new(path, fd, writable);
    int rc = 0;
    if (writable && flock(p->fd, LOCK_EX | LOCK_NB) != 0)
        rc = icn_errf(err, errlen, "%s: %s", path,
                      errno == EWOULDBLOCK ? "in use by another process (it holds the pool's lock)" : strerror(errno));
    uint64_t size = (uint64_t)st.st_size;
    int hr = rc ? -1 : read_header(p, size, err, errlen);
    if (hr == 1) { /* no complete header */
        if (!create)
            rc = icn_errf(err, errlen, "%s: not an icn pool (%s)", path,
                          size ? "its header is cut short" : "empty file; 'icn-pool serve' creates pools");
        else if (!contract)
            rc = icn_errf(err, errlen, "%s: a new pool needs its contract (icn-pool serve --shape HxWxC --classes K)", path);
        else {
            if (size) snprintf(p->note, sizeof p->note, "%s: the header was cut short or zero (%llu bytes): rewritten",
                               path, (ull)size);
            p->k = *contract;
            rc = write_header(p, err, errlen);
        }
    } else if (hr < 0) {
        rc = -1;
    } else if (contract && !icn_pool_contract_equal(contract, &p->k)) {
        char a[ICN_ERRLEN], b[ICN_ERRLEN];
        icn_pool_contract_format(&p->k, a, sizeof a);
        icn_pool_contract_format(contract, b, sizeof b);
        rc = icn_errf(err, errlen, "%s: the store's contract is %s; asked for %s", path, a, b);
    } else {
        walk_opts w = {0};
        rc = walk(p, size, &w, err, errlen);
    }
    uint8_t id[16];
    if (rc == 0 && writable) { /* icn_pool_append's producer: random, nonzero */
        if (icn_uuid_random(id)) rc = icn_errf(err, errlen, "%s: getrandom: %s", path, strerror(errno));
        memcpy(&p->local_producer, id, 8);
        p->local_producer |= 1;
    }
    if (rc) {
        if (created) unlink(path);
        pool_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

const char *icn_pool_note(const icn_pool *p) { return p->note; }
const char *icn_pool_path(const icn_pool *p) { return p->path; }
const icn_pool_contract *icn_pool_contract_of(const icn_pool *p) { return &p->k; }
const uint8_t *icn_pool_uuid(const icn_pool *p) { return p->uuid; }
void icn_pool_set_fsync(icn_pool *p, icn_fsync_policy f) { p->fsync = f; }
int64_t icn_pool_count(const icn_pool *p) { return p->count; }
int64_t icn_pool_duplicates(const icn_pool *p) { return p->duplicates; }

int icn_pool_shape(const icn_pool *p, int32_t *h, int32_t *w, int32_t *c) {
    *h = p->k.h, *w = p->k.w, *c = p->k.c;
    return 1;
}

/* ---------------------------------------------------------------- appending */

static void seal_frame(icn_outbuf *o, size_t start) {
    uint32_t len = (uint32_t)(o->n - start - ICN_POOL_FRAME_HEAD);
    uint8_t *hd = o->p + start;
    uint32_t crc = icn_crc32(0, hd + ICN_POOL_FRAME_HEAD, len);
    icn_le_store_u32(hd, ICN_POOL_RECORD_MAGIC), icn_le_store_u32(hd + 4, len), icn_le_store_u32(hd + 8, crc);
    icn_outbuf_reserve(o, ICN_POOL_FRAME_TAIL);
    icn_le_store_u32(o->p + o->n, crc), icn_le_store_u32(o->p + o->n + 4, len);
    o->n += ICN_POOL_FRAME_TAIL;
}

/* Write the record frames in buf (whose entries p->pend describe, offsets relative to buf) and a
 * commit marker at the end of the store, durably per the policy, then index them. 0, or -2 with
 * err (the file cut back, the pool broken). */
static int write_batch(icn_pool *p, const uint8_t *buf, size_t len, const char *peer, uint64_t producer, uint64_t seq,
                       char *err, size_t errlen) {
    char e[ICN_ERRLEN] = "";
    uint64_t base = p->end;
    size_t peer_len = strlen(peer);
    uint8_t cm[ICN_POOL_FRAME_HEAD + ICN_POOL_COMMIT_FIXED + ICN_POOL_PEER_MAX + ICN_POOL_FRAME_TAIL];
    size_t cl = commit_frame(cm, peer, peer_len, producer, seq, (uint64_t)p->count, (uint32_t)p->npend);
    int rc = 0;
    if (p->fsync == ICN_FSYNC_ALWAYS) { /* each record, then the marker */
        for (size_t i = 0; i < p->npend && rc == 0; i++) {
            size_t from = (size_t)p->pend[i].off, n = ICN_POOL_FRAME_HEAD + p->pend[i].len + ICN_POOL_FRAME_TAIL;
            if (icn_write_at(p->fd, buf + from, n, base + from, e, sizeof e) || icn_fdatasync(p->fd) != 0) rc = -2;
        }
    } else if (icn_write_at(p->fd, buf, len, base, e, sizeof e) || (p->fsync == ICN_FSYNC_BATCH && icn_fdatasync(p->fd) != 0)) {
        rc = -2;
    }
    if (rc == 0 && (icn_write_at(p->fd, cm, cl, base + len, e, sizeof e) || (p->fsync != ICN_FSYNC_NONE && icn_fdatasync(p->fd) != 0)))
        rc = -2;
    if (rc) { /* leave the file as it was; after a failed fsync the kernel's state is unknown: stop */
        icn_errf(err, errlen, "%s: %s; the batch was not stored", p->path, e[0] ? e : strerror(errno));
        p->broken = 1;
        p->npend = 0;
        if (ftruncate(p->fd, (off_t)base) != 0 || icn_fdatasync(p->fd) != 0) {
            char more[ICN_ERRLEN];
            snprintf(more, sizeof more, "%s", err);
            icn_errf(err, errlen, "%s; and cutting the partial batch off failed: %s", more, strerror(errno));
        }
        return -2;
    }
    for (size_t i = 0; i < p->npend; i++) p->pend[i].off += base;
    commit_pending(p, icn_name_id(&p->peers, peer, peer_len), producer, seq);
    p->end = base + len + cl;
    return 0;
}

static int refuse(icn_pool *p, const char *peer, const char *reason, int64_t records, const char *why, char *err,
                  size_t errlen) {
    icn_pool_count_refusal(p, peer, reason, records);
    return icn_errf(err, errlen, "refused (%s): %s", reason, why);
}

void icn_pool_count_refusal(icn_pool *p, const char *peer, const char *reason, int64_t records) {
    size_t pl = strnlen(peer ? peer : "", ICN_POOL_PEER_MAX), rl = strnlen(reason, 15);
    size_t pid = icn_name_id(&p->peers, pl ? peer : "?", pl ? pl : 1), rid = icn_name_id(&p->reasons, reason, rl);
    if (rid < 4096) icn_tally_add(&p->rejects, (int64_t)pid << 12 | (int64_t)rid, records);
}

int icn_pool_append_batch(icn_pool *p, const icn_batch *b, const icn_pool_origin *o, char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    const char *peer = o && o->peer ? o->peer : "";
    size_t peer_len = strlen(peer);
    if (!p->writable) return icn_errf(err, errlen, "%s: opened read-only", p->path);
    if (p->broken) return icn_errf(err, errlen, "%s: an earlier write failed: reopen the pool", p->path), -2;
    int64_t n = b->n > 0 ? b->n : 0;
    if (peer_len < 1 || peer_len > ICN_POOL_PEER_MAX)
        return refuse(p, peer, R_ORIGIN, n, "the peer name must be 1 .. 64 bytes", err, errlen);
    if (o->producer == 0 || o->seq == 0)
        return refuse(p, peer, R_ORIGIN, n, "producer and seq must be nonzero", err, errlen);
    if (icn_pool_has_seq(p, peer, o->producer, o->seq)) { /* stored before: acknowledge again, as such */
        p->duplicates++;
        return 1;
    }
    if (b->n < 1) return refuse(p, peer, R_EMPTY, 0, "a batch of no images", err, errlen);
    const char *why;
    if ((why = icn_pool_contract_shape(&p->k, b, e, sizeof e))) return refuse(p, peer, why, n, e, err, errlen);
    for (int32_t i = 0; i < b->n; i++)
        if ((why = icn_pool_contract_image(&p->k, b, i, e, sizeof e))) return refuse(p, peer, why, n, e, err, errlen);
    size_t pid = icn_name_id(&p->peers, peer, peer_len);
    if (p->k.quota_per_generation) { /* records per (peer, generation), this batch included */
        icn_tally_set t = {0};
        for (int32_t i = 0; i < b->n; i++) icn_tally_add(&t, b->prov[i].generation, 1);
        int over = -1;
        for (size_t i = 0; i < t.n && over < 0; i++)
            if (icn_tally_get(&p->usage, (int64_t)pid << 32 | (uint32_t)t.v[i].key) + t.v[i].count > p->k.quota_per_generation)
                over = (int)i;
        if (over >= 0) {
            snprintf(e, sizeof e, "peer %s would hold %" PRId64 " records of generation %" PRId64 ", over the quota of %" PRId64,
                     peer, icn_tally_get(&p->usage, (int64_t)pid << 32 | (uint32_t)t.v[over].key) + t.v[over].count,
                     t.v[over].key, p->k.quota_per_generation);
            free(t.v);
            return refuse(p, peer, R_QUOTA, n, e, err, errlen);
        }
        free(t.v);
    }

    /* Every record frame into one buffer. */
    size_t d = icn_batch_dim(b), limit = record_limit();
    icn_outbuf ob = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &ob, icn_outbuf_write);
    p->npend = 0;
    for (int32_t i = 0; i < b->n; i++) {
        size_t start = ob.n;
        icn_outbuf_reserve(&ob, ICN_POOL_FRAME_HEAD);
        ob.n += ICN_POOL_FRAME_HEAD;
        icn_batch one = {1, b->h, b->w, b->c, b->x + (size_t)i * d, b->y + i, b->prov + i};
        icn_batch_pack(&pk, &one);
        size_t len = ob.n - start - ICN_POOL_FRAME_HEAD;
        if (len > limit) {
            free(ob.p);
            p->npend = 0;
            return icn_errf(err, errlen, "image %d: its record of %zu bytes exceeds the limit %zu", i, len, limit);
        }
        seal_frame(&ob, start);
        pend_push(p, (pending){start, (uint32_t)len, b->y[i], b->prov[i].generation, b->prov[i].producer});
    }
    int rc = write_batch(p, ob.p, ob.n, peer, o->producer, o->seq, err, errlen);
    free(ob.p);
    return rc;
}

int icn_pool_append(icn_pool *p, const icn_batch *b, char *err, size_t errlen) {
    icn_pool_origin o = {"local", p->local_producer, p->local_seq + 1};
    int rc = icn_pool_append_batch(p, b, &o, err, errlen);
    if (rc == 0) p->local_seq++;
    return rc;
}

/* ---------------------------------------------------------------- reading */

#define READ_SPAN ((uint64_t)4 << 20) /* read up to this many bytes of records at once */

static uint64_t rec_end(const icn_pool *p, int64_t i) {
    return p->off[i] + ICN_POOL_FRAME_HEAD + p->len[i] + ICN_POOL_FRAME_TAIL;
}

int icn_pool_read(icn_pool *p, int64_t offset, int64_t max, icn_batch *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (offset < 0 || max < 0)
        return icn_errf(err, errlen, "%s: read of %" PRId64 " records at offset %" PRId64 ": both must be >= 0", p->path,
                        max, offset);
    if (offset >= p->count || max == 0) return 0;
    int64_t m = p->count - offset < max ? p->count - offset : max;
    icn_batch_alloc(out, (int32_t)(m > INT32_MAX ? INT32_MAX : m), p->k.h, p->k.w, p->k.c, 1);
    m = out->n;
    out->prov = xmalloc((size_t)m * sizeof *out->prov);
    size_t d = icn_batch_dim(out);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    char e[ICN_ERRLEN], why[ICN_ERRLEN];
    int rc = 0;
    for (int64_t i = offset; i < offset + m && rc == 0;) {
        int64_t j = i + 1; /* records [i, j) in one read */
        while (j < offset + m && rec_end(p, j) - p->off[i] <= READ_SPAN) j++;
        uint64_t span = rec_end(p, j - 1) - p->off[i];
        uint8_t *buf = scratch(p, (size_t)span);
        int r = icn_read_at(p->fd, buf, (size_t)span, p->off[i], e, sizeof e);
        if (r) {
            rc = icn_errf(err, errlen, "%s: records %" PRId64 "..%" PRId64 ": %s", p->path, i, j - 1,
                          r < 0 ? e : "the file is shorter than when it was opened");
            break;
        }
        for (int64_t k = i; k < j && rc == 0; k++) {
            const uint8_t *hd = buf + (p->off[k] - p->off[i]);
            size_t len = p->len[k];
            const uint8_t *pl = hd + ICN_POOL_FRAME_HEAD;
            icn_batch one;
            why[0] = 0;
            if (icn_le_load_u32(hd) != ICN_POOL_RECORD_MAGIC || icn_le_load_u32(hd + 4) != len)
                snprintf(why, sizeof why, "frame header changed since the pool was opened");
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

void icn_pool_stats(const icn_pool *p, icn_pool_counts *out) {
    memset(out, 0, sizeof *out);
    out->total = p->count;
    out->duplicates = p->duplicates;
    icn_uuid_format(p->uuid, out->uuid);
    icn_tally_copy(&p->cls, &out->per_class, &out->n_class);
    icn_tally_copy(&p->gen, &out->per_generation, &out->n_generation);
    icn_tally_copy(&p->prod, &out->per_producer, &out->n_producer);
    out->n_rejects = p->rejects.n;
    out->rejects = xcalloc(p->rejects.n ? p->rejects.n : 1, sizeof *out->rejects);
    for (size_t i = 0; i < p->rejects.n; i++) { /* sorted by peer id, then reason id */
        icn_pool_reject *r = &out->rejects[i];
        snprintf(r->peer, sizeof r->peer, "%s", p->peers.v[p->rejects.v[i].key >> 12]);
        snprintf(r->reason, sizeof r->reason, "%s", p->reasons.v[p->rejects.v[i].key & 4095]);
        r->count = p->rejects.v[i].count;
    }
}

void icn_pool_counts_free(icn_pool_counts *c) {
    if (!c) return;
    free(c->per_class);
    free(c->per_generation);
    free(c->per_producer);
    free(c->rejects);
    memset(c, 0, sizeof *c);
}

int icn_pool_sync(icn_pool *p, char *err, size_t errlen) {
    if (p->writable && icn_fdatasync(p->fd) != 0) return icn_errf(err, errlen, "%s: fsync: %s", p->path, strerror(errno));
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

/* ---------------------------------------------------------------- check and repair */

/* The store at path, read-only, with its header read (for a walk in survey mode). */
static icn_pool *open_survey(const char *path, uint64_t *size, icn_pool_report *r, char *err, size_t errlen) {
    int fd;
    struct stat st;
    memset(r, 0, sizeof *r);
    if (open_store(path, O_RDONLY, &fd, &st, err, errlen)) return NULL;
    icn_pool *p = pool_new(path, fd, 0);
    *size = (uint64_t)st.st_size;
    int hr = read_header(p, *size, err, errlen);
    if (hr == 1) icn_errf(err, errlen, "%s: not an icn pool (%s)", path, *size ? "its header is cut short" : "empty file");
    if (hr) {
        pool_free(p);
        return NULL;
    }
    icn_uuid_format(p->uuid, r->uuid);
    r->contract = p->k;
    return p;
}

int icn_pool_check(const char *path, icn_pool_problem_fn problem, void *ctx, icn_pool_report *r, char *err,
                   size_t errlen) {
    uint64_t size;
    icn_pool *p = open_survey(path, &size, r, err, errlen);
    if (!p) return -1;
    walk_opts w = {.survey = 1, .problem = problem, .ctx = ctx, .rep = r};
    int rc = walk(p, size, &w, err, errlen);
    pool_free(p);
    return rc;
}

/* Repair's sink: the intact records pending in src, under commit c, go to the new store. */
static int copy_batch(void *sctx, icn_pool *src, const commit_info *c, char *err, size_t errlen) {
    icn_pool *dst = sctx;
    if (src->npend == 0) return 0; /* every record of this batch was damaged */
    size_t total = 0;
    for (size_t i = 0; i < src->npend; i++) total += ICN_POOL_FRAME_HEAD + src->pend[i].len + ICN_POOL_FRAME_TAIL;
    uint8_t *buf = xmalloc(total);
    char e[ICN_ERRLEN];
    dst->npend = 0;
    size_t at = 0;
    for (size_t i = 0; i < src->npend; i++) {
        const pending *q = &src->pend[i];
        size_t n = ICN_POOL_FRAME_HEAD + q->len + ICN_POOL_FRAME_TAIL;
        if (icn_read_at(src->fd, buf + at, n, q->off, e, sizeof e)) {
            free(buf);
            dst->npend = 0;
            return icn_errf(err, errlen, "%s: %s", src->path, e[0] ? e : "the file shrank while being read");
        }
        pend_push(dst, (pending){at, q->len, q->y, q->gen, q->prod});
        at += n;
    }
    char peer[ICN_POOL_PEER_MAX + 1];
    snprintf(peer, sizeof peer, "%.*s", (int)c->peer_len, c->peer);
    int rc = write_batch(dst, buf, total, peer, c->producer, c->seq, err, errlen);
    free(buf);
    return rc;
}

int icn_pool_repair(const char *path, const char *out, icn_pool_problem_fn problem, void *ctx, icn_pool_report *r,
                    char *err, size_t errlen) {
    struct stat st;
    if (lstat(out, &st) == 0)
        return icn_errf(err, errlen, "--out %s: exists; repair writes a new store and never overwrites one", out);
    uint64_t size;
    icn_pool *src = open_survey(path, &size, r, err, errlen);
    if (!src) return -1;
    size_t tl = strlen(out) + 32;
    char *tmp = xmalloc(tl);
    snprintf(tmp, tl, "%s.tmp.%ld", out, (long)getpid());
    unlink(tmp);
    icn_pool *dst = NULL;
    int rc = icn_pool_open(tmp, ICN_POOL_CREATE, &src->k, &dst, err, errlen);
    if (rc == 0) {
        walk_opts w = {.survey = 1, .problem = problem, .ctx = ctx, .rep = r, .sink = copy_batch, .sctx = dst};
        rc = walk(src, size, &w, err, errlen);
        if (rc == 0) r->records = dst->count;
        if (icn_pool_close(dst, err, errlen) && rc == 0) rc = -1;
    }
    if (rc == 0 && link(tmp, out) != 0) /* link, not rename: never replaces what appeared meanwhile */
        rc = icn_errf(err, errlen, "--out %s: cannot put the new store in place: %s", out, strerror(errno));
    if (rc == 0) rc = icn_fsync_dir_of(out, err, errlen);
    unlink(tmp);
    free(tmp);
    pool_free(src);
    return rc;
}
