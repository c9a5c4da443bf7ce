/*
 * config/parser.c: builds the syntax tree from the lexer's tokens.
 *
 * A recursive descent over blocks: each directive collects its arguments up
 * to `;` or `{`, and a `{` parses a nested block into the directive's
 * children.  `include` is expanded right here, so the tree the typed layer
 * walks is already flat in file order and every node still knows its own
 * file, line and column.  The tree owns everything: arguments are copied out
 * of the lexer's buffer and file names are interned once in tree->files,
 * which positions point into.  Single-threaded; no globals.
 */
#include "config/parser.h"

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/lexer.h"

struct dir_list {
    struct conf_directive *items;
    size_t n;
    size_t cap;
};

struct parser {
    struct conf_tree *tree;
    size_t files_cap;
    char *err;
    size_t errlen;
    unsigned include_depth; /* 0 while reading the main file */
};

static bool parse_block(struct parser *p, struct lexer *lx, struct dir_list *list,
                        const struct config_pos *open, unsigned depth);

static void free_arg(struct conf_arg *a)
{
    free(a->text);
    a->text = NULL;
}

static void free_directives(struct conf_directive *items, size_t n);

/* Free what D owns, not D itself. */
static void free_directive(struct conf_directive *d)
{
    free_arg(&d->name);
    for (size_t j = 0; j < d->nargs; j++)
        free_arg(&d->args[j]);
    free(d->args);
    free_directives(d->children, d->nchildren);
}

static void free_directives(struct conf_directive *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free_directive(&items[i]);
    free(items);
}

void conf_tree_free(struct conf_tree **treep)
{
    struct conf_tree *tree = treep ? *treep : NULL;

    if (!tree)
        return;
    free_directives(tree->directives, tree->ndirectives);
    for (size_t i = 0; i < tree->nfiles; i++)
        free(tree->files[i]);
    free(tree->files);
    free(tree);
    *treep = NULL;
}

static bool fail_oom(struct parser *p, const struct config_pos *pos)
{
    lexer_format_error(p->err, p->errlen, pos, "out of memory");
    return false;
}

/* The tree's copy of file name NAME (added when new), or NULL when out of
 * memory. */
static const char *intern_file(struct parser *p, const char *name)
{
    struct conf_tree *t = p->tree;
    char *copy;

    for (size_t i = 0; i < t->nfiles; i++) {
        if (strcmp(t->files[i], name) == 0)
            return t->files[i];
    }
    if (t->nfiles == p->files_cap) {
        size_t cap = p->files_cap ? p->files_cap * 2 : 4;
        char **files = realloc(t->files, cap * sizeof *files);
        if (!files)
            return NULL;
        t->files = files;
        p->files_cap = cap;
    }
    copy = strdup(name);
    if (!copy)
        return NULL;
    t->files[t->nfiles++] = copy;
    return copy;
}

static bool copy_token(struct conf_arg *a, const struct lexer_token *tok)
{
    a->text = malloc(tok->len + 1);
    if (!a->text)
        return false;
    memcpy(a->text, tok->text, tok->len + 1);
    a->len = tok->len;
    a->quoted = tok->kind == LEXER_STRING;
    a->pos = tok->pos;
    return true;
}

static bool push_arg(struct conf_directive *d, const struct lexer_token *tok)
{
    struct conf_arg *args = realloc(d->args, (d->nargs + 1) * sizeof *args);

    if (!args)
        return false;
    d->args = args;
    if (!copy_token(&d->args[d->nargs], tok))
        return false;
    d->nargs++;
    return true;
}

static bool push_directive(struct dir_list *list, const struct conf_directive *d)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 8;
        struct conf_directive *items = realloc(list->items, cap * sizeof *items);
        if (!items)
            return false;
        list->items = items;
        list->cap = cap;
    }
    list->items[list->n++] = *d;
    return true;
}

