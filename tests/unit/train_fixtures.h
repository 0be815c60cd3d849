/* train_fixtures.h: a small net and data set for the unit tests of model files, training and
 * resuming (test_snapshot.c, test_train.c, test_checkpoint.c): three classes of 12x12 images,
 * a net of `train_arch` built and initialised from a seed, training options with a checkpoint
 * every 10 steps, and byte-level file helpers. Include after cmocka.h and fixtures.h. */
#ifndef ICN_TEST_TRAIN_FIXTURES_H
#define ICN_TEST_TRAIN_FIXTURES_H
#include <stdio.h>
#include <string.h>

#include "fileio.h"
#include "net.h"
#include "snapshot.h"
#include "train.h"
#include "trainer.h"
#include "util.h"

static const char *train_arch = "c4-c8"; /* make_net's; the resume test runs with resnet8 too */
#define TH 12
#define TW 12
#define TC 1
#define TCLASSES 3

static inline void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static inline uint8_t *read_bytes(const char *path, size_t *n) {
    uint8_t *p;
    char err[ICN_ERRLEN] = "";
    if (icn_read_file(path, (size_t)1 << 30, &p, n, err, sizeof err)) fail_msg("%s", err);
    return p;
}

static inline void make_net(icn_net *net, uint64_t seed) {
    char err[ICN_ERRLEN] = "";
    if (icn_net_build(net, train_arch, TH, TW, TC, TCLASSES, err, sizeof err)) fail_msg("%s", err);
    icn_net_init(net, seed);
}

static inline void assert_net_equal(const icn_net *a, const icn_net *b) {
    assert_string_equal(a->arch, b->arch);
    assert_int_equal(a->in_h, b->in_h);
    assert_int_equal(a->in_w, b->in_w);
    assert_int_equal(a->in_c, b->in_c);
    assert_int_equal(a->classes, b->classes);
    assert_int_equal(a->n_params, b->n_params);
    assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
}

/* A few dozen 12x12 images of three classes: a bright bar in a class-specific place, plus noise. */
static inline void make_data(icn_batch *b, int n, uint64_t seed) {
    icn_batch_alloc(b, n, TH, TW, TC, 1);
    icn_rng rng;
    icn_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) {
        int k = i % TCLASSES;
        b->y[i] = k;
        float *x = b->x + (size_t)i * TH * TW * TC;
        for (int r = 0; r < TH; r++)
            for (int c = 0; c < TW; c++) {
                int on = k == 0 ? (r >= 4 && r < 7) : k == 1 ? (c >= 4 && c < 7) : (r == c || r + 1 == c);
                x[r * TW + c] = (on ? 0.8f : -0.8f) + 0.2f * (float)icn_rng_gauss(&rng);
            }
    }
}

static inline void opts_for(icn_train_opts *o, const char *out, const char *ckpt) {
    icn_train_opts_default(o);
    o->batch = 8;
    o->steps = 30;
    o->lr = 0.05;
    o->momentum = 0.9;
    o->weight_decay = 1e-4;
    o->milestones[0] = 0.5; /* the lr drops at step 15: between the checkpoints */
    o->n_milestones = 1;
    o->seed = 17;
    o->out = out;
    o->checkpoint = ckpt;
    o->checkpoint_every = 10;
    o->quiet = 1;
}

static inline void train_ok(icn_net *net, const icn_batch *data, const icn_train_opts *o) {
    char err[ICN_ERRLEN] = "";
    if (icn_train_classifier(net, data, o, err, sizeof err)) fail_msg("training: %s", err);
}

static inline void assert_files_equal(const char *a, const char *b) {
    size_t na, nb;
    uint8_t *pa = read_bytes(a, &na), *pb = read_bytes(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na);
    free(pa);
    free(pb);
}

#endif
