/*
 * proxy/http.c: pure HTTP/1.1 head rules (see http.h): token lists,
 * hop-by-hop fields, request framing checks, reason phrases, dates.
 * No state, no locking; safe from any thread.
 */
#include "proxy/http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void http_head_reset(struct http_head *h)
{
    struct http_field *fields = h->fields;
    unsigned cap = h->cap;
    memset(h, 0, sizeof *h);
    h->fields = fields;
    h->cap = cap;
}

void http_head_free(struct http_head *h)
{
    free(h->fields);
    memset(h, 0, sizeof *h);
}

struct http_field *http_head_add_field(struct http_head *h)
{
    if (h->nfields == h->cap) {
        unsigned cap = h->cap ? h->cap * 2 : 16;
        struct http_field *f = realloc(h->fields, cap * sizeof *f);
        if (!f)
            return NULL;
        h->fields = f;
        h->cap = cap;
    }
    struct http_field *f = &h->fields[h->nfields++];
    memset(f, 0, sizeof *f);
    return f;
}

bool http_span_is(const char *base, struct http_span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(base + s.off, lit, n) == 0;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

struct http_span http_span_trim(const char *base, struct http_span s)
{
    while (s.len > 0 && is_ows(base[s.off])) {
        s.off++;
        s.len--;
    }
    while (s.len > 0 && is_ows(base[s.off + s.len - 1]))
        s.len--;
    return s;
}

const struct http_field *http_head_find(const char *base, const struct http_head *h,
                                        const char *name)
{
    for (unsigned i = 0; i < h->nfields; i++)
        if (http_span_is(base, h->fields[i].name, name))
            return &h->fields[i];
    return NULL;
}

unsigned http_head_count(const char *base, const struct http_head *h, const char *name)
{
    unsigned n = 0;
    for (unsigned i = 0; i < h->nfields; i++)
        n += http_span_is(base, h->fields[i].name, name);
    return n;
}

bool http_list_has_token(const char *v, size_t len, const char *token, size_t toklen)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && is_ows(v[end - 1]))
            end--;
        if (end - start == toklen && strncasecmp(v + start, token, toklen) == 0)
            return true;
    }
    return false;
}

bool http_block_next(const char **p, const char *end, const char **name, size_t *name_len,
                     const char **value, size_t *value_len)
{
    while (*p < end) {
        const char *line = *p;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        const char *next = eol ? eol + 1 : end;
        *p = next;
        const char *colon = memchr(line, ':', (size_t)(next - line));
        if (!colon)
            continue;
        const char *v = colon + 1;
        const char *vend = next;
        while (v < vend && is_ows(*v))
            v++;
        while (vend > v && (vend[-1] == '\r' || vend[-1] == '\n' || is_ows(vend[-1])))
            vend--;
        *name = line;
        *name_len = (size_t)(colon - line);
        *value = v;
        *value_len = (size_t)(vend - v);
        return true;
    }
    return false;
}

static const char *const hop_by_hop[] = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
};

bool http_is_hop_by_hop(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof hop_by_hop / sizeof hop_by_hop[0]; i++)
        if (strlen(hop_by_hop[i]) == len && strncasecmp(name, hop_by_hop[i], len) == 0)
            return true;
    return false;
}

bool http_field_is_connection_listed(const char *base, const struct http_head *h, const char *name,
                                     size_t len)
{
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        if (http_span_is(base, f->name, "connection") &&
            http_list_has_token(base + f->value.off, f->value.len, name, len))
            return true;
    }
    return false;
}

bool http_field_forwardable(const char *base, const struct http_head *h, const struct http_field *f)
{
    const char *name = base + f->name.off;
    if (http_is_hop_by_hop(name, f->name.len))
        return false;
    if (http_span_is(base, f->name, "content-length"))
        return false;
    return !http_field_is_connection_listed(base, h, name, f->name.len);
}

struct http_verdict http_check_line_endings(const char *p, size_t n)
{
    size_t line_start = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
            return (struct http_verdict){400, "bare CR in request head"};
        if (p[i] != '\n')
            continue;
        if (i == 0 || p[i - 1] != '\r')
            return (struct http_verdict){400, "bare LF in request head"};
        if (i - line_start == 1)
            break; /* the empty line: the head ends here */
        line_start = i + 1;
        if (i + 1 < n && is_ows(p[i + 1]))
            return (struct http_verdict){400, "obsolete line folding in request head"};
    }
    return (struct http_verdict){0, NULL};
}

