/*
 * proxy/cachepath_priv.h: what the files of the cache path share
 * (proxy/cachepath.c, the request's path through the cache;
 * proxy/cachetier.c, its memory and memcached tiers; proxy/cachevariant.c,
 * the coded variants of stored objects).  Not for other modules: they use
 * proxy/cachepath.h.  Everything runs on the request's worker.
 */
#ifndef TESSERA_CACHEPATH_PRIV_H
#define TESSERA_CACHEPATH_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/cachepath.h"

/* Polling for an object another node fetches starts with this gap. */
#define CLUSTER_POLL_FIRST_MS 25

/* ---- proxy/cachepath.c ----------------------------------------------------------- */

/* A store lookup's answer (cache_store_lookup's done callback is
 * cachepath_lookup_done, its ctx a struct lookup_done). */
struct lookup_done {
    struct cache_object *obj;
};
void cachepath_lookup_done(void *ctx, struct cache_object *obj);

/* ---- proxy/cachetier.c: the route's tiers ------------------------------------------ */

/* Whether the route stores in memory / in memcached (and this process has
 * a memcached tier). */
bool cachetier_memory(const struct config_cache_policy *p);
bool cachetier_memcached(const struct config_cache_policy *p, const struct worker *w);

/* Ask memcached for cr's key (secondary: a Vary or variant key, "" for the
 * object or its Vary index); the answer comes to cr->on_remote and is
 * taken with cache_req_remote_result().  False when it could not be asked. */
bool cachetier_get(struct cache_req *cr, struct worker *w, const char *secondary, size_t slen,
                   int64_t now_ms);

/* Stop waiting for memcached (the answer, if it comes, is dropped), and
 * free an answer not yet taken. */
void cachetier_cancel(struct cache_req *cr);
void cachetier_free_result(struct cache_req *cr);

/* Release what a memcached answer holds (not the struct itself). */
void cachetier_result_release(struct mcstore_get_result *res);

/* Coalescing across nodes: take the key's lock item in memcached (the
 * answer comes like a get's); give it back once the fill ended. */
bool cachetier_lock(struct cache_req *cr, struct worker *w, int64_t now_ms);
void cachetier_unlock(struct cache_req *cr);

/* Another node fetches: ask memcached again later (REMOTE), or MISS when
 * it took too long. */
enum cache_lookup_result cachetier_poll_later(struct cache_req *cr, int64_t now_ms);

/* Drop a key from the route's tiers (memcached in the background); how
 * many objects left memory. */
size_t cachetier_remove(const struct config_cache_policy *p, struct worker *w, const char *key,
                        size_t len, uint64_t hash);

/* Store a complete object in the route's tiers.  True when any took it. */
bool cachetier_store(struct cache_req *cr, struct worker *w, struct cache_object *obj,
                     int64_t now_ms);

/* ---- proxy/cachevariant.c: coded variants ----------------------------------------- */

/* memcached answered the lookup of cr->obj's variant (res, owned: freed
 * here; NULL when none came): serve it, or make it. */
enum cache_lookup_result cachevariant_remote_result(struct cache_req *cr, struct worker *w,
                                                    struct mcstore_get_result *res, int64_t now_ms);

#endif
