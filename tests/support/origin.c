/*
 * tessera-origin: the scriptable HTTP/1.1 origin the integration tests put
 * behind the proxy, and the demo application behind `make run`.
 *
 * One thread, one libev loop.  Every request is answered according to its
 * query string (status=, len=, chunked=, delay=, abort=, echo=, ...; the
 * list is in usage() below and `tessera-origin -h`), so a test scripts
 * the origin through the URLs it sends to the proxy and needs no side channel.
 * `/__count`, `/__reset` and `/__last` let a test ask what the origin saw.
 *
 * Memory: a connection owns a fixed input buffer and an output buffer kept
 * under OUT_HIGH bytes.  Response bodies are produced on demand as the socket
 * drains (the body byte at offset i is 'a' + i % 26), so a 1 GB response
 * costs a few tens of KB.  Only echo=1 keeps a request body, up to ECHO_MAX,
 * and only gzip=1 builds a whole body (to compress it), up to GZIP_MAX.
 *
 * A connection is a state machine driven by conn_drive():
 *
 *   READ --request complete--> DELAY --timer--> SEND <--timer-- PAUSE
 *    |  \                        (delay=)        |  \---------->  (body_delay=, drip=)
 *    |   \--noreply=1--> NOREPLY                 |
 *    |                                           +--keep-alive--> READ (next pipelined request)
 *    +--bad request--> LINGER                    +--Connection: close, close=1--> LINGER
 *                                                +--abort=N--> CLOSED
 *
 * LINGER flushes what is queued, shuts the write side and drains the peer
 * for a moment before closing, so a response is not destroyed by the RST
 * Linux sends when unread bytes are left in a closed socket.  Connections
 * are freed only by the outermost callback (never inside the code that
 * decided to close them).  Pipelined requests are parsed one at a time: the
 * parser pauses at the end of each request and the next one is parsed only
 * once the previous response is fully written, so answers are in order.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <llhttp.h>
#include <zlib.h>

enum {
    IN_SIZE = 16384,        /* per-connection input buffer */
    OUT_HIGH = 32768,       /* stop producing body once this much is queued */
    DRIP_PIECE = 8192,      /* drip= writes this much between sleeps */
    DEFAULT_CHUNK = 8192,   /* chunked= chunk size unless chunk= */
    HEAD_MAX = 65536,       /* a longer request head gets a 400 */
    MAX_HDRS = 32,          /* hdr= parameters honoured per request */
    LINGER_MS = 2000,       /* how long LINGER may flush and drain before closing */
    WRITE_BUDGET = 1 << 20, /* bytes per event before yielding to others */
};
static const size_t ECHO_MAX = 64u << 20;   /* echo=1 keeps at most this much body */
static const uint64_t GZIP_MAX = 64u << 20; /* gzip=1 compresses bodies up to this */

/* ---- growable byte buffer ------------------------------------------------ */

struct buf {
    char *p;
    size_t len, off, cap; /* bytes [off, len) are pending */
};

static void buf_reserve(struct buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        perror("tessera-origin: realloc");
        abort(); /* a test origin out of memory cannot answer anything */
    }
    b->p = p;
    b->cap = cap;
}

