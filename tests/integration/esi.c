/*
 * tests/integration/esi.c: Edge Side Includes (issue 10), end to end:
 * build/tessera in front of build/tessera-origin, pages and fragments
 * scripted by the origin's query string.
 *
 * A template is the origin's body= parameter (URL-encoded once in the page
 * URL, page() below); a src inside it that has a query of its own carries
 * its own encoding (body=A%24n is "A$n" at the origin, where "$n" becomes
 * the number of requests the path has had, so every part of a page shows
 * which origin fetch it came from).
 *
 * What is checked, as man/tessera.conf.5 (ESI, "How pages are assembled")
 * and proxy/esipage.h, esimerge.h, esiurl.h describe it:
 *   - fragments are objects of their own: their own TTL (one part of a
 *     page changes when it expires, the others do not), fetched once for
 *     many pages (also concurrently), purged by tag in every page that
 *     includes them, on a second node sharing memcached too;
 *   - alt, onerror="continue", and the 502 naming a failed include;
 *   - nesting up to esi_max_depth (the top page's route decides), loops,
 *     esi_max_includes (nested includes and alts counted), esi_timeout
 *     (before and after the page's head), esi_allow_hosts, esi_cookies;
 *   - esi on / auto / esi_types, and markup never executed where ESI is
 *     off (another route, a fragment's own route, a non-200);
 *   - the page's head: merged Cache-Control, derived ETag and 304, coded
 *     ETag suffixes, Range ignored, fragments' Set-Cookie dropped;
 *   - compression of the assembled page (gzip, br) and gzip templates and
 *     fragments from the upstream, decoded here and compared exactly;
 *   - streaming: the parts before a slow include reach the client first;
 *   - HEAD; /stats and /metrics counters; access log lines of subrequests.
 *
 * One tessera for the group with a route per policy (group_setup); every
 * test uses paths no other test uses, so origin counts are the test's own.
 * The two-node test runs its own scene (m: an origin, memcached, two
 * nodes).  Responses, connections, strings and decode buffers live in file
 * statics so the teardown frees them even when an assertion fails.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tests/support/clock.h"
#include "tests/support/decode.h"
#include "tests/support/expect.h"
#include "tests/support/harness.h"
#include "tests/support/statsdoc.h"

#define READ_MS 5000
#define HOST "shop.test"
/* How long a test waits for something that happens in the background. */
#define WAIT_MS 3000

/* Every route stores for 100 s what the origin gives no freshness for; an
 * origin's max-age wins (fragments with their own TTL). */
#define ROUTES                                                                                     \
    "route /page/ { backend app; cache on; ttl 100s; esi on; }\n"                                  \
    "route /nest/ { backend app; cache on; ttl 100s; esi on; }\n"                                  \
    "route /frag/ { backend app; cache on; ttl 100s; }\n"                                          \
    "route /cfrag/ { backend app; cache on; ttl 100s; esi_cookies on; }\n"                         \
    "route /raw/ { backend app; cache on; ttl 100s; }\n"                                           \
    "route /auto/ { backend app; cache on; ttl 100s; esi auto; }\n"                                \
    "route /types/ { backend app; cache on; ttl 100s; esi on; esi_types text/x-esi-page; }\n"      \
    "route /d1/ { backend app; cache on; ttl 100s; esi on; esi_max_depth 1; }\n"                   \
    "route /lim/ { backend app; cache on; ttl 100s; esi on; esi_max_includes 2; }\n"               \
    "route /slow/ { backend app; cache on; ttl 100s; esi on; esi_timeout 300ms; }\n"               \
    "route /abs/ { backend app; cache on; ttl 100s; esi on; esi_allow_hosts frags.test; }\n"       \
    "route /gzp/ { backend app; cache on; ttl 100s; esi on; compress { upstream_gzip on; } }\n"    \
    "route /gzf/ { backend app; cache on; ttl 100s; compress { upstream_gzip on; } }\n"            \
    "route /noz/ { backend app; cache on; ttl 100s; esi on; compress { off; } }\n"                 \
    "route /live/ { backend app; esi on; }\n"                                                      \
    "route /early/ { backend app; cache on; ttl 100s; esi on; esi_head_wait 100ms; }\n"            \
    "route /swr/ { backend app; cache on; esi on; stale_while_revalidate 30s; }\n"                 \
    "route default { backend app; }\n"

static struct harness h; /* the group: origin 0 behind one tessera */
static int admin_port;   /* its admin listener (token off) */

/* The two-node scene (one test). */
static struct harness m;
static struct proc *mcd;
static struct proc *node_b;

#define NRESP 8
static struct http_response r[NRESP];
#define NCONN 4
static struct client *conn[NCONN];
static struct decode_buf dec;
#define NSTR 96
static char *strs[NSTR]; /* strings made by S() and page(), freed by the teardown */
static size_t nstrs;
#define NTEXT 4
static char *text[NTEXT]; /* documents kept for deltas */

/* ---- strings ------------------------------------------------------------- */

static const char *keep(char *s)
{
    assert_non_null(s);
    assert_true(nstrs < NSTR);
    strs[nstrs++] = s;
    return s;
}

/* printf into a string the teardown frees. */
static const char *S(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *S(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    return keep(s);
}

/* s URL-encoded: every byte but ALPHA, DIGIT, '-', '.', '_' and '~' as %XX. */
static const char *urlenc(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1);
    assert_non_null(out);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            out[k++] = (char)c;
        } else {
            snprintf(out + k, 4, "%%%02X", c);
            k += 3;
        }
    }
    out[k] = '\0';
    return keep(out);
}

/* PATH?ctype=text/html[&EXTRA]&body=TMPL: the origin serves the template
 * tmpl (encoded once here) as text/html; extra is already a query. */
static const char *page(const char *path, const char *extra, const char *tmpl)
{
    return S("%s?ctype=text/html%s%s&body=%s", path, extra ? "&" : "", extra ? extra : "",
             urlenc(tmpl));
}

/* <esi:include src="SRC"/> */
static const char *inc(const char *src)
{
    return S("<esi:include src=\"%s\"/>", src);
}

/* ---- requests -------------------------------------------------------------- */

/* METHOD TARGET on a fresh connection to port with the header lines (NULL
 * terminated; "Host: shop.test" added unless one is given); the response
 * is read into *resp and must be complete. */
static void request_v(int port, struct http_response *resp, const char *method, const char *target,
                      const char *const *headers, const char *body)
{
    const char *lines[20];
    size_t n = 0;
    bool host = false;
    for (size_t i = 0; headers && headers[i]; i++) {
        assert_true(n < 18);
        if (strncasecmp(headers[i], "Host:", 5) == 0)
            host = true;
        lines[n++] = headers[i];
    }
    if (!host)
        lines[n++] = "Host: " HOST;
    lines[n] = NULL;
    int rc =
        http_exchange(port, method, target, lines, body, body ? strlen(body) : 0, resp, READ_MS);
    if (rc != CLIENT_OK)
        fail_msg("%s %.200s: no complete response (client rc %d, status %d)", method, target, rc,
                 resp->status);
}

