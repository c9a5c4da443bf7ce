/*
 * config/load.h: what the pieces of the typed loader share.  Internal to
 * config/: nothing outside this directory includes it.
 *
 * config/config.c walks the syntax tree and dispatches each directive to its
 * handler (the table is config/directives.h); config/backend.c and
 * config/route.c hold the handlers for those blocks, config/cache.c the
 * cache policy of a route and the top-level `cache` block, config/memcached.c
 * the `memcached` block, config/compress.c the `compress` blocks (top level
 * and route), config/esi.c the `esi*` directives of a route, config/admin.c
 * the `admin` block.  Every handler either stores its value and returns
 * true, or writes one error line through loader_error() and returns false;
 * whatever it allocated is already owned by the config being built, so the
 * caller frees all of it in one place.
 */
#ifndef TESSERA_CONFIG_LOAD_H
#define TESSERA_CONFIG_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "config/directives.h"
#include "config/parser.h"

enum config_context {
#define CONFIG_CONTEXT_ENUM(ctx, name) CONFIG_CTX_##ctx,
    CONFIG_CONTEXTS(CONFIG_CONTEXT_ENUM)
#undef CONFIG_CONTEXT_ENUM
};

/* What a route block leaves for the checks that need the whole file: the
 * backend it names may be defined after it, and whether it may use
 * memcached depends on a memcached block that may come later.  Pointers
 * into the syntax tree, which outlives the loader. */
struct loader_route {
    const struct conf_arg *backend;        /* `backend NAME;`'s argument; NULL until seen */
    const struct conf_directive *store;    /* `store ...;`; NULL: the default tier */
    const struct conf_directive *cluster;  /* `coalesce cluster;`; NULL when not given */
    const struct conf_directive *compress; /* `compress { ... }`; NULL: the route copies the
                                            * top-level block, which may come later */
};

struct config_loader {
    struct config *cfg;           /* being built; freed by the caller on failure */
    const struct conf_tree *tree; /* read only */
    char *err;
    size_t errlen;
    char *base_dir; /* absolute directory of the main file, made on first use */
    size_t listens_cap;
    size_t backends_cap;
    size_t routes_cap;
    struct loader_route *routes_pending; /* per route, by index */
    size_t routes_pending_cap;
};

/* What a route block's handlers fill in. */
struct config_route_build {
    struct config_route *route;
    struct loader_route *pending; /* &ld->routes_pending[route->index] */
};

/* A directive handler.  OBJ is the context's struct: struct config (main
 * and cache), struct config_backend, struct config_route_build, struct
 * config_limits, struct config_log, struct config_cache_policy (key),
 * struct config_memcached or, for the compress and admin contexts,
 * config/compress.c's own struct compress_build and config/admin.c's own
 * struct admin_build. */
typedef bool config_handler_fn(struct config_loader *ld, const struct conf_directive *d, void *obj);

#define CONFIG_HANDLER_DECL(ctx, name, min, max, shape, repeat, fn) config_handler_fn fn;
CONFIG_DIRECTIVES(CONFIG_HANDLER_DECL)
#undef CONFIG_HANDLER_DECL

/* loader_walk: check and dispatch each of the N directives ITEMS, read in
 * context CTX, to its handler with OBJ.  False on the first error. */
bool loader_walk(struct config_loader *ld, enum config_context ctx,
                 const struct conf_directive *items, size_t n, void *obj);

/* loader_error: format "FILE:LINE:COL: message" into ld->err; returns false
 * so that handlers can `return loader_error(...)`. */
