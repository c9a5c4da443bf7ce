/*
 * tests/unit/cache/cachecontrol.c: Cache-Control and Pragma parsing
 * (cache/cachecontrol.c): each directive, quoted values, saturation,
 * invalid and duplicate freshness values, list syntax, accumulation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cache/cachecontrol.h"

static struct cache_control parse(const char *v)
{
    struct cache_control cc = {0};

    cache_control_parse(&cc, v, strlen(v));
    return cc;
}

static bool pragma(const char *v)
{
    return cache_pragma_no_cache(v, strlen(v));
}

static void test_flags(void **state)
{
    (void)state;
    assert_int_equal(parse("no-store").flags, CC_NO_STORE);
    assert_int_equal(parse("no-cache").flags, CC_NO_CACHE);
    assert_int_equal(parse("private").flags, CC_PRIVATE);
    assert_int_equal(parse("public").flags, CC_PUBLIC);
    assert_int_equal(parse("must-revalidate").flags, CC_MUST_REVALIDATE);
    assert_int_equal(parse("proxy-revalidate").flags, CC_PROXY_REVALIDATE);
    assert_int_equal(parse("no-transform").flags, CC_NO_TRANSFORM);
    assert_int_equal(parse("only-if-cached").flags, CC_ONLY_IF_CACHED);
    assert_int_equal(parse("immutable").flags, CC_IMMUTABLE);
    assert_int_equal(parse("must-understand").flags, CC_MUST_UNDERSTAND);
    assert_int_equal(parse("no-store, no-cache, private, public, must-revalidate, "
                           "proxy-revalidate, no-transform, only-if-cached, immutable, "
                           "must-understand")
                         .flags,
                     CC_NO_STORE | CC_NO_CACHE | CC_PRIVATE | CC_PUBLIC | CC_MUST_REVALIDATE |
                         CC_PROXY_REVALIDATE | CC_NO_TRANSFORM | CC_ONLY_IF_CACHED | CC_IMMUTABLE |
                         CC_MUST_UNDERSTAND);
}

static void test_names_case_insensitive(void **state)
{
    struct cache_control cc = parse("No-Store, PUBLIC, Max-Age=5, S-MAXAGE=7");

    (void)state;
    assert_int_equal(cc.flags, CC_NO_STORE | CC_PUBLIC);
    assert_true(cc.has_max_age);
    assert_int_equal(cc.max_age, 5);
    assert_true(cc.has_s_maxage);
    assert_int_equal(cc.s_maxage, 7);
}

static void test_values(void **state)
{
    struct cache_control cc = parse("max-age=60, s-maxage=120, max-stale=30, min-fresh=10, "
                                    "stale-while-revalidate=15, stale-if-error=86400");

    (void)state;
    assert_int_equal(cc.flags, 0);
    assert_true(cc.present);
    assert_true(cc.has_max_age);
    assert_int_equal(cc.max_age, 60);
    assert_true(cc.has_s_maxage);
    assert_int_equal(cc.s_maxage, 120);
    assert_true(cc.has_max_stale);
    assert_false(cc.max_stale_any);
    assert_int_equal(cc.max_stale, 30);
    assert_true(cc.has_min_fresh);
    assert_int_equal(cc.min_fresh, 10);
    assert_true(cc.has_stale_while_revalidate);
    assert_int_equal(cc.stale_while_revalidate, 15);
    assert_true(cc.has_stale_if_error);
    assert_int_equal(cc.stale_if_error, 86400);
    assert_false(cc.invalid_freshness);
}

static void test_zero_and_absent(void **state)
{
    struct cache_control cc = parse("max-age=0");

    (void)state;
    assert_true(cc.has_max_age);
    assert_int_equal(cc.max_age, 0);
    assert_false(cc.invalid_freshness);

    cc = parse("");
    assert_false(cc.present);
    assert_false(cc.has_max_age);
    assert_int_equal(cc.flags, 0);

    cc = parse(" , ,, ");
    assert_false(cc.present);
}

/* RFC 9111 1.2.2: both forms are parsed. */
static void test_quoted_values(void **state)
{
    struct cache_control cc = parse("max-age=\"60\", s-maxage=\"0\", min-fresh=\"5\"");

    (void)state;
    assert_true(cc.has_max_age);
    assert_int_equal(cc.max_age, 60);
    assert_true(cc.has_s_maxage);
    assert_int_equal(cc.s_maxage, 0);
    assert_int_equal(cc.min_fresh, 5);
    assert_false(cc.invalid_freshness);

    cc = parse("max-age=\"6\\0\""); /* quoted-pair */
    assert_true(cc.has_max_age);
    assert_int_equal(cc.max_age, 60);
}

