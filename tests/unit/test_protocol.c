/* test_protocol.c: the messages of icn-wire(5) (lib/protocol.c), the sockets and their
 * security (lib/transport.c: CURVE keys, the ZAP decision, the loopback rule), and
 * acknowledged delivery (lib/sender.c), over real ZeroMQ sockets (inproc and loopback). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "net.h"
#include "protocol.h"
#include "sender.h"
#include "snapshot.h"
#include "transport.h"
#include "util.h"
#include "wire.h"

#include "fixtures.h"

/* n pseudo-negatives of shape h x w x 1; image i has distinct pixels and provenance. */
static void make_negatives(icn_batch *b, int32_t n, int32_t h, int32_t w, int32_t seed) {
    icn_batch_alloc(b, n, h, w, 1, 1);
    size_t d = icn_batch_dim(b);
    for (size_t i = 0; i < (size_t)n * d; i++) b->x[i] = (float)((int)(i + (size_t)seed * 7) % 97) / 48.0f - 1.0f;
    b->prov = xcalloc((size_t)n, sizeof *b->prov);
    for (int32_t i = 0; i < n; i++) {
        b->y[i] = -((seed + i) % 3) - 1;
        b->prov[i] = (icn_provenance){seed, 10 + i, 0.25f * (float)i - 1.0f, (uint8_t)(i & 1), 100u + (uint32_t)seed};
    }
}

static void assert_batches_equal(const icn_batch *a, const icn_batch *b) {
    assert_int_equal(a->n, b->n);
    assert_int_equal(icn_batch_dim(a), icn_batch_dim(b));
    assert_memory_equal(a->x, b->x, (size_t)a->n * icn_batch_dim(a) * sizeof(float));
    assert_memory_equal(a->y, b->y, (size_t)a->n * sizeof(int32_t));
    for (int32_t i = 0; i < a->n; i++) {
        assert_int_equal(a->prov[i].generation, b->prov[i].generation);
        assert_int_equal(a->prov[i].producer, b->prov[i].producer);
        assert_true(a->prov[i].logit == b->prov[i].logit);
    }
}

static int decode(const msgpack_sbuffer *sb, unsigned accept, int need_origin, icn_msg *m, char *err) {
    return icn_msg_decode((const uint8_t *)sb->data, sb->size, accept, need_origin, m, err, ICN_ERRLEN);
}

/* ------------------------------------------------------------ codecs */

static void test_batch_ack_and_refused_messages_round_trip(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    icn_batch b;
    icn_msg m;
    make_negatives(&b, 3, 4, 3, 2);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_batch_from(&sb, &b, 0x7123456789abcdefULL, 42);
    assert_int_equal(decode(&sb, ICN_MSG_BATCH, 1, &m, err), 0);
    assert_int_equal(m.kind, ICN_MSG_BATCH);
    assert_true(m.producer == 0x7123456789abcdefULL);
    assert_int_equal(m.seq, 42);
    assert_batches_equal(&b, &m.batch);
    icn_msg_free(&m);
    /* only what the channel carries */
    assert_int_equal(decode(&sb, ICN_SNAPSHOT_KINDS, 0, &m, err), -1);
    assert_non_null(strstr(err, "message of kind 'batch' where 'model', 'hold', 'stop' or 'heartbeat' is expected"));
    msgpack_sbuffer_destroy(&sb);

    /* a batch without an origin is not for the intake */
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    icn_batch_pack(&pk, &b);
    assert_int_equal(decode(&sb, ICN_MSG_BATCH, 1, &m, err), -1);
    assert_non_null(strstr(err, "key 'producer' missing"));
    assert_int_equal(decode(&sb, ICN_MSG_BATCH, 0, &m, err), 0);
    assert_int_equal(m.producer, 0);
    icn_msg_free(&m);
    msgpack_sbuffer_destroy(&sb);

    /* a bad batch with a good origin: the refusal can name it */
    b.x[5] = NAN;
    msgpack_sbuffer_init(&sb);
    icn_pack_batch_from(&sb, &b, 9, 3);
    assert_int_equal(decode(&sb, ICN_MSG_BATCH, 1, &m, err), -1);
    assert_int_equal(m.producer, 9);
    assert_int_equal(m.seq, 3);
    msgpack_sbuffer_destroy(&sb);
    /* seq 0 is not a sequence number */
    b.x[5] = 0;
    msgpack_sbuffer_init(&sb);
    icn_pack_batch_from(&sb, &b, 9, 0);
    assert_int_equal(decode(&sb, ICN_MSG_BATCH, 1, &m, err), -1);
    assert_non_null(strstr(err, "seq"));
    msgpack_sbuffer_destroy(&sb);

    msgpack_sbuffer_init(&sb);
    icn_pack_ack(&sb, 9, 7);
    assert_int_equal(decode(&sb, ICN_INTAKE_REPLY_KINDS, 0, &m, err), 0);
    assert_int_equal(m.kind, ICN_MSG_ACK);
    assert_int_equal(m.producer, 9);
    assert_int_equal(m.seq, 7);
    assert_false(m.duplicate);
    msgpack_sbuffer_destroy(&sb);
    /* a duplicate's answer is an ack that says so */
    msgpack_sbuffer_init(&sb);
    icn_pack_duplicate(&sb, 9, 7);
    assert_int_equal(decode(&sb, ICN_INTAKE_REPLY_KINDS, 0, &m, err), 0);
    assert_int_equal(m.kind, ICN_MSG_ACK);
    assert_int_equal(m.seq, 7);
    assert_true(m.duplicate);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_init(&sb);
    icn_pack_refused(&sb, 0, 0, "frame: not a map");
    assert_int_equal(decode(&sb, ICN_INTAKE_REPLY_KINDS, 0, &m, err), 0);
    assert_int_equal(m.kind, ICN_MSG_REFUSED);
    assert_string_equal(m.text, "frame: not a map");
    assert_false(m.ended);
    msgpack_sbuffer_destroy(&sb);
    /* a refusal because the run has ended says so in a key, not only in words */
    msgpack_sbuffer_init(&sb);
    icn_pack_run_ended(&sb, 9, 8);
    assert_int_equal(decode(&sb, ICN_INTAKE_REPLY_KINDS, 0, &m, err), 0);
    assert_int_equal(m.kind, ICN_MSG_REFUSED);
    assert_int_equal(m.seq, 8);
    assert_true(m.ended);
    assert_non_null(strstr(m.text, "run ended"));
    msgpack_sbuffer_destroy(&sb);
    icn_batch_free(&b);
}

