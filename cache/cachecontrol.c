/*
 * cache/cachecontrol.c: Cache-Control (RFC 9111 5.2) and Pragma (5.4)
 * parsing.
 *
 * One list walker (next_element) splits a field value into directives
 * following RFC 9110 5.6.1 (lists), 5.6.2 (tokens) and 5.6.4 (quoted
 * strings); cache_control_parse() folds each directive into the struct.
 * Pure code: no allocation, no shared state, no locking.  Every byte of the
 * input is untrusted; malformed parts are skipped, never asserted on.
 */
#include "cache/cachecontrol.h"

#include "cache/httpdate.h"

/* One list element: name [ "=" value ]. */
struct element {
    const char *name;
    size_t name_len;
    bool has_value; /* "=" was seen */
    bool quoted;    /* value was a quoted-string; value is its inside, escapes kept */
    const char *value;
    size_t value_len;
    bool malformed; /* trailing garbage or an unterminated quoted string */
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 5.6.2 tchar */
static bool is_tchar(char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return true;
    default:
        return false;
    }
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool name_is(const struct element *e, const char *lit)
{
    size_t i = 0;
    for (; i < e->name_len; i++)
        if (!lit[i] || lower(e->name[i]) != lit[i])
            return false;
    return lit[i] == '\0';
}

/* Skip to the next comma that is not inside a quoted string (or the end). */
static size_t skip_to_comma(const char *v, size_t len, size_t i)
{
    bool in_quotes = false;
    for (; i < len; i++) {
        if (in_quotes) {
            if (v[i] == '\\')
                i++;
            else if (v[i] == '"')
                in_quotes = false;
        } else if (v[i] == '"') {
            in_quotes = true;
        } else if (v[i] == ',') {
            break;
        }
    }
    return i;
}

/* Scan a quoted-string whose opening quote is at v[i].  Returns the index
 * after the closing quote, or len (and *ok false) when it is unterminated. */
static size_t scan_quoted(const char *v, size_t len, size_t i, bool *ok)
{
    for (i++; i < len; i++) {
        if (v[i] == '\\')
            i++;
        else if (v[i] == '"') {
            *ok = true;
            return i + 1;
        }
    }
    *ok = false;
    return len;
}

/* next_element: the next non-empty list element at or after *pos.  Elements
 * that do not start with a token are skipped whole.  False at the end. */
static bool next_element(const char *v, size_t len, size_t *pos, struct element *e)
{
    size_t i = *pos;

    for (;;) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        if (i >= len) {
            *pos = len;
            return false;
        }
        *e = (struct element){.name = v + i};
        while (i < len && is_tchar(v[i]))
            i++;
        e->name_len = (size_t)(v + i - e->name);
        if (e->name_len > 0)
            break;
        i = skip_to_comma(v, len, i); /* garbage where a name should be */
    }

    while (i < len && is_ows(v[i]))
        i++;
    if (i < len && v[i] == '=') {
        e->has_value = true;
        for (i++; i < len && is_ows(v[i]); i++)
            ;
        if (i < len && v[i] == '"') {
            bool ok;
            size_t end = scan_quoted(v, len, i, &ok);
            e->quoted = true;
            e->value = v + i + 1;
            e->value_len = ok ? end - i - 2 : len - i - 1;
            e->malformed = !ok;
            i = end;
        } else {
            e->value = v + i;
            while (i < len && is_tchar(v[i]))
                i++;
            e->value_len = (size_t)(v + i - e->value);
        }
        while (i < len && is_ows(v[i]))
            i++;
    }
    if (i < len && v[i] != ',') {
        e->malformed = true;
        i = skip_to_comma(v, len, i);
    }
    *pos = i;
    return true;
}

/* The element's value as delta-seconds (RFC 9111 1.2.2), quoted or not. */
static bool element_seconds(const struct element *e, int64_t *out)
{
    if (!e->has_value || e->malformed)
        return false;
    if (!e->quoted)
        return http_delta_seconds_parse(e->value, e->value_len, out);

    int64_t n = 0;
    size_t ndigits = 0;
    for (size_t i = 0; i < e->value_len; i++) {
        char c = e->value[i];
        if (c == '\\' && i + 1 < e->value_len)
            c = e->value[++i];
        if (c < '0' || c > '9')
            return false;
        if (n < HTTP_DELTA_SECONDS_MAX)
            n = n * 10 + (c - '0');
        ndigits++;
    }
    if (ndigits == 0)
        return false;
    *out = n > HTTP_DELTA_SECONDS_MAX ? HTTP_DELTA_SECONDS_MAX : n;
    return true;
}

