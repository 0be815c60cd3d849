/* security.h: CURVE keys, the allow-list of peers' public keys and the ZAP handler that
 * applies it (man icn-wire(5) SECURITY). lib/transport.h applies them to its sockets.
 *
 * Keys are CURVE key pairs written as Z85 text (40 characters). A key file holds exactly
 * the 40 characters and one newline; NAME.key (the secret half) must be a regular file
 * that nobody but its owner can read (mode 0600), NAME.pub (the public half) a regular
 * file. Key files are untrusted input: anything else is refused with one line naming it.
 *
 * Security is set once per process (icn_zmq_secure), before the first socket is attached,
 * and applies to every bind and connect from then on:
 *   a bound socket is a CURVE server with our secret key; a ZAP handler (a thread serving
 *     inproc://zeromq.zap.01) admits only the public keys found in the allowed directory
 *     (*.pub, re-read at most once a second when an unknown key knocks) and our own, and
 *     logs the refused keys (Z85 and address): at most one line per key per
 *     ICN_ZAP_LOG_EVERY seconds (with a count of its attempts in between), and at most
 *     ICN_ZAP_LOG_LINES lines per ICN_ZAP_LOG_EVERY seconds in all, the attempts beyond them
 *     counted in one line after the interval (so a fresh random key per attempt cannot flood
 *     the log); a refused peer never completes its handshake, so nothing it sends is ever
 *     received. Only a handshake that reaches the ZAP handler can be logged: a plain-text
 *     client, or one with the wrong server key, fails inside ZeroMQ before any key is known
 *     and is not logged;
 *   a connecting socket is a CURVE client with our key pair and the server's public key
 *     (--server-key; without it, our own public key: the processes of the head share one
 *     key pair);
 *   the authenticated client key is the peer identity of every message it sends
 *     (icn_zmq_peer.user, Z85), "local" without CURVE.
 * Without keys, binding anything but loopback (tcp on 127.0.0.0/8, ::1 or localhost;
 * ipc://; inproc://) is refused unless `insecure`. */
#ifndef ICN_SECURITY_H
#define ICN_SECURITY_H
#include <stddef.h>

#define ICN_KEY_Z85_LEN 40
#define ICN_ZAP_LOG_EVERY 10.0
#define ICN_ZAP_LOG_LINES 10

/* Write NAME.key (secret; created with O_EXCL and mode 0600) and NAME.pub; neither may
 * exist already. public_z85 (41 bytes) receives the public key. */
int icn_keygen(const char *name, char *public_z85, char *err, size_t errlen);
/* Read one key file strictly; secret = 1 also checks the mode. key_z85: 41 bytes. */
int icn_key_read(const char *path, int secret, char *key_z85, char *err, size_t errlen);
/* The public half of a Z85 secret key (41 bytes out). */
int icn_key_public(const char *secret_z85, char *public_z85, char *err, size_t errlen);
/* 1 when endpoint binds only on this machine (loopback tcp, ipc, inproc). */
int icn_endpoint_is_local(const char *endpoint);

/* The process's security. secret_key: a NAME.key file, or NULL for no CURVE; allow_dir: the
 * directory of allowed *.pub, required when this process binds with a key (it starts the ZAP
 * handler); server_key: the head's NAME.pub for connecting (NULL: our own public key).
 * Exactly one of `secret_key` and `insecure` may be set (neither: loopback only). */
typedef struct {
    const char *secret_key, *server_key, *allow_dir;
    int insecure;
} icn_security;
int icn_security_init(const icn_security *s, void *zmq_ctx, char *err, size_t errlen);
/* Join the ZAP handler's thread, after zmq_ctx was terminated (its socket sees ETERM). */
void icn_security_stop(void);
/* Before a bind or connect: a bound socket becomes a CURVE server with our secret key (its
 * handshakes go through the ZAP handler), a connecting one a CURVE client of the server
 * key; without keys, binding anything but loopback is refused unless insecure. */
int icn_security_attach(void *sock, const char *endpoint, int bind, char *err, size_t errlen);
/* Where the security lines (refused peers, ignored key files) go: log(ctx, line), called from
 * the ZAP handler's thread; NULL: icn_warn. */
typedef void (*icn_security_log_fn)(void *ctx, const char *line);
void icn_security_set_log(icn_security_log_fn log, void *ctx);

/* Command-line flags shared by every program with sockets: add ICN_SECURITY_OPTIONS to the
 * getopt table, ICN_SECURITY_USAGE to the usage text, and hand every option to
 * icn_security_option (1 when it was one of these). */
enum { ICN_OPT_SECRET_KEY = 0x5ec0, ICN_OPT_SERVER_KEY, ICN_OPT_ALLOW, ICN_OPT_INSECURE };
#define ICN_SECURITY_OPTIONS                                                                      \
    {"secret-key", required_argument, 0, ICN_OPT_SECRET_KEY},                                   \
        {"server-key", required_argument, 0, ICN_OPT_SERVER_KEY},                               \
        {"allow", required_argument, 0, ICN_OPT_ALLOW}, {"insecure", no_argument, 0, ICN_OPT_INSECURE}
#define ICN_SECURITY_USAGE                                                                        \
    "  --secret-key FILE   CURVE: this process's secret key (NAME.key of 'icn-pool keygen')\n"   \
    "  --allow DIR         CURVE, bound sockets: admit only peers whose NAME.pub is in DIR\n"  \
    "  --server-key FILE   CURVE, connecting: the head's public key (default: our own)\n"      \
    "  --insecure          no keys: allow binding a non-loopback address in the clear\n"
int icn_security_option(int opt, const char *arg, icn_security *s);
/* 1 when a peer (icn_zmq_peer.user) is the head: with CURVE, a peer whose key is this
 * process's own; without keys every peer is "local", unauthenticated, and counts as the head. */
int icn_security_is_head(const char *user);

#endif