static void test_saturation(void **state)
{
    struct cache_control cc = parse("max-age=99999999999999999999, s-maxage=2147483647, "
                                    "stale-if-error=\"4294967296\"");

    (void)state;
    assert_int_equal(cc.max_age, INT64_C(2147483648));
    assert_int_equal(cc.s_maxage, INT64_C(2147483647));
    assert_int_equal(cc.stale_if_error, INT64_C(2147483648));
    assert_false(cc.invalid_freshness);
}

static void assert_invalid_max_age(const char *v)
{
    struct cache_control cc = parse(v);

    if (!cc.invalid_freshness || cc.has_max_age)
        fail_msg("\"%s\": expected an invalid max-age", v);
}

/* RFC 9111 4.2.1: invalid freshness information makes the response stale. */
static void test_invalid_max_age(void **state)
{
    (void)state;
    assert_invalid_max_age("max-age");
    assert_invalid_max_age("max-age=");
    assert_invalid_max_age("max-age=, public");
    assert_invalid_max_age("max-age=-1");
    assert_invalid_max_age("max-age=+1");
    assert_invalid_max_age("max-age=1.5");
    assert_invalid_max_age("max-age=abc");
    assert_invalid_max_age("max-age=60s");
    assert_invalid_max_age("max-age=60 30");
    assert_invalid_max_age("max-age=60;x");
    assert_invalid_max_age("max-age=\"\"");
    assert_invalid_max_age("max-age=\"abc\"");
    assert_invalid_max_age("max-age=\" 60\"");
    assert_invalid_max_age("max-age=\"60"); /* unterminated */
    assert_invalid_max_age("max-age=0x10");

    struct cache_control cc = parse("s-maxage=never, max-age=60");
    assert_true(cc.invalid_freshness);
    assert_false(cc.has_s_maxage);
    assert_true(cc.has_max_age); /* kept, but the response counts as stale */
}

static void test_duplicate_freshness(void **state)
{
    struct cache_control cc = parse("max-age=60, max-age=60");

    (void)state;
    assert_false(cc.invalid_freshness);
    assert_int_equal(cc.max_age, 60);

    cc = parse("max-age=60, max-age=30");
    assert_true(cc.invalid_freshness);
    assert_int_equal(cc.max_age, 30);

    cc = parse("s-maxage=10, s-maxage=\"10\"");
    assert_false(cc.invalid_freshness);

    cc = parse("s-maxage=10");
    cache_control_parse(&cc, "s-maxage=20", 11); /* a second field line */
    assert_true(cc.invalid_freshness);
    assert_int_equal(cc.s_maxage, 10);
}

static void test_whitespace_around_equals(void **state)
{
    struct cache_control cc = parse("  max-age = 60 ,\tpublic\t");

    (void)state;
    assert_true(cc.has_max_age);
    assert_int_equal(cc.max_age, 60);
    assert_int_equal(cc.flags, CC_PUBLIC);
    assert_false(cc.invalid_freshness);
}

static void test_max_stale(void **state)
{
    struct cache_control cc = parse("max-stale");

    (void)state;
    assert_true(cc.has_max_stale);
    assert_true(cc.max_stale_any);

    cc = parse("max-stale=\"15\"");
    assert_true(cc.has_max_stale);
    assert_false(cc.max_stale_any);
    assert_int_equal(cc.max_stale, 15);

    /* a value is more conservative than "any", whatever the order */
    cc = parse("max-stale, max-stale=20");
    assert_false(cc.max_stale_any);
    assert_int_equal(cc.max_stale, 20);
    cc = parse("max-stale=20, max-stale");
    assert_false(cc.max_stale_any);
    assert_int_equal(cc.max_stale, 20);
    cc = parse("max-stale=20, max-stale=5");
    assert_int_equal(cc.max_stale, 5);

    cc = parse("max-stale=soon"); /* invalid: ignored, not "any" */
    assert_false(cc.has_max_stale);
    assert_false(cc.invalid_freshness);
}

static void test_other_durations_conservative(void **state)
{
    struct cache_control cc =
        parse("min-fresh=5, min-fresh=50, stale-while-revalidate=60, stale-while-revalidate=6, "
              "stale-if-error=9, stale-if-error=90");

    (void)state;
    assert_int_equal(cc.min_fresh, 50);
    assert_int_equal(cc.stale_while_revalidate, 6);
    assert_int_equal(cc.stale_if_error, 9);

    cc = parse("min-fresh, stale-while-revalidate=x, stale-if-error=");
    assert_true(cc.present);
    assert_false(cc.has_min_fresh);
    assert_false(cc.has_stale_while_revalidate);
    assert_false(cc.has_stale_if_error);
    assert_false(cc.invalid_freshness);
}

