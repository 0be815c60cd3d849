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
#include "protocol.h" /* the stats reply */
#include "transport.h"
#include "fileio.h"
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

static const icn_pool_contract K = {4, 3, 1, 10, -1.0f, 1.0f, 0};

static icn_pool *open_ok(const char *path, int mode) {
    char err[2 * ICN_ERRLEN] = "";
    icn_pool *p = NULL;
    int rc = icn_pool_open(path, mode, mode == ICN_POOL_CREATE ? &K : NULL, &p, err, sizeof err);
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

/* A pool of `n` one-record batches, closed. offs[i]: where batch i (its record) starts; offs[n]:
 * the file size. A batch is the record frame, then its commit marker of cm bytes (peer "local"). */
static const long CM = ICN_POOL_FRAME_HEAD + ICN_POOL_COMMIT_FIXED + 5 + ICN_POOL_FRAME_TAIL;
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

/* Every record of the store at path equals all's images idx[0..n). */
static void expect_records(const char *path, const icn_batch *all, const int *idx, int n) {
    icn_pool *p = open_ok(path, ICN_POOL_READ);
    assert_int_equal(icn_pool_count(p), n);
    icn_batch got;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_pool_read(p, 0, 1000, &got, err, sizeof err), 0);
    assert_int_equal(got.n, n);
    for (int i = 0; i < n; i++) assert_images_equal(all, idx[i], &got, i);
    icn_batch_free(&got);
    close_ok(p);
}

/* ------------------------------------------------------------ the store */

