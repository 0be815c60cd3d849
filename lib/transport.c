/* transport.c: ZeroMQ sockets for icn's processes and the trainer <-> pool request protocol
 * (lib/transport.h, man icn-wire(5) "POOL PROTOCOL").
 *
 * Every socket gets a bounded LINGER (so a process can always exit) and ZMQ_MAXMSGSIZE =
 * icn_max_frame() (so a peer cannot make us buffer more than one frame's worth). Every
 * received frame is untrusted and is checked by icn_frame_unpack() before anything reads it. */
#include "transport.h"

#include "util.h"
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static void *g_ctx;
static pthread_mutex_t g_ctx_mu = PTHREAD_MUTEX_INITIALIZER;

void *icn_zmq_context(void) {
    pthread_mutex_lock(&g_ctx_mu);
    if (!g_ctx) {
        g_ctx = zmq_ctx_new();
        if (!g_ctx) icn_die(3, "cannot create a ZeroMQ context: %s", zmq_strerror(zmq_errno()));
    }
    void *c = g_ctx;
    pthread_mutex_unlock(&g_ctx_mu);
    return c;
}

void icn_zmq_term(void) {
    pthread_mutex_lock(&g_ctx_mu);
    if (g_ctx) {
        while (zmq_ctx_term(g_ctx) != 0 && zmq_errno() == EINTR) {
        }
        g_ctx = NULL;
    }
    pthread_mutex_unlock(&g_ctx_mu);
}

/* icn_errf without losing errno: callers look at zmq_errno() after a failed send. */
#define keep_errno(call)       \
    do {                       \
        int saved_ = errno;    \
        call;                  \
        errno = saved_;        \
    } while (0)

static const char *type_name(int type) {
    switch (type) {
    case ZMQ_PUB: return "PUB";
    case ZMQ_SUB: return "SUB";
    case ZMQ_PUSH: return "PUSH";
    case ZMQ_PULL: return "PULL";
    case ZMQ_REQ: return "REQ";
    case ZMQ_REP: return "REP";
    default: return "socket";
    }
}

void *icn_zmq_socket(int type, char *err, size_t errlen) {
    void *s = zmq_socket(icn_zmq_context(), type);
    if (!s) {
        keep_errno(icn_errf(err, errlen, "cannot create a ZeroMQ %s socket: %s", type_name(type), zmq_strerror(errno)));
        return NULL;
    }
    int linger = ICN_ZMQ_LINGER_MS;
    int64_t maxmsg = (int64_t)icn_max_frame();
    if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0 ||
        (type == ZMQ_SUB && zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0) != 0)) {
        int e = errno;
        zmq_close(s);
        errno = e;
        keep_errno(icn_errf(err, errlen, "cannot set options of a ZeroMQ %s socket: %s", type_name(type), zmq_strerror(e)));
        return NULL;
    }
    return s;
}

int icn_zmq_attach(void *sock, const char *endpoint, int bind, char *err, size_t errlen) {
    int rc = bind ? zmq_bind(sock, endpoint) : zmq_connect(sock, endpoint);
    if (rc != 0) {
        int e = errno;
        const char *hint = bind && e == EADDRINUSE ? " (is another process serving there?)" : "";
        icn_errf(err, errlen, "cannot %s %s: %s%s", bind ? "bind" : "connect to", endpoint, zmq_strerror(e), hint);
        errno = e;
        return -1;
    }
    return 0;
}

void *icn_zmq_open(int type, const char *endpoint, int bind, char *err, size_t errlen) {
    void *s = icn_zmq_socket(type, err, errlen);
    if (!s) return NULL;
    if (icn_zmq_attach(s, endpoint, bind, err, errlen) != 0) {
        keep_errno(zmq_close(s));
        return NULL;
    }
    return s;
}

void *icn_zmq_open_latest(const char *endpoint, char *err, size_t errlen) {
    void *s = icn_zmq_socket(ZMQ_SUB, err, errlen);
    if (!s) return NULL;
    int one = 1;
    if (zmq_setsockopt(s, ZMQ_CONFLATE, &one, sizeof one) != 0) {
        int e = errno;
        zmq_close(s);
        errno = e;
        keep_errno(icn_errf(err, errlen, "%s: cannot set ZMQ_CONFLATE: %s", endpoint, zmq_strerror(e)));
        return NULL;
    }
    if (icn_zmq_attach(s, endpoint, 0, err, errlen) != 0) {
        keep_errno(zmq_close(s));
        return NULL;
    }
    return s;
}

