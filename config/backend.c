/*
 * config/backend.c: the `backend NAME { ... }` block and its servers.
 *
 * Each server's host is resolved here, once, at load time, with
 * getaddrinfo(): the data path never resolves a name, and a name that does
 * not resolve fails the load (or the reload, which then keeps the old
 * config) instead of failing requests later.  Called only from the loader's
 * walk (config/config.c); everything it allocates is owned by the config
 * being built.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/load.h"
#include "config/units.h"

#define WEIGHT_MAX 1000
#define MAX_FAILS_MAX 1000
#define KEEPALIVE_MAX 10000

/* Resolve "HOST:PORT" (argument A) into S. */
static bool resolve_server(struct config_loader *ld, const struct conf_arg *a,
                           struct config_server *s)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    struct loader_hostport hp;
    char host[256], port[8];
    uint64_t portnum = 0;
    int rc;

    if (a->len >= sizeof s->text || !loader_split_hostport(a->text, &hp) || hp.hlen == 0 ||
        hp.hlen >= sizeof host)
        return loader_error(ld, &a->pos,
                            "invalid server address '%s' (expected HOST:PORT or [IPV6]:PORT)",
                            a->text);
    if (!units_parse_uint(hp.port, hp.plen, &portnum) || portnum < 1 || portnum > 65535)
        return loader_error(ld, &a->pos, "invalid port in '%s' (expected 1 to 65535)", a->text);
    memcpy(host, hp.host, hp.hlen);
    host[hp.hlen] = '\0';
    snprintf(port, sizeof port, "%u", (unsigned)portnum);
    hints.ai_family = hp.bracketed ? AF_INET6 : AF_UNSPEC;
    if (hp.bracketed)
        hints.ai_flags |= AI_NUMERICHOST;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        return loader_error(ld, &a->pos, "cannot resolve '%s': %s", host, gai_strerror(rc));
    memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
    s->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    snprintf(s->text, sizeof s->text, "%s", a->text);
    return true;
}

/* One `name=value` server parameter. */
static bool server_param(struct config_loader *ld, const struct conf_arg *a,
                         struct config_server *s, unsigned *seen)
{
    static const char *const names[] = {"weight", "max_fails", "fail_timeout"};
    const char *eq = strchr(a->text, '=');
    size_t nlen = eq ? (size_t)(eq - a->text) : 0;
    struct conf_arg value;
    uint64_t v = 0;
    unsigned i;

    for (i = 0; i < 3; i++) {
        if (eq && strlen(names[i]) == nlen && memcmp(a->text, names[i], nlen) == 0)
            break;
    }
    if (i == 3)
        return loader_error(ld, &a->pos,
                            "unknown server parameter '%s' (expected weight=N, max_fails=N or "
                            "fail_timeout=DURATION)",
                            a->text);
    if (*seen & (1u << i))
        return loader_error(ld, &a->pos, "duplicate server parameter '%s'", names[i]);
    *seen |= 1u << i;
    value = *a;
    value.text = (char *)eq + 1;
    value.len = a->len - nlen - 1;
    switch (i) {
    case 0:
        if (!loader_uint(ld, &value, "weight", 1, WEIGHT_MAX, &v))
            return false;
        s->weight = (unsigned)v;
        return true;
    case 1:
        if (!loader_uint(ld, &value, "max_fails", 0, MAX_FAILS_MAX, &v))
            return false;
        s->max_fails = (unsigned)v;
        return true;
    default:
        return loader_duration(ld, &value, "fail_timeout", false, &s->fail_timeout_ms);
    }
}

bool config_backend_server(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_backend *b = obj;
    struct config_server s = {.weight = 1, .max_fails = 1, .fail_timeout_ms = 10 * 1000};
    struct config_server *servers;
    unsigned seen = 0;

    if (!resolve_server(ld, &d->args[0], &s))
        return false;
    for (size_t i = 1; i < d->nargs; i++) {
        if (!server_param(ld, &d->args[i], &s, &seen))
            return false;
    }
    servers = realloc(b->servers, (b->nservers + 1) * sizeof *servers);
    if (!servers)
        return loader_oom(ld, &d->name.pos);
    b->servers = servers;
    b->servers[b->nservers++] = s;
    return true;
}

bool config_backend_connect_timeout(struct config_loader *ld, const struct conf_directive *d,
                                    void *obj)
{
    struct config_backend *b = obj;

    return loader_duration(ld, &d->args[0], "connect_timeout", true, &b->connect_timeout_ms);
}

bool config_backend_read_timeout(struct config_loader *ld, const struct conf_directive *d,
                                 void *obj)
{
    struct config_backend *b = obj;

    return loader_duration(ld, &d->args[0], "read_timeout", true, &b->read_timeout_ms);
}

bool config_backend_keepalive(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_backend *b = obj;
    uint64_t v = 0;

    if (!loader_uint(ld, &d->args[0], "keepalive", 0, KEEPALIVE_MAX, &v))
        return false;
    b->keepalive = (unsigned)v;
    return true;
}

bool config_main_backend(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config *cfg = obj;
    const struct conf_arg *name = &d->args[0];
    const struct config_backend *dup = config_backend_find(cfg, name->text);
    struct config_backend *b;

    if (name->len == 0)
        return loader_error(ld, &name->pos, "empty backend name");
    if (dup)
        return loader_error(ld, &name->pos, "duplicate backend '%s' (first at %s:%u:%u)",
                            name->text, dup->pos.file, dup->pos.line, dup->pos.col);
    if (!loader_grow((void **)&cfg->backends, cfg->nbackends, &ld->backends_cap, sizeof *b))
        return loader_oom(ld, &d->name.pos);
    b = &cfg->backends[cfg->nbackends];
    b->name = strdup(name->text);
    if (!b->name)
        return loader_oom(ld, &name->pos);
    cfg->nbackends++;
    b->connect_timeout_ms = 5 * 1000;
    b->read_timeout_ms = 60 * 1000;
    b->keepalive = 32;
    b->pos = loader_pos(ld, &d->name.pos);
    if (!loader_walk(ld, CONFIG_CTX_BACKEND, d->children, d->nchildren, b))
        return false;
    if (b->nservers == 0)
        return loader_error(ld, &d->name.pos, "backend '%s' needs a 'server' directive", b->name);
    return true;
}
