/*
 * tests/unit/cache/codec.c: the memcached encoding of objects and its
 * decoder (cache/codec.c): round trips across item-size boundaries, and
 * hostile input (every truncation, bit flips, lying lengths, missing,
 * duplicated, reordered and foreign chunks, random garbage) that must be a
 * miss with a reason, never a crash.  Inputs are copied into buffers of
 * their exact size so valgrind or ASan catch any over-read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache/codec.h"
#include "cache/key.h"

#define KEY "http://example.com/a/b?c=d\nh:accept-language=en"
#define HASH ((uint64_t)0x1234567890abcdefull)
#define ERRLEN 128

static unsigned char pattern_at(size_t i)
{
    return (unsigned char)(i * 7 + i / 251);
}

/* ---- objects ---- */

static const struct cache_object_tag rich_tags[] = {
    {"product-1", 9},
    {"", 0},
    {"catalog", 7},
};

static struct cache_object *make(const char *key, size_t body_len, int64_t stored_at, bool rich)
{
    static const char head[] = "Content-Type: text/html\r\nCache-Control: max-age=60\r\n";
    struct cache_object_meta m = {
        .primary_key = key,
        .primary_len = strlen(key),
        .primary_hash = 99,
        .status = 200,
        .stored_at = stored_at,
    };
    if (rich) {
        m.secondary_key = "accept-encoding=gzip\n";
        m.secondary_len = strlen(m.secondary_key);
        m.vary = "Accept-Encoding";
        m.vary_len = strlen(m.vary);
        m.status = 203;
        m.request_time = -5;
        m.response_time = INT64_MAX;
        m.corrected_initial_age = INT64_MIN;
        m.lifetime = 60000;
        m.stale_while_revalidate = 1;
        m.stale_if_error = 86400000;
        m.no_cache = true;
        m.must_revalidate = true;
        m.esi_template = true;
        m.etag = "W/\"abc\"";
        m.etag_len = strlen(m.etag);
        m.last_modified_ms = 1700000000000;
        m.tags = rich_tags;
        m.ntags = 3;
    }
    struct cache_object_builder *b = cache_object_builder_new(&m, SIZE_MAX);
    assert_non_null(b);
    if (rich)
        assert_true(cache_object_builder_set_head(b, head, strlen(head)));
    unsigned char buf[4096];
    for (size_t off = 0; off < body_len;) {
        size_t n = body_len - off < sizeof buf ? body_len - off : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern_at(off + i);
        assert_true(cache_object_builder_append(b, buf, n));
        off += n;
    }
    struct cache_object *obj = cache_object_builder_finish(&b);
    assert_non_null(obj);
    return obj;
}

static void assert_slice(const char *a, size_t alen, const char *b, size_t blen)
{
    assert_int_equal(alen, blen);
    if (alen)
        assert_memory_equal(a, b, alen);
}

static void assert_body_pattern(const struct cache_object *obj, size_t body_len)
{
    struct iovec iov[4];
    size_t off = 0, n;

    assert_int_equal(obj->body_len, body_len);
    while ((n = cache_object_body_iov(obj, off, iov, 4)) > 0)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < iov[i].iov_len; j++, off++)
                if (((unsigned char *)iov[i].iov_base)[j] != pattern_at(off))
                    fail_msg("body byte %zu differs", off);
    assert_int_equal(off, body_len);
}

static void assert_same(const struct cache_object *a, const struct cache_object *b)
{
    assert_slice(a->primary_key, a->primary_len, b->primary_key, b->primary_len);
    assert_slice(a->secondary_key, a->secondary_len, b->secondary_key, b->secondary_len);
    assert_slice(a->vary, a->vary_len, b->vary, b->vary_len);
    assert_slice(a->etag, a->etag_len, b->etag, b->etag_len);
    assert_slice(a->head, a->head_len, b->head, b->head_len);
    assert_int_equal(a->status, b->status);
    assert_true(a->request_time == b->request_time);
    assert_true(a->response_time == b->response_time);
    assert_true(a->corrected_initial_age == b->corrected_initial_age);
    assert_true(a->lifetime == b->lifetime);
    assert_true(a->stale_while_revalidate == b->stale_while_revalidate);
    assert_true(a->stale_if_error == b->stale_if_error);
    assert_true(a->stored_at == b->stored_at);
    assert_true(a->last_modified_ms == b->last_modified_ms);
    assert_int_equal(a->no_cache, b->no_cache);
    assert_int_equal(a->must_revalidate, b->must_revalidate);
    assert_int_equal(a->esi_template, b->esi_template);
    assert_int_equal(a->ntags, b->ntags);
    for (size_t i = 0; i < a->ntags; i++)
        assert_slice(a->tags[i].name, a->tags[i].len, b->tags[i].name, b->tags[i].len);
    assert_int_equal(a->body_len, b->body_len);
}

/* The header size of every rich object made with KEY (or a key as long). */
static size_t rich_hdr(void)
{
    struct cache_object *obj = make(KEY, 0, 5, true);
    size_t hdr = cache_codec_overhead(obj);

    cache_object_release(&obj);
    return hdr;
}

