/*
 * tests/integration/memcached.c: the memcached tier (issue 6): several
 * tessera nodes sharing one cache in real memcached servers.  Node B
 * serves what node A fetched, a restarted node still hits, a 5 MB object
 * goes through as chunk items, Vary variants are shared, a route may use
 * memcached alone, memcached may be absent at start or die mid-run, and a
 * corrupt value planted in memcached is a miss, never an answer.
 *
 * Every scenario checks the bodies (byte for byte), the cache's own fields
 * (Cache-Status as proxy/cachepath.c writes it: "detail=memcached" on a
 * hit from memcached, none on a memory hit) and the origin's /__count, the
 * exact number of requests that went upstream.
 *
 * Each test gets its own temp dir, origin and memcached server(s) from the
 * setup, starts its nodes ("a", "b": one config text each, same memcached
 * block and routes) and leaves everything to the teardown.  All requests
 * send "Host: shop.test": the host is part of the cache key, so both nodes
 * must see the same one to share objects.
 *
 * tessera writes to memcached in the background (the client has its
 * response first), so before asking node B a test waits, bounded, until
 * the item is in memcached.  It looks with memcached's text protocol, under
 * the key cache/codec.h documents (prefix + hex of XXH3-128, seed 0, of the
 * full primary key [ "\n" Vary key ] [ ":" chunk ]), computed here with
 * xxhash's header-only mode (the integration link line has no -lxxhash).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "tests/support/clock.h"
#include "tests/support/expect.h"
#include "tests/support/proc.h"
#include "tests/support/tmpdir.h"

#define READ_MS 5000
#define HOST "shop.test"
#define ORIGIN_OF(target) "http://" HOST target
#define DEFAULT_PREFIX "tsr:"
/* How long a test waits for a background write to reach memcached. */
#define ITEM_WAIT_MS 5000
/* item_size's default: 1m less 1k (man tessera.conf, MEMCACHED CONTEXT). */
#define ITEM_SIZE_DEFAULT (1024 * 1024 - 1024)

/* Cache-Control on the origin's response, as a query parameter. */
#define CC_100 "hdr=Cache-Control:max-age%3D100"

/* ---- the scene ------------------------------------------------------------ */

struct node {
    const char *name;
    const char *conf;      /* owned by td */
    const char *error_log; /* TD/NAME-error.log */
    const char *access_log;
    struct proc *p;
    int port;
};

#define NMC 3
static struct tmpdir *td;
static struct proc *origin;
static int origin_port;
static struct proc *mc[NMC]; /* NULL when not running (yet, or any more) */
static int mc_port[NMC];     /* the servers the nodes are configured with */
static int nmc;
static struct node node_a = {.name = "a"}, node_b = {.name = "b"};

#define NRESP 8
static struct http_response r[NRESP];
static struct client *conn;
static char *value; /* a value read from memcached, freed by the teardown */

/* ---- memcached, spoken to directly (text protocol) ------------------------ */

static bool mc_send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* get key from the memcached on port: 1 and the value in *val (malloc'd,
 * *len bytes; val may be NULL) when found, 0 when not, -1 on error. */
static int mc_get(int port, const char *key, char **val, size_t *len)
{
    int fd = proc_memcached_connect(port);
    if (fd < 0)
        return -1;
    char cmd[300];
    int n = snprintf(cmd, sizeof cmd, "get %s\r\n", key);
    int rc = -1;
    size_t cap = 1 << 16, have = 0;
    char *buf = malloc(cap);
    if (!buf || !mc_send_all(fd, cmd, (size_t)n))
        goto out;
    for (;;) {
        if (have >= 5 && memcmp(buf, "END\r\n", 5) == 0) {
            rc = 0;
            break;
        }
        char *eol = have ? memmem(buf, have, "\r\n", 2) : NULL;
        if (eol && strncmp(buf, "VALUE ", 6) != 0)
            break; /* ERROR, SERVER_ERROR ... */
        if (eol) {
            size_t bytes = 0;
            *eol = '\0';
            if (sscanf(buf, "VALUE %*s %*u %zu", &bytes) != 1)
                break;
            *eol = '\r';
            size_t head = (size_t)(eol - buf) + 2;
            if (have >= head + bytes + 2 + 5) {
                if (val) {
                    *val = malloc(bytes + 1);
                    if (!*val)
                        break;
                    memcpy(*val, buf + head, bytes);
                    (*val)[bytes] = '\0';
                }
                if (len)
                    *len = bytes;
                rc = 1;
                break;
            }
        }
        if (have == cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger)
                break;
            buf = bigger;
            cap *= 2;
        }
        ssize_t got = recv(fd, buf + have, cap - have, 0);
        if (got <= 0)
            break;
        have += (size_t)got;
    }
out:
    free(buf);
    close(fd);
    return rc;
}

