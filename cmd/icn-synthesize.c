/* icn-synthesize: turn reference noise into pseudo-negatives by ascending a class logit.
 * Offline from a model file to a tensor stream, or online: subscribe to the trainer's
 * snapshots and push to the pool until told to stop. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "progress.h"
#include "snapshot.h"
#include "synth.h"
#include "transport.h"
#include "parallel.h"
#include "util.h"
#include "wire.h"

static const char usage[] =
    "usage: icn-synthesize --model MODEL --class K --count N [options] [--out FILE|-]\n"
    "       icn-synthesize [--snapshots ENDPOINT] [--pool ENDPOINT] [options]\n"
    "\n"
    "Offline (--model): write N pseudo-negatives of class K as a tensor stream.\n"
    "Online (default): subscribe to the trainer's snapshots (default " ICN_EP_SNAPSHOTS ")\n"
    "and push pseudo-negatives to the pool (default " ICN_EP_POOL_PUSH ") until the trainer\n"
    "says stop, always sampling from the newest snapshot.\n"
    "\n"
    "  --classes LIST      online: classes to synthesize, e.g. 0,1,2 (default: all)\n"
    "  --batch B           samples in each forward/backward pass; a finished sample's place\n"
    "                      goes to a fresh one at once (default 10)\n"
    "  --max-per-gen N     online: at most N samples per class per snapshot (default: no limit)\n"
    "  --id N              producer id recorded in provenance (default: the process id)\n"
    "  --sigma S           reference distribution N(0, S^2) (default 0.3)\n"
    "  --lr LR             step size (default 0.02)\n"
    "  --max-steps N       cap on steps (default 100)\n"
    "  --stop 1|2|3        1: until classified positive; 2: until the logit exceeds\n"
    "                      --threshold (default); 3: always --max-steps\n"
    "  --threshold T       logit threshold of stop option 2 (default 2)\n"
    "  --method sgd|langevin  SGD, or SGD-Langevin (noise of variance = annealed step)\n"
    "  --step-rule adam|sgd Adam with beta1 = 0.5 (default, as the paper) or plain gradient steps\n"
    "  --noise             ICN-noise ablation: emit the raw reference samples\n"
    "  --seed S            (default 1)\n"
    "  --threads T         (default 1: one per synthesizer when several share a machine)\n"
    "  --metrics FILE|-    append JSON lines: snapshots received (wall-clock time, for\n"
    "                      delivery times) and batches pushed\n"
    "  --quiet             no progress on stderr\n";

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { (void)sig; stop_requested = 1; }

typedef struct {
    icn_synth_opts synth;
    const char *model, *out, *snapshots, *pool, *metrics;
    int klass, batch, threads, quiet, max_per_gen;
    int64_t count;
    uint32_t classes_mask, id;
    uint64_t seed;
} cli;

static uint32_t parse_classes(const char *s) {
    uint32_t mask = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        mask |= 1u << icn_parse_long("--classes", t, 0, 31);
    free(copy);
    return mask;
}

static void parse(int argc, char **argv, cli *c) {
    icn_synth_opts_default(&c->synth);
    c->klass = -1, c->batch = 10, c->threads = 1, c->seed = 1, c->id = (uint32_t)getpid();
    c->snapshots = ICN_EP_SNAPSHOTS, c->pool = ICN_EP_POOL_PUSH;
    enum { O_MODEL = 256, O_CLASS, O_COUNT, O_OUT, O_SNAP, O_POOL, O_CLASSES, O_BATCH, O_MAXGEN, O_ID, O_SIGMA, O_LR,
           O_STEPS, O_STOP, O_THRESH, O_METHOD, O_RULE, O_NOISE, O_SEED, O_THREADS, O_QUIET, O_METRICS };
    static const struct option longs[] = {
        {"model", required_argument, 0, O_MODEL}, {"class", required_argument, 0, O_CLASS},
        {"count", required_argument, 0, O_COUNT}, {"out", required_argument, 0, O_OUT},
        {"snapshots", required_argument, 0, O_SNAP}, {"pool", required_argument, 0, O_POOL},
        {"classes", required_argument, 0, O_CLASSES}, {"batch", required_argument, 0, O_BATCH},
        {"max-per-gen", required_argument, 0, O_MAXGEN}, {"id", required_argument, 0, O_ID},
        {"sigma", required_argument, 0, O_SIGMA}, {"lr", required_argument, 0, O_LR},
        {"max-steps", required_argument, 0, O_STEPS}, {"stop", required_argument, 0, O_STOP},
        {"threshold", required_argument, 0, O_THRESH}, {"method", required_argument, 0, O_METHOD},
        {"step-rule", required_argument, 0, O_RULE}, {"noise", no_argument, 0, O_NOISE},
        {"seed", required_argument, 0, O_SEED}, {"threads", required_argument, 0, O_THREADS},
        {"quiet", no_argument, 0, O_QUIET}, {"help", no_argument, 0, 'h'},
        {"metrics", required_argument, 0, O_METRICS}, {0, 0, 0, 0}};
    int opt;
    while ((opt = icn_getopt(argc, argv, longs, usage, NULL)) != -1) {
        icn_synth_opts *s = &c->synth;
        switch (opt) {
        case O_MODEL: c->model = optarg; break;
        case O_CLASS: c->klass = (int)icn_parse_long("--class", optarg, 0, 100000); break;
        case O_COUNT: c->count = icn_parse_long("--count", optarg, 1, 1L << 31); break;
        case O_OUT: c->out = optarg; break;
        case O_SNAP: c->snapshots = optarg; break;
        case O_POOL: c->pool = optarg; break;
        case O_CLASSES: c->classes_mask = parse_classes(optarg); break;
        case O_BATCH: c->batch = (int)icn_parse_long("--batch", optarg, 1, 4096); break;
        case O_MAXGEN: c->max_per_gen = (int)icn_parse_long("--max-per-gen", optarg, 1, 1L << 30); break;
        case O_ID: c->id = (uint32_t)icn_parse_long("--id", optarg, 0, UINT32_MAX); break;
        case O_SIGMA: s->sigma = icn_parse_double("--sigma", optarg, 0, 10); break;
        case O_LR: s->lr = icn_parse_double("--lr", optarg, 0, 100); break;
        case O_STEPS: s->max_steps = (int)icn_parse_long("--max-steps", optarg, 0, 1000000); break;
        case O_STOP: s->stop = (icn_stop_rule)icn_parse_long("--stop", optarg, 1, 3); break;
        case O_THRESH: s->threshold = icn_parse_double("--threshold", optarg, -1e6, 1e6); break;
        case O_METHOD:
            if (icn_synth_parse_method(optarg, s)) icn_die(2, "--method: '%s' is not sgd or langevin", optarg);
            break;
        case O_RULE:
            if (strcmp(optarg, "adam") && strcmp(optarg, "sgd")) icn_die(2, "--step-rule: '%s' is not adam or sgd", optarg);
            s->adam = !strcmp(optarg, "adam");
            break;
        case O_NOISE: s->noise_only = 1; break;
        case O_SEED: c->seed = (uint64_t)icn_parse_long("--seed", optarg, 0, INT64_MAX); break;
        case O_THREADS: c->threads = (int)icn_parse_long("--threads", optarg, 1, 1024); break;
        case O_QUIET: c->quiet = 1; break;
        case O_METRICS: c->metrics = optarg; break;
        }
    }
    icn_no_operands(argc, argv, NULL);
}

/* Samples per call of icn_synthesize, in batches: finished samples are replaced by fresh ones
 * within a call, so only its last batch-worth runs on a batch that is not full. */
