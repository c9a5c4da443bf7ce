/*
 * proxy/encode.c: the content coding of responses (see encode.h).
 */
#include "proxy/encode.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "cache/store.h"
#include "proxy/buf.h"

static struct {
    atomic_uint_fast64_t streamed[CODING_COUNT];
    atomic_uint_fast64_t inflated;
    atomic_uint_fast64_t variants[CODING_COUNT];
    atomic_uint_fast64_t variant_failures;
    atomic_uint_fast64_t bytes_in;
    atomic_uint_fast64_t bytes_out;
} stats;

void encode_stats_read(struct encode_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < CODING_COUNT; i++) {
        out->streamed[i] = atomic_load(&stats.streamed[i]);
        out->variants[i] = atomic_load(&stats.variants[i]);
    }
    out->inflated = atomic_load(&stats.inflated);
    out->variant_failures = atomic_load(&stats.variant_failures);
    out->bytes_in = atomic_load(&stats.bytes_in);
    out->bytes_out = atomic_load(&stats.bytes_out);
}

/* ---- the plan ------------------------------------------------------------------ */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool value_is(const char *v, size_t len, const char *lit)
{
    while (len > 0 && is_ows(*v)) {
        v++;
        len--;
    }
    while (len > 0 && is_ows(v[len - 1]))
        len--;
    return len == strlen(lit) && strncasecmp(v, lit, len) == 0;
}

/* The media type of a Content-Type value is listed (a "text/" type ending in
 * a star lists a whole top-level type). */
bool encode_type_listed(char *const *types, size_t ntypes, const char *ct, size_t len)
{
    size_t n = 0;
    while (n < len && ct[n] != ';')
        n++;
    while (n > 0 && is_ows(ct[n - 1]))
        n--;
    while (n > 0 && is_ows(*ct)) {
        ct++;
        n--;
    }
    for (size_t i = 0; i < ntypes; i++) {
        const char *t = types[i];
        size_t tl = strlen(t);
        if (tl >= 2 && t[tl - 1] == '*' && t[tl - 2] == '/') {
            if (n > tl - 1 && strncasecmp(ct, t, tl - 1) == 0)
                return true;
        } else if (tl == n && strncasecmp(ct, t, n) == 0) {
            return true;
        }
    }
    return false;
}

static void note_field(struct encode_response *r, const char *name, size_t nlen, const char *v,
                       size_t vlen)
{
    if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0) {
        r->content_type = v;
        r->content_type_len = vlen;
    } else if (nlen == 16 && strncasecmp(name, "content-encoding", 16) == 0) {
        r->content_encoding = v;
        r->content_encoding_len = vlen;
    } else if (nlen == 13 && strncasecmp(name, "cache-control", 13) == 0) {
        if (http_list_has_token(v, vlen, "no-transform", 12))
            r->no_transform = true;
    } else if (nlen == 4 && strncasecmp(name, "vary", 4) == 0) {
        if (http_list_has_token(v, vlen, "accept-encoding", 15) ||
            http_list_has_token(v, vlen, "*", 1))
            r->vary_has_ae = true;
    }
}

void encode_response_from_head(struct encode_response *r, const char *base,
                               const struct http_head *resp, bool head_request)
{
    memset(r, 0, sizeof *r);
    r->status = resp->status;
    r->head_request = head_request;
    for (unsigned i = 0; i < resp->nfields; i++) {
        const struct http_field *f = &resp->fields[i];
        struct http_span v = http_span_trim(base, f->value);
        note_field(r, base + f->name.off, f->name.len, base + v.off, v.len);
        if (http_span_is(base, f->name, "content-length") &&
            !http_head_find(base, resp, "transfer-encoding")) {
            uint64_t n = 0;
            bool ok = v.len > 0 && v.len <= 19;
            for (uint32_t k = 0; ok && k < v.len; k++) {
                char ch = base[v.off + k];
                ok = ch >= '0' && ch <= '9';
                n = n * 10 + (uint64_t)(ch - '0');
            }
            r->length_known = ok;
            r->length = ok ? n : 0;
        }
    }
}

