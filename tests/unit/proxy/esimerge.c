/*
 * tests/unit/proxy/esimerge.c: the cache facts of an assembled ESI page
 * (proxy/esimerge.c): freshness as the minimum over the parts (max-age,
 * Expires minus Date, Age), no-store / private / no-cache, and the ETag
 * derived from the parts' tags (strong, weak, missing, invalid, an empty
 * part, order and split sensitivity).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "proxy/esimerge.h"

/* 2023-11-14 22:13:20 GMT */
#define NOW_S INT64_C(1700000000)
#define NOW_MS (NOW_S * 1000)

/* A parsed response head from "Name: value" lines, spans into a static base. */
static char hbase[4096];
static struct http_head hresp;

static void response_head(const char *const *lines)
{
    http_head_free(&hresp);
    memset(&hresp, 0, sizeof hresp);
    hresp.status = 200;
    hresp.major = hresp.minor = 1;
    size_t len = 0;
    for (; lines && *lines; lines++) {
        const char *colon = strchr(*lines, ':');
        assert_non_null(colon);
        size_t n = strlen(*lines), nlen = (size_t)(colon - *lines);
        assert_true(len + n < sizeof hbase);
        memcpy(hbase + len, *lines, n);
        struct http_field *f = http_head_add_field(&hresp);
        assert_non_null(f);
        f->name = (struct http_span){(uint32_t)len, (uint32_t)nlen};
        f->value = http_span_trim(
            hbase, (struct http_span){(uint32_t)(len + nlen + 1), (uint32_t)(n - nlen - 1)});
        len += n;
    }
}

/* Add a part whose head has these lines (NULL-terminated). */
static void add_part(struct esi_merge *m, const char *const *lines)
{
    response_head(lines);
    esi_merge_add(m, hbase, &hresp, NOW_MS);
    memset(hbase, '#', sizeof hbase); /* the head is read during the call only */
}
#define ADD(m, ...) add_part(m, (const char *const[]){__VA_ARGS__, NULL})

/* "Date: <NOW_S + delta>" and the like, in a static ring so that several can
 * be passed in one ADD(). */
static const char *dated(const char *name, int64_t delta)
{
    static char ring[8][64];
    static unsigned next;
    char *s = ring[next++ % 8];
    char date[30];
    http_date_format((time_t)(NOW_S + delta), date);
    snprintf(s, sizeof ring[0], "%s: %s", name, date);
    return s;
}

/* The fields esi_merge_fields() writes, as a C string (static). */
static const char *fields_of(const struct esi_merge *m)
{
    static char text[256];
    struct buf b = {0};
    esi_merge_fields(m, &b);
    assert_false(b.oom);
    assert_true(buf_pending(&b) < sizeof text);
    memcpy(text, b.data + b.off, buf_pending(&b));
    text[buf_pending(&b)] = '\0';
    buf_release(&b);
    return text;
}

/* The page's Cache-Control line is want (ETag line, if any, ignored). */
static void expect_cc_at(int line, const struct esi_merge *m, const char *want)
{
    const char *got = fields_of(m);
    size_t n = strcspn(got, "\r");
    if (strlen(want) != n || strncmp(got, want, n) != 0 || strncmp(got + n, "\r\n", 2) != 0)
        fail_msg("line %d: got \"%.*s\", want \"%s\"", line, (int)n, got, want);
}
#define expect_cc(m, want) expect_cc_at(__LINE__, m, want)

/* The page's freshness with one part of these lines. */
static void expect_one_at(int line, const char *const *lines, const char *want)
{
    struct esi_merge m;
    esi_merge_init(&m);
    add_part(&m, lines);
    expect_cc_at(line, &m, want);
}
#define expect_one(want, ...)                                                                      \
    expect_one_at(__LINE__, (const char *const[]){__VA_ARGS__, NULL}, want)

