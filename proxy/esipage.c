/*
 * proxy/esipage.c: assembling an ESI page from its template and its
 * includes' subrequests (see esipage.h).
 */
#include "proxy/esipage.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "cache/conditional.h"
#include "cache/esi.h"
#include "cache/freshness.h"
#include "compress/inflate.h"
#include "proxy/client_priv.h"
#include "proxy/esimerge.h"
#include "proxy/esiurl.h"
#include "proxy/hit.h"
#include "proxy/log.h"
#include "proxy/router.h"
#include "proxy/stats.h"

/* Body bytes a slot holds before its subrequest waits for the page, once
 * the page's head is out. */
#define SLOT_BUFFER_MAX ((size_t)256 * 1024)
/* Body bytes all the slots of a page may hold before its head is out: none
 * of them waits then (a subrequest that waits could be the fill another
 * include of the page is waiting for, and the head waits for every
 * include); a page that needs more fails. */
#define PAGE_HOLD_MAX ((size_t)8 * 1024 * 1024)
/* Longest response head a fragment may have. */
#define SLOT_HEAD_MAX ((size_t)64 * 1024)
/* Most bytes written to the client in one step. */
#define EMIT_STEP ((size_t)64 * 1024)

enum slot_state {
    SLOT_UNUSED,    /* a literal segment's slot */
    SLOT_FETCHING,  /* the subrequest runs, no final head yet */
    SLOT_STREAMING, /* a 2xx head came; the body arrives */
    SLOT_DONE,      /* the whole body is in `body` (or was written) */
    SLOT_EMPTY,     /* failed, onerror="continue": nothing */
    SLOT_FAILED,    /* failed: the page fails */
};

struct esi_slot {
    struct esi_page *page;
    const struct esi_segment *seg;
    enum slot_state state;
    struct client *child; /* the subrequest, while it runs */
    bool child_closed;    /* ... it ended during client_subrequest() */
    bool blocked;         /* esi_slot_take() refused bytes: resume the child */
    bool using_alt;
    bool emitted;         /* some of its body reached the client: nothing else may
                           * take its place any more */
    const char *fail_why; /* a failure to handle in the pump */
    char fail_buf[64];
    llhttp_t parser;
    struct buf head; /* the response's fields, "Name: value\r\n" */
    bool in_value;
    int status;
    struct inflater *inflater; /* a gzip fragment */
    struct buf body;           /* decoded body bytes not yet written */
    struct cache_object *obj;  /* or: a stored fragment, served from itself */
    size_t obj_off;            /* its next body byte to write */
    ev_timer timer;            /* esi_timeout: runs while the include waits for its
                                * server, not while it waits for the page */
    ev_tstamp timer_left;      /* what was left of it when it was paused */
};

struct esi_page {
    struct client *c;
    struct esi_page *root;           /* the client's own page (itself at the top) */
    unsigned depth;                  /* 0 at the top, +1 per include */
    const struct config_esi *limits; /* the top page's route: depth, count, timeout */
    unsigned includes_left;          /* the top page's budget */
    unsigned char *raw;              /* the template's encoding made contiguous (NULL: decoded in
                                      * place, from the object's one body chunk) */
    struct esi_template tmpl;
    char *host, *target; /* this page's request, for resolving src */
    struct esi_chain chain;
    struct esi_slot *slots; /* one per segment */
    size_t cur;             /* the segment being written */
    size_t lit_off;         /* bytes of the current literal written */
    bool head_sent;
    bool out_blocked;    /* stopped at OUT_HIGH_WATER: esi_page_drained resumes */
    bool finished;       /* answered otherwise (502, 412): nothing more to do */
    bool head_full;      /* the head carried the parts' merged Cache-Control and ETag */
    bool head_wait_over; /* esi_head_wait has passed */
    ev_timer head_timer; /* esi_head_wait */
    struct buf pending;  /* body bytes gathered by page_emit(), sent by page_flush() */
    ev_timer pump;
};

static void page_pump(struct esi_page *p);
static void page_finish(struct esi_page *p);

static struct worker *page_worker(const struct esi_page *p)
{
    return p->c->w;
}

static void pump_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    page_pump(t->data);
}

static void page_schedule(struct esi_page *p)
{
    if (!ev_is_active(&p->pump)) {
        ev_timer_set(&p->pump, 0, 0);
        ev_timer_start(page_worker(p)->loop, &p->pump);
    }
}

/* ---- a slot's response ------------------------------------------------------- */

static struct esi_slot *parser_slot(llhttp_t *parser)
{
    return parser->data;
}

static void slot_fail(struct esi_slot *s, const char *why)
{
    if (!s->fail_why)
        s->fail_why = why;
}

static int on_header_field(llhttp_t *parser, const char *at, size_t n)
{
    struct esi_slot *s = parser_slot(parser);
    if (s->in_value)
        buf_append(&s->head, "\r\n", 2);
    s->in_value = false;
    buf_append(&s->head, at, n);
    return s->head.len > SLOT_HEAD_MAX ? -1 : 0;
}

