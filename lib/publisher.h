/* publisher.h: the snapshot channel's sending end (man icn-wire(5) "SNAPSHOT CHANNEL"), a
 * last-value cache after the ZeroMQ guide's pattern of that name.
 *
 * The socket is an XPUB bound to the endpoint (lib/protocol.h icn_open_publisher: SNDHWM 2,
 * MAXMSGSIZE of a subscription, every subscription reported). Each snapshot is packed ONCE
 * into one buffer and sent once to every subscriber without copying (ZeroMQ keeps a reference;
 * the cache keeps another). A control frame ("hold", "stop") is sent once and cached beside
 * the snapshot it follows. When a subscription arrives (a synthesizer that starts, restarts,
 * reopens its socket or reconnects after its link came back), the cache is sent again: the
 * newest snapshot, then the control frame sent after it if any; after "stop", only "stop".
 * Subscribers that had it already ignore a snapshot of the generation they hold. Subscriptions
 * that come close together are answered by one resend, at most one per ICN_RESEND_GAP_MS.
 *
 * Subscriptions are answered only inside icn_publisher_* calls: a process that waits should
 * wait in icn_publisher_serve. CURVE and ZAP apply as to every bound socket (transport.h): a
 * refused peer never subscribes, so it is sent nothing. */
#ifndef ICN_PUBLISHER_H
#define ICN_PUBLISHER_H
#include <stddef.h>
#include <stdint.h>

#include "progress.h"
#include "protocol.h"
#include "snapshot.h"

#define ICN_RESEND_GAP_MS 250

typedef struct icn_publisher icn_publisher;

/* Bind endpoint. metrics (may be NULL) get one event per send: "publish" (a new snapshot:
 * wall-clock time and bytes, so delivery times can be measured) and "resend" (the cache, for
 * n new subscriptions). NULL with err on failure. */
icn_publisher *icn_publisher_open(const char *endpoint, icn_metrics *metrics, char *err, size_t errlen);
/* Pack net as snapshot meta->generation, send it, and make it the cached value. */
int icn_publisher_snapshot(icn_publisher *p, const icn_net *net, const icn_model_meta *meta, char *err, size_t errlen);
/* Send "hold" or "stop" for generation and cache it after the snapshot. */
int icn_publisher_control(icn_publisher *p, icn_msg_kind hold_or_stop, int64_t generation, char *err, size_t errlen);
/* Wait up to timeout_ms (0: only look) for subscriptions and answer those that came with the
 * cache (once for all of them). Returns how many subscriptions came (0 also on a signal), or
 * -1 with err when the socket fails. */
int icn_publisher_serve(icn_publisher *p, int timeout_ms, char *err, size_t errlen);
/* Send the cache again now, to everyone (a trainer that hears nothing for long: a subscriber
 * may have missed the snapshot, dropped by SNDHWM or sent just before its subscription). */
int icn_publisher_resend(icn_publisher *p, char *err, size_t errlen);
/* How many times the cache was sent again (for tests). */
int64_t icn_publisher_resends(const icn_publisher *p);
void icn_publisher_close(icn_publisher *p); /* NULL: nothing */

#endif
