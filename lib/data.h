/* data.h: data sets from real files. MNIST and Fashion-MNIST come as IDX files
 * (plain or gzip-compressed). Pixels are scaled to [-1, 1] (x/127.5 - 1): the paper's
 * reference distribution N(0, 0.3^2) lives in that space. */
#ifndef ICN_DATA_H
#define ICN_DATA_H
#include "wire.h"

/* Load an IDX image file (idx3, uint8) and its label file (idx1, uint8) into a batch
 * [n, rows, cols, 1]. Declared sizes are checked against the bytes actually present. */
int icn_idx_load(const char *images_path, const char *labels_path, icn_batch *out, char *err, size_t errlen);

/* The paper's split of the 60,000 training images: train = first 55,000, val = last 5,000. */
typedef enum { ICN_SPLIT_TRAIN, ICN_SPLIT_VAL, ICN_SPLIT_TEST, ICN_SPLIT_ALL } icn_split;
int icn_split_parse(const char *s, icn_split *out);

/* Keep only samples whose label is in `classes` (a bitmask over labels 0..31; 0 = all),
 * then, if limit > 0, a random subset of `limit` drawn with `seed` (order preserved).
 * In place. */
int icn_batch_select(icn_batch *b, uint32_t classes, int64_t limit, uint64_t seed, char *err, size_t errlen);

/* Data directory: $ICN_DATA, else $XDG_CACHE_HOME/icn, else $HOME/.cache/icn. Caller frees. */
char *icn_data_dir(void);

#endif
