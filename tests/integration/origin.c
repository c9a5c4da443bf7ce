/*
 * origin: the test origin and the client library check each other.  The
 * origin runs alone (no tessera); every scripted behaviour the proxy tests
 * rely on is exercised here through tests/support/client.h, so a failure in
 * a proxy test can be blamed on the proxy.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "tests/support/client.h"
#include "tests/support/expect.h"
#include "tests/support/pattern.h"
#include "tests/support/proc.h"
#include "tests/support/tmpdir.h"

struct group {
    struct tmpdir *td;
    struct proc *origin;
    struct proc *extra; /* a second process some tests start; freed by their teardown */
};

static int group_setup(void **state)
{
    struct group *g = calloc(1, sizeof(*g));
    if (g == NULL || (g->td = tmpdir_create("origin")) == NULL)
        return -1;
    *state = g;
    g->origin = proc_start_origin(g->td, "origin", NULL);
    return g->origin ? 0 : -1;
}

static int group_teardown(void **state)
{
    struct group *g = *state;
    /* a clean exit on SIGTERM; under ASan this also means no leak */
    int status = g->origin ? proc_stop(g->origin, 5000) : 0;
    if (status != 0)
        fprintf(stderr, "origin exited with status %d, see %s\n", status, g->origin->err_path);
    proc_free(&g->extra);
    proc_free(&g->origin);
    tmpdir_free(&g->td);
    free(g);
    return status == 0 ? 0 : -1;
}

static int stop_extra(void **state)
{
    struct group *g = *state;
    proc_free(&g->extra);
    return 0;
}

static int port_of(void **state)
{
    return ((struct group *)*state)->origin->port;
}

static long elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000L + (now.tv_nsec - since->tv_nsec) / 1000000L;
}

static void test_default_body(void **state)
{
    struct http_response r;
    char port[16];
    snprintf(port, sizeof(port), "%d", port_of(state));

    expect_ok(http_get(port_of(state), "/hello", &r, NULL));
    expect_status(&r, 200);
    expect_body(&r, "hello from origin /hello\n");
    expect_header(&r, "Content-Length", "25");
    expect_header(&r, "Content-Type", "text/plain");
    expect_header(&r, "X-Origin-Port", port);
    expect_header(&r, "X-Origin-Seq", "1");
    expect_header(&r, "X-Origin-Body-Length", "0");
    assert_non_null(http_response_header(&r, "Date"));
    assert_non_null(http_response_header(&r, "X-Origin-Conn"));
    http_response_clear(&r);
}

static void test_len_gives_the_pattern(void **state)
{
    struct http_response r;
    expect_ok(http_get(port_of(state), "/p?len=100000", &r, NULL));
    expect_header(&r, "Content-Length", "100000");
    expect_pattern_body(&r, 100000, 0);
    http_response_clear(&r);
}

static void test_chunked_with_trailer(void **state)
{
    struct http_response r;
    expect_ok(
        http_get(port_of(state), "/c?len=20000&chunked=1&chunk=1000&trailer=X-Check:ok", &r, NULL));
    assert_true(r.chunked);
    expect_header(&r, "Transfer-Encoding", "chunked");
    expect_no_header(&r, "Content-Length");
    expect_pattern_body(&r, 20000, 0);
    expect_trailer(&r, "X-Check", "ok");
    http_response_clear(&r);
}

static void test_chunk_sizes_on_the_wire(void **state)
{
    struct client *c = client_connect(port_of(state), CLIENT_TIMEOUT_MS);
    char raw[4096] = "";
    size_t n = 0;
    assert_non_null(c);
    assert_int_equal(client_send_request(c, "GET", "/w?len=30&chunked=1&chunk=10&close=0", NULL),
                     0);
    while (strstr(raw, "0\r\n\r\n") == NULL && n < sizeof(raw) - 1) {
        ssize_t got = client_read_raw(c, raw + n, sizeof(raw) - 1 - n, CLIENT_TIMEOUT_MS);
        assert_true(got > 0);
        n += (size_t)got;
        raw[n] = '\0';
    }
    const char *body = strstr(raw, "\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + 4,
                        "a\r\nabcdefghij\r\na\r\nklmnopqrst\r\na\r\nuvwxyzabcd\r\n0\r\n\r\n");
    client_free(&c);
}

