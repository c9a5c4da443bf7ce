/*
 * tests/unit/config/cache.c: the cache directives (config/cache.c): a
 * route's cache policy and its `key { ... }` block, and the top-level
 * `cache { memory SIZE; }` block.  Every default, every valid form and the
 * exact text of every error.  The route side of the memcached tier (`store`,
 * `coalesce cluster`) is here; the block itself is in memcached.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "tests/support/configtest.h"

#define LISTEN "listen 127.0.0.1:8080;\n"
#define APP "backend app { server 127.0.0.1:8000; }\n"
#define MEMCACHED "memcached { server 127.0.0.1:11211; }\n"

#define MIB (1024ull * 1024)
#define GIB (1024ull * 1024 * 1024)

/* ---- helpers ---- */

/* BODY as the inside of `route / { ... }`, starting at line 4, column 1. */
static const char *in_route(const char *body)
{
    static char text[4096];

    snprintf(text, sizeof text, LISTEN APP "route / {\n%s\n}\n", body);
    return text;
}

static struct config *load_route(const char *body)
{
    struct config *cfg = configtest_load(in_route(body));

    assert_int_equal(cfg->nroutes, 1);
    return cfg;
}

static void expect_route_error(const char *body, const char *msg)
{
    configtest_expect_error(in_route(body), msg);
}

/* As in_route, with a memcached block after the route (the block may come
 * after the routes that use it). */
static const char *in_route_memcached(const char *body)
{
    static char text[4096];

    snprintf(text, sizeof text, LISTEN APP "route / {\n%s\n}\n" MEMCACHED, body);
    return text;
}

static void expect_defaults(const struct config_cache_policy *p)
{
    assert_false(p->enabled);
    assert_int_equal(p->ttl_ms, 0);
    assert_false(p->ttl_override_set);
    assert_int_equal(p->ttl_override_ms, 0);
    assert_true(p->honor_cache_control);
    assert_int_equal(p->stale_while_revalidate_ms, 0);
    assert_int_equal(p->stale_if_error_ms, 0);
    assert_int_equal(p->max_object_size, 8 * MIB);
    assert_int_equal(p->methods, CACHE_METHOD_GET | CACHE_METHOD_HEAD);
    assert_int_equal(p->key_query, KEY_QUERY_ALL);
    assert_null(p->key_query_params);
    assert_int_equal(p->nkey_query_params, 0);
    assert_null(p->key_headers);
    assert_int_equal(p->nkey_headers, 0);
    assert_null(p->key_cookies);
    assert_int_equal(p->nkey_cookies, 0);
    assert_false(p->cache_cookies);
    assert_false(p->cache_authorized);
    assert_string_equal(p->tags_header, "Surrogate-Key");
    assert_int_equal(p->client_cc, CLIENT_CC_SAFE);
    assert_true(p->coalesce);
    assert_false(p->coalesce_cluster);
    assert_int_equal(p->coalesce_timeout_ms, 10000);
    assert_int_equal(p->max_variants, 16);
    assert_string_equal(p->status_header, "X-Cache");
    assert_int_equal(p->store, STORE_TIER_MEMORY); /* no memcached block */
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = configtest_load(LISTEN);
    assert_true(cfg->cache_memory == 256 * MIB);
    config_release(&cfg);

    /* every route, whatever its kind, with no cache directive at all */
    cfg = configtest_load(LISTEN APP
                          "route = / { backend app; }\nroute /a/ { backend app; }\n"
                          "route ~ x { backend app; host h; }\nroute default { backend app; }\n"
                          "cache { }\n");
    assert_int_equal(cfg->nroutes, 4);
    for (size_t i = 0; i < cfg->nroutes; i++)
        expect_defaults(&cfg->routes[i].cache);
    assert_true(cfg->cache_memory == 256 * MIB);
    config_release(&cfg);

    /* an empty key block changes nothing */
    cfg = load_route("backend app; cache on; key { }");
    assert_true(cfg->routes[0].cache.enabled);
    assert_int_equal(cfg->routes[0].cache.key_query, KEY_QUERY_ALL);
    config_release(&cfg);
}

/* ---- on|off directives ---- */

static void test_on_off(void **state)
{
    struct config *cfg;
    const struct config_cache_policy *p;

    (void)state;
    cfg = load_route("backend app; cache on; honor_cache_control off; cache_cookies on;\n"
                     "cache_authorized on; coalesce off;");
    p = &cfg->routes[0].cache;
    assert_true(p->enabled);
    assert_false(p->honor_cache_control);
    assert_true(p->cache_cookies);
    assert_true(p->cache_authorized);
    assert_false(p->coalesce);
    config_release(&cfg);

    cfg = load_route("backend app; cache off; honor_cache_control on; cache_cookies off;\n"
                     "cache_authorized off; coalesce on;");
    p = &cfg->routes[0].cache;
    assert_false(p->enabled);
    assert_true(p->honor_cache_control);
    assert_false(p->cache_cookies);
    assert_false(p->cache_authorized);
    assert_true(p->coalesce);
    config_release(&cfg);
}

