/* transport.c: ZeroMQ sockets for icn's processes (lib/transport.h), secured by lib/security.c
 * (man icn-wire(5) "SECURITY"). With security.c, the only file that calls zmq_* directly.
 *
 * Every socket gets a bounded LINGER (so a process can always exit) and ZMQ_MAXMSGSIZE =
 * icn_max_frame() (so a peer cannot make us buffer more than one frame's worth). Every
 * received frame is untrusted and is checked by icn_frame_unpack() before anything reads it. */
#include "transport.h"

#include "util.h"
#include "wire.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static void *g_ctx;
static pthread_mutex_t g_ctx_mu = PTHREAD_MUTEX_INITIALIZER;

/* Out of descriptors, accept() fails and leaves the connection queued; ZeroMQ's listener
 * (libzmq 4.3) calls it again at once, as long as a connection waits: a core spent on failed
 * accepts while every descriptor is held. This definition takes the place of the C library's
 * for libzmq (an executable's symbols come first); after such a failure it waits
 * ICN_ACCEPT_BACKOFF_MS, as the accept loops of Go's net/http and others do. */
static int64_t g_accept_failures; /* atomic */
static int accept_backoff(int fd) {
    if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
        int e = errno;
        __atomic_add_fetch(&g_accept_failures, 1, __ATOMIC_RELAXED);
        struct timespec t = {0, ICN_ACCEPT_BACKOFF_MS * 1000000L};
        while (nanosleep(&t, &t) != 0 && errno == EINTR) {
        }
        errno = e;
    }
    return fd;
}
int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len, int flags) {
    return accept_backoff((int)syscall(SYS_accept4, fd, addr.__sockaddr__, len, flags));
}
int accept(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len) {
    return accept_backoff((int)syscall(SYS_accept4, fd, addr.__sockaddr__, len, 0));
}
int64_t icn_zmq_accept_failures(void) { return __atomic_load_n(&g_accept_failures, __ATOMIC_RELAXED); }

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
    icn_security_stop(); /* the ZAP handler's socket saw ETERM and is closed */
}

int icn_fd_limit_raise(long *before, long *now) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
    *before = *now = r.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)r.rlim_cur;
    if (r.rlim_cur == r.rlim_max) return 0;
    r.rlim_cur = r.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
    *now = r.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)r.rlim_cur;
    return 0;
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
    case ZMQ_XPUB: return "XPUB";
    case ZMQ_SUB: return "SUB";
    case ZMQ_PUSH: return "PUSH";
    case ZMQ_PULL: return "PULL";
    case ZMQ_REQ: return "REQ";
    case ZMQ_REP: return "REP";
    case ZMQ_ROUTER: return "ROUTER";
    case ZMQ_DEALER: return "DEALER";
    default: return "socket";
    }
}

static void *socket_with(int type, const icn_zmq_opts *o, char *err, size_t errlen) {
    void *s = zmq_socket(icn_zmq_context(), type);
    if (!s) {
        keep_errno(icn_errf(err, errlen, "cannot create a ZeroMQ %s socket: %s", type_name(type), zmq_strerror(errno)));
        return NULL;
    }
    int linger = o && o->no_linger ? 0 : ICN_ZMQ_LINGER_MS, never = -1, handshake = ICN_ZMQ_HANDSHAKE_MS;
    int64_t maxmsg = o && o->max_msg > 0 ? o->max_msg : (int64_t)icn_max_frame();
    int one = 1;
    if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(s, ZMQ_HANDSHAKE_IVL, &handshake, sizeof handshake) != 0 ||
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0 ||
        (o && o->sndhwm > 0 && zmq_setsockopt(s, ZMQ_SNDHWM, &o->sndhwm, sizeof o->sndhwm) != 0) ||
        (o && o->rcvhwm > 0 && zmq_setsockopt(s, ZMQ_RCVHWM, &o->rcvhwm, sizeof o->rcvhwm) != 0) ||
        (o && o->conflate && zmq_setsockopt(s, ZMQ_CONFLATE, &one, sizeof one) != 0) ||
        (o && o->immediate && zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof one) != 0) ||
        (o && o->sndtimeo_ms > 0 && zmq_setsockopt(s, ZMQ_SNDTIMEO, &o->sndtimeo_ms, sizeof o->sndtimeo_ms) != 0) ||
        (o && o->no_reconnect && zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &never, sizeof never) != 0) ||
        (o && o->xpub_verbose && zmq_setsockopt(s, ZMQ_XPUB_VERBOSE, &one, sizeof one) != 0) ||
        (type == ZMQ_SUB && zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0) != 0)) {
        int e = errno;
        zmq_close(s);
        errno = e;
        keep_errno(icn_errf(err, errlen, "cannot set options of a ZeroMQ %s socket: %s", type_name(type), zmq_strerror(e)));
        return NULL;
    }
    return s;
}

