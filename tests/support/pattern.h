/*
 * pattern: the body tessera-origin sends for len=N.  Byte i of the body is
 * 'a' + i % 26, so a test can check any piece of a large body (a range, a
 * chunk, the bytes before an abort) knowing only its offset.
 */
#ifndef TESTS_SUPPORT_PATTERN_H
#define TESTS_SUPPORT_PATTERN_H

#include <stddef.h>
#include <stdint.h>

/* Fill dst[0..len) with the pattern bytes at offsets [offset, offset+len). */
void pattern_fill(char *dst, size_t len, uint64_t offset);

/* Index in data of the first byte that is not the pattern byte for
 * offset + index, or -1 when all len bytes match. */
int64_t pattern_mismatch(const char *data, size_t len, uint64_t offset);

#endif
