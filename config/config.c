/*
 * config/config.c: turns the syntax tree into struct config (config.h).
 *
 * config_load() parses the files (config/parser.c), then walks the tree once:
 * loader_walk() looks each directive up in the table of config/directives.h,
 * checks its context, argument count, block and repetition, and calls its
 * handler, which checks and stores the value.  The main-context, limits and
 * log handlers live here; backend and route blocks, the cache directives
 * (config/cache.c), the memcached block (config/memcached.c), the
 * compress blocks (config/compress.c), the ESI directives of a route
 * (config/esi.c) and the admin block (config/admin.c) have their own files.
 * Route backends, store tiers, inherited compress settings and the admin
 * listener's clash with `listen` are checked at the end, so a route may name
 * a backend defined after it, and the memcached, top-level compress and
 * admin blocks may come before or after what they relate to.  The config
 * copies every string it keeps, file names included, so the tree is freed
 * before config_load() returns.  On any error the half-built config is
 * freed with config_release(): every allocation is owned by the config as
 * soon as it is made.
 *
 * A loaded config is immutable and shared by reference count; the count is
 * the only thing that changes after loading, atomically.
 */
#include "config/config.h"

#include <assert.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/lexer.h"
#include "config/load.h"
#include "config/units.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define GIB (1024ull * 1024 * 1024)
#define WORKERS_MAX 256

enum shape { VALUE, BLOCK };
enum repeat { ONCE, MANY };

struct directive_def {
    enum config_context ctx;
    const char *name;
    unsigned min_args;
    unsigned max_args;
    enum shape shape;
    enum repeat repeat;
    config_handler_fn *handler;
};

static const struct directive_def directive_defs[] = {
#define DIRECTIVE_DEF(ctx, name, min, max, shape, repeat, fn)                                      \
    {CONFIG_CTX_##ctx, name, min, max, shape, repeat, fn},
    CONFIG_DIRECTIVES(DIRECTIVE_DEF)
#undef DIRECTIVE_DEF
};

#define NDIRECTIVES (sizeof directive_defs / sizeof directive_defs[0])

static const char *const context_names[] = {
#define CONTEXT_NAME(ctx, name) name,
    CONFIG_CONTEXTS(CONTEXT_NAME)
#undef CONTEXT_NAME
};

/* ---- helpers shared through config/load.h ---- */

bool loader_error(struct config_loader *ld, const struct config_pos *pos, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lexer_format_error(ld->err, ld->errlen, pos, "%s", msg);
    return false;
}

bool loader_oom(struct config_loader *ld, const struct config_pos *pos)
{
    return loader_error(ld, pos, "out of memory");
}

struct config_pos loader_pos(const struct config_loader *ld, const struct config_pos *pos)
{
    struct config_pos out = *pos;

    for (size_t i = 0; i < ld->tree->nfiles; i++) {
        if (ld->tree->files[i] == pos->file) {
            out.file = ld->cfg->files[i];
            return out;
        }
    }
    assert(!"position outside the tree's files");
    return out;
}

bool loader_grow(void **items, size_t n, size_t *cap, size_t size)
{
    if (n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        void *p = realloc(*items, ncap * size);
        if (!p)
            return false;
        *items = p;
        *cap = ncap;
    }
    memset((char *)*items + n * size, 0, size);
    return true;
}

bool loader_list_copy(char ***out, size_t *nout, const char *const *src, size_t n)
{
    *out = NULL;
    *nout = 0;
    if (n == 0)
        return true;
    *out = calloc(n, sizeof **out);
    if (!*out)
        return false;
    for (; *nout < n; (*nout)++) {
        (*out)[*nout] = strdup(src[*nout]);
        if (!(*out)[*nout])
            return false;
    }
    return true;
}

void loader_list_free(char ***list, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

static bool list_has(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], s) == 0)
            return true;
    }
    return false;
}

bool loader_list_add_lower(struct config_loader *ld, const struct conf_arg *a, const char *kind,
                           const char *what, char ***list, size_t *n)
{
    char *s = strdup(a->text);
    char **grown;

    if (!s)
        return loader_oom(ld, &a->pos);
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (list_has(*list, *n, s)) {
        loader_error(ld, &a->pos, "duplicate %s '%s' in '%s'", kind, s, what);
        goto fail;
    }
    grown = realloc(*list, (*n + 1) * sizeof *grown);
    if (!grown) {
        loader_oom(ld, &a->pos);
        goto fail;
    }
    *list = grown;
    (*list)[(*n)++] = s;
    return true;
fail:
    free(s);
    return false;
}

