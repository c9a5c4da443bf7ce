/*
 * proc: start, watch and stop the child processes of integration tests.
 *
 * Every started proc is also kept in a small registry so proc_stop_all()
 * can find the ones a failed test did not stop; proc_free() takes it out.
 * Children are reaped only here (waitpid on their own pid), never through a
 * SIGCHLD handler, so the test process keeps no global signal state.
 * Not thread-safe: tests drive their processes from one thread.
 */
#include "tests/support/proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MAX_PROCS = 64, MAX_ARGS = 64, POLL_MS = 10 };

static struct proc *registry[MAX_PROCS];

static void registry_add(struct proc *p)
{
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (registry[i] == NULL) {
            registry[i] = p;
            return;
        }
}

static void registry_remove(struct proc *p)
{
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (registry[i] == p)
            registry[i] = NULL;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

const char *proc_build_dir(void)
{
    const char *b = getenv("BUILD");
    return b && *b ? b : "build";
}

/* Reap p if it has exited (blocking when block).  True once it is reaped. */
static bool proc_reap(struct proc *p, bool block)
{
    if (!p->running)
        return true;
    int st;
    pid_t r;
    do
        r = waitpid(p->pid, &st, block ? 0 : WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return false;
    p->running = false;
    if (r < 0)
        p->status = -1; /* not our child any more: nothing to wait for */
    else if (WIFEXITED(st))
        p->status = WEXITSTATUS(st);
    else
        p->status = 128 + WTERMSIG(st);
    return true;
}

static void child_exec(const char *const argv[], int out, int err, pid_t parent)
{
    /* die with the test binary even if it is killed before its teardown */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(126);
    int in = open("/dev/null", O_RDONLY);
    if (in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(126);
    /* the test may ignore SIGPIPE or block signals: the child starts clean */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], (char *const *)argv);
    dprintf(2, "proc: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

struct proc *proc_start(struct tmpdir *td, const char *name, const char *const argv[])
{
    char file[256];
    int out = -1, err = -1;
    struct proc *p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto fail;
    p->name = strdup(name);
    snprintf(file, sizeof(file), "%s.out", name);
    p->out_path = strdup(tmpdir_file(td, file));
    snprintf(file, sizeof(file), "%s.err", name);
    p->err_path = strdup(tmpdir_file(td, file));
    if (p->name == NULL || p->out_path == NULL || p->err_path == NULL)
        goto fail;
    out = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    err = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0 || err < 0) {
        fprintf(stderr, "proc_start %s: %s\n", name, strerror(errno));
        goto fail;
    }
    fflush(NULL); /* no buffered test output duplicated into the child */
    pid_t parent = getpid();
    p->pid = fork();
    if (p->pid < 0) {
        fprintf(stderr, "proc_start %s: fork: %s\n", name, strerror(errno));
        goto fail;
    }
    if (p->pid == 0)
        child_exec(argv, out, err, parent);
    close(out);
    close(err);
    p->running = true;
    registry_add(p);
    return p;
fail:
    if (out >= 0)
        close(out);
    if (err >= 0)
        close(err);
    if (p) {
        free(p->name);
        free(p->out_path);
        free(p->err_path);
        free(p);
    }
    return NULL;
}

/* argv = { bin, fixed..., the NULL-terminated va_list..., NULL } */
static size_t build_argv(const char *argv[], const char *const fixed[], va_list ap)
{
    size_t n = 0;
    for (; fixed[n] != NULL; n++)
        argv[n] = fixed[n];
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < MAX_ARGS - 1)
        argv[n++] = a;
    argv[n] = NULL;
    return n;
}

static void report_failure(struct proc *p, const char *what)
{
    proc_reap(p, false);
    if (p->running)
        fprintf(stderr, "proc %s: %s (still running; see %s)\n", p->name, what, p->err_path);
    else
        fprintf(stderr, "proc %s: %s (exit status %d; see %s)\n", p->name, what, p->status,
                p->err_path);
}

struct proc *proc_start_origin(struct tmpdir *td, const char *name, ...)
{
    char bin[512];
    const char *argv[MAX_ARGS];
    snprintf(bin, sizeof(bin), "%s/tessera-origin", proc_build_dir());
    const char *fixed[] = {bin, NULL};
    va_list ap;
    va_start(ap, name);
    build_argv(argv, fixed, ap);
    va_end(ap);
    struct proc *p = proc_start(td, name, argv);
    if (p == NULL)
        return NULL;
    p->port = proc_wait_log_port(p, p->out_path, 0, "listening on ", PROC_START_TIMEOUT_MS);
    if (p->port <= 0) {
        report_failure(p, "no \"listening on\" line");
        proc_free(&p);
    }
    return p;
}

struct proc *proc_start_tessera(struct tmpdir *td, const char *name, const char *conf,
                                const char *log, ...)
{
    char bin[512], errname[256];
    const char *argv[MAX_ARGS];
    snprintf(bin, sizeof(bin), "%s/tessera", proc_build_dir());
    snprintf(errname, sizeof(errname), "%s.err", name);
    const char *watch = log ? log : tmpdir_file(td, errname);
    struct stat st;
    long offset = log && stat(log, &st) == 0 ? (long)st.st_size : 0;
    const char *fixed[] = {bin, "-c", conf, NULL};
    va_list ap;
    va_start(ap, log);
    build_argv(argv, fixed, ap);
    va_end(ap);
    struct proc *p = proc_start(td, name, argv);
    if (p == NULL)
        return NULL;
    p->port = proc_wait_log_port(p, watch, offset, "listening on ", PROC_START_TIMEOUT_MS);
    if (p->port <= 0) {
        report_failure(p, "no \"listening on\" line in its log");
        proc_free(&p);
    }
    return p;
}

struct proc *proc_start_memcached(struct tmpdir *td, const char *name)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        char port[16];
        int free_port = proc_free_port();
        if (free_port < 0)
            return NULL;
        snprintf(port, sizeof(port), "%d", free_port);
        /* memcached refuses to run as root without -u */
        const char *as_root = geteuid() == 0 ? "-u" : NULL;
        const char *argv[] = {"memcached", "-l", "127.0.0.1", "-p",     port,
                              "-U",        "0",  as_root,     "nobody", NULL};
        struct proc *p = proc_start(td, name, argv);
        if (p == NULL)
            return NULL;
        if (proc_wait_accepting(p, free_port, PROC_START_TIMEOUT_MS)) {
            p->port = free_port;
            return p;
        }
        report_failure(p, "not accepting connections");
        proc_free(&p);
    }
    return NULL;
}

