#include "adversarial.h"

#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "util.h"

#define FGSM_BATCH 128

int icn_fgsm(const icn_net *a, icn_head head_a, const icn_net *b, const icn_batch *data, double eps, float lo, float hi,
             icn_fgsm_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (icn_check_images(a, data, "test data", err, errlen) || icn_check_images(b, data, "test data", err, errlen) ||
        icn_check_labels(data, a->classes < b->classes ? a->classes : b->classes, "test data", err, errlen))
        return -1;
    const size_t d = icn_batch_dim(data);
    icn_work *wa = icn_work_new(a, FGSM_BATCH), *wb = icn_work_new(b, FGSM_BATCH);
    float *x = xmalloc(FGSM_BATCH * d * sizeof(float)), *dx = xmalloc(FGSM_BATCH * d * sizeof(float));
    float *dz = xmalloc((size_t)FGSM_BATCH * a->classes * sizeof(float));
    int32_t *y = xmalloc(FGSM_BATCH * sizeof(int32_t));
    for (int64_t start = 0; start < data->n; start += FGSM_BATCH) {
        int n = (int)(data->n - start < FGSM_BATCH ? data->n - start : FGSM_BATCH), m = 0;
        const float *za = icn_forward(a, wa, data->x + (size_t)start * d, n);
        for (int i = 0; i < n; i++) /* keep the images A gets right */
            if (icn_argmax(za + (size_t)i * a->classes, a->classes) == data->y[start + i]) {
                memcpy(x + (size_t)m * d, data->x + (size_t)(start + i) * d, d * sizeof(float));
                y[m++] = data->y[start + i];
            }
        out->tested += n;
        out->correct += m;
        if (m == 0) continue;
        icn_loss(head_a, icn_forward(a, wa, x, m), y, NULL, m, a->classes, 0, dz);
        icn_backward(a, wa, dz, 0, dx);
        for (size_t j = 0; j < (size_t)m * d; j++) {
            float v = x[j] + (float)(dx[j] > 0 ? eps : dx[j] < 0 ? -eps : 0);
            x[j] = v < lo ? lo : v > hi ? hi : v;
        }
        const float *za2 = icn_forward(a, wa, x, m);
        uint8_t fooled[FGSM_BATCH];
        for (int i = 0; i < m; i++) out->fool_source += fooled[i] = icn_argmax(za2 + (size_t)i * a->classes, a->classes) != y[i];
        const float *zb = icn_forward(b, wb, x, m);
        for (int i = 0; i < m; i++)
            out->fool_both += fooled[i] && icn_argmax(zb + (size_t)i * b->classes, b->classes) != y[i];
    }
    free(x), free(dx), free(dz), free(y);
    icn_work_free(wa);
    icn_work_free(wb);
    return 0;
}
