/*
 * tests/support/configtest.c: see configtest.h.
 */
#include "tests/support/configtest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* Longer than any loader message (a path, a position and a sentence). */
#define ERR_MAX 1024

struct config *configtest_load(const char *text)
{
    char err[ERR_MAX] = "";
    struct config *cfg = config_load_string("t.conf", text, err, sizeof err);
    if (!cfg)
        fail_msg("unexpected config error: %s", err);
    return cfg;
}

void configtest_expect_error(const char *text, const char *msg)
{
    char err[ERR_MAX] = "";
    struct config *cfg = config_load_string("t.conf", text, err, sizeof err);
    if (cfg) {
        config_release(&cfg);
        fail_msg("expected the error \"%s\"", msg);
    }
    assert_string_equal(err, msg);
}

void configtest_expect_error_prefix(const char *text, const char *prefix)
{
    char err[ERR_MAX] = "";
    struct config *cfg = config_load_string("t.conf", text, err, sizeof err);
    if (cfg) {
        config_release(&cfg);
        fail_msg("expected an error starting \"%s\"", prefix);
    }
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", err, prefix);
}
