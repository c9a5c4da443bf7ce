/*
 * config/admin.c: the top-level `admin { ... }` block (struct config_admin,
 * config.h): the listener for purge, stats, metrics and health, its token
 * and the clients it accepts; and the two address helpers the admin
 * listener uses on every connection (config_cidr_match,
 * config_addr_is_loopback).
 *
 * The token file is read here, at load time, so that `tessera -t` finds a
 * missing or malformed token before a reload would; the token is kept in
 * the config (a new token takes a reload) and wiped with explicit_bzero()
 * when the config is freed.  It is never written into a message.  The
 * file's mode is not checked: the loader has no warning level, and refusing
 * a group-readable file would break setups that share the token with a
 * group on purpose; the man page asks for 0600.
 * An admin listener without a token is refused unless it listens on a
 * loopback address, so that `token off;` cannot expose purge to a network.
 * Whether the admin listener clashes with a main `listen` is checked by
 * config_admin_resolve() once the whole file is read, since `listen` may
 * come after the block.
 * The handlers are called only from the loader's walk (config/config.c): no
 * locking; what they allocate is owned by the config and freed by
 * config_admin_clear().  The two address helpers are pure and thread-safe.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/load.h"
#include "config/units.h"

#define ADMIN_PORT_DEFAULT 8081
/* Far more than any generated token needs (a 256-bit token is 43 characters
 * in base64url), and small enough to compare in constant time per request. */
#define TOKEN_MAX 4096
/* The most bytes read from a token file: a token and a generous run of
 * trailing white space; a token_file naming a large file by mistake costs
 * no more than this. */
#define TOKEN_FILE_MAX (4 * TOKEN_MAX)

/* What the directives of one block share while it is read: the handlers'
 * OBJ in the admin context. */
struct admin_build {
    struct config_admin *a;
    const struct conf_directive *listen;     /* NULL: the default listener */
    const struct conf_directive *token_file; /* once seen */
    const struct conf_directive *token_off;  /* `token off;`, once seen */
    bool allow_given;                        /* the first `allow` replaces the defaults,
                                              * later ones append */
};

/* ---- addresses ---- */

/* Whether the first PREFIX bits of ADDR and NET are equal. */
static bool prefix_equal(const unsigned char *addr, const unsigned char *net, unsigned prefix)
{
    unsigned bytes = prefix / 8, bits = prefix % 8;
    unsigned char mask;

    if (memcmp(addr, net, bytes) != 0)
        return false;
    if (bits == 0)
        return true;
    mask = (unsigned char)(0xffu << (8 - bits));
    return (addr[bytes] & mask) == (net[bytes] & mask);
}

/* The 16 bytes of SA's IPv6 address, or NULL when SA is not AF_INET6. */
static const unsigned char *ipv6_bytes(const struct sockaddr *sa)
{
    if (sa->sa_family != AF_INET6)
        return NULL;
    return ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
}

/* The 4 bytes of SA's IPv4 address, also inside an IPv4-mapped IPv6
 * address (::ffff:a.b.c.d, RFC 4291 2.5.5.2); NULL otherwise. */
static const unsigned char *ipv4_bytes(const struct sockaddr *sa)
{
    const unsigned char *v6 = ipv6_bytes(sa);

    if (sa->sa_family == AF_INET)
        return (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (v6 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)v6))
        return v6 + 12;
    return NULL;
}

bool config_cidr_match(const struct config_cidr *cidrs, size_t n, const struct sockaddr *sa)
{
    const unsigned char *v4 = ipv4_bytes(sa);
    const unsigned char *v6 = ipv6_bytes(sa);

    for (size_t i = 0; i < n; i++) {
        const struct config_cidr *c = &cidrs[i];
        if (c->family == AF_INET && v4 && prefix_equal(v4, c->addr, c->prefix))
            return true;
        if (c->family == AF_INET6 && v6 && prefix_equal(v6, c->addr, c->prefix))
            return true;
    }
    return false;
}

bool config_addr_is_loopback(const struct sockaddr *sa)
{
    const unsigned char *v4 = ipv4_bytes(sa);
    const unsigned char *v6 = ipv6_bytes(sa);

    if (v4)
        return v4[0] == 127;
    return v6 && IN6_IS_ADDR_LOOPBACK((const struct in6_addr *)v6);
}

