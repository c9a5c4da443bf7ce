/*
 * proxy/esipage.h: assembling an ESI page (issue 10).
 *
 * A client whose answer is a template object (cache/object.h esi_template;
 * proxy/esifill.h made it) answers with an esi_page: the template's
 * literal segments, and for each include the body of a subrequest.
 *
 * A subrequest is a client connection without a socket (proxy/client.c
 * client_subrequest): its request goes through the same router, cache
 * policies, stores, coalescing and stale handling as any other, and its
 * response, which it would have written to a socket, is handed to the
 * include's slot and parsed there.  A fragment whose own route processes ESI
 * is a page in turn (nesting), bounded by the page's route: esi_max_depth,
 * esi_max_includes over the whole page, esi_timeout per include.
 *
 *   start ──> every include's subrequest starts at once (concurrently)
 *   head  ──> once every include has its response head (or failed: then
 *             alt, then onerror="continue", else 502 for the whole page),
 *             the page's head: the parts' merged Cache-Control and ETag
 *             (proxy/esimerge.h), 304 / 412 on the client's conditions
 *   body  ──> in template order, each part as soon as its bytes are there,
 *             coded as the route's compress policy says
 *
 * A part that fails after the head was sent cuts the connection (the
 * client sees an incomplete message, never a wrong complete one).
 *
 * Re-entrancy: a subrequest's output and end only buffer and schedule the
 * page's work (an ev_timer at 0); the page writes to its client and
 * resumes its subrequests from that callback alone.
 *
 * Ownership: the page belongs to its client (client->page) and ends with
 * the client's request; it owns its slots, which own their subrequests
 * until those end (a subrequest's slot pointer is cleared first).
 */
#ifndef TESSERA_ESIPAGE_H
#define TESSERA_ESIPAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "cache/object.h"

struct client;
struct esi_page;
struct esi_slot;

/* esi_page_start: answer c's request from c->cr.obj, a template: sets
 * c->page, starts the includes.  Failures are answered (502). */
void esi_page_start(struct client *c);

/* esi_page_drained: the page's client has room for more output. */
void esi_page_drained(struct esi_page *page);

/* esi_page_free: end the page and NULL *page.  close_subrequests: close
 * the subrequests still running (false at worker shutdown, where the
 * worker destroys every client itself).  NULL is fine. */
void esi_page_free(struct esi_page **page, bool close_subrequests);

/* esi_slot_take: a subrequest's output (its whole HTTP response, as it
 * would go to a socket), niov slices.  Returns how many bytes the slot took
 * (from the first slice on), 0 when it is full: the page calls
 * client_flush() on the subrequest when there is room again. */
size_t esi_slot_take(struct esi_slot *slot, const struct iovec *iov, size_t niov);

/* esi_slot_serve_object: the subrequest's answer is obj, a stored 2xx
 * fragment (age_ms old) sent as it is: the slot takes a reference and
 * writes its body straight from it, without the HTTP round trip through
 * esi_slot_take().  False when the slot cannot (not a 2xx, a coded body,
 * or output already began): the subrequest then answers as usual. */
bool esi_slot_serve_object(struct esi_slot *slot, struct cache_object *obj, int64_t age_ms);

/* esi_slot_closed: the subrequest ended (its client closed). */
void esi_slot_closed(struct esi_slot *slot);

/* esi_slot_detach: the subrequest is being destroyed without closing
 * (worker shutdown): forget it. */
void esi_slot_detach(struct esi_slot *slot);

#endif
