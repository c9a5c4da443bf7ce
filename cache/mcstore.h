/*
 * cache/mcstore.h: the memcached tier, a cache shared by every tessera node
 * in front of the same application (DESIGN.md, Stores; issue 6).
 *
 * libmemcached calls block, so none is ever made on the caller's thread:
 * every call below only queues a job and returns at once.  A small pool of
 * I/O threads, each with its own memcached_st, runs the jobs; lookups and
 * lock attempts complete through a callback that runs ON AN I/O THREAD (the
 * caller hands the result to its own loop, e.g. through an ev_async).
 * Writes (set, delete, unlock) are fire and forget: nobody waits for them.
 *
 * Queues are bounded (queue_max jobs of each class): when full, a lookup or
 * lock call returns false (the caller treats it as a miss, or fetches
 * itself) and a write is dropped and counted.  Lookups, locks and purge
 * log calls go ahead of writes, so a burst of writes never delays a lookup.
 *
 * Items: an object is encoded by cache/codec.h into item 0 and chunk items,
 * stored under cache_codec_item_key(prefix, primary, secondary, index).  An
 * object with a Vary value is also announced by a "Vary index" item under
 * (primary, ""), holding that Vary value, so a node that knows only the
 * primary key learns how to compute the secondary key.  Everything read
 * from memcached is untrusted: garbage, foreign, truncated or inconsistent
 * values are a miss and a counted decode error, never a crash.
 *
 * Servers: consistent hashing (ketama, weighted) spreads keys over the
 * servers; a server that fails is left out (its keys map to the others) and
 * tried again after retry_timeout; a server that connects but does not
 * answer in time is skipped (its calls fail at once, its keys miss) for
 * retry_timeout too.  memcached being down, at start or
 * later, is not an error: lookups miss fast, writes fail and are counted,
 * and the tier is used again as soon as the server answers.  Each change of
 * a server's state is logged once ("memcached 127.0.0.1:11211 is down
 * (CONNECTION FAILURE)", "... is back"), not once per request.
 *
 * Thread safety: every function but mcstore_new() and mcstore_free() may be
 * called from any number of threads at once.
 */
#ifndef TESSERA_CACHE_MCSTORE_H
#define TESSERA_CACHE_MCSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/object.h"

/* Defaults for the zero values of struct mcstore_config. */
#define MCSTORE_DEFAULT_TIMEOUT_MS 200
#define MCSTORE_DEFAULT_RETRY_TIMEOUT_MS 5000
#define MCSTORE_DEFAULT_IO_THREADS 2
/* 1m - 1k: room for memcached's item header within its default 1m limit */
#define MCSTORE_DEFAULT_ITEM_SIZE ((size_t)1024 * 1024 - 1024)
#define MCSTORE_DEFAULT_QUEUE_MAX 4096
#define MCSTORE_DEFAULT_MAX_BODY ((size_t)1 << 30)

/* memcached treats an expiry above 30 days as an absolute Unix time; items
 * are never given more than this many seconds (see mcstore_item_expiry()). */
#define MCSTORE_MAX_EXPIRY_S (60 * 60 * 24 * 30)

/* Most servers, and most I/O threads, a store takes. */
#define MCSTORE_MAX_SERVERS 64
#define MCSTORE_MAX_IO_THREADS 64

/* One memcached server.  host is a name or an IP literal (IPv6 without
 * brackets); libmemcached resolves it when it connects, on an I/O thread. */
struct mcstore_server {
    char *host;
    unsigned port;   /* 1..65535 */
    unsigned weight; /* share of the key space; 0 counts as 1 */
};

/* Log sink: level is an enum log_level of config/config.h (LOG_ERROR,
 * LOG_WARN, LOG_INFO, LOG_DEBUG); msg is one line without a newline, valid
 * during the call.  Called from I/O threads, possibly several at once. */
typedef void mcstore_log_f(int level, const char *msg);

/* The store's settings.  mcstore_new() copies everything it keeps, so the
 * config and its strings only need to live through the call.  Zero values
 * take the defaults above. */
struct mcstore_config {
    const struct mcstore_server *servers; /* 1..MCSTORE_MAX_SERVERS of them */
    size_t nservers;
    const char *prefix;        /* starts every key; cache_codec_prefix_valid(); NULL is "" */
    uint64_t timeout_ms;       /* connect, poll, send and receive timeout of each call */
    uint64_t retry_timeout_ms; /* a failed server is left out this long, rounded up to
                                * whole seconds (libmemcached counts in seconds) */
    unsigned io_threads;       /* 1..MCSTORE_MAX_IO_THREADS, each with its own memcached_st */
    size_t item_size;          /* largest item written; larger objects are chunked */
    uint64_t ttl_slack_ms;     /* added to every object's expiry (see mcstore_item_expiry()) */
    unsigned queue_max;        /* jobs waiting, per class (lookups, writes) */
    size_t max_body;           /* largest body a lookup accepts; larger is a miss */
    mcstore_log_f *log;        /* NULL: nothing is logged */
};

