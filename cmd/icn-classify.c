/* icn-classify: train a classifier on a tensor stream, or predict with one. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <time.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "introspect.h"
#include "net.h"
#include "snapshot.h"
#include "train.h"
#include "protocol.h"
#include "publisher.h"
#include "trainer.h"
#include "transport.h"
#include "fileio.h"
#include "parallel.h"
#include "runtime.h"
#include "util.h"
#include "wire.h"

static const char usage[] =
    "usage: icn-classify train [options] --out MODEL\n"
    "       icn-classify predict --model MODEL [--data FILE|-] [--out FILE|-]\n"
    "       icn-classify publish --model MODEL [--publish ENDPOINT] [--every S] [--count N] [--bump]\n"
    "\n"
    "train: fit the network on a labelled tensor stream (from icn-load).\n"
    "  --data FILE|-          training tensor stream (default: stdin)\n"
    "  --arch NAME            mnist (the paper's net, default), resnet32 (resnetN: N = 6n+2)\n"
    "                         or blocks like c32-c64; resnetN-gn: the ResNet with group norm\n"
    "                         instead of batch norm, no batch statistics (for the ICN study);\n"
    "                         resnetN-fixup: the ResNet without normalization, Fixup init\n"
    "  --head softmax|ova     softmax cross-entropy (default) or one-vs-all sigmoids\n"
    "  --classes K            number of classes (default: largest label + 1); 1 with --head ova\n"
    "                         --introspective is the paper's binary formulation (Eq. 5)\n"
    "  --steps N              SGD steps (default 2000)\n"
    "  --epochs E             instead of --steps: E passes over the data\n"
    "  --batch B              mini-batch size (default 64)\n"
    "  --lr LR                learning rate (default 0.025)\n"
    "  --momentum M           SGD momentum (default 0.9)\n"
    "  --weight-decay WD      L2 weight decay (default 0)\n"
    "  --decay-at F[,F..]     decay the lr at these fractions of the steps (default 0.75)\n"
    "  --decay-factor G       multiply the lr by G at each decay (default 0.1)\n"
    "  --label-smoothing EPS  label smoothing for the softmax head (default 0)\n"
    "  --clip-grad NORM       scale each step's gradient down to this L2 norm when longer (default:\n"
    "                         10 with --introspective, whose SGD with stop option 3 diverged without\n"
    "                         it; 0, off, for plain training; --clip-grad 0 turns it off)\n"
    "  --seed S               initialisation and batch order (default 1)\n"
    "  --augment              each step, pad the real images by 4 (black), crop them back at random\n"
    "                         and flip half of them left to right; seeded by (--seed, step)\n"
    "  --out MODEL            where the trained model goes (written atomically)\n"
    "  --checkpoint FILE      save model and optimizer state every --checkpoint-every steps\n"
    "  --checkpoint-every N   (default 1000)\n"
    "  --resume               continue from --checkpoint if it exists; refused when the checkpoint\n"
    "                         was trained with other settings (lr, momentum, batch, decay, clipping,\n"
    "                         smoothing, augmentation, the round schedule)\n"
    "  --new-settings         with --resume: continue under this run's settings all the same\n"
    "                         (say a smaller --lr or --clip-grad after a divergence); printed\n"
    "  --val FILE             labelled stream to report validation error on\n"
    "  --eval-every N         validation every N steps and at the end (default: 10 times per run;\n"
    "                         --introspective adds the end of each round)\n"
    "  --keep-best FILE       with --val: write the model with the lowest validation error so far\n"
    "                         to FILE (atomically) at each evaluation, beside the final --out\n"
    "  --metrics FILE|-       append JSON-lines metrics\n"
    "  --threads T            threads (default: ICN_THREADS or all cores)\n"
    "  --quiet                no progress on stderr\n"
    "\n"
    "train --introspective: reclassification-by-synthesis (the paper's Algorithm 1) with\n"
    "icn-synthesize processes and an icn-pool; --steps is replaced by the round schedule:\n"
    "  --initial-steps N      steps on real data before round 1 (default 800)\n"
    "  --rounds T             rounds of synthesis and retraining (default 6)\n"
    "  --round-steps N        steps per round (default 200)\n"
    "  --per-class L          pseudo-negatives per class per round (default 20)\n"
    "  --alpha A              weight of the pseudo-negative term, Eq. 9 (default 0.5)\n"
    "  --pn-batch P           pseudo-negatives per step, beside --batch real images (default 16)\n"
    "  --pn-recent F          draw this share of them from the newest generation, the rest from\n"
    "                         all generations uniformly (default 0: all uniformly, as the paper)\n"
    "  --bn-pseudo MODE       batch norm (resnetN): 'mixed' normalizes the pseudo-negatives together\n"
    "                         with the real images (default); 'separate' as a batch of their own,\n"
    "                         'frozen' by the running statistics (as synthesis sees them); with\n"
    "                         both, the running statistics come from the real images only\n"
    "  --async                never wait for synthesizers; take what the pool has each round\n"
    "  --publish ENDPOINT     where snapshots are published (default " ICN_EP_SNAPSHOTS "), with\n"
    "                         a heartbeat every second (icn-wire(5) SNAPSHOTS)\n"
    "  --snapshot-requests ENDPOINT  where late joiners ask for the newest snapshot (default:\n"
    "                         --publish's host, a port the kernel picks; heartbeats name it)\n"
    "  --pool ENDPOINT        the pool's request endpoint (default " ICN_EP_POOL_REQ ")\n"
    "  --wait-timeout S       give up when a round's pseudo-negatives take longer (default 600)\n"
    "  --no-prefetch          read the pool only when a round starts, not from a thread while\n"
    "                         training (the same records are kept either way)\n"
    "\n"
    "train --introspective and publish, security (icn-wire(5) SECURITY): the PUB socket is a\n"
    "CURVE server admitting only --allow's keys; the fetch from the pool is a CURVE client.\n"
    "Without keys only loopback endpoints may be bound, unless --insecure.\n"
    ICN_SECURITY_USAGE
    "\n"
    "predict: print one line per image: predicted class, its probability, true label (or -).\n"
    "  --model MODEL --data FILE|- --out FILE|-\n"
    "\n"
    "publish: serve a fixed model to icn-synthesize processes as a snapshot: sent once, then\n"
    "to each synthesizer that asks (a late joiner), with a heartbeat every second, until\n"
    "killed. --every S sends it every S seconds (until killed or --count N publications);\n"
    "--bump (with --every) makes each one a new generation: the first is the model file's\n"
    "own, the next one more, and so on (for measuring snapshot delivery; see --metrics).\n"
    "--publish and --snapshot-requests as for train. At the end (--count reached, SIGINT or\n"
    "SIGTERM) it says stop, and its synthesizers exit.\n";

enum { O_DATA = 256, O_ARCH, O_HEAD, O_CLASSES, O_STEPS, O_EPOCHS, O_BATCH, O_LR, O_MOMENTUM,
       O_WD, O_DECAY_AT, O_DECAY_FACTOR, O_SMOOTH, O_CLIP, O_SEED, O_OUT, O_CKPT, O_CKPT_EVERY, O_RESUME,
       O_VAL, O_EVAL_EVERY, O_METRICS, O_THREADS, O_QUIET, O_MODEL, O_INTRO, O_INIT_STEPS,
       O_ROUNDS, O_ROUND_STEPS, O_PER_CLASS, O_ALPHA, O_PN_BATCH, O_PN_RECENT, O_BN_PSEUDO, O_ASYNC_ROUNDS, O_PUBLISH, O_POOL,
       O_WAIT, O_EVERY, O_COUNT, O_BUMP, O_AUGMENT, O_NEW_SETTINGS, O_KEEP_BEST, O_NO_PREFETCH, O_SNAPREQ, O_END };
_Static_assert(O_END - O_DATA <= 64, "the flags must fit the 64-bit set cli.given");

static const struct option longs[] = {
    {"data", required_argument, 0, O_DATA}, {"arch", required_argument, 0, O_ARCH},
    {"head", required_argument, 0, O_HEAD}, {"classes", required_argument, 0, O_CLASSES},
    {"steps", required_argument, 0, O_STEPS}, {"epochs", required_argument, 0, O_EPOCHS},
    {"batch", required_argument, 0, O_BATCH}, {"lr", required_argument, 0, O_LR},
    {"momentum", required_argument, 0, O_MOMENTUM}, {"weight-decay", required_argument, 0, O_WD},
    {"decay-at", required_argument, 0, O_DECAY_AT}, {"decay-factor", required_argument, 0, O_DECAY_FACTOR},
    {"label-smoothing", required_argument, 0, O_SMOOTH}, {"clip-grad", required_argument, 0, O_CLIP},
    {"seed", required_argument, 0, O_SEED}, {"out", required_argument, 0, O_OUT},
    {"checkpoint", required_argument, 0, O_CKPT}, {"checkpoint-every", required_argument, 0, O_CKPT_EVERY},
    {"resume", no_argument, 0, O_RESUME}, {"val", required_argument, 0, O_VAL},
    {"eval-every", required_argument, 0, O_EVAL_EVERY}, {"metrics", required_argument, 0, O_METRICS},
    {"threads", required_argument, 0, O_THREADS}, {"quiet", no_argument, 0, O_QUIET},
    {"model", required_argument, 0, O_MODEL}, {"help", no_argument, 0, 'h'},
    {"introspective", no_argument, 0, O_INTRO}, {"initial-steps", required_argument, 0, O_INIT_STEPS},
    {"rounds", required_argument, 0, O_ROUNDS}, {"round-steps", required_argument, 0, O_ROUND_STEPS},
    {"per-class", required_argument, 0, O_PER_CLASS}, {"alpha", required_argument, 0, O_ALPHA},
    {"pn-batch", required_argument, 0, O_PN_BATCH}, {"pn-recent", required_argument, 0, O_PN_RECENT}, {"bn-pseudo", required_argument, 0, O_BN_PSEUDO}, {"async", no_argument, 0, O_ASYNC_ROUNDS},
    {"publish", required_argument, 0, O_PUBLISH}, {"pool", required_argument, 0, O_POOL},
    {"wait-timeout", required_argument, 0, O_WAIT}, {"every", required_argument, 0, O_EVERY},
    {"count", required_argument, 0, O_COUNT}, {"bump", no_argument, 0, O_BUMP},
    {"augment", no_argument, 0, O_AUGMENT}, {"new-settings", no_argument, 0, O_NEW_SETTINGS},
    {"keep-best", required_argument, 0, O_KEEP_BEST}, {"no-prefetch", no_argument, 0, O_NO_PREFETCH},
    {"snapshot-requests", required_argument, 0, O_SNAPREQ}, ICN_SECURITY_OPTIONS, {0, 0, 0, 0}};

typedef struct {
    icn_introspect_opts intro;
    icn_train_opts train;
    int introspective;
    const char *data, *arch, *val, *metrics, *model, *out;
    int classes, threads, bump;
    double epochs, every;
    int64_t count;
    uint64_t given; /* bit (O_x - O_DATA) for each flag on the command line */
    icn_security sec; /* --secret-key, --allow, --server-key, --insecure (train, publish) */
    int sec_given;
} cli;

