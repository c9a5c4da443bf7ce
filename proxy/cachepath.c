/*
 * proxy/cachepath.c: the cache path of a request (see cachepath.h).
 *
 * Here the proxy's parsed heads become cache/'s facts: Cache-Control and
 * its targeted variants, Expires, Date, Age, Vary, validators.  The rules
 * themselves (storability, freshness, age, whether a stored response may
 * answer) live in cache/freshness.c; the keys in cache/key.c.
 *
 * Safety first: a request with a body, or with Authorization or Cookie on a
 * route that did not say those may share the cache, never looks up or
 * stores (DESIGN.md, safety rules); Set-Cookie is never stored.
 *
 * Threading: everything runs on the request's worker; the store and the
 * coalescing table do their own locking.
 */
#include "proxy/cachepath_priv.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "cache/ban.h"
#include "cache/cachecontrol.h"
#include "cache/conditional.h"
#include "cache/httpdate.h"
#include "cache/key.h"
#include "cache/store.h"
#include "proxy/forward.h"
#include "proxy/log.h"
#include "proxy/router.h"

/* How long a key whose response could not be shared skips coalescing, so
 * the next burst does not queue behind a fill that will not be shared
 * either (Varnish's hit-for-miss). */
#define HIT_FOR_MISS_MS 10000

#define VARY_KEY_MAX 4096 /* also assumed by ENCODE_SECONDARY_MAX (proxy/encode.h) */

static uint64_t key_seed;

void cache_req_seed_init(void)
{
    if (getrandom(&key_seed, sizeof key_seed, 0) != sizeof key_seed)
        key_seed = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull;
}

void cache_req_init(struct cache_req *cr)
{
    memset(cr, 0, sizeof *cr);
}

void cache_req_reset(struct cache_req *cr)
{
    cachetier_unlock(cr);
    cachetier_cancel(cr);
    cachetier_free_result(cr);
    if (cr->waiting)
        coalesce_cancel(&cr->waiter);
    if (cr->builder || cr->filler)
        cache_req_response_failed(cr, 0);
    cache_object_release(&cr->obj);
    cache_object_release(&cr->stale);
    buf_release(&cr->fill_head);
    esi_fill_free(&cr->esi_fill);
    free(cr->key);
    struct coalesce_waiter waiter = cr->waiter;
    void (*on_remote)(struct cache_req *) = cr->on_remote;
    cache_req_init(cr);
    cr->waiter.worker = waiter.worker;
    cr->waiter.wake = waiter.wake;
    cr->on_remote = on_remote;
}

/* The real clock, not the loop's cached one: purges compare an object's
 * stored_at with the time they were made (cache/ban.h). */
static int64_t wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- request fields -------------------------------------------------------- */

/* The request's fields as cache/ wants them.  Returns a malloc'd array the
 * caller frees, or NULL when empty or out of memory (*n set to 0). */
/* The Accept-Encoding the upstream sees when the route compresses: its own
 * (upstream_gzip) or none; NULL when the client's goes as it is. */
static const char *upstream_accept_encoding(const struct config_compress *cc)
{
    if (!cc || !cc->enabled)
        return NULL;
    return cc->upstream_gzip ? "gzip" : "";
}

/* The request's fields as the key module wants them.  Vary names request
 * fields as the upstream received them: an Accept-Encoding the proxy
 * replaced counts with the value it sent. */
static struct cache_field *request_fields(const struct config_compress *cc, const char *base,
                                          const struct http_head *h, size_t *n)
{
    *n = 0;
    const char *ae = upstream_accept_encoding(cc);
    size_t max = h->nfields + (ae ? 1 : 0);
    if (max == 0)
        return NULL;
    struct cache_field *f = malloc(max * sizeof *f);
    if (!f)
        return NULL;
    bool ae_seen = false;
    for (unsigned i = 0; i < h->nfields; i++) {
        f[i].name = base + h->fields[i].name.off;
        f[i].name_len = h->fields[i].name.len;
        f[i].value = base + h->fields[i].value.off;
        f[i].value_len = h->fields[i].value.len;
        if (ae && http_span_is(base, h->fields[i].name, "accept-encoding")) {
            f[i].value = ae;
            f[i].value_len = strlen(ae);
            ae_seen = true;
        }
    }
    *n = h->nfields;
    if (ae && !ae_seen) /* the upstream gets it whether the client sent one or not */
        f[(*n)++] = (struct cache_field){"accept-encoding", 15, ae, strlen(ae)};
    return f;
}

static void parse_all_cc(struct cache_control *cc, const char *base, const struct http_head *h,
                         const char *name, bool *present)
{
    memset(cc, 0, sizeof *cc);
    *present = false;
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        if (!http_span_is(base, f->name, name))
            continue;
        *present = true;
        cache_control_parse(cc, base + f->value.off, f->value.len);
    }
}

static void request_facts(struct cache_request_facts *rf, const char *base,
                          const struct http_head *h)
{
    bool present;
    memset(rf, 0, sizeof *rf);
    rf->method_get = http_span_is(base, h->method, "GET");
    rf->method_head = http_span_is(base, h->method, "HEAD");
    rf->has_authorization = http_head_find(base, h, "authorization") != NULL;
    parse_all_cc(&rf->cc, base, h, "cache-control", &present);
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        if (http_span_is(base, f->name, "pragma") &&
            cache_pragma_no_cache(base + f->value.off, f->value.len))
            rf->pragma_no_cache = true;
    }
}

/* ---- response facts -------------------------------------------------------- */

/* A date field: absent, valid, or present but unusable (or given twice with
 * different values). */
static bool date_field(const char *base, const struct http_head *h, const char *name,
                       int64_t *out_ms, bool *invalid)
{
    bool found = false;
    *invalid = false;
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        if (!http_span_is(base, f->name, name))
            continue;
        int64_t s;
        if (!http_date_parse(base + f->value.off, f->value.len, &s)) {
            *invalid = true;
        } else if (found && s * 1000 != *out_ms) {
            *invalid = true;
        } else {
            *out_ms = s * 1000;
        }
        found = true;
    }
    return found;
}

static void response_facts(struct cache_response_facts *rf, const char *base,
                           const struct http_head *h, int64_t response_time_ms)
{
    memset(rf, 0, sizeof *rf);
    rf->status = h->status;
    rf->response_time_ms = response_time_ms;
    struct cache_control cc, cdn, surrogate;
    bool has_cc, has_cdn, has_surrogate, invalid;
    parse_all_cc(&cc, base, h, "cache-control", &has_cc);
    parse_all_cc(&cdn, base, h, "cdn-cache-control", &has_cdn);
    parse_all_cc(&surrogate, base, h, "surrogate-control", &has_surrogate);
    rf->cc = *cache_pick_targeted(&cdn, has_cdn, &surrogate, has_surrogate, &cc, &rf->targeted);
    rf->has_expires = date_field(base, h, "expires", &rf->expires_ms, &rf->expires_invalid);
    rf->has_date = date_field(base, h, "date", &rf->date_ms, &invalid) && !invalid;
    rf->has_last_modified =
        date_field(base, h, "last-modified", &rf->last_modified_ms, &invalid) && !invalid;
    const struct http_field *age = http_head_find(base, h, "age");
    int64_t age_s;
    if (age && http_delta_seconds_parse(base + age->value.off, age->value.len, &age_s)) {
        rf->has_age = true;
        rf->age_ms = age_s * 1000;
    }
    rf->has_set_cookie = http_head_find(base, h, "set-cookie") != NULL;
    rf->has_validator = http_head_find(base, h, "etag") || rf->has_last_modified;
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        if (http_span_is(base, f->name, "vary") &&
            cache_vary_is_star(base + f->value.off, f->value.len))
            rf->vary_star = true;
    }
}

