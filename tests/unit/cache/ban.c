/*
 * tests/unit/cache/ban.c: the ban list (cache/ban.c): adding and refusing
 * bans, the verdict of each kind against object keys and tags, times, soft
 * bans, the per-object ban cursor, expiry, the purge log record, and
 * checks racing with adds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <time.h>

#include "cache/ban.h"

/* An object for key, stored at stored_at, carrying the ntags tags. */
static struct cache_object *make_obj_tags(const char *key, int64_t stored_at, const char **tags,
                                          size_t ntags)
{
    struct cache_object_tag t[8];
    struct cache_object_meta m = {
        .primary_key = key,
        .primary_len = strlen(key),
        .primary_hash = 42,
        .status = 200,
        .stored_at = stored_at,
        .tags = ntags ? t : NULL,
        .ntags = ntags,
    };

    if (ntags > 8)
        abort();
    for (size_t i = 0; i < ntags; i++)
        t[i] = (struct cache_object_tag){tags[i], strlen(tags[i])};
    struct cache_object_builder *b = cache_object_builder_new(&m, SIZE_MAX);
    if (!b)
        abort();
    struct cache_object *obj = cache_object_builder_finish(&b);
    if (!obj)
        abort();
    return obj;
}

static struct cache_object *make_obj(const char *key, int64_t stored_at)
{
    return make_obj_tags(key, stored_at, NULL, 0);
}

static struct ban_spec spec_of(enum ban_kind kind, const char *host, const char *pattern,
                               int64_t time_ms, bool soft)
{
    struct ban_spec s = {
        .kind = kind,
        .soft = soft,
        .time_ms = time_ms,
        .host = host,
        .host_len = host ? strlen(host) : 0,
        .pattern = pattern,
        .pattern_len = pattern ? strlen(pattern) : 0,
    };
    return s;
}

/* Add a ban that must be accepted; returns its id. */
static uint64_t add(struct ban_list *list, enum ban_kind kind, const char *host,
                    const char *pattern, int64_t time_ms, bool soft)
{
    struct ban_spec s = spec_of(kind, host, pattern, time_ms, soft);
    char err[256] = "";
    uint64_t id = ban_list_add(list, &s, err, sizeof err);

    if (id == 0)
        fail_msg("ban_list_add(%s %s): %s", ban_kind_name(kind), pattern ? pattern : "", err);
    return id;
}

/* Whether a ban matches key (ignoring times). */
static bool matches(enum ban_kind kind, const char *host, const char *pattern, const char *key)
{
    struct ban_spec s = spec_of(kind, host, pattern, 0, false);
    struct cache_object *obj = make_obj(key, 0);
    bool hit = ban_matches(&s, obj);
    cache_object_release(&obj);
    return hit;
}

/* The verdict of a fresh list holding one ban (time 1000) on an object of
 * key stored at 500; checks that ban_check agrees with ban_matches. */
static enum ban_verdict verdict(enum ban_kind kind, const char *host, const char *pattern,
                                const char *key)
{
    struct ban_list *list = ban_list_new();
    assert_non_null(list);
    add(list, kind, host, pattern, 1000, false);
    struct cache_object *obj = make_obj(key, 500);
    enum ban_verdict v = ban_check(list, obj);
    assert_int_equal(v == BAN_GONE, matches(kind, host, pattern, key));
    cache_object_release(&obj);
    ban_list_free(&list);
    assert_null(list);
    return v;
}

/* ---- adding ---- */

static void test_ids_increase_from_one(void **state)
{
    (void)state;
    struct ban_list *list = ban_list_new();
    assert_non_null(list);
    assert_int_equal(ban_list_count(list), 0);
    assert_int_equal(ban_list_newest_id(list), 0);
    assert_int_equal(add(list, BAN_PREFIX, NULL, "/a/", 10, false), 1);
    assert_int_equal(add(list, BAN_REGEX, "h", "x", 10, false), 2);
    assert_int_equal(add(list, BAN_ALL, NULL, NULL, 10, true), 3);
    assert_int_equal(ban_list_count(list), 3);
    assert_int_equal(ban_list_newest_id(list), 3);
    ban_list_free(&list);
    assert_null(list);
    ban_list_free(&list); /* NULL is fine */
}

static void expect_refused(struct ban_list *list, const struct ban_spec *s, const char *msg)
{
    char err[256] = "";
    assert_int_equal(ban_list_add(list, s, err, sizeof err), 0);
    assert_string_equal(err, msg);
}

