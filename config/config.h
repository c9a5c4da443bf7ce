/*
 * config/config.h: the typed configuration.
 *
 * A config file is parsed once (config/parser.c builds a syntax tree from
 * config/lexer.c's tokens; config/config.c turns that tree into the structs
 * below, checking every value).  The data path only reads these structs: no
 * string of the config is looked at while serving.
 *
 * Ownership: a struct config owns everything it points to.  It is immutable
 * once config_load() returns and is shared between threads by reference
 * count: config_ref() / config_release().  A reload builds a new config and
 * swaps it in; requests that started under the old one keep it alive until
 * they finish.
 *
 * Sizes are in bytes, durations in milliseconds.
 */
#ifndef TESSERA_CONFIG_H
#define TESSERA_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Where a value came from, for error messages: "file:line:col". */
struct config_pos {
    const char *file; /* owned by the config (or the syntax tree) */
    unsigned line;    /* 1-based */
    unsigned col;     /* 1-based, in bytes */
};

/* One `listen ADDR:PORT;`.  Port 0 asks the kernel for a free port once at
 * start-up; every worker then listens on that same port. */
struct config_listen {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[64]; /* as written, for logs: "127.0.0.1:8080", "[::1]:8080" */
    struct config_pos pos;
};

/* One `server HOST:PORT [weight=N] [max_fails=N] [fail_timeout=DUR];`.
 * HOST is resolved once, at load time (first address getaddrinfo gives). */
struct config_server {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[300];           /* "host:port" as written, for logs */
    unsigned weight;          /* default 1, 1..1000 */
    unsigned max_fails;       /* default 1; 0 disables failure accounting */
    uint64_t fail_timeout_ms; /* default 10s */
};

/* `backend NAME { server ...; connect_timeout DUR; read_timeout DUR;
 *                 keepalive N; }` */
struct config_backend {
    char *name;
    struct config_server *servers; /* at least one */
    size_t nservers;
    uint64_t connect_timeout_ms; /* default 5s */
    uint64_t read_timeout_ms;    /* default 60s: between two reads (and writes) */
    unsigned keepalive;          /* idle connections kept per worker and server; default 32 */
    struct config_pos pos;
};

enum route_match {
    ROUTE_EXACT,   /* route = /path { ... }   the path equals PATTERN */
    ROUTE_PREFIX,  /* route /path/ { ... }    the path starts with PATTERN */
    ROUTE_REGEX,   /* route ~ PATTERN { ... } PCRE2 matches the path */
    ROUTE_DEFAULT, /* route default { ... }   when nothing else matches */
};

/* How the query string takes part in a cache key: `key { query MODE; }` */
enum key_query {
    KEY_QUERY_ALL,    /* the query as sent (default) */
    KEY_QUERY_NONE,   /* ignored */
    KEY_QUERY_SORTED, /* parameters sorted by name (then value), so ?a=1&b=2 == ?b=2&a=1 */
    KEY_QUERY_ONLY,   /* only the listed parameters, sorted */
    KEY_QUERY_EXCEPT, /* all but the listed parameters, sorted */
};

/* `client_cache_control safe|honor|ignore;`: which request Cache-Control
 * directives a client may use to steer the shared cache.
 *  safe (default): max-age, max-stale, min-fresh, only-if-cached and
 *      no-store are honoured; no-cache (and Pragma: no-cache) and max-age=0
 *      (a browser's reload) are ignored, so one client cannot make every
 *      request go to the application;
 *  honor: all of them, no-cache included (RFC 9111 5.2.1 to the letter);
 *  ignore: none of them. */
enum client_cache_control { CLIENT_CC_SAFE, CLIENT_CC_HONOR, CLIENT_CC_IGNORE };

#define CACHE_METHOD_GET 1u
#define CACHE_METHOD_HEAD 2u

/* `store memory|memcached|both;`: where a route's responses are stored.
 * Reads try memory first, then memcached (a memcached hit is copied into
 * memory); a fill writes to every tier of the route. */
