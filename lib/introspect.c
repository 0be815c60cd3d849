#include "introspect.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "checkpoint.h"
#include "pool.h"
#include "prefetch.h"
#include "protocol.h"
#include "publisher.h"
#include "snapshot.h"
#include "trainer.h"
#include "transport.h"
#include "util.h"

#define REQUEST_TIMEOUT_MS 5000
#define END_TIMEOUT_MS 2000 /* the run's "end" to the pool: the trainer exits anyway */
#define WAIT_POLL_MS 10 /* sync, without prefetch: how often a waiting trainer asks the pool again */
#define SERVE_MS 50 /* how often a waiting trainer looks at the publisher's thread */
#define PREFETCH_MAX_HELD (256LL << 20) /* bytes of records the prefetch thread may hold */

void icn_introspect_opts_default(icn_introspect_opts *o) {
    memset(o, 0, sizeof *o);
    o->initial_steps = 800;
    o->rounds = 6;
    o->round_steps = 200;
    o->per_class = 20;
    o->alpha = 0.5;
    o->pn_batch = 16; /* 64 until 2026-12-02: docs/RESULTS.md, "The trainer's wait (taskset)" */
    o->publish = ICN_EP_SNAPSHOTS;
    o->pool = ICN_EP_POOL_REQ;
    o->wait_timeout = 600;
    o->prefetch = 1;
}

int64_t icn_introspect_total_steps(const icn_introspect_opts *o) {
    return o->initial_steps + (int64_t)o->rounds * o->round_steps;
}

/* Everything one introspective run holds around its trainer. */
typedef struct {
    const icn_introspect_opts *o;
    icn_trainer t;     /* the loop, its options (t.o), the model and where the run is (t.meta) */
    icn_batch pn;      /* all pseudo-negatives accepted so far: the trainer's source */
    int64_t *accepted; /* [generation][class] counts, generations 0..rounds */
    icn_publisher *pub; /* snapshots, heartbeats, and the newest snapshot for late joiners */
    void *req;
    icn_prefetch *in; /* the pool's records from meta.pool_offset on */
    /* the time training stood still for the sync schedule, over this process's rounds: */
    double waited, waited_max, published; /* waiting for pseudo-negatives; sending snapshots */
    int64_t rounds_run, waited_max_round;
} run;

static int publish_snapshot(run *r, char *err, size_t errlen) {
    return icn_publisher_snapshot(r->pub, r->t.net, &r->t.meta, err, errlen);
}

/* Control frames on the snapshot channel: "hold" (generation t has all it needs: pause
 * until the next snapshot, so synthesizers leave the cores to the trainer) and "stop". */
static void publish_control(run *r, icn_msg_kind kind) {
    char err[ICN_ERRLEN];
    icn_publisher_control(r->pub, kind, r->t.meta.generation, err, sizeof err);
}

/* The largest reply to a fetch of ICN_PREFETCH_RECORDS records of our images (labels, provenance, keys). */
static int64_t max_reply(const run *r) {
    return ICN_PREFETCH_RECORDS * (int64_t)(icn_batch_dim(r->t.data) * sizeof(float) + sizeof(int32_t) + 17) + 4096;
}

/* Whether record i of `records` joins the training set: in sync mode, only generation g's
 * first per_class samples of each class, for generations up to `round`; in async mode all. */
static int accept_record(run *r, const icn_batch *records, int64_t i, int64_t round) {
    const icn_provenance *p = &records->prov[i];
    int k = -(records->y[i] + 1), K = r->t.net->classes;
    if (k < 0 || k >= K) return 0;
    if (records->h != r->t.net->in_h || records->w != r->t.net->in_w || records->c != r->t.net->in_c) return 0;
    if (r->o->async) return 1;
    if (p->generation < 1 || p->generation > round) return 0;
    int64_t *count = &r->accepted[(size_t)p->generation * K + k];
    if (*count >= r->o->per_class) return 0;
    (*count)++;
    return 1;
}

