/*
 * tests/unit/cache/freshness.c: RFC 9111 storability, freshness lifetime,
 * age and the serving decision (cache/freshness.c), with exact values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cache/freshness.h"

#define SEC INT64_C(1000)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define T0 (INT64_C(1717200000) * SEC) /* 2024-06-01T00:00:00Z, in ms */

/* ---- fixtures ---- */

/* The config's defaults for a caching route. */
static struct config_cache_policy policy(void)
{
    return (struct config_cache_policy){
        .enabled = true,
        .honor_cache_control = true,
        .methods = CACHE_METHOD_GET | CACHE_METHOD_HEAD,
        .key_query = KEY_QUERY_ALL,
        .client_cc = CLIENT_CC_SAFE,
        .coalesce = true,
        .max_variants = 16,
    };
}

static struct cache_control cc_of(const char *v)
{
    struct cache_control cc = {0};

    cache_control_parse(&cc, v, strlen(v));
    return cc;
}

/* A 200 received at T0 with Date: T0 and the given Cache-Control. */
static struct cache_response_facts resp(const char *cc)
{
    return (struct cache_response_facts){
        .status = 200,
        .cc = cc_of(cc),
        .has_date = true,
        .date_ms = T0,
        .response_time_ms = T0,
    };
}

static struct cache_request_facts get(const char *cc)
{
    return (struct cache_request_facts){.method_get = true, .cc = cc_of(cc)};
}

static int64_t lifetime(const struct cache_response_facts *rf, const struct config_cache_policy *p)
{
    return cache_freshness_lifetime(rf, p, T0);
}

/* ---- cache_pick_targeted ---- */

static void test_pick_targeted(void **state)
{
    struct cache_control cdn = cc_of("max-age=30"), sur = cc_of("max-age=20");
    struct cache_control cc = cc_of("private"), empty = {0};
    bool targeted = true;

    (void)state;
    assert_ptr_equal(cache_pick_targeted(NULL, false, NULL, false, &cc, &targeted), &cc);
    assert_false(targeted);
    assert_ptr_equal(cache_pick_targeted(&cdn, true, &sur, true, &cc, &targeted), &cdn);
    assert_true(targeted);
    assert_ptr_equal(cache_pick_targeted(&cdn, false, &sur, true, &cc, &targeted), &sur);
    assert_true(targeted);
    assert_ptr_equal(cache_pick_targeted(NULL, false, &sur, true, &cc, NULL), &sur);
    /* present but empty (no directive): not valid, fall through */
    assert_ptr_equal(cache_pick_targeted(&empty, true, &sur, true, &cc, &targeted), &sur);
    assert_ptr_equal(cache_pick_targeted(&empty, true, &empty, true, &cc, &targeted), &cc);
    assert_false(targeted);
}

/* RFC 9213: CDN-Cache-Control's freshness wins and Expires is ignored. */
static void test_targeted_freshness(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_control cdn = cc_of("max-age=600"), cc = cc_of("no-store, max-age=5");
    struct cache_response_facts rf = resp("");
    struct cache_request_facts req = get("");

    (void)state;
    rf.cc = *cache_pick_targeted(&cdn, true, NULL, false, &cc, &rf.targeted);
    assert_true(rf.targeted);
    assert_int_equal(lifetime(&rf, &p), 600 * SEC);
    assert_int_equal(cache_storable(&req, &rf, &p), CACHE_STORABLE); /* Cache-Control's
                                                                      * no-store is not ours */
    /* a targeted field without freshness: Expires does not count, ttl does */
    cdn = cc_of("public");
    rf.cc = *cache_pick_targeted(&cdn, true, NULL, false, &cc, &rf.targeted);
    rf.has_expires = true;
    rf.expires_ms = T0 + HOUR;
    assert_int_equal(lifetime(&rf, &p), 0);
    p.ttl_ms = 90 * SEC;
    assert_int_equal(lifetime(&rf, &p), 90 * SEC);
    /* the same response without targeting: Expires - Date */
    rf.targeted = false;
    assert_int_equal(lifetime(&rf, &p), HOUR);
}

/* ---- cache_freshness_lifetime ---- */

static void test_lifetime_max_age(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_response_facts rf = resp("max-age=60");

    (void)state;
    assert_int_equal(lifetime(&rf, &p), 60 * SEC);
    rf = resp("max-age=\"60\"");
    assert_int_equal(lifetime(&rf, &p), 60 * SEC);
    rf = resp("max-age=0");
    assert_int_equal(lifetime(&rf, &p), 0);
    rf = resp("max-age=99999999999");
    assert_int_equal(lifetime(&rf, &p), INT64_C(2147483648) * SEC);
}

static void test_lifetime_s_maxage_wins(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_response_facts rf = resp("max-age=60, s-maxage=120");

    (void)state;
    assert_int_equal(lifetime(&rf, &p), 120 * SEC);
    rf = resp("s-maxage=10, max-age=600");
    assert_int_equal(lifetime(&rf, &p), 10 * SEC);
    rf = resp("s-maxage=0, max-age=600");
    assert_int_equal(lifetime(&rf, &p), 0);
}

