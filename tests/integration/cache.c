/*
 * tests/integration/cache.c: tessera as a shared cache (RFC 9111): misses
 * and hits, where freshness comes from, what is never stored or never
 * shared, Vary, invalidation by unsafe methods, only-if-cached, coalescing
 * of concurrent misses, size limits and eviction, HEAD from a GET's object,
 * the client's Cache-Control, cache keys and the cache status header.
 *
 * Every scenario checks three things: the bodies, the cache's own fields
 * (X-Cache and Cache-Status, RFC 9211, as proxy/cachepath.c writes them)
 * and the origin's /__count for the path, the exact number of requests
 * that went upstream.
 *
 * One tessera for the group, with a route per cache policy (route prefixes
 * below); on the default route the origin's Cache-Control decides.  Every
 * test uses paths no other test uses, so a count is that test's own.  The
 * eviction test runs a tessera of its own (a 1m store) in `t`.  Responses
 * and connections live in file statics so the teardown frees them even
 * when an assertion fails mid-test.
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
/* tessera's resident set must stay under this while it evicts, and grow by
 * less than RSS_GROWTH_KB while 10 MB go through its 1 MiB store.  Under
 * ASan (BUILD=build/asan) freed memory stays resident in the allocator's
 * quarantine by design: only a looser ceiling is checked there. */
#define RSS_LIMIT_KB 65536L
#define RSS_LIMIT_ASAN_KB 131072L
#define RSS_GROWTH_KB 4096L

/* Cache-Control on the origin's response, as a query parameter. */
#define CC_100 "hdr=Cache-Control:max-age%3D100"

static struct harness h; /* group: origin 0 behind a tessera with a route per policy */
static struct harness t; /* per test, for a config of its own */

#define NRESP 6
static struct http_response r[NRESP];
#define NCONN 2
static struct client *conn[NCONN];

/* ---- vocabulary ---------------------------------------------------------- */

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

/* METHOD TARGET on a fresh connection to port, with the header lines (a
 * NULL-terminated va_list) and an optional body (Content-Length added);
 * the response is read into *resp. */
static void vrequest(int port, struct http_response *resp, const char *method, const char *target,
                     const char *body, va_list ap)
{
    const char *lines[12];
    size_t n = 0;
    char length[40];
    const char *line;
    while ((line = va_arg(ap, const char *)) != NULL) {
        assert_true(n < 10);
        lines[n++] = line;
    }
    if (body) {
        snprintf(length, sizeof length, "Content-Length: %zu", strlen(body));
        lines[n++] = length;
    }
    lines[n] = NULL;
    http_response_clear(resp);
    conn[0] = client_connect(port, READ_MS);
    assert_non_null(conn[0]);
    assert_int_equal(client_send_request_v(conn[0], method, target, lines), 0);
    if (body)
        assert_int_equal(client_send(conn[0], body, strlen(body)), 0);
    int rc =
        client_read_response(conn[0], strcmp(method, "HEAD") == 0 ? CLIENT_HEAD : 0, resp, READ_MS);
    if (rc != CLIENT_OK)
        fail_msg("%s %s: no response (client rc %d)", method, target, rc);
    client_free(&conn[0]);
}

/* GET target with the header lines that follow (NULL-terminated). */
static void get(struct http_response *resp, const char *target, ...) __attribute__((sentinel));
static void get(struct http_response *resp, const char *target, ...)
{
    va_list ap;
    va_start(ap, target);
    vrequest(h.port, resp, "GET", target, NULL, ap);
    va_end(ap);
}

static void head(struct http_response *resp, const char *target, ...) __attribute__((sentinel));
static void head(struct http_response *resp, const char *target, ...)
{
    va_list ap;
    va_start(ap, target);
    vrequest(h.port, resp, "HEAD", target, NULL, ap);
    va_end(ap);
}

/* POST target with body, then the header lines (NULL-terminated). */
static void post(struct http_response *resp, const char *target, const char *body, ...)
    __attribute__((sentinel));
static void post(struct http_response *resp, const char *target, const char *body, ...)
{
    va_list ap;
    va_start(ap, body);
    vrequest(h.port, resp, "POST", target, body, ap);
    va_end(ap);
}

static const char *cache_status(const struct http_response *resp)
{
    const char *v = http_response_header(resp, "Cache-Status");
    if (!v)
        fail_msg("response has no Cache-Status (X-Cache: %s)",
                 http_response_header(resp, "X-Cache") ? http_response_header(resp, "X-Cache")
                                                       : "none");
    return v;
}

/* A hit: "tessera; hit; ttl=N", or "tessera; hit; ttl=N; detail=coalesced"
 * when the request waited for another's fill (which a request sent after
 * the fill's response was read may still do: see
 * test_a_response_read_whole_is_already_in_the_cache); returns N. */
static long expect_hit(const struct http_response *resp)
{
    expect_status(resp, 200);
    const char *cs = cache_status(resp);
    const char *prefix = "tessera; hit; ttl=";
    char *end = NULL;
    long ttl = -1;
    if (strncmp(cs, prefix, strlen(prefix)) == 0)
        ttl = strtol(cs + strlen(prefix), &end, 10);
    if (!end || end == cs + strlen(prefix) ||
        (strcmp(end, "") != 0 && strcmp(end, "; detail=coalesced") != 0))
        fail_msg("Cache-Status \"%s\", expected \"%sN\"", cs, prefix);
    expect_header(resp, "X-Cache", "HIT");
    return ttl;
}

/* A miss forwarded as fwd whose response was stored. */
static void expect_stored_miss(const struct http_response *resp, const char *fwd)
{
    char want[160];
    snprintf(want, sizeof want, "tessera; fwd=%s; fwd-status=%d; stored", fwd, resp->status);
    assert_string_equal(cache_status(resp), want);
    expect_header(resp, "X-Cache", "MISS");
}

/* A miss forwarded as fwd whose response was not stored, for the reason
 * detail. */
static void expect_unstored_miss(const struct http_response *resp, const char *fwd,
                                 const char *detail)
{
    char want[160];
    snprintf(want, sizeof want, "tessera; fwd=%s; fwd-status=%d; detail=%s", fwd, resp->status,
             detail);
    assert_string_equal(cache_status(resp), want);
    expect_header(resp, "X-Cache", "MISS");
}

/* Not looked up, not stored: the request may not use the cache.  The
 * fwd-status parameter is optional (RFC 9211 2.3: it defaults to the
 * response's status), but must be right when present. */
