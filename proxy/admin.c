/*
 * proxy/admin.c: the admin thread and listener (see admin.h).
 *
 * A connection carries one request: it is read whole (head up to 16 KiB,
 * body up to ADMIN_BODY_MAX), parsed by llhttp in its strict mode,
 * answered, and closed once the answer is written.  Admin traffic is a
 * deploy script or a metrics scraper, not a crowd: simplicity wins.
 */
#include "proxy/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cache/key.h"
#include "proxy/buf.h"
#include "proxy/http.h"
#include "proxy/json.h"
#include "proxy/log.h"
#include "proxy/purge.h"
#include "proxy/router.h"
#include "proxy/stats.h"

#ifndef TESSERA_VERSION
#define TESSERA_VERSION "0.1.0"
#endif

#define ADMIN_HEAD_MAX (16 * 1024)
#define ADMIN_TIMEOUT_S 10.0
#define ADMIN_MAX_CONNS 64

struct admin_conn {
    struct admin_conn *next, *prev;
    struct admin *a;
    int fd;
    ev_io rio, wio;
    ev_timer timer;
    char peer[INET6_ADDRSTRLEN];
    llhttp_t parser;
    struct buf in;
    struct buf out;
    /* The request, gathered by the llhttp callbacks. */
    struct buf url, field, value, auth, host, body;
    bool in_value;
    size_t head_bytes;
    bool complete;
    bool answered;
};

struct admin {
    struct config *cfg; /* admin thread's (after start), main's before */
    _Atomic(struct config *) pending_cfg;
    struct cache_store *memory;
    struct mcstore *mc;
    struct worker *workers;
    unsigned nworkers;
    struct purger *purger;

    pthread_t thread;
    bool running;
    struct ev_loop *loop;
    ev_async wake;
    atomic_bool stop;
    atomic_bool draining;
    double started;

    int fd; /* the admin listener, -1 when none */
    unsigned port;
    ev_io accept_io;
    struct admin_conn *conns;
    unsigned nconns;

    double denied_log_at; /* rate limit of the "refused" log line */
    unsigned denied_quiet;
};

/* ---- the listener ------------------------------------------------------------------- */

static int admin_listen(struct config_listen *l, unsigned *port, char *err, size_t errlen)
{
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        goto fail;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        (l->addr.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
        bind(fd, (struct sockaddr *)&l->addr, l->addrlen) < 0 || listen(fd, 64) < 0)
        goto fail;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        goto fail;
    *port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
fail:
    snprintf(err, errlen, "admin listener %s: %s", l->text, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* ---- answering ---------------------------------------------------------------------- */

static void conn_close(struct admin_conn *c);
static void conn_flush(struct admin_conn *c);

static void respond(struct admin_conn *c, int status, const char *ctype, const char *extra,
                    const char *body, size_t len)
{
    buf_appendf(&c->out,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                status, http_reason_phrase(status), ctype, len, extra ? extra : "");
    if (llhttp_get_method(&c->parser) != HTTP_HEAD)
        buf_append(&c->out, body, len);
    c->answered = true;
    conn_flush(c);
}

static void respond_json(struct admin_conn *c, int status, struct buf *doc)
{
    buf_append(doc, "\n", 1);
    respond(c, status, "application/json", NULL, doc->data ? doc->data : "", doc->len);
}

static void respond_error(struct admin_conn *c, int status, const char *extra, const char *why)
{
    struct buf doc = {0};
    struct json_writer w;
    json_writer_init(&w, &doc, false);
    json_writer_begin_object(&w);
    json_writer_key(&w, "error");
    json_writer_str(&w, why);
    json_writer_end_object(&w);
    json_writer_finish(&w);
    buf_append(&doc, "\n", 1);
    respond(c, status, "application/json", extra, doc.data, doc.len);
    buf_release(&doc);
}

/* Constant time in the token's length: no early exit on the first
 * difference. */
static bool token_equal(const char *given, size_t glen, const char *want, size_t wlen)
{
    unsigned char diff = glen != wlen;
    for (size_t i = 0; i < wlen; i++)
        diff |= (unsigned char)(want[i] ^ (i < glen ? given[i] : 0));
    return diff == 0;
}

/* One line per second at most for refused requests; the rest are counted. */
static void log_denied(struct admin *a, const char *peer, const char *why)
{
    double now = ev_now(a->loop);
    if (now - a->denied_log_at < 1.0) {
        a->denied_quiet++;
        return;
    }
    if (a->denied_quiet)
        log_warn("admin: %s from %s (and %u more refused in the last second)", why, peer,
                 a->denied_quiet);
    else
        log_warn("admin: %s from %s", why, peer);
    a->denied_log_at = now;
    a->denied_quiet = 0;
}

static bool authorized(struct admin_conn *c)
{
    const struct config_admin *ad = &c->a->cfg->admin;
    if (ad->token_off)
        return true;
    const char *v = c->auth.data;
    size_t n = c->auth.len;
    if (!v || n < 7 || strncasecmp(v, "Bearer ", 7) != 0) {
        log_denied(c->a, c->peer, "request without a bearer token");
        respond_error(c, 401, "WWW-Authenticate: Bearer\r\n", "a bearer token is required");
        return false;
    }
    v += 7;
    n -= 7;
    while (n > 0 && *v == ' ') {
        v++;
        n--;
    }
    if (!ad->token || !token_equal(v, n, ad->token, strlen(ad->token))) {
        log_denied(c->a, c->peer, "request with a wrong token");
        respond_error(c, 401, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n",
                      "invalid token");
        return false;
    }
    return true;
}

/* ---- stats -------------------------------------------------------------------------- */

static void route_name(const struct config_route *r, char *out, size_t cap)
{
    switch (r->match) {
    case ROUTE_EXACT:
        snprintf(out, cap, "= %s", r->pattern);
        break;
    case ROUTE_REGEX:
        snprintf(out, cap, "~ %s", r->pattern);
        break;
    case ROUTE_DEFAULT:
        snprintf(out, cap, "default");
        break;
    default:
        snprintf(out, cap, "%s", r->pattern);
    }
    if (r->host) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, " (host %s)", r->host);
    }
}

