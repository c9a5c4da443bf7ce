/*
 * cache/ban.c: the ban list (see ban.h).
 *
 * The list is an array of bans in id order.  Ids increase with each add,
 * so the bans an object has not seen are a suffix of the array, found by
 * binary search on its cursor.  Expiry may drop bans anywhere in the array
 * (other nodes' bans carry their own times), keeping the order of the rest.
 */
#include "cache/ban.h"
#include "cache/wire.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct ban {
    uint64_t id;
    enum ban_kind kind;
    bool soft;
    int64_t time_ms;
    char *host; /* NULL: any host */
    size_t host_len;
    char *pattern;
    size_t pattern_len;
    pcre2_code *regex;
};

struct ban_list {
    pthread_rwlock_t lock;
    struct ban **bans;
    size_t n, cap;
    _Atomic uint64_t next_id; /* written under the lock; read without it as a hint */
};

const char *ban_kind_name(enum ban_kind kind)
{
    switch (kind) {
    case BAN_KEY:
        return "key";
    case BAN_PREFIX:
        return "prefix";
    case BAN_REGEX:
        return "regex";
    case BAN_TAG:
        return "tag";
    case BAN_ALL:
        return "all";
    }
    return "?";
}

struct ban_list *ban_list_new(void)
{
    struct ban_list *list = calloc(1, sizeof *list);
    pthread_rwlockattr_t attr;
    if (!list)
        return NULL;
    /* Lookups take the read lock all the time; glibc's default prefers
     * readers, and a stream of them would keep a purge out for good. */
    if (pthread_rwlockattr_init(&attr) != 0)
        goto fail;
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = pthread_rwlock_init(&list->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (rc != 0)
        goto fail;
    atomic_init(&list->next_id, 1);
    return list;
fail:
    free(list);
    return NULL;
}

static void ban_free(struct ban *b)
{
    if (!b)
        return;
    pcre2_code_free(b->regex);
    free(b->host);
    free(b->pattern);
    free(b);
}

void ban_list_free(struct ban_list **listp)
{
    struct ban_list *list = *listp;
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++)
        ban_free(list->bans[i]);
    free(list->bans);
    pthread_rwlock_destroy(&list->lock);
    free(list);
    *listp = NULL;
}

static char *copy_span(const char *p, size_t len, bool lower)
{
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < len; i++)
        s[i] = lower && p[i] >= 'A' && p[i] <= 'Z' ? (char)(p[i] - 'A' + 'a') : p[i];
    s[len] = '\0';
    return s;
}

static bool spec_valid(const struct ban_spec *spec, char *err, size_t errlen)
{
    if (spec->kind != BAN_ALL && spec->pattern_len == 0) {
        snprintf(err, errlen, "empty %s", ban_kind_name(spec->kind));
        return false;
    }
    if (spec->pattern_len > BAN_PATTERN_MAX || spec->host_len > BAN_HOST_MAX) {
        snprintf(err, errlen, "%s longer than %d bytes",
                 spec->host_len > BAN_HOST_MAX ? "host" : ban_kind_name(spec->kind),
                 spec->host_len > BAN_HOST_MAX ? BAN_HOST_MAX : BAN_PATTERN_MAX);
        return false;
    }
    return true;
}

static bool compile_regex(struct ban *b, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE offset;
    b->regex = pcre2_compile((PCRE2_SPTR)b->pattern, b->pattern_len, 0, &code, &offset, NULL);
    if (!b->regex) {
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", code);
        snprintf(err, errlen, "regex: %s at offset %zu", (char *)msg, (size_t)offset);
        return false;
    }
    (void)pcre2_jit_compile(b->regex, PCRE2_JIT_COMPLETE); /* else the interpreter */
    return true;
}

uint64_t ban_list_add(struct ban_list *list, const struct ban_spec *spec, char *err, size_t errlen)
{
    if (!spec_valid(spec, err, errlen))
        return 0;
    struct ban *b = calloc(1, sizeof *b);
    if (!b)
        goto oom;
    b->kind = spec->kind;
    b->soft = spec->soft;
    b->time_ms = spec->time_ms;
    b->pattern = copy_span(spec->pattern ? spec->pattern : "", spec->pattern_len, false);
    b->pattern_len = spec->pattern_len;
    if (!b->pattern)
        goto oom;
    if (spec->host_len > 0 && (spec->kind == BAN_PREFIX || spec->kind == BAN_REGEX)) {
        b->host = copy_span(spec->host, spec->host_len, true);
        b->host_len = spec->host_len;
        if (!b->host)
            goto oom;
    }
    if (b->kind == BAN_REGEX && !compile_regex(b, err, errlen)) {
        ban_free(b);
        return 0;
    }
    pthread_rwlock_wrlock(&list->lock);
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 64;
        struct ban **bans = realloc(list->bans, cap * sizeof *bans);
        if (!bans) {
            pthread_rwlock_unlock(&list->lock);
            goto oom;
        }
        list->bans = bans;
        list->cap = cap;
    }
    b->id = atomic_fetch_add(&list->next_id, 1);
    list->bans[list->n++] = b;
    uint64_t id = b->id;
    pthread_rwlock_unlock(&list->lock);
    return id;
