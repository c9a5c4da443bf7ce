/*
 * tmpdir: one scratch directory per test (or per group) under /tmp, holding
 * the conf files a test writes and the logs of the processes it starts.
 *
 * Paths handed out by tmpdir_file() and tmpdir_write() belong to the tmpdir
 * and stay valid until tmpdir_free().  Set TESSERA_KEEP_TMP=1 in the
 * environment to keep the directory after the test (its path is printed) when
 * debugging a failure.
 */
#ifndef TESTS_SUPPORT_TMPDIR_H
#define TESTS_SUPPORT_TMPDIR_H

#include <stddef.h>

struct tmpdir;

/* Create /tmp/tessera-TAG-XXXXXX.  Returns NULL (with the reason on stderr)
 * when the directory cannot be made.  Release it with tmpdir_free(). */
struct tmpdir *tmpdir_create(const char *tag);

/* The directory's absolute path, owned by td. */
const char *tmpdir_path(const struct tmpdir *td);

/* "DIR/NAME" without touching the file system; owned by td. */
const char *tmpdir_file(struct tmpdir *td, const char *name);

/* Write (truncate) DIR/NAME with printf-style content; returns its path,
 * owned by td, or NULL with the reason on stderr. */
const char *tmpdir_write(struct tmpdir *td, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Read a whole file.  Returns a NUL-terminated heap copy the caller frees
 * (its length in *len when len is not NULL), or NULL when it cannot be read. */
char *tmpdir_read_file(const char *path, size_t *len);

/* Remove the directory and everything in it (unless TESSERA_KEEP_TMP is
 * set), free td and set *td to NULL.  Accepts NULL and *td == NULL. */
void tmpdir_free(struct tmpdir **td);

#endif
