/* test_inbox.c: the snapshot channel's subscriber thread (lib/inbox.c), this test playing the
 * trainer on an inproc XPUB (to see the inbox subscribe) and ROUTER: a model is received and
 * decoded while nobody asks, a copy sent again is ignored, a hold for an older generation is
 * ignored and one for ours is kept until a new model (a restarted trainer's lower generation
 * too), a newer model replaces an untaken one, a frame that does not decode changes nothing,
 * and "stop" is kept; a heartbeat naming a generation the inbox lacks makes it ask on the
 * ROUTER and keep the reply, one saying "hold" holds, one saying "finished" ends the run, and
 * a trainer silent after its heartbeats is first quiet, then gone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "inbox.h"
#include "net.h"
#include "snapshot_sender.h"
#include "protocol.h"
#include "snapshot.h"
#include "transport.h"
#include "util.h"

/* The next subscription on the XPUB (the inbox's socket, opened or opened again); an
 * unsubscription on the way (its first socket, closed when it opens the next) is skipped. */
static void await_subscription(void *pub) {
    char err[ICN_ERRLEN];
    for (;;) {
        zmq_msg_t m;
        assert_int_equal(icn_zmq_recv(pub, &m, 5000, err, sizeof err), 1);
        assert_true(zmq_msg_size(&m) >= 1);
        int subscribe = ((const uint8_t *)zmq_msg_data(&m))[0] == 1;
        zmq_msg_close(&m);
        if (subscribe) return;
    }
}

/* What the inbox has next: something must come within 5 s, and the take must succeed. */
static void next_news(icn_inbox *ib, icn_inbox_news *nw) {
    char err[ICN_ERRLEN];
    assert_int_equal(icn_inbox_wait(ib, 5000), 1);
    assert_int_equal(icn_inbox_take(ib, nw, err, sizeof err), 0);
}

/* An XPUB that reports every subscription (the publisher's own PUB reports none). */
static void *open_xpub(const char *ep) {
    char err[ICN_ERRLEN];
    void *pub = icn_zmq_open_with(ZMQ_XPUB, ep, 1, &(icn_zmq_opts){.max_msg = ICN_SMALL_MSG, .xpub_verbose = 1}, err,
                                  sizeof err);
    assert_non_null(pub);
    return pub;
}

