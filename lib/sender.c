/* sender.c: acknowledged, exactly-once delivery of batches to the pool (lib/sender.h). */
#include "sender.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "protocol.h"
#include "transport.h"
#include "util.h"

typedef struct {
    uint64_t seq;
    uint8_t *bytes; /* the packed batch frame */
    size_t len;
    int32_t images;
    int sent;       /* on the current socket */
} pending;

struct icn_sender {
    void *sock;
    char *endpoint;
    uint64_t producer, next_seq;
    pending *win; /* ring of `window` entries: [head, head + n) */
    int window, head, n, resend_ms;
    int wait_ms; /* the resend timeout now: resend_ms, doubled at each resend (up to MAX_WAIT_MS),
                  * back to resend_ms once every batch is answered */
    double last_answer; /* when an answer last came, or the window was last (re)sent */
    icn_sender_counts counts;
    int run_ended; /* a refusal said the run has ended */
    void (*on_refused)(uint64_t seq, const char *reason, void *ctx);
    void *ctx;
};

#define MAX_WAIT_MS 16000

static uint64_t random_producer(void) {
    uint64_t v = 0;
    while (v == 0) {
        if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) /* no entropy source: time and pid */
            v = (uint64_t)(icn_wallclock() * 1e9) ^ ((uint64_t)getpid() << 32);
        v &= INT64_MAX; /* 63 bits: the wire's integers are read as int64 */
    }
    return v;
}

icn_sender *icn_sender_open(const char *endpoint, int window, int resend_ms,
                            void (*on_refused)(uint64_t seq, const char *reason, void *ctx), void *ctx, char *err,
                            size_t errlen) {
    void *sock = icn_open_sender(endpoint, err, errlen);
    if (!sock) return NULL;
    icn_sender *s = xcalloc(1, sizeof *s);
    s->sock = sock;
    s->endpoint = xstrdup(endpoint);
    s->producer = random_producer();
    s->next_seq = 1;
    s->window = window < 1 ? 1 : window;
    s->win = xcalloc((size_t)s->window, sizeof *s->win);
    s->resend_ms = s->wait_ms = resend_ms;
    s->on_refused = on_refused, s->ctx = ctx;
    s->last_answer = icn_now();
    return s;
}

uint64_t icn_sender_producer(const icn_sender *s) { return s->producer; }
int icn_sender_room(const icn_sender *s) { return s->window - s->n; }
int64_t icn_sender_pending(const icn_sender *s) { return s->n; }
const icn_sender_counts *icn_sender_counts_of(const icn_sender *s) { return &s->counts; }
int icn_sender_run_ended(const icn_sender *s) { return s->run_ended; }

static pending *at(icn_sender *s, int i) { return &s->win[(s->head + i) % s->window]; }

/* Send, in order, what is not yet on this socket; stop at the first that would block (no
 * connection yet: IMMEDIATE), so the order is kept. */
static int send_unsent(icn_sender *s, char *err, size_t errlen) {
    for (int i = 0; i < s->n; i++) {
        pending *p = at(s, i);
        if (p->sent) continue;
        int r = icn_zmq_try_send(s->sock, p->bytes, p->len, err, errlen);
        if (r < 0) return -1;
        if (r == 0) return 0;
        p->sent = 1;
    }
    return 0;
}

int icn_sender_send(icn_sender *s, const icn_batch *b, char *err, size_t errlen) {
    if (s->n == s->window) return icn_errf(err, errlen, "sender: the window of %d batches is full", s->window);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pending *p = at(s, s->n);
    p->seq = s->next_seq++;
    icn_pack_batch_from(&sb, b, s->producer, p->seq);
    p->bytes = (uint8_t *)sb.data, p->len = sb.size, p->images = b->n, p->sent = 0; /* p owns sb's buffer */
    if (s->n == 0) s->last_answer = icn_now(); /* the clock starts with the first unanswered batch */
    s->n++;
    s->counts.sent++;
    s->counts.images_sent += b->n;
    return send_unsent(s, err, errlen);
}

/* An answer for seq: take it out of the window (it may be anywhere in it; a duplicate answer
 * to a resent batch finds nothing). */
static void settle(icn_sender *s, uint64_t seq, int acked, const char *reason) {
    for (int i = 0; i < s->n; i++) {
        pending *p = at(s, i);
        if (p->seq != seq) continue;
        if (acked) s->counts.acked++, s->counts.images_acked += p->images;
        else {
            s->counts.refused++;
            if (s->on_refused) s->on_refused(seq, reason, s->ctx);
        }
        free(p->bytes);
        for (int j = i; j > 0; j--) *at(s, j) = *at(s, j - 1); /* close the gap: keep the order */
        s->head = (s->head + 1) % s->window;
        if (--s->n == 0) s->wait_ms = s->resend_ms; /* all answered: the pool keeps up again */
        return;
    }
}

