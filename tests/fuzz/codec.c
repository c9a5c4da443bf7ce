/*
 * tests/fuzz/codec.c: libFuzzer target for the memcached object decoder
 * (cache/codec.c).
 *
 * Input: byte 0 picks the item count (1 + (b & 3)) and, with bit 2 set,
 * decodes against a fixed key instead of the key item 0 names; then, for
 * each item but the last, a u16 little-endian length (0xffff: the item is
 * missing) and that many bytes (fewer if the input ends); the last item
 * takes the rest.  Each item is copied into a buffer of its exact size so
 * ASan sees any over-read.
 *
 * A successful decode is re-encoded with the same geometry: the encoding is
 * canonical, so the bytes must be the input's exactly, and decoding them
 * again must give the same object.  The item key of the object is built
 * too, with a prefix taken from the input.
 *
 * Build and run (not part of the Makefile; -D_GNU_SOURCE as the Makefile
 * has it, or key.c gets memrchr() undeclared; new units go to a scratch
 * directory, the seeds stay as committed):
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -I. \
 *       -I/usr/share/include/llhttp tests/fuzz/codec.c cache/[a-z]*.c config/[a-z]*.c \
 *       -lxxhash -lpcre2-8 -o /tmp/fuzz_codec
 *   mkdir -p /tmp/fuzz_out
 *   /tmp/fuzz_codec -max_total_time=60 /tmp/fuzz_out tests/fuzz/corpus/codec
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/codec.h"

#define MAX_BODY ((size_t)1 << 20)
#define HASH ((uint64_t)42)

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static bool same_slice(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void check_same(const struct cache_object *a, const struct cache_object *b)
{
    check(same_slice(a->primary_key, a->primary_len, b->primary_key, b->primary_len));
    check(same_slice(a->secondary_key, a->secondary_len, b->secondary_key, b->secondary_len));
    check(same_slice(a->vary, a->vary_len, b->vary, b->vary_len));
    check(same_slice(a->etag, a->etag_len, b->etag, b->etag_len));
    check(same_slice(a->head, a->head_len, b->head, b->head_len));
    check(a->status == b->status && a->no_cache == b->no_cache &&
          a->must_revalidate == b->must_revalidate);
    check(a->request_time == b->request_time && a->response_time == b->response_time &&
          a->corrected_initial_age == b->corrected_initial_age && a->lifetime == b->lifetime &&
          a->stale_while_revalidate == b->stale_while_revalidate &&
          a->stale_if_error == b->stale_if_error && a->stored_at == b->stored_at &&
          a->last_modified_ms == b->last_modified_ms);
    check(a->ntags == b->ntags);
    for (size_t i = 0; i < a->ntags; i++)
        check(same_slice(a->tags[i].name, a->tags[i].len, b->tags[i].name, b->tags[i].len));
    check(a->body_len == b->body_len && a->primary_hash == b->primary_hash);
    for (size_t i = 0, off = 0; i < a->nbody; i++) {
        struct iovec iov;
        /* b's chunking may differ from a's: walk b through body_iov */
        size_t done = 0;
        while (done < a->body[i].iov_len) {
            check(cache_object_body_iov(b, off + done, &iov, 1) == 1);
            size_t n =
                iov.iov_len < a->body[i].iov_len - done ? iov.iov_len : a->body[i].iov_len - done;
            check(memcmp((const char *)a->body[i].iov_base + done, iov.iov_base, n) == 0);
            done += n;
        }
        off += done;
    }
}

/* Re-encode obj as the input was laid out and decode it again. */
static void round_trip(const struct cache_object *obj, const struct cache_codec_view *in,
                       size_t nin, const struct cache_codec_header *h)
{
    struct cache_codec_items items;
    char err[128];
    size_t item_size = h->nchunks ? h->chunk_size + CACHE_CODEC_CHUNK_OVERHEAD : SIZE_MAX;

    check(cache_codec_encode(obj, item_size, &items));
    check(items.n == nin);
    for (size_t i = 0; i < nin; i++)
        check(same_slice(items.item[i].data, items.item[i].len, in[i].data, in[i].len));
    struct cache_object *again = cache_codec_decode(
        items.item, items.n, obj->primary_key, obj->primary_len, HASH, MAX_BODY, err, sizeof err);
    check(again != NULL);
    check_same(obj, again);
    cache_object_release(&again);
    cache_codec_items_clear(&items);
}

static void item_key(const struct cache_object *obj, const uint8_t *data, size_t size)
{
    char prefix[CACHE_CODEC_PREFIX_MAX + 8], key[CACHE_CODEC_KEY_MAX + 1];
    size_t plen = size < sizeof prefix - 1 ? size : sizeof prefix - 1;

    memcpy(prefix, data, plen);
    prefix[plen] = '\0';
    size_t n = cache_codec_item_key(prefix, obj->primary_key, obj->primary_len, obj->secondary_key,
                                    obj->secondary_len, UINT32_MAX, key, sizeof key);
    check(n <= CACHE_CODEC_KEY_MAX && strlen(key) == n);
    for (size_t i = 0; i < n; i++)
        check(key[i] > 0x20 && key[i] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cache_codec_view items[4] = {{0}};
    struct cache_codec_header h;
    char err[128];

    if (size < 1)
        return 0;
    size_t nitems = 1 + (data[0] & 3);
    bool fixed_key = data[0] & 4;
    const uint8_t *p = data + 1;
    size_t left = size - 1;

    for (size_t i = 0; i < nitems; i++) {
        size_t len = left;
        if (i + 1 < nitems) {
            if (left < 2)
                break; /* the rest of the items are missing */
            len = (size_t)p[0] | (size_t)p[1] << 8;
            p += 2;
            left -= 2;
            if (len == 0xffff)
                continue; /* missing */
            if (len > left)
                len = left;
        }
        void *copy = malloc(len ? len : 1);
        if (!copy)
            goto out;
        memcpy(copy, p, len);
        items[i].data = copy;
        items[i].len = len;
        p += len;
        left -= len;
    }

    const char *key = "k";
    size_t key_len = 1;
    bool peeked =
        items[0].data && cache_codec_peek(items[0].data, items[0].len, &h, err, sizeof err);
    if (peeked && !fixed_key) {
        key = h.primary_key;
        key_len = h.primary_len;
    }
    struct cache_object *obj =
        cache_codec_decode(items, nitems, key, key_len, HASH, MAX_BODY, err, sizeof err);
    if (obj) {
        check(peeked); /* decode accepts nothing peek refuses */
        round_trip(obj, items, nitems, &h);
        item_key(obj, data, size);
        cache_object_release(&obj);
    } else {
        check(err[0] != '\0');
    }
out:
    for (size_t i = 0; i < nitems; i++)
        free((void *)items[i].data);
    return 0;
}
