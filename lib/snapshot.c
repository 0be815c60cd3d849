#include "snapshot.h"

#include "pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "fileio.h"
#include "util.h"
#include "wire.h"

#define MAX_MODEL_BYTES ((size_t)2 << 30)

static void pack_floats(msgpack_packer *pk, const float *x, size_t n) {
    msgpack_pack_bin(pk, n * sizeof(float));
    uint8_t chunk[4096];
    for (size_t i = 0; i < n; i += sizeof chunk / 4) {
        size_t m = n - i < sizeof chunk / 4 ? n - i : sizeof chunk / 4;
        icn_le_store_f32(chunk, x + i, m);
        msgpack_pack_bin_body(pk, chunk, m * 4);
    }
}

/* CRC-32 over what defines the model: architecture, input shape, classes, parameters. */
static uint32_t model_crc(const icn_net *net, const uint8_t *params_le) {
    uint32_t crc = icn_crc32(0, net->arch, strlen(net->arch));
    int32_t dims[4] = {net->in_h, net->in_w, net->in_c, net->classes};
    uint8_t dims_le[16];
    for (int i = 0; i < 4; i++) icn_le_store_u32(dims_le + 4 * i, (uint32_t)dims[i]);
    crc = icn_crc32(crc, dims_le, sizeof dims_le);
    return icn_crc32(crc, params_le, net->n_params * sizeof(float));
}

static const char *meta_keys[] = {"generation", "step", "total_steps", "seed", "train_images", "round", "pool_offset",
                                  "pool_start"};

static int64_t *meta_field(icn_model_meta *m, int i) {
    int64_t *f[] = {&m->generation, &m->step, &m->total_steps, &m->seed, &m->train_images, &m->round, &m->pool_offset,
                    &m->pool_start};
    return f[i];
}

void icn_model_pack(msgpack_sbuffer *sb, const icn_net *net, const icn_model_meta *meta, const icn_optim *optim) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    size_t bytes = net->n_params * sizeof(float);
    uint8_t *le = xmalloc(bytes);
    icn_le_store_f32(le, net->params, net->n_params);

    msgpack_pack_map(&pk, optim ? 11 : 10);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "model");
    icn_pack_str(&pk, "version"), msgpack_pack_int(&pk, ICN_MODEL_VERSION);
    icn_pack_str(&pk, "arch"), icn_pack_str(&pk, net->arch);
    icn_pack_str(&pk, "input"), msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, net->in_h), msgpack_pack_int(&pk, net->in_w), msgpack_pack_int(&pk, net->in_c);
    icn_pack_str(&pk, "classes"), msgpack_pack_int(&pk, net->classes);
    icn_pack_str(&pk, "head"), icn_pack_str(&pk, icn_head_name(meta->head));
    icn_pack_str(&pk, "n_params"), msgpack_pack_uint64(&pk, net->n_params);
    icn_pack_str(&pk, "params"), msgpack_pack_bin(&pk, bytes), msgpack_pack_bin_body(&pk, le, bytes);
    icn_pack_str(&pk, "crc32"), msgpack_pack_uint32(&pk, model_crc(net, le));
    icn_pack_str(&pk, "info"),
        msgpack_pack_map(&pk, sizeof meta_keys / sizeof meta_keys[0] + (meta->settings[0] != 0) + (meta->pool_uuid[0] != 0));
    icn_model_meta copy = *meta;
    for (size_t i = 0; i < sizeof meta_keys / sizeof meta_keys[0]; i++)
        icn_pack_str(&pk, meta_keys[i]), msgpack_pack_int64(&pk, *meta_field(&copy, (int)i));
    if (meta->settings[0]) icn_pack_str(&pk, "settings"), icn_pack_str(&pk, meta->settings);
    if (meta->pool_uuid[0]) icn_pack_str(&pk, "pool_uuid"), icn_pack_str(&pk, meta->pool_uuid);
    if (optim) {
        icn_pack_str(&pk, "optim"), msgpack_pack_map(&pk, optim->v ? 4 : 3);
        icn_pack_str(&pk, "kind"), icn_pack_str(&pk, optim->kind == ICN_OPT_ADAM ? "adam" : "sgd");
        icn_pack_str(&pk, "t"), msgpack_pack_int64(&pk, optim->t);
        icn_pack_str(&pk, "m"), pack_floats(&pk, optim->m, optim->n);
        if (optim->v) icn_pack_str(&pk, "v"), pack_floats(&pk, optim->v, optim->n);
    }
    free(le);
}