static void expect_bypass(const struct http_response *resp, const char *detail)
{
    char want[160], want_status[160];
    snprintf(want, sizeof want, "tessera; fwd=bypass; detail=%s", detail);
    snprintf(want_status, sizeof want_status, "tessera; fwd=bypass; fwd-status=%d; detail=%s",
             resp->status, detail);
    const char *cs = cache_status(resp);
    if (strcmp(cs, want) != 0 && strcmp(cs, want_status) != 0)
        fail_msg("Cache-Status \"%s\", expected \"%s\"", cs, want);
    expect_header(resp, "X-Cache", "PASS");
}

/* The origin served exactly n requests for path (without query). */
static void expect_upstream(const char *path, long n)
{
    long got = harness_origin_count(&h, 0, path);
    if (got != n)
        fail_msg("origin served %ld request(s) for %s, expected %ld", got, path, n);
}

/* The fields the cache adds or recomputes. */
static bool cache_own_field(const char *name)
{
    return strcasecmp(name, "Age") == 0 || strcasecmp(name, "Cache-Status") == 0 ||
           strcasecmp(name, "X-Cache") == 0;
}

/* The n-th (from 0) value of name in resp, or NULL. */
static const char *nth_value(const struct http_response *resp, const char *name, size_t n)
{
    for (size_t i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0 && n-- == 0)
            return resp->headers[i].value;
    return NULL;
}

/* Every field of a (but the cache's own) is in b with the same values in
 * the same order, and b has no other field. */
static void expect_same_fields(const struct http_response *a, const struct http_response *b)
{
    for (int pass = 0; pass < 2; pass++) {
        const struct http_response *x = pass ? b : a, *y = pass ? a : b;
        for (size_t i = 0; i < x->nheaders; i++) {
            const char *name = x->headers[i].name;
            if (cache_own_field(name))
                continue;
            size_t nth = 0;
            for (size_t j = 0; j < i; j++)
                if (strcasecmp(x->headers[j].name, name) == 0)
                    nth++;
            const char *other = nth_value(y, name, nth);
            if (!other || strcmp(other, x->headers[i].value) != 0)
                fail_msg("%s: \"%s\" in the %s, \"%s\" in the %s", name, x->headers[i].value,
                         pass ? "hit" : "miss", other ? other : "(none)", pass ? "miss" : "hit");
        }
    }
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

/* ---- fixtures ------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    if (!harness_init(&h, "cache") || !harness_origin(&h, 0, NULL))
        return -1;
    return harness_tessera(
               &h,
               "backend app { server 127.0.0.1:%d; keepalive 64; }\n"
               "route /ttl/ { backend app; cache on; ttl 100s; }\n"
               "route /override/ { backend app; cache on; ttl_override 100s; }\n"
               "route /cookies/ { backend app; cache on; cache_cookies on; }\n"
               "route /session/ { backend app; cache on; ttl 100s; key { cookie session; } }\n"
               "route /inv/ { backend app; cache on; ttl 100s; }\n"
               "route /big/ { backend app; cache on; ttl 100s; max_object_size 10k; }\n"
               "route /honor/ { backend app; cache on; ttl 100s; client_cache_control honor; }\n"
               "route /ignore/ { backend app; cache on; ttl 100s; client_cache_control ignore; }\n"
               "route /qsorted/ { backend app; cache on; ttl 100s; key { query sorted; } }\n"
               "route /qnone/ { backend app; cache on; ttl 100s; key { query none; } }\n"
               "route /qonly/ { backend app; cache on; ttl 100s; key { query only page; } }\n"
               "route /qexcept/ { backend app; cache on; ttl 100s;\n"
               "                  key { query except utm_source; } }\n"
               "route /xedge/ { backend app; cache on; ttl 100s; cache_status_header X-Edge; }\n"
               "route /xoff/ { backend app; cache on; ttl 100s; cache_status_header off; }\n"
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
    for (int i = 0; i < NCONN; i++)
        client_free(&conn[i]);
    for (int i = 0; i < NRESP; i++)
        http_response_clear(&r[i]);
    harness_free(&t);
    return 0;
}

/* ---- 1. a miss, then hits ------------------------------------------------ */

static void test_miss_then_hit_serves_the_same_response(void **state)
{
    (void)state;
    const char *target = "/basic/a?len=3000&" CC_100;
    get(&r[0], target, NULL);
    expect_status(&r[0], 200);
    expect_pattern_body(&r[0], 3000, 0);
    expect_stored_miss(&r[0], "uri-miss");

    get(&r[1], target, NULL);
    expect_pattern_body(&r[1], 3000, 0);
    long ttl1 = expect_hit(&r[1]);
    expect_same_fields(&r[0], &r[1]);
    long age1 = age_of(&r[1]);
    if (age1 > 1)
        fail_msg("first hit has Age %ld, expected 0 or 1", age1);

    sleep_ms(1100);
    get(&r[2], target, NULL);
    expect_pattern_body(&r[2], 3000, 0);
    long ttl2 = expect_hit(&r[2]);
    expect_same_fields(&r[0], &r[2]);
    long age2 = age_of(&r[2]);
    if (age2 < age1 + 1)
        fail_msg("Age %ld then %ld after 1.1 s: it should grow by at least 1", age1, age2);
    if (ttl2 > ttl1 - 1 || ttl1 > 100)
        fail_msg("ttl %ld then %ld after 1.1 s of a max-age=100 response", ttl1, ttl2);
    expect_upstream("/basic/a", 1);
}

/* ---- 2. where freshness comes from --------------------------------------- */

static void test_max_age_expires(void **state)
{
    (void)state;
    const char *target = "/fresh/maxage1?hdr=Cache-Control:max-age%3D1";
    wait_for_a_new_second();
    get(&r[0], target, NULL);
    expect_body(&r[0], "hello from origin /fresh/maxage1\n");
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[1], target, NULL);
    expect_body(&r[1], "hello from origin /fresh/maxage1\n");
    expect_hit(&r[1]);
    expect_upstream("/fresh/maxage1", 1);

    sleep_ms(1100);
    get(&r[2], target, NULL);
    expect_body(&r[2], "hello from origin /fresh/maxage1\n");
    expect_stored_miss(&r[2], "stale");
    expect_upstream("/fresh/maxage1", 2);
}

