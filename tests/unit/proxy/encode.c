/*
 * tests/unit/proxy/encode.c: the content coding of responses on their way
 * to the client (proxy/encode.c): the plan (policy x Accept-Encoding x the
 * response's facts), the facts read from a parsed head and from a stored
 * object, coded ETags, variant keys, variants of stored objects made once
 * (decoded back by zlib's, brotli's and zstd's own decoders) and the
 * streaming encoder with its flush promise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <brotli/decode.h>
#include <cmocka.h>
#include <zlib.h>
#include <zstd.h>

#include "proxy/encode.h"

#define ERRLEN 160
#define TEXT_LEN ((size_t)100 * 1024)

static const enum coding all_codings[] = {CODING_GZIP, CODING_BR, CODING_ZSTD};
#define NCODINGS (sizeof all_codings / sizeof all_codings[0])

/* ---- a policy built by hand ---- */

static char type_html[] = "text/html";
static char type_json[] = "application/json";
static char type_text_any[] = "text/*";
static char *listed_types[] = {type_html, type_json};
static char *wildcard_types[] = {type_text_any, type_json};

static struct config_compress policy(void)
{
    return (struct config_compress){
        .enabled = true,
        .types = listed_types,
        .ntypes = 2,
        .min_length = 1024,
        .brotli = {.enabled = true, .level = 4, .cached_level = 5},
        .gzip = {.enabled = true, .level = 6, .cached_level = 9},
        .zstd = {.enabled = true, .level = 3, .cached_level = 8},
        .upstream_gzip = false,
    };
}

/* A 200 response of type ct (NULL: none), length unknown. */
static struct encode_response response(const char *ct)
{
    return (struct encode_response){
        .status = 200,
        .content_type = ct,
        .content_type_len = ct ? strlen(ct) : 0,
    };
}

static const char *action_name(enum encode_action a)
{
    return a == ENCODE_NONE ? "NONE" : a == ENCODE_COMPRESS ? "COMPRESS" : "INFLATE";
}

/* The plan for r under cc and ae is (action, coding, vary). */
static void expect_plan_at(int line, const struct config_compress *cc, const char *ae,
                           const struct encode_response *r, enum encode_action action,
                           enum coding coding, bool vary)
{
    struct encode_plan plan;
    memset(&plan, 0x5a, sizeof plan);
    encode_plan_for(cc, ae, ae ? strlen(ae) : 0, r, &plan);
    if (plan.action != action || plan.coding != coding || plan.vary != vary)
        fail_msg("line %d: AE %s%s%s, type %.*s, CE %.*s, status %d: got %s/%s/vary=%d, "
                 "want %s/%s/vary=%d",
                 line, ae ? "\"" : "", ae ? ae : "(none)", ae ? "\"" : "",
                 r->content_type ? (int)r->content_type_len : 6,
                 r->content_type ? r->content_type : "(none)",
                 r->content_encoding ? (int)r->content_encoding_len : 6,
                 r->content_encoding ? r->content_encoding : "(none)", r->status,
                 action_name(plan.action), coding_name(plan.coding), plan.vary, action_name(action),
                 coding_name(coding), vary);
}
#define expect_plan(cc, ae, r, action, coding, vary)                                               \
    expect_plan_at(__LINE__, cc, ae, r, action, coding, vary)

/* ---- growable byte buffers and sinks ---- */

struct bytes {
    unsigned char *p;
    size_t len, cap;
    size_t calls;
    bool refuse; /* the sink says no */
};

static void bytes_add(struct bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static bool bytes_sink(void *ctx, const void *p, size_t n)
{
    struct bytes *b = ctx;
    b->calls++;
    if (b->refuse)
        return false;
    bytes_add(b, p, n);
    return true;
}

static void bytes_free(struct bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ~100 KiB of word salad: compressible, but far from the inflate ratio cap. */
static unsigned char *make_text(size_t n)
{
    static const char *const words[] = {"proxy ",    "cache ",      "<div class=\"row\">",
                                        "</div>\n",  "the ",        "stale ",
                                        "while ",    "revalidate ", "origin ",
                                        "vary ",     "encoding ",   "<p>",
                                        "</p>\n",    "tessera ",    "hit ",
                                        "miss ",     "42 ",         "request ",
                                        "response ", "header "};
    unsigned char *t = malloc(n);
    assert_non_null(t);
    uint32_t x = 2463534242u;
    size_t i = 0;
    while (i < n) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        const char *w = words[x % (sizeof words / sizeof words[0])];
        for (size_t k = 0; w[k] && i < n; k++)
            t[i++] = (unsigned char)w[k];
        if (x % 7 == 0 && i < n)
            t[i++] = (unsigned char)('a' + (x >> 8) % 26);
    }
    return t;
}

/* A gzip member of p/n, made by zlib. */
static unsigned char *gzip_of(const void *p, size_t n, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)n) + 64;
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (unsigned char *)p;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

/* Decode a whole coded body with the coding's own library; returns the
 * decoded bytes (malloc'd) and their length, failing the test on error. */
static unsigned char *decode_all(enum coding c, const unsigned char *in, size_t n, size_t cap,
                                 size_t *out_len)
{
    unsigned char *out = malloc(cap ? cap : 1);
    assert_non_null(out);
    if (c == CODING_GZIP) {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);
        zs.next_in = (unsigned char *)in;
        zs.avail_in = (uInt)n;
        zs.next_out = out;
        zs.avail_out = (uInt)cap;
        int rc = inflate(&zs, Z_FINISH);
        if (rc != Z_STREAM_END)
            fail_msg("gzip: inflate %d", rc);
        assert_int_equal(zs.avail_in, 0);
        *out_len = cap - zs.avail_out;
        inflateEnd(&zs);
    } else if (c == CODING_BR) {
        size_t size = cap;
        BrotliDecoderResult rc = BrotliDecoderDecompress(n, in, &size, out);
        if (rc != BROTLI_DECODER_RESULT_SUCCESS)
            fail_msg("br: BrotliDecoderDecompress %d", (int)rc);
        *out_len = size;
    } else if (c == CODING_ZSTD) {
        size_t rc = ZSTD_decompress(out, cap, in, n);
        if (ZSTD_isError(rc))
            fail_msg("zstd: %s", ZSTD_getErrorName(rc));
        *out_len = rc;
    } else {
        fail_msg("no decoder for coding %d", (int)c);
    }
    return out;
}

/* ---- an incremental decoder, for the flush promise ---- */

struct decoder {
    enum coding coding;
    z_stream zs;
    BrotliDecoderState *br;
    ZSTD_DStream *zd;
    size_t fed; /* coded bytes already given to the decoder */
    struct bytes out;
    bool done;
};

static void decoder_init(struct decoder *d, enum coding coding)
{
    memset(d, 0, sizeof *d);
    d->coding = coding;
    if (coding == CODING_GZIP) {
        assert_int_equal(inflateInit2(&d->zs, 15 + 16), Z_OK);
    } else if (coding == CODING_ZSTD) {
        d->zd = ZSTD_createDStream();
        assert_non_null(d->zd);
    } else {
        d->br = BrotliDecoderCreateInstance(NULL, NULL, NULL);
        assert_non_null(d->br);
    }
}

/* Decode the coded bytes in [d->fed, in->len). */
static void decoder_feed(struct decoder *d, const struct bytes *in)
{
    unsigned char tmp[8192];
    const unsigned char *next_in = in->p + d->fed;
    size_t avail_in = in->len - d->fed;
    for (;;) {
        size_t produced;
        if (d->coding == CODING_GZIP) {
            d->zs.next_in = (unsigned char *)next_in;
            d->zs.avail_in = (uInt)avail_in;
            d->zs.next_out = tmp;
            d->zs.avail_out = sizeof tmp;
            int rc = inflate(&d->zs, Z_SYNC_FLUSH);
            if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
                fail_msg("gzip: inflate %d", rc);
            produced = sizeof tmp - d->zs.avail_out;
            next_in = d->zs.next_in;
            avail_in = d->zs.avail_in;
            if (rc == Z_STREAM_END)
                d->done = true;
        } else if (d->coding == CODING_ZSTD) {
            ZSTD_inBuffer ib = {next_in, avail_in, 0};
            ZSTD_outBuffer ob = {tmp, sizeof tmp, 0};
            size_t rc = ZSTD_decompressStream(d->zd, &ob, &ib);
            if (ZSTD_isError(rc))
                fail_msg("zstd: %s", ZSTD_getErrorName(rc));
            produced = ob.pos;
            next_in += ib.pos;
            avail_in -= ib.pos;
            if (rc == 0)
                d->done = true;
        } else {
            size_t avail_out = sizeof tmp;
            uint8_t *next_out = tmp;
            BrotliDecoderResult rc = BrotliDecoderDecompressStream(d->br, &avail_in, &next_in,
                                                                   &avail_out, &next_out, NULL);
            assert_true(rc != BROTLI_DECODER_RESULT_ERROR);
            produced = sizeof tmp - avail_out;
            if (rc == BROTLI_DECODER_RESULT_SUCCESS)
                d->done = true;
        }
        if (produced > 0)
            bytes_add(&d->out, tmp, produced);
        if (produced < sizeof tmp && (avail_in == 0 || d->done))
            break;
    }
    assert_int_equal(avail_in, 0);
    d->fed = in->len;
}