static void vrequest(int port, struct http_response *resp, const char *method, const char *target,
                     va_list ap)
{
    const char *lines[16];
    size_t n = 0;
    const char *line;
    while ((line = va_arg(ap, const char *)) != NULL) {
        assert_true(n < 15);
        lines[n++] = line;
    }
    lines[n] = NULL;
    request_v(port, resp, method, target, lines, NULL);
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

static void get_at(int port, struct http_response *resp, const char *target, ...)
    __attribute__((sentinel));
static void get_at(int port, struct http_response *resp, const char *target, ...)
{
    va_list ap;
    va_start(ap, target);
    vrequest(port, resp, "GET", target, ap);
    va_end(ap);
}

/* A 200 whose body is exactly want. */
static void expect_page_at(const struct http_response *resp, const char *want, int line)
{
    if (resp->status != 200)
        fail_msg("line %d: status %d (%.300s), expected 200 with \"%s\"", line, resp->status,
                 resp->body ? resp->body : "", want);
    if (!http_response_body_is(resp, want))
        fail_msg("line %d: body \"%.*s\" (%zu bytes), expected \"%s\"", line,
                 (int)(resp->body_len > 400 ? 400 : resp->body_len), resp->body ? resp->body : "",
                 resp->body_len, want);
}
#define expect_page(resp, want) expect_page_at((resp), (want), __LINE__)

/* GET target: a 200 with body want. */
#define expect_get(target, want)                                                                   \
    do {                                                                                           \
        get(&r[0], (target), (const char *)NULL);                                                  \
        expect_page_at(&r[0], (want), __LINE__);                                                   \
    } while (0)

/* A 502 naming the include: "502 Bad Gateway: ESI include "SRC" failed: WHY\n". */
static void expect_502_at(const struct http_response *resp, const char *src, const char *why,
                          int line)
{
    char want[1024];
    snprintf(want, sizeof want, "502 Bad Gateway: ESI include \"%s\" failed: %s\n", src, why);
    if (resp->status != 502 || !http_response_body_is(resp, want))
        fail_msg("line %d: %d \"%.*s\", expected 502 \"%s\"", line, resp->status,
                 (int)(resp->body_len > 400 ? 400 : resp->body_len), resp->body ? resp->body : "",
                 want);
    expect_header(resp, "Cache-Control", "no-store");
}
#define expect_502(resp, src, why) expect_502_at((resp), (src), (why), __LINE__)

/* The origin served exactly n requests for path (without query). */
static void expect_upstream_at(struct harness *hh, const char *path, long n, int line)
{
    long got = harness_origin_count(hh, 0, path);
    if (got != n)
        fail_msg("line %d: origin served %ld request(s) for %s, expected %ld", line, got, path, n);
}
#define expect_upstream(path, n) expect_upstream_at(&h, (path), (n), __LINE__)

/* The request head the group's origin last received for path (its /__last). */
static const char *origin_last(const char *path)
{
    get_at(h.origin_port[0], &r[7], S("/__last?path=%s", path), (const char *)NULL);
    expect_status(&r[7], 200);
    return S("%s", r[7].body ? r[7].body : "");
}

/* The header value, or "(none)". */
static const char *hv(const struct http_response *resp, const char *name)
{
    const char *v = http_response_header(resp, name);
    return v ? v : "(none)";
}

/* ---- the admin listener -------------------------------------------------- */

static void admin_req(int port, struct http_response *resp, const char *method, const char *target,
                      const char *body)
{
    const char *lines[] = {body ? "Content-Type: application/json" : NULL, NULL};
    request_v(port, resp, method, target, lines, body);
}

/* The integer that follows "key": in s, the first after anchor. */
static long long json_int_at(const char *s, const char *anchor, const char *key, int line)
{
    long long v = 0;
    char why[300];
    if (!statsdoc_json_int(s, anchor, key, &v, why, sizeof why))
        fail_msg("line %d: %s", line, why);
    return v;
}
#define json_int(s, anchor, key) json_int_at((s), (anchor), (key), __LINE__)

/* The body of GET path on the admin listener at port (200), kept in text[i]. */
static const char *admin_doc(int port, const char *path, int i)
{
    admin_req(port, &r[6], "GET", path, NULL);
    if (r[6].status != 200 || !r[6].body)
        fail_msg("GET %s: %d", path, r[6].status);
    free(text[i]);
    text[i] = strdup(r[6].body);
    assert_non_null(text[i]);
    return text[i];
}

/* POST /purge json on the admin listener at port: 200; returns "purged". */
static long long purge_at(int port, const char *json, int line)
{
    admin_req(port, &r[5], "POST", "/purge", json);
    if (r[5].status != 200)
        fail_msg("line %d: POST /purge %s: %d %s", line, json, r[5].status,
                 r[5].body ? r[5].body : "");
    return json_int_at(r[5].body, NULL, "purged", line);
}

/* The value of the sample `series` in a metrics text. */
static long long metric_at(const char *doc, const char *series, int line)
{
    long long v = 0;
    if (!statsdoc_metric(doc, series, &v))
        fail_msg("line %d: no sample %s in the metrics", line, series);
    return v;
}
#define metric(doc, series) metric_at((doc), (series), __LINE__)

/* ---- setup ------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    if (!harness_init(&h, "esi") || !harness_origin(&h, 0, NULL))
        return -1;
    admin_port = proc_free_port();
    if (admin_port <= 0)
        return -1;
    if (!harness_tessera(&h,
                         "backend app { server 127.0.0.1:%d; }\n"
                         "admin { listen 127.0.0.1:%d; token off; }\n" ROUTES,
                         h.origin_port[0], admin_port))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    harness_free(&h);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < NCONN; i++)
        client_free(&conn[i]);
    for (int i = 0; i < NRESP; i++)
        http_response_clear(&r[i]);
    for (size_t i = 0; i < nstrs; i++)
        free(strs[i]);
    nstrs = 0;
    for (int i = 0; i < NTEXT; i++) {
        free(text[i]);
        text[i] = NULL;
    }
    decode_buf_free(&dec);
    proc_free(&node_b);
    harness_free(&m);
    proc_free(&mcd);
    return 0;
}

/* ---- 1. fragments keep their own TTL ----------------------------------------- */

static void test_each_fragment_keeps_its_own_ttl(void **state)
{
    (void)state;
    const char *a = "/frag/ttl1?body=A%24n&hdr=Cache-Control:max-age%3D1";
    const char *b = "/frag/ttl5?body=B%24n&hdr=Cache-Control:max-age%3D5";
    const char *c = "/frag/ttl60?body=C%24n&hdr=Cache-Control:max-age%3D60";
    const char *p = page("/page/ttl", "hdr=Cache-Control:max-age%3D60",
                         S("<div>%s|%s|%s</div>", inc(a), inc(b), inc(c)));

    long t0 = now_ms();
    get(&r[0], p, (const char *)NULL);
    expect_page(&r[0], "<div>A1|B1|C1</div>");
    expect_header(&r[0], "X-Cache", "MISS");
    expect_header(&r[0], "Content-Type", "text/html");
    /* the smallest freshness of the parts: the 1 s fragment's */
    expect_header(&r[0], "Cache-Control", "max-age=1");
    expect_no_header(&r[0], "Content-Length");
    assert_true(r[0].chunked);

    /* At once: everything from the cache. */
    get(&r[1], p, (const char *)NULL);
    expect_page(&r[1], "<div>A1|B1|C1</div>");
    expect_header(&r[1], "X-Cache", "HIT");
    expect_upstream("/page/ttl", 1);
    expect_upstream("/frag/ttl1", 1);
    expect_upstream("/frag/ttl5", 1);
    expect_upstream("/frag/ttl60", 1);

    /* Just past the shortest TTL: only that part is fetched again. */
    long wait = t0 + 1300 - now_ms();
    if (wait > 0)
        sleep_ms(wait);
    get(&r[2], p, (const char *)NULL);
    expect_page(&r[2], "<div>A2|B1|C1</div>");
    expect_header(&r[2], "X-Cache", "HIT");
    expect_header(&r[2], "Cache-Control", "max-age=1");
    expect_upstream("/page/ttl", 1);
    expect_upstream("/frag/ttl1", 2);
    expect_upstream("/frag/ttl5", 1);
    expect_upstream("/frag/ttl60", 1);
}

/* ---- 2. one fetch for many pages -------------------------------------------------- */

static void test_a_fragment_is_fetched_once_for_many_pages(void **state)
{
    (void)state;
    const char *f = "/frag/shared?body=S%24n";
    const char *tags[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        const char *p =
            page(S("/page/many%d", i), NULL, S("<%s>%s</%s>", tags[i], inc(f), tags[i]));
        expect_get(p, S("<%s>S1</%s>", tags[i], tags[i]));
        expect_upstream(S("/page/many%d", i), 1);
    }
    expect_upstream("/frag/shared", 1);

    /* Three pages at once, the fragment slow: the page requests run side
     * by side and the fragment is still fetched once. */
    const char *g = "/frag/shared-slow?body=T%24n&delay=300";
    const char *pages[3];
    for (int i = 0; i < 3; i++) {
        pages[i] = page(S("/page/concurrent%d", i), NULL, S("<%d>%s</%d>", i, inc(g), i));
        conn[i] = client_connect(h.port, READ_MS);
        assert_non_null(conn[i]);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            client_send_request(conn[i], "GET", pages[i], "Host: " HOST, (const char *)NULL), 0);
    for (int i = 0; i < 3; i++) {
        http_response_clear(&r[i]);
        expect_ok(client_read_response(conn[i], 0, &r[i], READ_MS));
        expect_page(&r[i], S("<%d>T1</%d>", i, i));
    }
    expect_upstream("/frag/shared-slow", 1);
}

/* A template that may not be stored (the route caches nothing) is parsed
 * for each request; its fragments are still cached on their own route. */
static void test_a_template_not_stored_is_assembled_per_request(void **state)
{
    (void)state;
    const char *p = page("/live/p", NULL, S("<v>%s</v>", inc("/frag/live?body=L%24n")));
    expect_get(p, "<v>L1</v>");
    expect_header(&r[0], "X-Cache", "PASS");
    expect_get(p, "<v>L1</v>");
    expect_upstream("/live/p", 2);
    expect_upstream("/frag/live", 1);
}

/* ---- 3. purge by tag ----------------------------------------------------------------- */

static void test_a_tag_purge_refreshes_the_fragment_in_every_page(void **state)
{
    (void)state;
    const char *f = "/frag/tagged?body=F%24n&hdr=Surrogate-Key:promo%20sale";
    const char *g = "/frag/untagged?body=G%24n&hdr=Surrogate-Key:other";
    const char *p1 = page("/page/tag1", NULL, S("<1>%s,%s</1>", inc(f), inc(g)));
    const char *p2 = page("/page/tag2", NULL, S("<2>%s,%s</2>", inc(f), inc(g)));
    expect_get(p1, "<1>F1,G1</1>");
    expect_no_header(&r[0], "Surrogate-Key");
    expect_get(p2, "<2>F1,G1</2>");
    expect_upstream("/frag/tagged", 1);

    assert_int_equal(purge_at(admin_port, "{\"tag\": \"promo\"}", __LINE__), 1);

    expect_get(p1, "<1>F2,G1</1>");
    expect_get(p2, "<2>F2,G1</2>");
    expect_get(p1, "<1>F2,G1</1>");
    expect_upstream("/frag/tagged", 2);
    expect_upstream("/frag/untagged", 1);
    expect_upstream("/page/tag1", 1);
    expect_upstream("/page/tag2", 1);

    /* A URL purge of the fragment works the same way. */
    assert_int_equal(purge_at(admin_port, S("{\"url\": \"http://" HOST "%s\"}", g), __LINE__), 1);
    expect_get(p2, "<2>F2,G2</2>");
    expect_get(p1, "<1>F2,G2</1>");
    expect_upstream("/frag/untagged", 2);
    expect_upstream("/frag/tagged", 2);
}

/* memcached's stats value name, or -1. */
static long mc_stat(int port, const char *name)
{
    int fd = proc_memcached_connect(port);
    if (fd < 0)
        return -1;
    char buf[8192];
    size_t have = 0;
    long v = -1;
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
        char pat[64];
        snprintf(pat, sizeof pat, "STAT %s ", name);
        const char *s = strstr(buf, pat);
        if (s)
            v = strtol(s + strlen(pat), NULL, 10);
    }
    close(fd);
    return v;
}

/* Wait until memcached's stat name reaches n (tessera writes in the
 * background). */
static void wait_mc_at(const char *name, long n, const char *what, int line)
{
    long until = now_ms() + WAIT_MS;
    for (;;) {
        long got = mc_stat(mcd->port, name);
        if (got >= n)
            return;
        if (now_ms() > until)
            fail_msg("line %d: %s never reached memcached (%s %ld after %d ms, expected %ld)", line,
                     what, name, got, WAIT_MS, n);
        sleep_ms(10);
    }
}
#define wait_mc(name, n, what) wait_mc_at((name), (n), (what), __LINE__)

