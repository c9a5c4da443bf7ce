/*
 * cache/esi.c: the ESI 1.0 subset parser and the template encoding (the
 * language and the layout are in esi.h).
 *
 * The parser is a byte-at-a-time machine with a bulk path for plain text.
 * Any byte that could start a construct ('<'; '-' inside "<!--esi", for
 * "-->") opens a candidate, whose bytes are held in tag[] until it either
 * completes (the construct is applied) or fails.  A failed candidate emits
 * its first byte as text and its other bytes are scanned again, through
 * redo[], as if they had just arrived: that is what makes a broken tag
 * literal without hiding a good construct that starts inside it, and what
 * makes the result independent of how the body was split.  Rescans stay
 * linear: a candidate fails on any '<' after its first byte (XML forbids
 * '<' in tags and attribute values), except for the one end tag a paired
 * include or comment waits for, so the rescanned bytes hold at most one
 * candidate start besides short "-->" attempts.
 *
 * Segments are built as offsets into one growing arena (literal bytes,
 * decoded src and alt), and turned into pointers once, at finish.  An
 * <esi:remove> or "<!--esi" that is still open at the end must turn back
 * into literal text: when one opens, the parser notes the template's size
 * (struct mark) and starts keeping the raw bytes from the opening "<" on;
 * at the close it drops them, at the end of an unclosed one it truncates
 * the template to the mark and appends them.
 *
 * The decoder reads hostile input: every length is checked against what
 * remains before use, and the whole encoding is validated before the
 * segment array is allocated.
 *
 * No global state, no locks.
 */
#include "cache/esi.h"
#include "cache/wire.h"

#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the parser's state ---- */

/* What the pending candidate has matched so far. */
enum cand {
    C_NONE,      /* no candidate: plain text */
    C_LT,        /* "<" */
    C_MATCH,     /* a prefix of target (tpos bytes of it) */
    C_NAME,      /* "<esi:" and part of an element name */
    C_ATTRS,     /* in a start tag, outside quotes */
    C_QUOTE,     /* in a quoted attribute value */
    C_PAIR_WS,   /* after <esi:include ...> or <esi:comment ...>: whitespace */
    C_END_WS,    /* after the name of the awaited end tag: whitespace, ">" */
    C_WRAP_NEXT, /* "<!--esi": the next byte decides */
    C_DASH1,     /* inside "<!--esi": "-" */
    C_DASH2,     /* inside "<!--esi": "--" */
};

enum elem {
    E_UNKNOWN,
    E_INCLUDE,
    E_REMOVE,
    E_COMMENT,
};

/* A segment while parsing: offsets into the arena, which may move. */
struct seg {
    bool include;
    bool onerror_continue;
    size_t off, len; /* the literal bytes, or src */
    size_t alt_off, alt_len;
};

/* A growable byte buffer. */
struct bytes {
    char *p;
    size_t len, cap;
};

/* The template's size when an <esi:remove> or "<!--esi" opened. */
struct mark {
    size_t nsegs;
    size_t last_len; /* len of segs[nsegs - 1] */
    size_t arena_len;
    size_t nincludes;
    size_t literal_bytes;
    unsigned dropped;
    bool has_esi;
};

struct esi_parser {
    /* the template being built */
    struct bytes arena;
    struct seg *segs;
    size_t nsegs, segs_cap;
    size_t nincludes, literal_bytes;
    unsigned dropped;
    bool has_esi;

    bool oom;      /* sticky: every call fails from then on */
    bool finished; /* esi_parser_finish() succeeded; tmpl is valid */

    /* where we are */
    bool in_wrapper; /* inside "<!--esi" */
    bool in_remove;  /* inside <esi:remove> */
    bool recording;  /* raw gets every new input byte */
    struct mark mark;
    struct bytes raw; /* input bytes from the opening "<" of the outermost
                       * open remove or wrapper */

    /* the candidate */
    enum cand state;
    const char *target; /* C_MATCH: the text to match */
    size_t tpos;
    enum cand after;  /* C_MATCH: the state once target is matched */
    char quote;       /* C_QUOTE: the closing quote */
    enum elem pair;   /* C_PAIR_WS, C_END_WS: whose end tag is awaited */
    size_t start_len; /* C_PAIR_WS, C_END_WS for a pair: its start tag's bytes */
    size_t taglen;
    char tag[ESI_TAG_MAX + 1]; /* + 1: the byte that overflows it */

    /* bytes to scan again after a failed candidate, before new input */
    size_t redo_len, redo_pos;
    char redo[ESI_TAG_MAX];

