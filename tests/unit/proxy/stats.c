/* tests/unit/proxy/stats.c: counters, histograms, and the JSON and
 * Prometheus renderings (proxy/stats.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/negotiate.h"
#include "proxy/stats.h"

/* ---- helpers ----------------------------------------------------------------------- */

/* The buffer's bytes as a NUL-terminated string the test owns. */
static char *text_of(struct buf *b)
{
    assert_false(b->oom);
    char *s = malloc(buf_pending(b) + 1);
    assert_non_null(s);
    memcpy(s, b->data + b->off, buf_pending(b));
    s[buf_pending(b)] = '\0';
    buf_release(b);
    return s;
}

static char *json_of(const struct stats_snapshot *snap)
{
    struct buf b = {0};
    stats_write_json(snap, &b);
    return text_of(&b);
}

static char *prom_of(const struct stats_snapshot *snap)
{
    struct buf b = {0};
    stats_write_prometheus(snap, &b);
    return text_of(&b);
}

/* Fails with the whole document when `want` is not in it. */
static void expect_in(const char *doc, const char *want)
{
    if (!strstr(doc, want)) {
        print_error("missing:\n%s\n---- in:\n%s\n", want, doc);
        fail();
    }
}

static void expect_not_in(const char *doc, const char *unwanted)
{
    if (strstr(doc, unwanted)) {
        print_error("unexpected:\n%s\n---- in:\n%s\n", unwanted, doc);
        fail();
    }
}

/* ---- counting ---------------------------------------------------------------------- */

static void test_observe_bucket_edges(void **state)
{
    (void)state;
    static const struct {
        uint64_t us;
        size_t bucket;
    } cases[] = {
        {0, 0},
        {1, 0},
        {500, 0}, /* a bound is in its own bucket */
        {501, 1},
        {1000, 1},
        {1001, 2},
        {2500, 2},
        {9999999, 13},
        {10000000, 13},
        {10000001, 14}, /* above the last bound: +Inf */
        {UINT64_MAX / 2, 14},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct stats_histogram h = {0};
        stats_observe(&h, cases[i].us);
        for (size_t k = 0; k < STATS_NBUCKETS; k++)
            assert_int_equal(h.bucket[k], k == cases[i].bucket ? 1 : 0);
        assert_int_equal(h.count, 1);
        assert_int_equal(h.sum_us, cases[i].us);
    }

    struct stats_histogram h = {0};
    stats_observe(&h, 100);
    stats_observe(&h, 700);
    stats_observe(&h, 700);
    assert_int_equal(h.bucket[0], 1);
    assert_int_equal(h.bucket[1], 2);
    assert_int_equal(h.count, 3);
    assert_int_equal(h.sum_us, 1500);
}

static void test_worker_init_free(void **state)
{
    (void)state;
    struct stats_worker w;
    assert_true(stats_worker_init(&w, 0, 0));
    assert_null(w.routes);
    assert_null(w.backends);
    stats_worker_free(&w);

    assert_true(stats_worker_init(&w, 3, 2));
    assert_int_equal(w.nroutes, 3);
    assert_int_equal(w.nbackends, 2);
    assert_int_equal(w.requests, 0);
    assert_int_equal(w.routes[2].request_time.count, 0);
    assert_int_equal(w.backends[1].errors, 0);
    stats_worker_free(&w);
    assert_null(w.routes);
    assert_int_equal(w.nroutes, 0);
    stats_worker_free(&w); /* twice is harmless */
    stats_worker_free(NULL);
}

/* Worker k: route r gets k*10 + r requests, one hit per request, ... */
static void load_worker(struct stats_worker *w, uint64_t k)
{
    stats_add(&w->connections_accepted, 10 * k);
    stats_add(&w->connections_closed, 7 * k);
    stats_add(&w->connections_refused, k);
    stats_add(&w->requests, 100 * k);
    stats_add(&w->bad_requests, 2 * k);
    stats_add(&w->coalesced_waits, 3 * k);
    stats_add(&w->revalidations, 4 * k);
    for (size_t r = 0; r < w->nroutes; r++) {
        struct stats_route *rt = &w->routes[r];
        stats_add(&rt->requests, k * 10 + r);
        stats_add(&rt->status_2xx, k * 10 + r);
        stats_add(&rt->hits, k);
        stats_add(&rt->misses, r);
        stats_add(&rt->bytes_out, 1000 * k);
        stats_observe(&rt->request_time, 400 * k);  /* k=1: bucket 0; k=2: bucket 1 */
        stats_observe(&rt->request_time, 20000000); /* +Inf */
    }
    for (size_t b = 0; b < w->nbackends; b++) {
        stats_add(&w->backends[b].requests, 5 * k);
        stats_add(&w->backends[b].errors, k);
        stats_observe(&w->backends[b].upstream_time, 3000);
    }
}