static void test_revalidation_directives(void **state)
{
    struct config *cfg;
    const struct config_cache_policy *p;

    (void)state;
    cfg = load_route("backend app;");
    p = &cfg->routes[0].cache;
    assert_false(p->etag_generate);
    assert_true(p->conditional_pass);
    assert_int_equal(p->grace_ms, 0);
    config_release(&cfg);

    cfg = load_route("backend app; etag generate; conditional_pass off; grace 1h;");
    p = &cfg->routes[0].cache;
    assert_true(p->etag_generate);
    assert_false(p->conditional_pass);
    assert_int_equal(p->grace_ms, 3600 * 1000);
    config_release(&cfg);

    cfg = load_route("backend app; etag off; grace 0;");
    assert_false(cfg->routes[0].cache.etag_generate);
    config_release(&cfg);

    expect_route_error("backend app; etag strong;",
                       "t.conf:4:19: invalid value 'strong' for 'etag' (expected generate or off)");
    expect_route_error("conditional_pass maybe;",
                       "t.conf:4:18: invalid value 'maybe' for 'conditional_pass' (expected on "
                       "or off)");
}

static void test_on_off_errors(void **state)
{
    (void)state;
    expect_route_error("backend app; cache yes;",
                       "t.conf:4:20: invalid value 'yes' for 'cache' (expected on or off)");
    expect_route_error("cache ON; backend app;",
                       "t.conf:4:7: invalid value 'ON' for 'cache' (expected on or off)");
    expect_route_error("cache 1;",
                       "t.conf:4:7: invalid value '1' for 'cache' (expected on or off)");
    expect_route_error("honor_cache_control no;",
                       "t.conf:4:21: invalid value 'no' for 'honor_cache_control' (expected on or "
                       "off)");
    expect_route_error("cache_cookies true;",
                       "t.conf:4:15: invalid value 'true' for 'cache_cookies' (expected on or "
                       "off)");
    expect_route_error("cache_authorized '';",
                       "t.conf:4:18: invalid value '' for 'cache_authorized' (expected on or off)");
    expect_route_error("coalesce of;",
                       "t.conf:4:10: invalid value 'of' for 'coalesce' (expected on, off or "
                       "cluster)");
    expect_route_error("cache on;\n  cache off;",
                       "t.conf:5:3: duplicate 'cache' (first at t.conf:4:1)");
    expect_route_error("cache on off;", "t.conf:4:10: 'cache' takes 1 argument");
    expect_route_error("cache;", "t.conf:4:1: 'cache' takes 1 argument");
    expect_route_error("cache on { }", "t.conf:4:10: 'cache' does not take a block");
    expect_route_error("cache on\nbackend app;",
                       "t.conf:5:1: 'cache' takes 1 argument (missing ';' on line 4?)");
}

/* ---- durations ---- */

static void test_durations(void **state)
{
    struct config *cfg;
    const struct config_cache_policy *p;

    (void)state;
    cfg = load_route("backend app; cache on; ttl 30s; ttl_override 1h;\n"
                     "stale_while_revalidate 10s; stale_if_error 1d; coalesce_timeout 500ms;");
    p = &cfg->routes[0].cache;
    assert_int_equal(p->ttl_ms, 30000);
    assert_true(p->ttl_override_set);
    assert_int_equal(p->ttl_override_ms, 3600000);
    assert_int_equal(p->stale_while_revalidate_ms, 10000);
    assert_int_equal(p->stale_if_error_ms, 86400000);
    assert_int_equal(p->coalesce_timeout_ms, 500);
    config_release(&cfg);

    /* 0 is a value, not "unset"; ttl_override 0 is still given */
    cfg = load_route("backend app; ttl 0; ttl_override 0s; stale_while_revalidate 0;\n"
                     "stale_if_error 0ms; coalesce_timeout 1ms;");
    p = &cfg->routes[0].cache;
    assert_int_equal(p->ttl_ms, 0);
    assert_true(p->ttl_override_set);
    assert_int_equal(p->ttl_override_ms, 0);
    assert_int_equal(p->coalesce_timeout_ms, 1);
    config_release(&cfg);

    /* a bare number is seconds */
    cfg = load_route("backend app; ttl 60;");
    assert_int_equal(cfg->routes[0].cache.ttl_ms, 60000);
    config_release(&cfg);
}

/* Operators switch the cache off and on: the rest of the policy may stay. */
static void test_policy_without_cache_on(void **state)
{
    struct config *cfg;
    const struct config_cache_policy *p;

    (void)state;
    cfg = load_route("backend app; cache off; ttl 5m; ttl_override 10s; key { query none; }");
    p = &cfg->routes[0].cache;
    assert_false(p->enabled);
    assert_int_equal(p->ttl_ms, 300000);
    assert_int_equal(p->ttl_override_ms, 10000);
    assert_int_equal(p->key_query, KEY_QUERY_NONE);
    config_release(&cfg);

    cfg = load_route("backend app; ttl 5m; stale_if_error 1h;");
    p = &cfg->routes[0].cache;
    assert_false(p->enabled);
    assert_int_equal(p->ttl_ms, 300000);
    config_release(&cfg);

    /* cache on without cache_methods: both */
    cfg = load_route("backend app; cache on;");
    assert_int_equal(cfg->routes[0].cache.methods, CACHE_METHOD_GET | CACHE_METHOD_HEAD);
    config_release(&cfg);
}

