/*
 * cache/object.c: stored responses and their builders (see object.h).
 *
 * A builder belongs to one thread (the worker filling it) and needs no lock.
 * The body goes into chunks: the first grows by doubling up to
 * CACHE_OBJECT_CHUNK (so a small body costs little), every later one is
 * allocated at CACHE_OBJECT_CHUNK and never moves.  Finishing packs the
 * struct, the strings, the tag and chunk tables and the head into one
 * allocation; a one-chunk body is copied in too (at most 64 KiB, and it gives
 * one allocation per small object), a longer body keeps its chunks, the last
 * trimmed to size.
 *
 * A finished object is immutable; only `refs` changes, atomically.  The
 * release that drops it to zero frees it: acq_rel on the decrement so every
 * holder's reads happen before the free.
 */
#include "cache/object.h"

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct cache_object_builder {
    struct cache_object_meta meta; /* slices point into this allocation */
    char *head;
    size_t head_len;
    struct iovec *chunks; /* iov_len: bytes used */
    size_t nchunks;
    size_t chunks_cap;
    size_t last_cap; /* capacity of chunks[nchunks - 1] */
    size_t body_len;
    size_t max_body;
    bool failed;                          /* sticky */
    char etag[CACHE_OBJECT_ETAG_MAX + 1]; /* a set_etag() value; meta.etag then points here */
};

static atomic_long live_objects;

long cache_object_live_count(void)
{
    return atomic_load(&live_objects);
}

/* Copy a slice to *p, NUL-terminate it, advance *p; returns the copy. */
static char *put_string(char **p, const char *s, size_t len)
{
    char *copy = *p;

    if (len)
        memcpy(copy, s, len);
    copy[len] = '\0';
    *p += len + 1;
    return copy;
}

static size_t meta_strings_size(const struct cache_object_meta *m)
{
    size_t n = m->primary_len + 1 + m->secondary_len + 1 + m->vary_len + 1 + m->etag_len + 1;

    for (size_t i = 0; i < m->ntags; i++)
        n += m->tags[i].len + 1;
    return n;
}

/* Copy the slices of src to *p (tags into the table `tags`), pointing dst at
 * the copies. */
static void copy_meta(struct cache_object_meta *dst, const struct cache_object_meta *src,
                      struct cache_object_tag *tags, char **p)
{
    *dst = *src;
    dst->primary_key = put_string(p, src->primary_key, src->primary_len);
    dst->secondary_key = put_string(p, src->secondary_key, src->secondary_len);
    dst->vary = put_string(p, src->vary, src->vary_len);
    dst->etag = put_string(p, src->etag, src->etag_len);
    for (size_t i = 0; i < src->ntags; i++) {
        tags[i].len = src->tags[i].len;
        tags[i].name = put_string(p, src->tags[i].name, src->tags[i].len);
    }
    dst->tags = src->ntags ? tags : NULL;
}

struct cache_object_builder *cache_object_builder_new(const struct cache_object_meta *meta,
                                                      size_t max_body)
{
    assert(meta && meta->primary_key && meta->primary_len > 0);
    assert(meta->ntags == 0 || meta->tags);

    size_t size = sizeof(struct cache_object_builder) +
                  meta->ntags * sizeof(struct cache_object_tag) + meta_strings_size(meta);
    struct cache_object_builder *b = calloc(1, size);
    if (!b)
        return NULL;
    struct cache_object_tag *tags = (struct cache_object_tag *)(b + 1);
    char *p = (char *)(tags + meta->ntags);
    copy_meta(&b->meta, meta, tags, &p);
    assert(p == (char *)b + size);
    b->max_body = max_body;
    return b;
}

bool cache_object_builder_set_head(struct cache_object_builder *b, const char *head, size_t len)
{
    if (b->failed)
        return false;
    char *copy = malloc(len ? len : 1);
    if (!copy)
        goto fail;
    if (len)
        memcpy(copy, head, len);
    free(b->head);
    b->head = copy;
    b->head_len = len;
    return true;
fail:
    b->failed = true;
    return false;
}

bool cache_object_builder_set_etag(struct cache_object_builder *b, const char *etag, size_t len)
{
    if (b->failed || len > CACHE_OBJECT_ETAG_MAX)
        return false;
    memcpy(b->etag, etag, len);
    b->etag[len] = '\0';
    b->meta.etag = b->etag;
    b->meta.etag_len = len;
    return true;
}

