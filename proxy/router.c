/*
 * proxy/router.c: route selection (see router.h).  The routes are the
 * config's array in file order; matching is a linear scan, exact routes in
 * a first pass.  Regexes were compiled (and JIT-compiled) at load time; the
 * match data is a per-thread allocation reused for every request.
 */
#include "proxy/router.h"

#include <string.h>
#include <strings.h>

static __thread pcre2_match_data *match_data;

/* The host part of a Host value: "[::1]:80" -> "[::1]", "a.b:8080" -> "a.b". */
static size_t host_without_port(const char *host, size_t len)
{
    if (len > 0 && host[0] == '[') {
        const char *end = memchr(host, ']', len);
        return end ? (size_t)(end - host) + 1 : len;
    }
    const char *colon = memchr(host, ':', len);
    return colon ? (size_t)(colon - host) : len;
}

static bool host_matches(const struct config_route *r, const char *host, size_t hostlen)
{
    if (!r->host)
        return true;
    if (!host)
        return false;
    size_t n = host_without_port(host, hostlen);
    /* A fully-qualified name may end in a dot (RFC 1034 3.1). */
    if (n > 0 && host[n - 1] == '.')
        n--;
    return strlen(r->host) == n && strncasecmp(r->host, host, n) == 0;
}

static bool regex_matches(const struct config_route *r, const char *path, size_t len)
{
    if (!match_data) {
        match_data = pcre2_match_data_create(1, NULL);
        if (!match_data)
            return false;
    }
    int rc = pcre2_match(r->regex, (PCRE2_SPTR)path, len, 0, 0, match_data, NULL);
    return rc >= 0;
}

static bool path_matches(const struct config_route *r, const char *path, size_t len)
{
    switch (r->match) {
    case ROUTE_EXACT:
        return len == r->pattern_len && memcmp(path, r->pattern, len) == 0;
    case ROUTE_PREFIX:
        return len >= r->pattern_len && memcmp(path, r->pattern, r->pattern_len) == 0;
    case ROUTE_REGEX:
        return regex_matches(r, path, len);
    case ROUTE_DEFAULT:
        return true;
    }
    return false;
}

const struct config_route *router_match(const struct config *cfg, const char *host, size_t hostlen,
                                        const char *path, size_t pathlen)
{
    const struct config_route *fallback = NULL;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        if (r->match == ROUTE_EXACT && host_matches(r, host, hostlen) &&
            path_matches(r, path, pathlen))
            return r;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        if (r->match == ROUTE_EXACT || !host_matches(r, host, hostlen))
            continue;
        if (r->match == ROUTE_DEFAULT) {
            if (!fallback)
                fallback = r;
            continue;
        }
        if (path_matches(r, path, pathlen))
            return r;
    }
    return fallback;
}

void router_thread_cleanup(void)
{
    pcre2_match_data_free(match_data);
    match_data = NULL;
}
