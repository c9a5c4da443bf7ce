/*
 * cache/conditional.h: entity-tags and the preconditions of RFC 9110
 * section 13 (If-Match, If-None-Match, If-Modified-Since,
 * If-Unmodified-Since, If-Range), evaluated against a stored
 * representation's validators.
 *
 * Pure functions over (pointer, length) slices: nothing is allocated, no
 * clock is read (the caller passes "now"), inputs need not be NUL-terminated
 * and bad input is a documented result, never an assertion.  Times are
 * int64_t milliseconds since the Unix epoch, as in cache/freshness.h.
 *
 * Entity-tags are handled exactly as sent, quotes and "W/" included
 * (RFC 9110 8.8.3):
 *     entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
 *     etagc      = %x21 / %x23-7E / %x80-FF
 * "W/" is case-sensitive; no whitespace inside a tag.  A stored ETag that is
 * not a valid entity-tag (an origin sending abc unquoted) is treated as no
 * ETag at all: it never matches anything.
 */
#ifndef TESSERA_CACHE_CONDITIONAL_H
#define TESSERA_CACHE_CONDITIONAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* cache_etag_valid: etag/len is exactly one entity-tag (no surrounding
 * whitespace).  False for NULL or empty. */
bool cache_etag_valid(const char *etag, size_t len);

/* cache_etag_weak: etag/len is a valid entity-tag with the weak indicator
 * "W/".  False for a strong tag and for anything invalid. */
bool cache_etag_weak(const char *etag, size_t len);

/* cache_etag_strong_match: RFC 9110 8.8.3.2 strong comparison: both tags are
 * valid, neither is weak, and their opaque-tags are equal byte for byte.
 * False when either is invalid or empty. */
bool cache_etag_strong_match(const char *a, size_t alen, const char *b, size_t blen);

/* cache_etag_weak_match: RFC 9110 8.8.3.2 weak comparison: both tags are
 * valid and their opaque-tags are equal byte for byte, whether either is
 * weak or not.  False when either is invalid or empty. */
bool cache_etag_weak_match(const char *a, size_t alen, const char *b, size_t blen);

/* cache_etag_from_hash: write the strong entity-tag "tsr-XXXXXXXXXXXXXXXX"
 * (quotes included; 16 lower-case hex digits of h) and a NUL into out: 22
 * characters.  For `etag generate`: the proxy hashes the identity body (XXH3)
 * and passes the hash, so every node gives one body the same tag.  Cannot
 * fail. */
#define CACHE_ETAG_HASH_LEN 22
void cache_etag_from_hash(uint64_t h, char out[24]);

/* What an If-Match or If-None-Match value holds (RFC 9110 13.1.1, 13.1.2:
 * `"*" / #entity-tag`). */
enum cache_etag_list_kind {
    CACHE_ETAG_LIST_INVALID, /* not valid: the caller must ignore the field (13.1) */
    CACHE_ETAG_LIST_ANY,     /* "*" */
    CACHE_ETAG_LIST_TAGS,    /* one or more entity-tags: read them with _next() */
};

/* An iterator over an entity-tag list.  The members are private; the struct
 * is public only so that it can live on the caller's stack.  It points into
 * the caller's value, which must outlive it. */
struct cache_etag_list {
    const char *p;
    const char *end;
};

/*
 * cache_etag_list_init: check the whole field value v/len (all the field
 * lines of one name joined by ", ") and set *l up to iterate over it.
 *  - "*" alone, with optional spaces or tabs around it, is ANY.  A "*" next
 *    to anything else ("*, *" from two field lines, "*, \"a\"") is INVALID.
 *  - Otherwise the RFC 9110 5.6.1 list rules: elements separated by commas
 *    with optional spaces and tabs around them; empty elements are skipped;
 *    every non-empty element must be exactly one entity-tag, or the whole
 *    value is INVALID.
 *  - A value with no element at all (empty, only commas or whitespace) is
 *    INVALID too: taken as a list it would match nothing, and an empty
 *    If-Match would then fail every request.
 * NULL v is INVALID.  Returns the kind; _next() may be called only after
 * CACHE_ETAG_LIST_TAGS.
 */
enum cache_etag_list_kind cache_etag_list_init(struct cache_etag_list *l, const char *v,
                                               size_t len);

/* cache_etag_list_next: store the next entity-tag of the list (with its
 * quotes and any "W/", pointing into the value) in *tag and *len and return
 * true; return false after the last one. */
bool cache_etag_list_next(struct cache_etag_list *l, const char **tag, size_t *len);

/*
 * The request's conditional fields, as the proxy received them: each value
 * is all the field lines of that name joined by ", ", trimmed, pointing into
 * the request buffer.  NULL means the field is absent; non-NULL with length
 * 0 is a field sent empty (not valid, so ignored).  Zero-initialise, then
 * set what the request has.
 */
