/*
 * cache/memstore.h: the in-process memory store, an implementation of
 * struct cache_store (cache/store.h) bounded in bytes and evicting by LRU.
 *
 * All its operations complete before they return: lookup() calls done() on
 * the caller's thread before returning.  It is safe to call from any number
 * of threads at once.
 */
#ifndef TESSERA_CACHE_MEMSTORE_H
#define TESSERA_CACHE_MEMSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"

/* Smallest capacity memstore_new() accepts. */
#define MEMSTORE_MIN_CAPACITY ((uint64_t)16 * 1024)

/* memstore_new: a memory store holding at most capacity_bytes (objects'
 * charge plus the store's own tables and per-entry bookkeeping; the few
 * fixed structures of the store itself are not counted).  The capacity is
 * split evenly between shards (1 to 64) of at least 4 MiB and at least twice
 * largest_object (the biggest object it will be asked to keep: the routes'
 * max_object_size), so such an object fits whenever the capacity allows;
 * an object larger than one shard is refused.  Returns NULL and writes a
 * one-line reason into err (errlen bytes, NUL-terminated) when the capacity
 * is below MEMSTORE_MIN_CAPACITY or memory runs out.  Free it with
 * cache_store_destroy(). */
struct cache_store *memstore_new(uint64_t capacity_bytes, uint64_t largest_object, char *err,
                                 size_t errlen);

/* memstore_shard_capacity: the largest bytes one shard holds; an object whose
 * charge comes near it is refused.  For tests and for a config check that
 * max_object_size fits. */
uint64_t memstore_shard_capacity(const struct cache_store *store);

#endif
