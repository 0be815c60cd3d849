/* transport.c: ZeroMQ sockets for icn's processes, CURVE keys and the ZAP handler
 * (lib/transport.h, man icn-wire(5) "SECURITY"). The only file that calls zmq_* directly.
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
#include <sys/stat.h>
#include <unistd.h>
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

static void zap_join(void);

void icn_zmq_term(void) {
    pthread_mutex_lock(&g_ctx_mu);
    if (g_ctx) {
        while (zmq_ctx_term(g_ctx) != 0 && zmq_errno() == EINTR) {
        }
        g_ctx = NULL;
    }
    pthread_mutex_unlock(&g_ctx_mu);
    zap_join(); /* its socket saw ETERM and is closed */
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

static int secure_attach(void *sock, const char *endpoint, int bind, char *err, size_t errlen);

int icn_zmq_attach(void *sock, const char *endpoint, int bind, char *err, size_t errlen) {
    if (secure_attach(sock, endpoint, bind, err, errlen)) return -1;
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

void *icn_zmq_open_with(int type, const char *endpoint, int bind, const icn_zmq_opts *o, char *err, size_t errlen) {
    void *s = socket_with(type, o, err, errlen);
    if (!s) return NULL;
    if (icn_zmq_attach(s, endpoint, bind, err, errlen) != 0) {
        keep_errno(zmq_close(s));
        return NULL;
    }
    return s;
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
    if (!from) {
        zmq_msg_t msg;
        int r = icn_zmq_recv(sock, &msg, timeout_ms, err, errlen);
        if (r == 1) {
            *len = zmq_msg_size(&msg);
            *data = xmalloc(*len ? *len : 1);
            memcpy(*data, zmq_msg_data(&msg), *len);
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

/* ---------------------------------------------------------------- CURVE and ZAP */

static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

static struct {
    int curve, insecure;
    char secret[ICN_KEY_Z85_LEN + 1], public_[ICN_KEY_Z85_LEN + 1], server[ICN_KEY_Z85_LEN + 1];
} g_sec;

static void (*g_log)(const char *line);
void icn_zmq_set_log(void (*log)(const char *line)) { g_log = log; }
static void sec_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sec_log(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (g_log) g_log(line);
    else icn_warn("%s", line);
}

int icn_key_public(const char *secret_z85, char *public_z85, char *err, size_t errlen) {
    if (zmq_curve_public(public_z85, secret_z85) != 0)
        return icn_errf(err, errlen, "cannot derive a public key: %s", zmq_strerror(errno));
    return 0;
}

int icn_key_read(const char *path, int secret, char *key_z85, char *err, size_t errlen) {
    const char *what = secret ? "secret key" : "public key";
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return icn_errf(err, errlen, "%s %s: %s", what, path, strerror(errno));
    struct stat st;
    char buf[ICN_KEY_Z85_LEN + 2];
    const char *bad = NULL;
    ssize_t n = -1;
    if (fstat(fd, &st) != 0) bad = strerror(errno);
    else if (!S_ISREG(st.st_mode)) bad = "not a regular file";
    else if (secret && (st.st_mode & 077)) bad = "readable or writable by others (chmod 600 it)";
    else if (st.st_size != ICN_KEY_Z85_LEN && st.st_size != ICN_KEY_Z85_LEN + 1)
        bad = "not a key file (expected 40 Z85 characters and a newline)";
    else if ((n = read(fd, buf, sizeof buf)) != st.st_size) bad = "short read";
    close(fd);
    if (!bad) {
        if (n == ICN_KEY_Z85_LEN + 1 && buf[ICN_KEY_Z85_LEN] != '\n') bad = "not a key file (no newline after 40 characters)";
        for (int i = 0; !bad && i < ICN_KEY_Z85_LEN; i++)
            if (!buf[i] || !strchr(z85_chars, buf[i])) bad = "not a key file (a character outside Z85)";
    }
    if (bad) return icn_errf(err, errlen, "%s %s: %s", what, path, bad);
    memcpy(key_z85, buf, ICN_KEY_Z85_LEN);
    key_z85[ICN_KEY_Z85_LEN] = 0;
    uint8_t raw[32];
    if (!zmq_z85_decode(raw, key_z85)) return icn_errf(err, errlen, "%s %s: not a valid Z85 key", what, path);
    return 0;
}

static int write_key(const char *path, const char *key, mode_t mode, char *err, size_t errlen) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) return icn_errf(err, errlen, "%s: %s", path, strerror(errno));
    char line[ICN_KEY_Z85_LEN + 1];
    memcpy(line, key, ICN_KEY_Z85_LEN);
    line[ICN_KEY_Z85_LEN] = '\n';
    char e[ICN_ERRLEN];
    if (icn_write_all(fd, line, sizeof line, e, sizeof e) || fsync(fd) != 0) {
        close(fd);
        unlink(path);
        return icn_errf(err, errlen, "%s: %s", path, e[0] ? e : strerror(errno));
    }
    if (close(fd) != 0) {
        unlink(path);
        return icn_errf(err, errlen, "%s: %s", path, strerror(errno));
    }
    return 0;
}

int icn_keygen(const char *name, char *public_z85, char *err, size_t errlen) {
    if (!zmq_has("curve")) return icn_errf(err, errlen, "this libzmq has no CURVE support (built without libsodium)");
    size_t n = strlen(name) + 5;
    char *key = xmalloc(n), *pub = xmalloc(n);
    snprintf(key, n, "%s.key", name), snprintf(pub, n, "%s.pub", name);
    char secret[ICN_KEY_Z85_LEN + 1];
    int rc = -1;
    struct stat st;
    if (lstat(pub, &st) == 0) icn_errf(err, errlen, "%s: already exists (not overwritten)", pub);
    else if (zmq_curve_keypair(public_z85, secret) != 0) icn_errf(err, errlen, "cannot make a key pair: %s", zmq_strerror(errno));
    else if (!write_key(key, secret, 0600, err, errlen)) {
        if (write_key(pub, public_z85, 0644, err, errlen)) unlink(key);
        else rc = 0;
    }
    memset(secret, 0, sizeof secret);
    free(key), free(pub);
    return rc;
}

int icn_endpoint_is_local(const char *ep) {
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9)) return 1;
    if (strncmp(ep, "tcp://", 6)) return 0;
    const char *h = ep + 6, *colon = strrchr(h, ':');
    if (!colon || colon == h || strchr(h, ';')) return 0;
    char host[128];
    size_t n = (size_t)(colon - h);
    if (n >= sizeof host) return 0;
    memcpy(host, h, n), host[n] = 0;
    if (!strcmp(host, "localhost") || !strcmp(host, "[::1]") || !strcmp(host, "::1")) return 1;
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* The ZAP handler (RFC 27): a thread answering the context's authentication requests. */
#define ZAP_RECENT 64
static struct {
    void *sock;
    pthread_t thread;
    int running;
    char dir[1024];
    uint8_t self[32];
    uint8_t (*keys)[32];
    size_t n_keys;
    double last_scan;
    struct {
        uint8_t key[32];
        double last;
        long suppressed;
    } recent[ZAP_RECENT];
} g_zap;

/* Read every *.pub of the allowed directory. strict: the first bad file is an error (at
 * start); otherwise bad files are logged and skipped (a later rescan). */
static int zap_scan(int strict, char *err, size_t errlen) {
    DIR *d = opendir(g_zap.dir);
    if (!d) return icn_errf(err, errlen, "--allow %s: %s", g_zap.dir, strerror(errno));
    uint8_t (*keys)[32] = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".pub") || e->d_name[0] == '.') continue;
        char path[2048], z85[ICN_KEY_Z85_LEN + 1], why[ICN_ERRLEN];
        snprintf(path, sizeof path, "%s/%s", g_zap.dir, e->d_name);
        if (icn_key_read(path, 0, z85, why, sizeof why)) {
            if (strict) {
                rc = icn_errf(err, errlen, "--allow: %s", why);
                break;
            }
            sec_log("ZAP: ignoring %s", why);
            continue;
        }
        if (n == cap) keys = xrealloc(keys, (cap = cap ? 2 * cap : 16) * sizeof *keys);
        zmq_z85_decode(keys[n++], z85);
    }
    closedir(d);
    if (rc) {
        free(keys);
        return rc;
    }
    free(g_zap.keys);
    g_zap.keys = keys, g_zap.n_keys = n;
    g_zap.last_scan = icn_now();
    return 0;
}

