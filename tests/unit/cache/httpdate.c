/*
 * tests/unit/cache/httpdate.c: HTTP-date in its three forms, two-digit
 * years, range checks, and delta-seconds (cache/httpdate.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cache/httpdate.h"

#define NOW_2024_06_01 INT64_C(1717200000) /* 2024-06-01T00:00:00Z */
#define T_1994 INT64_C(784111777)          /* 1994-11-06T08:49:37Z, RFC 9110's example */

static int64_t date_at(const char *s, int64_t now)
{
    int64_t t = INT64_MIN;

    if (!http_date_parse_at(s, strlen(s), now, &t))
        fail_msg("\"%s\" did not parse", s);
    return t;
}

static int64_t date(const char *s)
{
    return date_at(s, NOW_2024_06_01);
}

static void assert_bad(const char *s)
{
    int64_t t = 42;

    if (http_date_parse_at(s, strlen(s), NOW_2024_06_01, &t))
        fail_msg("\"%s\" parsed as %lld", s, (long long)t);
    assert_int_equal(t, 42); /* untouched on failure */
}

static void test_three_forms(void **state)
{
    (void)state;
    assert_int_equal(date("Sun, 06 Nov 1994 08:49:37 GMT"), T_1994);
    assert_int_equal(date("Sunday, 06-Nov-94 08:49:37 GMT"), T_1994);
    assert_int_equal(date("Sun Nov  6 08:49:37 1994"), T_1994);
    assert_int_equal(date("Sun Nov 06 08:49:37 1994"), T_1994);
}

