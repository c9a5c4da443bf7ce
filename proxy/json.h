/*
 * proxy/json.h: a small, strict JSON reader and writer for the admin API
 * (issue 8: `POST /purge {"url": "...", "soft": true}`, answers and stats
 * in JSON).
 *
 * Reading follows RFC 8259 strictly: one value per document, no comments,
 * no trailing commas, no byte order mark, no duplicate object keys, no
 * invalid UTF-8, no lone surrogates.  The input is a (ptr, len) slice and
 * need not be NUL-terminated; its size is the caller's limit (the admin
 * listener caps a body at 64 KiB), the parser adds its own on nesting and
 * on the number of values so that any input costs bounded time and memory.
 *
 * Writing goes into a struct buf (proxy/buf.h) through a json_writer that
 * places the commas, compact or indented by two spaces for humans reading
 * stats with curl.
 *
 * Nothing is shared: a tree or a writer belongs to the thread using it.
 */
#ifndef TESSERA_JSON_H
#define TESSERA_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"

/* Deepest nesting of arrays and objects, for the parser and the writer:
 * recursion stays shallow and no admin shape comes near it. */
#define JSON_MAX_DEPTH 32

/* Most values one document may hold (containers, members' values and
 * array elements all count; object keys do not). */
#define JSON_MAX_VALUES 10000

enum json_type {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
};

struct json_member;

/*
 * A parsed value.  Read `type`, then the field of the union it names:
 *
 *   JSON_BOOL    boolean
 *   JSON_NUMBER  number.value: the value as a double (strtod rounding,
 *                -0 kept);
 *                number.is_int: the text had no fraction and no exponent and
 *                its value fits int64_t; then number.integer is that value,
 *                exact even beyond 2^53 ("1", "-0" are integers; "1.0",
 *                "1e3" are not)
 *   JSON_STRING  string.ptr, string.len: the decoded text, valid UTF-8,
 *                followed by a NUL that len does not count.  It may hold
 *                NUL bytes (from \u0000): use len, not strlen().
 *   JSON_ARRAY   array.items[0 .. array.n): the elements in order
 *   JSON_OBJECT  object.members[0 .. object.n): the members in document
 *                order, keys unique
 *
 * Iteration is over those fields:
 *   for (size_t i = 0; i < v->object.n; i++)
 *       use(v->object.members[i].key, v->object.members[i].key_len,
 *           &v->object.members[i].value);
 *
 * Empty arrays and objects have n == 0 (items/members may be NULL).
 * Everything reachable from a tree belongs to the tree: it lives until
 * json_free() and must not be modified or freed on its own.
 */
struct json_value {
    enum json_type type;
    union {
        bool boolean;
        struct {
            double value;
            int64_t integer;
            bool is_int;
        } number;
        struct {
            const char *ptr;
            size_t len;
        } string;
        struct {
            struct json_value *items;
            size_t n;
        } array;
        struct {
            struct json_member *members;
            size_t n;
        } object;
    };
};

/* An object member: key as decoded (UTF-8, NUL after it, may hold NUL). */
struct json_member {
    const char *key;
    size_t key_len;
    struct json_value value;
};

/* ---- reading ---- */

/*
 * json_parse: parse the whole of text[0 .. len) as one JSON document.
 *
 * Returns the root of a new tree, which the caller owns and releases with
 * json_free().  On bad input, or when memory runs out, returns NULL and
 * writes into err (when err is not NULL and errlen > 0; cut to fit) a
 * one-line message naming the position of the fault:
 *   line 1, column 17: expected ':' after object key
 * Lines count from 1 at each "\n"; columns count characters (UTF-8 code
 * points) from 1.  The parser stops at the first fault in document order;
 * which faults are reported and how is in tests/unit/proxy/json.c.
 * Beyond RFC 8259 it refuses: nesting deeper than JSON_MAX_DEPTH, more
 * than JSON_MAX_VALUES values, numbers whose magnitude overflows a double
 * (numbers too small for a double become 0 or a subnormal), duplicate keys
 * (compared after unescaping) and a leading byte order mark.
 *
 * Numbers are read in the "C" locale's format, as tessera never calls
 * setlocale().
 */
struct json_value *json_parse(const char *text, size_t len, char *err, size_t errlen);

/* json_free: release a tree json_parse() returned and set *v to NULL.
 * v must point to a root, never to a value inside a tree.  NULL and a
 * pointer to NULL are fine. */
void json_free(struct json_value **v);