void encode_response_from_object(struct encode_response *r, const struct cache_object *obj,
                                 bool head_request)
{
    memset(r, 0, sizeof *r);
    r->status = obj->status;
    r->head_request = head_request;
    r->length_known = true;
    r->length = obj->body_len;
    const char *p = obj->head, *end = obj->head + obj->head_len;
    const char *name, *v;
    size_t nlen, vlen;
    while (http_block_next(&p, end, &name, &nlen, &v, &vlen))
        note_field(r, name, nlen, v, vlen);
}

static const struct config_compress_coding *coding_config(const struct config_compress *cc,
                                                          enum coding coding)
{
    switch (coding) {
    case CODING_BR:
        return &cc->brotli;
    case CODING_GZIP:
        return &cc->gzip;
    case CODING_ZSTD:
        return &cc->zstd;
    default:
        return NULL;
    }
}

int encode_level(const struct config_compress *cc, enum coding coding, bool cached)
{
    const struct config_compress_coding *c = coding_config(cc, coding);
    if (!c)
        return 0;
    return cached ? c->cached_level : c->level;
}

static unsigned offered_codings(const struct config_compress *cc)
{
    unsigned mask = 0;
    for (int c = 0; c < CODING_COUNT; c++) {
        const struct config_compress_coding *cfg = coding_config(cc, (enum coding)c);
        if (cfg && cfg->enabled)
            mask |= CODING_BIT(c);
    }
    return mask;
}

static bool status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 206 && status != 304;
}

void encode_plan_for(const struct config_compress *cc, const char *ae, size_t ae_len,
                     const struct encode_response *r, struct encode_plan *plan)
{
    *plan = (struct encode_plan){.action = ENCODE_NONE, .coding = CODING_IDENTITY};
    if (!cc || !cc->enabled)
        return;
    bool gzip_body =
        r->content_encoding && (value_is(r->content_encoding, r->content_encoding_len, "gzip") ||
                                value_is(r->content_encoding, r->content_encoding_len, "x-gzip"));
    if (gzip_body && cc->upstream_gzip) {
        /* We asked for gzip on the client's behalf: undo it for a client
         * that does not take it (its head too, for HEAD). */
        plan->vary = !r->vary_has_ae;
        if (!status_has_body(r->status) && !r->head_request)
            return;
        if (negotiate_coding(ae, ae_len, CODING_BIT(CODING_GZIP), NULL) == CODING_GZIP)
            return;
        plan->action = ENCODE_INFLATE;
        return;
    }
    if (!status_has_body(r->status) || r->no_transform || !r->content_type ||
        !encode_type_listed(cc->types, cc->ntypes, r->content_type, r->content_type_len))
        return;
    if (r->content_encoding && !value_is(r->content_encoding, r->content_encoding_len, "identity"))
        return;
    plan->vary = !r->vary_has_ae;
    if (r->head_request || (r->length_known && r->length < cc->min_length))
        return;
    enum coding c = negotiate_coding(ae, ae_len, offered_codings(cc), NULL);
    if (c == CODING_IDENTITY)
        return;
    plan->action = ENCODE_COMPRESS;
    plan->coding = c;
}

size_t encode_etag(const char *etag, size_t len, enum coding coding, bool inflated, char *out,
                   size_t cap)
{
    size_t open = len >= 2 && etag[0] == 'W' && etag[1] == '/' ? 2 : 0;
    if (len < open + 2 || etag[open] != '"' || etag[len - 1] != '"')
        return 0;
    const char *suffix = inflated ? "identity" : coding_name(coding);
    size_t slen = strlen(suffix);
    size_t n = len - 1 + 1 + slen + 1;
    if (n > cap)
        return 0;
    memcpy(out, etag, len - 1);
    out[len - 1] = '-';
    memcpy(out + len, suffix, slen);
    out[len + slen] = '"';
    return n;
}