    struct esi_template tmpl;
};

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* XML NameStartChar, restricted to what matters here: non-ASCII bytes are
 * taken as name characters without checking which code point they encode. */
static bool is_name_start(char c)
{
    unsigned char u = (unsigned char)c;

    return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u == '_' || u == ':' || u >= 0x80;
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* ---- building the template ---- */

static bool bytes_reserve(struct bytes *b, size_t more)
{
    if (b->cap - b->len >= more)
        return true;
    if (more > SIZE_MAX / 2 - b->len)
        return false;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < more)
        cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np)
        return false;
    b->p = np;
    b->cap = cap;
    return true;
}

static void raw_append(struct esi_parser *p, const char *s, size_t n)
{
    if (n == 0 || p->oom)
        return;
    if (!bytes_reserve(&p->raw, n)) {
        p->oom = true;
        return;
    }
    memcpy(p->raw.p + p->raw.len, s, n);
    p->raw.len += n;
}

static struct seg *seg_add(struct esi_parser *p)
{
    if (p->nsegs == p->segs_cap) {
        size_t cap = p->segs_cap ? 2 * p->segs_cap : 16;
        struct seg *ns = realloc(p->segs, cap * sizeof *ns);
        if (!ns) {
            p->oom = true;
            return NULL;
        }
        p->segs = ns;
        p->segs_cap = cap;
    }
    struct seg *s = &p->segs[p->nsegs++];
    memset(s, 0, sizeof *s);
    return s;
}

/* Append literal bytes, merging them into a literal just before.  A literal
 * that is the last segment always ends the arena (includes append their
 * strings before their segment), so merging is extending it. */
static void emit_literal(struct esi_parser *p, const char *s, size_t n)
{
    if (n == 0 || p->oom)
        return;
    if (!bytes_reserve(&p->arena, n)) {
        p->oom = true;
        return;
    }
    struct seg *last = p->nsegs ? &p->segs[p->nsegs - 1] : NULL;
    if (!last || last->include) {
        last = seg_add(p);
        if (!last)
            return;
        last->off = p->arena.len;
    }
    assert(last->off + last->len == p->arena.len);
    memcpy(p->arena.p + p->arena.len, s, n);
    p->arena.len += n;
    last->len += n;
    p->literal_bytes += n;
}

static struct mark mark_take(const struct esi_parser *p)
{
    struct mark m = {
        .nsegs = p->nsegs,
        .last_len = p->nsegs ? p->segs[p->nsegs - 1].len : 0,
        .arena_len = p->arena.len,
        .nincludes = p->nincludes,
        .literal_bytes = p->literal_bytes,
        .dropped = p->dropped,
        .has_esi = p->has_esi,
    };
    return m;
}

/* Segments are only ever appended, or the last literal extended, so the
 * template at the mark is a prefix of the current one with its last
 * segment possibly shorter. */
static void mark_restore(struct esi_parser *p, const struct mark *m)
{
    p->nsegs = m->nsegs;
    if (p->nsegs)
        p->segs[p->nsegs - 1].len = m->last_len;
    p->arena.len = m->arena_len;
    p->nincludes = m->nincludes;
    p->literal_bytes = m->literal_bytes;
    p->dropped = m->dropped;
    p->has_esi = m->has_esi;
}