static void test_duration_errors(void **state)
{
    (void)state;
    expect_route_error("ttl forever;", "t.conf:4:5: invalid duration 'forever' for 'ttl' "
                                       "(expected a number with optional ms, s, m, h or d)");
    expect_route_error("ttl -1;", "t.conf:4:5: invalid duration '-1' for 'ttl' (expected a "
                                  "number with optional ms, s, m, h or d)");
    expect_route_error("ttl_override 1m30s;",
                       "t.conf:4:14: invalid duration '1m30s' for 'ttl_override' (expected a "
                       "number with optional ms, s, m, h or d)");
    expect_route_error("stale_while_revalidate 1w;",
                       "t.conf:4:24: invalid duration '1w' for 'stale_while_revalidate' "
                       "(expected a number with optional ms, s, m, h or d)");
    expect_route_error("stale_if_error 1.5s;",
                       "t.conf:4:16: invalid duration '1.5s' for 'stale_if_error' (expected a "
                       "number with optional ms, s, m, h or d)");
    expect_route_error("coalesce_timeout x;",
                       "t.conf:4:18: invalid duration 'x' for 'coalesce_timeout' (expected a "
                       "number with optional ms, s, m, h or d)");
    expect_route_error("coalesce_timeout 0;",
                       "t.conf:4:18: 'coalesce_timeout' must be greater than 0");
    expect_route_error("coalesce_timeout 0ms;",
                       "t.conf:4:18: 'coalesce_timeout' must be greater than 0");
    expect_route_error("ttl 1s; ttl 2s;", "t.conf:4:9: duplicate 'ttl' (first at t.conf:4:1)");
    expect_route_error("ttl_override;", "t.conf:4:1: 'ttl_override' takes 1 argument");
}

/* ---- sizes and counts ---- */

static void test_max_object_size(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_route("backend app; max_object_size 1;");
    assert_int_equal(cfg->routes[0].cache.max_object_size, 1);
    config_release(&cfg);
    cfg = load_route("backend app; max_object_size 1g;");
    assert_true(cfg->routes[0].cache.max_object_size == GIB);
    config_release(&cfg);
    cfg = load_route("backend app; max_object_size 64K;");
    assert_int_equal(cfg->routes[0].cache.max_object_size, 64 * 1024);
    config_release(&cfg);
    cfg = load_route("backend app; max_object_size 1024m;");
    assert_true(cfg->routes[0].cache.max_object_size == GIB);
    config_release(&cfg);

    expect_route_error("max_object_size 0;", "t.conf:4:17: size '0' for 'max_object_size' is out "
                                             "of range (expected 1 to 1g)");
    expect_route_error("max_object_size 1073741825;",
                       "t.conf:4:17: size '1073741825' for 'max_object_size' is out of range "
                       "(expected 1 to 1g)");
    expect_route_error("max_object_size 2g;", "t.conf:4:17: size '2g' for 'max_object_size' is "
                                              "out of range (expected 1 to 1g)");
    expect_route_error("max_object_size 8mb;",
                       "t.conf:4:17: invalid size '8mb' for 'max_object_size' (expected a number "
                       "with optional k, m or g)");
}

static void test_max_variants(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_route("backend app; max_variants 1;");
    assert_int_equal(cfg->routes[0].cache.max_variants, 1);
    config_release(&cfg);
    cfg = load_route("backend app; max_variants 1024;");
    assert_int_equal(cfg->routes[0].cache.max_variants, 1024);
    config_release(&cfg);

    expect_route_error("max_variants 0;",
                       "t.conf:4:14: invalid number '0' for 'max_variants' (expected 1 to 1024)");
    expect_route_error("max_variants 1025;", "t.conf:4:14: invalid number '1025' for "
                                             "'max_variants' (expected 1 to 1024)");
    expect_route_error("max_variants many;", "t.conf:4:14: invalid number 'many' for "
                                             "'max_variants' (expected 1 to 1024)");
}

/* ---- cache_methods ---- */

static void test_cache_methods(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_route("backend app; cache_methods GET;");
    assert_int_equal(cfg->routes[0].cache.methods, CACHE_METHOD_GET);
    config_release(&cfg);
    cfg = load_route("backend app; cache_methods GET HEAD;");
    assert_int_equal(cfg->routes[0].cache.methods, CACHE_METHOD_GET | CACHE_METHOD_HEAD);
    config_release(&cfg);
    cfg = load_route("backend app; cache_methods HEAD GET;");
    assert_int_equal(cfg->routes[0].cache.methods, CACHE_METHOD_GET | CACHE_METHOD_HEAD);
    config_release(&cfg);
}

static void test_cache_methods_errors(void **state)
{
    (void)state;
    expect_route_error("cache_methods HEAD;", "t.conf:4:15: 'cache_methods' needs GET (a HEAD is "
                                              "answered from a GET's object)");
    expect_route_error("cache_methods HEAD HEAD;", "t.conf:4:20: duplicate cache method 'HEAD'");
    expect_route_error("cache_methods GET GET;", "t.conf:4:19: duplicate cache method 'GET'");
    expect_route_error("cache_methods get;",
                       "t.conf:4:15: invalid cache method 'get' (expected GET or HEAD)");
    expect_route_error("cache_methods GET POST;",
                       "t.conf:4:19: invalid cache method 'POST' (expected GET or HEAD)");
    expect_route_error("cache_methods GET HEAD POST;",
                       "t.conf:4:24: 'cache_methods' takes 1 or 2 arguments");
    expect_route_error("cache_methods;", "t.conf:4:1: 'cache_methods' takes 1 or 2 arguments");
}