#define FLAG(o) (1ULL << ((o) - O_DATA)) /* o >= O_DATA: 'h' and the like have no bit */

/* A flag that `sub` does not use is a usage error, not silently ignored. */
static void only_flags(const cli *c, const char *sub, uint64_t allowed) {
    uint64_t extra = c->given & ~allowed;
    if (c->sec_given && !strcmp(sub, "predict")) icn_die(2, "predict: it opens no sockets: no keys (see --help)");
    for (const struct option *o = longs; o->name && o->val < O_END; o++)
        if (o->val >= O_DATA && (extra & FLAG(o->val))) icn_die(2, "%s: --%s does not apply to %s (see --help)", sub, o->name, sub);
}

static int parse_milestones(const char *s, double *out) {
    int n = 0;
    char *copy = xstrdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == ICN_MAX_MILESTONES) icn_die(2, "--decay-at: at most %d milestones", ICN_MAX_MILESTONES);
        out[n++] = icn_parse_double("--decay-at", tok, 0, 1);
    }
    free(copy);
    return n;
}

static void parse(int argc, char **argv, cli *c) {
    icn_train_opts_default(&c->train);
    icn_introspect_opts_default(&c->intro);
    c->train.clip_grad = -1; /* not given: chosen by the kind of training in cmd_train */
    c->data = "-";
    c->arch = "mnist";
    int opt;
    while ((opt = icn_getopt(argc, argv, longs, usage, NULL)) != -1) {
        icn_train_opts *t = &c->train;
        if (icn_security_option(opt, optarg, &c->sec)) {
            c->sec_given = 1;
            continue;
        }
        if (opt >= O_DATA && opt < O_END) c->given |= FLAG(opt);
        switch (opt) {
        case O_DATA: c->data = optarg; break;
        case O_ARCH: c->arch = optarg; break;
        case O_HEAD:
            if (icn_head_parse(optarg, &t->head)) icn_die(2, "--head: '%s' is not softmax or ova", optarg);
            break;
        case O_CLASSES: c->classes = (int)icn_parse_long("--classes", optarg, 1, 100000); break;
        case O_STEPS: t->steps = icn_parse_long("--steps", optarg, 1, 1L << 40); break;
        case O_EPOCHS: c->epochs = icn_parse_double("--epochs", optarg, 1e-6, 1e6); break;
        case O_BATCH: t->batch = (int)icn_parse_long("--batch", optarg, 1, 65536); break;
        case O_LR: t->lr = icn_parse_double("--lr", optarg, 0, 100); break;
        case O_MOMENTUM: t->momentum = icn_parse_double("--momentum", optarg, 0, 0.9999); break;
        case O_WD: t->weight_decay = icn_parse_double("--weight-decay", optarg, 0, 1); break;
        case O_DECAY_AT: t->n_milestones = parse_milestones(optarg, t->milestones); break;
        case O_DECAY_FACTOR: t->decay_factor = icn_parse_double("--decay-factor", optarg, 0, 1); break;
        case O_SMOOTH: t->smoothing = icn_parse_double("--label-smoothing", optarg, 0, 1); break;
        case O_CLIP: t->clip_grad = icn_parse_double("--clip-grad", optarg, 0, 1e30); break;
        case O_SEED: t->seed = (uint64_t)icn_parse_long("--seed", optarg, 0, INT64_MAX); break;
        case O_AUGMENT: t->augment = 1; break;
        case O_OUT: c->out = optarg; break;
        case O_CKPT: t->checkpoint = optarg; break;
        case O_CKPT_EVERY: t->checkpoint_every = icn_parse_long("--checkpoint-every", optarg, 1, 1L << 40); break;
        case O_RESUME: t->resume = 1; break;
        case O_NEW_SETTINGS: t->new_settings = 1; break;
        case O_VAL: c->val = optarg; break;
        case O_KEEP_BEST: c->train.keep_best = optarg; break;
        case O_EVAL_EVERY: t->eval_every = icn_parse_long("--eval-every", optarg, 1, 1L << 40); break;
        case O_METRICS: c->metrics = optarg; break;
        case O_THREADS: c->threads = (int)icn_parse_long("--threads", optarg, 1, 1024); break;
        case O_QUIET: t->quiet = 1; break;
        case O_MODEL: c->model = optarg; break;
        case O_INTRO: c->introspective = 1; break;
        case O_EVERY: c->every = icn_parse_double("--every", optarg, 0.001, 1e6); break;
        case O_COUNT: c->count = icn_parse_long("--count", optarg, 1, 1L << 40); break;
        case O_BUMP: c->bump = 1; break;
        case O_INIT_STEPS: c->intro.initial_steps = icn_parse_long("--initial-steps", optarg, 0, 1L << 40); break;
        case O_ROUNDS: c->intro.rounds = (int)icn_parse_long("--rounds", optarg, 0, 100000); break;
        case O_ROUND_STEPS: c->intro.round_steps = icn_parse_long("--round-steps", optarg, 1, 1L << 40); break;
        case O_PER_CLASS: c->intro.per_class = (int)icn_parse_long("--per-class", optarg, 1, 1L << 24); break;
        case O_ALPHA: c->intro.alpha = icn_parse_double("--alpha", optarg, 0, 1000); break;
        case O_PN_BATCH: c->intro.pn_batch = (int)icn_parse_long("--pn-batch", optarg, 1, 65536); break;
        case O_PN_RECENT: c->intro.pn_recent = icn_parse_double("--pn-recent", optarg, 0, 1); break;
        case O_BN_PSEUDO:
            if (icn_bn_pseudo_parse(optarg, &c->intro.bn_pseudo))
                icn_die(2, "--bn-pseudo: '%s' is not mixed, separate or frozen", optarg);
            break;
        case O_ASYNC_ROUNDS: c->intro.async = 1; break;
        case O_NO_PREFETCH: c->intro.prefetch = 0; break;
        case O_PUBLISH: c->intro.publish = optarg; break;
        case O_SNAPREQ: c->intro.snapshot_requests = optarg; break;
        case O_POOL: c->intro.pool = optarg; break;
        case O_WAIT: c->intro.wait_timeout = icn_parse_double("--wait-timeout", optarg, 0.1, 1e9); break;
        }
    }
    icn_no_operands(argc, argv, NULL);
}

