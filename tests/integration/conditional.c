/*
 * tests/integration/conditional.c: conditional requests and revalidation
 * (issue 5): 304 and 412 answered from the cache (RFC 9110 13), generated
 * ETags, conditional_pass on uncached routes, revalidation of stale objects
 * with the origin (RFC 9111 4.3), stale-while-revalidate and stale-if-error
 * (RFC 5861), byte ranges from the cache (RFC 9110 14) and grace.
 *
 * Every scenario checks the status, the exact fields that matter, the
 * bodies, the cache's own fields (X-Cache and Cache-Status, RFC 9211, as
 * proxy/cachepath.c writes them) and the origin's /__count for the path,
 * the exact number of requests that went upstream.  Where the validators
 * tessera sent matter, the origin's /__last shows the request head it got.
 *
 * The origin answers 304 itself when asked with etag= / lm= and the request
 * names them; hdr=ETag:... sends an ETag without evaluating anything (an
 * application that ignores validators).
 *
 * One tessera for the group, with a route per policy (see group_setup);
 * the stale-if-error scenarios run a tessera of their own in `t`, with
 * origins they can stop or slow down.  Every test uses paths no other test uses,
 * so a count is that test's own.  Responses and connections live in file
 * statics so the teardown frees them even when an assertion fails.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/clock.h"
#include "tests/support/expect.h"
#include "tests/support/harness.h"
#include "tests/support/pattern.h"

#define READ_MS 5000

/* A stale-while-revalidate answer must not wait for the origin.  The issue
 * asks for under 5 ms; measured here it is well under 1 ms in the plain
 * build, but a sanitizer build on a loaded CI machine is much slower, so
 * the bound is 50 ms: still twenty times shorter than the origin's 1 s. */
#define SWR_ANSWER_MS 50.0
/* Each of 100 concurrent stale requests (threads, connections made under
 * ASan): well under the origin's 1000 ms delay, so none waited for it. */
#define SWR_BURST_ANSWER_MS 500.0

/* Long enough for a max-age=1 object stored right after a second started
 * (wait_for_a_new_second) to be stale, short enough for a refreshed one
 * to be fresh again for a while. */
#define STALE_WAIT_MS 1200
/* The origin's delay=1000 plus margin: a background fetch has ended. */
#define BACKGROUND_WAIT_MS 1300

/* Cache-Control on the origin's response, as query parameters. */
#define CC_100 "hdr=Cache-Control:max-age%3D100"
#define CC_1 "hdr=Cache-Control:max-age%3D1"

/* A Last-Modified well in the past, as the origin's lm= wants it (URL-
 * encoded) and as tessera writes it back in If-Modified-Since. */
#define LM_Q "Sat%2C%2001%20Jan%202022%2000:00:00%20GMT"
#define LM "Sat, 01 Jan 2022 00:00:00 GMT"
#define LM_BEFORE "Fri, 31 Dec 2021 23:59:59 GMT"
#define LM_AFTER "Sun, 01 Jan 2023 00:00:00 GMT"

static struct harness h; /* group: origin 0 behind a tessera with a route per policy */
static struct harness t; /* stale-if-error: origin 0 (live) and 1 (stopped by the test) */

#define NRESP 6
static struct http_response r[NRESP];
static struct http_response last; /* the origin's /__last */
static struct client *conn;

/* ---- vocabulary ---------------------------------------------------------- */

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Wait until the wall clock is just past a whole second.  The origin's Date
 * has a one-second resolution, and a response's apparent age is its
 * arrival time minus Date (RFC 9111 4.2.3): right after a second starts it
 * is a few ms, not up to 999.  Needed where a lifetime of 1 s is tested. */
static void wait_for_a_new_second(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_nsec > 50 * 1000000L)
        sleep_ms((1000000000L - ts.tv_nsec) / 1000000L + 10);
}

/* GET target on a fresh connection to port with the header lines (a
 * NULL-terminated va_list); the response is read into *resp. */
static void vget(int port, struct http_response *resp, const char *target, va_list ap)
{
    const char *lines[12];
    size_t n = 0;
    const char *line;
    while ((line = va_arg(ap, const char *)) != NULL) {
        assert_true(n < 11);
        lines[n++] = line;
    }
    lines[n] = NULL;
    http_response_clear(resp);
    conn = client_connect(port, READ_MS);
    assert_non_null(conn);
    assert_int_equal(client_send_request_v(conn, "GET", target, lines), 0);
    int rc = client_read_response(conn, 0, resp, READ_MS);
    if (rc != CLIENT_OK)
        fail_msg("GET %s: no response (client rc %d)", target, rc);
    client_free(&conn);
}

/* GET target from the group's tessera, with the header lines that follow. */
static void get(struct http_response *resp, const char *target, ...) __attribute__((sentinel));
static void get(struct http_response *resp, const char *target, ...)
{
    va_list ap;
    va_start(ap, target);
    vget(h.port, resp, target, ap);
    va_end(ap);
}

/* The same from the test's own tessera (t). */
static void tget(struct http_response *resp, const char *target, ...) __attribute__((sentinel));
static void tget(struct http_response *resp, const char *target, ...)
{
    va_list ap;
    va_start(ap, target);
    vget(t.port, resp, target, ap);
    va_end(ap);
}

static const char *cache_status(const struct http_response *resp)
{
    const char *v = http_response_header(resp, "Cache-Status");
    if (!v)
        fail_msg("response %d has no Cache-Status (X-Cache: %s)", resp->status,
                 http_response_header(resp, "X-Cache") ? http_response_header(resp, "X-Cache")
                                                       : "none");
    return v;
}

/* Answered from a fresh stored object: "tessera; hit; ttl=N" and X-Cache
 * HIT, whatever the status (200, 206, 304, 416). */
static void expect_from_cache(const struct http_response *resp)
{
    const char *cs = cache_status(resp);
    const char *prefix = "tessera; hit; ttl=";
    char *end = NULL;
    if (strncmp(cs, prefix, strlen(prefix)) == 0)
        strtol(cs + strlen(prefix), &end, 10);
    if (!end || end == cs + strlen(prefix) || *end != '\0')
        fail_msg("Cache-Status \"%s\", expected \"%sN\"", cs, prefix);
    expect_header(resp, "X-Cache", "HIT");
}

static void expect_hit(const struct http_response *resp)
{
    expect_status(resp, 200);
    expect_from_cache(resp);
}

/* A miss forwarded as fwd whose response was stored. */
static void expect_stored_miss(const struct http_response *resp, const char *fwd)
{
    char want[160];
    snprintf(want, sizeof want, "tessera; fwd=%s; fwd-status=%d; stored", fwd, resp->status);
    assert_string_equal(cache_status(resp), want);
    expect_header(resp, "X-Cache", "MISS");
}

