/* icn-pool: the durable pool of pseudo-negatives between synthesizers and the trainer
 * (icn-pool(1)). Thin by design: flags and sockets here, the store in lib/pool.c, the
 * protocol in lib/transport.c. */
#include "pool.h"
#include "transport.h"
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
#include <zmq.h>

#define FETCH_MAX 65536
#define STATUS_EVERY 10.0 /* seconds between status lines */

static const char usage_main[] =
    "usage: icn-pool serve --store FILE [OPTIONS]\n"
    "       icn-pool dump --store FILE [OPTIONS]\n"
    "       icn-pool stats (--store FILE | --connect ENDPOINT) [--json]\n"
    "       icn-pool push [--connect ENDPOINT] [--file FILE|-] [OPTIONS]\n"
    "A durable pool of pseudo-negatives: synthesizers PUSH them in, the trainer fetches them by\n"
    "offset (icn-pool(1), icn-wire(5) POOL PROTOCOL). 'icn-pool COMMAND --help' for each command.\n";

static const char usage_serve[] =
    "usage: icn-pool serve --store FILE [OPTIONS]\n"
    "Store pseudo-negatives PUSHed to the PULL endpoint; answer \"fetch\" and \"stats\" on REP.\n"
    "  --store FILE       the pool file (created if missing; a torn tail is cut off)\n"
    "  --pull ENDPOINT    where batches arrive (default " ICN_EP_POOL_PUSH ")\n"
    "  --rep ENDPOINT     where requests arrive (default " ICN_EP_POOL_REQ ")\n"
    "  --fsync POLICY     batch (default: after each batch), always (after each record),\n"
    "                     none (leave it to the kernel)\n"
    "  --log FILE         messages to FILE (appended, time-stamped) instead of stderr\n"
    "  --quiet            no start, stop and 10-second status lines (rejections still shown)\n"
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
    "  --help             this text\n";

static const char usage_push[] =
    "usage: icn-pool push [--connect ENDPOINT] [--file FILE|-] [OPTIONS]\n"
    "PUSH the frames of a tensor stream to a pool, byte for byte (to seed a pool, and to test one).\n"
    "  --connect ENDPOINT the pool's PULL endpoint (default " ICN_EP_POOL_PUSH ")\n"
    "  --file FILE|-      input (default -: stdin)\n"
    "  --raw              send the whole input unchecked as ONE frame, e.g. garbage, to see the\n"
    "                     pool refuse it\n"
    "  --as-negatives K   decode each batch and relabel every image as a pseudo-negative of\n"
    "                     class K (label -(K+1)) with provenance --generation, --producer,\n"
    "                     steps 0, logit 0, reached 0: seeds a pool with real negatives\n"
    "  --generation G     provenance generation for --as-negatives (default 0)\n"
    "  --producer P       provenance producer id for --as-negatives (default 0)\n"
    "  --timeout MS       give up when no pool takes a frame within MS (default 5000)\n"
    "  --quiet            no summary line on stderr\n"
    "  --help             this text\n";

static const char *g_cmd = "";

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: %s: ", icn_progname, g_cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see icn-pool %s --help)\n", g_cmd);
    va_end(ap);
    exit(2);
}

/* getopt_long over a subcommand's arguments, with our own one-line messages. */
static int next_opt(int argc, char **argv, const struct option *longs, const char *usage) {
    return icn_getopt(argc, argv, longs, usage, g_cmd);
}

static void no_operands(int argc, char **argv) {
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
}

/* ---------------------------------------------------------------- serve */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static FILE *g_log; /* NULL: stderr */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    FILE *f = g_log ? g_log : stderr;
    if (g_log) {
        char ts[32];
        time_t t = time(NULL);
        struct tm tm;
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", localtime_r(&t, &tm));
        fprintf(f, "%s ", ts);
    }
    va_list ap;
    va_start(ap, fmt);
    icn_vmessage(f, fmt, ap);
    va_end(ap);
    fflush(f);
}

typedef struct {
    icn_pool *pool;
    const char *store, *pull_ep, *rep_ep;
    int64_t frames, rejected, fetches;
} server;

static const char *strip_frame(const char *e) { return strncmp(e, "frame: ", 7) == 0 ? e + 7 : e; }

static void kind_of(const msgpack_object *map, char *kind, size_t len) {
    char e[ICN_ERRLEN];
    if (icn_map_str(map, "kind", kind, len, e, sizeof e)) snprintf(kind, len, "(none)");
}