/* All Vary lines joined by ", " into out. */
static void join_fields(struct buf *out, const char *base, const struct http_head *h,
                        const char *name)
{
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        if (!http_span_is(base, f->name, name) || f->value.len == 0)
            continue;
        if (out->len > 0)
            buf_append(out, ", ", 2);
        buf_append(out, base + f->value.off, f->value.len);
    }
}

/* ---- lookup ----------------------------------------------------------------- */

struct select_ctx {
    const struct cache_field *fields;
    size_t nfields;
    bool seen;
};

/* Under the store's lock: does this variant's Vary key match the request? */
static bool select_variant(void *ctx, const struct cache_object *variant)
{
    struct select_ctx *sc = ctx;
    sc->seen = true;
    char key[VARY_KEY_MAX];
    size_t n =
        cache_vary_key(variant->vary, variant->vary_len, sc->fields, sc->nfields, key, sizeof key);
    return n < sizeof key && n == variant->secondary_len &&
           memcmp(key, variant->secondary_key, n) == 0;
}

void cachepath_lookup_done(void *ctx, struct cache_object *obj)
{
    ((struct lookup_done *)ctx)->obj = obj;
}

static bool request_has_cookie(const struct cache_request_view *rv)
{
    return http_head_find(rv->base, rv->head, "cookie") != NULL;
}

static bool build_key(struct cache_req *cr, const struct cache_request_view *rv,
                      const struct cache_field *fields, size_t nfields)
{
    struct cache_key_input in = {
        .scheme = "http",
        .scheme_len = 4,
        .host = rv->host,
        .host_len = rv->host_len,
        .target = rv->target,
        .target_len = rv->target_len,
        .fields = fields,
        .nfields = nfields,
    };
    size_t n = cache_key_build(&in, cr->policy, NULL, 0);
    if (n == 0)
        return false;
    cr->key = malloc(n + 1);
    if (!cr->key)
        return false;
    cache_key_build(&in, cr->policy, cr->key, n + 1);
    cr->key_len = n;
    cr->hash = cache_key_hash(cr->key, n, key_seed);
    return true;
}

static enum cache_lookup_result pass(struct cache_req *cr, const char *detail)
{
    cr->outcome = CACHE_OUT_PASS;
    cr->fwd = "bypass";
    cr->detail = detail;
    cr->may_store = false;
    return CACHE_LOOKUP_PASS;
}

static bool method_is_unsafe(const char *base, struct http_span m)
{
    static const char *const safe[] = {"GET", "HEAD", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof safe / sizeof safe[0]; i++)
        if (m.len == strlen(safe[i]) && memcmp(base + m.off, safe[i], m.len) == 0)
            return false;
    return true;
}

/* Past the freshness and every window it may still serve in (grace,
 * stale-while-revalidate, stale-if-error): of no use any more. */
static bool beyond_grace(const struct cache_object_facts *of, const struct config_cache_policy *p)
{
    if (p->grace_ms == 0)
        return false; /* kept (until evicted) for a cheap revalidation */
    int64_t window = (int64_t)p->grace_ms;
    if (of->stale_while_revalidate_ms > window)
        window = of->stale_while_revalidate_ms;
    if (of->stale_if_error_ms > window)
        window = of->stale_if_error_ms;
    return of->current_age_ms > of->lifetime_ms + window;
}

/* A stored object that may not answer as it is (stale, or the client wants
 * a fresher one): serve it stale while revalidating in the background when
 * its window allows, else keep it to revalidate with the origin (it has
 * validators) and to fall back on if the origin fails (stale-if-error). */
static enum cache_lookup_result stale_lookup(struct cache_req *cr, struct worker *w,
                                             struct cache_object *obj,
                                             const struct cache_object_facts *of)
{
    bool fresh = of->current_age_ms < of->lifetime_ms && !of->no_cache;
    cr->fwd = fresh ? "request" : "stale";
    if (!fresh && beyond_grace(of, cr->policy)) {
        cr->fwd = "uri-miss"; /* no longer kept: as if never stored */
        cachetier_remove(cr->policy, w, cr->key, cr->key_len, cr->hash);
        cache_object_release(&obj);
        return CACHE_LOOKUP_MISS;
    }
    if (!fresh && cr->facts.method_get && cache_within_stale_while_revalidate(of)) {
        cache_object_release(&cr->obj);
        cr->obj = obj;
        cr->age_ms = of->current_age_ms;
        cr->outcome = CACHE_OUT_STALE;
        cr->fwd = NULL;
        cr->detail = "stale-while-revalidate";
        cr->swr = true;
        return CACHE_LOOKUP_HIT;
    }
    cache_object_release(&cr->stale); /* a second lookup, after waiting */
    cr->stale = obj;
    cr->stale_facts = *of;
    cr->revalidating = cr->facts.method_get && (obj->etag_len > 0 || obj->last_modified_ms > 0);
    return CACHE_LOOKUP_MISS;
}

static enum cache_lookup_result judge_object(struct cache_req *cr, struct worker *w,
                                             struct cache_object *found, bool variants_seen,
                                             int64_t now_ms);
static void fill_done(struct cache_req *cr, enum coalesce_outcome outcome, int64_t now_ms);

/* Look the key up; fills cr->obj on a usable hit. */
static enum cache_lookup_result store_lookup(struct cache_req *cr, struct worker *w,
                                             const struct cache_request_view *rv, int64_t now_ms)
{
    size_t nfields;
    struct cache_field *fields = request_fields(cr->compress, rv->base, rv->head, &nfields);
    struct select_ctx sc = {fields, nfields, false};
    struct lookup_done done = {NULL};
    if (cachetier_memory(cr->policy))
        cache_store_lookup(w->store, cr->key, cr->key_len, cr->hash, select_variant, &sc,
                           cachepath_lookup_done, &done);
    free(fields);
    return judge_object(cr, w, done.obj, sc.seen, now_ms);
}