int proc_signal(struct proc *p, int sig)
{
    if (p == NULL || proc_reap(p, false))
        return -1;
    return kill(p->pid, sig);
}

int proc_wait_exit(struct proc *p, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    while (!proc_reap(p, false)) {
        if (now_ms() >= deadline)
            return -1;
        sleep_ms(5);
    }
    return p->status;
}

int proc_stop(struct proc *p, int timeout_ms)
{
    if (proc_signal(p, SIGTERM) == 0 && proc_wait_exit(p, timeout_ms) < 0) {
        fprintf(stderr, "proc %s: no exit %d ms after SIGTERM: SIGKILL\n", p->name, timeout_ms);
        kill(p->pid, SIGKILL);
        proc_reap(p, true);
    }
    return p->status;
}

void proc_free(struct proc **pp)
{
    struct proc *p = pp ? *pp : NULL;
    if (p == NULL)
        return;
    proc_stop(p, 5000);
    registry_remove(p);
    free(p->name);
    free(p->out_path);
    free(p->err_path);
    free(p);
    *pp = NULL;
}

void proc_stop_all(void)
{
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (registry[i] != NULL)
            proc_stop(registry[i], 2000);
}

long proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

bool proc_log_contains(const char *path, const char *needle)
{
    char *data = tmpdir_read_file(path, NULL);
    bool found = data && strstr(data, needle) != NULL;
    free(data);
    return found;
}

bool proc_wait_log(const char *path, const char *needle, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        if (proc_log_contains(path, needle))
            return true;
        if (now_ms() >= deadline)
            return false;
        sleep_ms(POLL_MS);
    }
}

/* The port on the first complete line of text containing needle, or -1. */
static int find_port(const char *text, const char *needle)
{
    const char *hit = strstr(text, needle);
    if (hit == NULL)
        return -1;
    const char *eol = strchr(hit, '\n');
    if (eol == NULL)
        return -1; /* the line is still being written */
    const char *colon = NULL;
    for (const char *s = hit + strlen(needle); s < eol; s++)
        if (*s == ':')
            colon = s;
    if (colon == NULL)
        return -1;
    long port = 0;
    const char *d = colon + 1;
    for (; d < eol && *d >= '0' && *d <= '9'; d++)
        port = port * 10 + (*d - '0');
    return d > colon + 1 && port > 0 && port < 65536 ? (int)port : -1;
}

int proc_log_port(const char *path, const char *needle)
{
    char *data = tmpdir_read_file(path, NULL);
    int port = data ? find_port(data, needle) : -1;
    free(data);
    return port;
}

int proc_wait_log_port(struct proc *p, const char *path, long offset, const char *needle,
                       int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        size_t len = 0;
        char *data = tmpdir_read_file(path, &len);
        int port = data && (size_t)offset <= len ? find_port(data + offset, needle) : -1;
        free(data);
        if (port > 0)
            return port;
        if ((p && proc_reap(p, false)) || now_ms() >= deadline)
            return -1;
        sleep_ms(POLL_MS);
    }
}

int proc_free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int port = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
        goto fail;
    port = ntohs(sin.sin_port);
fail:
    if (port < 0)
        fprintf(stderr, "proc_free_port: %s\n", strerror(errno));
    if (fd >= 0)
        close(fd);
    return port;
}

bool proc_wait_accepting(struct proc *p, int port, int timeout_ms)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return false;
        int rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
        close(fd);
        if (rc == 0)
            return true;
        if ((p && proc_reap(p, false)) || now_ms() >= deadline)
            return false;
        sleep_ms(POLL_MS);
    }
}

int proc_memcached_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}
