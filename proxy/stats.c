/*
 * proxy/stats.c: counters, histograms and their JSON and Prometheus
 * renderings (see stats.h).
 *
 * Locking: none.  A worker is the only writer of its struct stats_worker
 * (relaxed atomic adds); stats_sum() reads it with relaxed loads from the
 * admin thread, so a sum is not a snapshot: each counter is exact, the set
 * of them may be a few events apart.  Two reads are ordered on purpose so
 * that the figures a reader compares stay consistent: "closed" is read
 * before "accepted" (open is never negative), and a histogram's count is
 * the sum of the buckets read (the +Inf bucket always equals _count).
 *
 * The renderers only read the snapshot and append to the caller's buffer;
 * memory failure is the buffer's sticky oom flag.  Names (routes, backends,
 * servers) are config text and may hold any byte: they are escaped for
 * each format, and bytes that are not UTF-8 become U+FFFD, since both a
 * JSON parser and a Prometheus scraper refuse the whole document otherwise.
 *
 * Numbers: counters are integers.  Seconds derived from microsecond
 * counters (sums, bucket bounds, quantiles, uptime) are exact decimals of
 * the microseconds ("0.0005", "12.345678"), not %.6g: a sum rounded to six
 * significant digits would stop moving once it passes 10^6 seconds, and
 * rate() over it would read zero.  Ratios are %.6g.  Neither form can
 * produce "nan" or "inf".
 */
#include "proxy/stats.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/negotiate.h"

static const uint64_t bounds_us[] = STATS_BUCKETS_US;

_Static_assert(sizeof bounds_us / sizeof bounds_us[0] + 1 == STATS_NBUCKETS,
               "STATS_NBUCKETS is the bounds and +Inf");

/* The Prometheus rendering maps some counters by hand (route counters
 * become labelled families, the store's fields have no table): a new
 * counter must stop the build until it is given a family. */
#define COUNT_ONE(name, doc) +1
_Static_assert(0 STATS_ROUTE_COUNTERS(COUNT_ONE) == 12,
               "a new route counter needs a family in prom_routes()");
_Static_assert(sizeof(struct cache_store_stats) == 11 * sizeof(uint64_t),
               "a new store counter needs a line in json_memory() and prom_memory()");
_Static_assert(sizeof(struct stats_purge_totals) == 6 * sizeof(uint64_t),
               "a new purge counter needs a line in json_purge() and prom_purge()");
#undef COUNT_ONE

/* ---- counting ---------------------------------------------------------------------- */

void stats_observe(struct stats_histogram *h, uint64_t us)
{
    size_t i = 0;
    while (i < STATS_NBUCKETS - 1 && us > bounds_us[i])
        i++;
    stats_add(&h->bucket[i], 1);
    stats_add(&h->count, 1);
    stats_add(&h->sum_us, us);
}

bool stats_worker_init(struct stats_worker *s, size_t nroutes, size_t nbackends)
{
    memset(s, 0, sizeof *s);
    if (nroutes > 0) {
        s->routes = calloc(nroutes, sizeof *s->routes);
        if (!s->routes)
            goto fail;
    }
    if (nbackends > 0) {
        s->backends = calloc(nbackends, sizeof *s->backends);
        if (!s->backends)
            goto fail;
    }
    s->nroutes = nroutes;
    s->nbackends = nbackends;
    return true;
fail:
    stats_worker_free(s);
    return false;
}

void stats_worker_free(struct stats_worker *s)
{
    if (!s)
        return;
    free(s->routes);
    free(s->backends);
    s->routes = NULL;
    s->backends = NULL;
    s->nroutes = 0;
    s->nbackends = 0;
}

/* A config's counters: nworkers slices, each its routes then its backends. */
struct config_stats {
    unsigned nworkers;
    struct stats_worker *slices; /* [nworkers] */
};

static void config_stats_free(void *p)
{
    struct config_stats *cs = p;
    if (!cs)
        return;
    for (unsigned i = 0; i < cs->nworkers; i++)
        stats_worker_free(&cs->slices[i]);
    free(cs->slices);
    free(cs);
}