static int round_complete(const run *r, int64_t gen) {
    for (int k = 0; k < r->t.net->classes; k++)
        if (r->accepted[(size_t)gen * r->t.net->classes + k] < r->o->per_class) return 0;
    return 1;
}

typedef struct { int64_t added, reached, producers; uint32_t producer_ids[64]; } intake;

static void note_producer(intake *in, uint32_t id) {
    for (int64_t i = 0; i < in->producers && i < 64; i++)
        if (in->producer_ids[i] == id) return;
    if (in->producers < 64) in->producer_ids[in->producers] = id;
    in->producers++;
}

/* Which of the records fetched take_from_pool keeps: the first n that accept_record accepts. */
typedef struct {
    run *r;
    int64_t n, round;
    intake *in;
} take_ctx;

static int take_record(const icn_batch *records, int32_t i, void *ctx) {
    take_ctx *t = ctx;
    if (i >= t->n || !accept_record(t->r, records, i, t->round)) return 0;
    t->in->reached += records->prov[i].reached;
    note_producer(t->in, records->prov[i].producer);
    return 1;
}

/* Take records from the pool into the training set, up to `until` (or everything available
 * when until < 0). Advances meta.pool_offset past every record looked at. */
static int take_from_pool(run *r, int64_t round, int64_t until, intake *in, char *err, size_t errlen) {
    for (;;) {
        if (until >= 0 && r->t.meta.pool_offset >= until) return 0;
        icn_batch records = {0};
        int64_t total = 0;
        int rc = icn_prefetch_take(r->in, r->t.meta.pool_offset, &records, &total, err, errlen);
        if (rc <= 0) { icn_batch_free(&records); return rc < 0 ? -1 : 1; }
        int64_t n = records.n;
        if (until >= 0 && r->t.meta.pool_offset + n > until) n = until - r->t.meta.pool_offset;
        /* keep the accepted records, then add them in one append */
        take_ctx t = {r, n, round, in};
        int32_t kept = icn_batch_filter(&records, take_record, &t);
        int rc_append = icn_batch_append(&r->pn, &records, err, errlen);
        if (rc_append) { icn_batch_free(&records); return -1; }
        in->added += kept;
        r->t.meta.pool_offset += n;
        icn_batch_free(&records);
        if (n == 0 || (until < 0 && r->t.meta.pool_offset >= total)) return 0;
        if (!r->o->async && round_complete(r, round) && until < 0) return 0;
    }
}

/* Sync: wait until generation `gen` has per_class pseudo-negatives of every class. */
static int wait_for_round(run *r, int64_t gen, intake *in, double *waited, char *err, size_t errlen) {
    double t0 = icn_now(), last_note = t0;
    for (;;) {
        if (take_from_pool(r, gen, -1, in, err, errlen) < 0) return -1;
        if (r->o->async || round_complete(r, gen)) break;
        double now = icn_now();
        if (now - t0 > r->o->wait_timeout)
            return icn_errf(err, errlen,
                            "round %lld: waited %.0f s for %d pseudo-negatives per class from generation %lld "
                            "(have %lld in all): are synthesizers running against %s and pushing to the pool at %s?",
                            (long long)gen, now - t0, r->o->per_class, (long long)gen, (long long)in->added,
                            r->o->publish, r->o->pool);
        if (!r->t.o->quiet && now - last_note >= 10) {
            icn_warn("round %lld: waiting for pseudo-negatives (%lld of %d so far)", (long long)gen,
                     (long long)in->added, r->o->per_class * r->t.net->classes);
            last_note = now;
        }
        /* late joiners and restarted synthesizers ask the publisher's thread for the snapshot
         * (lib/publisher.h); here we wait until records come (prefetch: the thread has them)
         * or, without prefetch, shortly: the pool only answers requests (a fetch that finds
         * nothing new is one round trip) */
        if (icn_publisher_serve(r->pub, 0, err, errlen) < 0) return -1;
        icn_prefetch_wait(r->in, SERVE_MS, WAIT_POLL_MS);
    }
    *waited = icn_now() - t0;
    return 0;
}