static void test_s_maxage_wins_over_max_age_in_a_shared_cache(void **state)
{
    (void)state;
    const char *target = "/fresh/smaxage?hdr=Cache-Control:s-maxage%3D100%2C%20max-age%3D0";
    get(&r[0], target, NULL);
    expect_body(&r[0], "hello from origin /fresh/smaxage\n");
    expect_stored_miss(&r[0], "uri-miss");
    expect_header(&r[0], "Cache-Control", "s-maxage=100, max-age=0");
    get(&r[1], target, NULL);
    expect_body(&r[1], "hello from origin /fresh/smaxage\n");
    long ttl = expect_hit(&r[1]);
    if (ttl < 98 || ttl > 100)
        fail_msg("ttl=%ld for s-maxage=100", ttl);
    expect_upstream("/fresh/smaxage", 1);
}

/* An HTTP-date for now + delta seconds, URL-encoded for hdr=. */
static void http_date_param(char *out, size_t size, long delta)
{
    time_t when = time(NULL) + delta;
    struct tm tm;
    gmtime_r(&when, &tm);
    char date[64];
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    size_t o = 0;
    for (const char *p = date; *p && o + 4 < size; p++) {
        if (*p == ' ' || *p == ',' || *p == ':')
            o += (size_t)snprintf(out + o, size - o, "%%%02X", (unsigned char)*p);
        else
            out[o++] = *p;
    }
    out[o] = '\0';
}

static void test_expires(void **state)
{
    (void)state;
    char date[128], target[256];

    /* In the past, with the origin's Date now: stale from the start. */
    http_date_param(date, sizeof date, -3600);
    snprintf(target, sizeof target, "/fresh/expired?hdr=Expires:%s", date);
    for (int i = 0; i < 2; i++) {
        get(&r[i], target, NULL);
        expect_status(&r[i], 200);
        expect_body(&r[i], "hello from origin /fresh/expired\n");
        expect_unstored_miss(&r[i], "uri-miss", "no-freshness");
    }
    expect_upstream("/fresh/expired", 2);

    /* In the future: fresh for that long. */
    http_date_param(date, sizeof date, 100);
    snprintf(target, sizeof target, "/fresh/expires?hdr=Expires:%s", date);
    get(&r[2], target, NULL);
    expect_body(&r[2], "hello from origin /fresh/expires\n");
    expect_stored_miss(&r[2], "uri-miss");
    get(&r[3], target, NULL);
    expect_body(&r[3], "hello from origin /fresh/expires\n");
    long ttl = expect_hit(&r[3]);
    if (ttl < 95 || ttl > 100)
        fail_msg("ttl=%ld for Expires 100 s ahead", ttl);
    expect_upstream("/fresh/expires", 1);
}

static void test_targeted_cache_control_wins_and_stays_here(void **state)
{
    (void)state;
    /* RFC 9213: with CDN-Cache-Control present, Cache-Control (no-cache
     * here) is for the caches after us. */
    const char *cdn = "/fresh/cdn?hdr=CDN-Cache-Control:max-age%3D100&hdr=Cache-Control:no-cache";
    get(&r[0], cdn, NULL);
    expect_body(&r[0], "hello from origin /fresh/cdn\n");
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[1], cdn, NULL);
    expect_body(&r[1], "hello from origin /fresh/cdn\n");
    expect_hit(&r[1]);
    for (int i = 0; i < 2; i++) {
        expect_no_header(&r[i], "CDN-Cache-Control");
        expect_header(&r[i], "Cache-Control", "no-cache");
    }
    expect_upstream("/fresh/cdn", 1);

    const char *sur =
        "/fresh/surrogate?hdr=Surrogate-Control:max-age%3D100&hdr=Cache-Control:max-age%3D0";
    get(&r[2], sur, NULL);
    expect_body(&r[2], "hello from origin /fresh/surrogate\n");
    expect_stored_miss(&r[2], "uri-miss");
    get(&r[3], sur, NULL);
    expect_body(&r[3], "hello from origin /fresh/surrogate\n");
    expect_hit(&r[3]);
    for (int i = 2; i < 4; i++) {
        expect_no_header(&r[i], "Surrogate-Control");
        expect_header(&r[i], "Cache-Control", "max-age=0");
    }
    expect_upstream("/fresh/surrogate", 1);
}

static void test_route_ttl_override_and_ttl(void **state)
{
    (void)state;
    /* ttl_override 100s: whatever the origin says. */
    get(&r[0], "/override/zero?hdr=Cache-Control:max-age%3D0", NULL);
    expect_body(&r[0], "hello from origin /override/zero\n");
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[1], "/override/zero?hdr=Cache-Control:max-age%3D0", NULL);
    expect_body(&r[1], "hello from origin /override/zero\n");
    long ttl = expect_hit(&r[1]);
    if (ttl < 98 || ttl > 100)
        fail_msg("ttl=%ld under ttl_override 100s", ttl);
    expect_upstream("/override/zero", 1);

    /* No freshness information: the default route does not store it... */
    get(&r[2], "/fresh/plain", NULL);
    expect_unstored_miss(&r[2], "uri-miss", "no-freshness");
    get(&r[3], "/fresh/plain", NULL);
    expect_body(&r[3], "hello from origin /fresh/plain\n");
    expect_unstored_miss(&r[3], "uri-miss", "no-freshness");
    expect_upstream("/fresh/plain", 2);

    /* ...a route with ttl 100s does. */
    get(&r[4], "/ttl/plain", NULL);
    expect_body(&r[4], "hello from origin /ttl/plain\n");
    expect_stored_miss(&r[4], "uri-miss");
    get(&r[5], "/ttl/plain", NULL);
    expect_body(&r[5], "hello from origin /ttl/plain\n");
    ttl = expect_hit(&r[5]);
    if (ttl < 98 || ttl > 100)
        fail_msg("ttl=%ld under ttl 100s", ttl);
    expect_upstream("/ttl/plain", 1);
}

/* ---- 3. never stored ----------------------------------------------------- */

static void test_no_store_and_private_are_never_served_from_cache(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        get(&r[0], "/never/nostore?hdr=Cache-Control:no-store", NULL);
        expect_body(&r[0], "hello from origin /never/nostore\n");
        expect_unstored_miss(&r[0], "uri-miss", "no-store");
        expect_upstream("/never/nostore", i + 1);

        get(&r[1], "/never/private?hdr=Cache-Control:private%2C%20max-age%3D100", NULL);
        expect_body(&r[1], "hello from origin /never/private\n");
        expect_unstored_miss(&r[1], "uri-miss", "private");
        expect_upstream("/never/private", i + 1);
    }
}

