/*
 * drop-types: which events to drop, read without a JSON library. Shared by
 * the plugin (drop-types.c) and its native test (test/drop_types_test.c).
 *
 * The event type is found by a byte search for "event":" in each line: exact
 * for the compact JSON ferry hands plugins (no spaces between keys and
 * values, one object per line), as Teleport writes its events. Limits: the
 * first "event":"…" of a line is taken, even one of a nested object that
 * comes before the top-level field (Teleport's events put `event` first or
 * near it); a type written with a `\` escape never matches; config strings
 * may not hold escapes (the config is refused).
 */
#ifndef DROP_TYPES_H
#define DROP_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DROP_TYPES_MAX 64
#define DROP_TYPES_MAX_LEN 256

/* The event types to drop; a name ending in `*` is a prefix. */
struct drop_types {
    size_t count;
    size_t lens[DROP_TYPES_MAX];
    bool prefix[DROP_TYPES_MAX];
    char names[DROP_TYPES_MAX][DROP_TYPES_MAX_LEN];
};

/* Dropped when the config names no `types`: the bulk of a recorded session. */
static const char *const DROP_TYPES_DEFAULT[] = {"session.data", "app.session.chunk"};

static const uint8_t *drop_types_find(const uint8_t *hay, size_t hay_len, const char *needle, size_t needle_len) {
    for (size_t i = 0; needle_len <= hay_len && i <= hay_len - needle_len; i++) {
        if (hay[i] == (uint8_t)needle[0] && memcmp(hay + i, needle, needle_len) == 0) {
            return hay + i;
        }
    }
    return NULL;
}

static const uint8_t *drop_types_skip_spaces(const uint8_t *p, const uint8_t *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
    }
    return p;
}

/* Adds one name; the error, or NULL. */
static const char *drop_types_add(struct drop_types *types, const char *name, size_t len) {
    if (len == 0) {
        return "`types`: an event type may not be empty";
    }
    if (types->count == DROP_TYPES_MAX || len >= DROP_TYPES_MAX_LEN) {
        return "`types`: at most 64 event types of at most 255 bytes each";
    }
    size_t n = types->count++;
    types->prefix[n] = name[len - 1] == '*';
    types->lens[n] = types->prefix[n] ? len - 1 : len;
    memcpy(types->names[n], name, types->lens[n]);
    return NULL;
}

/* Reads `"types": ["session.data", "desktop.*"]` from the config's JSON
 * text (the defaults when it has none); the error to refuse it with, or NULL. */
static const char *drop_types_read(struct drop_types *types, const uint8_t *config, size_t len) {
    static const char not_a_list[] = "`types` must be a list of event types";
    const uint8_t *end = config + len;
    types->count = 0;
    const uint8_t *key = drop_types_find(config, len, "\"types\"", 7);
    if (key == NULL) {
        for (size_t i = 0; i < sizeof DROP_TYPES_DEFAULT / sizeof DROP_TYPES_DEFAULT[0]; i++) {
            drop_types_add(types, DROP_TYPES_DEFAULT[i], strlen(DROP_TYPES_DEFAULT[i]));
        }
        return NULL;
    }
    const uint8_t *p = drop_types_skip_spaces(key + 7, end);
    if (p == end || *p != ':') {
        return not_a_list;
    }
    p = drop_types_skip_spaces(p + 1, end);
    if (p == end || *p != '[') {
        return not_a_list;
    }
    p = drop_types_skip_spaces(p + 1, end);
    while (p < end && *p != ']') {
        if (*p != '"') {
            return not_a_list;
        }
        const uint8_t *start = ++p;
        while (p < end && *p != '"' && *p != '\\') {
            p++;
        }
        if (p == end) {
            return not_a_list;
        }
        if (*p == '\\') {
            return "`types`: event types with `\\` escapes are not supported";
        }
        const char *err = drop_types_add(types, (const char *)start, (size_t)(p - start));
        if (err != NULL) {
            return err;
        }
        p = drop_types_skip_spaces(p + 1, end);
        if (p < end && *p == ',') {
            p = drop_types_skip_spaces(p + 1, end);
        } else if (p < end && *p != ']') {
            return not_a_list;
        }
    }
    return p == end ? not_a_list : NULL;
}

/* Whether the event on this line (without its `\n`) is to be dropped. */
static bool drop_types_match(const struct drop_types *types, const uint8_t *line, size_t len) {
    const uint8_t *field = drop_types_find(line, len, "\"event\":\"", 9);
    if (field == NULL) {
        return false;
    }
    const uint8_t *type = field + 9;
    const uint8_t *close = memchr(type, '"', len - (size_t)(type - line));
    if (close == NULL) {
        return false;
    }
    size_t type_len = (size_t)(close - type);
    for (size_t i = 0; i < types->count; i++) {
        size_t n = types->lens[i];
        bool fits = types->prefix[i] ? type_len >= n : type_len == n;
        if (fits && memcmp(type, types->names[i], n) == 0) {
            return true;
        }
    }
    return false;
}

#endif