static void decoder_free(struct decoder *d)
{
    if (d->coding == CODING_GZIP)
        inflateEnd(&d->zs);
    else if (d->coding == CODING_ZSTD)
        ZSTD_freeDStream(d->zd);
    else
        BrotliDecoderDestroyInstance(d->br);
    bytes_free(&d->out);
}

/* ---- header blocks ---- */

/* How many fields of a "Name: value\r\n" block are called name; the value of
 * the last one in *value. */
static unsigned block_count(const char *head, size_t len, const char *name, const char **value,
                            size_t *vlen)
{
    const char *p = head, *end = head + len, *n, *v;
    size_t nl, vl;
    unsigned count = 0;
    while (http_block_next(&p, end, &n, &nl, &v, &vl)) {
        if (nl == strlen(name) && strncasecmp(n, name, nl) == 0) {
            count++;
            if (value) {
                *value = v;
                *vlen = vl;
            }
        }
    }
    return count;
}

/* A parsed response head from "Name: value" lines, spans into a static base. */
static char hbase[2048];
static struct http_head hresp;

static void response_head(int status, const char *const *lines)
{
    http_head_free(&hresp);
    memset(&hresp, 0, sizeof hresp);
    hresp.status = status;
    hresp.major = hresp.minor = 1;
    size_t len = 0;
    for (; lines && *lines; lines++) {
        const char *colon = strchr(*lines, ':');
        assert_non_null(colon);
        size_t n = strlen(*lines), nlen = (size_t)(colon - *lines);
        assert_true(len + n < sizeof hbase);
        memcpy(hbase + len, *lines, n);
        struct http_field *f = http_head_add_field(&hresp);
        assert_non_null(f);
        f->name = (struct http_span){(uint32_t)len, (uint32_t)nlen};
        f->value = http_span_trim(
            hbase, (struct http_span){(uint32_t)(len + nlen + 1), (uint32_t)(n - nlen - 1)});
        len += n;
    }
}

static void from_head(struct encode_response *r, int status, const char *const *lines,
                      bool head_request)
{
    response_head(status, lines);
    memset(r, 0x5a, sizeof *r);
    encode_response_from_head(r, hbase, &hresp, head_request);
}

static void assert_span(const char *p, size_t len, const char *want)
{
    assert_non_null(p);
    if (len != strlen(want) || memcmp(p, want, len) != 0)
        fail_msg("got \"%.*s\", want \"%s\"", (int)len, p, want);
}

/* ---- stored objects ---- */

static const struct cache_object_tag src_tags[] = {{"t1", 2}, {"group-7", 7}};

static struct cache_object_meta src_meta(const char *etag)
{
    return (struct cache_object_meta){
        .primary_key = "http://h/page",
        .primary_len = 13,
        .primary_hash = 0x1234abcd,
        .secondary_key = "cookie=a",
        .secondary_len = 8,
        .vary = "Cookie",
        .vary_len = 6,
        .status = 200,
        .request_time = 1700000000000,
        .response_time = 1700000000100,
        .corrected_initial_age = 5000,
        .lifetime = 60000,
        .stale_while_revalidate = 10000,
        .stale_if_error = 20000,
        .stored_at = 1700000000200,
        .no_cache = true,
        .must_revalidate = true,
        .etag = etag,
        .etag_len = etag ? strlen(etag) : 0,
        .last_modified_ms = 1690000000000,
        .tags = src_tags,
        .ntags = 2,
    };
}

/* An object with meta m, head and body (appended in 7000-byte pieces). */
static struct cache_object *make_object(const struct cache_object_meta *m, const char *head,
                                        const void *body, size_t n)
{
    struct cache_object_builder *b = cache_object_builder_new(m, SIZE_MAX);
    assert_non_null(b);
    assert_true(cache_object_builder_set_head(b, head, strlen(head)));
    const unsigned char *p = body;
    for (size_t off = 0; off < n; off += 7000) {
        size_t k = n - off < 7000 ? n - off : 7000;
        assert_true(cache_object_builder_append(b, p + off, k));
    }
    struct cache_object *obj = cache_object_builder_finish(&b);
    assert_non_null(obj);
    return obj;
}

static unsigned char *object_body(const struct cache_object *obj)
{
    unsigned char *p = malloc(obj->body_len ? obj->body_len : 1);
    assert_non_null(p);
    size_t off = 0;
    for (size_t i = 0; i < obj->nbody; i++) {
        memcpy(p + off, obj->body[i].iov_base, obj->body[i].iov_len);
        off += obj->body[i].iov_len;
    }
    assert_int_equal(off, obj->body_len);
    return p;
}

/* ================================================================= tests */

static void test_plan_choice_by_accept_encoding(void **state)
{
    (void)state;
    struct config_compress cc = policy();
    struct encode_response r = response("text/html");

    expect_plan(&cc, NULL, &r, ENCODE_NONE, CODING_IDENTITY, true);
    expect_plan(&cc, "", &r, ENCODE_NONE, CODING_IDENTITY, true);
    expect_plan(&cc, "identity", &r, ENCODE_NONE, CODING_IDENTITY, true);
    expect_plan(&cc, "gzip, deflate, br, zstd", &r, ENCODE_COMPRESS, CODING_BR, true);
    expect_plan(&cc, "zstd, gzip", &r, ENCODE_COMPRESS, CODING_ZSTD, true);
    expect_plan(&cc, "gzip", &r, ENCODE_COMPRESS, CODING_GZIP, true);
    expect_plan(&cc, "x-gzip", &r, ENCODE_COMPRESS, CODING_GZIP, true);
    expect_plan(&cc, "deflate", &r, ENCODE_NONE, CODING_IDENTITY, true);
    expect_plan(&cc, "br;q=0.5, gzip", &r, ENCODE_COMPRESS, CODING_GZIP, true);
    expect_plan(&cc, "br;q=0.5, zstd;q=0.8, gzip;q=0.1", &r, ENCODE_COMPRESS, CODING_ZSTD, true);
    expect_plan(&cc, "gzip;q=0.9, br;q=0.9, zstd;q=0.9", &r, ENCODE_COMPRESS, CODING_BR, true);
    expect_plan(&cc, "br;q=0, zstd;q=0, gzip;q=0", &r, ENCODE_NONE, CODING_IDENTITY, true);
    expect_plan(&cc, "*", &r, ENCODE_COMPRESS, CODING_BR, true);
    expect_plan(&cc, "identity;q=1, gzip;q=0.5", &r, ENCODE_NONE, CODING_IDENTITY, true);
}

static void test_plan_respects_enabled_codings(void **state)
{
    (void)state;
    struct config_compress cc = policy();
    struct encode_response r = response("text/html");

    cc.brotli.enabled = false;
    expect_plan(&cc, "br, zstd, gzip", &r, ENCODE_COMPRESS, CODING_ZSTD, true);
    expect_plan(&cc, "br", &r, ENCODE_NONE, CODING_IDENTITY, true);
    cc.zstd.enabled = false;
    expect_plan(&cc, "br, zstd, gzip", &r, ENCODE_COMPRESS, CODING_GZIP, true);
    cc.gzip.enabled = false;
    expect_plan(&cc, "br, zstd, gzip", &r, ENCODE_NONE, CODING_IDENTITY, true);
    cc = policy();
    cc.gzip.enabled = false;
    expect_plan(&cc, "gzip, zstd;q=0.1", &r, ENCODE_COMPRESS, CODING_ZSTD, true);
}

