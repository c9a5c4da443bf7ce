/*
 * cache/range.c: Range parsing and resolution (RFC 9110 14.1, 14.2) and the
 * pieces of a multipart/byteranges body (RFC 9110 14.6, RFC 2046 5.1).
 *
 * Pure functions: no allocation, nothing shared, so no locking.  The Range
 * value comes from the client, so every number is parsed without overflow
 * (saturating, with an exact comparison where saturation would lose the
 * answer) and the work is bounded by CACHE_RANGE_MAX specs.  The multipart
 * length is computed by running the same writers with cap 0, so the
 * Content-Length the proxy sends cannot drift from the bytes it writes.
 */
#include "cache/range.h"

#include <assert.h>
#include <string.h>

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* ---- parsing ---- */

/* One 1*DIGIT number: its value saturated at UINT64_MAX and its significant
 * digits (leading zeros dropped) for an exact comparison. */
struct number {
    uint64_t value;
    const char *sig;
    size_t nsig;
};

/* Parse 1*DIGIT at p; return the end of the digits, or NULL when there is
 * none. */
static const char *parse_number(const char *p, const char *end, struct number *n)
{
    const char *start = p;

    n->value = 0;
    while (p < end && *p == '0')
        p++;
    n->sig = p;
    for (; p < end && is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (n->value > (UINT64_MAX - d) / 10)
            n->value = UINT64_MAX;
        else
            n->value = n->value * 10 + d;
    }
    n->nsig = (size_t)(p - n->sig);
    return p == start ? NULL : p;
}

/* a > b, exactly, however many digits they have. */
static bool number_greater(const struct number *a, const struct number *b)
{
    if (a->nsig != b->nsig)
        return a->nsig > b->nsig;
    return memcmp(a->sig, b->sig, a->nsig) > 0;
}

struct spec {
    bool suffix;   /* "-" suffix-length: the length is in first */
    bool has_last; /* first "-" last */
    uint64_t first, last;
};

/* One trimmed, non-empty list element [p, end): int-range or suffix-range
 * (RFC 9110 14.1.2).  False when it is neither, or first > last. */
static bool parse_spec(const char *p, const char *end, struct spec *s)
{
    struct number first, last;

    s->suffix = *p == '-';
    s->has_last = false;
    if (s->suffix) {
        const char *q = parse_number(p + 1, end, &first);
        s->first = first.value;
        return q == end;
    }
    p = parse_number(p, end, &first);
    if (p == NULL || p == end || *p != '-')
        return false;
    s->first = first.value;
    if (++p == end)
        return true;
    if (parse_number(p, end, &last) != end || number_greater(&first, &last))
        return false;
    s->has_last = true;
    s->last = last.value;
    return true;
}

static bool unit_is_bytes(const char *p, const char *end)
{
    static const char bytes[] = "bytes";
    size_t n = sizeof bytes - 1;

    if ((size_t)(end - p) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != bytes[i])
            return false;
    }
    return true;
}

/* Split the range-set [p, end) into specs.  False (ignore the Range) when
 * it is invalid, empty, or has more than CACHE_RANGE_MAX specs. */
static bool parse_range_set(const char *p, const char *end, struct spec *specs, size_t *nspecs)
{
    *nspecs = 0;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *a = p;
        while (a < e && is_ows(*a))
            a++;
        while (e > a && is_ows(e[-1]))
            e--;
        if (a < e) { /* empty elements are skipped (RFC 9110 5.6.1) */
            if (*nspecs == CACHE_RANGE_MAX || !parse_spec(a, e, &specs[*nspecs]))
                return false;
            ++*nspecs;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return *nspecs > 0;
}

/* [start, end] of a spec in a representation of length bytes; false when
 * the spec is unsatisfiable (RFC 9110 14.1.1). */
static bool resolve(const struct spec *s, uint64_t length, struct cache_range *r)
{
    if (length == 0)
        return false;
    if (s->suffix) {
        if (s->first == 0)
            return false;
        r->start = s->first >= length ? 0 : length - s->first;
        r->end = length - 1;
        return true;
    }
    if (s->first >= length)
        return false;
    r->start = s->first;
    r->end = s->has_last && s->last < length - 1 ? s->last : length - 1;
    return true;
}

/* Overlapping or adjacent (end < length <= UINT64_MAX, so end + 1 is safe). */
static bool touch(const struct cache_range *a, const struct cache_range *b)
{
    return a->start <= b->end + 1 && b->start <= a->end + 1;
}

/* RFC 9110 14.2: coalesce overlapping and adjacent ranges, keeping the
 * request order otherwise.  Once r[i] touches no later range, no later merge
 * can make it touch one (the union of two touching ranges touches only what
 * one of them touched), so one pass over i suffices. */
static void coalesce(struct cache_ranges *out)
{
    for (size_t i = 0; i < out->n; i++) {
        for (size_t j = i + 1; j < out->n;) {
            struct cache_range *a = &out->r[i], *b = &out->r[j];
            if (!touch(a, b)) {
                j++;
                continue;
            }
            if (b->start < a->start)
                a->start = b->start;
            if (b->end > a->end)
                a->end = b->end;
            memmove(b, b + 1, (out->n - j - 1) * sizeof *b);
            out->n--;
            j = i + 1; /* r[i] grew: look at the others again */
        }
    }
}

void cache_range_parse(const char *v, size_t len, uint64_t length, struct cache_ranges *out)
{
    struct spec specs[CACHE_RANGE_MAX];
    size_t nspecs;

    out->status = 200;
    out->n = 0;
    if (v == NULL)
        return;

    const char *p = v, *end = v + len;
    while (p < end && is_ows(*p))
        p++;
    while (end > p && is_ows(end[-1]))
        end--;
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (eq == NULL || !unit_is_bytes(p, eq) || !parse_range_set(eq + 1, end, specs, &nspecs))
        return;

    for (size_t i = 0; i < nspecs; i++)
        if (resolve(&specs[i], length, &out->r[out->n]))
            out->n++;
    coalesce(out);
    out->status = out->n > 0 ? 206 : 416;
}

/* ---- writing ---- */

/* snprintf-like output: len counts everything, bytes go in while they fit
 * before the NUL. */
struct writer {
    char *buf;
    size_t cap;
    size_t len;
};

static void put(struct writer *w, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++, w->len++)
        if (w->len + 1 < w->cap)
            w->buf[w->len] = s[i];
}

