/*
 * {{name}}: a ferry plugin in C that reads each event with a JSON reader
 * (json.h and json.c in this folder: small, its own code, yours to change).
 *
 * Drops the event types listed in its config and redacts the top-level
 * fields it lists: each such field's value, whatever it is, becomes
 * "[redacted]". Every other event is kept unchanged. An event the reader
 * cannot read gets a fail verdict with the reason, and ferry deals with it
 * as the plugin's `on-error` says; the plugin never stops on bad input.
 *
 * Config (the plugin's `[config]` table in {{name}}.toml or ferry.toml,
 * handed to `init` as JSON):
 *     drop = ["session.data", "app.session.chunk"]
 *     redact = ["addr.remote", "login"]
 * Both are read with the same reader, so their strings may hold escapes;
 * any other key is refused.
 *
 * A batch arrives as one buffer of JSON Lines: each event's JSON object on
 * its own line, with Teleport's fields (`event` is the type, `uid` the id,
 * `time`, `ei`, `sid`). `process` returns one verdict per event, in order
 * (FERRY_PLUGIN_TYPES_VERDICT_KEEP, _REPLACE, _DROP, _ROUTE or _FAIL); the
 * new JSON of each replaced event goes, in order, on its own line of
 * `lines`. `bindings/plugin.h` (written by `ferry plugin build` from
 * wit/plugin.wit) declares all of it.
 *
 * Memory: the buffers handed in (`events`, `config`) belong to the plugin
 * and are freed here; what is returned (verdicts, lines, fail reasons, an
 * init error) must come from malloc: the generated code frees it after
 * ferry has copied it.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "plugin.h"

/* How many names each config list may hold, and how long each may be. */
#define MAX_NAMES 64
#define MAX_NAME_LEN 256
/* How many fields one event may have redacted. */
#define MAX_REDACTED 64

/* A config list: event types to drop, or field names to redact. */
struct names {
    char name[MAX_NAMES][MAX_NAME_LEN];
    size_t len[MAX_NAMES];
    size_t count;
};

static struct names drop_types, redact_fields;

/* What a redacted field's value becomes. */
static const char REDACTED[] = "\"[redacted]\"";

static bool listed(const struct names *names, const char *name, size_t len) {
    for (size_t i = 0; i < names->count; i++) {
        if (names->len[i] == len && memcmp(names->name[i], name, len) == 0) {
            return true;
        }
    }
    return false;
}

/* Reads the list of strings at the reader into `names`; NULL, or why not. */
static const char *read_names(struct json_reader *r, struct names *names) {
    if (!json_enter(r, '[')) {
        return "must be a list of strings";
    }
    int more;
    while ((more = json_next(r, ']')) == 1) {
        if (names->count == MAX_NAMES) {
            return "at most 64 names";
        }
        size_t len;
        if (!json_string(r, names->name[names->count], MAX_NAME_LEN, &len)) {
            return "must be a list of strings";
        }
        if (len >= MAX_NAME_LEN) {
            return "names of at most 255 bytes";
        }
        names->len[names->count++] = len;
    }
    return more == 0 ? NULL : "must be a list of strings";
}

/* Refuses the config: `key: why` (copied: the generated code frees it). */
static bool refuse(plugin_string_t *err, const char *key, const char *why) {
    char message[160];
    snprintf(message, sizeof message, "config: `%s` %s", key, why);
    plugin_string_dup(err, message);
    return false;
}

bool exports_ferry_plugin_guest_init(plugin_string_t *config, plugin_string_t *err) {
    drop_types.count = redact_fields.count = 0;
    struct json_reader r;
    json_init(&r, (const char *)config->ptr, config->len);
    bool refused = false;
    if (json_enter(&r, '{')) {
        while (!refused && json_next(&r, '}') == 1) {
            char key[64];
            size_t len;
            const char *why;
            if (!json_key(&r, key, sizeof key, &len)) {
                break;
            } else if (len < sizeof key && strcmp(key, "drop") == 0) {
                refused = (why = read_names(&r, &drop_types)) != NULL && !refuse(err, "drop", why);
            } else if (len < sizeof key && strcmp(key, "redact") == 0) {
                refused = (why = read_names(&r, &redact_fields)) != NULL && !refuse(err, "redact", why);
            } else {
                char message[160];
                int shown = (int)(len < sizeof key ? len : sizeof key);
                snprintf(message, sizeof message, "config: unknown key `%.*s` (there are `drop` and `redact`)", shown, key);
                plugin_string_dup(err, message);
                refused = true;
            }
        }
    }
    if (!refused && !json_finish(&r)) {
        char message[160];
        snprintf(message, sizeof message, "config: %s at byte %zu", r.error, r.error_at);
        plugin_string_dup(err, message);
        refused = true;
    }
    plugin_string_free(config);
    return !refused;
}

/* What became of one event. */
enum fate { KEEP, DROP, REDACT, FAIL };

/* The byte ranges of an event's values to redact. */
struct spans {
    size_t start[MAX_REDACTED], end[MAX_REDACTED];
    size_t count;
};

/* Reads one event: its type decides a drop, its listed fields are found
 * for redaction; on bad JSON, `reason` says why. */
