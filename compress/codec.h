/*
 * compress/codec.h: the streaming compressor interface ("bytes in, bytes
 * out").  A compressor knows no connection and no HTTP: the caller feeds
 * body bytes and receives compressed bytes through a sink it gave at init.
 *
 * Implementations (STYLE rule 6: each declares its functions through the
 * typedefs below so the compiler checks the signatures):
 *   gzip_ops    compress/gzip.c    zlib deflate, gzip wrapper, levels 1..9
 *   brotli_ops  compress/brotli.c  brotli encoder, levels 0..11
 *   zstd_ops    compress/zstd.c    zstd frame with checksum, levels 1..19,
 *                                  2 MiB window (RFC 9659 allows 8 MiB)
 *
 * Memory is bounded: the library state (deflate ~256 KiB, brotli ~1-4 MiB
 * at the window we use, zstd ~3 MiB at levels 1..3 growing with the level
 * to ~9 MiB at 8, ~50 MiB at 12 and ~84 MiB at 19, from its match tables)
 * plus one COMPRESS_CHUNK output buffer; output is handed to the sink every
 * COMPRESS_CHUNK bytes at most, never accumulated.  None of it depends on
 * the body size.
 *
 * A compressor is used by one thread at a time.  After any call returns
 * false the stream is broken: the only valid call left is free.
 */
#ifndef TESSERA_COMPRESS_CODEC_H
#define TESSERA_COMPRESS_CODEC_H

#include <stdbool.h>
#include <stddef.h>

#include "compress/negotiate.h"

/* Largest piece handed to a sink in one call. */
#define COMPRESS_CHUNK 16384

/* Receives n produced bytes at p (valid only during the call).  Returns
 * false to abort the stream (e.g. the client is gone or out of memory);
 * the compressor call then returns false. */
typedef bool compress_sink_f(void *ctx, const void *p, size_t n);

/* The common head of every implementation's state; implementations embed
 * it first.  Callers treat it as opaque. */
struct compressor {
    const struct compressor_ops *ops;
};

/* Create a stream at `level` (must be within ops->level_min..level_max)
 * writing to sink(ctx, ...).  Returns NULL with a message in err (errlen
 * bytes, may be 0) on a bad level or when the library cannot allocate.
 * The caller owns the result and releases it with ops->free. */
typedef struct compressor *compressor_init_f(int level, compress_sink_f *sink, void *ctx, char *err,
                                             size_t errlen);
/* Compress len bytes at in.  Output may be held back by the encoder until a
 * flush or finish.  Returns false when the sink refused or the library
 * failed. */
typedef bool compressor_write_f(struct compressor *c, const void *in, size_t len);
/* Sync flush: after it returns true, the bytes the sink received decode to
 * exactly all input written so far (a streamed response is not held back).
 * Costs a few bytes of output; a flush with nothing new written since the
 * last one is free and emits nothing. */
typedef bool compressor_flush_f(struct compressor *c);
/* End the stream (trailer included).  Write/flush after finish return
 * false. */
typedef bool compressor_finish_f(struct compressor *c);
/* Release the stream (finished or not) and set *c to NULL; NULL is a no-op. */
typedef void compressor_free_f(struct compressor **c);

struct compressor_ops {
    enum coding coding;
    const char *name; /* Content-Encoding token */
    int level_min, level_max;
    int level_default; /* for streamed responses */
    compressor_init_f *init;
    compressor_write_f *write;
    compressor_flush_f *flush;
    compressor_finish_f *finish;
    compressor_free_f *free;
};

extern const struct compressor_ops gzip_ops;
extern const struct compressor_ops brotli_ops;
extern const struct compressor_ops zstd_ops;

/* The ops of an offered coding, or NULL for CODING_IDENTITY. */
const struct compressor_ops *compressor_ops_for(enum coding c);

#endif
