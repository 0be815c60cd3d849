#include "net.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const struct { const char *name, *spec; } named_archs[] = {
    {"mnist", "c64-c128-c256-c512"}, /* the paper's MNIST net */
};

static const char *arch_spec(const char *arch) {
    for (size_t i = 0; i < sizeof named_archs / sizeof named_archs[0]; i++)
        if (!strcmp(arch, named_archs[i].name)) return named_archs[i].spec;
    return arch;
}

static size_t add_params(icn_net *net, icn_layer *l, size_t n_weights, size_t n_bias) {
    l->w_off = net->n_params;
    l->b_off = net->n_params + n_weights;
    net->n_params += n_weights + n_bias;
    return net->n_params;
}

int icn_net_build(icn_net *net, const char *arch, int h, int w, int c, int classes, char *err, size_t errlen) {
    memset(net, 0, sizeof *net);
    if (strlen(arch) >= ICN_ARCH_LEN) return icn_errf(err, errlen, "architecture name '%.20s...' is too long", arch);
    if (h < 1 || w < 1 || c < 1 || h > 4096 || w > 4096 || c > 4096)
        return icn_errf(err, errlen, "input shape %dx%dx%d is out of range", h, w, c);
    if (classes < 1 || classes > 100000) return icn_errf(err, errlen, "class count %d is out of range", classes);
    snprintf(net->arch, sizeof net->arch, "%s", arch);
    net->in_h = h, net->in_w = w, net->in_c = c, net->classes = classes;

    const char *p = arch_spec(arch);
    while (*p) {
        char *end;
        long ch = (*p == 'c') ? strtol(p + 1, &end, 10) : 0;
        if (*p != 'c' || end == p + 1 || ch < 1 || ch > 8192 || (*end && *end != '-'))
            return icn_errf(err, errlen, "architecture '%s': expected 'mnist' or blocks like c64-c128", arch);
        if (net->n_layers >= ICN_MAX_LAYERS - 1) return icn_errf(err, errlen, "architecture '%s': too many layers", arch);
        icn_layer *l = &net->layer[net->n_layers++];
        l->kind = ICN_LAYER_CONV;
        l->leaky = 1;
        icn_conv_shape *s = &l->conv;
        s->h = h, s->w = w, s->c = c, s->k = 5, s->stride = 2, s->pad = 2, s->oc = (int)ch;
        s->oh = icn_conv_out(h, s->k, s->stride, s->pad);
        s->ow = icn_conv_out(w, s->k, s->stride, s->pad);
        if (s->oh < 1 || s->ow < 1) return icn_errf(err, errlen, "architecture '%s': input %dx%d too small", arch, net->in_h, net->in_w);
        add_params(net, l, (size_t)s->oc * icn_conv_kdim(s), (size_t)s->oc);
        l->in_size = (size_t)h * w * c;
        h = s->oh, w = s->ow, c = s->oc;
        l->out_size = (size_t)h * w * c;
        p = *end ? end + 1 : end;
    }
    icn_layer *l = &net->layer[net->n_layers++];
    l->kind = ICN_LAYER_LINEAR;
    l->in_size = (size_t)h * w * c;
    l->out_size = (size_t)classes;
    l->conv = (icn_conv_shape){.h = 1, .w = 1, .c = (int)l->in_size, .oh = 1, .ow = 1, .oc = classes, .k = 1, .stride = 1};
    add_params(net, l, l->in_size * classes, (size_t)classes);
    net->params = xcalloc(net->n_params, sizeof(float));
    return 0;
}

void icn_net_init(icn_net *net, uint64_t seed) {
    icn_rng rng;
    icn_rng_seed(&rng, seed);
    for (int i = 0; i < net->n_layers; i++) {
        const icn_layer *l = &net->layer[i];
        size_t fan_in = l->kind == ICN_LAYER_CONV ? icn_conv_kdim(&l->conv) : l->in_size;
        float bound = 1.0f / sqrtf((float)fan_in);
        for (size_t j = l->w_off; j < l->b_off + (size_t)l->conv.oc; j++)
            net->params[j] = (float)((2.0 * icn_rng_uniform(&rng) - 1.0) * bound);
    }
}

void icn_net_free(icn_net *net) {
    free(net->params);
    net->params = NULL;
}

size_t icn_net_input_size(const icn_net *net) { return (size_t)net->in_h * net->in_w * net->in_c; }

