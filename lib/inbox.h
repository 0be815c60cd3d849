/* inbox.h: the subscriber side of the snapshot channel (icn-wire(5)), on a thread of its own.
 *
 * The thread receives each frame the moment ZeroMQ has it, checks and decodes it in place
 * (icn_msg_decode: the 17 MB model is read where ZeroMQ received it), and keeps what matters
 * to a synthesizer: the newest model not yet taken (a newer one replaces it: at most one
 * model waits), the highest generation a "hold" named since that model, and "stop". The
 * synthesizer looks between passes (icn_inbox_ready costs one atomic load) and takes what
 * came; it never waits for a frame to be received or decoded, and a snapshot arrives while it
 * computes.
 *
 * A re-sent model of the newest generation (the publisher's cache, for a new subscriber) and
 * a hold for an older generation than the newest model are ignored. Once the first model
 * has arrived, the subscription is opened again with ZMQ_MAXMSGSIZE = its size plus a margin:
 * no later frame may be larger. A frame that does not decode is refused with one line on
 * stderr and changes nothing.
 *
 *   icn_inbox_open   subscribe to `endpoint` and start the thread
 *   icn_inbox_ready  something new since the last take (lock-free)
 *   icn_inbox_wait   block until something is new, or timeout_ms
 *   icn_inbox_take   what came since the last take
 *   icn_inbox_close  stop the thread, free what is held */
#ifndef ICN_INBOX_H
#define ICN_INBOX_H
#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "snapshot.h"

#define ICN_INBOX_RECEIPTS 16 /* receipts kept between takes (older ones are counted, not kept) */

typedef struct icn_inbox icn_inbox;

typedef struct {
    int has_model;        /* 1: net and meta are a new generation, now the caller's (icn_net_free) */
    icn_net net;
    icn_model_meta meta;
    int64_t hold;         /* the highest generation a hold named since the newest model came, -1
                           * none (kept across takes, cleared by a new model) */
    int stop;             /* the publisher said stop (kept across takes) */
    /* every new model decoded since the last take, taken or replaced: when it was ready */
    int receipts, receipts_lost;
    struct {
        int64_t generation;
        double time; /* icn_wallclock() when decoded */
        size_t bytes;
    } receipt[ICN_INBOX_RECEIPTS];
} icn_inbox_news;

/* NULL with err when the socket or the thread cannot start. */
icn_inbox *icn_inbox_open(const char *endpoint, char *err, size_t errlen);
int icn_inbox_ready(icn_inbox *ib);
/* 1 when something is new (or the thread failed), 0 after timeout_ms. */
int icn_inbox_wait(icn_inbox *ib, int timeout_ms);
/* 0 with *news; -1 with err when the subscription failed (the socket, not a bad frame). */
int icn_inbox_take(icn_inbox *ib, icn_inbox_news *news, char *err, size_t errlen);
void icn_inbox_close(icn_inbox *ib);

#endif
