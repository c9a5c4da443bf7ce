/*
 * client: a raw HTTP/1.1 client for integration tests.  Tests write the
 * exact bytes they want on the wire (client_send, client_sendf) and read
 * back parsed responses (client_read_response), raw bytes (client_read_raw)
 * or the connection's end (client_expect_closed).
 *
 * Responses are parsed with llhttp in its strict response mode, so whatever
 * tessera sends must be valid HTTP/1.1 for a test to pass: bad framing shows
 * up as CLIENT_BAD.  Bytes received after a response stay in the client for
 * the next read, so pipelined responses are read one by one.
 *
 * Timeouts are idle timeouts: a read fails with CLIENT_TIMEOUT when no byte
 * arrives for timeout_ms, however long the whole response takes, so a slow
 * 1 GB body does not need a huge timeout.  Only 127.0.0.1 is ever used.
 * Not thread-safe; one client per thread.
 */
#ifndef TESTS_SUPPORT_CLIENT_H
#define TESTS_SUPPORT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A generous default for tests (sanitizer builds are slow). */
#define CLIENT_TIMEOUT_MS 10000

/* Results of the read functions. */
enum client_rc {
    CLIENT_OK = 0,
    CLIENT_TIMEOUT = -1, /* nothing arrived for timeout_ms */
    CLIENT_EOF = -2,     /* the peer closed before the response was complete */
    CLIENT_BAD = -3,     /* the bytes are not a valid HTTP/1.1 response */
    CLIENT_ERROR = -4,   /* socket error (e.g. connection reset) */
    CLIENT_STOPPED = -5, /* the body callback asked to stop */
};

/* One connection.  Fields are read-only for tests. */
struct client {
    int fd;
    int port;
    bool eof;  /* the peer closed its side (a read returned 0) */
    char *buf; /* received bytes not consumed yet are [off, len) */
    size_t off, len, cap;
};

struct http_header {
    char *name;  /* as received */
    char *value; /* without surrounding whitespace */
};

/* A parsed response.  Every string and array in it is owned by the struct:
 * http_response_clear() frees them.  The read functions overwrite the whole
 * struct, so clear a response before reading another into it. */
struct http_response {
    int status;
    char *reason;
    int http_major, http_minor;
    struct http_header *headers;
    size_t nheaders;
    struct http_header *trailers; /* chunked trailer fields */
    size_t ntrailers;
    char *body;      /* decoded (de-chunked), NUL-terminated; NULL if none or streamed */
    size_t body_len; /* bytes of decoded body received, streamed or not */
    bool chunked;    /* the body was chunked */
    bool complete;   /* the message framing completed */
    bool closed;     /* the connection ends after it: close-delimited body, "Connection:
                      * close", HTTP/1.0 without keep-alive, or EOF already seen */
    int interim[8];  /* statuses of 1xx responses skipped before this one */
    size_t ninterim;
};

/* Flags for client_read_response. */
enum {
    CLIENT_HEAD = 1,    /* the request was HEAD: the response has no body */
    CLIENT_INTERIM = 2, /* return a 1xx response as it comes instead of skipping it */
};

/* Connect to 127.0.0.1:port.  NULL (reason on stderr) on failure.  The
 * caller releases the client with client_free(). */
struct client *client_connect(int port, int timeout_ms);

/* Close the socket, free c and set *cp to NULL.  Accepts NULL / *cp NULL. */
void client_free(struct client **cp);

/* Send all len bytes (waiting for the socket up to CLIENT_TIMEOUT_MS per
 * stall).  0, or -1 when the peer is gone or the send timed out. */
int client_send(struct client *c, const void *data, size_t len);

/* printf-style client_send. */
int client_sendf(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Send "METHOD TARGET HTTP/1.1", the given header lines ("Name: value",
 * NULL-terminated list, no CRLF) and the empty line.  Adds
 * "Host: 127.0.0.1:PORT" unless a Host line is given.  A body, if any, is
 * the caller's to send next (with the header lines announcing it). */
int client_send_request(struct client *c, const char *method, const char *target, ...)
    __attribute__((sentinel));

/* The same with the header lines in a NULL-terminated array (may be NULL). */
int client_send_request_v(struct client *c, const char *method, const char *target,
                          const char *const headers[]);

/* Half-close: no more bytes from us; the server still answers.  0 or -1. */
int client_shutdown_write(struct client *c);

/* Read one response into *resp (overwritten).  flags: CLIENT_HEAD when it
 * answers a HEAD request, CLIENT_INTERIM to get 1xx responses one by one
 * (otherwise they are skipped and listed in resp->interim).  Returns
 * CLIENT_OK with resp->complete, or an error code; on CLIENT_EOF the part
 * received is in resp (status, headers, body so far) with complete false.
 * Clear resp in every case. */
int client_read_response(struct client *c, unsigned flags, struct http_response *resp,
                         int timeout_ms);

/* Receives body pieces as they are decoded.  Return 0 to go on, anything
 * else to stop the read with CLIENT_STOPPED. */
typedef int (*client_body_cb)(void *ctx, const char *data, size_t len);

/* client_read_response that hands the body to cb instead of storing it
 * (resp->body stays NULL; resp->body_len counts), for bodies too large to
 * keep, like 1 GB streaming tests.  cb may be NULL to discard the body. */
int client_read_response_cb(struct client *c, unsigned flags, struct http_response *resp,
                            int timeout_ms, client_body_cb cb, void *ctx);

/* Up to size raw bytes: leftover bytes first, else what one recv returns.
 * Returns the count, 0 at EOF, or CLIENT_TIMEOUT / CLIENT_ERROR. */
ssize_t client_read_raw(struct client *c, void *buf, size_t size, int timeout_ms);

/* True when the peer closes the connection within timeout_ms (a reset
 * counts as closed).  Bytes that arrive meanwhile are kept for later reads. */
bool client_expect_closed(struct client *c, int timeout_ms);

/* Case-insensitive lookups.  The first value (owned by resp) or NULL. */
const char *http_response_header(const struct http_response *resp, const char *name);
const char *http_response_trailer(const struct http_response *resp, const char *name);

/* How many header fields named name the response has. */
size_t http_response_header_count(const struct http_response *resp, const char *name);

/* True when the body is exactly the NUL-terminated string s. */
bool http_response_body_is(const struct http_response *resp, const char *s);

/* Free everything resp owns and zero it.  Safe on a zeroed struct. */
void http_response_clear(struct http_response *resp);

/* http_exchange: METHOD TARGET on a fresh connection, closed afterwards,
 * with the NULL-terminated header lines (at most 64) and an optional body
 * of body_len bytes (its Content-Length line added); the response is read
 * into resp (cleared first: it must be zeroed or hold a response) within
 * timeout_ms.  Returns as client_read_response; CLIENT_ERROR when it could
 * not connect or send. */
int http_exchange(int port, const char *method, const char *target, const char *const headers[],
                  const void *body, size_t body_len, struct http_response *resp, int timeout_ms);

/* One request on a fresh connection, which is closed afterwards: GET (or
 * METHOD) TARGET with the NULL-terminated header lines, response read with
 * CLIENT_TIMEOUT_MS.  Returns as client_read_response; clear resp after. */
int http_get(int port, const char *target, struct http_response *resp, ...)
    __attribute__((sentinel));
int http_request(int port, const char *method, const char *target, struct http_response *resp, ...)
    __attribute__((sentinel));

#endif
