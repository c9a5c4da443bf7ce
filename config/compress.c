/*
 * config/compress.c: the `compress { ... }` blocks, at the top level and in
 * a route (struct config_compress, config.h).
 *
 * A block is always read over the defaults of config_compress_init(), never
 * over another block: a route's block replaces the top-level one as a
 * whole, and what it does not set keeps its default.  A route without a
 * block gets a deep copy of the top-level settings from
 * config_compress_resolve() once the whole file is read, since the
 * top-level block may come after the route.  Every struct config_compress
 * owns its types, so config_compress_clear() frees each one on its own and
 * nothing is shared.
 * Media types are checked for the syntax they have on the wire
 * (RFC 9110 8.3.1), so that a type that could never match a response fails
 * the load instead of silently never matching; config_media_type_add() is
 * that check for `esi_types` too (config/esi.c).  Called only from the
 * loader's walk (config/config.c): no locking; what is allocated here is
 * owned by the config being built.
 */
#include <assert.h>
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config/load.h"
#include "config/units.h"

#define MIN_LENGTH_DEFAULT 1024

/* Text that is worth compressing and is not compressed already; images
 * other than SVG, video, fonts and archives are. */
static const char *const default_types[] = {
    "text/html",
    "text/plain",
    "text/css",
    "text/xml",
    "text/javascript",
    "application/javascript",
    "application/json",
    "application/xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/manifest+json",
    "image/svg+xml",
};

#define NDEFAULT_TYPES (sizeof default_types / sizeof default_types[0])

/* The levels each library takes: brotli's quality 0..11; zlib's 1..9 (0
 * stores without compressing); zstd's 1..19 (20..22 are its "ultra" levels,
 * which need far more memory per stream). */
struct coding_def {
    const char *name;
    int min;
    int max;
    size_t offset; /* of its struct config_compress_coding */
};

enum { DEF_BROTLI, DEF_GZIP, DEF_ZSTD, NCODINGS };

static const struct coding_def codings[NCODINGS] = {
    [DEF_BROTLI] = {"brotli", 0, 11, offsetof(struct config_compress, brotli)},
    [DEF_GZIP] = {"gzip", 1, 9, offsetof(struct config_compress, gzip)},
    [DEF_ZSTD] = {"zstd", 1, 19, offsetof(struct config_compress, zstd)},
};

/* What the directives of one block share while it is read: the handlers'
 * OBJ in the compress context. */
struct compress_build {
    struct config_compress *c;
    bool types_given;                   /* the first `types` replaces the defaults, later
                                         * ones append */
    const struct conf_directive *onoff; /* `on;` or `off;`, once seen */
};

static struct config_compress_coding *coding_of(struct config_compress *c,
                                                const struct coding_def *def)
{
    return (struct config_compress_coding *)((char *)c + def->offset);
}

/* ---- life cycle ---- */

static void free_types(struct config_compress *c)
{
    loader_list_free(&c->types, &c->ntypes);
}

bool config_compress_init(struct config_compress *c)
{
    *c = (struct config_compress){
        .enabled = true,
        .min_length = MIN_LENGTH_DEFAULT,
        .brotli = {.enabled = true, .level = 4, .cached_level = 7},
        .gzip = {.enabled = true, .level = 6, .cached_level = 9},
        .zstd = {.enabled = true, .level = 3, .cached_level = 8},
        .upstream_gzip = false,
    };
    return loader_list_copy(&c->types, &c->ntypes, default_types, NDEFAULT_TYPES);
}

void config_compress_clear(struct config_compress *c)
{
    free_types(c);
    *c = (struct config_compress){0};
}

bool config_compress_resolve(struct config_loader *ld)
{
    struct config *cfg = ld->cfg;
    const struct config_compress *top = &cfg->compress;

    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct config_route *r = &cfg->routes[i];

        if (ld->routes_pending[i].compress)
            continue;
        assert(r->compress.types == NULL);
        r->compress = *top;
        if (!loader_list_copy(&r->compress.types, &r->compress.ntypes,
                              (const char *const *)top->types, top->ntypes))
            return loader_oom(ld, &r->pos);
    }
    return true;
}

/* ---- the blocks ---- */

static bool read_block(struct config_loader *ld, const struct conf_directive *d,
                       struct config_compress *c)
{
    struct compress_build b = {.c = c};

