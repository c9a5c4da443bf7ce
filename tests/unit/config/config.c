/*
 * tests/unit/config/config.c: the typed config (config/config.c,
 * config/backend.c, config/route.c): every directive, its default, its range
 * and the exact text of each error.  The cache directives (config/cache.c)
 * are tested in tests/unit/config/cache.c.  Also checks that the shipped
 * conf.d/tessera.conf loads and that man/tessera.conf.5 documents every
 * directive of config/directives.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "tests/support/configtest.h"
#include "config/directives.h"

#define LISTEN "listen 127.0.0.1:8080;\n"
#define APP "backend app { server 127.0.0.1:8000; }\n"

/* ---- helpers ---- */

static unsigned port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void expect_ipv4(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
                        unsigned port)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
    char buf[INET_ADDRSTRLEN];

    assert_int_equal(ss->ss_family, AF_INET);
    assert_int_equal(len, sizeof *sin);
    assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf));
    assert_string_equal(buf, ip);
    assert_int_equal(port_of(ss), port);
}

static void expect_ipv6(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
                        unsigned port)
{
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
    char buf[INET6_ADDRSTRLEN];

    assert_int_equal(ss->ss_family, AF_INET6);
    assert_int_equal(len, sizeof *sin6);
    assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf));
    assert_string_equal(buf, ip);
    assert_int_equal(port_of(ss), port);
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
}

/* The repository root, from this file's path as the Makefile passes it. */
static void repo_path(const char *rel, char *out, size_t len)
{
    const char *self = __FILE__;
    const char *tail = strstr(self, "tests/unit/config/config.c");
    int n = tail ? (int)(tail - self) : 0;

    snprintf(out, len, "%.*s%s", n, self, rel);
}

struct tmp {
    char dir[64];
};

