/* checkpoint.c: resuming, checkpoints and validation tracking (checkpoint.h). */
#include "checkpoint.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include "eval.h"
#include "util.h"

int icn_checkpoint_save(const icn_train_opts *o, const icn_net *net, const icn_model_meta *meta, const icn_optim *opt,
                        char *err, size_t errlen) {
    return o->checkpoint ? icn_model_save(o->checkpoint, net, meta, opt, err, errlen) : 0;
}

/* The first "name=value" of `ours` that `theirs` does not hold, for naming a mismatch. */
static void first_difference(const char *ours, const char *theirs, char *out, size_t outlen) {
    char copy[ICN_SETTINGS_LEN];
    snprintf(copy, sizeof copy, "%s", ours);
    for (char *save, *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        size_t n = strlen(tok);
        const char *p = theirs;
        int found = 0;
        while (!found && (p = strstr(p, tok))) {
            found = (p == theirs || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0);
            p += n;
        }
        if (!found) {
            snprintf(out, outlen, "%s", tok);
            return;
        }
    }
    snprintf(out, outlen, "(a setting it lacks)");
}

int icn_train_resume(const icn_train_opts *o, icn_net *net, icn_optim *opt, icn_model_meta *meta, char *err,
                     size_t errlen) {
    if (!o->resume || !o->checkpoint || access(o->checkpoint, F_OK) != 0) return 0;
    icn_net loaded;
    icn_model_meta m;
    int has_optim = 0;
    if (icn_model_load(o->checkpoint, &loaded, &m, opt, &has_optim, err, errlen)) return -1;
    if (strcmp(loaded.arch, net->arch) || loaded.n_params != net->n_params || m.head != o->head ||
        m.total_steps != meta->total_steps || m.train_images != meta->train_images || m.seed != meta->seed) {
        icn_net_free(&loaded);
        return icn_errf(err, errlen,
                        "%s: checkpoint is of another run (arch %s, %lld steps, %lld images, seed %lld); "
                        "remove it or drop --resume",
                        o->checkpoint, loaded.arch, (long long)m.total_steps,
                        (long long)m.train_images, (long long)m.seed);
    }
    if (!has_optim) {
        icn_net_free(&loaded);
        return icn_errf(err, errlen, "%s: holds no optimizer state, so it is not a checkpoint", o->checkpoint);
    }
    if (m.settings[0] && meta->settings[0] && strcmp(m.settings, meta->settings)) {
        char ours[ICN_SETTINGS_LEN], theirs[ICN_SETTINGS_LEN];
        first_difference(meta->settings, m.settings, ours, sizeof ours);
        first_difference(m.settings, meta->settings, theirs, sizeof theirs);
        if (!o->new_settings) {
            icn_net_free(&loaded);
            return icn_errf(err, errlen, "%s: checkpoint was trained with %s, this run asks for %s; resume with its "
                            "settings, add --new-settings to change them, or remove it", o->checkpoint, theirs, ours);
        }
        icn_warn("%s: resuming with %s (the checkpoint had %s)", o->checkpoint, ours, theirs);
    }
    memcpy(net->params, loaded.params, net->n_params * sizeof(float));
    icn_net_free(&loaded);
    if (meta->settings[0]) memcpy(m.settings, meta->settings, sizeof m.settings); /* later checkpoints: ours */
    *meta = m;
    if (!o->quiet) icn_warn("resuming from %s at step %lld", o->checkpoint, (long long)m.step);
    return 1;
}

int icn_val_due(const icn_train_opts *o, int64_t steps_done) {
    return o->val && ((o->eval_every > 0 && steps_done % o->eval_every == 0) || steps_done == o->steps);
}

int icn_train_save_model(const char *path, const icn_net *net, const icn_model_meta *meta, char *err, size_t errlen) {
    icn_model_meta m = *meta;
    m.pool_offset = m.pool_start = 0; /* where the run stood in its pool: a checkpoint's business */
    m.pool_uuid[0] = 0;
    return icn_model_save(path, net, &m, NULL, err, errlen);
}

int icn_val_track_begin(icn_val_track *t, const icn_train_opts *o, const icn_net *net, icn_work *w,
                        const icn_model_meta *meta, char *err, size_t errlen) {
    t->best = INFINITY;
    t->best_step = -1;
    if (!o->val) return 0;
    if (icn_check_labels(o->val, net->classes, "validation data", err, errlen) ||
        icn_check_images(net, o->val, "validation data", err, errlen))
        return -1;
    if (!o->keep_best || meta->step == 0 || access(o->keep_best, F_OK) != 0) return 0;
    icn_net kept;
    icn_model_meta m;
    if (icn_model_load(o->keep_best, &kept, &m, NULL, NULL, err, errlen)) return -1;
    int ours = !strcmp(kept.arch, net->arch) && kept.n_params == net->n_params && m.seed == meta->seed &&
               m.total_steps == meta->total_steps && m.train_images == meta->train_images;
    icn_eval_result r = {0};
    int rc = ours ? icn_evaluate(&kept, w, o->val, &r, err, errlen)
                  : icn_errf(err, errlen, "%s: --keep-best holds a model of another run (seed %lld, step %lld of %lld); "
                             "remove it or name another file", o->keep_best, (long long)m.seed, (long long)m.step,
                             (long long)m.total_steps);
    if (rc == 0) {
        t->best = (double)r.wrong / (double)r.n;
        t->best_step = m.step;
        if (!o->quiet) icn_warn("%s: best so far, validation error %.2f%% at step %lld", o->keep_best, 100 * t->best,
                                (long long)m.step);
    }
    icn_eval_result_free(&r);
    icn_net_free(&kept);
    return rc;
}

int icn_val_track_point(icn_val_track *t, const icn_train_opts *o, const icn_net *net, icn_work *w,
                        const icn_model_meta *meta, int64_t round, char *err, size_t errlen) {
    if (!o->val) return 0;
    icn_eval_result r;
    if (icn_evaluate(net, w, o->val, &r, err, errlen)) return -1;
    double error = (double)r.wrong / (double)r.n;
    icn_eval_result_free(&r);
    int kept = o->keep_best && error < t->best;
    if (kept) {
        if (icn_train_save_model(o->keep_best, net, meta, err, errlen)) return -1;
        t->best = error;
        t->best_step = meta->step;
    }
    char at_round[32] = "";
    if (round >= 0) snprintf(at_round, sizeof at_round, ",\"round\":%lld", (long long)round);
    icn_metrics_printf(o->metrics, "{\"event\":\"eval\",\"step\":%lld%s,\"val_error\":%.6f,\"kept\":%s}",
                       (long long)meta->step, at_round, error, kept ? "true" : "false");
    if (!o->quiet)
        icn_warn("step %lld: validation error %.2f%%%s", (long long)meta->step, 100 * error,
                 kept ? " (best so far, kept)" : "");
    return 0;
}