static void test_sum_two_workers(void **state)
{
    (void)state;
    struct stats_worker w1, w2;
    assert_true(stats_worker_init(&w1, 2, 1));
    assert_true(stats_worker_init(&w2, 2, 1));
    load_worker(&w1, 1);
    load_worker(&w2, 2);

    struct stats_route_totals routes[2] = {{.name = "/a/"}, {.name = "/b/"}};
    struct stats_backend_totals backends[1] = {{.name = "app"}};
    struct stats_snapshot snap = {
        .routes = routes, .nroutes = 2, .backends = backends, .nbackends = 1};
    stats_sum(&snap, &w1);
    stats_sum(&snap, &w2);

    assert_int_equal(snap.connections_accepted, 30);
    assert_int_equal(snap.connections_closed, 21);
    assert_int_equal(snap.connections_open, 9);
    assert_int_equal(snap.connections_refused, 3);
    assert_int_equal(snap.requests, 300);
    assert_int_equal(snap.bad_requests, 6);
    assert_int_equal(snap.coalesced_waits, 9);
    assert_int_equal(snap.revalidations, 12);

    assert_string_equal(routes[0].name, "/a/");
    assert_int_equal(routes[0].requests, 30);
    assert_int_equal(routes[1].requests, 32);
    assert_int_equal(routes[1].status_2xx, 32);
    assert_int_equal(routes[0].hits, 3);
    assert_int_equal(routes[1].misses, 2);
    assert_int_equal(routes[0].bytes_out, 3000);
    assert_int_equal(routes[0].stale, 0);
    assert_int_equal(routes[0].request_time_bucket[0], 1);
    assert_int_equal(routes[0].request_time_bucket[1], 1);
    assert_int_equal(routes[0].request_time_bucket[STATS_NBUCKETS - 1], 2);
    assert_int_equal(routes[0].request_time_count, 4);
    assert_int_equal(routes[0].request_time_sum_us, 400 + 800 + 2 * 20000000);

    assert_int_equal(backends[0].requests, 15);
    assert_int_equal(backends[0].errors, 3);
    assert_int_equal(backends[0].retries, 0);
    assert_int_equal(backends[0].upstream_time_bucket[3], 2);
    assert_int_equal(backends[0].upstream_time_count, 2);
    assert_int_equal(backends[0].upstream_time_sum_us, 6000);

    stats_worker_free(&w1);
    stats_worker_free(&w2);
}

static void test_sum_older_generation_adds_only_worker_counters(void **state)
{
    (void)state;
    struct stats_worker old, cur;
    assert_true(stats_worker_init(&old, 1, 1)); /* before a reload added a route */
    assert_true(stats_worker_init(&cur, 2, 1));
    load_worker(&old, 1);
    load_worker(&cur, 2);

    struct stats_route_totals routes[2] = {{.name = "/a/"}, {.name = "/b/"}};
    struct stats_backend_totals backends[1] = {{.name = "app"}};
    struct stats_snapshot snap = {
        .routes = routes, .nroutes = 2, .backends = backends, .nbackends = 1};
    stats_sum(&snap, &old);
    stats_sum(&snap, &cur);

    assert_int_equal(snap.requests, 300);
    assert_int_equal(snap.connections_accepted, 30);
    assert_int_equal(snap.connections_open, 9);
    assert_int_equal(snap.revalidations, 12);
    /* routes and backends: the current worker alone */
    assert_int_equal(routes[0].requests, 20);
    assert_int_equal(routes[1].requests, 21);
    assert_int_equal(routes[0].request_time_count, 2);
    assert_int_equal(backends[0].requests, 10);
    assert_int_equal(backends[0].upstream_time_count, 1);

    /* same routes, fewer backends: still another generation */
    struct stats_worker other;
    assert_true(stats_worker_init(&other, 2, 0));
    load_worker(&other, 1);
    stats_sum(&snap, &other);
    assert_int_equal(snap.requests, 400);
    assert_int_equal(routes[0].requests, 20);

    stats_worker_free(&old);
    stats_worker_free(&cur);
    stats_worker_free(&other);
}

/* ---- a hand-made snapshot ---------------------------------------------------------- */

struct fixture {
    struct stats_route_totals routes[2];
    struct stats_backend_totals backends[2];
    struct mcstore_server_stats memcached[2];
    struct stats_snapshot snap;
};

