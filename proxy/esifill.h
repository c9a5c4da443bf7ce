/*
 * proxy/esifill.h: turning an upstream response into an ESI template
 * (issue 10).
 *
 * A response is a template when its route processes ESI (`esi on`, or `esi
 * auto` and the response asks with Surrogate-Control), it is a 200 to a
 * GET, its media type is one of the route's esi_types, and its body is
 * identity or gzip.  Markup anywhere else is never executed: this is the
 * only door into ESI processing.
 *
 * The body is parsed as it arrives (cache/esi.h), inflated first when gzip,
 * and ends as the template's encoding, which is what the cache stores (and
 * what an unstored template is served from).  Everything runs on the
 * caller's thread.
 */
#ifndef TESSERA_ESIFILL_H
#define TESSERA_ESIFILL_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "proxy/http.h"

/* esi_response_is_template: whether resp (spans into base), the answer to
 * a GET on a route with settings esi, is to be parsed as a template. */
bool esi_response_is_template(const struct config_esi *esi, const char *base,
                              const struct http_head *resp);

/* esi_surrogate_asks: a Surrogate-Control value carries content="ESI/1.0"
 * (W3C Edge Architecture 1.0: the content directive, a space-separated
 * list, quoted or not; other directives and targets are ignored). */
bool esi_surrogate_asks(const char *v, size_t len);

struct esi_fill;

/* esi_fill_new: a template fill for a body that is gzip (true) or identity,
 * of at most max_body bytes decoded.  NULL when out of memory. */
struct esi_fill *esi_fill_new(bool gzip, size_t max_body);

/* esi_fill_write: the next body bytes.  False once the fill has failed
 * (too large, corrupt gzip, out of memory): see esi_fill_error(). */
bool esi_fill_write(struct esi_fill *f, const char *p, size_t n);

/* esi_fill_finish: the body ended: the template's encoding, malloc'd, in
 * *out (*len bytes), owned by the caller.  False on failure. */
bool esi_fill_finish(struct esi_fill *f, unsigned char **out, size_t *len);

/* esi_fill_error: why the fill failed ("" while it has not). */
const char *esi_fill_error(const struct esi_fill *f);

/* esi_fill_free: free f and NULL *f (NULL is fine). */
void esi_fill_free(struct esi_fill **f);

#endif
