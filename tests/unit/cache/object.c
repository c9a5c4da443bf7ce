/*
 * tests/unit/cache/object.c: builders, bodies and reference counts of
 * stored objects (cache/object.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "cache/object.h"

#define CHUNK CACHE_OBJECT_CHUNK

static unsigned char pattern_at(size_t i)
{
    return (unsigned char)(i * 7 + i / 251);
}

static struct cache_object_meta meta_for(const char *key)
{
    struct cache_object_meta m = {
        .primary_key = key,
        .primary_len = strlen(key),
        .primary_hash = 42,
        .status = 200,
    };
    return m;
}

/* Append body_len pattern bytes in pieces of `piece` bytes. */
static void append_pattern(struct cache_object_builder *b, size_t body_len, size_t piece)
{
    unsigned char *src = malloc(body_len ? body_len : 1);

    assert_non_null(src);
    for (size_t i = 0; i < body_len; i++)
        src[i] = pattern_at(i);
    for (size_t off = 0; off < body_len; off += piece) {
        size_t n = body_len - off < piece ? body_len - off : piece;
        assert_true(cache_object_builder_append(b, src + off, n));
    }
    free(src);
}

static struct cache_object *object_with_body(size_t body_len, size_t piece)
{
    struct cache_object_meta m = meta_for("http://example.com/x");
    struct cache_object_builder *b = cache_object_builder_new(&m, SIZE_MAX);

    assert_non_null(b);
    append_pattern(b, body_len, piece);
    assert_int_equal(cache_object_builder_body_len(b), body_len);
    struct cache_object *obj = cache_object_builder_finish(&b);
    assert_null(b);
    assert_non_null(obj);
    return obj;
}

/* The body from offset on, read through cache_object_body_iov() with at most
 * max_iov iovecs per call, matches the pattern. */
static void assert_body_from(const struct cache_object *obj, size_t offset, size_t max_iov)
{
    struct iovec iov[8];
    size_t pos = offset;

    assert_true(max_iov <= 8);
    for (;;) {
        size_t n = cache_object_body_iov(obj, pos, iov, max_iov);
        if (n == 0)
            break;
        assert_true(n <= max_iov);
        for (size_t i = 0; i < n; i++) {
            const unsigned char *p = iov[i].iov_base;
            assert_true(iov[i].iov_len > 0);
            for (size_t j = 0; j < iov[i].iov_len; j++)
                if (p[j] != pattern_at(pos + j))
                    fail_msg("byte %zu differs", pos + j);
            pos += iov[i].iov_len;
        }
    }
    assert_int_equal(pos, offset < obj->body_len ? obj->body_len : offset);
}

