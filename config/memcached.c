/*
 * config/memcached.c: the top-level `memcached { ... }` block: the servers
 * of the shared cache tier and how tessera talks to them.
 *
 * Unlike a backend's servers, a memcached server's host is not resolved
 * here: libmemcached resolves it when it connects, and tessera must start
 * (serving from memory and the upstream) while memcached is down or its
 * name not yet in DNS.  The host is checked for syntax only, and stored in
 * one spelling (names lower-cased, IPv6 in its canonical form) because
 * ketama places a server on its ring by its name and port: two nodes that
 * wrote the same server differently would not agree on where keys live.
 * The defaults are set by config_memcached_init() for every config, block
 * or not; the routes' `store` default depends on whether the block exists
 * and is settled by config_cache_stores_resolve() (config/cache.c).
 * Called only from the loader's walk (config/config.c): no locking; what is
 * allocated here is owned by the config and freed by
 * config_memcached_clear().
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/load.h"
#include "config/units.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)

/* memcached keys are at most 250 bytes (protocol.txt); a key is the prefix,
 * 32 hex digits and, for a chunk, a short suffix, so 64 leaves room. */
#define PREFIX_MAX 64
#define WEIGHT_MAX 1000
#define HOST_MAX 255 /* a DNS name is at most 253 characters */
/* libmemcached takes its timeouts as an int of ms; a store operation that
 * takes longer than a minute is no longer a cache. */
#define TIMEOUT_MAX_MS (60 * 1000ull)
#define RETRY_TIMEOUT_MAX_MS (3600 * 1000ull)
/* memcached reads an expiry above 30 days as a Unix time; the slack is a
 * margin, never that long. */
#define TTL_SLACK_MAX_MS (30 * 24 * 3600 * 1000ull)
#define IO_THREADS_MAX 64 /* each keeps its own connection to every server */
/* 1m - 1k: memcached's default largest item (-I 1m) less room for its own
 * item header and the key. */
#define ITEM_SIZE_DEFAULT (1 * MIB - 1 * KIB)
#define ITEM_SIZE_MIN (4 * KIB) /* smaller, and a page costs dozens of items */
#define ITEM_SIZE_MAX (128 * MIB)
#define QUEUE_MIN 16
#define QUEUE_MAX 1000000
/* Each poll is one memcached get per node: below 10ms that is load for
 * nothing; above an hour a purge would no longer look like one. */
#define PURGE_SYNC_DEFAULT_MS 1000
#define PURGE_SYNC_MIN_MS 10
#define PURGE_SYNC_MAX_MS (3600 * 1000ull)

/* ---- life cycle ---- */

bool config_memcached_init(struct config_memcached *m)
{
    m->enabled = false;
    m->timeout_ms = 200;
    m->retry_timeout_ms = 5 * 1000;
    m->io_threads = 2;
    m->item_size = ITEM_SIZE_DEFAULT;
    m->ttl_slack_ms = 60 * 1000;
    m->queue_max = 4096;
    m->purge_sync_ms = PURGE_SYNC_DEFAULT_MS;
    m->prefix = strdup("tsr:");
    return m->prefix != NULL;
}

void config_memcached_clear(struct config_memcached *m)
{
    for (size_t i = 0; i < m->nservers; i++)
        free(m->servers[i].host);
    free(m->servers);
    free(m->prefix);
    *m = (struct config_memcached){0};
}

/* ---- the block ---- */

bool config_main_memcached(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config *cfg = obj;
    struct config_memcached *m = &cfg->memcached;

    m->enabled = true;
    if (!loader_walk(ld, CONFIG_CTX_MEMCACHED, d->children, d->nchildren, m))
        return false;
    if (m->nservers == 0)
        return loader_error(ld, &d->name.pos, "memcached block needs a 'server' directive");
    return true;
}

/* ---- server ---- */

static bool valid_name(const char *h, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_')
            return false;
    }
    return len > 0;
}

/* *OUT = HP's host in the one spelling of the file comment, or an error at
 * A.  A name or IPv4 address is lower-cased; an IPv6 address becomes
 * inet_ntop()'s form, without brackets. */
