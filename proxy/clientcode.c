/*
 * proxy/clientcode.c: the content coding of a client connection's responses
 * (see client_priv.h): what a relayed or stored body becomes for this client
 * (proxy/encode.h decides), the head fields that say so, feeding the
 * encoder with bounded memory, and the ETags the application sees.
 */
#include "proxy/client_priv.h"

#include <stdio.h>
#include <string.h>

#include "cache/object.h"
#include "proxy/hit.h"
#include "proxy/log.h"
#include "proxy/upstream.h"

/* Inflating is fed in slices this long: one slice makes at most
 * ENCODE_INFLATE_MAX_RATIO times as much output (about 512 KiB). */
#define INFLATE_SLICE 512

bool client_keeps_response_field(const void *ctx, const char *base, const struct http_field *f)
{
    const struct client *c = ctx;
    /* A coded body has its own ETag and Content-Encoding (extra fields),
     * and the digests of the upstream's bytes no longer hold (RFC 9530). */
    if (c->encode.action != ENCODE_NONE &&
        (http_span_is(base, f->name, "etag") || http_span_is(base, f->name, "content-encoding") ||
         encode_is_digest_field(base + f->name.off, f->name.len)))
        return false;
    return cache_req_forwards_field(&c->cr, base, f);
}

/* The client's Accept-Encoding, its lines joined (NULL: none).  A request
 * that says Cache-Control: no-transform (RFC 9111 5.2.1.6) asks for the
 * body as the origin made it: it counts as "identity". */
const char *client_accept_encoding(struct client *c, size_t *len)
{
    const char *base = c->in.data;
    for (unsigned i = 0; i < c->req.nfields; i++) {
        const struct http_field *f = &c->req.fields[i];
        if (http_span_is(base, f->name, "cache-control") &&
            http_list_has_token(base + f->value.off, f->value.len, "no-transform", 12)) {
            *len = 8;
            return "identity";
        }
    }
    /* Several lines are one list (RFC 9110 5.3): joined once, kept for the
     * request in ae_joined. */
    if (http_head_count(base, &c->req, "accept-encoding") > 1 && c->ae_joined.len == 0) {
        for (unsigned i = 0; i < c->req.nfields; i++) {
            const struct http_field *f = &c->req.fields[i];
            if (!http_span_is(base, f->name, "accept-encoding"))
                continue;
            if (c->ae_joined.len > 0)
                buf_append(&c->ae_joined, ", ", 2);
            buf_append(&c->ae_joined, base + f->value.off, f->value.len);
        }
    }
    if (c->ae_joined.len > 0 && !c->ae_joined.oom) {
        *len = c->ae_joined.len;
        return c->ae_joined.data;
    }
    const struct http_field *f = http_head_find(base, &c->req, "accept-encoding");
    *len = f ? f->value.len : 0;
    return f ? base + f->value.off : NULL;
}

/* Encoded body bytes on their way to the client. */
static bool encoded_sink(void *ctx, const void *p, size_t n)
{
    struct client *c = ctx;
    if (n == 0)
        return true;
    if (c->resp_framing == FRAMING_CHUNKED)
        client_write_chunk(c, p, n);
    else
        client_write(c, p, n);
    c->resp_body += n;
    return !c->out.oom;
}

/* What the relayed response's body becomes (c->encode); a response the
 * route could code says so in Vary, whatever this client gets (a 304 too). */
void client_plan_coding(struct client *c, const char *base, const struct http_head *head,
                        struct buf *extra)
{
    struct encode_response r;
    encode_response_from_head(&r, base, head, c->head_request);
    size_t ae_len;
    const char *ae = client_accept_encoding(c, &ae_len);
    encode_plan_for(&c->route->compress, ae, ae_len, &r, &c->encode);
    if (c->encode.vary)
        buf_append_str(extra, "Vary: Accept-Encoding\r\n");
}