bool stats_config_attach(struct config *cfg, unsigned nworkers)
{
    if (cfg->stats)
        return true;
    struct config_stats *cs = calloc(1, sizeof *cs);
    if (!cs)
        return false;
    cs->slices = calloc(nworkers ? nworkers : 1, sizeof *cs->slices);
    if (!cs->slices)
        goto fail;
    for (unsigned i = 0; i < nworkers; i++) {
        if (!stats_worker_init(&cs->slices[i], cfg->nroutes, cfg->nbackends))
            goto fail;
        cs->nworkers = i + 1;
    }
    cfg->stats = cs;
    cfg->stats_workers = nworkers;
    cfg->stats_free = config_stats_free;
    return true;
fail:
    config_stats_free(cs);
    return false;
}

bool stats_config_view(const struct config *cfg, unsigned worker, struct stats_worker *view)
{
    const struct config_stats *cs = cfg->stats;
    if (!cs || worker >= cs->nworkers)
        return false;
    view->routes = cs->slices[worker].routes;
    view->nroutes = cs->slices[worker].nroutes;
    view->backends = cs->slices[worker].backends;
    view->nbackends = cs->slices[worker].nbackends;
    return true;
}

static uint64_t load(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Adds h into bucket[], *count and *sum_us; *count grows by the buckets
 * read, not by h->count, so that it always equals their sum. */
static void sum_histogram(uint64_t bucket[STATS_NBUCKETS], uint64_t *count, uint64_t *sum_us,
                          const struct stats_histogram *h)
{
    for (size_t i = 0; i < STATS_NBUCKETS; i++) {
        uint64_t n = load(&h->bucket[i]);
        bucket[i] += n;
        *count += n;
    }
    *sum_us += load(&h->sum_us);
}

void stats_sum(struct stats_snapshot *snap, const struct stats_worker *w)
{
    /* closed before accepted: a connection accepted and closed between the
     * two loads then counts in neither, never in closed alone. */
    uint64_t closed = load(&w->connections_closed);
    uint64_t accepted = load(&w->connections_accepted);
    snap->connections_closed += closed;
    snap->connections_accepted += accepted;
    snap->connections_open += accepted - closed;
#define STATS_FIELD(name, doc)                                                                     \
    if (&w->name != &w->connections_closed && &w->name != &w->connections_accepted)                \
        snap->name += load(&w->name);
    STATS_WORKER_COUNTERS(STATS_FIELD)
#undef STATS_FIELD

    /* An older config generation: its slots are other routes. */
    if (w->nroutes != snap->nroutes || w->nbackends != snap->nbackends)
        return;
    for (size_t i = 0; i < w->nroutes; i++) {
        struct stats_route_totals *t = &snap->routes[i];
        const struct stats_route *r = &w->routes[i];
#define STATS_FIELD(name, doc) t->name += load(&r->name);
        STATS_ROUTE_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
        sum_histogram(t->request_time_bucket, &t->request_time_count, &t->request_time_sum_us,
                      &r->request_time);
    }
    for (size_t i = 0; i < w->nbackends; i++) {
        struct stats_backend_totals *t = &snap->backends[i];
        const struct stats_backend *b = &w->backends[i];
#define STATS_FIELD(name, doc) t->name += load(&b->name);
        STATS_BACKEND_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
        sum_histogram(t->upstream_time_bucket, &t->upstream_time_count, &t->upstream_time_sum_us,
                      &b->upstream_time);
    }
}

/* ---- shared by both renderings ----------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s (Unicode Table 3-7), or 0
 * when the bytes there are not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f; /* nothing above U+10FFFF */
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

#define REPLACEMENT_CHAR "\xef\xbf\xbd"

/* Appends s escaped for a JSON string (json == true: ", \ and controls) or
 * for a Prometheus label value or HELP text (\, newline, and " when quote),
 * without the surrounding quotes. */
static void append_escaped(struct buf *out, const char *str, bool json, bool quote)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    size_t n = strlen((const char *)s);
    size_t run = 0; /* bytes before s[i] that need no escape, not yet copied */
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        const char *esc = NULL;
        char hex[8];
        size_t len = utf8_len(s + i, n - i);
        if (len == 0)
            esc = REPLACEMENT_CHAR;
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '"' && (json || quote))
            esc = "\\\"";
        else if (c == '\n')
            esc = "\\n";
        else if (json && c < 0x20) {
            snprintf(hex, sizeof hex, "\\u%04x", c);
            esc = hex;
        }
        if (!esc) {
            run += len;
            i += len;
            continue;
        }
        buf_append(out, s + i - run, run);
        buf_append_str(out, esc);
        run = 0;
        i += len ? len : 1;
    }
    buf_append(out, s + n - run, run);
}