/* ---- key { ... } ---- */

static void test_key_query(void **state)
{
    static const struct {
        const char *mode;
        enum key_query want;
    } plain[] = {
        {"all", KEY_QUERY_ALL},
        {"none", KEY_QUERY_NONE},
        {"sorted", KEY_QUERY_SORTED},
    };
    struct config *cfg;
    const struct config_cache_policy *p;
    char body[128];

    (void)state;
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        snprintf(body, sizeof body, "backend app; key { query %s; }", plain[i].mode);
        cfg = load_route(body);
        assert_int_equal(cfg->routes[0].cache.key_query, plain[i].want);
        assert_int_equal(cfg->routes[0].cache.nkey_query_params, 0);
        config_release(&cfg);
    }

    cfg = load_route("backend app; key { query only id page Page utm%5Fx; }");
    p = &cfg->routes[0].cache;
    assert_int_equal(p->key_query, KEY_QUERY_ONLY);
    assert_int_equal(p->nkey_query_params, 4);
    assert_string_equal(p->key_query_params[0], "id");
    assert_string_equal(p->key_query_params[1], "page");
    assert_string_equal(p->key_query_params[2], "Page"); /* as written */
    assert_string_equal(p->key_query_params[3], "utm%5Fx");
    config_release(&cfg);

    cfg = load_route("backend app; key {\n    query except utm_source;\n}");
    p = &cfg->routes[0].cache;
    assert_int_equal(p->key_query, KEY_QUERY_EXCEPT);
    assert_int_equal(p->nkey_query_params, 1);
    assert_string_equal(p->key_query_params[0], "utm_source");
    config_release(&cfg);
}

static void test_key_query_errors(void **state)
{
    (void)state;
    expect_route_error("key { query first; }",
                       "t.conf:4:13: invalid query mode 'first' (expected all, none, sorted, only "
                       "NAME... or except NAME...)");
    expect_route_error("key { query ALL; }",
                       "t.conf:4:13: invalid query mode 'ALL' (expected all, none, sorted, only "
                       "NAME... or except NAME...)");
    expect_route_error("key { query sorted id; }",
                       "t.conf:4:20: 'query sorted' takes no parameter names");
    expect_route_error("key { query none a b; }",
                       "t.conf:4:18: 'query none' takes no parameter names");
    expect_route_error("key { query only; }",
                       "t.conf:4:13: 'query only' needs at least one parameter name");
    expect_route_error("key { query except; }",
                       "t.conf:4:13: 'query except' needs at least one parameter name");
    expect_route_error("key { query only a a=1; }",
                       "t.conf:4:20: invalid query parameter name 'a=1' (expected printable ASCII "
                       "without spaces, '&', '=' or '#')");
    expect_route_error("key { query only 'a&b'; }",
                       "t.conf:4:18: invalid query parameter name 'a&b' (expected printable "
                       "ASCII without spaces, '&', '=' or '#')");
    expect_route_error("key { query only \"a b\"; }",
                       "t.conf:4:18: invalid query parameter name 'a b' (expected printable "
                       "ASCII without spaces, '&', '=' or '#')");
    expect_route_error("key { query only ''; }",
                       "t.conf:4:18: invalid query parameter name '' (expected printable ASCII "
                       "without spaces, '&', '=' or '#')");
    expect_route_error("key { query except \"x#\"; }",
                       "t.conf:4:20: invalid query parameter name 'x#' (expected printable ASCII "
                       "without spaces, '&', '=' or '#')");
    expect_route_error("key { query except id page id; }",
                       "t.conf:4:28: duplicate query parameter 'id' in the cache key");
    expect_route_error("key { query all; query none; }",
                       "t.conf:4:18: duplicate 'query' (first at t.conf:4:7)");
    expect_route_error("key { query; }", "t.conf:4:7: 'query' takes 1 to 64 arguments");
}

static void test_key_headers_and_cookies(void **state)
{
    struct config *cfg;
    const struct config_cache_policy *p;

    (void)state;
    cfg = load_route("backend app; key {\n"
                     "    header Accept-Encoding X-Device;\n"
                     "    cookie session Lang;\n"
                     "    header accept-language;\n"
                     "    cookie lang;\n"
                     "    query sorted;\n"
                     "}");
    p = &cfg->routes[0].cache;
    assert_int_equal(p->key_query, KEY_QUERY_SORTED);
    assert_int_equal(p->nkey_headers, 3);
    assert_string_equal(p->key_headers[0], "accept-encoding");
    assert_string_equal(p->key_headers[1], "x-device");
    assert_string_equal(p->key_headers[2], "accept-language");
    assert_int_equal(p->nkey_cookies, 3);
    assert_string_equal(p->key_cookies[0], "session");
    assert_string_equal(p->key_cookies[1], "Lang");
    assert_string_equal(p->key_cookies[2], "lang"); /* cookie names are case-sensitive */
    config_release(&cfg);

    cfg = load_route("backend app; key { header !#$%&'*+-.^_`|~09azAZ; cookie __Host-id; }");
    p = &cfg->routes[0].cache;
    assert_string_equal(p->key_headers[0], "!#$%&'*+-.^_`|~09azaz");
    assert_string_equal(p->key_cookies[0], "__Host-id");
    config_release(&cfg);
}

