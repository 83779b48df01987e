/*
 * json.c: the small JSON reader of json.h.
 */

#include "json.h"

#include <string.h>

void json_init(struct json_reader *r, const char *text, size_t len) {
    r->begin = r->p = text;
    r->end = text + len;
    r->first = false;
    r->error = NULL;
    r->error_at = 0;
}

/* Records the first fault, at the current byte; always false. */
static bool fail(struct json_reader *r, const char *why) {
    if (r->error == NULL) {
        r->error = why;
        r->error_at = (size_t)(r->p - r->begin);
    }
    return false;
}

static void skip_spaces(struct json_reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) {
        r->p++;
    }
}

enum json_type json_peek(struct json_reader *r) {
    if (r->error != NULL) {
        return JSON_INVALID;
    }
    skip_spaces(r);
    if (r->p == r->end) {
        return JSON_INVALID;
    }
    switch (*r->p) {
    case 'n': return JSON_NULL;
    case 't': case 'f': return JSON_BOOL;
    case '"': return JSON_STRING;
    case '[': return JSON_ARRAY;
    case '{': return JSON_OBJECT;
    default: return (*r->p == '-' || (*r->p >= '0' && *r->p <= '9')) ? JSON_NUMBER : JSON_INVALID;
    }
}

static bool literal(struct json_reader *r, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) {
        return fail(r, "not a JSON value");
    }
    r->p += n;
    return true;
}

static size_t digits(struct json_reader *r) {
    const char *start = r->p;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        r->p++;
    }
    return (size_t)(r->p - start);
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool number(struct json_reader *r) {
    if (r->p < r->end && *r->p == '-') {
        r->p++;
    }
    const char *whole = r->p;
    size_t n = digits(r);
    if (n == 0 || (n > 1 && *whole == '0')) {
        return fail(r, "a bad number");
    }
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (digits(r) == 0) {
            return fail(r, "a bad number: no digit after `.`");
        }
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-')) {
            r->p++;
        }
        if (digits(r) == 0) {
            return fail(r, "a bad number: no digit in the exponent");
        }
    }
    return true;
}

/* Four hex digits of a \u escape. */
static bool hex4(struct json_reader *r, unsigned *out) {
    if (r->end - r->p < 4) {
        return fail(r, "a \\u escape needs four hex digits");
    }
    unsigned value = 0;
    for (int i = 0; i < 4; i++) {
        char c = *r->p++;
        unsigned digit = (c >= '0' && c <= '9') ? (unsigned)(c - '0')
                         : (c >= 'a' && c <= 'f') ? (unsigned)(c - 'a' + 10)
                         : (c >= 'A' && c <= 'F') ? (unsigned)(c - 'A' + 10)
                                                  : 16;
        if (digit == 16) {
            return fail(r, "a \\u escape needs four hex digits");
        }
        value = value * 16 + digit;
    }
    *out = value;
    return true;
}

/* Stores byte `c` at `out[*len]` if it fits, and counts it either way. */
static void put(char *out, size_t cap, size_t *len, unsigned c) {
    if (*len < cap) {
        out[*len] = (char)c;
    }
    (*len)++;
}

/* The code point of a \u escape (its `\u` read), a surrogate pair joined. */
static bool code_point(struct json_reader *r, unsigned *cp) {
    if (!hex4(r, cp)) {
        return false;
    }
    if (*cp >= 0xDC00 && *cp <= 0xDFFF) {
        return fail(r, "a lone low surrogate in a \\u escape");
    }
    if (*cp >= 0xD800 && *cp <= 0xDBFF) {
        unsigned low;
        if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u') {
            return fail(r, "a high surrogate without its low one");
        }
        r->p += 2;
        if (!hex4(r, &low)) {
            return false;
        }
        if (low < 0xDC00 || low > 0xDFFF) {
            return fail(r, "a high surrogate without its low one");
        }
        *cp = 0x10000 + ((*cp - 0xD800) << 10) + (low - 0xDC00);
    }
    return true;
}

