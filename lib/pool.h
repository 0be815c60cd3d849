/* pool.h: the durable store of pseudo-negatives behind icn-pool(1).
 *
 * One pseudo-negative per record, so an offset is a sample index: record 0 is the first
 * image ever stored, and a trainer that remembers "I have consumed N" never sees a record
 * twice and never misses one, across restarts of either side.
 *
 * File format (all integers little-endian):
 *
 *   header   8 bytes   "ICNPOOL1"
 *   then records, back to back, each:
 *     u32   magic      0x524e4349 (on disk: the bytes "ICNR")
 *     u32   length L   of the payload, 1 .. min(icn_max_frame(), 2^32 - 1)
 *     u32   crc        CRC-32 (zlib's crc32(), the ISO-HDLC/PNG polynomial) of the payload
 *     L     payload    one msgpack "batch" frame (icn-wire(5)) holding exactly one image,
 *                      its label y < 0 (a pseudo-negative: y = -(k+1) means "not class k")
 *                      and its provenance ("prov")
 *
 * The first record fixes the image shape h x w x c; every later one must match it.
 *
 * Opening scans and verifies every record (magic, bounded length, CRC, that the payload
 * decodes to one labelled pseudo-negative with provenance, the shape) and builds an
 * in-memory index of record offsets plus per-class, per-generation and per-producer counts.
 * A torn record at the end, which is what a crash in the middle of an append leaves (a
 * short header, a short payload that is the valid beginning of a message, a bad CRC in the
 * last record, or a zero-filled tail), is cut off when the pool is opened for writing
 * (ignored when read-only) and reported by icn_pool_note(): nothing that was completely
 * written is lost. A length that runs past the end over complete messages is a damaged
 * length, not a torn append. Damage anywhere other than the tail is an
 * error naming the record and its byte offset: a damaged pool is never served. */
#ifndef ICN_POOL_H
#define ICN_POOL_H
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"

#define ICN_POOL_HEADER "ICNPOOL1"
#define ICN_POOL_HEADER_LEN 8
#define ICN_POOL_RECORD_MAGIC 0x524e4349u
#define ICN_POOL_RECORD_HEADER 12 /* magic, length, crc */

/* When appended records are forced to disk. BATCH (the default): once per icn_pool_append,
 * after all its records are written. ALWAYS: after every record. NONE: never (the kernel
 * writes them back; a process crash loses nothing, a power failure may). */
typedef enum { ICN_FSYNC_BATCH = 0, ICN_FSYNC_NONE, ICN_FSYNC_ALWAYS } icn_fsync_policy;
int icn_fsync_parse(const char *s, icn_fsync_policy *out); /* "batch", "always", "none"; -1 else */
const char *icn_fsync_name(icn_fsync_policy f);

/* Open modes. READ: read-only, no lock, a torn tail is ignored but left in place (a pool being
 * served can be dumped). WRITE: read-write with an exclusive lock (flock) so that only one
 * process appends; a torn tail is cut off. CREATE: WRITE, creating the file (with its header)
 * when it does not exist or is empty. */
enum { ICN_POOL_READ = 0, ICN_POOL_WRITE = 1, ICN_POOL_CREATE = 3 };

typedef struct icn_pool icn_pool;

/* 0 and *out on success; -1 with a one-line error naming the file (and the record and byte
 * offset for damage) on failure. */
int icn_pool_open(const char *path, int mode, icn_pool **out, char *err, size_t errlen);
/* What opening repaired or ignored ("" when the file was clean), e.g.
 * "pool.icn: torn record 41 at byte 130936 (short payload: 1001 of 3268 bytes): cut off 1013
 * bytes; the 41 records before it are intact". */
const char *icn_pool_note(const icn_pool *p);
const char *icn_pool_path(const icn_pool *p);
void icn_pool_set_fsync(icn_pool *p, icn_fsync_policy f);

/* Append every image of b as one record each, with one write. b must hold n >= 1 images,
 * labels all < 0, provenance, finite pixels and logits, reached 0 or 1, and the pool's shape
 * (the first append fixes it). On any error nothing is stored (a failed write is cut back off).
 * Returns 0; -1 when b was refused (the pool is unchanged and fine); -2 when storing failed
 * (write or fsync error: the disk, not the data, is the problem). */
int icn_pool_append(icn_pool *p, const icn_batch *b, char *err, size_t errlen);

int64_t icn_pool_count(const icn_pool *p);
/* 1 and the shape once a record is stored; 0 while the pool is empty. */
int icn_pool_shape(const icn_pool *p, int32_t *h, int32_t *w, int32_t *c);

/* Records [offset, offset + max) that exist, as one batch with labels and provenance (n = 0,
 * nothing allocated, when offset >= count). Records are verified again (CRC, decoding) as they
 * are read. offset and max must be >= 0. */
int icn_pool_read(icn_pool *p, int64_t offset, int64_t max, icn_batch *out, char *err, size_t errlen);

/* Counts. Keys: class k (the label -(k+1)), snapshot generation, producer id; each list is
 * sorted by key and holds only keys that occur. */
typedef struct { int64_t key, count; } icn_pool_tally;
typedef struct {
    int64_t total;
    icn_pool_tally *per_class, *per_generation, *per_producer;
    size_t n_class, n_generation, n_producer;
} icn_pool_counts;
void icn_pool_stats(const icn_pool *p, icn_pool_counts *out); /* a copy: free with icn_pool_counts_free */
void icn_pool_counts_free(icn_pool_counts *c);

/* fsync now (whatever the policy); then close, releasing the lock. Both return -1 with err when
 * the data could not be made durable; close frees p in every case. */
int icn_pool_sync(icn_pool *p, char *err, size_t errlen);
int icn_pool_close(icn_pool *p, char *err, size_t errlen);

/* The pool protocol's "stats" reply (icn-wire(5), POOL PROTOCOL):
 * {"kind":"stats","total":n,"rejected":r,"per_class":{k:count},"per_generation":{g:count},
 *  "per_producer":{id:count}}, the inner maps keyed by integers. Decoding validates it as
 * untrusted input; counts is always set (free with icn_pool_counts_free). */
void icn_pack_pool_stats(msgpack_sbuffer *sb, const icn_pool_counts *c, int64_t rejected);
int icn_decode_pool_stats(const msgpack_object *map, icn_pool_counts *c, int64_t *rejected, char *err, size_t errlen);

#endif
