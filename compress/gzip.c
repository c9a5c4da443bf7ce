/*
 * compress/gzip.c: the gzip compressor (compress/codec.h) over zlib's
 * deflate with the gzip wrapper (windowBits 16 + 15).
 *
 * Each stream owns its z_stream and one COMPRESS_CHUNK output buffer; no
 * sharing, no locking.  Output goes to the sink every time the buffer
 * fills, so memory stays bounded whatever the body size.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

#include "compress/codec.h"

struct gzip_stream {
    struct compressor base; /* first: the interface's view */
    z_stream zs;
    compress_sink_f *sink;
    void *ctx;
    bool dirty; /* input written since the last flush */
    bool finished;
    bool broken;
    unsigned char out[COMPRESS_CHUNK];
};

static compressor_init_f gzip_init;
static compressor_write_f gzip_write;
static compressor_flush_f gzip_flush;
static compressor_finish_f gzip_finish;
static compressor_free_f gzip_free;

const struct compressor_ops gzip_ops = {
    .coding = CODING_GZIP,
    .name = "gzip",
    .level_min = 1,
    .level_max = 9,
    .level_default = 6,
    .init = gzip_init,
    .write = gzip_write,
    .flush = gzip_flush,
    .finish = gzip_finish,
    .free = gzip_free,
};

static struct gzip_stream *to_gzip(struct compressor *c)
{
    assert(c != NULL && c->ops == &gzip_ops);
    return (struct gzip_stream *)c;
}

static struct compressor *gzip_init(int level, compress_sink_f *sink, void *ctx, char *err,
                                    size_t errlen)
{
    assert(sink != NULL);
    struct gzip_stream *g = NULL;
    if (level < gzip_ops.level_min || level > gzip_ops.level_max) {
        snprintf(err, errlen, "gzip level %d out of range %d..%d", level, gzip_ops.level_min,
                 gzip_ops.level_max);
        goto fail;
    }
    g = calloc(1, sizeof *g);
    if (g == NULL) {
        snprintf(err, errlen, "gzip: out of memory");
        goto fail;
    }
    /* 15 + 16: 32 KiB window with the gzip header and CRC trailer. */
    int rc = deflateInit2(&g->zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    if (rc != Z_OK) {
        snprintf(err, errlen, "gzip: deflateInit2 failed (%d)", rc);
        goto fail;
    }
    g->base.ops = &gzip_ops;
    g->sink = sink;
    g->ctx = ctx;
    return &g->base;
fail:
    free(g);
    return NULL;
}

/* Run deflate over the pending input with `mode` until zlib has no more to
 * give for it: for Z_NO_FLUSH all input consumed, for Z_SYNC_FLUSH output
 * not filling the buffer, for Z_FINISH Z_STREAM_END. */
static bool run(struct gzip_stream *g, int mode)
{
    if (g->broken || g->finished)
        return false;
    for (;;) {
        g->zs.next_out = g->out;
        g->zs.avail_out = sizeof g->out;
        int rc = deflate(&g->zs, mode);
        if (rc == Z_STREAM_ERROR)
            goto fail;
        size_t n = sizeof g->out - g->zs.avail_out;
        if (n > 0 && !g->sink(g->ctx, g->out, n))
            goto fail;
        if (mode == Z_FINISH) {
            if (rc == Z_STREAM_END) {
                g->finished = true;
                return true;
            }
        } else if (g->zs.avail_out != 0 && g->zs.avail_in == 0) {
            return true;
        }
        /* Z_BUF_ERROR only means no progress was possible; with our buffer
         * emptied each round that happens solely when done, handled above. */
    }
fail:
    g->broken = true;
    return false;
}

static bool gzip_write(struct compressor *c, const void *in, size_t len)
{
    struct gzip_stream *g = to_gzip(c);
    const unsigned char *p = in;
    /* avail_in is a uInt: feed huge buffers in slices. */
    while (len > 0) {
        uInt n = len > 1u << 30 ? 1u << 30 : (uInt)len;
        g->zs.next_in = (unsigned char *)p;
        g->zs.avail_in = n;
        if (!run(g, Z_NO_FLUSH))
            return false;
        p += n;
        len -= n;
        g->dirty = true;
    }
    return !g->broken && !g->finished;
}

static bool gzip_flush(struct compressor *c)
{
    struct gzip_stream *g = to_gzip(c);
    if (g->broken || g->finished)
        return false;
    if (!g->dirty)
        return true; /* another sync marker would be 5 wasted bytes */
    g->zs.next_in = NULL;
    g->zs.avail_in = 0;
    if (!run(g, Z_SYNC_FLUSH))
        return false;
    g->dirty = false;
    return true;
}

static bool gzip_finish(struct compressor *c)
{
    struct gzip_stream *g = to_gzip(c);
    g->zs.next_in = NULL;
    g->zs.avail_in = 0;
    return run(g, Z_FINISH);
}

static void gzip_free(struct compressor **c)
{
    if (c == NULL || *c == NULL)
        return;
    struct gzip_stream *g = to_gzip(*c);
    deflateEnd(&g->zs);
    free(g);
    *c = NULL;
}
