/*
 * tests/unit/compress/codecs.c: the streaming compressors (compress/gzip.c,
 * compress/brotli.c, compress/zstd.c through compress/codec.h) and the
 * capped gzip decoder (compress/inflate.c).
 *
 * Round trips are decoded by zlib's, brotli's and zstd's own decoders, not
 * only by ours, for bodies of 0 B, 1 B, 1 MiB random and 1 MiB repetitive, fed in
 * pieces of varied sizes with flushes in between: after every flush the
 * bytes emitted so far must decode to exactly the input so far.  zstd is
 * always decoded with the 8 MiB window limit browsers apply (RFC 9659).  The
 * inflate caps are checked with a 10 MiB zero body that must fail under a
 * 1 MiB cap without ever buffering more than the cap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <brotli/decode.h>
#include <cmocka.h>
#include <zlib.h>
#include <zstd.h>

#include "compress/codec.h"
#include "compress/inflate.h"

#define MIB (1024 * 1024)
#define ERRLEN 160

/* RFC 9659: a "zstd" content-coding decoder may refuse windows over 8 MiB. */
#define ZSTD_HTTP_WINDOWLOG_MAX 23

static const struct compressor_ops *const all_ops[] = {&gzip_ops, &brotli_ops, &zstd_ops};
#define NOPS (sizeof all_ops / sizeof all_ops[0])

/* ---- a growable sink ---- */

struct buf {
    unsigned char *p;
    size_t len, cap;
    size_t calls;
    size_t max_piece;
    bool refuse; /* make the sink fail */
};

static bool buf_sink(void *ctx, const void *p, size_t n)
{
    struct buf *b = ctx;
    b->calls++;
    if (n > b->max_piece)
        b->max_piece = n;
    if (b->refuse)
        return false;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (q == NULL)
            return false;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return true;
}

/* Counts bytes without keeping them: proves a bomb costs no memory. */
struct counter {
    size_t bytes;
    size_t max_piece;
};

static bool count_sink(void *ctx, const void *p, size_t n)
{
    (void)p;
    struct counter *c = ctx;
    c->bytes += n;
    if (n > c->max_piece)
        c->max_piece = n;
    return true;
}

/* ---- bodies ---- */

enum body_kind { BODY_RANDOM, BODY_REPETITIVE };

static unsigned char *make_body(size_t n, enum body_kind kind)
{
    unsigned char *b = malloc(n ? n : 1);
    assert_non_null(b);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    static const char text[] = "<li class=\"item\"><a href=\"/p/%d\">Product</a></li>\n";
    for (size_t i = 0; i < n; i++) {
        if (kind == BODY_RANDOM) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b[i] = (unsigned char)x;
        } else {
            b[i] = (unsigned char)text[i % (sizeof text - 1)];
            if (i % 997 == 0)
                b[i] = (unsigned char)('0' + i % 10); /* not perfectly periodic */
        }
    }
    return b;
}

/* ---- independent incremental decoders ---- */

struct decoder {
    enum coding coding;
    z_stream zs;
    BrotliDecoderState *br;
    ZSTD_DStream *zd;
    size_t fed; /* compressed bytes already given to the decoder */
    struct buf out;
    bool done; /* end of stream seen */
};

static void decoder_init(struct decoder *d, enum coding coding)
{
    memset(d, 0, sizeof *d);
    d->coding = coding;
    if (coding == CODING_GZIP) {
        assert_int_equal(inflateInit2(&d->zs, 15 + 16), Z_OK);
    } else if (coding == CODING_ZSTD) {
        d->zd = ZSTD_createDStream();
        assert_non_null(d->zd);
        assert_false(ZSTD_isError(
            ZSTD_DCtx_setParameter(d->zd, ZSTD_d_windowLogMax, ZSTD_HTTP_WINDOWLOG_MAX)));
    } else {
        d->br = BrotliDecoderCreateInstance(NULL, NULL, NULL);
        assert_non_null(d->br);
    }
}

