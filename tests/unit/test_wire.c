/* test_wire.c: the msgpack walker, frame reader, map helpers and batch messages.
 * Every hostile input here must give an error or "incomplete", never a crash or a leak
 * (run under ASan/valgrind to see the latter). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bytes.h"
#include "util.h"
#include "fileio.h"
#include "wire.h"

#define GIB ((size_t)1 << 30)

/* ------------------------------------------------------------ helpers */

static void make_batch(icn_batch *b, int32_t n, int labels, int prov) {
    icn_batch_alloc(b, n, 3, 2, 2, labels);
    for (size_t i = 0; i < (size_t)n * icn_batch_dim(b); i++) b->x[i] = (float)i * 0.25f - 1.0f;
    for (int32_t i = 0; labels && i < n; i++) b->y[i] = i % 2 ? i : -(i + 1);
    if (!prov) return;
    b->prov = xcalloc((size_t)n, sizeof(icn_provenance));
    for (int32_t i = 0; i < n; i++)
        b->prov[i] = (icn_provenance){i + 7, 100 - i, 0.5f * (float)i - 3.0f, (uint8_t)(i & 1), 0xdeadbe00u + (uint32_t)i};
}

static void assert_batch_equal(const icn_batch *a, const icn_batch *b) {
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->h, b->h);
    assert_int_equal(a->w, b->w);
    assert_int_equal(a->c, b->c);
    assert_memory_equal(a->x, b->x, (size_t)a->n * icn_batch_dim(a) * sizeof(float));
    assert_int_equal(a->y == NULL, b->y == NULL);
    if (a->y) assert_memory_equal(a->y, b->y, (size_t)a->n * sizeof(int32_t));
    assert_int_equal(a->prov == NULL, b->prov == NULL);
    for (int32_t i = 0; a->prov && i < a->n; i++) {
        assert_int_equal(a->prov[i].generation, b->prov[i].generation);
        assert_int_equal(a->prov[i].steps, b->prov[i].steps);
        assert_true(a->prov[i].logit == b->prov[i].logit);
        assert_int_equal(a->prov[i].reached, b->prov[i].reached);
        assert_int_equal(a->prov[i].producer, b->prov[i].producer);
    }
}

static void pack_batch(const icn_batch *b, msgpack_sbuffer *sb) {
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    icn_batch_pack(&pk, b);
}

/* Unpack + decode; returns the decode status and the error in err. */
static int decode_bytes(const void *p, size_t n, icn_batch *out, char *err) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = icn_frame_unpack(p, n, &u, err, ICN_ERRLEN);
    if (rc == 0) rc = icn_batch_decode(&u.data, out, err, ICN_ERRLEN);
    else memset(out, 0, sizeof *out);
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* A batch frame built by hand, so that fields can be wrong on purpose. */
typedef struct {
    const char *kind;
    int ndims;
    int64_t dims[5];
    size_t xbytes, ybytes; /* ybytes = (size_t)-1: no y */
    float pixel0;          /* first pixel value */
    int with_prov;
    size_t logit_bytes;
    float logit0;
    uint8_t reached0;
} spec;

static spec good_spec(void) {
    return (spec){"batch", 4, {2, 2, 2, 1, 0}, 32, 8, 0.5f, 0, 8, 1.0f, 1};
}

static void pack_bin_filled(msgpack_packer *pk, const char *key, size_t len, uint8_t fill, const void *head,
                            size_t headlen) {
    uint8_t *buf = xcalloc(len ? len : 1, 1);
    memset(buf, fill, len);
    if (head && headlen <= len) memcpy(buf, head, headlen);
    msgpack_pack_str_with_body(pk, key, strlen(key));
    msgpack_pack_bin_with_body(pk, buf, len);
    free(buf);
}

