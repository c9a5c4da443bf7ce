/*
 * cache/freshness.c: RFC 9111 storability, freshness lifetime, age and the
 * serving decision, for a shared cache.
 *
 * Everything is a pure function of the facts the proxy extracted (see
 * cache/freshness.h): no clock is read, nothing is allocated, nothing is
 * shared, so there is no locking.  Each rule cites its section; the order
 * of the checks is part of the contract (it picks the Cache-Status detail).
 * Arithmetic on times saturates instead of overflowing: every input is
 * derived from untrusted header values.
 */
#include "cache/freshness.h"

#include "cache/httpdate.h"

static int64_t sat_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

static int64_t sat_sub(int64_t a, int64_t b)
{
    if (b == INT64_MIN)
        return a >= 0 ? INT64_MAX : a - INT64_MIN;
    return sat_add(a, -b);
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Parsed delta-seconds are at most 2^31, so this cannot overflow. */
static int64_t seconds_to_ms(int64_t s)
{
    return s * 1000;
}

static int64_t u64_to_ms(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

const struct cache_control *cache_pick_targeted(const struct cache_control *cdn_cc, bool has_cdn_cc,
                                                const struct cache_control *surrogate,
                                                bool has_surrogate, const struct cache_control *cc,
                                                bool *targeted)
{
    const struct cache_control *pick = cc;

    if (has_cdn_cc && cdn_cc && cdn_cc->present)
        pick = cdn_cc;
    else if (has_surrogate && surrogate && surrogate->present)
        pick = surrogate;
    if (targeted)
        *targeted = pick != cc;
    return pick;
}

bool cache_status_heuristic(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
        return true;
    default:
        return false;
    }
}

/* The final status codes RFC 9110 section 15 defines: the ones whose
 * requirements this cache knows, for must-understand (RFC 9111 5.2.2.3). */
static bool status_understood(int status)
{
    return (status >= 200 && status <= 206) || (status >= 300 && status <= 305) || status == 307 ||
           status == 308 || (status >= 400 && status <= 417) || status == 421 || status == 422 ||
           status == 426 || (status >= 500 && status <= 505);
}

static bool has_explicit_freshness(const struct cache_response_facts *rf,
                                   const struct config_cache_policy *policy)
{
    const struct cache_control *cc = &rf->cc;

    if (cc->flags & CC_PUBLIC)
        return true;
    if (!policy->honor_cache_control)
        return false;
    return cc->has_max_age || cc->has_s_maxage || cc->invalid_freshness ||
           (rf->has_expires && !rf->targeted);
}

static bool status_storable(const struct cache_response_facts *rf,
                            const struct config_cache_policy *policy)
{
    int status = rf->status;

    if (status < 200 || status > 599 || status == 206 || status == 304)
        return false;
    if ((rf->cc.flags & CC_MUST_UNDERSTAND) && !status_understood(status))
        return false;
    return cache_status_heuristic(status) || has_explicit_freshness(rf, policy);
}

enum cache_store_verdict cache_storable(const struct cache_request_facts *req,
                                        const struct cache_response_facts *rf,
                                        const struct config_cache_policy *policy)
{
    unsigned flags = rf->cc.flags;

    if (!req->method_get || req->method_head || !(policy->methods & CACHE_METHOD_GET))
        return CACHE_NOT_METHOD;
    if (!status_storable(rf, policy))
        return CACHE_NOT_STATUS;
    if ((req->cc.flags & CC_NO_STORE) && policy->client_cc != CLIENT_CC_IGNORE)
        return CACHE_REQUEST_NO_STORE;
    if (flags & CC_NO_STORE)
        return CACHE_NO_STORE;
    if (flags & CC_PRIVATE)
        return CACHE_PRIVATE;
    /* RFC 9111 3.5: a shared cache stores a response to a request with
     * Authorization only when the response explicitly allows it. */
    if (req->has_authorization && !policy->cache_authorized && !rf->cc.has_s_maxage &&
        !(flags & (CC_PUBLIC | CC_MUST_REVALIDATE)))
        return CACHE_AUTHORIZATION;
    if (rf->has_set_cookie && !policy->cache_cookies)
        return CACHE_SET_COOKIE;
    if (rf->vary_star)
        return CACHE_VARY_STAR;
    if (!rf->has_validator) {
        int64_t lifetime = cache_freshness_lifetime(rf, policy, rf->response_time_ms);
        bool always_revalidate = policy->honor_cache_control && (flags & CC_NO_CACHE);
        if (lifetime == 0 || always_revalidate)
            return CACHE_NO_FRESHNESS;
    }
    return CACHE_STORABLE;
}

const char *cache_store_verdict_name(enum cache_store_verdict v)
{
    switch (v) {
    case CACHE_STORABLE:
        return "storable";
    case CACHE_NOT_METHOD:
        return "method";
    case CACHE_NOT_STATUS:
        return "status";
    case CACHE_REQUEST_NO_STORE:
        return "request-no-store";
    case CACHE_NO_STORE:
        return "no-store";
    case CACHE_PRIVATE:
        return "private";
    case CACHE_AUTHORIZATION:
        return "authorization";
    case CACHE_SET_COOKIE:
        return "set-cookie";
    case CACHE_VARY_STAR:
        return "vary-star";
    case CACHE_NO_FRESHNESS:
        return "no-freshness";
    }
    return "unknown";
}

int64_t cache_freshness_lifetime(const struct cache_response_facts *rf,
                                 const struct config_cache_policy *policy, int64_t response_time_ms)
{
    const struct cache_control *cc = &rf->cc;
    int64_t date = rf->has_date ? rf->date_ms : response_time_ms;

    if (policy->ttl_override_set)
        return u64_to_ms(policy->ttl_override_ms);

    if (policy->honor_cache_control) {
        if (cc->invalid_freshness)
            return 0; /* 4.2.1: invalid freshness information means stale */
        if (cc->has_s_maxage)
            return seconds_to_ms(cc->s_maxage); /* 5.2.2.10: shared caches */
        if (cc->has_max_age)
            return seconds_to_ms(cc->max_age); /* 5.2.2.1, and 5.3: Expires ignored */
        if (rf->has_expires && !rf->targeted) {
            if (rf->expires_invalid)
                return 0; /* 5.3: an invalid Expires is in the past */
            return max64(0, sat_sub(rf->expires_ms, date));
        }
    }

    if (policy->ttl_ms > 0)
        return u64_to_ms(policy->ttl_ms);

    /* 4.2.2: heuristics only without explicit expiration (handled above),
     * for a status that allows them or a public response. */
    if (rf->has_last_modified && (cache_status_heuristic(rf->status) || (cc->flags & CC_PUBLIC))) {
        int64_t since = sat_sub(date, rf->last_modified_ms);
        if (since > 0)
            return min64(since / 100 * CACHE_HEURISTIC_PERCENT +
                             since % 100 * CACHE_HEURISTIC_PERCENT / 100,
                         CACHE_HEURISTIC_MAX_MS);
    }
    return 0;
}

int64_t cache_corrected_initial_age(const struct cache_response_facts *rf, int64_t request_time_ms,
                                    int64_t response_time_ms)
{
    int64_t apparent_age = rf->has_date ? max64(0, sat_sub(response_time_ms, rf->date_ms)) : 0;
    int64_t response_delay = max64(0, sat_sub(response_time_ms, request_time_ms));
    int64_t age_value = rf->has_age ? max64(0, rf->age_ms) : 0;
    int64_t corrected_age_value = sat_add(age_value, response_delay);

    return max64(apparent_age, corrected_age_value);
}

int64_t cache_current_age(int64_t corrected_initial_age_ms, int64_t response_time_ms,
                          int64_t now_ms)
{
    int64_t resident_time = max64(0, sat_sub(now_ms, response_time_ms));

    return sat_add(max64(0, corrected_initial_age_ms), resident_time);
}

int64_t cache_age_header_seconds(int64_t current_age_ms)
{
    if (current_age_ms <= 0)
        return 0;
    return min64(current_age_ms / 1000, HTTP_DELTA_SECONDS_MAX);
}

void cache_object_facts_fill(struct cache_object_facts *of, const struct cache_response_facts *rf,
                             const struct config_cache_policy *policy, int64_t lifetime_ms,
                             int64_t current_age_ms)
{
    const struct cache_control *cc = &rf->cc;
    bool honour = policy->honor_cache_control;

    *of = (struct cache_object_facts){
        .lifetime_ms = lifetime_ms,
        .current_age_ms = current_age_ms,
        .stale_while_revalidate_ms = u64_to_ms(policy->stale_while_revalidate_ms),
        .stale_if_error_ms = u64_to_ms(policy->stale_if_error_ms),
        .no_cache = honour && (cc->flags & CC_NO_CACHE),
        .must_revalidate = (cc->flags & (CC_MUST_REVALIDATE | CC_PROXY_REVALIDATE)) ||
                           (honour && cc->has_s_maxage),
    };
    if (honour && cc->has_stale_while_revalidate)
        of->stale_while_revalidate_ms = seconds_to_ms(cc->stale_while_revalidate);
    if (honour && cc->has_stale_if_error)
        of->stale_if_error_ms = seconds_to_ms(cc->stale_if_error);
}

static bool request_no_cache(const struct cache_request_facts *req)
{
    /* 5.4: Pragma counts only when Cache-Control is absent. */
    return (req->cc.flags & CC_NO_CACHE) || (!req->cc.present && req->pragma_no_cache);
}

enum cache_serve cache_serve_decision(const struct cache_object_facts *of,
                                      const struct cache_request_facts *req,
                                      enum client_cache_control mode)
{
    const struct cache_control *cc = &req->cc;
    int64_t remaining = sat_sub(of->lifetime_ms, of->current_age_ms);

    if (of->no_cache)
        return CACHE_SERVE_REVALIDATE; /* 5.2.2.4 */

    if (mode != CLIENT_CC_IGNORE) {
        if (mode == CLIENT_CC_HONOR && request_no_cache(req))
            return CACHE_SERVE_REVALIDATE; /* 5.2.1.4 */
        if (cc->has_max_age && !(mode == CLIENT_CC_SAFE && cc->max_age == 0) &&
            of->current_age_ms > seconds_to_ms(cc->max_age))
            return CACHE_SERVE_REVALIDATE; /* 5.2.1.1 */
        if (cc->has_min_fresh && remaining < seconds_to_ms(cc->min_fresh))
            return CACHE_SERVE_REVALIDATE; /* 5.2.1.3 */
    }

    if (remaining > 0)
        return CACHE_SERVE_FRESH; /* 4.2 */

    /* Stale.  5.2.1.2 max-stale, unless 5.2.2.2 / 5.2.2.8 forbid (4.2.4). */
    if (mode != CLIENT_CC_IGNORE && cc->has_max_stale && !of->must_revalidate &&
        (cc->max_stale_any || sat_sub(0, remaining) <= seconds_to_ms(cc->max_stale)))
        return CACHE_SERVE_STALE_ALLOWED;
    return CACHE_SERVE_REVALIDATE;
}

static bool within_stale_window(const struct cache_object_facts *of, int64_t window_ms)
{
    int64_t staleness = sat_sub(of->current_age_ms, of->lifetime_ms);

    if (of->no_cache || of->must_revalidate || staleness < 0)
        return false;
    return window_ms > 0 && staleness <= window_ms;
}

bool cache_within_stale_while_revalidate(const struct cache_object_facts *of)
{
    return within_stale_window(of, of->stale_while_revalidate_ms);
}

bool cache_within_stale_if_error(const struct cache_object_facts *of)
{
    return within_stale_window(of, of->stale_if_error_ms);
}
