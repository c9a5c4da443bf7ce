/*
 * cache/codec.h: the byte encoding of a struct cache_object for a shared
 * store (memcached), and its defensive decoder.
 *
 * An object becomes one or more items, each at most item_size bytes: item 0
 * holds the header below and the first body bytes, items 1..n-1 ("chunks")
 * hold the rest of the body.  The caller stores item 0 under the key
 * cache_codec_item_key(..., 0, ...) and item i under the same key with
 * ":" i appended (index i).  Reading back: fetch item 0, cache_codec_peek()
 * it to learn how many chunks to multi-get, then cache_codec_decode() all of
 * them.  Everything read is untrusted: a short, long, foreign or garbled
 * item is a miss with a reason, never a crash or an over-read.
 *
 * Item 0, version 1.  Integers are little-endian; a "string" is a u32 length
 * followed by that many bytes (no NUL).
 *
 *   offset  size     field
 *        0  3        magic "TSR"
 *        3  1        version, 1
 *        4  1        flags: bit 0 no_cache, bit 1 must_revalidate, bit 2
 *                    esi_template (others 0)
 *        5  2        status (u16, 100..999)
 *        7  8        request_time            (i64, ms)
 *       15  8        response_time           (i64, ms)
 *       23  8        corrected_initial_age   (i64, ms)
 *       31  8        lifetime                (i64, ms)
 *       39  8        stale_while_revalidate  (i64, ms)
 *       47  8        stale_if_error          (i64, ms)
 *       55  8        stored_at               (i64, ms)
 *       63  8        last_modified_ms        (i64, ms; 0: none)
 *       71  4+n      primary key (string, not empty)
 *        .  4+n      secondary (Vary) key (string)
 *        .  4+n      vary, the response's Vary value (string)
 *        .  4+n      etag (string)
 *        .  4        tag count (u32)
 *        .  (4+n)*   tags (strings)
 *        .  4+n      head, "Name: value\r\n" lines (string)
 *        .  8        body length (u64)
 *        .  8        body hash: XXH3-64, seed 0, of the whole body
 *        .  4        chunk count: items after item 0 (u32)
 *        .  4        chunk size: body bytes in each chunk item but the last
 *                    (u32; 0 when the chunk count is 0)
 *   header  ...      the first body bytes: all of them when the chunk count
 *                    is 0, else exactly chunk size + 16 - header bytes (a
 *                    chunked object's item 0 is full)
 *
 * Chunk item i (1 <= i <= chunk count):
 *
 *        0  3        magic "TSC"
 *        3  1        version, 1
 *        4  4        index i (u32)
 *        8  8        check: XXH3-64, seed 0, of item 0's header bytes
 *       16  ...      body bytes: chunk size of them, fewer (not 0) in the last
 *
 * The check ties a chunk to one encoding of one object: the header holds the
 * full primary key, the times and the body hash, so a chunk left behind by
 * another key, or by an earlier version of the same key whose re-fill was
 * cut short, does not match.  The body hash catches what remains.
 *
 * The object's primary_hash is not encoded: it is seeded per process, so the
 * reader supplies its own.
 *
 * Pure functions, no locks, no global state.
 */
#ifndef TESSERA_CACHE_CODEC_H
#define TESSERA_CACHE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/object.h"

#define CACHE_CODEC_VERSION 1

/* Bytes before the body in a chunk item. */
#define CACHE_CODEC_CHUNK_OVERHEAD ((size_t)16)

/* Most chunk items one object may have; the decoder refuses more, so a lying
 * chunk count cannot make the caller multi-get millions of keys. */
#define CACHE_CODEC_MAX_CHUNKS ((uint32_t)1 << 16)

/* Largest item the encoder makes, whatever item_size says: memcached's own
 * ceiling (-I 1024m), and it keeps the chunk size within a u32. */
#define CACHE_CODEC_ITEM_MAX ((size_t)1 << 30)

/* memcached keys are at most 250 bytes with no spaces or control bytes.
 * An item key is prefix + 32 hex digits + ":" + up to 10 digits, so the
 * prefix is limited to 200 bytes of printable ASCII other than space. */
#define CACHE_CODEC_KEY_MAX 250
#define CACHE_CODEC_PREFIX_MAX 200

/* Bytes of one item, fetched or encoded.  A NULL data is a missing item
 * (a memcached miss). */
struct cache_codec_view {
    const void *data;
    size_t len;
};

/* The items of one encoded object: item[0] .. item[n-1], n >= 1. */
struct cache_codec_items {
    struct cache_codec_view *item;
    size_t n;
};