static void test_end_and_begin_are_requests_without_keys(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    icn_msg m;
    const icn_msg_kind kinds[2] = {ICN_MSG_END, ICN_MSG_BEGIN};
    for (int i = 0; i < 2; i++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        icn_pack_run_request(&sb, kinds[i]);
        assert_int_equal(decode(&sb, ICN_REQUEST_KINDS, 0, &m, err), 0);
        assert_int_equal(m.kind, kinds[i]);
        assert_int_equal(decode(&sb, ICN_INTAKE_REPLY_KINDS, 0, &m, err), -1); /* not on the intake's replies */
        msgpack_sbuffer_destroy(&sb);
    }
}

static void test_control_and_model_messages_are_decoded_once(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    icn_msg m;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_control(&sb, ICN_MSG_STOP, 5);
    assert_int_equal(decode(&sb, ICN_SNAPSHOT_KINDS, 0, &m, err), 0);
    assert_int_equal(m.kind, ICN_MSG_STOP);
    assert_int_equal(m.generation, 5);
    msgpack_sbuffer_destroy(&sb);

    icn_net net;
    assert_int_equal(icn_net_build(&net, "c4", 8, 8, 1, 3, err, sizeof err), 0);
    icn_net_init(&net, 1);
    icn_model_meta meta = {.generation = 3, .head = ICN_HEAD_SOFTMAX};
    msgpack_sbuffer_init(&sb);
    icn_model_pack(&sb, &net, &meta, NULL);
    assert_int_equal(decode(&sb, ICN_SNAPSHOT_KINDS, 0, &m, err), 0);
    assert_int_equal(m.kind, ICN_MSG_MODEL);
    assert_int_equal(m.meta.generation, 3);
    assert_int_equal(m.net.n_params, net.n_params);
    assert_memory_equal(m.net.params, net.params, net.n_params * sizeof(float));
    icn_msg_free(&m);
    msgpack_sbuffer_destroy(&sb);
    net.params[0] = NAN;
    msgpack_sbuffer_init(&sb);
    icn_model_pack(&sb, &net, &meta, NULL);
    assert_int_equal(decode(&sb, ICN_SNAPSHOT_KINDS, 0, &m, err), -1);
    assert_non_null(strstr(err, "model"));
    msgpack_sbuffer_destroy(&sb);
    icn_net_free(&net);

    /* garbage: one line, nothing allocated */
    assert_int_equal(icn_msg_decode((const uint8_t *)"\xdd\xff\xff\xff\xff", 5, ICN_SNAPSHOT_KINDS, 0, &m, err,
                                    sizeof err), -1);
    assert_non_null(strstr(err, "4294967295 elements"));
    assert_int_equal(icn_msg_decode((const uint8_t *)"\x81\xa4kind\xa4stop", 11, ICN_SNAPSHOT_KINDS, 0, &m, err,
                                    sizeof err), -1);
    assert_non_null(strstr(err, "generation"));
}

