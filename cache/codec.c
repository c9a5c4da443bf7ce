/*
 * cache/codec.c: objects to memcached items and back (layout in codec.h).
 *
 * The encoder writes every item of an object into one allocation (the item
 * table first, then the bytes), so clearing it is one free.  The decoder
 * reads the way a parser of hostile input must: a cursor over the bytes
 * present, every fixed field and every length prefix checked against what
 * remains before it is used, counts checked against the bytes that could
 * hold them, and arithmetic on lengths done in 64 bits or checked.  It
 * validates everything first (header, chunk headers, sizes, body hash) and
 * allocates only then, through the object builder, so a lying length never
 * turns into a large allocation.
 *
 * No state, no locks; objects are only read (encode) or created with one
 * reference handed to the caller (decode).
 */
#include "cache/codec.h"
#include "cache/wire.h"

#include "cache/key.h"

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ITEM0_MAGIC[3] = {'T', 'S', 'R'};
static const char CHUNK_MAGIC[3] = {'T', 'S', 'C'};

#define FLAG_NO_CACHE 0x01u
#define FLAG_MUST_REVALIDATE 0x02u
#define FLAG_ESI_TEMPLATE 0x04u
#define FLAGS_KNOWN (FLAG_NO_CACHE | FLAG_MUST_REVALIDATE | FLAG_ESI_TEMPLATE)

/* magic, version, flags, status, eight i64 */
#define FIXED_HEAD_LEN ((size_t)3 + 1 + 1 + 2 + 8 * 8)
/* body length, body hash, chunk count, chunk size */
#define FIXED_TAIL_LEN ((size_t)8 + 8 + 4 + 4)

/* ---- little-endian integers ---- */

static unsigned char *put_bytes(unsigned char *p, const void *s, size_t len)
{
    if (len)
        memcpy(p, s, len);
    return p + len;
}

static unsigned char *put_string(unsigned char *p, const char *s, size_t len)
{
    return put_bytes(wire_put_le(p, len, 4), s, len);
}

/* ---- a cursor over untrusted bytes ---- */

struct reader {
    const unsigned char *p;
    size_t left;
    char *err;
    size_t errlen;
};

/* Take an n-byte little-endian integer (n <= 8). */
static bool read_uint(struct reader *r, unsigned n, uint64_t *v, const char *what)
{
    if (r->left < n) {
        wire_err(r->err, r->errlen, "truncated at %s", what);
        return false;
    }
    *v = wire_get_le(r->p, n);
    r->p += n;
    r->left -= n;
    return true;
}

static bool read_i64(struct reader *r, int64_t *v, const char *what)
{
    uint64_t u;

    if (!read_uint(r, 8, &u, what))
        return false;
    /* Two's complement by definition of the format; the cast of a value
     * above INT64_MAX is implementation-defined in C11, so go via memcpy. */
    memcpy(v, &u, sizeof *v);
    return true;
}

/* Take a string: a u32 length, then that many bytes, which must be present. */
static bool read_string(struct reader *r, const char **s, size_t *len, const char *what)
{
    uint64_t n;

    if (!read_uint(r, 4, &n, what))
        return false;
    if (n > r->left) {
        wire_err(r->err, r->errlen, "%s length overflows", what);
        return false;
    }
    *s = (const char *)r->p;
    *len = (size_t)n;
    r->p += n;
    r->left -= n;
    return true;
}

/* ---- item 0 ---- */

struct parsed {
    struct cache_codec_header h;
    struct cache_object_meta meta; /* tags not filled: see tags_at */
    const unsigned char *tags_at;  /* the first tag's length field */
    const char *head;
    size_t head_len;
    const unsigned char *body; /* h.body_in_item0 bytes */
};