static int on_header_value(llhttp_t *parser, const char *at, size_t n)
{
    struct esi_slot *s = parser_slot(parser);
    if (!s->in_value)
        buf_append(&s->head, ": ", 2);
    s->in_value = true;
    buf_append(&s->head, at, n);
    return s->head.len > SLOT_HEAD_MAX ? -1 : 0;
}

static bool inflated_sink(void *ctx, const void *p, size_t n)
{
    struct esi_slot *s = ctx;
    buf_append(&s->body, p, n);
    return !s->body.oom;
}

static bool head_says_gzip(const struct buf *head)
{
    const char *p = head->data ? head->data : "";
    const char *end = p + head->len;
    const char *name, *value;
    size_t nlen, vlen;
    while (http_block_next(&p, end, &name, &nlen, &value, &vlen))
        if (nlen == 16 && strncasecmp(name, "content-encoding", 16) == 0 && vlen == 4 &&
            strncasecmp(value, "gzip", 4) == 0)
            return true;
    return false;
}

static int on_headers_complete(llhttp_t *parser)
{
    struct esi_slot *s = parser_slot(parser);
    if (s->in_value)
        buf_append(&s->head, "\r\n", 2);
    s->in_value = false;
    s->status = llhttp_get_status_code(parser);
    if (s->status < 200)
        return 0; /* interim: its message ends at once */
    if (s->head.oom)
        return -1;
    if (s->status > 299) {
        snprintf(s->fail_buf, sizeof s->fail_buf, "the fragment answered %d", s->status);
        slot_fail(s, s->fail_buf);
        return 0;
    }
    if (head_says_gzip(&s->head)) {
        char err[64];
        s->inflater = inflater_init(ENCODE_INFLATE_MAX_OUTPUT, ENCODE_INFLATE_MAX_RATIO,
                                    inflated_sink, s, err, sizeof err);
        if (!s->inflater)
            return -1;
    }
    s->state = SLOT_STREAMING;
    page_schedule(s->page);
    /* Stop at the end of a gzip head: esi_slot_take() feeds the body in
     * slices from here on. */
    return s->inflater ? HPE_PAUSED : 0;
}

static int on_body(llhttp_t *parser, const char *at, size_t n)
{
    struct esi_slot *s = parser_slot(parser);
    if (s->fail_why || s->status < 200)
        return 0;
    char err[64];
    if (s->inflater) {
        if (!inflater_write(s->inflater, at, n, err, sizeof err))
            slot_fail(s, "the fragment's gzip body does not decode");
    } else {
        buf_append(&s->body, at, n);
    }
    return s->body.oom ? -1 : 0;
}

static int on_message_complete(llhttp_t *parser)
{
    struct esi_slot *s = parser_slot(parser);
    if (s->status < 200) { /* an interim response: the final one follows */
        buf_reset(&s->head);
        return 0;
    }
    char err[64];
    if (s->inflater && !s->fail_why && !inflater_finish(s->inflater, err, sizeof err))
        slot_fail(s, "the fragment's gzip body is truncated");
    if (!s->fail_why)
        s->state = SLOT_DONE;
    page_schedule(s->page);
    return 0;
}

static const llhttp_settings_t slot_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static bool slot_settled(const struct esi_slot *s)
{
    return s->fail_why || s->state == SLOT_DONE || s->state == SLOT_EMPTY ||
           s->state == SLOT_FAILED;
}

/* Body bytes the slots of p hold. */
static size_t page_held(const struct esi_page *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->tmpl.nsegs; i++)
        n += buf_pending(&p->slots[i].body);
    return n;
}

/* How many more body bytes s may hold now (see SLOT_BUFFER_MAX and
 * PAGE_HOLD_MAX). */
static size_t slot_room(const struct esi_slot *s)
{
    if (!s->page->head_sent) {
        size_t held = page_held(s->page);
        return held < PAGE_HOLD_MAX ? PAGE_HOLD_MAX - held : 0;
    }
    size_t held = buf_pending(&s->body);
    return held < SLOT_BUFFER_MAX ? SLOT_BUFFER_MAX - held : 0;
}

/* The subrequest waits for the page: its esi_timeout stops meanwhile. */
static void slot_block(struct esi_slot *s)
{
    if (s->blocked)
        return;
    s->blocked = true;
    struct ev_loop *loop = page_worker(s->page)->loop;
    if (ev_is_active(&s->timer)) {
        s->timer_left = ev_timer_remaining(loop, &s->timer);
        ev_timer_stop(loop, &s->timer);
    }
}

/* ... and goes on. */
static void slot_unblock(struct esi_slot *s)
{
    if (!s->blocked)
        return;
    s->blocked = false;
    if (s->timer_left > 0 && !slot_settled(s)) {
        ev_timer_set(&s->timer, s->timer_left, 0);
        ev_timer_start(page_worker(s->page)->loop, &s->timer);
    }
    s->timer_left = 0;
    if (s->child)
        client_flush(s->child); /* only buffers in this slot */
}