/* json_object_get: the value of member `key` (NUL-terminated, compared
 * byte for byte) of obj, or NULL when obj is NULL, is not an object or has
 * no such member.  Linear in the number of members.  The result belongs to
 * obj's tree. */
const struct json_value *json_object_get(const struct json_value *obj, const char *key);

/*
 * json_object_check_keys: true when every member name of obj is one of
 * `allowed`, a NULL-terminated list, so that an admin handler refuses a
 * misspelt field instead of ignoring it.  Otherwise false with the first
 * offending name (in document order) in err:
 *   unknown field "foo"
 * or, when obj is not an object, "expected a JSON object".  err as for
 * json_parse(); names are quoted as JSON strings and cut after 40 bytes.
 */
bool json_object_check_keys(const struct json_value *obj, const char *const *allowed, char *err,
                            size_t errlen);

/* json_type_name: "null", "boolean", "number", "string", "array" or
 * "object", for messages such as `"soft" must be a boolean`. */
const char *json_type_name(enum json_type type);

/* ---- writing ---- */

/*
 * json_write_string: append s[0 .. len) to out as a JSON string: in double
 * quotes, with '"' and '\' escaped by a backslash and the control
 * characters U+0000..U+001F as \u00XX (lower-case hex).  Valid UTF-8 passes
 * through unescaped; each ill-formed sequence (the longest prefix of a
 * well-formed one, or a single byte) becomes U+FFFD, so the output is
 * always valid JSON.  Memory failure is out->oom, as for every append.
 */
void json_write_string(struct buf *out, const char *s, size_t len);

/*
 * A writer places the commas (and, when pretty, newlines and two-space
 * indents) between the values it is given.  Use:
 *
 *   struct json_writer w;
 *   json_writer_init(&w, &out, pretty);
 *   json_writer_begin_object(&w);
 *   json_writer_key(&w, "purged");
 *   json_writer_uint(&w, n);
 *   json_writer_end_object(&w);
 *   if (!json_writer_finish(&w))
 *       goto fail;               (out ran out of memory)
 *
 * compact: {"purged":3}    pretty: {\n  "purged": 3\n}\n
 *
 * Empty containers are written {} and [] in both modes.  Misuse is a
 * programmer error and asserted: a value inside an object without its key,
 * a key outside an object, a second top-level value, ending the wrong
 * container, nesting deeper than JSON_MAX_DEPTH, finishing with
 * containers open.  The writer does not own out; the fields are private.
 */
struct json_writer {
    struct buf *out;
    bool pretty;
    bool after_key;                     /* a key was written, its value is next */
    int depth;                          /* containers open */
    bool first[JSON_MAX_DEPTH + 1];     /* nothing written yet at that depth */
    bool in_object[JSON_MAX_DEPTH + 1]; /* container at that depth is an object */
};

/* json_writer_init: start a document appended to out (whatever out already
 * holds stays in front). */
void json_writer_init(struct json_writer *w, struct buf *out, bool pretty);

void json_writer_begin_object(struct json_writer *w);
void json_writer_end_object(struct json_writer *w);
void json_writer_begin_array(struct json_writer *w);
void json_writer_end_array(struct json_writer *w);

/* json_writer_key: the name of the next member (NUL-terminated, escaped as
 * by json_write_string()).  json_writer_key_len takes a (ptr, len) slice.
 * The writer does not check for duplicate keys. */
void json_writer_key(struct json_writer *w, const char *key);
void json_writer_key_len(struct json_writer *w, const char *key, size_t len);

/* Values.  json_writer_string takes a slice, json_writer_str a
 * NUL-terminated string, both escaped as by json_write_string().
 * json_writer_double writes the shortest of %.15g, %.16g, %.17g that reads
 * back as the same double, and null for NaN and the infinities, which JSON
 * cannot represent. */
void json_writer_string(struct json_writer *w, const char *s, size_t len);
void json_writer_str(struct json_writer *w, const char *s);
void json_writer_int(struct json_writer *w, int64_t n);
void json_writer_uint(struct json_writer *w, uint64_t n);
void json_writer_double(struct json_writer *w, double d);
void json_writer_bool(struct json_writer *w, bool b);
void json_writer_null(struct json_writer *w);

/* json_writer_value: a parsed tree (or part of one), numbers with
 * number.is_int as integers, the others as by json_writer_double. */
void json_writer_value(struct json_writer *w, const struct json_value *v);

/* json_writer_finish: end the document (pretty output gets a final "\n",
 * for a terminal) and return false when out ran out of memory at any
 * point, in which case its contents are incomplete. */
bool json_writer_finish(struct json_writer *w);

#endif
