/* batch.h: a batch of images in memory, with labels and the provenance of pseudo-negatives.
 * The container every machine-learning file works on; how it travels (msgpack frames) is
 * wire.h's business, so nothing here knows about msgpack.
 *
 * Images are float32, channels last: shape [n, h, w, c]. */
#ifndef ICN_BATCH_H
#define ICN_BATCH_H
#include <stddef.h>
#include <stdint.h>

/* Where a pseudo-negative came from (issue 3). */
typedef struct {
    int32_t generation; /* snapshot generation it was synthesized from */
    int32_t steps;      /* synthesis steps used */
    float logit;        /* final logit of the target class */
    uint8_t reached;    /* 1 if it met the stop rule */
    uint32_t producer;  /* synthesizer id */
} icn_provenance;

/* A batch of images. y: class labels (>= 0) or pseudo-negatives of class k encoded as -(k+1).
 * y and prov may be NULL. The batch owns its arrays (free with icn_batch_free). */
typedef struct {
    int32_t n, h, w, c;
    float *x;             /* n*h*w*c */
    int32_t *y;           /* n or NULL */
    icn_provenance *prov; /* n or NULL */
} icn_batch;

size_t icn_batch_dim(const icn_batch *b); /* h*w*c */
void icn_batch_alloc(icn_batch *b, int32_t n, int32_t h, int32_t w, int32_t c, int with_labels);
void icn_batch_free(icn_batch *b);
/* Append src to dst (shapes must agree; dst may be empty). */
int icn_batch_append(icn_batch *dst, const icn_batch *src, char *err, size_t errlen);

/* Copy images idx[0..n) of data into x and (if y) their labels into y. */
void icn_gather(const icn_batch *data, const int32_t *idx, int n, float *x, int32_t *y);

/* Keep, in order and in place, the images i (0 <= i < b->n, asked in increasing order, once
 * each) for which keep(b, i, ctx) is non-zero; the others are dropped and b->n becomes the
 * count kept (the arrays keep their size until icn_batch_free). Returns the count kept. */
typedef int (*icn_batch_keep_fn)(const icn_batch *b, int32_t i, void *ctx);
int32_t icn_batch_filter(icn_batch *b, icn_batch_keep_fn keep, void *ctx);

#endif