static void buf_append(struct buf *b, const void *data, size_t n)
{
    if (n == 0)
        return; /* data may be NULL (an empty buf) */
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_str(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void buf_printf(struct buf *b, const char *fmt, ...)
{
    /* Format into a stack buffer first; only a long result formats twice.
     * (vsnprintf(NULL, 0, ...) trips gcc 12's -Wformat-truncation under
     * some sanitizer flag combinations.) */
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    assert(n >= 0);
    buf_reserve(b, (size_t)n + 1);
    if ((size_t)n < sizeof tmp) {
        memcpy(b->p + b->len, tmp, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

static size_t buf_pending(const struct buf *b)
{
    return b->len - b->off;
}

static void buf_release(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- the body pattern: byte i is 'a' + i % 26 ------------------------------ */

static char pattern[DRIP_PIECE + 26];

static void pattern_init(void)
{
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (char)('a' + i % 26);
}

static void pattern_copy(char *dst, uint64_t offset, size_t n)
{
    while (n > 0) {
        size_t k = n < DRIP_PIECE ? n : DRIP_PIECE;
        memcpy(dst, pattern + offset % 26, k);
        dst += k;
        offset += k;
        n -= k;
    }
}

/* ---- per-request options from the query string ----------------------------- */

struct opts {
    int status; /* 0: not given */
    bool has_len, chunked, close, echo, cont, noreply, closenow, has_abort, gzip, words;
    bool gzip_always; /* gzip=always: whatever the request accepts */
    uint64_t len, abort;
    size_t chunk;
    long delay, body_delay, drip;       /* -1: not given */
    const char *trailer, *ctype, *path; /* decoded, NULL when absent */
    const char *body;                   /* body=TEXT: the body, "$n" replaced */
    const char *etag, *lm;              /* validators to send and to honour */
    const char *hdrs[MAX_HDRS];
    size_t nhdrs;
};

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Percent-decode [s, s+n) into dst (NUL-terminated).  '+' stays '+': tests
 * write %20 for a space, and Content-Types like image/svg+xml survive. */
static char *url_decode(char *dst, const char *s, size_t n)
{
    char *d = dst;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            *d++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            *d++ = s[i];
        }
    }
    *d++ = '\0';
    return d;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (*s == '\0' || strlen(s) > 19)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

static bool parse_ms(const char *s, long *out)
{
    uint64_t v;
    if (!parse_u64(s, &v) || v > 3600 * 1000)
        return false;
    *out = (long)v;
    return true;
}

static bool is_token(const char *s, size_t n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && strchr(extra, s[i]) == NULL)
            return false;
    return true;
}

/* "Name:Value" with a token name and no CR, LF or NUL in the value. */
static bool valid_header_param(const char *s)
{
    const char *colon = strchr(s, ':');
    if (colon == NULL || !is_token(s, (size_t)(colon - s)))
        return false;
    for (const char *v = colon + 1; *v; v++)
        if (*v == '\r' || *v == '\n')
            return false;
    return true;
}

/* Apply one decoded key=value; false (with *why set) for a bad value. */
static bool opts_set(struct opts *o, const char *k, const char *v, const char **why)
{
    uint64_t u;
    *why = k;
    if (strcmp(k, "status") == 0) {
        if (!parse_u64(v, &u) || u < 200 || u > 599)
            return false;
        o->status = (int)u;
    } else if (strcmp(k, "len") == 0) {
        if (!parse_u64(v, &o->len))
            return false;
        o->has_len = true;
    } else if (strcmp(k, "chunk") == 0) {
        if (!parse_u64(v, &u) || u == 0 || u > (1u << 30))
            return false;
        o->chunk = (size_t)u;
    } else if (strcmp(k, "abort") == 0) {
        if (!parse_u64(v, &o->abort))
            return false;
        o->has_abort = true;
    } else if (strcmp(k, "delay") == 0) {
        return parse_ms(v, &o->delay);
    } else if (strcmp(k, "body_delay") == 0) {
        return parse_ms(v, &o->body_delay);
    } else if (strcmp(k, "drip") == 0) {
        return parse_ms(v, &o->drip);
    } else if (strcmp(k, "hdr") == 0 || strcmp(k, "trailer") == 0) {
        if (!valid_header_param(v))
            return false;
        if (k[0] == 't')
            o->trailer = v;
        else if (o->nhdrs < MAX_HDRS)
            o->hdrs[o->nhdrs++] = v;
    } else if (strcmp(k, "ctype") == 0) {
        if (strpbrk(v, "\r\n") != NULL)
            return false;
        o->ctype = v;
    } else if (strcmp(k, "path") == 0) {
        o->path = v;
    } else if (strcmp(k, "body") == 0) {
        o->body = v;
    } else if (strcmp(k, "etag") == 0 || strcmp(k, "lm") == 0) {
        if (strpbrk(v, "\r\n") != NULL || *v == '\0')
            return false;
        if (k[0] == 'e')
            o->etag = v;
        else
            o->lm = v;
    } else {
        bool on = strcmp(v, "0") != 0;
        if (strcmp(k, "chunked") == 0)
            o->chunked = on;
        else if (strcmp(k, "close") == 0)
            o->close = on;
        else if (strcmp(k, "echo") == 0)
            o->echo = on;
        else if (strcmp(k, "continue") == 0)
            o->cont = on;
        else if (strcmp(k, "noreply") == 0)
            o->noreply = on;
        else if (strcmp(k, "closenow") == 0)
            o->closenow = on;
        else if (strcmp(k, "gzip") == 0)
            o->gzip = on, o->gzip_always = strcmp(v, "always") == 0;
        else if (strcmp(k, "words") == 0)
            o->words = on;
        /* anything else (cache busters like v=2) is ignored */
    }
    return true;
}

/* words=1: n bytes of HTML-like text, the same for the same n: markup and
 * words drawn from a small vocabulary by a fixed pseudo-random sequence, so
 * that it compresses about as real pages do (not like the a..z pattern). */
static void words_fill(char *dst, size_t n)
{
    static const char *const vocab[] = {
        "<div class=\"product\">",
        "</div>",
        "<p>",
        "</p>",
        "<a href=\"/products/",
        "\">",
        "</a>",
        "<span class=\"price\">",
        "</span>",
        "<li>",
        "</li>",
        "the",
        "quality",
        "shipping",
        "customer",
        "review",
        "stars",
        "colour",
        "size",
        "available",
        "order",
        "today",
        "delivery",
        "warranty",
        "cotton",
        "leather",
        "steel",
        "garden",
        "kitchen",
        "lamp",
        "chair",
        "table",
        "with",
        "and",
        "for",
        "new",
        "classic",
        "design",
        "\n",
    };
    const size_t nvocab = sizeof vocab / sizeof vocab[0];
    uint64_t x = 88172645463325252ull;
    size_t i = 0;
    while (i < n) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const char *w = vocab[x % nvocab];
        if ((x >> 32) % 7 == 0) { /* a number, as prices and ids are */
            char num[24];
            int k = snprintf(num, sizeof num, "%u ", (unsigned)((x >> 40) % 100000));
            w = num;
            for (int j = 0; j < k && i < n; j++)
                dst[i++] = w[j];
            continue;
        }
        for (size_t j = 0; w[j] && i < n; j++)
            dst[i++] = w[j];
        if (i < n)
            dst[i++] = ' ';
    }
}

/* Parse query [q, q+n).  Decoded strings live in *store (caller frees). */
static bool opts_parse(struct opts *o, const char *q, size_t n, char **store, const char **why)
{
    memset(o, 0, sizeof(*o));
    o->cont = true;
    o->delay = o->body_delay = o->drip = -1;
    *store = malloc(3 * n + 3); /* a segment of L bytes decodes to at most L + 3 */
    if (*store == NULL)
        abort();
    char *d = *store;
    const char *end = q + n;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq ? eq : pe;
        char *k = d;
        d = url_decode(d, q, (size_t)(ke - q));
        char *v = d;
        d = eq ? url_decode(d, eq + 1, (size_t)(pe - eq - 1)) : url_decode(d, "1", 1);
        if (*k != '\0' && !opts_set(o, k, v, why))
            return false;
        q = amp ? amp + 1 : end;
    }
    if (o->words && o->has_len && o->len > GZIP_MAX) {
        *why = "words";
        return false;
    }
    if (o->gzip && o->has_len && o->len > GZIP_MAX) {
        *why = "gzip";
        return false; /* the whole body is built to be compressed */
    }
    return true;
}

/* ---- what the origin has seen: /__count, /__last ---------------------------- */

struct path_stat {
    char *path;
    uint64_t count;
    struct buf last; /* last request head for this path */
    char *body;      /* set by /__set: the path's body=, unless the request gives one */
};

static struct {
    struct path_stat *v;
    size_t n, cap;
    uint64_t total;
} stats;

static struct path_stat *stats_find(const char *path, size_t n, bool create)
{
    for (size_t i = 0; i < stats.n; i++)
        if (strlen(stats.v[i].path) == n && memcmp(stats.v[i].path, path, n) == 0)
            return &stats.v[i];
    if (!create)
        return NULL;
    if (stats.n == stats.cap) {
        stats.cap = stats.cap ? stats.cap * 2 : 16;
        stats.v = realloc(stats.v, stats.cap * sizeof(*stats.v));
        if (stats.v == NULL)
            abort();
    }
    struct path_stat *s = &stats.v[stats.n++];
    memset(s, 0, sizeof(*s));
    s->path = strndup(path, n);
    if (s->path == NULL)
        abort();
    return s;
}

static void stats_record(const char *path, size_t n, const char *head, size_t head_len)
{
    struct path_stat *s = stats_find(path, n, true);
    s->count++;
    s->last.len = s->last.off = 0;
    buf_append(&s->last, head, head_len);
    stats.total++;
}

static void stats_clear(void)
{
    for (size_t i = 0; i < stats.n; i++) {
        free(stats.v[i].path);
        free(stats.v[i].body);
        buf_release(&stats.v[i].last);
    }
    free(stats.v);
    memset(&stats, 0, sizeof(stats));
}

/* ---- server-wide state ------------------------------------------------------ */

struct conn;

static struct {
    struct ev_loop *loop;
    int port;
    bool demo, quiet;
    long delay_ms;
    unsigned next_conn_id;
    struct conn *conns; /* every live connection, for shutdown */
} srv;

static const char *http_date(void)
{
    static char date[64];
    static time_t cached = -1;
    time_t now = time(NULL);
    if (now != cached) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached = now;
    }
    return date;
}

static const char *reason_phrase(int status)
{
    static const struct {
        int status;
        const char *reason;
    } table[] = {{200, "OK"},
                 {201, "Created"},
                 {202, "Accepted"},
                 {203, "Non-Authoritative Information"},
                 {204, "No Content"},
                 {206, "Partial Content"},
                 {300, "Multiple Choices"},
                 {301, "Moved Permanently"},
                 {302, "Found"},
                 {303, "See Other"},
                 {304, "Not Modified"},
                 {307, "Temporary Redirect"},
                 {308, "Permanent Redirect"},
                 {400, "Bad Request"},
                 {401, "Unauthorized"},
                 {403, "Forbidden"},
                 {404, "Not Found"},
                 {405, "Method Not Allowed"},
                 {408, "Request Timeout"},
                 {410, "Gone"},
                 {412, "Precondition Failed"},
                 {413, "Content Too Large"},
                 {416, "Range Not Satisfiable"},
                 {429, "Too Many Requests"},
                 {500, "Internal Server Error"},
                 {501, "Not Implemented"},
                 {502, "Bad Gateway"},
                 {503, "Service Unavailable"},
                 {504, "Gateway Timeout"}};
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].status == status)
            return table[i].reason;
    return "Status";
}

