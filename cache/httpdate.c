/*
 * cache/httpdate.c: HTTP-date (RFC 9110 5.6.7) and delta-seconds
 * (RFC 9111 1.2.2) parsing.
 *
 * Pure functions: no locale, no libc time parsing (strptime and timegm
 * depend on the locale and the TZ environment, and timegm is not C11), no
 * allocation.  Calendar arithmetic is proleptic Gregorian in int64_t, so any
 * four-digit year works without overflow.  No locking: nothing is shared.
 */
#include "cache/httpdate.h"

#include <time.h>

static const char *const day_short[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const day_long[7] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                        "Friday", "Saturday", "Sunday"};
static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

struct civil {
    int64_t year;
    int month; /* 1..12 */
    int day;   /* 1..31 */
    int hour, minute, second;
};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The inverse: the date of a day number. */
static void civil_from_days(int64_t z, struct civil *c)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    c->day = (int)(doy - (153 * mp + 2) / 5 + 1);
    c->month = (int)(mp < 10 ? mp + 3 : mp - 9);
    c->year = yoe + era * 400 + (c->month <= 2);
}

static int64_t seconds_of(const struct civil *c)
{
    return days_from_civil(c->year, c->month, c->day) * 86400 + c->hour * 3600 + c->minute * 60 +
           c->second;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* ---- a cursor over the input ---- */

struct cur {
    const char *s;
    size_t len;
    size_t i;
};

static bool lit(struct cur *c, const char *l)
{
    size_t i = c->i;
    for (; *l; l++, i++)
        if (i >= c->len || c->s[i] != *l)
            return false;
    c->i = i;
    return true;
}

static bool digits(struct cur *c, unsigned n, int *out)
{
    int v = 0;
    if (c->len - c->i < n)
        return false;
    for (unsigned k = 0; k < n; k++) {
        char ch = c->s[c->i + k];
        if (ch < '0' || ch > '9')
            return false;
        v = v * 10 + (ch - '0');
    }
    c->i += n;
    *out = v;
    return true;
}

static bool one_of(struct cur *c, const char *const *names, int n, int *out)
{
    for (int k = 0; k < n; k++)
        if (lit(c, names[k])) {
            *out = k;
            return true;
        }
    return false;
}

static bool month(struct cur *c, int *out)
{
    int k;
    if (!one_of(c, month_names, 12, &k))
        return false;
    *out = k + 1;
    return true;
}

/* time-of-day = hour ":" minute ":" second */
static bool time_of_day(struct cur *c, struct civil *t)
{
    return digits(c, 2, &t->hour) && lit(c, ":") && digits(c, 2, &t->minute) && lit(c, ":") &&
           digits(c, 2, &t->second);
}

/* IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT
 * date1 = day SP month SP year  (2DIGIT, 4DIGIT year) */
static bool parse_imf(struct cur *c, struct civil *t)
{
    int k, year;
    if (!one_of(c, day_short, 7, &k) || !lit(c, ", ") || !digits(c, 2, &t->day) || !lit(c, " ") ||
        !month(c, &t->month) || !lit(c, " ") || !digits(c, 4, &year) || !lit(c, " ") ||
        !time_of_day(c, t) || !lit(c, " GMT"))
        return false;
    t->year = year;
    return true;
}

/* rfc850-date = day-name-l "," SP date2 SP time-of-day SP GMT
 * date2 = day "-" month "-" 2DIGIT */
static bool parse_rfc850(struct cur *c, struct civil *t, int *yy)
{
    int k;
    return one_of(c, day_long, 7, &k) && lit(c, ", ") && digits(c, 2, &t->day) && lit(c, "-") &&
           month(c, &t->month) && lit(c, "-") && digits(c, 2, yy) && lit(c, " ") &&
           time_of_day(c, t) && lit(c, " GMT");
}

/* asctime-date = day-name SP date3 SP time-of-day SP year
 * date3 = month SP ( 2DIGIT / ( SP DIGIT ) ) */
static bool parse_asctime(struct cur *c, struct civil *t)
{
    int k, year;
    if (!one_of(c, day_short, 7, &k) || !lit(c, " ") || !month(c, &t->month) || !lit(c, " "))
        return false;
    if (!(lit(c, " ") ? digits(c, 1, &t->day) : digits(c, 2, &t->day)))
        return false;
    if (!lit(c, " ") || !time_of_day(c, t) || !lit(c, " ") || !digits(c, 4, &year))
        return false;
    t->year = year;
    return true;
}

/* RFC 9110 5.6.7: a two-digit year that would be more than 50 years in the
 * future is the most recent past year with the same last two digits.  So:
 * the latest year ending in yy whose date is not after now + 50 years. */
static int64_t resolve_two_digit_year(int yy, const struct civil *t, int64_t now)
{
    struct civil n, limit, cand = *t;
    int64_t days = now >= 0 ? now / 86400 : -((-now + 86399) / 86400);
    int64_t rem = now - days * 86400;

    civil_from_days(days, &n);
    limit = n;
    limit.year = n.year + 50;
    limit.hour = (int)(rem / 3600);
    limit.minute = (int)(rem % 3600 / 60);
    limit.second = (int)(rem % 60);

    int64_t century = n.year >= 0 ? n.year / 100 * 100 : -((-n.year + 99) / 100 * 100);
    cand.year = century + yy;
    if (seconds_of(&cand) > seconds_of(&limit)) {
        cand.year -= 100;
    } else {
        cand.year += 100;
        if (seconds_of(&cand) > seconds_of(&limit))
            cand.year -= 100;
    }
    return cand.year;
}

bool http_date_parse_at(const char *s, size_t len, int64_t now_seconds, int64_t *out_seconds)
{
    struct cur c = {s, len, 0};
    struct civil t = {0};
    int yy;

    while (c.len > 0 && (s[c.len - 1] == ' ' || s[c.len - 1] == '\t'))
        c.len--;
    while (c.i < c.len && (s[c.i] == ' ' || s[c.i] == '\t'))
        c.i++;
    size_t start = c.i;

    if (c.len - start >= 4 && s[start + 3] == ',') {
        if (!parse_imf(&c, &t))
            return false;
    } else if (c.len - start >= 4 && s[start + 3] == ' ') {
        if (!parse_asctime(&c, &t))
            return false;
    } else {
        if (!parse_rfc850(&c, &t, &yy))
            return false;
        t.year = resolve_two_digit_year(yy, &t, now_seconds);
    }
    if (c.i != c.len)
        return false;
    if (t.month < 1 || t.month > 12 || t.day < 1 || t.day > days_in_month(t.year, t.month) ||
        t.hour > 23 || t.minute > 59 || t.second > 60)
        return false;
    *out_seconds = seconds_of(&t);
    return true;
}

bool http_date_parse(const char *s, size_t len, int64_t *out_seconds)
{
    return http_date_parse_at(s, len, (int64_t)time(NULL), out_seconds);
}

bool http_delta_seconds_parse(const char *s, size_t len, int64_t *out)
{
    int64_t v = 0;

    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        if (v < HTTP_DELTA_SECONDS_MAX)
            v = v * 10 + (s[i] - '0');
    }
    *out = v > HTTP_DELTA_SECONDS_MAX ? HTTP_DELTA_SECONDS_MAX : v;
    return true;
}