/* Fill snap (arrays allocated here; free with snapshot_free). */
static bool snapshot_take(struct admin *a, struct stats_snapshot *snap, char (**names)[160])
{
    const struct config *cfg = a->cfg;
    memset(snap, 0, sizeof *snap);
    snap->uptime_s = ev_time() - a->started;
    snap->version = TESSERA_VERSION;
    snap->draining = atomic_load(&a->draining);
    snap->nroutes = cfg->nroutes;
    snap->nbackends = cfg->nbackends;
    snap->routes = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof *snap->routes);
    snap->backends = calloc(cfg->nbackends ? cfg->nbackends : 1, sizeof *snap->backends);
    *names = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof **names);
    snap->memcached = calloc(MCSTORE_MAX_SERVERS, sizeof *snap->memcached);
    if (!snap->routes || !snap->backends || !*names || !snap->memcached)
        return false;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        route_name(&cfg->routes[i], (*names)[i], sizeof(*names)[i]);
        snap->routes[i].name = (*names)[i];
    }
    for (size_t i = 0; i < cfg->nbackends; i++)
        snap->backends[i].name = cfg->backends[i].name;
    for (unsigned i = 0; i < a->nworkers; i++) {
        stats_sum(snap, &a->workers[i].stats);
        struct stats_worker view = {0};
        if (stats_config_view(cfg, i, &view))
            stats_sum(snap, &view);
    }
    cache_store_stats(a->memory, &snap->memory);
    if (a->mc) {
        size_t n;
        mcstore_stats(a->mc, snap->memcached, MCSTORE_MAX_SERVERS, &n);
        snap->nmemcached = n < MCSTORE_MAX_SERVERS ? n : MCSTORE_MAX_SERVERS;
    }
    encode_stats_read(&snap->compression);
    purger_totals(a->purger, &snap->purge);
    return true;
}

static void snapshot_free(struct stats_snapshot *snap, char (*names)[160])
{
    free(snap->routes);
    free(snap->backends);
    free(snap->memcached);
    free(names);
}

static void answer_stats(struct admin_conn *c, bool prometheus)
{
    struct stats_snapshot snap;
    char(*names)[160] = NULL;
    struct buf doc = {0};
    if (!snapshot_take(c->a, &snap, &names)) {
        snapshot_free(&snap, names);
        respond_error(c, 500, NULL, "out of memory");
        return;
    }
    if (prometheus) {
        stats_write_prometheus(&snap, &doc);
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, doc.data ? doc.data : "",
                doc.len);
    } else {
        stats_write_json(&snap, &doc);
        respond_json(c, 200, &doc);
    }
    snapshot_free(&snap, names);
    buf_release(&doc);
}