/* ---- requests and responses ------------------------------------------------- */

struct request {
    struct buf head;          /* raw head as received, through the empty line */
    struct buf body;          /* kept only for echo=1 */
    uint64_t body_len;        /* bytes of decoded body received */
    bool head_done;           /* parser paused at the end of the head */
    bool msg_done;            /* parser paused at the end of the message */
    bool upgrade;             /* CONNECT / Upgrade: answer, then close */
    const char *path, *query; /* slices into head */
    size_t path_len, query_len;
    struct opts o;
    char *store; /* decoded query strings */
};

enum framing { FR_LENGTH, FR_CHUNKED, FR_CLOSE };

struct response {
    int status;
    const char *ctype;
    const char *extra[2];     /* demo headers such as Cache-Control */
    const char *validator[2]; /* etag= and lm= values: ETag, Last-Modified */
    enum framing framing;
    bool no_body; /* HEAD, 204, 304 */
    bool close_after;
    bool pattern; /* body is the pattern, else blob */
    bool gzip;    /* blob is gzip-coded (gzip=1): Content-Encoding: gzip */
    char *blob;   /* owned */
    uint64_t total, produced, chunk_left, abort_at;
    bool has_abort, ended, aborted;
    size_t chunk;
    long wait_ms; /* timer to run before producing more (body_delay, drip) */
    long drip_ms;
};

enum conn_state { CS_READ, CS_DELAY, CS_SEND, CS_PAUSE, CS_NOREPLY, CS_LINGER, CS_CLOSED };

static const char *const state_names[] = {"READ",    "DELAY",  "SEND",  "PAUSE",
                                          "NOREPLY", "LINGER", "CLOSED"};

struct conn {
    int fd;
    unsigned id, seq;
    enum conn_state state;
    bool peer_eof;
    bool shut_wr; /* LINGER has sent its FIN */
    size_t budget;
    ev_io rio, wio;
    ev_timer timer;
    llhttp_t parser;
    char in[IN_SIZE];
    size_t in_off, in_len;
    struct buf out;
    struct request req;
    struct response resp;
    struct conn *prev, *next;
};

/* The legal transitions of the diagram at the top of this file. */
static void conn_set_state(struct conn *c, enum conn_state to)
{
    static const unsigned legal[] = {
        [CS_READ] =
            1u << CS_DELAY | 1u << CS_SEND | 1u << CS_NOREPLY | 1u << CS_LINGER | 1u << CS_CLOSED,
        [CS_DELAY] = 1u << CS_SEND | 1u << CS_CLOSED,
        [CS_SEND] = 1u << CS_PAUSE | 1u << CS_READ | 1u << CS_LINGER | 1u << CS_CLOSED,
        [CS_PAUSE] = 1u << CS_SEND | 1u << CS_CLOSED,
        [CS_NOREPLY] = 1u << CS_CLOSED,
        [CS_LINGER] = 1u << CS_CLOSED,
        [CS_CLOSED] = 0,
    };
    if (!(legal[c->state] & 1u << to)) {
        fprintf(stderr, "tessera-origin: conn %u: illegal %s -> %s\n", c->id, state_names[c->state],
                state_names[to]);
        abort();
    }
    c->state = to;
}

