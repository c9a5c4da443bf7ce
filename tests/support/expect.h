/*
 * expect: cmocka assertions over struct http_response, so scenarios read as
 * what they check (expect_status(&r, 200); expect_header(&r, "X-Cache",
 * "HIT");).  Header-only: libsupport itself does not depend on cmocka.
 * Include after <cmocka.h>.  Each macro fails the current test with a
 * message naming what was missing; none of them frees the response.
 */
#ifndef TESTS_SUPPORT_EXPECT_H
#define TESTS_SUPPORT_EXPECT_H

#include <inttypes.h>
#include <string.h>

#include "tests/support/client.h"
#include "tests/support/pattern.h"

/* A read function returned CLIENT_OK. */
#define expect_ok(rc) assert_int_equal((rc), CLIENT_OK)

#define expect_status(resp, code) assert_int_equal((resp)->status, (code))

/* The first field named name exists and equals value exactly. */
#define expect_header(resp, name, value)                                                           \
    do {                                                                                           \
        const char *v_ = http_response_header((resp), (name));                                     \
        if (v_ == NULL)                                                                            \
            fail_msg("response has no %s header", (name));                                         \
        assert_string_equal(v_, (value));                                                          \
    } while (0)

#define expect_no_header(resp, name)                                                               \
    do {                                                                                           \
        const char *v_ = http_response_header((resp), (name));                                     \
        if (v_ != NULL)                                                                            \
            fail_msg("unexpected %s: %s", (name), v_);                                             \
    } while (0)

#define expect_trailer(resp, name, value)                                                          \
    do {                                                                                           \
        const char *v_ = http_response_trailer((resp), (name));                                    \
        if (v_ == NULL)                                                                            \
            fail_msg("response has no %s trailer", (name));                                        \
        assert_string_equal(v_, (value));                                                          \
    } while (0)

/* The stored body is exactly the string s. */
#define expect_body(resp, s)                                                                       \
    do {                                                                                           \
        if (!http_response_body_is((resp), (s)))                                                   \
            fail_msg("body is \"%.*s\" (%zu bytes), expected \"%s\"",                              \
                     (int)((resp)->body_len > 200 ? 200 : (resp)->body_len),                       \
                     (resp)->body ? (resp)->body : "", (resp)->body_len, (s));                     \
    } while (0)

/* The stored body is len bytes of the origin pattern starting at offset. */
#define expect_pattern_body(resp, len, offset)                                                     \
    do {                                                                                           \
        assert_int_equal((resp)->body_len, (len));                                                 \
        int64_t at_ = (resp)->body ? pattern_mismatch((resp)->body, (resp)->body_len, (offset))    \
                                   : ((len) > 0 ? 0 : -1);                                         \
        if (at_ >= 0)                                                                              \
            fail_msg("body differs from the pattern at byte %" PRId64, at_);                       \
    } while (0)

/* Both responses are the same origin response: the test origin numbers its
 * connections (X-Origin-Conn) and the requests on each (X-Origin-Seq), so a
 * cached answer carries the numbers of the response it was stored from. */
static inline void expect_same_origin_response(const struct http_response *a,
                                               const struct http_response *b)
{
    const char *names[] = {"X-Origin-Conn", "X-Origin-Seq", "Date"};
    for (size_t i = 0; i < 3; i++) {
        const char *va = http_response_header(a, names[i]);
        const char *vb = http_response_header(b, names[i]);
        if (!va || !vb || strcmp(va, vb) != 0)
            fail_msg("%s differs: %s vs %s: not the same origin response", names[i],
                     va ? va : "none", vb ? vb : "none");
    }
}

/* The two responses came from two different origin requests. */
static inline void expect_different_origin_responses(const struct http_response *a,
                                                     const struct http_response *b)
{
    const char *ca = http_response_header(a, "X-Origin-Conn");
    const char *cb = http_response_header(b, "X-Origin-Conn");
    const char *sa = http_response_header(a, "X-Origin-Seq");
    const char *sb = http_response_header(b, "X-Origin-Seq");
    assert_non_null(ca);
    assert_non_null(cb);
    assert_non_null(sa);
    assert_non_null(sb);
    if (strcmp(ca, cb) == 0 && strcmp(sa, sb) == 0)
        fail_msg("both responses are origin response conn %s seq %s", ca, sa);
}

#endif