static void pack_spec(const spec *s, msgpack_sbuffer *sb) {
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3 + (s->ybytes != (size_t)-1) + (s->with_prov != 0));
    msgpack_pack_str_with_body(&pk, "kind", 4);
    msgpack_pack_str_with_body(&pk, s->kind, strlen(s->kind));
    msgpack_pack_str_with_body(&pk, "shape", 5);
    msgpack_pack_array(&pk, (size_t)s->ndims);
    for (int i = 0; i < s->ndims; i++) msgpack_pack_int64(&pk, s->dims[i]);
    pack_bin_filled(&pk, "x", s->xbytes, 0, &s->pixel0, 4);
    if (s->ybytes != (size_t)-1) pack_bin_filled(&pk, "y", s->ybytes, 1, NULL, 0);
    if (!s->with_prov) return;
    msgpack_pack_str_with_body(&pk, "prov", 4);
    msgpack_pack_map(&pk, 5);
    pack_bin_filled(&pk, "generation", 8, 0, NULL, 0);
    pack_bin_filled(&pk, "steps", 8, 0, NULL, 0);
    pack_bin_filled(&pk, "logit", s->logit_bytes, 0, &s->logit0, 4);
    pack_bin_filled(&pk, "reached", 2, 0, &s->reached0, 1);
    pack_bin_filled(&pk, "producer", 8, 0, NULL, 0);
}

