/*
 * The native test of drop-types' logic (drop_types.h), built with the
 * host's C compiler: `cc -Wall -Wextra -Werror -o t test/drop_types_test.c`.
 *
 * Without arguments it checks fixed cases and exits non-zero on the first
 * that fails. With a config (JSON text) it reads JSON Lines on stdin and
 * prints "dropped D of N", for a caller to compare with its own count.
 */

#include <stdio.h>
#include <stdlib.h>

#include "../drop_types.h"

static int failures;

static void check(bool ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "FAIL: %s\n", what);
        failures++;
    }
}

static const char *read_config(struct drop_types *types, const char *config) {
    return drop_types_read(types, (const uint8_t *)config, strlen(config));
}

static bool drops(const struct drop_types *types, const char *line) {
    return drop_types_match(types, (const uint8_t *)line, strlen(line));
}

static void cases(void) {
    struct drop_types types;
    check(read_config(&types, "{}") == NULL && types.count == 2, "no `types`: the two defaults");
    check(drops(&types, "{\"event\":\"session.data\",\"uid\":\"1\"}"), "session.data dropped by default");
    check(drops(&types, "{\"ei\":3,\"event\":\"app.session.chunk\"}"), "app.session.chunk dropped by default");
    check(!drops(&types, "{\"event\":\"session.start\"}"), "session.start kept");
    check(!drops(&types, "{\"event\":\"session.data.more\"}"), "a longer type is another type");
    check(!drops(&types, "{\"uid\":\"session.data\"}"), "a value elsewhere is no type");
    check(!drops(&types, "{\"event\":\"session.da"), "a cut line is kept");

    check(read_config(&types, "{\"types\": [ \"sftp\" , \"desktop.*\" ]}") == NULL && types.count == 2, "a list with spaces");
    check(drops(&types, "{\"event\":\"sftp\"}") && !drops(&types, "{\"event\":\"sftp2\"}"), "exact match");
    check(drops(&types, "{\"event\":\"desktop.recording\"}") && !drops(&types, "{\"event\":\"desktop\"}"), "prefix match");
    check(read_config(&types, "{\"types\":[]}") == NULL && types.count == 0 && !drops(&types, "{\"event\":\"x\"}"), "empty list");

    check(read_config(&types, "{\"types\":\"sftp\"}") != NULL, "a string is refused");
    check(read_config(&types, "{\"types\":[1]}") != NULL, "a number is refused");
    check(read_config(&types, "{\"types\":[\"a\\\"b\"]}") != NULL, "an escape is refused");
    check(read_config(&types, "{\"types\":[\"a\"") != NULL, "an open list is refused");
    check(read_config(&types, "{\"types\":[\"a\" \"b\"]}") != NULL, "a missing comma is refused");
    check(read_config(&types, "{\"types\":[\"\"]}") != NULL, "an empty type is refused");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        cases();
        if (failures == 0) {
            puts("ok");
        }
        return failures == 0 ? 0 : 1;
    }
    struct drop_types types;
    const char *refused = read_config(&types, argv[1]);
    if (refused != NULL) {
        fprintf(stderr, "config refused: %s\n", refused);
        return 2;
    }
    static char line[1 << 20];
    unsigned long dropped = 0, total = 0;
    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t len = strcspn(line, "\n");
        total++;
        dropped += drop_types_match(&types, (const uint8_t *)line, len);
    }
    printf("dropped %lu of %lu\n", dropped, total);
    return 0;
}
