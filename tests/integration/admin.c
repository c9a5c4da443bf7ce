/*
 * tests/integration/admin.c: purging, the admin listener, stats and
 * metrics, and the command-line client (issue 8), end to end: build/tessera
 * in front of build/tessera-origin, with an `admin { }` block on a free
 * loopback port.
 *
 * What is checked, as man/tessera.conf.5 (ADMIN CONTEXT, tags_header,
 * purge_sync) and proxy/admin.h, proxy/purge.h, cache/ban.h describe it:
 *   - the admin listener's gates: bearer token (missing, wrong of the same
 *     and of another length, right), `token off;`, the allow list (403);
 *   - each purge kind (url, prefix with and without host, regex, tag from
 *     Surrogate-Key, Cache-Tag and a custom tags_header, a list of tags,
 *     all) removes exactly what it matches: per URL MISS or HIT afterwards,
 *     the origin's /__count, and the "purged" number of the answer;
 *   - a soft purge: STALE at once, one background revalidation, then HIT;
 *   - a URL purge removes every Vary variant and every coded variant;
 *   - the PURGE method and the errors (405, 404, 400 with the parser's
 *     message, 413);
 *   - /stats and /metrics deltas for an exact sequence of hits and misses;
 *   - two nodes sharing memcached: a purge on one reaches the other within
 *     purge_sync;
 *   - a lost purge log (memcached flushed, or an entry that never comes):
 *     the other node counts a log reset and drops what it stored before;
 *   - /health, and 503 "draining" after SIGTERM while a request is in flight;
 *   - `tessera purge` and `tessera stats`: output and exit codes;
 *   - tags headers removed from client responses unless `keep`;
 *   - `tessera -t` refusing `token off;` on a non-loopback admin listener;
 *   - a purge sent right after a store removes it, and an object stored
 *     right after a purge's answer is not touched by it.
 *
 * Each test has its own scene (setup: temp dir and origin; the test starts
 * tessera with the config it needs; teardown: everything).  All proxy
 * requests send "Host: shop.test" unless the test is about hosts.
 * Responses and outputs live in file statics so the teardown frees them
 * even when an assertion fails mid-test.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/clock.h"
#include "tests/support/expect.h"
#include "tests/support/harness.h"
#include "tests/support/statsdoc.h"

#define READ_MS 5000
#define HOST "shop.test"
#define TOKEN "adm1n-T0ken_for.the-tests~0123456789"
/* How long a test waits for something that happens in the background. */
#define WAIT_MS 3000
/* Every route stores for 100 s whatever the origin says (no Cache-Control
 * needed); /sw/ serves stale while revalidating; /keep/ keeps the tags
 * headers; /xt/ reads its tags from X-Tags. */
#define ROUTES                                                                                     \
    "route /sw/ { backend app; cache on; ttl 100s; stale_while_revalidate 10s; }\n"                \
    "route /keep/ { backend app; cache on; ttl 100s; tags_header Surrogate-Key keep; }\n"          \
    "route /xt/ { backend app; cache on; ttl 100s; tags_header X-Tags; }\n"                        \
    "route /c/ { backend app; cache on; ttl 100s; }\n"                                             \
    "route default { backend app; cache on; ttl 100s; }\n"

static struct harness h;
static int admin_port;              /* h.tessera's admin listener */
static const char *token_directive; /* "token_file PATH;" */
static struct proc *mcd;            /* memcached (two-node test) */
static struct proc *node_b;         /* the second node (two-node test) */
static struct proc *cli;            /* a command-line client run */
static char *cli_out, *cli_err;

#define NRESP 8
static struct http_response r[NRESP];
static struct client *conn;
static struct client *slow; /* the request in flight while draining */
#define NTEXT 6
static char *text[NTEXT]; /* stats and metrics documents kept for deltas */

/* ---- vocabulary ---------------------------------------------------------- */

/* METHOD TARGET on a fresh connection to port with the header lines (NULL
 * terminated array) and an optional body (its Content-Length added); the
 * response is read into *resp. */
static void request_v(int port, struct http_response *resp, const char *method, const char *target,
                      const char *const *headers, const char *body)
{
    int rc =
        http_exchange(port, method, target, headers, body, body ? strlen(body) : 0, resp, READ_MS);
    if (rc != CLIENT_OK)
        fail_msg("%s %s: no response (client rc %d)", method, target, rc);
}

/* GET target from the proxy on port for host, with extra header lines. */
static void get_at(int port, struct http_response *resp, const char *host, const char *target, ...)
    __attribute__((sentinel));
static void get_at(int port, struct http_response *resp, const char *host, const char *target, ...)
{
    char host_line[128];
    const char *lines[12];
    size_t n = 0;
    snprintf(host_line, sizeof host_line, "Host: %s", host);
    lines[n++] = host_line;
    va_list ap;
    va_start(ap, target);
    const char *line;
    while ((line = va_arg(ap, const char *)) != NULL) {
        assert_true(n < 10);
        lines[n++] = line;
    }
    va_end(ap);
    lines[n] = NULL;
    request_v(port, resp, "GET", target, lines, NULL);
}

static void expect_x_cache_at(const struct http_response *resp, const char *what,
                              const char *target, int line)
{
    const char *v = http_response_header(resp, "X-Cache");
    if (!v || strcmp(v, what) != 0)
        fail_msg(
            "line %d: %s: X-Cache %s (Cache-Status: %s), expected %s", line, target, v ? v : "none",
            http_response_header(resp, "Cache-Status") ? http_response_header(resp, "Cache-Status")
                                                       : "none",
            what);
}

/* GET target for host from the group's tessera: status 200 and X-Cache. */
static void expect_cache_at(const char *host, const char *target, const char *what, int line)
{
    get_at(h.port, &r[0], host, target, (const char *)NULL);
    if (r[0].status != 200)
        fail_msg("line %d: %s%s: status %d", line, host, target, r[0].status);
    expect_x_cache_at(&r[0], what, target, line);
}
#define expect_cache(target, what) expect_cache_at(HOST, (target), (what), __LINE__)
#define expect_cache_host(host, target, what) expect_cache_at((host), (target), (what), __LINE__)

/* A first request stores target (MISS), a second one hits. */
#define warm_host(host, target)                                                                    \
    do {                                                                                           \
        expect_cache_host((host), (target), "MISS");                                               \
        expect_cache_host((host), (target), "HIT");                                                \
    } while (0)
#define warm(target) warm_host(HOST, (target))

/* The origin served exactly n requests for path (without query). */
static void expect_upstream_at(const char *path, long n, int line)
{
    long got = harness_origin_count(&h, 0, path);
    if (got != n)
        fail_msg("line %d: origin served %ld request(s) for %s, expected %ld", line, got, path, n);
}
#define expect_upstream(path, n) expect_upstream_at((path), (n), __LINE__)

/* ---- the admin listener -------------------------------------------------- */

#define BEARER "Authorization: Bearer " TOKEN

/* METHOD TARGET on the admin listener at port with the token, an optional
 * JSON body and no other header but Host. */
static void admin_at(int port, struct http_response *resp, const char *method, const char *target,
                     const char *body)
{
    const char *lines[] = {BEARER, body ? "Content-Type: application/json" : NULL, NULL};
    request_v(port, resp, method, target, lines, body);
}

static void admin(struct http_response *resp, const char *method, const char *target,
                  const char *body)
{
    admin_at(admin_port, resp, method, target, body);
}

/* The integer that follows "key": in s, the first after anchor (from the
 * start when anchor is NULL); fails the test when there is none. */
static long long json_int_at(const char *s, const char *anchor, const char *key, int line)
{
    long long v = 0;
    char why[300];
    if (!statsdoc_json_int(s, anchor, key, &v, why, sizeof why))
        fail_msg("line %d: %s", line, why);
    return v;
}
#define json_int(s, anchor, key) json_int_at((s), (anchor), (key), __LINE__)

/* The "error" string of an error answer, unescaped (\" and \\ only). */
static const char *error_of(const struct http_response *resp)
{
    static char out[512];
    const char *p = resp->body ? strstr(resp->body, "\"error\":\"") : NULL;
    if (!p)
        fail_msg("no \"error\" in the answer %d: %s", resp->status,
                 resp->body ? resp->body : "(no body)");
    p += strlen("\"error\":\"");
    size_t n = 0;
    while (*p && *p != '"' && n < sizeof out - 1) {
        if (*p == '\\' && p[1])
            p++;
        out[n++] = *p++;
    }
    out[n] = '\0';
    return out;
}

/* 400 (or status) whose error message starts with want. */
static void expect_error_at(const struct http_response *resp, int status, const char *want,
                            int line)
{
    if (resp->status != status)
        fail_msg("line %d: status %d (%s), expected %d", line, resp->status,
                 resp->body ? resp->body : "", status);
    expect_header(resp, "Content-Type", "application/json");
    const char *e = error_of(resp);
    if (strncmp(e, want, strlen(want)) != 0)
        fail_msg("line %d: error \"%s\", expected \"%s...\"", line, e, want);
}
#define expect_error(resp, status, want) expect_error_at((resp), (status), (want), __LINE__)

