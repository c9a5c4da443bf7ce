/*
 * proxy/client.c: client connections (see client.h).
 *
 * States (client_set_state() checks the transitions):
 *
 *        accept
 *          |
 *          v     first byte          head parsed, upstream chosen
 *   .--> IDLE ----------------> HEAD -------------------------------> PROXY
 *   |      ^                     |  bad head, limit, timeout            |
 *   |      |                     v                                      |
 *   |      |                  CLOSING <------ error, close wanted ------+
 *   |      |                                                            |
 *   |      '---- response written, keep-alive, nothing buffered --------+
 *   '----------- response written, keep-alive, next request buffered ---' (via HEAD)
 *
 * Buffers: `in` holds raw bytes from the client.  While a head is parsed
 * its bytes stay at in[0, parsed); the spans of `req` point there.  Body
 * bytes are dropped from `in` as soon as llhttp has handed them on, so
 * `in` never holds more than the head plus one read.  `out` holds bytes
 * for the client; past OUT_HIGH_WATER the upstream is paused until `out`
 * falls under OUT_LOW_WATER.  Likewise the client is not read while the
 * upstream has UP_HIGH_WATER bytes queued.  Idle connections hold no
 * buffers.
 *
 * Freeing: a client is only freed from the worker's check watcher
 * (client_close() marks it dead), so no callback ever runs on freed memory
 * (STYLE 10).
 */
#include "proxy/client.h"
#include "proxy/client_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cache/store.h"
#include "proxy/buf.h"
#include "proxy/cachepath.h"
#include "proxy/encode.h"
#include "proxy/esipage.h"
#include "proxy/forward.h"
#include "proxy/hit.h"
#include "proxy/revalidate.h"
#include "proxy/http.h"
#include "proxy/log.h"
#include "proxy/router.h"
#include "proxy/upstream.h"

static void client_serve_hit(struct client *c);
static struct client *client_new(struct worker *w, struct wcfg *wc, int fd);

int64_t client_now_ms(const struct client *c)
{
    return (int64_t)(ev_now(c->w->loop) * 1000.0);
}

static void client_parse(struct client *c);
static void client_arm(struct client *c);
static void request_end(struct client *c);

/* ---- list and state ------------------------------------------------------ */

