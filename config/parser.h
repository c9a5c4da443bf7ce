/*
 * config/parser.h: the generic syntax tree of a config file.
 *
 *     directive := NAME ARG* ';'
 *                | NAME ARG* '{' directive* '}'
 *
 * The parser knows no directive but one: `include GLOB;`, which it expands
 * in place, in any block, while parsing.  GLOB is relative to the directory
 * of the file that contains it; its matches are read in sorted order.  A
 * pattern with wildcards (* ? [) may match nothing; a plain file name must
 * exist.  Includes nest at most CONF_INCLUDE_DEPTH deep (which also stops a
 * file that includes itself).  What each directive means is config/config.c's
 * business.
 *
 * Ownership: a struct conf_tree owns every string in it, file names
 * included; it is freed in one call.  It is not shared between threads.
 */
#ifndef TESSERA_CONFIG_PARSER_H
#define TESSERA_CONFIG_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

#define CONF_INCLUDE_DEPTH 16     /* nested includes allowed below the main file */
#define CONF_BLOCK_DEPTH 32       /* nested blocks allowed in one file */
#define CONF_FILE_MAX (16u << 20) /* bytes in one config file */

/* A directive's name or one of its arguments. */
struct conf_arg {
    char *text;            /* NUL-terminated, escapes decoded; cannot contain a NUL */
    size_t len;            /* bytes in text */
    bool quoted;           /* written as "..." or '...' */
    struct config_pos pos; /* pos.file points into conf_tree.files */
};

struct conf_directive {
    struct conf_arg name;
    struct conf_arg *args;
    size_t nargs;
    bool has_block;                  /* `{ ... }` given, maybe empty */
    struct config_pos block_pos;     /* of the `{` when has_block */
    struct conf_directive *children; /* the block's directives, includes expanded */
    size_t nchildren;
};

struct conf_tree {
    struct conf_directive *directives; /* the main file's top level */
    size_t ndirectives;
    char **files; /* every file read, main first, each once: positions point here */
    size_t nfiles;
};

/*
 * conf_tree_parse_file: read and parse PATH and everything it includes.
 * Returns a new tree (free with conf_tree_free) or NULL with one line in err
 * (errlen bytes, always NUL-terminated), "FILE:LINE:COL: message", or
 * "PATH: cannot open: reason" when the main file cannot be read.
 */
struct conf_tree *conf_tree_parse_file(const char *path, char *err, size_t errlen);

/*
 * conf_tree_parse_string: as conf_tree_parse_file, but the main file's text
 * is TEXT[0..LEN) and NAME is its name for messages and for resolving
 * relative includes.  TEXT is not kept.
 */
struct conf_tree *conf_tree_parse_string(const char *name, const char *text, size_t len, char *err,
                                         size_t errlen);

/* conf_tree_free: free the tree and everything in it; sets *treep to NULL.
 * NULL-safe. */
void conf_tree_free(struct conf_tree **treep);

#endif
