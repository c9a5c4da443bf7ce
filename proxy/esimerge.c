/*
 * proxy/esimerge.c: the cache facts of an assembled ESI page (see
 * esimerge.h).
 *
 * Each part is reduced to a few accumulators as it is added, so nothing of
 * its head is kept.  The ETag hash is chained rather than streamed: each
 * part's tag is hashed with the previous hash as seed (XXH3_64bits_withSeed),
 * and the count last, which keeps struct esi_merge a few words with no
 * XXH3_state_t (and no XXH_STATIC_LINKING_ONLY) in the header.  The tags
 * are hashed with their quotes: '"' cannot occur inside an opaque-tag
 * (RFC 9110 8.8.3), so the quotes are the separators that keep ("ab", "c")
 * apart from ("a", "bc").  Pure and per assembly: no locking.
 */
#include "proxy/esimerge.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "cache/cachecontrol.h"
#include "cache/conditional.h"
#include "cache/httpdate.h"

void esi_merge_init(struct esi_merge *m)
{
    *m = (struct esi_merge){.tags_ok = true};
}

static int64_t clamp_seconds(int64_t s)
{
    if (s < 0)
        return 0;
    return s > HTTP_DELTA_SECONDS_MAX ? HTTP_DELTA_SECONDS_MAX : s;
}

/* The value of the first field called name, trimmed; false when none. */
static bool field_value(const char *base, const struct http_head *head, const char *name,
                        const char **v, size_t *len)
{
    const struct http_field *f = http_head_find(base, head, name);
    if (!f)
        return false;
    struct http_span s = http_span_trim(base, f->value);
    *v = base + s.off;
    *len = s.len;
    return true;
}

/* Expires minus Date (RFC 9111 4.2.1); an invalid or repeated Expires is
 * in the past (5.3). */
static int64_t expires_lifetime(const char *base, const struct http_head *head, int64_t now_s)
{
    const char *v;
    size_t len;
    int64_t expires, date = now_s;
    if (!field_value(base, head, "expires", &v, &len))
        return 0;
    if (http_head_count(base, head, "expires") > 1 || !http_date_parse_at(v, len, now_s, &expires))
        return 0;
    if (field_value(base, head, "date", &v, &len))
        (void)http_date_parse_at(v, len, now_s, &date); /* invalid: keeps now */
    return expires - date;
}

/* max-age, else Expires minus Date, else 0 (no heuristics: a client would
 * be told to keep the page for a time the origin never gave). */
static int64_t lifetime(const char *base, const struct http_head *head,
                        const struct cache_control *cc, int64_t now_s)
{
    if (cc->invalid_freshness)
        return 0; /* RFC 9111 4.2.1: invalid freshness information means stale */
    if (cc->has_max_age)
        return cc->max_age;
    return expires_lifetime(base, head, now_s);
}

static int64_t age_seconds(const char *base, const struct http_head *head)
{
    const char *v;
    size_t len;
    int64_t age = 0;
    if (field_value(base, head, "age", &v, &len))
        (void)http_delta_seconds_parse(v, len, &age); /* invalid: ignored */
    return age;
}

static void parse_cache_control(const char *base, const struct http_head *head,
                                struct cache_control *cc)
{
    memset(cc, 0, sizeof *cc);
    for (unsigned i = 0; i < head->nfields; i++) {
        const struct http_field *f = &head->fields[i];
        if (!http_span_is(base, f->name, "cache-control"))
            continue;
        struct http_span v = http_span_trim(base, f->value);
        cache_control_parse(cc, base + v.off, v.len);
    }
}

static void note_freshness(struct esi_merge *m, int64_t fresh_s)
{
    fresh_s = clamp_seconds(fresh_s);
    if (m->nparts == 0 || fresh_s < m->fresh_s)
        m->fresh_s = fresh_s;
    m->nparts++;
}

void esi_merge_add_source(struct esi_merge *m, const char *src, size_t len)
{
    /* A 0 byte first: a source can never be taken for a tag (which starts
     * with '"' or 'W'). */
    m->hash = XXH3_64bits_withSeed("", 1, m->hash);
    m->hash = XXH3_64bits_withSeed(src, len, m->hash);
}

/* Fold the part's ETag into the hash, or note that the page has none. */
static void note_etag(struct esi_merge *m, const char *base, const struct http_head *head)
{
    const char *v;
    size_t len;
    if (!m->tags_ok)
        return;
    if (!field_value(base, head, "etag", &v, &len) || http_head_count(base, head, "etag") > 1 ||
        !cache_etag_valid(v, len)) {
        m->tags_ok = false;
        return;
    }
    if (cache_etag_weak(v, len)) {
        m->any_weak = true;
        v += 2;
        len -= 2;
    }
    m->hash = XXH3_64bits_withSeed(v, len, m->hash); /* the opaque-tag, quotes included */
}

void esi_merge_add(struct esi_merge *m, const char *base, const struct http_head *head,
                   int64_t now_ms)
{
    struct cache_control cc;
    int64_t now_s = now_ms / 1000;
    parse_cache_control(base, head, &cc);
    m->no_store = m->no_store || (cc.flags & CC_NO_STORE);
    m->is_private = m->is_private || (cc.flags & CC_PRIVATE);
    m->no_cache = m->no_cache || (cc.flags & CC_NO_CACHE);
    note_etag(m, base, head);
    note_freshness(m, lifetime(base, head, &cc, now_s) - age_seconds(base, head));
}

void esi_merge_add_empty(struct esi_merge *m)
{
    m->tags_ok = false;
    note_freshness(m, 0);
}

bool esi_merge_etag(const struct esi_merge *m, char *out, size_t cap)
{
    if (m->nparts == 0 || !m->tags_ok)
        return false;
    uint64_t n = m->nparts;
    unsigned char count[8];
    for (int i = 0; i < 8; i++)
        count[i] = (unsigned char)(n >> (8 * i)); /* little-endian: the same tag on every host */
    uint64_t h = XXH3_64bits_withSeed(count, sizeof count, m->hash);
    char tag[ESI_MERGE_ETAG_MAX];
    int len = snprintf(tag, sizeof tag, "%s\"esi-%016" PRIx64 "\"", m->any_weak ? "W/" : "", h);
    if (len < 0 || (size_t)len >= cap)
        return false;
    memcpy(out, tag, (size_t)len + 1);
    return true;
}

void esi_merge_cache_control(const struct esi_merge *m, struct buf *out)
{
    if (m->no_store) {
        buf_append_str(out, "Cache-Control: no-store\r\n");
    } else {
        buf_appendf(out, "Cache-Control: %s%smax-age=%" PRId64 "\r\n",
                    m->is_private ? "private, " : "", m->no_cache ? "no-cache, " : "",
                    m->nparts > 0 ? m->fresh_s : INT64_C(0));
    }
}

void esi_merge_fields(const struct esi_merge *m, struct buf *out)
{
    char etag[ESI_MERGE_ETAG_MAX];
    esi_merge_cache_control(m, out);
    if (esi_merge_etag(m, etag, sizeof etag))
        buf_appendf(out, "ETag: %s\r\n", etag);
}