/* set key to the len bytes at data on the memcached on port. */
static bool mc_set(int port, const char *key, const void *data, size_t len)
{
    int fd = proc_memcached_connect(port);
    if (fd < 0)
        return false;
    char cmd[320], reply[64] = "";
    int n = snprintf(cmd, sizeof cmd, "set %s 0 0 %zu\r\n", key, len);
    bool ok =
        mc_send_all(fd, cmd, (size_t)n) && mc_send_all(fd, data, len) && mc_send_all(fd, "\r\n", 2);
    size_t have = 0;
    while (ok && have < sizeof reply - 1 && !memmem(reply, have, "\r\n", 2)) {
        ssize_t got = recv(fd, reply + have, sizeof reply - 1 - have, 0);
        if (got <= 0)
            break;
        have += (size_t)got;
    }
    close(fd);
    return ok && strncmp(reply, "STORED\r\n", 8) == 0;
}

/* The memcached key of item `index` of the object under the full primary
 * key and the Vary key (NULL or "" for none), as cache_codec_item_key(). */
static void item_key(char *out, size_t cap, const char *prefix, const char *primary,
                     const char *secondary, unsigned index)
{
    char hashed[4096];
    int n = secondary && *secondary ? snprintf(hashed, sizeof hashed, "%s\n%s", primary, secondary)
                                    : snprintf(hashed, sizeof hashed, "%s", primary);
    assert_true(n > 0 && (size_t)n < sizeof hashed);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_withSeed(hashed, (size_t)n, 0));
    char hex[33];
    for (size_t i = 0; i < sizeof c.digest; i++)
        snprintf(hex + 2 * i, 3, "%02x", c.digest[i]);
    if (index > 0)
        snprintf(out, cap, "%s%s:%u", prefix, hex, index);
    else
        snprintf(out, cap, "%s%s", prefix, hex);
}

/* The running server holding key, or -1. */
static int find_item(const char *key)
{
    for (int i = 0; i < nmc; i++)
        if (mc[i] && mc_get(mc_port[i], key, NULL, NULL) == 1)
            return i;
    return -1;
}

/* Wait until a running server holds the key (what a node wrote in the
 * background); returns that server's index.  what names it for the
 * failure message. */
static int wait_item(const char *key, const char *what)
{
    long until = now_ms() + ITEM_WAIT_MS;
    for (;;) {
        int i = find_item(key);
        if (i >= 0)
            return i;
        if (now_ms() > until)
            fail_msg("%s never reached memcached (no item %s after %d ms)", what, key,
                     ITEM_WAIT_MS);
        sleep_ms(20);
    }
}

/* Wait for item 0 of the object under primary (and Vary key secondary). */
static int wait_object(const char *prefix, const char *primary, const char *secondary)
{
    char key[300];
    item_key(key, sizeof key, prefix, primary, secondary, 0);
    return wait_item(key, primary);
}

/* Start memcached on this very port (proc_start_memcached picks its own). */
static struct proc *start_memcached_on(const char *name, int port)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    const char *as_root = geteuid() == 0 ? "-u" : NULL;
    const char *argv[] = {"memcached", "-l", "127.0.0.1", "-p",     p,
                          "-U",        "0",  as_root,     "nobody", NULL};
    struct proc *m = proc_start(td, name, argv);
    if (m && !proc_wait_accepting(m, port, PROC_START_TIMEOUT_MS))
        proc_free(&m);
    return m;
}

/* ---- the nodes ------------------------------------------------------------ */

/* Write n's config (the same text for every node but its logs) and start
 * it: the memcached servers mc_port[0..nmc) with mc_extra in the block, and
 * one route, default, caching with route_extra.  The memory store is 1g:
 * it splits its capacity into 64 shards and refuses an object larger than
 * one (cache/memstore.c), so the default 256m could not keep the 5 MB
 * object a node promotes from memcached. */
static void start_node(struct node *n, const char *mc_extra, const char *route_extra)
{
    char file[64], servers[NMC * 40] = "";
    for (int i = 0; i < nmc; i++)
        snprintf(servers + strlen(servers), sizeof servers - strlen(servers),
                 "server 127.0.0.1:%d; ", mc_port[i]);
    snprintf(file, sizeof file, "%s-error.log", n->name);
    n->error_log = tmpdir_file(td, file);
    snprintf(file, sizeof file, "%s-access.log", n->name);
    n->access_log = tmpdir_file(td, file);
    snprintf(file, sizeof file, "%s.conf", n->name);
    n->conf =
        tmpdir_write(td, file,
                     "listen 127.0.0.1:0;\nworkers 2;\n"
                     "log { error %s; access %s; level info; }\n"
                     "cache { memory 1g; }\n"
                     "memcached { %s%s }\n"
                     "backend app { server 127.0.0.1:%d; keepalive 16; }\n"
                     "route default { backend app; cache on; %s }\n",
                     n->error_log, n->access_log, servers, mc_extra, origin_port, route_extra);
    assert_non_null(n->conf);
    n->p = proc_start_tessera(td, n->name, n->conf, n->error_log, (const char *)NULL);
    if (!n->p)
        fail_msg("tessera %s did not start (see %s)", n->name, n->error_log);
    n->port = n->p->port;
}

static void start_nodes(const char *mc_extra, const char *route_extra)
{
    start_node(&node_a, mc_extra, route_extra);
    start_node(&node_b, mc_extra, route_extra);
}

/* The node is still running, and nothing in its stderr says a sanitizer
 * caught it. */