enum cache_store_tier {
    STORE_TIER_MEMORY,    /* the in-process store only */
    STORE_TIER_MEMCACHED, /* memcached only: every hit is a memcached get */
    STORE_TIER_BOTH,      /* memory in front of memcached */
};

/* The cache policy of a route (all directives live in the route block;
 * `key { ... }` is a block inside it). */
struct config_cache_policy {
    bool enabled;                       /* `cache on|off;` default off */
    uint64_t ttl_ms;                    /* `ttl DUR;` freshness when the origin gives none;
                                         * default 0: not stored without explicit freshness
                                         * or heuristics (RFC 9111 4.2.2) */
    bool ttl_override_set;              /* `ttl_override DUR;` given */
    uint64_t ttl_override_ms;           /*   freshness regardless of the origin's */
    bool honor_cache_control;           /* `honor_cache_control on|off;` default on.  off: the
                                         * response's max-age, s-maxage, Expires and no-cache
                                         * are ignored and ttl applies; private, no-store and
                                         * the Set-Cookie rule still hold */
    uint64_t stale_while_revalidate_ms; /* `stale_while_revalidate DUR;` default 0 */
    uint64_t stale_if_error_ms;         /* `stale_if_error DUR;` default 0 */
    uint64_t max_object_size;           /* `max_object_size SIZE;` default 8m */
    unsigned methods;         /* `cache_methods GET HEAD;` CACHE_METHOD_* bits, default both */
    enum key_query key_query; /* `key { query ...; }` */
    char **key_query_params;  /*   for ONLY / EXCEPT: names, as written */
    size_t nkey_query_params;
    char **key_headers; /* `key { header NAME...; }` lower-cased */
    size_t nkey_headers;
    char **key_cookies; /* `key { cookie NAME...; }` as written (case-sensitive) */
    size_t nkey_cookies;
    bool cache_cookies;                  /* `cache_cookies on|off;` default off */
    bool cache_authorized;               /* `cache_authorized on|off;` default off */
    char *tags_header;                   /* `tags_header NAME [keep];` default "Surrogate-Key" */
    bool tags_keep;                      /*   keep: clients see the tags header (and
                                          * Cache-Tag); default: both are removed */
    enum client_cache_control client_cc; /* `client_cache_control ...;` default safe */
    bool coalesce;                       /* `coalesce on|off|cluster;` default on */
    bool coalesce_cluster;               /* `coalesce cluster;` (implies coalesce): before
                                          * fetching a key missing from memcached, a node takes
                                          * a short lock item in memcached (`add`, expiring
                                          * after coalesce_timeout); the other nodes wait for
                                          * the object to appear there instead of fetching, so
                                          * ten nodes missing the same page cost the
                                          * application one request.  Needs a memcached block.
                                          * Default off */
    uint64_t coalesce_timeout_ms;        /* `coalesce_timeout DUR;` default 10s */
    unsigned max_variants;               /* `max_variants N;` Vary variants per key, default 16 */
    char *status_header;                 /* `cache_status_header NAME|off;` default "X-Cache";
                                          * NULL when off */
    bool etag_generate;                  /* `etag generate|off;` default off: give stored
                                          * responses without an ETag a strong one made
                                          * from a hash of the body */
    bool conditional_pass;               /* `conditional_pass on|off;` default on: a 200 that
                                          * passes through and satisfies the client's
                                          * If-None-Match / If-Modified-Since becomes a 304 */
    uint64_t grace_ms;                   /* `grace DUR;` default 0: how long past its freshness
                                          * (and stale windows) a stored response is kept for
                                          * revalidation and stale-if-error; never served
                                          * otherwise */
    enum cache_store_tier store;         /* `store memory|memcached|both;` default both when
                                          * the config has a memcached block, memory otherwise;
                                          * memcached and both need the block */
};

/* One coding of a `compress { ... }` block: `brotli|gzip|zstd on|off
 * [level=N];` and its share of `cached_level brotli=N gzip=N zstd=N;`. */
struct config_compress_coding {
    bool enabled;
    int level;        /* for responses compressed while they stream */
    int cached_level; /* for variants of stored objects, made once */
};