static void conn_close(struct conn *c)
{
    if (c->state == CS_CLOSED)
        return;
    ev_io_stop(srv.loop, &c->rio);
    ev_io_stop(srv.loop, &c->wio);
    ev_timer_stop(srv.loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    conn_set_state(c, CS_CLOSED);
}

static void request_clear(struct request *r)
{
    buf_release(&r->head);
    buf_release(&r->body);
    free(r->store);
    memset(r, 0, sizeof(*r));
}

static void response_clear(struct response *r)
{
    free(r->blob);
    memset(r, 0, sizeof(*r));
}

static void conn_timer_start(struct conn *c, long ms)
{
    ev_timer_set(&c->timer, (double)ms / 1000.0, 0.0);
    ev_timer_start(srv.loop, &c->timer);
}

/* Find header `name` in the raw head; the value is trimmed of OWS. */
static const char *head_header(const struct buf *h, const char *name, size_t *vlen)
{
    const char *p = memchr(h->p, '\n', h->len);
    const char *end = h->p + h->len;
    size_t nlen = strlen(name);
    while (p != NULL && ++p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            break;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon != NULL && (size_t)(colon - p) == nlen && strncasecmp(p, name, nlen) == 0) {
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

/* What llhttp 8 lets through but RFC 9112 5.1 and 5.2 tell a server to
 * reject: whitespace between a field name and its colon, and obs-fold. */
static const char *head_violation(const struct buf *h)
{
    const char *p = memchr(h->p, '\n', h->len);
    const char *end = h->p + h->len;
    while (p != NULL && ++p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL || eol - p <= 1)
            break;
        if (*p == ' ' || *p == '\t')
            return "obs-fold in header";
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon != NULL && colon > p && (colon[-1] == ' ' || colon[-1] == '\t'))
            return "whitespace before colon";
        p = eol;
    }
    return NULL;
}

/* Split the request target of the (validated) request line into path and
 * query; an absolute-form target loses its scheme and authority. */
static void request_split_target(struct request *r)
{
    const char *sp1 = memchr(r->head.p, ' ', r->head.len);
    const char *t = sp1 + 1;
    const char *te = memchr(t, ' ', (size_t)(r->head.p + r->head.len - t));
    if (te - t > 8 && (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0)) {
        const char *slash = memchr(t + 8, '/', (size_t)(te - t - 8));
        t = slash ? slash : te;
    }
    const char *q = memchr(t, '?', (size_t)(te - t));
    const char *hash = memchr(t, '#', (size_t)(te - t));
    const char *pe = q ? q : hash ? hash : te;
    r->path = pe > t ? t : "/";
    r->path_len = pe > t ? (size_t)(pe - t) : 1;
    r->query = q ? q + 1 : "";
    r->query_len = q ? (size_t)((hash && hash > q ? hash : te) - q - 1) : 0;
}

static size_t request_line_len(const struct request *r)
{
    const char *eol = memchr(r->head.p, '\r', r->head.len);
    return eol ? (size_t)(eol - r->head.p) : r->head.len;
}

static bool path_is(const struct request *r, const char *s)
{
    return r->path_len == strlen(s) && memcmp(r->path, s, r->path_len) == 0;
}

static bool path_is_internal(const struct request *r)
{
    return r->path_len >= 3 && memcmp(r->path, "/__", 3) == 0;
}

/* ---- the demo site ------------------------------------------------------------ */

static const char demo_css[] =
    "body { font-family: sans-serif; margin: 2em auto; max-width: 40em; color: #222; }\n"
    "h1 { color: #a33; }\n"
    ".price { font-weight: bold; }\n";

static void demo_page_open(struct buf *b, const char *title)
{
    buf_printf(b,
               "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>\n"
               "<link rel=\"stylesheet\" href=\"/static/style.css\"></head>\n<body>\n"
               "<h1>%s</h1>\n",
               title, title);
}

static void demo_home(struct buf *b)
{
    demo_page_open(b, "tessera demo shop");
    buf_str(b, "<p>A deliberately slow application: try it through tessera.</p>\n<ul>\n");
    for (int i = 1; i <= 20; i++)
        buf_printf(b, "<li><a href=\"/products/%d\">Product %d</a></li>\n", i, i);
    buf_str(b, "</ul>\n<p><a href=\"/api/time\">/api/time</a> (never cached)</p>\n"
               "</body></html>\n");
}

static void demo_product(struct buf *b, int n)
{
    char title[32];
    snprintf(title, sizeof(title), "Product %d", n);
    demo_page_open(b, title);
    buf_printf(b,
               "<p>Product %d is a fine tessera tile, %d mm wide.</p>\n"
               "<p class=\"price\">%d.%02d EUR</p>\n<p><a href=\"/\">home</a></p>\n"
               "</body></html>\n",
               n, 10 + n % 7, 3 + n * 7 % 40, n * 13 % 100);
}

/* Demo routes; false when the path is not one of them (the caller 404s). */
static bool demo_route(const struct request *r, struct response *resp, struct buf *b)
{
    char num[8];
    if (path_is(r, "/")) {
        demo_home(b);
    } else if (r->path_len > 10 && r->path_len < 13 && memcmp(r->path, "/products/", 10) == 0) {
        memcpy(num, r->path + 10, r->path_len - 10);
        num[r->path_len - 10] = '\0';
        uint64_t n;
        if (!parse_u64(num, &n) || n < 1 || n > 20 || num[0] == '0')
            return false;
        demo_product(b, (int)n);
    } else if (path_is(r, "/api/time")) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        buf_printf(b, "{\"time\": %lld.%03ld}\n", (long long)tv.tv_sec, (long)tv.tv_usec / 1000);
        resp->ctype = "application/json";
        resp->extra[0] = "Cache-Control: no-store";
    } else if (path_is(r, "/static/style.css")) {
        buf_str(b, demo_css);
        resp->ctype = "text/css";
        resp->extra[0] = "Cache-Control: max-age=3600";
    } else {
        return false;
    }
    return true;
}

static void demo_body(const struct request *r, struct response *resp, struct buf *b)
{
    resp->ctype = "text/html; charset=utf-8";
    if (!demo_route(r, resp, b)) {
        resp->status = 404;
        b->len = 0;
        demo_page_open(b, "Not found");
        buf_str(b, "<p>No such page. <a href=\"/\">home</a></p>\n</body></html>\n");
    }
}

/* ---- building a response ------------------------------------------------------- */

/* A body was set for this path with /__set. */
static bool path_has_body(const struct request *r)
{
    const struct path_stat *s = stats_find(r->path, r->path_len, false);
    return s && s->body;
}

/* body=TEXT: TEXT with every "$n" replaced by how many requests for this
 * path the origin has answered, this one included (so a test sees which
 * fetch a cached body came from). */