/* A stale object revalidated with the origin, which answered 304: the
 * refreshed object answers.  RFC 9211 lets the cache add "stored" (the
 * stored response was updated). */
static void expect_revalidated(const struct http_response *resp)
{
    const char *cs = cache_status(resp);
    if (strcmp(cs, "tessera; fwd=stale; fwd-status=304") != 0 &&
        strcmp(cs, "tessera; fwd=stale; fwd-status=304; stored") != 0)
        fail_msg("Cache-Status \"%s\", expected \"tessera; fwd=stale; fwd-status=304\"", cs);
    expect_header(resp, "X-Cache", "HIT");
}

/* Served stale at once while a background fetch revalidates it. */
static void expect_stale_while_revalidate(const struct http_response *resp)
{
    expect_status(resp, 200);
    const char *cs = cache_status(resp);
    const char *prefix = "tessera; hit; ttl=";
    const char *suffix = "; detail=stale-while-revalidate";
    char *end = NULL;
    if (strncmp(cs, prefix, strlen(prefix)) == 0)
        strtol(cs + strlen(prefix), &end, 10);
    if (!end || end == cs + strlen(prefix) || strcmp(end, suffix) != 0)
        fail_msg("Cache-Status \"%s\", expected \"%sN%s\"", cs, prefix, suffix);
    expect_header(resp, "X-Cache", "STALE");
}

/* Served stale because the origin failed with fwd_status. */
static void expect_stale_if_error(const struct http_response *resp, int fwd_status)
{
    expect_status(resp, 200);
    char want[160];
    snprintf(want, sizeof want, "tessera; fwd=stale; fwd-status=%d; detail=stale-if-error",
             fwd_status);
    assert_string_equal(cache_status(resp), want);
    expect_header(resp, "X-Cache", "STALE");
}

/* A 304: the fields RFC 9110 15.4.5 requires, no body, no content
 * metadata.  cache_control NULL: the stored response had none. */
static void expect_not_modified(const struct http_response *resp, const char *etag,
                                const char *cache_control)
{
    expect_status(resp, 304);
    assert_int_equal(resp->body_len, 0);
    expect_no_header(resp, "Content-Type");
    expect_no_header(resp, "Transfer-Encoding");
    if (!http_response_header(resp, "Date"))
        fail_msg("304 without Date");
    if (etag)
        expect_header(resp, "ETag", etag);
    if (cache_control)
        expect_header(resp, "Cache-Control", cache_control);
    else
        expect_no_header(resp, "Cache-Control");
}

/* The origin (of harness hh, number i) served exactly n requests for path. */
static void expect_origin_count(struct harness *hh, int i, const char *path, long n)
{
    long got = harness_origin_count(hh, i, path);
    if (got != n)
        fail_msg("origin %d served %ld request(s) for %s, expected %ld", i, got, path, n);
}

static void expect_upstream(const char *path, long n)
{
    expect_origin_count(&h, 0, path, n);
}

/* The value of field name in the origin's last request for path (its
 * /__last), copied into out; false when the request had no such field. */
static bool origin_saw(struct harness *hh, const char *path, const char *name, char *out,
                       size_t size)
{
    char target[512];
    snprintf(target, sizeof target, "/__last?path=%s", path);
    http_response_clear(&last);
    expect_ok(http_get(hh->origin_port[0], target, &last, (const char *)NULL));
    expect_status(&last, 200);
    assert_non_null(last.body);
    size_t nlen = strlen(name);
    for (const char *p = last.body; *p;) {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1;
            while (*v == ' ')
                v++;
            snprintf(out, size, "%.*s", (int)(len - (size_t)(v - p)), v);
            return true;
        }
        if (!eol)
            break;
        p = eol + 2;
    }
    return false;
}

/* The origin's last request for path had name: value exactly. */
static void expect_origin_request_field(const char *path, const char *name, const char *value)
{
    char v[256];
    if (!origin_saw(&h, path, name, v, sizeof v))
        fail_msg("the origin's last request for %s had no %s:\n%s", path, name, last.body);
    if (strcmp(v, value) != 0)
        fail_msg("the origin's last request for %s had %s: %s, expected %s", path, name, v, value);
}

static void expect_origin_request_lacks(const char *path, const char *name)
{
    char v[256];
    if (origin_saw(&h, path, name, v, sizeof v))
        fail_msg("the origin's last request for %s had %s: %s", path, name, v);
}

static long age_of(const struct http_response *resp)
{
    const char *v = http_response_header(resp, "Age");
    if (!v)
        fail_msg("response has no Age");
    char *end;
    long age = strtol(v, &end, 10);
    if (end == v || *end != '\0' || age < 0)
        fail_msg("Age \"%s\" is not a number of seconds", v);
    return age;
}

/* `etag generate`'s tags: "tsr-" and 16 hex digits, quoted (strong). */
static void expect_generated_etag(const struct http_response *resp)
{
    const char *v = http_response_header(resp, "ETag");
    if (!v)
        fail_msg("response has no ETag");
    bool ok = strlen(v) == 22 && strncmp(v, "\"tsr-", 5) == 0 && v[21] == '"';
    for (int i = 5; ok && i < 21; i++)
        ok = (v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f');
    if (!ok)
        fail_msg("ETag %s, expected \"tsr-<16 hex>\"", v);
}

/* One part of a multipart/byteranges body. */
struct part {
    char content_type[64];
    char content_range[64];
    const char *data;
    size_t len;
};

/* Split resp's multipart/byteranges body (RFC 9110 14.6 and RFC 2046
 * 5.1.1) into at most max parts; returns how many. */
static size_t multipart_parts(const struct http_response *resp, struct part *parts, size_t max)
{
    const char *ct = http_response_header(resp, "Content-Type");
    if (!ct || strncmp(ct, "multipart/byteranges", 20) != 0)
        fail_msg("Content-Type %s, expected multipart/byteranges", ct ? ct : "(none)");
    const char *b = strstr(ct, "boundary=");
    if (!b)
        fail_msg("Content-Type %s has no boundary", ct);
    b += 9;
    char boundary[80] = "--";
    size_t blen = strcspn(b, "\"; ");
    if (*b == '"') {
        b++;
        blen = strcspn(b, "\"");
    }
    assert_true(blen > 0 && blen < 70);
    memcpy(boundary + 2, b, blen);
    boundary[2 + blen] = '\0';
    blen += 2;

    assert_non_null(resp->body);
    const char *p = resp->body, *end = resp->body + resp->body_len;
    const char *delim = memmem(p, (size_t)(end - p), boundary, blen);
    if (!delim)
        fail_msg("no boundary %s in the body", boundary);
    size_t n = 0;
    for (;;) {
        p = delim + blen;
        if (end - p >= 2 && memcmp(p, "--", 2) == 0)
            break; /* close delimiter */
        if (end - p < 2 || memcmp(p, "\r\n", 2) != 0)
            fail_msg("part %zu: no CRLF after the boundary", n);
        p += 2;
        const char *hend = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hend)
            fail_msg("part %zu: its header never ends", n);
        assert_true(n < max);
        struct part *pt = &parts[n];
        memset(pt, 0, sizeof *pt);
        for (const char *l = p; l < hend + 2;) {
            const char *eol = memmem(l, (size_t)(hend + 2 - l), "\r\n", 2);
            size_t len = (size_t)(eol - l);
            if (len > 14 && strncasecmp(l, "Content-Range:", 14) == 0)
                snprintf(pt->content_range, sizeof pt->content_range, "%.*s", (int)(len - 15),
                         l + 15);
            else if (len > 13 && strncasecmp(l, "Content-Type:", 13) == 0)
                snprintf(pt->content_type, sizeof pt->content_type, "%.*s", (int)(len - 14),
                         l + 14);
            l = eol + 2;
        }
        pt->data = hend + 4;
        char next[84];
        snprintf(next, sizeof next, "\r\n%s", boundary);
        delim = memmem(pt->data, (size_t)(end - pt->data), next, blen + 2);
        if (!delim)
            fail_msg("part %zu: no boundary after its data", n);
        pt->len = (size_t)(delim - pt->data);
        delim += 2;
        n++;
    }
    return n;
}

