/*
 * tests/unit/cache/conditional.c: entity-tag syntax and comparison, entity-
 * tag lists, the RFC 9110 13.2.2 evaluation order of preconditions and
 * If-Range (cache/conditional.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cache/conditional.h"

/* RFC 9110's example date, 1994-11-06T08:49:37Z, and its neighbours. */
#define T_S INT64_C(784111777)
#define T_MS (T_S * 1000)
#define DATE_T "Sun, 06 Nov 1994 08:49:37 GMT"
#define DATE_T_RFC850 "Sunday, 06-Nov-94 08:49:37 GMT"
#define DATE_T_ASCTIME "Sun Nov  6 08:49:37 1994"
#define DATE_BEFORE "Sun, 06 Nov 1994 08:49:36 GMT" /* T - 1 s */
#define DATE_AFTER "Sun, 06 Nov 1994 08:49:38 GMT"  /* T + 1 s */
/* "now" in these tests: 2024-06-01T00:00:00Z */
#define NOW_MS (INT64_C(1717200000) * 1000)
#define DATE_NOW "Sat, 01 Jun 2024 00:00:00 GMT"
#define DATE_NOW_PLUS_1 "Sat, 01 Jun 2024 00:00:01 GMT"
#define DATE_FUTURE "Fri, 01 Jun 2035 00:00:00 GMT"

enum { GET, POST };

/* The representation most tests use: strong ETag "v1", Last-Modified T. */
static struct cache_validators rep(const char *etag, int64_t last_modified_ms)
{
    struct cache_validators v = {0};

    v.etag = etag;
    v.etag_len = etag ? strlen(etag) : 0;
    v.last_modified_ms = last_modified_ms;
    v.last_modified_strong = true;
    v.exists = true;
    return v;
}

/* A request with the given fields (NULL: absent). */
struct req {
    const char *if_match, *if_none_match, *if_modified_since, *if_unmodified_since;
    int method;
};

static enum cache_precondition_result eval_at(struct req r, const struct cache_validators *v,
                                              int64_t now_ms)
{
    struct cache_preconditions p = {0};

    p.if_match = r.if_match;
    p.if_match_len = r.if_match ? strlen(r.if_match) : 0;
    p.if_none_match = r.if_none_match;
    p.if_none_match_len = r.if_none_match ? strlen(r.if_none_match) : 0;
    p.if_modified_since = r.if_modified_since;
    p.if_modified_since_len = r.if_modified_since ? strlen(r.if_modified_since) : 0;
    p.if_unmodified_since = r.if_unmodified_since;
    p.if_unmodified_since_len = r.if_unmodified_since ? strlen(r.if_unmodified_since) : 0;
    p.get_or_head = r.method == GET;
    return cache_evaluate_preconditions(&p, v, now_ms);
}

static enum cache_precondition_result eval(struct req r, const struct cache_validators *v)
{
    return eval_at(r, v, NOW_MS);
}

#define PROCEED PRECONDITION_PROCEED
#define NOT_MODIFIED PRECONDITION_NOT_MODIFIED
#define FAILED PRECONDITION_FAILED

/* ---- entity-tags ---- */

static bool valid(const char *s)
{
    return cache_etag_valid(s, strlen(s));
}

static void test_etag_valid(void **state)
{
    (void)state;
    assert_true(valid("\"xyz\""));
    assert_true(valid("W/\"xyz\""));
    assert_true(valid("\"\""));
    assert_true(valid("W/\"\""));
    assert_true(valid("\"!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\""));
    assert_true(valid("\"\x80\xff\"")); /* obs-text */

    assert_false(cache_etag_valid(NULL, 0));
    assert_false(valid(""));
    assert_false(valid("xyz"));
    assert_false(valid("\"xyz"));
    assert_false(valid("xyz\""));
    assert_false(valid("\""));
    assert_false(valid("w/\"xyz\"")); /* W/ is case-sensitive */
    assert_false(valid("W/xyz"));
    assert_false(valid("W/"));
    assert_false(valid("W/ \"xyz\""));
    assert_false(valid(" \"xyz\""));
    assert_false(valid("\"xyz\" "));
    assert_false(valid("\"x y\""));    /* SP is not etagc */
    assert_false(valid("\"x\ty\""));   /* nor HTAB */
    assert_false(valid("\"x\x7fy\"")); /* nor DEL */
    assert_false(valid("\"x\"y\""));
    assert_false(valid("\"a\"\"b\""));
    assert_false(valid("\"a\", \"b\""));
    /* only the slice counts */
    assert_true(cache_etag_valid("\"ab\"cd", 4));
    assert_false(cache_etag_valid("\"ab\"", 3));
}