void client_link(struct client **head, struct client *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

void client_unlink(struct client **head, struct client *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

bool client_is_subrequest(const struct client *c)
{
    return c->subrequest;
}

struct client *client_next(const struct client *c)
{
    return c->next;
}

static const char *state_name(enum client_state s)
{
    static const char *const names[] = {"idle", "head", "proxy", "closing", "dead"};
    return names[s];
}

static void client_set_state(struct client *c, enum client_state to)
{
    static const bool legal[5][5] = {
        /* to:        IDLE   HEAD   PROXY  CLOSING DEAD */
        [CS_IDLE] = {false, true, false, true, true},
        [CS_HEAD] = {false, false, true, true, true},
        [CS_PROXY] = {true, true, false, true, true},
        [CS_CLOSING] = {false, false, false, false, true},
        [CS_DEAD] = {false, false, false, false, false},
    };
    if (!legal[c->state][to]) {
        log_error("client %s: illegal state change %s -> %s", c->addr, state_name(c->state),
                  state_name(to));
        abort();
    }
    c->state = to;
}

/* ---- writing to the client ---------------------------------------------- */

void client_write(struct client *c, const void *p, size_t n)
{
    buf_append(&c->out, p, n);
}

void client_write_chunk(struct client *c, const char *p, size_t n)
{
    char size[32];
    int len = snprintf(size, sizeof size, "%zx\r\n", n);
    client_write(c, size, (size_t)len);
    client_write(c, p, n);
    client_write(c, "\r\n", 2);
}

static bool client_writing(const struct client *c)
{
    return buf_pending(&c->out) > 0 || c->hit_body;
}

enum write_result { WRITE_DONE, WRITE_BLOCKED, WRITE_FAILED };

/* The object's body from hit_off, cut at hit_end (a range). */
static size_t hit_iov(const struct client *c, struct iovec *iov, size_t max)
{
    size_t n = cache_object_body_iov(c->cr.obj, c->hit_off, iov, max);
    uint64_t left = c->hit_end - c->hit_off;
    for (size_t i = 0; i < n; i++) {
        if (iov[i].iov_len >= left) {
            iov[i].iov_len = (size_t)left;
            return i + 1;
        }
        left -= iov[i].iov_len;
    }
    return n;
}

/* Write `out`, then the hit body straight from the stored object (no copy:
 * writev over its chunks). */
static enum write_result client_write_some(struct client *c)
{
    for (;;) {
        struct iovec iov[16];
        size_t niov = 0;
        if (buf_pending(&c->out) > 0) {
            iov[0].iov_base = c->out.data + c->out.off;
            iov[0].iov_len = buf_pending(&c->out);
            niov = 1;
        }
        if (c->hit_body)
            niov += hit_iov(c, iov + niov, 16 - niov);
        if (niov == 0) {
            c->hit_body = false;
            return WRITE_DONE;
        }
        ssize_t n;
        if (c->subrequest) {
            if (!c->slot)
                return WRITE_FAILED; /* its page is gone */
            n = (ssize_t)esi_slot_take(c->slot, iov, niov);
            if (n == 0)
                return WRITE_BLOCKED; /* the page resumes it (client_flush) */
        } else {
            n = writev(c->fd, iov, (int)niov);
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return WRITE_BLOCKED;
        if (n <= 0) {
            log_debug("client %s: write failed: %s", c->addr, n < 0 ? strerror(errno) : "closed");
            return WRITE_FAILED;
        }
        c->t_activity = ev_now(c->w->loop);
        size_t left = (size_t)n;
        size_t from_out = left < buf_pending(&c->out) ? left : buf_pending(&c->out);
        buf_consume(&c->out, from_out);
        left -= from_out;
        c->hit_off += left;
        if (c->hit_body && c->hit_off >= c->hit_end)
            c->hit_body = false;
    }
}

void client_flush(struct client *c)
{
    if (c->state == CS_DEAD)
        return;
    if (c->out.oom) {
        client_close(c);
        return;
    }
    switch (client_write_some(c)) {
    case WRITE_BLOCKED:
        if (!c->subrequest)
            ev_io_start(c->w->loop, &c->wio);
        client_arm(c);
        return;
    case WRITE_FAILED:
        client_close(c);
        return;
    case WRITE_DONE:
        break;
    }
    ev_io_stop(c->w->loop, &c->wio);
    if (buf_pending(&c->enc_pending) > 0 && buf_pending(&c->out) < OUT_LOW_WATER) {
        client_code_pending(c);
        return;
    }
    if (c->page && !c->resp_done && buf_pending(&c->out) < OUT_LOW_WATER)
        esi_page_drained(c->page); /* more of the page, later in this loop iteration */
    if (c->up && buf_pending(&c->out) < OUT_LOW_WATER)
        upstream_resume(c->up);
    if (c->state == CS_CLOSING) {
        client_close(c);
        return;
    }
    if (c->state == CS_PROXY && c->resp_done)
        request_end(c);
    else
        client_arm(c);
}

/* ---- error responses ----------------------------------------------------- */

static bool must_close_after_error(int status)
{
    return status == 400 || status == 408 || status == 413 || status == 414 || status == 431 ||
           status == 501 || status == 505;
}

/* Answer the current request with a short plain-text error.  When a
 * response has already started, the only honest thing left is to cut the
 * connection so the client sees the message is incomplete. */
static void client_error(struct client *c, int status, const char *why)
{
    if (c->up)
        upstream_abort(&c->up);
    cache_req_response_failed(&c->cr, client_now_ms(c));
    if (c->resp_started) {
        client_close(c);
        return;
    }
    c->status = status;
    c->resp_started = true;
    bool close = must_close_after_error(status) || !c->req_done || !c->keep_alive ||
                 c->w->draining || c->state == CS_HEAD;
    char body[256];
    int blen = snprintf(body, sizeof body, "%d %s: %s\n", status, http_reason_phrase(status), why);
    buf_appendf(&c->out,
                "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Content-Length: %d\r\nCache-Control: no-store\r\n%s\r\n",
                status, http_reason_phrase(status), worker_date(c->w), blen,
                close ? "Connection: close\r\n" : "");
    if (!c->head_request)
        client_write(c, body, (size_t)blen);
    c->resp_body = c->head_request ? 0 : (uint64_t)blen;
    c->resp_done = true;
    if (close) {
        c->close_after = true;
        if (c->state == CS_HEAD) {
            log_info("client %s: %d %s", c->addr, status, why);
            request_end(c);
            return;
        }
    }
    if (c->state == CS_HEAD)
        client_set_state(c, CS_PROXY);
    client_flush(c);
}

void client_fail(struct client *c, int status, const char *why)
{
    client_error(c, status, why);
}

/* ---- access log ---------------------------------------------------------- */

static struct http_span request_field(const struct client *c, const char *name)
{
    const struct http_field *f = http_head_find(c->in.data, &c->req, name);
    return f ? f->value : (struct http_span){0, 0};
}

static void append_quoted(struct buf *b, const char *p, size_t n)
{
    buf_append(b, "\"", 1);
    if (n == 0)
        buf_append(b, "-", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f)
            buf_appendf(b, "\\x%02X", ch);
        else
            buf_append(b, p + i, 1);
    }
    buf_append(b, "\"", 1);
}

/* Combined log format, then request time, upstream time (seconds) and the
 * cache status. */
static void access_log(struct client *c)
{
    if (!log_access_enabled() || !c->head_done)
        return;
    struct buf b = {0};
    char when[64];
    time_t now = (time_t)ev_now(c->w->loop);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S %z", &tm);
    buf_appendf(&b, "%s - - [%s] \"", c->addr, when);
    const char *base = c->in.data;
    buf_append(&b, base + c->req.method.off, c->req.method.len);
    buf_append(&b, " ", 1);
    size_t tlen = c->req.target.len < 1024 ? c->req.target.len : 1024;
    for (size_t i = 0; i < tlen; i++) {
        unsigned char ch = (unsigned char)base[c->req.target.off + i];
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f)
            buf_appendf(&b, "\\x%02X", ch);
        else
            buf_append(&b, &base[c->req.target.off + i], 1);
    }
    buf_appendf(&b, " HTTP/%u.%u\" %d %" PRIu64 " ", c->req.major, c->req.minor, c->status,
                c->resp_body);
    struct http_span ref = request_field(c, "referer");
    struct http_span ua = request_field(c, "user-agent");
    append_quoted(&b, base + ref.off, ref.len < 512 ? ref.len : 512);
    buf_append(&b, " ", 1);
    append_quoted(&b, base + ua.off, ua.len < 512 ? ua.len : 512);
    double req_time = ev_now(c->w->loop) - c->t_start;
    static const char *const outcomes[] = {"PASS", "HIT", "MISS", "STALE"};
    const char *cache = outcomes[c->cr.outcome];
    const char *sub = c->subrequest ? " esi" : "";
    if (c->upstream_time >= 0)
        buf_appendf(&b, " %.3f %.3f %s%s\n", req_time, c->upstream_time, cache, sub);
    else
        buf_appendf(&b, " %.3f - %s%s\n", req_time, cache, sub);
    if (!b.oom)
        log_access_write(b.data, b.len);
    buf_release(&b);
}

/* ---- request lifecycle ---------------------------------------------------- */

static void request_reset(struct client *c)
{
    http_head_reset(&c->req);
    c->field = NULL;
    c->in_value = false;
    buf_reset(&c->trailers);
    buf_reset(&c->uphead);
    buf_release(&c->upbody);
    c->action = ACT_NONE;
    c->hit_off = c->hit_end = 0;
    c->hit_body = false;
    c->discard_body = c->answer_from_cache = false;
    c->encode_checked = false;
    c->encode = (struct encode_plan){.action = ENCODE_NONE, .coding = CODING_IDENTITY};
    encoder_free(&c->enc);
    buf_release(&c->enc_pending);
    buf_release(&c->ae_joined);
    c->enc_end_pending = false;
    esi_page_free(&c->page, true);
    cache_req_reset(&c->cr);
    c->route = NULL;
    c->retries = 0;
    c->head_request = c->head_as_get = c->idempotent = c->keep_alive = false;
    c->req_framing = FRAMING_NONE;
    c->req_body = 0;
    c->head_done = c->req_done = c->resp_started = c->resp_done = false;
    c->resp_framing = FRAMING_NONE;
    c->status = 0;
    c->resp_body = 0;
    c->resp_length = 0;
    c->verdict = (struct http_verdict){0, NULL};
    c->upstream_time = -1;
}

/* A request starts: it runs under the worker's newest config (a reload
 * while the connection was idle or busy applies from here on). */
static void request_begin(struct client *c)
{
    if (c->wc != c->w->wcfg) {
        wcfg_release(&c->wc);
        c->wc = wcfg_ref(c->w->wcfg);
    }
    c->t_start = ev_now(c->w->loop);
}

/* Drop the bytes of the finished request from `in`, keeping what follows
 * (a pipelined request). */
static void in_drop_request(struct client *c)
{
    size_t rest = c->in.len - c->parsed;
    if (rest > 0)
        memmove(c->in.data, c->in.data + c->parsed, rest);
    c->in.len = rest;
    c->in.off = 0;
    c->parsed = 0;
    c->head_start = 0;
}

/* The request's figures, for /stats and /metrics. */
static void count_request(struct client *c)
{
    struct stats_worker *ws = &c->w->stats;
    stats_add(&ws->requests, 1);
    const struct stats_worker *cs = c->wc ? &c->wc->stats : NULL;
    if (!c->route || !cs || c->route->index >= cs->nroutes) {
        if (c->status >= 400 && c->status < 500)
            stats_add(&ws->bad_requests, 1);
        return;
    }
    struct stats_route *rs = &cs->routes[c->route->index];
    stats_add(&rs->requests, 1);
    int cls = c->status / 100;
    _Atomic uint64_t *by_class[] = {
        NULL, &rs->status_1xx, &rs->status_2xx, &rs->status_3xx, &rs->status_4xx, &rs->status_5xx};
    if (cls >= 1 && cls <= 5)
        stats_add(by_class[cls], 1);
    if (c->subrequest && c->cr.outcome == CACHE_OUT_HIT)
        stats_add(&ws->esi_fragment_hits, 1);
    switch (c->cr.outcome) {
    case CACHE_OUT_HIT:
        stats_add(&rs->hits, 1);
        break;
    case CACHE_OUT_STALE:
        stats_add(&rs->stale, 1);
        break;
    case CACHE_OUT_MISS:
        stats_add(&rs->misses, 1);
        break;
    case CACHE_OUT_PASS:
        stats_add(&rs->passes, 1);
        break;
    }
    uint64_t head = c->head_end > c->head_start ? c->head_end - c->head_start : 0;
    stats_add(&rs->bytes_in, head + c->req_body);
    stats_add(&rs->bytes_out, c->resp_body);
    double t = ev_now(c->w->loop) - c->t_start;
    stats_observe(&rs->request_time, t > 0 ? (uint64_t)(t * 1e6) : 0);
}

/* The upstream's figures for the route's backend. */
static struct stats_backend *backend_stats(struct client *c)
{
    const struct stats_worker *cs = c->wc ? &c->wc->stats : NULL;
    if (!c->route || !cs || !c->route->backend)
        return NULL;
    size_t i = (size_t)(c->route->backend - c->wc->cfg->backends);
    return i < cs->nbackends ? &cs->backends[i] : NULL;
}

static void request_end(struct client *c)
{
    count_request(c);
    access_log(c);
    bool close = c->close_after || !c->keep_alive || !c->req_done || c->w->draining;
    if (close) {
        if (c->state != CS_CLOSING)
            client_set_state(c, CS_CLOSING);
        if (!client_writing(c))
            client_close(c);
        else
            client_flush(c);
        return;
    }
    in_drop_request(c);
    request_reset(c);
    llhttp_resume(&c->parser);
    if (c->in.len == 0) {
        client_set_state(c, CS_IDLE);
        buf_release(&c->in);
        buf_release(&c->out);
        ev_io_start(c->w->loop, &c->rio);
        client_arm(c);
        return;
    }
    client_set_state(c, CS_HEAD);
    request_begin(c);
    client_parse(c);
}

/* ---- the upstream side --------------------------------------------------- */

static uint64_t parse_length(const char *base, const struct http_head *h, bool *found)
{
    const struct http_field *f = http_head_find(base, h, "content-length");
    *found = false;
    if (!f || f->value.len == 0 || f->value.len > 19)
        return 0;
    uint64_t v = 0;
    for (uint32_t i = 0; i < f->value.len; i++) {
        char ch = base[f->value.off + i];
        if (ch < '0' || ch > '9')
            return 0;
        v = v * 10 + (uint64_t)(ch - '0');
    }
    *found = true;
    return v;
}

static void append_extra(void *ctx, struct buf *out)
{
    const struct buf *extra = ctx;
    buf_append(out, extra->data, extra->len);
}

/* A 200 that satisfies the client's If-None-Match / If-Modified-Since
 * (the application ignored them, or the cache kept them to itself) goes
 * out as a 304; its body is read and dropped (and still stored). */
static bool answer_conditionally(struct client *c, const char *base, const struct http_head *head,
                                 const struct forward_response *fr)
{
    if (!c->route->cache.conditional_pass && !c->cr.fetch_full)
        return false;
    struct hit_request hr;
    hit_request_init(&hr, c->in.data, &c->req);
    struct buf extra = {.data = (char *)fr->extra, .len = fr->extra_len, .cap = fr->extra_len};
    struct hit_head hh = {
        .close = fr->close,
        .keep_alive_10 = fr->keep_alive_10,
        .fields = append_extra,
        .fields_ctx = &extra,
    };
    bool done = hit_not_modified_from_response(base, head, &hr, &hh, &c->out, client_now_ms(c));
    hit_request_release(&hr);
    if (!done)
        return false;
    c->status = 304;
    c->resp_framing = FRAMING_NONE;
    c->discard_body = true;
    return true;
}

/* A Range request that missed: the whole object is being fetched for the
 * cache; the range is answered from it once stored.  Only with a known
 * length: then the fill cannot fail for size half-way. */
static bool answer_range_after_fill(struct client *c, bool has_length)
{
    if (!c->cr.fetch_full || !c->cr.builder || !has_length ||
        !http_head_find(c->in.data, &c->req, "range"))
        return false;
    c->resp_started = false;
    c->discard_body = true;
    c->answer_from_cache = true;
    return true;
}

static bool up_on_head(void *owner, const char *base, const struct http_head *head, bool interim)
{
    struct client *c = owner;
    if (interim) {
        /* RFC 9110 15.2: forward 1xx to HTTP/1.1 clients, never to 1.0. */
        if (c->req.minor >= 1 && c->req.major == 1)
            forward_interim_head(&c->out, base, head);
        client_flush(c);
        return c->state != CS_DEAD;
    }
    c->upstream_time = ev_now(c->w->loop) - c->t_upstream;
    struct stats_backend *bs = backend_stats(c);
    if (bs)
        stats_observe(&bs->upstream_time, (uint64_t)(c->upstream_time * 1e6));
    struct buf extra = {0};
    enum cache_head_action action = cache_req_response_head(&c->cr, c->w, c->in.data, &c->req, base,
                                                            head, &extra, client_now_ms(c));
    if (action != CACHE_HEAD_FORWARD) {
        /* Answered from the cache once the upstream's response has ended
         * (its body, if any, is read and dropped). */
        buf_release(&extra);
        c->answer_from_cache = true;
        return true;
    }
    c->status = head->status;
    c->resp_started = true;
    bool has_length;
    uint64_t length = parse_length(base, head, &has_length);
    bool chunked_in = http_head_find(base, head, "transfer-encoding") != NULL;
    struct forward_response fr = {.date = worker_date(c->w)};
    bool http11 = c->req.major == 1 && c->req.minor >= 1;
    if (!http_status_has_body(head->status, c->head_request)) {
        fr.framing = FRAMING_NONE;
        fr.send_length = has_length && head->status != 204 && !chunked_in;
        fr.length = length;
    } else if (has_length && !chunked_in) {
        fr.framing = FRAMING_LENGTH;
        fr.length = length;
        c->resp_length = length;
    } else if (http11) {
        fr.framing = FRAMING_CHUNKED;
    } else {
        fr.framing = FRAMING_CLOSE;
        c->close_after = true;
    }
    if (!c->keep_alive || c->w->draining)
        c->close_after = true;
    client_plan_coding(c, base, head, &extra);
    fr.close = c->close_after;
    fr.keep_alive_10 = !http11 && !fr.close;
    c->resp_framing = fr.framing;
    fr.extra = extra.data;
    fr.extra_len = extra.len;
    fr.keep = client_keeps_response_field;
    fr.keep_ctx = c;
    if (!answer_conditionally(c, base, head, &fr) && !answer_range_after_fill(c, has_length))
        client_relay_head(c, base, head, &fr, &extra, http11);
    if (c->head_as_get && c->state != CS_DEAD) {
        /* Fetched as GET for a HEAD, and not a template: the head alone
         * goes, and the body is not worth reading. */
        upstream_abort(&c->up);
        cache_req_response_failed(&c->cr, client_now_ms(c));
        c->resp_done = true;
        client_flush(c);
        return false;
    }
    buf_release(&extra);
    client_flush(c);
    return c->state != CS_DEAD;
}

static void up_on_body(void *owner, const char *p, size_t n)
{
    struct client *c = owner;
    cache_req_response_body(&c->cr, p, n);
    if (c->discard_body || c->answer_from_cache)
        return;
    if (encoder_active(&c->enc)) {
        if (buf_pending(&c->enc_pending) > 0) /* keep the order: behind what waits */
            buf_append(&c->enc_pending, p, n);
        else if (!client_code_body(c, p, n))
            return;
        if (buf_pending(&c->out) > OUT_HIGH_WATER && c->up)
            upstream_pause(c->up);
        client_flush(c);
        return;
    }
    if (c->resp_framing == FRAMING_CHUNKED)
        client_write_chunk(c, p, n);
    else
        client_write(c, p, n);
    c->resp_body += n;
    if (buf_pending(&c->out) > OUT_HIGH_WATER && c->up)
        upstream_pause(c->up);
    /* The last bytes of a Content-Length body wait for up_on_done: a stored
     * response must be in the cache before its client can see it end. */
    if (c->resp_framing != FRAMING_LENGTH || c->resp_body < c->resp_length)
        client_flush(c);
}

static void up_on_trailers(void *owner, const char *base, const struct http_head *trailers)
{
    struct client *c = owner;
    if (c->resp_framing != FRAMING_CHUNKED)
        return; /* RFC 9110 6.5.1: a recipient may discard trailers */
    if (buf_pending(&c->enc_pending) > 0)
        return; /* the body is still being coded: the trailers go (RFC 9110 6.5.1) */
    if (encoder_active(&c->enc)) {
        bool ok = encoder_finish(&c->enc);
        if (!ok) {
            client_code_failed(c);
            return;
        }
        encoder_free(&c->enc);
    }
    client_write(c, "0\r\n", 3);
    for (unsigned i = 0; i < trailers->nfields; i++) {
        const struct http_field *f = &trailers->fields[i];
        if (!http_field_forwardable(base, trailers, f))
            continue;
        client_write(c, base + f->name.off, f->name.len);
        client_write(c, ": ", 2);
        client_write(c, base + f->value.off, f->value.len);
        client_write(c, "\r\n", 2);
    }
    c->resp_framing = FRAMING_NONE; /* only the final CRLF is left */
    client_write(c, "\r\n", 2);
}

/* The relayed response is over: the encoder's end, the last chunk. */
void client_relay_end(struct client *c)
{
    if (encoder_active(&c->enc) && !c->discard_body) {
        bool ok = encoder_finish(&c->enc);
        if (!ok) {
            client_code_failed(c);
            return;
        }
        encoder_free(&c->enc);
    }
    if (c->resp_framing == FRAMING_CHUNKED)
        client_write(c, "0\r\n\r\n", 5);
    c->resp_done = true;
    if (!c->req_done)
        c->close_after = true; /* the rest of the request body cannot be found */
    client_flush(c);
}

static void up_on_done(void *owner)
{
    struct client *c = owner;
    c->up = NULL;
    cache_req_response_done(&c->cr, c->w, client_now_ms(c));
    if (c->answer_from_cache) {
        if (!c->cr.obj) {
            const char *why = c->cr.esi_fill ? cache_req_esi_error(&c->cr)
                                             : "the response could not be stored to answer from";
            client_error(c, 502, why);
            return;
        }
        client_serve_hit(c);
        return;
    }
    if (buf_pending(&c->enc_pending) > 0) {
        c->enc_end_pending = true; /* client_relay_end() once what waits is coded */
        return;
    }
    client_relay_end(c);
}

static bool request_retryable(const struct client *c, const struct upstream_error *err)
{
    enum upstream_failure failure = err->failure;
    bool reused = err->reused;
    if (!c->idempotent || c->req_framing != FRAMING_NONE || c->resp_started)
        return false;
    if (failure == UPSTREAM_NO_SERVER || failure == UPSTREAM_BAD_RESPONSE)
        return false;
    /* One retry on another server; one more when a pooled connection
     * turned out to be closed (the keep-alive race, RFC 9112 9.3.1). */
    return c->retries == 0 || (reused && failure == UPSTREAM_CLOSED && c->retries < 2);
}

static bool upstream_start(struct client *c, int avoid);
static bool upstream_head_build(struct client *c);

static int upstream_failure_status(enum upstream_failure failure)
{
    return failure == UPSTREAM_TIMEOUT || failure == UPSTREAM_CONNECT_TIMEOUT ? 504 : 502;
}

static void up_on_error(void *owner, const struct upstream_error *err)
{
    struct client *c = owner;
    c->up = NULL;
    struct stats_backend *bs = backend_stats(c);
    if (bs)
        stats_add(&bs->errors, 1);
    if (err->started && !c->resp_started) {
        /* The body was for the cache (a template, a refresh): nothing
         * went to the client yet, so it can still be told. */
        cache_req_response_failed(&c->cr, client_now_ms(c));
        client_error(c, 502, "the upstream's response broke off");
        return;
    }
    if (err->started) {
        /* Mid-body: flush what we have, then cut the connection so the
         * client sees an incomplete message, never a complete wrong one. */
        c->close_after = true;
        if (c->state != CS_CLOSING)
            client_set_state(c, CS_CLOSING);
        c->keep_alive = false;
        client_flush(c);
        return;
    }
    if (request_retryable(c, err)) {
        c->retries++;
        if (bs)
            stats_add(&bs->retries, 1);
        log_info("retrying the request after: %s", upstream_failure_name(err->failure));
        if (upstream_start(c, err->server))
            return;
    }
    /* The first failure is the one to report: a retry that found no other
     * server does not turn a timeout into a 502.  A stale copy within its
     * stale-if-error window hides it. */
    int status = upstream_failure_status(err->failure);
    if (cache_req_stale_on_error(&c->cr, status)) {
        client_serve_hit(c);
        return;
    }
    client_error(c, status, upstream_failure_name(err->failure));
}

static void up_on_drained(void *owner)
{
    struct client *c = owner;
    if (!c->req_done && c->state == CS_PROXY) {
        ev_io_start(c->w->loop, &c->rio);
        client_parse(c);
    }
}

static const struct upstream_handler upstream_handler = {
    .on_head = up_on_head,
    .on_body = up_on_body,
    .on_trailers = up_on_trailers,
    .on_done = up_on_done,
    .on_error = up_on_error,
    .on_drained = up_on_drained,
};

/* Open an upstream for the current request and queue its head and the
 * body bytes parsed so far; a retry passes the server to avoid.  False when
 * no server is available.  Never called from inside llhttp: the bytes of
 * one read are all parsed first, so a request whose framing breaks within
 * them never reaches the upstream. */
static bool upstream_start(struct client *c, int avoid)
{
    c->t_upstream = ev_now(c->w->loop);
    c->up = upstream_open(c->w, c->wc, c->route->backend, avoid, c->head_request && !c->head_as_get,
                          &upstream_handler, c);
    if (!c->up)
        return false;
    struct stats_backend *bs = backend_stats(c);
    if (bs)
        stats_add(&bs->requests, 1);
    upstream_write(c->up, c->uphead.data, c->uphead.len);
    if (buf_pending(&c->upbody) > 0) {
        upstream_write(c->up, c->upbody.data + c->upbody.off, buf_pending(&c->upbody));
        buf_release(&c->upbody);
    }
    if (c->req_done)
        upstream_request_done(c->up);
    return true;
}

/* Body bytes for the upstream: straight to it once it exists, else kept
 * until upstream_start (at most one read's worth). */
static void upstream_send(struct client *c, const void *p, size_t n)
{
    if (c->up)
        upstream_write(c->up, p, n);
    else if (c->action == ACT_FORWARD)
        buf_append(&c->upbody, p, n);
}

/* ---- request head ------------------------------------------------------- */

static bool method_is_idempotent(const char *base, struct http_span m)
{
    static const char *const methods[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (m.len == strlen(methods[i]) && memcmp(base + m.off, methods[i], m.len) == 0)
            return true;
    return false;
}

/* RFC 9112 3.2: origin-form, absolute-form (its authority replaces Host,
 * 3.2.2) or asterisk-form. */
static bool target_split(struct client *c, struct target *t)
{
    const char *base = c->in.data;
    const char *p = base + c->req.target.off;
    size_t n = c->req.target.len;
    const struct http_field *host = http_head_find(base, &c->req, "host");
    t->host = host ? base + host->value.off : "";
    t->host_len = host ? host->value.len : 0;
    if (n >= 7 && strncasecmp(p, "http://", 7) == 0) {
        const char *auth = p + 7;
        const char *slash = memchr(auth, '/', n - 7);
        const char *end = p + n;
        t->host = auth;
        t->host_len = (size_t)((slash ? slash : end) - auth);
        if (t->host_len == 0)
            return false;
        p = slash ? slash : "/";
        n = slash ? (size_t)(end - slash) : 1;
    } else if (n == 1 && p[0] == '*') {
        if (!http_span_is(base, c->req.method, "OPTIONS"))
            return false;
    } else if (n == 0 || p[0] != '/') {
        return false;
    }
    t->path = p;
    t->path_len = n;
    const char *q = memchr(p, '?', n);
    t->route_len = q ? (size_t)(q - p) : n;
    return true;
}

static struct http_verdict request_check_limits(struct client *c)
{
    const struct config_limits *lim = &c->wc->cfg->limits;
    const char *base = c->in.data;
    bool has_length;
    uint64_t length = parse_length(base, &c->req, &has_length);
    if (has_length && lim->body_size > 0 && length > lim->body_size)
        return (struct http_verdict){413, "request body is larger than the limit"};
    const struct http_field *expect = http_head_find(base, &c->req, "expect");
    if (expect && !http_span_is(base, expect->value, "100-continue"))
        return (struct http_verdict){417, "unsupported expectation"};
    return (struct http_verdict){0, NULL};
}

static void request_view(const struct client *c, const struct target *t,
                         struct cache_request_view *rv)
{
    *rv = (struct cache_request_view){
        .base = c->in.data,
        .head = &c->req,
        .host = t->host,
        .host_len = t->host_len,
        .target = t->path,
        .target_len = t->path_len,
        .has_body = c->req_framing != FRAMING_NONE,
    };
}

/* Map the cache's verdict on a request to what the client does next (after
 * llhttp returns: see client_act). */
static void set_action(struct client *c, enum cache_lookup_result r)
{
    switch (r) {
    case CACHE_LOOKUP_PASS:
    case CACHE_LOOKUP_MISS:
        c->action = ACT_FORWARD;
        break;
    case CACHE_LOOKUP_HIT:
        c->action = ACT_HIT;
        break;
    case CACHE_LOOKUP_WAIT:
        c->action = ACT_WAIT;
        break;
    case CACHE_LOOKUP_REMOTE:
        c->action = ACT_REMOTE;
        break;
    case CACHE_LOOKUP_ONLY_IF_CACHED:
        c->action = ACT_ERROR;
        c->verdict = (struct http_verdict){504, "only-if-cached and not in the cache"};
        break;
    }
}

static void request_cache_decide(struct client *c, const struct target *t)
{
    struct cache_request_view rv;
    request_view(c, t, &rv);
    set_action(c, cache_req_lookup(&c->cr, c->w, c->route, &rv, client_now_ms(c)));
}

static bool keep_request_field(const void *ctx, const char *base, const struct http_field *f)
{
    const struct client *c = ctx;
    return cache_req_upstream_keeps_field(&c->cr, base, f) && !client_names_coded_etag(c, base, f);
}

static bool request_head_complete(struct client *c)
{
    const char *base = c->in.data;
    for (unsigned i = 0; i < c->req.nfields; i++)
        c->req.fields[i].value = http_span_trim(base, c->req.fields[i].value);
    c->req.major = llhttp_get_http_major(&c->parser);
    c->req.minor = llhttp_get_http_minor(&c->parser);
    c->head_done = true;
    c->head_request = http_span_is(base, c->req.method, "HEAD");
    c->idempotent = method_is_idempotent(base, c->req.method);
    c->keep_alive = llhttp_should_keep_alive(&c->parser);
    if (c->req.major != 1) {
        c->verdict = (struct http_verdict){505, "only HTTP/1.x is supported"};
        return false;
    }
    c->verdict = http_check_line_endings(base + c->head_start, c->in.len - c->head_start);
    if (c->verdict.status)
        return false;
    const char *end = memmem(base + c->head_start, c->in.len - c->head_start, "\r\n\r\n", 4);
    if (!end) {
        c->verdict = (struct http_verdict){400, "malformed request head"};
        return false;
    }
    c->head_end = (size_t)(end - base) + 4;
    if (c->head_end - c->head_start > c->wc->cfg->limits.header_size) {
        c->verdict = (struct http_verdict){431, "request head is larger than the limit"};
        return false;
    }
    c->verdict = http_check_request(base, &c->req);
    if (c->verdict.status)
        return false;
    c->verdict = request_check_limits(c);
    if (c->verdict.status)
        return false;

    struct target t;
    if (!target_split(c, &t)) {
        c->verdict = (struct http_verdict){400, "invalid request target"};
        return false;
    }
    c->route = router_match(c->wc->cfg, t.host, t.host_len, t.path, t.route_len);
    if (!c->route) {
        c->verdict = (struct http_verdict){404, "no route for this request"};
        return false;
    }
    bool has_length;
    uint64_t length = parse_length(base, &c->req, &has_length);
    if (c->parser.flags & F_CHUNKED)
        c->req_framing = FRAMING_CHUNKED;
    else if (has_length && length > 0)
        c->req_framing = FRAMING_LENGTH;
    client_set_state(c, CS_PROXY);
    c->head_as_get = c->head_request && c->route->esi.mode != ESI_OFF;
    request_cache_decide(c, &t);
    return true;
}

/* The upstream request's head, built when the request is first forwarded
 * (a hit never needs it; a retry sends it again): the cache may add its
 * validators and keep the client's conditionals.  The request head is
 * still in `in` (in_drop_body keeps it).  False when out of memory. */
static bool upstream_head_build(struct client *c)
{
    struct target t;
    if (!target_split(c, &t))
        return false; /* checked when the head was parsed: cannot happen */
    const char *base = c->in.data;
    bool has_length;
    uint64_t length = parse_length(base, &c->req, &has_length);
    struct buf extra = {0};
    cache_req_upstream_fields(&c->cr, &extra);
    client_etag_conditions(c, &extra);
    struct forward_request fr = {
        .method = c->head_as_get ? "GET" : NULL,
        .target = t.path,
        .target_len = t.path_len,
        .host = t.host_len ? t.host : c->route->backend->servers[0].text,
        .host_len = t.host_len ? t.host_len : strlen(c->route->backend->servers[0].text),
        .client_addr = c->addr,
        .proto = "http",
        .framing = c->req_framing,
        .length = length,
        .close = c->route->backend->keepalive == 0,
        .extra = extra.data,
        .extra_len = extra.len,
        .keep = keep_request_field,
        .keep_ctx = c,
    };
    forward_request_head(&c->uphead, base, &c->req, &fr);
    buf_release(&extra);
    if (c->uphead.oom) {
        buf_release(&c->uphead);
        return false;
    }
    return true;
}

/* ---- llhttp callbacks ----------------------------------------------------- */

static struct client *parser_client(llhttp_t *p)
{
    return p->data;
}

static uint32_t offset_in(const struct client *c, const char *at)
{
    return (uint32_t)(at - c->in.data);
}

static int on_message_begin(llhttp_t *p)
{
    struct client *c = parser_client(p);
    c->head_start = c->parsed;
    return 0;
}

static int on_method(llhttp_t *p, const char *at, size_t n)
{
    struct client *c = parser_client(p);
    if (c->req.method.len == 0)
        c->req.method.off = offset_in(c, at);
    c->req.method.len += (uint32_t)n;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct client *c = parser_client(p);
    if (c->req.target.len == 0)
        c->req.target.off = offset_in(c, at);
    c->req.target.len += (uint32_t)n;
    if (c->req.target.len > c->wc->cfg->limits.uri_size) {
        c->verdict = (struct http_verdict){414, "request target is longer than the limit"};
        return -1;
    }
    return 0;
}

static int trailer_field(struct client *c, const char *at, size_t n, bool value)
{
    /* Trailers are copied, framed, into their own buffer: they may arrive
     * split over reads whose bytes are no longer kept. */
    if (!value && c->in_value)
        buf_append(&c->trailers, "\r\n", 2);
    if (value && !c->in_value)
        buf_append(&c->trailers, ": ", 2);
    c->in_value = value;
    buf_append(&c->trailers, at, n);
    if (c->trailers.len > c->wc->cfg->limits.header_size) {
        c->verdict = (struct http_verdict){431, "request trailers are larger than the limit"};
        return -1;
    }
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct client *c = parser_client(p);
    if (c->head_done)
        return trailer_field(c, at, n, false);
    if (!c->field || c->in_value) {
        if (c->req.nfields >= c->wc->cfg->limits.headers) {
            c->verdict = (struct http_verdict){431, "too many header fields"};
            return -1;
        }
        c->field = http_head_add_field(&c->req);
        if (!c->field)
            return -1;
        c->field->name.off = offset_in(c, at);
        c->in_value = false;
    }
    c->field->name.len += (uint32_t)n;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct client *c = parser_client(p);
    if (c->head_done)
        return trailer_field(c, at, n, true);
    if (!c->field)
        return -1;
    if (!c->in_value) {
        c->field->value.off = offset_in(c, at);
        c->in_value = true;
    }
    c->field->value.len += (uint32_t)n;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct client *c = parser_client(p);
    c->in_value = false;
    return request_head_complete(c) ? 0 : -1;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct client *c = parser_client(p);
    uint64_t limit = c->wc->cfg->limits.body_size;
    c->req_body += n;
    if (limit > 0 && c->req_body > limit) {
        c->verdict = (struct http_verdict){413, "request body is larger than the limit"};
        return -1;
    }
    if (c->req_framing == FRAMING_CHUNKED) {
        char size[32];
        int len = snprintf(size, sizeof size, "%zx\r\n", n);
        upstream_send(c, size, (size_t)len);
        upstream_send(c, at, n);
        upstream_send(c, "\r\n", 2);
    } else {
        upstream_send(c, at, n);
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct client *c = parser_client(p);
    c->req_done = true;
    if (c->req_framing == FRAMING_CHUNKED) {
        upstream_send(c, "0\r\n", 3);
        if (c->in_value)
            buf_append(&c->trailers, "\r\n", 2);
        upstream_send(c, c->trailers.data, c->trailers.len);
        upstream_send(c, "\r\n", 2);
    }
    if (c->up)
        upstream_request_done(c->up);
    /* Stop: a pipelined request waits until this one is answered. */
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- reading ------------------------------------------------------------ */

static bool upstream_backlogged(const struct client *c)
{
    return c->up && upstream_pending(c->up) >= UP_HIGH_WATER;
}

/* Forget body bytes llhttp has handed on; keep the head (its spans). */
static void in_drop_body(struct client *c)
{
    if (!c->head_done || c->parsed <= c->head_end)
        return;
    size_t rest = c->in.len - c->parsed;
    memmove(c->in.data + c->head_end, c->in.data + c->parsed, rest);
    c->in.len = c->head_end + rest;
    c->parsed = c->head_end;
}

static void parse_failed(struct client *c, llhttp_errno_t err)
{
    if (c->verdict.status) {
        client_error(c, c->verdict.status, c->verdict.reason);
        return;
    }
    const char *why = llhttp_get_error_reason(&c->parser);
    log_info("client %s: bad request: %s (%s)", c->addr, why ? why : "?", llhttp_errno_name(err));
    client_error(c, 400, why && *why ? why : "malformed request");
}

/* The head (and whatever body this read held) parsed cleanly: open the
 * upstream.  False when the request was answered instead. */
static bool client_start_forwarding(struct client *c)
{
    c->action = ACT_NONE;
    if (c->uphead.len == 0 && !upstream_head_build(c)) {
        buf_release(&c->upbody);
        cache_req_response_failed(&c->cr, client_now_ms(c));
        client_error(c, 500, "out of memory");
        return false;
    }
    if (upstream_start(c, -1))
        return true;
    buf_release(&c->upbody);
    if (cache_req_stale_on_error(&c->cr, 502)) {
        client_serve_hit(c);
        return false;
    }
    cache_req_response_failed(&c->cr, client_now_ms(c));
    client_error(c, 502, upstream_failure_name(UPSTREAM_NO_SERVER));
    return false;
}

/* Answer from the stored object (a hit, a refreshed or a stale one): the
 * head goes through `out`, the body is written from the object itself
 * (client_flush); preconditions and ranges are the client's own. */
static void client_serve_hit(struct client *c)
{
    if (c->cr.obj->esi_template) {
        esi_page_start(c);
        return;
    }
    client_code_hit(c, false);
    if (c->cr.inflate_on_hit) {
        client_serve_inflated(c);
        return;
    }
    if (c->subrequest && c->slot && esi_slot_serve_object(c->slot, c->cr.obj, c->cr.age_ms)) {
        /* An include answered by a stored fragment: its page writes it
         * from the object itself. */
        c->status = c->cr.obj->status;
        c->resp_started = c->resp_done = true;
        c->resp_body = c->cr.obj->body_len;
        request_end(c);
        return;
    }
    bool http11 = c->req.major == 1 && c->req.minor >= 1;
    if (!c->keep_alive || c->w->draining)
        c->close_after = true;
    struct hit_request hr;
    hit_request_init(&hr, c->in.data, &c->req);
    struct hit_head hh = {
        .close = c->close_after,
        .keep_alive_10 = !http11 && !c->close_after,
        .fields = cache_req_hit_fields,
        .fields_ctx = &c->cr,
        .seed = (uint64_t)(uintptr_t)c ^ (uint64_t)client_now_ms(c),
    };
    struct hit_plan plan;
    size_t before = buf_pending(&c->out);
    hit_answer(c->cr.obj, &hr, &hh, &c->out, &plan, client_now_ms(c));
    hit_request_release(&hr);
    if (plan.status == 412) {
        client_error(c, 412, "precondition failed");
        return;
    }
    c->status = plan.status;
    c->resp_started = true;
    c->hit_off = plan.body_start;
    c->hit_end = plan.body_end;
    c->hit_body = plan.body_end > plan.body_start;
    /* Body bytes for the access log: the slice, or a multipart body that
     * was written into `out` after the head. */
    const char *head_end =
        memmem(c->out.data + c->out.off + before, buf_pending(&c->out) - before, "\r\n\r\n", 4);
    size_t in_out = head_end ? (size_t)((c->out.data + c->out.len) - (head_end + 4)) : 0;
    c->resp_body = (plan.body_end - plan.body_start) + in_out;
    c->resp_done = true;
    client_flush(c);
}

/* A stale answer within stale-while-revalidate: refresh it behind the
 * client's back (one fetch per key, whoever asks). */
static void client_revalidate_in_background(struct client *c)
{
    struct target t;
    if (!target_split(c, &t))
        return;
    stats_add(&c->w->stats.revalidations, 1);
    revalidate_start(c->w, c->wc, c->route, &c->cr, c->in.data, &c->req, t.host, t.host_len, t.path,
                     t.path_len, c->addr);
}

/* Do what the parsed head asked for.  False when the client was answered
 * or closed and the caller must stop. */
static bool client_act(struct client *c)
{
    enum request_action a = c->action;
    c->action = ACT_NONE;
    switch (a) {
    case ACT_NONE:
        return true;
    case ACT_FORWARD:
        c->action = ACT_FORWARD;
        return client_start_forwarding(c);
    case ACT_HIT:
        if (client_code_hit(c, true) == CACHE_LOOKUP_REMOTE) {
            client_arm(c); /* memcached is asked for the coded variant */
            return true;
        }
        if (c->cr.swr)
            client_revalidate_in_background(c);
        client_serve_hit(c);
        return false;
    case ACT_WAIT:
    case ACT_REMOTE:
        if (a == ACT_WAIT)
            stats_add(&c->w->stats.coalesced_waits, 1);
        client_arm(c); /* the wait for a fill or for memcached has a deadline */
        return true;
    case ACT_ERROR:
        client_error(c, c->verdict.status, c->verdict.reason);
        return false;
    }
    return true;
}

/* The fill this request waited for ended, or the wait timed out. */
/* The request as the cache sees it, again, for a request that was waiting
 * (its head is still in `in`: nothing is read meanwhile).  False, with the
 * connection closed, when that is no longer so. */
static bool resume_view(struct client *c, struct target *t, struct cache_request_view *rv)
{
    if (c->state != CS_PROXY || !target_split(c, t)) {
        client_close(c);
        return false;
    }
    request_view(c, t, rv);
    return true;
}

static void client_after_wait(struct client *c, enum coalesce_outcome outcome, bool timed_out)
{
    struct target t;
    struct cache_request_view rv;
    if (!resume_view(c, &t, &rv))
        return;
    set_action(c, cache_req_after_wait(&c->cr, c->w, &rv, outcome, timed_out, client_now_ms(c)));
    client_act(c);
}

/* memcached answered the lookup (or did not in time). */
static void client_after_remote(struct client *c, bool timed_out)
{
    struct target t;
    struct cache_request_view rv;
    if (!resume_view(c, &t, &rv))
        return;
    set_action(c, cache_req_remote_result(&c->cr, c->w, &rv, timed_out, client_now_ms(c)));
    client_act(c);
}

static void cache_remote_done(struct cache_req *cr)
{
    struct client *c = (struct client *)((char *)cr - offsetof(struct client, cr));
    client_after_remote(c, false);
}

static void cache_wake(struct coalesce_waiter *waiter, enum coalesce_outcome outcome)
{
    struct client *c = (struct client *)((char *)waiter - offsetof(struct client, cr.waiter));
    c->cr.waiting = false;
    client_after_wait(c, outcome, false);
}

static void client_parse(struct client *c)
{
    while (c->state == CS_HEAD || (c->state == CS_PROXY && !c->req_done)) {
        if (c->parsed >= c->in.len || upstream_backlogged(c))
            break;
        size_t n = c->in.len - c->parsed;
        if (n > READ_SIZE)
            n = READ_SIZE;
        const char *p = c->in.data + c->parsed;
        llhttp_errno_t err = llhttp_execute(&c->parser, p, n);
        if (c->state == CS_DEAD)
            return;
        size_t used = err == HPE_OK ? n : (size_t)(llhttp_get_error_pos(&c->parser) - p);
        c->parsed += used;
        if (err != HPE_OK && err != HPE_PAUSED) {
            parse_failed(c, err);
            return;
        }
        in_drop_body(c);
        if (c->action != ACT_NONE && !client_act(c))
            return;
        if (err == HPE_PAUSED)
            break;
    }
    if (c->state == CS_DEAD || c->state == CS_CLOSING)
        return;
    if (c->state == CS_HEAD && c->in.len - c->head_start > c->wc->cfg->limits.header_size) {
        client_error(c, 431, "request head is larger than the limit");
        return;
    }
    bool want_read = c->state == CS_HEAD || c->state == CS_IDLE ||
                     (c->state == CS_PROXY && !c->req_done && !upstream_backlogged(c));
    if (want_read)
        ev_io_start(c->w->loop, &c->rio);
    else
        ev_io_stop(c->w->loop, &c->rio);
    client_arm(c);
}

static void read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct client *c = io->data;
    if (!buf_reserve(&c->in, READ_SIZE)) {
        client_close(c);
        return;
    }
    ssize_t n = recv(c->fd, c->in.data + c->in.len, READ_SIZE, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        /* The client went away (or half-closed before a whole request):
         * nothing can be answered to it any more. */
        log_debug("client %s: closed by peer in state %s", c->addr, state_name(c->state));
        if (c->state == CS_PROXY && c->req_done && !c->resp_done) {
            /* Half-close after a complete request: keep answering. */
            ev_io_stop(c->w->loop, &c->rio);
            c->close_after = true;
            return;
        }
        client_close(c);
        return;
    }
    c->in.len += (size_t)n;
    c->t_activity = ev_now(c->w->loop);
    if (c->state == CS_IDLE) {
        client_set_state(c, CS_HEAD);
        request_begin(c);
    }
    client_parse(c);
}

static void write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    client_flush(io->data);
}

/* ---- timeouts ------------------------------------------------------------- */

/* When the connection should time out in its current state, or 0 for no
 * client-side deadline (tessera is waiting on the upstream). */
static ev_tstamp client_deadline(const struct client *c, int *status)
{
    const struct config_limits *lim = &c->wc->cfg->limits;
    *status = 0;
    switch (c->state) {
    case CS_IDLE:
        return c->t_activity + (ev_tstamp)lim->idle_timeout_ms / 1000.0;
    case CS_HEAD:
        *status = c->in.len > c->head_start ? 408 : 0;
        return c->t_start + (ev_tstamp)lim->header_timeout_ms / 1000.0;
    case CS_PROXY:
    case CS_CLOSING:
        if (c->cr.waiting) {
            *status = -1; /* the coalesce wait ends: go to the upstream */
            return (ev_tstamp)c->cr.wait_until_ms / 1000.0;
        }
        if (c->cr.remote) {
            *status = -2; /* memcached did not answer in time: go on without it */
            return (ev_tstamp)c->cr.remote_until_ms / 1000.0;
        }
        if (client_writing(c) && c->subrequest)
            return 0; /* it waits for its page, whose client has the timeouts */
        if (client_writing(c))
            return c->t_activity + (ev_tstamp)lim->idle_timeout_ms / 1000.0;
        if (c->state == CS_PROXY && !c->req_done && !upstream_backlogged(c)) {
            *status = 408;
            return c->t_activity + (ev_tstamp)lim->body_timeout_ms / 1000.0;
        }
        return 0;
    case CS_DEAD:
        return 0;
    }
    return 0;
}

static void client_arm(struct client *c)
{
    int status;
    ev_tstamp deadline = client_deadline(c, &status);
    if (deadline == 0) {
        ev_timer_stop(c->w->loop, &c->timer);
        return;
    }
    /* Lazy re-arming: an active timer that fires no later than the new
     * deadline is left alone; timer_cb re-checks when it fires. */
    ev_tstamp now = ev_now(c->w->loop);
    if (ev_is_active(&c->timer) && ev_timer_remaining(c->w->loop, &c->timer) <= deadline - now)
        return;
    ev_timer_stop(c->w->loop, &c->timer);
    ev_timer_set(&c->timer, deadline > now ? deadline - now : 0, 0);
    ev_timer_start(c->w->loop, &c->timer);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct client *c = t->data;
    int status;
    ev_tstamp deadline = client_deadline(c, &status);
    if (deadline == 0)
        return;
    if (deadline > ev_now(loop) + 0.001) {
        ev_timer_set(&c->timer, deadline - ev_now(loop), 0);
        ev_timer_start(loop, &c->timer);
        return;
    }
    if (status == -2) {
        client_after_remote(c, true);
        return;
    }
    if (status == -1) {
        log_info("client %s: coalesce wait timed out: fetching it alone", c->addr);
        client_after_wait(c, COALESCE_FAILED, true);
        return;
    }
    log_debug("client %s: timeout in state %s", c->addr, state_name(c->state));
    if (status == 0 || c->resp_started) {
        client_close(c);
        return;
    }
    client_error(c, status,
                 c->state == CS_HEAD ? "timed out reading the request head"
                                     : "timed out reading the request body");
}

/* ---- opening and closing ---------------------------------------------------- */

void client_close(struct client *c)
{
    if (c->state == CS_DEAD)
        return;
    if (c->up)
        upstream_abort(&c->up);
    esi_page_free(&c->page, true);
    if (c->slot) {
        struct esi_slot *slot = c->slot;
        c->slot = NULL;
        esi_slot_closed(slot);
    }
    cache_req_reset(&c->cr);
    ev_io_stop(c->w->loop, &c->rio);
    ev_io_stop(c->w->loop, &c->wio);
    ev_timer_stop(c->w->loop, &c->timer);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = CS_DEAD;
    worker_client_closed(c->w, c); /* the worker frees it after this iteration */
}

void client_abort(struct client *c)
{
    if (c->fd >= 0) {
        struct linger now = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
    }
    client_close(c);
}

void client_destroy(struct client *c)
{
    if (c->up)
        upstream_abort(&c->up);
    esi_page_free(&c->page, false); /* its subrequests are the worker's to destroy */
    if (c->slot)
        esi_slot_detach(c->slot);
    cache_req_reset(&c->cr);
    encoder_free(&c->enc);
    buf_release(&c->enc_pending);
    buf_release(&c->ae_joined);
    if (c->state != CS_DEAD) {
        ev_io_stop(c->w->loop, &c->rio);
        ev_io_stop(c->w->loop, &c->wio);
        ev_timer_stop(c->w->loop, &c->timer);
        if (c->fd >= 0)
            close(c->fd);
    }
    wcfg_release(&c->wc);
    buf_release(&c->in);
    buf_release(&c->out);
    buf_release(&c->trailers);
    buf_release(&c->uphead);
    buf_release(&c->upbody);
    http_head_free(&c->req);
    free(c);
}

static void addr_text(const struct sockaddr *sa, char *out, size_t len)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], out, (socklen_t)len);
            return;
        }
        inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t)len);
    } else if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
    } else {
        snprintf(out, len, "unknown");
    }
}

