/*
 * proxy/hit.c: answers from a stored object (see hit.h).
 *
 * Order (RFC 9110 13.2.2): preconditions first (a 304 or 412 ends it),
 * then Range (14.2), only for GET and only on a 200, honouring If-Range.
 * A 304 carries the fields RFC 9110 15.4.5 lists (Content-Location, Date,
 * ETag, Vary, Cache-Control, Expires) and no body.
 */
#include "proxy/hit.h"
#include "proxy/encode.h"

#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#include "cache/httpdate.h"
#include "cache/range.h"

/* ---- the request's fields --------------------------------------------------- */

/* The value of every field line called name, joined by ", " when there
 * are several (RFC 9110 5.3). */
static void gather(struct hit_request *hr, const char *base, const struct http_head *req,
                   const char *name, const char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    unsigned n = http_head_count(base, req, name);
    if (n == 0)
        return;
    const struct http_field *first = http_head_find(base, req, name);
    if (n == 1) {
        *out = base + first->value.off;
        *out_len = first->value.len;
        return;
    }
    size_t start = hr->joined.len;
    bool any = false;
    for (unsigned i = 0; i < req->nfields; i++) {
        const struct http_field *f = &req->fields[i];
        if (!http_span_is(base, f->name, name))
            continue;
        if (any)
            buf_append(&hr->joined, ", ", 2);
        buf_append(&hr->joined, base + f->value.off, f->value.len);
        any = true;
    }
    /* Offsets, not pointers: joined may move while later fields are added. */
    *out = (const char *)(uintptr_t)start;
    *out_len = hr->joined.len - start;
}

void hit_request_init(struct hit_request *hr, const char *base, const struct http_head *req)
{
    memset(hr, 0, sizeof *hr);
    static const char *const names[] = {"if-match",          "if-none-match",
                                        "if-modified-since", "if-unmodified-since",
                                        "if-range",          "range"};
    const char *v[6];
    size_t len[6];
    bool joined[6];
    for (int i = 0; i < 6; i++) {
        size_t before = hr->joined.len;
        gather(hr, base, req, names[i], &v[i], &len[i]);
        joined[i] = hr->joined.len != before;
    }
    /* Now that `joined` is complete, turn its offsets into pointers. */
    for (int i = 0; i < 6; i++)
        if (joined[i])
            v[i] = hr->joined.data + (uintptr_t)v[i];
    hr->pre.if_match = v[0];
    hr->pre.if_match_len = len[0];
    hr->pre.if_none_match = v[1];
    hr->pre.if_none_match_len = len[1];
    hr->pre.if_modified_since = v[2];
    hr->pre.if_modified_since_len = len[2];
    hr->pre.if_unmodified_since = v[3];
    hr->pre.if_unmodified_since_len = len[3];
    hr->pre.if_range = v[4];
    hr->pre.if_range_len = len[4];
    hr->range = v[5];
    hr->range_len = len[5];
    hr->get = http_span_is(base, req->method, "GET");
    hr->head_request = http_span_is(base, req->method, "HEAD");
    hr->pre.get_or_head = hr->get || hr->head_request;
}

void hit_request_release(struct hit_request *hr)
{
    buf_release(&hr->joined);
}

bool hit_request_conditional(const struct hit_request *hr)
{
    return hr->pre.if_none_match || hr->pre.if_modified_since;
}

/* ---- stored fields -------------------------------------------------------------- */

static bool is_304_field(const char *name, size_t len)
{
    static const char *const keep[] = {"etag", "cache-control", "expires",
                                       "vary", "date",          "content-location"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (strlen(keep[i]) == len && strncasecmp(name, keep[i], len) == 0)
            return true;
    return false;
}

enum field_filter { FIELDS_ALL, FIELDS_304, FIELDS_NO_CONTENT_TYPE, FIELDS_INFLATED };

static bool field_passes(enum field_filter filter, const char *name, size_t len)
{
    switch (filter) {
    case FIELDS_ALL:
        return true;
    case FIELDS_304:
        return is_304_field(name, len);
    case FIELDS_NO_CONTENT_TYPE:
        return !(len == 12 && strncasecmp(name, "content-type", 12) == 0);
    case FIELDS_INFLATED: /* the body's coding, length, tag and digests change */
        return !(len == 16 && strncasecmp(name, "content-encoding", 16) == 0) &&
               !(len == 14 && strncasecmp(name, "content-length", 14) == 0) &&
               !(len == 4 && strncasecmp(name, "etag", 4) == 0) &&
               !encode_is_digest_field(name, len);
    }
    return true;
}

/* The object's header block is ours ("Name: value\r\n" lines): copy the
 * lines the filter keeps. */
static void append_stored_fields(struct buf *out, const struct cache_object *obj,
                                 enum field_filter filter)
{
    if (filter == FIELDS_ALL) {
        buf_append(out, obj->head, obj->head_len);
        return;
    }
    const char *p = obj->head;
    const char *end = obj->head + obj->head_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        const char *colon = memchr(p, ':', (size_t)(next - p));
        if (colon && field_passes(filter, p, (size_t)(colon - p)))
            buf_append(out, p, (size_t)(next - p));
        p = next;
    }
}