/* ---- purge -------------------------------------------------------------------------- */

/* The key's URL part for url ("http://host/path?q"), under the policy of
 * the route it maps to, into out; 0 with a reason when it is not one. */
static size_t url_key(const struct config *cfg, const char *url, size_t len, char *out, size_t cap,
                      const char **why)
{
    if (len < 8 || strncasecmp(url, "http://", 7) != 0) {
        *why = "\"url\" must be an absolute http:// URL";
        return 0;
    }
    const char *host = url + 7, *end = url + len;
    const char *path = memchr(host, '/', (size_t)(end - host));
    if (!path || path == host) {
        *why = "\"url\" must have a host and a path";
        return 0;
    }
    const char *q = memchr(path, '?', (size_t)(end - path));
    size_t route_len = q ? (size_t)(q - path) : (size_t)(end - path);
    const struct config_route *route =
        router_match(cfg, host, (size_t)(path - host), path, route_len);
    if (!route) {
        *why = "no route serves this URL";
        return 0;
    }
    struct cache_key_input in = {
        .scheme = "http",
        .scheme_len = 4,
        .host = host,
        .host_len = (size_t)(path - host),
        .target = path,
        .target_len = (size_t)(end - path),
    };
    size_t n = cache_key_build(&in, &route->cache, out, cap);
    if (n == 0 || n >= cap) {
        *why = "\"url\" is too long";
        return 0;
    }
    const char *nl = memchr(out, '\n', n); /* the URL part only */
    return nl ? (size_t)(nl - out) : n;
}

/* The host as keys write it (lower-case, default port dropped). */
static size_t key_host(const char *host, size_t len, char *out, size_t cap)
{
    struct cache_key_input in = {.scheme = "http",
                                 .scheme_len = 4,
                                 .host = host,
                                 .host_len = len,
                                 .target = "/",
                                 .target_len = 1};
    struct config_cache_policy policy = {.key_query = KEY_QUERY_ALL};
    char key[BAN_HOST_MAX + 32];
    size_t n = cache_key_build(&in, &policy, key, sizeof key);
    if (n == 0 || n >= sizeof key || n - 8 > cap)
        return 0;
    memcpy(out, key + 7, n - 8); /* between "http://" and the final "/" */
    return n - 8;
}

static void purge_answer(struct admin_conn *c, const struct ban_spec *spec,
                         const struct purge_result *res, size_t ntags)
{
    struct buf doc = {0};
    struct json_writer w;
    json_writer_init(&w, &doc, false);
    json_writer_begin_object(&w);
    json_writer_key(&w, "purged");
    json_writer_uint(&w, res->removed);
    json_writer_key(&w, "marked_stale");
    json_writer_uint(&w, res->marked);
    json_writer_key(&w, "kind");
    json_writer_str(&w, ban_kind_name(spec->kind));
    json_writer_key(&w, "soft");
    json_writer_bool(&w, spec->soft);
    json_writer_key(&w, "ban");
    json_writer_uint(&w, res->ban_id);
    if (ntags > 1) {
        json_writer_key(&w, "tags");
        json_writer_uint(&w, ntags);
    }
    json_writer_key(&w, "shared");
    json_writer_bool(&w, res->shared);
    json_writer_end_object(&w);
    json_writer_finish(&w);
    respond_json(c, 200, &doc);
    buf_release(&doc);
}

/* Apply n specs as one purge (one sweep), log it; false when answered
 * with an error. */
static bool run_purge(struct admin_conn *c, struct ban_spec *specs, size_t n,
                      struct purge_result *total)
{
    char err[256];
    if (!purger_purge_many(c->a->purger, specs, n, total, err, sizeof err)) {
        respond_error(c, 400, NULL, err);
        return false;
    }
    const struct ban_spec *spec = &specs[0];
    log_info("admin: %s purge %s%s%.*s%s from %s: %" PRIu64 " removed, %" PRIu64 " marked stale",
             spec->soft ? "soft" : "hard", ban_kind_name(spec->kind), spec->pattern_len ? " " : "",
             (int)spec->pattern_len, spec->pattern ? spec->pattern : "", n > 1 ? " (and more)" : "",
             c->peer, total->removed, total->marked);
    return true;
}