static int tmp_setup(void **state)
{
    struct tmp *t = calloc(1, sizeof *t);

    if (!t)
        return -1;
    snprintf(t->dir, sizeof t->dir, "/tmp/tessera-config-XXXXXX");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int tmp_teardown(void **state)
{
    struct tmp *t = *state;
    int rc = nftw(t->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

    free(t);
    return rc;
}

static void write_file(const char *dir, const char *rel, const char *text)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, rel);
    for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* ---- main context ---- */

static void test_defaults(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = configtest_load(LISTEN);
    assert_int_equal(atomic_load(&cfg->refs), 1);
    assert_string_equal(cfg->path, "t.conf");
    assert_int_equal(cfg->nfiles, 1);
    assert_string_equal(cfg->files[0], "t.conf");
    assert_int_equal(cfg->nlistens, 1);
    expect_ipv4(&cfg->listens[0].addr, cfg->listens[0].addrlen, "127.0.0.1", 8080);
    assert_string_equal(cfg->listens[0].text, "127.0.0.1:8080");
    assert_ptr_equal(cfg->listens[0].pos.file, cfg->files[0]);
    assert_int_equal(cfg->listens[0].pos.line, 1);
    assert_int_equal(cfg->listens[0].pos.col, 1);
    assert_int_equal(cfg->workers, online_cpus());
    assert_int_equal(cfg->drain_timeout_ms, 10000);
    assert_int_equal(cfg->nbackends, 0);
    assert_null(cfg->backends);
    assert_int_equal(cfg->nroutes, 0);

    assert_int_equal(cfg->limits.header_size, 32 * 1024);
    assert_int_equal(cfg->limits.headers, 100);
    assert_int_equal(cfg->limits.uri_size, 8 * 1024);
    assert_int_equal(cfg->limits.body_size, 10 * 1024 * 1024);
    assert_int_equal(cfg->limits.header_timeout_ms, 10000);
    assert_int_equal(cfg->limits.body_timeout_ms, 60000);
    assert_int_equal(cfg->limits.idle_timeout_ms, 60000);
    assert_int_equal(cfg->limits.max_connections, 10000);

    assert_null(cfg->log.access_path);
    assert_string_equal(cfg->log.error_path, "stderr");
    assert_int_equal(cfg->log.level, LOG_INFO);
    config_release(&cfg);
}

static void test_listen_forms(void **state)
{
    struct config *cfg;

    (void)state;
    cfg =
        configtest_load("listen *:0;\nlisten [::1]:8080;\nlisten [::]:443;\nlisten 0.0.0.0:65535;\n"
                        "listen *:0;\n");
    assert_int_equal(cfg->nlistens, 5);
    expect_ipv4(&cfg->listens[0].addr, cfg->listens[0].addrlen, "0.0.0.0", 0);
    assert_string_equal(cfg->listens[0].text, "*:0");
    expect_ipv6(&cfg->listens[1].addr, cfg->listens[1].addrlen, "::1", 8080);
    assert_string_equal(cfg->listens[1].text, "[::1]:8080");
    assert_int_equal(cfg->listens[1].pos.line, 2);
    expect_ipv6(&cfg->listens[2].addr, cfg->listens[2].addrlen, "::", 443);
    expect_ipv4(&cfg->listens[3].addr, cfg->listens[3].addrlen, "0.0.0.0", 65535);
    config_release(&cfg);
}

static void test_listen_errors(void **state)
{
    (void)state;
    configtest_expect_error("listen 8080;",
                            "t.conf:1:8: invalid listen address '8080' (expected IPV4:PORT, "
                            "[IPV6]:PORT or *:PORT)");
    configtest_expect_error("listen localhost:80;",
                            "t.conf:1:8: invalid listen address 'localhost:80' "
                            "(expected IPV4:PORT, [IPV6]:PORT or *:PORT)");
    configtest_expect_error("listen ::1:80;",
                            "t.conf:1:8: invalid listen address '::1:80' (expected "
                            "IPV4:PORT, [IPV6]:PORT or *:PORT)");
    configtest_expect_error("listen [::1]80;",
                            "t.conf:1:8: invalid listen address '[::1]80' (expected "
                            "IPV4:PORT, [IPV6]:PORT or *:PORT)");
    configtest_expect_error("listen [zz]:80;",
                            "t.conf:1:8: invalid listen address '[zz]:80' (expected "
                            "IPV4:PORT, [IPV6]:PORT or *:PORT)");
    configtest_expect_error("listen 1.2.3.4:;",
                            "t.conf:1:8: invalid listen address '1.2.3.4:' (expected "
                            "IPV4:PORT, [IPV6]:PORT or *:PORT)");
    configtest_expect_error("listen 1.2.3.4:65536;",
                            "t.conf:1:8: invalid port in '1.2.3.4:65536' (expected 0 to 65535)");
    configtest_expect_error("listen 1.2.3.4:http;",
                            "t.conf:1:8: invalid port in '1.2.3.4:http' (expected 0 to 65535)");
    configtest_expect_error("listen 127.0.0.1:80;\n  listen 127.0.0.1:80;",
                            "t.conf:2:10: duplicate listen '127.0.0.1:80' (first at t.conf:1:1)");
    configtest_expect_error("listen;", "t.conf:1:1: 'listen' takes 1 argument");
    configtest_expect_error("listen *:80 { }", "t.conf:1:13: 'listen' does not take a block");
}

static void test_no_listen(void **state)
{
    (void)state;
    configtest_expect_error("", "t.conf:1:1: no 'listen' directive");
    configtest_expect_error("# nothing\nworkers 2;\n", "t.conf:1:1: no 'listen' directive");
}

static void test_workers(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = configtest_load(LISTEN "workers 1;");
    assert_int_equal(cfg->workers, 1);
    config_release(&cfg);
    cfg = configtest_load(LISTEN "workers 256;");
    assert_int_equal(cfg->workers, 256);
    config_release(&cfg);
    cfg = configtest_load(LISTEN "workers auto;");
    assert_int_equal(cfg->workers, online_cpus());
    config_release(&cfg);
}

static void test_workers_errors(void **state)
{
    (void)state;
    configtest_expect_error(
        LISTEN "workers 0;",
        "t.conf:2:9: invalid value '0' for 'workers' (expected auto or 1 to 256)");
    configtest_expect_error(
        LISTEN "workers 257;",
        "t.conf:2:9: invalid value '257' for 'workers' (expected auto or 1 to 256)");
    configtest_expect_error(
        LISTEN "workers many;",
        "t.conf:2:9: invalid value 'many' for 'workers' (expected auto or 1 to 256)");
    configtest_expect_error(LISTEN "workers 1;\nworkers 2;",
                            "t.conf:3:1: duplicate 'workers' (first at t.conf:2:1)");
    configtest_expect_error(LISTEN "workers 1 2;", "t.conf:2:11: 'workers' takes 1 argument");
    configtest_expect_error(LISTEN "workers;", "t.conf:2:1: 'workers' takes 1 argument");
    configtest_expect_error("workers 4\nlisten 1.2.3.4:80;",
                            "t.conf:2:1: 'workers' takes 1 argument (missing ';' on line 1?)");
}

static void test_drain_timeout(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = configtest_load(LISTEN "drain_timeout 500ms;");
    assert_int_equal(cfg->drain_timeout_ms, 500);
    config_release(&cfg);
    cfg = configtest_load(LISTEN "drain_timeout 0;");
    assert_int_equal(cfg->drain_timeout_ms, 0);
    config_release(&cfg);
    configtest_expect_error(
        LISTEN "drain_timeout abc;",
        "t.conf:2:15: invalid duration 'abc' for 'drain_timeout' (expected a number "
        "with optional ms, s, m, h or d)");
    configtest_expect_error(
        LISTEN "drain_timeout 1m30s;",
        "t.conf:2:15: invalid duration '1m30s' for 'drain_timeout' (expected a number "
        "with optional ms, s, m, h or d)");
}

static void test_unknown_directives(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN "\n  lisen 1;",
                            "t.conf:3:3: unknown directive 'lisen' in the main context");
    configtest_expect_error(LISTEN "backend a { serve x:1; }",
                            "t.conf:2:13: unknown directive 'serve' in the backend context");
    configtest_expect_error(LISTEN APP "route / { backend app; caching on; }",
                            "t.conf:3:24: unknown directive 'caching' in the route context");
    configtest_expect_error(LISTEN "limits { body 1; }",
                            "t.conf:2:10: unknown directive 'body' in the limits context");
    configtest_expect_error(LISTEN "log { format x; }",
                            "t.conf:2:7: unknown directive 'format' in the log context");
    /* unknown is unknown, even after an error would have been found later */
    configtest_expect_error("lisen 1;\nlisten bad;",
                            "t.conf:1:1: unknown directive 'lisen' in the main "
                            "context");
}

static void test_directive_in_wrong_context(void **state)
{
    (void)state;
    configtest_expect_error(
        LISTEN "server 1.2.3.4:80;",
        "t.conf:2:1: directive 'server' is not allowed in the main context (only in: "
        "backend, memcached)");
    configtest_expect_error(
        LISTEN "limits { backend x; }",
        "t.conf:2:10: directive 'backend' is not allowed in the limits context (only "
        "in: main, route)");
    configtest_expect_error(
        LISTEN "log { listen *:1; }",
        "t.conf:2:7: directive 'listen' is not allowed in the log context (only in: "
        "main, admin)");
}