/* POST /purge with json: 200, kind as given; returns "purged" (the answer
 * stays in r[5]). */
static long long purge_at(int port, const char *json, const char *kind, int line)
{
    admin_at(port, &r[5], "POST", "/purge", json);
    if (r[5].status != 200)
        fail_msg("line %d: POST /purge %s: %d %s", line, json, r[5].status,
                 r[5].body ? r[5].body : "");
    char want[64];
    snprintf(want, sizeof want, "\"kind\":\"%s\"", kind);
    if (!r[5].body || !strstr(r[5].body, want))
        fail_msg("line %d: POST /purge %s: answer %s has no %s", line, json, r[5].body, want);
    return json_int_at(r[5].body, NULL, "purged", line);
}
#define purge(json, kind) purge_at(admin_port, (json), (kind), __LINE__)

/* The body of GET path on the admin listener at port (200), a copy in
 * text[i]. */
static const char *admin_doc(int port, const char *path, int i)
{
    admin_at(port, &r[4], "GET", path, NULL);
    if (r[4].status != 200 || !r[4].body)
        fail_msg("GET %s: %d", path, r[4].status);
    free(text[i]);
    text[i] = strdup(r[4].body);
    assert_non_null(text[i]);
    return text[i];
}

/* The value of the sample `series` (name{labels}) in a metrics text. */
static long long metric_at(const char *doc, const char *series, int line)
{
    long long v = 0;
    if (!statsdoc_metric(doc, series, &v))
        fail_msg("line %d: no sample %s in the metrics", line, series);
    return v;
}
#define metric(doc, series) metric_at((doc), (series), __LINE__)

/* ---- starting tessera ---------------------------------------------------- */

/* The admin block's body with the token file. */
static const char *with_token(void)
{
    return token_directive;
}

/* Start tessera in front of origin 0 with admin block body admin_body
 * ("token off;", with_token(), ...; NULL: no admin block) and the routes. */
static bool start(const char *admin_body, const char *routes)
{
    char block[1024] = "";
    admin_port = proc_free_port();
    if (admin_port <= 0)
        return false;
    if (admin_body)
        snprintf(block, sizeof block, "admin {\n    listen 127.0.0.1:%d;\n    %s\n}\n", admin_port,
                 admin_body);
    proc_free(&h.tessera);
    return harness_tessera(&h, "backend app { server 127.0.0.1:%d; }\n%s%s", h.origin_port[0],
                           block, routes);
}

/* Run BUILD/tessera with the arguments (NULL-terminated); its exit code,
 * stdout in cli_out and stderr in cli_err. */
static int run_cli(const char *arg, ...) __attribute__((sentinel));
static int run_cli(const char *arg, ...)
{
    char bin[512];
    const char *argv[16];
    size_t n = 0;
    snprintf(bin, sizeof bin, "%s/tessera", proc_build_dir());
    argv[n++] = bin;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a; a = va_arg(ap, const char *)) {
        assert_true(n < 15);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    proc_free(&cli);
    cli = proc_start(h.td, "cli", argv);
    assert_non_null(cli);
    int rc = proc_wait_exit(cli, 15000);
    free(cli_out);
    free(cli_err);
    cli_out = tmpdir_read_file(cli->out_path, NULL);
    cli_err = tmpdir_read_file(cli->err_path, NULL);
    assert_non_null(cli_out);
    assert_non_null(cli_err);
    proc_free(&cli);
    return rc;
}

static int setup(void **state)
{
    (void)state;
    if (!harness_init(&h, "admin") || !harness_origin(&h, 0, NULL))
        return -1;
    const char *path = tmpdir_write(h.td, "admin.token", "%s\n", TOKEN);
    if (!path)
        return -1;
    static char directive[600];
    snprintf(directive, sizeof directive, "token_file %s;", path);
    token_directive = directive;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    client_free(&conn);
    client_free(&slow);
    for (int i = 0; i < NRESP; i++)
        http_response_clear(&r[i]);
    for (int i = 0; i < NTEXT; i++) {
        free(text[i]);
        text[i] = NULL;
    }
    free(cli_out);
    free(cli_err);
    cli_out = cli_err = NULL;
    proc_free(&cli);
    proc_free(&node_b);
    harness_free(&h);
    proc_free(&mcd);
    admin_port = 0;
    return 0;
}

/* ---- 1. the gates --------------------------------------------------------- */

static void test_the_token_and_the_allow_list(void **state)
{
    (void)state;
    assert_true(start(with_token(), ROUTES));

    /* No token. */
    request_v(admin_port, &r[0], "GET", "/health", NULL, NULL);
    expect_error(&r[0], 401, "a bearer token is required");
    assert_string_equal(error_of(&r[0]), "a bearer token is required");
    expect_header(&r[0], "WWW-Authenticate", "Bearer");
    assert_true(r[0].closed);

    /* Another scheme. */
    const char *basic[] = {"Authorization: Basic YWRtaW46YWRtaW4=", NULL};
    request_v(admin_port, &r[0], "GET", "/health", basic, NULL);
    expect_error(&r[0], 401, "a bearer token is required");

    /* A wrong token of the same length, a prefix, a longer one. */
    char same[128];
    snprintf(same, sizeof same, "Authorization: Bearer %s", TOKEN);
    same[strlen(same) - 1] ^= 1;
    const char *wrong[][2] = {
        {same, NULL}, {"Authorization: Bearer adm1n", NULL}, {BEARER "x", NULL}};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        request_v(admin_port, &r[0], "GET", "/stats", wrong[i], NULL);
        expect_error(&r[0], 401, "invalid token");
        assert_string_equal(error_of(&r[0]), "invalid token");
    }
    /* A wrong token purges nothing. */
    warm("/gate/a");
    const char *wrong_purge[] = {same, "Content-Type: application/json", NULL};
    request_v(admin_port, &r[0], "POST", "/purge", wrong_purge, "{\"all\": true}");
    expect_error(&r[0], 401, "invalid token");
    expect_cache("/gate/a", "HIT");

    /* The right one (the scheme is case-insensitive). */
    admin(&r[0], "GET", "/health", NULL);
    expect_status(&r[0], 200);
    expect_body(&r[0], "{\"status\":\"ok\"}\n");
    const char *lower[] = {"authorization: bearer " TOKEN, NULL};
    request_v(admin_port, &r[0], "GET", "/health", lower, NULL);
    expect_status(&r[0], 200);

    /* token off: no Authorization needed. */
    assert_true(start("token off;", ROUTES));
    request_v(admin_port, &r[0], "GET", "/health", NULL, NULL);
    expect_status(&r[0], 200);
    expect_body(&r[0], "{\"status\":\"ok\"}\n");

    /* An allow list without 127.0.0.1: 403 and closed, token or not. */
    assert_true(start("token off;\n    allow 10.0.0.0/8 ::1/128;", ROUTES));
    request_v(admin_port, &r[0], "GET", "/health", NULL, NULL);
    expect_status(&r[0], 403);
    assert_true(r[0].closed);
    assert_non_null(r[0].body);
    assert_non_null(strstr(r[0].body, "address not allowed"));
    /* The 403 is written as the connection is accepted, before any byte
     * of a request is read: a client that sends a body may find the
     * connection gone mid-send, so this one only reads.  With a token
     * configured and a purge meant, the same. */
    assert_true(start("token_file admin.token;\n    allow 10.0.0.0/8;", ROUTES));
    warm("/gate/b");
    http_response_clear(&r[0]);
    conn = client_connect(admin_port, READ_MS);
    assert_non_null(conn);
    expect_ok(client_read_response(conn, 0, &r[0], READ_MS));
    expect_status(&r[0], 403);
    assert_true(client_expect_closed(conn, READ_MS));
    client_free(&conn);
    expect_cache("/gate/b", "HIT");
    /* ...and 127.0.0.0/8 in the list lets it in again. */
    assert_true(start("token_file admin.token;\n    allow 10.0.0.0/8 127.0.0.1;", ROUTES));
    admin(&r[0], "GET", "/health", NULL);
    expect_status(&r[0], 200);
}

/* ---- 2. each purge kind ------------------------------------------------- */

