/*
 * compress/inflate.h: a capped gzip decoder for response bodies an origin
 * sent gzip-encoded to a client that does not accept gzip.  Bytes in,
 * bytes out through a compress_sink_f, like the compressors.
 *
 * Zip-bomb defence: the stream fails as soon as its output would exceed
 * max_output bytes, or, once past INFLATE_RATIO_FLOOR bytes of output,
 * output/input exceeds max_ratio.  Output is handed over in pieces of at
 * most COMPRESS_CHUNK bytes, so a failing stream has delivered at most
 * max_output bytes and held at most one chunk: a bomb costs no memory.
 * Request bodies are never inflated (issue 7), only responses.
 *
 * Concatenated gzip members are decoded in sequence (as gzip -d does).
 * One thread at a time per stream.  After a call returns false the stream
 * is broken: only inflater_free is left.
 */
#ifndef TESSERA_COMPRESS_INFLATE_H
#define TESSERA_COMPRESS_INFLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "compress/codec.h"

/* The ratio is not checked below this much output: a small page of
 * repeated markup legitimately compresses far beyond any sane ratio cap,
 * and this little output costs nothing. */
#define INFLATE_RATIO_FLOOR (64 * 1024)

struct inflater;

/* A gzip decoder writing to sink(ctx, ...).  max_output 0 or max_ratio 0
 * means that check is off.  Returns NULL with a message in err (errlen
 * bytes) when out of memory.  Release with inflater_free(). */
struct inflater *inflater_init(size_t max_output, unsigned max_ratio, compress_sink_f *sink,
                               void *ctx, char *err, size_t errlen);

/* Decode len more bytes of the gzip body.  Returns false with a message in
 * err on corrupt data, data after the end that is not another member, a
 * cap exceeded, or a sink that refused. */
bool inflater_write(struct inflater *z, const void *in, size_t len, char *err, size_t errlen);

/* The body is over: returns false with a message in err when the gzip
 * stream is truncated (no complete member, or a member cut short). */
bool inflater_finish(struct inflater *z, char *err, size_t errlen);

/* Bytes produced so far. */
size_t inflater_total_out(const struct inflater *z);

/* Release the decoder and set *z to NULL; NULL is a no-op. */
void inflater_free(struct inflater **z);

#endif
