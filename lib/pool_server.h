/* pool_server.h: the serving loop of icn-pool(1).
 *
 * Opens (or creates) the store, binds the intake ROUTER (batches of pseudo-negatives from
 * synthesizers, each with its producer and sequence number: a batch is answered "ack" once
 * it is stored under the fsync policy, an "ack" with "duplicate":true when its (peer,
 * producer, seq) was stored before; "refused" with the reason when it is bad; icn-wire(5)
 * DELIVERY) and REP (the trainer's "fetch" by offset
 * and "stats" requests; the head's "end" of its run, after which new batches made from a
 * run's snapshots are refused with "ended":true, and "begin" of the next), and serves until *stop becomes non-zero (the program's SIGINT and SIGTERM
 * handler sets it; installed without SA_RESTART, so that blocking calls return EINTR: handlers
 * and how to exit are the program's business, not the library's). A batch that cannot be stored
 * because of the disk stops the server with a one-line error, unacknowledged: nothing
 * acknowledged is ever lost. */
#ifndef ICN_POOL_SERVER_H
#define ICN_POOL_SERVER_H
#include <signal.h>
#include <stdio.h>

#include "pool.h"

typedef struct {
    const char *store, *intake, *rep;  /* store file and the two endpoints */
    const icn_pool_contract *contract; /* required for a new store; NULL: the store's header */
    icn_fsync_policy fsync;
    FILE *log;                      /* NULL: stderr, no timestamps */
    int quiet;                      /* only refusals and errors */
} icn_pool_server_opts;

/* Serve until *stop; 0 after a clean stop (the store closed and synced); -1 with one line
 * in err when the store cannot be opened, written or synced, or a socket fails. */
int icn_pool_serve(const icn_pool_server_opts *o, volatile sig_atomic_t *stop, char *err, size_t errlen);

#endif
