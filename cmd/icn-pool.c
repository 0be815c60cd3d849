/* icn-pool: the durable pool of pseudo-negatives between synthesizers and the trainer
 * (icn-pool(1)). Thin by design: flags and sockets here, the store in lib/pool.c, the
 * protocol in lib/transport.c, the serving loop in lib/pool_server.c. */
#include "pool.h"
#include "pool_server.h"
#include "protocol.h"
#include "sender.h"
#include "transport.h"
#include "fileio.h"
#include "util.h"
#include "wire.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>


static const char usage_main[] =
    "usage: icn-pool serve --store FILE [OPTIONS]\n"
    "       icn-pool dump --store FILE [OPTIONS]\n"
    "       icn-pool stats (--store FILE | --connect ENDPOINT) [--json]\n"
    "       icn-pool push [--connect ENDPOINT] [--file FILE|-] [OPTIONS]\n"
    "       icn-pool end --connect ENDPOINT [--begin] [OPTIONS]\n"
    "       icn-pool check --store FILE [--quiet]\n"
    "       icn-pool repair --store FILE --out NEW [--quiet]\n"
    "       icn-pool keygen NAME\n"
    "A durable pool of pseudo-negatives: synthesizers send them in (each batch acknowledged once\n"
    "stored), the trainer fetches them by\n"
    "offset (icn-pool(1), icn-wire(5) POOL PROTOCOL). 'icn-pool COMMAND --help' for each command.\n";

static const char usage_serve[] =
    "usage: icn-pool serve --store FILE [OPTIONS]\n"
    "Store the pseudo-negatives that arrive on the intake, acknowledging each batch once it is\n"
    "stored (icn-wire(5) DELIVERY); answer \"fetch\" and \"stats\" on REP.\n"
    "  --store FILE       the pool file (created if missing; a torn tail is cut off)\n"
    "  --shape HxWxC      the image shape every record must have (required for a new store;\n"
    "                     for an existing one it must be the store's)\n"
    "  --classes K        pseudo-negatives of classes 0 .. K-1 only (with --shape)\n"
    "  --range LO,HI      every pixel in [LO, HI] (with --shape; default -1,1: the data's range)\n"
    "  --quota N          at most N records per peer and snapshot generation (with --shape;\n"
    "                     default 0: none)\n"
    "  --intake ENDPOINT  where batches arrive, each acknowledged once stored (default\n"
    "                     " ICN_EP_POOL_PUSH "; --pull is its old name)\n"
    "  --rep ENDPOINT     where requests arrive (default " ICN_EP_POOL_REQ ")\n"
    "  --fsync POLICY     batch (default: after each batch), always (after each record),\n"
    "                     none (leave it to the kernel)\n"
    "  --log FILE         messages to FILE (appended, time-stamped) instead of stderr\n"
    "  --quiet            no start, stop and 10-second status lines (rejections still shown)\n"
    ICN_SECURITY_USAGE
    "  --help             this text\n"
    "SIGINT/SIGTERM: finish the current write, fsync, close, exit 0.\n";

static const char usage_dump[] =
    "usage: icn-pool dump --store FILE [OPTIONS]\n"
    "Write stored records as a tensor stream of \"batch\" frames (1000 images each) with labels\n"
    "and provenance.\n"
    "  --store FILE       the pool file (read-only: it may be being served)\n"
    "  --from N           first record offset (default 0)\n"
    "  --count N          records [N, N+count) only (default: to the end)\n"
    "  --generation G     keep only records synthesized from snapshot generation G\n"
    "  --class K          keep only pseudo-negatives of class K (label -(K+1))\n"
    "  --out FILE|-       output, written atomically when a file (default -: stdout)\n"
    "  --quiet            no summary line on stderr\n"
    "  --help             this text\n";

static const char usage_stats[] =
    "usage: icn-pool stats (--store FILE | --connect ENDPOINT) [--json]\n"
    "Count the stored pseudo-negatives: total, per class, per generation, per producer.\n"
    "  --store FILE       read the pool file (read-only)\n"
    "  --connect ENDPOINT ask a running 'icn-pool serve' on its REP endpoint (also reports\n"
    "                     how many frames it rejected)\n"
    "  --timeout MS       how long to wait for the answer (default 5000)\n"
    "  --json             one JSON object instead of text lines\n"
    "  --secret-key FILE, --server-key FILE: CURVE keys for --connect (see icn-pool serve --help)\n"
    "  --help             this text\n";

static const char usage_end[] =
    "usage: icn-pool end --connect ENDPOINT [--begin] [OPTIONS]\n"
    "Tell a running 'icn-pool serve' that the run has ended: from then on it refuses every new\n"
    "batch made from a run's snapshots (generation >= 1; seeds of generation 0 are taken) with\n"
    "\"ended\" (a synthesizer that gets that answer exits 0), until a run begins\n"
    "(--begin, or a trainer that starts on it). The trainer says it itself when it finishes or\n"
    "fails; this is for a run whose trainer was killed. Only the head may: the pool's own key.\n"
    "Prints the pool's stats as 'icn-pool stats' does.\n"
    "  --connect ENDPOINT the pool's REP endpoint\n"
    "  --begin            a run begins: take batches again\n"
    "  --timeout MS       how long to wait for the answer (default 5000)\n"
    "  --json             one JSON object instead of text lines\n"
    "  --secret-key FILE, --server-key FILE: CURVE keys (the head's: see icn-pool serve --help)\n"
    "  --help             this text\n";