static void test_builder_copies_meta_and_head(void **state)
{
    char key[] = "http://example.com/page";
    char sec[] = "gzip";
    char vary[] = "Accept-Encoding";
    char etag[] = "\"v1\"";
    char t1[] = "product-7", t2[] = "home";
    struct cache_object_tag tags[] = {{t1, strlen(t1)}, {t2, strlen(t2)}};
    struct cache_object_meta m = {
        .primary_key = key,
        .primary_len = strlen(key),
        .primary_hash = 0x1234,
        .secondary_key = sec,
        .secondary_len = strlen(sec),
        .vary = vary,
        .vary_len = strlen(vary),
        .status = 203,
        .request_time = 1000,
        .response_time = 1100,
        .corrected_initial_age = 5000,
        .lifetime = 60000,
        .stale_while_revalidate = 7000,
        .stale_if_error = 8000,
        .stored_at = 1200,
        .no_cache = false,
        .must_revalidate = true,
        .etag = etag,
        .etag_len = strlen(etag),
        .last_modified_ms = 999000,
        .tags = tags,
        .ntags = 2,
    };
    long live = cache_object_live_count();
    const char head[] = "Content-Type: text/html\r\nETag: \"v1\"\r\n";

    (void)state;
    struct cache_object_builder *b = cache_object_builder_new(&m, SIZE_MAX);
    assert_non_null(b);
    /* The builder copied everything: scribble over the sources. */
    memset(key, 'x', strlen(key));
    memset(sec, 'x', strlen(sec));
    memset(t1, 'x', strlen(t1));
    assert_true(cache_object_builder_set_head(b, "Old: 1\r\n", 8));
    assert_true(cache_object_builder_set_head(b, head, strlen(head)));
    assert_true(cache_object_builder_append(b, "hello ", 6));
    assert_true(cache_object_builder_append(b, "world", 5));
    struct cache_object *obj = cache_object_builder_finish(&b);
    assert_null(b);
    assert_non_null(obj);
    assert_int_equal(cache_object_live_count(), live + 1);

    assert_string_equal(obj->primary_key, "http://example.com/page");
    assert_int_equal(obj->primary_len, strlen("http://example.com/page"));
    assert_int_equal(obj->primary_hash, 0x1234);
    assert_string_equal(obj->secondary_key, "gzip");
    assert_int_equal(obj->secondary_len, 4);
    assert_string_equal(obj->vary, "Accept-Encoding");
    assert_int_equal(obj->status, 203);
    assert_int_equal(obj->request_time, 1000);
    assert_int_equal(obj->response_time, 1100);
    assert_int_equal(obj->corrected_initial_age, 5000);
    assert_int_equal(obj->lifetime, 60000);
    assert_int_equal(obj->stale_while_revalidate, 7000);
    assert_int_equal(obj->stale_if_error, 8000);
    assert_int_equal(obj->stored_at, 1200);
    assert_false(obj->no_cache);
    assert_true(obj->must_revalidate);
    assert_string_equal(obj->etag, "\"v1\"");
    assert_int_equal(obj->etag_len, 4);
    assert_int_equal(obj->last_modified_ms, 999000);
    assert_int_equal(obj->ntags, 2);
    assert_string_equal(obj->tags[0].name, "product-7");
    assert_int_equal(obj->tags[0].len, 9);
    assert_string_equal(obj->tags[1].name, "home");
    assert_int_equal(obj->head_len, strlen(head));
    assert_memory_equal(obj->head, head, strlen(head));

    /* A small body is one slice, inside the object's own allocation. */
    assert_int_equal(obj->body_len, 11);
    assert_int_equal(obj->nbody, 1);
    assert_int_equal(obj->body[0].iov_len, 11);
    assert_memory_equal(obj->body[0].iov_base, "hello world", 11);
    const char *base = (const char *)obj;
    const char *bp = obj->body[0].iov_base;
    assert_true(bp > base && bp + 11 <= base + obj->charge);
    assert_true(obj->charge >=
                sizeof(*obj) + strlen(head) + 11 + strlen("http://example.com/page"));

    cache_object_release(&obj);
    assert_null(obj);
    assert_int_equal(cache_object_live_count(), live);
}

static void test_empty_meta_and_body(void **state)
{
    struct cache_object_meta m = meta_for("k");

    (void)state;
    struct cache_object_builder *b = cache_object_builder_new(&m, 0);
    assert_non_null(b);
    struct cache_object *obj = cache_object_builder_finish(&b);
    assert_non_null(obj);
    assert_string_equal(obj->secondary_key, "");
    assert_int_equal(obj->secondary_len, 0);
    assert_string_equal(obj->vary, "");
    assert_string_equal(obj->etag, "");
    assert_int_equal(obj->last_modified_ms, 0);
    assert_int_equal(obj->ntags, 0);
    assert_int_equal(obj->head_len, 0);
    assert_int_equal(obj->body_len, 0);
    assert_int_equal(obj->nbody, 0);
    struct iovec iov[2];
    assert_int_equal(cache_object_body_iov(obj, 0, iov, 2), 0);
    cache_object_release(&obj);
}

