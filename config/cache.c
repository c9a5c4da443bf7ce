/*
 * config/cache.c: the cache directives: a route's cache policy (struct
 * config_cache_policy, its `key { ... }` block included) and the top-level
 * `cache { memory SIZE; }` block.
 *
 * Every route gets the defaults of config.h from config_cache_policy_init()
 * before its directives are read, so the cache never has to tell "not
 * given" from a value.  One exception waits for the end of the file: the
 * default `store` tier, and whether `store memcached|both` and `coalesce
 * cluster` are allowed, depend on a memcached block that may come after
 * the route (config_cache_stores_resolve()).  Names are checked here, at load time, against the
 * syntax they must match on the wire, so that a name that could never match
 * a request fails the load instead of silently never matching.  Called only
 * from the loader's walk (config/config.c): no locking; whatever is
 * allocated here is owned by the config being built and freed by
 * config_cache_policy_clear().
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "config/load.h"

#define MIB (1024ull * 1024)
#define GIB (1024ull * 1024 * 1024)

#define MAX_OBJECT_SIZE_MAX (1 * GIB)
#define MAX_VARIANTS_MAX 1024
#define MEMORY_MIN (1 * MIB)
#define MEMORY_MAX (64 * GIB)

/* For format strings only: the '%' is doubled. */
#define TOKEN_EXPECTED "expected a token: letters, digits or !#$%%&'*+-.^_`|~"

/* ---- life cycle ---- */

bool config_cache_policy_init(struct config_cache_policy *p)
{
    p->enabled = false;
    p->ttl_ms = 0;
    p->honor_cache_control = true;
    p->max_object_size = 8 * MIB;
    p->methods = CACHE_METHOD_GET | CACHE_METHOD_HEAD;
    p->key_query = KEY_QUERY_ALL;
    p->client_cc = CLIENT_CC_SAFE;
    p->coalesce = true;
    p->coalesce_cluster = false;
    p->coalesce_timeout_ms = 10 * 1000;
    p->max_variants = 16;
    p->etag_generate = false;
    p->conditional_pass = true;
    p->grace_ms = 0;
    p->store = STORE_TIER_MEMORY; /* until config_cache_stores_resolve() */
    p->tags_header = strdup("Surrogate-Key");
    p->status_header = strdup("X-Cache");
    return p->tags_header && p->status_header;
}

static void free_list(char ***list, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

void config_cache_policy_clear(struct config_cache_policy *p)
{
    free_list(&p->key_query_params, &p->nkey_query_params);
    free_list(&p->key_headers, &p->nkey_headers);
    free_list(&p->key_cookies, &p->nkey_cookies);
    free(p->tags_header);
    free(p->status_header);
    *p = (struct config_cache_policy){0};
}

/* ---- names ---- */

/* RFC 9110 5.6.2 tchar.  proxy/http.c has the same test; config/ does not
 * depend on proxy/. */
static bool is_tchar(unsigned char c)
{
    if (c < 0x80 && isalnum(c))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* A query parameter name as it appears in a request target: printable
 * ASCII, without the '&' and '=' that delimit it or the '#' that ends the
 * query (RFC 3986 3.4). */
static bool is_query_name(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '&' || c == '=' || c == '#')
            return false;
    }
    return true;
}

static bool list_has(char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], name) == 0)
            return true;
    }
    return false;
}

/* Append a copy of NAME (lower-cased when LOWER) to *LIST; an error at A
 * when it is already there, or when out of memory. */
