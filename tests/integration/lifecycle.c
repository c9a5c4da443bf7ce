/*
 * tests/integration/lifecycle.c: tessera's process life cycle, driven by
 * signals (tessera(8), SIGNALS): SIGHUP reloads under load and with a bad
 * config, SIGTERM/SIGINT drain and exit 0, the drain timeout, SIGUSR1
 * reopening rotated logs, and the start-up errors (bad config, port in use).
 *
 * Every test has its own fixture (harness, extra process, held socket,
 * clients, load threads), made in its setup and torn down in its teardown,
 * so a failed assertion never leaves a process or a thread behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/clock.h"
#include "tests/support/expect.h"
#include "tests/support/harness.h"

/* ---- fixture -------------------------------------------------------------- */

#define LOAD_THREADS 4
#define LOAD_LEN 1000          /* body bytes of every load request */
#define LOAD_RUN_MS 2000       /* how long the load runs */
#define LOAD_RELOADS 5         /* SIGHUPs during the load */
#define LOAD_READ_TIMEOUT 5000 /* idle timeout of one load read */

struct loader {
    pthread_t tid;
    bool started;
    int idx, port;
    int port_a, port_b;
    atomic_bool *stop;
    /* Written by the thread only, read after the join. */
    long ok, failed, conn_errors, reconnects, from_a, from_b, from_other;
    char first_error[256];
};

struct fixture {
    struct harness h;
    struct proc *p; /* a tessera started outside the harness */
    int fd;         /* a socket the test holds, or -1 */
    struct client *c[3];
    atomic_bool stop; /* tells the load threads to finish */
    struct loader load[LOAD_THREADS];
};

static int teardown(void **state);

static int setup_n(void **state, int norigins)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->fd = -1;
    atomic_init(&f->stop, false);
    *state = f;
    bool ok = harness_init(&f->h, "lifecycle");
    for (int i = 0; ok && i < norigins; i++)
        ok = harness_origin(&f->h, i, NULL);
    if (!ok) /* cmocka skips the teardown when the setup fails */
        teardown(state);
    return ok ? 0 : -1;
}

static int setup_no_origin(void **state)
{
    return setup_n(state, 0);
}
static int setup_one_origin(void **state)
{
    return setup_n(state, 1);
}
static int setup_two_origins(void **state)
{
    return setup_n(state, 2);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (!f)
        return 0;
    atomic_store(&f->stop, true);
    for (int i = 0; i < LOAD_THREADS; i++)
        if (f->load[i].started)
            pthread_join(f->load[i].tid, NULL);
    for (size_t i = 0; i < sizeof f->c / sizeof f->c[0]; i++)
        client_free(&f->c[i]);
    if (f->fd >= 0)
        close(f->fd);
    proc_free(&f->p);
    harness_free(&f->h);
    free(f);
    *state = NULL;
    return 0;
}

/* ---- vocabulary ----------------------------------------------------------- */