/* ---- life cycle ---- */

bool config_admin_init(struct config_admin *a)
{
    static const struct config_cidr loopback[] = {
        {.family = AF_INET, .addr = {127}, .prefix = 8},
        {.family = AF_INET6, .addr = {[15] = 1}, .prefix = 128},
    };
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->listen.addr;

    *a = (struct config_admin){0};
    sin->sin_family = AF_INET;
    sin->sin_port = htons(ADMIN_PORT_DEFAULT);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->listen.addrlen = sizeof *sin;
    snprintf(a->listen.text, sizeof a->listen.text, "127.0.0.1:%d", ADMIN_PORT_DEFAULT);
    a->allow = malloc(sizeof loopback);
    if (!a->allow)
        return false;
    memcpy(a->allow, loopback, sizeof loopback);
    a->nallow = sizeof loopback / sizeof loopback[0];
    return true;
}

void config_admin_clear(struct config_admin *a)
{
    if (a->token) {
        explicit_bzero(a->token, strlen(a->token));
        free(a->token);
    }
    free(a->token_file);
    free(a->allow);
    *a = (struct config_admin){0};
}

/* ---- the block ---- */

bool config_main_admin(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct config *cfg = obj;
    struct admin_build b = {.a = &cfg->admin};
    const struct config_listen *l = &cfg->admin.listen;

    b.a->enabled = true;
    b.a->listen.pos = loader_pos(ld, &d->name.pos);
    if (!loader_walk(ld, CONFIG_CTX_ADMIN, d->children, d->nchildren, &b))
        return false;
    if (!b.token_file && !b.token_off)
        return loader_error(ld, &d->name.pos,
                            "admin needs token_file, or `token off;` on a loopback listener");
    /* Issue 8: `tessera -t` refuses a non-loopback admin listener without a
     * token; only the machine itself can then reach it. */
    if (b.token_off && !config_addr_is_loopback((const struct sockaddr *)&l->addr))
        return loader_error(ld, &b.token_off->args[0].pos,
                            "'token off' needs a loopback admin listener (127.0.0.0/8 or [::1]); "
                            "'%s' at %s:%u:%u is not (use token_file)",
                            l->text, l->pos.file, l->pos.line, l->pos.col);
    return true;
}

/* Whether A and B would take the same connections: the same port (not 0,
 * which is a fresh port each time) and the same address, or a wildcard
 * address of the same family.  Every main socket is SO_REUSEPORT, so such
 * an admin socket might even bind and share the main listener's
 * connections.  IPv4 and IPv6 never clash: IPv6 sockets are IPV6_V6ONLY
 * (proxy/listener.c). */
static bool listens_clash(const struct config_listen *a, const struct config_listen *b)
{
    if (a->addr.ss_family != b->addr.ss_family)
        return false;
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&a->addr;
        const struct sockaddr_in *y = (const struct sockaddr_in *)&b->addr;
        if (x->sin_port == 0 || x->sin_port != y->sin_port)
            return false;
        return x->sin_addr.s_addr == y->sin_addr.s_addr || x->sin_addr.s_addr == INADDR_ANY ||
               y->sin_addr.s_addr == INADDR_ANY;
    }
    if (a->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->addr;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->addr;
        if (x->sin6_port == 0 || x->sin6_port != y->sin6_port)
            return false;
        return IN6_ARE_ADDR_EQUAL(&x->sin6_addr, &y->sin6_addr) ||
               IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) || IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr);
    }
    return false;
}

bool config_admin_resolve(struct config_loader *ld)
{
    const struct config *cfg = ld->cfg;
    const struct config_listen *admin = &cfg->admin.listen;

    if (!cfg->admin.enabled)
        return true;
    for (size_t i = 0; i < cfg->nlistens; i++) {
        const struct config_pos *p = &cfg->listens[i].pos;
        if (listens_clash(admin, &cfg->listens[i]))
            return loader_error(ld, &admin->pos,
                                "admin listener must not share a port with `listen` at %s:%u:%u",
                                p->file, p->line, p->col);
    }
    return true;
}

/* ---- listen ---- */