static void test_etag_weak(void **state)
{
    (void)state;
    assert_true(cache_etag_weak("W/\"a\"", 5));
    assert_false(cache_etag_weak("\"a\"", 3));
    assert_false(cache_etag_weak("W/a", 3)); /* invalid is not weak */
    assert_false(cache_etag_weak("W/\"a", 4));
    assert_false(cache_etag_weak(NULL, 0));
}

static bool strong(const char *a, const char *b)
{
    return cache_etag_strong_match(a, strlen(a), b, strlen(b));
}

static bool weak(const char *a, const char *b)
{
    return cache_etag_weak_match(a, strlen(a), b, strlen(b));
}

/* RFC 9110 8.8.3.2, the table, both ways round. */
static void test_etag_comparison_table(void **state)
{
    (void)state;
    assert_false(strong("W/\"1\"", "W/\"1\""));
    assert_true(weak("W/\"1\"", "W/\"1\""));
    assert_false(strong("W/\"1\"", "W/\"2\""));
    assert_false(weak("W/\"1\"", "W/\"2\""));
    assert_false(strong("W/\"1\"", "\"1\""));
    assert_false(strong("\"1\"", "W/\"1\""));
    assert_true(weak("W/\"1\"", "\"1\""));
    assert_true(weak("\"1\"", "W/\"1\""));
    assert_true(strong("\"1\"", "\"1\""));
    assert_true(weak("\"1\"", "\"1\""));
}

static void test_etag_comparison_edges(void **state)
{
    (void)state;
    assert_false(strong("\"1\"", "\"2\""));
    assert_false(strong("\"ab\"", "\"abc\""));
    assert_false(weak("\"ab\"", "\"abc\""));
    assert_false(strong("\"A\"", "\"a\"")); /* byte for byte */
    assert_true(strong("\"\"", "\"\""));
    /* invalid or missing tags never match, not even themselves */
    assert_false(strong("1", "1"));
    assert_false(weak("1", "1"));
    assert_false(weak("w/\"1\"", "\"1\""));
    assert_false(strong("\"1\"", ""));
    assert_false(weak("", ""));
    assert_false(cache_etag_strong_match("\"1\"", 3, NULL, 0));
    assert_false(cache_etag_weak_match(NULL, 0, "\"1\"", 3));
}

static void test_etag_from_hash(void **state)
{
    char out[24];
    (void)state;

    memset(out, 'x', sizeof out);
    cache_etag_from_hash(UINT64_C(0x0123456789abcdef), out);
    assert_string_equal(out, "\"tsr-0123456789abcdef\"");
    assert_int_equal(strlen(out), CACHE_ETAG_HASH_LEN);
    assert_int_equal(out[23], 'x'); /* 22 characters and a NUL */
    assert_true(cache_etag_valid(out, strlen(out)));
    assert_false(cache_etag_weak(out, strlen(out)));

    cache_etag_from_hash(0, out);
    assert_string_equal(out, "\"tsr-0000000000000000\"");
    cache_etag_from_hash(UINT64_MAX, out);
    assert_string_equal(out, "\"tsr-ffffffffffffffff\"");
}

/* ---- entity-tag lists ---- */

/* The list's tags joined by "|", or "INVALID" / "ANY". */
static const char *list(const char *v)
{
    static char buf[256];
    struct cache_etag_list l;
    const char *tag;
    size_t len, n = 0;

    switch (cache_etag_list_init(&l, v, v ? strlen(v) : 0)) {
    case CACHE_ETAG_LIST_INVALID:
        assert_false(cache_etag_list_next(&l, &tag, &len));
        return "INVALID";
    case CACHE_ETAG_LIST_ANY:
        assert_false(cache_etag_list_next(&l, &tag, &len));
        return "ANY";
    case CACHE_ETAG_LIST_TAGS:
        break;
    }
    buf[0] = '\0';
    while (cache_etag_list_next(&l, &tag, &len)) {
        assert_true(n + len + 2 < sizeof buf);
        if (n > 0)
            buf[n++] = '|';
        memcpy(buf + n, tag, len);
        n += len;
        buf[n] = '\0';
    }
    assert_false(cache_etag_list_next(&l, &tag, &len)); /* stays at the end */
    return buf;
}

