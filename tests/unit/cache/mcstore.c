/*
 * tests/unit/cache/mcstore.c: the memcached tier (cache/mcstore.c) against
 * real memcached processes (tests/support/proc.h starts them on free
 * loopback ports; teardown stops them): round trips (small, exactly one
 * item, 5 MB chunked), the Vary index, missing chunks and planted garbage,
 * the cluster lock, memcached down at start, a server killed under load,
 * full queues, reads ahead of writes, shutdown with jobs pending, expiry,
 * and the purge log (append, version, read, holes, resets, appends racing
 * from several threads and two stores, bad arguments, down, shutdown).
 *
 * Timeouts are short (200 ms, retry after 1 s) so the group stays fast.
 * Raw libmemcached calls in the tests plant and delete items behind the
 * store's back; they go to a single server, so no hashing is involved.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <libmemcached/memcached.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "cache/codec.h"
#include "cache/mcstore.h"
#include "tests/support/proc.h"
#include "tests/support/tmpdir.h"

#define TIMEOUT_MS 200
#define PREFIX "t:"
#define ITEM_SIZE ((size_t)1024 * 1024 - 1024)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static uint64_t hash_of(const char *key)
{
    return XXH3_64bits_withSeed(key, strlen(key), 0);
}

/* ---- log capture ------------------------------------------------------ */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[16384];
static size_t log_len;

static void test_log(int level, const char *msg)
{
    (void)level;
    pthread_mutex_lock(&log_lock);
    int n = snprintf(log_text + log_len, sizeof(log_text) - log_len, "%s\n", msg);
    if (n > 0 && (size_t)n < sizeof(log_text) - log_len)
        log_len += (size_t)n;
    pthread_mutex_unlock(&log_lock);
}

/* How many logged lines contain needle. */
static int log_count(const char *needle)
{
    int n = 0;
    pthread_mutex_lock(&log_lock);
    for (const char *p = log_text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    pthread_mutex_unlock(&log_lock);
    return n;
}

static void log_reset(void)
{
    pthread_mutex_lock(&log_lock);
    log_len = 0;
    log_text[0] = '\0';
    pthread_mutex_unlock(&log_lock);
}

/* ---- objects ---------------------------------------------------------- */

static unsigned char body_byte(int seed, size_t i)
{
    return (unsigned char)(seed * 31 + i * 7 + i / 251);
}

static struct cache_object *make_obj(const char *key, const char *secondary, const char *vary,
                                     size_t body_len, int seed)
{
    int64_t now = now_ms();
    struct cache_object_meta m = {
        .primary_key = key,
        .primary_len = strlen(key),
        .primary_hash = hash_of(key),
        .secondary_key = secondary,
        .secondary_len = strlen(secondary),
        .vary = vary,
        .vary_len = strlen(vary),
        .status = 200,
        .request_time = now,
        .response_time = now,
        .lifetime = 60000,
        .stored_at = now,
        .etag = "\"v1\"",
        .etag_len = 4,
    };
    static unsigned char buf[65536];
    struct cache_object_builder *b = cache_object_builder_new(&m, SIZE_MAX);
    assert_non_null(b);
    assert_true(cache_object_builder_set_head(b, "Content-Type: text/plain\r\n", 26));
    for (size_t off = 0; off < body_len; off += sizeof(buf)) {
        size_t n = body_len - off < sizeof(buf) ? body_len - off : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = body_byte(seed, off + i);
        assert_true(cache_object_builder_append(b, buf, n));
    }
    struct cache_object *obj = cache_object_builder_finish(&b);
    assert_non_null(obj);
    return obj;
}

static void expect_body(const struct cache_object *obj, size_t len, int seed)
{
    assert_int_equal(obj->body_len, len);
    size_t pos = 0;
    struct iovec iov[16];
    while (pos < len) {
        size_t n = cache_object_body_iov(obj, pos, iov, 16);
        assert_true(n > 0);
        for (size_t k = 0; k < n; k++) {
            const unsigned char *p = iov[k].iov_base;
            for (size_t i = 0; i < iov[k].iov_len; i++)
                if (p[i] != body_byte(seed, pos + i))
                    fail_msg("body differs at byte %zu", pos + i);
            pos += iov[k].iov_len;
        }
    }
}

/* ---- synchronous wrappers over the callbacks --------------------------- */

/* A purge log entry as read, copied out of the callback. */
struct entry_copy {
    uint64_t n;
    bool found;
    unsigned char *data;
    size_t len;
};

struct waiter {
    pthread_mutex_t m;
    pthread_cond_t c;
    int calls;
    enum mcstore_get_kind kind;
    struct cache_object *obj;
    char *vary;
    char why[128];
    bool acquired;
    /* purge log */
    bool ok, found;
    uint64_t n; /* append: the number taken; version: the version */
    struct entry_copy *entries;
    size_t count;
};

static void waiter_init(struct waiter *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->m, NULL);
    pthread_cond_init(&w->c, NULL);
}

static void waiter_clear(struct waiter *w)
{
    cache_object_release(&w->obj);
    free(w->vary);
    for (size_t i = 0; i < w->count; i++)
        free(w->entries[i].data);
    free(w->entries);
    pthread_mutex_destroy(&w->m);
    pthread_cond_destroy(&w->c);
}

static void on_get(void *ctx, struct mcstore_get_result *r)
{
    struct waiter *w = ctx;
    pthread_mutex_lock(&w->m);
    w->calls++;
    w->kind = r->kind;
    w->obj = r->obj;
    w->vary = r->vary;
    snprintf(w->why, sizeof(w->why), "%s", r->why ? r->why : "");
    pthread_cond_signal(&w->c);
    pthread_mutex_unlock(&w->m);
}

static void on_lock(void *ctx, bool acquired, const char *why)
{
    struct waiter *w = ctx;
    pthread_mutex_lock(&w->m);
    w->calls++;
    w->acquired = acquired;
    snprintf(w->why, sizeof(w->why), "%s", why ? why : "");
    pthread_cond_signal(&w->c);
    pthread_mutex_unlock(&w->m);
}

static void on_append(void *ctx, bool ok, uint64_t n, const char *why)
{
    struct waiter *w = ctx;
    pthread_mutex_lock(&w->m);
    w->calls++;
    w->ok = ok;
    w->n = n;
    snprintf(w->why, sizeof(w->why), "%s", why ? why : "");
    pthread_cond_signal(&w->c);
    pthread_mutex_unlock(&w->m);
}

static void on_version(void *ctx, bool ok, bool found, uint64_t version, const char *why)
{
    struct waiter *w = ctx;
    pthread_mutex_lock(&w->m);
    w->calls++;
    w->ok = ok;
    w->found = found;
    w->n = version;
    snprintf(w->why, sizeof(w->why), "%s", why ? why : "");
    pthread_cond_signal(&w->c);
    pthread_mutex_unlock(&w->m);
}

static void on_read(void *ctx, bool ok, const struct mcstore_log_entry *entries, size_t count,
                    const char *why)
{
    struct waiter *w = ctx;
    pthread_mutex_lock(&w->m);
    w->calls++;
    w->ok = ok;
    snprintf(w->why, sizeof(w->why), "%s", why ? why : "");
    if (count > 0) {
        w->entries = calloc(count, sizeof(*w->entries));
        assert_non_null(w->entries);
        w->count = count;
        for (size_t i = 0; i < count; i++) {
            w->entries[i].n = entries[i].n;
            w->entries[i].found = entries[i].found;
            w->entries[i].len = entries[i].len;
            if (entries[i].data) {
                w->entries[i].data = malloc(entries[i].len);
                assert_non_null(w->entries[i].data);
                memcpy(w->entries[i].data, entries[i].data, entries[i].len);
            }
        }
    }
    pthread_cond_signal(&w->c);
    pthread_mutex_unlock(&w->m);
}

static void waiter_wait(struct waiter *w, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&w->m);
    while (w->calls == 0)
        if (pthread_cond_timedwait(&w->c, &w->m, &ts) != 0)
            break;
    int calls = w->calls;
    pthread_mutex_unlock(&w->m);
    if (calls == 0)
        fail_msg("no callback within %d ms", timeout_ms);
}

