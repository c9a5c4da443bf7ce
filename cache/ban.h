/*
 * cache/ban.h: bans, the lazy half of purging (issue 8).
 *
 * A purge by prefix, regex, tag, key or "all" does not walk the stores at
 * once: it becomes a ban, a rule with a time.  An object stored before a
 * ban's time (strictly: stored_at < time_ms; the purger gives a ban the
 * millisecond after the one it was made in, and answers only once the
 * clock has reached it, so an object stored before the purge is always
 * before it and one stored after the answer never is) that the ban
 * matches is gone (or, for a soft ban, stale) from
 * then on; objects stored after it are not touched.  Lookups check every
 * object they find against the list (ban_check()), so a ban also covers
 * objects that come back from memcached, or that a fill in flight stores
 * a moment later; the admin side sweeps the memory store with the same
 * check so that banned objects stop taking room.
 *
 * Cost: each object remembers the newest ban it was checked against (its
 * ban cursor), so a hit on an object already checked costs one atomic load
 * and a comparison, however many bans there are.  Only an object new to
 * the list (just read from memcached, or checked before the latest bans)
 * is matched against the bans it has not seen.
 *
 * Bans are kept until no object they could match can exist any more:
 * ban_list_expire() drops those older than a time the caller proves (the
 * oldest object in memory, and what memcached may still hold).
 *
 * Thread safety: every function may be called from any thread; the list
 * is guarded by a read-write lock (ban_check() takes it for reading).
 */
#ifndef TESSERA_CACHE_BAN_H
#define TESSERA_CACHE_BAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/object.h"

enum ban_kind {
    BAN_KEY,    /* one URL: objects whose primary key, without its key-header and
                 * key-cookie parts, is pattern (all Vary and coded variants) */
    BAN_PREFIX, /* path prefix (the key's path and query start with pattern) */
    BAN_REGEX,  /* PCRE2 pattern searched in the key's path and query */
    BAN_TAG,    /* objects carrying this tag (exact, case-sensitive) */
    BAN_ALL,    /* every object */
};

/* What a purge asks for; also the record of the shared purge log.  Spans
 * need not be NUL-terminated and are copied by ban_list_add(). */
struct ban_spec {
    enum ban_kind kind;
    bool soft;        /* matching objects become stale instead of gone */
    int64_t time_ms;  /* objects stored before this (ms since the epoch) are affected */
    const char *host; /* PREFIX, REGEX: the host part of keys must equal this
                       * (case-insensitive; as keys write it: lower-case, no
                       * default port); NULL or empty: any host */
    size_t host_len;
    const char *pattern; /* KEY: the primary key; PREFIX: the path prefix; REGEX: the
                          * pattern; TAG: the tag; ALL: unused */
    size_t pattern_len;
};

/* Longest pattern or host a ban takes. */
#define BAN_PATTERN_MAX 4096
#define BAN_HOST_MAX 255

struct ban_list;

/* ban_list_new: an empty list, or NULL when memory runs out. */
struct ban_list *ban_list_new(void);

/* ban_list_free: free the list and its bans; *list becomes NULL.  NULL is
 * fine.  No other call may run or follow. */
void ban_list_free(struct ban_list **list);

/* ban_list_add: append a ban (patterns copied; a regex compiled, with JIT
 * when available).  Returns its id, a number unique in this list and
 * increasing with each add; 0 with a message in err (errlen bytes) when
 * the spec is invalid (empty pattern for KEY/PREFIX/REGEX/TAG, too long, a
 * regex that does not compile: "regex: missing closing parenthesis at
 * offset 3") or memory runs out. */
uint64_t ban_list_add(struct ban_list *list, const struct ban_spec *spec, char *err, size_t errlen);

enum ban_verdict {
    BAN_PASS,  /* no ban applies */
    BAN_GONE,  /* a hard ban applies: the object must not be served */
    BAN_STALE, /* only soft bans apply: serve it only as a stale object */
};

/* ban_check: the verdict on obj.  A soft verdict sticks to the object (it
 * stays stale until replaced); the ban cursor moves to the newest ban, so
 * the next check of obj costs nothing until a ban is added.  GONE leaves
 * the cursor: the caller drops the object. */
enum ban_verdict ban_check(struct ban_list *list, struct cache_object *obj);

/* ban_matches: whether ban spec (hard or soft) matches obj, ignoring times
 * (for tests and for the purge log's exact purges). */
bool ban_matches(const struct ban_spec *spec, const struct cache_object *obj);

/* ban_list_count: bans in the list. */
size_t ban_list_count(struct ban_list *list);

/* ban_list_newest_id: the id of the newest ban, 0 when none was ever added. */
uint64_t ban_list_newest_id(struct ban_list *list);

/* ban_list_expire: drop the bans whose time is at or before before_ms (no
 * object stored before them can exist any more).  Returns how many went. */
size_t ban_list_expire(struct ban_list *list, int64_t before_ms);

/* ---- the purge log record ---------------------------------------------------------- */

/* Longest encoded record. */
#define BAN_RECORD_MAX (32 + BAN_HOST_MAX + BAN_PATTERN_MAX)

/* ban_encode: spec as a purge log record into out (cap bytes).  Returns
 * the length, 0 when it does not fit or the spec is out of bounds. */
size_t ban_encode(const struct ban_spec *spec, unsigned char *out, size_t cap);

/* ban_decode: a record back into *spec, whose spans point into p.  False
 * for anything that is not a well-formed record (untrusted input). */
bool ban_decode(const unsigned char *p, size_t len, struct ban_spec *spec);

/* ban_kind_name: "key", "prefix", "regex", "tag" or "all". */
const char *ban_kind_name(enum ban_kind kind);

#endif
