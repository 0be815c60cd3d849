/* pool.h: the durable store of pseudo-negatives behind icn-pool(1).
 *
 * One pseudo-negative per record, so an offset is a sample index: record 0 is the first
 * image ever stored, and a trainer that remembers "I have consumed N" never sees a record
 * twice and never misses one, across restarts of either side.
 *
 * File format, version 2 (all integers little-endian):
 *
 *   header   68 bytes
 *     8     magic      "ICNPOOL2"
 *     u32   version    2
 *     u32   length     68 (of this header)
 *     16    uuid       the store's identity: 16 random bytes (getrandom), RFC 4122 version 4
 *     i32   h, w, c    the contract: the image shape every record has,
 *     i32   classes    labels -1 .. -classes (pseudo-negatives of classes 0 .. classes-1),
 *     f32   lo, hi     every pixel in [lo, hi] (finite),
 *     i64   quota      records one peer may store per snapshot generation (0: no quota)
 *     u32   crc        CRC-32 of the 64 bytes above
 *   then frames, back to back, each:
 *     u32   magic      "ICNR" (0x524e4349, a record) or "ICNC" (0x434e4349, a commit marker)
 *     u32   length L   of the payload
 *     u32   crc        CRC-32 (zlib's crc32(), the ISO-HDLC/PNG polynomial) of the payload
 *     L     payload
 *     u32   crc        again, and
 *     u32   length L   again: a frame is complete only when its end repeats its beginning
 *   A record's payload is one msgpack "batch" frame (icn-wire(5)) holding exactly one image,
 *   its label y < 0 (y = -(k+1) means "not class k") and its provenance ("prov"); L is
 *   1 .. min(icn_max_frame(), 2^32 - 1). A commit marker's payload (30 + P bytes) closes the
 *   batch of the n records just before it:
 *     u64 producer, u64 seq   the batch's origin (icn_pool_origin)
 *     u64 first               the store index of the batch's first record
 *     u32 n                   its number of records, >= 1
 *     u16 P, then P bytes     the authenticated peer that sent it (1 .. ICN_POOL_PEER_MAX bytes)
 *
 * Appending a batch writes its records, forces them to disk, then writes the commit marker
 * and forces it too (icn_fsync_policy): a commit marker on disk means its records were
 * durable before it was written. So, when a store is opened:
 *   - frames after the last intact commit marker, with no intact commit marker anywhere after
 *     them, are a TORN TAIL: an append that never finished and was never acknowledged. Opened
 *     for writing, the store cuts it off (read-only it is ignored) and says so
 *     (icn_pool_note): nothing acknowledged is lost.
 *   - anything else that is not an intact frame is DAMAGE: a record or commit marker with a bad
 *     CRC, magic, length or trailer that an intact commit marker follows, or a complete commit
 *     marker (its end repeats its beginning) whose CRC fails. A damaged store is not opened;
 *     the error names the byte offset. icn_pool_check lists every damaged span and
 *     icn_pool_repair copies every intact record to a new store.
 *
 * Exactly-once: each batch arrives with its origin (peer, producer, seq): the authenticated
 * peer (icn_pool_origin.peer, written in the commit marker) and the producer id and seq it
 * chose. The store keeps, per (peer, producer) stream, the set of seqs it has committed
 * (rebuilt from the commit markers when opened, as spans: one span for a stream without gaps).
 * A batch whose seq is in its stream's set is a duplicate: not stored again, answered as one.
 * Any other seq is judged on its own, whatever came before it: gaps, seqs below the highest
 * stored, and the seq of a batch refused earlier are all stored when the batch keeps the
 * contract. So an acknowledgement always means "this (peer, producer, seq) is in the store",
 * in whatever order a sender sends, and one peer cannot claim another peer's seqs by using
 * its producer id (it only ever writes into its own stream).
 *
 * Format version 1 ("ICNPOOL1") is refused with a one-line message naming it. */
#ifndef ICN_POOL_H
#define ICN_POOL_H
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "bytes.h" /* ICN_UUID_STRLEN */
#include "counts.h"  /* icn_tally */

#define ICN_POOL_MAGIC "ICNPOOL2"
#define ICN_POOL_VERSION 2
#define ICN_POOL_HEADER_LEN 68
#define ICN_POOL_RECORD_MAGIC 0x524e4349u /* on disk: "ICNR" */
#define ICN_POOL_COMMIT_MAGIC 0x434e4349u /* on disk: "ICNC" */
#define ICN_POOL_FRAME_HEAD 12            /* magic, length, crc */
#define ICN_POOL_FRAME_TAIL 8             /* crc, length */
#define ICN_POOL_COMMIT_FIXED 30          /* a commit payload without its peer name */
#define ICN_POOL_PEER_MAX 64              /* bytes of a peer name */
#define ICN_POOL_CLASSES_MAX 1000000

