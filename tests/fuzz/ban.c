/*
 * tests/fuzz/ban.c: libFuzzer target for the purge log record decoder
 * (ban_decode() in cache/ban.c), and for the matcher behind it.
 *
 * Input: the bytes are one record, copied into a buffer of their exact
 * size so ASan sees any over-read.
 *
 * A record that decodes must have its spans inside the input and within
 * the limits, and re-encode to the input's bytes exactly (the encoding is
 * canonical); an encode one byte short must fail.  The spec then goes
 * through ban_list_add(), as a purge log entry does: refused only for an
 * empty pattern or a regex that does not compile, with a message.  When
 * added, ban_check() on a few objects (odd keys included) must agree with
 * ban_matches() and the times, twice in a row (the verdict sticks).
 *
 * Build and run (as `make fuzz` does; new units go to a scratch directory,
 * the seeds stay as committed):
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -I. \
 *       -I/usr/share/include/llhttp tests/fuzz/ban.c cache/[a-z]*.c config/[a-z]*.c \
 *       compress/[a-z]*.c -lxxhash -lpcre2-8 -lmemcached -lz -lbrotlienc -lbrotlidec \
 *       -lzstd -lm -o /tmp/fuzz_ban
 *   mkdir -p /tmp/fuzz_out
 *   /tmp/fuzz_ban -max_total_time=60 /tmp/fuzz_out tests/fuzz/corpus/ban
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/ban.h"

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

/* Objects to judge: keys of every shape ban.c meets, times around the
 * ones the seeds use. */
static const struct {
    const char *key;
    int64_t stored_at;
} objects[] = {
    {"http://h.example/p/x?q=1", 1000},
    {"http://h.example/p/x?q=1\nh:accept=text/html", 1000},
    {"https://H.Example:8443/api/v1/x.json", -5},
    {"http://h/", 0},
    {"http://h x", 1000},
    {"http://", 1000},
    {"nokey", 1000},
    {"http://h/a/b/c", INT64_MIN},
    {"http://h/a/b/c", INT64_MAX},
};
#define NOBJ (sizeof objects / sizeof objects[0])

static struct cache_object *obj[NOBJ];

static struct cache_object *make_obj(const char *key, int64_t stored_at)
{
    static const struct cache_object_tag tags[] = {{"t", 1}, {"Prod", 4}, {"product-17", 10}};
    struct cache_object_meta m = {
        .primary_key = key,
        .primary_len = strlen(key),
        .primary_hash = 42,
        .status = 200,
        .stored_at = stored_at,
        .tags = tags,
        .ntags = stored_at == 1000 ? 3 : 0,
    };
    struct cache_object_builder *b = cache_object_builder_new(&m, SIZE_MAX);
    check(b != NULL);
    struct cache_object *o = cache_object_builder_finish(&b);
    check(o != NULL);
    return o;
}

static bool within(const void *span, size_t len, const uint8_t *p, size_t size)
{
    const uint8_t *s = span;
    return s >= p && s <= p + size && len <= (size_t)(p + size - s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ban_spec spec;
    char err[256];

    if (!obj[0]) {
        for (size_t i = 0; i < NOBJ; i++)
            obj[i] = make_obj(objects[i].key, objects[i].stored_at);
    }

    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    if (!ban_decode(copy, size, &spec)) {
        free(copy);
        return 0;
    }

    check((unsigned)spec.kind <= BAN_ALL);
    check(strcmp(ban_kind_name(spec.kind), "?") != 0);
    check(spec.host_len <= BAN_HOST_MAX && spec.pattern_len <= BAN_PATTERN_MAX);
    check((spec.host == NULL) == (spec.host_len == 0));
    check(spec.host == NULL || within(spec.host, spec.host_len, copy, size));
    check(spec.pattern != NULL && within(spec.pattern, spec.pattern_len, copy, size));
    check(size == 21 + spec.host_len + spec.pattern_len && size <= BAN_RECORD_MAX);

    /* Canonical: encoding gives the input back, and needs all of it. */
    uint8_t out[BAN_RECORD_MAX];
    check(ban_encode(&spec, out, sizeof out) == size);
    check(memcmp(out, copy, size) == 0);
    check(ban_encode(&spec, out, size - 1) == 0);

    /* As a purge log entry. */
    struct ban_list *list = ban_list_new();
    check(list != NULL);
    err[0] = '\0';
    uint64_t id = ban_list_add(list, &spec, err, sizeof err);
    if (id == 0) {
        check(err[0] != '\0');
        if (spec.kind == BAN_ALL || spec.pattern_len > 0)
            check(spec.kind == BAN_REGEX && strncmp(err, "regex: ", 7) == 0);
        /* A regex that does not compile matches nothing.  (ban_matches()
         * does not judge the spec: an empty regex matches everything.) */
        for (size_t i = 0; i < NOBJ && spec.pattern_len > 0; i++)
            check(!ban_matches(&spec, obj[i]));
    } else {
        check(id == 1 && ban_list_count(list) == 1 && ban_list_newest_id(list) == 1);
        for (size_t i = 0; i < NOBJ; i++) {
            atomic_store(&obj[i]->ban_seen, 0);
            atomic_store(&obj[i]->ban_soft, false);
            bool hit = obj[i]->stored_at < spec.time_ms && ban_matches(&spec, obj[i]);
            enum ban_verdict want = !hit ? BAN_PASS : spec.soft ? BAN_STALE : BAN_GONE;
            check(ban_check(list, obj[i]) == want);
            check(ban_check(list, obj[i]) == want);
            check(atomic_load(&obj[i]->ban_seen) == (want == BAN_GONE ? 0 : 1));
        }
        check(ban_list_expire(list, spec.time_ms) == 1 && ban_list_count(list) == 0);
    }
    ban_list_free(&list);
    check(list == NULL);
    free(copy);
    return 0;
}