/* The derived ETag, or "" when there is none; it is also the ETag line. */
static const char *etag_of(const struct esi_merge *m)
{
    static char tag[ESI_MERGE_ETAG_MAX];
    char line[64];
    const char *fields = fields_of(m);
    if (!esi_merge_etag(m, tag, sizeof tag)) {
        assert_null(strstr(fields, "ETag"));
        return "";
    }
    snprintf(line, sizeof line, "\r\nETag: %s\r\n", tag);
    assert_non_null(strstr(fields, line));
    assert_int_equal(strlen(strstr(fields, line)), strlen(line)); /* the last line */
    return tag;
}

static void assert_tag_shape(const char *tag, bool weak)
{
    size_t off = weak ? 2 : 0;
    assert_int_equal(strlen(tag), off + 22);
    if (weak)
        assert_memory_equal(tag, "W/", 2);
    assert_memory_equal(tag + off, "\"esi-", 5);
    for (size_t i = off + 5; i < off + 21; i++)
        assert_non_null(strchr("0123456789abcdef", tag[i]));
    assert_int_equal(tag[off + 21], '"');
}

/* ---- freshness ---- */

static void test_no_part(void **state)
{
    (void)state;
    struct esi_merge m;
    char tag[64] = "untouched";
    esi_merge_init(&m);
    assert_string_equal(fields_of(&m), "Cache-Control: max-age=0\r\n");
    assert_false(esi_merge_etag(&m, tag, sizeof tag));
    assert_string_equal(tag, "untouched");
}

static void test_max_age_minimum(void **state)
{
    (void)state;
    struct esi_merge m;
    esi_merge_init(&m);
    ADD(&m, "Cache-Control: max-age=60");
    expect_cc(&m, "Cache-Control: max-age=60");
    ADD(&m, "Cache-Control: public, max-age=30");
    ADD(&m, "Cache-Control: max-age=120");
    expect_cc(&m, "Cache-Control: max-age=30");
    ADD(&m, "Cache-Control: max-age=0");
    expect_cc(&m, "Cache-Control: max-age=0");

    /* s-maxage is for shared caches */
    expect_one("Cache-Control: max-age=10", "Cache-Control: s-maxage=600, max-age=10");
    expect_one("Cache-Control: max-age=600", "Cache-Control: max-age=600, s-maxage=10");
    expect_one("Cache-Control: max-age=0", "Cache-Control: s-maxage=600");
    /* several Cache-Control fields add up */
    expect_one("Cache-Control: max-age=5", "Cache-Control: public", "cache-control: MAX-AGE=5");
    expect_one("Cache-Control: max-age=7", "Cache-Control: max-age=\"7\"");
    /* nothing said: 0, no heuristics from Last-Modified */
    expect_one("Cache-Control: max-age=0", "Content-Type: text/html");
    expect_one("Cache-Control: max-age=0", dated("Last-Modified", -86400 * 365));
    /* invalid freshness is stale (RFC 9111 4.2.1), whatever Expires says */
    expect_one("Cache-Control: max-age=0", "Cache-Control: max-age=abc", dated("Expires", 300));
    expect_one("Cache-Control: max-age=0", "Cache-Control: max-age=60",
               "Cache-Control: max-age=70");
    /* huge values saturate at 2^31 (RFC 9111 1.2.2) */
    expect_one("Cache-Control: max-age=2147483648", "Cache-Control: max-age=99999999999999");
}