/* Microseconds as exact decimal seconds: 500 -> "0.0005", 2500000 -> "2.5". */
static void format_us(char *dst, size_t size, uint64_t us)
{
    uint64_t frac = us % 1000000;
    int n = snprintf(dst, size, "%" PRIu64, us / 1000000);
    if (frac == 0 || n < 0 || (size_t)n >= size)
        return;
    char digits[8];
    snprintf(digits, sizeof digits, "%06" PRIu64, frac);
    size_t len = 6;
    while (digits[len - 1] == '0')
        len--;
    snprintf(dst + n, size - (size_t)n, ".%.*s", (int)len, digits);
}

/* Uptime is a double: negative, NaN and absurd values read as 0. */
static uint64_t uptime_us(double s)
{
    if (!(s >= 0.0 && s < 1e12)) /* also false for NaN */
        return 0;
    return (uint64_t)llround(s * 1e6);
}

/* (hits + stale) / (hits + stale + misses), 0 when there are none. */
static double hit_ratio(uint64_t hits, uint64_t stale, uint64_t misses)
{
    uint64_t answered = hits + stale;
    if (answered + misses == 0)
        return 0.0;
    return (double)answered / (double)(answered + misses);
}

/* The pct-th percentile's bucket bound: the upper bound of the bucket
 * holding the ceil(total * pct / 100)-th observation.  False when there are
 * none, or it is in the +Inf bucket. */
static bool quantile_us(const uint64_t bucket[STATS_NBUCKETS], unsigned pct, uint64_t *out)
{
    uint64_t total = 0;
    for (size_t i = 0; i < STATS_NBUCKETS; i++)
        total += bucket[i];
    if (total == 0)
        return false;
    /* total * pct / 100 rounded up, without overflowing for huge totals */
    uint64_t rank = total / 100 * pct + ((total % 100) * pct + 99) / 100;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < STATS_NBUCKETS - 1; i++) {
        seen += bucket[i];
        if (seen >= rank) {
            *out = bounds_us[i];
            return true;
        }
    }
    return false;
}

/* ---- JSON -------------------------------------------------------------------------- */

/* A pretty printer: two-space indents, commas placed by `first`. */
struct jw {
    struct buf *out;
    int depth;
    bool first; /* nothing written yet in the innermost open container */
};

static void jw_newline(struct jw *w)
{
    static const char spaces[] = "                                ";
    buf_append(w->out, "\n", 1);
    for (int i = 0; i < w->depth; i++)
        buf_append(w->out, spaces, 2);
}

/* Before a member or an array element. */
static void jw_item(struct jw *w)
{
    if (!w->first)
        buf_append(w->out, ",", 1);
    jw_newline(w);
    w->first = false;
}

static void jw_open(struct jw *w, char c)
{
    buf_append(w->out, &c, 1);
    w->depth++;
    w->first = true;
}

static void jw_close(struct jw *w, char c)
{
    w->depth--;
    if (!w->first)
        jw_newline(w);
    buf_append(w->out, &c, 1);
    w->first = false;
}

static void jw_string(struct jw *w, const char *s)
{
    buf_append(w->out, "\"", 1);
    append_escaped(w->out, s, true, true);
    buf_append(w->out, "\"", 1);
}

static void jw_key(struct jw *w, const char *key)
{
    jw_item(w);
    jw_string(w, key);
    buf_append(w->out, ": ", 2);
}

static void jw_key_open(struct jw *w, const char *key, char c)
{
    jw_key(w, key);
    jw_open(w, c);
}

static void jw_u64(struct jw *w, const char *key, uint64_t v)
{
    jw_key(w, key);
    buf_appendf(w->out, "%" PRIu64, v);
}

static void jw_str(struct jw *w, const char *key, const char *s)
{
    jw_key(w, key);
    if (s)
        jw_string(w, s);
    else
        buf_append_str(w->out, "null");
}

static void jw_bool(struct jw *w, const char *key, bool b)
{
    jw_key(w, key);
    buf_append_str(w->out, b ? "true" : "false");
}