static void test_plan_policy_off(void **state)
{
    (void)state;
    struct config_compress cc = policy();
    struct encode_response r = response("text/html");

    cc.enabled = false;
    expect_plan(&cc, "br, gzip", &r, ENCODE_NONE, CODING_IDENTITY, false);
    expect_plan(&cc, NULL, &r, ENCODE_NONE, CODING_IDENTITY, false);
    expect_plan(NULL, "br, gzip", &r, ENCODE_NONE, CODING_IDENTITY, false);
    expect_plan(NULL, NULL, &r, ENCODE_NONE, CODING_IDENTITY, false);
    /* off wins over upstream_gzip too */
    cc.upstream_gzip = true;
    r.content_encoding = "gzip";
    r.content_encoding_len = 4;
    expect_plan(&cc, "br", &r, ENCODE_NONE, CODING_IDENTITY, false);
}

static void test_plan_type_matching(void **state)
{
    (void)state;
    struct config_compress cc = policy();
    struct encode_response r;

    r = response("text/HTML; charset=utf-8");
    expect_plan(&cc, "gzip", &r, ENCODE_COMPRESS, CODING_GZIP, true);
    r = response("TEXT/html");
    expect_plan(&cc, "gzip", &r, ENCODE_COMPRESS, CODING_GZIP, true);
    r = response("application/json;charset=utf-8");
    expect_plan(&cc, "br", &r, ENCODE_COMPRESS, CODING_BR, true);
    r = response("text/html ; charset=utf-8");
    expect_plan(&cc, "br", &r, ENCODE_COMPRESS, CODING_BR, true);
    r = response("text/plain");
    expect_plan(&cc, "gzip", &r, ENCODE_NONE, CODING_IDENTITY, false);
    r = response("text/htmlx");
    expect_plan(&cc, "gzip", &r, ENCODE_NONE, CODING_IDENTITY, false);
    r = response("image/png");
    expect_plan(&cc, "br, gzip", &r, ENCODE_NONE, CODING_IDENTITY, false);
    r = response(NULL);
    expect_plan(&cc, "br, gzip", &r, ENCODE_NONE, CODING_IDENTITY, false);

    cc.types = wildcard_types;
    r = response("text/css");
    expect_plan(&cc, "gzip", &r, ENCODE_COMPRESS, CODING_GZIP, true);
    r = response("Text/Plain; charset=us-ascii");
    expect_plan(&cc, "zstd", &r, ENCODE_COMPRESS, CODING_ZSTD, true);
    r = response("text/html");
    expect_plan(&cc, "br", &r, ENCODE_COMPRESS, CODING_BR, true);
    r = response("application/json");
    expect_plan(&cc, "br", &r, ENCODE_COMPRESS, CODING_BR, true);
    r = response("textual/plain");
    expect_plan(&cc, "gzip", &r, ENCODE_NONE, CODING_IDENTITY, false);
    r = response("image/svg+xml");
    expect_plan(&cc, "gzip", &r, ENCODE_NONE, CODING_IDENTITY, false);
}

static void test_plan_response_facts(void **state)
{
    (void)state;
    struct config_compress cc = policy();
    struct encode_response r;

    /* a Content-Encoding other than identity: left alone */
    r = response("text/html");
    r.content_encoding = "deflate";
    r.content_encoding_len = 7;
    expect_plan(&cc, "gzip, br", &r, ENCODE_NONE, CODING_IDENTITY, false);
    r.content_encoding = "br";
    r.content_encoding_len = 2;
    expect_plan(&cc, "gzip, br", &r, ENCODE_NONE, CODING_IDENTITY, false);
    r.content_encoding = "Identity";
    r.content_encoding_len = 8;
    expect_plan(&cc, "gzip, br", &r, ENCODE_COMPRESS, CODING_BR, true);

    /* no-transform */
    r = response("text/html");
    r.no_transform = true;
    expect_plan(&cc, "gzip, br", &r, ENCODE_NONE, CODING_IDENTITY, false);

    /* statuses without a body */
    static const int no_body[] = {100, 204, 206, 304};
    for (size_t i = 0; i < sizeof no_body / sizeof no_body[0]; i++) {
        r = response("text/html");
        r.status = no_body[i];
        expect_plan(&cc, "gzip, br", &r, ENCODE_NONE, CODING_IDENTITY, false);
    }
    static const int with_body[] = {200, 203, 301, 404, 500};
    for (size_t i = 0; i < sizeof with_body / sizeof with_body[0]; i++) {
        r = response("text/html");
        r.status = with_body[i];
        expect_plan(&cc, "gzip, br", &r, ENCODE_COMPRESS, CODING_BR, true);
    }

    /* HEAD: nothing to compress, but the head must say Vary */
    r = response("text/html");
    r.head_request = true;
    expect_plan(&cc, "gzip, br", &r, ENCODE_NONE, CODING_IDENTITY, true);

    /* min_length */
    r = response("text/html");
    r.length_known = true;
    r.length = 1023;
    expect_plan(&cc, "gzip, br", &r, ENCODE_NONE, CODING_IDENTITY, true);
    r.length = 0;
    expect_plan(&cc, "gzip, br", &r, ENCODE_NONE, CODING_IDENTITY, true);
    r.length = 1024;
    expect_plan(&cc, "gzip, br", &r, ENCODE_COMPRESS, CODING_BR, true);
    r.length_known = false;
    r.length = 0;
    expect_plan(&cc, "gzip, br", &r, ENCODE_COMPRESS, CODING_BR, true);

    /* Vary already lists Accept-Encoding */
    r = response("text/html");
    r.vary_has_ae = true;
    expect_plan(&cc, "gzip, br", &r, ENCODE_COMPRESS, CODING_BR, false);
    expect_plan(&cc, NULL, &r, ENCODE_NONE, CODING_IDENTITY, false);
    r.head_request = true;
    expect_plan(&cc, "gzip", &r, ENCODE_NONE, CODING_IDENTITY, false);
}

static void test_plan_upstream_gzip(void **state)
{
    (void)state;
    struct config_compress cc = policy();
    cc.upstream_gzip = true;
    static const char *const gz[] = {"gzip", "x-gzip", "GZIP", " gzip "};

    for (size_t i = 0; i < sizeof gz / sizeof gz[0]; i++) {
        struct encode_response r = response("text/html");
        r.content_encoding = gz[i];
        r.content_encoding_len = strlen(gz[i]);
        expect_plan(&cc, "gzip", &r, ENCODE_NONE, CODING_IDENTITY, true);
        expect_plan(&cc, "br, gzip;q=0.5", &r, ENCODE_NONE, CODING_IDENTITY, true);
        expect_plan(&cc, "x-gzip", &r, ENCODE_NONE, CODING_IDENTITY, true);
        expect_plan(&cc, "*", &r, ENCODE_NONE, CODING_IDENTITY, true);
        expect_plan(&cc, "br", &r, ENCODE_INFLATE, CODING_IDENTITY, true);
        expect_plan(&cc, "gzip;q=0, br", &r, ENCODE_INFLATE, CODING_IDENTITY, true);
        expect_plan(&cc, "identity", &r, ENCODE_INFLATE, CODING_IDENTITY, true);
        /* no Accept-Encoding: identity is the answer (compress/negotiate.h) */
        expect_plan(&cc, NULL, &r, ENCODE_INFLATE, CODING_IDENTITY, true);

        /* HEAD: its head is undone too */
        r.head_request = true;
        expect_plan(&cc, "br", &r, ENCODE_INFLATE, CODING_IDENTITY, true);
        expect_plan(&cc, "gzip", &r, ENCODE_NONE, CODING_IDENTITY, true);
        r.head_request = false;

        /* whatever its type: the client never asked for gzip */
        r.content_type = "image/png";
        r.content_type_len = 9;
        expect_plan(&cc, "br", &r, ENCODE_INFLATE, CODING_IDENTITY, true);
        r.content_type = NULL;
        r.content_type_len = 0;
        expect_plan(&cc, "br", &r, ENCODE_INFLATE, CODING_IDENTITY, true);

        /* under min_length still inflated */
        r = response("text/html");
        r.content_encoding = gz[i];
        r.content_encoding_len = strlen(gz[i]);
        r.length_known = true;
        r.length = 10;
        expect_plan(&cc, "br", &r, ENCODE_INFLATE, CODING_IDENTITY, true);

        /* Vary already lists Accept-Encoding */
        r.vary_has_ae = true;
        expect_plan(&cc, "br", &r, ENCODE_INFLATE, CODING_IDENTITY, false);
        expect_plan(&cc, "gzip", &r, ENCODE_NONE, CODING_IDENTITY, false);
        r.vary_has_ae = false;

        /* a 304 has no body to inflate */
        r.status = 304;
        expect_plan(&cc, "br", &r, ENCODE_NONE, CODING_IDENTITY, true);
        r.status = 204;
        expect_plan(&cc, "br", &r, ENCODE_NONE, CODING_IDENTITY, true);
    }

    /* upstream_gzip off: a gzip body is the origin's own, left alone */
    cc.upstream_gzip = false;
    struct encode_response r = response("text/html");
    r.content_encoding = "gzip";
    r.content_encoding_len = 4;
    expect_plan(&cc, "br", &r, ENCODE_NONE, CODING_IDENTITY, false);
    expect_plan(&cc, "gzip", &r, ENCODE_NONE, CODING_IDENTITY, false);
    expect_plan(&cc, NULL, &r, ENCODE_NONE, CODING_IDENTITY, false);
}