/* ---- fixtures ------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    if (!harness_init(&h, "conditional") || !harness_origin(&h, 0, NULL))
        return -1;
    return harness_tessera(&h,
                           "backend app { server 127.0.0.1:%d; keepalive 64; }\n"
                           "route /gen/ { backend app; cache on; etag generate; }\n"
                           "route /pass/ { backend app; }\n"
                           "route /passoff/ { backend app; conditional_pass off; }\n"
                           "route /rk/ { backend app; cache on; key { query none; } }\n"
                           "route /swr/ { backend app; cache on; stale_while_revalidate 30s; }\n"
                           "route /grace/ { backend app; cache on; grace 1s; }\n"
                           "route default { backend app; cache on; }\n",
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

static int teardown(void **state)
{
    (void)state;
    client_free(&conn);
    for (int i = 0; i < NRESP; i++)
        http_response_clear(&r[i]);
    http_response_clear(&last);
    harness_free(&t);
    return 0;
}

/* ---- 1. 304 from the cache ----------------------------------------------- */

static void test_if_none_match_answers_304_from_the_cache(void **state)
{
    (void)state;
    const char *target = "/c304/etag?etag=%22v1%22&lm=" LM_Q "&len=100&" CC_100;
    get(&r[0], target, NULL);
    expect_status(&r[0], 200);
    expect_pattern_body(&r[0], 100, 0);
    expect_header(&r[0], "ETag", "\"v1\"");
    expect_stored_miss(&r[0], "uri-miss");

    /* A strong tag, the weak form of it (weak comparison for GET), any
     * tag, and a list naming it. */
    const char *matching[] = {"If-None-Match: \"v1\"", "If-None-Match: W/\"v1\"",
                              "If-None-Match: *", "If-None-Match: \"x\", W/\"y\", \"v1\""};
    for (size_t i = 0; i < sizeof matching / sizeof matching[0]; i++) {
        get(&r[1], target, matching[i], NULL);
        expect_not_modified(&r[1], "\"v1\"", "max-age=100");
        expect_from_cache(&r[1]);
    }
    /* Two field lines make one list (RFC 9110 5.3). */
    get(&r[1], target, "If-None-Match: \"x\"", "If-None-Match: \"v1\"", NULL);
    expect_not_modified(&r[1], "\"v1\"", "max-age=100");

    /* Other tags: the full response. */
    get(&r[2], target, "If-None-Match: \"x\", \"v2\"", NULL);
    expect_pattern_body(&r[2], 100, 0);
    expect_hit(&r[2]);
    expect_header(&r[2], "ETag", "\"v1\"");

    /* If-Modified-Since is ignored when If-None-Match is present (RFC 9110
     * 13.2.2 step 4): it would say 304, If-None-Match says 200. */
    get(&r[3], target, "If-None-Match: \"x\"", "If-Modified-Since: " LM, NULL);
    expect_pattern_body(&r[3], 100, 0);
    expect_hit(&r[3]);
    /* Alone, it says 304. */
    get(&r[4], target, "If-Modified-Since: " LM, NULL);
    expect_not_modified(&r[4], "\"v1\"", "max-age=100");
    expect_from_cache(&r[4]);
    expect_upstream("/c304/etag", 1);
}

static void test_if_modified_since_answers_304_from_the_cache(void **state)
{
    (void)state;
    const char *target = "/c304/lm?lm=" LM_Q "&len=100&" CC_100;
    get(&r[0], target, NULL);
    expect_status(&r[0], 200);
    expect_header(&r[0], "Last-Modified", LM);
    expect_stored_miss(&r[0], "uri-miss");

    /* Not modified since Last-Modified, nor since a later date. */
    get(&r[1], target, "If-Modified-Since: " LM, NULL);
    expect_not_modified(&r[1], NULL, "max-age=100");
    expect_from_cache(&r[1]);
    get(&r[2], target, "If-Modified-Since: " LM_AFTER, NULL);
    expect_not_modified(&r[2], NULL, "max-age=100");
    expect_from_cache(&r[2]);

    /* Modified since an earlier date; an unparsable date is ignored. */
    get(&r[3], target, "If-Modified-Since: " LM_BEFORE, NULL);
    expect_pattern_body(&r[3], 100, 0);
    expect_hit(&r[3]);
    get(&r[4], target, "If-Modified-Since: yesterday", NULL);
    expect_pattern_body(&r[4], 100, 0);
    expect_hit(&r[4]);
    expect_upstream("/c304/lm", 1);
}

/* A cacheable miss is fetched whole, without the client's conditionals
 * (the cache answers them), stored, and answered 304 when the 200 meets
 * them. */
static void test_a_miss_answers_the_clients_condition_and_stores_the_response(void **state)
{
    (void)state;
    const char *target = "/c304/cold?etag=%22c1%22&len=100&" CC_100;
    get(&r[0], target, "If-None-Match: \"c1\"", NULL);
    expect_not_modified(&r[0], "\"c1\"", "max-age=100");
    expect_header(&r[0], "X-Cache", "MISS");
    expect_upstream("/c304/cold", 1);
    expect_origin_request_lacks("/c304/cold", "If-None-Match");

    get(&r[1], target, NULL);
    expect_pattern_body(&r[1], 100, 0);
    expect_hit(&r[1]);
    expect_upstream("/c304/cold", 1);
}

/* ---- 2. 412 -------------------------------------------------------------- */

