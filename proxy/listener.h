/*
 * proxy/listener.h: the listening sockets of every worker.
 */
#ifndef TESSERA_LISTENER_H
#define TESSERA_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* listeners_open: open nworkers * cfg->nlistens non-blocking SO_REUSEPORT
 * sockets into fds (worker-major: fds[w * nlistens + i]).  A listen with
 * port 0 gets a port from the kernel at its first bind; cfg->listens[i].addr
 * is updated to it, so the caller must not have shared cfg yet.  On failure
 * closes what it opened and writes "file:line:col: cannot listen on ..." */
bool listeners_open(struct config *cfg, unsigned nworkers, int *fds, char *err, size_t errlen);

/* listeners_close: close the descriptors that are open (>= 0), set -1. */
void listeners_close(int *fds, size_t n);

/* listener_port: the port of a listen address (after listeners_open, the
 * real one). */
unsigned listener_port(const struct config_listen *l);

#endif
