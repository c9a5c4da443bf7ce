/*
 * tests/unit/config/compress.c: the `compress { ... }` blocks
 * (config/compress.c), at the top level and in a route: every default, how
 * routes inherit the top-level block or replace it, every valid form of
 * each directive and the exact text of every error.
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
#define APP "backend app { server 127.0.0.1:8000; }\n"

#define MIB (1024ull * 1024)

static const char *const default_types[] = {
    "text/html",
    "text/plain",
    "text/css",
    "text/xml",
    "text/javascript",
    "application/javascript",
    "application/json",
    "application/xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/manifest+json",
    "image/svg+xml",
};

#define NDEFAULT_TYPES (sizeof default_types / sizeof default_types[0])

/* ---- helpers ---- */

/* BODY as the inside of a top-level `compress { ... }`, starting at line 3,
 * column 1, followed by one route without a block. */
static const char *in_top(const char *body)
{
    static char text[4096];

    snprintf(text, sizeof text, LISTEN "compress {\n%s\n}\n" APP "route / { backend app; }\n",
             body);
    return text;
}

/* BODY as the inside of a route's `compress { ... }`, starting at line 6,
 * column 1. */
static const char *in_route(const char *body)
{
    static char text[4096];

    snprintf(text, sizeof text, LISTEN APP "route / {\nbackend app;\ncompress {\n%s\n}\n}\n", body);
    return text;
}

static struct config *load_route(const char *body)
{
    struct config *cfg = configtest_load(in_route(body));

    assert_int_equal(cfg->nroutes, 1);
    return cfg;
}

static void expect_top_error(const char *body, const char *msg)
{
    configtest_expect_error(in_top(body), msg);
}

static void expect_route_error(const char *body, const char *msg)
{
    configtest_expect_error(in_route(body), msg);
}

static void expect_types(const struct config_compress *c, const char *const *types, size_t n)
{
    assert_int_equal(c->ntypes, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(c->types[i], types[i]);
}

static void expect_coding(const struct config_compress_coding *cc, bool enabled, int level,
                          int cached_level)
{
    assert_int_equal(cc->enabled, enabled);
    assert_int_equal(cc->level, level);
    assert_int_equal(cc->cached_level, cached_level);
}

static void expect_defaults(const struct config_compress *c)
{
    assert_true(c->enabled);
    expect_types(c, default_types, NDEFAULT_TYPES);
    assert_int_equal(c->min_length, 1024);
    expect_coding(&c->brotli, true, 4, 7);
    expect_coding(&c->gzip, true, 6, 9);
    expect_coding(&c->zstd, true, 3, 8);
    assert_false(c->upstream_gzip);
}

/* A and B hold the same settings, each in strings of its own. */
static void expect_copy(const struct config_compress *a, const struct config_compress *b)
{
    assert_int_equal(a->enabled, b->enabled);
    assert_int_equal(a->ntypes, b->ntypes);
    assert_ptr_not_equal(a->types, b->types);
    for (size_t i = 0; i < a->ntypes; i++) {
        assert_string_equal(a->types[i], b->types[i]);
        assert_ptr_not_equal(a->types[i], b->types[i]);
    }
    assert_int_equal(a->min_length, b->min_length);
    assert_memory_equal(&a->brotli, &b->brotli, sizeof a->brotli);
    assert_memory_equal(&a->gzip, &b->gzip, sizeof a->gzip);
    assert_memory_equal(&a->zstd, &b->zstd, sizeof a->zstd);
    assert_int_equal(a->upstream_gzip, b->upstream_gzip);
}

/* The config of in_top(BODY), after checking that its route, which has no
 * block of its own, got a copy of the top-level settings. */
static struct config *load_top(const char *body)
{
    struct config *cfg = configtest_load(in_top(body));

    assert_int_equal(cfg->nroutes, 1);
    expect_copy(&cfg->routes[0].compress, &cfg->compress);
    return cfg;
}

/* ---- defaults and inheritance ---- */

static void test_defaults(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = configtest_load(LISTEN);
    expect_defaults(&cfg->compress);
    config_release(&cfg);

    /* every route, whatever its kind, without any compress block */
    cfg = configtest_load(LISTEN APP
                          "route = / { backend app; }\nroute /a/ { backend app; }\n"
                          "route ~ x { backend app; host h; }\nroute default { backend app; }\n");
    assert_int_equal(cfg->nroutes, 4);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        expect_defaults(&cfg->routes[i].compress);
        expect_copy(&cfg->routes[i].compress, &cfg->compress);
    }
    expect_copy(&cfg->routes[0].compress, &cfg->routes[1].compress);
    config_release(&cfg);
}

