/* publisher.c: the snapshot channel's sending end, on a thread of its own (lib/publisher.h). */
#include "publisher.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h> /* socket type constants only: the calls are lib/transport.c's */

#include "transport.h"
#include "util.h"

#define PEERS 256          /* peers whose last answered request is remembered (the oldest goes) */
#define REQUESTS_A_TURN 64 /* requests taken off the ROUTER before the PUB is looked at again */
#define BAD_LOG_S 10.0     /* at most one line per this many seconds about bad requests */

struct icn_publisher {
    void *pub, *router, *wake_rx; /* the thread's */
    void *wake_tx;                /* the caller's: one empty frame wakes the thread */
    char requests[ICN_ENDPOINT_LEN];
    icn_metrics *metrics;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    /* under mu: what the caller handed over, and what the thread tells back */
    icn_shared *handoff;       /* a new snapshot not yet taken by the thread (then the thread's) */
    int64_t handoff_generation;
    icn_msg_kind send_control; /* 0, or a hold/stop to send after the newest snapshot */
    int quit, failed;
    char err[ICN_ERRLEN];
    icn_publisher_counts counts;
    /* the thread's own */
    struct {
        char who[72];
        double last;
    } peers[PEERS];
    double tokens, tokens_at, bad_logged;
};

void icn_snapshot_requests_default(const char *endpoint, char *out, size_t outlen) {
    const char *colon = strrchr(endpoint, ':');
    if (!strncmp(endpoint, "tcp://", 6) && colon && colon > endpoint + 6)
        snprintf(out, outlen, "%.*s:*", (int)(colon - endpoint), endpoint);
    else
        snprintf(out, outlen, "%s.req", endpoint);
}

static void wake(icn_publisher *p) {
    char e[ICN_ERRLEN];
    icn_zmq_try_send(p->wake_tx, "", 0, e, sizeof e); /* a full queue has a wake-up in it already */
}

/* ---------------------------------------------------------------- the thread */

static int send_heartbeat(icn_publisher *p, void *sock, const icn_zmq_peer *to, int64_t generation,
                          icn_run_state state, char *err, size_t errlen) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_heartbeat(&sb, generation, state, ICN_HEARTBEAT_MS, p->requests, icn_wallclock());
    int rc = to ? icn_zmq_send_to(sock, to, sb.data, sb.size, err, errlen) : icn_zmq_send_sbuffer(sock, &sb, err, errlen);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* Whether a reply to `who` may go now: its own gap since its last answer, and the global
 * budget (a token bucket of ICN_SNAPSHOT_REPLIES_PER_S a second, as many at most). */
static int may_reply(icn_publisher *p, const char *who, double now) {
    p->tokens += (now - p->tokens_at) * ICN_SNAPSHOT_REPLIES_PER_S;
    if (p->tokens > ICN_SNAPSHOT_REPLIES_PER_S) p->tokens = ICN_SNAPSHOT_REPLIES_PER_S;
    p->tokens_at = now;
    int at = -1, oldest = 0;
    for (int i = 0; i < PEERS && at < 0; i++) {
        if (!strcmp(p->peers[i].who, who)) at = i;
        else if (p->peers[i].last < p->peers[oldest].last) oldest = i;
    }
    if (at >= 0 && now - p->peers[at].last < ICN_SNAPSHOT_REQUEST_GAP_MS / 1000.0) return 0;
    if (p->tokens < 1) return 0;
    if (at < 0) at = oldest, snprintf(p->peers[at].who, sizeof p->peers[at].who, "%s", who);
    p->peers[at].last = now;
    p->tokens -= 1;
    return 1;
}

/* Who a peer is for the limits: its CURVE key; without CURVE ("local"), its connection. */
static void peer_name(const icn_zmq_peer *from, char *who, size_t len) {
    if (strcmp(from->user, "local")) {
        snprintf(who, len, "%s", from->user);
        return;
    }
    size_t at = (size_t)snprintf(who, len, "id:");
    for (size_t i = 0; i < from->id_len && at + 3 <= len; i++) at += (size_t)snprintf(who + at, len - at, "%02x", from->id[i]);
}