oom:
    ban_free(b);
    snprintf(err, errlen, "out of memory");
    return 0;
}

/* The host and the path-and-query of a primary key
 * (scheme "://" host path ["?" query] {"\n" ...}). */
static bool key_parts(const struct cache_object *obj, const char **host, size_t *host_len,
                      const char **path, size_t *path_len)
{
    const char *k = obj->primary_key, *end = k + obj->primary_len;
    const char *sep = memmem(k, obj->primary_len, "://", 3);
    if (!sep)
        return false;
    const char *h = sep + 3, *p = h;
    while (p < end && *p != '/' && *p != ' ' && *p != '\n')
        p++;
    const char *pe = p;
    while (pe < end && *pe != '\n')
        pe++;
    *host = h;
    *host_len = (size_t)(p - h);
    if (p < pe && *p == ' ') /* a target that is not origin-form */
        p++;
    *path = p;
    *path_len = (size_t)(pe - p);
    return true;
}

static bool has_tag(const struct cache_object *obj, const char *tag, size_t len)
{
    for (size_t i = 0; i < obj->ntags; i++)
        if (obj->tags[i].len == len && memcmp(obj->tags[i].name, tag, len) == 0)
            return true;
    return false;
}

/* Bounds on one regex match (an admin's regex runs against every object
 * checked): the default limits let a pathological pattern spend seconds. */
#define BAN_MATCH_LIMIT 100000
#define BAN_DEPTH_LIMIT 10000

static pcre2_match_context *shared_match_context;
static pthread_once_t match_context_once = PTHREAD_ONCE_INIT;

static void match_context_init(void)
{
    shared_match_context = pcre2_match_context_create(NULL);
    if (shared_match_context) {
        pcre2_set_match_limit(shared_match_context, BAN_MATCH_LIMIT);
        pcre2_set_depth_limit(shared_match_context, BAN_DEPTH_LIMIT);
    }
}

/* The process's match context (read-only once made; NULL: the defaults). */
static pcre2_match_context *match_context(void)
{
    pthread_once(&match_context_once, match_context_init);
    return shared_match_context;
}

/* Does ban b (already compiled) match obj?  md: match data for regexes,
 * created by the caller when needed. */
static bool ban_match(const struct ban *b, const struct cache_object *obj, pcre2_match_data **md)
{
    const char *host, *path;
    size_t host_len, path_len;
    switch (b->kind) {
    case BAN_ALL:
        return true;
    case BAN_KEY: { /* the URL part: key-header and key-cookie parts follow a '\n' */
        const char *nl = memchr(obj->primary_key, '\n', obj->primary_len);
        size_t url_len = nl ? (size_t)(nl - obj->primary_key) : obj->primary_len;
        return url_len == b->pattern_len && memcmp(obj->primary_key, b->pattern, url_len) == 0;
    }
    case BAN_TAG:
        return has_tag(obj, b->pattern, b->pattern_len);
    case BAN_PREFIX:
    case BAN_REGEX:
        break;
    }
    if (!key_parts(obj, &host, &host_len, &path, &path_len))
        return false;
    if (b->host && (host_len != b->host_len || strncasecmp(host, b->host, host_len) != 0))
        return false;
    if (b->kind == BAN_PREFIX)
        return path_len >= b->pattern_len && memcmp(path, b->pattern, b->pattern_len) == 0;
    if (!*md)
        *md = pcre2_match_data_create(1, NULL);
    if (!*md)
        return true; /* out of memory: err on the side of not serving */
    int rc = pcre2_match(b->regex, (PCRE2_SPTR)path, path_len, 0, 0, *md, match_context());
    /* A pattern too costly to decide (match limit) counts as matching:
     * purging one object too many is safe, serving a purged one is not. */
    return rc >= 0 || rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
           rc == PCRE2_ERROR_HEAPLIMIT;
}

bool ban_matches(const struct ban_spec *spec, const struct cache_object *obj)
{
    struct ban b = {
        .kind = spec->kind,
        .pattern = (char *)spec->pattern,
        .pattern_len = spec->pattern_len,
        .host = spec->host_len ? (char *)spec->host : NULL,
        .host_len = spec->host_len,
    };
    char err[160];
    if (spec->kind == BAN_REGEX) {
        char *copy = copy_span(spec->pattern, spec->pattern_len, false);
        if (!copy)
            return true;
        b.pattern = copy;
        bool ok = compile_regex(&b, err, sizeof err);
        bool hit = false;
        if (ok) {
            pcre2_match_data *md = NULL;
            hit = ban_match(&b, obj, &md);
            pcre2_match_data_free(md);
        }
        pcre2_code_free(b.regex);
        free(copy);
        return hit;
    }
    pcre2_match_data *md = NULL;
    return ban_match(&b, obj, &md);
}

