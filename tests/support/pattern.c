/*
 * pattern: the origin's body pattern ('a' + offset % 26), for building
 * request bodies and checking response bodies.  Stateless; thread-safe.
 * tests/support/origin.c has its own copy of the one-line formula because it
 * is linked without this library.
 */
#include "tests/support/pattern.h"

void pattern_fill(char *dst, size_t len, uint64_t offset)
{
    for (size_t i = 0; i < len; i++)
        dst[i] = (char)('a' + (offset + i) % 26);
}

int64_t pattern_mismatch(const char *data, size_t len, uint64_t offset)
{
    for (size_t i = 0; i < len; i++)
        if (data[i] != (char)('a' + (offset + i) % 26))
            return (int64_t)i;
    return -1;
}
