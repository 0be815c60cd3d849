/* pool_contract.c: what every record of a pool must be (the contract), how the store's
 * header keeps it with the store's identity, and the fsync policy names (lib/pool.h). */
#include "pool.h"

#include "bytes.h"
#include "util.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Refusal reasons of the contract: the stats' vocabulary (pool.c has the store's own). */
#define R_SHAPE "shape"
#define R_LABEL "label"
#define R_CLASS "class"
#define R_PROV "provenance"
#define R_NAN "nonfinite"
#define R_RANGE "range"

int icn_fsync_parse(const char *s, icn_fsync_policy *out) {
    if (strcmp(s, "batch") == 0) *out = ICN_FSYNC_BATCH;
    else if (strcmp(s, "always") == 0) *out = ICN_FSYNC_ALWAYS;
    else if (strcmp(s, "none") == 0) *out = ICN_FSYNC_NONE;
    else return -1;
    return 0;
}

const char *icn_fsync_name(icn_fsync_policy f) {
    return f == ICN_FSYNC_ALWAYS ? "always" : f == ICN_FSYNC_NONE ? "none" : "batch";
}


icn_pool_contract icn_pool_contract_make(int32_t h, int32_t w, int32_t c, int32_t classes) {
    return (icn_pool_contract){h, w, c, classes, -1.0f, 1.0f, 0};
}

int icn_pool_contract_check(const icn_pool_contract *k, char *err, size_t errlen) {
    if (k->h < 1 || k->w < 1 || k->c < 1 || k->h > 65536 || k->w > 65536 || k->c > 65536 ||
        (uint64_t)k->h * (uint64_t)k->w * (uint64_t)k->c > ((uint64_t)1 << 28))
        return icn_errf(err, errlen, "contract: shape %dx%dx%d: each dimension must be 1 .. 65536, at most 2^28 pixels",
                        k->h, k->w, k->c);
    if (k->classes < 1 || k->classes > ICN_POOL_CLASSES_MAX)
        return icn_errf(err, errlen, "contract: %d classes: must be 1 .. %d", k->classes, ICN_POOL_CLASSES_MAX);
    if (!isfinite(k->lo) || !isfinite(k->hi) || !(k->lo < k->hi))
        return icn_errf(err, errlen, "contract: pixel range [%g, %g]: must be finite with lo < hi", (double)k->lo,
                        (double)k->hi);
    if (k->quota_per_generation < 0)
        return icn_errf(err, errlen, "contract: quota %" PRId64 ": must be >= 0 (0: none)", k->quota_per_generation);
    return 0;
}

void icn_pool_contract_format(const icn_pool_contract *k, char *out, size_t outlen) {
    char q[48] = "no quota";
    if (k->quota_per_generation) snprintf(q, sizeof q, "quota %" PRId64 " per peer and generation", k->quota_per_generation);
    snprintf(out, outlen, "%dx%dx%d, %d classes, pixels in [%g, %g], %s", k->h, k->w, k->c, k->classes, (double)k->lo,
             (double)k->hi, q);
}

int icn_pool_contract_equal(const icn_pool_contract *a, const icn_pool_contract *b) {
    return a->h == b->h && a->w == b->w && a->c == b->c && a->classes == b->classes && a->lo == b->lo && a->hi == b->hi &&
           a->quota_per_generation == b->quota_per_generation;
}

void icn_pool_header_encode(const uint8_t uuid[16], const icn_pool_contract *k, uint8_t hd[ICN_POOL_HEADER_LEN]) {
    memcpy(hd, ICN_POOL_MAGIC, 8);
    icn_le_store_u32(hd + 8, ICN_POOL_VERSION);
    icn_le_store_u32(hd + 12, ICN_POOL_HEADER_LEN);
    memcpy(hd + 16, uuid, 16);
    icn_le_store_u32(hd + 32, (uint32_t)k->h), icn_le_store_u32(hd + 36, (uint32_t)k->w);
    icn_le_store_u32(hd + 40, (uint32_t)k->c), icn_le_store_u32(hd + 44, (uint32_t)k->classes);
    icn_le_store_f32(hd + 48, &k->lo, 1), icn_le_store_f32(hd + 52, &k->hi, 1);
    icn_le_store_u64(hd + 56, (uint64_t)k->quota_per_generation);
    icn_le_store_u32(hd + 64, icn_crc32(0, hd, 64));
}

