/*
 * proxy/admin.h: the admin thread (issue 8).
 *
 * One thread with its own libev loop, started after the workers and
 * stopped after them, runs:
 *   - the purger (proxy/purge.h): purges, the ban list the workers check,
 *     and the poll of the shared purge log, whether or not the config has
 *     an admin block (a node without one still honours other nodes'
 *     purges);
 *   - the admin listener when the config has an `admin { }` block: a
 *     small HTTP/1.1 server (one request per connection) answering
 *       POST /purge       {"url"|"prefix"|"regex"|"tag"|"all", "host", "soft"}
 *       PURGE /path       (Host names the site) purges that URL
 *       GET  /stats       JSON counters
 *       GET  /metrics     Prometheus text format
 *       GET  /health      200 while serving, 503 while draining
 *     Every request needs `Authorization: Bearer TOKEN` (constant-time
 *     compare) unless the block says `token off;`, and a client address in
 *     the block's `allow` list.  Answers are JSON ({"error": "..."} on
 *     failure: 400 naming the bad field, 401, 403, 404, 405, 413).
 *
 * Ownership: the admin borrows the stores, the memcached tier and the
 * workers (they outlive it); it holds its own reference to the config.
 */
#ifndef TESSERA_ADMIN_H
#define TESSERA_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "cache/ban.h"
#include "cache/mcstore.h"
#include "cache/store.h"
#include "config/config.h"
#include "proxy/worker.h"

/* Largest request body the admin listener reads (a purge document). */
#define ADMIN_BODY_MAX (64 * 1024)

struct admin;

/* admin_new: the purger and, when cfg has an admin block, the bound and
 * listening admin socket (so a busy port fails start-up).  Nothing runs
 * until admin_start().  NULL with a reason in err when the socket cannot
 * be opened or memory runs out.  Main thread. */
struct admin *admin_new(struct config *cfg, struct cache_store *memory, struct mcstore *mc,
                        char *err, size_t errlen);

/* admin_bans: the ban list workers check every object against. */
struct ban_list *admin_bans(struct admin *a);

/* admin_start: start the thread, with the workers it reports on.  False
 * with a reason in err. */
bool admin_start(struct admin *a, struct worker *workers, unsigned nworkers, char *err,
                 size_t errlen);

/* admin_set_config: a reloaded config (a reference is taken): new tokens,
 * allow lists and routes apply; a new admin listen address needs a
 * restart (the caller warns). */
void admin_set_config(struct admin *a, struct config *cfg);

/* admin_set_draining: /health answers 503 from now on. */
void admin_set_draining(struct admin *a);

/* admin_stop: stop the thread (after the workers stopped).  Main thread. */
void admin_stop(struct admin *a);

/* admin_free: after admin_stop() and mcstore_free(); *a becomes NULL. */
void admin_free(struct admin **a);

#endif
