/*
 * tests/unit/config/admin.c: the top-level `admin { ... }` block
 * (config/admin.c): every default, every valid form of each directive, the
 * exact text and position of every error, the token file (read at load
 * time, trimmed, checked), the clash with `listen`, and the two address
 * helpers config_cidr_match() and config_addr_is_loopback().  The
 * memcached block's purge_sync is in tests/unit/config/memcached.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "config/config.h"
#include "tests/support/configtest.h"
#include "tests/support/tmpdir.h"

#define LISTEN "listen 127.0.0.1:8080;\n"
#define TOKEN_OFF "token off;"

/* ---- helpers ---- */

static struct config *load_named(const char *name, const char *text)
{
    char err[1024] = "";
    struct config *cfg = config_load_string(name, text, err, sizeof err);

    if (!cfg)
        fail_msg("unexpected config error: %s", err);
    return cfg;
}

static struct config *load_ok(const char *text)
{
    return load_named("t.conf", text);
}

/* BODY as the inside of `admin { ... }`, starting at line 3, column 1. */
static const char *in_block(const char *body)
{
    static char text[8192];

    snprintf(text, sizeof text, LISTEN "admin {\n%s\n}\n", body);
    return text;
}

static struct config *load_block(const char *body)
{
    struct config *cfg = load_ok(in_block(body));

    assert_true(cfg->admin.enabled);
    return cfg;
}

static void expect_block_error(const char *body, const char *msg)
{
    configtest_expect_error(in_block(body), msg);
}

static struct sockaddr_storage ipv4(const char *ip, unsigned port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage ipv6(const char *ip, unsigned port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    return ss;
}

/* "10.0.0.0/8", "::1/128": C as text, to compare. */
static const char *cidr_text(const struct config_cidr *c, char *buf, size_t len)
{
    char addr[INET6_ADDRSTRLEN];

    assert_non_null(inet_ntop(c->family, c->addr, addr, sizeof addr));
    snprintf(buf, len, "%s/%u", addr, c->prefix);
    return buf;
}

static void expect_cidr(const struct config_cidr *c, const char *text)
{
    char buf[64];

    assert_string_equal(cidr_text(c, buf, sizeof buf), text);
}

static void expect_listen(const struct config_listen *l, const struct sockaddr_storage *want,
                          const char *text)
{
    socklen_t len =
        want->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);

    assert_int_equal(l->addrlen, len);
    assert_memory_equal(&l->addr, want, len);
    assert_string_equal(l->text, text);
}

static void expect_default_allow(const struct config_admin *a)
{
    assert_int_equal(a->nallow, 2);
    assert_int_equal(a->allow[0].family, AF_INET);
    expect_cidr(&a->allow[0], "127.0.0.0/8");
    assert_int_equal(a->allow[1].family, AF_INET6);
    expect_cidr(&a->allow[1], "::1/128");
    assert_null(a->allow[0].pos.file);
    assert_null(a->allow[1].pos.file);
}

/* The scratch directory of a test that writes token files. */
static int td_setup(void **state)
{
    struct tmpdir *td = tmpdir_create("admin");

    *state = td;
    return td ? 0 : -1;
}

static int td_teardown(void **state)
{
    struct tmpdir *td = *state;

    tmpdir_free(&td);
    return 0;
}