/* Read all of PATH into a new NUL-terminated buffer; 0 or an errno value. */
static int read_file(const char *path, char **outp, size_t *lenp)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;

    if (!f)
        return errno;
    for (;;) {
        size_t n;
        if (cap - len < 4096) {
            char *nb;
            cap = cap ? cap * 2 : 8192;
            nb = realloc(buf, cap + 1);
            if (!nb) {
                rc = ENOMEM;
                goto out;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len > CONF_FILE_MAX) {
            rc = EFBIG;
            goto out;
        }
        if (n == 0) {
            if (ferror(f))
                rc = errno ? errno : EIO;
            break;
        }
    }
    buf[len] = '\0';
out:
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    *outp = buf;
    *lenp = len;
    return 0;
}

/* Parse TEXT, the contents of the (interned) file NAME, appending its
 * top-level directives to LIST. */
static bool parse_text(struct parser *p, const char *name, const char *text, size_t len,
                       struct dir_list *list)
{
    struct lexer lx;
    bool ok;

    lexer_init(&lx, name, text, len);
    ok = parse_block(p, &lx, list, NULL, 0);
    lexer_clear(&lx);
    return ok;
}

static bool has_wildcard(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

/* The glob pattern for include argument ARG written in file FROM: ARG when
 * absolute, else ARG under FROM's directory, with the directory's own glob
 * characters escaped.  NULL when out of memory. */
static char *include_pattern(const char *from, const char *arg)
{
    const char *slash = strrchr(from, '/');
    size_t dlen = (arg[0] == '/' || !slash) ? 0 : (size_t)(slash - from) + 1;
    size_t alen = strlen(arg);
    char *pat = malloc(2 * dlen + alen + 1);
    size_t n = 0;

    if (!pat)
        return NULL;
    for (size_t i = 0; i < dlen; i++) {
        if (strchr("*?[\\", from[i]))
            pat[n++] = '\\';
        pat[n++] = from[i];
    }
    memcpy(pat + n, arg, alen + 1);
    return pat;
}

static bool include_one(struct parser *p, const struct conf_arg *arg, const char *path,
                        struct dir_list *list)
{
    const char *name;
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, &text, &len);
    bool ok;

    if (rc) {
        lexer_format_error(p->err, p->errlen, &arg->pos, "cannot read include file '%s': %s", path,
                           strerror(rc));
        return false;
    }
    name = intern_file(p, path);
    if (!name) {
        free(text);
        return fail_oom(p, &arg->pos);
    }
    p->include_depth++;
    ok = parse_text(p, name, text, len, list);
    p->include_depth--;
    free(text);
    return ok;
}

static bool expand_include(struct parser *p, const struct conf_directive *d, struct dir_list *list)
{
    const struct conf_arg *arg = &d->args[0];
    glob_t g = {0};
    char *pat = NULL;
    bool ok = false;
    int rc;

    if (p->include_depth >= CONF_INCLUDE_DEPTH) {
        lexer_format_error(p->err, p->errlen, &d->name.pos,
                           "includes nested too deep (more than %d levels; does a file include "
                           "itself?)",
                           CONF_INCLUDE_DEPTH);
        return false;
    }
    pat = include_pattern(d->name.pos.file, arg->text);
    if (!pat)
        return fail_oom(p, &arg->pos);
    rc = glob(pat, 0, NULL, &g);
    if (rc == GLOB_NOMATCH) {
        ok = has_wildcard(arg->text);
        if (!ok)
            lexer_format_error(p->err, p->errlen, &arg->pos, "include file '%s' not found", pat);
        goto out;
    }
    if (rc != 0) {
        lexer_format_error(p->err, p->errlen, &arg->pos, "cannot expand include '%s'%s", pat,
                           rc == GLOB_NOSPACE ? ": out of memory" : "");
        goto out;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        if (!include_one(p, arg, g.gl_pathv[i], list))
            goto out;
    }
    ok = true;
out:
    if (rc == 0)
        globfree(&g);
    free(pat);
    return ok;
}

static bool is_include(const struct conf_directive *d)
{
    return strcmp(d->name.text, "include") == 0;
}