static void test_lifetime_expires(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_response_facts rf = resp("");

    (void)state;
    rf.has_expires = true;
    rf.expires_ms = T0 + HOUR;
    assert_int_equal(lifetime(&rf, &p), HOUR);
    rf.date_ms = T0 - 10 * SEC; /* Expires - Date, not - now */
    assert_int_equal(lifetime(&rf, &p), HOUR + 10 * SEC);
    rf.expires_ms = T0 - DAY; /* in the past */
    assert_int_equal(lifetime(&rf, &p), 0);
    rf.expires_ms = rf.date_ms;
    assert_int_equal(lifetime(&rf, &p), 0);

    /* max-age (and s-maxage) make Expires irrelevant, RFC 9111 5.3 */
    rf = resp("max-age=30");
    rf.has_expires = true;
    rf.expires_ms = T0 + HOUR;
    assert_int_equal(lifetime(&rf, &p), 30 * SEC);
    rf.expires_invalid = true;
    assert_int_equal(lifetime(&rf, &p), 30 * SEC);
}

/* RFC 9111 5.3: an invalid Expires means already expired: no ttl, no
 * heuristic. */
static void test_lifetime_expires_invalid(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_response_facts rf = resp("");

    (void)state;
    rf.has_expires = true;
    rf.expires_invalid = true;
    rf.has_last_modified = true;
    rf.last_modified_ms = T0 - 5 * DAY;
    p.ttl_ms = HOUR;
    assert_int_equal(lifetime(&rf, &p), 0);
    p.ttl_override_set = true;
    p.ttl_override_ms = 5 * MIN;
    assert_int_equal(lifetime(&rf, &p), 5 * MIN);
}

static void test_lifetime_date_missing(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_response_facts rf = resp("");

    (void)state;
    rf.has_date = false;
    rf.date_ms = 0;
    rf.has_expires = true;
    rf.expires_ms = T0 + 2 * HOUR;
    assert_int_equal(cache_freshness_lifetime(&rf, &p, T0), 2 * HOUR);
    assert_int_equal(cache_freshness_lifetime(&rf, &p, T0 + HOUR), HOUR);
    assert_int_equal(cache_freshness_lifetime(&rf, &p, T0 + 3 * HOUR), 0);
}

/* RFC 9111 4.2.1: invalid freshness information: stale, whatever else. */
static void test_lifetime_invalid_freshness(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_response_facts rf = resp("max-age=abc");

    (void)state;
    p.ttl_ms = HOUR;
    assert_int_equal(lifetime(&rf, &p), 0);
    rf = resp("max-age=60, max-age=120"); /* duplicate, different */
    assert_int_equal(lifetime(&rf, &p), 0);
    rf = resp("max-age=60, max-age=60"); /* duplicate, same: fine */
    assert_int_equal(lifetime(&rf, &p), 60 * SEC);
    rf = resp("s-maxage=\"x\", max-age=60");
    assert_int_equal(lifetime(&rf, &p), 0);
    rf = resp("max-age=");
    rf.has_expires = true;
    rf.expires_ms = T0 + HOUR;
    assert_int_equal(lifetime(&rf, &p), 0);
    /* ttl_override still wins; honor off ignores the broken value */
    p.ttl_override_set = true;
    p.ttl_override_ms = 10 * SEC;
    assert_int_equal(lifetime(&rf, &p), 10 * SEC);
    p.ttl_override_set = false;
    p.honor_cache_control = false;
    assert_int_equal(lifetime(&rf, &p), HOUR);
}

static void test_lifetime_ttl_override(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_response_facts rf = resp("s-maxage=600, max-age=300");

    (void)state;
    p.ttl_override_set = true;
    p.ttl_override_ms = 42 * SEC;
    p.ttl_ms = HOUR;
    assert_int_equal(lifetime(&rf, &p), 42 * SEC);
    p.ttl_override_ms = 0; /* an explicit zero is an override too */
    assert_int_equal(lifetime(&rf, &p), 0);
    p.ttl_override_ms = UINT64_MAX;
    assert_int_equal(lifetime(&rf, &p), INT64_MAX);
}

static void test_lifetime_honor_off(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_response_facts rf = resp("max-age=600, s-maxage=900");

    (void)state;
    p.honor_cache_control = false;
    p.ttl_ms = 30 * SEC;
    assert_int_equal(lifetime(&rf, &p), 30 * SEC);
    rf = resp("");
    rf.has_expires = true;
    rf.expires_ms = T0 + DAY;
    assert_int_equal(lifetime(&rf, &p), 30 * SEC);
    rf.expires_invalid = true;
    assert_int_equal(lifetime(&rf, &p), 30 * SEC);
    /* no ttl: heuristics still apply, the origin's freshness does not */
    p.ttl_ms = 0;
    rf = resp("max-age=600");
    assert_int_equal(lifetime(&rf, &p), 0);
    rf.has_last_modified = true;
    rf.last_modified_ms = T0 - 10 * HOUR;
    assert_int_equal(lifetime(&rf, &p), HOUR);
}

static void test_lifetime_route_ttl(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_response_facts rf = resp("public");

    (void)state;
    p.ttl_ms = 5 * MIN;
    assert_int_equal(lifetime(&rf, &p), 5 * MIN);
    rf.has_last_modified = true; /* ttl beats the heuristic */
    rf.last_modified_ms = T0 - 100 * DAY;
    assert_int_equal(lifetime(&rf, &p), 5 * MIN);
    rf = resp("max-age=7"); /* the origin's explicit value beats ttl */
    assert_int_equal(lifetime(&rf, &p), 7 * SEC);
}