static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    struct stats_route_totals *r = &f->routes[0];
    r->name = "/products/";
    r->requests = 10;
    r->status_2xx = 8;
    r->status_3xx = 1;
    r->status_5xx = 1;
    r->hits = 6;
    r->stale = 2;
    r->misses = 2;
    r->passes = 0;
    r->bytes_in = 1234;
    r->bytes_out = 56789;
    /* 100 observations: 60 <= 0.5 ms, 39 <= 5 ms, 1 above 10 s */
    r->request_time_bucket[0] = 60;
    r->request_time_bucket[3] = 39;
    r->request_time_bucket[STATS_NBUCKETS - 1] = 1;
    r->request_time_count = 100;
    r->request_time_sum_us = 30000000 + 1500000;

    r = &f->routes[1];
    r->name = "default";
    r->requests = 3;
    r->status_4xx = 2;
    r->status_1xx = 1;
    r->misses = 1;
    r->passes = 2;
    r->bytes_in = 100;
    r->bytes_out = 1;
    /* 2 observations, one above every bound: p50 is 1 s, p99 is +Inf */
    r->request_time_bucket[10] = 1;
    r->request_time_bucket[STATS_NBUCKETS - 1] = 1;
    r->request_time_count = 2;
    r->request_time_sum_us = 1000000 + 60000000;

    f->backends[0].name = "app";
    f->backends[0].requests = 12;
    f->backends[0].errors = 1;
    f->backends[0].retries = 1;
    f->backends[0].upstream_time_bucket[2] = 11;
    f->backends[0].upstream_time_count = 11;
    f->backends[0].upstream_time_sum_us = 22000;
    f->backends[1].name = "idle"; /* no observations: null quantiles */

    snprintf(f->memcached[0].name, sizeof f->memcached[0].name, "10.0.0.1:11211");
    f->memcached[0].up = true;
    f->memcached[0].gets = 40;
    f->memcached[0].hits = 30;
    f->memcached[0].dropped_reads = 2;
    snprintf(f->memcached[1].name, sizeof f->memcached[1].name, "[::1]:11211");
    f->memcached[1].up = false;
    f->memcached[1].errors = 5;
    f->memcached[1].timeouts = 4;

    struct stats_snapshot *s = &f->snap;
    s->uptime_s = 12.5;
    s->version = "1.2.3";
    s->draining = true;
    s->connections_open = 4;
    s->connections_accepted = 20;
    s->connections_closed = 16;
    s->connections_refused = 1;
    s->requests = 15;
    s->bad_requests = 2;
    s->coalesced_waits = 5;
    s->revalidations = 6;
    s->esi_pages = 7;
    s->esi_includes = 21;
    s->esi_fragment_hits = 18;
    s->esi_alt = 2;
    s->esi_errors = 3;
    s->routes = f->routes;
    s->nroutes = 2;
    s->backends = f->backends;
    s->nbackends = 2;
    s->memory = (struct cache_store_stats){.objects = 7,
                                           .bytes = 8192,
                                           .capacity = 1 << 20,
                                           .inserts = 9,
                                           .replaced = 1,
                                           .evictions = 2,
                                           .variant_evictions = 3,
                                           .refused = 4,
                                           .removed = 5,
                                           .hits = 6,
                                           .misses = 11};
    s->memcached = f->memcached;
    s->nmemcached = 2;
    s->compression.streamed[CODING_GZIP] = 3;
    s->compression.streamed[CODING_BR] = 4;
    s->compression.streamed[CODING_ZSTD] = 5;
    s->compression.inflated = 1;
    s->compression.variants[CODING_IDENTITY] = 2;
    s->compression.variants[CODING_BR] = 6;
    s->compression.variant_failures = 1;
    s->compression.bytes_in = 1000;
    s->compression.bytes_out = 300;
    s->purge = (struct stats_purge_totals){.purges = 3,
                                           .purged = 17,
                                           .bans_active = 2,
                                           .bans_added = 4,
                                           .log_version = 42,
                                           .log_resets = 1};
}

/* ---- JSON -------------------------------------------------------------------------- */

