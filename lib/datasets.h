/* datasets.h: the named data sets and their files: mnist and fashion (IDX), cifar10 (the
 * binary version of CIFAR-10) and svhn (the cropped digits, level-5 MAT-files, matfile.h). Every
 * one gives images channels last with pixels in [-1, 1] (icn_pixels_from_u8) and labels 0..9. */
#ifndef ICN_DATASETS_H
#define ICN_DATASETS_H
#include "data.h"

/* Data directory: $ICN_DATA, else $XDG_CACHE_HOME/icn, else $HOME/.cache/icn. Caller frees. */
char *icn_data_dir(void);
/* "dir/name". Caller frees. */
char *icn_path_join(const char *dir, const char *name);

/* Load an IDX image file (idx3, uint8) and its label file (idx1, uint8) into a batch
 * [n, rows, cols, 1]. Declared sizes are checked against the bytes actually present. */
int icn_idx_load(const char *images_path, const char *labels_path, icn_batch *out, char *err, size_t errlen);
/* The IDX files of a named data set ("mnist" or "fashion") under icn_data_dir(): the t10k
 * files for ICN_SPLIT_TEST, the training files otherwise; NAME or NAME.gz. When absent the
 * error says to run `icn-load --fetch NAME`. Caller frees both paths. */
int icn_dataset_files(const char *name, icn_split s, char **images, char **labels, char *err, size_t errlen);

#define ICN_CIFAR10_URL "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
#define ICN_SVHN_URL "http://ufldl.stanford.edu/housenumbers/"

/* The files of data set `name` that split s reads, in dir (NULL: the data set's directory in
 * icn_data_dir(): mnist/, fashion-mnist/, cifar-10-batches-bin/, svhn/), loaded into one batch
 * in file order; the range of a split (icn_split_apply) is left to the caller.
 *   mnist, fashion: the training IDX files, or t10k for test (icn_dataset_files); no dir.
 *   cifar10: data_batch_1.bin .. data_batch_5.bin, or test_batch.bin for test.
 *   svhn: train_32x32.mat, test_32x32.mat for test, extra_32x32.mat for extra, and both
 *         train_32x32.mat and extra_32x32.mat for train+extra.
 * Every file is checked to be there before any is read; the error for one that is not names it
 * and says where to get it. A split the data set has not (mnist extra) is an error. */
int icn_dataset_load(const char *name, const char *dir, icn_split s, icn_batch *out, char *err, size_t errlen);

/* Whether name is a data set, has split s, and can be read from a directory of one's choice:
 * 0, or -1 with the error. icn_dataset_load checks this first. */
int icn_dataset_check(const char *name, const char *dir, icn_split s, char *err, size_t errlen);

/* CIFAR-10 binary files: records of 1 label byte (0..9) and 3,072 pixel bytes (1,024 red, then
 * green, then blue, each 32x32 row-major), appended in order into out [n, 32, 32, 3]. A record
 * cut short or a label above 9 is an error naming the file and the record. */
int icn_cifar10_load(const char *const *paths, int n_paths, icn_batch *out, char *err, size_t errlen);

/* SVHN MAT-files: X (uint8, 32x32x3xN, column-major) and y (N x 1, double or uint8, 1..10 where
 * 10 is the digit 0), appended in order into out [n, 32, 32, 3] with labels 0..9. X of another
 * shape or class, y of another length, a label outside 1..10 are errors naming the file. */
int icn_svhn_load(const char *const *paths, int n_paths, icn_batch *out, char *err, size_t errlen);

#endif
