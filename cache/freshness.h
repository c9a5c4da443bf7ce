/*
 * cache/freshness.h: the RFC 9111 rules of a shared cache as pure functions:
 * which response may be stored (section 3), how long it stays fresh
 * (4.2.1, 4.2.2), how old it is (4.2.3), and whether a stored response may
 * answer a new request (4.2, 4.2.4, 5.2.1, 5.2.2).
 *
 * The proxy parses the heads and fills the *_facts structs below (Cache-
 * Control with cache/cachecontrol.h, dates with cache/httpdate.h); nothing
 * here sees a socket, a header list or a clock.  Times are int64_t
 * milliseconds since the Unix epoch; lifetimes, ages and windows are
 * int64_t milliseconds.  No function allocates or fails.
 */
#ifndef TESSERA_CACHE_FRESHNESS_H
#define TESSERA_CACHE_FRESHNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "cache/cachecontrol.h"
#include "config/config.h"

/* RFC 9111 4.2.2: a heuristic lifetime is a fraction ("typically 10%") of
 * the time since Last-Modified.  Capped at one day: RFC 7234 4.2.2 made a
 * cache warn (Warning 113) past 24 hours of heuristic freshness, and a page
 * untouched for years must still not be served for months without asking
 * the origin. */
#define CACHE_HEURISTIC_PERCENT 10
#define CACHE_HEURISTIC_MAX_MS (INT64_C(86400) * 1000)

/* What the proxy extracted from a response head. */
struct cache_response_facts {
    int status;
    /* The effective Cache-Control for this cache: the targeted field when one
     * applies (cache_pick_targeted()), else Cache-Control; zeroed when none. */
    struct cache_control cc;
    bool targeted; /* cc came from CDN-Cache-Control or Surrogate-Control:
                    * Expires is then ignored (RFC 9213 2.1) */
    bool has_expires;
    bool expires_invalid; /* Expires present but not a valid HTTP-date (or two
                           * different values): already expired (RFC 9111 5.3) */
    int64_t expires_ms;
    bool has_date;
    int64_t date_ms;
    bool has_last_modified;
    int64_t last_modified_ms;
    bool has_age;
    int64_t age_ms; /* the Age field's delta-seconds * 1000 */
    bool has_set_cookie;
    bool vary_star;     /* Vary lists "*" */
    bool has_validator; /* ETag or Last-Modified */
    /* When the response head was received.  cache_storable() uses it in
     * place of Date when Date is missing; pass the same value to
     * cache_freshness_lifetime(). */
    int64_t response_time_ms;
};

/* What the proxy extracted from a request head. */
struct cache_request_facts {
    bool method_get;
    bool method_head;
    bool has_authorization;
    struct cache_control cc; /* the request's Cache-Control; zeroed when none */
    bool pragma_no_cache;    /* cache_pragma_no_cache() of its Pragma field(s) */
};

/*
 * cache_pick_targeted: the Cache-Control this cache obeys for a response.
 * Precedence: CDN-Cache-Control > Surrogate-Control > Cache-Control.
 * RFC 9213 2.1: a cache takes the first targeted field on its list that is
 * present with a valid, non-empty value (here: has_x set and x->present, at
 * least one directive) and then ignores Cache-Control and Expires for its own
 * caching; CDN-Cache-Control is the standard one, Surrogate-Control the
 * older Edge Architecture field many CDNs still honour.  Returns a pointer
 * to one of the three arguments (cc when no targeted field applies; cc must
 * not be NULL, pass a zeroed struct when the response has none); the x
 * pointers may be NULL when has_x is false.  *targeted (if targeted is not
 * NULL) tells whether a targeted field won, for cache_response_facts.
 */
const struct cache_control *cache_pick_targeted(const struct cache_control *cdn_cc, bool has_cdn_cc,
                                                const struct cache_control *surrogate,
                                                bool has_surrogate, const struct cache_control *cc,
                                                bool *targeted);

/* cache_status_heuristic: RFC 9110 15.1's heuristically cacheable status
 * codes: 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501. */
bool cache_status_heuristic(int status);

enum cache_store_verdict {
    CACHE_STORABLE,
    CACHE_NOT_METHOD,       /* not a GET, or the route's cache_methods lacks GET */
    CACHE_NOT_STATUS,       /* status code not storable */
    CACHE_REQUEST_NO_STORE, /* request Cache-Control: no-store (5.2.1.5) */
    CACHE_NO_STORE,         /* response no-store (5.2.2.5) */
    CACHE_PRIVATE,          /* response private (5.2.2.7) */
    CACHE_AUTHORIZATION,    /* request with Authorization (3.5) */
    CACHE_SET_COOKIE,       /* response with Set-Cookie */
    CACHE_VARY_STAR,        /* Vary: * can never match (4.1) */
    CACHE_NO_FRESHNESS,     /* nothing a later request could use */
};