static const char usage_push[] =
    "usage: icn-pool push [--connect ENDPOINT] [--file FILE|-] [OPTIONS]\n"
    "Send the batches of a tensor stream to a pool's intake (to seed a pool, and to test one),\n"
    "each with this process's producer number and a sequence number; the pool acknowledges\n"
    "each once it is stored. Up to --window batches are in flight; after a second without an\n"
    "answer they are sent again on a new connection (the pool stores each once). Exits 0 only\n"
    "when every batch was acknowledged; otherwise 1 with one line saying how many were not.\n"
    "  --connect ENDPOINT the pool's intake endpoint (default " ICN_EP_POOL_PUSH ")\n"
    "  --file FILE|-      input (default -: stdin)\n"
    "  --raw              send the whole input unchecked as ONE frame, e.g. garbage, and print\n"
    "                     the pool's answer (exit 0 only when it was acknowledged)\n"
    "  --as-negatives K   relabel every image as a pseudo-negative of class K (label -(K+1))\n"
    "                     with provenance --generation, --producer, steps 0, logit 0,\n"
    "                     reached 0: seeds a pool with real negatives\n"
    "  --generation G     provenance generation for --as-negatives (default 0)\n"
    "  --producer P       provenance producer id for --as-negatives (default 0)\n"
    "  --window N         batches in flight, unacknowledged, at most (default 64)\n"
    "  --timeout MS       give up when no answer has come for MS (default 5000)\n"
    "  --secret-key FILE, --server-key FILE: CURVE keys (see icn-pool serve --help)\n"
    "  --quiet            no summary line on stderr\n"
    "  --help             this text\n";

static const char usage_keygen[] =
    "usage: icn-pool keygen NAME\n"
    "Make a CURVE key pair: NAME.key (the secret half, mode 0600: give it to --secret-key of\n"
    "the process it identifies, and to nobody else) and NAME.pub (the public half: copy it\n"
    "into the head's --allow directory, or give it to workers as --server-key). Neither file\n"
    "may exist already. Prints the public key.\n";

static const char usage_check[] =
    "usage: icn-pool check --store FILE [--quiet]\n"
    "Read the whole store and report every damaged span by byte offset, and a torn tail (an\n"
    "append that never finished). Exit 0 when nothing is damaged (a torn tail is not damage),\n"
    "1 when something is, or the store cannot be read. Read-only.\n"
    "  --store FILE       the pool file\n"
    "  --quiet            only the damage, no summary\n"
    "  --help             this text\n";

static const char usage_repair[] =
    "usage: icn-pool repair --store FILE --out NEW [--quiet]\n"
    "Copy every intact committed record of a (damaged) store, in order, into the NEW store (which\n"
    "must not exist), with the same contract and a fresh UUID. The old store is never written; the\n"
    "records of a torn tail were never acknowledged and are not copied. A trainer checkpoint\n"
    "names its store's UUID: resume against the new store with a fresh run.\n"
    "  --store FILE       the damaged pool file\n"
    "  --out NEW          the new pool file\n"
    "  --quiet            no lines for the damage and no summary\n"
    "  --help             this text\n";

static const char *g_cmd = "";

/* getopt_long over a subcommand's arguments, with our own one-line messages. */
static int next_opt(int argc, char **argv, const struct option *longs, const char *usage) {
    g_cmd = argv[0]; /* icn_dispatch: the subcommand's own name */
    return icn_getopt(argc, argv, longs, usage, g_cmd);
}

/* "28x28x1" */
static void parse_shape(const char *s, icn_pool_contract *k) {
    char tail;
    if (sscanf(s, "%dx%dx%d%c", &k->h, &k->w, &k->c, &tail) != 3 || k->h < 1 || k->w < 1 || k->c < 1)
        icn_usage_error(g_cmd, "--shape: '%s' is not HxWxC with each >= 1 (e.g. 28x28x1)", s);
}

static void parse_range(const char *s, icn_pool_contract *k) {
    char *end;
    k->lo = strtof(s, &end);
    if (*end != ',') icn_usage_error(g_cmd, "--range: '%s' is not LO,HI (e.g. -1,1)", s);
    k->hi = strtof(end + 1, &end);
    if (*end || !(k->lo < k->hi)) icn_usage_error(g_cmd, "--range: '%s' is not LO,HI with LO < HI (e.g. -1,1)", s);
}

/* SIGINT and SIGTERM set g_interrupted: serve stops cleanly, push stops sending and drains. */
static volatile sig_atomic_t g_interrupted;
static void on_interrupt(int sig) {
    (void)sig;
    g_interrupted = 1;
}

