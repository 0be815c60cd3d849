#include "conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_dnnl.h"
#include "conv_gemm.h"
#include "conv_ref.h"
#include "util.h"

struct icn_conv {
    icn_conv_shape s;
    icn_conv_gemm *gemm; /* the matrix-product kind, alone */
    icn_conv_dnnl *dnnl; /* oneDNN: forward and weight gradient, and the input gradient unless ref */
    icn_conv_ref *ref;   /* the reference: everything, or beside oneDNN the input gradient */
    char describe[160];
};

static int path = -1;

icn_conv_path icn_conv_path_in_use(void) {
    if (path < 0) {
        const char *v = getenv("ICN_CONV");
        if (!v || !*v || !strcmp(v, "fast")) path = ICN_CONV_FAST;
        else if (!strcmp(v, "reference")) path = ICN_CONV_REFERENCE;
        else icn_die(2, "ICN_CONV='%s': expected 'reference' or 'fast'", v);
    }
    return (icn_conv_path)path;
}

void icn_conv_use_path(icn_conv_path p) { path = p; }

icn_conv *icn_conv_new(const icn_conv_shape *s, const icn_conv_opts *o, int max_batch) {
    icn_conv *c = xcalloc(1, sizeof *c);
    c->s = *s;
    const int fast = icn_conv_path_in_use() == ICN_CONV_FAST && max_batch >= 1;
    if (fast && s->oh * s->ow < ICN_CONV_MIN_PIXELS) {
        c->gemm = icn_conv_gemm_new(s, max_batch);
        snprintf(c->describe, sizeof c->describe, "im2col + AVX-512 sgemm (%d output pixels)", s->oh * s->ow);
        return c;
    }
    const int ref_data = s->c < 8; /* the input gradient on the reference */
    if (fast)
        c->dnnl = icn_conv_dnnl_new(s, o->bias, max_batch, o->type,
                                    ICN_DNNL_FORWARD | ICN_DNNL_BACKWARD_WEIGHTS | (ref_data ? 0 : ICN_DNNL_BACKWARD_DATA));
    if (!c->dnnl) {
        c->ref = icn_conv_ref_new(s, o->chunked, 1, max_batch, o->scratch);
        snprintf(c->describe, sizeof c->describe, "reference");
        return c;
    }
    /* beside oneDNN the reference computes only input gradients, of the whole batch at once */
    if (ref_data) c->ref = icn_conv_ref_new(s, 0, 0, max_batch, o->scratch);
    snprintf(c->describe, sizeof c->describe, "%s / %s / %s", icn_conv_dnnl_impl(c->dnnl, ICN_DNNL_FORWARD),
             ref_data ? "reference" : icn_conv_dnnl_impl(c->dnnl, ICN_DNNL_BACKWARD_DATA),
             icn_conv_dnnl_impl(c->dnnl, ICN_DNNL_BACKWARD_WEIGHTS));
    return c;
}

void icn_conv_free(icn_conv *c) {
    if (!c) return;
    icn_conv_gemm_free(c->gemm);
    icn_conv_dnnl_free(c->dnnl);
    icn_conv_ref_free(c->ref);
    free(c);
}

const char *icn_conv_describe(const icn_conv *c) { return c->describe; }

void icn_conv_forward(icn_conv *c, float *out, const float *in, const float *weight, const float *bias, int n,
                      float beta) {
    if (c->gemm) icn_conv_gemm_forward(c->gemm, out, in, weight, bias, n, beta);
    else if (c->dnnl) icn_conv_dnnl_forward(c->dnnl, out, in, weight, bias, n, beta);
    else icn_conv_ref_forward(c->ref, out, in, weight, bias, n, beta);
}

void icn_conv_backward(icn_conv *c, float *din, int accumulate, float *dweight, float *dbias, const float *dout,
                       const float *in, const float *weight, int n) {
    if (c->gemm) {
        icn_conv_gemm_backward(c->gemm, din, accumulate, dweight, dbias, dout, weight, n);
        return;
    }
    if (!c->dnnl) {
        icn_conv_ref_backward(c->ref, din, accumulate, dweight, dbias, dout, in, weight, n);
        return;
    }
    if (dweight || dbias) icn_conv_dnnl_backward_weights(c->dnnl, dweight, dbias, dout, in, n);
    if (!din) return;
    if (c->ref) icn_conv_ref_backward(c->ref, din, accumulate, NULL, NULL, dout, in, weight, n);
    else icn_conv_dnnl_backward_data(c->dnnl, din, accumulate, dout, weight, n);
}
