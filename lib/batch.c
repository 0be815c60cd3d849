/* batch.c: a batch of images in memory (batch.h). */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

size_t icn_batch_dim(const icn_batch *b) { return (size_t)b->h * (size_t)b->w * (size_t)b->c; }

void icn_batch_alloc(icn_batch *b, int32_t n, int32_t h, int32_t w, int32_t c, int with_labels) {
    b->n = n; b->h = h; b->w = w; b->c = c;
    b->x = xcalloc((size_t)n * icn_batch_dim(b), sizeof(float));
    b->y = with_labels ? xcalloc((size_t)n, sizeof(int32_t)) : NULL;
    b->prov = NULL;
}

void icn_batch_free(icn_batch *b) {
    if (!b) return;
    free(b->x);
    free(b->y);
    free(b->prov);
    memset(b, 0, sizeof *b);
}

static void batch_copy(icn_batch *dst, const icn_batch *src) {
    size_t n = (size_t)src->n, d = icn_batch_dim(src);
    *dst = (icn_batch){src->n, src->h, src->w, src->c, xmalloc(n * d * sizeof(float)), NULL, NULL};
    memcpy(dst->x, src->x, n * d * sizeof(float));
    if (src->y) {
        dst->y = xmalloc(n * sizeof(int32_t));
        memcpy(dst->y, src->y, n * sizeof(int32_t));
    }
    if (src->prov) {
        dst->prov = xmalloc(n * sizeof(icn_provenance));
        memcpy(dst->prov, src->prov, n * sizeof(icn_provenance));
    }
}

int icn_batch_append(icn_batch *dst, const icn_batch *src, char *err, size_t errlen) {
    if (src->n <= 0) return 0;
    if (dst->n <= 0) {
        icn_batch_free(dst);
        batch_copy(dst, src);
        return 0;
    }
    if (dst->h != src->h || dst->w != src->w || dst->c != src->c)
        return icn_errf(err, errlen, "batch: shape %dx%dx%d does not match %dx%dx%d of the earlier images", src->h,
                        src->w, src->c, dst->h, dst->w, dst->c);
    if (!dst->y != !src->y) return icn_errf(err, errlen, "batch: labels present in some frames but not in others");
    if (!dst->prov != !src->prov)
        return icn_errf(err, errlen, "batch: provenance present in some frames but not in others");
    if ((int64_t)dst->n + src->n > INT32_MAX)
        return icn_errf(err, errlen, "batch: more than %d images in one stream", INT32_MAX);
    size_t n0 = (size_t)dst->n, n1 = (size_t)src->n, d = icn_batch_dim(dst);
    dst->x = xrealloc(dst->x, (n0 + n1) * d * sizeof(float));
    memcpy(dst->x + n0 * d, src->x, n1 * d * sizeof(float));
    if (dst->y) {
        dst->y = xrealloc(dst->y, (n0 + n1) * sizeof(int32_t));
        memcpy(dst->y + n0, src->y, n1 * sizeof(int32_t));
    }
    if (dst->prov) {
        dst->prov = xrealloc(dst->prov, (n0 + n1) * sizeof(icn_provenance));
        memcpy(dst->prov + n0, src->prov, n1 * sizeof(icn_provenance));
    }
    dst->n += src->n;
    return 0;
}

void icn_gather(const icn_batch *data, const int32_t *idx, int n, float *x, int32_t *y) {
    size_t d = icn_batch_dim(data);
    for (int i = 0; i < n; i++) {
        memcpy(x + (size_t)i * d, data->x + (size_t)idx[i] * d, d * sizeof(float));
        if (y) y[i] = data->y[idx[i]];
    }
}

int32_t icn_batch_filter(icn_batch *b, icn_batch_keep_fn keep, void *ctx) {
    const size_t d = icn_batch_dim(b);
    int32_t kept = 0;
    for (int32_t i = 0; i < b->n; i++) {
        if (!keep(b, i, ctx)) continue;
        if (kept != i) {
            memcpy(b->x + (size_t)kept * d, b->x + (size_t)i * d, d * sizeof(float));
            if (b->y) b->y[kept] = b->y[i];
            if (b->prov) b->prov[kept] = b->prov[i];
        }
        kept++;
    }
    b->n = kept;
    return kept;
}
