/*
 * proxy/esimerge.h: the cache facts of an assembled ESI page (issue 10).
 *
 * An assembled page is made of parts: the template's own response and the
 * response of every fragment included into it.  The page is only as
 * cacheable, for its client, as its least cacheable part, and it is only
 * the same page again when every part is the same again.  So the page gets:
 *   - Cache-Control: no-store when any part says no-store; otherwise
 *     private when any part is private, no-cache when any part is, and a
 *     max-age that is the smallest freshness left among the parts, as a
 *     private cache would compute it (RFC 9111 4.2.1, 4.2.3: max-age, else
 *     Expires minus Date, minus Age; s-maxage is for shared caches and
 *     ignored; no heuristic freshness);
 *   - an ETag, only when every part has one: a hash of the parts' tags in
 *     order, weak when any of them is.
 *
 * Usage: esi_merge_init(), one esi_merge_add() or esi_merge_add_empty() per
 * part in page order, then esi_merge_fields() or esi_merge_etag().  Pure:
 * no allocation (but the caller's buf), no clock (the caller passes now),
 * nothing shared; an esi_merge belongs to one assembly.
 */
#ifndef TESSERA_ESIMERGE_H
#define TESSERA_ESIMERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"
#include "proxy/http.h"

/* Accumulators: private to esimerge.c, on the caller's stack. */
struct esi_merge {
    unsigned nparts;
    int64_t fresh_s; /* smallest freshness left so far, seconds (nparts > 0) */
    bool no_store;
    bool is_private;
    bool no_cache;
    bool tags_ok;  /* every part so far had one valid entity-tag */
    bool any_weak; /* one of them was weak */
    uint64_t hash; /* over the tags so far */
};

/* Longest esi_merge_etag(): W/"esi-" 16 hex digits '"' and the NUL. */
#define ESI_MERGE_ETAG_MAX 25

/* esi_merge_init: no part yet. */
void esi_merge_init(struct esi_merge *m);

/*
 * esi_merge_add: a part that was included, from its response head (spans
 * into base, read during the call only); now_ms is the wall clock in ms.
 *  - Its freshness left: Cache-Control max-age (all its Cache-Control
 *    fields, cache/cachecontrol.h), else Expires minus Date (Date missing
 *    or invalid: now), else 0; then minus its Age field (delta-seconds; an
 *    invalid Age is ignored); below 0 is 0.  As RFC 9111 4.2.1 and 5.3
 *    say, an invalid freshness directive, an invalid Expires or two Expires
 *    fields mean 0 (already stale); the parser does not tell an invalid
 *    max-age from an invalid s-maxage, so either one gives 0.
 *  - no-store, private and no-cache (with or without field names) count.
 *  - Its ETag: one field holding one valid entity-tag (RFC 9110 8.8.3,
 *    cache/conditional.h); none, an invalid one or two ETag fields mean the
 *    page has no ETag.
 */
void esi_merge_add(struct esi_merge *m, const char *base, const struct http_head *head,
                   int64_t now_ms);

/* esi_merge_add_source: where the next part came from (the URL an include
 * was answered from: its src or its alt), folded into the ETag, so that
 * two pages whose parts carry equal tags from different resources never
 * share an ETag.  Call before that part's esi_merge_add(). */
void esi_merge_add_source(struct esi_merge *m, const char *src, size_t len);

/* esi_merge_add_empty: a part that failed and was left empty
 * (onerror="continue"): no freshness (0: the page is not to be kept with a
 * hole in it) and no ETag. */
void esi_merge_add_empty(struct esi_merge *m);

/* esi_merge_fields: append to out "Cache-Control: no-store\r\n", or
 * "Cache-Control: [private, ][no-cache, ]max-age=N\r\n" (N 0 when there
 * was no part), then "ETag: <esi_merge_etag()>\r\n" when there is one.
 * Memory failure is out's sticky oom. */
void esi_merge_fields(const struct esi_merge *m, struct buf *out);

/* esi_merge_cache_control: the Cache-Control line of esi_merge_fields()
 * alone (for a page whose ETag is coded: proxy/encode.h encode_etag()). */
void esi_merge_cache_control(const struct esi_merge *m, struct buf *out);

/* esi_merge_etag: the page's entity-tag, "\"esi-<16 lower-case hex>\"", with
 * "W/" in front when a part's tag was weak, written NUL-terminated into out
 * (cap bytes, ESI_MERGE_ETAG_MAX is always enough).  The hex is XXH3 over
 * the parts' opaque-tags in order and their number, so another order,
 * another split of the same bytes or another count gives another tag.
 * False (out untouched) when some part had no valid tag, there was no part,
 * or cap is too small. */
bool esi_merge_etag(const struct esi_merge *m, char *out, size_t cap);

#endif
