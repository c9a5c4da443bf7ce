/*
 * tests/unit/config/lexer.c: tokens and positions (config/lexer.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/lexer.h"

#define MAX_TOKENS 32

struct tok {
    enum lexer_kind kind;
    char text[64];
    unsigned line;
    unsigned col;
};

/* Lex SRC[0..LEN) to the end; returns the token count (EOF included) or -1
 * on an error, with the message in err. */
static int lex_all(const char *src, size_t len, struct tok *out, char *err, size_t errlen)
{
    struct lexer lx;
    struct lexer_token t;
    int n = 0;

    lexer_init(&lx, "t.conf", src, len);
    for (;;) {
        if (!lexer_next(&lx, &t, err, errlen)) {
            lexer_clear(&lx);
            return -1;
        }
        assert_true(n < MAX_TOKENS);
        assert_true(t.len < sizeof out[n].text);
        assert_int_equal(strlen(t.text), t.len);
        assert_string_equal(t.pos.file, "t.conf");
        out[n].kind = t.kind;
        memcpy(out[n].text, t.text, t.len + 1);
        out[n].line = t.pos.line;
        out[n].col = t.pos.col;
        n++;
        if (t.kind == LEXER_EOF)
            break;
    }
    lexer_clear(&lx);
    return n;
}

static int lex(const char *src, struct tok *out)
{
    char err[256] = "";
    int n = lex_all(src, strlen(src), out, err, sizeof err);

    if (n < 0)
        fail_msg("unexpected lexer error: %s", err);
    return n;
}

static void expect_tok(const struct tok *t, enum lexer_kind kind, const char *text, unsigned line,
                       unsigned col)
{
    assert_int_equal(t->kind, kind);
    assert_string_equal(t->text, text);
    assert_int_equal(t->line, line);
    assert_int_equal(t->col, col);
}

static void expect_lex_error(const char *src, size_t len, const char *msg)
{
    struct tok toks[MAX_TOKENS];
    char err[256] = "";

    assert_int_equal(lex_all(src, len, toks, err, sizeof err), -1);
    assert_string_equal(err, msg);
}

static void test_empty_input_is_eof_forever(void **state)
{
    struct lexer lx;
    struct lexer_token t;
    char err[64];

    (void)state;
    lexer_init(&lx, "t.conf", "", 0);
    for (int i = 0; i < 3; i++) {
        assert_true(lexer_next(&lx, &t, err, sizeof err));
        assert_int_equal(t.kind, LEXER_EOF);
        assert_int_equal(t.pos.line, 1);
        assert_int_equal(t.pos.col, 1);
        assert_string_equal(t.text, "");
    }
    lexer_clear(&lx);
}

static void test_simple_directive(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    assert_int_equal(lex("listen 127.0.0.1:8080;", t), 4);
    expect_tok(&t[0], LEXER_WORD, "listen", 1, 1);
    expect_tok(&t[1], LEXER_WORD, "127.0.0.1:8080", 1, 8);
    expect_tok(&t[2], LEXER_SEMICOLON, "", 1, 22);
    expect_tok(&t[3], LEXER_EOF, "", 1, 23);
}

static void test_blocks_and_lines(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    assert_int_equal(lex("backend app {\n\tserver x:1;\n}\n", t), 8);
    expect_tok(&t[0], LEXER_WORD, "backend", 1, 1);
    expect_tok(&t[1], LEXER_WORD, "app", 1, 9);
    expect_tok(&t[2], LEXER_LBRACE, "", 1, 13);
    expect_tok(&t[3], LEXER_WORD, "server", 2, 2); /* a tab is one byte */
    expect_tok(&t[4], LEXER_WORD, "x:1", 2, 9);
    expect_tok(&t[5], LEXER_SEMICOLON, "", 2, 12);
    expect_tok(&t[6], LEXER_RBRACE, "", 3, 1);
    expect_tok(&t[7], LEXER_EOF, "", 4, 1);
}

static void test_words_end_at_punctuation(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    assert_int_equal(lex("a{b}c;d", t), 8);
    expect_tok(&t[0], LEXER_WORD, "a", 1, 1);
    expect_tok(&t[1], LEXER_LBRACE, "", 1, 2);
    expect_tok(&t[2], LEXER_WORD, "b", 1, 3);
    expect_tok(&t[3], LEXER_RBRACE, "", 1, 4);
    expect_tok(&t[4], LEXER_WORD, "c", 1, 5);
    expect_tok(&t[5], LEXER_SEMICOLON, "", 1, 6);
    expect_tok(&t[6], LEXER_WORD, "d", 1, 7);
    expect_tok(&t[7], LEXER_EOF, "", 1, 8);
}