size_t encode_strip_etag_suffixes(const char *v, size_t len, char *out, size_t cap)
{
    static const char *const suffixes[] = {"-br\"", "-gzip\"", "-zstd\"", "-identity\""};
    size_t n = 0;
    bool changed = false;
    for (size_t i = 0; i < len;) {
        size_t skip = 0;
        for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0] && !skip; k++) {
            size_t sl = strlen(suffixes[k]);
            if (len - i >= sl && memcmp(v + i, suffixes[k], sl) == 0)
                skip = sl - 1; /* keep the closing quote */
        }
        if (skip) {
            changed = true;
            i += skip;
            continue;
        }
        if (n == cap)
            return 0;
        out[n++] = v[i++];
    }
    return changed ? n : 0;
}

bool encode_is_digest_field(const char *name, size_t len)
{
    return (len == 14 && strncasecmp(name, "content-digest", 14) == 0) ||
           (len == 11 && strncasecmp(name, "repr-digest", 11) == 0) ||
           (len == 6 && strncasecmp(name, "digest", 6) == 0);
}

/* ---- streaming ----------------------------------------------------------------- */

bool encoder_active(const struct encoder *e)
{
    return e->compressor || e->inflater;
}

/* Counts the output on its way to the caller's sink. */
static bool counting_sink(void *ctx, const void *p, size_t n)
{
    struct encoder *e = ctx;
    atomic_fetch_add(&stats.bytes_out, n);
    return e->sink(e->sink_ctx, p, n);
}

bool encoder_start(struct encoder *e, const struct encode_plan *plan,
                   const struct config_compress *cc, compress_sink_f *sink, void *ctx)
{
    encoder_free(e);
    e->err[0] = '\0';
    e->sink = sink;
    e->sink_ctx = ctx;
    if (plan->action == ENCODE_INFLATE) {
        e->inflater = inflater_init(ENCODE_INFLATE_MAX_OUTPUT, ENCODE_INFLATE_MAX_RATIO,
                                    counting_sink, e, e->err, sizeof e->err);
        if (e->inflater)
            atomic_fetch_add(&stats.inflated, 1);
        return e->inflater != NULL;
    }
    const struct compressor_ops *ops = compressor_ops_for(plan->coding);
    if (plan->action != ENCODE_COMPRESS || !ops) {
        snprintf(e->err, sizeof e->err, "nothing to encode");
        return false;
    }
    e->compressor =
        ops->init(encode_level(cc, plan->coding, false), counting_sink, e, e->err, sizeof e->err);
    if (e->compressor)
        atomic_fetch_add(&stats.streamed[plan->coding], 1);
    return e->compressor != NULL;
}

bool encoder_write(struct encoder *e, const void *p, size_t n)
{
    atomic_fetch_add(&stats.bytes_in, n);
    if (e->inflater)
        return inflater_write(e->inflater, p, n, e->err, sizeof e->err);
    if (!e->compressor)
        return false;
    const struct compressor_ops *ops = e->compressor->ops;
    if (!ops->write(e->compressor, p, n) || !ops->flush(e->compressor)) {
        snprintf(e->err, sizeof e->err, "%s compression failed", ops->name);
        return false;
    }
    return true;
}

bool encoder_finish(struct encoder *e)
{
    if (e->inflater)
        return inflater_finish(e->inflater, e->err, sizeof e->err);
    if (!e->compressor)
        return false;
    if (!e->compressor->ops->finish(e->compressor)) {
        snprintf(e->err, sizeof e->err, "%s compression failed", e->compressor->ops->name);
        return false;
    }
    return true;
}

void encoder_free(struct encoder *e)
{
    if (e->compressor)
        e->compressor->ops->free(&e->compressor);
    inflater_free(&e->inflater);
}

/* ---- variants being made -------------------------------------------------------- */

static pthread_mutex_t making_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uint64_t hash;
    bool used;
} making[ENCODE_MAKING_MAX];