bool loader_uint(struct config_loader *ld, const struct conf_arg *a, const char *what, uint64_t min,
                 uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!units_parse_uint(a->text, a->len, &v) || v < min || v > max)
        return loader_error(ld, &a->pos, "invalid number '%s' for '%s' (expected %llu to %llu)",
                            a->text, what, (unsigned long long)min, (unsigned long long)max);
    *out = v;
    return true;
}

bool loader_duration(struct config_loader *ld, const struct conf_arg *a, const char *what,
                     bool nonzero, uint64_t *out_ms)
{
    uint64_t v = 0;

    if (!units_parse_duration_ms(a->text, a->len, &v))
        return loader_error(ld, &a->pos,
                            "invalid duration '%s' for '%s' (expected a number with optional "
                            "ms, s, m, h or d)",
                            a->text, what);
    if (nonzero && v == 0)
        return loader_error(ld, &a->pos, "'%s' must be greater than 0", what);
    *out_ms = v;
    return true;
}

/* "1k", "1m", "1g", "256": the shortest exact spelling of N, for messages. */
static const char *size_text(uint64_t n, char *buf, size_t len)
{
    if (n && n % GIB == 0)
        snprintf(buf, len, "%llug", (unsigned long long)(n / GIB));
    else if (n && n % MIB == 0)
        snprintf(buf, len, "%llum", (unsigned long long)(n / MIB));
    else if (n && n % KIB == 0)
        snprintf(buf, len, "%lluk", (unsigned long long)(n / KIB));
    else
        snprintf(buf, len, "%llu", (unsigned long long)n);
    return buf;
}

bool loader_size(struct config_loader *ld, const struct conf_arg *a, const char *what, uint64_t min,
                 uint64_t max, uint64_t *out)
{
    char lo[24], hi[24];
    uint64_t v = 0;

    if (!units_parse_size(a->text, a->len, &v))
        return loader_error(ld, &a->pos,
                            "invalid size '%s' for '%s' (expected a number with optional k, m "
                            "or g)",
                            a->text, what);
    if (v < min || v > max)
        return loader_error(ld, &a->pos, "size '%s' for '%s' is out of range (expected %s to %s)",
                            a->text, what, size_text(min, lo, sizeof lo),
                            size_text(max, hi, sizeof hi));
    *out = v;
    return true;
}

bool loader_on_off(struct config_loader *ld, const struct conf_arg *a, const char *what, bool *out)
{
    if (strcmp(a->text, "on") == 0)
        *out = true;
    else if (strcmp(a->text, "off") == 0)
        *out = false;
    else
        return loader_error(ld, &a->pos, "invalid value '%s' for '%s' (expected on or off)",
                            a->text, what);
    return true;
}

bool loader_split_hostport(const char *text, struct loader_hostport *hp)
{
    const char *colon;

    *hp = (struct loader_hostport){0};
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return false;
        hp->host = text + 1;
        hp->hlen = (size_t)(close - text) - 1;
        hp->bracketed = true;
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon || memchr(text, ':', (size_t)(colon - text)))
            return false;
        hp->host = text;
        hp->hlen = (size_t)(colon - text);
    }
    hp->port = colon + 1;
    hp->plen = strlen(hp->port);
    return hp->plen > 0;
}

/* ---- the walk ---- */

static const struct directive_def *find_def(enum config_context ctx, const char *name)
{
    for (size_t i = 0; i < NDIRECTIVES; i++) {
        if (directive_defs[i].ctx == ctx && strcmp(directive_defs[i].name, name) == 0)
            return &directive_defs[i];
    }
    return NULL;
}

static bool unknown_directive(struct config_loader *ld, enum config_context ctx,
                              const struct conf_directive *d)
{
    char where[128] = "";
    size_t n = 0;

    for (size_t i = 0; i < NDIRECTIVES; i++) {
        const struct directive_def *def = &directive_defs[i];
        if (strcmp(def->name, d->name.text) != 0 || n >= sizeof where)
            continue;
        n += (size_t)snprintf(where + n, sizeof where - n, "%s%s", n ? ", " : "",
                              context_names[def->ctx]);
    }
    if (n == 0)
        return loader_error(ld, &d->name.pos, "unknown directive '%s' in the %s context",
                            d->name.text, context_names[ctx]);
    return loader_error(ld, &d->name.pos,
                        "directive '%s' is not allowed in the %s context (only in: %s)",
                        d->name.text, context_names[ctx], where);
}