static const char *string_field(const struct json_value *doc, const char *name, size_t *len,
                                char *err, size_t errlen, bool *bad)
{
    const struct json_value *v = json_object_get(doc, name);
    if (!v)
        return NULL;
    if (v->type != JSON_STRING || v->string.len == 0 || memchr(v->string.ptr, 0, v->string.len)) {
        snprintf(err, errlen, "\"%s\" must be a non-empty string", name);
        *bad = true;
        return NULL;
    }
    *len = v->string.len;
    return v->string.ptr;
}

static void answer_purge_json(struct admin_conn *c)
{
    static const char *const allowed[] = {"url", "prefix", "regex", "tag",
                                          "all", "host",   "soft",  NULL};
    char err[256];
    struct json_value *doc =
        json_parse(c->body.data ? c->body.data : "", c->body.len, err, sizeof err);
    struct ban_spec spec = {0};
    struct purge_result total = {0};
    char key[8192], host[BAN_HOST_MAX + 1];
    bool bad = false;
    size_t n = 0, hlen = 0, kinds = 0;
    if (!doc) {
        char msg[300];
        snprintf(msg, sizeof msg, "body is not JSON: %s", err);
        respond_error(c, 400, NULL, msg);
        return;
    }
    if (doc->type != JSON_OBJECT) {
        respond_error(c, 400, NULL, "body must be a JSON object");
        goto done;
    }
    if (!json_object_check_keys(doc, allowed, err, sizeof err)) {
        respond_error(c, 400, NULL, err);
        goto done;
    }
    const struct json_value *soft = json_object_get(doc, "soft");
    if (soft && soft->type != JSON_BOOL) {
        respond_error(c, 400, NULL, "\"soft\" must be true or false");
        goto done;
    }
    spec.soft = soft && soft->boolean;
    const char *h = string_field(doc, "host", &hlen, err, sizeof err, &bad);
    const char *url = string_field(doc, "url", &n, err, sizeof err, &bad);
    size_t plen = 0, rlen = 0;
    const char *prefix = string_field(doc, "prefix", &plen, err, sizeof err, &bad);
    const char *regex = string_field(doc, "regex", &rlen, err, sizeof err, &bad);
    const struct json_value *tag = json_object_get(doc, "tag");
    const struct json_value *all = json_object_get(doc, "all");
    if (bad) {
        respond_error(c, 400, NULL, err);
        goto done;
    }
    kinds = (url != NULL) + (prefix != NULL) + (regex != NULL) + (tag != NULL) + (all != NULL);
    if (kinds != 1) {
        respond_error(c, 400, NULL,
                      "give exactly one of \"url\", \"prefix\", \"regex\", \"tag\", \"all\"");
        goto done;
    }
    if (h && (url || tag || all)) {
        respond_error(c, 400, NULL, "\"host\" goes with \"prefix\" or \"regex\" only");
        goto done;
    }
    if (h) {
        hlen = key_host(h, hlen, host, sizeof host);
        if (hlen == 0) {
            respond_error(c, 400, NULL, "\"host\" is not a valid host");
            goto done;
        }
        spec.host = host;
        spec.host_len = hlen;
    }
    if (url) {
        const char *why = NULL;
        size_t klen = url_key(c->a->cfg, url, n, key, sizeof key, &why);
        if (klen == 0) {
            respond_error(c, 400, NULL, why);
            goto done;
        }
        spec.kind = BAN_KEY;
        spec.pattern = key;
        spec.pattern_len = klen;
    } else if (prefix) {
        if (prefix[0] != '/') {
            respond_error(c, 400, NULL, "\"prefix\" must start with /");
            goto done;
        }
        spec.kind = BAN_PREFIX;
        spec.pattern = prefix;
        spec.pattern_len = plen;
    } else if (regex) {
        spec.kind = BAN_REGEX;
        spec.pattern = regex;
        spec.pattern_len = rlen;
    } else if (all) {
        if (all->type != JSON_BOOL || !all->boolean) {
            respond_error(c, 400, NULL, "\"all\" must be true");
            goto done;
        }
        spec.kind = BAN_ALL;
    }
    if (tag) {
        /* one tag, or a list of them: one ban each */
        const struct json_value *items = tag->type == JSON_ARRAY ? tag->array.items : tag;
        size_t count = tag->type == JSON_ARRAY ? tag->array.n : 1;
        if (count == 0 || count > 100) {
            respond_error(c, 400, NULL, "\"tag\" must be a string or a list of 1 to 100");
            goto done;
        }
        for (size_t i = 0; i < count; i++)
            if (items[i].type != JSON_STRING || items[i].string.len == 0 ||
                memchr(items[i].string.ptr, ' ', items[i].string.len)) {
                respond_error(c, 400, NULL,
                              "\"tag\" values must be non-empty strings without spaces");
                goto done;
            }
        struct ban_spec specs[100];
        for (size_t i = 0; i < count; i++)
            specs[i] = (struct ban_spec){.kind = BAN_TAG,
                                         .soft = spec.soft,
                                         .pattern = items[i].string.ptr,
                                         .pattern_len = items[i].string.len};
        if (run_purge(c, specs, count, &total))
            purge_answer(c, &specs[0], &total, count);
        goto done;
    }
    if (run_purge(c, &spec, 1, &total))
        purge_answer(c, &spec, &total, 1);
done:
    json_free(&doc);
}

