/* test_pool.c: the durable pseudo-negative store (lib/pool.c) and the pool protocol and
 * ZeroMQ helpers (lib/transport.c). Files live in a fresh temporary directory; sockets use
 * inproc:// or tcp://127.0.0.1 on a port the kernel picked. */
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

#include "pool.h"
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
        b->y[i] = -((seed + i) % 3) - 1; /* classes 0, 1, 2 */
        b->prov[i] = (icn_provenance){seed, 10 + i, 0.25f * (float)i - 1.0f, (uint8_t)(i & 1), 100u + (uint32_t)seed};
    }
}

static void assert_images_equal(const icn_batch *a, int32_t ai, const icn_batch *b, int32_t bi) {
    size_t d = icn_batch_dim(a);
    assert_int_equal(icn_batch_dim(b), d);
    assert_memory_equal(a->x + (size_t)ai * d, b->x + (size_t)bi * d, d * sizeof(float));
    assert_int_equal(a->y[ai], b->y[bi]);
    const icn_provenance *p = &a->prov[ai], *q = &b->prov[bi];
    assert_int_equal(p->generation, q->generation);
    assert_int_equal(p->steps, q->steps);
    assert_true(p->logit == q->logit);
    assert_int_equal(p->reached, q->reached);
    assert_int_equal(p->producer, q->producer);
}

static icn_pool *open_ok(const char *path, int mode) {
    char err[2 * ICN_ERRLEN] = "";
    icn_pool *p = NULL;
    int rc = icn_pool_open(path, mode, &p, err, sizeof err);
    if (rc) fail_msg("icn_pool_open(%s): %s", path, err);
    return p;
}

static void close_ok(icn_pool *p) {
    char err[ICN_ERRLEN];
    assert_int_equal(icn_pool_close(p, err, sizeof err), 0);
}

static void append_ok(icn_pool *p, const icn_batch *b) {
    char err[ICN_ERRLEN] = "";
    int rc = icn_pool_append(p, b, err, sizeof err);
    if (rc) fail_msg("icn_pool_append: %s", err);
}