static void test_large_body_is_chunked(void **state)
{
    size_t len = 3 * CHUNK + 8192 + 3;

    (void)state;
    /* Odd piece sizes straddle every chunk boundary. */
    struct cache_object *obj = object_with_body(len, 7777);
    assert_int_equal(obj->body_len, len);
    assert_int_equal(obj->nbody, 4);
    size_t sum = 0;
    for (size_t i = 0; i < obj->nbody; i++) {
        if (i + 1 < obj->nbody)
            assert_int_equal(obj->body[i].iov_len, CHUNK);
        sum += obj->body[i].iov_len;
    }
    assert_int_equal(sum, len);
    /* The charge counts every chunk, and not wildly more. */
    assert_true(obj->charge >= len + sizeof(*obj));
    assert_true(obj->charge <= len + sizeof(*obj) + 1024);
    assert_body_from(obj, 0, 8);
    cache_object_release(&obj);
}

static void test_one_chunk_body_exactly(void **state)
{
    (void)state;
    struct cache_object *obj = object_with_body(CHUNK, 1000);
    assert_int_equal(obj->nbody, 1);
    assert_body_from(obj, 0, 1);
    cache_object_release(&obj);

    obj = object_with_body(CHUNK + 1, CHUNK + 1);
    assert_int_equal(obj->nbody, 2);
    assert_int_equal(obj->body[1].iov_len, 1);
    assert_body_from(obj, CHUNK, 1);
    cache_object_release(&obj);
}

static void test_body_iov_from_offsets(void **state)
{
    size_t len = 2 * CHUNK + 100;
    size_t offsets[] = {0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK, len - 1};
    struct iovec iov[4];

    (void)state;
    struct cache_object *obj = object_with_body(len, 65536 + 17);
    assert_int_equal(obj->nbody, 3);
    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        size_t off = offsets[i];
        size_t chunk = off / CHUNK;
        size_t n = cache_object_body_iov(obj, off, iov, 4);
        assert_int_equal(n, obj->nbody - chunk);
        /* No copy: the first slice points into the chunk, past the offset. */
        assert_ptr_equal(iov[0].iov_base, (char *)obj->body[chunk].iov_base + off % CHUNK);
        assert_int_equal(iov[0].iov_len, obj->body[chunk].iov_len - off % CHUNK);
        for (size_t j = 1; j < n; j++)
            assert_ptr_equal(iov[j].iov_base, obj->body[chunk + j].iov_base);
        assert_body_from(obj, off, 1);
        assert_body_from(obj, off, 2);
    }
    /* max_iov bounds the slices; past the end there is nothing. */
    assert_int_equal(cache_object_body_iov(obj, 0, iov, 1), 1);
    assert_int_equal(cache_object_body_iov(obj, 0, iov, 0), 0);
    assert_int_equal(cache_object_body_iov(obj, len, iov, 4), 0);
    assert_int_equal(cache_object_body_iov(obj, len + 10, iov, 4), 0);
    cache_object_release(&obj);
}

static void test_small_body_from_offset(void **state)
{
    struct iovec iov[2];

    (void)state;
    struct cache_object *obj = object_with_body(1000, 300);
    assert_int_equal(cache_object_body_iov(obj, 999, iov, 2), 1);
    assert_int_equal(iov[0].iov_len, 1);
    assert_body_from(obj, 500, 1);
    cache_object_release(&obj);
}

