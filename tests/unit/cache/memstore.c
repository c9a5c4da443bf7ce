/*
 * tests/unit/cache/memstore.c: the memory store (cache/memstore.c): hits and
 * misses, LRU eviction and its accounting, variants, remove, purge, refusal,
 * object lifetime against readers, sweeps, and a multi-threaded run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <time.h>
#include <xxhash.h>

#include "cache/memstore.h"

#define KIB ((uint64_t)1024)
#define MIB (1024 * KIB)

static uint64_t hash_of(const char *key)
{
    return XXH3_64bits_withSeed(key, strlen(key), 0);
}

static unsigned char body_byte(int seed, size_t i)
{
    return (unsigned char)(seed * 31 + i * 7);
}

/* An object for key/secondary with a body of body_len bytes; `seed` goes in
 * its status and decides its body bytes, so a reader can check it whole. */
static struct cache_object *make_obj_hash(const char *key, uint64_t hash, const char *secondary,
                                          size_t body_len, int seed)
{
    struct cache_object_meta m = {
        .primary_key = key,
        .primary_len = strlen(key),
        .primary_hash = hash,
        .secondary_key = secondary,
        .secondary_len = strlen(secondary),
        .vary = secondary[0] ? "Accept-Encoding" : "",
        .vary_len = secondary[0] ? strlen("Accept-Encoding") : 0,
        .status = seed,
    };
    unsigned char buf[4096];
    struct cache_object_builder *b = cache_object_builder_new(&m, SIZE_MAX);

    if (!b)
        abort();
    if (!cache_object_builder_set_head(b, "Content-Type: text/plain\r\n", 26))
        abort();
    for (size_t off = 0; off < body_len; off += sizeof(buf)) {
        size_t n = body_len - off < sizeof(buf) ? body_len - off : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = body_byte(seed, off + i);
        if (!cache_object_builder_append(b, buf, n))
            abort();
    }
    struct cache_object *obj = cache_object_builder_finish(&b);
    if (!obj)
        abort();
    return obj;
}

static struct cache_object *make_obj(const char *key, const char *secondary, size_t body_len,
                                     int seed)
{
    return make_obj_hash(key, hash_of(key), secondary, body_len, seed);
}

/* Whether obj's body is intact (callable from threads: no cmocka). */
static bool body_intact(const struct cache_object *obj)
{
    struct iovec iov[4];
    size_t pos = 0, n;

    while ((n = cache_object_body_iov(obj, pos, iov, 4)) > 0) {
        for (size_t i = 0; i < n; i++) {
            const unsigned char *p = iov[i].iov_base;
            for (size_t j = 0; j < iov[i].iov_len; j++)
                if (p[j] != body_byte(obj->status, pos + j))
                    return false;
            pos += iov[i].iov_len;
        }
    }
    return pos == obj->body_len;
}

/* Insert and drop the caller's reference: the store keeps its own. */
static bool put(struct cache_store *s, const char *key, const char *secondary, size_t body_len,
                int seed, unsigned max_variants)
{
    struct cache_object *obj = make_obj(key, secondary, body_len, seed);
    bool ok = cache_store_insert(s, obj, max_variants);
    cache_object_release(&obj);
    return ok;
}

struct lookup_result {
    bool called;
    struct cache_object *obj;
};

static void on_done(void *ctx, struct cache_object *obj)
{
    struct lookup_result *r = ctx;

    r->called = true;
    r->obj = obj;
}

static bool select_secondary(void *ctx, const struct cache_object *variant)
{
    const char *want = ctx;

    return variant->secondary_len == strlen(want) &&
           memcmp(variant->secondary_key, want, variant->secondary_len) == 0;
}

/* Look key up (variant `secondary`, or the newest when NULL); the caller owns
 * the returned reference. */
static struct cache_object *get(struct cache_store *s, const char *key, const char *secondary)
{
    struct lookup_result r = {0};

    cache_store_lookup(s, key, strlen(key), hash_of(key), secondary ? select_secondary : NULL,
                       (void *)secondary, on_done, &r);
    if (!r.called) /* the memory store completes before returning */
        abort();
    return r.obj;
}

/* Whether key (variant) is there, without keeping a reference. */
static bool has(struct cache_store *s, const char *key, const char *secondary)
{
    struct cache_object *obj = get(s, key, secondary);
    bool found = obj != NULL;
    cache_object_release(&obj);
    return found;
}

