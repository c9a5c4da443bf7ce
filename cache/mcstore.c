/*
 * cache/mcstore.c: the memcached tier (see mcstore.h).
 *
 * Threads: mcstore_new() starts io_threads I/O threads; each owns one
 * memcached_st (libmemcached handles are not thread-safe) and is the only
 * thread that ever touches it.  A job runs start to finish on one I/O
 * thread, callback included, so the blocking libmemcached calls never reach
 * the callers' threads.  I/O threads block every signal: signals are for
 * the main thread.
 *
 * Queue: one mutex and one condvar guard two FIFO lists, "reads" (lookups,
 * lock attempts and purge log calls, which someone waits for) and "writes"
 * (sets, deletes, unlocks, which nobody waits for).  An I/O thread always
 * takes a read first, so a burst of writes never delays a lookup; each
 * list holds at most queue_max jobs, so writes can never crowd lookups out
 * of the queue either.  The lock is held only to link and unlink jobs,
 * never across a libmemcached call or a callback.
 *
 * Servers: every memcached_st is set up the same way (setup_handle()):
 * binary protocol, weighted ketama, TCP_NODELAY, non-blocking I/O with
 * connect/poll/send/receive timeouts, and failed-server removal: after one
 * failure (SERVER_FAILURE_LIMIT 1) a server is taken out of the continuum,
 * so its keys map to the others, and retried after retry_timeout
 * (RETRY_TIMEOUT and DEAD_TIMEOUT, whole seconds).  Each handle learns
 * about failures on its own; the store keeps one shared up/down flag per
 * server, flipped with an atomic exchange, so a change is logged once
 * whichever thread sees it first.  Only fresh evidence flips it: an answer
 * (even "not found") means up, a connection failure or timeout means down;
 * libmemcached's remembered verdicts (SERVER_MARKED_DEAD, TEMPORARILY
 * DISABLED) change nothing, or a handle that has not retried yet would
 * report a server down again just after another saw it come back.
 * libmemcached removes a server only when connecting to it fails; one that
 * connects and then does not answer is skipped by the store itself after a
 * timeout (see timed_out()).
 *
 * References: a queued set holds its own reference to the object, released
 * once the items are written or the job is dropped.  A lookup hands the
 * callback the only reference to a freshly decoded object.
 *
 * Item formats: objects as cache/codec.h says; the Vary index, which is the
 * store's own, as
 *     "TSV" 0x01 | u32 primary length | primary key | u32 vary length | vary
 * (little-endian), checked byte for byte against the key looked up.  Its
 * magic differs from the codec's "TSR" and "TSC", so neither is mistaken
 * for the other.  Lock items hold "1"; only their existence matters.
 * Purge log items (see mcstore.h) are raw: the version is the decimal text
 * memcached's incr keeps (it may pad a value that got shorter with
 * spaces), an entry is the record's bytes.  Their keys, "purgelog:v" and
 * "purgelog:<n>" after the prefix, never collide with an object's, which
 * cache_codec_item_key() builds from a hash.
 */
#include "cache/mcstore_priv.h"

#include <assert.h>
#include <limits.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmemcached/memcached.h>

#include "cache/codec.h"
#include "cache/freshness.h"
#include "config/config.h"

#define VARY_MAGIC "TSV\x01"
#define VARY_MAGIC_LEN 4
#define MIN_ITEM_SIZE ((size_t)1024)
#define MAX_TIMEOUT_MS ((uint64_t)3600 * 1000)

/* ---- helpers ---------------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t mono_ms(void)
{
    return mono_ns() / 1000000;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* How long from now_ms obj stays worth keeping: until its age passes its
 * lifetime plus the longer stale window, plus slack.  Stale-while-
 * revalidate and stale-if-error are alternatives, not consecutive, so the
 * longer one bounds how long a stale copy can still serve. */
static int64_t keep_ms(const struct cache_object *obj, int64_t now_ms, uint64_t slack_ms)
{
    int64_t age = cache_current_age(obj->corrected_initial_age, obj->response_time, now_ms);
    int64_t window = obj->stale_while_revalidate > obj->stale_if_error ? obj->stale_while_revalidate
                                                                       : obj->stale_if_error;
    int64_t keep = sat_add(obj->lifetime > 0 ? obj->lifetime : 0, window > 0 ? window : 0);
    keep = sat_add(keep, age > 0 ? -age : 0);
    return sat_add(keep, slack_ms > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)slack_ms);
}

uint32_t mcstore_item_expiry(const struct cache_object *obj, int64_t now_ms, uint64_t slack_ms)
{
    int64_t keep = keep_ms(obj, now_ms, slack_ms);
    if (keep <= 1000)
        return 1;
    int64_t s = keep / 1000 + (keep % 1000 != 0);
    return s > MCSTORE_MAX_EXPIRY_S ? MCSTORE_MAX_EXPIRY_S : (uint32_t)s;
}

/* Whole seconds for a millisecond duration: rounded up, 1 .. 30 days. */
static uint32_t ms_to_expiry(uint64_t ms)
{
    uint64_t s = ms / 1000 + (ms % 1000 != 0);
    if (s < 1)
        return 1;
    return s > MCSTORE_MAX_EXPIRY_S ? MCSTORE_MAX_EXPIRY_S : (uint32_t)s;
}

/* What a libmemcached result says about the server that was asked. */
enum rc_verdict mc_rc_verdict(memcached_return_t rc)
{
    if (memcached_success(rc))
        return RC_ANSWERED;
    switch (rc) {
    case MEMCACHED_NOTFOUND:
    case MEMCACHED_NOTSTORED:
    case MEMCACHED_DATA_EXISTS:
    case MEMCACHED_DATA_DOES_NOT_EXIST:
        return RC_ANSWERED;
    case MEMCACHED_E2BIG:
    case MEMCACHED_SERVER_ERROR:
    case MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE:
    case MEMCACHED_CLIENT_ERROR:
    case MEMCACHED_PROTOCOL_ERROR:
        return RC_ANSWER_ERROR;
    case MEMCACHED_SERVER_MARKED_DEAD:
    case MEMCACHED_SERVER_TEMPORARILY_DISABLED:
    case MEMCACHED_NO_SERVERS:
    case MEMCACHED_ERROR: /* also CONNECTION_SOCKET_CREATE_FAILURE: ambiguous */
    case MEMCACHED_BAD_KEY_PROVIDED:
    case MEMCACHED_NO_KEY_PROVIDED:
    case MEMCACHED_KEY_TOO_BIG:
    case MEMCACHED_INVALID_ARGUMENTS:
    case MEMCACHED_MEMORY_ALLOCATION_FAILURE:
    case MEMCACHED_NOT_SUPPORTED:
    case MEMCACHED_DEPRECATED:
    case MEMCACHED_INVALID_HOST_PROTOCOL:
        return RC_NO_NEWS;
    default:
        return RC_DOWN;
    }
}

