/*
 * proxy/upstream.c: application-server connections (see upstream.h).
 *
 * Each worker keeps one pool per server address.  A pool holds the idle
 * keep-alive connections to that server (LIFO, at most the backend's
 * `keepalive`) and the server's health as this worker saw it: consecutive
 * failures and, past max_fails, the time until which it is skipped.  Pools
 * outlive config reloads, so idle connections and health survive a SIGHUP.
 *
 * Life of a connection:
 *
 *   connect ──> CONNECTING ──ok──> ACTIVE ──response done, keep-alive──> IDLE
 *                   │                │                                     │
 *                   └──fail──> closed└──error or close──> closed <──EOF────┘
 *                                     IDLE ──upstream_open──> ACTIVE (reused)
 *
 * Threading: everything runs on the owning worker's loop; no locks.
 * Re-entrancy: handler callbacks run inside llhttp_execute(); an owner that
 * aborts from a callback only marks the connection, which is closed when the
 * parse returns (STYLE 10).
 */
#include "proxy/upstream.h"

#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/buf.h"
#include "proxy/log.h"

#define UPSTREAM_READ_SIZE 16384
#define UPSTREAM_HEAD_MAX 65536    /* response head bytes, fields included */
#define UPSTREAM_IDLE_TIMEOUT 60.0 /* seconds an idle pooled connection is kept */

struct upstream_pool {
    struct upstream_pool *next;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[300];
    struct upstream *idle;
    unsigned nidle;
    unsigned fails;       /* consecutive failures */
    ev_tstamp down_until; /* skipped until then */
};

enum upstream_state { UP_CONNECTING, UP_ACTIVE, UP_IDLE };

struct upstream {
    struct worker *w;
    struct upstream_pool *pool;
    struct upstream *next_idle;
    int fd;
    ev_io rio, wio;
    ev_timer timer;
    enum upstream_state state;

    const struct upstream_handler *h;
    void *owner;
    const struct config_backend *backend;
    int server;

    llhttp_t parser;
    struct buf in, out, hbuf;
    struct http_head head; /* response head, then its trailers */
    struct http_field *field;
    bool in_value;

    bool reused;
    bool head_request;
    bool request_done;
    bool paused;
    bool interim;    /* the message being parsed is a 1xx */
    bool final_head; /* the final response head was delivered */
    bool complete;   /* the final response ended */
    bool busy;       /* inside llhttp_execute: closing is deferred */
    bool aborted;    /* the owner let go while busy */
    bool failed;     /* a callback found the response unacceptable */
    bool refused;    /* connect(2) failed at once */
    bool leftover;   /* bytes followed the response */
};

static void upstream_free(struct upstream *up);

const char *upstream_failure_name(enum upstream_failure failure)
{
    switch (failure) {
    case UPSTREAM_NO_SERVER:
        return "no live upstream server";
    case UPSTREAM_REFUSED:
        return "connection to upstream failed";
    case UPSTREAM_CONNECT_TIMEOUT:
        return "upstream connect timed out";
    case UPSTREAM_TIMEOUT:
        return "upstream timed out";
    case UPSTREAM_CLOSED:
        return "upstream closed the connection prematurely";
    case UPSTREAM_BAD_RESPONSE:
        return "invalid response from upstream";
    }
    return "?";
}

/* ---- pools and server choice ------------------------------------------- */

static struct upstream_pool *pool_get(struct worker *w, const struct config_server *s)
{
    for (struct upstream_pool *p = w->pools; p; p = p->next)
        if (p->addrlen == s->addrlen && memcmp(&p->addr, &s->addr, s->addrlen) == 0)
            return p;
    struct upstream_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    memcpy(&p->addr, &s->addr, s->addrlen);
    p->addrlen = s->addrlen;
    snprintf(p->name, sizeof p->name, "%s", s->text);
    p->next = w->pools;
    w->pools = p;
    return p;
}

bool upstream_backend_rt_init(struct worker *w, struct backend_rt *rt,
                              const struct config_backend *b)
{
    rt->backend = b;
    rt->current = calloc(b->nservers, sizeof *rt->current);
    rt->pools = calloc(b->nservers, sizeof *rt->pools);
    if (!rt->current || !rt->pools)
        goto fail;
    for (size_t i = 0; i < b->nservers; i++) {
        rt->pools[i] = pool_get(w, &b->servers[i]);
        if (!rt->pools[i])
            goto fail;
    }
    return true;
fail:
    upstream_backend_rt_free(rt);
    return false;
}