static void test_invalid_specs_refused(void **state)
{
    (void)state;
    struct ban_list *list = ban_list_new();
    struct ban_spec s;

    s = spec_of(BAN_KEY, NULL, "", 10, false);
    expect_refused(list, &s, "empty key");
    s = spec_of(BAN_PREFIX, "h", NULL, 10, false);
    expect_refused(list, &s, "empty prefix");
    s = spec_of(BAN_REGEX, NULL, "", 10, false);
    expect_refused(list, &s, "empty regex");
    s = spec_of(BAN_TAG, NULL, "", 10, true);
    expect_refused(list, &s, "empty tag");

    char *big = malloc(BAN_PATTERN_MAX + 2);
    assert_non_null(big);
    memset(big, 'a', BAN_PATTERN_MAX + 1);
    big[0] = '/';
    big[BAN_PATTERN_MAX + 1] = '\0';
    s = spec_of(BAN_PREFIX, NULL, big, 10, false);
    expect_refused(list, &s, "prefix longer than 4096 bytes");
    s = spec_of(BAN_TAG, NULL, big, 10, false);
    expect_refused(list, &s, "tag longer than 4096 bytes");

    char host[BAN_HOST_MAX + 2];
    memset(host, 'h', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    s = spec_of(BAN_PREFIX, host, "/", 10, false);
    expect_refused(list, &s, "host longer than 255 bytes");

    s = spec_of(BAN_REGEX, NULL, "a(b", 10, false);
    expect_refused(list, &s, "regex: missing closing parenthesis at offset 3");
    s = spec_of(BAN_REGEX, "h", "x[", 10, false);
    char err[256] = "";
    assert_int_equal(ban_list_add(list, &s, err, sizeof err), 0);
    assert_true(strncmp(err, "regex: ", 7) == 0);
    assert_non_null(strstr(err, " at offset 2"));
    assert_int_equal(ban_list_count(list), 0);

    /* The limits themselves are fine; refusals took no id. */
    big[BAN_PATTERN_MAX] = '\0';
    s = spec_of(BAN_PREFIX, NULL, big, 10, false);
    assert_int_equal(ban_list_add(list, &s, err, sizeof err), 1);
    host[BAN_HOST_MAX] = '\0';
    s = spec_of(BAN_REGEX, host, "^/x", 10, false);
    assert_int_equal(ban_list_add(list, &s, err, sizeof err), 2);
    /* ALL needs no pattern. */
    s = spec_of(BAN_ALL, NULL, NULL, 10, false);
    assert_int_equal(ban_list_add(list, &s, err, sizeof err), 3);
    assert_int_equal(ban_list_count(list), 3);
    /* A tiny error buffer is not overrun. */
    char small[8];
    memset(small, 'x', sizeof small);
    s = spec_of(BAN_TAG, NULL, "", 10, false);
    assert_int_equal(ban_list_add(list, &s, small, 4), 0);
    assert_string_equal(small, "emp");
    assert_int_equal(small[4], 'x');
    free(big);
    ban_list_free(&list);
}

static void test_kind_names(void **state)
{
    (void)state;
    assert_string_equal(ban_kind_name(BAN_KEY), "key");
    assert_string_equal(ban_kind_name(BAN_PREFIX), "prefix");
    assert_string_equal(ban_kind_name(BAN_REGEX), "regex");
    assert_string_equal(ban_kind_name(BAN_TAG), "tag");
    assert_string_equal(ban_kind_name(BAN_ALL), "all");
}

/* ---- times ---- */

static void test_only_objects_stored_before_the_ban(void **state)
{
    (void)state;
    struct ban_list *list = ban_list_new();
    add(list, BAN_PREFIX, NULL, "/", 1000, false);
    struct cache_object *before = make_obj("http://h/x", 999);
    struct cache_object *at = make_obj("http://h/x", 1000);
    struct cache_object *after = make_obj("http://h/x", 1001);
    assert_int_equal(ban_check(list, before), BAN_GONE);
    assert_int_equal(ban_check(list, at), BAN_PASS);
    assert_int_equal(ban_check(list, after), BAN_PASS);
    /* GONE stays GONE: the cursor did not move past the ban. */
    assert_int_equal(atomic_load(&before->ban_seen), 0);
    assert_int_equal(ban_check(list, before), BAN_GONE);
    cache_object_release(&before);
    cache_object_release(&at);
    cache_object_release(&after);
    ban_list_free(&list);
}

static void test_matches_ignores_times(void **state)
{
    (void)state;
    struct ban_spec s = spec_of(BAN_PREFIX, NULL, "/p", 0, false);
    struct cache_object *newer = make_obj("http://h/p", 2000000000000);
    struct cache_object *older = make_obj("http://h/p", -5);
    assert_true(ban_matches(&s, newer));
    s.time_ms = INT64_MIN;
    assert_true(ban_matches(&s, older));
    s.time_ms = INT64_MAX;
    s.soft = true;
    assert_true(ban_matches(&s, newer));
    s.kind = BAN_REGEX;
    assert_true(ban_matches(&s, newer));
    s.kind = BAN_KEY;
    s.pattern = "http://h/p";
    s.pattern_len = strlen(s.pattern);
    assert_true(ban_matches(&s, newer));
    /* And leaves the object's ban marks alone. */
    assert_int_equal(atomic_load(&newer->ban_seen), 0);
    assert_false(atomic_load(&newer->ban_soft));
    cache_object_release(&newer);
    cache_object_release(&older);
}

/* ---- kinds ---- */

static void test_key(void **state)
{
    (void)state;
    const char *url = "http://h/p?q";
    assert_int_equal(verdict(BAN_KEY, NULL, url, "http://h/p?q"), BAN_GONE);
    /* Every variant of the URL: key-header / key-cookie parts follow '\n'. */
    assert_int_equal(verdict(BAN_KEY, NULL, url, "http://h/p?q\nh:accept=text/html"), BAN_GONE);
    assert_int_equal(verdict(BAN_KEY, NULL, url, "http://h/p?q\nc:session=1"), BAN_GONE);
    /* Not a longer or a shorter URL. */
    assert_int_equal(verdict(BAN_KEY, NULL, url, "http://h/p?qq"), BAN_PASS);
    assert_int_equal(verdict(BAN_KEY, NULL, url, "http://h/p?qq\nh:accept=x"), BAN_PASS);
    assert_int_equal(verdict(BAN_KEY, NULL, url, "http://h/p?"), BAN_PASS);
    assert_int_equal(verdict(BAN_KEY, NULL, url, "http://h/p"), BAN_PASS);
    assert_int_equal(verdict(BAN_KEY, NULL, url, "https://h/p?q"), BAN_PASS);
    /* A pattern carrying the key-header part matches no URL part. */
    assert_int_equal(verdict(BAN_KEY, NULL, "http://h/p?q\nh:accept=x", "http://h/p?q\nh:accept=x"),
                     BAN_PASS);
    /* Exact bytes: the key is compared case-sensitively. */
    assert_int_equal(verdict(BAN_KEY, NULL, url, "http://h/P?q"), BAN_PASS);
    /* Keys that are not URLs are compared as they are. */
    assert_int_equal(verdict(BAN_KEY, NULL, "nokey", "nokey"), BAN_GONE);
    assert_int_equal(verdict(BAN_KEY, NULL, "http://h x", "http://h x"), BAN_GONE);
}

static void test_prefix(void **state)
{
    (void)state;
    assert_int_equal(verdict(BAN_PREFIX, NULL, "/p/", "http://h/p/x"), BAN_GONE);
    assert_int_equal(verdict(BAN_PREFIX, NULL, "/p/", "http://h/p/"), BAN_GONE);
    assert_int_equal(verdict(BAN_PREFIX, NULL, "/p/", "http://other.example/p/a/b?c"), BAN_GONE);
    assert_int_equal(verdict(BAN_PREFIX, NULL, "/p/", "http://h/px"), BAN_PASS);
    assert_int_equal(verdict(BAN_PREFIX, NULL, "/p/", "http://h/p"), BAN_PASS);
    assert_int_equal(verdict(BAN_PREFIX, NULL, "/p/", "http://h/a/p/"), BAN_PASS);
    /* Path and query. */
    assert_int_equal(verdict(BAN_PREFIX, NULL, "/p?a=", "http://h/p?a=1"), BAN_GONE);
    assert_int_equal(verdict(BAN_PREFIX, NULL, "/p?a=", "http://h/p?b=1"), BAN_PASS);
    /* Not the key-header part. */
    assert_int_equal(verdict(BAN_PREFIX, NULL, "/p/x\n", "http://h/p/x\nh:accept=a"), BAN_PASS);
    assert_int_equal(verdict(BAN_PREFIX, NULL, "/p/", "http://h/p/x\nh:accept=a"), BAN_GONE);
    /* Not the host either. */
    assert_int_equal(verdict(BAN_PREFIX, NULL, "h/", "http://h/p"), BAN_PASS);
    /* With a host: case-insensitive, exact, port included. */
    assert_int_equal(verdict(BAN_PREFIX, "h.example", "/p/", "http://h.example/p/x"), BAN_GONE);
    assert_int_equal(verdict(BAN_PREFIX, "H.Example", "/p/", "http://h.example/p/x"), BAN_GONE);
    assert_int_equal(verdict(BAN_PREFIX, "h.example", "/p/", "http://H.EXAMPLE/p/x"), BAN_GONE);
    assert_int_equal(verdict(BAN_PREFIX, "h.example", "/p/", "http://other/p/x"), BAN_PASS);
    assert_int_equal(verdict(BAN_PREFIX, "h.example", "/p/", "http://h.example.org/p/x"), BAN_PASS);
    assert_int_equal(verdict(BAN_PREFIX, "h.example", "/p/", "http://h.exampl/p/x"), BAN_PASS);
    assert_int_equal(verdict(BAN_PREFIX, "h.example", "/p/", "http://h.example:8080/p/x"),
                     BAN_PASS);
    assert_int_equal(verdict(BAN_PREFIX, "h.example:8080", "/p/", "http://h.example:8080/p/x"),
                     BAN_GONE);
    assert_int_equal(verdict(BAN_PREFIX, "h.example", "/q/", "http://h.example/p/x"), BAN_PASS);
    /* An empty host is any host. */
    struct ban_spec s = spec_of(BAN_PREFIX, "", "/p/", 0, false);
    struct cache_object *obj = make_obj("http://any/p/1", 0);
    assert_true(ban_matches(&s, obj));
    cache_object_release(&obj);
}

static void test_regex(void **state)
{
    (void)state;
    const char *re = "^/api/.*\\.json$";
    assert_int_equal(verdict(BAN_REGEX, NULL, re, "http://h/api/v1/x.json"), BAN_GONE);
    assert_int_equal(verdict(BAN_REGEX, NULL, re, "http://h/api/v1/x.json\nh:accept=a"), BAN_GONE);
    assert_int_equal(verdict(BAN_REGEX, NULL, re, "http://h/api/v1/x.json?x=1"), BAN_PASS);
    assert_int_equal(verdict(BAN_REGEX, NULL, re, "http://h/v1/api/x.json"), BAN_PASS);
    assert_int_equal(verdict(BAN_REGEX, NULL, re, "http://h/api/x.jsonp"), BAN_PASS);
    /* Searched, not anchored, when the pattern is not. */
    assert_int_equal(verdict(BAN_REGEX, NULL, "\\.css", "http://h/a/b/site.css?v=2"), BAN_GONE);
    assert_int_equal(verdict(BAN_REGEX, NULL, "v=[0-9]+$", "http://h/a.css?v=2"), BAN_GONE);
    /* Only the path and query: not the scheme, host or key-header part. */
    assert_int_equal(verdict(BAN_REGEX, NULL, "h\\.example", "http://h.example/x"), BAN_PASS);
    assert_int_equal(verdict(BAN_REGEX, NULL, "^http", "http://h/x"), BAN_PASS);
    assert_int_equal(verdict(BAN_REGEX, NULL, "accept", "http://h/x\nh:accept=a"), BAN_PASS);
    assert_int_equal(verdict(BAN_REGEX, NULL, "^/$", "http://h/"), BAN_GONE);
    /* With a host. */
    assert_int_equal(verdict(BAN_REGEX, "H", "^/x", "http://h/x"), BAN_GONE);
    assert_int_equal(verdict(BAN_REGEX, "h", "^/x", "http://g/x"), BAN_PASS);
    /* Case-sensitive unless the pattern says otherwise. */
    assert_int_equal(verdict(BAN_REGEX, NULL, "/X", "http://h/x"), BAN_PASS);
    assert_int_equal(verdict(BAN_REGEX, NULL, "(?i)/X", "http://h/x"), BAN_GONE);
    /* An invalid regex matches nothing through ban_matches. */
    assert_false(matches(BAN_REGEX, NULL, "a(b", "http://h/a(b"));
}

static double now_s(void);

/* A pathological regex hits the match limit at once and counts as a match
 * (purging one object too many is safe; spending seconds per object is not). */
static void test_regex_match_limit(void **state)
{
    (void)state;
    char key[128] = "http://h/";
    memset(key + 9, 'a', 40);
    strcpy(key + 49, "!");
    double t0 = now_s();
    assert_true(matches(BAN_REGEX, NULL, "^/(a+)+$", key));
    assert_true(now_s() - t0 < 1.0);
    assert_false(matches(BAN_REGEX, NULL, "^/(a+)+$", "http://h/b"));
}

static void test_tag(void **state)
{
    (void)state;
    const char *tags[] = {"a", "Prod", "product-17"};
    struct cache_object *obj = make_obj_tags("http://h/x", 500, tags, 3);
    struct cache_object *untagged = make_obj("http://h/x", 500);
    struct {
        const char *tag;
        bool hit;
    } cases[] = {
        {"a", true},     {"Prod", true},   {"product-17", true}, {"prod", false},
        {"Pro", false},  {"Prods", false}, {"product-1", false}, {"A", false},
        {"http", false}, {"x", false},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ban_spec s = spec_of(BAN_TAG, NULL, cases[i].tag, 1000, false);
        assert_int_equal(ban_matches(&s, obj), cases[i].hit);
        assert_false(ban_matches(&s, untagged));
        struct ban_list *list = ban_list_new();
        add(list, BAN_TAG, NULL, cases[i].tag, 1000, false);
        atomic_store(&obj->ban_seen, 0);
        assert_int_equal(ban_check(list, obj), cases[i].hit ? BAN_GONE : BAN_PASS);
        assert_int_equal(ban_check(list, untagged), BAN_PASS);
        atomic_store(&untagged->ban_seen, 0);
        ban_list_free(&list);
    }
    cache_object_release(&obj);
    cache_object_release(&untagged);
}

static void test_all(void **state)
{
    (void)state;
    assert_int_equal(verdict(BAN_ALL, NULL, NULL, "http://h/x"), BAN_GONE);
    assert_int_equal(verdict(BAN_ALL, NULL, NULL, "nokey"), BAN_GONE);
    assert_int_equal(verdict(BAN_ALL, NULL, NULL, "http://h x"), BAN_GONE);
}

/* Keys whose target is not origin-form, or that have no "://", are judged
 * without reading out of bounds. */
static void test_odd_keys(void **state)
{
    (void)state;
    const char *keys[] = {"http://h x", "http://h x\nh:a=b", "nokey", "http://",    "http://h",
                          "://",        "http://h?q",        "x",     "http://h\n", "http:// /"};
    const char *patterns[] = {"/", "x", " ", "h", "?q"};

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        for (size_t j = 0; j < sizeof patterns / sizeof patterns[0]; j++) {
            (void)verdict(BAN_PREFIX, NULL, patterns[j], keys[i]);
            (void)verdict(BAN_PREFIX, "h", patterns[j], keys[i]);
            (void)verdict(BAN_REGEX, NULL, patterns[j][0] == '?' ? "\\?q" : patterns[j], keys[i]);
            (void)verdict(BAN_REGEX, "h", "^", keys[i]);
            (void)verdict(BAN_KEY, NULL, patterns[j], keys[i]);
        }
    }
    /* No "://": no host or path, so prefix and regex bans never match. */
    assert_int_equal(verdict(BAN_PREFIX, NULL, "n", "nokey"), BAN_PASS);
    assert_int_equal(verdict(BAN_REGEX, NULL, "^", "nokey"), BAN_PASS);
    /* "http://h x": the path of a non-origin-form target is not "/..." */
    assert_int_equal(verdict(BAN_PREFIX, NULL, "/", "http://h x"), BAN_PASS);
    assert_int_equal(verdict(BAN_REGEX, NULL, "^/", "http://h x"), BAN_PASS);
    assert_int_equal(verdict(BAN_PREFIX, "g", "x", "http://h x"), BAN_PASS);
}

