/*
 * tests/support/configtest.h: loading config text in unit tests, for the
 * config/ test files (one copy of what each of them needs).  A failure is a
 * cmocka test failure with the loader's message.
 */
#ifndef TESSERA_TEST_CONFIGTEST_H
#define TESSERA_TEST_CONFIGTEST_H

#include "config/config.h"

/* configtest_load: the config of text (named "t.conf"); the test fails
 * with the loader's message when it is refused.  Release the result. */
struct config *configtest_load(const char *text);

/* configtest_expect_error: text is refused with exactly msg
 * ("t.conf:LINE:COL: ..."). */
void configtest_expect_error(const char *text, const char *msg);

/* configtest_expect_error_prefix: text is refused with a message starting
 * with prefix (for messages whose end depends on the system). */
void configtest_expect_error_prefix(const char *text, const char *prefix);

#endif
