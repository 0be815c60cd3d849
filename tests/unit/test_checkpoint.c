/* test_checkpoint.c: resuming training from a checkpoint (lib/checkpoint.c, through
 * icn_train_classifier's resume). Resuming from a checkpoint written at step k must end
 * bit-identical to the run that was never interrupted (one thread, so sums are ordered); a
 * checkpoint of another run, or a plain model, is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "optim.h"
#include "progress.h"
#include "runtime.h"
#include "snapshot.h"
#include "train.h"
#include "trainer.h"
#include "util.h"

#include "fixtures.h"
#include "train_fixtures.h"

/* Captures every distinct checkpoint present on disk whenever training writes a metrics
 * line: that is how a test gets the step-k checkpoint of a run that goes on to overwrite it. */
#define MAX_CAPTURES 8
typedef struct {
    const char *ckpt;
    int n;
    int64_t step[MAX_CAPTURES];
    uint8_t *bytes[MAX_CAPTURES];
    size_t len[MAX_CAPTURES];
    int lines;
} capture;

static ssize_t capture_write(void *cookie, const char *buf, size_t size) {
    capture *c = cookie;
    for (size_t i = 0; i < size; i++) c->lines += buf[i] == '\n';
    if (access(c->ckpt, F_OK) != 0) return (ssize_t)size;
    size_t len;
    uint8_t *bytes = read_bytes(c->ckpt, &len);
    icn_net net;
    icn_model_meta meta;
    char err[ICN_ERRLEN] = "";
    if (icn_model_decode(bytes, len, &net, &meta, NULL, NULL, err, sizeof err)) fail_msg("checkpoint: %s", err);
    icn_net_free(&net);
    for (int i = 0; i < c->n; i++)
        if (c->step[i] == meta.step) {
            free(bytes);
            return (ssize_t)size;
        }
    assert_true(c->n < MAX_CAPTURES);
    c->step[c->n] = meta.step, c->bytes[c->n] = bytes, c->len[c->n] = len;
    c->n++;
    return (ssize_t)size;
}

