/* test_snapshot.c: model files (lib/snapshot.c) and the exact-resume machinery of
 * lib/train.c (the batch sampler and checkpoints).
 *
 * A model file is untrusted input like any other: every corruption here (a flipped byte,
 * a wrong version, a truncation, a NaN, a frame of another kind) must give a one-line
 * error, never a crash. Resuming from a checkpoint written at step k must end
 * bit-identical to the run that was never interrupted (one thread, so sums are ordered). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "optim.h"
#include "progress.h"
#include "snapshot.h"
#include "eval.h"
#include "train.h"
#include "trainer.h"
#include "parallel.h"
#include "runtime.h"
#include "bytes.h"
#include "fileio.h"
#include "util.h"
#include "wire.h"

static const char *arch = "c4-c8"; /* make_net's; the resume test runs with resnet8 too */
#define H 12
#define W 12
#define C 1
#define CLASSES 3

/* ------------------------------------------------------------ helpers */

#include "fixtures.h"

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    uint8_t *p;
    char err[ICN_ERRLEN] = "";
    if (icn_read_file(path, (size_t)1 << 30, &p, n, err, sizeof err)) fail_msg("%s", err);
    return p;
}

static void make_net(icn_net *net, uint64_t seed) {
    char err[ICN_ERRLEN] = "";
    if (icn_net_build(net, arch, H, W, C, CLASSES, err, sizeof err)) fail_msg("%s", err);
    icn_net_init(net, seed);
}

static icn_model_meta sample_meta(void) {
    return (icn_model_meta){.head = ICN_HEAD_OVA,
                            .generation = 7,
                            .step = 1234,
                            .total_steps = 5000,
                            .seed = INT64_MAX,
                            .train_images = 55000,
                            .round = -3,
                            .pool_offset = INT64_MIN,
                            .settings = "batch=64 lr=0.025 rounds=6",
                            .pool_uuid = "5890b212-7eed-411b-b6d6-83ad95b4eb98"};
}

static void assert_meta_equal(const icn_model_meta *a, const icn_model_meta *b) {
    assert_int_equal(a->head, b->head);
    assert_true(a->generation == b->generation);
    assert_true(a->step == b->step);
    assert_true(a->total_steps == b->total_steps);
    assert_true(a->seed == b->seed);
    assert_true(a->train_images == b->train_images);
    assert_true(a->round == b->round);
    assert_true(a->pool_offset == b->pool_offset);
    assert_string_equal(a->settings, b->settings);
    assert_string_equal(a->pool_uuid, b->pool_uuid);
}

static void assert_net_equal(const icn_net *a, const icn_net *b) {
    assert_string_equal(a->arch, b->arch);
    assert_int_equal(a->in_h, b->in_h);
    assert_int_equal(a->in_w, b->in_w);
    assert_int_equal(a->in_c, b->in_c);
    assert_int_equal(a->classes, b->classes);
    assert_int_equal(a->n_params, b->n_params);
    assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
}

/* Fill optimizer state with values that are not what a fresh optimizer holds. */
static void scribble_optim(icn_optim *o, uint64_t seed) {
    icn_rng rng;
    icn_rng_seed(&rng, seed);
    for (size_t i = 0; i < o->n; i++) o->m[i] = (float)icn_rng_gauss(&rng);
    for (size_t i = 0; o->v && i < o->n; i++) o->v[i] = (float)icn_rng_uniform(&rng) * 1e-3f;
    o->t = 4242;
}

static void pack_model(msgpack_sbuffer *sb, const icn_net *net, const icn_model_meta *meta, const icn_optim *optim) {
    msgpack_sbuffer_init(sb);
    icn_model_pack(sb, net, meta, optim);
}

/* Decode bytes as a model; on failure the error must mention `want` (if given). */
static int decode_expect(const void *p, size_t n, icn_optim *optim, const char *want) {
    icn_net net;
    icn_model_meta meta;
    int has = -1;
    char err[ICN_ERRLEN] = "";
    int rc = icn_model_decode(p, n, &net, &meta, optim, &has, err, sizeof err);
    if (rc == 0) {
        icn_net_free(&net);
        return 0;
    }
    assert_true(strlen(err) > 0);
    assert_null(strchr(err, '\n')); /* one line */
    if (want && !strstr(err, want)) fail_msg("error '%s' does not mention '%s'", err, want);
    return rc;
}

/* Re-pack a model frame key by key, letting `edit` replace or drop entries: the way to
 * craft maps that icn_model_pack would never write. edit returns 0 to copy the entry
 * unchanged, 1 when it packed a replacement value itself, -1 to drop the entry. */
typedef int (*edit_fn)(msgpack_packer *pk, const char *key, const msgpack_object *val, void *ctx);

