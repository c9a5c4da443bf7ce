/*
 * proxy/adminclient.c: the admin command-line client (see adminclient.h).
 */
#include "proxy/adminclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "proxy/buf.h"
#include "proxy/json.h"

#define CLIENT_TIMEOUT_MS 10000
#define CLIENT_MAX_TAGS 100

static void purge_usage(FILE *out)
{
    fprintf(out, "usage: tessera purge [-c FILE] [--soft] URL\n"
                 "       tessera purge [-c FILE] [--soft] [--host HOST] --prefix PATH\n"
                 "       tessera purge [-c FILE] [--soft] [--host HOST] --regex PATTERN\n"
                 "       tessera purge [-c FILE] [--soft] --tag TAG [--tag TAG...]\n"
                 "       tessera purge [-c FILE] [--soft] --all\n"
                 "Asks the admin listener named in the config (see tessera(8), ADMIN).\n");
}

static void stats_usage(FILE *out)
{
    fprintf(out, "usage: tessera stats [-c FILE] [--json]\n");
}

/* ---- one request to the admin listener ---------------------------------------------- */

/* Where to connect: the listen address, loopback when it is a wildcard. */
static void admin_target(const struct config_admin *ad, struct sockaddr_storage *ss, socklen_t *len)
{
    memcpy(ss, &ad->listen.addr, ad->listen.addrlen);
    *len = ad->listen.addrlen;
    if (ss->ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        if (in->sin_addr.s_addr == htonl(INADDR_ANY))
            in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (ss->ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
            in6->sin6_addr = in6addr_loopback;
    }
}

static bool wait_fd(int fd, short events, int64_t deadline_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    struct pollfd p = {.fd = fd, .events = events};
    return now < deadline_ms && poll(&p, 1, (int)(deadline_ms - now)) == 1;
}

/* Send the request, read the whole answer (the listener closes after it).
 * Returns the status (0 on failure, with a message on stderr) and the body
 * in *body. */
static int admin_request(const struct config *cfg, const char *method, const char *path,
                         const struct buf *json, struct buf *body)
{
    const struct config_admin *ad = &cfg->admin;
    struct sockaddr_storage ss;
    socklen_t sslen;
    struct buf req = {0}, resp = {0};
    int status = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t deadline = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + CLIENT_TIMEOUT_MS;

    admin_target(ad, &ss, &sslen);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        goto io_fail;
    if (connect(fd, (struct sockaddr *)&ss, sslen) < 0) {
        int soerr = 0;
        socklen_t l = sizeof soerr;
        if (errno != EINPROGRESS || !wait_fd(fd, POLLOUT, deadline) ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0 || soerr != 0) {
            errno = soerr ? soerr : (errno == EINPROGRESS ? ETIMEDOUT : errno);
            goto io_fail;
        }
    }
    buf_appendf(&req, "%s %s HTTP/1.1\r\nHost: tessera-admin\r\nConnection: close\r\n", method,
                path);
    if (ad->token)
        buf_appendf(&req, "Authorization: Bearer %s\r\n", ad->token);
    if (json)
        buf_appendf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n", json->len);
    buf_append(&req, "\r\n", 2);
    if (json)
        buf_append(&req, json->data, json->len);
    while (buf_pending(&req) > 0) {
        ssize_t n = send(fd, req.data + req.off, buf_pending(&req), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&req, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLOUT, deadline))
            continue;
        if (n < 0 && errno == EAGAIN)
            errno = ETIMEDOUT;
        goto io_fail;
    }
    for (;;) {
        char chunk[16384];
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n > 0) {
            buf_append(&resp, chunk, (size_t)n);
            if (resp.len > (size_t)64 << 20)
                break;
            continue;
        }
        if (n == 0)
            break;
        if ((errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLIN, deadline))
            continue;
        if (errno == EAGAIN)
            errno = ETIMEDOUT;
        goto io_fail;
    }
    const char *end = resp.data ? memmem(resp.data, resp.len, "\r\n\r\n", 4) : NULL;
    if (!end || resp.len < 12 || memcmp(resp.data, "HTTP/1.", 7) != 0 ||
        sscanf(resp.data + 9, "%3d", &status) != 1) {
        fprintf(stderr, "tessera: the admin listener at %s sent no valid HTTP answer\n",
                ad->listen.text);
        status = 0;
        goto done;
    }
    buf_append(body, end + 4, (size_t)(resp.data + resp.len - (end + 4)));
    goto done;
io_fail:
    fprintf(stderr, "tessera: cannot talk to the admin listener at %s: %s\n", ad->listen.text,
            strerror(errno));
done:
    if (fd >= 0)
        close(fd);
    buf_release(&req);
    buf_release(&resp);
    return status;
}

