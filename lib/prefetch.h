/* prefetch.h: the introspective trainer's reader of the pool's records (icn-wire(5) "fetch"),
 * in pool order from a given offset, either on the caller's thread (each take is a request)
 * or by a thread of its own that fetches while the trainer trains (every 10 ms while records
 * come, backing off to 50 ms when none do, at once when a take found nothing), so that what
 * the pool has is already in memory when a round starts; a take then costs no round trip.
 *
 * Which records the trainer keeps is decided by the caller, record by record in pool order,
 * whichever way they were read: the training set does not depend on timing beyond what the
 * pool holds when the caller looks (sync: a round waits for its quota; async: it takes what
 * has come).
 *
 *   icn_prefetch_open   start reading at `offset` (background: a thread with its own socket)
 *   icn_prefetch_take   the next records [offset, offset + n), n >= 0
 *   icn_prefetch_wait   block until records are held (background) or sleep (direct)
 *   icn_prefetch_close  stop the thread, free what is held */
#ifndef ICN_PREFETCH_H
#define ICN_PREFETCH_H
#include <stddef.h>
#include <stdint.h>

#include "batch.h"

#define ICN_PREFETCH_RECORDS 4096 /* records asked for per request */

typedef struct icn_prefetch icn_prefetch;

/* Read the pool at `endpoint` from record `offset` on; replies may be up to max_reply bytes.
 * background: a thread fetches ahead, holding at most about max_held bytes of records; else
 * each take asks the pool itself. NULL with err when the thread cannot start. */
icn_prefetch *icn_prefetch_open(const char *endpoint, int64_t offset, int64_t max_reply, int background,
                                int64_t max_held, char *err, size_t errlen);
/* The records from `offset` (the caller's position: where the last take ended, or any offset
 * for a direct reader) into *records (the caller frees it), and the pool's record count as last
 * seen in *total. 1: records->n >= 0 of them (0: none new); 0: the pool did not answer in time
 * (direct only); -1 with err: the pool refused or the socket failed (the thread's own error
 * too), or a background reader was asked for an offset it is not at. */
int icn_prefetch_take(icn_prefetch *p, int64_t offset, icn_batch *records, int64_t *total, char *err, size_t errlen);
/* Background: return once records are held (at once if some are), an error is pending, or
 * timeout_ms passed; asks the thread to look now. Direct: sleep poll_ms (at most timeout_ms). */
void icn_prefetch_wait(icn_prefetch *p, int timeout_ms, int poll_ms);
/* How many records takes have found in memory, fetched ahead by the thread (0 when direct). */
int64_t icn_prefetch_taken_ahead(const icn_prefetch *p);
void icn_prefetch_close(icn_prefetch *p);

#endif
