/*
 * proxy/upstream.h: connections to application servers, their per-worker
 * keep-alive pools and the choice of server.
 *
 * An upstream carries one request at a time for one owner (a client
 * connection).  The owner writes the request head and body with
 * upstream_write(); the upstream parses the response with llhttp and
 * reports it through the owner's upstream_handler, on the worker's loop.
 * A response that ends cleanly on a keep-alive connection sends the
 * connection back to its pool; any other end closes it.
 *
 * Ownership: the owner holds the upstream from upstream_open() until
 * on_done/on_error is called or it calls upstream_abort(); after either the
 * upstream pointer is invalid.  Handlers may not free the owner while the
 * upstream is calling them; they may call upstream_abort().
 */
#ifndef TESSERA_UPSTREAM_H
#define TESSERA_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/http.h"
#include "proxy/worker.h"

struct upstream;

enum upstream_failure {
    UPSTREAM_NO_SERVER,       /* every server is marked down */
    UPSTREAM_REFUSED,         /* connect failed */
    UPSTREAM_CONNECT_TIMEOUT, /* connect_timeout expired */
    UPSTREAM_TIMEOUT,         /* read_timeout expired waiting for the server */
    UPSTREAM_CLOSED,          /* closed or reset before the response ended */
    UPSTREAM_BAD_RESPONSE,    /* unparsable or oversized response head */
};

struct upstream_error {
    enum upstream_failure failure;
    bool started; /* a final response head had been delivered */
    bool reused;  /* the connection came from the keep-alive pool */
    int server;   /* index of the server in its backend, -1 if none */
};

struct upstream_handler {
    /* A response head: interim (1xx) or final.  base holds the bytes the
     * spans point into, valid during the call.  Return false to abort. */
    bool (*on_head)(void *owner, const char *base, const struct http_head *head, bool interim);
    /* Response body bytes, de-chunked. */
    void (*on_body)(void *owner, const char *p, size_t n);
    /* Trailer fields of a chunked response (may have no fields). */
    void (*on_trailers)(void *owner, const char *base, const struct http_head *trailers);
    /* The final response ended; the upstream is gone. */
    void (*on_done)(void *owner);
    /* The exchange failed.  The upstream is gone: what the owner may need
     * to know about it comes in err. */
    void (*on_error)(void *owner, const struct upstream_error *err);
    /* The request bytes written so far have been sent: more may follow. */
    void (*on_drained)(void *owner);
};

/* upstream_failure_name: "connection refused", "timed out", ... */
const char *upstream_failure_name(enum upstream_failure failure);

/* upstream_open: choose a server of backend b (smooth weighted round
 * robin, skipping servers that failed max_fails times within
 * fail_timeout, and `avoid` when another is available; avoid may be -1)
 * and take an idle pooled connection to it or start a new one.
 * head_request tells the parser that the response has no body.
 * Returns NULL when no server is available (the caller answers 502). */
struct upstream *upstream_open(struct worker *w, struct wcfg *wc, const struct config_backend *b,
                               int avoid, bool head_request, const struct upstream_handler *h,
                               void *owner);

/* upstream_server_index: which of the backend's servers this upstream
 * talks to (for retries: pass it as `avoid`). */
int upstream_server_index(const struct upstream *up);

/* upstream_server_name: "host:port" of the server, for logs. */
const char *upstream_server_name(const struct upstream *up);

/* upstream_reused: the connection came from the keep-alive pool. */
bool upstream_reused(const struct upstream *up);

/* upstream_write: queue request bytes (copied). */
void upstream_write(struct upstream *up, const void *p, size_t n);

/* upstream_request_done: the whole request has been queued. */
void upstream_request_done(struct upstream *up);

/* upstream_pending: request bytes queued and not yet sent. */
size_t upstream_pending(const struct upstream *up);

/* upstream_pause / upstream_resume: stop or restart reading the response
 * (backpressure from a slow client).  The read timeout does not run while
 * paused. */
void upstream_pause(struct upstream *up);
void upstream_resume(struct upstream *up);

/* upstream_abort: the owner gives up: close the connection, no callback. */
void upstream_abort(struct upstream **upp);

/* upstream_pools_free: close every pooled connection of the worker. */
void upstream_pools_free(struct worker *w);

/* upstream_backend_rt_init / _free: the per-config balancer state of a
 * backend (see struct backend_rt). */
bool upstream_backend_rt_init(struct worker *w, struct backend_rt *rt,
                              const struct config_backend *b);
void upstream_backend_rt_free(struct backend_rt *rt);

#endif
