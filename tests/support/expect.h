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

#endif