bool encode_variant_claim(uint64_t hash)
{
    bool claimed = true;
    int free_slot = -1;
    pthread_mutex_lock(&making_lock);
    for (int i = 0; i < ENCODE_MAKING_MAX; i++) {
        if (making[i].used && making[i].hash == hash) {
            claimed = false;
            break;
        }
        if (!making[i].used && free_slot < 0)
            free_slot = i;
    }
    if (claimed && free_slot >= 0) {
        making[free_slot].hash = hash;
        making[free_slot].used = true;
    }
    pthread_mutex_unlock(&making_lock);
    return claimed;
}

void encode_variant_release(uint64_t hash)
{
    pthread_mutex_lock(&making_lock);
    for (int i = 0; i < ENCODE_MAKING_MAX; i++) {
        if (making[i].used && making[i].hash == hash) {
            making[i].used = false;
            break;
        }
    }
    pthread_mutex_unlock(&making_lock);
}

/* ---- variants ------------------------------------------------------------------ */

size_t encode_variant_key(const struct cache_object *src, const struct encode_plan *plan, char *out,
                          size_t cap)
{
    XXH3_state_t state;
    XXH3_64bits_reset(&state);
    XXH3_64bits_update(&state, src->head, src->head_len);
    uint64_t more[3] = {src->body_hash, (uint64_t)src->response_time, (uint64_t)src->body_len};
    XXH3_64bits_update(&state, more, sizeof more);
    const char *name = plan->action == ENCODE_INFLATE ? "identity" : coding_name(plan->coding);
    if (cap < src->secondary_len + ENCODE_VARIANT_KEY_EXTRA)
        return 0;
    memcpy(out, src->secondary_key, src->secondary_len);
    int n = snprintf(out + src->secondary_len, cap - src->secondary_len, "%c%s:%016llx",
                     CACHE_DERIVED_MARK, name, (unsigned long long)XXH3_64bits_digest(&state));
    return src->secondary_len + (size_t)n;
}

/* The variant's head: src's fields but Content-Encoding, Content-Length,
 * ETag and Vary, then those four as the variant has them. */
static void variant_head(struct buf *out, const struct cache_object *src,
                         const struct encode_plan *plan, const char *etag, size_t etag_len)
{
    const char *p = src->head, *end = src->head + src->head_len;
    const char *name, *v;
    size_t nlen, vlen;
    struct buf vary = {0};
    for (;;) {
        const char *line = p;
        if (!http_block_next(&p, end, &name, &nlen, &v, &vlen))
            break;
        if (nlen == 4 && strncasecmp(name, "vary", 4) == 0) {
            if (vlen > 0) {
                if (vary.len > 0)
                    buf_append(&vary, ", ", 2);
                buf_append(&vary, v, vlen);
            }
            continue;
        }
        if ((nlen == 16 && strncasecmp(name, "content-encoding", 16) == 0) ||
            (nlen == 14 && strncasecmp(name, "content-length", 14) == 0) ||
            (nlen == 4 && strncasecmp(name, "etag", 4) == 0) || encode_is_digest_field(name, nlen))
            continue;
        buf_append(out, line, (size_t)(p - line));
    }
    if (plan->action == ENCODE_COMPRESS)
        buf_appendf(out, "Content-Encoding: %s\r\n", coding_name(plan->coding));
    if (etag_len > 0)
        buf_appendf(out, "ETag: %.*s\r\n", (int)etag_len, etag);
    if (vary.len == 0 || !http_list_has_token(vary.data, vary.len, "accept-encoding", 15)) {
        if (vary.len > 0)
            buf_append(&vary, ", ", 2);
        buf_append_str(&vary, "Accept-Encoding");
    }
    buf_appendf(out, "Vary: %.*s\r\n", (int)vary.len, vary.data);
    if (vary.oom)
        out->oom = true;
    buf_release(&vary);
}

static bool builder_sink(void *ctx, const void *p, size_t n)
{
    atomic_fetch_add(&stats.bytes_out, n);
    return cache_object_builder_append(ctx, p, n);
}