static bool list_add(struct config_loader *ld, const struct conf_arg *a, const char *what,
                     bool lower, char ***list, size_t *n)
{
    char *name = strdup(a->text);
    char **grown;

    if (!name)
        return loader_oom(ld, &a->pos);
    if (lower) {
        for (char *c = name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
    }
    if (list_has(*list, *n, name)) {
        loader_error(ld, &a->pos, "duplicate %s '%s' in the cache key", what, name);
        free(name);
        return false;
    }
    grown = realloc(*list, (*n + 1) * sizeof *grown);
    if (!grown) {
        free(name);
        return loader_oom(ld, &a->pos);
    }
    *list = grown;
    (*list)[(*n)++] = name;
    return true;
}

/* *OUT = a copy of the header name A for directive WHAT; the old one freed. */
static bool header_name(struct config_loader *ld, const struct conf_arg *a, const char *what,
                        char **out)
{
    char *name;

    if (!is_token(a->text, a->len))
        return loader_error(ld, &a->pos, "invalid header name '%s' for '%s' (" TOKEN_EXPECTED ")",
                            a->text, what);
    name = strdup(a->text);
    if (!name)
        return loader_oom(ld, &a->pos);
    free(*out);
    *out = name;
    return true;
}

/* ---- route context ---- */

static struct config_cache_policy *policy(void *obj)
{
    struct config_route_build *rb = obj;

    return &rb->route->cache;
}

bool config_route_cache(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    return loader_on_off(ld, &d->args[0], d->name.text, &policy(obj)->enabled);
}

/* Neither ttl nor ttl_override needs `cache on`: operators switch the
 * cache off and on again without editing the rest of the route. */
bool config_route_ttl(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    return loader_duration(ld, &d->args[0], d->name.text, false, &policy(obj)->ttl_ms);
}

bool config_route_ttl_override(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_cache_policy *p = policy(obj);

    if (!loader_duration(ld, &d->args[0], d->name.text, false, &p->ttl_override_ms))
        return false;
    p->ttl_override_set = true;
    return true;
}

bool config_route_honor_cache_control(struct config_loader *ld, const struct conf_directive *d,
                                      void *obj)
{
    return loader_on_off(ld, &d->args[0], d->name.text, &policy(obj)->honor_cache_control);
}

bool config_route_stale_while_revalidate(struct config_loader *ld, const struct conf_directive *d,
                                         void *obj)
{
    return loader_duration(ld, &d->args[0], d->name.text, false,
                           &policy(obj)->stale_while_revalidate_ms);
}

bool config_route_stale_if_error(struct config_loader *ld, const struct conf_directive *d,
                                 void *obj)
{
    return loader_duration(ld, &d->args[0], d->name.text, false, &policy(obj)->stale_if_error_ms);
}

bool config_route_max_object_size(struct config_loader *ld, const struct conf_directive *d,
                                  void *obj)
{
    return loader_size(ld, &d->args[0], d->name.text, 1, MAX_OBJECT_SIZE_MAX,
                       &policy(obj)->max_object_size);
}

bool config_route_cache_methods(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    unsigned methods = 0;

    for (size_t i = 0; i < d->nargs; i++) {
        const struct conf_arg *a = &d->args[i];
        unsigned m;
        /* Case-sensitive, as methods are (RFC 9110 9.1). */
        if (strcmp(a->text, "GET") == 0)
            m = CACHE_METHOD_GET;
        else if (strcmp(a->text, "HEAD") == 0)
            m = CACHE_METHOD_HEAD;
        else
            return loader_error(ld, &a->pos, "invalid cache method '%s' (expected GET or HEAD)",
                                a->text);
        if (methods & m)
            return loader_error(ld, &a->pos, "duplicate cache method '%s'", a->text);
        methods |= m;
    }
    /* A HEAD is answered from a stored GET response (RFC 9110 9.3.2): there
     * is no HEAD object to cache on its own. */
    if (!(methods & CACHE_METHOD_GET))
        return loader_error(ld, &d->args[0].pos,
                            "'cache_methods' needs GET (a HEAD is answered from a GET's object)");
    policy(obj)->methods = methods;
    return true;
}

bool config_route_key(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    return loader_walk(ld, CONFIG_CTX_KEY, d->children, d->nchildren, policy(obj));
}

bool config_route_cache_cookies(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    return loader_on_off(ld, &d->args[0], d->name.text, &policy(obj)->cache_cookies);
}

bool config_route_cache_authorized(struct config_loader *ld, const struct conf_directive *d,
                                   void *obj)
{
    return loader_on_off(ld, &d->args[0], d->name.text, &policy(obj)->cache_authorized);
}

bool config_route_tags_header(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    if (d->nargs == 2) {
        if (strcmp(d->args[1].text, "keep") != 0)
            return loader_error(ld, &d->args[1].pos,
                                "expected 'keep' after the header name of 'tags_header', not '%s'",
                                d->args[1].text);
        policy(obj)->tags_keep = true;
    }
    return header_name(ld, &d->args[0], d->name.text, &policy(obj)->tags_header);
}

bool config_route_client_cache_control(struct config_loader *ld, const struct conf_directive *d,
                                       void *obj)
{
    static const char *const names[] = {
        [CLIENT_CC_SAFE] = "safe",
        [CLIENT_CC_HONOR] = "honor",
        [CLIENT_CC_IGNORE] = "ignore",
    };
    const struct conf_arg *a = &d->args[0];

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(a->text, names[i]) == 0) {
            policy(obj)->client_cc = (enum client_cache_control)i;
            return true;
        }
    }
    return loader_error(ld, &a->pos,
                        "invalid value '%s' for 'client_cache_control' (expected safe, honor or "
                        "ignore)",
                        a->text);
}

