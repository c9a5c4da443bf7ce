/*
 * tests/unit/config/esi.c: the ESI directives of a route (config/esi.c):
 * every default, on every kind of route; every valid form of each
 * directive; that routes keep their own settings; and the exact text of
 * every error.
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

static const char *const default_types[] = {"text/html", "application/xhtml+xml"};

#define NDEFAULT_TYPES (sizeof default_types / sizeof default_types[0])

/* ---- helpers ---- */

/* BODY inside a route, starting at line 5, column 1. */
static const char *in_route(const char *body)
{
    static char text[4096];

    snprintf(text, sizeof text, LISTEN APP "route / {\nbackend app;\n%s\n}\n", body);
    return text;
}

static struct config *load_route(const char *body)
{
    struct config *cfg = configtest_load(in_route(body));

    assert_int_equal(cfg->nroutes, 1);
    return cfg;
}

static void expect_error(const char *body, const char *msg)
{
    configtest_expect_error(in_route(body), msg);
}

static void expect_list(char *const *list, size_t n, const char *const *want, size_t nwant)
{
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(list[i], want[i]);
}

static void expect_defaults(const struct config_esi *e)
{
    assert_int_equal(e->mode, ESI_OFF);
    expect_list(e->types, e->ntypes, default_types, NDEFAULT_TYPES);
    assert_int_equal(e->max_depth, 3);
    assert_int_equal(e->max_includes, 32);
    assert_int_equal(e->timeout_ms, 10 * 1000);
    assert_int_equal(e->head_wait_ms, 10 * 1000);
    assert_null(e->allow_hosts);
    assert_int_equal(e->nallow_hosts, 0);
    assert_false(e->cookies);
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    struct config *cfg;

    (void)state;
    /* every kind of route, the default one too, and each with its own
     * copy of the default types */
    cfg = configtest_load(LISTEN APP
                          "route = / { backend app; }\nroute /a/ { backend app; }\n"
                          "route ~ x { backend app; host h; }\nroute default { backend app; }\n");
    assert_int_equal(cfg->nroutes, 4);
    for (size_t i = 0; i < cfg->nroutes; i++)
        expect_defaults(&cfg->routes[i].esi);
    assert_ptr_not_equal(cfg->routes[0].esi.types, cfg->routes[1].esi.types);
    assert_ptr_not_equal(cfg->routes[0].esi.types[0], cfg->routes[1].esi.types[0]);
    config_release(&cfg);

    /* the other directives of a route leave them alone */
    cfg = load_route("cache on;\ncompress { off; }");
    expect_defaults(&cfg->routes[0].esi);
    config_release(&cfg);
}

/* ---- each directive ---- */

static void test_mode(void **state)
{
    static const struct {
        const char *body;
        enum esi_mode mode;
    } cases[] = {
        {"esi on;", ESI_ON},
        {"esi off;", ESI_OFF},
        {"esi auto;", ESI_AUTO},
        {"esi \"auto\";", ESI_AUTO},
    };
    struct config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cfg = load_route(cases[i].body);
        assert_int_equal(cfg->routes[0].esi.mode, cases[i].mode);
        config_release(&cfg);
    }
}

static void test_types(void **state)
{
    static const char *const listed[] = {"text/html", "text/*", "application/vnd.api+json"};
    static const char *const one[] = {"application/xml"};
    struct config *cfg;

    (void)state;
    /* stored lower-case; the list replaces the defaults */
    cfg = load_route("esi_types TEXT/Html text/* Application/VND.api+json;");
    expect_list(cfg->routes[0].esi.types, cfg->routes[0].esi.ntypes, listed, 3);
    config_release(&cfg);

    cfg = load_route("esi_types \"application/xml\";");
    expect_list(cfg->routes[0].esi.types, cfg->routes[0].esi.ntypes, one, 1);
    config_release(&cfg);
}

