/* pool_server.c: the serving loop of icn-pool(1): PULL frames in, REP answers out. */
#include "pool_server.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "transport.h"
#include "util.h"
#include "wire.h"

#define FETCH_MAX ICN_POOL_FETCH_MAX
#define STATUS_EVERY 10.0 /* seconds between status lines */

typedef struct {
    icn_pool *pool;
    const char *store, *pull_ep, *rep_ep;
    FILE *log; /* NULL: stderr */
    volatile sig_atomic_t *stop;
    int64_t frames, rejected, fetches;
} server;

static void say(const server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const server *s, const char *fmt, ...) {
    FILE *f = s->log ? s->log : stderr;
    if (s->log) {
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


/* One frame from PULL: untrusted. Refusals are one line each and serving goes on; a failure to
 * store a good batch (the disk) stops the server (-1 with err), so that nothing is silently dropped. */
static int take_frame(server *s, int got, msgpack_unpacked *u, const char *recv_err, char *err, size_t errlen) {
    int64_t n = s->frames++;
    char e[ICN_ERRLEN], kind[64];
    int bad = 0;
    if (got < 0) {
        bad = 1;
        snprintf(e, sizeof e, "%s", icn_frame_error_detail(recv_err));
    } else if (!icn_map_kind_is(&u->data, "batch")) {
        bad = 1;
        icn_frame_kind(&u->data, kind, sizeof kind);
        snprintf(e, sizeof e, "kind '%s', not 'batch'", kind);
    } else {
        icn_batch b;
        if (icn_batch_decode(&u->data, &b, e, sizeof e)) {
            icn_pool_count_refusal(s->pool, "local", "frame", 1);
            bad = 1;
        } else {
            int rc = icn_pool_append(s->pool, &b, e, sizeof e);
            icn_batch_free(&b);
            if (rc == -2) return icn_errf(err, errlen, "cannot store frame %" PRId64 " from PULL: %s; stopping", n, e);
            bad = rc != 0;
        }
    }
    if (bad) {
        if (got < 0 || !icn_map_kind_is(&u->data, "batch")) icn_pool_count_refusal(s->pool, "local", "frame", 1);
        s->rejected++;
        say(s, "rejected frame %" PRId64 " from PULL: %s", n, e);
    }
    return 0;
}

/* The images a fetch reply may carry without passing the frame limit. */
static int64_t fetch_cap(const icn_pool *p) {
    int32_t h, w, c;
    if (!icn_pool_shape(p, &h, &w, &c)) return FETCH_MAX;
    size_t per = (size_t)h * w * c * 4 + 128, max = icn_max_frame();
    size_t room = max > 8192 ? max - 4096 : max / 2;
    int64_t k = (int64_t)(room / per);
    return k < 1 ? 1 : k > FETCH_MAX ? FETCH_MAX : k;
}

static void answer(server *s, int got, msgpack_unpacked *u, const char *recv_err, msgpack_sbuffer *sb) {
    char e[ICN_ERRLEN], msg[2 * ICN_ERRLEN], kind[64];
    if (got < 0) {
        snprintf(msg, sizeof msg, "bad request: %s", icn_frame_error_detail(recv_err));
        icn_pack_error(sb, msg);
    } else if (icn_map_kind_is(&u->data, "fetch")) {
        int64_t offset, max;
        icn_batch b;
        if (icn_map_i64(&u->data, "offset", 0, INT64_MAX, &offset, e, sizeof e) ||
            icn_map_i64(&u->data, "max", 1, FETCH_MAX, &max, e, sizeof e)) {
            snprintf(msg, sizeof msg, "bad fetch: %s", e);
            icn_pack_error(sb, msg);
        } else if (icn_pool_read(s->pool, offset, max < fetch_cap(s->pool) ? max : fetch_cap(s->pool), &b, e,
                                 sizeof e)) {
            say(s, "fetch at offset %" PRId64 ": %s", offset, e);
            icn_pack_error(sb, e);
        } else {
            s->fetches++;
            icn_pack_records(sb, offset, icn_pool_count(s->pool), &b);
            icn_batch_free(&b);
        }
    } else if (icn_map_kind_is(&u->data, "stats")) {
        icn_pool_counts c;
        icn_pool_stats(s->pool, &c);
        icn_pack_pool_stats(sb, &c, s->rejected);
        icn_pool_counts_free(&c);
    } else {
        icn_frame_kind(&u->data, kind, sizeof kind);
        snprintf(msg, sizeof msg, "unknown request kind '%s' (expected 'fetch' or 'stats')", kind);
        icn_pack_error(sb, msg);
    }
}

/* REP must answer every request, even garbage, or the REQ/REP lockstep breaks. -1 with err when
 * the socket itself fails. */
static int serve_request(server *s, void *rep, char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int got = icn_zmq_recv_map(rep, 0, &u, e, sizeof e);
    if (got < 0 && errno != EPROTO) {
        msgpack_unpacked_destroy(&u);
        return icn_errf(err, errlen, "REP %s: %s", s->rep_ep, e);
    }
    if (got != 0) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        answer(s, got, &u, e, &sb);
        int rc;
        while ((rc = icn_zmq_send_sbuffer(rep, &sb, e, sizeof e)) != 0 && errno == EINTR && !*s->stop) {
        }
        if (rc != 0) say(s, "REP %s: reply not sent: %s", s->rep_ep, e);
        msgpack_sbuffer_destroy(&sb);
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}

static int pull_frames(server *s, void *pull, char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    int rc = 0;
    for (int i = 0; i < 64 && !*s->stop && rc == 0; i++) { /* then let requests in */
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        int got = icn_zmq_recv_map(pull, 0, &u, e, sizeof e);
        if (got < 0 && errno != EPROTO) rc = icn_errf(err, errlen, "PULL %s: %s", s->pull_ep, e);
        else if (got != 0) rc = take_frame(s, got, &u, e, err, errlen);
        msgpack_unpacked_destroy(&u);
        if (got == 0) break;
    }
    return rc;
}

int icn_pool_serve(const icn_pool_server_opts *o, volatile sig_atomic_t *stop, char *err, size_t errlen) {
    server s = {.store = o->store, .pull_ep = o->pull, .rep_ep = o->rep, .log = o->log, .stop = stop};
    const int quiet = o->quiet;
    if (icn_pool_open(s.store, ICN_POOL_CREATE, o->contract, &s.pool, err, errlen)) return -1;
    if (icn_pool_note(s.pool)[0]) say(&s, "warning: %s", icn_pool_note(s.pool));
    icn_pool_set_fsync(s.pool, o->fsync);
    char e[2 * ICN_ERRLEN];
    void *pull = NULL, *rep = NULL;
    int rc = 0;
    if (!(pull = icn_zmq_open(ZMQ_PULL, s.pull_ep, 1, e, sizeof e))) rc = icn_errf(err, errlen, "--pull: %s", e);
    else if (!(rep = icn_zmq_open(ZMQ_REP, s.rep_ep, 1, e, sizeof e))) rc = icn_errf(err, errlen, "--rep: %s", e);
    if (rc == 0 && !quiet)
        say(&s, "serving %s (%" PRId64 " records, fsync %s): batches on PULL %s, requests on REP %s", s.store,
            icn_pool_count(s.pool), icn_fsync_name(o->fsync), s.pull_ep, s.rep_ep);

    double last = icn_now();
    int64_t last_count = icn_pool_count(s.pool);
    while (rc == 0 && !*stop) {
        zmq_pollitem_t items[2] = {{pull, 0, ZMQ_POLLIN, 0}, {rep, 0, ZMQ_POLLIN, 0}};
        int r = zmq_poll(items, 2, 1000);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rc = icn_errf(err, errlen, "poll: %s", zmq_strerror(errno));
        if (rc == 0 && (items[1].revents & ZMQ_POLLIN)) rc = serve_request(&s, rep, err, errlen);
        if (rc == 0 && (items[0].revents & ZMQ_POLLIN)) rc = pull_frames(&s, pull, err, errlen);
        double now = icn_now();
        if (rc == 0 && now - last >= STATUS_EVERY) {
            int64_t n = icn_pool_count(s.pool);
            if (!quiet)
                say(&s, "%s: %" PRId64 " records (+%" PRId64 " in %.0f s, %.1f/s), %" PRId64 " rejected, %" PRId64
                    " fetches served",
                    s.store, n, n - last_count, now - last, (double)(n - last_count) / (now - last), s.rejected,
                    s.fetches);
            last = now, last_count = n;
        }
    }
    int64_t n = icn_pool_count(s.pool);
    icn_zmq_close(pull);
    icn_zmq_close(rep);
    /* the store is closed (and synced) on every path: what was acknowledged stays */
    int rc_close = icn_pool_close(s.pool, e, sizeof e);
    icn_zmq_term();
    if (rc) return -1;
    if (rc_close) return icn_errf(err, errlen, "%s", e);
    if (!quiet) say(&s, "stopped: %s holds %" PRId64 " records; %" PRId64 " frames rejected", s.store, n, s.rejected);
    return 0;
}