static void test_block_shape(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN "limits;", "t.conf:2:1: 'limits' needs a '{ ... }' block");
    configtest_expect_error(LISTEN "backend app;", "t.conf:2:1: 'backend' needs a '{ ... }' block");
    configtest_expect_error(LISTEN "workers 2 { }", "t.conf:2:11: 'workers' does not take a block");
    configtest_expect_error(LISTEN "log x { }", "t.conf:2:5: 'log' takes no arguments");
    configtest_expect_error(LISTEN "backend { server 1.2.3.4:80; }",
                            "t.conf:2:1: 'backend' takes 1 argument");
    configtest_expect_error(LISTEN "route a b c { }",
                            "t.conf:2:11: 'route' takes 1 or 2 arguments");
    configtest_expect_error(LISTEN "route { }", "t.conf:2:1: 'route' takes 1 or 2 arguments");
    configtest_expect_error(LISTEN "backend a { server 1.2.3.4:80 a b c d; }",
                            "t.conf:2:37: 'server' takes 1 to 4 arguments");
}

static void test_syntax_errors_pass_through(void **state)
{
    char err[256];

    (void)state;
    configtest_expect_error(LISTEN "limits {\n",
                            "t.conf:3:1: unexpected end of file, expected '}' (block "
                            "opened at t.conf:2:8)");
    configtest_expect_error(LISTEN "}", "t.conf:2:1: unexpected '}'");
    assert_null(config_load("/nonexistent/tessera.conf", err, sizeof err));
    assert_string_equal(err, "/nonexistent/tessera.conf: cannot open: No such file or directory");
}

/* ---- backends ---- */

static void test_backend(void **state)
{
    struct config *cfg;
    const struct config_backend *b;

    (void)state;
    cfg = configtest_load(LISTEN "backend app {\n"
                                 "    server 127.0.0.1:8000;\n"
                                 "    server [::1]:8001 weight=5 max_fails=0 fail_timeout=30s;\n"
                                 "    server localhost:8002 fail_timeout=500ms weight=1000 "
                                 "max_fails=1000;\n"
                                 "    connect_timeout 2s;\n"
                                 "    read_timeout 500ms;\n"
                                 "    keepalive 0;\n"
                                 "}\n"
                                 "backend other { server 10.0.0.1:80; }\n");
    assert_int_equal(cfg->nbackends, 2);
    b = &cfg->backends[0];
    assert_string_equal(b->name, "app");
    assert_int_equal(b->pos.line, 2);
    assert_ptr_equal(b->pos.file, cfg->files[0]);
    assert_int_equal(b->nservers, 3);
    expect_ipv4(&b->servers[0].addr, b->servers[0].addrlen, "127.0.0.1", 8000);
    assert_string_equal(b->servers[0].text, "127.0.0.1:8000");
    assert_int_equal(b->servers[0].weight, 1);
    assert_int_equal(b->servers[0].max_fails, 1);
    assert_int_equal(b->servers[0].fail_timeout_ms, 10000);
    expect_ipv6(&b->servers[1].addr, b->servers[1].addrlen, "::1", 8001);
    assert_string_equal(b->servers[1].text, "[::1]:8001");
    assert_int_equal(b->servers[1].weight, 5);
    assert_int_equal(b->servers[1].max_fails, 0);
    assert_int_equal(b->servers[1].fail_timeout_ms, 30000);
    assert_true(b->servers[2].addr.ss_family == AF_INET ||
                b->servers[2].addr.ss_family == AF_INET6);
    assert_int_equal(port_of(&b->servers[2].addr), 8002);
    assert_string_equal(b->servers[2].text, "localhost:8002");
    assert_int_equal(b->servers[2].weight, 1000);
    assert_int_equal(b->servers[2].max_fails, 1000);
    assert_int_equal(b->servers[2].fail_timeout_ms, 500);
    assert_int_equal(b->connect_timeout_ms, 2000);
    assert_int_equal(b->read_timeout_ms, 500);
    assert_int_equal(b->keepalive, 0);

    b = &cfg->backends[1];
    assert_string_equal(b->name, "other");
    assert_int_equal(b->connect_timeout_ms, 5000);
    assert_int_equal(b->read_timeout_ms, 60000);
    assert_int_equal(b->keepalive, 32);

    assert_ptr_equal(config_backend_find(cfg, "other"), &cfg->backends[1]);
    assert_ptr_equal(config_backend_find(cfg, "app"), &cfg->backends[0]);
    assert_null(config_backend_find(cfg, "ap"));
    config_release(&cfg);
}

static void test_backend_errors(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN "backend app { }",
                            "t.conf:2:1: backend 'app' needs a 'server' directive");
    configtest_expect_error(LISTEN APP "backend app { server 1.2.3.4:1; }",
                            "t.conf:3:9: duplicate backend 'app' (first at t.conf:2:1)");
    configtest_expect_error(LISTEN "backend \"\" { server 1.2.3.4:1; }",
                            "t.conf:2:9: empty backend name");
    configtest_expect_error(LISTEN "backend a { server 1.2.3.4:1; connect_timeout 0; }",
                            "t.conf:2:47: 'connect_timeout' must be greater than 0");
    configtest_expect_error(
        LISTEN "backend a { server 1.2.3.4:1; read_timeout soon; }",
        "t.conf:2:44: invalid duration 'soon' for 'read_timeout' (expected a number "
        "with optional ms, s, m, h or d)");
    configtest_expect_error(
        LISTEN "backend a { server 1.2.3.4:1; keepalive 10001; }",
        "t.conf:2:41: invalid number '10001' for 'keepalive' (expected 0 to 10000)");
    configtest_expect_error(LISTEN "backend a { server 1.2.3.4:1; keepalive 1; keepalive 2; }",
                            "t.conf:2:44: duplicate 'keepalive' (first at t.conf:2:31)");
}