static void test_response_from_head(void **state)
{
    (void)state;
    struct encode_response r;

    static const char *const full[] = {
        "Content-Type: text/html; charset=utf-8",
        "Content-Encoding:  gzip ",
        "Cache-Control: max-age=60, no-transform",
        "Vary: Cookie, Accept-Encoding",
        "Content-Length: 1234",
        NULL,
    };
    from_head(&r, 200, full, false);
    assert_int_equal(r.status, 200);
    assert_false(r.head_request);
    assert_span(r.content_type, r.content_type_len, "text/html; charset=utf-8");
    assert_true(r.content_type >= hbase && r.content_type < hbase + sizeof hbase);
    assert_span(r.content_encoding, r.content_encoding_len, "gzip");
    assert_true(r.no_transform);
    assert_true(r.vary_has_ae);
    assert_true(r.length_known);
    assert_int_equal(r.length, 1234);

    static const char *const bare[] = {"X-Other: 1", NULL};
    from_head(&r, 404, bare, true);
    assert_int_equal(r.status, 404);
    assert_true(r.head_request);
    assert_null(r.content_type);
    assert_int_equal(r.content_type_len, 0);
    assert_null(r.content_encoding);
    assert_int_equal(r.content_encoding_len, 0);
    assert_false(r.no_transform);
    assert_false(r.vary_has_ae);
    assert_false(r.length_known);
    assert_int_equal(r.length, 0);

    /* case-insensitive names */
    static const char *const lower[] = {"content-type: application/json", "CONTENT-ENCODING: br",
                                        NULL};
    from_head(&r, 200, lower, false);
    assert_span(r.content_type, r.content_type_len, "application/json");
    assert_span(r.content_encoding, r.content_encoding_len, "br");

    /* Cache-Control */
    static const struct {
        const char *lines[3];
        bool no_transform;
    } cc[] = {
        {{"Cache-Control: no-transform", NULL}, true},
        {{"Cache-Control: No-Transform", NULL}, true},
        {{"Cache-Control: public,no-transform,max-age=5", NULL}, true},
        {{"Cache-Control: public", "Cache-Control: no-transform"}, true},
        {{"Cache-Control: max-age=60", NULL}, false},
        {{"Cache-Control: no-transformer", NULL}, false},
        {{"Cache-Control: no-store, private", NULL}, false},
        {{"X-No-Transform: no-transform", NULL}, false},
    };
    for (size_t i = 0; i < sizeof cc / sizeof cc[0]; i++) {
        from_head(&r, 200, cc[i].lines, false);
        if (r.no_transform != cc[i].no_transform)
            fail_msg("Cache-Control case %zu (%s): no_transform %d", i, cc[i].lines[0],
                     r.no_transform);
    }

    /* Vary */
    static const struct {
        const char *lines[3];
        bool has_ae;
    } vary[] = {
        {{"Vary: Accept-Encoding", NULL}, true},
        {{"Vary: accept-encoding", NULL}, true},
        {{"Vary: Cookie, Accept-Encoding", NULL}, true},
        {{"Vary: *", NULL}, true},
        {{"Vary: Cookie", "Vary: Accept-Encoding"}, true},
        {{"Vary: Cookie", NULL}, false},
        {{"Vary: Accept-Encoding-X", NULL}, false},
        {{"Vary: Accept", NULL}, false},
        {{"Vary: ", NULL}, false},
    };
    for (size_t i = 0; i < sizeof vary / sizeof vary[0]; i++) {
        from_head(&r, 200, vary[i].lines, false);
        if (r.vary_has_ae != vary[i].has_ae)
            fail_msg("Vary case %zu (%s): vary_has_ae %d", i, vary[i].lines[0], r.vary_has_ae);
    }

    /* lengths */
    static const struct {
        const char *lines[3];
        bool known;
        uint64_t length;
    } len[] = {
        {{"Content-Length: 0", NULL}, true, 0},
        {{"Content-Length:  99 ", NULL}, true, 99},
        {{"content-length: 1048576", NULL}, true, 1048576},
        {{"Content-Length: 1234", "Transfer-Encoding: chunked"}, false, 0},
        {{"Transfer-Encoding: chunked", "Content-Length: 1234"}, false, 0},
        {{"Transfer-Encoding: chunked", NULL}, false, 0},
        {{"Content-Length: 12a", NULL}, false, 0},
        {{"Content-Length: -1", NULL}, false, 0},
        {{"Content-Length: ", NULL}, false, 0},
        {{"Content-Length: 12345678901234567890", NULL}, false, 0},
    };
    for (size_t i = 0; i < sizeof len / sizeof len[0]; i++) {
        from_head(&r, 200, len[i].lines, false);
        if (r.length_known != len[i].known || r.length != len[i].length)
            fail_msg("length case %zu (%s): known %d length %llu", i, len[i].lines[0],
                     r.length_known, (unsigned long long)r.length);
    }
    http_head_free(&hresp);
    memset(&hresp, 0, sizeof hresp);
}

static void test_response_from_object(void **state)
{
    (void)state;
    long live = cache_object_live_count();
    struct cache_object_meta m = src_meta("\"e\"");
    m.status = 203;
    struct cache_object *obj = make_object(&m,
                                           "Content-Type: text/css\r\n"
                                           "Content-Encoding: gzip\r\n"
                                           "Cache-Control: max-age=1, no-transform\r\n"
                                           "Vary: Cookie,Accept-Encoding\r\n"
                                           "Content-Length: 999\r\n",
                                           "0123456789", 10);
    struct encode_response r;
    memset(&r, 0x5a, sizeof r);
    encode_response_from_object(&r, obj, true);
    assert_int_equal(r.status, 203);
    assert_true(r.head_request);
    assert_span(r.content_type, r.content_type_len, "text/css");
    assert_span(r.content_encoding, r.content_encoding_len, "gzip");
    assert_true(r.no_transform);
    assert_true(r.vary_has_ae);
    assert_true(r.length_known);
    assert_int_equal(r.length, 10); /* the stored body, not the head's claim */
    cache_object_release(&obj);

    m = src_meta(NULL);
    obj = make_object(&m, "X-Other: 1\r\n", NULL, 0);
    memset(&r, 0x5a, sizeof r);
    encode_response_from_object(&r, obj, false);
    assert_int_equal(r.status, 200);
    assert_false(r.head_request);
    assert_null(r.content_type);
    assert_null(r.content_encoding);
    assert_false(r.no_transform);
    assert_false(r.vary_has_ae);
    assert_true(r.length_known);
    assert_int_equal(r.length, 0);
    cache_object_release(&obj);
    assert_int_equal(cache_object_live_count(), live);
}

