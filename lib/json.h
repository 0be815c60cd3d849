/* json.h: a strict reader for one JSON object, such as a line of a JSON-lines results file
 * (lib/json.c, on Debian's jansson: why, in its header). Only what reading results needs: the
 * top-level members of an object, each a number, a string, true, false or null, or an array or
 * object (checked, not returned). Input is untrusted: nesting is bounded, a key may appear once
 * at any depth, strings must be UTF-8 without control characters or \u0000, and NaN, Infinity,
 * numbers beyond a double or a 64-bit integer, and text after the object are refused. */
#ifndef ICN_JSON_H
#define ICN_JSON_H
#include <stddef.h>

typedef enum { ICN_JSON_NULL, ICN_JSON_FALSE, ICN_JSON_TRUE, ICN_JSON_NUMBER, ICN_JSON_STRING, ICN_JSON_ARRAY, ICN_JSON_OBJECT } icn_json_type;

typedef struct {
    char *key;          /* decoded, NUL-terminated */
    icn_json_type type;
    double number;      /* ICN_JSON_NUMBER (finite) */
    char *string;       /* ICN_JSON_STRING: decoded UTF-8, NUL-terminated (an embedded \u0000 is refused) */
} icn_json_member;

/* Parse text[0..len) as one JSON object, surrounded by white space only. On success *members
 * holds *n members in input order (free with icn_json_free). On failure returns -1 with a
 * message naming the column (1-based byte offset where the parser stopped) and jansson's
 * reason, such as "column 12: duplicate object key near '"a"'". */
int icn_json_parse_object(const char *text, size_t len, icn_json_member **members, int *n, char *err, size_t errlen);
void icn_json_free(icn_json_member *members, int n);
/* The member with this key, or NULL. */
const icn_json_member *icn_json_find(const icn_json_member *members, int n, const char *key);
/* "a number", "a string", ...: for messages. */
const char *icn_json_type_name(icn_json_type t);

#endif