static void test_age(void **state)
{
    (void)state;
    expect_one("Cache-Control: max-age=40", "Cache-Control: max-age=60", "Age: 20");
    expect_one("Cache-Control: max-age=0", "Cache-Control: max-age=60", "Age: 60");
    expect_one("Cache-Control: max-age=0", "Cache-Control: max-age=60", "Age: 3600");
    expect_one("Cache-Control: max-age=0", "Cache-Control: max-age=60", "Age: 99999999999999");
    /* invalid Age: ignored */
    expect_one("Cache-Control: max-age=60", "Cache-Control: max-age=60", "Age: abc");
    expect_one("Cache-Control: max-age=60", "Cache-Control: max-age=60", "Age: -5");
    expect_one("Cache-Control: max-age=60", "Cache-Control: max-age=60", "Age: 1.5");
    expect_one("Cache-Control: max-age=60", "Cache-Control: max-age=60", "Age: ");
    /* the minimum is taken after Age: 100-90 beats 30 */
    struct esi_merge m;
    esi_merge_init(&m);
    ADD(&m, "Cache-Control: max-age=30");
    ADD(&m, "Cache-Control: max-age=100", "Age: 90");
    expect_cc(&m, "Cache-Control: max-age=10");
}

static void test_expires_date(void **state)
{
    (void)state;
    expect_one("Cache-Control: max-age=300", dated("Date", 0), dated("Expires", 300));
    /* Expires minus Date, not minus now */
    expect_one("Cache-Control: max-age=300", dated("Date", -100), dated("Expires", 200));
    expect_one("Cache-Control: max-age=300", dated("Date", 1000), dated("Expires", 1300));
    /* no Date, or an invalid one: now */
    expect_one("Cache-Control: max-age=50", dated("Expires", 50));
    expect_one("Cache-Control: max-age=50", "Date: yesterday", dated("Expires", 50));
    /* and Age */
    expect_one("Cache-Control: max-age=200", dated("Date", 0), dated("Expires", 300), "Age: 100");
    /* in the past, invalid ("0"), or two of them: stale (RFC 9111 5.3) */
    expect_one("Cache-Control: max-age=0", dated("Date", 0), dated("Expires", -10));
    expect_one("Cache-Control: max-age=0", "Expires: 0");
    expect_one("Cache-Control: max-age=0", "Expires: soon");
    expect_one("Cache-Control: max-age=0", dated("Expires", 300), dated("Expires", 300));
    /* the older HTTP-date forms */
    expect_one("Cache-Control: max-age=86400", "Date: Tue, 14 Nov 2023 22:13:20 GMT",
               "Expires: Wednesday, 15-Nov-23 22:13:20 GMT");
    expect_one("Cache-Control: max-age=60", "Date: Tue Nov 14 22:13:20 2023",
               "Expires: Tue Nov 14 22:14:20 2023");
    /* max-age wins over Expires (RFC 9111 5.3) */
    expect_one("Cache-Control: max-age=10", "Cache-Control: max-age=10", dated("Expires", 300));
    expect_one("Cache-Control: max-age=600", "Cache-Control: max-age=600", dated("Expires", 30));
    /* s-maxage does not hide Expires for a private cache */
    expect_one("Cache-Control: max-age=300", "Cache-Control: s-maxage=5", dated("Expires", 300));
    /* far future saturates */
    expect_one("Cache-Control: max-age=2147483648", "Expires: Fri, 31 Dec 9999 23:59:59 GMT");

    struct esi_merge m;
    esi_merge_init(&m);
    ADD(&m, "Cache-Control: max-age=500");
    ADD(&m, dated("Date", -100), dated("Expires", 100));
    ADD(&m, "Cache-Control: max-age=400", "Age: 100");
    expect_cc(&m, "Cache-Control: max-age=200");
}

static void test_no_store(void **state)
{
    (void)state;
    struct esi_merge m;
    esi_merge_init(&m);
    ADD(&m, "Cache-Control: private, max-age=60", "ETag: \"a\"");
    ADD(&m, "Cache-Control: no-store", "ETag: \"b\"");
    ADD(&m, "Cache-Control: no-cache, max-age=5", "ETag: \"c\"");
    const char *f = fields_of(&m);
    assert_memory_equal(f, "Cache-Control: no-store\r\nETag: ", 31);
    assert_tag_shape(etag_of(&m), false);

    esi_merge_init(&m);
    ADD(&m, "Cache-Control: max-age=60");
    ADD(&m, "Cache-Control: NO-STORE");
    assert_string_equal(fields_of(&m), "Cache-Control: no-store\r\n");
    esi_merge_init(&m);
    ADD(&m, "Cache-Control: max-age=60, no-store=x"); /* restrictive even with an argument */
    assert_string_equal(fields_of(&m), "Cache-Control: no-store\r\n");
    /* a request directive name in a field of another name is nothing */
    esi_merge_init(&m);
    ADD(&m, "X-Cache-Control: no-store", "Cache-Control: max-age=60");
    assert_string_equal(fields_of(&m), "Cache-Control: max-age=60\r\n");
}

