/*
 * cache/key.c: primary keys, Vary keys and their hashes.
 *
 * Keys are built byte by byte through a small writer with snprintf
 * semantics (struct out): it counts every byte and stores those that fit,
 * so one code path both sizes and fills a buffer.  Pure code: the only
 * allocation is the parameter array for sorting a query with more than
 * QUERY_STACK_PARAMS parameters, freed before returning.  No shared state,
 * no locking.  Every input byte is untrusted.
 */
#include "cache/key.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Sorting the query of a normal URL needs no allocation. */
#define QUERY_STACK_PARAMS 64

struct out {
    char *p;
    size_t cap;
    size_t len;
};

static void put_char(struct out *o, char c)
{
    if (o->len + 1 < o->cap)
        o->p[o->len] = c;
    o->len++;
}

static void put(struct out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_char(o, s[i]);
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_pct(struct out *o, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";

    put_char(o, '%');
    put_char(o, hex[c >> 4]);
    put_char(o, hex[c & 15]);
}

/* Bytes a valid request-target cannot hold raw (controls, space, DEL and
 * non-ASCII) are percent-encoded, which is also what they mean (RFC 3986
 * 2.1).  So a target can never write a "\n" that would start a header or
 * cookie part of the key. */
static void put_target_bytes(struct out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            put_pct(o, c);
        else
            put_char(o, (char)c);
    }
}

/* Field values: a parsed field value cannot contain controls other than
 * HTAB (RFC 9110 5.5); should one get here anyway it is percent-encoded
 * rather than allowed to forge a "\n" part of the key. */
static void put_value_bytes(struct out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            put_pct(o, c);
        else
            put_char(o, (char)c);
    }
}

static size_t finish(struct out *o)
{
    if (o->cap > 0)
        o->p[o->len < o->cap ? o->len : o->cap - 1] = '\0';
    return o->len;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_ows(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_ows((*s)[*n - 1]))
        (*n)--;
}

static bool eq_ci(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* ---- host ---- */

static void put_lower(struct out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_char(o, lower(s[i]));
}

/* RFC 3986 3.2.2 reg-name / IP-literal characters, and ':' for the port. */
static bool host_char(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("-._~!$&'()*+,;=:[]", c) != NULL;
}

/* Host bytes lower-cased; any other byte, '%' included, percent-encoded.
 * A Host the proxy did not reject can then never write "/", "?", "@" or
 * "\n" into the key and pass for another host's path; and since '%' is
 * encoded too, two different Host values never give the same key. */
static void put_host_bytes(struct out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = lower(s[i]);
        if (host_char(c))
            put_char(o, c);
        else
            put_pct(o, (unsigned char)c);
    }
}

/* RFC 3986 6.2.2.1 (case) and 6.2.3 (default port), plus the trailing dot
 * of a fully qualified name, which names the same host. */
static void put_host(struct out *o, const char *scheme, size_t scheme_len, const char *h, size_t n)
{
    const char *port = NULL;
    size_t port_len = 0, name_len;

    trim(&h, &n);
    name_len = n;
    if (n > 0 && h[0] == '[') {
        const char *close = memchr(h, ']', n);
        size_t end = close ? (size_t)(close - h) + 1 : n;
        if (end < n && h[end] == ':') {
            port = h + end + 1;
            port_len = n - end - 1;
            name_len = end;
        }
    } else {
        const char *colon = memrchr(h, ':', n);
        if (colon) {
            name_len = (size_t)(colon - h);
            port = colon + 1;
            port_len = n - name_len - 1;
        }
        if (name_len > 0 && h[name_len - 1] == '.')
            name_len--;
    }
    put_host_bytes(o, h, name_len);
    if (!port || port_len == 0)
        return;
    if (!all_digits(port, port_len)) {
        put_char(o, ':');
        put_host_bytes(o, port, port_len);
        return;
    }
    while (port_len > 1 && port[0] == '0') {
        port++;
        port_len--;
    }
    if ((eq_ci(scheme, scheme_len, "http", 4) && port_len == 2 && !memcmp(port, "80", 2)) ||
        (eq_ci(scheme, scheme_len, "https", 5) && port_len == 3 && !memcmp(port, "443", 3)))
        return;
    put_char(o, ':');
    put(o, port, port_len);
}