static int decode_floats(const msgpack_object *map, const char *key, float *out, size_t n, const char *what, char *err,
                         size_t errlen) {
    const uint8_t *bin;
    if (icn_map_bin(map, key, n * sizeof(float), &bin, err, errlen)) return -1;
    icn_le_load_f32(out, bin, n);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(out[i])) return icn_errf(err, errlen, "%s: '%s' holds a non-finite value at index %zu", what, key, i);
    return 0;
}

static int decode_input_shape(const msgpack_object *map, int64_t dims[3], char *err, size_t errlen) {
    const msgpack_object *in = icn_map_get(map, "input");
    if (!in || in->type != MSGPACK_OBJECT_ARRAY || in->via.array.size != 3)
        return icn_errf(err, errlen, "model: 'input' must be an array [h, w, c]");
    for (int i = 0; i < 3; i++) {
        const msgpack_object *d = &in->via.array.ptr[i];
        if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 < 1 || d->via.u64 > 4096)
            return icn_errf(err, errlen, "model: 'input' dimension %d is not an integer in [1, 4096]", i);
        dims[i] = (int64_t)d->via.u64;
    }
    return 0;
}

static int decode_optim(const msgpack_object *map, icn_optim *optim, int *has_optim, char *err, size_t errlen) {
    const msgpack_object *o = icn_map_get(map, "optim");
    if (has_optim) *has_optim = 0;
    if (!o || !optim) return 0;
    if (o->type != MSGPACK_OBJECT_MAP) return icn_errf(err, errlen, "model: 'optim' is not a map");
    char kind[16];
    if (icn_map_str(o, "kind", kind, sizeof kind, err, errlen)) return -1;
    int adam = !strcmp(kind, "adam");
    if (!adam && strcmp(kind, "sgd")) return icn_errf(err, errlen, "model: unknown optimizer '%s'", kind);
    if (adam != (optim->kind == ICN_OPT_ADAM))
        return icn_errf(err, errlen, "model: checkpoint optimizer is %s, this run uses %s", kind,
                        optim->kind == ICN_OPT_ADAM ? "adam" : "sgd");
    int64_t t;
    if (icn_map_i64(o, "t", 0, INT64_MAX, &t, err, errlen)) return -1;
    if (decode_floats(o, "m", optim->m, optim->n, "optim", err, errlen)) return -1;
    if (adam && decode_floats(o, "v", optim->v, optim->n, "optim", err, errlen)) return -1;
    optim->t = t;
    if (has_optim) *has_optim = 1;
    return 0;
}

int icn_model_decode(const uint8_t *p, size_t n, icn_net *net, icn_model_meta *meta, icn_optim *optim, int *has_optim,
                     char *err, size_t errlen) {
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    memset(net, 0, sizeof *net);
    memset(meta, 0, sizeof *meta);
    int rc = icn_frame_unpack(p, n, &up, err, errlen) ? -1 : icn_model_decode_map(&up.data, net, meta, optim, has_optim, err, errlen);
    msgpack_unpacked_destroy(&up);
    return rc;
}

