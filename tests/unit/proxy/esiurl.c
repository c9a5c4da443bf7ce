/*
 * tests/unit/proxy/esiurl.c: where an ESI include goes (proxy/esiurl.c):
 * src resolved against the page (RFC 3986 5.4 examples), absolute URLs and
 * the host allow list, ports, userinfo, IPv6 literals, other schemes,
 * bytes a URI cannot hold, results that do not fit, and the loop chain.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/esiurl.h"

static const char *result_name(enum esi_src_result r)
{
    return r == ESI_SRC_OK ? "OK" : r == ESI_SRC_BAD ? "BAD" : "HOST_DENIED";
}

static char allow_static[] = "static.example";
static char allow_cdn[] = "cdn.example";
static char allow_g[] = "g";
static char allow_shop[] = "shop.example";
static char allow_v6[] = "::1";
static char allow_v6_bracketed[] = "[2001:db8::7]";
static char *allow[] = {allow_static, allow_cdn, allow_g, allow_shop, allow_v6, allow_v6_bracketed};
#define NALLOW (sizeof allow / sizeof allow[0])

/* Resolve src (n bytes) against http://host target with the allow list
 * above; the result is want, and for ESI_SRC_OK the Host and target are
 * want_host and want_target. */
static void expect_resolve_at(int line, const char *src, size_t n, const char *host,
                              const char *target, enum esi_src_result want, const char *want_host,
                              const char *want_target)
{
    struct esi_src out;
    memset(&out, 0x5a, sizeof out);
    enum esi_src_result r =
        esi_src_resolve(src, n, host, strlen(host), target, strlen(target), allow, NALLOW, &out);
    if (r != want)
        fail_msg("line %d: src \"%.*s\" on %s%s: got %s, want %s", line, (int)n, src, host, target,
                 result_name(r), result_name(want));
    if (r != ESI_SRC_OK) {
        if (out.host_len != 0 || out.target_len != 0 || out.host[0] || out.target[0])
            fail_msg("line %d: src \"%.*s\": out not cleared on %s", line, (int)n, src,
                     result_name(r));
        return;
    }
    if (out.host_len != strlen(want_host) || strcmp(out.host, want_host) != 0 ||
        out.target_len != strlen(want_target) || strcmp(out.target, want_target) != 0)
        fail_msg("line %d: src \"%.*s\" on %s%s: got %s %s (%zu, %zu), want %s %s", line, (int)n,
                 src, host, target, out.host, out.target, out.host_len, out.target_len, want_host,
                 want_target);
}
#define expect_on(host, target, src, want, want_host, want_target)                                 \
    expect_resolve_at(__LINE__, src, strlen(src), host, target, want, want_host, want_target)

/* On the RFC 3986 5.4 base, http://a/b/c/d;p?q. */
#define expect_rfc(src, want_target) expect_on("a", "/b/c/d;p?q", src, ESI_SRC_OK, "a", want_target)
#define expect_bad(src) expect_on("a", "/b/c/d;p?q", src, ESI_SRC_BAD, NULL, NULL)
#define expect_denied(src) expect_on("a", "/b/c/d;p?q", src, ESI_SRC_HOST_DENIED, NULL, NULL)

static void test_rfc3986_normal_examples(void **state)
{
    (void)state;
    /* RFC 3986 5.4.1, those that give a URL on the page's host */
    expect_rfc("g", "/b/c/g");
    expect_rfc("./g", "/b/c/g");
    expect_rfc("g/", "/b/c/g/");
    expect_rfc("/g", "/g");
    expect_rfc("?y", "/b/c/d;p?y");
    expect_rfc("g?y", "/b/c/g?y");
    expect_rfc("#s", "/b/c/d;p?q");
    expect_rfc("g#s", "/b/c/g");
    expect_rfc("g?y#s", "/b/c/g?y");
    expect_rfc(";x", "/b/c/;x");
    expect_rfc("g;x", "/b/c/g;x");
    expect_rfc("g;x?y#s", "/b/c/g;x?y");
    expect_rfc(".", "/b/c/");
    expect_rfc("./", "/b/c/");
    expect_rfc("..", "/b/");
    expect_rfc("../", "/b/");
    expect_rfc("../g", "/b/g");
    expect_rfc("../..", "/");
    expect_rfc("../../", "/");
    expect_rfc("../../g", "/g");
    /* "//g" is http://g: another host, here on the allow list */
    expect_on("a", "/b/c/d;p?q", "//g", ESI_SRC_OK, "g", "/");
    /* "g:h" is another scheme; "" (the page itself) is refused as empty */
    expect_bad("g:h");
    expect_bad("");
}