static void test_numbers(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_route("esi_max_depth 1;\nesi_max_includes 1;\nesi_timeout 1ms;");
    assert_int_equal(cfg->routes[0].esi.max_depth, 1);
    assert_int_equal(cfg->routes[0].esi.max_includes, 1);
    assert_int_equal(cfg->routes[0].esi.timeout_ms, 1);
    config_release(&cfg);

    cfg = load_route("esi_max_depth 10;\nesi_max_includes 256;\nesi_timeout 1h;");
    assert_int_equal(cfg->routes[0].esi.max_depth, 10);
    assert_int_equal(cfg->routes[0].esi.max_includes, 256);
    assert_int_equal(cfg->routes[0].esi.timeout_ms, 60 * 60 * 1000);
    config_release(&cfg);

    /* a bare number is seconds */
    cfg = load_route("esi_timeout 30;");
    assert_int_equal(cfg->routes[0].esi.timeout_ms, 30 * 1000);
    config_release(&cfg);

    cfg = load_route("esi_timeout 60m;");
    assert_int_equal(cfg->routes[0].esi.timeout_ms, 60 * 60 * 1000);
    config_release(&cfg);

    /* esi_head_wait: 0 (never wait) to 1m */
    cfg = load_route("esi_head_wait 0;");
    assert_int_equal(cfg->routes[0].esi.head_wait_ms, 0);
    config_release(&cfg);
    cfg = load_route("esi_head_wait 1m;");
    assert_int_equal(cfg->routes[0].esi.head_wait_ms, 60 * 1000);
    config_release(&cfg);
    cfg = load_route("esi_head_wait 200ms;");
    assert_int_equal(cfg->routes[0].esi.head_wait_ms, 200);
    config_release(&cfg);
}

