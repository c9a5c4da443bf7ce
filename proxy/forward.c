/*
 * proxy/forward.c: building the heads tessera forwards (see forward.h).
 * No state; safe from any thread.
 */
#include "proxy/forward.h"

#include <inttypes.h>
#include <string.h>

static void append_field(struct buf *out, const char *base, const struct http_field *f)
{
    buf_append(out, base + f->name.off, f->name.len);
    buf_append(out, ": ", 2);
    buf_append(out, base + f->value.off, f->value.len);
    buf_append(out, "\r\n", 2);
}

static bool replaced_in_request(const char *base, const struct http_field *f)
{
    return http_span_is(base, f->name, "host") || http_span_is(base, f->name, "x-forwarded-for") ||
           http_span_is(base, f->name, "x-forwarded-proto") ||
           http_span_is(base, f->name, "x-forwarded-host");
}

/* One X-Forwarded-For line: the values the client sent, in order, then
 * the address tessera saw (the de-facto list convention). */
static void append_forwarded_for(struct buf *out, const char *base, const struct http_head *req,
                                 const char *client_addr)
{
    buf_append_str(out, "X-Forwarded-For: ");
    for (unsigned i = 0; i < req->nfields; i++) {
        const struct http_field *f = &req->fields[i];
        if (!http_span_is(base, f->name, "x-forwarded-for") || f->value.len == 0)
            continue;
        buf_append(out, base + f->value.off, f->value.len);
        buf_append(out, ", ", 2);
    }
    buf_append_str(out, client_addr);
    buf_append(out, "\r\n", 2);
}

static void append_framing(struct buf *out, enum body_framing framing, uint64_t length)
{
    if (framing == FRAMING_LENGTH)
        buf_appendf(out, "Content-Length: %" PRIu64 "\r\n", length);
    else if (framing == FRAMING_CHUNKED)
        buf_append_str(out, "Transfer-Encoding: chunked\r\n");
}

void forward_request_head(struct buf *out, const char *base, const struct http_head *req,
                          const struct forward_request *fr)
{
    if (fr->method)
        buf_append_str(out, fr->method);
    else
        buf_append(out, base + req->method.off, req->method.len);
    buf_append(out, " ", 1);
    buf_append(out, fr->target, fr->target_len);
    buf_append_str(out, " HTTP/1.1\r\n");
    buf_append_str(out, "Host: ");
    buf_append(out, fr->host, fr->host_len);
    buf_append(out, "\r\n", 2);
    for (unsigned i = 0; i < req->nfields; i++) {
        const struct http_field *f = &req->fields[i];
        if (!http_field_forwardable(base, req, f) || replaced_in_request(base, f))
            continue;
        if (fr->keep && !fr->keep(fr->keep_ctx, base, f))
            continue;
        append_field(out, base, f);
    }
    if (fr->extra)
        buf_append(out, fr->extra, fr->extra_len);
    append_forwarded_for(out, base, req, fr->client_addr);
    buf_appendf(out, "X-Forwarded-Proto: %s\r\n", fr->proto);
    buf_append_str(out, "X-Forwarded-Host: ");
    buf_append(out, fr->host, fr->host_len);
    buf_append(out, "\r\n", 2);
    buf_appendf(out, "Via: %u.%u " VIA_NAME "\r\n", req->major, req->minor);
    append_framing(out, fr->framing, fr->length);
    if (fr->close)
        buf_append_str(out, "Connection: close\r\n");
    buf_append(out, "\r\n", 2);
}

static void append_status_line(struct buf *out, const char *base, const struct http_head *resp)
{
    buf_appendf(out, "HTTP/1.1 %03d ", resp->status);
    if (resp->reason.len > 0)
        buf_append(out, base + resp->reason.off, resp->reason.len);
    else
        buf_append_str(out, http_reason_phrase(resp->status));
    buf_append(out, "\r\n", 2);
}

void forward_response_head(struct buf *out, const char *base, const struct http_head *resp,
                           const struct forward_response *fr)
{
    append_status_line(out, base, resp);
    bool has_date = false;
    for (unsigned i = 0; i < resp->nfields; i++) {
        const struct http_field *f = &resp->fields[i];
        if (!http_field_forwardable(base, resp, f))
            continue;
        if (fr->keep && !fr->keep(fr->keep_ctx, base, f))
            continue;
        has_date |= http_span_is(base, f->name, "date");
        append_field(out, base, f);
    }
    if (!has_date && fr->date)
        buf_appendf(out, "Date: %s\r\n", fr->date);
    buf_appendf(out, "Via: %u.%u " VIA_NAME "\r\n", resp->major, resp->minor);
    if (fr->extra)
        buf_append(out, fr->extra, fr->extra_len);
    if (fr->send_length)
        buf_appendf(out, "Content-Length: %" PRIu64 "\r\n", fr->length);
    else
        append_framing(out, fr->framing, fr->length);
    if (fr->close)
        buf_append_str(out, "Connection: close\r\n");
    else if (fr->keep_alive_10)
        buf_append_str(out, "Connection: keep-alive\r\n");
    buf_append(out, "\r\n", 2);
}

void forward_interim_head(struct buf *out, const char *base, const struct http_head *resp)
{
    append_status_line(out, base, resp);
    for (unsigned i = 0; i < resp->nfields; i++)
        if (http_field_forwardable(base, resp, &resp->fields[i]))
            append_field(out, base, &resp->fields[i]);
    buf_append(out, "\r\n", 2);
}
