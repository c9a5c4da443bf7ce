/*
 * proxy/purge.c: purging (see purge.h).
 *
 * The shared log: every sync_ms the purger asks memcached for the log's
 * version; when it is ahead of what this node applied, it reads the new
 * entries (256 at a time) and applies them in order.  memcached answers on
 * its I/O threads: each answer is queued here and the loop is woken with
 * an ev_async, so every decision runs on the purger's loop.
 *
 * Losing the log: memcached may evict an entry, or restart and lose the
 * version; a node that starts replays only the newest PURGE_LOG_REPLAY
 * entries.  A node cannot then know what it missed, so it bans everything
 * stored before the loss (memory and memcached copies alike: they come back
 * from the application) and goes on.
 * An entry that is missing for PURGE_LOG_MISSING_MS (the writer increments
 * the version before it writes the entry) counts as lost.
 */
#include "proxy/purge.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/log.h"

#define PURGE_LOG_MISSING_MS 5000
#define PURGE_LOG_READ_MAX 256
#define PURGE_EXPIRE_EVERY_MS 10000
#define PURGE_OWN_MAX 64
#define PURGE_ASK_TIMEOUT_MS 30000

enum answer_kind { ANSWER_VERSION, ANSWER_READ, ANSWER_APPEND };

/* One memcached answer, queued for the loop. */
struct answer {
    struct answer *next;
    enum answer_kind kind;
    bool ok;
    bool found;
    uint64_t number; /* version, or the appended entry's n */
    struct mcstore_log_entry *entries;
    size_t nentries;
    unsigned char *data; /* the entries' bytes */
};

struct purger {
    struct ev_loop *loop;
    struct cache_store *memory;
    struct mcstore *mc;
    struct ban_list *bans;
    uint64_t sync_ms;
    uint64_t ttl_slack_ms;
    ev_timer poll;
    ev_async wake;
    bool started;

    pthread_mutex_t lock; /* guards answers */
    struct answer *answers, **answers_tail;

    bool asking;           /* a version or read request is in flight */
    int64_t asked_at;      /* when it was asked (ms) */
    bool replay_floor;     /* entries before the replayed ones were skipped */
    bool replayed;         /* the first version was seen */
    uint64_t applied;      /* entries up to this one are applied */
    uint64_t last_version; /* the log's version last seen */
    int64_t missing_since; /* the next entry was missing since (ms), 0: not */
    uint64_t own[PURGE_OWN_MAX];
    unsigned nown;
    int64_t last_expire_ms;
    bool log_down_logged;

