/*
 * cache/esi.h: a streaming parser for a subset of ESI 1.0 (W3C Note "ESI
 * Language Specification 1.0", 2001; sections cited as "ESI 3.1") and the
 * byte encoding in which a parsed template is cached.
 *
 * A template is the origin's body cut into segments: literal bytes, to be
 * sent as they are, and includes, to be replaced by a fetched fragment.  The
 * parser takes the body in pieces of any size, as it arrives; it does no
 * I/O, knows nothing of HTTP and never fetches anything.
 *
 * The subset.  Element and attribute names are case-sensitive, as in XML
 * (<ESI:include> and SRC= are not ESI); whitespace is space, tab, CR or LF.
 *  - <esi:include src="..." [alt="..."] [onerror="continue"]/> (ESI 3.1),
 *    and the paired form <esi:include ...></esi:include>, with only
 *    whitespace (dropped) between the two tags.  Attributes in any order,
 *    each preceded by whitespace, in double or single quotes (XML: an
 *    unquoted value is malformed), with optional whitespace around "=".
 *    Unknown attributes are ignored; src, alt or onerror given twice is
 *    malformed.  Values are entity-decoded: &amp; &lt; &gt; &quot; &apos;
 *    and &#N; / &#xH; (a lower-case x, as in XML) of an XML Char, written
 *    as UTF-8; any other '&' is kept as it is.  No other normalisation: src
 *    and alt are not checked as URLs, the caller must before fetching.
 *    src must be 1..ESI_ATTR_MAX bytes decoded (missing or empty:
 *    malformed); alt at most ESI_ATTR_MAX (alt="" is no alt).  onerror is
 *    "continue" exactly (ESI 3.1), anything else is the default.
 *  - <esi:remove>...</esi:remove> (ESI 3.6): nothing, content included; the
 *    content is not parsed (no nesting: the first </esi:remove> ends it).
 *    <esi:remove/> is nothing too.
 *  - <esi:comment .../> (ESI 3.5), or paired like include: nothing.  Its
 *    attributes must be well-formed; none is required.
 *  - <!--esi ... --> (ESI 3.8): the two markers are removed and what is
 *    between is parsed as ESI markup.  "<!--esi" must be followed by a byte
 *    that cannot continue an XML name (so <!--esitext--> and <!--esi--> are
 *    plain comments); the first "-->" in text ends it (a "-->" inside a
 *    well-formed ESI tag or inside an <esi:remove> does not).  They do not
 *    nest: "<!--esi" inside one is text.
 *  - These tags are recognised anywhere in the body, also inside ordinary
 *    HTML comments, which the parser does not track.
 * Everything else passes through unchanged, including every other element
 * of ESI 1.0 (<esi:try>, <esi:choose>, <esi:vars>, <esi:inline>, ...), stray
 * end tags, and all malformed markup: a "<" that does not start one of the
 * constructs above is literal, and scanning resumes at the byte after it
 * (so a broken tag followed by a good one keeps the good one).  Malformed
 * includes: no src, an unquoted or unterminated value, '<' inside a tag, a
 * missing space between attributes, "/ >", a start tag without its end tag.
 * Two malformed constructs show only at the end of the body: an
 * <esi:remove> or a "<!--esi" never closed.  Then everything from its
 * opening "<" to the end is literal, exactly as received, includes in it
 * too (nothing is silently dropped; the parser keeps those raw bytes until
 * the close or the end).
 *
 * Limits (hostile or broken origins): ESI_MAX_INCLUDES includes per
 * template, an include beyond that is literal and counted in
 * dropped_includes; ESI_TAG_MAX bytes per tag (a paired include or comment
 * counts both tags), a longer "<esi:..." run is literal.  The parser's
 * memory is about the size of the body (the template owns a copy of every
 * literal byte), twice that while an <esi:remove> or "<!--esi" is open (its
 * raw bytes are kept for the case above), plus about 2 * ESI_TAG_MAX.
 *
 * No global state, no locks; a parser belongs to one thread at a time.
 */
#ifndef TESSERA_CACHE_ESI_H
#define TESSERA_CACHE_ESI_H

#include <stdbool.h>
#include <stddef.h>

/* Includes per template: each costs a subrequest, and a page with hundreds
 * is either broken or an attack on the origin through the cache. */
#define ESI_MAX_INCLUDES 256

/* Longest src or alt, decoded: ample for a URL (browsers and servers
 * commonly stop around 8 KiB for a whole request line). */
#define ESI_ATTR_MAX 2048

/* Longest tag, "<" to ">": bounds the bytes the parser holds while it
 * cannot yet tell whether a "<esi:" run is a tag. */
#define ESI_TAG_MAX 8192

/* At most one literal between two includes and at each end. */
#define ESI_MAX_SEGMENTS (2 * ESI_MAX_INCLUDES + 1)

enum esi_segment_kind {
    ESI_LITERAL,
    ESI_INCLUDE,
};

