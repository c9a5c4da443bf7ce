/* tests/unit/proxy/http.c: the pure HTTP head rules of proxy/http.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "proxy/http.h"

/* Build a head from "Name: value" lines over one base string. */
struct fixture {
    char base[1024];
    struct http_head head;
};

static void head_from(struct fixture *f, const char *method, unsigned minor, const char **lines)
{
    memset(f, 0, sizeof *f);
    size_t len = 0;
    size_t mlen = strlen(method);
    memcpy(f->base, method, mlen);
    f->head.method = (struct http_span){0, (uint32_t)mlen};
    len = mlen;
    f->head.major = 1;
    f->head.minor = (uint8_t)minor;
    for (; *lines; lines++) {
        const char *colon = strchr(*lines, ':');
        struct http_field *fld = http_head_add_field(&f->head);
        size_t nlen = (size_t)(colon - *lines);
        memcpy(f->base + len, *lines, strlen(*lines));
        fld->name = (struct http_span){(uint32_t)len, (uint32_t)nlen};
        fld->value = http_span_trim(
            f->base, (struct http_span){(uint32_t)(len + nlen + 1), (uint32_t)(strlen(colon + 1))});
        len += strlen(*lines);
    }
}

static void test_list_has_token(void **state)
{
    (void)state;
    const char *v = "keep-alive, Upgrade ,, x-foo";
    assert_true(http_list_has_token(v, strlen(v), "upgrade", 7));
    assert_true(http_list_has_token(v, strlen(v), "KEEP-ALIVE", 10));
    assert_true(http_list_has_token(v, strlen(v), "x-foo", 5));
    assert_false(http_list_has_token(v, strlen(v), "x-fo", 4));
    assert_false(http_list_has_token("", 0, "close", 5));
}

static void test_hop_by_hop(void **state)
{
    (void)state;
    assert_true(http_is_hop_by_hop("Connection", 10));
    assert_true(http_is_hop_by_hop("keep-alive", 10));
    assert_true(http_is_hop_by_hop("TE", 2));
    assert_true(http_is_hop_by_hop("Transfer-Encoding", 17));
    assert_true(http_is_hop_by_hop("Proxy-Connection", 16));
    assert_true(http_is_hop_by_hop("Upgrade", 7));
    assert_true(http_is_hop_by_hop("Trailer", 7));
    assert_false(http_is_hop_by_hop("Trailers", 8));
    assert_false(http_is_hop_by_hop("Content-Type", 12));
}

static void test_forwardable_follows_connection(void **state)
{
    (void)state;
    struct fixture f;
    const char *lines[] = {"Connection: close, X-Secret", "X-Secret: 1", "X-Public: 2",
                           "Content-Length: 5", NULL};
    head_from(&f, "GET", 1, lines);
    assert_false(http_field_forwardable(f.base, &f.head, &f.head.fields[0]));
    assert_false(http_field_forwardable(f.base, &f.head, &f.head.fields[1]));
    assert_true(http_field_forwardable(f.base, &f.head, &f.head.fields[2]));
    assert_false(http_field_forwardable(f.base, &f.head, &f.head.fields[3]));
    http_head_free(&f.head);
}

static void expect_line_verdict(const char *head, int status, const char *reason)
{
    struct http_verdict v = http_check_line_endings(head, strlen(head));
    assert_int_equal(v.status, status);
    if (reason)
        assert_string_equal(v.reason, reason);
}