/* ---- 4. Set-Cookie ------------------------------------------------------- */

static void test_set_cookie_is_not_stored_by_default(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        get(&r[i], "/setcookie/a?hdr=Set-Cookie:id%3D42&" CC_100, NULL);
        expect_body(&r[i], "hello from origin /setcookie/a\n");
        expect_header(&r[i], "Set-Cookie", "id=42");
        expect_unstored_miss(&r[i], "uri-miss", "set-cookie");
    }
    expect_upstream("/setcookie/a", 2);
}

static void test_cache_cookies_stores_without_set_cookie(void **state)
{
    (void)state;
    const char *target = "/cookies/a?hdr=Set-Cookie:id%3D42&" CC_100;
    get(&r[0], target, NULL);
    expect_body(&r[0], "hello from origin /cookies/a\n");
    expect_header(&r[0], "Set-Cookie", "id=42");
    expect_stored_miss(&r[0], "uri-miss");
    for (int i = 1; i < 3; i++) {
        get(&r[i], target, NULL);
        expect_body(&r[i], "hello from origin /cookies/a\n");
        expect_hit(&r[i]);
        expect_no_header(&r[i], "Set-Cookie");
    }
    expect_upstream("/cookies/a", 1);
}

/* ---- 5. Cookie and Authorization ----------------------------------------- */

static void test_cookie_and_authorization_bypass_the_cache(void **state)
{
    (void)state;
    const char *target = "/private-req/a?" CC_100;
    get(&r[0], target, NULL);
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[1], target, NULL);
    expect_hit(&r[1]);
    expect_upstream("/private-req/a", 1);

    /* The stored object is there, but these requests may not share it. */
    get(&r[2], target, "Cookie: session=alice", NULL);
    expect_body(&r[2], "hello from origin /private-req/a\n");
    expect_bypass(&r[2], "cookie");
    expect_upstream("/private-req/a", 2);
    get(&r[3], target, "Authorization: Basic YWxpY2U6c2VjcmV0", NULL);
    expect_body(&r[3], "hello from origin /private-req/a\n");
    expect_bypass(&r[3], "authorization");
    expect_upstream("/private-req/a", 3);

    /* Nor are their responses stored: an uncached URL stays uncached
     * (for Authorization, RFC 9111 3.5: max-age alone does not allow it). */
    get(&r[4], "/private-req/b?" CC_100, "Cookie: session=alice", NULL);
    expect_bypass(&r[4], "cookie");
    get(&r[5], "/private-req/b?" CC_100, NULL);
    expect_body(&r[5], "hello from origin /private-req/b\n");
    expect_stored_miss(&r[5], "uri-miss");
    expect_upstream("/private-req/b", 2);

    get(&r[4], "/private-req/c?" CC_100, "Authorization: Basic YWxpY2U6c2VjcmV0", NULL);
    expect_bypass(&r[4], "authorization");
    get(&r[5], "/private-req/c?" CC_100, NULL);
    expect_body(&r[5], "hello from origin /private-req/c\n");
    expect_stored_miss(&r[5], "uri-miss");
    expect_upstream("/private-req/c", 2);
}

static void test_key_cookie_caches_per_cookie_value(void **state)
{
    (void)state;
    get(&r[0], "/session/page", "Cookie: session=alice", NULL);
    expect_body(&r[0], "hello from origin /session/page\n");
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[1], "/session/page", "Cookie: session=bob", NULL);
    expect_body(&r[1], "hello from origin /session/page\n");
    expect_stored_miss(&r[1], "uri-miss");
    expect_upstream("/session/page", 2);

    get(&r[2], "/session/page", "Cookie: session=alice", NULL);
    expect_hit(&r[2]);
    expect_same_origin_response(&r[0], &r[2]);
    get(&r[3], "/session/page", "Cookie: session=bob", NULL);
    expect_hit(&r[3]);
    expect_same_origin_response(&r[1], &r[3]);
    expect_body(&r[3], "hello from origin /session/page\n");
    expect_upstream("/session/page", 2);
}

/* ---- 6. Vary ------------------------------------------------------------- */

static void test_vary_keeps_variants_apart(void **state)
{
    (void)state;
    const char *target = "/vary/lang?hdr=Vary:Accept-Language&" CC_100;
    get(&r[0], target, "Accept-Language: en", NULL);
    expect_body(&r[0], "hello from origin /vary/lang\n");
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[1], target, "Accept-Language: fr", NULL);
    expect_body(&r[1], "hello from origin /vary/lang\n");
    expect_stored_miss(&r[1], "vary-miss");
    expect_different_origin_responses(&r[0], &r[1]);
    expect_upstream("/vary/lang", 2);

    get(&r[2], target, "Accept-Language: en", NULL);
    expect_hit(&r[2]);
    expect_same_origin_response(&r[0], &r[2]);
    get(&r[3], target, "Accept-Language: fr", NULL);
    expect_hit(&r[3]);
    expect_same_origin_response(&r[1], &r[3]);
    expect_header(&r[3], "Vary", "Accept-Language");
    expect_upstream("/vary/lang", 2);
}

static void test_vary_star_is_never_served_from_cache(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        get(&r[i], "/vary/star?hdr=Vary:*&" CC_100, NULL);
        expect_body(&r[i], "hello from origin /vary/star\n");
        expect_unstored_miss(&r[i], "uri-miss", "vary-star");
    }
    expect_upstream("/vary/star", 3);
}

/* ---- 7. invalidation by unsafe methods ----------------------------------- */