/* One piece of a template.  Spans are not NUL-terminated. */
struct esi_segment {
    enum esi_segment_kind kind;
    const char *text; /* ESI_LITERAL: the bytes, len >= 1 */
    size_t len;
    const char *src; /* ESI_INCLUDE: decoded src, 1..ESI_ATTR_MAX bytes */
    size_t src_len;
    const char *alt; /* ESI_INCLUDE: decoded alt; NULL, 0 when none */
    size_t alt_len;
    bool onerror_continue; /* ESI_INCLUDE: onerror="continue" */
};

/*
 * A parsed template: segs[0..nsegs) in body order.  Adjacent literals are
 * always merged, so no two literals are neighbours and no literal is empty;
 * an empty body has no segment.
 * has_esi is false exactly when the template is the body unchanged: no
 * segment, or one literal holding the whole body.  The proxy can then serve
 * the body as an ordinary object.
 */
struct esi_template {
    struct esi_segment *segs;
    size_t nsegs;
    size_t nincludes;          /* ESI_INCLUDE segments, <= ESI_MAX_INCLUDES */
    size_t literal_bytes;      /* sum of the literals' len */
    unsigned dropped_includes; /* includes left literal by ESI_MAX_INCLUDES */
    bool has_esi;              /* some construct was recognised and applied */
};

struct esi_parser;

/* esi_parser_new: a parser for one body.  NULL when out of memory.  Free it
 * with esi_parser_free(). */
struct esi_parser *esi_parser_new(void);

/* esi_parser_feed: parse the next len bytes of the body (any split; data
 * need not outlive the call, the parser copies what it keeps).  False only
 * when out of memory; the parser is then unusable (every later call fails)
 * and can only be freed.  Must not be called after esi_parser_finish(). */
bool esi_parser_feed(struct esi_parser *p, const char *data, size_t len);

/* esi_parser_finish: the body has ended.  A tag still open is literal, and
 * so is an open <esi:remove> or "<!--esi" (see above).  False only when out
 * of memory.  Call once. */
bool esi_parser_finish(struct esi_parser *p);

/* esi_parser_template: the template, after a successful
 * esi_parser_finish().  It points into memory the parser owns and lives
 * until esi_parser_free(); do not esi_template_clear() it. */
const struct esi_template *esi_parser_template(const struct esi_parser *p);

/* esi_parser_free: free the parser and its template, and NULL *p.  NULL or
 * *p NULL is fine. */
void esi_parser_free(struct esi_parser **p);

/*
 * The encoding: what the cache stores as the body of a template object.
 * Integers are little-endian.
 *
 *   offset  size  field
 *        0  4     magic "TESI"
 *        4  1     version, 1
 *        5  1     flags: bit 0 has_esi (others 0)
 *        6  4     segment count (u32, <= ESI_MAX_SEGMENTS)
 *       10  4     include count (u32, <= ESI_MAX_INCLUDES)
 *       14  4     dropped includes (u32)
 *       18  8     literal bytes (u64)
 *       26  ...   segments, each one of:
 *     literal:  u8 kind 0, u64 length (>= 1), the bytes
 *     include:  u8 kind 1, u8 flags (bit 0 onerror_continue, others 0),
 *               u16 src length (1..ESI_ATTR_MAX), u16 alt length
 *               (0..ESI_ATTR_MAX), src bytes, alt bytes
 *
 * The encoding is canonical: the decoder accepts only what the encoder can
 * write for a template the parser can make (counts and literal bytes that
 * add up, no empty or neighbouring literals, has_esi false only for a lone
 * literal or nothing, dropped includes only at the include limit, no byte
 * after the last segment), so decode(encode(t)) is t and encode(decode(b))
 * is b.  A body hash is not included: the object codec (cache/codec.h)
 * already checks the stored body it is in.
 */
#define ESI_TEMPLATE_VERSION 1
#define ESI_TEMPLATE_HEADER_LEN 26

/* esi_template_encode: write t's encoding into out.  snprintf semantics:
 * returns the size of the whole encoding whatever cap is, writes at most
 * cap bytes (a truncated encoding when cap is too small; no NUL); call with
 * cap 0 (out may then be NULL) to size the buffer.  t is a parsed or
 * decoded template. */
size_t esi_template_encode(const struct esi_template *t, unsigned char *out, size_t cap);

/* esi_template_is_encoded: p starts with the magic "TESI".  A sniff, not a
 * check (only esi_template_decode() validates), and a plain body could
 * start with these bytes too: whether a stored body is a template belongs
 * in the object's metadata; this is for assertions and tools. */
bool esi_template_is_encoded(const unsigned char *p, size_t len);

/* esi_template_decode: read an encoding back into *out, without copying:
 * every span points into p, which must outlive *out.  out->segs is
 * allocated (NULL when there is no segment); the caller frees it with
 * esi_template_clear().  The bytes are untrusted (they come back from
 * memcached): anything not exactly as described above is refused.  False,
 * with *out zeroed and a short reason in err (NUL-terminated, truncated to
 * errlen; err may be NULL), on bad input or when out of memory. */
bool esi_template_decode(const unsigned char *p, size_t len, struct esi_template *out, char *err,
                         size_t errlen);

/* esi_template_clear: free what esi_template_decode() allocated and zero
 * *t.  A zeroed *t is fine. */
void esi_template_clear(struct esi_template *t);

#endif
