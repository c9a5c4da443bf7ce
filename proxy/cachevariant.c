/*
 * proxy/cachevariant.c: the coded variants of stored objects on the cache
 * path (issue 7; proxy/encode.h makes them): found in memory, asked of
 * memcached, or made on the first hit that wants one and stored beside the
 * object.
 */
#include "proxy/cachepath_priv.h"

#include <stdlib.h>
#include <string.h>

#include "cache/key.h"
#include "cache/store.h"
#include "proxy/log.h"

struct exact_select {
    const char *secondary;
    size_t len;
};

static bool select_exact(void *ctx, const struct cache_object *variant)
{
    const struct exact_select *es = ctx;
    return variant->secondary_len == es->len &&
           memcmp(variant->secondary_key, es->secondary, es->len) == 0;
}

/* Serve obj (a variant) instead of the identity object. */
static void use_variant(struct cache_req *cr, struct cache_object *obj)
{
    cache_object_release(&cr->obj);
    cr->obj = obj;
    cr->vary_ae = false; /* the variant's head lists Accept-Encoding */
}

/* Store a variant beside its object.  Coded copies are derived variants
 * (cache/store.h): they never push a Vary variant out. */
static void store_variant(struct cache_req *cr, struct worker *w, struct cache_object *obj,
                          int64_t now_ms)
{
    if (cachetier_memory(cr->policy))
        cache_store_insert(w->store, obj, cr->policy->max_variants);
    if (cachetier_memcached(cr->policy, w))
        mcstore_set(w->mcstore, obj, now_ms);
}

/* Make cr->obj's variant for plan now (whole body, cached level), store it
 * and serve it; when that fails, the object answers as stored (a coding
 * was only an improvement), except for an inflate plan: the client cannot
 * read gzip, so the object is inflated while it is sent (inflate_on_hit). */
static void make_variant(struct cache_req *cr, struct worker *w, const struct encode_plan *plan,
                         int64_t now_ms)
{
    char err[128];
    struct cache_object *src = cr->obj;
    char key[ENCODE_SECONDARY_MAX];
    size_t klen = encode_variant_key(src, plan, key, sizeof key);
    uint64_t making = cache_key_hash(key, klen, src->primary_hash);
    if (!encode_variant_claim(making)) {
        /* Another worker is making it right now: answer without it. */
        if (plan->action == ENCODE_INFLATE)
            cr->inflate_on_hit = true;
        return;
    }
    struct cache_object *v =
        encode_variant_make(src, plan, cr->compress, cr->policy->max_object_size, err, sizeof err);
    encode_variant_release(making);
    if (!v) {
        /* Not an error of the request: it is answered anyway (as stored,
         * or inflated on the way); and it recurs on every hit. */
        log_debug("cannot make the %s variant of %.*s: %s",
                  plan->action == ENCODE_INFLATE ? "inflated" : coding_name(plan->coding),
                  (int)cr->key_len, cr->key, err);
        if (plan->action == ENCODE_INFLATE)
            cr->inflate_on_hit = true; /* the client cannot take it as stored */
        return;
    }
    log_info("made the %s variant of %.*s: %zu -> %zu bytes",
             plan->action == ENCODE_INFLATE ? "inflated" : coding_name(plan->coding),
             (int)cr->key_len, cr->key, src->body_len, v->body_len);
    store_variant(cr, w, v, now_ms);
    use_variant(cr, v);
}

enum cache_lookup_result cache_req_encode_hit(struct cache_req *cr, struct worker *w,
                                              const char *ae, size_t ae_len, bool head_request,
                                              bool ranged, bool remote_ok, int64_t now_ms)
{
    if (!cr->obj || !cr->compress || !cr->policy || cr->obj->esi_template)
        return CACHE_LOOKUP_HIT; /* a template is coded after assembly */
    struct encode_response r;
    encode_response_from_object(&r, cr->obj, head_request);
    struct encode_plan plan;
    encode_plan_for(cr->compress, ae, ae_len, &r, &plan);
    cr->vary_ae = plan.vary;
    if (plan.action == ENCODE_NONE || (ranged && plan.action == ENCODE_COMPRESS))
        return CACHE_LOOKUP_HIT;
    char key[ENCODE_SECONDARY_MAX];
    size_t klen = encode_variant_key(cr->obj, &plan, key, sizeof key);
    if (klen == 0)
        return CACHE_LOOKUP_HIT;
    struct exact_select es = {key, klen};
    struct lookup_done done = {NULL};
    if (cachetier_memory(cr->policy))
        cache_store_lookup(w->store, cr->key, cr->key_len, cr->hash, select_exact, &es,
                           cachepath_lookup_done, &done);
    if (done.obj) {
        use_variant(cr, done.obj);
        return CACHE_LOOKUP_HIT;
    }
    if (remote_ok && cachetier_memcached(cr->policy, w) &&
        cachetier_get(cr, w, key, klen, now_ms)) {
        cr->variant_asked = true;
        cr->variant_plan = plan;
        return CACHE_LOOKUP_REMOTE;
    }
    make_variant(cr, w, &plan, now_ms);
    return CACHE_LOOKUP_HIT;
}

/* memcached answered the lookup of a variant: serve it, or make it. */
enum cache_lookup_result cachevariant_remote_result(struct cache_req *cr, struct worker *w,
                                                    struct mcstore_get_result *res, int64_t now_ms)
{
    cr->variant_asked = false;
    struct cache_object *v = NULL;
    if (res && res->kind == MC_HIT) {
        v = res->obj;
        res->obj = NULL;
    }
    if (res) {
        cachetier_result_release(res);
        free(res);
    }
    char key[ENCODE_SECONDARY_MAX];
    size_t klen = cr->obj ? encode_variant_key(cr->obj, &cr->variant_plan, key, sizeof key) : 0;
    if (v && klen > 0 && v->secondary_len == klen && memcmp(v->secondary_key, key, klen) == 0) {
        if (cachetier_memory(cr->policy))
            cache_store_insert(w->store, v, cr->policy->max_variants);
        use_variant(cr, v);
        return CACHE_LOOKUP_HIT;
    }
    cache_object_release(&v);
    if (cr->obj)
        make_variant(cr, w, &cr->variant_plan, now_ms);
    return CACHE_LOOKUP_HIT;
}