static void test_server_errors(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN "backend a { server nocolon; }",
                            "t.conf:2:20: invalid server address 'nocolon' (expected HOST:PORT or "
                            "[IPV6]:PORT)");
    configtest_expect_error(
        LISTEN "backend a { server :80; }",
        "t.conf:2:20: invalid server address ':80' (expected HOST:PORT or [IPV6]:PORT)");
    configtest_expect_error(LISTEN "backend a { server ::1:80; }",
                            "t.conf:2:20: invalid server address '::1:80' (expected HOST:PORT or "
                            "[IPV6]:PORT)");
    configtest_expect_error(LISTEN "backend a { server 1.2.3.4:0; }",
                            "t.conf:2:20: invalid port in '1.2.3.4:0' (expected 1 to 65535)");
    configtest_expect_error(LISTEN "backend a { server 1.2.3.4:99999; }",
                            "t.conf:2:20: invalid port in '1.2.3.4:99999' (expected 1 to 65535)");
    configtest_expect_error_prefix(LISTEN "backend a { server [nothost]:80; }",
                                   "t.conf:2:20: cannot resolve 'nothost': ");
    configtest_expect_error_prefix(LISTEN "backend a {\n  server nonexistent.invalid:80;\n}",
                                   "t.conf:3:10: cannot resolve 'nonexistent.invalid': ");
}

static void test_server_parameter_errors(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN "backend a { server 1.2.3.4:1 weight=0; }",
                            "t.conf:2:30: invalid number '0' for 'weight' (expected 1 to 1000)");
    configtest_expect_error(LISTEN "backend a { server 1.2.3.4:1 weight=1001; }",
                            "t.conf:2:30: invalid number '1001' for 'weight' (expected 1 to 1000)");
    configtest_expect_error(LISTEN "backend a { server 1.2.3.4:1 weight=; }",
                            "t.conf:2:30: invalid number '' for 'weight' (expected 1 to 1000)");
    configtest_expect_error(
        LISTEN "backend a { server 1.2.3.4:1 max_fails=1001; }",
        "t.conf:2:30: invalid number '1001' for 'max_fails' (expected 0 to 1000)");
    configtest_expect_error(
        LISTEN "backend a { server 1.2.3.4:1 fail_timeout=x; }",
        "t.conf:2:30: invalid duration 'x' for 'fail_timeout' (expected a number with "
        "optional ms, s, m, h or d)");
    configtest_expect_error(LISTEN "backend a { server 1.2.3.4:1 backup; }",
                            "t.conf:2:30: unknown server parameter 'backup' (expected weight=N, "
                            "max_fails=N or fail_timeout=DURATION)");
    configtest_expect_error(LISTEN "backend a { server 1.2.3.4:1 weights=2; }",
                            "t.conf:2:30: unknown server parameter 'weights=2' (expected weight=N, "
                            "max_fails=N or fail_timeout=DURATION)");
    configtest_expect_error(LISTEN "backend a { server 1.2.3.4:1 weight=1 weight=2; }",
                            "t.conf:2:39: duplicate server parameter 'weight'");
}

/* ---- routes ---- */

static void test_routes(void **state)
{
    struct config *cfg;
    const struct config_route *r;
    pcre2_match_data *md;

    (void)state;
    cfg = configtest_load(LISTEN "route = / { backend app; }\n"
                                 "route /static/ { backend files; host Static.Example.COM; }\n"
                                 "route ~ \\.json$ { backend app; }\n"
                                 "route default { backend app; }\n"
                                 "route ~ '^/api/v[0-9]+/' { backend files; host [::1]; }\n"
                                 "route /static/ { backend app; host other.example; }\n"
                                 "route = /static/ { backend app; }\n"
                                 "backend app { server 127.0.0.1:8000; }\n"
                                 "backend files { server 127.0.0.1:8001; }\n");
    assert_int_equal(cfg->nroutes, 7);
    for (unsigned i = 0; i < cfg->nroutes; i++) {
        assert_int_equal(cfg->routes[i].index, i);
        assert_int_equal(cfg->routes[i].pos.line, i + 2);
        assert_int_equal(cfg->routes[i].pos.col, 1);
        assert_ptr_equal(cfg->routes[i].pos.file, cfg->files[0]);
    }

    r = &cfg->routes[0];
    assert_int_equal(r->match, ROUTE_EXACT);
    assert_string_equal(r->pattern, "/");
    assert_int_equal(r->pattern_len, 1);
    assert_null(r->regex);
    assert_null(r->host);
    assert_ptr_equal(r->backend, &cfg->backends[0]);

    r = &cfg->routes[1];
    assert_int_equal(r->match, ROUTE_PREFIX);
    assert_string_equal(r->pattern, "/static/");
    assert_int_equal(r->pattern_len, 8);
    assert_string_equal(r->host, "static.example.com");
    assert_ptr_equal(r->backend, &cfg->backends[1]);

    r = &cfg->routes[2];
    assert_int_equal(r->match, ROUTE_REGEX);
    assert_string_equal(r->pattern, "\\.json$");
    assert_non_null(r->regex);
    md = pcre2_match_data_create_from_pattern(r->regex, NULL);
    assert_true(pcre2_match(r->regex, (PCRE2_SPTR) "/a/b.json", 9, 0, 0, md, NULL) >= 0);
    assert_true(pcre2_match(r->regex, (PCRE2_SPTR) "/a/bxjson", 9, 0, 0, md, NULL) < 0);
    pcre2_match_data_free(md);

    r = &cfg->routes[3];
    assert_int_equal(r->match, ROUTE_DEFAULT);
    assert_null(r->pattern);
    assert_int_equal(r->pattern_len, 0);
    assert_null(r->regex);

    r = &cfg->routes[4];
    assert_int_equal(r->match, ROUTE_REGEX);
    assert_string_equal(r->pattern, "^/api/v[0-9]+/");
    assert_string_equal(r->host, "[::1]");
    assert_ptr_equal(r->backend, &cfg->backends[1]);
    config_release(&cfg);
}