/* ---- attribute values ---- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* XML 1.0 2.2 Char. */
static bool is_xml_char(uint32_t cp)
{
    return cp == 0x9 || cp == 0xa || cp == 0xd || (cp >= 0x20 && cp <= 0xd7ff) ||
           (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/* A character reference "&#N;" or "&#xH;" at s (s[0] == '&', s[1] == '#'):
 * its length, with the code point in *cp; 0 when it is not one. */
static size_t char_ref(const char *s, size_t len, uint32_t *cp)
{
    size_t i = 2;
    bool hex = i < len && s[i] == 'x';
    uint32_t v = 0;

    if (hex)
        i++;
    size_t digits = i;
    for (; i < len && s[i] != ';'; i++) {
        int d = hex ? hex_value(s[i]) : (s[i] >= '0' && s[i] <= '9' ? s[i] - '0' : -1);
        if (d < 0)
            return 0;
        v = v * (hex ? 16 : 10) + (uint32_t)d;
        if (v > 0x10ffff) /* checked every digit, so v never wraps */
            return 0;
    }
    if (i == len || i == digits || !is_xml_char(v))
        return 0;
    *cp = v;
    return i + 1;
}

static size_t put_utf8(uint32_t cp, char *out)
{
    unsigned char b[4];
    size_t n;

    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | cp >> 6);
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xf0 | cp >> 18);
        b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        b[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    if (out)
        memcpy(out, b, n);
    return n;
}

static const struct {
    const char *name; /* with its ';' */
    size_t len;
    char c;
} ENTITIES[] = {
    {"&amp;", 5, '&'}, {"&lt;", 4, '<'}, {"&gt;", 4, '>'}, {"&quot;", 6, '"'}, {"&apos;", 6, '\''},
};

/* Decode the attribute value v/len into out (NULL: only measure); return
 * the decoded length, never more than len: every reference is at least as
 * long as its UTF-8 (the shortest giving 2, 3, 4 bytes are &#128;, &#2048;,
 * &#65536;). */
static size_t decode_value(const char *v, size_t len, char *out)
{
    size_t n = 0;

    for (size_t i = 0; i < len;) {
        size_t used = 0;
        if (v[i] == '&') {
            uint32_t cp;
            if (i + 1 < len && v[i + 1] == '#' && (used = char_ref(v + i, len - i, &cp)) > 0) {
                n += put_utf8(cp, out ? out + n : NULL);
            } else {
                for (size_t e = 0; e < sizeof ENTITIES / sizeof ENTITIES[0]; e++) {
                    if (len - i >= ENTITIES[e].len &&
                        memcmp(v + i, ENTITIES[e].name, ENTITIES[e].len) == 0) {
                        used = ENTITIES[e].len;
                        if (out)
                            out[n] = ENTITIES[e].c;
                        n++;
                        break;
                    }
                }
            }
        }
        if (used == 0) {
            if (out)
                out[n] = v[i];
            n++;
            used = 1;
        }
        i += used;
    }
    return n;
}

/* ---- start tags ---- */

static const struct {
    const char *name;
    size_t len;
    enum elem elem;
} ELEMENTS[] = {
    {"include", 7, E_INCLUDE},
    {"remove", 6, E_REMOVE},
    {"comment", 7, E_COMMENT},
};

/* The element named name/len; E_UNKNOWN for anything else.  With prefix,
 * whether name/len could still grow into one (E_INCLUDE stands for yes). */
static enum elem element(const char *name, size_t len, bool prefix)
{
    for (size_t i = 0; i < sizeof ELEMENTS / sizeof ELEMENTS[0]; i++) {
        if (prefix ? len <= ELEMENTS[i].len : len == ELEMENTS[i].len) {
            if (memcmp(name, ELEMENTS[i].name, len) == 0)
                return prefix ? E_INCLUDE : ELEMENTS[i].elem;
        }
    }
    return E_UNKNOWN;
}

/* An attribute value: raw bytes inside the quotes. */
struct value {
    const char *p;
    size_t len;
    bool present;
};

/* A parsed start tag. */
struct start_tag {
    enum elem elem;
    bool self_closing;
    struct value src, alt, onerror;
};

/* Record attribute name/nlen of t's element; false for a duplicate of one
 * the element knows.  Others are ignored. */
static bool attribute(struct start_tag *t, const char *name, size_t nlen, const char *v,
                      size_t vlen)
{
    struct value *slot = NULL;

    if (t->elem == E_INCLUDE) {
        if (nlen == 3 && memcmp(name, "src", 3) == 0)
            slot = &t->src;
        else if (nlen == 3 && memcmp(name, "alt", 3) == 0)
            slot = &t->alt;
        else if (nlen == 7 && memcmp(name, "onerror", 7) == 0)
            slot = &t->onerror;
    }
    if (!slot)
        return true;
    if (slot->present)
        return false;
    slot->p = v;
    slot->len = vlen;
    slot->present = true;
    return true;
}

/*
 * Parse a whole start tag s/len, "<esi:" to its final ">" (the candidate
 * machine found that ">" outside quotes and saw no '<' after the first
 * byte).  XML 1.0 3.1:
 *     "<esi:" Name (S Attribute)* S? ("/>" | ">")
 *     Attribute = Name S? "=" S? ('"' [^"]* '"' | "'" [^']* "'")
 */
static bool parse_start_tag(const char *s, size_t len, struct start_tag *t)
{
    size_t i = 5, name;

    memset(t, 0, sizeof *t);
    for (name = i; i < len && is_name_char(s[i]); i++)
        ;
    t->elem = element(s + name, i - name, false);
    if (t->elem == E_UNKNOWN)
        return false;
    for (;;) {
        size_t ws = i;
        while (i < len && is_ws(s[i]))
            i++;
        if (i < len && s[i] == '>')
            return i + 1 == len;
        if (len - i >= 2 && s[i] == '/' && s[i + 1] == '>') {
            t->self_closing = true;
            return i + 2 == len;
        }
        if (i == ws || i == len || !is_name_start(s[i]))
            return false;
        for (name = i; i < len && is_name_char(s[i]); i++)
            ;
        size_t nlen = i - name;
        while (i < len && is_ws(s[i]))
            i++;
        if (i == len || s[i] != '=')
            return false;
        i++;
        while (i < len && is_ws(s[i]))
            i++;
        if (i == len || (s[i] != '"' && s[i] != '\''))
            return false;
        char q = s[i++];
        size_t v = i;
        while (i < len && s[i] != q)
            i++;
        if (i == len)
            return false;
        if (!attribute(t, s + name, nlen, s + v, i - v))
            return false;
        i++;
    }
}

/* The include rules of esi.h on top of the syntax. */
static bool include_valid(const struct start_tag *t)
{
    if (!t->src.present)
        return false;
    size_t n = decode_value(t->src.p, t->src.len, NULL);
    if (n == 0 || n > ESI_ATTR_MAX)
        return false;
    return !t->alt.present || decode_value(t->alt.p, t->alt.len, NULL) <= ESI_ATTR_MAX;
}

static bool onerror_continue(const struct value *v)
{
    char buf[16];

    /* the decoded value is never longer than the raw one */
    return v->present && v->len < sizeof buf && decode_value(v->p, v->len, buf) == 8 &&
           memcmp(buf, "continue", 8) == 0;
}

/* ---- the candidate machine ---- */

static void step(struct esi_parser *p, char c);

static void cand_clear(struct esi_parser *p)
{
    p->state = C_NONE;
    p->taglen = 0;
}

/* The candidate in tag[] is not a construct: its first byte is text (or,
 * inside <esi:remove>, nothing) and the rest is scanned again, ahead of any
 * bytes still waiting in redo[].  Those bytes and tag[1..] are together a
 * suffix of what redo[] held when the candidate started in it, or tag[1..]
 * alone when it started in new input, so they fit. */
static void cand_fail(struct esi_parser *p)
{
    size_t n = p->taglen - 1, rest = p->redo_len - p->redo_pos;

    assert(p->taglen >= 1 && n + rest <= sizeof p->redo);
    memmove(p->redo + n, p->redo + p->redo_pos, rest);
    memcpy(p->redo, p->tag + 1, n);
    p->redo_pos = 0;
    p->redo_len = n + rest;
    if (!p->in_remove)
        emit_literal(p, p->tag, 1);
    cand_clear(p);
}

/* Start keeping raw input for an <esi:remove> or "<!--esi" whose opening
 * bytes are tag[0..taglen): those, then whatever is still to be rescanned,
 * then (esi_parser_feed) every new byte. */
static void record_start(struct esi_parser *p)
{
    p->mark = mark_take(p);
    p->raw.len = 0;
    raw_append(p, p->tag, p->taglen);
    raw_append(p, p->redo + p->redo_pos, p->redo_len - p->redo_pos);
    p->recording = true;
}

static void record_stop(struct esi_parser *p)
{
    p->recording = false;
    p->raw.len = 0;
}

static void emit_include(struct esi_parser *p, const struct start_tag *t)
{
    size_t src_n = decode_value(t->src.p, t->src.len, NULL);
    size_t alt_n = t->alt.present ? decode_value(t->alt.p, t->alt.len, NULL) : 0;

    if (!bytes_reserve(&p->arena, src_n + alt_n)) {
        p->oom = true;
        return;
    }
    struct seg *s = seg_add(p);
    if (!s)
        return;
    s->include = true;
    s->onerror_continue = onerror_continue(&t->onerror);
    s->off = p->arena.len;
    s->len = decode_value(t->src.p, t->src.len, p->arena.p + p->arena.len);
    p->arena.len += s->len;
    s->alt_off = p->arena.len;
    if (t->alt.present)
        s->alt_len = decode_value(t->alt.p, t->alt.len, p->arena.p + p->arena.len);
    p->arena.len += s->alt_len;
    p->nincludes++;
    p->has_esi = true;
}

/* A whole include (tag[0..start_len) is its start tag) has been read. */
static void include_done(struct esi_parser *p, size_t start_len)
{
    struct start_tag t;

    if (p->nincludes == ESI_MAX_INCLUDES) {
        p->dropped++;
        cand_fail(p);
        return;
    }
    bool ok = parse_start_tag(p->tag, start_len, &t);
    assert(ok); /* it was checked when its ">" arrived */
    (void)ok;
    emit_include(p, &t);
    cand_clear(p);
}

/* The ">" of a start tag arrived: tag[0..taglen) is "<esi:" NAME ... ">". */
static void start_tag_done(struct esi_parser *p)
{
    struct start_tag t;

    if (!parse_start_tag(p->tag, p->taglen, &t) || (t.elem == E_INCLUDE && !include_valid(&t))) {
        cand_fail(p);
        return;
    }
    if (t.self_closing && t.elem == E_INCLUDE) {
        include_done(p, p->taglen);
    } else if (t.self_closing) {
        p->has_esi = true; /* <esi:comment/>, <esi:remove/>: nothing */
        cand_clear(p);
    } else if (t.elem == E_REMOVE) {
        if (!p->in_wrapper) /* else the wrapper's recording covers it */
            record_start(p);
        p->in_remove = true;
        p->has_esi = true; /* undone by the mark if it never closes */
        cand_clear(p);
    } else { /* include or comment: wait for the end tag */
        p->pair = t.elem;
        p->start_len = p->taglen;
        p->state = C_PAIR_WS;
    }
}

/* The ">" of the awaited end tag arrived. */
static void end_tag_done(struct esi_parser *p)
{
    if (p->pair == E_INCLUDE) {
        include_done(p, p->start_len);
        return;
    }
    if (p->pair == E_REMOVE) {
        p->in_remove = false;
        if (!p->in_wrapper)
            record_stop(p);
    }
    p->has_esi = true;
    cand_clear(p);
}

/* "<!--esi" and a byte c that cannot continue a name: the wrapper opens,
 * and c is its first byte of content. */
static void wrapper_open(struct esi_parser *p, char c)
{
    record_start(p); /* tag[] ends with c, which is raw input too */
    p->in_wrapper = true;
    p->has_esi = true;
    cand_clear(p);
    step(p, c);
}

static void wrapper_close(struct esi_parser *p)
{
    p->in_wrapper = false;
    record_stop(p);
    cand_clear(p);
}

/* A byte with no candidate pending. */
static void text_byte(struct esi_parser *p, char c)
{
    if (c == '<' || (c == '-' && p->in_wrapper && !p->in_remove)) {
        p->tag[0] = c;
        p->taglen = 1;
        p->state = c == '<' ? C_LT : C_DASH1;
    } else if (!p->in_remove) {
        emit_literal(p, &c, 1);
    }
}

static void match(struct esi_parser *p, const char *target, size_t tpos, enum cand after)
{
    p->target = target;
    p->tpos = tpos;
    p->after = after;
    p->state = C_MATCH;
}

/* A byte of a start tag after its name, outside quotes. */
static void attrs_byte(struct esi_parser *p, char c)
{
    if (c == '<') {
        cand_fail(p);
    } else if (c == '"' || c == '\'') {
        p->quote = c;
        p->state = C_QUOTE;
    } else if (c == '>') {
        start_tag_done(p);
    }
}

/* The next byte c of the candidate, already appended to tag[]. */
static void cand_byte(struct esi_parser *p, char c)
{
    switch (p->state) {
    case C_NONE:
        assert(0);
        break;
    case C_LT:
        if (p->in_remove && c == '/') {
            p->pair = E_REMOVE;
            match(p, "</esi:remove", 2, C_END_WS);
        } else if (!p->in_remove && c == 'e') {
            match(p, "<esi:", 2, C_NAME);
        } else if (!p->in_remove && !p->in_wrapper && c == '!') {
            match(p, "<!--esi", 2, C_WRAP_NEXT);
        } else {
            cand_fail(p);
        }
        break;
    case C_MATCH:
        if (c != p->target[p->tpos]) {
            cand_fail(p);
        } else if (p->target[++p->tpos] == '\0') {
            p->state = p->after;
        }
        break;
    case C_NAME:
        if (is_name_char(c)) {
            if (element(p->tag + 5, p->taglen - 5, true) == E_UNKNOWN)
                cand_fail(p);
            break;
        }
        /* the name ends before c */
        if (element(p->tag + 5, p->taglen - 6, false) == E_UNKNOWN) {
            cand_fail(p);
            break;
        }
        p->state = C_ATTRS;
        attrs_byte(p, c); /* c belongs to the attributes */
        break;
    case C_ATTRS:
        attrs_byte(p, c);
        break;
    case C_QUOTE:
        if (c == '<')
            cand_fail(p);
        else if (c == p->quote)
            p->state = C_ATTRS;
        break;
    case C_PAIR_WS:
        if (c == '<')
            match(p, p->pair == E_INCLUDE ? "</esi:include" : "</esi:comment", 1, C_END_WS);
        else if (!is_ws(c))
            cand_fail(p);
        break;
    case C_END_WS:
        if (c == '>')
            end_tag_done(p);
        else if (!is_ws(c))
            cand_fail(p);
        break;
    case C_WRAP_NEXT:
        if (is_name_char(c))
            cand_fail(p);
        else
            wrapper_open(p, c);
        break;
    case C_DASH1:
        if (c == '-')
            p->state = C_DASH2;
        else
            cand_fail(p);
        break;
    case C_DASH2:
        if (c == '>')
            wrapper_close(p);
        else
            cand_fail(p);
        break;
    }
}

static void step(struct esi_parser *p, char c)
{
    if (p->state == C_NONE) {
        text_byte(p, c);
        return;
    }
    p->tag[p->taglen++] = c;
    if (p->taglen > ESI_TAG_MAX) {
        cand_fail(p);
        return;
    }
    cand_byte(p, c);
}

/* How many bytes at s can go straight to the template (or, inside
 * <esi:remove>, be skipped): none of them could start a candidate. */
static size_t text_run(const struct esi_parser *p, const char *s, size_t n)
{
    bool dash = p->in_wrapper && !p->in_remove;
    size_t i = 0;

    while (i < n && s[i] != '<' && !(dash && s[i] == '-'))
        i++;
    return i;
}

/* ---- the parser's API ---- */

struct esi_parser *esi_parser_new(void)
{
    return calloc(1, sizeof(struct esi_parser));
}

bool esi_parser_feed(struct esi_parser *p, const char *data, size_t len)
{
    size_t i = 0;

    assert(!p->finished);
    while (!p->oom) {
        if (p->redo_pos < p->redo_len) {
            step(p, p->redo[p->redo_pos++]);
            continue;
        }
        if (i == len)
            break;
        size_t n = p->state == C_NONE ? text_run(p, data + i, len - i) : 0;
        if (n == 0)
            n = 1;
        if (p->recording)
            raw_append(p, data + i, n);
        if (n == 1) {
            step(p, data[i]);
        } else if (!p->in_remove) {
            emit_literal(p, data + i, n);
        }
        i += n;
    }
    return !p->oom;
}

static bool template_build(struct esi_parser *p)
{
    struct esi_template *t = &p->tmpl;

    memset(t, 0, sizeof *t);
    if (p->nsegs) {
        t->segs = calloc(p->nsegs, sizeof *t->segs);
        if (!t->segs)
            return false;
    }
    for (size_t i = 0; i < p->nsegs; i++) {
        const struct seg *s = &p->segs[i];
        struct esi_segment *o = &t->segs[i];
        if (s->include) {
            o->kind = ESI_INCLUDE;
            o->src = p->arena.p + s->off;
            o->src_len = s->len;
            o->alt = s->alt_len ? p->arena.p + s->alt_off : NULL;
            o->alt_len = s->alt_len;
            o->onerror_continue = s->onerror_continue;
        } else {
            o->kind = ESI_LITERAL;
            o->text = p->arena.p + s->off;
            o->len = s->len;
        }
    }
    t->nsegs = p->nsegs;
    t->nincludes = p->nincludes;
    t->literal_bytes = p->literal_bytes;
    t->dropped_includes = p->dropped;
    t->has_esi = p->has_esi;
    return true;
}

bool esi_parser_finish(struct esi_parser *p)
{
    assert(!p->finished);
    /* what is left of the input cannot complete anything: fail the pending
     * candidate, rescan, until nothing is pending */
    while (!p->oom) {
        if (p->redo_pos < p->redo_len)
            step(p, p->redo[p->redo_pos++]);
        else if (p->state != C_NONE)
            cand_fail(p);
        else
            break;
    }
    if (p->oom)
        return false;
    if (p->in_wrapper || p->in_remove) {
        mark_restore(p, &p->mark);
        emit_literal(p, p->raw.p, p->raw.len);
        p->in_wrapper = p->in_remove = false;
        record_stop(p);
    }
    if (p->oom || !template_build(p)) {
        p->oom = true;
        return false;
    }
    free(p->raw.p);
    p->raw = (struct bytes){0};
    p->finished = true;
    return true;
}

const struct esi_template *esi_parser_template(const struct esi_parser *p)
{
    assert(p->finished);
    return &p->tmpl;
}

void esi_parser_free(struct esi_parser **pp)
{
    struct esi_parser *p = pp ? *pp : NULL;

    if (!p)
        return;
    free(p->arena.p);
    free(p->segs);
    free(p->raw.p);
    free(p->tmpl.segs);
    free(p);
    *pp = NULL;
}

/* ---- the encoding ---- */

static const unsigned char MAGIC[4] = {'T', 'E', 'S', 'I'};

#define FLAG_HAS_ESI 0x01u
#define FLAG_ONERROR_CONTINUE 0x01u
#define KIND_LITERAL 0
#define KIND_INCLUDE 1
#define LITERAL_HEAD 9 /* kind, u64 length */
#define INCLUDE_HEAD 6 /* kind, flags, u16 src length, u16 alt length */

/* A bounded writer: counts everything, stores what fits. */
struct writer {
    unsigned char *out;
    size_t cap, len;
};

static void put(struct writer *w, const void *s, size_t n)
{
    if (n > 0 && w->len < w->cap) {
        size_t room = w->cap - w->len;
        memcpy(w->out + w->len, s, n < room ? n : room);
    }
    w->len += n;
}

static void put_le(struct writer *w, uint64_t v, unsigned n)
{
    unsigned char b[8];

    wire_put_le(b, v, n);
    put(w, b, n);
}

size_t esi_template_encode(const struct esi_template *t, unsigned char *out, size_t cap)
{
    struct writer w = {out, out ? cap : 0, 0};

    put(&w, MAGIC, sizeof MAGIC);
    put_le(&w, ESI_TEMPLATE_VERSION, 1);
    put_le(&w, t->has_esi ? FLAG_HAS_ESI : 0, 1);
    put_le(&w, t->nsegs, 4);
    put_le(&w, t->nincludes, 4);
    put_le(&w, t->dropped_includes, 4);
    put_le(&w, t->literal_bytes, 8);
    for (size_t i = 0; i < t->nsegs; i++) {
        const struct esi_segment *s = &t->segs[i];
        if (s->kind == ESI_LITERAL) {
            put_le(&w, KIND_LITERAL, 1);
            put_le(&w, s->len, 8);
            put(&w, s->text, s->len);
        } else {
            put_le(&w, KIND_INCLUDE, 1);
            put_le(&w, s->onerror_continue ? FLAG_ONERROR_CONTINUE : 0, 1);
            put_le(&w, s->src_len, 2);
            put_le(&w, s->alt_len, 2);
            put(&w, s->src, s->src_len);
            put(&w, s->alt, s->alt_len);
        }
    }
    return w.len;
}

bool esi_template_is_encoded(const unsigned char *p, size_t len)
{
    return p && len >= sizeof MAGIC && memcmp(p, MAGIC, sizeof MAGIC) == 0;
}

/* Check the segments at p/len against the header's counts; with segs, fill
 * them in too (the second pass, over input the first one accepted). */
static bool decode_segments(const unsigned char *p, size_t len, const struct esi_template *h,
                            struct esi_segment *segs, char *err, size_t errlen)
{
    size_t pos = ESI_TEMPLATE_HEADER_LEN, nincludes = 0;
    uint64_t literal_bytes = 0;
    bool last_literal = false;

    for (size_t i = 0; i < h->nsegs; i++) {
        if (pos == len) {
            wire_err(err, errlen, "segment %zu missing", i);
            return false;
        }
        unsigned kind = p[pos];
        if (kind == KIND_LITERAL) {
            if (len - pos < LITERAL_HEAD) {
                wire_err(err, errlen, "segment %zu truncated", i);
                return false;
            }
            uint64_t n = wire_get_le(p + pos + 1, 8);
            pos += LITERAL_HEAD;
            if (n == 0 || n > len - pos) {
                wire_err(err, errlen, "segment %zu: literal length %llu", i, (unsigned long long)n);
                return false;
            }
            if (last_literal) {
                wire_err(err, errlen, "segment %zu: two literals in a row", i);
                return false;
            }
            if (segs) {
                segs[i].kind = ESI_LITERAL;
                segs[i].text = (const char *)p + pos;
                segs[i].len = (size_t)n;
            }
            pos += (size_t)n;
            literal_bytes += n;
            last_literal = true;
        } else if (kind == KIND_INCLUDE) {
            if (len - pos < INCLUDE_HEAD) {
                wire_err(err, errlen, "segment %zu truncated", i);
                return false;
            }
            unsigned flags = p[pos + 1];
            size_t src_len = (size_t)wire_get_le(p + pos + 2, 2);
            size_t alt_len = (size_t)wire_get_le(p + pos + 4, 2);
            pos += INCLUDE_HEAD;
            if (flags & ~FLAG_ONERROR_CONTINUE) {
                wire_err(err, errlen, "segment %zu: unknown flags 0x%02x", i, flags);
                return false;
            }
            if (src_len == 0 || src_len > ESI_ATTR_MAX || alt_len > ESI_ATTR_MAX) {
                wire_err(err, errlen, "segment %zu: src length %zu, alt length %zu", i, src_len,
                         alt_len);
                return false;
            }
            if (src_len + alt_len > len - pos) {
                wire_err(err, errlen, "segment %zu truncated", i);
                return false;
            }
            if (segs) {
                segs[i].kind = ESI_INCLUDE;
                segs[i].src = (const char *)p + pos;
                segs[i].src_len = src_len;
                segs[i].alt = alt_len ? (const char *)p + pos + src_len : NULL;
                segs[i].alt_len = alt_len;
                segs[i].onerror_continue = flags & FLAG_ONERROR_CONTINUE;
            }
            pos += src_len + alt_len;
            nincludes++;
            last_literal = false;
        } else {
            wire_err(err, errlen, "segment %zu: unknown kind %u", i, kind);
            return false;
        }
    }
    if (pos != len) {
        wire_err(err, errlen, "%zu bytes after the last segment", len - pos);
        return false;
    }
    if (nincludes != h->nincludes || literal_bytes != h->literal_bytes) {
        wire_err(err, errlen, "counts do not match the segments");
        return false;
    }
    return true;
}

bool esi_template_decode(const unsigned char *p, size_t len, struct esi_template *out, char *err,
                         size_t errlen)
{
    struct esi_template h = {0};

    memset(out, 0, sizeof *out);
    if (!p || len < ESI_TEMPLATE_HEADER_LEN) {
        wire_err(err, errlen, "%zu bytes: too short", p ? len : 0);
        return false;
    }
    if (memcmp(p, MAGIC, sizeof MAGIC) != 0) {
        wire_err(err, errlen, "bad magic");
        return false;
    }
    if (p[4] != ESI_TEMPLATE_VERSION) {
        wire_err(err, errlen, "version %u", p[4]);
        return false;
    }
    if (p[5] & ~FLAG_HAS_ESI) {
        wire_err(err, errlen, "unknown flags 0x%02x", p[5]);
        return false;
    }
    uint64_t nsegs = wire_get_le(p + 6, 4), nincludes = wire_get_le(p + 10, 4);
    uint64_t dropped = wire_get_le(p + 14, 4), literal_bytes = wire_get_le(p + 18, 8);
    if (nsegs > ESI_MAX_SEGMENTS || nincludes > ESI_MAX_INCLUDES || nincludes > nsegs) {
        wire_err(err, errlen, "%llu segments, %llu includes", (unsigned long long)nsegs,
                 (unsigned long long)nincludes);
        return false;
    }
    if (literal_bytes > len) {
        wire_err(err, errlen, "literal bytes %llu", (unsigned long long)literal_bytes);
        return false;
    }
    h.has_esi = p[5] & FLAG_HAS_ESI;
    h.nsegs = (size_t)nsegs;
    h.nincludes = (size_t)nincludes;
    h.dropped_includes = (unsigned)dropped;
    h.literal_bytes = (size_t)literal_bytes;
    if (dropped && (nincludes != ESI_MAX_INCLUDES || !h.has_esi)) {
        wire_err(err, errlen, "dropped includes below the limit");
        return false;
    }
    if (!decode_segments(p, len, &h, NULL, err, errlen))
        return false;
    /* the parser clears has_esi only for the body unchanged */
    if (!h.has_esi && h.nincludes) {
        wire_err(err, errlen, "includes without has_esi");
        return false;
    }
    if (h.nsegs) {
        h.segs = calloc(h.nsegs, sizeof *h.segs);
        if (!h.segs) {
            wire_err(err, errlen, "out of memory");
            return false;
        }
        bool ok = decode_segments(p, len, &h, h.segs, NULL, 0);
        assert(ok);
        (void)ok;
    }
    *out = h;
    return true;
}

void esi_template_clear(struct esi_template *t)
{
    free(t->segs);
    memset(t, 0, sizeof *t);
}
