/*
 * proxy/stats.h: counters and latency histograms, and their two renderings
 * for the admin listener: JSON (GET /stats) and the Prometheus text
 * exposition format (GET /metrics).  Issue 8.
 *
 * Counting: each worker owns a struct stats_worker and is its only writer
 * (relaxed atomic adds: no lock, no shared cache line between workers);
 * the admin side sums the workers' structs into a struct stats_snapshot,
 * adds the process-wide figures (stores, memcached, compression, purges)
 * and renders it.  Counters are monotonic since start; per-route and
 * per-backend counters are kept per config generation (a reload that
 * changes the routes starts them again: their labels are the new routes).
 */
#ifndef TESSERA_STATS_H
#define TESSERA_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/mcstore.h"
#include "cache/store.h"
#include "config/config.h"
#include "proxy/buf.h"
#include "proxy/encode.h"

/* Histogram bucket upper bounds, in microseconds (Prometheus `le`, in
 * seconds when rendered); a last, implicit bucket is +Inf. */
#define STATS_BUCKETS_US                                                                           \
    {                                                                                              \
        500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,      \
            5000000, 10000000                                                                      \
    }
#define STATS_NBUCKETS 15 /* the bounds above and +Inf */

struct stats_histogram {
    _Atomic uint64_t bucket[STATS_NBUCKETS]; /* NOT cumulative: bucket[i] counts observations
                                              * in (bound[i-1], bound[i]] */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
};

/* stats_observe: count one observation of us microseconds. */
void stats_observe(struct stats_histogram *h, uint64_t us);

/* stats_add: c += n (relaxed). */
static inline void stats_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* What a route's requests did. */
#define STATS_ROUTE_COUNTERS(X)                                                                    \
    X(requests, "requests answered")                                                               \
    X(status_1xx, "final responses with a 1xx status (101)")                                       \
    X(status_2xx, "responses with a 2xx status")                                                   \
    X(status_3xx, "responses with a 3xx status")                                                   \
    X(status_4xx, "responses with a 4xx status")                                                   \
    X(status_5xx, "responses with a 5xx status")                                                   \
    X(hits, "answers from the cache (fresh)")                                                      \
    X(stale, "answers from the cache, stale (stale-while-revalidate, stale-if-error)")             \
    X(misses, "cacheable requests that went to the upstream")                                      \
    X(passes, "requests the cache did not handle (policy, method, cookies...)")                    \
    X(bytes_in, "request bytes received (heads and bodies)")                                       \
    X(bytes_out, "response body bytes sent")

struct stats_route {
#define STATS_FIELD(name, doc) _Atomic uint64_t name;
    STATS_ROUTE_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    struct stats_histogram request_time; /* from the first byte of the request to the
                                          * last byte of the response queued */
};

/* What a backend's servers did for this worker. */
#define STATS_BACKEND_COUNTERS(X)                                                                  \
    X(requests, "requests sent upstream (retries included)")                                       \
    X(errors, "upstream failures: connect, timeout, bad response, reset")                          \
    X(retries, "requests retried on another server")

struct stats_backend {
#define STATS_FIELD(name, doc) _Atomic uint64_t name;
    STATS_BACKEND_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    struct stats_histogram upstream_time; /* request sent to response head received */
};

/* Worker-wide counters. */
#define STATS_WORKER_COUNTERS(X)                                                                   \
    X(connections_accepted, "client connections accepted")                                         \
    X(connections_closed, "client connections closed")                                             \
    X(connections_refused, "client connections refused over max_connections")                      \
    X(requests, "requests answered (every route, and errors before a route)")                      \
    X(bad_requests, "requests refused before routing (4xx for malformed input or limits)")         \
    X(coalesced_waits, "requests that waited for another request's fetch")                         \
    X(revalidations, "background revalidations started")                                           \
    X(esi_pages, "ESI pages assembled (templates answered, nested ones too)")                      \
    X(esi_includes, "ESI include subrequests made (alts included)")                                \
    X(esi_fragment_hits, "ESI include subrequests answered from the cache")                        \
    X(esi_alt, "ESI includes answered by their alt after src failed")                              \
    X(esi_errors, "ESI includes that failed (status, timeout, loop, depth, limit, host)")