/* Body length of an object in items of rich_hdr() + 100 bytes: 100 bytes in
 * item 0, then full_chunks full chunks and a last one of 50 bytes. */
static size_t body_for_chunks(size_t full_chunks)
{
    return 100 + full_chunks * (rich_hdr() + 100 - CACHE_CODEC_CHUNK_OVERHEAD) + 50;
}

/* ---- items in buffers of their exact size ---- */

#define MAX_ITEMS 8

struct owned {
    struct cache_codec_view v[MAX_ITEMS];
    size_t n;
};

static void own_add(struct owned *o, const void *data, size_t len)
{
    assert_true(o->n < MAX_ITEMS);
    if (!data) {
        o->v[o->n].data = NULL;
        o->v[o->n++].len = 0;
        return;
    }
    void *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, data, len);
    o->v[o->n].data = copy;
    o->v[o->n++].len = len;
}

static void own_copy(struct owned *o, const struct cache_codec_items *items)
{
    o->n = 0;
    for (size_t i = 0; i < items->n; i++)
        own_add(o, items->item[i].data, items->item[i].len);
}

static void own_free(struct owned *o)
{
    for (size_t i = 0; i < o->n; i++)
        free((void *)o->v[i].data);
    o->n = 0;
}

static unsigned char *bytes(struct owned *o, size_t i)
{
    return (unsigned char *)o->v[i].data;
}

static struct cache_object *decode(const struct cache_codec_view *v, size_t n, const char *key,
                                   char *err)
{
    err[0] = '\0';
    struct cache_object *obj =
        cache_codec_decode(v, n, key, strlen(key), HASH, SIZE_MAX, err, ERRLEN);
    if (!obj)
        assert_true(err[0] != '\0');
    return obj;
}

/* Decoding must fail with a reason starting with want. */
static void expect_error(const struct cache_codec_view *v, size_t n, const char *key,
                         const char *want)
{
    char err[ERRLEN];
    struct cache_object *obj = decode(v, n, key, err);

    if (obj) {
        cache_object_release(&obj);
        fail_msg("decoded, expected \"%s\"", want);
    }
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("error \"%s\", expected \"%s\"", err, want);
}

static void encode(const struct cache_object *obj, size_t item_size, struct cache_codec_items *out)
{
    assert_true(cache_codec_encode(obj, item_size, out));
    assert_true(out->n >= 1);
    for (size_t i = 0; i < out->n; i++)
        assert_true(out->item[i].len <= item_size);
}

/* Encode obj in item_size items, check how many, decode from exact-size
 * copies and compare. */
static void round_trip(const struct cache_object *obj, size_t item_size, size_t want_items)
{
    struct cache_codec_items items;
    struct owned o = {0};
    char err[ERRLEN];

    encode(obj, item_size, &items);
    if (want_items)
        assert_int_equal(items.n, want_items);
    own_copy(&o, &items);
    cache_codec_items_clear(&items);
    assert_null(items.item);
    struct cache_object *back = decode(o.v, o.n, obj->primary_key, err);
    if (!back)
        fail_msg("decode: %s", err);
    assert_same(obj, back);
    assert_body_pattern(back, obj->body_len);
    assert_true(back->primary_hash == HASH);
    assert_int_equal(atomic_load(&back->refs), 1);
    cache_object_release(&back);
    own_free(&o);
}

/* ---- round trips ---- */

static void test_round_trip_all_fields(void **state)
{
    long live = cache_object_live_count();
    (void)state;

    struct cache_object *obj = make(KEY, 1000, 1700000000123, true);
    round_trip(obj, 1 << 20, 1);
    cache_object_release(&obj);
    assert_int_equal(cache_object_live_count(), live);
}

static void test_round_trip_empty_body_and_fields(void **state)
{
    (void)state;
    struct cache_object *obj = make("k", 0, 0, false);
    assert_int_equal(cache_codec_overhead(obj), 71 + 4 * 4 + 4 + 4 + 24 + 1);
    round_trip(obj, 1 << 20, 1);
    round_trip(obj, cache_codec_overhead(obj), 1); /* an item of the header alone */
    cache_object_release(&obj);
    obj = make(KEY, 0, 5, true);
    round_trip(obj, 1 << 20, 1);
    cache_object_release(&obj);
}

static void test_round_trip_one_byte(void **state)
{
    (void)state;
    struct cache_object *obj = make(KEY, 1, 5, true);
    size_t hdr = cache_codec_overhead(obj);
    round_trip(obj, 1 << 20, 1);
    round_trip(obj, hdr + 1, 1);
    round_trip(obj, hdr, 2); /* item 0 all header, the byte in chunk 1 */
    cache_object_release(&obj);
}

