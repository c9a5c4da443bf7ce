/*
 * config/directives.h: every directive tessera knows, in one table.
 *
 * The typed loader (config/config.c) builds its dispatch table from this
 * list, which also decides argument counts, block or `;`, and whether the
 * directive may repeat; the unit tests check that man/tessera.conf.5
 * documents every name.  Add a directive here and nowhere else (then write
 * its handler, declared in config/load.h).  `include` is not here: the parser
 * expands it before the loader runs.
 *
 *     X(CONTEXT, "name", MIN_ARGS, MAX_ARGS, SHAPE, REPEAT, handler)
 *
 * SHAPE is VALUE (`name args;`) or BLOCK (`name args { ... }`); REPEAT is ONCE
 * (a second one in the same block is an error) or MANY.
 */
#ifndef TESSERA_CONFIG_DIRECTIVES_H
#define TESSERA_CONFIG_DIRECTIVES_H

/* The most arguments one list directive (`query only ...`, `header ...`,
 * `cookie ...`, `allow ...`, `esi_types ...`, `esi_allow_hosts ...`) takes:
 * the table needs a maximum.  Not a limit on the list itself for `header`,
 * `cookie` and `allow`, which may repeat; `query` and the ESI lists, which
 * may not, get 64 names, more than a route needs. */
#define CONFIG_LIST_MAX 64

/* `brotli|gzip|zstd on|off [level=N];` takes one argument more than it has
 * parameters, so that a repeated `level=` is reported as a duplicate rather
 * than as a wrong argument count. */
#define CODING_ARGS_MAX 3

/* X(CONTEXT, "name used in messages") */
#define CONFIG_CONTEXTS(X)                                                                         \
    X(MAIN, "main")                                                                                \
    X(BACKEND, "backend")                                                                          \
    X(ROUTE, "route")                                                                              \
    X(LIMITS, "limits")                                                                            \
    X(LOG, "log")                                                                                  \
    X(CACHE, "cache")                                                                              \
    X(KEY, "key")                                                                                  \
    X(MEMCACHED, "memcached")                                                                      \
    X(COMPRESS, "compress")                                                                        \
    X(ADMIN, "admin")

