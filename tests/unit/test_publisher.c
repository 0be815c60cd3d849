/* test_publisher.c: the snapshot channel's sending end (lib/publisher.c) on inproc sockets,
 * this test playing the synthesizers: heartbeats come every second from the start, naming the
 * newest generation, the run's state and the request endpoint; a snapshot is sent once to every
 * subscriber; subscribers that come and go make nothing be sent again; a request is answered
 * with the newest snapshot to the asker alone, and a second one within the gap is dropped;
 * "hold" and "stop" are sent once and stay in every heartbeat after them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "net.h"
#include "protocol.h"
#include "publisher.h"
#include "snapshot.h"
#include "transport.h"
#include "util.h"

/* The next frame on sock within timeout_ms, decoded into *m (icn_msg_free it): 1, else 0. */
static int next_on(void *sock, int timeout_ms, icn_msg *m) {
    char err[ICN_ERRLEN];
    icn_zmq_frame f;
    int r = icn_zmq_recv_frame(sock, &f, timeout_ms, err, sizeof err);
    if (r == 1) assert_int_equal(icn_msg_decode(f.data, f.len, ICN_SNAPSHOT_KINDS, 0, m, err, sizeof err), 0);
    icn_zmq_frame_close(&f);
    return r == 1;
}

/* The next frame that is not a heartbeat; *beat gets the last heartbeat seen on the way. */
static int next_not_heartbeat(void *sock, int timeout_ms, icn_msg *m, icn_msg *beat) {
    for (double t0 = icn_now(); icn_now() - t0 < timeout_ms / 1000.0;) {
        if (!next_on(sock, 50, m)) continue;
        if (m->kind != ICN_MSG_HEARTBEAT) return 1;
        if (beat) *beat = *m;
        icn_msg_free(m);
    }
    return 0;
}

static void *plain_sub(const char *ep) { /* no CONFLATE: every frame is seen */
    char err[ICN_ERRLEN];
    void *s = icn_zmq_open_with(ZMQ_SUB, ep, 0, &(icn_zmq_opts){0}, err, sizeof err);
    assert_non_null(s);
    return s;
}

