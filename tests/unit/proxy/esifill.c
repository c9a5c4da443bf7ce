/*
 * tests/unit/proxy/esifill.c: which responses are ESI templates
 * (proxy/esifill.c: route mode, status, media type, content coding,
 * Surrogate-Control for `esi auto`) and the template fill: identity and
 * gzip bodies in pieces of every size give the template the parser makes
 * of the whole body; corrupt, truncated and oversized bodies fail with a
 * reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "cache/esi.h"
#include "proxy/esifill.h"

static char *html_types[] = {"text/html", "application/xhtml+xml"};

static struct config_esi esi_with(enum esi_mode mode)
{
    return (struct config_esi){.mode = mode, .types = html_types, .ntypes = 2};
}

/* Whether a response with this status and header block is a template. */
static bool is_template(const struct config_esi *esi, int status, const char *block)
{
    struct http_head h = {0};
    h.status = status;
    http_head_parse_block(block, strlen(block), &h);
    bool r = esi_response_is_template(esi, block, &h);
    http_head_free(&h);
    return r;
}

static void test_surrogate_control(void **state)
{
    (void)state;
    static const char *const yes[] = {
        "content=\"ESI/1.0\"",
        "max-age=10, content=\"ESI/1.0\"",
        "content=\"ESI-Inline/1.0 ESI/1.0\"",
        "content=ESI/1.0",
        "no-store, content=esi/1.0",
        "content=\"ESI/1.0\", max-age=5",
    };
    static const char *const no[] = {
        "",
        "max-age=10",
        "content=\"ESI/2.0\"",
        "content=\"ESI/1.00\"",
        "xcontent=\"ESI/1.0\"",
        "content=",
        "content=\"\"",
        "max-age=\"content=ESI/1.0\"",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_true(esi_surrogate_asks(yes[i], strlen(yes[i])));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (esi_surrogate_asks(no[i], strlen(no[i])))
            fail_msg("\"%s\" asked for ESI", no[i]);
    }
}

static void test_which_responses(void **state)
{
    (void)state;
    struct config_esi on = esi_with(ESI_ON), off = esi_with(ESI_OFF), aut = esi_with(ESI_AUTO);
    assert_true(is_template(&on, 200, "Content-Type: text/html\r\n"));
    assert_true(is_template(&on, 200, "Content-Type: Text/HTML; charset=utf-8\r\n"));
    assert_true(is_template(&on, 200, "Content-Type: application/xhtml+xml\r\n"));
    assert_true(is_template(&on, 200, "Content-Type: text/html\r\nContent-Encoding: gzip\r\n"));
    assert_true(is_template(&on, 200, "Content-Type: text/html\r\nContent-Encoding: identity\r\n"));
    /* not listed, no type, not a 200, a coding it cannot read */
    assert_false(is_template(&on, 200, "Content-Type: text/plain\r\n"));
    assert_false(is_template(&on, 200, "X-A: b\r\n"));
    assert_false(is_template(&on, 404, "Content-Type: text/html\r\n"));
    assert_false(is_template(&on, 206, "Content-Type: text/html\r\n"));
    assert_false(is_template(&on, 200, "Content-Type: text/html\r\nContent-Encoding: br\r\n"));
    /* off and no route settings: never */
    assert_false(is_template(&off, 200, "Content-Type: text/html\r\n"));
    assert_false(is_template(NULL, 200, "Content-Type: text/html\r\n"));
    /* auto: only when the origin asks */
    assert_false(is_template(&aut, 200, "Content-Type: text/html\r\n"));
    assert_true(is_template(
        &aut, 200, "Content-Type: text/html\r\nSurrogate-Control: content=\"ESI/1.0\"\r\n"));
    assert_false(is_template(
        &aut, 200, "Content-Type: text/plain\r\nSurrogate-Control: content=\"ESI/1.0\"\r\n"));
    assert_false(
        is_template(&aut, 200, "Content-Type: text/html\r\nSurrogate-Control: max-age=5\r\n"));
}