/* `compress { ... }` at the top level (the default of every route) or in a
 * route (replacing the top-level one as a whole).  A block that is present
 * is on unless it says `off;`. */
struct config_compress {
    bool enabled;                         /* `compress { off; }` turns it off; default on */
    char **types;                         /* `types TYPE...;` lower-case media types without
                                           * parameters; a subtype "*" matches every
                                           * subtype of its type */
    size_t ntypes;                        /* default: see config/compress.c */
    uint64_t min_length;                  /* `min_length SIZE;` default 1k */
    struct config_compress_coding brotli; /* default on, level 4, cached 7 */
    struct config_compress_coding gzip;   /* default on, level 6, cached 9 */
    struct config_compress_coding
        zstd; /* default on, level 3, cached 8 (higher levels take tens of MiB while compressing) */
    bool upstream_gzip; /* `upstream_gzip on|off;` default off: the upstream
                         * request's Accept-Encoding is replaced by "gzip"
                         * (on) or removed (off) */
};

/* `esi on|off|auto;` */
enum esi_mode {
    ESI_OFF,  /* never: markup in the route's responses is sent as it is */
    ESI_ON,   /* every response of a listed type is processed */
    ESI_AUTO, /* only responses that ask for it with
               * `Surrogate-Control: content="ESI/1.0"` (RFC-less, W3C ESI
               * Architecture 1.0), of a listed type */
};

/* The ESI directives of a route (issue 10).  The page's route decides
 * whether its response is processed and how (types, depth, includes,
 * timeout, hosts); the fragment's route decides whether the page's client
 * cookies reach it (cookies). */
struct config_esi {
    enum esi_mode mode; /* `esi on|off|auto;` default off */
    char **types;       /* `esi_types TYPE...;` lower-case media types without
                         * parameters, as compress types (a subtype "*" lists every subtype);
                         * default text/html and application/xhtml+xml */
    size_t ntypes;
    unsigned max_depth;    /* `esi_max_depth N;` default 3, 1..10: includes nest this
                            * deep (a page's own includes are depth 1) */
    unsigned max_includes; /* `esi_max_includes N;` default 32, 1..256: subrequests
                            * one page may make, nested ones and alts counted */
    uint64_t timeout_ms;   /* `esi_timeout DUR;` default 10s, 1ms..1h: each include,
                            * from its start to its last byte, less the time it
                            * waits for the page's client */
    uint64_t head_wait_ms; /* `esi_head_wait DUR;` default 10s, 0..1m: how long the
                            * page's head waits for every include's head (to merge
                            * their Cache-Control and ETag, and to answer 502 when
                            * one fails); after that it goes without validators and
                            * with `Cache-Control: no-store`, and the parts stream
                            * as they come */
    char **allow_hosts;    /* `esi_allow_hosts NAME...;` lower-case host names (no
                            * port) an absolute src may name besides the page's own
                            * host; default none */
    size_t nallow_hosts;
    bool cookies; /* `esi_cookies on|off;` default off: subrequests that land
                   * on this route carry the page request's Cookie and
                   * Authorization fields */
};

/* `route MATCH { backend NAME; host NAME; }` */
struct config_route {
    enum route_match match;
    char *pattern; /* NUL-terminated; NULL for ROUTE_DEFAULT */
    size_t pattern_len;
    pcre2_code *regex; /* ROUTE_REGEX only: compiled once, JIT-compiled when available */
    char *host;        /* lower-case, without port; NULL: any host */
    struct config_backend *backend; /* points into config->backends */
    unsigned index;                 /* position in file order, 0-based */
    struct config_cache_policy cache;
    struct config_compress compress; /* the route's own block, else a deep copy of the
                                      * top-level one (defaults without it): every route
                                      * owns its types, so no two structs share a string */
    struct config_esi esi;
    struct config_pos pos;
};