/* Parse and check the header of item 0; slices in *out point into it. */
static bool parse_item0(const void *item0, size_t len, struct parsed *out, char *err, size_t errlen)
{
    struct reader r = {.p = item0, .left = len, .err = err, .errlen = errlen};
    struct cache_object_meta *m = &out->meta;
    struct cache_codec_header *h = &out->h;
    uint64_t v, ntags, nchunks, chunk_size;

    memset(out, 0, sizeof *out);
    if (!item0) {
        wire_err(err, errlen, "item 0 missing");
        return false;
    }
    if (len < sizeof ITEM0_MAGIC) {
        wire_err(err, errlen, "truncated at magic");
        return false;
    }
    if (memcmp(item0, ITEM0_MAGIC, sizeof ITEM0_MAGIC) != 0) {
        wire_err(err, errlen, "bad magic");
        return false;
    }
    r.p += sizeof ITEM0_MAGIC;
    r.left -= sizeof ITEM0_MAGIC;
    if (!read_uint(&r, 1, &v, "version"))
        return false;
    if (v != CACHE_CODEC_VERSION) {
        wire_err(err, errlen, "version %u unsupported", (unsigned)v);
        return false;
    }
    h->version = (unsigned)v;
    if (!read_uint(&r, 1, &v, "flags"))
        return false;
    if (v & ~(uint64_t)FLAGS_KNOWN) {
        wire_err(err, errlen, "bad flags 0x%02x", (unsigned)v);
        return false;
    }
    m->no_cache = v & FLAG_NO_CACHE;
    m->must_revalidate = v & FLAG_MUST_REVALIDATE;
    m->esi_template = v & FLAG_ESI_TEMPLATE;
    if (!read_uint(&r, 2, &v, "status"))
        return false;
    if (v < 100 || v > 999) {
        wire_err(err, errlen, "bad status %u", (unsigned)v);
        return false;
    }
    m->status = (int)v;
    if (!read_i64(&r, &m->request_time, "request_time") ||
        !read_i64(&r, &m->response_time, "response_time") ||
        !read_i64(&r, &m->corrected_initial_age, "corrected_initial_age") ||
        !read_i64(&r, &m->lifetime, "lifetime") ||
        !read_i64(&r, &m->stale_while_revalidate, "stale_while_revalidate") ||
        !read_i64(&r, &m->stale_if_error, "stale_if_error") ||
        !read_i64(&r, &m->stored_at, "stored_at") ||
        !read_i64(&r, &m->last_modified_ms, "last_modified"))
        return false;

    if (!read_string(&r, &m->primary_key, &m->primary_len, "primary key"))
        return false;
    if (m->primary_len == 0) { /* the builder requires one */
        wire_err(err, errlen, "empty primary key");
        return false;
    }
    if (!read_string(&r, &m->secondary_key, &m->secondary_len, "secondary key") ||
        !read_string(&r, &m->vary, &m->vary_len, "vary") ||
        !read_string(&r, &m->etag, &m->etag_len, "etag") || !read_uint(&r, 4, &ntags, "tag count"))
        return false;
    /* Each tag takes at least its 4-byte length: this bounds the table the
     * decoder will allocate by the size of the item. */
    if (ntags > r.left / 4) {
        wire_err(err, errlen, "tag count overflows");
        return false;
    }
    out->tags_at = r.p;
    m->ntags = (size_t)ntags;
    for (uint64_t i = 0; i < ntags; i++) {
        const char *s;
        size_t n;
        if (!read_string(&r, &s, &n, "tag"))
            return false;
    }
    if (!read_string(&r, &out->head, &out->head_len, "head") ||
        !read_uint(&r, 8, &h->body_len, "body length") ||
        !read_uint(&r, 8, &h->body_hash, "body hash") ||
        !read_uint(&r, 4, &nchunks, "chunk count") || !read_uint(&r, 4, &chunk_size, "chunk size"))
        return false;
#if SIZE_MAX < UINT64_MAX
    if (h->body_len > SIZE_MAX) {
        wire_err(err, errlen, "body length overflows");
        return false;
    }
#endif

    h->header_len = len - r.left;
    h->body_in_item0 = r.left;
    h->nchunks = (uint32_t)nchunks;
    h->chunk_size = (uint32_t)chunk_size;
    out->body = r.p;

    /* All of the body in item 0, or item 0 full and the rest in exactly as
     * many chunk-size chunks as it takes (see the layout in codec.h). */
    if (nchunks == 0) {
        if (chunk_size != 0) {
            wire_err(err, errlen, "bad chunk size");
            return false;
        }
        if (h->body_len != h->body_in_item0) {
            wire_err(err, errlen, "body length mismatch");
            return false;
        }
    } else {
        if (nchunks > CACHE_CODEC_MAX_CHUNKS) {
            wire_err(err, errlen, "chunk count %u too large", (unsigned)nchunks);
            return false;
        }
        if (chunk_size == 0) {
            wire_err(err, errlen, "bad chunk size");
            return false;
        }
        /* 64-bit sums of values below 2^32 and a size_t: cannot wrap. */
        if ((uint64_t)len != chunk_size + CACHE_CODEC_CHUNK_OVERHEAD ||
            h->body_in_item0 >= h->body_len) {
            wire_err(err, errlen, "body length mismatch");
            return false;
        }
        uint64_t rest = h->body_len - h->body_in_item0;
        if (rest / chunk_size + (rest % chunk_size != 0) != nchunks) {
            wire_err(err, errlen, "chunk count mismatch");
            return false;
        }
    }

    h->primary_key = m->primary_key;
    h->primary_len = m->primary_len;
    h->secondary_key = m->secondary_key;
    h->secondary_len = m->secondary_len;
    h->check = XXH3_64bits(item0, h->header_len);
    return true;
}

