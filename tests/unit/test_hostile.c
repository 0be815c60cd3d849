/* test_hostile: hostile inputs from issue 16 that cost memory before they were refused. Each
 * case runs in a child process, so that its peak memory (wait4's ru_maxrss) is its own and an
 * exit from inside the library (icn_die on a failed allocation) is seen as a failure.
 *   finding 1: a ~100-byte model whose header implies gigabytes of parameters;
 *   finding 2: a 50 MB frame of small integers (msgpack-c spends ~24 bytes on each);
 *   finding 3: a map with the same key twice;
 *   finding 5: a gzip bomb behind an IDX header.
 * (Finding 8's plain products are test_sgemm's.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets.h"
#include "net.h"
#include "snapshot.h"
#include "util.h"
#include "wire.h"

#include "fixtures.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1 /* address-space limits and RSS mean other things under ASan */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Run fn in a child with an address-space limit of as_mb (0: none). Its error message comes back
 * through a pipe. Returns fn's result (0 or -1), or 100 + exit status when the child exited
 * on its own (icn_die), or 200 on a signal; *peak_mb: the child's peak resident memory. */
static int in_child(int (*fn)(char *err, size_t errlen), long as_mb, char *err, size_t errlen, long *peak_mb) {
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        if (as_mb && !UNDER_ASAN) {
            struct rlimit rl = {(rlim_t)as_mb << 20, (rlim_t)as_mb << 20};
            setrlimit(RLIMIT_AS, &rl);
        }
        char e[ICN_ERRLEN] = "";
        int rc = fn(e, sizeof e);
        if (write(pfd[1], e, strlen(e)) < 0) _exit(99);
        _exit(rc == 0 ? 0 : 1);
    }
    close(pfd[1]);
    ssize_t k = read(pfd[0], err, errlen - 1);
    err[k > 0 ? k : 0] = 0;
    close(pfd[0]);
    int status;
    struct rusage ru;
    assert_int_equal(wait4(pid, &status, 0, &ru), pid);
    *peak_mb = ru.ru_maxrss / 1024;
    if (WIFSIGNALED(status)) return 200;
    int code = WEXITSTATUS(status);
    if (code == 0) return 0;
    return k > 0 && code == 1 ? -1 : 100 + code;
}

static void pack_str(msgpack_packer *pk, const char *s) { msgpack_pack_str_with_body(pk, s, strlen(s)); }

/* ---------------------------------------------------------------- finding 1 */

/* A model frame whose header declares an architecture of ~2.7 billion parameters (input
 * 2048x2048x1, 640 classes: the last layer alone) with the matching count, and no bytes of them. */
static int decode_big_header(char *err, size_t errlen) {
    icn_net probe;
    char e[ICN_ERRLEN];
    if (icn_net_plan(&probe, "c2", 2048, 2048, 1, 640, e, sizeof e)) return icn_errf(err, errlen, "plan: %s", e);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 9);
    pack_str(&pk, "kind"), pack_str(&pk, "model");
    pack_str(&pk, "version"), msgpack_pack_int(&pk, ICN_MODEL_VERSION);
    pack_str(&pk, "arch"), pack_str(&pk, "c2");
    pack_str(&pk, "input"), msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 2048), msgpack_pack_int(&pk, 2048), msgpack_pack_int(&pk, 1);
    pack_str(&pk, "classes"), msgpack_pack_int(&pk, 640);
    pack_str(&pk, "head"), pack_str(&pk, "softmax");
    pack_str(&pk, "n_params"), msgpack_pack_uint64(&pk, probe.n_params);
    pack_str(&pk, "params"), msgpack_pack_bin(&pk, 0);
    pack_str(&pk, "crc32"), msgpack_pack_uint32(&pk, 0);
    icn_net net;
    icn_model_meta meta;
    int rc = icn_model_decode((const uint8_t *)sb.data, sb.size, &net, &meta, NULL, NULL, err, errlen);
    if (rc == 0) icn_net_free(&net);
    if (sb.size > 200) rc = icn_errf(err, errlen, "the test's frame is %zu bytes, not ~110", sb.size);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void test_model_params_checked_before_allocation(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    long peak;
    /* 1 GB of address space: a 10 GB allocation fails (icn_die: exit 3) instead of being refused */
    int rc = in_child(decode_big_header, 1024, err, sizeof err, &peak);
    if (rc != -1) fail_msg("decoding returned %d (100 + n: exited with status n): %s", rc, err);
    if (!strstr(err, "'params'")) fail_msg("the error does not name the parameters: %s", err);
    if (!UNDER_ASAN && peak > 100) fail_msg("peak memory %ld MB for a ~110-byte model", peak);
}

/* ---------------------------------------------------------------- finding 2 */

#define BOMB_INTS (50u << 20)