static void test_comments(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    assert_int_equal(lex("# top\nfoo; # trailing ; { }\n  # indented\nbar;", t), 5);
    expect_tok(&t[0], LEXER_WORD, "foo", 2, 1);
    expect_tok(&t[1], LEXER_SEMICOLON, "", 2, 4);
    expect_tok(&t[2], LEXER_WORD, "bar", 4, 1);
    expect_tok(&t[3], LEXER_SEMICOLON, "", 4, 4);
    expect_tok(&t[4], LEXER_EOF, "", 4, 5);
}

static void test_hash_inside_word_is_not_a_comment(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    /* nginx: '#' starts a comment only where a token could start. */
    assert_int_equal(lex("a#b c #d\ne;", t), 5);
    expect_tok(&t[0], LEXER_WORD, "a#b", 1, 1);
    expect_tok(&t[1], LEXER_WORD, "c", 1, 5);
    expect_tok(&t[2], LEXER_WORD, "e", 2, 1);
    expect_tok(&t[3], LEXER_SEMICOLON, "", 2, 2);
}

static void test_comment_at_eof_without_newline(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    assert_int_equal(lex("a; # no newline", t), 3);
    expect_tok(&t[2], LEXER_EOF, "", 1, 16);
}

static void test_backslash_kept_in_bare_words(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    assert_int_equal(lex("~ \\.json$ 'x'", t), 4);
    expect_tok(&t[0], LEXER_WORD, "~", 1, 1);
    expect_tok(&t[1], LEXER_WORD, "\\.json$", 1, 3);
    expect_tok(&t[2], LEXER_STRING, "x", 1, 11);
}

static void test_quoted_strings(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    assert_int_equal(lex("\"a b\" 'c;{}#d' \"it's\" '\"q\"' \"\"", t), 6);
    expect_tok(&t[0], LEXER_STRING, "a b", 1, 1);
    expect_tok(&t[1], LEXER_STRING, "c;{}#d", 1, 7);
    expect_tok(&t[2], LEXER_STRING, "it's", 1, 16);
    expect_tok(&t[3], LEXER_STRING, "\"q\"", 1, 23);
    expect_tok(&t[4], LEXER_STRING, "", 1, 29);
    expect_tok(&t[5], LEXER_EOF, "", 1, 31);
}

static void test_escapes(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    assert_int_equal(lex("\"q\\\" s\\' b\\\\ n\\n t\\t\" 'x\\'y'", t), 3);
    expect_tok(&t[0], LEXER_STRING, "q\" s' b\\ n\n t\t", 1, 1);
    expect_tok(&t[1], LEXER_STRING, "x'y", 1, 23);
}

static void test_unknown_escape_keeps_backslash(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    /* so a quoted regex means what it says */
    assert_int_equal(lex("\"\\.json$\\d\"", t), 2);
    expect_tok(&t[0], LEXER_STRING, "\\.json$\\d", 1, 1);
}

static void test_string_spanning_lines(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    assert_int_equal(lex("a \"one\ntwo\" b;", t), 5);
    expect_tok(&t[1], LEXER_STRING, "one\ntwo", 1, 3);
    expect_tok(&t[2], LEXER_WORD, "b", 2, 6);
}

static void test_string_followed_by_punctuation(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    assert_int_equal(lex("\"a\";\"b\"{\"c\"}\"d\"#x", t), 8);
    expect_tok(&t[0], LEXER_STRING, "a", 1, 1);
    expect_tok(&t[1], LEXER_SEMICOLON, "", 1, 4);
    expect_tok(&t[2], LEXER_STRING, "b", 1, 5);
    expect_tok(&t[3], LEXER_LBRACE, "", 1, 8);
    expect_tok(&t[4], LEXER_STRING, "c", 1, 9);
    expect_tok(&t[5], LEXER_RBRACE, "", 1, 12);
    expect_tok(&t[6], LEXER_STRING, "d", 1, 13);
    expect_tok(&t[7], LEXER_EOF, "", 1, 18);
}

static void test_quotes_inside_a_word_are_literal(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    assert_int_equal(lex("don't a\"b;", t), 4);
    expect_tok(&t[0], LEXER_WORD, "don't", 1, 1);
    expect_tok(&t[1], LEXER_WORD, "a\"b", 1, 7);
}

static void test_crlf_line_endings(void **state)
{
    struct tok t[MAX_TOKENS];

    (void)state;
    assert_int_equal(lex("a;\r\nb;\r\n", t), 5);
    expect_tok(&t[2], LEXER_WORD, "b", 2, 1);
    expect_tok(&t[4], LEXER_EOF, "", 3, 1);
}