static void text_body(const struct request *r, struct buf *b)
{
    const struct path_stat *s = stats_find(r->path, r->path_len, false);
    uint64_t n = s ? s->count : 0;
    const char *text = r->o.body ? r->o.body : s->body;
    for (const char *p = text; *p; p++) {
        if (p[0] == '$' && p[1] == 'n') {
            buf_printf(b, "%" PRIu64, n);
            p++;
        } else {
            buf_append(b, p, 1);
        }
    }
}

static void internal_body(const struct request *r, struct response *resp, struct buf *b)
{
    const char *p = r->o.path;
    struct path_stat *s = p ? stats_find(p, strlen(p), false) : NULL;
    if (path_is(r, "/__count")) {
        buf_printf(b, "%" PRIu64 "\n", p ? (s ? s->count : 0) : stats.total);
    } else if (path_is(r, "/__reset")) {
        stats_clear();
        buf_str(b, "ok\n");
    } else if (path_is(r, "/__set") && p != NULL && r->o.body != NULL) {
        struct path_stat *st = stats_find(p, strlen(p), true);
        free(st->body);
        st->body = strdup(r->o.body);
        if (st->body == NULL)
            abort();
        buf_str(b, "ok\n");
    } else if (path_is(r, "/__last") && s != NULL) {
        buf_append(b, s->last.p, s->last.len);
    } else {
        resp->status = 404;
        buf_str(b, "not found\n");
    }
}

/* The body before scripting: an internal answer, a demo page or the hello text. */
static void response_default_body(struct conn *c, struct buf *b)
{
    struct request *r = &c->req;
    struct response *resp = &c->resp;
    resp->status = 200;
    resp->ctype = "text/plain";
    if (path_is_internal(r)) {
        internal_body(r, resp, b);
    } else if (srv.demo) {
        demo_body(r, resp, b);
    } else {
        buf_str(b, "hello from origin ");
        buf_append(b, r->path, r->path_len);
        buf_str(b, "\n");
    }
}

/* etag= and lm=: send the validators, and answer 304 when the request's
 * If-None-Match names the ETag or its If-Modified-Since is the
 * Last-Modified (a cooperative application). */
static bool validators_match(const struct request *r)
{
    const struct opts *o = &r->o;
    size_t len;
    const char *inm = head_header(&r->head, "if-none-match", &len);
    if (o->etag && inm)
        return memmem(inm, len, o->etag, strlen(o->etag)) != NULL;
    const char *ims = head_header(&r->head, "if-modified-since", &len);
    return o->lm && ims && len == strlen(o->lm) && memcmp(ims, o->lm, len) == 0;
}

/* gzip=1: does the request's Accept-Encoding mention gzip?  (Any mention,
 * q-values aside: a test that wants identity sends none.) */
static bool request_takes_gzip(const struct request *r)
{
    size_t len;
    const char *ae = head_header(&r->head, "accept-encoding", &len);
    for (size_t i = 0; ae && i + 4 <= len; i++)
        if (strncasecmp(ae + i, "gzip", 4) == 0)
            return true;
    return false;
}

/* Replace the response body by its gzip coding (zlib, gzip wrapper, level
 * 6: the same body always gives the same bytes). */
static void response_gzip(struct response *resp)
{
    size_t n = (size_t)resp->total;
    char *plain = resp->blob;
    if (resp->pattern) {
        plain = malloc(n ? n : 1);
        if (plain == NULL)
            abort();
        pattern_copy(plain, 0, n);
    }
    z_stream zs = {0};
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    size_t cap = deflateBound(&zs, (uLong)n) + 32;
    char *gz = malloc(cap);
    if (gz == NULL)
        abort();
    zs.next_in = (Bytef *)plain;
    zs.avail_in = (uInt)n;
    zs.next_out = (Bytef *)gz;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
        abort();
    resp->total = zs.total_out;
    deflateEnd(&zs);
    if (plain != resp->blob)
        free(plain);
    free(resp->blob);
    resp->blob = gz;
    resp->pattern = false;
    resp->gzip = true;
}

static void response_build(struct conn *c)
{
    struct request *r = &c->req;
    struct response *resp = &c->resp;
    const struct opts *o = &r->o;
    struct buf b = {0};
    bool internal = path_is_internal(r);

    response_default_body(c, &b);
    if (!internal && o->echo) {
        b.len = 0;
        buf_append(&b, r->head.p, r->head.len);
        buf_append(&b, r->body.p, r->body.len);
    } else if (!internal && (o->body || path_has_body(r))) {
        b.len = 0;
        text_body(r, &b);
    }
    resp->blob = b.p; /* ownership moves to the response */
    resp->total = b.len;
    if (!internal && o->has_len && !o->echo && o->words) {
        free(resp->blob);
        resp->blob = malloc(o->len ? (size_t)o->len : 1);
        if (resp->blob == NULL)
            abort();
        words_fill(resp->blob, (size_t)o->len);
        resp->total = o->len;
    } else if (!internal && o->has_len && !o->echo) {
        resp->pattern = true;
        resp->total = o->len;
    }
    if (!internal && o->gzip && (o->gzip_always || request_takes_gzip(r)))
        response_gzip(resp);
    if (!internal && o->status)
        resp->status = o->status;
    if (!internal && o->etag)
        resp->validator[0] = o->etag;
    if (!internal && o->lm)
        resp->validator[1] = o->lm;
    if (!internal && (o->etag || o->lm) && validators_match(r))
        resp->status = 304;
    if (o->ctype)
        resp->ctype = o->ctype;
    bool http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
    resp->close_after = !llhttp_should_keep_alive(&c->parser) || r->upgrade || c->parser.upgrade;
    if (o->close || (o->chunked && http10)) {
        resp->framing = FR_CLOSE;
        resp->close_after = true;
    } else if (o->chunked) {
        resp->framing = FR_CHUNKED;
    }
    resp->chunk = o->chunk ? o->chunk : DEFAULT_CHUNK;
    resp->no_body = c->parser.method == HTTP_HEAD || resp->status == 204 || resp->status == 304;
    resp->has_abort = o->has_abort;
    resp->abort_at = o->abort;
    resp->drip_ms = o->drip > 0 ? o->drip : 0;
    resp->wait_ms = o->body_delay > 0 ? o->body_delay : 0;
}