static int unpack_many_ints(char *err, size_t errlen) {
    /* {"kind": "batch", "junk": [1, 1, 1, ... 50 million times]}: 50 MB */
    size_t n = 1 + 5 + 6 + 5 + 5 + BOMB_INTS;
    uint8_t *p = malloc(n), *q = p;
    if (!p) return icn_errf(err, errlen, "malloc");
    *q++ = 0x82;
    *q++ = 0xa4, memcpy(q, "kind", 4), q += 4;
    *q++ = 0xa5, memcpy(q, "batch", 5), q += 5;
    *q++ = 0xa4, memcpy(q, "junk", 4), q += 4;
    *q++ = 0xdd, *q++ = (uint8_t)(BOMB_INTS >> 24), *q++ = (uint8_t)(BOMB_INTS >> 16), *q++ = (uint8_t)(BOMB_INTS >> 8),
    *q++ = (uint8_t)BOMB_INTS;
    memset(q, 0x01, BOMB_INTS), q += BOMB_INTS;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = icn_frame_unpack(p, (size_t)(q - p), &u, err, errlen);
    msgpack_unpacked_destroy(&u);
    free(p);
    return rc;
}

static void test_object_count_bounded(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    long peak;
    int rc = in_child(unpack_many_ints, 0, err, sizeof err, &peak);
    if (rc != -1) fail_msg("unpacking returned %d: %s", rc, err);
    if (!strstr(err, "objects")) fail_msg("the error does not say why: %s", err);
    /* the frame itself is 50 MB; msgpack-c would have spent 1.2 GB more */
    if (!UNDER_ASAN && peak > 200) fail_msg("peak memory %ld MB for a 50 MB frame", peak);
}

/* ---------------------------------------------------------------- finding 3 */

static void test_duplicate_keys_refused(void **state) {
    (void)state;
    icn_batch b;
    icn_batch_alloc(&b, 1, 1, 1, 1, 1);
    b.x[0] = 0.5f;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    icn_batch_pack(&pk, &b); /* {kind, shape, x, y}: then the map count raised by one, and a second x */
    assert_int_equal((uint8_t)sb.data[0], 0x84);
    sb.data[0] = (char)0x85;
    pack_str(&pk, "x");
    float nan = NAN;
    msgpack_pack_bin(&pk, 4), msgpack_pack_bin_body(&pk, &nan, 4);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    char err[ICN_ERRLEN] = "";
    assert_int_equal(icn_frame_unpack((const uint8_t *)sb.data, sb.size, &u, err, sizeof err), -1);
    assert_non_null(strstr(err, "duplicate key 'x'"));

    /* a nested map, and integer keys (the stats reply's counts) */
    uint8_t nested[] = {0x82, 0xa4, 'k', 'i', 'n', 'd', 0xa5, 's', 't', 'a', 't', 's', 0xa9, 'p', 'e', 'r', '_', 'c', 'l',
                        'a', 's', 's', 0x82, 0x03, 0x01, 0x03, 0x02};
    assert_int_equal(icn_frame_unpack(nested, sizeof nested, &u, err, sizeof err), -1);
    assert_non_null(strstr(err, "duplicate key '3'"));
    nested[sizeof nested - 2] = 0x04; /* {3: 1, 4: 2}: fine */
    assert_int_equal(icn_frame_unpack(nested, sizeof nested, &u, err, sizeof err), 0);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    icn_batch_free(&b);
}

/* ---------------------------------------------------------------- finding 5 */

static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A gzip'd IDX file: header (declaring n items of rows x cols) then `zeros` zero bytes. */
static void write_idx_gz(const char *path, uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols, size_t zeros) {
    gzFile g = gzopen(path, "wb9");
    assert_non_null(g);
    uint8_t h[16];
    be32(h, magic), be32(h + 4, n), be32(h + 8, rows), be32(h + 12, cols);
    assert_true(gzwrite(g, h, magic == 0x803 ? 16 : 8) > 0);
    static uint8_t z[1 << 20];
    for (size_t left = zeros; left;) {
        size_t k = left < sizeof z ? left : sizeof z;
        assert_int_equal(gzwrite(g, z, (unsigned)k), (int)k);
        left -= k;
    }
    assert_int_equal(gzclose(g), Z_OK);
}

static int load_bomb(char *err, size_t errlen) {
    icn_batch b;
    int rc = icn_idx_load(tmp_path("bomb-images.gz"), tmp_path("bomb-labels.gz"), &b, err, errlen);
    if (rc == 0) icn_batch_free(&b);
    return rc;
}

static void test_idx_gzip_bomb(void **state) {
    (void)state;
    /* 10 million images declared, 200 MB of pixels present (~200 KB compressed): a float array
     * grown as they arrived reached 800 MB before the file was found short */
    write_idx_gz(tmp_path("bomb-images.gz"), 0x803, 10000000, 28, 28, (size_t)200 << 20);
    write_idx_gz(tmp_path("bomb-labels.gz"), 0x801, 10000000, 1, 1, 10000000);
    struct stat st;
    assert_int_equal(stat(tmp_path("bomb-images.gz"), &st), 0);
    assert_true(st.st_size < (1 << 20));
    char err[ICN_ERRLEN];
    long peak;
    int rc = in_child(load_bomb, 0, err, sizeof err, &peak);
    if (rc != -1) fail_msg("loading returned %d: %s", rc, err);
    if (!strstr(err, "truncated")) fail_msg("the error does not say the file is short: %s", err);
    if (!UNDER_ASAN && peak > 64) fail_msg("peak memory %ld MB for a %lld-byte gzip file", peak, (long long)st.st_size);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_params_checked_before_allocation),
        cmocka_unit_test(test_object_count_bounded),
        cmocka_unit_test(test_duplicate_keys_refused),
        cmocka_unit_test(test_idx_gzip_bomb),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