/* What cache_codec_peek() reads from item 0.  The key slices point into
 * item 0 and live as long as it. */
struct cache_codec_header {
    unsigned version;
    size_t header_len; /* bytes of item 0 before the body */
    const char *primary_key;
    size_t primary_len;
    const char *secondary_key;
    size_t secondary_len;
    uint64_t body_len;
    uint64_t body_hash;
    size_t body_in_item0; /* body bytes item 0 carries */
    uint32_t nchunks;     /* chunk items to fetch: indexes 1..nchunks */
    uint32_t chunk_size;
    uint64_t check; /* what every chunk item must carry */
};

/* cache_codec_overhead: the header bytes obj's item 0 needs before its body
 * (SIZE_MAX when a string is too long to encode).  An object fits in one item
 * when overhead + body_len <= item_size; each further item carries
 * item_size - CACHE_CODEC_CHUNK_OVERHEAD body bytes. */
size_t cache_codec_overhead(const struct cache_object *obj);

/* cache_codec_encode: encode obj into items of at most item_size bytes
 * (clamped to CACHE_CODEC_ITEM_MAX) in *out, which the caller frees with
 * cache_codec_items_clear().  The items are a copy: obj may go away.  False,
 * with *out empty, when the header does not fit in item_size, the body would
 * need more than CACHE_CODEC_MAX_CHUNKS chunks, the status is outside
 * 100..999, or memory runs out. */
bool cache_codec_encode(const struct cache_object *obj, size_t item_size,
                        struct cache_codec_items *out);

/* cache_codec_items_clear: free what cache_codec_encode() made and empty
 * *items (an empty or cleared *items is fine). */
void cache_codec_items_clear(struct cache_codec_items *items);

/* cache_codec_peek: parse item 0's header only, into *out, and check that it
 * is consistent (lengths within the item, chunk count matching body length
 * and chunk size, at most CACHE_CODEC_MAX_CHUNKS).  The caller should still
 * compare out->body_len with its own body limit before fetching the chunks.
 * False on anything wrong, with a short reason in err (NUL-terminated,
 * truncated to errlen; err may be NULL). */
bool cache_codec_peek(const void *item0, size_t len, struct cache_codec_header *out, char *err,
                      size_t errlen);

/* cache_codec_decode: rebuild an object from the fetched items[0..nitems),
 * item i as stored under index i.  The object must have primary key
 * expect_key/key_len (a hash collision is a miss) and a body of at most
 * max_body bytes; it is given primary_hash (the caller's seeded hash of the
 * key).  Returns a new object with one reference, owned by the caller, or
 * NULL with a short reason in err ("truncated at status", "bad magic",
 * "version 7 unsupported", "key mismatch", "chunk 3 missing", "chunk 2 from
 * another object", "body length mismatch", "head length overflows", ...;
 * err may be NULL).  Memory running out is NULL too ("out of memory").
 * Nothing is allocated before every length has been checked against the
 * bytes present and against max_body. */
struct cache_object *cache_codec_decode(const struct cache_codec_view *items, size_t nitems,
                                        const char *expect_key, size_t key_len,
                                        uint64_t primary_hash, size_t max_body, char *err,
                                        size_t errlen);

/* cache_codec_prefix_valid: whether prefix/len can start an item key: at
 * most CACHE_CODEC_PREFIX_MAX bytes, each printable ASCII other than space
 * (0x21..0x7e).  May be empty.  For the config parser to check early. */
bool cache_codec_prefix_valid(const char *prefix, size_t len);

/* cache_codec_item_key: the memcached key of item `index` of the object
 * under (primary, secondary):
 *
 *     prefix hex32( XXH3-128, seed 0, of primary [ "\n" secondary ] ) [ ":" index ]
 *
 * the "\n" secondary part only when slen > 0, the ":" index part only when
 * index > 0; hex32 as cache_key_hash128_hex() writes it, so every node
 * agrees.  prefix is NUL-terminated.  Writes the key and a NUL to out and
 * returns its length (at most CACHE_CODEC_KEY_MAX, so a buffer of
 * CACHE_CODEC_KEY_MAX + 1 always does); returns 0, writing "" when cap > 0,
 * when the prefix is not valid (cache_codec_prefix_valid()) or cap is too
 * small. */
size_t cache_codec_item_key(const char *prefix, const char *primary_key, size_t len,
                            const char *secondary, size_t slen, unsigned index, char *out,
                            size_t cap);

#endif
