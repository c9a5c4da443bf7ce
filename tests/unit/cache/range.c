/*
 * tests/unit/cache/range.c: Range parsing, resolution against a length,
 * coalescing, the amplification cap, Content-Range values and the
 * multipart/byteranges writers, whose computed length must equal the bytes
 * they produce (cache/range.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache/range.h"

#define LEN 10000 /* the representation most tests use */

/* The result as text: "200", "416", or "206 s-e,s-e,...". */
static const char *show(const struct cache_ranges *r)
{
    static char buf[1024];
    int n = snprintf(buf, sizeof buf, "%d", r->status);

    if (r->status != 206)
        assert_int_equal(r->n, 0);
    else
        assert_true(r->n >= 1 && r->n <= CACHE_RANGE_MAX);
    for (size_t i = 0; i < r->n; i++) {
        assert_true(r->r[i].start <= r->r[i].end);
        n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%llu-%llu", i ? "," : " ",
                      (unsigned long long)r->r[i].start, (unsigned long long)r->r[i].end);
    }
    return buf;
}

static const char *range_of(const char *v, uint64_t length)
{
    struct cache_ranges r;

    memset(&r, 0xa5, sizeof r); /* everything is set, whatever the outcome */
    cache_range_parse(v, v ? strlen(v) : 0, length, &r);
    return show(&r);
}

#define expect(v, length, want) assert_string_equal(range_of(v, length), want)

static void test_single(void **state)
{
    (void)state;
    expect("bytes=0-499", LEN, "206 0-499");
    expect("bytes=500-999", LEN, "206 500-999");
    expect("bytes=0-0", LEN, "206 0-0");
    expect("bytes=9999-9999", LEN, "206 9999-9999");
    expect("bytes=0-9999", LEN, "206 0-9999");
    expect("bytes=0-10000", LEN, "206 0-9999"); /* last clamped */
    expect("bytes=9000-20000", LEN, "206 9000-9999");
    expect("bytes=0005-0010", LEN, "206 5-10"); /* leading zeros */
}

static void test_open_ended(void **state)
{
    (void)state;
    expect("bytes=9500-", LEN, "206 9500-9999");
    expect("bytes=0-", LEN, "206 0-9999");
    expect("bytes=9999-", LEN, "206 9999-9999");
}

static void test_suffix(void **state)
{
    (void)state;
    expect("bytes=-500", LEN, "206 9500-9999");
    expect("bytes=-1", LEN, "206 9999-9999");
    expect("bytes=-9999", LEN, "206 1-9999");
    expect("bytes=-10000", LEN, "206 0-9999");
    expect("bytes=-20000", LEN, "206 0-9999"); /* longer than the representation */
    expect("bytes=-0", LEN, "416");            /* a zero suffix satisfies nothing */
    expect("bytes=-000", LEN, "416");
}

static void test_multiple(void **state)
{
    (void)state;
    expect("bytes=0-99,200-299", LEN, "206 0-99,200-299");
    expect("bytes=0-0,-1", LEN, "206 0-0,9999-9999"); /* RFC 9110 14.1.2 */
    expect("bytes=0-99,200-299,400-", LEN, "206 0-99,200-299,400-9999");
    expect("bytes=500-600,601-999", LEN, "206 500-999"); /* RFC 9110 14.1.2: adjacent */
    expect("bytes=500-700,601-999", LEN, "206 500-999"); /* RFC 9110 14.1.2: overlapping */
}

static void test_whitespace_and_case(void **state)
{
    (void)state;
    expect("bytes=0-1, 5-6", LEN, "206 0-1,5-6");
    expect("bytes=0-1 ,\t5-6", LEN, "206 0-1,5-6");
    expect(" \tbytes=0-1,5-6 \t", LEN, "206 0-1,5-6");
    expect("bytes=0-1,,5-6", LEN, "206 0-1,5-6"); /* empty list elements */
    expect("bytes=, 0-1 ,", LEN, "206 0-1");
    expect("Bytes=0-1", LEN, "206 0-1");
    expect("BYTES=0-1", LEN, "206 0-1");
    /* no whitespace inside a spec nor between the unit and "=" */
    expect("bytes=0 -1", LEN, "200");
    expect("bytes=0- 1", LEN, "200");
    expect("bytes=- 1", LEN, "200");
    expect("bytes =0-1", LEN, "200");
}