/* ---- soft bans ---- */

static void test_soft_ban_sticks(void **state)
{
    (void)state;
    struct ban_list *list = ban_list_new();
    struct cache_object *old = make_obj("http://h/s/1", 500);
    struct cache_object *young = make_obj("http://h/s/2", 1500);
    struct cache_object *other = make_obj("http://h/t/1", 500);

    add(list, BAN_PREFIX, NULL, "/s/", 1000, true);
    assert_int_equal(ban_check(list, old), BAN_STALE);
    assert_true(atomic_load(&old->ban_soft));
    assert_int_equal(atomic_load(&old->ban_seen), 1);
    assert_int_equal(ban_check(list, young), BAN_PASS);
    assert_int_equal(ban_check(list, other), BAN_PASS);
    /* No new ban: still stale. */
    assert_int_equal(ban_check(list, old), BAN_STALE);
    /* A ban that does not match it: still stale. */
    add(list, BAN_PREFIX, NULL, "/t/", 2000, true);
    assert_int_equal(ban_check(list, old), BAN_STALE);
    assert_int_equal(atomic_load(&old->ban_seen), 2);
    assert_int_equal(ban_check(list, other), BAN_STALE);
    /* Another soft one that does: still stale. */
    add(list, BAN_ALL, NULL, NULL, 3000, true);
    assert_int_equal(ban_check(list, old), BAN_STALE);
    assert_int_equal(ban_check(list, young), BAN_STALE);
    /* A hard ban after it: gone. */
    add(list, BAN_PREFIX, NULL, "/s/", 4000, false);
    assert_int_equal(ban_check(list, old), BAN_GONE);
    assert_int_equal(ban_check(list, old), BAN_GONE);
    assert_int_equal(ban_check(list, young), BAN_GONE);
    assert_int_equal(ban_check(list, other), BAN_STALE);

    /* Soft then hard, both unseen: gone; hard then soft: gone. */
    struct cache_object *fresh = make_obj("http://h/s/3", 10);
    assert_int_equal(ban_check(list, fresh), BAN_GONE);
    cache_object_release(&fresh);
    struct ban_list *l2 = ban_list_new();
    add(l2, BAN_ALL, NULL, NULL, 1000, false);
    add(l2, BAN_ALL, NULL, NULL, 1000, true);
    fresh = make_obj("http://h/s/3", 10);
    assert_int_equal(ban_check(l2, fresh), BAN_GONE);
    cache_object_release(&fresh);
    ban_list_free(&l2);

    cache_object_release(&old);
    cache_object_release(&young);
    cache_object_release(&other);
    ban_list_free(&list);
}