/* Write CONTENT (LEN bytes: it may hold anything) into DIR/NAME. */
static const char *write_bytes(struct tmpdir *td, const char *name, const char *content, size_t len)
{
    const char *path = tmpdir_file(td, name);
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* The admin block `token_file PATH;` (on line 3, column 1; PATH starts at
 * column 12) with a token file holding CONTENT. */
static const char *token_block(struct tmpdir *td, const char *content)
{
    static char body[1024];
    const char *path = write_bytes(td, "admin.token", content, strlen(content));

    snprintf(body, sizeof body, "token_file %s;", path);
    return body;
}

/* The error of a token file holding CONTENT: "t.conf:3:12: " and FMT with
 * the file's path for its %s. */
static void expect_token_error(struct tmpdir *td, const char *content, size_t len, const char *fmt)
{
    char body[4096], want[4096], tail[2048];
    const char *path = write_bytes(td, "admin.token", content, len);

    snprintf(body, sizeof body, "token_file %s;", path);
    snprintf(tail, sizeof tail, fmt, path);
    snprintf(want, sizeof want, "t.conf:3:12: %s", tail);
    expect_block_error(body, want);
}

/* ---- defaults ---- */

static void test_defaults_without_block(void **state)
{
    struct config *cfg;
    struct sockaddr_storage want = ipv4("127.0.0.1", 8081);
    const struct config_admin *a;

    (void)state;
    cfg = load_ok(LISTEN);
    a = &cfg->admin;
    assert_false(a->enabled);
    expect_listen(&a->listen, &want, "127.0.0.1:8081");
    assert_null(a->listen.pos.file);
    assert_null(a->token_file);
    assert_null(a->token);
    assert_false(a->token_off);
    expect_default_allow(a);
    config_release(&cfg);
}

static void test_minimal_block_token_off(void **state)
{
    struct config *cfg;
    struct sockaddr_storage want = ipv4("127.0.0.1", 8081);
    const struct config_admin *a;

    (void)state;
    cfg = load_block(TOKEN_OFF);
    a = &cfg->admin;
    assert_true(a->token_off);
    assert_null(a->token);
    assert_null(a->token_file);
    expect_listen(&a->listen, &want, "127.0.0.1:8081");
    /* the default listener is placed at the block, for its messages */
    assert_string_equal(a->listen.pos.file, "t.conf");
    assert_int_equal(a->listen.pos.line, 2);
    assert_int_equal(a->listen.pos.col, 1);
    expect_default_allow(a);
    config_release(&cfg);

    /* the block may come first, and on one line */
    cfg = load_ok("admin { token off; }\n" LISTEN);
    assert_true(cfg->admin.enabled);
    assert_true(cfg->admin.token_off);
    assert_int_equal(cfg->admin.listen.pos.line, 1);
    config_release(&cfg);
}

/* ---- listen ---- */

static void test_listen_forms(void **state)
{
    struct config *cfg;
    struct sockaddr_storage want;

    (void)state;
    cfg = load_block("listen 127.0.0.2:9000;\n" TOKEN_OFF);
    want = ipv4("127.0.0.2", 9000);
    expect_listen(&cfg->admin.listen, &want, "127.0.0.2:9000");
    assert_string_equal(cfg->admin.listen.pos.file, "t.conf");
    assert_int_equal(cfg->admin.listen.pos.line, 3);
    assert_int_equal(cfg->admin.listen.pos.col, 1);
    config_release(&cfg);

    cfg = load_block("  listen [::1]:8081; " TOKEN_OFF);
    want = ipv6("::1", 8081);
    expect_listen(&cfg->admin.listen, &want, "[::1]:8081");
    assert_int_equal(cfg->admin.listen.pos.col, 3);
    config_release(&cfg);

    /* 127.0.0.0/8 is loopback, and so is it mapped into IPv6 */
    cfg = load_block("listen 127.255.255.254:1; " TOKEN_OFF);
    config_release(&cfg);
    cfg = load_block("listen [::ffff:127.0.0.1]:1; " TOKEN_OFF);
    config_release(&cfg);
    /* port 0, as for `listen` */
    cfg = load_block("listen 127.0.0.1:0; " TOKEN_OFF);
    want = ipv4("127.0.0.1", 0);
    expect_listen(&cfg->admin.listen, &want, "127.0.0.1:0");
    config_release(&cfg);
}

static void test_listen_errors(void **state)
{
    (void)state;
    /* the syntax and messages of the main `listen` */
    expect_block_error("listen 8081; " TOKEN_OFF,
                       "t.conf:3:8: invalid listen address '8081' (expected IPV4:PORT, "
                       "[IPV6]:PORT or *:PORT)");
    expect_block_error("listen localhost:8081; " TOKEN_OFF,
                       "t.conf:3:8: invalid listen address 'localhost:8081' (expected IPV4:PORT, "
                       "[IPV6]:PORT or *:PORT)");
    expect_block_error("listen ::1:8081; " TOKEN_OFF,
                       "t.conf:3:8: invalid listen address '::1:8081' (expected IPV4:PORT, "
                       "[IPV6]:PORT or *:PORT)");
    expect_block_error("listen 127.0.0.1:65536; " TOKEN_OFF,
                       "t.conf:3:8: invalid port in '127.0.0.1:65536' (expected 0 to 65535)");
    expect_block_error("listen 127.0.0.1:1;\nlisten 127.0.0.1:2; " TOKEN_OFF,
                       "t.conf:4:1: duplicate 'listen' (first at t.conf:3:1)");
    expect_block_error("listen; " TOKEN_OFF, "t.conf:3:1: 'listen' takes 1 argument");
    expect_block_error("listen 127.0.0.1:1 127.0.0.1:2; " TOKEN_OFF,
                       "t.conf:3:20: 'listen' takes 1 argument");
}

/* ---- the clash with `listen` ---- */

static void test_listen_clash(void **state)
{
    struct config *cfg;

    (void)state;
    /* the default admin listener, reported at the block */
    configtest_expect_error(
        "listen 127.0.0.1:8081;\nadmin { " TOKEN_OFF " }",
        "t.conf:2:1: admin listener must not share a port with `listen` at t.conf:1:1");
    /* reported at the admin `listen`, whatever the order */
    configtest_expect_error(
        "admin {\n  listen 127.0.0.1:8080; " TOKEN_OFF "\n}\n" LISTEN,
        "t.conf:2:3: admin listener must not share a port with `listen` at t.conf:4:1");
    configtest_expect_error(
        LISTEN "listen [::1]:9000;\nadmin { listen [0::1]:9000; " TOKEN_OFF " }",
        "t.conf:3:9: admin listener must not share a port with `listen` at t.conf:2:1");
    /* a wildcard `listen` takes the admin port on every address */
    configtest_expect_error(
        "listen *:8081;\nadmin { " TOKEN_OFF " }",
        "t.conf:2:1: admin listener must not share a port with `listen` at t.conf:1:1");
    configtest_expect_error(
        "listen 127.0.0.1:1;\nlisten [::]:9000;\nadmin { listen [::1]:9000; " TOKEN_OFF " }",
        "t.conf:3:9: admin listener must not share a port with `listen` at t.conf:2:1");

    /* other ports, other addresses, other families, port 0: no clash */
    cfg = load_ok("listen 127.0.0.1:8080;\nlisten 127.0.0.2:8081;\nlisten [::]:8081;\n"
                  "listen [::1]:8082;\nadmin { " TOKEN_OFF " }");
    config_release(&cfg);
    cfg = load_ok("listen 127.0.0.1:0;\nadmin { listen 127.0.0.1:0; " TOKEN_OFF " }");
    config_release(&cfg);
    /* without the block, the default admin port is nobody's business */
    cfg = load_ok("listen 127.0.0.1:8081;\n");
    config_release(&cfg);
}

/* ---- token off ---- */

static void test_token_off_needs_loopback(void **state)
{
    (void)state;
    expect_block_error("listen 0.0.0.0:8081;\n" TOKEN_OFF,
                       "t.conf:4:7: 'token off' needs a loopback admin listener (127.0.0.0/8 or "
                       "[::1]); '0.0.0.0:8081' at t.conf:3:1 is not (use token_file)");
    expect_block_error(TOKEN_OFF " listen *:8081;",
                       "t.conf:3:7: 'token off' needs a loopback admin listener (127.0.0.0/8 or "
                       "[::1]); '*:8081' at t.conf:3:12 is not (use token_file)");
    expect_block_error("listen [::]:8081; " TOKEN_OFF,
                       "t.conf:3:25: 'token off' needs a loopback admin listener (127.0.0.0/8 or "
                       "[::1]); '[::]:8081' at t.conf:3:1 is not (use token_file)");
    expect_block_error("listen 10.1.2.3:8081; " TOKEN_OFF,
                       "t.conf:3:29: 'token off' needs a loopback admin listener (127.0.0.0/8 or "
                       "[::1]); '10.1.2.3:8081' at t.conf:3:1 is not (use token_file)");
    expect_block_error("listen [::2]:8081; " TOKEN_OFF,
                       "t.conf:3:26: 'token off' needs a loopback admin listener (127.0.0.0/8 or "
                       "[::1]); '[::2]:8081' at t.conf:3:1 is not (use token_file)");
    expect_block_error("listen [::ffff:10.0.0.1]:8081; " TOKEN_OFF,
                       "t.conf:3:38: 'token off' needs a loopback admin listener (127.0.0.0/8 or "
                       "[::1]); '[::ffff:10.0.0.1]:8081' at t.conf:3:1 is not (use token_file)");
}

static void test_token_errors(void **state)
{
    char err[1024];
    struct config *cfg;

    (void)state;
    configtest_expect_error(
        LISTEN "admin { }",
        "t.conf:2:1: admin needs token_file, or `token off;` on a loopback listener");
    expect_block_error("listen 127.0.0.1:9000;\nallow 10.0.0.0/8;",
                       "t.conf:2:1: admin needs token_file, or `token off;` on a loopback "
                       "listener");
    expect_block_error("token on;",
                       "t.conf:3:7: invalid value for 'token' (expected off; the token itself "
                       "goes in the file named by token_file)");
    expect_block_error("token OFF;",
                       "t.conf:3:7: invalid value for 'token' (expected off; the token itself "
                       "goes in the file named by token_file)");
    /* a token written into the config is not echoed into a log */
    cfg = config_load_string("t.conf", in_block("token s3cr3t-t0ken;"), err, sizeof err);
    assert_null(cfg);
    assert_null(strstr(err, "s3cr3t"));
    expect_block_error("token off; token off;",
                       "t.conf:3:12: duplicate 'token' (first at t.conf:3:1)");
    expect_block_error("token;", "t.conf:3:1: 'token' takes 1 argument");
    expect_block_error("token off off;", "t.conf:3:11: 'token' takes 1 argument");
    expect_block_error("token_file '';", "t.conf:3:12: empty path for 'token_file'");
    expect_block_error("token_file;", "t.conf:3:1: 'token_file' takes 1 argument");
    /* both: at the second, whichever it is (the file is not read first) */
    expect_block_error("token off;\ntoken_file /nonexistent/admin.token;",
                       "t.conf:4:1: 'token_file' and 'token off' exclude each other ('token' at "
                       "t.conf:3:1)");
}

/* ---- token_file ---- */

static void test_token_file(void **state)
{
    struct tmpdir *td = *state;
    struct config *cfg;
    char big[4097];

    cfg = load_block(token_block(td, "s3cr3t\n"));
    assert_string_equal(cfg->admin.token, "s3cr3t");
    assert_string_equal(cfg->admin.token_file, tmpdir_file(td, "admin.token"));
    assert_false(cfg->admin.token_off);
    expect_default_allow(&cfg->admin);
    config_release(&cfg);

    /* trailing white space of any kind is trimmed; none is fine too */
    cfg = load_block(token_block(td, "abc!~{}\t \r\n\n\v\f"));
    assert_string_equal(cfg->admin.token, "abc!~{}");
    config_release(&cfg);
    cfg = load_block(token_block(td, "x"));
    assert_string_equal(cfg->admin.token, "x");
    config_release(&cfg);

    /* 4096 bytes is the longest token, with or without a newline */
    memset(big, 'k', 4096);
    big[4096] = '\0';
    cfg = load_block(token_block(td, big));
    assert_int_equal(strlen(cfg->admin.token), 4096);
    config_release(&cfg);

    /* a token file with a token works on any listener */
    {
        char body[4096];
        snprintf(body, sizeof body, "listen *:9000;\n%s", token_block(td, "t\n"));
        cfg = load_block(body);
        assert_string_equal(cfg->admin.token, "t");
        assert_string_equal(cfg->admin.listen.text, "*:9000");
        config_release(&cfg);
    }
}

static void test_token_file_errors(void **state)
{
    struct tmpdir *td = *state;
    char big[4098], body[4096], want[4096];
    static char huge[20000];
    const char *path;

    expect_token_error(td, "", 0, "token file '%s' is empty");
    expect_token_error(td, "\n \r\n\t", 5, "token file '%s' is empty");
    memset(big, 'k', 4097);
    big[4097] = '\0';
    expect_token_error(td, big, 4097, "token file '%s' is too long (expected at most 4096 bytes)");
    /* a token and more white space than the loader reads */
    memset(huge, '\n', sizeof huge);
    huge[0] = 'k';
    expect_token_error(td, huge, sizeof huge,
                       "token file '%s' is too long (expected at most 4096 bytes)");
    expect_token_error(td, "ab cd\n", 6,
                       "token file '%s' has a space or a byte that is not printable ASCII at "
                       "byte 3 (expected printable ASCII without spaces)");
    expect_token_error(td, " abc", 4,
                       "token file '%s' has a space or a byte that is not printable ASCII at "
                       "byte 1 (expected printable ASCII without spaces)");
    expect_token_error(td, "two\nlines\n", 10,
                       "token file '%s' has a space or a byte that is not printable ASCII at "
                       "byte 4 (expected printable ASCII without spaces)");
    expect_token_error(td, "caf\xc3\xa9", 5,
                       "token file '%s' has a space or a byte that is not printable ASCII at "
                       "byte 4 (expected printable ASCII without spaces)");
    expect_token_error(td, "a\0b", 3,
                       "token file '%s' has a space or a byte that is not printable ASCII at "
                       "byte 2 (expected printable ASCII without spaces)");
    expect_token_error(td, "del\x7f", 4,
                       "token file '%s' has a space or a byte that is not printable ASCII at "
                       "byte 4 (expected printable ASCII without spaces)");

    /* a file that cannot be read, with the reason */
    path = tmpdir_file(td, "missing.token");
    snprintf(body, sizeof body, "token_file %s;", path);
    snprintf(want, sizeof want, "t.conf:3:12: cannot read token file '%s': %s", path,
             strerror(ENOENT));
    expect_block_error(body, want);
    /* a directory */
    snprintf(body, sizeof body, "token_file %s;", tmpdir_path(td));
    snprintf(want, sizeof want, "t.conf:3:12: token file '%s' is not a regular file",
             tmpdir_path(td));
    expect_block_error(body, want);
    /* token_file then `token off`: the conflict, once the file is read */
    snprintf(body, sizeof body, "%s\n  token off;", token_block(td, "t"));
    expect_block_error(body, "t.conf:4:3: 'token_file' and 'token off' exclude each other "
                             "('token_file' at t.conf:3:1)");
    snprintf(body, sizeof body, "%s %s", token_block(td, "t"), token_block(td, "t"));
    snprintf(want, sizeof want, "t.conf:3:%zu: duplicate 'token_file' (first at t.conf:3:1)",
             strlen(token_block(td, "t")) + 2);
    expect_block_error(body, want);
}

static void test_token_file_relative_to_main_file(void **state)
{
    struct tmpdir *td = *state;
    const char *main_file = tmpdir_file(td, "tessera.conf");
    const char *token_path = write_bytes(td, "admin.token", "rel\n", 4);
    struct config *cfg;
    char err[1024];

    cfg = load_named(main_file, LISTEN "admin { token_file admin.token; }");
    assert_string_equal(cfg->admin.token_file, token_path);
    assert_string_equal(cfg->admin.token, "rel");
    config_release(&cfg);

    cfg = load_named(main_file, LISTEN "admin { token_file ./admin.token; }");
    assert_string_equal(cfg->admin.token_file, token_path);
    config_release(&cfg);

    /* the message names the path as resolved */
    cfg =
        config_load_string(main_file, LISTEN "admin { token_file other.token; }", err, sizeof err);
    assert_null(cfg);
    {
        char want[2048];
        snprintf(want, sizeof want, "%s:2:20: cannot read token file '%s': %s", main_file,
                 tmpdir_file(td, "other.token"), strerror(ENOENT));
        assert_string_equal(err, want);
    }
}

/* ---- allow ---- */

static void test_allow(void **state)
{
    struct config *cfg;
    const struct config_admin *a;

    (void)state;
    /* the first `allow` replaces the defaults, later ones append */
    cfg = load_block(TOKEN_OFF "\nallow 10.0.0.0/8;");
    a = &cfg->admin;
    assert_int_equal(a->nallow, 1);
    assert_int_equal(a->allow[0].family, AF_INET);
    expect_cidr(&a->allow[0], "10.0.0.0/8");
    assert_string_equal(a->allow[0].pos.file, "t.conf");
    assert_int_equal(a->allow[0].pos.line, 4);
    assert_int_equal(a->allow[0].pos.col, 7);
    config_release(&cfg);

    cfg = load_block(TOKEN_OFF "\nallow 10.0.0.0/8 192.168.1.0/24 2001:DB8::/32;\n"
                               "allow 127.0.0.1 ::1 fe80::1:0/112;\nallow 172.16.0.0/12;");
    a = &cfg->admin;
    assert_int_equal(a->nallow, 7);
    expect_cidr(&a->allow[0], "10.0.0.0/8");
    expect_cidr(&a->allow[1], "192.168.1.0/24");
    expect_cidr(&a->allow[2], "2001:db8::/32");
    assert_int_equal(a->allow[2].family, AF_INET6);
    /* a bare address is one host */
    expect_cidr(&a->allow[3], "127.0.0.1/32");
    expect_cidr(&a->allow[4], "::1/128");
    expect_cidr(&a->allow[5], "fe80::1:0/112");
    expect_cidr(&a->allow[6], "172.16.0.0/12");
    assert_int_equal(a->allow[1].pos.line, 4);
    assert_int_equal(a->allow[1].pos.col, 18);
    assert_int_equal(a->allow[5].pos.line, 5);
    assert_int_equal(a->allow[5].pos.col, 21);
    config_release(&cfg);

    /* everything, and the odd prefixes */
    cfg = load_block(TOKEN_OFF " allow 0.0.0.0/0 ::/0 10.0.0.2/31 10.0.0.4/30 ::/1 8000::/1 "
                               "10.0.0.0/08;");
    a = &cfg->admin;
    assert_int_equal(a->nallow, 7);
    expect_cidr(&a->allow[0], "0.0.0.0/0");
    expect_cidr(&a->allow[1], "::/0");
    expect_cidr(&a->allow[2], "10.0.0.2/31");
    expect_cidr(&a->allow[4], "::/1");
    expect_cidr(&a->allow[5], "8000::/1");
    expect_cidr(&a->allow[6], "10.0.0.0/8");
    config_release(&cfg);
}

static void test_allow_errors(void **state)
{
    (void)state;
    expect_block_error(TOKEN_OFF " allow 10.0.0/8;",
                       "t.conf:3:18: invalid CIDR '10.0.0/8' (expected ADDRESS or ADDRESS/PREFIX, "
                       "IPv4 or IPv6)");
    expect_block_error(TOKEN_OFF " allow localhost;",
                       "t.conf:3:18: invalid CIDR 'localhost' (expected ADDRESS or "
                       "ADDRESS/PREFIX, IPv4 or IPv6)");
    expect_block_error(TOKEN_OFF " allow [::1];",
                       "t.conf:3:18: invalid CIDR '[::1]' (expected ADDRESS or ADDRESS/PREFIX, "
                       "IPv4 or IPv6)");
    expect_block_error(TOKEN_OFF " allow /8;",
                       "t.conf:3:18: invalid CIDR '/8' (expected ADDRESS or ADDRESS/PREFIX, IPv4 "
                       "or IPv6)");
    expect_block_error(TOKEN_OFF " allow '';",
                       "t.conf:3:18: invalid CIDR '' (expected ADDRESS or ADDRESS/PREFIX, IPv4 "
                       "or IPv6)");
    expect_block_error(TOKEN_OFF " allow 256.0.0.0/8;",
                       "t.conf:3:18: invalid CIDR '256.0.0.0/8' (expected ADDRESS or "
                       "ADDRESS/PREFIX, IPv4 or IPv6)");
    expect_block_error(TOKEN_OFF " allow 10.0.0.0/33;",
                       "t.conf:3:18: invalid prefix length in '10.0.0.0/33' (expected 0 to 32)");
    expect_block_error(TOKEN_OFF " allow ::/129;",
                       "t.conf:3:18: invalid prefix length in '::/129' (expected 0 to 128)");
    expect_block_error(TOKEN_OFF " allow 10.0.0.0/;",
                       "t.conf:3:18: invalid prefix length in '10.0.0.0/' (expected 0 to 32)");
    expect_block_error(TOKEN_OFF " allow 10.0.0.0/x;",
                       "t.conf:3:18: invalid prefix length in '10.0.0.0/x' (expected 0 to 32)");
    expect_block_error(TOKEN_OFF " allow 10.0.0.0/-1;",
                       "t.conf:3:18: invalid prefix length in '10.0.0.0/-1' (expected 0 to 32)");
    expect_block_error(TOKEN_OFF " allow 10.0.0.0/8/8;",
                       "t.conf:3:18: invalid prefix length in '10.0.0.0/8/8' (expected 0 to 32)");
    /* host bits: the network is named */
    expect_block_error(TOKEN_OFF " allow 10.0.0.1/8;",
                       "t.conf:3:18: host bits set in '10.0.0.1/8' (the network would be "
                       "10.0.0.0/8)");
    expect_block_error(TOKEN_OFF " allow 192.168.1.77/26;",
                       "t.conf:3:18: host bits set in '192.168.1.77/26' (the network would be "
                       "192.168.1.64/26)");
    expect_block_error(TOKEN_OFF " allow 1.2.3.4/0;",
                       "t.conf:3:18: host bits set in '1.2.3.4/0' (the network would be "
                       "0.0.0.0/0)");
    expect_block_error(TOKEN_OFF " allow 2001:db8::1/32;",
                       "t.conf:3:18: host bits set in '2001:db8::1/32' (the network would be "
                       "2001:db8::/32)");
    /* the error is at the CIDR at fault, not the first */
    expect_block_error(TOKEN_OFF " allow 10.0.0.0/8 10.0.0.1/8;",
                       "t.conf:3:29: host bits set in '10.0.0.1/8' (the network would be "
                       "10.0.0.0/8)");
    expect_block_error(TOKEN_OFF " allow 10.0.0.0/8;\nallow 10.0.0.0/08;",
                       "t.conf:4:7: duplicate allow '10.0.0.0/08' (first at t.conf:3:18)");
    expect_block_error(TOKEN_OFF " allow ::1 0::1/128;",
                       "t.conf:3:22: duplicate allow '0::1/128' (first at t.conf:3:18)");
    expect_block_error(TOKEN_OFF " allow;", "t.conf:3:12: 'allow' takes 1 to 64 arguments");
}

/* ---- the block ---- */

static void test_block_errors(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN "admin;", "t.conf:2:1: 'admin' needs a '{ ... }' block");
    configtest_expect_error(LISTEN "admin on { " TOKEN_OFF " }",
                            "t.conf:2:7: 'admin' takes no arguments");
    configtest_expect_error(LISTEN "admin { " TOKEN_OFF " }\nadmin { " TOKEN_OFF " }",
                            "t.conf:3:1: duplicate 'admin' block (first at t.conf:2:1)");
    expect_block_error(TOKEN_OFF " workers 2;",
                       "t.conf:3:12: directive 'workers' is not allowed in the admin context "
                       "(only in: main)");
    expect_block_error(TOKEN_OFF " tokens off;",
                       "t.conf:3:12: unknown directive 'tokens' in the admin context");
    expect_block_error(TOKEN_OFF " admin { }",
                       "t.conf:3:12: directive 'admin' is not allowed in the admin context (only "
                       "in: main)");
    configtest_expect_error(
        LISTEN "allow 10.0.0.0/8;",
        "t.conf:2:1: directive 'allow' is not allowed in the main context (only in: "
        "admin)");
    configtest_expect_error(
        LISTEN "token off;",
        "t.conf:2:1: directive 'token' is not allowed in the main context (only in: "
        "admin)");
    configtest_expect_error(
        LISTEN "memcached { server m:1; token_file x; }",
        "t.conf:2:25: directive 'token_file' is not allowed in the memcached context "
        "(only in: admin)");
    configtest_expect_error(
        LISTEN "backend app { server 127.0.0.1:1; }\nroute / { backend app; admin { } }",
        "t.conf:3:24: directive 'admin' is not allowed in the route context (only in: "
        "main)");
}

