/*
 * compress/inflate.c: the capped gzip decoder (compress/inflate.h) over
 * zlib's inflate with windowBits 15 + 16 (gzip wrapper only).
 *
 * Each decoder owns its z_stream and one COMPRESS_CHUNK output buffer; no
 * sharing, no locking.  The caps are checked per output chunk before the
 * chunk reaches the sink, so a bomb is stopped after at most one chunk
 * beyond the limit has been decoded into our buffer and none delivered.
 */
#include "compress/inflate.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

struct inflater {
    z_stream zs;
    size_t max_output;
    unsigned max_ratio;
    compress_sink_f *sink;
    void *ctx;
    uint64_t total_in, total_out; /* our own: z_stream's are uLong and reset per member */
    bool in_member;               /* a member started and not yet ended */
    bool ended;                   /* at least one member decoded completely */
    bool broken;
    unsigned char out[COMPRESS_CHUNK];
};

struct inflater *inflater_init(size_t max_output, unsigned max_ratio, compress_sink_f *sink,
                               void *ctx, char *err, size_t errlen)
{
    assert(sink != NULL);
    struct inflater *z = calloc(1, sizeof *z);
    if (z == NULL) {
        snprintf(err, errlen, "inflate: out of memory");
        goto fail;
    }
    int rc = inflateInit2(&z->zs, 15 + 16);
    if (rc != Z_OK) {
        snprintf(err, errlen, "inflate: inflateInit2 failed (%d)", rc);
        goto fail;
    }
    z->max_output = max_output;
    z->max_ratio = max_ratio;
    z->sink = sink;
    z->ctx = ctx;
    return z;
fail:
    free(z);
    return NULL;
}

/* Check the caps for n more bytes of output; total_in counts input
 * consumed so far. */
static bool within_caps(const struct inflater *z, size_t n, char *err, size_t errlen)
{
    uint64_t out = z->total_out + n;
    if (z->max_output != 0 && out > z->max_output) {
        snprintf(err, errlen, "inflate: output exceeds %zu bytes", z->max_output);
        return false;
    }
    if (z->max_ratio != 0 && out > INFLATE_RATIO_FLOOR &&
        out > (uint64_t)z->max_ratio * (z->total_in ? z->total_in : 1)) {
        snprintf(err, errlen, "inflate: ratio exceeds %u:1", z->max_ratio);
        return false;
    }
    return true;
}

/* One inflate call over the pending input into our buffer, output checked
 * against the caps and handed to the sink.  Returns 1 when it made
 * progress and our buffer came back full (call again), 0 when it is done
 * with the input it has, -1 on error (message in err). */
static int step(struct inflater *z, char *err, size_t errlen)
{
    if (z->ended && !z->in_member) {
        if (z->zs.avail_in == 0)
            return 0;
        /* Another member follows: decode it too (RFC 1952 2.2). */
        if (inflateReset(&z->zs) != Z_OK) {
            snprintf(err, errlen, "inflate: reset failed");
            return -1;
        }
    }
    uInt before_in = z->zs.avail_in;
    z->zs.next_out = z->out;
    z->zs.avail_out = sizeof z->out;
    int rc = inflate(&z->zs, Z_NO_FLUSH);
    z->total_in += before_in - z->zs.avail_in;
    if (before_in != z->zs.avail_in)
        z->in_member = true;
    size_t n = sizeof z->out - z->zs.avail_out;
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
        snprintf(err, errlen, "inflate: corrupt gzip data (%s)",
                 z->zs.msg ? z->zs.msg : "zlib error");
        return -1;
    }
    if (n > 0) {
        if (!within_caps(z, n, err, errlen))
            return -1;
        z->total_out += n;
        if (!z->sink(z->ctx, z->out, n)) {
            snprintf(err, errlen, "inflate: sink refused output");
            return -1;
        }
    }
    if (rc == Z_STREAM_END) {
        z->in_member = false;
        z->ended = true;
        return z->zs.avail_in > 0 ? 1 : 0;
    }
    if (rc == Z_BUF_ERROR)
        return 0; /* no progress possible: needs more input */
    /* Z_OK: more to do while input remains or our buffer came back full
     * (inflate may hold more output). */
    return (z->zs.avail_in > 0 || z->zs.avail_out == 0) ? 1 : 0;
}

bool inflater_write(struct inflater *z, const void *in, size_t len, char *err, size_t errlen)
{
    if (z->broken) {
        snprintf(err, errlen, "inflate: stream already failed");
        return false;
    }
    const unsigned char *p = in;
    while (len > 0) {
        /* avail_in is a uInt: feed huge buffers in slices. */
        uInt slice = len > 1u << 30 ? 1u << 30 : (uInt)len;
        z->zs.next_in = (unsigned char *)p;
        z->zs.avail_in = slice;
        int r;
        while ((r = step(z, err, errlen)) > 0)
            ;
        if (r < 0)
            goto fail;
        p += slice;
        len -= slice;
    }
    return true;
fail:
    z->broken = true;
    return false;
}

bool inflater_finish(struct inflater *z, char *err, size_t errlen)
{
    if (z->broken) {
        snprintf(err, errlen, "inflate: stream already failed");
        return false;
    }
    if (z->in_member || !z->ended) {
        snprintf(err, errlen, "inflate: truncated gzip data");
        z->broken = true;
        return false;
    }
    return true;
}

size_t inflater_total_out(const struct inflater *z)
{
    return (size_t)z->total_out;
}

void inflater_free(struct inflater **z)
{
    if (z == NULL || *z == NULL)
        return;
    inflateEnd(&(*z)->zs);
    free(*z);
    *z = NULL;
}