uint64_t cache_object_builder_body_hash(const struct cache_object_builder *b)
{
    XXH3_state_t state;
    XXH3_64bits_reset(&state);
    for (size_t i = 0; i < b->nchunks; i++)
        XXH3_64bits_update(&state, b->chunks[i].iov_base, b->chunks[i].iov_len);
    return XXH3_64bits_digest(&state);
}

static size_t round_up_pow2(size_t n)
{
    size_t p = 1024;

    while (p < n)
        p *= 2;
    return p;
}

/* Make room in the last chunk for some of the `want` bytes to come: grow the
 * first chunk while it is under CACHE_OBJECT_CHUNK, else add a full-size one. */
static bool builder_grow(struct cache_object_builder *b, size_t want)
{
    struct iovec *last = b->nchunks ? &b->chunks[b->nchunks - 1] : NULL;

    if (last && b->nchunks == 1 && b->last_cap < CACHE_OBJECT_CHUNK) {
        size_t cap = round_up_pow2(last->iov_len + want);
        if (cap > CACHE_OBJECT_CHUNK)
            cap = CACHE_OBJECT_CHUNK;
        void *p = realloc(last->iov_base, cap);
        if (!p)
            return false;
        last->iov_base = p;
        b->last_cap = cap;
        return true;
    }
    if (b->nchunks == b->chunks_cap) {
        size_t cap = b->chunks_cap ? b->chunks_cap * 2 : 4;
        struct iovec *c = realloc(b->chunks, cap * sizeof(*c));
        if (!c)
            return false;
        b->chunks = c;
        b->chunks_cap = cap;
    }
    size_t cap = b->nchunks ? CACHE_OBJECT_CHUNK : round_up_pow2(want);
    if (cap > CACHE_OBJECT_CHUNK)
        cap = CACHE_OBJECT_CHUNK;
    void *p = malloc(cap);
    if (!p)
        return false;
    b->chunks[b->nchunks].iov_base = p;
    b->chunks[b->nchunks].iov_len = 0;
    b->nchunks++;
    b->last_cap = cap;
    return true;
}

bool cache_object_builder_append(struct cache_object_builder *b, const void *data, size_t len)
{
    const char *src = data;

    if (b->failed)
        return false;
    if (len > b->max_body - b->body_len)
        goto fail;
    while (len > 0) {
        struct iovec *last = b->nchunks ? &b->chunks[b->nchunks - 1] : NULL;
        if (!last || last->iov_len == b->last_cap) {
            if (!builder_grow(b, len))
                goto fail;
            last = &b->chunks[b->nchunks - 1];
        }
        size_t n = b->last_cap - last->iov_len;
        if (n > len)
            n = len;
        memcpy((char *)last->iov_base + last->iov_len, src, n);
        last->iov_len += n;
        b->body_len += n;
        src += n;
        len -= n;
    }
    return true;
fail:
    b->failed = true;
    return false;
}

bool cache_object_builder_failed(const struct cache_object_builder *b)
{
    return b->failed;
}

size_t cache_object_builder_body_len(const struct cache_object_builder *b)
{
    return b->body_len;
}

static void free_chunks(struct iovec *chunks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(chunks[i].iov_base);
}

void cache_object_builder_abandon(struct cache_object_builder **bp)
{
    struct cache_object_builder *b = *bp;

    if (!b)
        return;
    *bp = NULL;
    free_chunks(b->chunks, b->nchunks);
    free(b->chunks);
    free(b->head);
    free(b);
}

struct cache_object *cache_object_builder_finish(struct cache_object_builder **bp)
{
    struct cache_object_builder *b = *bp;
    struct cache_object *obj = NULL;

    assert(b);
    if (b->failed)
        goto fail;

    /* Invariant relied on by cache_object_body_iov(). */
    for (size_t i = 0; i + 1 < b->nchunks; i++)
        assert(b->chunks[i].iov_len == CACHE_OBJECT_CHUNK);

    bool inline_body = b->nchunks == 1;
    size_t size = sizeof(*obj) + b->meta.ntags * sizeof(struct cache_object_tag) +
                  b->nchunks * sizeof(struct iovec) + meta_strings_size(&b->meta) + b->head_len +
                  (inline_body ? b->body_len : 0);
    obj = malloc(size);
    if (!obj)
        goto fail;