/* Qualified forms count as the unqualified ones (see cachecontrol.h). */
static void test_qualified_no_cache_private(void **state)
{
    struct cache_control cc = parse("no-cache=\"Set-Cookie\", max-age=60");

    (void)state;
    assert_int_equal(cc.flags, CC_NO_CACHE);
    assert_int_equal(cc.max_age, 60);

    cc = parse("private=\"X-User, X-Session\", max-age=60");
    assert_int_equal(cc.flags, CC_PRIVATE);
    assert_int_equal(cc.max_age, 60);

    cc = parse("no-cache=Set-Cookie");
    assert_int_equal(cc.flags, CC_NO_CACHE);
}

static void test_restrictive_survive_garbage(void **state)
{
    (void)state;
    assert_int_equal(parse("no-store=1").flags, CC_NO_STORE);
    assert_int_equal(parse("no-store garbage").flags, CC_NO_STORE);
    assert_int_equal(parse("must-revalidate=\"x\"").flags, CC_MUST_REVALIDATE);
    /* widening directives need a clean element */
    assert_int_equal(parse("public=1").flags, 0);
    assert_int_equal(parse("public garbage").flags, 0);
    assert_int_equal(parse("immutable=yes").flags, 0);
}

static void test_commas_in_quotes(void **state)
{
    struct cache_control cc = parse("foo=\"a, no-store, b\", max-age=60");

    (void)state;
    assert_int_equal(cc.flags, 0);
    assert_int_equal(cc.max_age, 60);

    cc = parse("foo=\"x\\\", no-store\", public"); /* an escaped quote does not close */
    assert_int_equal(cc.flags, CC_PUBLIC);

    cc = parse("private=\"a,b\", no-transform");
    assert_int_equal(cc.flags, CC_PRIVATE | CC_NO_TRANSFORM);
}

static void test_unknown_ignored(void **state)
{
    struct cache_control cc = parse("community=\"UCI\", x-ext, max-age=5, no-storex, xpublic");

    (void)state;
    assert_true(cc.present);
    assert_int_equal(cc.flags, 0);
    assert_int_equal(cc.max_age, 5);

    cc = parse("community=\"UCI\"");
    assert_true(cc.present); /* present, just not interesting */
    assert_false(cc.has_max_age);
}

static void test_garbage_elements_skipped(void **state)
{
    struct cache_control cc = parse("=, \"quoted\", ;;;, public, @x=1");

    (void)state;
    assert_int_equal(cc.flags, CC_PUBLIC);

    cc = parse("@@@");
    assert_false(cc.present);
}

static void test_accumulates_across_lines(void **state)
{
    struct cache_control cc = {0};

    (void)state;
    cache_control_parse(&cc, "public", 6);
    cache_control_parse(&cc, "max-age=30", 10);
    cache_control_parse(&cc, "no-transform", 12);
    assert_int_equal(cc.flags, CC_PUBLIC | CC_NO_TRANSFORM);
    assert_int_equal(cc.max_age, 30);
}

static void test_uses_only_the_slice(void **state)
{
    struct cache_control cc = {0};
    const char *v = "max-age=60, no-store";

    (void)state;
    cache_control_parse(&cc, v, 10); /* "max-age=60" */
    assert_int_equal(cc.max_age, 60);
    assert_int_equal(cc.flags, 0);

    cc = (struct cache_control){0};
    cache_control_parse(&cc, v, 9); /* "max-age=6" */
    assert_int_equal(cc.max_age, 6);
}

static void test_pragma(void **state)
{
    (void)state;
    assert_true(pragma("no-cache"));
    assert_true(pragma("No-Cache"));
    assert_true(pragma("foo, no-cache"));
    assert_true(pragma(" x=\"a,b\" ,no-cache "));
    assert_false(pragma(""));
    assert_false(pragma("no-cachex"));
    assert_false(pragma("no-cache=1"));
    assert_false(pragma("x=\"no-cache\""));
    assert_false(pragma("x=\"a, no-cache\""));
    assert_false(pragma("cache"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_names_case_insensitive),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_zero_and_absent),
        cmocka_unit_test(test_quoted_values),
        cmocka_unit_test(test_saturation),
        cmocka_unit_test(test_invalid_max_age),
        cmocka_unit_test(test_duplicate_freshness),
        cmocka_unit_test(test_whitespace_around_equals),
        cmocka_unit_test(test_max_stale),
        cmocka_unit_test(test_other_durations_conservative),
        cmocka_unit_test(test_qualified_no_cache_private),
        cmocka_unit_test(test_restrictive_survive_garbage),
        cmocka_unit_test(test_commas_in_quotes),
        cmocka_unit_test(test_unknown_ignored),
        cmocka_unit_test(test_garbage_elements_skipped),
        cmocka_unit_test(test_accumulates_across_lines),
        cmocka_unit_test(test_uses_only_the_slice),
        cmocka_unit_test(test_pragma),
    };

    return cmocka_run_group_tests_name("cache/cachecontrol", tests, NULL, NULL);
}