bool loader_error(struct config_loader *ld, const struct config_pos *pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* loader_oom: the error for a failed allocation at POS; returns false. */
bool loader_oom(struct config_loader *ld, const struct config_pos *pos);

/* loader_pos: POS (from the tree) with its file pointing into ld->cfg->files,
 * so that the config does not depend on the tree. */
struct config_pos loader_pos(const struct config_loader *ld, const struct config_pos *pos);

/* loader_grow: make room for one more element in *ITEMS (N used, *CAP
 * allocated, SIZE bytes each); the new element is zeroed.  False when out
 * of memory (*ITEMS unchanged). */
bool loader_grow(void **items, size_t n, size_t *cap, size_t size);

/* loader_list_copy: *OUT = copies of the N strings SRC, an array the
 * caller owns (NULL when N is 0).  False when out of memory; *OUT and *NOUT
 * then hold what was copied so far, for loader_list_free(). */
bool loader_list_copy(char ***out, size_t *nout, const char *const *src, size_t n);

/* loader_list_free: free the *N strings of *LIST and the array itself; then
 * *LIST is NULL and *N 0.  Safe on an empty list. */
void loader_list_free(char ***list, size_t *n);

/* loader_list_add_lower: append a lower-cased copy of A's text to *LIST (*N
 * strings, owned by the list).  An error at A when that copy is listed
 * already ("duplicate KIND 'x' in 'WHAT'") or when out of memory; *LIST is
 * then unchanged.  The caller checks the syntax of A first. */
bool loader_list_add_lower(struct config_loader *ld, const struct conf_arg *a, const char *kind,
                           const char *what, char ***list, size_t *n);

/* loader_uint: A as a number in MIN..MAX for directive or parameter WHAT. */
bool loader_uint(struct config_loader *ld, const struct conf_arg *a, const char *what, uint64_t min,
                 uint64_t max, uint64_t *out);

/* loader_duration: A as a duration in ms for WHAT; NONZERO rejects 0. */
bool loader_duration(struct config_loader *ld, const struct conf_arg *a, const char *what,
                     bool nonzero, uint64_t *out_ms);

/* loader_size: A as a size in bytes, MIN..MAX, for directive WHAT. */
bool loader_size(struct config_loader *ld, const struct conf_arg *a, const char *what, uint64_t min,
                 uint64_t max, uint64_t *out);

/* loader_on_off: A as `on` (true) or `off` (false) for directive WHAT. */
bool loader_on_off(struct config_loader *ld, const struct conf_arg *a, const char *what, bool *out);

/* loader_listen: A, "IPV4:PORT", "[IPV6]:PORT" or "*:PORT", into L (a
 * zeroed struct): address, length and text; L->pos is left to the caller.
 * The syntax of `listen` (config/config.c), shared by the admin block. */
bool loader_listen(struct config_loader *ld, const struct conf_arg *a, struct config_listen *l);

/* loader_path: *OUT = the path argument A (not empty) made absolute against
 * the directory of the main config file: a new string the caller owns (the
 * old *OUT is not freed).  False, with an error at A, when the current
 * directory cannot be read or out of memory. */
bool loader_path(struct config_loader *ld, const struct conf_arg *a, char **out);

/* A "HOST:PORT" or "[IPV6]:PORT" argument split in place (no copies). */
struct loader_hostport {
    const char *host; /* without the brackets */
    size_t hlen;
    const char *port;
    size_t plen;
    bool bracketed;
};

/* loader_split_hostport: split TEXT; false when there is no ":PORT", the
 * brackets do not match, or an unbracketed host contains ':'. */
bool loader_split_hostport(const char *text, struct loader_hostport *hp);

/* config_cache_policy_init: the defaults of config.h in P (a zeroed struct),
 * before a route's directives are read.  False when out of memory; what was
 * allocated is owned by P either way. */
bool config_cache_policy_init(struct config_cache_policy *p);

/* config_cache_policy_clear: free what P owns and zero it.  Safe on a
 * zeroed or half-initialised policy (config/cache.c). */
void config_cache_policy_clear(struct config_cache_policy *p);

/* config_routes_resolve: point every route at its backend, now that all
 * backends are known (config/route.c). */
bool config_routes_resolve(struct config_loader *ld);

/* config_cache_stores_resolve: give every route without `store` its default
 * tier, and fail on `store memcached|both` or `coalesce cluster` without a
 * memcached block, now that the whole file is read (config/cache.c). */
bool config_cache_stores_resolve(struct config_loader *ld);

/* config_memcached_init: the defaults of config.h in M (a zeroed struct);
 * false when out of memory, M then safe to clear (config/memcached.c). */
bool config_memcached_init(struct config_memcached *m);

/* config_memcached_clear: free what M owns and zero it.  Safe on a zeroed
 * or half-built M. */
void config_memcached_clear(struct config_memcached *m);

/* config_compress_init: the defaults of config.h in C (a zeroed struct);
 * false when out of memory, C then safe to clear (config/compress.c). */
bool config_compress_init(struct config_compress *c);

/* config_compress_clear: free what C owns and zero it.  Safe on a zeroed
 * or half-built C. */
void config_compress_clear(struct config_compress *c);

/* What config_media_type_add() expects, for messages. */
#define CONFIG_MEDIA_TYPE_EXPECTED "expected TYPE/SUBTYPE or TYPE/*, without parameters"

/* config_media_type_add: append the media type A of directive WHAT to
 * *TYPES (*NTYPES strings, owned by the list), lower-cased since media
 * types are case-insensitive (RFC 9110 8.3.1).  A must be TYPE/SUBTYPE
 * without parameters, where SUBTYPE may be a lone '*'; an error at A when
 * it is not, when it is listed already, or when out of memory (*TYPES then
 * unchanged).  The syntax of compress `types` and `esi_types`
 * (config/compress.c). */
bool config_media_type_add(struct config_loader *ld, const struct conf_arg *a, const char *what,
                           char ***types, size_t *ntypes);

/* config_esi_init: the defaults of config.h in E (a zeroed struct): off,
 * types text/html and application/xhtml+xml, depth 3, 32 includes, 10s, no
 * other hosts, no cookies.  False when out of memory, E then safe to clear
 * (config/esi.c). */
bool config_esi_init(struct config_esi *e);

/* config_esi_clear: free what E owns and zero it.  Safe on a zeroed or
 * half-built E. */
void config_esi_clear(struct config_esi *e);

/* config_admin_init: the defaults of config.h in A (a zeroed struct): listen
 * 127.0.0.1:8081, allow 127.0.0.0/8 and ::1/128, no token, not enabled.
 * False when out of memory, A then safe to clear (config/admin.c). */
bool config_admin_init(struct config_admin *a);

/* config_admin_clear: wipe the token (explicit_bzero), free what A owns and
 * zero it.  Safe on a zeroed or half-built A. */
void config_admin_clear(struct config_admin *a);

/* config_admin_resolve: fail when the admin listener (if the block is
 * given) would share an address and port with a main `listen`, now that
 * every `listen` is read (config/admin.c). */
bool config_admin_resolve(struct config_loader *ld);

/* config_compress_resolve: give every route without its own compress block
 * a deep copy of the top-level one (cfg->compress), now that the whole file
 * is read.  False (an error at the route) when out of memory. */
bool config_compress_resolve(struct config_loader *ld);

#endif