/* ---- path ---- */

static bool is_unreserved(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 3986 6.2.2.1 and 6.2.2.2 on the path; see key.h for what is not done. */
static void put_path(struct out *o, const char *p, size_t n)
{
    /* A target that is not origin-form (no leading "/") gets a space, which
     * no host can write (put_host_bytes), so "h" + "x.com/p" cannot pass
     * for host "hx.com" + "/p". */
    if (n == 0 || p[0] != '/')
        put_char(o, ' ');
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (p[i] != '%' || i + 2 >= n || (hi = hexval(p[i + 1])) < 0 ||
            (lo = hexval(p[i + 2])) < 0) {
            put_target_bytes(o, p + i, 1);
            continue;
        }
        char c = (char)(hi * 16 + lo);
        if (is_unreserved(c))
            put_char(o, c);
        else
            put_pct(o, (unsigned char)c);
        i += 2;
    }
}

/* ---- query ---- */

struct param {
    const char *p;
    size_t len;
    size_t name_len; /* bytes before the first '=' (len when there is none) */
};

static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0)
        return c;
    return an < bn ? -1 : an > bn;
}

/* By name, then by value, then "a" before "a=": a total order, so equal
 * queries sort the same whatever qsort does with ties. */
static int cmp_param(const void *va, const void *vb)
{
    const struct param *a = va, *b = vb;
    int c = cmp_bytes(a->p, a->name_len, b->p, b->name_len);
    if (c != 0)
        return c;
    size_t av = a->len - a->name_len, bv = b->len - b->name_len;
    c = cmp_bytes(a->p + a->name_len + (av > 0), av - (av > 0), b->p + b->name_len + (bv > 0),
                  bv - (bv > 0));
    if (c != 0)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static bool param_listed(const struct param *pa, const struct config_cache_policy *policy)
{
    for (size_t i = 0; i < policy->nkey_query_params; i++) {
        const char *name = policy->key_query_params[i];
        if (strlen(name) == pa->name_len && !memcmp(name, pa->p, pa->name_len))
            return true;
    }
    return false;
}

static bool param_kept(const struct param *pa, const struct config_cache_policy *policy)
{
    switch (policy->key_query) {
    case KEY_QUERY_ONLY:
        return param_listed(pa, policy);
    case KEY_QUERY_EXCEPT:
        return !param_listed(pa, policy);
    default:
        return true;
    }
}

/* Sorted (and filtered) query.  False when memory runs out. */
static bool put_sorted_query(struct out *o, const char *q, size_t n,
                             const struct config_cache_policy *policy)
{
    struct param stack[QUERY_STACK_PARAMS], *params = stack;
    size_t count = 0, max = 1;

    for (size_t i = 0; i < n; i++)
        max += q[i] == '&';
    if (max > QUERY_STACK_PARAMS) {
        params = malloc(max * sizeof *params);
        if (!params)
            return false;
    }
    for (size_t i = 0; i < n;) {
        const char *amp = memchr(q + i, '&', n - i);
        size_t end = amp ? (size_t)(amp - q) : n;
        if (end > i) {
            struct param pa = {q + i, end - i, end - i};
            const char *eq = memchr(pa.p, '=', pa.len);
            if (eq)
                pa.name_len = (size_t)(eq - pa.p);
            if (param_kept(&pa, policy))
                params[count++] = pa;
        }
        i = end + 1;
    }
    qsort(params, count, sizeof *params, cmp_param);
    for (size_t k = 0; k < count; k++) {
        put_char(o, k == 0 ? '?' : '&');
        put_target_bytes(o, params[k].p, params[k].len);
    }
    if (params != stack)
        free(params);
    return true;
}

/* ---- request fields ---- */

/* Every line of field name, trimmed, joined by ", ". */
static void put_field_lines(struct out *o, const struct cache_field *fields, size_t nfields,
                            const char *name, size_t name_len)
{
    bool first = true;

    for (size_t i = 0; i < nfields; i++) {
        if (!eq_ci(fields[i].name, fields[i].name_len, name, name_len))
            continue;
        const char *v = fields[i].value;
        size_t vn = fields[i].value_len;
        trim(&v, &vn);
        if (!first)
            put(o, ", ", 2);
        put_value_bytes(o, v, vn);
        first = false;
    }
}

/* The value of cookie name in the Cookie field lines (first one wins). */
static bool find_cookie(const struct cache_field *fields, size_t nfields, const char *name,
                        const char **val, size_t *val_len)
{
    size_t name_len = strlen(name);

    for (size_t i = 0; i < nfields; i++) {
        if (!eq_ci(fields[i].name, fields[i].name_len, "cookie", 6))
            continue;
        const char *v = fields[i].value;
        size_t n = fields[i].value_len;
        for (size_t pos = 0; pos < n;) {
            const char *semi = memchr(v + pos, ';', n - pos);
            size_t end = semi ? (size_t)(semi - v) : n;
            const char *pair = v + pos;
            size_t pair_len = end - pos;
            const char *eq = memchr(pair, '=', pair_len);
            pos = end + 1;
            if (!eq)
                continue;
            const char *pn = pair;
            size_t pn_len = (size_t)(eq - pair);
            trim(&pn, &pn_len);
            if (pn_len != name_len || memcmp(pn, name, name_len) != 0)
                continue;
            *val = eq + 1;
            *val_len = (size_t)(pair + pair_len - *val);
            trim(val, val_len);
            return true;
        }
    }
    return false;
}

size_t cache_key_build(const struct cache_key_input *in, const struct config_cache_policy *policy,
                       char *out, size_t cap)
{
    struct out o = {out, cap, 0};
    const char *t = in->target;
    const char *qmark = in->target_len ? memchr(t, '?', in->target_len) : NULL;
    size_t path_len = qmark ? (size_t)(qmark - t) : in->target_len;

    put_lower(&o, in->scheme, in->scheme_len);
    put(&o, "://", 3);
    put_host(&o, in->scheme, in->scheme_len, in->host, in->host_len);
    put_path(&o, t, path_len);

    if (qmark) {
        const char *q = qmark + 1;
        size_t qn = in->target_len - path_len - 1;
        switch (policy->key_query) {
        case KEY_QUERY_ALL:
            put_char(&o, '?');
            put_target_bytes(&o, q, qn);
            break;
        case KEY_QUERY_NONE:
            break;
        case KEY_QUERY_SORTED:
        case KEY_QUERY_ONLY:
        case KEY_QUERY_EXCEPT:
            if (!put_sorted_query(&o, q, qn, policy)) {
                if (cap > 0)
                    out[0] = '\0';
                return 0;
            }
            break;
        }
    }

    for (size_t i = 0; i < policy->nkey_headers; i++) {
        const char *name = policy->key_headers[i];
        put(&o, "\nh:", 3);
        put_str(&o, name);
        put_char(&o, '=');
        put_field_lines(&o, in->fields, in->nfields, name, strlen(name));
    }
    for (size_t i = 0; i < policy->nkey_cookies; i++) {
        const char *val = NULL;
        size_t val_len = 0;
        put(&o, "\nc:", 3);
        put_str(&o, policy->key_cookies[i]);
        put_char(&o, '=');
        if (find_cookie(in->fields, in->nfields, policy->key_cookies[i], &val, &val_len))
            put_value_bytes(&o, val, val_len);
    }
    return finish(&o);
}

/* ---- Vary ---- */

/* The next non-empty element of a comma-separated list, trimmed. */
static bool next_list_element(const char *v, size_t n, size_t *pos, const char **e, size_t *en)
{
    while (*pos < n) {
        const char *comma = memchr(v + *pos, ',', n - *pos);
        size_t end = comma ? (size_t)(comma - v) : n;
        *e = v + *pos;
        *en = end - *pos;
        *pos = end + 1;
        trim(e, en);
        if (*en > 0)
            return true;
    }
    return false;
}

/* Has name already appeared in the list before byte offset `before`? */
static bool listed_before(const char *v, size_t before, const char *name, size_t name_len)
{
    const char *e;
    size_t en, pos = 0;

    while (next_list_element(v, before, &pos, &e, &en))
        if (eq_ci(e, en, name, name_len))
            return true;
    return false;
}

/* Writes a byte stream with each run of spaces and tabs made one space
 * and the ends trimmed: a space is only written before a later non-blank. */
struct collapse {
    struct out *o;
    bool started; /* a non-blank was written */
    bool space;   /* blanks seen since the last non-blank */
};

static void collapse_put(struct collapse *c, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (is_ows(s[i])) {
            c->space = true;
            continue;
        }
        if (c->space && c->started)
            put_char(c->o, ' ');
        put_value_bytes(c->o, s + i, 1);
        c->space = false;
        c->started = true;
    }
}

