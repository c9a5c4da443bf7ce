/*
 * config/units.c: the number, size and duration syntax of config files.
 *
 * Pure functions over (pointer, length) slices: a run of decimal digits,
 * then at most one unit suffix from a small table, then nothing.  Every
 * multiplication is checked so that an absurd value is an error instead of
 * a silently wrapped, tiny limit.  No state, no locking.
 */
#include "config/units.h"

#include <string.h>

struct unit {
    const char *suffix;
    uint64_t factor;
};

static const struct unit size_units[] = {
    {"", 1},
    {"k", 1024},
    {"K", 1024},
    {"m", 1024 * 1024},
    {"M", 1024 * 1024},
    {"g", 1024 * 1024 * 1024},
    {"G", 1024 * 1024 * 1024},
};

/* A bare number is seconds: nginx reads `keepalive_timeout 75;` that way. */
static const struct unit duration_units[] = {
    {"", 1000},
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
    {"d", 24 * 60 * 60 * 1000},
};

/* Parse the leading digits of s[0..len) into *out; returns how many digits
 * were read, 0 when there are none or the number overflows. */
static size_t parse_digits(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;

    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return i;
}

static bool parse_with_units(const char *s, size_t len, const struct unit *units, size_t nunits,
                             uint64_t *out)
{
    uint64_t v = 0;
    size_t n = parse_digits(s, len, &v);

    if (n == 0)
        return false;
    for (size_t i = 0; i < nunits; i++) {
        size_t slen = strlen(units[i].suffix);
        if (slen != len - n || memcmp(s + n, units[i].suffix, slen) != 0)
            continue;
        if (v > UINT64_MAX / units[i].factor)
            return false;
        *out = v * units[i].factor;
        return true;
    }
    return false;
}

bool units_parse_uint(const char *s, size_t len, uint64_t *out)
{
    static const struct unit none[] = {{"", 1}};

    return parse_with_units(s, len, none, 1, out);
}

bool units_parse_size(const char *s, size_t len, uint64_t *out)
{
    return parse_with_units(s, len, size_units, sizeof size_units / sizeof size_units[0], out);
}

bool units_parse_duration_ms(const char *s, size_t len, uint64_t *out_ms)
{
    return parse_with_units(s, len, duration_units,
                            sizeof duration_units / sizeof duration_units[0], out_ms);
}