static int zap_allowed(const uint8_t key[32]) {
    if (!memcmp(key, g_zap.self, 32)) return 1;
    for (size_t i = 0; i < g_zap.n_keys; i++)
        if (!memcmp(key, g_zap.keys[i], 32)) return 1;
    return 0;
}

/* A refused key: one line per key per ICN_ZAP_LOG_EVERY seconds, counting the rest. */
static void zap_log_refusal(const uint8_t key[32], const char *address) {
    double now = icn_now();
    int slot = 0;
    for (int i = 0; i < ZAP_RECENT; i++) {
        if (!memcmp(g_zap.recent[i].key, key, 32) && g_zap.recent[i].last > 0) {
            slot = i;
            goto found;
        }
        if (g_zap.recent[i].last < g_zap.recent[slot].last) slot = i;
    }
    memcpy(g_zap.recent[slot].key, key, 32);
    g_zap.recent[slot].last = 0, g_zap.recent[slot].suppressed = 0;
found:;
    if (g_zap.recent[slot].last > 0 && now - g_zap.recent[slot].last < ICN_ZAP_LOG_EVERY) {
        g_zap.recent[slot].suppressed++;
        return;
    }
    char z85[ICN_KEY_Z85_LEN + 1];
    zmq_z85_encode(z85, key, 32);
    if (g_zap.recent[slot].suppressed)
        sec_log("refused CURVE key %s from %s: not in %s (%ld more attempts since the last line)", z85, address,
                g_zap.dir, g_zap.recent[slot].suppressed);
    else sec_log("refused CURVE key %s from %s: not in %s", z85, address, g_zap.dir);
    g_zap.recent[slot].last = now, g_zap.recent[slot].suppressed = 0;
}

