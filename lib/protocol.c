/* protocol.c: every message of icn-wire(5), packed and decoded in one place (lib/protocol.h). */
#include "protocol.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h> /* socket type constants only: the calls are lib/transport.c's */

#include "transport.h"
#include "util.h"
#include "wire.h"

static const struct {
    icn_msg_kind kind;
    const char *name;
} kinds[] = {{ICN_MSG_MODEL, "model"},   {ICN_MSG_HOLD, "hold"},       {ICN_MSG_STOP, "stop"},
             {ICN_MSG_BATCH, "batch"},   {ICN_MSG_ACK, "ack"},         {ICN_MSG_REFUSED, "refused"},
             {ICN_MSG_FETCH, "fetch"},   {ICN_MSG_STATS_REQUEST, "stats"}, {ICN_MSG_RECORDS, "records"},
             {ICN_MSG_STATS, "stats"},   {ICN_MSG_ERROR, "error"},     {ICN_MSG_END, "end"},
             {ICN_MSG_BEGIN, "begin"},
             {ICN_MSG_HEARTBEAT, "heartbeat"}, {ICN_MSG_SNAPSHOT_REQUEST, "snapshot_request"}};
#define N_KINDS (sizeof kinds / sizeof kinds[0])

const char *icn_msg_kind_name(icn_msg_kind k) {
    for (size_t i = 0; i < N_KINDS; i++)
        if (kinds[i].kind == k) return kinds[i].name;
    return "?";
}

/* "'ack' or 'refused'" for an accept mask. */
static void expected(unsigned accept, char *out, size_t len) {
    size_t at = 0, n = 0, total = 0;
    for (size_t i = 0; i < N_KINDS; i++) total += (accept & kinds[i].kind) && kinds[i].kind != ICN_MSG_STATS_REQUEST;
    out[0] = 0;
    for (size_t i = 0; i < N_KINDS && at < len; i++) {
        if (!(accept & kinds[i].kind)) continue;
        if (kinds[i].kind == ICN_MSG_STATS_REQUEST && (accept & ICN_MSG_STATS)) continue; /* one "stats" */
        if (kinds[i].kind == ICN_MSG_STATS_REQUEST) total++;
        n++;
        at += (size_t)snprintf(out + at, len - at, "%s'%s'", n == 1 ? "" : n == total ? " or " : ", ", kinds[i].name);
    }
}

