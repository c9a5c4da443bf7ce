/*
 * proxy/cachetier.c: the cache path's two tiers (see cachepath_priv.h):
 * where a route stores, and the memcached side of a request: gets, the
 * cluster lock, polling for another node's fill, the hand-off of answers
 * from the I/O threads to the request's worker.
 */
#include "proxy/cachepath_priv.h"

#include <stdlib.h>

#include "cache/store.h"
#include "proxy/mailbox.h"

bool cachetier_memory(const struct config_cache_policy *p)
{
    return p->store != STORE_TIER_MEMCACHED;
}

bool cachetier_memcached(const struct config_cache_policy *p, const struct worker *w)
{
    return p->store != STORE_TIER_MEMORY && w->mcstore;
}

/* A memcached lookup in flight.  Its answer comes on an I/O thread and is
 * posted to the request's worker; a request that goes away first only
 * unhooks itself (cr NULL) and the job is freed when it arrives. */
struct mc_job {
    struct mail mail;
    struct worker *w;
    struct cache_req *cr;
    struct mcstore_get_result res;
    bool is_lock;
    bool acquired;
};

/* Polling for an object another node fetches: doubling up to this gap. */
#define CLUSTER_POLL_MAX_MS 400

void cachetier_result_release(struct mcstore_get_result *res)
{
    cache_object_release(&res->obj);
    free(res->vary);
    res->vary = NULL;
}

static void mc_job_drop(struct mail *m)
{
    struct mc_job *job = (struct mc_job *)m;
    cachetier_result_release(&job->res);
    free(job);
}

static void mc_job_deliver(struct mail *m)
{
    struct mc_job *job = (struct mc_job *)m;
    struct cache_req *cr = job->cr;
    if (!cr) {
        mc_job_drop(m);
        return;
    }
    cr->mc = NULL;
    if (job->is_lock) {
        cr->cluster = job->acquired ? CLUSTER_ACQUIRED : CLUSTER_BUSY;
        free(job);
        cr->on_remote(cr);
        return;
    }
    cr->remote_res = malloc(sizeof *cr->remote_res);
    if (cr->remote_res) {
        *cr->remote_res = job->res;
        free(job);
    } else {
        mc_job_drop(m);
    }
    cr->on_remote(cr);
}

/* On an I/O thread. */
static void mc_get_done(void *ctx, struct mcstore_get_result *res)
{
    struct mc_job *job = ctx;
    job->res = *res;
    mailbox_post(job->w, &job->mail);
}

/* On an I/O thread. */
static void mc_lock_done(void *ctx, bool acquired, const char *why)
{
    struct mc_job *job = ctx;
    (void)why; /* fails open: acquired is true when memcached failed */
    job->acquired = acquired;
    mailbox_post(job->w, &job->mail);
}

/* Coalescing across nodes: take the key's lock item before fetching. */
bool cachetier_lock(struct cache_req *cr, struct worker *w, int64_t now_ms)
{
    struct mc_job *job = calloc(1, sizeof *job);
    if (!job)
        return false;
    job->mail.deliver = mc_job_deliver;
    job->mail.drop = mc_job_drop;
    job->w = w;
    job->cr = cr;
    job->is_lock = true;
    if (!mcstore_lock(w->mcstore, cr->key, cr->key_len, cr->policy->coalesce_timeout_ms,
                      mc_lock_done, job)) {
        free(job);
        return false;
    }
    cr->mc = job;
    cr->remote = true;
    cr->cluster = CLUSTER_ASKED;
    cr->remote_until_ms = now_ms + (int64_t)cr->policy->coalesce_timeout_ms;
    return true;
}

void cachetier_unlock(struct cache_req *cr)
{
    if (cr->cluster_store)
        mcstore_unlock(cr->cluster_store, cr->key, cr->key_len);
    cr->cluster_store = NULL;
}

/* Wait before asking memcached again for the object another node is
 * fetching (the client's timer calls back with timed_out). */
enum cache_lookup_result cachetier_poll_later(struct cache_req *cr, int64_t now_ms)
{
    if (now_ms >= cr->cluster_until_ms) {
        cr->polling = false; /* the other node took too long: fetch it ourselves */
        cr->detail = "cluster-timeout";
        return CACHE_LOOKUP_MISS;
    }
    cr->polling = true;
    cr->remote = true;
    cr->remote_until_ms = now_ms + cr->poll_gap_ms;
    if (cr->remote_until_ms > cr->cluster_until_ms)
        cr->remote_until_ms = cr->cluster_until_ms;
    cr->poll_gap_ms =
        cr->poll_gap_ms * 2 > CLUSTER_POLL_MAX_MS ? CLUSTER_POLL_MAX_MS : cr->poll_gap_ms * 2;
    return CACHE_LOOKUP_REMOTE;
}

bool cachetier_get(struct cache_req *cr, struct worker *w, const char *secondary, size_t slen,
                   int64_t now_ms)
{
    struct mc_job *job = calloc(1, sizeof *job);
    if (!job)
        return false;
    job->mail.deliver = mc_job_deliver;
    job->mail.drop = mc_job_drop;
    job->w = w;
    job->cr = cr;
    if (!mcstore_get(w->mcstore, cr->key, cr->key_len, cr->hash, secondary, slen, now_ms,
                     mc_get_done, job)) {
        free(job);
        return false;
    }
    cr->mc = job;
    cr->remote = true;
    cr->remote_until_ms = now_ms + (int64_t)cr->policy->coalesce_timeout_ms;
    return true;
}

void cachetier_cancel(struct cache_req *cr)
{
    if (cr->mc)
        cr->mc->cr = NULL;
    cr->mc = NULL;
    cr->remote = false;
}

void cachetier_free_result(struct cache_req *cr)
{
    if (!cr->remote_res)
        return;
    cachetier_result_release(cr->remote_res);
    free(cr->remote_res);
    cr->remote_res = NULL;
}

/* Drop a key from the route's tiers (memcached: in the background). */
size_t cachetier_remove(const struct config_cache_policy *p, struct worker *w, const char *key,
                        size_t len, uint64_t hash)
{
    size_t gone = cache_store_remove(w->store, key, len, hash);
    if (cachetier_memcached(p, w))
        mcstore_delete(w->mcstore, key, len);
    return gone;
}

/* Store a complete object in the route's tiers.  True when any took it. */
bool cachetier_store(struct cache_req *cr, struct worker *w, struct cache_object *obj,
                     int64_t now_ms)
{
    bool stored = false;
    if (cachetier_memory(cr->policy))
        stored |= cache_store_insert(w->store, obj, cr->policy->max_variants);
    if (cachetier_memcached(cr->policy, w))
        stored |= mcstore_set(w->mcstore, obj, now_ms);
    return stored;
}