static void test_allow_hosts(void **state)
{
    static const char *const hosts[] = {"a.example", "cdn-1.example.com", "10.0.0.1", "localhost",
                                        "x1"};
    struct config *cfg;

    (void)state;
    cfg = load_route("esi_allow_hosts A.Example cdn-1.EXAMPLE.com 10.0.0.1 localhost \"x1\";");
    expect_list(cfg->routes[0].esi.allow_hosts, cfg->routes[0].esi.nallow_hosts, hosts, 5);
    config_release(&cfg);

    /* a label of 63 characters */
    cfg = load_route("esi_allow_hosts "
                     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example;");
    assert_int_equal(cfg->routes[0].esi.nallow_hosts, 1);
    config_release(&cfg);
}

static void test_cookies(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_route("esi_cookies on;");
    assert_true(cfg->routes[0].esi.cookies);
    config_release(&cfg);

    cfg = load_route("esi_cookies off;");
    assert_false(cfg->routes[0].esi.cookies);
    config_release(&cfg);
}

static void test_all_together(void **state)
{
    static const char *const types[] = {"text/html"};
    static const char *const hosts[] = {"frag.example"};
    struct config *cfg;
    const struct config_esi *e;

    (void)state;
    cfg = load_route("esi auto;\nesi_types text/html;\nesi_max_depth 2;\nesi_max_includes 8;\n"
                     "esi_timeout 500ms;\nesi_allow_hosts frag.example;\nesi_cookies on;");
    e = &cfg->routes[0].esi;
    assert_int_equal(e->mode, ESI_AUTO);
    expect_list(e->types, e->ntypes, types, 1);
    assert_int_equal(e->max_depth, 2);
    assert_int_equal(e->max_includes, 8);
    assert_int_equal(e->timeout_ms, 500);
    expect_list(e->allow_hosts, e->nallow_hosts, hosts, 1);
    assert_true(e->cookies);
    config_release(&cfg);
}

/* ---- routes keep their own settings ---- */

static void test_routes_independent(void **state)
{
    static const char *const types_a[] = {"text/*"};
    static const char *const hosts_b[] = {"b.example"};
    struct config *cfg;
    const struct config_esi *a, *b;

    (void)state;
    cfg = configtest_load(LISTEN APP
                          "route /a/ { backend app; esi on; esi_types text/*; esi_max_depth 5; }\n"
                          "route /b/ { backend app; esi auto; esi_allow_hosts b.example; "
                          "esi_cookies on; esi_timeout 2s; }\n"
                          "route default { backend app; }\n");
    assert_int_equal(cfg->nroutes, 3);
    a = &cfg->routes[0].esi;
    b = &cfg->routes[1].esi;
    assert_int_equal(a->mode, ESI_ON);
    expect_list(a->types, a->ntypes, types_a, 1);
    assert_int_equal(a->max_depth, 5);
    assert_int_equal(a->timeout_ms, 10 * 1000);
    assert_int_equal(a->nallow_hosts, 0);
    assert_false(a->cookies);
    assert_int_equal(b->mode, ESI_AUTO);
    expect_list(b->types, b->ntypes, default_types, NDEFAULT_TYPES);
    assert_int_equal(b->max_depth, 3);
    assert_int_equal(b->timeout_ms, 2000);
    expect_list(b->allow_hosts, b->nallow_hosts, hosts_b, 1);
    assert_true(b->cookies);
    expect_defaults(&cfg->routes[2].esi);
    config_release(&cfg);
}

/* ---- errors ---- */

static void test_mode_errors(void **state)
{
    (void)state;
    expect_error("esi yes;",
                 "t.conf:5:5: invalid value 'yes' for 'esi' (expected on, off or auto)");
    expect_error("esi ON;", "t.conf:5:5: invalid value 'ON' for 'esi' (expected on, off or auto)");
    expect_error("esi;", "t.conf:5:1: 'esi' takes 1 argument");
    expect_error("esi on auto;", "t.conf:5:8: 'esi' takes 1 argument");
    expect_error("esi on\nesi_cookies on;",
                 "t.conf:6:1: 'esi' takes 1 argument (missing ';' on line 5?)");
    expect_error("esi on;\nesi off;", "t.conf:6:1: duplicate 'esi' (first at t.conf:5:1)");
    expect_error("esi on { }", "t.conf:5:8: 'esi' does not take a block");
}

static void test_types_errors(void **state)
{
    (void)state;
    expect_error("esi_types text;", "t.conf:5:11: invalid media type 'text' for 'esi_types' "
                                    "(expected TYPE/SUBTYPE or TYPE/*, without parameters)");
    expect_error("esi_types text/html */*;",
                 "t.conf:5:21: invalid media type '*/*' for 'esi_types' (expected "
                 "TYPE/SUBTYPE or TYPE/*, without parameters)");
    expect_error("esi_types text/*html;",
                 "t.conf:5:11: invalid media type 'text/*html' for 'esi_types' (expected "
                 "TYPE/SUBTYPE or TYPE/*, without parameters)");
    expect_error("esi_types \"text/html; charset=utf-8\";",
                 "t.conf:5:11: invalid media type 'text/html; charset=utf-8' for 'esi_types' "
                 "(expected TYPE/SUBTYPE or TYPE/*, without parameters)");
    expect_error("esi_types '';", "t.conf:5:11: invalid media type '' for 'esi_types' (expected "
                                  "TYPE/SUBTYPE or TYPE/*, without parameters)");
    /* duplicates are compared without case */
    expect_error("esi_types text/html TEXT/HTML;",
                 "t.conf:5:21: duplicate type 'text/html' in 'esi_types'");
    expect_error("esi_types;", "t.conf:5:1: 'esi_types' takes 1 to 64 arguments");
    expect_error("esi_types text/html;\nesi_types text/xml;",
                 "t.conf:6:1: duplicate 'esi_types' (first at t.conf:5:1)");
}

static void test_number_errors(void **state)
{
    (void)state;
    expect_error("esi_max_depth 0;",
                 "t.conf:5:15: invalid number '0' for 'esi_max_depth' (expected 1 to 10)");
    expect_error("esi_max_depth 11;",
                 "t.conf:5:15: invalid number '11' for 'esi_max_depth' (expected 1 to 10)");
    expect_error("esi_max_depth -1;",
                 "t.conf:5:15: invalid number '-1' for 'esi_max_depth' (expected 1 to 10)");
    expect_error("esi_max_includes 0;",
                 "t.conf:5:18: invalid number '0' for 'esi_max_includes' (expected 1 to 256)");
    expect_error("esi_max_includes 257;",
                 "t.conf:5:18: invalid number '257' for 'esi_max_includes' (expected 1 to 256)");
    expect_error("esi_max_includes 1k;",
                 "t.conf:5:18: invalid number '1k' for 'esi_max_includes' (expected 1 to 256)");
    expect_error("esi_head_wait 61s;",
                 "t.conf:5:15: duration '61s' for 'esi_head_wait' is out of range (expected 0 to "
                 "1m)");
    expect_error("esi_timeout 0;",
                 "t.conf:5:13: duration '0' for 'esi_timeout' is out of range (expected 1ms to "
                 "1h)");
    expect_error("esi_timeout 3600001ms;",
                 "t.conf:5:13: duration '3600001ms' for 'esi_timeout' is out of range (expected "
                 "1ms to 1h)");
    expect_error("esi_timeout 2h;",
                 "t.conf:5:13: duration '2h' for 'esi_timeout' is out of range (expected 1ms to "
                 "1h)");
    expect_error("esi_timeout soon;",
                 "t.conf:5:13: invalid duration 'soon' for 'esi_timeout' (expected a number with "
                 "optional ms, s, m, h or d)");
    expect_error("esi_max_depth;", "t.conf:5:1: 'esi_max_depth' takes 1 argument");
    expect_error("esi_max_includes 1 2;", "t.conf:5:20: 'esi_max_includes' takes 1 argument");
    expect_error("esi_timeout 1s 2s;", "t.conf:5:16: 'esi_timeout' takes 1 argument");
    expect_error("esi_max_depth 2;\nesi_max_depth 2;",
                 "t.conf:6:1: duplicate 'esi_max_depth' (first at t.conf:5:1)");
}

static void test_allow_hosts_errors(void **state)
{
    (void)state;
    expect_error("esi_allow_hosts a.example b.example:8080;",
                 "t.conf:5:27: invalid host 'b.example:8080' for 'esi_allow_hosts' (expected a "
                 "host name or an IPv4 address, without a port; IPv6 addresses are not allowed)");
    expect_error("esi_allow_hosts [::1];",
                 "t.conf:5:17: invalid host '[::1]' for 'esi_allow_hosts' (expected a host name "
                 "or an IPv4 address, without a port; IPv6 addresses are not allowed)");
    expect_error("esi_allow_hosts http://a.example;",
                 "t.conf:5:17: invalid host 'http://a.example' for 'esi_allow_hosts' (expected "
                 "a host name, not a URL or a path)");
    expect_error("esi_allow_hosts a.example/x;",
                 "t.conf:5:17: invalid host 'a.example/x' for 'esi_allow_hosts' (expected a "
                 "host name, not a URL or a path)");
    expect_error("esi_allow_hosts user@a.example;",
                 "t.conf:5:17: invalid host 'user@a.example' for 'esi_allow_hosts' (expected a "
                 "host name, without user info)");
    expect_error("esi_allow_hosts *.example;",
                 "t.conf:5:17: invalid host '*.example' for 'esi_allow_hosts' (wildcards are "
                 "not allowed; list each host)");
    expect_error("esi_allow_hosts a_b.example;",
                 "t.conf:5:17: invalid host 'a_b.example' for 'esi_allow_hosts' (expected a "
                 "host name or an IPv4 address: letters, digits, '-' and '.')");
    expect_error("esi_allow_hosts '';",
                 "t.conf:5:17: invalid host '' for 'esi_allow_hosts' (expected a host name or "
                 "an IPv4 address)");
    expect_error("esi_allow_hosts a..example;",
                 "t.conf:5:17: invalid host 'a..example' for 'esi_allow_hosts' (each "
                 "dot-separated label is 1 to 63 characters)");
    expect_error("esi_allow_hosts .example;",
                 "t.conf:5:17: invalid host '.example' for 'esi_allow_hosts' (each "
                 "dot-separated label is 1 to 63 characters)");
    expect_error("esi_allow_hosts example.;",
                 "t.conf:5:17: invalid host 'example.' for 'esi_allow_hosts' (each "
                 "dot-separated label is 1 to 63 characters)");
    expect_error("esi_allow_hosts "
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example;",
                 "t.conf:5:17: invalid host "
                 "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example' for "
                 "'esi_allow_hosts' (each dot-separated label is 1 to 63 characters)");
    expect_error("esi_allow_hosts -a.example;",
                 "t.conf:5:17: invalid host '-a.example' for 'esi_allow_hosts' (a label must "
                 "not start or end with '-')");
    expect_error("esi_allow_hosts a-.example;",
                 "t.conf:5:17: invalid host 'a-.example' for 'esi_allow_hosts' (a label must "
                 "not start or end with '-')");
    expect_error("esi_allow_hosts 10.0.0.256;",
                 "t.conf:5:17: invalid host '10.0.0.256' for 'esi_allow_hosts' (not a valid "
                 "IPv4 address)");
    expect_error("esi_allow_hosts 10.0.1;",
                 "t.conf:5:17: invalid host '10.0.1' for 'esi_allow_hosts' (not a valid IPv4 "
                 "address)");
    /* duplicates are compared without case */
    expect_error("esi_allow_hosts a.example b.example A.EXAMPLE;",
                 "t.conf:5:37: duplicate host 'a.example' in 'esi_allow_hosts'");
    expect_error("esi_allow_hosts;", "t.conf:5:1: 'esi_allow_hosts' takes 1 to 64 arguments");
    expect_error("esi_allow_hosts a.example;\nesi_allow_hosts b.example;",
                 "t.conf:6:1: duplicate 'esi_allow_hosts' (first at t.conf:5:1)");
}

static void test_host_too_long(void **state)
{
    char body[512], msg[768], host[300];
    size_t n = 0;

    (void)state;
    /* 254 characters in labels of 63 and 62: RFC 1035 2.3.4 allows 253 */
    for (int i = 0; i < 4; i++) {
        size_t len = i < 3 ? 63 : 62;
        memset(host + n, 'a', len);
        n += len;
        host[n++] = '.';
    }
    host[n - 1] = '\0';
    assert_int_equal(strlen(host), 254);
    snprintf(body, sizeof body, "esi_allow_hosts %s;", host);
    snprintf(msg, sizeof msg,
             "t.conf:5:17: invalid host '%s' for 'esi_allow_hosts' (longer than 253 characters)",
             host);
    expect_error(body, msg);
}

static void test_cookies_errors(void **state)
{
    (void)state;
    expect_error("esi_cookies yes;",
                 "t.conf:5:13: invalid value 'yes' for 'esi_cookies' (expected on or off)");
    expect_error("esi_cookies;", "t.conf:5:1: 'esi_cookies' takes 1 argument");
    expect_error("esi_cookies on off;", "t.conf:5:16: 'esi_cookies' takes 1 argument");
    expect_error("esi_cookies on;\nesi_cookies on;",
                 "t.conf:6:1: duplicate 'esi_cookies' (first at t.conf:5:1)");
}

static void test_contexts(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN "esi on;\n", "t.conf:2:1: directive 'esi' is not allowed in the "
                                                "main context (only in: route)");
    configtest_expect_error(LISTEN APP "compress { esi_types text/html; }\n",
                            "t.conf:3:12: directive 'esi_types' is not allowed in the compress "
                            "context (only in: route)");
    configtest_expect_error(LISTEN "backend app { server 127.0.0.1:8000; esi_cookies on; }\n",
                            "t.conf:2:38: directive 'esi_cookies' is not allowed in the backend "
                            "context (only in: route)");
}