static void test_route_pattern_errors(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN APP "route static { backend app; }",
                            "t.conf:3:7: route path 'static' must start with '/'");
    configtest_expect_error(LISTEN APP "route = static { backend app; }",
                            "t.conf:3:9: route path 'static' must start with '/'");
    configtest_expect_error(LISTEN APP "route = default { backend app; }",
                            "t.conf:3:9: route path 'default' must start with '/'");
    configtest_expect_error(LISTEN APP "route ^ /x { backend app; }",
                            "t.conf:3:7: unknown route modifier '^' (expected '=' or '~')");
    configtest_expect_error(
        LISTEN APP "route ~ (abc { backend app; }",
        "t.conf:3:9: invalid regex '(abc': missing closing parenthesis at offset 4");
    configtest_expect_error(
        LISTEN APP "route ~ \"a{2,1}\" { backend app; }",
        "t.conf:3:9: invalid regex 'a{2,1}': numbers out of order in {} quantifier at "
        "offset 5");
}

static void test_route_duplicates(void **state)
{
    struct config *cfg;

    (void)state;
    configtest_expect_error(LISTEN APP
                            "route default { backend app; }\nroute default { backend app; }",
                            "t.conf:4:1: duplicate 'route default' (first at t.conf:3:1)");
    configtest_expect_error(LISTEN APP "route /a { backend app; }\nroute /a { backend app; }",
                            "t.conf:4:1: duplicate route '/a' (first at t.conf:3:1)");
    configtest_expect_error(
        LISTEN APP "route = /a { backend app; host x.com; }\n"
                   "route = /a { host X.com; backend app; }",
        "t.conf:4:1: duplicate route '= /a' for host x.com (first at t.conf:3:1)");
    configtest_expect_error(LISTEN APP "route ~ ^/a { backend app; }\nroute ~ ^/a { backend app; }",
                            "t.conf:4:1: duplicate route '~ ^/a' (first at t.conf:3:1)");
    /* a different host, or a different kind of match, is a different route */
    cfg =
        configtest_load(LISTEN APP "route /a { backend app; }\nroute /a { backend app; host x; }\n"
                                   "route = /a { backend app; }\nroute ~ /a { backend app; }\n");
    assert_int_equal(cfg->nroutes, 4);
    config_release(&cfg);
}

static void test_route_backend_errors(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN APP "\nroute /a {\n    host x;\n}",
                            "t.conf:4:1: route needs a 'backend' directive");
    configtest_expect_error(LISTEN APP "route /a { }",
                            "t.conf:3:1: route needs a 'backend' directive");
    configtest_expect_error(LISTEN APP "route /a {\n    backend ap;\n}",
                            "t.conf:4:13: unknown backend 'ap'");
    configtest_expect_error(LISTEN "route default { backend app; }",
                            "t.conf:2:25: unknown backend 'app'");
    configtest_expect_error(LISTEN APP "route /a { backend app; backend app; }",
                            "t.conf:3:25: duplicate 'backend' (first at t.conf:3:12)");
    configtest_expect_error(LISTEN APP "route /a { backend app x; }",
                            "t.conf:3:24: 'backend' takes 1 argument");
}

static void test_route_host_errors(void **state)
{
    (void)state;
    configtest_expect_error(
        LISTEN APP "route /a { backend app; host a.com:80; }",
        "t.conf:3:30: host 'a.com:80' must not contain ':' (no port; write IPv6 as "
        "[::1])");
    configtest_expect_error(
        LISTEN APP "route /a { backend app; host ::1; }",
        "t.conf:3:30: host '::1' must not contain ':' (no port; write IPv6 as [::1])");
    configtest_expect_error(
        LISTEN APP "route /a { backend app; host [zz]; }",
        "t.conf:3:30: invalid host '[zz]' (expected a name, an IPv4 address or [IPV6])");
    configtest_expect_error(
        LISTEN APP "route /a { backend app; host \"a b\"; }",
        "t.conf:3:30: invalid host 'a b' (expected a name, an IPv4 address or [IPV6])");
    configtest_expect_error(
        LISTEN APP "route /a { backend app; host ''; }",
        "t.conf:3:30: invalid host '' (expected a name, an IPv4 address or [IPV6])");
    configtest_expect_error(
        LISTEN APP "route /a { backend app; host [::1]:80; }",
        "t.conf:3:30: invalid host '[::1]:80' (expected a name, an IPv4 address or "
        "[IPV6])");
}

/* ---- limits ---- */

static void test_limits(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = configtest_load(LISTEN "limits {\n"
                                 "    header_size 1k;\n"
                                 "    headers 10000;\n"
                                 "    uri_size 256;\n"
                                 "    body_size 0;\n"
                                 "    header_timeout 1500ms;\n"
                                 "    body_timeout 2m;\n"
                                 "    idle_timeout 1h;\n"
                                 "    max_connections 1000000;\n"
                                 "}\n");
    assert_int_equal(cfg->limits.header_size, 1024);
    assert_int_equal(cfg->limits.headers, 10000);
    assert_int_equal(cfg->limits.uri_size, 256);
    assert_int_equal(cfg->limits.body_size, 0);
    assert_int_equal(cfg->limits.header_timeout_ms, 1500);
    assert_int_equal(cfg->limits.body_timeout_ms, 120000);
    assert_int_equal(cfg->limits.idle_timeout_ms, 3600000);
    assert_int_equal(cfg->limits.max_connections, 1000000);
    config_release(&cfg);

    cfg = configtest_load(LISTEN "limits { header_size 1m; uri_size 1M; body_size 4g; headers 1; "
                                 "max_connections 1; }");
    assert_int_equal(cfg->limits.header_size, 1024 * 1024);
    assert_int_equal(cfg->limits.uri_size, 1024 * 1024);
    assert_true(cfg->limits.body_size == 4ull << 30);
    assert_int_equal(cfg->limits.headers, 1);
    assert_int_equal(cfg->limits.max_connections, 1);
    assert_int_equal(cfg->limits.idle_timeout_ms, 60000); /* untouched: default */
    config_release(&cfg);
}

