/*
 * proxy/router.h: which route of a config serves a request.
 *
 * Order (DESIGN.md, tessera.conf(5)): exact routes first, then prefix and
 * regex routes in file order (the first that matches wins), then the
 * default route.  A route with `host` only matches that host (compared
 * case-insensitively, the request's port ignored).
 */
#ifndef TESSERA_ROUTER_H
#define TESSERA_ROUTER_H

#include <stddef.h>

#include "config/config.h"

/* router_match: the route for host (the Host header value, may be NULL or
 * carry a port) and path (the request path without the query).  Returns
 * NULL when no route matches and there is no default route.  Thread-safe:
 * regex match data is per thread. */
const struct config_route *router_match(const struct config *cfg, const char *host, size_t hostlen,
                                        const char *path, size_t pathlen);

/* router_thread_cleanup: free this thread's regex match data. */
void router_thread_cleanup(void);

#endif
