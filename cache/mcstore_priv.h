/*
 * cache/mcstore_priv.h: what the files of the memcached tier share
 * (cache/mcstore.c: the I/O threads, their queue, object gets and sets,
 * server states; cache/mclog.c: the purge log).  Not for other modules:
 * they use cache/mcstore.h.  The functions below run on an I/O thread (the
 * mc_worker's), except mc_job_new() and mc_job_submit(), which any thread
 * calls.
 */
#ifndef TESSERA_CACHE_MCSTORE_PRIV_H
#define TESSERA_CACHE_MCSTORE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libmemcached/memcached.h>

#include "cache/codec.h"
#include "cache/mcstore.h"

#define LOCK_SUFFIX ":lock"
#define KEYBUF (CACHE_CODEC_KEY_MAX + sizeof(LOCK_SUFFIX))
#define LOG_KEY "purgelog:"
#define LOG_VERSION_KEY LOG_KEY "v"
/* the longest prefix, "purgelog:" and UINT64_MAX's 20 digits */
_Static_assert(CACHE_CODEC_PREFIX_MAX + sizeof(LOG_KEY) - 1 + 20 <= CACHE_CODEC_KEY_MAX,
               "purge log keys must fit memcached's key limit");

struct mc_counters {
#define MC_COUNTER_FIELD(name, doc) atomic_uint_fast64_t name;
    MCSTORE_SERVER_COUNTERS(MC_COUNTER_FIELD)
#undef MC_COUNTER_FIELD
};

#define COUNT(srv, field) atomic_fetch_add_explicit(&(srv)->c.field, 1, memory_order_relaxed)

struct mc_server {
    char *host;
    unsigned port;
    unsigned weight;
    char name[300];
    atomic_bool up;     /* starts true: nothing is logged until something fails */
    int64_t changed_ns; /* when up last changed (monotonic); under state_lock */
    /* After a timeout, calls to the server fail at once until this time
     * (monotonic ms; 0: never skipped).  See skip_server(). */
    atomic_int_fast64_t skip_until_ms;
    struct mc_counters c;
};

enum mc_job_kind {
    JOB_GET,
    JOB_LOCK,
    JOB_SET,
    JOB_DELETE,
    JOB_UNLOCK,
    JOB_LOG_APPEND,
    JOB_LOG_VERSION,
    JOB_LOG_READ,
};

/* The two queues: reads are served first. */
enum { Q_READ, Q_WRITE, NQUEUES };

struct mc_job {
    struct mc_job *next;
    enum mc_job_kind kind;
    int64_t now_ms;
    uint64_t arg;             /* JOB_GET: primary hash; JOB_LOCK: ttl in ms;
                               * JOB_LOG_APPEND: expiry in s; JOB_LOG_READ: first */
    uint64_t last;            /* JOB_LOG_READ */
    struct cache_object *obj; /* JOB_SET: the store's reference */
    mcstore_get_cb *get_cb;
    mcstore_lock_cb *lock_cb;
    mcstore_log_append_cb *append_cb;
    mcstore_log_version_cb *version_cb;
    mcstore_log_read_cb *read_cb;
    void *ctx;
    const char *primary; /* into keys[]; JOB_LOG_APPEND: the record */
    size_t plen;
    const char *secondary;
    size_t slen;
    char keys[]; /* primary NUL secondary NUL */
};

struct mc_queue {
    struct mc_job *head, *tail;
    size_t len;
};

struct mc_worker {
    struct mcstore *store;
    unsigned index;
    memcached_st *mc; /* this thread's own */
    pthread_t thread;
    bool started;
    char why[128];       /* a lookup's reason, valid during its callback */
    unsigned seen_back;  /* the store's back_generation this handle was made after */
    int64_t op_start_ns; /* when the current libmemcached call started */
};

struct mcstore {
    char *prefix;
    size_t item_size;
    size_t max_body;
    uint64_t ttl_slack_ms;
    uint64_t retry_ms;
    size_t queue_max;
    mcstore_log_f *log;

    struct mc_server *servers;
    size_t nservers;
    /* Bumped whenever a server comes back: every I/O thread then replaces
     * its handle, whose libmemcached state may still hold the server out of
     * its hash ring until its own retry (each handle keeps its own). */
    atomic_uint back_generation;
    uint64_t timeout_ms;
    uint64_t retry_s;

    /* Never connects: maps keys to servers on callers' threads, for the
     * counters of dropped jobs.  memcached_generate_hash() only reads it. */
    memcached_st *hasher;

    pthread_mutex_t state_lock; /* server state changes and their log lines */
    pthread_mutex_t lock;       /* the queues */
    pthread_cond_t cond;
    struct mc_queue q[NQUEUES];
    bool stopping;

    struct mc_worker *workers;
    unsigned nworkers;
};

/* A call skipped because its server timed out lately (see mc_skip_server). */
#define SKIPPED "skipped after a timeout"

/* What a libmemcached result says of its server. */
enum rc_verdict {
    RC_ANSWERED,     /* the server answered: it is up, the call did what it could */
    RC_ANSWER_ERROR, /* the server answered with an error (too large, out of memory) */
    RC_DOWN,         /* fresh evidence that the server is unreachable or too slow */
    RC_NO_NEWS,      /* failed without asking the server: libmemcached remembers it
                      * failing (or the call was refused locally) */
};

enum rc_verdict mc_rc_verdict(memcached_return_t rc);

/* Set a server's shared state from a call that started at since_ns (the
 * thread that changes it logs the change). */
void mc_server_mark(struct mcstore *st, struct mc_server *s, bool up, const char *why,
                    int64_t since_ns);

/* True when calls to s are skipped after a timeout. */
bool mc_skip_server(struct mc_server *s);

/* Count the result of the call just made to s (started at mc_server_of())
 * and update its state.  True when the server answered. */
bool mc_note_rc(struct mc_worker *w, struct mc_server *s, memcached_return_t rc);

/* The server key goes to on this handle; notes when the call starts. */
struct mc_server *mc_server_of(struct mc_worker *w, const char *key, size_t klen);

/* One multi-get of keys[0..n-1] into views[1..n] (key i ends in base + i +
 * 1); free them with mc_free_views(). */
memcached_return_t mc_mget_views(struct mc_worker *w, const char *const *keys, const size_t *lens,
                                 size_t n, uint64_t base, struct cache_codec_view *views);
void mc_free_views(struct cache_codec_view *views, size_t n);

/* memcached_set one item; NULL when stored, else why not. */
const char *mc_put_item(struct mc_worker *w, const char *key, size_t klen, const void *data,
                        size_t len, uint32_t expiry);

/* A job (keys copied into it), and queueing it (dropped, counted and freed
 * when its queue is full or the store stops; true when queued). */
struct mc_job *mc_job_new(enum mc_job_kind kind, const char *primary, size_t plen,
                          const char *secondary, size_t slen);
bool mc_job_submit(struct mcstore *st, struct mc_job *job);

/* ---- cache/mclog.c: the purge log jobs ------------------------------------------ */

/* The key of purge log entry n, or of the version for n 0 (KEYBUF bytes). */
size_t mc_log_key(const struct mcstore *st, uint64_t n, char *key);

void mc_run_log_append(struct mc_worker *w, struct mc_job *job);
void mc_run_log_version(struct mc_worker *w, struct mc_job *job);
void mc_run_log_read(struct mc_worker *w, struct mc_job *job);

#endif