/* One frame from PULL: untrusted. Refusals are one line each and serving goes on; a failure to
 * store a good batch (the disk) stops the server, so that nothing is silently dropped. */
static void take_frame(server *s, int got, msgpack_unpacked *u, const char *recv_err) {
    int64_t n = s->frames++;
    char e[ICN_ERRLEN], kind[64];
    int bad = 0;
    if (got < 0) {
        bad = 1;
        snprintf(e, sizeof e, "%s", strip_frame(recv_err));
    } else if (!icn_map_kind_is(&u->data, "batch")) {
        bad = 1;
        kind_of(&u->data, kind, sizeof kind);
        snprintf(e, sizeof e, "kind '%s', not 'batch'", kind);
    } else {
        icn_batch b;
        if (icn_batch_decode(&u->data, &b, e, sizeof e)) {
            bad = 1;
        } else {
            int rc = icn_pool_append(s->pool, &b, e, sizeof e);
            if (rc == -2) icn_die(1, "cannot store frame %" PRId64 " from PULL: %s; stopping", n, e);
            bad = rc != 0;
            icn_batch_free(&b);
        }
    }
    if (bad) {
        s->rejected++;
        say("rejected frame %" PRId64 " from PULL: %s", n, e);
    }
}

/* The images a fetch reply may carry without passing the frame limit. */
static int64_t fetch_cap(const icn_pool *p) {
    int32_t h, w, c;
    if (!icn_pool_shape(p, &h, &w, &c)) return FETCH_MAX;
    size_t per = (size_t)h * w * c * 4 + 128, max = icn_max_frame();
    size_t room = max > 8192 ? max - 4096 : max / 2;
    int64_t k = (int64_t)(room / per);
    return k < 1 ? 1 : k > FETCH_MAX ? FETCH_MAX : k;
}

static void answer(server *s, int got, msgpack_unpacked *u, const char *recv_err, msgpack_sbuffer *sb) {
    char e[ICN_ERRLEN], msg[2 * ICN_ERRLEN], kind[64];
    if (got < 0) {
        snprintf(msg, sizeof msg, "bad request: %s", strip_frame(recv_err));
        icn_pack_error(sb, msg);
    } else if (icn_map_kind_is(&u->data, "fetch")) {
        int64_t offset, max;
        icn_batch b;
        if (icn_map_i64(&u->data, "offset", 0, INT64_MAX, &offset, e, sizeof e) ||
            icn_map_i64(&u->data, "max", 1, FETCH_MAX, &max, e, sizeof e)) {
            snprintf(msg, sizeof msg, "bad fetch: %s", e);
            icn_pack_error(sb, msg);
        } else if (icn_pool_read(s->pool, offset, max < fetch_cap(s->pool) ? max : fetch_cap(s->pool), &b, e,
                                 sizeof e)) {
            say("fetch at offset %" PRId64 ": %s", offset, e);
            icn_pack_error(sb, e);
        } else {
            s->fetches++;
            icn_pack_records(sb, offset, icn_pool_count(s->pool), &b);
            icn_batch_free(&b);
        }
    } else if (icn_map_kind_is(&u->data, "stats")) {
        icn_pool_counts c;
        icn_pool_stats(s->pool, &c);
        icn_pack_pool_stats(sb, &c, s->rejected);
        icn_pool_counts_free(&c);
    } else {
        kind_of(&u->data, kind, sizeof kind);
        snprintf(msg, sizeof msg, "unknown request kind '%s' (expected 'fetch' or 'stats')", kind);
        icn_pack_error(sb, msg);
    }
}

/* REP must answer every request, even garbage, or the REQ/REP lockstep breaks. */
static void serve_request(server *s, void *rep) {
    char e[ICN_ERRLEN];
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int got = icn_zmq_recv_map(rep, 0, &u, e, sizeof e);
    if (got < 0 && errno != EPROTO) icn_die(1, "REP %s: %s", s->rep_ep, e);
    if (got != 0) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        answer(s, got, &u, e, &sb);
        int rc;
        while ((rc = icn_zmq_send_sbuffer(rep, &sb, e, sizeof e)) != 0 && errno == EINTR && !g_stop) {
        }
        if (rc != 0) say("REP %s: reply not sent: %s", s->rep_ep, e);
        msgpack_sbuffer_destroy(&sb);
    }
    msgpack_unpacked_destroy(&u);
}

