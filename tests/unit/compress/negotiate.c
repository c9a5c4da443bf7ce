/*
 * tests/unit/compress/negotiate.c: Accept-Encoding parsing and the coding
 * choice (compress/negotiate.c): q-values, "*", identity;q=0, zstd and the
 * br > zstd > gzip preference, duplicates,
 * case and whitespace, garbage, and the matrix of what a route offers
 * against what a client accepts.  Each header is copied into a buffer of
 * its exact length (no NUL) so valgrind or ASan catch an over-read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "compress/negotiate.h"

#define ALL (CODING_BIT(CODING_GZIP) | CODING_BIT(CODING_BR) | CODING_BIT(CODING_ZSTD))
#define GZ CODING_BIT(CODING_GZIP)
#define BR CODING_BIT(CODING_BR)
#define ZS CODING_BIT(CODING_ZSTD)

struct neg_case {
    const char *header; /* NULL: no Accept-Encoding */
    unsigned offered;
    enum coding want;
    bool want_identity_ok;
};

static void check(const struct neg_case *c)
{
    char *copy = NULL;
    size_t len = 0;
    if (c->header != NULL) {
        len = strlen(c->header);
        copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, c->header, len);
    }
    bool ok = !c->want_identity_ok;
    enum coding got = negotiate_coding(copy, len, c->offered, &ok);
    if (got != c->want || ok != c->want_identity_ok)
        fail_msg("\"%s\" offered %#x: got %s ok=%d, want %s ok=%d",
                 c->header ? c->header : "(none)", c->offered, coding_name(got), ok,
                 coding_name(c->want), c->want_identity_ok);
    free(copy);
}

static void run_cases(const struct neg_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check(&cases[i]);
}
#define RUN(cases) run_cases(cases, sizeof(cases) / sizeof(cases)[0])

static void test_basic(void **state)
{
    (void)state;
    static const struct neg_case cases[] = {
        {NULL, ALL, CODING_IDENTITY, true}, /* no header: identity */
        {"", ALL, CODING_IDENTITY, true},   /* empty: identity only */
        {"gzip", ALL, CODING_GZIP, true},
        {"br", ALL, CODING_BR, true},
        {"gzip, deflate, br", ALL, CODING_BR, true}, /* preference br > gzip */
        {"br, gzip", GZ, CODING_GZIP, true},         /* route offers gzip only */
        {"br, gzip", BR, CODING_BR, true},
        {"br, gzip", 0, CODING_IDENTITY, true}, /* route offers nothing */
        {"deflate, compress", ALL, CODING_IDENTITY, true},
        {"identity", ALL, CODING_IDENTITY, true},
        {"x-gzip", ALL, CODING_GZIP, true},
    };
    RUN(cases);
}

static void test_qvalues(void **state)
{
    (void)state;
    static const struct neg_case cases[] = {
        {"gzip;q=1.0, br;q=0.5", ALL, CODING_GZIP, true}, /* higher q beats preference */
        {"gzip;q=0.5, br;q=0.5", ALL, CODING_BR, true},   /* equal q: preference */
        {"gzip;q=0.001, br;q=0", ALL, CODING_GZIP, true},
        {"gzip;q=0, br;q=0", ALL, CODING_IDENTITY, true},
        {"br;q=0.9, gzip;q=0.899", ALL, CODING_BR, true},
        {"gzip;q=1.000", ALL, CODING_GZIP, true},
        {"gzip;q=0.", ALL, CODING_IDENTITY, true}, /* "0." is q=0 */
        {"gzip;q=1", ALL, CODING_GZIP, true},
        {"gzip;Q=0.5", ALL, CODING_GZIP, true},                   /* parameter name case */
        {"gzip ; q = 0.5", ALL, CODING_GZIP, true},               /* tolerated spaces */
        {"identity;q=1, gzip;q=0.5", ALL, CODING_IDENTITY, true}, /* identity ranked higher */
        {"identity;q=0.5, gzip;q=0.5", ALL, CODING_GZIP, true},   /* tie: compress */
        {"br;q=0.5, gzip", BR, CODING_BR, true},                  /* gzip not offered */
    };
    RUN(cases);
}

