/* test_inbox.c: the snapshot channel's subscriber thread (lib/inbox.c), this test playing the
 * trainer on an inproc XPUB: a model is received and decoded while nobody asks, its cached copy
 * sent again is ignored, a hold for an older generation is ignored and one for ours is kept
 * until a new model (a restarted trainer's lower generation too), a newer model replaces an
 * untaken one, a frame that does not decode changes nothing, and "stop" is kept. */
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

static void test_inbox(void **state) {
    (void)state;
    char err[2 * ICN_ERRLEN], ep[64];
    snprintf(ep, sizeof ep, "inproc://inbox-%d", (int)getpid());
    void *pub = icn_open_publisher(ep, err, sizeof err);
    assert_non_null(pub);
    icn_net net;
    assert_int_equal(icn_net_build(&net, "c4", 8, 8, 1, 3, err, sizeof err), 0);
    icn_net_init(&net, 1);
    icn_inbox *ib = icn_inbox_open(ep, err, sizeof err);
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
    assert_int_equal(nw.has_model, 0);

    icn_inbox_close(ib);
    icn_net_free(&net);
    icn_zmq_close(pub);
}

int main(void) {
    icn_set_progname("test_inbox");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_inbox)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (rc == 0) icn_zmq_term(); /* after a failed check a socket may be open still: term would wait for it */
    return rc;
}
