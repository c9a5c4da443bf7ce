/*
 * tests/unit/cache/key.c: primary keys (host, path, query modes, header and
 * cookie parts), Vary keys and hashes (cache/key.c), with exact strings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cache/key.h"

#define F(n, v)                                                                                    \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }

static struct config_cache_policy policy(enum key_query mode)
{
    return (struct config_cache_policy){
        .enabled = true,
        .honor_cache_control = true,
        .methods = CACHE_METHOD_GET | CACHE_METHOD_HEAD,
        .key_query = mode,
    };
}

static char keybuf[8192];

static const char *key_full(const char *scheme, const char *host, const char *target,
                            const struct cache_field *fields, size_t nfields,
                            const struct config_cache_policy *p)
{
    struct cache_key_input in = {scheme, strlen(scheme), host,   strlen(host),
                                 target, strlen(target), fields, nfields};
    size_t need = cache_key_build(&in, p, NULL, 0);
    size_t len = cache_key_build(&in, p, keybuf, sizeof keybuf);

    assert_int_equal(need, len);
    assert_int_equal(strlen(keybuf), len);
    return keybuf;
}

static const char *key_q(const char *target, enum key_query mode)
{
    struct config_cache_policy p = policy(mode);

    return key_full("http", "example.com", target, NULL, 0, &p);
}

static const char *key_host(const char *scheme, const char *host)
{
    struct config_cache_policy p = policy(KEY_QUERY_ALL);

    return key_full(scheme, host, "/", NULL, 0, &p);
}

static const char *key_path(const char *target)
{
    return key_q(target, KEY_QUERY_ALL);
}

/* ---- host and scheme ---- */

static void test_host_normalisation(void **state)
{
    (void)state;
    assert_string_equal(key_host("http", "example.com"), "http://example.com/");
    assert_string_equal(key_host("http", "Example.COM"), "http://example.com/");
    assert_string_equal(key_host("HTTP", "example.com"), "http://example.com/");
    assert_string_equal(key_host("http", "example.com:80"), "http://example.com/");
    assert_string_equal(key_host("http", "example.com:0080"), "http://example.com/");
    assert_string_equal(key_host("http", "example.com:"), "http://example.com/");
    assert_string_equal(key_host("http", "example.com:8080"), "http://example.com:8080/");
    assert_string_equal(key_host("http", "example.com:08080"), "http://example.com:8080/");
    assert_string_equal(key_host("http", "example.com:443"), "http://example.com:443/");
    assert_string_equal(key_host("https", "example.com:443"), "https://example.com/");
    assert_string_equal(key_host("https", "example.com:80"), "https://example.com:80/");
    assert_string_equal(key_host("http", "example.com."), "http://example.com/");
    assert_string_equal(key_host("http", "Example.com.:80"), "http://example.com/");
    assert_string_equal(key_host("http", "example.com.:81"), "http://example.com:81/");
    assert_string_equal(key_host("http", " example.com "), "http://example.com/");
    assert_string_equal(key_host("http", "127.0.0.1:80"), "http://127.0.0.1/");
    assert_string_equal(key_host("http", "[::1]:80"), "http://[::1]/");
    assert_string_equal(key_host("http", "[::1]:8080"), "http://[::1]:8080/");
    assert_string_equal(key_host("http", "[FE80::1]"), "http://[fe80::1]/");
    assert_string_equal(key_host("http", ""), "http:///");
    assert_string_equal(key_host("http", "example.com:port"), "http://example.com:port/");
    /* bytes that cannot be in a host are encoded, '%' too */
    assert_string_equal(key_host("http", "example.com/x"), "http://example.com%2Fx/");
    assert_string_equal(key_host("http", "u@example.com"), "http://u%40example.com/");
    assert_string_equal(key_host("http", "a%2Fb"), "http://a%252fb/");
    assert_string_equal(key_host("http", "a b\nc"), "http://a%20b%0Ac/");
    assert_string_equal(key_host("http", "[::1]x"), "http://[::1]x/");
}

