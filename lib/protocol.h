/* protocol.h: every message of icn-wire(5), packed and decoded in one place.
 *
 * Channels and the kinds each one carries (man icn-wire(5)):
 *   snapshots  trainer PUB -> synthesizer SUB      model, hold, stop, heartbeat
 *   snapshot requests  synthesizer DEALER -> trainer ROUTER  snapshot_request
 *              trainer ROUTER -> synthesizer DEALER          model, heartbeat
 *   intake     synthesizer DEALER -> pool ROUTER   batch (with producer and seq)
 *              pool ROUTER -> synthesizer DEALER   ack, refused
 *   requests   trainer REQ -> pool REP             fetch, stats
 *              pool REP -> trainer REQ             records, stats, error
 *
 * A received frame is untrusted: icn_msg_decode() checks it (icn_frame_unpack: every declared
 * size against the bytes present, before anything is allocated), unpacks it ONCE, and decodes
 * the kinds the channel accepts into an icn_msg; any other kind is refused with one line. */
#ifndef ICN_PROTOCOL_H
#define ICN_PROTOCOL_H
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "pool.h"
#include "snapshot.h"
#include "util.h"
#include "batch.h"

typedef enum {
    ICN_MSG_MODEL = 1 << 0,   /* a model / snapshot (icn-wire(5) MODEL AND SNAPSHOT FRAMES) */
    ICN_MSG_HOLD = 1 << 1,    /* {"kind":"hold","generation":g} */
    ICN_MSG_STOP = 1 << 2,    /* {"kind":"stop","generation":g} */
    ICN_MSG_BATCH = 1 << 3,   /* a batch; on the intake with "producer" and "seq" */
    ICN_MSG_ACK = 1 << 4,     /* {"kind":"ack","producer":p,"seq":s}: stored; with "duplicate":true,
                               * stored before (the pool did not store it again) */
    ICN_MSG_REFUSED = 1 << 5, /* {"kind":"refused","producer":p,"seq":s,"reason":text}: final; with
                               * "ended":true, the run has ended (nothing more is taken from anyone) */
    ICN_MSG_FETCH = 1 << 6,   /* {"kind":"fetch","offset":o,"max":m} */
    ICN_MSG_STATS_REQUEST = 1 << 7, /* {"kind":"stats"} with no other key */
    ICN_MSG_RECORDS = 1 << 8, /* {"kind":"records","offset":o,"total":t[,"batch":B]} */
    ICN_MSG_STATS = 1 << 9,   /* {"kind":"stats","total":t,...}: the pool's counts */
    ICN_MSG_ERROR = 1 << 10,  /* {"kind":"error","message":text} */
    ICN_MSG_END = 1 << 11,    /* {"kind":"end"}: the head's run has ended; answered with "stats" */
    ICN_MSG_BEGIN = 1 << 12,  /* {"kind":"begin"}: a run of the head's begins; answered with "stats" */
    /* the snapshot channel's liveness and the Clone pattern's snapshot requests (issue 24) */
    ICN_MSG_HEARTBEAT = 1 << 20, /* {"kind":"heartbeat","generation":g,"state":s,"interval_ms":i,"requests":e,"time":t} */
    ICN_MSG_SNAPSHOT_REQUEST = 1 << 21, /* {"kind":"snapshot_request"} */
} icn_msg_kind;

/* The run's state as a heartbeat says it ("state"): synthesize for its generation; that
 * generation has all it needs (a sticky "hold"); the run is over (a sticky "stop"). */
typedef enum { ICN_RUN_RUNNING = 0, ICN_RUN_HOLD = 1, ICN_RUN_FINISHED = 2 } icn_run_state;
const char *icn_run_state_name(icn_run_state s);
#define ICN_HEARTBEAT_MIN_MS 10     /* the range a heartbeat's interval_ms may take */
#define ICN_HEARTBEAT_MAX_MS 60000
#define ICN_ENDPOINT_LEN 256        /* a heartbeat's "requests" endpoint, with its terminator */

#define ICN_SNAPSHOT_KINDS (ICN_MSG_MODEL | ICN_MSG_HOLD | ICN_MSG_STOP | ICN_MSG_HEARTBEAT)
#define ICN_SNAPSHOT_REPLY_KINDS (ICN_MSG_MODEL | ICN_MSG_HEARTBEAT)
#define ICN_INTAKE_REPLY_KINDS (ICN_MSG_ACK | ICN_MSG_REFUSED)
#define ICN_REQUEST_KINDS (ICN_MSG_FETCH | ICN_MSG_STATS_REQUEST | ICN_MSG_END | ICN_MSG_BEGIN)
#define ICN_FETCH_MAX 65536 /* records one fetch may ask for */
#define ICN_BATCH_MAX_IMAGES 4096 /* images one intake batch may hold (icn-synthesize --batch) */

