/* transport.h: ZeroMQ sockets for icn's processes, and the small request protocol
 * between the trainer and the pool (man icn-wire(5), "POOL PROTOCOL").
 *
 * Every receiving socket gets ZMQ_MAXMSGSIZE = icn_max_frame(), and every received frame
 * is untrusted: icn_zmq_recv_map() checks it (icn_frame_unpack) before unpacking.
 *
 * Sockets and their default endpoints on one machine:
 *   trainer  PUB  bind    tcp://127.0.0.1:5560  snapshots (kind "model", one frame each)
 *   synth    SUB  connect                         ZMQ_CONFLATE: only the newest snapshot
 *   pool     PULL bind    tcp://127.0.0.1:5561  pseudo-negatives (kind "batch" with prov)
 *   synth    PUSH connect
 *   pool     REP  bind    tcp://127.0.0.1:5562  requests: "fetch", "stats"
 *   trainer  REQ  connect                         (re-created after a timeout)
 */
#ifndef ICN_TRANSPORT_H
#define ICN_TRANSPORT_H
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"

#define ICN_EP_SNAPSHOTS "tcp://127.0.0.1:5560"
#define ICN_EP_POOL_PUSH "tcp://127.0.0.1:5561"
#define ICN_EP_POOL_REQ "tcp://127.0.0.1:5562"

void *icn_zmq_context(void); /* one per process, created on first use */
/* A socket bound (bind = 1) or connected to endpoint, with LINGER bounded and MAXMSGSIZE
 * set; NULL with err naming the endpoint on failure. */
void *icn_zmq_open(int type, const char *endpoint, int bind, char *err, size_t errlen);
void icn_zmq_close(void *sock);
#define ICN_ZMQ_LINGER_MS 1000 /* unsent messages are dropped this long after close */
/* The two halves of icn_zmq_open, for options that must be set before bind/connect
 * (e.g. ZMQ_IMMEDIATE): a socket with LINGER and MAXMSGSIZE set (a SUB socket also
 * subscribed to everything), then its bind or connect. */
void *icn_zmq_socket(int type, char *err, size_t errlen);
int icn_zmq_attach(void *sock, const char *endpoint, int bind, char *err, size_t errlen);
/* Terminate the context at exit, after every socket is closed (LINGER bounds the wait). */
void icn_zmq_term(void);
/* A SUB socket subscribed to everything with ZMQ_CONFLATE set before connecting, so the
 * newest snapshot replaces any unread one: synthesizers always sample the latest model. */
void *icn_zmq_open_latest(const char *endpoint, char *err, size_t errlen);
int icn_zmq_send(void *sock, const void *data, size_t len, char *err, size_t errlen);
int icn_zmq_send_sbuffer(void *sock, const msgpack_sbuffer *sb, char *err, size_t errlen);

/* Receive one frame into msg (initialised by this call in every case; caller closes it with
 * zmq_msg_close). Returns 1 on a frame, 0 on timeout (timeout_ms >= 0; errno EAGAIN) or
 * interruption by a signal (errno EINTR: check your stop flag), -1 on error. timeout_ms < 0
 * waits without limit. A multipart message is taken off the socket whole and refused: -1 with
 * errno EPROTO, and the socket stays usable (a REP socket must still answer it). */
int icn_zmq_recv(void *sock, void *zmq_msg, int timeout_ms, char *err, size_t errlen);
/* icn_zmq_recv, then icn_frame_unpack (untrusted bytes: checked before unpacking) into `out`
 * (msgpack_unpacked_init'ed by the caller), which then owns a copy of the bytes: the objects
 * stay valid until msgpack_unpacked_destroy. Same returns; a frame that is not a well-formed
 * map is -1 with errno EPROTO and err from icn_frame_unpack. */
int icn_zmq_recv_map(void *sock, int timeout_ms, msgpack_unpacked *out, char *err, size_t errlen);

/* Pool protocol: a request map and its reply. The pack functions append one message to sb,
 * which the caller initialised (msgpack_sbuffer_init). */
void icn_pack_fetch(msgpack_sbuffer *sb, int64_t offset, int64_t max);
void icn_pack_stats_request(msgpack_sbuffer *sb);
/* Reply to a fetch: {"kind":"records","offset":o,"total":t,"batch":<batch map>}. A batch
 * map cannot hold n = 0, so an empty reply (offset >= total) has no "batch" key; a fetch
 * past the end is fine and is how a client learns the total.
 * Decoding: records is always set (n = 0 when empty); a present batch must carry labels, all
 * < 0, and provenance, and offset + n <= total. */
void icn_pack_records(msgpack_sbuffer *sb, int64_t offset, int64_t total, const icn_batch *records);
int icn_decode_records(const msgpack_object *map, int64_t *offset, int64_t *total, icn_batch *records, char *err,
                       size_t errlen);
void icn_pack_error(msgpack_sbuffer *sb, const char *message);

/* Client side: send a request and wait for the reply (unpacked into `reply`, which the caller
 * initialised with msgpack_unpacked_init). On timeout the REQ socket is closed and reopened
 * (*sock changes), so a pool restart is survived. A reply of kind "error" becomes -1 with
 * its message in err. *sock may be NULL: it is opened on first use.
 * Returns 1 with the reply; 0 on timeout ("pool at ENDPOINT did not answer within N ms") or
 * interruption (errno EINTR), the socket then recreated; -1 on error (reply not a valid map,
 * kind "error", socket failure). */
int icn_request(void **sock, const char *endpoint, const msgpack_sbuffer *request, int timeout_ms,
                msgpack_unpacked *reply, char *err, size_t errlen);

#endif
