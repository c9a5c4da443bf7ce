/*
 * tests/integration/compress.c: compression on the way back (issue 7),
 * end to end: build/tessera in front of build/tessera-origin, every body
 * decoded here (tests/support/decode.h) and compared byte for byte with the
 * origin's identity body (the len=N pattern).
 *
 * What is checked, as man/tessera.conf.5 (COMPRESS CONTEXT) and
 * proxy/encode.h describe it:
 *   - negotiation (q-values; br > zstd > gzip on equal q; no
 *     Accept-Encoding means identity) and the fields of a coded response
 *     (Content-Encoding, Vary: Accept-Encoding, the suffixed ETag, chunked
 *     framing while streaming, a Content-Length on a variant hit);
 *   - what is left alone (no-transform, a Content-Encoding already, short
 *     bodies, types not listed, HEAD, 204, Range requests on a hit);
 *   - variants of stored objects made once (counted by the error log's
 *     "made the CODING variant of KEY" info lines and the origin's
 *     /__count), conditional requests on them, and their sharing between
 *     two nodes through memcached;
 *   - streaming: coded bytes reach the client at the upstream's pace;
 *   - upstream_gzip (what the upstream is asked for, /__last shows it; a
 *     stored gzip body inflated for clients that do not take gzip), request
 *     bodies never decoded, and `compress { off; }`.
 *
 * One tessera for the group with a route per policy (see group_setup);
 * every test uses paths no other test uses, so counts and log lines are
 * the test's own.  The memcached test runs its own scene (`m`: an origin, a
 * memcached and two nodes).  Responses, connections and decode buffers live
 * in file statics so the teardowns free them even when an assertion fails
 * mid-test.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "tests/support/clock.h"
#include "tests/support/decode.h"
#include "tests/support/expect.h"
#include "tests/support/harness.h"
#include "tests/support/pattern.h"

#define READ_MS 5000
#define HOST "shop.test"
/* A compressible HTML body of 5000 pattern bytes (over min_length 1k). */
#define HTML "ctype=text/html&len=5000"
#define LEN 5000
/* How long the memcached test waits for a background write. */
#define ITEM_WAIT_MS 5000

static struct harness h; /* group: origin 0 behind a tessera with a route per policy */

/* The memcached scene (one test). */
static struct harness m;
static struct proc *mcd;
static struct proc *node[2];
static const char *node_log[2];

#define NRESP 6
static struct http_response r[NRESP];
static struct client *conn;
static struct decode_buf dec[2];
static char *last_head; /* the origin's /__last answer */
static char *gz;        /* a gzip body made here */

/* ---- vocabulary ---------------------------------------------------------- */

/* METHOD TARGET on a fresh connection to port with the header lines (NULL
 * terminated array) and an optional body (its Content-Length added); the
 * response is read into *resp. */
static void request_v(int port, struct http_response *resp, const char *method, const char *target,
                      const char *const *headers, const void *body, size_t body_len)
{
    int rc = http_exchange(port, method, target, headers, body, body_len, resp, READ_MS);
    if (rc != CLIENT_OK)
        fail_msg("%s %s: no response (client rc %d)", method, target, rc);
}

static void vrequest(int port, struct http_response *resp, const char *method, const char *target,
                     va_list ap)
{
    const char *lines[15];
    size_t n = 0;
    const char *line;
    while ((line = va_arg(ap, const char *)) != NULL) {
        assert_true(n < 14);
        lines[n++] = line;
    }
    lines[n] = NULL;
    request_v(port, resp, method, target, lines, NULL, 0);
}

/* GET target from the group's tessera with the header lines that follow. */
static void get(struct http_response *resp, const char *target, ...) __attribute__((sentinel));
static void get(struct http_response *resp, const char *target, ...)
{
    va_list ap;
    va_start(ap, target);
    vrequest(h.port, resp, "GET", target, ap);
    va_end(ap);
}

static void head(struct http_response *resp, const char *target, ...) __attribute__((sentinel));
static void head(struct http_response *resp, const char *target, ...)
{
    va_list ap;
    va_start(ap, target);
    vrequest(h.port, resp, "HEAD", target, ap);
    va_end(ap);
}

/* GET target from port (a node, or the origin itself). */
static void get_at(int port, struct http_response *resp, const char *target, ...)
    __attribute__((sentinel));
static void get_at(int port, struct http_response *resp, const char *target, ...)
{
    va_list ap;
    va_start(ap, target);
    vrequest(port, resp, "GET", target, ap);
    va_end(ap);
}

/* How many times Vary lists Accept-Encoding (every Vary field, any case). */
static int vary_ae_count(const struct http_response *resp)
{
    int count = 0;
    for (size_t i = 0; i < resp->nheaders; i++) {
        if (strcasecmp(resp->headers[i].name, "Vary") != 0)
            continue;
        const char *p = resp->headers[i].value;
        while (*p) {
            p += strspn(p, " \t,");
            size_t n = strcspn(p, " \t,");
            if (n == strlen("Accept-Encoding") && strncasecmp(p, "Accept-Encoding", n) == 0)
                count++;
            p += n;
        }
    }
    return count;
}

static void expect_vary_ae_at(const struct http_response *resp, int line)
{
    int n = vary_ae_count(resp);
    if (n != 1)
        fail_msg("line %d: Vary lists Accept-Encoding %d times, expected once (Vary: %s)", line, n,
                 http_response_header(resp, "Vary") ? http_response_header(resp, "Vary") : "none");
}
#define expect_vary_ae(resp) expect_vary_ae_at((resp), __LINE__)

static void expect_no_vary_ae_at(const struct http_response *resp, int line)
{
    if (vary_ae_count(resp) != 0)
        fail_msg("line %d: unexpected Vary: %s", line, http_response_header(resp, "Vary"));
}
#define expect_no_vary_ae(resp) expect_no_vary_ae_at((resp), __LINE__)

/* Content-Encoding is coding (one field), or absent for "identity". */
static void expect_coding_at(const struct http_response *resp, const char *coding, int line)
{
    const char *ce = http_response_header(resp, "Content-Encoding");
    if (strcmp(coding, "identity") == 0) {
        if (ce)
            fail_msg("line %d: Content-Encoding: %s, expected none", line, ce);
        return;
    }
    if (!ce || strcmp(ce, coding) != 0 || http_response_header_count(resp, "Content-Encoding") != 1)
        fail_msg("line %d: Content-Encoding: %s (%zu field(s)), expected %s", line,
                 ce ? ce : "none", http_response_header_count(resp, "Content-Encoding"), coding);
}
#define expect_coding(resp, coding) expect_coding_at((resp), (coding), __LINE__)

/* The body, decoded as coding, is the origin's pattern body of len bytes. */
static void expect_decoded_at(const struct http_response *resp, const char *coding, size_t len,
                              int line)
{
    expect_status(resp, 200);
    expect_coding_at(resp, coding, line);
    if (!decode_body(coding, resp->body ? resp->body : "", resp->body_len, &dec[0]))
        fail_msg("line %d: the %zu-byte body does not decode as %s", line, resp->body_len, coding);
    if (dec[0].len != len)
        fail_msg("line %d: the body decodes (%s) to %zu bytes, expected %zu", line, coding,
                 dec[0].len, len);
    int64_t at = pattern_mismatch(dec[0].data, dec[0].len, 0);
    if (at >= 0)
        fail_msg("line %d: the decoded (%s) body differs from the origin's at byte %" PRId64, line,
                 coding, at);
}
#define expect_decoded(resp, coding, len) expect_decoded_at((resp), (coding), (len), __LINE__)