static void test_limits_errors(void **state)
{
    (void)state;
    configtest_expect_error(
        LISTEN "limits {\n    header_size abc;\n}",
        "t.conf:3:17: invalid size 'abc' for 'header_size' (expected a number with "
        "optional k, m or g)");
    configtest_expect_error(
        LISTEN "limits { header_size 512; }",
        "t.conf:2:22: size '512' for 'header_size' is out of range (expected 1k to 1m)");
    configtest_expect_error(
        LISTEN "limits { header_size 2m; }",
        "t.conf:2:22: size '2m' for 'header_size' is out of range (expected 1k to 1m)");
    configtest_expect_error(
        LISTEN "limits { uri_size 255; }",
        "t.conf:2:19: size '255' for 'uri_size' is out of range (expected 256 to 1m)");
    configtest_expect_error(
        LISTEN "limits { body_size 1.5m; }",
        "t.conf:2:20: invalid size '1.5m' for 'body_size' (expected a number with "
        "optional k, m or g)");
    configtest_expect_error(
        LISTEN "limits { body_size 99999999999g; }",
        "t.conf:2:20: invalid size '99999999999g' for 'body_size' (expected a number "
        "with optional k, m or g)");
    configtest_expect_error(LISTEN "limits { headers 0; }",
                            "t.conf:2:18: invalid number '0' for 'headers' (expected 1 to 10000)");
    configtest_expect_error(
        LISTEN "limits { max_connections 1000001; }",
        "t.conf:2:26: invalid number '1000001' for 'max_connections' (expected 1 to "
        "1000000)");
    configtest_expect_error(LISTEN "limits { header_timeout 0; }",
                            "t.conf:2:25: 'header_timeout' must be greater than 0");
    configtest_expect_error(LISTEN "limits { body_timeout 0s; }",
                            "t.conf:2:23: 'body_timeout' must be greater than 0");
    configtest_expect_error(
        LISTEN "limits { idle_timeout 1x; }",
        "t.conf:2:23: invalid duration '1x' for 'idle_timeout' (expected a number with "
        "optional ms, s, m, h or d)");
    configtest_expect_error(LISTEN "limits { headers 5; headers 6; }",
                            "t.conf:2:21: duplicate 'headers' (first at t.conf:2:10)");
    configtest_expect_error(LISTEN "limits { }\nlimits { }",
                            "t.conf:3:1: duplicate 'limits' block (first at t.conf:2:1)");
    configtest_expect_error(LISTEN "limits 1 { }", "t.conf:2:8: 'limits' takes no arguments");
}

/* ---- log ---- */

static void test_log(void **state)
{
    struct config *cfg;
    char cwd[PATH_MAX], want[PATH_MAX + 32];

    (void)state;
    assert_non_null(getcwd(cwd, sizeof cwd));
    cfg = configtest_load(LISTEN "log { access stderr; error /var/log/tessera.err; level debug; }");
    assert_string_equal(cfg->log.access_path, "stderr");
    assert_string_equal(cfg->log.error_path, "/var/log/tessera.err");
    assert_int_equal(cfg->log.level, LOG_DEBUG);
    config_release(&cfg);

    cfg = configtest_load(LISTEN "log { access logs/access.log; error ./err.log; level error; }");
    snprintf(want, sizeof want, "%s/logs/access.log", cwd);
    assert_string_equal(cfg->log.access_path, want);
    snprintf(want, sizeof want, "%s/err.log", cwd);
    assert_string_equal(cfg->log.error_path, want);
    assert_int_equal(cfg->log.level, LOG_ERROR);
    config_release(&cfg);

    cfg = configtest_load(LISTEN "log { access off; error stderr; level warn; }");
    assert_null(cfg->log.access_path);
    assert_string_equal(cfg->log.error_path, "stderr");
    assert_int_equal(cfg->log.level, LOG_WARN);
    config_release(&cfg);

    cfg = configtest_load(LISTEN "log { level info; }");
    assert_int_equal(cfg->log.level, LOG_INFO);
    config_release(&cfg);
}

static void expect_access_path(const char *name, const char *access, const char *want)
{
    char err[512] = "", text[256];
    struct config *cfg;

    snprintf(text, sizeof text, LISTEN "log { access %s; }", access);
    cfg = config_load_string(name, text, err, sizeof err);
    if (!cfg)
        fail_msg("unexpected config error: %s", err);
    assert_string_equal(cfg->log.access_path, want);
    config_release(&cfg);
}

static void test_log_paths_relative_to_main_file(void **state)
{
    char cwd[PATH_MAX], want[PATH_MAX + 32];

    (void)state;
    assert_non_null(getcwd(cwd, sizeof cwd));
    expect_access_path("/etc/tessera/tessera.conf", "a.log", "/etc/tessera/a.log");
    expect_access_path("/etc/tessera/tessera.conf", "./logs/a.log", "/etc/tessera/logs/a.log");
    expect_access_path("/tessera.conf", "a.log", "/a.log");
    expect_access_path("/etc/tessera.conf", "/abs/a.log", "/abs/a.log");
    snprintf(want, sizeof want, "%s/conf/a.log", cwd);
    expect_access_path("conf/tessera.conf", "a.log", want);
    expect_access_path("./conf/tessera.conf", "a.log", want);
    snprintf(want, sizeof want, "%s/a.log", cwd);
    expect_access_path("./tessera.conf", "a.log", want);
}