/* Decode the compressed bytes in [d->fed, in->len). */
static void decoder_feed(struct decoder *d, const struct buf *in)
{
    unsigned char tmp[8192];
    const unsigned char *next_in = in->p + d->fed;
    size_t avail_in = in->len - d->fed;
    for (;;) {
        size_t produced;
        if (d->coding == CODING_GZIP) {
            d->zs.next_in = (unsigned char *)next_in;
            d->zs.avail_in = (uInt)avail_in;
            d->zs.next_out = tmp;
            d->zs.avail_out = sizeof tmp;
            int rc = inflate(&d->zs, Z_SYNC_FLUSH);
            assert_true(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR);
            produced = sizeof tmp - d->zs.avail_out;
            next_in = d->zs.next_in;
            avail_in = d->zs.avail_in;
            if (rc == Z_STREAM_END)
                d->done = true;
        } else if (d->coding == CODING_ZSTD) {
            ZSTD_inBuffer ib = {next_in, avail_in, 0};
            ZSTD_outBuffer ob = {tmp, sizeof tmp, 0};
            size_t rc = ZSTD_decompressStream(d->zd, &ob, &ib);
            if (ZSTD_isError(rc))
                fail_msg("zstd: %s", ZSTD_getErrorName(rc));
            produced = ob.pos;
            next_in += ib.pos;
            avail_in -= ib.pos;
            if (rc == 0) /* frame complete, checksum verified, all flushed */
                d->done = true;
        } else {
            size_t avail_out = sizeof tmp;
            uint8_t *next_out = tmp;
            BrotliDecoderResult rc = BrotliDecoderDecompressStream(d->br, &avail_in, &next_in,
                                                                   &avail_out, &next_out, NULL);
            assert_true(rc != BROTLI_DECODER_RESULT_ERROR);
            produced = sizeof tmp - avail_out;
            if (rc == BROTLI_DECODER_RESULT_SUCCESS)
                d->done = true;
        }
        if (produced > 0)
            assert_true(buf_sink(&d->out, tmp, produced));
        if (produced < sizeof tmp && (avail_in == 0 || d->done))
            break;
    }
    assert_int_equal(avail_in, 0); /* nothing after the end of stream */
    d->fed = in->len;
}

static void decoder_free(struct decoder *d)
{
    if (d->coding == CODING_GZIP)
        inflateEnd(&d->zs);
    else if (d->coding == CODING_ZSTD)
        ZSTD_freeDStream(d->zd);
    else
        BrotliDecoderDestroyInstance(d->br);
    free(d->out.p);
}

/* ---- round trips ---- */

static const size_t piece_sizes[] = {1, 13, 256, 1000, 4096, 7, 16384, 65536, 100000, 3};

static void round_trip(const struct compressor_ops *ops, int level, const unsigned char *body,
                       size_t n)
{
    struct buf z = {0};
    char err[ERRLEN];
    struct compressor *c = ops->init(level, buf_sink, &z, err, sizeof err);
    assert_non_null(c);
    struct decoder d;
    decoder_init(&d, ops->coding);

    size_t off = 0;
    for (size_t i = 0; off < n; i++) {
        size_t k = piece_sizes[i % (sizeof piece_sizes / sizeof piece_sizes[0])];
        if (k > n - off)
            k = n - off;
        assert_true(ops->write(c, body + off, k));
        off += k;
        if (i % 3 == 2 || off == n) {
            assert_true(ops->flush(c));
            decoder_feed(&d, &z);
            /* Sync flush: everything so far is decodable, exactly. */
            assert_int_equal(d.out.len, off);
            assert_memory_equal(d.out.p, body, off);
            assert_false(d.done);
        }
    }
    assert_true(ops->finish(c));
    assert_false(ops->write(c, "x", 1)); /* the stream is over */
    assert_false(ops->flush(c));
    ops->free(&c);
    assert_null(c);

    decoder_feed(&d, &z);
    assert_true(d.done);
    assert_int_equal(d.out.len, n);
    if (n > 0)
        assert_memory_equal(d.out.p, body, n);
    assert_true(z.max_piece <= COMPRESS_CHUNK);
    decoder_free(&d);

    /* gzip: our capped decoder agrees, fed in odd-sized pieces. */
    if (ops->coding == CODING_GZIP) {
        struct buf back = {0};
        struct inflater *inf = inflater_init(n + 1, 0, buf_sink, &back, err, sizeof err);
        assert_non_null(inf);
        for (size_t o = 0; o < z.len;) {
            size_t k = z.len - o < 777 ? z.len - o : 777;
            if (!inflater_write(inf, z.p + o, k, err, sizeof err))
                fail_msg("%s", err);
            o += k;
        }
        if (!inflater_finish(inf, err, sizeof err))
            fail_msg("%s", err);
        assert_int_equal(inflater_total_out(inf), n);
        assert_int_equal(back.len, n);
        if (n > 0)
            assert_memory_equal(back.p, body, n);
        inflater_free(&inf);
        assert_null(inf);
        free(back.p);
    }
    free(z.p);
}