static void test_private_no_cache(void **state)
{
    (void)state;
    struct esi_merge m;
    esi_merge_init(&m);
    ADD(&m, "Cache-Control: max-age=60");
    ADD(&m, "Cache-Control: private, max-age=90");
    assert_string_equal(fields_of(&m), "Cache-Control: private, max-age=60\r\n");
    ADD(&m, "Cache-Control: no-cache, max-age=100");
    assert_string_equal(fields_of(&m), "Cache-Control: private, no-cache, max-age=60\r\n");

    esi_merge_init(&m);
    ADD(&m, "Cache-Control: no-cache=\"Set-Cookie\", max-age=30");
    ADD(&m, "Cache-Control: max-age=60");
    assert_string_equal(fields_of(&m), "Cache-Control: no-cache, max-age=30\r\n");

    esi_merge_init(&m);
    ADD(&m, "Cache-Control: private=\"X-User\", max-age=30");
    assert_string_equal(fields_of(&m), "Cache-Control: private, max-age=30\r\n");
    /* public and must-revalidate are not carried over */
    esi_merge_init(&m);
    ADD(&m, "Cache-Control: public, must-revalidate, immutable, max-age=30");
    assert_string_equal(fields_of(&m), "Cache-Control: max-age=30\r\n");
    /* Pragma is a request field */
    esi_merge_init(&m);
    ADD(&m, "Pragma: no-cache", "Cache-Control: max-age=30");
    assert_string_equal(fields_of(&m), "Cache-Control: max-age=30\r\n");
}

static void test_empty_part(void **state)
{
    (void)state;
    struct esi_merge m;
    esi_merge_init(&m);
    ADD(&m, "Cache-Control: max-age=60", "ETag: \"a\"");
    esi_merge_add_empty(&m);
    ADD(&m, "Cache-Control: max-age=60", "ETag: \"b\"");
    assert_string_equal(fields_of(&m), "Cache-Control: max-age=0\r\n");
    assert_string_equal(etag_of(&m), "");

    esi_merge_init(&m);
    esi_merge_add_empty(&m);
    assert_string_equal(fields_of(&m), "Cache-Control: max-age=0\r\n");
    ADD(&m, "Cache-Control: private, max-age=60");
    assert_string_equal(fields_of(&m), "Cache-Control: private, max-age=0\r\n");
}

/* ---- ETags ---- */

/* The ETag of a page whose parts have these ETag values (NULL: none). */
static const char *etag_for(size_t n, const char *const *tags)
{
    struct esi_merge m;
    esi_merge_init(&m);
    for (size_t i = 0; i < n; i++) {
        char line[128];
        if (!tags[i]) {
            ADD(&m, "Cache-Control: max-age=60");
            continue;
        }
        snprintf(line, sizeof line, "ETag: %s", tags[i]);
        ADD(&m, "Cache-Control: max-age=60", line);
    }
    return etag_of(&m);
}
#define ETAG(...)                                                                                  \
    etag_for(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *),                    \
             (const char *const[]){__VA_ARGS__})

