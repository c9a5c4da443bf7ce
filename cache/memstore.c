/*
 * cache/memstore.c: the memory store (see memstore.h and store.h).
 *
 * Layout: N shards (a power of two, about one per 4 MiB of capacity, 1 to
 * 64), picked by bits 32.. of the key's hash.  A shard has a chained hash
 * table (bucket by the low bits of the hash, doubled when keys outnumber
 * buckets) from primary key to a key node; the key node lists its variants
 * newest first; every variant (an entry) is also on the shard's LRU list,
 * most recently inserted or hit first.  The key bytes are not copied: a key
 * node compares against its newest variant's object.
 *
 * Accounting: each shard owns capacity / N bytes and charges to them every
 * entry (the object's charge plus the entry struct), every key node and its
 * bucket table, each allocation with CACHE_OBJECT_ALLOC_OVERHEAD.  An insert
 * first evicts from the LRU tail until the entry, a possible new key node and
 * a possible table doubling fit, so bytes never exceed the capacity; an
 * object that cannot fit in an empty shard is refused untouched.
 *
 * Locking: one pthread mutex per shard guards everything in the shard,
 * counters included.  An operation holds at most one shard lock at a time
 * (stats and purge_all take them one after the other), so there is no lock
 * order to get wrong.  Lookup's select_fn() runs under the lock; done() runs
 * after it is dropped.
 *
 * References: the store holds one reference per entry.  Entries that an
 * operation drops (evicted, replaced, removed) are unlinked under the lock
 * and collected on a local list; their references are released, and
 * entries freed, after the lock is dropped, so freeing a large body never
 * stalls the shard.  A reader's own reference keeps a dropped object alive.
 */
#include "cache/memstore.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHARD_UNIT ((uint64_t)4 * 1024 * 1024)
#define MAX_SHARDS 64
#define INITIAL_BUCKETS 16

struct ms_key;

/* One variant: an object on its key's variant list and the shard's LRU. */
struct ms_entry {
    struct cache_object *obj;
    struct ms_key *key;
    struct ms_entry *vnewer, *volder;
    struct ms_entry *lru_newer, *lru_older; /* on the graveyard: lru_older links it */
    size_t cost;
};

/* One primary key: a bucket chain link and its variants. */
struct ms_key {
    struct ms_key *chain;
    uint64_t hash;
    struct ms_entry *newest, *oldest;
    unsigned nvariants;
};

#define ENTRY_COST (sizeof(struct ms_entry) + CACHE_OBJECT_ALLOC_OVERHEAD)
#define KEY_COST (sizeof(struct ms_key) + CACHE_OBJECT_ALLOC_OVERHEAD)
#define TABLE_COST(nbuckets) ((nbuckets) * sizeof(struct ms_key *) + CACHE_OBJECT_ALLOC_OVERHEAD)

struct ms_shard {
    alignas(64) pthread_mutex_t lock; /* a cache line each: no false sharing */
    struct ms_key **buckets;
    size_t nbuckets; /* a power of two */
    size_t nkeys;
    struct ms_entry *lru_newest, *lru_oldest;
    uint64_t capacity;
    uint64_t bytes;
    uint64_t objects;
    uint64_t inserts, replaced, evictions, variant_evictions, refused, removed, hits, misses;
};

struct memstore {
    struct cache_store store; /* first: the interface */
    uint64_t capacity;
    unsigned nshards;
    struct ms_shard *shards;
};

static cache_store_lookup_f memstore_lookup;
static cache_store_insert_f memstore_insert;
static cache_store_remove_f memstore_remove;
static cache_store_purge_all_f memstore_purge_all;
static cache_store_sweep_f memstore_sweep;
static cache_store_stats_f memstore_stats;
static cache_store_destroy_f memstore_destroy;

static const struct cache_store_ops memstore_ops = {
    .name = "memory",
    .lookup = memstore_lookup,
    .insert = memstore_insert,
    .remove = memstore_remove,
    .purge_all = memstore_purge_all,
    .sweep = memstore_sweep,
    .stats = memstore_stats,
    .destroy = memstore_destroy,
};

static struct memstore *memstore_of(struct cache_store *store)
{
    assert(store && store->ops == &memstore_ops);
    return (struct memstore *)store;
}

static struct ms_shard *shard_of(struct memstore *ms, uint64_t hash)
{
    return &ms->shards[(hash >> 32) & (ms->nshards - 1)];
}

static struct ms_key **bucket_of(struct ms_shard *sh, uint64_t hash)
{
    return &sh->buckets[hash & (sh->nbuckets - 1)];
}

/* Under the shard lock. */
static struct ms_key *key_find(struct ms_shard *sh, const char *key, size_t len, uint64_t hash)
{
    for (struct ms_key *k = *bucket_of(sh, hash); k; k = k->chain) {
        const struct cache_object *o = k->newest->obj;
        if (k->hash == hash && o->primary_len == len && memcmp(o->primary_key, key, len) == 0)
            return k;
    }
    return NULL;
}

