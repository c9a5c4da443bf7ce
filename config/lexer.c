/*
 * config/lexer.c: turns config text into tokens with positions.
 *
 * A single forward pass over a caller-owned buffer.  Each token's text is
 * copied (and, for quoted strings, unescaped) into one growing buffer owned
 * by the lexer, so a token stays valid only until the next call: the parser
 * copies what it keeps.  The quoting rules follow nginx's
 * ngx_conf_read_token(), which operators already know.  No globals, no
 * locking: one lexer per file being read.
 */
#include "config/lexer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lexer_init(struct lexer *lx, const char *file, const char *src, size_t len)
{
    *lx = (struct lexer){.file = file, .src = src, .len = len, .line = 1, .col = 1};
}

void lexer_clear(struct lexer *lx)
{
    free(lx->buf);
    lx->buf = NULL;
    lx->cap = 0;
}

const char *lexer_kind_name(enum lexer_kind kind)
{
    switch (kind) {
    case LEXER_WORD:
        return "word";
    case LEXER_STRING:
        return "string";
    case LEXER_LBRACE:
        return "'{'";
    case LEXER_RBRACE:
        return "'}'";
    case LEXER_SEMICOLON:
        return "';'";
    case LEXER_EOF:
        return "end of file";
    }
    return "token";
}

void lexer_format_error(char *err, size_t errlen, const struct config_pos *pos, const char *fmt,
                        ...)
{
    va_list ap;
    int n;

    if (errlen == 0)
        return;
    n = snprintf(err, errlen, "%s:%u:%u: ", pos->file, pos->line, pos->col);
    if (n >= 0 && (size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    for (char *p = err; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    }
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool ends_word(char c)
{
    return is_space(c) || c == ';' || c == '{' || c == '}';
}

static struct config_pos here(const struct lexer *lx)
{
    return (struct config_pos){.file = lx->file, .line = lx->line, .col = lx->col};
}

static void advance(struct lexer *lx)
{
    if (lx->src[lx->off] == '\n') {
        lx->line++;
        lx->col = 1;
    } else {
        lx->col++;
    }
    lx->off++;
}

/* Make room for n more bytes plus a NUL after used bytes. */
static bool reserve(struct lexer *lx, size_t used, size_t n)
{
    size_t cap = lx->cap ? lx->cap : 64;
    char *p;

    while (cap < used + n + 1)
        cap *= 2;
    if (cap == lx->cap)
        return true;
    p = realloc(lx->buf, cap);
    if (!p)
        return false;
    lx->buf = p;
    lx->cap = cap;
    return true;
}

static void skip_blanks_and_comments(struct lexer *lx)
{
    while (lx->off < lx->len) {
        char c = lx->src[lx->off];
        if (is_space(c)) {
            advance(lx);
        } else if (c == '#') {
            while (lx->off < lx->len && lx->src[lx->off] != '\n')
                advance(lx);
        } else {
            return;
        }
    }
}

static bool lex_word(struct lexer *lx, struct lexer_token *tok, char *err, size_t errlen)
{
    size_t start = lx->off;
    size_t n;

    while (lx->off < lx->len && !ends_word(lx->src[lx->off])) {
        if (lx->src[lx->off] == '\0') {
            struct config_pos pos = here(lx);
            lexer_format_error(err, errlen, &pos, "unexpected NUL byte");
            return false;
        }
        advance(lx);
    }
    n = lx->off - start;
    if (!reserve(lx, 0, n)) {
        lexer_format_error(err, errlen, &tok->pos, "out of memory");
        return false;
    }
    memcpy(lx->buf, lx->src + start, n);
    lx->buf[n] = '\0';
    tok->kind = LEXER_WORD;
    tok->text = lx->buf;
    tok->len = n;
    return true;
}

/* The byte a backslash escape stands for, or 0 when the backslash is kept. */
static char unescape(char c)
{
    switch (c) {
    case '"':
    case '\'':
    case '\\':
        return c;
    case 'n':
        return '\n';
    case 't':
        return '\t';
    }
    return 0;
}

/* Read the body of a quoted string after its opening quote, up to and
 * including the closing one, decoding escapes into lx->buf. */
static bool lex_string_body(struct lexer *lx, char quote, size_t *lenp, char *err, size_t errlen,
                            const struct config_pos *open)
{
    size_t n = 0;

    for (;;) {
        char c, e;
        if (lx->off >= lx->len || (lx->src[lx->off] == '\\' && lx->off + 1 >= lx->len))
            goto unterminated;
        c = lx->src[lx->off];
        if (c == '\0') {
            struct config_pos pos = here(lx);
            lexer_format_error(err, errlen, &pos, "unexpected NUL byte in quoted string");
            return false;
        }
        advance(lx);
        if (c == quote)
            break;
        if (!reserve(lx, n, 2)) {
            lexer_format_error(err, errlen, open, "out of memory");
            return false;
        }
        if (c == '\\') {
            e = unescape(lx->src[lx->off]);
            if (e) {
                c = e;
                advance(lx);
            }
        }
        lx->buf[n++] = c;
    }
    *lenp = n;
    return true;

unterminated:
    lexer_format_error(err, errlen, open, "unterminated quoted string");
    return false;
}

static bool lex_string(struct lexer *lx, struct lexer_token *tok, char *err, size_t errlen)
{
    char quote = lx->src[lx->off];
    size_t n = 0;

    advance(lx);
    if (!reserve(lx, 0, 0)) {
        lexer_format_error(err, errlen, &tok->pos, "out of memory");
        return false;
    }
    if (!lex_string_body(lx, quote, &n, err, errlen, &tok->pos))
        return false;
    lx->buf[n] = '\0';
    /* nginx rejects "a"b too: it is almost always a missing space or ';'. */
    if (lx->off < lx->len && !ends_word(lx->src[lx->off]) && lx->src[lx->off] != '#') {
        struct config_pos pos = here(lx);
        lexer_format_error(err, errlen, &pos,
                           "expected white space, ';', '{' or '}' after a quoted string");
        return false;
    }
    tok->kind = LEXER_STRING;
    tok->text = lx->buf;
    tok->len = n;
    return true;
}

bool lexer_next(struct lexer *lx, struct lexer_token *tok, char *err, size_t errlen)
{
    char c;

    skip_blanks_and_comments(lx);
    tok->pos = here(lx);
    tok->text = "";
    tok->len = 0;
    if (lx->off >= lx->len) {
        tok->kind = LEXER_EOF;
        return true;
    }
    c = lx->src[lx->off];
    switch (c) {
    case '{':
        tok->kind = LEXER_LBRACE;
        break;
    case '}':
        tok->kind = LEXER_RBRACE;
        break;
    case ';':
        tok->kind = LEXER_SEMICOLON;
        break;
    case '"':
    case '\'':
        return lex_string(lx, tok, err, errlen);
    default:
        return lex_word(lx, tok, err, errlen);
    }
    advance(lx);
    return true;
}
