/*
 * proxy/worker.c: worker threads (see worker.h).
 *
 * Each worker runs one libev loop.  Watchers per worker: one ev_io per
 * listening socket, the ev_async the main thread pokes (new config,
 * drain), an ev_idle that frees connections closed during the iteration,
 * and the drain deadline timer.
 *
 * Locking: the main thread writes pending_cfg and drain_requested (atomics)
 * and then calls ev_async_send; everything else is private to the worker.
 * The only shared counter is the process-wide number of client connections.
 */
#include "proxy/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/client.h"
#include "proxy/coalesce.h"
#include "proxy/mailbox.h"
#include "proxy/revalidate.h"
#include "proxy/http.h"
#include "proxy/log.h"
#include "proxy/router.h"
#include "proxy/upstream.h"

#define ACCEPT_BUDGET                                                                              \
    64 /* connections accepted per wake-up, so one busy listener cannot starve the loop */

static atomic_uint connections;

/* Per worker thread: connections closed during this loop iteration wait
 * here until the prepare watcher frees them at the start of the next one,
 * after every callback that might still hold a pointer has returned.  (Not
 * an idle watcher: under steady load the loop is never idle, and ESI
 * subrequests close by the thousand.) */
struct worker_private {
    ev_prepare reaper;
    struct client *dead;
};

static __thread struct worker_private *self;

unsigned worker_connections(void)
{
    return atomic_load(&connections);
}

/* ---- config generations -------------------------------------------------- */

static struct wcfg *wcfg_new(struct worker *w, struct config *cfg)
{
    struct wcfg *wc = calloc(1, sizeof *wc);
    if (!wc)
        return NULL;
    wc->refs = 1;
    wc->cfg = config_ref(cfg);
    wc->backends = calloc(cfg->nbackends ? cfg->nbackends : 1, sizeof *wc->backends);
    if (!wc->backends)
        goto fail;
    for (size_t i = 0; i < cfg->nbackends; i++)
        if (!upstream_backend_rt_init(w, &wc->backends[i], &cfg->backends[i]))
            goto fail;
    stats_config_view(cfg, w->id, &wc->stats); /* none: nothing is counted per route */
    return wc;
fail:
    wcfg_release(&wc);
    return NULL;
}

struct wcfg *wcfg_ref(struct wcfg *wc)
{
    wc->refs++;
    return wc;
}

void wcfg_release(struct wcfg **wcp)
{
    struct wcfg *wc = *wcp;
    *wcp = NULL;
    if (!wc || --wc->refs > 0)
        return;
    if (wc->backends)
        for (size_t i = 0; i < wc->cfg->nbackends; i++)
            upstream_backend_rt_free(&wc->backends[i]);
    free(wc->backends);
    config_release(&wc->cfg);
    free(wc);
}

static void adopt_config(struct worker *w, struct config *cfg)
{
    struct wcfg *wc = wcfg_new(w, cfg);
    config_release(&cfg);
    if (!wc) {
        log_error("worker %u: out of memory adopting the new config; keeping the old one", w->id);
        return;
    }
    wcfg_release(&w->wcfg);
    w->wcfg = wc;
}

/* ---- dates ---------------------------------------------------------------- */

const char *worker_date(struct worker *w)
{
    time_t now = (time_t)ev_now(w->loop);
    if (now != w->date_sec) {
        http_date_format(now, w->date);
        w->date_sec = now;
    }
    return w->date;
}

/* ---- connections ---------------------------------------------------------- */

void worker_client_opened(struct worker *w, struct client *c)
{
    client_link(&w->clients, c);
    w->nclients++;
    if (client_is_subrequest(c))
        return; /* not a connection */
    atomic_fetch_add(&connections, 1);
    stats_add(&w->stats.connections_accepted, 1);
}

void worker_client_closed(struct worker *w, struct client *c)
{
    client_unlink(&w->clients, c);
    w->nclients--;
    if (!client_is_subrequest(c)) {
        atomic_fetch_sub(&connections, 1);
        stats_add(&w->stats.connections_closed, 1);
    }
    client_link(&self->dead, c);
    ev_prepare_start(w->loop, &self->reaper);
}

static void reaper_cb(struct ev_loop *loop, ev_prepare *prep, int revents)
{
    (void)revents;
    struct worker *w = prep->data;
    ev_prepare_stop(loop, prep);
    while (self->dead) {
        struct client *c = self->dead;
        client_unlink(&self->dead, c);
        client_destroy(c);
    }
    if (w->draining && w->nclients == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct listener *l = io->data;
    for (int i = 0; i < ACCEPT_BUDGET; i++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        int fd = accept4(l->fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                log_error("accept: %s", strerror(errno));
            return; /* EAGAIN, or another worker took it */
        }
        client_accept(l->worker, fd, (struct sockaddr *)&addr, len);
    }
}

/* ---- draining ------------------------------------------------------------- */

static void drain_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = t->data;
    log_warn("worker %u: drain timeout: closing %u connection(s) still open", w->id, w->nclients);
    ev_break(loop, EVBREAK_ALL);
}

