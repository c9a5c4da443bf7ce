/* tests/unit/proxy/buf.c: growable buffers (proxy/buf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "proxy/buf.h"

static void test_append_consume_compact(void **state)
{
    (void)state;
    struct buf b = {0};
    buf_append_str(&b, "hello ");
    buf_appendf(&b, "%s %d", "world", 42);
    assert_int_equal(buf_pending(&b), 14);
    assert_memory_equal(b.data, "hello world 42", 14);
    buf_consume(&b, 6);
    assert_int_equal(buf_pending(&b), 8);
    assert_memory_equal(b.data + b.off, "world 42", 8);
    buf_compact(&b);
    assert_int_equal(b.off, 0);
    assert_memory_equal(b.data, "world 42", 8);
    buf_consume(&b, 8);
    assert_int_equal(b.len, 0); /* fully consumed resets */
    assert_false(b.oom);
    buf_release(&b);
    assert_null(b.data);
}

static void test_growth_keeps_bytes(void **state)
{
    (void)state;
    struct buf b = {0};
    char block[1000];
    for (int i = 0; i < 1000; i++) {
        memset(block, 'a' + i % 26, sizeof block);
        buf_append(&b, block, sizeof block);
    }
    assert_int_equal(b.len, 1000000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(b.data[i * 1000 + 999], 'a' + i % 26);
    buf_release(&b);
}

static void test_appendf_too_long_is_sticky_error(void **state)
{
    (void)state;
    struct buf b = {0};
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    buf_appendf(&b, "%s", big);
    assert_true(b.oom);
    buf_append_str(&b, "later");
    assert_int_equal(b.len, 0);
    buf_reset(&b);
    assert_false(b.oom);
    buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_consume_compact),
        cmocka_unit_test(test_growth_keeps_bytes),
        cmocka_unit_test(test_appendf_too_long_is_sticky_error),
    };
    return cmocka_run_group_tests_name("proxy/buf", tests, NULL, NULL);
}
