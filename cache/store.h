/*
 * cache/store.h: the store interface, one struct of function pointers that
 * the memory store (cache/memstore.c) and the memcached store implement.
 *
 * Keys: a store is addressed by the primary key (bytes + length) and its
 * hash, XXH3_64bits_withSeed() of those bytes computed once by the caller
 * (always with the same seed; objects carry it as primary_hash).  Stores use
 * the hash to place the key and always compare the key bytes in full, so a
 * collision is a miss, never a wrong page.  Under one primary key a store
 * keeps up to max_variants variants, told apart by their secondary (Vary)
 * key; the caller picks the variant with a select function.
 *
 * Completion: lookups are asynchronous from the worker's side: the result
 * arrives through done(), which a store may call before lookup() returns
 * (the memory store always does) or later from its own thread (the worker
 * then hands it to its loop through an ev_async).  Inserts, removes and
 * purges return at once; a remote store finishes them in the background.
 *
 * References: insert() takes the store's own reference (the caller keeps
 * its own); done() receives a reference the callee owns.  Objects a store
 * drops are released, so a reader still holding one keeps serving it.
 */
#ifndef TESSERA_CACHE_STORE_H
#define TESSERA_CACHE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/object.h"

struct cache_store;

/* Derived variants: a variant whose secondary key holds this byte (no Vary
 * key can: cache/key.h escapes controls) is made from another object
 * (a coded copy, proxy/encode.h).  Stores count them apart: max_variants
 * bounds the others, and derived ones get CACHE_DERIVED_PER_VARIANT times
 * as many, so copies never push the real variants out. */
#define CACHE_DERIVED_MARK '\x1f'
#define CACHE_DERIVED_PER_VARIANT 4

static inline bool cache_object_is_derived(const struct cache_object *obj)
{
    for (size_t i = 0; i < obj->secondary_len; i++)
        if (obj->secondary_key[i] == CACHE_DERIVED_MARK)
            return true;
    return false;
}

/* Counters of one store.  Monotonic counters count since creation. */
struct cache_store_stats {
    uint64_t objects;           /* objects held now */
    uint64_t bytes;             /* bytes charged now: objects and bookkeeping */
    uint64_t capacity;          /* bound on bytes */
    uint64_t inserts;           /* objects stored */
    uint64_t replaced;          /* variants replaced by an insert of the same keys */
    uint64_t evictions;         /* objects evicted to make room (LRU) */
    uint64_t variant_evictions; /* oldest variants evicted by max_variants */
    uint64_t refused;           /* inserts refused: larger than the store allows, or no memory */
    uint64_t removed;           /* objects dropped by remove() and purge_all() */
    uint64_t hits;
    uint64_t misses;
};

/* Picks a variant: true when `variant` matches the request (its Vary
 * values).  Called under the store's lock, possibly on a store thread: it
 * must be quick, must not call into the store, and must not keep `variant`. */
typedef bool cache_store_select_f(void *ctx, const struct cache_object *variant);

/* Lookup result: obj is a reference the callee now owns (release it), or
 * NULL for a miss. */
typedef void cache_store_done_f(void *ctx, struct cache_object *obj);

/* lookup: find the variant of primary key `key` that select_fn() accepts
 * (select_fn NULL: the newest variant) and call done() exactly once with it or
 * NULL.  key and select_ctx must stay valid until done() is called. */
typedef void cache_store_lookup_f(struct cache_store *store, const char *key, size_t len,
                                  uint64_t hash, cache_store_select_f *select_fn, void *select_ctx,
                                  cache_store_done_f *done, void *cb_ctx);

/* insert: store obj (under obj->primary_key / primary_hash), taking the
 * store's own reference.  A variant with the same primary and secondary key
 * is replaced; when the key already has max_variants variants of obj's
 * kind (derived or not, see above; derived ones get
 * CACHE_DERIVED_PER_VARIANT times as many), the oldest of that kind go
 * first (0 counts as 1).  Returns false when refused at
 * once (larger than the store can hold, or no memory); true when stored, or
 * queued by a remote store. */
typedef bool cache_store_insert_f(struct cache_store *store, struct cache_object *obj,
                                  unsigned max_variants);

/* remove: drop every variant of primary key `key`; returns how many objects
 * went (a remote store that cannot tell returns 0). */
typedef size_t cache_store_remove_f(struct cache_store *store, const char *key, size_t len,
                                    uint64_t hash);

/* purge_all: drop every object. */
typedef void cache_store_purge_all_f(struct cache_store *store);

/* Judges an object during a sweep: true drops it.  Called under the
 * store's lock: quick, no calls into the store, must not keep obj. */
typedef bool cache_store_judge_f(void *ctx, struct cache_object *obj);

/* sweep: call judge() on every object and drop those it returns true for;
 * returns how many went.  *oldest_ms (when not NULL) gets the smallest
 * stored_at among the objects kept, INT64_MAX when none is left. */
typedef size_t cache_store_sweep_f(struct cache_store *store, cache_store_judge_f *judge, void *ctx,
                                   int64_t *oldest_ms);

/* stats: fill *out with the store's counters. */
typedef void cache_store_stats_f(struct cache_store *store, struct cache_store_stats *out);

/* destroy: drop every object and free the store; *store becomes NULL.  No
 * other call may be running or made later; readers' references stay valid. */
typedef void cache_store_destroy_f(struct cache_store **store);

struct cache_store_ops {
    const char *name;
    cache_store_lookup_f *lookup;
    cache_store_insert_f *insert;
    cache_store_remove_f *remove;
    cache_store_purge_all_f *purge_all;
    cache_store_sweep_f *sweep;
    cache_store_stats_f *stats;
    cache_store_destroy_f *destroy;
};

/* Every store starts with this struct; its implementation owns the rest. */
struct cache_store {
    const struct cache_store_ops *ops;
};

static inline void cache_store_lookup(struct cache_store *store, const char *key, size_t len,
                                      uint64_t hash, cache_store_select_f *select_fn,
                                      void *select_ctx, cache_store_done_f *done, void *cb_ctx)
{
    store->ops->lookup(store, key, len, hash, select_fn, select_ctx, done, cb_ctx);
}

static inline bool cache_store_insert(struct cache_store *store, struct cache_object *obj,
                                      unsigned max_variants)
{
    return store->ops->insert(store, obj, max_variants);
}

static inline size_t cache_store_remove(struct cache_store *store, const char *key, size_t len,
                                        uint64_t hash)
{
    return store->ops->remove(store, key, len, hash);
}

static inline void cache_store_purge_all(struct cache_store *store)
{
    store->ops->purge_all(store);
}

static inline size_t cache_store_sweep(struct cache_store *store, cache_store_judge_f *judge,
                                       void *ctx, int64_t *oldest_ms)
{
    return store->ops->sweep(store, judge, ctx, oldest_ms);
}

static inline void cache_store_stats(struct cache_store *store, struct cache_store_stats *out)
{
    store->ops->stats(store, out);
}

/* cache_store_destroy: NULL *store is fine. */
static inline void cache_store_destroy(struct cache_store **store)
{
    if (*store)
        (*store)->ops->destroy(store);
}

#endif