/* One lookup, waited for.  The result is in *w (waiter_clear() it). */
static enum mcstore_get_kind get_sync(struct mcstore *st, const char *key, const char *secondary,
                                      struct waiter *w)
{
    waiter_init(w);
    assert_true(mcstore_get(st, key, strlen(key), hash_of(key), secondary, strlen(secondary),
                            now_ms(), on_get, w));
    waiter_wait(w, 5000);
    return w->kind;
}

/* Look up until something else than a miss comes back (a set is fire and
 * forget), within timeout_ms; returns the last kind. */
static enum mcstore_get_kind get_until(struct mcstore *st, const char *key, const char *secondary,
                                       struct waiter *w, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    for (;;) {
        enum mcstore_get_kind k = get_sync(st, key, secondary, w);
        if ((k != MC_MISS && k != MC_ERROR) || mono_ms() > end)
            return k;
        waiter_clear(w);
        sleep_ms(20);
    }
}

static bool lock_sync(struct mcstore *st, const char *key, uint64_t ttl_ms)
{
    struct waiter w;
    waiter_init(&w);
    assert_true(mcstore_lock(st, key, strlen(key), ttl_ms, on_lock, &w));
    waiter_wait(&w, 5000);
    bool acquired = w.acquired;
    assert_string_equal(w.why, "");
    waiter_clear(&w);
    return acquired;
}

/* One append, waited for: the number taken, or 0 when it failed (the
 * reason in why, which may be NULL). */
static uint64_t append_sync(struct mcstore *st, const void *rec, size_t len, char *why,
                            size_t whylen)
{
    struct waiter w;
    waiter_init(&w);
    assert_true(mcstore_log_append(st, rec, len, 0, on_append, &w));
    waiter_wait(&w, 5000);
    assert_int_equal(w.calls, 1);
    uint64_t n = w.ok ? w.n : 0;
    if (w.ok)
        assert_string_equal(w.why, "");
    else
        assert_string_not_equal(w.why, "");
    if (why)
        snprintf(why, whylen, "%s", w.why);
    waiter_clear(&w);
    return n;
}

/* mcstore_log_version(), waited for; the result in *w (waiter_clear() it). */
static void version_sync(struct mcstore *st, struct waiter *w)
{
    waiter_init(w);
    assert_true(mcstore_log_version(st, on_version, w));
    waiter_wait(w, 5000);
}

/* mcstore_log_read(), waited for; the result in *w (waiter_clear() it). */
static void read_sync(struct mcstore *st, uint64_t first, uint64_t last, struct waiter *w)
{
    waiter_init(w);
    assert_true(mcstore_log_read(st, first, last, on_read, w));
    waiter_wait(w, 5000);
    if (w->ok) {
        assert_int_equal(w->count, last - first + 1);
        for (size_t i = 0; i < w->count; i++) {
            assert_int_equal(w->entries[i].n, first + i);
            assert_true(w->entries[i].found == (w->entries[i].data != NULL));
        }
    }
}

/* Wait until the store has run every queued job (the last write may still
 * be running: callers poll for its effect). */
static void wait_idle(struct mcstore *st)
{
    int64_t end = mono_ms() + 10000;
    while (mcstore_pending(st) > 0 && mono_ms() < end)
        sleep_ms(5);
    assert_int_equal(mcstore_pending(st), 0);
}

static struct mcstore_server_stats server_stats(struct mcstore *st, size_t i)
{
    struct mcstore_server_stats out[4];
    size_t n;
    mcstore_stats(st, out, 4, &n);
    assert_true(i < n);
    return out[i];
}

/* ---- fixtures --------------------------------------------------------- */

struct fx {
    char prefix[32]; /* the purge log tests' own */
    struct tmpdir *td;
    struct proc *mc[3];
    int blackhole; /* a listening socket nobody accepts on, or -1 */
    struct mcstore *st;
    memcached_st *raw;
    long live_objects; /* cache_object_live_count() at setup */
    int64_t started;   /* mono_ms() at setup */
};

static struct mcstore_config config_for(const struct mcstore_server *servers, size_t n)
{
    struct mcstore_config cfg = {
        .servers = servers,
        .nservers = n,
        .prefix = PREFIX,
        .timeout_ms = TIMEOUT_MS,
        .retry_timeout_ms = 1000,
        .io_threads = 2,
        .item_size = ITEM_SIZE,
        .ttl_slack_ms = 1000,
        .log = test_log,
    };
    return cfg;
}

static struct mcstore *store_on(const int *ports, size_t n, const struct mcstore_config *base)
{
    struct mcstore_server servers[3];
    for (size_t i = 0; i < n; i++)
        servers[i] =
            (struct mcstore_server){.host = "127.0.0.1", .port = (unsigned)ports[i], .weight = 1};
    struct mcstore_config cfg = base ? *base : config_for(servers, n);
    cfg.servers = servers;
    cfg.nservers = n;
    char err[256] = "";
    struct mcstore *st = mcstore_new(&cfg, err, sizeof(err));
    if (!st)
        fail_msg("mcstore_new: %s", err);
    return st;
}

static memcached_st *raw_client(int port)
{
    memcached_st *raw = memcached_create(NULL);
    assert_non_null(raw);
    assert_int_equal(memcached_server_add(raw, "127.0.0.1", (in_port_t)port), MEMCACHED_SUCCESS);
    return raw;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->blackhole = -1;
    f->td = tmpdir_create("mcstore");
    if (!f->td)
        return -1;
    log_reset();
    f->live_objects = cache_object_live_count();
    f->started = mono_ms();
    *state = f;
    return 0;
}

/* setup plus one memcached, a store on it and a raw client. */
static int setup_one(void **state)
{
    if (setup(state) != 0)
        return -1;
    struct fx *f = *state;
    f->mc[0] = proc_start_memcached(f->td, "memcached0");
    if (!f->mc[0])
        return -1;
    f->st = store_on(&f->mc[0]->port, 1, NULL);
    f->raw = raw_client(f->mc[0]->port);
    return 0;
}

/* setup_one with a prefix of the test's own. */
static int setup_log(void **state)
{
    static atomic_int next;
    if (setup(state) != 0)
        return -1;
    struct fx *f = *state;
    snprintf(f->prefix, sizeof(f->prefix), "log%d.%d:", (int)getpid(), atomic_fetch_add(&next, 1));
    f->mc[0] = proc_start_memcached(f->td, "memcached0");
    if (!f->mc[0])
        return -1;
    struct mcstore_config cfg = config_for(NULL, 0);
    cfg.prefix = f->prefix;
    f->st = store_on(&f->mc[0]->port, 1, &cfg);
    f->raw = raw_client(f->mc[0]->port);
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (getenv("MCSTORE_TEST_VERBOSE"))
        fprintf(stderr, "--- %lld ms, log:\n%s", (long long)(mono_ms() - f->started), log_text);
    int64_t t0 = mono_ms();
    mcstore_free(&f->st);
    if (getenv("MCSTORE_TEST_VERBOSE"))
        fprintf(stderr, "--- free took %lld ms\n", (long long)(mono_ms() - t0));
    if (f->raw)
        memcached_free(f->raw);
    for (int i = 0; i < 3; i++) {
        /* memcached takes a second to shut down gracefully; nothing of
         * its is worth it (and SIGKILL ends a stopped one too). */
        if (f->mc[i])
            proc_signal(f->mc[i], SIGKILL);
        proc_free(&f->mc[i]);
    }
    if (getenv("MCSTORE_TEST_VERBOSE"))
        fprintf(stderr, "--- stop took %lld ms\n", (long long)(mono_ms() - t0));
    if (f->blackhole >= 0)
        close(f->blackhole);
    tmpdir_free(&f->td);
    long live = cache_object_live_count() - f->live_objects;
    free(f);
    if (live != 0) {
        fprintf(stderr, "%ld objects leaked\n", live);
        return -1;
    }
    return 0;
}

/* A loopback port that accepts connections (the kernel completes them)
 * and never answers: every call to it times out. */