/* Index of the first ban with an id above `seen`. */
static size_t first_unseen(const struct ban_list *list, uint64_t seen)
{
    size_t lo = 0, hi = list->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (list->bans[mid]->id <= seen)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

enum ban_verdict ban_check(struct ban_list *list, struct cache_object *obj)
{
    /* acquire: pairs with the release below, so a reader that sees the
     * cursor moved also sees the soft mark set before it */
    uint64_t seen = atomic_load_explicit(&obj->ban_seen, memory_order_acquire);
    if (seen + 1 >= atomic_load_explicit(&list->next_id, memory_order_acquire))
        return atomic_load(&obj->ban_soft) ? BAN_STALE : BAN_PASS;
    pcre2_match_data *md = NULL;
    bool soft = false, gone = false;
    pthread_rwlock_rdlock(&list->lock);
    uint64_t newest = atomic_load(&list->next_id) - 1; /* expired ones included */
    for (size_t i = first_unseen(list, seen); i < list->n && !gone; i++) {
        const struct ban *b = list->bans[i];
        if (obj->stored_at >= b->time_ms || !ban_match(b, obj, &md))
            continue;
        if (b->soft)
            soft = true;
        else
            gone = true;
    }
    pthread_rwlock_unlock(&list->lock);
    pcre2_match_data_free(md);
    if (gone)
        return BAN_GONE;
    if (soft)
        atomic_store(&obj->ban_soft, true);
    if (newest > seen)
        atomic_store_explicit(&obj->ban_seen, newest, memory_order_release);
    return atomic_load(&obj->ban_soft) ? BAN_STALE : BAN_PASS;
}

size_t ban_list_count(struct ban_list *list)
{
    pthread_rwlock_rdlock(&list->lock);
    size_t n = list->n;
    pthread_rwlock_unlock(&list->lock);
    return n;
}

uint64_t ban_list_newest_id(struct ban_list *list)
{
    pthread_rwlock_rdlock(&list->lock);
    uint64_t id = atomic_load(&list->next_id) - 1;
    pthread_rwlock_unlock(&list->lock);
    return id;
}

size_t ban_list_expire(struct ban_list *list, int64_t before_ms)
{
    pthread_rwlock_wrlock(&list->lock);
    size_t kept = 0, gone = 0;
    /* Times mostly follow ids, but bans from other nodes carry their own
     * time: look at every ban, keep the order of the rest. */
    for (size_t i = 0; i < list->n; i++) {
        if (list->bans[i]->time_ms <= before_ms) {
            ban_free(list->bans[i]);
            gone++;
        } else {
            list->bans[kept++] = list->bans[i];
        }
    }
    list->n = kept;
    pthread_rwlock_unlock(&list->lock);
    return gone;
}

/* ---- records: "TBAN" 1 | kind | soft | time (8, LE) | host len (2) host | pattern len (4) pattern
 */

size_t ban_encode(const struct ban_spec *spec, unsigned char *out, size_t cap)
{
    size_t host_len = spec->host ? spec->host_len : 0;
    size_t need = 4 + 1 + 1 + 1 + 8 + 2 + host_len + 4 + spec->pattern_len;
    if (need > cap || host_len > BAN_HOST_MAX || spec->pattern_len > BAN_PATTERN_MAX ||
        (unsigned)spec->kind > BAN_ALL)
        return 0;
    unsigned char *p = out;
    memcpy(p, "TBAN", 4);
    p += 4;
    *p++ = 1;
    *p++ = (unsigned char)spec->kind;
    *p++ = spec->soft ? 1 : 0;
    p = wire_put_le(p, (uint64_t)spec->time_ms, 8);
    p = wire_put_le(p, host_len, 2);
    if (host_len)
        memcpy(p, spec->host, host_len);
    p += host_len;
    p = wire_put_le(p, spec->pattern_len, 4);
    if (spec->pattern_len)
        memcpy(p, spec->pattern, spec->pattern_len);
    p += spec->pattern_len;
    return (size_t)(p - out);
}

bool ban_decode(const unsigned char *p, size_t len, struct ban_spec *spec)
{
    const unsigned char *end = p + len;
    if (len < 4 + 3 + 8 + 2 + 4 || memcmp(p, "TBAN", 4) != 0 || p[4] != 1 || p[5] > BAN_ALL ||
        p[6] > 1)
        return false;
    memset(spec, 0, sizeof *spec);
    spec->kind = (enum ban_kind)p[5];
    spec->soft = p[6] == 1;
    spec->time_ms = (int64_t)wire_get_le(p + 7, 8);
    p += 15;
    size_t host_len = (size_t)wire_get_le(p, 2);
    p += 2;
    if (host_len > BAN_HOST_MAX || (size_t)(end - p) < host_len + 4)
        return false;
    spec->host = host_len ? (const char *)p : NULL;
    spec->host_len = host_len;
    p += host_len;
    size_t pattern_len = (size_t)wire_get_le(p, 4);
    p += 4;
    if (pattern_len > BAN_PATTERN_MAX || (size_t)(end - p) != pattern_len)
        return false;
    spec->pattern = (const char *)p;
    spec->pattern_len = pattern_len;
    return true;
}
