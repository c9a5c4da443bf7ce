/*
 * proxy/esiurl.c: where an ESI include goes (see esiurl.h).
 *
 * Resolution follows RFC 3986 5.2.2 for the three kinds of reference a
 * template can hold (network-path or absolute URL, absolute path, relative
 * path), with the page's URL as base.  The path is built segment by
 * segment straight into the caller's esi_src, so remove_dot_segments
 * (5.2.4) is a stack: a segment is pushed as "/seg", "." is nothing, ".."
 * pops the last one; the merged path of 5.2.3 is the base's directory fed
 * first, then the reference's segments.  Pure and stateless: no locking.
 */
#include "proxy/esiurl.h"

#include <string.h>
#include <strings.h>

/* ---- bytes and slices ---------------------------------------------------------- */

struct slice {
    const char *p;
    size_t n;
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* A URI has no whitespace, control or non-ASCII byte (RFC 3986 2), and a
 * '\' is what browsers turn into '/': refusing it keeps one reading. */
static bool src_bytes_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c >= 0x7f || c == '\\')
            return false;
    }
    return true;
}

/* The offset of the first of the bytes in set, or n. */
static size_t span_until(const char *s, size_t n, const char *set)
{
    size_t i = 0;
    while (i < n && !memchr(set, s[i], strlen(set)))
        i++;
    return i;
}

/* ASCII case-insensitive, byte-exact otherwise (a NUL does not end it). */
static bool slice_equal_ci(struct slice a, struct slice b)
{
    if (a.n != b.n)
        return false;
    for (size_t i = 0; i < a.n; i++)
        if (lower(a.p[i]) != lower(b.p[i]))
            return false;
    return true;
}

/* ---- the path, with dot-segments removed as it is built (RFC 3986 5.2.4) ------- */

struct path_out {
    char *p;
    size_t len;
    size_t cap;    /* bytes usable, the NUL excluded */
    bool overflow; /* the path did not fit at some step */
    bool trailing; /* the last segment was "." or "..": the path ends in '/' */
};

static void path_push(struct path_out *o, const char *seg, size_t n)
{
    if (o->overflow || o->cap - o->len < n + 1) {
        o->overflow = true;
        return;
    }
    o->p[o->len++] = '/';
    memcpy(o->p + o->len, seg, n);
    o->len += n;
}

/* Drop the last "/seg" (an empty segment too); at the root, nothing. */
static void path_pop(struct path_out *o)
{
    while (o->len > 0 && o->p[o->len - 1] != '/')
        o->len--;
    if (o->len > 0)
        o->len--;
}

static void path_segment(struct path_out *o, const char *seg, size_t n)
{
    bool dot = n == 1 && seg[0] == '.';
    bool dotdot = n == 2 && seg[0] == '.' && seg[1] == '.';
    o->trailing = dot || dotdot;
    if (dotdot)
        path_pop(o);
    else if (!dot)
        path_push(o, seg, n);
}

/* Feed the '/'-separated segments of p/n (an absolute path without its
 * leading '/', or a relative path); "" is one empty segment. */
static void path_feed(struct path_out *o, const char *p, size_t n)
{
    for (;;) {
        size_t k = span_until(p, n, "/");
        path_segment(o, p, k);
        if (k == n)
            return;
        p += k + 1;
        n -= k + 1;
    }
}

/* Feed an absolute path, "/" when empty. */
static void path_feed_absolute(struct path_out *o, struct slice path)
{
    if (path.n == 0)
        path_feed(o, "", 0);
    else
        path_feed(o, path.p + 1, path.n - 1);
}

static void path_finish(struct path_out *o)
{
    if (!o->trailing && o->len > 0)
        return;
    if (o->overflow || o->len == o->cap) {
        o->overflow = true;
        return;
    }
    o->p[o->len++] = '/';
}

/* ---- writing the result -------------------------------------------------------- */