static void test_overlapping(void **state)
{
    (void)state;
    expect("bytes=0-499,100-199", LEN, "206 0-499");
    expect("bytes=100-199,0-499", LEN, "206 0-499");
    expect("bytes=0-10,5-20,15-30", LEN, "206 0-30");
    expect("bytes=0-0,0-0", LEN, "206 0-0");
    expect("bytes=-100,0-", LEN, "206 0-9999");
    expect("bytes=9000-,-500", LEN, "206 9000-9999");
    expect("bytes=0-5,3-", LEN, "206 0-9999");
    /* a merge that makes a range reach one it did not touch before */
    expect("bytes=0-1,10-11,2-9", LEN, "206 0-11");
    expect("bytes=20-29,0-9,10-19", LEN, "206 0-29");
}

static void test_adjacent(void **state)
{
    (void)state;
    expect("bytes=0-4,5-9", LEN, "206 0-9");
    expect("bytes=5-9,0-4", LEN, "206 0-9");
    expect("bytes=0-0,2-2,1-1", LEN, "206 0-2");
    expect("bytes=0-4,6-9", LEN, "206 0-4,6-9"); /* a one-byte gap stays */
}

static void test_out_of_order(void **state)
{
    (void)state;
    /* parts keep the request's order (RFC 9110 15.3.7.2) */
    expect("bytes=500-599,0-99", LEN, "206 500-599,0-99");
    expect("bytes=-100,0-99", LEN, "206 9900-9999,0-99");
    /* a coalesced range takes the place of the earlier one */
    expect("bytes=200-299,0-99,100-150", LEN, "206 200-299,0-150");
    expect("bytes=200-299,0-99,300-", LEN, "206 200-9999,0-99");
}

static void test_first_after_last_is_invalid(void **state)
{
    (void)state;
    expect("bytes=5-4", LEN, "200");
    expect("bytes=0-1,5-4", LEN, "200"); /* one invalid spec voids the header */
    expect("bytes=20000-19999", LEN, "200");
    expect("bytes=010-9", LEN, "200");
    expect("bytes=0010-00000000000000000000000000000009", LEN, "200");
    expect("bytes=20000000000000000000001-20000000000000000000000", LEN, "200");
    expect("bytes=18446744073709551616-18446744073709551615", LEN, "200");
    /* equal is fine */
    expect("bytes=7-7", LEN, "206 7-7");
}

static void test_unsatisfiable(void **state)
{
    (void)state;
    expect("bytes=10000-", LEN, "416");
    expect("bytes=10000-10001", LEN, "416");
    expect("bytes=20000-30000", LEN, "416");
    expect("bytes=10000-,-0,20000-20000", LEN, "416");
}

static void test_partly_satisfiable(void **state)
{
    (void)state;
    expect("bytes=0-9,20000-30000", LEN, "206 0-9");
    expect("bytes=20000-,-0,5-9", LEN, "206 5-9");
    expect("bytes=10000-,9999-", LEN, "206 9999-9999");
}

static void test_huge_numbers(void **state)
{
    (void)state;
    expect("bytes=0-18446744073709551615", LEN, "206 0-9999");
    expect("bytes=0-18446744073709551616", LEN, "206 0-9999");
    expect("bytes=0-99999999999999999999999999999", LEN, "206 0-9999");
    expect("bytes=-18446744073709551615", LEN, "206 0-9999");
    expect("bytes=-99999999999999999999999999999", LEN, "206 0-9999");
    expect("bytes=18446744073709551615-", LEN, "416");
    expect("bytes=99999999999999999999999999999-", LEN, "416");
    expect("bytes=20000000000000000000000-20000000000000000000001", LEN, "416");
    /* a representation as long as can be */
    expect("bytes=18446744073709551614-", UINT64_MAX,
           "206 18446744073709551614-18446744073709551614");
    expect("bytes=18446744073709551615-", UINT64_MAX, "416");
    expect("bytes=-1", UINT64_MAX, "206 18446744073709551614-18446744073709551614");
    expect("bytes=-99999999999999999999", UINT64_MAX, "206 0-18446744073709551614");
    expect("bytes=0-99999999999999999999", UINT64_MAX, "206 0-18446744073709551614");
    expect("bytes=0-5,6-", UINT64_MAX, "206 0-18446744073709551614");
    expect("bytes=-1,0-0", UINT64_MAX, "206 18446744073709551614-18446744073709551614,0-0");
}

