/*
 * proxy/main.c: the tessera process: command line, start-up, signals.
 *
 * The main thread loads the config, opens the logs and the listening
 * sockets, starts the workers and then only watches signals on libev's
 * default loop (workers block them, DESIGN.md):
 *   SIGHUP   reload the config; a bad one is logged and the old one stays
 *   SIGTERM, SIGINT   drain (stop accepting, finish in flight) and exit 0
 *   SIGUSR1  reopen the log files
 */
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/mcstore.h"
#include "cache/memstore.h"
#include "config/config.h"
#include "proxy/admin.h"
#include "proxy/adminclient.h"
#include "proxy/cachepath.h"
#include "proxy/coalesce.h"
#include "proxy/listener.h"
#include "proxy/log.h"
#include "proxy/stats.h"
#include "proxy/worker.h"

#ifndef TESSERA_VERSION
#define TESSERA_VERSION "0.1.0"
#endif
#ifndef TESSERA_DEFAULT_CONF
#define TESSERA_DEFAULT_CONF "/etc/tessera/tessera.conf"
#endif

struct tessera {
    struct config *cfg;
    struct cache_store *store; /* the memory tier, shared by every worker */
    struct mcstore *mcstore;   /* the memcached tier, NULL when not configured */
    struct admin *admin;       /* the admin thread: purges, stats, the admin listener */
    struct worker *workers;
    unsigned nworkers;
    bool stopping;
};

static void usage(FILE *out)
{
    fprintf(out, "usage: tessera [-c FILE] [-t] [-h] [-V]\n"
                 "       tessera purge [-c FILE] [--soft] URL | --prefix P | --regex R |"
                 " --tag T | --all\n"
                 "       tessera stats [-c FILE] [--json]\n"
                 "  -c FILE  configuration file (default " TESSERA_DEFAULT_CONF ")\n"
                 "  -t       check the configuration and exit (0: valid, 1: not)\n"
                 "  -h       this help\n"
                 "  -V       print the version and exit\n"
                 "signals: HUP reloads the configuration, TERM/INT drain and exit,\n"
                 "         USR1 reopens the log files.  See tessera(8), tessera.conf(5).\n");
}

static bool listens_same(const struct config *a, const struct config *b)
{
    if (a->nlistens != b->nlistens)
        return false;
    for (size_t i = 0; i < a->nlistens; i++)
        if (strcmp(a->listens[i].text, b->listens[i].text) != 0)
            return false;
    return true;
}

static void reload(struct tessera *t)
{
    char err[1024];
    log_info("reloading %s", t->cfg->path);
    struct config *cfg = config_load(t->cfg->path, err, sizeof err);
    if (!cfg) {
        log_error("reload failed, keeping the running configuration: %s", err);
        return;
    }
    if (!listens_same(t->cfg, cfg))
        log_warn("reload: 'listen' changes take effect at the next restart");
    else /* the sockets stay: keep the addresses they are bound to (port 0) */
        for (size_t i = 0; i < cfg->nlistens; i++)
            cfg->listens[i] = t->cfg->listens[i];
    if (cfg->workers != t->cfg->workers)
        log_warn("reload: 'workers' changes take effect at the next restart");
    if (cfg->cache_memory != t->cfg->cache_memory)
        log_warn("reload: 'cache memory' changes take effect at the next restart");
    if (cfg->memcached.enabled != t->cfg->memcached.enabled ||
        cfg->memcached.nservers != t->cfg->memcached.nservers)
        log_warn("reload: 'memcached' changes take effect at the next restart");
    if (cfg->admin.enabled != t->cfg->admin.enabled ||
        strcmp(cfg->admin.listen.text, t->cfg->admin.listen.text) != 0)
        log_warn("reload: the admin listener's address takes effect at the next restart");
    if (!stats_config_attach(cfg, t->nworkers)) {
        log_error("reload failed, keeping the running configuration: out of memory");
        config_release(&cfg);
        return;
    }
    if (!log_open(&cfg->log, err, sizeof err)) {
        log_error("reload failed, keeping the running configuration: %s", err);
        config_release(&cfg);
        return;
    }
    for (unsigned i = 0; i < t->nworkers; i++)
        worker_set_config(&t->workers[i], cfg);
    admin_set_config(t->admin, cfg);
    config_release(&t->cfg);
    t->cfg = cfg;
    log_info("configuration reloaded");
}

static void signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)revents;
    struct tessera *t = s->data;
    switch (s->signum) {
    case SIGHUP:
        reload(t);
        break;
    case SIGUSR1:
        log_reopen();
        break;
    default:
        if (t->stopping)
            return;
        t->stopping = true;
        log_info("received signal %d: draining and exiting", s->signum);
        admin_set_draining(t->admin);
        for (unsigned i = 0; i < t->nworkers; i++)
            worker_drain(&t->workers[i]);
        ev_break(loop, EVBREAK_ALL);
    }
}