/* A coded response as it streams: chunked, no Content-Length. */
static void expect_streamed_at(const struct http_response *resp, int line)
{
    if (!resp->chunked || http_response_header(resp, "Content-Length"))
        fail_msg("line %d: expected a chunked body without Content-Length (chunked %d, "
                 "Content-Length %s)",
                 line, resp->chunked,
                 http_response_header(resp, "Content-Length")
                     ? http_response_header(resp, "Content-Length")
                     : "none");
}
#define expect_streamed(resp) expect_streamed_at((resp), __LINE__)

/* The response has Content-Length n (and is not chunked). */
static void expect_length_at(const struct http_response *resp, size_t n, int line)
{
    char want[32];
    snprintf(want, sizeof want, "%zu", n);
    const char *cl = http_response_header(resp, "Content-Length");
    if (!cl || strcmp(cl, want) != 0 || resp->chunked)
        fail_msg("line %d: Content-Length %s (chunked %d), expected %s", line, cl ? cl : "none",
                 resp->chunked, want);
    assert_int_equal(resp->body_len, n);
}
#define expect_length(resp, n) expect_length_at((resp), (n), __LINE__)

/* X-Cache is what (HIT, MISS, PASS). */
#define expect_x_cache(resp, what) expect_header((resp), "X-Cache", (what))

/* The origin served exactly n requests for path (without query). */
static void expect_upstream_at(int i, const char *path, long n, int line)
{
    long got = harness_origin_count(i == 0 ? &h : &m, 0, path);
    if (got != n)
        fail_msg("line %d: origin served %ld request(s) for %s, expected %ld", line, got, path, n);
}
#define expect_upstream(path, n) expect_upstream_at(0, (path), (n), __LINE__)

/* Lines of the file at path containing a (and b, unless NULL). */
static int log_lines(const char *path, const char *a, const char *b)
{
    char *text = tmpdir_read_file(path, NULL);
    int n = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (strstr(line, a) && (!b || strstr(line, b)))
            n++;
        if (!nl)
            break;
        line = nl + 1;
    }
    free(text);
    return n;
}

/* "made the WHAT variant of ..." lines of log naming url (a piece of the
 * key: the test's path and its '?'). */
static int made_lines(const char *log, const char *what, const char *url)
{
    char needle[64];
    snprintf(needle, sizeof needle, "made the %s variant of ", what);
    return log_lines(log, needle, url);
}

static void expect_made_at(const char *what, const char *url, int n, int line)
{
    int got = made_lines(h.error_log, what, url);
    if (got != n)
        fail_msg("line %d: %d \"made the %s variant of ...%s\" line(s) in the error log, "
                 "expected %d",
                 line, got, what, url, n);
}
#define expect_made(what, url, n) expect_made_at((what), (url), (n), __LINE__)

/* The request head the group's origin last received for path (its
 * /__last), kept in last_head. */
static const char *origin_last(const char *path)
{
    char target[512];
    snprintf(target, sizeof target, "/__last?path=%s", path);
    struct http_response lr = {0};
    free(last_head);
    last_head = NULL;
    if (http_get(h.origin_port[0], target, &lr, (const char *)NULL) == CLIENT_OK &&
        lr.status == 200 && lr.body)
        last_head = strdup(lr.body);
    http_response_clear(&lr);
    if (!last_head)
        fail_msg("the origin has no last request for %s", path);
    return last_head;
}

/* How many fields named name the origin's last request for path had; the
 * first one's value goes to out. */
static int origin_field(const char *path, const char *name, char *out, size_t cap)
{
    const char *p = strstr(origin_last(path), "\r\n");
    size_t nlen = strlen(name);
    int count = 0;
    out[0] = '\0';
    while (p && p[2] != '\r' && p[2] != '\0') {
        const char *line = p + 2;
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            break;
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 &&
            line[nlen] == ':') {
            if (count++ == 0) {
                const char *v = line + nlen + 1;
                v += strspn(v, " \t");
                snprintf(out, cap, "%.*s", (int)(eol - v), v);
            }
        }
        p = eol;
    }
    return count;
}

/* The origin's last request for path had exactly one Accept-Encoding, ae
 * (or none when ae is NULL). */
static void expect_origin_ae_at(const char *path, const char *ae, int line)
{
    char v[256];
    int n = origin_field(path, "Accept-Encoding", v, sizeof v);
    if (ae == NULL && n != 0)
        fail_msg("line %d: the origin received Accept-Encoding: %s for %s, expected none", line, v,
                 path);
    if (ae != NULL && (n != 1 || strcmp(v, ae) != 0))
        fail_msg("line %d: the origin received %d Accept-Encoding field(s) for %s (first: \"%s\"),"
                 " expected one: \"%s\"\n--- its request:\n%s",
                 line, n, path, v, ae, last_head);
}
#define expect_origin_ae(path, ae) expect_origin_ae_at((path), (ae), __LINE__)

/* len pattern bytes, gzip-coded here (zlib, level 6) into gz; returns the
 * coded length. */
static size_t gzip_pattern(size_t len)
{
    char *plain = malloc(len);
    assert_non_null(plain);
    pattern_fill(plain, len, 0);
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len) + 32;
    free(gz);
    gz = malloc(cap);
    assert_non_null(gz);
    zs.next_in = (Bytef *)plain;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)gz;
    zs.avail_out = (uInt)cap;
    int rc = deflate(&zs, Z_FINISH);
    size_t n = zs.total_out;
    deflateEnd(&zs);
    free(plain);
    assert_int_equal(rc, Z_STREAM_END);
    return n;
}

/* ---- the group ------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    if (!harness_init(&h, "compress") || !harness_origin(&h, 0, NULL))
        return -1;
    return harness_tessera(&h,
                           "backend app { server 127.0.0.1:%d; keepalive 16; }\n"
                           "route /pass/ { backend app; }\n"
                           "route /cache/ { backend app; cache on; ttl 100s; }\n"
                           "route /ug/ { backend app; cache on; ttl 100s;\n"
                           "             compress { upstream_gzip on; } }\n"
                           "route /ugp/ { backend app; compress { upstream_gzip on; } }\n"
                           "route /ugs/ { backend app; cache on; ttl 100s; max_object_size 64k;\n"
                           "              compress { upstream_gzip on; } }\n"
                           "route /off/ { backend app; compress { off; } }\n"
                           "route default { backend app; }\n",
                           h.origin_port[0])
               ? 0
               : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    harness_free(&h);
    return 0;
}

/* After every test: what a failed assertion left behind. */
static int test_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < NRESP; i++)
        http_response_clear(&r[i]);
    client_free(&conn);
    for (int i = 0; i < 2; i++)
        decode_buf_free(&dec[i]);
    free(last_head);
    last_head = NULL;
    free(gz);
    gz = NULL;
    return 0;
}

