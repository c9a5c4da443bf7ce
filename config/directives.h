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

/* X(CONTEXT, "name used in messages") */
#define CONFIG_CONTEXTS(X)                                                                         \
    X(MAIN, "main")                                                                                \
    X(BACKEND, "backend")                                                                          \
    X(ROUTE, "route")                                                                              \
    X(LIMITS, "limits")                                                                            \
    X(LOG, "log")

#define CONFIG_DIRECTIVES(X)                                                                       \
    X(MAIN, "listen", 1, 1, VALUE, MANY, config_main_listen)                                       \
    X(MAIN, "workers", 1, 1, VALUE, ONCE, config_main_workers)                                     \
    X(MAIN, "drain_timeout", 1, 1, VALUE, ONCE, config_main_drain_timeout)                         \
    X(MAIN, "backend", 1, 1, BLOCK, MANY, config_main_backend)                                     \
    X(MAIN, "route", 1, 2, BLOCK, MANY, config_main_route)                                         \
    X(MAIN, "limits", 0, 0, BLOCK, ONCE, config_main_limits)                                       \
    X(MAIN, "log", 0, 0, BLOCK, ONCE, config_main_log)                                             \
    X(BACKEND, "server", 1, 4, VALUE, MANY, config_backend_server)                                 \
    X(BACKEND, "connect_timeout", 1, 1, VALUE, ONCE, config_backend_connect_timeout)               \
    X(BACKEND, "read_timeout", 1, 1, VALUE, ONCE, config_backend_read_timeout)                     \
    X(BACKEND, "keepalive", 1, 1, VALUE, ONCE, config_backend_keepalive)                           \
    X(ROUTE, "backend", 1, 1, VALUE, ONCE, config_route_backend)                                   \
    X(ROUTE, "host", 1, 1, VALUE, ONCE, config_route_host)                                         \
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
    X(LOG, "level", 1, 1, VALUE, ONCE, config_log_level)

#endif