static void test_empty_blocks(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_top("");
    expect_defaults(&cfg->compress);
    config_release(&cfg);

    cfg = load_route("");
    expect_defaults(&cfg->routes[0].compress);
    config_release(&cfg);
}

static void test_top_level_inherited(void **state)
{
    static const char *const text_all[] = {"text/*"};
    struct config *cfg;

    (void)state;
    /* the top-level block may come before or after the routes */
    cfg =
        configtest_load(LISTEN APP "route /a/ { backend app; }\n"
                                   "compress { types text/*; min_length 0; gzip off; "
                                   "upstream_gzip on; cached_level zstd=19; }\n"
                                   "route /b/ { backend app; }\nroute default { backend app; }\n");
    assert_int_equal(cfg->nroutes, 3);
    expect_types(&cfg->compress, text_all, 1);
    assert_int_equal(cfg->compress.min_length, 0);
    expect_coding(&cfg->compress.gzip, false, 6, 9);
    expect_coding(&cfg->compress.zstd, true, 3, 19);
    assert_true(cfg->compress.upstream_gzip);
    for (size_t i = 0; i < cfg->nroutes; i++)
        expect_copy(&cfg->routes[i].compress, &cfg->compress);
    config_release(&cfg);

    /* off at the top level turns every route without a block off */
    cfg = load_top("off;");
    assert_false(cfg->compress.enabled);
    assert_false(cfg->routes[0].compress.enabled);
    config_release(&cfg);
}

static void test_route_block_replaces(void **state)
{
    struct config *cfg;
    const struct config_compress *c;

    (void)state;
    /* what the route's block does not set has its default, not the
     * top-level value */
    cfg = configtest_load(LISTEN APP
                          "compress { off; types text/*; min_length 0; brotli off level=9; "
                          "upstream_gzip on; cached_level gzip=1; }\n"
                          "route /a/ { backend app; compress { gzip on level=1; } }\n"
                          "route /b/ { backend app; compress { } }\n"
                          "route /c/ { backend app; }\n");
    assert_int_equal(cfg->nroutes, 3);
    c = &cfg->routes[0].compress;
    assert_true(c->enabled);
    expect_types(c, default_types, NDEFAULT_TYPES);
    assert_int_equal(c->min_length, 1024);
    expect_coding(&c->brotli, true, 4, 7);
    expect_coding(&c->gzip, true, 1, 9);
    expect_coding(&c->zstd, true, 3, 8);
    assert_false(c->upstream_gzip);
    expect_defaults(&cfg->routes[1].compress);
    c = &cfg->routes[2].compress;
    expect_copy(c, &cfg->compress);
    assert_false(c->enabled);
    assert_int_equal(c->ntypes, 1);
    expect_coding(&c->brotli, false, 9, 7);
    expect_coding(&c->gzip, true, 6, 1);
    config_release(&cfg);

    /* a route can turn compression back on */
    cfg = configtest_load(LISTEN APP "compress { off; }\n"
                                     "route /a/ { backend app; compress { on; } }\n"
                                     "route /b/ { backend app; }\n");
    assert_true(cfg->routes[0].compress.enabled);
    assert_false(cfg->routes[1].compress.enabled);
    config_release(&cfg);

    /* and off in a route leaves the others alone */
    cfg = configtest_load(LISTEN APP "route /a/ { backend app; compress { off; } }\n"
                                     "route /b/ { backend app; }\n");
    assert_false(cfg->routes[0].compress.enabled);
    expect_defaults(&cfg->routes[1].compress);
    expect_defaults(&cfg->compress);
    config_release(&cfg);
}

