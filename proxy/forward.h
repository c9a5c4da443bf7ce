/*
 * proxy/forward.h: the heads tessera sends on: the request to the
 * upstream and the response to the client, built from the parsed heads.
 *
 * Pure functions: they append to a buffer and touch nothing else.  They
 * apply RFC 9110 7.6 (hop-by-hop fields, Via) and set the X-Forwarded-*
 * fields; the caller decides the framing and passes it in.
 */
#ifndef TESSERA_FORWARD_H
#define TESSERA_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"
#include "proxy/http.h"

#define VIA_NAME "tessera"

enum body_framing {
    FRAMING_NONE,    /* no content */
    FRAMING_LENGTH,  /* Content-Length: length */
    FRAMING_CHUNKED, /* Transfer-Encoding: chunked */
    FRAMING_CLOSE,   /* delimited by closing the connection (responses only) */
};

struct forward_request {
    const char *method; /* the method to send; NULL: the request's own */
    const char *target; /* origin-form request target */
    size_t target_len;
    const char *host; /* the Host to send */
    size_t host_len;
    const char *client_addr; /* appended to X-Forwarded-For */
    const char *proto;       /* X-Forwarded-Proto: "http" */
    enum body_framing framing;
    uint64_t length;   /* FRAMING_LENGTH */
    bool close;        /* ask the upstream to close (keepalive 0) */
    const char *extra; /* more field lines to send ("Name: value\r\n"...), or NULL */
    size_t extra_len;
    /* When set, a forwardable field is only sent when keep() says so. */
    bool (*keep)(const void *ctx, const char *base, const struct http_field *f);
    const void *keep_ctx;
};

/* forward_request_head: append the upstream request head for req (spans
 * into base): the request line in HTTP/1.1, the forwardable fields in
 * order, minus Host and the client's X-Forwarded-Proto/-Host, then Host,
 * the merged X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Via and
 * the framing field. */
void forward_request_head(struct buf *out, const char *base, const struct http_head *req,
                          const struct forward_request *fr);

struct forward_response {
    enum body_framing framing;
    uint64_t length;    /* FRAMING_LENGTH, or the length a HEAD/304 announces */
    bool send_length;   /* write Content-Length: length */
    bool close;         /* "Connection: close" and close after */
    bool keep_alive_10; /* an HTTP/1.0 client gets "Connection: keep-alive" */
    const char *date;   /* sent when the upstream gave no Date */
    const char *extra;  /* more field lines ("Name: value\r\n"...) to send, or NULL */
    size_t extra_len;
    /* When set, a forwardable field is only sent when keep() says so. */
    bool (*keep)(const void *ctx, const char *base, const struct http_field *f);
    const void *keep_ctx;
};

/* forward_response_head: append the client response head: "HTTP/1.1"
 * status line with the upstream's reason (or the standard phrase), the
 * forwardable fields (that fr->keep accepts), Date if missing, Via, the
 * extra fields, framing and Connection. */
void forward_response_head(struct buf *out, const char *base, const struct http_head *resp,
                           const struct forward_response *fr);

/* forward_interim_head: append a 1xx response (100 Continue, 103 Early
 * Hints) with its forwardable fields. */
void forward_interim_head(struct buf *out, const char *base, const struct http_head *resp);

#endif