static struct cache_store *new_store(uint64_t capacity)
{
    char err[256] = "";
    struct cache_store *s = memstore_new(capacity, 0, err, sizeof(err));

    if (!s)
        fail_msg("memstore_new: %s", err);
    return s;
}

static struct cache_store_stats stats_of(struct cache_store *s)
{
    struct cache_store_stats st;

    cache_store_stats(s, &st);
    return st;
}

static void test_new_rejects_tiny_capacity(void **state)
{
    char err[128] = "";

    (void)state;
    assert_null(memstore_new(1000, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "below the minimum"));
    struct cache_store *s = new_store(MEMSTORE_MIN_CAPACITY);
    assert_string_equal(s->ops->name, "memory");
    assert_int_equal(stats_of(s).capacity, MEMSTORE_MIN_CAPACITY);
    cache_store_destroy(&s);
    assert_null(s);
}

static void test_shards_split_the_capacity(void **state)
{
    (void)state;
    struct cache_store *s = new_store(1 * MIB);
    assert_int_equal(memstore_shard_capacity(s), 1 * MIB);
    cache_store_destroy(&s);
    s = new_store(16 * MIB);
    assert_int_equal(memstore_shard_capacity(s), 4 * MIB);
    cache_store_destroy(&s);
    s = new_store(1024 * MIB);
    assert_int_equal(memstore_shard_capacity(s), 16 * MIB); /* 64 shards at most */
    cache_store_destroy(&s);
}

/* Shards are sized for the largest object the routes may store: with the
 * default 256m and max_object_size 8m, an object of 5 MB is kept (it was
 * refused with 4 MiB shards). */
static void test_shards_fit_the_largest_object(void **state)
{
    (void)state;
    char err[256];
    long live = cache_object_live_count();
    struct cache_store *s = memstore_new(256 * MIB, 8 * MIB, err, sizeof err);
    assert_non_null(s);
    assert_true(memstore_shard_capacity(s) >= 16 * MIB);
    struct cache_object *big = make_obj("five", "", 5 * MIB, 1);
    assert_true(cache_store_insert(s, big, 16));
    cache_object_release(&big);
    assert_true(has(s, "five", NULL));
    cache_store_destroy(&s);
    /* A store too small for it still works; the object is refused. */
    s = memstore_new(1 * MIB, 8 * MIB, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(memstore_shard_capacity(s), 1 * MIB);
    cache_store_destroy(&s);
    assert_int_equal(cache_object_live_count(), live);
}

static void test_hit_and_miss(void **state)
{
    long live = cache_object_live_count();

    (void)state;
    struct cache_store *s = new_store(1 * MIB);
    struct cache_store_stats empty = stats_of(s);
    struct cache_object *obj = make_obj("http://a/1", "", 1000, 1);
    assert_true(cache_store_insert(s, obj, 16));

    struct cache_object *hit = get(s, "http://a/1", NULL);
    assert_ptr_equal(hit, obj);
    assert_int_equal(atomic_load(&obj->refs), 3); /* ours, the store's, the hit's */
    cache_object_release(&hit);
    assert_null(get(s, "http://a/2", NULL));
    assert_null(get(s, "http://a/1", "gzip")); /* no such variant */

    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.inserts, 1);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 2);
    assert_true(st.bytes >= empty.bytes + obj->charge);
    assert_true(st.bytes <= empty.bytes + obj->charge + 256);

    cache_object_release(&obj);
    assert_int_equal(cache_object_live_count(), live + 1); /* the store's */
    cache_store_destroy(&s);
    assert_int_equal(cache_object_live_count(), live);
}

static void test_keys_compared_in_full(void **state)
{
    (void)state;
    struct cache_store *s = new_store(1 * MIB);
    /* Two keys with the same hash share a shard and a bucket. */
    struct cache_object *a = make_obj_hash("key-a", 77, "", 10, 1);
    struct cache_object *b = make_obj_hash("key-b", 77, "", 10, 2);
    assert_true(cache_store_insert(s, a, 4));
    assert_true(cache_store_insert(s, b, 4));
    struct lookup_result r = {0};
    cache_store_lookup(s, "key-a", 5, 77, NULL, NULL, on_done, &r);
    assert_ptr_equal(r.obj, a);
    cache_object_release(&r.obj);
    cache_store_lookup(s, "key-b", 5, 77, NULL, NULL, on_done, &r);
    assert_ptr_equal(r.obj, b);
    cache_object_release(&r.obj);
    cache_store_lookup(s, "key-c", 5, 77, NULL, NULL, on_done, &r);
    assert_null(r.obj);
    cache_store_lookup(s, "key-", 4, 77, NULL, NULL, on_done, &r);
    assert_null(r.obj);
    assert_int_equal(cache_store_remove(s, "key-a", 5, 77), 1);
    cache_store_lookup(s, "key-b", 5, 77, NULL, NULL, on_done, &r);
    assert_ptr_equal(r.obj, b);
    cache_object_release(&r.obj);
    cache_object_release(&a);
    cache_object_release(&b);
    cache_store_destroy(&s);
}