static void test_rfc3986_abnormal_examples(void **state)
{
    (void)state;
    /* RFC 3986 5.4.2 */
    expect_rfc("../../../g", "/g");
    expect_rfc("../../../../g", "/g");
    expect_rfc("/./g", "/g");
    expect_rfc("/../g", "/g");
    expect_rfc("g.", "/b/c/g.");
    expect_rfc(".g", "/b/c/.g");
    expect_rfc("g..", "/b/c/g..");
    expect_rfc("..g", "/b/c/..g");
    expect_rfc("./../g", "/b/g");
    expect_rfc("./g/.", "/b/c/g/");
    expect_rfc("g/./h", "/b/c/g/h");
    expect_rfc("g/../h", "/b/c/h");
    expect_rfc("g;x=1/./y", "/b/c/g;x=1/y");
    expect_rfc("g;x=1/../y", "/b/c/y");
    expect_rfc("g?y/./x", "/b/c/g?y/./x"); /* the query is not a path */
    expect_rfc("g?y/../x", "/b/c/g?y/../x");
    expect_rfc("g#s/./x", "/b/c/g");
    expect_rfc("g#s/../x", "/b/c/g");
    /* the strict reading: "http:g" is an absolute URI without authority */
    expect_bad("http:g");
    expect_bad("http:/g");
    expect_bad("HTTPS:g");
}

static void test_relative_to_other_pages(void **state)
{
    (void)state;
    expect_on("a", "/", "g", ESI_SRC_OK, "a", "/g");
    expect_on("a", "/", "..", ESI_SRC_OK, "a", "/");
    expect_on("a", "/index.html", "frag/x", ESI_SRC_OK, "a", "/frag/x");
    expect_on("a", "/a/b/", "c", ESI_SRC_OK, "a", "/a/b/c");
    expect_on("a", "/a/b/?q=1", "c?d", ESI_SRC_OK, "a", "/a/b/c?d");
    expect_on("a", "/a//b", "c", ESI_SRC_OK, "a", "/a//c"); /* empty segments are kept */
    expect_on("a", "/a//b", "../c", ESI_SRC_OK, "a", "/a/c");
    /* the page's own path loses its dot-segments too */
    expect_on("a", "/a/./b/../c?q", "?y", ESI_SRC_OK, "a", "/a/c?y");
    expect_on("a", "/a/./b/../c?q", "x", ESI_SRC_OK, "a", "/a/x");
    /* "?" is an empty query, not none (RFC 3986 5.2.2) */
    expect_on("a", "/p?q", "?", ESI_SRC_OK, "a", "/p?");
    expect_on("a", "/p", "#f", ESI_SRC_OK, "a", "/p");
    expect_on("a", "/p?q", "#f", ESI_SRC_OK, "a", "/p?q");
    /* the page's Host is sent as given: case and port kept */
    expect_on("Shop.Example:8080", "/p", "x", ESI_SRC_OK, "Shop.Example:8080", "/x");
    expect_on("Shop.Example:8080", "/p", "/x/../y", ESI_SRC_OK, "Shop.Example:8080", "/y");
    expect_on("[::1]:8080", "/p", "x", ESI_SRC_OK, "[::1]:8080", "/x");
    /* a page target that is not origin-form: relative srcs cannot resolve,
     * absolute paths and URLs still can */
    expect_on("a", "*", "g", ESI_SRC_BAD, NULL, NULL);
    expect_on("a", "", "?y", ESI_SRC_BAD, NULL, NULL);
    expect_on("a", "", "/g", ESI_SRC_OK, "a", "/g");
    expect_on("a", "", "http://a/g", ESI_SRC_OK, "a", "/g");
    /* ':' in a later segment is a path, in the first one a scheme */
    expect_rfc("./a:b", "/b/c/a:b");
    expect_rfc("x/a:b", "/b/c/x/a:b");
    expect_rfc("/a:b", "/a:b");
    expect_rfc("?a:b", "/b/c/d;p?a:b");
    expect_bad("a:b");
    expect_bad("1x:y");
    expect_bad(":x");
}