static void test_a_resumed_run_ends_bit_identical_to_an_uninterrupted_one(void **state) {
    (void)state;
    icn_batch data;
    make_data(&data, 40, 2);

    /* the uninterrupted run, capturing its step-10 and step-20 checkpoints on the way */
    icn_net full;
    make_net(&full, 17);
    icn_train_opts o;
    char ck_full[256], out_full[256]; /* tmp_path's buffers are reused: keep copies */
    snprintf(ck_full, sizeof ck_full, "%s", tmp_path("full.ckpt"));
    snprintf(out_full, sizeof out_full, "%s", tmp_path("full.icn"));
    opts_for(&o, out_full, ck_full);
    capture cap = {.ckpt = ck_full};
    cookie_io_functions_t io = {.write = capture_write};
    icn_metrics metrics = {fopencookie(&cap, "w", io)};
    assert_non_null(metrics.f);
    setvbuf(metrics.f, NULL, _IONBF, 0);
    o.metrics = &metrics;
    train_ok(&full, &data, &o);
    fclose(metrics.f);
    assert_true(cap.lines >= 3);
    int have10 = -1, have20 = -1;
    for (int i = 0; i < cap.n; i++) {
        if (cap.step[i] == 10) have10 = i;
        if (cap.step[i] == 20) have20 = i;
    }
    if (have10 < 0 || have20 < 0) fail_msg("did not capture the step-10 and step-20 checkpoints (%d captured)", cap.n);
    /* the final checkpoint is at the last step */
    {
        icn_net n;
        icn_model_meta m;
        char err[ICN_ERRLEN] = "";
        if (icn_model_load(ck_full, &n, &m, NULL, NULL, err, sizeof err)) fail_msg("%s", err);
        assert_true(m.step == 30);
        assert_net_equal(&full, &n);
        icn_net_free(&n);
    }

    /* resume from each captured checkpoint: the same final parameters, model file and checkpoint */
    int from[] = {have10, have20};
    for (int r = 0; r < 2; r++) {
        const char *ck = tmp_path("resume.ckpt"), *out = tmp_path("resume.icn");
        write_bytes(ck, cap.bytes[from[r]], cap.len[from[r]]);
        icn_net net;
        make_net(&net, 12345); /* another init: the parameters must come from the checkpoint */
        icn_train_opts ro;
        opts_for(&ro, out, ck);
        ro.resume = 1;
        train_ok(&net, &data, &ro);
        assert_net_equal(&full, &net);
        assert_files_equal(ck, ck_full);
        assert_files_equal(out, o.out);
        icn_net_free(&net);
        unlink(ck);
    }

    /* the comparison is sensitive: the same checkpoint with its momentum zeroed ends elsewhere */
    {
        icn_net ck_net;
        icn_model_meta ck_meta;
        icn_optim ck_opt;
        icn_optim_sgd(&ck_opt, full.n_trainable, 0.9f, 1e-4f);
        int has = 0;
        char err[ICN_ERRLEN] = "";
        if (icn_model_decode(cap.bytes[have10], cap.len[have10], &ck_net, &ck_meta, &ck_opt, &has, err, sizeof err))
            fail_msg("%s", err);
        assert_int_equal(has, 1);
        memset(ck_opt.m, 0, ck_opt.n * sizeof(float));
        char ck[256];
        snprintf(ck, sizeof ck, "%s", tmp_path("zeroed.ckpt"));
        if (icn_model_save(ck, &ck_net, &ck_meta, &ck_opt, err, sizeof err)) fail_msg("%s", err);
        icn_net net;
        make_net(&net, 17);
        icn_train_opts ro;
        opts_for(&ro, tmp_path("zeroed.icn"), ck);
        ro.resume = 1;
        train_ok(&net, &data, &ro);
        assert_memory_not_equal(full.params, net.params, full.n_params * sizeof(float));
        icn_net_free(&net);
        icn_net_free(&ck_net);
        icn_optim_free(&ck_opt);
    }

    /* resume with no checkpoint present starts from scratch, like a plain run */
    {
        icn_net net;
        make_net(&net, 17);
        icn_train_opts ro;
        opts_for(&ro, tmp_path("fresh.icn"), tmp_path("fresh.ckpt"));
        ro.resume = 1;
        train_ok(&net, &data, &ro);
        assert_net_equal(&full, &net);
        icn_net_free(&net);
    }

    /* a finished checkpoint resumes to the same model without another step */
    {
        icn_net net;
        make_net(&net, 3);
        icn_train_opts ro;
        opts_for(&ro, tmp_path("again.icn"), ck_full);
        ro.resume = 1;
        train_ok(&net, &data, &ro);
        assert_net_equal(&full, &net);
        icn_net_free(&net);
    }

    /* a checkpoint of another run (other seed, other step count, other data) is refused */
    char ck[256];
    snprintf(ck, sizeof ck, "%s", tmp_path("other.ckpt"));
    for (int v = 0; v < 3; v++) {
        write_bytes(ck, cap.bytes[have10], cap.len[have10]);
        icn_net net;
        make_net(&net, 17);
        icn_train_opts ro;
        opts_for(&ro, tmp_path("other.icn"), ck);
        ro.resume = 1;
        icn_batch *d = &data, fewer;
        if (v == 0) ro.seed = 18;
        if (v == 1) ro.steps = 31;
        if (v == 2) make_data(&fewer, 39, 2), d = &fewer;
        char err[ICN_ERRLEN] = "";
        if (icn_train_classifier(&net, d, &ro, err, sizeof err) == 0) fail_msg("variant %d: foreign checkpoint accepted", v);
        assert_non_null(strstr(err, "another run"));
        if (v == 2) icn_batch_free(&fewer);
        icn_net_free(&net);
    }
    /* a plain model (no optimizer state) is not a checkpoint */
    {
        icn_net net;
        make_net(&net, 17);
        icn_train_opts ro;
        opts_for(&ro, tmp_path("plain-out.icn"), o.out); /* the final model of the full run */
        ro.resume = 1;
        char err[ICN_ERRLEN] = "";
        assert_int_not_equal(icn_train_classifier(&net, &data, &ro, err, sizeof err), 0);
        assert_non_null(strstr(err, "optimizer"));
        icn_net_free(&net);
    }

    for (int i = 0; i < cap.n; i++) free(cap.bytes[i]);
    icn_net_free(&full);
    icn_batch_free(&data);
}

/* The same with batchnorm: its running statistics travel in the checkpoint and the model. */
static void test_a_resumed_resnet_ends_bit_identical_with_its_batchnorm_statistics(void **state) {
    assert_int_equal(teardown_tmp(state), 0); /* a fresh directory: the files have the same names */
    assert_int_equal(setup_tmp(state), 0);
    train_arch = "resnet8";
    test_a_resumed_run_ends_bit_identical_to_an_uninterrupted_one(state);
    train_arch = "c4-c8";
}

int main(void) {
    icn_runtime_init(1); /* bit-exact comparisons need one ordering of every sum */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_resumed_run_ends_bit_identical_to_an_uninterrupted_one),
        cmocka_unit_test(test_a_resumed_resnet_ends_bit_identical_with_its_batchnorm_statistics),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
