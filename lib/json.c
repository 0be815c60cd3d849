#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAX_DEPTH 64
#define MAX_MEMBERS 4096

typedef struct {
    const char *s;
    size_t len, pos;
    char *err;
    size_t errlen;
} parser;

static int fail(parser *p, const char *what) {
    return icn_errf(p->err, p->errlen, "column %zu: %s", p->pos + 1, what);
}

static void skip_ws(parser *p) {
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int peek(parser *p) { return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1; }

static int literal(parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return 0;
    p->pos += n;
    return 1;
}

static int hex4(parser *p, unsigned *out) {
    if (p->len - p->pos < 4) return fail(p, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos + i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return fail(p, "bad \\u escape");
    }
    p->pos += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string at p->pos (the opening quote); decoded into *out when out is not NULL. */
static int string(parser *p, char **out) {
    p->pos++; /* '"' */
    char *buf = out ? xmalloc(p->len - p->pos + 1) : NULL; /* decoding never grows the text */
    size_t n = 0;
    for (;;) {
        int c = peek(p);
        if (c < 0) { free(buf); return fail(p, "unterminated string"); }
        if (c < 0x20) { free(buf); return fail(p, "control character in a string"); }
        p->pos++;
        if (c == '"') break;
        if (c != '\\') { if (buf) buf[n++] = (char)c; continue; }
        int e = peek(p);
        p->pos++;
        const char *simple = strchr("\"\\/bfnrt", e > 0 ? e : 'x');
        if (e > 0 && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            if (buf) buf[n++] = decoded[simple - "\"\\/bfnrt"];
            continue;
        }
        if (e != 'u') { p->pos--; free(buf); return fail(p, "bad escape in a string"); }
        unsigned cp, lo;
        if (hex4(p, &cp)) { free(buf); return -1; }
        if (cp >= 0xdc00 && cp <= 0xdfff) { free(buf); return fail(p, "lone low surrogate in a string"); }
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (!literal(p, "\\u") || hex4(p, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                free(buf);
                return fail(p, "lone high surrogate in a string");
            }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        if (cp == 0) { free(buf); return fail(p, "\\u0000 in a string"); }
        if (buf) n += put_utf8(buf + n, cp);
    }
    if (buf) { buf[n] = 0; *out = buf; }
    return 0;
}

/* A number in JSON's grammar (or NaN, Infinity, -Infinity). */
static int number(parser *p, double *out) {
    size_t start = p->pos;
    if (literal(p, "NaN")) { *out = NAN; return 0; }
    if (literal(p, "Infinity")) { *out = INFINITY; return 0; }
    if (literal(p, "-Infinity")) { *out = -INFINITY; return 0; }
    if (peek(p) == '-') p->pos++;
    int c = peek(p);
    if (c == '0') p->pos++;
    else if (c >= '1' && c <= '9') while ((c = peek(p)) >= '0' && c <= '9') p->pos++;
    else return fail(p, "expected a value");
    if (peek(p) == '.') {
        p->pos++;
        if (!((c = peek(p)) >= '0' && c <= '9')) return fail(p, "expected a digit after '.'");
        while ((c = peek(p)) >= '0' && c <= '9') p->pos++;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-') p->pos++;
        if (!((c = peek(p)) >= '0' && c <= '9')) return fail(p, "expected a digit in the exponent");
        while ((c = peek(p)) >= '0' && c <= '9') p->pos++;
    }
    char tmp[64];
    size_t n = p->pos - start;
    if (n >= sizeof tmp) { /* a long literal: strtod on a copy */
        char *big = xmalloc(n + 1);
        memcpy(big, p->s + start, n);
        big[n] = 0;
        *out = strtod(big, NULL);
        free(big);
    } else {
        memcpy(tmp, p->s + start, n);
        tmp[n] = 0;
        *out = strtod(tmp, NULL); /* out of range: +-HUGE_VAL, which the caller sees as infinite */
    }
    return 0;
}

static int value(parser *p, int depth, icn_json_member *m);

/* An array or object whose contents are checked and dropped. */
static int container(parser *p, int depth, int object) {
    if (depth >= MAX_DEPTH) return fail(p, "nested too deeply");
    p->pos++;
    skip_ws(p);
    if (peek(p) == (object ? '}' : ']')) { p->pos++; return 0; }
    for (;;) {
        skip_ws(p);
        if (object) {
            if (peek(p) != '"') return fail(p, "expected a string key");
            if (string(p, NULL)) return -1;
            skip_ws(p);
            if (peek(p) != ':') return fail(p, "expected ':'");
            p->pos++;
        }
        if (value(p, depth + 1, NULL)) return -1;
        skip_ws(p);
        int c = peek(p);
        if (c == ',') { p->pos++; continue; }
        if (c == (object ? '}' : ']')) { p->pos++; return 0; }
        return fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int value(parser *p, int depth, icn_json_member *m) {
    icn_json_member scratch;
    if (!m) m = &scratch;
    skip_ws(p);
    int c = peek(p);
    if (c == '"') {
        m->type = ICN_JSON_STRING;
        return string(p, m == &scratch ? NULL : &m->string);
    }
    if (c == '{' || c == '[') {
        m->type = c == '{' ? ICN_JSON_OBJECT : ICN_JSON_ARRAY;
        return container(p, depth, c == '{');
    }
    if (literal(p, "true")) { m->type = ICN_JSON_TRUE; return 0; }
    if (literal(p, "false")) { m->type = ICN_JSON_FALSE; return 0; }
    if (literal(p, "null")) { m->type = ICN_JSON_NULL; return 0; }
    if (c < 0) return fail(p, "expected a value, found the end of the line");
    m->type = ICN_JSON_NUMBER;
    return number(p, &m->number);
}

int icn_json_parse_object(const char *text, size_t len, icn_json_member **members, int *n, char *err, size_t errlen) {
    parser p = {text, len, 0, err, errlen};
    icn_json_member *ms = NULL;
    int count = 0, cap = 0;
    *members = NULL;
    *n = 0;
    skip_ws(&p);
    if (peek(&p) != '{') return fail(&p, "expected '{' (a JSON object)");
    p.pos++;
    skip_ws(&p);
    if (peek(&p) == '}') p.pos++;
    else
        for (;;) {
            skip_ws(&p);
            if (peek(&p) != '"') { fail(&p, "expected a string key"); goto bad; }
            if (count == MAX_MEMBERS) { fail(&p, "more than 4096 members"); goto bad; }
            if (count == cap) {
                cap = cap ? 2 * cap : 8;
                ms = xrealloc(ms, (size_t)cap * sizeof *ms);
            }
            icn_json_member *m = &ms[count];
            memset(m, 0, sizeof *m);
            size_t key_at = p.pos;
            if (string(&p, &m->key)) goto bad;
            count++;
            if (icn_json_find(ms, count - 1, m->key)) {
                p.pos = key_at;
                fail(&p, "a key given twice");
                goto bad;
            }
            skip_ws(&p);
            if (peek(&p) != ':') { fail(&p, "expected ':'"); goto bad; }
            p.pos++;
            if (value(&p, 1, m)) goto bad;
            skip_ws(&p);
            int c = peek(&p);
            if (c == ',') { p.pos++; continue; }
            if (c == '}') { p.pos++; break; }
            fail(&p, "expected ',' or '}'");
            goto bad;
        }
    skip_ws(&p);
    if (p.pos != p.len) { fail(&p, "text after the object"); goto bad; }
    *members = ms;
    *n = count;
    return 0;
bad:
    icn_json_free(ms, count);
    return -1;
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