static enum fate read_event(const char *line, size_t len, struct spans *spans, char *reason, size_t reason_cap) {
    struct json_reader r;
    json_init(&r, line, len);
    spans->count = 0;
    bool drop = false;
    int more = -1;
    if (json_enter(&r, '{')) {
        while ((more = json_next(&r, '}')) == 1) {
            char key[MAX_NAME_LEN];
            size_t key_len;
            if (!json_key(&r, key, sizeof key, &key_len)) {
                break;
            }
            bool known = key_len < sizeof key;
            if (known && strcmp(key, "event") == 0 && json_peek(&r) == JSON_STRING) {
                char type[MAX_NAME_LEN];
                size_t type_len;
                json_string(&r, type, sizeof type, &type_len);
                drop = type_len < sizeof type && listed(&drop_types, type, type_len);
                continue;
            }
            bool redact = known && listed(&redact_fields, key, key_len);
            if (redact && spans->count == MAX_REDACTED) {
                snprintf(reason, reason_cap, "more than %d fields to redact", MAX_REDACTED);
                return FAIL;
            }
            json_peek(&r); /* to the value's first byte */
            size_t start = (size_t)(r.p - r.begin);
            if (!json_skip(&r)) {
                break;
            }
            if (redact) {
                spans->start[spans->count] = start;
                spans->end[spans->count++] = (size_t)(r.p - r.begin);
            }
        }
    }
    if (more != 0 || !json_finish(&r)) {
        snprintf(reason, reason_cap, "not a JSON object: %s at byte %zu", r.error ? r.error : "a fault", r.error_at);
        return FAIL;
    }
    return drop ? DROP : spans->count > 0 ? REDACT : KEEP;
}

/* The growing buffer of replaced events' lines. */
struct out {
    uint8_t *data;
    size_t len, cap;
};

static void append(struct out *out, const void *bytes, size_t len) {
    if (out->len + len > out->cap) {
        size_t cap = out->cap ? out->cap : 4096;
        while (cap < out->len + len) {
            cap *= 2;
        }
        if ((out->data = realloc(out->data, cap)) == NULL) {
            abort(); /* out of memory: a trap, which fails the batch */
        }
        out->cap = cap;
    }
    memcpy(out->data + out->len, bytes, len);
    out->len += len;
}

/* The line with each span's value replaced by REDACTED, and its newline. */
static void append_redacted(struct out *out, const char *line, size_t len, const struct spans *spans) {
    size_t at = 0;
    for (size_t i = 0; i < spans->count; i++) {
        append(out, line + at, spans->start[i] - at);
        append(out, REDACTED, sizeof REDACTED - 1);
        at = spans->end[i];
    }
    append(out, line + at, len - at);
    append(out, "\n", 1);
}

static void count(const char *name, uint64_t value) {
    if (value > 0) {
        plugin_string_t counter;
        plugin_string_set(&counter, name);
        ferry_plugin_host_count(&counter, value);
    }
}

void exports_ferry_plugin_guest_process(plugin_list_u8_t *events, exports_ferry_plugin_guest_output_t *ret) {
    const char *data = (const char *)events->ptr;
    size_t len = events->len;
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) {
        lines += data[i] == '\n';
    }
    if (len > 0 && data[len - 1] != '\n') {
        lines++;
    }
    ferry_plugin_types_verdict_t *verdicts = lines ? malloc(lines * sizeof *verdicts) : NULL;
    if (lines > 0 && verdicts == NULL) {
        abort(); /* out of memory: a trap, which fails the batch */
    }
    struct out out = {NULL, 0, 0};
    struct spans spans;
    uint64_t dropped = 0, redacted = 0;
    size_t n = 0;
    for (const char *line = data; line < data + len; n++) {
        const char *newline = memchr(line, '\n', (size_t)(data + len - line));
        size_t line_len = newline ? (size_t)(newline - line) : (size_t)(data + len - line);
        char reason[160];
        switch (read_event(line, line_len, &spans, reason, sizeof reason)) {
        case KEEP: verdicts[n].tag = FERRY_PLUGIN_TYPES_VERDICT_KEEP; break;
        case DROP:
            verdicts[n].tag = FERRY_PLUGIN_TYPES_VERDICT_DROP;
            dropped++;
            break;
        case REDACT:
            verdicts[n].tag = FERRY_PLUGIN_TYPES_VERDICT_REPLACE;
            append_redacted(&out, line, line_len, &spans);
            redacted++;
            break;
        case FAIL:
            verdicts[n].tag = FERRY_PLUGIN_TYPES_VERDICT_FAIL;
            plugin_string_dup(&verdicts[n].val.fail, reason);
            break;
        }
        line += line_len + 1;
    }
    plugin_list_u8_free(events);
    ret->verdicts = (ferry_plugin_types_list_verdict_t){verdicts, lines};
    /* The generated code frees only lists that are not empty. */
    if (out.len == 0) {
        free(out.data);
        out.data = NULL;
    }
    ret->lines = (plugin_list_u8_t){out.data, out.len};
    ret->routes = (plugin_list_list_string_t){NULL, 0};
    count("dropped", dropped);
    count("redacted", redacted);
}