static void test_too_many_ranges(void **state)
{
    char v[512];
    size_t n;
    (void)state;

    n = (size_t)snprintf(v, sizeof v, "bytes=");
    for (int i = 0; i < CACHE_RANGE_MAX; i++)
        n += (size_t)snprintf(v + n, sizeof v - n, "%s%d-%d", i ? "," : "", i * 10, i * 10);
    expect(v, LEN,
           "206 0-0,10-10,20-20,30-30,40-40,50-50,60-60,70-70,80-80,90-90,"
           "100-100,110-110,120-120,130-130,140-140,150-150");
    snprintf(v + n, sizeof v - n, ",170-170");
    expect(v, LEN, "200");

    /* counted as sent, before coalescing and whether satisfiable or not */
    n = (size_t)snprintf(v, sizeof v, "bytes=0-0");
    for (int i = 1; i <= CACHE_RANGE_MAX; i++)
        n += (size_t)snprintf(v + n, sizeof v - n, ",0-0");
    expect(v, LEN, "200");
    n = (size_t)snprintf(v, sizeof v, "bytes=0-0");
    for (int i = 1; i <= CACHE_RANGE_MAX; i++)
        n += (size_t)snprintf(v + n, sizeof v - n, ",20000-");
    expect(v, LEN, "200");

    /* empty elements are not specs */
    n = (size_t)snprintf(v, sizeof v, "bytes=");
    for (int i = 0; i < CACHE_RANGE_MAX; i++)
        n += (size_t)snprintf(v + n, sizeof v - n, ",,%d-%d", i * 10, i * 10 + 1);
    assert_int_equal(strncmp(range_of(v, LEN), "206 0-1,10-11,", 14), 0);
}

static void test_other_units(void **state)
{
    (void)state;
    expect("items=0-1", LEN, "200");
    expect("byte=0-1", LEN, "200");
    expect("bytesx=0-1", LEN, "200");
    expect("none", LEN, "200");
    expect("=0-1", LEN, "200");
    expect("items=0-1", 0, "200");
}

static void test_malformed(void **state)
{
    (void)state;
    expect(NULL, LEN, "200");
    expect("", LEN, "200");
    expect("bytes", LEN, "200");
    expect("bytes0-1", LEN, "200");
    expect("bytes=", LEN, "200");
    expect("bytes=,", LEN, "200");
    expect("bytes= , ", LEN, "200");
    expect("bytes==0-1", LEN, "200");
    expect("bytes=abc", LEN, "200");
    expect("bytes=-", LEN, "200");
    expect("bytes=1", LEN, "200");
    expect("bytes=+1-2", LEN, "200");
    expect("bytes=1-+2", LEN, "200");
    expect("bytes=--1", LEN, "200");
    expect("bytes=1--2", LEN, "200");
    expect("bytes=1-2-3", LEN, "200");
    expect("bytes=0x10-", LEN, "200");
    expect("bytes=1.5-2", LEN, "200");
    expect("bytes=0-1;x", LEN, "200");
    expect("bytes=0-1,abc", LEN, "200");
    expect("bytes=0-1 2-3", LEN, "200");
    expect("bytes=-1-2", LEN, "200");
}

static void test_zero_length(void **state)
{
    (void)state;
    expect("bytes=0-", 0, "416");
    expect("bytes=0-0", 0, "416");
    expect("bytes=-1", 0, "416");
    expect("bytes=-0", 0, "416");
    expect("bytes=0-0,-5", 0, "416");
    expect("bytes=x", 0, "200"); /* invalid is still ignored */
}

static void test_length_one(void **state)
{
    (void)state;
    expect("bytes=0-0", 1, "206 0-0");
    expect("bytes=0-", 1, "206 0-0");
    expect("bytes=0-100", 1, "206 0-0");
    expect("bytes=-1", 1, "206 0-0");
    expect("bytes=-5", 1, "206 0-0");
    expect("bytes=0-0,0-0,-1", 1, "206 0-0");
    expect("bytes=1-", 1, "416");
    expect("bytes=1-1", 1, "416");
    expect("bytes=-0", 1, "416");
}

static void test_uses_only_the_slice(void **state)
{
    struct cache_ranges r;
    (void)state;
    cache_range_parse("bytes=0-1xyz", 9, LEN, &r);
    assert_string_equal(show(&r), "206 0-1");
    cache_range_parse("bytes=0-1,5", 9, LEN, &r);
    assert_string_equal(show(&r), "206 0-1");
}

/* ---- Content-Range values ---- */

