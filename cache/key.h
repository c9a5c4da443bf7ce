/*
 * cache/key.h: cache keys.  The primary key names a resource (scheme, host,
 * normalised path, the query per the route's policy, and the request fields
 * and cookies the policy lists); the Vary key (RFC 9111 4.1) tells apart the
 * variants stored under one primary key.  Both are byte strings compared for
 * equality; the hashes below index them in the stores.
 *
 * Pure functions over (pointer, length) slices.  Builders write into a
 * caller's buffer with snprintf semantics: they return the length of the
 * whole key (without the NUL) whatever cap is, write at most cap bytes, and
 * NUL-terminate when cap > 0; call once with cap 0 to size the buffer.
 */
#ifndef TESSERA_CACHE_KEY_H
#define TESSERA_CACHE_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* One request header field line, as the proxy's parser saw it (the value
 * without surrounding whitespace).  Neither string is NUL-terminated; both
 * belong to the caller. */
struct cache_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct cache_key_input {
    const char *scheme; /* "http" (case-insensitive; written lower-case) */
    size_t scheme_len;
    const char *host; /* the Host value: host [ ":" port ], IPv6 in brackets */
    size_t host_len;
    const char *target; /* origin-form request-target: path [ "?" query ] */
    size_t target_len;
    const struct cache_field *fields; /* the request's header field lines */
    size_t nfields;
};

/*
 * cache_key_build: the primary key of a request under policy:
 *
 *     scheme "://" host path [ "?" query ] { "\nh:" NAME "=" VALUE } { "\nc:" NAME "=" VALUE }
 *
 *  - scheme lower-cased.
 *  - host lower-cased (RFC 3986 6.2.2.1), one trailing dot of the name
 *    dropped, the port dropped when empty or the scheme's default (80 for
 *    http, 443 for https; leading zeros ignored) (RFC 3986 6.2.3).  Bytes
 *    that cannot appear in a host (RFC 3986 3.2.2), '%' included, are
 *    percent-encoded: a bad Host the proxy let through cannot write "/",
 *    "?" or "@" and pass for another host's path.
 *  - path: percent-encoded unreserved characters (ALPHA DIGIT - . _ ~) are
 *    decoded and every other percent-encoding's hex digits upper-cased
 *    (RFC 3986 6.2.2.1, 6.2.2.2).  Nothing else: no dot-segment removal, no
 *    slash merging.  The origin receives the raw target, and an application
 *    may route /a/../b differently from /b; folding them into one key could
 *    serve one page's body for the other.  A malformed "%" is kept as is.
 *    Raw controls, space, DEL and non-ASCII bytes (which a valid target does
 *    not hold) are percent-encoded, here and in the query.  A target that
 *    does not start with "/" is written after a space, which no host can
 *    produce, so "x.com/p" on host "h" is not "/p" on host "hx.com".
 *  - query (the bytes after the first "?", kept raw), by policy->key_query:
 *    ALL: "?" and the query exactly as sent (an empty query keeps its "?");
 *    NONE: dropped with its "?";
 *    SORTED: split on "&", empty parameters dropped, sorted bytewise by name
 *      (the part before the first "="), then by value, joined with "&";
 *    ONLY / EXCEPT: the same after keeping only / dropping the parameters
 *      whose name equals one of policy->key_query_params (exact bytes);
 *    for these three no "?" is written when no parameter is left.
 *  - one "\nh:" part per policy->key_headers entry, in policy order: NAME as
 *    configured (lower-case), VALUE every field line of that name (case-
 *    insensitive) joined by ", ", each trimmed of spaces and tabs; empty
 *    when absent.  Controls other than HTAB (which RFC 9110 5.5 forbids in
 *    a value, so the proxy's parser never passes them) would be percent-
 *    encoded, here and in cookie and Vary values: no value can forge a
 *    "\n" part.
 *  - one "\nc:" part per policy->key_cookies entry: NAME as configured,
 *    VALUE from the Cookie field lines (";"-separated name=value pairs,
 *    trimmed; names case-sensitive; the first occurrence wins); empty when
 *    absent.
 * Returns the key's length (snprintf semantics, see above), or 0 when the
 * query has too many parameters to sort on the stack and memory runs out (a
 * key is never empty, so 0 is unambiguous: treat the request as a pass).
 */
size_t cache_key_build(const struct cache_key_input *in, const struct config_cache_policy *policy,
                       char *out, size_t cap);

/*
 * cache_vary_key: the secondary key for a response's Vary value (all its
 * Vary field lines joined by ",") and a request's fields (RFC 9111 4.1):
 * for each field name Vary lists, in the order listed, lower-cased, each
 * name once, "*" and empty elements skipped:
 *     name "=" value "\n"   when the request has the field, value being all
 *                           its lines joined by ", " with each run of spaces
 *                           and tabs made one space and the ends trimmed
 *                           (case preserved);
 *     name "\n"             when the request has no such field: absent and
 *                           empty are different (an empty Accept-Encoding
 *                           asks for identity, an absent one accepts all).
 * A request matches a stored variant when the two vary keys are equal.  An
 * empty Vary gives the empty key.  snprintf semantics; cannot fail.
 */
size_t cache_vary_key(const char *vary, size_t vary_len, const struct cache_field *fields,
                      size_t nfields, char *out, size_t cap);

/* cache_vary_is_star: the Vary value lists "*" (RFC 9111 4.1: such a
 * response never matches a later request, so it is not stored). */
bool cache_vary_is_star(const char *vary, size_t vary_len);

/* cache_key_hash: XXH3 64-bit hash of key/len with seed (for in-process
 * tables; a per-process random seed keeps bucket placement unguessable). */
uint64_t cache_key_hash(const char *key, size_t len, uint64_t seed);

/* cache_key_hash128_hex: XXH3 128-bit hash of key/len with the fixed seed 0,
 * so every node computes the same value (memcached item names), written as
 * 32 lower-case hex digits of the canonical (big-endian) form plus a NUL. */
void cache_key_hash128_hex(const char *key, size_t len, char out[33]);

#endif