/* ---- the cursor ---- */

static void test_cursor(void **state)
{
    (void)state;
    struct ban_list *list = ban_list_new();
    struct cache_object *pass = make_obj("http://h/keep", 500);
    struct cache_object *soft = make_obj("http://h/soft", 500);

    /* No ban yet: nothing to check, the cursor stays at 0. */
    assert_int_equal(ban_check(list, pass), BAN_PASS);
    assert_int_equal(atomic_load(&pass->ban_seen), 0);

    add(list, BAN_PREFIX, NULL, "/gone", 1000, false);
    add(list, BAN_PREFIX, NULL, "/soft", 1000, true);
    add(list, BAN_TAG, NULL, "t", 1000, false);
    assert_int_equal(ban_check(list, pass), BAN_PASS);
    assert_int_equal(atomic_load(&pass->ban_seen), 3);
    assert_int_equal(ban_check(list, soft), BAN_STALE);
    assert_int_equal(atomic_load(&soft->ban_seen), 3);
    assert_int_equal(ban_check(list, pass), BAN_PASS);
    assert_int_equal(ban_check(list, soft), BAN_STALE);

    /* All bans expired: the verdicts stay, sticky soft included. */
    assert_int_equal(ban_list_expire(list, INT64_MAX), 3);
    assert_int_equal(ban_list_count(list), 0);
    assert_int_equal(ban_list_newest_id(list), 3);
    assert_int_equal(ban_check(list, pass), BAN_PASS);
    assert_int_equal(ban_check(list, soft), BAN_STALE);
    assert_int_equal(atomic_load(&pass->ban_seen), 3);

    /* A new ban that does not match: PASS and STALE, cursors at 4. */
    assert_int_equal(add(list, BAN_PREFIX, NULL, "/other", 2000, false), 4);
    assert_int_equal(ban_check(list, pass), BAN_PASS);
    assert_int_equal(ban_check(list, soft), BAN_STALE);
    assert_int_equal(atomic_load(&pass->ban_seen), 4);
    assert_int_equal(atomic_load(&soft->ban_seen), 4);

    /* A ban an object was stored after moves its cursor past it; an
     * older object under the same key goes, its cursor left where it was. */
    struct cache_object *young = make_obj("http://h/keep", 2500);
    add(list, BAN_PREFIX, NULL, "/keep", 2400, false);
    assert_int_equal(ban_check(list, young), BAN_PASS);
    assert_int_equal(atomic_load(&young->ban_seen), 5);
    assert_int_equal(ban_check(list, pass), BAN_GONE);
    assert_int_equal(atomic_load(&pass->ban_seen), 4); /* GONE leaves the cursor */
    cache_object_release(&young);

    cache_object_release(&pass);
    cache_object_release(&soft);
    ban_list_free(&list);
}

