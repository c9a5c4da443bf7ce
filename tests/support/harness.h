/*
 * harness: the usual scene of an integration test: a temp dir, one or more
 * test origins, and build/tessera in front of them with a generated config.
 *
 *   struct harness h;
 *   harness_init(&h, "proxy");
 *   harness_origin(&h, 0);                       // origin 0: h.origin_port[0]
 *   harness_tessera(&h, "backend app { server 127.0.0.1:%d; }\n"
 *                       "route default { backend app; }\n", h.origin_port[0]);
 *   ... talk to 127.0.0.1:h.port ...
 *   harness_free(&h);                            // stops everything
 *
 * The config tessera gets is a preamble (listen 127.0.0.1:0; workers 2; a
 * log block writing the error and access logs into the temp dir at level
 * info) followed by the test's text.  Pass HARNESS_NO_PREAMBLE_LOG in
 * h.flags before harness_tessera() to leave out the log block (the test
 * writes its own).  Every function returns false (reason on stderr) on
 * failure, so a test asserts on it.  Not thread-safe.
 */
#ifndef TESTS_SUPPORT_HARNESS_H
#define TESTS_SUPPORT_HARNESS_H

#include <stdbool.h>

#include "tests/support/proc.h"
#include "tests/support/tmpdir.h"

#define HARNESS_ORIGINS 4
#define HARNESS_NO_PREAMBLE_LOG 1u

struct harness {
    struct tmpdir *td;
    struct proc *origin[HARNESS_ORIGINS];
    int origin_port[HARNESS_ORIGINS];
    struct proc *tessera;
    int port;               /* tessera's listening port */
    const char *conf;       /* the config file, owned by td */
    const char *error_log;  /* TD/error.log */
    const char *access_log; /* TD/access.log */
    unsigned workers;       /* `workers` in the preamble; default 2 */
    unsigned flags;
};

/* harness_init: zero h and create its temp dir /tmp/tessera-TAG-XXXXXX. */
bool harness_init(struct harness *h, const char *tag);

/* harness_origin: start origin i (extra origin arguments NULL-terminated
 * may follow, e.g. "--demo", NULL; pass NULL alone for none). */
bool harness_origin(struct harness *h, int i, ...) __attribute__((sentinel));

/* harness_write_config: (re)write the config file: preamble + the text. */
bool harness_write_config(struct harness *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* harness_tessera: write the config and start tessera; h->port is its
 * port once it logs "listening on". */
bool harness_tessera(struct harness *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* harness_origin_count: how many requests origin i has served for path
 * (its /__count), or -1 on error. */
long harness_origin_count(struct harness *h, int i, const char *path);

/* harness_free: stop tessera (SIGTERM, then SIGKILL) and the origins,
 * remove the temp dir.  Safe on a partly started harness. */
void harness_free(struct harness *h);

#endif