static void expect_stripped(const char *in, const char *want)
{
    char out[256];
    size_t n = encode_strip_etag_suffixes(in, strlen(in), out, sizeof out);
    if (!want) {
        assert_int_equal(n, 0);
        return;
    }
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void test_strip_etag_suffixes(void **state)
{
    (void)state;
    expect_stripped("\"abc-br\"", "\"abc\"");
    expect_stripped("W/\"x-gzip\", \"y-zstd\", \"z\"", "W/\"x\", \"y\", \"z\"");
    expect_stripped("\"a-identity\"", "\"a\"");
    expect_stripped("\"abc\"", NULL); /* nothing of ours */
    expect_stripped("*", NULL);
    expect_stripped("\"a-brx\"", NULL); /* not a suffix we add */
    expect_stripped("", NULL);
    char small[3];
    assert_int_equal(encode_strip_etag_suffixes("\"abc-br\"", 8, small, sizeof small), 0);
}

/* One maker per variant at a time; a full table never blocks the work. */
static void test_variant_claims(void **state)
{
    (void)state;
    assert_true(encode_variant_claim(42));
    assert_false(encode_variant_claim(42)); /* being made */
    assert_true(encode_variant_claim(43));  /* another variant */
    encode_variant_release(42);
    assert_true(encode_variant_claim(42)); /* made: may be made again */
    encode_variant_release(42);
    encode_variant_release(43);
    assert_true(encode_variant_claim(0)); /* 0 is a hash like any other */
    assert_false(encode_variant_claim(0));
    encode_variant_release(0);

    uint64_t h[ENCODE_MAKING_MAX];
    for (int i = 0; i < ENCODE_MAKING_MAX; i++) {
        h[i] = 1000 + 2 * (uint64_t)i;
        assert_true(encode_variant_claim(h[i]));
    }
    assert_true(encode_variant_claim(5000)); /* full: claimed without a slot */
    assert_true(encode_variant_claim(5000)); /* ...so not remembered */
    for (int i = 0; i < ENCODE_MAKING_MAX; i++)
        encode_variant_release(h[i]);
    assert_true(encode_variant_claim(h[0]));
    encode_variant_release(h[0]);
}

static void test_etag(void **state)
{
    (void)state;
    char out[64];
    size_t n;

    n = encode_etag("\"abc\"", 5, CODING_BR, false, out, sizeof out);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "\"abc-br\"", 8);
    n = encode_etag("W/\"x\"", 5, CODING_GZIP, false, out, sizeof out);
    assert_int_equal(n, 10);
    assert_memory_equal(out, "W/\"x-gzip\"", 10);
    n = encode_etag("\"abc\"", 5, CODING_ZSTD, false, out, sizeof out);
    assert_int_equal(n, 10);
    assert_memory_equal(out, "\"abc-zstd\"", 10);
    n = encode_etag("\"abc\"", 5, CODING_IDENTITY, true, out, sizeof out);
    assert_int_equal(n, 14);
    assert_memory_equal(out, "\"abc-identity\"", 14);
    /* inflated wins over the coding given */
    n = encode_etag("\"abc\"", 5, CODING_GZIP, true, out, sizeof out);
    assert_int_equal(n, 14);
    assert_memory_equal(out, "\"abc-identity\"", 14);
    /* the empty tag */
    n = encode_etag("\"\"", 2, CODING_BR, false, out, sizeof out);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "\"-br\"", 5);
    /* only the first len bytes count */
    n = encode_etag("\"abc\"trailing", 5, CODING_BR, false, out, sizeof out);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "\"abc-br\"", 8);

    /* not a quoted entity tag */
    assert_int_equal(encode_etag("abc", 3, CODING_BR, false, out, sizeof out), 0);
    assert_int_equal(encode_etag("\"abc", 4, CODING_BR, false, out, sizeof out), 0);
    assert_int_equal(encode_etag("\"", 1, CODING_BR, false, out, sizeof out), 0);
    assert_int_equal(encode_etag("", 0, CODING_BR, false, out, sizeof out), 0);
    assert_int_equal(encode_etag("abc\"", 4, CODING_BR, false, out, sizeof out), 0);
    assert_int_equal(encode_etag("W/abc\"", 6, CODING_BR, false, out, sizeof out), 0);
    assert_int_equal(encode_etag("W/\"", 3, CODING_BR, false, out, sizeof out), 0);

    /* buffer exactly large enough, then one byte short */
    memset(out, '#', sizeof out);
    assert_int_equal(encode_etag("\"abc\"", 5, CODING_BR, false, out, 8), 8);
    assert_memory_equal(out, "\"abc-br\"", 8);
    assert_int_equal(out[8], '#');
    assert_int_equal(encode_etag("\"abc\"", 5, CODING_BR, false, out, 7), 0);
    assert_int_equal(encode_etag("\"abc\"", 5, CODING_IDENTITY, true, out, 13), 0);
    assert_int_equal(encode_etag("\"abc\"", 5, CODING_BR, false, out, 0), 0);
}

static void test_level(void **state)
{
    (void)state;
    struct config_compress cc = policy();
    assert_int_equal(encode_level(&cc, CODING_BR, false), 4);
    assert_int_equal(encode_level(&cc, CODING_BR, true), 5);
    assert_int_equal(encode_level(&cc, CODING_GZIP, false), 6);
    assert_int_equal(encode_level(&cc, CODING_GZIP, true), 9);
    assert_int_equal(encode_level(&cc, CODING_ZSTD, false), 3);
    assert_int_equal(encode_level(&cc, CODING_ZSTD, true), 8);
    assert_int_equal(encode_level(&cc, CODING_IDENTITY, false), 0);
    assert_int_equal(encode_level(&cc, CODING_IDENTITY, true), 0);
}

/* The key's layout: prefix, 0x1f, name, ':', 16 lower-case hex digits. */
static void check_key_layout(const char *key, size_t n, const struct cache_object *src,
                             const char *name)
{
    size_t sl = src->secondary_len, nl = strlen(name);
    assert_int_equal(n, sl + 1 + nl + 1 + 16);
    assert_true(n <= sl + ENCODE_VARIANT_KEY_EXTRA);
    assert_memory_equal(key, src->secondary_key, sl);
    assert_int_equal(key[sl], 0x1f);
    assert_memory_equal(key + sl + 1, name, nl);
    assert_int_equal(key[sl + 1 + nl], ':');
    for (size_t i = sl + nl + 2; i < n; i++)
        assert_non_null(strchr("0123456789abcdef", key[i]));
}

static void test_variant_key(void **state)
{
    (void)state;
    long live = cache_object_live_count();
    static const char head[] = "Content-Type: text/html\r\nETag: \"v1\"\r\n";
    struct cache_object_meta m = src_meta("\"v1\"");
    struct cache_object *a = make_object(&m, head, "hello world", 11);
    struct cache_object *a2 = make_object(&m, head, "hello world", 11);
    struct cache_object *other_head =
        make_object(&m, "Content-Type: text/html\r\nETag: \"v2\"\r\n", "hello world", 11);
    struct cache_object *other_body = make_object(&m, head, "hello World", 11);
    struct cache_object *longer_body = make_object(&m, head, "hello world!", 12);
    struct cache_object_meta m2 = m;
    m2.response_time++;
    struct cache_object *other_time = make_object(&m2, head, "hello world", 11);
    struct cache_object_meta m3 = m;
    m3.secondary_key = NULL;
    m3.secondary_len = 0;
    struct cache_object *no_secondary = make_object(&m3, head, "hello world", 11);

    const struct encode_plan br = {ENCODE_COMPRESS, CODING_BR, true};
    const struct encode_plan gz = {ENCODE_COMPRESS, CODING_GZIP, true};
    const struct encode_plan zs = {ENCODE_COMPRESS, CODING_ZSTD, true};
    const struct encode_plan inf = {ENCODE_INFLATE, CODING_IDENTITY, true};
    char k1[128], k2[128];
    size_t n1, n2;

    n1 = encode_variant_key(a, &br, k1, sizeof k1);
    check_key_layout(k1, n1, a, "br");
    /* deterministic: again, and for an equal object */
    n2 = encode_variant_key(a, &br, k2, sizeof k2);
    assert_int_equal(n1, n2);
    assert_memory_equal(k1, k2, n1);
    n2 = encode_variant_key(a2, &br, k2, sizeof k2);
    assert_int_equal(n1, n2);
    assert_memory_equal(k1, k2, n1);
    /* the vary flag of the plan does not matter */
    const struct encode_plan br_novary = {ENCODE_COMPRESS, CODING_BR, false};
    n2 = encode_variant_key(a, &br_novary, k2, sizeof k2);
    assert_int_equal(n1, n2);
    assert_memory_equal(k1, k2, n1);

    /* by coding */
    n2 = encode_variant_key(a, &gz, k2, sizeof k2);
    check_key_layout(k2, n2, a, "gzip");
    /* the hash part is the same: only the coding's name differs */
    assert_memory_equal(k1 + n1 - 16, k2 + n2 - 16, 16);
    n2 = encode_variant_key(a, &zs, k2, sizeof k2);
    check_key_layout(k2, n2, a, "zstd");
    n2 = encode_variant_key(a, &inf, k2, sizeof k2);
    check_key_layout(k2, n2, a, "identity");

    /* by head, body, body length and response time: the hash differs */
    const struct cache_object *diff[] = {other_head, other_body, longer_body, other_time};
    for (size_t i = 0; i < sizeof diff / sizeof diff[0]; i++) {
        n2 = encode_variant_key(diff[i], &br, k2, sizeof k2);
        check_key_layout(k2, n2, diff[i], "br");
        assert_int_equal(n1, n2);
        if (memcmp(k1, k2, n1) == 0)
            fail_msg("variant key case %zu equals the original's", i);
    }

    /* an object without a secondary key */
    n2 = encode_variant_key(no_secondary, &br, k2, sizeof k2);
    check_key_layout(k2, n2, no_secondary, "br");
    assert_int_equal(k2[0], 0x1f);
    assert_memory_equal(k1 + 8, k2, n2); /* same head, body and time: same suffix */

    /* cap must allow secondary_len + ENCODE_VARIANT_KEY_EXTRA */
    assert_int_equal(encode_variant_key(a, &br, k2, a->secondary_len + ENCODE_VARIANT_KEY_EXTRA),
                     n1);
    assert_int_equal(
        encode_variant_key(a, &br, k2, a->secondary_len + ENCODE_VARIANT_KEY_EXTRA - 1), 0);

    cache_object_release(&a);
    cache_object_release(&a2);
    cache_object_release(&other_head);
    cache_object_release(&other_body);
    cache_object_release(&longer_body);
    cache_object_release(&other_time);
    cache_object_release(&no_secondary);
    assert_int_equal(cache_object_live_count(), live);
}