static void on_interrupt_install(void) {
    struct sigaction sa = {.sa_handler = on_interrupt}; /* no SA_RESTART: blocking calls return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int cmd_serve(int argc, char **argv) {
    enum { O_STORE = 256, O_PULL, O_REP, O_FSYNC_POLICY, O_LOG, O_QUIET, O_SHAPE, O_CLASSES, O_RANGE, O_QUOTA };
    static const struct option longs[] = {
        {"store", required_argument, 0, O_STORE}, {"pull", required_argument, 0, O_PULL},
        {"intake", required_argument, 0, O_PULL}, {"rep", required_argument, 0, O_REP},
        {"fsync", required_argument, 0, O_FSYNC_POLICY}, {"log", required_argument, 0, O_LOG},
        {"quiet", no_argument, 0, O_QUIET}, {"shape", required_argument, 0, O_SHAPE},
        {"classes", required_argument, 0, O_CLASSES}, {"range", required_argument, 0, O_RANGE},
        {"quota", required_argument, 0, O_QUOTA}, {"help", no_argument, 0, 'h'}, ICN_SECURITY_OPTIONS, {0, 0, 0, 0}};
    icn_security sec = {0};
    icn_pool_server_opts o = {.intake = ICN_EP_POOL_PUSH, .rep = ICN_EP_POOL_REQ, .fsync = ICN_FSYNC_BATCH};
    icn_pool_contract k = icn_pool_contract_make(0, 0, 0, 0);
    const char *log_path = NULL;
    int c, shape = 0, extra = 0;
    while ((c = next_opt(argc, argv, longs, usage_serve)) != -1) {
        if (icn_security_option(c, optarg, &sec)) continue;
        switch (c) {
        case O_SHAPE: parse_shape(optarg, &k), shape = 1; break;
        case O_CLASSES: k.classes = (int32_t)icn_parse_long("--classes", optarg, 1, ICN_POOL_CLASSES_MAX); break;
        case O_RANGE: parse_range(optarg, &k), extra = 1; break;
        case O_QUOTA: k.quota_per_generation = icn_parse_long("--quota", optarg, 0, LONG_MAX), extra = 1; break;
        case O_STORE: o.store = optarg; break;
        case O_PULL: o.intake = optarg; break;
        case O_REP: o.rep = optarg; break;
        case O_FSYNC_POLICY:
            if (icn_fsync_parse(optarg, &o.fsync)) icn_usage_error(g_cmd, "--fsync: '%s' is not batch, always or none", optarg);
            break;
        case O_LOG: log_path = optarg; break;
        case O_QUIET: o.quiet = 1; break;
        }
    }
    icn_no_operands(argc, argv, g_cmd);
    if (!o.store) icn_usage_error(g_cmd, "--store FILE is required");
    if (shape != (k.classes > 0)) icn_usage_error(g_cmd, "--shape and --classes go together");
    if (extra && !shape) icn_usage_error(g_cmd, "--range and --quota go with --shape and --classes");
    if (shape) o.contract = &k;
    if (sec.server_key) icn_usage_error(g_cmd, "--server-key is for clients: the pool admits --allow's keys");
    if (sec.secret_key && !sec.allow_dir) icn_usage_error(g_cmd, "--secret-key needs --allow DIR (the peers' public keys)");
    if (log_path && !(o.log = fopen(log_path, "a"))) icn_die(1, "--log %s: %s", log_path, strerror(errno));

    icn_security_apply(&sec);
    on_interrupt_install();
    signal(SIGPIPE, SIG_IGN);
    char err[2 * ICN_ERRLEN];
    int rc = icn_pool_serve(&o, &g_interrupted, err, sizeof err);
    icn_zmq_term(); /* the sockets are closed: the context (and the ZAP handler) go too */
    if (rc) {
        if (o.log) fprintf(o.log, "%s: %s\n", icn_progname, err), fflush(o.log);
        icn_die(1, "%s", err);
    }
    if (o.log) fclose(o.log);
    return 0;
}

/* ---------------------------------------------------------------- dump */

typedef struct {
    int fd;
    icn_batch pending; /* images waiting for a full frame */
    int64_t written;
} dumper;

static icn_out g_out = {.fd = -1}; /* dump's output: its temporary file is removed if we die before committing */
static void abort_out(void) { icn_out_abort(&g_out); }

static void flush_frames(dumper *d, int all, const char *out) {
    char e[ICN_ERRLEN];
    icn_batch *b = &d->pending;
    int32_t k = all ? b->n : b->n - b->n % 1000;
    if (k <= 0) return;
    icn_batch v = *b;
    v.n = k;
    if (icn_batch_write(d->fd, &v, 1000, e, sizeof e)) icn_die(1, "%s: %s", out, e);
    d->written += k;
    size_t dim = icn_batch_dim(b), rest = (size_t)(b->n - k);
    memmove(b->x, b->x + (size_t)k * dim, rest * dim * sizeof(float));
    memmove(b->y, b->y + k, rest * sizeof(int32_t));
    memmove(b->prov, b->prov + k, rest * sizeof(icn_provenance));
    b->n -= k;
}