static int blackhole_port(struct fx *f)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 64), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    f->blackhole = fd;
    return ntohs(a.sin_port);
}

static struct proc *start_memcached_on(struct tmpdir *td, const char *name, int port)
{
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    const char *as_root = geteuid() == 0 ? "-u" : NULL;
    const char *argv[] = {"memcached", "-l", "127.0.0.1", "-p",     p,
                          "-U",        "0",  as_root,     "nobody", NULL};
    struct proc *proc = proc_start(td, name, argv);
    assert_non_null(proc);
    assert_true(proc_wait_accepting(proc, port, PROC_START_TIMEOUT_MS));
    proc->port = port;
    return proc;
}

static size_t item_key(const char *primary, const char *secondary, unsigned index, char *out)
{
    size_t n = cache_codec_item_key(PREFIX, primary, strlen(primary), secondary, strlen(secondary),
                                    index, out, CACHE_CODEC_KEY_MAX + 1);
    assert_true(n > 0);
    return n;
}

static bool raw_exists(memcached_st *raw, const char *key, size_t klen)
{
    size_t len;
    uint32_t flags;
    memcached_return_t rc;
    char *v = memcached_get(raw, key, klen, &len, &flags, &rc);
    free(v);
    return rc == MEMCACHED_SUCCESS;
}

/* ---- round trips ------------------------------------------------------ */

static void roundtrip(struct fx *f, const char *key, size_t body_len, int seed)
{
    struct cache_object *obj = make_obj(key, "", "", body_len, seed);
    assert_true(mcstore_set(f->st, obj, now_ms()));
    struct waiter w;
    assert_int_equal(get_until(f->st, key, "", &w, 5000), MC_HIT);
    assert_null(w.vary);
    assert_int_equal(w.obj->status, 200);
    assert_int_equal(w.obj->primary_len, strlen(key));
    assert_memory_equal(w.obj->primary_key, key, strlen(key));
    assert_int_equal(w.obj->primary_hash, hash_of(key));
    assert_int_equal(w.obj->head_len, obj->head_len);
    assert_memory_equal(w.obj->head, obj->head, obj->head_len);
    assert_int_equal(w.obj->etag_len, 4);
    assert_int_equal(w.obj->lifetime, 60000);
    expect_body(w.obj, body_len, seed);
    waiter_clear(&w);
    cache_object_release(&obj);
}

static void test_roundtrip_small(void **state)
{
    struct fx *f = *state;
    roundtrip(f, "http://a.test/small", 100, 1);
    roundtrip(f, "http://a.test/empty", 0, 2);
    struct mcstore_server_stats s = server_stats(f->st, 0);
    assert_true(s.up);
    assert_true(s.hits >= 2);
    assert_true(s.sets >= 2);
    assert_int_equal(s.errors, 0);
    assert_int_equal(s.decode_errors, 0);
    assert_string_not_equal(s.name, "");
}

/* item 0 exactly item_size bytes: one item; one byte more: a chunk. */
static void test_roundtrip_exact_item_size(void **state)
{
    struct fx *f = *state;
    struct cache_object *probe = make_obj("http://a.test/exact", "", "", 0, 3);
    size_t overhead = cache_codec_overhead(probe);
    cache_object_release(&probe);
    assert_true(overhead < ITEM_SIZE);

    roundtrip(f, "http://a.test/exact", ITEM_SIZE - overhead, 3);
    char key[CACHE_CODEC_KEY_MAX + 1];
    size_t kl = item_key("http://a.test/exact", "", 1, key);
    assert_false(raw_exists(f->raw, key, kl));

    roundtrip(f, "http://a.test/exact+", ITEM_SIZE - overhead + 1, 4);
    wait_idle(f->st);
    assert_true(raw_exists(f->raw, key, item_key("http://a.test/exact+", "", 1, key)));
    assert_false(raw_exists(f->raw, key, item_key("http://a.test/exact+", "", 2, key)));
}

static void test_roundtrip_5mb_chunked(void **state)
{
    struct fx *f = *state;
    size_t len = (size_t)5 * 1024 * 1024 + 12345;
    roundtrip(f, "http://a.test/big", len, 5);
    char key[CACHE_CODEC_KEY_MAX + 1];
    assert_true(raw_exists(f->raw, key, item_key("http://a.test/big", "", 5, key)));
    assert_false(raw_exists(f->raw, key, item_key("http://a.test/big", "", 6, key)));
    assert_int_equal(server_stats(f->st, 0).sets, 6);
}

/* ---- Vary ------------------------------------------------------------- */

static void test_vary_index(void **state)
{
    struct fx *f = *state;
    const char *key = "http://a.test/vary";
    const char *sec = "accept-encoding=gzip\n";
    struct cache_object *obj = make_obj(key, sec, "Accept-Encoding", 3000, 6);
    assert_true(mcstore_set(f->st, obj, now_ms()));

    struct waiter w;
    assert_int_equal(get_until(f->st, key, "", &w, 5000), MC_VARY);
    assert_null(w.obj);
    assert_non_null(w.vary);
    assert_string_equal(w.vary, "Accept-Encoding");
    waiter_clear(&w);

    assert_int_equal(get_sync(f->st, key, sec, &w), MC_HIT);
    assert_int_equal(w.obj->secondary_len, strlen(sec));
    assert_memory_equal(w.obj->secondary_key, sec, strlen(sec));
    expect_body(w.obj, 3000, 6);
    waiter_clear(&w);

    /* another variant is not there */
    assert_int_equal(get_sync(f->st, key, "accept-encoding=br\n", &w), MC_MISS);
    assert_string_equal(w.why, "not found");
    waiter_clear(&w);
    assert_int_equal(server_stats(f->st, 0).vary_hits, 1);

    /* delete drops the index: the variant is orphaned, (primary, "") misses */
    assert_true(mcstore_delete(f->st, key, strlen(key)));
    wait_idle(f->st);
    int64_t end = mono_ms() + 2000;
    enum mcstore_get_kind k;
    do {
        k = get_sync(f->st, key, "", &w);
        waiter_clear(&w);
    } while (k != MC_MISS && mono_ms() < end);
    assert_int_equal(k, MC_MISS);
    cache_object_release(&obj);
}

/* ---- untrusted values ------------------------------------------------- */

static void test_missing_chunk(void **state)
{
    struct fx *f = *state;
    const char *key = "http://a.test/holes";
    struct cache_object *obj = make_obj(key, "", "", 3 * 1024 * 1024, 7);
    assert_true(mcstore_set(f->st, obj, now_ms()));
    struct waiter w;
    assert_int_equal(get_until(f->st, key, "", &w, 5000), MC_HIT);
    waiter_clear(&w);
    struct mcstore_server_stats before = server_stats(f->st, 0);

    char ck[CACHE_CODEC_KEY_MAX + 1];
    size_t kl = item_key(key, "", 2, ck);
    assert_int_equal(memcached_delete(f->raw, ck, kl, 0), MEMCACHED_SUCCESS);

    assert_int_equal(get_sync(f->st, key, "", &w), MC_MISS);
    assert_string_equal(w.why, "chunk missing");
    assert_null(w.obj);
    waiter_clear(&w);
    struct mcstore_server_stats s = server_stats(f->st, 0);
    assert_int_equal(s.missing_chunks, 1);
    assert_int_equal(s.misses, before.misses + 1);
    assert_int_equal(s.decode_errors, 0);
    cache_object_release(&obj);
}

static void plant(struct fx *f, const char *key, const char *secondary, const void *v, size_t len)
{
    char k[CACHE_CODEC_KEY_MAX + 1];
    size_t kl = item_key(key, secondary, 0, k);
    assert_int_equal(memcached_set(f->raw, k, kl, v, len, 0, 0), MEMCACHED_SUCCESS);
}

static void expect_bad(struct fx *f, const char *key, const char *secondary,
                       uint64_t *decode_errors)
{
    struct waiter w;
    assert_int_equal(get_sync(f->st, key, secondary, &w), MC_MISS);
    assert_null(w.obj);
    assert_null(w.vary);
    waiter_clear(&w);
    struct mcstore_server_stats s = server_stats(f->st, 0);
    assert_int_equal(s.decode_errors, ++*decode_errors);
}