/* ---- a whole block ---- */

static void test_full_block(void **state)
{
    struct tmpdir *td = *state;
    const char *path = write_bytes(td, "admin.token", "0123456789abcdef\n", 17);
    char text[4096];
    struct config *cfg;
    struct sockaddr_storage want = ipv6("::1", 9443);
    const struct config_admin *a;

    snprintf(text, sizeof text,
             LISTEN "admin {\n"
                    "    listen [::1]:9443;\n"
                    "    token_file %s;\n"
                    "    allow 127.0.0.0/8 ::1;\n"
                    "    allow 10.20.0.0/16;\n"
                    "}\n",
             path);
    cfg = load_ok(text);
    a = &cfg->admin;
    assert_true(a->enabled);
    expect_listen(&a->listen, &want, "[::1]:9443");
    assert_string_equal(a->token_file, path);
    assert_string_equal(a->token, "0123456789abcdef");
    assert_false(a->token_off);
    assert_int_equal(a->nallow, 3);
    expect_cidr(&a->allow[0], "127.0.0.0/8");
    expect_cidr(&a->allow[1], "::1/128");
    expect_cidr(&a->allow[2], "10.20.0.0/16");
    config_release(&cfg);
}

static void test_errors_free_everything(void **state)
{
    struct tmpdir *td = *state;
    const char *path = write_bytes(td, "admin.token", "tok\n", 4);
    char text[4096], err[1024];

    /* an error after every kind of allocation (run under ASan / valgrind) */
    snprintf(text, sizeof text,
             LISTEN "admin { allow 10.0.0.0/8; token_file %s; allow ::1; }\nbogus;", path);
    assert_null(config_load_string("t.conf", text, err, sizeof err));
    assert_string_equal(err, "t.conf:3:1: unknown directive 'bogus' in the main context");
    snprintf(text, sizeof text, LISTEN "admin { token_file %s; allow ::1 1.2.3.4/8; }", path);
    assert_null(config_load_string("t.conf", text, err, sizeof err));
    snprintf(text, sizeof text, "listen 127.0.0.1:8081;\nadmin { token_file %s; allow ::1; }",
             path);
    assert_null(config_load_string("t.conf", text, err, sizeof err));
    assert_string_equal(err, "t.conf:2:1: admin listener must not share a port with `listen` at "
                             "t.conf:1:1");
}