/* A new object (cursor 0) against many bans of which only the oldest
 * matches: gone; one stored after it: passes, its cursor at the newest. */
static void test_new_object_against_many_bans(void **state)
{
    (void)state;
    struct ban_list *list = ban_list_new();
    char pattern[64];

    add(list, BAN_PREFIX, NULL, "/old/", 1000, false);
    for (int i = 0; i < 500; i++) {
        snprintf(pattern, sizeof pattern, "/other%d/", i);
        add(list, i % 2 ? BAN_REGEX : BAN_PREFIX, NULL, pattern, 2000 + i, false);
    }
    assert_int_equal(ban_list_count(list), 501);
    struct cache_object *old = make_obj("http://h/old/x", 500);
    struct cache_object *young = make_obj("http://h/old/x", 1500);
    assert_int_equal(ban_check(list, old), BAN_GONE);
    assert_int_equal(ban_check(list, young), BAN_PASS);
    assert_int_equal(atomic_load(&young->ban_seen), 501);
    /* A cursor in the middle: only the bans after it are checked. */
    struct cache_object *mid = make_obj("http://h/other7/x", 0);
    atomic_store(&mid->ban_seen, 8); /* /other7/ is ban 9 */
    assert_int_equal(ban_check(list, mid), BAN_GONE);
    atomic_store(&mid->ban_seen, 9);
    assert_int_equal(ban_check(list, mid), BAN_PASS);
    assert_int_equal(atomic_load(&mid->ban_seen), 501);
    cache_object_release(&old);
    cache_object_release(&young);
    cache_object_release(&mid);
    ban_list_free(&list);
}

/* ---- expiry ---- */

static void test_expire(void **state)
{
    (void)state;
    struct ban_list *list = ban_list_new();

    assert_int_equal(ban_list_expire(list, INT64_MAX), 0); /* empty */
    add(list, BAN_PREFIX, NULL, "/1", 100, false);
    add(list, BAN_PREFIX, NULL, "/2", 200, false);
    add(list, BAN_PREFIX, NULL, "/3", 300, false);
    add(list, BAN_PREFIX, NULL, "/4", 400, false);
    assert_int_equal(ban_list_expire(list, 99), 0);
    assert_int_equal(ban_list_count(list), 4);
    assert_int_equal(ban_list_expire(list, 200), 2); /* at or before */
    assert_int_equal(ban_list_count(list), 2);
    assert_int_equal(ban_list_newest_id(list), 4);
    assert_int_equal(ban_list_expire(list, 250), 0);

    /* The remaining bans still apply, the expired ones do not. */
    struct cache_object *o1 = make_obj("http://h/1", 50);
    struct cache_object *o3 = make_obj("http://h/3", 50);
    assert_int_equal(ban_check(list, o1), BAN_PASS);
    assert_int_equal(ban_check(list, o3), BAN_GONE);

    /* Ids keep increasing. */
    assert_int_equal(add(list, BAN_PREFIX, NULL, "/5", 500, false), 5);
    assert_int_equal(ban_list_newest_id(list), 5);
    assert_int_equal(ban_list_count(list), 3);
    assert_int_equal(ban_list_expire(list, INT64_MAX), 3);
    assert_int_equal(ban_list_count(list), 0);
    assert_int_equal(ban_list_newest_id(list), 5);
    assert_int_equal(add(list, BAN_ALL, NULL, NULL, 600, false), 6);
    assert_int_equal(ban_list_count(list), 1);
    assert_int_equal(ban_check(list, o1), BAN_GONE);
    /* Negative times. */
    assert_int_equal(ban_list_expire(list, -1), 0);
    assert_int_equal(ban_list_expire(list, 600), 1);
    cache_object_release(&o1);
    cache_object_release(&o3);

    /* Many, and a list grown past its first capacity. */
    for (int i = 0; i < 300; i++)
        assert_int_equal(add(list, BAN_TAG, NULL, "t", 1000 + i, false), 7 + (uint64_t)i);
    assert_int_equal(ban_list_expire(list, 1099), 100);
    assert_int_equal(ban_list_count(list), 200);
    assert_int_equal(add(list, BAN_TAG, NULL, "t", 5000, false), 307);
    ban_list_free(&list);
}