static void start_draining(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    for (size_t i = 0; i < w->nlisteners; i++) {
        ev_io_stop(w->loop, &w->listeners[i].io);
        close(w->listeners[i].fd);
        w->listeners[i].fd = -1;
    }
    struct client *c = w->clients;
    while (c) {
        struct client *next = client_next(c);
        client_drain(c);
        c = next;
    }
    ev_timer_init(&w->drain_timer, drain_timeout_cb,
                  (ev_tstamp)w->wcfg->cfg->drain_timeout_ms / 1000.0, 0);
    w->drain_timer.data = w;
    ev_timer_start(w->loop, &w->drain_timer);
    /* Let the reaper see an empty worker even when nothing else happens. */
    ev_prepare_start(w->loop, &self->reaper);
}

static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = a->data;
    struct config *cfg = atomic_exchange(&w->pending_cfg, NULL);
    if (cfg)
        adopt_config(w, cfg);
    coalesce_inbox_drain(w);
    mailbox_drain(w);
    if (atomic_load(&w->drain_requested))
        start_draining(w);
}

/* ---- the thread ----------------------------------------------------------- */

static void worker_cleanup(struct worker *w)
{
    while (w->clients)
        worker_client_closed(w, w->clients);
    while (self->dead) {
        struct client *c = self->dead;
        client_unlink(&self->dead, c);
        client_destroy(c);
    }
    revalidate_shutdown(w);
    upstream_pools_free(w);
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i].fd >= 0)
            close(w->listeners[i].fd);
    router_thread_cleanup();
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct worker_private priv = {0};
    self = &priv;
    ev_prepare_init(&priv.reaper, reaper_cb);
    priv.reaper.data = w;
    ev_run(w->loop, 0);
    worker_cleanup(w);
    ev_prepare_stop(w->loop, &priv.reaper);
    self = NULL;
    return NULL;
}

bool worker_start(struct worker *w, unsigned id, struct config *cfg, struct cache_store *store,
                  struct mcstore *mcstore, struct ban_list *bans, const int *fds, size_t nfds,
                  char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->id = id;
    w->store = store;
    w->mcstore = mcstore;
    w->bans = bans;
    if (!coalesce_inbox_init(w) || !mailbox_init(w)) {
        snprintf(err, errlen, "worker %u: out of memory", id);
        coalesce_inbox_free(w);
        mailbox_free(w);
        return false;
    }
    w->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOSIGMASK);
    if (!w->loop) {
        snprintf(err, errlen, "worker %u: cannot create an event loop", id);
        coalesce_inbox_free(w);
        mailbox_free(w);
        return false;
    }
    w->wcfg = wcfg_new(w, cfg);
    w->listeners = calloc(nfds ? nfds : 1, sizeof *w->listeners);
    if (!w->wcfg || !w->listeners) {
        snprintf(err, errlen, "worker %u: out of memory", id);
        goto fail;
    }
    w->nlisteners = nfds;
    for (size_t i = 0; i < nfds; i++) {
        struct listener *l = &w->listeners[i];
        l->fd = fds[i];
        l->worker = w;
        ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
        l->io.data = l;
        ev_io_start(w->loop, &l->io);
    }
    ev_async_init(&w->wake, wake_cb);
    w->wake.data = w;
    ev_async_start(w->loop, &w->wake);
    ev_set_userdata(w->loop, w);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        snprintf(err, errlen, "worker %u: cannot start a thread: %s", id, strerror(rc));
        goto fail;
    }
    return true;
fail:
    /* The caller still owns (and closes) the sockets on failure. */
    free(w->listeners);
    w->listeners = NULL;
    w->nlisteners = 0;
    if (w->wcfg) {
        /* No pools exist yet beyond those wcfg_new made. */
        wcfg_release(&w->wcfg);
        upstream_pools_free(w);
    }
    ev_loop_destroy(w->loop);
    w->loop = NULL;
    coalesce_inbox_free(w);
    mailbox_free(w);
    return false;
}

void worker_set_config(struct worker *w, struct config *cfg)
{
    struct config *old = atomic_exchange(&w->pending_cfg, config_ref(cfg));
    config_release(&old);
    ev_async_send(w->loop, &w->wake);
}

void worker_drain(struct worker *w)
{
    atomic_store(&w->drain_requested, true);
    ev_async_send(w->loop, &w->wake);
}

void worker_join(struct worker *w)
{
    pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
    struct config *pending = atomic_exchange(&w->pending_cfg, NULL);
    config_release(&pending);
    wcfg_release(&w->wcfg);
    ev_async_stop(w->loop, &w->wake);
    ev_loop_destroy(w->loop);
    free(w->listeners);
    coalesce_inbox_free(w);
    mailbox_free(w);
    memset(w, 0, sizeof *w);
}