static void test_json_values(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    char *doc = json_of(&f.snap);

    /* the head and the totals, in order; cache and bytes sum the routes */
    expect_in(doc, "{\n"
                   "  \"version\": \"1.2.3\",\n"
                   "  \"uptime_seconds\": 12.5,\n"
                   "  \"draining\": true,\n"
                   "  \"connections\": {\n"
                   "    \"open\": 4,\n"
                   "    \"accepted\": 20,\n"
                   "    \"closed\": 16,\n"
                   "    \"refused\": 1\n"
                   "  },\n"
                   "  \"requests\": {\n"
                   "    \"total\": 15,\n"
                   "    \"bad\": 2,\n"
                   "    \"status_1xx\": 1,\n"
                   "    \"status_2xx\": 8,\n"
                   "    \"status_3xx\": 1,\n"
                   "    \"status_4xx\": 2,\n"
                   "    \"status_5xx\": 1\n"
                   "  },\n"
                   "  \"cache\": {\n"
                   "    \"hits\": 6,\n"
                   "    \"stale\": 2,\n"
                   "    \"misses\": 3,\n"
                   "    \"passes\": 2,\n"
                   "    \"hit_ratio\": 0.727273,\n" /* 8 / 11 */
                   "    \"coalesced_waits\": 5,\n"
                   "    \"revalidations\": 6\n"
                   "  },\n"
                   "  \"esi\": {\n"
                   "    \"pages\": 7,\n"
                   "    \"includes\": 21,\n"
                   "    \"fragment_hits\": 18,\n"
                   "    \"alt\": 2,\n"
                   "    \"errors\": 3\n"
                   "  },\n"
                   "  \"bytes\": {\n"
                   "    \"in\": 1334,\n"
                   "    \"out\": 56790\n"
                   "  },\n"
                   "  \"routes\": [\n"
                   "    {\n"
                   "      \"route\": \"/products/\",\n"
                   "      \"requests\": 10,\n"
                   "      \"status_1xx\": 0,\n"
                   "      \"status_2xx\": 8,\n"
                   "      \"status_3xx\": 1,\n"
                   "      \"status_4xx\": 0,\n"
                   "      \"status_5xx\": 1,\n"
                   "      \"hits\": 6,\n"
                   "      \"stale\": 2,\n"
                   "      \"misses\": 2,\n"
                   "      \"passes\": 0,\n"
                   "      \"bytes_in\": 1234,\n"
                   "      \"bytes_out\": 56789,\n"
                   "      \"hit_ratio\": 0.8,\n"
                   "      \"request_time\": {\n"
                   "        \"count\": 100,\n"
                   "        \"sum_seconds\": 31.5,\n"
                   "        \"p50_seconds\": 0.0005,\n"
                   "        \"p99_seconds\": 0.005\n"
                   "      }\n"
                   "    },\n"
                   "    {\n"
                   "      \"route\": \"default\",\n");
    /* route 2: no hit or stale, p99 in +Inf */
    expect_in(doc, "      \"hit_ratio\": 0,\n"
                   "      \"request_time\": {\n"
                   "        \"count\": 2,\n"
                   "        \"sum_seconds\": 61,\n"
                   "        \"p50_seconds\": 1,\n"
                   "        \"p99_seconds\": null\n"
                   "      }\n"
                   "    }\n"
                   "  ],\n"
                   "  \"backends\": [\n"
                   "    {\n"
                   "      \"backend\": \"app\",\n"
                   "      \"requests\": 12,\n"
                   "      \"errors\": 1,\n"
                   "      \"retries\": 1,\n"
                   "      \"upstream_time\": {\n"
                   "        \"count\": 11,\n"
                   "        \"sum_seconds\": 0.022,\n"
                   "        \"p50_seconds\": 0.0025,\n"
                   "        \"p99_seconds\": 0.0025\n"
                   "      }\n"
                   "    },\n"
                   "    {\n"
                   "      \"backend\": \"idle\",\n"
                   "      \"requests\": 0,\n"
                   "      \"errors\": 0,\n"
                   "      \"retries\": 0,\n"
                   "      \"upstream_time\": {\n"
                   "        \"count\": 0,\n"
                   "        \"sum_seconds\": 0,\n"
                   "        \"p50_seconds\": null,\n"
                   "        \"p99_seconds\": null\n"
                   "      }\n"
                   "    }\n"
                   "  ],\n"
                   "  \"memory_store\": {\n"
                   "    \"objects\": 7,\n"
                   "    \"bytes\": 8192,\n"
                   "    \"capacity\": 1048576,\n"
                   "    \"inserts\": 9,\n"
                   "    \"replaced\": 1,\n"
                   "    \"evictions\": 2,\n"
                   "    \"variant_evictions\": 3,\n"
                   "    \"refused\": 4,\n"
                   "    \"removed\": 5,\n"
                   "    \"hits\": 6,\n"
                   "    \"misses\": 11\n"
                   "  },\n"
                   "  \"memcached\": [\n"
                   "    {\n"
                   "      \"server\": \"10.0.0.1:11211\",\n"
                   "      \"up\": true,\n"
                   "      \"gets\": 40,\n"
                   "      \"hits\": 30,\n");
    expect_in(doc, "      \"dropped_reads\": 2\n"
                   "    },\n"
                   "    {\n"
                   "      \"server\": \"[::1]:11211\",\n"
                   "      \"up\": false,\n");
    /* every memcached counter, by the table */
#define MCSTORE_STATS_FIELD(name, doc_) expect_in(doc, "      \"" #name "\": ");
    MCSTORE_SERVER_COUNTERS(MCSTORE_STATS_FIELD)
#undef MCSTORE_STATS_FIELD
    expect_in(doc, "      \"timeouts\": 4,\n");
    expect_in(doc, "  ],\n"
                   "  \"compression\": {\n"
                   "    \"streamed\": {\n"
                   "      \"gzip\": 3,\n"
                   "      \"br\": 4,\n"
                   "      \"zstd\": 5\n"
                   "    },\n"
                   "    \"inflated\": 1,\n"
                   "    \"variants\": {\n"
                   "      \"identity\": 2,\n"
                   "      \"gzip\": 0,\n"
                   "      \"br\": 6,\n"
                   "      \"zstd\": 0\n"
                   "    },\n"
                   "    \"variant_failures\": 1,\n"
                   "    \"bytes_in\": 1000,\n"
                   "    \"bytes_out\": 300\n"
                   "  },\n"
                   "  \"purge\": {\n"
                   "    \"purges\": 3,\n"
                   "    \"purged\": 17,\n"
                   "    \"bans_active\": 2,\n"
                   "    \"bans_added\": 4,\n"
                   "    \"log_version\": 42,\n"
                   "    \"log_resets\": 1\n"
                   "  }\n"
                   "}\n");
    assert_int_equal(doc[strlen(doc) - 2], '}'); /* the document ends there */
    expect_not_in(doc, ": nan");
    expect_not_in(doc, ": inf");
    free(doc);
}