static void test_list_star(void **state)
{
    (void)state;
    assert_string_equal(list("*"), "ANY");
    assert_string_equal(list(" \t* "), "ANY");
    assert_string_equal(list("*, *"), "INVALID"); /* two field lines of "*" */
    assert_string_equal(list("*, \"a\""), "INVALID");
    assert_string_equal(list("\"a\", *"), "INVALID");
    assert_string_equal(list("**"), "INVALID");
    assert_string_equal(list("*,"), "INVALID");
}

static void test_list_tags(void **state)
{
    (void)state;
    assert_string_equal(list("\"a\""), "\"a\"");
    assert_string_equal(list("\"a\", W/\"b\""), "\"a\"|W/\"b\"");
    assert_string_equal(list("\"a\",W/\"b\",\"c\""), "\"a\"|W/\"b\"|\"c\"");
    assert_string_equal(list("  \"a\" ,\t\"b\"  "), "\"a\"|\"b\"");
    assert_string_equal(list("\"a\",,\"b\""), "\"a\"|\"b\""); /* empty elements */
    assert_string_equal(list(", \"a\" ,"), "\"a\"");
    assert_string_equal(list("\"a,b\", \"c\""), "\"a,b\"|\"c\""); /* comma is etagc */
    assert_string_equal(list("\"\""), "\"\"");
}

static void test_list_malformed(void **state)
{
    (void)state;
    assert_string_equal(list(NULL), "INVALID");
    assert_string_equal(list(""), "INVALID");
    assert_string_equal(list("  "), "INVALID");
    assert_string_equal(list(","), "INVALID");
    assert_string_equal(list(" , ,"), "INVALID");
    assert_string_equal(list("a"), "INVALID");
    assert_string_equal(list("\"a\", b"), "INVALID");
    assert_string_equal(list("\"a\" \"b\""), "INVALID"); /* no comma */
    assert_string_equal(list("\"a\";q=1"), "INVALID");
    assert_string_equal(list("\"a"), "INVALID");
    assert_string_equal(list("w/\"a\""), "INVALID");
    assert_string_equal(list("W/ \"a\""), "INVALID");
    assert_string_equal(list("\"a b\""), "INVALID");
}

/* ---- If-Match (RFC 9110 13.1.1) ---- */

static void test_no_preconditions(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    assert_int_equal(eval((struct req){.method = GET}, &v), PROCEED);
    assert_int_equal(eval((struct req){.method = POST}, &v), PROCEED);
}

static void test_if_match(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    assert_int_equal(eval((struct req){.if_match = "\"v1\""}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_match = "\"v2\""}, &v), FAILED);
    assert_int_equal(eval((struct req){.if_match = "\"v0\", \"v1\""}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_match = "\"v0\", \"v2\""}, &v), FAILED);
    assert_int_equal(eval((struct req){.if_match = "*"}, &v), PROCEED);
    /* GET or not, If-Match fails with 412 */
    assert_int_equal(eval((struct req){.if_match = "\"v2\"", .method = GET}, &v), FAILED);
    assert_int_equal(eval((struct req){.if_match = "\"v1\"", .method = GET}, &v), PROCEED);
}

static void test_if_match_is_strong(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    struct cache_validators w = rep("W/\"v1\"", T_MS);
    (void)state;
    assert_int_equal(eval((struct req){.if_match = "W/\"v1\""}, &v), FAILED);
    assert_int_equal(eval((struct req){.if_match = "\"v1\""}, &w), FAILED);
    assert_int_equal(eval((struct req){.if_match = "W/\"v1\""}, &w), FAILED);
    assert_int_equal(eval((struct req){.if_match = "W/\"v1\", \"v1\""}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_match = "*"}, &w), PROCEED);
}

