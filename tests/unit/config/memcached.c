/*
 * tests/unit/config/memcached.c: the top-level `memcached { ... }` block
 * (config/memcached.c): every default, every valid form of each directive
 * and the exact text of every error.  The route side of the tier (`store`,
 * `coalesce cluster`) is in tests/unit/config/cache.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "tests/support/configtest.h"

#define LISTEN "listen 127.0.0.1:8080;\n"
#define SERVER "server 127.0.0.1:11211;"

#define KIB 1024ull
#define MIB (1024ull * 1024)

/* ---- helpers ---- */

/* BODY as the inside of `memcached { ... }`, starting at line 3, column 1. */
static const char *in_block(const char *body)
{
    static char text[4096];

    snprintf(text, sizeof text, LISTEN "memcached {\n%s\n}\n", body);
    return text;
}

static struct config *load_block(const char *body)
{
    struct config *cfg = configtest_load(in_block(body));

    assert_true(cfg->memcached.enabled);
    return cfg;
}

static void expect_block_error(const char *body, const char *msg)
{
    configtest_expect_error(in_block(body), msg);
}

/* Every value but the servers and `enabled` at its default. */
static void expect_defaults(const struct config_memcached *m)
{
    assert_string_equal(m->prefix, "tsr:");
    assert_int_equal(m->timeout_ms, 200);
    assert_int_equal(m->retry_timeout_ms, 5000);
    assert_int_equal(m->io_threads, 2);
    assert_int_equal(m->item_size, 1047552);
    assert_int_equal(m->item_size, 1 * MIB - 1 * KIB);
    assert_int_equal(m->ttl_slack_ms, 60000);
    assert_int_equal(m->queue_max, 4096);
    assert_int_equal(m->purge_sync_ms, 1000);
}

static void expect_server(const struct config_memcached_server *s, const char *host, unsigned port,
                          unsigned weight, const char *text)
{
    assert_string_equal(s->host, host);
    assert_int_equal(s->port, port);
    assert_int_equal(s->weight, weight);
    assert_string_equal(s->text, text);
}

/* ---- defaults ---- */

static void test_defaults_without_block(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = configtest_load(LISTEN);
    assert_false(cfg->memcached.enabled);
    assert_null(cfg->memcached.servers);
    assert_int_equal(cfg->memcached.nservers, 0);
    expect_defaults(&cfg->memcached);
    config_release(&cfg);
}

static void test_minimal_block(void **state)
{
    struct config *cfg;
    const struct config_memcached_server *s;

    (void)state;
    cfg = load_block(SERVER);
    assert_int_equal(cfg->memcached.nservers, 1);
    s = &cfg->memcached.servers[0];
    expect_server(s, "127.0.0.1", 11211, 1, "127.0.0.1:11211");
    assert_string_equal(s->pos.file, "t.conf");
    assert_int_equal(s->pos.line, 3);
    assert_int_equal(s->pos.col, 1);
    expect_defaults(&cfg->memcached);
    config_release(&cfg);

    /* the block may come first, and on one line */
    cfg = configtest_load("memcached { server m:1; }\n" LISTEN);
    assert_true(cfg->memcached.enabled);
    expect_server(&cfg->memcached.servers[0], "m", 1, 1, "m:1");
    assert_int_equal(cfg->memcached.servers[0].pos.line, 1);
    assert_int_equal(cfg->memcached.servers[0].pos.col, 13);
    config_release(&cfg);
}

/* ---- server ---- */