/* Answer the requests waiting on the ROUTER (REQUESTS_A_TURN at most). */
static int serve_requests(icn_publisher *p, icn_shared *newest, int64_t generation, icn_run_state state, char *err,
                          size_t errlen) {
    for (int n = 0; n < REQUESTS_A_TURN; n++) {
        icn_zmq_peer from;
        uint8_t *data;
        size_t len;
        char e[ICN_ERRLEN], who[72];
        int r = icn_zmq_recv_buf(p->router, &from, 0, &data, &len, e, sizeof e);
        if (r == 0) return 0;
        if (r < 0 && errno != EPROTO) return icn_errf(err, errlen, "snapshot requests %s: %s", p->requests, e);
        icn_msg m; /* a request has nothing to free */
        int bad = r < 0 || icn_msg_decode(data, len, ICN_MSG_SNAPSHOT_REQUEST, 0, &m, e, sizeof e);
        free(data);
        double now = icn_now();
        if (bad) {
            if (now - p->bad_logged >= BAD_LOG_S) icn_warn("snapshot request from %s refused: %s", from.user, e);
            p->bad_logged = now;
        }
        peer_name(&from, who, sizeof who);
        if (bad || !may_reply(p, who, now)) {
            pthread_mutex_lock(&p->mu), p->counts.dropped++, pthread_mutex_unlock(&p->mu);
            continue;
        }
        /* ROUTER SNDHWM 1: a peer that does not read holds one reply at most; a full queue or a
         * peer gone drops this one (it asks again) */
        double t = icn_wallclock();
        if (newest && state != ICN_RUN_FINISHED) {
            if (icn_zmq_send_to(p->router, &from, icn_shared_data(newest), icn_shared_size(newest), e, sizeof e) == 0)
                icn_metrics_printf(p->metrics, "{\"event\":\"reply\",\"generation\":%lld,\"time\":%.6f,\"bytes\":%zu}",
                                   (long long)generation, t, icn_shared_size(newest));
        } else {
            send_heartbeat(p, p->router, &from, generation, state, e, sizeof e);
        }
        pthread_mutex_lock(&p->mu), p->counts.replies++, pthread_mutex_unlock(&p->mu);
    }
    return 0;
}

