/* counts.h: the small sorted counters behind the pool's in-memory index (lib/pool.c): tallies
 * (int64 key -> count, sorted by key), name sets (a name -> a small id, in order of first
 * use) and sets of sequence numbers per (peer id, producer) kept as spans. Grow-only; free a
 * tally or span set's v with free(), a name set with icn_names_free. */
#ifndef ICN_COUNTS_H
#define ICN_COUNTS_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t key, count;
} icn_tally;

typedef struct {
    icn_tally *v;
    size_t n, cap;
} icn_tally_set;

typedef struct {
    char **v;
    size_t n, cap;
} icn_name_set;

typedef struct {
    uint32_t peer; /* an id in a name set */
    uint64_t producer, lo, hi;
} icn_seq_span;

typedef struct {
    icn_seq_span *v;
    size_t n, cap;
} icn_span_set;

void icn_tally_add(icn_tally_set *t, int64_t key, int64_t by); /* a new key is inserted in order */
int64_t icn_tally_get(const icn_tally_set *t, int64_t key);    /* 0 when absent */
void icn_tally_copy(const icn_tally_set *t, icn_tally **v, size_t *n); /* a malloc'd copy of the entries */
size_t icn_name_id(icn_name_set *s, const char *name, size_t len); /* its id, added when new */
int icn_name_find(const icn_name_set *s, const char *name, size_t len); /* its id, or -1 */
void icn_names_free(icn_name_set *s);
/* Spans: closed [lo, hi], sorted by (peer, producer, lo), disjoint and never adjacent (an
 * unbroken run 1..n is one span). */
int icn_span_has(const icn_span_set *t, uint32_t peer, uint64_t producer, uint64_t seq);
void icn_span_add(icn_span_set *t, uint32_t peer, uint64_t producer, uint64_t seq);

#endif