int icn_pool_header_decode(const char *path, const uint8_t hd[ICN_POOL_HEADER_LEN], uint8_t uuid[16],
                           icn_pool_contract *k, char *err, size_t errlen) {
    if (memcmp(hd, "ICNPOOL1", 8) == 0)
        return icn_errf(err, errlen,
                        "%s: a version-1 pool (\"ICNPOOL1\", from before stores had commit markers and a UUID); this "
                        "icn-pool reads version %d only: start a new store",
                        path, ICN_POOL_VERSION);
    if (memcmp(hd, ICN_POOL_MAGIC, 8) != 0)
        return icn_errf(err, errlen, "%s: not an icn pool (the file does not start with \"%s\")", path, ICN_POOL_MAGIC);
    uint32_t crc = icn_crc32(0, hd, 64);
    if (crc != icn_le_load_u32(hd + 64))
        return icn_errf(err, errlen, "%s: the header is damaged (CRC-32 0x%08x, it says 0x%08x): its contract and UUID "
                        "cannot be trusted", path, crc, icn_le_load_u32(hd + 64));
    if (icn_le_load_u32(hd + 8) != ICN_POOL_VERSION || icn_le_load_u32(hd + 12) != ICN_POOL_HEADER_LEN)
        return icn_errf(err, errlen, "%s: pool format version %u (header %u bytes); this icn-pool reads version %d",
                        path, icn_le_load_u32(hd + 8), icn_le_load_u32(hd + 12), ICN_POOL_VERSION);
    memcpy(uuid, hd + 16, 16);
    float range[2];
    icn_le_load_f32(range, hd + 48, 2);
    *k = (icn_pool_contract){(int32_t)icn_le_load_u32(hd + 32), (int32_t)icn_le_load_u32(hd + 36),
                               (int32_t)icn_le_load_u32(hd + 40), (int32_t)icn_le_load_u32(hd + 44), range[0], range[1],
                               (int64_t)icn_le_load_u64(hd + 56)};
    char e[ICN_ERRLEN];
    if (icn_pool_contract_check(k, e, sizeof e)) return icn_errf(err, errlen, "%s: header: %s", path, e);
    return 0;
}

/* Checks one image of a batch against the contract: what every stored record must be. NULL when
 * it passes, else the reason with err. */
const char *icn_pool_contract_image(const icn_pool_contract *k, const icn_batch *b, int32_t i, char *err, size_t errlen) {
    if (!b->y) return icn_errf(err, errlen, "no labels: a pool stores labelled pseudo-negatives"), R_LABEL;
    if (b->y[i] >= 0)
        return icn_errf(err, errlen, "image %d has label %d: a pool stores only pseudo-negatives (labels < 0)", i, b->y[i]),
               R_LABEL;
    if (b->y[i] < -k->classes)
        return icn_errf(err, errlen, "image %d has label %d: a pseudo-negative of class %" PRId64 ", but the pool has %d classes",
                        i, b->y[i], -(int64_t)b->y[i] - 1, k->classes),
               R_CLASS;
    if (!b->prov)
        return icn_errf(err, errlen, "no provenance ('prov'): a pool records where each image came from"), R_PROV;
    const icn_provenance *v = &b->prov[i];
    if (!isfinite(v->logit)) return icn_errf(err, errlen, "image %d: provenance logit is not finite", i), R_NAN;
    if (v->reached > 1)
        return icn_errf(err, errlen, "image %d: provenance 'reached' is %u, not 0 or 1", i, v->reached), R_PROV;
    size_t d = icn_batch_dim(b);
    const float *x = b->x + (size_t)i * d;
    for (size_t j = 0; j < d; j++) {
        if (!isfinite(x[j])) return icn_errf(err, errlen, "image %d: pixel %zu is not finite", i, j), R_NAN;
        if (x[j] < k->lo || x[j] > k->hi)
            return icn_errf(err, errlen, "image %d: pixel %zu is %g, outside the pool's range [%g, %g]", i, j, (double)x[j],
                            (double)k->lo, (double)k->hi),
                   R_RANGE;
    }
    return NULL;
}

const char *icn_pool_contract_shape(const icn_pool_contract *k, const icn_batch *b, char *err, size_t errlen) {
    if (b->h != k->h || b->w != k->w || b->c != k->c)
        return icn_errf(err, errlen, "shape %dx%dx%d does not match the pool's %dx%dx%d", b->h, b->w, b->c, k->h, k->w,
                        k->c),
               R_SHAPE;
    return NULL;
}
