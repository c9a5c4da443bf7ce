/*
 * cache/httpdate.h: HTTP-date and delta-seconds values (RFC 9110 5.6.7,
 * RFC 9111 1.2.2).
 *
 * Pure functions over (pointer, length) slices: nothing is allocated, the
 * input need not be NUL-terminated, and bad input is a `false` return, never
 * an assertion.  Times are whole seconds since the Unix epoch (UTC).
 */
#ifndef TESSERA_CACHE_HTTPDATE_H
#define TESSERA_CACHE_HTTPDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 9111 1.2.2: a delta-seconds value (or a calculation on one) too large
 * to represent is taken as 2^31.  Every parsed duration saturates here, so
 * seconds * 1000 always fits an int64_t of milliseconds. */
#define HTTP_DELTA_SECONDS_MAX INT64_C(2147483648)

/*
 * http_date_parse_at: parse s/len as an HTTP-date in any of the three forms
 * RFC 9110 5.6.7 makes recipients accept:
 *     IMF-fixdate   Sun, 06 Nov 1994 08:49:37 GMT
 *     RFC 850       Sunday, 06-Nov-94 08:49:37 GMT
 *     asctime       Sun Nov  6 08:49:37 1994     (day as " 6" or "06")
 * Names of days and months and "GMT" are case-sensitive, as the grammar says;
 * the day name must be a valid one for its form but is not checked against
 * the date (robustness: a wrong weekday does not make a date unusable).
 * Leading and trailing spaces and tabs are ignored.  The fields are range-
 * checked (day within its month, leap years included, hour 0-23, minute
 * 0-59, second 0-60: 60 is a leap second and lands on the next minute).
 * A two-digit RFC 850 year is resolved against now_seconds: the date is
 * put in the century that makes it not more than 50 years in the future
 * (RFC 9110 5.6.7).  On success stores the time in *out_seconds and returns
 * true; on any malformed input returns false and leaves *out_seconds alone.
 */
bool http_date_parse_at(const char *s, size_t len, int64_t now_seconds, int64_t *out_seconds);

/* http_date_parse: http_date_parse_at() with the current time (time(NULL))
 * as the reference for two-digit years. */
bool http_date_parse(const char *s, size_t len, int64_t *out_seconds);

/*
 * http_delta_seconds_parse: s/len is 1*DIGIT (RFC 9111 1.2.2): no sign, no
 * spaces, no quotes.  Stores the value, saturated at HTTP_DELTA_SECONDS_MAX,
 * in *out and returns true; returns false (leaving *out alone) otherwise.
 */
bool http_delta_seconds_parse(const char *s, size_t len, int64_t *out);

#endif