/* A heartbeat the trainer sent `age` seconds ago (it waited in a buffer) */
static void heartbeat_aged(void *pub, int64_t generation, icn_run_state state, int64_t interval_ms,
                           const char *requests, double age) {
    char err[ICN_ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_heartbeat(&sb, generation, state, interval_ms, requests, icn_wallclock() - age);
    assert_int_equal(icn_zmq_send_sbuffer(pub, &sb, err, sizeof err), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void heartbeat(void *pub, int64_t generation, icn_run_state state, int64_t interval_ms, const char *requests) {
    heartbeat_aged(pub, generation, state, interval_ms, requests, 0);
}

static void test_the_inbox_keeps_the_newest_model_and_reads_hold_and_stop(void **state) {
    (void)state;
    char err[2 * ICN_ERRLEN], ep[64];
    snprintf(ep, sizeof ep, "inproc://inbox-%d", (int)getpid());
    void *pub = open_xpub(ep);
    icn_net net;
    assert_int_equal(icn_net_build(&net, "c4", 8, 8, 1, 3, err, sizeof err), 0);
    icn_net_init(&net, 1);
    icn_inbox_opts o = {.endpoint = ep};
    icn_inbox *ib = icn_inbox_open(&o, err, sizeof err);
    assert_non_null(ib);
    assert_false(icn_inbox_ready(ib));
    icn_inbox_news nw;

    /* a model, decoded by the thread before anyone takes it */
    await_subscription(pub);
    double before = icn_wallclock();
    publish(pub, &net, 1);
    assert_int_equal(icn_inbox_wait(ib, 5000), 1);
    assert_true(icn_inbox_ready(ib));
    assert_int_equal(icn_inbox_take(ib, &nw, err, sizeof err), 0);
    assert_int_equal(nw.has_model, 1);
    assert_int_equal(nw.meta.generation, 1);
    assert_int_equal(nw.net.n_params, net.n_params);
    assert_memory_equal(nw.net.params, net.params, (size_t)net.n_params * sizeof(float));
    assert_int_equal(nw.receipts, 1);
    assert_int_equal(nw.receipt[0].generation, 1);
    assert_true(nw.receipt[0].time >= before && nw.receipt[0].bytes > (size_t)net.n_params * 4);
    assert_int_equal(nw.hold, -1);
    assert_int_equal(nw.stop, 0);
    assert_false(icn_inbox_ready(ib));
    icn_net_free(&nw.net);

    /* the subscription opened again with the model's size known; the cache's copy is ignored,
     * and so is a hold for an older generation */
    await_subscription(pub);
    publish(pub, &net, 1);
    control(pub, ICN_MSG_HOLD, 0);
    assert_int_equal(icn_inbox_wait(ib, 300), 0);
    control(pub, ICN_MSG_HOLD, 1);
    next_news(ib, &nw);
    assert_int_equal(nw.has_model, 0);
    assert_int_equal(nw.receipts, 0);
    assert_int_equal(nw.hold, 1);

    /* two new generations: the newest is what a take gets, each one with its receipt */
    publish(pub, &net, 2);
    assert_int_equal(icn_inbox_wait(ib, 5000), 1);
    publish(pub, &net, 3);
    int64_t seen[4] = {0}, got = 0, last = 0;
    for (double t0 = icn_now(); last != 3 && icn_now() - t0 < 5;) {
        if (!icn_inbox_wait(ib, 100)) continue;
        assert_int_equal(icn_inbox_take(ib, &nw, err, sizeof err), 0);
        for (int i = 0; i < nw.receipts && got < 4; i++) seen[got++] = nw.receipt[i].generation;
        if (nw.has_model) last = nw.meta.generation, icn_net_free(&nw.net);
    }
    assert_int_equal(last, 3);
    assert_int_equal(got, 2);
    assert_int_equal(seen[0], 2);
    assert_int_equal(seen[1], 3);
    assert_int_equal(nw.hold, -1); /* the hold was generation 1's */

    /* a hold is kept across takes until a new model: also a restarted trainer's lower generation */
    control(pub, ICN_MSG_HOLD, 3);
    next_news(ib, &nw);
    assert_int_equal(nw.hold, 3);
    publish(pub, &net, 1);
    next_news(ib, &nw);
    assert_int_equal(nw.has_model, 1);
    assert_int_equal(nw.meta.generation, 1);
    assert_int_equal(nw.hold, -1);
    icn_net_free(&nw.net);

    /* a frame that does not decode: refused, nothing new */
    char err2[ICN_ERRLEN];
    assert_int_equal(icn_zmq_send(pub, "junk", 4, err2, sizeof err2), 0);
    assert_int_equal(icn_inbox_wait(ib, 300), 0);

    control(pub, ICN_MSG_STOP, 1);
    next_news(ib, &nw);
    assert_int_equal(nw.stop, 1);
    assert_non_null(strstr(nw.why, "said stop"));
    assert_int_equal(nw.has_model, 0);

    icn_inbox_close(ib);
    icn_net_free(&net);
    icn_zmq_close(pub);
}

/* This test's trainer for the Clone pattern: its XPUB on inproc://inbox-NAME-PID, its snapshot
 * ROUTER on that endpoint plus ".req", and a 3-class net to send. */
typedef struct {
    char ep[64], req_ep[80];
    void *pub, *router;
    icn_net net;
} clone_rig;

static void clone_rig_open(clone_rig *r, const char *name) {
    char err[2 * ICN_ERRLEN];
    snprintf(r->ep, sizeof r->ep, "inproc://inbox-%s-%d", name, (int)getpid());
    snprintf(r->req_ep, sizeof r->req_ep, "%s.req", r->ep);
    r->pub = open_xpub(r->ep);
    r->router = icn_open_snapshot_router(r->req_ep, err, sizeof err);
    assert_non_null(r->router);
    assert_int_equal(icn_net_build(&r->net, "c4", 8, 8, 1, 3, err, sizeof err), 0);
    icn_net_init(&r->net, 1);
}

static void clone_rig_close(clone_rig *r) {
    icn_net_free(&r->net);
    icn_zmq_close(r->router);
    icn_zmq_close(r->pub);
}

/* The ROUTER's answer to a request from `from`: the net as generation g. */
static void answer(clone_rig *r, const icn_zmq_peer *from, int64_t g) {
    char err[ICN_ERRLEN];
    icn_model_meta meta = {.generation = g, .head = ICN_HEAD_SOFTMAX};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_model_pack(&sb, &r->net, &meta, NULL);
    assert_int_equal(icn_zmq_send_to(r->router, from, sb.data, sb.size, err, sizeof err), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* The Clone pattern's late joiner, and the trainer's liveness as its heartbeats tell it. */
static void test_the_inbox_asks_for_the_snapshot_a_heartbeat_names(void **state) {
    (void)state;
    char err[2 * ICN_ERRLEN];
    clone_rig r;
    clone_rig_open(&r, "hb");
    void *pub = r.pub, *router = r.router;
    const char *req_ep = r.req_ep;
    icn_inbox_opts o = {.endpoint = r.ep, .liveness_s = 1};
    icn_inbox *ib = icn_inbox_open(&o, err, sizeof err);
    assert_non_null(ib);
    icn_inbox_news nw;
    await_subscription(pub);

    /* nothing heard yet: never quiet, never gone (a worker may start before its trainer) */
    usleep(1300 * 1000);
    assert_false(icn_inbox_quiet(ib));
    assert_false(icn_inbox_ready(ib));

    /* a heartbeat with no snapshot yet asks for nothing; one naming generation 4 makes the inbox
     * ask the ROUTER it names; the reply is kept like a published model */
    heartbeat(pub, -1, ICN_RUN_RUNNING, 100, req_ep);
    icn_zmq_peer from;
    uint8_t *data;
    size_t len;
    assert_int_equal(icn_zmq_recv_buf(router, &from, 150, &data, &len, err, sizeof err), 0);
    assert_false(icn_inbox_quiet(ib));
    int got = 0;
    for (double t0 = icn_now(); !got && icn_now() - t0 < 5;) { /* the DEALER connects, then asks */
        heartbeat(pub, 4, ICN_RUN_RUNNING, 100, req_ep);
        got = icn_zmq_recv_buf(router, &from, 100, &data, &len, err, sizeof err) == 1;
    }
    assert_true(got);
    icn_msg m;
    assert_int_equal(icn_msg_decode(data, len, ICN_MSG_SNAPSHOT_REQUEST, 0, &m, err, sizeof err), 0);
    free(data);
    for (double t0 = icn_now(); icn_inbox_requests(ib) < 1 && icn_now() - t0 < 1;) usleep(1000); /* counted after the send */
    assert_int_equal(icn_inbox_requests(ib), 1);
    answer(&r, &from, 4);
    next_news(ib, &nw);
    assert_int_equal(nw.has_model, 1);
    assert_int_equal(nw.meta.generation, 4);
    icn_net_free(&nw.net);
    /* heartbeats for the generation held ask nothing more, and change nothing */
    for (int i = 0; i < 5; i++) heartbeat(pub, 4, ICN_RUN_RUNNING, 100, req_ep), usleep(50 * 1000);
    assert_false(icn_inbox_ready(ib));
    assert_int_equal(icn_zmq_recv_buf(router, &from, 100, &data, &len, err, sizeof err), 0);
    assert_int_equal(icn_inbox_requests(ib), 1);

    /* a heartbeat in state "hold" for our generation holds; quiet after three silent intervals */
    heartbeat(pub, 4, ICN_RUN_HOLD, 100, req_ep);
    next_news(ib, &nw);
    assert_int_equal(nw.hold, 4);
    assert_int_equal(nw.stop, 0);
    usleep(400 * 1000);
    assert_true(icn_inbox_quiet(ib));
    heartbeat(pub, 4, ICN_RUN_HOLD, 100, req_ep);
    for (double t0 = icn_now(); icn_inbox_quiet(ib) && icn_now() - t0 < 5;) usleep(10 * 1000);
    assert_false(icn_inbox_quiet(ib));

    /* silent for liveness_s (1 s) after that: gone */
    double t0 = icn_now();
    next_news(ib, &nw);
    assert_int_equal(nw.stop, 2);
    assert_true(icn_now() - t0 >= 0.9);
    assert_non_null(strstr(nw.why, "no word from the trainer at inproc://inbox-hb-"));
    icn_inbox_close(ib);

    /* a new inbox: a heartbeat saying "finished" ends the run at once */
    ib = icn_inbox_open(&o, err, sizeof err);
    assert_non_null(ib);
    await_subscription(pub);
    heartbeat(pub, 4, ICN_RUN_FINISHED, 100, req_ep);
    next_news(ib, &nw);
    assert_int_equal(nw.stop, 1);
    assert_non_null(strstr(nw.why, "finished"));
    icn_inbox_close(ib);
    clone_rig_close(&r);
}

/* A snapshot request's reply can cross a newer publication (the ROUTER's answer and the PUB's
 * stream are two sockets, in no order between them): a reply older than the newest model is
 * stale and ignored, where taking it would send synthesis back a generation (and a synthesizer
 * that took a generation twice made the same images again). A newer reply is kept. */
static void test_a_reply_that_crossed_a_newer_publication_is_ignored(void **state) {
    (void)state;
    char err[2 * ICN_ERRLEN];
    clone_rig r;
    clone_rig_open(&r, "cross");
    icn_inbox_opts o = {.endpoint = r.ep};
    icn_inbox *ib = icn_inbox_open(&o, err, sizeof err);
    assert_non_null(ib);
    icn_inbox_news nw;
    await_subscription(r.pub);
    publish(r.pub, &r.net, 4);
    next_news(ib, &nw);
    assert_int_equal(nw.meta.generation, 4);
    icn_net_free(&nw.net);
    await_subscription(r.pub); /* opened again, the model's size known */

    /* a heartbeat names generation 6: the inbox asks; generation 6 is published meanwhile */
    icn_zmq_peer from;
    uint8_t *data;
    size_t len;
    int asked = 0;
    for (double t0 = icn_now(); !asked && icn_now() - t0 < 5;) {
        heartbeat(r.pub, 6, ICN_RUN_RUNNING, 100, r.req_ep);
        asked = icn_zmq_recv_buf(r.router, &from, 100, &data, &len, err, sizeof err) == 1;
    }
    assert_true(asked);
    free(data);
    publish(r.pub, &r.net, 6);
    next_news(ib, &nw);
    assert_int_equal(nw.meta.generation, 6);
    icn_net_free(&nw.net);

    /* the answer that crossed it, generation 5: ignored; then a newer one, 7: kept, alone */
    answer(&r, &from, 5);
    assert_int_equal(icn_inbox_wait(ib, 300), 0);
    answer(&r, &from, 7);
    next_news(ib, &nw);
    assert_int_equal(nw.has_model, 1);
    assert_int_equal(nw.meta.generation, 7);
    assert_int_equal(nw.receipts, 1);
    assert_int_equal(nw.receipt[0].generation, 7);
    icn_net_free(&nw.net);
    icn_inbox_close(ib);
    clone_rig_close(&r);
}

/* Heartbeats that waited in a socket buffer while this process was stopped (or the link was
 * down) count from when they were sent, however many of them come: after 3 s of silence (every
 * 200 ms, quiet after 0.6 s), 20 that were sent 2.95 to 2 s ago leave the trainer quiet; a
 * fresh one ends that at once. */
static void test_heartbeats_that_waited_in_a_buffer_do_not_pass_for_fresh(void **state) {
    (void)state;
    char err[2 * ICN_ERRLEN], ep[64];
    snprintf(ep, sizeof ep, "inproc://inbox-aged-%d", (int)getpid());
    void *pub = open_xpub(ep);
    icn_inbox_opts o = {.endpoint = ep, .liveness_s = 60};
    icn_inbox *ib = icn_inbox_open(&o, err, sizeof err);
    assert_non_null(ib);
    await_subscription(pub);
    for (int i = 0; i < 3; i++) heartbeat(pub, -1, ICN_RUN_RUNNING, 200, "inproc://nowhere"), usleep(50 * 1000);
    int quiet_at_first = icn_inbox_quiet(ib);
    usleep(3000 * 1000);
    int quiet_after_silence = icn_inbox_quiet(ib);
    for (int i = 0; i < 20; i++) heartbeat_aged(pub, -1, ICN_RUN_RUNNING, 200, "inproc://nowhere", 2.95 - 0.05 * i);
    usleep(250 * 1000); /* the inbox's thread has read them (it looks every 100 ms at most) */
    int quiet_after_aged = icn_inbox_quiet(ib);
    heartbeat(pub, -1, ICN_RUN_RUNNING, 200, "inproc://nowhere");
    int fresh_again = 0;
    for (double t0 = icn_now(); !fresh_again && icn_now() - t0 < 2;) fresh_again = !icn_inbox_quiet(ib), usleep(10 * 1000);
    icn_inbox_close(ib);
    icn_zmq_close(pub);
    assert_false(quiet_at_first);
    assert_true(quiet_after_silence);
    assert_true(quiet_after_aged);
    assert_true(fresh_again);
}

int main(void) {
    icn_set_progname("test_inbox");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_inbox_keeps_the_newest_model_and_reads_hold_and_stop),
        cmocka_unit_test(test_the_inbox_asks_for_the_snapshot_a_heartbeat_names),
        cmocka_unit_test(test_a_reply_that_crossed_a_newer_publication_is_ignored),
        cmocka_unit_test(test_heartbeats_that_waited_in_a_buffer_do_not_pass_for_fresh),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (rc == 0) icn_zmq_term(); /* after a failed check a socket may be open still: term would wait for it */
    return rc;
}