static void *zap_main(void *arg) {
    (void)arg;
    for (;;) {
        zmq_msg_t part[8];
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, g_zap.sock, 0) < 0) {
                zmq_msg_close(&m);
                if (errno == EINTR) continue;
                for (int i = 0; i < n; i++) zmq_msg_close(&part[i]);
                zmq_close(g_zap.sock); /* ETERM: the context is ending */
                return NULL;
            }
            more = zmq_msg_more(&m);
            if (n < 8) part[n++] = m;
            else zmq_msg_close(&m);
        }
        /* version, request id, domain, address, identity, mechanism, credentials... */
        const char *status = "400", *text = "not allowed";
        char user[ICN_KEY_Z85_LEN + 1] = "";
        if (n >= 6) {
            char address[64] = "?";
            size_t al = zmq_msg_size(&part[3]) < sizeof address - 1 ? zmq_msg_size(&part[3]) : sizeof address - 1;
            memcpy(address, zmq_msg_data(&part[3]), al), address[al] = 0;
            int curve = zmq_msg_size(&part[5]) == 5 && !memcmp(zmq_msg_data(&part[5]), "CURVE", 5);
            if (curve && n == 7 && zmq_msg_size(&part[6]) == 32) {
                const uint8_t *key = zmq_msg_data(&part[6]);
                int ok = zap_allowed(key);
                if (!ok && icn_now() - g_zap.last_scan >= 1.0) { /* a key added since */
                    char e[ICN_ERRLEN];
                    if (zap_scan(0, e, sizeof e)) sec_log("ZAP: %s", e);
                    ok = zap_allowed(key);
                }
                if (ok) status = "200", text = "OK", zmq_z85_encode(user, key, 32);
                else zap_log_refusal(key, address);
            } else {
                sec_log("refused a peer from %s: no CURVE key", address);
            }
        }
        if (n >= 2) {
            zmq_send(g_zap.sock, "1.0", 3, ZMQ_SNDMORE);
            zmq_send(g_zap.sock, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
            zmq_send(g_zap.sock, status, 3, ZMQ_SNDMORE);
            zmq_send(g_zap.sock, text, strlen(text), ZMQ_SNDMORE);
            zmq_send(g_zap.sock, user, strlen(user), ZMQ_SNDMORE);
            zmq_send(g_zap.sock, "", 0, 0);
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&part[i]);
    }
}