static void expect_alive(struct node *n)
{
    if (proc_wait_exit(n->p, 0) != -1)
        fail_msg("tessera %s exited with status %d (see %s)", n->name, n->p->status,
                 n->p->err_path);
    if (proc_log_contains(n->p->err_path, "Sanitizer") ||
        proc_log_contains(n->p->err_path, "runtime error"))
        fail_msg("tessera %s: sanitizer report in %s", n->name, n->p->err_path);
}

/* Lines of path containing needle. */
static int log_count(const char *path, const char *needle)
{
    char *text = tmpdir_read_file(path, NULL);
    int count = 0;
    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        count++;
    free(text);
    return count;
}

/* ---- requests ------------------------------------------------------------- */

/* GET target from node n with "Host: shop.test" and an optional extra
 * header line; the response goes into *resp.  Returns the milliseconds it
 * took, connection to last byte. */
static long get(struct node *n, struct http_response *resp, const char *target, const char *header)
{
    http_response_clear(resp);
    long start = now_ms();
    conn = client_connect(n->port, READ_MS);
    if (!conn)
        fail_msg("GET %s: cannot connect to tessera %s", target, n->name);
    assert_int_equal(client_send_request(conn, "GET", target, "Host: " HOST, header, NULL), 0);
    int rc = client_read_response(conn, 0, resp, READ_MS);
    if (rc != CLIENT_OK)
        fail_msg("GET %s from tessera %s: no response (client rc %d)", target, n->name, rc);
    client_free(&conn);
    return now_ms() - start;
}

static const char *cache_status(const struct http_response *resp)
{
    const char *v = http_response_header(resp, "Cache-Status");
    if (!v)
        fail_msg("response has no Cache-Status");
    return v;
}

/* A miss forwarded as fwd whose response was stored. */
static void expect_stored_miss_at(const struct http_response *resp, const char *fwd, int line)
{
    char want[160];
    snprintf(want, sizeof want, "tessera; fwd=%s; fwd-status=%d; stored", fwd, resp->status);
    if (strcmp(cache_status(resp), want) != 0)
        fail_msg("line %d: Cache-Status \"%s\", expected \"%s\"", line, cache_status(resp), want);
    expect_header(resp, "X-Cache", "MISS");
}
#define expect_stored_miss(resp, fwd) expect_stored_miss_at((resp), (fwd), __LINE__)

/* A hit: "tessera; hit; ttl=N" followed by exactly tail.  line: the
 * caller's, for the message. */
static void expect_hit_with(const struct http_response *resp, const char *tail, int line)
{
    expect_status(resp, 200);
    const char *cs = cache_status(resp);
    const char *prefix = "tessera; hit; ttl=";
    char *end = NULL;
    if (strncmp(cs, prefix, strlen(prefix)) == 0)
        strtol(cs + strlen(prefix), &end, 10);
    if (!end || end == cs + strlen(prefix) || strcmp(end, tail) != 0)
        fail_msg("line %d: Cache-Status \"%s\", expected \"%sN%s\"", line, cs, prefix, tail);
    expect_header(resp, "X-Cache", "HIT");
}

/* Answered from memcached, not from memory nor the origin. */
#define expect_memcached_hit(resp) expect_hit_with((resp), "; detail=memcached", __LINE__)

/* Answered from the node's memory. */
#define expect_memory_hit(resp) expect_hit_with((resp), "", __LINE__)

/* How many requests the origin served for path (without query), or -1. */
static long upstream_count(const char *path)
{
    char target[512];
    snprintf(target, sizeof target, "/__count?path=%s", path);
    struct http_response c = {0};
    long got = -1;
    if (http_get(origin_port, target, &c, (const char *)NULL) == CLIENT_OK && c.status == 200 &&
        c.body)
        got = strtol(c.body, NULL, 10);
    http_response_clear(&c);
    return got;
}

/* The origin served exactly n requests for path. */
static void expect_upstream(const char *path, long n)
{
    long got = upstream_count(path);
    if (got != n)
        fail_msg("origin served %ld request(s) for %s, expected %ld", got, path, n);
}

/* b's body is a's, byte for byte. */
static void expect_same_body(const struct http_response *a, const struct http_response *b)
{
    assert_int_equal(a->body_len, b->body_len);
    if (a->body_len && (!a->body || !b->body || memcmp(a->body, b->body, a->body_len) != 0))
        fail_msg("bodies of %zu bytes differ", a->body_len);
}

/* The fields the cache adds or recomputes. */
static bool cache_own_field(const char *name)
{
    return strcasecmp(name, "Age") == 0 || strcasecmp(name, "Cache-Status") == 0 ||
           strcasecmp(name, "X-Cache") == 0;
}

static const char *nth_value(const struct http_response *resp, const char *name, size_t n)
{
    for (size_t i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0 && n-- == 0)
            return resp->headers[i].value;
    return NULL;
}

/* Every field of a (but the cache's own) is in b with the same values in
 * the same order, and b has no other field: the head survived memcached. */