/* ---- config_cidr_match ---- */

/* The allow list of `admin { token off; allow LIST; }`. */
static struct config *with_allow(const char *list)
{
    char body[512];

    snprintf(body, sizeof body, TOKEN_OFF " allow %s;", list);
    return load_block(body);
}

static bool match(const struct config *cfg, struct sockaddr_storage ss)
{
    return config_cidr_match(cfg->admin.allow, cfg->admin.nallow, (const struct sockaddr *)&ss);
}

static void test_cidr_match_ipv4(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = with_allow("10.0.0.0/8 192.168.1.64/26 172.16.5.4");
    assert_true(match(cfg, ipv4("10.0.0.0", 1)));
    assert_true(match(cfg, ipv4("10.255.255.255", 1)));
    assert_false(match(cfg, ipv4("11.0.0.0", 1)));
    assert_false(match(cfg, ipv4("9.255.255.255", 1)));
    assert_true(match(cfg, ipv4("192.168.1.64", 1)));
    assert_true(match(cfg, ipv4("192.168.1.127", 1)));
    assert_false(match(cfg, ipv4("192.168.1.63", 1)));
    assert_false(match(cfg, ipv4("192.168.1.128", 1)));
    assert_true(match(cfg, ipv4("172.16.5.4", 1)));
    assert_false(match(cfg, ipv4("172.16.5.5", 1)));
    /* IPv4-mapped IPv6, as a dual-stack socket reports IPv4 clients */
    assert_true(match(cfg, ipv6("::ffff:10.1.2.3", 1)));
    assert_true(match(cfg, ipv6("::ffff:172.16.5.4", 1)));
    assert_false(match(cfg, ipv6("::ffff:11.1.2.3", 1)));
    /* other IPv6 addresses never match IPv4 networks */
    assert_false(match(cfg, ipv6("::a01:203", 1)));        /* ::10.1.2.3, deprecated compat */
    assert_false(match(cfg, ipv6("64:ff9b::a01:203", 1))); /* NAT64 */
    assert_false(match(cfg, ipv6("::1", 1)));
    config_release(&cfg);

    cfg = with_allow("0.0.0.0/0");
    assert_true(match(cfg, ipv4("0.0.0.0", 1)));
    assert_true(match(cfg, ipv4("255.255.255.255", 1)));
    assert_true(match(cfg, ipv6("::ffff:1.2.3.4", 1)));
    assert_false(match(cfg, ipv6("2001:db8::1", 1)));
    config_release(&cfg);

    cfg = with_allow("10.0.0.2/31");
    assert_false(match(cfg, ipv4("10.0.0.1", 1)));
    assert_true(match(cfg, ipv4("10.0.0.2", 1)));
    assert_true(match(cfg, ipv4("10.0.0.3", 1)));
    assert_false(match(cfg, ipv4("10.0.0.4", 1)));
    config_release(&cfg);
}