static void test_if_match_and_if_unmodified_since_fail_with_412(void **state)
{
    (void)state;
    const char *target = "/c412/a?etag=%22m1%22&lm=" LM_Q "&len=100&" CC_100;
    get(&r[0], target, NULL);
    expect_stored_miss(&r[0], "uri-miss");

    /* If-Match compares strongly: another tag, or the weak form, fail. */
    get(&r[1], target, "If-Match: \"other\"", NULL);
    expect_status(&r[1], 412);
    get(&r[1], target, "If-Match: W/\"m1\"", NULL);
    expect_status(&r[1], 412);
    /* If-Match is evaluated before If-None-Match (RFC 9110 13.2.2). */
    get(&r[1], target, "If-Match: \"other\"", "If-None-Match: \"m1\"", NULL);
    expect_status(&r[1], 412);

    /* The tag, or any: go on. */
    get(&r[2], target, "If-Match: *", NULL);
    expect_pattern_body(&r[2], 100, 0);
    expect_hit(&r[2]);
    get(&r[2], target, "If-Match: \"x\", \"m1\"", NULL);
    expect_pattern_body(&r[2], 100, 0);
    expect_hit(&r[2]);

    /* If-Unmodified-Since older than Last-Modified: 412; not older: go on. */
    get(&r[3], target, "If-Unmodified-Since: " LM_BEFORE, NULL);
    expect_status(&r[3], 412);
    get(&r[4], target, "If-Unmodified-Since: " LM, NULL);
    expect_pattern_body(&r[4], 100, 0);
    expect_hit(&r[4]);
    /* ...and is ignored when If-Match is present. */
    get(&r[4], target, "If-Match: \"m1\"", "If-Unmodified-Since: " LM_BEFORE, NULL);
    expect_pattern_body(&r[4], 100, 0);
    expect_hit(&r[4]);
    expect_upstream("/c412/a", 1);
}

/* ---- 3. etag generate ---------------------------------------------------- */

static void test_etag_generate_gives_stored_responses_a_strong_etag(void **state)
{
    (void)state;
    const char *target = "/gen/a?len=500&" CC_100;
    get(&r[0], target, NULL);
    expect_pattern_body(&r[0], 500, 0);
    expect_stored_miss(&r[0], "uri-miss");
    /* The miss streams before the body is hashed: it may lack the tag. */
    if (http_response_header(&r[0], "ETag"))
        expect_generated_etag(&r[0]);

    get(&r[1], target, NULL);
    expect_pattern_body(&r[1], 500, 0);
    expect_hit(&r[1]);
    expect_generated_etag(&r[1]);
    const char *tag = http_response_header(&r[1], "ETag");
    if (http_response_header(&r[0], "ETag"))
        expect_header(&r[0], "ETag", tag);
    get(&r[2], target, NULL);
    expect_hit(&r[2]);
    expect_header(&r[2], "ETag", tag);

    char inm[64];
    snprintf(inm, sizeof inm, "If-None-Match: %s", tag);
    get(&r[3], target, inm, NULL);
    expect_not_modified(&r[3], tag, "max-age=100");
    expect_from_cache(&r[3]);
    expect_upstream("/gen/a", 1);

    /* Another body, another tag. */
    get(&r[4], "/gen/b?len=501&" CC_100, NULL);
    expect_stored_miss(&r[4], "uri-miss");
    get(&r[4], "/gen/b?len=501&" CC_100, NULL);
    expect_hit(&r[4]);
    expect_generated_etag(&r[4]);
    if (strcmp(http_response_header(&r[4], "ETag"), tag) == 0)
        fail_msg("500 and 501 bytes got the same ETag %s", tag);

    /* The origin's own ETag is kept. */
    get(&r[5], "/gen/own?etag=%22o1%22&" CC_100, NULL);
    expect_header(&r[5], "ETag", "\"o1\"");
    get(&r[5], "/gen/own?etag=%22o1%22&" CC_100, NULL);
    expect_hit(&r[5]);
    expect_header(&r[5], "ETag", "\"o1\"");
    assert_int_equal(http_response_header_count(&r[5], "ETag"), 1);
}

/* ---- 4. conditional_pass ------------------------------------------------- */

static void test_conditional_pass_turns_a_matching_200_into_304(void **state)
{
    (void)state;
    /* hdr=ETag: the origin sends the tag but ignores If-None-Match. */
    get(&r[0], "/pass/a?hdr=ETag:%22p1%22", "If-None-Match: \"p1\"", NULL);
    expect_not_modified(&r[0], "\"p1\"", NULL);
    expect_upstream("/pass/a", 1);
    /* The condition did reach the origin (nothing is cached here). */
    expect_origin_request_field("/pass/a", "If-None-Match", "\"p1\"");

    get(&r[1], "/pass/a?hdr=ETag:%22p1%22", "If-None-Match: \"p2\"", NULL);
    expect_status(&r[1], 200);
    expect_body(&r[1], "hello from origin /pass/a\n");
    expect_header(&r[1], "ETag", "\"p1\"");
    expect_upstream("/pass/a", 2);

    /* Last-Modified and If-Modified-Since alike. */
    get(&r[2], "/pass/lm?hdr=Last-Modified:" LM_Q, "If-Modified-Since: " LM, NULL);
    expect_not_modified(&r[2], NULL, NULL);
    get(&r[3], "/pass/lm?hdr=Last-Modified:" LM_Q, "If-Modified-Since: " LM_BEFORE, NULL);
    expect_status(&r[3], 200);
    expect_body(&r[3], "hello from origin /pass/lm\n");
    expect_upstream("/pass/lm", 2);

    /* conditional_pass off: the origin's answer as it is. */
    get(&r[4], "/passoff/a?hdr=ETag:%22p1%22", "If-None-Match: \"p1\"", NULL);
    expect_status(&r[4], 200);
    expect_body(&r[4], "hello from origin /passoff/a\n");
    expect_header(&r[4], "ETag", "\"p1\"");
    expect_upstream("/passoff/a", 1);
}

/* ---- 5. revalidation ----------------------------------------------------- */