static void expect_same_fields(const struct http_response *a, const struct http_response *b)
{
    for (int pass = 0; pass < 2; pass++) {
        const struct http_response *x = pass ? b : a, *y = pass ? a : b;
        for (size_t i = 0; i < x->nheaders; i++) {
            const char *name = x->headers[i].name;
            if (cache_own_field(name))
                continue;
            size_t nth = 0;
            for (size_t j = 0; j < i; j++)
                if (strcasecmp(x->headers[j].name, name) == 0)
                    nth++;
            const char *other = nth_value(y, name, nth);
            if (!other || strcmp(other, x->headers[i].value) != 0)
                fail_msg("%s: \"%s\" in the %s, \"%s\" in the %s", name, x->headers[i].value,
                         pass ? "memcached hit" : "fill", other ? other : "(none)",
                         pass ? "fill" : "memcached hit");
        }
    }
}

/* ---- a killer thread (test 7) ------------------------------------------------ */

/* The killer: SIGKILLs killer_pid 2 ms after killer_go, while the test's
 * requests keep coming, so that one may be in flight on the dead server.
 * The test reaps the process afterwards (proc is not thread-safe). */
static pthread_t killer;
static bool killer_started;
static atomic_int killer_go;
static atomic_int killer_pid;

static void *killer_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&killer_go))
        sleep_ms(1);
    sleep_ms(2);
    pid_t pid = atomic_load(&killer_pid);
    if (pid > 0)
        kill(pid, SIGKILL);
    return NULL;
}

static void killer_join(void)
{
    if (!killer_started)
        return;
    atomic_store(&killer_go, 1);
    pthread_join(killer, NULL);
    killer_started = false;
}

/* ---- fixtures ------------------------------------------------------------- */