static void pull_frames(server *s, void *pull) {
    char e[ICN_ERRLEN];
    for (int i = 0; i < 64 && !g_stop; i++) { /* then let requests in */
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        int got = icn_zmq_recv_map(pull, 0, &u, e, sizeof e);
        if (got < 0 && errno != EPROTO) icn_die(1, "PULL %s: %s", s->pull_ep, e);
        if (got != 0) take_frame(s, got, &u, e);
        msgpack_unpacked_destroy(&u);
        if (got == 0) break;
    }
}

static int cmd_serve(int argc, char **argv) {
    enum { O_STORE = 256, O_PULL, O_REP, O_FSYNC_POLICY, O_LOG, O_QUIET, O_HELP };
    static const struct option longs[] = {{"store", required_argument, 0, O_STORE}, {"pull", required_argument, 0, O_PULL},
                                          {"rep", required_argument, 0, O_REP},     {"fsync", required_argument, 0, O_FSYNC_POLICY},
                                          {"log", required_argument, 0, O_LOG},     {"quiet", no_argument, 0, O_QUIET},
                                          {"help", no_argument, 0, O_HELP},         {0, 0, 0, 0}};
    server s = {.pull_ep = ICN_EP_POOL_PUSH, .rep_ep = ICN_EP_POOL_REQ};
    icn_fsync_policy fsync_policy = ICN_FSYNC_BATCH;
    const char *log_path = NULL;
    int quiet = 0, c;
    while ((c = next_opt(argc, argv, longs, usage_serve)) != -1) {
        switch (c) {
        case O_STORE: s.store = optarg; break;
        case O_PULL: s.pull_ep = optarg; break;
        case O_REP: s.rep_ep = optarg; break;
        case O_FSYNC_POLICY:
            if (icn_fsync_parse(optarg, &fsync_policy)) usage_error("--fsync: '%s' is not batch, always or none", optarg);
            break;
        case O_LOG: log_path = optarg; break;
        case O_QUIET: quiet = 1; break;
        case O_HELP: fputs(usage_serve, stdout); exit(0);
        }
    }
    no_operands(argc, argv);
    if (!s.store) usage_error("--store FILE is required");
    if (log_path && !(g_log = fopen(log_path, "a"))) icn_die(1, "--log %s: %s", log_path, strerror(errno));

    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: blocking calls return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[2 * ICN_ERRLEN];
    if (icn_pool_open(s.store, ICN_POOL_CREATE, &s.pool, err, sizeof err)) icn_die(1, "%s", err);
    if (icn_pool_note(s.pool)[0]) say("warning: %s", icn_pool_note(s.pool));
    icn_pool_set_fsync(s.pool, fsync_policy);
    void *pull = icn_zmq_open(ZMQ_PULL, s.pull_ep, 1, err, sizeof err);
    if (!pull) icn_die(1, "--pull: %s", err);
    void *rep = icn_zmq_open(ZMQ_REP, s.rep_ep, 1, err, sizeof err);
    if (!rep) icn_die(1, "--rep: %s", err);
    if (!quiet)
        say("serving %s (%" PRId64 " records, fsync %s): batches on PULL %s, requests on REP %s", s.store,
            icn_pool_count(s.pool), icn_fsync_name(fsync_policy), s.pull_ep, s.rep_ep);

    double last = icn_now();
    int64_t last_count = icn_pool_count(s.pool);
    while (!g_stop) {
        zmq_pollitem_t items[2] = {{pull, 0, ZMQ_POLLIN, 0}, {rep, 0, ZMQ_POLLIN, 0}};
        int r = zmq_poll(items, 2, 1000);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) icn_die(1, "poll: %s", zmq_strerror(errno));
        if (items[1].revents & ZMQ_POLLIN) serve_request(&s, rep);
        if (items[0].revents & ZMQ_POLLIN) pull_frames(&s, pull);
        double now = icn_now();
        if (now - last >= STATUS_EVERY) {
            int64_t n = icn_pool_count(s.pool);
            if (!quiet)
                say("%s: %" PRId64 " records (+%" PRId64 " in %.0f s, %.1f/s), %" PRId64 " rejected, %" PRId64
                    " fetches served",
                    s.store, n, n - last_count, now - last, (double)(n - last_count) / (now - last), s.rejected,
                    s.fetches);
            last = now, last_count = n;
        }
    }
    int64_t n = icn_pool_count(s.pool);
    icn_zmq_close(pull);
    icn_zmq_close(rep);
    int rc = icn_pool_close(s.pool, err, sizeof err);
    icn_zmq_term();
    if (rc) icn_die(1, "%s", err);
    if (!quiet) say("stopped: %s holds %" PRId64 " records; %" PRId64 " frames rejected", s.store, n, s.rejected);
    if (g_log) fclose(g_log);
    return 0;
}