static void test_a_stale_object_is_revalidated_and_refreshed_by_304(void **state)
{
    (void)state;
    const char *by_etag = "/reval/etag?etag=%22r1%22&len=100&" CC_1;
    const char *by_date = "/reval/lm?lm=" LM_Q "&len=100&" CC_1;
    wait_for_a_new_second();
    get(&r[0], by_etag, NULL);
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[1], by_date, NULL);
    expect_stored_miss(&r[1], "uri-miss");
    sleep_ms(STALE_WAIT_MS);

    /* With the stored ETag: a 304 refreshes it, the body comes from the
     * cache and its age starts again. */
    get(&r[2], by_etag, NULL);
    expect_status(&r[2], 200);
    expect_pattern_body(&r[2], 100, 0);
    expect_revalidated(&r[2]);
    expect_header(&r[2], "ETag", "\"r1\"");
    expect_header(&r[2], "Cache-Control", "max-age=1");
    assert_int_equal(age_of(&r[2]), 0);
    expect_upstream("/reval/etag", 2);
    expect_origin_request_field("/reval/etag", "If-None-Match", "\"r1\"");
    expect_origin_request_lacks("/reval/etag", "If-Modified-Since");
    get(&r[3], by_etag, NULL);
    expect_pattern_body(&r[3], 100, 0);
    expect_hit(&r[3]);
    expect_upstream("/reval/etag", 2);

    /* With the stored Last-Modified. */
    get(&r[4], by_date, NULL);
    expect_status(&r[4], 200);
    expect_pattern_body(&r[4], 100, 0);
    expect_revalidated(&r[4]);
    expect_header(&r[4], "Last-Modified", LM);
    assert_int_equal(age_of(&r[4]), 0);
    expect_upstream("/reval/lm", 2);
    expect_origin_request_field("/reval/lm", "If-Modified-Since", LM);
    expect_origin_request_lacks("/reval/lm", "If-None-Match");
    get(&r[5], by_date, NULL);
    expect_pattern_body(&r[5], 100, 0);
    expect_hit(&r[5]);
    expect_upstream("/reval/lm", 2);
}

/* A client's own conditional on a stale object: the cache revalidates
 * with its validators, and answers the client from the refreshed object. */
static void test_a_conditional_request_for_a_stale_object(void **state)
{
    (void)state;
    const char *matching = "/reval/client?etag=%22r3%22&len=100&" CC_1;
    const char *other = "/reval/client-old?etag=%22r4%22&len=100&" CC_1;
    wait_for_a_new_second();
    get(&r[0], matching, NULL);
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[1], other, NULL);
    expect_stored_miss(&r[1], "uri-miss");
    sleep_ms(STALE_WAIT_MS);

    get(&r[2], matching, "If-None-Match: \"zz\", \"r3\"", NULL);
    expect_not_modified(&r[2], "\"r3\"", "max-age=1");
    expect_revalidated(&r[2]);
    expect_upstream("/reval/client", 2);
    /* The cache's own validator, not the client's list. */
    expect_origin_request_field("/reval/client", "If-None-Match", "\"r3\"");

    /* The client holds an older version: the full refreshed response. */
    get(&r[3], other, "If-None-Match: \"r0\"", NULL);
    expect_status(&r[3], 200);
    expect_pattern_body(&r[3], 100, 0);
    expect_revalidated(&r[3]);
    expect_upstream("/reval/client-old", 2);
    expect_origin_request_field("/reval/client-old", "If-None-Match", "\"r4\"");
}

/* ---- 6. a revalidation that does not answer 304 -------------------------- */

/* The /rk/ route keys on the path alone, so a later request can carry
 * other origin parameters for the same object. */
static void test_a_revalidation_answered_200_replaces_and_404_removes(void **state)
{
    (void)state;
    wait_for_a_new_second();
    get(&r[0], "/rk/repl?etag=%22a%22&len=100&" CC_1, NULL);
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[0], "/rk/gone?etag=%22a%22&" CC_1, NULL);
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[0], "/rk/gone410?etag=%22a%22&" CC_1, NULL);
    expect_stored_miss(&r[0], "uri-miss");
    sleep_ms(STALE_WAIT_MS);

    /* The origin has "b" now: asked with If-None-Match "a", it sends it. */
    get(&r[1], "/rk/repl?etag=%22b%22&len=200&" CC_100, NULL);
    expect_status(&r[1], 200);
    expect_pattern_body(&r[1], 200, 0);
    expect_header(&r[1], "ETag", "\"b\"");
    expect_stored_miss(&r[1], "stale");
    expect_origin_request_field("/rk/repl", "If-None-Match", "\"a\"");
    get(&r[2], "/rk/repl", NULL);
    expect_pattern_body(&r[2], 200, 0);
    expect_hit(&r[2]);
    expect_header(&r[2], "ETag", "\"b\"");
    get(&r[2], "/rk/repl", "If-None-Match: \"b\"", NULL);
    expect_not_modified(&r[2], "\"b\"", "max-age=100");
    get(&r[2], "/rk/repl", "If-None-Match: \"a\"", NULL);
    expect_pattern_body(&r[2], 200, 0);
    expect_hit(&r[2]);
    expect_upstream("/rk/repl", 2);

    /* 404 and 410: the client gets them and the object is gone, so the
     * next request is a plain miss, not a revalidation. */
    const char *paths[] = {"/rk/gone", "/rk/gone410"};
    const int statuses[] = {404, 410};
    for (int i = 0; i < 2; i++) {
        char target[128], want[64];
        snprintf(target, sizeof target, "%s?status=%d", paths[i], statuses[i]);
        get(&r[3], target, NULL);
        expect_status(&r[3], statuses[i]);
        char body[64];
        snprintf(body, sizeof body, "hello from origin %s\n", paths[i]);
        expect_body(&r[3], body);
        snprintf(want, sizeof want, "tessera; fwd=stale; fwd-status=%d", statuses[i]);
        const char *cs = cache_status(&r[3]);
        if (strncmp(cs, want, strlen(want)) != 0 || strstr(cs, "stored"))
            fail_msg("Cache-Status \"%s\", expected \"%s\" (not stored)", cs, want);
        expect_header(&r[3], "X-Cache", "MISS");
        expect_origin_request_field(paths[i], "If-None-Match", "\"a\"");

        snprintf(target, sizeof target, "%s?etag=%%22a%%22&%s", paths[i], CC_1);
        get(&r[4], target, NULL);
        expect_status(&r[4], 200);
        expect_stored_miss(&r[4], "uri-miss");
        expect_origin_request_lacks(paths[i], "If-None-Match");
        expect_upstream(paths[i], 3);
    }
}

/* ---- 7. stale-while-revalidate ------------------------------------------- */

/* The origin takes 1 s.  A response's age includes the time its request
 * took (RFC 9111 4.2.3, response_delay), so each fetch stores an object
 * already 1 s old: max-age=2 keeps it fresh for 1 s after each fetch. */
#define SWR_Q "delay=1000&len=100&hdr=Cache-Control:max-age%3D2"