static void src_reset(struct esi_src *out)
{
    out->host[0] = '\0';
    out->host_len = 0;
    out->target[0] = '\0';
    out->target_len = 0;
}

static struct path_out path_start(struct esi_src *out)
{
    return (struct path_out){.p = out->target, .cap = sizeof out->target - 1};
}

/* Finish the path, append the query (with its '?', or empty) and close the
 * target.  False when it does not fit. */
static bool target_finish(struct esi_src *out, struct path_out *o, struct slice query)
{
    path_finish(o);
    if (o->overflow || o->cap - o->len < query.n)
        return false;
    memcpy(o->p + o->len, query.p, query.n);
    o->len += query.n;
    o->p[o->len] = '\0';
    out->target_len = o->len;
    return true;
}

static bool host_copy(struct esi_src *out, const char *h, size_t n)
{
    if (n >= sizeof out->host)
        return false;
    memcpy(out->host, h, n);
    out->host[n] = '\0';
    out->host_len = n;
    return true;
}

/* The host lower-cased, and ":port" when there is one (port 0: none). */
static bool host_write(struct esi_src *out, struct slice host, unsigned port)
{
    char portbuf[8] = "";
    size_t plen = 0;
    if (port > 0) {
        char digits[5];
        size_t nd = 0;
        for (; port > 0; port /= 10)
            digits[nd++] = (char)('0' + port % 10);
        portbuf[plen++] = ':';
        while (nd > 0)
            portbuf[plen++] = digits[--nd];
    }
    if (host.n + plen >= sizeof out->host)
        return false;
    for (size_t i = 0; i < host.n; i++)
        out->host[i] = lower(host.p[i]);
    memcpy(out->host + host.n, portbuf, plen);
    out->host_len = host.n + plen;
    out->host[out->host_len] = '\0';
    return true;
}

/* ---- the authority of an absolute URL ------------------------------------------ */

/* RFC 3986 3.2.2 reg-name narrowed to unreserved: the name goes into a Host
 * field and is compared with configured names, so percent-encodings and
 * sub-delims, which would give one host two spellings, are refused. */
static bool reg_name_ok(struct slice h)
{
    if (h.n == 0)
        return false;
    for (size_t i = 0; i < h.n; i++) {
        char c = h.p[i];
        if (!is_alpha(c) && !is_digit(c) && !strchr("-._~", c))
            return false;
    }
    return true;
}

/* "[" IPv6address "]", checked loosely: hex digits, ':' and '.' (an
 * embedded IPv4), at least one ':'.  No zone, no IPvFuture. */
static bool ip_literal_ok(struct slice h)
{
    if (h.n < 4 || h.p[0] != '[' || h.p[h.n - 1] != ']')
        return false;
    bool colon = false;
    for (size_t i = 1; i + 1 < h.n; i++) {
        char c = h.p[i];
        if (!is_hex(c) && c != ':' && c != '.')
            return false;
        colon = colon || c == ':';
    }
    return colon;
}