static void test_json_empty_snapshot(void **state)
{
    (void)state;
    struct stats_snapshot snap = {.uptime_s = NAN}; /* NaN uptime reads as 0 */
    char *doc = json_of(&snap);
    expect_in(doc, "{\n"
                   "  \"version\": null,\n"
                   "  \"uptime_seconds\": 0,\n"
                   "  \"draining\": false,\n");
    expect_in(doc, "    \"hit_ratio\": 0,\n");
    expect_in(doc, "  \"routes\": [],\n"
                   "  \"backends\": [],\n");
    expect_in(doc, "  \"memcached\": [],\n");
    expect_not_in(doc, ": nan");
    free(doc);
}

static void test_json_escapes_route_names(void **state)
{
    (void)state;
    struct stats_route_totals routes[1] = {
        {.name = "~ \"q\"\\.json$\n\x01\x1f\x7f caf\xc3\xa9 \xff"}};
    struct stats_snapshot snap = {.routes = routes, .nroutes = 1, .version = "v\"1"};
    char *doc = json_of(&snap);
    /* quotes and backslashes escaped, controls as \u00XX, UTF-8 kept,
     * a byte that is not UTF-8 replaced by U+FFFD */
    expect_in(doc, "      \"route\": \"~ \\\"q\\\"\\\\.json$\\n\\u0001\\u001f\x7f caf\xc3\xa9 "
                   "\xef\xbf\xbd\",\n");
    expect_in(doc, "  \"version\": \"v\\\"1\",\n");
    free(doc);
}

/* ---- Prometheus -------------------------------------------------------------------- */

