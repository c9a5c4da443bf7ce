/*
 * tests/unit/config/units.c: numbers, sizes and durations (config/units.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config/units.h"

#define SENTINEL 0xdeadbeefull

static uint64_t size_of(const char *s)
{
    uint64_t v = SENTINEL;

    assert_true(units_parse_size(s, strlen(s), &v));
    return v;
}

static uint64_t ms_of(const char *s)
{
    uint64_t v = SENTINEL;

    assert_true(units_parse_duration_ms(s, strlen(s), &v));
    return v;
}

static void assert_bad_size(const char *s)
{
    uint64_t v = SENTINEL;

    assert_false(units_parse_size(s, strlen(s), &v));
    assert_int_equal(v, SENTINEL);
}

static void assert_bad_duration(const char *s)
{
    uint64_t v = SENTINEL;

    assert_false(units_parse_duration_ms(s, strlen(s), &v));
    assert_int_equal(v, SENTINEL);
}

static void test_uint(void **state)
{
    uint64_t v = SENTINEL;

    (void)state;
    assert_true(units_parse_uint("0", 1, &v));
    assert_int_equal(v, 0);
    assert_true(units_parse_uint("00042", 5, &v));
    assert_int_equal(v, 42);
    assert_true(units_parse_uint("18446744073709551615", 20, &v));
    assert_true(v == UINT64_MAX);
    v = SENTINEL;
    assert_false(units_parse_uint("18446744073709551616", 20, &v));
    assert_false(units_parse_uint("", 0, &v));
    assert_false(units_parse_uint("-1", 2, &v));
    assert_false(units_parse_uint("+1", 2, &v));
    assert_false(units_parse_uint(" 1", 2, &v));
    assert_false(units_parse_uint("1 ", 2, &v));
    assert_false(units_parse_uint("12a", 3, &v));
    assert_false(units_parse_uint("1k", 2, &v));
    assert_int_equal(v, SENTINEL);
}

static void test_uint_uses_only_the_slice(void **state)
{
    uint64_t v = 0;

    (void)state;
    assert_true(units_parse_uint("123abc", 3, &v));
    assert_int_equal(v, 123);
    assert_true(units_parse_size("64kXYZ", 3, &v));
    assert_int_equal(v, 64 * 1024);
    assert_true(units_parse_duration_ms("500msec", 5, &v));
    assert_int_equal(v, 500);
}

static void test_size_suffixes(void **state)
{
    (void)state;
    assert_int_equal(size_of("0"), 0);
    assert_int_equal(size_of("512"), 512);
    assert_int_equal(size_of("64k"), 64 * 1024);
    assert_int_equal(size_of("64K"), 64 * 1024);
    assert_int_equal(size_of("10m"), 10 * 1024 * 1024);
    assert_int_equal(size_of("1M"), 1024 * 1024);
    assert_int_equal(size_of("1g"), 1024ull * 1024 * 1024);
    assert_int_equal(size_of("3G"), 3ull * 1024 * 1024 * 1024);
}

static void test_size_rejects_malformed(void **state)
{
    (void)state;
    assert_bad_size("");
    assert_bad_size("k");
    assert_bad_size("1kb");
    assert_bad_size("1.5k");
    assert_bad_size("1 k");
    assert_bad_size("1t");
    assert_bad_size("-1");
    assert_bad_size("1kk");
    assert_bad_size("abc");
}

static void test_size_overflow(void **state)
{
    (void)state;
    /* 2^64 / 2^30 = 17179869184 */
    assert_true(size_of("17179869183g") == 17179869183ull << 30);
    assert_bad_size("17179869184g");
    assert_bad_size("18014398509481984k");
    assert_bad_size("99999999999999999999");
}

static void test_duration_units(void **state)
{
    (void)state;
    assert_int_equal(ms_of("0"), 0);
    assert_int_equal(ms_of("30"), 30000); /* bare number: seconds, as nginx */
    assert_int_equal(ms_of("500ms"), 500);
    assert_int_equal(ms_of("10s"), 10000);
    assert_int_equal(ms_of("5m"), 300000);
    assert_int_equal(ms_of("2h"), 7200000);
    assert_int_equal(ms_of("1d"), 86400000);
    assert_int_equal(ms_of("0ms"), 0);
}

static void test_duration_rejects_malformed(void **state)
{
    (void)state;
    assert_bad_duration("");
    assert_bad_duration("s");
    assert_bad_duration("ms");
    assert_bad_duration("1m30s");
    assert_bad_duration("1.5s");
    assert_bad_duration("10S");
    assert_bad_duration("10 s");
    assert_bad_duration("1w");
    assert_bad_duration("-5s");
    assert_bad_duration("10sec");
}

static void test_duration_overflow(void **state)
{
    (void)state;
    assert_true(ms_of("18446744073709551615ms") == UINT64_MAX);
    assert_bad_duration("18446744073709551615");
    assert_bad_duration("18446744073709552s");
    assert_bad_duration("213503982335d");
    assert_true(ms_of("213503982334d") == 213503982334ull * 86400000ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uint),
        cmocka_unit_test(test_uint_uses_only_the_slice),
        cmocka_unit_test(test_size_suffixes),
        cmocka_unit_test(test_size_rejects_malformed),
        cmocka_unit_test(test_size_overflow),
        cmocka_unit_test(test_duration_units),
        cmocka_unit_test(test_duration_rejects_malformed),
        cmocka_unit_test(test_duration_overflow),
    };

    return cmocka_run_group_tests_name("config/units", tests, NULL, NULL);
}
