/*
 * {{name}}: a ferry plugin in C.
 *
 * Drops the event types listed in its config and marks every other event
 * with "processed_by":"{{name}}" as its last field. Change `process` to do
 * your own work.
 *
 * Config (the plugin's `[config]` table in {{name}}.toml or ferry.toml,
 * handed to `init` as JSON): drop = ["session.data", "user.login"].
 *
 * A batch arrives as one buffer of JSON Lines: each event's JSON object on
 * its own line, with Teleport's fields (`event` is the type, `uid` the id,
 * `time`, `ei`, `sid`). `process` returns one verdict per event, in order
 * (FERRY_PLUGIN_TYPES_VERDICT_KEEP, _REPLACE, _DROP, _ROUTE or _FAIL); the
 * new JSON of each replaced event goes, in order, on its own line of
 * `lines`, and `routes` lists the sink lists that ROUTE verdicts point at
 * by index. `bindings/plugin.h` (written by `ferry plugin build` from
 * wit/plugin.wit) declares all of it.
 *
 * No JSON library: the event type is found by a byte search for
 * "event":" and the mark is written before the line's last `}`. That is
 * exact for the JSON ferry hands over, which is compact (no spaces between
 * keys and values) with one object per line, as Teleport's events are. Its
 * limits: the first "event":"…" of a line is taken even if it belongs to a
 * nested object that comes before the top-level field, a type written
 * with a `\` escape is not recognised, and config strings may not hold
 * escapes either (init refuses them). For more, parse each line with a
 * JSON reader compiled in beside this file: `ferry plugin new NAME --lang c
 * --template json` writes a plugin that does, with a small reader of its own.
 *
 * Memory: the buffers handed in (`events`, `config`) belong to the plugin
 * and are freed here; what is returned (verdicts, lines, fail reasons, an
 * init error) must come from malloc: the generated code frees it after
 * ferry has copied it.
 */

#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* How many event types the config may list, and how long each may be. */
#define MAX_TYPES 64
#define MAX_TYPE_LEN 256

static char drop_types[MAX_TYPES][MAX_TYPE_LEN];
static size_t drop_lens[MAX_TYPES];
static size_t drop_count;

/* The field every kept event gets, written before its closing `}`. */
static const char MARK[] = "\"processed_by\":\"{{name}}\"";

/* The first position of `needle` in `hay`, or NULL. */
static const uint8_t *find(const uint8_t *hay, size_t hay_len, const char *needle, size_t needle_len) {
    for (size_t i = 0; needle_len <= hay_len && i <= hay_len - needle_len; i++) {
        if (hay[i] == (uint8_t)needle[0] && memcmp(hay + i, needle, needle_len) == 0) {
            return hay + i;
        }
    }
    return NULL;
}

static const uint8_t *skip_spaces(const uint8_t *p, const uint8_t *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
    }
    return p;
}

/* Refuses the config with `message` (copied: the generated code frees it). */
static bool refuse(plugin_string_t *err, const char *message) {
    plugin_string_dup(err, message);
    return false;
}

/* Reads `"drop": ["a", "b"]` from the config's JSON text. */
static bool read_drop_types(const uint8_t *config, size_t len, plugin_string_t *err) {
    const uint8_t *end = config + len;
    const uint8_t *key = find(config, len, "\"drop\"", 6);
    if (key == NULL) {
        return true;
    }
    const uint8_t *p = skip_spaces(key + 6, end);
    if (p == end || *p != ':') {
        return refuse(err, "`drop` must be a list of event types");
    }
    p = skip_spaces(p + 1, end);
    if (p == end || *p != '[') {
        return refuse(err, "`drop` must be a list of event types");
    }
    p = skip_spaces(p + 1, end);
    while (p < end && *p != ']') {
        if (*p != '"') {
            return refuse(err, "`drop` must be a list of event types");
        }
        const uint8_t *start = ++p;
        while (p < end && *p != '"' && *p != '\\') {
            p++;
        }
        if (p == end || *p == '\\') {
            return refuse(err, "`drop`: event types with `\\` escapes are not supported");
        }
        size_t type_len = (size_t)(p - start);
        if (drop_count == MAX_TYPES || type_len >= MAX_TYPE_LEN) {
            return refuse(err, "`drop`: at most 64 event types of at most 255 bytes each");
        }
        memcpy(drop_types[drop_count], start, type_len);
        drop_lens[drop_count++] = type_len;
        p = skip_spaces(p + 1, end);
        if (p < end && *p == ',') {
            p = skip_spaces(p + 1, end);
        }
    }
    if (p == end) {
        return refuse(err, "`drop` must be a list of event types");
    }
    return true;
}

