/* counts.c: sorted tallies, name sets and seq spans (lib/counts.h). */
#include "counts.h"

#include "util.h"

#include <stdlib.h>
#include <string.h>

/* Where key is, or would go, in t. */
static size_t tally_find(const icn_tally_set *t, int64_t key) {
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->v[mid].key < key) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

void icn_tally_add(icn_tally_set *t, int64_t key, int64_t by) {
    size_t lo = tally_find(t, key);
    if (lo < t->n && t->v[lo].key == key) {
        t->v[lo].count += by;
        return;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->v = xrealloc(t->v, t->cap * sizeof *t->v);
    }
    memmove(t->v + lo + 1, t->v + lo, (t->n - lo) * sizeof *t->v);
    t->v[lo] = (icn_tally){key, by};
    t->n++;
}

int64_t icn_tally_get(const icn_tally_set *t, int64_t key) {
    size_t lo = tally_find(t, key);
    return lo < t->n && t->v[lo].key == key ? t->v[lo].count : 0;
}

size_t icn_name_id(icn_name_set *s, const char *name, size_t len) {
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->v[i]) == len && memcmp(s->v[i], name, len) == 0) return i;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 8;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n] = xmalloc(len + 1);
    memcpy(s->v[s->n], name, len);
    s->v[s->n][len] = 0;
    return s->n++;
}

void icn_names_free(icn_name_set *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
}

int icn_name_find(const icn_name_set *s, const char *name, size_t len) {
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->v[i]) == len && memcmp(s->v[i], name, len) == 0) return (int)i;
    return -1;
}

/* The stored seqs of each (peer, producer) stream: closed spans [lo, hi], sorted by (peer,
 * producer, lo), disjoint and not adjacent. An honest sender's stream is one span [1, last];
 * each refused seq it skipped splits it. Index of the first span after (peer, producer, seq). */
static size_t span_after(const icn_span_set *t, uint32_t peer, uint64_t producer, uint64_t seq) {
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const icn_seq_span *v = &t->v[mid];
        int le = v->peer != peer ? v->peer < peer : v->producer != producer ? v->producer < producer : v->lo <= seq;
        if (le) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static int same_stream(const icn_seq_span *v, uint32_t peer, uint64_t producer) {
    return v->peer == peer && v->producer == producer;
}

int icn_span_has(const icn_span_set *t, uint32_t peer, uint64_t producer, uint64_t seq) {
    size_t j = span_after(t, peer, producer, seq);
    return j > 0 && same_stream(&t->v[j - 1], peer, producer) && seq <= t->v[j - 1].hi;
}

void icn_span_add(icn_span_set *t, uint32_t peer, uint64_t producer, uint64_t seq) {
    if (icn_span_has(t, peer, producer, seq)) return;
    size_t j = span_after(t, peer, producer, seq);
    icn_seq_span *l = j > 0 && same_stream(&t->v[j - 1], peer, producer) && t->v[j - 1].hi + 1 == seq ? &t->v[j - 1] : NULL;
    icn_seq_span *r = j < t->n && same_stream(&t->v[j], peer, producer) && t->v[j].lo == seq + 1 ? &t->v[j] : NULL;
    if (l && r) { /* seq closes the gap between two spans */
        l->hi = r->hi;
        memmove(t->v + j, t->v + j + 1, (t->n - j - 1) * sizeof *t->v);
        t->n--;
    } else if (l) {
        l->hi = seq;
    } else if (r) {
        r->lo = seq;
    } else {
        if (t->n == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 16;
            t->v = xrealloc(t->v, t->cap * sizeof *t->v);
        }
        memmove(t->v + j + 1, t->v + j, (t->n - j) * sizeof *t->v);
        t->v[j] = (icn_seq_span){peer, producer, seq, seq};
        t->n++;
    }
}

void icn_tally_copy(const icn_tally_set *t, icn_tally **v, size_t *n) {
    *n = t->n;
    *v = xmalloc((t->n ? t->n : 1) * sizeof **v);
    if (t->n) memcpy(*v, t->v, t->n * sizeof **v);
}