size_t esi_slot_take(struct esi_slot *s, const struct iovec *iov, size_t niov)
{
    size_t total = 0;
    for (size_t i = 0; i < niov; i++)
        total += iov[i].iov_len;
    if (slot_settled(s))
        return total; /* nothing more is wanted from it: dropped */
    size_t taken = 0;
    for (size_t i = 0, off = 0; i < niov && !slot_settled(s);) {
        size_t room = slot_room(s);
        if (room == 0)
            break;
        size_t n = iov[i].iov_len - off < room ? iov[i].iov_len - off : room;
        /* A gzip body grows by up to the inflate ratio: fed in slices
         * that cannot overshoot the room by more than one slice's worth. */
        size_t slice = room / ENCODE_INFLATE_MAX_RATIO > 64 ? room / ENCODE_INFLATE_MAX_RATIO : 64;
        if (s->inflater && n > slice)
            n = slice;
        const char *at = (const char *)iov[i].iov_base + off;
        llhttp_errno_t err = llhttp_execute(&s->parser, at, n);
        if (err == HPE_PAUSED) {
            n = (size_t)(llhttp_get_error_pos(&s->parser) - at);
            llhttp_resume(&s->parser);
        } else if (err != HPE_OK) {
            slot_fail(s, "the fragment's response is malformed");
        }
        taken += n;
        off += n;
        if (off == iov[i].iov_len) {
            i++;
            off = 0;
        }
    }
    if (slot_settled(s))
        taken = total;
    if (taken < total && !s->page->head_sent)
        slot_fail(s, "the page's includes are larger than it may hold before its head");
    else if (taken < total)
        slot_block(s);
    page_schedule(s->page);
    return slot_settled(s) ? total : taken;
}

void esi_slot_closed(struct esi_slot *s)
{
    s->child = NULL;
    s->child_closed = true;
    if (!slot_settled(s)) {
        llhttp_finish(&s->parser);
        if (s->state != SLOT_DONE)
            slot_fail(s, "the fragment's response ended early");
    }
    page_schedule(s->page);
}

void esi_slot_detach(struct esi_slot *s)
{
    s->child = NULL;
}

/* The stored head names a content coding: the body is not the fragment's
 * text as it goes into the page (the HTTP path inflates gzip). */
static bool object_is_coded(const struct cache_object *obj)
{
    const char *q = obj->head;
    const char *end = obj->head + obj->head_len;
    const char *name, *value;
    size_t nlen, vlen;
    while (http_block_next(&q, end, &name, &nlen, &value, &vlen))
        if (nlen == 16 && strncasecmp(name, "content-encoding", 16) == 0 &&
            !(vlen == 8 && strncasecmp(value, "identity", 8) == 0))
            return true;
    return false;
}

bool esi_slot_serve_object(struct esi_slot *s, struct cache_object *obj, int64_t age_ms)
{
    if (s->state != SLOT_FETCHING || s->fail_why || s->head.len > 0 || obj->status < 200 ||
        obj->status > 299 || object_is_coded(obj))
        return false;
    buf_append(&s->head, obj->head, obj->head_len);
    buf_appendf(&s->head, "Age: %" PRId64 "\r\n", cache_age_header_seconds(age_ms));
    if (s->head.oom) {
        buf_release(&s->head);
        return false;
    }
    s->obj = cache_object_ref(obj);
    s->obj_off = 0;
    s->status = obj->status;
    s->state = SLOT_DONE;
    page_schedule(s->page);
    return true;
}

/* ---- starting an include ------------------------------------------------------ */

/* The subrequest stops being ours: it is closed, or (worker shutdown) left
 * to the worker. */
static void slot_drop_child(struct esi_slot *s, bool close)
{
    struct client *child = s->child;
    if (!child)
        return;
    s->child = NULL;
    child->slot = NULL;
    if (close)
        client_close(child);
}

static void slot_reset_response(struct esi_slot *s)
{
    llhttp_init(&s->parser, HTTP_RESPONSE, &slot_settings);
    s->parser.data = s;
    buf_release(&s->head);
    buf_release(&s->body);
    inflater_free(&s->inflater);
    cache_object_release(&s->obj);
    s->in_value = false;
    s->status = 0;
    s->blocked = false;
    s->timer_left = 0;
    s->fail_why = NULL;
    s->child_closed = false;
}

static void slot_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct esi_slot *s = t->data;
    if (s->state == SLOT_FETCHING || s->state == SLOT_STREAMING) {
        slot_fail(s, "timed out (esi_timeout)");
        page_pump(s->page);
    }
}

/* Fields of the page's request a fragment gets too (the client's identity
 * and preferences); Cookie and Authorization only when the fragment's
 * route says `esi_cookies on`. */