/* RFC 9111 4.2.2: 10% of Date - Last-Modified, capped at a day. */
static void test_lifetime_heuristic(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_response_facts rf = resp("");

    (void)state;
    assert_int_equal(lifetime(&rf, &p), 0); /* no Last-Modified */
    rf.has_last_modified = true;
    rf.last_modified_ms = T0 - 5 * DAY;
    assert_int_equal(lifetime(&rf, &p), 12 * HOUR);
    rf.last_modified_ms = T0 - 10 * DAY;
    assert_int_equal(lifetime(&rf, &p), DAY);
    assert_int_equal(lifetime(&rf, &p), CACHE_HEURISTIC_MAX_MS);
    rf.last_modified_ms = T0 - 365 * DAY; /* capped */
    assert_int_equal(lifetime(&rf, &p), DAY);
    rf.last_modified_ms = T0 - 12345; /* exact: floor(1234.5) */
    assert_int_equal(lifetime(&rf, &p), 1234);
    rf.last_modified_ms = T0; /* modified just now */
    assert_int_equal(lifetime(&rf, &p), 0);
    rf.last_modified_ms = T0 + HOUR; /* in the future */
    assert_int_equal(lifetime(&rf, &p), 0);

    /* Date missing: the response time */
    rf.has_date = false;
    rf.last_modified_ms = T0 - 5 * DAY;
    assert_int_equal(cache_freshness_lifetime(&rf, &p, T0 + 5 * DAY), DAY);
    assert_int_equal(cache_freshness_lifetime(&rf, &p, T0), 12 * HOUR);
}

static void test_lifetime_heuristic_status(void **state)
{
    static const int heuristic[] = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};
    struct config_cache_policy p = policy();
    struct cache_response_facts rf = resp("");

    (void)state;
    rf.has_last_modified = true;
    rf.last_modified_ms = T0 - 10 * HOUR;
    for (size_t i = 0; i < sizeof heuristic / sizeof heuristic[0]; i++) {
        rf.status = heuristic[i];
        assert_true(cache_status_heuristic(heuristic[i]));
        assert_int_equal(lifetime(&rf, &p), HOUR);
    }
    assert_true(cache_status_heuristic(206));
    rf.status = 302;
    assert_false(cache_status_heuristic(302));
    assert_int_equal(lifetime(&rf, &p), 0);
    rf.cc = cc_of("public"); /* public allows heuristics for any status */
    assert_int_equal(lifetime(&rf, &p), HOUR);
    rf.status = 500;
    assert_int_equal(lifetime(&rf, &p), HOUR);
    rf.cc = cc_of("");
    assert_int_equal(lifetime(&rf, &p), 0);
}

/* ---- age ---- */

static void test_age_no_upstream_age(void **state)
{
    struct cache_response_facts rf = resp("");

    (void)state;
    /* request sent at T0, answered at T0+500ms, Date T0 */
    assert_int_equal(cache_corrected_initial_age(&rf, T0, T0 + 500), 500);
    /* Date says the origin answered 2s before we got it: apparent age wins */
    assert_int_equal(cache_corrected_initial_age(&rf, T0 + 1800, T0 + 2000), 2000);
    /* without Date, only the response delay */
    rf.has_date = false;
    assert_int_equal(cache_corrected_initial_age(&rf, T0, T0 + 300), 300);
}

static void test_age_upstream_age(void **state)
{
    struct cache_response_facts rf = resp("");

    (void)state;
    rf.has_age = true;
    rf.age_ms = 60 * SEC;
    rf.date_ms = T0 + 200;
    /* corrected_age_value = 60s + 200ms delay > apparent age 0 */
    assert_int_equal(cache_corrected_initial_age(&rf, T0, T0 + 200), 60 * SEC + 200);
    /* origin clock 100s behind: apparent age 100s > 10s + delay */
    rf.age_ms = 10 * SEC;
    rf.date_ms = T0 - 100 * SEC;
    assert_int_equal(cache_corrected_initial_age(&rf, T0 - 1000, T0), 100 * SEC);
}

static void test_age_clock_skew(void **state)
{
    struct cache_response_facts rf = resp("");

    (void)state;
    /* Date in the future: apparent age 0, never negative */
    rf.date_ms = T0 + 30 * SEC;
    assert_int_equal(cache_corrected_initial_age(&rf, T0 - 250, T0), 250);
    rf.has_age = true;
    rf.age_ms = 5 * SEC;
    assert_int_equal(cache_corrected_initial_age(&rf, T0 - 250, T0), 5 * SEC + 250);
    /* a request time after the response time counts as no delay */
    rf.has_age = false;
    assert_int_equal(cache_corrected_initial_age(&rf, T0 + 10, T0), 0);
    /* absurd values saturate */
    rf.has_age = true;
    rf.age_ms = INT64_MAX;
    assert_int_equal(cache_corrected_initial_age(&rf, T0 - 1, T0), INT64_MAX);
}

static void test_current_age(void **state)
{
    (void)state;
    assert_int_equal(cache_current_age(5 * SEC, T0, T0 + 10 * SEC), 15 * SEC);
    assert_int_equal(cache_current_age(5 * SEC, T0, T0), 5 * SEC);
    assert_int_equal(cache_current_age(5 * SEC, T0, T0 - SEC), 5 * SEC); /* clock went back */
    assert_int_equal(cache_current_age(0, T0, T0 + 1), 1);
    assert_int_equal(cache_current_age(INT64_MAX - 5, 0, 10), INT64_MAX);
}

static void test_age_header_seconds(void **state)
{
    (void)state;
    assert_int_equal(cache_age_header_seconds(0), 0);
    assert_int_equal(cache_age_header_seconds(999), 0);
    assert_int_equal(cache_age_header_seconds(1000), 1);
    assert_int_equal(cache_age_header_seconds(59999), 59);
    assert_int_equal(cache_age_header_seconds(-5000), 0);
    assert_int_equal(cache_age_header_seconds(INT64_C(2147483648) * SEC + 999),
                     INT64_C(2147483648));
    assert_int_equal(cache_age_header_seconds(INT64_MAX), INT64_C(2147483648));
}

