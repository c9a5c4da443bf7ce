/*
 * proxy/coalesce.c: the in-flight fill table and the workers' inboxes (see
 * coalesce.h).
 *
 * The table is COALESCE_SHARDS chains keyed by the key's hash, one mutex
 * each.  An entry is either a fill in progress (with its waiters) or a
 * hit-for-miss mark that expires; expired marks are swept from a chain
 * whenever the chain is walked, so the table holds only live fills and marks
 * younger than their window.
 *
 * A waiter moves WAITING (in an entry's list, under the shard lock) ->
 * QUEUED (in its worker's inbox, under the inbox lock; the move happens with
 * both held) -> IDLE (taken out by its own worker, which then calls wake).
 * Only the owning worker takes a waiter out of its inbox, so a cancel that
 * finds it QUEUED can unlink it safely.
 */
#include "proxy/coalesce.h"

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/worker.h"

#define COALESCE_SHARDS 256

struct coalesce_entry {
    struct coalesce_entry *next;
    uint64_t hash;
    char *key;
    size_t len;
    bool filling;
    int64_t hfm_until;
    struct coalesce_waiter *waiters; /* doubly linked */
};

struct shard {
    pthread_mutex_t lock;
    struct coalesce_entry *head;
};

struct coalesce_inbox {
    pthread_mutex_t lock;
    struct coalesce_waiter *head;
    struct coalesce_waiter *tail;
};

static struct shard shards[COALESCE_SHARDS];
static atomic_uint waiting;

static struct shard *shard_of(uint64_t hash)
{
    return &shards[hash % COALESCE_SHARDS];
}

bool coalesce_init(void)
{
    for (size_t i = 0; i < COALESCE_SHARDS; i++) {
        if (pthread_mutex_init(&shards[i].lock, NULL) != 0)
            return false;
        shards[i].head = NULL;
    }
    return true;
}

static void entry_free(struct coalesce_entry *e)
{
    free(e->key);
    free(e);
}

void coalesce_shutdown(void)
{
    for (size_t i = 0; i < COALESCE_SHARDS; i++) {
        struct coalesce_entry *e = shards[i].head;
        while (e) {
            struct coalesce_entry *next = e->next;
            entry_free(e);
            e = next;
        }
        shards[i].head = NULL;
        pthread_mutex_destroy(&shards[i].lock);
    }
}

/* Find the entry for key, dropping expired hit-for-miss marks on the way.
 * Shard lock held. */
static struct coalesce_entry *shard_find(struct shard *s, const char *key, size_t len,
                                         uint64_t hash, int64_t now_ms)
{
    struct coalesce_entry **pp = &s->head;
    struct coalesce_entry *found = NULL;
    while (*pp) {
        struct coalesce_entry *e = *pp;
        if (!e->filling && e->hfm_until <= now_ms) {
            *pp = e->next;
            entry_free(e);
            continue;
        }
        if (!found && e->hash == hash && e->len == len && memcmp(e->key, key, len) == 0)
            found = e;
        pp = &e->next;
    }
    return found;
}

static void waiter_push(struct coalesce_entry *e, struct coalesce_waiter *w)
{
    w->prev = NULL;
    w->next = e->waiters;
    if (e->waiters)
        e->waiters->prev = w;
    e->waiters = w;
    w->entry = e;
    w->hash = e->hash;
    w->state = CW_WAITING;
    atomic_fetch_add(&waiting, 1);
}