    return loader_walk(ld, CONFIG_CTX_COMPRESS, d->children, d->nchildren, &b);
}

/* cfg->compress already holds the defaults (config_compress_init() when the
 * config was made), and the block may appear once. */
bool config_main_compress(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config *cfg = obj;

    return read_block(ld, d, &cfg->compress);
}

bool config_route_compress(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_route_build *rb = obj;

    rb->pending->compress = d;
    if (!config_compress_init(&rb->route->compress))
        return loader_oom(ld, &d->name.pos);
    return read_block(ld, d, &rb->route->compress);
}

/* ---- on; off; ---- */

static bool set_enabled(struct config_loader *ld, const struct conf_directive *d,
                        struct compress_build *b, bool on)
{
    if (b->onoff) {
        const struct config_pos *p = &b->onoff->name.pos;
        return loader_error(ld, &d->name.pos, "'%s' contradicts '%s' (at %s:%u:%u)", d->name.text,
                            b->onoff->name.text, p->file, p->line, p->col);
    }
    b->onoff = d;
    b->c->enabled = on;
    return true;
}

bool config_compress_on(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    return set_enabled(ld, d, obj, true);
}

bool config_compress_off(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    return set_enabled(ld, d, obj, false);
}

/* ---- types ---- */

/* RFC 9110 5.6.2 tchar, less '*': a wildcard is a whole subtype or nothing.
 * config/cache.c and proxy/http.c have the same test. */
static bool is_name_char(unsigned char c)
{
    if (c < 0x80 && isalnum(c))
        return true;
    return c != '\0' && strchr("!#$%&'+-.^_`|~", c) != NULL;
}