/* ---- path ---- */

static void test_path_percent_encoding(void **state)
{
    (void)state;
    assert_string_equal(key_path("/%7euser/%41%62c"), "http://example.com/~user/Abc");
    assert_string_equal(key_path("/%5F%2D%2E%7E%30%7a"), "http://example.com/_-.~0z");
    assert_string_equal(key_path("/a%2fb"), "http://example.com/a%2Fb");
    assert_string_equal(key_path("/a%2Fb"), "http://example.com/a%2Fb");
    assert_string_equal(key_path("/%e2%82%ac"), "http://example.com/%E2%82%AC");
    assert_string_equal(key_path("/%20%3f%25"), "http://example.com/%20%3F%25");
    assert_string_equal(key_path("/%zz%g1"), "http://example.com/%zz%g1");
    assert_string_equal(key_path("/a%"), "http://example.com/a%");
    assert_string_equal(key_path("/a%4"), "http://example.com/a%4");
    assert_string_equal(key_path("/a%41"), "http://example.com/aA");
    assert_string_equal(key_path("/%%41"), "http://example.com/%A");
    /* the query is kept raw */
    assert_string_equal(key_path("/%7e?q=%7e%2f"), "http://example.com/~?q=%7e%2f");
}

/* No dot-segment removal or slash merging (see key.h). */
static void test_path_not_otherwise_changed(void **state)
{
    (void)state;
    assert_string_equal(key_path("/a/../b"), "http://example.com/a/../b");
    assert_string_equal(key_path("/a/./b"), "http://example.com/a/./b");
    assert_string_equal(key_path("/%2e%2E/"), "http://example.com/../");
    assert_string_equal(key_path("//a//b/"), "http://example.com//a//b/");
    assert_string_equal(key_path("/A/B"), "http://example.com/A/B");
    /* not origin-form: a space no host can write keeps them apart */
    assert_string_equal(key_path("*"), "http://example.com *");
    assert_string_equal(key_path(".evil/p"), "http://example.com .evil/p");
    assert_string_equal(key_path(""), "http://example.com ");
}

/* Bytes a valid target cannot hold are encoded, so they cannot forge a
 * header part of the key. */
static void test_target_raw_bytes(void **state)
{
    (void)state;
    assert_string_equal(key_path("/a b\nh:x=1"), "http://example.com/a%20b%0Ah:x=1");
    assert_string_equal(key_path("/\xc3\xa9?q=\xc3\xa9 \x7f"),
                        "http://example.com/%C3%A9?q=%C3%A9%20%7F");
    assert_string_equal(key_q("/p?b=\n&a=\t", KEY_QUERY_SORTED),
                        "http://example.com/p?a=%09&b=%0A");
}

/* ---- query ---- */

static void test_query_all(void **state)
{
    (void)state;
    assert_string_equal(key_q("/p?b=2&a=1", KEY_QUERY_ALL), "http://example.com/p?b=2&a=1");
    assert_string_equal(key_q("/p?b=2&&a=1&", KEY_QUERY_ALL), "http://example.com/p?b=2&&a=1&");
    assert_string_equal(key_q("/p?", KEY_QUERY_ALL), "http://example.com/p?");
    assert_string_equal(key_q("/p", KEY_QUERY_ALL), "http://example.com/p");
    assert_string_equal(key_q("/p?a=1?b=2", KEY_QUERY_ALL), "http://example.com/p?a=1?b=2");
}

static void test_query_none(void **state)
{
    (void)state;
    assert_string_equal(key_q("/p?b=2&a=1", KEY_QUERY_NONE), "http://example.com/p");
    assert_string_equal(key_q("/p?", KEY_QUERY_NONE), "http://example.com/p");
    assert_string_equal(key_q("/p", KEY_QUERY_NONE), "http://example.com/p");
}