struct stats_worker {
#define STATS_FIELD(name, doc) _Atomic uint64_t name;
    STATS_WORKER_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    struct stats_route *routes; /* one per route of the worker's current config */
    size_t nroutes;
    struct stats_backend *backends; /* one per backend of that config */
    size_t nbackends;
};

/* stats_worker_init: zero counters with nroutes / nbackends slots.  False
 * when memory runs out.  stats_worker_free() releases the slots. */
bool stats_worker_init(struct stats_worker *s, size_t nroutes, size_t nbackends);
void stats_worker_free(struct stats_worker *s);

/* Per-route and per-backend counters live with the config they count
 * for: one slice per worker, allocated when the config is handed to the
 * workers and freed with the config, so neither a worker nor the admin
 * thread ever reads counters of a freed generation. */

/* stats_config_attach: give cfg zeroed slices for nworkers workers (once;
 * a config that has them keeps them).  False when memory runs out.  Main
 * thread, before any worker sees cfg. */
bool stats_config_attach(struct config *cfg, unsigned nworkers);

/* stats_config_view: point view->routes / view->backends (and their
 * counts) at worker `worker`'s slice of cfg; the worker-wide counters of
 * view are left alone.  False when cfg has no slice for that worker. */
bool stats_config_view(const struct config *cfg, unsigned worker, struct stats_worker *view);

/* A plain copy of the counters above (summed over workers). */
struct stats_route_totals {
    const char *name; /* the route as written: "/products/", "= /", "~ \\.json$", "default" */
#define STATS_FIELD(name, doc) uint64_t name;
    STATS_ROUTE_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    uint64_t request_time_bucket[STATS_NBUCKETS], request_time_count, request_time_sum_us;
};

struct stats_backend_totals {
    const char *name; /* the backend's name */
#define STATS_FIELD(name, doc) uint64_t name;
    STATS_BACKEND_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    uint64_t upstream_time_bucket[STATS_NBUCKETS], upstream_time_count, upstream_time_sum_us;
};

struct stats_purge_totals {
    uint64_t purges;      /* purge requests applied on this node (local and from the log) */
    uint64_t purged;      /* objects removed from memory by purges and sweeps */
    uint64_t bans_active; /* bans in the list now */
    uint64_t bans_added;  /* bans added since start */
    uint64_t log_version; /* the shared purge log's version this node has applied */
    uint64_t log_resets;  /* times the log was lost and the memory tier dropped */
};

/* Everything /stats and /metrics show.  The caller fills it (stats_sum()
 * for the workers' part) and owns the arrays. */
struct stats_snapshot {
    double uptime_s;
    const char *version;
    bool draining;
    uint64_t connections_open; /* accepted - closed, all workers */
#define STATS_FIELD(name, doc) uint64_t name;
    STATS_WORKER_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    struct stats_route_totals *routes;
    size_t nroutes;
    struct stats_backend_totals *backends;
    size_t nbackends;
    struct cache_store_stats memory;        /* the memory store */
    struct mcstore_server_stats *memcached; /* one per server, config order */
    size_t nmemcached;
    struct encode_stats compression;
    struct stats_purge_totals purge;
};

/* stats_sum: add worker w's counters into snap (whose counters start at
 * zero), connections_open (w's accepted - closed) included.  snap->routes and
 * snap->backends must have w->nroutes / w->nbackends entries (names set by
 * the caller); workers on an older config generation (different counts)
 * add only their worker-wide counters. */
void stats_sum(struct stats_snapshot *snap, const struct stats_worker *w);

/* stats_write_json: the snapshot as one JSON object (pretty, 2 spaces),
 * with "hit_ratio" = (hits + stale) / (hits + stale + misses), 0 when none,
 * per route and in total. */
void stats_write_json(const struct stats_snapshot *snap, struct buf *out);

/* stats_write_prometheus: the snapshot in the Prometheus text exposition
 * format 0.0.4: "# HELP" and "# TYPE" lines, metric names prefixed
 * "tessera_", counters suffixed "_total", bytes "_bytes_total", durations
 * in seconds ("_seconds" histograms with cumulative "le" buckets, _sum and
 * _count), labels route="...", backend="...", server="host:port", coding="br"
 * (label values escaped: backslash, double quote, newline). */
void stats_write_prometheus(const struct stats_snapshot *snap, struct buf *out);

#endif