static void describe_args(const struct directive_def *def, char *buf, size_t len)
{
    if (def->min_args == def->max_args && def->min_args == 0)
        snprintf(buf, len, "no arguments");
    else if (def->min_args == def->max_args)
        snprintf(buf, len, "%u argument%s", def->min_args, def->min_args == 1 ? "" : "s");
    else if (def->max_args == def->min_args + 1)
        snprintf(buf, len, "%u or %u arguments", def->min_args, def->max_args);
    else
        snprintf(buf, len, "%u to %u arguments", def->min_args, def->max_args);
}

static bool check_arg_count(struct config_loader *ld, const struct directive_def *def,
                            const struct conf_directive *d)
{
    char takes[48];
    const struct conf_arg *extra;

    if (d->nargs >= def->min_args && d->nargs <= def->max_args)
        return true;
    describe_args(def, takes, sizeof takes);
    if (d->nargs < def->min_args)
        return loader_error(ld, &d->name.pos, "'%s' takes %s", def->name, takes);
    extra = &d->args[def->max_args];
    /* The usual cause: a missing ';' glues the next line's directive on. */
    if (extra->pos.line != d->name.pos.line)
        return loader_error(ld, &extra->pos, "'%s' takes %s (missing ';' on line %u?)", def->name,
                            takes, d->name.pos.line);
    return loader_error(ld, &extra->pos, "'%s' takes %s", def->name, takes);
}

static bool check_directive(struct config_loader *ld, const struct directive_def *def,
                            const struct conf_directive *d)
{
    if (!check_arg_count(ld, def, d))
        return false;
    if (def->shape == BLOCK && !d->has_block)
        return loader_error(ld, &d->name.pos, "'%s' needs a '{ ... }' block", def->name);
    if (def->shape == VALUE && d->has_block)
        return loader_error(ld, &d->block_pos, "'%s' does not take a block", def->name);
    return true;
}

bool loader_walk(struct config_loader *ld, enum config_context ctx,
                 const struct conf_directive *items, size_t n, void *obj)
{
    const struct conf_directive *first[NDIRECTIVES] = {0};

    for (size_t i = 0; i < n; i++) {
        const struct conf_directive *d = &items[i];
        const struct directive_def *def = find_def(ctx, d->name.text);
        size_t k;

        if (!def)
            return unknown_directive(ld, ctx, d);
        if (!check_directive(ld, def, d))
            return false;
        k = (size_t)(def - directive_defs);
        if (def->repeat == ONCE && first[k]) {
            const struct config_pos *p = &first[k]->name.pos;
            return loader_error(ld, &d->name.pos, "duplicate '%s'%s (first at %s:%u:%u)", def->name,
                                def->shape == BLOCK ? " block" : "", p->file, p->line, p->col);
        }
        first[k] = d;
        if (!def->handler(ld, d, obj))
            return false;
    }
    return true;
}

/* ---- main context ---- */

static bool listen_error(struct config_loader *ld, const struct conf_arg *a)
{
    return loader_error(ld, &a->pos,
                        "invalid listen address '%s' (expected IPV4:PORT, [IPV6]:PORT or *:PORT)",
                        a->text);
}

bool loader_listen(struct config_loader *ld, const struct conf_arg *a, struct config_listen *l)
{
    struct loader_hostport hp;
    char host[64];
    uint64_t port = 0;

    if (a->len >= sizeof l->text || !loader_split_hostport(a->text, &hp) || hp.hlen >= sizeof host)
        return listen_error(ld, a);
    if (!units_parse_uint(hp.port, hp.plen, &port) || port > 65535)
        return loader_error(ld, &a->pos, "invalid port in '%s' (expected 0 to 65535)", a->text);
    memcpy(host, hp.host, hp.hlen);
    host[hp.hlen] = '\0';
    if (hp.bracketed) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l->addr;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return listen_error(ld, a);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        l->addrlen = sizeof *sin6;
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&l->addr;
        if (strcmp(host, "*") == 0)
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return listen_error(ld, a);
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        l->addrlen = sizeof *sin;
    }
    snprintf(l->text, sizeof l->text, "%s", a->text);
    return true;
}

