/*
 * tests/support/statsdoc.c: numbers out of /stats and /metrics (see
 * statsdoc.h).
 */
#include "tests/support/statsdoc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool statsdoc_json_int(const char *doc, const char *anchor, const char *key, long long *out,
                       char *why, size_t whylen)
{
    const char *p = doc;
    if (p && anchor)
        p = strstr(p, anchor);
    if (!p) {
        snprintf(why, whylen, "no %s in %.200s", anchor ? anchor : "document",
                 doc ? doc : "(null)");
        return false;
    }
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    p = strstr(p, pat);
    if (!p) {
        snprintf(why, whylen, "no \"%s\" after %s", key, anchor ? anchor : "the start");
        return false;
    }
    p += strlen(pat);
    while (*p == ' ')
        p++;
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p) {
        snprintf(why, whylen, "\"%s\" is not an integer: %.40s", key, p);
        return false;
    }
    *out = v;
    return true;
}

bool statsdoc_metric(const char *doc, const char *series, long long *out)
{
    size_t n = strlen(series);
    for (const char *p = doc; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            *out = strtoll(p + n + 1, NULL, 10);
            return true;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}