void *icn_zmq_socket(int type, char *err, size_t errlen) { return socket_with(type, NULL, err, errlen); }

int icn_zmq_attach(void *sock, const char *endpoint, int bind, char *err, size_t errlen) {
    if (icn_security_attach(sock, endpoint, bind, err, errlen)) return -1;
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

void *icn_zmq_open_with(int type, const char *endpoint, int bind, const icn_zmq_opts *o, char *err, size_t errlen) {
    void *s = socket_with(type, o, err, errlen);
    if (!s) return NULL;
    if (icn_zmq_attach(s, endpoint, bind, err, errlen) != 0) {
        keep_errno(zmq_close(s));
        return NULL;
    }
    return s;
}

void *icn_zmq_open(int type, const char *endpoint, int bind, char *err, size_t errlen) {
    return icn_zmq_open_with(type, endpoint, bind, NULL, err, errlen);
}

int icn_zmq_last_endpoint(void *sock, char *out, size_t outlen) {
    return zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, out, &outlen) == 0 ? 0 : -1;
}

int icn_zmq_poll(void *const *socks, int n, int timeout_ms, int *ready, char *err, size_t errlen) {
    zmq_pollitem_t items[8];
    if (n < 1 || n > 8) return icn_errf(err, errlen, "poll of %d sockets (1..8)", n);
    for (int i = 0; i < n; i++) items[i] = (zmq_pollitem_t){socks[i], 0, ZMQ_POLLIN, 0}, ready[i] = 0;
    int r = zmq_poll(items, n, timeout_ms);
    if (r < 0 && errno == EINTR) return 0;
    if (r < 0) {
        keep_errno(icn_errf(err, errlen, "poll failed: %s", zmq_strerror(errno)));
        return -1;
    }
    for (int i = 0; i < n; i++) ready[i] = (items[i].revents & ZMQ_POLLIN) != 0;
    return r;
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

int icn_zmq_try_send(void *sock, const void *data, size_t len, char *err, size_t errlen) {
    if (zmq_send(sock, data, len, ZMQ_DONTWAIT) >= 0) return 1;
    if (errno == EAGAIN || errno == EINTR) return 0;
    keep_errno(icn_errf(err, errlen, "send of %zu bytes failed: %s", len, zmq_strerror(errno)));
    return -1;
}

int icn_zmq_send_sbuffer(void *sock, const msgpack_sbuffer *sb, char *err, size_t errlen) {
    return icn_zmq_send(sock, sb->data, sb->size, err, errlen);
}

struct icn_shared {
    int refs; /* atomic: the owner's, and one per message ZeroMQ has not yet let go of */
    size_t len;
    void *data;
};

icn_shared *icn_shared_take(void *data, size_t len) {
    icn_shared *s = xmalloc(sizeof *s);
    s->refs = 1, s->len = len, s->data = data;
    return s;
}

const uint8_t *icn_shared_data(const icn_shared *s) { return s->data; }
size_t icn_shared_size(const icn_shared *s) { return s->len; }

void icn_shared_release(icn_shared *s) {
    if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
    free(s->data);
    free(s);
}

static void shared_free(void *data, void *hint) { /* ZeroMQ is done with a message (any thread) */
    (void)data;
    icn_shared_release(hint);
}

int icn_zmq_send_shared(void *sock, icn_shared *s, char *err, size_t errlen) {
    zmq_msg_t m;
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
    if (zmq_msg_init_data(&m, s->data, s->len, shared_free, s) != 0) {
        keep_errno(icn_errf(err, errlen, "cannot make a message of %zu bytes: %s", s->len, zmq_strerror(errno)));
        icn_shared_release(s);
        return -1;
    }
    if (zmq_msg_send(&m, sock, 0) >= 0) return 0; /* ZeroMQ owns m now */
    int e = errno;
    zmq_msg_close(&m); /* releases our reference through shared_free */
    if (e == EAGAIN) icn_errf(err, errlen, "send of %zu bytes timed out (no peer took it)", s->len);
    else if (e == EINTR) icn_errf(err, errlen, "send interrupted by a signal");
    else icn_errf(err, errlen, "send of %zu bytes failed: %s", s->len, zmq_strerror(e));
    errno = e;
    return -1;
}

_Static_assert(sizeof(zmq_msg_t) <= sizeof(((icn_zmq_frame *)0)->msg), "icn_zmq_frame holds a zmq_msg_t");

int icn_zmq_recv_frame(void *sock, icn_zmq_frame *f, int timeout_ms, char *err, size_t errlen) {
    int r = icn_zmq_recv(sock, f->msg, timeout_ms, err, errlen);
    f->data = zmq_msg_data((zmq_msg_t *)f->msg);
    f->len = zmq_msg_size((zmq_msg_t *)f->msg);
    return r;
}

void icn_zmq_frame_close(icn_zmq_frame *f) {
    keep_errno(zmq_msg_close((zmq_msg_t *)f->msg));
    f->data = NULL, f->len = 0;
}

/* Take the rest of a multipart message off the socket; count its parts and bytes. */
static void drain_parts(void *sock, long *parts, size_t *bytes) {
    for (int more = 1; more;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, 0) < 0) {
            zmq_msg_close(&part);
            if (errno == EINTR) continue;
            break; /* the context is going away */
        }
        ++*parts;
        *bytes += zmq_msg_size(&part);
        more = zmq_msg_more(&part);
        zmq_msg_close(&part);
    }
}

