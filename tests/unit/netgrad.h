/* netgrad.h: the finite-difference check of a whole network's parameter and input gradients (the
 * softmax loss of a small batch), shared by the tests of the residual networks. Include after
 * gradcheck.h, net.h and losses.h. */
#ifndef ICN_TEST_NETGRAD_H
#define ICN_TEST_NETGRAD_H

typedef struct { icn_net *net; icn_work *w; float *x; int32_t *y; int n; float *dz; } net_case;

static double net_objective(void *p) {
    net_case *c = p;
    const float *z = icn_forward(c->net, c->w, c->x, c->n);
    return icn_loss_softmax(z, c->y, NULL, c->n, c->net->classes, 0, c->dz);
}

static int cmp_size(const void *a, const void *b) {
    const size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* The runs the trainable parameters fall into (each layer's weight and bias, each block's
 * normalizations, convolutions and scalars), so that each is sampled on its own: a run of a few
 * scalars among thousands of weights is checked whole. Errors stay relative to the whole
 * gradient's largest component. A run of at most 8 (a few scalars, a small bias) is stepped by
 * 1e-4, not 1e-3: a scalar bias moves every unit after it, so a step of 1e-3 crosses ReLU kinks
 * in numbers (seen: resnet8-fixup's biases 3% to 70% off at 1e-3, within 1% at 1e-4). cuts
 * [ICN_MAX_LAYERS * 8 + 1]. */
static size_t param_runs(const icn_net *net, size_t *cuts) {
    size_t n = 0;
    for (int i = 0; i < net->n_layers; i++) {
        const icn_layer *l = &net->layer[i];
        cuts[n++] = l->w_off, cuts[n++] = l->b_off;
        if (l->kind == ICN_LAYER_BLOCK) {
            const icn_block_shape *b = &l->block;
            const size_t in[] = {b->w1, b->gb2, b->w2, b->wp, b->fx};
            for (size_t k = 0; k < sizeof in / sizeof in[0]; k++) cuts[n++] = l->w_off + in[k];
        }
    }
    cuts[n++] = net->n_trainable;
    qsort(cuts, n, sizeof *cuts, cmp_size);
    return n;
}

/* arch on 4 images of 6x5x2 with 4 classes (one label a pseudo-negative's), forward and backward
 * in mode `training` (net.h); perturb moves the normalization parameters off their initial values
 * so that every term matters. */
static void check_net_gradients(const char *arch, int training, void (*perturb)(icn_net *)) {
    enum { N = 4, H = 6, W = 5, C = 2, K = 4 };
    icn_net net;
    char err[ICN_ERRLEN];
    assert_int_equal(icn_net_build(&net, arch, H, W, C, K, err, sizeof err), 0);
    icn_net_init(&net, 7);
    perturb(&net);
    net_case c = {.net = &net, .n = N};
    c.w = icn_work_new(&net, N);
    c.w->training = training;
    c.x = randn(N * H * W * C, 1);
    int32_t y[N] = {1, -3, 3, 0};
    c.y = y;
    c.dz = xmalloc(N * K * 4);
    float *dz = xmalloc(N * K * 4), *dx = xmalloc(N * H * W * C * 4), *grad = xmalloc(net.n_trainable * 4);
    net_objective(&c);
    memcpy(dz, c.dz, N * K * 4);
    icn_backward(&net, c.w, dz, 1, dx);
    memcpy(grad, c.w->grad, net.n_trainable * 4);
    const char *mode = training ? "training" : "inference";
    char what[96];
    size_t cuts[ICN_MAX_LAYERS * 8 + 1], runs = param_runs(&net, cuts);
    const double scale = grad_scale(grad, net.n_trainable);
    for (size_t r = 0; r + 1 < runs; r++) {
        if (cuts[r] == cuts[r + 1] || cuts[r] >= net.n_trainable) continue;
        snprintf(what, sizeof what, "%s %s dparams [%zu, %zu)", arch, mode, cuts[r], cuts[r + 1]);
        const size_t len = cuts[r + 1] - cuts[r];
        check_grad_at_scale(what, net.params + cuts[r], grad + cuts[r], len, net_objective, &c, len > 8 ? 1e-3f : 1e-4f,
                            2e-2, scale);
    }
    snprintf(what, sizeof what, "%s %s dinput", arch, mode);
    check_grad(what, c.x, dx, N * H * W * C, net_objective, &c, 1e-3f, 2e-2);
    icn_work_free(c.w);
    icn_net_free(&net);
    free(c.x), free(c.dz), free(dz), free(dx), free(grad);
}

#endif