/* ---------------------------------------------------------------- dump */

typedef struct {
    int fd;
    icn_batch pending; /* images waiting for a full frame */
    int64_t written;
} dumper;

static char *g_tmp; /* dump's temporary output: removed if we die before renaming it */
static void remove_tmp(void) {
    if (g_tmp) unlink(g_tmp);
}

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

static int cmd_dump(int argc, char **argv) {
    enum { O_STORE = 256, O_FROM, O_COUNT, O_GEN, O_CLASS, O_OUT, O_QUIET, O_HELP };
    static const struct option longs[] = {
        {"store", required_argument, 0, O_STORE}, {"from", required_argument, 0, O_FROM},
        {"count", required_argument, 0, O_COUNT}, {"generation", required_argument, 0, O_GEN},
        {"class", required_argument, 0, O_CLASS}, {"out", required_argument, 0, O_OUT},
        {"quiet", no_argument, 0, O_QUIET},       {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0}};
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
        case O_HELP: fputs(usage_dump, stdout); exit(0);
        }
    }
    no_operands(argc, argv);
    if (!store) usage_error("--store FILE is required");
    char err[2 * ICN_ERRLEN];
    icn_pool *p;
    if (icn_pool_open(store, ICN_POOL_READ, &p, err, sizeof err)) icn_die(1, "%s", err);
    if (icn_pool_note(p)[0]) icn_warn("warning: %s", icn_pool_note(p));
    int64_t total = icn_pool_count(p), end = count < 0 || count > total - from ? total : from + count;
    if (end < from) end = from; /* --from past the end: nothing */

    char *tmp = NULL;
    dumper d = {.fd = 1};
    if (strcmp(out, "-") != 0) {
        size_t tl = strlen(out) + 32;
        tmp = xmalloc(tl);
        snprintf(tmp, tl, "%s.tmp.%ld", out, (long)getpid());
        d.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (d.fd < 0) icn_die(1, "--out %s: cannot create %s: %s", out, tmp, strerror(errno));
        g_tmp = tmp;
        atexit(remove_tmp);
    }
    for (int64_t i = from; i < end; i += 1000) {
        icn_batch b;
        if (icn_pool_read(p, i, end - i < 1000 ? end - i : 1000, &b, err, sizeof err)) icn_die(1, "%s", err);
        int32_t keep = 0;
        size_t dim = icn_batch_dim(&b);
        for (int32_t j = 0; j < b.n; j++) { /* filter in place */
            if ((by_gen && b.prov[j].generation != gen) || (by_cls && b.y[j] != -(int32_t)cls - 1)) continue;
            if (keep != j) {
                memcpy(b.x + (size_t)keep * dim, b.x + (size_t)j * dim, dim * sizeof(float));
                b.y[keep] = b.y[j], b.prov[keep] = b.prov[j];
            }
            keep++;
        }
        b.n = keep;
        if (icn_batch_append(&d.pending, &b, err, sizeof err)) icn_die(1, "%s: %s", store, err);
        icn_batch_free(&b);
        flush_frames(&d, 0, out);
    }
    flush_frames(&d, 1, out);
    icn_batch_free(&d.pending);
    if (tmp) {
        if (fsync(d.fd) != 0 || close(d.fd) != 0) icn_die(1, "--out %s: %s", tmp, strerror(errno));
        if (rename(tmp, out) != 0) icn_die(1, "--out %s: cannot rename into place: %s", out, strerror(errno));
        g_tmp = NULL;
        free(tmp);
    }
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