/* One decoded message. Only the fields of its kind are set; icn_msg_free releases them. */
typedef struct {
    icn_msg_kind kind;
    int64_t generation;      /* hold, stop */
    uint64_t producer, seq;  /* batch (both 0 when absent), ack, refused */
    int duplicate;           /* ack: stored before, not stored again */
    int ended;               /* refused: because the run has ended; stats: the run has ended */
    icn_batch batch;         /* batch; records (n = 0 when none) */
    int64_t offset, total, max; /* fetch (offset, max); records (offset, total) */
    char text[ICN_ERRLEN];   /* refused: the reason; error: the message */
    icn_net net;             /* model */
    icn_model_meta meta;     /* model */
    icn_pool_counts counts;  /* stats */
    int64_t rejected;        /* stats */
    int64_t accept_failures; /* stats: connections the server could not accept, out of descriptors (0 when absent) */
    /* heartbeat (generation above: the newest snapshot's, -1 before the first) */
    icn_run_state state;
    int64_t interval_ms;
    char endpoint[ICN_ENDPOINT_LEN]; /* where snapshot requests go, as the publisher bound it */
    double time;                     /* the publisher's wall clock when it sent the heartbeat */
} icn_msg;

const char *icn_msg_kind_name(icn_msg_kind k);
/* Decode one frame of n bytes accepting the kinds in the mask `accept`. 0 and *m (free with
 * icn_msg_free); -1 with one line in err (nothing to free, but m->producer and m->seq are
 * set when a batch's origin could be read, so that its refusal can name it). A batch on the
 * intake (ICN_MSG_BATCH with need_origin) must carry producer >= 1 and seq >= 1; records must
 * carry labels, all < 0, and provenance, with offset + n <= total. */
int icn_msg_decode(const uint8_t *p, size_t n, unsigned accept, int need_origin, icn_msg *m, char *err, size_t errlen);
void icn_msg_free(icn_msg *m);

/* Packing: each appends one message to sb (msgpack_sbuffer_init'ed by the caller). */
void icn_pack_control(msgpack_sbuffer *sb, icn_msg_kind hold_or_stop, int64_t generation);
void icn_pack_batch_from(msgpack_sbuffer *sb, const icn_batch *b, uint64_t producer, uint64_t seq);
void icn_pack_ack(msgpack_sbuffer *sb, uint64_t producer, uint64_t seq);
void icn_pack_duplicate(msgpack_sbuffer *sb, uint64_t producer, uint64_t seq); /* an ack with "duplicate":true */
void icn_pack_refused(msgpack_sbuffer *sb, uint64_t producer, uint64_t seq, const char *reason);
void icn_pack_fetch(msgpack_sbuffer *sb, int64_t offset, int64_t max);
void icn_pack_stats_request(msgpack_sbuffer *sb);
void icn_pack_run_request(msgpack_sbuffer *sb, icn_msg_kind end_or_begin); /* {"kind":"end"} or "begin" */
void icn_pack_run_ended(msgpack_sbuffer *sb, uint64_t producer, uint64_t seq); /* refused, "ended":true */
/* A batch map cannot hold n = 0, so an empty reply (offset >= total) has no "batch" key. */
void icn_pack_records(msgpack_sbuffer *sb, int64_t offset, int64_t total, const icn_batch *records);
void icn_pack_error(msgpack_sbuffer *sb, const char *message);
/* The snapshot channel's heartbeat and a snapshot request (icn-wire(5) SNAPSHOTS). */
void icn_pack_heartbeat(msgpack_sbuffer *sb, int64_t generation, icn_run_state state, int64_t interval_ms,
                        const char *requests, double time);
void icn_pack_snapshot_request(msgpack_sbuffer *sb);

/* The pool protocol's "stats" reply (icn-wire(5), POOL PROTOCOL):
 * {"kind":"stats","uuid":"...","total":n,"rejected":r,"duplicates":d,"per_class":{k:count},
 *  "per_generation":{g:count},"per_producer":{id:count},"rejects":[[peer,reason,count],...]},
 * the three inner maps keyed by integers. Decoding validates it as untrusted input ("uuid",
 * "duplicates" and "rejects" may be missing: older pools do not send them); counts is always set (free with icn_pool_counts_free). */