static void test_calendar(void **state)
{
    (void)state;
    assert_int_equal(date("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    assert_int_equal(date("Thu, 29 Feb 2024 12:00:00 GMT"), INT64_C(1709208000));
    assert_int_equal(date("Tue, 29 Feb 2000 00:00:00 GMT"), INT64_C(951782400));
    assert_int_equal(date("Wed, 01 Mar 2000 00:00:00 GMT"), INT64_C(951868800));
    assert_int_equal(date("Mon, 01 Jan 1900 00:00:00 GMT"), INT64_C(-2208988800));
    assert_int_equal(date("Fri, 31 Dec 9999 23:59:59 GMT"), INT64_C(253402300799));
    /* a leap second is the first second of the next minute */
    assert_int_equal(date("Sat, 31 Dec 2016 23:59:60 GMT"), INT64_C(1483228800));
}

static void test_day_name_not_checked_against_date(void **state)
{
    (void)state;
    assert_int_equal(date("Mon, 06 Nov 1994 08:49:37 GMT"), T_1994);
    assert_int_equal(date("Friday, 06-Nov-94 08:49:37 GMT"), T_1994);
}

static void test_surrounding_whitespace(void **state)
{
    (void)state;
    assert_int_equal(date("  Sun, 06 Nov 1994 08:49:37 GMT\t "), T_1994);
}

static void test_uses_only_the_slice(void **state)
{
    const char *s = "Sun, 06 Nov 1994 08:49:37 GMTxyz";
    int64_t t = 0;

    (void)state;
    assert_true(http_date_parse_at(s, 29, NOW_2024_06_01, &t));
    assert_int_equal(t, T_1994);
    assert_false(http_date_parse_at(s, 28, NOW_2024_06_01, &t));
    assert_false(http_date_parse_at(s, 32, NOW_2024_06_01, &t));
}

static void test_rejects_malformed(void **state)
{
    (void)state;
    assert_bad("");
    assert_bad("   ");
    assert_bad("0");
    assert_bad("Sun, 06 Nov 1994 08:49:37"); /* no GMT */
    assert_bad("Sun, 06 Nov 1994 08:49:37 UTC");
    assert_bad("Sun, 06 Nov 1994 08:49:37 gmt"); /* GMT is case-sensitive */
    assert_bad("Sun, 06 Nov 1994 08:49:37 GMT x");
    assert_bad("sun, 06 Nov 1994 08:49:37 GMT"); /* so are names */
    assert_bad("Sun, 06 nov 1994 08:49:37 GMT");
    assert_bad("Sun, 06 November 1994 08:49:37 GMT");
    assert_bad("Foo, 06 Nov 1994 08:49:37 GMT");
    assert_bad("Sun, 6 Nov 1994 08:49:37 GMT"); /* day is 2DIGIT */
    assert_bad("Sun, 06 Nov 94 08:49:37 GMT");  /* year is 4DIGIT */
    assert_bad("Sun,06 Nov 1994 08:49:37 GMT");
    assert_bad("Sun, 06 Nov 1994  08:49:37 GMT");
    assert_bad("Sun, 06 Nov 1994 8:49:37 GMT");
    assert_bad("Sun, 06 Nov 1994 08:49 GMT");
    assert_bad("Sun, 06-Nov-1994 08:49:37 GMT");
    assert_bad("Sun, 06 Nov 1994 08.49.37 GMT");
    assert_bad("Sun, +6 Nov 1994 08:49:37 GMT");
    assert_bad("Sunday, 06-Nov-1994 08:49:37 GMT"); /* RFC 850 year is 2DIGIT */
    assert_bad("Sunday, 06 Nov 94 08:49:37 GMT");
    assert_bad("Sun, 06-Nov-94 08:49:37 GMT"); /* RFC 850 wants the long name */
    assert_bad("Sunday, 06-Nov-94 08:49:37");
    assert_bad("Sun Nov 6 08:49:37 1994"); /* asctime pads with a space */
    assert_bad("Sun Nov   6 08:49:37 1994");
    assert_bad("Sun Nov  6 08:49:37 94");
    assert_bad("Sun Nov  6 08:49:37 1994 GMT");
    assert_bad("Sunday Nov  6 08:49:37 1994");
    assert_bad("784111777");
}

static void test_rejects_out_of_range(void **state)
{
    (void)state;
    assert_bad("Sun, 00 Nov 1994 08:49:37 GMT");
    assert_bad("Sun, 31 Nov 1994 08:49:37 GMT");
    assert_bad("Wed, 29 Feb 2023 00:00:00 GMT"); /* not a leap year */
    assert_bad("Thu, 29 Feb 1900 00:00:00 GMT"); /* nor is 1900 */
    assert_bad("Sun, 32 Jan 1994 08:49:37 GMT");
    assert_bad("Sun, 06 Nov 1994 24:00:00 GMT");
    assert_bad("Sun, 06 Nov 1994 08:60:37 GMT");
    assert_bad("Sun, 06 Nov 1994 08:49:61 GMT");
    assert_bad("Sunday, 31-Apr-94 08:49:37 GMT");
    assert_bad("Sun Feb 30 08:49:37 1994");
}

/* RFC 9110 5.6.7: more than 50 years in the future means the past century. */
static void test_rfc850_two_digit_years(void **state)
{
    (void)state;
    assert_int_equal(date("Friday, 01-Jan-24 00:00:00 GMT"), INT64_C(1704067200)); /* 2024 */
    assert_int_equal(date("Monday, 01-Jan-74 00:00:00 GMT"), INT64_C(3281990400)); /* 2074 */
    assert_int_equal(date("Tuesday, 01-Jan-75 00:00:00 GMT"), INT64_C(157766400)); /* 1975 */
    assert_int_equal(date("Sunday, 01-Dec-74 00:00:00 GMT"), INT64_C(155088000));  /* 1974 */
    /* exactly 50 years ahead is not "more than" 50 years */
    assert_int_equal(date("Friday, 01-Jun-74 00:00:00 GMT"), INT64_C(3295036800));
    assert_int_equal(date("Friday, 01-Jun-74 00:00:01 GMT"), INT64_C(139276801));
    /* near the end of a century the next one is meant */
    assert_int_equal(date_at("Wednesday, 01-Jan-10 00:00:00 GMT", INT64_C(4083955200)),
                     INT64_C(4417977600)); /* now 2099-06-01: 2110 */
    assert_int_equal(date_at("Sunday, 06-Nov-94 08:49:37 GMT", INT64_C(4083955200)),
                     INT64_C(3939871777)); /* 2094, not 2194 */
}

static void test_current_clock(void **state)
{
    int64_t t = 0;
    const char *s = "Sun, 06 Nov 1994 08:49:37 GMT";

    (void)state;
    assert_true(http_date_parse(s, strlen(s), &t));
    assert_int_equal(t, T_1994);
    /* "94" is 1994 for the next few decades */
    s = "Sunday, 06-Nov-94 08:49:37 GMT";
    assert_true(http_date_parse(s, strlen(s), &t));
    assert_int_equal(t, T_1994);
}

static int64_t delta(const char *s)
{
    int64_t v = -1;

    if (!http_delta_seconds_parse(s, strlen(s), &v))
        fail_msg("\"%s\" did not parse", s);
    return v;
}

static void assert_bad_delta(const char *s)
{
    int64_t v = 42;

    if (http_delta_seconds_parse(s, strlen(s), &v))
        fail_msg("\"%s\" parsed as %lld", s, (long long)v);
    assert_int_equal(v, 42);
}

static void test_delta_seconds(void **state)
{
    (void)state;
    assert_int_equal(delta("0"), 0);
    assert_int_equal(delta("60"), 60);
    assert_int_equal(delta("000060"), 60);
    assert_int_equal(delta("2147483647"), INT64_C(2147483647));
    assert_int_equal(delta("2147483648"), INT64_C(2147483648));
    assert_int_equal(delta("2147483649"), INT64_C(2147483648));
    assert_int_equal(delta("99999999999999999999999999999999"), INT64_C(2147483648));
    assert_int_equal(HTTP_DELTA_SECONDS_MAX, INT64_C(2147483648));
}

static void test_delta_seconds_rejects(void **state)
{
    (void)state;
    assert_bad_delta("");
    assert_bad_delta("-1");
    assert_bad_delta("+1");
    assert_bad_delta(" 1");
    assert_bad_delta("1 ");
    assert_bad_delta("1.5");
    assert_bad_delta("\"60\"");
    assert_bad_delta("0x10");
    assert_bad_delta("1e3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_forms),
        cmocka_unit_test(test_calendar),
        cmocka_unit_test(test_day_name_not_checked_against_date),
        cmocka_unit_test(test_surrounding_whitespace),
        cmocka_unit_test(test_uses_only_the_slice),
        cmocka_unit_test(test_rejects_malformed),
        cmocka_unit_test(test_rejects_out_of_range),
        cmocka_unit_test(test_rfc850_two_digit_years),
        cmocka_unit_test(test_current_clock),
        cmocka_unit_test(test_delta_seconds),
        cmocka_unit_test(test_delta_seconds_rejects),
    };

    return cmocka_run_group_tests_name("cache/httpdate", tests, NULL, NULL);
}