/* With 64 KiB and 20 KiB bodies, three objects fit and a fourth does not. */
static void test_lru_evicts_least_recently_used(void **state)
{
    (void)state;
    struct cache_store *s = new_store(64 * KIB);
    struct cache_store_stats empty = stats_of(s);

    assert_true(put(s, "A", "", 20 * KIB, 1, 16));
    assert_true(put(s, "B", "", 20 * KIB, 2, 16));
    assert_true(put(s, "C", "", 20 * KIB, 3, 16));
    struct cache_store_stats full = stats_of(s);
    assert_int_equal(full.objects, 3);
    assert_int_equal(full.evictions, 0);
    uint64_t per_object = (full.bytes - empty.bytes) / 3;

    /* A hit makes A the most recent: B is now the oldest. */
    assert_true(has(s, "A", NULL));
    assert_true(put(s, "D", "", 20 * KIB, 4, 16));
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 3);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.bytes, full.bytes); /* one out, one of the same size in */
    assert_false(has(s, "B", NULL));
    assert_true(has(s, "A", NULL));
    assert_true(has(s, "C", NULL));
    assert_true(has(s, "D", NULL));

    /* Order now, oldest first: C, A, D.  A 40 KiB object evicts C and A. */
    assert_true(put(s, "E", "", 40 * KIB, 5, 16));
    st = stats_of(s);
    assert_int_equal(st.evictions, 3);
    assert_int_equal(st.objects, 2);
    assert_false(has(s, "C", NULL));
    assert_false(has(s, "A", NULL));
    assert_true(has(s, "D", NULL));
    assert_true(has(s, "E", NULL));
    assert_true(st.bytes <= st.capacity);

    /* Removing everything brings the bytes back to the empty store's. */
    assert_int_equal(cache_store_remove(s, "D", 1, hash_of("D")), 1);
    st = stats_of(s);
    /* E's body is 20 KiB longer than the others', and both sit in one block. */
    assert_int_equal(st.bytes, empty.bytes + per_object + 20 * KIB);
    assert_int_equal(cache_store_remove(s, "E", 1, hash_of("E")), 1);
    st = stats_of(s);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.bytes, empty.bytes);
    cache_store_destroy(&s);
}

static void test_reader_keeps_evicted_object(void **state)
{
    long live = cache_object_live_count();

    (void)state;
    struct cache_store *s = new_store(64 * KIB);
    assert_true(put(s, "A", "", 30 * KIB, 9, 16));
    struct cache_object *reader = get(s, "A", NULL);
    assert_non_null(reader);

    /* Evicted by LRU while the reader holds it. */
    assert_true(put(s, "B", "", 30 * KIB, 2, 16));
    assert_true(put(s, "C", "", 30 * KIB, 3, 16));
    assert_false(has(s, "A", NULL));
    assert_int_equal(stats_of(s).evictions, 1);
    assert_int_equal(cache_object_live_count(), live + 3);
    assert_true(body_intact(reader));
    assert_int_equal(reader->status, 9);
    cache_object_release(&reader);
    assert_int_equal(cache_object_live_count(), live + 2);

    /* Removed and purged while a reader holds them. */
    reader = get(s, "B", NULL);
    struct cache_object *reader2 = get(s, "C", NULL);
    assert_int_equal(cache_store_remove(s, "B", 1, hash_of("B")), 1);
    cache_store_purge_all(s);
    cache_store_destroy(&s);
    assert_int_equal(cache_object_live_count(), live + 2);
    assert_true(body_intact(reader));
    assert_true(body_intact(reader2));
    cache_object_release(&reader);
    cache_object_release(&reader2);
    assert_int_equal(cache_object_live_count(), live);
}

/* Derived copies (coded variants) are bounded apart from real variants:
 * they never evict one, and real ones never count them. */