#define CONFIG_DIRECTIVES(X)                                                                       \
    X(MAIN, "listen", 1, 1, VALUE, MANY, config_main_listen)                                       \
    X(MAIN, "workers", 1, 1, VALUE, ONCE, config_main_workers)                                     \
    X(MAIN, "drain_timeout", 1, 1, VALUE, ONCE, config_main_drain_timeout)                         \
    X(MAIN, "backend", 1, 1, BLOCK, MANY, config_main_backend)                                     \
    X(MAIN, "route", 1, 2, BLOCK, MANY, config_main_route)                                         \
    X(MAIN, "limits", 0, 0, BLOCK, ONCE, config_main_limits)                                       \
    X(MAIN, "log", 0, 0, BLOCK, ONCE, config_main_log)                                             \
    X(MAIN, "cache", 0, 0, BLOCK, ONCE, config_main_cache)                                         \
    X(MAIN, "memcached", 0, 0, BLOCK, ONCE, config_main_memcached)                                 \
    X(MAIN, "compress", 0, 0, BLOCK, ONCE, config_main_compress)                                   \
    X(MAIN, "admin", 0, 0, BLOCK, ONCE, config_main_admin)                                         \
    X(BACKEND, "server", 1, 4, VALUE, MANY, config_backend_server)                                 \
    X(BACKEND, "connect_timeout", 1, 1, VALUE, ONCE, config_backend_connect_timeout)               \
    X(BACKEND, "read_timeout", 1, 1, VALUE, ONCE, config_backend_read_timeout)                     \
    X(BACKEND, "keepalive", 1, 1, VALUE, ONCE, config_backend_keepalive)                           \
    X(ROUTE, "backend", 1, 1, VALUE, ONCE, config_route_backend)                                   \
    X(ROUTE, "host", 1, 1, VALUE, ONCE, config_route_host)                                         \
    X(ROUTE, "cache", 1, 1, VALUE, ONCE, config_route_cache)                                       \
    X(ROUTE, "ttl", 1, 1, VALUE, ONCE, config_route_ttl)                                           \
    X(ROUTE, "ttl_override", 1, 1, VALUE, ONCE, config_route_ttl_override)                         \
    X(ROUTE, "honor_cache_control", 1, 1, VALUE, ONCE, config_route_honor_cache_control)           \
    X(ROUTE, "stale_while_revalidate", 1, 1, VALUE, ONCE, config_route_stale_while_revalidate)     \
    X(ROUTE, "stale_if_error", 1, 1, VALUE, ONCE, config_route_stale_if_error)                     \
    X(ROUTE, "max_object_size", 1, 1, VALUE, ONCE, config_route_max_object_size)                   \
    X(ROUTE, "cache_methods", 1, 2, VALUE, ONCE, config_route_cache_methods)                       \
    X(ROUTE, "key", 0, 0, BLOCK, ONCE, config_route_key)                                           \
    X(ROUTE, "cache_cookies", 1, 1, VALUE, ONCE, config_route_cache_cookies)                       \
    X(ROUTE, "cache_authorized", 1, 1, VALUE, ONCE, config_route_cache_authorized)                 \
    X(ROUTE, "tags_header", 1, 2, VALUE, ONCE, config_route_tags_header)                           \
    X(ROUTE, "client_cache_control", 1, 1, VALUE, ONCE, config_route_client_cache_control)         \
    X(ROUTE, "coalesce", 1, 1, VALUE, ONCE, config_route_coalesce)                                 \
    X(ROUTE, "coalesce_timeout", 1, 1, VALUE, ONCE, config_route_coalesce_timeout)                 \
    X(ROUTE, "max_variants", 1, 1, VALUE, ONCE, config_route_max_variants)                         \
    X(ROUTE, "cache_status_header", 1, 1, VALUE, ONCE, config_route_cache_status_header)           \
    X(ROUTE, "etag", 1, 1, VALUE, ONCE, config_route_etag)                                         \
    X(ROUTE, "conditional_pass", 1, 1, VALUE, ONCE, config_route_conditional_pass)                 \
    X(ROUTE, "grace", 1, 1, VALUE, ONCE, config_route_grace)                                       \
    X(ROUTE, "store", 1, 1, VALUE, ONCE, config_route_store)                                       \
    X(ROUTE, "compress", 0, 0, BLOCK, ONCE, config_route_compress)                                 \
    X(ROUTE, "esi", 1, 1, VALUE, ONCE, config_route_esi)                                           \
    X(ROUTE, "esi_types", 1, CONFIG_LIST_MAX, VALUE, ONCE, config_route_esi_types)                 \
    X(ROUTE, "esi_max_depth", 1, 1, VALUE, ONCE, config_route_esi_max_depth)                       \
    X(ROUTE, "esi_max_includes", 1, 1, VALUE, ONCE, config_route_esi_max_includes)                 \
    X(ROUTE, "esi_timeout", 1, 1, VALUE, ONCE, config_route_esi_timeout)                           \
    X(ROUTE, "esi_head_wait", 1, 1, VALUE, ONCE, config_route_esi_head_wait)                       \
    X(ROUTE, "esi_allow_hosts", 1, CONFIG_LIST_MAX, VALUE, ONCE, config_route_esi_allow_hosts)     \
    X(ROUTE, "esi_cookies", 1, 1, VALUE, ONCE, config_route_esi_cookies)                           \
    X(LIMITS, "header_size", 1, 1, VALUE, ONCE, config_limits_header_size)                         \
    X(LIMITS, "headers", 1, 1, VALUE, ONCE, config_limits_headers)                                 \
    X(LIMITS, "uri_size", 1, 1, VALUE, ONCE, config_limits_uri_size)                               \
    X(LIMITS, "body_size", 1, 1, VALUE, ONCE, config_limits_body_size)                             \
    X(LIMITS, "header_timeout", 1, 1, VALUE, ONCE, config_limits_header_timeout)                   \
    X(LIMITS, "body_timeout", 1, 1, VALUE, ONCE, config_limits_body_timeout)                       \
    X(LIMITS, "idle_timeout", 1, 1, VALUE, ONCE, config_limits_idle_timeout)                       \
    X(LIMITS, "max_connections", 1, 1, VALUE, ONCE, config_limits_max_connections)                 \
    X(LOG, "access", 1, 1, VALUE, ONCE, config_log_access)                                         \
    X(LOG, "error", 1, 1, VALUE, ONCE, config_log_error)                                           \
    X(LOG, "level", 1, 1, VALUE, ONCE, config_log_level)                                           \
    X(CACHE, "memory", 1, 1, VALUE, ONCE, config_cache_memory)                                     \
    X(KEY, "query", 1, CONFIG_LIST_MAX, VALUE, ONCE, config_key_query)                             \
    X(KEY, "header", 1, CONFIG_LIST_MAX, VALUE, MANY, config_key_header)                           \
    X(KEY, "cookie", 1, CONFIG_LIST_MAX, VALUE, MANY, config_key_cookie)                           \
    X(MEMCACHED, "server", 1, 2, VALUE, MANY, config_memcached_server)                             \
    X(MEMCACHED, "prefix", 1, 1, VALUE, ONCE, config_memcached_prefix)                             \
    X(MEMCACHED, "timeout", 1, 1, VALUE, ONCE, config_memcached_timeout)                           \
    X(MEMCACHED, "retry_timeout", 1, 1, VALUE, ONCE, config_memcached_retry_timeout)               \
    X(MEMCACHED, "io_threads", 1, 1, VALUE, ONCE, config_memcached_io_threads)                     \
    X(MEMCACHED, "item_size", 1, 1, VALUE, ONCE, config_memcached_item_size)                       \
    X(MEMCACHED, "ttl_slack", 1, 1, VALUE, ONCE, config_memcached_ttl_slack)                       \
    X(MEMCACHED, "queue_max", 1, 1, VALUE, ONCE, config_memcached_queue_max)                       \
    X(MEMCACHED, "purge_sync", 1, 1, VALUE, ONCE, config_memcached_purge_sync)                     \
    X(COMPRESS, "on", 0, 0, VALUE, ONCE, config_compress_on)                                       \
    X(COMPRESS, "off", 0, 0, VALUE, ONCE, config_compress_off)                                     \
    X(COMPRESS, "types", 1, CONFIG_LIST_MAX, VALUE, MANY, config_compress_types)                   \
    X(COMPRESS, "min_length", 1, 1, VALUE, ONCE, config_compress_min_length)                       \
    X(COMPRESS, "brotli", 1, CODING_ARGS_MAX, VALUE, ONCE, config_compress_brotli)                 \
    X(COMPRESS, "gzip", 1, CODING_ARGS_MAX, VALUE, ONCE, config_compress_gzip)                     \
    X(COMPRESS, "zstd", 1, CODING_ARGS_MAX, VALUE, ONCE, config_compress_zstd)                     \
    X(COMPRESS, "cached_level", 1, 3, VALUE, ONCE, config_compress_cached_level)                   \
    X(COMPRESS, "upstream_gzip", 1, 1, VALUE, ONCE, config_compress_upstream_gzip)                 \
    X(ADMIN, "listen", 1, 1, VALUE, ONCE, config_admin_listen)                                     \
    X(ADMIN, "token_file", 1, 1, VALUE, ONCE, config_admin_token_file)                             \
    X(ADMIN, "token", 1, 1, VALUE, ONCE, config_admin_token)                                       \
    X(ADMIN, "allow", 1, CONFIG_LIST_MAX, VALUE, MANY, config_admin_allow)

#endif
