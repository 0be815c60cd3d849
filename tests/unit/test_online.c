/* test_online.c: the online synthesizer's loop (lib/online.c) driven over inproc sockets by
 * this test playing trainer (PUB: snapshots, then "stop") and pool (ROUTER: acks, except the
 * first answer to one batch, which is lost): every class gets its quota once, the lost
 * answer's batch comes again and is acknowledged, and the loop ends on "stop"; it also ends
 * by itself when the trainer's heartbeats stop, or say the run has finished. */
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
#include "snapshot_sender.h"
#include "online.h"
#include "protocol.h"
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

/* A batch from the synthesizer within 20 ms: 1 with *m (icn_msg_free it), else 0. */
static int recv_batch(void *router, icn_zmq_peer *from, icn_msg *m) {
    char err[ICN_ERRLEN];
    uint8_t *data;
    size_t len;
    if (icn_zmq_recv_buf(router, from, 20, &data, &len, err, sizeof err) != 1) return 0;
    assert_int_equal(icn_msg_decode(data, len, ICN_MSG_BATCH, 1, m, err, sizeof err), 0);
    free(data);
    return 1;
}

/* The pool's answer to batch m: stored. 0, or -1 when it could not be sent. */
static int send_ack(void *router, const icn_zmq_peer *from, const icn_msg *m) {
    char err[ICN_ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_ack(&sb, m->producer, m->seq);
    int rc = icn_zmq_send_to(router, from, sb.data, sb.size, err, sizeof err);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* This test's trainer (PUB) and pool (ROUTER) on inproc endpoints named after `name`, a 3-class
 * net, and the loop running in a thread with passes of `batch`, one pass a push, at most
 * max_per_gen per class. */
typedef struct {
    void *pub, *router;
    icn_net net;
    worker w;
    pthread_t thread;
    char snap[64], intake[64];
} rig;

static void rig_start(rig *r, const char *name, int batch, int max_per_gen, double liveness_s) {
    char err[2 * ICN_ERRLEN];
    snprintf(r->snap, sizeof r->snap, "inproc://%s-snap-%d", name, (int)getpid());
    snprintf(r->intake, sizeof r->intake, "inproc://%s-intake-%d", name, (int)getpid());
    r->pub = icn_open_publisher(r->snap, err, sizeof err);
    r->router = icn_open_intake(r->intake, icn_intake_max_bytes(8, 8, 1), err, sizeof err);
    assert_non_null(r->pub);
    assert_non_null(r->router);
    assert_int_equal(icn_net_build(&r->net, "c4", 8, 8, 1, 3, err, sizeof err), 0);
    icn_net_init(&r->net, 1);
    memset(&r->w, 0, sizeof r->w);
    icn_online_opts_default(&r->w.o);
    r->w.o.snapshots = r->snap, r->w.o.pool = r->intake;
    r->w.o.batch = batch, r->w.o.chunk_batches = 1, r->w.o.max_per_gen = max_per_gen, r->w.o.id = 7;
    r->w.o.seed = 3, r->w.o.quiet = 1;
    r->w.o.synth.max_steps = 3;
    r->w.o.resend_ms = 200, r->w.o.drain_ms = 3000, r->w.o.liveness_s = liveness_s;
    assert_int_equal(pthread_create(&r->thread, NULL, run_worker, &r->w), 0);
}

static void rig_free(rig *r) {
    icn_net_free(&r->net);
    icn_zmq_close(r->pub);
    icn_zmq_close(r->router);
}

static void test_the_online_loop_stores_each_class_s_quota_once_despite_a_lost_answer_and_stops_when_told(void **state) {
    (void)state;
    rig r;
    rig_start(&r, "online", 2, 4, 0);
    void *pub = r.pub, *router = r.router;
    icn_net net = r.net;
    worker *w = &r.w;

    /* the trainer re-sends its snapshot until batches come; the pool acks them */
    int64_t per_class[3] = {0}, batches = 0, dropped = 0, stored_images = 0;
    uint64_t last_seq = 0;
    double t0 = icn_now(), last_pub = 0;
    while (stored_images < 12 && icn_now() - t0 < 30) {
        if (icn_now() - last_pub > 0.1) publish(pub, &net, 1), last_pub = icn_now();
        icn_zmq_peer from;
        icn_msg m;
        if (!recv_batch(router, &from, &m)) continue;
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
        assert_int_equal(send_ack(router, &from, &m), 0);
        icn_msg_free(&m);
    }
    assert_int_equal(stored_images, 12);
    for (int k = 0; k < 3; k++) assert_int_equal(per_class[k], 4); /* max_per_gen, once each */
    /* keep answering (the resent batch 2 and its successors) until the loop has nothing
     * pending, then say stop */
    t0 = icn_now();
    while (!__atomic_load_n(&w->done, __ATOMIC_SEQ_CST) && icn_now() - t0 < 20) {
        control(pub, ICN_MSG_STOP, 1);
        icn_zmq_peer from;
        icn_msg m;
        while (recv_batch(router, &from, &m)) {
            batches++;
            send_ack(router, &from, &m); /* the loop may be gone already */
            icn_msg_free(&m);
        }
    }
    pthread_join(r.thread, NULL);
    assert_int_equal(w->rc, 0);
    assert_int_equal(w->res.samples, 12);
    assert_int_equal(w->res.acked, 12);
    assert_int_equal(w->res.unacked_batches, 0);
    assert_int_equal(w->res.snapshots, 1);
    assert_true(batches > 6); /* 6 batches of 2, and at least one sent again */
    rig_free(&r);
}

/* Ack every batch that comes to `router` until `images` are stored (or 30 s), writing each new
 * batch's class and size into cls[] and n[] (up to max); returns how many batches came. */
static int collect(void *pub, void *router, const icn_net *net, const char *settings, int images, int *cls, int *n,
                   int max) {
    int got = 0, stored = 0;
    uint64_t last_seq = 0;
    double t0 = icn_now(), last_pub = 0;
    while (stored < images && icn_now() - t0 < 30) {
        if (icn_now() - last_pub > 0.1) publish_with(pub, net, 1, settings), last_pub = icn_now();
        icn_zmq_peer from;
        icn_msg m;
        if (!recv_batch(router, &from, &m)) continue;
        if (m.seq > last_seq) {
            last_seq = m.seq;
            if (got < max) cls[got] = -m.batch.y[0] - 1, n[got] = m.batch.n;
            got++, stored += m.batch.n;
        }
        assert_int_equal(send_ack(router, &from, &m), 0);
        icn_msg_free(&m);
    }
    return got;
}

/* A synchronous trainer's snapshot says per_class=3 in its settings: the synthesizer makes 3 of
 * each class first (a round's worth, in chunks no larger), then goes on in whole chunks (4)
 * up to --max-per-gen (5); an async trainer's snapshot changes nothing. */
static void test_a_synchronous_round_s_quota_is_made_first(void **state) {
    (void)state;
    const char *settings[2] = {"lr=0.025 initial_steps=800 per_class=3 alpha=0.5 pn_batch=64 async=0",
                               "lr=0.025 initial_steps=800 per_class=3 alpha=0.5 pn_batch=64 async=1"};
    const int want_cls[2][6] = {{0, 1, 2, 0, 1, 2}, {0, 1, 2, 0, 1, 2}};
    const int want_n[2][6] = {{3, 3, 3, 2, 2, 2}, {4, 4, 4, 1, 1, 1}};
    for (int mode = 0; mode < 2; mode++) {
        rig r;
        rig_start(&r, mode ? "quota-async" : "quota-sync", 4, 5, 0);
        int cls[16], n[16];
        int got = collect(r.pub, r.router, &r.net, settings[mode], 15, cls, n, 16);
        double t0 = icn_now(); /* stop the loop first, so that a failed check below does not hang */
        while (!__atomic_load_n(&r.w.done, __ATOMIC_SEQ_CST) && icn_now() - t0 < 20) {
            control(r.pub, ICN_MSG_STOP, 1);
            usleep(20 * 1000);
        }
        pthread_join(r.thread, NULL);
        assert_int_equal(r.w.rc, 0);
        assert_int_equal(r.w.res.samples, 15);
        assert_int_equal(got, 6);
        for (int i = 0; i < 6; i++) {
            assert_int_equal(cls[i], want_cls[mode][i]);
            assert_int_equal(n[i], want_n[mode][i]);
        }
        rig_free(&r);
    }
}

static void heartbeat(void *pub, int64_t generation, icn_run_state state) {
    char err[ICN_ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_heartbeat(&sb, generation, state, 100, "inproc://nowhere", icn_wallclock());
    assert_int_equal(icn_zmq_send_sbuffer(pub, &sb, err, sizeof err), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* The trainer's heartbeats stop (it was killed): within three of their intervals (0.3 s) the
 * loop makes nothing more, and after liveness_s (1 s) it ends by itself, saying why; a
 * heartbeat saying "finished" ends it at once. */
static void test_ends_when_the_trainer_is_gone(void **state) {
    (void)state;
    for (int finished = 0; finished < 2; finished++) {
        rig r;
        rig_start(&r, finished ? "gone-finished" : "gone-silent", 2, 0, 1);
        double t0 = icn_now(), last_beat = 0, silent_from = 0, last_new = 0;
        int64_t batches = 0;
        uint64_t last_seq = 0;
        while (!__atomic_load_n(&r.w.done, __ATOMIC_SEQ_CST) && icn_now() - t0 < 20) {
            if (!silent_from && icn_now() - last_beat > 0.05) {
                if (batches < 5) publish(r.pub, &r.net, 1); /* until the loop has it */
                heartbeat(r.pub, 1, batches >= 5 && finished ? ICN_RUN_FINISHED : ICN_RUN_RUNNING);
                last_beat = icn_now();
                if (batches >= 5) silent_from = icn_now(); /* the last word */
            }
            icn_zmq_peer from;
            icn_msg m;
            if (!recv_batch(r.router, &from, &m)) continue;
            if (m.seq > last_seq) last_seq = m.seq, batches++, last_new = icn_now();
            send_ack(r.router, &from, &m);
            icn_msg_free(&m);
        }
        pthread_join(r.thread, NULL);
        assert_int_equal(r.w.rc, 0);
        if (finished) {
            assert_int_equal(r.w.res.ended, 1);
            assert_non_null(strstr(r.w.res.why, "finished"));
        } else {
            assert_int_equal(r.w.res.ended, 2);
            assert_non_null(strstr(r.w.res.why, "no word from the trainer"));
            assert_true(icn_now() - silent_from >= 1.0);
            /* nothing made once three heartbeats were missed (a pass of this net takes ms) */
            assert_true(last_new - silent_from < 0.5);
        }
        assert_int_equal(r.w.res.unacked_batches, 0);
        rig_free(&r);
    }
}

/* A generation taken a second time (a restarted trainer's generations begin again lower, with
 * weights that may be the same) must not make the same images again: 2 of each class from
 * generation 1, then from 2, then from 1 again, 18 images, every one different. */
static void test_a_generation_taken_again_makes_no_image_twice(void **state) {
    (void)state;
    rig r;
    rig_start(&r, "retake", 2, 2, 0);
    enum { PHASES = 3, PER_PHASE = 6, D = 64 };
    const int64_t gen[PHASES] = {1, 2, 1};
    float img[PHASES * PER_PHASE][D];
    int have = 0, wrong_gen = 0;
    uint64_t last_seq = 0;
    double t0 = icn_now();
    for (int ph = 0; ph < PHASES && icn_now() - t0 < 30; ph++) {
        double last_pub = 0;
        while (have < (ph + 1) * PER_PHASE && icn_now() - t0 < 30) {
            if (icn_now() - last_pub > 0.1) publish(r.pub, &r.net, gen[ph]), last_pub = icn_now();
            icn_zmq_peer from;
            icn_msg m;
            if (!recv_batch(r.router, &from, &m)) continue;
            if (m.seq > last_seq) {
                last_seq = m.seq;
                wrong_gen += m.batch.prov[0].generation != gen[ph];
                for (int i = 0; i < m.batch.n && have < PHASES * PER_PHASE; i++)
                    memcpy(img[have++], m.batch.x + (size_t)i * D, sizeof img[0]);
            }
            assert_int_equal(send_ack(r.router, &from, &m), 0);
            icn_msg_free(&m);
        }
    }
    for (double t1 = icn_now(); !__atomic_load_n(&r.w.done, __ATOMIC_SEQ_CST) && icn_now() - t1 < 20;) {
        control(r.pub, ICN_MSG_STOP, 1);
        usleep(20 * 1000);
    }
    pthread_join(r.thread, NULL);
    rig_free(&r); /* before any check: a failed one must not leave sockets open */
    assert_int_equal(have, PHASES * PER_PHASE);
    assert_int_equal(wrong_gen, 0);
    int same = 0;
    for (int i = 0; i < have; i++)
        for (int j = 0; j < i; j++) same += !memcmp(img[i], img[j], sizeof img[0]);
    assert_int_equal(same, 0);
}

int main(void) {
    icn_set_progname("test_online");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_the_online_loop_stores_each_class_s_quota_once_despite_a_lost_answer_and_stops_when_told), cmocka_unit_test(test_a_synchronous_round_s_quota_is_made_first),
                                       cmocka_unit_test(test_ends_when_the_trainer_is_gone),
                                       cmocka_unit_test(test_a_generation_taken_again_makes_no_image_twice)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    icn_zmq_term();
    return rc;
}
