/*
 * proxy/worker.h: worker threads, each with its own libev loop.
 *
 * A worker owns everything it touches on the data path: its listening
 * sockets (one SO_REUSEPORT socket per `listen`, opened by the main thread),
 * its client connections, its upstream keep-alive pools and its cached Date
 * string.  The only cross-thread traffic is from the main thread: a new
 * config to adopt and the order to drain, both delivered through an
 * ev_async.  Signals are blocked in workers; the main thread watches them.
 */
#ifndef TESSERA_WORKER_H
#define TESSERA_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "config/config.h"
#include "proxy/stats.h"

struct upstream_pool;
struct client;
struct coalesce_inbox;
struct cache_store;
struct mailbox;
struct mcstore;
struct ban_list;

/* Per-worker, per-config runtime state of one backend: the smooth weighted
 * round-robin weights and the pool of each server. */
struct backend_rt {
    const struct config_backend *backend;
    int *current;                 /* [nservers] smooth WRR state */
    struct upstream_pool **pools; /* [nservers] */
};

/* A worker's view of one config generation.  Requests hold a reference for
 * their whole life, so a reload never changes a request's routes or
 * backends half-way.  Single-threaded refcount: only its worker touches it. */
struct wcfg {
    unsigned refs;
    struct config *cfg;
    struct backend_rt *backends; /* [cfg->nbackends] */
    struct stats_worker stats;   /* routes/backends: this worker's counters in cfg
                                  * (proxy/stats.h); worker-wide counters unused */
};

struct listener {
    ev_io io;
    int fd;
    struct worker *worker;
};

struct worker {
    unsigned id;
    pthread_t thread;
    struct ev_loop *loop;
    ev_async wake;
    struct wcfg *wcfg; /* current generation; new requests take it */

    _Atomic(struct config *) pending_cfg; /* from the main thread */
    atomic_bool drain_requested;
    bool draining;
    ev_timer drain_timer;

    struct listener *listeners;
    size_t nlisteners;

    struct client *clients; /* every open client connection */
    unsigned nclients;
    struct upstream_pool *pools;

    struct coalesce_inbox *inbox; /* wake-ups from fills on other workers */
    struct cache_store *store;    /* the process's memory store (shared) */
    struct mcstore *mcstore;      /* the memcached tier (shared), NULL when none */
    void *revalidations;          /* background fetches (proxy/revalidate.c) */
    struct mailbox *mailbox;      /* completions from other threads (proxy/mailbox.c) */
    struct ban_list *bans;        /* purges (proxy/purge.h), checked on every object served */
    struct stats_worker stats;    /* worker-wide counters (proxy/stats.h) */

    char date[30]; /* IMF-fixdate of date_sec */
    time_t date_sec;
};

/* worker_start: start a worker thread serving cfg (a reference is taken)
 * on the given listening sockets (the worker owns and closes them), with
 * the shared cache stores (not owned; mcstore may be NULL).  Returns false
 * with err set when the
 * thread cannot be created. */
bool worker_start(struct worker *w, unsigned id, struct config *cfg, struct cache_store *store,
                  struct mcstore *mcstore, struct ban_list *bans, const int *fds, size_t nfds,
                  char *err, size_t errlen);

/* worker_set_config: hand the worker a new config (a reference is taken).
 * Main thread.  The worker adopts it at its next loop iteration. */
void worker_set_config(struct worker *w, struct config *cfg);

/* worker_drain: ask the worker to stop accepting, finish what is in flight
 * (up to the config's drain_timeout) and exit its loop.  Main thread. */
void worker_drain(struct worker *w);

/* worker_join: wait for the thread to exit.  The worker's state stays (its
 * mailbox may still get mail from the memcached tier's shutdown) until
 * worker_free(). */
void worker_join(struct worker *w);

/* worker_free: free the state of a joined worker. */
void worker_free(struct worker *w);

/* worker_date: the current IMF-fixdate, cached per second. */
const char *worker_date(struct worker *w);

/* wcfg_ref / wcfg_release: take or drop a reference to a config view.
 * Worker thread only. */
struct wcfg *wcfg_ref(struct wcfg *wc);
void wcfg_release(struct wcfg **wcp);

/* worker_connections: client connections open in all workers now. */
unsigned worker_connections(void);

/* Called by client.c: a client connection opened or closed. */
void worker_client_opened(struct worker *w, struct client *c);
void worker_client_closed(struct worker *w, struct client *c);

#endif