void icn_pack_pool_stats(msgpack_sbuffer *sb, const icn_pool_counts *c, int64_t rejected, int64_t accept_failures,
                         int ended);
int icn_decode_pool_stats(const msgpack_object *map, icn_pool_counts *c, int64_t *rejected, int64_t *accept_failures,
                          int *ended, char *err, size_t errlen);

/* Sockets of each channel, with the bounds that match what it carries (icn-wire(5) LIMITS):
 *   publisher   PUB bound: SNDHWM 2, so a subscriber that stops reading holds at most the
 *               two newest messages in our memory (newer ones are dropped for it alone);
 *               subscriptions are ZeroMQ's business only (MAXMSGSIZE ICN_SMALL_MSG): no
 *               subscription makes anything be sent (issue 24, item 4).
 *   subscriber  SUB connected, RCVHWM ICN_SUBSCRIBE_HWM (a frame beyond it is dropped: the next
 *               heartbeat names what was missed), MAXMSGSIZE max_model (0: the frame limit,
 *               until the first snapshot tells the model's size). Not CONFLATE: it keeps only
 *               the newest frame, and would lose every heartbeat sent just before a snapshot.
 *   snapshot router     ROUTER bound beside the publisher: MAXMSGSIZE ICN_SMALL_MSG (a
 *               request), RCVHWM ICN_INTAKE_HWM, SNDHWM 1 (a peer that stops reading holds at
 *               most one reply in our memory; more are dropped for it).
 *   snapshot requester  DEALER connected: MAXMSGSIZE max_model (0: the frame limit), SNDHWM 1
 *               (one request waits for the connection, and goes the moment it is made), no
 *               linger.
 *   intake      ROUTER bound: MAXMSGSIZE max_batch, RCVHWM ICN_INTAKE_HWM per peer.
 *   sender      DEALER connected: MAXMSGSIZE ICN_SMALL_MSG (acknowledgements), IMMEDIATE,
 *               no automatic reconnection and no linger (the sender reconnects, in order).
 *   requests    REP bound: MAXMSGSIZE ICN_SMALL_MSG (a fetch or stats request), RCVHWM
 *               ICN_INTAKE_HWM.
 * ICN_SMALL_MSG also bounds the handshake's commands (ZMTP 3 applies MAXMSGSIZE to them; a
 * CURVE INITIATE with its metadata is about 300 bytes). */
#define ICN_SMALL_MSG 4096
#define ICN_INTAKE_HWM 64
#define ICN_PUBLISH_HWM 2
#define ICN_SUBSCRIBE_HWM 2
void *icn_open_publisher(const char *endpoint, char *err, size_t errlen);
void *icn_open_subscriber(const char *endpoint, int64_t max_model, char *err, size_t errlen);
void *icn_open_snapshot_router(const char *endpoint, char *err, size_t errlen);
void *icn_open_snapshot_requester(const char *endpoint, int64_t max_model, char *err, size_t errlen);
void *icn_open_intake(const char *endpoint, int64_t max_batch, char *err, size_t errlen);
void *icn_open_sender(const char *endpoint, char *err, size_t errlen);
void *icn_open_requests(const char *endpoint, char *err, size_t errlen);
/* The largest intake batch of ICN_BATCH_MAX_IMAGES images of h x w x c, with labels,
 * provenance and origin. */
int64_t icn_intake_max_bytes(int32_t h, int32_t w, int32_t c);

/* Client side of the request channel: send a request and wait for its reply, decoded as one
 * of `accept` (a reply of kind "error" becomes -1 with its message in err). On timeout the
 * REQ socket is closed and reopened (*sock changes), so a pool restart is survived; *sock may
 * be NULL: it is opened on first use, with ZMQ_MAXMSGSIZE max_reply (0: the frame limit).
 * Returns 1 with the reply in *reply (icn_msg_free it); 0 on timeout ("pool at ENDPOINT did
 * not answer within N ms") or interruption (errno EINTR); -1 on error. */
int icn_request(void **sock, const char *endpoint, const msgpack_sbuffer *request, int timeout_ms,
                int64_t max_reply, unsigned accept, icn_msg *reply, char *err, size_t errlen);

#endif
