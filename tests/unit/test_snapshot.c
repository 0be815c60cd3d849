/* test_snapshot.c: model files (lib/snapshot.c). The batch sampler and training are
 * test_train.c's; resuming from a checkpoint is test_checkpoint.c's.
 *
 * A model file is untrusted input like any other: every corruption here (a flipped byte,
 * a wrong version, a truncation, a NaN, a frame of another kind) must give a one-line
 * error, never a crash, and a header is checked before anything it declares is allocated. */
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

/* ------------------------------------------------------------ helpers */

#include "fixtures.h"
#include "train_fixtures.h"
#include "child.h"

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

static void test_a_model_file_gives_back_the_net_and_its_metadata(void **state) {
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
static void test_a_decoded_net_gives_the_same_logits(void **state) {
    (void)state;
    icn_net a, b;
    make_net(&a, 5);
    icn_model_meta ma = sample_meta(), mb;
    msgpack_sbuffer sb;
    pack_model(&sb, &a, &ma, NULL);
    char err[ICN_ERRLEN] = "";
    if (icn_model_decode((const uint8_t *)sb.data, sb.size, &b, &mb, NULL, NULL, err, sizeof err)) fail_msg("%s", err);
    float x[2 * TH * TW * TC];
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) x[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
    icn_work *wa = icn_work_new(&a, 2), *wb = icn_work_new(&b, 2);
    const float *la = icn_forward(&a, wa, x, 2), *lb = icn_forward(&b, wb, x, 2);
    assert_memory_equal(la, lb, 2 * TCLASSES * sizeof(float));
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

static void test_a_checkpoint_gives_back_sgd_s_state(void **state) {
    (void)state;
    check_optim_roundtrip(0);
}

static void test_a_checkpoint_gives_back_adam_s_state(void **state) {
    (void)state;
    check_optim_roundtrip(1);
}

/* ------------------------------------------------------------ corruption */

static void test_a_flipped_parameter_byte_is_refused(void **state) {
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
    msgpack_pack_int(pk, TH - 1), msgpack_pack_int(pk, TW - 1), msgpack_pack_int(pk, TC);
    return 1;
}

/* The CRC covers architecture and shape too: a stored CRC of another model is refused. */
static void test_the_crc_covers_the_architecture_and_shape(void **state) {
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
    if (icn_net_build(&other, train_arch, TH - 1, TW - 1, TC, TCLASSES, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(other.n_params, net.n_params);
    icn_net_free(&other);
    msgpack_sbuffer edited;
    repack(&sb, &edited, edit_input, NULL, 0);
    assert_int_not_equal(decode_expect(edited.data, edited.size, NULL, "checksum"), 0);
    msgpack_sbuffer_destroy(&edited);
    msgpack_sbuffer_destroy(&sb);
    icn_net_free(&net);
}

static void test_a_model_of_an_unknown_version_is_refused(void **state) {
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
static void test_every_required_key_wrong_or_missing_is_refused_by_name(void **state) {
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

static void test_a_truncated_model_is_refused(void **state) {
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

static void test_a_nan_or_infinite_weight_is_refused(void **state) {
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

static void test_a_frame_of_another_kind_is_not_a_model(void **state) {
    (void)state;
    /* a batch frame */
    icn_batch b;
    icn_batch_alloc(&b, 2, TH, TW, TC, 1);
    memset(b.x, 0, 2 * TH * TW * TC * sizeof(float));
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

/* A hostile header (issue 16, finding 1): a ~100-byte model whose header implies gigabytes of
 * parameters. */
static void pack_str(msgpack_packer *pk, const char *s) { msgpack_pack_str_with_body(pk, s, strlen(s)); }

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

static void test_a_model_header_is_checked_before_its_parameters_are_allocated(void **state) {
    (void)state;
    char err[ICN_ERRLEN];
    long peak;
    /* 1 GB of address space: a 10 GB allocation fails (icn_die: exit 3) instead of being refused */
    int rc = in_child(decode_big_header, 1024, err, sizeof err, &peak);
    if (rc != -1) fail_msg("decoding returned %d (100 + n: exited with status n): %s", rc, err);
    if (!strstr(err, "'params'")) fail_msg("the error does not name the parameters: %s", err);
    if (!UNDER_ASAN && peak > 100) fail_msg("peak memory %ld MB for a ~110-byte model", peak);
}

int main(void) {
    icn_runtime_init(1); /* bit-exact comparisons need one ordering of every sum */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_model_file_gives_back_the_net_and_its_metadata),
        cmocka_unit_test(test_a_decoded_net_gives_the_same_logits),
        cmocka_unit_test(test_a_checkpoint_gives_back_sgd_s_state),
        cmocka_unit_test(test_a_checkpoint_gives_back_adam_s_state),
        cmocka_unit_test(test_a_flipped_parameter_byte_is_refused),
        cmocka_unit_test(test_the_crc_covers_the_architecture_and_shape),
        cmocka_unit_test(test_a_model_of_an_unknown_version_is_refused),
        cmocka_unit_test(test_every_required_key_wrong_or_missing_is_refused_by_name),
        cmocka_unit_test(test_a_truncated_model_is_refused),
        cmocka_unit_test(test_a_nan_or_infinite_weight_is_refused),
        cmocka_unit_test(test_a_frame_of_another_kind_is_not_a_model),
        cmocka_unit_test(test_a_model_header_is_checked_before_its_parameters_are_allocated),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