bool config_admin_listen(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct admin_build *b = obj;
    struct config_listen l = {0};

    if (!loader_listen(ld, &d->args[0], &l))
        return false;
    l.pos = loader_pos(ld, &d->name.pos);
    b->a->listen = l;
    b->listen = d;
    return true;
}

/* ---- the token ---- */

/* The error for D, one of `token_file` and `token off`, when OTHER, the
 * other one, came first. */
static bool token_conflict(struct config_loader *ld, const struct conf_directive *d,
                           const struct conf_directive *other)
{
    const struct config_pos *p = &other->name.pos;

    return loader_error(ld, &d->name.pos,
                        "'token_file' and 'token off' exclude each other ('%s' at %s:%u:%u)",
                        other->name.text, p->file, p->line, p->col);
}

static bool is_trailing_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* BUF[0..*LEN) without its trailing white space, checked; an error at A
 * naming PATH otherwise.  The token itself never goes into a message. */
static bool check_token(struct config_loader *ld, const struct conf_arg *a, const char *path,
                        const char *buf, size_t *len)
{
    while (*len > 0 && is_trailing_space(buf[*len - 1]))
        (*len)--;
    if (*len == 0)
        return loader_error(ld, &a->pos, "token file '%s' is empty", path);
    if (*len > TOKEN_MAX)
        return loader_error(ld, &a->pos, "token file '%s' is too long (expected at most %d bytes)",
                            path, TOKEN_MAX);
    for (size_t i = 0; i < *len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c <= 0x20 || c >= 0x7f)
            return loader_error(ld, &a->pos,
                                "token file '%s' has a space or a byte that is not printable "
                                "ASCII at byte %zu (expected printable ASCII without spaces)",
                                path, i + 1);
    }
    return true;
}

/* Read FD (at most TOKEN_FILE_MAX bytes, and one more to see that there are
 * more) into BUF; the count in *LEN.  False with errno set on a read error. */
