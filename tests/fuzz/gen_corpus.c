/* gen_corpus: writes the seed corpora of the fuzz harnesses, DIR/<harness>/<name>, a few small
 * valid inputs each, made by the library's own writers (so they follow the formats as the
 * programs write them). Usage: gen_corpus DIR (make fuzz-corpus). Regression inputs that a
 * fuzzer found are added to the same directories by hand (named regress-*) and kept. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../unit/matwrite.h"
#include "net.h"
#include "npy.h"
#include "optim.h"
#include "pool.h"
#include "snapshot.h"
#include "protocol.h"
#include "transport.h"
#include "bytes.h"
#include "util.h"
#include "wire.h"

static const char *root;

static void put(const char *harness, const char *name, const void *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, harness);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) icn_die(1, "%s: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/%s/%s", root, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) icn_die(1, "%s: cannot write", path);
}

static void put_sb(const char *harness, const char *name, msgpack_sbuffer *sb) {
    put(harness, name, sb->data, sb->size);
    msgpack_sbuffer_clear(sb);
}

/* n images h x w x 1 with pixels in [-1, 1]; labels >= 0, or pseudo-negatives with provenance. */
static void make_batch(icn_batch *b, int n, int h, int w, int negatives) {
    icn_batch_alloc(b, n, h, w, 1, 1);
    for (size_t i = 0; i < (size_t)n * h * w; i++) b->x[i] = (float)(i % 7) / 3.0f - 1.0f;
    for (int i = 0; i < n; i++) b->y[i] = negatives ? -(i % 3) - 1 : i % 10;
    if (!negatives) return;
    b->prov = xcalloc((size_t)n, sizeof *b->prov);
    for (int i = 0; i < n; i++) b->prov[i] = (icn_provenance){i, 10 + i, 0.5f * i, (uint8_t)(i & 1), 7};
}

static void batches(void) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    icn_batch b, neg;
    make_batch(&b, 2, 3, 3, 0);
    make_batch(&neg, 2, 2, 2, 1);
    icn_batch_pack(&pk, &b);
    put_sb("fuzz_batch", "labelled", &sb);
    icn_batch_pack(&pk, &neg);
    put_sb("fuzz_batch", "provenance", &sb);
    icn_batch_pack(&pk, &b);
    icn_batch_pack(&pk, &b);
    put_sb("fuzz_batch", "two-frames", &sb);
    b.y = (free(b.y), NULL);
    icn_batch_pack(&pk, &b);
    put_sb("fuzz_batch", "unlabelled", &sb);

    icn_pack_fetch(&sb, 3, 100);
    put_sb("fuzz_pool_msgs", "fetch", &sb);
    icn_pack_stats_request(&sb);
    put_sb("fuzz_pool_msgs", "stats-request", &sb);
    icn_pack_records(&sb, 0, 5, &neg);
    put_sb("fuzz_pool_msgs", "records", &sb);
    icn_pack_records(&sb, 9, 5, &(icn_batch){0});
    put_sb("fuzz_pool_msgs", "records-none", &sb);
    icn_pack_error(&sb, "no such record");
    put_sb("fuzz_pool_msgs", "error", &sb);
    icn_pack_batch_from(&sb, &neg, 12345, 7);
    put_sb("fuzz_pool_msgs", "intake-batch", &sb);
    icn_pack_ack(&sb, 12345, 7);
    put_sb("fuzz_pool_msgs", "ack", &sb);
    icn_pack_refused(&sb, 12345, 8, "refused (range): pixel 3 of image 0 is 3e+38, outside [-1, 1]");
    put_sb("fuzz_pool_msgs", "refused", &sb);
    icn_pack_run_ended(&sb, 12345, 9);
    put_sb("fuzz_pool_msgs", "refused-run-ended", &sb);
    icn_pack_run_request(&sb, ICN_MSG_END);
    put_sb("fuzz_pool_msgs", "end", &sb);
    icn_pool_tally cls[2] = {{0, 3}, {4, 1}}, gen[1] = {{2, 4}}, prod[2] = {{7, 2}, {8, 2}};
    icn_pool_counts c = {.total = 4, .per_class = cls, .per_generation = gen, .per_producer = prod, .n_class = 2,
                         .n_generation = 1, .n_producer = 2, .uuid = "0f2c8a4e-1b3d-4c5e-8f70-9a1b2c3d4e5f"};
    icn_pack_pool_stats(&sb, &c, 1, 0, 0);
    put_sb("fuzz_pool_msgs", "stats", &sb);

    /* the pool store: a file written by icn_pool_append, then read back as bytes */
    char tmpl[] = "/tmp/icn-gen-corpus-XXXXXX";
    if (!mkdtemp(tmpl)) icn_die(1, "mkdtemp: %s", strerror(errno));
    char path[256], err[2 * ICN_ERRLEN];
    snprintf(path, sizeof path, "%s/pool", tmpl);
    icn_pool *p;
    icn_pool_contract k = icn_pool_contract_make(2, 2, 1, 10);
    if (icn_pool_open(path, ICN_POOL_CREATE, &k, &p, err, sizeof err) || icn_pool_append(p, &neg, err, sizeof err) ||
        icn_pool_close(p, err, sizeof err))
        icn_die(1, "%s", err);
    uint8_t *data;
    size_t len;
    FILE *f = fopen(path, "rb");
    if (!f) icn_die(1, "%s: %s", path, strerror(errno));
    data = xmalloc(1 << 20);
    len = fread(data, 1, 1 << 20, f);
    fclose(f);
    put("fuzz_pool_store", "two-records", data, len);
    put("fuzz_pool_store", "torn-tail", data, len - 5);
    put("fuzz_pool_store", "header-only", data, ICN_POOL_HEADER_LEN);
    free(data);
    unlink(path);
    rmdir(tmpl);

    icn_batch_free(&b);
    icn_batch_free(&neg);
    msgpack_sbuffer_destroy(&sb);
}