static void
test_stale_while_revalidate_answers_at_once_and_refreshes_in_the_background(void **state)
{
    (void)state;
    const char *target = "/swr-cc/a?etag=%22s1%22&" SWR_Q "%2Cstale-while-revalidate%3D30";
    get(&r[0], target, NULL);
    expect_pattern_body(&r[0], 100, 0);
    expect_stored_miss(&r[0], "uri-miss");
    sleep_ms(STALE_WAIT_MS);

    double t0 = mono_ms();
    get(&r[1], target, NULL);
    double took = mono_ms() - t0;
    expect_pattern_body(&r[1], 100, 0);
    expect_stale_while_revalidate(&r[1]);
    print_message("      stale answer in %.2f ms (origin: 1000 ms)\n", took);
    if (took > SWR_ANSWER_MS)
        fail_msg("the stale answer took %.1f ms (bound %.0f ms)", took, SWR_ANSWER_MS);

    /* While the background fetch runs: stale again, and no second fetch. */
    t0 = mono_ms();
    get(&r[2], target, NULL);
    took = mono_ms() - t0;
    expect_pattern_body(&r[2], 100, 0);
    expect_stale_while_revalidate(&r[2]);
    if (took > SWR_ANSWER_MS)
        fail_msg("the second stale answer took %.1f ms (bound %.0f ms)", took, SWR_ANSWER_MS);

    sleep_ms(BACKGROUND_WAIT_MS);
    expect_upstream("/swr-cc/a", 2);
    expect_origin_request_field("/swr-cc/a", "If-None-Match", "\"s1\"");
    /* Refreshed by the origin's 304: fresh again. */
    get(&r[3], target, NULL);
    expect_pattern_body(&r[3], 100, 0);
    expect_hit(&r[3]);
    expect_upstream("/swr-cc/a", 2);
}

struct stale_client {
    pthread_t tid;
    const char *target;
    pthread_barrier_t *go;
    /* results, read by the main thread after the join */
    int rc;
    int status;
    bool pattern_ok;
    size_t body_len;
    double ms;
    char x_cache[8];
    char cache_status[128];
};

static void copy_field(char *dst, size_t size, const struct http_response *resp, const char *name)
{
    const char *v = http_response_header(resp, name);
    snprintf(dst, size, "%s", v ? v : "");
}

/* One client: connect, wait for the others, one timed request.  No cmocka
 * here: assertions are the main thread's. */
static void *stale_client_main(void *arg)
{
    struct stale_client *s = arg;
    struct client *c = client_connect(h.port, READ_MS);
    pthread_barrier_wait(s->go);
    s->rc = CLIENT_ERROR;
    double t0 = mono_ms();
    if (!c || client_send_request(c, "GET", s->target, NULL) != 0) {
        client_free(&c);
        return NULL;
    }
    struct http_response resp = {0};
    s->rc = client_read_response(c, 0, &resp, CLIENT_TIMEOUT_MS);
    s->ms = mono_ms() - t0;
    s->status = resp.status;
    s->body_len = resp.body_len;
    s->pattern_ok =
        resp.body && resp.body_len == 100 && pattern_mismatch(resp.body, resp.body_len, 0) < 0;
    copy_field(s->x_cache, sizeof s->x_cache, &resp, "X-Cache");
    copy_field(s->cache_status, sizeof s->cache_status, &resp, "Cache-Status");
    http_response_clear(&resp);
    client_free(&c);
    return NULL;
}

static struct stale_client *burst;

static int teardown_burst(void **state)
{
    free(burst);
    burst = NULL;
    return teardown(state);
}

/* The first stale requests all at once, on a route whose
 * stale_while_revalidate default applies (the response does not say). */
static void test_a_burst_of_stale_requests_starts_one_background_fetch(void **state)
{
    (void)state;
    enum { N = 100 };
    const char *target = "/swr/burst?etag=%22b1%22&" SWR_Q;
    get(&r[0], target, NULL);
    expect_pattern_body(&r[0], 100, 0);
    expect_stored_miss(&r[0], "uri-miss");
    expect_upstream("/swr/burst", 1);
    sleep_ms(STALE_WAIT_MS);

    burst = calloc(N, sizeof *burst);
    assert_non_null(burst);
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, N), 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < N; i++) {
        burst[i] = (struct stale_client){.target = target, .go = &go};
        if (pthread_create(&burst[i].tid, &attr, stale_client_main, &burst[i]) != 0)
            abort(); /* the others would wait at the barrier forever */
    }
    pthread_attr_destroy(&attr);
    for (int i = 0; i < N; i++)
        pthread_join(burst[i].tid, NULL);
    pthread_barrier_destroy(&go);

    double slowest = 0;
    for (int i = 0; i < N; i++) {
        struct stale_client *s = &burst[i];
        if (s->rc != CLIENT_OK || s->status != 200 || !s->pattern_ok)
            fail_msg("client %d: rc %d, status %d, %zu body bytes", i, s->rc, s->status,
                     s->body_len);
        if (strcmp(s->x_cache, "STALE") != 0 ||
            strncmp(s->cache_status, "tessera; hit; ttl=", 18) != 0 ||
            !strstr(s->cache_status, "; detail=stale-while-revalidate"))
            fail_msg("client %d: X-Cache \"%s\", Cache-Status \"%s\"", i, s->x_cache,
                     s->cache_status);
        slowest = s->ms > slowest ? s->ms : slowest;
    }
    print_message("      %d stale answers, the slowest in %.1f ms (origin: 1000 ms)\n", N, slowest);
    if (slowest > SWR_BURST_ANSWER_MS)
        fail_msg("a stale answer took %.1f ms (bound %.0f ms)", slowest, SWR_BURST_ANSWER_MS);

    sleep_ms(BACKGROUND_WAIT_MS);
    expect_upstream("/swr/burst", 2);
    expect_origin_request_field("/swr/burst", "If-None-Match", "\"b1\"");
    get(&r[1], target, NULL);
    expect_pattern_body(&r[1], 100, 0);
    expect_hit(&r[1]);
    expect_upstream("/swr/burst", 2);
}

/* ---- 8. stale-if-error --------------------------------------------------- */

/* Origin 0 answers; origin 1 is the one a test stops; origin 2 is the slow
 * one (with max_fails 1, its timeout marks it failed: the retry finds no
 * server and the timeout is what is reported).  /sie/, /sie-slow/ and
 * /late/ key on the path alone, so the request that finds the object stale
 * can ask the origin for an error or a delay. */
static int setup_stale_if_error(void **state)
{
    (void)state;
    if (!harness_init(&t, "conditional-sie") || !harness_origin(&t, 0, NULL) ||
        !harness_origin(&t, 1, NULL) || !harness_origin(&t, 2, NULL) ||
        !harness_tessera(
            &t,
            "backend app { server 127.0.0.1:%d; }\n"
            "backend down { server 127.0.0.1:%d; }\n"
            "backend slow { server 127.0.0.1:%d; read_timeout 300ms; }\n"
            "route /sie/ { backend app; cache on; stale_if_error 60s; key { query none; } }\n"
            "route /sie-down/ { backend down; cache on; stale_if_error 60s; }\n"
            "route /sie-slow/ { backend slow; cache on; stale_if_error 60s;\n"
            "                   key { query none; } }\n"
            "route /late/ { backend app; cache on; stale_if_error 1s; key { query none; } }\n"
            "route /late-down/ { backend down; cache on; stale_if_error 1s; }\n",
            t.origin_port[0], t.origin_port[1], t.origin_port[2])) {
        harness_free(&t);
        return -1;
    }
    return 0;
}

