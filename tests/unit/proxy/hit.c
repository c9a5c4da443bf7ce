/* tests/unit/proxy/hit.c: answers from a stored object (proxy/hit.c):
 * 200, 304, 412, 206 (single and multipart), 416, If-Range, HEAD, and the
 * 304 a passed-through 200 becomes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/hit.h"

static struct cache_object *object(void)
{
    static const char head[] = "Content-Type: text/plain\r\nETag: \"a\"\r\n"
                               "Cache-Control: max-age=60\r\nX-Other: 1\r\n";
    struct cache_object_meta meta = {
        .primary_key = "http://h/x",
        .primary_len = 10,
        .status = 200,
        .response_time = 1000000000000,
        .etag = "\"a\"",
        .etag_len = 3,
        .last_modified_ms = 999000000000,
    };
    struct cache_object_builder *b = cache_object_builder_new(&meta, 1000);
    assert_non_null(b);
    assert_true(cache_object_builder_set_head(b, head, strlen(head)));
    assert_true(cache_object_builder_append(b, "0123456789", 10));
    return cache_object_builder_finish(&b);
}

/* A request head from "Name: value" lines, spans into a static base. */
static char base[1024];
static struct http_head req;

static void request(const char *method, const char **lines)
{
    http_head_free(&req);
    memset(&req, 0, sizeof req);
    size_t len = strlen(method);
    memcpy(base, method, len);
    req.method = (struct http_span){0, (uint32_t)len};
    req.major = req.minor = 1;
    for (; lines && *lines; lines++) {
        const char *colon = strchr(*lines, ':');
        struct http_field *f = http_head_add_field(&req);
        size_t n = strlen(*lines), nlen = (size_t)(colon - *lines);
        memcpy(base + len, *lines, n);
        f->name = (struct http_span){(uint32_t)len, (uint32_t)nlen};
        f->value = http_span_trim(
            base, (struct http_span){(uint32_t)(len + nlen + 1), (uint32_t)(n - nlen - 1)});
        len += n;
    }
}

static void extra_fields(void *ctx, struct buf *out)
{
    (void)ctx;
    buf_append_str(out, "X-Cache: HIT\r\n");
}

static const struct hit_head hh = {.fields = extra_fields, .seed = 7};

static char *answer(const struct cache_object *obj, struct hit_plan *plan)
{
    struct hit_request hr;
    struct buf out = {0};
    hit_request_init(&hr, base, &req);
    hit_answer(obj, &hr, &hh, &out, plan, 2000000000000);
    hit_request_release(&hr);
    buf_append(&out, "", 1);
    return out.data;
}

static void test_full_answer(void **state)
{
    (void)state;
    struct cache_object *obj = object();
    struct hit_plan plan;
    request("GET", NULL);
    char *out = answer(obj, &plan);
    assert_int_equal(plan.status, 200);
    assert_int_equal(plan.body_start, 0);
    assert_int_equal(plan.body_end, 10);
    assert_string_equal(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"a\"\r\n"
                             "Cache-Control: max-age=60\r\nX-Other: 1\r\n"
                             "Content-Length: 10\r\nX-Cache: HIT\r\n\r\n");
    free(out);
    request("HEAD", NULL);
    out = answer(obj, &plan);
    assert_int_equal(plan.status, 200);
    assert_int_equal(plan.body_end, plan.body_start); /* no body for HEAD */
    assert_non_null(strstr(out, "Content-Length: 10\r\n"));
    free(out);
    cache_object_release(&obj);
}

static void test_not_modified_carries_only_the_listed_fields(void **state)
{
    (void)state;
    struct cache_object *obj = object();
    struct hit_plan plan;
    const char *inm[] = {"If-None-Match: \"x\", W/\"a\"", NULL};
    request("GET", inm);
    char *out = answer(obj, &plan);
    assert_int_equal(plan.status, 304);
    assert_int_equal(plan.body_end, plan.body_start);
    assert_string_equal(out, "HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n"
                             "Cache-Control: max-age=60\r\nX-Cache: HIT\r\n\r\n");
    free(out);
    const char *ims[] = {"If-Modified-Since: Sun, 09 Sep 2001 01:46:40 GMT", NULL};
    request("GET", ims); /* Last-Modified is 999000000 s: earlier, so not modified */
    out = answer(obj, &plan);
    assert_int_equal(plan.status, 304);
    free(out);
    cache_object_release(&obj);
}

static void test_precondition_failed(void **state)
{
    (void)state;
    struct cache_object *obj = object();
    struct hit_plan plan;
    const char *im[] = {"If-Match: \"b\"", NULL};
    request("GET", im);
    char *out = answer(obj, &plan);
    assert_int_equal(plan.status, 412);
    assert_string_equal(out, ""); /* the caller answers 412 */
    free(out);
    const char *any[] = {"If-Match: *", NULL};
    request("GET", any);
    out = answer(obj, &plan);
    assert_int_equal(plan.status, 200);
    free(out);
    cache_object_release(&obj);
}