/* ---- cache_storable ---- */

static enum cache_store_verdict storable(const struct cache_request_facts *req,
                                         const struct cache_response_facts *rf,
                                         const struct config_cache_policy *p)
{
    return cache_storable(req, rf, p);
}

static void test_storable_basic(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_request_facts req = get("");
    struct cache_response_facts rf = resp("max-age=60");

    (void)state;
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
}

static void test_storable_method(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_request_facts req = get("");
    struct cache_response_facts rf = resp("max-age=60");

    (void)state;
    req = (struct cache_request_facts){.method_head = true};
    assert_int_equal(storable(&req, &rf, &p), CACHE_NOT_METHOD); /* HEAD never stores */
    req = (struct cache_request_facts){0};                       /* POST, PUT, ... */
    assert_int_equal(storable(&req, &rf, &p), CACHE_NOT_METHOD);
    req = get("");
    p.methods = CACHE_METHOD_HEAD;
    assert_int_equal(storable(&req, &rf, &p), CACHE_NOT_METHOD);
    p.methods = CACHE_METHOD_GET;
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
}

static void test_storable_status(void **state)
{
    static const int heuristic[] = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};
    struct config_cache_policy p = policy();
    struct cache_request_facts req = get("");
    struct cache_response_facts rf = resp("");

    (void)state;
    p.ttl_ms = MIN;
    for (size_t i = 0; i < sizeof heuristic / sizeof heuristic[0]; i++) {
        rf.status = heuristic[i];
        assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    }
    static const int never[] = {100, 101, 199, 206, 304, 600, 0, -1};
    rf.cc = cc_of("max-age=60, public");
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
        rf.status = never[i];
        assert_int_equal(storable(&req, &rf, &p), CACHE_NOT_STATUS);
    }
    /* others only with explicit freshness or public; ttl is not enough */
    static const int explicit_only[] = {201, 302, 303, 307, 400, 403, 500, 502, 503, 504};
    for (size_t i = 0; i < sizeof explicit_only / sizeof explicit_only[0]; i++) {
        rf.status = explicit_only[i];
        rf.cc = cc_of("");
        rf.has_expires = false;
        assert_int_equal(storable(&req, &rf, &p), CACHE_NOT_STATUS);
        rf.cc = cc_of("max-age=10");
        assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
        rf.cc = cc_of("s-maxage=10");
        assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
        rf.cc = cc_of("public");
        assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
        rf.cc = cc_of("");
        rf.has_expires = true;
        rf.expires_ms = T0 + MIN;
        assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    }
    rf.has_expires = false;
    rf.status = 503;
    p.ttl_override_set = true;
    p.ttl_override_ms = HOUR;
    assert_int_equal(storable(&req, &rf, &p), CACHE_NOT_STATUS);
    /* honor off: the origin's freshness does not make a 500 storable */
    p.ttl_override_set = false;
    p.honor_cache_control = false;
    rf.status = 500;
    rf.cc = cc_of("max-age=60");
    assert_int_equal(storable(&req, &rf, &p), CACHE_NOT_STATUS);
    rf.cc = cc_of("public, max-age=60");
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
}

/* RFC 9111 5.2.2.3 */
static void test_storable_must_understand(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_request_facts req = get("");
    struct cache_response_facts rf = resp("must-understand, max-age=60");

    (void)state;
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    rf.status = 299; /* a status RFC 9110 does not define */
    assert_int_equal(storable(&req, &rf, &p), CACHE_NOT_STATUS);
    rf.cc = cc_of("max-age=60");
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    rf.status = 200; /* no-store still holds */
    rf.cc = cc_of("no-store, must-understand");
    assert_int_equal(storable(&req, &rf, &p), CACHE_NO_STORE);
}

static void test_storable_request_no_store(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_request_facts req = get("no-store");
    struct cache_response_facts rf = resp("max-age=60");

    (void)state;
    p.client_cc = CLIENT_CC_SAFE;
    assert_int_equal(storable(&req, &rf, &p), CACHE_REQUEST_NO_STORE);
    p.client_cc = CLIENT_CC_HONOR;
    assert_int_equal(storable(&req, &rf, &p), CACHE_REQUEST_NO_STORE);
    p.client_cc = CLIENT_CC_IGNORE;
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    /* request no-cache does not prevent storing */
    p.client_cc = CLIENT_CC_HONOR;
    req = get("no-cache");
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
}

static void test_storable_no_store_private(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_request_facts req = get("");
    struct cache_response_facts rf = resp("no-store, max-age=60");

    (void)state;
    assert_int_equal(storable(&req, &rf, &p), CACHE_NO_STORE);
    rf = resp("private, max-age=60");
    assert_int_equal(storable(&req, &rf, &p), CACHE_PRIVATE);
    rf = resp("private=\"Set-Cookie\", max-age=60");
    assert_int_equal(storable(&req, &rf, &p), CACHE_PRIVATE);
    rf = resp("public, private, max-age=60"); /* the most restrictive wins */
    assert_int_equal(storable(&req, &rf, &p), CACHE_PRIVATE);
    /* honor off and ttl_override do not lift them */
    p.honor_cache_control = false;
    p.ttl_override_set = true;
    p.ttl_override_ms = HOUR;
    assert_int_equal(storable(&req, &rf, &p), CACHE_PRIVATE);
    rf = resp("no-store");
    assert_int_equal(storable(&req, &rf, &p), CACHE_NO_STORE);
}