static bool transfer_coding_is_chunked(const char *base, const struct http_head *h)
{
    unsigned seen = 0;
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        if (!http_span_is(base, f->name, "transfer-encoding"))
            continue;
        if (++seen > 1 || !http_span_is(base, f->value, "chunked"))
            return false;
    }
    return true;
}

/* RFC 9110 5.6.2 tchar */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool http_is_token(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)p[i]))
            return false;
    return true;
}

struct http_verdict http_check_request(const char *base, const struct http_head *h)
{
    bool http11 = h->major == 1 && h->minor == 1;
    /* RFC 9112 5.1: whitespace between a field name and the colon is a 400
     * (llhttp leaves it in the name). */
    for (unsigned i = 0; i < h->nfields; i++)
        if (!http_is_token(base + h->fields[i].name.off, h->fields[i].name.len))
            return (struct http_verdict){400, "invalid header field name"};
    unsigned hosts = http_head_count(base, h, "host");
    if (http_span_is(base, h->method, "CONNECT"))
        return (struct http_verdict){405, "CONNECT is not supported"};
    if (hosts > 1)
        return (struct http_verdict){400, "more than one Host header"};
    if (hosts == 0 && http11)
        return (struct http_verdict){400, "missing Host header"};
    if (hosts == 1 && http_head_find(base, h, "host")->value.len == 0 && http11)
        return (struct http_verdict){400, "empty Host header"};
    unsigned te = http_head_count(base, h, "transfer-encoding");
    if (te == 0)
        return (struct http_verdict){0, NULL};
    if (!http11)
        return (struct http_verdict){400, "Transfer-Encoding in an HTTP/1.0 request"};
    if (http_head_count(base, h, "content-length") > 0)
        return (struct http_verdict){400, "both Content-Length and Transfer-Encoding"};
    if (!transfer_coding_is_chunked(base, h))
        return (struct http_verdict){501, "transfer coding not implemented"};
    return (struct http_verdict){0, NULL};
}

const char *http_reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 103:
        return "Early Hints";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 410:
        return "Gone";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

bool http_status_has_body(int status, bool head_request)
{
    if (head_request)
        return false;
    return !(status < 200 || status == 204 || status == 304);
}

size_t http_date_format(time_t t, char out[30])
{
    static const char days[] = "SunMonTueWedThuFriSat";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm;
    gmtime_r(&t, &tm);
    /* Written by hand: strftime's %a/%b follow the locale, the RFC does not. */
    char *p = out;
    memcpy(p, days + 3 * tm.tm_wday, 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    *p++ = (char)('0' + tm.tm_mday / 10);
    *p++ = (char)('0' + tm.tm_mday % 10);
    *p++ = ' ';
    memcpy(p, months + 3 * tm.tm_mon, 3);
    p += 3;
    *p++ = ' ';
    int y = tm.tm_year + 1900;
    *p++ = (char)('0' + (y / 1000) % 10);
    *p++ = (char)('0' + (y / 100) % 10);
    *p++ = (char)('0' + (y / 10) % 10);
    *p++ = (char)('0' + y % 10);
    *p++ = ' ';
    *p++ = (char)('0' + tm.tm_hour / 10);
    *p++ = (char)('0' + tm.tm_hour % 10);
    *p++ = ':';
    *p++ = (char)('0' + tm.tm_min / 10);
    *p++ = (char)('0' + tm.tm_min % 10);
    *p++ = ':';
    *p++ = (char)('0' + tm.tm_sec / 10);
    *p++ = (char)('0' + tm.tm_sec % 10);
    memcpy(p, " GMT", 5);
    return 29;
}

void http_head_parse_block(const char *p, size_t n, struct http_head *h)
{
    size_t at = 0;
    while (at < n) {
        const char *eol = memchr(p + at, '\n', n - at);
        size_t end = eol ? (size_t)(eol - p) : n;
        const char *colon = memchr(p + at, ':', end - at);
        if (colon) {
            struct http_field *f = http_head_add_field(h);
            if (!f)
                return;
            f->name = (struct http_span){(uint32_t)at, (uint32_t)(colon - (p + at))};
            size_t v = (size_t)(colon - p) + 1;
            size_t vend = end > 0 && p[end - 1] == '\r' ? end - 1 : end;
            f->value = http_span_trim(p, (struct http_span){(uint32_t)v, (uint32_t)(vend - v)});
        }
        at = end + 1;
    }
}