enum { CHUNK_BATCHES = 4 };

/* n pseudo-negatives of class k, labelled -(k+1), with provenance: samples index .. index+n-1
 * of this (seed, generation, class, producer). */
static int make_batch(icn_synth *s, const icn_net *net, const cli *c, int k, int n, int64_t index, int32_t gen,
                      icn_batch *b) {
    icn_batch_alloc(b, n, net->in_h, net->in_w, net->in_c, 1);
    b->prov = xmalloc((size_t)n * sizeof *b->prov);
    for (int i = 0; i < n; i++) b->y[i] = -(k + 1);
    return icn_synthesize(s, net, k, n, &c->synth, c->seed, index, b->x, b->prov, gen, c->id);
}

static int run_offline(cli *c) {
    char err[ICN_ERRLEN];
    icn_net net;
    icn_model_meta meta;
    if (c->klass < 0 || c->count <= 0) icn_die(2, "offline synthesis needs --class K and --count N");
    if (icn_model_load(c->model, &net, &meta, NULL, NULL, err, sizeof err)) icn_die(1, "%s", err);
    if (c->klass >= net.classes) icn_die(2, "--class %d: the model has %d classes", c->klass, net.classes);
    c->synth.head = meta.head;
    icn_synth *s = icn_synth_new(&net, c->batch);
    icn_batch all = {0};
    int64_t reached = 0;
    icn_progress prog;
    icn_progress_begin(&prog, "synthesize", "samples", 0, c->count, c->quiet);
    for (int64_t done = 0; done < c->count;) {
        int64_t chunk = (int64_t)c->batch * CHUNK_BATCHES;
        int n = (int)(c->count - done < chunk ? c->count - done : chunk);
        icn_batch b = {0};
        reached += make_batch(s, &net, c, c->klass, n, done, (int32_t)meta.generation, &b);
        if (icn_batch_append(&all, &b, err, sizeof err)) icn_die(1, "%s", err);
        icn_batch_free(&b);
        done += n;
        icn_progress_update(&prog, done, NULL);
    }
    char status[64];
    snprintf(status, sizeof status, "reached stop rule %.1f%%", 100.0 * reached / c->count);
    icn_progress_end(&prog, c->count, status);
    if (icn_batch_write_file(c->out ? c->out : "-", &all, 1000, err, sizeof err)) icn_die(1, "%s", err);
    icn_batch_free(&all);
    icn_synth_free(s);
    icn_net_free(&net);
    return 0;
}