static void ask(void *dealer) {
    char err[ICN_ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_snapshot_request(&sb);
    assert_int_equal(icn_zmq_send_sbuffer(dealer, &sb, err, sizeof err), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void test_publisher(void **state) {
    (void)state;
    char err[ICN_ERRLEN], ep[64];
    snprintf(ep, sizeof ep, "inproc://pub-%d", (int)getpid());
    icn_publisher *p = icn_publisher_open(ep, NULL, NULL, err, sizeof err);
    assert_non_null(p);
    char want_req[80];
    snprintf(want_req, sizeof want_req, "%s.req", ep);
    assert_string_equal(icn_publisher_requests(p), want_req);
    icn_net net;
    assert_int_equal(icn_net_build(&net, "c4", 8, 8, 1, 3, err, sizeof err), 0);
    icn_net_init(&net, 1);
    icn_model_meta meta = {.head = ICN_HEAD_SOFTMAX};
    icn_msg m, beat = {0};

    /* before any snapshot: heartbeats, generation -1, running, naming the request endpoint */
    void *early = plain_sub(ep);
    assert_true(next_on(early, 2500, &m));
    assert_int_equal(m.kind, ICN_MSG_HEARTBEAT);
    assert_int_equal(m.generation, -1);
    assert_int_equal(m.state, ICN_RUN_RUNNING);
    assert_int_equal(m.interval_ms, ICN_HEARTBEAT_MS);
    assert_string_equal(m.endpoint, want_req);
    icn_msg_free(&m);

    /* a snapshot, once; the heartbeats after it name its generation */
    meta.generation = 2;
    assert_int_equal(icn_publisher_snapshot(p, &net, &meta, err, sizeof err), 0);
    assert_true(next_not_heartbeat(early, 2000, &m, NULL));
    assert_int_equal(m.kind, ICN_MSG_MODEL);
    assert_int_equal(m.meta.generation, 2);
    icn_msg_free(&m);
    assert_true(next_on(early, 2500, &m));
    assert_int_equal(m.kind, ICN_MSG_HEARTBEAT);
    assert_int_equal(m.generation, 2);
    icn_msg_free(&m);

    /* subscribers that come and go (issue 24, item 4): nothing but heartbeats reaches the others */
    for (int i = 0; i < 50; i++) icn_zmq_close(plain_sub(ep));
    assert_false(next_not_heartbeat(early, 1500, &m, NULL));

    /* a late joiner asks: the snapshot comes to it alone; asking again at once is dropped */
    void *dealer = icn_open_snapshot_requester(want_req, 0, err, sizeof err);
    assert_non_null(dealer);
    usleep(50 * 1000); /* the connection first (the request would wait for it anyway) */
    ask(dealer);
    assert_true(next_on(dealer, 2000, &m));
    assert_int_equal(m.kind, ICN_MSG_MODEL);
    assert_int_equal(m.meta.generation, 2);
    assert_memory_equal(m.net.params, net.params, net.n_params * sizeof(float));
    icn_msg_free(&m);
    ask(dealer);
    assert_false(next_on(dealer, 500, &m));
    assert_false(next_not_heartbeat(early, 300, &m, NULL)); /* nobody else got it */
    icn_publisher_counts c = icn_publisher_counts_of(p);
    assert_int_equal(c.published, 1);
    assert_int_equal(c.replies, 1);
    assert_int_equal(c.dropped, 1);
    assert_true(c.heartbeats >= 2);
    /* a frame that is not a request is dropped too */
    assert_int_equal(icn_zmq_send(dealer, "junk", 4, err, sizeof err), 0);
    for (double t0 = icn_now(); icn_publisher_counts_of(p).dropped < 2 && icn_now() - t0 < 2;) usleep(10 * 1000);
    assert_int_equal(icn_publisher_counts_of(p).dropped, 2);

    /* "hold" once, then in every heartbeat; "stop" likewise ("finished"); a request after the
     * end is answered with a heartbeat saying so */
    assert_int_equal(icn_publisher_control(p, ICN_MSG_HOLD, 2, err, sizeof err), 0);
    assert_true(next_not_heartbeat(early, 2000, &m, NULL));
    assert_int_equal(m.kind, ICN_MSG_HOLD);
    assert_int_equal(m.generation, 2);
    icn_msg_free(&m);
    assert_true(next_on(early, 2500, &m));
    assert_int_equal(m.kind, ICN_MSG_HEARTBEAT);
    assert_int_equal(m.state, ICN_RUN_HOLD);
    icn_msg_free(&m);
    assert_int_equal(icn_publisher_control(p, ICN_MSG_STOP, 2, err, sizeof err), 0);
    assert_true(next_not_heartbeat(early, 2000, &m, NULL));
    assert_int_equal(m.kind, ICN_MSG_STOP);
    icn_msg_free(&m);
    assert_true(next_on(early, 2500, &m));
    assert_int_equal(m.kind, ICN_MSG_HEARTBEAT);
    assert_int_equal(m.state, ICN_RUN_FINISHED);
    icn_msg_free(&m);
    usleep((ICN_SNAPSHOT_REQUEST_GAP_MS + 100) * 1000);
    ask(dealer);
    assert_true(next_on(dealer, 2000, &m));
    assert_int_equal(m.kind, ICN_MSG_HEARTBEAT);
    assert_int_equal(m.state, ICN_RUN_FINISHED);
    icn_msg_free(&m);
    (void)beat;

    icn_zmq_close(dealer), icn_zmq_close(early);
    icn_publisher_close(p);
    icn_net_free(&net);
}

/* The request socket's default endpoint: a kernel-picked port on the PUB's host for tcp. */
static void test_requests_default(void **state) {
    (void)state;
    char out[ICN_ENDPOINT_LEN];
    icn_snapshot_requests_default("tcp://127.0.0.1:5560", out, sizeof out);
    assert_string_equal(out, "tcp://127.0.0.1:*");
    icn_snapshot_requests_default("tcp://*:5560", out, sizeof out);
    assert_string_equal(out, "tcp://*:*");
    icn_snapshot_requests_default("ipc:///tmp/snap", out, sizeof out);
    assert_string_equal(out, "ipc:///tmp/snap.req");
}

int main(void) {
    icn_set_progname("test_publisher");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_publisher), cmocka_unit_test(test_requests_default)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (rc == 0) icn_zmq_term();
    return rc;
}
