/* eval.h: evaluation: a model's error rate, confusion matrix and predictions on labelled
 * images, and the checks that images and labels fit a model. */
#ifndef ICN_EVAL_H
#define ICN_EVAL_H
#include <stdint.h>

#include "batch.h"
#include "net.h"

typedef struct {
    int64_t n, wrong;
    int classes;
    int64_t *confusion; /* [true class][predicted class] */
    int32_t *pred;      /* [n] the predicted class of each image, in stream order */
} icn_eval_result;

/* Error of net on a labelled batch; labels must lie in [0, classes). */
int icn_evaluate(const icn_net *net, icn_work *w, const icn_batch *data, icn_eval_result *r, char *err, size_t errlen);
void icn_eval_result_free(icn_eval_result *r);
/* Check that data's images have the shape net takes ("WHAT: images are ..., the model takes ..."). */
int icn_check_images(const icn_net *net, const icn_batch *data, const char *what, char *err, size_t errlen);
/* Check that every label of data is a real class in [0, classes). */
int icn_check_labels(const icn_batch *data, int classes, const char *what, char *err, size_t errlen);

#endif