struct mcstore;

/* mcstore_new: a store on cfg->servers; starts the I/O threads.  No
 * connection is made here: a server that is down (or whose name does not
 * resolve yet) is found out by the I/O threads and logged, and used as soon
 * as it answers.  Returns NULL and a one-line reason in err (errlen bytes,
 * NUL-terminated) when the config is invalid (no server, too many, a port
 * out of range, a bad prefix, item_size outside 1k..1g) or memory
 * or threads run out.  The caller owns the store; free it with
 * mcstore_free().  Main thread. */
struct mcstore *mcstore_new(const struct mcstore_config *cfg, char *err, size_t errlen);

/* mcstore_free: stop the I/O threads (each first finishes the job it is
 * running, which takes at most a few timeouts), call the callback of every
 * job still queued with an error ("shutdown") on the calling thread, release
 * the objects of queued writes, free the store and set *store to NULL.  NULL
 * *store is fine.  No other call may be running or made later, and it must
 * not be called from a callback (it waits for the I/O threads). */
void mcstore_free(struct mcstore **store);

enum mcstore_get_kind {
    MC_HIT,   /* obj is the object */
    MC_MISS,  /* nothing usable: not found, a chunk missing, a bad value, expired */
    MC_VARY,  /* (primary, "") holds a Vary index: vary is the Vary value */
    MC_ERROR, /* memcached failed (down, timeout, shutdown): treat as a miss */
};

/* A lookup's result, valid during the callback only; the callee takes
 * ownership of obj (release it with cache_object_release()) and of vary
 * (free() it). */
struct mcstore_get_result {
    enum mcstore_get_kind kind;
    struct cache_object *obj; /* MC_HIT: a reference the callee owns; else NULL */
    char *vary;               /* MC_VARY: malloc'd, NUL-terminated Vary value; else NULL */
    size_t vary_len;
    const char *why; /* NULL for MC_HIT and MC_VARY; else a short reason ("not found",
                      * "chunk missing", "bad magic", "TIMEOUT", "shutdown", ...) */
};

/* Lookup completion: called exactly once per accepted lookup, on an I/O
 * thread (or on mcstore_free()'s thread for a job it drops). */
typedef void mcstore_get_cb(void *ctx, struct mcstore_get_result *res);

/* mcstore_get: look up the object under (primary, secondary) (the secondary
 * key is the Vary key of cache/key.h, empty for none).  Item 0 is fetched,
 * then, for a chunked object, every chunk item with one multi-get, and the
 * object decoded with its full primary key checked (a hash collision is a
 * miss); it is given primary_hash (the caller's seeded hash, store.h).  When
 * (primary, "") holds a Vary index instead, the result is MC_VARY with the
 * Vary value: compute the secondary key from it and look up again.  An
 * object whose age at now_ms (the caller's clock, ms since the epoch) is
 * past its lifetime, stale windows and the ttl slack is a miss (memcached
 * expires it by its own clock, which may lag).  The keys are copied.
 * Returns true when queued: cb(ctx, result) follows, exactly once.  False
 * when the lookup queue is full (counted) or memory runs out: cb is never
 * called; treat it as a miss. */
bool mcstore_get(struct mcstore *store, const char *primary, size_t plen, uint64_t primary_hash,
                 const char *secondary, size_t slen, int64_t now_ms, mcstore_get_cb *cb, void *ctx);

/* mcstore_set: store obj in the background, taking the store's own
 * reference (released once written or dropped; the caller keeps its own).
 * The chunk items are written first and item 0 last, so a reader never
 * finds an item 0 whose chunks are not there yet; an object with a Vary
 * value and a non-empty secondary key is then announced by a Vary index
 * item under (primary, "").  Items expire after mcstore_item_expiry().
 * Fire and forget: returns true when queued, false when the write queue is
 * full and the write dropped (counted), or memory runs out.  A failed write
 * is counted, never reported. */
bool mcstore_set(struct mcstore *store, struct cache_object *obj, int64_t now_ms);

/* mcstore_delete: delete, in the background, the item under (primary, ""):
 * the object stored without Vary, or the Vary index.  Variants stored under
 * (primary, secondary) are left behind, unreachable without the index, until
 * they expire (purging them by tag or ban is a later issue).  Fire and
 * forget; false when dropped because the write queue is full. */
bool mcstore_delete(struct mcstore *store, const char *primary, size_t plen);