static void jw_seconds(struct jw *w, const char *key, uint64_t us)
{
    char num[32];
    format_us(num, sizeof num, us);
    jw_key(w, key);
    buf_append_str(w->out, num);
}

static void jw_ratio(struct jw *w, const char *key, double r)
{
    jw_key(w, key);
    buf_appendf(w->out, "%.6g", r);
}

static void jw_histogram(struct jw *w, const char *key, const uint64_t bucket[STATS_NBUCKETS],
                         uint64_t count, uint64_t sum_us)
{
    static const struct {
        const char *key;
        unsigned pct;
    } quantiles[] = {{"p50_seconds", 50}, {"p99_seconds", 99}};
    jw_key_open(w, key, '{');
    jw_u64(w, "count", count);
    jw_seconds(w, "sum_seconds", sum_us);
    for (size_t i = 0; i < sizeof quantiles / sizeof quantiles[0]; i++) {
        uint64_t us;
        if (quantile_us(bucket, quantiles[i].pct, &us))
            jw_seconds(w, quantiles[i].key, us);
        else {
            jw_key(w, quantiles[i].key);
            buf_append_str(w->out, "null");
        }
    }
    jw_close(w, '}');
}

static void json_totals(struct jw *w, const struct stats_snapshot *snap)
{
    struct stats_route_totals sum = {0};
    for (size_t i = 0; i < snap->nroutes; i++) {
#define STATS_FIELD(name, doc) sum.name += snap->routes[i].name;
        STATS_ROUTE_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    }

    jw_key_open(w, "connections", '{');
    jw_u64(w, "open", snap->connections_open);
    jw_u64(w, "accepted", snap->connections_accepted);
    jw_u64(w, "closed", snap->connections_closed);
    jw_u64(w, "refused", snap->connections_refused);
    jw_close(w, '}');

    /* total and bad count every request; the classes those of the routes */
    jw_key_open(w, "requests", '{');
    jw_u64(w, "total", snap->requests);
    jw_u64(w, "bad", snap->bad_requests);
    jw_u64(w, "status_1xx", sum.status_1xx);
    jw_u64(w, "status_2xx", sum.status_2xx);
    jw_u64(w, "status_3xx", sum.status_3xx);
    jw_u64(w, "status_4xx", sum.status_4xx);
    jw_u64(w, "status_5xx", sum.status_5xx);
    jw_close(w, '}');

    jw_key_open(w, "cache", '{');
    jw_u64(w, "hits", sum.hits);
    jw_u64(w, "stale", sum.stale);
    jw_u64(w, "misses", sum.misses);
    jw_u64(w, "passes", sum.passes);
    jw_ratio(w, "hit_ratio", hit_ratio(sum.hits, sum.stale, sum.misses));
    jw_u64(w, "coalesced_waits", snap->coalesced_waits);
    jw_u64(w, "revalidations", snap->revalidations);
    jw_close(w, '}');

    jw_key_open(w, "esi", '{');
    jw_u64(w, "pages", snap->esi_pages);
    jw_u64(w, "includes", snap->esi_includes);
    jw_u64(w, "fragment_hits", snap->esi_fragment_hits);
    jw_u64(w, "alt", snap->esi_alt);
    jw_u64(w, "errors", snap->esi_errors);
    jw_close(w, '}');

    jw_key_open(w, "bytes", '{');
    jw_u64(w, "in", sum.bytes_in);
    jw_u64(w, "out", sum.bytes_out);
    jw_close(w, '}');
}

static void json_routes(struct jw *w, const struct stats_snapshot *snap)
{
    jw_key_open(w, "routes", '[');
    for (size_t i = 0; i < snap->nroutes; i++) {
        const struct stats_route_totals *r = &snap->routes[i];
        jw_item(w);
        jw_open(w, '{');
        jw_str(w, "route", r->name ? r->name : "");
#define STATS_FIELD(name, doc) jw_u64(w, #name, r->name);
        STATS_ROUTE_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
        jw_ratio(w, "hit_ratio", hit_ratio(r->hits, r->stale, r->misses));
        jw_histogram(w, "request_time", r->request_time_bucket, r->request_time_count,
                     r->request_time_sum_us);
        jw_close(w, '}');
    }
    jw_close(w, ']');

    jw_key_open(w, "backends", '[');
    for (size_t i = 0; i < snap->nbackends; i++) {
        const struct stats_backend_totals *b = &snap->backends[i];
        jw_item(w);
        jw_open(w, '{');
        jw_str(w, "backend", b->name ? b->name : "");
#define STATS_FIELD(name, doc) jw_u64(w, #name, b->name);
        STATS_BACKEND_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
        jw_histogram(w, "upstream_time", b->upstream_time_bucket, b->upstream_time_count,
                     b->upstream_time_sum_us);
        jw_close(w, '}');
    }
    jw_close(w, ']');
}