/* Lines joined by ", ", whitespace runs collapsed to one space, trimmed. */
static void put_vary_value(struct out *o, const struct cache_field *fields, size_t nfields,
                           const char *name, size_t name_len)
{
    struct collapse c = {o, false, false};
    bool first = true;

    for (size_t i = 0; i < nfields; i++) {
        if (!eq_ci(fields[i].name, fields[i].name_len, name, name_len))
            continue;
        if (!first)
            collapse_put(&c, ", ", 2);
        collapse_put(&c, fields[i].value, fields[i].value_len);
        first = false;
    }
}

static bool has_field(const struct cache_field *fields, size_t nfields, const char *name,
                      size_t name_len)
{
    for (size_t i = 0; i < nfields; i++)
        if (eq_ci(fields[i].name, fields[i].name_len, name, name_len))
            return true;
    return false;
}

size_t cache_vary_key(const char *vary, size_t vary_len, const struct cache_field *fields,
                      size_t nfields, char *out, size_t cap)
{
    struct out o = {out, cap, 0};
    const char *e;
    size_t en, pos = 0;

    while (next_list_element(vary, vary_len, &pos, &e, &en)) {
        if ((en == 1 && e[0] == '*') || listed_before(vary, (size_t)(e - vary), e, en))
            continue;
        put_lower(&o, e, en);
        if (has_field(fields, nfields, e, en)) {
            put_char(&o, '=');
            put_vary_value(&o, fields, nfields, e, en);
        }
        put_char(&o, '\n');
    }
    return finish(&o);
}

bool cache_vary_is_star(const char *vary, size_t vary_len)
{
    const char *e;
    size_t en, pos = 0;

    while (next_list_element(vary, vary_len, &pos, &e, &en))
        if (en == 1 && e[0] == '*')
            return true;
    return false;
}

/* ---- hashes ---- */

uint64_t cache_key_hash(const char *key, size_t len, uint64_t seed)
{
    return XXH3_64bits_withSeed(key, len, seed);
}

void cache_key_hash128_hex(const char *key, size_t len, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    XXH128_canonical_t c;

    XXH128_canonicalFromHash(&c, XXH3_128bits_withSeed(key, len, 0));
    for (size_t i = 0; i < sizeof c.digest; i++) {
        out[2 * i] = hex[c.digest[i] >> 4];
        out[2 * i + 1] = hex[c.digest[i] & 15];
    }
    out[32] = '\0';
}