void upstream_backend_rt_free(struct backend_rt *rt)
{
    free(rt->current);
    free(rt->pools);
    rt->current = NULL;
    rt->pools = NULL;
}

static bool server_is_down(const struct config_server *s, const struct upstream_pool *p,
                           ev_tstamp now)
{
    return s->max_fails > 0 && p->fails >= s->max_fails && now < p->down_until;
}

/* Smooth weighted round robin (each server gains its weight, the richest is
 * chosen and pays the total), over the servers that are up.  `avoid` is
 * skipped unless it is the only one up. */
static int server_choose(struct backend_rt *rt, int avoid, ev_tstamp now)
{
    const struct config_backend *b = rt->backend;
    for (int pass = 0; pass < 2; pass++) {
        int best = -1, total = 0;
        for (size_t i = 0; i < b->nservers; i++) {
            if (server_is_down(&b->servers[i], rt->pools[i], now))
                continue;
            if (pass == 0 && (int)i == avoid)
                continue;
            rt->current[i] += (int)b->servers[i].weight;
            total += (int)b->servers[i].weight;
            if (best < 0 || rt->current[i] > rt->current[best])
                best = (int)i;
        }
        if (best >= 0) {
            rt->current[best] -= total;
            return best;
        }
    }
    return -1;
}

static void server_failed(struct upstream *up)
{
    const struct config_server *s = &up->backend->servers[up->server];
    struct upstream_pool *p = up->pool;
    if (s->max_fails == 0)
        return;
    p->fails++;
    if (p->fails == s->max_fails) {
        p->down_until = ev_now(up->w->loop) + (ev_tstamp)s->fail_timeout_ms / 1000.0;
        log_warn("upstream server %s marked down for %llu ms after %u failure(s)", p->name,
                 (unsigned long long)s->fail_timeout_ms, p->fails);
    } else if (p->fails > s->max_fails) {
        p->down_until = ev_now(up->w->loop) + (ev_tstamp)s->fail_timeout_ms / 1000.0;
    }
}

/* ---- timers ------------------------------------------------------------- */

/* The read timeout runs only while tessera waits on the server: not while
 * paused for a slow client, nor while waiting for the client's body. */
static void timer_update(struct upstream *up)
{
    if (up->state != UP_ACTIVE)
        return;
    bool waiting = !up->paused && (up->request_done || buf_pending(&up->out) > 0);
    if (!waiting) {
        ev_timer_stop(up->w->loop, &up->timer);
        return;
    }
    up->timer.repeat = (ev_tstamp)up->backend->read_timeout_ms / 1000.0;
    ev_timer_again(up->w->loop, &up->timer);
}

/* ---- ending ------------------------------------------------------------- */

static void upstream_close_fd(struct upstream *up)
{
    ev_io_stop(up->w->loop, &up->rio);
    ev_io_stop(up->w->loop, &up->wio);
    ev_timer_stop(up->w->loop, &up->timer);
    if (up->fd >= 0)
        close(up->fd);
    up->fd = -1;
}

static void upstream_free(struct upstream *up)
{
    upstream_close_fd(up);
    buf_release(&up->in);
    buf_release(&up->out);
    buf_release(&up->hbuf);
    http_head_free(&up->head);
    free(up);
}

static void pool_remove_idle(struct upstream *up)
{
    struct upstream **pp = &up->pool->idle;
    while (*pp && *pp != up)
        pp = &(*pp)->next_idle;
    if (*pp) {
        *pp = up->next_idle;
        up->pool->nidle--;
    }
}

static void idle_read_cb(struct ev_loop *loop, ev_io *io, int revents);
static void idle_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void read_cb(struct ev_loop *loop, ev_io *io, int revents);
static void timeout_cb(struct ev_loop *loop, ev_timer *t, int revents);

/* The final response ended: pool the connection when it can carry another
 * request (RFC 9112 9.3), close it otherwise. */
static void upstream_finish(struct upstream *up)
{
    bool reusable = llhttp_should_keep_alive(&up->parser) && up->request_done &&
                    buf_pending(&up->out) == 0 && !up->leftover && !up->interim &&
                    up->pool->nidle < up->backend->keepalive && !up->w->draining;
    const struct upstream_handler *h = up->h;
    void *owner = up->owner;
    up->h = NULL;
    up->owner = NULL;
    if (!reusable) {
        upstream_free(up);
    } else {
        ev_io_stop(up->w->loop, &up->wio);
        ev_io_stop(up->w->loop, &up->rio);
        ev_io_init(&up->rio, idle_read_cb, up->fd, EV_READ);
        ev_io_start(up->w->loop, &up->rio);
        ev_timer_stop(up->w->loop, &up->timer);
        ev_timer_init(&up->timer, idle_timeout_cb, UPSTREAM_IDLE_TIMEOUT, 0);
        ev_timer_start(up->w->loop, &up->timer);
        buf_release(&up->in);
        buf_release(&up->out);
        buf_release(&up->hbuf);
        up->state = UP_IDLE;
        up->next_idle = up->pool->idle;
        up->pool->idle = up;
        up->pool->nidle++;
    }
    h->on_done(owner);
}