static bool same_listen(const struct config_listen *a, const struct config_listen *b)
{
    /* Port 0 is a fresh kernel-chosen port each time: never a duplicate. */
    const struct sockaddr_in *sa = (const struct sockaddr_in *)&a->addr;

    if (a->addrlen != b->addrlen || sa->sin_port == 0)
        return false;
    return memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

bool config_main_listen(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config *cfg = obj;
    struct config_listen l = {0};

    if (!loader_listen(ld, &d->args[0], &l))
        return false;
    for (size_t i = 0; i < cfg->nlistens; i++) {
        const struct config_pos *p = &cfg->listens[i].pos;
        if (same_listen(&cfg->listens[i], &l))
            return loader_error(ld, &d->args[0].pos, "duplicate listen '%s' (first at %s:%u:%u)",
                                l.text, p->file, p->line, p->col);
    }
    if (!loader_grow((void **)&cfg->listens, cfg->nlistens, &ld->listens_cap, sizeof l))
        return loader_oom(ld, &d->name.pos);
    l.pos = loader_pos(ld, &d->name.pos);
    cfg->listens[cfg->nlistens++] = l;
    return true;
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1)
        return 1;
    return n > WORKERS_MAX ? WORKERS_MAX : (unsigned)n;
}

bool config_main_workers(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config *cfg = obj;
    uint64_t n = 0;

    if (strcmp(d->args[0].text, "auto") == 0) {
        cfg->workers = online_cpus();
        return true;
    }
    if (!units_parse_uint(d->args[0].text, d->args[0].len, &n) || n < 1 || n > WORKERS_MAX)
        return loader_error(ld, &d->args[0].pos,
                            "invalid value '%s' for 'workers' (expected auto or 1 to %d)",
                            d->args[0].text, WORKERS_MAX);
    cfg->workers = (unsigned)n;
    return true;
}

bool config_main_drain_timeout(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config *cfg = obj;

    return loader_duration(ld, &d->args[0], "drain_timeout", false, &cfg->drain_timeout_ms);
}

bool config_main_limits(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config *cfg = obj;

    return loader_walk(ld, CONFIG_CTX_LIMITS, d->children, d->nchildren, &cfg->limits);
}

bool config_main_log(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config *cfg = obj;

    return loader_walk(ld, CONFIG_CTX_LOG, d->children, d->nchildren, &cfg->log);
}

/* ---- limits ---- */

static bool limit_size(struct config_loader *ld, const struct conf_directive *d, uint64_t min,
                       uint64_t max, uint64_t *out)
{
    return loader_size(ld, &d->args[0], d->name.text, min, max, out);
}

bool config_limits_header_size(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_limits *lim = obj;
    uint64_t v = 0;

    if (!limit_size(ld, d, 1 * KIB, 1 * MIB, &v))
        return false;
    lim->header_size = (size_t)v;
    return true;
}

bool config_limits_uri_size(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_limits *lim = obj;
    uint64_t v = 0;

    if (!limit_size(ld, d, 256, 1 * MIB, &v))
        return false;
    lim->uri_size = (size_t)v;
    return true;
}

bool config_limits_body_size(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_limits *lim = obj;

    return limit_size(ld, d, 0, UINT64_MAX, &lim->body_size);
}

static bool limit_count(struct config_loader *ld, const struct conf_directive *d, uint64_t max,
                        unsigned *out)
{
    uint64_t v = 0;

    if (!loader_uint(ld, &d->args[0], d->name.text, 1, max, &v))
        return false;
    *out = (unsigned)v;
    return true;
}

bool config_limits_headers(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_limits *lim = obj;

    return limit_count(ld, d, 10000, &lim->headers);
}

bool config_limits_max_connections(struct config_loader *ld, const struct conf_directive *d,
                                   void *obj)
{
    struct config_limits *lim = obj;

    return limit_count(ld, d, 1000000, &lim->max_connections);
}

bool config_limits_header_timeout(struct config_loader *ld, const struct conf_directive *d,
                                  void *obj)
{
    struct config_limits *lim = obj;

    return loader_duration(ld, &d->args[0], d->name.text, true, &lim->header_timeout_ms);
}

bool config_limits_body_timeout(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_limits *lim = obj;

    return loader_duration(ld, &d->args[0], d->name.text, true, &lim->body_timeout_ms);
}

bool config_limits_idle_timeout(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_limits *lim = obj;

    return loader_duration(ld, &d->args[0], d->name.text, true, &lim->idle_timeout_ms);
}

/* ---- log ---- */

/* The directory of the main config file as an absolute path, no trailing '/'
 * (except for "/" itself).  Lexical: symbolic links are not resolved. */