bool cache_codec_peek(const void *item0, size_t len, struct cache_codec_header *out, char *err,
                      size_t errlen)
{
    struct parsed p;

    if (!parse_item0(item0, len, &p, err, errlen))
        return false;
    *out = p.h;
    return true;
}

/* ---- chunks ---- */

/* Check chunk item `index` (1-based) of the object whose item 0 is p: its
 * header, and that its payload is the size the layout says.  *payload and
 * *plen give its body bytes. */
static bool check_chunk(const struct parsed *p, const struct cache_codec_view *item, uint32_t index,
                        uint64_t *rest, const unsigned char **payload, size_t *plen, char *err,
                        size_t errlen)
{
    const unsigned char *c = item->data;

    if (!c) {
        wire_err(err, errlen, "chunk %u missing", (unsigned)index);
        return false;
    }
    if (item->len < CACHE_CODEC_CHUNK_OVERHEAD) {
        wire_err(err, errlen, "chunk %u truncated", (unsigned)index);
        return false;
    }
    if (memcmp(c, CHUNK_MAGIC, sizeof CHUNK_MAGIC) != 0) {
        wire_err(err, errlen, "chunk %u bad magic", (unsigned)index);
        return false;
    }
    if (c[3] != CACHE_CODEC_VERSION) {
        wire_err(err, errlen, "chunk %u version %u unsupported", (unsigned)index, c[3]);
        return false;
    }
    /* Duplicated and reordered chunks carry another index. */
    if (wire_get_le(c + 4, 4) != index) {
        wire_err(err, errlen, "chunk %u out of order", (unsigned)index);
        return false;
    }
    if (wire_get_le(c + 8, 8) != p->h.check) {
        wire_err(err, errlen, "chunk %u from another object", (unsigned)index);
        return false;
    }
    size_t n = item->len - CACHE_CODEC_CHUNK_OVERHEAD;
    uint64_t want = *rest < p->h.chunk_size ? *rest : p->h.chunk_size;
    if (n != want) {
        wire_err(err, errlen, "chunk %u body length mismatch", (unsigned)index);
        return false;
    }
    *rest -= n;
    *payload = c + CACHE_CODEC_CHUNK_OVERHEAD;
    *plen = n;
    return true;
}

