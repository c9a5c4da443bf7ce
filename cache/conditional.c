/*
 * cache/conditional.c: entity-tag syntax and comparison (RFC 9110 8.8.3)
 * and the evaluation of preconditions (RFC 9110 13.1, 13.2).
 *
 * Pure functions: no allocation, no clock (the caller passes now), nothing
 * shared, so no locking.  Every value comes from a client or an origin, so
 * every parser answers "invalid" instead of asserting.  A condition is
 * evaluated into a three-valued result (absent or ignored / true / false)
 * so that the order of RFC 9110 13.2.2 reads as it is written.
 */
#include "cache/conditional.h"

#include <string.h>

#include "cache/httpdate.h"

enum cond {
    COND_ABSENT, /* not sent, or ignored as RFC 9110 13.1 says */
    COND_TRUE,
    COND_FALSE,
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_etagc(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80;
}

/* The length of the entity-tag at the start of s/len, 0 when there is none. */
static size_t etag_span(const char *s, size_t len)
{
    size_t i = 0;

    if (len >= 2 && s[0] == 'W' && s[1] == '/')
        i = 2;
    if (i >= len || s[i] != '"')
        return 0;
    for (i++; i < len && is_etagc((unsigned char)s[i]); i++)
        ;
    if (i >= len || s[i] != '"')
        return 0;
    return i + 1;
}

bool cache_etag_valid(const char *etag, size_t len)
{
    return etag != NULL && len > 0 && etag_span(etag, len) == len;
}

bool cache_etag_weak(const char *etag, size_t len)
{
    return cache_etag_valid(etag, len) && etag[0] == 'W';
}

/* Both tags valid and their opaque-tags (the quoted part) equal. */
static bool opaque_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    if (!cache_etag_valid(a, alen) || !cache_etag_valid(b, blen))
        return false;
    if (a[0] == 'W') {
        a += 2;
        alen -= 2;
    }
    if (b[0] == 'W') {
        b += 2;
        blen -= 2;
    }
    return alen == blen && memcmp(a, b, alen) == 0;
}

bool cache_etag_strong_match(const char *a, size_t alen, const char *b, size_t blen)
{
    return opaque_equal(a, alen, b, blen) && a[0] != 'W' && b[0] != 'W';
}

bool cache_etag_weak_match(const char *a, size_t alen, const char *b, size_t blen)
{
    return opaque_equal(a, alen, b, blen);
}

void cache_etag_from_hash(uint64_t h, char out[24])
{
    static const char hex[] = "0123456789abcdef";
    static const char prefix[] = "\"tsr-";
    size_t n = sizeof prefix - 1;

    memcpy(out, prefix, n);
    for (int shift = 60; shift >= 0; shift -= 4)
        out[n++] = hex[(h >> shift) & 0xf];
    out[n++] = '"';
    out[n] = '\0';
}

static const char *skip_ows(const char *p, const char *end)
{
    while (p < end && is_ows(*p))
        p++;
    return p;
}

enum cache_etag_list_kind cache_etag_list_init(struct cache_etag_list *l, const char *v, size_t len)
{
    l->p = l->end = v;
    if (v == NULL)
        return CACHE_ETAG_LIST_INVALID;

    const char *end = v + len;
    const char *p = skip_ows(v, end);
    const char *q = end;
    while (q > p && is_ows(q[-1]))
        q--;
    if (q - p == 1 && *p == '*')
        return CACHE_ETAG_LIST_ANY;

    size_t ntags = 0;
    while (p < end) {
        p = skip_ows(p, end);
        if (p == end)
            break;
        if (*p == ',') { /* an empty element (RFC 9110 5.6.1) */
            p++;
            continue;
        }
        size_t n = etag_span(p, (size_t)(end - p));
        if (n == 0)
            return CACHE_ETAG_LIST_INVALID;
        ntags++;
        p = skip_ows(p + n, end);
        if (p < end && *p != ',')
            return CACHE_ETAG_LIST_INVALID;
    }
    if (ntags == 0)
        return CACHE_ETAG_LIST_INVALID;
    l->end = end;
    return CACHE_ETAG_LIST_TAGS;
}

bool cache_etag_list_next(struct cache_etag_list *l, const char **tag, size_t *len)
{
    while (l->p < l->end && (is_ows(*l->p) || *l->p == ','))
        l->p++;
    if (l->p == l->end)
        return false;
    /* _init() checked the whole list: this is a valid tag */
    size_t n = etag_span(l->p, (size_t)(l->end - l->p));
    *tag = l->p;
    *len = n;
    l->p += n;
    return true;
}

/* Does any tag of the list match the representation's ETag? */
static bool list_has(struct cache_etag_list *l, const struct cache_validators *v, bool strong)
{
    const char *tag;
    size_t len;

    if (!v->exists)
        return false;
    while (cache_etag_list_next(l, &tag, &len)) {
        if (strong ? cache_etag_strong_match(tag, len, v->etag, v->etag_len)
                   : cache_etag_weak_match(tag, len, v->etag, v->etag_len))
            return true;
    }
    return false;
}