static void test_corrupt_values(void **state)
{
    struct fx *f = *state;
    const char *key = "http://a.test/corrupt";
    uint64_t bad = 0;

    plant(f, key, "", "garbage, not an object", 22);
    expect_bad(f, key, "", &bad);
    plant(f, key, "", "TSR\x01\x00", 5); /* truncated object header */
    expect_bad(f, key, "", &bad);
    plant(f, key, "", "TSV\x01\xff\xff\xff\xff", 8); /* truncated Vary index */
    expect_bad(f, key, "", &bad);
    plant(f, key, "x", "TSV\x01", 4); /* a Vary index under a variant's key */
    expect_bad(f, key, "x", &bad);

    /* random bytes, a few sizes */
    unsigned char junk[4096];
    unsigned seed = 12345;
    for (int round = 0; round < 20; round++) {
        size_t len = 1 + (size_t)(rand_r(&seed) % sizeof(junk));
        for (size_t i = 0; i < len; i++)
            junk[i] = (unsigned char)rand_r(&seed);
        if (round % 2)
            memcpy(junk, "TSR\x01", len < 4 ? len : 4);
        plant(f, key, "", junk, len);
        expect_bad(f, key, "", &bad);
    }

    /* A valid Vary index and item 0 of another key (a collision) */
    const char *other = "http://a.test/other";
    struct cache_object *obj = make_obj(other, "v\n", "V", 10, 8);
    assert_true(mcstore_set(f->st, obj, now_ms()));
    struct waiter w;
    assert_int_equal(get_until(f->st, other, "v\n", &w, 5000), MC_HIT);
    waiter_clear(&w);
    wait_idle(f->st);
    assert_int_equal(get_until(f->st, other, "", &w, 5000), MC_VARY);
    waiter_clear(&w);
    bad = server_stats(f->st, 0).decode_errors;
    char k[CACHE_CODEC_KEY_MAX + 1];
    size_t len;
    uint32_t flags;
    memcached_return_t rc;
    for (int i = 0; i < 2; i++) {
        char *v =
            memcached_get(f->raw, k, item_key(other, i ? "" : "v\n", 0, k), &len, &flags, &rc);
        assert_non_null(v);
        plant(f, key, "", v, len);
        free(v);
        expect_bad(f, key, "", &bad);
    }
    cache_object_release(&obj);
}

/* ---- lock ------------------------------------------------------------- */

static void test_lock(void **state)
{
    struct fx *f = *state;
    const char *key = "http://a.test/locked";
    assert_true(lock_sync(f->st, key, 1000));
    assert_false(lock_sync(f->st, key, 1000));
    assert_true(mcstore_unlock(f->st, key, strlen(key)));
    wait_idle(f->st);
    int64_t end = mono_ms() + 2000;
    bool got;
    while (!(got = lock_sync(f->st, key, 1000)) && mono_ms() < end)
        sleep_ms(10);
    assert_true(got);
    /* and now it expires by itself (memcached counts whole seconds) */
    int64_t start = mono_ms();
    end = start + 4000;
    while (!(got = lock_sync(f->st, key, 1000)) && mono_ms() < end)
        sleep_ms(50);
    assert_true(got);
    assert_true(mono_ms() - start >= 500);
    struct mcstore_server_stats s = server_stats(f->st, 0);
    assert_true(s.locks >= 4);
    assert_true(s.locks_busy >= 2);
    /* the lock item is not the object: a lookup still misses */
    struct waiter w;
    assert_int_equal(get_sync(f->st, key, "", &w), MC_MISS);
    waiter_clear(&w);
}

/* ---- failures --------------------------------------------------------- */

static void test_down_at_start(void **state)
{
    struct fx *f = *state;
    int port = proc_free_port();
    assert_true(port > 0);
    f->st = store_on(&port, 1, NULL);

    const char *key = "http://a.test/later";
    struct waiter w;
    int64_t t0 = mono_ms();
    enum mcstore_get_kind k = get_sync(f->st, key, "", &w);
    int64_t took = mono_ms() - t0;
    assert_int_equal(k, MC_ERROR);
    assert_true(took <= 2 * TIMEOUT_MS);
    waiter_clear(&w);
    assert_int_equal(log_count("is down"), 1);
    assert_false(server_stats(f->st, 0).up);

    /* more lookups: fast misses, no new log line */
    for (int i = 0; i < 20; i++) {
        t0 = mono_ms();
        assert_int_not_equal(get_sync(f->st, key, "", &w), MC_HIT);
        assert_true(mono_ms() - t0 <= 2 * TIMEOUT_MS);
        waiter_clear(&w);
    }
    assert_int_equal(log_count("is down"), 1);

    /* the cluster lock fails open: the caller fetches itself */
    struct waiter lw;
    waiter_init(&lw);
    assert_true(mcstore_lock(f->st, key, strlen(key), 1000, on_lock, &lw));
    waiter_wait(&lw, 5000);
    assert_true(lw.acquired);
    assert_string_not_equal(lw.why, "");
    waiter_clear(&lw);

    f->mc[0] = start_memcached_on(f->td, "late", port);
    struct cache_object *obj = make_obj(key, "", "", 1000, 9);
    int64_t end = mono_ms() + 8000;
    do {
        mcstore_set(f->st, obj, now_ms());
        sleep_ms(100);
        k = get_sync(f->st, key, "", &w);
        waiter_clear(&w);
    } while (k != MC_HIT && mono_ms() < end);
    assert_int_equal(k, MC_HIT);
    assert_int_equal(log_count("is back"), 1);
    assert_int_equal(log_count("is down"), 1);
    assert_true(server_stats(f->st, 0).up);
    cache_object_release(&obj);
}

/* Three memcached servers and a store on them. */
static void start_three(struct fx *f, int ports[3])
{
    static const char *const names[] = {"memcached0", "memcached1", "memcached2"};
    for (int i = 0; i < 3; i++) {
        f->mc[i] = proc_start_memcached(f->td, names[i]);
        assert_non_null(f->mc[i]);
        ports[i] = f->mc[i]->port;
    }
    f->st = store_on(ports, 3, NULL);
}

struct stream {
    atomic_int calls;
    atomic_int hits;
    atomic_long max_latency;
};

struct stream_job {
    struct stream *s;
    int64_t submitted;
};

static void on_stream_get(void *ctx, struct mcstore_get_result *r)
{
    struct stream_job *j = ctx;
    long lat = (long)(mono_ms() - j->submitted);
    long old = atomic_load(&j->s->max_latency);
    while (lat > old && !atomic_compare_exchange_weak(&j->s->max_latency, &old, lat))
        ;
    if (r->kind == MC_HIT)
        atomic_fetch_add(&j->s->hits, 1);
    cache_object_release(&r->obj);
    free(r->vary);
    atomic_fetch_add(&j->s->calls, 1);
}