/* dump's filter: a generation and/or a class (by_gen, by_cls say which). */
typedef struct {
    int by_gen, by_cls;
    int64_t gen, cls;
} dump_filter;

static int dump_keeps(const icn_batch *b, int32_t j, void *ctx) {
    const dump_filter *f = ctx;
    return !(f->by_gen && b->prov[j].generation != f->gen) && !(f->by_cls && b->y[j] != -(int32_t)f->cls - 1);
}

static int cmd_dump(int argc, char **argv) {
    enum { O_STORE = 256, O_FROM, O_COUNT, O_GEN, O_CLASS, O_OUT, O_QUIET };
    static const struct option longs[] = {
        {"store", required_argument, 0, O_STORE}, {"from", required_argument, 0, O_FROM},
        {"count", required_argument, 0, O_COUNT}, {"generation", required_argument, 0, O_GEN},
        {"class", required_argument, 0, O_CLASS}, {"out", required_argument, 0, O_OUT},
        {"quiet", no_argument, 0, O_QUIET}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *store = NULL, *out = "-";
    int64_t from = 0, count = -1, gen = 0, cls = 0;
    int by_gen = 0, by_cls = 0, quiet = 0, c;
    while ((c = next_opt(argc, argv, longs, usage_dump)) != -1) {
        switch (c) {
        case O_STORE: store = optarg; break;
        case O_FROM: from = icn_parse_long("--from", optarg, 0, LONG_MAX); break;
        case O_COUNT: count = icn_parse_long("--count", optarg, 0, LONG_MAX); break;
        case O_GEN: gen = icn_parse_long("--generation", optarg, INT32_MIN, INT32_MAX), by_gen = 1; break;
        case O_CLASS: cls = icn_parse_long("--class", optarg, 0, INT32_MAX - 1), by_cls = 1; break;
        case O_OUT: out = optarg; break;
        case O_QUIET: quiet = 1; break;
        }
    }
    icn_no_operands(argc, argv, g_cmd);
    if (!store) icn_usage_error(g_cmd, "--store FILE is required");
    char err[2 * ICN_ERRLEN];
    icn_pool *p;
    if (icn_pool_open(store, ICN_POOL_READ, NULL, &p, err, sizeof err)) icn_die(1, "%s", err);
    if (icn_pool_note(p)[0]) icn_warn("warning: %s", icn_pool_note(p));
    int64_t total = icn_pool_count(p), end = count < 0 || count > total - from ? total : from + count;
    if (end < from) end = from; /* --from past the end: nothing */

    if (icn_out_open(&g_out, out, err, sizeof err)) icn_die(1, "--out %s", err);
    atexit(abort_out);
    dumper d = {.fd = g_out.fd};
    for (int64_t i = from; i < end; i += 1000) {
        icn_batch b;
        if (icn_pool_read(p, i, end - i < 1000 ? end - i : 1000, &b, err, sizeof err)) icn_die(1, "%s", err);
        dump_filter want = {by_gen, by_cls, gen, cls};
        if (by_gen || by_cls) icn_batch_filter(&b, dump_keeps, &want);
        if (icn_batch_append(&d.pending, &b, err, sizeof err)) icn_die(1, "%s: %s", store, err);
        icn_batch_free(&b);
        flush_frames(&d, 0, out);
    }
    flush_frames(&d, 1, out);
    icn_batch_free(&d.pending);
    if (icn_out_commit(&g_out, err, sizeof err)) icn_die(1, "--out %s", err);
    icn_pool_close(p, err, sizeof err);
    if (!quiet)
        icn_warn("dumped %" PRId64 " records (offsets %" PRId64 "..%" PRId64 " of %" PRId64 "%s) to %s", d.written, from,
                 end, total, by_gen || by_cls ? ", filtered" : "", out);
    return 0;
}

/* ---------------------------------------------------------------- stats */

static void print_tallies(const char *what, const icn_pool_tally *v, size_t n, int json) {
    if (json) printf(",\"per_%s\":{", what);
    for (size_t i = 0; i < n; i++) {
        if (json) printf("%s\"%" PRId64 "\":%" PRId64, i ? "," : "", v[i].key, v[i].count);
        else printf("%s %" PRId64 ": %" PRId64 "\n", what, v[i].key, v[i].count);
    }
    if (json) printf("}");
}

/* stats, or end (kind ICN_MSG_END): both print the pool's stats; end sends "end" or "begin"
 * instead of "stats" and takes no --store. */
static int stats_or_end(int argc, char **argv, icn_msg_kind kind, const char *usage) {
    enum { O_STORE = 256, O_CONNECT, O_TIMEOUT, O_JSON, O_BEGIN };
    static const struct option longs[] = {
        {"store", required_argument, 0, O_STORE}, {"connect", required_argument, 0, O_CONNECT},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"json", no_argument, 0, O_JSON}, {"begin", no_argument, 0, O_BEGIN},
        {"help", no_argument, 0, 'h'}, ICN_SECURITY_OPTIONS, {0, 0, 0, 0}};
    icn_security sec = {0};
    const char *store = NULL, *ep = NULL;
    int json = 0, timeout = 5000, c, begin = 0;
    while ((c = next_opt(argc, argv, longs, usage)) != -1) {
        if (icn_security_option(c, optarg, &sec)) continue;
        switch (c) {
        case O_STORE: store = optarg; break;
        case O_CONNECT: ep = optarg; break;
        case O_TIMEOUT: timeout = (int)icn_parse_long("--timeout", optarg, 1, 3600000); break;
        case O_JSON: json = 1; break;
        case O_BEGIN: begin = 1; break;
        }
    }
    icn_no_operands(argc, argv, g_cmd);
    if (kind == ICN_MSG_STATS_REQUEST && begin) icn_usage_error(g_cmd, "--begin goes with 'icn-pool end'");
    if (kind == ICN_MSG_END && store) icn_usage_error(g_cmd, "a run is ended on a running pool: --connect, not --store");
    if (kind == ICN_MSG_END && !ep) icn_usage_error(g_cmd, "give --connect ENDPOINT (the pool's REP)");
    if (!store == !ep) icn_usage_error(g_cmd, "give one of --store FILE or --connect ENDPOINT");
    if (sec.allow_dir) icn_usage_error(g_cmd, "--allow is for servers");
    if (store && (sec.secret_key || sec.insecure)) icn_usage_error(g_cmd, "keys go with --connect");
    icn_security_apply(&sec);
    char err[2 * ICN_ERRLEN];
    icn_pool_counts cn;
    int64_t rejected = -1, failures = 0; /* unknown for a file */
    int ended = 0;
    if (store) {
        icn_pool *p;
        if (icn_pool_open(store, ICN_POOL_READ, NULL, &p, err, sizeof err)) icn_die(1, "%s", err);
        if (icn_pool_note(p)[0]) icn_warn("warning: %s", icn_pool_note(p));
        icn_pool_stats(p, &cn);
        icn_pool_close(p, err, sizeof err);
    } else {
        void *req = NULL;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (kind == ICN_MSG_END) icn_pack_run_request(&sb, begin ? ICN_MSG_BEGIN : ICN_MSG_END);
        else icn_pack_stats_request(&sb);
        icn_msg m;
        int r = icn_request(&req, ep, &sb, timeout, 16 << 20, ICN_MSG_STATS, &m, err, sizeof err);
        if (r <= 0) icn_die(1, "%s", err);
        cn = m.counts, rejected = m.rejected, failures = m.accept_failures, ended = m.ended; /* cn owns the counts now */
        msgpack_sbuffer_destroy(&sb);
        icn_zmq_close(req);
        icn_zmq_term();
    }
    if (json) {
        printf("{\"uuid\":\"%s\",\"total\":%" PRId64, cn.uuid, cn.total);
        if (rejected >= 0)
            printf(",\"rejected\":%" PRId64 ",\"duplicates\":%" PRId64 ",\"accept_failures\":%" PRId64
                   ",\"ended\":%s",
                   rejected, cn.duplicates, failures, ended ? "true" : "false");
    } else {
        if (cn.uuid[0]) printf("uuid: %s\n", cn.uuid);
        printf("total: %" PRId64 "\n", cn.total);
        if (rejected >= 0)
            printf("rejected: %" PRId64 "\nduplicates: %" PRId64 "\nfailed accepts: %" PRId64 "\nrun: %s\n", rejected,
                   cn.duplicates, failures, ended ? "ended" : "open");
    }
    print_tallies("class", cn.per_class, cn.n_class, json);
    print_tallies("generation", cn.per_generation, cn.n_generation, json);
    print_tallies("producer", cn.per_producer, cn.n_producer, json);
    if (json) printf(",\"rejects\":[");
    for (size_t i = 0; i < cn.n_rejects; i++) { /* peer names come from the network: quoted */
        const icn_pool_reject *r = &cn.rejects[i];
        if (json) {
            printf("%s{\"peer\":", i ? "," : "");
            icn_fput_json_string(stdout, r->peer);
            printf(",\"reason\":");
            icn_fput_json_string(stdout, r->reason);
            printf(",\"count\":%" PRId64 "}", r->count);
        } else {
            printf("refused %s from ", r->reason);
            icn_fput_json_string(stdout, r->peer);
            printf(": %" PRId64 "\n", r->count);
        }
    }
    if (json) printf("]}\n");
    icn_pool_counts_free(&cn);
    if (fflush(stdout) != 0) icn_die(1, "stdout: write error");
    return 0;
}