static int take_answer(icn_sender *s, int timeout_ms, char *err, size_t errlen) {
    uint8_t *data;
    size_t len;
    char e[ICN_ERRLEN];
    int got = icn_zmq_recv_buf(s->sock, NULL, timeout_ms, &data, &len, e, sizeof e);
    if (got == 0) return 0;
    if (got < 0) {
        if (errno == EPROTO) return 1; /* not ours to answer; keep going */
        return icn_errf(err, errlen, "pool at %s: %s", s->endpoint, e);
    }
    icn_msg m;
    int bad = icn_msg_decode(data, len, ICN_INTAKE_REPLY_KINDS, 0, &m, e, sizeof e);
    free(data);
    if (bad) {
        icn_warn("pool at %s: bad answer ignored: %s", s->endpoint, e);
        return 1;
    }
    s->last_answer = icn_now();
    if (m.kind == ICN_MSG_REFUSED && m.ended) s->run_ended = 1; /* before on_refused, which may ask */
    if (m.producer == s->producer) settle(s, m.seq, m.kind == ICN_MSG_ACK, m.text);
    else if (m.kind == ICN_MSG_REFUSED && s->on_refused) s->on_refused(0, m.text, s->ctx);
    icn_msg_free(&m);
    return 1;
}

/* Lazy Pirate: no answer for resend_ms: a new socket, and the whole window again, in order. */
static int resend_all(icn_sender *s, char *err, size_t errlen) {
    icn_zmq_close(s->sock);
    if (!(s->sock = icn_open_sender(s->endpoint, err, errlen))) return -1;
    for (int i = 0; i < s->n; i++) at(s, i)->sent = 0;
    s->counts.resent += s->n;
    s->counts.reconnects++;
    s->last_answer = icn_now();
    /* a pool slower than resend_ms must not be answered by reconnecting every resend_ms: its
     * answers would always go to the socket just closed (ROUTER drops them), and everything
     * would be sent again and again (seen with 2 synthesizers and a pool storing 34 images/s:
     * 22 duplicates, 40 of 520 images acknowledged in 22 s) */
    if (s->wait_ms < MAX_WAIT_MS) s->wait_ms = s->wait_ms * 2 < MAX_WAIT_MS ? s->wait_ms * 2 : MAX_WAIT_MS;
    return send_unsent(s, err, errlen);
}

int icn_sender_pump(icn_sender *s, int timeout_ms, char *err, size_t errlen) {
    double until = icn_now() + timeout_ms / 1000.0;
    for (;;) {
        if (send_unsent(s, err, errlen)) return -1;
        int left = (int)((until - icn_now()) * 1000);
        if (left < 0) left = 0;
        if (s->n > 0) {
            int to_resend = (int)((s->last_answer + s->wait_ms / 1000.0 - icn_now()) * 1000);
            if (to_resend <= 0) {
                if (resend_all(s, err, errlen)) return -1;
                continue;
            }
            if (to_resend < left) left = to_resend;
        }
        /* while batches wait for a connection, look again soon */
        int unsent = s->n > 0 && !at(s, s->n - 1)->sent;
        if (unsent && left > 10) left = 10;
        int r = take_answer(s, left, err, errlen);
        if (r < 0) return -1;
        if (r == 0 && errno == EINTR) return 0;
        if (r == 1) { /* drain what else is here, then return if the time is up */
            while ((r = take_answer(s, 0, err, errlen)) == 1) {
            }
            if (r < 0) return -1;
        }
        if (icn_now() >= until) return 0;
    }
}

int64_t icn_sender_drain(icn_sender *s, int patience_ms, const volatile sig_atomic_t *stop, char *err, size_t errlen) {
    double last_progress = icn_now();
    int64_t settled = s->counts.acked + s->counts.refused;
    while (s->n > 0 && !(stop && *stop)) {
        if (icn_sender_pump(s, 100, err, errlen)) break;
        int64_t now_settled = s->counts.acked + s->counts.refused;
        if (now_settled != settled) settled = now_settled, last_progress = icn_now();
        if ((icn_now() - last_progress) * 1000 >= patience_ms) break;
    }
    return s->n;
}

void icn_sender_close(icn_sender *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(at(s, i)->bytes);
    icn_zmq_close(s->sock);
    free(s->win);
    free(s->endpoint);
    free(s);
}