static void json_stores(struct jw *w, const struct stats_snapshot *snap)
{
    const struct cache_store_stats *m = &snap->memory;
    jw_key_open(w, "memory_store", '{');
    jw_u64(w, "objects", m->objects);
    jw_u64(w, "bytes", m->bytes);
    jw_u64(w, "capacity", m->capacity);
    jw_u64(w, "inserts", m->inserts);
    jw_u64(w, "replaced", m->replaced);
    jw_u64(w, "evictions", m->evictions);
    jw_u64(w, "variant_evictions", m->variant_evictions);
    jw_u64(w, "refused", m->refused);
    jw_u64(w, "removed", m->removed);
    jw_u64(w, "hits", m->hits);
    jw_u64(w, "misses", m->misses);
    jw_close(w, '}');

    jw_key_open(w, "memcached", '[');
    for (size_t i = 0; i < snap->nmemcached; i++) {
        const struct mcstore_server_stats *s = &snap->memcached[i];
        jw_item(w);
        jw_open(w, '{');
        jw_str(w, "server", s->name);
        jw_bool(w, "up", s->up);
#define MCSTORE_STATS_FIELD(name, doc) jw_u64(w, #name, s->name);
        MCSTORE_SERVER_COUNTERS(MCSTORE_STATS_FIELD)
#undef MCSTORE_STATS_FIELD
        jw_close(w, '}');
    }
    jw_close(w, ']');
}

static void json_compression(struct jw *w, const struct encode_stats *c)
{
    jw_key_open(w, "compression", '{');
    jw_key_open(w, "streamed", '{');
    for (int i = 0; i < CODING_COUNT; i++)
        if (i != CODING_IDENTITY)
            jw_u64(w, coding_name(i), c->streamed[i]);
    jw_close(w, '}');
    jw_u64(w, "inflated", c->inflated);
    jw_key_open(w, "variants", '{');
    for (int i = 0; i < CODING_COUNT; i++)
        jw_u64(w, coding_name(i), c->variants[i]);
    jw_close(w, '}');
    jw_u64(w, "variant_failures", c->variant_failures);
    jw_u64(w, "bytes_in", c->bytes_in);
    jw_u64(w, "bytes_out", c->bytes_out);
    jw_close(w, '}');
}

static void json_purge(struct jw *w, const struct stats_purge_totals *p)
{
    jw_key_open(w, "purge", '{');
    jw_u64(w, "purges", p->purges);
    jw_u64(w, "purged", p->purged);
    jw_u64(w, "bans_active", p->bans_active);
    jw_u64(w, "bans_added", p->bans_added);
    jw_u64(w, "log_version", p->log_version);
    jw_u64(w, "log_resets", p->log_resets);
    jw_close(w, '}');
}

void stats_write_json(const struct stats_snapshot *snap, struct buf *out)
{
    struct jw w = {.out = out, .depth = 0, .first = true};
    jw_open(&w, '{');
    jw_str(&w, "version", snap->version);
    jw_seconds(&w, "uptime_seconds", uptime_us(snap->uptime_s));
    jw_bool(&w, "draining", snap->draining);
    json_totals(&w, snap);
    json_routes(&w, snap);
    json_stores(&w, snap);
    json_compression(&w, &snap->compression);
    json_purge(&w, &snap->purge);
    jw_close(&w, '}');
    buf_append(out, "\n", 1);
}

/* ---- Prometheus -------------------------------------------------------------------- */

/* One label of a series; the value is escaped when written. */
struct label {
    const char *name;
    const char *value;
};