static void test_post_invalidates_its_uri_and_location(void **state)
{
    (void)state;
    get(&r[0], "/inv/a", NULL);
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[1], "/inv/a", NULL);
    expect_hit(&r[1]);
    expect_upstream("/inv/a", 1);

    post(&r[2], "/inv/a", "hello", NULL);
    expect_status(&r[2], 200);
    expect_body(&r[2], "hello from origin /inv/a\n");
    expect_bypass(&r[2], "method");
    expect_header(&r[2], "X-Origin-Body-Length", "5");
    expect_upstream("/inv/a", 2);

    get(&r[3], "/inv/a", NULL);
    expect_body(&r[3], "hello from origin /inv/a\n");
    expect_stored_miss(&r[3], "uri-miss");
    expect_upstream("/inv/a", 3);
    get(&r[4], "/inv/a", NULL);
    expect_hit(&r[4]);
    expect_upstream("/inv/a", 3);

    /* Location on the same host is invalidated too. */
    get(&r[0], "/inv/b", NULL);
    expect_stored_miss(&r[0], "uri-miss");
    post(&r[1], "/inv/create?hdr=Location:/inv/b", "x=1", NULL);
    expect_status(&r[1], 200);
    expect_header(&r[1], "Location", "/inv/b");
    get(&r[2], "/inv/b", NULL);
    expect_body(&r[2], "hello from origin /inv/b\n");
    expect_stored_miss(&r[2], "uri-miss");
    expect_upstream("/inv/b", 2);
    expect_upstream("/inv/create", 1);

    /* An error response invalidates nothing (RFC 9111 4.4). */
    get(&r[3], "/inv/c", NULL);
    expect_stored_miss(&r[3], "uri-miss");
    post(&r[4], "/inv/fail?status=500&hdr=Location:/inv/c", "x=1", NULL);
    expect_status(&r[4], 500);
    get(&r[5], "/inv/c", NULL);
    expect_hit(&r[5]);
    expect_upstream("/inv/c", 1);
}

/* ---- 8. only-if-cached --------------------------------------------------- */

static void test_only_if_cached(void **state)
{
    (void)state;
    get(&r[0], "/ttl/oic", "Cache-Control: only-if-cached", NULL);
    expect_status(&r[0], 504);
    expect_no_header(&r[0], "X-Origin-Port");
    expect_upstream("/ttl/oic", 0);

    get(&r[1], "/ttl/oic", NULL);
    expect_stored_miss(&r[1], "uri-miss");
    get(&r[2], "/ttl/oic", "Cache-Control: only-if-cached", NULL);
    expect_status(&r[2], 200);
    expect_body(&r[2], "hello from origin /ttl/oic\n");
    expect_hit(&r[2]);
    expect_upstream("/ttl/oic", 1);
}

/* A stored miss is in the store by the time its client has read it whole,
 * so that client's next request, on another connection (and so maybe
 * another worker), finds it: only-if-cached gets the object, not a 504. */
static void test_a_response_read_whole_is_already_in_the_cache(void **state)
{
    (void)state;
    enum { ROUNDS = 500 };
    int not_there = 0;
    char first_status[160] = "";
    for (int i = 0; i < ROUNDS; i++) {
        char target[64], path[32];
        snprintf(path, sizeof path, "/ttl/readwhole/%d", i);
        snprintf(target, sizeof target, "%s?len=65536", path);
        conn[0] = client_connect(h.port, READ_MS);
        conn[1] = client_connect(h.port, READ_MS);
        assert_non_null(conn[0]);
        assert_non_null(conn[1]);
        assert_int_equal(client_send_request(conn[0], "GET", target, NULL), 0);
        expect_ok(client_read_response(conn[0], 0, &r[0], READ_MS));
        /* At once: the checks of the first response can wait. */
        assert_int_equal(
            client_send_request(conn[1], "GET", target, "Cache-Control: only-if-cached", NULL), 0);
        expect_pattern_body(&r[0], 65536, 0);
        expect_stored_miss(&r[0], "uri-miss");
        expect_ok(client_read_response(conn[1], 0, &r[1], READ_MS));
        if (r[1].status != 200) {
            if (not_there++ == 0)
                snprintf(first_status, sizeof first_status, "%s: %d %s", target, r[1].status,
                         r[1].body ? r[1].body : "");
        } else {
            expect_pattern_body(&r[1], 65536, 0);
            expect_hit(&r[1]);
        }
        expect_upstream(path, 1);
        http_response_clear(&r[0]);
        http_response_clear(&r[1]);
        client_free(&conn[0]);
        client_free(&conn[1]);
    }
    if (not_there > 0)
        fail_msg("%d of %d stored misses were not in the cache right after their client read "
                 "them (first: %s)",
                 not_there, ROUNDS, first_status);
}

/* ---- 9. coalescing ------------------------------------------------------- */

struct burst_client {
    pthread_t tid;
    int port;
    const char *target;
    pthread_barrier_t *go;
    /* results, read by the main thread after the join */
    int rc;
    int status;
    bool pattern_ok; /* body is the expected pattern */
    size_t body_len;
    size_t want_len;
    char x_cache[8];
    char cache_status[96];
    char origin[32]; /* "conn/seq" */
};

static void copy_field(char *dst, size_t size, const struct http_response *resp, const char *name)
{
    const char *v = http_response_header(resp, name);
    snprintf(dst, size, "%s", v ? v : "");
}

/* One client: connect, wait for the others, one request, note the answer.
 * No cmocka here: assertions are the main thread's. */
static void *burst_main(void *arg)
{
    struct burst_client *b = arg;
    struct client *c = client_connect(b->port, READ_MS);
    pthread_barrier_wait(b->go);
    b->rc = CLIENT_ERROR;
    if (!c || client_send_request(c, "GET", b->target, NULL) != 0) {
        client_free(&c);
        return NULL;
    }
    struct http_response resp = {0};
    b->rc = client_read_response(c, 0, &resp, CLIENT_TIMEOUT_MS);
    b->status = resp.status;
    b->body_len = resp.body_len;
    b->pattern_ok = resp.body && resp.body_len == b->want_len &&
                    pattern_mismatch(resp.body, resp.body_len, 0) < 0;
    copy_field(b->x_cache, sizeof b->x_cache, &resp, "X-Cache");
    copy_field(b->cache_status, sizeof b->cache_status, &resp, "Cache-Status");
    char conn_id[12], seq[12];
    copy_field(conn_id, sizeof conn_id, &resp, "X-Origin-Conn");
    copy_field(seq, sizeof seq, &resp, "X-Origin-Seq");
    snprintf(b->origin, sizeof b->origin, "%s/%s", conn_id, seq);
    http_response_clear(&resp);
    client_free(&c);
    return NULL;
}

static struct burst_client *burst;