static void test_query_sorted(void **state)
{
    (void)state;
    assert_string_equal(key_q("/p?b=2&a=1", KEY_QUERY_SORTED), "http://example.com/p?a=1&b=2");
    assert_string_equal(key_q("/p?a=1&b=2", KEY_QUERY_SORTED), "http://example.com/p?a=1&b=2");
    /* by name, then value; repeated parameters are kept; empty ones dropped */
    assert_string_equal(key_q("/p?b=2&a=1&a=0&&c&a", KEY_QUERY_SORTED),
                        "http://example.com/p?a&a=0&a=1&b=2&c");
    assert_string_equal(key_q("/p?a=1&a=1", KEY_QUERY_SORTED), "http://example.com/p?a=1&a=1");
    assert_string_equal(key_q("/p?a=&a", KEY_QUERY_SORTED), "http://example.com/p?a&a=");
    /* by name first: "a" < "a-b" although "a=" > "a-" bytewise */
    assert_string_equal(key_q("/p?a-b=1&a=2", KEY_QUERY_SORTED), "http://example.com/p?a=2&a-b=1");
    assert_string_equal(key_q("/p?ab=1&a=2", KEY_QUERY_SORTED), "http://example.com/p?a=2&ab=1");
    /* bytewise: upper case before lower case */
    assert_string_equal(key_q("/p?a=1&B=1", KEY_QUERY_SORTED), "http://example.com/p?B=1&a=1");
    /* values may contain "="; encodings are compared raw */
    assert_string_equal(key_q("/p?x=b=c&x=b&x=%41", KEY_QUERY_SORTED),
                        "http://example.com/p?x=%41&x=b&x=b=c");
    assert_string_equal(key_q("/p?&&&", KEY_QUERY_SORTED), "http://example.com/p");
    assert_string_equal(key_q("/p?", KEY_QUERY_SORTED), "http://example.com/p");
    assert_string_equal(key_q("/p", KEY_QUERY_SORTED), "http://example.com/p");
}

/* More parameters than the sort's stack array holds. */
static void test_query_sorted_many(void **state)
{
    char target[4096], expect[4096];
    size_t t = 0, e = 0;

    (void)state;
    t += (size_t)snprintf(target + t, sizeof target - t, "/p?");
    e += (size_t)snprintf(expect + e, sizeof expect - e, "http://example.com/p?");
    for (int i = 199; i >= 0; i--)
        t += (size_t)snprintf(target + t, sizeof target - t, "k%03d=%d%s", i, i, i ? "&" : "");
    for (int i = 0; i < 200; i++)
        e += (size_t)snprintf(expect + e, sizeof expect - e, "%sk%03d=%d", i ? "&" : "", i, i);
    assert_string_equal(key_q(target, KEY_QUERY_SORTED), expect);
}

static void test_query_only_except(void **state)
{
    char *only[] = {"id", "page"};
    char *except[] = {"utm_source", "fbclid"};
    struct config_cache_policy p = policy(KEY_QUERY_ONLY);

    (void)state;
    p.key_query_params = only;
    p.nkey_query_params = 2;
    assert_string_equal(key_full("http", "h", "/p?utm=1&page=2&id=7&ID=8&idx=1", NULL, 0, &p),
                        "http://h/p?id=7&page=2");
    assert_string_equal(key_full("http", "h", "/p?page&id=", NULL, 0, &p), "http://h/p?id=&page");
    assert_string_equal(key_full("http", "h", "/p?utm=1", NULL, 0, &p), "http://h/p");
    assert_string_equal(key_full("http", "h", "/p", NULL, 0, &p), "http://h/p");

    p = policy(KEY_QUERY_EXCEPT);
    p.key_query_params = except;
    p.nkey_query_params = 2;
    assert_string_equal(
        key_full("http", "h", "/p?utm_source=x&b=1&fbclid=z&a&utm_source2=y", NULL, 0, &p),
        "http://h/p?a&b=1&utm_source2=y");
    assert_string_equal(key_full("http", "h", "/p?fbclid=1&utm_source=2", NULL, 0, &p),
                        "http://h/p");

    /* ONLY with an empty list keeps nothing; EXCEPT with one keeps all */
    p = policy(KEY_QUERY_ONLY);
    assert_string_equal(key_full("http", "h", "/p?a=1", NULL, 0, &p), "http://h/p");
    p = policy(KEY_QUERY_EXCEPT);
    assert_string_equal(key_full("http", "h", "/p?b=1&a=1", NULL, 0, &p), "http://h/p?a=1&b=1");
}