/* Wait up to timeout_ms for a message on sock: 1 when one is there; 0 on timeout (errno EAGAIN)
 * or a signal (errno stays EINTR); -1 with err when polling fails. */
static int wait_readable(void *sock, int timeout_ms, char *err, size_t errlen) {
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    int r = zmq_poll(&item, 1, timeout_ms);
    if (r < 0 && errno == EINTR) return 0;
    if (r < 0) {
        keep_errno(icn_errf(err, errlen, "poll failed: %s", zmq_strerror(errno)));
        return -1;
    }
    if (r == 0) {
        errno = EAGAIN;
        return 0;
    }
    return 1;
}

int icn_zmq_recv(void *sock, void *zmq_msg, int timeout_ms, char *err, size_t errlen) {
    zmq_msg_t *msg = zmq_msg;
    zmq_msg_init(msg);
    int flags = 0;
    if (timeout_ms >= 0) {
        int r = wait_readable(sock, timeout_ms, err, errlen);
        if (r <= 0) return r;
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
    drain_parts(sock, &parts, &bytes); /* when the context is going away: refused all the same */
    zmq_msg_close(msg);
    zmq_msg_init(msg);
    icn_errf(err, errlen, "multipart message of %ld parts (%zu bytes): icn frames are single-part", parts, bytes);
    errno = EPROTO;
    return -1;
}

int icn_zmq_recv_buf(void *sock, icn_zmq_peer *from, int timeout_ms, uint8_t **data, size_t *len, char *err,
                     size_t errlen) {
    *data = NULL, *len = 0;
    int type = 0;
    size_t tl = sizeof type;
    if (!from || (zmq_getsockopt(sock, ZMQ_TYPE, &type, &tl) == 0 && type != ZMQ_ROUTER)) {
        zmq_msg_t msg;
        int r = icn_zmq_recv(sock, &msg, timeout_ms, err, errlen);
        if (r == 1) {
            *len = zmq_msg_size(&msg);
            *data = xmalloc(*len ? *len : 1);
            memcpy(*data, zmq_msg_data(&msg), *len);
        }
        if (from) { /* not a ROUTER: no routing id, only who sent it */
            const char *user = r == 1 ? zmq_msg_gets(&msg, "User-Id") : NULL;
            from->id_len = 0;
            snprintf(from->user, sizeof from->user, "%s", user && *user ? user : "local");
        }
        keep_errno(zmq_msg_close(&msg));
        return r;
    }
    if (timeout_ms >= 0) {
        int r = wait_readable(sock, timeout_ms, err, errlen);
        if (r <= 0) return r;
    }
    zmq_msg_t id, msg;
    zmq_msg_init(&id);
    if (zmq_msg_recv(&id, sock, timeout_ms >= 0 ? ZMQ_DONTWAIT : 0) < 0) {
        int e = errno;
        zmq_msg_close(&id);
        errno = e;
        if (e == EINTR || e == EAGAIN) return 0;
        keep_errno(icn_errf(err, errlen, "receive failed: %s", zmq_strerror(e)));
        return -1;
    }
    from->id_len = zmq_msg_size(&id) < sizeof from->id ? zmq_msg_size(&id) : sizeof from->id;
    memcpy(from->id, zmq_msg_data(&id), from->id_len);
    int more = zmq_msg_more(&id);
    zmq_msg_close(&id);
    snprintf(from->user, sizeof from->user, "local");
    if (!more) { /* cannot happen on a ROUTER socket */
        icn_errf(err, errlen, "message without a body");
        errno = EPROTO;
        return -1;
    }
    zmq_msg_init(&msg);
    while (zmq_msg_recv(&msg, sock, 0) < 0) {
        if (errno == EINTR) continue;
        keep_errno(icn_errf(err, errlen, "receive failed: %s", zmq_strerror(errno)));
        zmq_msg_close(&msg);
        return -1;
    }
    const char *user = zmq_msg_gets(&msg, "User-Id");
    if (user && *user) snprintf(from->user, sizeof from->user, "%s", user);
    if (zmq_msg_more(&msg)) {
        long parts = 1;
        size_t bytes = zmq_msg_size(&msg);
        drain_parts(sock, &parts, &bytes);
        zmq_msg_close(&msg);
        icn_errf(err, errlen, "multipart message of %ld parts (%zu bytes): icn frames are single-part", parts, bytes);
        errno = EPROTO;
        return -1;
    }
    *len = zmq_msg_size(&msg);
    *data = xmalloc(*len ? *len : 1);
    memcpy(*data, zmq_msg_data(&msg), *len);
    zmq_msg_close(&msg);
    return 1;
}

int icn_zmq_send_to(void *router, const icn_zmq_peer *to, const void *data, size_t len, char *err, size_t errlen) {
    if (zmq_send(router, to->id, to->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(router, data, len, ZMQ_DONTWAIT) < 0) {
        keep_errno(icn_errf(err, errlen, "reply of %zu bytes not sent: %s", len, zmq_strerror(errno)));
        return -1;
    }
    return 0;
}

int icn_zmq_secure(const icn_security *s, char *err, size_t errlen) {
    return icn_security_init(s, icn_zmq_context(), err, errlen);
}

void icn_security_apply(const icn_security *s) {
    char err[2 * ICN_ERRLEN];
    if (icn_zmq_secure(s, err, sizeof err)) icn_die(2, "%s", err);
}
