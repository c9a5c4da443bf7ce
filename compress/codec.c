/*
 * compress/codec.c: the table from a negotiated coding to its compressor
 * implementation (compress/codec.h).  Constant data only; no locking.
 */
#include "compress/codec.h"

const struct compressor_ops *compressor_ops_for(enum coding c)
{
    switch (c) {
    case CODING_GZIP:
        return &gzip_ops;
    case CODING_BR:
        return &brotli_ops;
    case CODING_ZSTD:
        return &zstd_ops;
    case CODING_IDENTITY:
    case CODING_COUNT:
    default:
        return NULL;
    }
}
