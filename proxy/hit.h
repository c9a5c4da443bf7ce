/*
 * proxy/hit.h: answering a request from a stored object: 200, 206 (one
 * range, or several as multipart/byteranges), 304, 412 or 416, as RFC 9110
 * sections 13 and 14 say, and the 304 a passed-through 200 becomes when it
 * satisfies the client's condition.
 *
 * The heads (and a multipart body's part headers) are written into the
 * caller's buffer; a body slice is left for the caller to write straight
 * from the object (zero copy).  The decisions themselves are cache/'s
 * (cache/conditional.c, cache/range.c).
 */
#ifndef TESSERA_HIT_H
#define TESSERA_HIT_H

#include <stdbool.h>
#include <stdint.h>

#include "cache/conditional.h"
#include "cache/object.h"
#include "proxy/buf.h"
#include "proxy/http.h"

/* The client's conditional and range fields, gathered from its head. */
struct hit_request {
    struct cache_preconditions pre;
    const char *range; /* Range value, NULL when absent */
    size_t range_len;
    bool head_request;
    bool get;
    struct buf joined; /* storage for fields given on several lines */
};

/* hit_request_init: gather the fields of req (spans into base).  The
 * struct then points into base and into its own buffer: release it with
 * hit_request_release(). */
void hit_request_init(struct hit_request *hr, const char *base, const struct http_head *req);
void hit_request_release(struct hit_request *hr);

/* hit_request_conditional: the request has If-None-Match or
 * If-Modified-Since (the fields a 200 can turn into a 304). */
bool hit_request_conditional(const struct hit_request *hr);

/* What to send for a hit. */
struct hit_plan {
    int status;          /* 200, 206, 304, 412, 416 */
    uint64_t body_start; /* slice of the object's body to write after the head */
    uint64_t body_end;   /* exclusive; equal to body_start: no body from the object */
};

/* The fields tessera adds to every answer from the cache (Age, Via,
 * Cache-Status, X-Cache), written by the caller's callback into out. */
typedef void hit_fields_fn(void *ctx, struct buf *out);

struct hit_head {
    bool close;         /* "Connection: close" */
    bool keep_alive_10; /* "Connection: keep-alive" for an HTTP/1.0 client */
    hit_fields_fn *fields;
    void *fields_ctx;
    uint64_t seed; /* for a multipart boundary */
};

/* hit_answer: decide and write the answer for obj: the head (and, for
 * several ranges, the whole multipart body, copied) into out; *plan says
 * which slice of the object's body follows.  A 412 writes nothing: the
 * caller answers it like any error.  now_ms judges If-Modified-Since. */
void hit_answer(const struct cache_object *obj, const struct hit_request *hr,
                const struct hit_head *hh, struct buf *out, struct hit_plan *plan, int64_t now_ms);

/* hit_inflated_head: the head of a 200 (or obj's status) whose body is
 * obj's gzip body inflated on the way (proxy/encode.h): obj's fields but
 * Content-Encoding, Content-Length and ETag, then etag (etag_len 0: none)
 * and, when chunked, "Transfer-Encoding: chunked", then the tail (the
 * caller's fields, Connection). */
void hit_inflated_head(const struct cache_object *obj, const struct hit_head *hh, const char *etag,
                       size_t etag_len, bool chunked, struct buf *out);

/* hit_not_modified_from_response: for a 200 that passed through (resp,
 * spans into base): when its ETag / Last-Modified satisfy the request's
 * If-None-Match / If-Modified-Since, write a 304 head built from it into
 * out and return true. */
bool hit_not_modified_from_response(const char *base, const struct http_head *resp,
                                    const struct hit_request *hr, const struct hit_head *hh,
                                    struct buf *out, int64_t now_ms);

#endif
