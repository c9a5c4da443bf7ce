/*
 * compress/negotiate.c: Accept-Encoding parsing (RFC 9110 12.5.3, 12.4.2
 * for qvalue) and the choice of a coding.  Pure functions: no allocation,
 * nothing shared, so no locking.  The header comes from the client, so the
 * parser only ever reads inside [p, p + len) and a malformed element is
 * dropped alone, never the whole header.
 */
#include "compress/negotiate.h"

#include <string.h>
#include <strings.h>

/* q as thousandths: 0..1000, or Q_UNSET when the coding is not listed. */
#define Q_UNSET (-1)
#define Q_ONE 1000

enum slot { SLOT_IDENTITY, SLOT_GZIP, SLOT_BR, SLOT_ZSTD, SLOT_STAR, SLOT_OTHER, SLOT_N };

_Static_assert(CODING_COUNT <= 32, "CODING_BIT() needs one bit of an unsigned per coding");

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 9110 5.6.2 tchar. */
static bool is_tchar(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c))
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

static bool token_is(const char *t, size_t n, const char *name)
{
    size_t m = strlen(name);
    return n == m && strncasecmp(t, name, m) == 0;
}

static enum slot slot_of(const char *t, size_t n)
{
    if (token_is(t, n, "identity"))
        return SLOT_IDENTITY;
    if (token_is(t, n, "gzip") || token_is(t, n, "x-gzip"))
        return SLOT_GZIP;
    if (token_is(t, n, "br"))
        return SLOT_BR;
    if (token_is(t, n, "zstd"))
        return SLOT_ZSTD;
    if (token_is(t, n, "*"))
        return SLOT_STAR;
    return SLOT_OTHER;
}

/* RFC 9110 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
 * Returns thousandths, or -1 when [p, end) is not exactly a qvalue. */
static int parse_qvalue(const char *p, const char *end)
{
    if (p == end || (*p != '0' && *p != '1'))
        return -1;
    int q = (*p == '1') ? Q_ONE : 0;
    p++;
    if (p == end)
        return q;
    if (*p != '.')
        return -1;
    p++;
    int scale = 100;
    for (int i = 0; p < end && i < 3; i++, p++, scale /= 10) {
        if (!is_digit(*p))
            return -1;
        q += (*p - '0') * scale;
    }
    if (p != end || q > Q_ONE)
        return -1;
    return q;
}

/* One list element [p, end), already trimmed of OWS.  Sets *slot and *q and
 * returns true when it is well formed; an empty element is not (it is
 * allowed by the list syntax and simply means nothing). */
static bool parse_element(const char *p, const char *end, enum slot *slot, int *q)
{
    const char *t = p;
    while (p < end && is_tchar(*p))
        p++;
    if (p == t)
        return false;
    *slot = slot_of(t, (size_t)(p - t));
    *q = Q_ONE;
    while (p < end && is_ows(*p))
        p++;
    if (p == end)
        return true;
    if (*p != ';')
        return false;
    /* weight = OWS ";" OWS "q=" qvalue; tolerate OWS around "=" too. */
    p++;
    while (p < end && is_ows(*p))
        p++;
    if (p == end || (*p != 'q' && *p != 'Q'))
        return false;
    p++;
    while (p < end && is_ows(*p))
        p++;
    if (p == end || *p != '=')
        return false;
    p++;
    while (p < end && is_ows(*p))
        p++;
    *q = parse_qvalue(p, end);
    return *q >= 0;
}

static void parse_accept_encoding(const char *s, size_t len, int q[SLOT_N])
{
    for (int i = 0; i < SLOT_N; i++)
        q[i] = Q_UNSET;
    const char *p = s, *end = s + len;
    while (p < end) {
        const char *comma = p;
        while (comma < end && *comma != ',')
            comma++;
        const char *a = p, *b = comma;
        while (a < b && is_ows(*a))
            a++;
        while (b > a && is_ows(b[-1]))
            b--;
        enum slot slot;
        int v;
        if (parse_element(a, b, &slot, &v) && q[slot] == Q_UNSET)
            q[slot] = v; /* first well-formed occurrence wins */
        p = comma < end ? comma + 1 : end;
    }
}

/* Effective q of a listed-or-starred coding; Q_UNSET when neither. */
static int effective_q(const int q[SLOT_N], enum slot s)
{
    return q[s] != Q_UNSET ? q[s] : q[SLOT_STAR];
}

enum coding negotiate_coding(const char *accept_encoding, size_t len, unsigned offered,
                             bool *identity_ok)
{
    bool dummy;
    if (identity_ok == NULL)
        identity_ok = &dummy;
    *identity_ok = true;
    if (accept_encoding == NULL)
        return CODING_IDENTITY;

    int q[SLOT_N];
    parse_accept_encoding(accept_encoding, len, q);

    /* Server preference order: earlier wins on equal q. */
    static const struct {
        enum coding coding;
        enum slot slot;
    } pref[] = {{CODING_BR, SLOT_BR}, {CODING_ZSTD, SLOT_ZSTD}, {CODING_GZIP, SLOT_GZIP}};
    enum coding best = CODING_IDENTITY;
    int best_q = 0;
    for (size_t i = 0; i < sizeof pref / sizeof pref[0]; i++) {
        if (!(offered & CODING_BIT(pref[i].coding)))
            continue;
        int v = effective_q(q, pref[i].slot);
        if (v > best_q) {
            best = pref[i].coding;
            best_q = v;
        }
    }

    /* RFC 9110 12.5.3: identity is acceptable unless excluded by
     * "identity;q=0" or by "*;q=0" without an identity entry. */
    int id_q = effective_q(q, SLOT_IDENTITY);
    if (best != CODING_IDENTITY && id_q > best_q)
        best = CODING_IDENTITY; /* client ranks identity strictly higher */
    if (best == CODING_IDENTITY)
        *identity_ok = id_q != 0;
    return best;
}

const char *coding_name(enum coding c)
{
    switch (c) {
    case CODING_BR:
        return "br";
    case CODING_ZSTD:
        return "zstd";
    case CODING_GZIP:
        return "gzip";
    case CODING_IDENTITY:
    case CODING_COUNT:
    default:
        return "identity";
    }
}