static void test_prometheus_lines(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    f.routes[1].name = "~ a\"b\\c\nd"; /* label escaping */
    char *doc = prom_of(&f.snap);

    expect_in(doc, "# HELP tessera_uptime_seconds seconds since start\n"
                   "# TYPE tessera_uptime_seconds gauge\n"
                   "tessera_uptime_seconds 12.5\n"
                   "# HELP tessera_draining 1 while shutting down gracefully\n"
                   "# TYPE tessera_draining gauge\n"
                   "tessera_draining 1\n"
                   "# HELP tessera_connections_open client connections open now\n"
                   "# TYPE tessera_connections_open gauge\n"
                   "tessera_connections_open 4\n"
                   "# HELP tessera_connections_accepted_total client connections accepted\n"
                   "# TYPE tessera_connections_accepted_total counter\n"
                   "tessera_connections_accepted_total 20\n");
    expect_in(doc, "# TYPE tessera_requests_answered_total counter\n"
                   "tessera_requests_answered_total 15\n");
    expect_in(doc, "# TYPE tessera_bad_requests_total counter\n"
                   "tessera_bad_requests_total 2\n");
    expect_in(doc, "tessera_build_info{version=\"1.2.3\"} 1\n");

    expect_in(doc, "# HELP tessera_requests_total requests answered, by route\n"
                   "# TYPE tessera_requests_total counter\n"
                   "tessera_requests_total{route=\"/products/\"} 10\n"
                   "tessera_requests_total{route=\"~ a\\\"b\\\\c\\nd\"} 3\n");
    expect_in(doc, "tessera_responses_total{route=\"/products/\",class=\"2xx\"} 8\n"
                   "tessera_responses_total{route=\"/products/\",class=\"3xx\"} 1\n");
    expect_in(doc, "tessera_cache_results_total{route=\"/products/\",result=\"hit\"} 6\n"
                   "tessera_cache_results_total{route=\"/products/\",result=\"stale\"} 2\n"
                   "tessera_cache_results_total{route=\"/products/\",result=\"miss\"} 2\n"
                   "tessera_cache_results_total{route=\"/products/\",result=\"pass\"} 0\n");
    expect_in(doc, "tessera_request_bytes_total{route=\"/products/\"} 1234\n");
    expect_in(doc, "tessera_response_bytes_total{route=\"/products/\"} 56789\n");

    /* cumulative buckets; +Inf equals _count */
    expect_in(doc,
              "# TYPE tessera_request_duration_seconds histogram\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"0.0005\"} 60\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"0.001\"} 60\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"0.0025\"} 60\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"0.005\"} 99\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"0.01\"} 99\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"0.025\"} 99\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"0.05\"} 99\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"0.1\"} 99\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"0.25\"} 99\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"0.5\"} 99\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"1\"} 99\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"2.5\"} 99\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"5\"} 99\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"10\"} 99\n"
              "tessera_request_duration_seconds_bucket{route=\"/products/\",le=\"+Inf\"} 100\n"
              "tessera_request_duration_seconds_sum{route=\"/products/\"} 31.5\n"
              "tessera_request_duration_seconds_count{route=\"/products/\"} 100\n"
              "tessera_request_duration_seconds_bucket{route=\"~ a\\\"b\\\\c\\nd\",le=\"0.0005\"} "
              "0\n");
    expect_in(doc,
              "tessera_request_duration_seconds_bucket{route=\"~ a\\\"b\\\\c\\nd\",le=\"+Inf\"} "
              "2\n");

    expect_in(doc, "# TYPE tessera_upstream_requests_total counter\n"
                   "tessera_upstream_requests_total{backend=\"app\"} 12\n"
                   "tessera_upstream_requests_total{backend=\"idle\"} 0\n");
    expect_in(doc, "tessera_upstream_errors_total{backend=\"app\"} 1\n");
    expect_in(doc, "tessera_upstream_retries_total{backend=\"app\"} 1\n");
    expect_in(doc, "tessera_upstream_response_seconds_bucket{backend=\"app\",le=\"0.001\"} 0\n"
                   "tessera_upstream_response_seconds_bucket{backend=\"app\",le=\"0.0025\"} 11\n");
    expect_in(doc, "tessera_upstream_response_seconds_sum{backend=\"app\"} 0.022\n"
                   "tessera_upstream_response_seconds_count{backend=\"app\"} 11\n");

    expect_in(doc, "# TYPE tessera_memory_store_objects gauge\n"
                   "tessera_memory_store_objects 7\n");
    expect_in(doc, "# TYPE tessera_memory_store_bytes gauge\n"
                   "tessera_memory_store_bytes 8192\n");
    expect_in(doc, "# TYPE tessera_memory_store_capacity_bytes gauge\n"
                   "tessera_memory_store_capacity_bytes 1048576\n");
    expect_in(doc, "# TYPE tessera_memory_store_evictions_total counter\n"
                   "tessera_memory_store_evictions_total 2\n");
    expect_in(doc, "tessera_memory_store_misses_total 11\n");

    expect_in(doc, "# TYPE tessera_memcached_up gauge\n"
                   "tessera_memcached_up{server=\"10.0.0.1:11211\"} 1\n"
                   "tessera_memcached_up{server=\"[::1]:11211\"} 0\n");
    /* HELP text from the table */
    expect_in(doc, "# HELP tessera_memcached_timeouts_total failed calls that timed out (also "
                   "errors)\n"
                   "# TYPE tessera_memcached_timeouts_total counter\n"
                   "tessera_memcached_timeouts_total{server=\"10.0.0.1:11211\"} 0\n"
                   "tessera_memcached_timeouts_total{server=\"[::1]:11211\"} 4\n");

    expect_in(doc, "tessera_compressed_responses_total{coding=\"br\"} 4\n");
    expect_in(doc, "tessera_compressed_responses_total{coding=\"zstd\"} 5\n");
    expect_not_in(doc, "tessera_compressed_responses_total{coding=\"identity\"}");
    expect_in(doc, "tessera_inflated_responses_total 1\n");
    expect_in(doc, "tessera_compressed_variants_total{coding=\"identity\"} 2\n");
    expect_in(doc, "tessera_compressed_variants_total{coding=\"br\"} 6\n");
    expect_in(doc, "tessera_compression_variant_failures_total 1\n");
    expect_in(doc, "tessera_compression_input_bytes_total 1000\n");
    expect_in(doc, "tessera_compression_output_bytes_total 300\n");

    expect_in(doc, "tessera_purges_total 3\n");
    expect_in(doc, "tessera_purged_objects_total 17\n");
    expect_in(doc, "# TYPE tessera_bans_active gauge\ntessera_bans_active 2\n");
    expect_in(doc, "tessera_bans_added_total 4\n");
    expect_in(doc, "# TYPE tessera_purge_log_version gauge\ntessera_purge_log_version 42\n");
    expect_in(doc, "tessera_purge_log_resets_total 1\n");
    expect_in(doc, "tessera_coalesced_waits_total 5\n");
    expect_in(doc, "tessera_revalidations_total 6\n");
    expect_in(doc, "tessera_esi_pages_total 7\n");
    expect_in(doc, "tessera_esi_fragment_hits_total 18\n");
    free(doc);
}

static void test_prometheus_without_routes(void **state)
{
    (void)state;
    struct stats_snapshot snap = {.uptime_s = 1.0};
    char *doc = prom_of(&snap);
    /* labelled families without samples are left out; the others stay */
    expect_not_in(doc, "tessera_requests_total");
    expect_not_in(doc, "tessera_request_duration_seconds");
    expect_not_in(doc, "tessera_upstream_");
    expect_not_in(doc, "tessera_memcached_");
    expect_not_in(doc, "tessera_build_info");
    expect_in(doc, "\ntessera_uptime_seconds 1\n");
    expect_in(doc, "\ntessera_requests_answered_total 0\n");
    expect_in(doc, "\ntessera_memory_store_objects 0\n");
    expect_in(doc, "\ntessera_compressed_responses_total{coding=\"gzip\"} 0\n");
    expect_in(doc, "\ntessera_purge_log_resets_total 0\n");
    free(doc);
}

/* ---- a structural check of the whole exposition ------------------------------------ */

static bool is_name_start(char c, bool colon)
{
    return isalpha((unsigned char)c) || c == '_' || (colon && c == ':');
}