/* Lock completion: acquired is true when this call took the lock, false
 * when another holder has it.  why is NULL when memcached answered; when it
 * failed (down, timeout, shutdown) acquired is true and why says what went
 * wrong: the lock fails open, so the caller fetches itself rather than wait
 * for a fetch nobody makes.  Called exactly once per accepted call, on an
 * I/O thread (or on mcstore_free()'s thread for a job it drops). */
typedef void mcstore_lock_cb(void *ctx, bool acquired, const char *why);

/* mcstore_lock: take the cluster lock of primary key (for request
 * coalescing across nodes): a memcached `add` of the item key of (primary,
 * "") plus ":lock", expiring after ttl_ms rounded up to whole seconds (at
 * least 1, at most MCSTORE_MAX_EXPIRY_S).  True when queued: cb follows,
 * exactly once.  False when the lookup queue is full (counted): cb is never
 * called; the caller should fetch itself. */
bool mcstore_lock(struct mcstore *store, const char *primary, size_t plen, uint64_t ttl_ms,
                  mcstore_lock_cb *cb, void *ctx);

/* mcstore_unlock: delete the lock item of primary key in the background.
 * It does not check who holds it: a holder that outlived its ttl may delete
 * the next holder's lock, which costs at most one more upstream fetch.
 * Fire and forget; false when dropped because the write queue is full. */
bool mcstore_unlock(struct mcstore *store, const char *primary, size_t plen);

/* ---- purge log (issue 8) ----------------------------------------------
 *
 * A log shared by every node, so that a purge given to one node reaches the
 * others: a version counter under "<prefix>purgelog:v" (a decimal number,
 * kept by memcached incr; it never expires) and numbered entries under
 * "<prefix>purgelog:<n>" (n >= 1, decimal; each holds one record, raw
 * bytes the caller encodes).  A node appends the purges it is given; the
 * others poll the version and read the entries past the last one they saw.
 * The items are spread over the servers by the same hashing as every other
 * key and follow the same server states: a down server is left out (its
 * log items map to the others), a skipped one fails at once.
 *
 * What a reader must expect (memcached is a cache, not a database):
 * - Holes: an append that fails after taking its number (the entry write
 *   failed or timed out, or the node died in between), or an entry evicted
 *   or expired, leaves entry n missing: it reads found=false.
 * - Resets: memcached may lose the version (restart, eviction, its server
 *   left out of the ring): it then reads not found, and the next append
 *   starts again from 1, overwriting old entries.  A version below the last
 *   one seen means the log was reset.
 * - Order: numbers are unique and increase, but append n+1 may be readable
 *   before append n (two nodes appending at once).
 */

/* Largest record of one entry: purges are small; this keeps an entry far
 * below memcached's item size limit. */
#define MCSTORE_LOG_RECORD_MAX ((size_t)64 * 1024)
/* Most entries one mcstore_log_read() fetches (one multi-get per server). */
#define MCSTORE_LOG_READ_MAX 256

/* Append completion: ok is true when entry n holds the record.  When
 * ok is false, why says which step failed ("TIMEOUT", "SERVER ERROR",
 * "skipped after a timeout", "shutdown", ...) and n is the number the
 * append took, now a hole, or 0 when it took none.  why is NULL when ok.
 * Called exactly once per accepted call, on an I/O thread (or on
 * mcstore_free()'s thread, with "shutdown", for a job it drops). */
typedef void mcstore_log_append_cb(void *ctx, bool ok, uint64_t n, const char *why);

/* mcstore_log_append: append record (len bytes, 1..MCSTORE_LOG_RECORD_MAX;
 * copied) to the purge log: on an I/O thread, incr the version by 1
 * (creating it as "0" with add when it does not exist; when another node
 * adds it first, its value is used), then set entry n, the new version, to
 * the record with flags 0 and expiry expiry_s seconds (0: never; more than
 * MCSTORE_MAX_EXPIRY_S counts as that).  True when queued (on the lookup
 * queue: someone waits for the answer): cb follows, exactly once.  False,
 * and cb is never called, when len is out of range, the lookup queue is
 * full (counted) or memory runs out. */
bool mcstore_log_append(struct mcstore *st, const void *record, size_t len, uint32_t expiry_s,
                        mcstore_log_append_cb *cb, void *ctx);

/* Version completion: ok is false when memcached failed (down, timeout,
 * shutdown; why says so).  When ok, found is false if the version does not
 * exist (never written, or lost: see Resets above) or holds something else
 * than a decimal number (a counted decode error), and version is its value
 * when found (0 otherwise).  why is NULL when found, else a short reason
 * ("not found", "not a decimal number", "TIMEOUT", "shutdown", ...).
 * Called exactly once per accepted call, on an I/O thread (or on
 * mcstore_free()'s thread for a job it drops). */
typedef void mcstore_log_version_cb(void *ctx, bool ok, bool found, uint64_t version,
                                    const char *why);

