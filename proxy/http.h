/*
 * proxy/http.h: parsed HTTP/1.1 message heads and the pure rules over them.
 *
 * A head is a list of (offset, length) spans into the buffer the bytes were
 * read into: nothing is copied or NUL-terminated (STYLE 11).  `base` below is
 * always that buffer's data pointer; spans stay valid as long as the bytes
 * stay where they are.  Everything here is a pure function of its arguments:
 * no sockets, no allocation except http_head_add_field()'s array.
 */
#ifndef TESSERA_HTTP_H
#define TESSERA_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct http_span {
    uint32_t off;
    uint32_t len;
};

struct http_field {
    struct http_span name;
    struct http_span value; /* without leading or trailing whitespace */
};

struct http_head {
    struct http_span method; /* requests */
    struct http_span target; /* requests: the request-target as sent */
    struct http_span reason; /* responses */
    int status;              /* responses */
    uint8_t major, minor;    /* HTTP version */
    struct http_field *fields;
    unsigned nfields;
    unsigned cap;
};

/* http_head_reset: forget the fields (keeping the array). */
void http_head_reset(struct http_head *h);

/* http_head_free: free the field array. */
void http_head_free(struct http_head *h);

/* http_head_add_field: append an empty field and return it, or NULL when
 * memory runs out. */
struct http_field *http_head_add_field(struct http_head *h);

/* http_head_parse_block: add the fields of a header block of our own
 * ("Name: value\r\n" lines, as a stored object keeps them: cache/object.h)
 * to h, spans pointing into p.  Lines without a colon are skipped; stops
 * quietly when h cannot grow. */
void http_head_parse_block(const char *p, size_t n, struct http_head *h);

/* http_span_is: the span equals the literal, ASCII case-insensitively. */
bool http_span_is(const char *base, struct http_span s, const char *lit);

/* http_span_trim: drop leading and trailing spaces and tabs. */
struct http_span http_span_trim(const char *base, struct http_span s);

/* http_head_find: the first field called name (case-insensitive), or NULL. */
const struct http_field *http_head_find(const char *base, const struct http_head *h,
                                        const char *name);

/* http_head_count: how many fields are called name. */
unsigned http_head_count(const char *base, const struct http_head *h, const char *name);

/* http_list_has_token: a comma-separated list value (RFC 9110 5.6.1)
 * contains token, case-insensitively.  Empty elements are skipped. */
bool http_list_has_token(const char *v, size_t len, const char *token, size_t toklen);

/* http_block_next: walk a header block of "Name: value\r\n" lines (a
 * stored object's head): from *p (up to end), return the next field's name
 * and its value without surrounding whitespace, and move *p past it.
 * Lines without a colon are skipped.  False at the end. */
bool http_block_next(const char **p, const char *end, const char **name, size_t *name_len,
                     const char **value, size_t *value_len);

/* http_is_token: p/n is a non-empty RFC 9110 token (a valid field name). */
bool http_is_token(const char *p, size_t n);

/* http_is_hop_by_hop: one of the fields RFC 9110 7.6.1 says a proxy must
 * not forward (Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Transfer-Encoding, Upgrade). */
bool http_is_hop_by_hop(const char *name, size_t len);

/* http_field_is_connection_listed: name is one of the options of any
 * Connection field of h, so it is hop-by-hop for this message. */
bool http_field_is_connection_listed(const char *base, const struct http_head *h, const char *name,
                                     size_t len);

/* http_field_forwardable: the field may be copied to the next hop: not
 * hop-by-hop, not named by Connection, and not one of the framing fields
 * (Content-Length) that the proxy writes itself. */
bool http_field_forwardable(const char *base, const struct http_head *h,
                            const struct http_field *f);

/* Why a request head was refused; status 0 means it is acceptable. */
struct http_verdict {
    int status;
    const char *reason; /* short text for the error body and the log */
};

/* http_check_line_endings: RFC 9112 2.2 and 5.2: every line of a request
 * head ends in CRLF (no bare LF, no bare CR) and no header line starts with
 * whitespace (obs-fold).  p/n is the raw head, request line to blank line. */
struct http_verdict http_check_line_endings(const char *p, size_t n);

/* http_check_request: the framing and Host rules llhttp leaves to us:
 * exactly one Host for HTTP/1.1 (RFC 9112 3.2), Transfer-Encoding only in
 * HTTP/1.1 and only "chunked" (RFC 9112 6.1: anything else is 501), no
 * whitespace before a field's colon (RFC 9112 5.1), no
 * Content-Length beside Transfer-Encoding, no CONNECT. */
struct http_verdict http_check_request(const char *base, const struct http_head *h);

/* http_reason_phrase: the RFC 9110 reason phrase of a status, or "Unknown". */
const char *http_reason_phrase(int status);

/* http_status_has_body: whether a response with this status to a request
 * with this method can carry content (RFC 9110 6.4.1). */
bool http_status_has_body(int status, bool head_request);

/* http_date_format: IMF-fixdate (RFC 9110 5.6.7) of t into out (30 bytes),
 * NUL-terminated; returns 29, the length. */
size_t http_date_format(time_t t, char out[30]);

#endif