/* ---- 0. the origin's gzip=1, which the upstream_gzip tests rely on -------- */

static void test_origin_gzips_only_for_gzip_clients(void **state)
{
    (void)state;
    const char *target = "/origin/gz?gzip=1&" HTML;
    get_at(h.origin_port[0], &r[0], target, "Accept-Encoding: br, gzip;q=0.5", NULL);
    expect_decoded(&r[0], "gzip", LEN);
    expect_length(&r[0], r[0].body_len);
    get_at(h.origin_port[0], &r[1], target, NULL);
    expect_decoded(&r[1], "identity", LEN);
    expect_length(&r[1], LEN);
    get_at(h.origin_port[0], &r[2], "/origin/gz?gzip=1&chunked=1&chunk=100&" HTML,
           "Accept-Encoding: gzip", NULL);
    expect_decoded(&r[2], "gzip", LEN);
    expect_streamed(&r[2]);
    /* Deterministic: the same body gives the same bytes. */
    get_at(h.origin_port[0], &r[3], target, "Accept-Encoding: gzip", NULL);
    assert_int_equal(r[3].body_len, r[0].body_len);
    assert_memory_equal(r[3].body, r[0].body, r[0].body_len);
}

/* ---- a. each coding, end to end ------------------------------------------- */

static const char *const codings[] = {"br", "zstd", "gzip"};

static void test_each_coding_on_a_pass_through_route(void **state)
{
    (void)state;
    for (size_t i = 0; i < 3; i++) {
        char target[128], ae[64], etag[32], path[32];
        snprintf(path, sizeof path, "/pass/a-%s", codings[i]);
        snprintf(target, sizeof target, "%s?%s&etag=%%22t1%%22", path, HTML);
        snprintf(ae, sizeof ae, "Accept-Encoding: %s", codings[i]);
        snprintf(etag, sizeof etag, "\"t1-%s\"", codings[i]);
        get(&r[0], target, ae, NULL);
        expect_decoded(&r[0], codings[i], LEN);
        expect_streamed(&r[0]);
        expect_vary_ae(&r[0]);
        expect_header(&r[0], "ETag", etag);
        assert_int_equal(http_response_header_count(&r[0], "ETag"), 1);
        assert_true(r[0].body_len < LEN); /* the pattern compresses well */
        expect_upstream(path, 1);
    }

    /* No Accept-Encoding: identity, as the origin sent it, and still Vary. */
    get(&r[1], "/pass/a-none?" HTML "&etag=%22t1%22", NULL);
    expect_decoded(&r[1], "identity", LEN);
    expect_length(&r[1], LEN);
    expect_vary_ae(&r[1]);
    expect_header(&r[1], "ETag", "\"t1\"");
}

