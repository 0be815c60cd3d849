/* test_online.c: the online synthesizer's loop (lib/online.c) driven over inproc sockets by
 * this test playing trainer (lib/publisher.h: one snapshot, then "stop") and pool (ROUTER:
 * acks, except the first answer to one batch, which is lost): every class gets its quota once, the lost
 * answer's batch comes again and is acknowledged, and the loop ends on "stop". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "online.h"
#include "protocol.h"
#include "publisher.h"
#include "snapshot.h"
#include "transport.h"
#include "util.h"

typedef struct {
    icn_online_opts o;
    icn_online_result res;
    int rc, done;
    char err[2 * ICN_ERRLEN];
} worker;

static void *run_worker(void *arg) {
    worker *w = arg;
    w->rc = icn_synthesize_online(&w->o, &w->res, w->err, sizeof w->err);
    __atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_online_loop(void **state) {
    (void)state;
    char err[2 * ICN_ERRLEN], snap[64], intake[64];
    snprintf(snap, sizeof snap, "inproc://online-snap-%d", (int)getpid());
    snprintf(intake, sizeof intake, "inproc://online-intake-%d", (int)getpid());
    icn_publisher *pub = icn_publisher_open(snap, NULL, err, sizeof err);
    void *router = icn_open_intake(intake, icn_intake_max_bytes(8, 8, 1), err, sizeof err);
    assert_non_null(pub);
    assert_non_null(router);
    icn_net net;
    assert_int_equal(icn_net_build(&net, "c4", 8, 8, 1, 3, err, sizeof err), 0);
    icn_net_init(&net, 1);

    worker w = {0};
    icn_online_opts_default(&w.o);
    w.o.snapshots = snap, w.o.pool = intake;
    w.o.batch = 2, w.o.chunk_batches = 1, w.o.max_per_gen = 4, w.o.id = 7, w.o.seed = 3, w.o.quiet = 1;
    w.o.synth.max_steps = 3;
    w.o.resend_ms = 200, w.o.drain_ms = 3000;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_worker, &w), 0);

    /* the trainer publishes its snapshot once (the cache answers the worker's subscriptions,
     * the first one and the one it opens once it knows the model's size); the pool acks */
    icn_model_meta meta = {.generation = 1, .head = ICN_HEAD_SOFTMAX};
    assert_int_equal(icn_publisher_snapshot(pub, &net, &meta, err, sizeof err), 0);
    int64_t per_class[3] = {0}, batches = 0, dropped = 0, stored_images = 0;
    uint64_t last_seq = 0;
    double t0 = icn_now();
    while (stored_images < 12 && icn_now() - t0 < 30) {
        assert_true(icn_publisher_serve(pub, 0, err, sizeof err) >= 0);
        icn_zmq_peer from;
        uint8_t *data;
        size_t len;
        if (icn_zmq_recv_buf(router, &from, 20, &data, &len, err, sizeof err) != 1) continue;
        icn_msg m;
        assert_int_equal(icn_msg_decode(data, len, ICN_MSG_BATCH, 1, &m, err, sizeof err), 0);
        free(data);
        assert_string_equal(from.user, "local");
        batches++;
        if (m.seq > last_seq) { /* a new batch: store it (a pool keeps the highest seq per producer) */
            assert_int_equal(m.seq, last_seq + 1); /* in order */
            last_seq = m.seq;
            for (int32_t i = 0; i < m.batch.n; i++) {
                int k = -m.batch.y[i] - 1;
                assert_true(k >= 0 && k < 3);
                per_class[k]++;
                assert_int_equal(m.batch.prov[i].generation, 1);
                assert_int_equal(m.batch.prov[i].producer, 7);
            }
            stored_images += m.batch.n;
        }
        if (m.seq == 2 && !dropped++) { /* the first answer to batch 2 is lost */
            icn_msg_free(&m);
            continue;
        }
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        icn_pack_ack(&sb, m.producer, m.seq);
        assert_int_equal(icn_zmq_send_to(router, &from, sb.data, sb.size, err, sizeof err), 0);
        msgpack_sbuffer_destroy(&sb);
        icn_msg_free(&m);
    }
    assert_int_equal(stored_images, 12);
    for (int k = 0; k < 3; k++) assert_int_equal(per_class[k], 4); /* max_per_gen, once each */
    /* keep answering (the resent batch 2 and its successors) until the loop has nothing
     * pending, then say stop */
    t0 = icn_now();
    assert_int_equal(icn_publisher_control(pub, ICN_MSG_STOP, 1, err, sizeof err), 0);
    while (!__atomic_load_n(&w.done, __ATOMIC_SEQ_CST) && icn_now() - t0 < 20) {
        assert_true(icn_publisher_serve(pub, 0, err, sizeof err) >= 0);
        icn_zmq_peer from;
        uint8_t *data;
        size_t len;
        while (icn_zmq_recv_buf(router, &from, 20, &data, &len, err, sizeof err) == 1) {
            icn_msg m;
            assert_int_equal(icn_msg_decode(data, len, ICN_MSG_BATCH, 1, &m, err, sizeof err), 0);
            free(data);
            batches++;
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            icn_pack_ack(&sb, m.producer, m.seq);
            icn_zmq_send_to(router, &from, sb.data, sb.size, err, sizeof err);
            msgpack_sbuffer_destroy(&sb);
            icn_msg_free(&m);
        }
    }
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    assert_int_equal(w.res.samples, 12);
    assert_int_equal(w.res.acked, 12);
    assert_int_equal(w.res.unacked_batches, 0);
    assert_int_equal(w.res.snapshots, 1);
    assert_true(batches > 6); /* 6 batches of 2, and at least one sent again */
    icn_net_free(&net);
    icn_publisher_close(pub);
    icn_zmq_close(router);
}

int main(void) {
    icn_set_progname("test_online");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_online_loop)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    icn_zmq_term();
    return rc;
}