static void test_stale_if_error_hides_origin_errors_and_timeouts(void **state)
{
    (void)state;
    wait_for_a_new_second();
    const char *warm[] = {"/sie/a?etag=%22e1%22&len=100&" CC_1, "/sie/b?len=100&" CC_1,
                          "/sie/mr?len=100&hdr=Cache-Control:max-age%3D1%2Cmust-revalidate",
                          "/sie-slow/a?len=100&" CC_1};
    for (size_t i = 0; i < sizeof warm / sizeof warm[0]; i++) {
        tget(&r[0], warm[i], NULL);
        expect_pattern_body(&r[0], 100, 0);
        expect_stored_miss(&r[0], "uri-miss");
    }
    sleep_ms(STALE_WAIT_MS);

    /* The origin answers 503 to the revalidation, 500 to the fetch. */
    tget(&r[1], "/sie/a?status=503", NULL);
    expect_pattern_body(&r[1], 100, 0);
    expect_stale_if_error(&r[1], 503);
    expect_header(&r[1], "ETag", "\"e1\"");
    expect_origin_count(&t, 0, "/sie/a", 2);
    if (!proc_wait_log(t.error_log, "answered 503", 2000))
        fail_msg("the 503 hidden by stale-if-error is not in %s", t.error_log);
    tget(&r[2], "/sie/b?status=500", NULL);
    expect_pattern_body(&r[2], 100, 0);
    expect_stale_if_error(&r[2], 500);
    expect_origin_count(&t, 0, "/sie/b", 2);

    /* must-revalidate: never served stale, the error goes through. */
    tget(&r[3], "/sie/mr?status=503", NULL);
    expect_status(&r[3], 503);
    expect_origin_count(&t, 0, "/sie/mr", 2);

    /* The origin does not answer within read_timeout: 504. */
    tget(&r[4], "/sie-slow/a?delay=3000", NULL);
    expect_pattern_body(&r[4], 100, 0);
    expect_stale_if_error(&r[4], 504);
    expect_origin_count(&t, 2, "/sie-slow/a", 2);
}

/* Origin 1 stopped: the connection is refused (502), and then its server
 * is marked failed (max_fails 1) so later requests find no live server
 * (502 too): the stale copy hides both. */
static void test_stale_if_error_serves_while_the_origin_is_down(void **state)
{
    (void)state;
    wait_for_a_new_second();
    tget(&r[0], "/sie-down/a?len=100&" CC_1, NULL);
    expect_pattern_body(&r[0], 100, 0);
    expect_stored_miss(&r[0], "uri-miss");
    expect_origin_count(&t, 1, "/sie-down/a", 1);
    sleep_ms(STALE_WAIT_MS);
    proc_stop(t.origin[1], 5000);

    tget(&r[1], "/sie-down/a?len=100&" CC_1, NULL);
    expect_pattern_body(&r[1], 100, 0);
    expect_stale_if_error(&r[1], 502);
    for (int i = 0; i < 3; i++) {
        tget(&r[2], "/sie-down/a?len=100&" CC_1, NULL);
        if (r[2].status != 200)
            fail_msg("request %d after the origin stopped: %d \"%.*s\" instead of the stale "
                     "copy",
                     i + 2, r[2].status, (int)r[2].body_len, r[2].body ? r[2].body : "");
        expect_pattern_body(&r[2], 100, 0);
        expect_stale_if_error(&r[2], 502);
    }
}

static void test_beyond_stale_if_error_the_error_reaches_the_client(void **state)
{
    (void)state;
    wait_for_a_new_second();
    tget(&r[0], "/late/a?len=100&" CC_1, NULL);
    expect_stored_miss(&r[0], "uri-miss");
    tget(&r[0], "/late-down/a?len=100&" CC_1, NULL);
    expect_stored_miss(&r[0], "uri-miss");
    /* Stale after 1 s, out of its 1 s stale-if-error window after 2 s. */
    sleep_ms(2500);

    tget(&r[1], "/late/a?status=503", NULL);
    expect_status(&r[1], 503);
    expect_no_header(&r[1], "ETag");
    if (http_response_header(&r[1], "X-Cache"))
        expect_header(&r[1], "X-Cache", "MISS");
    expect_origin_count(&t, 0, "/late/a", 2);

    proc_stop(t.origin[1], 5000);
    tget(&r[2], "/late-down/a?len=100&" CC_1, NULL);
    expect_status(&r[2], 502);
    if (http_response_header(&r[2], "X-Cache"))
        expect_header(&r[2], "X-Cache", "MISS");
}

/* ---- 9. ranges ----------------------------------------------------------- */

