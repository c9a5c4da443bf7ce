/*
 * proxy/coalesce.h: request coalescing across every worker.
 *
 * While one request fills the cache for a key (fetches it from the
 * upstream), other requests for the same key, on any worker, wait for that
 * fill instead of going to the upstream themselves.  When the fill ends, each
 * waiter is woken on its own worker's loop (through the worker's inbox and
 * ev_async) with the outcome:
 *   COALESCE_STORED      the object is in the store: look it up again;
 *   COALESCE_NOT_STORED  the response could not be shared (private,
 *                        Set-Cookie, too big...): go to the upstream alone;
 *                        the key is remembered as hit-for-miss for a while,
 *                        so the next burst does not queue behind a fill that
 *                        will not be shared either;
 *   COALESCE_FAILED      the fill broke (upstream error, client gone): try
 *                        again (one of the waiters becomes the new filler).
 *
 * Ownership: a waiter is embedded in its owner (a client connection) and
 * lives on the owner's worker.  coalesce_cancel() must be called before the
 * owner is freed if the waiter may still be registered; afterwards no wake
 * callback will run for it.  Keys are copied.
 *
 * Locking: the table is sharded by key hash, a mutex per shard; each
 * worker's inbox has its own mutex.  Lock order: shard, then inbox.
 */
#ifndef TESSERA_COALESCE_H
#define TESSERA_COALESCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct worker;
struct coalesce_entry;

enum coalesce_outcome { COALESCE_STORED, COALESCE_NOT_STORED, COALESCE_FAILED };

enum coalesce_waiter_state { CW_IDLE, CW_WAITING, CW_QUEUED };

struct coalesce_waiter {
    struct coalesce_waiter *next; /* in the entry's list, then in an inbox */
    struct coalesce_waiter *prev;
    struct worker *worker;
    struct coalesce_entry *entry; /* while waiting */
    uint64_t hash;                /* of the key waited for */
    enum coalesce_waiter_state state;
    enum coalesce_outcome outcome;
    /* Runs on the waiter's worker, after it left every list. */
    void (*wake)(struct coalesce_waiter *waiter, enum coalesce_outcome outcome);
};

/* What coalesce_join() made of the caller. */
enum coalesce_role {
    COALESCE_FILLER, /* nobody fills this key: the caller does, and must
                      * call coalesce_fill_done() */
    COALESCE_WAITER, /* another request fills it: wait for the wake */
    COALESCE_BYPASS, /* hit-for-miss: go to the upstream, not a filler */
};

/* coalesce_init / coalesce_shutdown: the process-wide table.  Main thread,
 * before workers start and after they stopped. */
bool coalesce_init(void);
void coalesce_shutdown(void);

/* coalesce_join: for a cache miss on key: become the filler, a waiter
 * (waiter->worker and waiter->wake must be set) or bypass.  now_ms is the
 * caller's clock, for hit-for-miss expiry. */
enum coalesce_role coalesce_join(const char *key, size_t len, uint64_t hash,
                                 struct coalesce_waiter *waiter, int64_t now_ms);

/* coalesce_fill_done: the filler's fill ended.  Wakes every waiter with the
 * outcome; NOT_STORED marks the key hit-for-miss until now_ms + hfm_ms. */
void coalesce_fill_done(const char *key, size_t len, uint64_t hash, enum coalesce_outcome outcome,
                        int64_t now_ms, int64_t hfm_ms);

/* coalesce_cancel: take a waiter out (timeout, client gone).  Worker
 * thread of the waiter.  No-op when it is not registered. */
void coalesce_cancel(struct coalesce_waiter *waiter);

/* coalesce_inbox_drain: run the wake callbacks queued for worker w.  Worker
 * thread of w (from its ev_async callback). */
void coalesce_inbox_drain(struct worker *w);

/* coalesce_inbox_init / _free: per-worker inbox state (worker.c). */
bool coalesce_inbox_init(struct worker *w);
void coalesce_inbox_free(struct worker *w);

/* coalesce_waiting: waiters registered now, all keys (for stats and tests). */
unsigned coalesce_waiting(void);

#endif