static const char page[] = "<html><!--esi <p>hidden</p> --><esi:include src=\"/a\" alt='/b' "
                           "onerror=\"continue\"/><esi:remove>gone</esi:remove>tail "
                           "<esi:comment text=\"x\"/><esi:include src=\"/c\"></esi:include></html>";

/* The encoding the parser makes of the whole body at once. */
static unsigned char *reference(size_t *len)
{
    struct esi_parser *p = esi_parser_new();
    assert_non_null(p);
    assert_true(esi_parser_feed(p, page, strlen(page)));
    assert_true(esi_parser_finish(p));
    const struct esi_template *t = esi_parser_template(p);
    assert_int_equal(t->nincludes, 2);
    *len = esi_template_encode(t, NULL, 0);
    unsigned char *out = malloc(*len);
    assert_non_null(out);
    esi_template_encode(t, out, *len);
    esi_parser_free(&p);
    return out;
}

static void fill_in_pieces(const unsigned char *body, size_t len, bool gzip, size_t piece,
                           const unsigned char *want, size_t want_len)
{
    struct esi_fill *f = esi_fill_new(gzip, 1 << 20);
    assert_non_null(f);
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        assert_true(esi_fill_write(f, (const char *)body + off, n));
    }
    unsigned char *got;
    size_t got_len;
    assert_true(esi_fill_finish(f, &got, &got_len));
    assert_string_equal(esi_fill_error(f), "");
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, want_len);
    free(got);
    esi_fill_free(&f);
    assert_null(f);
}

static unsigned char *gzip_of(const char *s, size_t *len)
{
    z_stream z = {0};
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, strlen(s));
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    z.next_in = (unsigned char *)s;
    z.avail_in = (unsigned)strlen(s);
    z.next_out = out;
    z.avail_out = (unsigned)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *len = z.total_out;
    deflateEnd(&z);
    return out;
}

static void test_fill_identity_and_gzip(void **state)
{
    (void)state;
    size_t want_len, gz_len;
    unsigned char *want = reference(&want_len);
    unsigned char *gz = gzip_of(page, &gz_len);
    for (size_t piece = 1; piece <= strlen(page); piece++)
        fill_in_pieces((const unsigned char *)page, strlen(page), false, piece, want, want_len);
    for (size_t piece = 1; piece <= gz_len; piece++)
        fill_in_pieces(gz, gz_len, true, piece, want, want_len);
    free(gz);
    free(want);
}

static void test_fill_failures(void **state)
{
    (void)state;
    unsigned char *out;
    size_t len;
    /* larger than the limit, decoded */
    struct esi_fill *f = esi_fill_new(false, 10);
    assert_true(esi_fill_write(f, "0123456789", 10));
    assert_false(esi_fill_write(f, "x", 1));
    assert_false(esi_fill_finish(f, &out, &len));
    assert_null(out);
    assert_non_null(strstr(esi_fill_error(f), "larger than max_object_size"));
    esi_fill_free(&f);
    /* gzip: the limit counts the inflated bytes */
    size_t gz_len;
    unsigned char *gz = gzip_of(page, &gz_len);
    f = esi_fill_new(true, 20);
    esi_fill_write(f, (const char *)gz, gz_len);
    assert_false(esi_fill_finish(f, &out, &len));
    assert_non_null(strstr(esi_fill_error(f), "larger than max_object_size"));
    esi_fill_free(&f);
    /* truncated gzip */
    f = esi_fill_new(true, 1 << 20);
    assert_true(esi_fill_write(f, (const char *)gz, gz_len - 4));
    assert_false(esi_fill_finish(f, &out, &len));
    assert_non_null(strstr(esi_fill_error(f), "truncated"));
    esi_fill_free(&f);
    /* not gzip at all */
    f = esi_fill_new(true, 1 << 20);
    assert_false(esi_fill_write(f, page, strlen(page)));
    assert_false(esi_fill_finish(f, &out, &len));
    assert_non_null(strstr(esi_fill_error(f), "does not decode"));
    esi_fill_free(&f);
    esi_fill_free(&f); /* NULL is fine */
    free(gz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_surrogate_control),
        cmocka_unit_test(test_which_responses),
        cmocka_unit_test(test_fill_identity_and_gzip),
        cmocka_unit_test(test_fill_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
