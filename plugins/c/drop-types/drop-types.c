/*
 * drop-types: a ferry plugin in C that drops events by type and keeps the
 * rest unchanged; by default `session.data` and `app.session.chunk`, the
 * bulk of a recorded session that a log search rarely needs.
 *
 * Config (`[config]` in drop-types.toml): types = ["session.data",
 * "desktop.*"]; a trailing `*` matches a prefix. How types are read, and
 * the limits of reading without a JSON library: drop_types.h.
 *
 * Built by `ferry plugin build plugins/c/drop-types` (clang for WASI, then
 * a component); tested natively by test/drop_types_test.c.
 */

#include <stdlib.h>

#include "drop_types.h"
#include "plugin.h"

static struct drop_types types;

bool exports_ferry_plugin_guest_init(plugin_string_t *config, plugin_string_t *err) {
    const char *refused = drop_types_read(&types, config->ptr, config->len);
    plugin_string_free(config);
    if (refused != NULL) {
        plugin_string_dup(err, refused); /* freed by the generated code */
        return false;
    }
    return true;
}

void exports_ferry_plugin_guest_process(plugin_list_u8_t *events, exports_ferry_plugin_guest_output_t *ret) {
    const uint8_t *data = events->ptr;
    const uint8_t *end = data + events->len;
    size_t count = 0;
    for (const uint8_t *p = data; p < end; p++) {
        count += *p == '\n';
    }
    if (data < end && end[-1] != '\n') {
        count++;
    }
    ferry_plugin_types_verdict_t *verdicts = NULL;
    if (count > 0 && (verdicts = malloc(count * sizeof *verdicts)) == NULL) {
        abort(); /* out of memory: a trap, which fails the batch */
    }
    uint64_t drops = 0;
    size_t n = 0;
    for (const uint8_t *line = data; line < end; n++) {
        const uint8_t *newline = memchr(line, '\n', (size_t)(end - line));
        size_t len = newline ? (size_t)(newline - line) : (size_t)(end - line);
        bool drop = drop_types_match(&types, line, len);
        verdicts[n].tag = drop ? FERRY_PLUGIN_TYPES_VERDICT_DROP : FERRY_PLUGIN_TYPES_VERDICT_KEEP;
        drops += drop;
        line += len + 1;
    }
    plugin_list_u8_free(events);
    ret->verdicts = (ferry_plugin_types_list_verdict_t){verdicts, count};
    ret->lines = (plugin_list_u8_t){NULL, 0};
    ret->routes = (plugin_list_list_string_t){NULL, 0};
    if (drops > 0) {
        plugin_string_t name;
        plugin_string_set(&name, "dropped");
        ferry_plugin_host_count(&name, drops);
    }
}