static void test_each_purge_kind_removes_what_it_matches(void **state)
{
    (void)state;
    assert_true(start(with_token(), ROUTES));

    /* url: that URL on that host, nothing else (not another query). */
    warm("/u/a?x=1");
    warm("/u/a?x=2");
    warm("/u/b");
    warm_host("other.test", "/u/a?x=1");
    expect_upstream("/u/a", 3);
    assert_int_equal(purge("{\"url\": \"http://shop.test/u/a?x=1\"}", "key"), 1);
    assert_non_null(strstr(r[5].body, "\"soft\":false"));
    assert_non_null(strstr(r[5].body, "\"marked_stale\":0"));
    assert_non_null(strstr(r[5].body, "\"shared\":false"));
    assert_true(json_int(r[5].body, NULL, "ban") > 0);
    expect_cache("/u/a?x=1", "MISS");
    expect_cache("/u/a?x=2", "HIT");
    expect_cache("/u/b", "HIT");
    expect_cache_host("other.test", "/u/a?x=1", "HIT");
    expect_upstream("/u/a", 4);
    expect_upstream("/u/b", 1);
    expect_cache("/u/a?x=1", "HIT"); /* stored again after the purge */

    /* prefix, any host. */
    warm("/pre/x/1");
    warm("/pre/x/2");
    warm("/pre/y/1");
    warm("/prefix");
    warm_host("other.test", "/pre/x/1");
    assert_int_equal(purge("{\"prefix\": \"/pre/x/\"}", "prefix"), 3);
    expect_cache("/pre/x/1", "MISS");
    expect_cache("/pre/x/2", "MISS");
    expect_cache_host("other.test", "/pre/x/1", "MISS");
    expect_cache("/pre/y/1", "HIT");
    expect_cache("/prefix", "HIT");
    expect_upstream("/pre/x/1", 4);
    expect_upstream("/pre/x/2", 2);
    expect_upstream("/pre/y/1", 1);

    /* prefix on one host. */
    warm("/ph/1");
    warm_host("other.test", "/ph/1");
    assert_int_equal(purge("{\"prefix\": \"/ph/\", \"host\": \"other.test\"}", "prefix"), 1);
    expect_cache_host("other.test", "/ph/1", "MISS");
    expect_cache("/ph/1", "HIT");
    expect_upstream("/ph/1", 3);
    /* The host is matched as keys write it: case does not matter. */
    warm_host("other.test", "/ph/2");
    assert_int_equal(purge("{\"prefix\": \"/ph/\", \"host\": \"Other.TEST\"}", "prefix"), 2);
    expect_cache_host("other.test", "/ph/2", "MISS");
    expect_cache("/ph/1", "HIT");

    /* regex on one host. */
    warm("/re/a.json");
    warm("/re/b.json");
    warm("/re/a.html");
    warm("/re/json");
    warm_host("other.test", "/re/c.json");
    assert_int_equal(purge("{\"regex\": \"^/re/.*\\\\.json$\", \"host\": \"shop.test\"}", "regex"),
                     2);
    expect_cache("/re/a.json", "MISS");
    expect_cache("/re/b.json", "MISS");
    expect_cache("/re/a.html", "HIT");
    expect_cache("/re/json", "HIT");
    expect_cache_host("other.test", "/re/c.json", "HIT");
    expect_upstream("/re/a.json", 2);
    expect_upstream("/re/b.json", 2);
    expect_upstream("/re/a.html", 1);
    expect_upstream("/re/c.json", 1);

    /* tag: Surrogate-Key (space separated), Cache-Tag (comma separated), a
     * route's own tags_header; exact and case-sensitive. */
    warm("/tg/1?hdr=Surrogate-Key:red%20blue");
    warm("/tg/2?hdr=Surrogate-Key:blue");
    warm("/tg/3?hdr=Cache-Tag:green,%20red");
    warm("/tg/4?hdr=Surrogate-Key:redder%20Red");
    warm("/tg/5");
    warm("/xt/1?hdr=X-Tags:red");
    assert_int_equal(purge("{\"tag\": \"red\"}", "tag"), 3);
    expect_cache("/tg/1?hdr=Surrogate-Key:red%20blue", "MISS");
    expect_cache("/tg/3?hdr=Cache-Tag:green,%20red", "MISS");
    expect_cache("/xt/1?hdr=X-Tags:red", "MISS");
    expect_cache("/tg/2?hdr=Surrogate-Key:blue", "HIT");
    expect_cache("/tg/4?hdr=Surrogate-Key:redder%20Red", "HIT");
    expect_cache("/tg/5", "HIT");
    expect_upstream("/tg/1", 2);
    expect_upstream("/tg/2", 1);
    expect_upstream("/tg/3", 2);
    expect_upstream("/tg/4", 1);
    expect_upstream("/xt/1", 2);

    /* A list of tags: one ban each, the counts summed. */
    assert_int_equal(purge("{\"tag\": [\"blue\", \"green\", \"nothing\"]}", "tag"), 3);
    assert_int_equal(json_int(r[5].body, NULL, "tags"), 3);
    expect_cache("/tg/1?hdr=Surrogate-Key:red%20blue", "MISS");
    expect_cache("/tg/2?hdr=Surrogate-Key:blue", "MISS");
    expect_cache("/tg/3?hdr=Cache-Tag:green,%20red", "MISS");
    expect_cache("/tg/4?hdr=Surrogate-Key:redder%20Red", "HIT");
    expect_upstream("/tg/1", 3);
    expect_upstream("/tg/2", 2);
    expect_upstream("/tg/3", 3);

    /* all: every object in memory, as /stats counts them. */
    long long objects =
        json_int(admin_doc(admin_port, "/stats", 0), "\"memory_store\": {", "objects");
    assert_true(objects >= 15);
    assert_int_equal(purge("{\"all\": true}", "all"), objects);
    assert_int_equal(json_int(admin_doc(admin_port, "/stats", 0), "\"memory_store\": {", "objects"),
                     0);
    expect_cache("/u/b", "MISS");
    expect_cache("/pre/y/1", "MISS");
    expect_cache("/re/a.html", "MISS");
    expect_cache("/tg/4?hdr=Surrogate-Key:redder%20Red", "MISS");
    expect_cache_host("other.test", "/u/a?x=1", "MISS");
    expect_upstream("/u/b", 2);
    expect_upstream("/re/a.html", 2);

    /* Objects stored after a purge are not touched by it. */
    expect_cache("/u/b", "HIT");
    expect_upstream("/u/b", 2);
}

/* A purge sent at once after an object was stored (often in the same
 * millisecond) removes it; the object stored again right after the purge's
 * answer is not touched by it.  50 times, without any pause. */
/* A fetch in flight when the purge is made brings back what the
 * application had before the purge: the object it stores is purged too
 * (it counts as stored when its request began). */
static void test_a_fetch_in_flight_during_a_purge_is_purged(void **state)
{
    (void)state;
    assert_true(start(with_token(), ROUTES));
    const char *target = "/c/inflight?delay=600";
    slow = client_connect(h.port, READ_MS);
    assert_non_null(slow);
    assert_int_equal(client_send_request(slow, "GET", target, "Host: " HOST, (const char *)NULL),
                     0);
    long deadline = now_ms() + WAIT_MS;
    while (harness_origin_count(&h, 0, "/c/inflight") < 1 && now_ms() < deadline)
        sleep_ms(10);
    admin(&r[1], "POST", "/purge", "{\"prefix\": \"/c/inflight\"}");
    expect_status(&r[1], 200);
    http_response_clear(&r[0]);
    expect_ok(client_read_response(slow, 0, &r[0], READ_MS));
    expect_x_cache_at(&r[0], "MISS", target, __LINE__);
    client_free(&slow);
    get_at(h.port, &r[2], HOST, target, (const char *)NULL);
    expect_x_cache_at(&r[2], "MISS", target, __LINE__);
    const char *cs = http_response_header(&r[2], "Cache-Status");
    if (!cs || !strstr(cs, "detail=purged"))
        fail_msg("Cache-Status %s, want detail=purged", cs ? cs : "(none)");
    expect_upstream("/c/inflight", 2);
}

static void test_a_purge_right_after_a_store_removes_it(void **state)
{
    (void)state;
    assert_true(start(with_token(), ROUTES));
    const char *lines[] = {BEARER, "Content-Type: application/json", NULL};
    int missed = 0, survived = 0;
    for (int i = 0; i < 50; i++) {
        char target[64], body[128];
        snprintf(target, sizeof target, "/race/%d", i);
        expect_cache(target, "MISS");
        snprintf(body, sizeof body, "{\"prefix\": \"%s\"}", target);
        request_v(admin_port, &r[5], "POST", "/purge", lines, body); /* no pause */
        expect_status(&r[5], 200);
        if (json_int(r[5].body, NULL, "purged") != 1)
            missed++;
        get_at(h.port, &r[0], HOST, target, (const char *)NULL);
        const char *x = http_response_header(&r[0], "X-Cache");
        if (!x || strcmp(x, "MISS") != 0)
            survived++;
        get_at(h.port, &r[1], HOST, target, (const char *)NULL);
        x = http_response_header(&r[1], "X-Cache");
        if (!x || strcmp(x, "HIT") != 0)
            fail_msg("%s stored again after the purge: X-Cache %s, want HIT", target,
                     x ? x : "(none)");
    }
    if (missed || survived)
        fail_msg("of 50 objects purged right after being stored, %d were not counted in "
                 "\"purged\" and %d were still served (X-Cache HIT) after the purge",
                 missed, survived);
}