/* Take the newest frame on the snapshot socket, if any. 1: new model in *net; 2: stop;
 * 3: hold (the trainer has what it needs from this generation). */
static int poll_snapshot(void *sub, int timeout_ms, icn_net *net, icn_model_meta *meta, int have, icn_metrics *metrics) {
    char err[ICN_ERRLEN];
    zmq_msg_t msg;
    int got = icn_zmq_recv(sub, &msg, timeout_ms, err, sizeof err);
    if (got < 0) icn_warn("snapshot socket: %s", err);
    if (got <= 0) return 0;
    const uint8_t *p = zmq_msg_data(&msg);
    size_t n = zmq_msg_size(&msg);
    double received = icn_wallclock();
    int rc = 0;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    if (icn_frame_unpack(p, n, &up, err, sizeof err)) {
        icn_warn("rejected snapshot frame: %s", err);
    } else if (icn_map_kind_is(&up.data, "stop")) {
        rc = 2;
    } else if (icn_map_kind_is(&up.data, "hold")) {
        int64_t gen;
        rc = have && !icn_map_i64(&up.data, "generation", 0, INT64_MAX, &gen, err, sizeof err) && gen == meta->generation
                 ? 3 : 0;
    } else {
        icn_net fresh;
        icn_model_meta m;
        if (icn_model_decode(p, n, &fresh, &m, NULL, NULL, err, sizeof err)) {
            icn_warn("rejected snapshot frame: %s", err);
        } else if (have && m.generation == meta->generation && fresh.n_params == net->n_params) {
            icn_net_free(&fresh); /* the trainer re-sends its snapshot for late joiners */
        } else {
            if (have) icn_net_free(net);
            *net = fresh, *meta = m, rc = 1;
            icn_metrics_printf(metrics, "{\"event\":\"snapshot\",\"generation\":%lld,\"time\":%.6f,\"bytes\":%zu}",
                               (long long)m.generation, received, n);
        }
    }
    msgpack_unpacked_destroy(&up);
    zmq_msg_close(&msg);
    return rc;
}

