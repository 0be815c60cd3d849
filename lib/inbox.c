/* inbox.c: the snapshot channel's subscriber thread (inbox.h). */
#include "inbox.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol.h"
#include "transport.h"
#include "util.h"

#define MODEL_MARGIN 65536 /* bytes a snapshot may grow by over the first one (metadata) */
#define RECV_MS 100        /* the thread looks at its stop flag this often */

struct icn_inbox {
    const char *endpoint;
    void *sub;       /* the thread's */
    int64_t sub_max; /* the subscription's MAXMSGSIZE (0: the frame limit) */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t news_cond;
    atomic_int ready; /* something for the next take, or failed */
    atomic_int quit;
    /* under mu */
    icn_inbox_news news; /* what the next take returns */
    int have;            /* a model has arrived: newest_* are set */
    int64_t newest_gen;
    size_t newest_params;
    int failed;
    char err[ICN_ERRLEN];
};

/* Keep what the decoded message m changes (under mu); m's net becomes the inbox's when kept. */
static void keep(icn_inbox *ib, icn_msg *m, size_t bytes, double at) {
    icn_inbox_news *nw = &ib->news;
    if (m->kind == ICN_MSG_STOP) {
        nw->stop = 1;
    } else if (m->kind == ICN_MSG_HOLD) {
        /* a hold for an older generation than our newest model is not ours any more */
        if (!ib->have || m->generation < ib->newest_gen || m->generation <= nw->hold) return;
        nw->hold = m->generation;
    } else {
        if (ib->have && m->meta.generation == ib->newest_gen && m->net.n_params == ib->newest_params)
            return; /* the publisher's cache, re-sent for a new subscriber */
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
    }
    atomic_store(&ib->ready, 1);
    pthread_cond_broadcast(&ib->news_cond);
}

/* One frame, if one comes within RECV_MS. 0: fine (a refused frame included); -1: the socket. */
static int receive(icn_inbox *ib, char *err, size_t errlen) {
    icn_zmq_frame f; /* decoded where ZeroMQ received it: no copy of the 17 MB frame */
    char e[ICN_ERRLEN];
    int got = icn_zmq_recv_frame(ib->sub, &f, RECV_MS, e, sizeof e);
    if (got <= 0) {
        int why = errno;
        icn_zmq_frame_close(&f);
        if (got == 0) return 0;
        if (why == EPROTO) return icn_warn("rejected snapshot frame: %s", e), 0;
        return icn_errf(err, errlen, "snapshots %s: %s", ib->endpoint, e);
    }
    size_t n = f.len;
    icn_msg m;
    int bad = icn_msg_decode(f.data, f.len, ICN_SNAPSHOT_KINDS, 0, &m, e, sizeof e);
    icn_zmq_frame_close(&f);
    if (bad) return icn_warn("rejected snapshot frame: %s", e), 0;
    double at = icn_wallclock();
    int first_model = m.kind == ICN_MSG_MODEL && !ib->sub_max;
    pthread_mutex_lock(&ib->mu);
    keep(ib, &m, n, at);
    pthread_mutex_unlock(&ib->mu);
    icn_msg_free(&m);
    if (first_model) { /* now the model's size is known: no frame may be larger */
        icn_zmq_close(ib->sub);
        ib->sub_max = (int64_t)n + MODEL_MARGIN;
        if (!(ib->sub = icn_open_subscriber(ib->endpoint, ib->sub_max, err, errlen))) return -1;
    }
    return 0;
}

static void *run(void *arg) {
    icn_inbox *ib = arg;
    char err[ICN_ERRLEN] = "";
    while (!atomic_load(&ib->quit))
        if (receive(ib, err, sizeof err)) {
            pthread_mutex_lock(&ib->mu);
            snprintf(ib->err, sizeof ib->err, "%s", err);
            ib->failed = 1;
            atomic_store(&ib->ready, 1);
            pthread_cond_broadcast(&ib->news_cond);
            pthread_mutex_unlock(&ib->mu);
            break;
        }
    return NULL;
}

icn_inbox *icn_inbox_open(const char *endpoint, char *err, size_t errlen) {
    icn_keep_freed_memory(); /* each snapshot received and decoded reuses the last one's pages */
    icn_inbox *ib = xcalloc(1, sizeof *ib);
    ib->endpoint = endpoint;
    ib->news.hold = -1;
    if (!(ib->sub = icn_open_subscriber(endpoint, 0, err, errlen))) {
        free(ib);
        return NULL;
    }
    pthread_mutex_init(&ib->mu, NULL);
    pthread_cond_init(&ib->news_cond, NULL);
    /* signals go to the caller's thread, which owns the stop flag */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&ib->thread, NULL, run, ib);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
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

void icn_inbox_close(icn_inbox *ib) {
    if (!ib) return;
    atomic_store(&ib->quit, 1);
    pthread_join(ib->thread, NULL);
    if (ib->sub) icn_zmq_close(ib->sub);
    if (ib->news.has_model) icn_net_free(&ib->news.net);
    pthread_mutex_destroy(&ib->mu), pthread_cond_destroy(&ib->news_cond);
    free(ib);
}