static void test_a_tag_purge_reaches_the_pages_of_a_second_node(void **state)
{
    (void)state;
    assert_true(harness_init(&m, "esi-mc"));
    assert_true(harness_origin(&m, 0, NULL));
    mcd = proc_start_memcached(m.td, "memcached");
    assert_non_null(mcd);
    int admin_a = proc_free_port();
    assert_true(admin_a > 0);
    const char *common = S("backend app { server 127.0.0.1:%d; }\n"
                           "memcached { server 127.0.0.1:%d; timeout 500ms; purge_sync 100ms; }\n"
                           "route /page/ { backend app; cache on; ttl 100s; esi on; }\n"
                           "route /frag/ { backend app; cache on; ttl 100s; }\n",
                           m.origin_port[0], mcd->port);
    assert_true(
        harness_tessera(&m, "%sadmin { listen 127.0.0.1:%d; token off; }\n", common, admin_a));
    const char *log_b = tmpdir_file(m.td, "b-error.log");
    const char *conf_b = tmpdir_write(m.td, "b.conf",
                                      "listen 127.0.0.1:0;\nworkers 2;\n"
                                      "log { error %s; level info; }\n%s",
                                      log_b, common);
    assert_non_null(conf_b);
    node_b = proc_start_tessera(m.td, "b", conf_b, log_b, (const char *)NULL);
    assert_non_null(node_b);
    int a = m.port, b = node_b->port;

    const char *f = "/frag/mc-tagged?body=F%24n&hdr=Surrogate-Key:promo";
    const char *g = "/frag/mc-other?body=G%24n&hdr=Surrogate-Key:other";
    const char *p1 = page("/page/mc1", NULL, S("<1>%s,%s</1>", inc(f), inc(g)));
    const char *p2 = page("/page/mc2", NULL, S("<2>%s,%s</2>", inc(f), inc(g)));

    /* Node A stores both templates and both fragments (memory and
     * memcached); node B then reads them all from memcached. */
    get_at(a, &r[0], p1, (const char *)NULL);
    expect_page(&r[0], "<1>F1,G1</1>");
    get_at(a, &r[0], p2, (const char *)NULL);
    expect_page(&r[0], "<2>F1,G1</2>");
    wait_mc("curr_items", 4, "the two templates and two fragments");
    get_at(b, &r[0], p1, (const char *)NULL);
    expect_page(&r[0], "<1>F1,G1</1>");
    expect_header(&r[0], "X-Cache", "HIT");
    get_at(b, &r[0], p2, (const char *)NULL);
    expect_page(&r[0], "<2>F1,G1</2>");
    expect_upstream_at(&m, "/page/mc1", 1, __LINE__);
    expect_upstream_at(&m, "/page/mc2", 1, __LINE__);
    expect_upstream_at(&m, "/frag/mc-tagged", 1, __LINE__);
    expect_upstream_at(&m, "/frag/mc-other", 1, __LINE__);

    /* The purge on A; A fetches the fragment again and shares it. */
    assert_int_equal(purge_at(admin_a, "{\"tag\": \"promo\"}", __LINE__), 1);
    assert_non_null(strstr(r[5].body, "\"shared\":true"));
    long sets = mc_stat(mcd->port, "total_items");
    assert_true(sets >= 0);
    get_at(a, &r[0], p1, (const char *)NULL);
    expect_page(&r[0], "<1>F2,G1</1>");
    get_at(a, &r[0], p2, (const char *)NULL);
    expect_page(&r[0], "<2>F2,G1</2>");
    expect_upstream_at(&m, "/frag/mc-tagged", 2, __LINE__);
    wait_mc("total_items", sets + 1, "the fragment fetched again by node a");

    /* Node B: within purge_sync its pages show the new fragment (read from
     * memcached); until then only the old one. */
    long deadline = now_ms() + WAIT_MS;
    for (;;) {
        get_at(b, &r[1], p1, (const char *)NULL);
        expect_status(&r[1], 200);
        if (!http_response_body_is(&r[1], "<1>F1,G1</1>"))
            break;
        if (now_ms() > deadline)
            fail_msg("node b still shows the purged fragment %d ms after the purge on node a",
                     WAIT_MS);
        sleep_ms(20);
    }
    expect_page(&r[1], "<1>F2,G1</1>");
    get_at(b, &r[1], p2, (const char *)NULL);
    expect_page(&r[1], "<2>F2,G1</2>");
    expect_upstream_at(&m, "/frag/mc-tagged", 2, __LINE__);
    expect_upstream_at(&m, "/frag/mc-other", 1, __LINE__);
    expect_upstream_at(&m, "/page/mc1", 1, __LINE__);
    expect_upstream_at(&m, "/page/mc2", 1, __LINE__);
}

/* ---- 4. alt, onerror="continue", 502 ------------------------------------------------ */

static void test_alt_and_onerror_continue(void **state)
{
    (void)state;
    const char *tmpl =
        "<x>"
        "<esi:include src=\"/frag/alt-missing?status=404\" alt=\"/frag/alt-ok?body=ALT%24n\"/>|"
        "<esi:include src=\"/frag/cont-missing?status=500\" onerror=\"continue\"/>|"
        "<esi:include src=\"/frag/both-missing?status=503\" alt=\"/frag/alt-missing2?status=404\" "
        "onerror=\"continue\"/>|"
        "<esi:include src='/frag/alt-fine?body=OK' alt='/frag/alt-unused?body=NO'></esi:include>"
        "</x>";
    const char *p = page("/page/alt", NULL, tmpl);
    expect_get(p, "<x>ALT1|||OK</x>");
    /* an empty part has no freshness */
    expect_header(&r[0], "Cache-Control", "max-age=0");
    expect_upstream("/frag/alt-missing", 1);
    expect_upstream("/frag/alt-ok", 1);
    expect_upstream("/frag/cont-missing", 1);
    expect_upstream("/frag/both-missing", 1);
    expect_upstream("/frag/alt-missing2", 1);
    expect_upstream("/frag/alt-fine", 1);
    expect_upstream("/frag/alt-unused", 0);
}

static void test_a_failed_include_without_alt_or_continue_is_a_502(void **state)
{
    (void)state;
    const char *p =
        page("/page/fail", NULL,
             S("<y>%s%s</y>", inc("/frag/fail-ok?body=OK"), inc("/frag/fail500?status=500")));
    get(&r[0], p, (const char *)NULL);
    expect_502(&r[0], "/frag/fail500?status=500", "the fragment answered 500");
    expect_upstream("/frag/fail500", 1);

    /* src and alt both fail: the src is named, with the alt's failure. */
    p = page("/page/fail-alt", NULL,
             "<y><esi:include src=\"/frag/fail404?status=404\" alt=\"/frag/fail410?status=410\"/>"
             "</y>");
    get(&r[0], p, (const char *)NULL);
    expect_502(&r[0], "/frag/fail404?status=404", "the fragment answered 410");
    expect_upstream("/frag/fail404", 1);
    expect_upstream("/frag/fail410", 1);

    /* A src tessera cannot fetch. */
    p = page("/page/fail-url", NULL, "<y><esi:include src=\"javascript:alert(1)\"/></y>");
    get(&r[0], p, (const char *)NULL);
    expect_502(&r[0], "javascript:alert(1)", "src is not a URL tessera can fetch");
}

/* The fragment's head came and the page's head went out; then the
 * fragment breaks off: the client's connection is cut (never a complete
 * wrong page). */
static void test_a_failure_after_the_head_cuts_the_connection(void **state)
{
    (void)state;
    const char *p = page("/page/cut", NULL,
                         S("<c>%s|%s</c>", inc("/frag/cut-ok?body=OK"),
                           inc("/frag/cut-broken?len=100&abort=10&body_delay=300")));
    conn[1] = client_connect(h.port, READ_MS);
    assert_non_null(conn[1]);
    assert_int_equal(client_send_request(conn[1], "GET", p, "Host: " HOST, (const char *)NULL), 0);
    http_response_clear(&r[0]);
    int rc = client_read_response(conn[1], 0, &r[0], READ_MS);
    if (rc != CLIENT_EOF && rc != CLIENT_ERROR)
        fail_msg("client rc %d (status %d, complete %d), expected the connection cut", rc,
                 r[0].status, r[0].complete);
    assert_int_equal(r[0].status, 200);
    assert_false(r[0].complete);
    expect_upstream("/frag/cut-broken", 1);
    assert_true(proc_wait_log(h.error_log,
                              "ESI include \"/frag/cut-broken?len=100&abort=10&body_delay=300\" "
                              "failed: the fragment's response ended early, after the page's head: "
                              "closing",
                              WAIT_MS));
}

/* ---- 5. depth and loops ------------------------------------------------------------ */

static void test_nesting_works_to_esi_max_depth_and_fails_beyond(void **state)
{
    (void)state;
    /* page -> a -> b -> leaf: the leaf is depth 3, the default limit. */
    const char *b3 = page("/nest/b3", NULL, S("<b>%s</b>", inc("/frag/leaf3?body=L%24n")));
    const char *a3 = page("/nest/a3", NULL, S("<a>%s</a>", inc(b3)));
    const char *p3 = page("/page/deep3", NULL, S("<p>%s</p>", inc(a3)));
    expect_get(p3, "<p><a><b>L1</b></a></p>");
    expect_get(p3, "<p><a><b>L1</b></a></p>");
    expect_upstream("/frag/leaf3", 1);
    expect_upstream("/nest/a3", 1);
    expect_upstream("/nest/b3", 1);

    /* One level more: the leaf would be depth 4.  The innermost page fails,
     * and with it every page around it. */
    const char *c4 = page("/nest/c4", NULL, S("<c>%s</c>", inc("/frag/leaf4?body=L%24n")));
    const char *b4 = page("/nest/b4", NULL, S("<b>%s</b>", inc(c4)));
    const char *a4 = page("/nest/a4", NULL, S("<a>%s</a>", inc(b4)));
    const char *p4 = page("/page/deep4", NULL, S("<p>%s</p>", inc(a4)));
    get(&r[0], p4, (const char *)NULL);
    char a4_named[121];
    snprintf(a4_named, sizeof a4_named, "%s", a4); /* the message names 120 bytes at most */
    expect_502(&r[0], a4_named, "the fragment answered 502");
    expect_upstream("/nest/c4", 1);
    expect_upstream("/frag/leaf4", 0);
    assert_true(proc_wait_log(h.error_log, "failed: nested deeper than esi_max_depth", WAIT_MS));

    /* The top page's route sets the limit: under esi_max_depth 1 the same
     * nested page cannot include its fragment... */
    const char *n1 = page("/nest/n1", NULL, S("<n>%s</n>", inc("/frag/d1-leaf?body=N%24n")));
    const char *d1 = page("/d1/p", NULL,
                          S("<d>%s|<esi:include src=\"%s\" onerror=\"continue\"/></d>",
                            inc("/frag/d1-plain?body=D%24n"), n1));
    expect_get(d1, "<d>D1|</d>");
    expect_upstream("/frag/d1-leaf", 0);
    /* ... while under /page/ (depth 3) it can; its template is the one
     * stored by the first fetch. */
    expect_get(page("/page/d1-cmp", NULL, S("<q>%s</q>", inc(n1))), "<q><n>N1</n></q>");
    expect_upstream("/nest/n1", 1);
    expect_upstream("/frag/d1-leaf", 1);
}

static void test_a_page_that_includes_itself_fails(void **state)
{
    (void)state;
    /* "#x" is the page's own URL (RFC 3986 5.2): a fragment including
     * itself fails, and so does the page around it. */
    const char *self = page("/nest/self", NULL, "<s><esi:include src=\"#again\"/></s>");
    const char *p = page("/page/loop", NULL, S("<l>%s</l>", inc(self)));
    get(&r[0], p, (const char *)NULL);
    char named[121];
    snprintf(named, sizeof named, "%s", self);
    expect_502(&r[0], named, "the fragment answered 502");
    expect_upstream("/nest/self", 1);
    assert_true(
        proc_wait_log(h.error_log, "failed: the fragment includes itself (a loop)", WAIT_MS));

    /* The top page including itself: its alt answers. */
    p = page("/page/loop-alt", NULL,
             "<l><esi:include src=\"#me\" alt=\"/frag/loop-alt?body=ALT%24n\"/></l>");
    expect_get(p, "<l>ALT1</l>");
    expect_upstream("/page/loop-alt", 1);

    /* Without alt: 502 naming the include. */
    p = page("/page/loop-top", NULL, "<l><esi:include src=\"#me\"/></l>");
    get(&r[0], p, (const char *)NULL);
    expect_502(&r[0], "#me", "the fragment includes itself (a loop)");
}