static void test_close_delimited(void **state)
{
    struct client *c = client_connect(port_of(state), CLIENT_TIMEOUT_MS);
    struct http_response r;
    assert_non_null(c);
    assert_int_equal(client_send_request(c, "GET", "/cl?close=1&len=5000", NULL), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_no_header(&r, "Content-Length");
    expect_no_header(&r, "Transfer-Encoding");
    expect_header(&r, "Connection", "close");
    expect_pattern_body(&r, 5000, 0);
    assert_true(r.closed);
    assert_true(client_expect_closed(c, CLIENT_TIMEOUT_MS));
    http_response_clear(&r);
    client_free(&c);
}

static void test_head_has_get_headers_and_no_body(void **state)
{
    struct client *c = client_connect(port_of(state), CLIENT_TIMEOUT_MS);
    struct http_response r;
    assert_non_null(c);
    assert_int_equal(client_send_request(c, "HEAD", "/h?len=5000", NULL), 0);
    expect_ok(client_read_response(c, CLIENT_HEAD, &r, CLIENT_TIMEOUT_MS));
    expect_header(&r, "Content-Length", "5000");
    assert_int_equal(r.body_len, 0);
    http_response_clear(&r);
    /* had a body followed the HEAD response, this would not parse */
    assert_int_equal(client_send_request(c, "GET", "/after-head", NULL), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_header(&r, "X-Origin-Seq", "2");
    expect_body(&r, "hello from origin /after-head\n");
    http_response_clear(&r);
    client_free(&c);
}

static void test_echo_returns_head_and_decoded_chunked_body(void **state)
{
    struct client *c = client_connect(port_of(state), CLIENT_TIMEOUT_MS);
    struct http_response r;
    const char head[] = "POST /e?echo=1 HTTP/1.1\r\nHost: origin\r\n"
                        "Transfer-Encoding: chunked\r\nX-Test:  spaced \r\n\r\n";
    assert_non_null(c);
    assert_int_equal(client_sendf(c, "%s5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", head), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_header(&r, "X-Origin-Body-Length", "11");
    char expected[256];
    snprintf(expected, sizeof(expected), "%shello world", head);
    expect_body(&r, expected);
    http_response_clear(&r);
    client_free(&c);
}

static void test_100_continue(void **state)
{
    struct client *c = client_connect(port_of(state), CLIENT_TIMEOUT_MS);
    struct http_response r;
    assert_non_null(c);
    assert_int_equal(
        client_send_request(c, "PUT", "/up", "Expect: 100-continue", "Content-Length: 5", NULL), 0);
    expect_ok(client_read_response(c, CLIENT_INTERIM, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 100);
    http_response_clear(&r);
    assert_int_equal(client_send(c, "hello", 5), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    expect_header(&r, "X-Origin-Body-Length", "5");
    http_response_clear(&r);

    /* continue=0: no interim response, the origin just waits for the body */
    assert_int_equal(client_send_request(c, "PUT", "/up?continue=0", "Expect: 100-continue",
                                         "Content-Length: 5", NULL),
                     0);
    assert_int_equal(client_read_response(c, CLIENT_INTERIM, &r, 300), CLIENT_TIMEOUT);
    http_response_clear(&r);
    assert_int_equal(client_send(c, "hello", 5), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    assert_int_equal(r.ninterim, 0);
    http_response_clear(&r);
    client_free(&c);
}

static void test_interim_is_skipped_by_default(void **state)
{
    struct client *c = client_connect(port_of(state), CLIENT_TIMEOUT_MS);
    struct http_response r;
    assert_non_null(c);
    assert_int_equal(client_sendf(c, "POST /x HTTP/1.1\r\nHost: o\r\nExpect: 100-continue\r\n"
                                     "Content-Length: 3\r\n\r\nabc"),
                     0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    assert_int_equal(r.ninterim, 1);
    assert_int_equal(r.interim[0], 100);
    http_response_clear(&r);
    client_free(&c);
}

static void test_pipelined_requests_answered_in_order(void **state)
{
    struct client *c = client_connect(port_of(state), CLIENT_TIMEOUT_MS);
    struct http_response r;
    char conn[32] = "";
    assert_non_null(c);
    assert_int_equal(client_sendf(c, "GET /p1?len=70000 HTTP/1.1\r\nHost: o\r\n\r\n"
                                     "GET /p2 HTTP/1.1\r\nHost: o\r\n\r\n"
                                     "GET /p3?chunked=1 HTTP/1.1\r\nHost: o\r\n\r\n"),
                     0);
    for (int i = 1; i <= 3; i++) {
        char seq[8], body[64];
        expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
        snprintf(seq, sizeof(seq), "%d", i);
        expect_header(&r, "X-Origin-Seq", seq);
        if (i == 1) {
            expect_pattern_body(&r, 70000, 0);
            snprintf(conn, sizeof(conn), "%s", http_response_header(&r, "X-Origin-Conn"));
        } else {
            snprintf(body, sizeof(body), "hello from origin /p%d\n", i);
            expect_body(&r, body);
            expect_header(&r, "X-Origin-Conn", conn);
        }
        http_response_clear(&r);
    }
    client_free(&c);
}

static void expect_count(int port, const char *target, const char *body)
{
    struct http_response r;
    expect_ok(http_get(port, target, &r, NULL));
    expect_body(&r, body);
    http_response_clear(&r);
}

static void test_count_last_and_reset(void **state)
{
    int port = port_of(state);
    struct http_response r;
    expect_count(port, "/__reset", "ok\n");
    for (int i = 0; i < 3; i++) {
        expect_ok(http_get(port, "/counted?i=1", &r, "X-Mark: m", NULL));
        http_response_clear(&r);
    }
    expect_ok(http_get(port, "/other", &r, NULL));
    http_response_clear(&r);

    expect_count(port, "/__count?path=/counted", "3\n");
    expect_count(port, "/__count?path=%2Fother", "1\n");
    expect_count(port, "/__count?path=/never", "0\n");
    expect_count(port, "/__count", "4\n"); /* /__* requests are not counted */
    expect_ok(http_get(port, "/__last?path=/counted", &r, NULL));
    assert_non_null(r.body);
    assert_non_null(strstr(r.body, "GET /counted?i=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(r.body, "X-Mark: m\r\n"));
    assert_true(r.body_len > 4 && memcmp(r.body + r.body_len - 4, "\r\n\r\n", 4) == 0);
    http_response_clear(&r);
    expect_count(port, "/__reset", "ok\n");
    expect_count(port, "/__count?path=/counted", "0\n");
    expect_count(port, "/__count", "0\n");
}

static void test_abort_cuts_the_body(void **state)
{
    struct http_response r;
    assert_int_equal(http_get(port_of(state), "/a?len=100000&abort=5000", &r, NULL), CLIENT_EOF);
    expect_status(&r, 200);
    assert_false(r.complete);
    expect_pattern_body(&r, 5000, 0);
    http_response_clear(&r);

    assert_int_equal(http_get(port_of(state), "/a?len=100000&abort=5000&chunked=1", &r, NULL),
                     CLIENT_EOF);
    assert_false(r.complete);
    expect_pattern_body(&r, 5000, 0);
    http_response_clear(&r);
}

static void test_keep_alive_reuses_the_connection(void **state)
{
    struct client *c = client_connect(port_of(state), CLIENT_TIMEOUT_MS);
    struct http_response r1, r2, r3;
    assert_non_null(c);
    assert_int_equal(client_send_request(c, "GET", "/k1", NULL), 0);
    expect_ok(client_read_response(c, 0, &r1, CLIENT_TIMEOUT_MS));
    assert_false(r1.closed);
    assert_int_equal(client_send_request(c, "GET", "/k2", NULL), 0);
    expect_ok(client_read_response(c, 0, &r2, CLIENT_TIMEOUT_MS));
    expect_header(&r2, "X-Origin-Conn", http_response_header(&r1, "X-Origin-Conn"));
    expect_header(&r1, "X-Origin-Seq", "1");
    expect_header(&r2, "X-Origin-Seq", "2");
    expect_ok(http_get(port_of(state), "/k3", &r3, NULL));
    assert_string_not_equal(http_response_header(&r3, "X-Origin-Conn"),
                            http_response_header(&r1, "X-Origin-Conn"));
    http_response_clear(&r1);
    http_response_clear(&r2);
    http_response_clear(&r3);
    client_free(&c);
}

static void test_status_headers_and_type(void **state)
{
    struct http_response r;
    expect_ok(http_get(port_of(state),
                       "/s?status=404&hdr=X-A:b&hdr=X-A:c&hdr=Cache-Control:%20max-age=60"
                       "&ctype=application/json",
                       &r, NULL));
    expect_status(&r, 404);
    assert_string_equal(r.reason, "Not Found");
    assert_int_equal(http_response_header_count(&r, "x-a"), 2);
    expect_header(&r, "Cache-Control", "max-age=60");
    expect_header(&r, "Content-Type", "application/json");
    http_response_clear(&r);

    expect_ok(http_get(port_of(state), "/s?status=304", &r, NULL));
    expect_status(&r, 304);
    assert_int_equal(r.body_len, 0);
    http_response_clear(&r);
}

static void test_bad_requests_get_400_and_close(void **state)
{
    const char *bad[] = {
        "GET /x HTTP/1.1\nHost: o\n\n", /* bare LF */
        "POST /x HTTP/1.1\r\nHost: o\r\nContent-Length: 3\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",                         /* CL + TE */
        "GET /x HTTP/1.1\r\nHost : o\r\n\r\n",                                 /* space before : */
        "GET /x HTTP/1.1\r\nHost: o\r\nX-A: a\r\n b\r\n\r\n",                  /* obs-fold */
        "GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", /* 2 CLs */
        "GET /x?status=abc HTTP/1.1\r\nHost: o\r\n\r\n",                       /* bad script */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct client *c = client_connect(port_of(state), CLIENT_TIMEOUT_MS);
        struct http_response r;
        assert_non_null(c);
        assert_int_equal(client_send(c, bad[i], strlen(bad[i])), 0);
        expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
        expect_status(&r, 400);
        assert_true(r.closed);
        assert_true(client_expect_closed(c, CLIENT_TIMEOUT_MS));
        http_response_clear(&r);
        client_free(&c);
    }
}

static void test_noreply_and_closenow(void **state)
{
    struct client *c = client_connect(port_of(state), CLIENT_TIMEOUT_MS);
    struct http_response r;
    assert_non_null(c);
    assert_int_equal(client_send_request(c, "GET", "/n?noreply=1", NULL), 0);
    assert_int_equal(client_read_response(c, 0, &r, 300), CLIENT_TIMEOUT);
    http_response_clear(&r);
    client_free(&c);

    assert_int_equal(http_get(port_of(state), "/n?closenow=1", &r, NULL), CLIENT_EOF);
    assert_int_equal(r.status, 0);
    http_response_clear(&r);
}

static void test_delays(void **state)
{
    struct timespec t0;
    struct http_response r;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_ok(http_get(port_of(state), "/d?delay=200", &r, NULL));
    assert_true(elapsed_ms(&t0) >= 200);
    http_response_clear(&r);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_ok(http_get(port_of(state), "/d?len=40000&drip=50&body_delay=100", &r, NULL));
    assert_true(elapsed_ms(&t0) >= 100 + 4 * 50); /* 5 pieces of 8k, 4 pauses */
    expect_pattern_body(&r, 40000, 0);
    http_response_clear(&r);
}

struct stream_check {
    uint64_t offset;
    int64_t bad_at; /* -1 while every byte matches */
    pid_t origin;
    uint64_t next_sample;
    long max_rss_kb;
};

static int check_piece(void *ctx, const char *data, size_t len)
{
    struct stream_check *s = ctx;
    int64_t at = pattern_mismatch(data, len, s->offset);
    if (at >= 0 && s->bad_at < 0)
        s->bad_at = (int64_t)s->offset + at;
    s->offset += len;
    if (s->offset >= s->next_sample) {
        long rss = proc_rss_kb(s->origin);
        s->max_rss_kb = rss > s->max_rss_kb ? rss : s->max_rss_kb;
        s->next_sample += 16u << 20;
    }
    return 0;
}

static void test_large_body_streams_in_constant_memory(void **state)
{
    struct group *g = *state;
    const uint64_t size = 256u << 20;
    struct stream_check s = {.bad_at = -1, .origin = g->origin->pid, .next_sample = 32u << 20};
    struct client *c = client_connect(port_of(state), CLIENT_TIMEOUT_MS);
    struct http_response r;
    char target[64];
    snprintf(target, sizeof(target), "/big?len=%llu", (unsigned long long)size);
    assert_non_null(c);
    assert_int_equal(client_send_request(c, "GET", target, NULL), 0);
    expect_ok(client_read_response_cb(c, 0, &r, CLIENT_TIMEOUT_MS, check_piece, &s));
    assert_int_equal(r.body_len, size);
    assert_null(r.body);
    assert_int_equal(s.bad_at, -1);
    assert_true(s.max_rss_kb > 0 && s.max_rss_kb < 32 * 1024);
    http_response_clear(&r);
    client_free(&c);
}

static void test_sigterm_exits_zero(void **state)
{
    struct group *g = *state;
    g->extra = proc_start_origin(g->td, "origin-term", "-q", NULL);
    assert_non_null(g->extra);
    assert_int_equal(proc_stop(g->extra, 5000), 0);
}

static void test_demo_site(void **state)
{
    struct group *g = *state;
    struct http_response r;
    g->extra = proc_start_origin(g->td, "demo", "--demo", "--delay-ms", "0", "-q", NULL);
    assert_non_null(g->extra);
    int port = g->extra->port;

    expect_ok(http_get(port, "/", &r, NULL));
    expect_header(&r, "Content-Type", "text/html; charset=utf-8");
    assert_non_null(strstr(r.body, "href=\"/products/20\""));
    http_response_clear(&r);
    expect_ok(http_get(port, "/products/7", &r, NULL));
    expect_status(&r, 200);
    assert_non_null(strstr(r.body, "Product 7"));
    http_response_clear(&r);
    expect_ok(http_get(port, "/api/time", &r, NULL));
    expect_header(&r, "Cache-Control", "no-store");
    expect_header(&r, "Content-Type", "application/json");
    assert_non_null(strstr(r.body, "{\"time\": "));
    http_response_clear(&r);
    expect_ok(http_get(port, "/static/style.css", &r, NULL));
    expect_header(&r, "Cache-Control", "max-age=3600");
    http_response_clear(&r);
    expect_ok(http_get(port, "/products/21", &r, NULL));
    expect_status(&r, 404);
    http_response_clear(&r);
    expect_ok(http_get(port, "/products/1?status=503", &r, NULL)); /* scripting still works */
    expect_status(&r, 503);
    http_response_clear(&r);
}

/* The process helpers the proxy tests use, checked without tessera. */
static void test_memcached_helper(void **state)
{
    struct group *g = *state;
    char line[64] = "";
    g->extra = proc_start_memcached(g->td, "memcached");
    assert_non_null(g->extra);
    struct client *c = client_connect(g->extra->port, CLIENT_TIMEOUT_MS);
    assert_non_null(c);
    assert_int_equal(client_sendf(c, "version\r\n"), 0);
    assert_true(client_read_raw(c, line, sizeof(line) - 1, CLIENT_TIMEOUT_MS) > 0);
    assert_memory_equal(line, "VERSION ", 8);
    client_free(&c);
    assert_true(proc_rss_kb(g->extra->pid) > 0);
}

static void test_log_port_helpers(void **state)
{
    struct group *g = *state;
    const char *argv[] = {"sh", "-c",
                          "echo 'starting' >&2; sleep 0.1; "
                          "echo '2024-01-01T10:00:00 [notice] listening on 127.0.0.1:4321' >&2; "
                          "exec sleep 30",
                          NULL};
    g->extra = proc_start(g->td, "fake-tessera", argv);
    assert_non_null(g->extra);
    assert_int_equal(proc_wait_log_port(g->extra, g->extra->err_path, 0, "listening on ", 5000),
                     4321);
    assert_true(proc_log_contains(g->extra->err_path, "[notice]"));
    assert_false(proc_wait_log(g->extra->err_path, "never printed", 50));
    assert_int_equal(proc_log_port(g->extra->err_path, "admin listening on "), -1);
    assert_int_equal(proc_stop(g->extra, 5000), 128 + SIGTERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_body),
        cmocka_unit_test(test_len_gives_the_pattern),
        cmocka_unit_test(test_chunked_with_trailer),
        cmocka_unit_test(test_chunk_sizes_on_the_wire),
        cmocka_unit_test(test_close_delimited),
        cmocka_unit_test(test_head_has_get_headers_and_no_body),
        cmocka_unit_test(test_echo_returns_head_and_decoded_chunked_body),
        cmocka_unit_test(test_100_continue),
        cmocka_unit_test(test_interim_is_skipped_by_default),
        cmocka_unit_test(test_pipelined_requests_answered_in_order),
        cmocka_unit_test(test_count_last_and_reset),
        cmocka_unit_test(test_abort_cuts_the_body),
        cmocka_unit_test(test_keep_alive_reuses_the_connection),
        cmocka_unit_test(test_status_headers_and_type),
        cmocka_unit_test(test_bad_requests_get_400_and_close),
        cmocka_unit_test(test_noreply_and_closenow),
        cmocka_unit_test(test_delays),
        cmocka_unit_test(test_large_body_streams_in_constant_memory),
        cmocka_unit_test_teardown(test_sigterm_exits_zero, stop_extra),
        cmocka_unit_test_teardown(test_demo_site, stop_extra),
        cmocka_unit_test_teardown(test_memcached_helper, stop_extra),
        cmocka_unit_test_teardown(test_log_port_helpers, stop_extra),
    };
    return cmocka_run_group_tests_name("origin", tests, group_setup, group_teardown);
}