static void test_negotiation_follows_q_values(void **state)
{
    (void)state;
    static const struct {
        const char *ae, *coding;
    } cases[] = {
        {"Accept-Encoding: gzip;q=1, br;q=0.5", "gzip"},
        {"Accept-Encoding: br;q=0, gzip", "gzip"},
        {"Accept-Encoding: identity", "identity"},
        {"Accept-Encoding: gzip, zstd, br", "br"}, /* equal q: br > zstd > gzip */
        {"Accept-Encoding: gzip, zstd", "zstd"},
        {"Accept-Encoding: GZIP", "gzip"},
        {"Accept-Encoding: x-gzip", "gzip"},
        {"Accept-Encoding: deflate, compress", "identity"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char target[96];
        snprintf(target, sizeof target, "/pass/neg%zu?%s", i, HTML);
        get(&r[0], target, cases[i].ae, NULL);
        print_message("%s -> %s\n", cases[i].ae,
                      http_response_header(&r[0], "Content-Encoding")
                          ? http_response_header(&r[0], "Content-Encoding")
                          : "identity");
        expect_decoded(&r[0], cases[i].coding, LEN);
        expect_vary_ae(&r[0]);
        if (strcmp(cases[i].coding, "identity") == 0)
            expect_length(&r[0], LEN);
        else
            expect_streamed(&r[0]);
    }
}

/* Several Accept-Encoding lines are one list (RFC 9110 5.3). */
static void test_accept_encoding_on_several_lines(void **state)
{
    (void)state;
    get(&r[0], "/pass/lines?" HTML, "Accept-Encoding: identity;q=0.5", "Accept-Encoding: br", NULL);
    expect_decoded(&r[0], "br", LEN);
    get(&r[1], "/pass/lines?" HTML, "Accept-Encoding: br;q=0", "Accept-Encoding: gzip", NULL);
    expect_decoded(&r[1], "gzip", LEN);
}

static void test_each_coding_on_a_cached_route(void **state)
{
    (void)state;
    for (size_t i = 0; i < 3; i++) {
        char target[128], ae[64], etag[32], path[32], url[40];
        snprintf(path, sizeof path, "/cache/a-%s", codings[i]);
        snprintf(url, sizeof url, "%s?", path);
        snprintf(target, sizeof target, "%s?%s&etag=%%22t2%%22", path, HTML);
        snprintf(ae, sizeof ae, "Accept-Encoding: %s", codings[i]);
        snprintf(etag, sizeof etag, "\"t2-%s\"", codings[i]);

        /* The miss streams the coded body (and stores the identity one). */
        get(&r[0], target, ae, NULL);
        expect_x_cache(&r[0], "MISS");
        expect_decoded(&r[0], codings[i], LEN);
        expect_streamed(&r[0]);
        expect_vary_ae(&r[0]);
        expect_header(&r[0], "ETag", etag);
        expect_made(codings[i], url, 0);

        /* The first hit makes the variant; it goes out with a length. */
        get(&r[1], target, ae, NULL);
        expect_x_cache(&r[1], "HIT");
        expect_decoded(&r[1], codings[i], LEN);
        expect_length(&r[1], r[1].body_len);
        expect_vary_ae(&r[1]);
        expect_header(&r[1], "ETag", etag);
        assert_int_equal(http_response_header_count(&r[1], "ETag"), 1);
        expect_made(codings[i], url, 1);

        /* The identity object is still there for a client without. */
        get(&r[2], target, NULL);
        expect_x_cache(&r[2], "HIT");
        expect_decoded(&r[2], "identity", LEN);
        expect_length(&r[2], LEN);
        expect_vary_ae(&r[2]);
        expect_header(&r[2], "ETag", "\"t2\"");

        expect_upstream(path, 1);
        expect_made(codings[i], url, 1);
        assert_int_equal(log_lines(h.error_log, "made the ", url), 1);
    }
}

/* ---- b. left alone ---------------------------------------------------------- */

#define ALL_CODINGS "Accept-Encoding: br, zstd, gzip"

static void test_no_transform_and_coded_bodies_pass_unchanged(void **state)
{
    (void)state;
    get(&r[0], "/pass/nt?" HTML "&hdr=Cache-Control:no-transform", ALL_CODINGS, NULL);
    expect_decoded(&r[0], "identity", LEN);
    expect_length(&r[0], LEN);
    expect_no_vary_ae(&r[0]);
    expect_header(&r[0], "Cache-Control", "no-transform");

    /* Coded by the application already: bytes, length and coding as sent. */
    get(&r[1], "/pass/defl?" HTML "&hdr=Content-Encoding:deflate", ALL_CODINGS, NULL);
    expect_status(&r[1], 200);
    expect_coding(&r[1], "deflate");
    expect_length(&r[1], LEN);
    expect_pattern_body(&r[1], LEN, 0);
    expect_no_vary_ae(&r[1]);

    /* The same on a cached route, miss and hit. */
    for (int i = 2; i < 4; i++) {
        get(&r[i], "/cache/defl?" HTML "&hdr=Content-Encoding:deflate", ALL_CODINGS, NULL);
        expect_x_cache(&r[i], i == 2 ? "MISS" : "HIT");
        expect_coding(&r[i], "deflate");
        expect_length(&r[i], LEN);
        expect_pattern_body(&r[i], LEN, 0);
        expect_no_vary_ae(&r[i]);
    }
    expect_upstream("/cache/defl", 1);
    assert_int_equal(log_lines(h.error_log, "made the ", "/cache/defl?"), 0);
}

/* A request that says no-transform gets the body as the application made
 * it, on a pass-through route and from the cache (no variant made). */
static void test_a_no_transform_request_is_not_coded(void **state)
{
    (void)state;
    get(&r[0], "/pass/ntq?" HTML, "Accept-Encoding: br", "Cache-Control: no-transform", NULL);
    expect_decoded(&r[0], "identity", LEN);
    get(&r[1], "/cache/ntq?" HTML, "Accept-Encoding: br", "Cache-Control: no-transform", NULL);
    expect_decoded(&r[1], "identity", LEN);
    get(&r[2], "/cache/ntq?" HTML, "Accept-Encoding: br", "Cache-Control: no-transform", NULL);
    expect_x_cache(&r[2], "HIT");
    expect_decoded(&r[2], "identity", LEN);
    expect_vary_ae(&r[2]);
    expect_made("br", "/cache/ntq?", 0);
}

/* A coded body drops the digests of the upstream's bytes (RFC 9530):
 * they would not hold; an uncoded one keeps them. */
static void test_coded_bodies_drop_the_digests(void **state)
{
    (void)state;
    const char *target = "/pass/dig?" HTML "&hdr=Content-Digest:sha-256%3D%3AAAA%3D%3A"
                         "&hdr=Repr-Digest:sha-256%3D%3ABBB%3D%3A";
    get(&r[0], target, "Accept-Encoding: br", NULL);
    expect_decoded(&r[0], "br", LEN);
    assert_null(http_response_header(&r[0], "Content-Digest"));
    assert_null(http_response_header(&r[0], "Repr-Digest"));
    get(&r[1], target, NULL);
    expect_decoded(&r[1], "identity", LEN);
    expect_header(&r[1], "Content-Digest", "sha-256=:AAA=:");
    /* and a variant made from a stored object */
    const char *cached = "/cache/dig?" HTML "&hdr=Content-Digest:sha-256%3D%3AAAA%3D%3A";
    get(&r[2], cached, NULL);
    get(&r[3], cached, "Accept-Encoding: gzip", NULL);
    expect_x_cache(&r[3], "HIT");
    expect_decoded(&r[3], "gzip", LEN);
    assert_null(http_response_header(&r[3], "Content-Digest"));
}

static void test_short_bodies_and_unlisted_types_pass_unchanged(void **state)
{
    (void)state;
    /* Under min_length (1k by default). */
    get(&r[0], "/pass/short?ctype=text/html&len=100", ALL_CODINGS, NULL);
    expect_decoded(&r[0], "identity", 100);
    expect_length(&r[0], 100);

    /* Just at min_length: compressed. */
    get(&r[1], "/pass/short1k?ctype=text/html&len=1024", ALL_CODINGS, NULL);
    expect_decoded(&r[1], "br", 1024);

    /* A type not in the list, and no type at all. */
    get(&r[2], "/pass/png?ctype=image/png&len=5000", ALL_CODINGS, NULL);
    expect_decoded(&r[2], "identity", LEN);
    expect_length(&r[2], LEN);
    expect_no_vary_ae(&r[2]);
    get(&r[3], "/pass/notype?ctype=&len=5000", ALL_CODINGS, NULL);
    expect_decoded(&r[3], "identity", LEN);
    expect_length(&r[3], LEN);
    expect_no_vary_ae(&r[3]);

    /* A listed type with parameters, another case: compressed. */
    get(&r[4], "/pass/charset?ctype=Text/HTML;%20charset=utf-8&len=5000", ALL_CODINGS, NULL);
    expect_decoded(&r[4], "br", LEN);

    /* On a cached route: the hit leaves the short body alone too. */
    for (int i = 0; i < 2; i++) {
        get(&r[5], "/cache/short?ctype=text/html&len=100", ALL_CODINGS, NULL);
        expect_x_cache(&r[5], i == 0 ? "MISS" : "HIT");
        expect_decoded(&r[5], "identity", 100);
        expect_length(&r[5], 100);
    }
    expect_upstream("/cache/short", 1);
    assert_int_equal(log_lines(h.error_log, "made the ", "/cache/short?"), 0);
}

static void test_head_and_204_are_not_coded(void **state)
{
    (void)state;
    head(&r[0], "/pass/head?" HTML, ALL_CODINGS, NULL);
    expect_status(&r[0], 200);
    expect_coding(&r[0], "identity");
    assert_int_equal(r[0].body_len, 0);
    expect_vary_ae(&r[0]); /* a GET of it would be coded */

    get(&r[1], "/pass/nc?status=204&ctype=text/html", ALL_CODINGS, NULL);
    expect_status(&r[1], 204);
    expect_coding(&r[1], "identity");
    assert_int_equal(r[1].body_len, 0);
    expect_no_header(&r[1], "Transfer-Encoding");

    /* HEAD on a cached object with a br variant: no coding either. */
    get(&r[2], "/cache/head?" HTML, NULL);
    expect_x_cache(&r[2], "MISS");
    get(&r[3], "/cache/head?" HTML, "Accept-Encoding: br", NULL);
    expect_x_cache(&r[3], "HIT");
    expect_decoded(&r[3], "br", LEN);
    head(&r[4], "/cache/head?" HTML, "Accept-Encoding: br", NULL);
    expect_status(&r[4], 200);
    expect_x_cache(&r[4], "HIT");
    expect_coding(&r[4], "identity");
    assert_int_equal(r[4].body_len, 0);
    expect_upstream("/cache/head", 1);
    expect_made("br", "/cache/head?", 1);
}

static void test_a_range_on_a_cached_object_is_an_identity_slice(void **state)
{
    (void)state;
    const char *target = "/cache/range?" HTML;
    get(&r[0], target, NULL);
    expect_x_cache(&r[0], "MISS");
    /* A br variant exists already: the range still comes from identity. */
    get(&r[1], target, "Accept-Encoding: br", NULL);
    expect_x_cache(&r[1], "HIT");
    expect_decoded(&r[1], "br", LEN);

    get(&r[2], target, "Accept-Encoding: br", "Range: bytes=100-199", NULL);
    expect_status(&r[2], 206);
    expect_x_cache(&r[2], "HIT");
    expect_coding(&r[2], "identity");
    expect_header(&r[2], "Content-Range", "bytes 100-199/5000");
    expect_length(&r[2], 100);
    expect_pattern_body(&r[2], 100, 100);

    get(&r[3], target, "Accept-Encoding: gzip", "Range: bytes=4990-", NULL);
    expect_status(&r[3], 206);
    expect_coding(&r[3], "identity");
    expect_header(&r[3], "Content-Range", "bytes 4990-4999/5000");
    expect_pattern_body(&r[3], 10, 4990);

    expect_upstream("/cache/range", 1);
    expect_made("br", "/cache/range?", 1);
    expect_made("gzip", "/cache/range?", 0);
}

/* ---- c. variants made once -------------------------------------------------- */

static void test_a_variant_is_made_once(void **state)
{
    (void)state;
    const char *target = "/cache/once?ctype=text/html&len=20000";
    size_t first_len = 0;
    for (int i = 0; i < 20; i++) {
        get(&r[0], target, "Accept-Encoding: br", NULL);
        expect_decoded(&r[0], "br", 20000);
        expect_vary_ae(&r[0]);
        if (i == 0) {
            expect_x_cache(&r[0], "MISS");
            expect_streamed(&r[0]);
            continue;
        }
        expect_x_cache(&r[0], "HIT");
        expect_length(&r[0], r[0].body_len);
        if (i == 1) {
            first_len = r[0].body_len;
            http_response_clear(&r[1]);
            r[1] = r[0]; /* keep the first variant hit */
            memset(&r[0], 0, sizeof r[0]);
        } else {
            /* the very same bytes every time */
            assert_int_equal(r[0].body_len, first_len);
            assert_memory_equal(r[0].body, r[1].body, first_len);
        }
    }
    expect_upstream("/cache/once", 1);
    expect_made("br", "/cache/once?", 1);

    for (int i = 0; i < 5; i++) {
        get(&r[2], target, "Accept-Encoding: gzip", NULL);
        expect_x_cache(&r[2], "HIT");
        expect_decoded(&r[2], "gzip", 20000);
        expect_length(&r[2], r[2].body_len);
    }
    expect_made("gzip", "/cache/once?", 1);
    expect_made("br", "/cache/once?", 1);
    expect_upstream("/cache/once", 1);
    assert_int_equal(log_lines(h.error_log, "made the ", "/cache/once?"), 2);
    assert_int_equal(log_lines(h.error_log, "cannot make the ", "/cache/once?"), 0);
}

/* ---- d. conditional requests on a variant ----------------------------------- */

static void test_a_conditional_request_on_a_variant(void **state)
{
    (void)state;
    const char *target = "/cache/cond?" HTML "&etag=%22v1%22";
    get(&r[0], target, "Accept-Encoding: br", NULL);
    expect_x_cache(&r[0], "MISS");
    get(&r[1], target, "Accept-Encoding: br", NULL);
    expect_x_cache(&r[1], "HIT");
    expect_decoded(&r[1], "br", LEN);
    const char *tag = http_response_header(&r[1], "ETag");
    assert_non_null(tag);
    assert_string_equal(tag, "\"v1-br\"");

    /* The variant's own tag: 304 from the cache, with that tag. */
    get(&r[2], target, "Accept-Encoding: br", "If-None-Match: \"v1-br\"", NULL);
    expect_status(&r[2], 304);
    expect_x_cache(&r[2], "HIT");
    expect_header(&r[2], "ETag", "\"v1-br\"");
    assert_int_equal(r[2].body_len, 0);

    /* The identity tag names another representation: 200 br. */
    get(&r[3], target, "Accept-Encoding: br", "If-None-Match: \"v1\"", NULL);
    expect_x_cache(&r[3], "HIT");
    expect_decoded(&r[3], "br", LEN);
    expect_header(&r[3], "ETag", "\"v1-br\"");

    /* ...and the identity one gets its 304 for the identity tag. */
    get(&r[4], target, "If-None-Match: \"v1\"", NULL);
    expect_status(&r[4], 304);
    expect_header(&r[4], "ETag", "\"v1\"");

    expect_upstream("/cache/cond", 1);
    expect_made("br", "/cache/cond?", 1);
}

/* On a pass-through route the application sees its own tags: a client
 * that got "v1-gzip" from us sends it back, the application receives "v1"
 * (and so can answer 304); tags that are not ours go as they are. */
static void test_coded_etags_go_upstream_without_their_suffix(void **state)
{
    (void)state;
    const char *target = "/pass/tags?" HTML "&etag=%22v1%22";
    get(&r[0], target, "Accept-Encoding: gzip", NULL);
    expect_header(&r[0], "ETag", "\"v1-gzip\"");
    get(&r[1], target, "Accept-Encoding: gzip", "If-None-Match: \"v1-gzip\", W/\"x-br\"", NULL);
    expect_status(&r[1], 304);
    const char *head = origin_last("/pass/tags");
    if (!strstr(head, "If-None-Match: \"v1\", W/\"x\"\r\n") || strstr(head, "v1-gzip"))
        fail_msg("the origin got: %s", head);
    get(&r[2], target, "If-Match: \"other\"", NULL);
    head = origin_last("/pass/tags");
    if (!strstr(head, "If-Match: \"other\"\r\n"))
        fail_msg("the origin got: %s", head);

    /* A 200 the proxy turns into a 304 still says what it varies on. */
    const char *plain = "/pass/tags304?" HTML "&hdr=ETag:%22v9%22";
    get(&r[3], plain, "If-None-Match: \"v9\"", NULL);
    expect_status(&r[3], 304);
    expect_vary_ae(&r[3]);
}

/* ---- e. two nodes sharing memcached ------------------------------------------ */

/* memcached's curr_items (the items it holds), or -1. */
static long mc_items(int port)
{
    int fd = proc_memcached_connect(port);
    if (fd < 0)
        return -1;
    char buf[8192];
    size_t have = 0;
    long items = -1;
    if (send(fd, "stats\r\n", 7, MSG_NOSIGNAL) == 7) {
        while (have < sizeof buf - 1) {
            ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
            if (n <= 0)
                break;
            have += (size_t)n;
            buf[have] = '\0';
            if (strstr(buf, "END\r\n"))
                break;
        }
        buf[have] = '\0';
        const char *s = strstr(buf, "STAT curr_items ");
        if (s)
            items = strtol(s + strlen("STAT curr_items "), NULL, 10);
    }
    close(fd);
    return items;
}

/* Wait until memcached holds at least n items (tessera writes in the
 * background); returns how many it holds. */
static long wait_items(long n, const char *what)
{
    long until = now_ms() + ITEM_WAIT_MS;
    for (;;) {
        long got = mc_items(mcd->port);
        if (got >= n)
            return got;
        if (now_ms() > until)
            fail_msg("%s never reached memcached (%ld item(s) after %d ms, expected %ld)", what,
                     got, ITEM_WAIT_MS, n);
        sleep_ms(20);
    }
}

static int mc_setup(void **state)
{
    (void)state;
    if (!harness_init(&m, "compress-mc") || !harness_origin(&m, 0, NULL))
        return -1;
    mcd = proc_start_memcached(m.td, "memcached");
    return mcd ? 0 : -1;
}

static int mc_teardown(void **state)
{
    for (int i = 0; i < 2; i++)
        proc_free(&node[i]);
    proc_free(&mcd);
    harness_free(&m);
    return test_teardown(state);
}

static void start_node(int i)
{
    char name[16], conf[32], log[32];
    snprintf(name, sizeof name, "node%c", 'a' + i);
    snprintf(conf, sizeof conf, "%s.conf", name);
    snprintf(log, sizeof log, "%s.log", name);
    node_log[i] = tmpdir_file(m.td, log);
    const char *path = tmpdir_write(m.td, conf,
                                    "listen 127.0.0.1:0;\nworkers 2;\n"
                                    "log { error %s; level info; }\n"
                                    "backend app { server 127.0.0.1:%d; }\n"
                                    "memcached { server 127.0.0.1:%d; timeout 500ms; }\n"
                                    "route default { backend app; cache on; ttl 100s; }\n",
                                    node_log[i], m.origin_port[0], mcd->port);
    assert_non_null(path);
    node[i] = proc_start_tessera(m.td, name, path, node_log[i], (const char *)NULL);
    if (!node[i])
        fail_msg("tessera %s did not start", name);
}

static void test_variants_are_shared_through_memcached(void **state)
{
    (void)state;
    const char *target = "/mc/page?ctype=text/html&len=20000&etag=%22m1%22";
    start_node(0);
    start_node(1);
    assert_int_equal(mc_items(mcd->port), 0);

    /* Node A: the miss stores the identity object (memory and memcached). */
    get_at(node[0]->port, &r[0], target, "Host: " HOST, "Accept-Encoding: br", NULL);
    expect_x_cache(&r[0], "MISS");
    expect_decoded(&r[0], "br", 20000);
    long identity = wait_items(1, "the identity object");

    /* Node A's hit makes the br variant, stored beside it. */
    get_at(node[0]->port, &r[1], target, "Host: " HOST, "Accept-Encoding: br", NULL);
    expect_x_cache(&r[1], "HIT");
    expect_decoded(&r[1], "br", 20000);
    expect_header(&r[1], "ETag", "\"m1-br\"");
    assert_int_equal(made_lines(node_log[0], "br", "/mc/page?"), 1);
    wait_items(identity + 1, "the br variant");

    /* Node B: identity and variant both from memcached; nothing made. */
    get_at(node[1]->port, &r[2], target, "Host: " HOST, "Accept-Encoding: br", NULL);
    expect_x_cache(&r[2], "HIT");
    expect_decoded(&r[2], "br", 20000);
    expect_length(&r[2], r[1].body_len);
    assert_memory_equal(r[2].body, r[1].body, r[1].body_len);
    expect_header(&r[2], "ETag", "\"m1-br\"");
    expect_vary_ae(&r[2]);
    if (log_lines(node_log[1], "made the ", NULL) != 0)
        fail_msg("tessera b made a variant it could have read from memcached");
    expect_upstream_at(1, "/mc/page", 1, __LINE__);

    /* B again (memory now), and B without Accept-Encoding: identity. */
    get_at(node[1]->port, &r[3], target, "Host: " HOST, "Accept-Encoding: br", NULL);
    expect_x_cache(&r[3], "HIT");
    expect_decoded(&r[3], "br", 20000);
    get_at(node[1]->port, &r[4], target, "Host: " HOST, NULL);
    expect_x_cache(&r[4], "HIT");
    expect_decoded(&r[4], "identity", 20000);
    expect_header(&r[4], "ETag", "\"m1\"");
    assert_int_equal(log_lines(node_log[1], "made the ", NULL), 0);
    assert_int_equal(made_lines(node_log[0], "br", "/mc/page?"), 1);
    expect_upstream_at(1, "/mc/page", 1, __LINE__);
}

/* ---- f. streaming ------------------------------------------------------------ */

/* De-chunk what arrived of a chunked body: the data of the complete and
 * partial chunks go to out (*out_len bytes); *done once the last chunk and
 * the empty trailer are in.  False on bad framing. */
static bool dechunk(const char *p, size_t n, char *out, size_t *out_len, bool *done)
{
    size_t pos = 0;
    *out_len = 0;
    *done = false;
    while (pos < n) {
        const char *eol = memmem(p + pos, n - pos, "\r\n", 2);
        if (!eol)
            return true;
        char *end = NULL;
        unsigned long size = strtoul(p + pos, &end, 16);
        if (end == p + pos || (end != eol && *end != ';'))
            return false;
        size_t start = (size_t)(eol + 2 - p);
        if (size == 0) {
            *done = n >= start + 2 && memcmp(p + start, "\r\n", 2) == 0;
            return true;
        }
        size_t take = n - start < size ? n - start : size;
        memcpy(out + *out_len, p + start, take);
        *out_len += take;
        if (take < size || n < start + size + 2)
            return true;
        if (memcmp(p + start + size, "\r\n", 2) != 0)
            return false;
        pos = start + size + 2;
    }
    return true;
}

/* The value of field name in a raw head, or NULL; one static buffer. */
static const char *raw_field(const char *head, const char *name)
{
    static char value[256];
    size_t nlen = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r';) {
        const char *line = p + 2, *eol = strstr(line, "\r\n");
        if (!eol)
            break;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            v += strspn(v, " \t");
            snprintf(value, sizeof value, "%.*s", (int)(eol - v), v);
            return value;
        }
        p = eol;
    }
    return NULL;
}