static int max_label(const icn_batch *b) {
    int m = -1;
    for (int64_t i = 0; i < b->n; i++)
        if (b->y[i] > m) m = b->y[i];
    return m;
}

static int cmd_train(cli *c) {
    char err[ICN_ERRLEN];
    /* round flags are accepted by a plain run, so a baseline can take its ICN run's flags as they are */
    only_flags(c, "train", ~(FLAG(O_MODEL) | FLAG(O_EVERY) | FLAG(O_COUNT) | FLAG(O_BUMP)));
    if ((c->given & FLAG(O_SNAPREQ)) && !c->introspective)
        icn_die(2, "train: --snapshot-requests is for --introspective (the only training that publishes)");
    if (!c->out) icn_die(2, "train: --out MODEL is required");
    if (c->sec_given && !c->introspective) icn_die(2, "train: keys are for --introspective (the only training with sockets)");
    icn_security_apply(&c->sec); /* key files are checked before the data is read */
    if (c->train.smoothing > 0 && c->train.head != ICN_HEAD_SOFTMAX)
        icn_die(2, "train: --label-smoothing is for the softmax head, not --head %s", icn_head_name(c->train.head));
    icn_batch data = {0}, val = {0};
    if (icn_batch_read_images(c->data, &data, err, sizeof err)) icn_die(1, "%s", err);
    if (!data.y) icn_die(1, "%s: the tensor stream has no labels", c->data);
    int classes = c->classes ? c->classes : max_label(&data) + 1;
    /* one class is the binary formulation (Eq. 5): the positives against pseudo-negatives */
    if (classes < 2 && !(classes == 1 && c->train.head == ICN_HEAD_OVA && c->introspective))
        icn_die(1, "%s: labels span fewer than 2 classes (use --classes; one class needs --head ova --introspective)",
                c->data);
    icn_train_opts *t = &c->train;
    if (t->clip_grad < 0) t->clip_grad = c->introspective ? ICN_INTROSPECT_CLIP_GRAD : 0;
    if (c->epochs > 0) t->steps = (int64_t)(c->epochs * (double)data.n / t->batch + 0.999999);
    if (t->keep_best && !c->val) icn_die(2, "train: --keep-best needs --val (the error that picks the model)");
    if (c->introspective) t->steps = icn_introspect_total_steps(&c->intro);
    if (c->val) {
        if (icn_batch_read_images(c->val, &val, err, sizeof err)) icn_die(1, "%s", err);
        t->val = &val;
        if (!t->eval_every) t->eval_every = t->steps / 10 > 0 ? t->steps / 10 : 1;
    }
    icn_metrics metrics;
    if (icn_metrics_open(&metrics, c->metrics, err, sizeof err)) icn_die(1, "%s", err);
    t->metrics = &metrics;
    t->out = c->out;
    icn_net net;
    if (icn_net_build(&net, c->arch, data.h, data.w, data.c, classes, err, sizeof err)) icn_die(2, "--arch: %s", err);
    icn_net_init(&net, t->seed);
    if (!t->quiet)
        icn_warn("%straining %s (%zu parameters, %s head) on %d images for %lld steps of %d, %d threads", c->introspective ? "introspective " : "", net.arch,
                 net.n_params, icn_head_name(t->head), data.n, (long long)t->steps, t->batch, icn_threads());
    double t0 = icn_now();
    if (c->introspective) {
        int failed = icn_train_introspective(&net, &data, t, &c->intro, err, sizeof err);
        icn_zmq_term(); /* sockets are closed: this waits (LINGER-bounded) until "stop" is out */
        if (failed) icn_die(1, "%s", err);
    } else if (icn_train_classifier(&net, &data, t, err, sizeof err)) {
        icn_die(1, "%s", err);
    }
    icn_metrics_printf(&metrics, "{\"event\":\"done\",\"steps\":%lld,\"seconds\":%.3f}", (long long)t->steps,
                       icn_now() - t0);
    if (!t->quiet) icn_warn("wrote %s (%.1f s)", c->out, icn_now() - t0);
    icn_metrics_close(&metrics);
    icn_net_free(&net);
    icn_batch_free(&data);
    icn_batch_free(&val);
    return 0;
}