static int get_u63(const msgpack_object *map, const char *key, int64_t lo, uint64_t *out, char *err, size_t errlen) {
    int64_t v;
    if (icn_map_i64(map, key, lo, INT64_MAX, &v, err, errlen)) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int decode_records(const msgpack_object *map, icn_msg *m, char *err, size_t errlen) {
    if (icn_map_i64(map, "offset", 0, INT64_MAX, &m->offset, err, errlen) ||
        icn_map_i64(map, "total", 0, INT64_MAX, &m->total, err, errlen))
        return -1;
    const msgpack_object *b = icn_map_get(map, "batch");
    if (!b || b->type == MSGPACK_OBJECT_NIL) return 0; /* none at this offset (asking past the end is how
                                                         * a client learns the total) */
    char e[ICN_ERRLEN];
    if (icn_batch_decode(b, &m->batch, e, sizeof e)) return icn_errf(err, errlen, "%s", e);
    const icn_batch *r = &m->batch;
    const char *bad = !r->y ? "have no labels"
                      : !r->prov ? "have no provenance"
                      : m->offset > m->total - r->n ? "run past the total"
                                                    : NULL;
    for (int32_t i = 0; !bad && i < r->n; i++)
        if (r->y[i] >= 0) bad = "include a label >= 0 (not a pseudo-negative)";
    if (bad)
        return icn_errf(err, errlen, "the %d records at offset %" PRId64 " (of %" PRId64 ") %s", r->n, m->offset,
                        m->total, bad);
    return 0;
}

/* ---------------------------------------------------------------- heartbeat */

static const char *const run_states[] = {"running", "hold", "finished"};

const char *icn_run_state_name(icn_run_state s) {
    return s >= ICN_RUN_RUNNING && s <= ICN_RUN_FINISHED ? run_states[s] : "?";
}

static int decode_heartbeat(const msgpack_object *map, icn_msg *m, char *err, size_t errlen) {
    char state[16];
    if (icn_map_i64(map, "generation", -1, INT64_MAX, &m->generation, err, errlen) ||
        icn_map_str(map, "state", state, sizeof state, err, errlen) ||
        icn_map_i64(map, "interval_ms", ICN_HEARTBEAT_MIN_MS, ICN_HEARTBEAT_MAX_MS, &m->interval_ms, err, errlen) ||
        icn_map_str(map, "requests", m->endpoint, sizeof m->endpoint, err, errlen))
        return -1;
    const msgpack_object *t = icn_map_get(map, "time");
    double time = !t ? -1
                  : t->type == MSGPACK_OBJECT_FLOAT64 || t->type == MSGPACK_OBJECT_FLOAT32 ? t->via.f64
                  : t->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (double)t->via.u64
                                                                : -1;
    if (!(time >= 0 && time < 1e11)) return icn_errf(err, errlen, "'time' must be a number of seconds since 1970 (0 to 1e11)");
    m->time = time;
    int s = 0;
    while (s < 3 && strcmp(state, run_states[s])) s++;
    if (s == 3) return icn_errf(err, errlen, "'state' is '%s', not running, hold or finished", state);
    m->state = (icn_run_state)s;
    return 0;
}

static int decode_kind(const msgpack_object *map, icn_msg *m, int need_origin, char *err, size_t errlen) {
    const msgpack_object *dup;
    switch (m->kind) {
    case ICN_MSG_HEARTBEAT: return decode_heartbeat(map, m, err, errlen);
    case ICN_MSG_SNAPSHOT_REQUEST: return 0;
    case ICN_MSG_MODEL: return icn_model_decode_map(map, &m->net, &m->meta, NULL, NULL, err, errlen);
    case ICN_MSG_HOLD:
    case ICN_MSG_STOP: return icn_map_i64(map, "generation", 0, INT64_MAX, &m->generation, err, errlen);
    case ICN_MSG_BATCH: /* the origin first, so that a refusal of a bad batch can name it */
        if ((need_origin || icn_map_get(map, "producer") || icn_map_get(map, "seq")) &&
            (get_u63(map, "producer", 1, &m->producer, err, errlen) || get_u63(map, "seq", 1, &m->seq, err, errlen))) {
            m->producer = m->seq = 0;
            return -1;
        }
        return icn_batch_decode(map, &m->batch, err, errlen);
    case ICN_MSG_ACK:
    case ICN_MSG_REFUSED: /* a refusal of a frame whose origin could not be read says 0, 0 */
        if (get_u63(map, "producer", m->kind == ICN_MSG_ACK, &m->producer, err, errlen) ||
            get_u63(map, "seq", m->kind == ICN_MSG_ACK, &m->seq, err, errlen))
            return -1;
        if (m->kind == ICN_MSG_ACK && (dup = icn_map_get(map, "duplicate")) != NULL) {
            if (dup->type != MSGPACK_OBJECT_BOOLEAN) return icn_errf(err, errlen, "key 'duplicate' is not a bool");
            m->duplicate = dup->via.boolean;
        }
        if (m->kind == ICN_MSG_REFUSED && (dup = icn_map_get(map, "ended")) != NULL) {
            if (dup->type != MSGPACK_OBJECT_BOOLEAN) return icn_errf(err, errlen, "key 'ended' is not a bool");
            m->ended = dup->via.boolean;
        }
        return m->kind == ICN_MSG_REFUSED ? icn_map_str(map, "reason", m->text, sizeof m->text, err, errlen) : 0;
    case ICN_MSG_FETCH:
        return icn_map_i64(map, "offset", 0, INT64_MAX, &m->offset, err, errlen) ||
                       icn_map_i64(map, "max", 1, ICN_FETCH_MAX, &m->max, err, errlen)
                   ? -1 : 0;
    case ICN_MSG_STATS_REQUEST:
    case ICN_MSG_END:
    case ICN_MSG_BEGIN: return 0;
    case ICN_MSG_STATS:
        return icn_decode_pool_stats(map, &m->counts, &m->rejected, &m->accept_failures, &m->ended, err, errlen);
    case ICN_MSG_RECORDS: return decode_records(map, m, err, errlen);
    case ICN_MSG_ERROR: return icn_map_str(map, "message", m->text, sizeof m->text, err, errlen);
    }
    return icn_errf(err, errlen, "unknown kind");
}

int icn_msg_decode(const uint8_t *p, size_t n, unsigned accept, int need_origin, icn_msg *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    char kind[32], e[ICN_ERRLEN], want[128];
    int rc = -1;
    if (icn_frame_unpack(p, n, &up, e, sizeof e)) {
        icn_errf(err, errlen, "%s", icn_frame_error_detail(e));
        goto out;
    }
    const msgpack_object *map = &up.data;
    if (icn_map_str(map, "kind", kind, sizeof kind, e, sizeof e)) {
        icn_errf(err, errlen, "message without a kind: %s", e);
        goto out;
    }
    for (size_t i = 0; i < N_KINDS && !m->kind; i++) {
        if (strcmp(kinds[i].name, kind) || !(accept & kinds[i].kind)) continue;
        /* "stats" is a request without "total", a reply with it */
        if (kinds[i].kind == ICN_MSG_STATS_REQUEST && (accept & ICN_MSG_STATS) && icn_map_get(map, "total")) continue;
        m->kind = kinds[i].kind;
    }
    if (!m->kind) {
        expected(accept, want, sizeof want);
        icn_errf(err, errlen, "message of kind '%s' where %s is expected", kind, want);
        goto out;
    }
    if (decode_kind(map, m, need_origin, e, sizeof e)) {
        uint64_t producer = m->producer, seq = m->seq; /* kept for the refusal */
        icn_msg_free(m);
        m->producer = producer, m->seq = seq;
        icn_errf(err, errlen, "%s: %s", kind, e);
        goto out;
    }
    rc = 0;
out:
    msgpack_unpacked_destroy(&up);
    return rc;
}

void icn_msg_free(icn_msg *m) {
    icn_batch_free(&m->batch);
    if (m->kind == ICN_MSG_MODEL) icn_net_free(&m->net);
    if (m->kind == ICN_MSG_STATS) icn_pool_counts_free(&m->counts);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- packing */

static void packer(msgpack_packer *pk, msgpack_sbuffer *sb) { msgpack_packer_init(pk, sb, msgpack_sbuffer_write); }

void icn_pack_control(msgpack_sbuffer *sb, icn_msg_kind hold_or_stop, int64_t generation) {
    msgpack_packer pk;
    packer(&pk, sb);
    msgpack_pack_map(&pk, 2);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, icn_msg_kind_name(hold_or_stop));
    icn_pack_str(&pk, "generation"), msgpack_pack_int64(&pk, generation);
}

void icn_pack_batch_from(msgpack_sbuffer *sb, const icn_batch *b, uint64_t producer, uint64_t seq) {
    msgpack_sbuffer inner;
    msgpack_sbuffer_init(&inner);
    msgpack_packer pk;
    packer(&pk, &inner);
    icn_batch_pack(&pk, b);
    /* the batch map with two more pairs: rewrite its map header (fixmap or map16/map32) */
    const uint8_t *d = (const uint8_t *)inner.data;
    size_t head, pairs;
    if ((d[0] & 0xf0) == 0x80) head = 1, pairs = d[0] & 0x0f;
    else if (d[0] == 0xde) head = 3, pairs = (size_t)d[1] << 8 | d[2];
    else head = 5, pairs = (size_t)d[1] << 24 | (size_t)d[2] << 16 | (size_t)d[3] << 8 | d[4];
    packer(&pk, sb);
    msgpack_pack_map(&pk, pairs + 2);
    msgpack_sbuffer_write(sb, inner.data + head, inner.size - head);
    icn_pack_str(&pk, "producer"), msgpack_pack_uint64(&pk, producer);
    icn_pack_str(&pk, "seq"), msgpack_pack_uint64(&pk, seq);
    msgpack_sbuffer_destroy(&inner);
}

/* flag: NULL, or a key set to true ("duplicate" on an ack, "ended" on a refusal) */
static void pack_origin_reply(msgpack_sbuffer *sb, const char *kind, uint64_t producer, uint64_t seq, const char *reason,
                              const char *flag) {
    msgpack_packer pk;
    packer(&pk, sb);
    msgpack_pack_map(&pk, 3 + (reason != NULL) + (flag != NULL));
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, kind);
    icn_pack_str(&pk, "producer"), msgpack_pack_uint64(&pk, producer);
    icn_pack_str(&pk, "seq"), msgpack_pack_uint64(&pk, seq);
    if (reason) icn_pack_str(&pk, "reason"), icn_pack_str(&pk, reason);
    if (flag) icn_pack_str(&pk, flag), msgpack_pack_true(&pk);
}