static bool field_for_fragment(const char *base, const struct http_field *f, bool cookies)
{
    static const char *const names[] = {
        "user-agent",        "accept",    "accept-language", "x-forwarded-for",
        "x-forwarded-proto", "forwarded", "x-request-id"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (http_span_is(base, f->name, names[i]))
            return true;
    return cookies &&
           (http_span_is(base, f->name, "cookie") || http_span_is(base, f->name, "authorization"));
}

static void subrequest_head(const struct esi_page *p, const struct esi_src *src, struct buf *out)
{
    const struct client *c = p->c;
    const char *q = memchr(src->target, '?', src->target_len);
    size_t route_len = q ? (size_t)(q - src->target) : src->target_len;
    const struct config_route *route =
        router_match(c->wc->cfg, src->host, src->host_len, src->target, route_len);
    bool cookies = route && route->esi.cookies;
    buf_appendf(out, "GET %s HTTP/1.1\r\nHost: %s\r\n", src->target, src->host);
    const char *base = c->in.data;
    for (unsigned i = 0; i < c->req.nfields; i++) {
        const struct http_field *f = &c->req.fields[i];
        if (!field_for_fragment(base, f, cookies))
            continue;
        buf_append(out, base + f->name.off, f->name.len);
        buf_append(out, ": ", 2);
        buf_append(out, base + f->value.off, f->value.len);
        buf_append(out, "\r\n", 2);
    }
    buf_append_str(out, "Accept-Encoding: identity\r\nConnection: close\r\n\r\n");
}

/* Start the subrequest for src (the include's src, or its alt).  Problems
 * found now (depth, count, URL, loop) are slot failures like any other. */
static void slot_fetch(struct esi_slot *s, const char *src, size_t len)
{
    struct esi_page *p = s->page;
    slot_reset_response(s);
    s->state = SLOT_FETCHING;
    if (p->depth + 1 > p->limits->max_depth) {
        slot_fail(s, "nested deeper than esi_max_depth");
        return;
    }
    if (p->root->includes_left == 0) {
        slot_fail(s, "the page has more includes than esi_max_includes");
        return;
    }
    const struct config_esi *own = &p->c->route->esi;
    struct esi_src *r = malloc(sizeof *r);
    if (!r) {
        slot_fail(s, "out of memory");
        return;
    }
    enum esi_src_result res =
        esi_src_resolve(src, len, p->host, strlen(p->host), p->target, strlen(p->target),
                        own->allow_hosts, own->nallow_hosts, r);
    if (res != ESI_SRC_OK) {
        slot_fail(s, res == ESI_SRC_HOST_DENIED ? "src names a host esi_allow_hosts does not list"
                                                : "src is not a URL tessera can fetch");
        free(r);
        return;
    }
    if (esi_chain_contains(&p->chain, r)) {
        slot_fail(s, "the fragment includes itself (a loop)");
        free(r);
        return;
    }
    struct buf req = {0};
    subrequest_head(p, r, &req);
    free(r);
    if (req.oom) {
        buf_release(&req);
        slot_fail(s, "out of memory");
        return;
    }
    p->root->includes_left--;
    struct worker *w = page_worker(p);
    stats_add(&w->stats.esi_includes, 1);
    ev_timer_set(&s->timer, (ev_tstamp)p->limits->timeout_ms / 1000.0, 0);
    ev_timer_start(w->loop, &s->timer);
    struct client *child = client_subrequest(w, p->c->wc, p->c->addr, req.data, req.len, s);
    buf_release(&req);
    if (!child && !s->child_closed)
        slot_fail(s, "out of memory");
    if (child && !s->child_closed)
        s->child = child;
}

/* A failure: its alt next, then nothing (onerror="continue"), else the
 * page fails.  Once a full head is out, the part's head is in the page's
 * Cache-Control and ETag: nothing else may take its place, the page fails. */
static void slot_handle_failure(struct esi_slot *s)
{
    struct esi_page *p = s->page;
    struct worker *w = page_worker(p);
    while (s->fail_why) {
        char why[sizeof s->fail_buf];
        snprintf(why, sizeof why, "%s", s->fail_why);
        slot_drop_child(s, true);
        ev_timer_stop(w->loop, &s->timer);
        stats_add(&w->stats.esi_errors, 1);
        const struct esi_segment *seg = s->seg;
        const char *src = s->using_alt ? seg->alt : seg->src;
        size_t len = s->using_alt ? seg->alt_len : seg->src_len;
        log_info("esi: include \"%.*s\" of %s%s failed: %s", (int)(len < 200 ? len : 200), src,
                 p->host, p->target, why);
        /* Nothing promised of it yet: no full head counted it, and none of
         * its bytes went out. */
        bool free_part = !p->head_sent || (!p->head_full && !s->emitted);
        if (!s->using_alt && seg->alt_len > 0 && free_part) {
            s->using_alt = true;
            stats_add(&w->stats.esi_alt, 1);
            slot_fetch(s, seg->alt, seg->alt_len);
            continue;
        }
        slot_reset_response(s);
        s->state = seg->onerror_continue && free_part ? SLOT_EMPTY : SLOT_FAILED;
        if (s->state == SLOT_FAILED)
            snprintf(s->fail_buf, sizeof s->fail_buf, "%s", why);
    }
}

static void slot_release(struct esi_slot *s, bool close)
{
    if (s->state == SLOT_UNUSED)
        return;
    slot_drop_child(s, close);
    if (s->page)
        ev_timer_stop(page_worker(s->page)->loop, &s->timer);
    buf_release(&s->head);
    buf_release(&s->body);
    inflater_free(&s->inflater);
    cache_object_release(&s->obj);
}

/* ---- the page's head ---------------------------------------------------------- */

static bool all_heads_known(const struct esi_page *p)
{
    for (size_t i = 0; i < p->tmpl.nsegs; i++) {
        enum slot_state st = p->slots[i].state;
        if (st == SLOT_FETCHING)
            return false;
    }
    return true;
}

/* The template's own part: its stored head, and its age now. */
static void merge_template(struct esi_page *p, struct esi_merge *m, int64_t now_ms)
{
    const struct cache_object *obj = p->c->cr.obj;
    struct buf b = {0};
    buf_append(&b, obj->head, obj->head_len);
    buf_appendf(&b, "Age: %" PRId64 "\r\n", cache_age_header_seconds(p->c->cr.age_ms));
    struct http_head h = {0};
    http_head_parse_block(b.data ? b.data : "", b.len, &h);
    esi_merge_add(m, b.data ? b.data : "", &h, now_ms);
    http_head_free(&h);
    buf_release(&b);
}

static void merge_parts(struct esi_page *p, struct esi_merge *m, int64_t now_ms)
{
    esi_merge_init(m);
    merge_template(p, m, now_ms);
    for (size_t i = 0; i < p->tmpl.nsegs; i++) {
        struct esi_slot *s = &p->slots[i];
        if (s->state == SLOT_UNUSED || s->state == SLOT_FETCHING)
            continue; /* (an early head merges nothing of what is not there) */
        if (s->state == SLOT_EMPTY) {
            esi_merge_add_empty(m);
            continue;
        }
        struct http_head h = {0};
        http_head_parse_block(s->head.data ? s->head.data : "", s->head.len, &h);
        if (s->using_alt)
            esi_merge_add_source(m, s->seg->alt, s->seg->alt_len);
        else
            esi_merge_add_source(m, s->seg->src, s->seg->src_len);
        esi_merge_add(m, s->head.data ? s->head.data : "", &h, now_ms);
        http_head_free(&h);
    }
}

/* Fields of the template the page does not keep: its framing and coding,
 * its validators and freshness (the page has its own), its ranges, its
 * Date (the page's is now). */
static bool template_field_kept(const char *name, size_t len)
{
    static const char *const dropped[] = {"content-length",
                                          "content-encoding",
                                          "etag",
                                          "last-modified",
                                          "cache-control",
                                          "expires",
                                          "age",
                                          "accept-ranges",
                                          "content-md5",
                                          "content-digest",
                                          "repr-digest",
                                          "digest",
                                          "date"};
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
        if (len == strlen(dropped[i]) && strncasecmp(name, dropped[i], len) == 0)
            return false;
    return true;
}

/* The fields a 304 keeps (RFC 9110 15.4.5). */
static bool not_modified_field(const char *name, size_t len)
{
    return (len == 4 && strncasecmp(name, "vary", 4) == 0) ||
           (len == 16 && strncasecmp(name, "content-location", 16) == 0);
}

static void write_template_fields(const struct esi_page *p, struct buf *out, bool not_modified)
{
    const struct cache_object *obj = p->c->cr.obj;
    const char *q = obj->head;
    const char *end = obj->head + obj->head_len;
    const char *name, *value;
    size_t nlen, vlen;
    while (http_block_next(&q, end, &name, &nlen, &value, &vlen)) {
        if (!template_field_kept(name, nlen) || (not_modified && !not_modified_field(name, nlen)))
            continue;
        buf_append(out, name, nlen);
        buf_append(out, ": ", 2);
        buf_append(out, value, vlen);
        buf_append(out, "\r\n", 2);
    }
}

/* The page varies with whatever its parts vary with: their Vary fields
 * join the template's (Accept-Encoding aside: fragments are fetched
 * identity, and the page's own coding says Vary itself). */
static void write_parts_vary(const struct esi_page *p, struct buf *out)
{
    for (size_t i = 0; i < p->tmpl.nsegs; i++) {
        const struct esi_slot *s = &p->slots[i];
        if (s->state == SLOT_UNUSED || s->state == SLOT_EMPTY || s->state == SLOT_FETCHING)
            continue;
        const char *q = s->head.data ? s->head.data : "";
        const char *end = q + s->head.len;
        const char *name, *value;
        size_t nlen, vlen;
        while (http_block_next(&q, end, &name, &nlen, &value, &vlen)) {
            if (nlen != 4 || strncasecmp(name, "vary", 4) != 0 ||
                (vlen == 15 && strncasecmp(value, "accept-encoding", 15) == 0))
                continue;
            buf_appendf(out, "Vary: %.*s\r\n", (int)vlen, value);
        }
    }
}

/* The page's ETag as sent: the derived one, with the coding's suffix. */
static size_t page_etag(const struct esi_page *p, const struct esi_merge *m, char *out, size_t cap)
{
    char derived[ESI_MERGE_ETAG_MAX];
    if (!esi_merge_etag(m, derived, sizeof derived))
        return 0;
    const struct client *c = p->c;
    if (c->encode.action == ENCODE_NONE) {
        size_t n = strlen(derived);
        if (n >= cap)
            return 0;
        memcpy(out, derived, n + 1);
        return n;
    }
    return encode_etag(derived, strlen(derived), c->encode.coding,
                       c->encode.action == ENCODE_INFLATE, out, cap);
}

static void plan_coding(struct esi_page *p)
{
    struct client *c = p->c;
    struct encode_response r;
    encode_response_from_object(&r, c->cr.obj, c->head_request);
    r.length_known = false; /* the assembled length is not known */
    r.content_encoding = NULL;
    r.content_encoding_len = 0;
    size_t ae_len;
    const char *ae = client_accept_encoding(c, &ae_len);
    encode_plan_for(&c->route->compress, ae, ae_len, &r, &c->encode);
}

/* Write the page's head (or answer 304 / 412).  full: every include's
 * head is known, so the page's Cache-Control and ETag are merged from its
 * parts'; else (esi_head_wait passed) the head promises nothing: no-store,
 * no validator.  True when the body follows. */
static bool page_send_head(struct esi_page *p, bool full)
{
    struct client *c = p->c;
    int64_t now_ms = client_now_ms(c);
    struct esi_merge m;
    merge_parts(p, &m, now_ms);
    plan_coding(p);
    char etag[ESI_MERGE_ETAG_MAX + 16];
    size_t etag_len = full ? page_etag(p, &m, etag, sizeof etag) : 0;

    struct hit_request hr;
    hit_request_init(&hr, c->in.data, &c->req);
    struct cache_validators v = {
        .etag = etag_len ? etag : NULL, .etag_len = etag_len, .exists = true};
    enum cache_precondition_result pre = cache_evaluate_preconditions(&hr.pre, &v, now_ms);
    hit_request_release(&hr);
    if (pre == PRECONDITION_FAILED) {
        page_finish(p);
        client_fail(c, 412, "precondition failed");
        return false;
    }
    bool not_modified = pre == PRECONDITION_NOT_MODIFIED;
    bool http11 = c->req.major == 1 && c->req.minor >= 1;
    bool body = !not_modified && !c->head_request;
    if (!c->keep_alive || c->w->draining || (body && !http11))
        c->close_after = true;
    c->status = not_modified ? 304 : c->cr.obj->status;
    struct buf *out = &c->out;
    buf_appendf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", c->status, http_reason_phrase(c->status),
                worker_date(c->w));
    write_template_fields(p, out, not_modified);
    write_parts_vary(p, out);
    if (full)
        esi_merge_cache_control(&m, out);
    else
        buf_append_str(out, "Cache-Control: no-store\r\n");
    if (etag_len)
        buf_appendf(out, "ETag: %.*s\r\n", (int)etag_len, etag);
    if (c->encode.vary)
        buf_append_str(out, "Vary: Accept-Encoding\r\n");
    if (!not_modified && c->encode.action == ENCODE_COMPRESS)
        buf_appendf(out, "Content-Encoding: %s\r\n", coding_name(c->encode.coding));
    cache_req_status_fields(&c->cr, out);
    if (body && http11)
        buf_append_str(out, "Transfer-Encoding: chunked\r\n");
    if (c->close_after)
        buf_append_str(out, "Connection: close\r\n");
    else if (!http11)
        buf_append_str(out, "Connection: keep-alive\r\n");
    buf_append(out, "\r\n", 2);
    c->resp_started = true;
    p->head_sent = true;
    p->head_full = full;
    if (!body) {
        c->resp_done = true;
        client_flush(c);
        return false;
    }
    c->resp_framing = http11 ? FRAMING_CHUNKED : FRAMING_CLOSE;
    if (c->encode.action == ENCODE_COMPRESS && !client_start_encoder(c)) {
        client_close(c);
        return false;
    }
    return true;
}

