/* tests/unit/proxy/forward.c: the heads tessera forwards (proxy/forward.c):
 * hop-by-hop removal, X-Forwarded-*, Via, framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "proxy/forward.h"

static char base[2048];

static void head_from(struct http_head *h, const char *start, const char **lines)
{
    memset(h, 0, sizeof *h);
    size_t len = strlen(start);
    memcpy(base, start, len);
    h->major = 1;
    h->minor = 1;
    for (; *lines; lines++) {
        const char *colon = strchr(*lines, ':');
        struct http_field *f = http_head_add_field(h);
        size_t nlen = (size_t)(colon - *lines);
        memcpy(base + len, *lines, strlen(*lines));
        f->name = (struct http_span){(uint32_t)len, (uint32_t)nlen};
        f->value = http_span_trim(
            base, (struct http_span){(uint32_t)(len + nlen + 1), (uint32_t)strlen(colon + 1)});
        len += strlen(*lines);
    }
}

static char *built(struct buf *b)
{
    buf_append(b, "", 1);
    return b->data;
}

static void test_request_head(void **state)
{
    (void)state;
    struct http_head h;
    const char *lines[] = {"Host: shop.example",
                           "Connection: keep-alive, X-Hop",
                           "X-Hop: 1",
                           "Keep-Alive: timeout=5",
                           "TE: trailers",
                           "Upgrade: websocket",
                           "Proxy-Connection: keep-alive",
                           "X-Forwarded-For: 10.0.0.1",
                           "X-Forwarded-For: 10.0.0.2",
                           "X-Forwarded-Proto: https",
                           "X-Forwarded-Host: evil.example",
                           "Accept: text/html",
                           "Content-Length: 3",
                           NULL};
    head_from(&h, "POST", lines);
    h.method = (struct http_span){0, 4};
    struct forward_request fr = {
        .target = "/cart?x=1",
        .target_len = 9,
        .host = "shop.example",
        .host_len = 12,
        .client_addr = "192.0.2.7",
        .proto = "http",
        .framing = FRAMING_LENGTH,
        .length = 3,
    };
    struct buf out = {0};
    forward_request_head(&out, base, &h, &fr);
    assert_string_equal(built(&out), "POST /cart?x=1 HTTP/1.1\r\n"
                                     "Host: shop.example\r\n"
                                     "Accept: text/html\r\n"
                                     "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\n"
                                     "X-Forwarded-Proto: http\r\n"
                                     "X-Forwarded-Host: shop.example\r\n"
                                     "Via: 1.1 tessera\r\n"
                                     "Content-Length: 3\r\n"
                                     "\r\n");
    buf_release(&out);
    http_head_free(&h);
}

static void test_request_chunked_and_close(void **state)
{
    (void)state;
    struct http_head h;
    const char *lines[] = {"Host: a", "Transfer-Encoding: chunked", NULL};
    head_from(&h, "PUT", lines);
    h.method = (struct http_span){0, 3};
    h.minor = 0;
    struct forward_request fr = {
        .target = "/",
        .target_len = 1,
        .host = "a",
        .host_len = 1,
        .client_addr = "::1",
        .proto = "http",
        .framing = FRAMING_CHUNKED,
        .close = true,
    };
    struct buf out = {0};
    forward_request_head(&out, base, &h, &fr);
    assert_string_equal(built(&out), "PUT / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: ::1\r\n"
                                     "X-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\n"
                                     "Via: 1.0 tessera\r\nTransfer-Encoding: chunked\r\n"
                                     "Connection: close\r\n\r\n");
    buf_release(&out);
    http_head_free(&h);
}

static void test_response_head(void **state)
{
    (void)state;
    struct http_head h;
    const char *lines[] = {"Content-Type: text/html",
                           "Transfer-Encoding: chunked",
                           "Connection: X-Internal",
                           "X-Internal: secret",
                           "Via: 1.1 app",
                           "Set-Cookie: a=1",
                           NULL};
    head_from(&h, "Not Found", lines);
    h.status = 404;
    h.reason = (struct http_span){0, 9};
    struct forward_response fr = {.framing = FRAMING_CHUNKED,
                                  .date = "Sun, 06 Nov 1994 08:49:37 GMT"};
    struct buf out = {0};
    forward_response_head(&out, base, &h, &fr);
    assert_string_equal(built(&out), "HTTP/1.1 404 Not Found\r\n"
                                     "Content-Type: text/html\r\n"
                                     "Via: 1.1 app\r\n"
                                     "Set-Cookie: a=1\r\n"
                                     "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                                     "Via: 1.1 tessera\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n");
    buf_release(&out);
    http_head_free(&h);
}

static void test_response_keeps_date_and_sets_length(void **state)
{
    (void)state;
    struct http_head h;
    const char *lines[] = {"Date: Mon, 07 Nov 1994 08:49:37 GMT", "Content-Length: 12", NULL};
    head_from(&h, "", lines);
    h.status = 200;
    struct forward_response fr = {.framing = FRAMING_LENGTH,
                                  .length = 12,
                                  .close = true,
                                  .date = "Sun, 06 Nov 1994 08:49:37 GMT"};
    struct buf out = {0};
    forward_response_head(&out, base, &h, &fr);
    assert_string_equal(built(&out), "HTTP/1.1 200 OK\r\n"
                                     "Date: Mon, 07 Nov 1994 08:49:37 GMT\r\n"
                                     "Via: 1.1 tessera\r\n"
                                     "Content-Length: 12\r\n"
                                     "Connection: close\r\n\r\n");
    buf_release(&out);
    http_head_free(&h);
}

static void test_response_keep_alive_for_http10(void **state)
{
    (void)state;
    struct http_head h;
    const char *lines[] = {NULL};
    head_from(&h, "", lines);
    h.status = 304;
    struct forward_response fr = {.framing = FRAMING_NONE, .keep_alive_10 = true};
    struct buf out = {0};
    forward_response_head(&out, base, &h, &fr);
    assert_string_equal(built(&out), "HTTP/1.1 304 Not Modified\r\nVia: 1.1 tessera\r\n"
                                     "Connection: keep-alive\r\n\r\n");
    buf_release(&out);
    http_head_free(&h);
}

static void test_interim(void **state)
{
    (void)state;
    struct http_head h;
    const char *lines[] = {"Link: </s.css>; rel=preload", NULL};
    head_from(&h, "", lines);
    h.status = 103;
    struct buf out = {0};
    forward_interim_head(&out, base, &h);
    assert_string_equal(built(&out),
                        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n");
    buf_release(&out);
    http_head_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_head),
        cmocka_unit_test(test_request_chunked_and_close),
        cmocka_unit_test(test_response_head),
        cmocka_unit_test(test_response_keeps_date_and_sets_length),
        cmocka_unit_test(test_response_keep_alive_for_http10),
        cmocka_unit_test(test_interim),
    };
    return cmocka_run_group_tests_name("proxy/forward", tests, NULL, NULL);
}
