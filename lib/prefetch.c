/* prefetch.c: reading the pool's records ahead of the trainer (prefetch.h). */
#include "prefetch.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol.h"
#include "transport.h"
#include "util.h"

#define REQUEST_TIMEOUT_MS 5000
#define IDLE_POLL_MS 50 /* background, the trainer training: look again after 10 ms, doubling
                          * after each look that found nothing, up to this */
#define WAIT_POLL_MS 10 /* ... and every 10 ms while it waits */

typedef struct chunk {
    icn_batch records; /* records [offset, offset + records.n) */
    int64_t offset;
    struct chunk *next;
} chunk;

struct icn_prefetch {
    const char *endpoint;
    int64_t max_reply, max_held;
    int background;
    void *req; /* direct: the caller's; background: the thread's */
    /* background: the thread's state, under mu */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t got, poke; /* got: records or an error came; poke: look now, or stop */
    chunk *head, *tail;
    int64_t next, total, held_bytes, taken_ahead;
    int waiting, stop, failed;
    char err[ICN_ERRLEN];
};

/* Ask the pool for ICN_PREFETCH_RECORDS records from offset: 1 with *records (owned by the
 * caller) and *total; 0: no answer in time; -1 with err. */
static int fetch(void **req, const char *endpoint, int64_t max_reply, int64_t offset, icn_batch *records,
                 int64_t *total, char *err, size_t errlen) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    icn_pack_fetch(&sb, offset, ICN_PREFETCH_RECORDS);
    icn_msg reply;
    int rc = icn_request(req, endpoint, &sb, REQUEST_TIMEOUT_MS, max_reply, ICN_MSG_RECORDS, &reply, err, errlen);
    if (rc == 1) {
        *total = reply.total, *records = reply.batch; /* records now owns the batch */
        reply.batch = (icn_batch){0};
        icn_msg_free(&reply);
    }
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void *run(void *arg) {
    icn_prefetch *p = arg;
    int idle_ms = WAIT_POLL_MS;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        if (p->held_bytes >= p->max_held) { /* enough in memory: wait for the trainer to take some */
            struct timespec at;
            icn_deadline_in(&at, IDLE_POLL_MS);
            pthread_cond_timedwait(&p->poke, &p->mu, &at);
            continue;
        }
        int64_t offset = p->next;
        pthread_mutex_unlock(&p->mu);
        icn_batch records = {0};
        int64_t total = 0;
        char err[ICN_ERRLEN] = "";
        int rc = fetch(&p->req, p->endpoint, p->max_reply, offset, &records, &total, err, sizeof err);
        pthread_mutex_lock(&p->mu);
        if (rc < 0) {
            snprintf(p->err, sizeof p->err, "%s", err);
            p->failed = 1;
            pthread_cond_broadcast(&p->got);
            break;
        }
        if (rc == 1) p->total = total;
        if (rc == 1 && records.n > 0) {
            chunk *c = xcalloc(1, sizeof *c);
            c->records = records, c->offset = offset;
            if (p->tail) p->tail->next = c;
            else p->head = c;
            p->tail = c;
            p->next = offset + records.n;
            p->held_bytes += records.n * (icn_batch_dim(&records) * (int64_t)sizeof(float) + 64);
            pthread_cond_broadcast(&p->got);
            idle_ms = WAIT_POLL_MS;
            if (p->next < total) continue; /* more is there already */
        } else {
            icn_batch_free(&records);
            if (rc == 1) idle_ms = idle_ms * 2 < IDLE_POLL_MS ? idle_ms * 2 : IDLE_POLL_MS;
        }
        if (rc == 0) continue; /* no answer: icn_request reopened the socket; ask again */
        struct timespec at; /* look again soon, at once when poked (a take or a wait) */
        icn_deadline_in(&at, p->waiting ? WAIT_POLL_MS : idle_ms);
        pthread_cond_timedwait(&p->poke, &p->mu, &at);
    }
    pthread_mutex_unlock(&p->mu);
    if (p->req) icn_zmq_close(p->req);
    p->req = NULL;
    return NULL;
}

icn_prefetch *icn_prefetch_open(const char *endpoint, int64_t offset, int64_t max_reply, int background,
                                int64_t max_held, char *err, size_t errlen) {
    icn_prefetch *p = xcalloc(1, sizeof *p);
    p->endpoint = endpoint, p->max_reply = max_reply, p->max_held = max_held, p->next = offset;
    if (!background) return p;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->got, NULL);
    pthread_cond_init(&p->poke, NULL);
    int rc = pthread_create(&p->thread, NULL, run, p);
    if (rc) {
        icn_errf(err, errlen, "cannot start the pool prefetch thread: %s", strerror(rc));
        pthread_mutex_destroy(&p->mu), pthread_cond_destroy(&p->got), pthread_cond_destroy(&p->poke);
        free(p);
        return NULL;
    }
    p->background = 1;
    return p;
}

int icn_prefetch_take(icn_prefetch *p, int64_t offset, icn_batch *records, int64_t *total, char *err, size_t errlen) {
    *records = (icn_batch){0};
    if (!p->background) return fetch(&p->req, p->endpoint, p->max_reply, offset, records, total, err, errlen);
    pthread_mutex_lock(&p->mu);
    int rc = 1;
    if (p->head && p->head->offset != offset) {
        rc = icn_errf(err, errlen, "pool prefetch: asked for record %lld, holding from %lld", (long long)offset,
                      (long long)p->head->offset);
    } else if (!p->head && p->next != offset) {
        rc = icn_errf(err, errlen, "pool prefetch: asked for record %lld, reading from %lld", (long long)offset,
                      (long long)p->next);
    } else if (p->head) {
        chunk *c = p->head;
        *records = c->records;
        p->head = c->next;
        if (!p->head) p->tail = NULL;
        p->held_bytes -= records->n * (icn_batch_dim(records) * (int64_t)sizeof(float) + 64);
        p->taken_ahead += records->n;
        free(c);
        pthread_cond_signal(&p->poke); /* room again, if it was full */
    } else if (p->failed) {
        rc = icn_errf(err, errlen, "%s", p->err);
    } else {
        pthread_cond_signal(&p->poke); /* nothing held: look now, for the next take */
    }
    *total = p->total;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void icn_prefetch_wait(icn_prefetch *p, int timeout_ms, int poll_ms) {
    if (!p->background) {
        int ms = poll_ms < timeout_ms ? poll_ms : timeout_ms;
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        return;
    }
    struct timespec at;
    icn_deadline_in(&at, timeout_ms);
    pthread_mutex_lock(&p->mu);
    p->waiting = 1;
    pthread_cond_signal(&p->poke);
    while (!p->head && !p->failed)
        if (pthread_cond_timedwait(&p->got, &p->mu, &at) == ETIMEDOUT) break;
    p->waiting = 0;
    pthread_mutex_unlock(&p->mu);
}

int64_t icn_prefetch_taken_ahead(const icn_prefetch *p) { return p->taken_ahead; }

void icn_prefetch_close(icn_prefetch *p) {
    if (!p) return;
    if (p->background) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_signal(&p->poke);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
        for (chunk *c = p->head, *next; c; c = next) {
            next = c->next;
            icn_batch_free(&c->records);
            free(c);
        }
        pthread_mutex_destroy(&p->mu), pthread_cond_destroy(&p->got), pthread_cond_destroy(&p->poke);
    }
    if (p->req) icn_zmq_close(p->req);
    free(p);
}