static void test_esi_max_includes_counts_nested_includes_and_alts(void **state)
{
    (void)state;
    /* /lim/ allows 2 subrequests per page. */
    expect_get(page("/lim/ok", NULL,
                    S("<l>%s|%s</l>", inc("/frag/lim-1?body=1"), inc("/frag/lim-2?body=2"))),
               "<l>1|2</l>");

    get(&r[0],
        page("/lim/over", NULL,
             S("<l>%s|%s|%s</l>", inc("/frag/lim-o1?body=1"), inc("/frag/lim-o2?body=2"),
               inc("/frag/lim-o3?body=3"))),
        (const char *)NULL);
    expect_502(&r[0], "/frag/lim-o3?body=3", "the page has more includes than esi_max_includes");
    expect_upstream("/frag/lim-o3", 0);

    /* Nested: the nested page is one, its first include the second. */
    const char *n = page("/nest/lim-n", NULL,
                         S("<n>%s%s</n>", inc("/frag/lim-n1?body=1"), inc("/frag/lim-n2?body=2")));
    get(&r[0], page("/lim/nested", NULL, S("<l>%s</l>", inc(n))), (const char *)NULL);
    char named[121];
    snprintf(named, sizeof named, "%s", n);
    expect_502(&r[0], named, "the fragment answered 502");
    expect_upstream("/frag/lim-n1", 1);
    expect_upstream("/frag/lim-n2", 0);

    /* An alt is one more. */
    get(&r[0],
        page("/lim/alt", NULL,
             "<l><esi:include src=\"/frag/lim-a?status=404\" alt=\"/frag/lim-b?body=B\"/>"
             "<esi:include src=\"/frag/lim-c?body=C\"/></l>"),
        (const char *)NULL);
    expect_502(&r[0], "/frag/lim-a?status=404", "the page has more includes than esi_max_includes");
    expect_upstream("/frag/lim-b", 0);
}

/* ---- 6. compression ------------------------------------------------------------------- */

/* n items of filler HTML (unreserved characters mostly, so the page URL
 * stays short), for a page over any min_length. */
static const char *filler(int n, const char *word)
{
    size_t len = (size_t)n * (strlen(word) + 9) + 1;
    char *s = malloc(len);
    assert_non_null(s);
    s[0] = '\0';
    for (int i = 0; i < n; i++) {
        strcat(s, "<li>");
        strcat(s, word);
        strcat(s, "</li>");
    }
    return keep(s);
}

/* The page decoded as coding is exactly want. */
static void expect_decoded_at(const struct http_response *resp, const char *coding,
                              const char *want, int line)
{
    if (resp->status != 200)
        fail_msg("line %d: status %d", line, resp->status);
    const char *ce = http_response_header(resp, "Content-Encoding");
    if (strcmp(coding, "identity") == 0 ? ce != NULL : (!ce || strcmp(ce, coding) != 0))
        fail_msg("line %d: Content-Encoding %s, expected %s", line, ce ? ce : "(none)", coding);
    if (!decode_body(coding, resp->body ? resp->body : "", resp->body_len, &dec))
        fail_msg("line %d: the %zu-byte body does not decode as %s", line, resp->body_len, coding);
    if (dec.len != strlen(want) || memcmp(dec.data, want, dec.len) != 0)
        fail_msg("line %d: decoded (%s): \"%.*s\" (%zu bytes), expected \"%s\" (%zu bytes)", line,
                 coding, (int)(dec.len > 300 ? 300 : dec.len), dec.data ? dec.data : "", dec.len,
                 want, strlen(want));
}
#define expect_decoded(resp, coding, want) expect_decoded_at((resp), (coding), (want), __LINE__)

static void test_the_assembled_page_is_compressed_exactly(void **state)
{
    (void)state;
    const char *list = filler(40, "lorem-ipsum-dolor-sit");
    const char *p = page("/page/gz", NULL,
                         S("<html><ul>%s</ul>%s%s</html>", list, inc("/frag/z1?body=Z1-%24n"),
                           inc("/gzf/z2?gzip=1&body=Z2-%24n")));
    const char *want = S("<html><ul>%s</ul>Z1-1Z2-1</html>", list);

    get(&r[0], p, "Accept-Encoding: gzip", (const char *)NULL);
    expect_decoded(&r[0], "gzip", want);
    expect_header(&r[0], "Vary", "Accept-Encoding");
    expect_no_header(&r[0], "Content-Length");
    get(&r[1], p, "Accept-Encoding: br", (const char *)NULL);
    expect_decoded(&r[1], "br", want);
    get(&r[2], p, "Accept-Encoding: br;q=0.5, gzip;q=0.9", (const char *)NULL);
    expect_decoded(&r[2], "gzip", want);
    get(&r[3], p, (const char *)NULL);
    expect_decoded(&r[3], "identity", want);
    expect_header(&r[3], "Vary", "Accept-Encoding");
    expect_upstream("/page/gz", 1);
    expect_upstream("/frag/z1", 1);
    expect_upstream("/gzf/z2", 1);
    /* the gzip fragment did come gzip from the origin */
    assert_non_null(strcasestr(origin_last("/gzf/z2"), "\r\nAccept-Encoding: gzip\r\n"));

    /* A route with compress off: identity for everyone. */
    const char *q = page("/noz/p", NULL, S("<n>%s%s</n>", list, inc("/frag/z3?body=Z3")));
    get(&r[4], q, "Accept-Encoding: gzip, br", (const char *)NULL);
    expect_decoded(&r[4], "identity", S("<n>%sZ3</n>", list));
}

static void test_a_gzip_template_from_the_upstream_assembles(void **state)
{
    (void)state;
    const char *list = filler(30, "gzip-template-body");
    const char *p = page("/gzp/t", "gzip=1",
                         S("<g>%s%s|%s</g>", list, inc("/frag/gzt1?body=T1-%24n"),
                           inc("/gzf/gzt2?gzip=1&body=T2-%24n")));
    const char *want = S("<g>%sT1-1|T2-1</g>", list);
    get(&r[0], p, (const char *)NULL);
    expect_decoded(&r[0], "identity", want);
    assert_non_null(strcasestr(origin_last("/gzp/t"), "\r\nAccept-Encoding: gzip\r\n"));
    get(&r[1], p, "Accept-Encoding: gzip", (const char *)NULL);
    expect_decoded(&r[1], "gzip", want);
    get(&r[2], p, "Accept-Encoding: br", (const char *)NULL);
    expect_decoded(&r[2], "br", want);
    expect_upstream("/gzp/t", 1);
    expect_upstream("/frag/gzt1", 1);
    expect_upstream("/gzf/gzt2", 1);
}

/* ---- esi on / auto / types; markup never executed elsewhere ----------------------- */

static void test_esi_auto_processes_only_what_asks(void **state)
{
    (void)state;
    const char *asks = "hdr=Surrogate-Control:content%3D%22ESI/1.0%22";
    const char *tmpl = S("<a>%s</a>", inc("/frag/auto1?body=X%24n"));
    expect_get(page("/auto/yes", asks, tmpl), "<a>X1</a>");
    expect_get(page("/auto/no", NULL, tmpl), tmpl);
    expect_get(page("/auto/no", NULL, tmpl), tmpl); /* and from the cache */
    expect_header(&r[0], "X-Cache", "HIT");
    expect_upstream("/frag/auto1", 1);

    /* esi_types: another type processed, text/html not. */
    const char *t2 = S("<t>%s</t>", inc("/frag/types1?body=Y%24n"));
    expect_get(S("/types/yes?ctype=text/x-esi-page%%3B%%20charset%%3Dutf-8&body=%s", urlenc(t2)),
               "<t>Y1</t>");
    expect_header(&r[0], "Content-Type", "text/x-esi-page; charset=utf-8");
    expect_get(page("/types/no", NULL, t2), t2);
    expect_upstream("/frag/types1", 1);
    /* the default types on /page/: parameters and case do not matter */
    expect_get(S("/page/type-params?ctype=Text/HTML%%3B%%20charset%%3Dutf-8&body=%s",
                 urlenc(S("<u>%s</u>", inc("/frag/types2?body=Z%24n")))),
               "<u>Z1</u>");
    expect_get(S("/page/type-plain?ctype=text/plain&body=%s", urlenc(t2)), t2);
}

static void test_markup_is_never_executed_where_esi_is_off(void **state)
{
    (void)state;
    /* A route without esi. */
    const char *tmpl = S("<p>%s</p>", inc("/frag/never1?body=X"));
    const char *p = page("/raw/x", NULL, tmpl);
    expect_get(p, tmpl);
    expect_get(p, tmpl);
    expect_header(&r[0], "X-Cache", "HIT");
    expect_upstream("/frag/never1", 0);

    /* A fragment whose own route has no esi: its markup reaches the page
     * as it is. */
    const char *inner = inc("/frag/never2?body=Y");
    const char *f = S("/frag/html?ctype=text/html&body=%s", urlenc(inner));
    expect_get(page("/page/inject", NULL, S("<o>%s</o>", inc(f))), S("<o>%s</o>", inner));
    expect_upstream("/frag/html", 1);
    expect_upstream("/frag/never2", 0);

    /* Not a 200: not a template. */
    const char *t404 = inc("/frag/never3?body=Z");
    get(&r[0], page("/page/not-found", "status=404", t404), (const char *)NULL);
    expect_status(&r[0], 404);
    expect_body(&r[0], t404);
    expect_upstream("/frag/never3", 0);
}

/* ---- the page's head ------------------------------------------------------------------ */

/* v is "esi-" and 16 lower-case hex digits in quotes, W/ first when weak,
 * the coding suffix before the closing quote when suffix is not NULL. */
static bool esi_etag(const char *v, bool weak, const char *suffix)
{
    if (!v)
        return false;
    if (weak) {
        if (strncmp(v, "W/", 2) != 0)
            return false;
        v += 2;
    }
    if (strncmp(v, "\"esi-", 5) != 0)
        return false;
    v += 5;
    for (int i = 0; i < 16; i++, v++)
        if (!isxdigit((unsigned char)*v) || isupper((unsigned char)*v))
            return false;
    if (suffix) {
        if (*v != '-' || strncmp(v + 1, suffix, strlen(suffix)) != 0)
            return false;
        v += 1 + strlen(suffix);
    }
    return strcmp(v, "\"") == 0;
}

