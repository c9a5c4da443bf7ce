/*
 * proxy/encode.h: the content coding of responses on their way to the
 * client (issue 7).
 *
 * Three parts, used by client.c and cachepath.c:
 *   - the plan: from the route's `compress` policy, the client's
 *     Accept-Encoding and a few facts of the response, what its body
 *     becomes (sent as is, compressed, or inflated) and whether the
 *     response must say `Vary: Accept-Encoding`;
 *   - the streaming encoder: a response that passes through (or fills the
 *     cache) is compressed or inflated piece by piece as it arrives, with
 *     bounded memory, flushed at the upstream's pace;
 *   - variants: a stored object's compressed (or inflated) twin, made once
 *     from its whole body at the policy's cached_level and stored beside it
 *     under the same primary key (encode_variant_key()), so that later hits
 *     only copy bytes.
 *
 * Never transformed: HEAD and 1xx/204/206/304 responses, bodies with a
 * Content-Encoding other than the gzip upstream_gzip asked for, responses
 * with Cache-Control: no-transform, types the policy does not list, bodies
 * known to be under min_length.  A gzip body the proxy asked for
 * (upstream_gzip) is inflated for a client that does not accept gzip,
 * whatever its type: the client never asked for it.
 *
 * Everything here runs on the caller's thread; nothing is shared.
 */
#ifndef TESSERA_ENCODE_H
#define TESSERA_ENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/object.h"
#include "compress/codec.h"
#include "compress/inflate.h"
#include "config/config.h"
#include "proxy/http.h"

/* What a body becomes. */
enum encode_action {
    ENCODE_NONE,     /* sent as it is */
    ENCODE_COMPRESS, /* an identity body compressed with plan.coding */
    ENCODE_INFLATE,  /* a gzip body inflated for a client that does not take gzip */
};

struct encode_plan {
    enum encode_action action;
    enum coding coding; /* the coding that goes out (CODING_IDENTITY for INFLATE) */
    bool vary;          /* the response must list Accept-Encoding in Vary */
};

/* The facts of a response the plan depends on (spans valid during the
 * call that takes them). */
struct encode_response {
    int status;
    bool head_request;
    const char *content_type; /* field value, or NULL */
    size_t content_type_len;
    const char *content_encoding; /* field value, or NULL */
    size_t content_encoding_len;
    bool no_transform; /* Cache-Control: no-transform */
    bool vary_has_ae;  /* its Vary already lists Accept-Encoding (or is "*") */
    bool length_known; /* the body's length is known: */
    uint64_t length;   /*   this many bytes */
};

/* encode_response_from_head: the facts of a response head (spans into
 * base). */
void encode_response_from_head(struct encode_response *r, const char *base,
                               const struct http_head *resp, bool head_request);

/* encode_response_from_object: the facts of a stored object. */
void encode_response_from_object(struct encode_response *r, const struct cache_object *obj,
                                 bool head_request);

/* encode_plan_for: the plan for response r to a client whose
 * Accept-Encoding is (ae, ae_len), ae NULL when the request had none.  cc
 * NULL or disabled: ENCODE_NONE, no Vary. */
void encode_plan_for(const struct config_compress *cc, const char *ae, size_t ae_len,
                     const struct encode_response *r, struct encode_plan *plan);

/* encode_type_listed: the media type of a Content-Type value (ct, len;
 * parameters and whitespace ignored, case-insensitive) is one of types (as
 * config.h keeps them: lower-case; a subtype "*" lists every subtype). */
bool encode_type_listed(char *const *types, size_t ntypes, const char *ct, size_t len);

/* encode_etag: the ETag of a coded representation: the opaque tag gets
 * "-<coding>" before its closing quote ("abc" -> "abc-br", W/"x" ->
 * W/"x-gzip"; identity made by inflating gets "-identity").  Writes at
 * most cap bytes to out; returns the length, or 0 when etag is not a
 * quoted entity tag or out is too small. */
size_t encode_etag(const char *etag, size_t len, enum coding coding, bool inflated, char *out,
                   size_t cap);

/* encode_strip_etag_suffixes: an If-None-Match / If-Match / If-Range value
 * with the coding suffixes encode_etag() adds taken out of its entity tags
 * ("abc-br" -> "abc"), so that the application recognises its own tags.
 * Writes at most cap bytes to out; returns the length, or 0 when nothing
 * was changed (or out is too small: the value then goes as it is). */
size_t encode_strip_etag_suffixes(const char *v, size_t len, char *out, size_t cap);

/* encode_is_digest_field: Content-Digest, Repr-Digest or Digest (RFC 9530,
 * RFC 3230): digests of the bytes as sent, which coding invalidates. */
bool encode_is_digest_field(const char *name, size_t len);

/* encode_level: the level the policy gives coding (cached: the level for
 * variants made once). */