static void test_cidr_match_ipv6(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = with_allow("2001:db8::/32 fe80::/10 ::1");
    assert_true(match(cfg, ipv6("2001:db8::", 1)));
    assert_true(match(cfg, ipv6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 1)));
    assert_false(match(cfg, ipv6("2001:db9::", 1)));
    assert_true(match(cfg, ipv6("fe80::1", 1)));
    assert_true(match(cfg, ipv6("febf::1", 1)));
    assert_false(match(cfg, ipv6("fec0::1", 1)));
    assert_true(match(cfg, ipv6("::1", 1)));
    assert_false(match(cfg, ipv6("::2", 1)));
    assert_false(match(cfg, ipv4("127.0.0.1", 1)));
    config_release(&cfg);

    /* ::/0 is every IPv6 address, mapped ones included, but no AF_INET one */
    cfg = with_allow("::/0");
    assert_true(match(cfg, ipv6("::", 1)));
    assert_true(match(cfg, ipv6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1)));
    assert_true(match(cfg, ipv6("::ffff:10.0.0.1", 1)));
    assert_false(match(cfg, ipv4("10.0.0.1", 1)));
    config_release(&cfg);

    /* an IPv6 network of mapped addresses matches mapped clients */
    cfg = with_allow("::ffff:10.0.0.0/104");
    assert_true(match(cfg, ipv6("::ffff:10.9.9.9", 1)));
    assert_false(match(cfg, ipv4("10.9.9.9", 1)));
    config_release(&cfg);
}

