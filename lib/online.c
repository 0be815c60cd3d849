/* online.c: the online synthesizer's loop (lib/online.h). */
#include "online.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "inbox.h"
#include "parallel.h"
#include "protocol.h"
#include "sender.h"
#include "snapshot.h"
#include "transport.h"
#include "util.h"

void icn_online_opts_default(icn_online_opts *o) {
    memset(o, 0, sizeof *o);
    icn_synth_opts_default(&o->synth);
    o->batch = 10, o->chunk_batches = 4, o->seed = 1;
    o->window = 16, o->resend_ms = 1000, o->drain_ms = 5000, o->nice = 10;
}

int icn_synth_batch(icn_synth *s, const icn_net *net, const icn_synth_opts *o, uint64_t seed, uint32_t id, int k, int n,
                    int64_t index, int32_t generation, icn_batch *b) {
    icn_batch_alloc(b, n, net->in_h, net->in_w, net->in_c, 1);
    b->prov = xmalloc((size_t)n * sizeof *b->prov);
    for (int i = 0; i < n; i++) b->y[i] = -(k + 1);
    return icn_synthesize(s, net, k, n, o, seed, index, b->x, b->prov, generation, id);
}

typedef struct {
    const icn_online_opts *o;
    icn_inbox *inbox;
    icn_sender *out;
    icn_net net;
    icn_model_meta meta;
    int have, held;
} loop;

static void on_refused(uint64_t seq, const char *reason, void *ctx) {
    loop *l = ctx;
    if (icn_sender_run_ended(l->out)) return; /* said once, at the end */
    if (!l->o->quiet) icn_warn("producer %u: batch %" PRIu64 " refused by the pool: %s", l->o->id, seq, reason);
}

/* What the inbox has for us. 1: a new model (now l->net); 2: the run is over (res->ended,
 * res->why); 0: nothing new; -1: the subscription failed. A hold for our generation or a later one sets l->held. A "snapshot" event
 * per model received: "time" when the inbox had it decoded, "taken" when synthesis took it
 * ("replaced" when a newer one came first). */
static int take_snapshot(loop *l, icn_online_result *res, char *err, size_t errlen) {
    if (!icn_inbox_ready(l->inbox)) return 0;
    icn_inbox_news nw;
    if (icn_inbox_take(l->inbox, &nw, err, errlen)) return -1;
    double now = icn_wallclock();
    for (int i = 0; i < nw.receipts; i++) {
        int taken = nw.has_model && i == nw.receipts - 1;
        icn_metrics_printf(l->o->metrics,
                           "{\"event\":\"snapshot\",\"generation\":%lld,\"time\":%.6f,\"bytes\":%zu,\"%s\":%.6f}",
                           (long long)nw.receipt[i].generation, nw.receipt[i].time, nw.receipt[i].bytes,
                           taken ? "taken" : "replaced", now);
    }
    int rc = 0;
    if (nw.has_model) {
        if (l->have) icn_net_free(&l->net);
        l->net = nw.net, l->meta = nw.meta, l->have = 1, l->held = 0, rc = 1;
    }
    if (nw.stop) {
        res->ended = nw.stop;
        snprintf(res->why, sizeof res->why, "%s", nw.why);
        return 2;
    }
    if (l->have && !l->held && nw.hold >= l->meta.generation) {
        if (!l->o->quiet) icn_warn("producer %u: holding until the next snapshot", l->o->id);
        l->held = 1;
    }
    return rc;
}

/* Synthesis looks at the inbox after every pass (icn_synth's interrupt): a new generation,
 * hold or stop ends the call in flight at once, its samples being of the old generation; a
 * re-sent snapshot of the current one does not (the inbox ignores it); nor does a heartbeat.
 * A trainer gone quiet ends it too: its samples may be for a run that has ended. */
static int snapshot_waiting(void *ctx) {
    loop *l = ctx;
    return icn_inbox_ready(l->inbox) || icn_inbox_quiet(l->inbox);
}

/* What a synchronous trainer waits for from each generation: the per_class of its settings
 * (introspect.h writes "per_class=L ... async=0" into the snapshot's meta.settings); 0 when the
 * trainer does not wait (async) or the snapshot does not say. */