static void test_if_match_without_etag_or_representation(void **state)
{
    struct cache_validators none = rep(NULL, T_MS);
    struct cache_validators empty = rep("", T_MS);
    struct cache_validators bad = rep("v1", T_MS); /* unquoted: not an ETag */
    struct cache_validators gone = rep("\"v1\"", T_MS);
    (void)state;
    gone.exists = false;
    assert_int_equal(eval((struct req){.if_match = "\"v1\""}, &none), FAILED);
    assert_int_equal(eval((struct req){.if_match = "*"}, &none), PROCEED);
    assert_int_equal(eval((struct req){.if_match = "\"v1\""}, &empty), FAILED);
    assert_int_equal(eval((struct req){.if_match = "\"v1\""}, &bad), FAILED);
    assert_int_equal(eval((struct req){.if_match = "\"v1\""}, &gone), FAILED);
    assert_int_equal(eval((struct req){.if_match = "*"}, &gone), FAILED);
}

static void test_if_match_malformed_is_ignored(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    assert_int_equal(eval((struct req){.if_match = "v2"}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_match = ""}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_match = "\"v2\", x"}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_match = "*, \"v2\""}, &v), PROCEED);
}

/* ---- If-Unmodified-Since (RFC 9110 13.1.4) ---- */

static void test_if_unmodified_since_dates(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    assert_int_equal(eval((struct req){.if_unmodified_since = DATE_T}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_unmodified_since = DATE_AFTER}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_unmodified_since = DATE_BEFORE}, &v), FAILED);
    assert_int_equal(eval((struct req){.if_unmodified_since = DATE_BEFORE, .method = GET}, &v),
                     FAILED);
    /* a future date is not invalid here (only If-Modified-Since says so) */
    assert_int_equal(eval((struct req){.if_unmodified_since = DATE_FUTURE}, &v), PROCEED);
    /* the three HTTP-date forms */
    assert_int_equal(eval((struct req){.if_unmodified_since = DATE_T_RFC850}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_unmodified_since = DATE_T_ASCTIME}, &v), PROCEED);
}

static void test_if_unmodified_since_second_granularity(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS + 999);
    (void)state;
    assert_int_equal(eval((struct req){.if_unmodified_since = DATE_T}, &v), PROCEED);
    v.last_modified_ms = T_MS + 1000;
    assert_int_equal(eval((struct req){.if_unmodified_since = DATE_T}, &v), FAILED);
}

static void test_if_unmodified_since_ignored(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    struct cache_validators no_lm = rep("\"v1\"", 0);
    struct cache_validators gone = rep("\"v1\"", T_MS);
    (void)state;
    gone.exists = false;
    assert_int_equal(eval((struct req){.if_unmodified_since = "yesterday"}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_unmodified_since = ""}, &v), PROCEED);
    /* two field lines joined: a list of dates is not a valid HTTP-date */
    assert_int_equal(eval((struct req){.if_unmodified_since = DATE_BEFORE ", " DATE_BEFORE}, &v),
                     PROCEED);
    assert_int_equal(eval((struct req){.if_unmodified_since = DATE_BEFORE}, &no_lm), PROCEED);
    assert_int_equal(eval((struct req){.if_unmodified_since = DATE_BEFORE}, &gone), PROCEED);
}

/* RFC 9110 13.2.2 steps 1-2: If-Unmodified-Since only without If-Match. */
static void test_if_match_beats_if_unmodified_since(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    assert_int_equal(
        eval((struct req){.if_match = "\"v1\"", .if_unmodified_since = DATE_BEFORE}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_match = "*", .if_unmodified_since = DATE_BEFORE}, &v),
                     PROCEED);
    assert_int_equal(eval((struct req){.if_match = "\"v2\"", .if_unmodified_since = DATE_T}, &v),
                     FAILED);
    /* an invalid If-Match is ignored and counts as absent */
    assert_int_equal(eval((struct req){.if_match = "v1", .if_unmodified_since = DATE_BEFORE}, &v),
                     FAILED);
    assert_int_equal(eval((struct req){.if_match = "v1", .if_unmodified_since = DATE_T}, &v),
                     PROCEED);
}

/* ---- If-None-Match (RFC 9110 13.1.2) ---- */

static void test_if_none_match_get(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    assert_int_equal(eval((struct req){.if_none_match = "\"v1\""}, &v), NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_none_match = "\"v2\""}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_none_match = "\"v0\", \"v1\""}, &v), NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_none_match = "\"v0\", \"v2\""}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_none_match = "*"}, &v), NOT_MODIFIED);
}

static void test_if_none_match_other_methods(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    assert_int_equal(eval((struct req){.if_none_match = "\"v1\"", .method = POST}, &v), FAILED);
    assert_int_equal(eval((struct req){.if_none_match = "*", .method = POST}, &v), FAILED);
    assert_int_equal(eval((struct req){.if_none_match = "\"v2\"", .method = POST}, &v), PROCEED);
}

