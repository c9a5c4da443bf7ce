/*
 * tests/support/clock.h: the monotonic clock and sleeping, for tests that
 * wait for something to happen (one copy for every test file).
 */
#ifndef TESSERA_TEST_CLOCK_H
#define TESSERA_TEST_CLOCK_H

/* now_ms: CLOCK_MONOTONIC in milliseconds. */
long now_ms(void);

/* sleep_ms: sleep ms milliseconds (again after a signal). */
void sleep_ms(long ms);

#endif