static int cmd_stats(int argc, char **argv) {
    enum { O_STORE = 256, O_CONNECT, O_TIMEOUT, O_JSON, O_HELP };
    static const struct option longs[] = {{"store", required_argument, 0, O_STORE},
                                          {"connect", required_argument, 0, O_CONNECT},
                                          {"timeout", required_argument, 0, O_TIMEOUT},
                                          {"json", no_argument, 0, O_JSON},
                                          {"help", no_argument, 0, O_HELP},
                                          {0, 0, 0, 0}};
    const char *store = NULL, *ep = NULL;
    int json = 0, timeout = 5000, c;
    while ((c = next_opt(argc, argv, longs, usage_stats)) != -1) {
        switch (c) {
        case O_STORE: store = optarg; break;
        case O_CONNECT: ep = optarg; break;
        case O_TIMEOUT: timeout = (int)icn_parse_long("--timeout", optarg, 1, 3600000); break;
        case O_JSON: json = 1; break;
        case O_HELP: fputs(usage_stats, stdout); exit(0);
        }
    }
    no_operands(argc, argv);
    if (!store == !ep) usage_error("give one of --store FILE or --connect ENDPOINT");
    char err[2 * ICN_ERRLEN];
    icn_pool_counts cn;
    int64_t rejected = -1; /* unknown for a file */
    if (store) {
        icn_pool *p;
        if (icn_pool_open(store, ICN_POOL_READ, &p, err, sizeof err)) icn_die(1, "%s", err);
        if (icn_pool_note(p)[0]) icn_warn("warning: %s", icn_pool_note(p));
        icn_pool_stats(p, &cn);
        icn_pool_close(p, err, sizeof err);
    } else {
        void *req = NULL;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        icn_pack_stats_request(&sb);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        int r = icn_request(&req, ep, &sb, timeout, &u, err, sizeof err);
        if (r <= 0) icn_die(1, "%s", err);
        char e[ICN_ERRLEN];
        if (icn_decode_pool_stats(&u.data, &cn, &rejected, e, sizeof e)) icn_die(1, "pool at %s: %s", ep, e);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
        icn_zmq_close(req);
        icn_zmq_term();
    }
    if (json) {
        printf("{\"total\":%" PRId64, cn.total);
        if (rejected >= 0) printf(",\"rejected\":%" PRId64, rejected);
    } else {
        printf("total: %" PRId64 "\n", cn.total);
        if (rejected >= 0) printf("rejected: %" PRId64 "\n", rejected);
    }
    print_tallies("class", cn.per_class, cn.n_class, json);
    print_tallies("generation", cn.per_generation, cn.n_generation, json);
    print_tallies("producer", cn.per_producer, cn.n_producer, json);
    if (json) printf("}\n");
    icn_pool_counts_free(&cn);
    if (fflush(stdout) != 0) icn_die(1, "stdout: write error");
    return 0;
}

/* ---------------------------------------------------------------- push */

typedef struct {
    void *sock;
    const char *ep;
    int timeout;
    int64_t frames, images;
} pusher;

static void push_bytes(pusher *ps, const void *p, size_t n) {
    char e[ICN_ERRLEN];
    if (icn_zmq_send(ps->sock, p, n, e, sizeof e) == 0) {
        ps->frames++;
        return;
    }
    if (errno == EAGAIN)
        icn_die(1, "no pool at %s took frame %" PRId64 " within %d ms", ps->ep, ps->frames, ps->timeout);
    icn_die(1, "%s: frame %" PRId64 ": %s", ps->ep, ps->frames, e);
}

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

