/* inbox.c: the snapshot channel's subscriber thread (inbox.h). */
#include "inbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol.h"
#include "transport.h"
#include "util.h"

#define MODEL_MARGIN 65536 /* bytes a snapshot may grow by over the first one (metadata) */
#define RECV_MS 100        /* the thread looks at its stop flag this often */
#define QUIET_BEATS 3      /* heartbeat intervals of silence that make the trainer "quiet" */
#define STALL_S 1.0        /* a loop turn this late: the process was stopped or starved */
#define FRESH_LAG_S 1.0    /* a heartbeat whose time stamp says it is younger is fresh (clocks agreeing) */
#define LAG_RELAX 0.02     /* how fast the least lag may rise: seconds per second (a clock step) */

struct icn_inbox {
    const icn_inbox_opts *o;
    double liveness_s;
    /* the thread's */
    void *sub, *req;  /* req: the snapshot requester, once its endpoint is known */
    int64_t sub_max;  /* the sockets' MAXMSGSIZE (0: the frame limit) */
    char req_ep[ICN_ENDPOINT_LEN];
    double last_request, last_turn, resumed_at;
    int warned_endpoint;
    char asking[ICN_ENDPOINT_LEN]; /* a request not sent yet (the DEALER not connected yet): its
                                    * advertised endpoint, tried again each turn; "" none */
    double least_lag, least_at;    /* the least heartbeat lag (our clock at receipt - theirs at
                                    * sending): the clocks' offset plus the shortest transit, what
                                    * a fresh heartbeat shows; least_at: when it was seen (0: none) */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t news_cond;
    atomic_int ready; /* something for the next take, or failed */
    atomic_int quit;
    _Atomic double heard;    /* icn_now() when the trainer sent its latest heartbeat (heard_at), or when
                              * its first frame came if no heartbeat has yet; 0 before anything */
    _Atomic double quiet_s;  /* silence that makes it quiet: QUIET_BEATS of its heartbeat interval */
    atomic_llong requests;
    /* under mu */
    icn_inbox_news news; /* what the next take returns */
    int have;            /* a model has arrived: newest_* are set */
    int64_t newest_gen;
    size_t newest_params;
    int failed;
    char err[ICN_ERRLEN];
};

static void changed(icn_inbox *ib) { /* under mu */
    atomic_store(&ib->ready, 1);
    pthread_cond_broadcast(&ib->news_cond);
}

static void end_run(icn_inbox *ib, int how, const char *why) { /* under mu */
    if (ib->news.stop) return; /* the first reason stands */
    ib->news.stop = how;
    snprintf(ib->news.why, sizeof ib->news.why, "%s", why);
    changed(ib);
}

/* Keep what the decoded message m changes (under mu); m's net becomes the inbox's when kept.
 * Returns 1 when a heartbeat names a generation we should ask for. */
static int keep(icn_inbox *ib, icn_msg *m, int reply, size_t bytes, double at) {
    icn_inbox_news *nw = &ib->news;
    char why[ICN_ERRLEN];
    if (m->kind == ICN_MSG_STOP) {
        snprintf(why, sizeof why, "the trainer at %s said stop", ib->o->endpoint);
        end_run(ib, 1, why);
    } else if (m->kind == ICN_MSG_HEARTBEAT) {
        if (m->state == ICN_RUN_FINISHED) {
            snprintf(why, sizeof why, "the trainer at %s says its run has finished (heartbeat)", ib->o->endpoint);
            end_run(ib, 1, why);
            return 0;
        }
        if (m->generation < 0) return 0; /* nothing published yet */
        if (ib->have && m->generation == ib->newest_gen) {
            if (m->state == ICN_RUN_HOLD && m->generation > nw->hold) nw->hold = m->generation, changed(ib);
            return 0;
        }
        return 1; /* a generation we do not hold: ask for it */
    } else if (m->kind == ICN_MSG_HOLD) {
        /* a hold for an older generation than our newest model is not ours any more */
        if (!ib->have || m->generation < ib->newest_gen || m->generation <= nw->hold) return 0;
        nw->hold = m->generation;
        changed(ib);
    } else {
        if (ib->have && m->meta.generation == ib->newest_gen && m->net.n_params == ib->newest_params)
            return 0; /* one we have (a reply to a request that crossed the PUB's copy) */
        if (reply && ib->have && m->meta.generation < ib->newest_gen)
            return 0; /* a reply that crossed a newer publication: stale (the PUB's own order is the
                       * trainer's, so a lower generation there is a restarted trainer's) */
        if (nw->has_model) icn_net_free(&nw->net); /* replaced before it was taken */
        nw->net = m->net, nw->meta = m->meta, nw->has_model = 1;
        nw->hold = -1; /* a hold is for the generation it came with: a new one starts unheld (also a
                        * restarted trainer's, whose generations begin again lower) */
        m->kind = ICN_MSG_HOLD; /* the net is the inbox's now: icn_msg_free leaves it */
        ib->have = 1, ib->newest_gen = m->meta.generation, ib->newest_params = m->net.n_params;
        if (nw->receipts < ICN_INBOX_RECEIPTS) {
            nw->receipt[nw->receipts].generation = m->meta.generation;
            nw->receipt[nw->receipts].time = at;
            nw->receipt[nw->receipts].bytes = bytes;
            nw->receipts++;
        } else {
            nw->receipts_lost++;
        }
        changed(ib);
    }
    return 0;
}