static void test_fetch_records_stats_and_error_messages_round_trip(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    icn_msg m;
    msgpack_sbuffer sb;

    msgpack_sbuffer_init(&sb);
    icn_pack_fetch(&sb, 1234, 500);
    assert_int_equal(decode(&sb, ICN_REQUEST_KINDS, 0, &m, err), 0);
    assert_int_equal(m.kind, ICN_MSG_FETCH);
    assert_int_equal(m.offset, 1234);
    assert_int_equal(m.max, 500);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_init(&sb);
    icn_pack_fetch(&sb, 0, ICN_FETCH_MAX + 1);
    assert_int_equal(decode(&sb, ICN_REQUEST_KINDS, 0, &m, err), -1);
    msgpack_sbuffer_destroy(&sb);

    msgpack_sbuffer_init(&sb);
    icn_pack_stats_request(&sb);
    assert_int_equal(decode(&sb, ICN_REQUEST_KINDS, 0, &m, err), 0);
    assert_int_equal(m.kind, ICN_MSG_STATS_REQUEST);
    msgpack_sbuffer_destroy(&sb);

    icn_batch b;
    make_negatives(&b, 3, 4, 3, 2);
    msgpack_sbuffer_init(&sb);
    icn_pack_records(&sb, 10, 20, &b);
    assert_int_equal(decode(&sb, ICN_MSG_RECORDS, 0, &m, err), 0);
    assert_int_equal(m.offset, 10);
    assert_int_equal(m.total, 20);
    assert_batches_equal(&b, &m.batch);
    icn_msg_free(&m);
    msgpack_sbuffer_destroy(&sb);
    /* offset + n past total, and labels >= 0, are refused */
    msgpack_sbuffer_init(&sb);
    icn_pack_records(&sb, 19, 20, &b);
    assert_int_equal(decode(&sb, ICN_MSG_RECORDS, 0, &m, err), -1);
    assert_non_null(strstr(err, "run past the total"));
    msgpack_sbuffer_destroy(&sb);
    b.y[1] = 3;
    msgpack_sbuffer_init(&sb);
    icn_pack_records(&sb, 0, 20, &b);
    assert_int_equal(decode(&sb, ICN_MSG_RECORDS, 0, &m, err), -1);
    assert_non_null(strstr(err, "label"));
    msgpack_sbuffer_destroy(&sb);
    /* empty: no "batch" key; asking past the end is how a trainer learns the total */
    icn_batch empty = {0};
    msgpack_sbuffer_init(&sb);
    icn_pack_records(&sb, INT32_MAX, 20, &empty);
    assert_int_equal(decode(&sb, ICN_MSG_RECORDS, 0, &m, err), 0);
    assert_int_equal(m.batch.n, 0);
    assert_null(m.batch.x);
    assert_int_equal(m.total, 20);
    msgpack_sbuffer_destroy(&sb);

    icn_pool_counts c = {0};
    icn_pool_tally cls[2] = {{0, 4}, {3, 6}};
    c.total = 10, c.per_class = cls, c.n_class = 2;
    snprintf(c.uuid, sizeof c.uuid, "0123abcd-0123-4abc-8abc-0123456789ab");
    msgpack_sbuffer_init(&sb);
    icn_pack_pool_stats(&sb, &c, 5, 7, 1);
    assert_int_equal(decode(&sb, ICN_MSG_STATS, 0, &m, err), 0);
    assert_int_equal(m.kind, ICN_MSG_STATS);
    assert_int_equal(m.counts.total, 10);
    assert_int_equal(m.rejected, 5);
    assert_int_equal(m.accept_failures, 7);
    assert_int_equal(m.ended, 1);
    icn_msg_free(&m);
    assert_int_equal(decode(&sb, ICN_REQUEST_KINDS, 0, &m, err), 0); /* a request, to a server: no keys read */
    assert_int_equal(m.kind, ICN_MSG_STATS_REQUEST);
    msgpack_sbuffer_destroy(&sb);

    msgpack_sbuffer_init(&sb);
    icn_pack_error(&sb, "no such thing");
    assert_int_equal(decode(&sb, ICN_MSG_RECORDS | ICN_MSG_ERROR, 0, &m, err), 0);
    assert_int_equal(m.kind, ICN_MSG_ERROR);
    assert_string_equal(m.text, "no such thing");
    assert_int_equal(decode(&sb, ICN_MSG_RECORDS, 0, &m, err), -1);
    assert_non_null(strstr(err, "'error'"));
    msgpack_sbuffer_destroy(&sb);
    icn_batch_free(&b);
}