/* ---- on; off; ---- */

static void test_on_off(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_top("on;");
    assert_true(cfg->compress.enabled);
    config_release(&cfg);

    /* the rest of an off block is still read and kept */
    cfg = load_route("off;\nmin_length 2k;\ngzip off;");
    assert_false(cfg->routes[0].compress.enabled);
    assert_int_equal(cfg->routes[0].compress.min_length, 2048);
    assert_false(cfg->routes[0].compress.gzip.enabled);
    config_release(&cfg);
}

static void test_on_off_errors(void **state)
{
    (void)state;
    expect_route_error("on;\noff;", "t.conf:7:1: 'off' contradicts 'on' (at t.conf:6:1)");
    expect_top_error("off;\non;", "t.conf:4:1: 'on' contradicts 'off' (at t.conf:3:1)");
    expect_top_error("off;\noff;", "t.conf:4:1: duplicate 'off' (first at t.conf:3:1)");
    expect_top_error("off now;", "t.conf:3:5: 'off' takes no arguments");
    expect_top_error("on yes;", "t.conf:3:4: 'on' takes no arguments");
    expect_route_error("off { }", "t.conf:6:5: 'off' does not take a block");
}

/* ---- types ---- */

static void test_types(void **state)
{
    static const char *const listed[] = {"text/html", "text/*", "application/vnd.api+json",
                                         "image/svg+xml"};
    static const char *const repeated[] = {"text/html", "application/json", "text/csv"};
    struct config *cfg;

    (void)state;
    /* stored lower-case; the first `types` replaces the defaults */
    cfg = load_top("types TEXT/Html text/* Application/VND.api+json image/svg+xml;");
    expect_types(&cfg->compress, listed, 4);
    config_release(&cfg);

    /* a repeated `types` appends */
    cfg = load_route("types text/html application/json;\nmin_length 0;\ntypes text/csv;");
    expect_types(&cfg->routes[0].compress, repeated, 3);
    config_release(&cfg);

    /* quoted is the same */
    cfg = load_route("types \"text/html\";");
    expect_types(&cfg->routes[0].compress, repeated, 1);
    config_release(&cfg);

    /* a type already covered by a wildcard is allowed */
    cfg = load_route("types text/* text/html;");
    assert_int_equal(cfg->routes[0].compress.ntypes, 2);
    config_release(&cfg);
}

static void test_types_errors(void **state)
{
    (void)state;
    expect_route_error("types */*;", "t.conf:6:7: invalid media type '*/*' for 'types' (expected "
                                     "TYPE/SUBTYPE or TYPE/*, without parameters; '*/*' would "
                                     "compress images and archives too)");
    expect_route_error("types text/html */html;",
                       "t.conf:6:17: invalid media type '*/html' for 'types' (expected "
                       "TYPE/SUBTYPE or TYPE/*, without parameters; '*/*' would compress images "
                       "and archives too)");
    expect_top_error("types text;", "t.conf:3:7: invalid media type 'text' for 'types' (expected "
                                    "TYPE/SUBTYPE or TYPE/*, without parameters)");
    expect_top_error("types text/;", "t.conf:3:7: invalid media type 'text/' for 'types' "
                                     "(expected TYPE/SUBTYPE or TYPE/*, without parameters)");
    expect_top_error("types /html;", "t.conf:3:7: invalid media type '/html' for 'types' "
                                     "(expected TYPE/SUBTYPE or TYPE/*, without parameters)");
    expect_top_error("types text/html/x;",
                     "t.conf:3:7: invalid media type 'text/html/x' for 'types' (expected "
                     "TYPE/SUBTYPE or TYPE/*, without parameters)");
    expect_top_error("types text/*html;",
                     "t.conf:3:7: invalid media type 'text/*html' for 'types' (expected "
                     "TYPE/SUBTYPE or TYPE/*, without parameters)");
    expect_top_error("types te*t/html;",
                     "t.conf:3:7: invalid media type 'te*t/html' for 'types' (expected "
                     "TYPE/SUBTYPE or TYPE/*, without parameters)");
    expect_top_error("types \"text/html; charset=utf-8\";",
                     "t.conf:3:7: invalid media type 'text/html; charset=utf-8' for 'types' "
                     "(expected TYPE/SUBTYPE or TYPE/*, without parameters)");
    expect_top_error("types \"text/ html\";",
                     "t.conf:3:7: invalid media type 'text/ html' for 'types' (expected "
                     "TYPE/SUBTYPE or TYPE/*, without parameters)");
    expect_top_error("types '';", "t.conf:3:7: invalid media type '' for 'types' (expected "
                                  "TYPE/SUBTYPE or TYPE/*, without parameters)");
    /* duplicates, compared without case, in one `types` or across two */
    expect_top_error("types text/html TEXT/HTML;",
                     "t.conf:3:17: duplicate type 'text/html' in 'types'");
    expect_route_error("types text/*;\ntypes text/*;",
                       "t.conf:7:7: duplicate type 'text/*' in 'types'");
    expect_top_error("types;", "t.conf:3:1: 'types' takes 1 to 64 arguments");
}

