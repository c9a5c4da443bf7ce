/* tests/unit/proxy/json.c: strict JSON reading and writing (proxy/json.c).
 * The error tests are the catalogue of faults json_parse() reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/json.h"

/* ---- helpers ---- */

static struct json_value *parse_n(const char *text, size_t len)
{
    char err[256];
    struct json_value *v = json_parse(text, len, err, sizeof err);
    if (!v)
        fail_msg("parse of \"%.*s\" failed: %s", (int)len, text, err);
    return v;
}

static struct json_value *parse(const char *text)
{
    return parse_n(text, strlen(text));
}

static void expect_error_n(const char *text, size_t len, const char *msg)
{
    char err[256];
    struct json_value *v = json_parse(text, len, err, sizeof err);
    if (v) {
        json_free(&v);
        fail_msg("\"%.*s\" parsed; expected \"%s\"", (int)len, text, msg);
    }
    assert_string_equal(err, msg);
}

static void expect_error(const char *text, const char *msg)
{
    expect_error_n(text, strlen(text), msg);
}

static void check_string(const struct json_value *v, const char *s, size_t len)
{
    assert_non_null(v);
    assert_int_equal(v->type, JSON_STRING);
    assert_int_equal(v->string.len, len);
    assert_memory_equal(v->string.ptr, s, len);
    assert_int_equal(v->string.ptr[len], '\0');
}

/* expect_parsed_string: the single string the document text holds, compared to s. */
static void expect_parsed_string(const char *text, const char *s, size_t len)
{
    struct json_value *v = parse(text);
    check_string(v, s, len);
    json_free(&v);
}

/* write_tree: v written compactly (or pretty), as a NUL-terminated string. */
static char *write_tree(const struct json_value *v, bool pretty)
{
    struct buf out = {0};
    struct json_writer w;
    json_writer_init(&w, &out, pretty);
    json_writer_value(&w, v);
    assert_true(json_writer_finish(&w));
    buf_append(&out, "", 1);
    return out.data;
}

static void expect_written_string(const char *s, size_t len, const char *want)
{
    struct buf out = {0};
    json_write_string(&out, s, len);
    assert_false(out.oom);
    buf_append(&out, "", 1);
    assert_string_equal(out.data, want);
    buf_release(&out);
}

/* ---- valid documents ---- */

static void test_scalars(void **state)
{
    (void)state;
    struct json_value *v = parse("null");
    assert_int_equal(v->type, JSON_NULL);
    json_free(&v);
    assert_null(v);

    v = parse("true");
    assert_int_equal(v->type, JSON_BOOL);
    assert_true(v->boolean);
    json_free(&v);

    v = parse(" \t\r\n false \n");
    assert_int_equal(v->type, JSON_BOOL);
    assert_false(v->boolean);
    json_free(&v);

    v = parse("42");
    assert_int_equal(v->type, JSON_NUMBER);
    assert_true(v->number.is_int);
    assert_int_equal(v->number.integer, 42);
    assert_true(v->number.value == 42.0);
    json_free(&v);

    expect_parsed_string("\"hello\"", "hello", 5);
    expect_parsed_string("\"\"", "", 0);

    v = parse("[]");
    assert_int_equal(v->type, JSON_ARRAY);
    assert_int_equal(v->array.n, 0);
    json_free(&v);

    v = parse("{ }");
    assert_int_equal(v->type, JSON_OBJECT);
    assert_int_equal(v->object.n, 0);
    json_free(&v);

    json_free(&v); /* NULL is fine */
    json_free(NULL);
}

static void test_document_of_every_type(void **state)
{
    (void)state;
    const char *text = "{\n"
                       "  \"name\": \"tessera\",\n"
                       "  \"list\": [1, -2.5, true, false, null, \"x\", [], {}],\n"
                       "  \"nested\": {\"a\": {\"b\": [[\"deep\"]]}},\n"
                       "  \"empty\": \"\"\n"
                       "}";
    struct json_value *v = parse(text);
    assert_int_equal(v->type, JSON_OBJECT);
    assert_int_equal(v->object.n, 4);
    const char *keys[] = {"name", "list", "nested", "empty"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(v->object.members[i].key_len, strlen(keys[i]));
        assert_string_equal(v->object.members[i].key, keys[i]);
    }

    check_string(json_object_get(v, "name"), "tessera", 7);
    const struct json_value *list = json_object_get(v, "list");
    assert_int_equal(list->type, JSON_ARRAY);
    assert_int_equal(list->array.n, 8);
    const struct json_value *it = list->array.items;
    assert_int_equal(it[0].type, JSON_NUMBER);
    assert_int_equal(it[0].number.integer, 1);
    assert_int_equal(it[1].type, JSON_NUMBER);
    assert_false(it[1].number.is_int);
    assert_true(it[1].number.value == -2.5);
    assert_int_equal(it[2].type, JSON_BOOL);
    assert_true(it[2].boolean);
    assert_int_equal(it[3].type, JSON_BOOL);
    assert_false(it[3].boolean);
    assert_int_equal(it[4].type, JSON_NULL);
    check_string(&it[5], "x", 1);
    assert_int_equal(it[6].type, JSON_ARRAY);
    assert_int_equal(it[6].array.n, 0);
    assert_int_equal(it[7].type, JSON_OBJECT);
    assert_int_equal(it[7].object.n, 0);

    const struct json_value *b =
        json_object_get(json_object_get(json_object_get(v, "nested"), "a"), "b");
    assert_non_null(b);
    assert_int_equal(b->type, JSON_ARRAY);
    check_string(&b->array.items[0].array.items[0], "deep", 4);

    check_string(json_object_get(v, "empty"), "", 0);
    assert_null(json_object_get(v, "missing"));
    assert_null(json_object_get(v, "nam"));
    assert_null(json_object_get(list, "name")); /* not an object */
    assert_null(json_object_get(NULL, "name"));
    json_free(&v);
}