int encode_level(const struct config_compress *cc, enum coding coding, bool cached);

/* ---- streaming ----------------------------------------------------------------- */

/* Caps on inflating a response (zip-bomb defence; compress/inflate.h). */
#define ENCODE_INFLATE_MAX_OUTPUT ((size_t)1 << 30)
#define ENCODE_INFLATE_MAX_RATIO 1032u

struct encoder {
    struct compressor *compressor; /* ENCODE_COMPRESS */
    struct inflater *inflater;     /* ENCODE_INFLATE */
    compress_sink_f *sink;         /* where the output goes */
    void *sink_ctx;
    char err[128]; /* why the last call failed */
};

/* encoder_start: set e up for plan (action COMPRESS or INFLATE) at the
 * policy's streaming level; output goes to sink(ctx, ...).  False (with
 * e->err) when the library cannot allocate. */
bool encoder_start(struct encoder *e, const struct encode_plan *plan,
                   const struct config_compress *cc, compress_sink_f *sink, void *ctx);

/* encoder_write: feed n body bytes, then flush, so that what the sink got
 * decodes to everything written so far (a slow upstream's pieces are not
 * held back).  False with e->err on corrupt gzip, a cap exceeded or a
 * sink that refused: the response cannot be completed. */
bool encoder_write(struct encoder *e, const void *p, size_t n);

/* encoder_finish: the body is over: the compressor's trailer, or a check
 * that the gzip body was complete.  False with e->err otherwise. */
bool encoder_finish(struct encoder *e);

/* encoder_active: e was started and not yet freed. */
bool encoder_active(const struct encoder *e);

/* encoder_free: release e (started or not); it may be started again. */
void encoder_free(struct encoder *e);

/* ---- variants of stored objects ------------------------------------------------ */

/* Longest secondary key of a variant beyond its object's own, and in all
 * (an object's own is at most VARY_KEY_MAX, 4096, in proxy/cachepath.c). */
#define ENCODE_VARIANT_KEY_EXTRA 40
#define ENCODE_SECONDARY_MAX (4096 + ENCODE_VARIANT_KEY_EXTRA)

/* Variants of bodies larger than this are made at the streaming level, not
 * the cached one: they are made on a worker thread, and brotli 7 or gzip 9
 * over 8 MiB takes about a second there. */
#define ENCODE_CACHED_LEVEL_MAX_BODY ((size_t)1 << 20)

/* encode_variant_key: the secondary key of src's variant for plan: src's
 * own secondary key, a 0x1f byte, the coding's name and the hex of a hash
 * of src's head, body and response time, so that a variant of an older
 * version of the object is never taken for the current one.  Returns the
 * length (at most src->secondary_len + ENCODE_VARIANT_KEY_EXTRA); cap must
 * allow that. */
size_t encode_variant_key(const struct cache_object *src, const struct encode_plan *plan, char *out,
                          size_t cap);

/* encode_variant_make: src's variant for plan, made from its whole body at
 * the policy's cached level: the same keys (secondary from
 * encode_variant_key()), freshness, tags and validators as src, a head with
 * Content-Encoding set (or removed when inflating), the ETag suffixed
 * (encode_etag()) and Accept-Encoding in Vary; its `vary` is empty, so a
 * lookup by Vary never selects it.  Returns the object with one reference,
 * or NULL (with a reason in err) when the body does not decode, outgrows
 * max_body, or memory runs out. */
struct cache_object *encode_variant_make(const struct cache_object *src,
                                         const struct encode_plan *plan,
                                         const struct config_compress *cc, size_t max_body,
                                         char *err, size_t errlen);

/* Variants being made, process-wide, by a hash of their keys (primary
 * and secondary): a worker that wants a variant another worker is making at
 * that moment does not make it too (a burst on a new page would otherwise
 * compress it once per worker); it answers without it this once.
 * encode_variant_claim: true when the caller may make it (it must then call
 * encode_variant_release with the same hash); false when it is being made.
 * Thread-safe.  When the table is full, claims succeed (the work may then
 * be done twice, never not at all). */
#define ENCODE_MAKING_MAX 64
bool encode_variant_claim(uint64_t hash);
void encode_variant_release(uint64_t hash);

/* Process-wide counters (for logs, tests and the admin stats). */
struct encode_stats {
    uint64_t streamed[CODING_COUNT]; /* responses compressed while streaming */
    uint64_t inflated;               /* responses inflated while streaming */
    uint64_t variants[CODING_COUNT]; /* variants made from stored objects */
    uint64_t variant_failures;
    uint64_t bytes_in;  /* body bytes fed to encoders (streaming and variants) */
    uint64_t bytes_out; /* bytes they produced */
};

/* encode_stats_read: a copy of the counters (each read atomically). */
void encode_stats_read(struct encode_stats *out);

#endif