/* Where snapshot requests go: the flag's endpoint, or the heartbeat's (tcp: its port on the
 * host we subscribed to, which is the trainer's as we reach it). "" when it cannot be told. */
static void request_endpoint(icn_inbox *ib, const char *advertised, char *out, size_t len) {
    const char *snap = ib->o->endpoint, *port = strrchr(advertised, ':'), *host_end = strrchr(snap, ':');
    out[0] = 0;
    if (ib->o->requests) {
        snprintf(out, len, "%s", ib->o->requests);
    } else if (!strncmp(advertised, "tcp://", 6)) {
        char *end;
        long p = port ? strtol(port + 1, &end, 10) : 0;
        if (!strncmp(snap, "tcp://", 6) && host_end && host_end > snap + 6 && p >= 1 && p <= 65535 && !*end)
            snprintf(out, len, "%.*s:%ld", (int)(host_end - snap), snap, p);
    } else if ((!strncmp(advertised, "ipc://", 6) && !strncmp(snap, "ipc://", 6)) ||
               (!strncmp(advertised, "inproc://", 9) && !strncmp(snap, "inproc://", 9))) {
        snprintf(out, len, "%s", advertised);
    }
    if (!out[0] && !ib->warned_endpoint) {
        icn_warn("snapshots %s: cannot reach the snapshot requests endpoint '%s' the trainer names (give "
                 "--snapshot-requests)", snap, advertised);
        ib->warned_endpoint = 1;
    }
}

