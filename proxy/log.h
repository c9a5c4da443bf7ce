/*
 * proxy/log.h: the error log and the access log.
 *
 * Both logs are process-wide file descriptors written with one write(2) per
 * line (O_APPEND), so lines from different worker threads never interleave.
 * log_reopen() (SIGUSR1) reopens the files in place with dup2(), so writers
 * never see a closed descriptor.  Until log_open() succeeds, messages go to
 * stderr.
 */
#ifndef TESSERA_LOG_H
#define TESSERA_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* log_open: open (or switch to) the logs a config names.  Returns false and
 * writes a message into err when a file cannot be opened; the logs in use
 * stay as they were.  Called from the main thread only. */
bool log_open(const struct config_log *cfg, char *err, size_t errlen);

/* log_reopen: reopen the current log files (after rotation).  Main thread. */
void log_reopen(void);

/* log_close: close the log files; later messages go to stderr. */
void log_close(void);

/* log_enabled: whether a message of this level would be written. */
bool log_enabled(enum log_level level);

/* log_msg: write one line to the error log:
 *   "2026-11-24T21:08:27Z [warn] message"
 * The message is cut at 2 KiB.  Thread-safe. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)

/* log_access_enabled: whether an access log is open. */
bool log_access_enabled(void);

/* log_access_write: write one complete line (the caller formats it, with
 * its newline) to the access log.  Thread-safe. */
void log_access_write(const char *line, size_t len);

#endif