static void test_etag_strong(void **state)
{
    (void)state;
    char ab[ESI_MERGE_ETAG_MAX], again[ESI_MERGE_ETAG_MAX];
    snprintf(ab, sizeof ab, "%s", ETAG("\"a\"", "\"b\""));
    assert_tag_shape(ab, false);
    snprintf(again, sizeof again, "%s", ETAG("\"a\"", "\"b\""));
    assert_string_equal(ab, again); /* the same parts, the same page */
    assert_tag_shape(ETAG("\"\""), false);
    assert_tag_shape(ETAG("\"x\""), false);
    /* surrounding whitespace in the field is not part of the tag */
    assert_string_equal(ETAG("  \"a\"  ", "\"b\"\t"), ab);
}

/* The same tags from different sources (an include's src or its alt)
 * make different pages: the sources are in the hash. */
static void test_etag_sources(void **state)
{
    (void)state;
    char out[2][ESI_MERGE_ETAG_MAX];
    const char *src[2] = {"/frag/a", "/frag/alt"};
    for (int i = 0; i < 2; i++) {
        struct esi_merge m;
        esi_merge_init(&m);
        ADD(&m, "ETag: \"t\"");
        esi_merge_add_source(&m, src[i], strlen(src[i]));
        ADD(&m, "ETag: \"v1\"");
        assert_true(esi_merge_etag(&m, out[i], sizeof out[i]));
    }
    assert_string_not_equal(out[0], out[1]);
    /* a source is never taken for a tag */
    struct esi_merge a, b;
    char ta[ESI_MERGE_ETAG_MAX], tb[ESI_MERGE_ETAG_MAX];
    esi_merge_init(&a);
    esi_merge_init(&b);
    esi_merge_add_source(&a, "\"x\"", 3);
    ADD(&a, "ETag: \"y\"");
    ADD(&b, "ETag: \"x\"");
    ADD(&b, "ETag: \"y\"");
    assert_true(esi_merge_etag(&a, ta, sizeof ta));
    assert_true(esi_merge_etag(&b, tb, sizeof tb));
    assert_string_not_equal(ta, tb);
}

static void test_etag_weak(void **state)
{
    (void)state;
    char strong[ESI_MERGE_ETAG_MAX];
    snprintf(strong, sizeof strong, "%s", ETAG("\"a\"", "\"b\""));
    const char *w = ETAG("\"a\"", "W/\"b\"");
    assert_tag_shape(w, true);
    /* the same opaque-tags: the same hash, only weak */
    assert_string_equal(w + 2, strong);
    assert_string_equal(ETAG("W/\"a\"", "W/\"b\""), w);
    assert_string_equal(ETAG("W/\"a\"", "\"b\""), w);
}

static void test_etag_missing_or_invalid(void **state)
{
    (void)state;
    assert_string_equal(ETAG(NULL), "");
    assert_string_equal(ETAG("\"a\"", NULL), "");
    assert_string_equal(ETAG(NULL, "\"a\""), "");
    assert_string_equal(ETAG("\"a\"", "abc"), "");     /* unquoted */
    assert_string_equal(ETAG("\"a\"", "w/\"b\""), ""); /* W/ is case-sensitive */
    assert_string_equal(ETAG("\"a\"", "W/b"), "");
    assert_string_equal(ETAG("\"a\"", "\"b"), "");
    assert_string_equal(ETAG("\"a\"", "\"b\" \"c\""), "");
    assert_string_equal(ETAG("\"a\"", "\"b\", \"c\""), "");
    assert_string_equal(ETAG("\"a\"", "\"b c\""), "");
    assert_string_equal(ETAG("\"a\"", "\"b\"c"), "");
    assert_string_equal(ETAG("\"a\"", "*"), "");
    assert_string_equal(ETAG("\"a\"", ""), "");

    /* two ETag fields in one part */
    struct esi_merge m;
    esi_merge_init(&m);
    ADD(&m, "ETag: \"a\"", "ETag: \"a\"");
    assert_string_equal(etag_of(&m), "");
    /* a later part with a tag does not bring the page's back */
    esi_merge_init(&m);
    ADD(&m, "ETag: \"a\"");
    ADD(&m, "Cache-Control: max-age=5");
    ADD(&m, "ETag: \"c\"");
    assert_string_equal(etag_of(&m), "");
}