/* `limits { ... }`: every limit has a safe default. */
struct config_limits {
    size_t header_size;         /* request head, request line included; default 32k -> 431 */
    unsigned headers;           /* header fields in a request; default 100 -> 431 */
    size_t uri_size;            /* request target; default 8k -> 414 */
    uint64_t body_size;         /* request body; default 10m -> 413; 0 = no limit */
    uint64_t header_timeout_ms; /* to receive a whole head; default 10s -> 408 */
    uint64_t body_timeout_ms;   /* between two reads of a request body; default 60s -> 408 */
    uint64_t idle_timeout_ms;   /* keep-alive connection with no request; default 60s */
    unsigned max_connections;   /* client connections, all workers together; default 10000 */
};

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* `log { access PATH|stderr|off; error PATH|stderr; level error|warn|info|debug; }`
 * Relative paths are relative to the directory of the main config file. */
struct config_log {
    char *access_path;    /* NULL: off; "stderr"; or a path.  Default: off */
    char *error_path;     /* "stderr" or a path.  Default: "stderr" */
    enum log_level level; /* default LOG_INFO */
};

/* One `server HOST:PORT [weight=N];` of the memcached block.  HOST is kept
 * as a name or an IP literal, not resolved here: libmemcached resolves it
 * when it connects, so a memcached server that is down or not yet in DNS
 * does not stop tessera from starting (it serves from memory and the
 * upstream meanwhile).  It is stored in one spelling (names lower-cased,
 * IPv6 canonical), since ketama places a server by its name and port. */
struct config_memcached_server {
    char *host;      /* a name or an IP literal; IPv6 without its brackets */
    unsigned port;   /* 1..65535 */
    unsigned weight; /* default 1, 1..1000: the server's share of the key space */
    char text[300];  /* "host:port" as written, for logs: "[::1]:11211" */
    struct config_pos pos;
};

/* `memcached { server ...; prefix STR; timeout DUR; retry_timeout DUR;
 *              io_threads N; item_size SIZE; ttl_slack DUR; queue_max N; }`
 * The shared cache tier; its defaults are set whether or not the block is
 * given, and used only when it is. */
struct config_memcached {
    bool enabled;                            /* the block is given */
    struct config_memcached_server *servers; /* at least one when enabled; keys are spread
                                              * over them by consistent hashing (ketama) */
    size_t nservers;
    char *prefix;              /* `prefix STR;` default "tsr:": 1..64 printable ASCII
                                * characters without spaces (memcached's key rules);
                                * every key is this prefix and 32 hex digits */
    uint64_t timeout_ms;       /* `timeout DUR;` default 200ms, 1ms..1m: connect and
                                * each operation; longer is a miss (or a dropped write) */
    uint64_t retry_timeout_ms; /* `retry_timeout DUR;` default 5s, 1ms..1h: how long a
                                * failed server is left out (its keys go to the others)
                                * before it is tried again */
    unsigned io_threads;       /* `io_threads N;` default 2, 1..64: threads that make the
                                * blocking libmemcached calls for the workers */
    uint64_t item_size;        /* `item_size SIZE;` default 1047552 (1m - 1k: memcached's
                                * default largest item less room for its header),
                                * 4k..128m: larger objects are split into chunk items */
    uint64_t ttl_slack_ms;     /* `ttl_slack DUR;` default 60s, 0..30d: an item's memcached
                                * expiry is freshness + stale windows + ttl_slack, so
                                * memcached keeps an object a little past the moment
                                * tessera stops serving it (tessera checks freshness
                                * itself; a node whose clock runs ahead still finds it) */
    unsigned queue_max;        /* `queue_max N;` default 4096, 16..1000000: jobs waiting
                                * for the I/O threads; when full, writes are dropped
                                * (counted), never queued without limit */
    uint64_t purge_sync_ms;    /* `purge_sync DUR;` default 1s, 10ms..1h: how often a node
                                * polls the shared purge log (issue 8) */
};

/* One `allow CIDR;` of the admin block: addr/prefix, IPv4 or IPv6. */
struct config_cidr {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network byte order; 4 bytes used for AF_INET */
    unsigned prefix;        /* 0..32 or 0..128 */
    struct config_pos pos;
};

/* `admin { listen ADDR:PORT; token_file PATH; token off; allow CIDR...; }`:
 * the admin listener (purge, stats, metrics, health).  Absent: no admin
 * listener.  listen.pos is the `listen` directive's, or the `admin` block's
 * when the default applies; the default allow entries have no file
 * (pos.file NULL).  Its defaults are set whether or not the block is given. */