static void round_trips(const struct compressor_ops *ops)
{
    static const unsigned char one = 'A';
    round_trip(ops, ops->level_default, NULL, 0);
    round_trip(ops, ops->level_default, &one, 1);
    unsigned char *rnd = make_body(MIB, BODY_RANDOM);
    unsigned char *rep = make_body(MIB, BODY_REPETITIVE);
    round_trip(ops, ops->level_default, rnd, MIB);
    round_trip(ops, ops->level_default, rep, MIB);
    round_trip(ops, ops->level_min, rep, 200000);
    round_trip(ops, ops->level_max, rep, 200000);
    free(rnd);
    free(rep);
}

static void test_gzip_round_trips(void **state)
{
    (void)state;
    round_trips(&gzip_ops);
}

static void test_brotli_round_trips(void **state)
{
    (void)state;
    round_trips(&brotli_ops);
}

static void test_zstd_round_trips(void **state)
{
    (void)state;
    round_trips(&zstd_ops);
}

/* Compress a whole buffer in one go with finish. */
static struct buf compress_all(const struct compressor_ops *ops, const void *p, size_t n)
{
    struct buf z = {0};
    char err[ERRLEN];
    struct compressor *c = ops->init(ops->level_default, buf_sink, &z, err, sizeof err);
    assert_non_null(c);
    assert_true(ops->write(c, p, n));
    assert_true(ops->finish(c));
    ops->free(&c);
    return z;
}

static void test_repetitive_compresses(void **state)
{
    (void)state;
    unsigned char *rep = make_body(MIB, BODY_REPETITIVE);
    for (size_t i = 0; i < NOPS; i++) {
        struct buf z = compress_all(all_ops[i], rep, MIB);
        if (z.len >= MIB / 20)
            fail_msg("%s: %zu bytes", all_ops[i]->name, z.len);
        free(z.p);
    }
    free(rep);
}

static void test_flush_without_input_is_free(void **state)
{
    (void)state;
    const struct compressor_ops *const *all = all_ops;
    for (size_t i = 0; i < NOPS; i++) {
        struct buf z = {0};
        char err[ERRLEN];
        struct compressor *c = all[i]->init(all[i]->level_default, buf_sink, &z, err, sizeof err);
        assert_non_null(c);
        assert_true(all[i]->flush(c)); /* before any write: not even a header */
        assert_int_equal(z.calls, 0);
        assert_true(all[i]->write(c, "hello", 5));
        assert_true(all[i]->flush(c));
        size_t after_first = z.len;
        assert_true(after_first > 0);
        assert_true(all[i]->flush(c));
        assert_true(all[i]->write(c, "", 0));
        assert_true(all[i]->flush(c));
        assert_int_equal(z.len, after_first);
        all[i]->free(&c);
        all[i]->free(&c); /* NULL: no-op */
        free(z.p);
    }
}