/* ---- the page's body ----------------------------------------------------------- */

/* Send what page_emit() gathered in p->pending as one piece: one chunk,
 * one encoder write (one flush of the compressor) per step, not one per
 * part.  False when the coding failed (the client is then closed). */
static bool page_flush(struct esi_page *p)
{
    struct client *c = p->c;
    size_t n = buf_pending(&p->pending);
    if (n == 0)
        return true;
    const char *data = p->pending.data + p->pending.off;
    bool ok = true;
    if (p->pending.oom) {
        ok = false;
    } else if (encoder_active(&c->enc)) {
        ok = encoder_write(&c->enc, data, n);
    } else {
        if (c->resp_framing == FRAMING_CHUNKED)
            client_write_chunk(c, data, n);
        else
            client_write(c, data, n);
        c->resp_body += n;
        ok = !c->out.oom;
    }
    buf_reset(&p->pending);
    if (!ok) {
        log_warn("client %s: ESI page coding failed: %s", c->addr,
                 c->enc.err[0] ? c->enc.err : "out of memory");
        client_abort(c);
    }
    return ok;
}

/* The next bytes of the current segment that are ready: *data, *n (0 with
 * false when the include is not there yet; true with n 0 when the segment
 * is over). */
static bool segment_next(struct esi_page *p, const char **data, size_t *n)
{
    const struct esi_segment *seg = &p->tmpl.segs[p->cur];
    struct esi_slot *s = &p->slots[p->cur];
    *n = 0;
    if (seg->kind == ESI_LITERAL) {
        *data = seg->text + p->lit_off;
        *n = seg->len - p->lit_off < EMIT_STEP ? seg->len - p->lit_off : EMIT_STEP;
        return true;
    }
    if (buf_pending(&s->body) > 0) {
        *data = s->body.data + s->body.off;
        *n = buf_pending(&s->body) < EMIT_STEP ? buf_pending(&s->body) : EMIT_STEP;
        return true;
    }
    if (s->obj && s->obj_off < s->obj->body_len) {
        struct iovec iov;
        cache_object_body_iov(s->obj, s->obj_off, &iov, 1);
        *data = iov.iov_base;
        *n = iov.iov_len < EMIT_STEP ? iov.iov_len : EMIT_STEP;
        return true;
    }
    return s->state == SLOT_DONE || s->state == SLOT_EMPTY;
}