/* PURGE /path with a Host: that URL. */
static void answer_purge_method(struct admin_conn *c)
{
    if (!c->host.data || c->host.len == 0) {
        respond_error(c, 400, NULL, "PURGE needs a Host header naming the site");
        return;
    }
    struct buf url = {0};
    buf_append_str(&url, "http://");
    buf_append(&url, c->host.data, c->host.len);
    buf_append(&url, c->url.data, c->url.len);
    const char *why = NULL;
    char key[8192];
    size_t klen = url_key(c->a->cfg, url.data, url.len, key, sizeof key, &why);
    buf_release(&url);
    if (klen == 0) {
        respond_error(c, 400, NULL, why);
        return;
    }
    struct ban_spec spec = {.kind = BAN_KEY, .pattern = key, .pattern_len = klen};
    struct purge_result total = {0};
    if (run_purge(c, &spec, 1, &total))
        purge_answer(c, &spec, &total, 1);
}

static bool path_is(const struct admin_conn *c, const char *path)
{
    size_t n = strlen(path);
    const char *u = c->url.data;
    size_t len = c->url.len;
    const char *q = u ? memchr(u, '?', len) : NULL;
    if (q)
        len = (size_t)(q - u);
    return len == n && memcmp(u, path, n) == 0;
}

static void dispatch(struct admin_conn *c)
{
    struct admin *a = c->a;
    llhttp_method_t m = (llhttp_method_t)llhttp_get_method(&c->parser);
    bool get = m == HTTP_GET || m == HTTP_HEAD;
    if (!authorized(c))
        return;
    if (m == HTTP_PURGE) {
        answer_purge_method(c);
        return;
    }
    if (path_is(c, "/health")) {
        if (!get) {
            respond_error(c, 405, "Allow: GET, HEAD\r\n", "use GET");
            return;
        }
        bool draining = atomic_load(&a->draining);
        struct buf doc = {0};
        buf_append_str(&doc, draining ? "{\"status\":\"draining\"}" : "{\"status\":\"ok\"}");
        respond_json(c, draining ? 503 : 200, &doc);
        buf_release(&doc);
    } else if (path_is(c, "/stats") || path_is(c, "/metrics")) {
        if (!get) {
            respond_error(c, 405, "Allow: GET, HEAD\r\n", "use GET");
            return;
        }
        answer_stats(c, path_is(c, "/metrics"));
    } else if (path_is(c, "/purge")) {
        if (m != HTTP_POST) {
            respond_error(c, 405, "Allow: POST, PURGE\r\n", "use POST with a JSON body");
            return;
        }
        answer_purge_json(c);
    } else {
        respond_error(c, 404, NULL,
                      "no such admin resource (try /stats, /metrics, /health, /purge)");
    }
}

/* ---- connections -------------------------------------------------------------------- */

static struct admin_conn *conn_of(llhttp_t *p)
{
    return p->data;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    buf_append(&conn_of(p)->url, at, n);
    return 0;
}