static void test_key_header_cookie_errors(void **state)
{
    char body[1024];
    size_t n;

    (void)state;
    expect_route_error("key { header X-A 'X B'; }",
                       "t.conf:4:18: invalid header name 'X B' for 'header' (expected a token: "
                       "letters, digits or !#$%&'*+-.^_`|~)");
    expect_route_error("key { header Host:; }",
                       "t.conf:4:14: invalid header name 'Host:' for 'header' (expected a token: "
                       "letters, digits or !#$%&'*+-.^_`|~)");
    expect_route_error("key { header ''; }",
                       "t.conf:4:14: invalid header name '' for 'header' (expected a token: "
                       "letters, digits or !#$%&'*+-.^_`|~)");
    expect_route_error("key { header \"X-\xc3\xa9\"; }",
                       "t.conf:4:14: invalid header name 'X-\xc3\xa9' for 'header' (expected a "
                       "token: letters, digits or !#$%&'*+-.^_`|~)");
    expect_route_error("key { header Accept; header X-A ACCEPT; }",
                       "t.conf:4:33: duplicate header 'accept' in the cache key");
    expect_route_error("key { cookie a=b; }",
                       "t.conf:4:14: invalid cookie name 'a=b' for 'cookie' (expected a token: "
                       "letters, digits or !#$%&'*+-.^_`|~)");
    expect_route_error("key { cookie 'a;b'; }",
                       "t.conf:4:14: invalid cookie name 'a;b' for 'cookie' (expected a token: "
                       "letters, digits or !#$%&'*+-.^_`|~)");
    expect_route_error("key { cookie sid;\n cookie sid; }",
                       "t.conf:5:9: duplicate cookie 'sid' in the cache key");
    expect_route_error("key { cookie; }", "t.conf:4:7: 'cookie' takes 1 to 64 arguments");
    expect_route_error("key { header; }", "t.conf:4:7: 'header' takes 1 to 64 arguments");

    /* 64 names on one line are fine, 65 are not */
    n = (size_t)snprintf(body, sizeof body, "backend app; key { header");
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(body + n, sizeof body - n, " h%02d", i);
    snprintf(body + n, sizeof body - n, "; }");
    {
        struct config *cfg = load_route(body);
        assert_int_equal(cfg->routes[0].cache.nkey_headers, 64);
        assert_string_equal(cfg->routes[0].cache.key_headers[63], "h63");
        config_release(&cfg);
    }
    snprintf(body + n, sizeof body - n, " h64; }");
    /* "backend app; key { header" is 25 bytes, each name 4: h64 is at 25 + 64 * 4 + 2 */
    expect_route_error(body, "t.conf:4:283: 'header' takes 1 to 64 arguments");
}

static void test_key_block_errors(void **state)
{
    (void)state;
    expect_route_error("key;", "t.conf:4:1: 'key' needs a '{ ... }' block");
    expect_route_error("key a { }", "t.conf:4:5: 'key' takes no arguments");
    expect_route_error("key { }\nkey { }",
                       "t.conf:5:1: duplicate 'key' block (first at t.conf:4:1)");
    expect_route_error("key { path on; }",
                       "t.conf:4:7: unknown directive 'path' in the key context");
    expect_route_error("key { ttl 1s; }",
                       "t.conf:4:7: directive 'ttl' is not allowed in the key context (only in: "
                       "route)");
    expect_route_error("header Accept;",
                       "t.conf:4:1: directive 'header' is not allowed in the route context (only "
                       "in: key)");
    expect_route_error("query all;",
                       "t.conf:4:1: directive 'query' is not allowed in the route context (only "
                       "in: key)");
    expect_route_error("key { header x { } }", "t.conf:4:16: 'header' does not take a block");
}

/* ---- header names and modes ---- */

static void test_header_names(void **state)
{
    struct config *cfg;
    const struct config_cache_policy *p;

    (void)state;
    cfg = load_route("backend app; tags_header Cache-Tag; cache_status_header X-Tessera-Cache;");
    p = &cfg->routes[0].cache;
    assert_string_equal(p->tags_header, "Cache-Tag"); /* as written: it names a response field */
    assert_string_equal(p->status_header, "X-Tessera-Cache");
    config_release(&cfg);

    cfg = load_route("backend app; cache_status_header off;");
    assert_null(cfg->routes[0].cache.status_header);
    assert_string_equal(cfg->routes[0].cache.tags_header, "Surrogate-Key");
    config_release(&cfg);

    expect_route_error("tags_header 'Cache Tag';",
                       "t.conf:4:13: invalid header name 'Cache Tag' for 'tags_header' (expected "
                       "a token: letters, digits or !#$%&'*+-.^_`|~)");
    expect_route_error("tags_header '';",
                       "t.conf:4:13: invalid header name '' for 'tags_header' (expected a token: "
                       "letters, digits or !#$%&'*+-.^_`|~)");
    expect_route_error("cache_status_header X-Cache:;",
                       "t.conf:4:21: invalid header name 'X-Cache:' for 'cache_status_header' "
                       "(expected a token: letters, digits or !#$%&'*+-.^_`|~)");
    expect_route_error("cache_status_header a b;",
                       "t.conf:4:23: 'cache_status_header' takes 1 argument");
    expect_route_error("tags_header a; tags_header b;",
                       "t.conf:4:16: duplicate 'tags_header' (first at t.conf:4:1)");
}