/* ------------------------------------------------------------ request client */

static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

/* A REP server in a thread, until told to stop: fetch -> 2 records; stats -> an error
 * reply; anything else -> bytes that are not a map. */
typedef struct {
    char endpoint[64];
    int ready, stop;
} server_args;

static void *server_main(void *arg) {
    server_args *a = arg;
    char err[ICN_ERRLEN];
    void *rep = icn_open_requests(a->endpoint, err, sizeof err);
    __atomic_store_n(&a->ready, rep ? 1 : -1, __ATOMIC_SEQ_CST);
    if (!rep) return NULL;
    icn_batch b;
    make_negatives(&b, 2, 4, 3, 9);
    while (!__atomic_load_n(&a->stop, __ATOMIC_SEQ_CST)) {
        uint8_t *data;
        size_t len;
        int got = icn_zmq_recv_buf(rep, NULL, 50, &data, &len, err, sizeof err);
        if (got == 0) continue;
        icn_msg m = {0};
        int bad = got < 0 || icn_msg_decode(data, len, ICN_REQUEST_KINDS, 0, &m, err, sizeof err);
        free(data);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (!bad && m.kind == ICN_MSG_FETCH) icn_pack_records(&sb, 5, 7, &b);
        else if (!bad) icn_pack_error(&sb, "stats are elsewhere");
        else msgpack_sbuffer_write(&sb, "\x93\x01\x02\x03", 4); /* an array, not a map */
        icn_zmq_send_sbuffer(rep, &sb, err, sizeof err);
        msgpack_sbuffer_destroy(&sb);
        icn_msg_free(&m);
    }
    icn_batch_free(&b);
    icn_zmq_close(rep);
    return NULL;
}

static void start_server(pthread_t *t, server_args *a) {
    assert_int_equal(pthread_create(t, NULL, server_main, a), 0);
    while (__atomic_load_n(&a->ready, __ATOMIC_SEQ_CST) == 0) usleep(1000);
    assert_int_equal(a->ready, 1);
}