/* n clients at once on target, each expecting a pattern body of len bytes. */
static void run_burst(int n, const char *target, size_t len)
{
    burst = calloc((size_t)n, sizeof *burst);
    assert_non_null(burst);
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, (unsigned)n), 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < n; i++) {
        burst[i] =
            (struct burst_client){.port = h.port, .target = target, .go = &go, .want_len = len};
        if (pthread_create(&burst[i].tid, &attr, burst_main, &burst[i]) != 0)
            abort(); /* the others would wait at the barrier forever */
    }
    pthread_attr_destroy(&attr);
    for (int i = 0; i < n; i++)
        pthread_join(burst[i].tid, NULL);
    pthread_barrier_destroy(&go);
}

static int teardown_burst(void **state)
{
    free(burst);
    burst = NULL;
    return teardown(state);
}

static void test_coalescing_sends_one_request_for_a_burst(void **state)
{
    (void)state;
    enum { N = 200 };
    run_burst(N, "/burst/cold?delay=500&len=5000&" CC_100, 5000);
    int hits = 0, misses = 0, coalesced = 0;
    for (int i = 0; i < N; i++) {
        struct burst_client *b = &burst[i];
        if (b->rc != CLIENT_OK)
            fail_msg("client %d: no response (client rc %d)", i, b->rc);
        if (b->status != 200)
            fail_msg("client %d: status %d", i, b->status);
        if (!b->pattern_ok)
            fail_msg("client %d: body of %zu bytes is not the 5000-byte pattern", i, b->body_len);
        if (strcmp(b->origin, burst[0].origin) != 0)
            fail_msg("client %d got origin response %s, client 0 got %s", i, b->origin,
                     burst[0].origin);
        if (strcmp(b->x_cache, "HIT") == 0 && strncmp(b->cache_status, "tessera; hit; ", 14) == 0) {
            hits++;
            coalesced += strstr(b->cache_status, "; detail=coalesced") != NULL;
        } else if (strcmp(b->x_cache, "MISS") == 0 &&
                   strcmp(b->cache_status, "tessera; fwd=uri-miss; fwd-status=200; stored") == 0) {
            misses++;
        } else {
            fail_msg("client %d: X-Cache \"%s\", Cache-Status \"%s\"", i, b->x_cache,
                     b->cache_status);
        }
    }
    print_message("      %d hits (%d coalesced), %d miss\n", hits, coalesced, misses);
    assert_int_equal(misses, 1);
    assert_int_equal(hits, N - 1);
    expect_upstream("/burst/cold", 1);
}

static void test_coalescing_an_unstorable_response_serves_each_client_alone(void **state)
{
    (void)state;
    enum { N = 20 };
    run_burst(N, "/burst/private?len=100&delay=300&hdr=Cache-Control:private", 100);
    for (int i = 0; i < N; i++) {
        struct burst_client *b = &burst[i];
        if (b->rc != CLIENT_OK || b->status != 200 || !b->pattern_ok)
            fail_msg("client %d: rc %d, status %d, %zu body bytes", i, b->rc, b->status,
                     b->body_len);
        if (strcmp(b->x_cache, "MISS") != 0 || !strstr(b->cache_status, "; detail=private") ||
            strstr(b->cache_status, "; stored"))
            fail_msg("client %d: X-Cache \"%s\", Cache-Status \"%s\"", i, b->x_cache,
                     b->cache_status);
        for (int j = 0; j < i; j++)
            if (strcmp(b->origin, burst[j].origin) == 0)
                fail_msg("clients %d and %d got the same origin response %s", j, i, b->origin);
    }
    expect_upstream("/burst/private", N);
}

/* ---- 10. max_object_size ------------------------------------------------- */

static void test_larger_than_max_object_size_passes_unstored(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        get(&r[i], "/big/cl?len=20480", NULL);
        expect_status(&r[i], 200);
        expect_pattern_body(&r[i], 20480, 0);
        expect_header(&r[i], "Content-Length", "20480");
        expect_unstored_miss(&r[i], "uri-miss", "too-large");
        expect_upstream("/big/cl", i + 1);
    }
    /* Chunked: the size is only known as it streams. */
    for (int i = 2; i < 4; i++) {
        get(&r[i], "/big/chunked?len=20480&chunked=1&chunk=4096", NULL);
        expect_status(&r[i], 200);
        expect_pattern_body(&r[i], 20480, 0);
        expect_header(&r[i], "X-Cache", "MISS");
        /* The head went out before the size was known: it cannot say
         * "stored" (it was not). */
        assert_string_equal(cache_status(&r[i]), "tessera; fwd=uri-miss; fwd-status=200");
        expect_upstream("/big/chunked", i - 1);
    }
    /* Under the limit, the route caches. */
    get(&r[4], "/big/small?len=5000", NULL);
    expect_stored_miss(&r[4], "uri-miss");
    get(&r[5], "/big/small?len=5000", NULL);
    expect_pattern_body(&r[5], 5000, 0);
    expect_hit(&r[5]);
    expect_upstream("/big/small", 1);
}

/* ---- 11. eviction -------------------------------------------------------- */

static int setup_small_store(void **state)
{
    (void)state;
    if (!harness_init(&t, "cache-evict") || !harness_origin(&t, 0, NULL) ||
        !harness_tessera(&t,
                         "cache { memory 1m; }\n"
                         "backend app { server 127.0.0.1:%d; }\n"
                         "route default { backend app; cache on; ttl 100s; }\n",
                         t.origin_port[0])) {
        harness_free(&t);
        return -1;
    }
    return 0;
}

#define EVICT_OBJECTS 160
#define EVICT_SIZE 65536

/* GET /ev/i on conn[1]; returns the X-Cache value (static). */
static const char *evict_get(int i)
{
    static char x_cache[8];
    char target[64];
    snprintf(target, sizeof target, "/ev/%d?len=%d", i, EVICT_SIZE);
    assert_int_equal(client_send_request(conn[1], "GET", target, NULL), 0);
    int rc = client_read_response(conn[1], 0, &r[0], READ_MS);
    if (rc != CLIENT_OK)
        fail_msg("GET %s: no response (client rc %d)", target, rc);
    expect_status(&r[0], 200);
    expect_pattern_body(&r[0], EVICT_SIZE, 0);
    const char *v = http_response_header(&r[0], "X-Cache");
    snprintf(x_cache, sizeof x_cache, "%s", v ? v : "");
    http_response_clear(&r[0]);
    return x_cache;
}

static bool sanitizer_build(void)
{
    const char *build = getenv("BUILD");
    return build != NULL && strstr(build, "asan") != NULL;
}