static void test_long_tokens_grow_the_buffer(void **state)
{
    char src[3000];
    struct lexer lx;
    struct lexer_token t;
    char err[64];

    (void)state;
    memset(src, 'w', 1000);
    src[1000] = ' ';
    src[1001] = '"';
    memset(src + 1002, 's', 1500);
    src[2502] = '"';
    lexer_init(&lx, "t.conf", src, 2503);
    assert_true(lexer_next(&lx, &t, err, sizeof err));
    assert_int_equal(t.kind, LEXER_WORD);
    assert_int_equal(t.len, 1000);
    assert_true(lexer_next(&lx, &t, err, sizeof err));
    assert_int_equal(t.kind, LEXER_STRING);
    assert_int_equal(t.len, 1500);
    assert_int_equal(t.text[1499], 's');
    assert_int_equal(t.text[1500], '\0');
    assert_true(lexer_next(&lx, &t, err, sizeof err));
    assert_int_equal(t.kind, LEXER_EOF);
    lexer_clear(&lx);
}

static void test_unterminated_string(void **state)
{
    (void)state;
    expect_lex_error("\"abc", 4, "t.conf:1:1: unterminated quoted string");
    expect_lex_error("a;\n  'abc\n\n", 11, "t.conf:2:3: unterminated quoted string");
    expect_lex_error("\"abc\\", 5, "t.conf:1:1: unterminated quoted string");
    expect_lex_error("\"abc\\\"", 6, "t.conf:1:1: unterminated quoted string");
    expect_lex_error("'", 1, "t.conf:1:1: unterminated quoted string");
}

static void test_string_glued_to_next_token(void **state)
{
    (void)state;
    expect_lex_error("x \"a\"b;", 7,
                     "t.conf:1:6: expected white space, ';', '{' or '}' after a quoted string");
    expect_lex_error("'a''b'", 6,
                     "t.conf:1:4: expected white space, ';', '{' or '}' after a quoted string");
}

static void test_nul_byte(void **state)
{
    (void)state;
    expect_lex_error("ab\0c;", 5, "t.conf:1:3: unexpected NUL byte");
    expect_lex_error("x\n\"a\0\"", 6, "t.conf:2:3: unexpected NUL byte in quoted string");
}

static void test_nul_in_comment_is_ignored(void **state)
{
    struct tok t[MAX_TOKENS];
    char err[64];

    (void)state;
    assert_int_equal(lex_all("# a\0b\nx;", 8, t, err, sizeof err), 3);
    expect_tok(&t[0], LEXER_WORD, "x", 2, 1);
}

static void test_kind_names(void **state)
{
    (void)state;
    assert_string_equal(lexer_kind_name(LEXER_WORD), "word");
    assert_string_equal(lexer_kind_name(LEXER_STRING), "string");
    assert_string_equal(lexer_kind_name(LEXER_LBRACE), "'{'");
    assert_string_equal(lexer_kind_name(LEXER_RBRACE), "'}'");
    assert_string_equal(lexer_kind_name(LEXER_SEMICOLON), "';'");
    assert_string_equal(lexer_kind_name(LEXER_EOF), "end of file");
}

static void test_format_error(void **state)
{
    struct config_pos pos = {.file = "a.conf", .line = 3, .col = 7};
    char err[64];
    char tiny[8];

    (void)state;
    lexer_format_error(err, sizeof err, &pos, "bad '%s' %d", "x\ny\tz", 5);
    assert_string_equal(err, "a.conf:3:7: bad 'x?y?z' 5");
    lexer_format_error(tiny, sizeof tiny, &pos, "long message");
    assert_string_equal(tiny, "a.conf:");
    lexer_format_error(err, 0, &pos, "nothing written");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_input_is_eof_forever),
        cmocka_unit_test(test_simple_directive),
        cmocka_unit_test(test_blocks_and_lines),
        cmocka_unit_test(test_words_end_at_punctuation),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_hash_inside_word_is_not_a_comment),
        cmocka_unit_test(test_comment_at_eof_without_newline),
        cmocka_unit_test(test_backslash_kept_in_bare_words),
        cmocka_unit_test(test_quoted_strings),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_unknown_escape_keeps_backslash),
        cmocka_unit_test(test_string_spanning_lines),
        cmocka_unit_test(test_string_followed_by_punctuation),
        cmocka_unit_test(test_quotes_inside_a_word_are_literal),
        cmocka_unit_test(test_crlf_line_endings),
        cmocka_unit_test(test_long_tokens_grow_the_buffer),
        cmocka_unit_test(test_unterminated_string),
        cmocka_unit_test(test_string_glued_to_next_token),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_nul_in_comment_is_ignored),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_format_error),
    };

    return cmocka_run_group_tests_name("config/lexer", tests, NULL, NULL);
}