/* n bytes of the current segment were gathered: move on. */
static void segment_advance(struct esi_page *p, size_t n)
{
    const struct esi_segment *seg = &p->tmpl.segs[p->cur];
    struct esi_slot *s = &p->slots[p->cur];
    if (seg->kind == ESI_LITERAL) {
        p->lit_off += n;
        if (p->lit_off == seg->len) {
            p->cur++;
            p->lit_off = 0;
        }
        return;
    }
    if (n == 0) { /* the include is over */
        slot_release(s, true);
        s->state = SLOT_DONE;
        p->cur++;
        return;
    }
    s->emitted = true;
    if (s->obj) {
        s->obj_off += n;
        return;
    }
    buf_consume(&s->body, n);
    if (buf_pending(&s->body) == 0)
        buf_release(&s->body);
    if (s->blocked && slot_room(s) > 0)
        slot_unblock(s);
}

/* Gather what is ready, in order, and send it.  False when the client was
 * closed. */
static bool page_emit(struct esi_page *p)
{
    struct client *c = p->c;
    while (p->cur < p->tmpl.nsegs) {
        if (buf_pending(&c->out) + buf_pending(&p->pending) >= OUT_HIGH_WATER) {
            p->out_blocked = true;
            break;
        }
        const char *data = NULL;
        size_t n;
        if (!segment_next(p, &data, &n))
            break; /* waiting for this include */
        buf_append(&p->pending, data, n);
        segment_advance(p, n);
        if (buf_pending(&p->pending) >= EMIT_STEP && !page_flush(p))
            return false;
    }
    return page_flush(p);
}