static long evict_count(int i)
{
    char path[32];
    snprintf(path, sizeof path, "/ev/%d", i);
    return harness_origin_count(&t, 0, path);
}

static void test_lru_eviction_keeps_the_newest_in_bounded_memory(void **state)
{
    (void)state;
    conn[1] = client_connect(t.port, READ_MS);
    assert_non_null(conn[1]);
    long rss_start = proc_rss_kb(t.tessera->pid), rss_max = 0;
    assert_true(rss_start > 0);
    for (int i = 0; i < EVICT_OBJECTS; i++) {
        const char *x = evict_get(i);
        if (strcmp(x, "MISS") != 0)
            fail_msg("first GET of /ev/%d: X-Cache \"%s\"", i, x);
        if (i % 16 == 15) {
            long rss = proc_rss_kb(t.tessera->pid);
            rss_max = rss > rss_max ? rss : rss_max;
        }
    }
    long limit = sanitizer_build() ? RSS_LIMIT_ASAN_KB : RSS_LIMIT_KB;
    print_message("      tessera RSS %ld kB at the start, %ld kB at most\n", rss_start, rss_max);
    if (rss_max <= 0 || rss_max > limit)
        fail_msg("tessera RSS %ld kB after 10 MB through a 1m store (limit %ld kB)", rss_max,
                 limit);
    if (!sanitizer_build() && rss_max - rss_start > RSS_GROWTH_KB)
        fail_msg("tessera RSS grew by %ld kB while 10 MB went through a 1m store (limit %ld kB)",
                 rss_max - rss_start, RSS_GROWTH_KB);

    /* The newest objects are still there, back to the first one evicted;
     * 1 MiB holds at most 16 objects of 64 KiB. */
    int held = 0;
    while (held < EVICT_OBJECTS && strcmp(evict_get(EVICT_OBJECTS - 1 - held), "HIT") == 0)
        held++;
    print_message("      the store held the newest %d objects\n", held);
    if (held < 8 || held > 16)
        fail_msg("a 1m store held the newest %d objects of 64 KiB, expected 8..16", held);
    for (int i = 0; i < held; i++)
        assert_int_equal(evict_count(EVICT_OBJECTS - 1 - i), 1);

    /* The oldest are gone: fetched again. */
    for (int i = 0; i < 4; i++) {
        const char *x = evict_get(i);
        if (strcmp(x, "MISS") != 0)
            fail_msg("/ev/%d after 160 newer objects: X-Cache \"%s\", expected MISS", i, x);
        assert_int_equal(evict_count(i), 2);
    }
    long rss = proc_rss_kb(t.tessera->pid);
    if (rss <= 0 || rss > limit)
        fail_msg("tessera RSS %ld kB at the end (limit %ld kB)", rss, limit);
}

/* ---- 12. HEAD ------------------------------------------------------------ */

static void test_head_is_answered_from_the_get_object(void **state)
{
    (void)state;
    const char *target = "/head/a?len=1234&" CC_100;
    conn[1] = client_connect(h.port, READ_MS);
    assert_non_null(conn[1]);
    assert_int_equal(client_send_request(conn[1], "GET", target, NULL), 0);
    expect_ok(client_read_response(conn[1], 0, &r[0], READ_MS));
    expect_pattern_body(&r[0], 1234, 0);
    expect_stored_miss(&r[0], "uri-miss");

    assert_int_equal(client_send_request(conn[1], "HEAD", target, NULL), 0);
    expect_ok(client_read_response(conn[1], CLIENT_HEAD, &r[1], READ_MS));
    expect_hit(&r[1]);
    expect_header(&r[1], "Content-Length", "1234");
    assert_int_equal(r[1].body_len, 0);
    expect_same_origin_response(&r[0], &r[1]);

    /* Nothing followed the HEAD's head: the next response parses. */
    assert_int_equal(client_send_request(conn[1], "GET", target, NULL), 0);
    expect_ok(client_read_response(conn[1], 0, &r[2], READ_MS));
    expect_pattern_body(&r[2], 1234, 0);
    expect_hit(&r[2]);
    expect_upstream("/head/a", 1);

    /* A HEAD on its own connection, too. */
    head(&r[3], target, NULL);
    expect_hit(&r[3]);
    expect_header(&r[3], "Content-Length", "1234");
    assert_int_equal(r[3].body_len, 0);
    expect_upstream("/head/a", 1);
}

/* ---- 13. the client's Cache-Control -------------------------------------- */

static void test_client_cache_control_safe_honor_ignore(void **state)
{
    (void)state;
    /* Warm one object per mode, then let them age past 1 s. */
    get(&r[0], "/cccsafe/a?" CC_100, NULL);
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[0], "/honor/a", NULL);
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[0], "/honor/b", NULL);
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[0], "/ignore/a", NULL);
    expect_stored_miss(&r[0], "uri-miss");
    sleep_ms(1100);

    /* safe (the default): a reload's no-cache does not reach the origin;
     * a max-age the object is older than does. */
    get(&r[1], "/cccsafe/a?" CC_100, "Cache-Control: no-cache", NULL);
    expect_hit(&r[1]);
    get(&r[1], "/cccsafe/a?" CC_100, "Pragma: no-cache", NULL);
    expect_hit(&r[1]);
    expect_upstream("/cccsafe/a", 1);
    get(&r[1], "/cccsafe/a?" CC_100, "Cache-Control: max-age=1", NULL);
    expect_body(&r[1], "hello from origin /cccsafe/a\n");
    expect_stored_miss(&r[1], "request");
    expect_upstream("/cccsafe/a", 2);

    /* honor: no-cache and max-age=0 go to the origin. */
    get(&r[2], "/honor/a", "Cache-Control: no-cache", NULL);
    expect_body(&r[2], "hello from origin /honor/a\n");
    expect_stored_miss(&r[2], "request");
    expect_upstream("/honor/a", 2);
    get(&r[3], "/honor/b", "Cache-Control: max-age=0", NULL);
    expect_body(&r[3], "hello from origin /honor/b\n");
    expect_stored_miss(&r[3], "request");
    expect_upstream("/honor/b", 2);
    get(&r[3], "/honor/b", NULL);
    expect_hit(&r[3]);
    expect_upstream("/honor/b", 2);

    /* ignore: the request's directives change nothing. */
    get(&r[4], "/ignore/a", "Cache-Control: no-cache, max-age=0", NULL);
    expect_hit(&r[4]);
    expect_upstream("/ignore/a", 1);
    get(&r[5], "/ignore/b", "Cache-Control: only-if-cached", NULL);
    expect_body(&r[5], "hello from origin /ignore/b\n");
    expect_stored_miss(&r[5], "uri-miss");
    expect_upstream("/ignore/b", 1);
}