/* ---- 3. soft purge --------------------------------------------------------- */

/* Poll the origin's count for path until it is n (WAIT_MS at most). */
static void wait_upstream_at(const char *path, long n, int line)
{
    long deadline = now_ms() + WAIT_MS;
    while (harness_origin_count(&h, 0, path) < n && now_ms() < deadline)
        sleep_ms(20);
    expect_upstream_at(path, n, line);
}
#define wait_upstream(path, n) wait_upstream_at((path), (n), __LINE__)

static void test_a_soft_purge_serves_stale_once_and_revalidates(void **state)
{
    (void)state;
    assert_true(start(with_token(), ROUTES));

    /* a. A response without validators: refetched in the background. */
    get_at(h.port, &r[1], HOST, "/sw/a", (const char *)NULL);
    expect_x_cache_at(&r[1], "MISS", "/sw/a", __LINE__);
    expect_cache("/sw/a", "HIT");
    expect_cache("/sw/b", "MISS");
    admin(&r[5], "POST", "/purge", "{\"url\": \"http://shop.test/sw/a\", \"soft\": true}");
    expect_status(&r[5], 200);
    assert_int_equal(json_int(r[5].body, NULL, "marked_stale"), 1);
    assert_int_equal(json_int(r[5].body, NULL, "purged"), 0);
    assert_non_null(strstr(r[5].body, "\"soft\":true"));

    long t0 = now_ms();
    get_at(h.port, &r[2], HOST, "/sw/a", (const char *)NULL);
    expect_status(&r[2], 200);
    expect_x_cache_at(&r[2], "STALE", "/sw/a", __LINE__);
    expect_same_origin_response(&r[1], &r[2]);
    /* "at once": not after an upstream round trip of the refetch */
    assert_true(now_ms() - t0 < 1000);
    wait_upstream("/sw/a", 2);
    long deadline = now_ms() + WAIT_MS;
    do {
        get_at(h.port, &r[3], HOST, "/sw/a", (const char *)NULL);
        if (strcmp(http_response_header(&r[3], "X-Cache") ? http_response_header(&r[3], "X-Cache")
                                                          : "",
                   "HIT") == 0)
            break;
        sleep_ms(20);
    } while (now_ms() < deadline);
    expect_x_cache_at(&r[3], "HIT", "/sw/a", __LINE__);
    expect_different_origin_responses(&r[1], &r[3]);
    expect_upstream("/sw/a", 2);
    expect_cache("/sw/b", "HIT"); /* another URL: not marked */
    expect_upstream("/sw/b", 1);

    /* b. With an ETag: the revalidation is conditional (304); the object,
     * refreshed, is fresh again. */
    expect_cache("/sw/e?etag=%22v1%22", "MISS");
    expect_cache("/sw/e?etag=%22v1%22", "HIT");
    admin(&r[5], "POST", "/purge", "{\"prefix\": \"/sw/e\", \"soft\": true}");
    expect_status(&r[5], 200);
    assert_int_equal(json_int(r[5].body, NULL, "marked_stale"), 1);
    expect_cache("/sw/e?etag=%22v1%22", "STALE");
    wait_upstream("/sw/e", 2);
    sleep_ms(100); /* the 304's refresh lands in the store */
    expect_cache("/sw/e?etag=%22v1%22", "HIT");
    expect_upstream("/sw/e", 2);

    /* c. A soft purge with the swr window from the origin's Cache-Control
     * on a route without one. */
    const char *cc = "/o/swr?hdr=Cache-Control:max-age%3D60%2C%20stale-while-revalidate%3D30";
    warm(cc);
    admin(&r[5], "POST", "/purge", "{\"tag\": \"nothing\", \"soft\": true}");
    assert_int_equal(json_int(r[5].body, NULL, "marked_stale"), 0);
    admin(&r[5], "POST", "/purge", "{\"regex\": \"^/o/swr\", \"soft\": true}");
    assert_int_equal(json_int(r[5].body, NULL, "marked_stale"), 1);
    expect_cache(cc, "STALE");
    wait_upstream("/o/swr", 2);
}

/* ---- 4. variants ---------------------------------------------------------- */

static void test_a_url_purge_removes_every_variant(void **state)
{
    (void)state;
    assert_true(start(with_token(), ROUTES));

    /* Coded variants: the br variant is made by the first hit. */
    const char *z = "/z/a?ctype=text/html&len=5000";
    get_at(h.port, &r[0], HOST, z, "Accept-Encoding: br", (const char *)NULL);
    expect_x_cache_at(&r[0], "MISS", z, __LINE__);
    expect_header(&r[0], "Content-Encoding", "br");
    get_at(h.port, &r[0], HOST, z, "Accept-Encoding: br", (const char *)NULL);
    expect_x_cache_at(&r[0], "HIT", z, __LINE__);
    expect_header(&r[0], "Content-Encoding", "br");
    get_at(h.port, &r[0], HOST, z, "Accept-Encoding: gzip", (const char *)NULL);
    expect_x_cache_at(&r[0], "HIT", z, __LINE__);
    expect_header(&r[0], "Content-Encoding", "gzip");
    expect_cache(z, "HIT");
    assert_true(proc_wait_log(h.error_log, "made the br variant of ", 2000));
    assert_true(proc_wait_log(h.error_log, "made the gzip variant of ", 2000));
    expect_upstream("/z/a", 1);

    long long n = purge("{\"url\": \"http://shop.test/z/a?ctype=text/html&len=5000\"}", "key");
    /* identity, br and gzip */
    if (n != 3)
        fail_msg("the URL purge removed %lld object(s), expected 3 (identity, br, gzip)", n);
    get_at(h.port, &r[0], HOST, z, "Accept-Encoding: br", (const char *)NULL);
    expect_x_cache_at(&r[0], "MISS", z, __LINE__);
    expect_upstream("/z/a", 2);
    get_at(h.port, &r[0], HOST, z, "Accept-Encoding: gzip", (const char *)NULL);
    expect_x_cache_at(&r[0], "HIT", z, __LINE__); /* from the new identity object */
    expect_upstream("/z/a", 2);

    /* Vary variants. */
    const char *v = "/v/a?hdr=Vary:X-Lang";
    const char *langs[] = {"X-Lang: en", "X-Lang: fr"};
    for (int i = 0; i < 2; i++) {
        get_at(h.port, &r[0], HOST, v, langs[i], (const char *)NULL);
        expect_x_cache_at(&r[0], "MISS", langs[i], __LINE__);
        get_at(h.port, &r[0], HOST, v, langs[i], (const char *)NULL);
        expect_x_cache_at(&r[0], "HIT", langs[i], __LINE__);
    }
    expect_upstream("/v/a", 2);
    assert_int_equal(purge("{\"url\": \"http://shop.test/v/a?hdr=Vary:X-Lang\"}", "key"), 2);
    for (int i = 0; i < 2; i++) {
        get_at(h.port, &r[0], HOST, v, langs[i], (const char *)NULL);
        expect_x_cache_at(&r[0], "MISS", langs[i], __LINE__);
    }
    expect_upstream("/v/a", 4);
}

/* ---- 5. the PURGE method and errors --------------------------------------- */