    _Atomic uint64_t purges, purged, bans_added, log_resets, log_version;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- sweeping ------------------------------------------------------------------- */

struct sweep {
    struct ban_list *bans;
    uint64_t marked;
};

static bool sweep_judge(void *ctx, struct cache_object *obj)
{
    struct sweep *s = ctx;
    bool was_soft = atomic_load(&obj->ban_soft);
    enum ban_verdict v = ban_check(s->bans, obj);
    if (v == BAN_STALE && !was_soft)
        s->marked++;
    return v == BAN_GONE;
}

/* Sweep memory with the bans; *oldest gets the oldest object kept. */
static uint64_t sweep_memory(struct purger *p, uint64_t *marked, int64_t *oldest)
{
    struct sweep s = {p->bans, 0};
    size_t n = cache_store_sweep(p->memory, sweep_judge, &s, oldest);
    if (marked)
        *marked = s.marked;
    atomic_fetch_add(&p->purged, n);
    return n;
}

/* Drop bans nothing can match any more. */
static void expire_bans(struct purger *p, int64_t now)
{
    int64_t oldest;
    sweep_memory(p, NULL, &oldest);
    int64_t limit = now - BAN_MIN_LIFETIME_MS;
    if (oldest < limit)
        limit = oldest;
    if (p->mc) {
        /* memcached keeps an item at most MCSTORE_MAX_EXPIRY_S plus the slack
         * (mcstore_item_expiry()). */
        int64_t mc_limit = now - (int64_t)MCSTORE_MAX_EXPIRY_S * 1000 - (int64_t)p->ttl_slack_ms;
        if (mc_limit < limit)
            limit = mc_limit;
    }
    size_t gone = ban_list_expire(p->bans, limit);
    if (gone)
        log_info("purge: %zu ban(s) expired, %zu active", gone, ban_list_count(p->bans));
    p->last_expire_ms = now;
}

/* ---- applying ------------------------------------------------------------------- */

/* Add spec's ban; with sweep, also sweep the memory store with it now
 * (callers adding several bans sweep once after the last). */
static bool apply(struct purger *p, const struct ban_spec *spec, struct purge_result *res,
                  bool sweep, char *err, size_t errlen)
{
    uint64_t id = ban_list_add(p->bans, spec, err, errlen);
    if (id == 0)
        return false;
    atomic_fetch_add(&p->bans_added, 1);
    atomic_fetch_add(&p->purges, 1);
    res->ban_id = id;
    if (spec->kind == BAN_ALL && !spec->soft) {
        struct cache_store_stats before;
        cache_store_stats(p->memory, &before);
        cache_store_purge_all(p->memory);
        res->removed = before.objects;
        atomic_fetch_add(&p->purged, before.objects);
        return true;
    }
    if (sweep)
        res->removed = sweep_memory(p, &res->marked, NULL);
    return true;
}

/* The log lost purges this node cannot know: every object stored before
 * `before_ms` may be one of them, in memory or in memcached.  A hard ban on
 * everything up to then drops the memory tier and keeps older memcached
 * copies from being served. */
static void ban_everything_before(struct purger *p, int64_t before_ms, const char *why)
{
    struct ban_spec all = {.kind = BAN_ALL, .time_ms = before_ms};
    struct purge_result res = {0};
    char err[64];
    log_warn("purge log: %s: everything stored before then is dropped to stay safe", why);
    apply(p, &all, &res, true, err, sizeof err);
    atomic_fetch_add(&p->log_resets, 1);
}

static bool is_own(struct purger *p, uint64_t n)
{
    for (unsigned i = 0; i < p->nown; i++) {
        if (p->own[i] == n) {
            p->own[i] = p->own[--p->nown];
            return true;
        }
    }
    return false;
}

/* Add the ban of log entry n (the caller sweeps once for a batch).
 * Returns whether a ban was added. */
static bool apply_entry(struct purger *p, uint64_t n, const void *data, size_t len)
{
    struct ban_spec spec;
    struct purge_result res = {0};
    char err[256];
    if (is_own(p, n))
        return false; /* applied when it was made */
    if (!ban_decode(data, len, &spec)) {
        ban_everything_before(p, now_ms(), "an entry is not a purge record");
        return false;
    }
    if (p->replay_floor) {
        /* The first entry replayed: older ones were skipped (more than
         * PURGE_LOG_REPLAY): objects stored before it may be theirs. */
        p->replay_floor = false;
        ban_everything_before(p, spec.time_ms, "older purges were not replayed");
    }
    if (!apply(p, &spec, &res, false, err, sizeof err)) {
        log_warn("purge log entry %llu (%s) not applied: %s", (unsigned long long)n,
                 ban_kind_name(spec.kind), err);
        return false;
    }
    log_info("purge log entry %llu: %s%s %.*s", (unsigned long long)n, spec.soft ? "soft " : "",
             ban_kind_name(spec.kind), (int)spec.pattern_len, spec.pattern ? spec.pattern : "");
    return true;
}

/* ---- memcached answers ------------------------------------------------------------ */

static void queue_answer(struct purger *p, struct answer *a)
{
    pthread_mutex_lock(&p->lock);
    *p->answers_tail = a;
    p->answers_tail = &a->next;
    pthread_mutex_unlock(&p->lock);
    ev_async_send(p->loop, &p->wake);
}

static void on_version(void *ctx, bool ok, bool found, uint64_t version, const char *why)
{
    (void)why;
    struct purger *p = ctx;
    struct answer *a = calloc(1, sizeof *a);
    if (!a)
        return; /* the next poll asks again */
    *a = (struct answer){.kind = ANSWER_VERSION, .ok = ok, .found = found, .number = version};
    queue_answer(p, a);
}

static void on_read(void *ctx, bool ok, const struct mcstore_log_entry *entries, size_t count,
                    const char *why)
{
    (void)why;
    struct purger *p = ctx;
    struct answer *a = calloc(1, sizeof *a);
    size_t total = 0;
    for (size_t i = 0; ok && i < count; i++)
        total += entries[i].found ? entries[i].len : 0;
    if (a) {
        a->kind = ANSWER_READ;
        a->ok = ok;
        a->entries = calloc(count ? count : 1, sizeof *a->entries);
        a->data = malloc(total ? total : 1);
    }
    if (!a || !a->entries || !a->data) {
        if (a) {
            free(a->entries);
            free(a->data);
            a->entries = NULL;
            a->data = NULL;
            a->ok = false;
            queue_answer(p, a); /* the loop must learn the read is over */
        }
        return;
    }
    size_t off = 0;
    for (size_t i = 0; ok && i < count; i++) {
        a->entries[i] = entries[i];
        if (entries[i].found) {
            memcpy(a->data + off, entries[i].data, entries[i].len);
            a->entries[i].data = a->data + off;
            off += entries[i].len;
        }
    }
    a->nentries = ok ? count : 0;
    queue_answer(p, a);
}

static void on_append(void *ctx, bool ok, uint64_t n, const char *why)
{
    struct purger *p = ctx;
    if (!ok)
        log_warn("purge log: the purge could not be shared (%s): it applies on this node only",
                 why ? why : "error");
    struct answer *a = calloc(1, sizeof *a);
    if (!a)
        return;
    *a = (struct answer){.kind = ANSWER_APPEND, .ok = ok, .number = n};
    queue_answer(p, a);
}

static void read_next(struct purger *p, uint64_t version)
{
    uint64_t first = p->applied + 1;
    uint64_t last = version;
    if (last - first + 1 > PURGE_LOG_READ_MAX)
        last = first + PURGE_LOG_READ_MAX - 1;
    p->asking = mcstore_log_read(p->mc, first, last, on_read, p);
    p->asked_at = now_ms();
}

static void handle_version(struct purger *p, const struct answer *a)
{
    p->asking = false;
    if (!a->ok) {
        if (!p->log_down_logged)
            log_warn("purge log: memcached does not answer: purges from other nodes wait");
        p->log_down_logged = true;
        return;
    }
    p->log_down_logged = false;
    uint64_t v = a->found ? a->number : 0;
    if (!p->replayed) {
        p->replayed = true;
        p->applied = v > PURGE_LOG_REPLAY ? v - PURGE_LOG_REPLAY : 0;
        p->replay_floor = p->applied > 0;
    } else if (v < p->applied) {
        ban_everything_before(p, now_ms(),
                              "the version went back (memcached restarted or evicted it)");
        p->applied = 0; /* entries 1..v are new purges: apply them */
    }
    p->last_version = v;
    atomic_store(&p->log_version, p->applied);
    if (v > p->applied)
        read_next(p, v);
}

static void handle_read(struct purger *p, const struct answer *a)
{
    p->asking = false;
    if (!a->ok)
        return;
    int64_t now = now_ms();
    size_t added = 0;
    for (size_t i = 0; i < a->nentries; i++) {
        const struct mcstore_log_entry *e = &a->entries[i];
        if (e->n != p->applied + 1)
            continue;
        if (!e->found) {
            if (p->missing_since == 0)
                p->missing_since = now;
            if (now - p->missing_since < PURGE_LOG_MISSING_MS)
                break; /* maybe not written yet: ask again next time */
            ban_everything_before(p, now, "an entry is missing (evicted)");
        } else if (apply_entry(p, e->n, e->data, e->len)) {
            added++;
        }
        p->missing_since = 0;
        p->applied = e->n;
    }
    if (added > 0) {
        uint64_t marked = 0;
        uint64_t removed = sweep_memory(p, &marked, NULL);
        log_info("purge log: %zu entries applied (up to %llu): %llu removed, %llu marked stale",
                 added, (unsigned long long)p->applied, (unsigned long long)removed,
                 (unsigned long long)marked);
    }
    atomic_store(&p->log_version, p->applied);
    if (p->applied < p->last_version && p->missing_since == 0)
        read_next(p, p->last_version);
}

static void answer_free(struct answer *a)
{
    free(a->entries);
    free(a->data);
    free(a);
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    struct purger *p = w->data;
    pthread_mutex_lock(&p->lock);
    struct answer *a = p->answers;
    p->answers = NULL;
    p->answers_tail = &p->answers;
    pthread_mutex_unlock(&p->lock);
    while (a) {
        struct answer *next = a->next;
        switch (a->kind) {
        case ANSWER_VERSION:
            handle_version(p, a);
            break;
        case ANSWER_READ:
            handle_read(p, a);
            break;
        case ANSWER_APPEND:
            if (a->ok && p->nown < PURGE_OWN_MAX && a->number > p->applied)
                p->own[p->nown++] = a->number;
            break;
        }
        answer_free(a);
        a = next;
    }
}

static void poll_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct purger *p = t->data;
    int64_t now = now_ms();
    if (now - p->last_expire_ms >= PURGE_EXPIRE_EVERY_MS)
        expire_bans(p, now);
    /* An answer lost to an allocation failure must not stop the polling. */
    if (p->asking && now - p->asked_at > PURGE_ASK_TIMEOUT_MS)
        p->asking = false;
    if (p->mc && !p->asking) {
        p->asking = mcstore_log_version(p->mc, on_version, p);
        p->asked_at = now;
    }
}