/* A stored object found (memory or memcached) or not: may it answer? */
static enum cache_lookup_result judge_object(struct cache_req *cr, struct worker *w,
                                             struct cache_object *found, bool variants_seen,
                                             int64_t now_ms)
{
    enum ban_verdict ban = found && w->bans ? ban_check(w->bans, found) : BAN_PASS;
    if (ban == BAN_GONE) { /* purged: as if it had never been stored */
        if (cachetier_memory(cr->policy))
            cache_store_remove(w->store, cr->key, cr->key_len, cr->hash);
        cache_object_release(&found);
        cr->detail = "purged";
    }
    if (found && found->esi_template && !cr->esi) {
        /* Stored while the route processed ESI: never sent as it is. */
        cache_object_release(&found);
        cr->detail = "esi-off";
    }
    cr->vary_seen = variants_seen && !found;
    if (!found) {
        cr->fwd = cr->vary_seen ? "vary-miss" : "uri-miss";
        return CACHE_LOOKUP_MISS;
    }
    struct cache_object *obj = found;
    struct cache_object_facts of = {
        .lifetime_ms = obj->lifetime,
        .current_age_ms = cache_current_age(obj->corrected_initial_age, obj->response_time, now_ms),
        .stale_while_revalidate_ms = obj->stale_while_revalidate,
        .stale_if_error_ms = obj->stale_if_error,
        .no_cache = obj->no_cache,
        .must_revalidate = obj->must_revalidate,
    };
    if (ban == BAN_STALE && of.current_age_ms < of.lifetime_ms)
        of.current_age_ms = of.lifetime_ms; /* soft-purged: stale from now on */
    enum cache_serve serve = cache_serve_decision(&of, &cr->facts, cr->policy->client_cc);
    if (serve == CACHE_SERVE_REVALIDATE)
        return stale_lookup(cr, w, obj, &of);
    cache_object_release(&cr->obj);
    cr->obj = obj;
    cr->age_ms = of.current_age_ms;
    cr->outcome = CACHE_OUT_HIT;
    cr->fwd = NULL;
    return CACHE_LOOKUP_HIT;
}

/* A miss: fill it ourselves, wait for the request that does, or bypass. */
static enum cache_lookup_result miss(struct cache_req *cr, struct worker *w, bool coalesce,
                                     int64_t now_ms)
{
    cr->outcome = CACHE_OUT_MISS;
    cr->fetch_full = cr->facts.method_get && cr->may_store;
    bool only_if_cached =
        (cr->facts.cc.flags & CC_ONLY_IF_CACHED) && cr->policy->client_cc != CLIENT_CC_IGNORE;
    if (only_if_cached)
        return CACHE_LOOKUP_ONLY_IF_CACHED;
    /* A HEAD miss is forwarded as HEAD: its response has no body to store. */
    if (!cr->facts.method_get || !cr->may_store)
        return CACHE_LOOKUP_MISS;
    if (!coalesce || !cr->policy->coalesce) {
        if (cachetier_memcached(cr->policy, w) && cachetier_get(cr, w, "", 0, now_ms))
            return CACHE_LOOKUP_REMOTE;
        return CACHE_LOOKUP_MISS;
    }
    switch (coalesce_join(cr->key, cr->key_len, cr->hash, &cr->waiter, now_ms)) {
    case COALESCE_FILLER:
        cr->filler = true;
        /* One memcached get per key and node: the filler asks, the
         * waiters wait for it like for an upstream fetch. */
        if (cachetier_memcached(cr->policy, w) && cachetier_get(cr, w, "", 0, now_ms))
            return CACHE_LOOKUP_REMOTE;
        return CACHE_LOOKUP_MISS;
    case COALESCE_WAITER:
        cr->waiting = true;
        cr->wait_until_ms = now_ms + (int64_t)cr->policy->coalesce_timeout_ms;
        return CACHE_LOOKUP_WAIT;
    case COALESCE_BYPASS:
        break;
    }
    return CACHE_LOOKUP_MISS;
}

enum cache_lookup_result cache_req_lookup(struct cache_req *cr, struct worker *w,
                                          const struct config_route *route,
                                          const struct cache_request_view *rv, int64_t now_ms)
{
    cr->policy = &route->cache;
    cr->compress = &route->compress;
    if (route->esi.mode != ESI_OFF && (http_span_is(rv->base, rv->head->method, "GET") ||
                                       http_span_is(rv->base, rv->head->method, "HEAD"))) {
        cr->esi = &route->esi;
        cr->esi_max_body = route->cache.max_object_size;
    }
    cr->request_time_ms = now_ms;
    cr->request_wall_ms = wall_clock_ms();
    cr->bans = w->bans;
    request_facts(&cr->facts, rv->base, rv->head);
    if (!route->cache.enabled)
        return pass(cr, NULL);
    if (method_is_unsafe(rv->base, rv->head->method)) {
        /* RFC 9111 4.4: a non-error response invalidates the URI. */
        cr->invalidate = true;
        return pass(cr, "method");
    }
    bool get_ok = cr->facts.method_get && (route->cache.methods & CACHE_METHOD_GET);
    bool head_ok = cr->facts.method_head && (route->cache.methods & CACHE_METHOD_HEAD);
    if (!get_ok && !head_ok)
        return pass(cr, "method");
    if (rv->has_body)
        return pass(cr, "request-body");
    bool cookies_keyed = route->cache.nkey_cookies > 0;
    if (request_has_cookie(rv) && !route->cache.cache_cookies && !cookies_keyed)
        return pass(cr, "cookie");
    size_t nfields;
    struct cache_field *fields = request_fields(cr->compress, rv->base, rv->head, &nfields);
    bool keyed = build_key(cr, rv, fields, nfields);
    free(fields);
    if (!keyed)
        return pass(cr, "key");
    cr->may_store =
        !((cr->facts.cc.flags & CC_NO_STORE) && route->cache.client_cc != CLIENT_CC_IGNORE);
    if (cr->facts.has_authorization && !route->cache.cache_authorized) {
        /* Never answered from the cache (DESIGN.md safety rules), but a
         * response that says it may be shared (public, s-maxage,
         * must-revalidate: RFC 9111 3.5) is stored for everyone else. */
        bool may_store = cr->may_store;
        pass(cr, "authorization");
        cr->store_on_pass = may_store;
        return CACHE_LOOKUP_PASS;
    }
    enum cache_lookup_result r = store_lookup(cr, w, rv, now_ms);
    if (r == CACHE_LOOKUP_HIT)
        return r;
    return miss(cr, w, true, now_ms);
}

enum cache_lookup_result cache_req_after_wait(struct cache_req *cr, struct worker *w,
                                              const struct cache_request_view *rv,
                                              enum coalesce_outcome outcome, bool timed_out,
                                              int64_t now_ms)
{
    if (cr->waiting) {
        coalesce_cancel(&cr->waiter);
        cr->waiting = false;
    }
    if (timed_out || outcome == COALESCE_NOT_STORED) {
        cr->outcome = CACHE_OUT_MISS;
        cr->detail = timed_out ? "coalesce-timeout" : NULL;
        return CACHE_LOOKUP_MISS;
    }
    if (outcome == COALESCE_STORED && !cachetier_memory(cr->policy) &&
        cachetier_memcached(cr->policy, w) && cachetier_get(cr, w, "", 0, now_ms)) {
        cr->coalesced = true; /* the filler stored it in memcached only */
        return CACHE_LOOKUP_REMOTE;
    }
    enum cache_lookup_result r = store_lookup(cr, w, rv, now_ms);
    if (r == CACHE_LOOKUP_HIT) {
        cr->coalesced = true;
        return r;
    }
    /* Stored but not for us (another Vary variant): go alone.  Failed:
     * coalesce again, one of the waiters becomes the filler. */
    return miss(cr, w, outcome == COALESCE_FAILED, now_ms);
}