/* After the directive's name: its arguments, then `;` or a block. */
static bool parse_rest(struct parser *p, struct lexer *lx, struct conf_directive *d, unsigned depth)
{
    struct lexer_token tok;
    struct dir_list children = {0};

    for (;;) {
        if (!lexer_next(lx, &tok, p->err, p->errlen))
            return false;
        if (tok.kind == LEXER_SEMICOLON)
            return true;
        if (tok.kind == LEXER_LBRACE)
            break;
        if (tok.kind != LEXER_WORD && tok.kind != LEXER_STRING) {
            lexer_format_error(p->err, p->errlen, &tok.pos,
                               "expected ';' or '{' after directive '%s', found %s", d->name.text,
                               lexer_kind_name(tok.kind));
            return false;
        }
        if (!push_arg(d, &tok))
            return fail_oom(p, &tok.pos);
    }
    if (is_include(d)) {
        lexer_format_error(p->err, p->errlen, &tok.pos, "'include' does not take a block");
        return false;
    }
    if (depth >= CONF_BLOCK_DEPTH) {
        lexer_format_error(p->err, p->errlen, &tok.pos, "blocks nested too deep (more than %d)",
                           CONF_BLOCK_DEPTH);
        return false;
    }
    d->has_block = true;
    d->block_pos = tok.pos;
    if (!parse_block(p, lx, &children, &d->block_pos, depth + 1)) {
        free_directives(children.items, children.n);
        return false;
    }
    d->children = children.items;
    d->nchildren = children.n;
    return true;
}

static bool parse_directive(struct parser *p, struct lexer *lx, const struct lexer_token *first,
                            struct dir_list *list, unsigned depth)
{
    struct conf_directive d = {0};
    bool ok = false;

    if (!copy_token(&d.name, first))
        return fail_oom(p, &first->pos);
    if (!parse_rest(p, lx, &d, depth))
        goto out;
    if (!is_include(&d)) {
        ok = push_directive(list, &d);
        if (!ok)
            goto oom;
        return true;
    }
    if (d.nargs != 1) {
        lexer_format_error(p->err, p->errlen, &d.name.pos, "'include' takes 1 argument");
        goto out;
    }
    ok = expand_include(p, &d, list);
    goto out;
oom:
    fail_oom(p, &first->pos);
out:
    free_directive(&d);
    return ok;
}

static bool parse_block(struct parser *p, struct lexer *lx, struct dir_list *list,
                        const struct config_pos *open, unsigned depth)
{
    struct lexer_token tok;

    for (;;) {
        if (!lexer_next(lx, &tok, p->err, p->errlen))
            return false;
        switch (tok.kind) {
        case LEXER_WORD:
        case LEXER_STRING:
            if (!parse_directive(p, lx, &tok, list, depth))
                return false;
            continue;
        case LEXER_EOF:
            if (!open)
                return true;
            lexer_format_error(p->err, p->errlen, &tok.pos,
                               "unexpected end of file, expected '}' (block opened at %s:%u:%u)",
                               open->file, open->line, open->col);
            return false;
        case LEXER_RBRACE:
            if (open)
                return true;
            break;
        case LEXER_LBRACE:
        case LEXER_SEMICOLON:
            break;
        }
        lexer_format_error(p->err, p->errlen, &tok.pos, "unexpected %s", lexer_kind_name(tok.kind));
        return false;
    }
}

static struct conf_tree *parse_main(const char *name, const char *text, size_t len, char *err,
                                    size_t errlen)
{
    struct parser p = {.err = err, .errlen = errlen};
    struct dir_list top = {0};
    const char *iname;

    p.tree = calloc(1, sizeof *p.tree);
    if (!p.tree)
        goto oom;
    iname = intern_file(&p, name);
    if (!iname)
        goto oom;
    if (!parse_text(&p, iname, text, len, &top))
        goto fail;
    p.tree->directives = top.items;
    p.tree->ndirectives = top.n;
    return p.tree;
oom:
    snprintf(err, errlen, "%s: out of memory", name);
fail:
    free_directives(top.items, top.n);
    conf_tree_free(&p.tree);
    return NULL;
}

struct conf_tree *conf_tree_parse_string(const char *name, const char *text, size_t len, char *err,
                                         size_t errlen)
{
    return parse_main(name, text, len, err, errlen);
}

struct conf_tree *conf_tree_parse_file(const char *path, char *err, size_t errlen)
{
    struct conf_tree *tree;
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, &text, &len);

    if (rc) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(rc));
        return NULL;
    }
    tree = parse_main(path, text, len, err, errlen);
    free(text);
    return tree;
}