static int pool_total(run *r, int64_t *total, char *err, size_t errlen) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_fetch(&sb, INT32_MAX, 1); /* an offset past the end: the reply says the total */
    icn_msg reply;
    int rc = icn_request(&r->req, r->o->pool, &sb, REQUEST_TIMEOUT_MS, max_reply(r), ICN_MSG_RECORDS, &reply, err,
                         errlen);
    if (rc == 1) *total = reply.total, icn_msg_free(&reply);
    if (rc == 0) icn_errf(err, errlen, "no pool answers at %s (start one with: icn-pool serve --rep %s)", r->o->pool, r->o->pool);
    msgpack_sbuffer_destroy(&sb);
    return rc == 1 ? 0 : -1;
}

/* A request answered with the pool's "stats": "stats", or the head's "end" or "begin" of its
 * run. uuid: the identity of the store behind the pool ("" from a pool that has none);
 * *ended: whether the pool's run has ended. */
static int pool_state(run *r, icn_msg_kind kind, char uuid[ICN_UUID_STRLEN], int *ended, int timeout_ms, char *err,
                      size_t errlen) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (kind == ICN_MSG_STATS_REQUEST) icn_pack_stats_request(&sb);
    else icn_pack_run_request(&sb, kind);
    icn_msg reply;
    int rc = icn_request(&r->req, r->o->pool, &sb, timeout_ms, max_reply(r), ICN_MSG_STATS, &reply, err, errlen);
    if (rc == 1) snprintf(uuid, ICN_UUID_STRLEN, "%s", reply.counts.uuid), *ended = reply.ended, icn_msg_free(&reply);
    if (rc == 0) icn_errf(err, errlen, "no pool answers at %s (start one with: icn-pool serve --rep %s)", r->o->pool, r->o->pool);
    msgpack_sbuffer_destroy(&sb);
    return rc == 1 ? 0 : -1;
}

/* A checkpoint names the store it consumed: resuming against another one would take other
 * records at the same offsets (issue 16, finding 10). A pool whose run has ended (a run of
 * this head's finished on it) takes batches again once this one begins. */
static int check_pool_identity(run *r, int resumed, char *err, size_t errlen) {
    char uuid[ICN_UUID_STRLEN] = "";
    int ended = 0;
    if (pool_state(r, ICN_MSG_STATS_REQUEST, uuid, &ended, REQUEST_TIMEOUT_MS, err, errlen) ||
        (ended && pool_state(r, ICN_MSG_BEGIN, uuid, &ended, REQUEST_TIMEOUT_MS, err, errlen)))
        return -1;
    if (resumed && r->t.meta.pool_uuid[0] && uuid[0] && strcmp(uuid, r->t.meta.pool_uuid) != 0)
        return icn_errf(err, errlen,
                        "checkpoint %s was trained on pool store %s, but the pool at %s serves store %s: refusing to "
                        "resume against another store (serve the one it used, or start a fresh run)",
                        r->t.o->checkpoint, r->t.meta.pool_uuid, r->o->pool, uuid);
    if (uuid[0]) snprintf(r->t.meta.pool_uuid, sizeof r->t.meta.pool_uuid, "%s", uuid);
    return 0;
}

static void run_free(run *r) {
    icn_trainer_free(&r->t);
    icn_batch_free(&r->pn);
    icn_prefetch_close(r->in);
    free(r->accepted);
    icn_publisher_close(r->pub);
    if (r->req) icn_zmq_close(r->req);
}