/* ---- min_length ---- */

static void test_min_length(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_top("min_length 0;");
    assert_int_equal(cfg->compress.min_length, 0);
    config_release(&cfg);
    cfg = load_route("min_length 512;");
    assert_int_equal(cfg->routes[0].compress.min_length, 512);
    config_release(&cfg);
    cfg = load_route("min_length 2m;");
    assert_true(cfg->routes[0].compress.min_length == 2 * MIB);
    config_release(&cfg);

    expect_route_error("min_length 1kb;", "t.conf:6:12: invalid size '1kb' for 'min_length' "
                                          "(expected a number with optional k, m or g)");
    expect_route_error("min_length -1;", "t.conf:6:12: invalid size '-1' for 'min_length' "
                                         "(expected a number with optional k, m or g)");
    expect_top_error("min_length 1k;\nmin_length 2k;",
                     "t.conf:4:1: duplicate 'min_length' (first at t.conf:3:1)");
    expect_top_error("min_length 1k 2k;", "t.conf:3:15: 'min_length' takes 1 argument");
}

/* ---- codings ---- */

static void test_codings(void **state)
{
    struct config *cfg;
    const struct config_compress *c;

    (void)state;
    cfg = load_route("brotli on level=0;\ngzip off level=1;\nzstd on level=19;");
    c = &cfg->routes[0].compress;
    expect_coding(&c->brotli, true, 0, 7);
    expect_coding(&c->gzip, false, 1, 9);
    expect_coding(&c->zstd, true, 19, 8);
    config_release(&cfg);

    /* without level=, the level keeps its default */
    cfg = load_top("brotli off;\ngzip on level=9;\nzstd off;");
    c = &cfg->compress;
    expect_coding(&c->brotli, false, 4, 7);
    expect_coding(&c->gzip, true, 9, 9);
    expect_coding(&c->zstd, false, 3, 8);
    config_release(&cfg);

    cfg = load_top("brotli on level=11;\nzstd on level=1;");
    expect_coding(&cfg->compress.brotli, true, 11, 7);
    expect_coding(&cfg->compress.zstd, true, 1, 8);
    config_release(&cfg);
}

