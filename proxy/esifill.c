/*
 * proxy/esifill.c: which responses are ESI templates, and parsing them into
 * the encoding the cache stores (see esifill.h).
 */
#include "proxy/esifill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/esi.h"
#include "compress/inflate.h"
#include "proxy/encode.h"

struct esi_fill {
    struct esi_parser *parser;
    struct inflater *inflater; /* gzip bodies */
    size_t max_body;
    size_t fed; /* decoded bytes given to the parser */
    bool failed;
    char err[128];
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The value of directive `content` lists ESI/1.0. */
static bool content_lists_esi(const char *p, const char *end)
{
    bool quoted = p < end && *p == '"';
    if (quoted)
        p++;
    while (p < end) {
        while (p < end && is_ows(*p))
            p++;
        const char *start = p;
        while (p < end && !is_ows(*p) && *p != '"' && (quoted || (*p != ',' && *p != ';')))
            p++;
        if (p - start == 7 && strncasecmp(start, "ESI/1.0", 7) == 0)
            return true;
        if (p == start || (p < end && (*p == '"' || (!quoted && (*p == ',' || *p == ';')))))
            return false;
    }
    return false;
}

bool esi_surrogate_asks(const char *v, size_t len)
{
    const char *end = v + len;
    const char *p = v;
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        if ((size_t)(end - p) >= 8 && strncasecmp(p, "content=", 8) == 0 &&
            content_lists_esi(p + 8, end))
            return true;
        /* Skip to the next directive, over a quoted string. */
        bool quoted = false;
        while (p < end && (quoted || *p != ',')) {
            if (*p == '"')
                quoted = !quoted;
            p++;
        }
    }
    return false;
}

static bool coding_is(const char *base, const struct http_field *f, const char *name)
{
    const char *v = base + f->value.off;
    size_t n = f->value.len;
    return n == strlen(name) && strncasecmp(v, name, n) == 0;
}

bool esi_response_is_template(const struct config_esi *esi, const char *base,
                              const struct http_head *resp)
{
    if (!esi || esi->mode == ESI_OFF || resp->status != 200)
        return false;
    const struct http_field *ct = http_head_find(base, resp, "content-type");
    if (!ct || !encode_type_listed(esi->types, esi->ntypes, base + ct->value.off, ct->value.len))
        return false;
    const struct http_field *ce = http_head_find(base, resp, "content-encoding");
    if (ce && !coding_is(base, ce, "gzip") && !coding_is(base, ce, "identity"))
        return false;
    if (esi->mode == ESI_ON)
        return true;
    for (unsigned i = 0; i < resp->nfields; i++) {
        const struct http_field *f = &resp->fields[i];
        if (http_span_is(base, f->name, "surrogate-control") &&
            esi_surrogate_asks(base + f->value.off, f->value.len))
            return true;
    }
    return false;
}

static bool fail(struct esi_fill *f, const char *why)
{
    if (!f->failed) {
        size_t n = strlen(why) < sizeof f->err - 1 ? strlen(why) : sizeof f->err - 1;
        memcpy(f->err, why, n);
        f->err[n] = '\0';
    }
    f->failed = true;
    return false;
}

static bool parse_decoded(void *ctx, const void *p, size_t n)
{
    struct esi_fill *f = ctx;
    if (n > f->max_body - f->fed)
        return fail(f, "the ESI template is larger than max_object_size");
    f->fed += n;
    if (!esi_parser_feed(f->parser, p, n))
        return fail(f, "out of memory parsing the ESI template");
    return true;
}

struct esi_fill *esi_fill_new(bool gzip, size_t max_body)
{
    struct esi_fill *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->max_body = max_body;
    f->parser = esi_parser_new();
    if (!f->parser)
        goto fail;
    if (gzip) {
        /* The size limit is parse_decoded()'s, on the inflated bytes. */
        f->inflater =
            inflater_init(0, ENCODE_INFLATE_MAX_RATIO, parse_decoded, f, f->err, sizeof f->err);
        if (!f->inflater)
            goto fail;
    }
    return f;
fail:
    esi_fill_free(&f);
    return NULL;
}

bool esi_fill_write(struct esi_fill *f, const char *p, size_t n)
{
    if (f->failed)
        return false;
    if (!f->inflater)
        return parse_decoded(f, p, n);
    char why[64];
    if (!inflater_write(f->inflater, p, n, why, sizeof why) && !f->failed) {
        char msg[128];
        snprintf(msg, sizeof msg, "the gzip ESI template does not decode: %.60s", why);
        return fail(f, msg);
    }
    return !f->failed;
}

bool esi_fill_finish(struct esi_fill *f, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (f->failed)
        return false;
    char why[128];
    if (f->inflater && !inflater_finish(f->inflater, why, sizeof why))
        return fail(f, "the gzip ESI template is truncated");
    if (!esi_parser_finish(f->parser))
        return fail(f, "out of memory parsing the ESI template");
    const struct esi_template *t = esi_parser_template(f->parser);
    size_t n = esi_template_encode(t, NULL, 0);
    unsigned char *p = malloc(n);
    if (!p)
        return fail(f, "out of memory encoding the ESI template");
    esi_template_encode(t, p, n);
    *out = p;
    *len = n;
    return true;
}

const char *esi_fill_error(const struct esi_fill *f)
{
    return f->err;
}

void esi_fill_free(struct esi_fill **f)
{
    if (!*f)
        return;
    esi_parser_free(&(*f)->parser);
    inflater_free(&(*f)->inflater);
    free(*f);
    *f = NULL;
}