static void test_kill_one_of_three(void **state)
{
    struct fx *f = *state;
    int ports[3];
    start_three(f, ports);

    enum { N = 1000, KEYS = 100 };
    struct cache_object *objs[KEYS];
    char keys[KEYS][64];
    for (int i = 0; i < KEYS; i++) {
        snprintf(keys[i], sizeof(keys[i]), "http://a.test/k%d", i);
        objs[i] = make_obj(keys[i], "", "", 2000, i);
        assert_true(mcstore_set(f->st, objs[i], now_ms()));
    }
    wait_idle(f->st);
    sleep_ms(50); /* the last set may still be running */
    struct stream s = {0};
    struct stream_job *jobs = calloc(N, sizeof(*jobs));
    assert_non_null(jobs);
    int accepted = 0, dropped = 0;
    for (int i = 0; i < N; i++) {
        if (i == N / 2) {
            assert_int_equal(proc_signal(f->mc[1], SIGKILL), 0);
            assert_int_equal(proc_wait_exit(f->mc[1], 5000), 128 + SIGKILL);
        }
        if (!mcstore_set(f->st, objs[i % KEYS], now_ms()))
            dropped++;
        const char *key = keys[(i * 7) % KEYS];
        jobs[i] = (struct stream_job){.s = &s, .submitted = mono_ms()};
        if (mcstore_get(f->st, key, strlen(key), hash_of(key), "", 0, now_ms(), on_stream_get,
                        &jobs[i]))
            accepted++;
        if (i % 20 == 0)
            sleep_ms(2);
    }
    int64_t end = mono_ms() + 10000;
    while (atomic_load(&s.calls) < accepted && mono_ms() < end)
        sleep_ms(10);
    assert_int_equal(atomic_load(&s.calls), accepted);
    assert_int_equal(accepted, N);
    assert_int_equal(dropped, 0);
    assert_true(atomic_load(&s.hits) > N / 4);
    /* No lookup waited longer than a few timeouts, queueing included. */
    if (getenv("MCSTORE_TEST_VERBOSE"))
        fprintf(stderr, "kill: max lookup latency %ld ms, %d hits\n", atomic_load(&s.max_latency),
                atomic_load(&s.hits));
    if (atomic_load(&s.max_latency) > 5 * TIMEOUT_MS)
        fail_msg("a lookup took %ld ms", atomic_load(&s.max_latency));

    struct mcstore_server_stats st[3];
    size_t n;
    mcstore_stats(f->st, st, 3, &n);
    assert_int_equal(n, 3);
    assert_true(st[1].errors > 0);
    assert_false(st[1].up);
    assert_true(st[0].up && st[2].up);
    assert_int_equal(st[0].errors + st[2].errors, 0);
    /* the survivors took the dead server's keys */
    assert_true(st[0].gets + st[2].gets > st[1].gets);
    char needle[64];
    snprintf(needle, sizeof(needle), "127.0.0.1:%d is down", ports[1]);
    assert_int_equal(log_count(needle), 1);
    assert_int_equal(log_count("is down"), 1);

    /* every key still works through the survivors */
    wait_idle(f->st);
    for (int i = 0; i < KEYS; i += 10) {
        mcstore_set(f->st, objs[i], now_ms());
        struct waiter w;
        assert_int_equal(get_until(f->st, keys[i], "", &w, 3000), MC_HIT);
        expect_body(w.obj, 2000, i);
        waiter_clear(&w);
    }
    for (int i = 0; i < KEYS; i++)
        cache_object_release(&objs[i]);
    free(jobs);
}

/* A server that accepts connections and never answers (SIGSTOP): the first
 * call to it times out, then the store skips it until retry_timeout, so
 * lookups stay fast; after SIGCONT it is used again. */
static void test_hung_server(void **state)
{
    struct fx *f = *state;
    int ports[3];
    start_three(f, ports);
    enum { KEYS = 60, N = 600 };
    struct cache_object *objs[KEYS];
    char keys[KEYS][64];
    for (int i = 0; i < KEYS; i++) {
        snprintf(keys[i], sizeof(keys[i]), "http://a.test/h%d", i);
        objs[i] = make_obj(keys[i], "", "", 500, i);
        assert_true(mcstore_set(f->st, objs[i], now_ms()));
    }
    wait_idle(f->st);
    sleep_ms(50);

    assert_int_equal(proc_signal(f->mc[1], SIGSTOP), 0);
    struct stream s = {0};
    struct stream_job *jobs = calloc(N, sizeof(*jobs));
    assert_non_null(jobs);
    for (int i = 0; i < N; i++) {
        const char *key = keys[i % KEYS];
        jobs[i] = (struct stream_job){.s = &s, .submitted = mono_ms()};
        assert_true(mcstore_get(f->st, key, strlen(key), hash_of(key), "", 0, now_ms(),
                                on_stream_get, &jobs[i]));
        if (i % 10 == 0)
            sleep_ms(2);
    }
    int64_t end = mono_ms() + 10000;
    while (atomic_load(&s.calls) < N && mono_ms() < end)
        sleep_ms(10);
    assert_int_equal(atomic_load(&s.calls), N);
    /* One timeout per I/O thread at worst, plus a queue behind it. */
    if (getenv("MCSTORE_TEST_VERBOSE"))
        fprintf(stderr, "hung: max lookup latency %ld ms, %d hits\n", atomic_load(&s.max_latency),
                atomic_load(&s.hits));
    if (atomic_load(&s.max_latency) > 4 * TIMEOUT_MS)
        fail_msg("a lookup took %ld ms", atomic_load(&s.max_latency));
    struct mcstore_server_stats st1 = server_stats(f->st, 1);
    assert_true(st1.timeouts >= 1);
    assert_true(st1.errors > st1.timeouts); /* the skipped calls */
    assert_false(st1.up);
    assert_int_equal(server_stats(f->st, 0).errors + server_stats(f->st, 2).errors, 0);
    assert_int_equal(log_count("is down"), 1);
    /* every lookup the other servers got found its object */
    struct mcstore_server_stats st0 = server_stats(f->st, 0), st2 = server_stats(f->st, 2);
    assert_int_equal(st0.misses + st2.misses, 0);
    assert_int_equal(atomic_load(&s.hits), (int)(st0.hits + st2.hits));
    assert_int_equal(N - atomic_load(&s.hits), (int)st1.gets);

    /* back: once the skip ends, the server answers again */
    assert_int_equal(proc_signal(f->mc[1], SIGCONT), 0);
    end = mono_ms() + 5000;
    while (log_count("is back") == 0 && mono_ms() < end) {
        for (int i = 0; i < KEYS; i++) {
            struct waiter w;
            get_sync(f->st, keys[i], "", &w);
            waiter_clear(&w);
        }
        sleep_ms(50);
    }
    assert_int_equal(log_count("is back"), 1);
    assert_int_equal(log_count("is down"), 1);
    assert_true(server_stats(f->st, 1).up);
    for (int i = 0; i < KEYS; i++)
        cache_object_release(&objs[i]);
    free(jobs);
}

/* ---- queues ----------------------------------------------------------- */

static void test_queue_full(void **state)
{
    struct fx *f = *state;
    int port = blackhole_port(f);
    struct mcstore_server server = {.host = "127.0.0.1", .port = (unsigned)port};
    struct mcstore_config cfg = config_for(&server, 1);
    cfg.io_threads = 1;
    cfg.queue_max = 8;
    f->st = store_on(&port, 1, &cfg);

    struct cache_object *obj = make_obj("http://a.test/full", "", "", 10, 10);
    int refused = 0;
    for (int i = 0; i < 40; i++)
        if (!mcstore_set(f->st, obj, now_ms()))
            refused++;
    assert_true(refused >= 40 - 8 - 1);
    assert_int_equal(server_stats(f->st, 0).dropped_writes, (uint64_t)refused);

    /* the write queue being full does not refuse lookups */
    struct waiter w;
    waiter_init(&w);
    assert_true(mcstore_get(f->st, "http://a.test/full", 18, 1, "", 0, now_ms(), on_get, &w));
    waiter_wait(&w, 5000);
    assert_int_not_equal(w.kind, MC_HIT);
    waiter_clear(&w);
    cache_object_release(&obj);
}

struct order {
    struct mcstore *st;
    atomic_size_t pending_at_get;
    atomic_int calls;
};

static void on_order_get(void *ctx, struct mcstore_get_result *r)
{
    struct order *o = ctx;
    atomic_store(&o->pending_at_get, mcstore_pending(o->st));
    cache_object_release(&r->obj);
    free(r->vary);
    atomic_fetch_add(&o->calls, 1);
}

/* With the only I/O thread busy, queue writes then a lookup: the lookup
 * runs first, while every write still waits. */
