/*
 * config/esi.c: the ESI directives of a route (struct config_esi,
 * config.h): `esi`, `esi_types`, `esi_max_depth`, `esi_max_includes`,
 * `esi_timeout`, `esi_head_wait`, `esi_allow_hosts` and `esi_cookies`.
 *
 * Every route gets the defaults of config_esi_init() before its
 * directives are read (config/route.c), so ESI is off unless a route says
 * otherwise and nothing is inherited from another route.  Each directive
 * may appear once, so `esi_types` replaces the default list as a whole.
 * Media types have the syntax of compress `types` (config_media_type_add(),
 * config/compress.c); hosts are checked as the names a request's Host or
 * an include's src can carry, so that one that could never match fails the
 * load instead of silently never matching.  Called only from the loader's
 * walk (config/config.c): no locking; what is allocated here is owned by
 * the route and freed by config_esi_clear().
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <string.h>

#include "config/load.h"

/* The maxima bound the work one client request can cause: fragments that
 * include fragments, and the subrequests of one page. */
#define MAX_DEPTH_DEFAULT 3
#define MAX_DEPTH_MAX 10
#define MAX_INCLUDES_DEFAULT 32
#define MAX_INCLUDES_MAX 256
#define TIMEOUT_DEFAULT_MS (10 * 1000)
#define TIMEOUT_MAX_MS (60 * 60 * 1000)
#define HEAD_WAIT_DEFAULT_MS (10 * 1000)
#define HEAD_WAIT_MAX_MS (60 * 1000)

/* RFC 1035 2.3.4 */
#define LABEL_MAX 63
#define HOST_MAX 253

/* HTML and XHTML pages: what ESI markup is written in. */
static const char *const default_types[] = {
    "text/html",
    "application/xhtml+xml",
};

#define NDEFAULT_TYPES (sizeof default_types / sizeof default_types[0])

static struct config_esi *esi_of(void *obj)
{
    struct config_route_build *rb = obj;

    return &rb->route->esi;
}

/* ---- life cycle ---- */

bool config_esi_init(struct config_esi *e)
{
    *e = (struct config_esi){
        .mode = ESI_OFF,
        .max_depth = MAX_DEPTH_DEFAULT,
        .max_includes = MAX_INCLUDES_DEFAULT,
        .timeout_ms = TIMEOUT_DEFAULT_MS,
        .head_wait_ms = HEAD_WAIT_DEFAULT_MS,
        .cookies = false,
    };
    return loader_list_copy(&e->types, &e->ntypes, default_types, NDEFAULT_TYPES);
}

void config_esi_clear(struct config_esi *e)
{
    loader_list_free(&e->types, &e->ntypes);
    loader_list_free(&e->allow_hosts, &e->nallow_hosts);
    *e = (struct config_esi){0};
}

/* ---- esi on|off|auto; ---- */

bool config_route_esi(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_esi *e = esi_of(obj);
    const struct conf_arg *a = &d->args[0];

    if (strcmp(a->text, "on") == 0)
        e->mode = ESI_ON;
    else if (strcmp(a->text, "off") == 0)
        e->mode = ESI_OFF;
    else if (strcmp(a->text, "auto") == 0)
        e->mode = ESI_AUTO;
    else
        return loader_error(ld, &a->pos, "invalid value '%s' for 'esi' (expected on, off or auto)",
                            a->text);
    return true;
}

/* ---- esi_types ---- */

/* Given once per route (config/directives.h), so it replaces the defaults
 * as a whole. */
bool config_route_esi_types(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_esi *e = esi_of(obj);

    loader_list_free(&e->types, &e->ntypes);
    for (size_t i = 0; i < d->nargs; i++) {
        if (!config_media_type_add(ld, &d->args[i], d->name.text, &e->types, &e->ntypes))
            return false;
    }
    return true;
}

/* ---- limits ---- */

bool config_route_esi_max_depth(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    uint64_t v = 0;

    if (!loader_uint(ld, &d->args[0], d->name.text, 1, MAX_DEPTH_MAX, &v))
        return false;
    esi_of(obj)->max_depth = (unsigned)v;
    return true;
}