static void test_the_derived_etag_answers_304(void **state)
{
    (void)state;
    const char *f1 = "/frag/et1?body=E1&etag=%22f1%22";
    const char *f2 = "/frag/et2?body=E2&etag=%22f2%22";
    const char *p = page("/page/etag", "etag=%22t1%22", S("<e>%s%s</e>", inc(f1), inc(f2)));
    get(&r[0], p, (const char *)NULL);
    expect_page(&r[0], "<e>E1E2</e>");
    const char *etag = S("%s", hv(&r[0], "ETag"));
    if (!esi_etag(etag, false, NULL))
        fail_msg("ETag %s, expected \"esi-<16 hex>\"", etag);
    expect_no_header(&r[0], "Last-Modified");

    /* The same parts: the same tag, and 304 for it. */
    get(&r[1], p, (const char *)NULL);
    expect_header(&r[1], "ETag", etag);
    get(&r[2], p, S("If-None-Match: %s", etag), (const char *)NULL);
    expect_status(&r[2], 304);
    assert_int_equal(r[2].body_len, 0);
    expect_header(&r[2], "ETag", etag);
    get(&r[3], p, "If-None-Match: \"other\"", (const char *)NULL);
    expect_page(&r[3], "<e>E1E2</e>");

    /* Coded: the suffix, and 304 for the coded tag. */
    get(&r[4], p, "Accept-Encoding: gzip", (const char *)NULL);
    expect_decoded(&r[4], "gzip", "<e>E1E2</e>");
    const char *gz = S("%.*s-gzip\"", (int)strlen(etag) - 1, etag);
    expect_header(&r[4], "ETag", gz);
    get(&r[5], p, "Accept-Encoding: gzip", S("If-None-Match: %s", gz), (const char *)NULL);
    expect_status(&r[5], 304);
    get(&r[5], p, "Accept-Encoding: br", (const char *)NULL);
    expect_decoded(&r[5], "br", "<e>E1E2</e>");
    expect_header(&r[5], "ETag", S("%.*s-br\"", (int)strlen(etag) - 1, etag));

    /* The same parts in another order: another tag. */
    get(&r[6], page("/page/etag-swapped", "etag=%22t1%22", S("<e>%s%s</e>", inc(f2), inc(f1))),
        (const char *)NULL);
    expect_page(&r[6], "<e>E2E1</e>");
    if (!esi_etag(hv(&r[6], "ETag"), false, NULL) || strcmp(hv(&r[6], "ETag"), etag) == 0)
        fail_msg("swapped parts: ETag %s (the other order: %s)", hv(&r[6], "ETag"), etag);

    /* A weak part makes it weak; a part without a tag leaves none. */
    get(&r[6],
        page("/page/etag-weak", "etag=%22t1%22",
             S("<e>%s%s</e>", inc(f1), inc("/frag/et3?body=E3&etag=W/%22w3%22"))),
        (const char *)NULL);
    expect_page(&r[6], "<e>E1E3</e>");
    if (!esi_etag(hv(&r[6], "ETag"), true, NULL))
        fail_msg("ETag %s, expected W/\"esi-<16 hex>\"", hv(&r[6], "ETag"));
    get(&r[6],
        page("/page/etag-none", "etag=%22t1%22",
             S("<e>%s%s</e>", inc(f1), inc("/frag/et4?body=E4"))),
        (const char *)NULL);
    expect_page(&r[6], "<e>E1E4</e>");
    expect_no_header(&r[6], "ETag");
    expect_upstream("/frag/et1", 1);
    expect_upstream("/frag/et2", 1);
}

static void test_the_head_merges_the_parts_cache_control(void **state)
{
    (void)state;
    const char *t = "hdr=Cache-Control:max-age%3D60";
    const char *a = "/frag/cc30?body=A&hdr=Cache-Control:max-age%3D30";
    const char *b = "/frag/cc10?body=B&hdr=Cache-Control:max-age%3D10";
    get(&r[0], page("/page/cc-min", t, S("<c>%s%s</c>", inc(a), inc(b))), (const char *)NULL);
    expect_page(&r[0], "<c>AB</c>");
    expect_header(&r[0], "Cache-Control", "max-age=10");
    expect_no_header(&r[0], "Age");
    expect_no_header(&r[0], "Expires");

    /* A private part makes the page private. */
    const char *priv = "/frag/cc-private?body=P&hdr=Cache-Control:private,%20max-age%3D20";
    get(&r[1], page("/page/cc-private", t, S("<c>%s%s</c>", inc(a), inc(priv))),
        (const char *)NULL);
    expect_page(&r[1], "<c>AP</c>");
    expect_header(&r[1], "Cache-Control", "private, max-age=20");

    /* A no-store part: no-store. */
    const char *ns = "/frag/cc-nostore?body=N&hdr=Cache-Control:no-store";
    get(&r[2], page("/page/cc-nostore", t, S("<c>%s%s</c>", inc(priv), inc(ns))),
        (const char *)NULL);
    expect_page(&r[2], "<c>PN</c>");
    expect_header(&r[2], "Cache-Control", "no-store");

    /* A part without freshness of its own (stored by the route's ttl): 0. */
    get(&r[3], page("/page/cc-none", t, S("<c>%s%s</c>", inc(a), inc("/frag/cc-none?body=Z"))),
        (const char *)NULL);
    expect_page(&r[3], "<c>AZ</c>");
    expect_header(&r[3], "Cache-Control", "max-age=0");

    /* Fragments' Set-Cookie never reaches the client; the template's
     * fields stay. */
    get(&r[4],
        page("/page/cc-cookie", S("%s&hdr=X-Page:yes", t),
             S("<c>%s</c>", inc("/frag/cc-cookie?body=K&hdr=Set-Cookie:frag%3D1&hdr=X-Frag:1"))),
        (const char *)NULL);
    expect_page(&r[4], "<c>K</c>");
    expect_no_header(&r[4], "Set-Cookie");
    expect_no_header(&r[4], "X-Frag");
    expect_header(&r[4], "X-Page", "yes");

    /* Range is ignored: the whole page. */
    const char *p = page("/page/range", NULL, S("<r>%s</r>", inc("/frag/range?body=0123456789")));
    get(&r[5], p, "Range: bytes=0-3", (const char *)NULL);
    expect_page(&r[5], "<r>0123456789</r>");
    expect_no_header(&r[5], "Content-Range");
    expect_no_header(&r[5], "Accept-Ranges");
    get(&r[5], p, "Range: bytes=2-5", (const char *)NULL);
    expect_page(&r[5], "<r>0123456789</r>");
}

static void test_head_of_a_stored_page_is_the_head_only(void **state)
{
    (void)state;
    const char *p = page(
        "/page/head", "hdr=Cache-Control:max-age%3D60&etag=%22th%22",
        S("<h>%s</h>", inc("/frag/head?body=H%24n&etag=%22fh%22&hdr=Cache-Control:max-age%3D30")));
    get(&r[0], p, (const char *)NULL);
    expect_page(&r[0], "<h>H1</h>");
    head(&r[1], p, (const char *)NULL);
    expect_status(&r[1], 200);
    assert_int_equal(r[1].body_len, 0);
    expect_header(&r[1], "Content-Type", "text/html");
    expect_header(&r[1], "Cache-Control", hv(&r[0], "Cache-Control"));
    expect_header(&r[1], "ETag", hv(&r[0], "ETag"));
    expect_no_header(&r[1], "Content-Length");
    expect_no_header(&r[1], "Content-Encoding");
    /* and the connection is fine for another request */
    expect_upstream("/page/head", 1);
    expect_upstream("/frag/head", 1);
    get(&r[2], p, (const char *)NULL);
    expect_page(&r[2], "<h>H1</h>");
}

/* HEAD before any GET stored the template: the answer must describe the
 * page a GET gets (RFC 9110 9.3.2, 8.6: a Content-Length in a HEAD
 * response must be the length a GET would send), not the raw template. */
static void test_head_of_a_page_not_stored_yet_describes_the_page(void **state)
{
    (void)state;
    const char *p =
        page("/page/head-first", "hdr=Cache-Control:max-age%3D60&etag=%22th%22",
             S("<h>%s</h>",
               inc("/frag/head-first?body=H%24n&etag=%22fh%22&hdr=Cache-Control:max-age%3D30")));
    head(&r[1], p, (const char *)NULL);
    get(&r[0], p, (const char *)NULL);
    expect_page(&r[0], "<h>H1</h>");
    expect_status(&r[1], 200);
    assert_int_equal(r[1].body_len, 0);
    const char *cl = http_response_header(&r[1], "Content-Length");
    if (cl && strtoul(cl, NULL, 10) != strlen("<h>H1</h>"))
        fail_msg("HEAD: Content-Length %s, but GET sends a %zu-byte page (the raw template's "
                 "length leaked)",
                 cl, strlen("<h>H1</h>"));
    if (strcmp(hv(&r[1], "Cache-Control"), hv(&r[0], "Cache-Control")) != 0 ||
        strcmp(hv(&r[1], "ETag"), hv(&r[0], "ETag")) != 0)
        fail_msg("HEAD: Cache-Control %s, ETag %s; GET: Cache-Control %s, ETag %s",
                 hv(&r[1], "Cache-Control"), hv(&r[1], "ETag"), hv(&r[0], "Cache-Control"),
                 hv(&r[0], "ETag"));
}

/* A conditional request on a route that stores nothing goes to the origin
 * with the client's validators: the origin can only judge the template,
 * not the page made of it.  The page has no Last-Modified and its own
 * ETag, so neither condition below can match it: the client must get the
 * page, here with a fragment that changed.  (The cached route gets this
 * right: tessera judges the conditions on the page itself.) */
static void test_a_conditional_request_on_a_page_not_stored_is_judged_on_the_page(void **state)
{
    (void)state;
    const char *lm = "Mon, 01 Jan 2024 00:00:00 GMT";
    const char *v = "etag=%22tc%22&lm=Mon,%2001%20Jan%202024%2000:00:00%20GMT";
    /* the fragment is on a route that caches nothing: D1, D2, ... */
    const char *tmpl = S("<c>%s</c>", inc("/dyn/cond?body=D%24n"));

    /* Stored route: 200 with the page each time. */
    const char *stored = page("/page/cond", v, tmpl);
    expect_get(stored, "<c>D1</c>");
    get(&r[1], stored, S("If-Modified-Since: %s", lm), (const char *)NULL);
    expect_page(&r[1], "<c>D2</c>");
    get(&r[1], stored, "If-None-Match: \"tc\"", (const char *)NULL);
    expect_page(&r[1], "<c>D3</c>");

    /* Route without cache. */
    const char *live = page("/live/cond", v, tmpl);
    expect_get(live, "<c>D4</c>");
    get(&r[1], live, S("If-Modified-Since: %s", lm), (const char *)NULL);
    if (r[1].status != 200 || !http_response_body_is(&r[1], "<c>D5</c>"))
        fail_msg("If-Modified-Since (the template's Last-Modified) on a page not stored: %d, "
                 "ETag %s, Last-Modified %s, body \"%s\"; expected 200 with the page "
                 "\"<c>D5</c>\" (the template's 304 was relayed as the page's)",
                 r[1].status, hv(&r[1], "ETag"), hv(&r[1], "Last-Modified"),
                 r[1].body ? r[1].body : "");
    get(&r[2], live, "If-None-Match: \"tc\"", (const char *)NULL);
    if (r[2].status != 200)
        fail_msg("If-None-Match: \"tc\" (the template's ETag) on a page not stored: %d, ETag %s; "
                 "expected 200 with the page",
                 r[2].status, hv(&r[2], "ETag"));
}