/* Check every chunk and the body hash, before anything is allocated. */
static bool check_body(const struct parsed *p, const struct cache_codec_view *items, size_t nitems,
                       char *err, size_t errlen)
{
    XXH3_state_t state;
    uint64_t rest = p->h.body_len - p->h.body_in_item0;

    if (nitems > (size_t)p->h.nchunks + 1) {
        wire_err(err, errlen, "%zu items for %u chunks", nitems, (unsigned)p->h.nchunks);
        return false;
    }
    XXH3_64bits_reset(&state);
    XXH3_64bits_update(&state, p->body, p->h.body_in_item0);
    for (uint32_t i = 1; i <= p->h.nchunks; i++) {
        static const struct cache_codec_view missing = {NULL, 0};
        const struct cache_codec_view *item = i < nitems ? &items[i] : &missing;
        const unsigned char *payload;
        size_t n;
        if (!check_chunk(p, item, i, &rest, &payload, &n, err, errlen))
            return false;
        XXH3_64bits_update(&state, payload, n);
    }
    /* parse_item0 matched the chunk count to the body length, and each
     * chunk took min(rest, chunk size), so nothing can be left over. */
    if (rest != 0) {
        wire_err(err, errlen, "body length mismatch");
        return false;
    }
    if (XXH3_64bits_digest(&state) != p->h.body_hash) {
        wire_err(err, errlen, "body hash mismatch");
        return false;
    }
    return true;
}

/* ---- decode ---- */

struct cache_object *cache_codec_decode(const struct cache_codec_view *items, size_t nitems,
                                        const char *expect_key, size_t key_len,
                                        uint64_t primary_hash, size_t max_body, char *err,
                                        size_t errlen)
{
    struct parsed p;
    struct cache_object_tag *tags = NULL;
    struct cache_object_builder *b = NULL;
    struct cache_object *obj;

    if (nitems == 0 || !items) {
        wire_err(err, errlen, "item 0 missing");
        goto fail;
    }
    if (!parse_item0(items[0].data, items[0].len, &p, err, errlen))
        goto fail;
    if (p.meta.primary_len != key_len || memcmp(p.meta.primary_key, expect_key, key_len) != 0) {
        wire_err(err, errlen, "key mismatch");
        goto fail;
    }
    if (p.h.body_len > max_body) {
        wire_err(err, errlen, "body length %llu over %zu", (unsigned long long)p.h.body_len,
                 max_body);
        goto fail;
    }
    if (!check_body(&p, items, nitems, err, errlen))
        goto fail;

    /* Everything is checked: now build.  The tag table is bounded by the
     * size of item 0 (parse_item0 checked the count against it). */
    if (p.meta.ntags) {
        tags = calloc(p.meta.ntags, sizeof *tags);
        if (!tags)
            goto oom;
        size_t at = (size_t)(p.tags_at - (const unsigned char *)items[0].data);
        struct reader r = {.p = p.tags_at, .left = items[0].len - at};
        for (size_t i = 0; i < p.meta.ntags; i++)
            if (!read_string(&r, &tags[i].name, &tags[i].len, "tag"))
                goto oom; /* cannot happen: parse_item0 read them */
        p.meta.tags = tags;
    }
    p.meta.primary_hash = primary_hash;
    b = cache_object_builder_new(&p.meta, max_body);
    free(tags);
    tags = NULL;
    if (!b || !cache_object_builder_set_head(b, p.head, p.head_len) ||
        !cache_object_builder_append(b, p.body, p.h.body_in_item0))
        goto oom;
    for (uint32_t i = 1; i <= p.h.nchunks; i++)
        if (!cache_object_builder_append(b,
                                         (const char *)items[i].data + CACHE_CODEC_CHUNK_OVERHEAD,
                                         items[i].len - CACHE_CODEC_CHUNK_OVERHEAD))
            goto oom;
    obj = cache_object_builder_finish(&b);
    if (!obj)
        goto oom;
    return obj;
oom:
    wire_err(err, errlen, "out of memory");
fail:
    free(tags);
    cache_object_builder_abandon(&b);
    return NULL;
}

/* ---- encode ---- */

static bool add_len(size_t *acc, size_t n)
{
    return !__builtin_add_overflow(*acc, n, acc);
}

