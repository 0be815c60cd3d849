/* test_prefetch.c: the trainer's reader of the pool (lib/prefetch.c) against a fake pool (a REP
 * socket on inproc in a thread, answering "fetch" with records [offset, min(offset + max,
 * available)) of a fixed store, where the test decides how many are available): the reader
 * with a thread hands over exactly the records, in the same order and bytes, that the direct
 * reader fetches; a wait returns once records came; a take at another offset is refused; the
 * pool's error reaches the caller. */
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
#include <zmq.h>

#include "prefetch.h"
#include "protocol.h"
#include "transport.h"
#include "util.h"

enum { N = 40, H = 4, W = 3 };

typedef struct {
    char endpoint[64];
    void *rep;
    icn_batch store;
    int available, stop, refuse; /* atomics: set by the test */
    int requests;
} fake_pool;

static void *serve(void *arg) {
    fake_pool *f = arg;
    char err[ICN_ERRLEN];
    while (!__atomic_load_n(&f->stop, __ATOMIC_SEQ_CST)) {
        uint8_t *data;
        size_t len;
        if (icn_zmq_recv_buf(f->rep, NULL, 20, &data, &len, err, sizeof err) != 1) continue;
        icn_msg m;
        assert_int_equal(icn_msg_decode(data, len, ICN_MSG_FETCH, 0, &m, err, sizeof err), 0);
        free(data);
        __atomic_add_fetch(&f->requests, 1, __ATOMIC_SEQ_CST);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        int avail = __atomic_load_n(&f->available, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&f->refuse, __ATOMIC_SEQ_CST)) {
            icn_pack_error(&sb, "store unreadable");
        } else {
            int64_t from = m.offset < avail ? m.offset : avail, to = from + m.max < avail ? from + m.max : avail;
            icn_batch part = {0};
            if (to > from) {
                icn_batch_alloc(&part, (int32_t)(to - from), H, W, 1, 1);
                memcpy(part.x, f->store.x + from * H * W, (size_t)(to - from) * H * W * sizeof(float));
                memcpy(part.y, f->store.y + from, (size_t)(to - from) * sizeof(int32_t));
                part.prov = xmalloc((size_t)(to - from) * sizeof *part.prov);
                memcpy(part.prov, f->store.prov + from, (size_t)(to - from) * sizeof *part.prov);
            }
            icn_pack_records(&sb, m.offset, avail, &part);
            icn_batch_free(&part);
        }
        assert_int_equal(icn_zmq_send_sbuffer(f->rep, &sb, err, sizeof err), 0);
        msgpack_sbuffer_destroy(&sb);
        icn_msg_free(&m);
    }
    return NULL;
}

static void pool_start(fake_pool *f, pthread_t *t) {
    char err[ICN_ERRLEN];
    static int count;
    snprintf(f->endpoint, sizeof f->endpoint, "inproc://prefetch-%d-%d", (int)getpid(), count++);
    f->rep = icn_zmq_open_with(ZMQ_REP, f->endpoint, 1, &(icn_zmq_opts){0}, err, sizeof err);
    assert_non_null(f->rep);
    icn_batch_alloc(&f->store, N, H, W, 1, 1);
    f->store.prov = xcalloc(N, sizeof *f->store.prov);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < H * W; j++) f->store.x[i * H * W + j] = (float)i + 0.01f * (float)j;
        f->store.y[i] = -(i % 3) - 1;
        f->store.prov[i] = (icn_provenance){.generation = 1 + i / 10, .steps = i, .producer = 1};
    }
    assert_int_equal(pthread_create(t, NULL, serve, f), 0);
}

