/* pool_server.h: the serving loop of icn-pool(1).
 *
 * Opens (or creates) the store, binds PULL (batches of pseudo-negatives from synthesizers:
 * each frame untrusted, a bad one is logged and refused while serving goes on) and REP
 * (the trainer's "fetch" by offset and "stats" requests, icn-wire(5)), and serves until
 * SIGINT or SIGTERM. A frame that cannot be stored because of the disk stops the server
 * with a one-line error: nothing is dropped silently. */
#ifndef ICN_POOL_SERVER_H
#define ICN_POOL_SERVER_H
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

/* Serve until a signal; 0 after a clean stop (the store closed), or exits with a one-line error. */
int icn_pool_serve(const icn_pool_server_opts *o);

#endif