    struct cache_object_tag *tags = (struct cache_object_tag *)(obj + 1);
    struct iovec *body = (struct iovec *)(tags + b->meta.ntags);
    char *p = (char *)(body + b->nchunks);
    struct cache_object_meta m;
    copy_meta(&m, &b->meta, tags, &p);

    atomic_init(&obj->refs, 1);
    atomic_init(&obj->ban_seen, 0);
    atomic_init(&obj->ban_soft, false);
    obj->primary_key = m.primary_key;
    obj->primary_len = m.primary_len;
    obj->primary_hash = m.primary_hash;
    obj->secondary_key = m.secondary_key;
    obj->secondary_len = m.secondary_len;
    obj->vary = m.vary;
    obj->vary_len = m.vary_len;
    obj->status = m.status;
    obj->request_time = m.request_time;
    obj->response_time = m.response_time;
    obj->corrected_initial_age = m.corrected_initial_age;
    obj->lifetime = m.lifetime;
    obj->stale_while_revalidate = m.stale_while_revalidate;
    obj->stale_if_error = m.stale_if_error;
    obj->stored_at = m.stored_at;
    obj->no_cache = m.no_cache;
    obj->must_revalidate = m.must_revalidate;
    obj->esi_template = m.esi_template;
    obj->body_hash = cache_object_builder_body_hash(b);
    obj->etag = m.etag;
    obj->etag_len = m.etag_len;
    obj->last_modified_ms = m.last_modified_ms;
    obj->tags = m.tags;
    obj->ntags = m.ntags;

    obj->head = p;
    if (b->head_len)
        memcpy(p, b->head, b->head_len);
    obj->head_len = b->head_len;
    p += b->head_len;

    obj->charge = size + CACHE_OBJECT_ALLOC_OVERHEAD;
    if (inline_body) {
        memcpy(p, b->chunks[0].iov_base, b->body_len);
        body[0].iov_base = p;
        body[0].iov_len = b->body_len;
        p += b->body_len;
        free_chunks(b->chunks, b->nchunks);
    } else if (b->nchunks > 1) {
        struct iovec *last = &b->chunks[b->nchunks - 1];
        void *trimmed = realloc(last->iov_base, last->iov_len);
        if (trimmed) {
            last->iov_base = trimmed;
            b->last_cap = last->iov_len;
        }
        memcpy(body, b->chunks, b->nchunks * sizeof(*body));
        obj->charge += (b->nchunks - 1) * (CACHE_OBJECT_CHUNK + CACHE_OBJECT_ALLOC_OVERHEAD) +
                       b->last_cap + CACHE_OBJECT_ALLOC_OVERHEAD;
    }
    assert(p == (char *)obj + size);
    obj->body = body;
    obj->nbody = b->nchunks;
    obj->body_len = b->body_len;

    /* The chunks now belong to the object (or were copied and freed). */
    b->nchunks = 0;
    cache_object_builder_abandon(bp);
    atomic_fetch_add(&live_objects, 1);
    return obj;
fail:
    cache_object_builder_abandon(bp);
    return NULL;
}

struct cache_object *cache_object_ref(struct cache_object *obj)
{
    unsigned prev = atomic_fetch_add_explicit(&obj->refs, 1, memory_order_relaxed);

    assert(prev > 0);
    (void)prev;
    return obj;
}

static void object_free(struct cache_object *obj)
{
    if (obj->nbody > 1)
        for (size_t i = 0; i < obj->nbody; i++)
            free(obj->body[i].iov_base);
    free(obj);
    atomic_fetch_sub(&live_objects, 1);
}

void cache_object_release(struct cache_object **objp)
{
    struct cache_object *obj = *objp;

    if (!obj)
        return;
    *objp = NULL;
    unsigned prev = atomic_fetch_sub_explicit(&obj->refs, 1, memory_order_acq_rel);
    assert(prev > 0);
    if (prev == 1)
        object_free(obj);
}

size_t cache_object_body_iov(const struct cache_object *obj, size_t offset, struct iovec *iov,
                             size_t max_iov)
{
    size_t n = 0;

    if (offset >= obj->body_len)
        return 0;
    size_t i = offset / CACHE_OBJECT_CHUNK; /* 0 for a one-chunk body */
    size_t skip = offset - i * CACHE_OBJECT_CHUNK;
    for (; i < obj->nbody && n < max_iov; i++, n++) {
        iov[n].iov_base = (char *)obj->body[i].iov_base + skip;
        iov[n].iov_len = obj->body[i].iov_len - skip;
        skip = 0;
    }
    return n;
}
