/*
 * cache/cachecontrol.h: Cache-Control directives (RFC 9111 5.2) and
 * Pragma: no-cache (RFC 9111 5.4).
 *
 * The same parser reads a request's or a response's Cache-Control and the
 * targeted fields CDN-Cache-Control (RFC 9213) and Surrogate-Control; which
 * directives matter is up to the caller (cache/freshness.h).  Pure
 * functions over (pointer, length) slices; nothing is allocated.
 */
#ifndef TESSERA_CACHE_CACHECONTROL_H
#define TESSERA_CACHE_CACHECONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Directives without an argument (bits of cache_control.flags). */
#define CC_NO_STORE (1u << 0)         /* 5.2.1.5, 5.2.2.5 */
#define CC_NO_CACHE (1u << 1)         /* 5.2.1.4, 5.2.2.4 (also no-cache="...") */
#define CC_PRIVATE (1u << 2)          /* 5.2.2.7 (also private="...") */
#define CC_PUBLIC (1u << 3)           /* 5.2.2.9 */
#define CC_MUST_REVALIDATE (1u << 4)  /* 5.2.2.2 */
#define CC_PROXY_REVALIDATE (1u << 5) /* 5.2.2.8 */
#define CC_NO_TRANSFORM (1u << 6)     /* 5.2.1.6, 5.2.2.6 */
#define CC_ONLY_IF_CACHED (1u << 7)   /* 5.2.1.7 */
#define CC_IMMUTABLE (1u << 8)        /* RFC 8246 */
#define CC_MUST_UNDERSTAND (1u << 9)  /* 5.2.2.3 */

/*
 * The directives of one message.  Zero-initialise, then call
 * cache_control_parse() once per field line: directives accumulate.
 * Durations are in seconds, saturated at HTTP_DELTA_SECONDS_MAX (2^31,
 * RFC 9111 1.2.2); a value is meaningful only when its has_ flag is set.
 */
struct cache_control {
    unsigned flags; /* CC_* */
    bool present;   /* at least one directive, known or not, was seen: the field
                     * is "present and understood" (RFC 9111 5.4 Pragma rule)
                     * and "non-empty" (RFC 9213 2.1) */

    bool has_max_age;
    int64_t max_age;
    bool has_s_maxage;
    int64_t s_maxage;
    bool has_max_stale;
    bool max_stale_any; /* max-stale without a value: any staleness (5.2.1.2) */
    int64_t max_stale;  /* when has_max_stale && !max_stale_any */
    bool has_min_fresh;
    int64_t min_fresh;
    bool has_stale_while_revalidate; /* RFC 5861 */
    int64_t stale_while_revalidate;
    bool has_stale_if_error; /* RFC 5861 */
    int64_t stale_if_error;

    /* RFC 9111 4.2.1: max-age or s-maxage had an invalid value (empty,
     * missing, not 1*DIGIT, quoted non-digits, trailing garbage) or appeared
     * twice with different values.  The response is to be treated as stale.
     * An invalid occurrence does not set has_max_age / has_s_maxage; for
     * two different valid values the smaller one is kept. */
    bool invalid_freshness;
};

/*
 * cache_control_parse: add the directives of one field value (v/len, need
 * not be NUL-terminated) to *cc.
 *  - Syntax: RFC 9111 5.2 `#( token [ "=" ( token / quoted-string ) ] )`
 *    with the RFC 9110 5.6.1 list rules: empty elements are skipped, spaces
 *    and tabs around elements and around "=" are tolerated, a comma inside a
 *    quoted string does not split, quoted-pair escapes are undone.
 *  - Names are case-insensitive; unknown directives are ignored (5.2.3).
 *  - Values may be quoted: max-age="60" is max-age=60 (1.2.2 asks recipients
 *    to accept both forms).  Huge values saturate at 2^31.
 *  - no-cache="Set-Cookie" and private="X" count as plain no-cache and
 *    private.  RFC 9111 5.2.2.4 / 5.2.2.7 would let a cache store the rest
 *    of the response without the listed fields; tessera stores whole
 *    responses and does not strip fields, so the only safe reading is the
 *    unqualified one (revalidate every time / do not store).
 *  - Restrictive directives (no-store, no-cache, private, must-revalidate,
 *    proxy-revalidate, no-transform, only-if-cached, must-understand) apply
 *    even when they carry an unexpected argument or trailing garbage;
 *    public and immutable, which widen caching, are ignored in that case.
 *  - max-stale, min-fresh, stale-while-revalidate and stale-if-error with
 *    an invalid value are ignored.  Repeated with different values, the
 *    conservative one wins: the smaller max-stale (a value beats "any"),
 *    stale-while-revalidate and stale-if-error, the larger min-fresh.
 * Never fails: malformed input only loses directives as described.
 */
void cache_control_parse(struct cache_control *cc, const char *v, size_t len);

/*
 * cache_pragma_no_cache: the Pragma field value v/len (RFC 9111 5.4,
 * `1#pragma-directive`) lists "no-cache" (case-insensitive, without an
 * argument: no-cache=x is an extension-pragma; trailing garbage after it is
 * tolerated, as for Cache-Control's restrictive directives).  Pragma only matters when the request
 * has no Cache-Control: that rule is the caller's (see cache_control.present).
 */
bool cache_pragma_no_cache(const char *v, size_t len);

#endif