/* Run src's body through the compressor or inflater into b. */
static bool variant_body(struct cache_object_builder *b, const struct cache_object *src,
                         const struct encode_plan *plan, const struct config_compress *cc,
                         size_t max_body, char *err, size_t errlen)
{
    atomic_fetch_add(&stats.bytes_in, src->body_len);
    if (plan->action == ENCODE_INFLATE) {
        struct inflater *z =
            inflater_init(max_body, ENCODE_INFLATE_MAX_RATIO, builder_sink, b, err, errlen);
        bool ok = z != NULL;
        for (size_t i = 0; ok && i < src->nbody; i++)
            ok = inflater_write(z, src->body[i].iov_base, src->body[i].iov_len, err, errlen);
        ok = ok && inflater_finish(z, err, errlen);
        inflater_free(&z);
        return ok;
    }
    const struct compressor_ops *ops = compressor_ops_for(plan->coding);
    struct compressor *c =
        ops ? ops->init(encode_level(cc, plan->coding, true), builder_sink, b, err, errlen) : NULL;
    bool ok = c != NULL;
    for (size_t i = 0; ok && i < src->nbody; i++)
        ok = ops->write(c, src->body[i].iov_base, src->body[i].iov_len);
    ok = ok && ops->finish(c);
    if (c)
        ops->free(&c);
    if (!ok && c == NULL && err[0] == '\0')
        snprintf(err, errlen, "cannot start the compressor");
    else if (!ok)
        snprintf(err, errlen, "compression failed or the result is too large");
    return ok;
}

struct cache_object *encode_variant_make(const struct cache_object *src,
                                         const struct encode_plan *plan,
                                         const struct config_compress *cc, size_t max_body,
                                         char *err, size_t errlen)
{
    struct cache_object_builder *b = NULL;
    struct buf head = {0};
    char secondary[ENCODE_SECONDARY_MAX];
    char etag[CACHE_OBJECT_ETAG_MAX + 1];
    size_t etag_len = 0;
    err[0] = '\0';
    size_t slen = encode_variant_key(src, plan, secondary, sizeof secondary);
    if (slen == 0) {
        snprintf(err, errlen, "secondary key too long");
        goto fail;
    }
    if (src->etag_len > 0)
        etag_len = encode_etag(src->etag, src->etag_len, plan->coding,
                               plan->action == ENCODE_INFLATE, etag, sizeof etag);
    variant_head(&head, src, plan, etag, etag_len);
    if (head.oom) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    struct cache_object_meta meta = {
        .primary_key = src->primary_key,
        .primary_len = src->primary_len,
        .primary_hash = src->primary_hash,
        .secondary_key = secondary,
        .secondary_len = slen,
        .status = src->status,
        .request_time = src->request_time,
        .response_time = src->response_time,
        .corrected_initial_age = src->corrected_initial_age,
        .lifetime = src->lifetime,
        .stale_while_revalidate = src->stale_while_revalidate,
        .stale_if_error = src->stale_if_error,
        .stored_at = src->stored_at,
        .no_cache = src->no_cache,
        .must_revalidate = src->must_revalidate,
        .etag = etag,
        .etag_len = etag_len,
        .last_modified_ms = src->last_modified_ms,
        .tags = src->tags,
        .ntags = src->ntags,
    };
    b = cache_object_builder_new(&meta, max_body);
    if (!b || !cache_object_builder_set_head(b, head.data ? head.data : "", head.len)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (!variant_body(b, src, plan, cc, max_body, err, errlen))
        goto fail;
    struct cache_object *obj = cache_object_builder_finish(&b);
    if (!obj) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    buf_release(&head);
    if (plan->action == ENCODE_COMPRESS)
        atomic_fetch_add(&stats.variants[plan->coding], 1);
    else
        atomic_fetch_add(&stats.variants[CODING_IDENTITY], 1);
    return obj;
fail:
    atomic_fetch_add(&stats.variant_failures, 1);
    cache_object_builder_abandon(&b);
    buf_release(&head);
    return NULL;
}