static void test_reads_before_writes(void **state)
{
    struct fx *f = *state;
    int port = blackhole_port(f);
    struct mcstore_server server = {.host = "127.0.0.1", .port = (unsigned)port};
    struct mcstore_config cfg = config_for(&server, 1);
    cfg.io_threads = 1;
    f->st = store_on(&port, 1, &cfg);

    struct cache_object *obj = make_obj("http://a.test/order", "", "", 10, 11);
    for (int i = 0; i < 5; i++)
        assert_true(mcstore_set(f->st, obj, now_ms()));
    struct order o = {.st = f->st};
    assert_true(mcstore_get(f->st, "http://a.test/x", 15, 1, "", 0, now_ms(), on_order_get, &o));
    int64_t end = mono_ms() + 5000;
    while (atomic_load(&o.calls) == 0 && mono_ms() < end)
        sleep_ms(5);
    assert_int_equal(atomic_load(&o.calls), 1);
    /* The thread took one write before the lookup was queued (the probe or
     * a set may be running); the others were still queued. */
    assert_true(atomic_load(&o.pending_at_get) >= 4);
    cache_object_release(&obj);
}

struct counted {
    atomic_int calls[64];
};

static atomic_int shutdowns; /* callbacks that said "shutdown" */

static void on_counted_get(void *ctx, struct mcstore_get_result *r)
{
    atomic_int *slot = ctx;
    if (r->why && strcmp(r->why, "shutdown") == 0)
        atomic_fetch_add(&shutdowns, 1);
    atomic_fetch_add(slot, r->obj ? 100 : 1); /* nothing can be found here */
}

static void on_counted_lock(void *ctx, bool acquired, const char *why)
{
    atomic_int *slot = ctx;
    if (why && strcmp(why, "shutdown") == 0)
        atomic_fetch_add(&shutdowns, 1);
    if (acquired)
        atomic_fetch_add(slot, 1);
    else
        atomic_fetch_add(slot, 100); /* a lock cannot be "held" here */
}

static void test_free_with_pending(void **state)
{
    struct fx *f = *state;
    int port = blackhole_port(f);
    struct mcstore_server server = {.host = "127.0.0.1", .port = (unsigned)port};
    struct mcstore_config cfg = config_for(&server, 1);
    cfg.io_threads = 1;
    f->st = store_on(&port, 1, &cfg);

    struct counted c;
    for (int i = 0; i < 64; i++)
        atomic_init(&c.calls[i], 0);
    struct cache_object *obj = make_obj("http://a.test/pending", "", "", 10, 12);
    for (int i = 0; i < 64; i++) {
        char key[32];
        snprintf(key, sizeof(key), "http://a.test/p%d", i);
        if (i % 8 == 7)
            assert_true(mcstore_lock(f->st, key, strlen(key), 1000, on_counted_lock, &c.calls[i]));
        else
            assert_true(mcstore_get(f->st, key, strlen(key), 1, "", 0, now_ms(), on_counted_get,
                                    &c.calls[i]));
        assert_true(mcstore_set(f->st, obj, now_ms()));
    }
    atomic_store(&shutdowns, 0);
    int64_t t0 = mono_ms();
    mcstore_free(&f->st);
    assert_null(f->st);
    /* the I/O thread was still waiting for the startup probe to time out */
    assert_true(atomic_load(&shutdowns) > 0);
    assert_true(mono_ms() - t0 < 3 * TIMEOUT_MS + 500);
    for (int i = 0; i < 64; i++)
        if (atomic_load(&c.calls[i]) != 1)
            fail_msg("job %d called back %d times", i, atomic_load(&c.calls[i]));
    cache_object_release(&obj);
}

/* ---- purge log -------------------------------------------------------- */

/* The raw key of purge log entry n, or of the version for n 0. */
static size_t log_raw_key(const struct fx *f, uint64_t n, char *out, size_t len)
{
    int k = n ? snprintf(out, len, "%spurgelog:%llu", f->prefix, (unsigned long long)n)
              : snprintf(out, len, "%spurgelog:v", f->prefix);
    assert_true(k > 0 && (size_t)k < len);
    return (size_t)k;
}

static void raw_log_set(struct fx *f, uint64_t n, const char *v, size_t len)
{
    char k[256];
    size_t kl = log_raw_key(f, n, k, sizeof(k));
    assert_int_equal(memcached_set(f->raw, k, kl, v, len, 0, 0), MEMCACHED_SUCCESS);
}

static void expect_version(struct mcstore *st, bool found, uint64_t version, const char *why)
{
    struct waiter w;
    version_sync(st, &w);
    assert_true(w.ok);
    assert_true(w.found == found);
    assert_int_equal(w.n, version);
    assert_string_equal(w.why, why);
    waiter_clear(&w);
}

static void test_log_append_read(void **state)
{
    struct fx *f = *state;
    static unsigned char big[MCSTORE_LOG_RECORD_MAX];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = body_byte(3, i);
    const struct {
        const void *data;
        size_t len;
    } rec[3] = {
        {"purge http://a.test/one", 23},
        {"\0\x01\xff", 3}, /* any bytes */
        {big, sizeof(big)},
    };
    for (uint64_t i = 0; i < 3; i++)
        assert_int_equal(append_sync(f->st, rec[i].data, rec[i].len, NULL, 0), i + 1);
    expect_version(f->st, true, 3, "");

    struct waiter w;
    read_sync(f->st, 1, 3, &w);
    assert_true(w.ok);
    assert_string_equal(w.why, "");
    for (size_t i = 0; i < 3; i++) {
        assert_true(w.entries[i].found);
        assert_int_equal(w.entries[i].len, rec[i].len);
        assert_memory_equal(w.entries[i].data, rec[i].data, rec[i].len);
    }
    waiter_clear(&w);

    /* past the version: not written yet */
    read_sync(f->st, 3, 5, &w);
    assert_true(w.ok);
    assert_true(w.entries[0].found);
    assert_false(w.entries[1].found);
    assert_false(w.entries[2].found);
    assert_int_equal(w.entries[2].len, 0);
    waiter_clear(&w);

    /* the items are where the keys say, the version in decimal */
    char k[256];
    size_t len;
    uint32_t flags;
    memcached_return_t rc;
    char *v = memcached_get(f->raw, k, log_raw_key(f, 0, k, sizeof(k)), &len, &flags, &rc);
    assert_non_null(v);
    assert_int_equal(len, 1);
    assert_memory_equal(v, "3", 1);
    free(v);
    v = memcached_get(f->raw, k, log_raw_key(f, 1, k, sizeof(k)), &len, &flags, &rc);
    assert_non_null(v);
    assert_int_equal(len, 23);
    assert_int_equal(flags, 0);
    free(v);

    /* add "0" and 3 incrs; 3 entries.  1 + 3 + 3 entry reads. */
    struct mcstore_server_stats s = server_stats(f->st, 0);
    assert_int_equal(s.sets, 1 + 3 + 3);
    assert_int_equal(s.gets, 1 + 3 + 3);
    assert_int_equal(s.hits, 1 + 3 + 1);
    assert_int_equal(s.misses, 2);
    assert_int_equal(s.errors, 0);
    assert_int_equal(s.decode_errors, 0);
}

/* An entry that memcached lost is a hole; a lost version restarts the log. */
static void test_log_missing_entry(void **state)
{
    struct fx *f = *state;
    for (uint64_t i = 1; i <= 3; i++)
        assert_int_equal(append_sync(f->st, "purge", 5, NULL, 0), i);
    char k[256];
    size_t kl = log_raw_key(f, 2, k, sizeof(k));
    assert_int_equal(memcached_delete(f->raw, k, kl, 0), MEMCACHED_SUCCESS);

    struct mcstore_server_stats before = server_stats(f->st, 0);
    struct waiter w;
    read_sync(f->st, 1, 3, &w);
    assert_true(w.ok);
    assert_true(w.entries[0].found);
    assert_false(w.entries[1].found);
    assert_null(w.entries[1].data);
    assert_true(w.entries[2].found);
    waiter_clear(&w);
    struct mcstore_server_stats s = server_stats(f->st, 0);
    assert_int_equal(s.misses, before.misses + 1);
    assert_int_equal(s.hits, before.hits + 2);
    assert_int_equal(s.decode_errors, 0);

    /* memcached restarted (flush_all): no version; the next append is 1 */
    assert_int_equal(memcached_flush(f->raw, 0), MEMCACHED_SUCCESS);
    expect_version(f->st, false, 0, "not found");
    assert_int_equal(append_sync(f->st, "again", 5, NULL, 0), 1);
    expect_version(f->st, true, 1, "");
    read_sync(f->st, 1, 2, &w);
    assert_true(w.ok);
    assert_true(w.entries[0].found);
    assert_memory_equal(w.entries[0].data, "again", 5);
    assert_false(w.entries[1].found);
    waiter_clear(&w);
}

