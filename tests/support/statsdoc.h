/*
 * tests/support/statsdoc.h: numbers out of tessera's admin documents, for
 * tests that check exact deltas: a key of the /stats JSON, a sample of the
 * /metrics text.  Pure string searches; nothing is allocated.
 */
#ifndef TESSERA_TESTS_STATSDOC_H
#define TESSERA_TESTS_STATSDOC_H

#include <stdbool.h>
#include <stddef.h>

/* statsdoc_json_int: the integer after "key": in doc, searching from the
 * first occurrence of anchor (NULL: the start).  False, with why filled
 * (NUL-terminated, whylen bytes), when the anchor or the key is missing or
 * the value is not an integer. */
bool statsdoc_json_int(const char *doc, const char *anchor, const char *key, long long *out,
                       char *why, size_t whylen);

/* statsdoc_metric: the value of the sample `series` (name or
 * name{labels}, exactly as written) in a Prometheus text.  False when
 * there is no such sample. */
bool statsdoc_metric(const char *doc, const char *series, long long *out);

#endif
