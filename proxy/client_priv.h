/*
 * proxy/client_priv.h: what the files of the client connection share
 * (proxy/client.c, the state machine; proxy/clientcode.c, the content coding
 * of its responses).  Not for other modules: they use proxy/client.h.
 */
#ifndef TESSERA_CLIENT_PRIV_H
#define TESSERA_CLIENT_PRIV_H

#include <ev.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"
#include "proxy/cachepath.h"
#include "proxy/encode.h"
#include "proxy/forward.h"
#include "proxy/http.h"
#include "proxy/worker.h"

#define READ_SIZE 16384
#define OUT_HIGH_WATER (256 * 1024)
#define OUT_LOW_WATER (64 * 1024)
#define UP_HIGH_WATER (256 * 1024)

enum client_state { CS_IDLE, CS_HEAD, CS_PROXY, CS_CLOSING, CS_DEAD };

/* What a parsed head asked for, done once llhttp has returned (never from
 * inside its callbacks). */
enum request_action { ACT_NONE, ACT_FORWARD, ACT_HIT, ACT_WAIT, ACT_ERROR, ACT_REMOTE };

struct target {
    const char *path; /* origin-form: "/a/b?q" */
    size_t path_len;
    size_t route_len; /* path without the query */
    const char *host;
    size_t host_len;
};

struct client {
    struct client *next, *prev;
    struct worker *w;
    struct wcfg *wc; /* the config of the current request */
    int fd;
    ev_io rio, wio;
    ev_timer timer;
    enum client_state state;
    char addr[INET6_ADDRSTRLEN];

    llhttp_t parser;
    struct buf in;
    size_t parsed;     /* bytes of `in` llhttp has consumed */
    size_t head_start; /* where the current request began in `in` */
    size_t head_end;   /* just after its empty line, once head_done */
    struct buf out;
    struct http_head req;
    struct http_field *field;
    bool in_value;
    struct buf trailers; /* request trailer fields, already framed */

    /* The request being served. */
    const struct config_route *route;
    struct upstream *up;
    struct buf uphead;          /* the upstream request head, kept for a retry */
    struct buf upbody;          /* body bytes parsed before the upstream was opened */
    enum request_action action; /* pending after this parse */
    struct cache_req cr;        /* the cache's part in the request */
    uint64_t hit_off;           /* next body byte of cr.obj to write */
    uint64_t hit_end;           /* end of the slice to write (exclusive) */
    bool hit_body;              /* the hit's body is being written */
    bool discard_body;          /* the upstream's body is not for the client (a 304 went) */
    bool answer_from_cache;     /* answer from cr.obj when the upstream response ends */
    bool encode_checked;        /* cr.obj was given its coded variant (or needs none) */
    struct encode_plan encode;  /* what the relayed response's body becomes */
    struct encoder enc;         /* ... and the encoder doing it */
    struct buf enc_pending;     /* upstream body bytes waiting for `out` to drain (inflate) */
    struct buf ae_joined;       /* the request's Accept-Encoding lines as one list */
    bool enc_end_pending;       /* the upstream response ended while bytes were waiting */
    int retries;
    bool head_request;
    bool head_as_get; /* a HEAD on an ESI route goes upstream as GET: a page's head
                       * depends on its template's body and its includes */
    bool idempotent;
    bool keep_alive;
    enum body_framing req_framing;
    uint64_t req_body; /* body bytes received */
    bool head_done;
    bool req_done;     /* the whole request was read */
    bool resp_started; /* a final response head was queued */
    bool resp_done;    /* the whole response was queued */
    bool close_after;  /* close once `out` is written */
    enum body_framing resp_framing;
    int status;
    uint64_t resp_body;          /* body bytes queued for the client */
    uint64_t resp_length;        /* the Content-Length sent, for FRAMING_LENGTH */
    struct http_verdict verdict; /* why the head was refused */
    ev_tstamp t_start;           /* first byte of the request */
    ev_tstamp t_activity;
    ev_tstamp t_upstream;
    ev_tstamp upstream_time; /* seconds until the response head; -1: none */

