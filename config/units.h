/*
 * config/units.h: numbers, sizes and durations as written in config files.
 *
 * Every parser here takes a (pointer, length) slice, needs no NUL and accepts
 * exactly the whole slice: no sign, no spaces, no fractions, nothing after
 * the unit.  A value that does not fit in 64 bits is rejected, never wrapped.
 * They keep no state and are safe to call from any thread.
 */
#ifndef TESSERA_CONFIG_UNITS_H
#define TESSERA_CONFIG_UNITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * units_parse_uint: a plain decimal number, "0" to "18446744073709551615".
 * Returns true and stores the value in *out; on failure returns false and
 * leaves *out untouched.
 */
bool units_parse_uint(const char *s, size_t len, uint64_t *out);

/*
 * units_parse_size: a byte count: a decimal number with an optional suffix
 * k/K, m/M or g/G (powers of 1024): "512", "64k", "10m", "1G".
 * Returns true and stores the number of bytes in *out; on a malformed value
 * or an overflow returns false and leaves *out untouched.
 */
bool units_parse_size(const char *s, size_t len, uint64_t *out);

/*
 * units_parse_duration_ms: a duration: a decimal number with an optional
 * unit ms, s, m, h or d.  A bare number is seconds, as in nginx: "30" is
 * 30000 ms.  Returns true and stores milliseconds in *out_ms; on a malformed
 * value or an overflow returns false and leaves *out_ms untouched.
 */
bool units_parse_duration_ms(const char *s, size_t len, uint64_t *out_ms);

#endif