static void page_end(struct esi_page *p)
{
    struct client *c = p->c;
    if (encoder_active(&c->enc)) {
        if (!encoder_finish(&c->enc)) {
            log_warn("client %s: ESI page coding failed: %s", c->addr, c->enc.err);
            client_abort(c);
            return;
        }
        encoder_free(&c->enc);
    }
    if (c->resp_framing == FRAMING_CHUNKED)
        client_write(c, "0\r\n\r\n", 5);
    c->resp_done = true;
}

/* The page cannot be completed: 502 while nothing was sent, else the
 * connection is cut. */
static void page_fail(struct esi_page *p, const struct esi_slot *s)
{
    struct client *c = p->c;
    const struct esi_segment *seg = s->seg;
    char why[256];
    snprintf(why, sizeof why, "ESI include \"%.*s\" failed: %s",
             (int)(seg->src_len < 120 ? seg->src_len : 120), seg->src, s->fail_buf);
    if (p->head_sent) {
        log_warn("client %s: %s, after the page's head: closing", c->addr, why);
        client_abort(c);
        return;
    }
    page_finish(p);
    client_fail(c, 502, why);
}

/* The page is answered otherwise (an error): its includes stop now, not
 * when the error has been written. */
static void page_finish(struct esi_page *p)
{
    p->finished = true;
    ev_timer_stop(page_worker(p)->loop, &p->head_timer);
    for (size_t i = 0; i < p->tmpl.nsegs; i++)
        slot_release(&p->slots[i], true);
}

static void page_pump(struct esi_page *p)
{
    struct client *c = p->c;
    ev_timer_stop(page_worker(p)->loop, &p->pump);
    if (c->state == CS_DEAD || p->finished)
        return;
    for (size_t i = 0; i < p->tmpl.nsegs; i++) {
        struct esi_slot *s = &p->slots[i];
        slot_handle_failure(s);
        if (s->state == SLOT_FAILED) {
            page_fail(p, s);
            return;
        }
    }
    if (!p->head_sent) {
        bool full = all_heads_known(p);
        if (!full && !p->head_wait_over)
            return;
        ev_timer_stop(page_worker(p)->loop, &p->head_timer);
        if (!page_send_head(p, full))
            return;
    }
    if (!page_emit(p))
        return;
    if (p->cur == p->tmpl.nsegs && !c->resp_done) {
        page_end(p);
        if (c->state == CS_DEAD)
            return;
    }
    client_flush(c); /* last: it may end the request and free the page */
}

static void head_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct esi_page *p = t->data;
    p->head_wait_over = true;
    page_pump(p);
}