static void test_ranges_are_answered_from_the_cache(void **state)
{
    (void)state;
    const char *target = "/range/a?len=1000&etag=%22g1%22&lm=" LM_Q "&" CC_100;
    get(&r[0], target, NULL);
    expect_pattern_body(&r[0], 1000, 0);
    expect_stored_miss(&r[0], "uri-miss");

    get(&r[1], target, "Range: bytes=0-99", NULL);
    expect_status(&r[1], 206);
    expect_header(&r[1], "Content-Range", "bytes 0-99/1000");
    expect_header(&r[1], "Content-Length", "100");
    expect_pattern_body(&r[1], 100, 0);
    expect_from_cache(&r[1]);

    get(&r[1], target, "Range: bytes=-10", NULL);
    expect_status(&r[1], 206);
    expect_header(&r[1], "Content-Range", "bytes 990-999/1000");
    expect_header(&r[1], "Content-Length", "10");
    expect_pattern_body(&r[1], 10, 990);

    get(&r[1], target, "Range: bytes=990-", NULL);
    expect_status(&r[1], 206);
    expect_header(&r[1], "Content-Range", "bytes 990-999/1000");
    expect_pattern_body(&r[1], 10, 990);

    /* Past the end: cut to the length. */
    get(&r[1], target, "Range: bytes=900-5000", NULL);
    expect_status(&r[1], 206);
    expect_header(&r[1], "Content-Range", "bytes 900-999/1000");
    expect_pattern_body(&r[1], 100, 900);

    /* Several: multipart/byteranges, each part with its Content-Range. */
    get(&r[2], target, "Range: bytes=0-1,10-11", NULL);
    expect_status(&r[2], 206);
    expect_no_header(&r[2], "Content-Range");
    expect_from_cache(&r[2]);
    struct part parts[4];
    assert_int_equal(multipart_parts(&r[2], parts, 4), 2);
    assert_string_equal(parts[0].content_range, "bytes 0-1/1000");
    assert_string_equal(parts[0].content_type, "text/plain");
    assert_int_equal(parts[0].len, 2);
    assert_memory_equal(parts[0].data, "ab", 2);
    assert_string_equal(parts[1].content_range, "bytes 10-11/1000");
    assert_string_equal(parts[1].content_type, "text/plain");
    assert_int_equal(parts[1].len, 2);
    assert_memory_equal(parts[1].data, "kl", 2);

    /* Unsatisfiable. */
    get(&r[3], target, "Range: bytes=2000-", NULL);
    expect_status(&r[3], 416);
    expect_header(&r[3], "Content-Range", "bytes */1000");

    /* If-Range: the current ETag or Last-Modified gets the range, anything
     * else the whole representation. */
    get(&r[4], target, "Range: bytes=0-99", "If-Range: \"g1\"", NULL);
    expect_status(&r[4], 206);
    expect_header(&r[4], "Content-Range", "bytes 0-99/1000");
    expect_pattern_body(&r[4], 100, 0);
    get(&r[4], target, "Range: bytes=0-99", "If-Range: " LM, NULL);
    expect_status(&r[4], 206);
    expect_pattern_body(&r[4], 100, 0);
    get(&r[5], target, "Range: bytes=0-99", "If-Range: \"g0\"", NULL);
    expect_hit(&r[5]);
    expect_no_header(&r[5], "Content-Range");
    expect_pattern_body(&r[5], 1000, 0);
    get(&r[5], target, "Range: bytes=0-99", "If-Range: " LM_BEFORE, NULL);
    expect_hit(&r[5]);
    expect_pattern_body(&r[5], 1000, 0);
    expect_upstream("/range/a", 1);
}

static void test_a_range_miss_fetches_the_whole_object(void **state)
{
    (void)state;
    const char *target = "/range/cold?len=1000&" CC_100;
    get(&r[0], target, "Range: bytes=100-199", NULL);
    expect_status(&r[0], 206);
    expect_header(&r[0], "Content-Range", "bytes 100-199/1000");
    expect_header(&r[0], "Content-Length", "100");
    expect_pattern_body(&r[0], 100, 100);
    expect_upstream("/range/cold", 1);
    expect_origin_request_lacks("/range/cold", "Range");

    get(&r[1], target, NULL);
    expect_pattern_body(&r[1], 1000, 0);
    expect_hit(&r[1]);
    get(&r[2], target, "Range: bytes=-1", NULL);
    expect_status(&r[2], 206);
    expect_header(&r[2], "Content-Range", "bytes 999-999/1000");
    expect_pattern_body(&r[2], 1, 999);
    expect_upstream("/range/cold", 1);
}

/* ---- 10. grace ----------------------------------------------------------- */

/* grace 1s: an object 1 s past its freshness is gone.  Within grace it is
 * revalidated (a 304 costs no body); beyond it the origin sees a plain
 * request, whether the object had validators or not. */
static void test_past_grace_an_object_is_gone(void **state)
{
    (void)state;
    wait_for_a_new_second();
    get(&r[0], "/grace/plain?" CC_1, NULL);
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[0], "/grace/in?etag=%22w1%22&" CC_1, NULL);
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[0], "/grace/out?etag=%22w2%22&" CC_1, NULL);
    expect_stored_miss(&r[0], "uri-miss");
    sleep_ms(1500);

    /* In its grace period: revalidated. */
    get(&r[1], "/grace/in?etag=%22w1%22&" CC_1, NULL);
    expect_body(&r[1], "hello from origin /grace/in\n");
    expect_revalidated(&r[1]);
    expect_origin_request_field("/grace/in", "If-None-Match", "\"w1\"");
    expect_upstream("/grace/in", 2);
    sleep_ms(1000);

    /* 2.5 s old, past max-age 1 s and grace 1s: not in the cache, so the
     * origin gets a plain request, and the cache reports a uri-miss (RFC
     * 9211: it holds no response for the URI). */
    get(&r[3], "/grace/out?etag=%22w2%22&" CC_1, NULL);
    expect_body(&r[3], "hello from origin /grace/out\n");
    expect_status(&r[3], 200);
    expect_origin_request_lacks("/grace/out", "If-None-Match");
    expect_upstream("/grace/out", 2);
    get(&r[2], "/grace/plain?" CC_1, NULL);
    expect_body(&r[2], "hello from origin /grace/plain\n");
    expect_upstream("/grace/plain", 2);
    expect_stored_miss(&r[3], "uri-miss");
    expect_stored_miss(&r[2], "uri-miss");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_if_none_match_answers_304_from_the_cache, teardown),
        cmocka_unit_test_teardown(test_if_modified_since_answers_304_from_the_cache, teardown),
        cmocka_unit_test_teardown(test_a_miss_answers_the_clients_condition_and_stores_the_response,
                                  teardown),
        cmocka_unit_test_teardown(test_if_match_and_if_unmodified_since_fail_with_412, teardown),
        cmocka_unit_test_teardown(test_etag_generate_gives_stored_responses_a_strong_etag,
                                  teardown),
        cmocka_unit_test_teardown(test_conditional_pass_turns_a_matching_200_into_304, teardown),
        cmocka_unit_test_teardown(test_a_stale_object_is_revalidated_and_refreshed_by_304,
                                  teardown),
        cmocka_unit_test_teardown(test_a_conditional_request_for_a_stale_object, teardown),
        cmocka_unit_test_teardown(test_a_revalidation_answered_200_replaces_and_404_removes,
                                  teardown),
        cmocka_unit_test_teardown(
            test_stale_while_revalidate_answers_at_once_and_refreshes_in_the_background, teardown),
        cmocka_unit_test_teardown(test_a_burst_of_stale_requests_starts_one_background_fetch,
                                  teardown_burst),
        cmocka_unit_test_setup_teardown(test_stale_if_error_hides_origin_errors_and_timeouts,
                                        setup_stale_if_error, teardown),
        cmocka_unit_test_setup_teardown(test_stale_if_error_serves_while_the_origin_is_down,
                                        setup_stale_if_error, teardown),
        cmocka_unit_test_setup_teardown(test_beyond_stale_if_error_the_error_reaches_the_client,
                                        setup_stale_if_error, teardown),
        cmocka_unit_test_teardown(test_ranges_are_answered_from_the_cache, teardown),
        cmocka_unit_test_teardown(test_a_range_miss_fetches_the_whole_object, teardown),
        cmocka_unit_test_teardown(test_past_grace_an_object_is_gone, teardown),
    };
    return cmocka_run_group_tests_name("conditional", tests, group_setup, group_teardown);
}