static void test_content_range(void **state)
{
    char buf[64];
    (void)state;

    assert_int_equal(cache_range_content_range(buf, sizeof buf, 0, 499, 10000), 17);
    assert_string_equal(buf, "bytes 0-499/10000");
    cache_range_content_range(buf, sizeof buf, 0, UINT64_MAX - 1, UINT64_MAX);
    assert_string_equal(buf, "bytes 0-18446744073709551614/18446744073709551615");
    assert_int_equal(cache_range_unsatisfied(buf, sizeof buf, 10000), 13);
    assert_string_equal(buf, "bytes */10000");
    cache_range_unsatisfied(buf, sizeof buf, 0);
    assert_string_equal(buf, "bytes */0");

    /* snprintf semantics */
    memset(buf, 'x', sizeof buf);
    assert_int_equal(cache_range_content_range(buf, 5, 0, 499, 10000), 17);
    assert_string_equal(buf, "byte");
    assert_int_equal(buf[5], 'x');
    assert_int_equal(cache_range_content_range(NULL, 0, 0, 499, 10000), 17);
    assert_int_equal(cache_range_unsatisfied(buf, 1, 10000), 13);
    assert_string_equal(buf, "");
}

/* ---- multipart/byteranges ---- */

static void test_boundary(void **state)
{
    char a[33], b[33], c[33];
    (void)state;

    memset(a, 'x', sizeof a);
    cache_range_boundary(42, a);
    assert_int_equal(strlen(a), CACHE_RANGE_BOUNDARY_LEN);
    assert_int_equal(strspn(a, "0123456789abcdef"), CACHE_RANGE_BOUNDARY_LEN);
    cache_range_boundary(42, b);
    assert_string_equal(a, b); /* deterministic */
    cache_range_boundary(43, c);
    assert_string_not_equal(a, c);
    cache_range_boundary(0, c);
    assert_int_equal(strspn(c, "0123456789abcdef"), CACHE_RANGE_BOUNDARY_LEN);
    assert_string_not_equal(a, c);
}

static void test_part_header_and_trailer(void **state)
{
    char buf[256];
    (void)state;

    size_t n = cache_range_part_header(buf, sizeof buf, true, "B", "text/plain", 10, 0, 499, 8000);
    assert_string_equal(buf, "--B\r\n"
                             "Content-Type: text/plain\r\n"
                             "Content-Range: bytes 0-499/8000\r\n"
                             "\r\n");
    assert_int_equal(n, strlen(buf));
    n = cache_range_part_header(buf, sizeof buf, false, "B", "text/plain", 10, 7000, 7999, 8000);
    assert_string_equal(buf, "\r\n--B\r\n"
                             "Content-Type: text/plain\r\n"
                             "Content-Range: bytes 7000-7999/8000\r\n"
                             "\r\n");
    assert_int_equal(n, strlen(buf));
    /* no type, or one that would forge a header line: no Content-Type */
    cache_range_part_header(buf, sizeof buf, true, "B", NULL, 0, 1, 2, 3);
    assert_string_equal(buf, "--B\r\nContent-Range: bytes 1-2/3\r\n\r\n");
    cache_range_part_header(buf, sizeof buf, true, "B", "text/html\r\nX: y", 16, 1, 2, 3);
    assert_string_equal(buf, "--B\r\nContent-Range: bytes 1-2/3\r\n\r\n");
    cache_range_part_header(buf, sizeof buf, true, "B", "text/html\nX", 11, 1, 2, 3);
    assert_string_equal(buf, "--B\r\nContent-Range: bytes 1-2/3\r\n\r\n");
    /* only ctype_len bytes of the type */
    cache_range_part_header(buf, sizeof buf, true, "B", "text/htmlXYZ", 9, 1, 2, 3);
    assert_string_equal(buf,
                        "--B\r\nContent-Type: text/html\r\nContent-Range: bytes 1-2/3\r\n\r\n");

    n = cache_range_trailer(buf, sizeof buf, "B");
    assert_string_equal(buf, "\r\n--B--\r\n");
    assert_int_equal(n, 9);

    /* snprintf semantics */
    memset(buf, 'x', sizeof buf);
    n = cache_range_part_header(buf, 4, true, "B", "a/b", 3, 0, 0, 1);
    assert_string_equal(buf, "--B");
    assert_int_equal(n, cache_range_part_header(NULL, 0, true, "B", "a/b", 3, 0, 0, 1));
    assert_int_equal(cache_range_trailer(buf, 3, "B"), 9);
    assert_string_equal(buf, "\r\n");
}

/* Write the whole multipart body the way the proxy does, into a malloc'd
 * buffer; return its length. */