static void models(void) {
    char err[ICN_ERRLEN];
    icn_net net;
    if (icn_net_build(&net, "c2", 4, 4, 1, 3, err, sizeof err)) icn_die(1, "%s", err);
    icn_net_init(&net, 1);
    icn_model_meta meta = {.generation = 2, .step = 10, .total_steps = 20, .seed = 1, .train_images = 5};
    snprintf(meta.settings, sizeof meta.settings, "lr=0.025 momentum=0.9");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_model_pack(&sb, &net, &meta, NULL);
    put_sb("fuzz_model", "model", &sb);
    icn_model_pack(&sb, &net, &meta, NULL);
    put_sb("fuzz_control", "snapshot", &sb);
    icn_optim o;
    icn_optim_sgd(&o, net.n_trainable, 0.9f, 0.0f);
    icn_model_pack(&sb, &net, &meta, &o);
    put_sb("fuzz_model", "checkpoint-sgd", &sb);
    icn_optim_free(&o);
    icn_optim_adam(&o, net.n_trainable, 0.9f, 0.999f, 1e-8f);
    icn_model_pack(&sb, &net, &meta, &o);
    put_sb("fuzz_model", "checkpoint-adam", &sb);
    icn_optim_free(&o);
    icn_net_free(&net);

    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "kind", 4), msgpack_pack_str_with_body(&pk, "hold", 4);
    msgpack_pack_str_with_body(&pk, "generation", 10), msgpack_pack_int64(&pk, 2);
    put_sb("fuzz_control", "hold", &sb);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "kind", 4), msgpack_pack_str_with_body(&pk, "stop", 4);
    put_sb("fuzz_control", "stop", &sb);
    icn_pack_heartbeat(&sb, 2, ICN_RUN_HOLD, 1000, "tcp://0.0.0.0:40123", 1796600000.25);
    put_sb("fuzz_control", "heartbeat", &sb);
    icn_pack_snapshot_request(&sb);
    put_sb("fuzz_control", "snapshot-request", &sb);
    msgpack_sbuffer_destroy(&sb);
}

static void be32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v; }

static size_t gz(const uint8_t *p, size_t n, uint8_t *out, size_t cap) {
    z_stream z = {0};
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    z.next_in = (Bytef *)p, z.avail_in = (uInt)n, z.next_out = out, z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    deflateEnd(&z);
    return cap - z.avail_out;
}

/* fuzz_idx input: flags, label-file length (2 bytes LE), label file, image file. */
static void idx_seed(const char *name, int flags, const uint8_t *lab, size_t ln, const uint8_t *img, size_t in) {
    uint8_t buf[4096];
    buf[0] = (uint8_t)flags, buf[1] = (uint8_t)ln, buf[2] = (uint8_t)(ln >> 8);
    memcpy(buf + 3, lab, ln);
    memcpy(buf + 3 + ln, img, in);
    put("fuzz_idx", name, buf, 3 + ln + in);
}

static void idx(void) {
    uint8_t lab[8 + 3], img[16 + 3 * 4 * 4], glab[256], gimg[512];
    be32(lab, 0x801), be32(lab + 4, 3);
    lab[8] = 1, lab[9] = 7, lab[10] = 0;
    be32(img, 0x803), be32(img + 4, 3), be32(img + 8, 4), be32(img + 12, 4);
    for (int i = 0; i < 48; i++) img[16 + i] = (uint8_t)(i * 5);
    idx_seed("plain", 0, lab, sizeof lab, img, sizeof img);
    idx_seed("gzip-here", 3, lab, sizeof lab, img, sizeof img);
    size_t gl = gz(lab, sizeof lab, glab, sizeof glab), gi = gz(img, sizeof img, gimg, sizeof gimg);
    idx_seed("gzip-files", 0, glab, gl, gimg, gi);
    idx_seed("truncated", 0, lab, sizeof lab, img, sizeof img - 5);
}