static void lru_unlink(struct ms_shard *sh, struct ms_entry *e)
{
    if (e->lru_newer)
        e->lru_newer->lru_older = e->lru_older;
    else
        sh->lru_newest = e->lru_older;
    if (e->lru_older)
        e->lru_older->lru_newer = e->lru_newer;
    else
        sh->lru_oldest = e->lru_newer;
    e->lru_newer = e->lru_older = NULL;
}

static void lru_push(struct ms_shard *sh, struct ms_entry *e)
{
    e->lru_newer = NULL;
    e->lru_older = sh->lru_newest;
    if (sh->lru_newest)
        sh->lru_newest->lru_newer = e;
    else
        sh->lru_oldest = e;
    sh->lru_newest = e;
}

static void key_unlink(struct ms_shard *sh, struct ms_key *k)
{
    struct ms_key **link = bucket_of(sh, k->hash);

    while (*link != k)
        link = &(*link)->chain;
    *link = k->chain;
    sh->nkeys--;
    sh->bytes -= KEY_COST;
    free(k);
}

/* Unlink e from its key (freeing the key node with its last variant) and
 * from the LRU, uncharge it and put it on *graveyard.  Under the lock. */
static void entry_unlink(struct ms_shard *sh, struct ms_entry *e, struct ms_entry **graveyard)
{
    struct ms_key *k = e->key;

    if (e->vnewer)
        e->vnewer->volder = e->volder;
    else
        k->newest = e->volder;
    if (e->volder)
        e->volder->vnewer = e->vnewer;
    else
        k->oldest = e->vnewer;
    if (--k->nvariants == 0)
        key_unlink(sh, k);
    lru_unlink(sh, e);
    sh->bytes -= e->cost;
    sh->objects--;
    e->key = NULL;
    e->lru_older = *graveyard;
    *graveyard = e;
}

/* Release what entry_unlink() collected.  Without the lock. */
static void graveyard_release(struct ms_entry *e)
{
    while (e) {
        struct ms_entry *next = e->lru_older;
        cache_object_release(&e->obj);
        free(e);
        e = next;
    }
}

/* Double the bucket table if keys outnumber buckets and the bytes allow;
 * a table that cannot grow only makes chains longer. */
static void table_maybe_grow(struct ms_shard *sh)
{
    if (sh->nkeys <= sh->nbuckets)
        return;
    size_t n = sh->nbuckets * 2;
    uint64_t delta = TABLE_COST(n) - TABLE_COST(sh->nbuckets);
    if (sh->bytes + delta > sh->capacity)
        return;
    struct ms_key **buckets = calloc(n, sizeof(*buckets));
    if (!buckets)
        return;
    for (size_t i = 0; i < sh->nbuckets; i++) {
        struct ms_key *k = sh->buckets[i];
        while (k) {
            struct ms_key *next = k->chain;
            struct ms_key **b = &buckets[k->hash & (n - 1)];
            k->chain = *b;
            *b = k;
            k = next;
        }
    }
    free(sh->buckets);
    sh->buckets = buckets;
    sh->nbuckets = n;
    sh->bytes += delta;
}

static void memstore_lookup(struct cache_store *store, const char *key, size_t len, uint64_t hash,
                            cache_store_select_f *select_fn, void *select_ctx,
                            cache_store_done_f *done, void *cb_ctx)
{
    struct memstore *ms = memstore_of(store);
    struct ms_shard *sh = shard_of(ms, hash);
    struct cache_object *found = NULL;

    pthread_mutex_lock(&sh->lock);
    struct ms_key *k = key_find(sh, key, len, hash);
    for (struct ms_entry *e = k ? k->newest : NULL; e; e = e->volder) {
        if (!select_fn || select_fn(select_ctx, e->obj)) {
            found = cache_object_ref(e->obj);
            lru_unlink(sh, e);
            lru_push(sh, e);
            break;
        }
    }
    if (found)
        sh->hits++;
    else
        sh->misses++;
    pthread_mutex_unlock(&sh->lock);
    done(cb_ctx, found);
}

static bool same_secondary(const struct cache_object *a, const struct cache_object *b)
{
    return a->secondary_len == b->secondary_len &&
           memcmp(a->secondary_key, b->secondary_key, a->secondary_len) == 0;
}

/* Make room for obj's key: drop a variant with the same secondary key, then
 * the oldest variants beyond max_variants - 1.  Under the lock. */