/* Around "exactly one item": item_size = header + body +- 1. */
static void test_round_trip_exactly_one_item(void **state)
{
    (void)state;
    struct cache_object *obj = make(KEY, 5000, 5, true);
    size_t hdr = cache_codec_overhead(obj);
    struct cache_codec_items items;

    encode(obj, hdr + 5000, &items);
    assert_int_equal(items.n, 1);
    assert_int_equal(items.item[0].len, hdr + 5000);
    cache_codec_items_clear(&items);
    round_trip(obj, hdr + 5000, 1);
    round_trip(obj, hdr + 5001, 1);
    round_trip(obj, hdr + 4999, 2);
    encode(obj, hdr + 4999, &items);
    assert_int_equal(items.item[0].len, hdr + 4999);
    assert_int_equal(items.item[1].len, CACHE_CODEC_CHUNK_OVERHEAD + 1);
    cache_codec_items_clear(&items);
    cache_object_release(&obj);
}

/* With a fixed item size, bodies that end exactly at, one before and one
 * after each item boundary. */
static void test_item_size_boundaries(void **state)
{
    (void)state;
    struct cache_object *probe = make(KEY, 0, 5, true);
    size_t hdr = cache_codec_overhead(probe);
    cache_object_release(&probe);

    const size_t item_size = hdr + 300;
    const size_t first = 300, chunk = item_size - CACHE_CODEC_CHUNK_OVERHEAD;
    for (size_t k = 0; k < 4; k++) {
        size_t edge = first + k * chunk;
        for (size_t body = edge - 1; body <= edge + 1; body++) {
            size_t rest = body > first ? body - first : 0;
            size_t want = 1 + rest / chunk + (rest % chunk != 0);
            struct cache_object *obj = make(KEY, body, 5, true);
            round_trip(obj, item_size, want);
            cache_object_release(&obj);
        }
    }
}

static void test_round_trip_5mb_over_1mb_items(void **state)
{
    (void)state;
    const size_t body = 5u << 20, item = 1u << 20;
    struct cache_object *obj = make(KEY, body, 5, true);
    size_t hdr = cache_codec_overhead(obj);
    size_t rest = body - (item - hdr);
    size_t chunk = item - CACHE_CODEC_CHUNK_OVERHEAD;

    round_trip(obj, item, 1 + rest / chunk + (rest % chunk != 0));
    round_trip(obj, 8u << 20, 1);
    cache_object_release(&obj);
}

static void test_peek(void **state)
{
    (void)state;
    struct cache_object *obj = make(KEY, 1000, 5, true);
    size_t hdr = cache_codec_overhead(obj);
    struct cache_codec_items items;
    struct cache_codec_header h;
    char err[ERRLEN];

    encode(obj, hdr + 100, &items);
    assert_true(cache_codec_peek(items.item[0].data, items.item[0].len, &h, err, sizeof err));
    assert_int_equal(h.version, CACHE_CODEC_VERSION);
    assert_int_equal(h.header_len, hdr);
    assert_slice(h.primary_key, h.primary_len, KEY, strlen(KEY));
    assert_slice(h.secondary_key, h.secondary_len, obj->secondary_key, obj->secondary_len);
    assert_int_equal(h.body_len, 1000);
    assert_int_equal(h.body_in_item0, 100);
    assert_int_equal(h.chunk_size, hdr + 100 - CACHE_CODEC_CHUNK_OVERHEAD);
    assert_int_equal(h.nchunks, items.n - 1);
    assert_int_equal(items.n, 1 + (900 + h.chunk_size - 1) / h.chunk_size);
    /* NULL err is fine */
    assert_false(cache_codec_peek(items.item[0].data, 10, &h, NULL, 0));
    cache_codec_items_clear(&items);
    cache_object_release(&obj);
}

static void test_encode_refuses(void **state)
{
    (void)state;
    struct cache_object *obj = make(KEY, 100, 5, true);
    size_t hdr = cache_codec_overhead(obj);
    struct cache_codec_items items = {(void *)1, 7};

    /* header larger than an item */
    assert_false(cache_codec_encode(obj, hdr - 1, &items));
    assert_null(items.item);
    assert_int_equal(items.n, 0);
    cache_codec_items_clear(&items);
    /* an absurd item_size is clamped, not trusted */
    encode(obj, SIZE_MAX, &items);
    assert_int_equal(items.n, 1);
    cache_codec_items_clear(&items);
    cache_object_release(&obj);

    /* more than CACHE_CODEC_MAX_CHUNKS chunks */
    obj = make("k", 0, 0, false);
    hdr = cache_codec_overhead(obj);
    cache_object_release(&obj);
    size_t chunk = hdr - CACHE_CODEC_CHUNK_OVERHEAD;
    obj = make("k", chunk * CACHE_CODEC_MAX_CHUNKS + 1, 0, false);
    assert_false(cache_codec_encode(obj, hdr, &items));
    cache_object_release(&obj);
    obj = make("k", chunk * CACHE_CODEC_MAX_CHUNKS, 0, false);
    encode(obj, hdr, &items);
    assert_int_equal(items.n, CACHE_CODEC_MAX_CHUNKS + 1);
    cache_codec_items_clear(&items);
    cache_object_release(&obj);

    /* a status the decoder would refuse */
    struct cache_object_meta m = {.primary_key = "k", .primary_len = 1, .status = 42};
    struct cache_object_builder *b = cache_object_builder_new(&m, SIZE_MAX);
    obj = cache_object_builder_finish(&b);
    assert_non_null(obj);
    assert_false(cache_codec_encode(obj, 1 << 20, &items));
    cache_object_release(&obj);
}