static const char *base_dir(struct config_loader *ld)
{
    const char *main_file = ld->tree->files[0];
    const char *slash = strrchr(main_file, '/');
    size_t dlen = slash ? (size_t)(slash - main_file) : 0;
    char cwd[4096];
    size_t need;

    if (ld->base_dir)
        return ld->base_dir;
    if (slash == main_file)
        return ld->base_dir = strdup("/");
    if (main_file[0] == '/')
        return ld->base_dir = strndup(main_file, dlen);
    if (!getcwd(cwd, sizeof cwd))
        return NULL;
    while (dlen >= 2 && main_file[0] == '.' && main_file[1] == '/') {
        main_file += 2;
        dlen -= 2;
    }
    if (dlen == 1 && main_file[0] == '.')
        dlen = 0;
    need = strlen(cwd) + 1 + dlen + 1;
    ld->base_dir = malloc(need);
    if (ld->base_dir)
        snprintf(ld->base_dir, need, "%s%s%.*s", cwd, dlen ? "/" : "", (int)dlen, main_file);
    return ld->base_dir;
}

bool loader_path(struct config_loader *ld, const struct conf_arg *a, char **out)
{
    const char *rel = a->text;
    const char *dir;
    char *path;
    size_t need;

    assert(a->len > 0);
    if (rel[0] == '/') {
        path = strdup(rel);
    } else {
        dir = base_dir(ld);
        if (!dir)
            return loader_error(ld, &a->pos, "cannot make '%s' absolute: %s", rel,
                                "cannot read the current directory");
        while (rel[0] == '.' && rel[1] == '/')
            rel += 2;
        need = strlen(dir) + 1 + strlen(rel) + 1;
        path = malloc(need);
        if (path)
            snprintf(path, need, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", rel);
    }
    if (!path)
        return loader_oom(ld, &a->pos);
    *out = path;
    return true;
}

/* *OUT = the log path argument A (or "stderr"), made absolute against the
 * main file's directory.  The old *OUT is freed. */
static bool log_path(struct config_loader *ld, const struct conf_arg *a, char **out)
{
    char *path = NULL;

    if (a->len == 0)
        return loader_error(ld, &a->pos, "empty log path");
    if (strcmp(a->text, "stderr") == 0) {
        path = strdup(a->text);
        if (!path)
            return loader_oom(ld, &a->pos);
    } else if (!loader_path(ld, a, &path)) {
        return false;
    }
    free(*out);
    *out = path;
    return true;
}

bool config_log_access(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_log *log = obj;

    if (strcmp(d->args[0].text, "off") == 0) {
        free(log->access_path);
        log->access_path = NULL;
        return true;
    }
    return log_path(ld, &d->args[0], &log->access_path);
}

bool config_log_error(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_log *log = obj;

    /* nginx's trap: `error_log off;` writes to a file named "off". */
    if (strcmp(d->args[0].text, "off") == 0)
        return loader_error(ld, &d->args[0].pos,
                            "the error log cannot be off (expected stderr or a path)");
    return log_path(ld, &d->args[0], &log->error_path);
}

bool config_log_level(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_log *log = obj;

    for (int l = LOG_ERROR; l <= LOG_DEBUG; l++) {
        if (strcmp(d->args[0].text, log_level_name((enum log_level)l)) == 0) {
            log->level = (enum log_level)l;
            return true;
        }
    }
    return loader_error(ld, &d->args[0].pos,
                        "invalid log level '%s' (expected error, warn, info or debug)",
                        d->args[0].text);
}

const char *log_level_name(enum log_level level)
{
    switch (level) {
    case LOG_ERROR:
        return "error";
    case LOG_WARN:
        return "warn";
    case LOG_INFO:
        return "info";
    case LOG_DEBUG:
        return "debug";
    }
    return "unknown";
}

/* ---- life cycle ---- */

static void free_config(struct config *cfg)
{
    if (cfg->stats_free)
        cfg->stats_free(cfg->stats);
    for (size_t i = 0; i < cfg->nbackends; i++) {
        free(cfg->backends[i].name);
        free(cfg->backends[i].servers);
    }
    free(cfg->backends);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        free(cfg->routes[i].pattern);
        pcre2_code_free(cfg->routes[i].regex);
        free(cfg->routes[i].host);
        config_cache_policy_clear(&cfg->routes[i].cache);
        config_compress_clear(&cfg->routes[i].compress);
        config_esi_clear(&cfg->routes[i].esi);
    }
    free(cfg->routes);
    free(cfg->listens);
    free(cfg->log.access_path);
    free(cfg->log.error_path);
    config_memcached_clear(&cfg->memcached);
    config_compress_clear(&cfg->compress);
    config_admin_clear(&cfg->admin);
    for (size_t i = 0; i < cfg->nfiles; i++)
        free(cfg->files[i]);
    free(cfg->files);
    free(cfg->path);
    free(cfg);
}

