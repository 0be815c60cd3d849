/* publisher.h: the snapshot channel's sending end (man icn-wire(5) "SNAPSHOTS"), after the
 * ZeroMQ guide's Clone pattern (updates on PUB, the current state on request beside it) with
 * its heartbeats (Clone's HUGZ, Paranoid Pirate's liveness).
 *
 * Two bound sockets, owned by a thread of the publisher's own, so that they are served while
 * the caller trains:
 *   PUB     (endpoint; lib/protocol.h icn_open_publisher: SNDHWM 2) each new snapshot, packed
 *           ONCE and sent once to every subscriber without copying; "hold" and "stop" once
 *           each; and every ICN_HEARTBEAT_MS a heartbeat: the newest generation, the run's
 *           state (running, hold, finished: so a lost "hold" or "stop" is repeated in every
 *           heartbeat after it) and where the ROUTER is. Subscriptions make nothing be sent:
 *           an allowed peer that subscribes and unsubscribes in a loop costs others nothing.
 *   ROUTER  (requests; lib/protocol.h icn_open_snapshot_router) "snapshot_request": answered,
 *           to that peer alone, with the newest snapshot (a heartbeat before the first one, or
 *           once the run has finished). A peer (its CURVE key; without CURVE its connection)
 *           is answered at most once per ICN_SNAPSHOT_REQUEST_GAP_MS, and all peers together
 *           at most ICN_SNAPSHOT_REPLIES_PER_S times a second; other requests are dropped
 *           unanswered (the asker asks again).
 * CURVE and ZAP apply to both as to every bound socket (transport.h). */
#ifndef ICN_PUBLISHER_H
#define ICN_PUBLISHER_H
#include <stddef.h>
#include <stdint.h>

#include "progress.h"
#include "protocol.h"
#include "snapshot.h"

#define ICN_HEARTBEAT_MS 1000
#define ICN_SNAPSHOT_REQUEST_GAP_MS 2000
#define ICN_SNAPSHOT_REPLIES_PER_S 8

typedef struct icn_publisher icn_publisher;

/* Bind endpoint (PUB) and requests (ROUTER; NULL: icn_snapshot_requests_default of endpoint),
 * and start the thread. metrics (may be NULL) get one event per snapshot sent: "publish" (a
 * new one, to every subscriber: wall-clock time and bytes, so delivery times can be measured)
 * and "reply" (to one peer that asked). NULL with err on failure. */
icn_publisher *icn_publisher_open(const char *endpoint, const char *requests, icn_metrics *metrics, char *err,
                                  size_t errlen);
/* Where the ROUTER binds unless told: tcp://HOST:PORT -> tcp://HOST:* (a port the kernel
 * picks; heartbeats say which), any other endpoint E -> E.req. */
void icn_snapshot_requests_default(const char *endpoint, char *out, size_t outlen);
/* Pack net as snapshot meta->generation and hand it to the thread, which sends it at once; it
 * is the newest from then on (what requests get), and the run's state is "running" again. */
int icn_publisher_snapshot(icn_publisher *p, const icn_net *net, const icn_model_meta *meta, char *err, size_t errlen);
/* Send "hold" or "stop" for generation once; the state (hold, finished) is in every heartbeat
 * from then on. */
int icn_publisher_control(icn_publisher *p, icn_msg_kind hold_or_stop, int64_t generation, char *err, size_t errlen);
/* Wait timeout_ms (0: not at all), returning early on a signal (the thread serves meanwhile).
 * 0; -1 with err when the thread's sockets failed. */
int icn_publisher_serve(icn_publisher *p, int timeout_ms, char *err, size_t errlen);
/* The endpoint the ROUTER bound (the port resolved), as heartbeats say it. */
const char *icn_publisher_requests(const icn_publisher *p);
typedef struct {
    int64_t published, heartbeats, replies, dropped; /* dropped: requests over a limit */
} icn_publisher_counts;
icn_publisher_counts icn_publisher_counts_of(icn_publisher *p);
/* Stop the thread (after sending what was handed to it, and a last heartbeat) and close. */
void icn_publisher_close(icn_publisher *p); /* NULL: nothing */

#endif