static bool add_string_len(size_t *acc, size_t n)
{
    return n <= UINT32_MAX && add_len(acc, 4) && add_len(acc, n);
}

size_t cache_codec_overhead(const struct cache_object *obj)
{
    size_t n = FIXED_HEAD_LEN + 4 /* tag count */ + FIXED_TAIL_LEN;

    if (!add_string_len(&n, obj->primary_len) || !add_string_len(&n, obj->secondary_len) ||
        !add_string_len(&n, obj->vary_len) || !add_string_len(&n, obj->etag_len) ||
        !add_string_len(&n, obj->head_len) || obj->ntags > UINT32_MAX)
        return SIZE_MAX;
    for (size_t i = 0; i < obj->ntags; i++)
        if (!add_string_len(&n, obj->tags[i].len))
            return SIZE_MAX;
    return n;
}

/* Copy body bytes [off, off + len) of obj to dst. */
static void copy_body(const struct cache_object *obj, size_t off, size_t len, unsigned char *dst)
{
    struct iovec iov[16];

    while (len > 0) {
        size_t n = cache_object_body_iov(obj, off, iov, 16);
        for (size_t i = 0; i < n && len > 0; i++) {
            size_t take = iov[i].iov_len < len ? iov[i].iov_len : len;
            memcpy(dst, iov[i].iov_base, take);
            dst += take;
            off += take;
            len -= take;
        }
    }
}

static unsigned char *write_header(const struct cache_object *obj, unsigned char *p,
                                   uint32_t nchunks, uint32_t chunk_size)
{
    unsigned flags = (obj->no_cache ? FLAG_NO_CACHE : 0) |
                     (obj->must_revalidate ? FLAG_MUST_REVALIDATE : 0) |
                     (obj->esi_template ? FLAG_ESI_TEMPLATE : 0);
    const int64_t times[] = {
        obj->request_time, obj->response_time,          obj->corrected_initial_age,
        obj->lifetime,     obj->stale_while_revalidate, obj->stale_if_error,
        obj->stored_at,    obj->last_modified_ms};

    p = put_bytes(p, ITEM0_MAGIC, sizeof ITEM0_MAGIC);
    p = wire_put_le(p, CACHE_CODEC_VERSION, 1);
    p = wire_put_le(p, flags, 1);
    p = wire_put_le(p, (uint64_t)obj->status, 2);
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        uint64_t u;
        memcpy(&u, &times[i], sizeof u);
        p = wire_put_le(p, u, 8);
    }
    p = put_string(p, obj->primary_key, obj->primary_len);
    p = put_string(p, obj->secondary_key, obj->secondary_len);
    p = put_string(p, obj->vary, obj->vary_len);
    p = put_string(p, obj->etag, obj->etag_len);
    p = wire_put_le(p, obj->ntags, 4);
    for (size_t i = 0; i < obj->ntags; i++)
        p = put_string(p, obj->tags[i].name, obj->tags[i].len);
    p = put_string(p, obj->head, obj->head_len);
    p = wire_put_le(p, obj->body_len, 8);
    p = wire_put_le(p, obj->body_hash, 8);
    p = wire_put_le(p, nchunks, 4);
    return wire_put_le(p, chunk_size, 4);
}

bool cache_codec_encode(const struct cache_object *obj, size_t item_size,
                        struct cache_codec_items *out)
{
    size_t hdr = cache_codec_overhead(obj);
    size_t chunk_size = 0, nchunks = 0;

    out->item = NULL;
    out->n = 0;
    if (obj->status < 100 || obj->status > 999)
        return false;
    if (item_size > CACHE_CODEC_ITEM_MAX)
        item_size = CACHE_CODEC_ITEM_MAX;
    if (hdr == SIZE_MAX || hdr > item_size)
        return false;
    size_t first = obj->body_len < item_size - hdr ? obj->body_len : item_size - hdr;
    size_t rest = obj->body_len - first;
    if (rest > 0) {
        chunk_size = item_size - CACHE_CODEC_CHUNK_OVERHEAD; /* > 0: hdr > overhead */
        nchunks = rest / chunk_size + (rest % chunk_size != 0);
        if (nchunks > CACHE_CODEC_MAX_CHUNKS)
            return false;
    }

