/* publisher.c: the snapshot channel's last-value cache (lib/publisher.h). */
#include "publisher.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "transport.h"
#include "util.h"

struct icn_publisher {
    void *sock;
    icn_metrics *metrics;
    icn_shared *snapshot;   /* the newest snapshot, packed once (NULL before the first) */
    int64_t generation;     /* its generation */
    msgpack_sbuffer control; /* the control frame sent after it (size 0: none) */
    icn_msg_kind control_kind;
    int owed;               /* subscriptions came that the cache has not answered yet */
    int64_t subscriptions;  /* since the last resend */
    int64_t all_subscriptions;
    double last_resend;
    int64_t resends;
};

icn_publisher *icn_publisher_open(const char *endpoint, icn_metrics *metrics, char *err, size_t errlen) {
    icn_keep_freed_memory(); /* a snapshot packed each round reuses the last one's pages */
    void *sock = icn_open_publisher(endpoint, err, errlen);
    if (!sock) return NULL;
    icn_publisher *p = xcalloc(1, sizeof *p);
    p->sock = sock, p->metrics = metrics;
    msgpack_sbuffer_init(&p->control);
    p->last_resend = -1e9;
    return p;
}

/* Take every subscription waiting on the socket off it, without waiting; count them. */
static int drain(icn_publisher *p, int timeout_ms, char *err, size_t errlen) {
    for (int wait = timeout_ms;; wait = 0) {
        icn_zmq_frame f;
        int r = icn_zmq_recv_frame(p->sock, &f, wait, err, errlen);
        int e = errno;
        if (r == 1 && f.len >= 1 && f.data[0] == 1) p->owed = 1, p->subscriptions++, p->all_subscriptions++; /* 0: an unsubscription */
        icn_zmq_frame_close(&f);
        if (r == 0) return 0;
        if (r < 0 && e != EPROTO) return -1; /* EPROTO: a multipart frame, taken off and ignored */
    }
}

static int send_control(icn_publisher *p, char *err, size_t errlen) {
    return icn_zmq_send(p->sock, p->control.data, p->control.size, err, errlen);
}

/* The cache, to every subscriber (those that have it ignore it). */
static int resend(icn_publisher *p, char *err, size_t errlen) {
    p->owed = 0;
    p->last_resend = icn_now();
    if (!p->snapshot && !p->control.size) return 0;
    int only_stop = p->control.size && p->control_kind == ICN_MSG_STOP;
    if (p->snapshot && !only_stop && icn_zmq_send_shared(p->sock, p->snapshot, err, errlen)) return -1;
    if (p->control.size && send_control(p, err, errlen)) return -1;
    p->resends++;
    icn_metrics_printf(p->metrics,
                       "{\"event\":\"resend\",\"generation\":%lld,\"time\":%.6f,\"subscriptions\":%lld,\"control\":\"%s\"}",
                       (long long)p->generation, icn_wallclock(), (long long)p->subscriptions,
                       p->control.size ? icn_msg_kind_name(p->control_kind) : "");
    p->subscriptions = 0;
    return 0;
}

int icn_publisher_snapshot(icn_publisher *p, const icn_net *net, const icn_model_meta *meta, char *err, size_t errlen) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_model_pack(&sb, net, meta, NULL);
    size_t bytes = sb.size;
    icn_shared *s = icn_shared_take(msgpack_sbuffer_release(&sb), bytes);
    /* whoever has subscribed so far is in ZeroMQ's list: this send reaches them all */
    if (drain(p, 0, err, errlen)) {
        icn_shared_release(s);
        return -1;
    }
    icn_shared_release(p->snapshot);
    p->snapshot = s, p->generation = meta->generation;
    p->control.size = 0, p->owed = 0, p->subscriptions = 0;
    double t = icn_wallclock();
    int rc = icn_zmq_send_shared(p->sock, s, err, errlen);
    icn_metrics_printf(p->metrics, "{\"event\":\"publish\",\"generation\":%lld,\"time\":%.6f,\"bytes\":%zu}",
                       (long long)meta->generation, t, bytes);
    return rc;
}

int icn_publisher_control(icn_publisher *p, icn_msg_kind hold_or_stop, int64_t generation, char *err, size_t errlen) {
    /* subscriptions still owed an answer get the snapshot and this frame later, from the cache
     * (not now: with SNDHWM 2, three frames in a row could crowd the next snapshot out) */
    if (drain(p, 0, err, errlen)) return -1;
    p->control.size = 0;
    icn_pack_control(&p->control, hold_or_stop, generation);
    p->control_kind = hold_or_stop;
    return send_control(p, err, errlen);
}

int icn_publisher_serve(icn_publisher *p, int timeout_ms, char *err, size_t errlen) {
    int64_t before = p->all_subscriptions;
    double end = icn_now() + timeout_ms / 1000.0;
    for (;;) {
        double now = icn_now(), gap_end = p->last_resend + ICN_RESEND_GAP_MS / 1000.0;
        if (p->owed && now >= gap_end) {
            if (resend(p, err, errlen)) return -1;
            continue;
        }
        double until = p->owed && gap_end < end ? gap_end : end;
        int wait = until > now ? (int)ceil((until - now) * 1000) : 0;
        if (drain(p, wait, err, errlen)) return -1;
        if (errno == EINTR) break; /* a signal: the caller looks at its flag */
        if (icn_now() >= end && !(p->owed && icn_now() >= gap_end)) break;
    }
    return (int)(p->all_subscriptions - before);
}

int icn_publisher_resend(icn_publisher *p, char *err, size_t errlen) {
    if (drain(p, 0, err, errlen)) return -1;
    return resend(p, err, errlen);
}

int64_t icn_publisher_resends(const icn_publisher *p) { return p->resends; }

void icn_publisher_close(icn_publisher *p) {
    if (!p) return;
    icn_zmq_close(p->sock);
    icn_shared_release(p->snapshot); /* ZeroMQ may still hold its own references */
    msgpack_sbuffer_destroy(&p->control);
    free(p);
}