/* ---- header and cookie parts ---- */

static void test_key_headers(void **state)
{
    char *headers[] = {"accept-language", "x-device"};
    struct config_cache_policy p = policy(KEY_QUERY_ALL);
    const struct cache_field fields[] = {
        F("Accept-Language", "en"),
        F("X-Device", "  mobile \t"),
        F("Host", "h"),
        F("accept-language", "fr"),
    };

    (void)state;
    p.key_headers = headers;
    p.nkey_headers = 2;
    assert_string_equal(key_full("http", "h", "/", fields, 4, &p),
                        "http://h/\nh:accept-language=en, fr\nh:x-device=mobile");
    assert_string_equal(key_full("http", "h", "/", fields, 1, &p),
                        "http://h/\nh:accept-language=en\nh:x-device=");
    assert_string_equal(key_full("http", "h", "/", NULL, 0, &p),
                        "http://h/\nh:accept-language=\nh:x-device=");
    /* HTAB inside a value is kept; a control that should not be there is encoded */
    const struct cache_field odd[] = {F("X-Device", "a\tb\nh:x=\r")};
    assert_string_equal(key_full("http", "h", "/", odd, 1, &p),
                        "http://h/\nh:accept-language=\nh:x-device=a\tb%0Ah:x=%0D");
}

static void test_key_cookies(void **state)
{
    char *cookies[] = {"lang", "ab"};
    struct config_cache_policy p = policy(KEY_QUERY_ALL);
    const struct cache_field fields[] = {
        F("Cookie", "session=1; LANG=x; nolang=y; lang=fr; lang=de"),
        F("X-Other", "lang=zz"),
        F("COOKIE", " ab = B ;lang=en"),
    };
    const struct cache_field odd[] = {
        F("Cookie", "lang; ab=x=y;;  lang=\"q\" "),
    };

    (void)state;
    p.key_cookies = cookies;
    p.nkey_cookies = 2;
    assert_string_equal(key_full("http", "h", "/", fields, 3, &p), "http://h/\nc:lang=fr\nc:ab=B");
    assert_string_equal(key_full("http", "h", "/", fields + 1, 2, &p),
                        "http://h/\nc:lang=en\nc:ab=B");
    assert_string_equal(key_full("http", "h", "/", NULL, 0, &p), "http://h/\nc:lang=\nc:ab=");
    assert_string_equal(key_full("http", "h", "/", odd, 1, &p),
                        "http://h/\nc:lang=\"q\"\nc:ab=x=y");
}

static void test_key_all_parts(void **state)
{
    char *headers[] = {"x-device"};
    char *cookies[] = {"lang"};
    struct config_cache_policy p = policy(KEY_QUERY_SORTED);
    const struct cache_field fields[] = {
        F("Cookie", "lang=fr"),
        F("X-Device", "tablet"),
    };

    (void)state;
    p.key_headers = headers;
    p.nkey_headers = 1;
    p.key_cookies = cookies;
    p.nkey_cookies = 1;
    assert_string_equal(key_full("http", "Shop.Example:80", "/%7ecart?z=1&a=2", fields, 2, &p),
                        "http://shop.example/~cart?a=2&z=1\nh:x-device=tablet\nc:lang=fr");
}