static int cmd_predict(cli *c) {
    char err[ICN_ERRLEN];
    only_flags(c, "predict", FLAG(O_MODEL) | FLAG(O_DATA) | FLAG(O_OUT) | FLAG(O_THREADS) | FLAG(O_QUIET));
    if (!c->model) icn_die(2, "predict: --model MODEL is required");
    icn_net net;
    icn_model_meta meta;
    if (icn_model_load(c->model, &net, &meta, NULL, NULL, err, sizeof err)) icn_die(1, "%s", err);
    icn_batch data = {0};
    if (icn_batch_read_images(c->data, &data, err, sizeof err)) icn_die(1, "%s", err);
    if (icn_check_images(&net, &data, c->data, err, sizeof err)) icn_die(1, "%s", err);
    icn_out dst; /* fileio.h: atomic for a file, in place for stdout, a device or a FIFO */
    if (icn_out_open(&dst, c->out ? c->out : "-", err, sizeof err)) icn_die(1, "--out %s", err);
    int ofd = dst.fd == 1 ? 1 : dup(dst.fd);
    FILE *out = ofd == 1 ? stdout : ofd >= 0 ? fdopen(ofd, "w") : NULL;
    if (!out) icn_die(1, "--out %s: cannot open for writing: %s", dst.target, strerror(errno));
    icn_work *w = icn_work_new(&net, 256);
    float *logits = xmalloc((size_t)data.n * net.classes * sizeof(float));
    icn_predict(&net, w, data.x, data.n, logits);
    float *dz = xmalloc((size_t)net.classes * sizeof(float));
    for (int64_t i = 0; i < data.n; i++) {
        const float *z = logits + (size_t)i * net.classes;
        int k = icn_argmax(z, net.classes);
        /* score: the softmax probability, or the class's own sigmoid under one-vs-all */
        double score;
        if (meta.head == ICN_HEAD_OVA) score = icn_sigmoid(z[k]);
        else {
            int32_t label = k;
            score = exp(-icn_loss_softmax(z, &label, NULL, 1, net.classes, 0, dz));
        }
        if (data.y) fprintf(out, "%d %.6f %d\n", k, score, data.y[i]);
        else fprintf(out, "%d %.6f -\n", k, score);
    }
    if (out == stdout ? fflush(out) != 0 : fclose(out) != 0) {
        icn_out_abort(&dst);
        icn_die(1, "--out %s: write failed", c->out ? c->out : "stdout");
    }
    if (icn_out_commit(&dst, err, sizeof err)) icn_die(1, "--out %s", err);
    free(logits), free(dz);
    icn_work_free(w);
    icn_net_free(&net);
    icn_batch_free(&data);
    return 0;
}

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { (void)sig; stop_requested = 1; }