static void test_max_body_fails_sticky(void **state)
{
    struct cache_object_meta m = meta_for("k");
    char data[200] = {0};
    long live = cache_object_live_count();

    (void)state;
    /* Exactly the limit is fine. */
    struct cache_object_builder *b = cache_object_builder_new(&m, 100);
    assert_true(cache_object_builder_append(b, data, 60));
    assert_true(cache_object_builder_append(b, data, 40));
    assert_false(cache_object_builder_failed(b));
    struct cache_object *obj = cache_object_builder_finish(&b);
    assert_non_null(obj);
    assert_int_equal(obj->body_len, 100);
    cache_object_release(&obj);

    /* One byte more fails, and stays failed. */
    b = cache_object_builder_new(&m, 100);
    assert_true(cache_object_builder_append(b, data, 60));
    assert_false(cache_object_builder_append(b, data, 41));
    assert_true(cache_object_builder_failed(b));
    assert_false(cache_object_builder_append(b, data, 1));
    assert_false(cache_object_builder_set_head(b, "A: b\r\n", 6));
    assert_null(cache_object_builder_finish(&b));
    assert_null(b);
    assert_int_equal(cache_object_live_count(), live);

    /* A large body crossing the limit in the middle of a chunk. */
    b = cache_object_builder_new(&m, CHUNK + 10);
    append_pattern(b, CHUNK, 4096);
    assert_false(cache_object_builder_append(b, data, 11));
    cache_object_builder_abandon(&b);
    assert_null(b);
}

static void test_abandon_frees_everything(void **state)
{
    struct cache_object_meta m = meta_for("k");
    struct cache_object_tag tag = {"t", 1};
    long live = cache_object_live_count();

    (void)state;
    m.tags = &tag;
    m.ntags = 1;
    struct cache_object_builder *b = cache_object_builder_new(&m, SIZE_MAX);
    assert_true(cache_object_builder_set_head(b, "A: b\r\n", 6));
    append_pattern(b, 5 * CHUNK + 1, 50000);
    cache_object_builder_abandon(&b);
    assert_null(b);
    cache_object_builder_abandon(&b); /* NULL is fine */
    assert_int_equal(cache_object_live_count(), live);
    /* valgrind / ASan check that nothing leaked. */
}

static void test_refcount_lifetime(void **state)
{
    long live = cache_object_live_count();

    (void)state;
    struct cache_object *obj = object_with_body(CHUNK * 2, 4096);
    struct cache_object *reader = cache_object_ref(obj);
    assert_ptr_equal(reader, obj);
    assert_int_equal(atomic_load(&obj->refs), 2);
    cache_object_release(&obj);
    assert_null(obj);
    /* The reader's reference keeps it whole. */
    assert_int_equal(cache_object_live_count(), live + 1);
    assert_body_from(reader, 0, 4);
    cache_object_release(&reader);
    assert_int_equal(cache_object_live_count(), live);
    cache_object_release(&reader); /* NULL is fine */
}

#define REF_THREADS 4
#define REF_ROUNDS 50000

static void *ref_thread(void *arg)
{
    struct cache_object *obj = arg;

    for (int i = 0; i < REF_ROUNDS; i++) {
        struct cache_object *mine = cache_object_ref(obj);
        if (mine->body_len != 1000)
            abort();
        cache_object_release(&mine);
    }
    /* Each thread was given a reference of its own: drop it. */
    cache_object_release(&obj);
    return NULL;
}

static void test_refcount_across_threads(void **state)
{
    pthread_t t[REF_THREADS];
    long live = cache_object_live_count();

    (void)state;
    struct cache_object *obj = object_with_body(1000, 1000);
    for (int i = 0; i < REF_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, ref_thread, cache_object_ref(obj)), 0);
    cache_object_release(&obj);
    for (int i = 0; i < REF_THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(cache_object_live_count(), live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builder_copies_meta_and_head),
        cmocka_unit_test(test_empty_meta_and_body),
        cmocka_unit_test(test_large_body_is_chunked),
        cmocka_unit_test(test_one_chunk_body_exactly),
        cmocka_unit_test(test_body_iov_from_offsets),
        cmocka_unit_test(test_small_body_from_offset),
        cmocka_unit_test(test_max_body_fails_sticky),
        cmocka_unit_test(test_abandon_frees_everything),
        cmocka_unit_test(test_refcount_lifetime),
        cmocka_unit_test(test_refcount_across_threads),
    };

    return cmocka_run_group_tests_name("cache/object", tests, NULL, NULL);
}
