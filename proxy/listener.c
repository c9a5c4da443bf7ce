/*
 * proxy/listener.c: listening sockets (see listener.h).
 *
 * Every worker gets its own SO_REUSEPORT socket per `listen`, so the kernel
 * spreads new connections over the workers without a shared accept lock.
 * Port 0 is resolved by the first bind and that port is then used for the
 * other workers' sockets.  SO_REUSEPORT would also let this process share a
 * port another process (a second tessera started by mistake) listens on,
 * each getting part of the traffic: a probe bind without it finds that out
 * first.
 */
#include "proxy/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_BACKLOG 1024

static int listener_open(struct config_listen *l, char *err, size_t errlen)
{
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (l->addr.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, (struct sockaddr *)&l->addr, l->addrlen) < 0)
        goto fail;
    if (listen(fd, LISTEN_BACKLOG) < 0)
        goto fail;
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &len) == 0) {
        memcpy(&l->addr, &bound, len);
        l->addrlen = len;
    }
    return fd;
fail:
    snprintf(err, errlen, "%s:%u:%u: cannot listen on %s: %s", l->pos.file ? l->pos.file : "?",
             l->pos.line, l->pos.col, l->text, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Whether another socket already listens on l's address: a bind without
 * SO_REUSEPORT fails then, whoever holds it and however. */
static bool listener_in_use(const struct config_listen *l, char *err, size_t errlen)
{
    if (listener_port(l) == 0)
        return false; /* the kernel picks a free one */
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false; /* the real open reports it */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    bool busy = bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0 && errno == EADDRINUSE;
    close(fd);
    if (busy)
        snprintf(err, errlen,
                 "%s:%u:%u: cannot listen on %s: another process listens on it already",
                 l->pos.file ? l->pos.file : "?", l->pos.line, l->pos.col, l->text);
    return busy;
}

unsigned listener_port(const struct config_listen *l)
{
    if (l->addr.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&l->addr)->sin_port);
}

bool listeners_open(struct config *cfg, unsigned nworkers, int *fds, char *err, size_t errlen)
{
    size_t n = cfg->nlistens;
    for (size_t i = 0; i < nworkers * n; i++)
        fds[i] = -1;
    for (size_t i = 0; i < n; i++)
        if (listener_in_use(&cfg->listens[i], err, errlen))
            return false;
    for (unsigned w = 0; w < nworkers; w++) {
        for (size_t i = 0; i < n; i++) {
            fds[w * n + i] = listener_open(&cfg->listens[i], err, errlen);
            if (fds[w * n + i] < 0)
                goto fail;
        }
    }
    return true;
fail:
    listeners_close(fds, nworkers * n);
    return false;
}

void listeners_close(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        fds[i] = -1;
    }
}
