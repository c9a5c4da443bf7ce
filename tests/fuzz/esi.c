/*
 * tests/fuzz/esi.c: libFuzzer target for the ESI parser and the template
 * decoder (cache/esi.c).
 *
 * Input: byte 0 picks where to split the rest (rest_len * b / 255); the
 * rest is a body.  It is parsed in one piece, in two pieces split there,
 * and (when short) one byte at a time: the three templates must be equal
 * and keep every promise of esi.h (has_esi false only for the body
 * unchanged).  The template is encoded into a buffer of its exact size,
 * decoded (into spans over that buffer) and compared, and the decoded one
 * re-encoded to the same bytes.  The rest is also handed to the decoder as
 * if it came from memcached: whatever it accepts must re-encode to exactly
 * the input, since the encoding is canonical.  Every piece is copied into a
 * buffer of its exact size so ASan sees any over-read.
 *
 * Build and run (as `make fuzz` does; new units go to a scratch directory,
 * the seeds stay as committed):
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -I. \
 *       tests/fuzz/esi.c cache/esi.c -o /tmp/fuzz_esi
 *   mkdir -p /tmp/fuzz_esi_out
 *   /tmp/fuzz_esi -max_total_time=60 /tmp/fuzz_esi_out tests/fuzz/corpus/esi
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/esi.h"

#define BYTEWISE_MAX 4096

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static bool same_slice(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void check_valid(const struct esi_template *t)
{
    size_t lit = 0, inc = 0;

    check(t->nsegs <= ESI_MAX_SEGMENTS && (t->nsegs == 0 || t->segs));
    for (size_t i = 0; i < t->nsegs; i++) {
        const struct esi_segment *s = &t->segs[i];
        if (s->kind == ESI_LITERAL) {
            check(s->len >= 1 && s->text);
            check(i == 0 || t->segs[i - 1].kind != ESI_LITERAL);
            lit += s->len;
        } else {
            check(s->kind == ESI_INCLUDE);
            check(s->src && s->src_len >= 1 && s->src_len <= ESI_ATTR_MAX);
            check(s->alt_len <= ESI_ATTR_MAX && (s->alt == NULL) == (s->alt_len == 0));
            inc++;
        }
    }
    check(lit == t->literal_bytes && inc == t->nincludes && inc <= ESI_MAX_INCLUDES);
    check(!t->dropped_includes || inc == ESI_MAX_INCLUDES);
    check(t->has_esi || inc == 0);
}

static void check_same(const struct esi_template *a, const struct esi_template *b)
{
    check(a->nsegs == b->nsegs && a->nincludes == b->nincludes &&
          a->literal_bytes == b->literal_bytes && a->dropped_includes == b->dropped_includes &&
          a->has_esi == b->has_esi);
    for (size_t i = 0; i < a->nsegs; i++) {
        const struct esi_segment *x = &a->segs[i], *y = &b->segs[i];
        check(x->kind == y->kind && x->onerror_continue == y->onerror_continue);
        check(same_slice(x->text, x->len, y->text, y->len));
        check(same_slice(x->src, x->src_len, y->src, y->src_len));
        check(same_slice(x->alt, x->alt_len, y->alt, y->alt_len));
    }
}

/* Feed body/len in pieces of `piece` bytes (0: one piece) after a first
 * piece of `first` bytes, each from its own exact-size copy. */
static struct esi_parser *parse(const uint8_t *body, size_t len, size_t first, size_t piece)
{
    struct esi_parser *p = esi_parser_new();

    if (!p)
        return NULL;
    for (size_t at = 0; at < len;) {
        size_t n = at == 0 && first ? first : piece ? piece : len - at;
        if (n > len - at)
            n = len - at;
        char *copy = malloc(n);
        if (!copy)
            goto fail;
        memcpy(copy, body + at, n);
        bool ok = esi_parser_feed(p, copy, n);
        free(copy);
        if (!ok)
            goto fail;
        at += n;
    }
    if (!esi_parser_finish(p))
        goto fail;
    return p;
fail:
    esi_parser_free(&p);
    return NULL;
}

static void round_trip(const struct esi_template *t)
{
    size_t n = esi_template_encode(t, NULL, 0);
    unsigned char *enc = malloc(n), *again = NULL;
    struct esi_template d;

    if (!enc)
        return;
    check(esi_template_encode(t, enc, n) == n);
    check(esi_template_is_encoded(enc, n));
    check(esi_template_decode(enc, n, &d, NULL, 0));
    check_valid(&d);
    check_same(t, &d);
    again = malloc(n);
    if (again) {
        check(esi_template_encode(&d, again, n) == n);
        check(memcmp(enc, again, n) == 0);
    }
    esi_template_clear(&d);
    free(again);
    free(enc);
}

/* The body as an encoding from an untrusted store. */
static void decode_raw(const uint8_t *body, size_t len)
{
    unsigned char *copy = malloc(len ? len : 1);
    struct esi_template d;
    char err[128];

    if (!copy)
        return;
    memcpy(copy, body, len);
    if (esi_template_decode(copy, len, &d, err, sizeof err)) {
        check_valid(&d);
        unsigned char *again = malloc(len ? len : 1);
        if (again) {
            check(esi_template_encode(&d, again, len) == len);
            check(memcmp(again, copy, len) == 0);
            free(again);
        }
        esi_template_clear(&d);
    } else {
        check(err[0] != '\0');
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *body = data + 1;
    size_t len = size - 1, cut = len * data[0] / 255;

    decode_raw(body, len);
    struct esi_parser *whole = parse(body, len, 0, 0);
    if (!whole)
        return 0;
    const struct esi_template *t = esi_parser_template(whole);
    check_valid(t);
    check(t->literal_bytes <= len);
    if (!t->has_esi) /* the body unchanged */
        check(len == 0 ? t->nsegs == 0
                       : t->nsegs == 1 &&
                             same_slice(t->segs[0].text, t->segs[0].len, (const char *)body, len));

    struct esi_parser *split = parse(body, len, cut, 0);
    if (split)
        check_same(t, esi_parser_template(split));
    esi_parser_free(&split);
    if (len <= BYTEWISE_MAX) {
        struct esi_parser *bytes = parse(body, len, 0, 1);
        if (bytes)
            check_same(t, esi_parser_template(bytes));
        esi_parser_free(&bytes);
    }
    round_trip(t);
    esi_parser_free(&whole);
    return 0;
}