static void test_purge_method_and_errors(void **state)
{
    (void)state;
    assert_true(start(with_token(), ROUTES));

    /* PURGE /path with Host names the URL. */
    warm("/pm/a?x=1");
    warm("/pm/a?x=2");
    const char *purge_lines[] = {"Host: shop.test", BEARER, NULL};
    request_v(admin_port, &r[0], "PURGE", "/pm/a?x=1", purge_lines, NULL);
    expect_status(&r[0], 200);
    assert_int_equal(json_int(r[0].body, NULL, "purged"), 1);
    assert_non_null(strstr(r[0].body, "\"kind\":\"key\""));
    expect_cache("/pm/a?x=1", "MISS");
    expect_cache("/pm/a?x=2", "HIT");
    expect_upstream("/pm/a", 3);

    /* Wrong methods and paths. */
    admin(&r[0], "GET", "/purge", NULL);
    expect_error(&r[0], 405, "");
    const char *allow = http_response_header(&r[0], "Allow");
    assert_non_null(allow);
    assert_non_null(strstr(allow, "POST"));
    admin(&r[0], "POST", "/stats", "{}");
    expect_error(&r[0], 405, "");
    assert_non_null(http_response_header(&r[0], "Allow"));
    admin(&r[0], "GET", "/nope", NULL);
    expect_error(&r[0], 404, "");

    /* Bodies the parser refuses, with its message. */
    admin(&r[0], "POST", "/purge", "{\"url\": ");
    expect_error(&r[0], 400, "body is not JSON: line 1, column ");
    admin(&r[0], "POST", "/purge", "{\"url\": \"http://shop.test/a\",\n  \"all\": tru }");
    expect_error(&r[0], 400, "body is not JSON: line 2, column ");
    admin(&r[0], "POST", "/purge", "");
    expect_error(&r[0], 400, "body is not JSON: ");
    admin(&r[0], "POST", "/purge", "[\"all\"]");
    expect_error(&r[0], 400, "body must be a JSON object");
    admin(&r[0], "POST", "/purge", "{\"url\": \"http://shop.test/a\", \"bogus\": 1}");
    expect_error(&r[0], 400, "unknown field \"bogus\"");
    assert_string_equal(error_of(&r[0]), "unknown field \"bogus\"");
    admin(&r[0], "POST", "/purge", "{\"prefix\": \"/a/\", \"tag\": \"t\"}");
    expect_error(&r[0], 400, "give exactly one of ");
    admin(&r[0], "POST", "/purge", "{}");
    expect_error(&r[0], 400, "give exactly one of ");
    admin(&r[0], "POST", "/purge", "{\"soft\": true}");
    expect_error(&r[0], 400, "give exactly one of ");
    admin(&r[0], "POST", "/purge", "{\"all\": true, \"soft\": \"yes\"}");
    expect_error(&r[0], 400, "\"soft\" must be true or false");
    admin(&r[0], "POST", "/purge", "{\"regex\": \"(\"}");
    expect_error(&r[0], 400, "regex: ");
    assert_non_null(strstr(error_of(&r[0]), " at offset "));
    admin(&r[0], "POST", "/purge", "{\"prefix\": \"pm/\"}");
    expect_error(&r[0], 400, "\"prefix\" must start with /");
    admin(&r[0], "POST", "/purge", "{\"url\": \"/pm/a?x=2\"}");
    expect_error(&r[0], 400, "\"url\"");
    admin(&r[0], "POST", "/purge", "{\"url\": \"http://shop.test/pm/a?x=2\", \"host\": \"a\"}");
    expect_error(&r[0], 400, "\"host\"");
    admin(&r[0], "POST", "/purge", "{\"all\": false}");
    expect_error(&r[0], 400, "\"all\" must be true");
    admin(&r[0], "POST", "/purge", "{\"tag\": []}");
    expect_error(&r[0], 400, "\"tag\"");
    admin(&r[0], "POST", "/purge", "{\"tag\": 3}");
    expect_error(&r[0], 400, "\"tag\"");
    /* None of them purged anything. */
    expect_cache("/pm/a?x=2", "HIT");
    assert_int_equal(json_int(admin_doc(admin_port, "/stats", 0), "\"purge\": {", "purges"), 1);

    /* A body over 64 KiB: 413. */
    size_t big = 64 * 1024 + 1;
    char *body = malloc(big + 1);
    assert_non_null(body);
    memset(body, ' ', big);
    body[0] = '{';
    body[big - 1] = '}';
    body[big] = '\0';
    text[1] = body;
    admin(&r[0], "POST", "/purge", body);
    expect_error(&r[0], 413, "request too large");
    /* Exactly 64 KiB is read (and is a JSON object without a kind). */
    body[big - 2] = '}';
    body[big - 1] = '\0';
    admin(&r[0], "POST", "/purge", body);
    expect_error(&r[0], 400, "give exactly one of ");
}

/* ---- 6. stats and metrics -------------------------------------------------- */

static void test_stats_and_metrics_count_exactly(void **state)
{
    (void)state;
    assert_true(start(with_token(), ROUTES));
    const char *route = "\"route\": \"/c/\"";
    const char *hit = "tessera_cache_results_total{route=\"/c/\",result=\"hit\"}";
    const char *miss = "tessera_cache_results_total{route=\"/c/\",result=\"miss\"}";
    const char *inf = "tessera_request_duration_seconds_bucket{route=\"/c/\",le=\"+Inf\"}";
    const char *count = "tessera_request_duration_seconds_count{route=\"/c/\"}";
    const char *req = "tessera_requests_total{route=\"/c/\"}";

    expect_cache("/warmup", "MISS"); /* another route: not in /c/'s figures */
    const char *s0 = admin_doc(admin_port, "/stats", 0);
    const char *m0 = admin_doc(admin_port, "/metrics", 1);
    expect_header(&r[4], "Content-Type", "text/plain; version=0.0.4; charset=utf-8");

    /* 2 misses, 3 hits on /c/. */
    expect_cache("/c/1", "MISS");
    expect_cache("/c/1", "HIT");
    expect_cache("/c/2", "MISS");
    expect_cache("/c/2", "HIT");
    expect_cache("/c/1", "HIT");

    /* The counters are bumped as the responses are queued: wait until the
     * route has seen its 5 requests, then everything must be exact. */
    const char *s1 = NULL;
    long deadline = now_ms() + WAIT_MS;
    do {
        s1 = admin_doc(admin_port, "/stats", 2);
        if (json_int(s1, route, "requests") - json_int(s0, route, "requests") >= 5)
            break;
        sleep_ms(20);
    } while (now_ms() < deadline);
    assert_int_equal(json_int(s1, route, "requests") - json_int(s0, route, "requests"), 5);
    assert_int_equal(json_int(s1, route, "hits") - json_int(s0, route, "hits"), 3);
    assert_int_equal(json_int(s1, route, "misses") - json_int(s0, route, "misses"), 2);
    assert_int_equal(json_int(s1, route, "passes") - json_int(s0, route, "passes"), 0);
    assert_int_equal(json_int(s1, route, "status_2xx") - json_int(s0, route, "status_2xx"), 5);
    assert_int_equal(json_int(s1, "\"cache\": {", "hits") - json_int(s0, "\"cache\": {", "hits"),
                     3);
    assert_int_equal(
        json_int(s1, "\"cache\": {", "misses") - json_int(s0, "\"cache\": {", "misses"), 2);
    assert_int_equal(
        json_int(s1, "\"requests\": {", "total") - json_int(s0, "\"requests\": {", "total"), 5);
    assert_int_equal(json_int(s1, "\"connections\": {", "accepted") -
                         json_int(s0, "\"connections\": {", "accepted"),
                     5);
    assert_int_equal(json_int(s1, "\"memory_store\": {", "objects") -
                         json_int(s0, "\"memory_store\": {", "objects"),
                     2);
    assert_int_equal(json_int(s1, "\"purge\": {", "purges"), 0);

    /* One purge. */
    assert_int_equal(purge("{\"prefix\": \"/c/\"}", "prefix"), 2);
    const char *s2 = admin_doc(admin_port, "/stats", 3);
    assert_int_equal(
        json_int(s2, "\"purge\": {", "purges") - json_int(s1, "\"purge\": {", "purges"), 1);
    assert_int_equal(
        json_int(s2, "\"purge\": {", "purged") - json_int(s1, "\"purge\": {", "purged"), 2);
    assert_int_equal(
        json_int(s2, "\"purge\": {", "bans_added") - json_int(s1, "\"purge\": {", "bans_added"), 1);
    assert_true(json_int(s2, "\"purge\": {", "bans_active") >= 1);
    assert_int_equal(json_int(s2, "\"memory_store\": {", "objects") -
                         json_int(s0, "\"memory_store\": {", "objects"),
                     0);

    /* Metrics: the same deltas; the +Inf bucket is the count. */
    const char *m1 = admin_doc(admin_port, "/metrics", 4);
    assert_int_equal(metric(m1, hit) - metric(m0, hit), 3);
    assert_int_equal(metric(m1, miss) - metric(m0, miss), 2);
    assert_int_equal(metric(m1, req) - metric(m0, req), 5);
    assert_int_equal(metric(m1, count) - metric(m0, count), 5);
    assert_int_equal(metric(m1, inf), metric(m1, count));
    assert_int_equal(metric(m1, "tessera_purges_total") - metric(m0, "tessera_purges_total"), 1);
    assert_true(metric(m1, "tessera_bans_active") >= 1);
    assert_non_null(strstr(m1, "# TYPE tessera_request_duration_seconds histogram\n"));
}

/* ---- 7. two nodes ---------------------------------------------------------- */

static int admin_port_b;

static void start_two_nodes(void)
{
    mcd = proc_start_memcached(h.td, "memcached");
    assert_non_null(mcd);
    char mc[200];
    snprintf(mc, sizeof mc, "memcached { server 127.0.0.1:%d; timeout 500ms; purge_sync 100ms; }\n",
             mcd->port);
    char routes[1200];
    snprintf(routes, sizeof routes, "%s%s", mc, ROUTES);
    assert_true(start(with_token(), routes));

    admin_port_b = proc_free_port();
    assert_true(admin_port_b > 0);
    const char *log = tmpdir_file(h.td, "b-error.log");
    const char *conf = tmpdir_write(h.td, "b.conf",
                                    "listen 127.0.0.1:0;\nworkers 2;\n"
                                    "log { error %s; level info; }\n"
                                    "backend app { server 127.0.0.1:%d; }\n"
                                    "admin {\n    listen 127.0.0.1:%d;\n    %s\n}\n%s",
                                    log, h.origin_port[0], admin_port_b, with_token(), routes);
    assert_non_null(conf);
    node_b = proc_start_tessera(h.td, "b", conf, log, (const char *)NULL);
    assert_non_null(node_b);
}