static bool read_all(int fd, char *buf, size_t *len)
{
    *len = 0;
    while (*len <= TOKEN_FILE_MAX) {
        ssize_t n = read(fd, buf + *len, TOKEN_FILE_MAX + 1 - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        if (n == 0)
            break;
        *len += (size_t)n;
    }
    return true;
}

/* *OUT = the token in the file PATH (from the argument A), checked. */
static bool read_token(struct config_loader *ld, const struct conf_arg *a, const char *path,
                       char **out)
{
    char buf[TOKEN_FILE_MAX + 1];
    size_t len = 0;
    struct stat st;
    bool ok = false;
    /* O_NONBLOCK: a FIFO named by mistake must not hang `tessera -t`. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (fd < 0 || fstat(fd, &st) != 0) {
        loader_error(ld, &a->pos, "cannot read token file '%s': %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        loader_error(ld, &a->pos, "token file '%s' is not a regular file", path);
        goto out;
    }
    if (!read_all(fd, buf, &len)) {
        loader_error(ld, &a->pos, "cannot read token file '%s': %s", path, strerror(errno));
        goto out;
    }
    if (len > TOKEN_FILE_MAX) {
        loader_error(ld, &a->pos, "token file '%s' is too long (expected at most %d bytes)", path,
                     TOKEN_MAX);
        goto out;
    }
    if (!check_token(ld, a, path, buf, &len))
        goto out;
    *out = malloc(len + 1);
    if (!*out) {
        loader_oom(ld, &a->pos);
        goto out;
    }
    memcpy(*out, buf, len);
    (*out)[len] = '\0';
    ok = true;
out:
    explicit_bzero(buf, sizeof buf);
    if (fd >= 0)
        close(fd);
    return ok;
}

bool config_admin_token_file(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct admin_build *b = obj;
    const struct conf_arg *a = &d->args[0];

    if (b->token_off)
        return token_conflict(ld, d, b->token_off);
    if (a->len == 0)
        return loader_error(ld, &a->pos, "empty path for 'token_file'");
    /* Stored before the read, so that it is freed with the config. */
    if (!loader_path(ld, a, &b->a->token_file))
        return false;
    b->token_file = d;
    return read_token(ld, a, b->a->token_file, &b->a->token);
}

bool config_admin_token(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct admin_build *b = obj;

    /* The argument is not echoed: it may be a token written in by mistake. */
    if (strcmp(d->args[0].text, "off") != 0)
        return loader_error(ld, &d->args[0].pos,
                            "invalid value for 'token' (expected off; the token itself goes in "
                            "the file named by token_file)");
    if (b->token_file)
        return token_conflict(ld, d, b->token_file);
    b->token_off = d;
    b->a->token_off = true;
    return true;
}

/* ---- allow ---- */

/* Zero the bits of ADDR (NBYTES long) after the first PREFIX. */
static void mask_host_bits(unsigned char *addr, size_t nbytes, unsigned prefix)
{
    for (size_t i = 0; i < nbytes; i++) {
        unsigned first = (unsigned)i * 8;
        if (prefix <= first)
            addr[i] = 0;
        else if (prefix < first + 8)
            addr[i] &= (unsigned char)(0xffu << (first + 8 - prefix));
    }
}

/* A, "ADDRESS" or "ADDRESS/PREFIX" (IPv4 or IPv6, no brackets), into C. */
static bool parse_cidr(struct config_loader *ld, const struct conf_arg *a, struct config_cidr *c)
{
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(a->text, '/');
    size_t alen = slash ? (size_t)(slash - a->text) : a->len;
    size_t nbytes;
    uint64_t prefix;
    struct config_cidr net;

    *c = (struct config_cidr){0};
    if (alen == 0 || alen >= sizeof addr)
        goto bad;
    memcpy(addr, a->text, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET, addr, c->addr) == 1) {
        c->family = AF_INET;
        nbytes = 4;
    } else if (inet_pton(AF_INET6, addr, c->addr) == 1) {
        c->family = AF_INET6;
        nbytes = 16;
    } else {
        goto bad;
    }
    prefix = nbytes * 8;
    if (slash && (!units_parse_uint(slash + 1, strlen(slash + 1), &prefix) || prefix > nbytes * 8))
        return loader_error(ld, &a->pos, "invalid prefix length in '%s' (expected 0 to %zu)",
                            a->text, nbytes * 8);
    c->prefix = (unsigned)prefix;
    net = *c;
    mask_host_bits(net.addr, nbytes, net.prefix);
    if (memcmp(net.addr, c->addr, nbytes) != 0) {
        char text[INET6_ADDRSTRLEN];
        inet_ntop(c->family, net.addr, text, sizeof text);
        return loader_error(ld, &a->pos, "host bits set in '%s' (the network would be %s/%u)",
                            a->text, text, net.prefix);
    }
    c->pos = loader_pos(ld, &a->pos);
    return true;
bad:
    return loader_error(ld, &a->pos,
                        "invalid CIDR '%s' (expected ADDRESS or ADDRESS/PREFIX, IPv4 or IPv6)",
                        a->text);
}

static bool same_cidr(const struct config_cidr *x, const struct config_cidr *y)
{
    return x->family == y->family && x->prefix == y->prefix &&
           memcmp(x->addr, y->addr, sizeof x->addr) == 0;
}

bool config_admin_allow(struct config_loader *ld, const struct conf_directive *d, void *obj)
{
    struct admin_build *b = obj;
    struct config_admin *adm = b->a;

    if (!b->allow_given) {
        free(adm->allow);
        adm->allow = NULL;
        adm->nallow = 0;
        b->allow_given = true;
    }
    for (size_t i = 0; i < d->nargs; i++) {
        const struct conf_arg *a = &d->args[i];
        struct config_cidr c;
        struct config_cidr *allow;

        if (!parse_cidr(ld, a, &c))
            return false;
        for (size_t k = 0; k < adm->nallow; k++) {
            const struct config_pos *p = &adm->allow[k].pos;
            if (same_cidr(&adm->allow[k], &c))
                return loader_error(ld, &a->pos, "duplicate allow '%s' (first at %s:%u:%u)",
                                    a->text, p->file, p->line, p->col);
        }
        allow = realloc(adm->allow, (adm->nallow + 1) * sizeof *allow);
        if (!allow)
            return loader_oom(ld, &a->pos);
        adm->allow = allow;
        adm->allow[adm->nallow++] = c;
    }
    return true;
}