static const struct {
    const char *name;
    unsigned flag;
    bool widens; /* loosens caching: ignored when the element is not clean */
} flag_directives[] = {
    {"no-store", CC_NO_STORE, false},
    {"no-cache", CC_NO_CACHE, false},
    {"private", CC_PRIVATE, false},
    {"public", CC_PUBLIC, true},
    {"must-revalidate", CC_MUST_REVALIDATE, false},
    {"proxy-revalidate", CC_PROXY_REVALIDATE, false},
    {"no-transform", CC_NO_TRANSFORM, false},
    {"only-if-cached", CC_ONLY_IF_CACHED, false},
    {"immutable", CC_IMMUTABLE, true},
    {"must-understand", CC_MUST_UNDERSTAND, false},
};

/* max-age / s-maxage: RFC 9111 4.2.1 makes a bad or conflicting value
 * mark the response stale. */
static void freshness_value(struct cache_control *cc, const struct element *e, bool *has,
                            int64_t *val)
{
    int64_t s;

    if (!element_seconds(e, &s)) {
        cc->invalid_freshness = true;
        return;
    }
    if (*has) {
        if (s != *val)
            cc->invalid_freshness = true;
        if (s < *val)
            *val = s;
        return;
    }
    *has = true;
    *val = s;
}

/* A duration where repeated values keep the smaller (less permissive) one. */
static void smaller_value(const struct element *e, bool *has, int64_t *val)
{
    int64_t s;

    if (!element_seconds(e, &s))
        return;
    if (!*has || s < *val)
        *val = s;
    *has = true;
}

static void max_stale(struct cache_control *cc, const struct element *e)
{
    int64_t s;

    if (!e->has_value) {
        if (e->malformed)
            return;
        if (!cc->has_max_stale) {
            cc->has_max_stale = true;
            cc->max_stale_any = true;
        }
        return;
    }
    if (!element_seconds(e, &s))
        return;
    if (!cc->has_max_stale || cc->max_stale_any || s < cc->max_stale)
        cc->max_stale = s;
    cc->has_max_stale = true;
    cc->max_stale_any = false;
}

static void min_fresh(struct cache_control *cc, const struct element *e)
{
    int64_t s;

    if (!element_seconds(e, &s))
        return;
    if (!cc->has_min_fresh || s > cc->min_fresh)
        cc->min_fresh = s;
    cc->has_min_fresh = true;
}

static void apply(struct cache_control *cc, const struct element *e)
{
    cc->present = true;
    for (size_t k = 0; k < sizeof flag_directives / sizeof flag_directives[0]; k++) {
        if (!name_is(e, flag_directives[k].name))
            continue;
        if (!flag_directives[k].widens || (!e->has_value && !e->malformed))
            cc->flags |= flag_directives[k].flag;
        return;
    }
    if (name_is(e, "max-age"))
        freshness_value(cc, e, &cc->has_max_age, &cc->max_age);
    else if (name_is(e, "s-maxage"))
        freshness_value(cc, e, &cc->has_s_maxage, &cc->s_maxage);
    else if (name_is(e, "max-stale"))
        max_stale(cc, e);
    else if (name_is(e, "min-fresh"))
        min_fresh(cc, e);
    else if (name_is(e, "stale-while-revalidate"))
        smaller_value(e, &cc->has_stale_while_revalidate, &cc->stale_while_revalidate);
    else if (name_is(e, "stale-if-error"))
        smaller_value(e, &cc->has_stale_if_error, &cc->stale_if_error);
    /* anything else: an extension we do not know, ignored (5.2.3) */
}

void cache_control_parse(struct cache_control *cc, const char *v, size_t len)
{
    struct element e;
    size_t pos = 0;

    while (next_element(v, len, &pos, &e))
        apply(cc, &e);
}

bool cache_pragma_no_cache(const char *v, size_t len)
{
    struct element e;
    size_t pos = 0;

    while (next_element(v, len, &pos, &e))
        if (name_is(&e, "no-cache") && !e.has_value)
            return true;
    return false;
}