/* "# HELP" and "# TYPE" of a family: once, before its samples. */
static void prom_family(struct buf *out, const char *name, const char *type, const char *help)
{
    buf_append_str(out, "# HELP ");
    buf_append_str(out, name);
    buf_append(out, " ", 1);
    append_escaped(out, help, false, false);
    buf_append_str(out, "\n# TYPE ");
    buf_append_str(out, name);
    buf_append(out, " ", 1);
    buf_append_str(out, type);
    buf_append(out, "\n", 1);
}

/* name{labels} followed by the space before the value. */
static void prom_series(struct buf *out, const char *name, const char *suffix,
                        const struct label *labels, size_t n)
{
    buf_append_str(out, name);
    buf_append_str(out, suffix);
    if (n > 0) {
        buf_append(out, "{", 1);
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                buf_append(out, ",", 1);
            buf_append_str(out, labels[i].name);
            buf_append(out, "=\"", 2);
            append_escaped(out, labels[i].value, false, true);
            buf_append(out, "\"", 1);
        }
        buf_append(out, "}", 1);
    }
    buf_append(out, " ", 1);
}

static void prom_u64(struct buf *out, const char *name, const struct label *labels, size_t n,
                     uint64_t v)
{
    prom_series(out, name, "", labels, n);
    buf_appendf(out, "%" PRIu64 "\n", v);
}

/* An unlabelled family of one sample. */
static void prom_single(struct buf *out, const char *name, const char *type, const char *help,
                        uint64_t v)
{
    prom_family(out, name, type, help);
    prom_u64(out, name, NULL, 0, v);
}

/* The samples of one histogram series: cumulative buckets, _sum, _count. */
static void prom_histogram(struct buf *out, const char *name, struct label label,
                           const uint64_t bucket[STATS_NBUCKETS], uint64_t count, uint64_t sum_us)
{
    struct label labels[2] = {label, {"le", NULL}};
    char num[32];
    uint64_t cumulative = 0;
    for (size_t i = 0; i < STATS_NBUCKETS; i++) {
        cumulative += bucket[i];
        if (i < STATS_NBUCKETS - 1) {
            format_us(num, sizeof num, bounds_us[i]);
            labels[1].value = num;
        } else
            labels[1].value = "+Inf";
        prom_series(out, name, "_bucket", labels, 2);
        buf_appendf(out, "%" PRIu64 "\n", cumulative);
    }
    format_us(num, sizeof num, sum_us);
    prom_series(out, name, "_sum", labels, 1);
    buf_append_str(out, num);
    buf_append(out, "\n", 1);
    prom_series(out, name, "_count", labels, 1);
    buf_appendf(out, "%" PRIu64 "\n", count);
}

