/* sender.h: acknowledged, exactly-once delivery of batches to the pool (icn-wire(5) DELIVERY).
 *
 * The ZeroMQ guide's Lazy Pirate pattern (client-side reliability: a timeout, then close the
 * socket, open a new one and send again), over DEALER/ROUTER with a window instead of one
 * request at a time:
 *   - this process is one producer: a random nonzero 63-bit number drawn when the sender
 *     opens (a restarted process is a new producer); its batches carry seq = 1, 2, 3, ...;
 *   - at most `window` batches are unacknowledged at once (icn_sender_room() is 0 when the
 *     window is full: the caller stops making batches until acks come back: back-pressure);
 *   - the pool answers each batch "ack" once it is durable (or was stored before: a resent
 *     duplicate is acknowledged, not stored again) or "refused" with a reason, which is
 *     final; both take the batch out of the window; a refusal with "ended" says the run has
 *     ended (icn_sender_run_ended), and every later batch will be refused the same;
 *   - when no answer has come for resend_ms, the socket is closed and reopened and every
 *     unacknowledged batch is sent again, in order; the timeout doubles at each such resend
 *     (up to 16 s) and is resend_ms again once every batch is answered.
 * Nothing here calls ZeroMQ directly (lib/transport.c does). */
#ifndef ICN_SENDER_H
#define ICN_SENDER_H
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"

typedef struct icn_sender icn_sender;

typedef struct {
    int64_t sent, acked, refused, resent; /* batches (resent: sends after the first) */
    int64_t images_sent, images_acked;    /* images in those batches */
    int64_t reconnects;
} icn_sender_counts;

/* A sender to the pool's intake endpoint; NULL with err on failure. on_refused (may be NULL)
 * is called with each refused batch's seq and reason (seq 0: a frame the pool could not
 * attribute). */
icn_sender *icn_sender_open(const char *endpoint, int window, int resend_ms,
                            void (*on_refused)(uint64_t seq, const char *reason, void *ctx), void *ctx, char *err,
                            size_t errlen);
uint64_t icn_sender_producer(const icn_sender *s);
int icn_sender_room(const icn_sender *s);        /* batches that may still be sent now */
int64_t icn_sender_pending(const icn_sender *s); /* unacknowledged batches */
const icn_sender_counts *icn_sender_counts_of(const icn_sender *s);
int icn_sender_run_ended(const icn_sender *s); /* 1 once the pool refused a batch because the run has ended */
/* Send b as the next batch (seq = previous + 1); needs icn_sender_room() > 0. The batch is
 * kept (packed) until it is acknowledged or refused. 0; -1 with err (no room, socket error). */
int icn_sender_send(icn_sender *s, const icn_batch *b, char *err, size_t errlen);
/* Take answers for up to timeout_ms (0: only those already here), send what the window
 * holds unsent, and resend everything after resend_ms without an answer. 0; -1 with err on
 * a socket error. Returns early on a signal (errno EINTR). */
int icn_sender_pump(icn_sender *s, int timeout_ms, char *err, size_t errlen);
/* Pump until nothing is pending, or no answer came for `patience_ms`, or *stop is set.
 * Returns the number of batches left unacknowledged (0: all answered). */
int64_t icn_sender_drain(icn_sender *s, int patience_ms, const volatile sig_atomic_t *stop, char *err, size_t errlen);
void icn_sender_close(icn_sender *s);

#endif