/* RFC 9111 3.5 */
static void test_storable_authorization(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_request_facts req = get("");
    struct cache_response_facts rf = resp("max-age=60");

    (void)state;
    req.has_authorization = true;
    assert_int_equal(storable(&req, &rf, &p), CACHE_AUTHORIZATION);
    rf = resp("s-maxage=60");
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    rf = resp("public, max-age=60");
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    rf = resp("must-revalidate, max-age=60");
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    rf = resp("proxy-revalidate, max-age=60"); /* not one of the three */
    assert_int_equal(storable(&req, &rf, &p), CACHE_AUTHORIZATION);
    p.cache_authorized = true;
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    rf = resp("private, max-age=60"); /* still private */
    assert_int_equal(storable(&req, &rf, &p), CACHE_PRIVATE);
}

static void test_storable_set_cookie_vary(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_request_facts req = get("");
    struct cache_response_facts rf = resp("public, max-age=60");

    (void)state;
    rf.has_set_cookie = true;
    assert_int_equal(storable(&req, &rf, &p), CACHE_SET_COOKIE);
    p.honor_cache_control = false;
    assert_int_equal(storable(&req, &rf, &p), CACHE_SET_COOKIE);
    p.honor_cache_control = true;
    p.cache_cookies = true;
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    rf.vary_star = true;
    assert_int_equal(storable(&req, &rf, &p), CACHE_VARY_STAR);
}

static void test_storable_no_freshness(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_request_facts req = get("");
    struct cache_response_facts rf = resp("");

    (void)state;
    assert_int_equal(storable(&req, &rf, &p), CACHE_NO_FRESHNESS);
    rf.has_validator = true; /* can be revalidated: worth keeping */
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    rf.has_validator = false;
    p.ttl_ms = MIN;
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    p.ttl_ms = 0;
    rf.has_last_modified = true; /* heuristic (and a validator) */
    rf.last_modified_ms = T0 - DAY;
    rf.has_validator = true;
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);

    rf = resp("max-age=0");
    assert_int_equal(storable(&req, &rf, &p), CACHE_NO_FRESHNESS);
    rf.has_validator = true;
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    /* no-cache without a validator: every use is a full fetch */
    rf = resp("no-cache, max-age=600");
    assert_int_equal(storable(&req, &rf, &p), CACHE_NO_FRESHNESS);
    rf.has_validator = true;
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    rf.has_validator = false;
    p.honor_cache_control = false; /* no-cache ignored, ttl used */
    p.ttl_ms = MIN;
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    p.honor_cache_control = true;
    p.ttl_ms = 0;

    /* Expires already past; an invalid Expires; invalid max-age */
    rf = resp("");
    rf.has_expires = true;
    rf.expires_ms = T0 - SEC;
    assert_int_equal(storable(&req, &rf, &p), CACHE_NO_FRESHNESS);
    rf.expires_invalid = true;
    assert_int_equal(storable(&req, &rf, &p), CACHE_NO_FRESHNESS);
    rf = resp("max-age=1, max-age=2");
    assert_int_equal(storable(&req, &rf, &p), CACHE_NO_FRESHNESS);

    /* Date missing: Expires is compared with the response time */
    rf = resp("");
    rf.has_date = false;
    rf.has_expires = true;
    rf.expires_ms = T0 + SEC;
    assert_int_equal(storable(&req, &rf, &p), CACHE_STORABLE);
    rf.response_time_ms = T0 + 2 * SEC;
    assert_int_equal(storable(&req, &rf, &p), CACHE_NO_FRESHNESS);
}

/* The first failing rule is the verdict. */
static void test_storable_order(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_request_facts req = (struct cache_request_facts){.method_head = true};
    struct cache_response_facts rf = resp("no-store, private");

    (void)state;
    rf.status = 206;
    rf.has_set_cookie = true;
    rf.vary_star = true;
    req.cc = cc_of("no-store");
    req.has_authorization = true;
    assert_int_equal(storable(&req, &rf, &p), CACHE_NOT_METHOD);
    req.method_head = false;
    req.method_get = true;
    assert_int_equal(storable(&req, &rf, &p), CACHE_NOT_STATUS);
    rf.status = 200;
    assert_int_equal(storable(&req, &rf, &p), CACHE_REQUEST_NO_STORE);
    req.cc = cc_of("");
    assert_int_equal(storable(&req, &rf, &p), CACHE_NO_STORE);
    rf.cc = cc_of("private");
    assert_int_equal(storable(&req, &rf, &p), CACHE_PRIVATE);
    rf.cc = cc_of("");
    assert_int_equal(storable(&req, &rf, &p), CACHE_AUTHORIZATION);
    req.has_authorization = false;
    assert_int_equal(storable(&req, &rf, &p), CACHE_SET_COOKIE);
    rf.has_set_cookie = false;
    assert_int_equal(storable(&req, &rf, &p), CACHE_VARY_STAR);
    rf.vary_star = false;
    assert_int_equal(storable(&req, &rf, &p), CACHE_NO_FRESHNESS);
}

static void test_verdict_names(void **state)
{
    (void)state;
    assert_string_equal(cache_store_verdict_name(CACHE_STORABLE), "storable");
    assert_string_equal(cache_store_verdict_name(CACHE_NOT_METHOD), "method");
    assert_string_equal(cache_store_verdict_name(CACHE_NOT_STATUS), "status");
    assert_string_equal(cache_store_verdict_name(CACHE_REQUEST_NO_STORE), "request-no-store");
    assert_string_equal(cache_store_verdict_name(CACHE_NO_STORE), "no-store");
    assert_string_equal(cache_store_verdict_name(CACHE_PRIVATE), "private");
    assert_string_equal(cache_store_verdict_name(CACHE_AUTHORIZATION), "authorization");
    assert_string_equal(cache_store_verdict_name(CACHE_SET_COOKIE), "set-cookie");
    assert_string_equal(cache_store_verdict_name(CACHE_VARY_STAR), "vary-star");
    assert_string_equal(cache_store_verdict_name(CACHE_NO_FRESHNESS), "no-freshness");
    assert_string_equal(cache_store_verdict_name((enum cache_store_verdict)99), "unknown");
}