enum coalesce_role coalesce_join(const char *key, size_t len, uint64_t hash,
                                 struct coalesce_waiter *waiter, int64_t now_ms)
{
    struct shard *s = shard_of(hash);
    enum coalesce_role role = COALESCE_FILLER;
    pthread_mutex_lock(&s->lock);
    struct coalesce_entry *e = shard_find(s, key, len, hash, now_ms);
    if (e && e->filling) {
        waiter_push(e, waiter);
        role = COALESCE_WAITER;
    } else if (e) {
        role = COALESCE_BYPASS;
    } else {
        e = calloc(1, sizeof *e);
        char *copy = malloc(len ? len : 1);
        if (!e || !copy) {
            free(e);
            free(copy);
            role = COALESCE_BYPASS; /* out of memory: just do not coalesce */
        } else {
            memcpy(copy, key, len);
            e->key = copy;
            e->len = len;
            e->hash = hash;
            e->filling = true;
            e->next = s->head;
            s->head = e;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return role;
}

static void inbox_push(struct coalesce_inbox *in, struct coalesce_waiter *w)
{
    w->next = NULL;
    w->prev = in->tail;
    if (in->tail)
        in->tail->next = w;
    else
        in->head = w;
    in->tail = w;
}

static void inbox_unlink(struct coalesce_inbox *in, struct coalesce_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        in->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        in->tail = w->prev;
    w->next = w->prev = NULL;
}

void coalesce_fill_done(const char *key, size_t len, uint64_t hash, enum coalesce_outcome outcome,
                        int64_t now_ms, int64_t hfm_ms)
{
    struct shard *s = shard_of(hash);
    pthread_mutex_lock(&s->lock);
    struct coalesce_entry *e = shard_find(s, key, len, hash, now_ms);
    if (!e || !e->filling) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    struct coalesce_waiter *w = e->waiters;
    e->waiters = NULL;
    if (outcome == COALESCE_NOT_STORED && hfm_ms > 0) {
        e->filling = false;
        e->hfm_until = now_ms + hfm_ms;
    } else {
        struct coalesce_entry **pp = &s->head;
        while (*pp != e)
            pp = &(*pp)->next;
        *pp = e->next;
        entry_free(e);
    }
    while (w) {
        struct coalesce_waiter *next = w->next;
        struct coalesce_inbox *in = w->worker->inbox;
        pthread_mutex_lock(&in->lock);
        w->entry = NULL;
        w->outcome = outcome;
        w->state = CW_QUEUED;
        inbox_push(in, w);
        pthread_mutex_unlock(&in->lock);
        atomic_fetch_sub(&waiting, 1);
        ev_async_send(w->worker->loop, &w->worker->wake);
        w = next;
    }
    pthread_mutex_unlock(&s->lock);
}

void coalesce_cancel(struct coalesce_waiter *w)
{
    if (w->state == CW_IDLE)
        return;
    /* The state and entry are read under the shard lock: a filler on
     * another thread may be moving this waiter to its inbox right now. */
    struct shard *s = shard_of(w->hash);
    pthread_mutex_lock(&s->lock);
    if (w->state == CW_WAITING) {
        struct coalesce_entry *e = w->entry;
        if (w->prev)
            w->prev->next = w->next;
        else
            e->waiters = w->next;
        if (w->next)
            w->next->prev = w->prev;
        w->next = w->prev = NULL;
        w->entry = NULL;
        w->state = CW_IDLE;
        atomic_fetch_sub(&waiting, 1);
    }
    pthread_mutex_unlock(&s->lock);
    if (w->state == CW_QUEUED) {
        struct coalesce_inbox *in = w->worker->inbox;
        pthread_mutex_lock(&in->lock);
        inbox_unlink(in, w);
        w->state = CW_IDLE;
        pthread_mutex_unlock(&in->lock);
    }
}

void coalesce_inbox_drain(struct worker *worker)
{
    struct coalesce_inbox *in = worker->inbox;
    for (;;) {
        pthread_mutex_lock(&in->lock);
        struct coalesce_waiter *w = in->head;
        if (w) {
            inbox_unlink(in, w);
            w->state = CW_IDLE;
        }
        pthread_mutex_unlock(&in->lock);
        if (!w)
            return;
        w->wake(w, w->outcome);
    }
}

bool coalesce_inbox_init(struct worker *w)
{
    struct coalesce_inbox *in = calloc(1, sizeof *in);
    if (!in || pthread_mutex_init(&in->lock, NULL) != 0) {
        free(in);
        return false;
    }
    w->inbox = in;
    return true;
}

void coalesce_inbox_free(struct worker *w)
{
    if (!w->inbox)
        return;
    pthread_mutex_destroy(&w->inbox->lock);
    free(w->inbox);
    w->inbox = NULL;
}

unsigned coalesce_waiting(void)
{
    return atomic_load(&waiting);
}