static void *run(void *arg) {
    icn_publisher *p = arg;
    char err[ICN_ERRLEN] = "";
    double next_heartbeat = icn_now();
    /* what subscribers have been sent: heartbeats never name a generation before its snapshot */
    icn_shared *newest = NULL;
    int64_t generation = -1;
    icn_run_state state = ICN_RUN_RUNNING;
    for (int quit = 0; !quit;) {
        double now = icn_now();
        int wait = next_heartbeat > now ? (int)ceil((next_heartbeat - now) * 1000) : 0;
        void *socks[2] = {p->router, p->wake_rx};
        int ready[2];
        if (icn_zmq_poll(socks, 2, wait, ready, err, sizeof err) < 0) break;
        if (ready[1]) {
            icn_zmq_frame f;
            char e[ICN_ERRLEN];
            while (icn_zmq_recv_frame(p->wake_rx, &f, 0, e, sizeof e) == 1) icn_zmq_frame_close(&f);
            icn_zmq_frame_close(&f);
        }
        pthread_mutex_lock(&p->mu);
        int send_newest = p->handoff != NULL;
        icn_msg_kind control = p->send_control;
        if (send_newest) { /* the caller's reference becomes ours */
            icn_shared_release(newest);
            newest = p->handoff, generation = p->handoff_generation, state = ICN_RUN_RUNNING;
            p->handoff = NULL;
        }
        p->send_control = 0;
        quit = p->quit;
        pthread_mutex_unlock(&p->mu);
        if (send_newest) {
            double t = icn_wallclock();
            if (icn_zmq_send_shared(p->pub, newest, err, sizeof err)) break;
            pthread_mutex_lock(&p->mu), p->counts.published++, pthread_mutex_unlock(&p->mu);
            icn_metrics_printf(p->metrics, "{\"event\":\"publish\",\"generation\":%lld,\"time\":%.6f,\"bytes\":%zu}",
                               (long long)generation, t, icn_shared_size(newest));
        }
        if (control) {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            icn_pack_control(&sb, control, generation < 0 ? 0 : generation);
            int rc = icn_zmq_send_sbuffer(p->pub, &sb, err, sizeof err);
            msgpack_sbuffer_destroy(&sb);
            if (rc) break;
            state = control == ICN_MSG_STOP ? ICN_RUN_FINISHED : ICN_RUN_HOLD;
        }
        if (ready[0] && serve_requests(p, newest, generation, state, err, sizeof err)) break;
        /* a heartbeat every ICN_HEARTBEAT_MS, right after a "hold" or "stop", and a last one */
        if (quit || control || icn_now() >= next_heartbeat) {
            if (send_heartbeat(p, p->pub, NULL, generation, state, err, sizeof err)) break;
            pthread_mutex_lock(&p->mu), p->counts.heartbeats++, pthread_mutex_unlock(&p->mu);
            next_heartbeat = icn_now() + ICN_HEARTBEAT_MS / 1000.0;
        }
    }
    icn_shared_release(newest);
    if (err[0]) {
        pthread_mutex_lock(&p->mu);
        p->failed = 1;
        snprintf(p->err, sizeof p->err, "%s", err);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

/* ---------------------------------------------------------------- the caller's side */

icn_publisher *icn_publisher_open(const char *endpoint, const char *requests, icn_metrics *metrics, char *err,
                                  size_t errlen) {
    icn_keep_freed_memory(); /* a snapshot packed each round reuses the last one's pages */
    icn_publisher *p = xcalloc(1, sizeof *p);
    p->metrics = metrics;
    p->tokens = ICN_SNAPSHOT_REPLIES_PER_S, p->tokens_at = icn_now(), p->bad_logged = -1e9;
    for (int i = 0; i < PEERS; i++) p->peers[i].last = -1e9;
    pthread_mutex_init(&p->mu, NULL);
    char bind[ICN_ENDPOINT_LEN], wake_ep[64];
    if (requests) snprintf(bind, sizeof bind, "%s", requests);
    else icn_snapshot_requests_default(endpoint, bind, sizeof bind);
    snprintf(wake_ep, sizeof wake_ep, "inproc://icn-publisher-%p", (void *)p);
    if (!(p->pub = icn_open_publisher(endpoint, err, errlen)) || !(p->router = icn_open_snapshot_router(bind, err, errlen)) ||
        !(p->wake_rx = icn_zmq_open(ZMQ_PAIR, wake_ep, 1, err, errlen)) ||
        !(p->wake_tx = icn_zmq_open(ZMQ_PAIR, wake_ep, 0, err, errlen)))
        goto fail;
    if (icn_zmq_last_endpoint(p->router, p->requests, sizeof p->requests)) {
        icn_errf(err, errlen, "snapshot requests %s: cannot read the endpoint bound", bind);
        goto fail;
    }
    /* signals go to the caller's thread, which owns the stop flag */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&p->thread, NULL, run, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        icn_errf(err, errlen, "cannot start the publisher's thread: %s", strerror(rc));
        goto fail;
    }
    p->started = 1;
    return p;
fail:
    icn_publisher_close(p);
    return NULL;
}

const char *icn_publisher_requests(const icn_publisher *p) { return p->requests; }

static int failed(icn_publisher *p, char *err, size_t errlen) {
    pthread_mutex_lock(&p->mu);
    int f = p->failed;
    if (f) icn_errf(err, errlen, "%s", p->err);
    pthread_mutex_unlock(&p->mu);
    return f ? -1 : 0;
}

int icn_publisher_snapshot(icn_publisher *p, const icn_net *net, const icn_model_meta *meta, char *err, size_t errlen) {
    if (failed(p, err, errlen)) return -1;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_model_pack(&sb, net, meta, NULL);
    size_t bytes = sb.size;
    icn_shared *s = icn_shared_take(msgpack_sbuffer_release(&sb), bytes);
    pthread_mutex_lock(&p->mu);
    icn_shared_release(p->handoff); /* one the thread has not taken yet is superseded */
    p->handoff = s, p->handoff_generation = meta->generation;
    p->send_control = 0; /* a hold or stop not sent yet was for an older generation */
    pthread_mutex_unlock(&p->mu);
    wake(p);
    return 0;
}

int icn_publisher_control(icn_publisher *p, icn_msg_kind hold_or_stop, int64_t generation, char *err, size_t errlen) {
    (void)generation; /* the generation is the newest snapshot's: the thread knows which it sent */
    if (failed(p, err, errlen)) return -1;
    pthread_mutex_lock(&p->mu);
    p->send_control = hold_or_stop;
    pthread_mutex_unlock(&p->mu);
    wake(p);
    return 0;
}

int icn_publisher_serve(icn_publisher *p, int timeout_ms, char *err, size_t errlen) {
    if (timeout_ms > 0) {
        struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL); /* EINTR: a signal, the caller looks at its flag */
    }
    return failed(p, err, errlen);
}

icn_publisher_counts icn_publisher_counts_of(icn_publisher *p) {
    pthread_mutex_lock(&p->mu);
    icn_publisher_counts c = p->counts;
    pthread_mutex_unlock(&p->mu);
    return c;
}

void icn_publisher_close(icn_publisher *p) {
    if (!p) return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->quit = 1;
        pthread_mutex_unlock(&p->mu);
        wake(p);
        pthread_join(p->thread, NULL);
    }
    icn_zmq_close(p->wake_tx), icn_zmq_close(p->wake_rx);
    icn_zmq_close(p->router), icn_zmq_close(p->pub);
    icn_shared_release(p->handoff); /* ZeroMQ may still hold its own references to the others */
    pthread_mutex_destroy(&p->mu);
    free(p);
}