static void test_coding_errors(void **state)
{
    (void)state;
    expect_route_error("brotli yes;",
                       "t.conf:6:8: invalid value 'yes' for 'brotli' (expected on or off)");
    expect_route_error("gzip level=5;",
                       "t.conf:6:6: invalid value 'level=5' for 'gzip' (expected on or off)");
    expect_route_error("brotli on level=12;",
                       "t.conf:6:11: invalid level '12' for 'brotli' (expected 0 to 11)");
    expect_route_error("gzip on level=0;",
                       "t.conf:6:9: invalid level '0' for 'gzip' (expected 1 to 9)");
    expect_route_error("gzip on level=10;",
                       "t.conf:6:9: invalid level '10' for 'gzip' (expected 1 to 9)");
    expect_route_error("zstd on level=0;",
                       "t.conf:6:9: invalid level '0' for 'zstd' (expected 1 to 19)");
    expect_top_error("zstd on level=20;",
                     "t.conf:3:9: invalid level '20' for 'zstd' (expected 1 to 19)");
    expect_top_error("zstd on level=;",
                     "t.conf:3:9: invalid level '' for 'zstd' (expected 1 to 19)");
    expect_top_error("zstd on level=-1;",
                     "t.conf:3:9: invalid level '-1' for 'zstd' (expected 1 to 19)");
    expect_top_error("brotli on lvl=3;",
                     "t.conf:3:11: unknown parameter 'lvl=3' for 'brotli' (expected level=N)");
    expect_top_error("brotli on level=3 level=4;",
                     "t.conf:3:19: duplicate 'level=' for 'brotli' (first at t.conf:3:11)");
    expect_top_error("brotli on level=3 level=4 level=5;",
                     "t.conf:3:27: 'brotli' takes 1 to 3 arguments");
    /* a missing ';' glues the next line on */
    expect_top_error("brotli on\ngzip on;", "t.conf:4:1: unknown parameter 'gzip' for 'brotli' "
                                            "(expected level=N; missing ';' on line 3?)");
    expect_top_error("gzip on;\ngzip off;", "t.conf:4:1: duplicate 'gzip' (first at t.conf:3:1)");
    expect_top_error("zstd;", "t.conf:3:1: 'zstd' takes 1 to 3 arguments");
}

static void test_cached_level(void **state)
{
    struct config *cfg;
    const struct config_compress *c;

    (void)state;
    cfg = load_route("cached_level brotli=11 gzip=1 zstd=19;");
    c = &cfg->routes[0].compress;
    expect_coding(&c->brotli, true, 4, 11);
    expect_coding(&c->gzip, true, 6, 1);
    expect_coding(&c->zstd, true, 3, 19);
    config_release(&cfg);

    /* any subset, in any order */
    cfg = load_top("cached_level zstd=5 brotli=0;");
    c = &cfg->compress;
    expect_coding(&c->brotli, true, 4, 0);
    expect_coding(&c->gzip, true, 6, 9);
    expect_coding(&c->zstd, true, 3, 5);
    config_release(&cfg);
}

static void test_cached_level_errors(void **state)
{
    (void)state;
    expect_route_error("cached_level deflate=3;",
                       "t.conf:6:14: unknown coding 'deflate' in 'cached_level' (expected "
                       "brotli, gzip or zstd)");
    expect_route_error("cached_level br=3;",
                       "t.conf:6:14: unknown coding 'br' in 'cached_level' (expected brotli, "
                       "gzip or zstd)");
    expect_route_error("cached_level gzip=1 brotli;",
                       "t.conf:6:21: invalid argument 'brotli' for 'cached_level' (expected "
                       "brotli=N, gzip=N or zstd=N)");
    expect_route_error("cached_level gzip=1 gzip=2;",
                       "t.conf:6:21: duplicate 'gzip=' in 'cached_level' (first at t.conf:6:14)");
    expect_top_error("cached_level brotli=12;",
                     "t.conf:3:14: invalid level '12' for 'brotli' in 'cached_level' (expected 0 "
                     "to 11)");
    expect_top_error("cached_level gzip=0;", "t.conf:3:14: invalid level '0' for 'gzip' in "
                                             "'cached_level' (expected 1 to 9)");
    expect_top_error("cached_level zstd=20;", "t.conf:3:14: invalid level '20' for 'zstd' in "
                                              "'cached_level' (expected 1 to 19)");
    expect_top_error("cached_level zstd=;", "t.conf:3:14: invalid level '' for 'zstd' in "
                                            "'cached_level' (expected 1 to 19)");
    expect_top_error("cached_level brotli=1 gzip=1 zstd=1 brotli=2;",
                     "t.conf:3:37: 'cached_level' takes 1 to 3 arguments");
    expect_top_error("cached_level brotli=5\nupstream_gzip on;",
                     "t.conf:4:1: invalid argument 'upstream_gzip' for 'cached_level' (expected "
                     "brotli=N, gzip=N or zstd=N; missing ';' on line 3?)");
    expect_top_error("cached_level;", "t.conf:3:1: 'cached_level' takes 1 to 3 arguments");
}