static void test_log_errors(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN "log { error off; }",
                            "t.conf:2:13: the error log cannot be off (expected stderr or a path)");
    configtest_expect_error(
        LISTEN "log { level verbose; }",
        "t.conf:2:13: invalid log level 'verbose' (expected error, warn, info or debug)");
    configtest_expect_error(LISTEN "log { access \"\"; }", "t.conf:2:14: empty log path");
    configtest_expect_error(LISTEN "log { level info; level warn; }",
                            "t.conf:2:19: duplicate 'level' (first at t.conf:2:7)");
    configtest_expect_error(LISTEN "log { }\n\n  log { }",
                            "t.conf:4:3: duplicate 'log' block (first at "
                            "t.conf:2:1)");
    configtest_expect_error(LISTEN "log { access a b; }", "t.conf:2:16: 'access' takes 1 argument");
}

static void test_log_level_name(void **state)
{
    (void)state;
    assert_string_equal(log_level_name(LOG_ERROR), "error");
    assert_string_equal(log_level_name(LOG_WARN), "warn");
    assert_string_equal(log_level_name(LOG_INFO), "info");
    assert_string_equal(log_level_name(LOG_DEBUG), "debug");
    assert_string_equal(log_level_name((enum log_level)42), "unknown");
}

/* ---- files, references, whole configs ---- */

static void test_includes_and_file_positions(void **state)
{
    struct tmp *t = *state;
    struct config *cfg;
    char path[PATH_MAX], err[1024], want[PATH_MAX + 64];

    write_file(t->dir, "main.conf", "listen *:0;\ninclude conf.d/*.conf;\nlog { access a.log; }\n");
    write_file(t->dir, "conf.d/10-backends.conf", "backend app {\n  server 127.0.0.1:1;\n}\n");
    write_file(t->dir, "conf.d/20-routes.conf", "\nroute / { backend app; }\n");
    snprintf(path, sizeof path, "%s/main.conf", t->dir);
    cfg = config_load(path, err, sizeof err);
    if (!cfg)
        fail_msg("unexpected config error: %s", err);
    assert_string_equal(cfg->path, path);
    assert_int_equal(cfg->nfiles, 3);
    assert_string_equal(cfg->files[0], path);
    snprintf(want, sizeof want, "%s/conf.d/20-routes.conf", t->dir);
    assert_string_equal(cfg->files[2], want);
    assert_ptr_equal(cfg->routes[0].pos.file, cfg->files[2]);
    assert_int_equal(cfg->routes[0].pos.line, 2);
    assert_ptr_equal(cfg->backends[0].pos.file, cfg->files[1]);
    assert_ptr_equal(cfg->routes[0].backend, &cfg->backends[0]);
    snprintf(want, sizeof want, "%s/a.log", t->dir);
    assert_string_equal(cfg->log.access_path, want);
    config_release(&cfg);

    /* an error in an included file names that file */
    write_file(t->dir, "conf.d/20-routes.conf", "\nroute / { backend nope; }\n");
    assert_null(config_load(path, err, sizeof err));
    snprintf(want, sizeof want, "%s/conf.d/20-routes.conf:2:19: unknown backend 'nope'", t->dir);
    assert_string_equal(err, want);
}

static void test_ref_release(void **state)
{
    struct config *cfg, *other;

    (void)state;
    cfg = configtest_load(LISTEN);
    other = config_ref(cfg);
    assert_ptr_equal(other, cfg);
    assert_int_equal(atomic_load(&cfg->refs), 2);
    config_release(&other);
    assert_null(other);
    assert_int_equal(atomic_load(&cfg->refs), 1);
    config_release(&cfg);
    assert_null(cfg);
    config_release(&cfg);
    config_release(NULL);
}

static const char full_config[] =
    "# a complete configuration\n"
    "listen 127.0.0.1:8080;\n"
    "listen [::1]:8080;\n"
    "workers 2;\n"
    "drain_timeout 30s;\n"
    "\n"
    "backend app {\n"
    "    server 127.0.0.1:8000 weight=2;\n"
    "    server 127.0.0.1:8001 max_fails=3 fail_timeout=20s;\n"
    "    connect_timeout 1s;\n"
    "    read_timeout 30s;\n"
    "    keepalive 64;\n"
    "}\n"
    "backend \"static files\" { server [::1]:9000; }\n"
    "\n"
    "route = / { backend app; }\n"
    "route /static/ { backend 'static files'; host www.example.com; }\n"
    "route ~ \"\\.(css|js)$\" { backend \"static files\"; }\n"
    "route default { backend app; }\n"
    "\n"
    "limits {\n"
    "    header_size 16k; headers 50; uri_size 4k; body_size 1m;\n"
    "    header_timeout 5s; body_timeout 30s; idle_timeout 75s; max_connections 5000;\n"
    "}\n"
    "log { access stderr; error stderr; level warn; }\n";