/* RFC 9110 13.1.1: strong comparison; "*" needs a current representation. */
static enum cond eval_if_match(const struct cache_preconditions *p,
                               const struct cache_validators *v)
{
    struct cache_etag_list l;

    switch (cache_etag_list_init(&l, p->if_match, p->if_match_len)) {
    case CACHE_ETAG_LIST_ANY:
        return v->exists ? COND_TRUE : COND_FALSE;
    case CACHE_ETAG_LIST_TAGS:
        return list_has(&l, v, true) ? COND_TRUE : COND_FALSE;
    case CACHE_ETAG_LIST_INVALID:
        break;
    }
    return COND_ABSENT;
}

/* RFC 9110 13.1.2: weak comparison; the condition is that nothing matches. */
static enum cond eval_if_none_match(const struct cache_preconditions *p,
                                    const struct cache_validators *v)
{
    struct cache_etag_list l;

    switch (cache_etag_list_init(&l, p->if_none_match, p->if_none_match_len)) {
    case CACHE_ETAG_LIST_ANY:
        return v->exists ? COND_FALSE : COND_TRUE;
    case CACHE_ETAG_LIST_TAGS:
        return list_has(&l, v, false) ? COND_FALSE : COND_TRUE;
    case CACHE_ETAG_LIST_INVALID:
        break;
    }
    return COND_ABSENT;
}

/* Floor division: Last-Modified in whole seconds, as an HTTP-date holds it
 * (also for the pre-1970 dates an origin may send). */
static int64_t seconds_of_ms(int64_t ms)
{
    int64_t s = ms / 1000;
    return (ms % 1000 < 0) ? s - 1 : s;
}

static bool has_last_modified(const struct cache_validators *v)
{
    return v->exists && v->last_modified_ms != 0;
}

static bool date_of(const char *s, size_t len, int64_t now_s, int64_t *out)
{
    return s != NULL && http_date_parse_at(s, len, now_s, out);
}

/* RFC 9110 13.1.4: true when Last-Modified <= the date. */
static enum cond eval_if_unmodified_since(const struct cache_preconditions *p,
                                          const struct cache_validators *v, int64_t now_s)
{
    int64_t date;

    if (!date_of(p->if_unmodified_since, p->if_unmodified_since_len, now_s, &date) ||
        !has_last_modified(v))
        return COND_ABSENT;
    return seconds_of_ms(v->last_modified_ms) <= date ? COND_TRUE : COND_FALSE;
}

/* RFC 9110 13.1.3: false when Last-Modified <= the date; a date later than
 * now is invalid (a client's clock or a forged date must not make every
 * later change look "not modified"). */
static enum cond eval_if_modified_since(const struct cache_preconditions *p,
                                        const struct cache_validators *v, int64_t now_ms)
{
    int64_t date;

    if (!date_of(p->if_modified_since, p->if_modified_since_len, seconds_of_ms(now_ms), &date) ||
        !has_last_modified(v))
        return COND_ABSENT;
    if (date > seconds_of_ms(now_ms))
        return COND_ABSENT;
    return seconds_of_ms(v->last_modified_ms) <= date ? COND_FALSE : COND_TRUE;
}

enum cache_precondition_result cache_evaluate_preconditions(const struct cache_preconditions *p,
                                                            const struct cache_validators *v,
                                                            int64_t now_ms)
{
    /* step 1, else step 2 */
    enum cond c = eval_if_match(p, v);
    if (c == COND_ABSENT)
        c = eval_if_unmodified_since(p, v, seconds_of_ms(now_ms));
    if (c == COND_FALSE)
        return PRECONDITION_FAILED;

    /* step 3, else step 4 (GET and HEAD only) */
    c = eval_if_none_match(p, v);
    if (c == COND_FALSE)
        return p->get_or_head ? PRECONDITION_NOT_MODIFIED : PRECONDITION_FAILED;
    if (c == COND_ABSENT && p->get_or_head && eval_if_modified_since(p, v, now_ms) == COND_FALSE)
        return PRECONDITION_NOT_MODIFIED;

    return PRECONDITION_PROCEED;
}

bool cache_if_range_matches(const char *if_range, size_t len, const struct cache_validators *v)
{
    if (if_range == NULL || !v->exists)
        return false;

    const char *end = if_range + len;
    const char *p = skip_ows(if_range, end);
    while (end > p && is_ows(end[-1]))
        end--;
    size_t n = (size_t)(end - p);

    /* entity-tag or HTTP-date: "Wed, ..." starts with a W too */
    if ((n > 0 && *p == '"') || (n > 1 && p[0] == 'W' && p[1] == '/'))
        return cache_etag_strong_match(p, n, v->etag, v->etag_len);

    int64_t date;
    if (!has_last_modified(v) || !v->last_modified_strong)
        return false;
    int64_t lm = seconds_of_ms(v->last_modified_ms);
    return http_date_parse_at(p, n, lm, &date) && date == lm;
}