/* Bans whose times do not follow their ids (a purge log record from an
 * instance whose clock is behind): expiry still drops exactly those at or
 * before the time. */
static void test_expire_times_out_of_order(void **state)
{
    (void)state;
    struct ban_list *list = ban_list_new();

    add(list, BAN_PREFIX, NULL, "/a", 300, false);
    add(list, BAN_PREFIX, NULL, "/b", 100, false);
    add(list, BAN_PREFIX, NULL, "/c", 400, false);
    size_t expired = ban_list_expire(list, 200), left = ban_list_count(list);
    ban_list_free(&list);
    assert_int_equal(expired, 1); /* the one at 100 */
    assert_int_equal(left, 2);
}

/* ---- records ---- */

static void assert_same_spec(const struct ban_spec *a, const struct ban_spec *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->soft, b->soft);
    assert_true(a->time_ms == b->time_ms);
    size_t ahost = a->host ? a->host_len : 0, bhost = b->host ? b->host_len : 0;
    assert_int_equal(ahost, bhost);
    if (ahost)
        assert_memory_equal(a->host, b->host, ahost);
    assert_int_equal(a->pattern_len, b->pattern_len);
    if (a->pattern_len)
        assert_memory_equal(a->pattern, b->pattern, a->pattern_len);
}

static void test_record_round_trip(void **state)
{
    (void)state;
    const int64_t times[] = {0, 1, -1, 1700000000123, INT64_MAX, INT64_MIN, -1700000000000};
    const char *hosts[] = {NULL, "h.example", "x"};
    const char *patterns[] = {"http://h/p?q", "/p/", "^/api/.*\\.json$", "product-17", NULL};
    unsigned char buf[BAN_RECORD_MAX];

    for (int kind = BAN_KEY; kind <= BAN_ALL; kind++) {
        for (size_t h = 0; h < 3; h++) {
            for (size_t t = 0; t < sizeof times / sizeof times[0]; t++) {
                for (int soft = 0; soft < 2; soft++) {
                    const char *pattern = patterns[kind];
                    struct ban_spec in =
                        spec_of((enum ban_kind)kind, hosts[h], pattern, times[t], soft);
                    size_t n = ban_encode(&in, buf, sizeof buf);
                    assert_int_equal(n, 21 + in.host_len + in.pattern_len);
                    struct ban_spec out;
                    memset(&out, 0xa5, sizeof out);
                    assert_true(ban_decode(buf, n, &out));
                    assert_same_spec(&in, &out);
                    if (!hosts[h])
                        assert_null(out.host);
                    /* Spans point into the record. */
                    assert_true((const unsigned char *)out.pattern >= buf &&
                                (const unsigned char *)out.pattern + out.pattern_len <= buf + n);
                    /* Encode is canonical. */
                    unsigned char again[BAN_RECORD_MAX];
                    assert_int_equal(ban_encode(&out, again, sizeof again), n);
                    assert_memory_equal(buf, again, n);
                    /* Exactly n bytes needed. */
                    assert_int_equal(ban_encode(&in, again, n), n);
                    assert_int_equal(ban_encode(&in, again, n - 1), 0);
                }
            }
        }
    }

    /* A NULL host with a length, an empty host: no host. */
    struct ban_spec in = spec_of(BAN_PREFIX, NULL, "/p", 5, false);
    in.host_len = 7;
    struct ban_spec out;
    size_t n = ban_encode(&in, buf, sizeof buf);
    assert_int_equal(n, 21 + 2);
    assert_true(ban_decode(buf, n, &out));
    assert_null(out.host);
    assert_int_equal(out.host_len, 0);

    /* The largest record. */
    char *big = malloc(BAN_PATTERN_MAX + 1);
    char host[BAN_HOST_MAX + 1];
    assert_non_null(big);
    memset(big, 'p', BAN_PATTERN_MAX);
    big[BAN_PATTERN_MAX] = '\0';
    memset(host, 'h', BAN_HOST_MAX);
    host[BAN_HOST_MAX] = '\0';
    in = spec_of(BAN_REGEX, host, big, -42, true);
    n = ban_encode(&in, buf, sizeof buf);
    assert_int_equal(n, 21 + BAN_HOST_MAX + BAN_PATTERN_MAX);
    assert_true(n <= BAN_RECORD_MAX);
    assert_true(ban_decode(buf, n, &out));
    assert_same_spec(&in, &out);

    /* Out of bounds: refused by encode. */
    in.host_len = BAN_HOST_MAX + 1;
    char bighost[BAN_HOST_MAX + 1];
    memset(bighost, 'h', sizeof bighost);
    in.host = bighost;
    assert_int_equal(ban_encode(&in, buf, sizeof buf), 0);
    in = spec_of(BAN_PREFIX, NULL, big, 0, false);
    in.pattern_len = BAN_PATTERN_MAX + 1;
    unsigned char *huge = malloc(2 * BAN_RECORD_MAX);
    assert_non_null(huge);
    char *bigger = malloc(BAN_PATTERN_MAX + 1);
    assert_non_null(bigger);
    memset(bigger, 'p', BAN_PATTERN_MAX + 1);
    in.pattern = bigger;
    assert_int_equal(ban_encode(&in, huge, 2 * BAN_RECORD_MAX), 0);
    in = spec_of(BAN_PREFIX, NULL, "/p", 0, false);
    in.kind = (enum ban_kind)(BAN_ALL + 1);
    assert_int_equal(ban_encode(&in, buf, sizeof buf), 0);
    assert_int_equal(ban_encode(&in, buf, 0), 0);
    free(huge);
    free(bigger);
    free(big);
}