bool exports_ferry_plugin_guest_init(plugin_string_t *config, plugin_string_t *err) {
    drop_count = 0;
    bool ok = read_drop_types(config->ptr, config->len, err);
    plugin_string_free(config);
    return ok;
}

/* Whether the event on this line has one of the configured types. */
static bool dropped(const uint8_t *line, size_t len) {
    const uint8_t *field = find(line, len, "\"event\":\"", 9);
    if (field == NULL) {
        return false;
    }
    const uint8_t *type = field + 9;
    size_t rest = len - (size_t)(type - line);
    for (size_t i = 0; i < drop_count; i++) {
        if (drop_lens[i] < rest && memcmp(type, drop_types[i], drop_lens[i]) == 0 && type[drop_lens[i]] == '"') {
            return true;
        }
    }
    return false;
}

/* Appends the line with MARK as its last field to `out`; false when the
 * line is no JSON object (it does not end with `}`). */
static bool append_marked(uint8_t *out, size_t *used, const uint8_t *line, size_t len) {
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\r')) {
        len--;
    }
    if (len < 2 || line[0] != '{' || line[len - 1] != '}') {
        return false;
    }
    const uint8_t *inner = skip_spaces(line + 1, line + len - 1);
    bool empty = inner == line + len - 1;
    memcpy(out + *used, line, len - 1);
    *used += len - 1;
    if (!empty) {
        out[(*used)++] = ',';
    }
    memcpy(out + *used, MARK, sizeof MARK - 1);
    *used += sizeof MARK - 1;
    out[(*used)++] = '}';
    out[(*used)++] = '\n';
    return true;
}

void exports_ferry_plugin_guest_process(plugin_list_u8_t *events, exports_ferry_plugin_guest_output_t *ret) {
    const uint8_t *data = events->ptr;
    size_t len = events->len;
    size_t count = 0;
    for (size_t i = 0; i < len; i++) {
        count += data[i] == '\n';
    }
    if (len > 0 && data[len - 1] != '\n') {
        count++;
    }
    ferry_plugin_types_verdict_t *verdicts = malloc(count * sizeof *verdicts + 1);
    /* Each kept line grows by the mark, a comma and its newline at most. */
    uint8_t *lines = malloc(len + count * (sizeof MARK + 2) + 1);
    if (verdicts == NULL || lines == NULL) {
        abort(); /* out of memory: a trap, which fails the batch */
    }
    size_t used = 0;
    uint64_t drops = 0;
    size_t n = 0;
    for (const uint8_t *line = data; line < data + len; n++) {
        const uint8_t *newline = memchr(line, '\n', (size_t)(data + len - line));
        size_t line_len = newline ? (size_t)(newline - line) : (size_t)(data + len - line);
        if (dropped(line, line_len)) {
            verdicts[n].tag = FERRY_PLUGIN_TYPES_VERDICT_DROP;
            drops++;
        } else if (append_marked(lines, &used, line, line_len)) {
            verdicts[n].tag = FERRY_PLUGIN_TYPES_VERDICT_REPLACE;
        } else {
            verdicts[n].tag = FERRY_PLUGIN_TYPES_VERDICT_FAIL;
            plugin_string_dup(&verdicts[n].val.fail, "not a JSON object on one line");
        }
        line += line_len + 1;
    }
    plugin_list_u8_free(events);
    /* The generated code frees only lists that are not empty. */
    if (count == 0) {
        free(verdicts);
        verdicts = NULL;
    }
    if (used == 0) {
        free(lines);
        lines = NULL;
    }
    ret->verdicts = (ferry_plugin_types_list_verdict_t){verdicts, count};
    ret->lines = (plugin_list_u8_t){lines, used};
    ret->routes = (plugin_list_list_string_t){NULL, 0};
    if (drops > 0) {
        plugin_string_t name;
        plugin_string_set(&name, "dropped");
        ferry_plugin_host_count(&name, drops);
    }
}
