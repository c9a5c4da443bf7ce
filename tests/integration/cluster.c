/*
 * tests/integration/cluster.c: coalescing across nodes (`coalesce cluster`):
 * two tessera nodes sharing one memcached, a burst for a cold slow page
 * split across both, and the application sees one request.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/expect.h"
#include "tests/support/harness.h"

#define NODES 2
#define BURST 100

static struct harness h;
static struct proc *memcached;
static struct proc *node[NODES];

static const char *node_conf(int i, int coalesce_cluster)
{
    char name[32];
    snprintf(name, sizeof name, "node%d.conf", i);
    char log[32];
    snprintf(log, sizeof log, "node%d.log", i);
    return tmpdir_write(h.td, name,
                        "listen 127.0.0.1:0;\nworkers 2;\n"
                        "log { error %s; level info; }\n"
                        "backend app { server 127.0.0.1:%d; }\n"
                        "memcached { server 127.0.0.1:%d; timeout 500ms; }\n"
                        "route /cl/ { backend app; cache on; coalesce %s; }\n"
                        "route default { backend app; }\n",
                        tmpdir_file(h.td, log), h.origin_port[0], memcached->port,
                        coalesce_cluster ? "cluster" : "on");
}

static int start_nodes(int coalesce_cluster)
{
    for (int i = 0; i < NODES; i++) {
        char name[32], log[32];
        snprintf(name, sizeof name, "node%d", i);
        snprintf(log, sizeof log, "node%d.log", i);
        const char *conf = node_conf(i, coalesce_cluster);
        node[i] =
            conf ? proc_start_tessera(h.td, name, conf, tmpdir_file(h.td, log), (const char *)NULL)
                 : NULL;
        if (!node[i])
            return -1;
    }
    return 0;
}

static void stop_nodes(void)
{
    for (int i = 0; i < NODES; i++)
        proc_free(&node[i]);
}

static int setup(void **state)
{
    (void)state;
    if (!harness_init(&h, "cluster") || !harness_origin(&h, 0, NULL))
        return -1;
    memcached = proc_start_memcached(h.td, "memcached");
    return memcached ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    stop_nodes();
    proc_free(&memcached);
    harness_free(&h);
    return 0;
}

struct burst {
    pthread_t tid;
    int port;
    const char *target;
    pthread_barrier_t *go;
    int status;
    char *body;
    char cache_status[128];
};

static void *one_request(void *arg)
{
    struct burst *b = arg;
    struct http_response r = {0};
    pthread_barrier_wait(b->go);
    /* The same Host on both nodes: the host is part of the cache key. */
    if (http_get(b->port, b->target, &r, "Host: shop.test", (const char *)NULL) == CLIENT_OK) {
        b->status = r.status;
        b->body = r.body ? strdup(r.body) : NULL;
        const char *cs = http_response_header(&r, "Cache-Status");
        snprintf(b->cache_status, sizeof b->cache_status, "%s", cs ? cs : "");
    }
    http_response_clear(&r);
    return NULL;
}

/* BURST concurrent requests for target, alternating between the nodes;
 * every one must get a 200 with the same body.  Returns the upstream count. */
static long burst(const char *target, const char *path)
{
    static struct burst b[BURST];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, BURST);
    for (int i = 0; i < BURST; i++) {
        b[i] = (struct burst){.port = node[i % NODES]->port, .target = target, .go = &go};
        pthread_create(&b[i].tid, NULL, one_request, &b[i]);
    }
    for (int i = 0; i < BURST; i++)
        pthread_join(b[i].tid, NULL);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < BURST; i++) {
        if (b[i].status != 200 || !b[i].body || strcmp(b[i].body, b[0].body) != 0)
            fail_msg("request %d: status %d, cache status '%s'", i, b[i].status, b[i].cache_status);
    }
    for (int i = 0; i < BURST; i++)
        free(b[i].body);
    return harness_origin_count(&h, 0, path);
}

static void test_cluster_coalescing_costs_one_upstream_request(void **state)
{
    (void)state;
    assert_int_equal(start_nodes(1), 0);
    long n = burst("/cl/cold?delay=500&len=3000&hdr=Cache-Control:max-age%3D100", "/cl/cold");
    assert_int_equal(n, 1);
    stop_nodes();
}

static void test_without_cluster_each_node_fetches(void **state)
{
    (void)state;
    assert_int_equal(start_nodes(0), 0);
    /* The control: coalescing per node only.  Both nodes miss memcached
     * at once (the fill lands 500 ms later), so each fetches: what the
     * cluster lock saves. */
    long n = burst("/cl/percore?delay=500&len=3000&hdr=Cache-Control:max-age%3D100", "/cl/percore");
    assert_int_equal(n, NODES);
    stop_nodes();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_coalescing_costs_one_upstream_request),
        cmocka_unit_test(test_without_cluster_each_node_fetches),
    };
    return cmocka_run_group_tests_name("cluster", tests, setup, teardown);
}
