/*
 * proxy/json.c: strict JSON reading and writing for the admin API (see
 * json.h).
 *
 * The parser is recursive descent; recursion is bounded by JSON_MAX_DEPTH.
 * A tree lives in an arena of chunks owned by its root (struct doc), so
 * json_free() is one walk over the chunks and a failed parse needs no
 * partial cleanup.  While a container is open its children sit on a
 * scratch stack (one for elements, one for members) and are copied into
 * the arena, contiguous, when it closes; the members on the stack above an
 * object's base are exactly its own so far, which is what the duplicate
 * check scans (through a hash set once an object is large).  Strings are
 * decoded into a scratch buf, then copied.
 *
 * Positions in messages are computed only when a fault is reported, by
 * counting lines and characters up to its byte offset.
 *
 * No locking: a tree or a writer belongs to one thread.
 */
#include "proxy/json.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest key quoted in a message, in bytes, so that one stays one line. */
#define QUOTE_MAX 40

/* ---- UTF-8 ---- */

/*
 * utf8_seq: the length (1..4) of the well-formed UTF-8 sequence at p[0 .. n),
 * n > 0, per Unicode Table 3-7 (no overlongs, no surrogates, nothing past
 * U+10FFFF).  When ill-formed, returns 0 and sets *bad to the length of its
 * maximal subpart (Unicode 3.9, "U+FFFD substitution"): the bytes one
 * U+FFFD replaces.
 */
