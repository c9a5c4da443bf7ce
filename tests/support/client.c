/*
 * client: raw HTTP/1.1 test client over non-blocking sockets and poll().
 *
 * Each client_read_response call runs a fresh llhttp response parser over
 * the client's buffer and pauses it at the end of the message, so bytes of a
 * following (pipelined) response stay unconsumed in the buffer.  The parse
 * state lives on the stack of that call (struct reader); everything kept
 * afterwards is copied into the caller's struct http_response.
 * Not thread-safe: one thread per client.
 */
#include "tests/support/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <llhttp.h>

enum { READ_CHUNK = 65536 };

/* ---- a growable string ---------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
};

static int sbuf_append(struct sbuf *s, const char *data, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *p = realloc(s->p, cap);
        if (p == NULL)
            return -1;
        s->p = p;
        s->cap = cap;
    }
    if (n > 0)
        memcpy(s->p + s->len, data, n);
    s->len += n;
    s->p[s->len] = '\0';
    return 0;
}

__attribute__((format(printf, 2, 3))) static int sbuf_printf(struct sbuf *s, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return sbuf_append(s, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (big == NULL)
        return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = sbuf_append(s, big, (size_t)n);
    free(big);
    return rc;
}

/* Take ownership of the string (never NULL: "" when empty). */
static char *sbuf_take(struct sbuf *s)
{
    char *p = s->p ? s->p : strdup("");
    memset(s, 0, sizeof(*s));
    return p;
}

/* ---- connections ------------------------------------------------------------ */

static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int rc;
    do
        rc = poll(&pfd, 1, timeout_ms);
    while (rc < 0 && errno == EINTR);
    return rc; /* 1 ready, 0 timeout, -1 error */
}

struct client *client_connect(int port, int timeout_ms)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->port = port;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        goto fail;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (errno != EINPROGRESS)
            goto fail;
        if (wait_fd(c->fd, POLLOUT, timeout_ms) != 1) {
            errno = ETIMEDOUT;
            goto fail;
        }
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
            errno = err;
            goto fail;
        }
    }
    return c;
fail:
    fprintf(stderr, "client_connect 127.0.0.1:%d: %s\n", port, strerror(errno));
    if (c->fd >= 0)
        close(c->fd);
    free(c);
    return NULL;
}

void client_free(struct client **cp)
{
    struct client *c = cp ? *cp : NULL;
    if (c == NULL)
        return;
    close(c->fd);
    free(c->buf);
    free(c);
    *cp = NULL;
}

int client_send(struct client *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(c->fd, POLLOUT, CLIENT_TIMEOUT_MS) != 1) {
                fprintf(stderr, "client_send: stalled for %d ms\n", CLIENT_TIMEOUT_MS);
                return -1;
            }
        } else {
            return -1;
        }
    }
    return 0;
}

int client_sendf(struct client *c, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    int rc = client_send(c, s, (size_t)n);
    free(s);
    return rc;
}

int client_send_request_v(struct client *c, const char *method, const char *target,
                          const char *const headers[])
{
    struct sbuf s = {0};
    bool has_host = false;
    int rc = sbuf_printf(&s, "%s %s HTTP/1.1\r\n", method, target);
    for (size_t i = 0; headers && headers[i]; i++) {
        has_host = has_host || strncasecmp(headers[i], "host:", 5) == 0;
        rc |= sbuf_printf(&s, "%s\r\n", headers[i]);
    }
    if (!has_host)
        rc |= sbuf_printf(&s, "Host: 127.0.0.1:%d\r\n", c->port);
    rc |= sbuf_append(&s, "\r\n", 2);
    if (rc == 0)
        rc = client_send(c, s.p, s.len);
    free(s.p);
    return rc;
}

/* Collect a NULL-terminated va_list of strings into out[] (at most max-1). */
static void collect_args(const char *out[], size_t max, va_list ap)
{
    size_t n = 0;
    const char *h;
    while ((h = va_arg(ap, const char *)) != NULL && n < max - 1)
        out[n++] = h;
    out[n] = NULL;
}

