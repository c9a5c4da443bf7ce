/* tests/unit/proxy/coalesce.c: request coalescing (proxy/coalesce.c):
 * roles, wake-ups through each worker's inbox, cancellation, hit-for-miss. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <string.h>

#include "proxy/coalesce.h"
#include "proxy/worker.h"

struct fake_worker {
    struct worker w;
};

static struct fake_worker workers[2];

struct waiter_rec {
    struct coalesce_waiter waiter;
    int woken;
    enum coalesce_outcome outcome;
};

static void record_wake(struct coalesce_waiter *w, enum coalesce_outcome outcome)
{
    struct waiter_rec *r = (struct waiter_rec *)w;
    r->woken++;
    r->outcome = outcome;
}

static void wake_noop(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)a;
    (void)revents;
}

static int setup(void **state)
{
    (void)state;
    if (!coalesce_init())
        return -1;
    for (int i = 0; i < 2; i++) {
        memset(&workers[i], 0, sizeof workers[i]);
        workers[i].w.loop = ev_loop_new(EVFLAG_AUTO);
        ev_async_init(&workers[i].w.wake, wake_noop);
        ev_async_start(workers[i].w.loop, &workers[i].w.wake);
        if (!coalesce_inbox_init(&workers[i].w))
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        ev_async_stop(workers[i].w.loop, &workers[i].w.wake);
        ev_loop_destroy(workers[i].w.loop);
        coalesce_inbox_free(&workers[i].w);
    }
    coalesce_shutdown();
    return 0;
}

static void waiter_init(struct waiter_rec *r, int worker)
{
    memset(r, 0, sizeof *r);
    r->waiter.worker = &workers[worker].w;
    r->waiter.wake = record_wake;
}

static enum coalesce_role join(const char *key, struct waiter_rec *r, int64_t now)
{
    return coalesce_join(key, strlen(key), 42, &r->waiter, now);
}

static void test_first_fills_others_wait_and_wake_on_their_worker(void **state)
{
    (void)state;
    struct waiter_rec filler, a, b;
    waiter_init(&filler, 0);
    waiter_init(&a, 0);
    waiter_init(&b, 1);
    assert_int_equal(join("k1", &filler, 0), COALESCE_FILLER);
    assert_int_equal(join("k1", &a, 0), COALESCE_WAITER);
    assert_int_equal(join("k1", &b, 0), COALESCE_WAITER);
    assert_int_equal(coalesce_waiting(), 2);
    coalesce_fill_done("k1", 2, 42, COALESCE_STORED, 0, 0);
    assert_int_equal(coalesce_waiting(), 0);
    /* Nothing runs until each worker drains its own inbox. */
    assert_int_equal(a.woken + b.woken, 0);
    coalesce_inbox_drain(&workers[0].w);
    assert_int_equal(a.woken, 1);
    assert_int_equal(b.woken, 0);
    coalesce_inbox_drain(&workers[1].w);
    assert_int_equal(b.woken, 1);
    assert_int_equal(a.outcome, COALESCE_STORED);
    assert_int_equal(b.outcome, COALESCE_STORED);
    assert_int_equal(a.waiter.state, CW_IDLE);
    /* A stored fill leaves nothing behind: the next miss fills again. */
    struct waiter_rec again;
    waiter_init(&again, 0);
    assert_int_equal(join("k1", &again, 1), COALESCE_FILLER);
    coalesce_fill_done("k1", 2, 42, COALESCE_FAILED, 1, 0);
}

static void test_keys_compared_in_full(void **state)
{
    (void)state;
    struct waiter_rec x, y;
    waiter_init(&x, 0);
    waiter_init(&y, 0);
    /* Same hash (42), different keys: two fills. */
    assert_int_equal(join("ka", &x, 0), COALESCE_FILLER);
    assert_int_equal(join("kb", &y, 0), COALESCE_FILLER);
    coalesce_fill_done("ka", 2, 42, COALESCE_FAILED, 0, 0);
    coalesce_fill_done("kb", 2, 42, COALESCE_FAILED, 0, 0);
}