static int cmd_publish(cli *c) {
    char err[ICN_ERRLEN];
    only_flags(c, "publish", FLAG(O_MODEL) | FLAG(O_PUBLISH) | FLAG(O_SNAPREQ) | FLAG(O_EVERY) | FLAG(O_COUNT) |
                                 FLAG(O_BUMP) | FLAG(O_METRICS) | FLAG(O_THREADS) | FLAG(O_QUIET));
    if (!c->model) icn_die(2, "publish: --model MODEL is required");
    icn_net net;
    icn_model_meta meta;
    if (icn_model_load(c->model, &net, &meta, NULL, NULL, err, sizeof err)) icn_die(1, "%s", err);
    icn_metrics metrics;
    if (icn_metrics_open(&metrics, c->metrics, err, sizeof err)) icn_die(1, "%s", err);
    icn_security_apply(&c->sec);
    if (c->count && !c->every) icn_die(2, "publish: --count needs --every (without it the model is published once)");
    if (c->bump && !c->every) icn_die(2, "publish: --bump needs --every (without it the model is published once)");
    icn_publisher *pub = icn_publisher_open(c->intro.publish, c->intro.snapshot_requests, &metrics, err, sizeof err);
    if (!pub) icn_die(1, "%s", err);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (!c->train.quiet) {
        if (c->every) icn_warn("publishing %s on %s every %g s", c->model, c->intro.publish, c->every);
        else icn_warn("publishing %s on %s (once, then to each synthesizer that asks at %s)", c->model,
                      c->intro.publish, icn_publisher_requests(pub));
    }
    /* A steady period: publication i is due at start + i*every on the monotonic clock, however
     * long serializing and sending took (a relative sleep after each send would drift by that).
     * Without --every: once, then only to those who ask, until a signal. The first publication
     * is the model file's generation, --bump adds one for each later one. */
    double start = icn_now();
    for (int64_t i = 0; !stop_requested && (!c->count || i <= c->count); i++) {
        double due = start + (double)i * c->every; /* i == count: the end of the last period, then exit */
        while (!stop_requested && (!c->every ? i > 0 : icn_now() < due)) {
            double left = c->every ? due - icn_now() : 1.0;
            int ms = left > 1.0 ? 1000 : left > 0 ? (int)(left * 1000) + 1 : 0;
            if (icn_publisher_serve(pub, ms, err, sizeof err) < 0) icn_die(1, "%s", err);
        }
        if (stop_requested || (c->count && i == c->count)) break;
        if (icn_publisher_snapshot(pub, &net, &meta, err, sizeof err)) icn_die(1, "%s", err);
        if (c->bump) meta.generation++;
    }
    /* the publications are over: synthesizers exit ("stop", and "finished" in the last heartbeat) */
    if (icn_publisher_control(pub, ICN_MSG_STOP, meta.generation, err, sizeof err)) icn_die(1, "%s", err);
    icn_publisher_close(pub);
    icn_metrics_close(&metrics);
    icn_zmq_term();
    icn_net_free(&net);
    return 0;
}

/* The three commands share one flag parser (each refuses the others' flags: only_flags). */
static int run_command(int argc, char **argv, int (*cmd)(cli *)) {
    cli c = {0};
    parse(argc, argv, &c);
    icn_runtime_init(c.threads);
    return cmd(&c);
}
static int run_train(int argc, char **argv) { return run_command(argc, argv, cmd_train); }
static int run_predict(int argc, char **argv) { return run_command(argc, argv, cmd_predict); }
static int run_publish(int argc, char **argv) { return run_command(argc, argv, cmd_publish); }

int main(int argc, char **argv) {
    icn_set_progname(argv[0]);
    static const icn_command cmds[] = {{"train", run_train}, {"predict", run_predict}, {"publish", run_publish}};
    return icn_dispatch(argc, argv, cmds, (int)(sizeof cmds / sizeof cmds[0]), usage);
}