bool config_route_esi_max_includes(struct config_loader *ld, const struct conf_directive *d,
                                   void *obj)
{
    uint64_t v = 0;

    if (!loader_uint(ld, &d->args[0], d->name.text, 1, MAX_INCLUDES_MAX, &v))
        return false;
    esi_of(obj)->max_includes = (unsigned)v;
    return true;
}

bool config_route_esi_timeout(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    const struct conf_arg *a = &d->args[0];
    uint64_t ms = 0;

    if (!loader_duration(ld, a, d->name.text, false, &ms))
        return false;
    if (ms == 0 || ms > TIMEOUT_MAX_MS)
        return loader_error(ld, &a->pos,
                            "duration '%s' for '%s' is out of range (expected 1ms to 1h)", a->text,
                            d->name.text);
    esi_of(obj)->timeout_ms = ms;
    return true;
}

bool config_route_esi_head_wait(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    const struct conf_arg *a = &d->args[0];
    uint64_t ms = 0;

    if (!loader_duration(ld, a, d->name.text, false, &ms))
        return false;
    if (ms > HEAD_WAIT_MAX_MS)
        return loader_error(ld, &a->pos,
                            "duration '%s' for '%s' is out of range (expected 0 to 1m)", a->text,
                            d->name.text);
    esi_of(obj)->head_wait_ms = ms;
    return true;
}

/* ---- esi_allow_hosts ---- */

/* Why S is not a host an include's src may name, as the end of a message;
 * NULL when it is one.  The usual mistakes (a URL, a port, user info, a
 * wildcard) get a hint of their own. */
static const char *host_syntax_problem(const char *s)
{
    if (strchr(s, '/'))
        return "expected a host name, not a URL or a path";
    if (strchr(s, '@'))
        return "expected a host name, without user info";
    if (strchr(s, ':'))
        return "expected a host name or an IPv4 address, without a port; IPv6 addresses are "
               "not allowed";
    if (strchr(s, '*'))
        return "wildcards are not allowed; list each host";
    if (s[0] == '\0')
        return "expected a host name or an IPv4 address";
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(c < 0x80 && isalnum(c)) && c != '-' && c != '.')
            return "expected a host name or an IPv4 address: letters, digits, '-' and '.'";
    }
    return NULL;
}

/* Why the labels of S (only letters, digits, '-' and '.') do not make a
 * DNS name (RFC 1035 2.3.4, RFC 1123 2.1), or NULL.  A name whose last
 * label is all digits must be an IPv4 address (RFC 3696 2: no top-level
 * domain is all-numeric). */
static const char *host_name_problem(const char *s)
{
    const char *label = s, *last = s;
    struct in_addr v4;

    if (strlen(s) > HOST_MAX)
        return "longer than 253 characters";
    for (const char *p = s;; p++) {
        if (*p != '.' && *p != '\0')
            continue;
        if (p == label || (size_t)(p - label) > LABEL_MAX)
            return "each dot-separated label is 1 to 63 characters";
        if (*label == '-' || p[-1] == '-')
            return "a label must not start or end with '-'";
        last = label;
        if (*p == '\0')
            break;
        label = p + 1;
    }
    if (strspn(last, "0123456789") == strlen(last) && inet_pton(AF_INET, s, &v4) != 1)
        return "not a valid IPv4 address";
    return NULL;
}

bool config_route_esi_allow_hosts(struct config_loader *ld, const struct conf_directive *d,
                                  void *obj)
{
    struct config_esi *e = esi_of(obj);

    for (size_t i = 0; i < d->nargs; i++) {
        const struct conf_arg *a = &d->args[i];
        const char *why = host_syntax_problem(a->text);

        if (!why)
            why = host_name_problem(a->text);
        if (why)
            return loader_error(ld, &a->pos, "invalid host '%s' for '%s' (%s)", a->text,
                                d->name.text, why);
        if (!loader_list_add_lower(ld, a, "host", d->name.text, &e->allow_hosts, &e->nallow_hosts))
            return false;
    }
    return true;
}

/* ---- esi_cookies ---- */

bool config_route_esi_cookies(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    return loader_on_off(ld, &d->args[0], d->name.text, &esi_of(obj)->cookies);
}