/* The version: absent on a fresh memcached, garbage is a decode error. */
static void test_log_version(void **state)
{
    struct fx *f = *state;
    expect_version(f->st, false, 0, "not found");
    struct mcstore_server_stats s = server_stats(f->st, 0);
    assert_int_equal(s.gets, 1);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.decode_errors, 0);

    raw_log_set(f, 0, "abc", 3);
    expect_version(f->st, false, 0, "not a decimal number");
    raw_log_set(f, 0, "", 0);
    expect_version(f->st, false, 0, "not a decimal number");
    raw_log_set(f, 0, "99999999999999999999", 20); /* past 2^64 */
    expect_version(f->st, false, 0, "not a decimal number");
    s = server_stats(f->st, 0);
    assert_int_equal(s.decode_errors, 3);
    assert_int_equal(s.misses, 4);
    assert_int_equal(s.errors, 0);

    /* an append cannot count on from garbage: it fails, nothing written */
    raw_log_set(f, 0, "abc", 3);
    char why[128];
    assert_int_equal(append_sync(f->st, "x", 1, why, sizeof(why)), 0);
    assert_string_equal(why, "version is not a decimal number");
    assert_int_equal(server_stats(f->st, 0).errors, 1);
    /* memcached answered: the server is not down (libmemcached reports
     * that answer as UNKNOWN READ FAILURE) */
    assert_true(server_stats(f->st, 0).up);
    assert_int_equal(log_count("is down"), 0);
    char k[256];
    assert_false(raw_exists(f->raw, k, log_raw_key(f, 1, k, sizeof(k))));

    /* the spaces memcached pads a shortened counter with */
    raw_log_set(f, 0, "41  ", 4);
    expect_version(f->st, true, 41, "");
    assert_int_equal(append_sync(f->st, "x", 1, NULL, 0), 42);
    expect_version(f->st, true, 42, "");
}

/* Callers' mistakes are refused at once; cb is never called for them. */
static void test_log_bad_args(void **state)
{
    struct fx *f = *state;
    static unsigned char big[MCSTORE_LOG_RECORD_MAX + 1];
    struct waiter w;
    waiter_init(&w);
    assert_false(mcstore_log_append(f->st, "", 0, 0, on_append, &w));
    assert_false(mcstore_log_append(f->st, big, sizeof(big), 0, on_append, &w));
    assert_false(mcstore_log_read(f->st, 1, MCSTORE_LOG_READ_MAX + 1, on_read, &w));
    assert_false(mcstore_log_read(f->st, 0, 5, on_read, &w));
    assert_false(mcstore_log_read(f->st, 5, 4, on_read, &w));
    assert_false(mcstore_log_read(f->st, 1, UINT64_MAX, on_read, &w));
    wait_idle(f->st);
    assert_int_equal(w.calls, 0);
    waiter_clear(&w);
    struct mcstore_server_stats s = server_stats(f->st, 0);
    assert_int_equal(s.gets + s.sets + s.dropped_reads, 0);

    /* the largest range, and the last numbers there are */
    read_sync(f->st, 1, MCSTORE_LOG_READ_MAX, &w);
    assert_true(w.ok);
    for (size_t i = 0; i < w.count; i++)
        assert_false(w.entries[i].found);
    waiter_clear(&w);
    raw_log_set(f, UINT64_MAX, "last", 4);
    read_sync(f->st, UINT64_MAX - MCSTORE_LOG_READ_MAX + 1, UINT64_MAX, &w);
    assert_true(w.ok);
    assert_true(w.entries[MCSTORE_LOG_READ_MAX - 1].found);
    assert_memory_equal(w.entries[MCSTORE_LOG_READ_MAX - 1].data, "last", 4);
    assert_false(w.entries[0].found);
    waiter_clear(&w);
}

enum { LOG_THREADS = 4, LOG_PER_THREAD = 50, LOG_TOTAL = LOG_THREADS * LOG_PER_THREAD };

struct log_race {
    struct mcstore *st[2];
    pthread_barrier_t start; /* the first appends collide: all find no version */
    atomic_int calls;
    atomic_int failed;
    atomic_int taken[LOG_TOTAL + 2]; /* times each n was handed out */
    atomic_int owner[LOG_TOTAL + 2]; /* the record id that got n */
};

struct log_race_job {
    struct log_race *r;
    int id; /* thread * 1000 + i */
};

static void on_race_append(void *ctx, bool ok, uint64_t n, const char *why)
{
    struct log_race_job *j = ctx;
    (void)why;
    if (!ok || n < 1 || n > LOG_TOTAL + 1)
        atomic_fetch_add(&j->r->failed, 1);
    else {
        atomic_fetch_add(&j->r->taken[n], 1);
        atomic_store(&j->r->owner[n], j->id);
    }
    atomic_fetch_add(&j->r->calls, 1);
}

struct log_race_thread {
    struct log_race *r;
    int t;
    struct log_race_job jobs[LOG_PER_THREAD];
};

static void *race_thread(void *arg)
{
    struct log_race_thread *th = arg;
    struct mcstore *st = th->r->st[th->t % 2];
    pthread_barrier_wait(&th->r->start);
    for (int i = 0; i < LOG_PER_THREAD; i++) {
        char rec[32];
        th->jobs[i] = (struct log_race_job){.r = th->r, .id = th->t * 1000 + i};
        int len = snprintf(rec, sizeof(rec), "purge %d", th->jobs[i].id);
        if (!mcstore_log_append(st, rec, (size_t)len, 60, on_race_append, &th->jobs[i]))
            atomic_fetch_add(&th->r->failed, 1);
    }
    return NULL;
}

/* Two nodes (stores) on three servers, four threads appending at once from
 * an empty log (so the creating add races too): every number 1..200 is
 * handed out exactly once, and every entry holds its own record. */
static void test_log_concurrent_appends(void **state)
{
    struct fx *f = *state;
    int ports[3];
    start_three(f, ports);
    static struct log_race r;
    memset(&r, 0, sizeof(r));
    r.st[0] = f->st;
    r.st[1] = store_on(ports, 3, NULL);
    assert_int_equal(pthread_barrier_init(&r.start, NULL, LOG_THREADS), 0);
    static struct log_race_thread th[LOG_THREADS];
    pthread_t tid[LOG_THREADS];
    for (int t = 0; t < LOG_THREADS; t++) {
        th[t] = (struct log_race_thread){.r = &r, .t = t};
        assert_int_equal(pthread_create(&tid[t], NULL, race_thread, &th[t]), 0);
    }
    for (int t = 0; t < LOG_THREADS; t++)
        pthread_join(tid[t], NULL);
    pthread_barrier_destroy(&r.start);
    int64_t end = mono_ms() + 10000;
    while (atomic_load(&r.calls) < LOG_TOTAL && mono_ms() < end)
        sleep_ms(5);
    assert_int_equal(atomic_load(&r.calls), LOG_TOTAL);
    assert_int_equal(atomic_load(&r.failed), 0);
    for (int n = 1; n <= LOG_TOTAL; n++)
        if (atomic_load(&r.taken[n]) != 1)
            fail_msg("n %d taken %d times", n, atomic_load(&r.taken[n]));
    assert_int_equal(atomic_load(&r.taken[LOG_TOTAL + 1]), 0);

    for (int i = 0; i < 2; i++) {
        expect_version(r.st[i], true, LOG_TOTAL, "");
        struct waiter w;
        read_sync(r.st[i], 1, LOG_TOTAL, &w);
        assert_true(w.ok);
        for (int n = 1; n <= LOG_TOTAL; n++) {
            char rec[32];
            int len = snprintf(rec, sizeof(rec), "purge %d", atomic_load(&r.owner[n]));
            assert_true(w.entries[n - 1].found);
            assert_int_equal(w.entries[n - 1].len, (size_t)len);
            assert_memory_equal(w.entries[n - 1].data, rec, (size_t)len);
        }
        waiter_clear(&w);
    }
    /* the entries are spread over the servers: one read, several mgets */
    int with_hits = 0;
    uint64_t hits = 0;
    for (size_t i = 0; i < 3; i++) {
        struct mcstore_server_stats s = server_stats(r.st[1], i);
        with_hits += s.hits > 0;
        hits += s.hits;
        assert_int_equal(s.errors, 0);
    }
    assert_int_equal(hits, LOG_TOTAL + 1);
    assert_true(with_hits >= 2);
    mcstore_free(&r.st[1]);
}