/*
 * cache_storable: may this response to this request be stored (RFC 9111 3)?
 * The first failing rule, in this order, is the verdict:
 *  NOT_METHOD   only a GET is stored, and only when policy->methods has
 *               CACHE_METHOD_GET.  A HEAD request may be answered from a
 *               stored GET but a response to HEAD has no body, so a HEAD
 *               miss never stores.
 *  NOT_STATUS   1xx, 304 (answers a conditional, not a representation), 206
 *               (ranges are not stored yet) and any status outside 100-599
 *               never; the heuristically cacheable set (RFC 9110 15.1) always;
 *               any other status only with explicit freshness (max-age,
 *               s-maxage, Expires, read only when honor_cache_control is on)
 *               or public.  ttl and ttl_override never make a 500 storable.
 *               With must-understand (5.2.2.3) the status must also be one
 *               RFC 9110 defines.  We do not use must-understand's licence to
 *               ignore no-store: "no-store, must-understand" keeps meaning
 *               "do not store" here.
 *  REQUEST_NO_STORE  honoured unless policy->client_cc is CLIENT_CC_IGNORE.
 *  NO_STORE, PRIVATE  always (honor_cache_control off included): tessera is a
 *               shared cache.
 *  AUTHORIZATION  (3.5) unless the response has s-maxage, public or
 *               must-revalidate, or policy->cache_authorized is on.
 *  SET_COOKIE   unless policy->cache_cookies is on.
 *  VARY_STAR
 *  NO_FRESHNESS the freshness lifetime (computed with rf->response_time_ms)
 *               is 0, or the response is no-cache under honor_cache_control
 *               (every use must revalidate), and there is no validator: every
 *               later request would have to fetch the whole response again.
 * Does not look at policy->enabled: the caller decides whether the route
 * caches at all before asking.
 */
enum cache_store_verdict cache_storable(const struct cache_request_facts *req,
                                        const struct cache_response_facts *rf,
                                        const struct config_cache_policy *policy);

/* cache_store_verdict_name: a short lower-case token for logs and a
 * Cache-Status detail: "storable", "method", "status", "request-no-store",
 * "no-store", "private", "authorization", "set-cookie", "vary-star",
 * "no-freshness"; "unknown" for a value outside the enum.  Static storage. */
const char *cache_store_verdict_name(enum cache_store_verdict v);

/*
 * cache_freshness_lifetime: the response's freshness lifetime in ms
 * (RFC 9111 4.2.1), always >= 0:
 *  1. policy->ttl_override_set: ttl_override_ms, whatever the origin says;
 *  2. honor_cache_control on:
 *     - invalid max-age or s-maxage (cc.invalid_freshness): 0 (4.2.1: stale);
 *     - s-maxage (a shared cache prefers it, 5.2.2.10), else max-age;
 *     - else Expires (ignored when rf->targeted, RFC 9213 2.1): an invalid
 *       Expires is 0 (5.3); otherwise Expires - Date, or Expires -
 *       response_time_ms when Date is missing, floored at 0;
 *  3. policy->ttl_ms when > 0 (the route's default freshness);
 *  4. heuristic (4.2.2), only for a heuristically cacheable status or a
 *     public response, with Last-Modified: CACHE_HEURISTIC_PERCENT of
 *     (Date, or response_time_ms, - Last-Modified), at most
 *     CACHE_HEURISTIC_MAX_MS;
 *  5. else 0.
 * With honor_cache_control off, step 2 is skipped.
 */
int64_t cache_freshness_lifetime(const struct cache_response_facts *rf,
                                 const struct config_cache_policy *policy,
                                 int64_t response_time_ms);

/*
 * cache_corrected_initial_age: RFC 9111 4.2.3, for a response whose request
 * was sent at request_time_ms and whose head arrived at response_time_ms:
 *   apparent_age = max(0, response_time - date_value)   (0 without Date)
 *   response_delay = response_time - request_time       (floored at 0)
 *   corrected_age_value = age_value + response_delay    (age_value 0 without Age)
 *   corrected_initial_age = max(apparent_age, corrected_age_value)
 * A Date in the future (clock skew) gives an apparent age of 0.  Sums
 * saturate at INT64_MAX.
 */