static void test_bad_level(void **state)
{
    (void)state;
    struct buf z = {0};
    char err[ERRLEN];
    err[0] = '\0';
    assert_null(gzip_ops.init(0, buf_sink, &z, err, sizeof err));
    assert_non_null(strstr(err, "level"));
    err[0] = '\0';
    assert_null(gzip_ops.init(10, buf_sink, &z, err, sizeof err));
    assert_non_null(strstr(err, "level"));
    err[0] = '\0';
    assert_null(brotli_ops.init(12, buf_sink, &z, err, sizeof err));
    assert_non_null(strstr(err, "level"));
    assert_null(brotli_ops.init(-1, buf_sink, &z, err, sizeof err));
    err[0] = '\0';
    assert_null(zstd_ops.init(0, buf_sink, &z, err, sizeof err));
    assert_non_null(strstr(err, "level"));
    err[0] = '\0';
    assert_null(zstd_ops.init(20, buf_sink, &z, err, sizeof err)); /* ultra: window > 8 MiB */
    assert_non_null(strstr(err, "level"));
    assert_null(zstd_ops.init(-1, buf_sink, &z, err, sizeof err)); /* zstd's "fast" levels */
    assert_int_equal(z.calls, 0);
}

static void test_sink_refusal(void **state)
{
    (void)state;
    const struct compressor_ops *const *all = all_ops;
    unsigned char *rnd = make_body(100000, BODY_RANDOM);
    for (size_t i = 0; i < NOPS; i++) {
        struct buf z = {.refuse = true};
        char err[ERRLEN];
        struct compressor *c = all[i]->init(all[i]->level_default, buf_sink, &z, err, sizeof err);
        assert_non_null(c);
        /* random data cannot stay inside the encoder: the sink is called */
        bool ok = all[i]->write(c, rnd, 100000) && all[i]->flush(c);
        assert_false(ok);
        assert_true(z.calls > 0);
        assert_false(all[i]->write(c, "x", 1)); /* broken stays broken */
        assert_false(all[i]->finish(c));
        all[i]->free(&c);
    }
    free(rnd);
}

static void test_ops_table(void **state)
{
    (void)state;
    assert_ptr_equal(compressor_ops_for(CODING_GZIP), &gzip_ops);
    assert_ptr_equal(compressor_ops_for(CODING_BR), &brotli_ops);
    assert_ptr_equal(compressor_ops_for(CODING_ZSTD), &zstd_ops);
    assert_null(compressor_ops_for(CODING_IDENTITY));
    assert_null(compressor_ops_for(CODING_COUNT));
    for (size_t i = 0; i < NOPS; i++) {
        assert_ptr_equal(compressor_ops_for(all_ops[i]->coding), all_ops[i]);
        assert_string_equal(all_ops[i]->name, coding_name(all_ops[i]->coding));
        assert_true(all_ops[i]->level_min <= all_ops[i]->level_default);
        assert_true(all_ops[i]->level_default <= all_ops[i]->level_max);
    }
}

/* ---- zstd frame parameters ---- */

/* RFC 9659: browsers refuse zstd windows over 8 MiB.  A body of 20 MB whose
 * second half repeats the first 10 MB would tempt an encoder at the highest
 * level into a window that reaches back 10 MB; the frame header must still
 * declare at most 8 MiB and a decoder held to 8 MiB must decode it. */
static void test_zstd_window_capped(void **state)
{
    (void)state;
    const size_t half = 10 * 1000 * 1000;
    unsigned char *body = make_body(2 * half, BODY_RANDOM);
    memcpy(body + half, body, half);
    struct buf z = {0};
    char err[ERRLEN];
    struct compressor *c = zstd_ops.init(zstd_ops.level_max, buf_sink, &z, err, sizeof err);
    assert_non_null(c);
    for (size_t off = 0; off < 2 * half; off += MIB)
        assert_true(zstd_ops.write(c, body + off, 2 * half - off < MIB ? 2 * half - off : MIB));
    assert_true(zstd_ops.finish(c));
    zstd_ops.free(&c);
    assert_true(z.max_piece <= COMPRESS_CHUNK);

    /* RFC 8878 3.1.1: magic, then the Frame_Header_Descriptor. */
    assert_true(z.len > 6);
    assert_memory_equal(z.p, "\x28\xb5\x2f\xfd", 4);
    unsigned fhd = z.p[4];
    assert_true(fhd & 0x04);  /* Content_Checksum_flag */
    assert_false(fhd & 0x20); /* no Single_Segment: a Window_Descriptor follows */
    unsigned exponent = z.p[5] >> 3, mantissa = z.p[5] & 7;
    uint64_t base = (uint64_t)1 << (10 + exponent);
    uint64_t window = base + base / 8 * mantissa;
    if (window > (uint64_t)1 << ZSTD_HTTP_WINDOWLOG_MAX)
        fail_msg("zstd window %llu bytes", (unsigned long long)window);

    struct decoder d;
    decoder_init(&d, CODING_ZSTD); /* windowLogMax 23 */
    decoder_feed(&d, &z);
    assert_true(d.done);
    assert_int_equal(d.out.len, 2 * half);
    assert_memory_equal(d.out.p, body, 2 * half);
    decoder_free(&d);
    free(z.p);
    free(body);
}