/* When appended frames are forced to disk (fdatasync). BATCH (the default): twice per batch,
 * after its records and after its commit marker. ALWAYS: also after every record. NONE: never
 * (the kernel writes them back: a process crash loses nothing, a power failure may). */
typedef enum { ICN_FSYNC_BATCH = 0, ICN_FSYNC_NONE, ICN_FSYNC_ALWAYS } icn_fsync_policy;
int icn_fsync_parse(const char *s, icn_fsync_policy *out); /* "batch", "always", "none"; -1 else */
const char *icn_fsync_name(icn_fsync_policy f);

/* What every record must be: written in the header when a store is created. */
typedef struct {
    int32_t h, w, c, classes;     /* image shape; labels -1 .. -classes */
    float lo, hi;                 /* pixel range (the data's: [-1, 1]) */
    int64_t quota_per_generation; /* records per (peer, snapshot generation); 0 = none */
} icn_pool_contract;
/* The default contract for a shape and classes: pixels in [-1, 1], no quota. */
icn_pool_contract icn_pool_contract_make(int32_t h, int32_t w, int32_t c, int32_t classes);
/* 0, or -1 with a one-line error when a field is out of range. */
int icn_pool_contract_check(const icn_pool_contract *k, char *err, size_t errlen);
/* "28x28x1, 10 classes, pixels in [-1, 1], no quota" */
void icn_pool_contract_format(const icn_pool_contract *k, char *out, size_t outlen);
int icn_pool_contract_equal(const icn_pool_contract *a, const icn_pool_contract *b);
/* NULL when batch b has the contract's shape (image i of it keeps the contract: label,
 * provenance, finite pixels in range); else the refusal reason ("shape", "label", "class",
 * "provenance", "nonfinite", "range") with one line in err. */
const char *icn_pool_contract_shape(const icn_pool_contract *k, const icn_batch *b, char *err, size_t errlen);
const char *icn_pool_contract_image(const icn_pool_contract *k, const icn_batch *b, int32_t i, char *err, size_t errlen);
/* The 68-byte header (above) of a store with this uuid and contract, and back: decoding
 * refuses, with one line naming path, a version-1 store, another magic, a bad CRC, another
 * version, a contract out of range. */
void icn_pool_header_encode(const uint8_t uuid[16], const icn_pool_contract *k, uint8_t hd[ICN_POOL_HEADER_LEN]);
int icn_pool_header_decode(const char *path, const uint8_t hd[ICN_POOL_HEADER_LEN], uint8_t uuid[16],
                           icn_pool_contract *k, char *err, size_t errlen);

/* Open modes. READ: read-only, no lock, a torn tail is ignored but left in place (a pool being
 * served can be dumped). WRITE: read-write with an exclusive lock (flock) so that only one
 * process appends; a torn tail is cut off. CREATE: WRITE, creating the file (header with a fresh
 * UUID and the contract) when it does not exist or holds no complete header. */
enum { ICN_POOL_READ = 0, ICN_POOL_WRITE = 1, ICN_POOL_CREATE = 3 };

typedef struct icn_pool icn_pool;

/* contract: required to create a store; otherwise NULL (taken from the header) or the contract
 * the caller expects, refused with one line naming both when the header's differs.
 * 0 and *out on success; -1 with a one-line error naming the file (and the byte offset for
 * damage) on failure. */
int icn_pool_open(const char *path, int mode, const icn_pool_contract *contract, icn_pool **out, char *err,
                  size_t errlen);
/* What opening repaired or ignored ("" when the file was clean), e.g.
 * "pool.icn: torn tail at byte 130936 (an uncommitted batch: 2 complete records, then a short
 * frame: 1001 of 3276 bytes): cut off 7553 bytes; the 41 committed records before it are intact". */
const char *icn_pool_note(const icn_pool *p);
const char *icn_pool_path(const icn_pool *p);
const icn_pool_contract *icn_pool_contract_of(const icn_pool *p);
const uint8_t *icn_pool_uuid(const icn_pool *p); /* 16 bytes */
void icn_pool_set_fsync(icn_pool *p, icn_fsync_policy f);

/* Where a batch came from. */
typedef struct {
    const char *peer;  /* authenticated peer (e.g. Z85 CURVE public key, or "local"): key for quotas,
                        * rejection stats and, with producer, the seq stream; 1 .. ICN_POOL_PEER_MAX bytes */
    uint64_t producer; /* producer incarnation id: random, nonzero, chosen by each synthesizer at start */
    uint64_t seq;      /* >= 1: any order, gaps allowed (icn's senders: 1, 2, 3, ... in send order) */
} icn_pool_origin;