static void test_a_pool_gives_back_what_was_appended(void **state) {
    (void)state;
    const char *path = tmp_path("rt.icnpool");
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    assert_int_equal(icn_pool_count(p), 0);
    int32_t h, w, c;
    assert_int_equal(icn_pool_shape(p, &h, &w, &c), 1); /* from the contract, before any record */
    assert_int_equal(h * 100 + w * 10 + c, 431);
    icn_batch a, b, got;
    make_negatives(&a, 5, 4, 3, 1);
    make_negatives(&b, 3, 4, 3, 2);
    append_ok(p, &a);
    append_ok(p, &b);
    assert_int_equal(icn_pool_count(p), 8);

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
    assert_int_equal(icn_pool_read(p, 4, 2, &got, err, sizeof err), 0); /* across a commit marker */
    assert_images_equal(&a, 4, &got, 0);
    assert_images_equal(&b, 0, &got, 1);
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

/* Cutting the file anywhere inside the last batch (record or commit marker) leaves a torn tail:
 * opening for writing cuts the whole batch off with a note naming its byte offset, and every
 * earlier record is intact. */
static void test_torn_tail_is_cut_off(void **state) {
    (void)state;
    const char *orig = tmp_path("torn-orig.icnpool"), *path = tmp_path("torn.icnpool");
    icn_batch all;
    long offs[5];
    build_pool(orig, 4, &all, offs);
    long last = offs[3], size = offs[4];
    char want[64];
    snprintf(want, sizeof want, "torn tail at byte %ld", last);
    int tried = 0;
    for (long cut = 1; cut < size - last; cut++, tried++) {
        copy_file(orig, path);
        assert_int_equal(truncate(path, size - cut), 0);

        icn_pool *p = open_ok(path, ICN_POOL_READ); /* read-only: reported, ignored, left alone */
        assert_int_equal(icn_pool_count(p), 3);
        assert_non_null(strstr(icn_pool_note(p), "ignored"));
        close_ok(p);
        assert_int_equal(file_size(path), size - cut);

        p = open_ok(path, ICN_POOL_WRITE);
        if (!strstr(icn_pool_note(p), want)) fail_msg("cut %ld: note '%s' lacks '%s'", cut, icn_pool_note(p), want);
        assert_non_null(strstr(icn_pool_note(p), "cut off"));
        if (cut <= CM) assert_non_null(strstr(icn_pool_note(p), "uncommitted batch: 1 complete record"));
        assert_int_equal(icn_pool_count(p), 3);
        assert_int_equal(file_size(path), last);
        /* the repaired pool takes appends again, and reopens clean */
        icn_batch one = {1, all.h, all.w, all.c, all.x + 3 * icn_batch_dim(&all), all.y + 3, all.prov + 3};
        append_ok(p, &one);
        close_ok(p);
        p = open_ok(path, ICN_POOL_WRITE);
        assert_string_equal(icn_pool_note(p), "");
        close_ok(p);
        assert_int_equal(file_size(path), size);
        expect_records(path, &all, (int[]){0, 1, 2, 3}, 4);
    }
    assert_true(tried > 100);

    /* So is a zero-filled tail (what some file systems leave after a crash), also in place of
     * the commit marker and the record's end. */
    for (int k = 0; k < 3; k++) {
        copy_file(orig, path);
        long from = k == 0 ? size : k == 1 ? size - CM : size - CM - 10;
        int fd = open(path, O_WRONLY);
        uint8_t zeros[200] = {0};
        assert_int_equal(pwrite(fd, zeros, sizeof zeros, from), (ssize_t)sizeof zeros);
        close(fd);
        icn_pool *p = open_ok(path, ICN_POOL_WRITE);
        const char *want_why = k == 2 ? "does not repeat its beginning" : "zero-filled";
        if (!strstr(icn_pool_note(p), want_why)) fail_msg("k %d: %s", k, icn_pool_note(p));
        assert_int_equal(icn_pool_count(p), k == 0 ? 4 : 3);
        close_ok(p);
        assert_int_equal(file_size(path), k == 0 ? size : last);
    }
    icn_batch_free(&all);
}

/* Issue 16, finding 6: a rotted byte in the LAST record (or its commit marker) of a committed
 * batch is damage, not a torn tail: nothing is cut off, the open fails naming it. */
static void test_rot_in_the_last_batch_is_damage(void **state) {
    (void)state;
    const char *orig = tmp_path("rot-orig.icnpool"), *path = tmp_path("rot.icnpool");
    icn_batch all;
    long offs[5];
    build_pool(orig, 4, &all, offs);
    long last = offs[3], size = offs[4], cm = size - CM;
    struct { long at; const char *what; } spots[] = {
        {last + ICN_POOL_FRAME_HEAD + 20, "record 3"},      /* the record's payload */
        {cm - 3, "record 3"},                               /* the record's end (its length) */
        {last + 1, "record 3"},                             /* the record's magic */
        {cm + ICN_POOL_FRAME_HEAD + 3, "commit marker"},    /* the commit's payload */
        {size - 2, "commit marker"},                        /* the commit's end */
        {cm + 5, "commit marker"},                          /* the commit's length */
    };
    char err[2 * ICN_ERRLEN];
    for (size_t k = 0; k < sizeof spots / sizeof spots[0]; k++) {
        copy_file(orig, path);
        flip_byte(path, spots[k].at);
        icn_pool *p = NULL;
        assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, NULL, &p, err, sizeof err), -1);
        if (!strstr(err, spots[k].what) || !strstr(err, "is damaged")) fail_msg("spot %zu: %s", k, err);
        assert_int_equal(file_size(path), size); /* nothing was cut */
        assert_int_equal(icn_pool_open(path, ICN_POOL_READ, NULL, &p, err, sizeof err), -1);
    }
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
    flip_byte(path, offs[1] + ICN_POOL_FRAME_HEAD + 20);
    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, NULL, &p, err, sizeof err), -1);
    assert_null(p);
    snprintf(want, sizeof want, "record 1 at byte %ld is damaged", offs[1]);
    if (!strstr(err, want)) fail_msg("'%s' lacks '%s'", err, want);
    assert_non_null(strstr(err, "CRC"));
    assert_non_null(strstr(err, "mid.icnpool"));
    assert_non_null(strstr(err, "icn-pool repair"));
    assert_int_equal(file_size(path), offs[4]); /* nothing was cut */
    assert_int_equal(icn_pool_open(path, ICN_POOL_READ, NULL, &p, err, sizeof err), -1);

    copy_file(orig, path); /* the magic of record 2 */
    flip_byte(path, offs[2]);
    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, NULL, &p, err, sizeof err), -1);
    snprintf(want, sizeof want, "record 2 at byte %ld", offs[2]);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "magic"));

    copy_file(orig, path); /* the length of record 1: huge, or past the end of the file */
    for (int k = 0; k < 2; k++) {
        copy_file(orig, path);
        flip_byte(path, offs[1] + (k ? 5 : 7));
        assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, NULL, &p, err, sizeof err), -1);
        snprintf(want, sizeof want, "record 1 at byte %ld", offs[1]);
        if (!strstr(err, want)) fail_msg("'%s' lacks '%s'", err, want);
        assert_int_equal(file_size(path), offs[4]); /* nothing was cut */
    }

    copy_file(orig, path); /* the commit marker of batch 1 */
    flip_byte(path, offs[2] - CM + ICN_POOL_FRAME_HEAD + 1);
    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, NULL, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "commit marker"));

    copy_file(orig, path); /* not a pool at all */
    flip_byte(path, 3);
    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, NULL, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "not an icn pool"));
    copy_file(orig, path); /* a damaged header: its contract cannot be trusted */
    flip_byte(path, 33);
    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, NULL, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "header is damaged"));

    const char *empty = tmp_path("empty.icnpool");
    close(open(empty, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    assert_int_equal(icn_pool_open(empty, ICN_POOL_READ, NULL, &p, err, sizeof err), -1);
    assert_int_equal(icn_pool_open(tmp_path("missing.icnpool"), ICN_POOL_WRITE, NULL, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
    icn_batch_free(&all);
}

/* check lists every damaged span; repair copies every intact record, never touching the source. */
typedef struct {
    int damaged, torn;
    long at[8];
} problems;

static void note_problem(void *ctx, uint64_t offset, uint64_t bytes, int torn, const char *what) {
    problems *q = ctx;
    (void)bytes, (void)what;
    if (torn) q->torn++;
    else if (q->damaged < 8) q->at[q->damaged++] = (long)offset;
}

static void test_check_finds_the_damage_and_repair_copies_what_is_intact(void **state) {
    (void)state;
    const char *orig = tmp_path("cr-orig.icnpool"), *path = tmp_path("cr.icnpool"), *out = tmp_path("cr-new.icnpool");
    icn_batch all;
    long offs[7];
    build_pool(orig, 6, &all, offs);
    char err[2 * ICN_ERRLEN];
    icn_pool_report r;
    problems q = {0};
    assert_int_equal(icn_pool_check(orig, note_problem, &q, &r, err, sizeof err), 0);
    assert_int_equal(q.damaged + q.torn, 0);
    assert_int_equal(r.records, 6);
    assert_int_equal(r.batches, 6);

    copy_file(orig, path); /* records 1 and 4 damaged, and a torn tail after the last batch */
    flip_byte(path, offs[1] + ICN_POOL_FRAME_HEAD + 20);
    flip_byte(path, offs[4] + 1);
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "ICNR\x10\x00\x00\x00", 8), 8);
    close(fd);
    long size = file_size(path);
    memset(&q, 0, sizeof q);
    assert_int_equal(icn_pool_check(path, note_problem, &q, &r, err, sizeof err), 0);
    assert_int_equal(q.damaged, 2);
    assert_int_equal(q.at[0], offs[1]);
    assert_int_equal(q.at[1], offs[4]);
    assert_int_equal(q.torn, 1);
    assert_int_equal(r.damaged, 2);
    assert_int_equal(r.records, 4);
    assert_int_equal(r.torn_at, (uint64_t)offs[6]);
    assert_int_equal(r.torn_bytes, 8);

    unlink(out);
    memset(&q, 0, sizeof q);
    assert_int_equal(icn_pool_repair(path, out, note_problem, &q, &r, err, sizeof err), 0);
    assert_int_equal(q.damaged, 2);
    assert_int_equal(r.records, 4);
    assert_int_equal(file_size(path), size); /* the source is untouched */
    expect_records(out, &all, (int[]){0, 2, 3, 5}, 4);
    icn_pool *a = NULL;
    assert_int_equal(icn_pool_open(path, ICN_POOL_READ, NULL, &a, err, sizeof err), -1); /* damaged: refused */
    icn_pool *orig_p = open_ok(orig, ICN_POOL_READ), *b = open_ok(out, ICN_POOL_WRITE);
    assert_memory_not_equal(icn_pool_uuid(orig_p), icn_pool_uuid(b), 16); /* a new store, a new identity */
    assert_memory_equal(icn_pool_contract_of(b), &K, sizeof K);
    close_ok(b);
    close_ok(orig_p);
    assert_int_equal(icn_pool_repair(path, out, NULL, NULL, &r, err, sizeof err), -1); /* never overwrites */
    assert_non_null(strstr(err, "exists"));
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

    bad.y[1] = -11; /* class 10 of a 10-class pool */
    assert_int_equal(icn_pool_append(p, &bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "class 10, but the pool has 10 classes"));
    bad.y[1] = -10; /* class 9: fine */
    bad.x[7] = 1.5f; /* outside [-1, 1]; so is 3e38, issue 13's poison */
    assert_int_equal(icn_pool_append(p, &bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "outside the pool's range [-1, 1]"));
    bad.x[7] = -3e38f;
    assert_int_equal(icn_pool_append(p, &bad, err, sizeof err), -1);
    bad.x[7] = -1.0f;

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

/* Issue 13: the shape comes from the contract, never from the first record. */
static void test_a_batch_of_another_shape_than_the_contract_s_is_refused(void **state) {
    (void)state;
    const char *path = tmp_path("shape.icnpool");
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    icn_batch a, b, tiny;
    make_negatives(&a, 2, 4, 3, 1);
    make_negatives(&b, 2, 3, 4, 1); /* same size, other shape */
    make_negatives(&tiny, 1, 1, 1, 1);
    char err[ICN_ERRLEN];
    assert_int_equal(icn_pool_append(p, &tiny, err, sizeof err), -1); /* a 1x1x1 first record locks nothing */
    assert_non_null(strstr(err, "1x1x1 does not match the pool's 4x3x1"));
    append_ok(p, &a);
    assert_int_equal(icn_pool_append(p, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "3x4x1 does not match the pool's 4x3x1"));
    close_ok(p);
    p = open_ok(path, ICN_POOL_WRITE); /* the shape survives a reopen */
    assert_int_equal(icn_pool_append(p, &b, err, sizeof err), -1);
    assert_int_equal(icn_pool_count(p), 2);
    close_ok(p);
    icn_batch_free(&a);
    icn_batch_free(&b);
    icn_batch_free(&tiny);
}

/* The contract and the UUID live in the header: a new store needs a contract, an existing one
 * keeps its own and refuses another; the UUID survives reopening and differs between stores. */
static void test_the_contract_and_the_uuid_live_in_the_header(void **state) {
    (void)state;
    const char *path = tmp_path("id.icnpool"), *other = tmp_path("id2.icnpool");
    char err[2 * ICN_ERRLEN];
    icn_pool *p = NULL, *q = NULL;
    unlink(path);
    assert_int_equal(icn_pool_open(path, ICN_POOL_CREATE, NULL, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "--shape"));
    assert_int_equal(access(path, F_OK), -1); /* a failed create leaves no file behind */
    icn_pool_contract bad = K;
    bad.classes = 0;
    assert_int_equal(icn_pool_open(path, ICN_POOL_CREATE, &bad, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "classes"));
    bad = K, bad.lo = NAN;
    assert_int_equal(icn_pool_open(path, ICN_POOL_CREATE, &bad, &p, err, sizeof err), -1);

    icn_pool_contract k = K;
    k.quota_per_generation = 7, k.lo = 0.0f;
    assert_int_equal(icn_pool_open(path, ICN_POOL_CREATE, &k, &p, err, sizeof err), 0);
    uint8_t id[16];
    memcpy(id, icn_pool_uuid(p), 16);
    assert_int_equal(id[6] >> 4, 4); /* version 4 */
    char s[ICN_UUID_STRLEN];
    icn_uuid_format(id, s);
    uint8_t back[16];
    assert_int_equal(icn_uuid_parse(s, back), 0);
    assert_memory_equal(back, id, 16);
    assert_int_equal(icn_uuid_parse("not-a-uuid", back), -1);
    close_ok(p);

    assert_int_equal(icn_pool_open(path, ICN_POOL_READ, NULL, &p, err, sizeof err), 0);
    assert_memory_equal(icn_pool_uuid(p), id, 16);
    assert_memory_equal(icn_pool_contract_of(p), &k, sizeof k);
    close_ok(p);
    assert_int_equal(icn_pool_open(path, ICN_POOL_CREATE, &k, &p, err, sizeof err), 0); /* the same: fine */
    assert_memory_equal(icn_pool_uuid(p), id, 16);
    close_ok(p);
    assert_int_equal(icn_pool_open(path, ICN_POOL_CREATE, &K, &p, err, sizeof err), -1); /* another: refused */
    assert_non_null(strstr(err, "the store's contract is 4x3x1, 10 classes, pixels in [0, 1], quota 7"));
    assert_non_null(strstr(err, "asked for 4x3x1, 10 classes, pixels in [-1, 1], no quota"));

    unlink(other);
    assert_int_equal(icn_pool_open(other, ICN_POOL_CREATE, &k, &q, err, sizeof err), 0);
    assert_memory_not_equal(icn_pool_uuid(q), id, 16);
    icn_pool_counts c;
    icn_pool_stats(q, &c);
    icn_uuid_format(icn_pool_uuid(q), s);
    assert_string_equal(c.uuid, s);
    icn_pool_counts_free(&c);
    close_ok(q);

    /* a header cut short by a crash while creating is written again */
    assert_int_equal(truncate(other, 30), 0);
    assert_int_equal(icn_pool_open(other, ICN_POOL_READ, NULL, &q, err, sizeof err), -1);
    assert_int_equal(icn_pool_open(other, ICN_POOL_CREATE, &k, &q, err, sizeof err), 0);
    assert_non_null(strstr(icn_pool_note(q), "rewritten"));
    close_ok(q);
    assert_int_equal(file_size(other), ICN_POOL_HEADER_LEN);

    /* a FIFO or a directory is refused at once, not read (a FIFO would block) */
    const char *fifo = tmp_path("fifo.icnpool");
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(icn_pool_open(fifo, ICN_POOL_READ, NULL, &q, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(icn_pool_open(fifo, ICN_POOL_CREATE, &K, &q, err, sizeof err), -1);
    icn_pool_report rep;
    assert_int_equal(icn_pool_check(fifo, NULL, NULL, &rep, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));
    unlink(fifo);

    /* version 1 is named, not mistaken for garbage */
    const char *v1 = tmp_path("v1.icnpool");
    int fd = open(v1, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_int_equal(write(fd, "ICNPOOL1ICNR\x01\x00\x00\x00\x00\x00\x00\x00\x00", 21), 21);
    close(fd);
    assert_int_equal(icn_pool_open(v1, ICN_POOL_CREATE, &K, &q, err, sizeof err), -1);
    assert_non_null(strstr(err, "version-1 pool (\"ICNPOOL1\""));
    assert_int_equal(file_size(v1), 21);
}

/* Exactly-once: a (peer, producer, seq) stored before is a duplicate, before and after
 * reopening; other producers are independent. */
static void test_a_seq_stored_before_is_a_duplicate_even_after_reopening(void **state) {
    (void)state;
    const char *path = tmp_path("once.icnpool"), *out = tmp_path("once-repaired.icnpool");
    unlink(path);
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    icn_batch a, b;
    make_negatives(&a, 3, 4, 3, 1);
    make_negatives(&b, 2, 4, 3, 2);
    char err[ICN_ERRLEN];
    const uint64_t P1 = 0x1234567890abcdefull, P2 = 0xfedcba0987654321ull;
    icn_pool_origin o = {"peerA", P1, 1};
    assert_int_equal(icn_pool_append_batch(p, &a, &o, err, sizeof err), 0);
    long size = file_size(path);
    assert_int_equal(icn_pool_append_batch(p, &a, &o, err, sizeof err), 1); /* resent: acknowledged again */
    assert_int_equal(icn_pool_count(p), 3);
    assert_int_equal(file_size(path), size);
    o.seq = 2;
    assert_int_equal(icn_pool_append_batch(p, &b, &o, err, sizeof err), 0);
    icn_pool_origin o2 = {"peerB", P2, 1};
    assert_int_equal(icn_pool_append_batch(p, &b, &o2, err, sizeof err), 0); /* another producer */
    assert_true(icn_pool_has_seq(p, "peerA", P1, 2));
    assert_false(icn_pool_has_seq(p, "peerA", P1, 3));
    assert_true(icn_pool_has_seq(p, "peerB", P2, 1));
    assert_false(icn_pool_has_seq(p, "peerA", P2, 1)); /* seqs are per (peer, producer) */
    assert_false(icn_pool_has_seq(p, "peerA", 77, 1));
    assert_false(icn_pool_has_seq(p, "nobody", P1, 1));
    assert_int_equal(icn_pool_duplicates(p), 1);
    close_ok(p);

    p = open_ok(path, ICN_POOL_WRITE); /* rebuilt from the commit markers */
    assert_true(icn_pool_has_seq(p, "peerA", P1, 1) && icn_pool_has_seq(p, "peerA", P1, 2));
    assert_true(icn_pool_has_seq(p, "peerB", P2, 1));
    assert_int_equal(icn_pool_duplicates(p), 0); /* counted since opening */
    o.seq = 1;
    assert_int_equal(icn_pool_append_batch(p, &a, &o, err, sizeof err), 1);
    o.seq = 2;
    assert_int_equal(icn_pool_append_batch(p, &b, &o, err, sizeof err), 1);
    o.seq = 3;
    assert_int_equal(icn_pool_append_batch(p, &a, &o, err, sizeof err), 0);
    assert_int_equal(icn_pool_count(p), 10);
    o.seq = 0;
    assert_int_equal(icn_pool_append_batch(p, &a, &o, err, sizeof err), -1);
    o.seq = 4, o.producer = 0;
    assert_int_equal(icn_pool_append_batch(p, &a, &o, err, sizeof err), -1);
    o.producer = P1, o.peer = "";
    assert_int_equal(icn_pool_append_batch(p, &a, &o, err, sizeof err), -1);
    assert_int_equal(icn_pool_count(p), 10);
    close_ok(p);

    /* repair keeps the origins: the copied store still knows what it holds */
    unlink(out);
    icn_pool_report r;
    assert_int_equal(icn_pool_repair(path, out, NULL, NULL, &r, err, sizeof err), 0);
    p = open_ok(out, ICN_POOL_WRITE);
    assert_int_equal(icn_pool_count(p), 10);
    assert_true(icn_pool_has_seq(p, "peerA", P1, 3));
    o = (icn_pool_origin){"peerA", P1, 3};
    assert_int_equal(icn_pool_append_batch(p, &a, &o, err, sizeof err), 1);
    close_ok(p);
    icn_batch_free(&a);
    icn_batch_free(&b);
}

/* An acknowledgement means stored, for any order a peer sends its seqs in (issue 24, item 2):
 * (a) a seq whose batch was refused is free: the same seq sent later with a batch that keeps
 * the contract is stored, not acknowledged as a duplicate; */
static void test_a_refused_seq_sent_again_with_a_good_batch_is_stored(void **state) {
    (void)state;
    const char *path = tmp_path("refused-seq.icnpool");
    unlink(path);
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    icn_batch good, bad;
    make_negatives(&good, 2, 4, 3, 1);
    make_negatives(&bad, 2, 4, 3, 2);
    bad.y[0] = 3; /* a positive label: refused */
    char err[ICN_ERRLEN];
    icn_pool_origin o = {"peerA", 0x1111, 1};
    assert_int_equal(icn_pool_append_batch(p, &bad, &o, err, sizeof err), -1);
    o.seq = 2;
    assert_int_equal(icn_pool_append_batch(p, &good, &o, err, sizeof err), 0);
    o.seq = 1;
    assert_int_equal(icn_pool_append_batch(p, &good, &o, err, sizeof err), 0);
    assert_int_equal(icn_pool_count(p), 4);
    assert_int_equal(icn_pool_append_batch(p, &good, &o, err, sizeof err), 1); /* now it is a duplicate */
    icn_pool_counts c;
    icn_pool_stats(p, &c);
    assert_int_equal(c.duplicates, 1);
    icn_pool_counts_free(&c);
    close_ok(p);
    p = open_ok(path, ICN_POOL_WRITE); /* and stays one after reopening */
    assert_int_equal(icn_pool_append_batch(p, &good, &o, err, sizeof err), 1);
    o.seq = 2;
    assert_int_equal(icn_pool_append_batch(p, &good, &o, err, sizeof err), 1);
    assert_int_equal(icn_pool_count(p), 4);
    close_ok(p);
    icn_batch_free(&good);
    icn_batch_free(&bad);
}

/* (b) a seq skipped and sent after a higher one (1, 2, 3, 5, then 4) is stored; */
static void test_a_seq_that_arrives_after_a_higher_one_is_stored(void **state) {
    (void)state;
    const char *path = tmp_path("gap-seq.icnpool");
    unlink(path);
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    icn_batch a;
    make_negatives(&a, 1, 4, 3, 3);
    char err[ICN_ERRLEN];
    const uint64_t seqs[] = {1, 2, 3, 5, 4};
    for (int i = 0; i < 5; i++) {
        icn_pool_origin o = {"peerA", 0x2222, seqs[i]};
        assert_int_equal(icn_pool_append_batch(p, &a, &o, err, sizeof err), 0);
    }
    assert_int_equal(icn_pool_count(p), 5);
    close_ok(p);
    p = open_ok(path, ICN_POOL_WRITE);
    for (uint64_t s = 1; s <= 5; s++) {
        icn_pool_origin o = {"peerA", 0x2222, s};
        assert_int_equal(icn_pool_append_batch(p, &a, &o, err, sizeof err), 1);
    }
    icn_pool_origin o = {"peerA", 0x2222, 7}; /* a gap again: 6 is free */
    assert_int_equal(icn_pool_append_batch(p, &a, &o, err, sizeof err), 0);
    o.seq = 6;
    assert_int_equal(icn_pool_append_batch(p, &a, &o, err, sizeof err), 0);
    assert_int_equal(icn_pool_count(p), 7);
    close_ok(p);
    icn_batch_free(&a);
}

/* (c) seqs belong to the authenticated peer and its producer id together: a peer that uses
 * another's producer id with a high seq does not make the other's later batches duplicates. */
static void test_one_peer_cannot_take_another_peers_seqs(void **state) {
    (void)state;
    const char *path = tmp_path("poison-seq.icnpool");
    unlink(path);
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    icn_batch a;
    make_negatives(&a, 1, 4, 3, 4);
    char err[ICN_ERRLEN];
    const uint64_t P = 0x3333;
    icn_pool_origin honest = {"peerA", P, 1}, thief = {"peerB", P, 1000};
    assert_int_equal(icn_pool_append_batch(p, &a, &honest, err, sizeof err), 0);
    assert_int_equal(icn_pool_append_batch(p, &a, &thief, err, sizeof err), 0);
    honest.seq = 2;
    assert_int_equal(icn_pool_append_batch(p, &a, &honest, err, sizeof err), 0);
    thief.seq = 2; /* the honest peer's seq under the thief's name: its own stream, stored */
    assert_int_equal(icn_pool_append_batch(p, &a, &thief, err, sizeof err), 0);
    assert_int_equal(icn_pool_count(p), 4);
    close_ok(p);
    p = open_ok(path, ICN_POOL_WRITE);
    honest.seq = 3;
    assert_int_equal(icn_pool_append_batch(p, &a, &honest, err, sizeof err), 0);
    honest.seq = 1000;
    assert_int_equal(icn_pool_append_batch(p, &a, &honest, err, sizeof err), 0);
    thief.seq = 1000;
    assert_int_equal(icn_pool_append_batch(p, &a, &thief, err, sizeof err), 1);
    assert_int_equal(icn_pool_count(p), 6);
    close_ok(p);
    icn_batch_free(&a);
}

/* Refusals are counted per peer with the reason; the quota counts records per (peer, generation),
 * across reopening (the commit markers name the peer). */
static void test_refusals_are_counted_per_peer_and_the_quota_per_generation(void **state) {
    (void)state;
    const char *path = tmp_path("quota.icnpool");
    unlink(path);
    icn_pool_contract k = K;
    k.quota_per_generation = 5;
    char err[2 * ICN_ERRLEN];
    icn_pool *p = NULL;
    assert_int_equal(icn_pool_open(path, ICN_POOL_CREATE, &k, &p, err, sizeof err), 0);
    icn_batch a, wrong;
    make_negatives(&a, 3, 4, 3, 1); /* generation 1 */
    make_negatives(&wrong, 2, 2, 2, 1);
    icn_pool_origin x = {"keyX", 11, 1}, y = {"keyY", 22, 1};
    assert_int_equal(icn_pool_append_batch(p, &a, &x, err, sizeof err), 0);
    x.seq = 2;
    assert_int_equal(icn_pool_append_batch(p, &a, &x, err, sizeof err), -1); /* 6 > 5 */
    assert_non_null(strstr(err, "refused (quota): peer keyX would hold 6 records of generation 1"));
    assert_int_equal(icn_pool_append_batch(p, &a, &y, err, sizeof err), 0); /* another peer: its own quota */
    a.prov[0].generation = a.prov[1].generation = a.prov[2].generation = 2;
    assert_int_equal(icn_pool_append_batch(p, &a, &x, err, sizeof err), 0); /* another generation */
    y.seq = 2;
    assert_int_equal(icn_pool_append_batch(p, &wrong, &y, err, sizeof err), -1);
    assert_non_null(strstr(err, "refused (shape)"));
    close_ok(p);

    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, NULL, &p, err, sizeof err), 0);
    a.prov[0].generation = a.prov[1].generation = a.prov[2].generation = 1;
    x.seq = 3;
    assert_int_equal(icn_pool_append_batch(p, &a, &x, err, sizeof err), -1); /* still 3 stored: 6 > 5 */
    a.n = 2;
    assert_int_equal(icn_pool_append_batch(p, &a, &x, err, sizeof err), 0); /* 5: at the quota, fine */
    a.n = 3;
    a.x[0] = NAN;
    y.seq = 3;
    assert_int_equal(icn_pool_append_batch(p, &a, &y, err, sizeof err), -1);
    icn_pool_count_refusal(p, "keyY", "frame", 1);
    icn_pool_counts c;
    icn_pool_stats(p, &c);
    assert_int_equal(c.total, 11);
    assert_int_equal(c.n_rejects, 3); /* since this open: (keyX, quota), (keyY, nonfinite), (keyY, frame) */
    int seen = 0;
    for (size_t i = 0; i < c.n_rejects; i++) {
        const icn_pool_reject *r = &c.rejects[i];
        if (!strcmp(r->peer, "keyX") && !strcmp(r->reason, "quota") && r->count == 3) seen |= 1;
        if (!strcmp(r->peer, "keyY") && !strcmp(r->reason, "nonfinite") && r->count == 3) seen |= 2;
        if (!strcmp(r->peer, "keyY") && !strcmp(r->reason, "frame") && r->count == 1) seen |= 4;
    }
    assert_int_equal(seen, 7);
    /* through the stats message */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_pool_stats(&sb, &c, 4, 0, 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(icn_frame_unpack((const uint8_t *)sb.data, sb.size, &u, err, sizeof err), 0);
    icn_pool_counts d;
    int64_t rejected, failures;
    int ended;
    assert_int_equal(icn_decode_pool_stats(&u.data, &d, &rejected, &failures, &ended, err, sizeof err), 0);
    assert_string_equal(d.uuid, c.uuid);
    assert_int_equal(d.n_rejects, 3);
    assert_memory_equal(d.rejects, c.rejects, 3 * sizeof *c.rejects);
    assert_int_equal(d.duplicates, c.duplicates);
    icn_pool_counts_free(&d);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    icn_pool_counts_free(&c);
    close_ok(p);
    icn_batch_free(&a);
    icn_batch_free(&wrong);
}

static void test_the_stats_count_records_per_class_and_generation(void **state) {
    (void)state;
    const char *path = tmp_path("stats.icnpool");
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    icn_batch a, b;
    make_negatives(&a, 6, 4, 3, 0); /* classes 0 1 2 0 1 2, generation 0, producer 100 */
    make_negatives(&b, 4, 4, 3, 7); /* classes 1 2 0 1,     generation 7, producer 107 */
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
    icn_pack_pool_stats(&sb, &d, 42, 0, 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    char err[ICN_ERRLEN];
    assert_int_equal(icn_frame_unpack((const uint8_t *)sb.data, sb.size, &u, err, sizeof err), 0);
    int64_t rejected = -1, failures = -1;
    int ended = -1;
    assert_int_equal(icn_decode_pool_stats(&u.data, &e, &rejected, &failures, &ended, err, sizeof err), 0);
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

static void test_fsync_policies_parse_and_a_store_has_one_writer_at_a_time(void **state) {
    (void)state;
    icn_fsync_policy f;
    assert_int_equal(icn_fsync_parse("always", &f), 0);
    assert_int_equal(f, ICN_FSYNC_ALWAYS);
    assert_int_equal(icn_fsync_parse("sometimes", &f), -1);
    const char *path = tmp_path("fsync.icnpool");
    icn_pool *p = open_ok(path, ICN_POOL_CREATE);
    icn_batch a;
    make_negatives(&a, 3, 4, 3, 1);
    icn_fsync_policy pol[] = {ICN_FSYNC_ALWAYS, ICN_FSYNC_NONE, ICN_FSYNC_BATCH};
    for (int i = 0; i < 3; i++) {
        icn_pool_set_fsync(p, pol[i]);
        append_ok(p, &a);
    }
    /* one writer at a time; readers are welcome */
    icn_pool *q = NULL;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_pool_open(path, ICN_POOL_WRITE, NULL, &q, err, sizeof err), -1);
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
        cmocka_unit_test(test_a_pool_gives_back_what_was_appended),
        cmocka_unit_test(test_reopen_keeps_everything),
        cmocka_unit_test(test_torn_tail_is_cut_off),
        cmocka_unit_test(test_rot_in_the_last_batch_is_damage),
        cmocka_unit_test(test_damage_in_the_middle_is_an_error),
        cmocka_unit_test(test_check_finds_the_damage_and_repair_copies_what_is_intact),
        cmocka_unit_test(test_the_contract_and_the_uuid_live_in_the_header),
        cmocka_unit_test(test_a_seq_stored_before_is_a_duplicate_even_after_reopening),
        cmocka_unit_test(test_a_refused_seq_sent_again_with_a_good_batch_is_stored),
        cmocka_unit_test(test_a_seq_that_arrives_after_a_higher_one_is_stored),
        cmocka_unit_test(test_one_peer_cannot_take_another_peers_seqs),
        cmocka_unit_test(test_refusals_are_counted_per_peer_and_the_quota_per_generation),
        cmocka_unit_test(test_append_refuses_bad_batches),
        cmocka_unit_test(test_a_batch_of_another_shape_than_the_contract_s_is_refused),
        cmocka_unit_test(test_the_stats_count_records_per_class_and_generation),
        cmocka_unit_test(test_fsync_policies_parse_and_a_store_has_one_writer_at_a_time),
    };
    int rc = cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
    icn_zmq_term();
    return rc;
}