static bool is_name_char(char c, bool colon)
{
    return is_name_start(c, colon) || isdigit((unsigned char)c);
}

/* A metric (colon true) or label name at *p; advances past it. */
static bool scan_name(const char **p, bool colon)
{
    if (!is_name_start(**p, colon))
        return false;
    while (is_name_char(**p, colon))
        (*p)++;
    return true;
}

/* A label value at *p (after the opening quote); advances past the closing
 * quote.  Only \\, \" and \n are escapes. */
static bool scan_label_value(const char **p)
{
    for (const char *s = *p; *s; s++) {
        if (*s == '\n')
            return false;
        if (*s == '"') {
            *p = s + 1;
            return true;
        }
        if (*s == '\\') {
            s++;
            if (*s != '\\' && *s != '"' && *s != 'n')
                return false;
        }
    }
    return false;
}

struct family {
    char name[128];
    char type[16];
    bool helped;
};

struct exposition {
    struct family families[200];
    size_t nfamilies;
    char *series[2000];
    size_t nseries;
    size_t current; /* the family whose samples may follow, +1; 0: none */
};

static struct family *find_family(struct exposition *x, const char *name, size_t len)
{
    for (size_t i = 0; i < x->nfamilies; i++)
        if (strlen(x->families[i].name) == len && memcmp(x->families[i].name, name, len) == 0)
            return &x->families[i];
    return NULL;
}

/* The family a sample named name[0, len) belongs to: itself, or for a
 * histogram its name without _bucket, _sum or _count. */
static struct family *sample_family(struct exposition *x, const char *name, size_t len)
{
    struct family *f = find_family(x, name, len);
    if (f)
        return strcmp(f->type, "histogram") == 0 ? NULL : f;
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(suffixes[i]);
        if (len > n && memcmp(name + len - n, suffixes[i], n) == 0) {
            f = find_family(x, name, len - n);
            if (f && strcmp(f->type, "histogram") == 0)
                return f;
        }
    }
    return NULL;
}

static void check_comment(struct exposition *x, const char *line)
{
    bool help = strncmp(line, "# HELP ", 7) == 0;
    assert_true(help || strncmp(line, "# TYPE ", 7) == 0);
    const char *p = line + 7;
    const char *name = p;
    assert_true(scan_name(&p, true));
    size_t len = (size_t)(p - name);
    assert_int_equal(*p, ' ');
    struct family *f = find_family(x, name, len);
    if (help) {
        assert_null(f); /* one HELP per family, before its TYPE */
        assert_true(x->nfamilies < sizeof x->families / sizeof x->families[0]);
        f = &x->families[x->nfamilies++];
        assert_true(len < sizeof f->name);
        memcpy(f->name, name, len);
        f->helped = true;
        assert_true(strlen(p + 1) > 0);
        x->current = 0;
        return;
    }
    assert_non_null(f);                 /* TYPE right after its HELP */
    assert_int_equal(f->type[0], '\0'); /* one TYPE per family */
    assert_true(f == &x->families[x->nfamilies - 1]);
    p++;
    assert_true(strcmp(p, "counter") == 0 || strcmp(p, "gauge") == 0 ||
                strcmp(p, "histogram") == 0);
    snprintf(f->type, sizeof f->type, "%s", p);
    x->current = (size_t)(f - x->families) + 1;
}