/* Store all n >= 1 records of b atomically with a commit marker carrying (producer, seq): after a
 * crash either all of them are in the store or none. Durable per the fsync policy before
 * returning 0. Returns 0 stored; 1 duplicate (this (producer, seq) was stored before: nothing
 * written, the caller acknowledges again and says it is a duplicate; counted in
 * icn_pool_counts.duplicates); -1 refused by the contract (shape, classes, pixel
 * range, NaN, labels, provenance, quota, origin: counted per peer with the reason, store
 * unchanged); -2 storage failed (disk full, I/O: the store is unchanged as far as the disk lets
 * it be, every later append fails too, and the caller must stop). */
int icn_pool_append_batch(icn_pool *p, const icn_batch *b, const icn_pool_origin *o, char *err, size_t errlen);
/* icn_pool_append_batch from peer "local" under a producer id drawn when the pool was opened and
 * the next seq: for local tools and callers without an origin. 0, -1 or -2 as above. */
int icn_pool_append(icn_pool *p, const icn_batch *b, char *err, size_t errlen);
/* 1 when (peer, producer, seq) is stored, else 0. */
int icn_pool_has_seq(const icn_pool *p, const char *peer, uint64_t producer, uint64_t seq);
/* Count records refused before they reached the store (say an undecodable frame) against peer
 * with a short reason ("frame"); they show in icn_pool_stats with the store's own refusals. */
void icn_pool_count_refusal(icn_pool *p, const char *peer, const char *reason, int64_t records);

int64_t icn_pool_count(const icn_pool *p);
int64_t icn_pool_duplicates(const icn_pool *p); /* batches answered as stored before, since opening */
/* The contract's shape (always 1: a version-2 store knows its shape from its header). */
int icn_pool_shape(const icn_pool *p, int32_t *h, int32_t *w, int32_t *c);

/* Records [offset, offset + max) that exist, as one batch with labels and provenance (n = 0,
 * nothing allocated, when offset >= count). Records are verified again (CRC, decoding) as they
 * are read. offset and max must be >= 0. */
int icn_pool_read(icn_pool *p, int64_t offset, int64_t max, icn_batch *out, char *err, size_t errlen);

/* Counts. Keys: class k (the label -(k+1)), snapshot generation, producer id (provenance); each
 * list is sorted by key and holds only keys that occur. rejects: records refused since the
 * pool was opened, per (peer, reason), sorted. */
typedef icn_tally icn_pool_tally; /* {key, count} */
typedef struct {
    char peer[ICN_POOL_PEER_MAX + 1];
    char reason[16];
    int64_t count;
} icn_pool_reject;
typedef struct {
    int64_t total;
    int64_t duplicates;         /* batches answered as stored before since the pool was opened */
    char uuid[ICN_UUID_STRLEN]; /* "" when unknown */
    icn_pool_tally *per_class, *per_generation, *per_producer;
    size_t n_class, n_generation, n_producer;
    icn_pool_reject *rejects;
    size_t n_rejects;
} icn_pool_counts;
void icn_pool_stats(const icn_pool *p, icn_pool_counts *out); /* a copy: free with icn_pool_counts_free */
void icn_pool_counts_free(icn_pool_counts *c);

/* fsync now (whatever the policy); then close, releasing the lock. Both return -1 with err when
 * the data could not be made durable; close frees p in every case. */
int icn_pool_sync(icn_pool *p, char *err, size_t errlen);
int icn_pool_close(icn_pool *p, char *err, size_t errlen);

/* Checking and salvage. icn_pool_check reads the whole store (read-only, without a lock) and
 * calls problem() for every damaged span it skips and for a torn tail; it resynchronizes on the
 * next intact frame after damage. 0 with *r filled when the file could be read (damage or not);
 * -1 with err when it could not (missing, not a version-2 store, damaged header, I/O error). */
typedef struct {
    int64_t records;          /* intact records under a commit marker */
    int64_t batches;          /* intact commit markers */
    int64_t damaged;          /* damaged spans */
    uint64_t damaged_bytes;
    int64_t torn_records;     /* complete records of the uncommitted tail */
    uint64_t torn_at, torn_bytes; /* torn_bytes = 0: no torn tail */
    char uuid[ICN_UUID_STRLEN];
    icn_pool_contract contract;
} icn_pool_report;
typedef void (*icn_pool_problem_fn)(void *ctx, uint64_t offset, uint64_t bytes, int torn, const char *what);
int icn_pool_check(const char *path, icn_pool_problem_fn problem, void *ctx, icn_pool_report *r, char *err,
                   size_t errlen);
/* Copy every intact record under a commit marker (the torn tail's are not acknowledged, so not
 * copied) in order into a NEW store at out (refused when it exists), with the same contract, a
 * fresh UUID, and the commit markers' origins, so that exactly-once holds across the copy.
 * Records whose commit marker was damaged go with the next intact one. Written to a temporary
 * file, made durable, renamed into place. The source is never written. */
int icn_pool_repair(const char *path, const char *out, icn_pool_problem_fn problem, void *ctx, icn_pool_report *r,
                    char *err, size_t errlen);

#endif