static int run_online(cli *c) {
    char err[ICN_ERRLEN];
    void *sub = icn_zmq_open_latest(c->snapshots, err, sizeof err);
    if (!sub) icn_die(1, "%s", err);
    void *push = icn_zmq_open(ZMQ_PUSH, c->pool, 0, err, sizeof err);
    if (!push) icn_die(1, "%s", err);
    int send_timeout = 1000;
    zmq_setsockopt(push, ZMQ_SNDTIMEO, &send_timeout, sizeof send_timeout);
    icn_net net;
    icn_model_meta meta = {0};
    int have = 0, k_next = 0, held = 0;
    icn_synth *s = NULL;
    int64_t made_per_class[32] = {0}, total = 0, reached_total = 0;
    double t_start = icn_now(), last_log = t_start;
    uint32_t classes = c->classes_mask;
    icn_metrics metrics;
    if (icn_metrics_open(&metrics, c->metrics, err, sizeof err)) icn_die(1, "%s", err);
    if (!c->quiet) icn_warn("producer %u: waiting for snapshots on %s, pushing to %s", c->id, c->snapshots, c->pool);
    while (!stop_requested) {
        int r = poll_snapshot(sub, have && !held ? 0 : 1000, &net, &meta, have, &metrics);
        if (r == 2) break;
        if (r == 3 && !held && !c->quiet) icn_warn("producer %u: holding until the next snapshot", c->id);
        if (r == 3) held = 1;
        if (r == 1) {
            held = 0;
            icn_synth_free(s);
            s = icn_synth_new(&net, c->batch);
            c->synth.head = meta.head;
            have = 1;
            memset(made_per_class, 0, sizeof made_per_class);
            k_next = 0; /* each generation in the same class order: one synthesizer is reproducible */
            if (!classes) classes = net.classes >= 32 ? 0xffffffffu : (1u << net.classes) - 1;
            if (!c->quiet) icn_warn("producer %u: sampling from snapshot generation %lld", c->id, (long long)meta.generation);
        }
        if (!have || held) continue;
        /* next class in round-robin order that still wants samples in this generation */
        int k = -1;
        for (int tries = 0; tries < 32 && k < 0; tries++, k_next = (k_next + 1) % 32)
            if ((classes >> k_next & 1) && k_next < net.classes &&
                (!c->max_per_gen || made_per_class[k_next] < c->max_per_gen))
                k = k_next;
        if (k < 0) { /* quota met: wait for the next snapshot */
            held = 1;
            continue;
        }
        int n = c->batch * CHUNK_BATCHES;
        if (c->max_per_gen && made_per_class[k] + n > c->max_per_gen) n = (int)(c->max_per_gen - made_per_class[k]);
        icn_batch b = {0};
        int reached = make_batch(s, &net, c, k, n, made_per_class[k], (int32_t)meta.generation, &b);
        reached_total += reached;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        icn_batch_pack(&pk, &b);
        /* the pool may be down or slow: keep trying, but stay responsive to signals */
        int sent;
        while ((sent = icn_zmq_send_sbuffer(push, &sb, err, sizeof err)) < 0 && !stop_requested)
            if (zmq_errno() != EAGAIN) { icn_warn("push to %s: %s", c->pool, err); break; }
        msgpack_sbuffer_destroy(&sb);
        icn_metrics_printf(&metrics,
                           "{\"event\":\"batch\",\"generation\":%lld,\"class\":%d,\"n\":%d,\"reached\":%d,\"time\":%.6f}",
                           (long long)meta.generation, k, n, reached, icn_wallclock());
        icn_batch_free(&b);
        made_per_class[k] += n;
        total += n;
        if (!c->quiet && icn_now() - last_log >= 10) {
            icn_warn("producer %u: %lld samples, %.1f/s, %.1f%% reached the stop rule, generation %lld", c->id,
                     (long long)total, total / (icn_now() - t_start), 100.0 * reached_total / total,
                     (long long)meta.generation);
            last_log = icn_now();
        }
    }
    if (!c->quiet) icn_warn("producer %u: stopping after %lld samples", c->id, (long long)total);
    icn_metrics_close(&metrics);
    icn_synth_free(s);
    if (have) icn_net_free(&net);
    icn_zmq_close(sub);
    icn_zmq_close(push);
    icn_zmq_term(); /* the last batches reach the pool before we exit */
    return 0;
}

int main(int argc, char **argv) {
    icn_set_progname(argv[0]);
    cli c = {0};
    parse(argc, argv, &c);
    icn_threads_init(c.threads);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return c.model ? run_offline(&c) : run_online(&c);
}