static void test_admin_shapes(void **state)
{
    (void)state;
    static const char *const purge_fields[] = {"url", "prefix", "host", "tag", "all", "soft", NULL};
    char err[128];

    struct json_value *v = parse("{\"url\":\"http://h/p?q\"}");
    assert_true(json_object_check_keys(v, purge_fields, err, sizeof err));
    check_string(json_object_get(v, "url"), "http://h/p?q", 12);
    json_free(&v);

    v = parse("{\"prefix\":\"/p/\",\"host\":\"a.com\",\"soft\":true}");
    assert_true(json_object_check_keys(v, purge_fields, err, sizeof err));
    check_string(json_object_get(v, "prefix"), "/p/", 3);
    check_string(json_object_get(v, "host"), "a.com", 5);
    const struct json_value *soft = json_object_get(v, "soft");
    assert_int_equal(soft->type, JSON_BOOL);
    assert_true(soft->boolean);
    assert_null(json_object_get(v, "url"));
    json_free(&v);

    v = parse("{\"tag\":[\"a\",\"b\"]}");
    assert_true(json_object_check_keys(v, purge_fields, err, sizeof err));
    const struct json_value *tag = json_object_get(v, "tag");
    assert_int_equal(tag->type, JSON_ARRAY);
    assert_int_equal(tag->array.n, 2);
    check_string(&tag->array.items[0], "a", 1);
    check_string(&tag->array.items[1], "b", 1);
    json_free(&v);

    v = parse("{\"all\":true}");
    assert_true(json_object_check_keys(v, purge_fields, err, sizeof err));
    assert_true(json_object_get(v, "all")->boolean);
    json_free(&v);
}

static void test_check_keys(void **state)
{
    (void)state;
    static const char *const allowed[] = {"url", "soft", NULL};
    static const char *const none[] = {NULL};
    char err[128];

    struct json_value *v = parse("{\"url\":\"/\",\"foo\":1,\"bar\":2}");
    assert_false(json_object_check_keys(v, allowed, err, sizeof err));
    assert_string_equal(err, "unknown field \"foo\"");
    json_free(&v);

    /* a prefix of an allowed name is not that name */
    v = parse("{\"ur\":1}");
    assert_false(json_object_check_keys(v, allowed, err, sizeof err));
    assert_string_equal(err, "unknown field \"ur\"");
    json_free(&v);

    /* names are quoted as JSON and cut */
    v = parse("{\"a\\\"b\\u0001\":1}");
    assert_false(json_object_check_keys(v, allowed, err, sizeof err));
    assert_string_equal(err, "unknown field \"a\\\"b\\u0001\"");
    json_free(&v);
    v = parse("{\"0123456789012345678901234567890123456789tail\":1}");
    assert_false(json_object_check_keys(v, allowed, err, sizeof err));
    assert_string_equal(err, "unknown field \"0123456789012345678901234567890123456789\"...");
    json_free(&v);

    v = parse("{}");
    assert_true(json_object_check_keys(v, none, err, sizeof err));
    json_free(&v);

    v = parse("[\"url\"]");
    assert_false(json_object_check_keys(v, allowed, err, sizeof err));
    assert_string_equal(err, "expected a JSON object");
    json_free(&v);
    assert_false(json_object_check_keys(NULL, allowed, NULL, 0));
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(json_type_name(JSON_NULL), "null");
    assert_string_equal(json_type_name(JSON_BOOL), "boolean");
    assert_string_equal(json_type_name(JSON_NUMBER), "number");
    assert_string_equal(json_type_name(JSON_STRING), "string");
    assert_string_equal(json_type_name(JSON_ARRAY), "array");
    assert_string_equal(json_type_name(JSON_OBJECT), "object");
}

/* ---- strings ---- */