static void upstream_fail(struct upstream *up, enum upstream_failure failure)
{
    const struct upstream_handler *h = up->h;
    void *owner = up->owner;
    bool started = up->final_head;
    struct upstream_error err = {failure, started, up->reused, up->server};
    bool stale_pooled = up->reused && !started && failure == UPSTREAM_CLOSED;
    /* A pooled connection the server closed while idle is not the server
     * failing; anything else before a response counts against it. */
    if (!started && !stale_pooled && failure != UPSTREAM_NO_SERVER)
        server_failed(up);
    log_msg(started ? LOG_WARN : LOG_ERROR, "%s: %s", upstream_failure_name(failure),
            up->pool->name);
    up->h = NULL;
    up->owner = NULL;
    upstream_free(up);
    h->on_error(owner, &err);
}

/* ---- idle pooled connections ------------------------------------------- */

static void idle_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct upstream *up = io->data;
    /* An idle server sends nothing; whatever comes (EOF, a stray byte,
     * an error) means the connection cannot be used again. */
    pool_remove_idle(up);
    upstream_free(up);
}

static void idle_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct upstream *up = t->data;
    pool_remove_idle(up);
    upstream_free(up);
}

void upstream_pools_free(struct worker *w)
{
    struct upstream_pool *p = w->pools;
    while (p) {
        struct upstream_pool *next = p->next;
        while (p->idle) {
            struct upstream *up = p->idle;
            p->idle = up->next_idle;
            upstream_free(up);
        }
        free(p);
        p = next;
    }
    w->pools = NULL;
}

/* ---- response parsing --------------------------------------------------- */

static struct upstream *parser_upstream(llhttp_t *p)
{
    return p->data;
}

static int head_append(struct upstream *up, const char *at, size_t n)
{
    if (up->hbuf.len + n > UPSTREAM_HEAD_MAX) {
        up->failed = true;
        return -1;
    }
    buf_append(&up->hbuf, at, n);
    return up->hbuf.oom ? -1 : 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct upstream *up = parser_upstream(p);
    http_head_reset(&up->head);
    buf_reset(&up->hbuf);
    up->field = NULL;
    up->in_value = false;
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n)
{
    struct upstream *up = parser_upstream(p);
    if (up->head.reason.len == 0)
        up->head.reason.off = (uint32_t)up->hbuf.len;
    up->head.reason.len += (uint32_t)n;
    return head_append(up, at, n);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct upstream *up = parser_upstream(p);
    if (!up->field || up->in_value) {
        up->field = http_head_add_field(&up->head);
        if (!up->field)
            return -1;
        up->field->name.off = (uint32_t)up->hbuf.len;
        up->in_value = false;
    }
    up->field->name.len += (uint32_t)n;
    return head_append(up, at, n);
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct upstream *up = parser_upstream(p);
    if (!up->field)
        return -1;
    if (!up->in_value) {
        up->field->value.off = (uint32_t)up->hbuf.len;
        up->in_value = true;
    }
    up->field->value.len += (uint32_t)n;
    return head_append(up, at, n);
}

static void head_trim_values(struct upstream *up)
{
    for (unsigned i = 0; i < up->head.nfields; i++)
        up->head.fields[i].value = http_span_trim(up->hbuf.data, up->head.fields[i].value);
}