static void response_queue_head(struct conn *c)
{
    struct response *resp = &c->resp;
    struct request *r = &c->req;
    struct buf *b = &c->out;
    bool bodiless_status = resp->status == 204 || resp->status == 304;

    buf_printf(b, "HTTP/1.1 %d %s\r\nDate: %s\r\n", resp->status, reason_phrase(resp->status),
               http_date());
    if (resp->ctype[0] != '\0' && !bodiless_status)
        buf_printf(b, "Content-Type: %s\r\n", resp->ctype);
    if (resp->framing == FR_LENGTH && !bodiless_status)
        buf_printf(b, "Content-Length: %" PRIu64 "\r\n", resp->total);
    if (resp->gzip && !bodiless_status)
        buf_str(b, "Content-Encoding: gzip\r\n");
    if (resp->framing == FR_CHUNKED && !bodiless_status) {
        buf_str(b, "Transfer-Encoding: chunked\r\n");
        if (r->o.trailer)
            buf_printf(b, "Trailer: %.*s\r\n", (int)strcspn(r->o.trailer, ":"), r->o.trailer);
    }
    if (resp->close_after)
        buf_str(b, "Connection: close\r\n");
    else if (c->parser.http_minor == 0)
        buf_str(b, "Connection: keep-alive\r\n");
    buf_printf(b,
               "X-Origin-Conn: %u\r\nX-Origin-Seq: %u\r\nX-Origin-Port: %d\r\n"
               "X-Origin-Body-Length: %" PRIu64 "\r\n",
               c->id, c->seq, srv.port, r->body_len);
    for (size_t i = 0; i < 2 && resp->extra[i]; i++)
        buf_printf(b, "%s\r\n", resp->extra[i]);
    if (resp->validator[0])
        buf_printf(b, "ETag: %s\r\n", resp->validator[0]);
    if (resp->validator[1])
        buf_printf(b, "Last-Modified: %s\r\n", resp->validator[1]);
    for (size_t i = 0; i < r->o.nhdrs; i++)
        buf_printf(b, "%s\r\n", r->o.hdrs[i]);
    buf_str(b, "\r\n");

    if (resp->no_body)
        resp->ended = true;
    if (srv.demo && !srv.quiet)
        fprintf(stderr, "origin: conn=%u seq=%u %.*s -> %d (%" PRIu64 " bytes)\n", c->id, c->seq,
                (int)request_line_len(r), r->head.p, resp->status, resp->no_body ? 0 : resp->total);
}

/* Queue more body (and chunk framing) until OUT_HIGH is pending, the body
 * ends, abort= is reached or a drip= pause is due. */
static void response_produce(struct conn *c)
{
    struct response *resp = &c->resp;
    struct buf *b = &c->out;
    bool chunked = resp->framing == FR_CHUNKED;

    while (!resp->ended && resp->wait_ms == 0 && buf_pending(b) < OUT_HIGH) {
        uint64_t left = resp->total - resp->produced;
        if (resp->has_abort && resp->produced >= resp->abort_at && left > 0) {
            resp->ended = resp->aborted = true;
            break;
        }
        if (left == 0) {
            if (chunked)
                buf_printf(b, "0\r\n%s%s\r\n", c->req.o.trailer ? c->req.o.trailer : "",
                           c->req.o.trailer ? "\r\n" : "");
            resp->ended = true;
            break;
        }
        if (chunked && resp->chunk_left == 0) {
            resp->chunk_left = left < resp->chunk ? left : resp->chunk;
            buf_printf(b, "%" PRIx64 "\r\n", resp->chunk_left);
        }
        uint64_t n = OUT_HIGH - buf_pending(b);
        if (resp->drip_ms && !chunked && n > DRIP_PIECE)
            n = DRIP_PIECE;
        if (n > left)
            n = left;
        if (chunked && n > resp->chunk_left)
            n = resp->chunk_left;
        if (resp->has_abort && n > resp->abort_at - resp->produced)
            n = resp->abort_at - resp->produced;
        buf_reserve(b, n);
        if (resp->pattern)
            pattern_copy(b->p + b->len, resp->produced, n);
        else
            memcpy(b->p + b->len, resp->blob + resp->produced, n);
        b->len += n;
        resp->produced += n;
        if (chunked) {
            resp->chunk_left -= n;
            if (resp->chunk_left == 0)
                buf_str(b, "\r\n");
        }
        bool piece_done = !chunked || resp->chunk_left == 0;
        if (resp->drip_ms && piece_done && resp->produced < resp->total)
            resp->wait_ms = resp->drip_ms;
    }
}

/* ---- connection driver ------------------------------------------------------------ */

static void conn_reply_error(struct conn *c, int status, const char *why)
{
    buf_printf(&c->out,
               "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain\r\n"
               "Content-Length: %zu\r\nConnection: close\r\nX-Origin-Port: %d\r\n\r\n%s\n",
               status, reason_phrase(status), http_date(), strlen(why) + 1, srv.port, why);
    conn_set_state(c, CS_LINGER);
}

/* Write what is queued.  False when blocked (the write watcher resumes the
 * driver), out of budget, or the connection died. */
static bool conn_flush(struct conn *c)
{
    struct buf *b = &c->out;
    while (buf_pending(b) > 0) {
        if (c->budget == 0) {
            ev_io_start(srv.loop, &c->wio);
            return false;
        }
        size_t n = buf_pending(b) < c->budget ? buf_pending(b) : c->budget;
        ssize_t w = send(c->fd, b->p + b->off, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(srv.loop, &c->wio);
            return false;
        }
        if (w < 0) {
            conn_close(c);
            return false;
        }
        b->off += (size_t)w;
        c->budget -= (size_t)w;
    }
    b->off = b->len = 0;
    ev_io_stop(srv.loop, &c->wio);
    return true;
}

