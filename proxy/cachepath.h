/*
 * proxy/cachepath.h: the cache's part in a request's life.
 *
 * client.c calls these at fixed points of a request; this module turns the
 * parsed heads into the facts cache/ reasons about (RFC 9111), keys the
 * request, looks it up, joins request coalescing, fills the store while the
 * response streams to the client, and writes the cache's response fields
 * (Age, Cache-Status per RFC 9211, X-Cache).
 *
 *   head parsed ──cache_req_lookup──> PASS | HIT | MISS | WAIT | ONLY_IF_CACHED
 *   HIT:   cache_req_hit_head() + the object's body
 *   MISS:  cache_req_response_head() on the upstream's head, then
 *          cache_req_response_body() for each piece, cache_req_response_done()
 *          or cache_req_response_failed()
 *   WAIT:  the waiter's wake (on this worker) -> cache_req_after_wait()
 *   end:   cache_req_reset() (always; it finishes what is unfinished)
 *
 * Ownership: a struct cache_req lives in its client connection.  It owns
 * its key, its hit object reference and its fill builder; cache_req_reset()
 * releases them.  Pointers into the request head (base/req) are only used
 * during the call that receives them.
 */
#ifndef TESSERA_CACHEPATH_H
#define TESSERA_CACHEPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/freshness.h"
#include "cache/mcstore.h"
#include "cache/object.h"
#include "config/config.h"
#include "proxy/buf.h"
#include "proxy/coalesce.h"
#include "proxy/encode.h"
#include "proxy/esifill.h"
#include "proxy/http.h"
#include "proxy/worker.h"

enum cache_lookup_result {
    CACHE_LOOKUP_PASS,           /* not for the cache: forward (X-Cache: PASS) */
    CACHE_LOOKUP_HIT,            /* answer from cr->obj */
    CACHE_LOOKUP_MISS,           /* forward; the response may fill the cache */
    CACHE_LOOKUP_WAIT,           /* another request fills this key: wait */
    CACHE_LOOKUP_ONLY_IF_CACHED, /* a miss the client forbids forwarding: 504 */
    CACHE_LOOKUP_REMOTE,         /* memcached was asked: wait for cr->on_remote, then
                                  * call cache_req_remote_result() */
};

/* What the response says about the cache, for X-Cache and Cache-Status. */
enum cache_outcome { CACHE_OUT_PASS, CACHE_OUT_HIT, CACHE_OUT_MISS, CACHE_OUT_STALE };

/* What the client does with the upstream's final response head. */
enum cache_head_action {
    CACHE_HEAD_FORWARD,        /* relay it (with the extra fields) */
    CACHE_HEAD_SERVE_OBJECT,   /* a 304 refreshed the stored object: answer from cr->obj
                                * once the upstream response has ended */
    CACHE_HEAD_SERVE_STALE,    /* the upstream failed (5xx): answer from the stale object
                                * (stale-if-error) once the response has ended */
    CACHE_HEAD_SERVE_TEMPLATE, /* an ESI template: its body goes to
                                * cache_req_response_body() as usual; once the
                                * response has ended, cr->obj is the template (NULL:
                                * it failed, cache_req_esi_error() says why) */
};

struct cache_req {
    const struct config_cache_policy *policy; /* NULL: pass */
    const struct config_compress *compress;   /* the route's compress policy */
    enum cache_outcome outcome;
    const char *fwd;    /* RFC 9211 fwd= value, NULL for hits */
    const char *detail; /* RFC 9211 detail= value or NULL */
    bool may_store;     /* a response may be stored (no request no-store...) */
    bool store_on_pass; /* not answered from the cache, but its response may
                         * be stored (Authorization, RFC 9111 3.5) */
    bool stored;        /* Cache-Status may say "stored": a fill was started and
                         * its length is known to fit, or it was stored */
    bool coalesced;     /* the hit came from waiting on another fill */
    bool filler;        /* registered as the key's filler in coalesce */
    bool waiting;       /* registered as a waiter */
    bool invalidate;    /* unsafe method: invalidate on a non-error response */
    bool vary_seen;     /* the lookup found variants, none matching */
    bool too_large;     /* the body outgrew max_object_size while filling */
    bool fetch_full;    /* the upstream request is for the cache: the client's
                         * conditionals and Range stay here */
    bool revalidating;  /* the upstream request carries cr->stale's validators */
    bool swr;           /* answered stale; a background revalidation is due */
    bool etag_generate; /* the fill gets a generated ETag when done */
    int fwd_status;     /* the upstream's status behind a stale or refreshed answer */
    int64_t wait_until_ms;
    int64_t request_time_ms;
    int64_t request_wall_ms; /* the real clock when the request began: a stored
                              * response's stored_at (purges compare it) */
    struct ban_list *bans;   /* the worker's purges (NULL: none) */