static void test_derived_variants_are_bounded_apart(void **state)
{
    (void)state;
    struct cache_store *s = new_store(64ull << 20);
    const char *key = "http://a/d";
    assert_true(put(s, key, "lang=en", 100, 1, 1));
    char derived[8][32];
    for (int i = 0; i < 5; i++) {
        snprintf(derived[i], sizeof derived[i], "lang=en\x1f%d", i);
        assert_true(put(s, key, derived[i], 100, 2 + i, 1));
        assert_true(has(s, key, "lang=en")); /* the real variant stays */
    }
    /* max_variants 1: 4 derived copies at most, the oldest went first */
    assert_false(has(s, key, derived[0]));
    for (int i = 1; i < 5; i++)
        assert_true(has(s, key, derived[i]));
    /* a second real variant evicts the first real one, not a copy */
    assert_true(put(s, key, "lang=fr", 100, 9, 1));
    assert_false(has(s, key, "lang=en"));
    assert_true(has(s, key, "lang=fr"));
    assert_true(has(s, key, derived[4]));
    cache_store_destroy(&s);
}

static void test_insert_replaces_same_variant(void **state)
{
    long live = cache_object_live_count();

    (void)state;
    struct cache_store *s = new_store(1 * MIB);
    struct cache_store_stats empty = stats_of(s);
    assert_true(put(s, "K", "gzip", 5000, 1, 16));
    struct cache_object *old = get(s, "K", "gzip");
    assert_true(put(s, "K", "gzip", 5000, 2, 16));
    assert_true(put(s, "K", "br", 5000, 3, 16));

    struct cache_object *now = get(s, "K", "gzip");
    assert_int_equal(now->status, 2);
    assert_int_equal(old->status, 1); /* the reader's copy is untouched */
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 2);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(st.inserts, 3);
    cache_object_release(&old);
    assert_int_equal(cache_object_live_count(), live + 2); /* `old` is gone, `now` is stored */
    cache_object_release(&now);

    /* Re-inserting the very object it holds is a replace too. */
    now = get(s, "K", "br");
    assert_true(cache_store_insert(s, now, 16));
    cache_object_release(&now);
    st = stats_of(s);
    assert_int_equal(st.objects, 2);
    assert_int_equal(st.replaced, 2);
    assert_true(has(s, "K", "br"));

    cache_store_purge_all(s);
    assert_int_equal(stats_of(s).bytes, empty.bytes);
    assert_int_equal(cache_object_live_count(), live);
    cache_store_destroy(&s);
}

static void test_max_variants_evicts_oldest(void **state)
{
    const char *secondary[] = {"v1", "v2", "v3", "v4", "v5"};

    (void)state;
    struct cache_store *s = new_store(1 * MIB);
    for (int i = 0; i < 5; i++)
        assert_true(put(s, "K", secondary[i], 100, i, 3));
    /* Looking v3 up does not save it: variants age by insertion. */
    assert_true(has(s, "K", "v3"));
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 3);
    assert_int_equal(st.variant_evictions, 2);
    assert_int_equal(st.evictions, 0);
    assert_false(has(s, "K", "v1"));
    assert_false(has(s, "K", "v2"));
    assert_true(has(s, "K", "v4"));
    assert_true(has(s, "K", "v5"));

    /* Without a select function the newest variant answers. */
    struct cache_object *obj = get(s, "K", NULL);
    assert_int_equal(obj->status, 4);
    cache_object_release(&obj);

    assert_true(put(s, "K", "v6", 100, 6, 3));
    assert_false(has(s, "K", "v3"));
    /* A lower limit on a later insert trims the key to it; 0 counts as 1. */
    assert_true(put(s, "K", "v7", 100, 7, 0));
    st = stats_of(s);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.variant_evictions, 6);
    assert_true(has(s, "K", "v7"));
    cache_store_destroy(&s);
}

static void test_remove_drops_all_variants(void **state)
{
    (void)state;
    struct cache_store *s = new_store(1 * MIB);
    struct cache_store_stats empty = stats_of(s);
    assert_true(put(s, "K", "a", 100, 1, 16));
    assert_true(put(s, "K", "b", 100, 2, 16));
    assert_true(put(s, "K", "c", 100, 3, 16));
    assert_true(put(s, "L", "", 100, 4, 16));
    struct cache_store_stats l_only = stats_of(s);

    assert_int_equal(cache_store_remove(s, "K", 1, hash_of("K")), 3);
    assert_false(has(s, "K", NULL));
    assert_false(has(s, "K", "b"));
    assert_true(has(s, "L", NULL));
    assert_int_equal(cache_store_remove(s, "K", 1, hash_of("K")), 0);
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.removed, 3);
    assert_true(st.bytes < l_only.bytes);
    assert_int_equal(cache_store_remove(s, "L", 1, hash_of("L")), 1);
    assert_int_equal(stats_of(s).bytes, empty.bytes);
    cache_store_destroy(&s);
}