static int on_headers_complete(llhttp_t *p)
{
    struct upstream *up = parser_upstream(p);
    up->head.status = llhttp_get_status_code(p);
    up->head.major = llhttp_get_http_major(p);
    up->head.minor = llhttp_get_http_minor(p);
    head_trim_values(up);
    /* We never forward Upgrade, so a 101 is a protocol error. */
    if (up->head.status == 101) {
        up->failed = true;
        return -1;
    }
    up->interim = up->head.status < 200;
    if (!up->interim) {
        up->final_head = true;
        up->pool->fails = 0;
    }
    if (!up->h->on_head(up->owner, up->hbuf.data ? up->hbuf.data : "", &up->head, up->interim))
        return -1;
    /* Trailers, if any, are collected afresh. */
    http_head_reset(&up->head);
    buf_reset(&up->hbuf);
    up->field = NULL;
    up->in_value = false;
    if (up->interim)
        return 0;
    return up->head_request ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct upstream *up = parser_upstream(p);
    if (up->aborted)
        return -1;
    up->h->on_body(up->owner, at, n);
    return up->aborted ? -1 : 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct upstream *up = parser_upstream(p);
    if (up->interim) {
        up->interim = false;
        return 0;
    }
    if (up->aborted)
        return -1;
    head_trim_values(up);
    if (up->h->on_trailers && up->head.nfields > 0)
        up->h->on_trailers(up->owner, up->hbuf.data, &up->head);
    up->complete = true;
    /* Stop here: bytes after the response are not ours to parse. */
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Feed n bytes to the parser; on return the upstream may be finished,
 * failed or freed: the caller must not touch it after a true result. */
static bool parse(struct upstream *up, const char *p, size_t n, bool eof)
{
    up->busy = true;
    llhttp_errno_t err = eof ? llhttp_finish(&up->parser) : llhttp_execute(&up->parser, p, n);
    up->busy = false;
    if (up->aborted) {
        upstream_free(up);
        return true;
    }
    if (err == HPE_PAUSED && up->complete) {
        size_t used = (size_t)(llhttp_get_error_pos(&up->parser) - p);
        /* Bytes after the response: the server is confused; never reuse. */
        up->leftover = !eof && used < n;
        buf_reset(&up->in);
        upstream_finish(up);
        return true;
    }
    if (err == HPE_OK && eof && !up->complete && up->final_head && !up->interim &&
        !llhttp_message_needs_eof(&up->parser)) {
        upstream_fail(up, UPSTREAM_CLOSED);
        return true;
    }
    if (err != HPE_OK) {
        if (!up->final_head && !up->failed && eof && up->hbuf.len == 0)
            upstream_fail(up, UPSTREAM_CLOSED);
        else
            upstream_fail(up, up->final_head ? UPSTREAM_CLOSED : UPSTREAM_BAD_RESPONSE);
        return true;
    }
    if (eof) {
        if (up->complete) {
            upstream_finish(up);
        } else {
            upstream_fail(up, UPSTREAM_CLOSED);
        }
        return true;
    }
    return false;
}

/* ---- I/O ---------------------------------------------------------------- */

static void flush_out(struct upstream *up)
{
    while (buf_pending(&up->out) > 0) {
        ssize_t n = send(up->fd, up->out.data + up->out.off, buf_pending(&up->out), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&up->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(up->w->loop, &up->wio);
            return;
        }
        /* The server stopped reading (it may have answered already, e.g.
         * 413 before the whole body): drop what is left and let the read
         * side tell how the exchange ended. */
        buf_reset(&up->out);
        up->request_done = false; /* never pool a half-sent connection */
        break;
    }
    ev_io_stop(up->w->loop, &up->wio);
}

static void read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct upstream *up = io->data;
    if (!buf_reserve(&up->in, UPSTREAM_READ_SIZE)) {
        upstream_fail(up, UPSTREAM_CLOSED);
        return;
    }
    ssize_t n = recv(up->fd, up->in.data + up->in.len, UPSTREAM_READ_SIZE, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        parse(up, NULL, 0, true);
        return;
    }
    char *p = up->in.data + up->in.len;
    if (parse(up, p, (size_t)n, false))
        return;
    buf_reset(&up->in);
    timer_update(up);
}

static void connected(struct upstream *up)
{
    up->state = UP_ACTIVE;
    ev_timer_stop(up->w->loop, &up->timer);
    ev_init(&up->timer, timeout_cb);
    up->timer.data = up;
    ev_io_start(up->w->loop, &up->rio);
    flush_out(up);
    timer_update(up);
}

static void write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct upstream *up = io->data;
    if (up->refused) {
        upstream_fail(up, UPSTREAM_REFUSED);
        return;
    }
    if (up->state == UP_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(up->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            log_debug("connect to %s: %s", up->pool->name, strerror(err));
            upstream_fail(up, UPSTREAM_REFUSED);
            return;
        }
        connected(up);
    } else {
        flush_out(up);
        timer_update(up);
    }
    if (up->state == UP_ACTIVE && buf_pending(&up->out) == 0 && up->h && up->h->on_drained)
        up->h->on_drained(up->owner);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct upstream *up = t->data;
    upstream_fail(up, up->state == UP_CONNECTING ? UPSTREAM_CONNECT_TIMEOUT : UPSTREAM_TIMEOUT);
}