/* The run's summary of the time training stood still: a "waits" metrics event and one line. */
static void report_waits(const run *r) {
    if (!r->rounds_run) return;
    double mean = r->waited / (double)r->rounds_run;
    icn_metrics_printf(r->t.o->metrics,
                       "{\"event\":\"waits\",\"rounds\":%lld,\"wait_s\":%.3f,\"wait_mean_s\":%.3f,"
                       "\"wait_max_s\":%.3f,\"wait_max_round\":%lld,\"publish_s\":%.3f,\"prefetch\":%d,"
                       "\"prefetched\":%lld}",
                       (long long)r->rounds_run, r->waited, mean, r->waited_max, (long long)r->waited_max_round,
                       r->published, r->o->prefetch, (long long)icn_prefetch_taken_ahead(r->in));
    if (!r->t.o->quiet)
        icn_warn("waited %.1f s for pseudo-negatives in %lld rounds (%.1f s a round, longest %.1f s in round %lld), "
                 "%.1f s publishing snapshots",
                 r->waited, (long long)r->rounds_run, mean, r->waited_max, (long long)r->waited_max_round,
                 r->published);
}

static int run_rounds(run *r, char *err, size_t errlen) {
    const icn_introspect_opts *o = r->o;
    icn_metrics *metrics = r->t.o->metrics;
    if (icn_trainer_run(&r->t, o->initial_steps + r->t.meta.round * o->round_steps, err, errlen)) return -1;
    for (int64_t t = r->t.meta.round + 1; t <= o->rounds; t++) {
        r->t.meta.generation = t;
        double t0 = icn_now();
        if (publish_snapshot(r, err, errlen)) return -1;
        double published = icn_now() - t0;
        intake in = {0};
        double waited = 0;
        if (wait_for_round(r, t, &in, &waited, err, errlen)) return -1;
        if (!o->async) publish_control(r, ICN_MSG_HOLD);
        r->t.meta.round = t;
        r->rounds_run++, r->waited += waited, r->published += published;
        if (waited > r->waited_max) r->waited_max = waited, r->waited_max_round = t;
        icn_metrics_printf(metrics,
                           "{\"event\":\"round\",\"round\":%lld,\"generation\":%lld,\"pn_new\":%lld,\"pn_total\":%lld,"
                           "\"reached_fraction\":%.4f,\"producers\":%lld,\"wait_s\":%.3f,\"publish_s\":%.3f,"
                           "\"pool_offset\":%lld}",
                           (long long)t, (long long)t, (long long)in.added, (long long)r->pn.n,
                           in.added ? (double)in.reached / in.added : 0.0, (long long)in.producers, waited, published,
                           (long long)r->t.meta.pool_offset);
        if (!r->t.o->quiet)
            icn_warn("round %lld: %lld new pseudo-negatives from %lld producers (%.0f%% reached the stop rule), "
                     "%lld in all, waited %.1f s",
                     (long long)t, (long long)in.added, (long long)in.producers,
                     in.added ? 100.0 * in.reached / in.added : 0.0, (long long)r->pn.n, waited);
        if (icn_trainer_run(&r->t, o->initial_steps + t * o->round_steps, err, errlen)) return -1;
        if (icn_checkpoint_save(r->t.o, r->t.net, &r->t.meta, &r->t.opt, err, errlen)) return -1;
    }
    report_waits(r);
    return 0;
}

/* The round schedule's settings, after the trainer's (icn_train_settings) in meta.settings. */
static void introspect_settings(const icn_introspect_opts *o, char *out, size_t outlen) {
    size_t at = strlen(out);
    snprintf(out + at, outlen - at, " initial_steps=%lld rounds=%d round_steps=%lld per_class=%d alpha=%g pn_batch=%d async=%d",
             (long long)o->initial_steps, o->rounds, (long long)o->round_steps, o->per_class, o->alpha, o->pn_batch,
             o->async);
    at = strlen(out); /* only when set, so that the settings of runs before the option read as they did */
    if (o->bn_pseudo != ICN_BN_MIXED) snprintf(out + at, outlen - at, " bn_pseudo=%s", icn_bn_pseudo_name(o->bn_pseudo));
    at = strlen(out);
    if (o->pn_recent > 0) snprintf(out + at, outlen - at, " pn_recent=%g", o->pn_recent);
}