/* ---------------------------------------------------------------- push */

/* Whole input, unchecked, bounded by the frame limit. */
static void read_raw(const char *path, uint8_t **data, size_t *len) {
    char e[ICN_ERRLEN];
    size_t max = icn_max_frame();
    if (strcmp(path, "-") != 0) {
        if (icn_read_file(path, max, data, len, e, sizeof e)) icn_die(1, "%s", e);
        return;
    }
    size_t cap = 65536, n = 0;
    uint8_t *b = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap >= max) icn_die(1, "stdin: more than the frame limit of %zu bytes", max);
            cap = cap * 2 < max ? cap * 2 : max;
            b = xrealloc(b, cap);
        }
        ssize_t k = read(0, b + n, cap - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) icn_die(1, "stdin: read error: %s", strerror(errno));
        if (k == 0) break;
        n += (size_t)k;
    }
    *data = b, *len = n;
}

/* --raw: one frame of whatever bytes, and the pool's one answer. */
static int push_raw(const char *ep, const char *file, int timeout, int quiet) {
    char err[2 * ICN_ERRLEN];
    uint8_t *data, *ans;
    size_t len, alen;
    read_raw(file, &data, &len);
    void *sock = icn_open_sender(ep, err, sizeof err);
    if (!sock) icn_die(1, "--connect: %s", err);
    double t0 = icn_now();
    int r;
    while ((r = icn_zmq_try_send(sock, data, len, err, sizeof err)) == 0 && (icn_now() - t0) * 1000 < timeout &&
           !g_interrupted)
        usleep(10000);
    if (r < 0) icn_die(1, "%s: %s", ep, err);
    if (r == 0) icn_die(1, "no pool at %s took the frame within %d ms", ep, timeout);
    free(data);
    int got = icn_zmq_recv_buf(sock, NULL, timeout, &ans, &alen, err, sizeof err);
    if (got <= 0) icn_die(1, "the frame was not acknowledged: no answer from %s within %d ms", ep, timeout);
    icn_msg m;
    if (icn_msg_decode(ans, alen, ICN_INTAKE_REPLY_KINDS, 0, &m, err, sizeof err)) icn_die(1, "%s: bad answer: %s", ep, err);
    free(ans);
    int acked = m.kind == ICN_MSG_ACK;
    if (!acked) icn_warn("refused by %s: %s", ep, m.text);
    else if (!quiet) icn_warn("acknowledged by %s%s", ep, m.duplicate ? " as a duplicate (stored before, not again)" : "");
    icn_msg_free(&m);
    icn_zmq_close(sock);
    icn_zmq_term();
    return acked ? 0 : 1;
}