/* snprintf semantics */
static void test_key_buffer(void **state)
{
    struct config_cache_policy p = policy(KEY_QUERY_ALL);
    struct cache_key_input in = {"http", 4, "h", 1, "/abc", 4, NULL, 0};
    char buf[16];

    (void)state;
    assert_int_equal(cache_key_build(&in, &p, NULL, 0), 12); /* "http://h/abc" */
    memset(buf, 'X', sizeof buf);
    assert_int_equal(cache_key_build(&in, &p, buf, 1), 12);
    assert_string_equal(buf, "");
    assert_int_equal(buf[1], 'X');
    memset(buf, 'X', sizeof buf);
    assert_int_equal(cache_key_build(&in, &p, buf, 5), 12);
    assert_string_equal(buf, "http");
    assert_int_equal(buf[5], 'X');
    assert_int_equal(cache_key_build(&in, &p, buf, 12), 12);
    assert_string_equal(buf, "http://h/ab");
    assert_int_equal(cache_key_build(&in, &p, buf, 13), 12);
    assert_string_equal(buf, "http://h/abc");
    /* the input need not be NUL-terminated */
    in.target = "/abcdef";
    in.target_len = 3;
    assert_int_equal(cache_key_build(&in, &p, buf, sizeof buf), 11);
    assert_string_equal(buf, "http://h/ab");
}

/* ---- Vary ---- */

static char varybuf[1024];

static const char *vary(const char *v, const struct cache_field *fields, size_t nfields)
{
    size_t need = cache_vary_key(v, strlen(v), fields, nfields, NULL, 0);
    size_t len = cache_vary_key(v, strlen(v), fields, nfields, varybuf, sizeof varybuf);

    assert_int_equal(need, len);
    assert_int_equal(strlen(varybuf), len);
    return varybuf;
}

static void test_vary_key(void **state)
{
    const struct cache_field fields[] = {
        F("Accept-Encoding", "GZip,  deflate"),
        F("Accept-Language", "en-GB"),
        F("Accept", "text/html"),
        F("X-Empty", ""),
        F("accept", "\t application/json  \t q=0.9 "),
    };

    (void)state;
    assert_string_equal(vary("Accept-Encoding", fields, 5), "accept-encoding=GZip, deflate\n");
    assert_string_equal(vary("Accept-Language, ACCEPT-ENCODING", fields, 5),
                        "accept-language=en-GB\naccept-encoding=GZip, deflate\n");
    assert_string_equal(vary("Accept", fields, 5), "accept=text/html, application/json q=0.9\n");
    /* each name once, in the order first listed */
    assert_string_equal(vary("accept-encoding, Accept-Language,Accept-Encoding", fields, 5),
                        "accept-encoding=GZip, deflate\naccept-language=en-GB\n");
    /* absent differs from empty */
    assert_string_equal(vary("X-Missing", fields, 5), "x-missing\n");
    assert_string_equal(vary("X-Empty", fields, 5), "x-empty=\n");
    /* "*" and empty elements are skipped */
    assert_string_equal(vary(" , *, X-Empty ,, ", fields, 5), "x-empty=\n");
    assert_string_equal(vary("", fields, 5), "");
    assert_string_equal(vary("*", fields, 5), "");
}

static void test_vary_value_normalisation(void **state)
{
    const struct cache_field a[] = {F("Accept-Encoding", "gzip, deflate")};
    const struct cache_field b[] = {F("Accept-Encoding", "gzip,\t \tdeflate ")};
    const struct cache_field c[] = {F("Accept-Encoding", "gzip"), F("Accept-Encoding", "deflate")};
    const struct cache_field d[] = {F("Accept-Encoding", "deflate, gzip")};
    const struct cache_field e[] = {F("Accept-Encoding", "")};
    const struct cache_field f[] = {F("Accept-Encoding", ""), F("Accept-Encoding", "br")};
    char ka[64];

    (void)state;
    strcpy(ka, vary("Accept-Encoding", a, 1));
    assert_string_equal(ka, "accept-encoding=gzip, deflate\n");
    assert_string_equal(vary("Accept-Encoding", b, 1), ka);
    assert_string_equal(vary("Accept-Encoding", c, 2), ka);
    assert_string_equal(vary("Accept-Encoding", d, 1), "accept-encoding=deflate, gzip\n");
    assert_string_equal(vary("Accept-Encoding", e, 1), "accept-encoding=\n");
    /* joined first, then trimmed: the separator of an empty first line stays */
    assert_string_equal(vary("Accept-Encoding", f, 2), "accept-encoding=, br\n");
}