    struct cache_request_facts facts;
    char *key;
    size_t key_len;
    uint64_t hash;

    struct cache_object *obj;   /* hit, or the object just stored */
    struct cache_object *stale; /* a stale object: to revalidate, or to
                                 * serve if the upstream fails */
    struct cache_object_facts stale_facts;
    struct buf fill_head;                 /* the stored head, until the fill ends */
    struct cache_object_builder *builder; /* fill */
    int64_t age_ms;                       /* Age to send */
    struct coalesce_waiter waiter;

    /* The memcached tier: a lookup in flight and its answer. */
    struct mc_job *mc;
    bool remote;     /* waiting for memcached */
    bool vary_asked; /* the variant lookup after a Vary index was made */
    /* Coalescing across nodes (coalesce cluster): the memcached lock. */
    enum { CLUSTER_NONE, CLUSTER_ASKED, CLUSTER_ACQUIRED, CLUSTER_BUSY } cluster;
    bool polling; /* another node fetches: poll memcached for its object */
    int64_t cluster_until_ms;
    int64_t poll_gap_ms;
    struct mcstore *cluster_store; /* holds the lock: unlock when the fill ends */
    int64_t remote_until_ms;
    struct mcstore_get_result *remote_res; /* the answer, until remote_result takes it */
    /* Content coding of a hit (proxy/encode.h). */
    bool vary_ae;        /* the answer adds "Vary: Accept-Encoding" */
    bool variant_asked;  /* memcached was asked for the coded variant of cr->obj */
    bool inflate_on_hit; /* cr->obj is gzip for a client that does not take it and
                          * no inflated variant could be made: inflate it while
                          * sending */
    struct encode_plan variant_plan;
    /* ESI (issue 10): the route's settings when the request is a GET or HEAD on a
     * route that processes ESI (else NULL); a response that is a template
     * is parsed by esi_fill instead of being stored as it is, and answered
     * from the template object (cr->obj, stored or not: esi_transient). */
    const struct config_esi *esi;
    size_t esi_max_body;
    struct esi_fill *esi_fill;
    bool esi_transient;
    /* Runs on the request's worker when memcached answered (set by the
     * client before the first lookup, kept across requests). */
    void (*on_remote)(struct cache_req *cr);
};

/* cache_req_seed_init: choose the process's random hash seed (main thread,
 * before workers start). */
void cache_req_seed_init(void);

/* cache_req_init: an empty request state. */
void cache_req_init(struct cache_req *cr);

/* cache_req_reset: end of a request: release the hit, abandon an
 * unfinished fill (waiters are told it failed), leave coalescing. */
void cache_req_reset(struct cache_req *cr);

/* The parts of a request cache_req_lookup() needs. */
struct cache_request_view {
    const char *base; /* the request head's bytes */
    const struct http_head *head;
    const char *host; /* the effective Host */
    size_t host_len;
    const char *target; /* origin-form target */
    size_t target_len;
    bool has_body;
};

/* cache_req_lookup: decide the request's cache path under route's policy
 * and look it up.  now_ms is the worker's clock. */
enum cache_lookup_result cache_req_lookup(struct cache_req *cr, struct worker *w,
                                          const struct config_route *route,
                                          const struct cache_request_view *rv, int64_t now_ms);

/* cache_req_after_wait: the fill this request waited for ended (or the wait
 * timed out: timed_out true).  Looks the key up again: HIT, or MISS (go to
 * the upstream, without coalescing unless the fill failed), or WAIT again
 * (the fill failed and another request started a new one). */
enum cache_lookup_result cache_req_after_wait(struct cache_req *cr, struct worker *w,
                                              const struct cache_request_view *rv,
                                              enum coalesce_outcome outcome, bool timed_out,
                                              int64_t now_ms);

/* cache_req_remote_result: memcached answered (after CACHE_LOOKUP_REMOTE):
 * HIT (promoted to memory when the route stores there), REMOTE again (a
 * Vary index: the variant is asked for), or MISS (go to the upstream; the
 * request still fills the key).  timed_out: the answer did not come in
 * time; the lookup is abandoned and the request goes on as a miss. */