void icn_pack_ack(msgpack_sbuffer *sb, uint64_t producer, uint64_t seq) { pack_origin_reply(sb, "ack", producer, seq, NULL, NULL); }
void icn_pack_duplicate(msgpack_sbuffer *sb, uint64_t producer, uint64_t seq) {
    pack_origin_reply(sb, "ack", producer, seq, NULL, "duplicate");
}

void icn_pack_refused(msgpack_sbuffer *sb, uint64_t producer, uint64_t seq, const char *reason) {
    char r[ICN_ERRLEN];
    snprintf(r, sizeof r, "%s", reason); /* fits the reader's buffer */
    pack_origin_reply(sb, "refused", producer, seq, r, NULL);
}

void icn_pack_run_ended(msgpack_sbuffer *sb, uint64_t producer, uint64_t seq) {
    pack_origin_reply(sb, "refused", producer, seq,
                      "run ended: the trainer has ended its run; no batch made from its snapshots is taken", "ended");
}

void icn_pack_run_request(msgpack_sbuffer *sb, icn_msg_kind end_or_begin) {
    msgpack_packer pk;
    packer(&pk, sb);
    msgpack_pack_map(&pk, 1);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, icn_msg_kind_name(end_or_begin));
}

void icn_pack_fetch(msgpack_sbuffer *sb, int64_t offset, int64_t max) {
    msgpack_packer pk;
    packer(&pk, sb);
    msgpack_pack_map(&pk, 3);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "fetch");
    icn_pack_str(&pk, "offset"), msgpack_pack_int64(&pk, offset);
    icn_pack_str(&pk, "max"), msgpack_pack_int64(&pk, max);
}