static void test_full_config(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = configtest_load(full_config);
    assert_int_equal(cfg->nlistens, 2);
    assert_int_equal(cfg->workers, 2);
    assert_int_equal(cfg->drain_timeout_ms, 30000);
    assert_int_equal(cfg->nbackends, 2);
    assert_int_equal(cfg->backends[0].nservers, 2);
    assert_int_equal(cfg->backends[0].servers[0].weight, 2);
    assert_int_equal(cfg->backends[0].servers[1].max_fails, 3);
    assert_int_equal(cfg->backends[0].keepalive, 64);
    assert_string_equal(cfg->backends[1].name, "static files");
    assert_int_equal(cfg->nroutes, 4);
    assert_ptr_equal(cfg->routes[1].backend, &cfg->backends[1]);
    assert_ptr_equal(cfg->routes[2].backend, &cfg->backends[1]);
    assert_string_equal(cfg->routes[2].pattern, "\\.(css|js)$");
    assert_int_equal(cfg->routes[3].match, ROUTE_DEFAULT);
    assert_int_equal(cfg->limits.header_size, 16 * 1024);
    assert_int_equal(cfg->limits.idle_timeout_ms, 75000);
    assert_int_equal(cfg->limits.max_connections, 5000);
    assert_string_equal(cfg->log.access_path, "stderr");
    assert_int_equal(cfg->log.level, LOG_WARN);
    config_release(&cfg);
}

static void test_every_error_frees_everything(void **state)
{
    char text[sizeof full_config + 64];
    char err[512];

    (void)state;
    /* An error after every kind of allocation (run under valgrind/ASan). */
    snprintf(text, sizeof text, "%sbogus;\n", full_config);
    assert_null(config_load_string("t.conf", text, err, sizeof err));
    assert_string_equal(err, "t.conf:26:1: unknown directive 'bogus' in the main context");
    snprintf(text, sizeof text, "%sroute /x { backend nope; }\n", full_config);
    assert_null(config_load_string("t.conf", text, err, sizeof err));
    assert_string_equal(err, "t.conf:26:20: unknown backend 'nope'");
}

static void test_shipped_config_loads(void **state)
{
    char path[PATH_MAX], err[1024];
    struct config *cfg;

    (void)state;
    repo_path("conf.d/tessera.conf", path, sizeof path);
    if (access(path, R_OK) != 0)
        skip();
    cfg = config_load(path, err, sizeof err);
    if (!cfg)
        fail_msg("%s does not load: %s", path, err);
    assert_true(cfg->nlistens >= 1);
    assert_non_null(config_backend_find(cfg, "app"));
    assert_true(cfg->nroutes >= 4);
    config_release(&cfg);
}

static void test_example_routes_file_loads(void **state)
{
    char name[PATH_MAX], example[PATH_MAX], err[1024];
    struct config *cfg;

    (void)state;
    repo_path("conf.d/routes.example.conf", example, sizeof example);
    if (access(example, R_OK) != 0)
        skip();
    /* as if tessera.conf said `include routes.example.conf;` */
    repo_path("conf.d/virtual.conf", name, sizeof name);
    cfg = config_load_string(name, LISTEN APP "include routes.example.conf;\n", err, sizeof err);
    if (!cfg)
        fail_msg("conf.d/routes.example.conf does not load: %s", err);
    assert_int_equal(cfg->nroutes, 5);
    assert_int_equal(cfg->nfiles, 2);
    assert_int_equal(cfg->routes[3].esi.mode, ESI_ON);
    assert_true(cfg->routes[4].esi.cookies);
    config_release(&cfg);
}

/* The man page documents a directive with a line ".SS name ..." */
static void test_man_page_documents_every_directive(void **state)
{
    static const char *const names[] = {
#define DIRECTIVE_NAME(ctx, name, min, max, shape, repeat, fn) name,
        CONFIG_DIRECTIVES(DIRECTIVE_NAME)
#undef DIRECTIVE_NAME
            "include",
    };
    char path[PATH_MAX], *page;
    FILE *f;
    long len;

    (void)state;
    repo_path("man/tessera.conf.5", path, sizeof path);
    f = fopen(path, "r");
    if (!f)
        skip();
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    len = ftell(f);
    rewind(f);
    page = calloc(1, (size_t)len + 2);
    assert_non_null(page);
    page[0] = '\n';
    assert_int_equal(fread(page + 1, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "\n.SS %s", names[i]);
        const char *at = strstr(page, want);
        while (at && at[strlen(want)] != '\n' && at[strlen(want)] != ' ')
            at = strstr(at + 1, want);
        if (!at) {
            free(page);
            fail_msg("man/tessera.conf.5 has no '.SS %s' section", names[i]);
        }
    }
    free(page);
}

#define TMP_TEST(f) cmocka_unit_test_setup_teardown(f, tmp_setup, tmp_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_no_listen),
        cmocka_unit_test(test_workers),
        cmocka_unit_test(test_workers_errors),
        cmocka_unit_test(test_drain_timeout),
        cmocka_unit_test(test_unknown_directives),
        cmocka_unit_test(test_directive_in_wrong_context),
        cmocka_unit_test(test_block_shape),
        cmocka_unit_test(test_syntax_errors_pass_through),
        cmocka_unit_test(test_backend),
        cmocka_unit_test(test_backend_errors),
        cmocka_unit_test(test_server_errors),
        cmocka_unit_test(test_server_parameter_errors),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_route_pattern_errors),
        cmocka_unit_test(test_route_duplicates),
        cmocka_unit_test(test_route_backend_errors),
        cmocka_unit_test(test_route_host_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_limits_errors),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_log_paths_relative_to_main_file),
        cmocka_unit_test(test_log_errors),
        cmocka_unit_test(test_log_level_name),
        TMP_TEST(test_includes_and_file_positions),
        cmocka_unit_test(test_ref_release),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_every_error_frees_everything),
        cmocka_unit_test(test_shipped_config_loads),
        cmocka_unit_test(test_example_routes_file_loads),
        cmocka_unit_test(test_man_page_documents_every_directive),
    };

    return cmocka_run_group_tests_name("config/config", tests, NULL, NULL);
}