int icn_train_introspective(icn_net *net, const icn_batch *data, const icn_train_opts *train,
                            const icn_introspect_opts *o, char *err, size_t errlen) {
    if (train->steps != icn_introspect_total_steps(o))
        return icn_errf(err, errlen, "introspective training: %lld steps, but the round schedule makes %lld",
                        (long long)train->steps, (long long)icn_introspect_total_steps(o));
    run r = {.o = o};
    if (icn_trainer_init(&r.t, net, data, train, o->pn_batch, err, errlen)) return -1;
    r.t.pn = &r.pn, r.t.alpha = o->alpha, r.t.bn_pseudo = o->bn_pseudo, r.t.pn_recent = o->pn_recent;
    introspect_settings(o, r.t.meta.settings, sizeof r.t.meta.settings);
    r.accepted = xcalloc((size_t)(o->rounds + 1) * net->classes, sizeof(int64_t));
    int rc = -1, pool_met = 0; /* pool_met: the pool answered, and is told when the run ends */
    int resumed = icn_trainer_begin(&r.t, "introspective", err, errlen);
    if (resumed < 0) goto out;
    if (!(r.pub = icn_publisher_open(o->publish, o->snapshot_requests, r.t.o->metrics, err, errlen))) goto out;
    if (!(r.req = icn_zmq_open_with(ZMQ_REQ, o->pool, 0, &(icn_zmq_opts){.max_msg = max_reply(&r)}, err, errlen)))
        goto out;
    if (check_pool_identity(&r, resumed, err, errlen)) goto out;
    pool_met = 1;
    if (!resumed) {
        int64_t total;
        if (pool_total(&r, &total, err, errlen)) goto out;
        r.t.meta.pool_start = r.t.meta.pool_offset = total; /* only what this run's snapshots produced */
    } else if (r.t.meta.round > 0) { /* rebuild the training set from the pool, as it was taken */
        int64_t until = r.t.meta.pool_offset;
        intake in = {0};
        r.t.meta.pool_offset = r.t.meta.pool_start;
        r.in = icn_prefetch_open(o->pool, r.t.meta.pool_offset, max_reply(&r), 0, 0, err, errlen);
        if (take_from_pool(&r, r.t.meta.round, until, &in, err, errlen)) {
            if (!err[0]) icn_errf(err, errlen, "pool at %s did not answer while rebuilding", o->pool);
            goto out;
        }
        icn_prefetch_close(r.in);
        r.in = NULL;
        if (!train->quiet) icn_warn("resumed with %lld pseudo-negatives from the pool", (long long)r.pn.n);
    }
    /* from here on, the pool is read ahead while the trainer trains (o->prefetch) */
    if (!(r.in = icn_prefetch_open(o->pool, r.t.meta.pool_offset, max_reply(&r), o->prefetch, PREFETCH_MAX_HELD, err,
                                   errlen)))
        goto out;
    rc = run_rounds(&r, err, errlen);
    if (rc == 0 && icn_trainer_finish(&r.t, err, errlen)) rc = -1;
out:
    /* the run is over, finished or failed: synthesizers exit ("stop", then "finished" in every
     * heartbeat until the publisher closes), and the pool refuses what they still send, even
     * those the stop never reached ("end"; a run that begins on it takes batches again) */
    if (r.pub) publish_control(&r, ICN_MSG_STOP);
    if (pool_met) {
        char uuid[ICN_UUID_STRLEN], e[2 * ICN_ERRLEN];
        int ended;
        if (pool_state(&r, ICN_MSG_END, uuid, &ended, END_TIMEOUT_MS, e, sizeof e) && !train->quiet)
            icn_warn("warning: the pool was not told that the run has ended: %s", e);
    }
    run_free(&r);
    return rc;
}