static void repack(const msgpack_sbuffer *in, msgpack_sbuffer *out, edit_fn edit, void *ctx, int extra_keys) {
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    char err[ICN_ERRLEN] = "";
    if (icn_frame_unpack((const uint8_t *)in->data, in->size, &up, err, sizeof err)) fail_msg("%s", err);
    const msgpack_object_map *m = &up.data.via.map;
    /* count the entries kept: a dry run with a throwaway packer */
    size_t kept = 0;
    msgpack_sbuffer scratch;
    msgpack_sbuffer_init(&scratch);
    msgpack_packer spk;
    msgpack_packer_init(&spk, &scratch, msgpack_sbuffer_write);
    for (uint32_t i = 0; i < m->size; i++) {
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)m->ptr[i].key.via.str.size, m->ptr[i].key.via.str.ptr);
        msgpack_pack_str_with_body(&spk, key, strlen(key));
        if (edit(&spk, key, &m->ptr[i].val, ctx) >= 0) kept++;
    }
    msgpack_sbuffer_destroy(&scratch);

    msgpack_sbuffer_init(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, kept + (size_t)extra_keys);
    for (uint32_t i = 0; i < m->size; i++) {
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)m->ptr[i].key.via.str.size, m->ptr[i].key.via.str.ptr);
        /* the key goes first; a dropped entry is rolled back by truncating the buffer */
        size_t mark = out->size;
        msgpack_pack_str_with_body(&pk, key, strlen(key));
        int r = edit(&pk, key, &m->ptr[i].val, ctx);
        if (r == 0) msgpack_pack_object(&pk, m->ptr[i].val);
        if (r < 0) out->size = mark;
    }
    msgpack_unpacked_destroy(&up);
}

typedef struct {
    const char *key;
    int mode; /* 0: int, 1: string, 2: drop, 3: nil, 4: float */
    int64_t i;
    const char *s;
} edit_spec;

static int edit_one(msgpack_packer *pk, const char *key, const msgpack_object *val, void *ctx) {
    (void)val;
    const edit_spec *e = ctx;
    if (strcmp(key, e->key)) return 0;
    switch (e->mode) {
    case 0: msgpack_pack_int64(pk, e->i); return 1;
    case 1: msgpack_pack_str_with_body(pk, e->s, strlen(e->s)); return 1;
    case 2: return -1;
    case 3: msgpack_pack_nil(pk); return 1;
    default: msgpack_pack_double(pk, (double)e->i); return 1;
    }
}

/* Pack the reference model, apply one edit, and decode: the error must mention `want`. */
static void expect_edit_rejected(edit_spec e, const char *want) {
    icn_net net;
    make_net(&net, 1);
    icn_model_meta meta = sample_meta();
    msgpack_sbuffer sb, edited;
    pack_model(&sb, &net, &meta, NULL);
    repack(&sb, &edited, edit_one, &e, 0);
    if (decode_expect(edited.data, edited.size, NULL, want) == 0) fail_msg("edit of key '%s' was accepted", e.key);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&edited);
    icn_net_free(&net);
}

/* Where the little-endian parameter bytes sit inside a packed model. */
static size_t params_offset(const msgpack_sbuffer *sb, const icn_net *net) {
    size_t bytes = net->n_params * sizeof(float);
    uint8_t *le = xmalloc(bytes);
    icn_le_store_f32(le, net->params, net->n_params);
    const void *at = memmem(sb->data, sb->size, le, bytes);
    free(le);
    assert_non_null(at);
    return (size_t)((const char *)at - sb->data);
}

/* ------------------------------------------------------------ round trips */