struct cache_preconditions {
    const char *if_match;
    size_t if_match_len;
    const char *if_none_match;
    size_t if_none_match_len;
    const char *if_modified_since;
    size_t if_modified_since_len;
    const char *if_unmodified_since;
    size_t if_unmodified_since_len;
    const char *if_range; /* not read by cache_evaluate_preconditions(): see
                           * cache_if_range_matches() */
    size_t if_range_len;
    bool get_or_head; /* the method is GET or HEAD */
};

/* The selected (stored) representation's validators. */
struct cache_validators {
    const char *etag; /* the ETag value as sent; NULL or length 0 when none */
    size_t etag_len;
    int64_t last_modified_ms; /* Last-Modified; 0 when none */
    /* RFC 9110 8.8.2.2: a Last-Modified date is only a strong validator
     * when the cache can tell that the representation did not change twice
     * within that second; a cache can when its entry's Date is at least one
     * second after Last-Modified.  The proxy sets this when
     * Date - Last-Modified >= 1 s; only If-Range reads it. */
    bool last_modified_strong;
    bool exists; /* there is a current representation (false: a miss the
                  * proxy evaluates preconditions for anyway) */
};

enum cache_precondition_result {
    PRECONDITION_PROCEED,      /* serve the method normally (200, or 206
                                * after cache_if_range_matches()) */
    PRECONDITION_NOT_MODIFIED, /* 304 Not Modified */
    PRECONDITION_FAILED,       /* 412 Precondition Failed */
};

/*
 * cache_evaluate_preconditions: RFC 9110 13.2.2, steps 1 to 4, in that
 * order; the first step that decides wins.
 *  1. If-Match present: STRONG comparison against the ETag; "*" is true
 *     when the representation exists.  False -> FAILED.
 *  2. Otherwise If-Unmodified-Since present: true when Last-Modified <= the
 *     date.  False -> FAILED.  Ignored when the date is not a valid
 *     HTTP-date (a list of two dates is not one) or there is no
 *     Last-Modified (13.1.4).
 *  3. If-None-Match present: WEAK comparison; "*" is false when the
 *     representation exists; a list is false when one tag matches.  False
 *     -> NOT_MODIFIED for GET and HEAD, FAILED for any other method.
 *  4. Otherwise, for GET and HEAD only, If-Modified-Since present: false
 *     when Last-Modified <= the date -> NOT_MODIFIED.  Ignored when the date
 *     is not a valid HTTP-date, when it is later than now_ms (13.1.3: such
 *     a date is invalid), or when there is no Last-Modified.
 *  Otherwise PROCEED.  Step 5 (Range, If-Range) is cache_if_range_matches()
 *  and cache/range.h.
 * Dates compare at one-second granularity: an HTTP-date has whole seconds,
 * so Last-Modified is truncated to its second first.
 * RFC 9110 13.1: a field whose value is not valid is ignored, and an ignored
 * field counts as absent everywhere, also where another rule depends on its
 * presence (an invalid If-Match does not switch If-Unmodified-Since off; an
 * invalid If-None-Match does not switch If-Modified-Since off).
 * now_ms also resolves two-digit RFC 850 years.
 * RFC 9110 13.2.1: preconditions apply only when the response without them
 * would be 2xx (or 412): the caller does not call this for a stored 404.
 * Cannot fail.
 */
enum cache_precondition_result cache_evaluate_preconditions(const struct cache_preconditions *p,
                                                            const struct cache_validators *v,
                                                            int64_t now_ms);

/*
 * cache_if_range_matches: the If-Range value if_range/len (RFC 9110 13.1.5),
 * spaces and tabs around it ignored, holds the representation's current
 * validator, so the Range may be honoured (true); false means: ignore the
 * Range and send the whole representation with 200.
 *  - An entity-tag (starts with '"' or "W/"): true when it matches the ETag
 *    by STRONG comparison, so a weak tag on either side is always false.
 *  - Otherwise an HTTP-date: true only when Last-Modified exists, is strong
 *    (v->last_modified_strong, see above) and its second equals the date.
 *    Two-digit RFC 850 years are resolved against Last-Modified, which the
 *    date must equal anyway, so no clock is needed.
 *  - Anything else (a malformed tag, a bad date, an empty value, NULL), or
 *    no current representation: false.  RFC 9110 13.1 would have an invalid
 *    field ignored, which here means honouring the Range unconditionally;
 *    answering 200 instead is always correct and cannot splice pieces of
 *    two different representations in the client.
 * The caller calls this only for a GET with both Range and If-Range, after
 * cache_evaluate_preconditions() returned PRECONDITION_PROCEED.
 */
bool cache_if_range_matches(const char *if_range, size_t len, const struct cache_validators *v);

#endif