/* ---- object facts ---- */

static void test_object_facts_fill(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_response_facts rf = resp("max-age=60");
    struct cache_object_facts of;

    (void)state;
    p.stale_while_revalidate_ms = 30 * SEC;
    p.stale_if_error_ms = HOUR;
    cache_object_facts_fill(&of, &rf, &p, 60 * SEC, 5 * SEC);
    assert_int_equal(of.lifetime_ms, 60 * SEC);
    assert_int_equal(of.current_age_ms, 5 * SEC);
    assert_int_equal(of.stale_while_revalidate_ms, 30 * SEC);
    assert_int_equal(of.stale_if_error_ms, HOUR);
    assert_false(of.no_cache);
    assert_false(of.must_revalidate);

    rf = resp("max-age=60, stale-while-revalidate=5, stale-if-error=0, no-cache");
    cache_object_facts_fill(&of, &rf, &p, 60 * SEC, 0);
    assert_int_equal(of.stale_while_revalidate_ms, 5 * SEC);
    assert_int_equal(of.stale_if_error_ms, 0);
    assert_true(of.no_cache);

    rf = resp("s-maxage=60"); /* 5.2.2.10: implies proxy-revalidate */
    cache_object_facts_fill(&of, &rf, &p, 60 * SEC, 0);
    assert_true(of.must_revalidate);
    rf = resp("proxy-revalidate");
    cache_object_facts_fill(&of, &rf, &p, 0, 0);
    assert_true(of.must_revalidate);
    rf = resp("must-revalidate");
    cache_object_facts_fill(&of, &rf, &p, 0, 0);
    assert_true(of.must_revalidate);

    /* honor off: no-cache, s-maxage and the origin's windows are ignored,
     * must-revalidate is not */
    p.honor_cache_control = false;
    rf = resp("no-cache, s-maxage=60, stale-while-revalidate=5");
    cache_object_facts_fill(&of, &rf, &p, 60 * SEC, 0);
    assert_false(of.no_cache);
    assert_false(of.must_revalidate);
    assert_int_equal(of.stale_while_revalidate_ms, 30 * SEC);
    rf = resp("must-revalidate");
    cache_object_facts_fill(&of, &rf, &p, 60 * SEC, 0);
    assert_true(of.must_revalidate);
}

/* ---- cache_serve_decision ---- */

static struct cache_object_facts object(int64_t lifetime_ms, int64_t age_ms)
{
    return (struct cache_object_facts){.lifetime_ms = lifetime_ms, .current_age_ms = age_ms};
}

static enum cache_serve serve(const struct cache_object_facts *of, const char *req_cc,
                              enum client_cache_control mode)
{
    struct cache_request_facts req = get(req_cc);

    return cache_serve_decision(of, &req, mode);
}

static const enum client_cache_control modes[] = {CLIENT_CC_SAFE, CLIENT_CC_HONOR,
                                                  CLIENT_CC_IGNORE};

static void test_serve_fresh_and_stale(void **state)
{
    struct cache_object_facts fresh = object(60 * SEC, 10 * SEC);
    struct cache_object_facts edge = object(60 * SEC, 60 * SEC);
    struct cache_object_facts stale = object(60 * SEC, 70 * SEC);
    struct cache_object_facts zero = object(0, 0);

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(serve(&fresh, "", modes[i]), CACHE_SERVE_FRESH);
        assert_int_equal(serve(&edge, "", modes[i]), CACHE_SERVE_REVALIDATE);
        assert_int_equal(serve(&stale, "", modes[i]), CACHE_SERVE_REVALIDATE);
        assert_int_equal(serve(&zero, "", modes[i]), CACHE_SERVE_REVALIDATE);
    }
    /* stale windows are not applied by the decision */
    stale.stale_while_revalidate_ms = HOUR;
    stale.stale_if_error_ms = HOUR;
    assert_int_equal(serve(&stale, "", CLIENT_CC_SAFE), CACHE_SERVE_REVALIDATE);
}

/* RFC 9111 5.2.2.4: a no-cache object is always revalidated. */
static void test_serve_object_no_cache(void **state)
{
    struct cache_object_facts of = object(60 * SEC, 0);

    (void)state;
    of.no_cache = true;
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(serve(&of, "", modes[i]), CACHE_SERVE_REVALIDATE);
        assert_int_equal(serve(&of, "max-stale", modes[i]), CACHE_SERVE_REVALIDATE);
    }
}

static void test_serve_request_no_cache(void **state)
{
    struct cache_object_facts of = object(60 * SEC, 10 * SEC);
    struct cache_request_facts req = get("");

    (void)state;
    assert_int_equal(serve(&of, "no-cache", CLIENT_CC_SAFE), CACHE_SERVE_FRESH);
    assert_int_equal(serve(&of, "no-cache", CLIENT_CC_HONOR), CACHE_SERVE_REVALIDATE);
    assert_int_equal(serve(&of, "no-cache", CLIENT_CC_IGNORE), CACHE_SERVE_FRESH);

    /* Pragma: no-cache counts only without Cache-Control (RFC 9111 5.4) */
    req.pragma_no_cache = true;
    assert_int_equal(cache_serve_decision(&of, &req, CLIENT_CC_HONOR), CACHE_SERVE_REVALIDATE);
    assert_int_equal(cache_serve_decision(&of, &req, CLIENT_CC_SAFE), CACHE_SERVE_FRESH);
    assert_int_equal(cache_serve_decision(&of, &req, CLIENT_CC_IGNORE), CACHE_SERVE_FRESH);
    req.cc = cc_of("max-stale=5");
    assert_int_equal(cache_serve_decision(&of, &req, CLIENT_CC_HONOR), CACHE_SERVE_FRESH);
    req.cc = cc_of("x-unknown");
    assert_int_equal(cache_serve_decision(&of, &req, CLIENT_CC_HONOR), CACHE_SERVE_FRESH);
}