static void end_field(struct admin_conn *c)
{
    if (!c->in_value)
        return;
    struct buf *dst = NULL;
    if (c->field.len == 13 && strncasecmp(c->field.data, "authorization", 13) == 0)
        dst = &c->auth;
    else if (c->field.len == 4 && strncasecmp(c->field.data, "host", 4) == 0)
        dst = &c->host;
    if (dst) {
        buf_reset(dst);
        buf_append(dst, c->value.data, c->value.len);
    }
    buf_reset(&c->field);
    buf_reset(&c->value);
    c->in_value = false;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct admin_conn *c = conn_of(p);
    end_field(c);
    buf_append(&c->field, at, n);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct admin_conn *c = conn_of(p);
    c->in_value = true;
    buf_append(&c->value, at, n);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    end_field(conn_of(p));
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct admin_conn *c = conn_of(p);
    if (c->body.len + n > ADMIN_BODY_MAX)
        return HPE_USER;
    buf_append(&c->body, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    conn_of(p)->complete = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t admin_parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void conn_flush(struct admin_conn *c)
{
    while (buf_pending(&c->out) > 0) {
        ssize_t n = write(c->fd, c->out.data + c->out.off, buf_pending(&c->out));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->a->loop, &c->wio);
            return;
        }
        if (n <= 0) {
            conn_close(c);
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    if (c->answered)
        conn_close(c);
}

static void conn_read(struct admin_conn *c)
{
    char chunk[8192];
    ssize_t n = read(c->fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, chunk, (size_t)n);
    if (!c->complete && e == HPE_OK) {
        c->head_bytes += (size_t)n;
        if (c->head_bytes > ADMIN_HEAD_MAX + ADMIN_BODY_MAX)
            goto too_large;
        return;
    }
    ev_io_stop(c->a->loop, &c->rio);
    if (e == HPE_USER)
        goto too_large;
    if (!c->complete) {
        respond_error(c, 400, NULL, llhttp_get_error_reason(&c->parser));
        return;
    }
    dispatch(c);
    return;
too_large:
    ev_io_stop(c->a->loop, &c->rio);
    respond_error(c, 413, NULL, "request too large");
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_read(w->data);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    ev_io_stop(loop, w);
    conn_flush(w->data);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct admin_conn *c = t->data;
    if (!c->answered) {
        ev_io_stop(loop, &c->rio);
        /* The 408 gets as long again to leave; then the connection goes. */
        ev_timer_set(&c->timer, ADMIN_TIMEOUT_S, 0);
        ev_timer_start(loop, &c->timer);
        respond_error(c, 408, NULL, "timed out reading the request");
        return;
    }
    conn_close(c);
}

static void conn_close(struct admin_conn *c)
{
    struct admin *a = c->a;
    ev_io_stop(a->loop, &c->rio);
    ev_io_stop(a->loop, &c->wio);
    ev_timer_stop(a->loop, &c->timer);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->nconns--;
    buf_release(&c->in);
    buf_release(&c->out);
    buf_release(&c->url);
    buf_release(&c->field);
    buf_release(&c->value);
    buf_release(&c->auth);
    buf_release(&c->host);
    buf_release(&c->body);
    free(c);
}

static void peer_text(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)cap);
    else
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)cap);
}

/* Answer a connection we do not serve, without reading it, and close it. */
static void refuse(int fd, int status, const char *why)
{
    char body[128], head[256];
    int blen = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", why);
    int hlen = snprintf(head, sizeof head,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n",
                        status, http_reason_phrase(status), blen);
    struct iovec iov[2] = {{head, (size_t)hlen}, {body, (size_t)blen}};
    ssize_t ignored = writev(fd, iov, 2); /* best effort: the socket is new and empty */
    (void)ignored;
    close(fd);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct admin *a = w->data;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(a->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        char peer[INET6_ADDRSTRLEN] = "?";
        peer_text(&ss, peer, sizeof peer);
        const struct config_admin *ad = &a->cfg->admin;
        bool busy = a->nconns >= ADMIN_MAX_CONNS;
        if (busy || !config_cidr_match(ad->allow, ad->nallow, (struct sockaddr *)&ss)) {
            refuse(fd, busy ? 503 : 403,
                   busy ? "too many admin connections" : "address not allowed");
            log_denied(a, peer,
                       busy ? "connection over the admin limit"
                            : "connection from an address not allowed");
            continue;
        }
        struct admin_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->a = a;
        c->fd = fd;
        snprintf(c->peer, sizeof c->peer, "%s", peer);
        llhttp_init(&c->parser, HTTP_REQUEST, &admin_parser_settings);
        c->parser.data = c;
        ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
        ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
        c->rio.data = c->wio.data = c;
        ev_timer_init(&c->timer, conn_timer_cb, ADMIN_TIMEOUT_S, 0);
        c->timer.data = c;
        c->next = a->conns;
        if (a->conns)
            a->conns->prev = c;
        a->conns = c;
        a->nconns++;
        ev_io_start(loop, &c->rio);
        ev_timer_start(loop, &c->timer);
    }
}