icn_work *icn_work_new(const icn_net *net, int max_batch) {
    icn_work *w = xcalloc(1, sizeof *w);
    w->max_batch = max_batch;
    w->n_layers = net->n_layers;
    w->act = xcalloc((size_t)net->n_layers, sizeof *w->act);
    w->col = xcalloc((size_t)net->n_layers, sizeof *w->col);
    size_t max_act = icn_net_input_size(net), max_col = 0;
    for (int i = 0; i < net->n_layers; i++) {
        const icn_layer *l = &net->layer[i];
        w->act[i] = xmalloc((size_t)max_batch * l->out_size * sizeof(float));
        if (l->out_size > max_act) max_act = l->out_size;
        if (l->kind == ICN_LAYER_CONV) {
            size_t col = (size_t)max_batch * l->conv.oh * l->conv.ow * icn_conv_kdim(&l->conv);
            w->col[i] = xmalloc(col * sizeof(float));
            if (col > max_col) max_col = col;
        }
    }
    w->dcol = xmalloc(max_col * sizeof(float));
    w->dact_a = xmalloc((size_t)max_batch * max_act * sizeof(float));
    w->dact_b = xmalloc((size_t)max_batch * max_act * sizeof(float));
    w->grad = xcalloc(net->n_params, sizeof(float));
    return w;
}

void icn_work_free(icn_work *w) {
    if (!w) return;
    for (int i = 0; i < w->n_layers; i++) {
        free(w->act[i]);
        free(w->col[i]);
    }
    free(w->act);
    free(w->col);
    free(w->dcol);
    free(w->dact_a);
    free(w->dact_b);
    free(w->grad);
    free(w);
}

const float *icn_forward(const icn_net *net, icn_work *w, const float *x, int n) {
    if (n > w->max_batch) icn_die(3, "internal: batch of %d exceeds workspace of %d", n, w->max_batch);
    w->input = x;
    w->n = n;
    const float *in = x;
    for (int i = 0; i < net->n_layers; i++) {
        const icn_layer *l = &net->layer[i];
        const float *wt = net->params + l->w_off, *b = net->params + l->b_off;
        float *out = w->act[i];
        if (l->kind == ICN_LAYER_CONV)
            conv2d_forward(out, w->col[i], in, wt, b, &l->conv, n);
        else
            linear_forward(out, in, wt, b, n, (int)l->in_size, (int)l->out_size);
        if (l->leaky) lrelu_forward(out, out, (size_t)n * l->out_size);
        in = out;
    }
    return w->act[net->n_layers - 1];
}

void icn_backward(const icn_net *net, icn_work *w, const float *dlogits, int param_grads, float *dx) {
    const int n = w->n, last = net->n_layers - 1;
    if (param_grads) memset(w->grad, 0, net->n_params * sizeof(float));
    float *dout = w->dact_a, *din = w->dact_b;
    memcpy(dout, dlogits, (size_t)n * net->classes * sizeof(float));
    for (int i = last; i >= 0; i--) {
        const icn_layer *l = &net->layer[i];
        const float *wt = net->params + l->w_off;
        float *dw = param_grads ? w->grad + l->w_off : NULL, *db = param_grads ? w->grad + l->b_off : NULL;
        const float *in = i > 0 ? w->act[i - 1] : w->input;
        /* The first layer's input gradient is only wanted when synthesis asks for dx. */
        float *din_target = i > 0 ? din : dx;
        if (l->leaky) lrelu_backward(dout, w->act[i], (size_t)n * l->out_size);
        if (l->kind == ICN_LAYER_CONV)
            conv2d_backward(din_target, dw, db, w->dcol, dout, w->col[i], wt, &l->conv, n);
        else
            linear_backward(din_target, dw, db, dout, in, wt, n, (int)l->in_size, (int)l->out_size);
        float *t = dout; dout = din; din = t;
    }
}

void icn_predict(const icn_net *net, icn_work *w, const float *x, int n, float *out) {
    size_t d = icn_net_input_size(net);
    for (int i = 0; i < n; i += w->max_batch) {
        int m = n - i < w->max_batch ? n - i : w->max_batch;
        const float *logits = icn_forward(net, w, x + (size_t)i * d, m);
        memcpy(out + (size_t)i * net->classes, logits, (size_t)m * net->classes * sizeof(float));
    }
}
