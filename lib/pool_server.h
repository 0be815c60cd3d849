/* pool_server.h: the serving loop of icn-pool(1).
 *
 * Opens (or creates) the store, binds PULL (batches of pseudo-negatives from synthesizers:
 * each frame untrusted, a bad one is logged and refused while serving goes on) and REP
 * (the trainer's "fetch" by offset and "stats" requests, icn-wire(5)), and serves until *stop
 * becomes non-zero (the program's signal handler sets it; blocking calls must then return EINTR,
 * so install it without SA_RESTART). A frame that cannot be stored because of the disk stops the
 * server with a one-line error: nothing is dropped silently. Installing handlers and deciding how
 * to exit are the program's business. */
#ifndef ICN_POOL_SERVER_H
#define ICN_POOL_SERVER_H
#include <signal.h>
#include <stdio.h>

#include "pool.h"

#define ICN_POOL_FETCH_MAX 65536 /* records one fetch may ask for */

typedef struct {
    const char *store, *pull, *rep; /* store file and the two endpoints */
    const icn_pool_contract *contract; /* required for a new store; NULL: the store's header */
    icn_fsync_policy fsync;
    FILE *log;                      /* NULL: stderr, no timestamps */
    int quiet;                      /* only refusals and errors */
} icn_pool_server_opts;

/* Serve until *stop; 0 after a clean stop (the store closed), -1 with a one-line error (a socket,
 * the disk, the store) after closing the store. */
int icn_pool_serve(const icn_pool_server_opts *o, volatile sig_atomic_t *stop, char *err, size_t errlen);

#endif
