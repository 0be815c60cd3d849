/* transport.h: ZeroMQ sockets for icn's processes, secured by lib/security.h (CURVE keys, the
 * ZAP handler). The messages they carry are lib/protocol.h's (man icn-wire(5)).
 *
 * Every socket has a bounded LINGER and a ZMQ_MAXMSGSIZE (icn_zmq_opts: what its channel
 * carries; icn_max_frame() when not given), and every received frame is untrusted.
 *
 * Sockets and their default endpoints on one machine (lib/protocol.h opens each kind):
 *   trainer  PUB    bind    tcp://127.0.0.1:5560  snapshots, each sent once to every subscriber,
 *                                                  "hold", "stop" and a heartbeat every second
 *                                                  (lib/publisher.h); SNDHWM 2: a stopped
 *                                                  subscriber costs at most two frames
 *   synth    SUB    connect                         RCVHWM 2: a short queue, whose overflow a
 *                                                  heartbeat repairs (lib/inbox.h)
 *   trainer  ROUTER bind    tcp://127.0.0.1:*     "snapshot_request": the newest snapshot, to
 *   synth    DEALER connect                         the peer that asked (the port the kernel
 *                                                  picks; every heartbeat names it)
 *   pool     ROUTER bind    tcp://127.0.0.1:5561  pseudo-negatives ("batch" + producer, seq),
 *   synth    DEALER connect                         answered "ack" or "refused"
 *   pool     REP    bind    tcp://127.0.0.1:5562  requests: "fetch", "stats"
 *   trainer  REQ    connect                         (re-created after a timeout)
 */
#ifndef ICN_TRANSPORT_H
#define ICN_TRANSPORT_H
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "security.h"

#define ICN_EP_SNAPSHOTS "tcp://127.0.0.1:5560"
#define ICN_EP_POOL_PUSH "tcp://127.0.0.1:5561"
#define ICN_EP_POOL_REQ "tcp://127.0.0.1:5562"

void *icn_zmq_context(void); /* one per process, created on first use */
/* A socket bound (bind = 1) or connected to endpoint, with LINGER bounded and MAXMSGSIZE
 * set; NULL with err naming the endpoint on failure. */
void *icn_zmq_open(int type, const char *endpoint, int bind, char *err, size_t errlen);
void icn_zmq_close(void *sock);
#define ICN_ZMQ_LINGER_MS 1000 /* unsent messages are dropped this long after close */
/* Every socket's ZMQ_HANDSHAKE_IVL: a connection that has not finished its ZMTP (and CURVE)
 * handshake this long after it was made is dropped, so a stalled or slow-loris connection
 * holds a descriptor and a session for at most this long (ZeroMQ's default is 30 s). */
#define ICN_ZMQ_HANDSHAKE_MS 2000
/* A failed accept (out of descriptors or memory) waits this long before ZeroMQ may try again
 * (lib/transport.c); icn_zmq_accept_failures: how many there were in this process. */
#define ICN_ACCEPT_BACKOFF_MS 2
int64_t icn_zmq_accept_failures(void);
/* Raise the soft RLIMIT_NOFILE to the hard limit (a server holds one descriptor per
 * connection, authenticated or not yet). *before and *now: the soft limit before and after
 * (LONG_MAX: unlimited). 0, or -1 with errno. */
int icn_fd_limit_raise(long *before, long *now);
/* The two halves of icn_zmq_open, for options that must be set before bind/connect
 * (e.g. ZMQ_IMMEDIATE): a socket with LINGER and MAXMSGSIZE set (a SUB socket also
 * subscribed to everything), then its bind or connect. */
void *icn_zmq_socket(int type, char *err, size_t errlen);
int icn_zmq_attach(void *sock, const char *endpoint, int bind, char *err, size_t errlen);
/* Terminate the context at exit, after every socket is closed (LINGER bounds the wait), and
 * stop the ZAP handler. The programs' business (cmd/): the library never calls it. */
void icn_zmq_term(void);
int icn_zmq_send(void *sock, const void *data, size_t len, char *err, size_t errlen);
int icn_zmq_send_sbuffer(void *sock, const msgpack_sbuffer *sb, char *err, size_t errlen);
/* Send without blocking: 1 sent, 0 it would block (no connected peer, or its queue is
 * full), -1 error. */
int icn_zmq_try_send(void *sock, const void *data, size_t len, char *err, size_t errlen);