static long file_size(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

/* A pool of `n` records (one per append of a 1-image batch), closed; returns the byte offset
 * of each record in offs (n + 1 entries: the last is the file size). */
static void build_pool(const char *path, int n, icn_batch *all, long *offs) {
    unlink(path);
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    make_negatives(all, n, 4, 3, 5);
    offs[0] = ICN_POOL_HEADER_LEN;
    for (int i = 0; i < n; i++) {
        icn_batch one = {1, all->h, all->w, all->c, all->x + (size_t)i * icn_batch_dim(all), all->y + i, all->prov + i};
        append_ok(p, &one);
        close_ok(p);
        offs[i + 1] = file_size(path);
        p = open_ok(path, ICN_POOL_WRITE);
    }
    close_ok(p);
}

static void flip_byte(const char *path, long at) {
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

static void copy_file(const char *from, const char *to) {
    uint8_t *data;
    size_t len;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_read_file(from, (size_t)1 << 30, &data, &len, err, sizeof err), 0);
    assert_int_equal(icn_write_file_atomic(to, data, len, err, sizeof err), 0);
    free(data);
}

/* ------------------------------------------------------------ the store */

static void test_append_read_roundtrip(void **state) {
    (void)state;
    const char *path = tmp_path("rt.icnpool");
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    assert_int_equal(icn_pool_count(p), 0);
    int32_t h, w, c;
    assert_int_equal(icn_pool_shape(p, &h, &w, &c), 0);
    icn_batch a, b, got;
    make_negatives(&a, 5, 4, 3, 1);
    make_negatives(&b, 3, 4, 3, 2);
    append_ok(p, &a);
    append_ok(p, &b);
    assert_int_equal(icn_pool_count(p), 8);
    assert_int_equal(icn_pool_shape(p, &h, &w, &c), 1);
    assert_int_equal(h * 100 + w * 10 + c, 431);

    char err[ICN_ERRLEN];
    assert_int_equal(icn_pool_read(p, 0, 100, &got, err, sizeof err), 0);
    assert_int_equal(got.n, 8);
    assert_non_null(got.prov);
    for (int i = 0; i < 5; i++) assert_images_equal(&a, i, &got, i);
    for (int i = 0; i < 3; i++) assert_images_equal(&b, i, &got, 5 + i);
    icn_batch_free(&got);

    assert_int_equal(icn_pool_read(p, 6, 10, &got, err, sizeof err), 0); /* [6, 16) ∩ [0, 8) */
    assert_int_equal(got.n, 2);
    assert_images_equal(&b, 1, &got, 0);
    icn_batch_free(&got);
    assert_int_equal(icn_pool_read(p, 3, 1, &got, err, sizeof err), 0);
    assert_int_equal(got.n, 1);
    assert_images_equal(&a, 3, &got, 0);
    icn_batch_free(&got);
    assert_int_equal(icn_pool_read(p, 8, 5, &got, err, sizeof err), 0);
    assert_int_equal(got.n, 0);
    assert_null(got.x);
    assert_int_equal(icn_pool_read(p, 100, 5, &got, err, sizeof err), 0);
    assert_int_equal(got.n, 0);
    assert_int_equal(icn_pool_read(p, -1, 5, &got, err, sizeof err), -1);
    assert_non_null(strstr(err, ">= 0"));

    close_ok(p);
    icn_batch_free(&a);
    icn_batch_free(&b);
}

static void test_reopen_keeps_everything(void **state) {
    (void)state;
    const char *path = tmp_path("reopen.icnpool");
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    icn_batch a, b, got;
    make_negatives(&a, 7, 4, 3, 3);
    make_negatives(&b, 2, 4, 3, 4);
    append_ok(p, &a);
    close_ok(p);

    p = open_ok(path, ICN_POOL_WRITE);
    assert_string_equal(icn_pool_note(p), "");
    assert_int_equal(icn_pool_count(p), 7);
    append_ok(p, &b); /* appending after a reopen continues the file */
    close_ok(p);

    p = open_ok(path, ICN_POOL_READ);
    assert_int_equal(icn_pool_count(p), 9);
    char err[ICN_ERRLEN];
    assert_int_equal(icn_pool_read(p, 0, 9, &got, err, sizeof err), 0);
    for (int i = 0; i < 7; i++) assert_images_equal(&a, i, &got, i);
    for (int i = 0; i < 2; i++) assert_images_equal(&b, i, &got, 7 + i);
    icn_batch_free(&got);
    assert_int_equal(icn_pool_append(p, &b, err, sizeof err), -1); /* read-only */
    close_ok(p);
    icn_batch_free(&a);
    icn_batch_free(&b);
}

/* Truncating the file by 1..N bytes inside the last record leaves a torn record: opening for
 * writing cuts it off with a note naming its byte offset, and every earlier record is intact. */
static void test_torn_tail_is_cut_off(void **state) {
    (void)state;
    const char *orig = tmp_path("torn-orig.icnpool"), *path = tmp_path("torn.icnpool");
    icn_batch all;
    long offs[5];
    build_pool(orig, 4, &all, offs);
    long last = offs[3], size = offs[4], reclen = size - last;
    long cuts[] = {1, 2, 3, 5, 11, 12, 13, 40, reclen - 13, reclen - 12, reclen - 11, reclen - 1};
    char want[64];
    snprintf(want, sizeof want, "torn record 3 at byte %ld", last);
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        copy_file(orig, path);
        assert_int_equal(truncate(path, size - cuts[k]), 0);

        icn_pool *p = open_ok(path, ICN_POOL_READ); /* read-only: reported, ignored, left alone */
        assert_int_equal(icn_pool_count(p), 3);
        assert_non_null(strstr(icn_pool_note(p), "ignored"));
        close_ok(p);
        assert_int_equal(file_size(path), size - cuts[k]);

        p = open_ok(path, ICN_POOL_WRITE);
        if (!strstr(icn_pool_note(p), want)) fail_msg("cut %ld: note '%s' lacks '%s'", cuts[k], icn_pool_note(p), want);
        assert_non_null(strstr(icn_pool_note(p), "cut off"));
        assert_int_equal(icn_pool_count(p), 3);
        assert_int_equal(file_size(path), last);
        icn_batch got;
        char err[ICN_ERRLEN];
        assert_int_equal(icn_pool_read(p, 0, 10, &got, err, sizeof err), 0);
        assert_int_equal(got.n, 3);
        for (int i = 0; i < 3; i++) assert_images_equal(&all, i, &got, i);
        icn_batch_free(&got);
        /* the repaired pool takes appends again, and reopens clean */
        icn_batch one = {1, all.h, all.w, all.c, all.x + 3 * icn_batch_dim(&all), all.y + 3, all.prov + 3};
        append_ok(p, &one);
        close_ok(p);
        p = open_ok(path, ICN_POOL_WRITE);
        assert_string_equal(icn_pool_note(p), "");
        assert_int_equal(icn_pool_count(p), 4);
        close_ok(p);
        assert_int_equal(file_size(path), size);
    }

    /* A bad CRC in the LAST record is a torn append too. */
    copy_file(orig, path);
    flip_byte(path, size - 2);
    icn_pool *p = open_ok(path, ICN_POOL_WRITE);
    assert_non_null(strstr(icn_pool_note(p), want));
    assert_non_null(strstr(icn_pool_note(p), "CRC"));
    assert_int_equal(icn_pool_count(p), 3);
    close_ok(p);

    /* So is a zero-filled tail (what some file systems leave after a crash). */
    copy_file(orig, path);
    int fd = open(path, O_WRONLY | O_APPEND);
    uint8_t zeros[100] = {0};
    assert_int_equal(write(fd, zeros, sizeof zeros), (ssize_t)sizeof zeros);
    close(fd);
    p = open_ok(path, ICN_POOL_WRITE);
    assert_non_null(strstr(icn_pool_note(p), "zero-filled"));
    assert_int_equal(icn_pool_count(p), 4);
    close_ok(p);
    assert_int_equal(file_size(path), size);
    icn_batch_free(&all);
}