/* The secondary key of this request for a Vary value. */
static size_t request_vary_key(const struct cache_req *cr, const struct cache_request_view *rv,
                               const char *vary, size_t len, char *out, size_t cap)
{
    size_t nfields;
    struct cache_field *fields = request_fields(cr->compress, rv->base, rv->head, &nfields);
    size_t n = cache_vary_key(vary, len, fields, nfields, out, cap);
    free(fields);
    return n;
}

enum cache_lookup_result cache_req_remote_result(struct cache_req *cr, struct worker *w,
                                                 const struct cache_request_view *rv,
                                                 bool timed_out, int64_t now_ms)
{
    struct mcstore_get_result *res = cr->remote_res;
    cr->remote_res = NULL;
    bool polling_due = timed_out && cr->polling && !cr->mc;
    cachetier_cancel(cr);
    if (cr->variant_asked)
        return cachevariant_remote_result(cr, w, res, now_ms);
    enum cache_lookup_result r = CACHE_LOOKUP_MISS;
    if (cr->cluster == CLUSTER_ACQUIRED) {
        cr->cluster = CLUSTER_NONE;
        cr->cluster_store = w->mcstore; /* ours: fetch, then unlock */
        return CACHE_LOOKUP_MISS;
    }
    if (cr->cluster == CLUSTER_BUSY) {
        /* Another node fetches it: poll memcached for its object (and, each
         * time it is still not there, for the lock: a holder that stored
         * nothing lets it go, and then this node fetches). */
        cr->cluster = CLUSTER_NONE;
        if (cr->cluster_until_ms == 0) {
            cr->cluster_until_ms = now_ms + (int64_t)cr->policy->coalesce_timeout_ms;
            cr->poll_gap_ms = CLUSTER_POLL_FIRST_MS;
        }
        cr->detail = "cluster-coalesced";
        return cachetier_poll_later(cr, now_ms);
    }
    if (polling_due) {
        cr->polling = false;
        if (now_ms < cr->cluster_until_ms && cachetier_get(cr, w, "", 0, now_ms)) {
            cr->polling = true;
            return CACHE_LOOKUP_REMOTE;
        }
        cr->detail = "cluster-timeout";
        return CACHE_LOOKUP_MISS;
    }
    if (timed_out || !res) {
        log_debug("memcached lookup of %.*s: %s", (int)cr->key_len, cr->key,
                  timed_out ? "no answer in time" : "out of memory");
    } else if (res->kind == MC_VARY && !cr->vary_asked) {
        cr->vary_seen = true;
        char secondary[VARY_KEY_MAX];
        size_t n = request_vary_key(cr, rv, res->vary, res->vary_len, secondary, sizeof secondary);
        cr->vary_asked = true;
        if (n < sizeof secondary && cachetier_get(cr, w, secondary, n, now_ms))
            r = CACHE_LOOKUP_REMOTE;
    } else if (res->kind == MC_HIT) {
        struct cache_object *obj = res->obj;
        res->obj = NULL;
        /* Promote to memory (RFC-wise it is the same stored response). */
        if (cachetier_memory(cr->policy))
            cache_store_insert(w->store, obj, cr->policy->max_variants);
        r = judge_object(cr, w, obj, false, now_ms);
        if (r == CACHE_LOOKUP_HIT) {
            if (!cr->detail)
                cr->detail = "memcached";
            /* The waiters find it now (in memory, or ask memcached). */
            fill_done(cr, COALESCE_STORED, now_ms);
        }
    }
    bool absent = res && (res->kind == MC_MISS || res->kind == MC_ERROR);
    if (res) {
        cachetier_result_release(res);
        free(res);
    }
    bool was_polling = cr->polling;
    cr->polling = false;
    if (r == CACHE_LOOKUP_MISS && absent && cr->filler && cr->policy->coalesce_cluster &&
        cachetier_memcached(cr->policy, w) && !cr->stale &&
        (!was_polling || now_ms < cr->cluster_until_ms) && cachetier_lock(cr, w, now_ms))
        r = CACHE_LOOKUP_REMOTE;
    if (r == CACHE_LOOKUP_MISS) {
        cr->outcome = CACHE_OUT_MISS;
        if (cr->vary_seen && !cr->stale)
            cr->fwd = "vary-miss";
    }
    return r;
}

/* ---- response fields ----------------------------------------------------------- */

static void append_cache_status(const struct cache_req *cr, struct buf *out, int fwd_status)
{
    buf_append_str(out, "Cache-Status: tessera");
    bool hit = (cr->outcome == CACHE_OUT_HIT || cr->outcome == CACHE_OUT_STALE) && !cr->fwd;
    if (hit) {
        int64_t ttl = cr->obj ? (cr->obj->lifetime - cr->age_ms) / 1000 : 0;
        buf_appendf(out, "; hit; ttl=%" PRId64, ttl);
        if (cr->coalesced)
            buf_append_str(out, "; detail=coalesced");
        else if (cr->detail)
            buf_appendf(out, "; detail=%s", cr->detail);
    } else {
        buf_appendf(out, "; fwd=%s", cr->fwd ? cr->fwd : "uri-miss");
        if (cr->fwd_status > 0)
            fwd_status = cr->fwd_status;
        if (fwd_status > 0)
            buf_appendf(out, "; fwd-status=%d", fwd_status);
        if (cr->stored)
            buf_append_str(out, "; stored");
        if (cr->detail)
            buf_appendf(out, "; detail=%s", cr->detail);
    }
    buf_append(out, "\r\n", 2);
}

static void append_x_cache(const struct config_cache_policy *policy, enum cache_outcome outcome,
                           struct buf *out)
{
    static const char *const names[] = {"PASS", "HIT", "MISS", "STALE"};
    if (policy && policy->status_header)
        buf_appendf(out, "%s: %s\r\n", policy->status_header, names[outcome]);
}

void cache_req_pass_fields(const struct cache_req *cr, const struct config_route *route,
                           struct buf *extra)
{
    append_x_cache(&route->cache, CACHE_OUT_PASS, extra);
    (void)cr;
}

void cache_req_status_fields(const struct cache_req *cr, struct buf *out)
{
    buf_append_str(out, "Via: 1.1 " VIA_NAME "\r\n");
    append_cache_status(cr, out, 0);
    append_x_cache(cr->policy, cr->outcome, out);
}

void cache_req_hit_fields(void *ctx, struct buf *out)
{
    const struct cache_req *cr = ctx;
    buf_appendf(out, "Age: %" PRId64 "\r\n", cache_age_header_seconds(cr->age_ms));
    cache_req_status_fields(cr, out);
    if (cr->vary_ae)
        buf_append_str(out, "Vary: Accept-Encoding\r\n");
}