typedef struct {
    int64_t refused_shown;
} refusals;

static void on_refused(uint64_t seq, const char *reason, void *ctx) {
    refusals *r = ctx;
    if (r->refused_shown++ < 10) icn_warn("batch %" PRIu64 " refused: %s", seq, reason);
}

/* Decode a batch frame; with neg >= 0, relabel every image as a pseudo-negative of class neg
 * with the given provenance. */
static void frame_batch(const icn_reader *r, const uint8_t *p, size_t n, int64_t frame, int64_t neg, int32_t gen,
                        uint32_t producer, icn_batch *b) {
    char e[ICN_ERRLEN];
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (icn_frame_unpack(p, n, &u, e, sizeof e) || icn_batch_decode(&u.data, b, e, sizeof e))
        icn_die(1, "%s: frame %" PRId64 " at byte %llu: %s", icn_reader_name(r), frame,
                (unsigned long long)icn_reader_offset(r), icn_frame_error_detail(e));
    msgpack_unpacked_destroy(&u);
    if (neg < 0) return;
    if (!b->y) b->y = xmalloc((size_t)b->n * sizeof *b->y);
    free(b->prov);
    b->prov = xcalloc((size_t)b->n, sizeof *b->prov);
    for (int32_t i = 0; i < b->n; i++) {
        b->y[i] = (int32_t)(-neg - 1);
        b->prov[i] = (icn_provenance){.generation = gen, .producer = producer};
    }
}

static int cmd_stats(int argc, char **argv) { return stats_or_end(argc, argv, ICN_MSG_STATS_REQUEST, usage_stats); }
static int cmd_end(int argc, char **argv) { return stats_or_end(argc, argv, ICN_MSG_END, usage_end); }