static void store_log(struct mcstore *st, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void store_log(struct mcstore *st, int level, const char *fmt, ...)
{
    if (!st->log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    st->log(level, msg);
}

/* Set a server's shared state from a call that started at since_ns; the
 * thread that changes it logs the change.  Evidence older than the last
 * change is ignored: an answer read just before a server died, but noted
 * just after another thread saw it die, must not report it back (and then
 * down again).  The lock is taken only when the state would change. */
void mc_server_mark(struct mcstore *st, struct mc_server *s, bool up, const char *why,
                    int64_t since_ns)
{
    if (atomic_load_explicit(&s->up, memory_order_relaxed) == up)
        return;
    pthread_mutex_lock(&st->state_lock);
    if (atomic_load_explicit(&s->up, memory_order_relaxed) != up && since_ns > s->changed_ns) {
        atomic_store(&s->up, up);
        s->changed_ns = mono_ns();
        /* Logged under the lock, so that lines come in the order of the
         * changes. */
        if (up) {
            atomic_fetch_add(&st->back_generation, 1);
            store_log(st, LOG_INFO, "memcached %s is back", s->name);
        } else
            store_log(st, LOG_ERROR, "memcached %s is down (%s)", s->name, why);
    }
    pthread_mutex_unlock(&st->state_lock);
}

/* libmemcached removes a server only when connecting to it fails; one that
 * accepts connections and then does not answer (hung, stopped, overloaded)
 * would cost every call mapped to it a full timeout, forever.  So a timeout
 * makes the store skip the server itself, failing its calls at once, for
 * retry_timeout; then the next call tries it again.  Its keys are misses
 * meanwhile (libmemcached does not remap them).  libmemcached also keeps
 * reading a connection after a timeout, so a late answer would be taken for
 * the next call's: the handle's connections are dropped (memcached_quit()
 * closes only connected servers, which resets nothing a dead one needs). */
static void timed_out(struct mc_worker *w, struct mc_server *s)
{
    COUNT(s, timeouts);
    atomic_store_explicit(&s->skip_until_ms, mono_ms() + (int64_t)w->store->retry_ms,
                          memory_order_relaxed);
    memcached_quit(w->mc);
}

/* True when calls to s are being skipped after a timeout (counted as an
 * error of the call). */
bool mc_skip_server(struct mc_server *s)
{
    int64_t until = atomic_load_explicit(&s->skip_until_ms, memory_order_relaxed);
    if (until == 0 || mono_ms() >= until)
        return false;
    COUNT(s, errors);
    return true;
}

/* Count the result of the call just made to server s (started when
 * mc_server_of() was called) and update its state.  Returns true when the
 * server answered (whatever the answer). */
bool mc_note_rc(struct mc_worker *w, struct mc_server *s, memcached_return_t rc)
{
    switch (mc_rc_verdict(rc)) {
    case RC_ANSWERED:
        mc_server_mark(w->store, s, true, NULL, w->op_start_ns);
        return true;
    case RC_ANSWER_ERROR:
        COUNT(s, errors);
        mc_server_mark(w->store, s, true, NULL, w->op_start_ns);
        return true;
    case RC_DOWN:
        COUNT(s, errors);
        if (rc == MEMCACHED_TIMEOUT)
            timed_out(w, s);
        mc_server_mark(w->store, s, false, memcached_strerror(w->mc, rc), w->op_start_ns);
        return false;
    case RC_NO_NEWS:
        COUNT(s, errors);
        return false;
    }
    return false;
}

/* The server a key goes to on this handle: the continuum is rebuilt first
 * (as the next call would) when a removed server is due for a retry.  Called
 * just before each call, it also notes when the call starts. */
struct mc_server *mc_server_of(struct mc_worker *w, const char *key, size_t klen)
{
    struct mcstore *st = w->store;
    w->op_start_ns = mono_ns();
    memcached_autoeject(w->mc);
    uint32_t i = memcached_generate_hash(w->mc, key, klen);
    return &st->servers[i < st->nservers ? i : 0];
}

/* ---- lookups ---------------------------------------------------------- */

static bool is_vary_item(const char *v, size_t len)
{
    return len >= VARY_MAGIC_LEN && memcmp(v, VARY_MAGIC, VARY_MAGIC_LEN) == 0;
}

/* Parse a Vary index item for primary key p/plen; the Vary value's slice
 * in *vary.  False when it is malformed or belongs to another key. */
static bool parse_vary_item(const char *v, size_t len, const char *p, size_t plen,
                            const char **vary, size_t *vary_len, const char **why)
{
    const unsigned char *u = (const unsigned char *)v;
    size_t off = VARY_MAGIC_LEN;
    if (len - off < 4) {
        *why = "vary index truncated";
        return false;
    }
    size_t kl = get_u32(u + off);
    off += 4;
    if (kl > len - off || len - off - kl < 4) {
        *why = "vary index truncated";
        return false;
    }
    if (kl != plen || memcmp(v + off, p, plen) != 0) {
        *why = "key mismatch";
        return false;
    }
    off += kl;
    size_t vl = get_u32(u + off);
    off += 4;
    if (vl != len - off || vl == 0) {
        *why = "vary index length mismatch";
        return false;
    }
    *vary = v + off;
    *vary_len = vl;
    return true;
}

/* The decimal number after the last ':' of key k/kl, in *num.  False when
 * there is none, or it overflows. */
static bool key_number(const char *k, size_t kl, uint64_t *num)
{
    const char *colon = memrchr(k, ':', kl);
    if (!colon || colon + 1 == k + kl)
        return false;
    uint64_t v = 0;
    for (const char *d = colon + 1; d < k + kl; d++) {
        if (*d < '0' || *d > '9' || v > (UINT64_MAX - (uint64_t)(*d - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(*d - '0');
    }
    *num = v;
    return true;
}

/* Fetch keys[0..n-1] with one multi-get (libmemcached sends one request per
 * server) into views[1..n] (malloc'd values; NULL data when missing).  Key
 * i ends in ":" and the number base + i + 1, which finds its slot; the
 * whole key is then checked.  Returns the multi-get's result: a failure
 * means some values may be missing because a server failed, not because
 * memcached lost them. */
memcached_return_t mc_mget_views(struct mc_worker *w, const char *const *keys, const size_t *lens,
                                 size_t n, uint64_t base, struct cache_codec_view *views)
{
    struct mcstore *st = w->store;
    memcached_result_st result;
    memcached_return_t rc = memcached_mget(w->mc, keys, lens, n);
    if (!memcached_result_create(w->mc, &result))
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    /* Drain every answer even after a failure: what is left unread on a
     * connection would be taken for the answer to the next call. */
    memcached_return_t frc;
    memcached_result_st *r;
    while ((r = memcached_fetch_result(w->mc, &result, &frc)) != NULL) {
        const char *k = memcached_result_key_value(r);
        size_t kl = memcached_result_key_length(r);
        uint64_t num;
        if (!key_number(k, kl, &num) || num <= base || num - base > n)
            continue;
        size_t i = (size_t)(num - base);
        if (views[i].data || lens[i - 1] != kl || memcmp(keys[i - 1], k, kl) != 0)
            continue;
        size_t vl = memcached_result_length(r);
        if (vl == 0) {
            views[i].data = ""; /* present but empty: the caller rejects it */
            views[i].len = 0;
            continue;
        }
        char *v = memcached_result_take_value(r);
        if (!v) {
            rc = MEMCACHED_MEMORY_ALLOCATION_FAILURE;
            continue;
        }
        views[i].data = v;
        views[i].len = vl;
    }
    if (memcached_success(rc) && frc != MEMCACHED_END && frc != MEMCACHED_NOTFOUND &&
        memcached_failed(frc))
        rc = frc;
    if (rc == MEMCACHED_TIMEOUT) {
        /* Skip the servers that did not answer, as timed_out() does.  Which
         * they are is not known: those of the missing values are taken. */
        int64_t until = mono_ms() + (int64_t)st->retry_ms;
        for (size_t i = 0; i < n; i++)
            if (!views[i + 1].data)
                atomic_store_explicit(&mc_server_of(w, keys[i], lens[i])->skip_until_ms, until,
                                      memory_order_relaxed);
        memcached_quit(w->mc);
    }
    memcached_result_free(&result);
    return rc;
}

/* Fetch chunk items 1..n of the job's object with one multi-get into
 * views[1..n] (see mc_mget_views()).  When a chunk's server is being skipped
 * nothing is fetched: *skipped is set. */
static memcached_return_t fetch_chunks(struct mc_worker *w, const struct mc_job *job, uint32_t n,
                                       struct cache_codec_view *views, bool *skipped)
{
    struct mcstore *st = w->store;
    char *keybuf = malloc((size_t)n * (CACHE_CODEC_KEY_MAX + 1));
    const char **keys = malloc((size_t)n * sizeof(*keys));
    size_t *lens = malloc((size_t)n * sizeof(*lens));
    memcached_return_t rc = MEMCACHED_MEMORY_ALLOCATION_FAILURE;

    if (!keybuf || !keys || !lens)
        goto done;
    for (uint32_t i = 0; i < n; i++) {
        char *k = keybuf + (size_t)i * (CACHE_CODEC_KEY_MAX + 1);
        lens[i] = cache_codec_item_key(st->prefix, job->primary, job->plen, job->secondary,
                                       job->slen, i + 1, k, CACHE_CODEC_KEY_MAX + 1);
        keys[i] = k;
        if (mc_skip_server(mc_server_of(w, k, lens[i]))) {
            *skipped = true;
            rc = MEMCACHED_TIMEOUT;
            goto done;
        }
    }
    rc = mc_mget_views(w, keys, lens, n, 0, views);

done:
    free(keybuf);
    free(keys);
    free(lens);
    return rc;
}

void mc_free_views(struct cache_codec_view *views, size_t n)
{
    if (!views)
        return;
    for (size_t i = 1; i < n; i++)
        if (views[i].data && views[i].len > 0)
            free((void *)views[i].data);
    free(views);
}

static void run_get(struct mc_worker *w, struct mc_job *job)
{
    struct mcstore *st = w->store;
    struct mcstore_get_result res = {.kind = MC_MISS};
    struct cache_codec_view *views = NULL;
    size_t nviews = 0;
    char key[KEYBUF];
    size_t vlen = 0;
    uint32_t flags = 0;
    memcached_return_t rc;
    char *val = NULL;

    w->why[0] = '\0';
    size_t klen = cache_codec_item_key(st->prefix, job->primary, job->plen, job->secondary,
                                       job->slen, 0, key, sizeof(key));
    struct mc_server *s = mc_server_of(w, key, klen);
    COUNT(s, gets);
    if (mc_skip_server(s)) {
        res.kind = MC_ERROR;
        res.why = SKIPPED;
        goto done;
    }
    val = memcached_get(w->mc, key, klen, &vlen, &flags, &rc);
    mc_note_rc(w, s, rc);

    if (!val && rc == MEMCACHED_NOTFOUND) {
        res.why = "not found";
        goto miss;
    }
    if (!val && !memcached_success(rc)) {
        res.kind = MC_ERROR;
        res.why = memcached_strerror(w->mc, rc);
        goto done;
    }
    if (!val) { /* an empty value: nothing we write */
        res.why = "empty value";
        goto bad;
    }

    if (is_vary_item(val, vlen)) {
        const char *vary;
        size_t vary_len;
        if (job->slen > 0) {
            res.why = "vary index under a variant's key";
            goto bad;
        }
        if (!parse_vary_item(val, vlen, job->primary, job->plen, &vary, &vary_len, &res.why))
            goto bad;
        res.vary = malloc(vary_len + 1);
        if (!res.vary) {
            res.kind = MC_ERROR;
            res.why = "out of memory";
            goto done;
        }
        memcpy(res.vary, vary, vary_len);
        res.vary[vary_len] = '\0';
        res.vary_len = vary_len;
        res.kind = MC_VARY;
        COUNT(s, vary_hits);
        goto done;
    }

    struct cache_codec_header hdr;
    if (!cache_codec_peek(val, vlen, &hdr, w->why, sizeof(w->why))) {
        res.why = w->why;
        goto bad;
    }
    /* Check the keys before fetching any chunk: a collision costs nothing. */
    if (hdr.primary_len != job->plen || memcmp(hdr.primary_key, job->primary, job->plen) != 0 ||
        hdr.secondary_len != job->slen ||
        (job->slen && memcmp(hdr.secondary_key, job->secondary, job->slen) != 0)) {
        res.why = "key mismatch";
        goto bad;
    }
    if (hdr.body_len > st->max_body) {
        res.why = "body larger than max_body";
        goto miss;
    }
    nviews = (size_t)hdr.nchunks + 1;
    views = calloc(nviews, sizeof(*views));
    if (!views) {
        res.kind = MC_ERROR;
        res.why = "out of memory";
        goto done;
    }
    views[0].data = val;
    views[0].len = vlen;
    if (hdr.nchunks > 0) {
        bool skipped = false;
        rc = fetch_chunks(w, job, hdr.nchunks, views, &skipped);
        if (skipped) {
            res.kind = MC_ERROR;
            res.why = SKIPPED;
            goto done;
        }
        for (size_t i = 1; i < nviews; i++) {
            if (views[i].data)
                continue;
            if (memcached_failed(rc)) {
                /* Counted on item 0's server: the chunk's may differ. */
                COUNT(s, errors);
                if (rc == MEMCACHED_TIMEOUT)
                    COUNT(s, timeouts);
                res.kind = MC_ERROR;
                res.why = memcached_strerror(w->mc, rc);
                goto done;
            }
            /* memcached evicts items one by one: a lost chunk is an
             * ordinary miss, not corruption. */
            COUNT(s, missing_chunks);
            res.why = "chunk missing";
            goto miss;
        }
    }
    struct cache_object *obj = cache_codec_decode(views, nviews, job->primary, job->plen, job->arg,
                                                  st->max_body, w->why, sizeof(w->why));
    if (!obj) {
        res.why = w->why;
        if (strcmp(w->why, "out of memory") == 0) {
            res.kind = MC_ERROR;
            goto done;
        }
        goto bad;
    }
    if (keep_ms(obj, job->now_ms, st->ttl_slack_ms) <= 0) {
        cache_object_release(&obj);
        res.why = "expired";
        goto miss;
    }
    res.kind = MC_HIT;
    res.obj = obj;
    COUNT(s, hits);
    goto done;

bad:
    COUNT(s, decode_errors);
miss:
    res.kind = MC_MISS;
    COUNT(s, misses);
done:
    /* Free what was fetched before calling back: the callee may be slow. */
    mc_free_views(views, nviews);
    free(val);
    job->get_cb(job->ctx, &res);
}

/* ---- writes ----------------------------------------------------------- */

/* memcached_set one item; counted on its server.  NULL when stored, else
 * why it was not. */
const char *mc_put_item(struct mc_worker *w, const char *key, size_t klen, const void *data,
                        size_t len, uint32_t expiry)
{
    struct mc_server *s = mc_server_of(w, key, klen);
    if (mc_skip_server(s))
        return SKIPPED;
    memcached_return_t rc = memcached_set(w->mc, key, klen, data, len, (time_t)expiry, 0);
    if (!mc_note_rc(w, s, rc) || !memcached_success(rc)) {
        if (mc_rc_verdict(rc) == RC_ANSWERED) /* answered, yet not stored */
            COUNT(s, errors);
        return memcached_strerror(w->mc, rc);
    }
    COUNT(s, sets);
    return NULL;
}

static bool set_item(struct mc_worker *w, const char *key, size_t klen, const void *data,
                     size_t len, uint32_t expiry)
{
    return mc_put_item(w, key, klen, data, len, expiry) == NULL;
}

static void run_set(struct mc_worker *w, struct mc_job *job)
{
    struct mcstore *st = w->store;
    const struct cache_object *obj = job->obj;
    struct cache_codec_items items = {0};
    char key[KEYBUF];
    unsigned char *vitem = NULL;

    if (!cache_codec_encode(obj, st->item_size, &items)) {
        /* Too many chunks for the item size, or out of memory: a write
         * that failed, counted on item 0's server. */
        size_t klen =
            cache_codec_item_key(st->prefix, obj->primary_key, obj->primary_len, obj->secondary_key,
                                 obj->secondary_len, 0, key, sizeof(key));
        COUNT(mc_server_of(w, key, klen), errors);
        return;
    }
    uint32_t expiry = mcstore_item_expiry(obj, job->now_ms, st->ttl_slack_ms);

    /* Chunks first, item 0 last: a reader that finds item 0 finds its
     * chunks (until memcached evicts one, which the reader sees). */
    for (size_t i = items.n; i-- > 0;) {
        size_t klen =
            cache_codec_item_key(st->prefix, obj->primary_key, obj->primary_len, obj->secondary_key,
                                 obj->secondary_len, (unsigned)i, key, sizeof(key));
        if (!set_item(w, key, klen, items.item[i].data, items.item[i].len, expiry))
            goto done;
    }

    /* The Vary index last, so it never announces a variant not yet
     * stored.  An empty secondary key (a Vary listing no field) means the
     * object itself is under (primary, ""): no index then. */
    if (obj->vary_len > 0 && obj->secondary_len > 0) {
        size_t len = VARY_MAGIC_LEN + 4 + obj->primary_len + 4 + obj->vary_len;
        vitem = malloc(len);
        if (!vitem)
            goto done;
        unsigned char *p = vitem;
        memcpy(p, VARY_MAGIC, VARY_MAGIC_LEN);
        p += VARY_MAGIC_LEN;
        put_u32(p, (uint32_t)obj->primary_len);
        p += 4;
        memcpy(p, obj->primary_key, obj->primary_len);
        p += obj->primary_len;
        put_u32(p, (uint32_t)obj->vary_len);
        p += 4;
        memcpy(p, obj->vary, obj->vary_len);
        size_t klen = cache_codec_item_key(st->prefix, obj->primary_key, obj->primary_len, NULL, 0,
                                           0, key, sizeof(key));
        set_item(w, key, klen, vitem, len, expiry);
    }

done:
    free(vitem);
    cache_codec_items_clear(&items);
}

/* The lock item's key: item 0's key of (primary, "") plus ":lock". */
static size_t lock_key(const struct mcstore *st, const struct mc_job *job, char *key)
{
    size_t klen =
        cache_codec_item_key(st->prefix, job->primary, job->plen, NULL, 0, 0, key, KEYBUF);
    memcpy(key + klen, LOCK_SUFFIX, sizeof(LOCK_SUFFIX));
    return klen + sizeof(LOCK_SUFFIX) - 1;
}

static void delete_item(struct mc_worker *w, const char *key, size_t klen)
{
    struct mc_server *s = mc_server_of(w, key, klen);
    if (mc_skip_server(s))
        return;
    memcached_return_t rc = memcached_delete(w->mc, key, klen, 0);
    if (mc_note_rc(w, s, rc))
        COUNT(s, deletes);
}

static void run_delete(struct mc_worker *w, struct mc_job *job)
{
    char key[KEYBUF];
    size_t klen = cache_codec_item_key(w->store->prefix, job->primary, job->plen, NULL, 0, 0, key,
                                       sizeof(key));
    delete_item(w, key, klen);
}

static void run_unlock(struct mc_worker *w, struct mc_job *job)
{
    char key[KEYBUF];
    size_t klen = lock_key(w->store, job, key);
    delete_item(w, key, klen);
}

static void run_lock(struct mc_worker *w, struct mc_job *job)
{
    char key[KEYBUF];
    size_t klen = lock_key(w->store, job, key);
    struct mc_server *s = mc_server_of(w, key, klen);
    COUNT(s, locks);
    if (mc_skip_server(s)) {
        job->lock_cb(job->ctx, true, SKIPPED);
        return;
    }
    memcached_return_t rc =
        memcached_add(w->mc, key, klen, "1", 1, (time_t)ms_to_expiry(job->arg), 0);
    mc_note_rc(w, s, rc);
    if (memcached_success(rc)) {
        job->lock_cb(job->ctx, true, NULL);
    } else if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS) {
        COUNT(s, locks_busy);
        job->lock_cb(job->ctx, false, NULL);
    } else {
        /* Fail open: better one more upstream fetch than a wait for a
         * fetch that nobody makes. */
        job->lock_cb(job->ctx, true, memcached_strerror(w->mc, rc));
    }
}

/* ---- jobs and queue --------------------------------------------------- */

struct mc_job *mc_job_new(enum mc_job_kind kind, const char *primary, size_t plen,
                          const char *secondary, size_t slen)
{
    struct mc_job *job = malloc(sizeof(*job) + plen + 1 + slen + 1);
    if (!job)
        return NULL;
    memset(job, 0, sizeof(*job));
    job->kind = kind;
    memcpy(job->keys, primary, plen);
    job->keys[plen] = '\0';
    if (slen)
        memcpy(job->keys + plen + 1, secondary, slen);
    job->keys[plen + 1 + slen] = '\0';
    job->primary = job->keys;
    job->plen = plen;
    job->secondary = job->keys + plen + 1;
    job->slen = slen;
    return job;
}

static void job_free(struct mc_job *job)
{
    if (job->obj)
        cache_object_release(&job->obj);
    free(job);
}

static int job_queue(const struct mc_job *job)
{
    switch (job->kind) {
    case JOB_GET:
    case JOB_LOCK:
    case JOB_LOG_APPEND: /* small and rare, and someone waits for it */
    case JOB_LOG_VERSION:
    case JOB_LOG_READ:
        return Q_READ;
    case JOB_SET:
    case JOB_DELETE:
    case JOB_UNLOCK:
        break;
    }
    return Q_WRITE;
}

/* Count a job refused for a full queue on the server its item 0 (a log
 * job: the version, or entry first) maps to with every server up, then
 * free it. */
static void job_drop(struct mcstore *st, struct mc_job *job)
{
    char key[KEYBUF];
    size_t klen;
    if (job->kind == JOB_LOG_APPEND || job->kind == JOB_LOG_VERSION)
        klen = mc_log_key(st, 0, key);
    else if (job->kind == JOB_LOG_READ)
        klen = mc_log_key(st, job->arg, key);
    else
        klen = cache_codec_item_key(st->prefix, job->primary, job->plen, job->secondary, job->slen,
                                    0, key, sizeof(key));
    uint32_t i = memcached_generate_hash(st->hasher, key, klen);
    struct mc_server *s = &st->servers[i < st->nservers ? i : 0];
    if (job_queue(job) == Q_READ)
        COUNT(s, dropped_reads);
    else
        COUNT(s, dropped_writes);
    job_free(job);
}

/* Queue job, or drop it (counted and freed) when its queue is full or the
 * store is stopping.  True when queued. */
bool mc_job_submit(struct mcstore *st, struct mc_job *job)
{
    int q = job_queue(job);
    pthread_mutex_lock(&st->lock);
    if (st->q[q].len >= st->queue_max || st->stopping) {
        pthread_mutex_unlock(&st->lock);
        job_drop(st, job);
        return false;
    }
    job->next = NULL;
    if (st->q[q].tail)
        st->q[q].tail->next = job;
    else
        st->q[q].head = job;
    st->q[q].tail = job;
    st->q[q].len++;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->lock);
    return true;
}

/* Under st->lock: the next job, reads first; NULL when both are empty. */
static struct mc_job *job_take(struct mcstore *st)
{
    for (int q = 0; q < NQUEUES; q++) {
        struct mc_job *job = st->q[q].head;
        if (!job)
            continue;
        st->q[q].head = job->next;
        if (!st->q[q].head)
            st->q[q].tail = NULL;
        st->q[q].len--;
        return job;
    }
    return NULL;
}

static void job_run(struct mc_worker *w, struct mc_job *job)
{
    switch (job->kind) {
    case JOB_GET:
        run_get(w, job);
        break;
    case JOB_LOCK:
        run_lock(w, job);
        break;
    case JOB_SET:
        run_set(w, job);
        break;
    case JOB_DELETE:
        run_delete(w, job);
        break;
    case JOB_UNLOCK:
        run_unlock(w, job);
        break;
    case JOB_LOG_APPEND:
        mc_run_log_append(w, job);
        break;
    case JOB_LOG_VERSION:
        mc_run_log_version(w, job);
        break;
    case JOB_LOG_READ:
        mc_run_log_read(w, job);
        break;
    }
}

/* A job mcstore_free() drops: its callback hears "shutdown". */
static void job_cancel(struct mc_job *job)
{
    if (job->kind == JOB_GET) {
        struct mcstore_get_result res = {.kind = MC_ERROR, .why = "shutdown"};
        job->get_cb(job->ctx, &res);
    } else if (job->kind == JOB_LOCK) {
        job->lock_cb(job->ctx, true, "shutdown");
    } else if (job->kind == JOB_LOG_APPEND) {
        job->append_cb(job->ctx, false, 0, "shutdown");
    } else if (job->kind == JOB_LOG_VERSION) {
        job->version_cb(job->ctx, false, false, 0, "shutdown");
    } else if (job->kind == JOB_LOG_READ) {
        job->read_cb(job->ctx, false, NULL, 0, "shutdown");
    }
}

/* Ask every server for its version once, so that a server down at start
 * is logged at start rather than at the first request. */
static void probe_servers(struct mc_worker *w)
{
    struct mcstore *st = w->store;
    int64_t start = mono_ns();
    memcached_version(w->mc);
    for (size_t i = 0; i < st->nservers; i++) {
        const memcached_instance_st *inst =
            memcached_server_instance_by_position(w->mc, (uint32_t)i);
        if (!inst)
            continue;
        memcached_return_t rc = memcached_server_error_return(inst);
        if (rc == MEMCACHED_TIMEOUT)
            timed_out(w, &st->servers[i]);
        if (mc_rc_verdict(rc) == RC_DOWN)
            mc_server_mark(st, &st->servers[i], false, memcached_strerror(w->mc, rc), start);
    }
}

static memcached_st *setup_handle(const struct mcstore *st, uint64_t timeout_ms, uint64_t retry_s,
                                  char *err, size_t errlen);

/* A server came back since this thread's handle was made: start afresh,
 * so the server is used at once rather than after this handle's own
 * retry_timeout. */
static void refresh_handle(struct mc_worker *w)
{
    struct mcstore *st = w->store;
    unsigned gen = atomic_load(&st->back_generation);
    if (gen == w->seen_back)
        return;
    char err[128];
    memcached_st *fresh = setup_handle(st, st->timeout_ms, st->retry_s, err, sizeof err);
    if (!fresh)
        return; /* keep the old one; try again at the next job */
    memcached_free(w->mc);
    w->mc = fresh;
    w->seen_back = gen;
}

static bool any_server_down(const struct mcstore *st)
{
    for (size_t i = 0; i < st->nservers; i++)
        if (!atomic_load(&st->servers[i].up))
            return true;
    return false;
}

/* Thread 0, every retry_timeout while a server is down and nothing else
 * happens: ask the down servers with a fresh handle (no libmemcached
 * history), so a server that is back is known at once, on every thread,
 * and not only once traffic meets it past each handle's own retry time. */
static void revive_servers(struct mc_worker *w)
{
    struct mcstore *st = w->store;
    char err[128];
    memcached_st *fresh = setup_handle(st, st->timeout_ms, st->retry_s, err, sizeof err);
    if (!fresh)
        return;
    int64_t start = mono_ns();
    memcached_version(fresh);
    for (size_t i = 0; i < st->nservers; i++) {
        const memcached_instance_st *inst =
            memcached_server_instance_by_position(fresh, (uint32_t)i);
        if (inst && !atomic_load(&st->servers[i].up) &&
            memcached_server_error_return(inst) == MEMCACHED_SUCCESS)
            mc_server_mark(st, &st->servers[i], true, NULL, start);
    }
    memcached_free(fresh);
}

/* Wait for a job; thread 0 wakes up every retry_timeout while a server is
 * down to look for it.  Store lock held. */
static void wait_for_job(struct mc_worker *w)
{
    struct mcstore *st = w->store;
    if (w->index != 0 || !any_server_down(st)) {
        pthread_cond_wait(&st->cond, &st->lock);
        return;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(st->retry_ms / 1000);
    until.tv_nsec += (long)(st->retry_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (pthread_cond_timedwait(&st->cond, &st->lock, &until) == ETIMEDOUT) {
        pthread_mutex_unlock(&st->lock);
        revive_servers(w);
        pthread_mutex_lock(&st->lock);
    }
}

static void *worker_main(void *arg)
{
    struct mc_worker *w = arg;
    struct mcstore *st = w->store;

    if (w->index == 0)
        probe_servers(w);
    for (;;) {
        pthread_mutex_lock(&st->lock);
        struct mc_job *job = NULL;
        while (!st->stopping && !(job = job_take(st)))
            wait_for_job(w);
        pthread_mutex_unlock(&st->lock);
        if (!job) /* stopping: mcstore_free() cancels what is left */
            break;
        refresh_handle(w);
        job_run(w, job);
        job_free(job);
    }
    return NULL;
}

/* ---- public API ------------------------------------------------------- */

bool mcstore_get(struct mcstore *store, const char *primary, size_t plen, uint64_t primary_hash,
                 const char *secondary, size_t slen, int64_t now_ms, mcstore_get_cb *cb, void *ctx)
{
    assert(plen > 0 && cb);
    struct mc_job *job = mc_job_new(JOB_GET, primary, plen, secondary, slen);
    if (!job)
        return false;
    job->arg = primary_hash;
    job->now_ms = now_ms;
    job->get_cb = cb;
    job->ctx = ctx;
    return mc_job_submit(store, job);
}

bool mcstore_set(struct mcstore *store, struct cache_object *obj, int64_t now_ms)
{
    struct mc_job *job = mc_job_new(JOB_SET, obj->primary_key, obj->primary_len, obj->secondary_key,
                                    obj->secondary_len);
    if (!job)
        return false;
    job->obj = cache_object_ref(obj);
    job->now_ms = now_ms;
    return mc_job_submit(store, job);
}

bool mcstore_delete(struct mcstore *store, const char *primary, size_t plen)
{
    assert(plen > 0);
    struct mc_job *job = mc_job_new(JOB_DELETE, primary, plen, NULL, 0);
    return job && mc_job_submit(store, job);
}

bool mcstore_lock(struct mcstore *store, const char *primary, size_t plen, uint64_t ttl_ms,
                  mcstore_lock_cb *cb, void *ctx)
{
    assert(plen > 0 && cb);
    struct mc_job *job = mc_job_new(JOB_LOCK, primary, plen, NULL, 0);
    if (!job)
        return false;
    job->arg = ttl_ms;
    job->lock_cb = cb;
    job->ctx = ctx;
    return mc_job_submit(store, job);
}

bool mcstore_unlock(struct mcstore *store, const char *primary, size_t plen)
{
    assert(plen > 0);
    struct mc_job *job = mc_job_new(JOB_UNLOCK, primary, plen, NULL, 0);
    return job && mc_job_submit(store, job);
}

void mcstore_stats(struct mcstore *store, struct mcstore_server_stats *out, size_t max, size_t *n)
{
    *n = store->nservers;
    for (size_t i = 0; i < store->nservers && i < max; i++) {
        const struct mc_server *s = &store->servers[i];
        memset(&out[i], 0, sizeof(out[i]));
        snprintf(out[i].name, sizeof(out[i].name), "%s", s->name);
        out[i].up = atomic_load(&s->up);
#define MC_COUNTER_COPY(name, doc)                                                                 \
    out[i].name = atomic_load_explicit(&s->c.name, memory_order_relaxed);
        MCSTORE_SERVER_COUNTERS(MC_COUNTER_COPY)
#undef MC_COUNTER_COPY
    }
}

size_t mcstore_pending(struct mcstore *store)
{
    pthread_mutex_lock(&store->lock);
    size_t n = store->q[Q_READ].len + store->q[Q_WRITE].len;
    pthread_mutex_unlock(&store->lock);
    return n;
}

/* A memcached_st set up as the header of this file says.  NULL with the
 * reason in err. */
static memcached_st *setup_handle(const struct mcstore *st, uint64_t timeout_ms, uint64_t retry_s,
                                  char *err, size_t errlen)
{
    memcached_st *mc = memcached_create(NULL);
    if (!mc) {
        snprintf(err, errlen, "memcached: out of memory");
        return NULL;
    }
    const struct {
        memcached_behavior_t b;
        uint64_t v;
        const char *name;
    } behaviors[] = {
        {MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1, "BINARY_PROTOCOL"},
        /* Weighted ketama: MD5 key hash, each server's share of the
         * continuum by its weight; removing one moves only its keys. */
        {MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1, "KETAMA_WEIGHTED"},
        {MEMCACHED_BEHAVIOR_TCP_NODELAY, 1, "TCP_NODELAY"},
        {MEMCACHED_BEHAVIOR_NO_BLOCK, 1, "NO_BLOCK"},
        {MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, timeout_ms, "CONNECT_TIMEOUT"},
        {MEMCACHED_BEHAVIOR_POLL_TIMEOUT, timeout_ms, "POLL_TIMEOUT"},
        {MEMCACHED_BEHAVIOR_SND_TIMEOUT, timeout_ms * 1000, "SND_TIMEOUT"}, /* microseconds */
        {MEMCACHED_BEHAVIOR_RCV_TIMEOUT, timeout_ms * 1000, "RCV_TIMEOUT"},
        /* One failure puts a server "in timeout" for RETRY_TIMEOUT seconds;
         * with REMOVE_FAILED_SERVERS and a failure limit of 1 the next call
         * that maps to it removes it from the continuum for DEAD_TIMEOUT
         * seconds, after which the continuum is rebuilt with it and it gets
         * one try.  Without DEAD_TIMEOUT a removed server would stay
         * removed-and-failing for good. */
        {MEMCACHED_BEHAVIOR_SERVER_TIMEOUT_LIMIT, 1, "SERVER_TIMEOUT_LIMIT"},
        {MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 1, "SERVER_FAILURE_LIMIT"},
        {MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, retry_s, "RETRY_TIMEOUT"},
        {MEMCACHED_BEHAVIOR_DEAD_TIMEOUT, retry_s, "DEAD_TIMEOUT"},
        {MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 1, "REMOVE_FAILED_SERVERS"},
    };
    for (size_t i = 0; i < sizeof(behaviors) / sizeof(behaviors[0]); i++) {
        memcached_return_t rc = memcached_behavior_set(mc, behaviors[i].b, behaviors[i].v);
        if (memcached_failed(rc)) {
            snprintf(err, errlen, "memcached: setting %s: %s", behaviors[i].name,
                     memcached_strerror(mc, rc));
            goto fail;
        }
    }
    for (size_t i = 0; i < st->nservers; i++) {
        const struct mc_server *s = &st->servers[i];
        memcached_return_t rc =
            memcached_server_add_with_weight(mc, s->host, (in_port_t)s->port, s->weight);
        if (memcached_failed(rc)) {
            snprintf(err, errlen, "memcached: server %s: %s", s->name, memcached_strerror(mc, rc));
            goto fail;
        }
    }
    return mc;
fail:
    memcached_free(mc);
    return NULL;
}

static bool check_config(const struct mcstore_config *cfg, char *err, size_t errlen)
{
    if (cfg->nservers == 0 || !cfg->servers) {
        snprintf(err, errlen, "memcached: no server");
        return false;
    }
    if (cfg->nservers > MCSTORE_MAX_SERVERS) {
        snprintf(err, errlen, "memcached: %zu servers, at most %d", cfg->nservers,
                 MCSTORE_MAX_SERVERS);
        return false;
    }
    for (size_t i = 0; i < cfg->nservers; i++) {
        const struct mcstore_server *s = &cfg->servers[i];
        if (!s->host || !s->host[0] || strlen(s->host) > 255) {
            snprintf(err, errlen, "memcached: server %zu: bad host", i + 1);
            return false;
        }
        if (s->port < 1 || s->port > 65535) {
            snprintf(err, errlen, "memcached: server %s: port %u out of range", s->host, s->port);
            return false;
        }
    }
    const char *prefix = cfg->prefix ? cfg->prefix : "";
    if (!cache_codec_prefix_valid(prefix, strlen(prefix))) {
        snprintf(err, errlen,
                 "memcached: prefix must be at most %zu printable characters without spaces",
                 (size_t)CACHE_CODEC_PREFIX_MAX);
        return false;
    }
    if (cfg->item_size &&
        (cfg->item_size < MIN_ITEM_SIZE || cfg->item_size > CACHE_CODEC_ITEM_MAX)) {
        snprintf(err, errlen, "memcached: item_size %zu out of range %zu..%zu", cfg->item_size,
                 MIN_ITEM_SIZE, CACHE_CODEC_ITEM_MAX);
        return false;
    }
    if (cfg->io_threads > MCSTORE_MAX_IO_THREADS) {
        snprintf(err, errlen, "memcached: io_threads %u, at most %d", cfg->io_threads,
                 MCSTORE_MAX_IO_THREADS);
        return false;
    }
    if (cfg->timeout_ms > MAX_TIMEOUT_MS || cfg->retry_timeout_ms > MAX_TIMEOUT_MS * 24) {
        snprintf(err, errlen, "memcached: timeout out of range");
        return false;
    }
    return true;
}

struct mcstore *mcstore_new(const struct mcstore_config *cfg, char *err, size_t errlen)
{
    if (!check_config(cfg, err, errlen))
        return NULL;

    struct mcstore *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "memcached: out of memory");
        return NULL;
    }
    bool sync_made = false;
    uint64_t timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : MCSTORE_DEFAULT_TIMEOUT_MS;
    uint64_t retry_ms =
        cfg->retry_timeout_ms ? cfg->retry_timeout_ms : MCSTORE_DEFAULT_RETRY_TIMEOUT_MS;
    uint64_t retry_s = retry_ms / 1000 + (retry_ms % 1000 != 0);

    st->prefix = strdup(cfg->prefix ? cfg->prefix : "");
    st->item_size = cfg->item_size ? cfg->item_size : MCSTORE_DEFAULT_ITEM_SIZE;
    st->max_body = cfg->max_body ? cfg->max_body : MCSTORE_DEFAULT_MAX_BODY;
    st->ttl_slack_ms = cfg->ttl_slack_ms;
    st->retry_ms = retry_s * 1000;
    st->timeout_ms = timeout_ms;
    st->retry_s = retry_s;
    st->queue_max = cfg->queue_max ? cfg->queue_max : MCSTORE_DEFAULT_QUEUE_MAX;
    st->log = cfg->log;
    st->servers = calloc(cfg->nservers, sizeof(*st->servers));
    unsigned nworkers = cfg->io_threads ? cfg->io_threads : MCSTORE_DEFAULT_IO_THREADS;
    st->workers = calloc(nworkers, sizeof(*st->workers));
    if (!st->prefix || !st->servers || !st->workers) {
        snprintf(err, errlen, "memcached: out of memory");
        goto fail;
    }
    st->nservers = cfg->nservers;
    for (size_t i = 0; i < cfg->nservers; i++) {
        struct mc_server *s = &st->servers[i];
        s->host = strdup(cfg->servers[i].host);
        if (!s->host) {
            snprintf(err, errlen, "memcached: out of memory");
            goto fail;
        }
        s->port = cfg->servers[i].port;
        s->weight = cfg->servers[i].weight ? cfg->servers[i].weight : 1;
        snprintf(s->name, sizeof(s->name), strchr(s->host, ':') ? "[%s]:%u" : "%s:%u", s->host,
                 s->port);
        atomic_init(&s->up, true);
        atomic_init(&s->skip_until_ms, 0);
#define MC_COUNTER_INIT(name, doc) atomic_init(&s->c.name, 0);
        MCSTORE_SERVER_COUNTERS(MC_COUNTER_INIT)
#undef MC_COUNTER_INIT
    }

    st->hasher = setup_handle(st, timeout_ms, retry_s, err, errlen);
    if (!st->hasher)
        goto fail;
    for (unsigned i = 0; i < nworkers; i++) {
        st->workers[i].mc = setup_handle(st, timeout_ms, retry_s, err, errlen);
        if (!st->workers[i].mc)
            goto fail;
        st->workers[i].store = st;
        st->workers[i].index = i;
    }
    st->nworkers = nworkers;

    if (pthread_mutex_init(&st->state_lock, NULL) != 0)
        goto fail_sync;
    if (pthread_mutex_init(&st->lock, NULL) != 0) {
        pthread_mutex_destroy(&st->state_lock);
        goto fail_sync;
    }
    if (pthread_cond_init(&st->cond, NULL) != 0) {
        pthread_mutex_destroy(&st->lock);
        pthread_mutex_destroy(&st->state_lock);
        goto fail_sync;
    }
    sync_made = true;

    /* I/O threads take no signal: they go to the threads that handle them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned i = 0; i < nworkers; i++) {
        int rc = pthread_create(&st->workers[i].thread, NULL, worker_main, &st->workers[i]);
        if (rc != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            snprintf(err, errlen, "memcached: starting an I/O thread: %s", strerror(rc));
            goto fail;
        }
        st->workers[i].started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return st;

fail_sync:
    snprintf(err, errlen, "memcached: cannot make a mutex");
fail:
    if (sync_made) {
        mcstore_free(&st);
        return NULL;
    }
    for (unsigned i = 0; i < nworkers && st->workers; i++)
        memcached_free(st->workers[i].mc);
    memcached_free(st->hasher);
    for (size_t i = 0; i < st->nservers; i++)
        free(st->servers[i].host);
    free(st->servers);
    free(st->workers);
    free(st->prefix);
    free(st);
    return NULL;
}

void mcstore_free(struct mcstore **store)
{
    struct mcstore *st = *store;
    if (!st)
        return;
    *store = NULL;

    pthread_mutex_lock(&st->lock);
    st->stopping = true;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->lock);
    for (unsigned i = 0; i < st->nworkers; i++)
        if (st->workers[i].started)
            pthread_join(st->workers[i].thread, NULL);

    /* No thread is left: the queues are ours without the lock. */
    for (int q = 0; q < NQUEUES; q++) {
        struct mc_job *job;
        while ((job = job_take(st)) != NULL) {
            job_cancel(job);
            job_free(job);
        }
    }

    for (unsigned i = 0; i < st->nworkers; i++)
        memcached_free(st->workers[i].mc);
    memcached_free(st->hasher);
    pthread_cond_destroy(&st->cond);
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->state_lock);
    for (size_t i = 0; i < st->nservers; i++)
        free(st->servers[i].host);
    free(st->servers);
    free(st->workers);
    free(st->prefix);
    free(st);
}
