/*
 * tests/support/decode.c: content decoding for tests (see decode.h), with
 * zlib (gzip wrapper), the brotli decoder and zstd's streaming API.
 */
#include "tests/support/decode.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <brotli/decode.h>
#include <zlib.h>
#include <zstd.h>

enum { STEP = 64 * 1024 };

/* Room for at least `more` bytes (and a NUL) after out->len. */
static bool reserve(struct decode_buf *out, size_t more)
{
    if (out->len + more + 1 <= out->cap)
        return true;
    size_t cap = out->cap ? out->cap : STEP;
    while (cap < out->len + more + 1)
        cap *= 2;
    char *p = realloc(out->data, cap);
    if (!p)
        return false;
    out->data = p;
    out->cap = cap;
    return true;
}

static void terminate(struct decode_buf *out)
{
    if (out->data)
        out->data[out->len] = '\0';
}

static bool decode_identity(const void *in, size_t len, struct decode_buf *out)
{
    if (!reserve(out, len))
        return false;
    if (len)
        memcpy(out->data + out->len, in, len);
    out->len += len;
    return true;
}

static bool decode_gzip(const void *in, size_t len, bool whole, struct decode_buf *out)
{
    z_stream zs = {0};
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return false;
    const unsigned char *p = in;
    size_t left = len;
    bool ended = false, ok = true;
    while (ok && !ended) {
        if (!reserve(out, STEP)) {
            ok = false;
            break;
        }
        uInt feed = left > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uInt)left;
        zs.next_in = (Bytef *)p;
        zs.avail_in = feed;
        zs.next_out = (Bytef *)(out->data + out->len);
        zs.avail_out = STEP;
        int rc = inflate(&zs, Z_NO_FLUSH);
        size_t used = feed - zs.avail_in;
        p += used;
        left -= used;
        out->len += STEP - zs.avail_out;
        if (rc == Z_STREAM_END)
            ended = true;
        else if (rc == Z_BUF_ERROR || (rc == Z_OK && used == 0 && zs.avail_out == STEP))
            break; /* no progress possible: the input is used up */
        else if (rc != Z_OK)
            ok = false;
    }
    inflateEnd(&zs);
    if (!ok)
        return false;
    return whole ? ended && left == 0 : true;
}

static bool decode_br(const void *in, size_t len, bool whole, struct decode_buf *out)
{
    BrotliDecoderState *s = BrotliDecoderCreateInstance(NULL, NULL, NULL);
    if (!s)
        return false;
    const uint8_t *next_in = in;
    size_t avail_in = len;
    bool ok = false;
    for (;;) {
        if (!reserve(out, STEP))
            break;
        uint8_t *next_out = (uint8_t *)(out->data + out->len);
        size_t avail_out = STEP;
        BrotliDecoderResult rc =
            BrotliDecoderDecompressStream(s, &avail_in, &next_in, &avail_out, &next_out, NULL);
        out->len += STEP - avail_out;
        if (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT)
            continue;
        if (rc == BROTLI_DECODER_RESULT_SUCCESS)
            ok = avail_in == 0 || !whole;
        else if (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT)
            ok = !whole;
        break;
    }
    BrotliDecoderDestroyInstance(s);
    return ok;
}

static bool decode_zstd(const void *in, size_t len, bool whole, struct decode_buf *out)
{
    ZSTD_DStream *ds = ZSTD_createDStream();
    if (!ds)
        return false;
    ZSTD_initDStream(ds);
    ZSTD_inBuffer ib = {in, len, 0};
    size_t last = 1; /* 0 once a frame is complete and flushed */
    bool ok = true;
    for (;;) {
        if (!reserve(out, STEP)) {
            ok = false;
            break;
        }
        ZSTD_outBuffer ob = {out->data + out->len, STEP, 0};
        last = ZSTD_decompressStream(ds, &ob, &ib);
        if (ZSTD_isError(last)) {
            ok = false;
            break;
        }
        out->len += ob.pos;
        /* Done when every input byte is used and nothing is left to flush
         * (a full output buffer may hide more). */
        if (ib.pos == ib.size && ob.pos < ob.size)
            break;
    }
    ZSTD_freeDStream(ds);
    if (!ok)
        return false;
    return whole ? last == 0 && len > 0 : true;
}

static bool decode(const char *coding, const void *in, size_t len, bool whole,
                   struct decode_buf *out)
{
    out->len = 0;
    bool ok;
    if (!coding || !*coding || strcasecmp(coding, "identity") == 0)
        ok = decode_identity(in, len, out);
    else if (strcasecmp(coding, "gzip") == 0 || strcasecmp(coding, "x-gzip") == 0)
        ok = decode_gzip(in, len, whole, out);
    else if (strcasecmp(coding, "br") == 0)
        ok = decode_br(in, len, whole, out);
    else if (strcasecmp(coding, "zstd") == 0)
        ok = decode_zstd(in, len, whole, out);
    else
        ok = false;
    if (!reserve(out, 0))
        return false;
    terminate(out);
    return ok;
}

bool decode_body(const char *coding, const void *in, size_t len, struct decode_buf *out)
{
    return decode(coding, in, len, true, out);
}

bool decode_prefix(const char *coding, const void *in, size_t len, struct decode_buf *out)
{
    return decode(coding, in, len, false, out);
}

void decode_buf_free(struct decode_buf *out)
{
    free(out->data);
    memset(out, 0, sizeof *out);
}
