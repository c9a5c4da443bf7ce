/*
 * proxy/revalidate.h: background revalidation (stale-while-revalidate).
 *
 * A request answered with a stale object inside its stale-while-revalidate
 * window starts one background fetch for the key, on its worker's loop:
 * conditional (the object's validators) when it has them, so a 304 only
 * refreshes the stored object's head and freshness.  At most one runs per
 * key at a time (the coalescing table says who fills), so a burst of stale
 * hits costs the application one request.
 *
 * Ownership: the worker owns its background fetches (w->revalidations);
 * each frees itself when it ends; revalidate_shutdown() aborts the rest.
 */
#ifndef TESSERA_REVALIDATE_H
#define TESSERA_REVALIDATE_H

#include "config/config.h"
#include "proxy/cachepath.h"
#include "proxy/http.h"
#include "proxy/worker.h"

/* revalidate_start: refresh cr's stale object (cr was answered stale; its
 * key, policy, facts and object are copied, nothing is taken from it);
 * route belongs to the config generation wc, which the fetch keeps.
 * base/req are the client's request (its fields are copied), host and
 * target its effective Host and origin-form target, client_addr its
 * address.  Does nothing when another request already fills the key. */
void revalidate_start(struct worker *w, struct wcfg *wc, const struct config_route *route,
                      const struct cache_req *cr, const char *base, const struct http_head *req,
                      const char *host, size_t host_len, const char *target, size_t target_len,
                      const char *client_addr);

/* revalidate_shutdown: abort every background fetch of the worker. */
void revalidate_shutdown(struct worker *w);

/* revalidate_running: background fetches of this worker now. */
unsigned revalidate_running(const struct worker *w);

#endif