static void test_malformed_q_ignored(void **state)
{
    (void)state;
    static const struct neg_case cases[] = {
        {"br;q=1.5, gzip", ALL, CODING_GZIP, true}, /* > 1 */
        {"br;q=1.001, gzip", ALL, CODING_GZIP, true},
        {"br;q=0.1234, gzip", ALL, CODING_GZIP, true}, /* 4 decimals */
        {"br;q=-0.5, gzip", ALL, CODING_GZIP, true},
        {"br;q=, gzip", ALL, CODING_GZIP, true},
        {"br;q=.5, gzip", ALL, CODING_GZIP, true},
        {"br;q=0.5x, gzip", ALL, CODING_GZIP, true},
        {"br;q, gzip", ALL, CODING_GZIP, true},
        {"br;level=5, gzip", ALL, CODING_GZIP, true}, /* unknown parameter */
        {"br;, gzip", ALL, CODING_GZIP, true},
        {"br;q=0.5;q=0.6, gzip", ALL, CODING_GZIP, true},
        {"br;q=0.5", ALL, CODING_BR, true},
        /* a malformed refusal is ignored, so a later valid entry counts */
        {"gzip;q=zero, gzip;q=0", ALL, CODING_IDENTITY, true},
    };
    RUN(cases);
}

static void test_star(void **state)
{
    (void)state;
    static const struct neg_case cases[] = {
        {"*", ALL, CODING_BR, true},
        {"*", GZ, CODING_GZIP, true},
        {"*;q=0.5, gzip", ALL, CODING_GZIP, true},   /* explicit gzip q=1 beats *'s 0.5 */
        {"*;q=0.5, br;q=0", ALL, CODING_ZSTD, true}, /* br refused, zstd via * */
        {"*;q=0.5, br;q=0", GZ | BR, CODING_GZIP, true},
        {"*;q=0", ALL, CODING_IDENTITY, false}, /* * refuses identity too */
        {"*;q=0, identity", ALL, CODING_IDENTITY, true},
        {"*;q=0, gzip", ALL, CODING_GZIP, true},
        {"*;q=0, gzip", BR, CODING_IDENTITY, false},
        {"gzip, *;q=0", BR, CODING_IDENTITY, false},
    };
    RUN(cases);
}

static void test_zstd(void **state)
{
    (void)state;
    static const struct neg_case cases[] = {
        {"zstd", ALL, CODING_ZSTD, true},
        {"gzip, zstd", ALL, CODING_ZSTD, true},            /* zstd > gzip */
        {"zstd, gzip", ALL, CODING_ZSTD, true},            /* order in the header: none */
        {"gzip, deflate, br, zstd", ALL, CODING_BR, true}, /* Chrome's header: br > zstd */
        {"zstd, br", ALL, CODING_BR, true},                /* br > zstd */
        {"gzip;q=0.8, br;q=0.8, zstd;q=0.8", ALL, CODING_BR, true},
        {"gzip;q=0.8, zstd;q=0.8", ALL, CODING_ZSTD, true},
        {"br;q=0.5, zstd;q=0.6", ALL, CODING_ZSTD, true}, /* higher q beats preference */
        {"zstd;q=0.5, gzip;q=0.6", ALL, CODING_GZIP, true},
        {"br, zstd, gzip", GZ | ZS, CODING_ZSTD, true}, /* br not offered */
        {"br, zstd, gzip", GZ, CODING_GZIP, true},      /* zstd not offered */
        {"zstd", GZ | BR, CODING_IDENTITY, true},
        {"zstd", ZS, CODING_ZSTD, true},
        {"zstd;q=0", ALL, CODING_IDENTITY, true}, /* refused */
        {"zstd;q=0, gzip", ALL, CODING_GZIP, true},
        {"zstd;q=0, *", ALL, CODING_BR, true},
        {"zstd;q=0, *", ZS, CODING_IDENTITY, true},
        {"br;q=0, gzip;q=0, *", ALL, CODING_ZSTD, true}, /* zstd through "*" */
        {"zstd;q=0, zstd", ALL, CODING_IDENTITY, true},  /* first wins */
        {"x-zstd", ALL, CODING_IDENTITY, true},          /* never registered */
        {"x-zstd, gzip", ALL, CODING_GZIP, true},
        {"zstd1, zst, zstdd", ALL, CODING_IDENTITY, true},
        {"ZSTD", ALL, CODING_ZSTD, true},
        {"ZsTd;Q=0.5, gzip;q=0.4", ALL, CODING_ZSTD, true},
        {"gzip, Zstd", ALL, CODING_ZSTD, true},
    };
    RUN(cases);
}

static void test_identity_refused(void **state)
{
    (void)state;
    static const struct neg_case cases[] = {
        {"identity;q=0", ALL, CODING_IDENTITY, false},
        {"identity;q=0", 0, CODING_IDENTITY, false},
        {"identity;q=0, gzip", ALL, CODING_GZIP, true},
        {"identity;q=0, gzip", BR, CODING_IDENTITY, false},
        {"identity;q=0, br;q=0, gzip;q=0", ALL, CODING_IDENTITY, false},
        {"identity;q=0, deflate", ALL, CODING_IDENTITY, false},
        {"identity;q=0.000", ALL, CODING_IDENTITY, false},
    };
    RUN(cases);
}