bool config_route_coalesce(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_route_build *rb = obj;
    struct config_cache_policy *p = policy(obj);
    const struct conf_arg *a = &d->args[0];

    if (strcmp(a->text, "cluster") == 0) {
        p->coalesce = true;
        p->coalesce_cluster = true;
        rb->pending->cluster = d; /* needs a memcached block: checked at the end */
        return true;
    }
    if (strcmp(a->text, "on") != 0 && strcmp(a->text, "off") != 0)
        return loader_error(ld, &a->pos,
                            "invalid value '%s' for 'coalesce' (expected on, off or cluster)",
                            a->text);
    p->coalesce = strcmp(a->text, "on") == 0;
    p->coalesce_cluster = false;
    return true;
}

bool config_route_coalesce_timeout(struct config_loader *ld, const struct conf_directive *d,
                                   void *obj)
{
    return loader_duration(ld, &d->args[0], d->name.text, true, &policy(obj)->coalesce_timeout_ms);
}

bool config_route_max_variants(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    uint64_t v = 0;

    if (!loader_uint(ld, &d->args[0], d->name.text, 1, MAX_VARIANTS_MAX, &v))
        return false;
    policy(obj)->max_variants = (unsigned)v;
    return true;
}

bool config_route_cache_status_header(struct config_loader *ld, const struct conf_directive *d,
                                      void *obj)
{
    struct config_cache_policy *p = policy(obj);

    if (strcmp(d->args[0].text, "off") == 0) {
        free(p->status_header);
        p->status_header = NULL;
        return true;
    }
    return header_name(ld, &d->args[0], d->name.text, &p->status_header);
}

/* ---- key context ---- */

static const struct {
    const char *name;
    enum key_query mode;
    bool takes_names;
} query_modes[] = {
    {"all", KEY_QUERY_ALL, false},       {"none", KEY_QUERY_NONE, false},
    {"sorted", KEY_QUERY_SORTED, false}, {"only", KEY_QUERY_ONLY, true},
    {"except", KEY_QUERY_EXCEPT, true},
};

bool config_key_query(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_cache_policy *p = obj;
    const struct conf_arg *mode = &d->args[0];
    size_t i;

    for (i = 0; i < sizeof query_modes / sizeof query_modes[0]; i++) {
        if (strcmp(mode->text, query_modes[i].name) == 0)
            break;
    }
    if (i == sizeof query_modes / sizeof query_modes[0])
        return loader_error(ld, &mode->pos,
                            "invalid query mode '%s' (expected all, none, sorted, only NAME... or "
                            "except NAME...)",
                            mode->text);
    if (!query_modes[i].takes_names && d->nargs > 1)
        return loader_error(ld, &d->args[1].pos, "'query %s' takes no parameter names", mode->text);
    if (query_modes[i].takes_names && d->nargs == 1)
        return loader_error(ld, &mode->pos, "'query %s' needs at least one parameter name",
                            mode->text);
    p->key_query = query_modes[i].mode;
    for (size_t k = 1; k < d->nargs; k++) {
        const struct conf_arg *a = &d->args[k];
        if (!is_query_name(a->text, a->len))
            return loader_error(ld, &a->pos,
                                "invalid query parameter name '%s' (expected printable ASCII "
                                "without spaces, '&', '=' or '#')",
                                a->text);
        if (!list_add(ld, a, "query parameter", false, &p->key_query_params, &p->nkey_query_params))
            return false;
    }
    return true;
}

