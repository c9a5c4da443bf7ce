/*
 * proxy/purge.h: purging (issue 8).
 *
 * Every purge is a ban (cache/ban.h) with the time it was made: one URL
 * (BAN_KEY: every object whose key is that URL, all Vary and coded
 * variants), a path prefix or a regex (optionally for one host), a tag, or
 * everything; hard (gone) or soft (stale).  Applying one:
 *   1. the ban joins the process's ban list, so lookups stop serving what
 *      it matches at once, wherever the object comes from (memory,
 *      memcached, a fill that ends later);
 *   2. the memory store is swept with it now (hard: matching objects are
 *      dropped and counted; soft: they are marked stale);
 *   3. a URL purge also deletes the URL's item in memcached;
 *   4. with memcached, the ban is appended to the shared purge log, which
 *      every node polls every `purge_sync` and applies the same way.
 * Bans are kept until no object they could match can exist: older than
 * every object in memory, older than BAN_MIN_LIFETIME (fills in flight), and,
 * with memcached, older than the longest time memcached may keep an item.
 *
 * Threads: the purger lives on one loop (the admin thread's); every
 * function is called there.  The workers check objects against the list
 * purger_bans() gives with ban_check() (cache/ban.h).
 */
#ifndef TESSERA_PURGE_H
#define TESSERA_PURGE_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "cache/ban.h"
#include "cache/mcstore.h"
#include "cache/store.h"
#include "proxy/stats.h"

/* A ban is kept at least this long (a fill that began before it may store
 * an object older than it until then). */
#define BAN_MIN_LIFETIME_MS ((int64_t)60 * 60 * 1000)

/* Entries of the shared log replayed by a node that starts (older ones are
 * ignored: their bans are past their use, or the log has been cut). */
#define PURGE_LOG_REPLAY 10000

struct purger;

/* purger_new: a purger for the memory store `memory` and, when mc is not
 * NULL, the memcached tier, polling the shared log every sync_ms on loop
 * (the caller's thread).  ttl_slack_ms is memcached's ttl_slack (how long
 * past an object's use memcached may keep it).  NULL when memory runs out. */
struct purger *purger_new(struct ev_loop *loop, struct cache_store *memory, struct mcstore *mc,
                          uint64_t sync_ms, uint64_t ttl_slack_ms);

/* purger_start: start polling (and replaying the log's recent entries). */
void purger_start(struct purger *p);

/* purger_stop: stop the timers; answers still in flight are dropped. */
void purger_stop(struct purger *p);

/* purger_free: after purger_stop() and once memcached can no longer call
 * back (mcstore_free() done); *p becomes NULL. */
void purger_free(struct purger **p);

/* purger_bans: the ban list the workers check (owned by the purger). */
struct ban_list *purger_bans(struct purger *p);

/* What a purge did. */
struct purge_result {
    uint64_t ban_id;  /* the ban's id in this node's list */
    uint64_t removed; /* objects dropped from memory (hard) */
    uint64_t marked;  /* objects marked stale in memory (soft) */
    bool shared;      /* appended to the shared log (false: no memcached, or the log
                       * could not be queued: the purge is local, and logged) */
};

/* purger_purge_many: apply n specs as one purge: every ban added (a spec
 * whose time_ms is 0 gets the millisecond after now, and the call returns
 * once the clock has reached it: whatever was stored before the call is
 * before the ban, whatever is stored after it returns is not), then one
 * sweep of the memory store, then each shared through the purge log (a URL
 * purge also deletes its memcached item).  For BAN_KEY, pattern is the
 * URL's primary key without its key-header and key-cookie parts.  res
 * counts them all; res->ban_id is the last ban's.  False with a message in
 * err at the first invalid spec: the bans before it stay. */
bool purger_purge_many(struct purger *p, struct ban_spec *specs, size_t n, struct purge_result *res,
                       char *err, size_t errlen);

/* purger_totals: the purge counters for /stats. */
void purger_totals(struct purger *p, struct stats_purge_totals *out);

#endif
