/* icn-synthesize: turn reference noise into pseudo-negatives by ascending a class logit.
 * Offline from a model file to a tensor stream, or online (lib/online.c): subscribe to the
 * trainer's snapshots and deliver to the pool, acknowledged, until told to stop. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inbox.h"
#include "online.h"
#include "progress.h"
#include "snapshot.h"
#include "synth.h"
#include "transport.h"
#include "runtime.h"
#include "util.h"
#include "wire.h"

#define ICN_STR_(x) #x
#define ICN_STR(x) ICN_STR_(x)

static const char usage[] =
    "usage: icn-synthesize --model MODEL --class K --count N [options] [--out FILE|-]\n"
    "       icn-synthesize [--snapshots ENDPOINT] [--pool ENDPOINT] [options]\n"
    "\n"
    "Offline (--model): write N pseudo-negatives of class K as a tensor stream.\n"
    "Online (default): subscribe to the trainer's snapshots (default " ICN_EP_SNAPSHOTS ")\n"
    "and deliver pseudo-negatives to the pool's intake (default " ICN_EP_POOL_PUSH "), each batch\n"
    "kept until the pool acknowledges it (icn-wire(5) DELIVERY), until the trainer\n"
    "says stop, always sampling from the newest snapshot. The trainer's heartbeat comes\n"
    "every second: after 3 s without a word nothing is made; after --liveness seconds\n"
    "the trainer is taken for gone and the synthesizer exits 1, saying so in one line.\n"
    "\n"
    "  --snapshot-requests ENDPOINT  online: where to ask for the newest snapshot (default:\n"
    "                      as the trainer's heartbeat says; tcp: its port on --snapshots' host)\n"
    "  --liveness S        online: exit when the trainer has said nothing for S seconds\n"
    "                      (default " ICN_STR(ICN_LIVENESS_S) "; counted from its first frame)\n"
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
    "  --nice N            online: synthesis runs N nicer than the threads that receive\n"
    "                      snapshots and talk to the pool (0-19, default 10; 0: as nice)\n"
    "  --metrics FILE|-    append JSON lines: snapshots received (wall-clock time, for\n"
    "                      delivery times) and batches pushed\n"
    "  --quiet             no progress on stderr\n"
    "Online, security (icn-wire(5) SECURITY): with keys, both links are CURVE-encrypted and\n"
    "accept only the head's key (--server-key), so no other publisher can feed or stop us.\n"
    ICN_SECURITY_USAGE;

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { (void)sig; stop_requested = 1; }

typedef struct {
    icn_synth_opts synth;
    const char *model, *out, *snapshots, *pool, *metrics, *snapshot_requests;
    double liveness;
    int klass, batch, threads, nice, quiet, max_per_gen;
    int64_t count;
    uint32_t classes_mask, id;
    uint64_t seed;
    icn_security sec;
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
    c->klass = -1, c->batch = 10, c->threads = 1, c->nice = 10, c->seed = 1, c->id = (uint32_t)getpid();
    c->snapshots = ICN_EP_SNAPSHOTS, c->pool = ICN_EP_POOL_PUSH;
    enum { O_MODEL = 256, O_CLASS, O_COUNT, O_OUT, O_SNAP, O_POOL, O_CLASSES, O_BATCH, O_MAXGEN, O_ID, O_SIGMA, O_LR,
           O_STEPS, O_STOP, O_THRESH, O_METHOD, O_RULE, O_NOISE, O_SEED, O_THREADS, O_NICE, O_QUIET, O_METRICS,
           O_SNAPREQ, O_LIVENESS };
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
        {"nice", required_argument, 0, O_NICE},
        {"quiet", no_argument, 0, O_QUIET}, {"help", no_argument, 0, 'h'},
        {"metrics", required_argument, 0, O_METRICS}, {"snapshot-requests", required_argument, 0, O_SNAPREQ},
        {"liveness", required_argument, 0, O_LIVENESS}, ICN_SECURITY_OPTIONS, {0, 0, 0, 0}};
    int opt;
    while ((opt = icn_getopt(argc, argv, longs, usage, NULL)) != -1) {
        icn_synth_opts *s = &c->synth;
        if (icn_security_option(opt, optarg, &c->sec)) continue;
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
        case O_NICE: c->nice = (int)icn_parse_long("--nice", optarg, 0, 19); break;
        case O_QUIET: c->quiet = 1; break;
        case O_METRICS: c->metrics = optarg; break;
        case O_SNAPREQ: c->snapshot_requests = optarg; break;
        case O_LIVENESS: c->liveness = icn_parse_double("--liveness", optarg, 1, 1e6); break;
        }
    }
    icn_no_operands(argc, argv, NULL);
    if (c->sec.allow_dir) icn_die(2, "--allow is for the head: a synthesizer binds nothing (give --server-key)");
    if (c->model && (c->sec.secret_key || c->sec.insecure)) icn_die(2, "offline synthesis (--model) opens no sockets: no keys");
}

/* Samples per call of icn_synthesize, in batches: finished samples are replaced by fresh ones
 * within a call, so only its last batch-worth runs on a batch that is not full. */
enum { CHUNK_BATCHES = 4 };

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
        reached += icn_synth_batch(s, &net, &c->synth, c->seed, c->id, c->klass, n, done, (int32_t)meta.generation, &b);
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

/* The loop itself is lib/online.c's, where a unit test drives it. */
static int run_online(cli *c) {
    char err[2 * ICN_ERRLEN];
    icn_security_apply(&c->sec);
    icn_online_opts o;
    icn_online_opts_default(&o);
    o.snapshots = c->snapshots, o.pool = c->pool, o.synth = c->synth;
    o.batch = c->batch, o.chunk_batches = CHUNK_BATCHES, o.max_per_gen = c->max_per_gen;
    o.classes_mask = c->classes_mask, o.id = c->id, o.seed = c->seed, o.quiet = c->quiet, o.nice = c->nice;
    o.stop = &stop_requested;
    o.snapshot_requests = c->snapshot_requests, o.liveness_s = c->liveness;
    icn_metrics metrics;
    if (icn_metrics_open(&metrics, c->metrics, err, sizeof err)) icn_die(1, "%s", err);
    o.metrics = &metrics;
    icn_online_result res;
    int rc = icn_synthesize_online(&o, &res, err, sizeof err);
    icn_metrics_printf(&metrics,
                       "{\"event\":\"done\",\"samples\":%lld,\"acked\":%lld,\"refused_batches\":%lld,"
                       "\"unacked_batches\":%lld,\"time\":%.6f}",
                       (long long)res.samples, (long long)res.acked, (long long)res.refused,
                       (long long)res.unacked_batches, icn_wallclock());
    icn_metrics_close(&metrics);
    icn_zmq_term();
    if (rc) icn_die(1, "%s", err);
    return res.ended == 2 ? 1 : 0; /* the trainer is gone (online.c said so in one line) */
}

int main(int argc, char **argv) {
    icn_set_progname(argv[0]);
    cli c = {0};
    parse(argc, argv, &c);
    icn_runtime_init(c.threads);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return c.model ? run_offline(&c) : run_online(&c);
}