static void test_if_none_match_is_weak(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    struct cache_validators w = rep("W/\"v1\"", T_MS);
    (void)state;
    assert_int_equal(eval((struct req){.if_none_match = "W/\"v1\""}, &v), NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_none_match = "\"v1\""}, &w), NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_none_match = "W/\"v1\""}, &w), NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_none_match = "W/\"v2\""}, &w), PROCEED);
    assert_int_equal(eval((struct req){.if_none_match = "W/\"v1\"", .method = POST}, &w), FAILED);
}

static void test_if_none_match_without_etag_or_representation(void **state)
{
    struct cache_validators none = rep(NULL, T_MS);
    struct cache_validators gone = rep("\"v1\"", T_MS);
    (void)state;
    gone.exists = false;
    assert_int_equal(eval((struct req){.if_none_match = "\"v1\""}, &none), PROCEED);
    assert_int_equal(eval((struct req){.if_none_match = "*"}, &none), NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_none_match = "\"v1\""}, &gone), PROCEED);
    assert_int_equal(eval((struct req){.if_none_match = "*"}, &gone), PROCEED);
    assert_int_equal(eval((struct req){.if_none_match = "*", .method = POST}, &gone), PROCEED);
}

static void test_if_none_match_malformed_is_ignored(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    assert_int_equal(eval((struct req){.if_none_match = "v1"}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_none_match = ""}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_none_match = "\"v1\" \"v2\""}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_none_match = "*, *"}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_none_match = "v1", .method = POST}, &v), PROCEED);
}

/* ---- If-Modified-Since (RFC 9110 13.1.3) ---- */

static void test_if_modified_since_dates(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    assert_int_equal(eval((struct req){.if_modified_since = DATE_T}, &v), NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_modified_since = DATE_AFTER}, &v), NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_modified_since = DATE_BEFORE}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_modified_since = DATE_T_RFC850}, &v), NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_modified_since = DATE_T_ASCTIME}, &v), NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_modified_since = "  " DATE_T " "}, &v), NOT_MODIFIED);
}

static void test_if_modified_since_second_granularity(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS + 999);
    (void)state;
    assert_int_equal(eval((struct req){.if_modified_since = DATE_T}, &v), NOT_MODIFIED);
    v.last_modified_ms = T_MS + 1000;
    assert_int_equal(eval((struct req){.if_modified_since = DATE_T}, &v), PROCEED);
    v.last_modified_ms = T_MS - 1;
    assert_int_equal(eval((struct req){.if_modified_since = DATE_BEFORE}, &v), NOT_MODIFIED);
}

static void test_if_modified_since_in_the_future(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    /* later than now: invalid, ignored, although Last-Modified is older */
    assert_int_equal(eval((struct req){.if_modified_since = DATE_FUTURE}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_modified_since = DATE_NOW_PLUS_1}, &v), PROCEED);
    /* exactly now, and now within its second, is valid */
    assert_int_equal(eval((struct req){.if_modified_since = DATE_NOW}, &v), NOT_MODIFIED);
    assert_int_equal(eval_at((struct req){.if_modified_since = DATE_NOW}, &v, NOW_MS + 999),
                     NOT_MODIFIED);
    assert_int_equal(eval_at((struct req){.if_modified_since = DATE_NOW_PLUS_1}, &v, NOW_MS + 999),
                     PROCEED);
    assert_int_equal(eval_at((struct req){.if_modified_since = DATE_NOW_PLUS_1}, &v, NOW_MS + 1000),
                     NOT_MODIFIED);
}

static void test_if_modified_since_ignored(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    struct cache_validators no_lm = rep("\"v1\"", 0);
    struct cache_validators gone = rep("\"v1\"", T_MS);
    (void)state;
    gone.exists = false;
    assert_int_equal(eval((struct req){.if_modified_since = "not a date"}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_modified_since = ""}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_modified_since = DATE_T ", " DATE_T}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_modified_since = DATE_T}, &no_lm), PROCEED);
    assert_int_equal(eval((struct req){.if_modified_since = DATE_T}, &gone), PROCEED);
    /* only GET and HEAD: never a 304, nor a 412, for POST */
    assert_int_equal(eval((struct req){.if_modified_since = DATE_T, .method = POST}, &v), PROCEED);
    assert_int_equal(eval((struct req){.if_modified_since = DATE_AFTER, .method = POST}, &v),
                     PROCEED);
}