static int zap_start(const char *dir, char *err, size_t errlen) {
    struct stat st;
    if (stat(dir, &st) != 0) return icn_errf(err, errlen, "--allow %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return icn_errf(err, errlen, "--allow %s: not a directory", dir);
    if (strlen(dir) >= sizeof g_zap.dir) return icn_errf(err, errlen, "--allow: path too long");
    snprintf(g_zap.dir, sizeof g_zap.dir, "%s", dir);
    zmq_z85_decode(g_zap.self, g_sec.public_);
    if (zap_scan(1, err, errlen)) return -1;
    g_zap.sock = zmq_socket(icn_zmq_context(), ZMQ_REP);
    int linger = 0;
    if (!g_zap.sock || zmq_setsockopt(g_zap.sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_bind(g_zap.sock, "inproc://zeromq.zap.01") != 0)
        return icn_errf(err, errlen, "cannot start the ZAP handler: %s", zmq_strerror(errno));
    if (pthread_create(&g_zap.thread, NULL, zap_main, NULL) != 0)
        return icn_errf(err, errlen, "cannot start the ZAP handler thread");
    g_zap.running = 1;
    return 0;
}

static void zap_join(void) {
    if (!g_zap.running) return;
    pthread_join(g_zap.thread, NULL);
    g_zap.running = 0;
    free(g_zap.keys);
    g_zap.keys = NULL, g_zap.n_keys = 0;
}

int icn_zmq_secure(const icn_security *s, char *err, size_t errlen) {
    memset(&g_sec, 0, sizeof g_sec);
    g_sec.insecure = s->insecure;
    if (!s->secret_key) {
        if (s->server_key || s->allow_dir)
            return icn_errf(err, errlen, "--server-key and --allow need --secret-key (make one with: icn-pool keygen NAME)");
        return 0;
    }
    if (s->insecure) return icn_errf(err, errlen, "--insecure cannot go with --secret-key");
    if (!zmq_has("curve")) return icn_errf(err, errlen, "this libzmq has no CURVE support (built without libsodium)");
    if (icn_key_read(s->secret_key, 1, g_sec.secret, err, errlen) ||
        icn_key_public(g_sec.secret, g_sec.public_, err, errlen))
        return -1;
    if (s->server_key) {
        if (icn_key_read(s->server_key, 0, g_sec.server, err, errlen)) return -1;
    } else {
        memcpy(g_sec.server, g_sec.public_, sizeof g_sec.server);
    }
    g_sec.curve = 1;
    if (s->allow_dir && zap_start(s->allow_dir, err, errlen)) return -1;
    return 0;
}

static int secure_attach(void *sock, const char *endpoint, int bind, char *err, size_t errlen) {
    if (!g_sec.curve) {
        if (bind && !g_sec.insecure && !icn_endpoint_is_local(endpoint))
            return icn_errf(err, errlen,
                            "refusing to bind %s in the clear: without keys only loopback (127.0.0.0/8, ::1, ipc://, "
                            "inproc://) may be bound; give --secret-key and --allow, or --insecure on a trusted network",
                            endpoint);
        return 0;
    }
    int one = 1, rc;
    if (bind) {
        if (!g_zap.running)
            return icn_errf(err, errlen, "cannot bind %s with a key but no --allow DIR of peers' public keys", endpoint);
        rc = zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
             zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, g_sec.secret, ICN_KEY_Z85_LEN + 1) ||
             zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "icn", 3);
    } else {
        rc = zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, g_sec.server, ICN_KEY_Z85_LEN + 1) ||
             zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, g_sec.public_, ICN_KEY_Z85_LEN + 1) ||
             zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, g_sec.secret, ICN_KEY_Z85_LEN + 1);
    }
    if (rc) return icn_errf(err, errlen, "%s: cannot set CURVE options: %s", endpoint, zmq_strerror(errno));
    return 0;
}

int icn_security_option(int opt, const char *arg, icn_security *s) {
    switch (opt) {
    case ICN_OPT_SECRET_KEY: s->secret_key = arg; return 1;
    case ICN_OPT_SERVER_KEY: s->server_key = arg; return 1;
    case ICN_OPT_ALLOW: s->allow_dir = arg; return 1;
    case ICN_OPT_INSECURE: s->insecure = 1; return 1;
    default: return 0;
    }
}

void icn_security_apply(const icn_security *s) {
    char err[2 * ICN_ERRLEN];
    if (icn_zmq_secure(s, err, sizeof err)) icn_die(2, "%s", err);
}
