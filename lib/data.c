/* data.c: a data set in memory: the train/val/test split, seeded class-filtered subsets,
 * relabelling, and the one mapping of 8-bit pixels to floats. Reading files is datasets.c's. */
#include "data.h"

#include "util.h"

#include <stdlib.h>
#include <string.h>

void icn_pixels_from_u8(float *dst, const uint8_t *src, int h, int w, int c, size_t plane, size_t row_stride,
                        size_t col_stride) {
    for (int r = 0; r < h; r++)
        for (int col = 0; col < w; col++)
            for (int k = 0; k < c; k++) /* x/127.5 - 1: 0 -> -1 and 255 -> 1 exactly */
                *dst++ = (float)src[(size_t)k * plane + (size_t)r * row_stride + (size_t)col * col_stride] / 127.5f - 1.0f;
}

/* ---------------------------------------------------------------- splits */

static const char *const split_names[] = {"train", "val", "test", "all", "extra", "train+extra"};
#define N_SPLITS (int)(sizeof split_names / sizeof split_names[0])

int icn_split_parse(const char *s, icn_split *out) {
    for (int i = 0; i < N_SPLITS; i++)
        if (strcmp(s, split_names[i]) == 0) {
            *out = (icn_split)i;
            return 0;
        }
    return -1;
}

const char *icn_split_name(icn_split s) { return (unsigned)s < (unsigned)N_SPLITS ? split_names[s] : "?"; }

void icn_split_range(icn_split s, int32_t n, int32_t *start, int32_t *count) {
    /* val is the last n/12 images: exactly the paper's last 5,000 of MNIST's 60,000, and the
     * same proportion on any other file. */
    int32_t val = n / 12;
    *start = s == ICN_SPLIT_VAL ? n - val : 0;
    *count = s == ICN_SPLIT_TRAIN ? n - val : s == ICN_SPLIT_VAL ? val : n;
}

/* icn_batch_filter's test for keep_indices: image i is the next index wanted. */
typedef struct {
    const int32_t *idx;
    int32_t k, next;
} index_list;

static int wanted(const icn_batch *b, int32_t i, void *ctx) {
    (void)b;
    index_list *l = ctx;
    if (l->next >= l->k || l->idx[l->next] != i) return 0;
    l->next++;
    return 1;
}

/* Keep images idx[0..k) (ascending) in that order, in place, and give back the memory of the rest. */
static void keep_indices(icn_batch *b, const int32_t *idx, int32_t k) {
    index_list l = {idx, k, 0};
    icn_batch_filter(b, wanted, &l);
    size_t d = icn_batch_dim(b);
    b->x = xrealloc(b->x, (size_t)k * d * sizeof(float));
    if (b->y) b->y = xrealloc(b->y, (size_t)k * sizeof(int32_t));
    if (b->prov) b->prov = xrealloc(b->prov, (size_t)k * sizeof(icn_provenance));
}

int icn_split_apply(icn_batch *b, icn_split s, char *err, size_t errlen) {
    int32_t start, count;
    icn_split_range(s, b->n, &start, &count);
    if (count < 1) return icn_errf(err, errlen, "split %s of %d images is empty", icn_split_name(s), b->n);
    if (start == 0 && count == b->n) return 0;
    int32_t *idx = xmalloc((size_t)count * sizeof(int32_t));
    for (int32_t i = 0; i < count; i++) idx[i] = start + i;
    keep_indices(b, idx, count);
    free(idx);
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int icn_batch_select(icn_batch *b, uint32_t classes, int64_t limit, uint64_t seed, char *err, size_t errlen) {
    if (limit < 0) return icn_errf(err, errlen, "select: limit %lld is negative", (long long)limit);
    if (classes && !b->y) return icn_errf(err, errlen, "select: a class filter needs labels, and the batch has none");
    int32_t *idx = xmalloc((size_t)(b->n > 0 ? b->n : 1) * sizeof(int32_t));
    int32_t k = 0;
    for (int32_t i = 0; i < b->n; i++)
        if (!classes || (b->y[i] >= 0 && b->y[i] < 32 && (classes >> b->y[i] & 1u))) idx[k++] = i;
    if (limit > 0 && limit < k) {
        /* Partial Fisher-Yates: the first `limit` slots become a uniform random subset; sorting
         * them keeps the original order, so the same (limit, seed) on the same data is the same
         * stream, byte for byte. */
        icn_rng rng;
        icn_rng_seed(&rng, seed);
        for (int32_t i = 0; i < (int32_t)limit; i++) {
            int32_t j = i + (int32_t)icn_rng_below(&rng, (uint32_t)(k - i));
            int32_t t = idx[i]; idx[i] = idx[j]; idx[j] = t;
        }
        k = (int32_t)limit;
        qsort(idx, (size_t)k, sizeof *idx, cmp_i32);
    }
    if (k != b->n) keep_indices(b, idx, k);
    free(idx);
    return 0;
}

void icn_batch_relabel(icn_batch *b, uint32_t classes) {
    if (!b->y || !classes) return;
    for (int64_t i = 0; i < b->n; i++) {
        int32_t y = b->y[i];
        if (y < 0 || y > 31 || !(classes >> y & 1)) continue;
        b->y[i] = __builtin_popcount(classes & ((1u << y) - 1)); /* kept classes below y */
    }
}