/* The error message of an error answer, or the body itself. */
static void print_failure(int status, const struct buf *body)
{
    struct json_value *doc = json_parse(body->data ? body->data : "", body->len, NULL, 0);
    const struct json_value *e = doc ? json_object_get(doc, "error") : NULL;
    if (e && e->type == JSON_STRING)
        fprintf(stderr, "tessera: the admin listener answered %d: %.*s\n", status,
                (int)e->string.len, e->string.ptr);
    else
        fprintf(stderr, "tessera: the admin listener answered %d\n", status);
    json_free(&doc);
}

static struct config *load_admin_config(const char *path)
{
    char err[1024];
    struct config *cfg = config_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "tessera: %s\n", err);
        return NULL;
    }
    if (!cfg->admin.enabled) {
        fprintf(stderr, "tessera: %s has no admin block: there is no admin listener to ask\n",
                path);
        config_release(&cfg);
        return NULL;
    }
    return cfg;
}

static uint64_t number(const struct json_value *doc, const char *name)
{
    const struct json_value *v = doc ? json_object_get(doc, name) : NULL;
    return v && v->type == JSON_NUMBER && v->number.is_int && v->number.integer > 0
               ? (uint64_t)v->number.integer
               : 0;
}

/* ---- tessera purge ------------------------------------------------------------------ */

static int purge_main(int argc, char **argv, const char *path)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"soft", no_argument, NULL, 's'},
        {"host", required_argument, NULL, 'H'},
        {"prefix", required_argument, NULL, 'p'},
        {"regex", required_argument, NULL, 'r'},
        {"tag", required_argument, NULL, 't'},
        {"all", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *host = NULL, *prefix = NULL, *regex = NULL, *tags[CLIENT_MAX_TAGS];
    size_t ntags = 0;
    bool soft = false, all = false;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 's':
            soft = true;
            break;
        case 'H':
            host = optarg;
            break;
        case 'p':
            prefix = optarg;
            break;
        case 'r':
            regex = optarg;
            break;
        case 't':
            if (ntags == CLIENT_MAX_TAGS) {
                fprintf(stderr, "tessera: at most %d tags at once\n", CLIENT_MAX_TAGS);
                return 2;
            }
            tags[ntags++] = optarg;
            break;
        case 'a':
            all = true;
            break;
        case 'h':
            purge_usage(stdout);
            return 0;
        default:
            purge_usage(stderr);
            return 2;
        }
    }
    const char *url = optind < argc ? argv[optind++] : NULL;
    int kinds = (url != NULL) + (prefix != NULL) + (regex != NULL) + (ntags > 0) + all;
    if (optind != argc || kinds != 1 || (host && !prefix && !regex)) {
        purge_usage(stderr);
        return 2;
    }
    struct config *cfg = load_admin_config(path);
    if (!cfg)
        return 1;
    struct buf json = {0}, body = {0};
    struct json_writer w;
    json_writer_init(&w, &json, false);
    json_writer_begin_object(&w);
    if (url) {
        json_writer_key(&w, "url");
        json_writer_str(&w, url);
    } else if (prefix || regex) {
        json_writer_key(&w, prefix ? "prefix" : "regex");
        json_writer_str(&w, prefix ? prefix : regex);
        if (host) {
            json_writer_key(&w, "host");
            json_writer_str(&w, host);
        }
    } else if (ntags > 0) {
        json_writer_key(&w, "tag");
        json_writer_begin_array(&w);
        for (size_t i = 0; i < ntags; i++)
            json_writer_str(&w, tags[i]);
        json_writer_end_array(&w);
    } else {
        json_writer_key(&w, "all");
        json_writer_bool(&w, true);
    }
    json_writer_key(&w, "soft");
    json_writer_bool(&w, soft);
    json_writer_end_object(&w);
    json_writer_finish(&w);
    int status = admin_request(cfg, "POST", "/purge", &json, &body);
    int rc = 1;
    if (status == 200) {
        struct json_value *doc = json_parse(body.data ? body.data : "", body.len, NULL, 0);
        const struct json_value *shared = doc ? json_object_get(doc, "shared") : NULL;
        if (soft)
            printf("marked %" PRIu64 " object(s) stale in memory", number(doc, "marked_stale"));
        else
            printf("purged %" PRIu64 " object(s) from memory", number(doc, "purged"));
        printf(" (ban %" PRIu64 "%s)\n", number(doc, "ban"),
               shared && shared->type == JSON_BOOL && shared->boolean
                   ? "; sent to the other nodes through memcached"
               : cfg->memcached.enabled ? "; NOT shared: see the error log"
                                        : "");
        json_free(&doc);
        rc = 0;
    } else if (status != 0) {
        print_failure(status, &body);
    }
    buf_release(&json);
    buf_release(&body);
    config_release(&cfg);
    return rc;
}

/* ---- tessera stats ------------------------------------------------------------------ */