static void test_damage_in_the_middle_is_an_error(void **state) {
    (void)state;
    const char *orig = tmp_path("mid-orig.icnpool"), *path = tmp_path("mid.icnpool");
    icn_batch all;
    long offs[5];
    build_pool(orig, 4, &all, offs);
    char err[2 * ICN_ERRLEN], want[64];
    icn_pool *p = NULL;

    copy_file(orig, path); /* a payload byte of record 1 */
    flip_byte(path, offs[1] + ICN_POOL_RECORD_HEADER + 20);
    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, &p, err, sizeof err), -1);
    assert_null(p);
    snprintf(want, sizeof want, "record 1 at byte %ld is damaged", offs[1]);
    if (!strstr(err, want)) fail_msg("'%s' lacks '%s'", err, want);
    assert_non_null(strstr(err, "CRC"));
    assert_non_null(strstr(err, "mid.icnpool"));
    assert_int_equal(file_size(path), offs[4]); /* nothing was cut */
    assert_int_equal(icn_pool_open(path, ICN_POOL_READ, &p, err, sizeof err), -1);

    copy_file(orig, path); /* the magic of record 2 */
    flip_byte(path, offs[2]);
    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, &p, err, sizeof err), -1);
    snprintf(want, sizeof want, "record 2 at byte %ld", offs[2]);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "magic"));

    copy_file(orig, path); /* the length of record 1: huge */
    flip_byte(path, offs[1] + 7);
    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, &p, err, sizeof err), -1);
    snprintf(want, sizeof want, "record 1 at byte %ld", offs[1]);
    assert_non_null(strstr(err, want));

    copy_file(orig, path); /* the length of record 1: past the end of the file, yet no torn append */
    flip_byte(path, offs[1] + 5);
    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, &p, err, sizeof err), -1);
    if (!strstr(err, want)) fail_msg("'%s' lacks '%s'", err, want);
    assert_non_null(strstr(err, "complete"));
    assert_int_equal(file_size(path), offs[4]); /* nothing was cut */

    copy_file(orig, path); /* not a pool at all */
    flip_byte(path, 3);
    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "not an icn pool"));

    const char *empty = tmp_path("empty.icnpool");
    close(open(empty, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    assert_int_equal(icn_pool_open(empty, ICN_POOL_READ, &p, err, sizeof err), -1);
    assert_int_equal(icn_pool_open(tmp_path("missing.icnpool"), ICN_POOL_WRITE, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
    icn_batch_free(&all);
}

/* Refused batches store nothing: not a record, not a byte. */
static void test_append_refuses_bad_batches(void **state) {
    (void)state;
    const char *path = tmp_path("refuse.icnpool");
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    icn_batch good, bad;
    make_negatives(&good, 2, 4, 3, 1);
    append_ok(p, &good);
    long size = file_size(path);
    char err[ICN_ERRLEN];

    make_negatives(&bad, 3, 4, 3, 2);
    bad.y[2] = 4; /* a real example, not a pseudo-negative: the whole batch goes */
    assert_int_equal(icn_pool_append(p, &bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "label 4"));
    bad.y[2] = 0;
    assert_int_equal(icn_pool_append(p, &bad, err, sizeof err), -1);
    bad.y[2] = -1;

    icn_provenance *prov = bad.prov;
    bad.prov = NULL;
    assert_int_equal(icn_pool_append(p, &bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "provenance"));
    bad.prov = prov;

    int32_t *y = bad.y;
    bad.y = NULL;
    assert_int_equal(icn_pool_append(p, &bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "labels"));
    bad.y = y;

    bad.x[5] = NAN;
    assert_int_equal(icn_pool_append(p, &bad, err, sizeof err), -1);
    bad.x[5] = 0;
    bad.prov[1].logit = INFINITY;
    assert_int_equal(icn_pool_append(p, &bad, err, sizeof err), -1);
    bad.prov[1].logit = 0;

    icn_batch none = {0};
    assert_int_equal(icn_pool_append(p, &none, err, sizeof err), -1);

    assert_int_equal(icn_pool_count(p), 2);
    assert_int_equal(file_size(path), size);
    append_ok(p, &bad); /* repaired, it goes in */
    assert_int_equal(icn_pool_count(p), 5);
    close_ok(p);
    p = open_ok(path, ICN_POOL_READ);
    assert_int_equal(icn_pool_count(p), 5);
    close_ok(p);
    icn_batch_free(&good);
    icn_batch_free(&bad);
}

static void test_shape_mismatch_refused(void **state) {
    (void)state;
    const char *path = tmp_path("shape.icnpool");
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    icn_batch a, b;
    make_negatives(&a, 2, 4, 3, 1);
    make_negatives(&b, 2, 3, 4, 1); /* same size, other shape */
    append_ok(p, &a);
    char err[ICN_ERRLEN];
    assert_int_equal(icn_pool_append(p, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "3x4x1 does not match the pool's 4x3x1"));
    close_ok(p);
    p = open_ok(path, ICN_POOL_WRITE); /* the shape survives a reopen */
    assert_int_equal(icn_pool_append(p, &b, err, sizeof err), -1);
    assert_int_equal(icn_pool_count(p), 2);
    close_ok(p);
    icn_batch_free(&a);
    icn_batch_free(&b);
}

static void test_stats_counts(void **state) {
    (void)state;
    const char *path = tmp_path("stats.icnpool");
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    icn_batch a, b;
    make_negatives(&a, 6, 2, 2, 0); /* classes 0 1 2 0 1 2, generation 0, producer 100 */
    make_negatives(&b, 4, 2, 2, 7); /* classes 1 2 0 1,     generation 7, producer 107 */
    append_ok(p, &a);
    append_ok(p, &b);
    icn_pool_counts c;
    icn_pool_stats(p, &c);
    assert_int_equal(c.total, 10);
    assert_int_equal(c.n_class, 3);
    int64_t want_class[3] = {3, 4, 3};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(c.per_class[k].key, k);
        assert_int_equal(c.per_class[k].count, want_class[k]);
    }
    assert_int_equal(c.n_generation, 2);
    assert_int_equal(c.per_generation[0].key, 0);
    assert_int_equal(c.per_generation[0].count, 6);
    assert_int_equal(c.per_generation[1].key, 7);
    assert_int_equal(c.per_generation[1].count, 4);
    assert_int_equal(c.n_producer, 2);
    assert_int_equal(c.per_producer[1].key, 107);
    assert_int_equal(c.per_producer[1].count, 4);

    /* the same counts after a reopen (rebuilt by the scan) and through the stats message */
    close_ok(p);
    p = open_ok(path, ICN_POOL_READ);
    icn_pool_counts d, e;
    icn_pool_stats(p, &d);
    assert_int_equal(d.total, 10);
    assert_int_equal(d.n_class, 3);
    assert_memory_equal(d.per_class, c.per_class, 3 * sizeof *c.per_class);
    assert_memory_equal(d.per_generation, c.per_generation, 2 * sizeof *c.per_generation);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_pool_stats(&sb, &d, 42);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    char err[ICN_ERRLEN];
    assert_int_equal(icn_frame_unpack((const uint8_t *)sb.data, sb.size, &u, err, sizeof err), 0);
    int64_t rejected = -1;
    assert_int_equal(icn_decode_pool_stats(&u.data, &e, &rejected, err, sizeof err), 0);
    assert_int_equal(rejected, 42);
    assert_int_equal(e.total, 10);
    assert_int_equal(e.n_producer, 2);
    assert_memory_equal(e.per_producer, c.per_producer, 2 * sizeof *c.per_producer);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    icn_pool_counts_free(&c);
    icn_pool_counts_free(&d);
    icn_pool_counts_free(&e);
    close_ok(p);
    icn_batch_free(&a);
    icn_batch_free(&b);
}

static void test_fsync_policies_and_lock(void **state) {
    (void)state;
    icn_fsync_policy f;
    assert_int_equal(icn_fsync_parse("always", &f), 0);
    assert_int_equal(f, ICN_FSYNC_ALWAYS);
    assert_int_equal(icn_fsync_parse("sometimes", &f), -1);
    const char *path = tmp_path("fsync.icnpool");
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    icn_batch a;
    make_negatives(&a, 3, 2, 2, 1);
    icn_fsync_policy pol[] = {ICN_FSYNC_ALWAYS, ICN_FSYNC_NONE, ICN_FSYNC_BATCH};
    for (int i = 0; i < 3; i++) {
        icn_pool_set_fsync(p, pol[i]);
        append_ok(p, &a);
    }
    /* one writer at a time; readers are welcome */
    icn_pool *q = NULL;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, &q, err, sizeof err), -1);
    assert_non_null(strstr(err, "in use"));
    q = open_ok(path, ICN_POOL_READ);
    assert_int_equal(icn_pool_count(q), 9);
    close_ok(q);
    close_ok(p);
    p = open_ok(path, ICN_POOL_WRITE);
    assert_int_equal(icn_pool_count(p), 9);
    close_ok(p);
    icn_batch_free(&a);
}

int main(void) {
    icn_set_progname("test_pool");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_read_roundtrip),
        cmocka_unit_test(test_reopen_keeps_everything),
        cmocka_unit_test(test_torn_tail_is_cut_off),
        cmocka_unit_test(test_damage_in_the_middle_is_an_error),
        cmocka_unit_test(test_append_refuses_bad_batches),
        cmocka_unit_test(test_shape_mismatch_refused),
        cmocka_unit_test(test_stats_counts),
        cmocka_unit_test(test_fsync_policies_and_lock),
    };
    int rc = cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
    icn_zmq_term();
    return rc;
}
