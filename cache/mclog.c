/*
 * cache/mclog.c: the purge log in memcached (see mcstore.h, "purge log"):
 * a version counter taken with incr, and numbered entries holding the
 * records.  Jobs of the memcached tier's I/O threads (cache/mcstore_priv.h).
 */
#include "cache/mcstore_priv.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* The key of purge log entry n, or of the version for n 0. */
size_t mc_log_key(const struct mcstore *st, uint64_t n, char *key)
{
    int len = n ? snprintf(key, KEYBUF, "%s" LOG_KEY "%" PRIu64, st->prefix, n)
                : snprintf(key, KEYBUF, "%s" LOG_VERSION_KEY, st->prefix);
    assert(len > 0 && (size_t)len < KEYBUF);
    return (size_t)len;
}

/* The version's value: decimal digits, then the spaces memcached pads an
 * incr result with when it rewrites a longer value in place. */
static bool parse_version(const char *v, size_t len, uint64_t *out)
{
    size_t i = 0;
    uint64_t n = 0;
    for (; i < len && v[i] >= '0' && v[i] <= '9'; i++) {
        if (n > (UINT64_MAX - (uint64_t)(v[i] - '0')) / 10)
            return false;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    if (i == 0)
        return false;
    for (; i < len; i++)
        if (v[i] != ' ')
            return false;
    *out = n;
    return true;
}

/* Take the next entry number: incr the version, creating it first when it
 * does not exist.  NULL with the number in *n, or why it failed. */
static const char *log_take_number(struct mc_worker *w, uint64_t *n)
{
    char key[KEYBUF];
    size_t klen = mc_log_key(w->store, 0, key);
    for (int round = 0;; round++) {
        struct mc_server *s = mc_server_of(w, key, klen);
        if (mc_skip_server(s))
            return SKIPPED;
        uint64_t v = 0; /* libmemcached sets UINT64_MAX when the incr fails */
        memcached_return_t rc = memcached_increment(w->mc, key, klen, 1, &v);
        if (rc == MEMCACHED_UNKNOWN_READ_FAILURE) {
            /* memcached's answer to an incr of a value that is not a number
             * (binary status DELTA_BADVAL), which libmemcached does not
             * know: an answer, not a sign the server is down.  The
             * connection stays in step (the answer is read whole). */
            COUNT(s, errors);
            mc_server_mark(w->store, s, true, NULL, w->op_start_ns);
            return "version is not a decimal number";
        }
        if (!mc_note_rc(w, s, rc))
            return memcached_strerror(w->mc, rc);
        if (memcached_success(rc)) {
            COUNT(s, sets);
            if (v == 0) { /* incr wraps at 2^64: there is no entry 0 */
                COUNT(s, errors);
                return "version wrapped";
            }
            *n = v;
            return NULL;
        }
        if (rc != MEMCACHED_NOTFOUND) { /* a server error, out of memory, ... */
            if (mc_rc_verdict(rc) == RC_ANSWERED)
                COUNT(s, errors);
            return memcached_strerror(w->mc, rc);
        }
        if (round > 0) { /* added, and gone again at once (flush, eviction) */
            COUNT(s, errors);
            return "version vanished";
        }
        /* The first append ever, or memcached lost the version: create it
         * as "0", never expiring, and incr again.  When another node adds
         * it first, this add fails (DATA_EXISTS over the binary protocol,
         * NOTSTORED over text) and the incr counts on from that node's
         * value: neither number is taken twice. */
        s = mc_server_of(w, key, klen);
        if (mc_skip_server(s))
            return SKIPPED;
        rc = memcached_add(w->mc, key, klen, "0", 1, 0, 0);
        if (!mc_note_rc(w, s, rc))
            return memcached_strerror(w->mc, rc);
        if (memcached_success(rc)) {
            COUNT(s, sets);
        } else if (rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS) {
            if (mc_rc_verdict(rc) == RC_ANSWERED)
                COUNT(s, errors);
            return memcached_strerror(w->mc, rc);
        }
    }
}

void mc_run_log_append(struct mc_worker *w, struct mc_job *job)
{
    uint64_t n = 0;
    const char *why = log_take_number(w, &n);
    if (why) {
        job->append_cb(job->ctx, false, 0, why);
        return;
    }
    char key[KEYBUF];
    size_t klen = mc_log_key(w->store, n, key);
    uint32_t expiry = job->arg > MCSTORE_MAX_EXPIRY_S ? MCSTORE_MAX_EXPIRY_S : (uint32_t)job->arg;
    why = mc_put_item(w, key, klen, job->primary, job->plen, expiry);
    job->append_cb(job->ctx, why == NULL, n, why);
}

void mc_run_log_version(struct mc_worker *w, struct mc_job *job)
{
    char key[KEYBUF];
    size_t klen = mc_log_key(w->store, 0, key);
    struct mc_server *s = mc_server_of(w, key, klen);
    COUNT(s, gets);
    if (mc_skip_server(s)) {
        job->version_cb(job->ctx, false, false, 0, SKIPPED);
        return;
    }
    size_t vlen = 0;
    uint32_t flags = 0;
    memcached_return_t rc;
    char *val = memcached_get(w->mc, key, klen, &vlen, &flags, &rc);
    mc_note_rc(w, s, rc);
    uint64_t version = 0;
    bool valid = val && parse_version(val, vlen, &version);
    free(val);
    if (!val && rc == MEMCACHED_NOTFOUND) {
        COUNT(s, misses);
        job->version_cb(job->ctx, true, false, 0, "not found");
    } else if (!val && memcached_failed(rc)) {
        job->version_cb(job->ctx, false, false, 0, memcached_strerror(w->mc, rc));
    } else if (!valid) { /* also an empty value */
        COUNT(s, decode_errors);
        COUNT(s, misses);
        job->version_cb(job->ctx, true, false, 0, "not a decimal number");
    } else {
        COUNT(s, hits);
        job->version_cb(job->ctx, true, true, version, NULL);
    }
}

void mc_run_log_read(struct mc_worker *w, struct mc_job *job)
{
    struct mcstore *st = w->store;
    uint64_t first = job->arg;
    size_t n = (size_t)(job->last - first + 1);
    char *keybuf = malloc(n * KEYBUF);
    const char **keys = calloc(n, sizeof(*keys));
    size_t *lens = calloc(n, sizeof(*lens));
    struct mc_server **srv = malloc(n * sizeof(*srv));
    struct cache_codec_view *views = calloc(n + 1, sizeof(*views));
    struct mcstore_log_entry *entries = calloc(n, sizeof(*entries));
    const char *why = "out of memory";

    if (!keybuf || !keys || !lens || !srv || !views || !entries)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        keys[i] = keybuf + i * KEYBUF;
        lens[i] = mc_log_key(st, first + i, keybuf + i * KEYBUF);
        srv[i] = mc_server_of(w, keys[i], lens[i]);
        COUNT(srv[i], gets);
    }
    for (size_t i = 0; i < n; i++) {
        if (mc_skip_server(srv[i])) {
            why = SKIPPED;
            goto fail;
        }
    }
    memcached_return_t rc = mc_mget_views(w, keys, lens, n, first - 1, views);
    if (memcached_failed(rc)) {
        /* A value missing may be on a server that failed: unknown, so the
         * whole read fails (counted once, on the first such server). */
        for (size_t i = 0; i < n; i++) {
            if (views[i + 1].data)
                continue;
            COUNT(srv[i], errors);
            if (rc == MEMCACHED_TIMEOUT)
                COUNT(srv[i], timeouts);
            why = memcached_strerror(w->mc, rc);
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct cache_codec_view *v = &views[i + 1];
        entries[i].n = first + i;
        if (v->data && v->len > 0 && v->len <= MCSTORE_LOG_RECORD_MAX) {
            entries[i].found = true;
            entries[i].data = v->data;
            entries[i].len = v->len;
            COUNT(srv[i], hits);
            continue;
        }
        if (v->data) /* empty or too large: not a record this store wrote */
            COUNT(srv[i], decode_errors);
        COUNT(srv[i], misses);
    }
    job->read_cb(job->ctx, true, entries, n, NULL);
    goto done;

fail:
    job->read_cb(job->ctx, false, NULL, 0, why);
done:
    mc_free_views(views, n + 1);
    free(entries);
    free(srv);
    free(lens);
    free(keys);
    free(keybuf);
}

/* ---- public API ------------------------------------------------------- */

bool mcstore_log_append(struct mcstore *st, const void *record, size_t len, uint32_t expiry_s,
                        mcstore_log_append_cb *cb, void *ctx)
{
    assert(cb);
    if (len < 1 || len > MCSTORE_LOG_RECORD_MAX)
        return false;
    /* The record rides in the job's key space, as its "primary". */
    struct mc_job *job = mc_job_new(JOB_LOG_APPEND, record, len, NULL, 0);
    if (!job)
        return false;
    job->arg = expiry_s;
    job->append_cb = cb;
    job->ctx = ctx;
    return mc_job_submit(st, job);
}

bool mcstore_log_version(struct mcstore *st, mcstore_log_version_cb *cb, void *ctx)
{
    assert(cb);
    struct mc_job *job = mc_job_new(JOB_LOG_VERSION, "", 0, NULL, 0);
    if (!job)
        return false;
    job->version_cb = cb;
    job->ctx = ctx;
    return mc_job_submit(st, job);
}

bool mcstore_log_read(struct mcstore *st, uint64_t first, uint64_t last, mcstore_log_read_cb *cb,
                      void *ctx)
{
    assert(cb);
    if (first < 1 || last < first || last - first >= MCSTORE_LOG_READ_MAX)
        return false;
    struct mc_job *job = mc_job_new(JOB_LOG_READ, "", 0, NULL, 0);
    if (!job)
        return false;
    job->arg = first;
    job->last = last;
    job->read_cb = cb;
    job->ctx = ctx;
    return mc_job_submit(st, job);
}