struct config_admin {
    bool enabled;                /* the block is given */
    struct config_listen listen; /* default 127.0.0.1:8081 */
    char *token_file;            /* as resolved (relative to the main file's directory);
                                  * NULL when not given */
    char *token;                 /* the file's content without trailing whitespace, read at
                                  * load time (1..4096 bytes, printable ASCII, no spaces);
                                  * NULL with `token off;` */
    bool token_off;              /* `token off;`: only allowed when listen is loopback */
    struct config_cidr *allow;   /* clients allowed; default 127.0.0.0/8 and ::1/128 */
    size_t nallow;
};

struct config {
    atomic_uint refs;
    char *path; /* the main file, as given */

    struct config_listen *listens; /* at least one */
    size_t nlistens;
    unsigned workers;          /* `workers N|auto;` auto (default) = online CPUs */
    uint64_t drain_timeout_ms; /* `drain_timeout DUR;` default 10s: SIGTERM grace */

    struct config_backend *backends;
    size_t nbackends;

    struct config_route *routes; /* in file order, ROUTE_DEFAULT included */
    size_t nroutes;

    struct config_limits limits;
    struct config_log log;
    uint64_t cache_memory;             /* `cache { memory SIZE; }` default 256m: the memory store's
                                        * bound, headers, bodies and bookkeeping counted */
    struct config_memcached memcached; /* `memcached { ... }` */
    struct config_admin admin;         /* `admin { ... }` */
    struct config_compress compress;   /* top-level `compress { ... }`, defaults without it:
                                        * what routes without their own block copy.  The
                                        * data path reads route->compress, never this */

    /* Runtime counters that live as long as this config (proxy/stats.h):
     * set once by stats_config_attach(), freed by the config's last
     * release through stats_free. */
    void *stats;
    unsigned stats_workers;
    void (*stats_free)(void *stats);

    /* The file names the config was read from (main file and includes);
     * config_pos.file points into these. */
    char **files;
    size_t nfiles;
};

/*
 * config_load: read PATH (and what it includes), check it, and return a new
 * config with one reference.  On failure returns NULL and writes one line
 * into err (size errlen, always NUL-terminated), of the form
 *     "FILE:LINE:COL: what is wrong, and what was expected"
 * Unknown directives, missing or duplicate required values, values out of
 * range, unknown backends, bad regexes and unresolvable hosts are errors.
 */
struct config *config_load(const char *path, char *err, size_t errlen);

/*
 * config_load_string: as config_load, but the main file's text is TEXT and
 * NAME is the file name used in messages and for resolving relative includes
 * and paths.  For tests and `tessera -t -`.
 */
struct config *config_load_string(const char *name, const char *text, char *err, size_t errlen);

/* config_ref: take one more reference; returns cfg.  Thread-safe. */
struct config *config_ref(struct config *cfg);

/* config_release: drop a reference, free the config when it was the last,
 * and set *cfgp to NULL.  Thread-safe; NULL-safe. */
void config_release(struct config **cfgp);

/* config_backend_find: the backend called NAME, or NULL. */
struct config_backend *config_backend_find(const struct config *cfg, const char *name);

/* config_cidr_match: whether the address SA (AF_INET or AF_INET6; any other
 * family never matches) lies in one of the N networks CIDRS.  An IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4
 * client) is also matched, as a.b.c.d, against the IPv4 networks.  Pure;
 * thread-safe (config/admin.c). */
bool config_cidr_match(const struct config_cidr *cidrs, size_t n, const struct sockaddr *sa);

/* config_addr_is_loopback: whether SA is a loopback address: 127.0.0.0/8,
 * ::1, or 127.0.0.0/8 mapped into IPv6 (::ffff:127.a.b.c).  False for the
 * wildcard addresses and for other families.  Pure; thread-safe. */
bool config_addr_is_loopback(const struct sockaddr *sa);

/* log_level_name: "error", "warn", "info", "debug". */
const char *log_level_name(enum log_level level);

#endif
