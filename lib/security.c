/* security.c: CURVE keys, the allow-list and the ZAP handler (lib/security.h, man icn-wire(5)
 * SECURITY). Below lib/transport.c: it sets sockets' CURVE options and answers ZeroMQ's
 * authentication requests on the context it is given, and calls nothing of transport's. */
#include "security.h"

#include "util.h"
#include "fileio.h" /* icn_write_all */

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>


static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/* The process's security: its keys, and where its lines go. One per process, as the ZAP
 * endpoint (inproc://zeromq.zap.01) is one per ZeroMQ context. */
static struct {
    int curve, insecure;
    char secret[ICN_KEY_Z85_LEN + 1], public_[ICN_KEY_Z85_LEN + 1], server[ICN_KEY_Z85_LEN + 1];
    icn_security_log_fn log; /* NULL: icn_warn */
    void *log_ctx;
} g_sec;

void icn_security_set_log(icn_security_log_fn log, void *ctx) { g_sec.log = log, g_sec.log_ctx = ctx; }

static void sec_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sec_log(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (g_sec.log) g_sec.log(g_sec.log_ctx, line);
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
    double window; /* start of the log's current interval */
    int lines;     /* refusal lines in it */
    long over;     /* refusals in it beyond ICN_ZAP_LOG_LINES */
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

/* The log's budget: ICN_ZAP_LOG_LINES refusal lines per ICN_ZAP_LOG_EVERY seconds in all; 0
 * when this one is over it (counted, and said in one line once the interval is over). */
static int zap_log_budget(void) {
    double now = icn_now();
    if (now - g_zap.window >= ICN_ZAP_LOG_EVERY) {
        if (g_zap.over)
            sec_log("refused %ld more attempts in the last %.0f s without a line each (over %d lines per %.0f s)",
                    g_zap.over, now - g_zap.window, ICN_ZAP_LOG_LINES, ICN_ZAP_LOG_EVERY);
        g_zap.window = now, g_zap.lines = 0, g_zap.over = 0;
    }
    if (g_zap.lines >= ICN_ZAP_LOG_LINES) {
        g_zap.over++;
        return 0;
    }
    g_zap.lines++;
    return 1;
}

/* A refused key: one line per key per ICN_ZAP_LOG_EVERY seconds, counting the rest, within
 * the log's budget. */
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
    if ((g_zap.recent[slot].last > 0 && now - g_zap.recent[slot].last < ICN_ZAP_LOG_EVERY) || !zap_log_budget()) {
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
                if (zap_log_budget()) sec_log("refused a peer from %s: no CURVE key", address);
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

static int zap_start(const char *dir, void *zmq_ctx, char *err, size_t errlen) {
    struct stat st;
    if (stat(dir, &st) != 0) return icn_errf(err, errlen, "--allow %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return icn_errf(err, errlen, "--allow %s: not a directory", dir);
    if (strlen(dir) >= sizeof g_zap.dir) return icn_errf(err, errlen, "--allow: path too long");
    snprintf(g_zap.dir, sizeof g_zap.dir, "%s", dir);
    zmq_z85_decode(g_zap.self, g_sec.public_);
    if (zap_scan(1, err, errlen)) return -1;
    g_zap.sock = zmq_socket(zmq_ctx, ZMQ_REP);
    int linger = 0;
    if (!g_zap.sock || zmq_setsockopt(g_zap.sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_bind(g_zap.sock, "inproc://zeromq.zap.01") != 0)
        return icn_errf(err, errlen, "cannot start the ZAP handler: %s", zmq_strerror(errno));
    if (pthread_create(&g_zap.thread, NULL, zap_main, NULL) != 0)
        return icn_errf(err, errlen, "cannot start the ZAP handler thread");
    g_zap.running = 1;
    return 0;
}

void icn_security_stop(void) {
    if (!g_zap.running) return;
    pthread_join(g_zap.thread, NULL);
    g_zap.running = 0;
    free(g_zap.keys);
    g_zap.keys = NULL, g_zap.n_keys = 0;
}

int icn_security_init(const icn_security *s, void *zmq_ctx, char *err, size_t errlen) {
    icn_security_log_fn log = g_sec.log; /* where lines go is not the keys' business */
    void *log_ctx = g_sec.log_ctx;
    memset(&g_sec, 0, sizeof g_sec);
    g_sec.log = log, g_sec.log_ctx = log_ctx;
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
    if (s->allow_dir && zap_start(s->allow_dir, zmq_ctx, err, errlen)) return -1;
    return 0;
}

int icn_security_attach(void *sock, const char *endpoint, int bind, char *err, size_t errlen) {
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

int icn_security_is_head(const char *user) { return !g_sec.curve || !strcmp(user, g_sec.public_); }

int icn_security_option(int opt, const char *arg, icn_security *s) {
    switch (opt) {
    case ICN_OPT_SECRET_KEY: s->secret_key = arg; return 1;
    case ICN_OPT_SERVER_KEY: s->server_key = arg; return 1;
    case ICN_OPT_ALLOW: s->allow_dir = arg; return 1;
    case ICN_OPT_INSECURE: s->insecure = 1; return 1;
    default: return 0;
    }
}