/* Whether a and b are the same origin response (the test origin numbers
 * its connections and the requests on each). */
static bool same_origin_response(const struct http_response *a, const struct http_response *b)
{
    const char *names[] = {"X-Origin-Conn", "X-Origin-Seq"};
    for (size_t i = 0; i < 2; i++) {
        const char *va = http_response_header(a, names[i]);
        const char *vb = http_response_header(b, names[i]);
        if (!va || !vb || strcmp(va, vb) != 0)
            return false;
    }
    return true;
}

/* GET target on the node at port until the answer is no longer the origin
 * response *old (WAIT_MS at most), into *resp; false if it still is.  Until
 * then every answer must be a HIT of the old copy. */
static bool fresh_copy_within(int port, struct http_response *resp, const char *target,
                              const struct http_response *old)
{
    long deadline = now_ms() + WAIT_MS;
    do {
        get_at(port, resp, HOST, target, (const char *)NULL);
        expect_status(resp, 200);
        if (!same_origin_response(resp, old))
            return true;
        expect_x_cache_at(resp, "HIT", target, __LINE__);
        sleep_ms(20);
    } while (now_ms() < deadline);
    return false;
}

/* Both nodes hold target: A stored it first (its response in *a), B then
 * hits its own copy (from memcached, or fetched itself when A's background
 * write had not landed yet: its response in *b). */
static void warm_both(const char *target, struct http_response *a, struct http_response *b)
{
    get_at(h.port, a, HOST, target, (const char *)NULL);
    expect_x_cache_at(a, "MISS", target, __LINE__);
    expect_cache(target, "HIT");
    get_at(node_b->port, &r[0], HOST, target, (const char *)NULL);
    get_at(node_b->port, b, HOST, target, (const char *)NULL);
    expect_x_cache_at(b, "HIT", "node b", __LINE__);
}

static void test_a_purge_on_one_node_reaches_the_other(void **state)
{
    (void)state;
    start_two_nodes();
    const char *tagged = "/t/x?hdr=Surrogate-Key:k1";
    const char *other = "/t/y?hdr=Surrogate-Key:k2";

    warm_both(tagged, &r[2], &r[3]);
    warm_both(other, &r[7], &r[6]);
    long n = harness_origin_count(&h, 0, "/t/x");
    long n_other = harness_origin_count(&h, 0, "/t/y");
    assert_true(n >= 1 && n <= 2);
    long long v0 = json_int(admin_doc(admin_port_b, "/stats", 0), "\"purge\": {", "log_version");

    /* A tag purge on A: B's next request, within purge_sync, is a miss
     * that goes to the origin (nobody has fetched it again yet). */
    assert_int_equal(purge("{\"tag\": \"k1\"}", "tag"), 1);
    assert_non_null(strstr(r[5].body, "\"shared\":true"));
    if (!fresh_copy_within(node_b->port, &r[1], tagged, &r[3]))
        fail_msg("node b still serves the old %s %d ms after the tag purge on node a", tagged,
                 WAIT_MS);
    expect_x_cache_at(&r[1], "MISS", "node b after the tag purge", __LINE__);
    /* detail=purged when B still found its copy (memory or memcached) */
    const char *cs = http_response_header(&r[1], "Cache-Status");
    assert_non_null(cs);
    if (strncmp(cs, "tessera; fwd=uri-miss; fwd-status=200; stored", 45) != 0)
        fail_msg("node b after the tag purge: Cache-Status %s", cs);
    expect_upstream("/t/x", n + 1);
    /* A's own copy is gone too (it may get B's new one from memcached). */
    get_at(h.port, &r[0], HOST, tagged, (const char *)NULL);
    if (same_origin_response(&r[0], &r[2]))
        fail_msg("node a still serves the purged %s", tagged);
    const char *s = admin_doc(admin_port_b, "/stats", 1);
    long long v1 = json_int(s, "\"purge\": {", "log_version");
    if (v1 <= v0)
        fail_msg("node b's purge.log_version %lld, was %lld before the purge", v1, v0);
    assert_true(json_int(s, "\"purge\": {", "purges") >= 1);
    /* Another tag is untouched on B. */
    get_at(node_b->port, &r[0], HOST, other, (const char *)NULL);
    expect_x_cache_at(&r[0], "HIT", "node b, another tag", __LINE__);
    assert_true(same_origin_response(&r[0], &r[6]));
    expect_upstream("/t/y", n_other);

    /* A URL purge on A: B gets the object fetched again. */
    const char *url = "/t/u?q=1";
    warm_both(url, &r[2], &r[3]);
    long nu = harness_origin_count(&h, 0, "/t/u");
    assert_int_equal(purge("{\"url\": \"http://shop.test/t/u?q=1\"}", "key"), 1);
    if (!fresh_copy_within(node_b->port, &r[1], url, &r[3]))
        fail_msg("node b still serves the old %s %d ms after the URL purge on node a", url,
                 WAIT_MS);
    expect_x_cache_at(&r[1], "MISS", "node b after the URL purge", __LINE__);
    expect_upstream("/t/u", nu + 1);
    long long v2 = json_int(admin_doc(admin_port_b, "/stats", 2), "\"purge\": {", "log_version");
    if (v2 <= v1)
        fail_msg("node b's purge.log_version %lld, was %lld before the URL purge", v2, v1);

    /* And the other way: a prefix purge on B reaches A. */
    const char *prefixed = "/t/p/1";
    warm_both(prefixed, &r[2], &r[3]);
    long np = harness_origin_count(&h, 0, "/t/p/1");
    purge_at(admin_port_b, "{\"prefix\": \"/t/p/\"}", "prefix", __LINE__);
    if (!fresh_copy_within(h.port, &r[1], prefixed, &r[2]))
        fail_msg("node a still serves the old %s %d ms after the purge on node b", prefixed,
                 WAIT_MS);
    expect_x_cache_at(&r[1], "MISS", "node a after the purge on node b", __LINE__);
    expect_upstream("/t/p/1", np + 1);
}

/* ---- 7b. a lost purge log ------------------------------------------------- */

/* The key of the purge log's version: start_two_nodes() sets no prefix, so
 * the default one ("prefix tsr:;", man/tessera.conf.5). */
#define LOG_VERSION_KEY "tsr:purgelog:v"
/* How long a missing entry waits before it counts as lost
 * (PURGE_LOG_MISSING_MS in proxy/purge.c). */
#define MISSING_MS 5000

/* A raw connection to memcached on 127.0.0.1:port, or -1. */
/* Send the text command cmd (with its \r\n) to the test's memcached; its
 * one-line answer must be want (with its \r\n). */
static void mc_command_at(const char *cmd, const char *want, int line)
{
    int fd = proc_memcached_connect(mcd->port);
    if (fd < 0)
        fail_msg("line %d: cannot connect to memcached on port %d", line, mcd->port);
    char buf[256];
    size_t have = 0;
    size_t len = strlen(cmd);
    if (send(fd, cmd, len, MSG_NOSIGNAL) != (ssize_t)len) {
        close(fd);
        fail_msg("line %d: cannot send %s to memcached", line, cmd);
    }
    while (have < sizeof buf - 1) {
        ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, "\r\n"))
            break;
    }
    buf[have] = '\0';
    close(fd);
    if (strcmp(buf, want) != 0)
        fail_msg("line %d: memcached answered %s with \"%s\", expected \"%s\"", line, cmd, buf,
                 want);
}
#define mc_command(cmd, want) mc_command_at((cmd), (want), __LINE__)

/* Node b's /stats purge.<key>. */
static long long purge_stat_b(const char *key, int line)
{
    return json_int_at(admin_doc(admin_port_b, "/stats", 0), "\"purge\": {", key, line);
}

/* Wait (up to ms) until node b's purge.<key> is want; fails with what it
 * was when it never is.  Returns how long it took (ms). */
static long wait_purge_stat_b_at(const char *key, long long want, long ms, int line)
{
    long start = now_ms();
    long long got;
    for (;;) {
        got = purge_stat_b(key, line);
        if (got == want)
            return now_ms() - start;
        if (now_ms() - start > ms)
            break;
        sleep_ms(20);
    }
    fail_msg("line %d: node b's purge.%s is %lld after %ld ms, expected %lld", line, key, got, ms,
             want);
    return -1;
}
#define wait_purge_stat_b(key, want, ms) wait_purge_stat_b_at((key), (want), (ms), __LINE__)

/* Two nodes sharing memcached; target warmed on node b alone (MISS, then
 * HIT: the origin served it once); one purge on node a of another URL, so
 * the log exists at version 1, applied by b; b has had no log reset. */