/* ---- 14. the query in the key -------------------------------------------- */

static void test_query_key_modes(void **state)
{
    (void)state;
    /* all (the default): as sent, so the order matters */
    get(&r[0], "/ttl/q?a=1&b=2", NULL);
    expect_stored_miss(&r[0], "uri-miss");
    get(&r[0], "/ttl/q?b=2&a=1", NULL);
    expect_stored_miss(&r[0], "uri-miss");
    expect_upstream("/ttl/q", 2);

    /* sorted */
    get(&r[1], "/qsorted/q?a=1&b=2", NULL);
    expect_stored_miss(&r[1], "uri-miss");
    get(&r[2], "/qsorted/q?b=2&a=1", NULL);
    expect_hit(&r[2]);
    expect_same_origin_response(&r[1], &r[2]);
    get(&r[2], "/qsorted/q?a=1&b=3", NULL);
    expect_stored_miss(&r[2], "uri-miss");
    expect_upstream("/qsorted/q", 2);

    /* none */
    get(&r[3], "/qnone/q?x=1", NULL);
    expect_stored_miss(&r[3], "uri-miss");
    get(&r[4], "/qnone/q?x=2", NULL);
    expect_hit(&r[4]);
    get(&r[4], "/qnone/q", NULL);
    expect_hit(&r[4]);
    expect_same_origin_response(&r[3], &r[4]);
    expect_body(&r[4], "hello from origin /qnone/q\n");
    expect_upstream("/qnone/q", 1);

    /* only page */
    get(&r[5], "/qonly/q?page=1&utm_source=a", NULL);
    expect_stored_miss(&r[5], "uri-miss");
    get(&r[5], "/qonly/q?sort=x&page=1", NULL);
    expect_hit(&r[5]);
    get(&r[5], "/qonly/q?page=2", NULL);
    expect_stored_miss(&r[5], "uri-miss");
    expect_upstream("/qonly/q", 2);

    /* except utm_source */
    get(&r[5], "/qexcept/q?id=1&utm_source=a", NULL);
    expect_stored_miss(&r[5], "uri-miss");
    get(&r[5], "/qexcept/q?utm_source=b&id=1", NULL);
    expect_hit(&r[5]);
    get(&r[5], "/qexcept/q?id=1", NULL);
    expect_hit(&r[5]);
    get(&r[5], "/qexcept/q?id=2&utm_source=a", NULL);
    expect_stored_miss(&r[5], "uri-miss");
    expect_upstream("/qexcept/q", 2);
}

/* ---- 15. the cache status header ----------------------------------------- */

static void test_cache_status_header_name(void **state)
{
    (void)state;
    get(&r[0], "/xedge/a", NULL);
    expect_header(&r[0], "X-Edge", "MISS");
    expect_no_header(&r[0], "X-Cache");
    get(&r[1], "/xedge/a", NULL);
    expect_header(&r[1], "X-Edge", "HIT");
    expect_no_header(&r[1], "X-Cache");
    expect_body(&r[1], "hello from origin /xedge/a\n");
    expect_upstream("/xedge/a", 1);

    get(&r[2], "/xoff/a", NULL);
    assert_string_equal(cache_status(&r[2]), "tessera; fwd=uri-miss; fwd-status=200; stored");
    get(&r[3], "/xoff/a", NULL);
    expect_body(&r[3], "hello from origin /xoff/a\n");
    assert_non_null(strstr(cache_status(&r[3]), "tessera; hit; ttl="));
    for (int i = 2; i < 4; i++) {
        expect_no_header(&r[i], "X-Cache");
        expect_no_header(&r[i], "X-Edge");
    }
    expect_upstream("/xoff/a", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_miss_then_hit_serves_the_same_response, teardown),
        cmocka_unit_test_teardown(test_max_age_expires, teardown),
        cmocka_unit_test_teardown(test_s_maxage_wins_over_max_age_in_a_shared_cache, teardown),
        cmocka_unit_test_teardown(test_expires, teardown),
        cmocka_unit_test_teardown(test_targeted_cache_control_wins_and_stays_here, teardown),
        cmocka_unit_test_teardown(test_route_ttl_override_and_ttl, teardown),
        cmocka_unit_test_teardown(test_no_store_and_private_are_never_served_from_cache, teardown),
        cmocka_unit_test_teardown(test_set_cookie_is_not_stored_by_default, teardown),
        cmocka_unit_test_teardown(test_cache_cookies_stores_without_set_cookie, teardown),
        cmocka_unit_test_teardown(test_cookie_and_authorization_bypass_the_cache, teardown),
        cmocka_unit_test_teardown(test_key_cookie_caches_per_cookie_value, teardown),
        cmocka_unit_test_teardown(test_vary_keeps_variants_apart, teardown),
        cmocka_unit_test_teardown(test_vary_star_is_never_served_from_cache, teardown),
        cmocka_unit_test_teardown(test_post_invalidates_its_uri_and_location, teardown),
        cmocka_unit_test_teardown(test_only_if_cached, teardown),
        cmocka_unit_test_teardown(test_a_response_read_whole_is_already_in_the_cache, teardown),
        cmocka_unit_test_teardown(test_coalescing_sends_one_request_for_a_burst, teardown_burst),
        cmocka_unit_test_teardown(test_coalescing_an_unstorable_response_serves_each_client_alone,
                                  teardown_burst),
        cmocka_unit_test_teardown(test_larger_than_max_object_size_passes_unstored, teardown),
        cmocka_unit_test_setup_teardown(test_lru_eviction_keeps_the_newest_in_bounded_memory,
                                        setup_small_store, teardown),
        cmocka_unit_test_teardown(test_head_is_answered_from_the_get_object, teardown),
        cmocka_unit_test_teardown(test_client_cache_control_safe_honor_ignore, teardown),
        cmocka_unit_test_teardown(test_query_key_modes, teardown),
        cmocka_unit_test_teardown(test_cache_status_header_name, teardown),
    };
    return cmocka_run_group_tests_name("cache", tests, group_setup, group_teardown);
}