static void pool_stop(fake_pool *f, pthread_t t) {
    __atomic_store_n(&f->stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(t, NULL);
    icn_zmq_close(f->rep);
    icn_batch_free(&f->store);
}

static const int64_t MAX_REPLY = 1 << 20;

/* Take everything held or fetchable from *offset on into all; returns how many came. */
static int64_t take_all(icn_prefetch *p, int64_t *offset, icn_batch *all) {
    char err[ICN_ERRLEN];
    int64_t got = 0;
    for (;;) {
        icn_batch b;
        int64_t total;
        assert_int_equal(icn_prefetch_take(p, *offset, &b, &total, err, sizeof err), 1);
        if (b.n == 0) return got;
        assert_true(*offset + b.n <= total);
        assert_int_equal(b.prov[0].steps, *offset); /* in pool order, from the offset asked for */
        assert_int_equal(icn_batch_append(all, &b, err, sizeof err), 0);
        *offset += b.n, got += b.n;
        icn_batch_free(&b);
    }
}

static void test_thread_hands_over_what_direct_fetches(void **state) {
    (void)state;
    fake_pool f = {0};
    pthread_t t;
    pool_start(&f, &t);
    char err[ICN_ERRLEN];
    icn_prefetch *bg = icn_prefetch_open(f.endpoint, 5, MAX_REPLY, 1, 1 << 20, err, sizeof err);
    assert_non_null(bg);
    int64_t at = 5;
    icn_batch ahead = {0}, direct = {0};
    /* nothing yet: a wait times out, a take finds nothing */
    double t0 = icn_now();
    icn_prefetch_wait(bg, 100, 10);
    assert_true(icn_now() - t0 >= 0.09);
    assert_int_equal(take_all(bg, &at, &ahead), 0);
    /* records come: the wait returns with them held (well before its 10 s) */
    __atomic_store_n(&f.available, 23, __ATOMIC_SEQ_CST);
    t0 = icn_now();
    while (at < 23 && icn_now() - t0 < 10) {
        icn_prefetch_wait(bg, 10000, 10);
        take_all(bg, &at, &ahead);
    }
    assert_int_equal(at, 23);
    __atomic_store_n(&f.available, N, __ATOMIC_SEQ_CST);
    while (at < N && icn_now() - t0 < 10) {
        icn_prefetch_wait(bg, 10000, 10);
        take_all(bg, &at, &ahead);
    }
    assert_int_equal(at, N);
    assert_true(icn_prefetch_taken_ahead(bg) == N - 5);
    /* a take elsewhere than where the thread reads is refused */
    icn_batch b;
    int64_t total;
    assert_int_equal(icn_prefetch_take(bg, 7, &b, &total, err, sizeof err), -1);
    assert_non_null(strstr(err, "asked for record 7"));
    icn_prefetch_close(bg);
    /* the direct reader, from the same offset: the same records, byte for byte */
    icn_prefetch *d = icn_prefetch_open(f.endpoint, 5, MAX_REPLY, 0, 0, err, sizeof err);
    int64_t at2 = 5;
    assert_int_equal(take_all(d, &at2, &direct), N - 5);
    assert_int_equal(icn_prefetch_taken_ahead(d), 0);
    icn_prefetch_close(d);
    assert_int_equal(ahead.n, direct.n);
    assert_memory_equal(ahead.x, direct.x, (size_t)ahead.n * H * W * sizeof(float));
    assert_memory_equal(ahead.y, direct.y, (size_t)ahead.n * sizeof(int32_t));
    for (int32_t i = 0; i < ahead.n; i++) {
        assert_int_equal(ahead.prov[i].steps, 5 + i);
        assert_int_equal(ahead.prov[i].steps, direct.prov[i].steps);
        assert_int_equal(ahead.prov[i].generation, direct.prov[i].generation);
    }
    icn_batch_free(&ahead), icn_batch_free(&direct);
    pool_stop(&f, t);
}

static void test_pool_error_reaches_the_caller(void **state) {
    (void)state;
    fake_pool f = {0};
    pthread_t t;
    pool_start(&f, &t);
    __atomic_store_n(&f.available, 10, __ATOMIC_SEQ_CST);
    char err[ICN_ERRLEN];
    icn_prefetch *bg = icn_prefetch_open(f.endpoint, 0, MAX_REPLY, 1, 1 << 20, err, sizeof err);
    int64_t at = 0;
    icn_batch all = {0};
    double t0 = icn_now();
    while (at < 10 && icn_now() - t0 < 10) {
        icn_prefetch_wait(bg, 10000, 10);
        take_all(bg, &at, &all);
    }
    assert_int_equal(at, 10);
    __atomic_store_n(&f.refuse, 1, __ATOMIC_SEQ_CST);
    icn_batch b;
    int64_t total;
    int rc = 1;
    t0 = icn_now();
    while (rc == 1 && icn_now() - t0 < 10) { /* the thread's next look meets the error */
        icn_prefetch_wait(bg, 1000, 10);
        rc = icn_prefetch_take(bg, at, &b, &total, err, sizeof err);
        if (rc == 1) assert_int_equal(b.n, 0);
    }
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "store unreadable"));
    icn_prefetch_close(bg);
    icn_batch_free(&all);
    pool_stop(&f, t);
}

int main(void) {
    icn_set_progname("test_prefetch");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_hands_over_what_direct_fetches),
        cmocka_unit_test(test_pool_error_reaches_the_caller),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (rc == 0) icn_zmq_term(); /* after a failed check sockets may be open: term would wait */
    return rc;
}
