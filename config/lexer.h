/*
 * config/lexer.h: the tokens of tessera's nginx-like config language.
 *
 *     # a comment, to the end of the line
 *     listen 127.0.0.1:8080;
 *     route ~ "\.json$" { backend app; }
 *
 * Tokens are bare words, quoted strings ("..." or '...'), `{`, `}` and `;`.
 * A bare word ends at white space, `;`, `{` or `}`; `#` starts a comment only
 * where a token could start, so `a#b` is one word (as in nginx).  Backslashes
 * in bare words are kept as written (so `~ \.json$` needs no quoting).  In
 * quoted strings \" \' \\ \n and \t are escapes; any other backslash is kept
 * with the character after it, so regexes survive quoting.  A quoted string
 * may span lines and must be followed by white space, `;`, `{`, `}`, `#` or
 * the end of the file.  A NUL byte outside a comment is an error.
 *
 * Positions are 1-based; columns count bytes.  Every error is one line of
 * the form "FILE:LINE:COL: message".
 */
#ifndef TESSERA_CONFIG_LEXER_H
#define TESSERA_CONFIG_LEXER_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

enum lexer_kind {
    LEXER_WORD,      /* a bare word */
    LEXER_STRING,    /* a quoted string, escapes decoded */
    LEXER_LBRACE,    /* { */
    LEXER_RBRACE,    /* } */
    LEXER_SEMICOLON, /* ; */
    LEXER_EOF,       /* end of input; pos is just after the last byte */
};

struct lexer_token {
    enum lexer_kind kind;
    const char *text;      /* WORD, STRING: NUL-terminated, owned by the lexer,
                            * valid until the next lexer_next() or lexer_clear();
                            * "" for the other kinds */
    size_t len;            /* bytes in text, NUL excluded */
    struct config_pos pos; /* of the first byte (the opening quote of a string);
                            * pos.file is the name given to lexer_init() */
};

/* The lexer's state.  The fields are private: use the functions below. */
struct lexer {
    const char *file;
    const char *src;
    size_t len;
    size_t off;
    unsigned line;
    unsigned col;
    char *buf; /* the current token's text */
    size_t cap;
};

/*
 * lexer_init: start reading SRC[0..LEN).  FILE is the name used in positions
 * and messages.  Neither is copied: both must outlive the lexer and its
 * tokens.  Cannot fail; call lexer_clear() when done.
 */
void lexer_init(struct lexer *lx, const char *file, const char *src, size_t len);

/*
 * lexer_next: read the next token into *tok.  At the end of the input it
 * returns LEXER_EOF tokens forever.  Returns false on a lexical error (an
 * unterminated string, a NUL byte, a quoted string glued to the next token,
 * out of memory) and writes "FILE:LINE:COL: message" into err (errlen bytes,
 * always NUL-terminated); *tok is then undefined.
 */
bool lexer_next(struct lexer *lx, struct lexer_token *tok, char *err, size_t errlen);

/* lexer_clear: free the lexer's buffer; tokens it returned become invalid.
 * The lexer may be initialized again afterwards. */
void lexer_clear(struct lexer *lx);

/* lexer_kind_name: "word", "string", "'{'", "'}'", "';'", "end of file". */
const char *lexer_kind_name(enum lexer_kind kind);

/*
 * lexer_format_error: write "FILE:LINE:COL: " and the printf-style message
 * into err (errlen bytes, always NUL-terminated, truncated when too long).
 * Control characters (from quoted text in the message) become '?' so the
 * error stays on one line.  Every config/ module reports errors this way.
 */
void lexer_format_error(char *err, size_t errlen, const struct config_pos *pos, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

#endif