/* mcstore_log_version: read the purge log's version.  True when queued (on
 * the lookup queue): cb follows, exactly once.  False when the lookup queue
 * is full (counted) or memory runs out: cb is never called. */
bool mcstore_log_version(struct mcstore *st, mcstore_log_version_cb *cb, void *ctx);

/* One entry read: data/len are its record when found (valid during the
 * callback only; the callee copies what it keeps).  found is false when
 * the entry does not exist (a hole, or not written yet) or is not a record
 * this store writes (empty or too large: a counted decode error). */
struct mcstore_log_entry {
    uint64_t n;
    bool found;
    const void *data; /* NULL when not found */
    size_t len;
};

/* Read completion: when ok, entries[0..count-1] are entries first..last in
 * order and why is NULL; the array and the records are the store's, valid
 * during the callback only.  When memcached failed (down, timeout, skipped,
 * shutdown) ok is false, entries NULL, count 0 and why says what went
 * wrong: an entry on a failed server is unknown, not missing.  Called
 * exactly once per accepted call, on an I/O thread (or on mcstore_free()'s
 * thread for a job it drops). */
typedef void mcstore_log_read_cb(void *ctx, bool ok, const struct mcstore_log_entry *entries,
                                 size_t count, const char *why);

/* mcstore_log_read: fetch entries first..last (1 <= first <= last, at most
 * MCSTORE_LOG_READ_MAX of them) with one multi-get per server.  True when
 * queued (on the lookup queue): cb follows, exactly once.  False, and cb is
 * never called, when the range is invalid, the lookup queue is full
 * (counted) or memory runs out. */
bool mcstore_log_read(struct mcstore *st, uint64_t first, uint64_t last, mcstore_log_read_cb *cb,
                      void *ctx);

/* mcstore_item_expiry: the memcached expiry, in seconds from now, of obj's
 * items: the time left until its age passes lifetime plus the longer of
 * its stale windows (stale-while-revalidate, stale-if-error: one is used at
 * a time), plus slack_ms; rounded up, at least 1 second, at most
 * MCSTORE_MAX_EXPIRY_S (so memcached never reads it as an absolute time;
 * converting to one would depend on the memcached hosts' clocks). */
uint32_t mcstore_item_expiry(const struct cache_object *obj, int64_t now_ms, uint64_t slack_ms);

/* Per-server counters, one X-macro table so that stats output and docs read
 * the same list.  Lookups, hits, misses and decode errors are counted on the
 * server of the lookup's item 0; item writes and deletes on each item's
 * server; jobs dropped for a full queue on the server their item 0 maps to
 * when every server is up.  Purge log items count like items: a version
 * read or an entry read is a get (found: a hit; not found or not valid: a
 * miss), a version incr or add and an entry write are sets, each on the
 * item's own server; a dropped log job counts on the version's server (an
 * append or a version read) or on entry first's (a read). */
#define MCSTORE_SERVER_COUNTERS(X)                                                                 \
    X(gets, "lookups sent (item 0; purge log version and entries)")                                \
    X(hits, "lookups that found an object (or a purge log item)")                                  \
    X(vary_hits, "lookups that found a Vary index")                                                \
    X(misses, "lookups that found nothing usable (not found, chunk missing, bad value, expired)")  \
    X(missing_chunks, "chunked objects found with a chunk item missing (also misses)")             \
    X(decode_errors, "values that were not a valid item of their key (also misses)")               \
    X(sets, "items written (purge log: entries, version incr and add)")                            \
    X(deletes, "items deleted (objects, Vary indexes, locks)")                                     \
    X(locks, "lock attempts")                                                                      \
    X(locks_busy, "lock attempts that found the lock held")                                        \
    X(errors, "calls that failed (connection, timeout, server error)")                             \
    X(timeouts, "failed calls that timed out (also errors)")                                       \
    X(dropped_writes, "writes dropped because the write queue was full")                           \
    X(dropped_reads, "lookups, locks and purge log calls refused: the lookup queue was full")

struct mcstore_server_stats {
    char name[300]; /* "host:port", IPv6 in brackets */
    bool up;        /* false from a failure until the next answer */
#define MCSTORE_STATS_FIELD(name, doc) uint64_t name;
    MCSTORE_SERVER_COUNTERS(MCSTORE_STATS_FIELD)
#undef MCSTORE_STATS_FIELD
};

/* mcstore_stats: copy the counters of up to max servers, in config order,
 * into out[], and the number of servers into *n (which may exceed max).
 * Counters are monotonic since mcstore_new(); each is read atomically, the
 * set of them is not a snapshot. */
void mcstore_stats(struct mcstore *store, struct mcstore_server_stats *out, size_t max, size_t *n);

/* mcstore_pending: jobs queued and not yet taken by an I/O thread. */
size_t mcstore_pending(struct mcstore *store);

#endif