static void test_a_coded_stream_keeps_the_upstream_pace(void **state)
{
    (void)state;
    /* 5 chunks of 1000 bytes, 400 ms apart: the upstream takes 1.6 s. */
    const char *target = "/pass/drip?chunked=1&chunk=1000&drip=400&ctype=text/html&len=5000";
    static char raw[65536], coded[65536], head_copy[4096];
    size_t n = 0, head_len = 0, coded_len = 0, first_prefix = 0;
    long t_head = -1, t_prefix = -1;
    bool done = false;

    conn = client_connect(h.port, READ_MS);
    assert_non_null(conn);
    long t0 = now_ms();
    assert_int_equal(client_send_request(conn, "GET", target, "Accept-Encoding: gzip", NULL), 0);
    while (!done) {
        if (n >= sizeof raw - 1)
            fail_msg("more than %zu bytes for a 5000-byte body", sizeof raw);
        ssize_t got = client_read_raw(conn, raw + n, sizeof raw - 1 - n, READ_MS);
        if (got <= 0)
            fail_msg("the stream stopped after %zu bytes (rc %zd)", n, got);
        long t = now_ms();
        n += (size_t)got;
        raw[n] = '\0';
        if (t_head < 0) {
            char *end = strstr(raw, "\r\n\r\n");
            if (!end)
                continue;
            t_head = t;
            head_len = (size_t)(end + 4 - raw);
            snprintf(head_copy, sizeof head_copy, "%.*s", (int)head_len, raw);
        }
        if (!dechunk(raw + head_len, n - head_len, coded, &coded_len, &done))
            fail_msg("bad chunked framing: %s", raw + head_len);
        if (t_prefix < 0 && coded_len > 0) {
            if (!decode_prefix("gzip", coded, coded_len, &dec[0]))
                fail_msg("the first %zu coded bytes do not inflate", coded_len);
            if (dec[0].len >= 1000) {
                t_prefix = t;
                first_prefix = dec[0].len;
                if (dec[0].len > 5000 || pattern_mismatch(dec[0].data, dec[0].len, 0) >= 0)
                    fail_msg("the first %zu inflated bytes are not the body's start", dec[0].len);
            }
        }
    }
    long t_end = now_ms();
    print_message("head after %ld ms, first 1000 bytes (%zu inflated) %ld ms after the head, "
                  "end %ld ms after the head\n",
                  t_head - t0, first_prefix, t_prefix - t_head, t_end - t_head);

    assert_true(strncmp(head_copy, "HTTP/1.1 200 ", 13) == 0);
    const char *v = raw_field(head_copy, "Content-Encoding");
    assert_non_null(v);
    assert_string_equal(v, "gzip");
    v = raw_field(head_copy, "Transfer-Encoding");
    assert_non_null(v);
    assert_string_equal(v, "chunked");
    assert_null(raw_field(head_copy, "Content-Length"));

    /* The first upstream piece was out, whole, long before the last. */
    if (t_prefix < 0 || t_prefix - t_head > 300)
        fail_msg("the first upstream piece reached the client %ld ms after the head (max 300)",
                 t_prefix - t_head);
    assert_true(first_prefix < 5000);
    if (t_end - t_head < 1500)
        fail_msg("the whole body took %ld ms: the origin's drip was not honoured?", t_end - t_head);
    if (t_end - t_prefix < 1000)
        fail_msg("only %ld ms between the first piece and the end", t_end - t_prefix);

    if (!decode_body("gzip", coded, coded_len, &dec[1]))
        fail_msg("the whole %zu-byte body does not inflate", coded_len);
    assert_int_equal(dec[1].len, 5000);
    assert_int_equal(pattern_mismatch(dec[1].data, dec[1].len, 0), -1);
    client_free(&conn);
}