static bool is_conditional_or_range(const char *base, struct http_span name)
{
    static const char *const names[] = {"if-match",          "if-none-match",
                                        "if-modified-since", "if-unmodified-since",
                                        "if-range",          "range"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (http_span_is(base, name, names[i]))
            return true;
    return false;
}

bool cache_req_upstream_keeps_field(const struct cache_req *cr, const char *base,
                                    const struct http_field *f)
{
    /* An ESI page's validators are its own (derived from its parts'): the
     * client's conditions and ranges are never the template's. */
    if (cr->esi && is_conditional_or_range(base, f->name))
        return false;
    if (upstream_accept_encoding(cr->compress) && http_span_is(base, f->name, "accept-encoding"))
        return false;
    return !(cr->fetch_full || cr->revalidating) || !is_conditional_or_range(base, f->name);
}

void cache_req_upstream_fields(const struct cache_req *cr, struct buf *extra)
{
    const char *ae = upstream_accept_encoding(cr->compress);
    if (ae && *ae)
        buf_appendf(extra, "Accept-Encoding: %s\r\n", ae);
    if (!cr->revalidating)
        return;
    if (cr->stale->etag_len > 0) {
        buf_append_str(extra, "If-None-Match: ");
        buf_append(extra, cr->stale->etag, cr->stale->etag_len);
        buf_append(extra, "\r\n", 2);
    }
    if (cr->stale->last_modified_ms > 0) {
        char date[30];
        http_date_format((time_t)(cr->stale->last_modified_ms / 1000), date);
        buf_appendf(extra, "If-Modified-Since: %s\r\n", date);
    }
}

bool cache_req_stale_on_error(struct cache_req *cr, int status)
{
    if (!cr->stale || !cache_within_stale_if_error(&cr->stale_facts))
        return false;
    if (cr->bans && ban_check(cr->bans, cr->stale) == BAN_GONE)
        return false; /* purged meanwhile: not even as a stale copy */
    cache_object_builder_abandon(&cr->builder);
    cache_object_release(&cr->obj);
    cr->obj = cr->stale;
    cr->stale = NULL;
    cr->age_ms = cr->stale_facts.current_age_ms;
    cr->outcome = CACHE_OUT_STALE;
    cr->fwd = "stale";
    cr->fwd_status = status;
    cr->detail = "stale-if-error";
    cr->stored = false;
    log_warn("upstream answered %d for %.*s: serving the stale copy (stale-if-error)", status,
             (int)cr->key_len, cr->key);
    return true;
}

/* The tags fields are for the cache, not for clients (unless `keep`). */
static bool is_tags_field(const struct config_cache_policy *p, const char *base,
                          struct http_span name)
{
    if (p->tags_keep)
        return false;
    return http_span_is(base, name, "cache-tag") ||
           (p->tags_header && http_span_is(base, name, p->tags_header));
}

bool cache_req_forwards_field(const struct cache_req *cr, const char *base,
                              const struct http_field *f)
{
    if (!cr->policy || !cr->policy->enabled)
        return true;
    if (is_tags_field(cr->policy, base, f->name))
        return false;
    return !http_span_is(base, f->name, "cdn-cache-control") &&
           !http_span_is(base, f->name, "surrogate-control") && !http_span_is(base, f->name, "age");
}

/* The header block an object replays: what the client would get, minus
 * Set-Cookie (never stored), the targeted cache fields, Age (recomputed)
 * and the framing fields (the object knows its length). */
static void stored_head(struct buf *out, const struct config_cache_policy *p, const char *base,
                        const struct http_head *resp, bool template)
{
    for (unsigned i = 0; i < resp->nfields; i++) {
        const struct http_field *f = &resp->fields[i];
        if (!http_field_forwardable(base, resp, f) || is_tags_field(p, base, f->name))
            continue;
        if (template && http_span_is(base, f->name, "content-encoding"))
            continue; /* the template is stored decoded */
        if (http_span_is(base, f->name, "set-cookie") || http_span_is(base, f->name, "age") ||
            http_span_is(base, f->name, "cdn-cache-control") ||
            http_span_is(base, f->name, "surrogate-control"))
            continue;
        buf_append(out, base + f->name.off, f->name.len);
        buf_append(out, ": ", 2);
        buf_append(out, base + f->value.off, f->value.len);
        buf_append(out, "\r\n", 2);
    }
}

/* Tags for purge (issue: purge by tag): the route's tags header, space or
 * comma separated, and Cache-Tag. */
static size_t collect_tags(const char *base, const struct http_head *resp, const char *tags_header,
                           struct cache_object_tag *tags, size_t max)
{
    size_t n = 0;
    for (unsigned i = 0; i < resp->nfields && n < max; i++) {
        const struct http_field *f = &resp->fields[i];
        if (!(tags_header && http_span_is(base, f->name, tags_header)) &&
            !http_span_is(base, f->name, "cache-tag"))
            continue;
        const char *p = base + f->value.off;
        const char *end = p + f->value.len;
        while (p < end && n < max) {
            while (p < end && (*p == ' ' || *p == ',' || *p == '\t'))
                p++;
            const char *start = p;
            while (p < end && *p != ' ' && *p != ',' && *p != '\t')
                p++;
            if (p > start)
                tags[n++] = (struct cache_object_tag){start, (size_t)(p - start)};
        }
    }
    return n;
}

static bool parse_content_length(const char *base, const struct http_head *h, uint64_t *out)
{
    const struct http_field *f = http_head_find(base, h, "content-length");
    if (!f || f->value.len == 0 || f->value.len > 19)
        return false;
    uint64_t v = 0;
    for (uint32_t i = 0; i < f->value.len; i++) {
        char ch = base[f->value.off + i];
        if (ch < '0' || ch > '9')
            return false;
        v = v * 10 + (uint64_t)(ch - '0');
    }
    *out = v;
    return true;
}

static void start_fill(struct cache_req *cr, const char *rbase, const struct http_head *req,
                       const char *base, const struct http_head *resp,
                       const struct cache_response_facts *rf, int64_t now_ms)
{
    const struct config_cache_policy *p = cr->policy;
    uint64_t length;
    bool has_length = parse_content_length(base, resp, &length);
    if (has_length && length > p->max_object_size) {
        cr->detail = "too-large";
        return;
    }
    struct buf vary = {0}, head = {0};
    join_fields(&vary, base, resp, "vary");
    size_t nfields;
    struct cache_field *fields = request_fields(cr->compress, rbase, req, &nfields);
    char secondary[VARY_KEY_MAX];
    size_t slen = cache_vary_key(vary.data ? vary.data : "", vary.len, fields, nfields, secondary,
                                 sizeof secondary);
    free(fields);
    struct cache_object_tag tags[64];
    size_t ntags = collect_tags(base, resp, p->tags_header, tags, 64);
    const struct http_field *etag = http_head_find(base, resp, "etag");
    int64_t lifetime = cache_freshness_lifetime(rf, p, now_ms);
    struct cache_object_facts of;
    cache_object_facts_fill(&of, rf, p, lifetime, 0);
    struct cache_object_meta meta = {
        .primary_key = cr->key,
        .primary_len = cr->key_len,
        .primary_hash = cr->hash,
        .secondary_key = secondary,
        .secondary_len = slen < sizeof secondary ? slen : 0,
        .vary = vary.data,
        .vary_len = vary.len,
        .status = resp->status,
        .request_time = cr->request_time_ms,
        .response_time = now_ms,
        .corrected_initial_age = cache_corrected_initial_age(rf, cr->request_time_ms, now_ms),
        .lifetime = lifetime,
        .stale_while_revalidate = of.stale_while_revalidate_ms,
        .stale_if_error = of.stale_if_error_ms,
        .stored_at = cr->request_wall_ms,
        .no_cache = of.no_cache,
        .must_revalidate = of.must_revalidate,
        .esi_template = cr->esi_fill != NULL,
        .etag = etag ? base + etag->value.off : NULL,
        .etag_len = etag ? etag->value.len : 0,
        .last_modified_ms = rf->has_last_modified ? rf->last_modified_ms : 0,
        .tags = tags,
        .ntags = ntags,
    };
    stored_head(&head, p, base, resp, meta.esi_template);
    if (slen >= sizeof secondary || vary.oom || head.oom) {
        cr->detail = "vary-too-large";
    } else {
        cr->builder = cache_object_builder_new(&meta, p->max_object_size);
        if (cr->builder &&
            !cache_object_builder_set_head(cr->builder, head.data ? head.data : "", head.len))
            cache_object_builder_abandon(&cr->builder);
        /* Cache-Status goes out now: "stored" only when the fill cannot
         * fail for size (a body of unknown length may outgrow the limit
         * after the head has said so). */
        cr->stored = cr->builder != NULL && has_length;
        cr->etag_generate = cr->builder && p->etag_generate && !etag;
    }
    buf_release(&vary);
    if (cr->etag_generate)
        cr->fill_head = head; /* set again with the ETag when the body is known */
    else
        buf_release(&head);
}

/* RFC 9111 4.4: after an unsafe method's non-error response, drop the
 * stored responses for the target URI and for Location / Content-Location
 * when they name the same host. */
static void invalidate_uri(struct worker *w, const struct config_route *route, const char *host,
                           size_t host_len, const char *target, size_t target_len,
                           const char *rbase, const struct http_head *req)
{
    if (!route || !route->cache.enabled)
        return;
    size_t nfields;
    struct cache_field *fields = request_fields(&route->compress, rbase, req, &nfields);
    struct cache_key_input in = {
        .scheme = "http",
        .scheme_len = 4,
        .host = host,
        .host_len = host_len,
        .target = target,
        .target_len = target_len,
        .fields = fields,
        .nfields = nfields,
    };
    size_t n = cache_key_build(&in, &route->cache, NULL, 0);
    char *key = n ? malloc(n + 1) : NULL;
    if (key) {
        cache_key_build(&in, &route->cache, key, n + 1);
        size_t gone = cachetier_remove(&route->cache, w, key, n, cache_key_hash(key, n, key_seed));
        log_debug("invalidated %.*s (%zu object(s))", (int)n, key, gone);
        free(key);
    }
    free(fields);
}

/* Location / Content-Location as an origin-form path on the request's host,
 * or false when it points elsewhere. */
static bool same_host_path(const char *v, size_t len, const char *host, size_t host_len,
                           const char **path, size_t *path_len)
{
    if (len > 0 && v[0] == '/' && (len < 2 || v[1] != '/')) {
        *path = v;
        *path_len = len;
        return true;
    }
    if (len < 7 || strncasecmp(v, "http://", 7) != 0)
        return false;
    const char *auth = v + 7;
    const char *slash = memchr(auth, '/', len - 7);
    size_t alen = slash ? (size_t)(slash - auth) : len - 7;
    if (alen != host_len || strncasecmp(auth, host, alen) != 0)
        return false;
    *path = slash ? slash : "/";
    *path_len = slash ? len - 7 - alen : 1;
    return true;
}

static void invalidate(struct cache_req *cr, struct worker *w, const char *rbase,
                       const struct http_head *req, const char *base, const struct http_head *resp)
{
    (void)cr;
    const struct http_field *host_f = http_head_find(rbase, req, "host");
    if (!host_f)
        return;
    const char *host = rbase + host_f->value.off;
    size_t host_len = host_f->value.len;
    const struct config *cfg = w->wcfg->cfg;
    const char *path = rbase + req->target.off;
    size_t path_len = req->target.len;
    const char *q = memchr(path, '?', path_len);
    invalidate_uri(w, router_match(cfg, host, host_len, path, q ? (size_t)(q - path) : path_len),
                   host, host_len, path, path_len, rbase, req);
    static const char *const names[] = {"location", "content-location"};
    for (size_t i = 0; i < 2; i++) {
        const struct http_field *f = http_head_find(base, resp, names[i]);
        if (!f ||
            !same_host_path(base + f->value.off, f->value.len, host, host_len, &path, &path_len))
            continue;
        q = memchr(path, '?', path_len);
        invalidate_uri(w,
                       router_match(cfg, host, host_len, path, q ? (size_t)(q - path) : path_len),
                       host, host_len, path, path_len, rbase, req);
    }
}

/* RFC 9111 3.2 and 4.3.4: the stored head, with every field the 304 sends
 * replacing the stored one of that name (Content-Length, Set-Cookie, Age
 * and the targeted fields excepted). */
static void merge_head(struct buf *out, const struct config_cache_policy *policy,
                       const struct cache_object *old, const char *base,
                       const struct http_head *resp)
{
    struct buf fresh = {0};
    stored_head(&fresh, policy, base, resp, old->esi_template);
    struct http_head fh = {0};
    http_head_parse_block(fresh.data ? fresh.data : "", fresh.len, &fh);
    const char *p = old->head;
    const char *end = old->head + old->head_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        const char *colon = memchr(p, ':', (size_t)(next - p));
        bool replaced = false;
        for (unsigned i = 0; colon && i < fh.nfields && !replaced; i++)
            replaced =
                fh.fields[i].name.len == (size_t)(colon - p) &&
                strncasecmp(fresh.data + fh.fields[i].name.off, p, fh.fields[i].name.len) == 0;
        if (!replaced)
            buf_append(out, p, (size_t)(next - p));
        p = next;
    }
    buf_append(out, fresh.data, fresh.len);
    http_head_free(&fh);
    buf_release(&fresh);
}