/* Field names are case-insensitive (RFC 9110 5.1): stored lower-cased. */
bool config_key_header(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_cache_policy *p = obj;

    for (size_t i = 0; i < d->nargs; i++) {
        const struct conf_arg *a = &d->args[i];
        if (!is_token(a->text, a->len))
            return loader_error(
                ld, &a->pos, "invalid header name '%s' for 'header' (" TOKEN_EXPECTED ")", a->text);
        if (!list_add(ld, a, "header", true, &p->key_headers, &p->nkey_headers))
            return false;
    }
    return true;
}

/* Cookie names are tokens (RFC 6265 4.1.1) and case-sensitive: kept as
 * written. */
bool config_key_cookie(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_cache_policy *p = obj;

    for (size_t i = 0; i < d->nargs; i++) {
        const struct conf_arg *a = &d->args[i];
        if (!is_token(a->text, a->len))
            return loader_error(
                ld, &a->pos, "invalid cookie name '%s' for 'cookie' (" TOKEN_EXPECTED ")", a->text);
        if (!list_add(ld, a, "cookie", false, &p->key_cookies, &p->nkey_cookies))
            return false;
    }
    return true;
}

/* ---- main context: `cache { memory SIZE; }` ---- */

bool config_main_cache(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    return loader_walk(ld, CONFIG_CTX_CACHE, d->children, d->nchildren, obj);
}

bool config_cache_memory(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config *cfg = obj;

    return loader_size(ld, &d->args[0], d->name.text, MEMORY_MIN, MEMORY_MAX, &cfg->cache_memory);
}

bool config_route_etag(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    const struct conf_arg *a = &d->args[0];

    if (strcmp(a->text, "generate") == 0 || strcmp(a->text, "off") == 0) {
        policy(obj)->etag_generate = strcmp(a->text, "generate") == 0;
        return true;
    }
    return loader_error(ld, &a->pos, "invalid value '%s' for 'etag' (expected generate or off)",
                        a->text);
}

bool config_route_conditional_pass(struct config_loader *ld, const struct conf_directive *d,
                                   void *obj)
{
    return loader_on_off(ld, &d->args[0], d->name.text, &policy(obj)->conditional_pass);
}

bool config_route_grace(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    return loader_duration(ld, &d->args[0], d->name.text, false, &policy(obj)->grace_ms);
}

/* ---- store tiers ---- */

static const char *const store_names[] = {
    [STORE_TIER_MEMORY] = "memory",
    [STORE_TIER_MEMCACHED] = "memcached",
    [STORE_TIER_BOTH] = "both",
};

bool config_route_store(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config_route_build *rb = obj;
    const struct conf_arg *a = &d->args[0];

    for (size_t i = 0; i < sizeof store_names / sizeof store_names[0]; i++) {
        if (strcmp(a->text, store_names[i]) == 0) {
            policy(obj)->store = (enum cache_store_tier)i;
            rb->pending->store = d; /* the memcached block may come later */
            return true;
        }
    }
    return loader_error(ld, &a->pos,
                        "invalid value '%s' for 'store' (expected memory, memcached or both)",
                        a->text);
}

/* With a memcached block, a route without `store` uses both tiers: adding
 * the block is all it takes to share a cache between nodes.  Without one,
 * a route that asks for memcached is a mistake to report, not to ignore. */
bool config_cache_stores_resolve(struct config_loader *ld)
{
    struct config *cfg = ld->cfg;
    bool have = cfg->memcached.enabled;

    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct loader_route *lr = &ld->routes_pending[i];
        struct config_cache_policy *p = &cfg->routes[i].cache;

        if (!lr->store)
            p->store = have ? STORE_TIER_BOTH : STORE_TIER_MEMORY;
        else if (p->store != STORE_TIER_MEMORY && !have)
            return loader_error(ld, &lr->store->name.pos, "'store %s' needs a memcached block",
                                store_names[p->store]);
        if (lr->cluster && !have)
            return loader_error(ld, &lr->cluster->name.pos,
                                "'coalesce cluster' needs a memcached block");
    }
    return true;
}
