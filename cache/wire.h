/*
 * cache/wire.h: the pieces every binary encoding of cache/ shares: objects
 * as memcached items (codec.c), purge log records (ban.c) and cached ESI
 * templates (esi.c).  Little-endian integers of 1 to 8 bytes, and the
 * formatting of a decoder's one-line reason.  Header-only: nothing here
 * allocates or fails.
 */
#ifndef TESSERA_CACHE_WIRE_H
#define TESSERA_CACHE_WIRE_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

/* wire_get_le: the n-byte (1..8) little-endian integer at p. */
static inline uint64_t wire_get_le(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

/* wire_put_le: write v as n bytes (1..8) little-endian at p; returns p + n. */
static inline unsigned char *wire_put_le(unsigned char *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
    return p + n;
}

/* wire_err: format a reason into err (errlen bytes, may be 0 or err NULL). */
static inline void wire_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline void wire_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

#endif