enum cache_lookup_result cache_req_remote_result(struct cache_req *cr, struct worker *w,
                                                 const struct cache_request_view *rv,
                                                 bool timed_out, int64_t now_ms);

/* cache_req_encode_hit: cr->obj is about to answer a client whose
 * Accept-Encoding is (ae, ae_len) (ae NULL: the request has none).  When the
 * route's compress policy says the body goes out coded, cr->obj becomes its
 * coded variant (proxy/encode.h): found in memory, else (remote_ok) asked of
 * memcached, else made now and stored in the route's tiers.  A ranged
 * request keeps the identity body (ranges are answered from it).  Returns
 * HIT when cr->obj is ready to serve, REMOTE when memcached was asked: wait
 * for cr->on_remote, then cache_req_remote_result() says HIT. */
enum cache_lookup_result cache_req_encode_hit(struct cache_req *cr, struct worker *w,
                                              const char *ae, size_t ae_len, bool head_request,
                                              bool ranged, bool remote_ok, int64_t now_ms);

/* cache_req_hit_fields: append the fields every answer from the cache
 * carries: Age, Via, Cache-Status, X-Cache.  A hit_fields_fn (proxy/hit.h):
 * ctx is the struct cache_req. */
void cache_req_hit_fields(void *ctx, struct buf *out);

/* cache_req_status_fields: the fields of cache_req_hit_fields() but Age
 * (and Vary): Via, Cache-Status, X-Cache.  For an assembled ESI page, whose
 * freshness is its parts' (proxy/esipage.h). */
void cache_req_status_fields(const struct cache_req *cr, struct buf *out);

/* cache_req_upstream_fields: fields the upstream request gets from the cache
 * (the stale object's validators when revalidating). */
void cache_req_upstream_fields(const struct cache_req *cr, struct buf *extra);

/* cache_req_upstream_keeps_field: whether a request field goes upstream:
 * when fetching for the cache, the client's conditionals and Range are
 * answered here from the stored object, not by the upstream. */
bool cache_req_upstream_keeps_field(const struct cache_req *cr, const char *base,
                                    const struct http_field *f);

/* cache_req_stale_on_error: the upstream failed before answering (status
 * 502 or 504, or a 5xx it sent): when a stale object is within its
 * stale-if-error window, make it the answer (cr->obj) and return true. */
bool cache_req_stale_on_error(struct cache_req *cr, int status);

/* cache_req_response_head: the upstream's final head for a MISS or PASS
 * request: decide whether it is stored, start the fill, apply invalidation
 * for unsafe methods.  req is the request (for Vary).  Returns the extra
 * fields to add to the client's response (Age, Cache-Status, X-Cache) in
 * extra (appended). */
enum cache_head_action cache_req_response_head(struct cache_req *cr, struct worker *w,
                                               const char *rbase, const struct http_head *req,
                                               const char *base, const struct http_head *resp,
                                               struct buf *extra, int64_t now_ms);

/* cache_req_forwards_field: whether a response field goes to the client
 * on the cache path (the targeted cache fields and the upstream's Age,
 * which cache_req_response_head replaces, do not). */
bool cache_req_forwards_field(const struct cache_req *cr, const char *base,
                              const struct http_field *f);

/* cache_req_response_body: body bytes of a response being stored. */
void cache_req_response_body(struct cache_req *cr, const char *p, size_t n);

/* cache_req_response_done: the whole response arrived: store it (the
 * stored object is then cr->obj). */
void cache_req_response_done(struct cache_req *cr, struct worker *w, int64_t now_ms);

/* cache_req_esi_error: why the template of a CACHE_HEAD_SERVE_TEMPLATE
 * response could not be made ("" when it was). */
const char *cache_req_esi_error(const struct cache_req *cr);

/* cache_req_response_failed: the response will not complete: store nothing. */
void cache_req_response_failed(struct cache_req *cr, int64_t now_ms);

/* cache_req_background_init: make bg (zeroed by the caller) the state of
 * a background revalidation of the stale object cr was answered with: its
 * key, policy and facts copied, the object referenced, and the key's fill
 * claimed in the coalescing table.  False (bg left empty) when another
 * request already fills the key or memory runs out. */
bool cache_req_background_init(struct cache_req *bg, const struct cache_req *cr, struct worker *w,
                               int64_t now_ms);

/* cache_req_pass_fields: append the X-Cache and Cache-Status fields for a
 * request that did not go through the cache (policy says pass). */
void cache_req_pass_fields(const struct cache_req *cr, const struct config_route *route,
                           struct buf *extra);

#endif