    /* nchunks <= 2^16 and the body is in memory already: these cannot
     * overflow on a 64-bit host, but stay checked for the others. */
    size_t total = 0;
    if (!add_len(&total, (nchunks + 1) * sizeof(struct cache_codec_view)) ||
        !add_len(&total, hdr) || !add_len(&total, obj->body_len) ||
        !add_len(&total, nchunks * CACHE_CODEC_CHUNK_OVERHEAD))
        return false;
    struct cache_codec_view *item = malloc(total);
    if (!item)
        return false;

    unsigned char *p = (unsigned char *)(item + nchunks + 1);
    unsigned char *item0 = p;
    p = write_header(obj, p, (uint32_t)nchunks, (uint32_t)chunk_size);
    copy_body(obj, 0, first, p);
    p += first;
    item[0].data = item0;
    item[0].len = hdr + first;

    uint64_t check = XXH3_64bits(item0, hdr);
    size_t off = first;
    for (size_t i = 1; i <= nchunks; i++) {
        size_t n = obj->body_len - off < chunk_size ? obj->body_len - off : chunk_size;
        item[i].data = p;
        item[i].len = CACHE_CODEC_CHUNK_OVERHEAD + n;
        p = put_bytes(p, CHUNK_MAGIC, sizeof CHUNK_MAGIC);
        p = wire_put_le(p, CACHE_CODEC_VERSION, 1);
        p = wire_put_le(p, i, 4);
        p = wire_put_le(p, check, 8);
        copy_body(obj, off, n, p);
        p += n;
        off += n;
    }
    out->item = item;
    out->n = nchunks + 1;
    return true;
}

void cache_codec_items_clear(struct cache_codec_items *items)
{
    free(items->item); /* the bytes share its allocation */
    items->item = NULL;
    items->n = 0;
}

/* ---- memcached keys ---- */

bool cache_codec_prefix_valid(const char *prefix, size_t len)
{
    if (len > CACHE_CODEC_PREFIX_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)prefix[i] < 0x21 || (unsigned char)prefix[i] > 0x7e)
            return false;
    return true;
}

/* The hex of XXH3-128 (seed 0) of primary "\n" secondary, streamed so that
 * it equals cache_key_hash128_hex() of the concatenation. */
static void hash_pair_hex(const char *primary, size_t len, const char *secondary, size_t slen,
                          char out[33])
{
    static const char hex[] = "0123456789abcdef";
    XXH3_state_t state;
    XXH128_canonical_t c;

    XXH3_128bits_reset_withSeed(&state, 0);
    XXH3_128bits_update(&state, primary, len);
    XXH3_128bits_update(&state, "\n", 1);
    XXH3_128bits_update(&state, secondary, slen);
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&state));
    for (size_t i = 0; i < sizeof c.digest; i++) {
        out[2 * i] = hex[c.digest[i] >> 4];
        out[2 * i + 1] = hex[c.digest[i] & 15];
    }
    out[32] = '\0';
}

size_t cache_codec_item_key(const char *prefix, const char *primary_key, size_t len,
                            const char *secondary, size_t slen, unsigned index, char *out,
                            size_t cap)
{
    size_t plen = strnlen(prefix, CACHE_CODEC_PREFIX_MAX + 1);
    char hash[33];
    int n;

    if (!cache_codec_prefix_valid(prefix, plen))
        goto fail;
    if (slen == 0)
        cache_key_hash128_hex(primary_key, len, hash);
    else
        hash_pair_hex(primary_key, len, secondary, slen, hash);
    if (index > 0)
        n = snprintf(out, cap, "%s%s:%u", prefix, hash, index);
    else
        n = snprintf(out, cap, "%s%s", prefix, hash);
    if (n < 0 || (size_t)n >= cap)
        goto fail;
    return (size_t)n;
fail:
    if (cap > 0)
        out[0] = '\0';
    return 0;
}