/* ---- inflate caps and hostile input ---- */

static struct buf zero_bomb(size_t n)
{
    struct buf z = {0};
    char err[ERRLEN];
    struct compressor *c = gzip_ops.init(9, buf_sink, &z, err, sizeof err);
    assert_non_null(c);
    unsigned char *zeros = calloc(1, MIB);
    assert_non_null(zeros);
    for (size_t off = 0; off < n; off += MIB)
        assert_true(gzip_ops.write(c, zeros, n - off < MIB ? n - off : MIB));
    assert_true(gzip_ops.finish(c));
    gzip_ops.free(&c);
    free(zeros);
    return z;
}

static void test_inflate_output_cap(void **state)
{
    (void)state;
    struct buf bomb = zero_bomb(10 * MIB);
    assert_true(bomb.len < 20 * 1024);
    struct counter cnt = {0};
    char err[ERRLEN];
    struct inflater *inf = inflater_init(MIB, 0, count_sink, &cnt, err, sizeof err);
    assert_non_null(inf);
    assert_false(inflater_write(inf, bomb.p, bomb.len, err, sizeof err));
    assert_non_null(strstr(err, "exceeds"));
    assert_true(cnt.bytes <= MIB);
    assert_true(cnt.max_piece <= COMPRESS_CHUNK);
    assert_false(inflater_write(inf, "x", 1, err, sizeof err));
    assert_false(inflater_finish(inf, err, sizeof err));
    inflater_free(&inf);

    /* The same body under a 10 MiB cap is fine. */
    cnt = (struct counter){0};
    inf = inflater_init(10 * MIB, 0, count_sink, &cnt, err, sizeof err);
    assert_non_null(inf);
    assert_true(inflater_write(inf, bomb.p, bomb.len, err, sizeof err));
    assert_true(inflater_finish(inf, err, sizeof err));
    assert_int_equal(cnt.bytes, 10 * MIB);
    inflater_free(&inf);
    free(bomb.p);
}

static void test_inflate_ratio_cap(void **state)
{
    (void)state;
    struct buf bomb = zero_bomb(10 * MIB); /* about 1000:1 */
    struct counter cnt = {0};
    char err[ERRLEN];
    struct inflater *inf = inflater_init(0, 100, count_sink, &cnt, err, sizeof err);
    assert_non_null(inf);
    /* fed in small pieces: the ratio is judged on input seen so far */
    bool ok = true;
    for (size_t o = 0; ok && o < bomb.len; o += 100)
        ok = inflater_write(inf, bomb.p + o, bomb.len - o < 100 ? bomb.len - o : 100, err,
                            sizeof err);
    assert_false(ok);
    assert_non_null(strstr(err, "ratio"));
    assert_true(cnt.bytes < MIB);
    inflater_free(&inf);

    /* A small, highly compressible body stays under the ratio floor. */
    struct buf small = zero_bomb(INFLATE_RATIO_FLOOR);
    cnt = (struct counter){0};
    inf = inflater_init(0, 2, count_sink, &cnt, err, sizeof err);
    assert_non_null(inf);
    assert_true(inflater_write(inf, small.p, small.len, err, sizeof err));
    assert_true(inflater_finish(inf, err, sizeof err));
    assert_int_equal(cnt.bytes, INFLATE_RATIO_FLOOR);
    inflater_free(&inf);
    free(small.p);
    free(bomb.p);
}