static void test_client_cache_control(void **state)
{
    static const struct {
        const char *mode;
        enum client_cache_control want;
    } modes[] = {
        {"safe", CLIENT_CC_SAFE},
        {"honor", CLIENT_CC_HONOR},
        {"ignore", CLIENT_CC_IGNORE},
    };
    struct config *cfg;
    char body[128];

    (void)state;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        snprintf(body, sizeof body, "backend app; client_cache_control %s;", modes[i].mode);
        cfg = load_route(body);
        assert_int_equal(cfg->routes[0].cache.client_cc, modes[i].want);
        config_release(&cfg);
    }
    expect_route_error("client_cache_control honour;",
                       "t.conf:4:22: invalid value 'honour' for 'client_cache_control' (expected "
                       "safe, honor or ignore)");
    expect_route_error("client_cache_control on;",
                       "t.conf:4:22: invalid value 'on' for 'client_cache_control' (expected "
                       "safe, honor or ignore)");
}

/* ---- the top-level cache block ---- */

static void test_cache_memory(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = configtest_load(LISTEN "cache { memory 1m; }");
    assert_true(cfg->cache_memory == MIB);
    config_release(&cfg);
    cfg = configtest_load(LISTEN "cache {\n    memory 64g;\n}\n");
    assert_true(cfg->cache_memory == 64 * GIB);
    config_release(&cfg);
    cfg = configtest_load(LISTEN "cache { memory 1536K; }");
    assert_true(cfg->cache_memory == 1536 * 1024);
    config_release(&cfg);
}

static void test_cache_memory_errors(void **state)
{
    (void)state;
    configtest_expect_error(
        LISTEN "cache { memory 1023k; }",
        "t.conf:2:16: size '1023k' for 'memory' is out of range (expected 1m to 64g)");
    configtest_expect_error(
        LISTEN "cache { memory 65g; }",
        "t.conf:2:16: size '65g' for 'memory' is out of range (expected 1m to 64g)");
    configtest_expect_error(
        LISTEN "cache { memory 0; }",
        "t.conf:2:16: size '0' for 'memory' is out of range (expected 1m to 64g)");
    configtest_expect_error(LISTEN "cache { memory 1t; }",
                            "t.conf:2:16: invalid size '1t' for 'memory' "
                            "(expected a number with optional k, m or g)");
    configtest_expect_error(LISTEN "cache { memory 1m; memory 2m; }",
                            "t.conf:2:20: duplicate 'memory' (first at t.conf:2:9)");
    configtest_expect_error(LISTEN "cache { }\ncache { memory 1m; }",
                            "t.conf:3:1: duplicate 'cache' block (first at t.conf:2:1)");
    configtest_expect_error(LISTEN "cache;", "t.conf:2:1: 'cache' needs a '{ ... }' block");
    configtest_expect_error(LISTEN "cache on;", "t.conf:2:7: 'cache' takes no arguments");
    configtest_expect_error(LISTEN "cache { disk 1g; }",
                            "t.conf:2:9: unknown directive 'disk' in the cache context");
    configtest_expect_error(
        LISTEN "cache { ttl 1s; }",
        "t.conf:2:9: directive 'ttl' is not allowed in the cache context (only in: "
        "route)");
    configtest_expect_error(
        LISTEN "memory 1m;",
        "t.conf:2:1: directive 'memory' is not allowed in the main context (only in: "
        "cache)");
    /* a route's `cache` is on|off, not the memory block */
    expect_route_error("backend app; cache { memory 1m; }",
                       "t.conf:4:14: 'cache' takes 1 argument");
}

/* ---- the memcached tier: store and coalesce cluster ---- */

static void test_store_default(void **state)
{
    struct config *cfg;

    (void)state;
    /* without a memcached block: memory, for every kind of route */
    cfg =
        configtest_load(LISTEN APP "route = / { backend app; }\nroute default { backend app; }\n");
    for (size_t i = 0; i < cfg->nroutes; i++)
        assert_int_equal(cfg->routes[i].cache.store, STORE_TIER_MEMORY);
    config_release(&cfg);

    /* with one, before or after the routes: both */
    cfg = configtest_load(LISTEN APP
                          "route = / { backend app; }\n" MEMCACHED
                          "route ~ x { backend app; cache on; }\nroute default { backend app; "
                          "}\n");
    assert_int_equal(cfg->nroutes, 3);
    for (size_t i = 0; i < cfg->nroutes; i++)
        assert_int_equal(cfg->routes[i].cache.store, STORE_TIER_BOTH);
    config_release(&cfg);

    cfg = configtest_load(in_route_memcached("backend app;"));
    assert_int_equal(cfg->routes[0].cache.store, STORE_TIER_BOTH);
    assert_false(cfg->routes[0].cache.coalesce_cluster);
    assert_true(cfg->routes[0].cache.coalesce);
    config_release(&cfg);
}