static void sleep_until(long t)
{
    long d;
    while ((d = t - now_ms()) > 0) {
        struct timespec ts = {d / 1000, (d % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* How many times needle occurs in the file at path (0 if unreadable). */
static int log_count(const char *path, const char *needle)
{
    char *s = tmpdir_read_file(path, NULL);
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(s);
    return n;
}

/* Wait until needle occurs at least n times in the file. */
static bool wait_log_count(const char *path, const char *needle, int n, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    while (log_count(path, needle) < n) {
        if (now_ms() >= deadline)
            return false;
        sleep_ms(10);
    }
    return true;
}

/* True when one line of the file contains both a and b. */
static bool log_line_has(const char *path, const char *a, const char *b)
{
    char *s = tmpdir_read_file(path, NULL);
    bool found = false;
    for (char *line = s; line && *line && !found;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        found = strstr(line, a) && strstr(line, b);
        line = nl ? nl + 1 : NULL;
    }
    free(s);
    return found;
}

/* Lines in the file (0 if unreadable). */
static int line_count(const char *path)
{
    return log_count(path, "\n");
}

#define expect_log(path, needle)                                                                   \
    do {                                                                                           \
        if (!proc_log_contains((path), (needle)))                                                  \
            fail_msg("%s has no \"%s\"", (path), (needle));                                        \
    } while (0)

#define expect_no_log(path, needle)                                                                \
    do {                                                                                           \
        if (proc_log_contains((path), (needle)))                                                   \
            fail_msg("%s unexpectedly has \"%s\"", (path), (needle));                              \
    } while (0)

#define expect_log_line(path, a, b)                                                                \
    do {                                                                                           \
        if (!log_line_has((path), (a), (b)))                                                       \
            fail_msg("%s has no line with both \"%s\" and \"%s\"", (path), (a), (b));              \
    } while (0)

#define expect_counter(value, expected)                                                            \
    do {                                                                                           \
        long v_ = (value), e_ = (expected);                                                        \
        if (v_ != e_)                                                                              \
            fail_msg("%s is %ld, expected %ld", #value, v_, e_);                                   \
    } while (0)

/* p exited with status 1 on its own: no crash, no sanitizer report (which
 * would exit 1 too in the ASan build). */
static void expect_exit_1(struct proc *p, const char *what)
{
    int rc = proc_wait_exit(p, 5000);
    if (rc < 0)
        fail_msg("tessera %s still running after 5 s", what);
    if (proc_log_contains(p->err_path, "Sanitizer") ||
        proc_log_contains(p->err_path, "runtime error"))
        fail_msg("tessera %s: sanitizer report in %s", what, p->err_path);
    if (rc != 1)
        fail_msg("tessera %s exited with status %d, expected 1", what, rc);
}

/* X-Origin-Port of a 200 response, which must be there. */
static int origin_of(const struct http_response *r)
{
    expect_status(r, 200);
    assert_true(r->complete);
    const char *v = http_response_header(r, "X-Origin-Port");
    if (!v)
        fail_msg("response has no X-Origin-Port header");
    return atoi(v);
}

/* GET target on a fresh connection: a complete 200; its X-Origin-Port. */
static int get_origin(int port, const char *target)
{
    struct http_response r = {0};
    expect_ok(http_get(port, target, &r, NULL));
    int o = origin_of(&r);
    http_response_clear(&r);
    return o;
}

/* GET target on the keep-alive connection c: a complete 200 that keeps the
 * connection open; its X-Origin-Port. */
static int get_origin_on(struct client *c, const char *target)
{
    struct http_response r = {0};
    assert_int_equal(client_send_request(c, "GET", target, NULL), 0);
    expect_ok(client_read_response(c, 0, &r, CLIENT_TIMEOUT_MS));
    int o = origin_of(&r);
    assert_false(r.closed);
    http_response_clear(&r);
    return o;
}

/* Wait until origin i has received a request for path (it counts requests
 * as they arrive, before any delay=): the request is then in flight. */
static void origin_expect_in_flight(struct harness *h, int i, const char *path)
{
    long deadline = now_ms() + 3000;
    while (harness_origin_count(h, i, path) < 1) {
        if (now_ms() >= deadline)
            fail_msg("origin %d never received %s", i, path);
        sleep_ms(10);
    }
}

static void tessera_signal(struct harness *h, int sig)
{
    assert_int_equal(proc_signal(h->tessera, sig), 0);
}

/* The tessera config routing everything to the origin on port. */
static bool route_to(struct harness *h, int port)
{
    return harness_write_config(h,
                                "backend app { server 127.0.0.1:%d; keepalive 8; }\n"
                                "route default { backend app; }\n",
                                port);
}

static bool start_routed_to(struct harness *h, int port)
{
    return harness_tessera(h,
                           "backend app { server 127.0.0.1:%d; keepalive 8; }\n"
                           "route default { backend app; }\n",
                           port);
}

/* ---- load threads (test 1) ------------------------------------------------ */

static void load_fail(struct loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void load_fail(struct loader *l, const char *fmt, ...)
{
    if (l->first_error[0])
        return;
    int n =
        snprintf(l->first_error, sizeof l->first_error, "thread %d, after %ld ok: ", l->idx, l->ok);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->first_error + n, sizeof l->first_error - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Sequential keep-alive GETs until told to stop; every one must be a
 * complete 200 with the full pattern body.  A connection tessera ends with
 * "Connection: close" is replaced; any other end is a failure. */
static void *load_main(void *arg)
{
    struct loader *l = arg;
    struct client *c = NULL;
    char target[64];
    snprintf(target, sizeof target, "/load/%d?len=%d", l->idx, LOAD_LEN);
    while (!atomic_load(l->stop)) {
        if (!c) {
            c = client_connect(l->port, 2000);
            if (!c) {
                l->conn_errors++;
                load_fail(l, "connect failed");
                sleep_ms(10);
                continue;
            }
        }
        struct http_response r = {0};
        if (client_send_request(c, "GET", target, NULL) != 0) {
            l->conn_errors++;
            load_fail(l, "send failed");
            client_free(&c);
            continue;
        }
        int rc = client_read_response(c, 0, &r, LOAD_READ_TIMEOUT);
        if (rc != CLIENT_OK) {
            l->failed++;
            load_fail(l, "read returned %d (status %d, %zu body bytes)", rc, r.status, r.body_len);
            http_response_clear(&r);
            client_free(&c);
            continue;
        }
        if (r.status != 200 || r.body_len != LOAD_LEN || !r.body ||
            pattern_mismatch(r.body, r.body_len, 0) >= 0) {
            l->failed++;
            load_fail(l, "status %d with %zu body bytes", r.status, r.body_len);
        } else {
            l->ok++;
            const char *o = http_response_header(&r, "X-Origin-Port");
            int port = o ? atoi(o) : 0;
            if (port == l->port_a)
                l->from_a++;
            else if (port == l->port_b)
                l->from_b++;
            else
                l->from_other++;
        }
        if (r.closed) {
            l->reconnects++;
            client_free(&c);
        }
        http_response_clear(&r);
    }
    client_free(&c);
    return NULL;
}

/* ---- 1. SIGHUP under load -------------------------------------------------- */

static void test_reload_under_load_loses_no_request(void **state)
{
    struct fixture *f = *state;
    struct harness *h = &f->h;
    int a = h->origin_port[0], b = h->origin_port[1];
    assert_true(start_routed_to(h, a));
    assert_int_equal(get_origin(h->port, "/before"), a);

    for (int i = 0; i < LOAD_THREADS; i++) {
        struct loader *l = &f->load[i];
        l->idx = i;
        l->port = h->port;
        l->port_a = a;
        l->port_b = b;
        l->stop = &f->stop;
        assert_int_equal(pthread_create(&l->tid, NULL, load_main, l), 0);
        l->started = true;
    }

    /* Reloads at 300 ms intervals: B, A, B, A, B.  Before the last one, a
     * keep-alive connection is opened (and used, reaching A); its next
     * request after the reload must reach B. */
    long t0 = now_ms();
    int last = a;
    for (int i = 0; i < LOAD_RELOADS; i++) {
        last = (i % 2 == 0) ? b : a;
        sleep_until(t0 + 300L * (i + 1));
        if (i == LOAD_RELOADS - 1) {
            f->c[0] = client_connect(h->port, 2000);
            assert_non_null(f->c[0]);
            assert_int_equal(get_origin_on(f->c[0], "/kept"), a);
        }
        assert_true(route_to(h, last));
        tessera_signal(h, SIGHUP);
        if (!wait_log_count(h->error_log, "configuration reloaded", i + 1, 5000))
            fail_msg("reload %d: no \"configuration reloaded\" in %s", i + 1, h->error_log);
    }
    assert_int_equal(last, b);

    sleep_until(t0 + LOAD_RUN_MS);
    atomic_store(&f->stop, true);
    long ok = 0, failed = 0, conn_errors = 0, reconnects = 0, from_a = 0, from_b = 0, other = 0;
    for (int i = 0; i < LOAD_THREADS; i++) {
        struct loader *l = &f->load[i];
        pthread_join(l->tid, NULL);
        l->started = false;
        if (l->first_error[0])
            print_message("load: %s\n", l->first_error);
        ok += l->ok;
        failed += l->failed;
        conn_errors += l->conn_errors;
        reconnects += l->reconnects;
        from_a += l->from_a;
        from_b += l->from_b;
        other += l->from_other;
    }
    print_message("load: %ld ok, %ld failed, %ld connection errors, %ld reconnects; "
                  "%ld from A, %ld from B\n",
                  ok, failed, conn_errors, reconnects, from_a, from_b);
    expect_counter(failed, 0);
    expect_counter(conn_errors, 0);
    expect_counter(other, 0);
    assert_true(ok >= 100);  /* the load did run */
    assert_true(from_a > 0); /* ...under both configurations */
    assert_true(from_b > 0);

    /* Each request reached an origin exactly once. */
    long origin_total = 0;
    for (int i = 0; i < LOAD_THREADS; i++) {
        char path[32];
        snprintf(path, sizeof path, "/load/%d", i);
        long na = harness_origin_count(h, 0, path), nb = harness_origin_count(h, 1, path);
        assert_true(na >= 0 && nb >= 0);
        origin_total += na + nb;
    }
    expect_counter(origin_total, ok);

    /* After the last reload new connections reach B. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(get_origin(h->port, "/after"), b);
    assert_int_equal(harness_origin_count(h, 0, "/after"), 0);
    expect_counter(log_count(h->error_log, "configuration reloaded"), LOAD_RELOADS);
    expect_no_log(h->error_log, "reload failed");

    /* So do new requests on a connection that was idle across the reload
     * (tessera(8): only requests in flight keep the old configuration). */
    if (get_origin_on(f->c[0], "/kept") != b)
        fail_msg("a request on a keep-alive connection opened before the last reload "
                 "reached the old origin");
}

/* ---- 2. a bad config on SIGHUP ------------------------------------------- */

static void test_bad_config_on_reload_keeps_the_old_one(void **state)
{
    struct fixture *f = *state;
    struct harness *h = &f->h;
    int a = h->origin_port[0], b = h->origin_port[1];
    assert_true(start_routed_to(h, a));
    f->c[0] = client_connect(h->port, 2000);
    assert_non_null(f->c[0]);
    assert_int_equal(get_origin_on(f->c[0], "/one"), a);

    /* Preamble (3 lines) + 2 lines: the unknown directive is at 6:3. */
    assert_true(harness_write_config(h,
                                     "backend app { server 127.0.0.1:%d; }\n"
                                     "route default { backend app; }\n"
                                     "  no_such_directive on;\n",
                                     b));
    char where[4200];
    snprintf(where, sizeof where, "%s:6:3:", h->conf);
    tessera_signal(h, SIGHUP);
    assert_true(proc_wait_log(h->error_log, "reload failed", 5000));
    expect_log_line(h->error_log, "reload failed", where);
    expect_log_line(h->error_log, "reload failed", "no_such_directive");
    expect_no_log(h->error_log, "configuration reloaded");

    /* The old configuration keeps serving, on old and new connections. */
    assert_int_equal(get_origin_on(f->c[0], "/two"), a);
    for (int i = 0; i < 3; i++)
        assert_int_equal(get_origin(h->port, "/two"), a);
    assert_int_equal(harness_origin_count(h, 1, "/two"), 0);

    /* Fixed: the new configuration takes over. */
    assert_true(route_to(h, b));
    tessera_signal(h, SIGHUP);
    assert_true(proc_wait_log(h->error_log, "configuration reloaded", 5000));
    for (int i = 0; i < 3; i++)
        assert_int_equal(get_origin(h->port, "/three"), b);
    expect_counter(log_count(h->error_log, "reload failed"), 1);
    /* Also on the connection that was idle across the reload. */
    if (get_origin_on(f->c[0], "/three") != b)
        fail_msg("a request on a keep-alive connection idle across the reload "
                 "reached the old origin");
    assert_int_equal(harness_origin_count(h, 0, "/three"), 0);
}

/* ---- 3. SIGTERM drains ----------------------------------------------------- */

static void test_sigterm_drains_in_flight_and_exits_0(void **state)
{
    struct fixture *f = *state;
    struct harness *h = &f->h;
    assert_true(start_routed_to(h, h->origin_port[0]));

    struct client *idle = f->c[0] = client_connect(h->port, 2000);
    assert_non_null(idle);
    get_origin_on(idle, "/idle");
    struct client *slow = f->c[1] = client_connect(h->port, 2000);
    assert_non_null(slow);
    assert_int_equal(client_send_request(slow, "GET", "/slow?delay=1500", NULL), 0);
    origin_expect_in_flight(h, 0, "/slow");

    long t0 = now_ms();
    tessera_signal(h, SIGTERM);

    /* The idle keep-alive connection is closed at once. */
    if (!client_expect_closed(idle, 1000))
        fail_msg("the idle keep-alive connection is still open 1 s after SIGTERM");

    /* New connections are refused, or closed without an answer. */
    f->c[2] = client_connect(h->port, 1000);
    if (f->c[2]) {
        client_send_request(f->c[2], "GET", "/late", NULL); /* may fail: it is closing */
        if (!client_expect_closed(f->c[2], 1000))
            fail_msg("a connection made after SIGTERM is still open after 1 s");
        if (f->c[2]->len != f->c[2]->off)
            fail_msg("a connection made after SIGTERM got an answer: %.*s",
                     (int)(f->c[2]->len - f->c[2]->off), f->c[2]->buf + f->c[2]->off);
    }

    /* The request in flight completes, with Connection: close. */
    struct http_response r = {0};
    expect_ok(client_read_response(slow, 0, &r, 5000));
    expect_status(&r, 200);
    assert_true(r.complete);
    expect_body(&r, "hello from origin /slow\n");
    expect_header(&r, "Connection", "close");
    assert_true(r.closed);
    http_response_clear(&r);
    assert_true(client_expect_closed(slow, 1000));

    int rc = proc_wait_exit(h->tessera, (int)(t0 + 3000 - now_ms()));
    if (rc < 0)
        fail_msg("tessera still running 3 s after SIGTERM");
    assert_int_equal(rc, 0);
    expect_log(h->error_log, "exited cleanly");
    assert_int_equal(harness_origin_count(h, 0, "/late"), 0);
}

/* ---- 4. drain_timeout bounds the drain ------------------------------------- */

static void test_drain_timeout_cuts_long_requests(void **state)
{
    struct fixture *f = *state;
    struct harness *h = &f->h;
    assert_true(harness_tessera(h,
                                "drain_timeout 1s;\n"
                                "backend app { server 127.0.0.1:%d; }\n"
                                "route default { backend app; }\n",
                                h->origin_port[0]));
    struct client *c = f->c[0] = client_connect(h->port, 2000);
    assert_non_null(c);
    assert_int_equal(client_send_request(c, "GET", "/stuck?delay=5000", NULL), 0);
    origin_expect_in_flight(h, 0, "/stuck");

    long t0 = now_ms();
    tessera_signal(h, SIGTERM);
    int rc = proc_wait_exit(h->tessera, 4000);
    long took = now_ms() - t0;
    print_message("tessera exited %ld ms after SIGTERM\n", took);
    if (rc < 0)
        fail_msg("tessera still running 4 s after SIGTERM with drain_timeout 1s");
    assert_int_equal(rc, 0);
    if (took < 900 || took > 2500)
        fail_msg("tessera exited %ld ms after SIGTERM, expected about 1000 (drain_timeout 1s)",
                 took);

    /* The client sees the connection end without a complete response. */
    struct http_response r = {0};
    rc = client_read_response(c, 0, &r, 2000);
    bool complete = r.complete;
    http_response_clear(&r);
    if (rc != CLIENT_EOF && rc != CLIENT_ERROR)
        fail_msg("read after the drain timeout returned %d, expected EOF or a reset", rc);
    assert_false(complete);
    expect_log(h->error_log, "exited cleanly");
}

/* ---- 5. SIGINT is SIGTERM -------------------------------------------------- */

static void test_sigint_drains_and_exits_0(void **state)
{
    struct fixture *f = *state;
    struct harness *h = &f->h;
    assert_true(start_routed_to(h, h->origin_port[0]));
    struct client *idle = f->c[0] = client_connect(h->port, 2000);
    assert_non_null(idle);
    get_origin_on(idle, "/idle");

    tessera_signal(h, SIGINT);
    if (!client_expect_closed(idle, 1000))
        fail_msg("the idle keep-alive connection is still open 1 s after SIGINT");
    int rc = proc_wait_exit(h->tessera, 3000);
    if (rc < 0)
        fail_msg("tessera still running 3 s after SIGINT");
    assert_int_equal(rc, 0);
    expect_log(h->error_log, "exited cleanly");
}

/* ---- 6. SIGUSR1 reopens the logs ------------------------------------------- */

static void test_sigusr1_reopens_rotated_logs(void **state)
{
    struct fixture *f = *state;
    struct harness *h = &f->h;
    assert_true(start_routed_to(h, h->origin_port[0]));
    get_origin(h->port, "/before-rotation");
    assert_true(proc_wait_log(h->access_log, "/before-rotation", 2000));

    const char *rotated = tmpdir_file(h->td, "access.log.1");
    assert_non_null(rotated);
    assert_int_equal(rename(h->access_log, rotated), 0);
    tessera_signal(h, SIGUSR1);
    assert_true(proc_wait_log(h->error_log, "log files reopened", 3000));

    get_origin(h->port, "/after-rotation");
    if (!proc_wait_log(h->access_log, "/after-rotation", 2000))
        fail_msg("%s has no line for the request made after SIGUSR1", h->access_log);
    expect_no_log(h->access_log, "/before-rotation");
    expect_counter(line_count(h->access_log), 1);
    expect_log(rotated, "/before-rotation");
    expect_no_log(rotated, "/after-rotation");
    expect_counter(line_count(rotated), 1);
}

/* ---- 7. a bad config at start-up ------------------------------------------- */

static void test_bad_config_at_startup_exits_1(void **state)
{
    struct fixture *f = *state;
    struct harness *h = &f->h;
    /* Preamble (3 lines) + 2 lines: the unknown directive is at 6:5. */
    assert_true(harness_write_config(h, "backend app { server 127.0.0.1:1; }\n"
                                        "route default { backend app; }\n"
                                        "    no_such_directive on;\n"));
    char bin[4096];
    snprintf(bin, sizeof bin, "%s/tessera", proc_build_dir());
    const char *argv[] = {bin, "-c", h->conf, NULL};
    f->p = proc_start(h->td, "tessera-bad", argv);
    assert_non_null(f->p);
    expect_exit_1(f->p, "with a broken config");
    char where[4200];
    snprintf(where, sizeof where, "%s:6:5:", h->conf);
    expect_log_line(f->p->err_path, where, "no_such_directive");
}

/* ---- 8. listen on a port in use -------------------------------------------- */

static void test_listen_on_a_busy_port_exits_1(void **state)
{
    struct fixture *f = *state;
    struct harness *h = &f->h;
    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->fd, 8), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sa, &len), 0);
    int busy = ntohs(sa.sin_port);

    /* No log block: errors go to stderr.  The listen directive is at 5:3. */
    const char *conf = tmpdir_write(h->td, "busy.conf",
                                    "workers 2;\n"
                                    "backend app { server 127.0.0.1:1; }\n"
                                    "route default { backend app; }\n"
                                    "\n"
                                    "  listen 127.0.0.1:%d;\n",
                                    busy);
    assert_non_null(conf);
    char bin[4096];
    snprintf(bin, sizeof bin, "%s/tessera", proc_build_dir());
    const char *argv[] = {bin, "-c", conf, NULL};
    f->p = proc_start(h->td, "tessera-busy", argv);
    assert_non_null(f->p);
    expect_exit_1(f->p, "listening on a busy port");
    char where[4200];
    snprintf(where, sizeof where, "%s:5:3:", conf);
    expect_log_line(f->p->err_path, "cannot listen", where);
}

/* The same, when the port's holder set SO_REUSEPORT, as another tessera
 * does: sharing it would split the traffic between two processes without
 * a word. */
static void test_listen_on_a_port_another_tessera_holds_exits_1(void **state)
{
    struct fixture *f = *state;
    struct harness *h = &f->h;
    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->fd >= 0);
    int one = 1;
    assert_int_equal(setsockopt(f->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    assert_int_equal(setsockopt(f->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->fd, 8), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sa, &len), 0);
    int busy = ntohs(sa.sin_port);

    const char *conf = tmpdir_write(h->td, "shared.conf",
                                    "workers 2;\n"
                                    "backend app { server 127.0.0.1:1; }\n"
                                    "route default { backend app; }\n"
                                    "listen 127.0.0.1:%d;\n",
                                    busy);
    assert_non_null(conf);
    char bin[4096];
    snprintf(bin, sizeof bin, "%s/tessera", proc_build_dir());
    const char *argv[] = {bin, "-c", conf, NULL};
    f->p = proc_start(h->td, "tessera-shared", argv);
    assert_non_null(f->p);
    expect_exit_1(f->p, "listening on a port another process listens on with SO_REUSEPORT");
    char where[4200];
    snprintf(where, sizeof where, "%s:4:1:", conf);
    expect_log_line(f->p->err_path, "another process listens on it already", where);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reload_under_load_loses_no_request, setup_two_origins,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_config_on_reload_keeps_the_old_one,
                                        setup_two_origins, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_drains_in_flight_and_exits_0, setup_one_origin,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_drain_timeout_cuts_long_requests, setup_one_origin,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sigint_drains_and_exits_0, setup_one_origin, teardown),
        cmocka_unit_test_setup_teardown(test_sigusr1_reopens_rotated_logs, setup_one_origin,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_config_at_startup_exits_1, setup_no_origin,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_listen_on_a_busy_port_exits_1, setup_no_origin,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_listen_on_a_port_another_tessera_holds_exits_1,
                                        setup_no_origin, teardown),
    };
    return cmocka_run_group_tests_name("lifecycle", tests, NULL, NULL);
}