int client_send_request(struct client *c, const char *method, const char *target, ...)
{
    const char *headers[64];
    va_list ap;
    va_start(ap, target);
    collect_args(headers, 64, ap);
    va_end(ap);
    return client_send_request_v(c, method, target, headers);
}

int client_shutdown_write(struct client *c)
{
    return shutdown(c->fd, SHUT_WR);
}

/* One recv into the buffer after waiting up to timeout_ms.  Returns bytes
 * read, 0 at EOF (c->eof set; a reset counts as EOF), or an error code. */
static int client_fill(struct client *c, int timeout_ms)
{
    if (c->off > 0 && c->off == c->len)
        c->off = c->len = 0;
    if (c->cap - c->len < READ_CHUNK / 4) {
        if (c->off > 0) {
            memmove(c->buf, c->buf + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
        }
        if (c->cap - c->len < READ_CHUNK / 4) {
            char *p = realloc(c->buf, c->cap + READ_CHUNK);
            if (p == NULL)
                return CLIENT_ERROR;
            c->buf = p;
            c->cap += READ_CHUNK;
        }
    }
    for (;;) {
        int ready = wait_fd(c->fd, POLLIN, timeout_ms);
        if (ready == 0)
            return CLIENT_TIMEOUT;
        if (ready < 0)
            return CLIENT_ERROR;
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            return (int)n;
        }
        if (n == 0 || errno == ECONNRESET) {
            c->eof = true;
            return 0;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return CLIENT_ERROR;
    }
}

ssize_t client_read_raw(struct client *c, void *buf, size_t size, int timeout_ms)
{
    if (c->off == c->len) {
        if (c->eof)
            return 0;
        int rc = client_fill(c, timeout_ms);
        if (rc <= 0)
            return rc;
    }
    size_t n = c->len - c->off < size ? c->len - c->off : size;
    memcpy(buf, c->buf + c->off, n);
    c->off += n;
    return (ssize_t)n;
}

bool client_expect_closed(struct client *c, int timeout_ms)
{
    while (!c->eof) {
        int rc = client_fill(c, timeout_ms);
        if (rc == CLIENT_TIMEOUT)
            return false;
        if (rc < 0)
            return true;
    }
    return true;
}

/* ---- responses ------------------------------------------------------------- */

struct reader {
    struct http_response *resp;
    unsigned flags;
    client_body_cb cb;
    void *ctx;
    bool store, headers_done, msg_done, stopped, oom;
    struct sbuf reason, field, value, body;
};

static void header_list_free(struct http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

void http_response_clear(struct http_response *resp)
{
    free(resp->reason);
    header_list_free(resp->headers, resp->nheaders);
    header_list_free(resp->trailers, resp->ntrailers);
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

static struct reader *reader_of(llhttp_t *p)
{
    return p->data;
}

static int on_status(llhttp_t *p, const char *at, size_t n)
{
    return sbuf_append(&reader_of(p)->reason, at, n) == 0 ? 0 : -1;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    return sbuf_append(&reader_of(p)->field, at, n) == 0 ? 0 : -1;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    return sbuf_append(&reader_of(p)->value, at, n) == 0 ? 0 : -1;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct reader *r = reader_of(p);
    struct http_response *resp = r->resp;
    struct http_header **list = r->headers_done ? &resp->trailers : &resp->headers;
    size_t *n = r->headers_done ? &resp->ntrailers : &resp->nheaders;
    struct http_header *grown = realloc(*list, (*n + 1) * sizeof(**list));
    if (grown == NULL)
        return -1;
    *list = grown;
    char *value = sbuf_take(&r->value);
    size_t vlen = strlen(value);
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
        value[--vlen] = '\0';
    size_t lead = strspn(value, " \t");
    memmove(value, value + lead, vlen - lead + 1);
    grown[*n].name = sbuf_take(&r->field);
    grown[*n].value = value;
    (*n)++;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct reader *r = reader_of(p);
    r->headers_done = true;
    r->resp->status = p->status_code;
    r->resp->http_major = p->http_major;
    r->resp->http_minor = p->http_minor;
    r->resp->chunked = (p->flags & F_CHUNKED) != 0;
    return (r->flags & CLIENT_HEAD) ? 1 : 0; /* 1: no body follows */
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct reader *r = reader_of(p);
    r->resp->body_len += n;
    if (r->cb && r->cb(r->ctx, at, n) != 0) {
        r->stopped = true;
        return HPE_USER;
    }
    if (r->store && sbuf_append(&r->body, at, n) != 0) {
        r->oom = true;
        return -1;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    reader_of(p)->msg_done = true;
    return HPE_PAUSED; /* leave the next response's bytes in the buffer */
}

static const llhttp_settings_t *response_settings(void)
{
    static llhttp_settings_t s;
    static bool ready;
    if (!ready) {
        llhttp_settings_init(&s);
        s.on_status = on_status;
        s.on_header_field = on_header_field;
        s.on_header_value = on_header_value;
        s.on_header_value_complete = on_header_value_complete;
        s.on_headers_complete = on_headers_complete;
        s.on_body = on_body;
        s.on_message_complete = on_message_complete;
        ready = true;
    }
    return &s;
}

static void reader_release(struct reader *r)
{
    free(r->reason.p);
    free(r->field.p);
    free(r->value.p);
    free(r->body.p);
    memset(&r->reason, 0, sizeof(r->reason));
    memset(&r->field, 0, sizeof(r->field));
    memset(&r->value, 0, sizeof(r->value));
    memset(&r->body, 0, sizeof(r->body));
}

/* Move what the reader collected into resp (also for incomplete messages). */
static void reader_finish(struct reader *r)
{
    r->resp->reason = sbuf_take(&r->reason);
    if (r->store && r->body.p)
        r->resp->body = sbuf_take(&r->body);
    reader_release(r);
}

/* Without waiting: has the peer already closed after what we have read? */
static void peek_eof(struct client *c)
{
    if (c->eof || c->off < c->len)
        return;
    c->off = c->len = 0;
    if (c->cap == 0)
        return;
    ssize_t n = recv(c->fd, c->buf, c->cap, MSG_DONTWAIT);
    if (n > 0)
        c->len = (size_t)n;
    else if (n == 0 || (n < 0 && errno == ECONNRESET))
        c->eof = true;
}

/* A 1xx other than 101 is an interim response (RFC 9110 15.2). */
static bool is_interim(int status)
{
    return status >= 100 && status < 200 && status != 101;
}

/* Run the parser over the buffered bytes.  Returns CLIENT_OK when a message
 * ended, 1 when more bytes are needed, or an error code. */
static int parse_buffered(struct client *c, llhttp_t *parser, struct reader *r)
{
    const char *data = c->buf + c->off;
    size_t len = c->len - c->off;
    llhttp_errno_t err = llhttp_execute(parser, data, len);
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        c->off += (size_t)(llhttp_get_error_pos(parser) - data);
        return CLIENT_OK;
    }
    if (err == HPE_OK) {
        c->off = c->len;
        return 1;
    }
    c->off = c->len; /* the connection is unusable after this */
    if (r->stopped)
        return CLIENT_STOPPED;
    fprintf(stderr, "client: bad response: %s (%s)\n", llhttp_errno_name(err),
            r->oom ? "out of memory" : llhttp_get_error_reason(parser));
    return CLIENT_BAD;
}

static int read_response(struct client *c, unsigned flags, struct http_response *resp,
                         int timeout_ms, client_body_cb cb, void *ctx, bool store)
{
    memset(resp, 0, sizeof(*resp));
    struct reader r = {.resp = resp, .flags = flags, .cb = cb, .ctx = ctx, .store = store};
    llhttp_t parser;
    int rc;
    for (;;) {
        llhttp_init(&parser, HTTP_RESPONSE, response_settings());
        parser.data = &r;
        rc = 1;
        while (rc == 1) {
            if (c->off < c->len) {
                rc = parse_buffered(c, &parser, &r);
            } else if (c->eof) {
                /* a close-delimited body ends here; anything else is cut short */
                llhttp_errno_t fin = llhttp_finish(&parser);
                rc = (fin == HPE_OK || fin == HPE_PAUSED) && r.msg_done ? CLIENT_OK : CLIENT_EOF;
            } else {
                rc = client_fill(c, timeout_ms);
                rc = rc >= 0 ? 1 : rc;
            }
        }
        if (rc != CLIENT_OK || !is_interim(resp->status) || (flags & CLIENT_INTERIM))
            break;
        /* skip the interim response: remember its status, start over */
        int interim[8];
        size_t ninterim = resp->ninterim;
        memcpy(interim, resp->interim, sizeof(interim));
        reader_release(&r);
        http_response_clear(resp);
        if (ninterim < 8)
            interim[ninterim++] = parser.status_code;
        memcpy(resp->interim, interim, sizeof(interim));
        resp->ninterim = ninterim;
        r.headers_done = r.msg_done = false;
    }
    reader_finish(&r);
    if (rc == CLIENT_OK) {
        resp->complete = true;
        peek_eof(c);
        resp->closed = c->eof || !llhttp_should_keep_alive(&parser);
    }
    return rc;
}

int client_read_response(struct client *c, unsigned flags, struct http_response *resp,
                         int timeout_ms)
{
    return read_response(c, flags, resp, timeout_ms, NULL, NULL, true);
}

int client_read_response_cb(struct client *c, unsigned flags, struct http_response *resp,
                            int timeout_ms, client_body_cb cb, void *ctx)
{
    return read_response(c, flags, resp, timeout_ms, cb, ctx, false);
}

static const char *find_field(const struct http_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

const char *http_response_header(const struct http_response *resp, const char *name)
{
    return find_field(resp->headers, resp->nheaders, name);
}

const char *http_response_trailer(const struct http_response *resp, const char *name)
{
    return find_field(resp->trailers, resp->ntrailers, name);
}

size_t http_response_header_count(const struct http_response *resp, const char *name)
{
    size_t count = 0;
    for (size_t i = 0; i < resp->nheaders; i++)
        count += strcasecmp(resp->headers[i].name, name) == 0;
    return count;
}

bool http_response_body_is(const struct http_response *resp, const char *s)
{
    size_t n = strlen(s);
    return resp->body_len == n && (n == 0 || (resp->body && memcmp(resp->body, s, n) == 0));
}

int http_exchange(int port, const char *method, const char *target, const char *const headers[],
                  const void *body, size_t body_len, struct http_response *resp, int timeout_ms)
{
    const char *lines[66];
    char length[40];
    size_t n = 0;
    for (; headers && headers[n] && n < 64; n++)
        lines[n] = headers[n];
    if (body) {
        snprintf(length, sizeof length, "Content-Length: %zu", body_len);
        lines[n++] = length;
    }
    lines[n] = NULL;
    http_response_clear(resp);
    struct client *c = client_connect(port, timeout_ms);
    if (c == NULL)
        return CLIENT_ERROR;
    int rc = CLIENT_ERROR;
    if (client_send_request_v(c, method, target, lines) == 0 &&
        (!body || client_send(c, body, body_len) == 0))
        rc = client_read_response(c, strcmp(method, "HEAD") == 0 ? CLIENT_HEAD : 0, resp,
                                  timeout_ms);
    client_free(&c);
    return rc;
}

static int request_once(int port, const char *method, const char *target,
                        struct http_response *resp, const char *const headers[])
{
    memset(resp, 0, sizeof(*resp));
    return http_exchange(port, method, target, headers, NULL, 0, resp, CLIENT_TIMEOUT_MS);
}

int http_get(int port, const char *target, struct http_response *resp, ...)
{
    const char *headers[64];
    va_list ap;
    va_start(ap, resp);
    collect_args(headers, 64, ap);
    va_end(ap);
    return request_once(port, "GET", target, resp, headers);
}

int http_request(int port, const char *method, const char *target, struct http_response *resp, ...)
{
    const char *headers[64];
    va_list ap;
    va_start(ap, resp);
    collect_args(headers, 64, ap);
    va_end(ap);
    return request_once(port, method, target, resp, headers);
}
