/*
 * proc: the processes an integration test runs (tessera, tessera-origin,
 * memcached), each a child with stdout and stderr in files of the test's
 * tmpdir.
 *
 * Lifetimes: a struct proc is owned by the test that started it and released
 * with proc_free(), which also stops the process; call it from the cmocka
 * teardown so a failed assertion never leaves a process behind.  As a second
 * line of defence every child gets PR_SET_PDEATHSIG(SIGKILL), so it dies with
 * the test binary, and proc_stop_all() stops every child still running.
 *
 * Binaries come from $BUILD (default "build"), like the Makefile.  Failures
 * return NULL or -1 and print why on stderr (with the child's log path), so a
 * test only has to assert on the result.  Not thread-safe.
 */
#ifndef TESTS_SUPPORT_PROC_H
#define TESTS_SUPPORT_PROC_H

#include <stdbool.h>
#include <sys/types.h>

#include "tests/support/tmpdir.h"

/* Startup waits (listening line, memcached accepting) give up after this. */
#define PROC_START_TIMEOUT_MS 10000

/* Read-only for tests; the strings are owned by the proc. */
struct proc {
    pid_t pid;
    char *name;     /* the name given at start, used for the log files */
    char *out_path; /* the child's stdout: TMPDIR/NAME.out */
    char *err_path; /* the child's stderr: TMPDIR/NAME.err */
    int port;       /* listening port once known, else 0 */
    bool running;   /* false once the child has been reaped */
    int status;     /* once reaped: exit code, or 128 + signal number */
};

/* proc_memcached_connect: a blocking socket to the memcached on 127.0.0.1
 * port, with 2 s send and receive timeouts, for raw text commands; -1 when
 * it does not connect.  The caller closes it. */
int proc_memcached_connect(int port);

/* $BUILD or "build": where the binaries are. */
const char *proc_build_dir(void);

/* fork + execvp(argv[0], argv) with stdin from /dev/null and stdout/stderr
 * in TMPDIR/NAME.out and .err (truncated).  Returns at once; NULL if the
 * fork fails (an exec failure shows up as exit status 127). */
struct proc *proc_start(struct tmpdir *td, const char *name, const char *const argv[]);

/* Start BUILD/tessera-origin with the extra arguments (NULL-terminated,
 * e.g. "--demo", NULL) and wait for its "listening on ADDR:PORT" line; the
 * port is in ->port.  NULL if it fails to start within the startup timeout. */
struct proc *proc_start_origin(struct tmpdir *td, const char *name, ...) __attribute__((sentinel));

/* Start memcached on a free 127.0.0.1 port (TCP only, "-u nobody" when
 * root) and wait until it accepts connections; the port is in ->port.
 * Retries a few times if another process takes the port first. */
struct proc *proc_start_memcached(struct tmpdir *td, const char *name);

/* Start BUILD/tessera -c CONF plus the extra arguments (NULL-terminated) and
 * wait until LOG (its error log file as written in the conf; NULL means its
 * stderr) gets a new line containing "listening on "; ->port is the port
 * after the last ':' of that line.  Lines already in LOG before the start
 * are ignored, so a restart waits for its own line. */
struct proc *proc_start_tessera(struct tmpdir *td, const char *name, const char *conf,
                                const char *log, ...) __attribute__((sentinel));

/* Send sig to the child if it is still running.  0, or -1 if not running. */
int proc_signal(struct proc *p, int sig);

/* Wait up to timeout_ms for the child to exit and reap it.  Returns its exit
 * code, 128 + signal if a signal killed it, or -1 if it is still running. */
int proc_wait_exit(struct proc *p, int timeout_ms);

/* SIGTERM, wait up to timeout_ms, then SIGKILL; always reaps.  Returns the
 * status as proc_wait_exit() (the first status if it had already exited). */
int proc_stop(struct proc *p, int timeout_ms);

/* Stop the child if still running (5 s grace), free p and set *pp to NULL.
 * Accepts NULL and *pp == NULL, so teardowns can call it unconditionally. */
void proc_free(struct proc **pp);

/* Stop (SIGTERM, 2 s grace, SIGKILL) every child started here that is
 * still running.  Does not free them: their owners still call proc_free. */
void proc_stop_all(void);

/* Resident set size of pid in kB (VmRSS in /proc/PID/status), -1 if unknown. */
long proc_rss_kb(pid_t pid);

/* True when the file at path contains needle (false if it cannot be read). */
bool proc_log_contains(const char *path, const char *needle);

/* Poll path every 10 ms until it contains needle; false after timeout_ms. */
bool proc_wait_log(const char *path, const char *needle, int timeout_ms);

/* The port in the first line of path containing needle: the digits after
 * the last ':' that follows the needle.  -1 if there is no such line. */
int proc_log_port(const char *path, const char *needle);

/* Like proc_log_port, looking only at bytes from offset on, waiting up to
 * timeout_ms for the line to appear; gives up early (-1) if p (may be NULL)
 * exits meanwhile. */
int proc_wait_log_port(struct proc *p, const char *path, long offset, const char *needle,
                       int timeout_ms);

/* A port that was free on 127.0.0.1 a moment ago (bind to port 0 and close),
 * for programs that cannot listen on port 0 and report.  -1 on failure. */
int proc_free_port(void);

/* Poll-connect to 127.0.0.1:port until it accepts; false after timeout_ms or
 * (when p is not NULL) as soon as p exits. */
bool proc_wait_accepting(struct proc *p, int port, int timeout_ms);

#endif