void icn_zmq_close(void *sock) {
    if (sock) zmq_close(sock);
}

int icn_zmq_send(void *sock, const void *data, size_t len, char *err, size_t errlen) {
    if (zmq_send(sock, data, len, 0) >= 0) return 0;
    int e = errno;
    if (e == EAGAIN) icn_errf(err, errlen, "send of %zu bytes timed out (no peer took it)", len);
    else if (e == EINTR) icn_errf(err, errlen, "send interrupted by a signal");
    else icn_errf(err, errlen, "send of %zu bytes failed: %s", len, zmq_strerror(e));
    errno = e;
    return -1;
}

int icn_zmq_send_sbuffer(void *sock, const msgpack_sbuffer *sb, char *err, size_t errlen) {
    return icn_zmq_send(sock, sb->data, sb->size, err, errlen);
}

int icn_zmq_recv(void *sock, void *zmq_msg, int timeout_ms, char *err, size_t errlen) {
    zmq_msg_t *msg = zmq_msg;
    zmq_msg_init(msg);
    int flags = 0;
    if (timeout_ms >= 0) {
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        int r = zmq_poll(&item, 1, timeout_ms);
        if (r < 0 && errno == EINTR) return 0; /* errno stays EINTR */
        if (r < 0) {
            keep_errno(icn_errf(err, errlen, "poll failed: %s", zmq_strerror(errno)));
            return -1;
        }
        if (r == 0) {
            errno = EAGAIN;
            return 0;
        }
        flags = ZMQ_DONTWAIT;
    }
    if (zmq_msg_recv(msg, sock, flags) < 0) {
        if (errno == EINTR || errno == EAGAIN) return 0;
        keep_errno(icn_errf(err, errlen, "receive failed: %s", zmq_strerror(errno)));
        return -1;
    }
    if (!zmq_msg_more(msg)) return 1;
    /* icn frames are single-part: take the rest of a multipart message off the socket (so the
     * next receive starts at a message boundary, and a REP socket may answer) and refuse it. */
    long parts = 1;
    size_t bytes = zmq_msg_size(msg);
    for (int more = 1; more;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, 0) < 0) {
            zmq_msg_close(&part);
            if (errno == EINTR) continue;
            break; /* the context is going away: refuse the message all the same */
        }
        parts++;
        bytes += zmq_msg_size(&part);
        more = zmq_msg_more(&part);
        zmq_msg_close(&part);
    }
    zmq_msg_close(msg);
    zmq_msg_init(msg);
    icn_errf(err, errlen, "multipart message of %ld parts (%zu bytes): icn frames are single-part", parts, bytes);
    errno = EPROTO;
    return -1;
}

static void free_buf(void *p) { free(p); }

int icn_zmq_recv_map(void *sock, int timeout_ms, msgpack_unpacked *out, char *err, size_t errlen) {
    zmq_msg_t msg;
    int r = icn_zmq_recv(sock, &msg, timeout_ms, err, errlen);
    if (r <= 0) {
        keep_errno(zmq_msg_close(&msg));
        return r;
    }
    /* The unpacked objects point into the bytes: give `out` its own copy, freed with it. */
    size_t n = zmq_msg_size(&msg);
    uint8_t *buf = xmalloc(n ? n : 1);
    memcpy(buf, zmq_msg_data(&msg), n);
    zmq_msg_close(&msg);
    if (icn_frame_unpack(buf, n, out, err, errlen) != 0) {
        msgpack_unpacked_destroy(out);
        free(buf);
        errno = EPROTO;
        return -1;
    }
    if (!out->zone) out->zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
    if (!out->zone || !msgpack_zone_push_finalizer(out->zone, free_buf, buf))
        icn_die(3, "out of memory keeping a %zu-byte frame", n);
    return 1;
}

/* ---------------------------------------------------------------- pool protocol */

void icn_pack_fetch(msgpack_sbuffer *sb, int64_t offset, int64_t max) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "fetch");
    icn_pack_str(&pk, "offset"), msgpack_pack_int64(&pk, offset);
    icn_pack_str(&pk, "max"), msgpack_pack_int64(&pk, max);
}

void icn_pack_stats_request(msgpack_sbuffer *sb) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "stats");
}