static void test_absolute_urls(void **state)
{
    (void)state;
    /* the page's own host, any case, its port not part of the name */
    expect_on("a", "/p", "http://a/x", ESI_SRC_OK, "a", "/x");
    expect_on("a", "/p", "HTTP://A/x", ESI_SRC_OK, "a", "/x");
    expect_on("a", "/p", "hTtPs://a/x?y=1", ESI_SRC_OK, "a", "/x?y=1");
    expect_on("Shop.Example:8080", "/p", "http://shop.example/x", ESI_SRC_OK, "shop.example", "/x");
    expect_on("shop.example", "/p", "http://SHOP.example:9000/x", ESI_SRC_OK, "shop.example:9000",
              "/x");
    /* allow list, case-insensitively */
    expect_on("a", "/p", "https://Static.Example/s.css?v=1#top", ESI_SRC_OK, "static.example",
              "/s.css?v=1");
    expect_on("a", "/p", "//cdn.example/frag", ESI_SRC_OK, "cdn.example", "/frag");
    expect_on("a", "/p", "//CDN.EXAMPLE:8443/frag", ESI_SRC_OK, "cdn.example:8443", "/frag");
    /* denied: not the page's, not listed; no suffix or prefix matching */
    expect_denied("http://evil.example/x");
    expect_denied("//evil.example/x");
    expect_denied("https://b/x");
    expect_denied("http://static.example.evil/x");
    expect_denied("http://xstatic.example/x");
    expect_denied("http://static.example./x");
    expect_denied("http://aa/x");
    expect_on("a", "/p", "http://a/x", ESI_SRC_OK, "a", "/x");
    {
        struct esi_src out;
        /* no allow list at all: only the page's own host */
        assert_int_equal(esi_src_resolve("//a/x", 5, "a:81", 4, "/", 1, NULL, 0, &out), ESI_SRC_OK);
        assert_string_equal(out.host, "a");
        assert_int_equal(esi_src_resolve("//g/x", 5, "a", 1, "/", 1, NULL, 0, &out),
                         ESI_SRC_HOST_DENIED);
    }
    /* path: empty is "/", dot-segments removed, fragment dropped */
    expect_on("a", "/p", "http://a", ESI_SRC_OK, "a", "/");
    expect_on("a", "/p", "http://a?x", ESI_SRC_OK, "a", "/?x");
    expect_on("a", "/p", "http://a#f", ESI_SRC_OK, "a", "/");
    expect_on("a", "/p", "http://a/b/../../c", ESI_SRC_OK, "a", "/c");
    expect_on("a", "/p", "//a/./b/.", ESI_SRC_OK, "a", "/b/");
    expect_on("a", "/p", "http://a/x#f/../y", ESI_SRC_OK, "a", "/x");
    /* host characters: unreserved only */
    expect_on("a", "/p", "http://A/x", ESI_SRC_OK, "a", "/x");
    expect_bad("http://a%2eb/x");
    expect_bad("http://a!b/x");
    expect_bad("http://a,b/x");
    expect_bad("http://a;b/x");
    /* empty host */
    expect_bad("http:///x");
    expect_bad("http://");
    expect_bad("//");
    expect_bad("///x");
    expect_bad("http://:80/x");
    expect_bad("http://?x");
}

static void test_ports(void **state)
{
    (void)state;
    expect_on("a", "/p", "http://a:1/x", ESI_SRC_OK, "a:1", "/x");
    expect_on("a", "/p", "http://a:80/x", ESI_SRC_OK, "a:80", "/x");
    expect_on("a", "/p", "http://a:65535/x", ESI_SRC_OK, "a:65535", "/x");
    expect_on("a", "/p", "http://a:00080/x", ESI_SRC_OK, "a:80", "/x"); /* written as a number */
    expect_on("a", "/p", "http://a:8080", ESI_SRC_OK, "a:8080", "/");
    expect_on("a", "/p", "http://a:8080?q", ESI_SRC_OK, "a:8080", "/?q");
    expect_bad("http://a:/x");
    expect_bad("http://a:0/x");
    expect_bad("http://a:00000/x");
    expect_bad("http://a:65536/x");
    expect_bad("http://a:99999/x");
    expect_bad("http://a:123456/x");
    expect_bad("http://a:8x/x");
    expect_bad("http://a:+80/x");
    expect_bad("http://a:-1/x");
    expect_bad("http://a:80:81/x");
    expect_bad("http://a::80/x");
}