static int cmd_push(int argc, char **argv) {
    enum { O_CONNECT = 256, O_FILE, O_RAW, O_NEG, O_GEN, O_PROD, O_TIMEOUT, O_WINDOW, O_QUIET };
    static const struct option longs[] = {
        {"connect", required_argument, 0, O_CONNECT}, {"file", required_argument, 0, O_FILE},
        {"raw", no_argument, 0, O_RAW}, {"as-negatives", required_argument, 0, O_NEG},
        {"generation", required_argument, 0, O_GEN}, {"producer", required_argument, 0, O_PROD},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"window", required_argument, 0, O_WINDOW},
        {"quiet", no_argument, 0, O_QUIET}, {"help", no_argument, 0, 'h'}, ICN_SECURITY_OPTIONS, {0, 0, 0, 0}};
    icn_security sec = {0};
    const char *ep = ICN_EP_POOL_PUSH, *file = "-";
    int raw = 0, quiet = 0, c, gen_set = 0, prod_set = 0, timeout = 5000, window = 64;
    int64_t neg = -1, gen = 0, prod = 0;
    while ((c = next_opt(argc, argv, longs, usage_push)) != -1) {
        if (icn_security_option(c, optarg, &sec)) continue;
        switch (c) {
        case O_CONNECT: ep = optarg; break;
        case O_FILE: file = optarg; break;
        case O_RAW: raw = 1; break;
        case O_NEG: neg = icn_parse_long("--as-negatives", optarg, 0, INT32_MAX - 1); break;
        case O_GEN: gen = icn_parse_long("--generation", optarg, INT32_MIN, INT32_MAX), gen_set = 1; break;
        case O_PROD: prod = icn_parse_long("--producer", optarg, 0, UINT32_MAX), prod_set = 1; break;
        case O_TIMEOUT: timeout = (int)icn_parse_long("--timeout", optarg, 1, 3600000); break;
        case O_WINDOW: window = (int)icn_parse_long("--window", optarg, 1, 4096); break;
        case O_QUIET: quiet = 1; break;
        }
    }
    icn_no_operands(argc, argv, g_cmd);
    if (raw && neg >= 0) icn_usage_error(g_cmd, "--raw sends bytes unchanged: it cannot go with --as-negatives");
    if ((gen_set || prod_set) && neg < 0) icn_usage_error(g_cmd, "--generation and --producer go with --as-negatives");
    if (sec.allow_dir) icn_usage_error(g_cmd, "--allow is for servers");
    icn_security_apply(&sec);
    on_interrupt_install();
    if (raw) return push_raw(ep, file, timeout, quiet);

    char err[2 * ICN_ERRLEN];
    refusals ref = {0};
    icn_sender *s = icn_sender_open(ep, window, timeout < 1000 ? timeout : 1000, on_refused, &ref, err, sizeof err);
    if (!s) icn_die(1, "--connect: %s", err);
    icn_reader *r = icn_reader_open(file, err, sizeof err);
    if (!r) icn_die(1, "%s", err);
    const uint8_t *p;
    size_t n;
    int k = 0, stalled = 0;
    int64_t frames = 0;
    for (; !stalled && !g_interrupted && (k = icn_reader_next(r, &p, &n, err, sizeof err)) == 1; frames++) {
        icn_batch b;
        frame_batch(r, p, n, frames, neg, (int32_t)gen, (uint32_t)prod, &b);
        /* back-pressure: wait for answers while the window is full, as long as they come */
        double last = icn_now();
        int64_t settled = icn_sender_counts_of(s)->acked + icn_sender_counts_of(s)->refused;
        while (icn_sender_room(s) == 0 && !g_interrupted) {
            if (icn_sender_pump(s, 100, err, sizeof err)) icn_die(1, "%s", err);
            int64_t now_settled = icn_sender_counts_of(s)->acked + icn_sender_counts_of(s)->refused;
            if (now_settled != settled) settled = now_settled, last = icn_now();
            if ((icn_now() - last) * 1000 >= timeout) {
                stalled = 1;
                break;
            }
        }
        if (!stalled && !g_interrupted && icn_sender_send(s, &b, err, sizeof err)) icn_die(1, "%s", err);
        if (stalled || g_interrupted) frames--; /* this one was not sent */
        icn_batch_free(&b);
        if (icn_sender_pump(s, 0, err, sizeof err)) icn_die(1, "%s", err);
    }
    if (k < 0) icn_warn("%s (%" PRId64 " frames read before it)", err, frames);
    icn_reader_close(r);
    int64_t left = icn_sender_drain(s, timeout, &g_interrupted, err, sizeof err);
    icn_sender_counts cn = *icn_sender_counts_of(s);
    icn_sender_close(s);
    icn_zmq_term();
    const char *why = g_interrupted ? " (interrupted)" : stalled || left ? ", no answer for --timeout" : "";
    if (left || cn.refused || k < 0 || stalled || g_interrupted)
        icn_die(1, "%" PRId64 " of %" PRId64 " batches sent to %s were not acknowledged (%" PRId64 " acknowledged: %" PRId64
                   " images; %" PRId64 " refused; %" PRId64 " unanswered%s)",
                cn.sent - cn.acked, cn.sent, ep, cn.acked, cn.images_acked, cn.refused, left, why);
    if (!quiet) {
        if (neg >= 0)
            icn_warn("pushed %" PRId64 " frames (%" PRId64 " pseudo-negatives of class %" PRId64 ") to %s: all acknowledged",
                     cn.sent, cn.images_acked, neg, ep);
        else icn_warn("pushed %" PRId64 " frames (%" PRId64 " images) to %s: all acknowledged", cn.sent, cn.images_acked, ep);
    }
    return 0;
}

/* ---------------------------------------------------------------- check and repair */

typedef struct {
    const char *store;
    int quiet;
} surveyor;

