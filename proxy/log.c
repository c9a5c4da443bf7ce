/*
 * proxy/log.c: error and access logs (see log.h).
 *
 * Locking: none on the write path.  The descriptors are fixed numbers for
 * the life of the process once opened; reopening swaps the file behind a
 * number with dup2(), which is atomic for concurrent write(2) callers.  The
 * level is an atomic so a reload can change it under running workers.
 */
#include "proxy/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct log_file {
    int fd;          /* -1: not open */
    char path[4096]; /* "" for stderr */
};

static struct log_file error_log = {.fd = -1};
static struct log_file access_log = {.fd = -1};
static atomic_int log_level = LOG_INFO;
static atomic_bool access_on = false;

static int open_append(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        snprintf(err, errlen, "cannot open log file %s: %s", path, strerror(errno));
    return fd;
}

/* Point lf at path (or stderr when path is "stderr").  The descriptor
 * number, once chosen, never changes: later switches dup2 onto it. */
static bool log_file_set(struct log_file *lf, const char *path, char *err, size_t errlen)
{
    bool to_stderr = strcmp(path, "stderr") == 0;
    int fd = to_stderr ? dup(STDERR_FILENO) : open_append(path, err, errlen);
    if (fd < 0) {
        if (to_stderr)
            snprintf(err, errlen, "cannot duplicate stderr: %s", strerror(errno));
        return false;
    }
    if (lf->fd < 0) {
        lf->fd = fd;
    } else {
        dup2(fd, lf->fd);
        close(fd);
    }
    snprintf(lf->path, sizeof lf->path, "%s", to_stderr ? "" : path);
    return true;
}

bool log_open(const struct config_log *cfg, char *err, size_t errlen)
{
    if (!log_file_set(&error_log, cfg->error_path ? cfg->error_path : "stderr", err, errlen))
        return false;
    if (cfg->access_path) {
        if (!log_file_set(&access_log, cfg->access_path, err, errlen))
            return false;
        atomic_store(&access_on, true);
    } else {
        atomic_store(&access_on, false);
    }
    atomic_store(&log_level, (int)cfg->level);
    return true;
}

static void log_file_reopen(struct log_file *lf)
{
    char err[4200 + 256];
    if (lf->fd < 0 || lf->path[0] == '\0')
        return;
    int fd = open_append(lf->path, err, sizeof err);
    if (fd < 0) {
        log_error("%s (keeping the old file)", err);
        return;
    }
    dup2(fd, lf->fd);
    close(fd);
}

void log_reopen(void)
{
    log_file_reopen(&error_log);
    log_file_reopen(&access_log);
    log_info("log files reopened");
}

void log_close(void)
{
    atomic_store(&access_on, false);
    if (access_log.fd >= 0)
        close(access_log.fd);
    if (error_log.fd >= 0)
        close(error_log.fd);
    access_log.fd = error_log.fd = -1;
}

bool log_enabled(enum log_level level)
{
    return (int)level <= atomic_load(&log_level);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char line[2200];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, " [%s] ", log_level_name(level));
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    write_all(error_log.fd >= 0 ? error_log.fd : STDERR_FILENO, line, n);
}

bool log_access_enabled(void)
{
    return atomic_load(&access_on);
}

void log_access_write(const char *line, size_t len)
{
    if (access_log.fd >= 0 && atomic_load(&access_on))
        write_all(access_log.fd, line, len);
}
