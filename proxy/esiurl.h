/*
 * proxy/esiurl.h: where an ESI include goes (issue 10).
 *
 * Two parts, used when a page's template is assembled:
 *   - resolution: an include's src (cache/esi.h hands it over decoded but
 *     unchecked) resolved against the page's URL, http://<page Host><page
 *     target>, as RFC 3986 5.2 resolves a reference against its base, into
 *     the Host field and origin-form target of the subrequest; hosts other
 *     than the page's own and the route's allowed ones are refused, so a
 *     template cannot make the proxy fetch from anywhere;
 *   - loops: the chain of pages a subrequest is nested in, so that a page
 *     including itself (directly or through others) is caught, and its
 *     depth, which the route bounds.
 *
 * Pure functions over (pointer, length) slices: no allocation, no clock,
 * nothing shared.  src comes from an origin's body: bad input is a result,
 * never an assertion.
 */
#ifndef TESSERA_ESIURL_H
#define TESSERA_ESIURL_H

#include <stdbool.h>
#include <stddef.h>

/* A resolved include.  Both strings are also NUL-terminated, so the
 * lengths are at most sizeof - 1. */
struct esi_src {
    char host[256]; /* the Host field value to send: host[:port] */
    size_t host_len;
    char target[4096]; /* origin-form: '/' path [ '?' query ], no fragment */
    size_t target_len;
};

enum esi_src_result {
    ESI_SRC_OK,
    ESI_SRC_BAD,         /* not a URI we fetch: malformed, another scheme, too long */
    ESI_SRC_HOST_DENIED, /* a well-formed absolute URL naming a host not allowed */
};

/*
 * esi_src_resolve: resolve src/src_len against the page http://page_host
 * page_target (RFC 3986 5.2) into *out.
 *  - page_host is the page request's Host value (it may carry ":port");
 *    page_target its origin-form target (starting with '/'; anything else
 *    makes every relative src ESI_SRC_BAD).
 *  - src must be a URI reference: a byte below 0x21, 0x7f, above 0x7f or a
 *    '\' anywhere (even in the fragment), or an empty src, is ESI_SRC_BAD.
 *    The fragment ("#..." to the end) is dropped.
 *  - "http://" and "https://" URLs (scheme case-insensitive) and network-
 *    paths "//authority...": the authority is host [":" port], without
 *    userinfo ('@': BAD); host is a name of ALPHA, DIGIT, '-', '.', '_', '~'
 *    or an IPv6 literal in brackets (hex digits, ':' and '.'), not empty;
 *    port is 1..5 digits of value 1..65535.  The host, compared case-
 *    insensitively and without port, must be the page's own (page_host
 *    without its port) or one of allow_hosts[0..nallow_hosts) (lower-case
 *    names without port; an IPv6 literal may be listed with or without its
 *    brackets); otherwise ESI_SRC_HOST_DENIED.  out->host is that host
 *    lower-cased, plus ":" and the port's decimal value when a port is
 *    given.  An empty path is "/".  "http:" without "//", and every other
 *    scheme ("ftp:", "javascript:", "data:", ...), is BAD; so is a first
 *    path segment holding a ':' that is not a scheme (RFC 3986 4.2).
 *  - Anything else keeps the page's host: out->host is page_host exactly
 *    as given (port and case kept).  "/x" is the path as given; "?q" is the
 *    page's path (page_target before its '?') with the new query; "#f"
 *    alone is the page's whole target; any other relative path is merged
 *    with the page's path (RFC 3986 5.2.3).
 *  - In every case dot-segments are removed from the path (RFC 3986
 *    5.2.4; ".." above the root stays at the root), and the query, if any,
 *    follows as it was written.
 *  - ESI_SRC_BAD too when the host or the target does not fit *out; the
 *    path must fit while its dot-segments are being removed (a path that
 *    "../" would bring back under the limit is still BAD).
 * On any result but ESI_SRC_OK, *out holds two empty strings.
 */
enum esi_src_result esi_src_resolve(const char *src, size_t src_len, const char *page_host,
                                    size_t page_host_len, const char *page_target,
                                    size_t page_target_len, char *const *allow_hosts,
                                    size_t nallow_hosts, struct esi_src *out);

/* The chain of pages a subrequest is nested in, innermost first: the page
 * whose template holds the include, then the page that included that page,
 * up to the client's request.  Each link usually lives on the stack or in
 * the request of the page it describes; spans are not NUL-terminated and
 * must outlive the chain's use. */
struct esi_chain {
    const struct esi_chain *parent; /* NULL for the client's own request */
    const char *host;               /* the page's Host value */
    size_t host_len;
    const char *target; /* its origin-form target */
    size_t target_len;
};

/* esi_chain_contains: some page of chain (NULL: none) is src: the hosts
 * equal ASCII case-insensitively once a trailing default port ":80" is
 * dropped from either, and the targets equal byte for byte. */
bool esi_chain_contains(const struct esi_chain *chain, const struct esi_src *src);

/* esi_chain_depth: the number of links in chain; 0 for NULL. */
unsigned esi_chain_depth(const struct esi_chain *chain);

#endif