static void print_problem(void *ctx, uint64_t offset, uint64_t bytes, int torn, const char *what) {
    const surveyor *s = ctx;
    (void)offset, (void)bytes;
    if (s->quiet && torn) return;
    printf("%s: %s%s\n", s->store, torn ? "" : "DAMAGE: ", what);
}

static void print_report(const char *store, const icn_pool_report *r, const char *verb) {
    char k[ICN_ERRLEN];
    icn_pool_contract_format(&r->contract, k, sizeof k);
    printf("%s: uuid %s, %s\n", store, r->uuid, k);
    printf("%s: %" PRId64 " intact records%s in %" PRId64 " commits; %" PRId64 " damaged spans (%llu bytes); ", store,
           r->records, verb, r->batches, r->damaged, (unsigned long long)r->damaged_bytes);
    if (r->torn_bytes)
        printf("torn tail of %llu bytes at byte %llu (%" PRId64 " uncommitted records)\n", (unsigned long long)r->torn_bytes,
               (unsigned long long)r->torn_at, r->torn_records);
    else printf("no torn tail\n");
}

static int cmd_check(int argc, char **argv) {
    enum { O_STORE = 256, O_QUIET };
    static const struct option longs[] = {
        {"store", required_argument, 0, O_STORE}, {"quiet", no_argument, 0, O_QUIET}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    surveyor s = {0};
    int c;
    while ((c = next_opt(argc, argv, longs, usage_check)) != -1) {
        switch (c) {
        case O_STORE: s.store = optarg; break;
        case O_QUIET: s.quiet = 1; break;
        }
    }
    icn_no_operands(argc, argv, g_cmd);
    if (!s.store) icn_usage_error(g_cmd, "--store FILE is required");
    char err[2 * ICN_ERRLEN];
    icn_pool_report r;
    if (icn_pool_check(s.store, print_problem, &s, &r, err, sizeof err)) icn_die(1, "%s", err);
    if (!s.quiet) print_report(s.store, &r, "");
    if (fflush(stdout) != 0) icn_die(1, "stdout: write error");
    return r.damaged ? 1 : 0;
}

static int cmd_repair(int argc, char **argv) {
    enum { O_STORE = 256, O_OUT, O_QUIET };
    static const struct option longs[] = {
        {"store", required_argument, 0, O_STORE}, {"out", required_argument, 0, O_OUT},
        {"quiet", no_argument, 0, O_QUIET}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    surveyor s = {0};
    const char *out = NULL;
    int c;
    while ((c = next_opt(argc, argv, longs, usage_repair)) != -1) {
        switch (c) {
        case O_STORE: s.store = optarg; break;
        case O_OUT: out = optarg; break;
        case O_QUIET: s.quiet = 1; break;
        }
    }
    icn_no_operands(argc, argv, g_cmd);
    if (!s.store || !out) icn_usage_error(g_cmd, "--store FILE and --out NEW are required");
    char err[2 * ICN_ERRLEN];
    icn_pool_report r;
    if (icn_pool_repair(s.store, out, s.quiet ? NULL : print_problem, &s, &r, err, sizeof err)) icn_die(1, "%s", err);
    if (!s.quiet) print_report(s.store, &r, " copied");
    if (!s.quiet) {
        icn_pool *p;
        if (icn_pool_open(out, ICN_POOL_READ, NULL, &p, err, sizeof err)) icn_die(1, "%s", err);
        char id[ICN_UUID_STRLEN];
        icn_uuid_format(icn_pool_uuid(p), id);
        printf("%s: new store, uuid %s, %" PRId64 " records\n", out, id, icn_pool_count(p));
        icn_pool_close(p, err, sizeof err);
    }
    if (fflush(stdout) != 0) icn_die(1, "stdout: write error");
    return 0;
}

/* ---------------------------------------------------------------- keygen */

static int cmd_keygen(int argc, char **argv) {
    static const struct option longs[] = {
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    while (next_opt(argc, argv, longs, usage_keygen) != -1) {
    }
    if (optind != argc - 1) icn_usage_error(g_cmd, "give one NAME (writes NAME.key and NAME.pub)");
    const char *name = argv[optind];
    if (!name[0]) icn_usage_error(g_cmd, "NAME is empty");
    char pub[ICN_KEY_Z85_LEN + 1], err[2 * ICN_ERRLEN];
    if (icn_keygen(name, pub, err, sizeof err)) icn_die(1, "keygen: %s", err);
    printf("%s\n", pub);
    if (fflush(stdout) != 0) icn_die(1, "stdout: write error");
    return 0;
}

int main(int argc, char **argv) {
    icn_set_progname(argv[0]);
    static const icn_command cmds[] = {{"serve", cmd_serve}, {"dump", cmd_dump},     {"stats", cmd_stats},
                                       {"push", cmd_push},   {"check", cmd_check},   {"repair", cmd_repair},
                                       {"keygen", cmd_keygen}, {"end", cmd_end}};
    return icn_dispatch(argc, argv, cmds, (int)(sizeof cmds / sizeof cmds[0]), usage_main);
}