static bool is_name(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_name_char((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* TYPE/SUBTYPE (RFC 9110 8.3.1, without parameters), where SUBTYPE may be
 * "*" alone. */
static bool valid_type(const char *s, size_t len)
{
    const char *slash = memchr(s, '/', len);
    size_t tlen, slen;

    if (!slash)
        return false;
    tlen = (size_t)(slash - s);
    slen = len - tlen - 1;
    if (!is_name(s, tlen))
        return false;
    if (slen == 1 && slash[1] == '*')
        return true;
    return is_name(slash + 1, slen);
}

bool config_media_type_add(struct config_loader *ld, const struct conf_arg *a, const char *what,
                           char ***types, size_t *ntypes)
{
    if (!valid_type(a->text, a->len))
        return loader_error(ld, &a->pos,
                            "invalid media type '%s' for '%s' (" CONFIG_MEDIA_TYPE_EXPECTED ")",
                            a->text, what);
    return loader_list_add_lower(ld, a, "type", what, types, ntypes);
}

/* Append A to C's types.  config_media_type_add() refuses a '*' type too;
 * it gets a hint of its own here since the usual intent, '*' + '/' + '*',
 * would compress images and archives again. */
static bool add_type(struct config_loader *ld, const struct conf_arg *a, const char *what,
                     struct config_compress *c)
{
    if (strncmp(a->text, "*/", 2) == 0)
        return loader_error(ld, &a->pos,
                            "invalid media type '%s' for '%s' (" CONFIG_MEDIA_TYPE_EXPECTED
                            "; '*/*' would compress images and archives too)",
                            a->text, what);
    return config_media_type_add(ld, a, what, &c->types, &c->ntypes);
}

bool config_compress_types(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct compress_build *b = obj;

    if (!b->types_given) {
        free_types(b->c);
        b->types_given = true;
    }
    for (size_t i = 0; i < d->nargs; i++) {
        if (!add_type(ld, &d->args[i], d->name.text, b->c))
            return false;
    }
    return true;
}

/* ---- min_length, upstream_gzip ---- */

/* 0 compresses every body whatever its length. */
bool config_compress_min_length(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct compress_build *b = obj;

    return loader_size(ld, &d->args[0], d->name.text, 0, UINT64_MAX, &b->c->min_length);
}

bool config_compress_upstream_gzip(struct config_loader *ld, const struct conf_directive *d,
                                   void *obj)
{
    struct compress_build *b = obj;

    return loader_on_off(ld, &d->args[0], d->name.text, &b->c->upstream_gzip);
}

/* ---- codings ---- */

/* "; missing ';' on line N?" when argument I of D is on a later line than
 * the one before it: the usual cause of a stray argument is a missing ';'
 * that glued the next line's directive on.  "" otherwise. */
static const char *semicolon_hint(const struct conf_directive *d, size_t i, char *buf, size_t len)
{
    unsigned prev = i ? d->args[i - 1].pos.line : d->name.pos.line;

    if (d->args[i].pos.line == prev)
        return "";
    snprintf(buf, len, "; missing ';' on line %u?", prev);
    return buf;
}

/* *OUT = the level TEXT (argument A) of coding DEF; IN names the directive
 * for messages when it is not the coding's own ("" when it is). */
static bool parse_level(struct config_loader *ld, const struct conf_arg *a, const char *text,
                        const struct coding_def *def, const char *in, int *out)
{
    uint64_t v = 0;

    if (!units_parse_uint(text, strlen(text), &v) || v < (uint64_t)def->min ||
        v > (uint64_t)def->max)
        return loader_error(ld, &a->pos, "invalid level '%s' for '%s'%s (expected %d to %d)", text,
                            def->name, in, def->min, def->max);
    *out = (int)v;
    return true;
}

/* `NAME on|off [level=N];` for the coding DEF. */
static bool coding_directive(struct config_loader *ld, const struct conf_directive *d,
                             struct compress_build *b, const struct coding_def *def)
{
    static const char param[] = "level=";
    struct config_compress_coding *cc = coding_of(b->c, def);
    const struct conf_arg *level = NULL;
    char hint[64];

    if (!loader_on_off(ld, &d->args[0], def->name, &cc->enabled))
        return false;
    for (size_t i = 1; i < d->nargs; i++) {
        const struct conf_arg *a = &d->args[i];

        if (strncmp(a->text, param, sizeof param - 1) != 0)
            return loader_error(ld, &a->pos, "unknown parameter '%s' for '%s' (expected level=N%s)",
                                a->text, def->name, semicolon_hint(d, i, hint, sizeof hint));
        if (level)
            return loader_error(ld, &a->pos, "duplicate 'level=' for '%s' (first at %s:%u:%u)",
                                def->name, level->pos.file, level->pos.line, level->pos.col);
        level = a;
        if (!parse_level(ld, a, a->text + sizeof param - 1, def, "", &cc->level))
            return false;
    }
    return true;
}

bool config_compress_brotli(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    return coding_directive(ld, d, obj, &codings[DEF_BROTLI]);
}

bool config_compress_gzip(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    return coding_directive(ld, d, obj, &codings[DEF_GZIP]);
}

bool config_compress_zstd(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    return coding_directive(ld, d, obj, &codings[DEF_ZSTD]);
}

static const struct coding_def *find_coding(const char *name, size_t len)
{
    for (size_t i = 0; i < NCODINGS; i++) {
        if (strlen(codings[i].name) == len && memcmp(codings[i].name, name, len) == 0)
            return &codings[i];
    }
    return NULL;
}

/* `cached_level brotli=N gzip=N zstd=N;`, any subset, each coding once. */
bool config_compress_cached_level(struct config_loader *ld, const struct conf_directive *d,
                                  void *obj)
{
    struct compress_build *b = obj;
    const struct conf_arg *seen[NCODINGS] = {0};
    char hint[64];

    for (size_t i = 0; i < d->nargs; i++) {
        const struct conf_arg *a = &d->args[i];
        const char *eq = strchr(a->text, '=');
        const struct coding_def *def;
        size_t k;

        if (!eq)
            return loader_error(ld, &a->pos,
                                "invalid argument '%s' for 'cached_level' (expected brotli=N, "
                                "gzip=N or zstd=N%s)",
                                a->text, semicolon_hint(d, i, hint, sizeof hint));
        def = find_coding(a->text, (size_t)(eq - a->text));
        if (!def)
            return loader_error(ld, &a->pos,
                                "unknown coding '%.*s' in 'cached_level' (expected brotli, gzip "
                                "or zstd)",
                                (int)(eq - a->text), a->text);
        k = (size_t)(def - codings);
        if (seen[k])
            return loader_error(ld, &a->pos,
                                "duplicate '%s=' in 'cached_level' (first at %s:%u:%u)", def->name,
                                seen[k]->pos.file, seen[k]->pos.line, seen[k]->pos.col);
        seen[k] = a;
        if (!parse_level(ld, a, eq + 1, def, " in 'cached_level'",
                         &coding_of(b->c, def)->cached_level))
            return false;
    }
    return true;
}
