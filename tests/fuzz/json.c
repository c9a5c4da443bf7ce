/*
 * tests/fuzz/json.c: libFuzzer target for the JSON reader and writer
 * (proxy/json.c).
 *
 * Input: the bytes are one document, copied into a buffer of their exact
 * size so ASan sees any over-read.
 *
 * A document that parses is written back, compact and pretty: both must
 * parse to the same tree, and writing that tree again must give the same
 * bytes (the compact form is canonical).  One that does not parse must
 * say why, with a position.  Independently, the input written as a JSON
 * string must parse back to itself when it is valid UTF-8, and to some
 * string in any case.
 *
 * proxy/ is not in the Makefile's fuzz sources (it owns sockets), so this
 * target compiles the two files it needs itself; that also gives it the
 * private utf8_seq().
 *
 * Build and run (as `make fuzz` does; new units go to a scratch directory,
 * the seeds stay as committed):
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -I. \
 *       -I/usr/share/include/llhttp tests/fuzz/json.c -o /tmp/fuzz_json
 *   mkdir -p /tmp/fuzz_out
 *   /tmp/fuzz_json -max_total_time=60 /tmp/fuzz_out tests/fuzz/corpus/json
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/buf.c"
#include "proxy/json.c"

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static bool same_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool same_tree(const struct json_value *a, const struct json_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case JSON_NULL:
        return true;
    case JSON_BOOL:
        return a->boolean == b->boolean;
    case JSON_NUMBER:
        /* an integer -0 is written as 0: == does not tell them apart */
        return a->number.value == b->number.value && a->number.is_int == b->number.is_int &&
               (!a->number.is_int || a->number.integer == b->number.integer);
    case JSON_STRING:
        return same_bytes(a->string.ptr, a->string.len, b->string.ptr, b->string.len);
    case JSON_ARRAY:
        if (a->array.n != b->array.n)
            return false;
        for (size_t i = 0; i < a->array.n; i++)
            if (!same_tree(&a->array.items[i], &b->array.items[i]))
                return false;
        return true;
    case JSON_OBJECT:
        if (a->object.n != b->object.n)
            return false;
        for (size_t i = 0; i < a->object.n; i++) {
            const struct json_member *ma = &a->object.members[i], *mb = &b->object.members[i];
            if (!same_bytes(ma->key, ma->key_len, mb->key, mb->key_len) ||
                !same_tree(&ma->value, &mb->value))
                return false;
            /* a key holding a NUL cannot be named by a C string */
            if (strlen(ma->key) == ma->key_len && json_object_get(b, ma->key) != &mb->value)
                return false;
        }
        return true;
    }
    return false;
}

static void write_tree(const struct json_value *v, bool pretty, struct buf *out)
{
    struct json_writer w;

    buf_reset(out);
    json_writer_init(&w, out, pretty);
    json_writer_value(&w, v);
    check(json_writer_finish(&w));
}

/* A written tree parses to the same tree and writes the same bytes. */
static void round_trip(const struct json_value *v)
{
    struct buf compact = {0}, pretty = {0}, again = {0};
    char err[128];

    write_tree(v, false, &compact);
    write_tree(v, true, &pretty);
    struct json_value *a = json_parse(compact.data, compact.len, err, sizeof err);
    struct json_value *b = json_parse(pretty.data, pretty.len, err, sizeof err);
    check(a && b);
    /* a double written with %.17g or less reads back as itself, so only an
     * integer-valued double may change kind (1e3 is written 1000) */
    write_tree(a, false, &again);
    check(same_bytes(again.data, again.len, compact.data, compact.len));
    check(same_tree(a, b));
    json_free(&a);
    json_free(&b);
    buf_release(&compact);
    buf_release(&pretty);
    buf_release(&again);
}

static bool valid_utf8(const uint8_t *p, size_t n)
{
    size_t bad;
    for (size_t i = 0, len; i < n; i += len)
        if ((len = utf8_seq(p + i, n - i, &bad)) == 0)
            return false;
    return true;
}

static void as_string(const uint8_t *data, size_t size)
{
    struct buf out = {0};
    char err[128];

    json_write_string(&out, (const char *)data, size);
    check(!out.oom);
    struct json_value *v = json_parse(out.data, out.len, err, sizeof err);
    check(v && v->type == JSON_STRING);
    if (valid_utf8(data, size))
        check(same_bytes(v->string.ptr, v->string.len, (const char *)data, size));
    json_free(&v);
    buf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const allowed[] = {"url", "prefix", "host", "tag", "all", "soft", NULL};
    char err[128];
    char *copy = malloc(size ? size : 1);

    if (!copy)
        return 0;
    memcpy(copy, data, size);
    struct json_value *v = json_parse(copy, size, err, sizeof err);
    if (v) {
        /* the normalisation of numbers aside, what is written reads back */
        struct buf out = {0};
        write_tree(v, false, &out);
        struct json_value *again = json_parse(out.data, out.len, err, sizeof err);
        check(again);
        round_trip(again);
        json_free(&again);
        buf_release(&out);
        if (json_object_check_keys(v, allowed, err, sizeof err))
            check(v->type == JSON_OBJECT);
        else
            check(err[0] != '\0');
        json_free(&v);
        check(v == NULL);
    } else {
        check(strncmp(err, "line ", 5) == 0 && strstr(err, ", column ") != NULL);
    }
    as_string(data, size);
    free(copy);
    return 0;
}