static void test_store(void **state)
{
    static const struct {
        const char *value;
        enum cache_store_tier tier;
    } tiers[] = {
        {"memory", STORE_TIER_MEMORY},
        {"memcached", STORE_TIER_MEMCACHED},
        {"both", STORE_TIER_BOTH},
    };
    char body[128];
    struct config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof tiers / sizeof tiers[0]; i++) {
        snprintf(body, sizeof body, "backend app; cache on; store %s;", tiers[i].value);
        cfg = configtest_load(in_route_memcached(body));
        assert_int_equal(cfg->routes[0].cache.store, tiers[i].tier);
        config_release(&cfg);
    }
    /* store memory needs no block, and stays memory when there is one */
    cfg = load_route("backend app; store memory;");
    assert_int_equal(cfg->routes[0].cache.store, STORE_TIER_MEMORY);
    config_release(&cfg);

    /* each route keeps its own tier; routes without store get the default */
    cfg = configtest_load(LISTEN APP MEMCACHED "route /a { backend app; store memory; }\n"
                                               "route /b { backend app; }\n"
                                               "route /c { backend app; store memcached; }\n");
    assert_int_equal(cfg->routes[0].cache.store, STORE_TIER_MEMORY);
    assert_int_equal(cfg->routes[1].cache.store, STORE_TIER_BOTH);
    assert_int_equal(cfg->routes[2].cache.store, STORE_TIER_MEMCACHED);
    config_release(&cfg);
}

static void test_store_errors(void **state)
{
    (void)state;
    expect_route_error("backend app; store memcached;",
                       "t.conf:4:14: 'store memcached' needs a memcached block");
    expect_route_error("backend app;\n  store both;",
                       "t.conf:5:3: 'store both' needs a memcached block");
    /* the first route that needs it, in file order */
    configtest_expect_error(LISTEN APP
                            "route /a { backend app; }\nroute /b { backend app; store both; }\n"
                            "route /c { backend app; store memcached; }\n",
                            "t.conf:4:25: 'store both' needs a memcached block");
    /* an empty memcached block is its own error, reported first */
    configtest_expect_error(LISTEN APP "route /a { backend app; store both; }\nmemcached { }\n",
                            "t.conf:4:1: memcached block needs a 'server' directive");
    expect_route_error("backend app; store disk;",
                       "t.conf:4:20: invalid value 'disk' for 'store' (expected memory, memcached "
                       "or both)");
    expect_route_error("backend app; store Memory;",
                       "t.conf:4:20: invalid value 'Memory' for 'store' (expected memory, "
                       "memcached or both)");
    expect_route_error("backend app; store '';",
                       "t.conf:4:20: invalid value '' for 'store' (expected memory, memcached or "
                       "both)");
    configtest_expect_error(in_route_memcached("backend app; store both;\nstore memory;"),
                            "t.conf:5:1: duplicate 'store' (first at t.conf:4:14)");
    expect_route_error("backend app; store memory both;", "t.conf:4:27: 'store' takes 1 argument");
    expect_route_error("backend app; store;", "t.conf:4:14: 'store' takes 1 argument");
    configtest_expect_error(
        LISTEN "store memory;",
        "t.conf:2:1: directive 'store' is not allowed in the main context (only in: "
        "route)");
    configtest_expect_error(LISTEN MEMCACHED "memcached { server a:1; }\n",
                            "t.conf:3:1: duplicate 'memcached' block (first at t.conf:2:1)");
}

static void test_coalesce_cluster(void **state)
{
    struct config *cfg;
    const struct config_cache_policy *p;

    (void)state;
    cfg = configtest_load(in_route_memcached("backend app; cache on; coalesce cluster;"));
    p = &cfg->routes[0].cache;
    assert_true(p->coalesce);
    assert_true(p->coalesce_cluster);
    assert_int_equal(p->coalesce_timeout_ms, 10000);
    config_release(&cfg);

    /* with a memcached block, on and off leave cluster off */
    cfg = configtest_load(in_route_memcached("backend app; coalesce on; coalesce_timeout 3s;"));
    p = &cfg->routes[0].cache;
    assert_true(p->coalesce);
    assert_false(p->coalesce_cluster);
    assert_int_equal(p->coalesce_timeout_ms, 3000);
    config_release(&cfg);

    cfg = configtest_load(in_route_memcached("backend app; coalesce off;"));
    p = &cfg->routes[0].cache;
    assert_false(p->coalesce);
    assert_false(p->coalesce_cluster);
    config_release(&cfg);

    /* cluster with the memory store alone is allowed: the lock lives in
     * memcached whatever the route stores there */
    cfg = configtest_load(in_route_memcached("backend app; store memory; coalesce cluster;"));
    p = &cfg->routes[0].cache;
    assert_true(p->coalesce_cluster);
    assert_int_equal(p->store, STORE_TIER_MEMORY);
    config_release(&cfg);
}

static void test_coalesce_cluster_errors(void **state)
{
    (void)state;
    expect_route_error("backend app; coalesce cluster;",
                       "t.conf:4:14: 'coalesce cluster' needs a memcached block");
    expect_route_error("backend app; store memory;\n coalesce cluster;",
                       "t.conf:5:2: 'coalesce cluster' needs a memcached block");
    expect_route_error("backend app; coalesce Cluster;",
                       "t.conf:4:23: invalid value 'Cluster' for 'coalesce' (expected on, off or "
                       "cluster)");
    configtest_expect_error(in_route_memcached("backend app; coalesce cluster; coalesce off;"),
                            "t.conf:4:32: duplicate 'coalesce' (first at t.conf:4:14)");
    expect_route_error("backend app; coalesce on cluster;",
                       "t.conf:4:26: 'coalesce' takes 1 argument");
}