static void test_server_forms(void **state)
{
    struct config *cfg;
    const struct config_memcached *m;

    (void)state;
    cfg = load_block("server 10.0.0.1:11211;\n"
                     "server Cache-1.Example.COM:11212 weight=3;\n"
                     "server [::1]:11211 weight=1;\n"
                     "server [0:0:0::1]:11212 weight=1000;\n"
                     "server [2001:DB8::A]:1;\n"
                     "server mem_cache:65535;\n"
                     "server 10.0.0.1:11212;\n"
                     "server localhost:11211;");
    m = &cfg->memcached;
    assert_int_equal(m->nservers, 8);
    expect_server(&m->servers[0], "10.0.0.1", 11211, 1, "10.0.0.1:11211");
    /* names lower-cased: ketama places a server by its name */
    expect_server(&m->servers[1], "cache-1.example.com", 11212, 3, "Cache-1.Example.COM:11212");
    /* IPv6 without brackets, in one spelling; the text as written */
    expect_server(&m->servers[2], "::1", 11211, 1, "[::1]:11211");
    expect_server(&m->servers[3], "::1", 11212, 1000, "[0:0:0::1]:11212");
    expect_server(&m->servers[4], "2001:db8::a", 1, 1, "[2001:DB8::A]:1");
    expect_server(&m->servers[5], "mem_cache", 65535, 1, "mem_cache:65535");
    expect_server(&m->servers[6], "10.0.0.1", 11212, 1, "10.0.0.1:11212");
    expect_server(&m->servers[7], "localhost", 11211, 1, "localhost:11211");
    for (size_t i = 0; i < m->nservers; i++) {
        assert_int_equal(m->servers[i].pos.line, 3 + i);
        assert_int_equal(m->servers[i].pos.col, 1);
    }
    config_release(&cfg);

    /* the host is not resolved: a name no DNS knows loads */
    cfg = load_block("server memcached.invalid:11211;");
    expect_server(&cfg->memcached.servers[0], "memcached.invalid", 11211, 1,
                  "memcached.invalid:11211");
    config_release(&cfg);
}

static void test_server_address_errors(void **state)
{
    char body[512], msg[1024];
    char longhost[257];
    struct config *cfg;

    (void)state;
    expect_block_error("server 127.0.0.1;",
                       "t.conf:3:8: invalid memcached server address '127.0.0.1' (expected "
                       "HOST:PORT or [IPV6]:PORT)");
    expect_block_error("server m:;",
                       "t.conf:3:8: invalid memcached server address 'm:' (expected HOST:PORT or "
                       "[IPV6]:PORT)");
    expect_block_error("server [::1:11211;",
                       "t.conf:3:8: invalid memcached server address '[::1:11211' (expected "
                       "HOST:PORT or [IPV6]:PORT)");
    expect_block_error("server [::1]11211;",
                       "t.conf:3:8: invalid memcached server address '[::1]11211' (expected "
                       "HOST:PORT or [IPV6]:PORT)");
    expect_block_error("server ::1:11211;",
                       "t.conf:3:8: invalid memcached server address '::1:11211' (expected "
                       "HOST:PORT or [IPV6]:PORT)");
    expect_block_error("server '';",
                       "t.conf:3:8: invalid memcached server address '' (expected HOST:PORT or "
                       "[IPV6]:PORT)");
    expect_block_error("server m:0;", "t.conf:3:8: invalid port in 'm:0' (expected 1 to 65535)");
    expect_block_error("server m:65536;",
                       "t.conf:3:8: invalid port in 'm:65536' (expected 1 to 65535)");
    expect_block_error("server m:x;", "t.conf:3:8: invalid port in 'm:x' (expected 1 to 65535)");
    expect_block_error("server m:-1;", "t.conf:3:8: invalid port in 'm:-1' (expected 1 to 65535)");
    expect_block_error("server :11211;",
                       "t.conf:3:8: invalid host in ':11211' (expected a name, an IPv4 address "
                       "or [IPV6])");
    expect_block_error("server []:11211;",
                       "t.conf:3:8: invalid host in '[]:11211' (expected a name, an IPv4 address "
                       "or [IPV6])");
    expect_block_error("server [::g]:11211;",
                       "t.conf:3:8: invalid host in '[::g]:11211' (expected a name, an IPv4 "
                       "address or [IPV6])");
    expect_block_error("server [127.0.0.1]:11211;",
                       "t.conf:3:8: invalid host in '[127.0.0.1]:11211' (expected a name, an IPv4 "
                       "address or [IPV6])");
    expect_block_error("server mem/cache:11211;",
                       "t.conf:3:8: invalid host in 'mem/cache:11211' (expected a name, an IPv4 "
                       "address or [IPV6])");
    expect_block_error("server 'a b:1';",
                       "t.conf:3:8: invalid host in 'a b:1' (expected a name, an IPv4 address or "
                       "[IPV6])");

    /* 255 characters is the longest host; the whole text must fit in 299 */
    memset(longhost, 'a', 255);
    longhost[255] = '\0';
    snprintf(body, sizeof body, "server %s:11211;", longhost);
    cfg = load_block(body);
    assert_int_equal(strlen(cfg->memcached.servers[0].host), 255);
    config_release(&cfg);
    memset(longhost, 'a', 256);
    longhost[256] = '\0';
    snprintf(body, sizeof body, "server %s:11211;", longhost);
    snprintf(msg, sizeof msg,
             "t.conf:3:8: invalid host in '%s:11211' (expected a name, an IPv4 address or "
             "[IPV6])",
             longhost);
    expect_block_error(body, msg);
}

