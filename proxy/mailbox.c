/*
 * proxy/mailbox.c: cross-thread hand-off to a worker's loop (see mailbox.h).
 * A FIFO of intrusive mails behind a mutex; the worker swaps the whole list
 * out under the lock and delivers it outside the lock.
 */
#include "proxy/mailbox.h"

#include <ev.h>
#include <pthread.h>
#include <stdlib.h>

#include "proxy/worker.h"

struct mailbox {
    pthread_mutex_t lock;
    struct mail *head;
    struct mail *tail;
};

bool mailbox_init(struct worker *w)
{
    struct mailbox *mb = calloc(1, sizeof *mb);
    if (!mb || pthread_mutex_init(&mb->lock, NULL) != 0) {
        free(mb);
        return false;
    }
    w->mailbox = mb;
    return true;
}

void mailbox_free(struct worker *w)
{
    struct mailbox *mb = w->mailbox;
    if (!mb)
        return;
    struct mail *m = mb->head;
    while (m) {
        struct mail *next = m->next;
        m->drop(m);
        m = next;
    }
    pthread_mutex_destroy(&mb->lock);
    free(mb);
    w->mailbox = NULL;
}

void mailbox_post(struct worker *w, struct mail *m)
{
    struct mailbox *mb = w->mailbox;
    m->next = NULL;
    pthread_mutex_lock(&mb->lock);
    if (mb->tail)
        mb->tail->next = m;
    else
        mb->head = m;
    mb->tail = m;
    pthread_mutex_unlock(&mb->lock);
    ev_async_send(w->loop, &w->wake);
}

void mailbox_drain(struct worker *w)
{
    struct mailbox *mb = w->mailbox;
    pthread_mutex_lock(&mb->lock);
    struct mail *m = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    while (m) {
        struct mail *next = m->next;
        m->deliver(m);
        m = next;
    }
}