static void test_purge_all(void **state)
{
    char key[32];
    long live = cache_object_live_count();

    (void)state;
    struct cache_store *s = new_store(16 * MIB); /* 4 shards */
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "http://h/%d", i);
        assert_true(put(s, key, "", (size_t)i * 100, i, 16));
    }
    assert_int_equal(stats_of(s).objects, 200);
    cache_store_purge_all(s);
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.removed, 200);
    assert_int_equal(cache_object_live_count(), live);
    assert_false(has(s, "http://h/5", NULL));
    /* Still usable. */
    assert_true(put(s, "http://h/5", "", 10, 5, 16));
    assert_true(has(s, "http://h/5", NULL));
    cache_store_destroy(&s);
    assert_int_equal(cache_object_live_count(), live);
}

static void test_oversize_is_refused(void **state)
{
    long live = cache_object_live_count();

    (void)state;
    struct cache_store *s = new_store(64 * KIB);
    assert_true(put(s, "small", "", 1000, 1, 16));
    struct cache_store_stats before = stats_of(s);

    struct cache_object *big = make_obj("big", "", 64 * KIB, 2);
    assert_false(cache_store_insert(s, big, 16));
    assert_int_equal(atomic_load(&big->refs), 1); /* the store kept nothing */
    cache_object_release(&big);
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.refused, 1);
    assert_int_equal(st.inserts, 1);
    assert_int_equal(st.bytes, before.bytes);
    assert_int_equal(st.evictions, 0);
    assert_true(has(s, "small", NULL)); /* nothing was evicted for it */
    assert_false(has(s, "big", NULL));

    /* A refused replacement leaves the old variant in place. */
    assert_false(put(s, "small", "", 100 * KIB, 3, 16));
    struct cache_object *obj = get(s, "small", NULL);
    assert_int_equal(obj->status, 1);
    cache_object_release(&obj);
    cache_store_destroy(&s);
    assert_int_equal(cache_object_live_count(), live);
}

/* ---- sweep ---- */

/* An object for key/secondary stored at stored_at, with a short body. */
static struct cache_object *make_obj_at(const char *key, const char *secondary, int64_t stored_at)
{
    struct cache_object_meta m = {
        .primary_key = key,
        .primary_len = strlen(key),
        .primary_hash = hash_of(key),
        .secondary_key = secondary,
        .secondary_len = strlen(secondary),
        .vary = secondary[0] ? "Accept-Encoding" : "",
        .vary_len = secondary[0] ? strlen("Accept-Encoding") : 0,
        .status = 200,
        .stored_at = stored_at,
    };
    struct cache_object_builder *b = cache_object_builder_new(&m, SIZE_MAX);

    if (!b || !cache_object_builder_append(b, "body", 4))
        abort();
    struct cache_object *obj = cache_object_builder_finish(&b);
    if (!obj)
        abort();
    return obj;
}

static void put_at(struct cache_store *s, const char *key, const char *secondary, int64_t stored_at)
{
    struct cache_object *obj = make_obj_at(key, secondary, stored_at);
    assert_true(cache_store_insert(s, obj, 16));
    cache_object_release(&obj);
}

struct judge_ctx {
    const char *prefix; /* drop keys starting with this; NULL: drop all */
    size_t calls;
};

static bool judge_prefix(void *ctx, struct cache_object *obj)
{
    struct judge_ctx *j = ctx;
    size_t n = j->prefix ? strlen(j->prefix) : 0;

    j->calls++;
    return obj->primary_len >= n && memcmp(obj->primary_key, j->prefix ? j->prefix : "", n) == 0;
}