/* RFC 9111 5.2.1.1 */
static void test_serve_request_max_age(void **state)
{
    struct cache_object_facts of = object(60 * SEC, 10 * SEC);
    struct cache_object_facts new = object(60 * SEC, 0);

    (void)state;
    /* max-age=0: the reload idiom, refused under safe */
    assert_int_equal(serve(&of, "max-age=0", CLIENT_CC_SAFE), CACHE_SERVE_FRESH);
    assert_int_equal(serve(&of, "max-age=0", CLIENT_CC_HONOR), CACHE_SERVE_REVALIDATE);
    assert_int_equal(serve(&of, "max-age=0", CLIENT_CC_IGNORE), CACHE_SERVE_FRESH);
    assert_int_equal(serve(&new, "max-age=0", CLIENT_CC_HONOR), CACHE_SERVE_FRESH);
    /* max-age=N: honoured under safe and honor */
    assert_int_equal(serve(&of, "max-age=5", CLIENT_CC_SAFE), CACHE_SERVE_REVALIDATE);
    assert_int_equal(serve(&of, "max-age=5", CLIENT_CC_HONOR), CACHE_SERVE_REVALIDATE);
    assert_int_equal(serve(&of, "max-age=5", CLIENT_CC_IGNORE), CACHE_SERVE_FRESH);
    assert_int_equal(serve(&of, "max-age=10", CLIENT_CC_SAFE), CACHE_SERVE_FRESH);
    of.current_age_ms = 10 * SEC + 1;
    assert_int_equal(serve(&of, "max-age=10", CLIENT_CC_SAFE), CACHE_SERVE_REVALIDATE);
    /* an invalid request max-age is ignored */
    assert_int_equal(serve(&of, "max-age=soon", CLIENT_CC_HONOR), CACHE_SERVE_FRESH);
    /* max-age bounds the age even when max-stale accepts staleness */
    of = object(60 * SEC, 70 * SEC);
    assert_int_equal(serve(&of, "max-age=65, max-stale", CLIENT_CC_SAFE), CACHE_SERVE_REVALIDATE);
    assert_int_equal(serve(&of, "max-age=70, max-stale", CLIENT_CC_SAFE),
                     CACHE_SERVE_STALE_ALLOWED);
}

/* RFC 9111 5.2.1.3 */
static void test_serve_request_min_fresh(void **state)
{
    struct cache_object_facts of = object(60 * SEC, 10 * SEC); /* 50 s left */

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(serve(&of, "min-fresh=50", modes[i]), CACHE_SERVE_FRESH);
        assert_int_equal(serve(&of, "min-fresh=51", modes[i]), CACHE_SERVE_REVALIDATE);
    }
    assert_int_equal(serve(&of, "min-fresh=51", CLIENT_CC_IGNORE), CACHE_SERVE_FRESH);
    of = object(60 * SEC, 65 * SEC);
    assert_int_equal(serve(&of, "min-fresh=0, max-stale", CLIENT_CC_SAFE), CACHE_SERVE_REVALIDATE);
}

/* RFC 9111 5.2.1.2, 5.2.2.2 */
static void test_serve_request_max_stale(void **state)
{
    struct cache_object_facts of = object(60 * SEC, 70 * SEC); /* 10 s stale */

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(serve(&of, "max-stale=10", modes[i]), CACHE_SERVE_STALE_ALLOWED);
        assert_int_equal(serve(&of, "max-stale=9", modes[i]), CACHE_SERVE_REVALIDATE);
        assert_int_equal(serve(&of, "max-stale", modes[i]), CACHE_SERVE_STALE_ALLOWED);
        assert_int_equal(serve(&of, "max-stale=\"3600\"", modes[i]), CACHE_SERVE_STALE_ALLOWED);
    }
    assert_int_equal(serve(&of, "max-stale", CLIENT_CC_IGNORE), CACHE_SERVE_REVALIDATE);
    /* exactly at the end of the lifetime: stale by 0 */
    of = object(60 * SEC, 60 * SEC);
    assert_int_equal(serve(&of, "max-stale=0", CLIENT_CC_SAFE), CACHE_SERVE_STALE_ALLOWED);
    /* must-revalidate (and proxy-revalidate, s-maxage) forbid it */
    of = object(60 * SEC, 70 * SEC);
    of.must_revalidate = true;
    assert_int_equal(serve(&of, "max-stale", CLIENT_CC_HONOR), CACHE_SERVE_REVALIDATE);
    /* a fresh object is simply fresh */
    of = object(60 * SEC, 10 * SEC);
    assert_int_equal(serve(&of, "max-stale=5", CLIENT_CC_SAFE), CACHE_SERVE_FRESH);
    of.must_revalidate = true;
    assert_int_equal(serve(&of, "", CLIENT_CC_SAFE), CACHE_SERVE_FRESH);
}