static void test_vary_buffer(void **state)
{
    const struct cache_field fields[] = {F("Accept", "a/b")};
    char buf[8];

    (void)state;
    assert_int_equal(cache_vary_key("Accept", 6, fields, 1, NULL, 0), 11); /* "accept=a/b\n" */
    assert_int_equal(cache_vary_key("Accept", 6, fields, 1, buf, sizeof buf), 11);
    assert_string_equal(buf, "accept=");
    assert_int_equal(cache_vary_key("Accept, Vary", 6, fields, 1, buf, sizeof buf), 11);
}

static void test_vary_is_star(void **state)
{
    (void)state;
    assert_true(cache_vary_is_star("*", 1));
    assert_true(cache_vary_is_star(" * ", 3));
    assert_true(cache_vary_is_star("Accept, *", 9));
    assert_true(cache_vary_is_star(",*,", 3));
    assert_false(cache_vary_is_star("", 0));
    assert_false(cache_vary_is_star("Accept", 6));
    assert_false(cache_vary_is_star("**", 2));
    assert_false(cache_vary_is_star("x*", 2));
    assert_false(cache_vary_is_star("Accept, *", 7)); /* only the slice */
}

/* ---- hashes ---- */

static void test_hash64(void **state)
{
    const char *k = "http://example.com/";

    (void)state;
    /* the published XXH3 test vector for empty input, seed 0 */
    assert_true(cache_key_hash("", 0, 0) == UINT64_C(0x2D06800538D394C2));
    assert_true(cache_key_hash(k, strlen(k), 0) == UINT64_C(0xb97a010e03af1e2b));
    assert_true(cache_key_hash(k, strlen(k), 1) != cache_key_hash(k, strlen(k), 0));
    assert_true(cache_key_hash(k, strlen(k), 7) == cache_key_hash(k, strlen(k), 7));
    assert_true(cache_key_hash(k, strlen(k) - 1, 0) != cache_key_hash(k, strlen(k), 0));
}

static void test_hash128_hex(void **state)
{
    char out[33];
    const char *k = "http://example.com/";

    (void)state;
    memset(out, 'X', sizeof out);
    cache_key_hash128_hex("", 0, out);
    assert_string_equal(out, "99aa06d3014798d86001c324468d497f"); /* published vector */
    cache_key_hash128_hex(k, strlen(k), out);
    assert_string_equal(out, "42663426682770e605cd77c9b152d153");
    assert_int_equal(strlen(out), 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_normalisation),
        cmocka_unit_test(test_path_percent_encoding),
        cmocka_unit_test(test_path_not_otherwise_changed),
        cmocka_unit_test(test_target_raw_bytes),
        cmocka_unit_test(test_query_all),
        cmocka_unit_test(test_query_none),
        cmocka_unit_test(test_query_sorted),
        cmocka_unit_test(test_query_sorted_many),
        cmocka_unit_test(test_query_only_except),
        cmocka_unit_test(test_key_headers),
        cmocka_unit_test(test_key_cookies),
        cmocka_unit_test(test_key_all_parts),
        cmocka_unit_test(test_key_buffer),
        cmocka_unit_test(test_vary_key),
        cmocka_unit_test(test_vary_value_normalisation),
        cmocka_unit_test(test_vary_buffer),
        cmocka_unit_test(test_vary_is_star),
        cmocka_unit_test(test_hash64),
        cmocka_unit_test(test_hash128_hex),
    };

    return cmocka_run_group_tests_name("cache/key", tests, NULL, NULL);
}