static void test_sweep(void **state)
{
    long live = cache_object_live_count();

    (void)state;
    struct cache_store *s = new_store(16 * MIB); /* 4 shards */
    struct cache_store_stats empty = stats_of(s);
    /* Dropped: 6 objects under "http://h/a..." (3 variants of one key). */
    put_at(s, "http://h/a", "", 100);
    put_at(s, "http://h/a1", "", 50);
    put_at(s, "http://h/a/x", "gzip", 10);
    put_at(s, "http://h/a/x", "br", 20);
    put_at(s, "http://h/a/x", "", 30);
    put_at(s, "http://h/about?x=1", "", 900);
    /* Kept: 5 objects, the oldest stored at 300. */
    put_at(s, "http://h/b", "", 500);
    put_at(s, "http://h/b", "gzip", 300);
    put_at(s, "http://h/", "", 700);
    put_at(s, "http://g/a", "", 400);
    put_at(s, "http://h/A", "", 1000);
    for (int i = 0; i < 40; i++) { /* more, to spread over the shards */
        char key[32];
        snprintf(key, sizeof key, "http://h/a/many/%d", i);
        put_at(s, key, "", 5);
        snprintf(key, sizeof key, "http://h/c/%d", i);
        put_at(s, key, "", 600 + i);
    }
    struct cache_object *reader = get(s, "http://h/a/x", "br");
    assert_non_null(reader);
    struct cache_store_stats before = stats_of(s);
    assert_int_equal(before.objects, 91);

    struct judge_ctx j = {"http://h/a", 0};
    int64_t oldest = 0;
    assert_int_equal(cache_store_sweep(s, judge_prefix, &j, &oldest), 46);
    assert_int_equal(j.calls, 91);
    assert_true(oldest == 300);

    assert_false(has(s, "http://h/a", NULL));
    assert_false(has(s, "http://h/a1", NULL));
    assert_false(has(s, "http://h/a/x", NULL));
    assert_false(has(s, "http://h/a/x", "gzip"));
    assert_false(has(s, "http://h/a/x", "br"));
    assert_false(has(s, "http://h/about?x=1", NULL));
    assert_false(has(s, "http://h/a/many/7", NULL));
    assert_true(has(s, "http://h/b", NULL));
    assert_true(has(s, "http://h/b", "gzip"));
    assert_true(has(s, "http://h/", NULL));
    assert_true(has(s, "http://g/a", NULL));
    assert_true(has(s, "http://h/A", NULL));
    assert_true(has(s, "http://h/c/0", NULL));
    assert_true(has(s, "http://h/c/39", NULL));

    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 45);
    assert_int_equal(st.removed, before.removed + 46);
    assert_true(st.bytes < before.bytes);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.inserts, before.inserts);
    /* The store's references went; the reader's stays good. */
    assert_int_equal(cache_object_live_count(), live + 45 + 1);
    assert_string_equal(reader->primary_key, "http://h/a/x");
    assert_int_equal(reader->stored_at, 20);
    cache_object_release(&reader);
    assert_int_equal(cache_object_live_count(), live + 45);

    /* A sweep that drops nothing; oldest_ms may be NULL. */
    j = (struct judge_ctx){"http://nothing/", 0};
    assert_int_equal(cache_store_sweep(s, judge_prefix, &j, NULL), 0);
    assert_int_equal(j.calls, 45);
    assert_int_equal(cache_store_sweep(s, judge_prefix, &j, &oldest), 0);
    assert_true(oldest == 300);
    assert_int_equal(stats_of(s).removed, before.removed + 46);

    /* Dropped keys can be stored again. */
    put_at(s, "http://h/a/x", "gzip", 2000);
    assert_true(has(s, "http://h/a/x", "gzip"));

    /* Drop everything: nothing is left, oldest is INT64_MAX. */
    j = (struct judge_ctx){NULL, 0};
    assert_int_equal(cache_store_sweep(s, judge_prefix, &j, &oldest), 46);
    assert_true(oldest == INT64_MAX);
    st = stats_of(s);
    assert_int_equal(st.objects, 0);
    assert_true(st.bytes >= empty.bytes); /* bucket tables may have grown */
    assert_true(st.bytes < before.bytes);
    assert_int_equal(st.removed, before.removed + 92);
    assert_false(has(s, "http://h/b", NULL));
    assert_int_equal(cache_object_live_count(), live);
    cache_store_destroy(&s);
    assert_int_equal(cache_object_live_count(), live);
}

