/*
 * json.h: a small JSON reader for ferry plugins in C, part of the plugin's
 * own code (written by `ferry plugin new NAME --lang c --template json`;
 * change it as you like).
 *
 * It reads JSON text in place, front to back, without allocating: the
 * caller walks objects and arrays (json_enter, json_next, json_key), reads
 * the strings it wants decoded (json_string: every escape, \uXXXX and
 * surrogate pairs into UTF-8) and skips the rest (json_skip, which still
 * checks every byte of what it skips, nesting up to JSON_MAX_DEPTH). It
 * follows RFC 8259, except that it takes the bytes of strings as they are
 * (ferry hands plugins valid UTF-8). On the first fault it stops: every call
 * after it fails, and `error` says what was wrong at byte `error_at`.
 *
 *     struct json_reader r;
 *     json_init(&r, text, len);
 *     if (json_enter(&r, '{')) {
 *         while (json_next(&r, '}') == 1) {
 *             char key[64]; size_t key_len;
 *             if (!json_key(&r, key, sizeof key, &key_len)) break;
 *             ... json_string(&r, ...) or json_skip(&r) ...
 *         }
 *     }
 *     if (json_finish(&r)) ... else r.error, r.error_at
 */

#ifndef FERRY_JSON_H
#define FERRY_JSON_H

#include <stdbool.h>
#include <stddef.h>

/* How deep objects and arrays may nest: deeper text is refused, not read
 * by an ever deeper recursion. */
#define JSON_MAX_DEPTH 64

/* What the next value is, by its first byte. */
enum json_type { JSON_INVALID, JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json_reader {
    const char *begin, *p, *end;
    /* Set by json_enter, cleared by json_next: no comma before the first member. */
    bool first;
    /* NULL, or why the text is not JSON (a static string) ... */
    const char *error;
    /* ... at this byte offset. */
    size_t error_at;
};

/* Starts reading the `len` bytes at `text`. */
void json_init(struct json_reader *r, const char *text, size_t len);

/* The type of the next value, after any spaces; nothing is consumed. */
enum json_type json_peek(struct json_reader *r);

/* Reads past one value of any type, checking it. */
bool json_skip(struct json_reader *r);

/* Reads a string value into `out` decoded (NUL-terminated when it fits);
 * `*len` is its whole decoded length, which may exceed `cap`: then only the
 * first `cap` bytes were stored (compare `*len` before the bytes). */
bool json_string(struct json_reader *r, char *out, size_t cap, size_t *len);

/* Reads the `{` or `[` given as `open`. */
bool json_enter(struct json_reader *r, char open);

/* Inside the object or array that `close` (`}` or `]`) ends: 1 when a
 * member or element follows (its comma read), 0 when `close` was read,
 * -1 on a fault. */
int json_next(struct json_reader *r, char close);

/* Reads an object member's key (as json_string) and its `:`. */
bool json_key(struct json_reader *r, char *out, size_t cap, size_t *len);

/* Whether the text was read without a fault and only spaces follow. */
bool json_finish(struct json_reader *r);

#endif