/* The value of a stored field, or NULL. */
static const char *stored_field(const struct cache_object *obj, const char *name, size_t *len)
{
    size_t nlen = strlen(name);
    const char *p = obj->head;
    const char *end = obj->head + obj->head_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        if ((size_t)(next - p) > nlen + 1 && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1;
            while (v < next && (*v == ' ' || *v == '\t'))
                v++;
            const char *vend = next;
            while (vend > v && (vend[-1] == '\r' || vend[-1] == '\n' || vend[-1] == ' '))
                vend--;
            *len = (size_t)(vend - v);
            return v;
        }
        p = next;
    }
    return NULL;
}

static void append_tail(struct buf *out, const struct hit_head *hh)
{
    if (hh->fields)
        hh->fields(hh->fields_ctx, out);
    if (hh->close)
        buf_append_str(out, "Connection: close\r\n");
    else if (hh->keep_alive_10)
        buf_append_str(out, "Connection: keep-alive\r\n");
    buf_append(out, "\r\n", 2);
}

static void status_line(struct buf *out, int status)
{
    buf_appendf(out, "HTTP/1.1 %03d %s\r\n", status, http_reason_phrase(status));
}

/* ---- the answer ------------------------------------------------------------------ */

static struct cache_validators object_validators(const struct cache_object *obj)
{
    return (struct cache_validators){
        .etag = obj->etag,
        .etag_len = obj->etag_len,
        .last_modified_ms = obj->last_modified_ms,
        /* RFC 9110 8.8.2.2: a Last-Modified at least a second older than the
         * response's generation is strong enough for If-Range. */
        .last_modified_strong =
            obj->last_modified_ms > 0 && obj->response_time - obj->last_modified_ms >= 1000,
        .exists = true,
    };
}

static void answer_304(const struct cache_object *obj, const struct hit_head *hh, struct buf *out,
                       struct hit_plan *plan)
{
    status_line(out, 304);
    append_stored_fields(out, obj, FIELDS_304);
    append_tail(out, hh);
    plan->status = 304;
}

static void answer_full(const struct cache_object *obj, const struct hit_request *hr,
                        const struct hit_head *hh, struct buf *out, struct hit_plan *plan)
{
    status_line(out, obj->status);
    append_stored_fields(out, obj, FIELDS_ALL);
    bool body = http_status_has_body(obj->status, false);
    if (body)
        buf_appendf(out, "Content-Length: %zu\r\n", obj->body_len);
    append_tail(out, hh);
    plan->status = obj->status;
    plan->body_end = body && !hr->head_request ? obj->body_len : 0;
}

static void answer_416(const struct cache_object *obj, const struct hit_head *hh, struct buf *out,
                       struct hit_plan *plan)
{
    char cr[64];
    cache_range_unsatisfied(cr, sizeof cr, obj->body_len);
    status_line(out, 416);
    append_stored_fields(out, obj, FIELDS_304);
    buf_appendf(out, "Content-Range: %s\r\nContent-Length: 0\r\n", cr);
    append_tail(out, hh);
    plan->status = 416;
}

static void answer_one_range(const struct cache_object *obj, const struct cache_range *r,
                             const struct hit_head *hh, struct buf *out, struct hit_plan *plan)
{
    char cr[96];
    cache_range_content_range(cr, sizeof cr, r->start, r->end, obj->body_len);
    status_line(out, 206);
    append_stored_fields(out, obj, FIELDS_ALL);
    buf_appendf(out, "Content-Range: %s\r\nContent-Length: %" PRIu64 "\r\n", cr,
                r->end - r->start + 1);
    append_tail(out, hh);
    plan->status = 206;
    plan->body_start = r->start;
    plan->body_end = r->end + 1;
}

/* Several ranges: multipart/byteranges (RFC 9110 14.6), written whole
 * into out (part headers and copied slices), with its exact length. */
static void answer_multipart(const struct cache_object *obj, const struct cache_ranges *rs,
                             const struct hit_head *hh, struct buf *out, struct hit_plan *plan)
{
    char boundary[33];
    cache_range_boundary(hh->seed, boundary);
    size_t ctype_len = 0;
    const char *ctype = stored_field(obj, "content-type", &ctype_len);
    uint64_t length = cache_range_multipart_length(rs, boundary, ctype, ctype_len, obj->body_len);
    status_line(out, 206);
    append_stored_fields(out, obj, FIELDS_NO_CONTENT_TYPE);
    buf_appendf(
        out, "Content-Type: multipart/byteranges; boundary=%s\r\nContent-Length: %" PRIu64 "\r\n",
        boundary, length);
    append_tail(out, hh);
    plan->status = 206;
    for (size_t i = 0; i < rs->n; i++) {
        char part[512];
        size_t n = cache_range_part_header(part, sizeof part, i == 0, boundary, ctype, ctype_len,
                                           rs->r[i].start, rs->r[i].end, obj->body_len);
        buf_append(out, part, n < sizeof part ? n : sizeof part - 1);
        struct iovec iov[64];
        uint64_t at = rs->r[i].start;
        uint64_t end = rs->r[i].end + 1;
        while (at < end) {
            size_t niov = cache_object_body_iov(obj, at, iov, 64);
            for (size_t k = 0; k < niov && at < end; k++) {
                size_t take = iov[k].iov_len;
                if (take > end - at)
                    take = (size_t)(end - at);
                buf_append(out, iov[k].iov_base, take);
                at += take;
            }
            if (niov == 0)
                break;
        }
    }
    char trailer[64];
    size_t n = cache_range_trailer(trailer, sizeof trailer, boundary);
    buf_append(out, trailer, n);
}