static const char variant_src_head[] = "Content-Type: text/html\r\n"
                                       "ETag: \"v1\"\r\n"
                                       "Vary: Cookie\r\n"
                                       "Content-Length: 102400\r\n"
                                       "Cache-Control: max-age=60\r\n"
                                       "X-Other: 1\r\n";

/* The fields of v that are src's own. */
static void check_variant_meta(const struct cache_object *v, const struct cache_object *src,
                               const struct encode_plan *plan)
{
    assert_int_equal(v->primary_len, src->primary_len);
    assert_memory_equal(v->primary_key, src->primary_key, src->primary_len);
    assert_int_equal(v->primary_hash, src->primary_hash);
    char key[256];
    size_t kn = encode_variant_key(src, plan, key, sizeof key);
    assert_true(kn > 0);
    assert_int_equal(v->secondary_len, kn);
    assert_memory_equal(v->secondary_key, key, kn);
    assert_int_equal(v->vary_len, 0);
    assert_int_equal(v->status, src->status);
    assert_int_equal(v->request_time, src->request_time);
    assert_int_equal(v->response_time, src->response_time);
    assert_int_equal(v->corrected_initial_age, src->corrected_initial_age);
    assert_int_equal(v->lifetime, src->lifetime);
    assert_int_equal(v->stale_while_revalidate, src->stale_while_revalidate);
    assert_int_equal(v->stale_if_error, src->stale_if_error);
    assert_int_equal(v->stored_at, src->stored_at);
    assert_int_equal(v->no_cache, src->no_cache);
    assert_int_equal(v->must_revalidate, src->must_revalidate);
    assert_int_equal(v->last_modified_ms, src->last_modified_ms);
    assert_int_equal(v->ntags, src->ntags);
    for (size_t i = 0; i < src->ntags; i++) {
        assert_int_equal(v->tags[i].len, src->tags[i].len);
        assert_memory_equal(v->tags[i].name, src->tags[i].name, src->tags[i].len);
    }
}

static void test_variant_make_compress(void **state)
{
    (void)state;
    long live = cache_object_live_count();
    struct config_compress cc = policy();
    unsigned char *text = make_text(TEXT_LEN);
    struct cache_object_meta m = src_meta("\"v1\"");
    struct cache_object *src = make_object(&m, variant_src_head, text, TEXT_LEN);
    assert_true(src->nbody >= 2); /* the body spans chunks */

    for (size_t i = 0; i < NCODINGS; i++) {
        enum coding c = all_codings[i];
        const char *name = coding_name(c);
        struct encode_plan plan = {ENCODE_COMPRESS, c, true};
        struct encode_stats before, after;
        char err[ERRLEN] = "";
        encode_stats_read(&before);
        struct cache_object *v = encode_variant_make(src, &plan, &cc, SIZE_MAX, err, sizeof err);
        encode_stats_read(&after);
        if (!v)
            fail_msg("%s: variant failed: %s", name, err);

        /* counters */
        for (int k = 0; k < CODING_COUNT; k++)
            assert_int_equal(after.variants[k] - before.variants[k], k == (int)c ? 1 : 0);
        assert_int_equal(after.variant_failures, before.variant_failures);
        assert_int_equal(after.bytes_in - before.bytes_in, TEXT_LEN);
        assert_int_equal(after.bytes_out - before.bytes_out, v->body_len);

        /* head */
        char want[512];
        snprintf(want, sizeof want,
                 "Content-Type: text/html\r\n"
                 "Cache-Control: max-age=60\r\n"
                 "X-Other: 1\r\n"
                 "Content-Encoding: %s\r\n"
                 "ETag: \"v1-%s\"\r\n"
                 "Vary: Cookie, Accept-Encoding\r\n",
                 name, name);
        if (v->head_len != strlen(want) || memcmp(v->head, want, v->head_len) != 0)
            fail_msg("%s: head\n%.*s\nwant\n%s", name, (int)v->head_len, v->head, want);
        const char *val;
        size_t vl;
        assert_int_equal(block_count(v->head, v->head_len, "content-encoding", &val, &vl), 1);
        assert_span(val, vl, name);
        assert_int_equal(block_count(v->head, v->head_len, "etag", NULL, NULL), 1);
        assert_int_equal(block_count(v->head, v->head_len, "vary", &val, &vl), 1);
        assert_true(http_list_has_token(val, vl, "cookie", 6));
        assert_true(http_list_has_token(val, vl, "accept-encoding", 15));
        assert_int_equal(block_count(v->head, v->head_len, "content-length", NULL, NULL), 0);
        assert_int_equal(block_count(v->head, v->head_len, "x-other", NULL, NULL), 1);
        assert_int_equal(block_count(v->head, v->head_len, "cache-control", NULL, NULL), 1);
        assert_int_equal(block_count(v->head, v->head_len, "content-type", NULL, NULL), 1);

        /* validators and keys */
        char etag[32];
        int en = snprintf(etag, sizeof etag, "\"v1-%s\"", name);
        assert_int_equal(v->etag_len, (size_t)en);
        assert_memory_equal(v->etag, etag, (size_t)en);
        check_variant_meta(v, src, &plan);

        /* body */
        assert_true(v->body_len > 0 && v->body_len < TEXT_LEN);
        unsigned char *coded = object_body(v);
        size_t dn;
        unsigned char *plain = decode_all(c, coded, v->body_len, TEXT_LEN + 4096, &dn);
        assert_int_equal(dn, TEXT_LEN);
        assert_memory_equal(plain, text, TEXT_LEN);
        free(plain);
        free(coded);
        cache_object_release(&v);
    }
    cache_object_release(&src);
    free(text);
    assert_int_equal(cache_object_live_count(), live);
}

static void test_variant_head_variations(void **state)
{
    (void)state;
    long live = cache_object_live_count();
    struct config_compress cc = policy();
    const struct encode_plan gz = {ENCODE_COMPRESS, CODING_GZIP, true};
    char err[ERRLEN];
    struct cache_object_meta m;
    struct cache_object *src, *v;

    /* Vary already lists Accept-Encoding; an old Content-Encoding: identity
     * goes; no ETag stays no ETag */
    m = src_meta(NULL);
    src = make_object(&m,
                      "Vary: Accept-Encoding, Cookie\r\nContent-Encoding: identity\r\n"
                      "Content-Type: text/html\r\n",
                      "abcabcabcabc", 12);
    v = encode_variant_make(src, &gz, &cc, SIZE_MAX, err, sizeof err);
    assert_non_null(v);
    assert_span(v->head, v->head_len,
                "Content-Type: text/html\r\nContent-Encoding: gzip\r\n"
                "Vary: Accept-Encoding, Cookie\r\n");
    assert_int_equal(v->etag_len, 0);
    check_variant_meta(v, src, &gz);
    cache_object_release(&v);
    cache_object_release(&src);

    /* two Vary lines are merged, Accept-Encoding added once; a weak ETag */
    m = src_meta("W/\"w\"");
    src = make_object(&m, "Vary: Cookie\r\nX-A: 1\r\nvary: User-Agent\r\netag: W/\"w\"\r\n",
                      "abcabcabcabc", 12);
    v = encode_variant_make(src, &gz, &cc, SIZE_MAX, err, sizeof err);
    assert_non_null(v);
    assert_span(v->head, v->head_len,
                "X-A: 1\r\nContent-Encoding: gzip\r\nETag: W/\"w-gzip\"\r\n"
                "Vary: Cookie, User-Agent, Accept-Encoding\r\n");
    assert_span(v->etag, v->etag_len, "W/\"w-gzip\"");
    cache_object_release(&v);
    cache_object_release(&src);

    /* an empty body still makes a valid gzip stream */
    m = src_meta("\"e\"");
    src = make_object(&m, "Content-Type: text/html\r\n", NULL, 0);
    v = encode_variant_make(src, &gz, &cc, SIZE_MAX, err, sizeof err);
    assert_non_null(v);
    unsigned char *coded = object_body(v);
    size_t dn;
    unsigned char *plain = decode_all(CODING_GZIP, coded, v->body_len, 16, &dn);
    assert_int_equal(dn, 0);
    free(plain);
    free(coded);
    cache_object_release(&v);
    cache_object_release(&src);
    assert_int_equal(cache_object_live_count(), live);
}