static void cifar_svhn(void) {
    static uint8_t rec[2 * 3073];
    for (int r = 0; r < 2; r++) {
        rec[r * 3073] = (uint8_t)(r * 7);
        for (int i = 1; i < 3073; i++) rec[r * 3073 + i] = (uint8_t)(i * (r + 3));
    }
    put("fuzz_cifar", "one-record", rec, 3073);
    put("fuzz_cifar", "two-records", rec, sizeof rec);
    put("fuzz_cifar", "short", rec, 3000);

    enum { N = 2 };
    static uint8_t x[32 * 32 * 3 * N];
    double y[N] = {10, 3};
    for (size_t i = 0; i < sizeof x; i++) x[i] = (uint8_t)(i * 13);
    const struct { const char *name; int big, y_uint8, y_first, compress; } v[] = {
        {"svhn-compressed", 0, 0, 0, 1}, {"svhn-plain-y-uint8", 0, 1, 1, 0}, {"svhn-big-endian", 1, 0, 0, 0}};
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        mat_buf b;
        mat_header(&b, v[k].big);
        mat_svhn(&b, x, y, N, v[k].y_uint8, v[k].y_first, (mat_opts){.compress = v[k].compress});
        put("fuzz_svhn", v[k].name, b.p, b.n);
        free(b.p);
    }
}

static void jsonl(void) {
    const char *a = "{\"images\":1000,\"seed\":1,\"method\":\"icn\",\"error\":0.0123}\n"
                    "{\"images\":1000,\"seed\":2,\"method\":\"icn\",\"error\":0.0141,\"extra\":[1,{\"a\":null}]}\n"
                    "{\"images\":1000,\"seed\":1,\"method\":\"baseline\",\"error\":0.02}\n";
    const char *b = "\n{\"images\": 500, \"seed\": -3, \"method\": \"icn-noise\", \"error\": 1e-2, \"s\": \"\\u00e9\\n\"}\n";
    const char *c = "{\"images\":10,\"seed\":1,\"method\":\"icn\",\"error\":NaN}\n";
    put("fuzz_jsonl", "three-runs", a, strlen(a));
    put("fuzz_jsonl", "escapes", b, strlen(b));
    put("fuzz_jsonl", "nan", c, strlen(c));
}

/* fuzz_npy input: a flag byte (bit 0: images channels first), then a .npy file. */
static void npy_seed(const char *name, int flags, const char *descr, const char *shape, const void *data, size_t n) {
    uint8_t *f;
    size_t len;
    char err[ICN_ERRLEN];
    if (icn_npy_encode(descr, shape, data, n, &f, &len, err, sizeof err)) icn_die(1, "%s", err);
    uint8_t *buf = xmalloc(len + 1);
    buf[0] = (uint8_t)flags;
    memcpy(buf + 1, f, len);
    put("fuzz_npy", name, buf, len + 1);
    free(buf);
    free(f);
}

static void npy(void) {
    uint8_t px[4 * 3 * 3 * 2], fx[4 * 3 * 3 * 4], y[4 * 8] = {0};
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 4 * 3 * 3; i++) {
        float v = (float)(i % 9) / 4.0f - 1.0f;
        icn_le_store_f32(fx + 4 * i, &v, 1);
    }
    for (int i = 0; i < 4; i++) y[8 * i] = (uint8_t)i;
    npy_seed("u8-nhwc", 0, "'|u1'", "(4, 3, 3, 2)", px, sizeof px);
    npy_seed("u8-nchw", 1, "'|u1'", "(4, 2, 3, 3)", px, sizeof px);
    npy_seed("f32-nhw", 0, "'<f4'", "(4, 3, 3)", fx, sizeof fx);
    npy_seed("i64-labels", 0, "'<i8'", "(4,)", y, sizeof y);
    npy_seed("u8-labels", 0, "'|u1'", "(4,)", px, 4);
}

int main(int argc, char **argv) {
    icn_set_progname(argv[0]);
    if (argc != 2) icn_die(2, "usage: gen_corpus DIR");
    root = argv[1];
    if (mkdir(root, 0755) != 0 && errno != EEXIST) icn_die(1, "%s: %s", root, strerror(errno));
    batches();
    models();
    idx();
    cifar_svhn();
    jsonl();
    npy();
    return 0;
}