/* Decode into a buffer of exactly len bytes, so ASan sees an over-read. */
static bool decode_exact(const unsigned char *p, size_t len, struct ban_spec *spec)
{
    unsigned char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, p, len);
    bool ok = ban_decode(copy, len, spec);
    free(copy);
    return ok;
}

static void test_decode_rejects(void **state)
{
    (void)state;
    unsigned char rec[BAN_RECORD_MAX + 16], bad[BAN_RECORD_MAX + 16];
    struct ban_spec in = spec_of(BAN_PREFIX, "h.example", "/p/", 1234, true), out;
    size_t n = ban_encode(&in, rec, sizeof rec);
    assert_int_equal(n, 21 + 9 + 3);
    assert_true(decode_exact(rec, n, &out));

    /* Short: every truncation. */
    for (size_t len = 0; len < n; len++)
        assert_false(decode_exact(rec, len, &out));
    /* Trailing bytes. */
    memcpy(bad, rec, n);
    bad[n] = 'x';
    assert_false(decode_exact(bad, n + 1, &out));

#define MUTATE(off, val)                                                                           \
    do {                                                                                           \
        memcpy(bad, rec, n);                                                                       \
        bad[off] = (unsigned char)(val);                                                           \
        assert_false(decode_exact(bad, n, &out));                                                  \
    } while (0)
    MUTATE(0, 'X'); /* magic */
    MUTATE(3, 'n');
    MUTATE(4, 0); /* version */
    MUTATE(4, 2);
    MUTATE(4, 255);
    MUTATE(5, BAN_ALL + 1); /* kind */
    MUTATE(5, 255);
    MUTATE(6, 2); /* soft */
    MUTATE(6, 255);
    MUTATE(15, 200); /* host length beyond the input */
    MUTATE(16, 1);
    MUTATE(15, 10); /* host one longer: the pattern length is read off by one */
    MUTATE(15, 8);
    MUTATE(26, 4); /* pattern length: longer */
    MUTATE(26, 2); /* shorter */
    MUTATE(26, 0);
    MUTATE(27, 1);
    MUTATE(29, 0x80);
#undef MUTATE
    /* The fields the mutations hit are where they are meant to be. */
    assert_int_equal(rec[15], 9);
    assert_int_equal(rec[26], 3);
    /* Soft 0 and kind ALL are fine. */
    memcpy(bad, rec, n);
    bad[6] = 0;
    bad[5] = BAN_ALL;
    assert_true(decode_exact(bad, n, &out));
    assert_false(out.soft);
    assert_int_equal(out.kind, BAN_ALL);

    /* A host longer than BAN_HOST_MAX, well-formed otherwise. */
    size_t hl = BAN_HOST_MAX + 1;
    unsigned char *p = bad;
    memcpy(p, "TBAN\x01\x01\x00", 7);
    memset(p + 7, 0, 8);
    p[15] = (unsigned char)hl;
    p[16] = (unsigned char)(hl >> 8);
    memset(p + 17, 'h', hl);
    p[17 + hl] = 1;
    p[18 + hl] = p[19 + hl] = p[20 + hl] = 0;
    p[21 + hl] = '/';
    assert_false(decode_exact(bad, 22 + hl, &out));
    /* ...and at BAN_HOST_MAX it decodes. */
    hl = BAN_HOST_MAX;
    p[15] = (unsigned char)hl;
    p[16] = 0;
    p[17 + hl] = 1;
    p[18 + hl] = p[19 + hl] = p[20 + hl] = 0;
    p[21 + hl] = '/';
    assert_true(decode_exact(bad, 22 + hl, &out));
    assert_int_equal(out.host_len, BAN_HOST_MAX);

    /* A pattern longer than BAN_PATTERN_MAX. */
    size_t pl = BAN_PATTERN_MAX + 1;
    unsigned char *big = malloc(21 + pl);
    assert_non_null(big);
    memcpy(big, "TBAN\x01\x01\x00", 7);
    memset(big + 7, 0, 10);
    big[17] = (unsigned char)pl;
    big[18] = (unsigned char)(pl >> 8);
    big[19] = big[20] = 0;
    memset(big + 21, 'p', pl);
    assert_false(decode_exact(big, 21 + pl, &out));
    big[17] = (unsigned char)(pl - 1);
    assert_true(decode_exact(big, 21 + pl - 1, &out));
    free(big);

    /* Empty host and pattern decode (ban_list_add judges the spec). */
    in = spec_of(BAN_KEY, NULL, NULL, 0, false);
    n = ban_encode(&in, rec, sizeof rec);
    assert_int_equal(n, 21);
    assert_true(decode_exact(rec, n, &out));
    assert_int_equal(out.pattern_len, 0);
    char err[64];
    struct ban_list *list = ban_list_new();
    assert_int_equal(ban_list_add(list, &out, err, sizeof err), 0);
    assert_string_equal(err, "empty key");
    ban_list_free(&list);
}

/* ---- concurrency ---- */

#define NOBJ 64
#define NBANS 1000
#define CHECKERS 4

/* How long the checkers keep at it if the adds do not finish (they take
 * well under a second when the adder gets the lock). */
#define RACE_DEADLINE_S 10.0