/* ---- g. upstream_gzip -------------------------------------------------------- */

static void test_upstream_gzip_on_a_cached_route(void **state)
{
    (void)state;
    const char *target = "/ug/a?gzip=1&" HTML;

    /* Miss, client without Accept-Encoding: the upstream is asked for gzip,
     * the client gets the body inflated as it streams. */
    get(&r[0], target, NULL);
    expect_x_cache(&r[0], "MISS");
    expect_decoded(&r[0], "identity", LEN);
    expect_streamed(&r[0]);
    expect_vary_ae(&r[0]);
    expect_origin_ae("/ug/a", "gzip");
    expect_made("inflated", "/ug/a?", 0);

    /* Hit without: the inflated variant, made once. */
    for (int i = 0; i < 3; i++) {
        get(&r[1], target, NULL);
        expect_x_cache(&r[1], "HIT");
        expect_decoded(&r[1], "identity", LEN);
        expect_length(&r[1], LEN);
        expect_vary_ae(&r[1]);
    }
    expect_made("inflated", "/ug/a?", 1);

    /* Hit with gzip: the stored bytes as they are. */
    get(&r[2], target, "Accept-Encoding: gzip", NULL);
    expect_x_cache(&r[2], "HIT");
    expect_decoded(&r[2], "gzip", LEN);
    expect_length(&r[2], r[2].body_len);
    expect_vary_ae(&r[2]);
    /* br alone: not gzip, so identity (the inflated variant). */
    get(&r[3], target, "Accept-Encoding: br", NULL);
    expect_x_cache(&r[3], "HIT");
    expect_decoded(&r[3], "identity", LEN);
    expect_upstream("/ug/a", 1);
    assert_int_equal(log_lines(h.error_log, "made the ", "/ug/a?"), 1);

    /* A miss for a br client: the upstream still gets gzip only. */
    get(&r[4], "/ug/b?gzip=1&" HTML, "Accept-Encoding: br", NULL);
    expect_x_cache(&r[4], "MISS");
    expect_decoded(&r[4], "identity", LEN);
    expect_origin_ae("/ug/b", "gzip");
    /* A miss for a gzip client: the gzip body streams through. */
    get(&r[5], "/ug/c?gzip=1&" HTML, "Accept-Encoding: gzip, br", NULL);
    expect_x_cache(&r[5], "MISS");
    expect_decoded(&r[5], "gzip", LEN);
    expect_origin_ae("/ug/c", "gzip");

    /* The bytes served on the hit are the origin's, byte for byte. */
    get_at(h.origin_port[0], &r[1], target, "Accept-Encoding: gzip", NULL);
    expect_coding(&r[1], "gzip");
    assert_int_equal(r[2].body_len, r[1].body_len);
    assert_memory_equal(r[2].body, r[1].body, r[1].body_len);
    assert_int_equal(r[5].body_len, r[1].body_len);
    assert_memory_equal(r[5].body, r[1].body, r[1].body_len);
}