static size_t write_multipart(const struct cache_ranges *r, const char *body, uint64_t length,
                              const char *boundary, const char *ct, char **out)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t ctl = ct ? strlen(ct) : 0;

    assert_non_null(buf);
    for (size_t i = 0; i < r->n; i++) {
        n += cache_range_part_header(buf + n, cap - n, i == 0, boundary, ct, ctl, r->r[i].start,
                                     r->r[i].end, length);
        assert_true(n < cap);
        size_t part = (size_t)(r->r[i].end - r->r[i].start + 1);
        assert_true(n + part < cap);
        memcpy(buf + n, body + r->r[i].start, part);
        n += part;
    }
    n += cache_range_trailer(buf + n, cap - n, boundary);
    assert_true(n < cap);
    *out = buf;
    return n;
}

static void check_exact_length(const char *range, uint64_t length, const char *ct)
{
    static char body[LEN];
    struct cache_ranges r;
    char boundary[33];
    char *out;

    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)('a' + i % 26);
    assert_true(length <= sizeof body);
    cache_range_parse(range, strlen(range), length, &r);
    assert_int_equal(r.status, 206);
    cache_range_boundary(UINT64_C(0x1234), boundary);
    size_t n = write_multipart(&r, body, length, boundary, ct, &out);
    uint64_t want = cache_range_multipart_length(&r, boundary, ct, ct ? strlen(ct) : 0, length);
    if (want != n)
        fail_msg("%s: computed %llu, wrote %zu", range, (unsigned long long)want, n);
    free(out);
}

static void test_multipart_length_is_exact(void **state)
{
    (void)state;
    check_exact_length("bytes=0-0,-1", LEN, "text/plain");
    check_exact_length("bytes=0-99,200-299,400-", LEN, "application/pdf");
    check_exact_length("bytes=0-99,200-299,400-", LEN, NULL);
    check_exact_length("bytes=9-9,99-99,999-999,9999-9999", LEN, "a/b");
    check_exact_length("bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,20-20,22-22,"
                       "24-24,26-26,28-28,30-",
                       LEN, "text/html; charset=utf-8");
    check_exact_length("bytes=-5,0-4", 12, "text/plain");
    check_exact_length("bytes=0-4", 12, "text/plain"); /* one range works too */
    check_exact_length("bytes=0-4,6-", 12, "text/html\r\nX: y");
}

/* The whole body for RFC 9110 14.6's shape, byte for byte. */
static void test_multipart_body(void **state)
{
    struct cache_ranges r;
    const char *body = "0123456789abcdefghij";
    char *out;
    (void)state;

    cache_range_parse("bytes=0-1,-3", 12, 20, &r);
    assert_string_equal(show(&r), "206 0-1,17-19");
    size_t n = write_multipart(&r, body, 20, "SEP", "text/plain", &out);
    const char *want = "--SEP\r\n"
                       "Content-Type: text/plain\r\n"
                       "Content-Range: bytes 0-1/20\r\n"
                       "\r\n"
                       "01"
                       "\r\n--SEP\r\n"
                       "Content-Type: text/plain\r\n"
                       "Content-Range: bytes 17-19/20\r\n"
                       "\r\n"
                       "hij"
                       "\r\n--SEP--\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    assert_int_equal(cache_range_multipart_length(&r, "SEP", "text/plain", 10, 20), n);
    free(out);

    r.status = 416;
    r.n = 0;
    assert_int_equal(cache_range_multipart_length(&r, "SEP", "text/plain", 10, 20), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single),
        cmocka_unit_test(test_open_ended),
        cmocka_unit_test(test_suffix),
        cmocka_unit_test(test_multiple),
        cmocka_unit_test(test_whitespace_and_case),
        cmocka_unit_test(test_overlapping),
        cmocka_unit_test(test_adjacent),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_first_after_last_is_invalid),
        cmocka_unit_test(test_unsatisfiable),
        cmocka_unit_test(test_partly_satisfiable),
        cmocka_unit_test(test_huge_numbers),
        cmocka_unit_test(test_too_many_ranges),
        cmocka_unit_test(test_other_units),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_length_one),
        cmocka_unit_test(test_uses_only_the_slice),
        cmocka_unit_test(test_content_range),
        cmocka_unit_test(test_boundary),
        cmocka_unit_test(test_part_header_and_trailer),
        cmocka_unit_test(test_multipart_length_is_exact),
        cmocka_unit_test(test_multipart_body),
    };

    return cmocka_run_group_tests_name("cache/range", tests, NULL, NULL);
}
