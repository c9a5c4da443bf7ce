/*
 * tests/unit/config/parser.c: the syntax tree and includes (config/parser.c).
 *
 * Include tests write their files into a fresh mkdtemp() directory under
 * /tmp, removed after each test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/parser.h"

/* ---- temporary directories ---- */

struct tmp {
    char dir[64]; /* "/tmp/tessera-parser-XXXXXX" */
};

static int tmp_setup(void **state)
{
    struct tmp *t = calloc(1, sizeof *t);

    if (!t)
        return -1;
    snprintf(t->dir, sizeof t->dir, "/tmp/tessera-parser-XXXXXX");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int tmp_teardown(void **state)
{
    struct tmp *t = *state;
    int rc = nftw(t->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

    free(t);
    return rc;
}

/* Write TEXT to DIR/REL, creating REL's directories. */
static void write_file(const char *dir, const char *rel, const char *text)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, rel);
    for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static struct conf_tree *parse_ok(const char *text)
{
    char err[512] = "";
    struct conf_tree *tree = conf_tree_parse_string("t.conf", text, strlen(text), err, sizeof err);

    if (!tree)
        fail_msg("unexpected parse error: %s", err);
    return tree;
}

static void expect_parse_error(const char *text, const char *msg)
{
    char err[512] = "";
    struct conf_tree *tree = conf_tree_parse_string("t.conf", text, strlen(text), err, sizeof err);

    assert_null(tree);
    assert_string_equal(err, msg);
}

static struct conf_tree *parse_file_ok(const struct tmp *t, const char *rel)
{
    char path[PATH_MAX], err[1024] = "";
    struct conf_tree *tree;

    snprintf(path, sizeof path, "%s/%s", t->dir, rel);
    tree = conf_tree_parse_file(path, err, sizeof err);
    if (!tree)
        fail_msg("unexpected parse error: %s", err);
    return tree;
}

/* Parse DIR/REL, expect failure, and compare the message with the format
 * FMT where each %s is the temporary directory. */
static void expect_file_error(const struct tmp *t, const char *rel, const char *fmt)
{
    char path[PATH_MAX], err[1024] = "", want[2048];
    struct conf_tree *tree;

    snprintf(path, sizeof path, "%s/%s", t->dir, rel);
    tree = conf_tree_parse_file(path, err, sizeof err);
    assert_null(tree);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(want, sizeof want, fmt, t->dir, t->dir, t->dir, t->dir);
#pragma GCC diagnostic pop
    assert_string_equal(err, want);
}

static void expect_names(const struct conf_directive *items, size_t n, const char *names)
{
    char got[512] = "";
    size_t len = 0;

    for (size_t i = 0; i < n; i++)
        len +=
            (size_t)snprintf(got + len, sizeof got - len, "%s%s", i ? " " : "", items[i].name.text);
    assert_string_equal(got, names);
}

/* ---- trees ---- */

static void test_empty_file(void **state)
{
    struct conf_tree *tree;

    (void)state;
    tree = parse_ok("");
    assert_int_equal(tree->ndirectives, 0);
    assert_int_equal(tree->nfiles, 1);
    assert_string_equal(tree->files[0], "t.conf");
    conf_tree_free(&tree);
    assert_null(tree);

    tree = parse_ok("# only a comment\n\n   \n");
    assert_int_equal(tree->ndirectives, 0);
    conf_tree_free(&tree);
}

static void test_tree_shape(void **state)
{
    struct conf_tree *tree;
    const struct conf_directive *a, *b, *c;

    (void)state;
    tree = parse_ok("a 1 \"two\" {\n  b;\n  c x { d; }\n}\ne 'q';\n");
    expect_names(tree->directives, tree->ndirectives, "a e");

    a = &tree->directives[0];
    assert_string_equal(a->name.text, "a");
    assert_false(a->name.quoted);
    assert_ptr_equal(a->name.pos.file, tree->files[0]);
    assert_int_equal(a->name.pos.line, 1);
    assert_int_equal(a->name.pos.col, 1);
    assert_int_equal(a->nargs, 2);
    assert_string_equal(a->args[0].text, "1");
    assert_int_equal(a->args[0].len, 1);
    assert_false(a->args[0].quoted);
    assert_int_equal(a->args[0].pos.col, 3);
    assert_string_equal(a->args[1].text, "two");
    assert_int_equal(a->args[1].len, 3);
    assert_true(a->args[1].quoted);
    assert_int_equal(a->args[1].pos.col, 5);
    assert_true(a->has_block);
    assert_int_equal(a->block_pos.line, 1);
    assert_int_equal(a->block_pos.col, 11);
    expect_names(a->children, a->nchildren, "b c");

    b = &a->children[0];
    assert_int_equal(b->nargs, 0);
    assert_false(b->has_block);
    assert_int_equal(b->name.pos.line, 2);
    assert_int_equal(b->name.pos.col, 3);

    c = &a->children[1];
    assert_int_equal(c->nargs, 1);
    assert_true(c->has_block);
    expect_names(c->children, c->nchildren, "d");
    assert_int_equal(c->children[0].name.pos.line, 3);
    assert_int_equal(c->children[0].name.pos.col, 9);

    assert_true(tree->directives[1].args[0].quoted);
    assert_int_equal(tree->directives[1].name.pos.line, 5);
    conf_tree_free(&tree);
}

static void test_empty_block(void **state)
{
    struct conf_tree *tree;

    (void)state;
    tree = parse_ok("limits {}");
    assert_int_equal(tree->ndirectives, 1);
    assert_true(tree->directives[0].has_block);
    assert_int_equal(tree->directives[0].nchildren, 0);
    conf_tree_free(&tree);
}

static void test_quoted_name_and_escapes(void **state)
{
    struct conf_tree *tree;

    (void)state;
    tree = parse_ok("\"na me\" \"a\\\"b\" '';");
    assert_string_equal(tree->directives[0].name.text, "na me");
    assert_true(tree->directives[0].name.quoted);
    assert_string_equal(tree->directives[0].args[0].text, "a\"b");
    assert_int_equal(tree->directives[0].args[1].len, 0);
    assert_true(tree->directives[0].args[1].quoted);
    conf_tree_free(&tree);
}

static void test_free_is_null_safe(void **state)
{
    struct conf_tree *tree = NULL;

    (void)state;
    conf_tree_free(&tree);
    conf_tree_free(NULL);
}

/* ---- syntax errors ---- */

static void test_unexpected_tokens(void **state)
{
    (void)state;
    expect_parse_error("}", "t.conf:1:1: unexpected '}'");
    expect_parse_error("a;\n  };", "t.conf:2:3: unexpected '}'");
    expect_parse_error(";", "t.conf:1:1: unexpected ';'");
    expect_parse_error("a { ; }", "t.conf:1:5: unexpected ';'");
    expect_parse_error("{ a; }", "t.conf:1:1: unexpected '{'");
}

static void test_missing_semicolon(void **state)
{
    (void)state;
    expect_parse_error("a b",
                       "t.conf:1:4: expected ';' or '{' after directive 'a', found end of file");
    expect_parse_error("x { b 1 }",
                       "t.conf:1:9: expected ';' or '{' after directive 'b', found '}'");
    expect_parse_error("a\n", "t.conf:2:1: expected ';' or '{' after directive 'a', found end "
                              "of file");
}

static void test_unterminated_block(void **state)
{
    (void)state;
    expect_parse_error("a {\n  b;\n",
                       "t.conf:3:1: unexpected end of file, expected '}' (block opened at "
                       "t.conf:1:3)");
    expect_parse_error("a { b { c; }",
                       "t.conf:1:13: unexpected end of file, expected '}' (block opened at "
                       "t.conf:1:3)");
}

static void test_lexer_errors_pass_through(void **state)
{
    (void)state;
    expect_parse_error("a {\n b \"oops;\n}\n", "t.conf:2:4: unterminated quoted string");
}

static void test_block_depth_limit(void **state)
{
    struct conf_tree *tree;
    char text[512] = "";
    char msg[128];
    size_t n = 0;

    (void)state;
    for (int i = 0; i < CONF_BLOCK_DEPTH; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "a{");
    for (int i = 0; i < CONF_BLOCK_DEPTH; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "}");
    tree = parse_ok(text);
    conf_tree_free(&tree);

    n = 0;
    for (int i = 0; i <= CONF_BLOCK_DEPTH; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "a{");
    snprintf(msg, sizeof msg, "t.conf:1:%d: blocks nested too deep (more than %d)",
             2 * CONF_BLOCK_DEPTH + 2, CONF_BLOCK_DEPTH);
    expect_parse_error(text, msg);
}

static void test_missing_main_file(void **state)
{
    char err[256];

    (void)state;
    assert_null(conf_tree_parse_file("/nonexistent/tessera.conf", err, sizeof err));
    assert_string_equal(err, "/nonexistent/tessera.conf: cannot open: No such file or directory");
}

/* ---- includes ---- */

static void test_include_glob_sorted_in_place(void **state)
{
    struct tmp *t = *state;
    struct conf_tree *tree;
    char path[PATH_MAX];

    write_file(t->dir, "main.conf", "first;\ninclude sub/*.conf;\nlast;\n");
    write_file(t->dir, "sub/b.conf", "b1;\nb2;\n");
    write_file(t->dir, "sub/a.conf", "a1;\n");
    write_file(t->dir, "sub/ignored.txt", "nope;\n");
    tree = parse_file_ok(t, "main.conf");
    expect_names(tree->directives, tree->ndirectives, "first a1 b1 b2 last");
    assert_int_equal(tree->nfiles, 3);
    snprintf(path, sizeof path, "%s/main.conf", t->dir);
    assert_string_equal(tree->files[0], path);
    snprintf(path, sizeof path, "%s/sub/a.conf", t->dir);
    assert_string_equal(tree->files[1], path);
    assert_ptr_equal(tree->directives[1].name.pos.file, tree->files[1]);
    assert_int_equal(tree->directives[1].name.pos.line, 1);
    assert_ptr_equal(tree->directives[3].name.pos.file, tree->files[2]);
    assert_int_equal(tree->directives[3].name.pos.line, 2);
    assert_ptr_equal(tree->directives[4].name.pos.file, tree->files[0]);
    assert_int_equal(tree->directives[4].name.pos.line, 3);
    conf_tree_free(&tree);
}

static void test_include_inside_block(void **state)
{
    struct tmp *t = *state;
    struct conf_tree *tree;

    write_file(t->dir, "main.conf", "blk {\n  x;\n  include part.conf;\n  y;\n}\n");
    write_file(t->dir, "part.conf", "p { q; }\n");
    tree = parse_file_ok(t, "main.conf");
    expect_names(tree->directives, tree->ndirectives, "blk");
    expect_names(tree->directives[0].children, tree->directives[0].nchildren, "x p y");
    expect_names(tree->directives[0].children[1].children, 1, "q");
    conf_tree_free(&tree);
}

static void test_nested_include_relative_to_including_file(void **state)
{
    struct tmp *t = *state;
    struct conf_tree *tree;

    write_file(t->dir, "main.conf", "include d1/one.conf;\n");
    write_file(t->dir, "d1/one.conf", "one;\ninclude d2/two.conf;\n");
    write_file(t->dir, "d1/d2/two.conf", "two;\n");
    tree = parse_file_ok(t, "main.conf");
    expect_names(tree->directives, tree->ndirectives, "one two");
    conf_tree_free(&tree);
}

static void test_include_same_file_twice_interns_name(void **state)
{
    struct tmp *t = *state;
    struct conf_tree *tree;

    write_file(t->dir, "main.conf", "include x.conf;\ninclude x.conf;\n");
    write_file(t->dir, "x.conf", "x;\n");
    tree = parse_file_ok(t, "main.conf");
    expect_names(tree->directives, tree->ndirectives, "x x");
    assert_int_equal(tree->nfiles, 2);
    assert_ptr_equal(tree->directives[0].name.pos.file, tree->directives[1].name.pos.file);
    conf_tree_free(&tree);
}

static void test_include_absolute_path(void **state)
{
    struct tmp *t = *state;
    struct conf_tree *tree;
    char text[PATH_MAX + 64];

    snprintf(text, sizeof text, "include %s/abs.conf;\n", t->dir);
    write_file(t->dir, "main.conf", text);
    write_file(t->dir, "abs.conf", "abs;\n");
    tree = parse_file_ok(t, "main.conf");
    expect_names(tree->directives, tree->ndirectives, "abs");
    conf_tree_free(&tree);
}

static void test_include_glob_matching_nothing_is_fine(void **state)
{
    struct tmp *t = *state;
    struct conf_tree *tree;

    write_file(t->dir, "main.conf", "a;\ninclude none/*.conf;\ninclude x?.conf;\nb;\n");
    tree = parse_file_ok(t, "main.conf");
    expect_names(tree->directives, tree->ndirectives, "a b");
    assert_int_equal(tree->nfiles, 1);
    conf_tree_free(&tree);
}

static void test_include_missing_plain_file(void **state)
{
    struct tmp *t = *state;

    write_file(t->dir, "main.conf", "a;\ninclude missing.conf;\n");
    expect_file_error(t, "main.conf", "%s/main.conf:2:9: include file '%s/missing.conf' not found");
}

static void test_include_directory_is_an_error(void **state)
{
    struct tmp *t = *state;

    write_file(t->dir, "main.conf", "include sub;\n");
    write_file(t->dir, "sub/x.conf", "x;\n");
    expect_file_error(t, "main.conf",
                      "%s/main.conf:1:9: cannot read include file '%s/sub': Is a directory");
}

static void test_include_argument_count(void **state)
{
    (void)state;
    expect_parse_error("include;", "t.conf:1:1: 'include' takes 1 argument");
    expect_parse_error("a {\n  include a b;\n}", "t.conf:2:3: 'include' takes 1 argument");
}

static void test_include_with_block(void **state)
{
    (void)state;
    expect_parse_error("include x.conf { a; }", "t.conf:1:16: 'include' does not take a block");
}

static void test_include_error_names_the_included_file(void **state)
{
    struct tmp *t = *state;

    write_file(t->dir, "main.conf", "a;\ninclude bad.conf;\n");
    write_file(t->dir, "bad.conf", "ok;\n  }\n");
    expect_file_error(t, "main.conf", "%s/bad.conf:2:3: unexpected '}'");
}

static void test_include_cannot_close_the_includers_block(void **state)
{
    struct tmp *t = *state;

    write_file(t->dir, "main.conf", "blk {\n  include open.conf;\n}\n");
    write_file(t->dir, "open.conf", "inner {\n");
    expect_file_error(t, "main.conf",
                      "%s/open.conf:2:1: unexpected end of file, expected '}' (block opened at "
                      "%s/open.conf:1:7)");
}

static void test_include_depth_limit(void **state)
{
    struct tmp *t = *state;
    struct conf_tree *tree;
    char name[32], text[64], err[1024], path[PATH_MAX], want[PATH_MAX + 64];

    /* main -> f1 -> ... -> f16 is the deepest chain allowed. */
    write_file(t->dir, "main.conf", "include f1.conf;\n");
    for (int i = 1; i <= CONF_INCLUDE_DEPTH; i++) {
        snprintf(name, sizeof name, "f%d.conf", i);
        snprintf(text, sizeof text, "d%d;\n", i);
        write_file(t->dir, name, text);
        if (i < CONF_INCLUDE_DEPTH) {
            snprintf(text, sizeof text, "d%d;\ninclude f%d.conf;\n", i, i + 1);
            write_file(t->dir, name, text);
        }
    }
    tree = parse_file_ok(t, "main.conf");
    assert_int_equal(tree->ndirectives, CONF_INCLUDE_DEPTH);
    assert_int_equal(tree->nfiles, CONF_INCLUDE_DEPTH + 1);
    conf_tree_free(&tree);

    snprintf(name, sizeof name, "f%d.conf", CONF_INCLUDE_DEPTH);
    write_file(t->dir, name, "\n  include f17.conf;\n");
    write_file(t->dir, "f17.conf", "d17;\n");
    snprintf(path, sizeof path, "%s/main.conf", t->dir);
    assert_null(conf_tree_parse_file(path, err, sizeof err));
    snprintf(want, sizeof want, "%s/%s:2:3: includes nested too deep (more than 16 levels", t->dir,
             name);
    assert_memory_equal(err, want, strlen(want));
}

static void test_include_self_is_stopped(void **state)
{
    struct tmp *t = *state;

    write_file(t->dir, "main.conf", "a;\ninclude main.conf;\n");
    expect_file_error(t, "main.conf",
                      "%s/main.conf:2:1: includes nested too deep (more than 16 levels; does a "
                      "file include itself?)");
}

static void test_include_dir_with_glob_characters(void **state)
{
    struct tmp *t = *state;
    struct conf_tree *tree;

    /* The including file's directory is literal, not a pattern. */
    write_file(t->dir, "we[ir]d*/main.conf", "include inc.conf;\ninclude p*.conf;\n");
    write_file(t->dir, "we[ir]d*/inc.conf", "inc;\n");
    write_file(t->dir, "we[ir]d*/part.conf", "part;\n");
    tree = parse_file_ok(t, "we[ir]d*/main.conf");
    expect_names(tree->directives, tree->ndirectives, "inc part");
    conf_tree_free(&tree);
}

static void test_include_from_string_is_relative_to_its_name(void **state)
{
    struct tmp *t = *state;
    struct conf_tree *tree;
    char name[PATH_MAX], err[512];
    const char *text = "include x.conf;";

    write_file(t->dir, "x.conf", "x;\n");
    snprintf(name, sizeof name, "%s/virtual.conf", t->dir);
    tree = conf_tree_parse_string(name, text, strlen(text), err, sizeof err);
    assert_non_null(tree);
    expect_names(tree->directives, tree->ndirectives, "x");
    conf_tree_free(&tree);
}

#define TMP_TEST(f) cmocka_unit_test_setup_teardown(f, tmp_setup, tmp_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_tree_shape),
        cmocka_unit_test(test_empty_block),
        cmocka_unit_test(test_quoted_name_and_escapes),
        cmocka_unit_test(test_free_is_null_safe),
        cmocka_unit_test(test_unexpected_tokens),
        cmocka_unit_test(test_missing_semicolon),
        cmocka_unit_test(test_unterminated_block),
        cmocka_unit_test(test_lexer_errors_pass_through),
        cmocka_unit_test(test_block_depth_limit),
        cmocka_unit_test(test_missing_main_file),
        TMP_TEST(test_include_glob_sorted_in_place),
        TMP_TEST(test_include_inside_block),
        TMP_TEST(test_nested_include_relative_to_including_file),
        TMP_TEST(test_include_same_file_twice_interns_name),
        TMP_TEST(test_include_absolute_path),
        TMP_TEST(test_include_glob_matching_nothing_is_fine),
        TMP_TEST(test_include_missing_plain_file),
        TMP_TEST(test_include_directory_is_an_error),
        cmocka_unit_test(test_include_argument_count),
        cmocka_unit_test(test_include_with_block),
        TMP_TEST(test_include_error_names_the_included_file),
        TMP_TEST(test_include_cannot_close_the_includers_block),
        TMP_TEST(test_include_depth_limit),
        TMP_TEST(test_include_self_is_stopped),
        TMP_TEST(test_include_dir_with_glob_characters),
        TMP_TEST(test_include_from_string_is_relative_to_its_name),
    };

    return cmocka_run_group_tests_name("config/parser", tests, NULL, NULL);
}