static void test_server_weight_errors(void **state)
{
    (void)state;
    expect_block_error("server m:1 weight=0;",
                       "t.conf:3:12: invalid number '0' for 'weight' (expected 1 to 1000)");
    expect_block_error("server m:1 weight=1001;",
                       "t.conf:3:12: invalid number '1001' for 'weight' (expected 1 to 1000)");
    expect_block_error("server m:1 weight=x;",
                       "t.conf:3:12: invalid number 'x' for 'weight' (expected 1 to 1000)");
    expect_block_error("server m:1 weight=;",
                       "t.conf:3:12: invalid number '' for 'weight' (expected 1 to 1000)");
    expect_block_error("server m:1 weight=-2;",
                       "t.conf:3:12: invalid number '-2' for 'weight' (expected 1 to 1000)");
    expect_block_error("server m:1 wieght=2;",
                       "t.conf:3:12: unknown memcached server parameter 'wieght=2' (expected "
                       "weight=N)");
    expect_block_error("server m:1 max_fails=2;",
                       "t.conf:3:12: unknown memcached server parameter 'max_fails=2' (expected "
                       "weight=N)");
    expect_block_error("server m:1 weight;",
                       "t.conf:3:12: unknown memcached server parameter 'weight' (expected "
                       "weight=N)");
    expect_block_error("server m:1 weight=2 weight=3;",
                       "t.conf:3:21: 'server' takes 1 or 2 arguments");
    expect_block_error("server;", "t.conf:3:1: 'server' takes 1 or 2 arguments");
    expect_block_error("server m:1 { }", "t.conf:3:12: 'server' does not take a block");
    /* an address error is reported before a weight error */
    expect_block_error("server m weight=0;",
                       "t.conf:3:8: invalid memcached server address 'm' (expected HOST:PORT or "
                       "[IPV6]:PORT)");
}

static void test_server_duplicates(void **state)
{
    struct config *cfg;

    (void)state;
    expect_block_error(SERVER "\n" SERVER,
                       "t.conf:4:8: duplicate memcached server '127.0.0.1:11211' (first at "
                       "t.conf:3:1)");
    /* weight does not make it another server */
    expect_block_error("server m:1;\n  server m:1 weight=2;",
                       "t.conf:4:10: duplicate memcached server 'm:1' (first at t.conf:3:1)");
    /* names compared without case */
    expect_block_error("server Mem:1; server mEM:1;",
                       "t.conf:3:22: duplicate memcached server 'mEM:1' (first at t.conf:3:1)");
    /* IPv6 compared as addresses */
    expect_block_error("server [::1]:11211;\nserver [0::0:1]:11211;",
                       "t.conf:4:8: duplicate memcached server '[0::0:1]:11211' (first at "
                       "t.conf:3:1)");
    /* not resolved, so a name and its address are two servers, as for
     * libmemcached */
    cfg = load_block("server localhost:1; server 127.0.0.1:1; server m:1; server m:2;");
    assert_int_equal(cfg->memcached.nservers, 4);
    config_release(&cfg);
}