void icn_pack_stats_request(msgpack_sbuffer *sb) {
    msgpack_packer pk;
    packer(&pk, sb);
    msgpack_pack_map(&pk, 1);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "stats");
}

void icn_pack_records(msgpack_sbuffer *sb, int64_t offset, int64_t total, const icn_batch *records) {
    msgpack_packer pk;
    packer(&pk, sb);
    int with_batch = records && records->n > 0; /* a batch cannot say n = 0: no key then */
    msgpack_pack_map(&pk, 3 + with_batch);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "records");
    icn_pack_str(&pk, "offset"), msgpack_pack_int64(&pk, offset);
    icn_pack_str(&pk, "total"), msgpack_pack_int64(&pk, total);
    if (with_batch) icn_pack_str(&pk, "batch"), icn_batch_pack(&pk, records);
}

void icn_pack_error(msgpack_sbuffer *sb, const char *message) {
    char m[ICN_ERRLEN];
    snprintf(m, sizeof m, "%s", message);
    msgpack_packer pk;
    packer(&pk, sb);
    msgpack_pack_map(&pk, 2);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "error");
    icn_pack_str(&pk, "message"), icn_pack_str(&pk, m);
}

void icn_pack_heartbeat(msgpack_sbuffer *sb, int64_t generation, icn_run_state state, int64_t interval_ms,
                        const char *requests, double time) {
    msgpack_packer pk;
    packer(&pk, sb);
    msgpack_pack_map(&pk, 6);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "heartbeat");
    icn_pack_str(&pk, "generation"), msgpack_pack_int64(&pk, generation);
    icn_pack_str(&pk, "state"), icn_pack_str(&pk, icn_run_state_name(state));
    icn_pack_str(&pk, "interval_ms"), msgpack_pack_int64(&pk, interval_ms);
    icn_pack_str(&pk, "requests"), icn_pack_str(&pk, requests);
    icn_pack_str(&pk, "time"), msgpack_pack_double(&pk, time);
}