/* An error after every kind of allocation, in a later route and at the
 * end of the file (run under valgrind/ASan). */
static void test_errors_free_everything(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN APP
                            "route /a/ { backend app; esi_types text/html text/xml; "
                            "esi_allow_hosts a.example b.example; }\n"
                            "route /b/ { backend app; esi_types a/b; esi_allow_hosts c d E D; }\n",
                            "t.conf:4:63: duplicate host 'd' in 'esi_allow_hosts'");
    configtest_expect_error(LISTEN APP "route /a/ { backend app; esi_types text/html; "
                                       "esi_allow_hosts a.example; }\n"
                                       "route /b/ { backend nope; }\n",
                            "t.conf:4:21: unknown backend 'nope'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),      cmocka_unit_test(test_mode),
        cmocka_unit_test(test_types),         cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_allow_hosts),   cmocka_unit_test(test_cookies),
        cmocka_unit_test(test_all_together),  cmocka_unit_test(test_routes_independent),
        cmocka_unit_test(test_mode_errors),   cmocka_unit_test(test_types_errors),
        cmocka_unit_test(test_number_errors), cmocka_unit_test(test_allow_hosts_errors),
        cmocka_unit_test(test_host_too_long), cmocka_unit_test(test_cookies_errors),
        cmocka_unit_test(test_contexts),      cmocka_unit_test(test_errors_free_everything),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