static void variants_make_room(struct ms_shard *sh, const struct cache_object *obj,
                               unsigned max_variants, struct ms_entry **graveyard)
{
    const char *key = obj->primary_key;
    size_t len = obj->primary_len;
    uint64_t hash = obj->primary_hash;
    struct ms_key *k = key_find(sh, key, len, hash);

    for (struct ms_entry *e = k ? k->newest : NULL; e; e = e->volder) {
        if (same_secondary(e->obj, obj)) {
            entry_unlink(sh, e, graveyard);
            sh->replaced++;
            break;
        }
    }
    /* Derived copies and real variants are bounded apart (store.h). */
    bool derived = cache_object_is_derived(obj);
    unsigned limit = max_variants ? max_variants : 1;
    if (derived)
        limit *= CACHE_DERIVED_PER_VARIANT;
    for (;;) {
        /* entry_unlink() may have freed the key node: look it up again. */
        k = key_find(sh, key, len, hash);
        unsigned same = 0;
        struct ms_entry *oldest = NULL;
        for (struct ms_entry *e = k ? k->newest : NULL; e; e = e->volder) {
            if (cache_object_is_derived(e->obj) == derived) {
                same++;
                oldest = e;
            }
        }
        if (same < limit)
            return;
        entry_unlink(sh, oldest, graveyard);
        sh->variant_evictions++;
    }
}

static bool memstore_insert(struct cache_store *store, struct cache_object *obj,
                            unsigned max_variants)
{
    struct memstore *ms = memstore_of(store);
    struct ms_shard *sh = shard_of(ms, obj->primary_hash);
    struct ms_entry *graveyard = NULL;
    bool stored = false;
    uint64_t cost = (uint64_t)obj->charge + ENTRY_COST;

    if (max_variants == 0)
        max_variants = 1;
    /* Allocate before taking the lock; the key node may go unused. */
    struct ms_entry *e = calloc(1, sizeof(*e));
    struct ms_key *spare = calloc(1, sizeof(*spare));

    pthread_mutex_lock(&sh->lock);
    if (!e || !spare || cost + KEY_COST > sh->capacity - TABLE_COST(sh->nbuckets))
        goto refuse;
    variants_make_room(sh, obj, max_variants, &graveyard);
    uint64_t grow =
        sh->nkeys >= sh->nbuckets ? TABLE_COST(sh->nbuckets * 2) - TABLE_COST(sh->nbuckets) : 0;
    while (sh->lru_oldest && sh->bytes + cost + KEY_COST + grow > sh->capacity) {
        entry_unlink(sh, sh->lru_oldest, &graveyard);
        sh->evictions++;
    }
    if (sh->bytes + cost + KEY_COST > sh->capacity)
        goto refuse; /* unreachable: an empty shard has room, checked above */

    struct ms_key *k = key_find(sh, obj->primary_key, obj->primary_len, obj->primary_hash);
    if (!k) {
        k = spare;
        spare = NULL;
        k->hash = obj->primary_hash;
        struct ms_key **b = bucket_of(sh, k->hash);
        k->chain = *b;
        *b = k;
        sh->nkeys++;
        sh->bytes += KEY_COST;
    }
    e->obj = cache_object_ref(obj);
    e->key = k;
    e->cost = cost;
    e->volder = k->newest;
    if (k->newest)
        k->newest->vnewer = e;
    else
        k->oldest = e;
    k->newest = e;
    k->nvariants++;
    lru_push(sh, e);
    sh->bytes += cost;
    sh->objects++;
    sh->inserts++;
    e = NULL;
    table_maybe_grow(sh);
    stored = true;
    goto out;
refuse:
    sh->refused++;
out:
    assert(sh->bytes <= sh->capacity);
    pthread_mutex_unlock(&sh->lock);
    free(spare);
    free(e);
    graveyard_release(graveyard);
    return stored;
}

static size_t memstore_remove(struct cache_store *store, const char *key, size_t len, uint64_t hash)
{
    struct memstore *ms = memstore_of(store);
    struct ms_shard *sh = shard_of(ms, hash);
    struct ms_entry *graveyard = NULL;
    size_t n = 0;
    struct ms_key *k;

    pthread_mutex_lock(&sh->lock);
    /* The key node goes with its last variant: look it up each time. */
    while ((k = key_find(sh, key, len, hash))) {
        entry_unlink(sh, k->oldest, &graveyard);
        n++;
    }
    sh->removed += n;
    pthread_mutex_unlock(&sh->lock);
    graveyard_release(graveyard);
    return n;
}

static void memstore_purge_all(struct cache_store *store)
{
    struct memstore *ms = memstore_of(store);

    for (unsigned i = 0; i < ms->nshards; i++) {
        struct ms_shard *sh = &ms->shards[i];
        struct ms_entry *graveyard = NULL;
        pthread_mutex_lock(&sh->lock);
        while (sh->lru_oldest) {
            entry_unlink(sh, sh->lru_oldest, &graveyard);
            sh->removed++;
        }
        pthread_mutex_unlock(&sh->lock);
        graveyard_release(graveyard);
    }
}

