/*
 * proxy/buf.h: a growable byte buffer for connection I/O.
 *
 * Bytes live in data[off, len): `off` is how far a writer or parser has
 * consumed, so consuming is O(1) and buf_compact() moves the rest down when
 * it pays.  The buffer owns `data`.  Allocation failure is sticky: `oom` is
 * set, later appends are dropped, and the caller checks it once (Varnish vsb
 * style) before trusting the contents.
 */
#ifndef TESSERA_BUF_H
#define TESSERA_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t off; /* first unconsumed byte */
    size_t len; /* end of the bytes held */
    size_t cap;
    bool oom; /* an allocation failed; contents are incomplete */
};

/* buf_pending: bytes held and not consumed yet. */
static inline size_t buf_pending(const struct buf *b)
{
    return b->len - b->off;
}

/* buf_reserve: make room for at least n more bytes after len.  False (and
 * oom set) when memory runs out. */
bool buf_reserve(struct buf *b, size_t n);

/* buf_append: copy n bytes at the end. */
void buf_append(struct buf *b, const void *p, size_t n);

/* buf_append_str: copy a NUL-terminated string (without the NUL). */
void buf_append_str(struct buf *b, const char *s);

/* buf_appendf: printf-style append; a result longer than 4 KiB is an error
 * (oom set) rather than a silent cut. */
void buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* buf_consume: mark n pending bytes consumed; when nothing is left the
 * buffer is reset to empty (keeping its memory). */
void buf_consume(struct buf *b, size_t n);

/* buf_compact: move the pending bytes to the start. */
void buf_compact(struct buf *b);

/* buf_reset: forget all bytes, keep the memory. */
void buf_reset(struct buf *b);

/* buf_release: free the memory; the buffer is empty and usable again. */
void buf_release(struct buf *b);

#endif
