/*
 * tests/support/harness.c: origins + tessera for integration tests (see
 * harness.h).
 */
#include "tests/support/harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/client.h"

bool harness_init(struct harness *h, const char *tag)
{
    memset(h, 0, sizeof *h);
    h->workers = 2;
    h->td = tmpdir_create(tag);
    if (!h->td)
        return false;
    h->error_log = tmpdir_file(h->td, "error.log");
    h->access_log = tmpdir_file(h->td, "access.log");
    return h->error_log && h->access_log;
}

bool harness_origin(struct harness *h, int i, ...)
{
    const char *args[8] = {0};
    va_list ap;
    va_start(ap, i);
    for (int n = 0; n < 7; n++) {
        args[n] = va_arg(ap, const char *);
        if (!args[n])
            break;
    }
    va_end(ap);
    char name[32];
    snprintf(name, sizeof name, "origin%d", i);
    h->origin[i] = proc_start_origin(h->td, name, args[0], args[1], args[2], args[3], args[4],
                                     args[5], args[6], (const char *)NULL);
    if (!h->origin[i])
        return false;
    h->origin_port[i] = h->origin[i]->port;
    return true;
}

static bool write_config_v(struct harness *h, const char *fmt, va_list ap)
{
    char *body = NULL;
    if (vasprintf(&body, fmt, ap) < 0)
        return false;
    if (h->flags & HARNESS_NO_PREAMBLE_LOG)
        h->conf = tmpdir_write(h->td, "tessera.conf", "listen 127.0.0.1:0;\nworkers %u;\n%s",
                               h->workers, body);
    else
        h->conf = tmpdir_write(h->td, "tessera.conf",
                               "listen 127.0.0.1:0;\nworkers %u;\n"
                               "log { error %s; access %s; level info; }\n%s",
                               h->workers, h->error_log, h->access_log, body);
    free(body);
    return h->conf != NULL;
}

bool harness_write_config(struct harness *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool ok = write_config_v(h, fmt, ap);
    va_end(ap);
    return ok;
}

bool harness_tessera(struct harness *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool ok = write_config_v(h, fmt, ap);
    va_end(ap);
    if (!ok)
        return false;
    const char *log = (h->flags & HARNESS_NO_PREAMBLE_LOG) ? NULL : h->error_log;
    h->tessera = proc_start_tessera(h->td, "tessera", h->conf, log, (const char *)NULL);
    if (!h->tessera)
        return false;
    h->port = h->tessera->port;
    return true;
}

long harness_origin_count(struct harness *h, int i, const char *path)
{
    char target[512];
    snprintf(target, sizeof target, "/__count?path=%s", path);
    struct http_response r = {0};
    long n = -1;
    if (http_get(h->origin_port[i], target, &r, (const char *)NULL) == CLIENT_OK &&
        r.status == 200 && r.body)
        n = strtol(r.body, NULL, 10);
    http_response_clear(&r);
    return n;
}

void harness_free(struct harness *h)
{
    proc_free(&h->tessera);
    for (int i = 0; i < HARNESS_ORIGINS; i++)
        proc_free(&h->origin[i]);
    tmpdir_free(&h->td);
    memset(h, 0, sizeof *h);
}