static int64_t round_quota(const icn_model_meta *meta) {
    const char *pc = strstr(meta->settings, " per_class="), *as = strstr(meta->settings, " async=");
    if (!pc || (as && as[7] != '0')) return 0;
    long long v = strtoll(pc + 11, NULL, 10);
    return v > 0 && v < (1LL << 30) ? v : 0;
}

/* The next class in round-robin order from *k_next that still wants samples: while some class
 * has fewer than `first` this generation, only those (a synchronous trainer's round is complete
 * once every class has them: making them first, in chunks no larger, halves its wait when the
 * quota is half a chunk); then any class under max_per_gen. -1: none wants more. */
static int next_class(const icn_online_opts *o, uint32_t classes, int K, const int64_t *made, int64_t first,
                      int *k_next) {
    for (int pass = first > 0 ? 0 : 1; pass < 2; pass++)
        for (int tries = 0; tries < 32; tries++, *k_next = (*k_next + 1) % 32) {
            int k = *k_next;
            if (!(classes >> k & 1) || k >= K || (o->max_per_gen && made[k] >= o->max_per_gen)) continue;
            if (pass == 0 && made[k] >= first) continue;
            *k_next = (k + 1) % 32;
            return k;
        }
    return -1;
}

/* The workspace of s fits `net` (its primitives depend only on the architecture). */
static int same_shape(const icn_net *a, const icn_net *b) {
    return !strcmp(a->arch, b->arch) && a->n_params == b->n_params && a->in_h == b->in_h && a->in_w == b->in_w &&
           a->in_c == b->in_c && a->classes == b->classes;
}

