/*
 * compress/brotli.c: the brotli compressor (compress/codec.h) over
 * BrotliEncoderCompressStream with BROTLI_OPERATION_PROCESS / FLUSH /
 * FINISH.
 *
 * Each stream owns its encoder and one COMPRESS_CHUNK output buffer; no
 * sharing, no locking.  The window is capped at BROTLI_STREAM_LGWIN so a
 * stream's memory stays bounded (a few MiB at most) whatever the body.
 */
#include <assert.h>
#include <brotli/encode.h>
#include <stdio.h>
#include <stdlib.h>

#include "compress/codec.h"

/* 2^20 = 1 MiB window: the encoder's default (22, 4 MiB) multiplies memory
 * per concurrent stream for a gain that only shows on multi-MiB bodies. */
#define BROTLI_STREAM_LGWIN 20

struct brotli_stream {
    struct compressor base; /* first: the interface's view */
    BrotliEncoderState *enc;
    compress_sink_f *sink;
    void *ctx;
    bool dirty; /* input written since the last flush */
    bool broken;
    unsigned char out[COMPRESS_CHUNK];
};

static compressor_init_f brotli_init;
static compressor_write_f brotli_write;
static compressor_flush_f brotli_flush;
static compressor_finish_f brotli_finish;
static compressor_free_f brotli_free;

const struct compressor_ops brotli_ops = {
    .coding = CODING_BR,
    .name = "br",
    .level_min = BROTLI_MIN_QUALITY,
    .level_max = BROTLI_MAX_QUALITY,
    .level_default = 4,
    .init = brotli_init,
    .write = brotli_write,
    .flush = brotli_flush,
    .finish = brotli_finish,
    .free = brotli_free,
};

static struct brotli_stream *to_brotli(struct compressor *c)
{
    assert(c != NULL && c->ops == &brotli_ops);
    return (struct brotli_stream *)c;
}

static struct compressor *brotli_init(int level, compress_sink_f *sink, void *ctx, char *err,
                                      size_t errlen)
{
    assert(sink != NULL);
    struct brotli_stream *b = NULL;
    if (level < brotli_ops.level_min || level > brotli_ops.level_max) {
        snprintf(err, errlen, "brotli level %d out of range %d..%d", level, brotli_ops.level_min,
                 brotli_ops.level_max);
        goto fail;
    }
    b = calloc(1, sizeof *b);
    if (b == NULL || (b->enc = BrotliEncoderCreateInstance(NULL, NULL, NULL)) == NULL) {
        snprintf(err, errlen, "brotli: out of memory");
        goto fail;
    }
    if (!BrotliEncoderSetParameter(b->enc, BROTLI_PARAM_QUALITY, (uint32_t)level) ||
        !BrotliEncoderSetParameter(b->enc, BROTLI_PARAM_LGWIN, BROTLI_STREAM_LGWIN)) {
        snprintf(err, errlen, "brotli: cannot set parameters");
        goto fail;
    }
    b->base.ops = &brotli_ops;
    b->sink = sink;
    b->ctx = ctx;
    return &b->base;
fail:
    if (b != NULL && b->enc != NULL)
        BrotliEncoderDestroyInstance(b->enc);
    free(b);
    return NULL;
}

/* Drive the encoder with `op` until the input is consumed and, for FLUSH
 * and FINISH, until the encoder holds no more output for it. */
static bool run(struct brotli_stream *b, BrotliEncoderOperation op, const uint8_t *in, size_t len)
{
    if (b->broken || BrotliEncoderIsFinished(b->enc))
        return false;
    size_t avail_in = len;
    const uint8_t *next_in = in;
    for (;;) {
        size_t avail_out = sizeof b->out;
        uint8_t *next_out = b->out;
        if (!BrotliEncoderCompressStream(b->enc, op, &avail_in, &next_in, &avail_out, &next_out,
                                         NULL))
            goto fail;
        size_t n = sizeof b->out - avail_out;
        if (n > 0 && !b->sink(b->ctx, b->out, n))
            goto fail;
        if (BrotliEncoderHasMoreOutput(b->enc))
            continue;
        if (op == BROTLI_OPERATION_FINISH ? BrotliEncoderIsFinished(b->enc) : avail_in == 0)
            return true;
    }
fail:
    b->broken = true;
    return false;
}

static bool brotli_write(struct compressor *c, const void *in, size_t len)
{
    struct brotli_stream *b = to_brotli(c);
    if (len == 0)
        return !b->broken && !BrotliEncoderIsFinished(b->enc);
    b->dirty = true;
    return run(b, BROTLI_OPERATION_PROCESS, in, len);
}

static bool brotli_flush(struct compressor *c)
{
    struct brotli_stream *b = to_brotli(c);
    if (b->broken || BrotliEncoderIsFinished(b->enc))
        return false;
    if (!b->dirty)
        return true;
    if (!run(b, BROTLI_OPERATION_FLUSH, NULL, 0))
        return false;
    b->dirty = false;
    return true;
}

static bool brotli_finish(struct compressor *c)
{
    return run(to_brotli(c), BROTLI_OPERATION_FINISH, NULL, 0);
}

static void brotli_free(struct compressor **c)
{
    if (c == NULL || *c == NULL)
        return;
    struct brotli_stream *b = to_brotli(*c);
    BrotliEncoderDestroyInstance(b->enc);
    free(b);
    *c = NULL;
}