static void test_inflate_hostile(void **state)
{
    (void)state;
    unsigned char *body = make_body(50000, BODY_REPETITIVE);
    struct buf z = compress_all(&gzip_ops, body, 50000);
    char err[ERRLEN];
    struct buf out = {0};

    /* truncated: every cut is an error at write or at finish */
    for (size_t cut = 0; cut < z.len; cut += (cut < 32 ? 1 : 97)) {
        out.len = 0;
        struct inflater *inf = inflater_init(0, 0, buf_sink, &out, err, sizeof err);
        assert_non_null(inf);
        bool ok =
            inflater_write(inf, z.p, cut, err, sizeof err) && inflater_finish(inf, err, sizeof err);
        assert_false(ok);
        inflater_free(&inf);
    }

    /* not gzip at all */
    out.len = 0;
    struct inflater *inf = inflater_init(0, 0, buf_sink, &out, err, sizeof err);
    assert_false(inflater_write(inf, "hello, world", 12, err, sizeof err));
    assert_non_null(strstr(err, "corrupt"));
    inflater_free(&inf);

    /* a flipped byte in the middle: corrupt data or a CRC mismatch */
    unsigned char *bad = malloc(z.len);
    memcpy(bad, z.p, z.len);
    bad[z.len / 2] ^= 0x55;
    out.len = 0;
    inf = inflater_init(0, 0, buf_sink, &out, err, sizeof err);
    bool ok =
        inflater_write(inf, bad, z.len, err, sizeof err) && inflater_finish(inf, err, sizeof err);
    assert_false(ok);
    inflater_free(&inf);
    free(bad);

    /* two members back to back decode as their concatenation (gzip -d) */
    struct buf two = {0};
    assert_true(buf_sink(&two, z.p, z.len));
    assert_true(buf_sink(&two, z.p, z.len));
    out.len = 0;
    inf = inflater_init(0, 0, buf_sink, &out, err, sizeof err);
    assert_true(inflater_write(inf, two.p, two.len, err, sizeof err));
    assert_true(inflater_finish(inf, err, sizeof err));
    assert_int_equal(out.len, 100000);
    assert_memory_equal(out.p, body, 50000);
    assert_memory_equal(out.p + 50000, body, 50000);
    inflater_free(&inf);

    /* garbage after a complete member */
    two.len = z.len;
    assert_true(buf_sink(&two, "junk", 4));
    out.len = 0;
    inf = inflater_init(0, 0, buf_sink, &out, err, sizeof err);
    assert_false(inflater_write(inf, two.p, two.len, err, sizeof err));
    inflater_free(&inf);

    /* empty body: no member at all is truncated */
    inf = inflater_init(0, 0, buf_sink, &out, err, sizeof err);
    assert_true(inflater_write(inf, "", 0, err, sizeof err));
    assert_false(inflater_finish(inf, err, sizeof err));
    assert_non_null(strstr(err, "truncated"));
    inflater_free(&inf);
    inflater_free(&inf); /* NULL: no-op */

    free(two.p);
    free(out.p);
    free(z.p);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gzip_round_trips),
        cmocka_unit_test(test_brotli_round_trips),
        cmocka_unit_test(test_zstd_round_trips),
        cmocka_unit_test(test_repetitive_compresses),
        cmocka_unit_test(test_flush_without_input_is_free),
        cmocka_unit_test(test_bad_level),
        cmocka_unit_test(test_sink_refusal),
        cmocka_unit_test(test_ops_table),
        cmocka_unit_test(test_zstd_window_capped),
        cmocka_unit_test(test_inflate_output_cap),
        cmocka_unit_test(test_inflate_ratio_cap),
        cmocka_unit_test(test_inflate_hostile),
    };
    return cmocka_run_group_tests_name("compress/codecs", tests, NULL, NULL);
}