/* ---- the thread --------------------------------------------------------------------- */

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    struct admin *a = w->data;
    struct config *cfg = atomic_exchange(&a->pending_cfg, NULL);
    if (cfg) {
        config_release(&a->cfg);
        a->cfg = cfg;
    }
    if (atomic_load(&a->stop)) {
        purger_stop(a->purger);
        if (a->fd >= 0)
            ev_io_stop(loop, &a->accept_io);
        while (a->conns)
            conn_close(a->conns);
        ev_async_stop(loop, &a->wake);
        ev_break(loop, EVBREAK_ALL);
    }
}

static void *admin_main(void *arg)
{
    struct admin *a = arg;
    ev_run(a->loop, 0);
    return NULL;
}

struct admin *admin_new(struct config *cfg, struct cache_store *memory, struct mcstore *mc,
                        char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->fd = -1;
    a->memory = memory;
    a->mc = mc;
    a->cfg = config_ref(cfg);
    a->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    uint64_t sync_ms = cfg->memcached.enabled ? cfg->memcached.purge_sync_ms : 1000;
    a->purger =
        a->loop ? purger_new(a->loop, memory, mc, sync_ms, cfg->memcached.ttl_slack_ms) : NULL;
    if (!a->loop || !a->purger) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (cfg->admin.enabled) {
        a->fd = admin_listen(&cfg->admin.listen, &a->port, err, errlen);
        if (a->fd < 0)
            goto fail;
    }
    return a;
fail:
    admin_free(&a);
    return NULL;
}

struct ban_list *admin_bans(struct admin *a)
{
    return purger_bans(a->purger);
}

bool admin_start(struct admin *a, struct worker *workers, unsigned nworkers, char *err,
                 size_t errlen)
{
    a->workers = workers;
    a->nworkers = nworkers;
    a->started = ev_time();
    ev_async_init(&a->wake, wake_cb);
    a->wake.data = a;
    ev_async_start(a->loop, &a->wake);
    if (a->fd >= 0) {
        ev_io_init(&a->accept_io, accept_cb, a->fd, EV_READ);
        a->accept_io.data = a;
        ev_io_start(a->loop, &a->accept_io);
        log_info("admin listener on %s (port %u)", a->cfg->admin.listen.text, a->port);
    }
    purger_start(a->purger);
    int rc = pthread_create(&a->thread, NULL, admin_main, a);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the admin thread: %s", strerror(rc));
        return false;
    }
    a->running = true;
    return true;
}

void admin_set_config(struct admin *a, struct config *cfg)
{
    struct config *old = atomic_exchange(&a->pending_cfg, config_ref(cfg));
    if (old)
        config_release(&old);
    if (a->running)
        ev_async_send(a->loop, &a->wake);
}

void admin_set_draining(struct admin *a)
{
    atomic_store(&a->draining, true);
}

void admin_stop(struct admin *a)
{
    if (!a || !a->running)
        return;
    atomic_store(&a->stop, true);
    ev_async_send(a->loop, &a->wake);
    pthread_join(a->thread, NULL);
    a->running = false;
}

void admin_free(struct admin **ap)
{
    struct admin *a = *ap;
    if (!a)
        return;
    purger_free(&a->purger);
    if (a->fd >= 0)
        close(a->fd);
    struct config *pending = atomic_exchange(&a->pending_cfg, NULL);
    if (pending)
        config_release(&pending);
    config_release(&a->cfg);
    if (a->loop)
        ev_loop_destroy(a->loop);
    free(a);
    *ap = NULL;
}
