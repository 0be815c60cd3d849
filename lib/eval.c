/* eval.c: a model's error on labelled images (eval.h). */
#include "eval.h"

#include <stdlib.h>
#include <string.h>

#include "losses.h"
#include "util.h"

int icn_check_labels(const icn_batch *data, int classes, const char *what, char *err, size_t errlen) {
    if (!data->y) return icn_errf(err, errlen, "%s: the tensor stream has no labels", what);
    for (int64_t i = 0; i < data->n; i++)
        if (data->y[i] < 0 || data->y[i] >= classes)
            return icn_errf(err, errlen, "%s: image %lld has label %d, outside the model's classes [0, %d)", what,
                            (long long)i, data->y[i], classes);
    return 0;
}

int icn_check_images(const icn_net *net, const icn_batch *data, const char *what, char *err, size_t errlen) {
    if (data->h == net->in_h && data->w == net->in_w && data->c == net->in_c) return 0;
    return icn_errf(err, errlen, "%s: images are %dx%dx%d, the model takes %dx%dx%d", what, data->h, data->w, data->c,
                    net->in_h, net->in_w, net->in_c);
}

int icn_evaluate(const icn_net *net, icn_work *w, const icn_batch *data, icn_eval_result *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    if (icn_check_labels(data, net->classes, "evaluation data", err, errlen)) return -1;
    if (icn_check_images(net, data, "evaluation data", err, errlen)) return -1;
    r->classes = net->classes;
    r->confusion = xcalloc((size_t)net->classes * net->classes, sizeof(int64_t));
    r->pred = xmalloc((size_t)data->n * sizeof *r->pred + 1); /* + 1: no malloc(0) for an empty batch */
    size_t d = icn_batch_dim(data);
    for (int64_t i = 0; i < data->n; i += w->max_batch) {
        int m = (int)(data->n - i < w->max_batch ? data->n - i : w->max_batch);
        const float *logits = icn_forward(net, w, data->x + (size_t)i * d, m);
        for (int j = 0; j < m; j++) {
            int pred = icn_argmax(logits + (size_t)j * net->classes, net->classes), truth = data->y[i + j];
            r->confusion[(size_t)truth * net->classes + pred]++;
            r->pred[i + j] = pred;
            r->wrong += pred != truth;
        }
    }
    r->n = data->n;
    return 0;
}

void icn_eval_result_free(icn_eval_result *r) {
    free(r->confusion);
    free(r->pred);
    r->confusion = NULL;
    r->pred = NULL;
}