static void put_str(struct writer *w, const char *s)
{
    put(w, s, strlen(s));
}

static void put_u64(struct writer *w, uint64_t v)
{
    char digits[20];
    size_t n = sizeof digits;

    do {
        digits[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    put(w, digits + n, sizeof digits - n);
}

static size_t finish(struct writer *w)
{
    if (w->cap > 0)
        w->buf[w->len < w->cap ? w->len : w->cap - 1] = '\0';
    return w->len;
}

size_t cache_range_content_range(char *out, size_t cap, uint64_t start, uint64_t end,
                                 uint64_t length)
{
    struct writer w = {out, cap, 0};

    put_str(&w, "bytes ");
    put_u64(&w, start);
    put_str(&w, "-");
    put_u64(&w, end);
    put_str(&w, "/");
    put_u64(&w, length);
    return finish(&w);
}

size_t cache_range_unsatisfied(char *out, size_t cap, uint64_t length)
{
    struct writer w = {out, cap, 0};

    put_str(&w, "bytes */");
    put_u64(&w, length);
    return finish(&w);
}

/* splitmix64 (Steele, Lea, Flood 2014): a bijective mixer, so distinct
 * seeds give distinct first halves. */
static uint64_t mix(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

void cache_range_boundary(uint64_t seed, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t state = seed;
    size_t n = 0;

    for (int half = 0; half < 2; half++) {
        uint64_t h = mix(&state);
        for (int shift = 60; shift >= 0; shift -= 4)
            out[n++] = hex[(h >> shift) & 0xf];
    }
    out[n] = '\0';
}

static bool ctype_writable(const char *ct, size_t len)
{
    return ct != NULL && len > 0 && memchr(ct, '\r', len) == NULL &&
           memchr(ct, '\n', len) == NULL && memchr(ct, '\0', len) == NULL;
}

size_t cache_range_part_header(char *out, size_t cap, bool first, const char *boundary,
                               const char *content_type, size_t ctype_len, uint64_t start,
                               uint64_t end, uint64_t length)
{
    struct writer w = {out, cap, 0};

    assert(boundary != NULL);
    if (!first)
        put_str(&w, "\r\n");
    put_str(&w, "--");
    put_str(&w, boundary);
    put_str(&w, "\r\n");
    if (ctype_writable(content_type, ctype_len)) {
        put_str(&w, "Content-Type: ");
        put(&w, content_type, ctype_len);
        put_str(&w, "\r\n");
    }
    put_str(&w, "Content-Range: bytes ");
    put_u64(&w, start);
    put_str(&w, "-");
    put_u64(&w, end);
    put_str(&w, "/");
    put_u64(&w, length);
    put_str(&w, "\r\n\r\n");
    return finish(&w);
}

size_t cache_range_trailer(char *out, size_t cap, const char *boundary)
{
    struct writer w = {out, cap, 0};

    assert(boundary != NULL);
    put_str(&w, "\r\n--");
    put_str(&w, boundary);
    put_str(&w, "--\r\n");
    return finish(&w);
}

uint64_t cache_range_multipart_length(const struct cache_ranges *ranges, const char *boundary,
                                      const char *content_type, size_t ctype_len, uint64_t length)
{
    uint64_t total = 0;

    if (ranges->n == 0)
        return 0;
    for (size_t i = 0; i < ranges->n; i++) {
        const struct cache_range *r = &ranges->r[i];
        total += cache_range_part_header(NULL, 0, i == 0, boundary, content_type, ctype_len,
                                         r->start, r->end, length);
        total += r->end - r->start + 1;
    }
    return total + cache_range_trailer(NULL, 0, boundary);
}
