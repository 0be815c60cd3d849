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
    snprintf(what, sizeof what, "%s %s dparams", arch, mode);
    check_grad(what, net.params, grad, net.n_trainable, net_objective, &c, 1e-3f, 2e-2);
    snprintf(what, sizeof what, "%s %s dinput", arch, mode);
    check_grad(what, c.x, dx, N * H * W * C, net_objective, &c, 1e-3f, 2e-2);
    icn_work_free(c.w);
    icn_net_free(&net);
    free(c.x), free(c.dz), free(dz), free(dx), free(grad);
}

#endif