static void prom_process(struct buf *out, const struct stats_snapshot *snap)
{
    char num[32];
    if (snap->version) {
        struct label v = {"version", snap->version};
        prom_family(out, "tessera_build_info", "gauge", "the running version (always 1)");
        prom_u64(out, "tessera_build_info", &v, 1, 1);
    }
    prom_family(out, "tessera_uptime_seconds", "gauge", "seconds since start");
    format_us(num, sizeof num, uptime_us(snap->uptime_s));
    prom_series(out, "tessera_uptime_seconds", "", NULL, 0);
    buf_append_str(out, num);
    buf_append(out, "\n", 1);
    prom_single(out, "tessera_draining", "gauge", "1 while shutting down gracefully",
                snap->draining ? 1 : 0);
    prom_single(out, "tessera_connections_open", "gauge", "client connections open now",
                snap->connections_open);

    /* "requests" is renamed: tessera_requests_total is the routes' family */
    char name[96];
#define STATS_FIELD(field, doc)                                                                    \
    snprintf(name, sizeof name, "tessera_%s_total",                                                \
             strcmp(#field, "requests") == 0 ? "requests_answered" : #field);                      \
    prom_single(out, name, "counter", doc, snap->field);
    STATS_WORKER_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
}

static void prom_routes(struct buf *out, const struct stats_snapshot *snap)
{
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    static const char *const results[] = {"hit", "stale", "miss", "pass"};
    if (snap->nroutes == 0)
        return;

    prom_family(out, "tessera_requests_total", "counter", "requests answered, by route");
    for (size_t i = 0; i < snap->nroutes; i++) {
        struct label l = {"route", snap->routes[i].name};
        prom_u64(out, "tessera_requests_total", &l, 1, snap->routes[i].requests);
    }

    prom_family(out, "tessera_responses_total", "counter",
                "responses by route and status class (1xx: 101 only)");
    for (size_t i = 0; i < snap->nroutes; i++) {
        const struct stats_route_totals *r = &snap->routes[i];
        const uint64_t v[] = {r->status_1xx, r->status_2xx, r->status_3xx, r->status_4xx,
                              r->status_5xx};
        for (size_t k = 0; k < 5; k++) {
            struct label l[2] = {{"route", r->name}, {"class", classes[k]}};
            prom_u64(out, "tessera_responses_total", l, 2, v[k]);
        }
    }

    prom_family(out, "tessera_cache_results_total", "counter",
                "requests by route and cache result: hit (fresh), stale, miss (fetched), pass "
                "(not cacheable)");
    for (size_t i = 0; i < snap->nroutes; i++) {
        const struct stats_route_totals *r = &snap->routes[i];
        const uint64_t v[] = {r->hits, r->stale, r->misses, r->passes};
        for (size_t k = 0; k < 4; k++) {
            struct label l[2] = {{"route", r->name}, {"result", results[k]}};
            prom_u64(out, "tessera_cache_results_total", l, 2, v[k]);
        }
    }

    prom_family(out, "tessera_request_bytes_total", "counter",
                "request bytes received (heads and bodies), by route");
    for (size_t i = 0; i < snap->nroutes; i++) {
        struct label l = {"route", snap->routes[i].name};
        prom_u64(out, "tessera_request_bytes_total", &l, 1, snap->routes[i].bytes_in);
    }
    prom_family(out, "tessera_response_bytes_total", "counter",
                "response body bytes sent, by route");
    for (size_t i = 0; i < snap->nroutes; i++) {
        struct label l = {"route", snap->routes[i].name};
        prom_u64(out, "tessera_response_bytes_total", &l, 1, snap->routes[i].bytes_out);
    }

    prom_family(out, "tessera_request_duration_seconds", "histogram",
                "from the first byte of the request to the last byte of the response queued");
    for (size_t i = 0; i < snap->nroutes; i++) {
        const struct stats_route_totals *r = &snap->routes[i];
        prom_histogram(out, "tessera_request_duration_seconds", (struct label){"route", r->name},
                       r->request_time_bucket, r->request_time_count, r->request_time_sum_us);
    }
}

static void prom_backends(struct buf *out, const struct stats_snapshot *snap)
{
    if (snap->nbackends == 0)
        return;
#define STATS_FIELD(field, doc)                                                                    \
    prom_family(out, "tessera_upstream_" #field "_total", "counter", doc);                         \
    for (size_t i = 0; i < snap->nbackends; i++) {                                                 \
        struct label l = {"backend", snap->backends[i].name};                                      \
        prom_u64(out, "tessera_upstream_" #field "_total", &l, 1, snap->backends[i].field);        \
    }
    STATS_BACKEND_COUNTERS(STATS_FIELD)
#undef STATS_FIELD

    prom_family(out, "tessera_upstream_response_seconds", "histogram",
                "from the request sent upstream to the response head received");
    for (size_t i = 0; i < snap->nbackends; i++) {
        const struct stats_backend_totals *b = &snap->backends[i];
        prom_histogram(out, "tessera_upstream_response_seconds", (struct label){"backend", b->name},
                       b->upstream_time_bucket, b->upstream_time_count, b->upstream_time_sum_us);
    }
}

static void prom_memory(struct buf *out, const struct cache_store_stats *m)
{
    prom_single(out, "tessera_memory_store_objects", "gauge", "objects held in memory", m->objects);
    prom_single(out, "tessera_memory_store_bytes", "gauge",
                "bytes charged in memory: objects and bookkeeping", m->bytes);
    prom_single(out, "tessera_memory_store_capacity_bytes", "gauge",
                "bound on the memory store's bytes", m->capacity);
    prom_single(out, "tessera_memory_store_inserts_total", "counter", "objects stored in memory",
                m->inserts);
    prom_single(out, "tessera_memory_store_replaced_total", "counter",
                "variants replaced by an insert of the same keys", m->replaced);
    prom_single(out, "tessera_memory_store_evictions_total", "counter",
                "objects evicted to make room (LRU)", m->evictions);
    prom_single(out, "tessera_memory_store_variant_evictions_total", "counter",
                "oldest variants evicted by max_variants", m->variant_evictions);
    prom_single(out, "tessera_memory_store_refused_total", "counter",
                "inserts refused: larger than the store allows, or no memory", m->refused);
    prom_single(out, "tessera_memory_store_removed_total", "counter",
                "objects dropped by purges and removes", m->removed);
    prom_single(out, "tessera_memory_store_hits_total", "counter", "memory store lookups found",
                m->hits);
    prom_single(out, "tessera_memory_store_misses_total", "counter",
                "memory store lookups not found", m->misses);
}

static void prom_memcached(struct buf *out, const struct stats_snapshot *snap)
{
    if (snap->nmemcached == 0)
        return;
    prom_family(out, "tessera_memcached_up", "gauge",
                "1 when the memcached server answered last, 0 from a failure until the next "
                "answer");
    for (size_t i = 0; i < snap->nmemcached; i++) {
        struct label l = {"server", snap->memcached[i].name};
        prom_u64(out, "tessera_memcached_up", &l, 1, snap->memcached[i].up ? 1 : 0);
    }
#define MCSTORE_STATS_FIELD(field, doc)                                                            \
    prom_family(out, "tessera_memcached_" #field "_total", "counter", doc);                        \
    for (size_t i = 0; i < snap->nmemcached; i++) {                                                \
        struct label l = {"server", snap->memcached[i].name};                                      \
        prom_u64(out, "tessera_memcached_" #field "_total", &l, 1, snap->memcached[i].field);      \
    }
    MCSTORE_SERVER_COUNTERS(MCSTORE_STATS_FIELD)
#undef MCSTORE_STATS_FIELD
}

static void prom_compression(struct buf *out, const struct encode_stats *c)
{
    prom_family(out, "tessera_compressed_responses_total", "counter",
                "responses compressed while streaming, by coding");
    for (int i = 0; i < CODING_COUNT; i++) {
        if (i == CODING_IDENTITY)
            continue;
        struct label l = {"coding", coding_name(i)};
        prom_u64(out, "tessera_compressed_responses_total", &l, 1, c->streamed[i]);
    }
    prom_single(out, "tessera_inflated_responses_total", "counter",
                "responses inflated while streaming, for clients that do not take gzip",
                c->inflated);
    prom_family(out, "tessera_compressed_variants_total", "counter",
                "variants made from stored objects, by coding (identity: inflated)");
    for (int i = 0; i < CODING_COUNT; i++) {
        struct label l = {"coding", coding_name(i)};
        prom_u64(out, "tessera_compressed_variants_total", &l, 1, c->variants[i]);
    }
    prom_single(out, "tessera_compression_variant_failures_total", "counter",
                "variants that could not be made", c->variant_failures);
    prom_single(out, "tessera_compression_input_bytes_total", "counter",
                "body bytes fed to encoders (streaming and variants)", c->bytes_in);
    prom_single(out, "tessera_compression_output_bytes_total", "counter",
                "bytes the encoders produced", c->bytes_out);
}

static void prom_purge(struct buf *out, const struct stats_purge_totals *p)
{
    prom_single(out, "tessera_purges_total", "counter",
                "purge requests applied on this node (local and from the log)", p->purges);
    prom_single(out, "tessera_purged_objects_total", "counter",
                "objects removed from memory by purges and sweeps", p->purged);
    prom_single(out, "tessera_bans_active", "gauge", "bans in the list now", p->bans_active);
    prom_single(out, "tessera_bans_added_total", "counter", "bans added", p->bans_added);
    prom_single(out, "tessera_purge_log_version", "gauge",
                "the shared purge log's version this node has applied", p->log_version);
    prom_single(out, "tessera_purge_log_resets_total", "counter",
                "times the purge log was lost and the memory tier dropped", p->log_resets);
}

void stats_write_prometheus(const struct stats_snapshot *snap, struct buf *out)
{
    prom_process(out, snap);
    prom_routes(out, snap);
    prom_backends(out, snap);
    prom_memory(out, &snap->memory);
    prom_memcached(out, snap);
    prom_compression(out, &snap->compression);
    prom_purge(out, &snap->purge);
}