static void test_string_escapes(void **state)
{
    (void)state;
    expect_parsed_string("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\" \\ / \b \f \n \r \t", 15);
    expect_parsed_string("\"\\u0041\\u00e9\\u00E9\"", "A\xc3\xa9\xc3\xa9", 5);
    expect_parsed_string("\"\\u20ac\"", "\xe2\x82\xac", 3);
    expect_parsed_string("\"\\uffff\"", "\xef\xbf\xbf", 3);
    /* surrogate pairs: U+1F600, and the ends of the range */
    expect_parsed_string("\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80", 4);
    expect_parsed_string("\"\\ud800\\udc00\"", "\xf0\x90\x80\x80", 4);
    expect_parsed_string("\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4);
    /* \u0000 is a NUL inside the string */
    expect_parsed_string("\"a\\u0000b\"", "a\0b", 3);
    /* raw UTF-8 passes: 2, 3 and 4 bytes, and DEL is no control character */
    expect_parsed_string("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f\"",
                         "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f", 10);
    /* a key is decoded the same way */
    struct json_value *v = parse("{\"\\u0075rl\":1}");
    assert_non_null(json_object_get(v, "url"));
    json_free(&v);
}

static void test_string_errors(void **state)
{
    (void)state;
    expect_error("\"abc", "line 1, column 1: unterminated string");
    expect_error("[1, \"abc\\\"]", "line 1, column 5: unterminated string");
    expect_error("\"abc\\", "line 1, column 1: unterminated string");
    expect_error("\"a\nb\"", "line 1, column 3: unescaped control character U+000A in string");
    expect_error("\"a\tb\"", "line 1, column 3: unescaped control character U+0009 in string");
    expect_error_n("\"a\0b\"", 5, "line 1, column 3: unescaped control character U+0000 in string");
    expect_error("\"\x1f\"", "line 1, column 2: unescaped control character U+001F in string");
    expect_error("\"a\\x\"", "line 1, column 3: invalid escape '\\x'");
    expect_error("\"a\\U0041\"", "line 1, column 3: invalid escape '\\U'");
    expect_error("\"a\\\x01\"", "line 1, column 3: invalid escape");
    expect_error("\"\\u12G4\"", "line 1, column 2: invalid \\u escape");
    expect_error("\"\\u12\"", "line 1, column 2: invalid \\u escape");
    expect_error("\"\\u12", "line 1, column 2: invalid \\u escape");
    expect_error("\"\\u+123\"", "line 1, column 2: invalid \\u escape");
    /* surrogates must pair: high then low */
    expect_error("\"\\uD83D\"", "line 1, column 2: unpaired surrogate \\uD83D");
    expect_error("\"x\\ud83dx\"", "line 1, column 3: unpaired surrogate \\uD83D");
    expect_error("\"\\uD83D\\u0041\"", "line 1, column 2: unpaired surrogate \\uD83D");
    expect_error("\"\\uD83D\\uD83D\"", "line 1, column 2: unpaired surrogate \\uD83D");
    expect_error("\"\\uDE00\"", "line 1, column 2: unpaired surrogate \\uDE00");
    expect_error("\"\\uDE00\\uD83D\"", "line 1, column 2: unpaired surrogate \\uDE00");
    expect_error("\"\\uD83D\\n\"", "line 1, column 2: unpaired surrogate \\uD83D");
    expect_error("\"\\uD83D\\uZZZZ\"", "line 1, column 8: invalid \\u escape");
    /* ill-formed UTF-8 (Unicode Table 3-7) */
    expect_error("\"a\xc3(\"", "line 1, column 3: invalid UTF-8 in string");
    expect_error("\"\xc3\"", "line 1, column 2: invalid UTF-8 in string");
    expect_error("\"\xc0\x80\"", "line 1, column 2: invalid UTF-8 in string");     /* overlong */
    expect_error("\"\xe0\x80\xaf\"", "line 1, column 2: invalid UTF-8 in string"); /* overlong */
    expect_error("\"\xed\xa0\x80\"", "line 1, column 2: invalid UTF-8 in string"); /* U+D800 */
    expect_error("\"\xf4\x90\x80\x80\"", "line 1, column 2: invalid UTF-8 in string"); /* >10FFFF */
    expect_error("\"\xf5\x80\x80\x80\"", "line 1, column 2: invalid UTF-8 in string");
    expect_error("\"\xff\"", "line 1, column 2: invalid UTF-8 in string");
    expect_error("\"\x80\"", "line 1, column 2: invalid UTF-8 in string");
    expect_error("\"\xe2\x82", "line 1, column 2: invalid UTF-8 in string");
    /* columns count characters, not bytes */
    expect_error("\"\xc3\xa9\xe2\x82\xac\xff\"", "line 1, column 4: invalid UTF-8 in string");
}

/* ---- numbers ---- */

static void expect_number(const char *text, double value, bool is_int, int64_t integer)
{
    struct json_value *v = parse(text);
    assert_int_equal(v->type, JSON_NUMBER);
    if (v->number.value != value)
        fail_msg("%s: %.17g, expected %.17g", text, v->number.value, value);
    assert_int_equal(v->number.is_int, is_int);
    if (is_int)
        assert_int_equal(v->number.integer, integer);
    json_free(&v);
}

static void test_numbers(void **state)
{
    (void)state;
    expect_number("0", 0, true, 0);
    expect_number("-1", -1, true, -1);
    expect_number("1.5", 1.5, false, 0);
    expect_number("-0.25", -0.25, false, 0);
    expect_number("1e3", 1000, false, 0);
    expect_number("1E+2", 100, false, 0);
    expect_number("25e-2", 0.25, false, 0);
    expect_number("1.0", 1, false, 0);
    expect_number("0.0", 0, false, 0);
    expect_number("9223372036854775807", 9223372036854775807.0, true, INT64_MAX);
    expect_number("-9223372036854775808", -9223372036854775808.0, true, INT64_MIN);
    expect_number("9223372036854775808", 9223372036854775808.0, false, 0);
    expect_number("-9223372036854775809", -9223372036854775808.0, false, 0);
    expect_number("99999999999999999999", 1e20, false, 0);
    /* integers stay exact beyond 2^53 */
    expect_number("9007199254740993", 9007199254740992.0, true, 9007199254740993);
    /* tiny numbers become 0 (or a subnormal); only overflow is refused */
    expect_number("1e-400", 0, false, 0);
    expect_number("4.9406564584124654e-324", 4.9406564584124654e-324, false, 0);
    expect_number("1.7976931348623157e308", 1.7976931348623157e308, false, 0);
    expect_number("0e99999999999999999999", 0, false, 0);

    /* -0 is an integer 0 and keeps its sign as a double */
    struct json_value *v = parse("-0");
    assert_true(v->number.is_int);
    assert_int_equal(v->number.integer, 0);
    assert_true(v->number.value == 0 && signbit(v->number.value));
    json_free(&v);

    /* a long number is read whole */
    char big[400];
    memset(big, '1', 300);
    strcpy(big + 300, ".5e-290");
    v = parse(big);
    assert_false(v->number.is_int);
    assert_true(v->number.value > 1.1e9 && v->number.value < 1.2e9);
    json_free(&v);
}

static void test_number_errors(void **state)
{
    (void)state;
    expect_error("01", "line 1, column 2: leading zero in number");
    expect_error("-01", "line 1, column 3: leading zero in number");
    expect_error("[00]", "line 1, column 3: leading zero in number");
    expect_error("-", "line 1, column 2: expected digit after '-'");
    expect_error("-a", "line 1, column 2: expected digit after '-'");
    expect_error("- 1", "line 1, column 2: expected digit after '-'");
    expect_error("1.", "line 1, column 3: expected digit after '.'");
    expect_error("1.e3", "line 1, column 3: expected digit after '.'");
    expect_error("1e", "line 1, column 3: expected digit in exponent");
    expect_error("1e+", "line 1, column 4: expected digit in exponent");
    expect_error("[1E-x]", "line 1, column 5: expected digit in exponent");
    expect_error("1e400", "line 1, column 1: number out of range");
    expect_error("[0, -1e400]", "line 1, column 5: number out of range");
    expect_error("1e99999999999999999999", "line 1, column 1: number out of range");
    expect_error(".5", "line 1, column 1: expected a value");
    expect_error("+1", "line 1, column 1: expected a value");
    expect_error("NaN", "line 1, column 1: expected a value");
    expect_error("Infinity", "line 1, column 1: expected a value");
    expect_error("-Infinity", "line 1, column 2: expected digit after '-'");
    expect_error("0x10", "line 1, column 2: trailing characters after the document");
    expect_error("1.5.2", "line 1, column 4: trailing characters after the document");
}

/* ---- structure ---- */

static void test_structure_errors(void **state)
{
    (void)state;
    expect_error("{\"url\" \"http://h/\"}", "line 1, column 8: expected ':' after object key");
    expect_error("{\"url\"", "line 1, column 7: expected ':' after object key");
    expect_error("{", "line 1, column 2: expected string key or '}'");
    expect_error("{url:1}", "line 1, column 2: expected string key or '}'");
    expect_error("{'a':1}", "line 1, column 2: expected string key or '}'");
    expect_error("{\"a\":1,}", "line 1, column 7: trailing comma before '}'");
    expect_error("{\"a\":1 , }", "line 1, column 8: trailing comma before '}'");
    expect_error("{\"a\":1,2}", "line 1, column 8: expected string key");
    expect_error("{\"a\":1,", "line 1, column 8: expected string key");
    expect_error("{\"a\":1 \"b\":2}", "line 1, column 8: expected ',' or '}' after object member");
    expect_error("{\"a\":1", "line 1, column 7: expected ',' or '}' after object member");
    expect_error("{\"a\":1]", "line 1, column 7: expected ',' or '}' after object member");
    expect_error("{\"a\":}", "line 1, column 6: expected a value");
    expect_error("{\"a\":", "line 1, column 6: expected a value");
    expect_error("[", "line 1, column 2: expected a value");
    expect_error("[1 2]", "line 1, column 4: expected ',' or ']' after array element");
    expect_error("[1", "line 1, column 3: expected ',' or ']' after array element");
    expect_error("[1}", "line 1, column 3: expected ',' or ']' after array element");
    expect_error("[1,]", "line 1, column 3: trailing comma before ']'");
    expect_error("[,1]", "line 1, column 2: expected a value");
    expect_error("[1,,2]", "line 1, column 4: expected a value");
    expect_error("]", "line 1, column 1: expected a value");
    expect_error("tru", "line 1, column 1: invalid literal, expected true");
    expect_error("[truE]", "line 1, column 2: invalid literal, expected true");
    expect_error("fals", "line 1, column 1: invalid literal, expected false");
    expect_error("{\"a\":nul}", "line 1, column 6: invalid literal, expected null");
    expect_error("True", "line 1, column 1: expected a value");
    expect_error("[\xc3\xa9]", "line 1, column 2: expected a value");
    expect_error("/* */ 1", "line 1, column 1: expected a value");
    expect_error("\f1", "line 1, column 1: expected a value"); /* not JSON whitespace */
    /* lines count at "\n", columns restart after it and count characters */
    expect_error("{\n  \"a\": 1,\n  \"b\" 2\n}", "line 3, column 7: expected ':' after object key");
    expect_error("[\"\xc3\xa9\xe2\x82\xac\" x]",
                 "line 1, column 7: expected ',' or ']' after array element");
    expect_error("[1,\r\n 2,\r\n]", "line 2, column 3: trailing comma before ']'");
}

static void test_empty_bom_and_trailing_garbage(void **state)
{
    (void)state;
    expect_error("", "line 1, column 1: empty document");
    expect_error("  \n ", "line 2, column 2: empty document");
    expect_error("\xef\xbb\xbf{}", "line 1, column 1: byte order mark not allowed");
    expect_error("\xef\xbb\xbf", "line 1, column 1: byte order mark not allowed");
    expect_error(" \xef\xbb\xbf{}", "line 1, column 2: expected a value");

    expect_error("{} x", "line 1, column 4: trailing characters after the document");
    expect_error("1 2", "line 1, column 3: trailing characters after the document");
    expect_error("nullx", "line 1, column 5: trailing characters after the document");
    expect_error("{}}", "line 1, column 3: trailing characters after the document");
    expect_error("[]\n[]", "line 2, column 1: trailing characters after the document");
    expect_error("\"a\"\"b\"", "line 1, column 4: trailing characters after the document");
    expect_error_n("{}\0", 3, "line 1, column 3: trailing characters after the document");

    /* the slice ends where len says, whatever follows it */
    struct json_value *v = parse_n("[1]garbage", 3);
    assert_int_equal(v->type, JSON_ARRAY);
    json_free(&v);
    expect_error_n("[1]", 2, "line 1, column 3: expected ',' or ']' after array element");
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    expect_error("{\"url\":\"a\",\"url\":\"b\"}", "line 1, column 12: duplicate key \"url\"");
    /* keys compare after unescaping */
    expect_error("{\"a\":1,\"\\u0061\":2}", "line 1, column 8: duplicate key \"a\"");
    expect_error("{\"\":1,\"\":2}", "line 1, column 7: duplicate key \"\"");
    /* after a nested object closed, and reported before a later fault */
    expect_error("{\"a\":{\"b\":1},\"b\":2,\"a\":3,}", "line 1, column 20: duplicate key \"a\"");
    expect_error("{\"a\\u0000\":1,\"a\\u0000\":2}",
                 "line 1, column 14: duplicate key \"a\\u0000\"");
    /* a long name is cut in the message */
    expect_error("{\"0123456789012345678901234567890123456789\xc3\xa9\":1,"
                 "\"0123456789012345678901234567890123456789\xc3\xa9\":2}",
                 "line 1, column 48: duplicate key "
                 "\"0123456789012345678901234567890123456789\"...");
    expect_error("{\"012345678901234567890123456789012345678\xc3\xa9\":1,"
                 "\"012345678901234567890123456789012345678\xc3\xa9\":2}",
                 "line 1, column 47: duplicate key "
                 "\"012345678901234567890123456789012345678\"...");

    /* the same key in different objects, and names differing by case or a
     * NUL, are fine */
    struct json_value *v =
        parse("{\"a\":{\"a\":1},\"b\":{\"a\":[{\"a\":2}]},\"A\":3,\"a\\u0000\":4}");
    assert_int_equal(v->object.n, 4);
    assert_int_equal(json_object_get(json_object_get(v, "b"), "a")->array.items[0].object.n, 1);
    json_free(&v);
}

/* object_with_keys: an object with members "k0" .. "k<n-1>", then one
 * named extra (when not NULL), into b. */
static void object_with_keys(struct buf *b, int n, const char *extra)
{
    buf_reset(b);
    buf_append_str(b, "{");
    for (int i = 0; i < n; i++)
        buf_appendf(b, "%s\"k%d\":%d", i ? "," : "", i, i);
    if (extra)
        buf_appendf(b, ",\"%s\":{\"k0\":0,\"%s\":1}", extra, extra);
    buf_append_str(b, "}");
    assert_false(b->oom);
}

static void test_duplicate_keys_in_large_objects(void **state)
{
    (void)state;
    struct buf b = {0};
    char err[128];

    /* from 16 members on, the check goes through a hash set: every member
     * is in it, whether it came before or after the set was built */
    const char *dups[] = {"k0", "k14", "k15", "k16", "k17", "k999", "k1999"};
    for (size_t i = 0; i < sizeof dups / sizeof dups[0]; i++) {
        object_with_keys(&b, 2000, dups[i]);
        assert_null(json_parse(b.data, b.len, err, sizeof err));
        char want[64];
        snprintf(want, sizeof want, "line 1, column %zu: duplicate key \"%s\"",
                 b.len - 2 * strlen(dups[i]) - 16, dups[i]);
        assert_string_equal(err, want);
    }
    for (int n = 14; n <= 18; n++) {
        object_with_keys(&b, n, "k13");
        assert_null(json_parse(b.data, b.len, err, sizeof err));
    }

    /* large objects side by side and nested keep their own keys */
    object_with_keys(&b, 3000, "x");
    struct json_value *v = parse_n(b.data, b.len);
    assert_int_equal(v->object.n, 3001);
    json_free(&v);
    buf_reset(&b);
    buf_append_str(&b, "[");
    for (int o = 0; o < 3; o++) {
        buf_append_str(&b, o ? ",{" : "{");
        for (int i = 0; i < 100; i++)
            buf_appendf(&b, "%s\"k%d\":%s", i ? "," : "", i,
                        i == 50 ? "{\"k50\":{\"k1\":1}}" : "0");
        buf_append_str(&b, "}");
    }
    buf_append_str(&b, "]");
    v = parse_n(b.data, b.len);
    assert_int_equal(v->array.n, 3);
    assert_int_equal(v->array.items[2].object.n, 100);
    json_free(&v);
    buf_release(&b);
}

/* nested: n arrays (or objects, as {"k": ...}) around a 0. */
static char *nested(int n, bool objects)
{
    struct buf b = {0};
    for (int i = 0; i < n; i++)
        buf_append_str(&b, objects ? "{\"k\":" : "[");
    buf_append_str(&b, "0");
    for (int i = 0; i < n; i++)
        buf_append_str(&b, objects ? "}" : "]");
    buf_append(&b, "", 1);
    assert_false(b.oom);
    return b.data;
}

static void test_depth_limit(void **state)
{
    (void)state;
    char *text = nested(JSON_MAX_DEPTH, false);
    struct json_value *v = parse(text);
    const struct json_value *p = v;
    for (int i = 0; i < JSON_MAX_DEPTH; i++) {
        assert_int_equal(p->type, JSON_ARRAY);
        p = &p->array.items[0];
    }
    assert_int_equal(p->type, JSON_NUMBER);
    json_free(&v);
    free(text);

    text = nested(JSON_MAX_DEPTH + 1, false);
    expect_error(text, "line 1, column 33: nesting deeper than 32");
    free(text);

    text = nested(JSON_MAX_DEPTH, true);
    v = parse(text);
    json_free(&v);
    free(text);

    text = nested(JSON_MAX_DEPTH + 1, true);
    expect_error(text, "line 1, column 161: nesting deeper than 32");
    free(text);

    /* depth is nesting, not the number of containers */
    struct buf b = {0};
    buf_append_str(&b, "[");
    for (int i = 0; i < 100; i++)
        buf_append_str(&b, i ? ",[[]]" : "[[]]");
    buf_append_str(&b, "]");
    v = parse_n(b.data, b.len);
    assert_int_equal(v->array.n, 100);
    json_free(&v);
    buf_release(&b);
}

/* array_of_zeros: an array of n zeros, into b. */
static void array_of_zeros(struct buf *b, size_t n)
{
    buf_reset(b);
    buf_append_str(b, "[");
    for (size_t i = 0; i < n; i++)
        buf_append_str(b, i ? ",0" : "0");
    buf_append_str(b, "]");
    assert_false(b->oom);
}

static void test_value_limit(void **state)
{
    (void)state;
    struct buf b = {0};
    char err[128];

    /* the array and its elements are the values */
    array_of_zeros(&b, JSON_MAX_VALUES - 1);
    struct json_value *v = parse_n(b.data, b.len);
    assert_int_equal(v->array.n, JSON_MAX_VALUES - 1);
    assert_true(v->array.items[JSON_MAX_VALUES - 2].number.is_int);
    json_free(&v);

    array_of_zeros(&b, JSON_MAX_VALUES);
    assert_null(json_parse(b.data, b.len, err, sizeof err));
    /* the last 0, at byte 1 + 2 * 9999 */
    assert_string_equal(err, "line 1, column 20000: more than 10000 values");

    /* keys are not values: an object of 9999 members fits */
    buf_reset(&b);
    buf_append_str(&b, "{");
    for (int i = 0; i < JSON_MAX_VALUES - 1; i++)
        buf_appendf(&b, "%s\"k%d\":%d", i ? "," : "", i, i);
    buf_append_str(&b, "}");
    v = parse_n(b.data, b.len);
    assert_int_equal(v->object.n, JSON_MAX_VALUES - 1);
    assert_int_equal(json_object_get(v, "k9998")->number.integer, 9998);
    json_free(&v);
    buf_release(&b);
}

static void test_error_buffer(void **state)
{
    (void)state;
    char err[16];

    /* cut to fit, always terminated */
    memset(err, 'x', sizeof err);
    assert_null(json_parse("[1,]", 4, err, sizeof err));
    assert_string_equal(err, "line 1, column ");
    assert_null(json_parse("[1,]", 4, err, 1));
    assert_string_equal(err, "");
    assert_null(json_parse("[1,]", 4, NULL, 0));
    /* cleared on success */
    struct json_value *v = json_parse("1", 1, err, sizeof err);
    assert_string_equal(err, "");
    json_free(&v);
}

/* ---- writing ---- */

static void test_write_string_escaping(void **state)
{
    (void)state;
    expect_written_string("", 0, "\"\"");
    expect_written_string("plain /path?q=1", 15, "\"plain /path?q=1\"");
    expect_written_string("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    expect_written_string("\n\t\r\b\f", 5, "\"\\u000a\\u0009\\u000d\\u0008\\u000c\"");
    expect_written_string("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\"");
    expect_written_string("a\0b", 3, "\"a\\u0000b\"");
    /* valid UTF-8 passes through */
    expect_written_string("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9,
                          "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    expect_written_string("\xef\xbf\xbf\xf4\x8f\xbf\xbf", 7, "\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"");
    /* each maximal ill-formed subpart becomes one U+FFFD */
    expect_written_string("a\xff"
                          "b",
                          3,
                          "\"a\xef\xbf\xbd"
                          "b\"");
    expect_written_string("\xe2\x82", 2, "\"\xef\xbf\xbd\"");
    expect_written_string("\xe2\x82z", 3, "\"\xef\xbf\xbdz\"");
    expect_written_string("\xf0\x9f\x98", 3, "\"\xef\xbf\xbd\"");
    expect_written_string("\xc0\x80", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    expect_written_string("\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    expect_written_string("\xf4\x90\x80\x80", 4,
                          "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    expect_written_string("\x80\"", 2, "\"\xef\xbf\xbd\\\"\"");
    /* appends after what out holds */
    struct buf out = {0};
    buf_append_str(&out, "x=");
    json_write_string(&out, "y", 1);
    assert_int_equal(out.len, 5);
    assert_memory_equal(out.data, "x=\"y\"", 5);
    buf_release(&out);
}

/* sample: a stats-like document through every writer call. */
static void write_sample(struct json_writer *w)
{
    json_writer_begin_object(w);
    json_writer_key(w, "name");
    json_writer_str(w, "tessera \"1\"");
    json_writer_key(w, "hits");
    json_writer_uint(w, UINT64_MAX);
    json_writer_key(w, "delta");
    json_writer_int(w, INT64_MIN);
    json_writer_key(w, "ratio");
    json_writer_double(w, 0.1);
    json_writer_key(w, "up");
    json_writer_bool(w, true);
    json_writer_key(w, "down");
    json_writer_bool(w, false);
    json_writer_key(w, "none");
    json_writer_null(w);
    json_writer_key(w, "list");
    json_writer_begin_array(w);
    json_writer_int(w, 1);
    json_writer_string(w, "ab", 1);
    json_writer_begin_object(w);
    json_writer_key_len(w, "kx", 1);
    json_writer_begin_array(w);
    json_writer_end_array(w);
    json_writer_end_object(w);
    json_writer_begin_object(w);
    json_writer_end_object(w);
    json_writer_end_array(w);
    json_writer_key(w, "empty");
    json_writer_begin_array(w);
    json_writer_end_array(w);
    json_writer_end_object(w);
}

static void test_writer_compact(void **state)
{
    (void)state;
    struct buf out = {0};
    struct json_writer w;
    json_writer_init(&w, &out, false);
    write_sample(&w);
    assert_true(json_writer_finish(&w));
    buf_append(&out, "", 1);
    assert_string_equal(out.data, "{\"name\":\"tessera \\\"1\\\"\",\"hits\":18446744073709551615,"
                                  "\"delta\":-9223372036854775808,\"ratio\":0.1,\"up\":true,"
                                  "\"down\":false,\"none\":null,\"list\":[1,\"a\",{\"k\":[]},{}],"
                                  "\"empty\":[]}");
    buf_release(&out);

    /* a scalar or an empty container at the top */
    json_writer_init(&w, &out, false);
    json_writer_int(&w, -5);
    assert_true(json_writer_finish(&w));
    assert_int_equal(out.len, 2);
    assert_memory_equal(out.data, "-5", 2);
    buf_release(&out);

    json_writer_init(&w, &out, true);
    json_writer_begin_object(&w);
    json_writer_end_object(&w);
    assert_true(json_writer_finish(&w));
    assert_int_equal(out.len, 3);
    assert_memory_equal(out.data, "{}\n", 3);
    buf_release(&out);
}

static void test_writer_pretty(void **state)
{
    (void)state;
    struct buf out = {0};
    struct json_writer w;
    json_writer_init(&w, &out, true);
    write_sample(&w);
    assert_true(json_writer_finish(&w));
    buf_append(&out, "", 1);
    assert_string_equal(out.data, "{\n"
                                  "  \"name\": \"tessera \\\"1\\\"\",\n"
                                  "  \"hits\": 18446744073709551615,\n"
                                  "  \"delta\": -9223372036854775808,\n"
                                  "  \"ratio\": 0.1,\n"
                                  "  \"up\": true,\n"
                                  "  \"down\": false,\n"
                                  "  \"none\": null,\n"
                                  "  \"list\": [\n"
                                  "    1,\n"
                                  "    \"a\",\n"
                                  "    {\n"
                                  "      \"k\": []\n"
                                  "    },\n"
                                  "    {}\n"
                                  "  ],\n"
                                  "  \"empty\": []\n"
                                  "}\n");
    buf_release(&out);
}

static void expect_double(double d, const char *want)
{
    struct buf out = {0};
    struct json_writer w;
    json_writer_init(&w, &out, false);
    json_writer_double(&w, d);
    assert_true(json_writer_finish(&w));
    buf_append(&out, "", 1);
    assert_string_equal(out.data, want);
    buf_release(&out);
}

static void test_writer_doubles(void **state)
{
    (void)state;
    expect_double(1.5, "1.5");
    expect_double(0.1, "0.1");
    expect_double(1000, "1000");
    expect_double(-0.0, "-0");
    expect_double(1e300, "1e+300");
    expect_double(1.0 / 3, "0.3333333333333333");
    expect_double(0.1 + 0.2, "0.30000000000000004");
    expect_double(4.9406564584124654e-324, "4.94065645841247e-324");
    expect_double(NAN, "null");
    expect_double(INFINITY, "null");
    expect_double(-INFINITY, "null");
}

/* expect_round_trip: text parses, writes compactly as want, and want parses and
 * writes as itself. */
static void expect_round_trip(const char *text, const char *want)
{
    struct json_value *v = parse(text);
    char *once = write_tree(v, false);
    assert_string_equal(once, want);
    json_free(&v);

    v = parse(once);
    char *twice = write_tree(v, false);
    assert_string_equal(twice, once);
    char *pretty = write_tree(v, true);
    json_free(&v);

    v = parse(pretty);
    char *thrice = write_tree(v, false);
    assert_string_equal(thrice, once);
    json_free(&v);
    free(once);
    free(twice);
    free(pretty);
    free(thrice);
}

static void test_round_trip(void **state)
{
    (void)state;
    expect_round_trip(" { \"url\" : \"http://h/p?q\" , \"soft\" : true } ",
                      "{\"url\":\"http://h/p?q\",\"soft\":true}");
    expect_round_trip("[1, -0, 1.5, 1e3, 2.5E-3, 9223372036854775807, 1e20, 0.1]",
                      "[1,0,1.5,1000,0.0025,9223372036854775807,1e+20,0.1]");
    expect_round_trip("[\"\\u00e9\\uD83D\\uDE00\\n\\/\\\"\", \"a\\u0000b\", null, {}, [[]]]",
                      "[\"\xc3\xa9\xf0\x9f\x98\x80\\u000a/\\\"\",\"a\\u0000b\",null,{},[[]]]");
    expect_round_trip("{\"a\":{\"b\":{\"c\":[true,false]}},\"\":\"\"}",
                      "{\"a\":{\"b\":{\"c\":[true,false]}},\"\":\"\"}");

    /* any bytes written as a string read back as themselves, or with
     * U+FFFD where they were not UTF-8 */
    struct buf out = {0};
    json_write_string(&out, "\x01x\xff\"\\\xc3\xa9", 7);
    struct json_value *v = parse_n(out.data, out.len);
    check_string(v, "\x01x\xef\xbf\xbd\"\\\xc3\xa9", 9);
    json_free(&v);
    buf_release(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_document_of_every_type),
        cmocka_unit_test(test_admin_shapes),
        cmocka_unit_test(test_check_keys),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_string_escapes),
        cmocka_unit_test(test_string_errors),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_number_errors),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_empty_bom_and_trailing_garbage),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_duplicate_keys_in_large_objects),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_value_limit),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_write_string_escaping),
        cmocka_unit_test(test_writer_compact),
        cmocka_unit_test(test_writer_pretty),
        cmocka_unit_test(test_writer_doubles),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests_name("proxy/json", tests, NULL, NULL);
}