/* A 304 answered our revalidation: a new object with the merged head,
 * the new freshness and the old body (copied: objects are immutable). */
static struct cache_object *refresh_object(struct cache_req *cr, const char *base,
                                           const struct http_head *resp, int64_t now_ms)
{
    const struct cache_object *old = cr->stale;
    struct buf head = {0};
    merge_head(&head, cr->policy, old, base, resp);
    struct http_head mh = {0};
    http_head_parse_block(head.data ? head.data : "", head.len, &mh);
    mh.status = old->status;
    struct cache_response_facts rf;
    response_facts(&rf, head.data ? head.data : "", &mh, now_ms);
    /* The 304's own Date and Age say how old this validation is. */
    struct cache_response_facts rf304;
    response_facts(&rf304, base, resp, now_ms);
    int64_t lifetime = cache_freshness_lifetime(&rf, cr->policy, now_ms);
    struct cache_object_facts of;
    cache_object_facts_fill(&of, &rf, cr->policy, lifetime, 0);
    const struct http_field *etag = http_head_find(head.data ? head.data : "", &mh, "etag");
    struct cache_object_meta meta = {
        .primary_key = old->primary_key,
        .primary_len = old->primary_len,
        .primary_hash = old->primary_hash,
        .secondary_key = old->secondary_key,
        .secondary_len = old->secondary_len,
        .vary = old->vary,
        .vary_len = old->vary_len,
        .status = old->status,
        .request_time = cr->request_time_ms,
        .response_time = now_ms,
        .corrected_initial_age = cache_corrected_initial_age(&rf304, cr->request_time_ms, now_ms),
        .lifetime = lifetime,
        .stale_while_revalidate = of.stale_while_revalidate_ms,
        .stale_if_error = of.stale_if_error_ms,
        .stored_at = cr->request_wall_ms,
        .no_cache = of.no_cache,
        .must_revalidate = of.must_revalidate,
        .esi_template = old->esi_template,
        .etag = etag ? head.data + etag->value.off : old->etag,
        .etag_len = etag ? etag->value.len : old->etag_len,
        .last_modified_ms = rf.has_last_modified ? rf.last_modified_ms : old->last_modified_ms,
        .tags = old->tags,
        .ntags = old->ntags,
    };
    struct cache_object *obj = NULL;
    struct cache_object_builder *b = cache_object_builder_new(&meta, SIZE_MAX);
    if (b && cache_object_builder_set_head(b, head.data ? head.data : "", head.len)) {
        for (size_t i = 0; i < old->nbody; i++)
            cache_object_builder_append(b, old->body[i].iov_base, old->body[i].iov_len);
        obj = cache_object_builder_finish(&b);
    }
    cache_object_builder_abandon(&b);
    http_head_free(&mh);
    buf_release(&head);
    return obj;
}