/* ---- the block ---- */

static void test_block_errors(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN "memcached { }",
                            "t.conf:2:1: memcached block needs a 'server' directive");
    configtest_expect_error(LISTEN "memcached {\n  prefix app:;\n  timeout 1s;\n}",
                            "t.conf:2:1: memcached block needs a 'server' directive");
    configtest_expect_error(LISTEN "memcached;", "t.conf:2:1: 'memcached' needs a '{ ... }' block");
    configtest_expect_error(LISTEN "memcached on { " SERVER " }",
                            "t.conf:2:11: 'memcached' takes no arguments");
    configtest_expect_error(LISTEN "memcached { " SERVER " }\nmemcached { server m:1; }",
                            "t.conf:3:1: duplicate 'memcached' block (first at t.conf:2:1)");
    expect_block_error(SERVER " memory 1m;",
                       "t.conf:3:25: directive 'memory' is not allowed in the memcached context "
                       "(only in: cache)");
    expect_block_error(SERVER " listen 127.0.0.1:1;",
                       "t.conf:3:25: directive 'listen' is not allowed in the memcached context "
                       "(only in: main, admin)");
    expect_block_error(SERVER " servers m:2;",
                       "t.conf:3:25: unknown directive 'servers' in the memcached context");
    expect_block_error(SERVER " memcached { }",
                       "t.conf:3:25: directive 'memcached' is not allowed in the memcached "
                       "context (only in: main)");
    configtest_expect_error(
        LISTEN "prefix a;",
        "t.conf:2:1: directive 'prefix' is not allowed in the main context (only in: "
        "memcached)");
    configtest_expect_error(
        LISTEN "backend app { server 127.0.0.1:1; }\nroute / { backend app; "
               "memcached { } }",
        "t.conf:3:24: directive 'memcached' is not allowed in the route context (only "
        "in: main)");
    configtest_expect_error(
        LISTEN "backend app { server 127.0.0.1:1; io_threads 2; }",
        "t.conf:2:35: directive 'io_threads' is not allowed in the backend context "
        "(only in: memcached)");
    /* the second `server` context is named for a misplaced server */
    configtest_expect_error(
        LISTEN "server 1.2.3.4:80;",
        "t.conf:2:1: directive 'server' is not allowed in the main context (only in: "
        "backend, memcached)");
}

/* ---- prefix ---- */

static void test_prefix(void **state)
{
    char body[256], p64[65];
    struct config *cfg;

    (void)state;
    cfg = load_block(SERVER " prefix shop:v2|;");
    assert_string_equal(cfg->memcached.prefix, "shop:v2|");
    config_release(&cfg);

    cfg = load_block(SERVER " prefix x;");
    assert_string_equal(cfg->memcached.prefix, "x");
    config_release(&cfg);

    cfg = load_block(SERVER " prefix \"~!{}#;\";");
    assert_string_equal(cfg->memcached.prefix, "~!{}#;");
    config_release(&cfg);

    memset(p64, 'p', 64);
    p64[64] = '\0';
    snprintf(body, sizeof body, SERVER " prefix %s;", p64);
    cfg = load_block(body);
    assert_string_equal(cfg->memcached.prefix, p64);
    config_release(&cfg);
}

