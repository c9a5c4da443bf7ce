/*
 * compress/zstd.c: the zstd compressor (compress/codec.h) over
 * ZSTD_compressStream2 with ZSTD_e_continue / ZSTD_e_flush / ZSTD_e_end.
 * One zstd frame per stream, with the content checksum (RFC 8878 3.1.1).
 *
 * Each stream owns its ZSTD_CStream and one COMPRESS_CHUNK output buffer;
 * no sharing, no locking.  The window is fixed at ZSTD_STREAM_WINDOWLOG so
 * a stream's memory depends on the level alone, never on the body, and so
 * every client can decode it (RFC 9659).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <zstd.h>

#include "compress/codec.h"

/* 2^21 = 2 MiB, the window zstd itself picks at our streaming default
 * (level 3).  RFC 9659 forbids more than 8 MiB (2^23) for the "zstd"
 * content coding, and browsers refuse larger windows.  We stay below that
 * cap on purpose: the CStream buffers a whole window of input, so 2^23
 * would take a level-3 stream from ~3.5 to ~9.7 MiB, per concurrent
 * response, for a gain that only shows on multi-MiB bodies (the same
 * trade as BROTLI_STREAM_LGWIN). */
#define ZSTD_STREAM_WINDOWLOG 21
_Static_assert(ZSTD_STREAM_WINDOWLOG <= 23, "RFC 9659: zstd content coding window <= 8 MiB");

struct zstd_stream {
    struct compressor base; /* first: the interface's view */
    ZSTD_CStream *zs;
    compress_sink_f *sink;
    void *ctx;
    bool finished;
    bool broken;
    unsigned char out[COMPRESS_CHUNK];
};

static compressor_init_f zstd_init;
static compressor_write_f zstd_write;
static compressor_flush_f zstd_flush;
static compressor_finish_f zstd_finish;
static compressor_free_f zstd_free;

const struct compressor_ops zstd_ops = {
    .coding = CODING_ZSTD,
    .name = "zstd",
    .level_min = 1,
    .level_max = 19, /* 20..22 ("ultra") need windows beyond RFC 9659's cap */
    .level_default = 3,
    .init = zstd_init,
    .write = zstd_write,
    .flush = zstd_flush,
    .finish = zstd_finish,
    .free = zstd_free,
};

static struct zstd_stream *to_zstd(struct compressor *c)
{
    assert(c != NULL && c->ops == &zstd_ops);
    return (struct zstd_stream *)c;
}

static bool set_param(ZSTD_CStream *zs, ZSTD_cParameter p, int v, char *err, size_t errlen)
{
    size_t rc = ZSTD_CCtx_setParameter(zs, p, v);
    if (ZSTD_isError(rc)) {
        snprintf(err, errlen, "zstd: cannot set parameter %d to %d: %s", (int)p, v,
                 ZSTD_getErrorName(rc));
        return false;
    }
    return true;
}

static struct compressor *zstd_init(int level, compress_sink_f *sink, void *ctx, char *err,
                                    size_t errlen)
{
    assert(sink != NULL);
    struct zstd_stream *z = NULL;
    if (level < zstd_ops.level_min || level > zstd_ops.level_max) {
        snprintf(err, errlen, "zstd level %d out of range %d..%d", level, zstd_ops.level_min,
                 zstd_ops.level_max);
        goto fail;
    }
    z = calloc(1, sizeof *z);
    if (z == NULL || (z->zs = ZSTD_createCStream()) == NULL) {
        snprintf(err, errlen, "zstd: out of memory");
        goto fail;
    }
    if (!set_param(z->zs, ZSTD_c_compressionLevel, level, err, errlen) ||
        !set_param(z->zs, ZSTD_c_windowLog, ZSTD_STREAM_WINDOWLOG, err, errlen) ||
        !set_param(z->zs, ZSTD_c_checksumFlag, 1, err, errlen))
        goto fail;
    z->base.ops = &zstd_ops;
    z->sink = sink;
    z->ctx = ctx;
    return &z->base;
fail:
    if (z != NULL)
        ZSTD_freeCStream(z->zs); /* NULL is a no-op */
    free(z);
    return NULL;
}

/* Drive the encoder over in[0, len) with `mode` until it has no more to
 * give for it: for ZSTD_e_continue all input consumed and the output
 * buffer not filled, for ZSTD_e_flush and ZSTD_e_end nothing left to
 * flush (zstd returns 0). */
static bool run(struct zstd_stream *z, ZSTD_EndDirective mode, const void *in, size_t len)
{
    if (z->broken || z->finished)
        return false;
    ZSTD_inBuffer ib = {in, len, 0};
    for (;;) {
        ZSTD_outBuffer ob = {z->out, sizeof z->out, 0};
        size_t left = ZSTD_compressStream2(z->zs, &ob, &ib, mode);
        if (ZSTD_isError(left))
            goto fail;
        if (ob.pos > 0 && !z->sink(z->ctx, z->out, ob.pos))
            goto fail;
        if (mode == ZSTD_e_continue ? ib.pos == ib.size && ob.pos < ob.size : left == 0)
            break;
    }
    if (mode == ZSTD_e_end)
        z->finished = true;
    return true;
fail:
    z->broken = true;
    return false;
}

static bool zstd_write(struct compressor *c, const void *in, size_t len)
{
    struct zstd_stream *z = to_zstd(c);
    if (len == 0)
        return !z->broken && !z->finished;
    return run(z, ZSTD_e_continue, in, len);
}

static bool zstd_flush(struct compressor *c)
{
    /* Unlike deflate's sync marker, a zstd flush with nothing pending
     * emits nothing (not even the frame header before the first write), so
     * no "dirty" flag is needed to keep repeated flushes free. */
    return run(to_zstd(c), ZSTD_e_flush, NULL, 0);
}

static bool zstd_finish(struct compressor *c)
{
    return run(to_zstd(c), ZSTD_e_end, NULL, 0);
}

static void zstd_free(struct compressor **c)
{
    if (c == NULL || *c == NULL)
        return;
    struct zstd_stream *z = to_zstd(*c);
    ZSTD_freeCStream(z->zs);
    free(z);
    *c = NULL;
}