static const struct json_value *path_get(const struct json_value *doc, const char *a, const char *b)
{
    const struct json_value *v = doc ? json_object_get(doc, a) : NULL;
    return v && b ? json_object_get(v, b) : v;
}

static uint64_t num2(const struct json_value *doc, const char *a, const char *b)
{
    const struct json_value *v = path_get(doc, a, b);
    return v && v->type == JSON_NUMBER && v->number.value > 0 ? (uint64_t)v->number.value : 0;
}

static double dbl2(const struct json_value *doc, const char *a, const char *b)
{
    const struct json_value *v = path_get(doc, a, b);
    return v && v->type == JSON_NUMBER ? v->number.value : 0;
}

static void print_stats(const struct json_value *doc)
{
    uint64_t up = (uint64_t)dbl2(doc, "uptime_seconds", NULL);
    const struct json_value *draining = json_object_get(doc, "draining");
    const struct json_value *version = json_object_get(doc, "version");
    printf("tessera %s, up %" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s, %s\n",
           version && version->type == JSON_STRING ? version->string.ptr : "?", up / 3600,
           up / 60 % 60, up % 60,
           draining && draining->type == JSON_BOOL && draining->boolean ? "draining" : "serving");
    printf("connections   %" PRIu64 " open, %" PRIu64 " accepted, %" PRIu64 " refused\n",
           num2(doc, "connections", "open"), num2(doc, "connections", "accepted"),
           num2(doc, "connections", "refused"));
    printf("requests      %" PRIu64 " (%" PRIu64 " refused as bad)\n",
           num2(doc, "requests", "total"), num2(doc, "requests", "bad"));
    printf("cache         %" PRIu64 " hits, %" PRIu64 " stale, %" PRIu64 " misses, %" PRIu64
           " passes: hit ratio %.1f%%\n",
           num2(doc, "cache", "hits"), num2(doc, "cache", "stale"), num2(doc, "cache", "misses"),
           num2(doc, "cache", "passes"), 100.0 * dbl2(doc, "cache", "hit_ratio"));
    printf("memory store  %.1f of %.1f MiB, %" PRIu64 " objects, %" PRIu64 " evictions\n",
           (double)num2(doc, "memory_store", "bytes") / 1048576.0,
           (double)num2(doc, "memory_store", "capacity") / 1048576.0,
           num2(doc, "memory_store", "objects"), num2(doc, "memory_store", "evictions"));
    const struct json_value *mc = json_object_get(doc, "memcached");
    for (size_t i = 0; mc && mc->type == JSON_ARRAY && i < mc->array.n; i++) {
        const struct json_value *s = &mc->array.items[i];
        const struct json_value *name = json_object_get(s, "server");
        const struct json_value *isup = json_object_get(s, "up");
        printf("memcached     %s %s: %" PRIu64 " gets, %" PRIu64 " hits, %" PRIu64 " errors\n",
               name && name->type == JSON_STRING ? name->string.ptr : "?",
               isup && isup->type == JSON_BOOL && isup->boolean ? "up" : "DOWN",
               num2(s, "gets", NULL), num2(s, "hits", NULL), num2(s, "errors", NULL));
    }
    printf("compression   %" PRIu64 " bytes in, %" PRIu64 " bytes out\n",
           num2(doc, "compression", "bytes_in"), num2(doc, "compression", "bytes_out"));
    printf("purges        %" PRIu64 " applied, %" PRIu64 " objects purged, %" PRIu64
           " bans active\n",
           num2(doc, "purge", "purges"), num2(doc, "purge", "purged"),
           num2(doc, "purge", "bans_active"));
}

static int stats_main(int argc, char **argv, const char *path)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool json = false;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            stats_usage(stdout);
            return 0;
        default:
            stats_usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        stats_usage(stderr);
        return 2;
    }
    struct config *cfg = load_admin_config(path);
    if (!cfg)
        return 1;
    struct buf body = {0};
    int status = admin_request(cfg, "GET", "/stats", NULL, &body);
    int rc = 1;
    if (status == 200) {
        char err[256];
        struct json_value *doc = json_parse(body.data ? body.data : "", body.len, err, sizeof err);
        if (json) {
            fwrite(body.data, 1, body.len, stdout);
            rc = 0;
        } else if (doc) {
            print_stats(doc);
            rc = 0;
        } else {
            fprintf(stderr, "tessera: the stats are not JSON: %s\n", err);
        }
        json_free(&doc);
    } else if (status != 0) {
        print_failure(status, &body);
    }
    buf_release(&body);
    config_release(&cfg);
    return rc;
}

int adminclient_main(int argc, char **argv, const char *default_config)
{
    if (strcmp(argv[0], "purge") == 0)
        return purge_main(argc, argv, default_config);
    if (strcmp(argv[0], "stats") == 0)
        return stats_main(argc, argv, default_config);
    fprintf(stderr, "tessera: unknown command '%s'\n", argv[0]);
    return 2;
}