/* ---- hostile input ---- */

/* One item, every length short of the whole: a miss with a reason. */
static void test_every_truncation_of_item0(void **state)
{
    (void)state;
    struct cache_object *obj = make(KEY, 64, 5, true);
    struct cache_codec_items items;
    struct cache_codec_header h;
    char err[ERRLEN];

    encode(obj, 1 << 20, &items);
    assert_int_equal(items.n, 1);
    size_t full = items.item[0].len;
    for (size_t len = 0; len < full; len++) {
        struct owned o = {0};
        own_add(&o, items.item[0].data, len);
        assert_false(cache_codec_peek(o.v[0].data, len, &h, err, sizeof err));
        assert_true(err[0] != '\0');
        struct cache_object *back = decode(o.v, 1, KEY, err);
        assert_null(back);
        own_free(&o);
    }
    cache_codec_items_clear(&items);

    /* a chunked object's item 0 cut anywhere, chunks intact */
    size_t hdr = cache_codec_overhead(obj);
    encode(obj, hdr + 10, &items);
    assert_true(items.n > 1);
    struct owned o = {0};
    own_copy(&o, &items);
    for (size_t len = 0; len < items.item[0].len; len++) {
        struct cache_codec_view v[MAX_ITEMS];
        memcpy(v, o.v, o.n * sizeof v[0]);
        struct owned cut = {0};
        own_add(&cut, items.item[0].data, len);
        v[0] = cut.v[0];
        assert_null(decode(v, o.n, KEY, err));
        own_free(&cut);
    }
    own_free(&o);
    cache_codec_items_clear(&items);
    cache_object_release(&obj);
}

static void test_every_truncation_of_a_chunk(void **state)
{
    (void)state;
    struct cache_object *obj = make(KEY, body_for_chunks(1), 5, true);
    size_t hdr = cache_codec_overhead(obj);
    struct cache_codec_items items;
    char err[ERRLEN];

    encode(obj, hdr + 100, &items);
    assert_true(items.n >= 3);
    for (size_t c = 1; c < items.n; c++) {
        for (size_t len = 0; len < items.item[c].len; len++) {
            struct owned o = {0};
            own_copy(&o, &items);
            free((void *)o.v[c].data);
            o.v[c].data = malloc(len ? len : 1);
            memcpy((void *)o.v[c].data, items.item[c].data, len);
            o.v[c].len = len;
            assert_null(decode(o.v, o.n, KEY, err));
            own_free(&o);
        }
    }
    cache_codec_items_clear(&items);
    cache_object_release(&obj);
}

/* Flip each bit of the header in turn.  Some flips give another valid
 * object (a time, a flag, a byte of the head); the decoder must then return
 * exactly what the flipped bytes say, which re-encodes to them. */