/* RFC 9110 13.2.2 steps 3-4: If-Modified-Since only without If-None-Match. */
static void test_if_none_match_beats_if_modified_since(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    assert_int_equal(eval((struct req){.if_none_match = "\"v2\"", .if_modified_since = DATE_T}, &v),
                     PROCEED);
    assert_int_equal(
        eval((struct req){.if_none_match = "\"v1\"", .if_modified_since = DATE_BEFORE}, &v),
        NOT_MODIFIED);
    /* an invalid If-None-Match is ignored and counts as absent */
    assert_int_equal(eval((struct req){.if_none_match = "v2", .if_modified_since = DATE_T}, &v),
                     NOT_MODIFIED);
    assert_int_equal(
        eval((struct req){.if_none_match = "v2", .if_modified_since = DATE_BEFORE}, &v), PROCEED);
}

/* Steps 1-2 come before steps 3-4. */
static void test_order_412_before_304(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    assert_int_equal(eval((struct req){.if_match = "\"v2\"", .if_none_match = "\"v1\""}, &v),
                     FAILED);
    assert_int_equal(eval((struct req){.if_match = "\"v2\"", .if_modified_since = DATE_T}, &v),
                     FAILED);
    assert_int_equal(
        eval((struct req){.if_unmodified_since = DATE_BEFORE, .if_none_match = "\"v1\""}, &v),
        FAILED);
    assert_int_equal(
        eval((struct req){.if_unmodified_since = DATE_BEFORE, .if_modified_since = DATE_T}, &v),
        FAILED);
    /* passing steps 1-2 goes on to steps 3-4 */
    assert_int_equal(eval((struct req){.if_match = "\"v1\"", .if_none_match = "\"v1\""}, &v),
                     NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_match = "\"v1\"", .if_modified_since = DATE_T}, &v),
                     NOT_MODIFIED);
    assert_int_equal(
        eval((struct req){.if_unmodified_since = DATE_T, .if_modified_since = DATE_T}, &v),
        NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_match = "*", .if_none_match = "*"}, &v), NOT_MODIFIED);
    assert_int_equal(eval((struct req){.if_match = "*", .if_none_match = "*", .method = POST}, &v),
                     FAILED);
}

static void test_all_four_fields(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    struct req r = {.if_match = "\"v1\"",
                    .if_unmodified_since = DATE_BEFORE, /* ignored: If-Match */
                    .if_none_match = "\"v2\"",
                    .if_modified_since = DATE_T}; /* ignored: If-None-Match */
    (void)state;
    assert_int_equal(eval(r, &v), PROCEED);
    r.if_none_match = "W/\"v1\"";
    assert_int_equal(eval(r, &v), NOT_MODIFIED);
    r.method = POST;
    assert_int_equal(eval(r, &v), FAILED);
}

/* Only the slices count: the values need not be NUL-terminated. */
static void test_uses_only_the_slices(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    struct cache_preconditions p = {0};
    const char *inm = "\"v1\"garbage";
    const char *ims = DATE_T "garbage";
    (void)state;

    v.etag = "\"v1\"\"v2\"";
    v.etag_len = 4;
    p.get_or_head = true;
    p.if_none_match = inm;
    p.if_none_match_len = 4;
    assert_int_equal(cache_evaluate_preconditions(&p, &v, NOW_MS), NOT_MODIFIED);
    p.if_none_match = NULL;
    p.if_modified_since = ims;
    p.if_modified_since_len = strlen(DATE_T);
    assert_int_equal(cache_evaluate_preconditions(&p, &v, NOW_MS), NOT_MODIFIED);
}

/* ---- If-Range (RFC 9110 13.1.5) ---- */

static bool if_range(const char *value, const struct cache_validators *v)
{
    return cache_if_range_matches(value, value ? strlen(value) : 0, v);
}