/* The fields and framing of a coded body (after client_plan_coding). */
static void encoding_fields(struct client *c, const char *base, const struct http_head *head,
                            struct forward_response *fr, struct buf *extra, bool http11)
{
    if (c->encode.action == ENCODE_NONE)
        return;
    if (c->encode.action == ENCODE_COMPRESS)
        buf_appendf(extra, "Content-Encoding: %s\r\n", coding_name(c->encode.coding));
    const struct http_field *etag = http_head_find(base, head, "etag");
    char tag[CACHE_OBJECT_ETAG_MAX + 16];
    size_t n = etag ? encode_etag(base + etag->value.off, etag->value.len, c->encode.coding,
                                  c->encode.action == ENCODE_INFLATE, tag, sizeof tag)
                    : 0;
    if (n > 0)
        buf_appendf(extra, "ETag: %.*s\r\n", (int)n, tag);
    fr->send_length = false;
    if (fr->framing == FRAMING_NONE)
        return; /* HEAD: the head alone */
    if (http11) {
        fr->framing = FRAMING_CHUNKED;
    } else {
        fr->framing = FRAMING_CLOSE;
        c->close_after = true;
    }
    c->resp_length = 0;
}

/* Relay the upstream's head, its body coded as the route's compress policy
 * and the client's Accept-Encoding say. */
void client_relay_head(struct client *c, const char *base, const struct http_head *head,
                       struct forward_response *fr, struct buf *extra, bool http11)
{
    encoding_fields(c, base, head, fr, extra, http11);
    fr->close = c->close_after;
    fr->keep_alive_10 = !http11 && !fr->close;
    fr->extra = extra->data;
    fr->extra_len = extra->len;
    c->resp_framing = fr->framing;
    forward_response_head(&c->out, base, head, fr);
    if (c->encode.action == ENCODE_NONE || fr->framing == FRAMING_NONE)
        return;
    if (!encoder_start(&c->enc, &c->encode, &c->route->compress, encoded_sink, c)) {
        /* Nothing of the body is out yet: a coded response cannot be
         * sent, and the head said it would be. */
        log_error("client %s: cannot start the encoder: %s", c->addr, c->enc.err);
        client_close(c);
    }
}

bool client_start_encoder(struct client *c)
{
    if (encoder_start(&c->enc, &c->encode, &c->route->compress, encoded_sink, c))
        return true;
    log_error("client %s: cannot start the encoder: %s", c->addr, c->enc.err);
    return false;
}

/* The body could not be coded (a corrupt or oversized gzip body, or no
 * memory): the client cannot be given a complete response: cut the
 * connection, so it cannot take a truncated body for a whole one. */
void client_code_failed(struct client *c)
{
    log_warn("client %s: response body coding failed: %s", c->addr, c->enc.err);
    encoder_free(&c->enc);
    cache_req_response_failed(&c->cr, client_now_ms(c));
    client_close(c);
}

/* Feed upstream body bytes to the encoder.  An inflater is fed in slices
 * and stops once `out` is past OUT_HIGH_WATER: the rest waits in
 * enc_pending (the upstream is paused), so a body that inflates a
 * thousandfold never floods `out`.  False when the coding failed (the
 * connection is then cut). */
bool client_code_body(struct client *c, const char *p, size_t n)
{
    if (c->encode.action != ENCODE_INFLATE) {
        if (encoder_write(&c->enc, p, n))
            return true;
        client_code_failed(c);
        return false;
    }
    size_t off = 0;
    while (off < n) {
        if (buf_pending(&c->out) > OUT_HIGH_WATER) {
            buf_append(&c->enc_pending, p + off, n - off);
            if (c->up)
                upstream_pause(c->up);
            return true;
        }
        size_t k = n - off < INFLATE_SLICE ? n - off : INFLATE_SLICE;
        if (!encoder_write(&c->enc, p + off, k)) {
            client_code_failed(c);
            return false;
        }
        off += k;
    }
    return true;
}

/* `out` drained: code the body bytes that waited, then go on (write
 * them, end the response if the upstream's ended meanwhile, or let the
 * upstream resume). */
void client_code_pending(struct client *c)
{
    struct buf pending = c->enc_pending;
    c->enc_pending = (struct buf){0};
    bool ok = client_code_body(c, pending.data + pending.off, buf_pending(&pending));
    buf_release(&pending);
    if (!ok)
        return;
    if (buf_pending(&c->enc_pending) == 0 && c->enc_end_pending) {
        c->enc_end_pending = false;
        client_relay_end(c);
        return;
    }
    client_flush(c);
}