static void test_prefix_errors(void **state)
{
    char body[256], msg[512], p65[66];

    (void)state;
    expect_block_error(SERVER " prefix '';",
                       "t.conf:3:32: empty prefix (expected 1 to 64 characters)");
    memset(p65, 'p', 65);
    p65[65] = '\0';
    snprintf(body, sizeof body, SERVER " prefix %s;", p65);
    snprintf(msg, sizeof msg,
             "t.conf:3:32: prefix '%s' is too long (expected at most 64 characters)", p65);
    expect_block_error(body, msg);
    expect_block_error(SERVER " prefix 'a b';",
                       "t.conf:3:32: invalid prefix 'a b' (expected printable ASCII without "
                       "spaces)");
    expect_block_error(SERVER " prefix 'a\\tb';",
                       "t.conf:3:32: invalid prefix 'a?b' (expected printable ASCII without "
                       "spaces)");
    expect_block_error(SERVER " prefix \"\x7f\";",
                       "t.conf:3:32: invalid prefix '?' (expected printable ASCII without "
                       "spaces)");
    expect_block_error(SERVER " prefix caf\xc3\xa9;",
                       "t.conf:3:32: invalid prefix 'caf\xc3\xa9' (expected printable ASCII "
                       "without spaces)");
    expect_block_error(SERVER " prefix a;\nprefix b;",
                       "t.conf:4:1: duplicate 'prefix' (first at t.conf:3:25)");
    expect_block_error(SERVER " prefix a b;", "t.conf:3:34: 'prefix' takes 1 argument");
}

/* ---- durations ---- */

static void test_durations(void **state)
{
    struct config *cfg;
    const struct config_memcached *m;

    (void)state;
    cfg = load_block(SERVER " timeout 50ms; retry_timeout 30s; ttl_slack 5m;");
    m = &cfg->memcached;
    assert_int_equal(m->timeout_ms, 50);
    assert_int_equal(m->retry_timeout_ms, 30000);
    assert_int_equal(m->ttl_slack_ms, 300000);
    config_release(&cfg);

    /* the smallest and largest of each; a bare number is seconds */
    cfg = load_block(SERVER " timeout 1ms; retry_timeout 1ms; ttl_slack 0;");
    m = &cfg->memcached;
    assert_int_equal(m->timeout_ms, 1);
    assert_int_equal(m->retry_timeout_ms, 1);
    assert_int_equal(m->ttl_slack_ms, 0);
    config_release(&cfg);

    cfg = load_block(SERVER " timeout 1m; retry_timeout 1h; ttl_slack 30d;");
    m = &cfg->memcached;
    assert_int_equal(m->timeout_ms, 60000);
    assert_int_equal(m->retry_timeout_ms, 3600000);
    assert_int_equal(m->ttl_slack_ms, 30ull * 24 * 3600 * 1000);
    config_release(&cfg);

    cfg = load_block(SERVER " timeout 60; retry_timeout 3600; ttl_slack 0ms;");
    m = &cfg->memcached;
    assert_int_equal(m->timeout_ms, 60000);
    assert_int_equal(m->retry_timeout_ms, 3600000);
    assert_int_equal(m->ttl_slack_ms, 0);
    config_release(&cfg);
}