    /* ESI (proxy/esipage.h).  A subrequest is a client without a socket
     * (fd -1): its request is written into `in` by the page that includes
     * it, and what it would send goes to that page's slot instead. */
    bool subrequest;
    struct esi_slot *slot; /* the include it answers; NULL once detached */
    struct esi_page *page; /* the page this request's answer is assembled from */
};

/* ---- proxy/client.c ---------------------------------------------------------- */

/* The worker's clock, in ms since the epoch. */
int64_t client_now_ms(const struct client *c);

/* Queue bytes for the client (client_write_chunk: as one chunk of a
 * chunked body); client_flush writes what it can and moves the connection
 * on (it may close it: check c->state). */
void client_write(struct client *c, const void *p, size_t n);
void client_write_chunk(struct client *c, const char *p, size_t n);
void client_flush(struct client *c);

/* Close the connection now (it is freed after this loop iteration). */
void client_close(struct client *c);

/* Close it with a reset (RST, not FIN), discarding what is unsent: for a
 * response cut in the middle, so that a client reading to the end of the
 * connection (HTTP/1.0, close-delimited) cannot take it for a whole one. */
void client_abort(struct client *c);

/* The relayed response is over: the encoder's end, the last chunk. */
void client_relay_end(struct client *c);

/* Answer the current request with a short plain-text error, or cut the
 * connection when its response has begun (client_error). */
void client_fail(struct client *c, int status, const char *why);

/* A subrequest for an include of a page (proxy/esipage.c): a client
 * without a socket on worker w, under config wc, answering `request` (a
 * whole request head, copied) for a client at addr.  Its output goes to
 * slot (esi_slot_take); esi_slot_closed() when it ends.  The request is
 * parsed and acted on before this returns, so the slot may already have
 * been given output, or have been closed.  NULL when out of memory. */
struct client *client_subrequest(struct worker *w, struct wcfg *wc, const char *addr,
                                 const char *request, size_t len, struct esi_slot *slot);

/* ---- proxy/clientcode.c: the content coding of responses ----------------------- */

/* The client's Accept-Encoding as one list (NULL: none; "identity" for a
 * request that says no-transform). */
const char *client_accept_encoding(struct client *c, size_t *len);

/* A response field the client gets (a forward_response keep filter; ctx is
 * the client): not the cache's own, and not ETag and Content-Encoding of a
 * coded body. */
bool client_keeps_response_field(const void *ctx, const char *base, const struct http_field *f);

/* Decide what the relayed response's body becomes (c->encode), adding
 * "Vary: Accept-Encoding" to extra when the route could code it. */
void client_plan_coding(struct client *c, const char *base, const struct http_head *head,
                        struct buf *extra);

/* Queue the relayed response's head with the coding's fields and framing,
 * and start the encoder. */
void client_relay_head(struct client *c, const char *base, const struct http_head *head,
                       struct forward_response *fr, struct buf *extra, bool http11);

/* Start c->enc for c->encode, its output going to `out` in the response's
 * framing (c->resp_framing).  False (logged) when it cannot. */
bool client_start_encoder(struct client *c);

/* Feed upstream body bytes to the encoder (bounded: see clientcode.c);
 * false when the coding failed and the connection was cut. */
bool client_code_body(struct client *c, const char *p, size_t n);

/* `out` drained: code what waited, then go on. */
void client_code_pending(struct client *c);

/* The body could not be coded: cut the connection. */
void client_code_failed(struct client *c);

/* Give the hit its coded variant (CACHE_LOOKUP_REMOTE: memcached asked). */
enum cache_lookup_result client_code_hit(struct client *c, bool remote_ok);

/* Answer with the stored gzip body inflated on the way. */
void client_serve_inflated(struct client *c);

/* A request condition that names one of our coded ETags, and the
 * application-side form of those conditions for the upstream request. */
bool client_names_coded_etag(const struct client *c, const char *base, const struct http_field *f);
void client_etag_conditions(const struct client *c, struct buf *extra);

#endif