/* Ask for the newest snapshot (at most once per ICN_INBOX_REQUEST_RETRY_MS that got out). */
static int ask(icn_inbox *ib, const char *advertised, char *err, size_t errlen) {
    double now = icn_now();
    if (now - ib->last_request < ICN_INBOX_REQUEST_RETRY_MS / 1000.0) return 0;
    char ep[ICN_ENDPOINT_LEN];
    request_endpoint(ib, advertised, ep, sizeof ep);
    if (!ep[0]) return 0;
    if (ib->req && strcmp(ep, ib->req_ep)) icn_zmq_close(ib->req), ib->req = NULL; /* a trainer on another port */
    if (!ib->req) {
        if (!(ib->req = icn_open_snapshot_requester(ep, ib->sub_max, err, errlen))) return -1;
        snprintf(ib->req_ep, sizeof ib->req_ep, "%s", ep);
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_snapshot_request(&sb);
    char e[ICN_ERRLEN];
    int sent = icn_zmq_try_send(ib->req, sb.data, sb.size, e, sizeof e); /* 0: not connected yet, next turn */
    msgpack_sbuffer_destroy(&sb);
    if (sent == 1) ib->last_request = now, atomic_fetch_add(&ib->requests, 1), ib->asking[0] = 0;
    else if (advertised != ib->asking) snprintf(ib->asking, sizeof ib->asking, "%s", advertised);
    return 0;
}

/* The first model tells its size: no later frame may be larger (both sockets opened again). */
static int bound_sockets(icn_inbox *ib, size_t n, char *err, size_t errlen) {
    ib->sub_max = (int64_t)n + MODEL_MARGIN;
    icn_zmq_close(ib->sub);
    if (!(ib->sub = icn_open_subscriber(ib->o->endpoint, ib->sub_max, err, errlen))) return -1;
    if (ib->req) {
        icn_zmq_close(ib->req);
        if (!(ib->req = icn_open_snapshot_requester(ib->req_ep, ib->sub_max, err, errlen))) return -1;
    }
    return 0;
}

/* The trainer was alive when it sent a heartbeat: `heard` becomes that moment on our clock.
 * A heartbeat that waited in a queue or a socket buffer (we were stopped, or the link was
 * down) is older than it looks: its lag exceeds the least lag seen by the time it waited (a
 * steady offset between the two clocks cancels out). The least may rise by LAG_RELAX per
 * second since it was seen (a clock stepped back by 1 s is believed again within 50 s), never
 * faster: however many waited heartbeats come after a stop, they cannot pass for fresh. Before
 * any least is known, one that comes within ICN_INBOX_GRACE_MS of a stall (or of the start)
 * and says it is older than FRESH_LAG_S may have waited: it is taken at its word (the clocks
 * agreeing) and sets no least (a worker stopped before its first heartbeat came). */
static void heard_at(icn_inbox *ib, double sent, int64_t interval_ms, double now, double wall) {
    atomic_store(&ib->quiet_s, QUIET_BEATS * interval_ms / 1000.0);
    double lag = wall - sent, when;
    if (ib->least_at == 0 && now - ib->resumed_at < ICN_INBOX_GRACE_MS / 1000.0 && lag > FRESH_LAG_S) {
        when = now - lag; /* it may have waited: taken at its word */
    } else {
        double least = ib->least_at > 0 ? ib->least_lag + LAG_RELAX * (now - ib->least_at) : lag;
        if (lag <= least) ib->least_lag = least = lag, ib->least_at = now;
        when = now - (lag - least);
    }
    if (when > atomic_load(&ib->heard)) atomic_store(&ib->heard, when);
}

/* One frame from sock, if one is there. 0: fine (a refused frame included); -1: the socket. */
static int receive(icn_inbox *ib, void *sock, char *err, size_t errlen) {
    icn_zmq_frame f; /* decoded where ZeroMQ received it: no copy of the 17 MB frame */
    char e[ICN_ERRLEN];
    int got = icn_zmq_recv_frame(sock, &f, 0, e, sizeof e);
    if (got <= 0) {
        int why = errno;
        icn_zmq_frame_close(&f);
        if (got == 0) return 0;
        if (why == EPROTO) return icn_warn("rejected snapshot frame: %s", e), 0;
        return icn_errf(err, errlen, "snapshots %s: %s", ib->o->endpoint, e);
    }
    size_t n = f.len;
    icn_msg m;
    unsigned accept = sock == ib->sub ? ICN_SNAPSHOT_KINDS : ICN_SNAPSHOT_REPLY_KINDS;
    int bad = icn_msg_decode(f.data, f.len, accept, 0, &m, e, sizeof e);
    icn_zmq_frame_close(&f);
    if (bad) return icn_warn("rejected snapshot frame: %s", e), 0;
    double now = icn_now(), at = icn_wallclock();
    if (m.kind == ICN_MSG_HEARTBEAT) heard_at(ib, m.time, m.interval_ms, now, at);
    else if (atomic_load(&ib->heard) == 0) atomic_store(&ib->heard, now); /* first contact: the clock
        * starts (the heartbeat after a first snapshot may be lost as the socket is opened again) */
    int first_model = m.kind == ICN_MSG_MODEL && !ib->sub_max;
    pthread_mutex_lock(&ib->mu);
    int want = keep(ib, &m, sock == ib->req, n, at);
    pthread_mutex_unlock(&ib->mu);
    int rc = 0;
    if (want) rc = ask(ib, m.endpoint, err, errlen);
    icn_msg_free(&m);
    if (!rc && first_model) rc = bound_sockets(ib, n, err, errlen);
    return rc;
}

/* One turn: wait up to RECV_MS for a frame on either socket, then the liveness check. */
static int turn(icn_inbox *ib, char *err, size_t errlen) {
    void *socks[2] = {ib->sub, ib->req};
    int ready[2] = {0, 0};
    if (icn_zmq_poll(socks, ib->req ? 2 : 1, RECV_MS, ready, err, errlen) < 0) return -1;
    double polled = icn_now();
    if (polled - ib->last_turn > STALL_S) ib->resumed_at = polled; /* stopped: what comes now may have waited */
    for (int i = 0; i < 2; i++)
        if (ready[i] && receive(ib, i ? ib->req : ib->sub, err, errlen)) return -1;
    if (ib->asking[0] && ask(ib, ib->asking, err, errlen)) return -1;
    double now = icn_now(), heard = atomic_load(&ib->heard);
    if (now - ib->last_turn > STALL_S) ib->resumed_at = now; /* stopped or starved: frames may be on their way */
    ib->last_turn = now;
    if (heard > 0 && now - heard > ib->liveness_s && now - ib->resumed_at > ICN_INBOX_GRACE_MS / 1000.0) {
        char why[ICN_ERRLEN];
        snprintf(why, sizeof why, "no word from the trainer at %s for %.0f s (liveness %g s): it is gone",
                 ib->o->endpoint, now - heard, ib->liveness_s);
        pthread_mutex_lock(&ib->mu);
        end_run(ib, 2, why);
        pthread_mutex_unlock(&ib->mu);
    }
    return 0;
}

static void *run(void *arg) {
    icn_inbox *ib = arg;
    char err[ICN_ERRLEN] = "";
    ib->last_turn = ib->resumed_at = icn_now();
    while (!atomic_load(&ib->quit))
        if (turn(ib, err, sizeof err)) {
            pthread_mutex_lock(&ib->mu);
            snprintf(ib->err, sizeof ib->err, "%s", err);
            ib->failed = 1;
            changed(ib);
            pthread_mutex_unlock(&ib->mu);
            break;
        }
    return NULL;
}

icn_inbox *icn_inbox_open(const icn_inbox_opts *o, char *err, size_t errlen) {
    icn_keep_freed_memory(); /* each snapshot received and decoded reuses the last one's pages */
    icn_inbox *ib = xcalloc(1, sizeof *ib);
    ib->o = o;
    ib->liveness_s = o->liveness_s > 0 ? o->liveness_s : ICN_LIVENESS_S;
    ib->news.hold = -1;
    ib->last_request = -1e9;
    atomic_store(&ib->quiet_s, QUIET_BEATS * 1.0); /* a 1 s interval until a heartbeat says */
    if (!(ib->sub = icn_open_subscriber(o->endpoint, 0, err, errlen))) {
        free(ib);
        return NULL;
    }
    pthread_mutex_init(&ib->mu, NULL);
    pthread_cond_init(&ib->news_cond, NULL);
    int rc = icn_thread_start_quiet(&ib->thread, run, ib);
    if (rc) {
        icn_errf(err, errlen, "cannot start the snapshot thread: %s", strerror(rc));
        icn_zmq_close(ib->sub);
        pthread_mutex_destroy(&ib->mu), pthread_cond_destroy(&ib->news_cond);
        free(ib);
        return NULL;
    }
    return ib;
}

int icn_inbox_ready(icn_inbox *ib) { return atomic_load_explicit(&ib->ready, memory_order_relaxed); }

int icn_inbox_quiet(icn_inbox *ib) {
    double heard = atomic_load_explicit(&ib->heard, memory_order_relaxed);
    return heard > 0 && icn_now() - heard > atomic_load_explicit(&ib->quiet_s, memory_order_relaxed);
}

int icn_inbox_wait(icn_inbox *ib, int timeout_ms) {
    if (atomic_load(&ib->ready)) return 1;
    struct timespec at;
    icn_deadline_in(&at, timeout_ms);
    pthread_mutex_lock(&ib->mu);
    while (!atomic_load(&ib->ready))
        if (pthread_cond_timedwait(&ib->news_cond, &ib->mu, &at) == ETIMEDOUT) break;
    pthread_mutex_unlock(&ib->mu);
    return atomic_load(&ib->ready);
}

int icn_inbox_take(icn_inbox *ib, icn_inbox_news *news, char *err, size_t errlen) {
    pthread_mutex_lock(&ib->mu);
    int rc = 0;
    if (ib->failed) {
        rc = icn_errf(err, errlen, "%s", ib->err);
        memset(news, 0, sizeof *news);
    } else {
        *news = ib->news;
        /* the model and receipts go to the caller; hold and stop stay as they are */
        ib->news.has_model = 0, ib->news.net = (icn_net){0};
        ib->news.receipts = ib->news.receipts_lost = 0;
        atomic_store(&ib->ready, 0);
    }
    pthread_mutex_unlock(&ib->mu);
    return rc;
}

int64_t icn_inbox_requests(icn_inbox *ib) { return atomic_load(&ib->requests); }

void icn_inbox_close(icn_inbox *ib) {
    if (!ib) return;
    atomic_store(&ib->quit, 1);
    pthread_join(ib->thread, NULL);
    icn_zmq_close(ib->sub), icn_zmq_close(ib->req);
    if (ib->news.has_model) icn_net_free(&ib->news.net);
    pthread_mutex_destroy(&ib->mu), pthread_cond_destroy(&ib->news_cond);
    free(ib);
}