int icn_model_decode_map(const msgpack_object *map, icn_net *net, icn_model_meta *meta, icn_optim *optim,
                         int *has_optim, char *err, size_t errlen) {
    memset(net, 0, sizeof *net);
    memset(meta, 0, sizeof *meta);
    int rc = -1;
    char kind[16], arch[ICN_ARCH_LEN], head[16];
    int64_t version, classes, n_params, crc, dims[3];
    if (icn_map_str(map, "kind", kind, sizeof kind, err, errlen)) goto out;
    if (strcmp(kind, "model")) { icn_errf(err, errlen, "frame of kind '%s' is not a model", kind); goto out; }
    if (icn_map_i64(map, "version", 0, INT32_MAX, &version, err, errlen)) goto out;
    if (version != ICN_MODEL_VERSION) {
        icn_errf(err, errlen, "model: unknown format version %lld (this build reads version %d)", (long long)version,
                 ICN_MODEL_VERSION);
        goto out;
    }
    if (icn_map_str(map, "arch", arch, sizeof arch, err, errlen) || icn_map_str(map, "head", head, sizeof head, err, errlen) ||
        icn_map_i64(map, "classes", 1, 100000, &classes, err, errlen) ||
        icn_map_i64(map, "n_params", 1, INT64_MAX, &n_params, err, errlen) ||
        icn_map_i64(map, "crc32", 0, UINT32_MAX, &crc, err, errlen) || decode_input_shape(map, dims, err, errlen))
        goto out;
    if (icn_head_parse(head, &meta->head)) { icn_errf(err, errlen, "model: unknown head '%s'", head); goto out; }
    char build_err[ICN_ERRLEN];
    if (icn_net_plan(net, arch, (int)dims[0], (int)dims[1], (int)dims[2], (int)classes, build_err, sizeof build_err)) {
        icn_errf(err, errlen, "model: %s", build_err);
        goto out;
    }
    /* What the header implies is held against the bytes present before anything is allocated:
     * a 110-byte file must not make us allocate gigabytes. */
    if ((size_t)n_params != net->n_params) {
        icn_errf(err, errlen, "model: declares %lld parameters but architecture '%s' has %zu", (long long)n_params, arch,
                 net->n_params);
        goto out;
    }
    const uint8_t *bin;
    if (icn_map_bin(map, "params", net->n_params * sizeof(float), &bin, err, errlen)) goto out;
    net->params = xcalloc(net->n_params, sizeof(float));
    if (model_crc(net, bin) != (uint32_t)crc) {
        icn_errf(err, errlen, "model: checksum mismatch (stored %08llx, computed %08x): the file is corrupt",
                 (long long)crc, model_crc(net, bin));
        goto out;
    }
    if (decode_floats(map, "params", net->params, net->n_params, "model", err, errlen)) goto out;
    const msgpack_object *info = icn_map_get(map, "info");
    if (info && info->type == MSGPACK_OBJECT_MAP) {
        for (size_t i = 0; i < sizeof meta_keys / sizeof meta_keys[0]; i++)
            if (icn_map_get(info, meta_keys[i]) &&
                icn_map_i64(info, meta_keys[i], INT64_MIN, INT64_MAX, meta_field(meta, (int)i), err, errlen))
                goto out;
        if (icn_map_get(info, "settings") &&
            icn_map_str(info, "settings", meta->settings, sizeof meta->settings, err, errlen))
            goto out;
        uint8_t id[16];
        if (icn_map_get(info, "pool_uuid") &&
            (icn_map_str(info, "pool_uuid", meta->pool_uuid, sizeof meta->pool_uuid, err, errlen) ||
             icn_uuid_parse(meta->pool_uuid, id))) {
            icn_errf(err, errlen, "model: 'pool_uuid' is not a UUID");
            goto out;
        }
    }
    if (optim && optim->n != net->n_trainable) {
        icn_errf(err, errlen, "model: optimizer state for %zu parameters, model has %zu", optim->n, net->n_trainable);
        goto out;
    }
    if (decode_optim(map, optim, has_optim, err, errlen)) goto out;
    rc = 0;
out:
    if (rc) icn_net_free(net);
    return rc;
}

int icn_model_save(const char *path, const icn_net *net, const icn_model_meta *meta, const icn_optim *optim, char *err,
                   size_t errlen) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_model_pack(&sb, net, meta, optim);
    int rc = icn_write_file_atomic(path, sb.data, sb.size, err, errlen);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int icn_model_load(const char *path, icn_net *net, icn_model_meta *meta, icn_optim *optim, int *has_optim, char *err,
                   size_t errlen) {
    uint8_t *data;
    size_t len;
    if (icn_read_file(path, MAX_MODEL_BYTES, &data, &len, err, errlen)) return -1;
    char inner[ICN_ERRLEN];
    int rc = icn_model_decode(data, len, net, meta, optim, has_optim, inner, sizeof inner);
    if (rc) icn_errf(err, errlen, "%s: %s", path, inner);
    free(data);
    return rc;
}