static void test_line_endings(void **state)
{
    (void)state;
    expect_line_verdict("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, NULL);
    expect_line_verdict("GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare LF in request head");
    expect_line_verdict("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, "bare CR in request head");
    expect_line_verdict("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400,
                        "obsolete line folding in request head");
    expect_line_verdict("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", 400,
                        "obsolete line folding in request head");
    /* Only the head is checked: a body may hold anything. */
    expect_line_verdict("POST / HTTP/1.1\r\nHost: a\r\n\r\nbody\nwith\rbare", 0, NULL);
}

static int check(const char *method, unsigned minor, const char **lines)
{
    struct fixture f;
    head_from(&f, method, minor, lines);
    int status = http_check_request(f.base, &f.head).status;
    http_head_free(&f.head);
    return status;
}

static void test_check_request(void **state)
{
    (void)state;
    const char *ok[] = {"Host: a", NULL};
    const char *nohost[] = {"Accept: */*", NULL};
    const char *twohosts[] = {"Host: a", "Host: b", NULL};
    const char *emptyhost[] = {"Host:", NULL};
    const char *te[] = {"Host: a", "Transfer-Encoding: chunked", NULL};
    const char *te_cl[] = {"Host: a", "Transfer-Encoding: chunked", "Content-Length: 3", NULL};
    const char *te_gzip[] = {"Host: a", "Transfer-Encoding: gzip, chunked", NULL};
    const char *te_twice[] = {"Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked",
                              NULL};
    const char *space_name[] = {"Host: a", "X-Foo : b", NULL};
    assert_int_equal(check("GET", 1, ok), 0);
    assert_int_equal(check("GET", 1, nohost), 400);
    assert_int_equal(check("GET", 0, nohost), 0); /* HTTP/1.0 may omit Host */
    assert_int_equal(check("GET", 1, twohosts), 400);
    assert_int_equal(check("GET", 0, twohosts), 400);
    assert_int_equal(check("GET", 1, emptyhost), 400);
    assert_int_equal(check("POST", 1, te), 0);
    assert_int_equal(check("POST", 0, te), 400);
    assert_int_equal(check("POST", 1, te_cl), 400);
    assert_int_equal(check("POST", 1, te_gzip), 501);
    assert_int_equal(check("POST", 1, te_twice), 501);
    assert_int_equal(check("GET", 1, space_name), 400);
    assert_int_equal(check("CONNECT", 1, ok), 405);
}

static void test_token(void **state)
{
    (void)state;
    assert_true(http_is_token("X-Foo_bar.1~", 12));
    assert_false(http_is_token("X Foo", 5));
    assert_false(http_is_token("X:", 2));
    assert_false(http_is_token("", 0));
}

static void test_status_has_body(void **state)
{
    (void)state;
    assert_true(http_status_has_body(200, false));
    assert_false(http_status_has_body(200, true));
    assert_false(http_status_has_body(204, false));
    assert_false(http_status_has_body(304, false));
    assert_false(http_status_has_body(100, false));
    assert_true(http_status_has_body(404, false));
}

static void test_date_format(void **state)
{
    (void)state;
    char out[30];
    assert_int_equal(http_date_format(784111777, out), 29);
    assert_string_equal(out, "Sun, 06 Nov 1994 08:49:37 GMT"); /* RFC 9110 5.6.7 */
    http_date_format(0, out);
    assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 GMT");
}

static void test_reason_phrase(void **state)
{
    (void)state;
    assert_string_equal(http_reason_phrase(431), "Request Header Fields Too Large");
    assert_string_equal(http_reason_phrase(413), "Content Too Large");
    assert_string_equal(http_reason_phrase(799), "Unknown");
}

static void test_find_and_count(void **state)
{
    (void)state;
    struct fixture f;
    const char *lines[] = {"Host: a", "X-A:  one  ", "x-a: two", NULL};
    head_from(&f, "GET", 1, lines);
    const struct http_field *fld = http_head_find(f.base, &f.head, "X-a");
    assert_non_null(fld);
    assert_true(http_span_is(f.base, fld->value, "one"));
    assert_int_equal(http_head_count(f.base, &f.head, "x-A"), 2);
    assert_null(http_head_find(f.base, &f.head, "X-B"));
    http_head_free(&f.head);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_has_token),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_forwardable_follows_connection),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_check_request),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_status_has_body),
        cmocka_unit_test(test_date_format),
        cmocka_unit_test(test_reason_phrase),
        cmocka_unit_test(test_find_and_count),
    };
    return cmocka_run_group_tests_name("proxy/http", tests, NULL, NULL);
}
