/*
 * proxy/client.h: client connections.
 *
 * A client connection reads requests, parses them with llhttp (strict),
 * checks them against the limits and the framing rules, picks the route,
 * forwards the request to an upstream and relays the response back,
 * streaming both ways with bounded buffers.  Requests on one connection are
 * answered in order (pipelining): the next request is parsed only when the
 * previous response has been written.
 *
 * Ownership: the worker owns its clients (worker->clients); a client frees
 * itself when its connection ends.  Everything runs on the worker's loop.
 */
#ifndef TESSERA_CLIENT_H
#define TESSERA_CLIENT_H

#include <stdbool.h>
#include <sys/socket.h>

#include "proxy/worker.h"

struct client;

/* client_accept: take charge of an accepted, non-blocking socket.  When the
 * process is over max_connections the client gets a 503 and is closed.
 * On failure to allocate, the socket is closed. */
void client_accept(struct worker *w, int fd, const struct sockaddr *addr, socklen_t addrlen);

/* client_drain: the worker is draining: close the connection now if it is
 * between requests, else after the current response. */
void client_drain(struct client *c);

/* client_destroy: close and free at once (worker shutdown). */
void client_destroy(struct client *c);

/* client_is_subrequest: c has no socket: it answers an ESI include for a
 * page (proxy/esipage.h), and is not a connection (not counted as one). */
bool client_is_subrequest(const struct client *c);

/* client_next: the next client in the worker's list. */
struct client *client_next(const struct client *c);

/* client_set_next / client_set_prev: list links, for worker.c. */
void client_link(struct client **head, struct client *c);
void client_unlink(struct client **head, struct client *c);

#endif
