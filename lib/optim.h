/* optim.h: optimizers over a flat float buffer: the network's parameters during
 * training, or a batch of input images during synthesis (Adam with beta1 = 0.5). */
#ifndef ICN_OPTIM_H
#define ICN_OPTIM_H
#include <stddef.h>
#include <stdint.h>

typedef enum { ICN_OPT_SGD, ICN_OPT_ADAM } icn_optim_kind;

typedef struct {
    icn_optim_kind kind;
    size_t n;
    float momentum, weight_decay; /* SGD */
    float beta1, beta2, eps;      /* Adam */
    int64_t t;                    /* steps taken (Adam bias correction) */
    float *m, *v;                 /* SGD: velocity in m; Adam: first and second moments */
} icn_optim;

void icn_optim_sgd(icn_optim *o, size_t n, float momentum, float weight_decay);
void icn_optim_adam(icn_optim *o, size_t n, float beta1, float beta2, float eps);
void icn_optim_reset(icn_optim *o); /* zero the state, keep the settings */
void icn_optim_free(icn_optim *o);
/* Descend: x -= lr * update(grad). For ascent, pass the negated gradient. */
void icn_optim_step(icn_optim *o, float *x, const float *grad, float lr);
/* The same on elements [lo, hi) only, as step number t (Adam's bias correction; o->t is not
 * touched): synthesis runs one span per sample, each at its own age. */
void icn_optim_step_span(icn_optim *o, float *x, const float *grad, float lr, size_t lo, size_t hi, int64_t t);

/* Step decay: lr * factor^(number of milestones <= step), milestones as fractions of total. */
double icn_lr_at(double lr, int64_t step, int64_t total, const double *milestones, int n_milestones, double factor);

#endif