static void test_upstream_gzip_on_a_pass_through_route(void **state)
{
    (void)state;
    get(&r[0], "/ugp/a?gzip=1&" HTML, NULL);
    expect_decoded(&r[0], "identity", LEN);
    expect_streamed(&r[0]);
    expect_origin_ae("/ugp/a", "gzip");

    get(&r[1], "/ugp/b?gzip=1&" HTML, "Accept-Encoding: gzip", NULL);
    expect_decoded(&r[1], "gzip", LEN);
    expect_origin_ae("/ugp/b", "gzip");

    get(&r[2], "/ugp/c?gzip=1&chunked=1&chunk=700&" HTML, "Accept-Encoding: zstd", NULL);
    expect_decoded(&r[2], "identity", LEN);
    expect_origin_ae("/ugp/c", "gzip");

    /* An upstream that answers identity anyway is compressed as usual. */
    get(&r[3], "/ugp/d?" HTML, "Accept-Encoding: br", NULL);
    expect_decoded(&r[3], "br", LEN);
    expect_origin_ae("/ugp/d", "gzip");
}

/* A body that inflates a thousandfold does not flood memory: with clients
 * that do not read, tessera inflates only until each one's output buffer is
 * full, then stops reading the upstream; every body still arrives whole. */
static void test_inflating_for_slow_readers_holds_memory(void **state)
{
    (void)state;
    enum { N = 4 };
    const uint64_t len = 32u << 20; /* the a..z pattern: about 300x in gzip */
    char target[128];
    snprintf(target, sizeof target, "/ugp/big?gzip=1&len=%llu", (unsigned long long)len);
    struct client *c[N];
    long rss0 = proc_rss_kb(h.tessera->pid);
    assert_true(rss0 > 0);
    for (int i = 0; i < N; i++) {
        c[i] = client_connect(h.port, 5000);
        assert_non_null(c[i]);
        assert_int_equal(client_send_request(c[i], "GET", target, NULL), 0);
    }
    sleep_ms(2000); /* the origin gzips 32 MiB per request; nobody reads */
    long rss1 = proc_rss_kb(h.tessera->pid);
    print_message("      tessera RSS %ld kB before, %ld kB with %d stalled readers\n", rss0, rss1,
                  N);
    if (rss1 - rss0 > 16 * 1024)
        fail_msg("RSS grew by %ld kB for %d stalled readers", rss1 - rss0, N);
    for (int i = 0; i < N; i++) {
        struct http_response big = {0};
        assert_int_equal(client_read_response(c[i], 0, &big, 20000), CLIENT_OK);
        assert_int_equal(big.status, 200);
        assert_int_equal(big.body_len, len);
        for (uint64_t k = 0; k < len; k += 1048573)
            if (big.body[k] != 'a' + (char)(k % 26))
                fail_msg("byte %llu is %c", (unsigned long long)k, big.body[k]);
        http_response_clear(&big);
        client_free(&c[i]);
    }
}

