/*
 * tests/integration/proxy_basic.c: tessera as a plain streaming reverse
 * proxy: keep-alive, pipelining, framing both ways, HEAD, 1xx, forwarded
 * fields, bounded memory for huge bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/expect.h"
#include "tests/support/harness.h"

static struct harness h;

static int group_setup(void **state)
{
    (void)state;
    if (!harness_init(&h, "proxy-basic") || !harness_origin(&h, 0, NULL))
        return -1;
    return harness_tessera(&h,
                           "backend app { server 127.0.0.1:%d; keepalive 8; }\n"
                           "route default { backend app; }\n",
                           h.origin_port[0])
               ? 0
               : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    harness_free(&h);
    return 0;
}

static void test_get_through_tessera(void **state)
{
    (void)state;
    struct http_response r = {0};
    expect_ok(http_get(h.port, "/hello", &r, NULL));
    expect_status(&r, 200);
    expect_body(&r, "hello from origin /hello\n");
    expect_header(&r, "Via", "1.1 tessera");
    http_response_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_through_tessera),
    };
    return cmocka_run_group_tests_name("proxy_basic", tests, group_setup, group_teardown);
}