static void test_stale_windows(void **state)
{
    struct cache_object_facts of = object(60 * SEC, 10 * SEC);

    (void)state;
    of.stale_while_revalidate_ms = 10 * SEC;
    of.stale_if_error_ms = 20 * SEC;
    assert_false(cache_within_stale_while_revalidate(&of)); /* fresh */
    assert_false(cache_within_stale_if_error(&of));
    of.current_age_ms = 60 * SEC; /* stale by 0 */
    assert_true(cache_within_stale_while_revalidate(&of));
    assert_true(cache_within_stale_if_error(&of));
    of.current_age_ms = 70 * SEC;
    assert_true(cache_within_stale_while_revalidate(&of));
    assert_true(cache_within_stale_if_error(&of));
    of.current_age_ms = 70 * SEC + 1;
    assert_false(cache_within_stale_while_revalidate(&of));
    assert_true(cache_within_stale_if_error(&of));
    of.current_age_ms = 80 * SEC + 1;
    assert_false(cache_within_stale_if_error(&of));

    of.current_age_ms = 65 * SEC;
    of.must_revalidate = true; /* RFC 9111 4.2.4 */
    assert_false(cache_within_stale_while_revalidate(&of));
    assert_false(cache_within_stale_if_error(&of));
    of.must_revalidate = false;
    of.no_cache = true;
    assert_false(cache_within_stale_while_revalidate(&of));
    assert_false(cache_within_stale_if_error(&of));
    of.no_cache = false;
    of.stale_while_revalidate_ms = 0;
    of.stale_if_error_ms = 0;
    of.current_age_ms = 60 * SEC;
    assert_false(cache_within_stale_while_revalidate(&of));
    assert_false(cache_within_stale_if_error(&of));
}

/* From header strings to a decision, the way the proxy will use it. */
static void test_end_to_end(void **state)
{
    struct config_cache_policy p = policy();
    struct cache_request_facts req = get("");
    struct cache_response_facts rf = resp("public, s-maxage=300, max-age=60");
    struct cache_object_facts of;
    int64_t initial, life;

    (void)state;
    rf.has_age = true;
    rf.age_ms = 100 * SEC;
    assert_int_equal(cache_storable(&req, &rf, &p), CACHE_STORABLE);
    life = cache_freshness_lifetime(&rf, &p, T0);
    assert_int_equal(life, 300 * SEC);
    initial = cache_corrected_initial_age(&rf, T0 - 50, T0);
    assert_int_equal(initial, 100 * SEC + 50);
    cache_object_facts_fill(&of, &rf, &p, life, cache_current_age(initial, T0, T0 + 150 * SEC));
    assert_int_equal(of.current_age_ms, 250 * SEC + 50);
    assert_int_equal(cache_age_header_seconds(of.current_age_ms), 250);
    assert_int_equal(cache_serve_decision(&of, &req, CLIENT_CC_SAFE), CACHE_SERVE_FRESH);
    cache_object_facts_fill(&of, &rf, &p, life, cache_current_age(initial, T0, T0 + 200 * SEC));
    assert_int_equal(cache_serve_decision(&of, &req, CLIENT_CC_SAFE), CACHE_SERVE_REVALIDATE);
    req.cc = cc_of("max-stale"); /* s-maxage implies proxy-revalidate */
    assert_int_equal(cache_serve_decision(&of, &req, CLIENT_CC_SAFE), CACHE_SERVE_REVALIDATE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick_targeted),
        cmocka_unit_test(test_targeted_freshness),
        cmocka_unit_test(test_lifetime_max_age),
        cmocka_unit_test(test_lifetime_s_maxage_wins),
        cmocka_unit_test(test_lifetime_expires),
        cmocka_unit_test(test_lifetime_expires_invalid),
        cmocka_unit_test(test_lifetime_date_missing),
        cmocka_unit_test(test_lifetime_invalid_freshness),
        cmocka_unit_test(test_lifetime_ttl_override),
        cmocka_unit_test(test_lifetime_honor_off),
        cmocka_unit_test(test_lifetime_route_ttl),
        cmocka_unit_test(test_lifetime_heuristic),
        cmocka_unit_test(test_lifetime_heuristic_status),
        cmocka_unit_test(test_age_no_upstream_age),
        cmocka_unit_test(test_age_upstream_age),
        cmocka_unit_test(test_age_clock_skew),
        cmocka_unit_test(test_current_age),
        cmocka_unit_test(test_age_header_seconds),
        cmocka_unit_test(test_storable_basic),
        cmocka_unit_test(test_storable_method),
        cmocka_unit_test(test_storable_status),
        cmocka_unit_test(test_storable_must_understand),
        cmocka_unit_test(test_storable_request_no_store),
        cmocka_unit_test(test_storable_no_store_private),
        cmocka_unit_test(test_storable_authorization),
        cmocka_unit_test(test_storable_set_cookie_vary),
        cmocka_unit_test(test_storable_no_freshness),
        cmocka_unit_test(test_storable_order),
        cmocka_unit_test(test_verdict_names),
        cmocka_unit_test(test_object_facts_fill),
        cmocka_unit_test(test_serve_fresh_and_stale),
        cmocka_unit_test(test_serve_object_no_cache),
        cmocka_unit_test(test_serve_request_no_cache),
        cmocka_unit_test(test_serve_request_max_age),
        cmocka_unit_test(test_serve_request_min_fresh),
        cmocka_unit_test(test_serve_request_max_stale),
        cmocka_unit_test(test_stale_windows),
        cmocka_unit_test(test_end_to_end),
    };

    return cmocka_run_group_tests_name("cache/freshness", tests, NULL, NULL);
}