/* Over max_connections: a best-effort 503 on the fresh socket, then close.
 * A single small write to a new socket does not block in practice; if it
 * would, the client simply sees the connection closed. */
static void refuse_overloaded(struct worker *w, int fd)
{
    stats_add(&w->stats.connections_refused, 1);
    char head[256];
    static const char body[] = "503 Service Unavailable: too many connections\n";
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
                     worker_date(w), sizeof body - 1, body);
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("503 to an overloaded connection: %s", strerror(errno));
    close(fd);
}

void client_accept(struct worker *w, int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addrlen;
    if (worker_connections() >= w->wcfg->cfg->limits.max_connections) {
        log_warn("max_connections (%u) reached: answering 503",
                 w->wcfg->cfg->limits.max_connections);
        refuse_overloaded(w, fd);
        return;
    }
    struct client *c = client_new(w, w->wcfg, fd);
    if (!c) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    addr_text(addr, c->addr, sizeof c->addr);
    worker_client_opened(w, c);
    ev_io_start(w->loop, &c->rio);
    client_arm(c);
}

struct client *client_subrequest(struct worker *w, struct wcfg *wc, const char *addr,
                                 const char *request, size_t len, struct esi_slot *slot)
{
    struct client *c = client_new(w, wc, -1);
    if (!c)
        return NULL;
    c->subrequest = true;
    c->slot = slot;
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    buf_append(&c->in, request, len);
    if (c->in.oom) {
        client_destroy(c);
        return NULL;
    }
    worker_client_opened(w, c);
    client_parse(c);
    return c;
}

/* A client in state HEAD, its watchers set up (not started) for fd (-1:
 * a subrequest), under config wc.  NULL when out of memory. */
static struct client *client_new(struct worker *w, struct wcfg *wc, int fd)
{
    struct client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->w = w;
    c->fd = fd;
    c->wc = wcfg_ref(wc);
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    ev_io_init(&c->rio, read_cb, fd, EV_READ);
    ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
    ev_init(&c->timer, timer_cb);
    c->rio.data = c->wio.data = c->timer.data = c;
    c->state = CS_HEAD;
    c->t_start = c->t_activity = ev_now(w->loop);
    c->upstream_time = -1;
    cache_req_init(&c->cr);
    c->cr.waiter.worker = w;
    c->cr.waiter.wake = cache_wake;
    c->cr.on_remote = cache_remote_done;
    return c;
}

void client_drain(struct client *c)
{
    if (c->state == CS_DEAD)
        return;
    if (c->state == CS_IDLE || (c->state == CS_HEAD && c->in.len == c->head_start)) {
        client_close(c);
        return;
    }
    c->close_after = true;
}