struct config *config_ref(struct config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void config_release(struct config **cfgp)
{
    struct config *cfg = cfgp ? *cfgp : NULL;

    if (!cfg)
        return;
    *cfgp = NULL;
    /* acq_rel: the last releaser must see every other thread's reads done. */
    if (atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1)
        free_config(cfg);
}

struct config_backend *config_backend_find(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nbackends; i++) {
        if (strcmp(cfg->backends[i].name, name) == 0)
            return &cfg->backends[i];
    }
    return NULL;
}

static void set_defaults(struct config *cfg)
{
    cfg->workers = online_cpus();
    cfg->drain_timeout_ms = 10 * 1000;
    cfg->limits = (struct config_limits){
        .header_size = 32 * KIB,
        .headers = 100,
        .uri_size = 8 * KIB,
        .body_size = 10 * MIB,
        .header_timeout_ms = 10 * 1000,
        .body_timeout_ms = 60 * 1000,
        .idle_timeout_ms = 60 * 1000,
        .max_connections = 10000,
    };
    cfg->log.level = LOG_INFO;
    cfg->cache_memory = 256 * MIB;
}

/* A new config with defaults, the main path and copies of the tree's file
 * names; NULL when out of memory. */
static struct config *new_config(const struct conf_tree *tree, const char *path)
{
    struct config *cfg = calloc(1, sizeof *cfg);

    if (!cfg)
        return NULL;
    atomic_init(&cfg->refs, 1);
    set_defaults(cfg);
    cfg->path = strdup(path);
    cfg->log.error_path = strdup("stderr");
    cfg->files = calloc(tree->nfiles, sizeof *cfg->files);
    if (!cfg->path || !cfg->log.error_path || !cfg->files ||
        !config_memcached_init(&cfg->memcached) || !config_compress_init(&cfg->compress) ||
        !config_admin_init(&cfg->admin))
        goto fail;
    for (; cfg->nfiles < tree->nfiles; cfg->nfiles++) {
        cfg->files[cfg->nfiles] = strdup(tree->files[cfg->nfiles]);
        if (!cfg->files[cfg->nfiles])
            goto fail;
    }
    return cfg;
fail:
    config_release(&cfg);
    return NULL;
}

static struct config *load_tree(const struct conf_tree *tree, const char *path, char *err,
                                size_t errlen)
{
    struct config_loader ld = {.tree = tree, .err = err, .errlen = errlen};
    struct config_pos top = {.file = tree->files[0], .line = 1, .col = 1};

    ld.cfg = new_config(tree, path);
    if (!ld.cfg) {
        loader_oom(&ld, &top);
        goto fail;
    }
    if (!loader_walk(&ld, CONFIG_CTX_MAIN, tree->directives, tree->ndirectives, ld.cfg))
        goto fail;
    if (ld.cfg->nlistens == 0) {
        loader_error(&ld, &top, "no 'listen' directive");
        goto fail;
    }
    if (!config_routes_resolve(&ld) || !config_cache_stores_resolve(&ld) ||
        !config_compress_resolve(&ld) || !config_admin_resolve(&ld))
        goto fail;
    free(ld.routes_pending);
    free(ld.base_dir);
    return ld.cfg;
fail:
    free(ld.routes_pending);
    free(ld.base_dir);
    config_release(&ld.cfg);
    return NULL;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
    struct conf_tree *tree = conf_tree_parse_file(path, err, errlen);
    struct config *cfg;

    if (!tree)
        return NULL;
    cfg = load_tree(tree, path, err, errlen);
    conf_tree_free(&tree);
    return cfg;
}

struct config *config_load_string(const char *name, const char *text, char *err, size_t errlen)
{
    struct conf_tree *tree = conf_tree_parse_string(name, text, strlen(text), err, errlen);
    struct config *cfg;

    if (!tree)
        return NULL;
    cfg = load_tree(tree, name, err, errlen);
    conf_tree_free(&tree);
    return cfg;
}