static void test_userinfo(void **state)
{
    (void)state;
    expect_bad("http://user@a/x");
    expect_bad("http://user:pw@a/x");
    expect_bad("http://@a/x");
    expect_bad("//user@a/x");
    expect_bad("https://evil.example@a/x");
    expect_bad("http://a@evil.example/x");
    /* an '@' after the authority is only a path or query byte */
    expect_on("a", "/p", "http://a/@x?u=@", ESI_SRC_OK, "a", "/@x?u=@");
    expect_rfc("@x", "/b/c/@x");
}

static void test_ipv6_literals(void **state)
{
    (void)state;
    /* listed as "::1" (no brackets) and "[2001:db8::7]" (brackets) */
    expect_on("a", "/p", "http://[::1]/x", ESI_SRC_OK, "[::1]", "/x");
    expect_on("a", "/p", "http://[::1]:8080/x", ESI_SRC_OK, "[::1]:8080", "/x");
    expect_on("a", "/p", "//[2001:DB8::7]/x", ESI_SRC_OK, "[2001:db8::7]", "/x");
    expect_on("a", "/p", "http://[::ffff:192.0.2.1]/x", ESI_SRC_HOST_DENIED, NULL, NULL);
    expect_on("[::ffff:192.0.2.1]:81", "/p", "http://[::FFFF:192.0.2.1]/x", ESI_SRC_OK,
              "[::ffff:192.0.2.1]", "/x");
    expect_denied("http://[::2]/x");
    expect_bad("http://[::1/x");
    expect_bad("http://[]/x");
    expect_bad("http://[1]/x");
    expect_bad("http://[zz::1]/x");
    expect_bad("http://[::1%25eth0]/x");
    expect_bad("http://[::1]x/x");
    expect_bad("http://[::1]:/x");
    expect_bad("http://::1/x");
    expect_bad("http://[v1.x]/x");
}

static void test_other_schemes(void **state)
{
    (void)state;
    expect_bad("ftp://a/x");
    expect_bad("javascript:alert(1)");
    expect_bad("JavaScript:alert(1)");
    expect_bad("data:text/html,<b>x</b>");
    expect_bad("mailto:x@a");
    expect_bad("file:///etc/passwd");
    expect_bad("httpx://a/x");
    expect_bad("htt://a/x");
    expect_bad("ws://a/x");
    expect_bad("http:x");
    expect_bad("https:");
    expect_bad("http:?x");
}

/* src with the byte c in the middle, at the start, in the host and in the
 * fragment: BAD every time. */
static void expect_bad_byte(int line, unsigned char c)
{
    static const char *const tmpl[] = {"/a%cb", "%c/ab", "http://a%c/b", "/ab#f%c", "g?y%c"};
    for (size_t i = 0; i < sizeof tmpl / sizeof tmpl[0]; i++) {
        char src[32];
        const char *pct = strstr(tmpl[i], "%c");
        size_t pre = (size_t)(pct - tmpl[i]);
        memcpy(src, tmpl[i], pre);
        src[pre] = (char)c;
        memcpy(src + pre + 1, pct + 2, strlen(pct + 2) + 1);
        size_t n = strlen(tmpl[i]) - 1; /* exact length, a NUL byte included */
        expect_resolve_at(line, src, n, "a", "/p", ESI_SRC_BAD, NULL, NULL);
    }
}

static void test_bad_bytes(void **state)
{
    (void)state;
    static const unsigned char bad[] = {0x00, 0x01, '\t', '\n', '\r', 0x1f, ' ',
                                        0x7f, 0x80, 0xc3, 0xa9, 0xff, '\\'};
    for (size_t i = 0; i < sizeof bad; i++)
        expect_bad_byte(__LINE__, bad[i]);
    expect_bad("/caf\xc3\xa9");
    expect_bad("/a b");
    expect_bad("/a\r\nX-Injected: 1");
    expect_bad("\\\\evil.example/x");
    expect_bad("/\\evil.example/x");
    expect_bad(" /x");
    expect_bad("/x ");
    /* the edges of the allowed range, and bytes some would escape */
    expect_rfc("!", "/b/c/!");
    expect_rfc("~", "/b/c/~");
    expect_rfc("a%20b", "/b/c/a%20b");
    expect_rfc("x?a=b&c=d", "/b/c/x?a=b&c=d");
}