static void test_etag_order_and_split(void **state)
{
    (void)state;
    const char *const *sets[] = {
        (const char *const[]){"\"a\"", "\"b\"", NULL},
        (const char *const[]){"\"b\"", "\"a\"", NULL},
        (const char *const[]){"\"ab\"", "\"c\"", NULL},
        (const char *const[]){"\"a\"", "\"bc\"", NULL},
        (const char *const[]){"\"abc\"", NULL},
        (const char *const[]){"\"a\"", "\"b\"", "\"c\"", NULL},
        (const char *const[]){"\"a\"", NULL},
        (const char *const[]){"\"a\"", "\"a\"", NULL},
        (const char *const[]){"\"\"", NULL},
        (const char *const[]){"\"\"", "\"\"", NULL},
        (const char *const[]){"\"\"", "\"a\"", NULL},
        (const char *const[]){"\"a\"", "\"\"", NULL},
    };
    enum { NSETS = sizeof sets / sizeof sets[0] };
    char tags[NSETS][ESI_MERGE_ETAG_MAX];
    for (size_t i = 0; i < NSETS; i++) {
        size_t n = 0;
        while (sets[i][n])
            n++;
        snprintf(tags[i], sizeof tags[i], "%s", etag_for(n, sets[i]));
        assert_tag_shape(tags[i], false);
        for (size_t j = 0; j < i; j++)
            if (strcmp(tags[i], tags[j]) == 0)
                fail_msg("sets %zu and %zu give the same tag %s", j, i, tags[i]);
    }
}

/* The format is pinned: every node and every release must give one page
 * the same tag, or clients' validators stop matching.  Chained XXH3 over
 * the quoted opaque-tags, then the part count as 8 little-endian bytes. */
static void test_etag_format(void **state)
{
    (void)state;
    uint64_t h = XXH3_64bits_withSeed("\"ab\"", 4, 0);
    h = XXH3_64bits_withSeed("\"\"", 2, h);
    h = XXH3_64bits_withSeed((const unsigned char[8]){2}, 8, h);
    char want[ESI_MERGE_ETAG_MAX];
    snprintf(want, sizeof want, "W/\"esi-%016llx\"", (unsigned long long)h);
    assert_string_equal(ETAG("\"ab\"", "W/\"\""), want);
}

static void test_etag_buffer(void **state)
{
    (void)state;
    struct esi_merge m;
    char out[ESI_MERGE_ETAG_MAX];
    esi_merge_init(&m);
    ADD(&m, "ETag: \"a\"");
    memset(out, 'x', sizeof out);
    assert_false(esi_merge_etag(&m, out, 22)); /* 22 characters and the NUL */
    assert_int_equal(out[0], 'x');
    assert_true(esi_merge_etag(&m, out, 23));
    assert_int_equal(strlen(out), 22);
    ADD(&m, "ETag: W/\"b\"");
    assert_false(esi_merge_etag(&m, out, 24));
    assert_true(esi_merge_etag(&m, out, 25));
    assert_int_equal(strlen(out), 24);
}

static int teardown(void **state)
{
    (void)state;
    http_head_free(&hresp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_part),
        cmocka_unit_test(test_max_age_minimum),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_expires_date),
        cmocka_unit_test(test_no_store),
        cmocka_unit_test(test_private_no_cache),
        cmocka_unit_test(test_empty_part),
        cmocka_unit_test(test_etag_strong),
        cmocka_unit_test(test_etag_weak),
        cmocka_unit_test(test_etag_sources),
        cmocka_unit_test(test_etag_missing_or_invalid),
        cmocka_unit_test(test_etag_order_and_split),
        cmocka_unit_test(test_etag_format),
        cmocka_unit_test(test_etag_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