static void put_utf8(char *out, size_t cap, size_t *len, unsigned cp) {
    if (cp < 0x80) {
        put(out, cap, len, cp);
    } else if (cp < 0x800) {
        put(out, cap, len, 0xC0 | (cp >> 6));
        put(out, cap, len, 0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        put(out, cap, len, 0xE0 | (cp >> 12));
        put(out, cap, len, 0x80 | ((cp >> 6) & 0x3F));
        put(out, cap, len, 0x80 | (cp & 0x3F));
    } else {
        put(out, cap, len, 0xF0 | (cp >> 18));
        put(out, cap, len, 0x80 | ((cp >> 12) & 0x3F));
        put(out, cap, len, 0x80 | ((cp >> 6) & 0x3F));
        put(out, cap, len, 0x80 | (cp & 0x3F));
    }
}

bool json_string(struct json_reader *r, char *out, size_t cap, size_t *len) {
    *len = 0;
    if (json_peek(r) != JSON_STRING) {
        return fail(r, "expected a string");
    }
    r->p++;
    while (r->p < r->end) {
        unsigned char c = (unsigned char)*r->p++;
        if (c == '"') {
            if (*len < cap) {
                out[*len] = '\0';
            }
            return true;
        }
        if (c < 0x20) {
            r->p--;
            return fail(r, "a control character in a string");
        }
        if (c != '\\') {
            put(out, cap, len, c);
            continue;
        }
        if (r->p == r->end) {
            break;
        }
        unsigned cp;
        switch (*r->p++) {
        case '"': put(out, cap, len, '"'); break;
        case '\\': put(out, cap, len, '\\'); break;
        case '/': put(out, cap, len, '/'); break;
        case 'b': put(out, cap, len, '\b'); break;
        case 'f': put(out, cap, len, '\f'); break;
        case 'n': put(out, cap, len, '\n'); break;
        case 'r': put(out, cap, len, '\r'); break;
        case 't': put(out, cap, len, '\t'); break;
        case 'u':
            if (!code_point(r, &cp)) {
                return false;
            }
            put_utf8(out, cap, len, cp);
            break;
        default: r->p--; return fail(r, "an unknown escape in a string");
        }
    }
    return fail(r, "a string without its closing quote");
}

bool json_enter(struct json_reader *r, char open) {
    if (json_peek(r) != (open == '{' ? JSON_OBJECT : JSON_ARRAY)) {
        return fail(r, open == '{' ? "expected an object" : "expected an array");
    }
    r->p++;
    r->first = true;
    return true;
}

int json_next(struct json_reader *r, char close) {
    bool first = r->first;
    r->first = false;
    if (r->error != NULL) {
        return -1;
    }
    skip_spaces(r);
    if (r->p == r->end) {
        fail(r, close == '}' ? "an object without its closing `}`" : "an array without its closing `]`");
        return -1;
    }
    if (*r->p == close && first) {
        r->p++;
        return 0;
    }
    if (first) {
        return 1;
    }
    if (*r->p == close) {
        r->p++;
        return 0;
    }
    if (*r->p != ',') {
        fail(r, close == '}' ? "expected `,` or `}` after a member" : "expected `,` or `]` after an element");
        return -1;
    }
    r->p++;
    return 1;
}

bool json_key(struct json_reader *r, char *out, size_t cap, size_t *len) {
    if (json_peek(r) != JSON_STRING) {
        return fail(r, "expected a member's key (a string)");
    }
    if (!json_string(r, out, cap, len)) {
        return false;
    }
    skip_spaces(r);
    if (r->p == r->end || *r->p != ':') {
        return fail(r, "expected `:` after a key");
    }
    r->p++;
    return true;
}

/* json_skip at a depth of nesting. */
static bool skip_at(struct json_reader *r, int depth) {
    size_t ignored;
    switch (json_peek(r)) {
    case JSON_NULL: return literal(r, "null");
    case JSON_BOOL: return literal(r, *r->p == 't' ? "true" : "false");
    case JSON_NUMBER: return number(r);
    case JSON_STRING: return json_string(r, NULL, 0, &ignored);
    case JSON_ARRAY:
    case JSON_OBJECT: {
        char close = *r->p == '{' ? '}' : ']';
        if (depth == JSON_MAX_DEPTH) {
            return fail(r, "nested deeper than JSON_MAX_DEPTH");
        }
        r->p++;
        r->first = true;
        int more;
        while ((more = json_next(r, close)) == 1) {
            if (close == '}' && !json_key(r, NULL, 0, &ignored)) {
                return false;
            }
            if (!skip_at(r, depth + 1)) {
                return false;
            }
        }
        return more == 0;
    }
    default: return fail(r, r->p == r->end ? "the text ends where a value should be" : "not a JSON value");
    }
}

bool json_skip(struct json_reader *r) {
    return skip_at(r, 0);
}

bool json_finish(struct json_reader *r) {
    if (r->error != NULL) {
        return false;
    }
    skip_spaces(r);
    return r->p == r->end || fail(r, "more text after the value");
}