/* Templates that may not be stored are parsed for their one request: a
 * no-store template, and one with Set-Cookie (kept: it answers this
 * request alone). */
static void test_templates_that_may_not_be_stored(void **state)
{
    (void)state;
    const char *tmpl = S("<t>%s</t>", inc("/frag/transient?body=T%24n"));
    const char *ns = page("/page/no-store", "hdr=Cache-Control:no-store", tmpl);
    expect_get(ns, "<t>T1</t>");
    expect_header(&r[0], "Cache-Control", "no-store");
    expect_get(ns, "<t>T1</t>");
    expect_upstream("/page/no-store", 2);

    const char *sc = page("/page/set-cookie", "hdr=Set-Cookie:s%3D1", tmpl);
    expect_get(sc, "<t>T1</t>");
    expect_header(&r[0], "Set-Cookie", "s=1");
    expect_get(sc, "<t>T1</t>");
    expect_header(&r[0], "Set-Cookie", "s=1");
    expect_upstream("/page/set-cookie", 2);
    expect_upstream("/frag/transient", 1);
}

/* Relative src (RFC 3986 against the page's URL), and the other
 * constructs: <esi:remove>, <!--esi ... -->, <esi:comment/>. */
static void test_relative_src_and_the_other_constructs(void **state)
{
    (void)state;
    const char *tmpl = "<r><esi:include src=\"../../frag/rel1?body=R\"/>|"
                       "<esi:include src=\"rel2?body=S\"/>|"
                       "<esi:include src=\"?body=Q\"/>|"
                       "<esi:remove>no ESI here</esi:remove>"
                       "<!--esi <esi:include src=\"/frag/rel3?body=C\"/> -->"
                       "<esi:comment text=\"gone\"/><!-- kept --></r>";
    expect_get(page("/page/rel/p", NULL, tmpl), "<r>R|S|Q| C <!-- kept --></r>");
    expect_upstream("/frag/rel1", 1);
    expect_upstream("/page/rel/rel2", 1);
    expect_upstream("/page/rel/p", 2); /* the page and its "?body=Q" */
    expect_upstream("/frag/rel3", 1);
}

/* A fragment that varies on a field the page request passes on
 * (Accept-Language): one stored variant per value. */
static void test_fragments_keep_their_vary_variants(void **state)
{
    (void)state;
    const char *p = page("/page/vary", NULL,
                         S("<v>%s</v>", inc("/frag/vary?body=V%24n&hdr=Vary:Accept-Language")));
    get(&r[0], p, "Accept-Language: fr", (const char *)NULL);
    expect_page(&r[0], "<v>V1</v>");
    get(&r[0], p, "Accept-Language: en", (const char *)NULL);
    expect_page(&r[0], "<v>V2</v>");
    get(&r[0], p, "Accept-Language: fr", (const char *)NULL);
    expect_page(&r[0], "<v>V1</v>");
    expect_upstream("/frag/vary", 2);
    expect_upstream("/page/vary", 1);
    /* The page varies as its parts do: a cache after tessera must not
     * give the French page to everyone. */
    bool vary_al = false;
    for (size_t i = 0; i < r[0].nheaders; i++)
        if (strcasecmp(r[0].headers[i].name, "Vary") == 0 &&
            strcasecmp(r[0].headers[i].value, "Accept-Language") == 0)
            vary_al = true;
    assert_true(vary_al);
}

/* Pages on one kept-alive connection: pipelined, each framed; HTTP/1.0
 * gets a close-delimited page. */
static void test_pages_on_one_connection(void **state)
{
    (void)state;
    const char *p1 = page("/page/ka1", NULL, S("<1>%s</1>", inc("/frag/ka?body=K")));
    const char *p2 =
        page("/page/ka2", NULL,
             S("<2>%s%s</2>", inc("/frag/ka?body=K"), inc("/frag/ka-slow?body=L&body_delay=100")));
    conn[1] = client_connect(h.port, READ_MS);
    assert_non_null(conn[1]);
    const char *req = S("GET %s HTTP/1.1\r\nHost: " HOST "\r\n\r\n"
                        "GET %s HTTP/1.1\r\nHost: " HOST "\r\n\r\n"
                        "GET %s HTTP/1.1\r\nHost: " HOST "\r\nAccept-Encoding: gzip\r\n\r\n",
                        p2, p1, p2);
    assert_int_equal(client_send(conn[1], req, strlen(req)), 0);
    http_response_clear(&r[0]);
    expect_ok(client_read_response(conn[1], 0, &r[0], READ_MS));
    expect_page(&r[0], "<2>KL</2>");
    http_response_clear(&r[1]);
    expect_ok(client_read_response(conn[1], 0, &r[1], READ_MS));
    expect_page(&r[1], "<1>K</1>");
    http_response_clear(&r[2]);
    expect_ok(client_read_response(conn[1], 0, &r[2], READ_MS));
    expect_decoded(&r[2], "gzip", "<2>KL</2>");
    assert_false(r[2].closed);
    /* and once more on the same connection */
    assert_int_equal(client_send_request(conn[1], "GET", p1, "Host: " HOST, (const char *)NULL), 0);
    http_response_clear(&r[3]);
    expect_ok(client_read_response(conn[1], 0, &r[3], READ_MS));
    expect_page(&r[3], "<1>K</1>");

    /* HTTP/1.0: no chunking, the end of the page is the end of the
     * connection. */
    conn[2] = client_connect(h.port, READ_MS);
    assert_non_null(conn[2]);
    assert_int_equal(client_sendf(conn[2], "GET %s HTTP/1.0\r\nHost: " HOST "\r\n\r\n", p2), 0);
    http_response_clear(&r[4]);
    expect_ok(client_read_response(conn[2], 0, &r[4], READ_MS));
    expect_page(&r[4], "<2>KL</2>");
    assert_false(r[4].chunked);
    assert_true(r[4].closed);
    expect_upstream("/frag/ka", 1);
}

/* ---- hosts and cookies ------------------------------------------------------------------- */

static void test_absolute_src_only_to_allowed_hosts(void **state)
{
    (void)state;
    /* /abs/ allows frags.test besides the page's own host. */
    const char *p = page("/abs/ok", NULL,
                         S("<a>%s|%s|%s</a>", inc("http://frags.test/frag/abs1?body=X%24n"),
                           inc("//SHOP.test/frag/abs2?body=Y%24n"),
                           inc("HTTP://frags.TEST:80/frag/abs3?body=Z%24n")));
    expect_get(p, "<a>X1|Y1|Z1</a>");
    assert_non_null(strcasestr(origin_last("/frag/abs1"), "\r\nHost: frags.test\r\n"));
    assert_non_null(strcasestr(origin_last("/frag/abs2"), "\r\nHost: shop.test\r\n"));

    get(&r[0],
        page("/abs/deny", NULL, S("<a>%s</a>", inc("http://evil.test/frag/abs-evil?body=E"))),
        (const char *)NULL);
    expect_502(&r[0], "http://evil.test/frag/abs-evil?body=E",
               "src names a host esi_allow_hosts does not list");
    expect_upstream("/frag/abs-evil", 0);

    /* A route without esi_allow_hosts: only the page's own host. */
    get(&r[0],
        page("/page/abs-deny", NULL,
             S("<a>%s</a>", inc("http://frags.test/frag/abs-other?body=F"))),
        (const char *)NULL);
    expect_502(&r[0], "http://frags.test/frag/abs-other?body=F",
               "src names a host esi_allow_hosts does not list");
    expect_get(
        page("/page/abs-own", NULL, S("<a>%s</a>", inc("http://shop.test/frag/abs-own?body=O"))),
        "<a>O</a>");
    expect_upstream("/frag/abs-other", 0);
}

static void test_cookies_go_only_to_routes_that_ask(void **state)
{
    (void)state;
    const char *p = page("/page/cookies", NULL,
                         S("<k>%s|%s</k>", inc("/frag/ck1?body=1"), inc("/cfrag/ck2?body=2")));
    get(&r[0], p, "Cookie: sid=s3cret", "Authorization: Bearer t0k3n", "User-Agent: esi-test/1",
        "Accept-Language: fr", "X-Other: no", (const char *)NULL);
    expect_page(&r[0], "<k>1|2</k>");

    const char *off = origin_last("/frag/ck1");
    assert_non_null(strcasestr(off, "\r\nUser-Agent: esi-test/1\r\n"));
    assert_non_null(strcasestr(off, "\r\nAccept-Language: fr\r\n"));
    if (strcasestr(off, "\r\nCookie:") || strcasestr(off, "\r\nAuthorization:") ||
        strcasestr(off, "\r\nX-Other:"))
        fail_msg("esi_cookies off: the fragment's request carried them:\n%s", off);

    const char *on = origin_last("/cfrag/ck2");
    if (!strcasestr(on, "\r\nCookie: sid=s3cret\r\n") ||
        !strcasestr(on, "\r\nAuthorization: Bearer t0k3n\r\n"))
        fail_msg("esi_cookies on: the fragment's request lacks Cookie or Authorization:\n%s", on);
    if (strcasestr(on, "\r\nX-Other:"))
        fail_msg("esi_cookies on: X-Other reached the fragment:\n%s", on);
}

/* ---- timeout ---------------------------------------------------------------------------- */