static void check_sample(struct exposition *x, const char *line)
{
    const char *p = line;
    assert_true(scan_name(&p, true));
    size_t len = (size_t)(p - line);
    struct family *f = sample_family(x, line, len);
    if (!f) {
        print_error("sample without a TYPE: %s\n", line);
        fail();
    }
    /* all of a family's samples follow its TYPE, together */
    assert_int_equal(x->current, (size_t)(f - x->families) + 1);
    if (strcmp(f->type, "counter") == 0)
        assert_true(len > 6 && memcmp(line + len - 6, "_total", 6) == 0);
    if (*p == '{') {
        p++;
        for (;;) {
            assert_true(scan_name(&p, false));
            assert_int_equal(*p++, '=');
            assert_int_equal(*p++, '"');
            assert_true(scan_label_value(&p));
            if (*p == '}')
                break;
            assert_int_equal(*p++, ',');
        }
        p++;
    }
    size_t series_len = (size_t)(p - line);
    assert_int_equal(*p++, ' ');
    if (strcmp(p, "+Inf") != 0) {
        char *end;
        strtod(p, &end);
        assert_true(end != p && *end == '\0');
        assert_true(isdigit((unsigned char)*p)); /* never negative, NaN or Inf */
    }
    assert_true(x->nseries < sizeof x->series / sizeof x->series[0]);
    x->series[x->nseries] = strndup(line, series_len);
    assert_non_null(x->series[x->nseries]);
    x->nseries++;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_exposition(struct exposition *x, char *doc)
{
    memset(x, 0, sizeof *x);
    assert_true(strlen(doc) > 0);
    assert_int_equal(doc[strlen(doc) - 1], '\n');
    for (char *line = doc, *end; *line; line = end + 1) {
        end = strchr(line, '\n');
        *end = '\0';
        assert_true(strlen(line) > 0);
        if (line[0] == '#')
            check_comment(x, line);
        else
            check_sample(x, line);
        *end = '\n';
    }
    for (size_t i = 0; i < x->nfamilies; i++)
        assert_true(x->families[i].type[0] != '\0');
    qsort(x->series, x->nseries, sizeof x->series[0], compare_strings);
    for (size_t i = 1; i < x->nseries; i++)
        if (strcmp(x->series[i - 1], x->series[i]) == 0) {
            print_error("duplicate series %s\n", x->series[i]);
            fail();
        }
}

static void exposition_free(struct exposition *x)
{
    for (size_t i = 0; i < x->nseries; i++)
        free(x->series[i]);
}

static bool has_family(struct exposition *x, const char *name, const char *type)
{
    struct family *f = find_family(x, name, strlen(name));
    return f && strcmp(f->type, type) == 0;
}

static void test_prometheus_structure(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    f.routes[1].name = "a\"b\\c\nd\xff"; /* hard label value */
    char *doc = prom_of(&f.snap);
    struct exposition *x = malloc(sizeof *x);
    assert_non_null(x);
    check_exposition(x, doc);

    /* every counter of every table has its family */
#define MCSTORE_STATS_FIELD(name, doc_)                                                            \
    assert_true(has_family(x, "tessera_memcached_" #name "_total", "counter"));
    MCSTORE_SERVER_COUNTERS(MCSTORE_STATS_FIELD)
#undef MCSTORE_STATS_FIELD
#define STATS_FIELD(name, doc_)                                                                    \
    assert_true(has_family(x, "tessera_upstream_" #name "_total", "counter"));
    STATS_BACKEND_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    assert_true(has_family(x, "tessera_memcached_up", "gauge"));
    assert_true(has_family(x, "tessera_request_duration_seconds", "histogram"));
    assert_true(has_family(x, "tessera_upstream_response_seconds", "histogram"));
    assert_true(has_family(x, "tessera_connections_refused_total", "counter"));
    assert_true(has_family(x, "tessera_memory_store_variant_evictions_total", "counter"));
    assert_true(has_family(x, "tessera_memory_store_capacity_bytes", "gauge"));
    /* 2 routes x 15 buckets, 2 backends x 15 */
    size_t buckets = 0;
    for (size_t i = 0; i < x->nseries; i++)
        if (strstr(x->series[i], "_bucket{"))
            buckets++;
    assert_int_equal(buckets, 4 * STATS_NBUCKETS);
    exposition_free(x);
    free(x);
    free(doc);

    /* a snapshot with nothing in it is well-formed too */
    struct stats_snapshot empty = {0};
    doc = prom_of(&empty);
    x = malloc(sizeof *x);
    assert_non_null(x);
    check_exposition(x, doc);
    exposition_free(x);
    free(x);
    free(doc);
}

/* A worker's live counters through stats_sum() into both renderings. */
static void test_sum_then_render(void **state)
{
    (void)state;
    struct stats_worker w;
    assert_true(stats_worker_init(&w, 1, 0));
    stats_add(&w.routes[0].hits, 3);
    stats_add(&w.routes[0].misses, 1);
    stats_observe(&w.routes[0].request_time, 750);
    stats_observe(&w.routes[0].request_time, 1);
    struct stats_route_totals routes[1] = {{.name = "/"}};
    struct stats_snapshot snap = {.routes = routes, .nroutes = 1};
    stats_sum(&snap, &w);

    char *doc = json_of(&snap);
    expect_in(doc, "      \"hit_ratio\": 0.75,\n"
                   "      \"request_time\": {\n"
                   "        \"count\": 2,\n"
                   "        \"sum_seconds\": 0.000751,\n"
                   "        \"p50_seconds\": 0.0005,\n"
                   "        \"p99_seconds\": 0.001\n");
    free(doc);
    doc = prom_of(&snap);
    expect_in(doc, "tessera_request_duration_seconds_bucket{route=\"/\",le=\"0.0005\"} 1\n"
                   "tessera_request_duration_seconds_bucket{route=\"/\",le=\"0.001\"} 2\n");
    expect_in(doc, "tessera_request_duration_seconds_sum{route=\"/\"} 0.000751\n"
                   "tessera_request_duration_seconds_count{route=\"/\"} 2\n");
    free(doc);
    stats_worker_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_observe_bucket_edges),
        cmocka_unit_test(test_worker_init_free),
        cmocka_unit_test(test_sum_two_workers),
        cmocka_unit_test(test_sum_older_generation_adds_only_worker_counters),
        cmocka_unit_test(test_json_values),
        cmocka_unit_test(test_json_empty_snapshot),
        cmocka_unit_test(test_json_escapes_route_names),
        cmocka_unit_test(test_prometheus_lines),
        cmocka_unit_test(test_prometheus_without_routes),
        cmocka_unit_test(test_prometheus_structure),
        cmocka_unit_test(test_sum_then_render),
    };
    return cmocka_run_group_tests_name("proxy/stats", tests, NULL, NULL);
}