static void test_not_stored_marks_hit_for_miss_until_it_expires(void **state)
{
    (void)state;
    struct waiter_rec f, w, later, after;
    waiter_init(&f, 0);
    waiter_init(&w, 1);
    waiter_init(&later, 0);
    waiter_init(&after, 0);
    assert_int_equal(join("private", &f, 1000), COALESCE_FILLER);
    assert_int_equal(join("private", &w, 1000), COALESCE_WAITER);
    coalesce_fill_done("private", 7, 42, COALESCE_NOT_STORED, 1000, 500);
    coalesce_inbox_drain(&workers[1].w);
    assert_int_equal(w.outcome, COALESCE_NOT_STORED);
    assert_int_equal(join("private", &later, 1400), COALESCE_BYPASS);
    assert_int_equal(join("private", &after, 1500), COALESCE_FILLER);
    coalesce_fill_done("private", 7, 42, COALESCE_FAILED, 1500, 0);
}

static void test_cancel_while_waiting_and_while_queued(void **state)
{
    (void)state;
    struct waiter_rec f, gone, queued, stays;
    waiter_init(&f, 0);
    waiter_init(&gone, 0);
    waiter_init(&queued, 1);
    waiter_init(&stays, 1);
    assert_int_equal(join("c", &f, 0), COALESCE_FILLER);
    assert_int_equal(join("c", &gone, 0), COALESCE_WAITER);
    assert_int_equal(join("c", &queued, 0), COALESCE_WAITER);
    assert_int_equal(join("c", &stays, 0), COALESCE_WAITER);
    coalesce_cancel(&gone.waiter);
    assert_int_equal(gone.waiter.state, CW_IDLE);
    assert_int_equal(coalesce_waiting(), 2);
    coalesce_fill_done("c", 1, 42, COALESCE_FAILED, 0, 0);
    coalesce_cancel(&queued.waiter); /* already in worker 1's inbox */
    coalesce_inbox_drain(&workers[0].w);
    coalesce_inbox_drain(&workers[1].w);
    assert_int_equal(gone.woken, 0);
    assert_int_equal(queued.woken, 0);
    assert_int_equal(stays.woken, 1);
    assert_int_equal(stays.outcome, COALESCE_FAILED);
    coalesce_cancel(&stays.waiter); /* idle: a no-op */
}

/* Fillers on one thread, waiters joining and cancelling on another. */
struct race {
    int rounds;
};

static void *racing_waiters(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < r->rounds; i++) {
        struct waiter_rec w;
        waiter_init(&w, 1);
        if (join("race", &w, 0) == COALESCE_WAITER && (i % 2))
            coalesce_cancel(&w.waiter);
        /* Filler, cancelled, or woken through the inbox: never stuck. */
        while (w.waiter.state != CW_IDLE)
            coalesce_inbox_drain(&workers[1].w);
        coalesce_fill_done("race", 4, 42, COALESCE_FAILED, 0, 0);
    }
    return NULL;
}

static void test_concurrent_join_cancel_and_done(void **state)
{
    (void)state;
    struct race r = {20000};
    pthread_t t;
    pthread_create(&t, NULL, racing_waiters, &r);
    for (int i = 0; i < r.rounds; i++) {
        struct waiter_rec f;
        waiter_init(&f, 0);
        if (join("race", &f, 0) == COALESCE_FILLER)
            coalesce_fill_done("race", 4, 42, COALESCE_STORED, 0, 0);
        else
            coalesce_cancel(&f.waiter);
        coalesce_inbox_drain(&workers[0].w);
    }
    pthread_join(t, NULL);
    coalesce_inbox_drain(&workers[0].w);
    assert_int_equal(coalesce_waiting(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_fills_others_wait_and_wake_on_their_worker),
        cmocka_unit_test(test_keys_compared_in_full),
        cmocka_unit_test(test_not_stored_marks_hit_for_miss_until_it_expires),
        cmocka_unit_test(test_cancel_while_waiting_and_while_queued),
        cmocka_unit_test(test_concurrent_join_cancel_and_done),
    };
    return cmocka_run_group_tests_name("proxy/coalesce", tests, setup, teardown);
}