static void test_sweep_empty_store(void **state)
{
    (void)state;
    struct cache_store *s = new_store(16 * MIB);
    struct judge_ctx j = {NULL, 0};
    int64_t oldest = 0;

    assert_int_equal(cache_store_sweep(s, judge_prefix, &j, &oldest), 0);
    assert_int_equal(j.calls, 0);
    assert_true(oldest == INT64_MAX);
    assert_int_equal(cache_store_sweep(s, judge_prefix, &j, NULL), 0);
    struct cache_store_stats st = stats_of(s);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.removed, 0);
    cache_store_destroy(&s);

    /* A one-shard store, emptied by purge_all before the sweep. */
    s = new_store(1 * MIB);
    put_at(s, "http://h/x", "", 1);
    cache_store_purge_all(s);
    oldest = 0;
    assert_int_equal(cache_store_sweep(s, judge_prefix, &j, &oldest), 0);
    assert_int_equal(j.calls, 0);
    assert_true(oldest == INT64_MAX);
    cache_store_destroy(&s);
}

/* Negative and zero stored_at values count for oldest_ms too. */
static void test_sweep_oldest_negative(void **state)
{
    (void)state;
    struct cache_store *s = new_store(1 * MIB);
    struct judge_ctx j = {"http://h/drop", 0};
    int64_t oldest = 0;

    put_at(s, "http://h/drop", "", -1000);
    put_at(s, "http://h/keep", "", -5);
    put_at(s, "http://h/keep2", "", 0);
    assert_int_equal(cache_store_sweep(s, judge_prefix, &j, &oldest), 1);
    assert_true(oldest == -5);
    cache_store_destroy(&s);
}

/* Fill with 10x the capacity in random sizes, some chunked: the bytes never
 * pass the capacity, and go back to the empty store's when purged. */
static void fill_ten_times(uint64_t capacity, size_t max_body, unsigned keys)
{
    char key[32];
    unsigned seed = 12345;
    uint64_t filled = 0;
    long live = cache_object_live_count();

    struct cache_store *s = new_store(capacity);
    struct cache_store_stats empty = stats_of(s);
    while (filled < 10 * capacity) {
        size_t len = (size_t)rand_r(&seed) % (max_body + 1);
        snprintf(key, sizeof(key), "k%u", (unsigned)rand_r(&seed) % keys);
        const char *sec = rand_r(&seed) % 4 == 0 ? "gzip" : "";
        struct cache_object *obj = make_obj(key, sec, len, (int)len);
        filled += obj->charge;
        bool ok = cache_store_insert(s, obj, 4);
        cache_object_release(&obj);
        assert_true(ok);
        struct cache_store_stats st = stats_of(s);
        assert_true(st.bytes <= capacity);
        assert_int_equal(cache_object_live_count(), live + (long)st.objects);
    }
    struct cache_store_stats st = stats_of(s);
    assert_true(st.evictions > 0);
    assert_true(st.objects > 0);
    assert_int_equal(st.refused, 0);
    cache_store_purge_all(s);
    assert_true(stats_of(s).bytes >= empty.bytes); /* tables may have grown */
    assert_int_equal(stats_of(s).objects, 0);
    cache_store_destroy(&s);
    assert_int_equal(cache_object_live_count(), live);
}

static void test_fill_ten_times_capacity(void **state)
{
    (void)state;
    fill_ten_times(256 * KIB, 20 * KIB, 1000);       /* one shard, small objects */
    fill_ten_times(8 * MIB, 300 * KIB, 5000);        /* two shards, chunked bodies */
    fill_ten_times(MEMSTORE_MIN_CAPACITY, 64, 5000); /* many tiny objects: tables grow */
}

/* ---- concurrency ---- */

#define THREADS 4
#define KEYS 200
#define HELD 8