static void test_duration_errors(void **state)
{
    (void)state;
    expect_block_error(SERVER " timeout 0;", "t.conf:3:33: 'timeout' must be greater than 0");
    expect_block_error(SERVER " timeout 0ms;", "t.conf:3:33: 'timeout' must be greater than 0");
    expect_block_error(SERVER " timeout 61s;",
                       "t.conf:3:33: duration '61s' for 'timeout' is out of range (expected at "
                       "most 1m)");
    expect_block_error(SERVER " timeout 60001ms;",
                       "t.conf:3:33: duration '60001ms' for 'timeout' is out of range (expected "
                       "at most 1m)");
    expect_block_error(SERVER " timeout 1.5s;",
                       "t.conf:3:33: invalid duration '1.5s' for 'timeout' (expected a number "
                       "with optional ms, s, m, h or d)");
    expect_block_error(SERVER " timeout -1;",
                       "t.conf:3:33: invalid duration '-1' for 'timeout' (expected a number with "
                       "optional ms, s, m, h or d)");
    expect_block_error(SERVER " retry_timeout 0;",
                       "t.conf:3:39: 'retry_timeout' must be greater than 0");
    expect_block_error(SERVER " retry_timeout 61m;",
                       "t.conf:3:39: duration '61m' for 'retry_timeout' is out of range (expected "
                       "at most 1h)");
    expect_block_error(SERVER " retry_timeout soon;",
                       "t.conf:3:39: invalid duration 'soon' for 'retry_timeout' (expected a "
                       "number with optional ms, s, m, h or d)");
    expect_block_error(SERVER " ttl_slack 31d;",
                       "t.conf:3:35: duration '31d' for 'ttl_slack' is out of range (expected at "
                       "most 30d)");
    expect_block_error(SERVER " ttl_slack 2592000001ms;",
                       "t.conf:3:35: duration '2592000001ms' for 'ttl_slack' is out of range "
                       "(expected at most 30d)");
    expect_block_error(SERVER " ttl_slack 1w;",
                       "t.conf:3:35: invalid duration '1w' for 'ttl_slack' (expected a number "
                       "with optional ms, s, m, h or d)");
    expect_block_error(SERVER " timeout 1s;\n timeout 2s;",
                       "t.conf:4:2: duplicate 'timeout' (first at t.conf:3:25)");
    expect_block_error(SERVER " retry_timeout;", "t.conf:3:25: 'retry_timeout' takes 1 argument");
    expect_block_error(SERVER " ttl_slack 1s 2s;", "t.conf:3:38: 'ttl_slack' takes 1 argument");
}

/* ---- purge_sync ---- */

static void test_purge_sync(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_block(SERVER " purge_sync 250ms;");
    assert_int_equal(cfg->memcached.purge_sync_ms, 250);
    config_release(&cfg);

    /* the smallest and largest; a bare number is seconds */
    cfg = load_block(SERVER " purge_sync 10ms;");
    assert_int_equal(cfg->memcached.purge_sync_ms, 10);
    config_release(&cfg);
    cfg = load_block(SERVER " purge_sync 1h;");
    assert_int_equal(cfg->memcached.purge_sync_ms, 3600000);
    config_release(&cfg);
    cfg = load_block(SERVER " purge_sync 3600000ms;");
    assert_int_equal(cfg->memcached.purge_sync_ms, 3600000);
    config_release(&cfg);
    cfg = load_block(SERVER " purge_sync 5;");
    assert_int_equal(cfg->memcached.purge_sync_ms, 5000);
    config_release(&cfg);
}

static void test_purge_sync_errors(void **state)
{
    (void)state;
    expect_block_error(SERVER " purge_sync 9ms;",
                       "t.conf:3:36: duration '9ms' for 'purge_sync' is out of range (expected "
                       "10ms to 1h)");
    expect_block_error(SERVER " purge_sync 0;",
                       "t.conf:3:36: duration '0' for 'purge_sync' is out of range (expected 10ms "
                       "to 1h)");
    expect_block_error(SERVER " purge_sync 61m;",
                       "t.conf:3:36: duration '61m' for 'purge_sync' is out of range (expected "
                       "10ms to 1h)");
    expect_block_error(SERVER " purge_sync 3600001ms;",
                       "t.conf:3:36: duration '3600001ms' for 'purge_sync' is out of range "
                       "(expected 10ms to 1h)");
    expect_block_error(SERVER " purge_sync 1d;",
                       "t.conf:3:36: duration '1d' for 'purge_sync' is out of range (expected "
                       "10ms to 1h)");
    expect_block_error(SERVER " purge_sync 0.5s;",
                       "t.conf:3:36: invalid duration '0.5s' for 'purge_sync' (expected a number "
                       "with optional ms, s, m, h or d)");
    expect_block_error(SERVER " purge_sync off;",
                       "t.conf:3:36: invalid duration 'off' for 'purge_sync' (expected a number "
                       "with optional ms, s, m, h or d)");
    expect_block_error(SERVER " purge_sync 1s; purge_sync 2s;",
                       "t.conf:3:40: duplicate 'purge_sync' (first at t.conf:3:25)");
    expect_block_error(SERVER " purge_sync;", "t.conf:3:25: 'purge_sync' takes 1 argument");
    configtest_expect_error(
        LISTEN "purge_sync 1s;",
        "t.conf:2:1: directive 'purge_sync' is not allowed in the main context (only "
        "in: memcached)");
}