static void lost_log_scene(const char *target, const char *path)
{
    start_two_nodes();
    get_at(node_b->port, &r[2], HOST, target, (const char *)NULL);
    expect_status(&r[2], 200);
    expect_x_cache_at(&r[2], "MISS", "node b, first", __LINE__);
    get_at(node_b->port, &r[3], HOST, target, (const char *)NULL);
    expect_status(&r[3], 200);
    expect_x_cache_at(&r[3], "HIT", "node b, second", __LINE__);
    assert_true(same_origin_response(&r[2], &r[3]));
    expect_upstream(path, 1);

    assert_int_equal(purge("{\"url\": \"http://shop.test/t/unrelated\"}", "key"), 0);
    assert_non_null(strstr(r[5].body, "\"shared\":true"));
    wait_purge_stat_b("log_version", 1, WAIT_MS);
    assert_int_equal(purge_stat_b("log_resets", __LINE__), 0);
    /* Still a HIT of the same copy: the unrelated purge did not touch it. */
    get_at(node_b->port, &r[3], HOST, target, (const char *)NULL);
    expect_x_cache_at(&r[3], "HIT", "node b after the unrelated purge", __LINE__);
    assert_true(same_origin_response(&r[2], &r[3]));
    expect_upstream(path, 1);
}

/* After the reset, target on node b is a MISS that the origin serves. */
static void expect_dropped_on_b(const char *target, const char *path)
{
    get_at(node_b->port, &r[1], HOST, target, (const char *)NULL);
    expect_status(&r[1], 200);
    expect_x_cache_at(&r[1], "MISS", "node b after the log was lost", __LINE__);
    assert_false(same_origin_response(&r[1], &r[2]));
    expect_upstream(path, 2);
    assert_int_equal(purge_stat_b("log_resets", __LINE__), 1);
}

/* memcached loses everything (flush_all): node b finds the log's version
 * gone back (1 -> none), cannot know which purges it missed, and drops
 * everything it stored before. */
static void test_a_lost_purge_log_drops_what_it_could_hide(void **state)
{
    (void)state;
    const char *target = "/t/lost", *path = "/t/lost";
    lost_log_scene(target, path);

    mc_command("flush_all\r\n", "OK\r\n");
    long took = wait_purge_stat_b("log_resets", 1, WAIT_MS);
    print_message("node b counted the log reset %ld ms after flush_all\n", took);
    expect_dropped_on_b(target, path);
}

/* The log's version moves on to an entry nobody writes: once it has been
 * missing for PURGE_LOG_MISSING_MS it counts as lost (evicted), and node b
 * drops everything it stored before. */
static void test_a_missing_log_entry_drops_what_it_could_hide(void **state)
{
    (void)state;
    const char *target = "/t/missing", *path = "/t/missing";
    lost_log_scene(target, path);

    mc_command("incr " LOG_VERSION_KEY " 1\r\n", "2\r\n");
    long took = wait_purge_stat_b("log_resets", 1, WAIT_MS + MISSING_MS);
    print_message("node b counted the missing entry %ld ms after the incr\n", took);
    /* Not before the grace: the entry might still have been on its way. */
    if (took < MISSING_MS - 200)
        fail_msg("node b counted the missing entry as lost after %ld ms, before the %d ms grace",
                 took, MISSING_MS);
    expect_dropped_on_b(target, path);
    assert_int_equal(purge_stat_b("log_version", __LINE__), 2);
}

/* ---- 8. health and draining ------------------------------------------------ */

static void test_health_answers_draining_while_a_request_is_in_flight(void **state)
{
    (void)state;
    assert_true(start(with_token(), ROUTES));
    admin(&r[0], "GET", "/health", NULL);
    expect_status(&r[0], 200);
    expect_header(&r[0], "Content-Type", "application/json");
    expect_body(&r[0], "{\"status\":\"ok\"}\n");
    admin(&r[0], "HEAD", "/health", NULL);
    expect_status(&r[0], 200);

    /* A slow request in flight, then SIGTERM. */
    slow = client_connect(h.port, READ_MS);
    assert_non_null(slow);
    assert_int_equal(
        client_send_request(slow, "GET", "/slow?delay=1500", "Host: shop.test", (const char *)NULL),
        0);
    long deadline = now_ms() + WAIT_MS;
    while (harness_origin_count(&h, 0, "/slow") < 1 && now_ms() < deadline)
        sleep_ms(10);
    assert_int_equal(proc_signal(h.tessera, SIGTERM), 0);

    deadline = now_ms() + 1000;
    struct client *c = NULL;
    do {
        c = client_connect(admin_port, READ_MS);
        assert_non_null(c);
        const char *lines[] = {BEARER, NULL};
        assert_int_equal(client_send_request_v(c, "GET", "/health", lines), 0);
        int rc = client_read_response(c, 0, &r[1], READ_MS);
        client_free(&c);
        assert_int_equal(rc, CLIENT_OK);
        if (r[1].status == 503)
            break;
        http_response_clear(&r[1]);
        sleep_ms(10);
    } while (now_ms() < deadline);
    expect_status(&r[1], 503);
    expect_body(&r[1], "{\"status\":\"draining\"}\n");
    /* The process is still there (the slow request holds it). */
    assert_int_equal(proc_wait_exit(h.tessera, 0), -1);
    /* /stats says so too. */
    admin(&r[2], "GET", "/stats", NULL);
    expect_status(&r[2], 200);
    assert_non_null(strstr(r[2].body, "\"draining\": true"));

    /* The slow request completes. */
    http_response_clear(&r[0]);
    expect_ok(client_read_response(slow, 0, &r[0], READ_MS));
    expect_status(&r[0], 200);
    client_free(&slow);
    assert_int_equal(proc_wait_exit(h.tessera, 10000), 0);
}

/* ---- 9. the command-line client -------------------------------------------- */

static bool starts_line(const char *out, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = out; p && *p;) {
        if (strncmp(p, prefix, n) == 0)
            return true;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}