static bool server_host(struct config_loader *ld, const struct conf_arg *a,
                        const struct loader_hostport *hp, char **out)
{
    char host[HOST_MAX + 1];
    struct in6_addr v6;

    if (hp->hlen == 0 || hp->hlen > HOST_MAX)
        goto bad;
    memcpy(host, hp->host, hp->hlen);
    host[hp->hlen] = '\0';
    if (hp->bracketed) {
        char canon[INET6_ADDRSTRLEN];
        if (inet_pton(AF_INET6, host, &v6) != 1 || !inet_ntop(AF_INET6, &v6, canon, sizeof canon))
            goto bad;
        *out = strdup(canon);
    } else {
        if (!valid_name(host, hp->hlen))
            goto bad;
        for (char *c = host; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        *out = strdup(host);
    }
    if (!*out)
        return loader_oom(ld, &a->pos);
    return true;
bad:
    return loader_error(
        ld, &a->pos, "invalid host in '%s' (expected a name, an IPv4 address or [IPV6])", a->text);
}

/* A, "HOST:PORT" or "[IPV6]:PORT", into S (S->host allocated). */
static bool server_address(struct config_loader *ld, const struct conf_arg *a,
                           struct config_memcached_server *s)
{
    struct loader_hostport hp;
    uint64_t port = 0;

    if (a->len >= sizeof s->text || !loader_split_hostport(a->text, &hp))
        return loader_error(ld, &a->pos,
                            "invalid memcached server address '%s' (expected HOST:PORT or "
                            "[IPV6]:PORT)",
                            a->text);
    if (!units_parse_uint(hp.port, hp.plen, &port) || port < 1 || port > 65535)
        return loader_error(ld, &a->pos, "invalid port in '%s' (expected 1 to 65535)", a->text);
    if (!server_host(ld, a, &hp, &s->host))
        return false;
    s->port = (unsigned)port;
    snprintf(s->text, sizeof s->text, "%s", a->text);
    return true;
}

static bool server_weight(struct config_loader *ld, const struct conf_arg *a,
                          struct config_memcached_server *s)
{
    static const char name[] = "weight=";
    struct conf_arg value;
    uint64_t v = 0;

    if (strncmp(a->text, name, sizeof name - 1) != 0)
        return loader_error(ld, &a->pos,
                            "unknown memcached server parameter '%s' (expected weight=N)", a->text);
    value = *a;
    value.text = a->text + sizeof name - 1;
    value.len = a->len - (sizeof name - 1);
    if (!loader_uint(ld, &value, "weight", 1, WEIGHT_MAX, &v))
        return false;
    s->weight = (unsigned)v;
    return true;
}

bool config_memcached_server(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_memcached *m = obj;
    struct config_memcached_server s = {.weight = 1};
    struct config_memcached_server *servers;

    if (!server_address(ld, &d->args[0], &s))
        return false;
    if (d->nargs > 1 && !server_weight(ld, &d->args[1], &s))
        goto fail;
    for (size_t i = 0; i < m->nservers; i++) {
        const struct config_memcached_server *o = &m->servers[i];
        if (o->port == s.port && strcmp(o->host, s.host) == 0) {
            loader_error(ld, &d->args[0].pos, "duplicate memcached server '%s' (first at %s:%u:%u)",
                         d->args[0].text, o->pos.file, o->pos.line, o->pos.col);
            goto fail;
        }
    }
    servers = realloc(m->servers, (m->nservers + 1) * sizeof *servers);
    if (!servers) {
        loader_oom(ld, &d->name.pos);
        goto fail;
    }
    s.pos = loader_pos(ld, &d->name.pos);
    m->servers = servers;
    m->servers[m->nservers++] = s;
    return true;
fail:
    free(s.host);
    return false;
}

/* ---- the other directives ---- */

/* Printable ASCII without spaces: memcached's key rules (protocol.txt), so
 * that tessera's keys also work over the text protocol and in memcached's
 * own tools, though tessera speaks the binary one. */
bool config_memcached_prefix(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_memcached *m = obj;
    const struct conf_arg *a = &d->args[0];
    char *prefix;

    if (a->len == 0)
        return loader_error(ld, &a->pos, "empty prefix (expected 1 to %d characters)", PREFIX_MAX);
    if (a->len > PREFIX_MAX)
        return loader_error(ld, &a->pos, "prefix '%s' is too long (expected at most %d characters)",
                            a->text, PREFIX_MAX);
    for (size_t i = 0; i < a->len; i++) {
        unsigned char c = (unsigned char)a->text[i];
        if (c <= 0x20 || c >= 0x7f)
            return loader_error(ld, &a->pos,
                                "invalid prefix '%s' (expected printable ASCII without spaces)",
                                a->text);
    }
    prefix = strdup(a->text);
    if (!prefix)
        return loader_oom(ld, &a->pos);
    free(m->prefix);
    m->prefix = prefix;
    return true;
}

/* A duration for WHAT, above 0 when NONZERO, at most MAX_MS (spelt MAX_TEXT
 * in messages). */
static bool duration_upto(struct config_loader *ld, const struct conf_arg *a, const char *what,
                          bool nonzero, uint64_t max_ms, const char *max_text, uint64_t *out_ms)
{
    uint64_t v = 0;

    if (!loader_duration(ld, a, what, nonzero, &v))
        return false;
    if (v > max_ms)
        return loader_error(ld, &a->pos,
                            "duration '%s' for '%s' is out of range (expected at most %s)", a->text,
                            what, max_text);
    *out_ms = v;
    return true;
}

bool config_memcached_timeout(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_memcached *m = obj;

    return duration_upto(ld, &d->args[0], d->name.text, true, TIMEOUT_MAX_MS, "1m", &m->timeout_ms);
}

/* Not 0: a dead server would then be tried again by every request, each
 * waiting for the timeout. */
bool config_memcached_retry_timeout(struct config_loader *ld, const struct conf_directive *d,
                                    void *obj)
{
    struct config_memcached *m = obj;

    return duration_upto(ld, &d->args[0], d->name.text, true, RETRY_TIMEOUT_MAX_MS, "1h",
                         &m->retry_timeout_ms);
}

bool config_memcached_ttl_slack(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_memcached *m = obj;

    return duration_upto(ld, &d->args[0], d->name.text, false, TTL_SLACK_MAX_MS, "30d",
                         &m->ttl_slack_ms);
}

bool config_memcached_io_threads(struct config_loader *ld, const struct conf_directive *d,
                                 void *obj)
{
    struct config_memcached *m = obj;
    uint64_t v = 0;

    if (!loader_uint(ld, &d->args[0], d->name.text, 1, IO_THREADS_MAX, &v))
        return false;
    m->io_threads = (unsigned)v;
    return true;
}

bool config_memcached_item_size(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_memcached *m = obj;

    return loader_size(ld, &d->args[0], d->name.text, ITEM_SIZE_MIN, ITEM_SIZE_MAX, &m->item_size);
}

bool config_memcached_queue_max(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_memcached *m = obj;
    uint64_t v = 0;

    if (!loader_uint(ld, &d->args[0], d->name.text, QUEUE_MIN, QUEUE_MAX, &v))
        return false;
    m->queue_max = (unsigned)v;
    return true;
}

/* How often this node polls the shared purge log (issue 8): the longest a
 * purge made on another node takes to reach this one. */
bool config_memcached_purge_sync(struct config_loader *ld, const struct conf_directive *d,
                                 void *obj)
{
    struct config_memcached *m = obj;
    const struct conf_arg *a = &d->args[0];
    uint64_t v = 0;

    if (!loader_duration(ld, a, d->name.text, false, &v))
        return false;
    if (v < PURGE_SYNC_MIN_MS || v > PURGE_SYNC_MAX_MS)
        return loader_error(ld, &a->pos,
                            "duration '%s' for '%s' is out of range (expected 10ms to 1h)", a->text,
                            d->name.text);
    m->purge_sync_ms = v;
    return true;
}
