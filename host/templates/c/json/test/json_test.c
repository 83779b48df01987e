/*
 * The JSON reader's own test, natively:
 *
 *     cc -std=c11 -Wall -Wextra -o json_test test/json_test.c json.c && ./json_test
 *
 * prints `ok` when every case passes, else each failed case and exits 1.
 */

#include <stdio.h>
#include <string.h>

#include "../json.h"

static int failures;

static void check(bool ok, const char *what) {
    if (!ok) {
        printf("FAILED: %s\n", what);
        failures++;
    }
}

/* Whether `text` reads as one JSON value with nothing after it; `r` says why not. */
static bool valid(struct json_reader *r, const char *text, size_t len) {
    json_init(r, text, len);
    return json_skip(r) && json_finish(r);
}

static void escapes_are_decoded_into_utf8(void) {
    const char text[] = "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u20AC\\ud83d\\ude00\\u0041\"";
    const char expected[] = "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" "A";
    struct json_reader r;
    char out[64];
    size_t len;
    json_init(&r, text, sizeof text - 1);
    check(json_string(&r, out, sizeof out, &len) && json_finish(&r), "a string with every escape reads");
    check(len == sizeof expected - 1 && memcmp(out, expected, len) == 0 && out[len] == '\0', "and decodes to UTF-8");

    json_init(&r, "\"hello\"", 7);
    check(json_string(&r, out, 3, &len) && len == 5 && memcmp(out, "hel", 3) == 0, "a string longer than the buffer: its length, its start");
}

static void nested_objects_are_skipped_and_the_top_level_read(void) {
    const char text[] = " {\"meta\":{\"event\":\"nested\",\"x\":[1,{\"event\":\"deeper\"},[]],\"s\":\"}]\"},"
                        "\"event\" : \"user.login\",\"n\":-1.5e+3,\"ok\":true,\"no\":false,\"z\":null,\"e\":{},\"a\":[]} ";
    struct json_reader r;
    char key[16], type[32] = "";
    size_t len, members = 0;
    json_init(&r, text, sizeof text - 1);
    check(json_enter(&r, '{'), "an object");
    int more;
    while ((more = json_next(&r, '}')) == 1) {
        members++;
        if (!json_key(&r, key, sizeof key, &len)) {
            break;
        }
        if (strcmp(key, "event") == 0) {
            check(json_string(&r, type, sizeof type, &len), "the top-level event is a string");
        } else if (!json_skip(&r)) {
            break;
        }
    }
    check(more == 0 && json_finish(&r), "the whole object reads");
    check(members == 8, "eight top-level members");
    check(strcmp(type, "user.login") == 0, "the top-level `event`, not a nested one");
}

static void valid_text_reads(void) {
    const char *good[] = {"{}", "[]", "[[]]", " 0 ", "-0", "1.25", "2E-3", "\"\"", "true", "null",
                          "{\"a\":[1,2.5,-0,1e10,\"x\",true,false,null,{}],\"b\":{\"c\":{}}}"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        struct json_reader r;
        if (!valid(&r, good[i], strlen(good[i]))) {
            printf("FAILED: %s is JSON, yet: %s at byte %zu\n", good[i], r.error, r.error_at);
            failures++;
        }
    }
    char deep[2 * JSON_MAX_DEPTH];
    memset(deep, '[', JSON_MAX_DEPTH);
    memset(deep + JSON_MAX_DEPTH, ']', JSON_MAX_DEPTH);
    struct json_reader r;
    check(valid(&r, deep, sizeof deep), "JSON_MAX_DEPTH levels of nesting read");
}

static void bad_text_is_refused_with_a_reason(void) {
    const char *bad[] = {"", "   ", "{", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1,2", "[1 2]", "[1,]", "{\"a\":\"b",
                         "\"\x01\"", "\"\\q\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
                         "01", "1.", "1e", "1e+", "-", ".5", "tru", "nul", "False", "{\"a\":1} x", "{\"a\":1}}", "{\"a\":1,\"b\"}",
                         "[\"a\" \"b\"]", "{1:2}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct json_reader r;
        if (valid(&r, bad[i], strlen(bad[i])) || r.error == NULL || r.error_at > strlen(bad[i])) {
            printf("FAILED: `%s` is not JSON, yet it was read (or no reason was given)\n", bad[i]);
            failures++;
        }
    }
    struct json_reader r;
    check(!valid(&r, "{\"a\":1,}", 8) && r.error_at == 7 && strcmp(r.error, "expected a member's key (a string)") == 0,
          "a trailing comma: the reason and where");

    char deep[2 * JSON_MAX_DEPTH + 2];
    memset(deep, '[', JSON_MAX_DEPTH + 1);
    memset(deep + JSON_MAX_DEPTH + 1, ']', JSON_MAX_DEPTH + 1);
    check(!valid(&r, deep, sizeof deep) && strcmp(r.error, "nested deeper than JSON_MAX_DEPTH") == 0, "too deep is refused");
    check(!json_skip(&r) && json_next(&r, ']') == -1 && json_peek(&r) == JSON_INVALID, "after a fault every call fails");
}

int main(void) {
    escapes_are_decoded_into_utf8();
    nested_objects_are_skipped_and_the_top_level_read();
    valid_text_reads();
    bad_text_is_refused_with_a_reason();
    if (failures > 0) {
        return 1;
    }
    puts("ok");
    return 0;
}