/* ---- upstream_gzip ---- */

static void test_upstream_gzip(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_route("upstream_gzip on;");
    assert_true(cfg->routes[0].compress.upstream_gzip);
    config_release(&cfg);
    cfg = load_top("upstream_gzip off;");
    assert_false(cfg->compress.upstream_gzip);
    config_release(&cfg);

    expect_route_error("upstream_gzip ON;",
                       "t.conf:6:15: invalid value 'ON' for 'upstream_gzip' (expected on or off)");
    expect_route_error("upstream_gzip;", "t.conf:6:1: 'upstream_gzip' takes 1 argument");
}

/* ---- contexts ---- */

static void test_contexts(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN "compress { }\ncompress { }\n",
                            "t.conf:3:1: duplicate 'compress' block (first at t.conf:2:1)");
    configtest_expect_error(LISTEN APP "route / { backend app; compress { } compress { } }\n",
                            "t.conf:3:37: duplicate 'compress' block (first at t.conf:3:24)");
    configtest_expect_error(LISTEN "compress;\n", "t.conf:2:1: 'compress' needs a '{ ... }' block");
    configtest_expect_error(LISTEN "compress on { }\n",
                            "t.conf:2:10: 'compress' takes no arguments");
    configtest_expect_error(
        LISTEN "backend app { server 127.0.0.1:8000; compress { } }\n",
        "t.conf:2:38: directive 'compress' is not allowed in the backend context "
        "(only in: main, route)");
    configtest_expect_error(LISTEN "gzip on;\n",
                            "t.conf:2:1: directive 'gzip' is not allowed in the main "
                            "context (only in: compress)");
    configtest_expect_error(
        LISTEN APP "route / { backend app; off; }\n",
        "t.conf:3:24: directive 'off' is not allowed in the route context (only in: "
        "compress)");
    expect_top_error("compress { }", "t.conf:3:1: directive 'compress' is not allowed in the "
                                     "compress context (only in: main, route)");
    expect_top_error("level 5;", "t.conf:3:1: directive 'level' is not allowed in the compress "
                                 "context (only in: log)");
    expect_top_error("deflate on;", "t.conf:3:1: unknown directive 'deflate' in the compress "
                                    "context");
}

/* An error after every kind of allocation, in the top-level block, in a
 * route's and after both (run under valgrind/ASan). */
static void test_errors_free_everything(void **state)
{
    (void)state;
    configtest_expect_error(LISTEN APP
                            "compress { types text/html text/css; }\n"
                            "route /a/ { backend app; }\n"
                            "route /b/ { backend app; compress { types text/*; bogus; } }\n",
                            "t.conf:5:51: unknown directive 'bogus' in the compress context");
    configtest_expect_error(LISTEN APP "compress { types text/html; types text/css; }\n"
                                       "route /a/ { backend app; compress { types a/b; } }\n"
                                       "route /b/ { backend nope; }\n",
                            "t.conf:5:21: unknown backend 'nope'");
    configtest_expect_error(LISTEN APP "route /a/ { backend app; compress { types a/b a/c; } }\n"
                                       "compress { types text/html text/x TEXT/X; }\n",
                            "t.conf:4:35: duplicate type 'text/x' in 'types'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_blocks),
        cmocka_unit_test(test_top_level_inherited),
        cmocka_unit_test(test_route_block_replaces),
        cmocka_unit_test(test_on_off),
        cmocka_unit_test(test_on_off_errors),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_types_errors),
        cmocka_unit_test(test_min_length),
        cmocka_unit_test(test_codings),
        cmocka_unit_test(test_coding_errors),
        cmocka_unit_test(test_cached_level),
        cmocka_unit_test(test_cached_level_errors),
        cmocka_unit_test(test_upstream_gzip),
        cmocka_unit_test(test_contexts),
        cmocka_unit_test(test_errors_free_everything),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