struct worker_arg {
    struct cache_store *store;
    uint64_t capacity;
    size_t max_body;
    double seconds;
    unsigned seed;
    bool ok;
    unsigned long ops;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *p)
{
    struct worker_arg *a = p;
    struct cache_object *held[HELD] = {0};
    static const char *secondaries[] = {"", "gzip", "br"};
    char key[32];
    double end = now_s() + a->seconds;

    a->ok = true;
    while (now_s() < end) {
        for (int round = 0; round < 50; round++, a->ops++) {
            unsigned r = (unsigned)rand_r(&a->seed);
            snprintf(key, sizeof(key), "http://h/%u", r % KEYS);
            const char *sec = secondaries[(r >> 10) % 3];
            unsigned op = (r >> 12) % 100;
            if (op < 40) {
                size_t len = (size_t)rand_r(&a->seed) % (a->max_body + 1);
                struct cache_object *obj = make_obj(key, sec, len, rand_r(&a->seed) % 1000);
                cache_store_insert(a->store, obj, 2);
                cache_object_release(&obj);
            } else if (op < 85) {
                struct cache_object *obj = get(a->store, key, (r >> 20) % 2 ? sec : NULL);
                if (obj && (strcmp(obj->primary_key, key) != 0 || !body_intact(obj)))
                    a->ok = false;
                /* Hold it a while, as a slow client would. */
                unsigned slot = (r >> 24) % HELD;
                if (held[slot] && !body_intact(held[slot]))
                    a->ok = false;
                cache_object_release(&held[slot]);
                held[slot] = obj;
            } else if (op < 95) {
                cache_store_remove(a->store, key, strlen(key), hash_of(key));
            } else if (op < 99) {
                struct cache_store_stats st;
                cache_store_stats(a->store, &st);
                if (st.bytes > a->capacity)
                    a->ok = false;
            } else if (r % 50 == 0) {
                cache_store_purge_all(a->store);
            }
        }
    }
    for (int i = 0; i < HELD; i++) {
        if (held[i] && !body_intact(held[i]))
            a->ok = false;
        cache_object_release(&held[i]);
    }
    return NULL;
}

static void run_concurrently(uint64_t capacity, size_t max_body, double seconds)
{
    pthread_t t[THREADS];
    struct worker_arg args[THREADS];
    long live = cache_object_live_count();
    unsigned long ops = 0;

    struct cache_store *s = new_store(capacity);
    struct cache_store_stats empty = stats_of(s);
    for (int i = 0; i < THREADS; i++) {
        args[i] =
            (struct worker_arg){s, capacity, max_body, seconds, 1000u + (unsigned)i, false, 0};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_true(args[i].ok);
        ops += args[i].ops;
    }
    struct cache_store_stats st = stats_of(s);
    print_message("    %lu ops: %" PRIu64 " objects, %" PRIu64 "/%" PRIu64 " bytes, %" PRIu64
                  " inserts, %" PRIu64 " evictions, %" PRIu64 " hits, %" PRIu64 " misses\n",
                  ops, st.objects, st.bytes, st.capacity, st.inserts, st.evictions, st.hits,
                  st.misses);
    assert_true(st.bytes <= capacity);
    assert_true(st.inserts > 0 && st.hits > 0 && st.misses > 0);
    /* Readers have released everything: the store's references are the only ones. */
    assert_int_equal(cache_object_live_count(), live + (long)st.objects);
    assert_true(st.objects <= KEYS * 2);
    /* Every object went in once and out once, or is still there. */
    assert_int_equal(st.inserts,
                     st.objects + st.replaced + st.evictions + st.variant_evictions + st.removed);
    cache_store_purge_all(s);
    st = stats_of(s);
    assert_int_equal(st.objects, 0);
    assert_true(st.bytes >= empty.bytes);
    assert_int_equal(cache_object_live_count(), live);
    cache_store_destroy(&s);
    assert_int_equal(cache_object_live_count(), live);
}

static void test_concurrent_small_store(void **state)
{
    (void)state;
    run_concurrently(128 * KIB, 8 * KIB, 0.6); /* one shard, constant eviction */
}

static void test_concurrent_sharded_store(void **state)
{
    (void)state;
    run_concurrently(16 * MIB, 160 * KIB, 0.6); /* four shards, chunked bodies */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_rejects_tiny_capacity),
        cmocka_unit_test(test_shards_split_the_capacity),
        cmocka_unit_test(test_shards_fit_the_largest_object),
        cmocka_unit_test(test_hit_and_miss),
        cmocka_unit_test(test_keys_compared_in_full),
        cmocka_unit_test(test_lru_evicts_least_recently_used),
        cmocka_unit_test(test_reader_keeps_evicted_object),
        cmocka_unit_test(test_insert_replaces_same_variant),
        cmocka_unit_test(test_derived_variants_are_bounded_apart),
        cmocka_unit_test(test_max_variants_evicts_oldest),
        cmocka_unit_test(test_remove_drops_all_variants),
        cmocka_unit_test(test_purge_all),
        cmocka_unit_test(test_oversize_is_refused),
        cmocka_unit_test(test_fill_ten_times_capacity),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_sweep_empty_store),
        cmocka_unit_test(test_sweep_oldest_negative),
        cmocka_unit_test(test_concurrent_small_store),
        cmocka_unit_test(test_concurrent_sharded_store),
    };

    return cmocka_run_group_tests_name("cache/memstore", tests, NULL, NULL);
}