static void test_too_long(void **state)
{
    (void)state;
    static char src[6000], want[6000], host[300];
    struct esi_src out;

    /* a target of 4095 bytes fits, 4096 does not */
    memset(src, 'a', sizeof src);
    src[0] = '/';
    memcpy(want, src, 4095);
    want[4095] = '\0';
    expect_resolve_at(__LINE__, src, 4095, "a", "/p", ESI_SRC_OK, "a", want);
    expect_resolve_at(__LINE__, src, 4096, "a", "/p", ESI_SRC_BAD, NULL, NULL);
    expect_resolve_at(__LINE__, src, sizeof src, "a", "/p", ESI_SRC_BAD, NULL, NULL);
    /* the query counts too */
    src[4000] = '?';
    expect_resolve_at(__LINE__, src, 4096, "a", "/p", ESI_SRC_BAD, NULL, NULL);
    want[4000] = '?';
    expect_resolve_at(__LINE__, src, 4095, "a", "/p", ESI_SRC_OK, "a", want);
    src[4000] = 'a';
    /* merged: the page's directory plus the reference */
    src[0] = 'a';
    expect_resolve_at(__LINE__, src, 4093, "a", "/b/c", ESI_SRC_BAD, NULL, NULL);
    memcpy(want, "/b/", 3);
    memset(want + 3, 'a', 4092);
    want[4095] = '\0';
    expect_resolve_at(__LINE__, src, 4092, "a", "/b/c", ESI_SRC_OK, "a", want);
    /* "?q" on a long page path: the page's path plus the query */
    memset(want, 'p', 4094);
    want[0] = '/';
    want[4094] = '\0';
    expect_resolve_at(__LINE__, "?q", 2, "a", want, ESI_SRC_BAD, NULL, NULL);
    memcpy(src, want, 4094);
    memcpy(src + 4094, "?", 2);
    expect_resolve_at(__LINE__, "?", 1, "a", want, ESI_SRC_OK, "a", src);
    /* a path too long at some step is BAD even when ".." shortens it again */
    memset(src, 'a', 4200);
    src[0] = '/';
    memcpy(src + 4200, "/../x", 6);
    expect_resolve_at(__LINE__, src, strlen(src), "a", "/p", ESI_SRC_BAD, NULL, NULL);

    /* hosts: 255 bytes fit, 256 do not (the page's, or a URL's with port) */
    memset(host, 'h', 255);
    host[255] = '\0';
    expect_resolve_at(__LINE__, "/x", 2, host, "/p", ESI_SRC_OK, host, "/x");
    snprintf(src, sizeof src, "http://%s/x", host);
    expect_resolve_at(__LINE__, src, strlen(src), host, "/p", ESI_SRC_OK, host, "/x");
    snprintf(src, sizeof src, "http://%s:1/x", host);
    expect_resolve_at(__LINE__, src, strlen(src), host, "/p", ESI_SRC_BAD, NULL, NULL);
    host[255] = 'h';
    host[256] = '\0';
    expect_resolve_at(__LINE__, "/x", 2, host, "/p", ESI_SRC_BAD, NULL, NULL);
    snprintf(src, sizeof src, "http://%s/x", host);
    expect_resolve_at(__LINE__, src, strlen(src), host, "/p", ESI_SRC_BAD, NULL, NULL);
    /* an ESI_ATTR_MAX src of ordinary bytes is fine */
    memset(src, 'b', 2048);
    src[0] = '/';
    assert_int_equal(esi_src_resolve(src, 2048, "a", 1, "/", 1, NULL, 0, &out), ESI_SRC_OK);
    assert_int_equal(out.target_len, 2048);
}

/* ---- the loop chain ---- */

static void resolve_ok(const char *src, const char *host, const char *target, struct esi_src *out)
{
    assert_int_equal(esi_src_resolve(src, strlen(src), host, strlen(host), target, strlen(target),
                                     allow, NALLOW, out),
                     ESI_SRC_OK);
}

static struct esi_chain link_of(const struct esi_chain *parent, const char *host,
                                const char *target)
{
    return (struct esi_chain){parent, host, strlen(host), target, strlen(target)};
}

