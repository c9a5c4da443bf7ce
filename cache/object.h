/*
 * cache/object.h: a stored response, immutable and reference-counted.
 *
 * An object is built while the response streams from the upstream, through a
 * builder (cache_object_builder_*), and becomes visible only when the builder
 * finishes: nothing partial is ever stored.  From cache_object_builder_finish()
 * on, every field below is immutable except the reference count and the
 * ban marks (atomics, see cache/ban.h), so any
 * thread holding a reference may read the fields directly, without a lock.
 *
 * Memory: the struct, its keys, Vary, validators, tags and the response head
 * share one allocation.  A body that fits in one chunk (CACHE_OBJECT_CHUNK)
 * lives in that allocation too; a larger body stays in the builder's chunks,
 * so filling a large object never reallocs and copies it.  Either way the
 * body is `body[0..nbody)`, ready for writev (see cache_object_body_iov()).
 *
 * References: the builder hands out the object with one reference; each
 * holder (a store, a request serving it) takes its own with
 * cache_object_ref() and drops it with cache_object_release().  The object is
 * freed by whichever release drops the last one, on any thread.
 */
#ifndef TESSERA_CACHE_OBJECT_H
#define TESSERA_CACHE_OBJECT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Body chunk size.  Every chunk of a chunked body but the last holds exactly
 * this many bytes, so an offset finds its chunk by division. */
#define CACHE_OBJECT_CHUNK ((size_t)64 * 1024)

/* What one heap allocation is assumed to cost beyond its size (glibc malloc's
 * header and rounding), so that `charge` does not flatter small objects. */
#define CACHE_OBJECT_ALLOC_OVERHEAD ((size_t)16)

/* A tag (Surrogate-Key / Cache-Tag value) for purging by tag.  In an object,
 * `name` is NUL-terminated as well. */
struct cache_object_tag {
    const char *name;
    size_t len;
};

struct cache_object {
    /* The mutable fields: the reference count, and what cache/ban.c
     * remembers of the bans this object was checked against. */
    atomic_uint refs;
    _Atomic uint64_t ban_seen; /* id of the newest ban checked, 0: none */
    atomic_bool ban_soft;      /* a soft ban matched: serve only as stale */

    /* Keys.  The primary key is never empty; the secondary key is the
     * request's Vary values as the key module encodes them, empty when the
     * response has no Vary.  `vary` is the response's Vary field value, so a
     * later request's secondary key can be computed for this object.
     * All three are NUL-terminated as well. */
    const char *primary_key;
    size_t primary_len;
    uint64_t primary_hash; /* XXH3_64bits_withSeed of primary_key, as given */
    const char *secondary_key;
    size_t secondary_len;
    const char *vary;
    size_t vary_len;

    /* The response to replay: status and the header block, "Name: value\r\n"
     * lines without the status line and without the blank line; Age and Date
     * are the proxy's to add. */
    int status;
    const char *head;
    size_t head_len;

    /* Freshness inputs (RFC 9111 4.2), all in milliseconds (times since the
     * epoch, durations as lengths). */
    int64_t request_time;
    int64_t response_time;
    int64_t corrected_initial_age;
    int64_t lifetime;
    int64_t stale_while_revalidate;
    int64_t stale_if_error;
    int64_t stored_at;
    bool no_cache;
    bool must_revalidate;
    bool esi_template; /* the body is a parsed ESI template (cache/esi.h's
                        * encoding), to be assembled, never sent as it is */

    /* Validators: etag as sent (quotes and W/ included), "" when none;
     * last_modified_ms 0 when none. */
    const char *etag;
    size_t etag_len;
    int64_t last_modified_ms;

    const struct cache_object_tag *tags;
    size_t ntags;

    /* The body: nbody slices, body_len bytes in all; nbody is 0 for an empty
     * body and 1 when it fits in one chunk. */
    const struct iovec *body;
    size_t nbody;
    size_t body_len;
    uint64_t body_hash; /* XXH3-64 (seed 0) of the body, computed when finished */

    /* What the object costs in memory: every allocation it owns (struct,
     * keys, head, tags, body chunks, chunk table) plus
     * CACHE_OBJECT_ALLOC_OVERHEAD for each.  Stores bound themselves with it. */
    size_t charge;
};

