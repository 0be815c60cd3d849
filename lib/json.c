/* json.c: one JSON object, such as a line of a JSON-lines results file, read by jansson.
 *
 * Why jansson and not a parser of our own (measured 2026-12-07, AMD EPYC family 0x19 model
 * 0x01, 2 cores, load average 10 to 14; docs/RESULTS.md "The JSON and MAT-file readers"):
 * this file was a 256-line hand-written reader until then. Debian 12 ships jansson 2.14
 * (libjansson4, 60 KB, no dependency but libc; OSS-Fuzz fuzzes it). Against the crafted lines
 * of tests/unit/test_plot.c and the fuzz harness it is the stricter of the two: it refuses a
 * key given twice at any depth (JSON_REJECT_DUPLICATES; the old reader only checked the top
 * level), bytes that are not UTF-8, integers beyond 64 bits and reals beyond a double, and
 * trailing text, and it bounds nesting (2,048 levels). tests/fuzz/fuzz_jsonl.c ran 60 s on it
 * (95,861 executions, no crash). Its cost: it builds the whole tree, so a line full of tiny
 * containers costs about 80 bytes of memory a byte (lib/plot.c caps a line at 1 MiB: 89 MB
 * peak for 1 MiB of "{},", against 10 MB for the old reader, which skipped nested values);
 * and NaN and Infinity are refused by the parser ("invalid token near 'NaN'") rather than
 * named by the caller. */
#include "json.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAX_MEMBERS 4096

static char *copy_string(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

static icn_json_type type_of(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return ICN_JSON_OBJECT;
    case JSON_ARRAY: return ICN_JSON_ARRAY;
    case JSON_STRING: return ICN_JSON_STRING;
    case JSON_INTEGER:
    case JSON_REAL: return ICN_JSON_NUMBER;
    case JSON_TRUE: return ICN_JSON_TRUE;
    case JSON_FALSE: return ICN_JSON_FALSE;
    case JSON_NULL: break;
    }
    return ICN_JSON_NULL;
}

int icn_json_parse_object(const char *text, size_t len, icn_json_member **members, int *n, char *err, size_t errlen) {
    *members = NULL;
    *n = 0;
    json_error_t e;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    if (!root) return icn_errf(err, errlen, "column %d: %s", e.position + 1, e.text);
    int rc = -1;
    size_t count = json_object_size(root); /* 0 for anything but an object */
    if (!json_is_object(root)) icn_errf(err, errlen, "column 1: expected '{' (a JSON object)");
    else if (count > MAX_MEMBERS) icn_errf(err, errlen, "column 1: more than %d members", MAX_MEMBERS);
    else {
        icn_json_member *ms = count ? xmalloc(count * sizeof *ms) : NULL;
        size_t i = 0;
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v) { /* in input order (jansson keeps insertion order) */
            icn_json_member *m = &ms[i++];
            memset(m, 0, sizeof *m);
            m->key = copy_string(key);
            m->type = type_of(v);
            if (m->type == ICN_JSON_NUMBER) m->number = json_number_value(v);
            if (m->type == ICN_JSON_STRING) m->string = copy_string(json_string_value(v));
        }
        *members = ms;
        *n = (int)count;
        rc = 0;
    }
    json_decref(root);
    return rc;
}

void icn_json_free(icn_json_member *members, int n) {
    for (int i = 0; i < n; i++) {
        free(members[i].key);
        free(members[i].string);
    }
    free(members);
}

const icn_json_member *icn_json_find(const icn_json_member *members, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (members[i].key && strcmp(members[i].key, key) == 0) return &members[i];
    return NULL;
}

const char *icn_json_type_name(icn_json_type t) {
    static const char *names[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}