/* Decode a batch frame and re-encode it as pseudo-negatives of class k with the given provenance. */
static void push_as_negatives(pusher *ps, const icn_reader *r, const uint8_t *p, size_t n, int64_t frame, int32_t k,
                              int32_t gen, uint32_t producer) {
    char e[ICN_ERRLEN];
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    icn_batch b;
    if (icn_frame_unpack(p, n, &u, e, sizeof e) || icn_batch_decode(&u.data, &b, e, sizeof e))
        icn_die(1, "%s: frame %" PRId64 " at byte %llu: %s", icn_reader_name(r), frame,
                (unsigned long long)icn_reader_offset(r), strip_frame(e));
    msgpack_unpacked_destroy(&u);
    if (!b.y) b.y = xmalloc((size_t)b.n * sizeof *b.y);
    free(b.prov);
    b.prov = xcalloc((size_t)b.n, sizeof *b.prov);
    for (int32_t i = 0; i < b.n; i++) {
        b.y[i] = -k - 1;
        b.prov[i] = (icn_provenance){.generation = gen, .producer = producer};
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    icn_batch_pack(&pk, &b);
    push_bytes(ps, sb.data, sb.size);
    ps->images += b.n;
    msgpack_sbuffer_destroy(&sb);
    icn_batch_free(&b);
}

static int cmd_push(int argc, char **argv) {
    enum { O_CONNECT = 256, O_FILE, O_RAW, O_NEG, O_GEN, O_PROD, O_TIMEOUT, O_QUIET, O_HELP };
    static const struct option longs[] = {
        {"connect", required_argument, 0, O_CONNECT}, {"file", required_argument, 0, O_FILE},
        {"raw", no_argument, 0, O_RAW},               {"as-negatives", required_argument, 0, O_NEG},
        {"generation", required_argument, 0, O_GEN},  {"producer", required_argument, 0, O_PROD},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"quiet", no_argument, 0, O_QUIET},
        {"help", no_argument, 0, O_HELP},             {0, 0, 0, 0}};
    pusher ps = {.ep = ICN_EP_POOL_PUSH, .timeout = 5000};
    const char *file = "-";
    int raw = 0, quiet = 0, c, gen_set = 0, prod_set = 0;
    int64_t neg = -1, gen = 0, prod = 0;
    while ((c = next_opt(argc, argv, longs, usage_push)) != -1) {
        switch (c) {
        case O_CONNECT: ps.ep = optarg; break;
        case O_FILE: file = optarg; break;
        case O_RAW: raw = 1; break;
        case O_NEG: neg = icn_parse_long("--as-negatives", optarg, 0, INT32_MAX - 1); break;
        case O_GEN: gen = icn_parse_long("--generation", optarg, INT32_MIN, INT32_MAX), gen_set = 1; break;
        case O_PROD: prod = icn_parse_long("--producer", optarg, 0, UINT32_MAX), prod_set = 1; break;
        case O_TIMEOUT: ps.timeout = (int)icn_parse_long("--timeout", optarg, 1, 3600000); break;
        case O_QUIET: quiet = 1; break;
        case O_HELP: fputs(usage_push, stdout); exit(0);
        }
    }
    no_operands(argc, argv);
    if (raw && neg >= 0) usage_error("--raw sends bytes unchanged: it cannot go with --as-negatives");
    if ((gen_set || prod_set) && neg < 0) usage_error("--generation and --producer go with --as-negatives");

    char err[ICN_ERRLEN];
    ps.sock = icn_zmq_socket(ZMQ_PUSH, err, sizeof err);
    if (!ps.sock) icn_die(1, "%s", err);
    int one = 1;
    /* Queue frames only on a live connection, so "no pool" is a timeout rather than frames
     * silently queued and dropped at exit; linger long enough to deliver what was queued. */
    zmq_setsockopt(ps.sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(ps.sock, ZMQ_SNDTIMEO, &ps.timeout, sizeof ps.timeout);
    zmq_setsockopt(ps.sock, ZMQ_LINGER, &ps.timeout, sizeof ps.timeout);
    if (icn_zmq_attach(ps.sock, ps.ep, 0, err, sizeof err)) icn_die(1, "--connect: %s", err);

    if (raw) {
        uint8_t *data;
        size_t len;
        read_raw(file, &data, &len);
        push_bytes(&ps, data, len);
        free(data);
    } else {
        icn_reader *r = icn_reader_open(file, err, sizeof err);
        if (!r) icn_die(1, "%s", err);
        const uint8_t *p;
        size_t n;
        int k;
        for (int64_t frame = 0; (k = icn_reader_next(r, &p, &n, err, sizeof err)) == 1; frame++) {
            if (neg >= 0) push_as_negatives(&ps, r, p, n, frame, (int32_t)neg, (int32_t)gen, (uint32_t)prod);
            else push_bytes(&ps, p, n);
        }
        if (k < 0) icn_die(1, "%s (%" PRId64 " frames pushed before it)", err, ps.frames);
        icn_reader_close(r);
    }
    icn_zmq_close(ps.sock);
    icn_zmq_term(); /* waits (at most --timeout) until the queued frames are out */
    if (!quiet) {
        if (neg >= 0)
            icn_warn("pushed %" PRId64 " frames (%" PRId64 " pseudo-negatives of class %" PRId64 ") to %s", ps.frames,
                     ps.images, neg, ps.ep);
        else icn_warn("pushed %" PRId64 " frames to %s", ps.frames, ps.ep);
    }
    return 0;
}

int main(int argc, char **argv) {
    icn_set_progname(argv[0]);
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } cmds[] = {{"serve", cmd_serve}, {"dump", cmd_dump}, {"stats", cmd_stats}, {"push", cmd_push}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(cmd, cmds[i].name) != 0) continue;
        g_cmd = cmds[i].name;
        opterr = 0;
        optind = 1;
        return cmds[i].run(argc - 1, argv + 1);
    }
    icn_die(2, "unknown command '%s' (expected serve, dump, stats or push; see icn-pool --help)", cmd);
}