/* Everything an object carries besides its head and body, given to
 * cache_object_builder_new().  Slices need not be NUL-terminated; they are
 * copied, so they only need to live through the call.  NULL with length 0 is
 * an empty slice. */
struct cache_object_meta {
    const char *primary_key; /* not empty */
    size_t primary_len;
    uint64_t primary_hash;
    const char *secondary_key;
    size_t secondary_len;
    const char *vary;
    size_t vary_len;
    int status;
    int64_t request_time;
    int64_t response_time;
    int64_t corrected_initial_age;
    int64_t lifetime;
    int64_t stale_while_revalidate;
    int64_t stale_if_error;
    int64_t stored_at;
    bool no_cache;
    bool must_revalidate;
    bool esi_template;
    const char *etag;
    size_t etag_len;
    int64_t last_modified_ms;
    const struct cache_object_tag *tags;
    size_t ntags;
};

struct cache_object_builder;

/* cache_object_builder_new: start an object.  The builder copies meta.  An
 * append that would take the body beyond max_body bytes fails (SIZE_MAX: no
 * limit).  Returns NULL when memory runs out.  The caller owns the builder
 * and ends it with exactly one of _finish() or _abandon(). */
struct cache_object_builder *cache_object_builder_new(const struct cache_object_meta *meta,
                                                      size_t max_body);

/* cache_object_builder_set_head: copy the header block ("Name: value\r\n"
 * lines), replacing any set before.  False when memory runs out; the builder
 * is then failed (see _finish()). */
bool cache_object_builder_set_head(struct cache_object_builder *b, const char *head, size_t len);

/* cache_object_builder_append: copy len body bytes to the end of the body.
 * False when the body would exceed max_body or memory runs out: the builder
 * is then failed for good, later appends fail too and the caller should
 * abandon it.  Bytes already appended are never moved. */
bool cache_object_builder_append(struct cache_object_builder *b, const void *data, size_t len);

/* cache_object_builder_failed: whether an append or set_head has failed. */
bool cache_object_builder_failed(const struct cache_object_builder *b);

/* cache_object_builder_body_len: body bytes appended so far. */
size_t cache_object_builder_body_len(const struct cache_object_builder *b);

/* Longest ETag cache_object_builder_set_etag() takes. */
#define CACHE_OBJECT_ETAG_MAX 63

/* cache_object_builder_set_etag: replace the object's ETag (for `etag
 * generate`, once the body is known).  False when too long or failed. */
bool cache_object_builder_set_etag(struct cache_object_builder *b, const char *etag, size_t len);

/* cache_object_builder_body_hash: XXH3-64 of the body appended so far. */
uint64_t cache_object_builder_body_hash(const struct cache_object_builder *b);

/* cache_object_builder_abandon: free the builder and everything it holds;
 * *b becomes NULL (NULL *b is fine). */
void cache_object_builder_abandon(struct cache_object_builder **b);

/* cache_object_builder_finish: turn the builder into an object with one
 * reference, owned by the caller; the builder is consumed and *b becomes
 * NULL.  Returns NULL (and frees everything) when the builder has failed or
 * memory runs out. */
struct cache_object *cache_object_builder_finish(struct cache_object_builder **b);

/* cache_object_ref: take another reference; returns obj. */
struct cache_object *cache_object_ref(struct cache_object *obj);

/* cache_object_release: drop the caller's reference and NULL *obj; the last
 * release frees the object.  Thread-safe.  NULL *obj is fine. */
void cache_object_release(struct cache_object **obj);

/* cache_object_body_iov: fill up to max_iov iovecs with the body from byte
 * offset on, pointing into the object (no copy); the first may start inside
 * a chunk.  Returns how many were filled: 0 when offset >= body_len or
 * max_iov is 0.  The iovecs are valid while the caller holds a reference. */
size_t cache_object_body_iov(const struct cache_object *obj, size_t offset, struct iovec *iov,
                             size_t max_iov);

/* cache_object_live_count: objects finished and not yet freed, process-wide
 * (for leak checks in tests, and for stats). */
long cache_object_live_count(void);

#endif