/* ---- whole routes ---- */

static const char full_route[] = LISTEN APP "cache { memory 512m; }\n"
                                            "route /products/ {\n"
                                            "    backend app;\n"
                                            "    cache on;\n"
                                            "    ttl 30s;\n"
                                            "    ttl_override 1m;\n"
                                            "    honor_cache_control off;\n"
                                            "    stale_while_revalidate 5s;\n"
                                            "    stale_if_error 1h;\n"
                                            "    max_object_size 2m;\n"
                                            "    cache_methods GET;\n"
                                            "    key {\n"
                                            "        query except utm_source utm_medium;\n"
                                            "        header Accept-Language;\n"
                                            "        cookie currency;\n"
                                            "    }\n"
                                            "    cache_cookies on;\n"
                                            "    cache_authorized on;\n"
                                            "    tags_header xkey;\n"
                                            "    client_cache_control honor;\n"
                                            "    coalesce off;\n"
                                            "    coalesce_timeout 2s;\n"
                                            "    max_variants 4;\n"
                                            "    cache_status_header off;\n"
                                            "}\n"
                                            "route default { backend app; }\n";

static void test_full_route(void **state)
{
    struct config *cfg;
    const struct config_cache_policy *p;

    (void)state;
    cfg = configtest_load(full_route);
    assert_true(cfg->cache_memory == 512 * MIB);
    assert_int_equal(cfg->nroutes, 2);
    p = &cfg->routes[0].cache;
    assert_true(p->enabled);
    assert_int_equal(p->ttl_ms, 30000);
    assert_true(p->ttl_override_set);
    assert_int_equal(p->ttl_override_ms, 60000);
    assert_false(p->honor_cache_control);
    assert_int_equal(p->stale_while_revalidate_ms, 5000);
    assert_int_equal(p->stale_if_error_ms, 3600000);
    assert_int_equal(p->max_object_size, 2 * MIB);
    assert_int_equal(p->methods, CACHE_METHOD_GET);
    assert_int_equal(p->key_query, KEY_QUERY_EXCEPT);
    assert_int_equal(p->nkey_query_params, 2);
    assert_string_equal(p->key_query_params[1], "utm_medium");
    assert_int_equal(p->nkey_headers, 1);
    assert_string_equal(p->key_headers[0], "accept-language");
    assert_int_equal(p->nkey_cookies, 1);
    assert_string_equal(p->key_cookies[0], "currency");
    assert_true(p->cache_cookies);
    assert_true(p->cache_authorized);
    assert_string_equal(p->tags_header, "xkey");
    assert_int_equal(p->client_cc, CLIENT_CC_HONOR);
    assert_false(p->coalesce);
    assert_int_equal(p->coalesce_timeout_ms, 2000);
    assert_int_equal(p->max_variants, 4);
    assert_null(p->status_header);
    expect_defaults(&cfg->routes[1].cache);
    config_release(&cfg);
}

static void test_errors_free_everything(void **state)
{
    char text[sizeof full_route + 128];
    char err[512];

    (void)state;
    /* An error after every kind of cache allocation, in a later route and in
     * the same route (run under valgrind/ASan). */
    snprintf(text, sizeof text, "%sbogus;\n", full_route);
    assert_null(config_load_string("t.conf", text, err, sizeof err));
    assert_string_equal(err, "t.conf:29:1: unknown directive 'bogus' in the main context");
    snprintf(text, sizeof text,
             "%sroute /x { backend app; tags_header a; key { header a b; cookie c; query only "
             "q; header a; } }\n",
             full_route);
    assert_null(config_load_string("t.conf", text, err, sizeof err));
    assert_string_equal(err, "t.conf:29:89: duplicate header 'a' in the cache key");
    snprintf(text, sizeof text, "%sroute /x { backend nope; cache_status_header S; }\n",
             full_route);
    assert_null(config_load_string("t.conf", text, err, sizeof err));
    assert_string_equal(err, "t.conf:29:20: unknown backend 'nope'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_on_off),
        cmocka_unit_test(test_on_off_errors),
        cmocka_unit_test(test_revalidation_directives),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_policy_without_cache_on),
        cmocka_unit_test(test_duration_errors),
        cmocka_unit_test(test_max_object_size),
        cmocka_unit_test(test_max_variants),
        cmocka_unit_test(test_cache_methods),
        cmocka_unit_test(test_cache_methods_errors),
        cmocka_unit_test(test_key_query),
        cmocka_unit_test(test_key_query_errors),
        cmocka_unit_test(test_key_headers_and_cookies),
        cmocka_unit_test(test_key_header_cookie_errors),
        cmocka_unit_test(test_key_block_errors),
        cmocka_unit_test(test_header_names),
        cmocka_unit_test(test_client_cache_control),
        cmocka_unit_test(test_cache_memory),
        cmocka_unit_test(test_cache_memory_errors),
        cmocka_unit_test(test_store_default),
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_store_errors),
        cmocka_unit_test(test_coalesce_cluster),
        cmocka_unit_test(test_coalesce_cluster_errors),
        cmocka_unit_test(test_full_route),
        cmocka_unit_test(test_errors_free_everything),
    };

    return cmocka_run_group_tests_name("config/cache", tests, NULL, NULL);
}
