/* inbox.h: the subscriber side of the snapshot channel (icn-wire(5) SNAPSHOTS), on a thread
 * of its own.
 *
 * The thread receives each frame the moment ZeroMQ has it, checks and decodes it in place
 * (icn_msg_decode: the 17 MB model is read where ZeroMQ received it), and keeps what matters
 * to a synthesizer: the newest model not yet taken (a newer one replaces it: at most one
 * model waits), the highest generation a "hold" named since that model, and the end of the
 * run. The synthesizer looks between passes (icn_inbox_ready costs one atomic load) and takes
 * what came; it never waits for a frame to be received or decoded, and a snapshot arrives
 * while it computes.
 *
 * The Clone pattern's late joiner (lib/publisher.h): a heartbeat names the newest generation
 * and where snapshot requests go; when it names one we do not hold (we joined late, or missed
 * it: dropped by a high-water mark), the thread asks for it on a DEALER, at most once per ICN_INBOX_REQUEST_RETRY_MS, and
 * the reply is kept as a snapshot from the PUB would be. A re-sent model of the newest
 * generation and a hold for an older generation are ignored; a heartbeat whose state is
 * "hold" for our generation is a hold, "finished" is a stop.
 *
 * Liveness (Paranoid Pirate): once anything has come from the trainer, a trainer that has
 * sent no heartbeat for three of its heartbeat intervals (1 s until one says) is "quiet" (icn_inbox_quiet: make nothing, it may be
 * gone), and one that has sent none for liveness_s is gone: the run is over for us (news.stop
 * 2, news.why says so). When a heartbeat was sent is told by its "time" against the least lag
 * seen, which may rise by 20 ms a second, no faster (so any number that waited in a buffer
 * while we were stopped or the link was down count from when they were sent, and a steady
 * offset between the clocks cancels out); before any is known, one that comes within
 * ICN_INBOX_GRACE_MS of a stall or of the start and says it is over 1 s old is taken at its
 * word (a worker stopped before its first heartbeat). A
 * process stopped or starved for a while (SIGSTOP) first gives the frames waiting for it
 * ICN_INBOX_GRACE_MS to arrive. Before the trainer's first frame there is no limit: a worker
 * may start before its trainer.
 *
 * Once the first model has arrived, the subscription (and the requester) are opened again
 * with ZMQ_MAXMSGSIZE = its size plus a margin: no later frame may be larger. A frame that
 * does not decode is refused with one line on stderr and changes nothing.
 *
 *   icn_inbox_open   subscribe to `endpoint` and start the thread
 *   icn_inbox_ready  something new since the last take (lock-free)
 *   icn_inbox_quiet  the trainer has been silent for three heartbeats (lock-free)
 *   icn_inbox_wait   block until something is new, or timeout_ms
 *   icn_inbox_take   what came since the last take
 *   icn_inbox_close  stop the thread, free what is held */
#ifndef ICN_INBOX_H
#define ICN_INBOX_H
#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "snapshot.h"
#include "util.h"

#define ICN_INBOX_RECEIPTS 16 /* receipts kept between takes (older ones are counted, not kept) */
#define ICN_LIVENESS_S 30     /* default liveness_s */
#define ICN_INBOX_REQUEST_RETRY_MS 3000
#define ICN_INBOX_GRACE_MS 2000

typedef struct icn_inbox icn_inbox;

typedef struct {
    const char *endpoint; /* the trainer's PUB */
    const char *requests; /* its ROUTER; NULL: as its heartbeats say (tcp: their port on
                           * endpoint's host) */
    double liveness_s;    /* 0: ICN_LIVENESS_S */
} icn_inbox_opts;

typedef struct {
    int has_model;        /* 1: net and meta are a new generation, now the caller's (icn_net_free) */
    icn_net net;
    icn_model_meta meta;
    int64_t hold;         /* the highest generation a hold named since the newest model came, -1
                           * none (kept across takes, cleared by a new model) */
    int stop;             /* the run is over (kept across takes): 1 the trainer said so ("stop", or
                           * a heartbeat "finished"); 2 it has been silent for liveness_s */
    char why[ICN_ERRLEN]; /* with stop: one line saying why */
    /* every new model decoded since the last take, taken or replaced: when it was ready */
    int receipts, receipts_lost;
    struct {
        int64_t generation;
        double time; /* icn_wallclock() when decoded */
        size_t bytes;
    } receipt[ICN_INBOX_RECEIPTS];
} icn_inbox_news;

/* NULL with err when a socket or the thread cannot start. o is kept by pointer. */
icn_inbox *icn_inbox_open(const icn_inbox_opts *o, char *err, size_t errlen);
int icn_inbox_ready(icn_inbox *ib);
int icn_inbox_quiet(icn_inbox *ib);
/* 1 when something is new (or the thread failed), 0 after timeout_ms. */
int icn_inbox_wait(icn_inbox *ib, int timeout_ms);
/* 0 with *news; -1 with err when the subscription failed (the socket, not a bad frame). */
int icn_inbox_take(icn_inbox *ib, icn_inbox_news *news, char *err, size_t errlen);
/* Snapshot requests sent so far (for tests). */
int64_t icn_inbox_requests(icn_inbox *ib);
void icn_inbox_close(icn_inbox *ib);

#endif
