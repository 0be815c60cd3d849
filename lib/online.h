/* online.h: the online synthesizer (icn-synthesize without --model): subscribe to the
 * trainer's snapshots, synthesize pseudo-negatives from the newest one, and deliver them to
 * the pool with acknowledgements (lib/sender.h), until the trainer says "stop" (or its
 * heartbeat says the run has finished), or has said nothing for liveness_s (lib/inbox.h), or
 * the pool refuses a batch because the run has ended.
 *
 * Snapshot channel (icn-wire(5)), received and decoded by a thread of its own (lib/inbox.h)
 * while synthesis computes: a "model" frame is a new generation (a re-sent one of the same
 * generation is ignored), taken between passes, which ends the call in flight; "hold" for
 * the current generation pauses until the next one; "stop" ends the loop. While the trainer is
 * quiet (three heartbeats missed) nothing is made: a batch made then may be for a run that
 * has ended.
 * Each generation starts the classes over in the same order, so one synthesizer with a seed
 * is reproducible; a generation taken again (not newer than the newest taken) draws from
 * a seed of its own, so that no image is made twice. A full window of unacknowledged batches pauses synthesis (back-pressure).
 * At the end, unacknowledged batches are waited for at most drain_ms. */
#ifndef ICN_ONLINE_H
#define ICN_ONLINE_H
#include <signal.h>
#include <stdint.h>

#include "progress.h"
#include "synth.h"
#include "batch.h"

typedef struct {
    const char *snapshots, *pool; /* endpoints: the trainer's PUB, the pool's intake */
    const char *snapshot_requests; /* the trainer's ROUTER; NULL: as its heartbeats say */
    double liveness_s;            /* 0: ICN_LIVENESS_S (lib/inbox.h) */
    icn_synth_opts synth;         /* head taken from each snapshot */
    int batch;                    /* samples per forward/backward pass */
    int chunk_batches;            /* passes' worth of samples per delivered batch (4) */
    int max_per_gen;              /* per class per generation; 0: no limit */
    uint32_t classes_mask;        /* 0: all the model's classes (up to 32) */
    uint32_t id;                  /* provenance producer id */
    uint64_t seed;
    int window, resend_ms, drain_ms; /* delivery: 16, 1000, 5000 */
    int quiet;
    int nice;                     /* synthesis runs this much nicer than the threads that receive
                                   * snapshots and talk to the pool (10; 0: as nice as they) */
    icn_metrics *metrics;         /* may be NULL */
    const volatile sig_atomic_t *stop; /* may be NULL: set from a signal handler to end the loop */
} icn_online_opts;

typedef struct {
    int64_t samples, reached;   /* synthesized, and how many met the stop rule */
    int64_t acked, refused;     /* images acknowledged / refused by the pool */
    int64_t unacked_batches;    /* still unanswered at the end */
    int64_t snapshots;          /* generations received */
    uint64_t producer;          /* this run's producer number on the wire */
    int ended;                  /* 1: the trainer ended the run; 2: it fell silent (liveness); 3: the
                                 * pool refused a batch because the run has ended; 0: *stop */
    char why[ICN_ERRLEN];       /* with ended: why, one line */
} icn_online_result;

void icn_online_opts_default(icn_online_opts *o);
/* 0 when the run ended (res->ended, res->why) or *stop was set, with *res; -1 with err when a
 * socket fails. */
int icn_synthesize_online(const icn_online_opts *o, icn_online_result *res, char *err, size_t errlen);

/* n pseudo-negatives of class k, labelled -(k+1), with provenance: samples index ..
 * index + n - 1 of (seed, generation, class, id). Returns how many met the stop rule, or -1
 * when s->interrupt stopped it (online: a snapshot came; b is then incomplete). Offline
 * synthesis uses it too. */
int icn_synth_batch(icn_synth *s, const icn_net *net, const icn_synth_opts *o, uint64_t seed, uint32_t id, int k, int n,
                    int64_t index, int32_t generation, icn_batch *b);

#endif