static void test_variant_make_inflate(void **state)
{
    (void)state;
    long live = cache_object_live_count();
    struct config_compress cc = policy();
    cc.upstream_gzip = true;
    unsigned char *text = make_text(TEXT_LEN);
    size_t gzn;
    unsigned char *gz = gzip_of(text, TEXT_LEN, &gzn);
    struct cache_object_meta m = src_meta("\"g1\"");
    char head[256];
    snprintf(head, sizeof head,
             "Content-Type: text/html\r\nContent-Encoding: gzip\r\nETag: \"g1\"\r\n"
             "Content-Length: %zu\r\nVary: Accept-Encoding\r\n",
             gzn);
    struct cache_object *src = make_object(&m, head, gz, gzn);

    /* the plan the object gets for a client without gzip */
    struct encode_response r;
    struct encode_plan plan;
    encode_response_from_object(&r, src, false);
    encode_plan_for(&cc, "br", 2, &r, &plan);
    assert_int_equal(plan.action, ENCODE_INFLATE);
    assert_int_equal(plan.coding, CODING_IDENTITY);
    assert_false(plan.vary); /* the stored head already says it */

    struct encode_stats before, after;
    char err[ERRLEN] = "";
    encode_stats_read(&before);
    struct cache_object *v = encode_variant_make(src, &plan, &cc, SIZE_MAX, err, sizeof err);
    encode_stats_read(&after);
    if (!v)
        fail_msg("inflate variant failed: %s", err);
    for (int k = 0; k < CODING_COUNT; k++)
        assert_int_equal(after.variants[k] - before.variants[k], k == CODING_IDENTITY ? 1 : 0);
    assert_int_equal(after.variant_failures, before.variant_failures);
    assert_int_equal(after.bytes_in - before.bytes_in, gzn);
    assert_int_equal(after.bytes_out - before.bytes_out, TEXT_LEN);

    assert_span(v->head, v->head_len,
                "Content-Type: text/html\r\nETag: \"g1-identity\"\r\nVary: Accept-Encoding\r\n");
    assert_int_equal(block_count(v->head, v->head_len, "content-encoding", NULL, NULL), 0);
    assert_span(v->etag, v->etag_len, "\"g1-identity\"");
    check_variant_meta(v, src, &plan);
    assert_true(v->secondary_len > 9);
    assert_memory_equal(v->secondary_key + src->secondary_len,
                        "\x1f"
                        "identity:",
                        10);
    assert_int_equal(v->body_len, TEXT_LEN);
    assert_true(v->nbody >= 2);
    unsigned char *body = object_body(v);
    assert_memory_equal(body, text, TEXT_LEN);
    free(body);
    cache_object_release(&v);

    /* max_body smaller than the inflated body */
    encode_stats_read(&before);
    err[0] = '\0';
    v = encode_variant_make(src, &plan, &cc, TEXT_LEN - 1, err, sizeof err);
    encode_stats_read(&after);
    assert_null(v);
    assert_true(err[0] != '\0');
    assert_int_equal(after.variant_failures - before.variant_failures, 1);
    for (int k = 0; k < CODING_COUNT; k++)
        assert_int_equal(after.variants[k], before.variants[k]);
    cache_object_release(&src);

    /* corrupt gzip bodies: not gzip at all, a flipped byte, cut short */
    static const char junk[] = "this is certainly not a gzip stream, just text";
    unsigned char *flipped = malloc(gzn);
    assert_non_null(flipped);
    memcpy(flipped, gz, gzn);
    flipped[gzn / 2] ^= 0xff;
    flipped[gzn / 2 + 1] ^= 0x55;
    const struct {
        const void *p;
        size_t n;
    } bad[] = {{junk, sizeof junk - 1}, {flipped, gzn}, {gz, gzn / 2}, {gz, gzn - 4}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        src = make_object(&m, head, bad[i].p, bad[i].n);
        encode_stats_read(&before);
        err[0] = '\0';
        v = encode_variant_make(src, &plan, &cc, SIZE_MAX, err, sizeof err);
        encode_stats_read(&after);
        if (v)
            fail_msg("corrupt gzip case %zu made a variant", i);
        if (err[0] == '\0')
            fail_msg("corrupt gzip case %zu: no message", i);
        assert_int_equal(after.variant_failures - before.variant_failures, 1);
        for (int k = 0; k < CODING_COUNT; k++)
            assert_int_equal(after.variants[k], before.variants[k]);
        cache_object_release(&src);
    }
    free(flipped);
    free(gz);
    free(text);
    assert_int_equal(cache_object_live_count(), live);
}

static void test_variant_make_too_large(void **state)
{
    (void)state;
    long live = cache_object_live_count();
    struct config_compress cc = policy();
    unsigned char *text = make_text(TEXT_LEN);
    struct cache_object_meta m = src_meta("\"v1\"");
    struct cache_object *src = make_object(&m, variant_src_head, text, TEXT_LEN);

    for (size_t i = 0; i < NCODINGS; i++) {
        struct encode_plan plan = {ENCODE_COMPRESS, all_codings[i], true};
        struct encode_stats before, after;
        char err[ERRLEN] = "";
        encode_stats_read(&before);
        struct cache_object *v = encode_variant_make(src, &plan, &cc, 1000, err, sizeof err);
        encode_stats_read(&after);
        if (v)
            fail_msg("%s: a variant larger than max_body was made", coding_name(all_codings[i]));
        assert_true(err[0] != '\0');
        assert_int_equal(after.variant_failures - before.variant_failures, 1);
        for (int k = 0; k < CODING_COUNT; k++)
            assert_int_equal(after.variants[k], before.variants[k]);
    }
    cache_object_release(&src);
    free(text);
    assert_int_equal(cache_object_live_count(), live);
}

/* ---- streaming ---- */

static const size_t piece_sizes[] = {1, 13, 256, 1000, 4096, 7, 16384, 30000, 3, 20000};
#define NPIECES (sizeof piece_sizes / sizeof piece_sizes[0])

static void test_stream_compress(void **state)
{
    (void)state;
    struct config_compress cc = policy();
    unsigned char *text = make_text(TEXT_LEN);

    for (size_t i = 0; i < NCODINGS; i++) {
        enum coding c = all_codings[i];
        struct encode_plan plan = {ENCODE_COMPRESS, c, true};
        struct encoder e;
        memset(&e, 0, sizeof e);
        struct bytes out = {0};
        struct decoder d;
        struct encode_stats before, after;
        encode_stats_read(&before);
        assert_false(encoder_active(&e));
        assert_true(encoder_start(&e, &plan, &cc, bytes_sink, &out));
        assert_true(encoder_active(&e));
        decoder_init(&d, c);

        size_t off = 0;
        for (size_t k = 0; off < TEXT_LEN; k++) {
            size_t n = piece_sizes[k % NPIECES];
            if (n > TEXT_LEN - off)
                n = TEXT_LEN - off;
            assert_true(encoder_write(&e, text + off, n));
            off += n;
            /* the flush promise: what the sink got decodes to all input so far */
            decoder_feed(&d, &out);
            if (d.out.len != off || memcmp(d.out.p, text, off) != 0)
                fail_msg("%s: after %zu bytes written the output decodes to %zu bytes",
                         coding_name(c), off, d.out.len);
            assert_false(d.done);
        }
        assert_true(encoder_finish(&e));
        decoder_feed(&d, &out);
        assert_true(d.done);
        assert_int_equal(d.out.len, TEXT_LEN);
        assert_memory_equal(d.out.p, text, TEXT_LEN);
        encoder_free(&e);
        assert_false(encoder_active(&e));
        encode_stats_read(&after);

        /* and the whole output decodes in one go too */
        size_t dn;
        unsigned char *plain = decode_all(c, out.p, out.len, TEXT_LEN + 4096, &dn);
        assert_int_equal(dn, TEXT_LEN);
        assert_memory_equal(plain, text, TEXT_LEN);
        free(plain);

        for (int k = 0; k < CODING_COUNT; k++)
            assert_int_equal(after.streamed[k] - before.streamed[k], k == (int)c ? 1 : 0);
        assert_int_equal(after.inflated, before.inflated);
        assert_int_equal(after.bytes_in - before.bytes_in, TEXT_LEN);
        assert_int_equal(after.bytes_out - before.bytes_out, out.len);
        decoder_free(&d);
        bytes_free(&out);
    }
    free(text);
}