/* A frame shared with ZeroMQ without copying: made once from a malloc'd buffer (owned from
 * then on), sent any number of times (icn_zmq_send_shared: ZeroMQ holds a reference until
 * every peer's copy is written), freed when the last holder lets go. Thread-safe counts:
 * ZeroMQ's I/O threads release theirs. */
typedef struct icn_shared icn_shared;
icn_shared *icn_shared_take(void *data, size_t len);
const uint8_t *icn_shared_data(const icn_shared *s);
size_t icn_shared_size(const icn_shared *s);
void icn_shared_release(icn_shared *s); /* NULL: nothing */
int icn_zmq_send_shared(void *sock, icn_shared *s, char *err, size_t errlen);

/* One received frame, read in place (no copy out of ZeroMQ's buffer): data and len are valid
 * until icn_zmq_frame_close, which every outcome of icn_zmq_recv_frame needs. */
typedef struct {
    _Alignas(8) unsigned char msg[64]; /* a zmq_msg_t */
    const uint8_t *data;
    size_t len;
} icn_zmq_frame;
/* Returns as icn_zmq_recv. */
int icn_zmq_recv_frame(void *sock, icn_zmq_frame *f, int timeout_ms, char *err, size_t errlen);
void icn_zmq_frame_close(icn_zmq_frame *f);

/* Receive one frame into msg (initialised by this call in every case; caller closes it with
 * zmq_msg_close). Returns 1 on a frame, 0 on timeout (timeout_ms >= 0; errno EAGAIN) or
 * interruption by a signal (errno EINTR: check your stop flag), -1 on error. timeout_ms < 0
 * waits without limit. A multipart message is taken off the socket whole and refused: -1 with
 * errno EPROTO, and the socket stays usable (a REP socket must still answer it). */
int icn_zmq_recv(void *sock, void *zmq_msg, int timeout_ms, char *err, size_t errlen);
/* Sockets with options that match their channel (issue 13: bounds that match messages). */
typedef struct {
    int64_t max_msg;    /* ZMQ_MAXMSGSIZE in bytes; 0: icn_max_frame() */
    int sndhwm, rcvhwm; /* high-water marks in messages; 0: ZeroMQ's default (1000) */
    int conflate;       /* keep only the newest message (SUB) */
    int immediate;      /* queue only on completed connections */
    int sndtimeo_ms;    /* 0: block */
    int no_reconnect;   /* one connection per socket: the caller reconnects (a new socket) */
    int no_linger;      /* drop unsent messages at close (the caller sends them again) */
    int xpub_verbose;   /* XPUB: report every subscription, not only the first to a topic */
} icn_zmq_opts;
void *icn_zmq_open_with(int type, const char *endpoint, int bind, const icn_zmq_opts *o, char *err, size_t errlen);
/* The endpoint a socket actually bound (port 0 / '*' resolved), into out. */
int icn_zmq_last_endpoint(void *sock, char *out, size_t outlen);

/* Wait until one of n sockets is readable. ready[i] is set to 1 for each readable one.
 * Returns the number ready, 0 on timeout or a signal (errno EINTR), -1 on error. */
int icn_zmq_poll(void *const *socks, int n, int timeout_ms, int *ready, char *err, size_t errlen);

/* A peer of a ROUTER socket: its routing id, and who it is (the Z85 CURVE key that ZAP
 * admitted, "local" without CURVE). */
typedef struct {
    uint8_t id[256];
    size_t id_len;
    char user[64];
} icn_zmq_peer;
/* Receive one single-part message into a malloc'd buffer (*data, *len; the caller frees).
 * On a ROUTER socket pass `from` (the routing id and identity are taken off); on another,
 * `from` (may be NULL) gets who sent it (user; id_len 0). Returns as icn_zmq_recv. */
int icn_zmq_recv_buf(void *sock, icn_zmq_peer *from, int timeout_ms, uint8_t **data, size_t *len, char *err,
                     size_t errlen);
/* Send one message to a ROUTER peer (dropped if the peer is gone or its queue is full). */
int icn_zmq_send_to(void *router, const icn_zmq_peer *to, const void *data, size_t len, char *err, size_t errlen);

/* ---------------------------------------------------------------- security
 * lib/security.h has the keys, the allow-list and the ZAP handler; these apply them to this
 * process's ZeroMQ context (icn_zmq_context), before the first socket is attached. */
int icn_zmq_secure(const icn_security *s, char *err, size_t errlen);
/* icn_zmq_secure, or exit 2 with one line. */
void icn_security_apply(const icn_security *s);

#endif