static void test_cidr_match_defaults_and_edges(void **state)
{
    struct config *cfg;
    struct sockaddr_un un = {.sun_family = AF_UNIX};

    (void)state;
    cfg = load_ok(LISTEN);
    assert_true(match(cfg, ipv4("127.0.0.1", 1)));
    assert_true(match(cfg, ipv4("127.9.9.9", 1)));
    assert_true(match(cfg, ipv6("::1", 1)));
    assert_true(match(cfg, ipv6("::ffff:127.0.0.1", 1)));
    assert_false(match(cfg, ipv4("10.0.0.1", 1)));
    assert_false(match(cfg, ipv6("::2", 1)));
    /* no networks, no match; another family never */
    assert_false(config_cidr_match(cfg->admin.allow, 0, (const struct sockaddr *)&un));
    assert_false(config_cidr_match(NULL, 0, (const struct sockaddr *)&un));
    assert_false(
        config_cidr_match(cfg->admin.allow, cfg->admin.nallow, (const struct sockaddr *)&un));
    {
        struct sockaddr_storage ss = ipv4("127.0.0.1", 1);
        assert_false(config_cidr_match(cfg->admin.allow, 0, (const struct sockaddr *)&ss));
    }
    config_release(&cfg);
}

/* ---- config_addr_is_loopback ---- */