/* memcached down: every log call fails, fast. */
static void test_log_server_down(void **state)
{
    struct fx *f = *state;
    int port = proc_free_port();
    assert_true(port > 0);
    f->st = store_on(&port, 1, NULL);
    for (int round = 0; round < 3; round++) {
        int64_t t0 = mono_ms();
        char why[128];
        assert_int_equal(append_sync(f->st, "purge", 5, why, sizeof(why)), 0);
        assert_true(mono_ms() - t0 <= 2 * TIMEOUT_MS);

        struct waiter w;
        t0 = mono_ms();
        version_sync(f->st, &w);
        assert_false(w.ok);
        assert_false(w.found);
        assert_string_not_equal(w.why, "");
        assert_true(mono_ms() - t0 <= 2 * TIMEOUT_MS);
        waiter_clear(&w);

        read_sync(f->st, 1, 10, &w);
        assert_false(w.ok);
        assert_null(w.entries);
        assert_int_equal(w.count, 0);
        assert_string_not_equal(w.why, "");
        waiter_clear(&w);
    }
    struct mcstore_server_stats s = server_stats(f->st, 0);
    assert_false(s.up);
    assert_true(s.errors >= 9);
    assert_int_equal(s.sets + s.hits, 0);
    assert_int_equal(log_count("is down"), 1);
}

struct log_pending {
    atomic_int calls[3][20];
    atomic_int shutdowns;
    atomic_int succeeded;
};

static void count_log_cb(atomic_int *slot, struct log_pending *p, bool ok, const char *why)
{
    if (why && strcmp(why, "shutdown") == 0)
        atomic_fetch_add(&p->shutdowns, 1);
    if (ok)
        atomic_fetch_add(&p->succeeded, 1);
    atomic_fetch_add(slot, 1);
}

static struct log_pending *pending_of; /* the test's; one test at a time */

static void on_pending_append(void *ctx, bool ok, uint64_t n, const char *why)
{
    (void)n;
    count_log_cb(ctx, pending_of, ok, why);
}

static void on_pending_version(void *ctx, bool ok, bool found, uint64_t v, const char *why)
{
    (void)found;
    (void)v;
    count_log_cb(ctx, pending_of, ok, why);
}

static void on_pending_read(void *ctx, bool ok, const struct mcstore_log_entry *e, size_t count,
                            const char *why)
{
    if (e || count)
        atomic_fetch_add(&pending_of->succeeded, 100); /* not when ok is false */
    count_log_cb(ctx, pending_of, ok, why);
}

/* Log jobs still queued at mcstore_free() hear "shutdown", exactly once;
 * past queue_max they are refused and counted. */
static void test_log_free_with_pending(void **state)
{
    struct fx *f = *state;
    int port = blackhole_port(f);
    struct mcstore_server server = {.host = "127.0.0.1", .port = (unsigned)port};
    struct mcstore_config cfg = config_for(&server, 1);
    cfg.io_threads = 1;
    cfg.queue_max = 50;
    f->st = store_on(&port, 1, &cfg);

    static struct log_pending p;
    memset(&p, 0, sizeof(p));
    pending_of = &p;
    bool accepted[3][20];
    int refused = 0;
    for (int i = 0; i < 20; i++) {
        accepted[0][i] =
            mcstore_log_append(f->st, "purge", 5, 0, on_pending_append, &p.calls[0][i]);
        accepted[1][i] = mcstore_log_version(f->st, on_pending_version, &p.calls[1][i]);
        accepted[2][i] = mcstore_log_read(f->st, 1, 3, on_pending_read, &p.calls[2][i]);
        refused += !accepted[0][i] + !accepted[1][i] + !accepted[2][i];
    }
    /* 50 queued at most, and the I/O thread may have taken one or two */
    assert_true(refused >= 60 - 50 - 2 && refused <= 60 - 50);
    assert_int_equal(server_stats(f->st, 0).dropped_reads, (uint64_t)refused);
    int64_t t0 = mono_ms();
    mcstore_free(&f->st);
    assert_true(mono_ms() - t0 < 3 * TIMEOUT_MS + 500);
    assert_true(atomic_load(&p.shutdowns) > 0);
    assert_int_equal(atomic_load(&p.succeeded), 0);
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 20; i++)
            if (atomic_load(&p.calls[k][i]) != (accepted[k][i] ? 1 : 0))
                fail_msg("job %d/%d called back %d times", k, i, atomic_load(&p.calls[k][i]));
}

/* ---- pure parts ------------------------------------------------------- */

static void test_expiry(void **state)
{
    (void)state;
    int64_t now = 1700000000000;
    struct cache_object o = {
        .response_time = now,
        .lifetime = 60000,
    };
    assert_int_equal(mcstore_item_expiry(&o, now, 0), 60);
    assert_int_equal(mcstore_item_expiry(&o, now + 10000, 0), 50);
    assert_int_equal(mcstore_item_expiry(&o, now + 10001, 0), 50); /* rounded up */
    assert_int_equal(mcstore_item_expiry(&o, now, 5000), 65);
    o.stale_while_revalidate = 30000;
    o.stale_if_error = 100000;
    assert_int_equal(mcstore_item_expiry(&o, now, 0), 160); /* the longer window */
    o.corrected_initial_age = 20000;
    assert_int_equal(mcstore_item_expiry(&o, now, 0), 140);
    assert_int_equal(mcstore_item_expiry(&o, now + 10000000, 0), 1); /* long expired */
    o.lifetime = INT64_MAX;                                          /* no overflow */
    assert_int_equal(mcstore_item_expiry(&o, now, UINT64_MAX), MCSTORE_MAX_EXPIRY_S);
    o.lifetime = (int64_t)MCSTORE_MAX_EXPIRY_S * 1000 + 1; /* never an absolute time */
    o.stale_while_revalidate = o.stale_if_error = o.corrected_initial_age = 0;
    assert_int_equal(mcstore_item_expiry(&o, now, 0), MCSTORE_MAX_EXPIRY_S);
}

static void test_bad_config(void **state)
{
    (void)state;
    char err[256];
    struct mcstore_server s = {.host = "127.0.0.1", .port = 11211};
    struct mcstore_config cfg = config_for(&s, 1);
    cfg.nservers = 0;
    assert_null(mcstore_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "no server"));
    cfg = config_for(&s, 1);
    cfg.prefix = "has space";
    assert_null(mcstore_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "prefix"));
    struct mcstore_server bad = {.host = "127.0.0.1", .port = 70000};
    cfg = config_for(&bad, 1);
    assert_null(mcstore_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "port"));
    cfg = config_for(&s, 1);
    cfg.item_size = 100;
    assert_null(mcstore_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "item_size"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test_setup_teardown(test_roundtrip_small, setup_one, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_exact_item_size, setup_one, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_5mb_chunked, setup_one, teardown),
        cmocka_unit_test_setup_teardown(test_vary_index, setup_one, teardown),
        cmocka_unit_test_setup_teardown(test_missing_chunk, setup_one, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_values, setup_one, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup_one, teardown),
        cmocka_unit_test_setup_teardown(test_down_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_one_of_three, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hung_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_before_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_append_read, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_log_missing_entry, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_log_version, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_log_bad_args, setup_log, teardown),
        cmocka_unit_test_setup_teardown(test_log_concurrent_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_server_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_free_with_pending, setup, teardown),
    };
    return cmocka_run_group_tests_name("cache/mcstore", tests, NULL, NULL);
}