static size_t memstore_sweep(struct cache_store *store, cache_store_judge_f *judge, void *ctx,
                             int64_t *oldest_ms)
{
    struct memstore *ms = memstore_of(store);
    int64_t oldest = INT64_MAX;
    size_t n = 0;

    for (unsigned i = 0; i < ms->nshards; i++) {
        struct ms_shard *sh = &ms->shards[i];
        struct ms_entry *graveyard = NULL;
        pthread_mutex_lock(&sh->lock);
        struct ms_entry *e = sh->lru_oldest;
        while (e) {
            struct ms_entry *next = e->lru_newer;
            if (judge(ctx, e->obj)) {
                entry_unlink(sh, e, &graveyard);
                sh->removed++;
                n++;
            } else if (e->obj->stored_at < oldest) {
                oldest = e->obj->stored_at;
            }
            e = next;
        }
        pthread_mutex_unlock(&sh->lock);
        graveyard_release(graveyard);
    }
    if (oldest_ms)
        *oldest_ms = oldest;
    return n;
}

static void memstore_stats(struct cache_store *store, struct cache_store_stats *out)
{
    struct memstore *ms = memstore_of(store);

    memset(out, 0, sizeof(*out));
    out->capacity = ms->capacity;
    for (unsigned i = 0; i < ms->nshards; i++) {
        struct ms_shard *sh = &ms->shards[i];
        pthread_mutex_lock(&sh->lock);
        out->objects += sh->objects;
        out->bytes += sh->bytes;
        out->inserts += sh->inserts;
        out->replaced += sh->replaced;
        out->evictions += sh->evictions;
        out->variant_evictions += sh->variant_evictions;
        out->refused += sh->refused;
        out->removed += sh->removed;
        out->hits += sh->hits;
        out->misses += sh->misses;
        pthread_mutex_unlock(&sh->lock);
    }
}

/* Free shards [0, n) and the store; every shard must be empty. */
static void memstore_free(struct memstore *ms, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        assert(ms->shards[i].objects == 0);
        pthread_mutex_destroy(&ms->shards[i].lock);
        free(ms->shards[i].buckets);
    }
    free(ms->shards);
    free(ms);
}

static void memstore_destroy(struct cache_store **store)
{
    struct memstore *ms = memstore_of(*store);

    *store = NULL;
    memstore_purge_all(&ms->store);
    memstore_free(ms, ms->nshards);
}

struct cache_store *memstore_new(uint64_t capacity, uint64_t largest_object, char *err,
                                 size_t errlen)
{
    struct memstore *ms = NULL;
    unsigned ready = 0;

    if (capacity < MEMSTORE_MIN_CAPACITY) {
        snprintf(err, errlen,
                 "memory store capacity %" PRIu64 " bytes is below the minimum %" PRIu64, capacity,
                 MEMSTORE_MIN_CAPACITY);
        goto fail;
    }
    /* A shard must hold the largest object (twice: room for the others). */
    uint64_t unit = SHARD_UNIT;
    if (largest_object > UINT64_MAX / 4)
        largest_object = UINT64_MAX / 4;
    if (2 * largest_object > unit)
        unit = 2 * largest_object;
    unsigned n = 1;
    while (n < MAX_SHARDS && (uint64_t)n * 2 * unit <= capacity)
        n *= 2;

    ms = calloc(1, sizeof(*ms));
    if (!ms)
        goto oom;
    ms->store.ops = &memstore_ops;
    ms->capacity = capacity;
    ms->nshards = n;
    ms->shards = aligned_alloc(alignof(struct ms_shard), n * sizeof(struct ms_shard));
    if (!ms->shards)
        goto oom;
    memset(ms->shards, 0, n * sizeof(struct ms_shard));
    for (; ready < n; ready++) {
        struct ms_shard *sh = &ms->shards[ready];
        sh->buckets = calloc(INITIAL_BUCKETS, sizeof(*sh->buckets));
        if (!sh->buckets)
            goto oom;
        if (pthread_mutex_init(&sh->lock, NULL) != 0) {
            free(sh->buckets);
            goto oom;
        }
        sh->nbuckets = INITIAL_BUCKETS;
        sh->capacity = capacity / n;
        sh->bytes = TABLE_COST(INITIAL_BUCKETS);
    }
    return &ms->store;
oom:
    snprintf(err, errlen, "memory store: out of memory");
fail:
    if (ms && ms->shards)
        memstore_free(ms, ready);
    else
        free(ms);
    return NULL;
}

uint64_t memstore_shard_capacity(const struct cache_store *store)
{
    assert(store && store->ops == &memstore_ops);
    const struct memstore *ms = (const struct memstore *)store;
    return ms->shards[0].capacity;
}