static void fill_done(struct cache_req *cr, enum coalesce_outcome outcome, int64_t now_ms)
{
    if (!cr->filler)
        return;
    coalesce_fill_done(cr->key, cr->key_len, cr->hash, outcome, now_ms,
                       outcome == COALESCE_NOT_STORED ? HIT_FOR_MISS_MS : 0);
    cr->filler = false;
}

/* The revalidation came back 304: store the refreshed object and answer
 * from it. */
static enum cache_head_action revalidated(struct cache_req *cr, struct worker *w, const char *base,
                                          const struct http_head *resp, int64_t now_ms)
{
    struct cache_object *obj = refresh_object(cr, base, resp, now_ms);
    if (!obj || !cachetier_store(cr, w, obj, now_ms)) {
        /* Not stored (no memory): still a valid answer for this client. */
        fill_done(cr, COALESCE_NOT_STORED, now_ms);
    } else {
        fill_done(cr, COALESCE_STORED, now_ms);
    }
    if (!obj)
        obj = cache_object_ref(cr->stale);
    cache_object_release(&cr->obj);
    cr->obj = obj;
    cr->age_ms = cache_current_age(obj->corrected_initial_age, obj->response_time, now_ms);
    cr->outcome = CACHE_OUT_HIT;
    cr->fwd = "stale";
    cr->fwd_status = 304;
    cr->stored = true;
    return CACHE_HEAD_SERVE_OBJECT;
}

static bool status_is_server_error(int status)
{
    return status == 500 || status == 502 || status == 503 || status == 504;
}

static enum cache_head_action response_head(struct cache_req *cr, struct worker *w,
                                            const char *rbase, const struct http_head *req,
                                            const char *base, const struct http_head *resp,
                                            struct buf *extra, int64_t now_ms)
{
    if (cr->invalidate && resp->status < 400)
        invalidate(cr, w, rbase, req, base, resp);
    if (!cr->policy || (cr->outcome == CACHE_OUT_PASS && !cr->store_on_pass)) {
        append_x_cache(cr->policy, CACHE_OUT_PASS, extra);
        if (cr->policy && cr->policy->enabled)
            append_cache_status(cr, extra, resp->status);
        return CACHE_HEAD_FORWARD;
    }
    if (cr->revalidating && resp->status == 304)
        return revalidated(cr, w, base, resp, now_ms);
    if (status_is_server_error(resp->status) && cache_req_stale_on_error(cr, resp->status)) {
        fill_done(cr, COALESCE_FAILED, now_ms);
        return CACHE_HEAD_SERVE_STALE;
    }
    if (cr->stale && (resp->status == 404 || resp->status == 410))
        cachetier_remove(cr->policy, w, cr->key, cr->key_len, cr->hash);
    struct cache_response_facts rf;
    response_facts(&rf, base, resp, now_ms);
    enum cache_store_verdict v = cache_storable(&cr->facts, &rf, cr->policy);
    if (!cr->may_store && !cr->store_on_pass) {
        cr->detail = "request-no-store";
    } else if (v != CACHE_STORABLE) {
        cr->detail = cache_store_verdict_name(v);
    } else {
        start_fill(cr, rbase, req, base, resp, &rf, now_ms);
    }
    if (!cr->builder)
        fill_done(cr, COALESCE_NOT_STORED, now_ms);
    int64_t age = cache_corrected_initial_age(&rf, cr->request_time_ms, now_ms);
    buf_appendf(extra, "Age: %" PRId64 "\r\n", cache_age_header_seconds(age));
    append_cache_status(cr, extra, resp->status);
    append_x_cache(cr->policy, cr->outcome, extra);
    return CACHE_HEAD_FORWARD;
}

/* A template that is not stored still becomes an object (never inserted
 * anywhere), so that it is served exactly like a stored one.  It answers
 * this request alone, so its Set-Cookie fields stay. */
static void start_transient_template(struct cache_req *cr, const char *base,
                                     const struct http_head *resp, int64_t now_ms)
{
    static const char key[] = "esi-transient";
    struct buf head = {0};
    stored_head(&head, cr->policy, base, resp, true);
    for (unsigned i = 0; i < resp->nfields; i++) {
        const struct http_field *f = &resp->fields[i];
        if (!http_span_is(base, f->name, "set-cookie"))
            continue;
        buf_append(&head, base + f->name.off, f->name.len);
        buf_append(&head, ": ", 2);
        buf_append(&head, base + f->value.off, f->value.len);
        buf_append(&head, "\r\n", 2);
    }
    const struct http_field *etag = http_head_find(base, resp, "etag");
    struct cache_object_meta meta = {
        .primary_key = cr->key ? cr->key : key,
        .primary_len = cr->key ? cr->key_len : sizeof key - 1,
        .status = resp->status,
        .request_time = cr->request_time_ms,
        .response_time = now_ms,
        .stored_at = cr->request_wall_ms,
        .no_cache = true,
        .esi_template = true,
        .etag = etag ? base + etag->value.off : NULL,
        .etag_len = etag ? etag->value.len : 0,
    };
    if (!head.oom) {
        cr->builder = cache_object_builder_new(&meta, SIZE_MAX);
        if (cr->builder &&
            !cache_object_builder_set_head(cr->builder, head.data ? head.data : "", head.len))
            cache_object_builder_abandon(&cr->builder);
    }
    cr->esi_transient = cr->builder != NULL;
    buf_release(&head);
}