static bool start_workers(struct tessera *t, char *err, size_t errlen)
{
    struct config *cfg = t->cfg;
    size_t n = cfg->nlistens;
    int *fds = calloc((size_t)t->nworkers * n, sizeof *fds);
    t->workers = calloc(t->nworkers, sizeof *t->workers);
    if (!fds || !t->workers) {
        t->nworkers = 0;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (!listeners_open(cfg, t->nworkers, fds, err, errlen)) {
        t->nworkers = 0; /* none started: nothing to drain or join */
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const struct config_listen *l = &cfg->listens[i];
        if (l->addr.ss_family == AF_INET6)
            log_info("listening on [%.*s]:%u", (int)(strrchr(l->text, ']') - l->text - 1),
                     l->text + 1, listener_port(l));
        else
            log_info("listening on %.*s:%u", (int)(strrchr(l->text, ':') - l->text), l->text,
                     listener_port(l));
    }
    /* Workers inherit a mask with the watched signals blocked. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    for (unsigned i = 0; i < t->nworkers; i++) {
        if (!worker_start(&t->workers[i], i, cfg, t->store, t->mcstore, admin_bans(t->admin),
                          fds + i * n, n, err, errlen)) {
            listeners_close(fds + i * n, ((size_t)t->nworkers - i) * n);
            t->nworkers = i;
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            goto fail;
        }
    }
    if (!admin_start(t->admin, t->workers, t->nworkers, err, errlen)) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        goto fail;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(fds);
    log_info("tessera " TESSERA_VERSION " started: %u worker(s)", t->nworkers);
    return true;
fail:
    free(fds);
    return false;
}

static void memcached_log(int level, const char *msg)
{
    log_msg((enum log_level)level, "%s", msg);
}

/* The memcached tier, when the config has one.  A server that is down is
 * not an error: it is used once it answers. */
static bool memcached_start(struct tessera *t, char *err, size_t errlen)
{
    const struct config_memcached *mc = &t->cfg->memcached;
    if (!mc->enabled)
        return true;
    struct mcstore_server servers[MCSTORE_MAX_SERVERS];
    size_t n = mc->nservers < MCSTORE_MAX_SERVERS ? mc->nservers : MCSTORE_MAX_SERVERS;
    for (size_t i = 0; i < n; i++)
        servers[i] = (struct mcstore_server){mc->servers[i].host, mc->servers[i].port,
                                             mc->servers[i].weight};
    struct mcstore_config cfg = {
        .servers = servers,
        .nservers = n,
        .prefix = mc->prefix,
        .timeout_ms = mc->timeout_ms,
        .retry_timeout_ms = mc->retry_timeout_ms,
        .io_threads = mc->io_threads,
        .item_size = mc->item_size,
        .ttl_slack_ms = mc->ttl_slack_ms,
        .queue_max = mc->queue_max,
        .max_body = 1ull << 30,
        .log = memcached_log,
    };
    t->mcstore = mcstore_new(&cfg, err, errlen);
    if (t->mcstore)
        log_info("memcached tier: %zu server(s), prefix '%s'", n, mc->prefix);
    return t->mcstore != NULL;
}

/* Join the worker threads, then stop memcached (its shutdown may still
 * post answers to the workers' mailboxes), then free the workers. */
static void stop_workers(struct tessera *t)
{
    for (unsigned i = 0; i < t->nworkers; i++)
        worker_join(&t->workers[i]);
    admin_stop(t->admin);
    mcstore_free(&t->mcstore);
    admin_free(&t->admin);
    for (unsigned i = 0; i < t->nworkers; i++)
        worker_free(&t->workers[i]);
    free(t->workers);
    t->workers = NULL;
}

static int run(struct tessera *t)
{
    char err[1024];
    struct ev_loop *loop = ev_default_loop(0);
    ev_signal sigs[4];
    const int signums[4] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
    for (int i = 0; i < 4; i++) {
        ev_signal_init(&sigs[i], signal_cb, signums[i]);
        sigs[i].data = t;
        ev_signal_start(loop, &sigs[i]);
    }
    signal(SIGPIPE, SIG_IGN);
    cache_req_seed_init();
    uint64_t largest = 0;
    for (size_t i = 0; i < t->cfg->nroutes; i++)
        if (t->cfg->routes[i].cache.enabled && t->cfg->routes[i].cache.max_object_size > largest)
            largest = t->cfg->routes[i].cache.max_object_size;
    t->store = memstore_new(t->cfg->cache_memory, largest, err, sizeof err);
    if (!t->store || !coalesce_init() || !memcached_start(t, err, sizeof err)) {
        log_error("cannot create the cache: %s", err);
        cache_store_destroy(&t->store);
        return 1;
    }
    t->nworkers = t->cfg->workers;
    t->admin = admin_new(t->cfg, t->store, t->mcstore, err, sizeof err);
    if (!t->admin || !stats_config_attach(t->cfg, t->nworkers)) {
        log_error("cannot start: %s", t->admin ? "out of memory" : err);
        mcstore_free(&t->mcstore);
        admin_free(&t->admin);
        cache_store_destroy(&t->store);
        return 1;
    }
    bool started = start_workers(t, err, sizeof err);
    if (!started) {
        log_error("%s", err);
        for (unsigned i = 0; i < t->nworkers; i++)
            worker_drain(&t->workers[i]);
    } else {
        ev_run(loop, 0);
    }
    stop_workers(t);
    coalesce_shutdown();
    cache_store_destroy(&t->store);
    if (!started)
        return 1;
    log_info("exited cleanly");
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = TESSERA_DEFAULT_CONF;
    bool test_only = false;
    int opt;
    if (argc > 1 && (strcmp(argv[1], "purge") == 0 || strcmp(argv[1], "stats") == 0))
        return adminclient_main(argc - 1, argv + 1, path);
    while ((opt = getopt(argc, argv, "c:thV")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("tessera " TESSERA_VERSION "\n");
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    char err[1024];
    struct tessera t = {0};
    t.cfg = config_load(path, err, sizeof err);
    if (!t.cfg) {
        fprintf(stderr, "tessera: %s\n", err);
        return 1;
    }
    if (test_only) {
        printf("tessera: the configuration file %s syntax is ok\n", path);
        config_release(&t.cfg);
        return 0;
    }
    if (!log_open(&t.cfg->log, err, sizeof err)) {
        fprintf(stderr, "tessera: %s\n", err);
        config_release(&t.cfg);
        return 1;
    }
    int rc = run(&t);
    config_release(&t.cfg);
    log_close();
    return rc;
}
