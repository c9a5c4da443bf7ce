/*
 * tmpdir: scratch directories for tests.  A tmpdir owns its path and every
 * path string it hands out (kept in a list until tmpdir_free), so tests can
 * pass them straight into other helpers without freeing anything.
 * Not thread-safe: one test thread uses a tmpdir.
 */
#include "tests/support/tmpdir.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct tmpdir {
    char path[256];
    char **names; /* strings handed out, freed with the tmpdir */
    size_t n, cap;
};

struct tmpdir *tmpdir_create(const char *tag)
{
    struct tmpdir *td = calloc(1, sizeof(*td));
    if (td == NULL)
        goto fail;
    snprintf(td->path, sizeof(td->path), "/tmp/tessera-%s-XXXXXX", tag ? tag : "test");
    if (mkdtemp(td->path) == NULL) {
        fprintf(stderr, "tmpdir_create: mkdtemp %s: %s\n", td->path, strerror(errno));
        goto fail;
    }
    return td;
fail:
    free(td);
    return NULL;
}

const char *tmpdir_path(const struct tmpdir *td)
{
    return td->path;
}

static const char *tmpdir_keep(struct tmpdir *td, char *s)
{
    if (td->n == td->cap) {
        size_t cap = td->cap ? td->cap * 2 : 8;
        char **v = realloc(td->names, cap * sizeof(*v));
        if (v == NULL) {
            free(s);
            return NULL;
        }
        td->names = v;
        td->cap = cap;
    }
    td->names[td->n++] = s;
    return s;
}

const char *tmpdir_file(struct tmpdir *td, const char *name)
{
    char *s = NULL;
    if (asprintf(&s, "%s/%s", td->path, name) < 0)
        return NULL;
    return tmpdir_keep(td, s);
}

const char *tmpdir_write(struct tmpdir *td, const char *name, const char *fmt, ...)
{
    const char *path = tmpdir_file(td, name);
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f == NULL) {
        fprintf(stderr, "tmpdir_write: %s: %s\n", path ? path : name, strerror(errno));
        return NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    int rc = vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) != 0 || rc < 0) {
        fprintf(stderr, "tmpdir_write: %s: write failed\n", path);
        return NULL;
    }
    return path;
}

char *tmpdir_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t n = 0, cap = 0;
    if (f == NULL)
        return NULL;
    for (;;) {
        if (cap - n < 4096) {
            cap = cap ? cap * 2 : 8192;
            char *p = realloc(data, cap);
            if (p == NULL)
                goto fail;
            data = p;
        }
        size_t got = fread(data + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        goto fail;
    fclose(f);
    data[n] = '\0';
    if (len)
        *len = n;
    return data;
fail:
    fclose(f);
    free(data);
    return NULL;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "tmpdir_free: remove %s: %s\n", path, strerror(errno));
    return 0;
}

void tmpdir_free(struct tmpdir **tdp)
{
    struct tmpdir *td = tdp ? *tdp : NULL;
    if (td == NULL)
        return;
    const char *keep = getenv("TESSERA_KEEP_TMP");
    if (keep && *keep && strcmp(keep, "0") != 0)
        fprintf(stderr, "tmpdir: keeping %s\n", td->path);
    else
        nftw(td->path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    for (size_t i = 0; i < td->n; i++)
        free(td->names[i]);
    free(td->names);
    free(td);
    *tdp = NULL;
}