/* ---- numbers and sizes ---- */

static void test_io_threads_and_queue_max(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_block(SERVER " io_threads 1; queue_max 16;");
    assert_int_equal(cfg->memcached.io_threads, 1);
    assert_int_equal(cfg->memcached.queue_max, 16);
    config_release(&cfg);

    cfg = load_block(SERVER " io_threads 64; queue_max 1000000;");
    assert_int_equal(cfg->memcached.io_threads, 64);
    assert_int_equal(cfg->memcached.queue_max, 1000000);
    config_release(&cfg);

    expect_block_error(SERVER " io_threads 0;",
                       "t.conf:3:36: invalid number '0' for 'io_threads' (expected 1 to 64)");
    expect_block_error(SERVER " io_threads 65;",
                       "t.conf:3:36: invalid number '65' for 'io_threads' (expected 1 to 64)");
    expect_block_error(SERVER " io_threads auto;",
                       "t.conf:3:36: invalid number 'auto' for 'io_threads' (expected 1 to 64)");
    expect_block_error(SERVER " queue_max 15;",
                       "t.conf:3:35: invalid number '15' for 'queue_max' (expected 16 to "
                       "1000000)");
    expect_block_error(SERVER " queue_max 1000001;",
                       "t.conf:3:35: invalid number '1000001' for 'queue_max' (expected 16 to "
                       "1000000)");
    expect_block_error(SERVER " queue_max 4k;",
                       "t.conf:3:35: invalid number '4k' for 'queue_max' (expected 16 to "
                       "1000000)");
    expect_block_error(SERVER " io_threads 2; io_threads 2;",
                       "t.conf:3:39: duplicate 'io_threads' (first at t.conf:3:25)");
    expect_block_error(SERVER " queue_max 16; queue_max 16;",
                       "t.conf:3:39: duplicate 'queue_max' (first at t.conf:3:25)");
}

static void test_item_size(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_block(SERVER " item_size 4k;");
    assert_int_equal(cfg->memcached.item_size, 4 * KIB);
    config_release(&cfg);

    cfg = load_block(SERVER " item_size 128m;");
    assert_int_equal(cfg->memcached.item_size, 128 * MIB);
    config_release(&cfg);

    cfg = load_block(SERVER " item_size 1047552;");
    assert_int_equal(cfg->memcached.item_size, 1047552);
    config_release(&cfg);

    cfg = load_block(SERVER " item_size 4M;");
    assert_int_equal(cfg->memcached.item_size, 4 * MIB);
    config_release(&cfg);

    expect_block_error(SERVER " item_size 4095;",
                       "t.conf:3:35: size '4095' for 'item_size' is out of range (expected 4k to "
                       "128m)");
    expect_block_error(SERVER " item_size 129m;",
                       "t.conf:3:35: size '129m' for 'item_size' is out of range (expected 4k to "
                       "128m)");
    expect_block_error(SERVER " item_size 1g;",
                       "t.conf:3:35: size '1g' for 'item_size' is out of range (expected 4k to "
                       "128m)");
    expect_block_error(SERVER " item_size 0;",
                       "t.conf:3:35: size '0' for 'item_size' is out of range (expected 4k to "
                       "128m)");
    expect_block_error(SERVER " item_size 1t;",
                       "t.conf:3:35: invalid size '1t' for 'item_size' (expected a number with "
                       "optional k, m or g)");
    expect_block_error(SERVER " item_size 1m; item_size 2m;",
                       "t.conf:3:39: duplicate 'item_size' (first at t.conf:3:25)");
}