static int setup_scene(int servers)
{
    td = tmpdir_create("memcached");
    if (!td)
        return -1;
    origin = proc_start_origin(td, "origin", (const char *)NULL);
    if (!origin)
        return -1;
    origin_port = origin->port;
    nmc = servers;
    for (int i = 0; i < servers; i++) {
        char name[32];
        snprintf(name, sizeof name, "memcached%d", i);
        mc[i] = proc_start_memcached(td, name);
        if (!mc[i])
            return -1;
        mc_port[i] = mc[i]->port;
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return setup_scene(1);
}

static int setup_three(void **state)
{
    (void)state;
    return setup_scene(3);
}

/* No memcached running: the nodes get a port nothing listens on. */
static int setup_absent(void **state)
{
    (void)state;
    if (setup_scene(0) != 0)
        return -1;
    nmc = 1;
    mc_port[0] = proc_free_port();
    return mc_port[0] > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    client_free(&conn);
    atomic_store(&killer_pid, 0);
    killer_join();
    for (int i = 0; i < NRESP; i++)
        http_response_clear(&r[i]);
    free(value);
    value = NULL;
    proc_free(&node_a.p);
    proc_free(&node_b.p);
    for (int i = 0; i < NMC; i++) {
        proc_free(&mc[i]);
        mc_port[i] = 0;
    }
    nmc = 0;
    proc_free(&origin);
    tmpdir_free(&td);
    return 0;
}

/* ---- 1. filled through A, a hit through B ---------------------------------- */

static void test_a_fill_through_node_a_is_a_hit_on_node_b(void **state)
{
    (void)state;
    start_nodes("", "");
    const char *target = "/shared/page?len=3000&" CC_100;

    get(&node_a, &r[0], target, NULL);
    expect_status(&r[0], 200);
    expect_pattern_body(&r[0], 3000, 0);
    expect_stored_miss(&r[0], "uri-miss");
    expect_upstream("/shared/page", 1);

    wait_object(DEFAULT_PREFIX, ORIGIN_OF("/shared/page?len=3000&" CC_100), NULL);
    get(&node_b, &r[1], target, NULL);
    expect_memcached_hit(&r[1]);
    expect_same_body(&r[0], &r[1]);
    expect_same_origin_response(&r[0], &r[1]);
    expect_same_fields(&r[0], &r[1]);
    expect_upstream("/shared/page", 1);

    /* Promoted: B's next answer comes from its own memory. */
    get(&node_b, &r[2], target, NULL);
    expect_memory_hit(&r[2]);
    expect_same_body(&r[0], &r[2]);
    expect_same_origin_response(&r[0], &r[2]);
    expect_upstream("/shared/page", 1);
}

/* ---- 2. a restart keeps the cache --------------------------------------------- */

static void test_a_restarted_node_hits_memcached(void **state)
{
    (void)state;
    start_node(&node_a, "", "");
    const char *target = "/restart/page?" CC_100;
    get(&node_a, &r[0], target, NULL);
    expect_body(&r[0], "hello from origin /restart/page\n");
    expect_stored_miss(&r[0], "uri-miss");
    wait_object(DEFAULT_PREFIX, ORIGIN_OF("/restart/page?" CC_100), NULL);

    assert_int_equal(proc_stop(node_a.p, 5000), 0); /* SIGTERM: a clean exit */
    proc_free(&node_a.p);
    start_node(&node_a, "", "");

    get(&node_a, &r[1], target, NULL);
    expect_memcached_hit(&r[1]);
    expect_body(&r[1], "hello from origin /restart/page\n");
    expect_same_origin_response(&r[0], &r[1]);
    get(&node_a, &r[2], target, NULL);
    expect_memory_hit(&r[2]);
    expect_same_origin_response(&r[0], &r[2]);
    expect_upstream("/restart/page", 1);
}

/* ---- 3. a 5 MB object in chunk items ------------------------------------------ */

static void test_a_5mb_object_is_chunked_and_served_intact(void **state)
{
    (void)state;
    enum { LEN = 5242880 };
    start_nodes("", "max_object_size 16m;");
    const char *target = "/big/five?len=5242880&" CC_100;
    const char *primary = ORIGIN_OF("/big/five?len=5242880&" CC_100);

    get(&node_a, &r[0], target, NULL);
    expect_status(&r[0], 200);
    expect_pattern_body(&r[0], LEN, 0);
    expect_stored_miss(&r[0], "uri-miss");

    /* Item 0 is written last: once it is there, so are the chunks.  With
     * the default item_size, 5 MB is item 0 and exactly 5 chunk items. */
    wait_object(DEFAULT_PREFIX, primary, NULL);
    char key[300];
    size_t total = 0;
    for (unsigned i = 0; i <= 6; i++) {
        size_t len = 0;
        item_key(key, sizeof key, DEFAULT_PREFIX, primary, NULL, i);
        int found = mc_get(mc_port[0], key, NULL, &len);
        if (i <= 5 && found != 1)
            fail_msg("item %u (%s) of the 5 MB object is not in memcached (%d)", i, key, found);
        if (i == 6 && found != 0)
            fail_msg("the 5 MB object has a 6th chunk item %s (%d)", key, found);
        if (found == 1 && len > ITEM_SIZE_DEFAULT)
            fail_msg("item %u is %zu bytes, over item_size %d", i, len, ITEM_SIZE_DEFAULT);
        total += len;
    }
    assert_true(total > LEN);

    get(&node_b, &r[1], target, NULL);
    expect_memcached_hit(&r[1]);
    expect_pattern_body(&r[1], LEN, 0);
    expect_same_body(&r[0], &r[1]);
    expect_same_origin_response(&r[0], &r[1]);
    expect_upstream("/big/five", 1);

    get(&node_b, &r[2], target, NULL);
    expect_memory_hit(&r[2]);
    expect_pattern_body(&r[2], LEN, 0);
    expect_upstream("/big/five", 1);
}

/* ---- 4. Vary variants are shared, each under its own key --------------------- */

static void test_vary_variants_are_shared_between_nodes(void **state)
{
    (void)state;
    start_nodes("", "");
    const char *target = "/vary/lang?hdr=Vary:Accept-Language&" CC_100;
    const char *primary = ORIGIN_OF("/vary/lang?hdr=Vary:Accept-Language&" CC_100);
    const char *body = "hello from origin /vary/lang\n";

    get(&node_a, &r[0], target, "Accept-Language: en");
    expect_body(&r[0], body);
    expect_stored_miss(&r[0], "uri-miss");
    get(&node_a, &r[1], target, "Accept-Language: fr");
    expect_body(&r[1], body);
    expect_stored_miss(&r[1], "vary-miss");
    expect_different_origin_responses(&r[0], &r[1]);
    expect_upstream("/vary/lang", 2);

    /* Each variant under (primary, Vary key), the Vary index under the
     * primary key alone (cache/mcstore.h). */
    wait_object(DEFAULT_PREFIX, primary, "accept-language=en\n");
    wait_object(DEFAULT_PREFIX, primary, "accept-language=fr\n");
    wait_object(DEFAULT_PREFIX, primary, NULL);

    get(&node_b, &r[2], target, "Accept-Language: fr");
    expect_memcached_hit(&r[2]);
    expect_body(&r[2], body);
    expect_same_origin_response(&r[1], &r[2]);
    expect_header(&r[2], "Vary", "Accept-Language");
    get(&node_b, &r[3], target, "Accept-Language: en");
    expect_memcached_hit(&r[3]);
    expect_body(&r[3], body);
    expect_same_origin_response(&r[0], &r[3]);
    expect_upstream("/vary/lang", 2);

    get(&node_b, &r[4], target, "Accept-Language: de");
    expect_body(&r[4], body);
    expect_stored_miss(&r[4], "vary-miss");
    expect_different_origin_responses(&r[0], &r[4]);
    expect_different_origin_responses(&r[1], &r[4]);
    expect_upstream("/vary/lang", 3);

    /* B keeps both variants it got from memcached in memory now. */
    get(&node_b, &r[5], target, "Accept-Language: en");
    expect_memory_hit(&r[5]);
    expect_same_origin_response(&r[0], &r[5]);
    get(&node_b, &r[6], target, "Accept-Language: fr");
    expect_memory_hit(&r[6]);
    expect_same_origin_response(&r[1], &r[6]);
    expect_upstream("/vary/lang", 3);
}

/* ---- 5. store memcached: every hit is a memcached get ----------------------- */

static void test_store_memcached_answers_every_hit_from_memcached(void **state)
{
    (void)state;
    start_node(&node_a, "", "store memcached;");
    const char *target = "/mconly/page?len=2000&" CC_100;
    get(&node_a, &r[0], target, NULL);
    expect_pattern_body(&r[0], 2000, 0);
    expect_stored_miss(&r[0], "uri-miss");
    wait_object(DEFAULT_PREFIX, ORIGIN_OF("/mconly/page?len=2000&" CC_100), NULL);

    for (int i = 1; i <= 2; i++) {
        get(&node_a, &r[i], target, NULL);
        expect_memcached_hit(&r[i]);
        expect_pattern_body(&r[i], 2000, 0);
        expect_same_origin_response(&r[0], &r[i]);
    }
    expect_upstream("/mconly/page", 1);
}

/* ---- 6. memcached absent at start -------------------------------------------- */

static void test_memcached_absent_at_start_then_used_once_it_answers(void **state)
{
    (void)state;
    enum { TIMEOUT_MS = 100, RETRY_MS = 1000 };
    start_nodes("timeout 100ms; retry_timeout 1s;", "");
    const char *target = "/absent/page?" CC_100;
    const char *body = "hello from origin /absent/page\n";
    struct node *nodes[2] = {&node_a, &node_b};
    long last_b = 0;
    for (int n = 0; n < 2; n++) {
        long took = get(nodes[n], &r[0], target, NULL);
        expect_status(&r[0], 200);
        expect_body(&r[0], body);
        expect_stored_miss(&r[0], "uri-miss");
        if (took > 2 * TIMEOUT_MS)
            fail_msg("tessera %s: a miss with memcached down took %ld ms", nodes[n]->name, took);
        expect_upstream("/absent/page", n + 1);
        took = get(nodes[n], &r[1], target, NULL);
        expect_memory_hit(&r[1]);
        expect_body(&r[1], body);
        expect_same_origin_response(&r[0], &r[1]);
        if (took > 2 * TIMEOUT_MS)
            fail_msg("tessera %s: a memory hit with memcached down took %ld ms", nodes[n]->name,
                     took);
        last_b = now_ms();
    }
    expect_upstream("/absent/page", 2);
    char down[80];
    snprintf(down, sizeof down, "memcached 127.0.0.1:%d is down", mc_port[0]);
    if (!proc_wait_log(node_a.error_log, down, 2000))
        fail_msg("tessera a never logged \"%s\"", down);

    mc[0] = start_memcached_on("memcached0", mc_port[0]);
    assert_non_null(mc[0]);
    long up_at = now_ms();

    /* Past retry_timeout A tries the server again and a fill lands.  The
     * retry counts whole seconds (libmemcached's clock), so a fill just
     * after retry_timeout may still meet the server in its time out:
     * fill fresh URLs, each waited for 300 ms, until 2 x retry_timeout + 1 s
     * after memcached came up. */
    sleep_ms(RETRY_MS + 100);
    char fill[96], path[64], key[300], primary[160];
    int tries = 0;
    for (;;) {
        snprintf(path, sizeof path, "/absent/later%d", tries++);
        snprintf(fill, sizeof fill, "%s?%s", path, CC_100);
        snprintf(primary, sizeof primary, "http://" HOST "%s", fill);
        item_key(key, sizeof key, DEFAULT_PREFIX, primary, NULL, 0);
        get(&node_a, &r[2], fill, NULL);
        expect_stored_miss(&r[2], "uri-miss");
        long until = now_ms() + 300;
        while (find_item(key) < 0 && now_ms() < until)
            sleep_ms(20);
        if (find_item(key) >= 0)
            break;
        if (now_ms() - up_at > 2 * RETRY_MS + 1000)
            fail_msg("memcached up for %ld ms, %d fill(s) through tessera a since: none stored "
                     "(retry_timeout 1s)",
                     now_ms() - up_at, tries);
    }
    print_message("fill %d through a landed %ld ms after memcached came up\n", tries,
                  now_ms() - up_at);
    char back[80];
    snprintf(back, sizeof back, "memcached 127.0.0.1:%d is back", mc_port[0]);
    if (!proc_wait_log(node_a.error_log, back, 2000))
        fail_msg("tessera a never logged \"%s\"", back);

    /* B failed last at last_b: it retries by now (twice retry_timeout). */
    long wait = last_b + 2 * RETRY_MS + 100 - now_ms();
    if (wait > 0)
        sleep_ms(wait);
    get(&node_b, &r[3], fill, NULL);
    if (strstr(cache_status(&r[3]), "detail=memcached") == NULL)
        fail_msg("tessera b, last failed on memcached %ld ms ago (retry_timeout 1s), memcached "
                 "up for %ld ms, did not find %s there: Cache-Status \"%s\"",
                 now_ms() - last_b, now_ms() - up_at, path, cache_status(&r[3]));
    expect_memcached_hit(&r[3]);
    expect_same_origin_response(&r[2], &r[3]);
    char later[96];
    snprintf(later, sizeof later, "hello from origin %s\n", path);
    expect_body(&r[3], later);
    expect_upstream(path, 1);
    if (!proc_wait_log(node_b.error_log, back, 2000))
        fail_msg("tessera b never logged \"%s\"", back);
    assert_int_equal(log_count(node_a.error_log, down), 1);
    assert_int_equal(log_count(node_b.error_log, down), 1);
    expect_alive(&node_a);
    expect_alive(&node_b);
}

/* ---- 7. one of three servers killed mid-run ------------------------------------- */

static void test_a_server_killed_mid_run_fails_no_request(void **state)
{
    (void)state;
    enum { URLS = 30, REQUESTS = 300, KILL_AT = 150, SLOW_MS = 1000 };
    /* store memcached: every request is a memcached get, before and after
     * the kill (with memory in front, the nodes would stop asking). */
    start_nodes("retry_timeout 1s;", "store memcached;");
    struct node *nodes[2] = {&node_a, &node_b};
    int where[URLS]; /* the server holding each URL's object */
    int victim = 1;
    long slowest = 0;

    for (int i = 0; i < REQUESTS + 2 * URLS; i++) {
        int u = i % URLS;
        /* rounds of 30 alternate between the nodes; after the run, one
         * more round on each, past retry_timeout */
        struct node *n = nodes[(i / URLS) % 2];
        char target[96], path[32], body[64];
        snprintf(path, sizeof path, "/k/%d", u);
        snprintf(target, sizeof target, "%s?%s", path, CC_100);
        snprintf(body, sizeof body, "hello from origin %s\n", path);

        if (i == KILL_AT) {
            atomic_store(&killer_pid, mc[victim]->pid);
            atomic_store(&killer_go, 0);
            assert_int_equal(pthread_create(&killer, NULL, killer_main, NULL), 0);
            killer_started = true;
            atomic_store(&killer_go, 1);
        }
        if (i == KILL_AT + 20) {
            killer_join();
            assert_int_equal(proc_wait_exit(mc[victim], 2000), 128 + SIGKILL);
            proc_free(&mc[victim]);
        }
        if (i == REQUESTS)
            sleep_ms(1200); /* the dead server is tried again, and found dead */

        long took = get(n, &r[0], target, NULL);
        if (r[0].status != 200 || !http_response_body_is(&r[0], body))
            fail_msg("request %d (%s from %s): status %d, body \"%.*s\"", i, path, n->name,
                     r[0].status, (int)(r[0].body_len > 100 ? 100 : r[0].body_len),
                     r[0].body ? r[0].body : "");
        if (took > slowest)
            slowest = took;
        if (took > SLOW_MS)
            fail_msg("request %d (%s from %s) took %ld ms", i, path, n->name, took);

        if (i == URLS - 1) {
            /* Every object filled: know where each lives before the kill. */
            int per[NMC] = {0};
            for (int k = 0; k < URLS; k++) {
                char t[96];
                snprintf(t, sizeof t, "http://" HOST "/k/%d?%s", k, CC_100);
                where[k] = wait_object(DEFAULT_PREFIX, t, NULL);
                per[where[k]]++;
            }
            for (int s = 0; s < NMC; s++)
                if (per[s] > per[victim])
                    victim = s;
            print_message("objects per server: %d %d %d; killing server %d\n", per[0], per[1],
                          per[2], victim);
            for (int k = 0; k < URLS; k++) {
                snprintf(path, sizeof path, "/k/%d", k);
                expect_upstream(path, 1);
            }
        }
        if (i == KILL_AT - 1)
            for (int k = 0; k < URLS; k++) {
                snprintf(path, sizeof path, "/k/%d", k);
                expect_upstream(path, 1); /* all hits from memcached so far */
            }
    }
    print_message("slowest request: %ld ms\n", slowest);

    /* Only the dead server's objects were fetched again. */
    for (int k = 0; k < URLS; k++) {
        char path[32];
        snprintf(path, sizeof path, "/k/%d", k);
        long n = upstream_count(path);
        if (where[k] != victim && n != 1)
            fail_msg("%s lives on a live server but went upstream %ld times", path, n);
        if (where[k] == victim && n < 2)
            fail_msg("%s lived on the killed server yet went upstream %ld time(s)", path, n);
    }
    char down[80];
    snprintf(down, sizeof down, "memcached 127.0.0.1:%d is down", mc_port[victim]);
    for (int k = 0; k < 2; k++) {
        expect_alive(nodes[k]);
        int count = log_count(nodes[k]->error_log, down);
        if (count != 1)
            fail_msg("tessera %s logged \"%s\" %d times, expected once", nodes[k]->name, down,
                     count);
        for (int s = 0; s < NMC; s++) {
            char other[80];
            snprintf(other, sizeof other, "memcached 127.0.0.1:%d is ", mc_port[s]);
            if (s != victim && proc_log_contains(nodes[k]->error_log, other))
                fail_msg("tessera %s logged a change of the live server %d", nodes[k]->name, s);
        }
    }
}

/* ---- 8. a corrupt value in memcached is a miss --------------------------------- */

/* Fill path through A and wait for its item 0 in memcached; its key is
 * written to key, and the value read back into `value`. */
static size_t fill_and_read(const char *target, const char *primary, char *key, size_t cap,
                            struct http_response *resp)
{
    get(&node_a, resp, target, NULL);
    expect_status(resp, 200);
    expect_stored_miss(resp, "uri-miss");
    item_key(key, cap, "shop:", primary, NULL, 0);
    wait_item(key, primary);
    free(value);
    value = NULL;
    size_t len = 0;
    assert_int_equal(mc_get(mc_port[0], key, &value, &len), 1);
    /* codec.h: item 0 starts with "TSR" and version 1 */
    assert_true(len > 80);
    assert_memory_equal(value, "TSR\x01", 4);
    return len;
}

static void test_a_corrupt_value_in_memcached_is_a_miss(void **state)
{
    (void)state;
    start_node(&node_a, "prefix shop:;", "max_object_size 16m;");
    char key[300], other_key[300], chunk_key[300];
    size_t len;

    /* Garbage: random bytes, NULs included, under the key. */
    len = fill_and_read("/corrupt/garbage?" CC_100, ORIGIN_OF("/corrupt/garbage?" CC_100), key,
                        sizeof key, &r[0]);
    char garbage[512];
    unsigned seed = 12345;
    for (size_t i = 0; i < sizeof garbage; i++) {
        seed = seed * 1103515245u + 12345u;
        garbage[i] = (char)(seed >> 16);
    }
    assert_true(mc_set(mc_port[0], key, garbage, sizeof garbage));

    /* A real value cut in half. */
    len = fill_and_read("/corrupt/truncated?" CC_100, ORIGIN_OF("/corrupt/truncated?" CC_100), key,
                        sizeof key, &r[1]);
    assert_true(mc_set(mc_port[0], key, value, len / 2));

    /* A real value with its last body byte changed (the body hash). */
    len = fill_and_read("/corrupt/flipped?" CC_100, ORIGIN_OF("/corrupt/flipped?" CC_100), key,
                        sizeof key, &r[2]);
    value[len - 2] ^= 0x20;
    assert_true(mc_set(mc_port[0], key, value, len));

    /* A valid item of another key (the full key is compared). */
    len = fill_and_read("/corrupt/other?" CC_100, ORIGIN_OF("/corrupt/other?" CC_100), other_key,
                        sizeof other_key, &r[3]);
    get(&node_a, &r[4], "/corrupt/victim?" CC_100, NULL);
    expect_stored_miss(&r[4], "uri-miss");
    item_key(key, sizeof key, "shop:", ORIGIN_OF("/corrupt/victim?" CC_100), NULL, 0);
    wait_item(key, "/corrupt/victim");
    assert_true(mc_set(mc_port[0], key, value, len));

    /* A chunked object whose second chunk item is garbage. */
    get(&node_a, &r[5], "/corrupt/chunked?len=3000000&" CC_100, NULL);
    expect_pattern_body(&r[5], 3000000, 0);
    expect_stored_miss(&r[5], "uri-miss");
    wait_object("shop:", ORIGIN_OF("/corrupt/chunked?len=3000000&" CC_100), NULL);
    item_key(chunk_key, sizeof chunk_key,
             "shop:", ORIGIN_OF("/corrupt/chunked?len=3000000&" CC_100), NULL, 2);
    assert_int_equal(mc_get(mc_port[0], chunk_key, NULL, &len), 1);
    char *bad = malloc(len);
    assert_non_null(bad);
    memset(bad, 'Z', len);
    memcpy(bad, "TSC\x01\x02\0\0\0", 8); /* the chunk's own header, a wrong check */
    bool planted = mc_set(mc_port[0], chunk_key, bad, len);
    free(bad);
    assert_true(planted);

    /* A fresh node B: memory empty, every lookup goes to memcached, and
     * every one of these must miss and answer from the origin. */
    start_node(&node_b, "prefix shop:;", "max_object_size 16m;");
    const char *names[] = {"garbage", "truncated", "flipped", "victim"};
    for (int i = 0; i < 4; i++) {
        char target[96], path[64], body[96];
        snprintf(path, sizeof path, "/corrupt/%s", names[i]);
        snprintf(target, sizeof target, "%s?%s", path, CC_100);
        snprintf(body, sizeof body, "hello from origin %s\n", path);
        get(&node_b, &r[6], target, NULL);
        expect_status(&r[6], 200);
        expect_body(&r[6], body);
        expect_stored_miss(&r[6], "uri-miss");
        expect_upstream(path, 2);
        get(&node_b, &r[7], target, NULL);
        expect_memory_hit(&r[7]);
        expect_same_origin_response(&r[6], &r[7]);
        expect_upstream(path, 2);
    }
    get(&node_b, &r[6], "/corrupt/chunked?len=3000000&" CC_100, NULL);
    expect_status(&r[6], 200);
    expect_pattern_body(&r[6], 3000000, 0);
    expect_stored_miss(&r[6], "uri-miss");
    expect_upstream("/corrupt/chunked", 2);

    /* The other key's object is untouched, and B serves it from memcached. */
    get(&node_b, &r[7], "/corrupt/other?" CC_100, NULL);
    expect_memcached_hit(&r[7]);
    expect_same_origin_response(&r[3], &r[7]);
    expect_upstream("/corrupt/other", 1);
    expect_alive(&node_b);
    expect_alive(&node_a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_fill_through_node_a_is_a_hit_on_node_b, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_restarted_node_hits_memcached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_5mb_object_is_chunked_and_served_intact, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_vary_variants_are_shared_between_nodes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_memcached_answers_every_hit_from_memcached,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_memcached_absent_at_start_then_used_once_it_answers,
                                        setup_absent, teardown),
        cmocka_unit_test_setup_teardown(test_a_server_killed_mid_run_fails_no_request, setup_three,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_corrupt_value_in_memcached_is_a_miss, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("memcached", tests, NULL, NULL);
}