static void test_roundtrip_model(void **state) {
    (void)state;
    icn_net a, b;
    make_net(&a, 11);
    /* awkward floats must survive bit for bit */
    a.params[0] = -0.0f;
    a.params[1] = 1e-40f; /* subnormal */
    a.params[2] = 3.4028235e38f;
    icn_model_meta ma = sample_meta(), mb;
    char err[ICN_ERRLEN] = "";
    const char *path = tmp_path("model.icn");
    if (icn_model_save(path, &a, &ma, NULL, err, sizeof err)) fail_msg("%s", err);
    int has = -1;
    if (icn_model_load(path, &b, &mb, NULL, &has, err, sizeof err)) fail_msg("%s", err);
    assert_net_equal(&a, &b);
    assert_meta_equal(&ma, &mb);
    assert_int_equal(has, 0);
    assert_int_equal(b.n_layers, a.n_layers);
    /* and every field, including any added later: the reloaded model packs to the same bytes */
    {
        msgpack_sbuffer sa, sb;
        pack_model(&sa, &a, &ma, NULL);
        pack_model(&sb, &b, &mb, NULL);
        assert_int_equal(sa.size, sb.size);
        assert_memory_equal(sa.data, sb.data, sa.size);
        msgpack_sbuffer_destroy(&sa);
        msgpack_sbuffer_destroy(&sb);
    }

    /* a plain model loaded by a caller that asks for optimizer state: has_optim says no */
    icn_net c;
    icn_model_meta mc;
    icn_optim opt;
    icn_optim_sgd(&opt, a.n_params, 0.9f, 0);
    has = -1;
    if (icn_model_load(path, &c, &mc, &opt, &has, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(has, 0);
    assert_net_equal(&a, &c);
    icn_optim_free(&opt);
    icn_net_free(&c);

    /* the softmax head too, and a save is deterministic */
    ma.head = ICN_HEAD_SOFTMAX;
    msgpack_sbuffer s1, s2;
    pack_model(&s1, &a, &ma, NULL);
    pack_model(&s2, &a, &ma, NULL);
    assert_int_equal(s1.size, s2.size);
    assert_memory_equal(s1.data, s2.data, s1.size);
    if (icn_model_decode((const uint8_t *)s1.data, s1.size, &c, &mc, NULL, NULL, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(mc.head, ICN_HEAD_SOFTMAX);
    icn_net_free(&c);
    msgpack_sbuffer_destroy(&s1);
    msgpack_sbuffer_destroy(&s2);
    icn_net_free(&a);
    icn_net_free(&b);
}

/* The decoded net must be usable: same logits as the original. */
static void test_roundtrip_forward(void **state) {
    (void)state;
    icn_net a, b;
    make_net(&a, 5);
    icn_model_meta ma = sample_meta(), mb;
    msgpack_sbuffer sb;
    pack_model(&sb, &a, &ma, NULL);
    char err[ICN_ERRLEN] = "";
    if (icn_model_decode((const uint8_t *)sb.data, sb.size, &b, &mb, NULL, NULL, err, sizeof err)) fail_msg("%s", err);
    float x[2 * H * W * C];
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) x[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
    icn_work *wa = icn_work_new(&a, 2), *wb = icn_work_new(&b, 2);
    const float *la = icn_forward(&a, wa, x, 2), *lb = icn_forward(&b, wb, x, 2);
    assert_memory_equal(la, lb, 2 * CLASSES * sizeof(float));
    icn_work_free(wa);
    icn_work_free(wb);
    msgpack_sbuffer_destroy(&sb);
    icn_net_free(&a);
    icn_net_free(&b);
}

static void check_optim_roundtrip(int adam) {
    icn_net a, b;
    make_net(&a, 3);
    icn_optim oa, ob;
    if (adam) icn_optim_adam(&oa, a.n_params, 0.5f, 0.999f, 1e-8f), icn_optim_adam(&ob, a.n_params, 0.5f, 0.999f, 1e-8f);
    else icn_optim_sgd(&oa, a.n_params, 0.9f, 1e-4f), icn_optim_sgd(&ob, a.n_params, 0.9f, 1e-4f);
    scribble_optim(&oa, 99);
    icn_model_meta ma = sample_meta(), mb;
    char err[ICN_ERRLEN] = "";
    const char *path = tmp_path(adam ? "adam.icn" : "sgd.icn");
    if (icn_model_save(path, &a, &ma, &oa, err, sizeof err)) fail_msg("%s", err);
    int has = -1;
    if (icn_model_load(path, &b, &mb, &ob, &has, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(has, 1);
    assert_net_equal(&a, &b);
    assert_meta_equal(&ma, &mb);
    assert_true(ob.t == oa.t);
    assert_memory_equal(ob.m, oa.m, a.n_params * sizeof(float));
    if (adam) assert_memory_equal(ob.v, oa.v, a.n_params * sizeof(float));
    /* settings are the caller's, not the file's */
    assert_int_equal(ob.kind, oa.kind);
    assert_true(ob.momentum == oa.momentum && ob.weight_decay == oa.weight_decay && ob.beta1 == oa.beta1);
    icn_net_free(&b);

    /* a checkpoint's model part loads without an optimizer (icn-eval on a checkpoint) */
    has = -1;
    if (icn_model_load(path, &b, &mb, NULL, &has, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(has, 0);
    assert_net_equal(&a, &b);
    icn_net_free(&b);

    /* the other optimizer kind is refused, naming both */
    icn_optim other;
    if (adam) icn_optim_sgd(&other, a.n_params, 0.9f, 0);
    else icn_optim_adam(&other, a.n_params, 0.5f, 0.999f, 1e-8f);
    if (icn_model_load(path, &b, &mb, &other, &has, err, sizeof err) == 0) fail_msg("optimizer kind mismatch accepted");
    assert_non_null(strstr(err, "adam"));
    assert_non_null(strstr(err, "sgd"));
    icn_optim_free(&other);

    /* optimizer state for another parameter count is refused */
    icn_optim small;
    if (adam) icn_optim_adam(&small, a.n_params - 1, 0.5f, 0.999f, 1e-8f);
    else icn_optim_sgd(&small, a.n_params - 1, 0.9f, 0);
    assert_int_not_equal(icn_model_load(path, &b, &mb, &small, &has, err, sizeof err), 0);
    icn_optim_free(&small);

    /* non-finite optimizer state is refused like a non-finite weight */
    oa.m[a.n_params / 2] = NAN;
    msgpack_sbuffer sb;
    pack_model(&sb, &a, &ma, &oa);
    icn_optim fresh;
    if (adam) icn_optim_adam(&fresh, a.n_params, 0.5f, 0.999f, 1e-8f);
    else icn_optim_sgd(&fresh, a.n_params, 0.9f, 0);
    assert_int_not_equal(decode_expect(sb.data, sb.size, &fresh, "non-finite"), 0);
    icn_optim_free(&fresh);
    msgpack_sbuffer_destroy(&sb);

    icn_optim_free(&oa);
    icn_optim_free(&ob);
    icn_net_free(&a);
}

static void test_roundtrip_optim_sgd(void **state) {
    (void)state;
    check_optim_roundtrip(0);
}

static void test_roundtrip_optim_adam(void **state) {
    (void)state;
    check_optim_roundtrip(1);
}

/* ------------------------------------------------------------ corruption */

static void test_corrupt_param_byte(void **state) {
    (void)state;
    icn_net net;
    make_net(&net, 1);
    icn_model_meta meta = sample_meta();
    msgpack_sbuffer sb;
    pack_model(&sb, &net, &meta, NULL);
    size_t off = params_offset(&sb, &net), bytes = net.n_params * sizeof(float);
    /* first, middle and last parameter byte, and single bit flips */
    size_t where[] = {off, off + bytes / 2, off + bytes - 1};
    for (size_t i = 0; i < sizeof where / sizeof *where; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            sb.data[where[i]] ^= (char)(1 << bit);
            assert_int_not_equal(decode_expect(sb.data, sb.size, NULL, "checksum"), 0);
            sb.data[where[i]] ^= (char)(1 << bit);
        }
    assert_int_equal(decode_expect(sb.data, sb.size, NULL, NULL), 0);

    /* through a file: the message names the file and the checksum */
    sb.data[off + bytes / 2] ^= 0x5a;
    const char *path = tmp_path("corrupt.icn");
    write_bytes(path, sb.data, sb.size);
    icn_net out;
    icn_model_meta m;
    char err[ICN_ERRLEN] = "";
    assert_int_not_equal(icn_model_load(path, &out, &m, NULL, NULL, err, sizeof err), 0);
    assert_non_null(strstr(err, "checksum"));
    assert_non_null(strstr(err, path));
    msgpack_sbuffer_destroy(&sb);
    icn_net_free(&net);
}

static int edit_input(msgpack_packer *pk, const char *key, const msgpack_object *val, void *c) {
    (void)val, (void)c;
    if (strcmp(key, "input")) /* [11, 11, 1] */ return 0;
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, H - 1), msgpack_pack_int(pk, W - 1), msgpack_pack_int(pk, C);
    return 1;
}

/* The CRC covers architecture and shape too: a stored CRC of another model is refused. */
static void test_crc_covers_shape(void **state) {
    (void)state;
    icn_net net;
    make_net(&net, 1);
    icn_model_meta meta = sample_meta();
    msgpack_sbuffer sb;
    pack_model(&sb, &net, &meta, NULL);
    /* a wrong crc32 value */
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    char err[ICN_ERRLEN] = "";
    if (icn_frame_unpack((const uint8_t *)sb.data, sb.size, &up, err, sizeof err)) fail_msg("%s", err);
    const msgpack_object *crc = icn_map_get(&up.data, "crc32");
    assert_non_null(crc);
    int64_t stored = (int64_t)crc->via.u64;
    msgpack_unpacked_destroy(&up);
    expect_edit_rejected((edit_spec){"crc32", 0, stored ^ 1, NULL}, "checksum");
    /* same parameter count, other shape: 12x12 -> 11x11 keeps every conv output size
     * (6x6 then 3x3), so the parameters fit and only the CRC can tell */
    icn_net other;
    if (icn_net_build(&other, arch, H - 1, W - 1, C, CLASSES, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(other.n_params, net.n_params);
    icn_net_free(&other);
    msgpack_sbuffer edited;
    repack(&sb, &edited, edit_input, NULL, 0);
    assert_int_not_equal(decode_expect(edited.data, edited.size, NULL, "checksum"), 0);
    msgpack_sbuffer_destroy(&edited);
    msgpack_sbuffer_destroy(&sb);
    icn_net_free(&net);
}

static void test_unknown_version(void **state) {
    (void)state;
    expect_edit_rejected((edit_spec){"version", 0, ICN_MODEL_VERSION + 1, NULL}, "version");
    expect_edit_rejected((edit_spec){"version", 0, 0, NULL}, "version");
    expect_edit_rejected((edit_spec){"version", 0, 1000000, NULL}, "version");
    expect_edit_rejected((edit_spec){"version", 0, -1, NULL}, "version");
    expect_edit_rejected((edit_spec){"version", 1, 0, "1"}, "version");
    expect_edit_rejected((edit_spec){"version", 2, 0, NULL}, "version");
    expect_edit_rejected((edit_spec){"version", 3, 0, NULL}, "version");

    /* and by patching the packed bytes in place: "version" is followed by fixint 1 */
    icn_net net;
    make_net(&net, 1);
    icn_model_meta meta = sample_meta();
    msgpack_sbuffer sb;
    pack_model(&sb, &net, &meta, NULL);
    const char *k = memmem(sb.data, sb.size, "\xa7version", 8);
    assert_non_null(k);
    size_t at = (size_t)(k - sb.data) + 8;
    assert_int_equal((uint8_t)sb.data[at], ICN_MODEL_VERSION);
    sb.data[at] = 0x02;
    assert_int_not_equal(decode_expect(sb.data, sb.size, NULL, "version"), 0);
    sb.data[at] = 0x7f;
    assert_int_not_equal(decode_expect(sb.data, sb.size, NULL, "version"), 0);
    sb.data[at] = ICN_MODEL_VERSION;
    assert_int_equal(decode_expect(sb.data, sb.size, NULL, NULL), 0);
    msgpack_sbuffer_destroy(&sb);
    icn_net_free(&net);
}

/* Every other required key, wrong or missing, is refused with its name. */
static void test_bad_fields(void **state) {
    (void)state;
    expect_edit_rejected((edit_spec){"kind", 1, 0, "batch"}, "batch");
    expect_edit_rejected((edit_spec){"kind", 2, 0, NULL}, "kind");
    expect_edit_rejected((edit_spec){"arch", 1, 0, "c4-x8"}, "arch");
    expect_edit_rejected((edit_spec){"arch", 1, 0, "c4-c16"}, "parameters"); /* other count */
    expect_edit_rejected((edit_spec){"arch", 2, 0, NULL}, "arch");
    expect_edit_rejected((edit_spec){"head", 1, 0, "tanh"}, "head");
    expect_edit_rejected((edit_spec){"classes", 0, 0, NULL}, "classes");
    expect_edit_rejected((edit_spec){"classes", 0, 4, NULL}, "parameters");
    expect_edit_rejected((edit_spec){"n_params", 0, 7, NULL}, "parameters");
    expect_edit_rejected((edit_spec){"n_params", 2, 0, NULL}, "n_params");
    expect_edit_rejected((edit_spec){"params", 2, 0, NULL}, "params");
    expect_edit_rejected((edit_spec){"params", 1, 0, "abcd"}, "params");
    expect_edit_rejected((edit_spec){"crc32", 2, 0, NULL}, "crc32");
    expect_edit_rejected((edit_spec){"crc32", 0, -1, NULL}, "crc32");
    expect_edit_rejected((edit_spec){"input", 0, 12, NULL}, "input");
    expect_edit_rejected((edit_spec){"input", 2, 0, NULL}, "input");
}

static void test_truncated(void **state) {
    (void)state;
    icn_net net;
    make_net(&net, 1);
    icn_model_meta meta = sample_meta();
    icn_optim opt;
    icn_optim_adam(&opt, net.n_params, 0.5f, 0.999f, 1e-8f);
    scribble_optim(&opt, 5);
    msgpack_sbuffer sb;
    pack_model(&sb, &net, &meta, &opt);
    /* every prefix, in memory */
    icn_optim into;
    icn_optim_adam(&into, net.n_params, 0.5f, 0.999f, 1e-8f);
    for (size_t n = 0; n < sb.size; n++) assert_int_not_equal(decode_expect(sb.data, n, &into, NULL), 0);
    assert_int_equal(decode_expect(sb.data, sb.size, &into, NULL), 0);
    /* a few lengths, through files: an error naming the file */
    size_t lens[] = {0, 1, 2, 17, sb.size / 3, sb.size / 2, sb.size - 5, sb.size - 1};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        const char *path = tmp_path("truncated.icn");
        write_bytes(path, sb.data, lens[i]);
        icn_net out;
        icn_model_meta m;
        char err[ICN_ERRLEN] = "";
        if (icn_model_load(path, &out, &m, &into, NULL, err, sizeof err) == 0) fail_msg("%zu bytes accepted", lens[i]);
        assert_non_null(strstr(err, path));
        assert_null(strchr(err, '\n'));
    }
    /* trailing bytes after a whole model are refused too */
    msgpack_sbuffer_write(&sb, "\0", 1);
    assert_int_not_equal(decode_expect(sb.data, sb.size, NULL, "trailing"), 0);
    /* a missing file is an error, not a crash */
    icn_net out;
    icn_model_meta m;
    char err[ICN_ERRLEN] = "";
    assert_int_not_equal(icn_model_load(tmp_path("absent.icn"), &out, &m, NULL, NULL, err, sizeof err), 0);
    icn_optim_free(&into);
    icn_optim_free(&opt);
    msgpack_sbuffer_destroy(&sb);
    icn_net_free(&net);
}

static void test_nonfinite_weight(void **state) {
    (void)state;
    float bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        icn_net net;
        make_net(&net, 1);
        net.params[net.n_params - 1 - i] = bad[i]; /* the CRC is computed over this value */
        icn_model_meta meta = sample_meta();
        msgpack_sbuffer sb;
        pack_model(&sb, &net, &meta, NULL);
        assert_int_not_equal(decode_expect(sb.data, sb.size, NULL, "non-finite"), 0);
        /* and through a file */
        const char *path = tmp_path("nan.icn");
        char err[ICN_ERRLEN] = "";
        assert_int_equal(icn_model_save(path, &net, &meta, NULL, err, sizeof err), 0);
        icn_net out;
        icn_model_meta m;
        assert_int_not_equal(icn_model_load(path, &out, &m, NULL, NULL, err, sizeof err), 0);
        assert_non_null(strstr(err, "non-finite"));
        msgpack_sbuffer_destroy(&sb);
        icn_net_free(&net);
    }
}

static void test_other_kind(void **state) {
    (void)state;
    /* a batch frame */
    icn_batch b;
    icn_batch_alloc(&b, 2, H, W, C, 1);
    memset(b.x, 0, 2 * H * W * C * sizeof(float));
    b.y[0] = 0, b.y[1] = 1;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    icn_batch_pack(&pk, &b);
    assert_int_not_equal(decode_expect(sb.data, sb.size, NULL, "not a model"), 0);
    /* the same through a file */
    const char *path = tmp_path("batch.icn");
    write_bytes(path, sb.data, sb.size);
    icn_net out;
    icn_model_meta m;
    char err[ICN_ERRLEN] = "";
    assert_int_not_equal(icn_model_load(path, &out, &m, NULL, NULL, err, sizeof err), 0);
    assert_non_null(strstr(err, "batch"));
    msgpack_sbuffer_destroy(&sb);
    icn_batch_free(&b);

    /* not a map at all, and a map without a kind */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2), msgpack_pack_int(&pk, 1), msgpack_pack_int(&pk, 2);
    assert_int_not_equal(decode_expect(sb.data, sb.size, NULL, "map"), 0);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1), msgpack_pack_str_with_body(&pk, "arch", 4), msgpack_pack_str_with_body(&pk, "c4", 2);
    assert_int_not_equal(decode_expect(sb.data, sb.size, NULL, "kind"), 0);
    msgpack_sbuffer_clear(&sb);
    /* the msgpack array bomb: 5 bytes that claim four billion elements */
    assert_int_not_equal(decode_expect("\xdd\xff\xff\xff\xff", 5, NULL, NULL), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* ------------------------------------------------------------ sampler */

static void test_sampler_order_independent(void **state) {
    (void)state;
    const int64_t n = 37;
    const int B = 5, steps = 40; /* 200 positions: five epochs and a bit, batches straddle epochs */
    icn_sampler fwd, rev;
    icn_sampler_init(&fwd, n, 42);
    icn_sampler_init(&rev, n, 42);
    int32_t a[steps][B], b[steps][B];
    for (int s = 0; s < steps; s++) icn_sampler_batch(&fwd, s, B, a[s]);
    for (int s = steps - 1; s >= 0; s--) icn_sampler_batch(&rev, s, B, b[s]);
    assert_memory_equal(a, b, sizeof a);
    /* a fresh sampler asked for one step alone (what a resumed run does) */
    icn_rng rng;
    icn_rng_seed(&rng, 7);
    for (int t = 0; t < 20; t++) {
        int s = (int)icn_rng_below(&rng, steps);
        icn_sampler one;
        icn_sampler_init(&one, n, 42);
        int32_t c[B];
        icn_sampler_batch(&one, s, B, c);
        assert_memory_equal(c, a[s], sizeof c);
        /* jumping around on one sampler gives the same too */
        icn_sampler_batch(&rev, s, B, c);
        assert_memory_equal(c, a[s], sizeof c);
        icn_sampler_free(&one);
    }
    /* another seed, another order */
    icn_sampler other;
    icn_sampler_init(&other, n, 43);
    int32_t d[B];
    int differ = 0;
    for (int s = 0; s < 8; s++) {
        icn_sampler_batch(&other, s, B, d);
        differ |= memcmp(d, a[s], sizeof d) != 0;
    }
    assert_true(differ);
    icn_sampler_free(&other);
    icn_sampler_free(&fwd);
    icn_sampler_free(&rev);
}

static void test_sampler_epochs_are_permutations(void **state) {
    (void)state;
    const int64_t n = 37;
    const int B = 5, steps = 40;
    icn_sampler s;
    icn_sampler_init(&s, n, 9);
    int32_t *all = xmalloc((size_t)steps * B * sizeof(int32_t));
    for (int k = 0; k < steps; k++) icn_sampler_batch(&s, k, B, all + (size_t)k * B);
    int64_t epochs = (int64_t)steps * B / n;
    assert_true(epochs >= 5);
    int identical_epochs = 0;
    for (int64_t e = 0; e < epochs; e++) {
        int seen[37] = {0};
        for (int64_t i = 0; i < n; i++) {
            int32_t v = all[e * n + i];
            assert_true(v >= 0 && v < n);
            seen[v]++;
        }
        for (int64_t i = 0; i < n; i++) assert_int_equal(seen[i], 1);
        if (e > 0) identical_epochs += !memcmp(all + e * n, all + (e - 1) * n, (size_t)n * sizeof(int32_t));
    }
    assert_int_equal(identical_epochs, 0); /* each epoch is reshuffled */
    /* the first epoch is not the identity (the data is shuffled at all) */
    int identity = 1;
    for (int64_t i = 0; i < n; i++) identity &= all[i] == i;
    assert_false(identity);
    free(all);
    icn_sampler_free(&s);
    /* a batch larger than the data set wraps over several epochs and stays in range */
    icn_sampler tiny;
    icn_sampler_init(&tiny, 3, 1);
    int32_t big[10];
    icn_sampler_batch(&tiny, 2, 10, big);
    for (int i = 0; i < 10; i++) assert_true(big[i] >= 0 && big[i] < 3);
    icn_sampler_free(&tiny);
}

/* ------------------------------------------------------------ training and resume */

/* A few dozen 12x12 images of three classes: a bright bar in a class-specific place, plus noise. */
static void make_data(icn_batch *b, int n, uint64_t seed) {
    icn_batch_alloc(b, n, H, W, C, 1);
    icn_rng rng;
    icn_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) {
        int k = i % CLASSES;
        b->y[i] = k;
        float *x = b->x + (size_t)i * H * W * C;
        for (int r = 0; r < H; r++)
            for (int c = 0; c < W; c++) {
                int on = k == 0 ? (r >= 4 && r < 7) : k == 1 ? (c >= 4 && c < 7) : (r == c || r + 1 == c);
                x[r * W + c] = (on ? 0.8f : -0.8f) + 0.2f * (float)icn_rng_gauss(&rng);
            }
    }
}

/* Captures every distinct checkpoint present on disk whenever training writes a metrics
 * line: that is how a test gets the step-k checkpoint of a run that goes on to overwrite it. */
#define MAX_CAPTURES 8
typedef struct {
    const char *ckpt;
    int n;
    int64_t step[MAX_CAPTURES];
    uint8_t *bytes[MAX_CAPTURES];
    size_t len[MAX_CAPTURES];
    int lines;
} capture;

static ssize_t capture_write(void *cookie, const char *buf, size_t size) {
    capture *c = cookie;
    for (size_t i = 0; i < size; i++) c->lines += buf[i] == '\n';
    if (access(c->ckpt, F_OK) != 0) return (ssize_t)size;
    size_t len;
    uint8_t *bytes = read_bytes(c->ckpt, &len);
    icn_net net;
    icn_model_meta meta;
    char err[ICN_ERRLEN] = "";
    if (icn_model_decode(bytes, len, &net, &meta, NULL, NULL, err, sizeof err)) fail_msg("checkpoint: %s", err);
    icn_net_free(&net);
    for (int i = 0; i < c->n; i++)
        if (c->step[i] == meta.step) {
            free(bytes);
            return (ssize_t)size;
        }
    assert_true(c->n < MAX_CAPTURES);
    c->step[c->n] = meta.step, c->bytes[c->n] = bytes, c->len[c->n] = len;
    c->n++;
    return (ssize_t)size;
}

static void opts_for(icn_train_opts *o, const char *out, const char *ckpt) {
    icn_train_opts_default(o);
    o->batch = 8;
    o->steps = 30;
    o->lr = 0.05;
    o->momentum = 0.9;
    o->weight_decay = 1e-4;
    o->milestones[0] = 0.5; /* the lr drops at step 15: between the checkpoints */
    o->n_milestones = 1;
    o->seed = 17;
    o->out = out;
    o->checkpoint = ckpt;
    o->checkpoint_every = 10;
    o->quiet = 1;
}

static void train_ok(icn_net *net, const icn_batch *data, const icn_train_opts *o) {
    char err[ICN_ERRLEN] = "";
    if (icn_train_classifier(net, data, o, err, sizeof err)) fail_msg("training: %s", err);
}

static void assert_files_equal(const char *a, const char *b) {
    size_t na, nb;
    uint8_t *pa = read_bytes(a, &na), *pb = read_bytes(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na);
    free(pa);
    free(pb);
}

static void test_train_learns_and_saves(void **state) {
    (void)state;
    icn_batch data;
    make_data(&data, 48, 1);
    icn_net net;
    make_net(&net, 17);
    icn_train_opts o;
    opts_for(&o, tmp_path("learn.icn"), NULL);
    o.steps = 60;
    train_ok(&net, &data, &o);
    icn_work *w = icn_work_new(&net, 16);
    icn_eval_result r;
    char err[ICN_ERRLEN] = "";
    if (icn_evaluate(&net, w, &data, &r, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(r.n, 48);
    assert_true(r.wrong <= 4); /* an easy problem: a trained net gets (nearly) all right */
    int64_t sum = 0;
    for (int i = 0; i < CLASSES * CLASSES; i++) sum += r.confusion[i];
    assert_int_equal(sum, 48);
    icn_eval_result_free(&r);
    icn_work_free(w);
    /* the output model is the trained net, with the run's metadata and no optimizer state */
    icn_net loaded;
    icn_model_meta meta;
    icn_optim opt;
    icn_optim_sgd(&opt, net.n_params, 0.9f, 0);
    int has = -1;
    if (icn_model_load(o.out, &loaded, &meta, &opt, &has, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(has, 0);
    assert_net_equal(&net, &loaded);
    assert_true(meta.step == 60 && meta.total_steps == 60 && meta.seed == 17 && meta.train_images == 48);
    assert_int_equal(meta.head, ICN_HEAD_SOFTMAX);
    icn_optim_free(&opt);
    icn_net_free(&loaded);
    icn_net_free(&net);

    /* a label outside the classes, or images of the wrong shape, are refused */
    make_net(&net, 17);
    data.y[5] = CLASSES;
    assert_int_not_equal(icn_train_classifier(&net, &data, &o, err, sizeof err), 0);
    assert_non_null(strstr(err, "label"));
    icn_net_free(&net);
    icn_batch_free(&data);
}

static void test_resume_is_exact(void **state) {
    (void)state;
    icn_batch data;
    make_data(&data, 40, 2);

    /* the uninterrupted run, capturing its step-10 and step-20 checkpoints on the way */
    icn_net full;
    make_net(&full, 17);
    icn_train_opts o;
    char ck_full[256], out_full[256]; /* tmp_path's buffers are reused: keep copies */
    snprintf(ck_full, sizeof ck_full, "%s", tmp_path("full.ckpt"));
    snprintf(out_full, sizeof out_full, "%s", tmp_path("full.icn"));
    opts_for(&o, out_full, ck_full);
    capture cap = {.ckpt = ck_full};
    cookie_io_functions_t io = {.write = capture_write};
    icn_metrics metrics = {fopencookie(&cap, "w", io)};
    assert_non_null(metrics.f);
    setvbuf(metrics.f, NULL, _IONBF, 0);
    o.metrics = &metrics;
    train_ok(&full, &data, &o);
    fclose(metrics.f);
    assert_true(cap.lines >= 3);
    int have10 = -1, have20 = -1;
    for (int i = 0; i < cap.n; i++) {
        if (cap.step[i] == 10) have10 = i;
        if (cap.step[i] == 20) have20 = i;
    }
    if (have10 < 0 || have20 < 0) fail_msg("did not capture the step-10 and step-20 checkpoints (%d captured)", cap.n);
    /* the final checkpoint is at the last step */
    {
        icn_net n;
        icn_model_meta m;
        char err[ICN_ERRLEN] = "";
        if (icn_model_load(ck_full, &n, &m, NULL, NULL, err, sizeof err)) fail_msg("%s", err);
        assert_true(m.step == 30);
        assert_net_equal(&full, &n);
        icn_net_free(&n);
    }

    /* resume from each captured checkpoint: the same final parameters, model file and checkpoint */
    int from[] = {have10, have20};
    for (int r = 0; r < 2; r++) {
        const char *ck = tmp_path("resume.ckpt"), *out = tmp_path("resume.icn");
        write_bytes(ck, cap.bytes[from[r]], cap.len[from[r]]);
        icn_net net;
        make_net(&net, 12345); /* another init: the parameters must come from the checkpoint */
        icn_train_opts ro;
        opts_for(&ro, out, ck);
        ro.resume = 1;
        train_ok(&net, &data, &ro);
        assert_net_equal(&full, &net);
        assert_files_equal(ck, ck_full);
        assert_files_equal(out, o.out);
        icn_net_free(&net);
        unlink(ck);
    }

    /* the comparison is sensitive: the same checkpoint with its momentum zeroed ends elsewhere */
    {
        icn_net ck_net;
        icn_model_meta ck_meta;
        icn_optim ck_opt;
        icn_optim_sgd(&ck_opt, full.n_trainable, 0.9f, 1e-4f);
        int has = 0;
        char err[ICN_ERRLEN] = "";
        if (icn_model_decode(cap.bytes[have10], cap.len[have10], &ck_net, &ck_meta, &ck_opt, &has, err, sizeof err))
            fail_msg("%s", err);
        assert_int_equal(has, 1);
        memset(ck_opt.m, 0, ck_opt.n * sizeof(float));
        char ck[256];
        snprintf(ck, sizeof ck, "%s", tmp_path("zeroed.ckpt"));
        if (icn_model_save(ck, &ck_net, &ck_meta, &ck_opt, err, sizeof err)) fail_msg("%s", err);
        icn_net net;
        make_net(&net, 17);
        icn_train_opts ro;
        opts_for(&ro, tmp_path("zeroed.icn"), ck);
        ro.resume = 1;
        train_ok(&net, &data, &ro);
        assert_memory_not_equal(full.params, net.params, full.n_params * sizeof(float));
        icn_net_free(&net);
        icn_net_free(&ck_net);
        icn_optim_free(&ck_opt);
    }

    /* resume with no checkpoint present starts from scratch, like a plain run */
    {
        icn_net net;
        make_net(&net, 17);
        icn_train_opts ro;
        opts_for(&ro, tmp_path("fresh.icn"), tmp_path("fresh.ckpt"));
        ro.resume = 1;
        train_ok(&net, &data, &ro);
        assert_net_equal(&full, &net);
        icn_net_free(&net);
    }

    /* a finished checkpoint resumes to the same model without another step */
    {
        icn_net net;
        make_net(&net, 3);
        icn_train_opts ro;
        opts_for(&ro, tmp_path("again.icn"), ck_full);
        ro.resume = 1;
        train_ok(&net, &data, &ro);
        assert_net_equal(&full, &net);
        icn_net_free(&net);
    }

    /* a checkpoint of another run (other seed, other step count, other data) is refused */
    char ck[256];
    snprintf(ck, sizeof ck, "%s", tmp_path("other.ckpt"));
    for (int v = 0; v < 3; v++) {
        write_bytes(ck, cap.bytes[have10], cap.len[have10]);
        icn_net net;
        make_net(&net, 17);
        icn_train_opts ro;
        opts_for(&ro, tmp_path("other.icn"), ck);
        ro.resume = 1;
        icn_batch *d = &data, fewer;
        if (v == 0) ro.seed = 18;
        if (v == 1) ro.steps = 31;
        if (v == 2) make_data(&fewer, 39, 2), d = &fewer;
        char err[ICN_ERRLEN] = "";
        if (icn_train_classifier(&net, d, &ro, err, sizeof err) == 0) fail_msg("variant %d: foreign checkpoint accepted", v);
        assert_non_null(strstr(err, "another run"));
        if (v == 2) icn_batch_free(&fewer);
        icn_net_free(&net);
    }
    /* a plain model (no optimizer state) is not a checkpoint */
    {
        icn_net net;
        make_net(&net, 17);
        icn_train_opts ro;
        opts_for(&ro, tmp_path("plain-out.icn"), o.out); /* the final model of the full run */
        ro.resume = 1;
        char err[ICN_ERRLEN] = "";
        assert_int_not_equal(icn_train_classifier(&net, &data, &ro, err, sizeof err), 0);
        assert_non_null(strstr(err, "optimizer"));
        icn_net_free(&net);
    }

    for (int i = 0; i < cap.n; i++) free(cap.bytes[i]);
    icn_net_free(&full);
    icn_batch_free(&data);
}

/* The same with batchnorm: its running statistics travel in the checkpoint and the model. */
static void test_resume_is_exact_resnet(void **state) {
    assert_int_equal(teardown_tmp(state), 0); /* a fresh directory: the files have the same names */
    assert_int_equal(setup_tmp(state), 0);
    arch = "resnet8";
    test_resume_is_exact(state);
    arch = "c4-c8";
}

int main(void) {
    icn_runtime_init(1); /* bit-exact comparisons need one ordering of every sum */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_model),
        cmocka_unit_test(test_roundtrip_forward),
        cmocka_unit_test(test_roundtrip_optim_sgd),
        cmocka_unit_test(test_roundtrip_optim_adam),
        cmocka_unit_test(test_corrupt_param_byte),
        cmocka_unit_test(test_crc_covers_shape),
        cmocka_unit_test(test_unknown_version),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_nonfinite_weight),
        cmocka_unit_test(test_other_kind),
        cmocka_unit_test(test_sampler_order_independent),
        cmocka_unit_test(test_sampler_epochs_are_permutations),
        cmocka_unit_test(test_train_learns_and_saves),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_resume_is_exact_resnet),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