/* 1..5 digits, 1..65535. */
static bool port_parse(struct slice s, unsigned *port)
{
    if (s.n == 0 || s.n > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (!is_digit(s.p[i]))
            return false;
        v = v * 10 + (unsigned)(s.p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = v;
    return true;
}

/* authority = host [ ":" port ], no userinfo (RFC 3986 3.2). */
static bool authority_parse(struct slice a, struct slice *host, unsigned *port)
{
    if (a.n == 0 || memchr(a.p, '@', a.n))
        return false;
    size_t hn =
        a.n > 0 && a.p[0] == '[' ? span_until(a.p, a.n, "]") + 1 : span_until(a.p, a.n, ":");
    if (hn > a.n)
        return false; /* '[' never closed */
    *host = (struct slice){a.p, hn};
    *port = 0;
    bool host_ok = a.p[0] == '[' ? ip_literal_ok(*host) : reg_name_ok(*host);
    if (!host_ok)
        return false;
    if (hn == a.n)
        return true;
    if (a.p[hn] != ':')
        return false;
    return port_parse((struct slice){a.p + hn + 1, a.n - hn - 1}, port);
}

/* A Host value without its port. */
static struct slice host_name(const char *h, size_t n)
{
    if (n > 0 && h[0] == '[') {
        size_t k = span_until(h, n, "]");
        return (struct slice){h, k < n ? k + 1 : n};
    }
    return (struct slice){h, span_until(h, n, ":")};
}

static bool host_allowed(struct slice host, struct slice page, char *const *allow, size_t nallow)
{
    if (slice_equal_ci(host, page))
        return true;
    bool literal = host.p[0] == '[';
    struct slice inner = {host.p + 1, host.n - 2};
    for (size_t i = 0; i < nallow; i++) {
        struct slice a = {allow[i], strlen(allow[i])};
        if (slice_equal_ci(host, a) || (literal && slice_equal_ci(inner, a)))
            return true;
    }
    return false;
}

/* ---- the three kinds of reference (RFC 3986 5.2.2) ----------------------------- */

struct page {
    struct slice host;  /* the Host value as given */
    struct slice path;  /* the target before '?' */
    struct slice query; /* from '?', or empty */
};

/* Split a reference without fragment into path and query ('?' kept). */
static void split_query(struct slice ref, struct slice *path, struct slice *query)
{
    size_t q = span_until(ref.p, ref.n, "?");
    *path = (struct slice){ref.p, q};
    *query = (struct slice){ref.p + q, ref.n - q};
}

/* rest: what follows "//", up to the fragment. */
static enum esi_src_result resolve_network(struct slice rest, const struct page *pg,
                                           char *const *allow, size_t nallow, struct esi_src *out)
{
    size_t an = span_until(rest.p, rest.n, "/?");
    struct slice host, path, query;
    unsigned port;
    if (!authority_parse((struct slice){rest.p, an}, &host, &port))
        return ESI_SRC_BAD;
    if (!host_allowed(host, host_name(pg->host.p, pg->host.n), allow, nallow))
        return ESI_SRC_HOST_DENIED;
    if (!host_write(out, host, port))
        return ESI_SRC_BAD;
    split_query((struct slice){rest.p + an, rest.n - an}, &path, &query);
    struct path_out o = path_start(out);
    path_feed_absolute(&o, path);
    return target_finish(out, &o, query) ? ESI_SRC_OK : ESI_SRC_BAD;
}

static enum esi_src_result resolve_absolute_path(struct slice ref, const struct page *pg,
                                                 struct esi_src *out)
{
    struct slice path, query;
    if (!host_copy(out, pg->host.p, pg->host.n))
        return ESI_SRC_BAD;
    split_query(ref, &path, &query);
    struct path_out o = path_start(out);
    path_feed_absolute(&o, path);
    return target_finish(out, &o, query) ? ESI_SRC_OK : ESI_SRC_BAD;
}

/* RFC 3986 5.2.3: the base path up to its last '/', then the reference. */
static void path_feed_merged(struct path_out *o, struct slice base, struct slice ref)
{
    size_t dir = base.n;
    while (dir > 0 && base.p[dir - 1] != '/')
        dir--;
    /* base.p[0..dir) ends in '/': its segments are those of base.p[1..dir-1) */
    if (dir > 1)
        path_feed(o, base.p + 1, dir - 2);
    path_feed(o, ref.p, ref.n);
}

static enum esi_src_result resolve_relative(struct slice ref, const struct page *pg,
                                            struct esi_src *out)
{
    struct slice path, query;
    if (pg->path.n == 0 || pg->path.p[0] != '/')
        return ESI_SRC_BAD; /* no origin-form base to resolve against */
    if (!host_copy(out, pg->host.p, pg->host.n))
        return ESI_SRC_BAD;
    split_query(ref, &path, &query);
    struct path_out o = path_start(out);
    if (path.n > 0) {
        path_feed_merged(&o, pg->path, path);
    } else {
        path_feed_absolute(&o, pg->path); /* "?q", or "#f" alone: the page's path */
        if (query.n == 0)
            query = pg->query;
    }
    return target_finish(out, &o, query) ? ESI_SRC_OK : ESI_SRC_BAD;
}

/* A ':' before the first '/' or '?' makes ref start with a scheme
 * (RFC 3986 4.2: a relative path cannot have one in its first segment);
 * only http and https followed by "//" are fetched.  rest: after "//". */
static bool scheme_http(struct slice ref, bool *has_scheme, struct slice *rest)
{
    size_t colon = span_until(ref.p, ref.n, "/?:");
    *has_scheme = colon < ref.n && ref.p[colon] == ':';
    if (!*has_scheme)
        return false;
    bool http = (colon == 4 && strncasecmp(ref.p, "http", 4) == 0) ||
                (colon == 5 && strncasecmp(ref.p, "https", 5) == 0);
    if (!http || ref.n - colon < 3 || memcmp(ref.p + colon, "://", 3) != 0)
        return false;
    *rest = (struct slice){ref.p + colon + 3, ref.n - colon - 3};
    return true;
}

static enum esi_src_result resolve(struct slice ref, const struct page *pg, char *const *allow,
                                   size_t nallow, struct esi_src *out)
{
    bool has_scheme;
    struct slice rest;
    if (scheme_http(ref, &has_scheme, &rest))
        return resolve_network(rest, pg, allow, nallow, out);
    if (has_scheme)
        return ESI_SRC_BAD;
    if (ref.n >= 2 && ref.p[0] == '/' && ref.p[1] == '/')
        return resolve_network((struct slice){ref.p + 2, ref.n - 2}, pg, allow, nallow, out);
    if (ref.n > 0 && ref.p[0] == '/')
        return resolve_absolute_path(ref, pg, out);
    return resolve_relative(ref, pg, out);
}

enum esi_src_result esi_src_resolve(const char *src, size_t src_len, const char *page_host,
                                    size_t page_host_len, const char *page_target,
                                    size_t page_target_len, char *const *allow_hosts,
                                    size_t nallow_hosts, struct esi_src *out)
{
    src_reset(out);
    if (src_len == 0 || !src_bytes_ok(src, src_len))
        return ESI_SRC_BAD;
    struct slice ref = {src, span_until(src, src_len, "#")};
    size_t pq = span_until(page_target, page_target_len, "?");
    struct page pg = {
        .host = {page_host, page_host_len},
        .path = {page_target, pq},
        .query = {page_target + pq, page_target_len - pq},
    };
    enum esi_src_result r = resolve(ref, &pg, allow_hosts, nallow_hosts, out);
    if (r != ESI_SRC_OK)
        src_reset(out);
    return r;
}

/* ---- loops --------------------------------------------------------------------- */

/* A Host value without a trailing default port ":80". */
static struct slice host_sans_default_port(const char *h, size_t n)
{
    if (n >= 3 && memcmp(h + n - 3, ":80", 3) == 0)
        n -= 3;
    return (struct slice){h, n};
}

bool esi_chain_contains(const struct esi_chain *chain, const struct esi_src *src)
{
    struct slice want = host_sans_default_port(src->host, src->host_len);
    for (; chain; chain = chain->parent) {
        struct slice h = host_sans_default_port(chain->host, chain->host_len);
        if (slice_equal_ci(h, want) && chain->target_len == src->target_len &&
            (src->target_len == 0 || memcmp(chain->target, src->target, src->target_len) == 0))
            return true;
    }
    return false;
}

unsigned esi_chain_depth(const struct esi_chain *chain)
{
    unsigned n = 0;
    for (; chain; chain = chain->parent)
        n++;
    return n;
}