static void test_duplicates_first_wins(void **state)
{
    (void)state;
    static const struct neg_case cases[] = {
        {"gzip;q=0, gzip", ALL, CODING_IDENTITY, true},
        {"gzip, gzip;q=0", ALL, CODING_GZIP, true},
        {"br;q=0.1, gzip;q=0.5, br;q=1", ALL, CODING_GZIP, true},
        {"x-gzip;q=0, gzip", ALL, CODING_IDENTITY, true}, /* same coding */
        {"identity;q=0, identity", GZ | BR, CODING_IDENTITY, false},
        {"*;q=0, *", ALL, CODING_IDENTITY, false},
    };
    RUN(cases);
}

static void test_case_and_whitespace(void **state)
{
    (void)state;
    static const struct neg_case cases[] = {
        {"GZIP", ALL, CODING_GZIP, true},
        {"Br", ALL, CODING_BR, true},
        {"  gzip  ,\tbr ;q=0.4 ", ALL, CODING_GZIP, true},
        {"gzip;q=0.5 ,  BR;Q=0.5", ALL, CODING_BR, true},
        {",,, ,gzip,,", ALL, CODING_GZIP, true},
        {"\tbr\t", ALL, CODING_BR, true},
        {"IDENTITY;Q=0", ALL, CODING_IDENTITY, false},
    };
    RUN(cases);
}

static void test_garbage(void **state)
{
    (void)state;
    static const struct neg_case cases[] = {
        {",", ALL, CODING_IDENTITY, true},           {";q=1", ALL, CODING_IDENTITY, true},
        {"g zip", ALL, CODING_IDENTITY, true},       {"gzip br", ALL, CODING_IDENTITY, true},
        {"\"gzip\"", ALL, CODING_IDENTITY, true},    {"gzip\x01", ALL, CODING_IDENTITY, true},
        {"gzip\x01, br", ALL, CODING_BR, true},      {"gzipx, brr, gz", ALL, CODING_IDENTITY, true},
        {"gzip;q=0.5;", ALL, CODING_IDENTITY, true}, {"=;=,;;", ALL, CODING_IDENTITY, true},
    };
    RUN(cases);
}

/* Every byte value in every position of a short header: no crash, no
 * read outside the slice, a valid enum back. */
static void test_fuzzish(void **state)
{
    (void)state;
    const char *base = "br;q=0.5, gzip";
    size_t n = strlen(base);
    char *buf = malloc(n);
    assert_non_null(buf);
    for (size_t pos = 0; pos < n; pos++) {
        for (int b = 0; b < 256; b++) {
            memcpy(buf, base, n);
            buf[pos] = (char)b;
            for (size_t len = 0; len <= n; len++) {
                bool ok;
                enum coding c = negotiate_coding(buf + n - len, len, ALL, &ok);
                assert_true(c == CODING_IDENTITY || c == CODING_GZIP || c == CODING_BR ||
                            c == CODING_ZSTD);
            }
        }
    }
    free(buf);
}

/* Only len bytes count: nothing past the slice is read. */
static void test_slice_not_string(void **state)
{
    (void)state;
    const char hdr[] = {'g', 'z', 'i', 'p', ',', 'b', 'r'};
    bool ok;
    assert_int_equal(negotiate_coding(hdr, 4, ALL, &ok), CODING_GZIP);
    assert_int_equal(negotiate_coding(hdr, sizeof hdr, ALL, &ok), CODING_BR);
    assert_int_equal(negotiate_coding(hdr, sizeof hdr, ALL, NULL), CODING_BR);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(coding_name(CODING_BR), "br");
    assert_string_equal(coding_name(CODING_ZSTD), "zstd");
    assert_string_equal(coding_name(CODING_GZIP), "gzip");
    assert_string_equal(coding_name(CODING_IDENTITY), "identity");
    assert_string_equal(coding_name(CODING_COUNT), "identity");
    assert_string_equal(coding_name((enum coding)42), "identity");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_qvalues),
        cmocka_unit_test(test_malformed_q_ignored),
        cmocka_unit_test(test_star),
        cmocka_unit_test(test_zstd),
        cmocka_unit_test(test_identity_refused),
        cmocka_unit_test(test_duplicates_first_wins),
        cmocka_unit_test(test_case_and_whitespace),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_fuzzish),
        cmocka_unit_test(test_slice_not_string),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests_name("compress/negotiate", tests, NULL, NULL);
}
