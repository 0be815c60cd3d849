/* snapshot_sender.h: what a trainer sends on the snapshot channel (icn-wire(5)), for the unit
 * tests that play the trainer on a PUB or XPUB socket: a model of a generation (with the
 * trainer's settings string, which a synthesizer reads its round quota from), "hold", "stop".
 * Include after cmocka.h. */
#ifndef ICN_TEST_SNAPSHOT_SENDER_H
#define ICN_TEST_SNAPSHOT_SENDER_H
#include <stdio.h>

#include "net.h"
#include "protocol.h"
#include "snapshot.h"
#include "transport.h"

static void publish_with(void *pub, const icn_net *net, int64_t generation, const char *settings) {
    char err[ICN_ERRLEN];
    icn_model_meta meta = {.generation = generation, .head = ICN_HEAD_SOFTMAX};
    snprintf(meta.settings, sizeof meta.settings, "%s", settings);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_model_pack(&sb, net, &meta, NULL);
    assert_int_equal(icn_zmq_send_sbuffer(pub, &sb, err, sizeof err), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void publish(void *pub, const icn_net *net, int64_t generation) { publish_with(pub, net, generation, ""); }

static void control(void *pub, icn_msg_kind kind, int64_t generation) {
    char err[ICN_ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_control(&sb, kind, generation);
    assert_int_equal(icn_zmq_send_sbuffer(pub, &sb, err, sizeof err), 0);
    msgpack_sbuffer_destroy(&sb);
}

#endif