static void test_if_range_etag(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    struct cache_validators w = rep("W/\"v1\"", T_MS);
    struct cache_validators none = rep(NULL, T_MS);
    (void)state;
    assert_true(if_range("\"v1\"", &v));
    assert_true(if_range(" \"v1\"\t", &v));
    assert_false(if_range("\"v2\"", &v));
    assert_false(if_range("W/\"v1\"", &v)); /* a weak tag never matches */
    assert_false(if_range("\"v1\"", &w));
    assert_false(if_range("W/\"v1\"", &w));
    assert_false(if_range("\"v1\"", &none));
    /* malformed: the Range is not honoured */
    assert_false(if_range("\"v1", &v));
    assert_false(if_range("\"v1\", \"v2\"", &v));
    assert_false(if_range("\"v1\"x", &v));
    assert_false(if_range("v1", &v));
}

static void test_if_range_date(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    (void)state;
    assert_true(if_range(DATE_T, &v));
    assert_true(if_range(DATE_T_RFC850, &v));
    assert_true(if_range(DATE_T_ASCTIME, &v));
    assert_false(if_range(DATE_BEFORE, &v)); /* exactly equal, not "not after" */
    assert_false(if_range(DATE_AFTER, &v));
    v.last_modified_ms = T_MS + 999; /* one-second granularity */
    assert_true(if_range(DATE_T, &v));
    /* a weekday starting with W is a date, not a weak tag */
    v.last_modified_ms = (T_S + 3 * 86400) * 1000; /* Wed, 09 Nov 1994 08:49:37 GMT */
    assert_true(if_range("Wed, 09 Nov 1994 08:49:37 GMT", &v));
    assert_true(if_range("Wednesday, 09-Nov-94 08:49:37 GMT", &v));
}

static void test_if_range_date_needs_a_strong_last_modified(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    struct cache_validators no_lm = rep("\"v1\"", 0);
    (void)state;
    v.last_modified_strong = false;
    assert_false(if_range(DATE_T, &v));
    assert_false(if_range(DATE_T, &no_lm));
}

static void test_if_range_invalid(void **state)
{
    struct cache_validators v = rep("\"v1\"", T_MS);
    struct cache_validators gone = rep("\"v1\"", T_MS);
    (void)state;
    gone.exists = false;
    assert_false(if_range(NULL, &v));
    assert_false(if_range("", &v));
    assert_false(if_range("  ", &v));
    assert_false(if_range("yesterday", &v));
    assert_false(if_range(DATE_T ", " DATE_T, &v));
    assert_false(if_range("\"v1\"", &gone));
    assert_false(if_range(DATE_T, &gone));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_etag_valid),
        cmocka_unit_test(test_etag_weak),
        cmocka_unit_test(test_etag_comparison_table),
        cmocka_unit_test(test_etag_comparison_edges),
        cmocka_unit_test(test_etag_from_hash),
        cmocka_unit_test(test_list_star),
        cmocka_unit_test(test_list_tags),
        cmocka_unit_test(test_list_malformed),
        cmocka_unit_test(test_no_preconditions),
        cmocka_unit_test(test_if_match),
        cmocka_unit_test(test_if_match_is_strong),
        cmocka_unit_test(test_if_match_without_etag_or_representation),
        cmocka_unit_test(test_if_match_malformed_is_ignored),
        cmocka_unit_test(test_if_unmodified_since_dates),
        cmocka_unit_test(test_if_unmodified_since_second_granularity),
        cmocka_unit_test(test_if_unmodified_since_ignored),
        cmocka_unit_test(test_if_match_beats_if_unmodified_since),
        cmocka_unit_test(test_if_none_match_get),
        cmocka_unit_test(test_if_none_match_other_methods),
        cmocka_unit_test(test_if_none_match_is_weak),
        cmocka_unit_test(test_if_none_match_without_etag_or_representation),
        cmocka_unit_test(test_if_none_match_malformed_is_ignored),
        cmocka_unit_test(test_if_modified_since_dates),
        cmocka_unit_test(test_if_modified_since_second_granularity),
        cmocka_unit_test(test_if_modified_since_in_the_future),
        cmocka_unit_test(test_if_modified_since_ignored),
        cmocka_unit_test(test_if_none_match_beats_if_modified_since),
        cmocka_unit_test(test_order_412_before_304),
        cmocka_unit_test(test_all_four_fields),
        cmocka_unit_test(test_uses_only_the_slices),
        cmocka_unit_test(test_if_range_etag),
        cmocka_unit_test(test_if_range_date),
        cmocka_unit_test(test_if_range_date_needs_a_strong_last_modified),
        cmocka_unit_test(test_if_range_invalid),
    };

    return cmocka_run_group_tests_name("cache/conditional", tests, NULL, NULL);
}