/* Give cr.obj its coded variant, once per request (proxy/encode.h). */
enum cache_lookup_result client_code_hit(struct client *c, bool remote_ok)
{
    if (c->encode_checked)
        return CACHE_LOOKUP_HIT;
    c->encode_checked = true;
    size_t ae_len;
    const char *ae = client_accept_encoding(c, &ae_len);
    bool ranged = http_head_find(c->in.data, &c->req, "range") != NULL;
    return cache_req_encode_hit(&c->cr, c->w, ae, ae_len, c->head_request, ranged, remote_ok,
                                client_now_ms(c));
}

/* Answer with the stored gzip body inflated on the way, for a client that
 * does not take gzip when no inflated variant could be stored (its body
 * outgrew max_object_size): a 200 (preconditions and ranges are not
 * evaluated on this rare path), chunked, fed through the encoder with the
 * same bounded memory as a relayed body. */
void client_serve_inflated(struct client *c)
{
    const struct cache_object *obj = c->cr.obj;
    bool http11 = c->req.major == 1 && c->req.minor >= 1;
    if (!c->keep_alive || c->w->draining || !http11)
        c->close_after = true;
    char tag[CACHE_OBJECT_ETAG_MAX + 16];
    size_t tlen = obj->etag_len ? encode_etag(obj->etag, obj->etag_len, CODING_IDENTITY, true, tag,
                                              sizeof tag)
                                : 0;
    struct hit_head hh = {
        .close = c->close_after,
        .keep_alive_10 = false,
        .fields = cache_req_hit_fields,
        .fields_ctx = &c->cr,
    };
    bool body = http_status_has_body(obj->status, c->head_request);
    hit_inflated_head(obj, &hh, tag, tlen, body && http11, &c->out);
    c->status = obj->status;
    c->resp_started = true;
    c->resp_framing = !body ? FRAMING_NONE : http11 ? FRAMING_CHUNKED : FRAMING_CLOSE;
    if (!body) {
        c->resp_done = true;
        client_flush(c);
        return;
    }
    c->encode = (struct encode_plan){.action = ENCODE_INFLATE, .coding = CODING_IDENTITY};
    if (!encoder_start(&c->enc, &c->encode, &c->route->compress, encoded_sink, c)) {
        log_error("client %s: cannot start the inflater: %s", c->addr, c->enc.err);
        client_close(c);
        return;
    }
    for (size_t i = 0; i < obj->nbody; i++)
        buf_append(&c->enc_pending, obj->body[i].iov_base, obj->body[i].iov_len);
    c->enc_end_pending = true;
    client_code_pending(c);
}

static bool is_etag_condition(const char *base, struct http_span name)
{
    return http_span_is(base, name, "if-none-match") || http_span_is(base, name, "if-match") ||
           http_span_is(base, name, "if-range");
}

/* A condition naming a coded ETag ("abc-br"): its application-side form
 * goes upstream instead (see client_etag_conditions). */
bool client_names_coded_etag(const struct client *c, const char *base, const struct http_field *f)
{
    char tmp[1024];
    return c->route->compress.enabled && is_etag_condition(base, f->name) &&
           encode_strip_etag_suffixes(base + f->value.off, f->value.len, tmp, sizeof tmp) > 0;
}

/* The client's conditions with the coding suffixes of our ETags taken out:
 * the application knows "abc", not the "abc-br" we made of it. */
void client_etag_conditions(const struct client *c, struct buf *extra)
{
    const char *base = c->in.data;
    for (unsigned i = 0; i < c->req.nfields; i++) {
        const struct http_field *f = &c->req.fields[i];
        if (!cache_req_upstream_keeps_field(&c->cr, base, f) ||
            !client_names_coded_etag(c, base, f))
            continue;
        char value[1024];
        size_t n =
            encode_strip_etag_suffixes(base + f->value.off, f->value.len, value, sizeof value);
        buf_append(extra, base + f->name.off, f->name.len);
        buf_appendf(extra, ": %.*s\r\n", (int)n, value);
    }
}