int64_t cache_corrected_initial_age(const struct cache_response_facts *rf, int64_t request_time_ms,
                                    int64_t response_time_ms);

/* cache_current_age: corrected_initial_age + resident_time, resident_time =
 * now - response_time floored at 0 (RFC 9111 4.2.3). */
int64_t cache_current_age(int64_t corrected_initial_age_ms, int64_t response_time_ms,
                          int64_t now_ms);

/* cache_age_header_seconds: the Age field value for a current age: whole
 * seconds rounded down, 0 for negative input, at most 2^31 (RFC 9111 5.1,
 * 1.2.2). */
int64_t cache_age_header_seconds(int64_t current_age_ms);

/* A stored response as the serving decision sees it. */
struct cache_object_facts {
    int64_t lifetime_ms;
    int64_t current_age_ms;
    int64_t stale_while_revalidate_ms;
    int64_t stale_if_error_ms;
    bool no_cache;        /* response no-cache, honoured (5.2.2.4) */
    bool must_revalidate; /* must-revalidate (5.2.2.2), proxy-revalidate
                           * (5.2.2.8), or s-maxage, which implies
                           * proxy-revalidate (5.2.2.10) */
};

/*
 * cache_object_facts_fill: the object facts of a response stored under
 * policy, with the given lifetime and current age.
 *  no_cache: cc no-cache, only with honor_cache_control on (the config's
 *      promise: off ignores the origin's no-cache);
 *  must_revalidate: must-revalidate or proxy-revalidate always, s-maxage
 *      only when honoured;
 *  stale windows: the response's stale-while-revalidate / stale-if-error
 *      (RFC 5861) when honoured and present, else the policy's.
 */
void cache_object_facts_fill(struct cache_object_facts *of, const struct cache_response_facts *rf,
                             const struct config_cache_policy *policy, int64_t lifetime_ms,
                             int64_t current_age_ms);

enum cache_serve {
    CACHE_SERVE_FRESH,         /* answer from the stored response */
    CACHE_SERVE_STALE_ALLOWED, /* stale, but the client's max-stale accepts it */
    CACHE_SERVE_REVALIDATE,    /* ask the origin (conditionally when a validator exists) */
};

/*
 * cache_serve_decision: may the stored response answer this request?
 * Fresh means lifetime_ms > current_age_ms (RFC 9111 4.2).  In order:
 *  1. REVALIDATE when the object is no_cache (5.2.2.4).
 *  2. The request's directives, according to mode (config client_cache_control):
 *     CLIENT_CC_IGNORE: none of them.
 *     CLIENT_CC_HONOR: no-cache, or Pragma: no-cache when the request has no
 *        Cache-Control (5.4), -> REVALIDATE (5.2.1.4).
 *     CLIENT_CC_SAFE and CLIENT_CC_HONOR:
 *        max-age=N with current age > N s -> REVALIDATE (5.2.1.1); under
 *           SAFE, max-age=0 is ignored: it is the browsers' reload idiom,
 *           the same demand as no-cache, which SAFE exists to refuse;
 *        min-fresh=N with lifetime - current age < N s -> REVALIDATE (5.2.1.3).
 *  3. Fresh -> SERVE_FRESH.
 *  4. Stale: SERVE_STALE_ALLOWED when the request has max-stale (without a
 *     value, or with staleness = age - lifetime <= N s) under SAFE or HONOR
 *     and the object is not must_revalidate (5.2.1.2, 5.2.2.2, 4.2.4);
 *     otherwise REVALIDATE.  The stale-while-revalidate and stale-if-error
 *     windows are not applied here: see the helpers below.
 * Only-if-cached, and what to do on a miss, are the caller's.
 */
enum cache_serve cache_serve_decision(const struct cache_object_facts *of,
                                      const struct cache_request_facts *req,
                                      enum client_cache_control mode);

/* cache_within_stale_while_revalidate: the object is stale (age >= lifetime)
 * by at most stale_while_revalidate_ms (> 0), and neither no_cache nor
 * must_revalidate forbids serving it stale (RFC 5861 3, RFC 9111 4.2.4). */
bool cache_within_stale_while_revalidate(const struct cache_object_facts *of);

/* cache_within_stale_if_error: the same test with stale_if_error_ms
 * (RFC 5861 4), for when the origin cannot be reached or answers 5xx. */
bool cache_within_stale_if_error(const struct cache_object_facts *of);

#endif