void esi_page_drained(struct esi_page *p)
{
    if (p->out_blocked) {
        p->out_blocked = false;
        page_schedule(p);
    }
}

/* ---- starting and ending ---------------------------------------------------------- */

/* The template's encoding, decoded where it lies when the object holds it
 * in one piece (the client's reference keeps it alive as long as the
 * page), else made contiguous first. */
static bool page_load_template(struct esi_page *p)
{
    const struct cache_object *obj = p->c->cr.obj;
    const unsigned char *enc = obj->nbody == 1 ? obj->body[0].iov_base : NULL;
    if (!enc) {
        p->raw = malloc(obj->body_len ? obj->body_len : 1);
        if (!p->raw)
            return false;
        size_t off = 0;
        for (size_t i = 0; i < obj->nbody; i++) {
            memcpy(p->raw + off, obj->body[i].iov_base, obj->body[i].iov_len);
            off += obj->body[i].iov_len;
        }
        enc = p->raw;
    }
    char err[128];
    if (!esi_template_decode(enc, obj->body_len, &p->tmpl, err, sizeof err)) {
        log_error("esi: a stored template does not decode: %s", err);
        return false;
    }
    return true;
}

/* This page's request: its Host and origin-form target, for resolving
 * relative src and for the include chain. */
static bool page_identity(struct esi_page *p)
{
    const struct client *c = p->c;
    const char *base = c->in.data;
    const struct http_field *host = http_head_find(base, &c->req, "host");
    const char *h = host ? base + host->value.off : "";
    size_t hlen = host ? host->value.len : 0;
    const char *t = base + c->req.target.off;
    size_t tlen = c->req.target.len;
    if (tlen >= 7 && strncasecmp(t, "http://", 7) == 0) {
        /* absolute-form: its authority is the host (RFC 9112 3.2.2), as
         * the router saw it */
        const char *slash = memchr(t + 7, '/', tlen - 7);
        h = t + 7;
        hlen = slash ? (size_t)(slash - h) : tlen - 7;
        tlen = slash ? tlen - (size_t)(slash - t) : 1;
        t = slash ? slash : "/";
    }
    p->host = strndup(h, hlen);
    p->target = strndup(t, tlen);
    if (!p->host || !p->target)
        return false;
    const struct esi_page *parent = c->subrequest && c->slot ? c->slot->page : NULL;
    p->chain = (struct esi_chain){
        .parent = parent ? &parent->chain : NULL,
        .host = p->host,
        .host_len = strlen(p->host),
        .target = p->target,
        .target_len = strlen(p->target),
    };
    return true;
}

static void page_start_includes(struct esi_page *p)
{
    for (size_t i = 0; i < p->tmpl.nsegs; i++) {
        const struct esi_segment *seg = &p->tmpl.segs[i];
        struct esi_slot *s = &p->slots[i];
        s->page = p;
        s->seg = seg;
        if (seg->kind != ESI_INCLUDE)
            continue;
        ev_init(&s->timer, slot_timer_cb);
        s->timer.data = s;
        slot_fetch(s, seg->src, seg->src_len);
    }
}

void esi_page_start(struct client *c)
{
    struct esi_page *p = calloc(1, sizeof *p);
    if (!p) {
        client_fail(c, 500, "out of memory");
        return;
    }
    c->page = p;
    p->c = c;
    ev_init(&p->pump, pump_cb);
    p->pump.data = p;
    ev_init(&p->head_timer, head_timer_cb);
    p->head_timer.data = p;
    struct esi_page *parent = c->subrequest && c->slot ? c->slot->page : NULL;
    p->root = parent ? parent->root : p;
    p->depth = parent ? parent->depth + 1 : 0;
    p->limits = parent ? parent->limits : &c->route->esi;
    p->includes_left = p->limits->max_includes;
    stats_add(&c->w->stats.esi_pages, 1);
    if (!page_load_template(p)) {
        client_fail(c, 502, "the stored ESI template is corrupt");
        return;
    }
    p->slots = calloc(p->tmpl.nsegs ? p->tmpl.nsegs : 1, sizeof *p->slots);
    if (!p->slots || !page_identity(p)) {
        client_fail(c, 500, "out of memory");
        return;
    }
    page_start_includes(p);
    p->head_wait_over = p->limits->head_wait_ms == 0;
    if (!p->head_wait_over) {
        ev_timer_set(&p->head_timer, (ev_tstamp)p->limits->head_wait_ms / 1000.0, 0);
        ev_timer_start(c->w->loop, &p->head_timer);
    }
    page_schedule(p);
}

void esi_page_free(struct esi_page **pp, bool close_subrequests)
{
    struct esi_page *p = *pp;
    if (!p)
        return;
    *pp = NULL;
    ev_timer_stop(page_worker(p)->loop, &p->pump);
    ev_timer_stop(page_worker(p)->loop, &p->head_timer);
    for (size_t i = 0; p->slots && i < p->tmpl.nsegs; i++)
        slot_release(&p->slots[i], close_subrequests);
    free(p->slots);
    esi_template_clear(&p->tmpl);
    buf_release(&p->pending);
    free(p->raw);
    free(p->host);
    free(p->target);
    free(p);
}