void icn_pack_snapshot_request(msgpack_sbuffer *sb) {
    msgpack_packer pk;
    packer(&pk, sb);
    msgpack_pack_map(&pk, 1);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "snapshot_request");
}

/* ---------------------------------------------------------------- channel sockets */

void *icn_open_publisher(const char *endpoint, char *err, size_t errlen) {
    icn_zmq_opts o = {.max_msg = ICN_SMALL_MSG, .sndhwm = ICN_PUBLISH_HWM};
    return icn_zmq_open_with(ZMQ_PUB, endpoint, 1, &o, err, errlen);
}

void *icn_open_snapshot_router(const char *endpoint, char *err, size_t errlen) {
    icn_zmq_opts o = {.max_msg = ICN_SMALL_MSG, .rcvhwm = ICN_INTAKE_HWM, .sndhwm = 1};
    return icn_zmq_open_with(ZMQ_ROUTER, endpoint, 1, &o, err, errlen);
}

void *icn_open_snapshot_requester(const char *endpoint, int64_t max_model, char *err, size_t errlen) {
    icn_zmq_opts o = {.max_msg = max_model, .no_linger = 1, .sndhwm = 1};
    return icn_zmq_open_with(ZMQ_DEALER, endpoint, 0, &o, err, errlen);
}

void *icn_open_subscriber(const char *endpoint, int64_t max_model, char *err, size_t errlen) {
    /* not CONFLATE: it keeps only the newest frame, and a heartbeat sent just before a snapshot
     * (each once a second) would be lost every time; a short queue instead, whose overflow a
     * heartbeat repairs (the subscriber asks for the snapshot it names) */
    icn_zmq_opts o = {.max_msg = max_model, .rcvhwm = ICN_SUBSCRIBE_HWM};
    return icn_zmq_open_with(ZMQ_SUB, endpoint, 0, &o, err, errlen);
}

void *icn_open_intake(const char *endpoint, int64_t max_batch, char *err, size_t errlen) {
    icn_zmq_opts o = {.max_msg = max_batch, .rcvhwm = ICN_INTAKE_HWM, .sndhwm = ICN_INTAKE_HWM};
    return icn_zmq_open_with(ZMQ_ROUTER, endpoint, 1, &o, err, errlen);
}

void *icn_open_sender(const char *endpoint, char *err, size_t errlen) {
    /* one connection per socket, its unsent batches dropped at close: the sender reconnects
     * itself and resends in seq order (lib/sender.h), so batch k+1 never reaches a pool
     * before k on a connection that ZeroMQ re-established behind its back */
    icn_zmq_opts o = {.max_msg = ICN_SMALL_MSG, .immediate = 1, .no_reconnect = 1, .no_linger = 1};
    return icn_zmq_open_with(ZMQ_DEALER, endpoint, 0, &o, err, errlen);
}

void *icn_open_requests(const char *endpoint, char *err, size_t errlen) {
    icn_zmq_opts o = {.max_msg = ICN_SMALL_MSG, .rcvhwm = ICN_INTAKE_HWM};
    return icn_zmq_open_with(ZMQ_REP, endpoint, 1, &o, err, errlen);
}

int64_t icn_intake_max_bytes(int32_t h, int32_t w, int32_t c) {
    /* x float32, y int32, prov 4+4+4+1+4 bytes per image; keys, headers and origin: 512 */
    return (int64_t)ICN_BATCH_MAX_IMAGES * ((int64_t)h * w * c * 4 + 4 + 17) + 512;
}

/* ---------------------------------------------------------------- request client */

static void *open_req(const char *endpoint, int64_t max_reply, char *err, size_t errlen) {
    icn_zmq_opts o = {.max_msg = max_reply};
    return icn_zmq_open_with(ZMQ_REQ, endpoint, 0, &o, err, errlen);
}

static void reopen(void **sock, const char *endpoint, int64_t max_reply) {
    char e[ICN_ERRLEN];
    icn_zmq_close(*sock);
    *sock = open_req(endpoint, max_reply, e, sizeof e); /* NULL: the next request tries again */
}