/* The head is complete (parser paused right after it). */
static void conn_on_head(struct conn *c)
{
    struct request *r = &c->req;
    size_t skip = 0; /* llhttp tolerates CRLFs before a request line */
    while (skip < r->head.len && (r->head.p[skip] == '\r' || r->head.p[skip] == '\n'))
        skip++;
    memmove(r->head.p, r->head.p + skip, r->head.len - skip);
    r->head.len -= skip;
    c->seq++;
    const char *why = head_violation(&r->head);
    if (why != NULL) {
        conn_reply_error(c, 400, why);
        return;
    }
    request_split_target(r);
    if (!opts_parse(&r->o, r->query, r->query_len, &r->store, &why)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "bad query parameter %s", why);
        conn_reply_error(c, 400, msg);
        return;
    }
    if (!path_is_internal(r))
        stats_record(r->path, r->path_len, r->head.p, r->head.len);
    if (r->o.closenow) {
        conn_close(c);
        return;
    }
    size_t vlen;
    const char *expect = head_header(&r->head, "expect", &vlen);
    bool has_body = (c->parser.flags & F_CHUNKED) || c->parser.content_length > 0;
    if (expect && vlen == 12 && strncasecmp(expect, "100-continue", 12) == 0 && has_body &&
        r->o.cont && c->parser.http_minor >= 1)
        buf_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
}

/* The whole request is in: start the answer. */
static void conn_on_request(struct conn *c)
{
    struct request *r = &c->req;
    if (r->o.noreply) {
        conn_set_state(c, CS_NOREPLY);
        return;
    }
    response_build(c);
    long delay = r->o.delay >= 0 ? r->o.delay : path_is_internal(r) ? 0 : srv.delay_ms;
    if (delay > 0) {
        conn_set_state(c, CS_DELAY);
        conn_timer_start(c, delay);
        return;
    }
    response_queue_head(c);
    conn_set_state(c, CS_SEND);
}