static void answer_ranges(const struct cache_object *obj, const struct hit_request *hr,
                          const struct hit_head *hh, struct buf *out, struct hit_plan *plan)
{
    struct cache_validators v = object_validators(obj);
    if (hr->pre.if_range && !cache_if_range_matches(hr->pre.if_range, hr->pre.if_range_len, &v)) {
        answer_full(obj, hr, hh, out, plan);
        return;
    }
    struct cache_ranges rs;
    cache_range_parse(hr->range, hr->range_len, obj->body_len, &rs);
    if (rs.status == 416)
        answer_416(obj, hh, out, plan);
    else if (rs.status == 206 && rs.n == 1)
        answer_one_range(obj, &rs.r[0], hh, out, plan);
    else if (rs.status == 206)
        answer_multipart(obj, &rs, hh, out, plan);
    else
        answer_full(obj, hr, hh, out, plan);
}

void hit_answer(const struct cache_object *obj, const struct hit_request *hr,
                const struct hit_head *hh, struct buf *out, struct hit_plan *plan, int64_t now_ms)
{
    memset(plan, 0, sizeof *plan);
    /* RFC 9110 13.2.1: preconditions apply when the answer would be a 2xx. */
    if (obj->status >= 200 && obj->status < 300) {
        struct cache_validators v = object_validators(obj);
        switch (cache_evaluate_preconditions(&hr->pre, &v, now_ms)) {
        case PRECONDITION_NOT_MODIFIED:
            answer_304(obj, hh, out, plan);
            return;
        case PRECONDITION_FAILED:
            plan->status = 412;
            return;
        case PRECONDITION_PROCEED:
            break;
        }
    }
    if (hr->range && hr->get && obj->status == 200)
        answer_ranges(obj, hr, hh, out, plan);
    else
        answer_full(obj, hr, hh, out, plan);
}

void hit_inflated_head(const struct cache_object *obj, const struct hit_head *hh, const char *etag,
                       size_t etag_len, bool chunked, struct buf *out)
{
    status_line(out, obj->status);
    append_stored_fields(out, obj, FIELDS_INFLATED);
    if (etag_len > 0)
        buf_appendf(out, "ETag: %.*s\r\n", (int)etag_len, etag);
    if (chunked)
        buf_append_str(out, "Transfer-Encoding: chunked\r\n");
    append_tail(out, hh);
}

bool hit_not_modified_from_response(const char *base, const struct http_head *resp,
                                    const struct hit_request *hr, const struct hit_head *hh,
                                    struct buf *out, int64_t now_ms)
{
    if (resp->status != 200 || !hit_request_conditional(hr) || !hr->pre.get_or_head)
        return false;
    const struct http_field *etag = http_head_find(base, resp, "etag");
    const struct http_field *lm = http_head_find(base, resp, "last-modified");
    int64_t lm_s = 0;
    struct cache_validators v = {
        .etag = etag ? base + etag->value.off : "",
        .etag_len = etag ? etag->value.len : 0,
        .exists = true,
    };
    if (lm && http_date_parse(base + lm->value.off, lm->value.len, &lm_s))
        v.last_modified_ms = lm_s * 1000;
    /* Only the conditions a 200 can answer: If-None-Match and
     * If-Modified-Since (the others were the application's to judge). */
    struct cache_preconditions pre = {
        .if_none_match = hr->pre.if_none_match,
        .if_none_match_len = hr->pre.if_none_match_len,
        .if_modified_since = hr->pre.if_modified_since,
        .if_modified_since_len = hr->pre.if_modified_since_len,
        .get_or_head = true,
    };
    if (cache_evaluate_preconditions(&pre, &v, now_ms) != PRECONDITION_NOT_MODIFIED)
        return false;
    status_line(out, 304);
    for (unsigned i = 0; i < resp->nfields; i++) {
        const struct http_field *f = &resp->fields[i];
        if (!http_field_forwardable(base, resp, f) ||
            !is_304_field(base + f->name.off, f->name.len))
            continue;
        buf_append(out, base + f->name.off, f->name.len);
        buf_append(out, ": ", 2);
        buf_append(out, base + f->value.off, f->value.len);
        buf_append(out, "\r\n", 2);
    }
    append_tail(out, hh);
    return true;
}