enum cache_head_action cache_req_response_head(struct cache_req *cr, struct worker *w,
                                               const char *rbase, const struct http_head *req,
                                               const char *base, const struct http_head *resp,
                                               struct buf *extra, int64_t now_ms)
{
    esi_fill_free(&cr->esi_fill);
    /* A HEAD on an ESI route was sent upstream as GET (proxy/client.c). */
    bool template = cr->esi && (cr->facts.method_get || cr->facts.method_head) &&
                    esi_response_is_template(cr->esi, base, resp);
    if (template) {
        const struct http_field *ce = http_head_find(base, resp, "content-encoding");
        bool gzip = ce && http_span_is(base, ce->value, "gzip");
        cr->esi_fill = esi_fill_new(gzip, cr->esi_max_body);
        if (!cr->esi_fill) {
            cr->detail = "esi-oom";
            return CACHE_HEAD_SERVE_TEMPLATE; /* no object: the client answers 502 */
        }
    }
    enum cache_head_action a = response_head(cr, w, rbase, req, base, resp, extra, now_ms);
    if (!template)
        return a;
    if (a != CACHE_HEAD_FORWARD) { /* not a template answer after all */
        esi_fill_free(&cr->esi_fill);
        return a;
    }
    if (!cr->builder)
        start_transient_template(cr, base, resp, now_ms);
    return CACHE_HEAD_SERVE_TEMPLATE;
}

const char *cache_req_esi_error(const struct cache_req *cr)
{
    if (cr->esi_fill && *esi_fill_error(cr->esi_fill))
        return esi_fill_error(cr->esi_fill);
    return cr->obj ? "" : "the ESI template could not be made";
}

void cache_req_response_body(struct cache_req *cr, const char *p, size_t n)
{
    if (cr->esi_fill) {
        esi_fill_write(cr->esi_fill, p, n); /* a failure shows at the end */
        return;
    }
    if (!cr->builder)
        return;
    if (!cache_object_builder_append(cr->builder, p, n)) {
        /* Larger than max_object_size: the client still gets it all; the
         * waiters go to the upstream alone (hit-for-miss), not in turn. */
        log_debug("not storing %.*s: larger than max_object_size", (int)cr->key_len, cr->key);
        cache_object_builder_abandon(&cr->builder);
        cr->too_large = true;
    }
}

/* etag generate: the body is known, give the object its strong ETag. */
static void generate_etag(struct cache_req *cr)
{
    char etag[24];
    cache_etag_from_hash(cache_object_builder_body_hash(cr->builder), etag);
    size_t len = strlen(etag);
    buf_appendf(&cr->fill_head, "ETag: %s\r\n", etag);
    if (cr->fill_head.oom || !cache_object_builder_set_etag(cr->builder, etag, len) ||
        !cache_object_builder_set_head(cr->builder, cr->fill_head.data, cr->fill_head.len))
        cache_object_builder_abandon(&cr->builder);
    buf_release(&cr->fill_head);
}

/* The template's body ended: its encoding becomes the object's body; a
 * template that is not stored is finished here and answers this request
 * alone.  False when it failed (nothing is stored). */
static bool template_done(struct cache_req *cr)
{
    unsigned char *enc;
    size_t len;
    if (!esi_fill_finish(cr->esi_fill, &enc, &len) || !cr->builder ||
        !cache_object_builder_append(cr->builder, enc, len)) {
        free(enc);
        cache_object_builder_abandon(&cr->builder);
        cr->esi_transient = false;
        return false;
    }
    free(enc);
    if (cr->esi_transient) {
        cache_object_release(&cr->obj);
        cr->obj = cache_object_builder_finish(&cr->builder);
        cr->esi_transient = false;
    }
    return true;
}

void cache_req_response_done(struct cache_req *cr, struct worker *w, int64_t now_ms)
{
    enum coalesce_outcome outcome = COALESCE_NOT_STORED;
    if (cr->esi_fill && !template_done(cr)) {
        cache_object_release(&cr->obj);
        cr->stored = false;
    }
    if (cr->builder)
        cr->stored = false; /* until the insert succeeds */
    if (cr->builder && cr->etag_generate)
        generate_etag(cr);
    if (cr->builder) {
        struct cache_object *obj = cache_object_builder_finish(&cr->builder);
        if (obj && cachetier_store(cr, w, obj, now_ms)) {
            outcome = COALESCE_STORED;
            cr->stored = true;
            cache_object_release(&cr->obj);
            cr->obj = cache_object_ref(obj);
        } else if (obj && obj->esi_template) {
            cache_object_release(&cr->obj); /* not stored, still the answer */
            cr->obj = cache_object_ref(obj);
        }
        cache_object_release(&obj);
    }
    fill_done(cr, outcome, now_ms);
    cachetier_unlock(cr);
}

void cache_req_response_failed(struct cache_req *cr, int64_t now_ms)
{
    cachetier_unlock(cr);
    cache_object_builder_abandon(&cr->builder);
    if (cr->filler) {
        enum coalesce_outcome o = cr->too_large ? COALESCE_NOT_STORED : COALESCE_FAILED;
        coalesce_fill_done(cr->key, cr->key_len, cr->hash, o, now_ms,
                           cr->too_large ? HIT_FOR_MISS_MS : 0);
        cr->filler = false;
    }
}

bool cache_req_background_init(struct cache_req *bg, const struct cache_req *cr, struct worker *w,
                               int64_t now_ms)
{
    cache_req_init(bg);
    bg->waiter.worker = w;
    bg->key = malloc(cr->key_len + 1);
    if (!bg->key)
        return false;
    memcpy(bg->key, cr->key, cr->key_len + 1);
    bg->key_len = cr->key_len;
    bg->hash = cr->hash;
    /* One background fill per key: a waiter slot that is dropped at once
     * when somebody else already fills it. */
    switch (coalesce_join(bg->key, bg->key_len, bg->hash, &bg->waiter, now_ms)) {
    case COALESCE_FILLER:
        break;
    case COALESCE_WAITER:
        coalesce_cancel(&bg->waiter);
        /* fall through */
    case COALESCE_BYPASS:
        free(bg->key);
        cache_req_init(bg);
        return false;
    }
    bg->filler = true;
    bg->policy = cr->policy;
    bg->compress = cr->compress;
    bg->esi = cr->esi;
    bg->esi_max_body = cr->esi_max_body;
    bg->facts = cr->facts;
    bg->request_time_ms = now_ms;
    bg->request_wall_ms = wall_clock_ms();
    bg->bans = cr->bans;
    bg->outcome = CACHE_OUT_MISS;
    bg->fwd = "stale";
    bg->may_store = true;
    bg->fetch_full = true;
    bg->stale = cache_object_ref(cr->obj);
    bg->stale_facts.lifetime_ms = cr->obj->lifetime;
    bg->stale_facts.current_age_ms = cr->age_ms;
    bg->revalidating = bg->stale->etag_len > 0 || bg->stale->last_modified_ms > 0;
    return true;
}
