/*
 * proxy/buf.c: growable byte buffers (see buf.h).  Growth doubles, so a
 * stream of appends is amortised O(1); no locking, a buffer belongs to one
 * connection on one worker thread.
 */
#include "proxy/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool buf_reserve(struct buf *b, size_t n)
{
    if (b->oom)
        return false;
    if (b->cap - b->len >= n)
        return true;
    if (b->off > 0 && b->cap - buf_pending(b) >= n && b->off >= b->cap / 2) {
        buf_compact(b);
        return true;
    }
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->len < n) {
        if (cap > ((size_t)-1) / 2)
            goto fail;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        goto fail;
    b->data = p;
    b->cap = cap;
    return true;
fail:
    b->oom = true;
    return false;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0 || !buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void buf_append_str(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_appendf(struct buf *b, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = true;
        return;
    }
    buf_append(b, tmp, (size_t)n);
}

void buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

void buf_compact(struct buf *b)
{
    if (b->off == 0)
        return;
    size_t n = buf_pending(b);
    memmove(b->data, b->data + b->off, n);
    b->off = 0;
    b->len = n;
}

void buf_reset(struct buf *b)
{
    b->off = b->len = 0;
    b->oom = false;
}

void buf_release(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
    b->oom = false;
}