/* A stored gzip body whose inflated form is too large to store as a
 * variant is inflated on the way for each client that does not take gzip
 * (and still served as stored to those that do). */
static void test_an_object_too_large_inflated_is_inflated_on_each_hit(void **state)
{
    (void)state;
    const char *target = "/ugs/big?gzip=1&len=200000&ctype=text/html";
    for (int i = 0; i < 3; i++) {
        get(&r[i], target, NULL);
        expect_status(&r[i], 200);
        expect_x_cache(&r[i], i == 0 ? "MISS" : "HIT");
        assert_null(http_response_header(&r[i], "Content-Encoding"));
        assert_int_equal(r[i].body_len, 200000);
        for (size_t k = 0; k < 200000; k += 9973)
            assert_int_equal(r[i].body[k], 'a' + (char)(k % 26));
    }
    get(&r[3], target, "Accept-Encoding: gzip", NULL);
    expect_x_cache(&r[3], "HIT");
    expect_decoded(&r[3], "gzip", 200000);
    expect_upstream("/ugs/big", 1);
}

static void test_without_upstream_gzip_the_upstream_gets_no_accept_encoding(void **state)
{
    (void)state;
    get(&r[0], "/pass/ugoff?gzip=1&" HTML, "Accept-Encoding: gzip, br", NULL);
    expect_origin_ae("/pass/ugoff", NULL);
    expect_decoded(&r[0], "br", LEN);

    get(&r[1], "/cache/ugoff?gzip=1&" HTML, "Accept-Encoding: gzip", NULL);
    expect_x_cache(&r[1], "MISS");
    expect_origin_ae("/cache/ugoff", NULL);
    expect_decoded(&r[1], "gzip", LEN);
}

/* ---- h. request bodies -------------------------------------------------------- */

static void expect_echoed_body(const struct http_response *resp, const char *body, size_t len)
{
    expect_status(resp, 200);
    expect_coding(resp, "identity");
    const char *end = resp->body ? memmem(resp->body, resp->body_len, "\r\n\r\n", 4) : NULL;
    assert_non_null(end);
    size_t head_len = (size_t)(end + 4 - resp->body);
    if (resp->body_len - head_len != len || memcmp(end + 4, body, len) != 0)
        fail_msg("the origin received a %zu-byte body, not the %zu bytes sent",
                 resp->body_len - head_len, len);
    char want[32];
    snprintf(want, sizeof want, "%zu", len);
    expect_header(resp, "X-Origin-Body-Length", want);
    if (!memmem(resp->body, head_len, "\r\nContent-Encoding: gzip\r\n", 26))
        fail_msg("the request's Content-Encoding did not reach the origin:\n%.*s", (int)head_len,
                 resp->body);
}

static void test_request_bodies_are_never_decoded(void **state)
{
    (void)state;
    size_t len = gzip_pattern(3000);
    const char *headers[] = {"Content-Encoding: gzip", "Content-Type: text/plain", NULL};
    request_v(h.port, &r[0], "POST", "/pass/echo?echo=1", headers, gz, len);
    expect_echoed_body(&r[0], gz, len);
    request_v(h.port, &r[1], "POST", "/ugp/echo?echo=1", headers, gz, len);
    expect_echoed_body(&r[1], gz, len);
    request_v(h.port, &r[2], "POST", "/cache/echo?echo=1", headers, gz, len);
    expect_echoed_body(&r[2], gz, len);
}

/* ---- i. compress { off; } -------------------------------------------------------- */

static void test_compress_off_leaves_everything_alone(void **state)
{
    (void)state;
    get(&r[0], "/off/a?" HTML, "Accept-Encoding: br", NULL);
    expect_decoded(&r[0], "identity", LEN);
    expect_length(&r[0], LEN);
    expect_no_vary_ae(&r[0]);
    expect_origin_ae("/off/a", "br");

    get(&r[1], "/off/b?" HTML, "Accept-Encoding: gzip;q=0.8, br;q=0.2", NULL);
    expect_decoded(&r[1], "identity", LEN);
    expect_origin_ae("/off/b", "gzip;q=0.8, br;q=0.2");

    /* The application's gzip goes through as it is, whoever asks. */
    get(&r[2], "/off/c?gzip=1&" HTML, "Accept-Encoding: gzip", NULL);
    expect_decoded(&r[2], "gzip", LEN);
    expect_no_vary_ae(&r[2]);
    get(&r[3], "/off/d?" HTML, NULL);
    expect_decoded(&r[3], "identity", LEN);
    expect_no_vary_ae(&r[3]);
    expect_origin_ae("/off/d", NULL);
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, test_teardown)
    const struct CMUnitTest tests[] = {
        T(test_origin_gzips_only_for_gzip_clients),
        T(test_each_coding_on_a_pass_through_route),
        T(test_negotiation_follows_q_values),
        T(test_accept_encoding_on_several_lines),
        T(test_each_coding_on_a_cached_route),
        T(test_no_transform_and_coded_bodies_pass_unchanged),
        T(test_short_bodies_and_unlisted_types_pass_unchanged),
        T(test_coded_bodies_drop_the_digests),
        T(test_a_no_transform_request_is_not_coded),
        T(test_head_and_204_are_not_coded),
        T(test_a_range_on_a_cached_object_is_an_identity_slice),
        T(test_a_variant_is_made_once),
        T(test_a_conditional_request_on_a_variant),
        T(test_coded_etags_go_upstream_without_their_suffix),
        cmocka_unit_test_setup_teardown(test_variants_are_shared_through_memcached, mc_setup,
                                        mc_teardown),
        T(test_a_coded_stream_keeps_the_upstream_pace),
        T(test_upstream_gzip_on_a_cached_route),
        T(test_upstream_gzip_on_a_pass_through_route),
        T(test_inflating_for_slow_readers_holds_memory),
        T(test_an_object_too_large_inflated_is_inflated_on_each_hit),
        T(test_without_upstream_gzip_the_upstream_gets_no_accept_encoding),
        T(test_request_bodies_are_never_decoded),
        T(test_compress_off_leaves_everything_alone),
    };
#undef T
    return cmocka_run_group_tests_name("compress", tests, group_setup, group_teardown);
}
