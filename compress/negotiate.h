/*
 * compress/negotiate.h: choosing a response content coding from the
 * client's Accept-Encoding (RFC 9110 12.5.3) and the codings a route
 * enables.  Pure functions over a (ptr, len) slice: no allocation, no
 * failure, nothing shared.
 *
 * Rules, beyond the RFC text:
 * - Coding names are case-insensitive; "x-gzip" counts as "gzip"
 *   (RFC 9110 8.4.1.3).  "zstd" has no such alias: "x-zstd" was never
 *   registered and is ignored like any unknown coding (deflate, ...).
 * - An element whose syntax is broken (bad token, q out of range or with
 *   more than 3 decimals, a parameter other than q) is ignored alone; the
 *   rest of the header still counts.
 * - Duplicates: the FIRST well-formed element for a coding wins and later
 *   ones are ignored ("gzip;q=0, gzip" means no gzip).  Any rule is a
 *   guess for a contradictory header; the first is what a reader scanning
 *   left to right sees, and it cannot be used to turn a refusal back on.
 * - "*" gives its q to every coding not listed explicitly, identity
 *   included (RFC 9110 12.5.3: "*;q=0" without an "identity" entry
 *   refuses identity).
 */
#ifndef TESSERA_COMPRESS_NEGOTIATE_H
#define TESSERA_COMPRESS_NEGOTIATE_H

#include <stdbool.h>
#include <stddef.h>

/* The codings tessera can produce (compress/codec.h has a compressor for
 * each but identity).  CODING_COUNT is not a coding: it counts them, for
 * tables indexed by coding; it must stay at most 32 for CODING_BIT(). */
enum coding {
    CODING_IDENTITY,
    CODING_GZIP,
    CODING_BR,
    CODING_ZSTD, /* RFC 8878 section 7.2, window capped per RFC 9659 */
    CODING_COUNT,
};

/* Bit of a coding in the `offered` mask of negotiate_coding(). */
#define CODING_BIT(c) (1u << (unsigned)(c))

/*
 * Pick the coding for a response.  accept_encoding is the field value
 * (not NUL-terminated; len bytes) or NULL when the request had no
 * Accept-Encoding (RFC 9110 12.5.3: any coding is then acceptable, but we
 * answer identity: a client that sends nothing is usually a script).  An
 * empty value means "identity only".  offered is a mask of CODING_BIT()s
 * the route enables; CODING_IDENTITY's bit is ignored (identity is always
 * possible).
 *
 * Among offered codings with q > 0, the highest q wins; equal q falls back
 * to the server's preference br > zstd > gzip (issue 7: both newer codings
 * beat gzip's ratio; br first as the one every zstd-capable browser also
 * sends).  Identity competes only when the client gives it a q (explicitly
 * or through "*"), and wins only with a strictly higher q than the best
 * compressed coding.
 *
 * Returns CODING_IDENTITY when nothing compressed is acceptable.  Then
 * *identity_ok (when identity_ok is not NULL) tells whether the client
 * accepts identity; false means "identity;q=0" or "*;q=0" left nothing
 * acceptable.  The caller should still send identity rather than 406, as
 * nginx, Apache and Varnish do (RFC 9110 12.5.3 allows either).
 * *identity_ok is true whenever a compressed coding is returned.
 */
enum coding negotiate_coding(const char *accept_encoding, size_t len, unsigned offered,
                             bool *identity_ok);

/* The Content-Encoding token of a coding: "br", "zstd", "gzip" or "identity".
 * A static string; never NULL ("identity" for an unknown value). */
const char *coding_name(enum coding c);

#endif
