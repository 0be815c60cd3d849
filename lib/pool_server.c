/* pool_server.c: the serving loop of icn-pool(1): batches in on the intake ROUTER, each
 * answered "ack" once stored durably (or "refused", final); requests answered on REP. */
#include "pool_server.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol.h"
#include "security.h"
#include "transport.h"
#include "util.h"
#include "wire.h"

#define STATUS_EVERY 10.0 /* seconds between status lines */
#define FAILED_ACCEPTS_EVERY 10.0 /* seconds between lines about failed accepts */

/* One line to log (time-stamped) or, when NULL, stderr. */
static void say(FILE *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(FILE *log, const char *fmt, ...) {
    FILE *f = log ? log : stderr;
    if (log) {
        char ts[32];
        time_t t = time(NULL);
        struct tm tm;
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", localtime_r(&t, &tm));
        fprintf(f, "%s ", ts);
    }
    va_list ap;
    va_start(ap, fmt);
    icn_vmessage(f, fmt, ap);
    va_end(ap);
    fflush(f);
}
static void say_line(void *log, const char *line) { say(log, "%s", line); } /* security's lines */

typedef struct {
    icn_pool *pool;
    const char *store, *intake_ep, *rep_ep;
    volatile sig_atomic_t *stop; /* set by the program's signal handler */
    FILE *log;                   /* NULL: stderr */
    int64_t frames, rejected, fetches;
    int64_t failed_said; /* failed accepts (lib/transport.h) when the last line about them was written */
    double failed_at;    /* and when */
    int ended;           /* the head said "end": new batches are refused as such until "begin" */
    int64_t after_end, after_end_said; /* batches refused so, and how many the log has said */
    double after_end_at;
} server;

static void reply(const server *s, void *intake, const icn_zmq_peer *to, msgpack_sbuffer *sb) {
    char e[ICN_ERRLEN];
    if (icn_zmq_send_to(intake, to, sb->data, sb->size, e, sizeof e)) say(s->log, "intake: %s", e);
    msgpack_sbuffer_destroy(sb);
}

/* A batch made from a run's snapshots: a record of generation 1 or later (a run publishes
 * generations 1, 2, ...; generation 0 is no run's: seeds pushed with --as-negatives). */
static int of_a_run(const icn_batch *b) {
    for (int32_t i = 0; b->prov && i < b->n; i++)
        if (b->prov[i].generation >= 1) return 1;
    return 0;
}

/* One frame from the intake: untrusted. A stored (or already stored) batch is acknowledged;
 * anything else is refused with one line, to the peer and in the log, and serving goes on.
 * A failure to store a good batch (the disk) stops the server without acknowledging it:
 * returns -1 with err. */
static int take_frame(server *s, void *intake, char *err, size_t errlen) {
    icn_zmq_peer peer;
    uint8_t *data;
    size_t len;
    char e[ICN_ERRLEN];
    int got = icn_zmq_recv_buf(intake, &peer, 0, &data, &len, e, sizeof e);
    if (got == 0) return 0;
    if (got < 0 && errno != EPROTO) return icn_errf(err, errlen, "intake %s: %s", s->intake_ep, e);
    int64_t n = s->frames++;
    icn_msg m = {0};
    int rc = got < 0 ? -1 : icn_msg_decode(data, len, ICN_MSG_BATCH, 1, &m, e, sizeof e);
    free(data);
    if (rc < 0) icn_pool_count_refusal(s->pool, peer.user, "frame", 1); /* the store counts its own refusals */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (rc == 0 && s->ended && of_a_run(&m.batch) && !icn_pool_has_seq(s->pool, peer.user, m.producer, m.seq)) {
        /* the run has ended: not stored, and the answer says why (a batch stored before is
         * still acknowledged as a duplicate, below) */
        s->after_end++;
        double now = icn_now();
        if (now - s->after_end_at >= 10.0) {
            say(s->log, "refused %" PRId64 " batches since the run ended (the last from %s, producer %" PRIu64 ")",
                s->after_end - s->after_end_said, peer.user, m.producer);
            s->after_end_said = s->after_end, s->after_end_at = now;
        }
        icn_pack_run_ended(&sb, m.producer, m.seq);
        reply(s, intake, &peer, &sb);
        icn_msg_free(&m);
        return 0;
    }
    if (rc == 0) {
        icn_pool_origin o = {peer.user, m.producer, m.seq};
        rc = icn_pool_append_batch(s->pool, &m.batch, &o, e, sizeof e);
        if (rc == -2) {
            icn_msg_free(&m);
            msgpack_sbuffer_destroy(&sb);
            return icn_errf(err, errlen, "cannot store batch %" PRIu64 " of producer %" PRIu64 " from %s: %s; stopping "
                            "(nothing of it was acknowledged)", o.seq, o.producer, peer.user, e);
        }
        if (rc == 0) icn_pack_ack(&sb, m.producer, m.seq);
        if (rc == 1) icn_pack_duplicate(&sb, m.producer, m.seq);
    }
    if (rc < 0) {
        s->rejected++;
        say(s->log, "rejected frame %" PRId64 " from %s: %s", n, peer.user, e);
        icn_pack_refused(&sb, m.producer, m.seq, e); /* 0, 0 when the origin could not be read */
    }
    reply(s, intake, &peer, &sb);
    icn_msg_free(&m);
    return 0;
}

/* Out of descriptors: a line when accepts failed, at most one every FAILED_ACCEPTS_EVERY (an
 * episode, however long, costs at most that many lines). */
static void say_failed_accepts(server *s, double now) {
    int64_t n = icn_zmq_accept_failures();
    if (n == s->failed_said || now - s->failed_at < FAILED_ACCEPTS_EVERY) return;
    say(s->log, "out of file descriptors: %" PRId64 " connections not accepted (%" PRId64 " in all), each followed by "
        "a %d ms wait; connected peers keep their connections (icn-wire(5) SECURITY)",
        n - s->failed_said, n, ICN_ACCEPT_BACKOFF_MS);
    s->failed_said = n, s->failed_at = now;
}

/* The images a fetch reply may carry without passing the frame limit. */
static int64_t fetch_cap(const icn_pool *p) {
    int32_t h, w, c;
    if (!icn_pool_shape(p, &h, &w, &c)) return ICN_FETCH_MAX;
    size_t per = (size_t)h * w * c * 4 + 128, max = icn_max_frame();
    size_t room = max > 8192 ? max - 4096 : max / 2;
    int64_t k = (int64_t)(room / per);
    return k < 1 ? 1 : k > ICN_FETCH_MAX ? ICN_FETCH_MAX : k;
}

static void answer(server *s, const icn_msg *m, const icn_zmq_peer *from, msgpack_sbuffer *sb) {
    char e[ICN_ERRLEN];
    if (m->kind == ICN_MSG_END || m->kind == ICN_MSG_BEGIN) { /* the head's alone (icn-wire(5) SECURITY) */
        const char *what = m->kind == ICN_MSG_END ? "end" : "begin";
        if (!icn_security_is_head(from->user)) {
            say(s->log, "refused '%s' from %s: only the head (the pool's own key) may end or begin a run", what, from->user);
            snprintf(e, sizeof e, "'%s' refused: only the head (the pool's own key) may end or begin a run", what);
            icn_pack_error(sb, e);
            return;
        }
        int ended = m->kind == ICN_MSG_END;
        if (ended != s->ended)
            say(s->log, ended ? "the run has ended (said %s): new batches are refused"
                              : "a run begins (said %s): batches are taken again", from->user);
        s->ended = ended;
    }
    if (m->kind == ICN_MSG_FETCH) {
        icn_batch b;
        int64_t cap = fetch_cap(s->pool);
        if (icn_pool_read(s->pool, m->offset, m->max < cap ? m->max : cap, &b, e, sizeof e)) {
            say(s->log, "fetch at offset %" PRId64 ": %s", m->offset, e);
            icn_pack_error(sb, e);
        } else {
            s->fetches++;
            icn_pack_records(sb, m->offset, icn_pool_count(s->pool), &b);
            icn_batch_free(&b);
        }
    } else {
        icn_pool_counts c;
        icn_pool_stats(s->pool, &c);
        icn_pack_pool_stats(sb, &c, s->rejected, icn_zmq_accept_failures(), s->ended);
        icn_pool_counts_free(&c);
    }
}

/* REP must answer every request, even garbage, or the REQ/REP lockstep breaks. */
static int serve_request(server *s, void *rep, char *err, size_t errlen) {
    char e[ICN_ERRLEN], msg[2 * ICN_ERRLEN];
    uint8_t *data;
    size_t len;
    icn_zmq_peer from;
    int got = icn_zmq_recv_buf(rep, &from, 0, &data, &len, e, sizeof e);
    if (got == 0) return 0;
    if (got < 0 && errno != EPROTO) return icn_errf(err, errlen, "REP %s: %s", s->rep_ep, e);
    icn_msg m = {0};
    int bad = got < 0 || icn_msg_decode(data, len, ICN_REQUEST_KINDS, 0, &m, e, sizeof e);
    free(data);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (bad) {
        snprintf(msg, sizeof msg, "bad request: %s", e);
        icn_pack_error(&sb, msg);
    } else {
        answer(s, &m, &from, &sb);
    }
    icn_msg_free(&m);
    int rc;
    while ((rc = icn_zmq_send_sbuffer(rep, &sb, e, sizeof e)) != 0 && errno == EINTR && !*s->stop) {
    }
    if (rc != 0) say(s->log, "REP %s: reply not sent: %s", s->rep_ep, e);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

/* The largest intake frame: a full batch of the pool's shape, or the frame limit (at most
 * 64 MiB) while the pool has no shape yet. */
static int64_t intake_max(const icn_pool *p) {
    int32_t h, w, c;
    if (icn_pool_shape(p, &h, &w, &c)) return icn_intake_max_bytes(h, w, c);
    int64_t max = (int64_t)icn_max_frame();
    return max < (64 << 20) ? max : (64 << 20);
}

int icn_pool_serve(const icn_pool_server_opts *o, volatile sig_atomic_t *stop, char *err, size_t errlen) {
    server s = {.store = o->store, .intake_ep = o->intake, .rep_ep = o->rep, .stop = stop, .log = o->log};
    icn_security_set_log(say_line, o->log);
    const int quiet = o->quiet;
    char e[2 * ICN_ERRLEN];
    if (icn_pool_open(s.store, ICN_POOL_CREATE, o->contract, &s.pool, err, errlen)) return -1;
    if (icn_pool_note(s.pool)[0]) say(s.log, "warning: %s", icn_pool_note(s.pool));
    icn_pool_set_fsync(s.pool, o->fsync);
    void *intake = icn_open_intake(s.intake_ep, intake_max(s.pool), e, sizeof e), *rep = NULL;
    int rc = -1;
    if (!intake) {
        icn_errf(err, errlen, "--intake: %s", e);
        goto out;
    }
    if (!(rep = icn_open_requests(s.rep_ep, e, sizeof e))) {
        icn_errf(err, errlen, "--rep: %s", e);
        goto out;
    }
    long fd_before, fd_now;
    if (icn_fd_limit_raise(&fd_before, &fd_now) != 0)
        say(s.log, "warning: cannot raise the descriptor limit: %s", strerror(errno));
    else if (!quiet || fd_now < 1024)
        say(s.log, "%s%ld file descriptors%s: one per connection, an unauthenticated one held at most %d ms "
            "(firewall and rate-limit the intake: icn-wire(5) SECURITY)",
            fd_now < 1024 ? "warning: only " : "", fd_now, fd_before != fd_now ? " (soft limit raised to the hard)" : "",
            ICN_ZMQ_HANDSHAKE_MS);
    if (!quiet)
        say(s.log, "serving %s (%" PRId64 " records, fsync %s): batches on %s, requests on %s", s.store,
            icn_pool_count(s.pool), icn_fsync_name(o->fsync), s.intake_ep, s.rep_ep);

    double last = icn_now();
    s.failed_said = icn_zmq_accept_failures(), s.failed_at = -FAILED_ACCEPTS_EVERY;
    int64_t last_count = icn_pool_count(s.pool);
    rc = 0;
    while (!*stop && rc == 0) {
        void *socks[2] = {intake, rep};
        int ready[2];
        int r = icn_zmq_poll(socks, 2, 1000, ready, e, sizeof e);
        if (r < 0) {
            rc = icn_errf(err, errlen, "%s", e);
            break;
        }
        if (ready[1]) rc = serve_request(&s, rep, err, errlen);
        for (int i = 0; ready[0] && rc == 0 && i < 64 && !*stop; i++) { /* then let requests in */
            int64_t before = s.frames;
            rc = take_frame(&s, intake, err, errlen);
            if (s.frames == before) break;
        }
        double now = icn_now();
        say_failed_accepts(&s, now);
        if (now - last >= STATUS_EVERY) {
            int64_t n = icn_pool_count(s.pool);
            if (!quiet)
                say(s.log, "%s: %" PRId64 " records (+%" PRId64 " in %.0f s, %.1f/s), %" PRId64 " rejected, %" PRId64
                    " duplicates, %" PRId64 " fetches served",
                    s.store, n, n - last_count, now - last, (double)(n - last_count) / (now - last), s.rejected,
                    icn_pool_duplicates(s.pool), s.fetches);
            last = now, last_count = n;
        }
    }
out:;
    int64_t n = icn_pool_count(s.pool), dups = icn_pool_duplicates(s.pool);
    icn_zmq_close(intake);
    icn_zmq_close(rep);
    int closed = icn_pool_close(s.pool, e, sizeof e);
    icn_security_set_log(NULL, NULL); /* the log may be closed after we return */
    if (closed && rc == 0) rc = icn_errf(err, errlen, "%s", e);
    if (rc == 0 && !quiet)
        say(s.log, "stopped: %s holds %" PRId64 " records; %" PRId64 " frames rejected, %" PRId64 " duplicates acknowledged",
            s.store, n, s.rejected, dups);
    return rc;
}