int icn_request(void **sock, const char *endpoint, const msgpack_sbuffer *request, int timeout_ms,
                int64_t max_reply, unsigned accept, icn_msg *reply, char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    memset(reply, 0, sizeof *reply);
    if (!*sock && !(*sock = open_req(endpoint, max_reply, err, errlen))) return -1;
    if (icn_zmq_send_sbuffer(*sock, request, e, sizeof e) != 0) {
        /* EFSM: an earlier request was left unanswered (interrupted): start over on a new socket. */
        reopen(sock, endpoint, max_reply);
        if (!*sock || icn_zmq_send_sbuffer(*sock, request, e, sizeof e) != 0)
            return icn_errf(err, errlen, "pool at %s: request not sent: %s", endpoint, e);
    }
    uint8_t *data;
    size_t len;
    int r = icn_zmq_recv_buf(*sock, NULL, timeout_ms, &data, &len, e, sizeof e);
    if (r <= 0) {
        int why = errno, interrupted = r == 0 && why == EINTR;
        if (r < 0 && why == EPROTO) /* the socket is fine: it got an answer, just a bad one */
            return icn_errf(err, errlen, "pool at %s: bad reply: %s", endpoint, e);
        reopen(sock, endpoint, max_reply); /* a REQ socket waiting for a reply accepts nothing else */
        if (r < 0) return icn_errf(err, errlen, "pool at %s: %s", endpoint, e);
        if (interrupted) icn_errf(err, errlen, "interrupted while waiting for the pool at %s", endpoint);
        else icn_errf(err, errlen, "pool at %s did not answer within %d ms", endpoint, timeout_ms);
        errno = interrupted ? EINTR : EAGAIN;
        return 0;
    }
    int bad = icn_msg_decode(data, len, accept | ICN_MSG_ERROR, 0, reply, e, sizeof e);
    free(data);
    if (bad) return icn_errf(err, errlen, "pool at %s: bad reply: %s", endpoint, e);
    if (reply->kind == ICN_MSG_ERROR) {
        icn_errf(err, errlen, "pool at %s: %s", endpoint, reply->text);
        icn_msg_free(reply);
        return -1;
    }
    return 1;
}

/* ---------------------------------------------------------------- the pool's stats reply */


static void pack_tallies(msgpack_packer *pk, const char *key, const icn_pool_tally *v, size_t n) {
    icn_pack_str(pk, key);
    msgpack_pack_map(pk, n);
    for (size_t i = 0; i < n; i++) msgpack_pack_int64(pk, v[i].key), msgpack_pack_int64(pk, v[i].count);
}

void icn_pack_pool_stats(msgpack_sbuffer *sb, const icn_pool_counts *c, int64_t rejected, int64_t accept_failures,
                         int ended) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 11);
    icn_pack_str(&pk, "kind"), icn_pack_str(&pk, "stats");
    icn_pack_str(&pk, "uuid"), icn_pack_str(&pk, c->uuid);
    icn_pack_str(&pk, "total"), msgpack_pack_int64(&pk, c->total);
    icn_pack_str(&pk, "rejected"), msgpack_pack_int64(&pk, rejected);
    icn_pack_str(&pk, "duplicates"), msgpack_pack_int64(&pk, c->duplicates);
    icn_pack_str(&pk, "accept_failures"), msgpack_pack_int64(&pk, accept_failures);
    icn_pack_str(&pk, "ended");
    if (ended) msgpack_pack_true(&pk);
    else msgpack_pack_false(&pk);
    pack_tallies(&pk, "per_class", c->per_class, c->n_class);
    pack_tallies(&pk, "per_generation", c->per_generation, c->n_generation);
    pack_tallies(&pk, "per_producer", c->per_producer, c->n_producer);
    icn_pack_str(&pk, "rejects");
    msgpack_pack_array(&pk, c->n_rejects);
    for (size_t i = 0; i < c->n_rejects; i++) {
        msgpack_pack_array(&pk, 3);
        icn_pack_str(&pk, c->rejects[i].peer);
        icn_pack_str(&pk, c->rejects[i].reason);
        msgpack_pack_int64(&pk, c->rejects[i].count);
    }
}

static int int_of(const msgpack_object *o, int64_t *v) {
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= (uint64_t)INT64_MAX) *v = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) *v = o->via.i64;
    else return -1;
    return 0;
}