static void test_chain_self_include(void **state)
{
    (void)state;
    struct esi_src s;
    struct esi_chain page = link_of(NULL, "shop.example", "/p?x=1");

    resolve_ok("/p?x=1", "shop.example", "/p?x=1", &s);
    assert_true(esi_chain_contains(&page, &s));
    resolve_ok("#top", "shop.example", "/p?x=1", &s); /* the page itself, spelt otherwise */
    assert_true(esi_chain_contains(&page, &s));
    resolve_ok("./p?x=1", "shop.example", "/p?x=1", &s);
    assert_true(esi_chain_contains(&page, &s));
    resolve_ok("http://SHOP.example/p?x=1", "shop.example", "/p?x=1", &s);
    assert_true(esi_chain_contains(&page, &s));
    resolve_ok("http://shop.example:80/p?x=1", "shop.example", "/p?x=1", &s);
    assert_true(esi_chain_contains(&page, &s));
    /* another query, path or port is another page */
    resolve_ok("/p?x=2", "shop.example", "/p?x=1", &s);
    assert_false(esi_chain_contains(&page, &s));
    resolve_ok("/p", "shop.example", "/p?x=1", &s);
    assert_false(esi_chain_contains(&page, &s));
    resolve_ok("/P?x=1", "shop.example", "/p?x=1", &s); /* targets byte-exact */
    assert_false(esi_chain_contains(&page, &s));
    resolve_ok("http://shop.example:8080/p?x=1", "shop.example", "/p?x=1", &s);
    assert_false(esi_chain_contains(&page, &s));
    assert_false(esi_chain_contains(NULL, &s));
}

static void test_chain_ancestors(void **state)
{
    (void)state;
    struct esi_src s;
    struct esi_chain root = link_of(NULL, "Shop.Example:80", "/");
    struct esi_chain mid = link_of(&root, "shop.example", "/frag/a");
    struct esi_chain leaf = link_of(&mid, "cdn.example:8080", "/frag/b");

    assert_int_equal(esi_chain_depth(NULL), 0);
    assert_int_equal(esi_chain_depth(&root), 1);
    assert_int_equal(esi_chain_depth(&mid), 2);
    assert_int_equal(esi_chain_depth(&leaf), 3);

    /* an include in leaf's template back to the root, to mid, to leaf */
    resolve_ok("//shop.example/", "cdn.example:8080", "/frag/b", &s);
    assert_true(esi_chain_contains(&leaf, &s));
    assert_true(esi_chain_contains(&root, &s));
    assert_true(esi_chain_contains(&mid, &s)); /* the root is mid's ancestor too */
    resolve_ok("//shop.example:80/frag/a", "cdn.example:8080", "/frag/b", &s);
    assert_true(esi_chain_contains(&leaf, &s));
    resolve_ok("b", "cdn.example:8080", "/frag/b", &s);
    assert_string_equal(s.host, "cdn.example:8080");
    assert_true(esi_chain_contains(&leaf, &s));
    assert_false(esi_chain_contains(&mid, &s));
    /* the same target on another port or host is not a loop */
    resolve_ok("//cdn.example/frag/b", "cdn.example:8080", "/frag/b", &s);
    assert_false(esi_chain_contains(&leaf, &s));
    resolve_ok("//static.example/frag/a", "cdn.example:8080", "/frag/b", &s);
    assert_false(esi_chain_contains(&leaf, &s));
    /* ":80" is only dropped as a whole port */
    struct esi_chain p8080 = link_of(NULL, "a:8080", "/x");
    resolve_ok("/x", "a:80", "/", &s);
    assert_false(esi_chain_contains(&p8080, &s));
    struct esi_chain p80 = link_of(NULL, "a:80", "/x");
    resolve_ok("/x", "A", "/", &s);
    assert_true(esi_chain_contains(&p80, &s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3986_normal_examples),
        cmocka_unit_test(test_rfc3986_abnormal_examples),
        cmocka_unit_test(test_relative_to_other_pages),
        cmocka_unit_test(test_absolute_urls),
        cmocka_unit_test(test_ports),
        cmocka_unit_test(test_userinfo),
        cmocka_unit_test(test_ipv6_literals),
        cmocka_unit_test(test_other_schemes),
        cmocka_unit_test(test_bad_bytes),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_chain_self_include),
        cmocka_unit_test(test_chain_ancestors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