/* ---- the interface ------------------------------------------------------------------ */

struct purger *purger_new(struct ev_loop *loop, struct cache_store *memory, struct mcstore *mc,
                          uint64_t sync_ms, uint64_t ttl_slack_ms)
{
    struct purger *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->bans = ban_list_new();
    if (!p->bans || pthread_mutex_init(&p->lock, NULL) != 0) {
        ban_list_free(&p->bans);
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->memory = memory;
    p->mc = mc;
    p->sync_ms = sync_ms ? sync_ms : 1000;
    p->ttl_slack_ms = ttl_slack_ms;
    p->answers_tail = &p->answers;
    p->last_expire_ms = now_ms();
    double every = (double)p->sync_ms / 1000.0;
    ev_timer_init(&p->poll, poll_cb, 0.0, every);
    p->poll.data = p;
    ev_async_init(&p->wake, wake_cb);
    p->wake.data = p;
    return p;
}

void purger_start(struct purger *p)
{
    ev_async_start(p->loop, &p->wake);
    ev_timer_start(p->loop, &p->poll);
    p->started = true;
}

void purger_stop(struct purger *p)
{
    if (!p->started)
        return;
    ev_timer_stop(p->loop, &p->poll);
    ev_async_stop(p->loop, &p->wake);
    p->started = false;
}

void purger_free(struct purger **pp)
{
    struct purger *p = *pp;
    if (!p)
        return;
    struct answer *a = p->answers;
    while (a) {
        struct answer *next = a->next;
        answer_free(a);
        a = next;
    }
    pthread_mutex_destroy(&p->lock);
    ban_list_free(&p->bans);
    free(p);
    *pp = NULL;
}

struct ban_list *purger_bans(struct purger *p)
{
    return p->bans;
}

/* The next millisecond, reached before we answer: whatever was stored
 * until now is before it, whatever is stored after our answer is not
 * (objects are stamped with the real clock when their request began). */
static int64_t ban_time(void)
{
    int64_t t = now_ms() + 1;
    while (now_ms() < t) {
        struct timespec nap = {0, 100 * 1000};
        nanosleep(&nap, NULL);
    }
    return t;
}

/* Tell the other nodes (and delete a URL's own item). */
static bool share(struct purger *p, const struct ban_spec *spec)
{
    if (!p->mc)
        return false;
    if (spec->kind == BAN_KEY && !spec->soft)
        mcstore_delete(p->mc, spec->pattern, spec->pattern_len);
    unsigned char record[BAN_RECORD_MAX];
    size_t len = ban_encode(spec, record, sizeof record);
    bool queued =
        len > 0 && mcstore_log_append(p->mc, record, len, MCSTORE_MAX_EXPIRY_S, on_append, p);
    if (!queued)
        log_warn("purge log: the purge could not be queued for the other nodes");
    return queued;
}

bool purger_purge_many(struct purger *p, struct ban_spec *specs, size_t n, struct purge_result *res,
                       char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    int64_t t = 0;
    for (size_t i = 0; i < n; i++) {
        if (specs[i].time_ms == 0)
            specs[i].time_ms = t ? t : (t = ban_time());
        struct purge_result one = {0};
        if (!apply(p, &specs[i], &one, false, err, errlen))
            return false;
        res->ban_id = one.ban_id;
        res->removed += one.removed; /* BAN_ALL empties memory at once */
    }
    uint64_t marked = 0;
    res->removed += sweep_memory(p, &marked, NULL);
    res->marked = marked;
    res->shared = p->mc != NULL;
    for (size_t i = 0; i < n; i++)
        res->shared &= share(p, &specs[i]);
    return true;
}

void purger_totals(struct purger *p, struct stats_purge_totals *out)
{
    out->purges = atomic_load(&p->purges);
    out->purged = atomic_load(&p->purged);
    out->bans_active = ban_list_count(p->bans);
    out->bans_added = atomic_load(&p->bans_added);
    out->log_version = atomic_load(&p->log_version);
    out->log_resets = atomic_load(&p->log_resets);
}