/* Decode a spec'd frame; on failure assert the error mentions `want`. */
static int try_spec(const spec *s, const char *want) {
    msgpack_sbuffer sb;
    pack_spec(s, &sb);
    icn_batch b;
    char err[ICN_ERRLEN] = "";
    int rc = decode_bytes(sb.data, sb.size, &b, err);
    if (rc == 0) icn_batch_free(&b);
    else if (want && !strstr(err, want)) fail_msg("error '%s' does not mention '%s'", err, want);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

#include "fixtures.h"

static void write_file(const char *path, const void *p, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(icn_write_all(fd, p, n, NULL, 0), 0);
    close(fd);
}

/* ------------------------------------------------------------ round trips */

static void test_roundtrip_plain(void **state) {
    (void)state;
    for (int variant = 0; variant < 3; variant++) {
        icn_batch a, b;
        make_batch(&a, 5, variant >= 1, variant == 2);
        msgpack_sbuffer sb;
        pack_batch(&a, &sb);
        char err[ICN_ERRLEN] = "";
        if (decode_bytes(sb.data, sb.size, &b, err)) fail_msg("variant %d: %s", variant, err);
        assert_batch_equal(&a, &b);
        icn_batch_free(&a);
        icn_batch_free(&b);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void test_write_read_chunks(void **state) {
    (void)state;
    icn_batch a, b;
    make_batch(&a, 10, 1, 1);
    char err[ICN_ERRLEN] = "";
    const char *path = tmp_path("out.icn");
    assert_int_equal(icn_batch_write_file(path, &a, 3, err, sizeof err), 0);
    if (icn_batch_read_all(path, &b, err, sizeof err)) fail_msg("%s", err);
    assert_batch_equal(&a, &b);
    icn_batch_free(&b);
    /* 10 images in chunks of 3: four frames. */
    icn_reader *r = icn_reader_open(path, err, sizeof err);
    assert_non_null(r);
    const uint8_t *f;
    size_t len;
    int frames = 0;
    while (icn_reader_next(r, &f, &len, err, sizeof err) == 1) frames++;
    assert_int_equal(frames, 4);
    icn_reader_close(r);
    icn_batch_free(&a);
}

static void test_read_all_empty_and_missing(void **state) {
    (void)state;
    icn_batch b;
    char err[ICN_ERRLEN] = "";
    write_file(tmp_path("stream"), "", 0);
    assert_int_equal(icn_batch_read_all(tmp_path("stream"), &b, err, sizeof err), 0);
    assert_int_equal(b.n, 0);
    icn_batch_free(&b);
    assert_int_equal(icn_batch_read_all(tmp_path("nonexistent"), &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "nonexistent"));
}

static void test_read_all_other_kind(void **state) {
    (void)state;
    msgpack_sbuffer sb;
    spec s = good_spec();
    s.kind = "model";
    pack_spec(&s, &sb);
    write_file(tmp_path("stream"), sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    icn_batch b;
    char err[ICN_ERRLEN] = "";
    assert_int_equal(icn_batch_read_all(tmp_path("stream"), &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "'model'"));
    assert_int_equal(b.n, 0);
}

static void test_append_mismatch(void **state) {
    (void)state;
    icn_batch a, b, c;
    make_batch(&a, 2, 1, 0);
    make_batch(&b, 3, 0, 0);
    char err[ICN_ERRLEN] = "";
    assert_int_equal(icn_batch_append(&a, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "labels"));
    icn_batch_alloc(&c, 1, 4, 4, 1, 1);
    assert_int_equal(icn_batch_append(&a, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "shape"));
    icn_batch_free(&a);
    icn_batch_free(&b);
    icn_batch_free(&c);
}

/* ------------------------------------------------------------ the walker */

static void test_every_prefix_incomplete(void **state) {
    (void)state;
    icn_batch a;
    make_batch(&a, 2, 1, 1);
    msgpack_sbuffer sb;
    pack_batch(&a, &sb);
    const uint8_t *p = (const uint8_t *)sb.data;
    size_t span = 0;
    char err[ICN_ERRLEN];
    for (size_t k = 0; k < sb.size; k++) {
        assert_int_equal(icn_msgpack_check(p, k, GIB, &span, err, sizeof err), 1);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        assert_int_equal(icn_frame_unpack(p, k, &u, err, sizeof err), -1);
        msgpack_unpacked_destroy(&u);
    }
    assert_int_equal(icn_msgpack_check(p, sb.size, GIB, &span, err, sizeof err), 0);
    assert_int_equal(span, sb.size);
    /* The same prefixes as streams: clean EOF for 0 bytes, "truncated" otherwise. */
    for (size_t k = 0; k < sb.size; k++) {
        write_file(tmp_path("prefix"), p, k);
        icn_reader *r = icn_reader_open(tmp_path("prefix"), err, sizeof err);
        const uint8_t *f;
        size_t len;
        int rc = icn_reader_next(r, &f, &len, err, sizeof err);
        assert_int_equal(rc, k == 0 ? 0 : -1);
        if (k) assert_non_null(strstr(err, "truncated frame at byte 0"));
        icn_reader_close(r);
    }
    icn_batch_free(&a);
    msgpack_sbuffer_destroy(&sb);
}

static void test_array32_header_rejected(void **state) {
    (void)state;
    const uint8_t bomb[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    size_t span;
    char err[ICN_ERRLEN] = "";
    assert_int_equal(icn_msgpack_check(bomb, sizeof bomb, GIB, &span, err, sizeof err), -1);
    assert_non_null(strstr(err, "array of 4294967295 elements"));
    assert_non_null(strstr(err, "frame limit"));
    /* map32: 2 bytes a pair. */
    const uint8_t mbomb[] = {0xdf, 0x80, 0x00, 0x00, 0x00};
    assert_int_equal(icn_msgpack_check(mbomb, sizeof mbomb, GIB, &span, err, sizeof err), -1);
    /* Within a larger limit it is only incomplete, and says what is missing. */
    uint8_t some[12] = {0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(icn_msgpack_check(some, sizeof some, (size_t)1 << 40, &span, err, sizeof err), 1);
    assert_non_null(strstr(err, "array of 4294967295 elements declared but only 12 bytes present"));
    /* And as a whole frame, incomplete is an error. */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(icn_frame_unpack(bomb, sizeof bomb, &u, err, sizeof err), -1);
    msgpack_unpacked_destroy(&u);
}

static void test_huge_lengths_rejected(void **state) {
    (void)state;
    const uint8_t bin32[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0};
    const uint8_t str32[] = {0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'};
    const uint8_t ext32[] = {0xc9, 0xff, 0xff, 0xff, 0xf0, 1};
    const uint8_t *cases[] = {bin32, str32, ext32};
    const char *want[] = {"bin length 4294967295 exceeds frame limit 1073741824", "str length", "ext length"};
    size_t span;
    char err[ICN_ERRLEN];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(icn_msgpack_check(cases[i], 6, GIB, &span, err, sizeof err), -1);
        if (!strstr(err, want[i])) fail_msg("'%s' lacks '%s'", err, want[i]);
    }
    /* Lengths that fit alone but not together: the sum is checked too. */
    const uint8_t two[15] = {0x92, 0xc4, 5, 1, 2, 3, 4, 5, 0xc4, 5, 1, 2, 3, 4, 5};
    assert_int_equal(icn_msgpack_check(two, sizeof two, 12, &span, err, sizeof err), -1);
    assert_non_null(strstr(err, "frame limit 12"));
    assert_int_equal(icn_msgpack_check(two, sizeof two, 1000, &span, err, sizeof err), 0);
    assert_int_equal(span, 15);
}

static void test_depth_bomb(void **state) {
    (void)state;
    uint8_t deep[64];
    size_t span;
    char err[ICN_ERRLEN];
    for (int d = 1; d <= 40; d++) {
        memset(deep, 0x91, (size_t)d); /* d nested one-element arrays around a nil */
        deep[d] = 0xc0;
        int rc = icn_msgpack_check(deep, (size_t)d + 1, GIB, &span, err, sizeof err);
        assert_int_equal(rc, d <= ICN_MAX_DEPTH ? 0 : -1);
        if (rc < 0) assert_non_null(strstr(err, "nesting deeper"));
    }
    /* A whole depth bomb of 100,000 levels costs nothing. */
    size_t n = 100000;
    uint8_t *big = xmalloc(n);
    memset(big, 0x81, n); /* fixmap of one pair, whose key is again a map ... */
    assert_int_equal(icn_msgpack_check(big, n, GIB, &span, err, sizeof err), -1);
    free(big);
    /* 32 levels of maps unpack fine in msgpack-c too. */
    uint8_t maps[32 * 3 + 1];
    for (int i = 0; i < 32; i++) {
        maps[3 * i] = 0x81;
        maps[3 * i + 1] = 0xa1;
        maps[3 * i + 2] = 'k';
    }
    maps[96] = 0x01;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(icn_frame_unpack(maps, sizeof maps, &u, err, sizeof err), 0);
    msgpack_unpacked_destroy(&u);
}

static void test_never_used_byte(void **state) {
    (void)state;
    const uint8_t bad[] = {0x82, 0xa1, 'a', 0x01, 0xa1, 'b', 0xc1};
    size_t span;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_msgpack_check(bad, sizeof bad, GIB, &span, err, sizeof err), -1);
    assert_non_null(strstr(err, "0xc1"));
    /* In a prefix that is otherwise incomplete it is still an error, not "need more". */
    const uint8_t bad2[] = {0x93, 0xc1};
    assert_int_equal(icn_msgpack_check(bad2, sizeof bad2, GIB, &span, err, sizeof err), -1);
}

static void test_all_formats(void **state) {
    (void)state;
    /* One of everything, packed by msgpack-c, then walked. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    static uint8_t blob[70000];
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "all", 3);
    msgpack_pack_array(&pk, 40);
    msgpack_pack_nil(&pk); msgpack_pack_true(&pk); msgpack_pack_false(&pk);
    msgpack_pack_int64(&pk, 5); msgpack_pack_int64(&pk, -5); msgpack_pack_int64(&pk, 200);
    msgpack_pack_int64(&pk, -100); msgpack_pack_int64(&pk, 40000); msgpack_pack_int64(&pk, -20000);
    msgpack_pack_int64(&pk, 3000000000LL); msgpack_pack_int64(&pk, -2000000000LL);
    msgpack_pack_uint64(&pk, UINT64_MAX); msgpack_pack_int64(&pk, INT64_MIN);
    msgpack_pack_float(&pk, 1.5f); msgpack_pack_double(&pk, 2.5);
    size_t lens[] = {3, 31, 200, 70000};
    for (int i = 0; i < 4; i++) msgpack_pack_str_with_body(&pk, blob, lens[i]);
    for (int i = 0; i < 4; i++) msgpack_pack_bin_with_body(&pk, blob, lens[i]);
    size_t extlens[] = {1, 2, 4, 8, 16, 3, 300, 70000};
    for (int i = 0; i < 8; i++) msgpack_pack_ext_with_body(&pk, blob, extlens[i], 7);
    msgpack_pack_array(&pk, 20);
    for (int i = 0; i < 20; i++) msgpack_pack_int64(&pk, i);
    msgpack_pack_map(&pk, 17);
    for (int i = 0; i < 17; i++) { msgpack_pack_int64(&pk, i); msgpack_pack_nil(&pk); }
    msgpack_pack_array(&pk, 0);
    msgpack_pack_map(&pk, 0);
    msgpack_pack_str(&pk, 0);
    for (int i = 0; i < 4; i++) msgpack_pack_nil(&pk);
    size_t span = 0;
    char err[ICN_ERRLEN] = "";
    const uint8_t *p = (const uint8_t *)sb.data;
    if (icn_msgpack_check(p, sb.size, GIB, &span, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(span, sb.size);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(icn_frame_unpack(p, sb.size, &u, err, sizeof err), 0);
    msgpack_unpacked_destroy(&u);
    /* Every proper prefix is incomplete, never invalid. */
    for (size_t k = 0; k < sb.size; k += (k < 400 ? 1 : 997))
        assert_int_equal(icn_msgpack_check(p, k, GIB, &span, err, sizeof err), 1);
    msgpack_sbuffer_destroy(&sb);
}

static void test_frame_unpack_shape(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const uint8_t arr[] = {0x91, 0x01};
    assert_int_equal(icn_frame_unpack(arr, sizeof arr, &u, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a map"));
    const uint8_t two[] = {0x80, 0x80};
    assert_int_equal(icn_frame_unpack(two, sizeof two, &u, err, sizeof err), -1);
    assert_non_null(strstr(err, "trailing"));
    assert_int_equal(icn_frame_unpack(two, 1, &u, err, sizeof err), 0);
    msgpack_unpacked_destroy(&u);
}

/* ------------------------------------------------------------ batch validation */

static void test_batch_validation(void **state) {
    (void)state;
    spec s = good_spec();
    assert_int_equal(try_spec(&s, NULL), 0);
    s.pixel0 = NAN;
    assert_int_equal(try_spec(&s, "NaN"), -1);
    s = good_spec();
    s.pixel0 = -INFINITY;
    assert_int_equal(try_spec(&s, "infinite"), -1);
    s = good_spec();
    s.xbytes = 28;
    assert_int_equal(try_spec(&s, "key 'x': bin of 28 bytes, expected 32"), -1);
    s = good_spec();
    s.ybytes = 12;
    assert_int_equal(try_spec(&s, "key 'y'"), -1);
    s = good_spec();
    s.ybytes = (size_t)-1; /* labels are optional */
    assert_int_equal(try_spec(&s, NULL), 0);
    s = good_spec();
    s.ndims = 3;
    assert_int_equal(try_spec(&s, "shape"), -1);
    s = good_spec();
    s.dims[2] = 0;
    assert_int_equal(try_spec(&s, "shape"), -1);
    s = good_spec();
    s.dims[1] = -3;
    assert_int_equal(try_spec(&s, "shape"), -1);
    s = good_spec();
    s.dims[0] = s.dims[1] = s.dims[2] = s.dims[3] = 1 << 24; /* product overflows 64 bits */
    assert_int_equal(try_spec(&s, "frame limit"), -1);
    s = good_spec();
    s.dims[1] = (1 << 24) + 1;
    assert_int_equal(try_spec(&s, "shape"), -1);
    s = good_spec();
    s.kind = "model";
    assert_int_equal(try_spec(&s, "'model'"), -1);
}

static void test_prov_validation(void **state) {
    (void)state;
    spec s = good_spec();
    s.with_prov = 1;
    assert_int_equal(try_spec(&s, NULL), 0);
    s.logit0 = NAN;
    assert_int_equal(try_spec(&s, "logit"), -1);
    s = good_spec();
    s.with_prov = 1;
    s.logit_bytes = 4;
    assert_int_equal(try_spec(&s, "logit"), -1);
    s = good_spec();
    s.with_prov = 1;
    s.reached0 = 2;
    assert_int_equal(try_spec(&s, "reached"), -1);
}

static void test_unknown_keys_ignored(void **state) {
    (void)state;
    icn_batch a, b;
    make_batch(&a, 2, 1, 0);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    icn_batch_pack(&pk, &a);
    /* Rewrite the map header to hold one more pair, appended at the end. */
    assert_int_equal((uint8_t)sb.data[0], 0x84);
    sb.data[0] = (char)0x85;
    msgpack_pack_str_with_body(&pk, "future", 6);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_nil(&pk);
    msgpack_pack_double(&pk, 1.0);
    char err[ICN_ERRLEN] = "";
    if (decode_bytes(sb.data, sb.size, &b, err)) fail_msg("%s", err);
    assert_batch_equal(&a, &b);
    icn_batch_free(&a);
    icn_batch_free(&b);
    msgpack_sbuffer_destroy(&sb);
}

static void test_map_helpers(void **state) {
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "kind", 4);
    msgpack_pack_str_with_body(&pk, "model", 5);
    msgpack_pack_str_with_body(&pk, "neg", 3);
    msgpack_pack_int64(&pk, -7);
    msgpack_pack_str_with_body(&pk, "big", 3);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_str_with_body(&pk, "lr", 2);
    msgpack_pack_double(&pk, 0.01);
    msgpack_pack_str_with_body(&pk, "bad", 3);
    msgpack_pack_double(&pk, NAN);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    char err[ICN_ERRLEN] = "", s[8];
    assert_int_equal(icn_frame_unpack((uint8_t *)sb.data, sb.size, &u, err, sizeof err), 0);
    const msgpack_object *m = &u.data;
    assert_true(icn_map_kind_is(m, "model"));
    assert_false(icn_map_kind_is(m, "batch"));
    assert_int_equal(icn_map_str(m, "kind", s, sizeof s, err, sizeof err), 0);
    assert_string_equal(s, "model");
    assert_int_equal(icn_map_str(m, "kind", s, 5, err, sizeof err), -1);
    assert_int_equal(icn_map_str(m, "neg", s, sizeof s, err, sizeof err), -1);
    assert_non_null(strstr(err, "'neg'"));
    int64_t v;
    assert_int_equal(icn_map_i64(m, "neg", -10, 10, &v, err, sizeof err), 0);
    assert_int_equal(v, -7);
    assert_int_equal(icn_map_i64(m, "neg", 0, 10, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(icn_map_i64(m, "big", 0, INT64_MAX, &v, err, sizeof err), -1);
    assert_int_equal(icn_map_i64(m, "missing", 0, 1, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "'missing' missing"));
    double d;
    assert_int_equal(icn_map_f64(m, "lr", &d, err, sizeof err), 0);
    assert_true(d == 0.01);
    assert_int_equal(icn_map_f64(m, "neg", &d, err, sizeof err), 0);
    assert_true(d == -7.0);
    assert_int_equal(icn_map_f64(m, "bad", &d, err, sizeof err), -1);
    assert_int_equal(icn_map_f64(m, "kind", &d, err, sizeof err), -1);
    const uint8_t *bin;
    assert_int_equal(icn_map_bin(m, "kind", 5, &bin, err, sizeof err), -1);
    assert_null(icn_map_get(m, "nothing"));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

/* ------------------------------------------------------------ the reader */

static void test_reader_from_trickling_pipe(void **state) {
    (void)state;
    icn_batch a;
    make_batch(&a, 7, 1, 1);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (int i = 0; i < 3; i++) icn_batch_pack(&pk, &a);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* a writer that hands over 5 bytes at a time */
        close(fds[0]);
        for (size_t off = 0; off < sb.size; off += 5) {
            size_t k = sb.size - off < 5 ? sb.size - off : 5;
            if (icn_write_all(fds[1], sb.data + off, k, NULL, 0)) _exit(1);
            if (off % 200 == 0) usleep(100);
        }
        _exit(0);
    }
    close(fds[1]);
    icn_reader *r = icn_reader_fdopen(fds[0], "pipe");
    const uint8_t *f;
    size_t len;
    char err[ICN_ERRLEN] = "";
    int frames = 0, rc;
    while ((rc = icn_reader_next(r, &f, &len, err, sizeof err)) == 1) {
        icn_batch b;
        if (decode_bytes(f, len, &b, err)) fail_msg("%s", err);
        assert_batch_equal(&a, &b);
        icn_batch_free(&b);
        frames++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(frames, 3);
    assert_string_equal(icn_reader_name(r), "pipe");
    icn_reader_close(r);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    assert_int_equal(status, 0);
    icn_batch_free(&a);
    msgpack_sbuffer_destroy(&sb);
}

static void test_reader_frame_limit(void **state) {
    (void)state;
    icn_batch a;
    make_batch(&a, 40, 0, 0); /* 40*12*4 = 1920 bytes of pixels */
    char err[ICN_ERRLEN] = "";
    assert_int_equal(icn_batch_write_file(tmp_path("stream"), &a, 1000, err, sizeof err), 0);
    setenv("ICN_MAX_FRAME", "1000", 1);
    icn_reader *r = icn_reader_open(tmp_path("stream"), err, sizeof err);
    const uint8_t *f;
    size_t len;
    assert_int_equal(icn_reader_next(r, &f, &len, err, sizeof err), -1);
    assert_non_null(strstr(err, "exceeds frame limit 1000"));
    icn_reader_close(r);
    /* The writer keeps within the limit by itself: smaller frames, same images. */
    assert_int_equal(icn_batch_write_file(tmp_path("stream"), &a, 1000, err, sizeof err), 0);
    icn_batch b;
    if (icn_batch_read_all(tmp_path("stream"), &b, err, sizeof err)) fail_msg("%s", err);
    assert_batch_equal(&a, &b);
    unsetenv("ICN_MAX_FRAME");
    icn_batch_free(&a);
    icn_batch_free(&b);
}

static void test_reader_garbage_after_frames(void **state) {
    (void)state;
    icn_batch a;
    make_batch(&a, 1, 0, 0);
    msgpack_sbuffer sb;
    pack_batch(&a, &sb);
    msgpack_sbuffer_write(&sb, "\xc1", 1);
    write_file(tmp_path("stream"), sb.data, sb.size);
    icn_batch b;
    char err[ICN_ERRLEN] = "", want[64];
    assert_int_equal(icn_batch_read_all(tmp_path("stream"), &b, err, sizeof err), -1);
    snprintf(want, sizeof want, "frame at byte %zu", sb.size - 1);
    if (!strstr(err, want) || !strstr(err, "0xc1")) fail_msg("'%s'", err);
    assert_null(strchr(err, '\n'));
    icn_batch_free(&a);
    msgpack_sbuffer_destroy(&sb);
}

/* ------------------------------------------------------------ fuzz */

static void fuzz_one(const uint8_t *p, size_t n) {
    size_t span;
    char err[ICN_ERRLEN];
    int rc = icn_msgpack_check(p, n, GIB, &span, err, sizeof err);
    assert_true(rc >= -1 && rc <= 1);
    if (rc == 0) assert_true(span <= n);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (icn_frame_unpack(p, n, &u, err, sizeof err) == 0) {
        icn_batch b;
        if (icn_batch_decode(&u.data, &b, err, sizeof err) == 0) icn_batch_free(&b);
    }
    msgpack_unpacked_destroy(&u);
}

static void test_fuzz(void **state) {
    (void)state;
    icn_rng rng;
    icn_rng_seed(&rng, 20171204);
    icn_batch a;
    make_batch(&a, 3, 1, 1);
    msgpack_sbuffer sb;
    pack_batch(&a, &sb);
    uint8_t buf[1024];
    /* Interesting bytes: headers with large lengths, the never-used byte, containers. */
    static const uint8_t hot[] = {0xc1, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xd4, 0xd8, 0xd9, 0xdb,
                                  0xdc, 0xdd, 0xde, 0xdf, 0xff, 0x00, 0x80, 0x8f, 0x90, 0x9f, 0xbf};
    for (int it = 0; it < 6000; it++) {
        size_t n;
        if (it % 2 == 0) { /* random bytes, biased towards msgpack headers */
            n = icn_rng_below(&rng, 64);
            for (size_t i = 0; i < n; i++)
                buf[i] = icn_rng_below(&rng, 3) ? (uint8_t)icn_rng_u64(&rng) : hot[icn_rng_below(&rng, sizeof hot)];
        } else { /* a valid batch with a few bytes changed and maybe cut short */
            n = sb.size < sizeof buf ? sb.size : sizeof buf;
            memcpy(buf, sb.data, n);
            int flips = 1 + (int)icn_rng_below(&rng, 4);
            for (int k = 0; k < flips; k++)
                buf[icn_rng_below(&rng, (uint32_t)n)] = icn_rng_below(&rng, 2) ? (uint8_t)icn_rng_u64(&rng)
                                                                               : hot[icn_rng_below(&rng, sizeof hot)];
            if (icn_rng_below(&rng, 4) == 0) n = icn_rng_below(&rng, (uint32_t)n + 1);
        }
        fuzz_one(buf, n);
    }
    icn_batch_free(&a);
    msgpack_sbuffer_destroy(&sb);
}

static void test_le_helpers(void **state) {
    (void)state;
    float f[3] = {1.0f, -2.5f, 0.0f}, g[3];
    uint8_t b[12];
    icn_le_store_f32(b, f, 3);
    assert_int_equal(b[0], 0x00);
    assert_int_equal(b[3], 0x3f); /* 1.0f = 0x3f800000, little-endian */
    assert_int_equal(b[2], 0x80);
    icn_le_load_f32(g, b, 3);
    assert_memory_equal(f, g, sizeof f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_plain),
        cmocka_unit_test(test_write_read_chunks),
        cmocka_unit_test(test_read_all_empty_and_missing),
        cmocka_unit_test(test_read_all_other_kind),
        cmocka_unit_test(test_append_mismatch),
        cmocka_unit_test(test_every_prefix_incomplete),
        cmocka_unit_test(test_array32_header_rejected),
        cmocka_unit_test(test_huge_lengths_rejected),
        cmocka_unit_test(test_depth_bomb),
        cmocka_unit_test(test_never_used_byte),
        cmocka_unit_test(test_all_formats),
        cmocka_unit_test(test_frame_unpack_shape),
        cmocka_unit_test(test_batch_validation),
        cmocka_unit_test(test_prov_validation),
        cmocka_unit_test(test_unknown_keys_ignored),
        cmocka_unit_test(test_map_helpers),
        cmocka_unit_test(test_reader_from_trickling_pipe),
        cmocka_unit_test(test_reader_frame_limit),
        cmocka_unit_test(test_reader_garbage_after_frames),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_le_helpers),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