int icn_synthesize_online(const icn_online_opts *o, icn_online_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    loop l = {.o = o};
    int rc = -1;
    icn_inbox_opts io = {.endpoint = o->snapshots, .requests = o->snapshot_requests, .liveness_s = o->liveness_s};
    if (!(l.inbox = icn_inbox_open(&io, err, errlen))) return -1;
    if (!(l.out = icn_sender_open(o->pool, o->window, o->resend_ms, on_refused, &l, err, errlen))) {
        icn_inbox_close(l.inbox);
        return -1;
    }
    res->producer = icn_sender_producer(l.out);
    /* the inbox's and ZeroMQ's threads exist now: synthesis yields the cores to them, so that
     * a snapshot is received the moment it comes even when synthesizers fill every core */
    if (o->nice && icn_threads_nice(o->nice) && !o->quiet)
        icn_warn("producer %u: cannot lower the priority of synthesis (%s): it competes with receiving", o->id,
                 strerror(errno));
    icn_synth *s = NULL;
    icn_net made_for = {0}; /* the architecture s was made for (its params are not used) */
    icn_synth_opts so = o->synth;
    int64_t made[32] = {0}, first = 0; /* first: the round's quota per class (round_quota) */
    int k_next = 0;
    /* A sample is drawn from (seed, generation, class, index): a generation taken a second time
     * (a restarted trainer's generations begin again lower; a stale copy may come after a newer
     * one) would start its indices over and make the same images again, stored twice. Every
     * take of a generation no newer than the newest taken so far draws from a seed of its own. */
    int64_t newest_taken = -1;
    uint64_t seed = o->seed, retakes = 0;
    double t_start = icn_now(), last_log = t_start;
    uint32_t classes = o->classes_mask;
    if (!o->quiet)
        icn_warn("producer %u: waiting for snapshots on %s, delivering to %s", o->id, o->snapshots, o->pool);
    for (;;) {
        if (o->stop && *o->stop) break;
        int r = take_snapshot(&l, res, err, errlen);
        if (r < 0) goto out;
        if (r == 2) break;
        if (r == 1) {
            res->snapshots++;
            if (!s || !same_shape(&made_for, &l.net)) {
                icn_synth_free(s);
                s = icn_synth_new(&l.net, o->batch);
                s->interrupt = snapshot_waiting, s->interrupt_ctx = &l;
                made_for = l.net;
            }
            so.head = l.meta.head;
            if (l.meta.generation > newest_taken) newest_taken = l.meta.generation, seed = o->seed;
            else seed = icn_synth_seed(o->seed, l.meta.generation, -1, (int64_t)++retakes, o->id);
            memset(made, 0, sizeof made);
            first = round_quota(&l.meta);
            k_next = 0; /* each generation in the same class order: one synthesizer is reproducible */
            if (!classes) classes = l.net.classes >= 32 ? 0xffffffffu : (1u << l.net.classes) - 1;
            if (!o->quiet) icn_warn("producer %u: sampling from snapshot generation %lld", o->id, (long long)l.meta.generation);
        }
        int quiet = icn_inbox_quiet(l.inbox);
        int busy = l.have && !l.held && !quiet && icn_sender_room(l.out) > 0;
        /* answers from the pool; when there is nothing to synthesize, this is where we wait:
         * for room in the window on the pool's answers, else (no snapshot yet, held, or the
         * trainer quiet) on the inbox itself, so that the next generation starts the moment it
         * arrives */
        int wait_snapshot = !busy && (!l.have || l.held || quiet);
        if (icn_sender_pump(l.out, busy || wait_snapshot ? 0 : 50, err, errlen)) goto out;
        if (icn_sender_run_ended(l.out)) { /* final: nothing more will be taken */
            res->ended = 3;
            snprintf(res->why, sizeof res->why, "the pool at %s says the run has ended", o->pool);
            break;
        }
        if (wait_snapshot) icn_inbox_wait(l.inbox, 50);
        if (!busy) continue;
        int k = next_class(o, classes, l.net.classes, made, first, &k_next);
        if (k < 0) { /* quota met: wait for the next snapshot */
            l.held = 1;
            continue;
        }
        int64_t n = (int64_t)o->batch * (o->chunk_batches > 0 ? o->chunk_batches : 1);
        if (n > ICN_BATCH_MAX_IMAGES) n = ICN_BATCH_MAX_IMAGES;
        if (o->max_per_gen && made[k] + n > o->max_per_gen) n = o->max_per_gen - made[k];
        if (made[k] < first && made[k] + n > first) n = first - made[k];
        icn_batch b = {0};
        int reached = icn_synth_batch(s, &l.net, &so, seed, o->id, k, (int)n, made[k], (int32_t)l.meta.generation, &b);
        if (reached < 0) { /* interrupted: a snapshot, hold or stop came, or the trainer went quiet */
            icn_batch_free(&b);
            continue;
        }
        res->reached += reached;
        int sent = icn_sender_send(l.out, &b, err, errlen);
        icn_batch_free(&b);
        if (sent) goto out;
        icn_metrics_printf(o->metrics,
                           "{\"event\":\"batch\",\"generation\":%lld,\"class\":%d,\"n\":%d,\"reached\":%d,\"time\":%.6f}",
                           (long long)l.meta.generation, k, (int)n, reached, icn_wallclock());
        made[k] += n;
        res->samples += n;
        if (!o->quiet && icn_now() - last_log >= 10) {
            const icn_sender_counts *c = icn_sender_counts_of(l.out);
            icn_warn("producer %u: %lld samples, %.1f/s, %.1f%% reached the stop rule, %lld acknowledged, generation %lld",
                     o->id, (long long)res->samples, res->samples / (icn_now() - t_start),
                     100.0 * res->reached / res->samples, (long long)c->images_acked, (long long)l.meta.generation);
            last_log = icn_now();
        }
    }
    res->unacked_batches = res->ended == 3 ? icn_sender_pending(l.out) /* they would be refused */
                                           : icn_sender_drain(l.out, o->drain_ms, NULL, err, errlen);
    rc = 0;
out:;
    const icn_sender_counts *c = icn_sender_counts_of(l.out);
    res->acked = c->images_acked;
    res->refused = c->refused;
    /* one line: why, and what became of the samples (also with --quiet when the trainer is gone) */
    if (rc == 0 && (!o->quiet || res->ended >= 2))
        icn_warn("producer %u: %s; stopping after %lld samples: %lld acknowledged, %lld batches refused, %lld unanswered",
                 o->id, res->ended ? res->why : "stopped by a signal", (long long)res->samples, (long long)res->acked,
                 (long long)res->refused, (long long)res->unacked_batches);
    icn_synth_free(s);
    if (l.have) icn_net_free(&l.net);
    icn_sender_close(l.out);
    icn_inbox_close(l.inbox);
    return rc;
}