static void test_an_include_slower_than_esi_timeout_fails(void **state)
{
    (void)state;
    /* /slow/ has esi_timeout 300ms. */
    long t0 = now_ms();
    get(&r[0], page("/slow/p", NULL, S("<s>%s</s>", inc("/frag/slow1?body=S&delay=1500"))),
        (const char *)NULL);
    long took = now_ms() - t0;
    expect_502(&r[0], "/frag/slow1?body=S&delay=1500", "timed out (esi_timeout)");
    if (took < 250 || took > 1200)
        fail_msg("the 502 came after %ld ms, expected about 300 (esi_timeout)", took);

    /* onerror="continue": the part is empty, the page in time. */
    t0 = now_ms();
    get(&r[1],
        page(
            "/slow/q", NULL,
            S("<s>%s|<esi:include src=\"/frag/slow2?body=S&delay=1500\" onerror=\"continue\"/></s>",
              inc("/frag/slow-fast?body=F"))),
        (const char *)NULL);
    took = now_ms() - t0;
    expect_page(&r[1], "<s>F|</s>");
    if (took > 1200)
        fail_msg("the page took %ld ms, expected about 300 (esi_timeout)", took);

    /* The same include within its time on a route with the default 10 s. */
    expect_get(page("/page/slow-ok", NULL, S("<s>%s</s>", inc("/frag/slow3?body=S&delay=400"))),
               "<s>S</s>");

    /* The timeout after the page's head: the connection is cut. */
    const char *p = page("/slow/r", NULL,
                         S("<s>%s|%s</s>", inc("/frag/slow-head?body=F"),
                           inc("/frag/slow-body?body=B&body_delay=1500")));
    conn[1] = client_connect(h.port, READ_MS);
    assert_non_null(conn[1]);
    assert_int_equal(client_send_request(conn[1], "GET", p, "Host: " HOST, (const char *)NULL), 0);
    http_response_clear(&r[2]);
    int rc = client_read_response(conn[1], 0, &r[2], READ_MS);
    if (rc != CLIENT_EOF && rc != CLIENT_ERROR)
        fail_msg("client rc %d (status %d), expected the connection cut", rc, r[2].status);
    assert_int_equal(r[2].status, 200);
    assert_false(r[2].complete);
    assert_true(proc_wait_log(h.error_log,
                              "ESI include \"/frag/slow-body?body=B&body_delay=1500\" failed: "
                              "timed out (esi_timeout), after the page's head: closing",
                              WAIT_MS));
}

/* ---- stats, metrics, access log ------------------------------------------------------- */

static void test_stats_count_one_page_exactly(void **state)
{
    (void)state;
    const char *esi = "\"esi\": {";
    /* B is stored before, by a client's own request (not an include). */
    expect_get("/frag/st-b?body=B", "B");
    const char *nested = page("/nest/st-e", NULL, S("<e>%s</e>", inc("/frag/st-f?body=F")));
    const char *p = page(
        "/page/stats", NULL,
        S("<s>%s|%s|<esi:include src=\"/frag/st-c?status=404\" alt=\"/frag/st-d?body=D\"/>|%s</s>",
          inc("/frag/st-a?body=A"), inc("/frag/st-b?body=B"), inc(nested)));
    const char *s0 = admin_doc(admin_port, "/stats", 0);
    const char *m0 = admin_doc(admin_port, "/metrics", 1);

    expect_get(p, "<s>A|B|D|<e>F</e></s>");

    /* pages: the page and the nested one; includes: A, B, C, D (C's alt),
     * E (the nested page) and F; hits: B; alt: D; errors: C. */
    long long want[] = {2, 6, 1, 1, 1};
    const char *keys[] = {"pages", "includes", "fragment_hits", "alt", "errors"};
    const char *s1 = NULL;
    long deadline = now_ms() + WAIT_MS;
    do {
        s1 = admin_doc(admin_port, "/stats", 2);
        if (json_int(s1, esi, "includes") - json_int(s0, esi, "includes") >= 6 &&
            json_int(s1, esi, "fragment_hits") - json_int(s0, esi, "fragment_hits") >= 1)
            break;
        sleep_ms(20);
    } while (now_ms() < deadline);
    const char *m1 = admin_doc(admin_port, "/metrics", 3);
    for (int i = 0; i < 5; i++) {
        long long d = json_int(s1, esi, keys[i]) - json_int(s0, esi, keys[i]);
        if (d != want[i])
            fail_msg("/stats esi.%s moved by %lld, expected %lld", keys[i], d, want[i]);
        char series[64];
        snprintf(series, sizeof series, "tessera_esi_%s_total", keys[i]);
        d = metric(m1, series) - metric(m0, series);
        if (d != want[i])
            fail_msg("/metrics %s moved by %lld, expected %lld", series, d, want[i]);
    }
}

/* The line of the access log containing needle (waits for it). */
static const char *access_line(const char *needle)
{
    if (!proc_wait_log(h.access_log, needle, WAIT_MS))
        fail_msg("no access log line with %s", needle);
    char *log = tmpdir_read_file(h.access_log, NULL);
    assert_non_null(log);
    keep(log);
    char *at = strstr(log, needle);
    assert_non_null(at);
    while (at > log && at[-1] != '\n')
        at--;
    char *nl = strchr(at, '\n');
    return S("%.*s", nl ? (int)(nl - at) : (int)strlen(at), at);
}

static bool ends_with(const char *s, const char *end)
{
    size_t n = strlen(s), k = strlen(end);
    return n >= k && strcmp(s + n - k, end) == 0;
}

static void test_the_access_log_marks_subrequests(void **state)
{
    (void)state;
    const char *p = page("/page/log", NULL,
                         S("<g>%s%s</g>", inc("/frag/log-a?body=LA"), inc("/frag/log-b?body=LB")));
    expect_get(p, "<g>LALB</g>");
    expect_get(p, "<g>LALB</g>");
    const char *a = access_line("\"GET /frag/log-a?body=LA HTTP/1.1\" 200 2 ");
    if (!ends_with(a, " MISS esi"))
        fail_msg("the fragment's line does not end with \" MISS esi\": %s", a);
    const char *pl = access_line("\"GET /page/log?");
    if (ends_with(pl, " esi") || !ends_with(pl, " MISS"))
        fail_msg("the page's line: %s", pl);
    /* the second page: the fragments are hits */
    if (!proc_wait_log(h.access_log, "\"GET /frag/log-b?body=LB HTTP/1.1\" 200 2 \"-\" \"-\" ",
                       WAIT_MS))
        fail_msg("no access log line for /frag/log-b");
    char *log = tmpdir_read_file(h.access_log, NULL);
    keep(log);
    int hits = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n"))
        if (strstr(line, "GET /frag/log-b?body=LB ") && ends_with(line, " HIT esi"))
            hits++;
    assert_int_equal(hits, 1);
}

/* ---- streaming ------------------------------------------------------------------------ */

struct stream_seen {
    char body[1024];
    size_t len;
    long t0;
    long first_part; /* ms after t0 when "<h>ONE<m>" had arrived, or -1 */
};

static int stream_cb(void *ctx, const char *data, size_t len)
{
    struct stream_seen *s = ctx;
    if (s->len + len >= sizeof s->body)
        return 1;
    memcpy(s->body + s->len, data, len);
    s->len += len;
    s->body[s->len] = '\0';
    if (s->first_part < 0 && strstr(s->body, "<h>ONE<m>"))
        s->first_part = now_ms() - s->t0;
    return 0;
}

static void test_parts_stream_before_a_slow_include(void **state)
{
    (void)state;
    const char *p = page(
        "/page/stream", NULL,
        S("<h>%s<m>%s<e>", inc("/frag/st1?body=ONE"), inc("/frag/st2?body=TWO&body_delay=1500")));
    conn[1] = client_connect(h.port, READ_MS);
    assert_non_null(conn[1]);
    struct stream_seen seen = {.t0 = now_ms(), .first_part = -1};
    assert_int_equal(client_send_request(conn[1], "GET", p, "Host: " HOST, (const char *)NULL), 0);
    expect_ok(client_read_response_cb(conn[1], 0, &r[0], READ_MS, stream_cb, &seen));
    long total = now_ms() - seen.t0;
    expect_status(&r[0], 200);
    assert_true(r[0].chunked);
    assert_string_equal(seen.body, "<h>ONE<m>TWO<e>");
    if (seen.first_part < 0 || seen.first_part > 700)
        fail_msg("the parts before the slow include arrived after %ld ms (the page took %ld)",
                 seen.first_part, total);
    if (total < 1400)
        fail_msg("the page ended after %ld ms, before the slow include's body", total);
}

/* ---- review findings: big includes, slow clients, gzip, HEAD, host ------------- */

/* The origin's len=N body: byte i is 'a' + i % 26.  Checks body[off..off+n). */
static void expect_pattern_at(const char *body, size_t off, size_t n, int line)
{
    for (size_t i = 0; i < n; i++)
        if (body[off + i] != (char)('a' + i % 26))
            fail_msg("line %d: byte %zu of the fragment is '%c'", line, i, body[off + i]);
}

/* One big fragment twice in a page, not stored yet: the second include
 * waits for the fill the first one leads, and the page's head waits for
 * both; the first include must not wait for the page meanwhile (that was
 * a deadlock until esi_timeout, and a 502). */
static void test_a_big_fragment_included_twice_is_fetched_once(void **state)
{
    (void)state;
    const size_t n = 2000000;
    const char *f = "/frag/big-twice?len=2000000";
    const char *p = page("/page/big-twice", NULL, S("[%s|%s]", inc(f), inc(f)));
    get(&r[0], p, (const char *)NULL);
    assert_int_equal(r[0].status, 200);
    assert_int_equal(r[0].body_len, 2 * n + 3);
    assert_int_equal(r[0].body[0], '[');
    expect_pattern_at(r[0].body, 1, n, __LINE__);
    assert_int_equal(r[0].body[1 + n], '|');
    expect_pattern_at(r[0].body, 2 + n, n, __LINE__);
    expect_upstream("/frag/big-twice", 1);
}

/* esi_timeout counts the time an include waits for its server, not for
 * the page's client: a client that reads late still gets the whole page. */
static void test_a_slow_client_does_not_time_out_an_include(void **state)
{
    (void)state;
    const size_t n = 6000000; /* far more than the socket buffers and the slot hold */
    const char *p = page("/slow/late-reader", NULL, S("<%s>", inc("/frag/late?len=6000000")));
    conn[1] = client_connect(h.port, READ_MS);
    assert_non_null(conn[1]);
    assert_int_equal(client_send_request(conn[1], "GET", p, "Host: " HOST, (const char *)NULL), 0);
    sleep_ms(1000); /* esi_timeout is 300ms on /slow/ */
    http_response_clear(&r[0]);
    expect_ok(client_read_response(conn[1], 0, &r[0], READ_MS));
    assert_int_equal(r[0].status, 200);
    assert_int_equal(r[0].body_len, n + 2);
    expect_pattern_at(r[0].body, 1, n, __LINE__);
}

/* A gzip fragment is inflated in steps the slot can hold: a client that
 * does not read makes the include wait, whatever the gzip inflates to. */