struct race {
    struct ban_list *list;
    struct cache_object *obj[NOBJ];
    atomic_bool adding_done;
    atomic_int added;
    double deadline;
    atomic_bool starved;          /* a checker hit the deadline before the adds were done */
    atomic_int added_by_deadline; /* how many were, then */
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct checker_arg {
    struct race *race;
    bool ok;
    unsigned long checks;
};

static int64_t obj_stored_at(int i)
{
    return 1000 + (int64_t)((i * 397) % NBANS);
}

static void ban_pattern(int j, char *buf, size_t size, enum ban_kind *kind)
{
    int target = j % (2 * NOBJ); /* half of them match no object */
    *kind = j % 2 ? BAN_REGEX : BAN_PREFIX;
    if (*kind == BAN_REGEX)
        snprintf(buf, size, "^/d%d/(x|y)$", target);
    else
        snprintf(buf, size, "/d%d/", target);
}

static void *adder(void *p)
{
    struct race *r = p;
    char pattern[64], err[128];
    enum ban_kind kind;

    for (int j = 0; j < NBANS; j++) {
        ban_pattern(j, pattern, sizeof pattern, &kind);
        struct ban_spec s = spec_of(kind, j % 3 ? "h" : NULL, pattern, 1000 + j, false);
        if (ban_list_add(r->list, &s, err, sizeof err) == 0)
            abort();
        atomic_fetch_add(&r->added, 1);
    }
    atomic_store(&r->adding_done, true);
    return NULL;
}

static void *checker(void *p)
{
    struct checker_arg *a = p;
    struct race *r = a->race;
    bool gone[NOBJ] = {false};
    bool last = false;

    a->ok = true;
    while (!last) {
        /* Once more after the adds are done; or give up at the deadline
         * (the adder starved), which lets the adder finish. */
        last = atomic_load(&r->adding_done);
        if (!last && now_s() > r->deadline) {
            if (!atomic_exchange(&r->starved, true))
                atomic_store(&r->added_by_deadline, atomic_load(&r->added));
            last = true;
        }
        for (int i = 0; i < NOBJ; i++, a->checks++) {
            enum ban_verdict v = ban_check(r->list, r->obj[i]);
            if (v == BAN_STALE || (gone[i] && v != BAN_GONE))
                a->ok = false; /* no soft bans; nothing expires */
            if (v == BAN_GONE)
                gone[i] = true;
        }
    }
    return NULL;
}

static void test_checks_race_adds(void **state)
{
    (void)state;
    struct race r = {.list = ban_list_new()};
    pthread_t add_thread, check_threads[CHECKERS];
    struct checker_arg args[CHECKERS];
    char key[64];

    atomic_init(&r.adding_done, false);
    atomic_init(&r.added, 0);
    atomic_init(&r.starved, false);
    atomic_init(&r.added_by_deadline, 0);
    r.deadline = now_s() + RACE_DEADLINE_S;
    for (int i = 0; i < NOBJ; i++) {
        snprintf(key, sizeof key, "http://h/d%d/%s", i, i % 2 ? "x" : "y");
        r.obj[i] = make_obj(key, obj_stored_at(i));
    }
    for (int i = 0; i < CHECKERS; i++) {
        args[i] = (struct checker_arg){.race = &r};
        assert_int_equal(pthread_create(&check_threads[i], NULL, checker, &args[i]), 0);
    }
    assert_int_equal(pthread_create(&add_thread, NULL, adder, &r), 0);
    for (int i = 0; i < CHECKERS; i++)
        pthread_join(check_threads[i], NULL);
    pthread_join(add_thread, NULL);
    for (int i = 0; i < CHECKERS; i++)
        assert_true(args[i].ok);
    assert_int_equal(ban_list_count(r.list), NBANS);
    assert_int_equal(ban_list_newest_id(r.list), NBANS);

    /* Every object that a ban added after it was stored matches is gone. */
    int ngone = 0;
    for (int i = 0; i < NOBJ; i++) {
        bool expect = false;
        for (int j = 0; j < NBANS && !expect; j++) {
            char pattern[64];
            enum ban_kind kind;
            ban_pattern(j, pattern, sizeof pattern, &kind);
            struct ban_spec s = spec_of(kind, NULL, pattern, 1000 + j, false);
            expect = r.obj[i]->stored_at < s.time_ms && ban_matches(&s, r.obj[i]);
        }
        enum ban_verdict v = ban_check(r.list, r.obj[i]);
        if (v != (expect ? BAN_GONE : BAN_PASS))
            fail_msg("object %d (%s, stored at %lld): verdict %d, expected %d", i,
                     r.obj[i]->primary_key, (long long)r.obj[i]->stored_at, (int)v,
                     expect ? BAN_GONE : BAN_PASS);
        ngone += expect;
        /* A fresh object under the same key and time agrees. */
        struct cache_object *fresh = make_obj(r.obj[i]->primary_key, r.obj[i]->stored_at);
        assert_int_equal(ban_check(r.list, fresh), v);
        cache_object_release(&fresh);
    }
    assert_true(ngone > 0 && ngone < NOBJ);
    print_message("    %d/%d objects gone, %lu checks\n", ngone, NOBJ,
                  args[0].checks + args[1].checks + args[2].checks + args[3].checks);
    for (int i = 0; i < NOBJ; i++)
        cache_object_release(&r.obj[i]);
    ban_list_free(&r.list);
    /* The adds must not wait on the checks for ever: a writer waiting for
     * the lock has to get it while readers keep coming. */
    if (atomic_load(&r.starved))
        fail_msg("ban_list_add starved: %d of %d bans added in %.0f s while %d threads "
                 "checked",
                 atomic_load(&r.added_by_deadline), NBANS, RACE_DEADLINE_S, CHECKERS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_increase_from_one),
        cmocka_unit_test(test_invalid_specs_refused),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_only_objects_stored_before_the_ban),
        cmocka_unit_test(test_matches_ignores_times),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_regex_match_limit),
        cmocka_unit_test(test_tag),
        cmocka_unit_test(test_all),
        cmocka_unit_test(test_odd_keys),
        cmocka_unit_test(test_soft_ban_sticks),
        cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_new_object_against_many_bans),
        cmocka_unit_test(test_expire),
        cmocka_unit_test(test_expire_times_out_of_order),
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_checks_race_adds),
    };

    return cmocka_run_group_tests_name("cache/ban", tests, NULL, NULL);
}
