/*
 * proxy/revalidate.c: background revalidation (see revalidate.h).
 *
 * A background fetch is an upstream exchange with no client: it owns a copy
 * of the client's request head (for Vary), its own cache state (whose fill
 * it claimed) and a reference to the config generation it started under.
 * It runs on its worker's loop like any upstream exchange and frees itself
 * when the upstream ends.  Everything stays on that worker: no locking
 * beyond the store's and the coalescing table's own.
 */
#include "proxy/revalidate.h"

#include <stdlib.h>
#include <string.h>

#include "proxy/buf.h"
#include "proxy/forward.h"
#include "proxy/log.h"
#include "proxy/upstream.h"

struct revalidation {
    struct revalidation *next, *prev;
    struct worker *w;
    struct wcfg *wc;
    struct upstream *up;
    struct cache_req cr;
    struct buf head;      /* the client's request head, copied */
    struct http_head req; /* spans into head */
};

/* The worker's list of running fetches; kept behind one pointer so that
 * worker.h needs no knowledge of this struct. */
static struct revalidation **list_of(struct worker *w)
{
    return (struct revalidation **)&w->revalidations;
}

static void revalidation_free(struct revalidation *rv)
{
    struct revalidation **head = list_of(rv->w);
    if (rv->prev)
        rv->prev->next = rv->next;
    else
        *head = rv->next;
    if (rv->next)
        rv->next->prev = rv->prev;
    if (rv->up)
        upstream_abort(&rv->up);
    cache_req_reset(&rv->cr);
    buf_release(&rv->head);
    http_head_free(&rv->req);
    wcfg_release(&rv->wc);
    free(rv);
}

static int64_t now_ms(const struct revalidation *rv)
{
    return (int64_t)(ev_now(rv->w->loop) * 1000.0);
}

static bool on_head(void *owner, const char *base, const struct http_head *head, bool interim)
{
    struct revalidation *rv = owner;
    if (interim)
        return true;
    struct buf extra = {0};
    enum cache_head_action action = cache_req_response_head(&rv->cr, rv->w, rv->head.data, &rv->req,
                                                            base, head, &extra, now_ms(rv));
    buf_release(&extra);
    log_debug("background revalidation of %.*s: %d (%s)", (int)rv->cr.key_len, rv->cr.key,
              head->status, action == CACHE_HEAD_SERVE_OBJECT ? "refreshed" : "fetched");
    return true;
}

static void on_body(void *owner, const char *p, size_t n)
{
    struct revalidation *rv = owner;
    cache_req_response_body(&rv->cr, p, n);
}

static void on_done(void *owner)
{
    struct revalidation *rv = owner;
    rv->up = NULL;
    cache_req_response_done(&rv->cr, rv->w, now_ms(rv));
    revalidation_free(rv);
}

static void on_error(void *owner, const struct upstream_error *err)
{
    struct revalidation *rv = owner;
    rv->up = NULL;
    log_warn("background revalidation of %.*s failed: %s", (int)rv->cr.key_len, rv->cr.key,
             upstream_failure_name(err->failure));
    revalidation_free(rv); /* the fill is released as failed: the stale copy stays */
}

static const struct upstream_handler handler = {
    .on_head = on_head,
    .on_body = on_body,
    .on_done = on_done,
    .on_error = on_error,
};

static bool keep_field(const void *ctx, const char *base, const struct http_field *f)
{
    return cache_req_upstream_keeps_field(ctx, base, f);
}

/* The client's head, copied with its spans (they are offsets: they hold
 * in the copy as they did in the original). */
static bool copy_request(struct revalidation *rv, const char *base, const struct http_head *req)
{
    uint32_t end = 0;
    for (unsigned i = 0; i < req->nfields; i++) {
        const struct http_field *f = &req->fields[i];
        if (f->value.off + f->value.len > end)
            end = f->value.off + f->value.len;
        if (f->name.off + f->name.len > end)
            end = f->name.off + f->name.len;
    }
    if (req->method.off + req->method.len > end)
        end = req->method.off + req->method.len;
    if (req->target.off + req->target.len > end)
        end = req->target.off + req->target.len;
    buf_append(&rv->head, base, end);
    rv->req = *req;
    rv->req.fields = NULL;
    rv->req.cap = rv->req.nfields = 0;
    for (unsigned i = 0; i < req->nfields; i++) {
        struct http_field *f = http_head_add_field(&rv->req);
        if (!f)
            return false;
        *f = req->fields[i];
    }
    return !rv->head.oom;
}

void revalidate_start(struct worker *w, struct wcfg *wc, const struct config_route *route,
                      const struct cache_req *cr, const char *base, const struct http_head *req,
                      const char *host, size_t host_len, const char *target, size_t target_len,
                      const char *client_addr)
{
    struct revalidation *rv = calloc(1, sizeof *rv);
    if (!rv)
        return;
    rv->w = w;
    if (!cache_req_background_init(&rv->cr, cr, w, (int64_t)(ev_now(w->loop) * 1000.0))) {
        free(rv);
        return;
    }
    rv->wc = wcfg_ref(wc);
    struct revalidation **head = list_of(w);
    rv->next = *head;
    if (*head)
        (*head)->prev = rv;
    *head = rv;
    if (!copy_request(rv, base, req))
        goto fail;
    struct buf extra = {0}, uphead = {0};
    cache_req_upstream_fields(&rv->cr, &extra);
    struct forward_request fr = {
        .target = target,
        .target_len = target_len,
        .host = host,
        .host_len = host_len,
        .client_addr = client_addr,
        .proto = "http",
        .framing = FRAMING_NONE,
        .close = route->backend->keepalive == 0,
        .extra = extra.data,
        .extra_len = extra.len,
        .keep = keep_field,
        .keep_ctx = &rv->cr,
    };
    forward_request_head(&uphead, rv->head.data, &rv->req, &fr);
    buf_release(&extra);
    rv->up = uphead.oom ? NULL : upstream_open(w, rv->wc, route->backend, -1, false, &handler, rv);
    if (rv->up) {
        upstream_write(rv->up, uphead.data, uphead.len);
        upstream_request_done(rv->up);
    }
    buf_release(&uphead);
    if (!rv->up)
        goto fail;
    log_debug("background revalidation of %.*s started", (int)rv->cr.key_len, rv->cr.key);
    return;
fail:
    revalidation_free(rv);
}

void revalidate_shutdown(struct worker *w)
{
    while (*list_of(w))
        revalidation_free(*list_of(w));
}

unsigned revalidate_running(const struct worker *w)
{
    unsigned n = 0;
    for (const struct revalidation *rv = w->revalidations; rv; rv = rv->next)
        n++;
    return n;
}