static void test_stream_inflate(void **state)
{
    (void)state;
    struct config_compress cc = policy();
    cc.upstream_gzip = true;
    unsigned char *text = make_text(TEXT_LEN);
    size_t gzn;
    unsigned char *gz = gzip_of(text, TEXT_LEN, &gzn);
    struct encode_plan plan = {ENCODE_INFLATE, CODING_IDENTITY, true};
    struct encoder e;
    memset(&e, 0, sizeof e);
    struct bytes out = {0};
    struct encode_stats before, after;

    encode_stats_read(&before);
    assert_true(encoder_start(&e, &plan, &cc, bytes_sink, &out));
    assert_true(encoder_active(&e));
    size_t off = 0;
    for (size_t k = 0; off < gzn; k++) {
        size_t n = piece_sizes[k % NPIECES];
        if (n > gzn - off)
            n = gzn - off;
        assert_true(encoder_write(&e, gz + off, n));
        off += n;
        assert_true(out.len <= TEXT_LEN);
        assert_memory_equal(out.p ? out.p : (unsigned char *)"", text, out.len);
    }
    assert_true(encoder_finish(&e));
    assert_int_equal(out.len, TEXT_LEN);
    assert_memory_equal(out.p, text, TEXT_LEN);
    encoder_free(&e);
    assert_false(encoder_active(&e));
    encode_stats_read(&after);
    assert_int_equal(after.inflated - before.inflated, 1);
    for (int k = 0; k < CODING_COUNT; k++)
        assert_int_equal(after.streamed[k], before.streamed[k]);
    assert_int_equal(after.bytes_in - before.bytes_in, gzn);
    assert_int_equal(after.bytes_out - before.bytes_out, TEXT_LEN);
    bytes_free(&out);

    /* truncated: every write is fine, finish is not */
    static const size_t cuts[] = {5, 100, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        size_t n = cuts[i] ? cuts[i] : gzn - 4;
        assert_true(encoder_start(&e, &plan, &cc, bytes_sink, &out));
        assert_true(encoder_write(&e, gz, n));
        assert_false(encoder_finish(&e));
        if (e.err[0] == '\0')
            fail_msg("truncated gzip (%zu of %zu bytes): no message", n, gzn);
        encoder_free(&e);
        bytes_free(&out);
    }
    assert_true(encoder_start(&e, &plan, &cc, bytes_sink, &out));
    assert_false(encoder_finish(&e)); /* no member at all */
    assert_true(e.err[0] != '\0');
    encoder_free(&e);

    /* corrupt */
    assert_true(encoder_start(&e, &plan, &cc, bytes_sink, &out));
    assert_false(encoder_write(&e, "definitely not gzip data", 24));
    assert_true(e.err[0] != '\0');
    encoder_free(&e);
    bytes_free(&out);
    free(gz);
    free(text);
}

static void test_stream_sink_refuses(void **state)
{
    (void)state;
    struct config_compress cc = policy();
    unsigned char *text = make_text(TEXT_LEN);

    for (size_t i = 0; i < NCODINGS; i++) {
        struct encode_plan plan = {ENCODE_COMPRESS, all_codings[i], true};
        struct encoder e;
        memset(&e, 0, sizeof e);
        struct bytes out = {.refuse = true};
        assert_true(encoder_start(&e, &plan, &cc, bytes_sink, &out));
        if (encoder_write(&e, text, 5000))
            fail_msg("%s: encoder_write succeeded into a refusing sink",
                     coding_name(all_codings[i]));
        assert_true(out.calls > 0);
        assert_true(e.err[0] != '\0');
        encoder_free(&e);
        bytes_free(&out);
    }

    /* inflating into a refusing sink */
    size_t gzn;
    unsigned char *gz = gzip_of(text, TEXT_LEN, &gzn);
    struct encode_plan plan = {ENCODE_INFLATE, CODING_IDENTITY, true};
    struct encoder e;
    memset(&e, 0, sizeof e);
    struct bytes out = {.refuse = true};
    assert_true(encoder_start(&e, &plan, &cc, bytes_sink, &out));
    assert_false(encoder_write(&e, gz, gzn));
    assert_true(out.calls > 0);
    assert_true(e.err[0] != '\0');
    encoder_free(&e);
    free(gz);
    free(text);
}

static void test_stream_lifecycle(void **state)
{
    (void)state;
    struct config_compress cc = policy();
    struct encoder e;
    memset(&e, 0, sizeof e);
    struct bytes out = {0};

    /* never started */
    assert_false(encoder_active(&e));
    encoder_free(&e);
    encoder_free(&e);
    assert_false(encoder_active(&e));
    assert_false(encoder_write(&e, "x", 1));
    assert_false(encoder_finish(&e));

    /* nothing to encode */
    struct encode_plan none = {ENCODE_NONE, CODING_IDENTITY, true};
    assert_false(encoder_start(&e, &none, &cc, bytes_sink, &out));
    assert_true(e.err[0] != '\0');
    assert_false(encoder_active(&e));
    struct encode_plan identity = {ENCODE_COMPRESS, CODING_IDENTITY, true};
    assert_false(encoder_start(&e, &identity, &cc, bytes_sink, &out));
    assert_false(encoder_active(&e));

    /* started, freed twice, started again (also over an active one) */
    struct encode_plan gz = {ENCODE_COMPRESS, CODING_GZIP, true};
    struct encode_plan br = {ENCODE_COMPRESS, CODING_BR, true};
    struct encode_plan inf = {ENCODE_INFLATE, CODING_IDENTITY, true};
    assert_true(encoder_start(&e, &gz, &cc, bytes_sink, &out));
    assert_true(encoder_active(&e));
    assert_true(e.err[0] == '\0');
    encoder_free(&e);
    assert_false(encoder_active(&e));
    encoder_free(&e);
    assert_false(encoder_active(&e));
    assert_true(encoder_start(&e, &br, &cc, bytes_sink, &out));
    assert_true(encoder_active(&e));
    assert_true(encoder_start(&e, &inf, &cc, bytes_sink, &out));
    assert_true(encoder_active(&e));
    assert_true(encoder_start(&e, &gz, &cc, bytes_sink, &out));
    assert_true(encoder_write(&e, "hello", 5));
    assert_true(encoder_finish(&e));
    assert_true(encoder_active(&e)); /* finished but not freed */
    encoder_free(&e);
    assert_false(encoder_active(&e));
    encoder_free(&e);

    size_t dn;
    unsigned char *plain = decode_all(CODING_GZIP, out.p, out.len, 64, &dn);
    assert_int_equal(dn, 5);
    assert_memory_equal(plain, "hello", 5);
    free(plain);
    bytes_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_choice_by_accept_encoding),
        cmocka_unit_test(test_plan_respects_enabled_codings),
        cmocka_unit_test(test_plan_policy_off),
        cmocka_unit_test(test_plan_type_matching),
        cmocka_unit_test(test_plan_response_facts),
        cmocka_unit_test(test_plan_upstream_gzip),
        cmocka_unit_test(test_response_from_head),
        cmocka_unit_test(test_response_from_object),
        cmocka_unit_test(test_etag),
        cmocka_unit_test(test_variant_claims),
        cmocka_unit_test(test_strip_etag_suffixes),
        cmocka_unit_test(test_level),
        cmocka_unit_test(test_variant_key),
        cmocka_unit_test(test_variant_make_compress),
        cmocka_unit_test(test_variant_head_variations),
        cmocka_unit_test(test_variant_make_inflate),
        cmocka_unit_test(test_variant_make_too_large),
        cmocka_unit_test(test_stream_compress),
        cmocka_unit_test(test_stream_inflate),
        cmocka_unit_test(test_stream_sink_refuses),
        cmocka_unit_test(test_stream_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