static int on_headers_complete(llhttp_t *p)
{
    ((struct conn *)p->data)->req.head_done = true;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct request *r = &((struct conn *)p->data)->req;
    r->body_len += n;
    if (r->o.echo && r->body.len + n <= ECHO_MAX)
        buf_append(&r->body, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    ((struct conn *)p->data)->req.msg_done = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t *parser_settings(void)
{
    static llhttp_settings_t s;
    static bool ready;
    if (!ready) {
        llhttp_settings_init(&s);
        s.on_headers_complete = on_headers_complete;
        s.on_body = on_body;
        s.on_message_complete = on_message_complete;
        ready = true;
    }
    return &s;
}

/* Feed buffered input to the parser until a request completes, the input
 * runs out or the request fails. */
static void conn_parse(struct conn *c)
{
    bool kick = false; /* run the parser once more with no input after the head */
    while (c->state == CS_READ && (c->in_off < c->in_len || kick)) {
        kick = false;
        struct request *r = &c->req;
        const char *data = c->in + c->in_off;
        size_t len = c->in_len - c->in_off;
        bool in_head = !r->head_done;
        llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
        size_t used = len;
        if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
            used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
            r->upgrade = err == HPE_PAUSED_UPGRADE;
            if (err == HPE_PAUSED)
                llhttp_resume(&c->parser);
        } else if (err != HPE_OK) {
            conn_reply_error(c, 400, llhttp_get_error_reason(&c->parser));
            return;
        }
        c->in_off += used;
        if (in_head)
            buf_append(&r->head, data, used);
        if (in_head && !r->head_done && r->head.len > HEAD_MAX) {
            conn_reply_error(c, 400, "request head too large");
            return;
        }
        if (in_head && r->head_done) {
            conn_on_head(c);
            kick = true;
        }
        if (r->msg_done || r->upgrade)
            conn_on_request(c);
    }
    if (c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
}

/* A response is fully written: keep the connection for the next request or close it. */
static void conn_response_done(struct conn *c)
{
    if (c->resp.aborted) {
        conn_close(c); /* abort=: abrupt on purpose */
        return;
    }
    if (c->resp.close_after) {
        conn_set_state(c, CS_LINGER);
        return;
    }
    request_clear(&c->req);
    response_clear(&c->resp);
    conn_set_state(c, CS_READ);
    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
    c->in_len -= c->in_off;
    c->in_off = 0;
    if (!c->peer_eof)
        ev_io_start(srv.loop, &c->rio);
}

static void conn_drive(struct conn *c)
{
    c->budget = WRITE_BUDGET;
    for (;;) {
        switch (c->state) {
        case CS_READ:
            conn_parse(c);
            /* a 100 Continue may be queued while the body is still coming */
            if (c->state == CS_READ && buf_pending(&c->out) > 0)
                conn_flush(c);
            if (c->state == CS_READ) {
                /* all input is parsed: EOF now means no (complete) next request */
                if (c->peer_eof)
                    conn_close(c);
                else
                    ev_io_start(srv.loop, &c->rio);
                return;
            }
            break;
        case CS_SEND:
            response_produce(c); /* no-op when ended, pausing or OUT_HIGH is queued */
            if (!conn_flush(c))
                return;
            if (c->resp.ended) {
                conn_response_done(c);
            } else if (c->resp.wait_ms > 0) {
                conn_set_state(c, CS_PAUSE);
                conn_timer_start(c, c->resp.wait_ms);
                c->resp.wait_ms = 0;
                return;
            }
            break;
        case CS_NOREPLY:
            c->in_off = c->in_len = 0;
            if (c->peer_eof)
                conn_close(c);
            return;
        case CS_LINGER:
            if (!ev_is_active(&c->timer))
                conn_timer_start(c, LINGER_MS); /* bounds the flush and the drain */
            c->in_off = c->in_len = 0;
            if (!conn_flush(c))
                return;
            if (c->peer_eof) {
                conn_close(c);
                return;
            }
            if (!c->shut_wr) {
                shutdown(c->fd, SHUT_WR);
                c->shut_wr = true;
                ev_io_start(srv.loop, &c->rio);
            }
            return;
        case CS_DELAY:
        case CS_PAUSE:
        case CS_CLOSED:
            return;
        }
    }
}

static void conn_free(struct conn *c)
{
    assert(c->state == CS_CLOSED);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    request_clear(&c->req);
    response_clear(&c->resp);
    buf_release(&c->out);
    free(c);
}

/* Read what fits in the input buffer; stop reading while it is full
 * (a pipelining client waits until the current response is written). */
static void conn_read(struct conn *c)
{
    if (c->in_len == sizeof(c->in)) {
        ev_io_stop(srv.loop, &c->rio);
        return;
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
    if (n > 0) {
        c->in_len += (size_t)n;
    } else if (n == 0) {
        c->peer_eof = true;
        ev_io_stop(srv.loop, &c->rio);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        conn_close(c);
    }
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    struct conn *c = w->data;
    conn_read(c);
    conn_drive(c);
    if (c->state == CS_CLOSED)
        conn_free(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    struct conn *c = w->data;
    conn_drive(c);
    if (c->state == CS_CLOSED)
        conn_free(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct conn *c = w->data;
    if (c->state == CS_DELAY) {
        response_queue_head(c);
        conn_set_state(c, CS_SEND);
    } else if (c->state == CS_PAUSE) {
        conn_set_state(c, CS_SEND);
    } else if (c->state == CS_LINGER) {
        conn_close(c);
    }
    conn_drive(c);
    if (c->state == CS_CLOSED)
        conn_free(c);
}

static void conn_new(int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->id = ++srv.next_conn_id;
    c->state = CS_READ;
    llhttp_init(&c->parser, HTTP_REQUEST, parser_settings());
    c->parser.data = c;
    ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
    ev_init(&c->timer, conn_timer_cb);
    c->rio.data = c->wio.data = c->timer.data = c;
    c->next = srv.conns;
    if (srv.conns)
        srv.conns->prev = c;
    srv.conns = c;
    ev_io_start(srv.loop, &c->rio);
}

/* ---- listener, signals, main ------------------------------------------------------ */

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_new(fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK && !srv.quiet)
            perror("tessera-origin: accept");
        return;
    }
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w, (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* Bind and listen on "ADDR:PORT" ("[v6]:PORT" too); returns the fd, -1 on failure. */
static int listen_on(const char *spec, char *host, size_t hostsz)
{
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || (size_t)(colon - spec) >= hostsz) {
        fprintf(stderr, "tessera-origin: -l wants ADDR:PORT, got %s\n", spec);
        return -1;
    }
    const char *h = spec, *he = colon;
    if (*h == '[' && he > h && he[-1] == ']')
        h++, he--;
    snprintf(host, hostsz, "%.*s", (int)(he - h), h);
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "tessera-origin: %s: %s\n", spec, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        fprintf(stderr, "tessera-origin: listen on %s: %s\n", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void usage(FILE *f)
{
    fputs("usage: tessera-origin [-l ADDR:PORT] [--demo] [--delay-ms N] [-q]\n"
          "Per-request query parameters (any path):\n"
          "  status=N          status code (200..599, default 200)\n"
          "  len=N             body of N bytes, byte i = 'a' + i % 26\n"
          "  chunked=1 chunk=N chunked body in chunks of N (default 8192)\n"
          "  trailer=Name:Val  trailer field (with chunked=1)\n"
          "  close=1           close-delimited body, Connection: close\n"
          "  delay=MS          wait before the head (default --delay-ms)\n"
          "  body_delay=MS     wait between head and body\n"
          "  drip=MS           wait between 8k pieces (or chunks)\n"
          "  abort=N           close abruptly after N body bytes\n"
          "  hdr=Name:Val      add a header (repeatable, URL-decoded)\n"
          "  etag=V  lm=DATE   send ETag / Last-Modified and answer 304 to a request\n"
          "                    whose If-None-Match names V or If-Modified-Since is DATE\n"
          "  ctype=TYPE        Content-Type (empty: none)\n"
          "  echo=1            body = request head as received + request body\n"
          "  words=1           with len=N: HTML-like text instead of the a..z pattern\n"
          "  body=TEXT         the body is TEXT (URL-decoded); \"$n\" in it becomes the\n"
          "                    number of requests this path has had\n"
          "  gzip=1            gzip the body (Content-Encoding: gzip, Content-Length of\n"
          "                    the gzip bytes, or chunks of them with chunked=1) when\n"
          "                    the request's Accept-Encoding mentions gzip; else\n"
          "                    identity.  No Vary is added (hdr= can).  len <= 64M\n"
          "  gzip=always       the same, whatever the request accepts\n"
          "  continue=0        ignore Expect: 100-continue\n"
          "  noreply=1         never answer;  closenow=1  close after the head\n"
          "Introspection: /__count[?path=P]  /__reset  /__last?path=P\n"
          "Bodies: /__set?path=P&body=TEXT: later requests for path P without a body=\n"
          "  get TEXT (\"$n\" replaced as for body=); /__reset forgets them\n",
          f);
}

int main(int argc, char **argv)
{
    const char *spec = "127.0.0.1:0";
    long delay = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-l") == 0 || strcmp(a, "--listen") == 0) && i + 1 < argc) {
            spec = argv[++i];
        } else if (strcmp(a, "--demo") == 0) {
            srv.demo = true;
        } else if (strcmp(a, "--delay-ms") == 0 && i + 1 < argc) {
            if (!parse_ms(argv[++i], &delay)) {
                fprintf(stderr, "tessera-origin: bad --delay-ms %s\n", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "-q") == 0) {
            srv.quiet = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    srv.delay_ms = delay >= 0 ? delay : srv.demo ? 300 : 0;
    signal(SIGPIPE, SIG_IGN);
    pattern_init();

    char host[256];
    int lfd = listen_on(spec, host, sizeof(host));
    if (lfd < 0)
        return 1;
    srv.port = bound_port(lfd);
    printf(strchr(host, ':') ? "listening on [%s]:%d\n" : "listening on %s:%d\n", host, srv.port);
    fflush(stdout);

    srv.loop = ev_default_loop(EVFLAG_AUTO);
    ev_io lw;
    ev_signal sterm, sint;
    ev_io_init(&lw, accept_cb, lfd, EV_READ);
    ev_signal_init(&sterm, stop_cb, SIGTERM);
    ev_signal_init(&sint, stop_cb, SIGINT);
    ev_io_start(srv.loop, &lw);
    ev_signal_start(srv.loop, &sterm);
    ev_signal_start(srv.loop, &sint);
    ev_run(srv.loop, 0);

    while (srv.conns) {
        struct conn *c = srv.conns;
        conn_close(c);
        conn_free(c);
    }
    ev_io_stop(srv.loop, &lw);
    close(lfd);
    stats_clear();
    ev_loop_destroy(srv.loop);
    return 0;
}