static int connect_socket(struct upstream *up, const struct config_server *s)
{
    int fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    up->fd = fd;
    if (connect(fd, (const struct sockaddr *)&s->addr, s->addrlen) == 0)
        return 1;
    return errno == EINPROGRESS ? 0 : -1;
}

static struct upstream *pool_take_idle(struct upstream_pool *p)
{
    struct upstream *up = p->idle;
    if (!up)
        return NULL;
    p->idle = up->next_idle;
    p->nidle--;
    up->next_idle = NULL;
    return up;
}

static void upstream_prepare(struct upstream *up, const struct upstream_handler *h, void *owner,
                             bool head_request)
{
    up->h = h;
    up->owner = owner;
    up->head_request = head_request;
    up->request_done = up->paused = up->interim = up->final_head = false;
    up->complete = up->busy = up->aborted = up->failed = up->refused = up->leftover = false;
    llhttp_init(&up->parser, HTTP_RESPONSE, &parser_settings);
    up->parser.data = up;
    http_head_reset(&up->head);
}

struct upstream *upstream_open(struct worker *w, struct wcfg *wc, const struct config_backend *b,
                               int avoid, bool head_request, const struct upstream_handler *h,
                               void *owner)
{
    struct backend_rt *rt = &wc->backends[b - wc->cfg->backends];
    int server = server_choose(rt, avoid, ev_now(w->loop));
    if (server < 0)
        return NULL;
    struct upstream_pool *pool = rt->pools[server];
    struct upstream *up = pool_take_idle(pool);
    if (up) {
        ev_io_stop(w->loop, &up->rio);
        ev_timer_stop(w->loop, &up->timer);
        up->reused = true;
    } else {
        up = calloc(1, sizeof *up);
        if (!up)
            return NULL;
        up->fd = -1;
        up->w = w;
        up->pool = pool;
    }
    up->backend = b;
    up->server = server;
    upstream_prepare(up, h, owner, head_request);
    ev_io_init(&up->rio, read_cb, up->fd, EV_READ);
    ev_io_init(&up->wio, write_cb, up->fd, EV_WRITE);
    up->rio.data = up->wio.data = up;
    ev_init(&up->timer, timeout_cb);
    up->timer.data = up;
    if (up->reused) {
        up->state = UP_ACTIVE;
        ev_io_start(w->loop, &up->rio);
        return up;
    }
    int rc = connect_socket(up, &b->servers[server]);
    ev_io_set(&up->rio, up->fd, EV_READ);
    ev_io_set(&up->wio, up->fd, EV_WRITE);
    up->state = UP_CONNECTING;
    if (rc < 0) {
        /* Report the refusal from the loop, never from inside the caller:
         * the write callback reads the refusal and fails the exchange. */
        up->refused = true;
        ev_feed_event(w->loop, &up->wio, EV_WRITE);
        return up;
    }
    if (rc == 1) {
        connected(up);
        return up;
    }
    ev_io_start(w->loop, &up->wio);
    ev_timer_set(&up->timer, (ev_tstamp)b->connect_timeout_ms / 1000.0, 0);
    ev_timer_start(w->loop, &up->timer);
    return up;
}

int upstream_server_index(const struct upstream *up)
{
    return up->server;
}

const char *upstream_server_name(const struct upstream *up)
{
    return up->pool->name;
}

bool upstream_reused(const struct upstream *up)
{
    return up->reused;
}

void upstream_write(struct upstream *up, const void *p, size_t n)
{
    buf_append(&up->out, p, n);
    if (up->state == UP_ACTIVE && !ev_is_active(&up->wio))
        flush_out(up);
    timer_update(up);
}

void upstream_request_done(struct upstream *up)
{
    up->request_done = true;
    timer_update(up);
}

size_t upstream_pending(const struct upstream *up)
{
    return buf_pending(&up->out);
}

void upstream_pause(struct upstream *up)
{
    if (up->paused)
        return;
    up->paused = true;
    if (up->state == UP_ACTIVE)
        ev_io_stop(up->w->loop, &up->rio);
    timer_update(up);
}

void upstream_resume(struct upstream *up)
{
    if (!up->paused)
        return;
    up->paused = false;
    if (up->state == UP_ACTIVE)
        ev_io_start(up->w->loop, &up->rio);
    timer_update(up);
}

void upstream_abort(struct upstream **upp)
{
    struct upstream *up = *upp;
    *upp = NULL;
    if (!up)
        return;
    up->h = NULL;
    up->owner = NULL;
    if (up->busy) {
        up->aborted = true;
        return;
    }
    upstream_free(up);
}
