/*
 * cache/range.h: byte Range requests (RFC 9110 14.1, 14.2) answered from a
 * stored representation, and the multipart/byteranges body (RFC 9110 14.6)
 * that carries more than one range.
 *
 * Pure functions over (pointer, length) slices and numbers: nothing is
 * allocated, inputs need not be NUL-terminated, and bad input is a
 * documented result, never an assertion.  The proxy decides whether a Range
 * applies at all: only for GET (RFC 9110 14.2), after
 * cache_evaluate_preconditions() returned PRECONDITION_PROCEED and, when the
 * request has If-Range, cache_if_range_matches() returned true
 * (cache/conditional.h); otherwise it sends 200 without calling this.
 *
 * Writers follow snprintf semantics: they return the length of the whole
 * text (without the NUL) whatever cap is, write at most cap bytes, and
 * NUL-terminate when cap > 0; call once with cap 0 to size the buffer.
 */
#ifndef TESSERA_CACHE_RANGE_H
#define TESSERA_CACHE_RANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most range-specs a Range may list.  Many small ranges are the
 * amplification attack RFC 9110 14.2 and 17.15 warn about (each part costs a
 * part header and a write); a real client (a PDF reader, a download resumer)
 * asks for a handful.  A Range with more is ignored: 200 with the whole
 * body, as nginx does, rather than a 416 that a legitimate client could not
 * recover from. */
#define CACHE_RANGE_MAX 16

/* One resolved range: bytes start..end of the representation, both
 * inclusive, start <= end < length. */
struct cache_range {
    uint64_t start;
    uint64_t end;
};

/* The answer to a Range request. */
struct cache_ranges {
    int status; /* 200: ignore the Range, send everything;
                 * 206: send r[0..n-1] (one range: a single part with
                 *      Content-Range; more: multipart/byteranges);
                 * 416: nothing satisfiable, send
                 *      Content-Range: bytes * / LENGTH (without the
                 *      space this comment needs before the slash;
                 *      cache_range_unsatisfied()) */
    size_t n;   /* 0 unless status is 206 */
    struct cache_range r[CACHE_RANGE_MAX];
};

/*
 * cache_range_parse: resolve the Range value v/len against a representation
 * of `length` bytes into *out.
 * Syntax (RFC 9110 14.1.1, 14.1.2): range-unit "=" 1#range-spec, where a
 * byte range-spec is first "-" [ last ] or "-" suffix-length, numbers are
 * 1*DIGIT.  Spaces and tabs are allowed around the whole value and around
 * each list element (not around "=" nor inside an element); empty list
 * elements are skipped (RFC 9110 5.6.1).  The unit is case-insensitive.
 * status 200 (the Range is ignored; RFC 9110 14.2 lets a server ignore it):
 *  - the unit is not "bytes";
 *  - the value is not valid: no "=", a spec that is neither form (signs,
 *    spaces, "0x", other-range), no spec at all, or first > last in any
 *    spec (RFC 9110 14.1.1 calls that invalid);
 *  - more than CACHE_RANGE_MAX specs (counted as sent, before coalescing).
 * Otherwise each spec is resolved:
 *  - first-last: [first, min(last, length - 1)]; first-: [first, length - 1];
 *    unsatisfiable when first >= length;
 *  - -N: the last N bytes, the whole representation when N >= length;
 *    unsatisfiable when N is 0 or the representation is empty;
 *  - numbers too large for 64 bits are compared exactly (first > last) and
 *    otherwise saturate, which resolves them correctly: a huge first is
 *    unsatisfiable, a huge last or suffix reaches the end.
 * The satisfiable ranges are then coalesced: any two that overlap or are
 * adjacent become one (RFC 9110 14.2), repeatedly, the merged range taking
 * the place of the earlier one; the order of the request is otherwise kept
 * (RFC 9110 15.3.7.2 asks parts in request order), so the parts never
 * overlap and carry no byte twice.  status 206 with n >= 1 ranges, or 416
 * when none is satisfiable (an empty representation satisfies nothing).
 * NULL v is invalid (200).  Cannot fail.
 */
void cache_range_parse(const char *v, size_t len, uint64_t length, struct cache_ranges *out);

/* cache_range_content_range: the Content-Range value "bytes START-END/LENGTH"
 * of a 206 (RFC 9110 14.4).  snprintf semantics. */
size_t cache_range_content_range(char *out, size_t cap, uint64_t start, uint64_t end,
                                 uint64_t length);

/* cache_range_unsatisfied: the Content-Range value "bytes *" "/LENGTH" (one
 * string, no space) of a 416 (RFC 9110 14.4, 15.5.17).  snprintf semantics. */
size_t cache_range_unsatisfied(char *out, size_t cap, uint64_t length);

/* cache_range_boundary: write a multipart boundary of 32 lower-case hex
 * digits and a NUL into out, derived from seed (the same seed gives the same
 * boundary).  The proxy passes a fresh random value per response: the body
 * must not contain the boundary (RFC 2046 5.1.1), and an origin cannot
 * plant a boundary it cannot predict.  Use it in the response's
 * "Content-Type: multipart/byteranges; boundary=..." as is (hex needs no
 * quoting). */
#define CACHE_RANGE_BOUNDARY_LEN 32
void cache_range_boundary(uint64_t seed, char out[33]);

/*
 * cache_range_part_header: the delimiter and header block that precede the
 * bytes start..end (inclusive) of one part of a multipart/byteranges body:
 *
 *     [CRLF] "--" boundary CRLF
 *     [ "Content-Type: " content_type CRLF ]
 *     "Content-Range: bytes " start "-" end "/" length CRLF
 *     CRLF
 *
 * The form of the example in RFC 9110 14.6: the body starts with
 * "--boundary" (no preamble), so the first part (first == true) has no
 * leading CRLF; every later part starts with the CRLF that RFC 2046 5.1.1
 * makes part of the delimiter, after the previous part's bytes.
 * The Content-Type line repeats the representation's type (RFC 9110 14.6);
 * it is left out when ctype_len is 0 (the representation had none) or when
 * the type holds a CR, LF or NUL (it cannot be written without forging a
 * header line).  boundary is NUL-terminated (cache_range_boundary()).
 * snprintf semantics.
 */
size_t cache_range_part_header(char *out, size_t cap, bool first, const char *boundary,
                               const char *content_type, size_t ctype_len, uint64_t start,
                               uint64_t end, uint64_t length);

/* cache_range_trailer: the close delimiter that ends the body after the last
 * part's bytes: CRLF "--" boundary "--" CRLF.  snprintf semantics. */
size_t cache_range_trailer(char *out, size_t cap, const char *boundary);

/*
 * cache_range_multipart_length: the exact Content-Length of the whole
 * multipart/byteranges body for the ranges in *ranges (206, n >= 1): every
 * part header written by cache_range_part_header() with the same boundary,
 * content type and length (first == true for r[0] only), each part's bytes,
 * and cache_range_trailer().  Returns 0 when ranges->n is 0.
 */
uint64_t cache_range_multipart_length(const struct cache_ranges *ranges, const char *boundary,
                                      const char *content_type, size_t ctype_len, uint64_t length);

#endif
