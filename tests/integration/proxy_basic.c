/*
 * tests/integration/proxy_basic.c: tessera as a plain streaming reverse
 * proxy: keep-alive, pipelining, framing both ways, HEAD, 1xx, forwarded
 * fields, bounded memory for huge bodies, the access log.
 *
 * One tessera (workers 2, keepalive 8, body_size 512m) in front of one
 * origin for the whole group.  Every test opens its own connections and uses request paths no
 * other test uses, so the origin's /__count for a path is that test's own.
 */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/expect.h"
#include "tests/support/harness.h"
#include "tests/support/pattern.h"

/* tessera's resident set must stay under this while it streams huge bodies */
#define RSS_LIMIT_KB 65536L

static struct harness h;

static int group_setup(void **state)
{
    (void)state;
    if (!harness_init(&h, "proxy-basic") || !harness_origin(&h, 0, NULL))
        return -1;
    /* body_size: the huge upload is over the 10m default */
    return harness_tessera(&h,
                           "backend app { server 127.0.0.1:%d; keepalive 8; }\n"
                           "route default { backend app; }\n"
                           "limits { body_size 512m; }\n",
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

/* ---- vocabulary ----------------------------------------------------------- */

static struct client *connect_to_tessera(void)
{
    struct client *c = client_connect(h.port, CLIENT_TIMEOUT_MS);
    assert_non_null(c);
    return c;
}

/* How many requests the origin served for path (its /__count). */
#define expect_origin_count(path, n) assert_int_equal(harness_origin_count(&h, 0, (path)), (n))

/* Sanitizer builds (BUILD=build/asan) run the huge-body tests smaller. */
static bool sanitizer_build(void)
{
    const char *build = getenv("BUILD");
    return build != NULL && strstr(build, "asan") != NULL;
}

/* The request head the origin echoed (echo=1): the body up to and including
 * its empty line, as a new string. */
static char *echoed_head(const struct http_response *r)
{
    assert_non_null(r->body);
    const char *end = strstr(r->body, "\r\n\r\n");
    if (end == NULL)
        fail_msg("echoed body has no request head: %.200s", r->body);
    return strndup(r->body, (size_t)(end - r->body) + 4);
}

/* The fields named name in an echoed head: how many, and the first value. */
static size_t echoed_field(const char *head, const char *name, char *value, size_t size)
{
    size_t n = 0, nlen = strlen(name);
    if (value && size)
        value[0] = '\0';
    for (const char *line = strstr(head, "\r\n") + 2; *line && strncmp(line, "\r\n", 2) != 0;
         line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
            continue;
        if (n++ == 0 && value && size) {
            const char *v = line + nlen + 1;
            v += strspn(v, " \t");
            size_t vlen = (size_t)(strstr(v, "\r\n") - v);
            snprintf(value, size, "%.*s", (int)vlen, v);
        }
    }
    return n;
}

/* Whether any field named name in an echoed head has word in its value. */
static bool echoed_field_mentions(const char *head, const char *name, const char *word)
{
    size_t nlen = strlen(name);
    for (const char *line = strstr(head, "\r\n") + 2; *line && strncmp(line, "\r\n", 2) != 0;
         line = strstr(line, "\r\n") + 2) {
        const char *eol = strstr(line, "\r\n");
        char value[256];
        if (strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
            continue;
        snprintf(value, sizeof(value), "%.*s", (int)(eol - line - nlen - 1), line + nlen + 1);
        if (strcasestr(value, word) != NULL)
            return true;
    }
    return false;
}

/* The echoed head carries exactly one field named name, equal to value. */
#define expect_echoed_field(head, name, expected)                                                  \
    do {                                                                                           \
        char v_[256];                                                                              \
        size_t n_ = echoed_field((head), (name), v_, sizeof(v_));                                  \
        if (n_ != 1)                                                                               \
            fail_msg("origin saw %zu %s fields, expected 1 in:\n%s", n_, (name), (head));          \
        assert_string_equal(v_, (expected));                                                       \
    } while (0)

#define expect_no_echoed_field(head, name)                                                         \
    do {                                                                                           \
        if (echoed_field((head), (name), NULL, 0) != 0)                                            \
            fail_msg("origin saw a %s field:\n%s", (name), (head));                                \
    } while (0)

/* The echoed body ends with the len pattern bytes from offset 0. */
#define expect_echoed_pattern_body(r, len)                                                         \
    do {                                                                                           \
        assert_true((r)->body_len >= (len));                                                       \
        if (pattern_mismatch((r)->body + (r)->body_len - (len), (len), 0) >= 0)                    \
            fail_msg("the origin did not get the %zu body bytes sent", (size_t)(len));             \
    } while (0)

/* ---- 1. keep-alive on both sides -------------------------------------------- */

/* Sequential requests on one client connection stay on one worker, and that
 * worker's pool holds at most the one upstream connection they use, so both
 * must reach the origin on the same connection, one after the other. */
static void test_keep_alive_reuses_client_and_upstream_connections(void **state)
{
    (void)state;
    struct client *c = connect_to_tessera();
    struct http_response r1 = {0}, r2 = {0};

    assert_int_equal(client_send_request(c, "GET", "/ka-1", NULL), 0);
    expect_ok(client_read_response(c, 0, &r1, CLIENT_TIMEOUT_MS));
    expect_status(&r1, 200);
    expect_body(&r1, "hello from origin /ka-1\n");
    assert_false(r1.closed);

    assert_int_equal(client_send_request(c, "GET", "/ka-2", NULL), 0);
    expect_ok(client_read_response(c, 0, &r2, CLIENT_TIMEOUT_MS));
    expect_status(&r2, 200);
    expect_body(&r2, "hello from origin /ka-2\n");
    assert_false(r2.closed);

    expect_header(&r2, "X-Origin-Conn", http_response_header(&r1, "X-Origin-Conn"));
    long seq1 = strtol(http_response_header(&r1, "X-Origin-Seq"), NULL, 10);
    long seq2 = strtol(http_response_header(&r2, "X-Origin-Seq"), NULL, 10);
    assert_int_equal(seq2, seq1 + 1);
    expect_origin_count("/ka-1", 1);
    expect_origin_count("/ka-2", 1);

    http_response_clear(&r1);
    http_response_clear(&r2);
    client_free(&c);
}

/* ---- 2. pipelining ---------------------------------------------------------- */

static void test_pipelined_requests_answered_in_order_then_close(void **state)
{
    (void)state;
    struct client *c = connect_to_tessera();
    struct http_response r = {0};
    const char *paths[] = {"/a", "/b", "/c"};

    assert_int_equal(client_sendf(c, "GET /a HTTP/1.1\r\nHost: pipe\r\n\r\n"
                                     "GET /b HTTP/1.1\r\nHost: pipe\r\n\r\n"
                                     "GET /c HTTP/1.1\r\nHost: pipe\r\nConnection: close\r\n\r\n"),
                     0);
    for (int i = 0; i < 3; i++) {
        char body[64];
        expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
        expect_status(&r, 200);
        snprintf(body, sizeof(body), "hello from origin %s\n", paths[i]);
        expect_body(&r, body);
        assert_int_equal(r.closed, i == 2);
        http_response_clear(&r);
    }
    assert_true(client_expect_closed(c, CLIENT_TIMEOUT_MS));
    for (int i = 0; i < 3; i++)
        expect_origin_count(paths[i], 1);
    client_free(&c);
}

/* ---- 3. request bodies -------------------------------------------------------- */

static void test_chunked_request_body_reaches_origin_chunked(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 26, 1000, 16384, 7, 70000};
    static char data[1 + 26 + 1000 + 16384 + 7 + 70000];
    struct client *c = connect_to_tessera();
    struct http_response r = {0};
    size_t total = 0;

    pattern_fill(data, sizeof(data), 0);
    assert_int_equal(client_send_request(c, "POST", "/chunked-up?echo=1",
                                         "Transfer-Encoding: chunked", "Trailer: X-Sum", NULL),
                     0);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        assert_int_equal(client_sendf(c, "%zx\r\n", sizes[i]), 0);
        assert_int_equal(client_send(c, data + total, sizes[i]), 0);
        assert_int_equal(client_sendf(c, "\r\n"), 0);
        total += sizes[i];
    }
    assert_int_equal(total, sizeof(data));
    assert_int_equal(client_sendf(c, "0\r\nX-Sum: 87418\r\n\r\n"), 0);

    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    char len[32];
    snprintf(len, sizeof(len), "%zu", total);
    expect_header(&r, "X-Origin-Body-Length", len);
    char *head = echoed_head(&r);
    assert_non_null(strstr(head, "POST /chunked-up?echo=1 HTTP/1.1\r\n"));
    expect_echoed_field(head, "Transfer-Encoding", "chunked");
    expect_no_echoed_field(head, "Content-Length");
    assert_int_equal(r.body_len, strlen(head) + total);
    expect_echoed_pattern_body(&r, total);
    free(head);
    expect_origin_count("/chunked-up", 1);
    http_response_clear(&r);
    client_free(&c);
}

static void test_content_length_request_body_reaches_origin(void **state)
{
    (void)state;
    static char data[20000];
    struct client *c = connect_to_tessera();
    struct http_response r = {0};

    pattern_fill(data, sizeof(data), 0);
    assert_int_equal(
        client_send_request(c, "POST", "/length-up?echo=1", "Content-Length: 20000", NULL), 0);
    assert_int_equal(client_send(c, data, sizeof(data)), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    expect_header(&r, "X-Origin-Body-Length", "20000");
    char *head = echoed_head(&r);
    expect_echoed_field(head, "Content-Length", "20000");
    expect_no_echoed_field(head, "Transfer-Encoding");
    assert_int_equal(r.body_len, strlen(head) + sizeof(data));
    expect_echoed_pattern_body(&r, sizeof(data));
    free(head);
    expect_origin_count("/length-up", 1);
    http_response_clear(&r);
    client_free(&c);
}

/* ---- 4. chunked responses ----------------------------------------------------- */

static void test_chunked_response_keeps_its_trailer(void **state)
{
    (void)state;
    struct client *c = connect_to_tessera();
    struct http_response r = {0};

    assert_int_equal(client_send_request(c, "GET",
                                         "/trailer?len=20000&chunked=1&chunk=1000"
                                         "&trailer=X-Check:abc",
                                         NULL),
                     0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    assert_true(r.chunked);
    expect_header(&r, "Transfer-Encoding", "chunked");
    expect_no_header(&r, "Content-Length");
    expect_pattern_body(&r, 20000, 0);
    expect_trailer(&r, "X-Check", "abc");
    assert_false(r.closed);
    expect_origin_count("/trailer", 1);
    http_response_clear(&r);
    client_free(&c);
}

static void test_chunked_response_to_http10_client_is_close_delimited(void **state)
{
    (void)state;
    struct client *c = connect_to_tessera();
    struct http_response r = {0};

    assert_int_equal(client_sendf(c, "GET /chunked-10?len=20000&chunked=1&chunk=1000 HTTP/1.0\r\n"
                                     "Host: old\r\n\r\n"),
                     0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    assert_false(r.chunked);
    expect_no_header(&r, "Transfer-Encoding");
    expect_no_header(&r, "Content-Length");
    expect_pattern_body(&r, 20000, 0);
    assert_true(r.closed);
    assert_true(client_expect_closed(c, CLIENT_TIMEOUT_MS));
    expect_origin_count("/chunked-10", 1);
    http_response_clear(&r);
    client_free(&c);
}

/* ---- 5. HEAD ------------------------------------------------------------------ */

static void test_head_has_length_but_no_body_and_connection_goes_on(void **state)
{
    (void)state;
    struct client *c = connect_to_tessera();
    struct http_response r = {0};

    assert_int_equal(client_send_request(c, "HEAD", "/head?len=1000", NULL), 0);
    expect_ok(client_read_response(c, CLIENT_HEAD, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    expect_header(&r, "Content-Length", "1000");
    assert_int_equal(r.body_len, 0);
    assert_false(r.closed);
    http_response_clear(&r);

    /* had body bytes followed the HEAD response, this would not parse */
    assert_int_equal(client_send_request(c, "GET", "/after-head", NULL), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    expect_body(&r, "hello from origin /after-head\n");
    http_response_clear(&r);

    /* the origin was asked with HEAD, not GET */
    expect_origin_count("/head", 1);
    expect_ok(http_get(h.origin_port[0], "/__last?path=/head", &r, NULL));
    assert_non_null(r.body);
    assert_non_null(strstr(r.body, "HEAD /head?len=1000 HTTP/1.1\r\n"));
    http_response_clear(&r);
    client_free(&c);
}

/* ---- 6. interim responses ----------------------------------------------------- */

static void test_100_continue_comes_from_origin_before_the_body(void **state)
{
    (void)state;
    struct client *c = connect_to_tessera();
    struct http_response r = {0};

    assert_int_equal(client_send_request(c, "PUT", "/continue?echo=1", "Expect: 100-continue",
                                         "Content-Length: 11", NULL),
                     0);
    expect_ok(client_read_response(c, CLIENT_INTERIM, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 100);
    http_response_clear(&r);

    assert_int_equal(client_send(c, "hello world", 11), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    assert_int_equal(r.ninterim, 0); /* one 100 only, already read */
    expect_header(&r, "X-Origin-Body-Length", "11");
    char *head = echoed_head(&r);
    expect_echoed_field(head, "Expect", "100-continue"); /* end to end */
    assert_int_equal(r.body_len, strlen(head) + 11);
    assert_memory_equal(r.body + strlen(head), "hello world", 11);
    free(head);
    expect_origin_count("/continue", 1);
    http_response_clear(&r);
    client_free(&c);
}

/* ---- 7. hop-by-hop and forwarded fields --------------------------------------- */

static void test_hop_by_hop_request_fields_dropped_and_forwarded_fields_set(void **state)
{
    (void)state;
    struct client *c = connect_to_tessera();
    struct http_response r = {0};

    assert_int_equal(client_send_request(
                         c, "GET", "/hop?echo=1", "Host: www.scenario.test", "Connection: X-Drop",
                         "X-Drop: 1", "Keep-Alive: 5", "TE: trailers", "Upgrade: h2c",
                         "X-Forwarded-For: 10.1.1.1", "X-Forwarded-Proto: https", NULL),
                     0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    expect_header(&r, "Via", "1.1 tessera");
    char *head = echoed_head(&r);
    expect_no_echoed_field(head, "X-Drop");
    expect_no_echoed_field(head, "Keep-Alive");
    expect_no_echoed_field(head, "TE");
    expect_no_echoed_field(head, "Upgrade");
    if (echoed_field_mentions(head, "Connection", "x-drop"))
        fail_msg("origin saw the client's Connection: X-Drop:\n%s", head);
    expect_echoed_field(head, "X-Forwarded-For", "10.1.1.1, 127.0.0.1");
    expect_echoed_field(head, "X-Forwarded-Proto", "http");
    expect_echoed_field(head, "X-Forwarded-Host", "www.scenario.test");
    expect_echoed_field(head, "Via", "1.1 tessera");
    free(head);
    expect_origin_count("/hop", 1);
    http_response_clear(&r);
    client_free(&c);
}

static void test_hop_by_hop_response_fields_dropped(void **state)
{
    (void)state;
    struct client *c = connect_to_tessera();
    struct http_response r = {0};

    assert_int_equal(client_send_request(c, "GET",
                                         "/hop-resp?hdr=Connection:X-Secret&hdr=X-Secret:1"
                                         "&hdr=Keep-Alive:timeout=5",
                                         NULL),
                     0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    expect_body(&r, "hello from origin /hop-resp\n");
    expect_no_header(&r, "X-Secret");
    expect_no_header(&r, "Keep-Alive");
    const char *conn = http_response_header(&r, "Connection");
    if (conn != NULL && strcasestr(conn, "x-secret") != NULL)
        fail_msg("client got Connection: %s", conn);
    expect_header(&r, "Via", "1.1 tessera");
    expect_origin_count("/hop-resp", 1);
    http_response_clear(&r);
    client_free(&c);
}

/* ---- 8. huge bodies in bounded memory ----------------------------------------- */

struct slow_reader {
    uint64_t offset; /* body bytes seen */
    int64_t bad_at;  /* first byte off the pattern, -1 while all match */
    int pauses_left; /* slow phase: pause after every 64 KiB */
    uint64_t next_pause;
    uint64_t next_sample; /* fast phase: sample RSS every 64 MiB */
    long max_rss_kb;
    int samples;
    time_t deadline; /* give up (CLIENT_STOPPED) rather than trickle on */
};

static void sample_rss(long *max_kb, int *samples)
{
    long kb = proc_rss_kb(h.tessera->pid);
    assert_true(kb > 0);
    if (kb > *max_kb)
        *max_kb = kb;
    (*samples)++;
}

static int slow_then_fast(void *ctx, const char *data, size_t len)
{
    struct slow_reader *s = ctx;
    int64_t at = pattern_mismatch(data, len, s->offset);
    if (at >= 0 && s->bad_at < 0)
        s->bad_at = (int64_t)s->offset + at;
    s->offset += len;
    if (time(NULL) > s->deadline)
        return 1;
    if (s->pauses_left > 0 && s->offset >= s->next_pause) {
        usleep(300 * 1000); /* tessera's buffers fill up meanwhile */
        sample_rss(&s->max_rss_kb, &s->samples);
        s->pauses_left--;
        s->next_pause = s->offset + 64 * 1024;
    } else if (s->pauses_left == 0 && s->offset >= s->next_sample) {
        sample_rss(&s->max_rss_kb, &s->samples);
        s->next_sample += 64u << 20;
    }
    return 0;
}

/* 1 GiB in the normal build; 128 MiB when BUILD contains "asan" (make
 * check), to keep sanitizer runs short on slow machines: what is checked is
 * the bound on memory, and 128 MiB is still hundreds of times tessera's
 * buffers. */
static void test_huge_response_to_slow_reader_in_bounded_memory(void **state)
{
    (void)state;
    const uint64_t size = sanitizer_build() ? 128u << 20 : 1u << 30;
    struct slow_reader s = {.bad_at = -1, .pauses_left = 6, .next_pause = 64 * 1024};
    struct client *c = connect_to_tessera();
    struct http_response r = {0};
    char target[64];
    /* A fixed receive buffer (no autotuning up to megabytes) so that the
     * backpressure reaches tessera at once.  Not smaller: on loopback a
     * segment is up to 64 KiB, and a buffer that cannot hold one stalls the
     * connection for good. */
    int rcvbuf = 256 * 1024;

    assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    s.next_sample = 64u << 20;
    s.deadline = time(NULL) + 40;
    snprintf(target, sizeof(target), "/huge?len=%llu", (unsigned long long)size);
    assert_int_equal(client_send_request(c, "GET", target, NULL), 0);
    expect_ok(client_read_response_cb(c, 0, &r, CLIENT_TIMEOUT_MS, slow_then_fast, &s));
    sample_rss(&s.max_rss_kb, &s.samples);

    expect_status(&r, 200);
    assert_true(r.complete);
    assert_null(r.body);
    assert_int_equal(r.body_len, size);
    assert_int_equal(s.offset, size);
    if (s.bad_at >= 0)
        fail_msg("body differs from the pattern at byte %" PRId64, s.bad_at);
    assert_int_equal(s.pauses_left, 0);
    assert_true(s.samples >= 6 + 2);
    if (s.max_rss_kb >= RSS_LIMIT_KB)
        fail_msg("tessera's RSS reached %ld kB streaming %llu bytes", s.max_rss_kb,
                 (unsigned long long)size);
    expect_origin_count("/huge", 1);
    http_response_clear(&r);
    client_free(&c);
}

/* 256 MiB in the normal build; 64 MiB when BUILD contains "asan" (see
 * above). */
static void test_huge_chunked_upload_in_bounded_memory(void **state)
{
    (void)state;
    const uint64_t size = sanitizer_build() ? 64u << 20 : 256u << 20;
    const size_t piece = 256 * 1024;
    char *data = malloc(piece);
    struct client *c = connect_to_tessera();
    struct http_response r = {0};
    long max_rss_kb = 0;
    int samples = 0;

    assert_non_null(data);
    pattern_fill(data, piece, 0);
    assert_int_equal(client_send_request(c, "POST", "/upload", "Transfer-Encoding: chunked", NULL),
                     0);
    for (uint64_t sent = 0; sent < size; sent += piece) {
        if (client_sendf(c, "%zx\r\n", piece) != 0 || client_send(c, data, piece) != 0 ||
            client_sendf(c, "\r\n") != 0)
            fail_msg("tessera stopped taking the upload after %llu of %llu body bytes",
                     (unsigned long long)sent, (unsigned long long)size);
        if (sent % (16u << 20) == 0)
            sample_rss(&max_rss_kb, &samples);
    }
    assert_int_equal(client_sendf(c, "0\r\n\r\n"), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    sample_rss(&max_rss_kb, &samples);

    expect_status(&r, 200);
    char len[32];
    snprintf(len, sizeof(len), "%llu", (unsigned long long)size);
    expect_header(&r, "X-Origin-Body-Length", len);
    if (max_rss_kb >= RSS_LIMIT_KB)
        fail_msg("tessera's RSS reached %ld kB relaying a %s-byte upload", max_rss_kb, len);
    expect_origin_count("/upload", 1);
    http_response_clear(&r);
    client_free(&c);
    free(data);
}

/* ---- 9. close-delimited upstream response ------------------------------------- */

static void test_close_delimited_response_rechunked_for_http11_client(void **state)
{
    (void)state;
    struct client *c = connect_to_tessera();
    struct http_response r = {0};

    assert_int_equal(client_send_request(c, "GET", "/close-delimited?close=1&len=5000", NULL), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    assert_true(r.chunked);
    expect_header(&r, "Transfer-Encoding", "chunked");
    expect_no_header(&r, "Content-Length");
    expect_pattern_body(&r, 5000, 0);
    assert_false(r.closed);
    http_response_clear(&r);

    assert_int_equal(client_send_request(c, "GET", "/after-close-delimited", NULL), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    expect_body(&r, "hello from origin /after-close-delimited\n");
    expect_origin_count("/close-delimited", 1);
    http_response_clear(&r);
    client_free(&c);
}

/* ---- 10. upstream abort --------------------------------------------------------- */

static void expect_cut_short(const char *target, const char *path)
{
    struct http_response r = {0};
    int rc = http_get(h.port, target, &r, NULL);
    if (rc != CLIENT_EOF)
        fail_msg("%s: read returned %d (complete %d, %zu body bytes), expected CLIENT_EOF", target,
                 rc, r.complete, r.body_len);
    assert_false(r.complete);
    expect_status(&r, 200);
    assert_true(r.body_len < 100000);
    if (r.body_len > 0 && pattern_mismatch(r.body, r.body_len, 0) >= 0)
        fail_msg("%s: the bytes before the cut are not the origin's", target);
    expect_origin_count(path, 1); /* bytes reached the client: no retry */
    http_response_clear(&r);
}

static void test_upstream_abort_mid_body_leaves_client_message_incomplete(void **state)
{
    (void)state;
    struct http_response r = {0};

    expect_cut_short("/abort?len=100000&abort=5000", "/abort");
    expect_cut_short("/abort-chunked?len=100000&abort=5000&chunked=1", "/abort-chunked");

    expect_ok(http_get(h.port, "/after-abort", &r, NULL));
    expect_status(&r, 200);
    expect_body(&r, "hello from origin /after-abort\n");
    http_response_clear(&r);
}

/* ---- 11. access log ------------------------------------------------------------- */

/* The lines of path containing needle: how many, and a copy of the first. */
static size_t log_lines_with(const char *path, const char *needle, char *first, size_t size)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, n = 0;
    assert_non_null(f);
    first[0] = '\0';
    while (getline(&line, &cap, f) > 0) {
        if (strstr(line, needle) == NULL)
            continue;
        if (n++ == 0)
            snprintf(first, size, "%s", line);
    }
    free(line);
    fclose(f);
    return n;
}

struct access_entry {
    time_t when;
    int status;
    long bytes;
    double request_time, upstream_time;
};

/* Match line against the combined format + request_time upstream_time PASS
 * for the given request line, referer and user agent. */
static struct access_entry parse_access_line(const char *line, const char *request,
                                             const char *referer, const char *ua)
{
    static const char *const shape =
        "^127\\.0\\.0\\.1 - - \\[([0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} "
        "[+-][0-9]{4})\\] \"([^\"]*)\" ([0-9]{3}) ([0-9]+) \"([^\"]*)\" \"([^\"]*)\" "
        "([0-9]+\\.[0-9]{3}) ([0-9]+\\.[0-9]{3}) PASS\n$";
    regex_t re;
    regmatch_t m[9];
    char field[9][256];
    struct access_entry e = {0};

    assert_int_equal(regcomp(&re, shape, REG_EXTENDED), 0);
    int rc = regexec(&re, line, 9, m, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("access log line is not combined + times + PASS: %s", line);
    for (int i = 1; i < 9; i++)
        snprintf(field[i], sizeof(field[i]), "%.*s", (int)(m[i].rm_eo - m[i].rm_so),
                 line + m[i].rm_so);
    assert_string_equal(field[2], request);
    assert_string_equal(field[5], referer);
    assert_string_equal(field[6], ua);

    struct tm tm = {0};
    const char *end = strptime(field[1], "%d/%b/%Y:%H:%M:%S %z", &tm);
    assert_true(end != NULL && *end == '\0');
    e.when = timegm(&tm) - tm.tm_gmtoff;
    e.status = atoi(field[3]);
    e.bytes = atol(field[4]);
    e.request_time = strtod(field[7], NULL);
    e.upstream_time = strtod(field[8], NULL);
    return e;
}

static void test_access_log_line_per_request(void **state)
{
    (void)state;
    struct http_response r = {0};
    char line[2048];
    time_t before = time(NULL);

    expect_ok(
        http_get(h.port, "/logged?x=1", &r, "User-Agent: scenario-ua", "Referer: http://r/", NULL));
    expect_status(&r, 200);
    assert_true(proc_wait_log(h.access_log, "\"GET /logged?x=1 HTTP/1.1\"", 5000));
    assert_int_equal(log_lines_with(h.access_log, "/logged?x=1", line, sizeof(line)), 1);
    struct access_entry e =
        parse_access_line(line, "GET /logged?x=1 HTTP/1.1", "http://r/", "scenario-ua");
    assert_int_equal(e.status, 200);
    assert_int_equal(e.bytes, r.body_len);
    assert_true(e.when >= before - 1 && e.when <= time(NULL) + 1);
    assert_true(e.request_time >= e.upstream_time);
    assert_true(e.request_time < 5.0);
    http_response_clear(&r);

    /* the times are real: a 200 ms origin shows in both; no UA, no referer: "-" */
    expect_ok(http_get(h.port, "/logged-slow?delay=200&status=404", &r, NULL));
    expect_status(&r, 404);
    assert_true(proc_wait_log(h.access_log, "\"GET /logged-slow?delay=200&status=404 ", 5000));
    assert_int_equal(log_lines_with(h.access_log, "/logged-slow", line, sizeof(line)), 1);
    e = parse_access_line(line, "GET /logged-slow?delay=200&status=404 HTTP/1.1", "-", "-");
    assert_int_equal(e.status, 404);
    assert_int_equal(e.bytes, r.body_len);
    assert_true(e.upstream_time >= 0.2);
    assert_true(e.request_time >= e.upstream_time);
    http_response_clear(&r);
}

/* ---- 12. responses without a body ----------------------------------------------- */

static void test_204_and_304_have_no_body_and_keep_the_connection(void **state)
{
    (void)state;
    struct client *c = connect_to_tessera();
    struct http_response r = {0};

    assert_int_equal(client_send_request(c, "GET", "/no-content?status=204", NULL), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 204);
    assert_int_equal(r.body_len, 0);
    expect_no_header(&r, "Content-Length");
    expect_no_header(&r, "Transfer-Encoding");
    assert_false(r.closed);
    http_response_clear(&r);

    assert_int_equal(
        client_send_request(c, "GET", "/not-modified?status=304&hdr=ETag:%22v1%22", NULL), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 304);
    expect_header(&r, "ETag", "\"v1\"");
    assert_int_equal(r.body_len, 0);
    expect_no_header(&r, "Content-Length");
    expect_no_header(&r, "Transfer-Encoding");
    assert_false(r.closed);
    http_response_clear(&r);

    /* a body or a chunk after either response would break this one */
    assert_int_equal(client_send_request(c, "GET", "/after-no-body", NULL), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    expect_status(&r, 200);
    expect_body(&r, "hello from origin /after-no-body\n");
    http_response_clear(&r);

    expect_origin_count("/no-content", 1);
    expect_origin_count("/not-modified", 1);
    client_free(&c);
}

/* ---- the example ------------------------------------------------------------------ */

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
        cmocka_unit_test(test_keep_alive_reuses_client_and_upstream_connections),
        cmocka_unit_test(test_get_through_tessera),
        cmocka_unit_test(test_pipelined_requests_answered_in_order_then_close),
        cmocka_unit_test(test_chunked_request_body_reaches_origin_chunked),
        cmocka_unit_test(test_content_length_request_body_reaches_origin),
        cmocka_unit_test(test_chunked_response_keeps_its_trailer),
        cmocka_unit_test(test_chunked_response_to_http10_client_is_close_delimited),
        cmocka_unit_test(test_head_has_length_but_no_body_and_connection_goes_on),
        cmocka_unit_test(test_100_continue_comes_from_origin_before_the_body),
        cmocka_unit_test(test_hop_by_hop_request_fields_dropped_and_forwarded_fields_set),
        cmocka_unit_test(test_hop_by_hop_response_fields_dropped),
        cmocka_unit_test(test_huge_response_to_slow_reader_in_bounded_memory),
        cmocka_unit_test(test_huge_chunked_upload_in_bounded_memory),
        cmocka_unit_test(test_close_delimited_response_rechunked_for_http11_client),
        cmocka_unit_test(test_upstream_abort_mid_body_leaves_client_message_incomplete),
        cmocka_unit_test(test_access_log_line_per_request),
        cmocka_unit_test(test_204_and_304_have_no_body_and_keep_the_connection),
    };
    return cmocka_run_group_tests_name("proxy_basic", tests, group_setup, group_teardown);
}
