/*
 * config/route.c: the `route MATCH { backend NAME; host NAME; ... }` blocks
 * (the cache directives of a route are config/cache.c's, its ESI
 * directives config/esi.c's).
 *
 * A route's pattern is checked, and a regex compiled with PCRE2 (then
 * JIT-compiled when the platform allows; the interpreter is the fallback),
 * at load time, so a bad pattern fails the load, never a request.  The
 * backend a route names is only recorded during the walk (in
 * ld->routes_pending) and resolved by config_routes_resolve() once every
 * backend is known.  Called only from
 * the loader (config/config.c); what it allocates is owned by the config.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/load.h"

static const char *match_prefix(enum route_match m)
{
    switch (m) {
    case ROUTE_EXACT:
        return "= ";
    case ROUTE_REGEX:
        return "~ ";
    case ROUTE_PREFIX:
    case ROUTE_DEFAULT:
        break;
    }
    return "";
}

/* Set r->match and return the pattern argument (NULL for default, or on an
 * error, with *ok false). */
static const struct conf_arg *route_match(struct config_loader *ld, const struct conf_directive *d,
                                          struct config_route *r, bool *ok)
{
    const struct conf_arg *first = &d->args[0];

    *ok = true;
    if (d->nargs == 1) {
        if (strcmp(first->text, "default") == 0) {
            r->match = ROUTE_DEFAULT;
            return NULL;
        }
        r->match = ROUTE_PREFIX;
        return first;
    }
    if (strcmp(first->text, "=") == 0) {
        r->match = ROUTE_EXACT;
    } else if (strcmp(first->text, "~") == 0) {
        r->match = ROUTE_REGEX;
    } else {
        *ok = loader_error(ld, &first->pos, "unknown route modifier '%s' (expected '=' or '~')",
                           first->text);
        return NULL;
    }
    return &d->args[1];
}

static bool compile_regex(struct config_loader *ld, const struct conf_arg *a,
                          struct config_route *r)
{
    PCRE2_UCHAR msg[256];
    PCRE2_SIZE offset;
    int code;

    r->regex = pcre2_compile((PCRE2_SPTR)a->text, a->len, 0, &code, &offset, NULL);
    if (!r->regex) {
        if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", code);
        return loader_error(ld, &a->pos, "invalid regex '%s': %s at offset %zu", a->text,
                            (const char *)msg, (size_t)offset);
    }
    /* JIT is an optimisation: without it (no JIT support, or W^X memory)
     * pcre2_match() falls back to the interpreter. */
    (void)pcre2_jit_compile(r->regex, PCRE2_JIT_COMPLETE);
    return true;
}

static bool route_pattern(struct config_loader *ld, const struct conf_arg *a,
                          struct config_route *r)
{
    if (r->match != ROUTE_REGEX && a->text[0] != '/')
        return loader_error(ld, &a->pos, "route path '%s' must start with '/'", a->text);
    r->pattern = strdup(a->text);
    if (!r->pattern)
        return loader_oom(ld, &a->pos);
    r->pattern_len = a->len;
    if (r->match == ROUTE_REGEX)
        return compile_regex(ld, a, r);
    return true;
}

static bool same_route(const struct config_route *a, const struct config_route *b)
{
    if (a->match != b->match)
        return false;
    if (a->match == ROUTE_DEFAULT)
        return true; /* one default, whatever its host */
    if ((a->host == NULL) != (b->host == NULL) || (a->host && strcmp(a->host, b->host) != 0))
        return false;
    return a->pattern_len == b->pattern_len && memcmp(a->pattern, b->pattern, a->pattern_len) == 0;
}

static bool check_unique(struct config_loader *ld, const struct config *cfg,
                         const struct conf_directive *d, const struct config_route *r)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *o = &cfg->routes[i];
        if (o == r || !same_route(o, r))
            continue;
        if (r->match == ROUTE_DEFAULT)
            return loader_error(ld, &d->name.pos, "duplicate 'route default' (first at %s:%u:%u)",
                                o->pos.file, o->pos.line, o->pos.col);
        return loader_error(ld, &d->name.pos, "duplicate route '%s%s'%s%s (first at %s:%u:%u)",
                            match_prefix(r->match), r->pattern, r->host ? " for host " : "",
                            r->host ? r->host : "", o->pos.file, o->pos.line, o->pos.col);
    }
    return true;
}

bool config_main_route(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config *cfg = obj;
    struct config_route_build rb = {0};
    const struct conf_arg *pattern;
    struct config_route *r;
    bool ok;

    if (!loader_grow((void **)&cfg->routes, cfg->nroutes, &ld->routes_cap, sizeof *r))
        return loader_oom(ld, &d->name.pos);
    if (!loader_grow((void **)&ld->routes_pending, cfg->nroutes, &ld->routes_pending_cap,
                     sizeof *ld->routes_pending))
        return loader_oom(ld, &d->name.pos);
    r = &cfg->routes[cfg->nroutes];
    r->index = (unsigned)cfg->nroutes;
    r->pos = loader_pos(ld, &d->name.pos);
    cfg->nroutes++;
    /* Every route has a cache policy and ESI settings, directives or not. */
    if (!config_cache_policy_init(&r->cache) || !config_esi_init(&r->esi))
        return loader_oom(ld, &d->name.pos);
    pattern = route_match(ld, d, r, &ok);
    if (!ok || (pattern && !route_pattern(ld, pattern, r)))
        return false;
    rb.route = r;
    rb.pending = &ld->routes_pending[r->index];
    if (!loader_walk(ld, CONFIG_CTX_ROUTE, d->children, d->nchildren, &rb))
        return false;
    if (!rb.pending->backend)
        return loader_error(ld, &d->name.pos, "route needs a 'backend' directive");
    return check_unique(ld, cfg, d, r);
}

bool config_route_backend(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_route_build *rb = obj;

    (void)ld;
    rb->pending->backend = &d->args[0];
    return true;
}

static bool valid_host(const char *h, size_t len)
{
    if (len == 0)
        return false;
    if (h[0] == '[') {
        char v6[64];
        struct in6_addr addr;
        if (len < 3 || h[len - 1] != ']' || len - 2 >= sizeof v6)
            return false;
        memcpy(v6, h + 1, len - 2);
        v6[len - 2] = '\0';
        return inet_pton(AF_INET6, v6, &addr) == 1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_')
            return false;
    }
    return true;
}

bool config_route_host(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_route_build *rb = obj;
    const struct conf_arg *a = &d->args[0];
    char *host;

    if (a->text[0] != '[' && strchr(a->text, ':'))
        return loader_error(
            ld, &a->pos, "host '%s' must not contain ':' (no port; write IPv6 as [::1])", a->text);
    if (!valid_host(a->text, a->len))
        return loader_error(
            ld, &a->pos, "invalid host '%s' (expected a name, an IPv4 address or [IPV6])", a->text);
    host = strdup(a->text);
    if (!host)
        return loader_oom(ld, &a->pos);
    for (char *p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    rb->route->host = host;
    return true;
}

bool config_routes_resolve(struct config_loader *ld)
{
    struct config *cfg = ld->cfg;

    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct conf_arg *name = ld->routes_pending[i].backend;
        cfg->routes[i].backend = config_backend_find(cfg, name->text);
        if (!cfg->routes[i].backend)
            return loader_error(ld, &name->pos, "unknown backend '%s'", name->text);
    }
    return true;
}
