#include "conv_base.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* The taps [*k0, *k1) of a k-wide kernel at output position o that fall inside an input of
 * size `in` (the others read the zero padding). */
static void tap_span(int o, int in, const icn_conv_shape *s, int *k0, int *k1) {
    int first = o * s->stride - s->pad; /* input position of tap 0 */
    *k0 = first < 0 ? -first : 0;
    *k1 = in - first < s->k ? in - first : s->k;
    if (*k1 < *k0) *k1 = *k0;
}

/* Where im2col row r reads: image b, output position (oh, ow), in-range taps [kh0, kh1) x
 * [kw0, kw1), and the input column iw0 of tap kw0. Channels last makes each kernel row
 * (kh, kw0..kw1) of in-range taps one contiguous run of (kw1 - kw0) * C floats, in the input as
 * in col. */
typedef struct { int b, oh, ow, kh0, kh1, kw0, kw1, iw0; } col_row;
static col_row col_row_at(const icn_conv_shape *s, long r) {
    col_row g = {.ow = (int)(r % s->ow), .oh = (int)(r / s->ow % s->oh), .b = (int)(r / ((long)s->ow * s->oh))};
    tap_span(g.oh, s->h, s, &g.kh0, &g.kh1);
    tap_span(g.ow, s->w, s, &g.kw0, &g.kw1);
    g.iw0 = g.ow * s->stride - s->pad + g.kw0;
    return g;
}
/* The input offset of tap row kh of g (its first in-range tap). */
static size_t col_row_input(const icn_conv_shape *s, const col_row *g, int kh) {
    const int ih = g->oh * s->stride - s->pad + kh;
    return (((size_t)g->b * s->h + ih) * s->w + g->iw0) * (size_t)s->c;
}

void icn_im2col_range(float *col, const float *in, const icn_conv_shape *s, long r0, long r1) {
    const size_t K = icn_conv_kdim(s), C = (size_t)s->c;
    for (long r = r0; r < r1; r++) {
        const col_row g = col_row_at(s, r);
        float *dst = col + (size_t)(r - r0) * K;
        if (g.kh0 > 0 || g.kh1 < s->k || g.kw0 > 0 || g.kw1 < s->k) memset(dst, 0, K * sizeof(float)); /* a border */
        for (int kh = g.kh0; kh < g.kh1; kh++)
            memcpy(dst + ((size_t)kh * s->k + g.kw0) * C, in + col_row_input(s, &g, kh),
                   (size_t)(g.kw1 - g.kw0) * C * sizeof(float));
    }
}

void icn_col2im_range(float *in, const float *col, const icn_conv_shape *s, long r0, long r1) {
    const size_t K = icn_conv_kdim(s), C = (size_t)s->c;
    for (long r = r0; r < r1; r++) {
        const col_row g = col_row_at(s, r);
        const float *src = col + (size_t)(r - r0) * K;
        const size_t run = (size_t)(g.kw1 - g.kw0) * C;
        for (int kh = g.kh0; kh < g.kh1; kh++) {
            const float *from = src + ((size_t)kh * s->k + g.kw0) * C;
            float *to = in + col_row_input(s, &g, kh);
            for (size_t c = 0; c < run; c++) to[c] += from[c];
        }
    }
}

void icn_conv_sum_into(float *acc, const float *x, size_t count) {
    for (size_t i = 0; i < count; i++) acc[i] += x[i];
}

void icn_conv_sums_init(icn_conv_sums *g, size_t n_weights, int oc) {
    memset(g, 0, sizeof *g);
    g->n_weights = n_weights, g->oc = oc;
}

void icn_conv_sums_free(icn_conv_sums *g) {
    for (int i = 0; i < ICN_CONV_MAX_THREADS; i++) free(g->slot[i].dw), free(g->slot[i].db);
}

/* Thread t's sums, zeroed. */
static void zeroed(icn_conv_sums *g, int t) {
    if (t >= ICN_CONV_MAX_THREADS) icn_die(3, "internal: the convolutions support %d threads", ICN_CONV_MAX_THREADS);
    if (!g->slot[t].dw) g->slot[t].dw = xmalloc(g->n_weights * sizeof(float)), g->slot[t].db = xmalloc((size_t)g->oc * sizeof(float));
    memset(g->slot[t].dw, 0, g->n_weights * sizeof(float));
    memset(g->slot[t].db, 0, (size_t)g->oc * sizeof(float));
}

float *icn_conv_sums_begin(icn_conv_sums *g, float *dweight) {
    g->call++;
    if (dweight) return dweight;
    zeroed(g, 0); /* thread 0 never has sums of its own: its slot is free */
    return g->slot[0].dw;
}

void icn_conv_sums_targets(icn_conv_sums *g, int thread, float **dw, float **db) {
    if (thread == 0) return;
    zeroed(g, thread);
    *dw = g->slot[thread].dw, *db = g->slot[thread].db;
    g->slot[thread].call = g->call;
}

void icn_conv_sums_end(icn_conv_sums *g, float *dw, float *db) {
    for (int i = 1; i < ICN_CONV_MAX_THREADS; i++) {
        if (!g->slot[i].dw || g->slot[i].call != g->call) continue;
        if (dw) icn_conv_sum_into(dw, g->slot[i].dw, g->n_weights);
        if (db) icn_conv_sum_into(db, g->slot[i].db, (size_t)g->oc);
        g->slot[i].call = 0;
    }
}