static void test_single_range_is_a_slice(void **state)
{
    (void)state;
    struct cache_object *obj = object();
    struct hit_plan plan;
    const char *range[] = {"Range: bytes=2-4", NULL};
    request("GET", range);
    char *out = answer(obj, &plan);
    assert_int_equal(plan.status, 206);
    assert_int_equal(plan.body_start, 2);
    assert_int_equal(plan.body_end, 5);
    assert_non_null(strstr(out, "Content-Range: bytes 2-4/10\r\nContent-Length: 3\r\n"));
    free(out);
    const char *suffix[] = {"Range: bytes=-3", NULL};
    request("GET", suffix);
    out = answer(obj, &plan);
    assert_int_equal(plan.body_start, 7);
    assert_int_equal(plan.body_end, 10);
    free(out);
    cache_object_release(&obj);
}

static void test_multipart_length_matches_its_body(void **state)
{
    (void)state;
    struct cache_object *obj = object();
    struct hit_plan plan;
    const char *range[] = {"Range: bytes=0-0, 5-6", NULL};
    request("GET", range);
    char *out = answer(obj, &plan);
    assert_int_equal(plan.status, 206);
    assert_int_equal(plan.body_end, plan.body_start); /* the body is in out */
    const char *cl = strstr(out, "Content-Length: ");
    assert_non_null(cl);
    assert_non_null(strstr(out, "Content-Type: multipart/byteranges; boundary="));
    assert_null(strstr(out, "Content-Type: text/plain\r\nETag")); /* replaced */
    const char *body = strstr(out, "\r\n\r\n") + 4;
    assert_int_equal((size_t)strtoul(cl + 16, NULL, 10), strlen(body));
    assert_non_null(strstr(body, "Content-Range: bytes 0-0/10\r\n\r\n0\r\n"));
    assert_non_null(strstr(body, "Content-Range: bytes 5-6/10\r\n\r\n56\r\n"));
    free(out);
    cache_object_release(&obj);
}

static void test_unsatisfiable_and_if_range(void **state)
{
    (void)state;
    struct cache_object *obj = object();
    struct hit_plan plan;
    const char *far[] = {"Range: bytes=50-", NULL};
    request("GET", far);
    char *out = answer(obj, &plan);
    assert_int_equal(plan.status, 416);
    assert_non_null(strstr(out, "Content-Range: bytes */10\r\n"));
    free(out);
    const char *same[] = {"Range: bytes=0-1", "If-Range: \"a\"", NULL};
    request("GET", same);
    out = answer(obj, &plan);
    assert_int_equal(plan.status, 206);
    free(out);
    const char *old[] = {"Range: bytes=0-1", "If-Range: \"old\"", NULL};
    request("GET", old);
    out = answer(obj, &plan);
    assert_int_equal(plan.status, 200);
    assert_int_equal(plan.body_end, 10);
    free(out);
    const char *head_range[] = {"Range: bytes=0-1", NULL};
    request("HEAD", head_range); /* Range is for GET only */
    out = answer(obj, &plan);
    assert_int_equal(plan.status, 200);
    free(out);
    cache_object_release(&obj);
}

static void test_passed_through_200_becomes_304(void **state)
{
    (void)state;
    static char rbase[] = "ETag: \"p\"Content-Type: text/html";
    struct http_head resp = {.status = 200, .major = 1, .minor = 1};
    struct http_field *f = http_head_add_field(&resp);
    f->name = (struct http_span){0, 4};
    f->value = (struct http_span){6, 3};
    f = http_head_add_field(&resp);
    f->name = (struct http_span){9, 12};
    f->value = (struct http_span){23, 9};
    const char *inm[] = {"If-None-Match: \"p\"", NULL};
    request("GET", inm);
    struct hit_request hr;
    hit_request_init(&hr, base, &req);
    struct buf out = {0};
    assert_true(hit_not_modified_from_response(rbase, &resp, &hr, &hh, &out, 0));
    buf_append(&out, "", 1);
    assert_string_equal(out.data,
                        "HTTP/1.1 304 Not Modified\r\nETag: \"p\"\r\nX-Cache: HIT\r\n\r\n");
    buf_release(&out);
    hit_request_release(&hr);
    const char *other[] = {"If-None-Match: \"q\"", NULL};
    request("GET", other);
    hit_request_init(&hr, base, &req);
    assert_false(hit_not_modified_from_response(rbase, &resp, &hr, &hh, &out, 0));
    assert_int_equal(out.len, 0);
    hit_request_release(&hr);
    http_head_free(&resp);
}

static int teardown(void **state)
{
    (void)state;
    http_head_free(&req);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_answer),
        cmocka_unit_test(test_not_modified_carries_only_the_listed_fields),
        cmocka_unit_test(test_precondition_failed),
        cmocka_unit_test(test_single_range_is_a_slice),
        cmocka_unit_test(test_multipart_length_matches_its_body),
        cmocka_unit_test(test_unsatisfiable_and_if_range),
        cmocka_unit_test(test_passed_through_200_becomes_304),
    };
    return cmocka_run_group_tests_name("proxy/hit", tests, NULL, teardown);
}
