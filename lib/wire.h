/* wire.h: the icn wire format (see man/icn-wire.5).
 *
 * Every message is one msgpack map. The same bytes travel over a pipe, a file or a ZeroMQ
 * frame; on a byte stream messages simply follow each other (msgpack is self-delimiting).
 * All input is untrusted: icn_msgpack_check() walks a buffer and checks every declared
 * length and count against the bytes actually present, BEFORE msgpack-c's unpacker is
 * allowed to allocate anything (its generic unpacker trusts declared array sizes).
 *
 * Images are float32, little-endian, channels last: shape [n, h, w, c]; the batch itself
 * (batch.h) knows nothing of msgpack. */
#ifndef ICN_WIRE_H
#define ICN_WIRE_H
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"

#define ICN_MAX_FRAME_DEFAULT ((size_t)1 << 30) /* 1 GiB; override with ICN_MAX_FRAME */
#define ICN_MAX_DEPTH 32
/* Objects (every scalar, string, bin, array and map counts one) in one frame. Every message's
 * shape needs a few dozen beyond its bin payloads (a stats reply: three per counted key), and
 * msgpack-c spends about 24 bytes on each, so 2^16 keeps a frame's unpacked tree under ~2 MB:
 * 50 MB of small integers is refused by the walker, before msgpack-c allocates anything. */
#define ICN_MAX_OBJECTS 65536

/* The frame limit in bytes: $ICN_MAX_FRAME if set (exits with status 2 when it is not a
 * number in [64, 2^40]), else ICN_MAX_FRAME_DEFAULT. */
size_t icn_max_frame(void);

/* Returns 0 and sets *span when a complete, well-formed msgpack object starts at p;
 * 1 when the bytes so far are a valid prefix but incomplete; -1 (with err) when invalid,
 * deeper than ICN_MAX_DEPTH, holding more than ICN_MAX_OBJECTS objects, or when a declared
 * length exceeds max_frame. On 1, err also
 * says what is missing, for callers that know no more bytes will come. */
int icn_msgpack_check(const uint8_t *p, size_t n, size_t max_frame, size_t *span, char *err, size_t errlen);

/* Unpack one complete, checked frame into `out` (init'd by the caller with msgpack_unpacked_init).
 * The frame must be a map and must span exactly n bytes. A map anywhere in it with the same
 * key twice is refused ("duplicate key 'x'"): readers differ on which one wins. Map keys are
 * strings, integers, booleans, nil or floats (never arrays, maps or ext). */
int icn_frame_unpack(const uint8_t *p, size_t n, msgpack_unpacked *out, char *err, size_t errlen);
/* An error of icn_frame_unpack without its "frame: " prefix, for messages that name the frame already. */
const char *icn_frame_error_detail(const char *err);

/* Reading frames from a byte stream (file or pipe). */
typedef struct icn_reader icn_reader;
icn_reader *icn_reader_open(const char *path, char *err, size_t errlen); /* "-" = stdin */
icn_reader *icn_reader_fdopen(int fd, const char *name); /* does not take ownership of fd */
/* 1: a frame (valid until the next call), 0: clean end of stream, -1: error (truncated, malformed). */
int icn_reader_next(icn_reader *r, const uint8_t **frame, size_t *len, char *err, size_t errlen);
const char *icn_reader_name(const icn_reader *r);
/* Stream offset of the frame returned by the last icn_reader_next (for messages). */
uint64_t icn_reader_offset(const icn_reader *r);
void icn_reader_close(icn_reader *r);


/* Map access on unpacked objects. Each returns -1 with an error naming the key when
 * the key is missing (unless optional) or has the wrong type / range. */
const msgpack_object *icn_map_get(const msgpack_object *map, const char *key);
int icn_map_str(const msgpack_object *map, const char *key, char *out, size_t outlen, char *err, size_t errlen);
int icn_map_i64(const msgpack_object *map, const char *key, int64_t lo, int64_t hi, int64_t *out, char *err, size_t errlen);
int icn_map_f64(const msgpack_object *map, const char *key, double *out, char *err, size_t errlen);
/* A bin field that must be exactly `expect_len` bytes. */
int icn_map_bin(const msgpack_object *map, const char *key, size_t expect_len, const uint8_t **out, char *err, size_t errlen);
int icn_map_kind_is(const msgpack_object *map, const char *kind); /* map["kind"] == kind */

/* Batches. pack: kind "batch". decode: validates shape (each dim >= 1, product bounded),
 * bin sizes against the shape, and rejects NaN/Inf pixels. */
void icn_batch_pack(msgpack_packer *pk, const icn_batch *b);
int icn_batch_decode(const msgpack_object *map, icn_batch *out, char *err, size_t errlen);

/* Convenience: read a whole tensor stream (all "batch" frames, concatenated) from a path or "-".
 * An empty stream gives an empty batch (n == 0); a frame of any other kind is an error. */
int icn_batch_read_all(const char *path, icn_batch *out, char *err, size_t errlen);
/* Write b as frames of at most `chunk` images each to fd (chunk <= 0: as few frames as the
 * frame limit allows). An empty batch writes nothing. */
int icn_batch_write(int fd, const icn_batch *b, int32_t chunk, char *err, size_t errlen);
/* icn_batch_write to a path through icn_out_open (fileio.h): "-" is stdout, a device or FIFO
 * is written in place, anything else atomically (a reader never sees half a stream). */
int icn_batch_write_file(const char *path, const icn_batch *b, int32_t chunk, char *err, size_t errlen);

/* Packing: a C string as a msgpack str; a growable buffer for msgpack_packer whose growth dies
 * loudly on OOM (msgpack_sbuffer would drop bytes silently behind a void packing function):
 * msgpack_packer_init(&pk, &o, icn_outbuf_write), o = {0}, free(o.p) when done. */
void icn_pack_str(msgpack_packer *pk, const char *s);
typedef struct {
    uint8_t *p;
    size_t n, cap;
} icn_outbuf;
void icn_outbuf_reserve(icn_outbuf *o, size_t more);
int icn_outbuf_write(void *data, const char *buf, size_t len);

/* The kind of a decoded frame, for messages: map["kind"], or "(none)" when absent or not a string. */
void icn_frame_kind(const msgpack_object *map, char *kind, size_t len);

#endif