static void stop_server(pthread_t t, server_args *a) {
    __atomic_store_n(&a->stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(t, NULL);
}

static void test_a_request_gets_its_reply(void **state) {
    (void)state;
    server_args a = {0};
    snprintf(a.endpoint, sizeof a.endpoint, "inproc://test-pool-%d", (int)getpid());
    pthread_t t;
    start_server(&t, &a);
    void *req = NULL;
    char err[ICN_ERRLEN];
    icn_msg m;
    msgpack_sbuffer sb;

    msgpack_sbuffer_init(&sb);
    icn_pack_fetch(&sb, 5, 10);
    assert_int_equal(icn_request(&req, a.endpoint, &sb, 5000, 0, ICN_MSG_RECORDS, &m, err, sizeof err), 1);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(m.batch.n, 2);
    assert_int_equal(m.offset, 5);
    assert_int_equal(m.total, 7);
    icn_msg_free(&m);

    msgpack_sbuffer_init(&sb);
    icn_pack_stats_request(&sb);
    assert_int_equal(icn_request(&req, a.endpoint, &sb, 5000, 0, ICN_MSG_STATS, &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "stats are elsewhere"));
    msgpack_sbuffer_destroy(&sb);

    msgpack_sbuffer_init(&sb);
    icn_pack_error(&sb, "garbage please");
    assert_int_equal(icn_request(&req, a.endpoint, &sb, 5000, 0, ICN_MSG_RECORDS, &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "bad reply"));
    assert_non_null(strstr(err, "not a map"));
    msgpack_sbuffer_destroy(&sb);

    stop_server(t, &a);
    icn_zmq_close(req);
}

/* No pool: 0 within about the timeout, with the message, and a fresh REQ socket that works as
 * soon as a pool appears (the old one would be stuck waiting for its reply). */
static void test_request_timeout_recreates_socket(void **state) {
    (void)state;
    server_args a = {0};
    snprintf(a.endpoint, sizeof a.endpoint, "tcp://127.0.0.1:%d", free_port());
    void *req = NULL;
    char err[ICN_ERRLEN], want[128];
    icn_msg m;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_fetch(&sb, 0, 1);

    double t0 = icn_now();
    assert_int_equal(icn_request(&req, a.endpoint, &sb, 300, 0, ICN_MSG_RECORDS, &m, err, sizeof err), 0);
    double took = icn_now() - t0;
    assert_true(took >= 0.29);
    assert_true(took < 3.0);
    snprintf(want, sizeof want, "pool at %s did not answer within 300 ms", a.endpoint);
    assert_string_equal(err, want);
    assert_non_null(req);
    /* a REQ socket that still waited for its reply would refuse a second send (EFSM) */
    assert_true(zmq_send(req, "x", 1, ZMQ_DONTWAIT) == 1 || zmq_errno() == EAGAIN);
    icn_zmq_close(req);
    req = NULL;
    assert_int_equal(icn_request(&req, a.endpoint, &sb, 200, 0, ICN_MSG_RECORDS, &m, err, sizeof err), 0);

    pthread_t t; /* the pool comes up: the recreated socket reaches it */
    start_server(&t, &a);
    assert_int_equal(icn_request(&req, a.endpoint, &sb, 5000, 0, ICN_MSG_RECORDS, &m, err, sizeof err), 1);
    assert_int_equal(m.kind, ICN_MSG_RECORDS);
    icn_msg_free(&m);
    stop_server(t, &a);
    msgpack_sbuffer_destroy(&sb);
    icn_zmq_close(req);
}

static void test_a_receive_times_out_and_a_multipart_message_arrives_whole(void **state) {
    (void)state;
    char err[ICN_ERRLEN], ep[64];
    snprintf(ep, sizeof ep, "inproc://test-pull-%d", (int)getpid());
    void *pull = icn_zmq_open(ZMQ_PULL, ep, 1, err, sizeof err);
    void *push = icn_zmq_open(ZMQ_PUSH, ep, 0, err, sizeof err);
    assert_non_null(pull);
    assert_non_null(push);
    uint8_t *data;
    size_t len;
    double t0 = icn_now();
    assert_int_equal(icn_zmq_recv_buf(pull, NULL, 100, &data, &len, err, sizeof err), 0);
    assert_int_equal(errno, EAGAIN);
    assert_true(icn_now() - t0 >= 0.09);

    assert_int_equal(zmq_send(push, "ab", 2, ZMQ_SNDMORE), 2);
    assert_int_equal(zmq_send(push, "cde", 3, 0), 3);
    assert_int_equal(icn_zmq_recv_buf(pull, NULL, 2000, &data, &len, err, sizeof err), -1);
    assert_int_equal(errno, EPROTO);
    assert_non_null(strstr(err, "multipart message of 2 parts (5 bytes)"));
    /* the socket is still in step: the next frame comes through */
    assert_int_equal(zmq_send(push, "\x81\xa4kind\xa1x", 8, 0), 8);
    assert_int_equal(icn_zmq_recv_buf(pull, NULL, 2000, &data, &len, err, sizeof err), 1);
    assert_int_equal(len, 8);
    free(data);
    icn_zmq_close(push);
    icn_zmq_close(pull);
}

/* ------------------------------------------------------------ keys, ZAP, loopback */

static void write_text(const char *path, const char *text, mode_t mode) {
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    fchmod(fd, mode);
    close(fd);
}

static void test_key_files_are_checked(void **state) {
    (void)state;
    char err[2 * ICN_ERRLEN], pub[41], key[41], name[256];
    snprintf(name, sizeof name, "%s", tmp_path("k1"));
    assert_int_equal(icn_keygen(name, pub, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(stat(tmp_path("k1.key"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 41);
    assert_int_equal(icn_key_read(tmp_path("k1.pub"), 0, key, err, sizeof err), 0);
    assert_string_equal(key, pub);
    char sec[41], derived[41];
    assert_int_equal(icn_key_read(tmp_path("k1.key"), 1, sec, err, sizeof err), 0);
    assert_int_equal(icn_key_public(sec, derived, err, sizeof err), 0);
    assert_string_equal(derived, pub);
    /* never overwritten */
    assert_int_equal(icn_keygen(name, pub, err, sizeof err), -1);
    assert_non_null(strstr(err, "already exists"));

    chmod(tmp_path("k1.key"), 0644);
    assert_int_equal(icn_key_read(tmp_path("k1.key"), 1, sec, err, sizeof err), -1);
    assert_non_null(strstr(err, "readable or writable by others"));
    write_text(tmp_path("bad.pub"), "too short\n", 0644);
    assert_int_equal(icn_key_read(tmp_path("bad.pub"), 0, key, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a key file"));
    write_text(tmp_path("bad.pub"), "0123456789012345678901234567890123456789 \n", 0644);
    assert_int_equal(icn_key_read(tmp_path("bad.pub"), 0, key, err, sizeof err), -1);
    write_text(tmp_path("bad.pub"), "01234567890123456789012345678901234567\"9\n", 0644);
    assert_int_equal(icn_key_read(tmp_path("bad.pub"), 0, key, err, sizeof err), -1);
    assert_non_null(strstr(err, "outside Z85"));
    unlink(tmp_path("bad.pub"));
    assert_int_equal(symlink(tmp_path("k1.pub"), tmp_path("link.pub")), 0);
    assert_int_equal(icn_key_read(tmp_path("link.pub"), 0, key, err, sizeof err), -1);
    unlink(tmp_path("link.pub"));
    unlink(tmp_path("k1.key")), unlink(tmp_path("k1.pub"));
}

static void test_only_loopback_endpoints_may_go_without_keys(void **state) {
    (void)state;
    assert_true(icn_endpoint_is_local("tcp://127.0.0.1:5561"));
    assert_true(icn_endpoint_is_local("tcp://127.3.2.1:1"));
    assert_true(icn_endpoint_is_local("tcp://localhost:5561"));
    assert_true(icn_endpoint_is_local("tcp://[::1]:5561"));
    assert_true(icn_endpoint_is_local("ipc:///tmp/x"));
    assert_true(icn_endpoint_is_local("inproc://x"));
    assert_false(icn_endpoint_is_local("tcp://*:5561"));
    assert_false(icn_endpoint_is_local("tcp://0.0.0.0:5561"));
    assert_false(icn_endpoint_is_local("tcp://10.0.0.1:5561"));
    assert_false(icn_endpoint_is_local("tcp://eth0:5561"));
    assert_false(icn_endpoint_is_local("tcp://128.0.0.1:5561"));
    assert_false(icn_endpoint_is_local("pgm://127.0.0.1;239.0.0.1:5555"));
    char err[2 * ICN_ERRLEN], ep[64];
    icn_security none = {0};
    assert_int_equal(icn_zmq_secure(&none, err, sizeof err), 0);
    snprintf(ep, sizeof ep, "tcp://0.0.0.0:%d", free_port());
    void *s = icn_zmq_open(ZMQ_PULL, ep, 1, err, sizeof err);
    assert_null(s);
    assert_non_null(strstr(err, "refusing to bind"));
    icn_security insecure = {.insecure = 1};
    assert_int_equal(icn_zmq_secure(&insecure, err, sizeof err), 0);
    s = icn_zmq_open(ZMQ_PULL, ep, 1, err, sizeof err);
    assert_non_null(s);
    icn_zmq_close(s);
    assert_int_equal(icn_zmq_secure(&none, err, sizeof err), 0);
}

/* The ZAP decision, over real CURVE handshakes on loopback: the allowed key gets through and
 * is the peer identity; an unknown key never gets a message in, and is logged. */
static char g_last_log[512];
static int g_logs;
static int g_log_ctx;
static void capture_log(void *ctx, const char *line) {
    assert_ptr_equal(ctx, &g_log_ctx);
    snprintf(g_last_log, sizeof g_last_log, "%s", line);
    __atomic_add_fetch(&g_logs, 1, __ATOMIC_SEQ_CST);
}

static void test_zap_admits_only_allowed_keys(void **state) {
    (void)state;
    char err[2 * ICN_ERRLEN], server_pub[41], a_pub[41], b_pub[41], dir[200], ep[64], name[256];
    snprintf(dir, sizeof dir, "%s", tmp_path("allow"));
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(name, sizeof name, "%s", tmp_path("server"));
    assert_int_equal(icn_keygen(name, server_pub, err, sizeof err), 0);
    snprintf(name, sizeof name, "%s/a", dir); /* a's public key lands in the allowed dir */
    assert_int_equal(icn_keygen(name, a_pub, err, sizeof err), 0);
    snprintf(name, sizeof name, "%s", tmp_path("b"));
    assert_int_equal(icn_keygen(name, b_pub, err, sizeof err), 0);
    char a_key[256], b_key[256], server_key[256], server_pubf[256];
    snprintf(a_key, sizeof a_key, "%s/a.key", dir);
    snprintf(b_key, sizeof b_key, "%s", tmp_path("b.key"));
    snprintf(server_key, sizeof server_key, "%s", tmp_path("server.key"));
    snprintf(server_pubf, sizeof server_pubf, "%s", tmp_path("server.pub"));
    icn_security_set_log(capture_log, &g_log_ctx);

    icn_security server = {.secret_key = server_key, .allow_dir = dir};
    assert_int_equal(icn_zmq_secure(&server, err, sizeof err), 0);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", free_port());
    void *router = icn_open_intake(ep, 4096, err, sizeof err);
    assert_non_null(router);

    icn_security client_b = {.secret_key = b_key, .server_key = server_pubf};
    assert_int_equal(icn_zmq_secure(&client_b, err, sizeof err), 0);
    void *b = icn_open_sender(ep, err, sizeof err);
    assert_non_null(b);
    icn_security client_a = {.secret_key = a_key, .server_key = server_pubf};
    assert_int_equal(icn_zmq_secure(&client_a, err, sizeof err), 0);
    void *a = icn_open_sender(ep, err, sizeof err);
    assert_non_null(a);

    /* a's message arrives, under a's key; b's never leaves b (no completed connection) */
    double t0 = icn_now();
    int sent_a = 0;
    while (!(sent_a = icn_zmq_try_send(a, "\x81\xa4kind\xa1x", 8, err, sizeof err)) && icn_now() - t0 < 5) usleep(5000);
    assert_int_equal(sent_a, 1);
    icn_zmq_peer from;
    uint8_t *data;
    size_t len;
    assert_int_equal(icn_zmq_recv_buf(router, &from, 5000, &data, &len, err, sizeof err), 1);
    free(data);
    assert_string_equal(from.user, a_pub);
    usleep(300000);
    assert_int_equal(icn_zmq_try_send(b, "\x81\xa4kind\xa1y", 8, err, sizeof err), 0);
    assert_int_equal(icn_zmq_recv_buf(router, &from, 300, &data, &len, err, sizeof err), 0);
    assert_true(__atomic_load_n(&g_logs, __ATOMIC_SEQ_CST) >= 1);
    assert_non_null(strstr(g_last_log, b_pub));
    assert_non_null(strstr(g_last_log, "refused CURVE key"));
    /* rate-limited: b knocks every 100 ms, but one line per 10 s */
    int logs = __atomic_load_n(&g_logs, __ATOMIC_SEQ_CST);
    usleep(500000);
    assert_int_equal(__atomic_load_n(&g_logs, __ATOMIC_SEQ_CST), logs);
    /* a fresh key per attempt: at most ICN_ZAP_LOG_LINES lines per ICN_ZAP_LOG_EVERY s in all */
    void *fresh[2 * ICN_ZAP_LOG_LINES];
    for (int i = 0; i < 2 * ICN_ZAP_LOG_LINES; i++) {
        char fname[200], fkey[300], fpub[41];
        snprintf(fname, sizeof fname, "%s%d", tmp_path("fresh"), i);
        snprintf(fkey, sizeof fkey, "%s.key", fname), unlink(fkey);
        snprintf(name, sizeof name, "%s.pub", fname), unlink(name);
        assert_int_equal(icn_keygen(fname, fpub, err, sizeof err), 0);
        icn_security c = {.secret_key = fkey, .server_key = server_pubf};
        assert_int_equal(icn_zmq_secure(&c, err, sizeof err), 0);
        assert_non_null(fresh[i] = icn_open_sender(ep, err, sizeof err));
        unlink(fkey), unlink(name);
    }
    t0 = icn_now();
    while (__atomic_load_n(&g_logs, __ATOMIC_SEQ_CST) < ICN_ZAP_LOG_LINES && icn_now() - t0 < 5) usleep(10000);
    usleep(500000); /* room for any line beyond the budget to show */
    assert_int_equal(__atomic_load_n(&g_logs, __ATOMIC_SEQ_CST), ICN_ZAP_LOG_LINES);
    for (int i = 0; i < 2 * ICN_ZAP_LOG_LINES; i++) icn_zmq_close(fresh[i]);

    icn_zmq_close(a);
    icn_zmq_close(b);
    icn_zmq_close(router);
    icn_security_set_log(NULL, NULL);
    icn_security none = {0};
    assert_int_equal(icn_zmq_secure(&none, err, sizeof err), 0);
    snprintf(name, sizeof name, "%s/a.key", dir), unlink(name);
    snprintf(name, sizeof name, "%s/a.pub", dir), unlink(name);
    rmdir(dir);
    unlink(b_key), unlink(tmp_path("b.pub")), unlink(server_key), unlink(server_pubf);
}

/* ------------------------------------------------------------ acknowledged delivery */

/* The sender against a ROUTER that drops its first answer: the batch is sent again after the
 * timeout, the duplicate is recognised by (producer, seq), and every batch ends acknowledged. */
static void test_sender_resends_until_acknowledged(void **state) {
    (void)state;
    char err[2 * ICN_ERRLEN], ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", free_port());
    void *router = icn_open_intake(ep, 1 << 20, err, sizeof err);
    assert_non_null(router);
    icn_sender *s = icn_sender_open(ep, 3, 200, NULL, NULL, err, sizeof err);
    assert_non_null(s);
    icn_batch b;
    make_negatives(&b, 2, 4, 3, 1);
    uint64_t seen[64];
    int n_seen = 0, stored = 0, dropped = 0;
    double t0 = icn_now();
    for (int sent = 0; (sent < 5 || icn_sender_pending(s) > 0) && icn_now() - t0 < 10;) {
        if (sent < 5 && icn_sender_room(s) > 0) {
            assert_int_equal(icn_sender_send(s, &b, err, sizeof err), 0);
            sent++;
        }
        assert_int_equal(icn_sender_pump(s, 10, err, sizeof err), 0);
        icn_zmq_peer from;
        uint8_t *data;
        size_t len;
        while (icn_zmq_recv_buf(router, &from, 0, &data, &len, err, sizeof err) == 1) {
            icn_msg m;
            assert_int_equal(icn_msg_decode(data, len, ICN_MSG_BATCH, 1, &m, err, sizeof err), 0);
            free(data);
            assert_true(m.producer == icn_sender_producer(s));
            int dup = 0;
            for (int i = 0; i < n_seen; i++) dup |= seen[i] == m.seq;
            if (!dup) seen[n_seen++] = m.seq, stored++;
            if (m.seq == 2 && !dropped++) { /* lose the first answer to batch 2 */
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
    }
    const icn_sender_counts *c = icn_sender_counts_of(s);
    assert_int_equal(icn_sender_pending(s), 0);
    assert_int_equal(c->acked, 5);
    assert_int_equal(c->images_acked, 10);
    assert_true(c->resent >= 1);
    assert_int_equal(stored, 5);
    for (int i = 0; i < n_seen; i++) assert_true(seen[i] >= 1 && seen[i] <= 5);
    icn_sender_close(s);
    icn_zmq_close(router);
    icn_batch_free(&b);
}

/* A shared frame is sent without copying and freed once ZeroMQ and its owner let go. */
static void test_a_shared_frame_is_sent_without_copying_and_freed_once(void **state) {
    (void)state;
    char err[ICN_ERRLEN], ep[64];
    snprintf(ep, sizeof ep, "inproc://shared-%d", (int)getpid());
    void *pull = icn_zmq_open(ZMQ_PULL, ep, 1, err, sizeof err), *push = icn_zmq_open(ZMQ_PUSH, ep, 0, err, sizeof err);
    assert_non_null(pull);
    assert_non_null(push);
    char *data = xmalloc(100000);
    memset(data, 7, 100000);
    icn_shared *s = icn_shared_take(data, 100000);
    for (int i = 0; i < 3; i++) assert_int_equal(icn_zmq_send_shared(push, s, err, sizeof err), 0);
    icn_shared_release(s); /* ZeroMQ still holds the messages in flight */
    for (int i = 0; i < 3; i++) {
        icn_zmq_frame f;
        assert_int_equal(icn_zmq_recv_frame(pull, &f, 2000, err, sizeof err), 1);
        assert_int_equal(f.len, 100000);
        assert_ptr_equal(f.data, data); /* the same buffer: inproc passes it without a copy */
        assert_int_equal(f.data[99999], 7);
        icn_zmq_frame_close(&f);
    }
    icn_zmq_close(push), icn_zmq_close(pull);
}

int main(void) {
    icn_set_progname("test_protocol");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_ack_and_refused_messages_round_trip),
        cmocka_unit_test(test_end_and_begin_are_requests_without_keys),
        cmocka_unit_test(test_control_and_model_messages_are_decoded_once),
        cmocka_unit_test(test_fetch_records_stats_and_error_messages_round_trip),
        cmocka_unit_test(test_a_request_gets_its_reply),
        cmocka_unit_test(test_request_timeout_recreates_socket),
        cmocka_unit_test(test_a_receive_times_out_and_a_multipart_message_arrives_whole),
        cmocka_unit_test(test_key_files_are_checked),
        cmocka_unit_test(test_only_loopback_endpoints_may_go_without_keys),
        cmocka_unit_test(test_zap_admits_only_allowed_keys),
        cmocka_unit_test(test_sender_resends_until_acknowledged),
        cmocka_unit_test(test_a_shared_frame_is_sent_without_copying_and_freed_once),
    };
    int rc = cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
    icn_zmq_term();
    return rc;
}