static size_t utf8_seq(const unsigned char *p, size_t n, size_t *bad)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xbf;
    size_t need;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        need = 2;
    else if (c >= 0xe0 && c <= 0xef)
        need = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        need = 4;
    else
        goto fail_at_1;
    if (c == 0xe0)
        lo = 0xa0; /* overlong */
    else if (c == 0xed)
        hi = 0x9f; /* U+D800..U+DFFF */
    else if (c == 0xf0)
        lo = 0x90; /* overlong */
    else if (c == 0xf4)
        hi = 0x8f; /* past U+10FFFF */
    for (size_t i = 1; i < need; i++) {
        if (i >= n || p[i] < lo || p[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xbf;
    }
    return need;
fail_at_1:
    *bad = 1;
    return 0;
}

/* utf8_put: encode code point cp (not a surrogate, <= U+10FFFF) into out;
 * returns the length. */
static size_t utf8_put(unsigned long cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---- the arena a tree lives in ---- */

struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
};

#define CHUNK_MIN 4096

/* The root is the first member: json_free() gets from it to the doc. */
struct doc {
    struct json_value root;
    struct chunk *chunks;
};

/* arena_alloc: n bytes (n > 0), aligned for any type, or NULL. */
static void *arena_alloc(struct doc *d, size_t n)
{
    const size_t align = _Alignof(max_align_t);
    struct chunk *c = d->chunks;

    n = (n + align - 1) / align * align;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > CHUNK_MIN ? n : CHUNK_MIN;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = d->chunks;
        d->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static void doc_free(struct doc *d)
{
    struct chunk *c = d->chunks;
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(d);
}

/* ---- messages ---- */

/* quote: s as a JSON string for a message, cut after QUOTE_MAX bytes (at a
 * character boundary, "..." added); into out, NUL-terminated. */
static void quote(const char *s, size_t len, char *out, size_t outlen)
{
    struct buf b = {0};
    bool cut = len > QUOTE_MAX;

    if (cut) {
        len = QUOTE_MAX;
        while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
            len--;
    }
    json_write_string(&b, s, len);
    if (cut)
        buf_append_str(&b, "...");
    if (b.oom)
        snprintf(out, outlen, "(name)");
    else
        snprintf(out, outlen, "%.*s", (int)b.len, b.data);
    buf_release(&b);
}

/* ---- the parser ---- */

struct parser {
    const unsigned char *text;
    size_t len;
    size_t pos;
    size_t values; /* values begun so far */
    int depth;     /* containers open */
    struct doc *doc;
    struct json_value *elems; /* scratch: elements of the open arrays */
    size_t nelems, capelems;
    struct json_member *members; /* scratch: members of the open objects */
    size_t nmembers, capmembers;
    struct buf scratch; /* a string being decoded, a number's text */
    char *err;
    size_t errlen;
};

static bool parse_value(struct parser *ps, struct json_value *out);

/* fail: report a fault at byte offset `at`; always false. */
static bool fail(struct parser *ps, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(struct parser *ps, size_t at, const char *fmt, ...)
{
    unsigned long line = 1, column = 1;

    if (!ps->err || ps->errlen == 0)
        return false;
    for (size_t i = 0; i < at && i < ps->len; i++) {
        if (ps->text[i] == '\n') {
            line++;
            column = 1;
        } else if ((ps->text[i] & 0xc0) != 0x80) {
            column++;
        }
    }
    int n = snprintf(ps->err, ps->errlen, "line %lu, column %lu: ", line, column);
    if (n >= 0 && (size_t)n < ps->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return false;
}

static bool oom(struct parser *ps)
{
    return fail(ps, ps->pos, "out of memory");
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* peek: the byte at pos, or -1 at the end. */
static int peek(const struct parser *ps)
{
    return ps->pos < ps->len ? ps->text[ps->pos] : -1;
}

/* RFC 8259 2: ws = *( %x20 / %x09 / %x0A / %x0D ) */
static void skip_ws(struct parser *ps)
{
    while (ps->pos < ps->len) {
        unsigned char c = ps->text[ps->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        ps->pos++;
    }
}

static bool push_elem(struct parser *ps, const struct json_value *v)
{
    if (ps->nelems == ps->capelems) {
        size_t cap = ps->capelems ? ps->capelems * 2 : 16;
        struct json_value *p = realloc(ps->elems, cap * sizeof *p);
        if (!p)
            return oom(ps);
        ps->elems = p;
        ps->capelems = cap;
    }
    ps->elems[ps->nelems++] = *v;
    return true;
}

static bool push_member(struct parser *ps, const struct json_member *m)
{
    if (ps->nmembers == ps->capmembers) {
        size_t cap = ps->capmembers ? ps->capmembers * 2 : 16;
        struct json_member *p = realloc(ps->members, cap * sizeof *p);
        if (!p)
            return oom(ps);
        ps->members = p;
        ps->capmembers = cap;
    }
    ps->members[ps->nmembers++] = *m;
    return true;
}

/* hex4: the value of 4 hex digits at p[0 .. n), or -1. */
static long hex4(const unsigned char *p, size_t n)
{
    long v = 0;

    if (n < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* parse_escape: the escape at pos (a backslash) into scratch; pos moves past
 * it.  RFC 8259 7; a surrogate must be half of a pair. */
static bool parse_escape(struct parser *ps, size_t start)
{
    const unsigned char *p = ps->text + ps->pos;
    size_t left = ps->len - ps->pos;
    char out[4];

    if (left < 2)
        return fail(ps, start, "unterminated string");
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
        out[0] = (char)p[1];
        break;
    case 'b':
        out[0] = '\b';
        break;
    case 'f':
        out[0] = '\f';
        break;
    case 'n':
        out[0] = '\n';
        break;
    case 'r':
        out[0] = '\r';
        break;
    case 't':
        out[0] = '\t';
        break;
    case 'u': {
        long cp = hex4(p + 2, left - 2);
        if (cp < 0)
            return fail(ps, ps->pos, "invalid \\u escape");
        size_t used = 6;
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return fail(ps, ps->pos, "unpaired surrogate \\u%04lX", cp);
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (left < 8 || p[6] != '\\' || p[7] != 'u')
                return fail(ps, ps->pos, "unpaired surrogate \\u%04lX", cp);
            long lo = hex4(p + 8, left - 8);
            if (lo < 0)
                return fail(ps, ps->pos + 6, "invalid \\u escape");
            if (lo < 0xdc00 || lo > 0xdfff)
                return fail(ps, ps->pos, "unpaired surrogate \\u%04lX", cp);
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            used = 12;
        }
        buf_append(&ps->scratch, out, utf8_put((unsigned long)cp, out));
        ps->pos += used;
        return true;
    }
    default:
        if (p[1] > 0x20 && p[1] < 0x7f)
            return fail(ps, ps->pos, "invalid escape '\\%c'", p[1]);
        return fail(ps, ps->pos, "invalid escape");
    }
    buf_append(&ps->scratch, out, 1);
    ps->pos += 2;
    return true;
}

/* parse_string: the string at pos (a '"'), decoded into the arena. */
static bool parse_string(struct parser *ps, const char **ptr, size_t *len)
{
    size_t start = ps->pos++;

    buf_reset(&ps->scratch);
    for (;;) {
        if (ps->pos >= ps->len)
            return fail(ps, start, "unterminated string");
        unsigned char c = ps->text[ps->pos];
        if (c == '"') {
            ps->pos++;
            break;
        }
        if (c == '\\') {
            if (!parse_escape(ps, start))
                return false;
            continue;
        }
        if (c < 0x20)
            return fail(ps, ps->pos, "unescaped control character U+%04X in string", c);
        size_t n = 1, bad;
        if (c < 0x80) {
            while (ps->pos + n < ps->len && ps->text[ps->pos + n] >= 0x20 &&
                   ps->text[ps->pos + n] < 0x80 && ps->text[ps->pos + n] != '"' &&
                   ps->text[ps->pos + n] != '\\')
                n++;
        } else if ((n = utf8_seq(ps->text + ps->pos, ps->len - ps->pos, &bad)) == 0) {
            return fail(ps, ps->pos, "invalid UTF-8 in string");
        }
        buf_append(&ps->scratch, ps->text + ps->pos, n);
        ps->pos += n;
    }
    if (ps->scratch.oom)
        return oom(ps);
    size_t n = ps->scratch.len;
    char *s = arena_alloc(ps->doc, n + 1);
    if (!s)
        return oom(ps);
    if (n)
        memcpy(s, ps->scratch.data, n);
    s[n] = '\0';
    *ptr = s;
    *len = n;
    return true;
}

static void skip_digits(struct parser *ps)
{
    while (is_digit(peek(ps)))
        ps->pos++;
}

/* int64_of: the value of the digits [p, end) (a '-' first for negative)
 * when it fits int64_t. */
static bool int64_of(const unsigned char *p, const unsigned char *end, int64_t *out)
{
    bool neg = *p == '-';
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;

    for (p += neg; p < end; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return true;
}

/* parse_number: RFC 8259 6:
 *   number = [ minus ] int [ frac ] [ exp ]
 *   int = zero / ( digit1-9 *DIGIT ) */
static bool parse_number(struct parser *ps, struct json_value *out)
{
    size_t start = ps->pos;
    bool integral = true;

    if (peek(ps) == '-')
        ps->pos++;
    if (!is_digit(peek(ps)))
        return fail(ps, ps->pos, "expected digit after '-'");
    if (peek(ps) == '0') {
        ps->pos++;
        if (is_digit(peek(ps)))
            return fail(ps, ps->pos, "leading zero in number");
    } else {
        skip_digits(ps);
    }
    if (peek(ps) == '.') {
        integral = false;
        ps->pos++;
        if (!is_digit(peek(ps)))
            return fail(ps, ps->pos, "expected digit after '.'");
        skip_digits(ps);
    }
    if (peek(ps) == 'e' || peek(ps) == 'E') {
        integral = false;
        ps->pos++;
        if (peek(ps) == '+' || peek(ps) == '-')
            ps->pos++;
        if (!is_digit(peek(ps)))
            return fail(ps, ps->pos, "expected digit in exponent");
        skip_digits(ps);
    }

    /* strtod wants a NUL-terminated string; the input is a slice. */
    buf_reset(&ps->scratch);
    buf_append(&ps->scratch, ps->text + start, ps->pos - start);
    buf_append(&ps->scratch, "", 1);
    if (ps->scratch.oom)
        return oom(ps);
    double d = strtod(ps->scratch.data, NULL);
    if (isinf(d))
        return fail(ps, start, "number out of range");
    out->type = JSON_NUMBER;
    out->number.value = d;
    out->number.integer = 0;
    out->number.is_int =
        integral && int64_of(ps->text + start, ps->text + ps->pos, &out->number.integer);
    return true;
}

/* parse_literal: true, false or null at pos. */
static bool parse_literal(struct parser *ps, const char *word, struct json_value *out)
{
    size_t n = strlen(word);

    if (ps->len - ps->pos < n || memcmp(ps->text + ps->pos, word, n) != 0)
        return fail(ps, ps->pos, "invalid literal, expected %s", word);
    ps->pos += n;
    if (word[0] == 'n') {
        out->type = JSON_NULL;
    } else {
        out->type = JSON_BOOL;
        out->boolean = word[0] == 't';
    }
    return true;
}

/* open_container: count a level of nesting at pos (a '[' or '{'). */
static bool open_container(struct parser *ps)
{
    if (ps->depth == JSON_MAX_DEPTH)
        return fail(ps, ps->pos, "nesting deeper than %d", JSON_MAX_DEPTH);
    ps->depth++;
    ps->pos++;
    skip_ws(ps);
    return true;
}

static bool parse_array(struct parser *ps, struct json_value *out)
{
    size_t base = ps->nelems;

    if (!open_container(ps))
        return false;
    if (peek(ps) != ']') {
        for (;;) {
            struct json_value v;
            if (!parse_value(ps, &v) || !push_elem(ps, &v))
                return false;
            skip_ws(ps);
            if (peek(ps) == ']')
                break;
            if (peek(ps) != ',')
                return fail(ps, ps->pos, "expected ',' or ']' after array element");
            size_t comma = ps->pos++;
            skip_ws(ps);
            if (peek(ps) == ']')
                return fail(ps, comma, "trailing comma before ']'");
        }
    }
    ps->pos++;
    ps->depth--;

    size_t n = ps->nelems - base;
    out->type = JSON_ARRAY;
    out->array.n = n;
    out->array.items = NULL;
    if (n) {
        out->array.items = arena_alloc(ps->doc, n * sizeof *out->array.items);
        if (!out->array.items)
            return oom(ps);
        memcpy(out->array.items, ps->elems + base, n * sizeof *out->array.items);
    }
    ps->nelems = base;
    return true;
}

/*
 * The keys of one object with many members, so that the duplicate check
 * stays linear in the size of the object: a few thousand short keys fit in
 * a 64 KiB body, and scanning them all for each key would cost a tenth of
 * a second.  Open addressing on FNV-1a; not seeded, which is acceptable
 * only because the admin API authenticates its clients first.
 */
struct keyset {
    struct keyslot {
        const char *key; /* NULL: empty */
        size_t len;
    } * slot;
    size_t cap, n; /* cap is 0 or a power of two */
};

/* Members an object has before it gets a keyset: below, a scan is cheaper. */
#define KEYSET_FROM 16

static uint64_t key_hash(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 0x100000001b3u;
    return h;
}

/* keyset_find: the slot holding key, or the empty slot where it belongs. */
static struct keyslot *keyset_find(const struct keyset *ks, const char *key, size_t len)
{
    size_t i = (size_t)key_hash(key, len) & (ks->cap - 1);
    for (;; i = (i + 1) & (ks->cap - 1)) {
        struct keyslot *s = &ks->slot[i];
        if (!s->key || (s->len == len && memcmp(s->key, key, len) == 0))
            return s;
    }
}

/* keyset_add: 1 when key was added, 0 when it was there already, -1 when
 * memory ran out.  The load stays at most one half. */
static int keyset_add(struct keyset *ks, const char *key, size_t len)
{
    if ((ks->n + 1) * 2 > ks->cap) {
        struct keyset bigger = {.cap = ks->cap ? ks->cap * 2 : 4 * KEYSET_FROM, .n = ks->n};
        bigger.slot = calloc(bigger.cap, sizeof *bigger.slot);
        if (!bigger.slot)
            return -1;
        for (size_t i = 0; i < ks->cap; i++)
            if (ks->slot[i].key)
                *keyset_find(&bigger, ks->slot[i].key, ks->slot[i].len) = ks->slot[i];
        free(ks->slot);
        *ks = bigger;
    }
    struct keyslot *s = keyset_find(ks, key, len);
    if (s->key)
        return 0;
    s->key = key;
    s->len = len;
    ks->n++;
    return 1;
}

/* key_is_new: whether m's key differs from those of the members of the
 * object at members[base ..), keys added to ks once there are many;
 * -1 when memory ran out. */
static int key_is_new(struct parser *ps, size_t base, struct keyset *ks,
                      const struct json_member *m)
{
    size_t n = ps->nmembers - base;

    if (n < KEYSET_FROM) {
        for (size_t i = base; i < ps->nmembers; i++) {
            const struct json_member *o = &ps->members[i];
            if (o->key_len == m->key_len && memcmp(o->key, m->key, m->key_len) == 0)
                return 0;
        }
        return 1;
    }
    if (n == KEYSET_FROM) {
        for (size_t i = base; i < ps->nmembers; i++)
            if (keyset_add(ks, ps->members[i].key, ps->members[i].key_len) < 0)
                return -1;
    }
    return keyset_add(ks, m->key, m->key_len);
}

/* parse_key: a member name at pos, unique in its object (see key_is_new). */
static bool parse_key(struct parser *ps, size_t base, struct keyset *ks, struct json_member *m)
{
    size_t start = ps->pos;

    if (!parse_string(ps, &m->key, &m->key_len))
        return false;
    int r = key_is_new(ps, base, ks, m);
    if (r < 0)
        return oom(ps);
    if (r == 0) {
        char q[QUOTE_MAX * 6 + 8];
        quote(m->key, m->key_len, q, sizeof q);
        return fail(ps, start, "duplicate key %s", q);
    }
    return true;
}

static bool parse_object(struct parser *ps, struct json_value *out)
{
    size_t base = ps->nmembers;
    struct keyset ks = {0};

    if (!open_container(ps))
        return false;
    if (peek(ps) != '}') {
        if (peek(ps) != '"') {
            fail(ps, ps->pos, "expected string key or '}'");
            goto fail;
        }
        for (;;) {
            struct json_member m;
            if (!parse_key(ps, base, &ks, &m))
                goto fail;
            skip_ws(ps);
            if (peek(ps) != ':') {
                fail(ps, ps->pos, "expected ':' after object key");
                goto fail;
            }
            ps->pos++;
            if (!parse_value(ps, &m.value) || !push_member(ps, &m))
                goto fail;
            skip_ws(ps);
            if (peek(ps) == '}')
                break;
            if (peek(ps) != ',') {
                fail(ps, ps->pos, "expected ',' or '}' after object member");
                goto fail;
            }
            size_t comma = ps->pos++;
            skip_ws(ps);
            if (peek(ps) == '}') {
                fail(ps, comma, "trailing comma before '}'");
                goto fail;
            }
            if (peek(ps) != '"') {
                fail(ps, ps->pos, "expected string key");
                goto fail;
            }
        }
    }
    ps->pos++;
    ps->depth--;
    free(ks.slot);

    size_t n = ps->nmembers - base;
    out->type = JSON_OBJECT;
    out->object.n = n;
    out->object.members = NULL;
    if (n) {
        out->object.members = arena_alloc(ps->doc, n * sizeof *out->object.members);
        if (!out->object.members)
            return oom(ps);
        memcpy(out->object.members, ps->members + base, n * sizeof *out->object.members);
    }
    ps->nmembers = base;
    return true;
fail:
    free(ks.slot);
    return false;
}

/* parse_value: the value starting after any whitespace at pos. */
static bool parse_value(struct parser *ps, struct json_value *out)
{
    skip_ws(ps);
    if (ps->values == JSON_MAX_VALUES)
        return fail(ps, ps->pos, "more than %d values", JSON_MAX_VALUES);
    ps->values++;
    switch (peek(ps)) {
    case '{':
        return parse_object(ps, out);
    case '[':
        return parse_array(ps, out);
    case '"':
        out->type = JSON_STRING;
        return parse_string(ps, &out->string.ptr, &out->string.len);
    case 't':
        return parse_literal(ps, "true", out);
    case 'f':
        return parse_literal(ps, "false", out);
    case 'n':
        return parse_literal(ps, "null", out);
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return parse_number(ps, out);
    default:
        return fail(ps, ps->pos, "expected a value");
    }
}

struct json_value *json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct parser ps = {
        .text = (const unsigned char *)text,
        .len = len,
        .err = err,
        .errlen = errlen,
    };

    if (err && errlen)
        err[0] = '\0';
    ps.doc = calloc(1, sizeof *ps.doc);
    if (!ps.doc) {
        oom(&ps);
        goto fail;
    }
    /* RFC 8259 8.1: senders MUST NOT add one; parsers MAY ignore it.  A
     * client that sends one is misconfigured, so say so. */
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
        fail(&ps, 0, "byte order mark not allowed");
        goto fail;
    }
    skip_ws(&ps);
    if (ps.pos == len) {
        fail(&ps, ps.pos, "empty document");
        goto fail;
    }
    if (!parse_value(&ps, &ps.doc->root))
        goto fail;
    skip_ws(&ps);
    if (ps.pos != len) {
        fail(&ps, ps.pos, "trailing characters after the document");
        goto fail;
    }
    free(ps.elems);
    free(ps.members);
    buf_release(&ps.scratch);
    return &ps.doc->root;
fail:
    if (ps.doc)
        doc_free(ps.doc);
    free(ps.elems);
    free(ps.members);
    buf_release(&ps.scratch);
    return NULL;
}

void json_free(struct json_value **v)
{
    if (!v || !*v)
        return;
    doc_free((struct doc *)*v);
    *v = NULL;
}

const struct json_value *json_object_get(const struct json_value *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    size_t len = strlen(key);
    for (size_t i = 0; i < obj->object.n; i++) {
        const struct json_member *m = &obj->object.members[i];
        if (m->key_len == len && memcmp(m->key, key, len) == 0)
            return &m->value;
    }
    return NULL;
}

bool json_object_check_keys(const struct json_value *obj, const char *const *allowed, char *err,
                            size_t errlen)
{
    if (!obj || obj->type != JSON_OBJECT) {
        if (err && errlen)
            snprintf(err, errlen, "expected a JSON object");
        return false;
    }
    for (size_t i = 0; i < obj->object.n; i++) {
        const struct json_member *m = &obj->object.members[i];
        const char *const *a = allowed;
        while (*a && !(strlen(*a) == m->key_len && memcmp(*a, m->key, m->key_len) == 0))
            a++;
        if (!*a) {
            if (err && errlen) {
                char q[QUOTE_MAX * 6 + 8];
                quote(m->key, m->key_len, q, sizeof q);
                snprintf(err, errlen, "unknown field %s", q);
            }
            return false;
        }
    }
    return true;
}

const char *json_type_name(enum json_type type)
{
    switch (type) {
    case JSON_NULL:
        return "null";
    case JSON_BOOL:
        return "boolean";
    case JSON_NUMBER:
        return "number";
    case JSON_STRING:
        return "string";
    case JSON_ARRAY:
        return "array";
    case JSON_OBJECT:
        return "object";
    }
    return "unknown";
}

/* ---- writing ---- */

void json_write_string(struct buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0; /* p[run .. i) is copied as is */

    buf_append(out, "\"", 1);
    while (i < len) {
        unsigned char c = p[i];
        size_t n = 1, bad = 0;
        if (c >= 0x20 && c != '"' && c != '\\' &&
            (c < 0x80 || (n = utf8_seq(p + i, len - i, &bad)))) {
            i += n;
            continue;
        }
        buf_append(out, p + run, i - run);
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_append(out, esc, 2);
            i++;
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(out, esc, 6);
            i++;
        } else {
            buf_append(out, "\xef\xbf\xbd", 3); /* U+FFFD */
            i += bad;
        }
        run = i;
    }
    buf_append(out, p + run, i - run);
    buf_append(out, "\"", 1);
}

void json_writer_init(struct json_writer *w, struct buf *out, bool pretty)
{
    memset(w, 0, sizeof *w);
    w->out = out;
    w->pretty = pretty;
    w->first[0] = true;
}

static void newline_indent(struct json_writer *w, int depth)
{
    buf_append(w->out, "\n", 1);
    for (int i = 0; i < depth; i++)
        buf_append(w->out, "  ", 2);
}

/* separate: what goes before an array element or a member: a comma unless
 * it is the first, and in pretty mode a new indented line. */
static void separate(struct json_writer *w)
{
    if (!w->first[w->depth]) {
        assert(w->depth > 0); /* a second top-level value */
        buf_append(w->out, ",", 1);
    }
    w->first[w->depth] = false;
    if (w->pretty && w->depth > 0)
        newline_indent(w, w->depth);
}

static void before_value(struct json_writer *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    assert(!w->in_object[w->depth]); /* a member needs its key first */
    separate(w);
}

static void begin(struct json_writer *w, bool object)
{
    before_value(w);
    assert(w->depth < JSON_MAX_DEPTH);
    w->depth++;
    w->first[w->depth] = true;
    w->in_object[w->depth] = object;
    buf_append(w->out, object ? "{" : "[", 1);
}

static void end(struct json_writer *w, bool object)
{
    assert(w->depth > 0 && w->in_object[w->depth] == object && !w->after_key);
    bool empty = w->first[w->depth];
    w->depth--;
    if (w->pretty && !empty)
        newline_indent(w, w->depth);
    buf_append(w->out, object ? "}" : "]", 1);
}

void json_writer_begin_object(struct json_writer *w)
{
    begin(w, true);
}

void json_writer_end_object(struct json_writer *w)
{
    end(w, true);
}

void json_writer_begin_array(struct json_writer *w)
{
    begin(w, false);
}

void json_writer_end_array(struct json_writer *w)
{
    end(w, false);
}

void json_writer_key_len(struct json_writer *w, const char *key, size_t len)
{
    assert(w->depth > 0 && w->in_object[w->depth] && !w->after_key);
    separate(w);
    json_write_string(w->out, key, len);
    buf_append_str(w->out, w->pretty ? ": " : ":");
    w->after_key = true;
}

void json_writer_key(struct json_writer *w, const char *key)
{
    json_writer_key_len(w, key, strlen(key));
}

void json_writer_string(struct json_writer *w, const char *s, size_t len)
{
    before_value(w);
    json_write_string(w->out, s, len);
}

void json_writer_str(struct json_writer *w, const char *s)
{
    json_writer_string(w, s, strlen(s));
}

void json_writer_int(struct json_writer *w, int64_t n)
{
    before_value(w);
    buf_appendf(w->out, "%lld", (long long)n);
}

void json_writer_uint(struct json_writer *w, uint64_t n)
{
    before_value(w);
    buf_appendf(w->out, "%llu", (unsigned long long)n);
}

void json_writer_double(struct json_writer *w, double d)
{
    char tmp[40];

    before_value(w);
    if (!isfinite(d)) {
        buf_append_str(w->out, "null");
        return;
    }
    for (int prec = 15;; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (prec == 17 || strtod(tmp, NULL) == d)
            break;
    }
    buf_append_str(w->out, tmp);
}

void json_writer_bool(struct json_writer *w, bool b)
{
    before_value(w);
    buf_append_str(w->out, b ? "true" : "false");
}

void json_writer_null(struct json_writer *w)
{
    before_value(w);
    buf_append_str(w->out, "null");
}

void json_writer_value(struct json_writer *w, const struct json_value *v)
{
    switch (v->type) {
    case JSON_NULL:
        json_writer_null(w);
        break;
    case JSON_BOOL:
        json_writer_bool(w, v->boolean);
        break;
    case JSON_NUMBER:
        if (v->number.is_int)
            json_writer_int(w, v->number.integer);
        else
            json_writer_double(w, v->number.value);
        break;
    case JSON_STRING:
        json_writer_string(w, v->string.ptr, v->string.len);
        break;
    case JSON_ARRAY:
        json_writer_begin_array(w);
        for (size_t i = 0; i < v->array.n; i++)
            json_writer_value(w, &v->array.items[i]);
        json_writer_end_array(w);
        break;
    case JSON_OBJECT:
        json_writer_begin_object(w);
        for (size_t i = 0; i < v->object.n; i++) {
            const struct json_member *m = &v->object.members[i];
            json_writer_key_len(w, m->key, m->key_len);
            json_writer_value(w, &m->value);
        }
        json_writer_end_object(w);
        break;
    }
}

bool json_writer_finish(struct json_writer *w)
{
    assert(w->depth == 0 && !w->after_key && !w->first[0]);
    if (w->pretty)
        buf_append(w->out, "\n", 1);
    return !w->out->oom;
}