static void test_the_command_line_client(void **state)
{
    (void)state;
    assert_true(start(with_token(), ROUTES));

    /* purge URL */
    warm("/cli/a?x=1");
    assert_int_equal(run_cli("purge", "-c", h.conf, "http://shop.test/cli/a?x=1", NULL), 0);
    if (strncmp(cli_out, "purged 1 object(s) from memory (ban ", 36) != 0 ||
        cli_out[strlen(cli_out) - 1] != '\n' || cli_out[strlen(cli_out) - 2] != ')')
        fail_msg("tessera purge printed \"%s\"", cli_out);
    assert_string_equal(cli_err, "");
    expect_cache("/cli/a?x=1", "MISS");
    expect_upstream("/cli/a", 2);

    /* --prefix, --tag twice, --all --soft */
    warm("/cli/p/1");
    assert_int_equal(run_cli("purge", "-c", h.conf, "--prefix", "/cli/p/", NULL), 0);
    assert_true(strncmp(cli_out, "purged 1 object(s)", 18) == 0);
    warm("/cli/t?hdr=Surrogate-Key:t1");
    warm("/cli/u?hdr=Surrogate-Key:t2");
    assert_int_equal(run_cli("purge", "-c", h.conf, "--tag", "t1", "--tag", "t2", NULL), 0);
    assert_true(strncmp(cli_out, "purged 2 object(s)", 18) == 0);
    expect_cache("/cli/t?hdr=Surrogate-Key:t1", "MISS");
    expect_cache("/cli/u?hdr=Surrogate-Key:t2", "MISS");
    assert_int_equal(run_cli("purge", "-c", h.conf, "--all", "--soft", NULL), 0);
    if (strncmp(cli_out, "marked ", 7) != 0 || !strstr(cli_out, " object(s) stale in memory (ban "))
        fail_msg("tessera purge --all --soft printed \"%s\"", cli_out);

    /* A purge the listener refuses: its message, exit 1. */
    assert_int_equal(run_cli("purge", "-c", h.conf, "--regex", "(", NULL), 1);
    if (strncmp(cli_err, "tessera: the admin listener answered 400: regex: ", 49) != 0 ||
        !strstr(cli_err, " at offset "))
        fail_msg("tessera purge --regex '(' printed \"%s\" on stderr", cli_err);
    assert_string_equal(cli_out, "");

    /* Bad usage: exit 2. */
    assert_int_equal(run_cli("purge", "-c", h.conf, NULL), 2);
    assert_non_null(strstr(cli_err, "usage: tessera purge"));
    assert_int_equal(run_cli("purge", NULL), 2);
    assert_int_equal(run_cli("purge", "-c", h.conf, "--all", "--tag", "x", NULL), 2);
    assert_int_equal(run_cli("purge", "-c", h.conf, "--host", "a", "http://shop.test/", NULL), 2);
    assert_int_equal(run_cli("purge", "-c", h.conf, "--bogus", NULL), 2);
    assert_int_equal(run_cli("stats", "-c", h.conf, "extra", NULL), 2);

    /* stats: the summary, and --json. */
    assert_int_equal(run_cli("stats", "-c", h.conf, NULL), 0);
    const char *lines[] = {"tessera ", "connections",  "requests",
                           "cache",    "memory store", "purges"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        if (!starts_line(cli_out, lines[i]))
            fail_msg("no line starting \"%s\" in the summary:\n%s", lines[i], cli_out);
    assert_int_equal(run_cli("stats", "-c", h.conf, "--json", NULL), 0);
    assert_true(cli_out[0] == '{');
    assert_non_null(strstr(cli_out, "\"purge\": {"));

    /* The listener down: a config naming a port nobody listens on. */
    int closed = proc_free_port();
    const char *down = tmpdir_write(h.td, "down.conf",
                                    "listen 127.0.0.1:0;\nbackend app { server 127.0.0.1:%d; }\n"
                                    "admin { listen 127.0.0.1:%d; %s }\n"
                                    "route default { backend app; }\n",
                                    h.origin_port[0], closed, with_token());
    assert_non_null(down);
    assert_int_equal(run_cli("purge", "-c", down, "--all", NULL), 1);
    assert_non_null(strstr(cli_err, "cannot talk to the admin listener"));
    assert_int_equal(run_cli("stats", "-c", down, NULL), 1);
    assert_non_null(strstr(cli_err, "cannot talk to the admin listener"));

    /* No admin block. */
    const char *none = tmpdir_write(h.td, "none.conf",
                                    "listen 127.0.0.1:0;\nbackend app { server 127.0.0.1:%d; }\n"
                                    "route default { backend app; }\n",
                                    h.origin_port[0]);
    assert_non_null(none);
    assert_int_equal(run_cli("purge", "-c", none, "--all", NULL), 1);
    assert_non_null(strstr(cli_err, "no admin block"));
    assert_int_equal(run_cli("stats", "-c", none, NULL), 1);
    assert_non_null(strstr(cli_err, "no admin block"));

    /* A config that does not load. */
    assert_int_equal(run_cli("stats", "-c", tmpdir_file(h.td, "missing.conf"), NULL), 1);
}

/* ---- 10. tags headers -------------------------------------------------------- */

static void test_tags_headers_are_removed_unless_kept(void **state)
{
    (void)state;
    assert_true(start(with_token(), ROUTES));
    const char *both = "?hdr=Surrogate-Key:a%20b&hdr=Cache-Tag:c,d&hdr=X-Tags:e";
    char target[128];
    const char *paths[] = {"/th/a", "/xt/a", "/keep/a"};
    for (int i = 0; i < 3; i++) {
        snprintf(target, sizeof target, "%s%s", paths[i], both);
        for (int pass = 0; pass < 2; pass++) {
            get_at(h.port, &r[0], HOST, target, (const char *)NULL);
            expect_x_cache_at(&r[0], pass ? "HIT" : "MISS", target, __LINE__);
            if (i == 0) { /* default: Surrogate-Key */
                expect_no_header(&r[0], "Surrogate-Key");
                expect_no_header(&r[0], "Cache-Tag");
                expect_header(&r[0], "X-Tags", "e");
            } else if (i == 1) { /* tags_header X-Tags */
                expect_no_header(&r[0], "X-Tags");
                expect_no_header(&r[0], "Cache-Tag");
                expect_header(&r[0], "Surrogate-Key", "a b");
            } else { /* keep */
                expect_header(&r[0], "Surrogate-Key", "a b");
                expect_header(&r[0], "Cache-Tag", "c,d");
            }
        }
    }
    /* The tags still work on every route. */
    assert_int_equal(purge("{\"tag\": \"a\"}", "tag"), 2); /* /th/a and /keep/a */
    assert_int_equal(purge("{\"tag\": \"e\"}", "tag"), 1); /* /xt/a */
    assert_int_equal(purge("{\"tag\": \"d\"}", "tag"), 0); /* all gone already */
}

/* ---- 11. tessera -t ------------------------------------------------------------- */

static void test_check_refuses_token_off_on_a_non_loopback_listener(void **state)
{
    (void)state;
    int port = proc_free_port();
    const char *conf = tmpdir_write(h.td, "open.conf",
                                    "listen 127.0.0.1:0;\n"
                                    "backend app { server 127.0.0.1:%d; }\n"
                                    "route default { backend app; }\n"
                                    "admin {\n"
                                    "    listen 0.0.0.0:%d;\n"
                                    "    token off;\n"
                                    "}\n",
                                    h.origin_port[0], port);
    assert_non_null(conf);
    assert_int_equal(run_cli("-t", "-c", conf, NULL), 1);
    char where[600];
    snprintf(where, sizeof where, "%s:6:11: ", conf);
    if (!strstr(cli_err, where) || !strstr(cli_err, "loopback"))
        fail_msg("tessera -t said \"%s\", expected \"%s...loopback...\"", cli_err, where);

    /* The same on loopback is fine, and so is a token on 0.0.0.0. */
    const char *lo = tmpdir_write(h.td, "lo.conf",
                                  "listen 127.0.0.1:0;\n"
                                  "backend app { server 127.0.0.1:%d; }\n"
                                  "route default { backend app; }\n"
                                  "admin { listen 127.0.0.1:%d; token off; }\n",
                                  h.origin_port[0], port);
    assert_int_equal(run_cli("-t", "-c", lo, NULL), 0);
    const char *tok = tmpdir_write(h.td, "tok.conf",
                                   "listen 127.0.0.1:0;\n"
                                   "backend app { server 127.0.0.1:%d; }\n"
                                   "route default { backend app; }\n"
                                   "admin { listen 0.0.0.0:%d; %s }\n",
                                   h.origin_port[0], port, with_token());
    assert_int_equal(run_cli("-t", "-c", tok, NULL), 0);
    /* Neither token_file nor token off. */
    const char *neither = tmpdir_write(h.td, "neither.conf",
                                       "listen 127.0.0.1:0;\n"
                                       "backend app { server 127.0.0.1:%d; }\n"
                                       "route default { backend app; }\n"
                                       "admin { listen 127.0.0.1:%d; }\n",
                                       h.origin_port[0], port);
    assert_int_equal(run_cli("-t", "-c", neither, NULL), 1);
    assert_non_null(strstr(cli_err, "admin needs token_file"));
}

/* The compression counters of /stats count what was compressed: a br
 * miss is compressed once while it streams; the first br hit makes the br
 * variant once; later br hits and plain requests compress nothing. */
static void test_stats_count_compression(void **state)
{
    (void)state;
    assert_true(start(with_token(), ROUTES));
    const char *streamed = "\"streamed\"", *variants = "\"variants\"";
    const char *s0 = admin_doc(admin_port, "/stats", 0);
    const char *page = "/c/page?len=5000&ctype=text/html";
    get_at(h.port, &r[0], HOST, page, "Accept-Encoding: br", (const char *)NULL);
    expect_x_cache_at(&r[0], "MISS", page, __LINE__);
    for (int i = 0; i < 5; i++) {
        get_at(h.port, &r[0], HOST, page, "Accept-Encoding: br", (const char *)NULL);
        expect_x_cache_at(&r[0], "HIT", page, __LINE__);
        expect_header(&r[0], "Content-Encoding", "br");
    }
    get_at(h.port, &r[0], HOST, page, (const char *)NULL);
    expect_x_cache_at(&r[0], "HIT", page, __LINE__);
    const char *s1 = admin_doc(admin_port, "/stats", 1);
    assert_int_equal(json_int(s1, streamed, "br") - json_int(s0, streamed, "br"), 1);
    assert_int_equal(json_int(s1, variants, "br") - json_int(s0, variants, "br"), 1);
    assert_int_equal(json_int(s1, variants, "gzip") - json_int(s0, variants, "gzip"), 0);
    assert_int_equal(json_int(s1, "\"compression\"", "variant_failures") -
                         json_int(s0, "\"compression\"", "variant_failures"),
                     0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_the_token_and_the_allow_list),
        T(test_each_purge_kind_removes_what_it_matches),
        T(test_a_purge_right_after_a_store_removes_it),
        T(test_a_fetch_in_flight_during_a_purge_is_purged),
        T(test_a_soft_purge_serves_stale_once_and_revalidates),
        T(test_a_url_purge_removes_every_variant),
        T(test_purge_method_and_errors),
        T(test_stats_and_metrics_count_exactly),
        T(test_stats_count_compression),
        T(test_a_purge_on_one_node_reaches_the_other),
        T(test_a_lost_purge_log_drops_what_it_could_hide),
        T(test_a_missing_log_entry_drops_what_it_could_hide),
        T(test_health_answers_draining_while_a_request_is_in_flight),
        T(test_the_command_line_client),
        T(test_tags_headers_are_removed_unless_kept),
        T(test_check_refuses_token_off_on_a_non_loopback_listener),
    };
#undef T
    return cmocka_run_group_tests_name("admin", tests, NULL, NULL);
}
