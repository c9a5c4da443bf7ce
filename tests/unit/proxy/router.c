/* tests/unit/proxy/router.c: route choice order (proxy/router.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "proxy/router.h"

static const char conf[] =
    "listen 127.0.0.1:0;\n"
    "backend a { server 127.0.0.1:1; }\n"
    "route /static/ { backend a; }\n"                /* 0 */
    "route ~ \\.json$ { backend a; }\n"              /* 1 */
    "route = /static/exact { backend a; }\n"         /* 2: exact wins over the earlier prefix */
    "route /api/ { backend a; host api.example; }\n" /* 3 */
    "route /api/ { backend a; }\n"                   /* 4 */
    "route ~ ^/static/.*\\.css$ { backend a; }\n"    /* 5: after the prefix, never chosen */
    "route default { backend a; }\n";                /* 6 */

static struct config *cfg;

static int setup(void **state)
{
    (void)state;
    char err[512];
    cfg = config_load_string("router.conf", conf, err, sizeof err);
    if (!cfg)
        fprintf(stderr, "%s\n", err);
    return cfg ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    config_release(&cfg);
    router_thread_cleanup();
    return 0;
}

static int route_of(const char *host, const char *path)
{
    const struct config_route *r =
        router_match(cfg, host, host ? strlen(host) : 0, path, strlen(path));
    return r ? (int)r->index : -1;
}

static void test_exact_first(void **state)
{
    (void)state;
    assert_int_equal(route_of("x", "/static/exact"), 2);
    assert_int_equal(route_of("x", "/static/exactly"), 0);
}

static void test_file_order_among_prefix_and_regex(void **state)
{
    (void)state;
    assert_int_equal(route_of("x", "/static/site.css"), 0);
    assert_int_equal(route_of("x", "/static/data.json"), 0);
    assert_int_equal(route_of("x", "/data/x.json"), 1);
}

static void test_host_routes(void **state)
{
    (void)state;
    assert_int_equal(route_of("api.example", "/api/v1"), 3);
    assert_int_equal(route_of("API.Example:8080", "/api/v1"), 3);
    assert_int_equal(route_of("api.example.", "/api/v1"), 3);
    assert_int_equal(route_of("www.example", "/api/v1"), 4);
    assert_int_equal(route_of(NULL, "/api/v1"), 4);
}

static void test_default(void **state)
{
    (void)state;
    assert_int_equal(route_of("x", "/"), 6);
    assert_int_equal(route_of("x", "/stat"), 6);
}

static void test_no_default_means_no_route(void **state)
{
    (void)state;
    char err[512];
    struct config *c = config_load_string(
        "nodefault.conf",
        "listen 127.0.0.1:0; backend a { server 127.0.0.1:1; } route /x/ { backend a; }", err,
        sizeof err);
    assert_non_null(c);
    assert_null(router_match(c, "h", 1, "/y", 2));
    assert_non_null(router_match(c, "h", 1, "/x/1", 4));
    config_release(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_first),
        cmocka_unit_test(test_file_order_among_prefix_and_regex),
        cmocka_unit_test(test_host_routes),
        cmocka_unit_test(test_default),
        cmocka_unit_test(test_no_default_means_no_route),
    };
    return cmocka_run_group_tests_name("proxy/router", tests, setup, teardown);
}