void icn_pack_records(msgpack_sbuffer *sb, int64_t offset, int64_t total, const icn_batch *records) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int with_batch = records && records->n > 0; /* a batch cannot say n = 0: no key then */
    msgpack_pack_map(&pk, 3 + with_batch);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "records");
    icn_pack_str(&pk, "offset"), msgpack_pack_int64(&pk, offset);
    icn_pack_str(&pk, "total"), msgpack_pack_int64(&pk, total);
    if (with_batch) icn_pack_str(&pk, "batch"), icn_batch_pack(&pk, records);
}

int icn_decode_records(const msgpack_object *map, int64_t *offset, int64_t *total, icn_batch *records, char *err,
                       size_t errlen) {
    char e[ICN_ERRLEN];
    memset(records, 0, sizeof *records);
    if (!icn_map_kind_is(map, "records")) {
        char kind[64];
        icn_frame_kind(map, kind, sizeof kind);
        return icn_errf(err, errlen, "records: reply is of kind '%s', not 'records'", kind);
    }
    if (icn_map_i64(map, "offset", 0, INT64_MAX, offset, e, sizeof e) ||
        icn_map_i64(map, "total", 0, INT64_MAX, total, e, sizeof e))
        return icn_errf(err, errlen, "records: %s", e);
    const msgpack_object *b = icn_map_get(map, "batch");
    if (!b || b->type == MSGPACK_OBJECT_NIL) return 0; /* none at this offset (asking past the end is how
                                                         * a client learns the total) */
    if (icn_batch_decode(b, records, e, sizeof e)) return icn_errf(err, errlen, "records: %s", e);
    const char *bad = !records->y      ? "have no labels"
                      : !records->prov ? "have no provenance"
                      : *offset > *total - records->n ? "run past the total"
                                                      : NULL;
    for (int32_t i = 0; !bad && i < records->n; i++)
        if (records->y[i] >= 0) bad = "include a label >= 0 (not a pseudo-negative)";
    if (bad) {
        icn_errf(err, errlen, "records: the %d records at offset %" PRId64 " (of %" PRId64 ") %s", records->n, *offset,
                 *total, bad);
        icn_batch_free(records);
        return -1;
    }
    return 0;
}

void icn_pack_error(msgpack_sbuffer *sb, const char *message) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "error");
    icn_pack_str(&pk, "message"), icn_pack_str(&pk, message);
}

/* ---------------------------------------------------------------- client */

static void reopen(void **sock, const char *endpoint) {
    char e[ICN_ERRLEN];
    icn_zmq_close(*sock);
    *sock = icn_zmq_open(ZMQ_REQ, endpoint, 0, e, sizeof e); /* NULL: the next request tries again */
}

int icn_request(void **sock, const char *endpoint, const msgpack_sbuffer *request, int timeout_ms,
                msgpack_unpacked *reply, char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    if (!*sock && !(*sock = icn_zmq_open(ZMQ_REQ, endpoint, 0, err, errlen))) return -1;
    if (icn_zmq_send_sbuffer(*sock, request, e, sizeof e) != 0) {
        /* EFSM: an earlier request was left unanswered (interrupted): start over on a new socket. */
        reopen(sock, endpoint);
        if (!*sock || icn_zmq_send_sbuffer(*sock, request, e, sizeof e) != 0)
            return icn_errf(err, errlen, "pool at %s: request not sent: %s", endpoint, e);
    }
    int r = icn_zmq_recv_map(*sock, timeout_ms, reply, e, sizeof e);
    if (r <= 0) {
        int why = errno, interrupted = r == 0 && why == EINTR;
        if (r < 0 && why == EPROTO) /* the socket is fine: it got an answer, just a bad one */
            return icn_errf(err, errlen, "pool at %s: bad reply: %s", endpoint, e);
        reopen(sock, endpoint); /* a REQ socket waiting for a reply accepts nothing else */
        if (r < 0) return icn_errf(err, errlen, "pool at %s: %s", endpoint, e);
        if (interrupted) icn_errf(err, errlen, "interrupted while waiting for the pool at %s", endpoint);
        else icn_errf(err, errlen, "pool at %s did not answer within %d ms", endpoint, timeout_ms);
        errno = interrupted ? EINTR : EAGAIN;
        return 0;
    }
    if (icn_map_kind_is(&reply->data, "error")) {
        char m[ICN_ERRLEN];
        if (icn_map_str(&reply->data, "message", m, sizeof m, e, sizeof e)) snprintf(m, sizeof m, "(no message)");
        return icn_errf(err, errlen, "pool at %s: %s", endpoint, m);
    }
    return 1;
}
