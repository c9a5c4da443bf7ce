/*
 * decode: undo a response's content coding (gzip, br, zstd, identity), so
 * an integration test can compare what a client got with the origin's
 * identity body byte for byte.
 *
 *   struct decode_buf d = {0};
 *   assert_true(decode_body("br", r.body, r.body_len, &d));
 *   ... d.data, d.len ...
 *   decode_buf_free(&d);
 *
 * decode_body wants the whole coded body: a truncated stream, bytes after
 * its end or corrupt data fail.  decode_prefix decodes what a body received
 * so far holds (a compressor flushed after each piece makes every piece
 * decodable) and only fails on corrupt data.  Stateless; thread-safe.
 */
#ifndef TESTS_SUPPORT_DECODE_H
#define TESTS_SUPPORT_DECODE_H

#include <stdbool.h>
#include <stddef.h>

/* A growable byte buffer; data is NUL-terminated (not counted in len)
 * once anything was decoded into it.  Zero-initialise before first use. */
struct decode_buf {
    char *data;
    size_t len, cap;
};

/* Decode the whole body in[0..len) coded with coding ("gzip" or "x-gzip",
 * "br", "zstd", "identity"; NULL or "" mean identity; case-insensitive)
 * into out, whose previous content is dropped.  False for an unknown
 * coding, corrupt or truncated data, trailing bytes or no memory. */
bool decode_body(const char *coding, const void *in, size_t len, struct decode_buf *out);

/* The same for the first len bytes of a coded body: what they decode to
 * so far.  A stream that is not finished is fine; corrupt data is not. */
bool decode_prefix(const char *coding, const void *in, size_t len, struct decode_buf *out);

/* Free what out holds and zero it.  Safe on a zeroed struct. */
void decode_buf_free(struct decode_buf *out);

#endif
