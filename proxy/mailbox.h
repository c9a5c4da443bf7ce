/*
 * proxy/mailbox.h: handing work to a worker's loop from any thread.
 *
 * The memcached tier completes its jobs on its own I/O threads; a completion
 * is posted to the owning worker's mailbox, which wakes the worker through
 * its ev_async; the worker then runs each mail's deliver() on its own loop.
 *
 * Ownership: a posted mail belongs to the mailbox until deliver() runs;
 * deliver() owns it from then on (typically frees it).  mailbox_free()
 * delivers nothing: it calls drop() on what is left (worker shutdown).
 * Locking: one mutex per mailbox, held only to link or unlink.
 */
#ifndef TESSERA_MAILBOX_H
#define TESSERA_MAILBOX_H

#include <stdbool.h>

struct worker;

struct mail {
    struct mail *next;
    void (*deliver)(struct mail *m); /* on the worker's thread */
    void (*drop)(struct mail *m);    /* at shutdown, instead of deliver */
};

/* mailbox_init / mailbox_free: the worker's mailbox (worker.c). */
bool mailbox_init(struct worker *w);
void mailbox_free(struct worker *w);

/* mailbox_post: queue m for w and wake it.  Any thread. */
void mailbox_post(struct worker *w, struct mail *m);

/* mailbox_drain: deliver everything queued, in order.  Worker thread. */
void mailbox_drain(struct worker *w);

#endif