static void test_single_bit_flips_in_header(void **state)
{
    (void)state;
    struct cache_object *obj = make(KEY, 40, 5, true);
    size_t hdr = cache_codec_overhead(obj);
    struct cache_codec_items items;
    char err[ERRLEN];
    size_t decoded = 0, refused = 0;

    encode(obj, 1 << 20, &items);
    for (size_t bit = 0; bit < hdr * 8; bit++) {
        struct owned o = {0};
        own_copy(&o, &items);
        bytes(&o, 0)[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        struct cache_object *back = decode(o.v, 1, KEY, err);
        if (back) {
            struct cache_codec_items again;
            encode(back, 1 << 20, &again);
            assert_int_equal(again.n, 1);
            assert_int_equal(again.item[0].len, o.v[0].len);
            assert_memory_equal(again.item[0].data, o.v[0].data, o.v[0].len);
            cache_codec_items_clear(&again);
            cache_object_release(&back);
            decoded++;
        } else {
            refused++;
        }
        own_free(&o);
    }
    /* magic, version, lengths, body length and hash, counts: refused */
    assert_true(refused > hdr * 8 / 4);
    assert_true(decoded > 0);
    cache_codec_items_clear(&items);

    /* In a chunk header or in the body, every flip is caught. */
    encode(obj, hdr + 10, &items);
    assert_true(items.n >= 2);
    for (size_t i = 0; i < items.n; i++) {
        size_t from = i == 0 ? hdr : 0;
        for (size_t bit = from * 8; bit < items.item[i].len * 8; bit++) {
            struct owned o = {0};
            own_copy(&o, &items);
            bytes(&o, i)[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            assert_null(decode(o.v, o.n, KEY, err));
            own_free(&o);
        }
    }
    cache_codec_items_clear(&items);
    cache_object_release(&obj);
}

static void test_wrong_version_and_magic(void **state)
{
    (void)state;
    struct cache_object *obj = make(KEY, 100, 5, true);
    size_t hdr = cache_codec_overhead(obj);
    struct cache_codec_items items;
    struct owned o = {0};

    encode(obj, hdr + 50, &items);
    own_copy(&o, &items);
    bytes(&o, 0)[3] = 7;
    expect_error(o.v, o.n, KEY, "version 7 unsupported");
    bytes(&o, 0)[3] = 0;
    expect_error(o.v, o.n, KEY, "version 0 unsupported");
    bytes(&o, 0)[3] = CACHE_CODEC_VERSION;
    bytes(&o, 0)[0] = 'X';
    expect_error(o.v, o.n, KEY, "bad magic");
    bytes(&o, 0)[0] = 'T';
    bytes(&o, 1)[3] = 7;
    expect_error(o.v, o.n, KEY, "chunk 1 version 7 unsupported");
    bytes(&o, 1)[3] = CACHE_CODEC_VERSION;
    bytes(&o, 1)[2] = 'R'; /* an item 0 where a chunk belongs */
    expect_error(o.v, o.n, KEY, "chunk 1 bad magic");
    bytes(&o, 1)[2] = 'C';
    struct cache_object *back;
    char err[ERRLEN];
    back = decode(o.v, o.n, KEY, err);
    assert_non_null(back);
    cache_object_release(&back);

    /* nothing, an empty item, no item 0 */
    expect_error(o.v, 0, KEY, "item 0 missing");
    struct cache_codec_view none = {NULL, 0}, empty = {"", 0};
    expect_error(&none, 1, KEY, "item 0 missing");
    expect_error(&empty, 1, KEY, "truncated at magic");
    own_free(&o);
    cache_codec_items_clear(&items);
    cache_object_release(&obj);
}

static void test_key_mismatch(void **state)
{
    (void)state;
    struct cache_object *obj = make(KEY, 10, 5, true);
    struct cache_codec_items items;
    struct owned o = {0};

    encode(obj, 1 << 20, &items);
    own_copy(&o, &items);
    expect_error(o.v, o.n, "http://example.com/other", "key mismatch");
    expect_error(o.v, o.n, "http://example.com/a/b", "key mismatch"); /* a prefix */
    expect_error(o.v, o.n, KEY "x", "key mismatch");
    char err[ERRLEN];
    assert_null(cache_codec_decode(o.v, o.n, NULL, 0, HASH, SIZE_MAX, err, sizeof err));
    assert_string_equal(err, "key mismatch");
    own_free(&o);
    cache_codec_items_clear(&items);
    cache_object_release(&obj);
}

/* An object in 5 items (4 chunks). */
static void five_items(struct cache_object **obj, struct owned *o)
{
    *obj = make(KEY, body_for_chunks(3), 5, true);
    size_t hdr = cache_codec_overhead(*obj);
    struct cache_codec_items items;

    encode(*obj, hdr + 100, &items);
    assert_int_equal(items.n, 5);
    own_copy(o, &items);
    cache_codec_items_clear(&items);
}

static void test_missing_chunks(void **state)
{
    (void)state;
    struct cache_object *obj;
    struct owned o = {0};
    struct cache_codec_view v[MAX_ITEMS];

    five_items(&obj, &o);
    memcpy(v, o.v, sizeof v);
    v[3].data = NULL;
    expect_error(v, 5, KEY, "chunk 3 missing");
    expect_error(o.v, 3, KEY, "chunk 3 missing"); /* fewer items fetched */
    expect_error(o.v, 1, KEY, "chunk 1 missing");
    memcpy(v, o.v, sizeof v);
    v[5] = o.v[4];
    expect_error(v, 6, KEY, "6 items for 4 chunks");
    own_free(&o);
    cache_object_release(&obj);
}

static void test_duplicated_and_reordered_chunks(void **state)
{
    (void)state;
    struct cache_object *obj;
    struct owned o = {0};
    struct cache_codec_view v[MAX_ITEMS];

    five_items(&obj, &o);
    memcpy(v, o.v, sizeof v);
    v[2] = o.v[1];
    expect_error(v, 5, KEY, "chunk 2 out of order");
    memcpy(v, o.v, sizeof v);
    v[1] = o.v[2];
    v[2] = o.v[1];
    expect_error(v, 5, KEY, "chunk 1 out of order");
    memcpy(v, o.v, sizeof v);
    v[4] = o.v[0]; /* item 0 again as the last chunk */
    expect_error(v, 5, KEY, "chunk 4 bad magic");
    own_free(&o);
    cache_object_release(&obj);
}

static void test_foreign_chunks(void **state)
{
    (void)state;
    struct cache_object *obj, *other;
    struct owned o = {0}, f = {0};
    struct cache_codec_view v[MAX_ITEMS];
    struct cache_codec_items items;

    five_items(&obj, &o);
    size_t hdr = cache_codec_overhead(obj);

    /* another key, same geometry (key of the same length) */
    char key2[] = KEY;
    key2[7] = 'X';
    other = make(key2, obj->body_len, 5, true);
    encode(other, hdr + 100, &items);
    assert_int_equal(items.n, 5);
    own_copy(&f, &items);
    cache_codec_items_clear(&items);
    memcpy(v, o.v, sizeof v);
    v[2] = f.v[2];
    expect_error(v, 5, KEY, "chunk 2 from another object");
    own_free(&f);
    cache_object_release(&other);

    /* the same key, an older version (stored earlier) whose chunk stayed */
    other = make(KEY, obj->body_len, 4, true);
    encode(other, hdr + 100, &items);
    own_copy(&f, &items);
    cache_codec_items_clear(&items);
    memcpy(v, o.v, sizeof v);
    v[3] = f.v[3];
    expect_error(v, 5, KEY, "chunk 3 from another object");
    own_free(&f);
    cache_object_release(&other);

    own_free(&o);
    cache_object_release(&obj);
}

static void test_chunk_body_length_mismatch(void **state)
{
    (void)state;
    struct cache_object *obj;
    struct owned o = {0};
    struct cache_codec_view v[MAX_ITEMS];

    five_items(&obj, &o);
    memcpy(v, o.v, sizeof v);
    v[2].len--;
    expect_error(v, 5, KEY, "chunk 2 body length mismatch");
    memcpy(v, o.v, sizeof v);
    v[4].len--;
    expect_error(v, 5, KEY, "chunk 4 body length mismatch");
    /* longer than its buffer would over-read: give a longer real buffer */
    struct owned big = {0};
    unsigned char *buf = malloc(o.v[4].len + 1);
    memcpy(buf, o.v[4].data, o.v[4].len);
    buf[o.v[4].len] = 0;
    own_add(&big, buf, o.v[4].len + 1);
    free(buf);
    memcpy(v, o.v, sizeof v);
    v[4] = big.v[0];
    expect_error(v, 5, KEY, "chunk 4 body length mismatch");
    own_free(&big);
    own_free(&o);
    cache_object_release(&obj);
}

/* Offsets of the variable fields of item 0 (see the layout in codec.h). */
struct offsets {
    size_t primary, tag_count, head, body_len, body_hash, nchunks, chunk_size;
};

static struct offsets offsets_of(const struct cache_object *obj)
{
    struct offsets f;
    size_t hdr = cache_codec_overhead(obj);

    f.primary = 71;
    f.tag_count = f.primary + 4 + obj->primary_len + 4 + obj->secondary_len + 4 + obj->vary_len +
                  4 + obj->etag_len;
    f.body_len = hdr - 24;
    f.head = f.body_len - 4 - obj->head_len;
    f.body_hash = hdr - 16;
    f.nchunks = hdr - 8;
    f.chunk_size = hdr - 4;
    return f;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void test_lengths_that_lie(void **state)
{
    (void)state;
    struct cache_object *obj = make(KEY, 100, 5, true);
    struct offsets f = offsets_of(obj);
    struct cache_codec_items items;
    struct owned o = {0};

    encode(obj, 1 << 20, &items);
    own_copy(&o, &items);
    unsigned char *p = bytes(&o, 0);
    unsigned char save[8];

    /* Overwrite a field, expect the error, restore it. */
#define LIE(off, put, value, want)                                                                 \
    do {                                                                                           \
        memcpy(save, p + (off), sizeof save);                                                      \
        put(p + (off), value);                                                                     \
        expect_error(o.v, 1, KEY, want);                                                           \
        memcpy(p + (off), save, sizeof save);                                                      \
    } while (0)

    LIE(f.primary, put32, UINT32_MAX, "primary key length overflows");
    LIE(f.primary, put32, 0, "empty primary key");
    LIE(f.primary + 4 + strlen(KEY), put32, 0x7fffffff, "secondary key length overflows");
    LIE(f.tag_count, put32, UINT32_MAX, "tag count overflows");
    LIE(f.tag_count, put32, 1000, "tag count overflows");
    LIE(f.head, put32, UINT32_MAX, "head length overflows");
    /* one byte more than the rest of the item */
    LIE(f.head, put32, (uint32_t)obj->head_len + 24 + 100 + 1, "head length overflows");
    LIE(f.body_len, put64, UINT64_MAX, "body length mismatch");
    LIE(f.body_len, put64, 101, "body length mismatch");
    LIE(f.body_len, put64, 99, "body length mismatch");
    LIE(f.body_hash, put64, 0, "body hash mismatch");
    LIE(f.nchunks, put32, UINT32_MAX, "chunk count 4294967295 too large");
    LIE(f.nchunks, put32, 1, "bad chunk size");
    LIE(f.chunk_size, put32, 100, "bad chunk size");
    LIE(5, put32, 0, "bad status 0"); /* status, and two bytes of request_time */
    LIE(5, put32, 99, "bad status 99");
    LIE(5, put32, 1000, "bad status 1000");
    LIE(4, put32, 0x08, "bad flags 0x08");

    /* max_body: the body length is checked before the chunks are read */
    char err[ERRLEN];
    assert_null(cache_codec_decode(o.v, 1, KEY, strlen(KEY), HASH, 99, err, sizeof err));
    assert_string_equal(err, "body length 100 over 99");
    struct cache_object *back =
        cache_codec_decode(o.v, 1, KEY, strlen(KEY), HASH, 100, err, sizeof err);
    assert_non_null(back);
    cache_object_release(&back);
    own_free(&o);
    cache_codec_items_clear(&items);
    cache_object_release(&obj);

    /* A consistent but huge chunked header: peek accepts it (the caller
     * checks body_len against its limit), decode refuses it before looking
     * for a single chunk. */
    obj = make(KEY, 300, 5, true);
    f = offsets_of(obj);
    size_t hdr = cache_codec_overhead(obj);
    encode(obj, hdr + 100, &items);
    own_add(&o, items.item[0].data, items.item[0].len);
    p = bytes(&o, 0);
    uint32_t cs = (uint32_t)(hdr + 100 - CACHE_CODEC_CHUNK_OVERHEAD);
    put64(p + f.body_len, 100 + (uint64_t)cs * CACHE_CODEC_MAX_CHUNKS);
    put32(p + f.nchunks, CACHE_CODEC_MAX_CHUNKS);
    struct cache_codec_header h;
    assert_true(cache_codec_peek(p, o.v[0].len, &h, err, sizeof err));
    assert_int_equal(h.nchunks, CACHE_CODEC_MAX_CHUNKS);
    assert_null(cache_codec_decode(o.v, 1, KEY, strlen(KEY), HASH, 1 << 20, err, sizeof err));
    char want[ERRLEN];
    snprintf(want, sizeof want, "body length %llu over %d",
             (unsigned long long)(100 + (uint64_t)cs * CACHE_CODEC_MAX_CHUNKS), 1 << 20);
    assert_string_equal(err, want);
    put32(p + f.nchunks, CACHE_CODEC_MAX_CHUNKS - 1);
    expect_error(o.v, 1, KEY, "chunk count mismatch");
    put64(p + f.body_len, 100 + (uint64_t)cs * (CACHE_CODEC_MAX_CHUNKS + 1));
    put32(p + f.nchunks, CACHE_CODEC_MAX_CHUNKS + 1);
    expect_error(o.v, 1, KEY, "chunk count 65537 too large");
    own_free(&o);
    cache_codec_items_clear(&items);
    cache_object_release(&obj);
#undef LIE
}

/* ---- random garbage ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Decode whatever the items are; a success must re-encode to the very same
 * bytes (the encoding is canonical).  Returns whether it decoded. */
static bool decode_anything(const struct cache_codec_view *v, size_t n)
{
    struct cache_codec_header h = {0};
    char err[ERRLEN];
    const char *key = "k";
    size_t key_len = 1;

    if (v[0].data && cache_codec_peek(v[0].data, v[0].len, &h, err, sizeof err)) {
        key = h.primary_key;
        key_len = h.primary_len;
    }
    struct cache_object *obj =
        cache_codec_decode(v, n, key, key_len, HASH, 1 << 20, err, sizeof err);
    if (!obj) {
        assert_true(err[0] != '\0');
        return false;
    }
    struct cache_codec_items again;
    size_t item_size = h.nchunks ? h.chunk_size + CACHE_CODEC_CHUNK_OVERHEAD : 1 << 20;
    encode(obj, item_size, &again);
    assert_int_equal(again.n, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(again.item[i].len, v[i].len);
        assert_memory_equal(again.item[i].data, v[i].data, v[i].len);
    }
    cache_codec_items_clear(&again);
    cache_object_release(&obj);
    return true;
}

static void test_random_garbage(void **state)
{
    (void)state;
    long live = cache_object_live_count();
    struct cache_object *obj = make(KEY, 300, 5, true);
    size_t hdr = cache_codec_overhead(obj);
    struct cache_codec_items valids[2];
    int decoded = 0;

    /* A header change in a chunked object orphans its chunks, so mutations
     * that decode come from the one-item encoding. */
    encode(obj, hdr + 100, &valids[0]);
    encode(obj, 1 << 20, &valids[1]);
    assert_int_equal(valids[0].n, 2);
    assert_int_equal(valids[1].n, 1);
    for (int round = 0; round < 3000; round++) {
        struct owned o = {0};
        unsigned kind = round % 3;
        const struct cache_codec_items valid = valids[rng() % 2];
        size_t n = kind == 2 && rng() % 4 ? valid.n : 1 + rng() % 4;
        for (size_t i = 0; i < n; i++) {
            if (rng() % 16 == 0) {
                own_add(&o, NULL, 0);
                continue;
            }
            size_t len;
            unsigned char buf[600];
            if (kind == 2 && i < valid.n) {
                /* a valid item, item 0 with a few random bytes changed
                 * (mostly in its header), now and then a chunk too */
                len = valid.item[i].len;
                memcpy(buf, valid.item[i].data, len);
                if (i == 0 || rng() % 8 == 0)
                    for (int k = 1 + rng() % 3; k > 0; k--)
                        buf[rng() % (i == 0 && rng() % 4 ? hdr : len)] = (unsigned char)rng();
                if (rng() % 8 == 0)
                    len = rng() % (len + 1);
            } else {
                len = rng() % sizeof buf;
                for (size_t j = 0; j < len; j++)
                    buf[j] = (unsigned char)rng();
                /* random bytes behind a valid magic and version */
                if (kind == 1 && len >= 4)
                    memcpy(buf, i == 0 ? "TSR\x01" : "TSC\x01", 4);
            }
            own_add(&o, buf, len);
        }
        decoded += decode_anything(o.v, o.n);
        own_free(&o);
    }
    /* Mutations of fields nothing checks (times, the head...) decode. */
    assert_true(decoded > 0);
    print_message("%d of 3000 decoded\n", decoded);
    cache_codec_items_clear(&valids[0]);
    cache_codec_items_clear(&valids[1]);
    cache_object_release(&obj);
    assert_int_equal(cache_object_live_count(), live);
}

/* ---- item keys ---- */

static void test_item_key(void **state)
{
    (void)state;
    char key[CACHE_CODEC_KEY_MAX + 1], hex[33], want[300];
    const char *sec = "accept-encoding=gzip\n";

    cache_key_hash128_hex(KEY, strlen(KEY), hex);
    snprintf(want, sizeof want, "tsr:%s", hex);
    assert_int_equal(cache_codec_item_key("tsr:", KEY, strlen(KEY), NULL, 0, 0, key, sizeof key),
                     strlen(want));
    assert_string_equal(key, want);
    snprintf(want, sizeof want, "tsr:%s:3", hex);
    assert_int_equal(cache_codec_item_key("tsr:", KEY, strlen(KEY), "", 0, 3, key, sizeof key),
                     strlen(want));
    assert_string_equal(key, want);

    /* the secondary part hashes as primary "\n" secondary */
    snprintf(want, sizeof want, "%s\n%s", KEY, sec);
    cache_key_hash128_hex(want, strlen(want), hex);
    snprintf(want, sizeof want, "%s:12", hex);
    assert_true(cache_codec_item_key("", KEY, strlen(KEY), sec, strlen(sec), 12, key, sizeof key));
    assert_string_equal(key, want);
    char other[sizeof key];
    cache_codec_item_key("", KEY, strlen(KEY), NULL, 0, 12, other, sizeof other);
    assert_string_not_equal(key, other);

    /* the longest prefix and index fit in 250 bytes */
    char prefix[CACHE_CODEC_PREFIX_MAX + 2];
    memset(prefix, 'p', CACHE_CODEC_PREFIX_MAX);
    prefix[CACHE_CODEC_PREFIX_MAX] = '\0';
    size_t n = cache_codec_item_key(prefix, "k", 1, NULL, 0, UINT32_MAX, key, sizeof key);
    assert_int_equal(n, CACHE_CODEC_PREFIX_MAX + 32 + 1 + 10);
    assert_true(n <= CACHE_CODEC_KEY_MAX);
    for (size_t i = 0; i < n; i++)
        assert_true(key[i] > 0x20 && key[i] < 0x7f);

    /* refused: long prefix, space, control, DEL, small buffer */
    prefix[CACHE_CODEC_PREFIX_MAX] = 'p';
    prefix[CACHE_CODEC_PREFIX_MAX + 1] = '\0';
    assert_int_equal(cache_codec_item_key(prefix, "k", 1, NULL, 0, 0, key, sizeof key), 0);
    assert_string_equal(key, "");
    assert_int_equal(cache_codec_item_key("a b", "k", 1, NULL, 0, 0, key, sizeof key), 0);
    assert_int_equal(cache_codec_item_key("a\nb", "k", 1, NULL, 0, 0, key, sizeof key), 0);
    assert_int_equal(cache_codec_item_key("a\x7f", "k", 1, NULL, 0, 0, key, sizeof key), 0);
    assert_int_equal(cache_codec_item_key("ab", "k", 1, NULL, 0, 0, key, 34), 0);
    assert_int_equal(cache_codec_item_key("ab", "k", 1, NULL, 0, 0, key, 35), 34);
    assert_int_equal(cache_codec_item_key("ab", "k", 1, NULL, 0, 0, NULL, 0), 0);
    assert_true(cache_codec_prefix_valid("tessera:", 8));
    assert_true(cache_codec_prefix_valid("", 0));
    assert_false(cache_codec_prefix_valid("a\tb", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_all_fields),
        cmocka_unit_test(test_round_trip_empty_body_and_fields),
        cmocka_unit_test(test_round_trip_one_byte),
        cmocka_unit_test(test_round_trip_exactly_one_item),
        cmocka_unit_test(test_item_size_boundaries),
        cmocka_unit_test(test_round_trip_5mb_over_1mb_items),
        cmocka_unit_test(test_peek),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_every_truncation_of_item0),
        cmocka_unit_test(test_every_truncation_of_a_chunk),
        cmocka_unit_test(test_single_bit_flips_in_header),
        cmocka_unit_test(test_wrong_version_and_magic),
        cmocka_unit_test(test_key_mismatch),
        cmocka_unit_test(test_missing_chunks),
        cmocka_unit_test(test_duplicated_and_reordered_chunks),
        cmocka_unit_test(test_foreign_chunks),
        cmocka_unit_test(test_chunk_body_length_mismatch),
        cmocka_unit_test(test_lengths_that_lie),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_item_key),
    };

    return cmocka_run_group_tests_name("cache/codec", tests, NULL, NULL);
}