static void test_a_gzip_fragment_is_inflated_in_bounded_steps(void **state)
{
    (void)state;
    const size_t n = 60000000; /* about 170 KB of gzip */
    const char *p =
        page("/page/gzip-bomb", NULL, S("<%s>", inc("/frag/gzip-bomb?len=60000000&gzip=always")));
    long rss0 = proc_rss_kb(h.tessera->pid);
    assert_true(rss0 > 0);
    conn[1] = client_connect(h.port, READ_MS);
    assert_non_null(conn[1]);
    assert_int_equal(client_send_request(conn[1], "GET", p, "Host: " HOST, (const char *)NULL), 0);
    sleep_ms(800);
    long rss1 = proc_rss_kb(h.tessera->pid);
    print_message("      tessera RSS %ld kB before, %ld kB with the reader stalled\n", rss0, rss1);
    if (rss1 - rss0 > 24 * 1024)
        fail_msg("RSS grew by %ld kB while the client did not read", rss1 - rss0);
    http_response_clear(&r[0]);
    expect_ok(client_read_response(conn[1], 0, &r[0], 20000));
    assert_int_equal(r[0].status, 200);
    assert_int_equal(r[0].body_len, n + 2);
    expect_pattern_at(r[0].body, 1, n, __LINE__);
}

/* A HEAD on an ESI route goes upstream as GET; when the answer is not a
 * template, the head is relayed and the body is not read. */
static void test_head_of_a_plain_response_on_an_esi_route_reads_no_body(void **state)
{
    (void)state;
    head(&r[0], "/page/plain-big.bin?ctype=application/octet-stream&len=50000000",
         (const char *)NULL);
    assert_int_equal(r[0].status, 200);
    expect_header(&r[0], "Content-Length", "50000000");
    assert_int_equal(r[0].body_len, 0);
    const char *last = origin_last("/page/plain-big.bin");
    assert_non_null(strstr(last, "GET /page/plain-big.bin"));
    /* the body was not read: tessera still answers at once */
    get(&r[1], page("/page/after-head", NULL, "<p>ok</p>"), (const char *)NULL);
    expect_page(&r[1], "<p>ok</p>");
}

/* A request in absolute-form: its authority is the page's host (as the
 * router saw it), not a Host field that says otherwise. */
static void test_the_page_host_of_an_absolute_form_request(void **state)
{
    (void)state;
    const char *p = page(
        "/abs/absolute-form", NULL,
        S("<%s|%s>", inc("/frag/rel-af?body=R"), inc("http://elsewhere.test/frag/abs-af?body=X")));
    get(&r[0], S("http://" HOST "%s", p), "Host: elsewhere.test", (const char *)NULL);
    assert_int_equal(r[0].status, 502);
    assert_non_null(strstr(r[0].body, "esi_allow_hosts"));
    expect_upstream("/frag/abs-af", 0);
}

/* esi_head_wait: a page whose include is slow to answer sends its head
 * when the wait is over, promising nothing (no-store, no ETag), streams
 * what is ready, and may still fall back to alt or nothing afterwards. */
static void test_esi_head_wait_sends_an_early_head(void **state)
{
    (void)state;
    const char *p = page("/early/slow", "etag=%22te%22&hdr=Cache-Control:max-age%3D60",
                         S("<h>%s<m>%s<e>", inc("/frag/early-fast?body=ONE&etag=%22f%22"),
                           inc("/frag/early-slow?body=TWO&delay=1200&etag=%22s%22")));
    conn[1] = client_connect(h.port, READ_MS);
    assert_non_null(conn[1]);
    struct stream_seen seen = {.t0 = now_ms(), .first_part = -1};
    assert_int_equal(client_send_request(conn[1], "GET", p, "Host: " HOST, (const char *)NULL), 0);
    expect_ok(client_read_response_cb(conn[1], 0, &r[0], READ_MS, stream_cb, &seen));
    long total = now_ms() - seen.t0;
    expect_status(&r[0], 200);
    assert_string_equal(seen.body, "<h>ONE<m>TWO<e>");
    expect_header(&r[0], "Cache-Control", "no-store");
    expect_no_header(&r[0], "ETag");
    if (seen.first_part < 0 || seen.first_part > 700)
        fail_msg("the first parts arrived after %ld ms (the page took %ld)", seen.first_part,
                 total);
    if (total < 1100)
        fail_msg("the page ended after %ld ms, before the slow include", total);

    /* After an early head a failing include still gets its alt, or nothing. */
    expect_get(page("/early/fallback", NULL,
                    S("[<esi:include src=\"/frag/early-bad?status=500&delay=300\" "
                      "alt=\"/frag/early-alt?body=ALT\"/>|"
                      "<esi:include src=\"/frag/early-bad2?status=503&delay=300\" "
                      "onerror=\"continue\"/>]")),
               "[ALT|]");
    /* ... but not one whose bytes already went out: the page is cut. */
    const char *broken =
        page("/early/broken", NULL,
             "[<esi:include src=\"/frag/early-part?len=20000&drip=300&abort=10000\" "
             "alt=\"/frag/early-alt2?body=ALT\"/>|<esi:include "
             "src=\"/frag/early-slow2?body=S&delay=700\"/>]");
    conn[2] = client_connect(h.port, READ_MS);
    assert_non_null(conn[2]);
    assert_int_equal(client_send_request(conn[2], "GET", broken, "Host: " HOST, (const char *)NULL),
                     0);
    http_response_clear(&r[2]);
    int rc = client_read_response(conn[2], 0, &r[2], READ_MS);
    if (rc == CLIENT_OK)
        fail_msg("a page whose part broke after being sent came complete (%zu bytes)",
                 r[2].body_len);
    assert_int_equal(r[2].status, 200);
    assert_false(r[2].complete);
    expect_upstream("/frag/early-alt2", 0);

    /* Answered from memory, the includes are there in time: a full head. */
    get(&r[1], p, (const char *)NULL);
    expect_page(&r[1], "<h>ONE<m>TWO<e>");
    assert_non_null(hv(&r[1], "ETag"));
    assert_non_null(strstr(hv(&r[1], "Cache-Control"), "max-age="));
}

/* A stale template within stale-while-revalidate: the page is assembled
 * from it at once, and the background refresh stores the new template
 * parsed (the next page shows it). */
static void test_a_stale_template_is_refreshed_in_the_background(void **state)
{
    (void)state;
    const char *p = page("/swr/page", "hdr=Cache-Control:max-age%3D1",
                         S("<t%s>%s</t>", "$n", inc("/frag/swr-part?body=P")));
    /* "$n" in the template: which fetch of the page it came from */
    expect_get(p, "<t1>P</t>");
    sleep_ms(1300);
    get(&r[0], p, (const char *)NULL);
    expect_page(&r[0], "<t1>P</t>");
    expect_header(&r[0], "X-Cache", "STALE");
    long t0 = now_ms();
    while (harness_origin_count(&h, 0, "/swr/page") < 2 && now_ms() - t0 < WAIT_MS)
        sleep_ms(20);
    expect_upstream("/swr/page", 2);
    sleep_ms(100); /* the refresh is stored once its body has ended */
    get(&r[1], p, (const char *)NULL);
    expect_page(&r[1], "<t2>P</t>");
    expect_header(&r[1], "X-Cache", "HIT");
    expect_upstream("/frag/swr-part", 1);
}

/* A gzip fragment answered from the cache is inflated too (the first
 * answer came from the origin through the slot's parser; the second from
 * the stored object). */
static void test_a_cached_gzip_fragment_is_inflated(void **state)
{
    (void)state;
    const char *p = page("/page/gz-cached", NULL,
                         S("<p>[%s]</p>", inc("/frag/gz-cached?body=HELLO&gzip=always")));
    for (int i = 0; i < 3; i++)
        expect_get(p, "<p>[HELLO]</p>");
    expect_upstream("/frag/gz-cached", 1);
}

/* A page cut after its head reaches an HTTP/1.0 client, which reads to the
 * end of the connection, as a reset (ECONNRESET), never as the clean end a
 * whole close-delimited page has.  (tests/support/client.c takes a reset
 * for an end, so the socket is read here.) */
static void test_a_cut_page_resets_an_http10_client(void **state)
{
    (void)state;
    const char *p = page("/early/cut10", NULL,
                         "<p>A<esi:include src=\"/frag/cut10?status=500&delay=300\"/>B</p>");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)h.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {.tv_sec = READ_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const char *req = S("GET %s HTTP/1.0\r\nHost: " HOST "\r\n\r\n", p);
    assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    char buf[4096];
    size_t got = 0;
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        got += (size_t)n;
    int err = n < 0 ? errno : 0;
    close(fd);
    if (err != ECONNRESET)
        fail_msg("after %zu bytes the page ended with %s, expected a reset", got,
                 n == 0 ? "a clean close" : strerror(err));
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, teardown)
    const struct CMUnitTest tests[] = {
        T(test_each_fragment_keeps_its_own_ttl),
        T(test_a_fragment_is_fetched_once_for_many_pages),
        T(test_a_template_not_stored_is_assembled_per_request),
        T(test_a_tag_purge_refreshes_the_fragment_in_every_page),
        T(test_a_tag_purge_reaches_the_pages_of_a_second_node),
        T(test_alt_and_onerror_continue),
        T(test_a_failed_include_without_alt_or_continue_is_a_502),
        T(test_a_failure_after_the_head_cuts_the_connection),
        T(test_nesting_works_to_esi_max_depth_and_fails_beyond),
        T(test_a_page_that_includes_itself_fails),
        T(test_esi_max_includes_counts_nested_includes_and_alts),
        T(test_the_assembled_page_is_compressed_exactly),
        T(test_a_gzip_template_from_the_upstream_assembles),
        T(test_esi_auto_processes_only_what_asks),
        T(test_markup_is_never_executed_where_esi_is_off),
        T(test_the_derived_etag_answers_304),
        T(test_the_head_merges_the_parts_cache_control),
        T(test_head_of_a_stored_page_is_the_head_only),
        T(test_head_of_a_page_not_stored_yet_describes_the_page),
        T(test_a_conditional_request_on_a_page_not_stored_is_judged_on_the_page),
        T(test_templates_that_may_not_be_stored),
        T(test_relative_src_and_the_other_constructs),
        T(test_fragments_keep_their_vary_variants),
        T(test_pages_on_one_connection),
        T(test_absolute_src_only_to_allowed_hosts),
        T(test_cookies_go_only_to_routes_that_ask),
        T(test_an_include_slower_than_esi_timeout_fails),
        T(test_stats_count_one_page_exactly),
        T(test_the_access_log_marks_subrequests),
        T(test_parts_stream_before_a_slow_include),
        T(test_a_big_fragment_included_twice_is_fetched_once),
        T(test_a_slow_client_does_not_time_out_an_include),
        T(test_a_gzip_fragment_is_inflated_in_bounded_steps),
        T(test_head_of_a_plain_response_on_an_esi_route_reads_no_body),
        T(test_the_page_host_of_an_absolute_form_request),
        T(test_esi_head_wait_sends_an_early_head),
        T(test_a_stale_template_is_refreshed_in_the_background),
        T(test_a_cached_gzip_fragment_is_inflated),
        T(test_a_cut_page_resets_an_http10_client),
    };
#undef T
    return cmocka_run_group_tests_name("esi", tests, group_setup, group_teardown);
}