static int decode_tallies(const msgpack_object *map, const char *key, icn_pool_tally **v, size_t *n, char *err,
                          size_t errlen) {
    const msgpack_object *m = icn_map_get(map, key);
    if (!m) return icn_errf(err, errlen, "key '%s' missing", key);
    if (m->type != MSGPACK_OBJECT_MAP) return icn_errf(err, errlen, "key '%s' is not a map", key);
    *n = m->via.map.size;
    *v = xmalloc((*n ? *n : 1) * sizeof **v);
    for (size_t i = 0; i < *n; i++) {
        icn_pool_tally *t = &(*v)[i];
        if (int_of(&m->via.map.ptr[i].key, &t->key) || int_of(&m->via.map.ptr[i].val, &t->count) || t->count < 0)
            return icn_errf(err, errlen, "key '%s': entry %zu is not an integer key with a count >= 0", key, i);
    }
    return 0;
}

static int str_into(const msgpack_object *o, char *out, size_t outlen) {
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= outlen || memchr(o->via.str.ptr, 0, o->via.str.size)) return -1;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = 0;
    return 0;
}

static int decode_rejects(const msgpack_object *map, icn_pool_counts *c, char *err, size_t errlen) {
    const msgpack_object *m = icn_map_get(map, "rejects");
    if (!m) return 0;
    if (m->type != MSGPACK_OBJECT_ARRAY) return icn_errf(err, errlen, "key 'rejects' is not an array");
    c->n_rejects = m->via.array.size;
    c->rejects = xcalloc(c->n_rejects ? c->n_rejects : 1, sizeof *c->rejects);
    for (size_t i = 0; i < c->n_rejects; i++) {
        const msgpack_object *a = &m->via.array.ptr[i];
        icn_pool_reject *r = &c->rejects[i];
        if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size != 3 || str_into(&a->via.array.ptr[0], r->peer, sizeof r->peer) ||
            str_into(&a->via.array.ptr[1], r->reason, sizeof r->reason) || int_of(&a->via.array.ptr[2], &r->count) ||
            r->count < 0)
            return icn_errf(err, errlen, "key 'rejects': entry %zu is not [peer, reason, count >= 0]", i);
    }
    return 0;
}

int icn_decode_pool_stats(const msgpack_object *map, icn_pool_counts *c, int64_t *rejected, int64_t *accept_failures,
                          int *ended, char *err, size_t errlen) {
    char e[ICN_ERRLEN];
    uint8_t u[16];
    memset(c, 0, sizeof *c);
    *accept_failures = 0, *ended = 0;
    const msgpack_object *end = icn_map_get(map, "ended");
    if (end && end->type != MSGPACK_OBJECT_BOOLEAN) return icn_errf(err, errlen, "stats: key 'ended' is not a bool");
    if (end) *ended = end->via.boolean;
    if (!icn_map_kind_is(map, "stats")) return icn_errf(err, errlen, "stats: reply is not of kind 'stats'");
    const msgpack_object *id = icn_map_get(map, "uuid");
    int bad_uuid = id && (str_into(id, c->uuid, sizeof c->uuid) || icn_uuid_parse(c->uuid, u));
    if (bad_uuid) snprintf(e, sizeof e, "key 'uuid' is not a UUID");
    if (bad_uuid || icn_map_i64(map, "total", 0, INT64_MAX, &c->total, e, sizeof e) ||
        icn_map_i64(map, "rejected", 0, INT64_MAX, rejected, e, sizeof e) ||
        (icn_map_get(map, "duplicates") && icn_map_i64(map, "duplicates", 0, INT64_MAX, &c->duplicates, e, sizeof e)) ||
        (icn_map_get(map, "accept_failures") && icn_map_i64(map, "accept_failures", 0, INT64_MAX, accept_failures, e, sizeof e)) ||
        decode_tallies(map, "per_class", &c->per_class, &c->n_class, e, sizeof e) ||
        decode_tallies(map, "per_generation", &c->per_generation, &c->n_generation, e, sizeof e) ||
        decode_tallies(map, "per_producer", &c->per_producer, &c->n_producer, e, sizeof e) ||
        decode_rejects(map, c, e, sizeof e)) {
        icn_pool_counts_free(c);
        return icn_errf(err, errlen, "stats: %s", e);
    }
    return 0;
}