static bool loopback(struct sockaddr_storage ss)
{
    return config_addr_is_loopback((const struct sockaddr *)&ss);
}

static void test_addr_is_loopback(void **state)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};

    (void)state;
    assert_true(loopback(ipv4("127.0.0.1", 80)));
    assert_true(loopback(ipv4("127.0.0.0", 80)));
    assert_true(loopback(ipv4("127.255.255.255", 80)));
    assert_false(loopback(ipv4("126.255.255.255", 80)));
    assert_false(loopback(ipv4("128.0.0.1", 80)));
    assert_false(loopback(ipv4("0.0.0.0", 80)));
    assert_false(loopback(ipv4("10.0.0.1", 80)));
    assert_true(loopback(ipv6("::1", 80)));
    assert_false(loopback(ipv6("::", 80)));
    assert_false(loopback(ipv6("::2", 80)));
    assert_false(loopback(ipv6("fe80::1", 80)));
    assert_true(loopback(ipv6("::ffff:127.0.0.1", 80)));
    assert_true(loopback(ipv6("::ffff:127.1.2.3", 80)));
    assert_false(loopback(ipv6("::ffff:10.0.0.1", 80)));
    assert_false(loopback(ipv6("::127.0.0.1", 80)));
    assert_false(config_addr_is_loopback((const struct sockaddr *)&un));
}

#define TD_TEST(f) cmocka_unit_test_setup_teardown(f, td_setup, td_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_without_block),
        cmocka_unit_test(test_minimal_block_token_off),
        cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_listen_clash),
        cmocka_unit_test(test_token_off_needs_loopback),
        cmocka_unit_test(test_token_errors),
        TD_TEST(test_token_file),
        TD_TEST(test_token_file_errors),
        TD_TEST(test_token_file_relative_to_main_file),
        cmocka_unit_test(test_allow),
        cmocka_unit_test(test_allow_errors),
        cmocka_unit_test(test_block_errors),
        TD_TEST(test_full_block),
        TD_TEST(test_errors_free_everything),
        cmocka_unit_test(test_cidr_match_ipv4),
        cmocka_unit_test(test_cidr_match_ipv6),
        cmocka_unit_test(test_cidr_match_defaults_and_edges),
        cmocka_unit_test(test_addr_is_loopback),
    };

    return cmocka_run_group_tests_name("config/admin", tests, NULL, NULL);
}