/* ---- a whole block ---- */

static const char full_block[] = LISTEN "memcached {\n"
                                        "    server 10.0.0.1:11211 weight=2;\n"
                                        "    server cache2.internal:11211;\n"
                                        "    server [::1]:11211;\n"
                                        "    prefix shop:;\n"
                                        "    timeout 100ms;\n"
                                        "    retry_timeout 10s;\n"
                                        "    io_threads 4;\n"
                                        "    item_size 512k;\n"
                                        "    ttl_slack 2m;\n"
                                        "    queue_max 10000;\n"
                                        "    purge_sync 2s;\n"
                                        "}\n";

static void test_full_block(void **state)
{
    struct config *cfg;
    const struct config_memcached *m;

    (void)state;
    cfg = configtest_load(full_block);
    m = &cfg->memcached;
    assert_true(m->enabled);
    assert_int_equal(m->nservers, 3);
    expect_server(&m->servers[0], "10.0.0.1", 11211, 2, "10.0.0.1:11211");
    expect_server(&m->servers[1], "cache2.internal", 11211, 1, "cache2.internal:11211");
    expect_server(&m->servers[2], "::1", 11211, 1, "[::1]:11211");
    assert_int_equal(m->servers[2].pos.line, 5);
    assert_int_equal(m->servers[2].pos.col, 5);
    assert_string_equal(m->prefix, "shop:");
    assert_int_equal(m->timeout_ms, 100);
    assert_int_equal(m->retry_timeout_ms, 10000);
    assert_int_equal(m->io_threads, 4);
    assert_int_equal(m->item_size, 512 * KIB);
    assert_int_equal(m->ttl_slack_ms, 120000);
    assert_int_equal(m->queue_max, 10000);
    assert_int_equal(m->purge_sync_ms, 2000);
    config_release(&cfg);
}

static void test_errors_free_everything(void **state)
{
    char text[sizeof full_block + 128];
    char err[512];

    (void)state;
    /* an error after the whole block, then in the block after every kind of
     * allocation (run under valgrind/ASan) */
    snprintf(text, sizeof text, "%sbogus;\n", full_block);
    assert_null(config_load_string("t.conf", text, err, sizeof err));
    assert_string_equal(err, "t.conf:15:1: unknown directive 'bogus' in the main context");
    assert_null(config_load_string("t.conf",
                                   LISTEN "memcached { server a:1; prefix p; server b:2; "
                                          "prefix q; }",
                                   err, sizeof err));
    assert_string_equal(err, "t.conf:2:47: duplicate 'prefix' (first at t.conf:2:25)");
    assert_null(config_load_string("t.conf", LISTEN "memcached { server a:1; server b:2 w=1; }",
                                   err, sizeof err));
    assert_string_equal(err, "t.conf:2:36: unknown memcached server parameter 'w=1' (expected "
                             "weight=N)");
    assert_null(config_load_string("t.conf", LISTEN "memcached { server A:1; server a:1; }", err,
                                   sizeof err));
    assert_string_equal(err,
                        "t.conf:2:32: duplicate memcached server 'a:1' (first at t.conf:2:13)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_without_block),
        cmocka_unit_test(test_minimal_block),
        cmocka_unit_test(test_server_forms),
        cmocka_unit_test(test_server_address_errors),
        cmocka_unit_test(test_server_weight_errors),
        cmocka_unit_test(test_server_duplicates),
        cmocka_unit_test(test_block_errors),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_prefix_errors),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_duration_errors),
        cmocka_unit_test(test_purge_sync),
        cmocka_unit_test(test_purge_sync_errors),
        cmocka_unit_test(test_io_threads_and_queue_max),
        cmocka_unit_test(test_item_size),
        cmocka_unit_test(test_full_block),
        cmocka_unit_test(test_errors_free_everything),
    };

    return cmocka_run_group_tests_name("config/memcached", tests, NULL, NULL);
}
